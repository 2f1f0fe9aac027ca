//! An operator written from the guide alone (cached reads of many children): a `Fleet` keeps one ConfigMap per name in
//! `spec.members`, prunes member ConfigMaps (found by label with `ctx.list`) that are no longer
//! listed, checks its Namespace (a cluster-scoped read) and waits for a Secret it does not own
//! (`ctx.get`, declared with `reads`), which it then reports in its status. Every read goes
//! through the operator's watch caches.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::{Client, CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::prelude::*;
use staircase::{OperatorConfig, RunEnd, RunReport, Stairs};
use staircase_testkit::Verb;
use staircase_testkit::explorer::{Actor, Explorer, Scenario, Variant};
use staircase_tests::{Env, GUARD, Running};

const FLEET_LABEL: &str = "stranger.example.com/fleet";
const MEMBER_LABEL: &str = "stranger.example.com/member";

/// A `Fleet` wants a ConfigMap `<name>-<member>` for each member, and a Secret it only reads.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "stranger.example.com",
    version = "v1",
    kind = "Fleet",
    namespaced,
    status = "FleetStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct FleetSpec {
    pub members: Vec<String>,
    /// The Secret the fleet waits for (made by someone else).
    pub secret_name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, StepStatus)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    #[serde(flatten)]
    pub steps: StepStatus,
    /// The Secret found, once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// How `await_secret` waits: `None` is a plain `Outcome::wait`.
#[derive(Default)]
pub struct App {
    pub recheck: Option<Duration>,
}

fn member_name(fleet: &Fleet, member: &str) -> String {
    format!("{}-{member}", fleet.name_any())
}

fn member_data(fleet: &Fleet, member: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("fleet".to_string(), fleet.name_any()),
        ("member".to_string(), member.to_string()),
    ])
}

/// The fleet's Namespace (cluster-scoped) exists and is not terminating.
#[step(read_only)]
async fn namespace_active(fleet: &Fleet, ctx: &Context<App>) -> Result<Outcome> {
    let ns = fleet.namespace().unwrap_or_default();
    match ctx.get::<Namespace>(&ns).await? {
        None => Ok(Outcome::wait(format!("Namespace {ns} does not exist"))),
        Some(n) if n.metadata.deletion_timestamp.is_some() => {
            Ok(Outcome::wait(format!("Namespace {ns} is terminating")))
        }
        Some(_) => Ok(Outcome::unchanged()),
    }
}

/// Every member has its ConfigMap, with the right data: one create or patch per run.
#[step]
async fn ensure_members(fleet: &Fleet, ctx: &Context<App>) -> Result<Outcome> {
    let api = ctx.api::<ConfigMap>();
    for member in &fleet.spec.members {
        let name = member_name(fleet, member);
        let data = member_data(fleet, member);
        match ctx.get::<ConfigMap>(&name).await? {
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(BTreeMap::from([
                            (FLEET_LABEL.to_string(), fleet.name_any()),
                            (MEMBER_LABEL.to_string(), member.clone()),
                        ])),
                        owner_references: fleet.controller_owner_ref(&()).map(|o| vec![o]),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await?;
                return Ok(Outcome::modified(format!("created ConfigMap {name}")));
            }
            Some(cm) if cm.data.as_ref() != Some(&data) => {
                let patch = serde_json::json!({ "data": data });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                return Ok(Outcome::modified(format!("updated ConfigMap {name}")));
            }
            Some(_) => {}
        }
    }
    Ok(Outcome::unchanged())
}

