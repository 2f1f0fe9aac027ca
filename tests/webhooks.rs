//! Webhooks (`staircase::webhook`) called by the real kube-apiserver v1.37.2 over loopback: the
//! `Shelf` example's validating, mutating and conversion webhooks; handler errors, panics and
//! unreachable webhooks under each `failurePolicy`; certificates from files; generated
//! certificates renewed; bad request bodies.
//!
//! The admission parts ([`shelf_admission`], [`failure_policies`]) and the conversion parts
//! ([`shelf_conversion`], [`unreachable_conversion`]) take a client and a namespace and run
//! unchanged against the embedded API server too (`embedded_*` tests).
//!
//! Each test serves its webhooks on a port of its own and configures them by URL
//! (`https://127.0.0.1:<port>/...`), limited to its own namespace; the API server's copy of a
//! new webhook configuration or caBundle arrives through its informers, so each test first waits
//! until a dry-run request shows the webhook in effect. Skips without the real binaries (see
//! `staircase_testkit::real`), fails under `CI=true`.

use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::admission::AdmissionRequest;
use kube::{Client, CustomResourceExt, ResourceExt};
use staircase::webhook::{CaBundle, Serving, Tls, Verdict, Webhooks};
use staircase::{Operator, OperatorConfig};
use staircase_examples::shelf::{self, v1, v2};
use staircase_testkit::ApiServer;
use staircase_testkit::real::shared_or_skip;
use staircase_tests::{Running, eventually};
use tokio::net::TcpListener;

/// Upper bound for anything these tests wait for (a guard against hangs, not a timing
/// assumption).
const GUARD: Duration = Duration::from_secs(90);

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    (listener, base)
}

fn url(url: String) -> WebhookClientConfig {
    WebhookClientConfig {
        url: Some(url),
        ..Default::default()
    }
}

/// Only objects in the test's namespace (and, when given, with label `case=<case>`).
fn selectors(ns: &str, case: Option<&str>) -> (Option<LabelSelector>, Option<LabelSelector>) {
    let label = |k: &str, v: &str| LabelSelector {
        match_labels: Some([(k.to_string(), v.to_string())].into()),
        ..Default::default()
    };
    (
        Some(label("kubernetes.io/metadata.name", ns)),
        case.map(|c| label("case", c)),
    )
}

fn rule(group: &str, version: &str, resource: &str) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![group.into()]),
        api_versions: Some(vec![version.into()]),
        resources: Some(vec![resource.into()]),
        operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
        scope: Some("Namespaced".into()),
    }
}

fn validating(
    name: &str,
    ns: &str,
    case: Option<&str>,
    client_config: WebhookClientConfig,
    rule: RuleWithOperations,
    failure_policy: &str,
) -> ValidatingWebhook {
    let (namespace_selector, object_selector) = selectors(ns, case);
    ValidatingWebhook {
        name: name.into(),
        client_config,
        rules: Some(vec![rule]),
        failure_policy: Some(failure_policy.into()),
        side_effects: "None".into(),
        admission_review_versions: vec!["v1".into()],
        timeout_seconds: Some(2),
        namespace_selector,
        object_selector,
        ..Default::default()
    }
}

async fn create_validating(client: &Client, name: &str, webhooks: Vec<ValidatingWebhook>) {
    let config = ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        webhooks: Some(webhooks),
    };
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
}

/// The API server's message for a failed create, or `None` when it succeeded.
async fn refusal<K>(api: &Api<K>, object: &K, dry_run: bool) -> Option<(u16, String)>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pp = PostParams {
        dry_run,
        ..Default::default()
    };
    match api.create(&pp, object).await {
        Ok(_) => None,
        Err(kube::Error::Api(s)) => Some((s.code, s.message)),
        Err(e) => panic!("create: {e}"),
    }
}

