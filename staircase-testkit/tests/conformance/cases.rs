//! The conformance cases: the API semantics an operator relies on, exercised through
//! `kube::Api`, `kube::Discovery` and `kube::runtime::watcher` over HTTP.
//!
//! Included unchanged by two test targets, which differ only in [`crate::backend`]:
//! `tests/conformance.rs` (the embedded `staircase_testkit::ApiServer`, or whatever
//! `STAIRCASE_CONFORMANCE_TARGET` / `STAIRCASE_CONFORMANCE_KUBECONFIG` pick) and
//! `tests/conformance_real.rs` (the real kube-apiserver v1.37.2 of `staircase_testkit::real`).
//!
//! Every case talks to a [`Target`]: a client plus a fresh namespace. Where the real server is
//! asynchronous (CRD establishment, namespace content deletion, garbage collection) a case waits
//! for the condition under [`GUARD`]; where Kubernetes versions genuinely differ the expectation
//! is chosen by the server's version ([`Target::minor`]) and the difference is listed in the
//! staircase-apiserver's crate docs ("Fidelity against a real kube-apiserver"). Cases that need the embedded
//! server's fault injection, stats or lifecycle return early on other backends.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    Preconditions, WatchEvent, WatchParams,
};
use kube::core::GroupVersionKind;
use kube::runtime::watcher;
use kube::{Client, Discovery, ResourceExt};
use serde_json::{Value, json};
use staircase_testkit::{ApiServer, Fault, Verb};

/// Which server the cases of a test target run against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A fresh in-process `staircase_testkit::ApiServer` per case.
    Embedded,
    /// The shared real kube-apiserver of this test binary (`RealApiServer::shared`), a namespace
    /// per case; skipped (or failed under `CI=true`) when its binaries are missing.
    Real,
    /// Any cluster, through a kubeconfig file.
    #[allow(dead_code)] // chosen by the `conformance` target's environment only
    Kubeconfig(String),
}

/// The ConfigMap kube-controller-manager's root-CA publisher puts into every namespace (the
/// embedded server creates it too); cases about "our" ConfigMaps leave it out.
const ROOT_CA: &str = "kube-root-ca.crt";

/// A place to run conformance tests: a client and a namespace of our own.
struct Target {
    client: Client,
    ns: String,
    server: Option<ApiServer>,
    /// The server's minor version (`/version`), for expectations that differ by release.
    minor: u32,
}

/// Upper bound for anything a case waits for (events, asynchronous controllers); the embedded
/// server settles at once, the real one's controllers within seconds.
const GUARD: Duration = Duration::from_secs(60);

impl Target {
    /// A target on the backend of this test binary, or `None` (after saying why) when the real
    /// server's binaries are missing outside CI.
    async fn new(case: &str) -> Option<Target> {
        let (client, ns, server) = match crate::backend() {
            Backend::Embedded => {
                let s = ApiServer::start().await.unwrap();
                let client = s.client();
                let ns = create_namespace(&client).await;
                (client, ns, Some(s))
            }
            Backend::Real => {
                let real = staircase_testkit::real::shared_or_skip(case).await?;
                let ns = real.namespace(case).await.unwrap();
                (ns.client(), ns.name().to_string(), None)
            }
            Backend::Kubeconfig(path) => {
                let kc = kube::config::Kubeconfig::read_from(path).unwrap();
                let cfg = kube::config::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .unwrap();
                let client = Client::try_from(cfg).unwrap();
                let ns = create_namespace(&client).await;
                (client, ns, None)
            }
        };
        let v = client.apiserver_version().await.unwrap();
        let minor = v
            .minor
            .trim_end_matches('+')
            .parse()
            .unwrap_or_else(|_| panic!("minor version {:?}", v.minor));
        Some(Target {
            client,
            ns,
            server,
            minor,
        })
    }

    fn fake(&self) -> Option<&ApiServer> {
        self.server.as_ref()
    }

    /// The server's Kubernetes minor version (33 for the embedded server, 37 for the real one,
    /// anything for a cluster named by `STAIRCASE_CONFORMANCE_KUBECONFIG`).
    fn minor(&self) -> u32 {
        self.minor
    }

    fn cms(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn deploys(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        ct: &str,
        body: Vec<u8>,
    ) -> Result<String, kube::Error> {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ct)
            .body(body)
            .unwrap();
        self.client.request_text(req).await
    }
}

/// Cases about the embedded server itself (faults, stats, lifecycle) run only on it.
fn embedded_backend() -> bool {
    crate::backend() == Backend::Embedded
}

async fn create_namespace(client: &Client) -> String {
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"generateName": "conformance-"}})).unwrap();
    nss.create(&PostParams::default(), &ns)
        .await
        .unwrap()
        .name_any()
}

/// Polls `check` until it holds; panics after [`GUARD`]. For conditions a real cluster reaches
/// asynchronously (the embedded server has reached them when the write returns).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + GUARD;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {GUARD:?} waiting for {what}"
        );
        // Poll interval, bounded by the guard above.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (watch-based) until the object named `name` no longer exists; false after [`GUARD`].
/// (Not `conditions::is_deleted("")`: that holds for any object whose uid is not "".)
async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let cond = kube::runtime::wait::await_condition(api.clone(), name, |o: Option<&K>| o.is_none());
    tokio::time::timeout(GUARD, cond).await.is_ok()
}

/// Names of the ConfigMaps in a list, sorted, without [`ROOT_CA`].
fn ours(l: &kube::core::ObjectList<ConfigMap>) -> Vec<String> {
    let mut v: Vec<String> = l
        .items
        .iter()
        .map(|c| c.name_any())
        .filter(|n| n != ROOT_CA)
        .collect();
    v.sort();
    v
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let data: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        }
    }))
    .unwrap()
}

/// The code and reason of an API error.
fn err_of<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn rv(o: &impl ResourceExt) -> u64 {
    o.resource_version().unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// CRD helpers

fn widget_crd(group: &str, scope: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group,
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "scope": scope,
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {
                            "replicas": {"type": "integer", "minimum": 0},
                            "color": {"type": "string", "enum": ["red", "blue"]}
                        }},
                        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
                    }
                }}
            }, {
                "name": "v1beta1", "served": true, "storage": false,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    }))
    .unwrap()
}

/// Creates a fresh CRD in a group unique to the test and waits until it is usable: condition
/// `Established` (set asynchronously by the real server's establishing controller; watch-based)
/// and both versions served (the real server answers `404 page not found` for a moment after
/// `Established`, until its CRD handler has picked the definition up). Returns the ApiResource of
/// v1 widgets.
async fn install_widgets(t: &Target, scope: &str) -> ApiResource {
    let group = format!("{}.example.com", t.ns);
    install_crd(t, widget_crd(&group, scope), &["v1", "v1beta1"]).await
}

/// Creates `crd` and waits until it is usable (see [`install_widgets`]); returns the
/// ApiResource of its first version.
async fn install_crd(t: &Target, crd: CustomResourceDefinition, versions: &[&str]) -> ApiResource {
    let (group, plural) = (crd.spec.group.clone(), crd.spec.names.plural.clone());
    let kind = crd.spec.names.kind.clone();
    let crds: Api<CustomResourceDefinition> = Api::all(t.client.clone());
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let crd_name = format!("{plural}.{group}");
    let established = kube::runtime::wait::await_condition(
        crds,
        &crd_name,
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(GUARD, established)
        .await
        .expect("CRD Established in time")
        .unwrap();
    for v in versions {
        let path = format!("/apis/{group}/{v}/{plural}");
        eventually(&format!("{path} served"), || async {
            t.raw("GET", &path, "application/json", vec![])
                .await
                .is_ok()
        })
        .await;
    }
    let gvk = GroupVersionKind::gvk(&group, versions[0], &kind);
    ApiResource::from_gvk_with_plural(&gvk, &plural)
}

/// Installs a one-version (`v1`) namespaced CRD in the test's group: `version` holds what the
/// case is about (its schema, selectable fields), merged over name, served and storage.
async fn install_v1_crd(t: &Target, plural: &str, kind: &str, version: Value) -> ApiResource {
    let group = format!("{}.example.com", t.ns);
    let mut v = json!({"name": "v1", "served": true, "storage": true});
    merge(&mut v, version);
    let crd = serde_json::from_value(json!({
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "versions": [v]
        }
    }))
    .unwrap();
    install_crd(t, crd, &["v1"]).await
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        t.extend(e);
    }
}

/// A Widget of `ar`'s version. Custom resources must carry apiVersion and kind (the real server
/// answers 400 "Object 'Kind' is missing" otherwise; built-in kinds may leave them out).
fn widget(ar: &ApiResource, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": ar.api_version, "kind": ar.kind,
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

fn widget_api(t: &Target, ar: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(t.client.clone(), &t.ns, ar)
}

// ---------------------------------------------------------------------------------------------
// 1. Discovery

#[tokio::test]
async fn discovery_lists_builtins_with_scope_verbs_and_subresources() {
    let Some(t) = Target::new("discovery_lists_builtins_with_scope_verbs_and_subresources").await
    else {
        return;
    };
    let v = t.client.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
    if t.fake().is_some() {
        assert_eq!(v.git_version, "v1.33.0-staircase");
    }
    let d = Discovery::new(t.client.clone()).run().await.unwrap();
    let find = |g: &str, kind: &str| {
        d.groups()
            .flat_map(|grp| grp.recommended_resources())
            .find(|(ar, _)| ar.group == g && ar.kind == kind)
            .unwrap_or_else(|| panic!("{g}/{kind} not discovered"))
    };
    for (g, kind, plural, namespaced) in [
        ("", "Namespace", "namespaces", false),
        ("", "ConfigMap", "configmaps", true),
        ("", "Secret", "secrets", true),
        ("", "Service", "services", true),
        ("", "ServiceAccount", "serviceaccounts", true),
        ("", "Pod", "pods", true),
        ("", "Event", "events", true),
        ("events.k8s.io", "Event", "events", true),
        ("apps", "Deployment", "deployments", true),
        ("apps", "StatefulSet", "statefulsets", true),
        ("apps", "DaemonSet", "daemonsets", true),
        ("apps", "ReplicaSet", "replicasets", true),
        ("batch", "Job", "jobs", true),
        ("coordination.k8s.io", "Lease", "leases", true),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        ),
    ] {
        let (ar, caps) = find(g, kind);
        assert_eq!(ar.plural, plural);
        assert_eq!(
            caps.scope == kube::discovery::Scope::Namespaced,
            namespaced,
            "{kind}"
        );
        for verb in [
            "get", "list", "watch", "create", "update", "patch", "delete",
        ] {
            assert!(caps.supports_operation(verb), "{kind} {verb}");
        }
    }
    // Status subresources appear as `plural/status` in the legacy resource list.
    let apps: Value = serde_json::from_str(
        &t.raw("GET", "/apis/apps/v1", "application/json", vec![])
            .await
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = apps["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for n in [
        "deployments/status",
        "statefulsets/status",
        "replicasets/status",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let core: Value = serde_json::from_str(
        &t.raw("GET", "/api/v1", "application/json", vec![])
            .await
            .unwrap(),
    )
    .unwrap();
    let cmr = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "configmaps")
        .unwrap();
    assert_eq!(cmr["shortNames"], json!(["cm"]));
    // (Filled in for built-in resources since 1.27; `""` before.)
    assert_eq!(cmr["singularName"], "configmap", "{cmr}");
    let names: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for n in ["namespaces/status", "services/status", "pods/status"] {
        assert!(names.contains(&n), "{n}");
    }
    assert!(!names.contains(&"configmaps/status"));
    let groups: Value = serde_json::from_str(
        &t.raw("GET", "/apis", "application/json", vec![])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(groups["kind"], "APIGroupList");
    let apps_group: Value = serde_json::from_str(
        &t.raw("GET", "/apis/apps", "application/json", vec![])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(apps_group["preferredVersion"]["groupVersion"], "apps/v1");
}

/// What kube-apiserver 1.37 answers aggregated discovery with (`Content-Type`, exactly).
const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The `Accept` header client-go (kubectl) and kube-rs send to `/api` and `/apis`.
const ACCEPT_DISCOVERY: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

/// GETs `path` with `accept`; returns the response's `Content-Type` and JSON body.
async fn get_accepting(t: &Target, path: &str, accept: &str) -> (String, Value) {
    let req = http::Request::get(path)
        .header(http::header::ACCEPT, accept)
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = t.client.send(req).await.unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    let ct = resp.headers()[http::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (ct, serde_json::from_slice(&body).unwrap())
}

/// `/api` or `/apis` as aggregated discovery, asked for as client-go and kube-rs ask.
async fn aggregated(t: &Target, path: &str) -> Value {
    let (ct, doc) = get_accepting(t, path, ACCEPT_DISCOVERY).await;
    assert_eq!(ct, AGGREGATED_V2, "{path}");
    assert_eq!(doc["kind"], "APIGroupDiscoveryList", "{path}");
    assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2", "{path}");
    doc
}

/// The item of group `name` in an `APIGroupDiscoveryList`.
fn group_of<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"].as_str().unwrap_or("") == name)
}

/// The version names of a group item, in the order served.
fn versions_of(group: &Value) -> Vec<&str> {
    group["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect()
}

/// Resource `plural` of version `version` of a group item.
fn resource_of<'a>(group: &'a Value, version: &str, plural: &str) -> &'a Value {
    let v = group["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == version)
        .unwrap_or_else(|| panic!("version {version} in {group}"));
    assert_eq!(v["freshness"], "Current");
    v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == plural)
        .unwrap_or_else(|| panic!("{plural} in {version}"))
}

/// A resource's verbs, sorted (kube-apiserver sorts built-ins' but not custom resources').
fn sorted_verbs(r: &Value) -> Vec<&str> {
    let mut v: Vec<&str> = r["verbs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    v.sort();
    v
}

/// A resource's subresources as (name, responseKind, verbs), in the order listed.
fn subresources_of(r: &Value) -> Vec<(&str, Value, Value)> {
    r["subresources"]
        .as_array()
        .map(|subs| {
            subs.iter()
                .map(|s| {
                    let name = s["subresource"].as_str().unwrap();
                    (name, s["responseKind"].clone(), s["verbs"].clone())
                })
                .collect()
        })
        .unwrap_or_default()
}

const ALL_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Aggregated discovery (`apidiscovery.k8s.io/v2`), which kubectl and client-go ask `/api` and
/// `/apis` for before anything else: its content type, built-in resources with scope, verbs,
/// short names and subresources, a CRD's served versions (preferred first) with theirs, and the
/// CRD's group gone once the CRD is deleted. A plain JSON request still gets the legacy lists.
#[tokio::test]
async fn aggregated_discovery_lists_builtins_and_crds() {
    let Some(t) = Target::new("aggregated_discovery_lists_builtins_and_crds").await else {
        return;
    };
    let rw = json!(["get", "patch", "update"]);
    let core = aggregated(&t, "/api").await;
    let items = core["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{core}");
    assert_eq!(items[0]["metadata"], json!({}));
    assert_eq!(versions_of(&items[0]), ["v1"]);
    let cm = resource_of(&items[0], "v1", "configmaps");
    assert_eq!(cm["scope"], "Namespaced");
    assert_eq!(cm["singularResource"], "configmap");
    assert_eq!(cm["shortNames"], json!(["cm"]));
    assert_eq!(
        cm["responseKind"],
        json!({"group": "", "version": "", "kind": "ConfigMap"})
    );
    assert_eq!(cm["verbs"], json!(ALL_VERBS), "built-in verbs come sorted");
    assert!(cm.get("subresources").is_none(), "{cm}");
    let ns = resource_of(&items[0], "v1", "namespaces");
    assert_eq!(ns["scope"], "Cluster");
    let ns_subs: Vec<&str> = subresources_of(ns).iter().map(|s| s.0).collect();
    assert_eq!(ns_subs, ["finalize", "status"]);

    let apis = aggregated(&t, "/apis").await;
    assert!(
        group_of(&apis, "").is_none(),
        "the core group is only at /api"
    );
    let apps = group_of(&apis, "apps").expect("apps");
    assert_eq!(versions_of(apps), ["v1"]);
    let deploy = resource_of(apps, "v1", "deployments");
    assert_eq!(deploy["scope"], "Namespaced");
    assert_eq!(deploy["singularResource"], "deployment");
    assert_eq!(deploy["shortNames"], json!(["deploy"]));
    assert_eq!(deploy["categories"], json!(["all"]));
    assert_eq!(deploy["responseKind"]["kind"], "Deployment");
    assert_eq!(
        subresources_of(deploy),
        [
            (
                "scale",
                json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
                rw.clone()
            ),
            (
                "status",
                json!({"group": "", "version": "", "kind": "Deployment"}),
                rw.clone()
            ),
        ]
    );
    let crds = group_of(&apis, "apiextensions.k8s.io").expect("apiextensions.k8s.io");
    let crd_res = resource_of(crds, "v1", "customresourcedefinitions");
    assert_eq!(crd_res["scope"], "Cluster");
    // Groups come in kube-apiserver's priority order.
    let order = [
        "apps",
        "events.k8s.io",
        "batch",
        "rbac.authorization.k8s.io",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "coordination.k8s.io",
    ];
    for pair in order.windows(2) {
        assert!(
            position_in(&apis, pair[0]) < position_in(&apis, pair[1]),
            "{pair:?}"
        );
    }

    // A CRD whose versions are listed out of order, one of them not served.
    let group = format!("{}.example.com", t.ns);
    let schema = json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
    let gadgets: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "shortNames": ["gd"], "categories": ["things"]},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false, "schema": schema},
                {"name": "v1", "served": true, "storage": true, "schema": schema, "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}
                }},
                {"name": "v2alpha1", "served": true, "storage": false, "schema": schema},
                {"name": "v3", "served": false, "storage": false, "schema": schema}
            ]
        }
    }))
    .unwrap();
    install_crd(&t, gadgets, &["v1", "v1beta1", "v2alpha1"]).await;
    // The real server updates its aggregated document asynchronously.
    eventually("the CRD's versions in aggregated discovery", || async {
        let apis = aggregated(&t, "/apis").await;
        group_of(&apis, &group).is_some_and(|g| versions_of(g).len() == 3)
    })
    .await;
    let apis = aggregated(&t, "/apis").await;
    let gadget_group = group_of(&apis, &group).unwrap();
    assert_eq!(versions_of(gadget_group), ["v1", "v1beta1", "v2alpha1"]);
    assert!(position_in(&apis, &group) > position_in(&apis, "coordination.k8s.io"));
    for v in ["v1", "v1beta1", "v2alpha1"] {
        let r = resource_of(gadget_group, v, "gadgets");
        assert_eq!(r["scope"], "Namespaced");
        assert_eq!(r["singularResource"], "gadget");
        assert_eq!(r["shortNames"], json!(["gd"]));
        assert_eq!(r["categories"], json!(["things"]));
        assert_eq!(
            r["responseKind"],
            json!({"group": group, "version": v, "kind": "Gadget"})
        );
        assert_eq!(sorted_verbs(r), ALL_VERBS);
        let subs = subresources_of(r);
        if v == "v1" {
            assert_eq!(
                subs,
                [
                    (
                        "status",
                        json!({"group": group, "version": "v1", "kind": "Gadget"}),
                        rw.clone()
                    ),
                    (
                        "scale",
                        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
                        rw.clone()
                    ),
                ]
            );
        } else {
            assert!(subs.is_empty(), "{v}: {subs:?}");
        }
    }
    // kube-rs reads the same document.
    let d = Discovery::new(t.client.clone())
        .filter(&[&group])
        .run_aggregated()
        .await
        .unwrap();
    let g = d.get(&group).expect("group discovered");
    assert_eq!(g.preferred_version_or_latest(), "v1");
    let (ar, caps) = g.recommended_kind("Gadget").expect("Gadget");
    assert_eq!((ar.plural.as_str(), ar.version.as_str()), ("gadgets", "v1"));
    let mut subs: Vec<String> = caps
        .subresources
        .iter()
        .map(|(s, _)| s.plural.clone())
        .collect();
    subs.sort();
    assert_eq!(subs, ["scale", "status"]);

    // Plain JSON still gets the legacy list.
    let (ct, legacy) = get_accepting(&t, "/apis", "application/json").await;
    assert_eq!(ct, "application/json");
    assert_eq!(legacy["kind"], "APIGroupList");

    let crd_api: Api<CustomResourceDefinition> = Api::all(t.client.clone());
    crd_api
        .delete(&format!("gadgets.{group}"), &DeleteParams::default())
        .await
        .unwrap();
    eventually("the CRD's group gone from aggregated discovery", || async {
        group_of(&aggregated(&t, "/apis").await, &group).is_none()
    })
    .await;
}

