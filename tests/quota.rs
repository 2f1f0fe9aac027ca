//! A `Quota` operator written from the docs alone: a validating webhook (no negative limit), a
//! mutating webhook (defaults `spec.unit`), a gauge of its own on `/metrics`, a route and a ready
//! check on the probes endpoint, kstatus conditions and a condition of its own (`WithinLimit`),
//! and a step keeping a summary ConfigMap read through the cached `ctx.get`.
//!
//! Tested on the real kube-apiserver (webhooks, convergence), on the embedded server (endpoint,
//! conditions) and under the explorer's default variants.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::core::admission::AdmissionRequest;
use kube::{CustomResource, CustomResourceExt, Resource};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::prelude::*;
use staircase::webhook::{CaBundle, Tls, Verdict, Webhooks};
use staircase::{OperatorConfig, Stairs, server};
use staircase_testkit::explorer::{Explorer, Scenario};
use staircase_testkit::real::shared_or_skip;
use staircase_tests::http::get;
use staircase_tests::{Env, Running, wait_for};

/// The unit a quota counts in when its spec names none (set by the mutating webhook).
const DEFAULT_UNIT: &str = "items";
const NAME: &str = "quota-operator";

/// A `Quota` caps how much of something a team uses.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "stranger.example.com",
    version = "v1",
    kind = "Quota",
    namespaced,
    status = "StepStatus"
)]
pub struct QuotaSpec {
    /// The most that may be used; never negative.
    pub limit: i64,
    /// What is used now.
    pub used: i64,
    /// What is counted; defaulted to `items` by the mutating webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

fn quota(name: &str, limit: i64, used: i64) -> Quota {
    Quota::new(
        name,
        QuotaSpec {
            limit,
            used,
            unit: None,
        },
    )
}

// ---- the webhooks ----

async fn validate(req: AdmissionRequest<Quota>) -> Result<Verdict, Infallible> {
    let Some(q) = req.object else {
        return Ok(Verdict::Allow);
    };
    Ok(if q.spec.limit < 0 {
        Verdict::deny(format!(
            "spec.limit must not be negative, got {}",
            q.spec.limit
        ))
    } else {
        Verdict::Allow
    })
}

async fn default_unit(mut q: Quota, _: AdmissionRequest<Quota>) -> Result<Quota, Infallible> {
    if q.spec.unit.as_deref().is_none_or(str::is_empty) {
        q.spec.unit = Some(DEFAULT_UNIT.into());
    }
    Ok(q)
}

const VALIDATE: &str = "/validate-quotas";
const MUTATE: &str = "/mutate-quotas";

fn webhooks(tls: Tls) -> Webhooks {
    Webhooks::new(tls)
        .validate(VALIDATE, validate)
        .mutate(MUTATE, default_unit)
}

// ---- the operator ----

/// Shared state: which quotas are over their limit, and the gauge that counts them.
#[derive(Clone, Default)]
pub struct App {
    over: Arc<Mutex<BTreeSet<String>>>,
    // The runtime does not add its `controller` label to a metric of ours: we add it.
    gauge: Family<Vec<(String, String)>, Gauge>,
    webhooks_up: Arc<AtomicBool>,
}

impl App {
    fn mark(&self, key: String, over: bool) {
        let mut set = self.over.lock().unwrap();
        if over {
            set.insert(key);
        } else {
            set.remove(&key);
        }
        self.over_limit().set(set.len() as i64);
    }