fn config_map(name: &str, case: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("case".to_string(), case.to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Waits until a dry-run create of `object` is refused with a message containing `expected`:
/// the webhook configuration (and its caBundle) has reached the API server's informers.
async fn wait_refused<K>(api: &Api<K>, object: &K, expected: &str)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = Instant::now() + GUARD;
    loop {
        let answer = refusal(api, object, true).await;
        if answer.as_ref().is_some_and(|(_, m)| m.contains(expected)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal saying {expected:?} within {GUARD:?}; the last answer: {answer:?}"
        );
        // Poll interval, bounded by the deadline above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn shelf_v2(name: &str, books: &[&str]) -> v2::Shelf {
    v2::Shelf::new(
        name,
        v2::ShelfSpec {
            books: books.iter().map(|b| b.to_string()).collect(),
        },
    )
}

/// Installs the Shelf CRD converting through `base` and the example's validating and mutating
/// webhooks for namespace `ns`, then serves them with a generated certificate whose CA the
/// operator writes into all three.
async fn serve_shelf_webhooks(client: &Client, ns: &str) -> Serving {
    let client = client.clone();
    let (listener, base) = listener().await;
    let crd = shelf::crd(apiext::WebhookClientConfig {
        url: Some(format!("{base}{}", shelf::CONVERT)),
        ..Default::default()
    });
    let crd_name = crd.name_any();
    staircase::crds::install_crd(&client, crd, GUARD)
        .await
        .unwrap();
    let name = format!("shelf-{ns}");
    let rule = rule("demo.staircase.rs", "v2", "shelves");
    let validate = validating(
        "validate.shelves.demo.staircase.rs",
        ns,
        None,
        url(format!("{base}{}", shelf::VALIDATE)),
        rule.clone(),
        "Fail",
    );
    create_validating(&client, &name, vec![validate.clone()]).await;
    let mutate = MutatingWebhook {
        name: "mutate.shelves.demo.staircase.rs".into(),
        client_config: url(format!("{base}{}", shelf::MUTATE)),
        rules: validate.rules,
        failure_policy: Some("Fail".into()),
        side_effects: "None".into(),
        admission_review_versions: vec!["v1".into()],
        namespace_selector: validate.namespace_selector,
        ..Default::default()
    };
    let config = MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        webhooks: Some(vec![mutate]),
    };
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
    shelf::webhooks(Tls::generate(["127.0.0.1"]))
        .keep_ca_bundle(
            client,
            [
                CaBundle::crd(crd_name),
                CaBundle::validating(&name),
                CaBundle::mutating(&name),
            ],
        )
        .start(listener)
        .await
        .unwrap()
}

/// The Shelf example's admission webhooks as any API server calls them (the webhooks served by
/// [`serve_shelf_webhooks`]): a crowded shelf denied with the handler's reason, a messy one
/// stored as the mutating handler sorted it.
async fn shelf_admission(client: &Client, ns: &str) {
    let v2s: Api<v2::Shelf> = Api::namespaced(client.clone(), ns);

    // Validating: denied, with the handler's reason.
    let books: Vec<String> = (1..=11).map(|i| format!("book {i}")).collect();
    let books: Vec<&str> = books.iter().map(String::as_str).collect();
    let too_many = shelf_v2("crowded", &books);
    let reason = "a shelf holds at most 10 books, this one has 11";
    wait_refused(&v2s, &too_many, reason).await;
    let (code, message) = refusal(&v2s, &too_many, false).await.expect("denied");
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(
            "admission webhook \"validate.shelves.demo.staircase.rs\" denied the request"
        ),
        "{message}"
    );
    assert!(v2s.get_opt("crowded").await.unwrap().is_none());

    // Mutating: stored as the handler returned it.
    let created = v2s
        .create(&PostParams::default(), &shelf_v2("messy", &["b", "a", "b"]))
        .await
        .unwrap();
    assert_eq!(created.spec.books, ["a", "b"]);
    assert_eq!(v2s.get("messy").await.unwrap().spec.books, ["a", "b"]);

    // A dry run: the webhooks called, the mutated object answered, nothing stored.
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let answered = v2s
        .create(&pp, &shelf_v2("dry", &["b", "a"]))
        .await
        .unwrap();
    assert_eq!(answered.spec.books, ["a", "b"]);
    assert!(v2s.get_opt("dry").await.unwrap().is_none());

    // Updates: a merge patch mutated, a replace denied, the stored object unchanged by it.
    let patch = serde_json::json!({"spec": {"books": ["c", "a", "c"]}});
    let patched = v2s
        .patch("messy", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.spec.books, ["a", "c"]);
    let mut crowded = patched.clone();
    crowded.spec.books = books.iter().map(|b| b.to_string()).collect();
    let Err(kube::Error::Api(s)) = v2s.replace("messy", &PostParams::default(), &crowded).await
    else {
        panic!("a crowded replace admitted");
    };
    assert_eq!(s.code, 403, "{}", s.message);
    assert!(s.message.contains(reason), "{}", s.message);
    assert_eq!(v2s.get("messy").await.unwrap().spec.books, ["a", "c"]);

    // Server-side apply: a create (CREATE) and then an update (UPDATE), both mutated.
    let apply = |books: &[&str]| {
        serde_json::json!({
            "apiVersion": "demo.staircase.rs/v2", "kind": "Shelf",
            "metadata": {"name": "applied"}, "spec": {"books": books},
        })
    };
    let pp = PatchParams::apply("webhook-test");
    let applied = v2s
        .patch("applied", &pp, &Patch::Apply(apply(&["z", "y", "z"])))
        .await
        .unwrap();
    assert_eq!(applied.spec.books, ["y", "z"]);
    let applied = v2s
        .patch("applied", &pp, &Patch::Apply(apply(&["x", "w"])))
        .await
        .unwrap();
    assert_eq!(applied.spec.books, ["w", "x"]);
    assert_eq!(v2s.get("applied").await.unwrap().spec.books, ["w", "x"]);
}