/// Where group `name` comes in an `APIGroupDiscoveryList`.
fn position_in(doc: &Value, name: &str) -> usize {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .position(|i| i["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{name} in the list"))
}

// ---------------------------------------------------------------------------------------------
// 2. CRDs

#[tokio::test]
async fn crd_becomes_established_and_served() {
    let Some(t) = Target::new("crd_becomes_established_and_served").await else {
        return;
    };
    let ar = install_widgets(&t, "Namespaced").await;
    let crds: Api<CustomResourceDefinition> = Api::all(t.client.clone());
    let crd = crds.get(&format!("widgets.{}", ar.group)).await.unwrap();
    let status = crd.status.unwrap();
    let conds = status.conditions.unwrap();
    for ty in ["NamesAccepted", "Established"] {
        assert!(
            conds.iter().any(|c| c.type_ == ty && c.status == "True"),
            "{ty}"
        );
    }
    assert_eq!(status.accepted_names.unwrap().kind, "Widget");

    // Served in both versions, with shortNames, categories and the status subresource.
    let gv: Value = serde_json::from_str(
        &t.raw(
            "GET",
            &format!("/apis/{}/v1", ar.group),
            "application/json",
            vec![],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let res = gv["resources"].as_array().unwrap();
    let w = res.iter().find(|r| r["name"] == "widgets").unwrap();
    assert_eq!(w["shortNames"], json!(["wd"]));
    assert_eq!(w["categories"], json!(["all"]));
    assert_eq!(w["namespaced"], true);
    assert!(res.iter().any(|r| r["name"] == "widgets/status"));
    let d = Discovery::new(t.client.clone())
        .filter(&[&ar.group])
        .run()
        .await
        .unwrap();
    assert!(d.has_group(&ar.group));

    let api = widget_api(&t, &ar);
    let created = api
        .create(
            &PostParams::default(),
            &widget(&ar, "w1", json!({"replicas": 2})),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let spec = Patch::Merge(json!({"spec": {"replicas": 3}}));
    let p = api
        .patch("w1", &PatchParams::default(), &spec)
        .await
        .unwrap();
    assert_eq!(
        p.metadata.generation,
        Some(2),
        "spec changes bump generation"
    );
    let labels = Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}));
    let p = api
        .patch("w1", &PatchParams::default(), &labels)
        .await
        .unwrap();
    assert_eq!(
        p.metadata.generation,
        Some(2),
        "metadata changes do not bump generation"
    );
    // Reading through the other served version only changes apiVersion.
    let beta = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&ar.group, "v1beta1", "Widget"),
        "widgets",
    );
    let as_beta = widget_api(&t, &beta).get("w1").await.unwrap();
    assert_eq!(
        as_beta.types.unwrap().api_version,
        format!("{}/v1beta1", ar.group)
    );

    // Deleting the CRD stops serving the resource and removes its objects (the real server
    // first deletes the objects, holding the CRD with its `customresourcecleanup` finalizer,
    // and stops serving a moment after the CRD is gone).
    crds.delete(&format!("widgets.{}", ar.group), &DeleteParams::default())
        .await
        .unwrap();
    assert!(gone(&crds, &format!("widgets.{}", ar.group)).await);
    eventually("widgets no longer served", || async {
        matches!(api.get("w1").await, Err(kube::Error::Api(s)) if s.code == 404)
    })
    .await;
    let (code, ..) = err_of(
        api.create(&PostParams::default(), &widget(&ar, "w2", json!({})))
            .await,
    );
    assert_eq!(code, 404);
}

#[tokio::test]
async fn cluster_scoped_crd() {
    let Some(t) = Target::new("cluster_scoped_crd").await else {
        return;
    };
    let ar = install_widgets(&t, "Cluster").await;
    let api: Api<DynamicObject> = Api::all_with(t.client.clone(), &ar);
    let w = api
        .create(&PostParams::default(), &widget(&ar, "global", json!({})))
        .await
        .unwrap();
    assert_eq!(w.metadata.namespace, None);
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
}

/// CRD validation rules in CEL (`x-kubernetes-validations`): a broken rule is a `422` cause at
/// its field with its message (or `failed rule: ...`, or its `messageExpression`), a transition
/// rule (`oldSelf`) holds on updates only, and a rejected write stores nothing.
#[tokio::test]
async fn crd_validation_rules_in_cel() {
    let Some(t) = Target::new("crd_validation_rules_in_cel").await else {
        return;
    };
    let ar = install_v1_crd(
        &t,
        "gizmos",
        "Gizmo",
        json!({
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {
                    "type": "object",
                    "x-kubernetes-validations": [
                        {"rule": "self.replicas <= self.maxReplicas", "message": "replicas may not exceed maxReplicas"},
                        {"rule": "self.color == oldSelf.color", "message": "color is immutable"},
                        {"rule": "!self.color.startsWith('x')", "messageExpression": "'color ' + self.color + ' is reserved'"}
                    ],
                    "properties": {
                        "replicas": {"type": "integer", "x-kubernetes-validations": [{"rule": "self % 2 == 0"}]},
                        "maxReplicas": {"type": "integer"},
                        "color": {"type": "string"}
                    }
                }}
            }}
        }),
    )
    .await;
    let api = widget_api(&t, &ar);
    let gizmo = |name: &str, spec: Value| widget(&ar, name, spec);

    let r = api
        .create(
            &PostParams::default(),
            &gizmo(
                "bad",
                json!({"replicas": 3, "maxReplicas": 2, "color": "xray"}),
            ),
        )
        .await;
    let Err(kube::Error::Api(s)) = r else {
        panic!("expected 422, got {r:?}")
    };
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let mut causes: Vec<String> = s
        .details
        .unwrap()
        .causes
        .iter()
        .map(|c| format!("{} {}: {}", c.reason, c.field, c.message))
        .collect();
    causes.sort();
    assert_eq!(
        causes,
        [
            "FieldValueInvalid spec.replicas: Invalid value: 3: failed rule: self % 2 == 0",
            "FieldValueInvalid spec: Invalid value: color xray is reserved",
            "FieldValueInvalid spec: Invalid value: replicas may not exceed maxReplicas",
        ],
        "{}",
        s.message
    );
    assert!(api.get_opt("bad").await.unwrap().is_none());

    // The transition rule: a create has no old object; an update must keep the color.
    api.create(
        &PostParams::default(),
        &gizmo(
            "g",
            json!({"replicas": 2, "maxReplicas": 4, "color": "red"}),
        ),
    )
    .await
    .unwrap();
    let patch = json!({"spec": {"color": "blue"}});
    let (code, reason, msg) = err_of(
        api.patch("g", &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        msg.ends_with("spec: Invalid value: color is immutable"),
        "{msg}"
    );
    let patch = json!({"spec": {"replicas": 4}});
    api.patch("g", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// A CRD version's `selectableFields` can be used in field selectors of lists and watches; an
/// undeclared field is refused.
#[tokio::test]
async fn crd_selectable_fields() {
    let Some(t) = Target::new("crd_selectable_fields").await else {
        return;
    };
    let ar = install_v1_crd(
        &t,
        "gadgets",
        "Gadget",
        json!({
            "selectableFields": [{"jsonPath": ".spec.color"}, {"jsonPath": ".spec.size"}],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "color": {"type": "string"}, "size": {"type": "integer"}, "shape": {"type": "string"}
                }}}
            }}
        }),
    )
    .await;
    let api = widget_api(&t, &ar);
    for (name, color, size) in [("a", "red", 1), ("b", "blue", 2), ("c", "red", 3)] {
        api.create(
            &PostParams::default(),
            &widget(
                &ar,
                name,
                json!({"color": color, "size": size, "shape": "round"}),
            ),
        )
        .await
        .unwrap();
    }
    let names = |l: kube::core::ObjectList<DynamicObject>| {
        let mut v: Vec<String> = l.items.iter().map(|o| o.name_any()).collect();
        v.sort();
        v
    };
    let red = api
        .list(&ListParams::default().fields("spec.color=red"))
        .await
        .unwrap();
    assert_eq!(names(red), ["a", "c"]);
    let big_red = api
        .list(&ListParams::default().fields("spec.color=red,spec.size!=1"))
        .await
        .unwrap();
    assert_eq!(names(big_red), ["c"]);
    let (code, _, msg) = err_of(
        api.list(&ListParams::default().fields("spec.shape=round"))
            .await,
    );
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("spec.shape"), "{msg}");
}