    fn over_limit(&self) -> Gauge {
        self.gauge
            .get_or_create(&vec![("controller".to_string(), NAME.to_string())])
            .clone()
    }
}

fn key(q: &Quota) -> String {
    format!("{}/{}", q.namespace().unwrap_or_default(), q.name_any())
}

/// The spec makes sense (the validating webhook guards it on a cluster; the embedded server
/// calls no webhooks), and `WithinLimit` says whether `used` is within `limit`.
#[step(read_only)]
async fn check_limit(q: &Quota, ctx: &Context<App>) -> Result<Outcome> {
    if q.spec.limit < 0 {
        return Err(Error::permanent(anyhow::anyhow!(
            "spec.limit must not be negative, got {}",
            q.spec.limit
        )));
    }
    let over = q.spec.used > q.spec.limit;
    let (reason, message) = if over {
        (
            "OverLimit",
            format!("{} used of {}", q.spec.used, q.spec.limit),
        )
    } else {
        (
            "WithinLimit",
            format!("{} used of {}", q.spec.used, q.spec.limit),
        )
    };
    ctx.set_condition("WithinLimit", !over, reason, message)?;
    ctx.state().mark(key(q), over);
    Ok(Outcome::unchanged())
}

fn summary_name(q: &Quota) -> String {
    format!("{}-quota", q.name_any())
}

fn summary(q: &Quota) -> BTreeMap<String, String> {
    let unit = q.spec.unit.clone().unwrap_or_else(|| DEFAULT_UNIT.into());
    let state = if q.spec.used > q.spec.limit {
        "over"
    } else {
        "within"
    };
    BTreeMap::from([
        ("limit".to_string(), format!("{} {unit}", q.spec.limit)),
        ("used".to_string(), format!("{} {unit}", q.spec.used)),
        ("state".to_string(), state.to_string()),
    ])
}

/// The ConfigMap `<name>-quota` summarises the quota.
#[step]
async fn ensure_summary(q: &Quota, ctx: &Context<App>) -> Result<Outcome> {
    let api = ctx.api::<ConfigMap>();
    let name = summary_name(q);
    let data = summary(q);
    match ctx.get::<ConfigMap>(&name).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    owner_references: q.controller_owner_ref(&()).map(|o| vec![o]),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await?;
            Ok(Outcome::modified(format!("created ConfigMap {name}")))
        }
        Some(cm) if cm.data.as_ref() != Some(&data) => {
            let patch = serde_json::json!({ "data": data });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(Outcome::modified(format!("updated ConfigMap {name}")))
        }
        Some(_) => Ok(Outcome::unchanged()),
    }
}

/// On deletion: the quota no longer counts as over its limit.
#[step]
async fn forget(q: &Quota, ctx: &Context<App>) -> Result<Outcome> {
    ctx.state().mark(key(q), false);
    Ok(Outcome::unchanged())
}

fn stairs() -> impl Reconciler<Quota, App> {
    staircase!(Quota => [check_limit, ensure_summary], cleanup => [forget])
}

/// The operator as `main` would build it: status with kstatus, the summary ConfigMaps owned,
/// the gauge on `/metrics`, `/quotas/over` listing the quotas over their limit, and a ready
/// check that the webhooks are served.
fn operator(
    client: impl Into<staircase::OperatorClient>,
    app: App,
    config: OperatorConfig,
) -> Operator<Quota, App, impl Stairs<Quota, App>, impl Stairs<Quota, App>> {
    let (over, up, gauge) = (app.over.clone(), app.webhooks_up.clone(), app.gauge.clone());
    let op = Operator::with_state(client, stairs(), app)
        .with_config(config.with_name(NAME).with_kstatus(true))
        .with_status()
        .owns::<ConfigMap>()
        .with_route("/quotas/over", move |_req| {
            let list: Vec<String> = over.lock().unwrap().iter().cloned().collect();
            async move { http::Response::new(list.join("\n")) }
        })
        .with_ready_check("webhooks", move || match up.load(Ordering::SeqCst) {
            true => Ok(()),
            false => Err("not serving yet".into()),
        });
    op.metrics()
        .register(
            "quota_objects_over_limit",
            "Quotas whose use exceeds their limit",
            gauge,
        )
        .expect("registered");
    op
}

// ---- tests on the real kube-apiserver ----