/// Waits until `messy` (written through v2) reads through v1: a real API server's CRD handler
/// picks up the conversion webhook's caBundle in a moment.
async fn readable_through_v1(v1s: &Api<v1::Shelf>) {
    let deadline = Instant::now() + GUARD;
    while let Err(e) = v1s.get("messy").await {
        assert!(Instant::now() < deadline, "read through v1: {e}");
        // Poll interval, bounded by the deadline above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Shelf example's conversion webhook as any API server calls it (after [`shelf_admission`]
/// stored `messy` through v2): objects written in one version read, listed, watched and patched
/// through the other, their metadata kept; then the operator, on v2, runs the shelves written
/// through v1 (its finalizer patches pass the webhooks too) and each gets its ConfigMap, besides
/// the ones in `more`.
async fn shelf_conversion(client: &Client, ns: &str, more: &[(&str, &str)]) {
    let (v1s, v2s): (Api<v1::Shelf>, Api<v2::Shelf>) = (
        Api::namespaced(client.clone(), ns),
        Api::namespaced(client.clone(), ns),
    );

    // A v2 object read as v1.
    readable_through_v1(&v1s).await;
    assert_eq!(v1s.get("messy").await.unwrap().spec.books, "a,c");

    // A v1 object read as v2, and read back as v1 unchanged.
    let original = v1::Shelf::new(
        "old",
        v1::ShelfSpec {
            books: "Dune,Emma".into(),
        },
    );
    let created = v1s.create(&PostParams::default(), &original).await.unwrap();
    assert_eq!(created.spec, original.spec);
    let as_v2 = v2s.get("old").await.unwrap();
    assert_eq!(as_v2.spec.books, ["Dune", "Emma"]);
    assert_eq!(
        as_v2.uid(),
        created.uid(),
        "the converted object keeps its metadata"
    );
    let back = v1s.get("old").await.unwrap();
    assert_eq!(back.spec, original.spec);
    assert_eq!(back.metadata, created.metadata);

    // Lists in either version hold every shelf in that version (a v2 body fails to decode as v1).
    let through_v1 = v1s.list(&Default::default()).await.unwrap();
    let names: Vec<String> = through_v1.items.iter().map(|s| s.name_any()).collect();
    assert!(
        names.contains(&"messy".into()) && names.contains(&"old".into()),
        "{names:?}"
    );
    let through_v2 = v2s.list(&Default::default()).await.unwrap();
    assert_eq!(through_v2.items.len(), through_v1.items.len());

    // A patch through v1 of the object written through v2 applies to its v1 form ...
    let patch = serde_json::json!({"spec": {"books": "a,c,d"}});
    let patched = v1s
        .patch("messy", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.spec.books, "a,c,d");
    assert_eq!(v2s.get("messy").await.unwrap().spec.books, ["a", "c", "d"]);
    // ... and one through v2 that changes nothing in its v2 form changes nothing.
    let same = serde_json::json!({"spec": {"books": ["a", "c", "d"]}});
    let again = v2s
        .patch("messy", &PatchParams::default(), &Patch::Merge(&same))
        .await
        .unwrap();
    assert_eq!(again.resource_version(), patched.resource_version());

    let op = Running::operator(
        Operator::new(client.clone(), shelf::stairs())
            .with_config(OperatorConfig::default().with_namespace(ns))
            .with_status()
            .owns::<ConfigMap>(),
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for (name, books) in [("old", "Dune\nEmma"), ("messy", "a\nc\nd")]
        .iter()
        .chain(more)
    {
        let cm = format!("{name}-books");
        eventually(GUARD, &format!("ConfigMap {cm}"), || async {
            let cm = cms.get_opt(&cm).await.unwrap();
            cm.and_then(|c| c.data)
                .is_some_and(|d| d["books"] == *books)
        })
        .await;
    }
    op.stop().await;
}

/// A CRD whose conversion webhook cannot be reached: objects read in the version they are
/// stored in, and a read in the other version fails with kube-apiserver's message. The stored
/// version is the preferred one (`v1` over `v1alpha1`), so the garbage collector and namespace
/// controller of a real server, which read the preferred version, never need the webhook.
async fn unreachable_conversion(client: &Client, ns: &str) {
    let (listener, base) = listener().await;
    drop(listener); // nothing listens there any more
    let version = |name: &str, storage: bool| {
        serde_json::json!({
            "name": name, "served": true, "storage": storage,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        })
    };
    let crd: apiext::CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.conversion.staircase.rs"},
        "spec": {
            "group": "conversion.staircase.rs",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
            "versions": [version("v1", true), version("v1alpha1", false)],
            "conversion": {"strategy": "Webhook", "webhook": {
                "conversionReviewVersions": ["v1"],
                "clientConfig": {"url": format!("{base}/convert")},
            }},
        },
    }))
    .unwrap();
    let crd = staircase::crds::install_crd(client, crd, GUARD)
        .await
        .unwrap();
    let resource = |version: &str| {
        let gvk = kube::core::GroupVersionKind::gvk("conversion.staircase.rs", version, "Gadget");
        kube::core::ApiResource::from_gvk_with_plural(&gvk, "gadgets")
    };
    let api = |version: &str| {
        Api::<kube::core::DynamicObject>::namespaced_with(client.clone(), ns, &resource(version))
    };
    let gadget = kube::core::DynamicObject::new("g", &resource("v1"))
        .data(serde_json::json!({"spec": {"size": 3}}));
    let v1 = api("v1");
    v1.create(&PostParams::default(), &gadget).await.unwrap();
    assert_eq!(v1.get("g").await.unwrap().data["spec"]["size"], 3);

    let prefix = "conversion webhook for conversion.staircase.rs/v1, Kind=Gadget failed: ";
    let alpha = api("v1alpha1");
    for (what, answer) in [
        ("get", alpha.get("g").await.map(|_| ())),
        ("list", alpha.list(&Default::default()).await.map(|_| ())),
    ] {
        let Err(kube::Error::Api(s)) = answer else {
            panic!("a {what} through v1alpha1 answered {answer:?}");
        };
        assert_eq!(s.code, 500, "{what}: {}", s.message);
        assert!(s.message.contains(prefix), "{what}: {}", s.message);
    }
    // Still there, unchanged, through its own version.
    assert_eq!(v1.get("g").await.unwrap().data["spec"]["size"], 3);
    Api::<apiext::CustomResourceDefinition>::all(client.clone())
        .delete(&crd.name_any(), &Default::default())
        .await
        .unwrap();
}