#[tokio::test]
async fn crd_schema_validation_and_field_validation() {
    let Some(t) = Target::new("crd_schema_validation_and_field_validation").await else {
        return;
    };
    let ar = install_widgets(&t, "Namespaced").await;
    let api = widget_api(&t, &ar);
    let r = api
        .create(
            &PostParams::default(),
            &widget(&ar, "bad", json!({"replicas": -1, "color": "green"})),
        )
        .await;
    let Err(kube::Error::Api(s)) = r else {
        panic!("expected 422, got {r:?}")
    };
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(
        s.message
            .starts_with(&format!("Widget.{} \"bad\" is invalid: [", ar.group)),
        "{}",
        s.message
    );
    let causes = s.details.unwrap().causes;
    let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
    assert!(
        fields.contains(&"spec.replicas") && fields.contains(&"spec.color"),
        "{fields:?}"
    );
    assert!(
        api.get_opt("bad").await.unwrap().is_none(),
        "a rejected write stores nothing"
    );
    // Custom resources are decoded as unstructured objects: kind and apiVersion are required.
    let mut kindless = widget(&ar, "kindless", json!({}));
    kindless.types = None;
    let (code, reason, msg) = err_of(api.create(&PostParams::default(), &kindless).await);
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    assert!(msg.contains("Object 'Kind' is missing"), "{msg}");

    // Unknown fields: pruned by default, rejected with fieldValidation=Strict.
    let body = |name: &str| {
        serde_json::to_vec(&json!({
            "apiVersion": format!("{}/v1", ar.group), "kind": "Widget",
            "metadata": {"name": name}, "spec": {"replicas": 1, "x": 1}
        }))
        .unwrap()
    };
    let path = format!("/apis/{}/v1/namespaces/{}/widgets", ar.group, t.ns);
    let strict = t
        .raw(
            "POST",
            &format!("{path}?fieldValidation=Strict"),
            "application/json",
            body("strict"),
        )
        .await;
    if t.minor() >= 25 {
        let (code, reason, msg) = err_of(strict);
        assert_eq!((code, reason.as_str()), (400, "BadRequest"));
        assert!(
            msg.contains("strict decoding error: unknown field \"spec.x\""),
            "{msg}"
        );
    } else {
        // Server-side field validation is on by default only since 1.25 (beta); older servers
        // ignore the parameter and prune.
        strict.unwrap();
    }
    t.raw(
        "POST",
        &format!("{path}?fieldValidation=Ignore"),
        "application/json",
        body("pruned"),
    )
    .await
    .unwrap();
    let stored = api.get("pruned").await.unwrap();
    assert_eq!(
        stored.data["spec"],
        json!({"replicas": 1}),
        "unknown fields are pruned"
    );
    // fieldValidation=Warn (the default) prunes too and says so in a `Warning` header (what
    // kubectl prints); Ignore says nothing.
    let warnings = |query: &'static str, name: &'static str| {
        let req = http::Request::post(format!("{path}{query}"))
            .header("content-type", "application/json")
            .body(kube::client::Body::from(body(name)))
            .unwrap();
        let client = t.client.clone();
        async move {
            let resp = client.send(req).await.unwrap();
            assert_eq!(resp.status(), 201, "{query}");
            resp.headers()
                .get_all("warning")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let unknown = [r#"299 - "unknown field \"spec.x\"""#];
    assert_eq!(warnings("?fieldValidation=Warn", "warn").await, unknown);
    assert_eq!(warnings("", "default").await, unknown);
    assert!(
        warnings("?fieldValidation=Ignore", "quiet")
            .await
            .is_empty()
    );

    // Strategic merge patch is for built-in kinds only.
    let (code, reason, _) = err_of(
        api.patch(
            "pruned",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"replicas": 2}})),
        )
        .await,
    );
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
}

// ---------------------------------------------------------------------------------------------
// 3. Metadata

#[tokio::test]
async fn server_sets_metadata() {
    let Some(t) = Target::new("server_sets_metadata").await else {
        return;
    };
    let a = t
        .cms()
        .create(&PostParams::default(), &cm("a", &[("k", "v")]))
        .await
        .unwrap();
    let uid = a.metadata.uid.clone().unwrap();
    assert!(uuid_like(&uid), "{uid}");
    let ts = serde_json::to_value(&a.metadata.creation_timestamp).unwrap();
    let ts = ts.as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.len() == 20, "{ts}");
    // Only kinds whose strategy tracks a spec get `generation` (workloads, CRDs, custom
    // resources); ConfigMaps never have one.
    assert_eq!(a.metadata.generation, None);
    let b = t
        .cms()
        .create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();
    assert!(rv(&b) > rv(&a), "one global increasing resourceVersion");

    let mut g = cm("", &[]);
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let g = t.cms().create(&PostParams::default(), &g).await.unwrap();
    let name = g.name_any();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    assert!(
        name[4..]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );

    // No generation appears on a data change either (see status_subresource_splits_writes
    // for the generation rules of Deployments and custom resources)...
    let a2 = t
        .cms()
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "v2"}})),
        )
        .await
        .unwrap();
    assert_eq!(a2.metadata.generation, None);
    assert!(rv(&a2) > rv(&a));
    let a3 = t
        .cms()
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(a3.metadata.generation, None);
    assert!(rv(&a3) > rv(&a2));
    // ...and a no-op write changes nothing, not even the resourceVersion.
    let a4 = t
        .cms()
        .replace("a", &PostParams::default(), &a3)
        .await
        .unwrap();
    assert_eq!(rv(&a4), rv(&a3));
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn names_and_namespaces_are_validated() {
    let Some(t) = Target::new("names_and_namespaces_are_validated").await else {
        return;
    };
    let (code, reason, msg) = err_of(
        t.cms()
            .create(&PostParams::default(), &cm("Bad_Name", &[]))
            .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        msg.starts_with(
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
        ),
        "{msg}"
    );
    let mut nameless = cm("x", &[]);
    nameless.metadata.name = None;
    let (code, ..) = err_of(t.cms().create(&PostParams::default(), &nameless).await);
    assert_eq!(code, 422);
    let mut badlabel = cm("ok", &[]);
    badlabel.labels_mut().insert("bad key!".into(), "v".into());
    let (code, ..) = err_of(t.cms().create(&PostParams::default(), &badlabel).await);
    assert_eq!(code, 422);

    let nss: Api<Namespace> = Api::all(t.client.clone());
    let dotted: Namespace = serde_json::from_value(json!({"metadata": {"name": "a.b"}})).unwrap();
    let (code, ..) = err_of(nss.create(&PostParams::default(), &dotted).await);
    assert_eq!(code, 422, "namespaces are DNS labels");

    let missing: Api<ConfigMap> = Api::namespaced(t.client.clone(), "does-not-exist");
    let (code, reason, msg) = err_of(missing.create(&PostParams::default(), &cm("x", &[])).await);
    assert_eq!(
        (code, reason.as_str(), msg.as_str()),
        (404, "NotFound", "namespaces \"does-not-exist\" not found")
    );

    for n in ["default", "kube-system", "kube-public"] {
        let ns = nss.get(n).await.unwrap();
        assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
        let (code, reason, _) = err_of(nss.delete(n, &DeleteParams::default()).await);
        assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    }
}

#[tokio::test]
async fn namespace_deletion_removes_contents() {
    let Some(t) = Target::new("namespace_deletion_removes_contents").await else {
        return;
    };
    let nss: Api<Namespace> = Api::all(t.client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": format!("{}-doomed", t.ns)}})).unwrap();
    let ns = nss
        .create(&PostParams::default(), &ns)
        .await
        .unwrap()
        .name_any();
    assert_eq!(
        nss.get(&ns).await.unwrap().status.unwrap().phase.as_deref(),
        Some("Active")
    );
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &ns);
    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.create(&PostParams::default(), &cm("free", &[]))
        .await
        .unwrap();
    nss.delete(&ns, &DeleteParams::default()).await.unwrap();
    let terminating = nss.get(&ns).await.unwrap();
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    // The real server's namespace controller removes the contents asynchronously.
    assert!(gone(&cms, "free").await, "contents removed");
    assert!(
        cms.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let (code, reason, _) = err_of(cms.create(&PostParams::default(), &cm("late", &[])).await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    // Releasing the last finalizer empties the namespace, which then goes away.
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(gone(&nss, &ns).await, "the emptied namespace goes away");
}

// ---------------------------------------------------------------------------------------------
// 4. Verbs

#[tokio::test]
async fn list_with_label_and_field_selectors() {
    let Some(t) = Target::new("list_with_label_and_field_selectors").await else {
        return;
    };
    for (n, app, tier) in [
        ("a", "web", "fe"),
        ("b", "web", "be"),
        ("c", "db", "be"),
        ("d", "", ""),
    ] {
        let mut c = cm(n, &[]);
        if !app.is_empty() {
            c.labels_mut().insert("app".into(), app.into());
            c.labels_mut().insert("tier".into(), tier.into());
        }
        t.cms().create(&PostParams::default(), &c).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| ours(&l).join(",");
    for (sel, want) in [
        ("app=web", "a,b"),
        ("app==web", "a,b"),
        ("app!=web", "c,d"),
        ("app in (web,db)", "a,b,c"),
        ("app notin (web)", "c,d"),
        ("tier", "a,b,c"),
        ("!tier", "d"),
        ("app=web,tier=be", "b"),
    ] {
        let l = t
            .cms()
            .list(&ListParams::default().labels(sel))
            .await
            .unwrap();
        assert_eq!(names(l), want, "{sel}");
    }
    let l = t
        .cms()
        .list(&ListParams::default().fields("metadata.name=c"))
        .await
        .unwrap();
    assert_eq!(names(l), "c");
    let l = t
        .cms()
        .list(&ListParams::default().fields("metadata.name!=c"))
        .await
        .unwrap();
    assert!(!names(l).contains('c'));
    let l = t
        .cms()
        .list(&ListParams::default().fields(&format!("metadata.namespace={}", t.ns)))
        .await
        .unwrap();
    assert_eq!(ours(&l).len(), 4);
    let (code, ..) = err_of(
        t.cms()
            .list(&ListParams::default().fields("data.x=1"))
            .await,
    );
    assert_eq!(code, 400);
    let (code, ..) = err_of(
        t.cms()
            .list(&ListParams::default().labels("app in web"))
            .await,
    );
    assert_eq!(code, 400);

    // All namespaces (other cases share the server: count only ours), and the list
    // resourceVersion is the current global one: at least that of the newest object (other
    // writers, such as a real cluster's controllers, may have moved it further).
    let all: Api<ConfigMap> = Api::all(t.client.clone());
    let l = all
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert!(l.items.iter().all(|c| c.namespace().is_some()));
    let mine = l
        .items
        .iter()
        .filter(|c| c.namespace().as_deref() == Some(t.ns.as_str()))
        .count();
    assert_eq!(mine, 2);
    let newest = t
        .cms()
        .create(&PostParams::default(), &cm("e", &[]))
        .await
        .unwrap();
    let l = t.cms().list(&ListParams::default()).await.unwrap();
    assert!(l.metadata.resource_version.unwrap().parse::<u64>().unwrap() >= rv(&newest));
}

#[tokio::test]
async fn list_pagination() {
    let Some(t) = Target::new("list_pagination").await else {
        return;
    };
    for i in 0..7 {
        t.cms()
            .create(&PostParams::default(), &cm(&format!("p{i}"), &[]))
            .await
            .unwrap();
    }
    let mut seen = vec![];
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(3);
        if let Some(tk) = &token {
            lp = lp.continue_token(tk);
        }
        let page = t.cms().list(&lp).await.unwrap();
        pages += 1;
        seen.extend(
            page.items
                .iter()
                .map(|c| c.name_any())
                .filter(|n| n != ROOT_CA),
        );
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => {
                assert!(page.metadata.remaining_item_count.unwrap() > 0);
                token = Some(c);
            }
            _ => break,
        }
    }
    assert_eq!(pages, 3, "7 ConfigMaps and {ROOT_CA} in pages of 3");
    assert_eq!(seen, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
    let (code, ..) = err_of(
        t.cms()
            .list(&ListParams::default().continue_token("garbage!"))
            .await,
    );
    assert_eq!(code, 400);
}

#[tokio::test]
async fn list_resource_version_match() {
    let Some(t) = Target::new("list_resource_version_match").await else {
        return;
    };
    t.cms()
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let at = t.cms().list(&ListParams::default()).await.unwrap();
    let rv = at.metadata.resource_version.clone().unwrap();
    let path = format!("/api/v1/namespaces/{}/configmaps", t.ns);
    let names = |body: &str| {
        let v: Value = serde_json::from_str(body).unwrap();
        let mut n: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .filter(|n| n != ROOT_CA)
            .collect();
        n.sort();
        (
            n,
            v["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    for m in ["NotOlderThan", "Exact"] {
        let body = t
            .raw(
                "GET",
                &format!("{path}?resourceVersion={rv}&resourceVersionMatch={m}"),
                "application/json",
                vec![],
            )
            .await
            .unwrap();
        let (n, list_rv) = names(&body);
        assert_eq!(n, ["a"], "{m}");
        let list_rv: u64 = list_rv.parse().unwrap();
        if m == "Exact" {
            assert_eq!(list_rv.to_string(), rv);
        } else {
            assert!(list_rv >= rv.parse().unwrap(), "{m}");
        }
    }
    let target = &t;
    let bad = |query: &'static str| {
        let uri = format!("{path}?{query}");
        async move { target.raw("GET", &uri, "application/json", vec![]).await }
    };
    let forbidden = |msg: &'static str| ("FieldValueForbidden", "resourceVersionMatch", msg);
    assert_invalid(
        bad("resourceVersionMatch=NotOlderThan").await,
        "ListOptions",
        "meta.k8s.io",
        "",
        &[forbidden(
            "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        )],
    );
    assert_invalid(
        bad("resourceVersion=0&resourceVersionMatch=Exact").await,
        "ListOptions",
        "meta.k8s.io",
        "",
        &[forbidden(
            "Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        )],
    );
    assert_invalid(
        bad("resourceVersion=0&resourceVersionMatch=Newest").await,
        "ListOptions",
        "meta.k8s.io",
        "",
        &[(
            "FieldValueNotSupported",
            "resourceVersionMatch",
            "Unsupported value: \"Newest\": supported values: \"Exact\", \"NotOlderThan\", \"\"",
        )],
    );
}

#[tokio::test]
async fn create_replace_and_conflicts() {
    let Some(t) = Target::new("create_replace_and_conflicts").await else {
        return;
    };
    let a = t
        .cms()
        .create(&PostParams::default(), &cm("a", &[("k", "1")]))
        .await
        .unwrap();
    let (code, reason, msg) = err_of(t.cms().create(&PostParams::default(), &cm("a", &[])).await);
    assert_eq!(
        (code, reason.as_str(), msg.as_str()),
        (409, "AlreadyExists", "configmaps \"a\" already exists")
    );

    let mut b = a.clone();
    b.data = Some([("k".to_string(), "2".to_string())].into());
    let b = t
        .cms()
        .replace("a", &PostParams::default(), &b)
        .await
        .unwrap();
    assert!(rv(&b) > rv(&a));
    // A stale resourceVersion conflicts, with the real server's message.
    let (code, reason, msg) = err_of(t.cms().replace("a", &PostParams::default(), &a).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        msg,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Without a resourceVersion a PUT is unconditional.
    let mut c = cm("a", &[("k", "3")]);
    c.metadata.resource_version = None;
    let c = t
        .cms()
        .replace("a", &PostParams::default(), &c)
        .await
        .unwrap();
    assert_eq!(c.data.unwrap()["k"], "3");
    assert_eq!(c.metadata.uid, a.metadata.uid, "uid survives replace");
    let (code, ..) = err_of(
        t.cms()
            .replace("nope", &PostParams::default(), &cm("nope", &[]))
            .await,
    );
    assert_eq!(code, 404);

    // dryRun=All validates without storing.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    t.cms().create(&dry, &cm("ghost", &[])).await.unwrap();
    assert!(t.cms().get_opt("ghost").await.unwrap().is_none());
    let mut d = cm("a", &[("k", "dry")]);
    d.metadata.resource_version = None;
    t.cms().replace("a", &dry, &d).await.unwrap();
    assert_eq!(t.cms().get("a").await.unwrap().data.unwrap()["k"], "3");
}

/// Whether `name` is `prefix` plus the real server's 5-character suffix (no vowels, no
/// look-alike characters).
fn generated_from(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|s| {
        s.len() == 5 && s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
    })
}

#[tokio::test]
async fn generate_name_and_dry_run_all() {
    let Some(t) = Target::new("generate_name_and_dry_run_all").await else {
        return;
    };
    let gen_cm = |prefix: &str| {
        let mut c = cm("", &[("k", "1")]);
        c.metadata.name = None;
        c.metadata.generate_name = Some(prefix.into());
        c
    };
    let a = t
        .cms()
        .create(&PostParams::default(), &gen_cm("gen-"))
        .await
        .unwrap();
    assert!(generated_from(&a.name_any(), "gen-"), "{}", a.name_any());
    assert_eq!(a.metadata.generate_name.as_deref(), Some("gen-"));
    let b = t
        .cms()
        .create(&PostParams::default(), &gen_cm("gen-"))
        .await
        .unwrap();
    assert_ne!(a.name_any(), b.name_any());
    // A long prefix is cut to 58 characters, so the name fits in 63.
    let long = "x".repeat(70);
    let l = t
        .cms()
        .create(&PostParams::default(), &gen_cm(&long))
        .await
        .unwrap();
    assert!(
        generated_from(&l.name_any(), &long[..58]),
        "{}",
        l.name_any()
    );
    // A name wins over generateName, which is kept.
    let mut named = gen_cm("gen-");
    named.metadata.name = Some("fixed".into());
    let f = t
        .cms()
        .create(&PostParams::default(), &named)
        .await
        .unwrap();
    assert_eq!(
        (f.name_any().as_str(), f.metadata.generate_name.as_deref()),
        ("fixed", Some("gen-"))
    );

    // dryRun=All: a generated name and the server's fields in the answer, nothing stored.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let before = ours(&t.cms().list(&ListParams::default()).await.unwrap());
    let d = t.cms().create(&dry, &gen_cm("dry-")).await.unwrap();
    assert!(generated_from(&d.name_any(), "dry-"), "{}", d.name_any());
    assert!(d.metadata.uid.is_some() && d.metadata.creation_timestamp.is_some());
    assert!(t.cms().get_opt(&d.name_any()).await.unwrap().is_none());
    assert_eq!(
        ours(&t.cms().list(&ListParams::default()).await.unwrap()),
        before
    );
    // A dry-run patch answers the patched object and leaves the stored one as it was.
    let dry_patch = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let p = t
        .cms()
        .patch(
            "fixed",
            &dry_patch,
            &Patch::Merge(json!({"data": {"k": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.data.unwrap()["k"], "2");
    let stored = t.cms().get("fixed").await.unwrap();
    assert_eq!(stored.data.unwrap()["k"], "1");
    assert_eq!(
        stored.metadata.resource_version,
        f.metadata.resource_version
    );
    // A dry-run create of an existing name is the same conflict as a real one.
    let (code, reason, _) = err_of(t.cms().create(&dry, &cm("fixed", &[])).await);
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
}

#[tokio::test]
async fn delete_preconditions_and_collections() {
    let Some(t) = Target::new("delete_preconditions_and_collections").await else {
        return;
    };
    let a = t
        .cms()
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("00000000-0000-0000-0000-000000000000".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let (code, reason, msg) = err_of(t.cms().delete("a", &wrong_uid).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        msg,
        format!(
            "Operation cannot be fulfilled on ConfigMap \"a\": the UID in the precondition \
             (00000000-0000-0000-0000-000000000000) does not match the UID in record ({}). The \
             object might have been deleted and then recreated",
            a.uid().unwrap()
        )
    );
    let wrong_rv = DeleteParams {
        preconditions: Some(Preconditions {
            uid: None,
            resource_version: Some("1".into()),
        }),
        ..Default::default()
    };
    let (code, reason, msg) = err_of(t.cms().delete("a", &wrong_rv).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        msg,
        format!(
            "Operation cannot be fulfilled on ConfigMap \"a\": the ResourceVersion in the \
             precondition (1) does not match the ResourceVersion in record ({}). The object \
             might have been modified",
            a.resource_version().unwrap()
        )
    );
    let dry = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    t.cms().delete("a", &dry).await.unwrap();
    assert!(t.cms().get_opt("a").await.unwrap().is_some());
    let right = DeleteParams {
        preconditions: Some(Preconditions {
            uid: a.metadata.uid.clone(),
            resource_version: a.metadata.resource_version.clone(),
        }),
        ..Default::default()
    };
    let r = t.cms().delete("a", &right).await.unwrap();
    assert!(r.is_right(), "configmaps answer a Success Status");
    let (code, ..) = err_of(t.cms().delete("a", &DeleteParams::default()).await);
    assert_eq!(code, 404);

    for (n, l) in [("x1", "x"), ("x2", "x"), ("y1", "y")] {
        let mut c = cm(n, &[]);
        c.labels_mut().insert("g".into(), l.into());
        t.cms().create(&PostParams::default(), &c).await.unwrap();
    }
    t.cms()
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("g=x"),
        )
        .await
        .unwrap();
    let left = ours(&t.cms().list(&ListParams::default()).await.unwrap());
    assert_eq!(left, vec!["y1"]);
}

#[tokio::test]
async fn patch_types() {
    let Some(t) = Target::new("patch_types").await else {
        return;
    };
    t.cms()
        .create(
            &PostParams::default(),
            &cm("a", &[("k", "1"), ("drop", "x")]),
        )
        .await
        .unwrap();
    let p = t
        .cms()
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "2", "drop": null}})),
        )
        .await
        .unwrap();
    assert_eq!(p.data.unwrap(), [("k".to_string(), "2".to_string())].into());

    let obj = format!("/api/v1/namespaces/{}/configmaps/a", t.ns);
    let ops = json!([
        {"op": "test", "path": "/data/k", "value": "2"},
        {"op": "add", "path": "/data/n", "value": "3"}
    ]);
    t.raw(
        "PATCH",
        &obj,
        "application/json-patch+json",
        serde_json::to_vec(&ops).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(t.cms().get("a").await.unwrap().data.unwrap()["n"], "3");
    let failing = json!([{"op": "test", "path": "/data/k", "value": "nope"}]);
    let (code, ..) = err_of(
        t.raw(
            "PATCH",
            &obj,
            "application/json-patch+json",
            serde_json::to_vec(&failing).unwrap(),
        )
        .await,
    );
    assert_eq!(code, 422);

    t.deploys()
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}}});
    let d = t
        .deploys()
        .patch("web", &PatchParams::default(), &Patch::Strategic(smp))
        .await
        .unwrap();
    let names: Vec<String> = d
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "strategic merge merges containers by name: {names:?}"
    );

    let (code, ..) = err_of(
        t.cms()
            .patch("missing", &PatchParams::default(), &Patch::Merge(json!({})))
            .await,
    );
    assert_eq!(code, 404);
    // A patch carrying a stale resourceVersion is a precondition.
    let (code, reason, _) = err_of(
        t.cms()
            .patch(
                "a",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}})),
            )
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let dry = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    t.cms()
        .patch("a", &dry, &Patch::Merge(json!({"data": {"k": "dry"}})))
        .await
        .unwrap();
    assert_eq!(t.cms().get("a").await.unwrap().data.unwrap()["k"], "2");
    let (code, reason, _) = err_of(
        t.raw(
            "PATCH",
            &format!("/api/v1/namespaces/{}/configmaps/a", t.ns),
            "text/plain",
            b"{}".to_vec(),
        )
        .await,
    );
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
}