/// No ConfigMap labelled as a member of this fleet outlives its place in `spec.members`.
#[step]
async fn prune_members(fleet: &Fleet, ctx: &Context<App>) -> Result<Outcome> {
    let selector = Selector::from_iter([(FLEET_LABEL.to_string(), fleet.name_any())]);
    let labelled = ctx.list::<ConfigMap>(&selector).await?;
    let uid = fleet.uid();
    let mut stale: Vec<_> = labelled
        .iter()
        .filter(|cm| cm.metadata.deletion_timestamp.is_none())
        // only what this fleet controls: a same-named fleet from before is not ours to prune
        .filter(|cm| {
            cm.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .filter(|cm| {
            cm.labels()
                .get(MEMBER_LABEL)
                .is_none_or(|m| !fleet.spec.members.contains(m))
        })
        .map(|cm| cm.name_any())
        .collect();
    stale.sort();
    match stale.first() {
        None => Ok(Outcome::unchanged()),
        Some(name) => {
            ctx.api::<ConfigMap>()
                .delete(name, &DeleteParams::default())
                .await?;
            Ok(Outcome::modified(format!("deleted ConfigMap {name}")))
        }
    }
}

/// The Secret named in the spec exists (someone else makes it): hands its name on.
#[step(read_only)]
async fn await_secret(fleet: &Fleet, ctx: &Context<App>) -> Result<Outcome<String>> {
    let name = &fleet.spec.secret_name;
    match ctx.get::<Secret>(name).await? {
        Some(s) => Ok(Outcome::Unchanged(s.name_any())),
        None => {
            let why = format!("Secret {name} does not exist yet");
            Ok(match ctx.state().recheck {
                Some(after) => Outcome::wait_for(why, after),
                None => Outcome::wait(why),
            })
        }
    }
}

/// The status names the Secret found.
#[step]
async fn report_secret(fleet: &Fleet, ctx: &Context<App>, secret: &String) -> Result<Outcome> {
    if fleet.status.as_ref().and_then(|s| s.secret.as_ref()) == Some(secret) {
        return Ok(Outcome::unchanged());
    }
    let patch = serde_json::json!({ "status": { "secret": secret } });
    ctx.api::<Fleet>()
        .patch_status(
            &fleet.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Outcome::modified(format!(
        "recorded Secret {secret} in the status"
    )))
}

fn stairs() -> impl Reconciler<Fleet, App> {
    staircase!(Fleet => [namespace_active, ensure_members, prune_members, await_secret, report_secret])
}

/// The operator without its cluster-scoped cache: the Namespace read goes to the API server.
fn operator_without_namespace_cache(
    client: Client,
) -> Operator<Fleet, App, impl Stairs<Fleet, App>, impl Stairs<Fleet, App>> {
    Operator::with_state(client, stairs(), App { recheck: None })
        .with_status()
        .owns::<ConfigMap>()
        .reads::<Secret>()
}

/// The operator, as `main` would build it.
pub fn operator(
    client: Client,
    recheck: Option<Duration>,
) -> Operator<Fleet, App, impl Stairs<Fleet, App>, impl Stairs<Fleet, App>> {
    Operator::with_state(client, stairs(), App { recheck })
        .with_status()
        .owns::<ConfigMap>()
        .reads::<Secret>()
        .reads::<Namespace>()
}

fn fleet(name: &str, members: &[&str]) -> Fleet {
    let mut f = Fleet::new(
        name,
        FleetSpec {
            members: members.iter().map(|m| m.to_string()).collect(),
            secret_name: format!("{name}-creds"),
        },
    );
    f.metadata.namespace = Some("default".into());
    f
}

fn secret(name: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            "token".to_string(),
            "s3cr3t".to_string(),
        )])),
        ..Default::default()
    }
}

fn converged(r: &RunReport) -> bool {
    matches!(r.end, RunEnd::Converged)
}

fn waiting_for_secret(r: &RunReport) -> bool {
    matches!(
        r.end,
        RunEnd::Waiting {
            step: "await_secret",
            ..
        }
    )
}

async fn member_names(client: &Client) -> Vec<String> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let lp = kube::api::ListParams::default().labels(&format!("{FLEET_LABEL}=f"));
    let mut names: Vec<_> = cms
        .list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    names.sort();
    names
}