const GUARD: Duration = Duration::from_secs(90);

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + GUARD;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn refusal(api: &Api<Quota>, q: &Quota, dry_run: bool) -> Option<(u16, String)> {
    let pp = PostParams {
        dry_run,
        ..Default::default()
    };
    match api.create(&pp, q).await {
        Ok(_) => None,
        Err(kube::Error::Api(s)) => Some((s.code, s.message)),
        Err(e) => panic!("create: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_apiserver_calls_the_quota_webhooks_and_the_operator_converges() {
    let Some(server) =
        shared_or_skip("real_apiserver_calls_the_quota_webhooks_and_the_operator_converges").await
    else {
        return;
    };
    let ns = server.namespace("quota").await.unwrap();
    let client = ns.client();
    staircase::crds::install::<Quota>(&client).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let config_name = format!("quota-{}", ns.name());
    let rules = Some(vec![RuleWithOperations {
        api_groups: Some(vec!["stranger.example.com".into()]),
        api_versions: Some(vec!["v1".into()]),
        resources: Some(vec!["quotas".into()]),
        operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
        scope: Some("Namespaced".into()),
    }]);
    let namespace_selector = Some(LabelSelector {
        match_labels: Some(
            [(
                "kubernetes.io/metadata.name".to_string(),
                ns.name().to_string(),
            )]
            .into(),
        ),
        ..Default::default()
    });
    let url = |path: &str| WebhookClientConfig {
        url: Some(format!("{base}{path}")),
        ..Default::default()
    };
    let validating = ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(config_name.clone()),
            ..Default::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: "validate.quotas.stranger.example.com".into(),
            client_config: url(VALIDATE),
            rules: rules.clone(),
            failure_policy: Some("Fail".into()),
            side_effects: "None".into(),
            admission_review_versions: vec!["v1".into()],
            timeout_seconds: Some(5),
            namespace_selector: namespace_selector.clone(),
            ..Default::default()
        }]),
    };
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &validating)
        .await
        .unwrap();
    let mutating = MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(config_name.clone()),
            ..Default::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: "default.quotas.stranger.example.com".into(),
            client_config: url(MUTATE),
            rules,
            failure_policy: Some("Fail".into()),
            side_effects: "None".into(),
            admission_review_versions: vec!["v1".into()],
            timeout_seconds: Some(5),
            namespace_selector,
            ..Default::default()
        }]),
    };
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &mutating)
        .await
        .unwrap();
    let serving = webhooks(Tls::generate(["127.0.0.1"]))
        .keep_ca_bundle(
            client.clone(),
            [
                CaBundle::validating(&config_name),
                CaBundle::mutating(&config_name),
            ],
        )
        .start(listener)
        .await
        .unwrap();
    let app = App::default();
    app.webhooks_up.store(true, Ordering::SeqCst);

    // Invalid: refused with the webhook's reason (once the configuration is in effect).
    let quotas: Api<Quota> = ns.api();
    let negative = quota("negative", -5, 0);
    let reason = "spec.limit must not be negative, got -5";
    let deadline = Instant::now() + GUARD;
    loop {
        let answer = refusal(&quotas, &negative, true).await;
        if answer.as_ref().is_some_and(|(_, m)| m.contains(reason)) {
            break;
        }
        assert!(Instant::now() < deadline, "never refused: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, message) = refusal(&quotas, &negative, false).await.expect("denied");
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains("admission webhook \"validate.quotas.stranger.example.com\" denied"),
        "{message}"
    );
    assert!(quotas.get_opt("negative").await.unwrap().is_none());

    // Valid: defaulted by the mutating webhook (it may take a moment to be in effect too).
    eventually("the mutating webhook in effect", || async {
        let pp = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let q = quotas.create(&pp, &quota("probe", 1, 0)).await.unwrap();
        q.spec.unit.as_deref() == Some(DEFAULT_UNIT)
    })
    .await;
    let created = quotas
        .create(&PostParams::default(), &quota("team-a", 10, 12))
        .await
        .unwrap();
    assert_eq!(created.spec.unit.as_deref(), Some(DEFAULT_UNIT));

    // The operator converges it: summary ConfigMap, Ready, WithinLimit=False.
    let op = Running::operator(operator(
        client.clone(),
        app.clone(),
        OperatorConfig::default().with_namespace(ns.name()),
    ));
    let cms: Api<ConfigMap> = ns.api();
    eventually("the summary ConfigMap", || async {
        cms.get_opt("team-a-quota")
            .await
            .unwrap()
            .and_then(|c| c.data)
            .is_some_and(|d| d["limit"] == "10 items" && d["state"] == "over")
    })
    .await;
    eventually("team-a ready", || async {
        let q = quotas.get("team-a").await.unwrap();
        let status = q.status.unwrap_or_default();
        status.is_ready_at(q.metadata.generation)
            && status
                .condition("WithinLimit")
                .is_some_and(|c| c.status == "False" && c.reason == "OverLimit")
    })
    .await;
    assert_eq!(app.over_limit().get(), 1);
    op.stop().await;
    drop(serving);
}

// ---- tests on the embedded API server ----