// ---------------------------------------------------------------------------------------------
// 5. Status subresource

#[tokio::test]
async fn status_subresource_splits_writes() {
    let Some(t) = Target::new("status_subresource_splits_writes").await else {
        return;
    };
    let d = t
        .deploys()
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let s = t
        .deploys()
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 5}, "spec": {"replicas": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(s.status.as_ref().unwrap().replicas, Some(5));
    assert_eq!(
        s.spec.as_ref().unwrap().replicas,
        Some(1),
        "status writes ignore spec"
    );
    assert_eq!(
        s.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );
    assert!(rv(&s) > rv(&d));
    let m = t
        .deploys()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 0}, "spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(
        m.status.as_ref().unwrap().replicas,
        Some(5),
        "main-resource writes ignore status"
    );
    assert_eq!(m.metadata.generation, Some(2));
    let mut full = m.clone();
    full.status.as_mut().unwrap().replicas = Some(7);
    let r = t
        .deploys()
        .replace_status("web", &PostParams::default(), &full)
        .await
        .unwrap();
    assert_eq!(r.status.unwrap().replicas, Some(7));

    // Custom resources: status is dropped on create and only writable through /status.
    let ar = install_widgets(&t, "Namespaced").await;
    let api = widget_api(&t, &ar);
    let mut w = widget(&ar, "w", json!({"replicas": 1}));
    w.data["status"] = json!({"ready": true});
    let w = api.create(&PostParams::default(), &w).await.unwrap();
    assert!(w.data.get("status").is_none());
    let w = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await
        .unwrap();
    assert_eq!(w.data["status"]["ready"], true);
    assert_eq!(w.metadata.generation, Some(1));
    let (code, ..) = err_of(t.cms().get_status("x").await);
    assert_eq!(code, 404, "configmaps have no status subresource");
}

// ---------------------------------------------------------------------------------------------
// 6. Finalizers and garbage collection

#[tokio::test]
async fn finalizers_hold_deletion() {
    let Some(t) = Target::new("finalizers_hold_deletion").await else {
        return;
    };
    let mut c = cm("held", &[]);
    c.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    t.cms().create(&PostParams::default(), &c).await.unwrap();
    let d = t
        .cms()
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let pending = d
        .left()
        .expect("the object is returned while finalizers remain");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.deletion_grace_period_seconds, Some(0));
    let (code, reason, msg) = err_of(
        t.cms()
            .patch(
                "held",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}}),
                ),
            )
            .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(msg.contains("metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted"), "{msg}");

    let mut events = t
        .cms()
        .watch(
            &WatchParams::default().fields("metadata.name=held"),
            &pending.resource_version().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    t.cms()
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": []}})),
        )
        .await
        .unwrap();
    assert!(t.cms().get_opt("held").await.unwrap().is_none());
    loop {
        match tokio::time::timeout(GUARD, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Deleted(o) => {
                assert_eq!(o.name_any(), "held");
                break;
            }
            WatchEvent::Bookmark(_) => continue,
            other => panic!("expected only DELETED, got {other:?}"),
        }
    }
}

fn owned_cm(name: &str, owner: &ConfigMap, block: bool) -> ConfigMap {
    let mut c = cm(name, &[]);
    c.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: owner.name_any(),
            uid: owner.metadata.uid.clone().unwrap(),
            block_owner_deletion: Some(block),
            controller: Some(true),
        },
    ]);
    c
}

#[tokio::test]
async fn garbage_collection_background_foreground_orphan() {
    let Some(t) = Target::new("garbage_collection_background_foreground_orphan").await else {
        return;
    };
    let cms = t.cms();
    let pp = PostParams::default();
    // The real server's garbage collector (kube-controller-manager) works asynchronously.
    let gone = |name: &'static str| {
        let cms = cms.clone();
        async move { gone(&cms, name).await }
    };

    // Background: the owner goes at once; dependents follow.
    let owner = cms.create(&pp, &cm("bg-owner", &[])).await.unwrap();
    cms.create(&pp, &owned_cm("bg-child", &owner, false))
        .await
        .unwrap();
    cms.delete("bg-owner", &DeleteParams::background())
        .await
        .unwrap();
    assert!(gone("bg-child").await);

    // Foreground: the owner waits (deletionTimestamp + foregroundDeletion) for blocking dependents.
    let owner = cms.create(&pp, &cm("fg-owner", &[])).await.unwrap();
    let mut child = owned_cm("fg-child", &owner, true);
    child.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&pp, &child).await.unwrap();
    cms.delete("fg-owner", &DeleteParams::foreground())
        .await
        .unwrap();
    let o = cms.get("fg-owner").await.unwrap();
    assert!(o.metadata.deletion_timestamp.is_some());
    assert!(o.finalizers().contains(&"foregroundDeletion".to_string()));
    eventually("the blocking dependent is being deleted", || async {
        cms.get("fg-child")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    cms.patch(
        "fg-child",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(gone("fg-child").await);
    assert!(gone("fg-owner").await);

    // Orphan: dependents stay, without the owner reference.
    let owner = cms.create(&pp, &cm("or-owner", &[])).await.unwrap();
    cms.create(&pp, &owned_cm("or-child", &owner, true))
        .await
        .unwrap();
    cms.delete("or-owner", &DeleteParams::orphan())
        .await
        .unwrap();
    assert!(gone("or-owner").await);
    let c = cms.get("or-child").await.unwrap();
    assert!(c.metadata.owner_references.unwrap_or_default().is_empty());
}

/// A dependent whose owner is absent when it appears (deleted before, or never there, or
/// re-created under its name with another uid) is collected; one with another, live owner only
/// loses the reference to the absent one.
#[tokio::test]
async fn garbage_collection_of_dependents_with_absent_owners() {
    let Some(t) = Target::new("garbage_collection_of_dependents_with_absent_owners").await else {
        return;
    };
    let cms = t.cms();
    let pp = PostParams::default();
    let owner = cms.create(&pp, &cm("ab-owner", &[])).await.unwrap();
    cms.delete("ab-owner", &DeleteParams::background())
        .await
        .unwrap();
    assert!(gone(&cms, "ab-owner").await);
    // Created after its owner was deleted.
    cms.create(&pp, &owned_cm("ab-late", &owner, false))
        .await
        .unwrap();
    assert!(gone(&cms, "ab-late").await, "a child of a deleted owner");
    // The owner's name exists again, under another uid.
    let again = cms.create(&pp, &cm("ab-owner", &[])).await.unwrap();
    assert_ne!(again.metadata.uid, owner.metadata.uid);
    cms.create(&pp, &owned_cm("ab-stale", &owner, false))
        .await
        .unwrap();
    assert!(gone(&cms, "ab-stale").await, "a child naming the old uid");
    // A live owner keeps it; the reference to the absent one goes.
    let mut both = owned_cm("ab-both", &again, false);
    let mut dangling = owned_cm("x", &owner, false)
        .metadata
        .owner_references
        .unwrap();
    dangling[0].controller = None;
    both.metadata
        .owner_references
        .as_mut()
        .unwrap()
        .extend(dangling);
    cms.create(&pp, &both).await.unwrap();
    let live = again.metadata.uid.clone().unwrap();
    eventually("the absent owner's reference is dropped", || async {
        let refs = cms.get("ab-both").await.unwrap().metadata.owner_references;
        refs.unwrap_or_default()
            .iter()
            .map(|r| r.uid.clone())
            .collect::<Vec<_>>()
            == [live.clone()]
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 7. Watch

async fn next_event<K>(
    s: &mut (impl futures::Stream<Item = Result<WatchEvent<K>, kube::Error>> + Unpin),
) -> WatchEvent<K> {
    tokio::time::timeout(GUARD, s.try_next())
        .await
        .expect("event in time")
        .expect("no error")
        .expect("stream open")
}

fn describe<K: ResourceExt>(e: &WatchEvent<K>) -> String {
    match e {
        WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(s) => format!("ERROR {}", s.code),
    }
}

#[tokio::test]
async fn watch_from_resource_version_sees_changes_in_order() {
    let Some(t) = Target::new("watch_from_resource_version_sees_changes_in_order").await else {
        return;
    };
    let a = t
        .cms()
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let wp = WatchParams::default().disable_bookmarks();
    let mut s = t
        .cms()
        .watch(&wp, &a.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    t.cms()
        .create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();
    t.cms()
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "1"}})),
        )
        .await
        .unwrap();
    t.cms().delete("b", &DeleteParams::default()).await.unwrap();
    let mut got = vec![];
    let mut last_rv = rv(&a);
    for _ in 0..3 {
        let e = next_event(&mut s).await;
        if let WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) = &e {
            assert!(rv(o) > last_rv, "commit order");
            last_rv = rv(o);
        }
        got.push(describe(&e));
    }
    assert_eq!(got, vec!["ADDED b", "MODIFIED a", "DELETED b"]);

    // From "0": the current state as ADDED (in no particular order on the real server, whose
    // watch cache is a map), then live events.
    let now = ours(&t.cms().list(&ListParams::default()).await.unwrap());
    assert_eq!(now, vec!["a"]);
    let mut s = t.cms().watch(&wp, "0").await.unwrap().boxed();
    let mut initial = vec![];
    for _ in 0..=now.len() {
        initial.push(describe(&next_event(&mut s).await));
    }
    initial.sort();
    assert_eq!(
        initial,
        vec!["ADDED a".to_string(), format!("ADDED {ROOT_CA}")]
    );
    t.cms()
        .create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    assert_eq!(describe(&next_event(&mut s).await), "ADDED c");
}