/// Waits (bounded by GUARD) until `pred` holds for the number of reports after `from`.
async fn wait_new_report(running: &Running, from: usize, pred: impl Fn(&RunReport) -> bool) {
    let found = async {
        loop {
            if running.reports().iter().skip(from).any(&pred) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(GUARD, found)
        .await
        .expect("the expected run report arrived in time");
}

fn live_reads(metrics: &staircase::metrics::Metrics) -> Vec<String> {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("staircase_cache_live_reads_total"))
        .map(str::to_string)
        .collect()
}

/// Requests other than watches on the kinds the steps read.
fn reads_of_children(env: &Env) -> Vec<String> {
    env.server
        .stats()
        .requests()
        .iter()
        .filter(|r| {
            matches!(
                r.resource.as_deref(),
                Some("configmaps" | "secrets" | "namespaces")
            ) && matches!(r.verb, Some(Verb::Get | Verb::List))
        })
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect()
}

/// (1) and (3): on the embedded server, under the real controller loop, the fleet makes its
/// members, prunes the ones dropped from the spec, waits for the Secret created later, reports
/// it; then its resync runs read nothing from the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_converges_when_the_secret_comes_later() {
    let env = Env::start().await;
    env.install::<Fleet>().await;
    let fleets: Api<Fleet> = Api::namespaced(env.client.clone(), "default");
    fleets
        .create(&PostParams::default(), &fleet("f", &["a", "b", "c"]))
        .await
        .unwrap();

    let cfg = OperatorConfig::default()
        .with_namespace("default")
        .with_resync(Duration::from_millis(300));
    let op = operator(env.client.clone(), Some(Duration::from_millis(200))).with_config(cfg);
    let metrics = op.metrics();
    let running = Running::operator(op);

    running.wait_report(waiting_for_secret).await;
    assert_eq!(member_names(&env.client).await, ["f-a", "f-b", "f-c"]);

    // Drop b from the spec: pruned by label.
    let n = running.reports().len();
    let edit = serde_json::json!({ "spec": { "members": ["a", "c"] } });
    fleets
        .patch("f", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    wait_new_report(&running, n, |r| {
        matches!(
            &r.end,
            RunEnd::Modified {
                step: "prune_members",
                ..
            }
        )
    })
    .await;
    wait_new_report(&running, n, waiting_for_secret).await;
    assert_eq!(member_names(&env.client).await, ["f-a", "f-c"]);

    // The Secret appears; the fleet reports it and converges.
    let n = running.reports().len();
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "default");
    secrets
        .create(&PostParams::default(), &secret("f-creds"))
        .await
        .unwrap();
    wait_new_report(&running, n, converged).await;
    let f = fleets.get("f").await.unwrap();
    let status = f.status.expect("status");
    assert_eq!(status.secret.as_deref(), Some("f-creds"));
    assert!(
        status.steps.is_ready_at(f.metadata.generation),
        "{status:?}"
    );

    // Every step write happened once.
    let reports = running.reports();
    let mods: Vec<_> = reports
        .iter()
        .filter_map(|r| match &r.end {
            RunEnd::Modified { description, .. } => Some(description.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        mods,
        [
            "created ConfigMap f-a",
            "created ConfigMap f-b",
            "created ConfigMap f-c",
            "deleted ConfigMap f-b",
            "recorded Secret f-creds in the status",
        ]
    );

    // (3) Steady state: resync runs (every 300 ms) read nothing from the API server.
    let live_before = live_reads(&metrics);
    let reads_before = reads_of_children(&env);
    let n = running.reports().len();
    wait_new_report(&running, n, |_| true).await;
    let m = running.reports().len();
    wait_new_report(&running, m, |_| true).await;
    let later: Vec<_> = running.reports().into_iter().skip(n).collect();
    assert!(later.len() >= 2, "resync runs happened");
    assert!(later.iter().all(converged), "{later:?}");
    assert_eq!(
        live_reads(&metrics),
        live_before,
        "live reads in steady state"
    );
    let reads_after = reads_of_children(&env);
    assert_eq!(
        reads_after[reads_before.len()..],
        [] as [String; 0],
        "requests on read kinds in steady state"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_an_uncached_kind_is_a_counted_live_read() {
    let env = Env::start().await;
    env.install::<Fleet>().await;
    let fleets: Api<Fleet> = Api::namespaced(env.client.clone(), "default");
    fleets
        .create(&PostParams::default(), &fleet("f", &["a"]))
        .await
        .unwrap();
    let op = operator_without_namespace_cache(env.client.clone())
        .with_config(OperatorConfig::default().with_namespace("default"));
    let metrics = op.metrics();
    let running = Running::operator(op);
    running.wait_report(waiting_for_secret).await;
    let lines = live_reads(&metrics);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("kind=\"namespaces\"") && l.contains("no_store")),
        "{lines:?}"
    );
    running.stop().await;
}

/// Plays whoever makes the fleet's Secret: once every member ConfigMap of the fleet exists, it
/// creates `<fleet>-creds` (once; deterministic, so every case sees the same world).
fn secret_maker() -> Actor {
    Actor::new("secret maker", |client, f: Fleet| async move {
        let ns = f.namespace().unwrap_or_default();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        for m in &f.spec.members {
            if cms.get_opt(&member_name(&f, m)).await?.is_none() {
                return Ok(());
            }
        }
        let secrets: Api<Secret> = Api::namespaced(client, &ns);
        if secrets.get_opt(&f.spec.secret_name).await?.is_none() {
            secrets
                .create(&PostParams::default(), &secret(&f.spec.secret_name))
                .await?;
        }
        Ok(())
    })
}

fn scenarios() -> Vec<Scenario<Fleet>> {
    vec![
        // The Secret comes later, made by another actor once the members exist.
        Scenario::new("secret later")
            .with_actor(secret_maker())
            .create(fleet("f", &["a", "b", "c"]))
            .then_edit("f", |f: &mut Fleet| {
                f.spec.members = vec!["a".into(), "c".into()]
            })
            .then_edit("f", |f: &mut Fleet| {
                f.spec.members = vec!["b".into(), "a".into(), "d".into()]
            })
            .then_delete("f"),
        Scenario::new("secret first")
            .given(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": { "name": "g-creds", "namespace": "default" },
                "stringData": { "token": "s3cr3t" }
            }))
            .create(fleet("g", &["x", "y"]))
            .then_edit("g", |f: &mut Fleet| f.spec.members = vec!["y".into()])
            .then_delete("g"),
    ]
}

fn explorer(
    variants: Option<&[Variant]>,
) -> Explorer<Fleet, App, impl Stairs<Fleet, App>, impl Stairs<Fleet, App>> {
    let mut ex = Explorer::new(|client| operator(client, Some(Duration::from_millis(100))))
        .crd(Fleet::crd())
        .seeds(30)
        .reproduce_with("cargo test -p staircase-tests --test integration");
    if let Some(v) = variants {
        ex = ex.variants(v);
    }
    for s in scenarios() {
        ex = ex.scenario(s);
    }
    ex
}

/// (2) The default variants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_explored() {
    explorer(None).run().await.assert_all_converged();
}

/// (2) The variants for operators that read other kinds through their caches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_explored_with_lagging_children() {
    explorer(Some(&Variant::CHILDREN))
        .run()
        .await
        .assert_all_converged();
}