/// The embedded API server (`staircase_testkit::ApiServer`) with namespace `ns`, and its client.
async fn embedded(ns: &str) -> (ApiServer, Client) {
    let server = ApiServer::start().await.unwrap();
    let client = server.client();
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_apiserver_calls_the_shelf_admission_webhooks() {
    let (_server, client) = embedded("webhooks-shelf").await;
    let serving = serve_shelf_webhooks(&client, "webhooks-shelf").await;
    shelf_admission(&client, "webhooks-shelf").await;
    drop(serving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_apiserver_fails_reads_an_unreachable_conversion_webhook_should_convert() {
    let (_server, client) = embedded("webhooks-unreachable").await;
    unreachable_conversion(&client, "webhooks-unreachable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_apiserver_fails_reads_an_unreachable_conversion_webhook_should_convert() {
    let Some(server) = shared_or_skip(
        "real_apiserver_fails_reads_an_unreachable_conversion_webhook_should_convert",
    )
    .await
    else {
        return;
    };
    let ns = server.namespace("webhooks-unreachable").await.unwrap();
    unreachable_conversion(&ns.client(), ns.name()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_apiserver_calls_the_shelf_conversion_webhook() {
    let (_server, client) = embedded("webhooks-convert").await;
    let serving = serve_shelf_webhooks(&client, "webhooks-convert").await;
    shelf_admission(&client, "webhooks-convert").await;
    shelf_conversion(&client, "webhooks-convert", &[]).await;
    drop(serving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_apiserver_calls_the_shelf_webhooks() {
    let Some(server) = shared_or_skip("real_apiserver_calls_the_shelf_webhooks").await else {
        return;
    };
    let ns = server.namespace("webhooks-shelf").await.unwrap();
    let serving = serve_shelf_webhooks(&ns.client(), ns.name()).await;
    let crd = Api::<apiext::CustomResourceDefinition>::all(ns.client())
        .get(v2::Shelf::crd_name())
        .await
        .unwrap();
    let bundle = crd
        .spec
        .conversion
        .unwrap()
        .webhook
        .unwrap()
        .client_config
        .unwrap()
        .ca_bundle;
    assert_eq!(
        bundle,
        Some(ByteString(serving.ca_bundle().into_bytes())),
        "the CRD's conversion stanza carries the served CA"
    );
    shelf_admission(&ns.client(), ns.name()).await;
    let v1s: Api<v1::Shelf> = ns.api();
    let books: Vec<String> = (1..=11).map(|i| format!("book {i}")).collect();
    let books: Vec<&str> = books.iter().map(String::as_str).collect();
    let reason = "a shelf holds at most 10 books, this one has 11";
    readable_through_v1(&v1s).await;

    // Through v1 the webhooks see the object as v2 (matchPolicy Equivalent): mutated ...
    let unsorted = v1::Shelf::new(
        "unsorted",
        v1::ShelfSpec {
            books: "Emma,Dune,Emma".into(),
        },
    );
    let created = v1s.create(&PostParams::default(), &unsorted).await.unwrap();
    assert_eq!(created.spec.books, "Dune,Emma");
    // ... and validated.
    let crowded = v1::Shelf::new(
        "crowded",
        v1::ShelfSpec {
            books: books.join(","),
        },
    );
    let (_, message) = refusal(&v1s, &crowded, false).await.expect("denied");
    assert!(message.contains(reason), "{message}");

    shelf_conversion(&ns.client(), ns.name(), &[("unsorted", "Dune\nEmma")]).await;
    drop(serving);
}

async fn deny_all(_: AdmissionRequest<ConfigMap>) -> Result<Verdict, String> {
    Ok(Verdict::deny("no ConfigMaps labelled case=deny"))
}

async fn fails(_: AdmissionRequest<ConfigMap>) -> Result<Verdict, String> {
    Err("the policy store is unreachable".into())
}

async fn panics(_: AdmissionRequest<ConfigMap>) -> Result<Verdict, String> {
    panic!("boom")
}

/// Never answers: the API server's `timeoutSeconds` ends the call.
async fn hangs(_: AdmissionRequest<ConfigMap>) -> Result<Verdict, String> {
    futures::future::pending().await
}

fn config_map_webhooks(tls: Tls) -> Webhooks {
    Webhooks::new(tls)
        .validate("/deny", deny_all)
        .validate("/fails", fails)
        .validate("/panics", panics)
        .validate("/hangs", hangs)
}

/// A `kube::Client` for the webhook server itself, trusting only the CA it published.
fn client_for(base: &str, ca_pem: &str) -> Client {
    let base64: String = ca_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der: ByteString = serde_json::from_value(serde_json::json!(base64)).unwrap();
    let mut config = kube::Config::new(base.parse().unwrap());
    config.root_cert = Some(vec![der.0]);
    Client::try_from(config).unwrap()
}

async fn post(client: &Client, path: &str, body: &str) -> Result<String, (u16, String)> {
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .body(body.as_bytes().to_vec())
        .unwrap();
    client.request_text(req).await.map_err(|e| match e {
        kube::Error::Api(s) => (s.code, s.message),
        e => panic!("{e}"),
    })
}

/// Handler errors and panics denied with their message, failed calls (a handler that hangs past
/// `timeoutSeconds`, a path not served) refused under `Fail` and admitted under `Ignore`, as any
/// API server calls the webhooks; then bad requests straight to the webhook server.
async fn failure_policies(client: &Client, ns: &str) {
    let (listener, base) = listener().await;
    let name = format!("failures-{ns}");
    let rule = rule("", "v1", "configmaps");
    let hook = |case: &str, path: &str, policy: &str| {
        validating(
            &format!("{case}.webhooks.staircase.rs"),
            ns,
            Some(case),
            url(format!("{base}{path}")),
            rule.clone(),
            policy,
        )
    };
    let hooks = vec![
        hook("deny", "/deny", "Fail"),
        hook("fails", "/fails", "Ignore"),
        hook("panics", "/panics", "Ignore"),
        hook("hangs-fail", "/hangs", "Fail"),
        hook("hangs-ignore", "/hangs", "Ignore"),
        hook("missing-fail", "/missing", "Fail"),
        hook("missing-ignore", "/missing", "Ignore"),
    ];
    create_validating(client, &name, hooks).await;
    let serving = config_map_webhooks(Tls::generate(["127.0.0.1"]))
        .keep_ca_bundle(client.clone(), [CaBundle::validating(&name)])
        .start(listener)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    wait_refused(
        &cms,
        &config_map("a", "deny"),
        "no ConfigMaps labelled case=deny",
    )
    .await;
    let refused = |case: &'static str| {
        let cms = cms.clone();
        async move { refusal(&cms, &config_map(case, case), false).await }
    };

    // A handler's error and a panic are denials, with the message, whatever the policy.
    let (code, message) = refused("fails").await.expect("denied");
    assert_eq!(code, 500, "{message}");
    assert!(
        message.contains("the policy store is unreachable"),
        "{message}"
    );
    let (_, message) = refused("panics").await.expect("denied");
    assert!(
        message.contains("the webhook handler panicked: boom"),
        "{message}"
    );
    // The server goes on answering after a panic.
    let (_, message) = refused("deny").await.expect("denied");
    assert!(
        message.contains("no ConfigMaps labelled case=deny"),
        "{message}"
    );

    // A call that gets no answer in timeoutSeconds, or an answer that is not a review (404):
    // refused under Fail, admitted under Ignore.
    for case in ["hangs-fail", "missing-fail"] {
        let (_, message) = refused(case).await.expect("refused under Fail");
        assert!(
            message.contains("failed calling webhook"),
            "{case}: {message}"
        );
    }
    for case in ["hangs-ignore", "missing-ignore"] {
        assert_eq!(refused(case).await, None, "{case} admitted under Ignore");
        cms.get(case).await.unwrap();
    }

    // Bad requests, straight to the server (over TLS verified by the published CA).
    let direct = client_for(&base, &serving.ca_bundle());
    let (code, message) = post(&direct, "/deny", "{not json").await.unwrap_err();
    assert_eq!(code, 400);
    assert!(
        message.contains("the body is not an AdmissionReview"),
        "{message}"
    );
    let empty = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
    let (code, message) = post(&direct, "/deny", empty).await.unwrap_err();
    assert_eq!(
        (code, message.as_str()),
        (400, "the AdmissionReview has no request")
    );
    let (code, message) = post(&direct, "/elsewhere", empty).await.unwrap_err();
    assert_eq!(code, 404);
    assert!(
        message.contains("served: /deny, /fails, /hangs, /panics"),
        "{message}"
    );
    // A review whose object is not a ConfigMap: answered, denied, saying so.
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "1234", "operation": "CREATE", "name": "x", "namespace": "y",
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "userInfo": {}, "dryRun": false,
            "object": {"apiVersion": "v1", "kind": "ConfigMap", "data": 5}
        }
    });
    let answer = post(&direct, "/deny", &review.to_string()).await.unwrap();
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["response"]["uid"], "1234");
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the object is not a valid ConfigMap"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_apiserver_follows_the_failure_policy() {
    let (_server, client) = embedded("webhooks-failures").await;
    failure_policies(&client, "webhooks-failures").await;
}

/// The embedded server alone: while a webhook call is under way the server goes on answering
/// (it holds no lock across the call), and a webhook it cannot reach because it is configured by
/// `clientConfig.service` follows its `failurePolicy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_apiserver_answers_during_a_call_and_cannot_reach_a_service() {
    let ns = "webhooks-embedded";
    let (_server, client) = embedded(ns).await;
    let (listener, base) = listener().await;
    let name = "embedded";
    let rule = rule("", "v1", "configmaps");
    let service = WebhookClientConfig {
        service: Some(ServiceReference {
            namespace: ns.into(),
            name: "webhooks".into(),
            path: Some("/deny".into()),
            port: Some(443),
        }),
        ..Default::default()
    };
    let mut hangs = validating(
        "hangs.webhooks.staircase.rs",
        ns,
        Some("hangs"),
        url(format!("{base}/hangs")),
        rule.clone(),
        "Fail",
    );
    hangs.timeout_seconds = Some(5);
    let by_service = |case: &str, policy: &str| {
        validating(
            &format!("{case}.webhooks.staircase.rs"),
            ns,
            Some(case),
            service.clone(),
            rule.clone(),
            policy,
        )
    };
    let hooks = vec![
        hangs,
        by_service("service-fail", "Fail"),
        by_service("service-ignore", "Ignore"),
    ];
    create_validating(&client, name, hooks).await;
    let serving = config_map_webhooks(Tls::generate(["127.0.0.1"]))
        .keep_ca_bundle(client.clone(), [CaBundle::validating(name)])
        .start(listener)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);

    let hanging = tokio::spawn({
        let cms = cms.clone();
        async move { refusal(&cms, &config_map("hangs", "hangs"), false).await }
    });
    // Lets the call get under way; the assertions below hold whether or not it has.
    tokio::time::sleep(Duration::from_millis(200)).await;
    cms.create(&PostParams::default(), &config_map("other", "other"))
        .await
        .unwrap();
    cms.list(&Default::default()).await.unwrap();
    assert!(
        !hanging.is_finished(),
        "answered while the webhook call was outstanding"
    );
    let (code, message) = hanging.await.unwrap().expect("refused under Fail");
    assert_eq!(code, 500, "{message}");
    assert!(message.contains("failed calling webhook"), "{message}");
    assert!(cms.get_opt("hangs").await.unwrap().is_none());

    let (code, message) = refusal(&cms, &config_map("a", "service-fail"), false)
        .await
        .expect("refused under Fail");
    assert_eq!(code, 500, "{message}");
    assert!(
        message.contains("failed calling webhook \"service-fail.webhooks.staircase.rs\"")
            && message.contains("clientConfig.url"),
        "{message}"
    );
    let admitted = config_map("b", "service-ignore");
    assert_eq!(refusal(&cms, &admitted, false).await, None);
    drop(serving);
}

/// The embedded server alone: an object that changes while its webhook is being called (here by
/// the webhook itself, whose own write passes the same webhook) is not overwritten: the
/// request's commit conflicts and the request starts again on the new object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_apiserver_starts_a_write_again_when_the_object_changed_during_the_call() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let ns = "webhooks-race";
    let (_server, client) = embedded(ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    cms.create(&PostParams::default(), &config_map("raced", "race"))
        .await
        .unwrap();
    let (listener, base) = listener().await;
    let name = "race";
    let hook = validating(
        "race.webhooks.staircase.rs",
        ns,
        Some("race"),
        url(format!("{base}/race")),
        rule("", "v1", "configmaps"),
        "Fail",
    );
    create_validating(&client, name, vec![hook]).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let race = {
        let (calls, cms) = (calls.clone(), cms.clone());
        move |_: AdmissionRequest<ConfigMap>| {
            let (calls, cms) = (calls.clone(), cms.clone());
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    let patch = serde_json::json!({"data": {"b": "2"}});
                    cms.patch("raced", &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(Verdict::Allow)
            }
        }
    };
    let serving = Webhooks::new(Tls::generate(["127.0.0.1"]))
        .validate("/race", race)
        .keep_ca_bundle(client.clone(), [CaBundle::validating(name)])
        .start(listener)
        .await
        .unwrap();
    let patch = serde_json::json!({"data": {"a": "1"}});
    let patched = cms
        .patch("raced", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let data = patched.data.unwrap();
    assert_eq!((data["a"].as_str(), data["b"].as_str()), ("1", "2"));
    // The request's call, the webhook's own write's call, the request's call again.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    drop(serving);
}

/// The embedded server alone: a webhook whose rules name DELETE is called with the stored
/// object, and a denial keeps the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_apiserver_calls_webhooks_on_delete() {
    let ns = "webhooks-delete";
    let (_server, client) = embedded(ns).await;
    let (listener, base) = listener().await;
    let mut on_delete = rule("", "v1", "configmaps");
    on_delete.operations = Some(vec!["DELETE".into()]);
    let hook = validating(
        "deny-delete.webhooks.staircase.rs",
        ns,
        Some("deny"),
        url(format!("{base}/deny")),
        on_delete,
        "Fail",
    );
    create_validating(&client, "delete", vec![hook]).await;
    let serving = config_map_webhooks(Tls::generate(["127.0.0.1"]))
        .keep_ca_bundle(client.clone(), [CaBundle::validating("delete")])
        .start(listener)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    // Created (the rule names DELETE only), then refused deletion.
    cms.create(&PostParams::default(), &config_map("kept", "deny"))
        .await
        .unwrap();
    let Err(kube::Error::Api(s)) = cms.delete("kept", &Default::default()).await else {
        panic!("deleted despite the webhook");
    };
    assert!(
        s.message.contains(
            "admission webhook \"deny-delete.webhooks.staircase.rs\" denied the request: no ConfigMaps labelled case=deny"
        ),
        "{}",
        s.message
    );
    cms.get("kept").await.unwrap();
    // Objects the selector does not take are deleted.
    cms.create(&PostParams::default(), &config_map("gone", "other"))
        .await
        .unwrap();
    cms.delete("gone", &Default::default()).await.unwrap();
    assert!(cms.get_opt("gone").await.unwrap().is_none());
    drop(serving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_failures_deny_and_failed_calls_follow_the_failure_policy() {
    let Some(server) =
        shared_or_skip("handler_failures_deny_and_failed_calls_follow_the_failure_policy").await
    else {
        return;
    };
    let ns = server.namespace("webhooks-failures").await.unwrap();
    failure_policies(&ns.client(), ns.name()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_are_served_their_ca_kept_and_their_renewal_followed() {
    let Some(server) =
        shared_or_skip("certificate_files_are_served_their_ca_kept_and_their_renewal_followed")
            .await
    else {
        return;
    };
    let ns = server.namespace("webhooks-files").await.unwrap();
    let client = ns.client();

    let missing = server.dir().join("no-such-dir");
    let err = Webhooks::new(Tls::from_dir(&missing))
        .start(listener().await.0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-dir/tls.crt"), "{err}");

    // The harness's CA and serving certificate (for 127.0.0.1), mounted as a TLS Secret would be.
    let dir = server.dir().join(format!("tls-{}", ns.name()));
    std::fs::create_dir(&dir).unwrap();
    for (from, to) in [
        ("serving.crt", "tls.crt"),
        ("serving.key", "tls.key"),
        ("ca.crt", "ca.crt"),
    ] {
        std::fs::copy(server.dir().join(from), dir.join(to)).unwrap();
    }
    let (listener, base) = listener().await;
    let name = format!("files-{}", ns.name());
    let hook = validating(
        "deny.webhooks.staircase.rs",
        ns.name(),
        Some("deny"),
        url(format!("{base}/deny")),
        rule("", "v1", "configmaps"),
        "Fail",
    );
    create_validating(&client, &name, vec![hook]).await;
    let tls = Tls::from_dir(&dir).with_check_interval(Duration::from_millis(500));
    let serving = config_map_webhooks(tls)
        .keep_ca_bundle(client.clone(), [CaBundle::validating(&name)])
        .start(listener)
        .await
        .unwrap();
    let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    assert_eq!(serving.ca_bundle(), ca);
    let config = Api::<ValidatingWebhookConfiguration>::all(client)
        .get(&name)
        .await
        .unwrap();
    assert_eq!(
        config.webhooks.unwrap()[0].client_config.ca_bundle,
        Some(ByteString(ca.clone().into_bytes()))
    );
    let cms: Api<ConfigMap> = ns.api();
    let denied = config_map("a", "deny");
    let reason = "no ConfigMaps labelled case=deny";
    wait_refused(&cms, &denied, reason).await;

    // cert-manager renews: new files, signed by a new CA. The new CA joins the caBundle, then
    // the new certificate is served; the API server's calls go on reaching the handler.
    let (ca2, crt2, key2) = certificate_authority_and_serving_pair();
    for (name, pem) in [("tls.key", &key2), ("tls.crt", &crt2), ("ca.crt", &ca2)] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    let direct = client_for(&base, &ca2);
    let deadline = Instant::now() + GUARD;
    loop {
        let (_, message) = refusal(&cms, &denied, true).await.expect("refused");
        assert!(
            message.contains(reason),
            "a call failed during the reload: {message}"
        );
        let req = http::Request::post("/deny").body(b"{}".to_vec()).unwrap();
        if matches!(direct.request_text(req).await, Err(kube::Error::Api(s)) if s.code == 400) {
            break; // served, verified by the new CA alone
        }
        assert!(
            Instant::now() < deadline,
            "new files served within {GUARD:?}"
        );
        // Poll interval, bounded by the deadline above.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(serving.ca_bundle(), format!("{ca2}{ca}"));
    wait_refused(&cms, &denied, reason).await;
}

/// A new CA's PEM, and a serving certificate for 127.0.0.1 it signed, with its key.
fn certificate_authority_and_serving_pair() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let crt = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_pem, crt.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_certificate_is_renewed_without_a_failed_call() {
    let Some(server) =
        shared_or_skip("a_generated_certificate_is_renewed_without_a_failed_call").await
    else {
        return;
    };
    let ns = server.namespace("webhooks-renewal").await.unwrap();
    let client = ns.client();
    let (listener, base) = listener().await;
    let name = format!("renewal-{}", ns.name());
    let hook = validating(
        "deny.webhooks.staircase.rs",
        ns.name(),
        Some("deny"),
        url(format!("{base}/deny")),
        rule("", "v1", "configmaps"),
        "Fail",
    );
    create_validating(&client, &name, vec![hook]).await;
    // Renewed every 12 s, each certificate expiring 6 s later.
    let validity = Duration::from_secs(18);
    let serving = config_map_webhooks(Tls::generate(["127.0.0.1"]).with_validity(validity))
        .keep_ca_bundle(client.clone(), [CaBundle::validating(&name)])
        .start(listener)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = ns.api();
    let denied = config_map("a", "deny");
    let reason = "no ConfigMaps labelled case=deny";
    wait_refused(&cms, &denied, reason).await;

    // Until two renewals are in the configuration (the first certificate long expired), every
    // call the API server makes reaches the handler.
    let configs = Api::<ValidatingWebhookConfiguration>::all(client);
    let bundle = || async {
        let config = configs.get(&name).await.unwrap();
        String::from_utf8(
            config.webhooks.unwrap()[0]
                .client_config
                .ca_bundle
                .clone()
                .unwrap()
                .0,
        )
        .unwrap()
    };
    let first = bundle().await;
    let mut seen = vec![first.clone()];
    let deadline = Instant::now() + GUARD;
    while seen.len() < 3 {
        assert!(Instant::now() < deadline, "two renewals within {GUARD:?}");
        let (_, message) = refusal(&cms, &denied, true).await.expect("refused");
        assert!(
            message.contains(reason),
            "a call failed during renewal: {message}"
        );
        let now = bundle().await;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        // Poll interval, bounded by the deadline above.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each renewal's bundle: the new CA and the one before it, never the first after that.
    let certs = |b: &str| b.matches("BEGIN CERTIFICATE").count();
    assert_eq!((certs(&seen[1]), certs(&seen[2])), (2, 2));
    assert!(seen[1].ends_with(first.as_str()));
    assert!(!seen[2].contains(first.as_str()));
    // The newest certificate is served once its caBundle had time to spread: verified by the
    // newest CA alone.
    let newest = seen[2]
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap();
    let direct = client_for(&base, newest);
    eventually(GUARD, "the newest certificate served", || async {
        let req = http::Request::post("/deny").body(b"{}".to_vec()).unwrap();
        matches!(direct.request_text(req).await, Err(kube::Error::Api(s)) if s.code == 400)
    })
    .await;
    drop(serving);
}

/// Every document of every manifest in `deploy/shelf/`.
fn shelf_manifests() -> Vec<serde_json::Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/shelf");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let docs = files.iter().flat_map(|f| {
        let text = std::fs::read_to_string(f).unwrap();
        serde_saphyr::from_multiple::<serde_json::Value>(&text).unwrap()
    });
    docs.filter(|d| !d.is_null()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shelf_manifests_are_accepted_and_the_crd_is_generated() {
    let Some(server) =
        shared_or_skip("the_shelf_manifests_are_accepted_and_the_crd_is_generated").await
    else {
        return;
    };
    let client = server.client();
    let manifests = shelf_manifests();
    let kinds: Vec<&str> = manifests
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        assert!(kinds.contains(&kind), "deploy/shelf has a {kind}");
    }

    // The CRD is the example's, but for how the API server reaches the conversion webhook.
    let crd = manifests
        .iter()
        .find(|m| m["kind"] == "CustomResourceDefinition")
        .unwrap();
    let crd: apiext::CustomResourceDefinition = serde_json::from_value(crd.clone()).unwrap();
    let client_config = crd
        .spec
        .conversion
        .as_ref()
        .unwrap()
        .webhook
        .as_ref()
        .unwrap();
    let generated = shelf::crd(client_config.client_config.clone().unwrap());
    assert_eq!(
        crd, generated,
        "deploy/shelf/01-crd.yaml is stale: regenerate it with `cargo run --example shelf-operator -- crd`"
    );

    // The namespace for real (nothing else uses it); everything else as a dry-run create (the API
    // server validates before it looks for an existing object), so that the webhooks configured
    // here never apply to other tests' objects.
    for m in &manifests {
        let gvk = kube::core::GroupVersionKind::try_from(&kube::core::TypeMeta {
            api_version: m["apiVersion"].as_str().unwrap().into(),
            kind: m["kind"].as_str().unwrap().into(),
        })
        .unwrap();
        let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
        let api: Api<kube::core::DynamicObject> = match m["metadata"]["namespace"].as_str() {
            Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
                Api::namespaced_with(client.clone(), ns, &resource)
            }
            _ => Api::all_with(client.clone(), &resource),
        };
        let name = m["metadata"]["name"].as_str().unwrap();
        let object: kube::core::DynamicObject = serde_json::from_value(m.clone()).unwrap();
        let pp = PostParams {
            dry_run: m["kind"] != "Namespace",
            ..Default::default()
        };
        match api.create(&pp, &object).await {
            Ok(_) => {}
            // Validated, then found to exist: the CRD another test of this binary installed.
            Err(kube::Error::Api(s))
                if s.code == 409 && m["kind"] == "CustomResourceDefinition" => {}
            Err(e) => panic!("{} {name}: {e}", m["kind"]),
        }
    }
}