#[tokio::test]
async fn watch_selectors_bookmarks_and_timeout() {
    let Some(t) = Target::new("watch_selectors_bookmarks_and_timeout").await else {
        return;
    };
    let mut lc = cm("l", &[]);
    lc.labels_mut().insert("app".into(), "web".into());
    let l = t.cms().create(&PostParams::default(), &lc).await.unwrap();
    t.cms()
        .create(&PostParams::default(), &cm("other", &[]))
        .await
        .unwrap();
    let s = t
        .cms()
        .watch(
            &WatchParams::default().labels("app=web"),
            &l.resource_version().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    // Bookmarks are allowed: they may arrive at any point (the embedded server sends one at
    // once, the real server periodically) and carry a resourceVersion; skip them.
    let mut s = s.try_filter(|e| {
        let bookmark =
            matches!(e, WatchEvent::Bookmark(b) if !b.metadata.resource_version.is_empty());
        std::future::ready(!bookmark)
    });
    t.cms()
        .patch(
            "other",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "1"}})),
        )
        .await
        .unwrap();
    t.cms()
        .patch(
            "l",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(describe(&next_event(&mut s).await), "MODIFIED l");
    // Stops matching: seen as DELETED by this watch.
    t.cms()
        .patch(
            "l",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
        )
        .await
        .unwrap();
    assert_eq!(describe(&next_event(&mut s).await), "DELETED l");

    // timeoutSeconds ends the stream (after the current state: l, other and the root CA).
    let mut s = t
        .cms()
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    let mut n = 0;
    while let Some(e) = tokio::time::timeout(GUARD, s.try_next())
        .await
        .expect("stream ends by itself")
        .unwrap()
    {
        let _ = e;
        n += 1;
    }
    assert_eq!(n, 3);
}

#[tokio::test]
async fn watch_from_compacted_version_is_gone() {
    if !embedded_backend() {
        return; // about the embedded server itself
    }
    let Some(t) = Target::new("watch_from_compacted_version_is_gone").await else {
        return;
    };
    let Some(server) = t.fake() else { return };
    let a = t
        .cms()
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    t.cms()
        .create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();
    server.faults().compact();
    let mut s = t
        .cms()
        .watch(&WatchParams::default(), &a.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    match next_event(&mut s).await {
        WatchEvent::Error(st) => assert_eq!((st.code, st.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {}", describe(&other)),
    }
    let lp = ListParams::default()
        .at(&a.resource_version().unwrap())
        .matching(kube::api::VersionMatch::Exact);
    let (code, reason, _) = err_of(t.cms().list(&lp).await);
    assert_eq!((code, reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn watch_window_is_bounded() {
    if !embedded_backend() {
        return; // about the embedded server itself
    }
    let server = ApiServer::builder().watch_window(5).start().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let first = cms
        .create(&PostParams::default(), &cm("first", &[]))
        .await
        .unwrap();
    for i in 0..10 {
        cms.create(&PostParams::default(), &cm(&format!("n{i}"), &[]))
            .await
            .unwrap();
    }
    let mut s = cms
        .watch(&WatchParams::default(), &first.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    assert!(matches!(next_event(&mut s).await, WatchEvent::Error(st) if st.code == 410));
}

/// core/v1 and events.k8s.io/v1 Events are one resource: an Event recorded through either API
/// (kube-runtime's recorder uses events.k8s.io) is listed through the other with its fields
/// renamed, and each API's field selector on the regarded object finds it.
#[tokio::test]
async fn events_are_one_resource_through_two_apis() {
    let Some(t) = Target::new("events_are_one_resource_through_two_apis").await else {
        return;
    };
    let gvk = |g: &str, v: &str| GroupVersionKind::gvk(g, v, "Event");
    let events_api: Api<DynamicObject> = Api::namespaced_with(
        t.client.clone(),
        &t.ns,
        &ApiResource::from_gvk(&gvk("events.k8s.io", "v1")),
    );
    let core: Api<DynamicObject> = Api::namespaced_with(
        t.client.clone(),
        &t.ns,
        &ApiResource::from_gvk(&gvk("", "v1")),
    );
    let recorded: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "foo.modified"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "regarding": {"apiVersion": "example.com/v1", "kind": "Foo", "name": "foo", "namespace": t.ns},
        "note": "created ConfigMap foo-config", "reason": "Modified", "type": "Normal",
        "action": "Reconcile", "reportingController": "staircase", "reportingInstance": "op-0"
    }))
    .unwrap();
    // kube-runtime's recorder decodes the answer as an events.k8s.io/v1 Event.
    let created = events_api
        .create(&PostParams::default(), &recorded)
        .await
        .unwrap();
    assert_eq!(
        created.types.as_ref().map(|t| t.api_version.as_str()),
        Some("events.k8s.io/v1")
    );
    assert_eq!(created.data["note"], "created ConfigMap foo-config");

    let by_core = core
        .list(&ListParams::default().fields("involvedObject.name=foo,involvedObject.kind=Foo"))
        .await
        .unwrap();
    assert_eq!(by_core.items.len(), 1, "{by_core:?}");
    let e = &by_core.items[0].data;
    assert_eq!(e["message"], "created ConfigMap foo-config");
    assert_eq!(e["involvedObject"]["name"], "foo");
    assert_eq!(e["reportingComponent"], "staircase");
    assert_eq!(e["reason"], "Modified");
    assert!(
        e.get("note").is_none() && e.get("regarding").is_none(),
        "{e}"
    );

    // Recorded through core (as kubectl and client-go's old recorder do), read through events.k8s.io.
    let old_style: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "bar.failed"},
        "involvedObject": {"apiVersion": "example.com/v1", "kind": "Foo", "name": "bar", "namespace": t.ns},
        "message": "step failed", "reason": "Failed", "type": "Warning",
        "source": {"component": "old-recorder"}, "count": 3,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:05Z"
    }))
    .unwrap();
    core.create(&PostParams::default(), &old_style)
        .await
        .unwrap();
    let by_events_api = events_api
        .list(&ListParams::default().fields("regarding.name=bar"))
        .await
        .unwrap();
    assert_eq!(by_events_api.items.len(), 1, "{by_events_api:?}");
    let e = &by_events_api.items[0].data;
    assert_eq!(e["note"], "step failed");
    assert_eq!(e["regarding"]["name"], "bar");
    assert_eq!(e["deprecatedCount"], 3);
    assert_eq!(e["deprecatedSource"]["component"], "old-recorder");
    assert_eq!(
        core.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
}

#[tokio::test]
async fn runtime_watcher_list_watch_and_streaming_lists() {
    let Some(t) = Target::new("runtime_watcher_list_watch_and_streaming_lists").await else {
        return;
    };
    t.cms()
        .create(&PostParams::default(), &cm("pre", &[]))
        .await
        .unwrap();
    let mut modes = vec![watcher::Config::default()];
    if t.minor() >= 27 {
        modes.push(watcher::Config::default().streaming_lists());
    } else {
        // Streaming lists (`sendInitialEvents`, alpha in 1.27) do not exist: older servers refuse
        // the watch with 422 ("resourceVersionMatch is forbidden for watch").
        let mut s = watcher(t.cms(), watcher::Config::default().streaming_lists()).boxed();
        match tokio::time::timeout(GUARD, s.try_next()).await.unwrap() {
            Err(watcher::Error::WatchStartFailed(kube::Error::Api(st)))
            | Err(watcher::Error::WatchFailed(kube::Error::Api(st))) => {
                assert_eq!(st.code, 422, "{st:?}")
            }
            Err(watcher::Error::WatchError(st)) => assert_eq!(st.code, 422, "{st:?}"),
            other => panic!("expected 422 for a streaming list, got {other:?}"),
        }
    }
    for cfg in modes {
        let mut s = watcher(t.cms(), cfg).boxed();
        let mut init = vec![];
        loop {
            match tokio::time::timeout(GUARD, s.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                watcher::Event::Init => {}
                watcher::Event::InitApply(o) => init.push(o.name_any()),
                watcher::Event::InitDone => break,
                e => panic!("unexpected {e:?}"),
            }
        }
        assert!(init.contains(&"pre".to_string()));
        let name = format!("live-{}", init.len());
        t.cms()
            .create(&PostParams::default(), &cm(&name, &[]))
            .await
            .unwrap();
        loop {
            if let watcher::Event::Apply(o) = tokio::time::timeout(GUARD, s.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
                && o.name_any() == name
            {
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Errors

#[tokio::test]
async fn bad_input_gets_a_status_and_changes_nothing() {
    let Some(t) = Target::new("bad_input_gets_a_status_and_changes_nothing").await else {
        return;
    };
    let coll = format!("/api/v1/namespaces/{}/configmaps", t.ns);
    let before = t
        .cms()
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    let (code, reason, _) = err_of(
        t.raw("POST", &coll, "application/json", b"{not json".to_vec())
            .await,
    );
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    let (code, _, msg) = err_of(
        t.raw(
            "POST",
            &coll,
            "application/json",
            br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec(),
        )
        .await,
    );
    // (Older servers word it "no kind \"ConfigMap\" is registered for version \"apps/v1\"".)
    assert_eq!(code, 400, "{msg}");
    let (code, ..) = err_of(
        t.raw(
            "POST",
            &coll,
            "application/json",
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.to_vec(),
        )
        .await,
    );
    assert_eq!(code, 400);
    let (code, ..) = err_of(
        t.raw("POST", &coll, "application/json", b"[1,2]".to_vec())
            .await,
    );
    assert_eq!(code, 400);
    let (code, ..) = err_of(
        t.raw("POST", &coll, "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"elsewhere"}}"#.to_vec()).await,
    );
    assert_eq!(code, 400);
    t.cms()
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let before = {
        let _ = before;
        t.cms().get("a").await.unwrap().resource_version().unwrap()
    };
    let (code, _, msg) = err_of(
        t.cms()
            .replace("a", &PostParams::default(), &cm("b", &[]))
            .await,
    );
    assert_eq!(code, 400);
    assert!(msg.contains("does not match the name on the URL"), "{msg}");
    // YAML bodies are accepted.
    t.raw(
        "POST",
        &coll,
        "application/yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n".to_vec(),
    )
    .await
    .unwrap();
    let (code, reason, _) = err_of(
        t.raw("POST", &coll, "application/yaml", b"a: [unclosed".to_vec())
            .await,
    );
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    // Unknown resources and methods.
    let (code, ..) = err_of(
        t.raw(
            "GET",
            &format!("/api/v1/namespaces/{}/nothings", t.ns),
            "application/json",
            vec![],
        )
        .await,
    );
    assert_eq!(code, 404);
    let (code, reason, _) = err_of(
        t.raw(
            "POST",
            &format!("{coll}/a"),
            "application/json",
            b"{}".to_vec(),
        )
        .await,
    );
    assert_eq!((code, reason.as_str()), (405, "MethodNotAllowed"));
    // Oversized bodies.
    let big = serde_json::to_vec(&cm("big", &[("k", &"x".repeat(4 << 20))])).unwrap();
    let (code, reason, _) = err_of(t.raw("POST", &coll, "application/json", big).await);
    assert_eq!((code, reason.as_str()), (413, "RequestEntityTooLarge"));
    assert_eq!(
        t.cms().get("a").await.unwrap().resource_version().unwrap(),
        before
    );
    assert!(t.cms().get_opt("big").await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Faults and stats (in-process server only)

#[tokio::test]
async fn faults_fail_nth_after_commit_and_latency() {
    if !embedded_backend() {
        return; // about the embedded server itself
    }
    let Some(t) = Target::new("faults_fail_nth_after_commit_and_latency").await else {
        return;
    };
    let Some(server) = t.fake() else { return };
    let f = server.faults();
    f.inject(
        Fault::fail(500, "InternalError")
            .verb(Verb::Create)
            .resource("configmaps")
            .nth(2),
    );
    t.cms()
        .create(&PostParams::default(), &cm("one", &[]))
        .await
        .unwrap();
    let (code, reason, _) = err_of(
        t.cms()
            .create(&PostParams::default(), &cm("two", &[]))
            .await,
    );
    assert_eq!((code, reason.as_str()), (500, "InternalError"));
    assert!(t.cms().get_opt("two").await.unwrap().is_none());
    t.cms()
        .create(&PostParams::default(), &cm("three", &[]))
        .await
        .unwrap();

    f.inject(
        Fault::fail_after_commit(500, "InternalError")
            .verb(Verb::Update)
            .name("one"),
    );
    let mut one = t.cms().get("one").await.unwrap();
    one.data = Some([("k".to_string(), "v".to_string())].into());
    let (code, ..) = err_of(t.cms().replace("one", &PostParams::default(), &one).await);
    assert_eq!(code, 500);
    assert_eq!(
        t.cms().get("one").await.unwrap().data.unwrap()["k"],
        "v",
        "committed despite the error"
    );

    f.inject(Fault::drop_after_commit().verb(Verb::Delete).name("three"));
    assert!(
        t.cms()
            .delete("three", &DeleteParams::default())
            .await
            .is_err()
    );
    assert!(t.cms().get_opt("three").await.unwrap().is_none());

    let id = f.inject(Fault::latency(Duration::from_millis(200)).verb(Verb::Get));
    let start = std::time::Instant::now();
    t.cms().get("one").await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(200));
    f.remove(id);
    assert_eq!(f.fired(id), 0);
}

/// A target with ConfigMap `a` created and a watch on ConfigMaps from just after it.
async fn watching_a_new_configmap(
    name: &str,
) -> Option<(
    Target,
    futures::stream::BoxStream<'static, Result<WatchEvent<ConfigMap>, kube::Error>>,
)> {
    let t = Target::new(name).await?;
    let a = t
        .cms()
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let wp = WatchParams::default().disable_bookmarks();
    let s = t
        .cms()
        .watch(&wp, &a.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    Some((t, s))
}

#[tokio::test]
async fn a_round_trip_commits_half_way_and_answers_at_the_end() {
    if !embedded_backend() {
        return; // about the embedded server itself
    }
    let Some((t, mut s)) =
        watching_a_new_configmap("a_round_trip_commits_half_way_and_answers_at_the_end").await
    else {
        return;
    };
    let Some(server) = t.fake() else { return };
    // Long enough that the half-way commit and the answer cannot be confused on a busy machine.
    let rt = Duration::from_secs(1);
    let id = server
        .faults()
        .inject(Fault::round_trip(rt).verb(Verb::Patch));
    let start = Instant::now();
    let cms = t.cms();
    let patch = tokio::spawn(async move {
        let p = Patch::Merge(json!({"data": {"k": "v"}}));
        cms.patch("a", &PatchParams::default(), &p).await.unwrap();
        start.elapsed()
    });
    assert_eq!(describe(&next_event(&mut s).await), "MODIFIED a");
    let committed = start.elapsed();
    assert!(committed >= rt / 2, "committed after {committed:?}");
    assert!(
        !patch.is_finished(),
        "the answer waits for the rest of the round trip"
    );
    let answered = patch.await.unwrap();
    assert!(answered >= rt, "answered after {answered:?}");
    assert!(server.stats().mean_elapsed(Verb::Patch).unwrap() >= rt);
    assert_eq!(server.faults().fired(id), 1);
}

#[tokio::test]
async fn faults_close_and_hold_back_watches() {
    if !embedded_backend() {
        return; // about the embedded server itself
    }
    let Some((t, mut s)) = watching_a_new_configmap("faults_close_and_hold_back_watches").await
    else {
        return;
    };
    let Some(server) = t.fake() else { return };
    server.faults().hold_back_watch_events(2);
    t.cms()
        .create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), s.try_next())
            .await
            .is_err(),
        "held back"
    );
    t.cms()
        .create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    t.cms()
        .create(&PostParams::default(), &cm("d", &[]))
        .await
        .unwrap();
    assert_eq!(describe(&next_event(&mut s).await), "ADDED b");
    server.faults().hold_back_watch_events(0);
    assert_eq!(describe(&next_event(&mut s).await), "ADDED c");
    assert_eq!(describe(&next_event(&mut s).await), "ADDED d");
    server.faults().close_watches();
    assert!(
        tokio::time::timeout(GUARD, s.try_next())
            .await
            .unwrap()
            .unwrap()
            .is_none(),
        "stream ended"
    );
    assert_eq!(server.open_watches(), 0);
}

#[tokio::test]
async fn stats_count_requests() {
    if !embedded_backend() {
        return; // about the embedded server itself
    }
    let Some(t) = Target::new("stats_count_requests").await else {
        return;
    };
    let Some(server) = t.fake() else { return };
    let stats = server.stats();
    stats.reset();
    let pp = PostParams {
        field_manager: Some("tester".into()),
        ..Default::default()
    };
    t.cms().create(&pp, &cm("a", &[])).await.unwrap();
    t.cms().get("a").await.unwrap();
    t.cms().list(&ListParams::default()).await.unwrap();
    let _ = t.cms().get("missing").await;
    t.deploys()
        .create(&PostParams::default(), &deployment("d", 1))
        .await
        .unwrap();
    t.deploys()
        .patch_status(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {}})),
        )
        .await
        .unwrap();
    assert_eq!(stats.count(Verb::Create), 2);
    assert_eq!(stats.count(Verb::Get), 2);
    assert_eq!(stats.count(Verb::List), 1);
    assert_eq!(stats.count_resource("configmaps", None, Verb::Get), 2);
    assert_eq!(
        stats.count_resource("deployments.apps", Some("status"), Verb::Patch),
        1
    );
    assert_eq!(stats.writes(), 3);
    let log = stats.requests();
    let create = log.iter().find(|r| r.verb == Some(Verb::Create)).unwrap();
    assert_eq!(
        (create.status, create.field_manager.as_deref()),
        (201, Some("tester"))
    );
    assert!(log.iter().any(|r| r.status == 404));
}

/// `/scale` of a Deployment: an `autoscaling/v1` Scale with the replicas and the selector;
/// patching or replacing it changes the Deployment (a stale resourceVersion is a conflict, a
/// negative count invalid); a ConfigMap has none.
#[tokio::test]
async fn scale_subresource_of_a_deployment() {
    let Some(t) = Target::new("scale_subresource_of_a_deployment").await else {
        return;
    };
    let d = t
        .deploys()
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    let scale = t.deploys().get_scale("web").await.unwrap();
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(
        scale.status.as_ref().unwrap().selector.as_deref(),
        Some("app=web")
    );
    assert_eq!(scale.metadata.resource_version, d.metadata.resource_version);

    // What `kubectl scale --replicas=3` sends.
    let patch = json!({"spec": {"replicas": 3}});
    let scaled = t
        .deploys()
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(3));
    let d = t.deploys().get("web").await.unwrap();
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(3));

    let mut stale = scale.clone();
    stale.spec.as_mut().unwrap().replicas = Some(5);
    let (code, _, _) = err_of(
        t.deploys()
            .replace_scale("web", &PostParams::default(), &stale)
            .await,
    );
    assert_eq!(code, 409, "the Scale carried the old resourceVersion");
    let negative = json!({"spec": {"replicas": -1}});
    let (code, reason, msg) = err_of(
        t.deploys()
            .patch_scale("web", &PatchParams::default(), &Patch::Merge(&negative))
            .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"), "{msg}");
    assert!(msg.contains("spec.replicas"), "{msg}");
    assert_eq!(
        t.deploys().get("web").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );

    let path = format!("/api/v1/namespaces/{}/configmaps/none/scale", t.ns);
    let (code, _, _) = err_of(t.raw("GET", &path, "application/json", vec![]).await);
    assert_eq!(code, 404);
}

#[tokio::test]
async fn pods_and_deployments_round_trip_typed() {
    let Some(t) = Target::new("pods_and_deployments_round_trip_typed").await else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.ns);
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    )
    .unwrap();
    let p = pods.create(&PostParams::default(), &p).await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    let r = pods.delete("p", &DeleteParams::default()).await.unwrap();
    assert!(r.is_left(), "pods return the deleted object");
}