fn status_of(q: &Quota, type_: &str) -> Option<String> {
    q.status
        .as_ref()
        .and_then(|s| s.condition(type_))
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_metric_route_ready_check_and_conditions() {
    let env = Env::start().await;
    env.install::<Quota>().await;
    let app = App::default();
    let op = operator(
        env.client.clone(),
        app.clone(),
        OperatorConfig::default().with_namespace("default"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve_with(
        listener,
        op.metrics(),
        op.health(),
        op.routes(),
    ));
    let running = Running::operator(op);

    let quotas: Api<Quota> = Api::namespaced(env.client.clone(), "default");
    quotas
        .create(&PostParams::default(), &quota("within", 10, 3))
        .await
        .unwrap();
    quotas
        .create(&PostParams::default(), &quota("over", 10, 30))
        .await
        .unwrap();
    let ready = |q: Option<&Quota>| {
        q.is_some_and(|q| {
            q.status
                .as_ref()
                .is_some_and(|s| s.is_ready_at(q.metadata.generation))
        })
    };
    wait_for(&quotas, "within", ready).await;
    wait_for(&quotas, "over", ready).await;

    // Conditions: converged, so kstatus's Reconciling and Stalled are absent; ours is set.
    for (name, within) in [("within", "True"), ("over", "False")] {
        let q = quotas.get(name).await.unwrap();
        let s = q.status.as_ref().unwrap();
        assert_eq!(s.observed_generation, q.metadata.generation, "{name}");
        assert_eq!(status_of(&q, "Ready").as_deref(), Some("True"), "{s:?}");
        assert_eq!(status_of(&q, "Reconciling"), None, "{s:?}");
        assert_eq!(status_of(&q, "Stalled"), None, "{s:?}");
        assert_eq!(
            status_of(&q, "WithinLimit").as_deref(),
            Some(within),
            "{s:?}"
        );
    }

    // /metrics: our gauge, with the operator's controller label.
    let (code, metrics) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("quota_objects_over_limit"))
        .unwrap_or_else(|| panic!("no quota_objects_over_limit in\n{metrics}"));
    assert!(
        line.contains(&format!("controller=\"{NAME}\"")) && line.ends_with(" 1"),
        "{line}"
    );
    assert!(metrics.contains(&format!("staircase_runs_total{{controller=\"{NAME}\"")));

    // The route.
    assert_eq!(
        get(addr, "/quotas/over").await,
        (200, "default/over".into())
    );

    // /readyz follows the check. The objects above converged before the cache counts as
    // synced (measured below), so wait for that first, as tests/endpoint.rs does.
    let (_, first) = get(addr, "/readyz").await;
    let started = Instant::now();
    staircase_tests::until("the cache synced", async || {
        get(addr, "/readyz").await.1.contains("cache synced")
    })
    .await;
    eprintln!(
        "/readyz said {first:?}; cache synced {:?} later",
        started.elapsed()
    );
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("webhooks: not serving yet"), "{body}");
    app.webhooks_up.store(true, Ordering::SeqCst);
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 200, "{body}");

    // A negative limit (no webhook on the embedded server): a permanent error, so Stalled.
    quotas
        .create(&PostParams::default(), &quota("broken", -1, 0))
        .await
        .unwrap();
    wait_for(&quotas, "broken", |q: Option<&Quota>| {
        q.is_some_and(|q| status_of(q, "Stalled").as_deref() == Some("True"))
    })
    .await;
    let q = quotas.get("broken").await.unwrap();
    let stalled = q.status.as_ref().unwrap().condition("Stalled").unwrap();
    assert_eq!(stalled.reason, "check_limit", "{stalled:?}");
    assert!(
        stalled.message.contains("must not be negative"),
        "{stalled:?}"
    );
    assert_eq!(status_of(&q, "Reconciling"), None);
    assert_eq!(status_of(&q, "Ready").as_deref(), Some("False"));

    // Deleting the over-limit quota: the cleanup step takes it off the gauge.
    quotas.delete("over", &Default::default()).await.unwrap();
    staircase_tests::wait_gone(&quotas, "over").await;
    assert_eq!(app.over_limit().get(), 0);
    running.stop().await;
}

// ---- the explorer ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_survives_the_explorer() {
    // The conditions are compared too: a step's own condition (`WithinLimit`) must come out
    // in the same place whatever crashed in between.
    let explorer =
        Explorer::new(|client| operator(client, App::default(), OperatorConfig::default()))
            .crd(Quota::crd());
    explorer
        .scenario(Scenario::new("create").create(quota("q", 10, 3)))
        .scenario(
            Scenario::new("lifecycle")
                .create(quota("q", 10, 3))
                .then_edit("q", |q: &mut Quota| q.spec.used = 20)
                .then_edit("q", |q: &mut Quota| q.spec.unit = Some("cpus".into()))
                .then_delete("q"),
        )
        .run()
        .await
        .assert_all_converged();
}