#[tokio::test]
async fn shutdown_ends_watches() {
    if !embedded_backend() {
        return; // about the embedded server itself
    }
    let server = ApiServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut s = cms
        .watch(&WatchParams::default().disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    server.shutdown().await;
    // (The initial ADDED of the namespace's kube-root-ca.crt may come first.)
    loop {
        match tokio::time::timeout(GUARD, s.try_next()).await.unwrap() {
            Ok(Some(WatchEvent::Added(_))) => continue,
            end => {
                assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
                break;
            }
        }
    }
}

#[tokio::test]
async fn server_side_apply_and_managed_fields() {
    let Some(t) = Target::new("server_side_apply_and_managed_fields").await else {
        return;
    };
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}});
    let alice = PatchParams::apply("alice");
    let c = t
        .cms()
        .patch("ssa", &alice, &Patch::Apply(&cfg))
        .await
        .unwrap();
    assert_eq!(c.data.unwrap()["a"], "1");
    let mf = c.metadata.managed_fields.unwrap();
    assert!(
        mf.iter()
            .any(|e| e.manager.as_deref() == Some("alice")
                && e.operation.as_deref() == Some("Apply"))
    );
    let bob_cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "2"}});
    let (code, reason, msg) = err_of(
        t.cms()
            .patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&bob_cfg))
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(msg.contains("conflict with \"alice\""), "{msg}");
    let c = t
        .cms()
        .patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&bob_cfg),
        )
        .await
        .unwrap();
    assert_eq!(c.data.unwrap()["a"], "2");
    // Non-apply writes are tracked as Update entries of their field manager.
    let pp = PatchParams {
        field_manager: Some("carol".into()),
        ..Default::default()
    };
    let c = t
        .cms()
        .patch("ssa", &pp, &Patch::Merge(json!({"data": {"b": "x"}})))
        .await
        .unwrap();
    let mf = c.metadata.managed_fields.unwrap();
    assert!(
        mf.iter()
            .any(|e| e.manager.as_deref() == Some("carol")
                && e.operation.as_deref() == Some("Update"))
    );
    let (code, ..) = err_of(
        t.raw(
            "PATCH",
            &format!("/api/v1/namespaces/{}/configmaps/ssa", t.ns),
            "application/apply-patch+yaml",
            b"data: {}".to_vec(),
        )
        .await,
    );
    assert_eq!(
        code, 422,
        "apply needs a fieldManager (invalid PatchOptions)"
    );
}

#[tokio::test]
async fn kubectl_works_against_the_server() {
    if !embedded_backend() {
        return; // about the embedded server itself
    }
    let Some(t) = Target::new("kubectl_works_against_the_server").await else {
        return;
    };
    let Some(server) = t.fake() else { return };
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        return;
    }
    let dir = std::env::temp_dir().join(format!("staircase-kubectl-{}", t.ns));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    server.write_kubeconfig(&kc).unwrap();
    let manifest = dir.join("cm.yaml");
    std::fs::write(&manifest, format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: via-kubectl\n  namespace: {}\ndata:\n  a: b\n", t.ns)).unwrap();
    let kubectl = |args: &[&str]| {
        let kc = kc.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&kc)
                    .args(&args)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let m = manifest.to_str().unwrap();
    for args in [
        vec!["apply", "-f", m],
        vec!["apply", "-f", m],
        vec!["apply", "--server-side", "-f", m],
    ] {
        let out = kubectl(&args).await;
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = kubectl(&["get", "configmaps", "-n", &t.ns]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("via-kubectl"));
    let out = kubectl(&["api-resources"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployments"));
    assert_eq!(
        t.cms().get("via-kubectl").await.unwrap().data.unwrap()["a"],
        "b"
    );
}

// ---------------------------------------------------------------------------------------------
// Immutable fields of built-in kinds: rejected on update, every patch type and server-side apply
// alike, with kube-apiserver's 422 body; other fields and `/status` stay writable.

/// A namespaced built-in resource as dynamic objects (plain JSON in, plain JSON out).
fn builtin_api(t: &Target, group: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    Api::namespaced_with(
        t.client.clone(),
        &t.ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

async fn create_builtin(api: &Api<DynamicObject>, obj: Value) -> DynamicObject {
    api.create(
        &PostParams::default(),
        &serde_json::from_value(obj).unwrap(),
    )
    .await
    .unwrap()
}

/// Whether `text` matches `pattern`, where `…` stands for any text: for the parts of a message
/// that print a Go struct with `%#v` (the real server prints every field, pointers as
/// addresses; the embedded one elides them).
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('…');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(p);
        }
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Asserts a `422 Invalid` Status as kube-apiserver writes it: `details` naming the object and
/// `details.causes` as (reason, field, message), and the message `Kind.group "name" is invalid:
/// field: message` (several causes in brackets). Messages may use `…` (see [`glob`]).
fn assert_invalid<T: std::fmt::Debug>(
    r: Result<T, kube::Error>,
    kind: &str,
    group: &str,
    name: &str,
    causes: &[(&str, &str, &str)],
) {
    let s = match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected 422 Invalid for {kind} {name}, got {other:?}"),
    };
    assert_eq!(
        (s.code, s.reason.as_str()),
        (422, "Invalid"),
        "{}",
        s.message
    );
    let d = s.details.as_ref().expect("details");
    assert_eq!(
        (d.kind.as_str(), d.group.as_str(), d.name.as_str()),
        (kind, group, name)
    );
    assert_eq!(d.causes.len(), causes.len(), "{:?}", d.causes);
    for (got, (reason, field, message)) in d.causes.iter().zip(causes) {
        assert_eq!((got.reason.as_str(), got.field.as_str()), (*reason, *field));
        assert!(
            glob(message, &got.message),
            "cause message\n  got:  {}\n  want: {message}",
            got.message
        );
    }
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let lines: Vec<String> = causes.iter().map(|(_, f, m)| format!("{f}: {m}")).collect();
    let want = match lines.len() {
        1 => format!("{qualified} \"{name}\" is invalid: {}", lines[0]),
        _ => format!("{qualified} \"{name}\" is invalid: [{}]", lines.join(", ")),
    };
    assert!(
        glob(&want, &s.message),
        "message\n  got:  {}\n  want: {want}",
        s.message
    );
}

fn rv_of(o: &DynamicObject) -> String {
    o.metadata.resource_version.clone().unwrap()
}

/// A JSON patch (RFC 6902) of the object at `path`.
async fn json_patch(t: &Target, path: &str, ops: Value) -> Result<DynamicObject, kube::Error> {
    t.raw(
        "PATCH",
        path,
        "application/json-patch+json",
        serde_json::to_vec(&ops).unwrap(),
    )
    .await
    .map(|body| serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn deployment_selector_is_immutable_on_every_write_path() {
    let Some(t) = Target::new("deployment_selector_is_immutable_on_every_write_path").await else {
        return;
    };
    let api = builtin_api(&t, "apps", "Deployment", "deployments");
    t.deploys()
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    let before = api.get("web").await.unwrap();
    let cause = [(
        "FieldValueInvalid",
        "spec.selector",
        r#"Invalid value: {"matchLabels":{"app":"other"}}: field is immutable"#,
    )];
    let invalid =
        |r: Result<_, kube::Error>| assert_invalid(r, "Deployment", "apps", "web", &cause);
    // The template's labels follow the selector, so the selector is the only thing wrong.
    let change = json!({"spec": {
        "selector": {"matchLabels": {"app": "other"}},
        "template": {"metadata": {"labels": {"app": "other"}}}
    }});

    let mut put = before.clone();
    put.data["spec"]["selector"] = change["spec"]["selector"].clone();
    put.data["spec"]["template"]["metadata"] = change["spec"]["template"]["metadata"].clone();
    invalid(api.replace("web", &PostParams::default(), &put).await);
    invalid(
        api.patch("web", &PatchParams::default(), &Patch::Merge(&change))
            .await,
    );
    invalid(
        api.patch("web", &PatchParams::default(), &Patch::Strategic(&change))
            .await,
    );
    let path = format!("/apis/apps/v1/namespaces/{}/deployments/web", t.ns);
    invalid(
        json_patch(
            &t,
            &path,
            json!([
                {"op": "replace", "path": "/spec/selector/matchLabels/app", "value": "other"},
                {"op": "replace", "path": "/spec/template/metadata/labels/app", "value": "other"}
            ]),
        )
        .await,
    );
    let mut apply = change.clone();
    apply["apiVersion"] = "apps/v1".into();
    apply["kind"] = "Deployment".into();
    apply["metadata"] = json!({"name": "web"});
    invalid(
        api.patch(
            "web",
            &PatchParams::apply("immutable-test").force(),
            &Patch::Apply(&apply),
        )
        .await,
    );
    let dry = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    invalid(api.patch("web", &dry, &Patch::Merge(&change)).await);
    assert_eq!(rv_of(&api.get("web").await.unwrap()), rv_of(&before));

    // Everything else stays writable, and a status write never looks at spec.
    let scaled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.data["spec"]["replicas"], 3);
    api.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"replicas": 3}, "spec": {"selector": {"matchLabels": {"app": "other"}}}})),
    )
    .await
    .unwrap();
    let after = api.get("web").await.unwrap();
    assert_eq!(
        after.data["spec"]["selector"],
        before.data["spec"]["selector"]
    );
}

#[tokio::test]
async fn replicaset_and_daemonset_selectors_are_immutable() {
    let Some(t) = Target::new("replicaset_and_daemonset_selectors_are_immutable").await else {
        return;
    };
    for (kind, plural, extra) in [
        ("ReplicaSet", "replicasets", json!({"replicas": 0})),
        ("DaemonSet", "daemonsets", json!({})),
    ] {
        let api = builtin_api(&t, "apps", kind, plural);
        let mut spec = json!({
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        });
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        create_builtin(&api, json!({"metadata": {"name": "w"}, "spec": spec})).await;
        let change = json!({"spec": {
            "selector": {"matchLabels": {"app": "a", "tier": "b"}},
            "template": {"metadata": {"labels": {"tier": "b"}}}
        }});
        assert_invalid(
            api.patch("w", &PatchParams::default(), &Patch::Merge(&change))
                .await,
            kind,
            "apps",
            "w",
            &[(
                "FieldValueInvalid",
                "spec.selector",
                r#"Invalid value: {"matchLabels":{"app":"a","tier":"b"}}: field is immutable"#,
            )],
        );
        // The template's image is mutable.
        let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}});
        api.patch("w", &PatchParams::default(), &Patch::Strategic(&image))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn statefulset_spec_is_immutable_but_for_listed_fields() {
    let Some(t) = Target::new("statefulset_spec_is_immutable_but_for_listed_fields").await else {
        return;
    };
    let api = builtin_api(&t, "apps", "StatefulSet", "statefulsets");
    create_builtin(
        &api,
        json!({"metadata": {"name": "db"}, "spec": {
            "replicas": 1, "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }}),
    )
    .await;
    // Each immutable field is its own cause (Kubernetes 1.37); older releases answer one
    // `Forbidden` cause on `spec` listing the fields that may change.
    assert_invalid(
        api.patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceName": "db2"}})),
        )
        .await,
        "StatefulSet",
        "apps",
        "db",
        &[(
            "FieldValueInvalid",
            "spec.serviceName",
            r#"Invalid value: "db2": field is immutable"#,
        )],
    );
    let mut bigger = api.get("db").await.unwrap();
    bigger.data["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] =
        "2Gi".into();
    // The real server marshals its internal Go structs (Go field names) here.
    assert_invalid(
        api.replace("db", &PostParams::default(), &bigger).await,
        "StatefulSet",
        "apps",
        "db",
        &[(
            "FieldValueInvalid",
            "spec.volumeClaimTemplates",
            "Invalid value: […\"2Gi\"…]: field is immutable",
        )],
    );
    let ok = api
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {
                "replicas": 2,
                "updateStrategy": {"type": "OnDelete", "rollingUpdate": null},
                "template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}
            }})),
        )
        .await
        .unwrap();
    assert_eq!(ok.data["spec"]["replicas"], 2);
    api.patch_status(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"replicas": 0}, "spec": {"serviceName": "db3"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api.get("db").await.unwrap().data["spec"]["serviceName"],
        "db"
    );
}

#[tokio::test]
async fn job_template_and_completions_are_immutable() {
    let Some(t) = Target::new("job_template_and_completions_are_immutable").await else {
        return;
    };
    let api = builtin_api(&t, "batch", "Job", "jobs");
    create_builtin(
        &api,
        json!({"metadata": {"name": "once"}, "spec": {
            "completions": 2, "parallelism": 1,
            "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox:1.36", "command": ["true"]}]}}
        }}),
    )
    .await;
    let template = [(
        "FieldValueInvalid",
        "spec.template",
        // The internal Go struct, marshalled with Go field names by the real server.
        "Invalid value: {…\"busybox:1.37\"…}: field is immutable",
    )];
    let invalid = |r: Result<_, kube::Error>, causes: &[(&str, &str, &str)]| {
        assert_invalid(r, "Job", "batch", "once", causes)
    };
    let mut put = api.get("once").await.unwrap();
    put.data["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:1.37".into();
    invalid(
        api.replace("once", &PostParams::default(), &put).await,
        &template,
    );
    let path = format!("/apis/batch/v1/namespaces/{}/jobs/once", t.ns);
    invalid(
        json_patch(
            &t,
            &path,
            json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "busybox:1.37"}]),
        )
        .await,
        &template,
    );
    let apply = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}});
    invalid(
        api.patch(
            "once",
            &PatchParams::apply("immutable-test").force(),
            &Patch::Apply(&apply),
        )
        .await,
        &template,
    );
    invalid(
        api.patch(
            "once",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"completions": 3}})),
        )
        .await,
        &[(
            "FieldValueInvalid",
            "spec.completions",
            "Invalid value: 3: field is immutable",
        )],
    );
    // Parallelism and deadlines may change; status writes leave spec alone.
    let ok = api
        .patch(
            "once",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"parallelism": 2, "activeDeadlineSeconds": 600}})),
        )
        .await
        .unwrap();
    assert_eq!(ok.data["spec"]["parallelism"], 2);
    api.patch_status(
        "once",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"active": 0}, "spec": {"completions": 5}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api.get("once").await.unwrap().data["spec"]["completions"],
        2
    );
}

#[tokio::test]
async fn service_cluster_ip_is_immutable_once_set() {
    let Some(t) = Target::new("service_cluster_ip_is_immutable_once_set").await else {
        return;
    };
    let api = builtin_api(&t, "", "Service", "services");
    let svc = create_builtin(
        &api,
        json!({"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    let ip = svc.data["spec"]["clusterIP"].as_str().unwrap().to_string();
    let (head, last) = ip.rsplit_once('.').unwrap();
    let last: u8 = last.parse().unwrap();
    let other = format!("{head}.{}", if last < 200 { last + 50 } else { last - 50 });
    let cause = format!(r#"Invalid value: ["{other}"]: may not change once set"#);
    let causes = [("FieldValueInvalid", "spec.clusterIPs[0]", cause.as_str())];
    // Changing only clusterIP changes clusterIPs with it, which is what gets rejected.
    assert_invalid(
        api.patch(
            "svc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusterIP": other}})),
        )
        .await,
        "Service",
        "",
        "svc",
        &causes,
    );
    let mut put = api.get("svc").await.unwrap();
    put.data["spec"]["clusterIP"] = other.clone().into();
    put.data["spec"]["clusterIPs"] = json!([other]);
    assert_invalid(
        api.replace("svc", &PostParams::default(), &put).await,
        "Service",
        "",
        "svc",
        &causes,
    );
    let ports = api
        .patch(
            "svc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ports": [{"port": 81}]}})),
        )
        .await
        .unwrap();
    assert_eq!(ports.data["spec"]["clusterIP"], ip.as_str());
}

#[tokio::test]
async fn immutable_configmaps_and_secrets_keep_their_data() {
    let Some(t) = Target::new("immutable_configmaps_and_secrets_keep_their_data").await else {
        return;
    };
    let when_set = "Forbidden: field is immutable when `immutable` is set";
    let cms = builtin_api(&t, "", "ConfigMap", "configmaps");
    create_builtin(
        &cms,
        json!({"metadata": {"name": "frozen"}, "immutable": true, "data": {"a": "1"}}),
    )
    .await;
    assert_invalid(
        cms.patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await,
        "ConfigMap",
        "",
        "frozen",
        &[("FieldValueForbidden", "data", when_set)],
    );
    assert_invalid(
        cms.patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"immutable": false, "data": {"b": "2"}})),
        )
        .await,
        "ConfigMap",
        "",
        "frozen",
        &[
            ("FieldValueForbidden", "immutable", when_set),
            ("FieldValueForbidden", "data", when_set),
        ],
    );
    // Metadata stays writable.
    cms.patch(
        "frozen",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();

    let secrets = builtin_api(&t, "", "Secret", "secrets");
    create_builtin(
        &secrets,
        json!({"metadata": {"name": "frozen"}, "immutable": true, "data": {"a": "MQ=="}}),
    )
    .await;
    // stringData is written into data, so it is rejected as a change of data.
    assert_invalid(
        secrets
            .patch(
                "frozen",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"a": "2"}})),
            )
            .await,
        "Secret",
        "",
        "frozen",
        &[("FieldValueForbidden", "data", when_set)],
    );
    create_builtin(
        &secrets,
        json!({"metadata": {"name": "typed"}, "data": {"a": "MQ=="}}),
    )
    .await;
    assert_invalid(
        secrets
            .patch(
                "typed",
                &PatchParams::default(),
                &Patch::Merge(json!({"type": "example.com/other"})),
            )
            .await,
        "Secret",
        "",
        "typed",
        &[(
            "FieldValueInvalid",
            "type",
            r#"Invalid value: "example.com/other": field is immutable"#,
        )],
    );
    secrets
        .patch(
            "typed",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "Mg=="}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn role_binding_role_ref_is_immutable() {
    let Some(t) = Target::new("role_binding_role_ref_is_immutable").await else {
        return;
    };
    let rbac = "rbac.authorization.k8s.io";
    let api = builtin_api(&t, rbac, "RoleBinding", "rolebindings");
    create_builtin(
        &api,
        json!({"metadata": {"name": "rb"},
               "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "User", "apiGroup": rbac, "name": "alice"}]}),
    )
    .await;
    assert_invalid(
        api.patch(
            "rb",
            &PatchParams::default(),
            &Patch::Merge(json!({"roleRef": {"name": "edit"}})),
        )
        .await,
        "RoleBinding",
        rbac,
        "rb",
        &[(
            "FieldValueInvalid",
            "roleRef",
            r#"Invalid value: {"APIGroup":"rbac.authorization.k8s.io","Kind":"ClusterRole","Name":"edit"}: field is immutable"#,
        )],
    );
    api.patch(
        "rb",
        &PatchParams::default(),
        &Patch::Merge(json!({"subjects": [{"kind": "User", "apiGroup": rbac, "name": "bob"}]})),
    )
    .await
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Protobuf bodies (`application/vnd.kubernetes.protobuf`), as kubectl's typed clients send them.
// The messages are written and read here by hand (field numbers of k8s.io/api's
// generated.proto), independently of the embedded server's codec.

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// A length-delimited protobuf field.
fn pb_field(number: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    for mut n in [(number << 3) | 2, bytes.len() as u64] {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    out.extend_from_slice(bytes);
    out
}

/// The length-delimited fields of a message (other wire types skipped).
fn pb_fields(mut b: &[u8]) -> Vec<(u64, &[u8])> {
    fn varint(b: &mut &[u8]) -> u64 {
        let (mut n, mut shift) = (0u64, 0);
        loop {
            let byte = b[0];
            *b = &b[1..];
            n |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                return n;
            }
        }
    }
    let mut out = vec![];
    while !b.is_empty() {
        let key = varint(&mut b);
        match key & 7 {
            0 => {
                varint(&mut b);
            }
            2 => {
                let len = varint(&mut b) as usize;
                out.push((key >> 3, &b[..len]));
                b = &b[len..];
            }
            1 => b = &b[8..],
            5 => b = &b[4..],
            w => panic!("wire type {w}"),
        }
    }
    out
}

fn pb_get(msg: &[u8], number: u64) -> Option<&[u8]> {
    pb_fields(msg)
        .into_iter()
        .find(|(n, _)| *n == number)
        .map(|(_, b)| b)
}

/// `k8s\0` + runtime.Unknown{typeMeta{apiVersion, kind}, raw}.
fn pb_object(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [
        pb_field(1, api_version.as_bytes()),
        pb_field(2, kind.as_bytes()),
    ]
    .concat();
    [b"k8s\0".to_vec(), pb_field(1, &type_meta), pb_field(2, raw)].concat()
}

/// Sends `body` as protobuf; returns the status, the `Content-Type` and the body of the answer.
async fn send_protobuf(
    t: &Target,
    method: &str,
    path: &str,
    accept: &str,
    body: Vec<u8>,
) -> Result<(u16, String, Vec<u8>), kube::Error> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, PROTOBUF)
        .header(http::header::ACCEPT, accept)
        .body(kube::client::Body::from(body))
        .unwrap();
    let resp = t.client.send(req).await?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    Ok((status, ct, body.to_vec()))
}

/// The ConfigMap in a protobuf answer: (name, uid, data entries).
fn pb_configmap(body: &[u8]) -> (String, String, Vec<(String, String)>) {
    let unknown = body.strip_prefix(b"k8s\0").expect("protobuf prefix");
    let type_meta = pb_get(unknown, 1).unwrap();
    assert_eq!(pb_get(type_meta, 2), Some(&b"ConfigMap"[..]));
    let cm = pb_get(unknown, 2).unwrap();
    let meta = pb_get(cm, 1).unwrap();
    let text = |b: Option<&[u8]>| String::from_utf8(b.unwrap_or_default().to_vec()).unwrap();
    let data = pb_fields(cm)
        .into_iter()
        .filter(|(n, _)| *n == 2)
        .map(|(_, e)| (text(pb_get(e, 1)), text(pb_get(e, 2))))
        .collect();
    (text(pb_get(meta, 1)), text(pb_get(meta, 5)), data)
}

/// A ConfigMap created and read as protobuf (what `kubectl create configmap` does) is the same
/// object JSON clients see, and so is its watch event; a malformed body is `400`. A custom resource has no protobuf form:
/// `406` when only protobuf is accepted; a protobuf body is `415` here, while kube-apiserver
/// 1.37.2 drops the connection (see below).
#[tokio::test]
async fn protobuf_create_and_get_of_a_configmap() {
    let Some(t) = Target::new("protobuf_create_and_get_of_a_configmap").await else {
        return;
    };
    let meta = [pb_field(1, b"pb"), pb_field(3, t.ns.as_bytes())].concat();
    let entry = [pb_field(1, b"a"), pb_field(2, b"b")].concat();
    let cm = [pb_field(1, &meta), pb_field(2, &entry)].concat();
    let path = format!("/api/v1/namespaces/{}/configmaps", t.ns);
    // client-go's Accept: protobuf first, JSON as a fallback.
    let (code, ct, body) = send_protobuf(
        &t,
        "POST",
        &path,
        &format!("{PROTOBUF}, application/json"),
        pb_object("v1", "ConfigMap", &cm),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, ct.as_str()),
        (201, PROTOBUF),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (name, uid, data) = pb_configmap(&body);
    assert_eq!(name, "pb");
    assert_eq!(data, [("a".to_string(), "b".to_string())]);
    let (code, ct, body) = send_protobuf(&t, "GET", &format!("{path}/pb"), PROTOBUF, vec![])
        .await
        .unwrap();
    assert_eq!((code, ct.as_str()), (200, PROTOBUF));
    assert_eq!(pb_configmap(&body).1, uid);
    let json = t.cms().get("pb").await.unwrap();
    assert_eq!(json.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(json.data.unwrap()["a"], "b");

    // A watch asked for in protobuf: length-prefixed WatchEvent frames.
    let req = http::Request::get(format!(
        "{path}?watch=true&resourceVersion=0&fieldSelector=metadata.name%3Dpb"
    ))
    .header(
        http::header::ACCEPT,
        format!("{PROTOBUF}, application/json"),
    )
    .body(kube::client::Body::empty())
    .unwrap();
    let resp = t.client.send(req).await.unwrap();
    assert_eq!(
        resp.headers()[http::header::CONTENT_TYPE],
        "application/vnd.kubernetes.protobuf;stream=watch"
    );
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let frame = tokio::time::timeout(GUARD, async {
        loop {
            if buf.len() >= 4 {
                let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                if buf.len() >= 4 + len {
                    return buf[4..4 + len].to_vec();
                }
            }
            let f = http_body_util::BodyExt::frame(&mut body)
                .await
                .unwrap()
                .unwrap();
            buf.extend_from_slice(&f.into_data().unwrap());
        }
    })
    .await
    .expect("a watch event in time");
    // WatchEvent{type, object: RawExtension{raw: the protobuf ConfigMap}}
    assert_eq!(pb_get(&frame, 1), Some(&b"ADDED"[..]));
    let raw = pb_get(pb_get(&frame, 2).unwrap(), 1).unwrap();
    assert_eq!(pb_configmap(raw).1, uid);

    // A malformed protobuf body is a bad request.
    let (code, ..) = send_protobuf(&t, "POST", &path, PROTOBUF, b"k8s\0\x0a\xff".to_vec())
        .await
        .unwrap();
    assert_eq!(code, 400);

    let ar = install_widgets(&t, "Namespaced").await;
    let widgets = format!("/apis/{}/v1/namespaces/{}/widgets", ar.group, t.ns);
    let sent = send_protobuf(
        &t,
        "POST",
        &widgets,
        &format!("{PROTOBUF}, application/json"),
        pb_object(&ar.api_version, "Widget", &pb_field(1, &pb_field(1, b"w"))),
    )
    .await;
    if embedded_backend() {
        let (code, _, body) = sent.unwrap();
        let status: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (code, &status["reason"]),
            (415, &json!("UnsupportedMediaType")),
            "{status}"
        );
        assert_eq!(
            status["message"],
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"
        );
    } else {
        // kube-apiserver 1.37.2 has no decoder for it: the handler panics (nil pointer in
        // schemaCoercingDecoder.Decode), and the connection is dropped without an answer.
        assert!(sent.is_err(), "{sent:?}");
    }
    let req = http::Request::get(&widgets)
        .header(http::header::ACCEPT, PROTOBUF)
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = t.client.send(req).await.unwrap();
    assert_eq!(resp.status(), 406);
}

/// 64-bit FNV-1a, the hash `shardSelector` ranges are over.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `shardSelector` (KEP-5866; alpha in 1.37 behind `ShardedListAndWatch`, which the real
/// harness turns on): a list returns exactly the objects whose uid hashes into the ranges and
/// echoes the selector in `metadata.shardInfo`; a watch sends only their events. A malformed
/// selector (bounds are 16 hex digits, or `0x10000000000000000` for the end) is a `500` there,
/// not a `400`, and so it is here.
#[tokio::test]
async fn shard_selector_splits_lists_and_watches_by_uid_hash() {
    let Some(t) = Target::new("shard_selector_splits_lists_and_watches_by_uid_hash").await else {
        return;
    };
    let lower = "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')";
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let mut lower_names = Vec::new();
    for i in 0..12 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("s{i}")}})).unwrap();
        let made = t.cms().create(&PostParams::default(), &cm).await.unwrap();
        if fnv1a(made.metadata.uid.as_deref().unwrap()) < 1 << 63 {
            lower_names.push(made.name_any());
        }
    }
    lower_names.sort();
    let path = format!("/api/v1/namespaces/{}/configmaps", t.ns);
    let list: Value = serde_json::from_str(
        &t.raw(
            "GET",
            &format!("{path}?shardSelector={}", enc(lower)),
            "",
            vec![],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(list["metadata"]["shardInfo"]["selector"], lower);
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .filter(|n| n != ROOT_CA)
        .collect();
    names.sort();
    assert_eq!(names, lower_names);
    // A watch from the list's version sees the change of a selected object, not of the others.
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let watch_path = format!(
        "{path}?watch=true&resourceVersion={rv}&timeoutSeconds=2&shardSelector={}",
        enc(lower)
    );
    let watch = t.raw("GET", &watch_path, "", vec![]);
    let edit = async {
        for i in 0..12 {
            let patch = json!({"data": {"edited": "yes"}});
            t.cms()
                .patch(
                    &format!("s{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .unwrap();
        }
    };
    let (events, ()) = tokio::join!(watch, edit);
    let mut seen: Vec<String> = events
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| {
            e["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, lower_names);
    let bad = t
        .raw(
            "GET",
            &format!(
                "{path}?shardSelector={}",
                enc("shardRange(object.metadata.uid, '0x0', '0x8000000000000000')")
            ),
            "",
            vec![],
        )
        .await;
    assert!(
        matches!(&bad, Err(kube::Error::Api(s))
            if s.code == 500 && s.message.starts_with("invalid shard selector: ")),
        "{bad:?}"
    );
}

/// A CRD that declares `subresources.scale`: `/scale` shows the replica paths and the selector,
/// and a merge patch of the `Scale` (what `kubectl scale` sends) changes the object's replicas.
/// Its printer columns, a JSONPath filter on conditions among them, fill the Table that
/// `kubectl get` asks for.
#[tokio::test]
async fn crd_scale_subresource_and_printer_columns() {
    let Some(t) = Target::new("crd_scale_subresource_and_printer_columns").await else {
        return;
    };
    let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
        "status": {"type": "object", "properties": {
            "replicas": {"type": "integer"},
            "selector": {"type": "string"},
            "conditions": {"type": "array", "items": {"type": "object", "properties": {
                "type": {"type": "string"}, "status": {"type": "string"}
            }}}
        }}
    }}});
    let ar = install_v1_crd(
        &t,
        "scalers",
        "Scaler",
        json!({
            "schema": schema,
            "subresources": {"status": {}, "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector"
            }},
            "additionalPrinterColumns": [
                {"name": "Ready", "type": "string",
                 "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}
            ]
        }),
    )
    .await;
    let api = widget_api(&t, &ar);
    api.create(
        &PostParams::default(),
        &widget(&ar, "s", json!({"replicas": 1})),
    )
    .await
    .unwrap();
    let status = json!({"status": {"replicas": 1, "selector": "app=s", "conditions": [
        {"type": "Progressing", "status": "False"}, {"type": "Ready", "status": "True"}
    ]}});
    api.patch_status("s", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let path = format!("/apis/{}/v1/namespaces/{}/scalers/s/scale", ar.group, t.ns);
    let scale: Value =
        serde_json::from_str(&t.raw("GET", &path, "", vec![]).await.unwrap()).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=s");
    let patch = serde_json::to_vec(&json!({"spec": {"replicas": 3}})).unwrap();
    t.raw("PATCH", &path, "application/merge-patch+json", patch)
        .await
        .unwrap();
    let obj = api.get("s").await.unwrap();
    assert_eq!(obj.data["spec"]["replicas"], 3);

    let (_, table) = get_accepting(
        &t,
        &format!("/apis/{}/v1/namespaces/{}/scalers", ar.group, t.ns),
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    .await;
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["Name", "Ready", "Replicas"],
        "no Age beside declared columns"
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        (&cells[0], &cells[1], &cells[2]),
        (&json!("s"), &json!("True"), &json!(3))
    );
}

/// The fields `manager` owns in the managedFields entry of `op` (`Apply`/`Update`) on
/// `subresource` (`""` for the main resource), as `fieldsV1` JSON text.
fn owned_fields(obj: &DynamicObject, manager: &str, subresource: &str) -> String {
    obj.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.manager.as_deref() == Some(manager))
        .filter(|e| e.subresource.as_deref().unwrap_or("") == subresource)
        .map(|e| serde_json::to_string(&e.fields_v1.as_ref().map(|f| &f.0)).unwrap())
        .collect()
}

/// Server-side apply merges keyed lists (`x-kubernetes-list-type: map`) and sets by element,
/// each element owned by the manager that applied it: a manager that stops applying an element
/// removes it, and changing another's element is a conflict unless forced (which moves the
/// ownership). An apply to `/status` owns only status fields, in an entry with
/// `subresource: status`.
#[tokio::test]
async fn server_side_apply_merges_keyed_lists_and_sets() {
    let Some(t) = Target::new("server_side_apply_merges_keyed_lists_and_sets").await else {
        return;
    };
    let port = json!({"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "port": {"type": "integer"}
    }});
    let condition = json!({"type": "object", "required": ["type"], "properties": {
        "type": {"type": "string"}, "status": {"type": "string"}
    }});
    let ar = install_v1_crd(
        &t,
        "appliers",
        "Applier",
        json!({
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                    "ports": {"type": "array", "items": port,
                              "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["name"]},
                    "tags": {"type": "array", "items": {"type": "string"},
                             "x-kubernetes-list-type": "set"}
                }},
                "status": {"type": "object", "properties": {
                    "conditions": {"type": "array", "items": condition,
                                   "x-kubernetes-list-type": "map",
                                   "x-kubernetes-list-map-keys": ["type"]}
                }}
            }}},
            "subresources": {"status": {}}
        }),
    )
    .await;
    let api = widget_api(&t, &ar);
    let apply = |spec: Value| widget(&ar, "x", spec);
    let alice = PatchParams::apply("alice");
    let bob = PatchParams::apply("bob");
    api.patch(
        "x",
        &alice,
        &Patch::Apply(&apply(
            json!({"ports": [{"name": "a", "port": 1}], "tags": ["x"]}),
        )),
    )
    .await
    .unwrap();
    let o = api
        .patch(
            "x",
            &bob,
            &Patch::Apply(&apply(
                json!({"ports": [{"name": "b", "port": 2}], "tags": ["y"]}),
            )),
        )
        .await
        .unwrap();
    assert_eq!(
        o.data["spec"],
        json!({"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}], "tags": ["x", "y"]})
    );
    let bobs = owned_fields(&o, "bob", "");
    assert!(
        bobs.contains(r#"k:{\"name\":\"b\"}"#) && bobs.contains(r#"v:\"y\""#),
        "{bobs}"
    );
    assert!(!bobs.contains(r#"k:{\"name\":\"a\"}"#), "{bobs}");

    // Alice stops applying port `a` and tag `x`: they go; Bob's stay.
    let o = api
        .patch("x", &alice, &Patch::Apply(&apply(json!({}))))
        .await
        .unwrap();
    assert_eq!(
        o.data["spec"],
        json!({"ports": [{"name": "b", "port": 2}], "tags": ["y"]})
    );
    // Bob's element is his: Alice changing it conflicts, unless she forces it.
    let change = apply(json!({"ports": [{"name": "b", "port": 3}]}));
    let (code, reason, msg) = err_of(api.patch("x", &alice, &Patch::Apply(&change)).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(msg.contains("conflict with \"bob\""), "{msg}");
    let o = api
        .patch("x", &alice.clone().force(), &Patch::Apply(&change))
        .await
        .unwrap();
    assert_eq!(o.data["spec"]["ports"], json!([{"name": "b", "port": 3}]));
    let bobs = owned_fields(&o, "bob", "");
    assert!(
        !bobs.contains(r#""f:port""#),
        "the port is Alice's now: {bobs}"
    );
    assert!(owned_fields(&o, "alice", "").contains(r#""f:port""#));

    // Status: two controllers apply a condition each to /status, each owning its own.
    for (manager, kind) in [("ctl-ready", "Ready"), ("ctl-synced", "Synced")] {
        let status = json!({
            "apiVersion": ar.api_version, "kind": ar.kind, "metadata": {"name": "x"},
            "status": {"conditions": [{"type": kind, "status": "True"}]}
        });
        api.patch_status("x", &PatchParams::apply(manager), &Patch::Apply(&status))
            .await
            .unwrap();
    }
    let o = api.get("x").await.unwrap();
    assert_eq!(
        o.data["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}])
    );
    let ready = owned_fields(&o, "ctl-ready", "status");
    assert!(ready.contains(r#"k:{\"type\":\"Ready\"}"#), "{ready}");
    assert!(
        !ready.contains("Synced") && !ready.contains("f:spec"),
        "{ready}"
    );
    assert!(
        owned_fields(&o, "ctl-ready", "").is_empty(),
        "status applies are entries of the status subresource"
    );
    // A status apply changing another's condition conflicts, as on the main resource.
    let steal = json!({
        "apiVersion": ar.api_version, "kind": ar.kind, "metadata": {"name": "x"},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]}
    });
    let (code, ..) = err_of(
        api.patch_status(
            "x",
            &PatchParams::apply("ctl-synced"),
            &Patch::Apply(&steal),
        )
        .await,
    );
    assert_eq!(code, 409);
    assert_eq!(o.data["spec"]["ports"], json!([{"name": "b", "port": 3}]));
}
