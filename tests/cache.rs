//! Cached reads (`Context::get`, the children step) against the embedded API server: steps read
//! the operator's watch caches, and never a view older than their own writes, however far the
//! watches lag.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use staircase::children::{Children, children};
use staircase::metrics::Metrics;
use staircase::prelude::*;
use staircase::{Operator, OperatorConfig, RunEnd, RunReport};
use staircase_examples::foo::{self, App, Foo};
use staircase_testkit::Verb;
use staircase_tests::foos::new_foo;
use staircase_tests::{Env, GUARD, Running};

use crate::children::{Parent, ParentSpec};

const CHILDREN: [&str; 3] = ["configmaps", "secrets", "services"];

fn app() -> App {
    App {
        manager: "foo-operator".into(),
    }
}

/// Requests on the Foo's child kinds with `verb` that the server answered with `status`.
fn child_requests(env: &Env, verb: Verb, status: Option<u16>) -> usize {
    env.server
        .stats()
        .requests()
        .iter()
        .filter(|r| {
            r.resource
                .as_deref()
                .is_some_and(|res| CHILDREN.contains(&res))
                && r.verb == Some(verb)
                && status.is_none_or(|s| r.status == s)
        })
        .count()
}

/// A run that converged or failed: where the Foo below ends either way.
fn settled(r: &RunReport) -> bool {
    matches!(r.end, RunEnd::Converged | RunEnd::Failed { .. })
}

/// Runs the Foo operator, with every watch event held back (the child watches never show the
/// children it creates), until its first run that converges or fails. Returns the server, the
/// running operator, its reports and its metrics.
async fn climb_with_lagging_watches(
    read_your_writes: bool,
) -> (Env, Running, Vec<RunReport>, Metrics) {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("a"))
        .await
        .unwrap();
    // From here on no watch event reaches anyone: the caches hold what their first lists saw.
    env.server.faults().hold_back_watch_events(1_000_000);
    let mut cfg = OperatorConfig::default()
        .with_namespace("default")
        .with_cache_read_your_writes(read_your_writes);
    cfg.read_your_writes_grace = Duration::from_millis(200);
    let op = foo::operator(env.client.clone(), app()).with_config(cfg);
    let metrics = op.metrics();
    let running = Running::operator(op);
    running.wait_report(settled).await;
    let reports = running.reports();
    (env, running, reports, metrics)
}

/// The proof: every child kind's watch lags behind the operator's writes, and a step reading its
/// child through the cache still never creates it twice. The reads wait for the cache to show
/// the step's create, then (the watch being held) read the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_reading_through_a_lagging_cache_never_recreates_a_child_it_created() {
    let (env, running, reports, metrics) = climb_with_lagging_watches(true).await;
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| matches!(r.end, RunEnd::Failed { .. }))
        .map(|r| r.to_string())
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(child_requests(&env, Verb::Create, Some(409)), 0);
    assert_eq!(child_requests(&env, Verb::Create, None), 3);
    // The reads that found the cache behind the step's own write were counted.
    let metrics = metrics.encode();
    assert!(
        metrics.contains("staircase_cache_live_reads_total{controller=\"staircase\",kind=\"configmaps\",reason=\"behind\"}"),
        "{metrics}"
    );
    running.stop().await;
}

/// The same climb with read-your-own-writes switched off: the step reads its freshly created
/// ConfigMap as missing from the lagging cache and creates it again, which the server refuses.
/// (This is what the test above would see without the waits.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_read_your_own_writes_a_lagging_cache_makes_the_step_create_again() {
    let (env, running, reports, _) = climb_with_lagging_watches(false).await;
    assert!(
        child_requests(&env, Verb::Create, Some(409)) > 0,
        "{:#?}",
        reports.iter().map(|r| r.to_string()).collect::<Vec<_>>()
    );
    running.stop().await;
}

/// Once the caches have caught up, a run of a converged Foo reads nothing from the API server:
/// its three lookups are served from the caches (a Foo operator reading live sends three GETs
/// per run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_object_runs_without_reading_the_api_server() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    let cfg = OperatorConfig::default().with_namespace("default");
    let running = Running::operator(foo::operator(env.client.clone(), app()).with_config(cfg));
    foos.create(&PostParams::default(), &new_foo("a"))
        .await
        .unwrap();
    running
        .wait_report(|r| matches!(r.end, RunEnd::Converged))
        .await;
    let reads = || child_requests(&env, Verb::Get, None) + child_requests(&env, Verb::List, None);
    let before = (reads(), running.reports().len());
    // Wake the Foo a few times without changing what it asks for.
    const RUNS: usize = 5;
    nudge(&foos, "a", &running, RUNS).await;
    let runs = &running.reports()[before.1..];
    assert!(runs.len() >= RUNS);
    assert!(
        runs.iter().all(|r| matches!(r.end, RunEnd::Converged)),
        "{runs:#?}"
    );
    // The initial lists of the three caches are all the reads there were.
    assert_eq!(reads() - before.0, 0);
    running.stop().await;
}

/// Creates the `Parent` `p` in `default`.
async fn create_parent(env: &Env) {
    let parents: Api<Parent> = Api::namespaced(env.client.clone(), "default");
    let spec = ParentSpec {
        message: "hi".into(),
        replicas: 1,
        extra: false,
    };
    parents
        .create(&PostParams::default(), &Parent::new("p", spec))
        .await
        .unwrap();
}

/// The children step under a lagging ConfigMap watch: its child is created once.
fn two_config_maps(p: &Parent) -> Children {
    let cm = |suffix: &str| ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("{}-{suffix}", p.name_any())),
            ..Default::default()
        },
        data: Some([("message".to_string(), p.spec.message.clone())].into()),
        ..Default::default()
    };
    Children::new(p).apply(cm("a")).apply(cm("b"))
}

/// Successful applies (server-side apply patches) of ConfigMaps so far.
fn config_map_applies(env: &Env) -> usize {
    env.server
        .stats()
        .requests()
        .iter()
        .filter(|r| {
            r.resource.as_deref() == Some("configmaps")
                && r.verb == Some(Verb::Patch)
                && r.status < 400
        })
        .count()
}

/// Runs a one-step children operator with every watch event held back; returns once its run
/// converged (or, with read-your-own-writes off, once it has applied a child a third time).
async fn children_with_lagging_watches(read_your_writes: bool) -> usize {
    let env = Env::start().await;
    env.install::<Parent>().await;
    create_parent(&env).await;
    env.server.faults().hold_back_watch_events(1_000_000);
    let mut cfg = OperatorConfig::default()
        .with_namespace("default")
        .with_cache_read_your_writes(read_your_writes);
    cfg.read_your_writes_grace = Duration::from_millis(200);
    let stairs = staircase!(Parent => [children(two_config_maps as fn(&Parent) -> Children)]);
    let op = Operator::new(env.client.clone(), stairs)
        .with_config(cfg)
        .owns::<ConfigMap>();
    let running = Running::operator(op);
    tokio::time::timeout(GUARD, async {
        loop {
            let converged = running
                .reports()
                .iter()
                .any(|r| matches!(r.end, RunEnd::Converged));
            if converged || config_map_applies(&env) > 2 {
                break;
            }
            // Reports and requests come from the operator's tasks; look again shortly.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the children converged or were applied again");
    running.stop().await;
    config_map_applies(&env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_children_step_applies_each_child_once_however_far_its_watch_lags() {
    assert_eq!(children_with_lagging_watches(true).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_read_your_own_writes_the_children_step_applies_a_child_again() {
    assert!(children_with_lagging_watches(false).await > 2);
}

/// What the step below found on the cached ConfigMap: `managedFields`, and the last-applied
/// annotation.
type Found = std::sync::Arc<std::sync::Mutex<Option<(bool, bool)>>>;

/// Reads the ConfigMap `settings` from the cache and notes what metadata it kept.
#[step(read_only)]
async fn look_at_settings(_p: &Parent, ctx: &Context<Found>) -> Result<Outcome> {
    let Some(cm) = ctx.get::<ConfigMap>("settings").await? else {
        return Ok(Outcome::wait("no settings yet"));
    };
    let annotation = cm
        .annotations()
        .contains_key("kubectl.kubernetes.io/last-applied-configuration");
    *ctx.state().lock().unwrap() = Some((cm.metadata.managed_fields.is_some(), annotation));
    Ok(Outcome::unchanged())
}

/// What a step reading a ConfigMap (applied with a last-applied annotation, as `kubectl apply`
/// leaves it) from the cache finds, with the cache `transform`.
async fn cached_metadata(transform: Option<fn(&mut ObjectMeta)>) -> (bool, bool) {
    let env = Env::start().await;
    env.install::<Parent>().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let settings = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": "settings",
            "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{}" },
        },
        "data": { "k": "v" },
    });
    cms.patch(
        "settings",
        &PatchParams::apply("kubectl"),
        &Patch::Apply(&settings),
    )
    .await
    .unwrap();
    create_parent(&env).await;
    let mut cfg = OperatorConfig::default().with_namespace("default");
    if let Some(t) = transform {
        cfg = cfg.with_cache_transform(t);
    }
    let found = Found::default();
    let stairs = staircase!(Parent => [look_at_settings]);
    let op = Operator::with_state(env.client.clone(), stairs, found.clone())
        .with_config(cfg)
        .reads::<ConfigMap>();
    let running = Running::operator(op);
    running
        .wait_report(|r| matches!(r.end, RunEnd::Converged))
        .await;
    let reads = child_requests(&env, Verb::Get, None);
    running.stop().await;
    assert_eq!(reads, 0, "read from the cache");
    let seen = *found.lock().unwrap();
    seen.expect("the step saw the ConfigMap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_drop_managed_fields_and_the_last_applied_annotation_unless_told_otherwise() {
    assert_eq!(cached_metadata(None).await, (false, false));
    assert_eq!(cached_metadata(Some(|_| {})).await, (true, true));
}

/// Requests with `verb` on Deployments and Services (the echo operator's children).
fn echo_child_requests(env: &Env, verb: Verb) -> usize {
    env.server
        .stats()
        .requests()
        .iter()
        .filter(|r| {
            matches!(r.resource.as_deref(), Some("deployments.apps" | "services"))
                && r.verb == Some(verb)
        })
        .count()
}

/// The echo operator (the children step) owning its child kinds: once converged, its runs read
/// the children from the caches; a children step without caches lists each kind on every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_children_step_runs_without_listing() {
    use staircase_examples::echo::{self, EchoServer};

    let env = Env::start().await;
    env.install::<EchoServer>().await;
    let simulator = tokio::spawn(echo::simulate_deployments(env.client.clone(), "default"));
    let op = Operator::new(env.client.clone(), echo::stairs());
    let running = staircase_tests::echoes::run_until_converged(env.client.clone(), op).await;
    let echoes: Api<EchoServer> = Api::namespaced(env.client.clone(), "default");
    let reads = || echo_child_requests(&env, Verb::List) + echo_child_requests(&env, Verb::Get);
    let before = (reads(), running.reports().len());
    const RUNS: usize = 3;
    nudge(&echoes, "e", &running, RUNS).await;
    let runs = &running.reports()[before.1..];
    assert!(
        runs.iter().all(|r| matches!(r.end, RunEnd::Converged)),
        "{runs:#?}"
    );
    // The simulator's own watch lists once per start; the operator's runs read nothing.
    assert_eq!(reads() - before.0, 0);
    running.stop().await;
    simulator.abort();
}

/// Wakes `name` `times` times with an annotation (nothing it asks for changes) and waits for
/// each run's report.
async fn nudge<K>(api: &Api<K>, name: &str, running: &Running, times: usize)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let before = running.reports().len();
    for i in 0..times {
        let note = serde_json::json!({ "metadata": { "annotations": { "nudge": i.to_string() } } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&note))
            .await
            .unwrap();
        let seen = before + i + 1;
        tokio::time::timeout(GUARD, async {
            while running.reports().len() < seen {
                // Reports arrive from the operator's tasks; re-check after each short pause.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the nudged run reported");
    }
}

/// Every cache of `Foo` operator fills, and syncs, under `initial`: returns the LISTs and WATCHes
/// the server saw for the resource and its three child kinds.
async fn initial_requests(initial: staircase::InitialList) -> (u64, u64) {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("a"))
        .await
        .unwrap();
    let cfg = OperatorConfig::default()
        .with_namespace("default")
        .with_initial_list(initial);
    let running = Running::operator(foo::operator(env.client.clone(), app()).with_config(cfg));
    running
        .wait_report(|r| matches!(r.end, RunEnd::Converged))
        .await;
    running.stop().await;
    let stats = env.server.stats();
    let count = |verb| {
        [
            "foos.demo.staircase.rs",
            "configmaps",
            "secrets",
            "services",
        ]
        .iter()
        .map(|r| stats.count_resource(r, None, verb))
        .sum::<u64>()
    };
    (count(Verb::List), count(Verb::Watch))
}

/// By default the caches take streaming lists where the server serves them (the embedded server
/// does): no LIST at all, one WATCH per kind plus the probe's; paged, each kind is listed first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_fill_from_streaming_lists_where_the_server_serves_them() {
    let (lists, watches) = initial_requests(staircase::InitialList::Auto).await;
    assert_eq!((lists, watches), (0, 4 + 1), "four watches and the probe");
    let (lists, watches) = initial_requests(staircase::InitialList::Paged).await;
    assert_eq!((lists, watches), (4, 4));
}

/// What the step below saw of the ConfigMap `settings`: from its metadata (labels), and whole
/// (its data).
type Looked = std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, Option<String>)>>>;

/// Reads `settings` as metadata, then whole.
#[step(read_only)]
async fn look_at_metadata(_p: &Parent, ctx: &Context<Looked>) -> Result<Outcome> {
    use kube::core::PartialObjectMeta;
    let meta = ctx.get::<PartialObjectMeta<ConfigMap>>("settings").await?;
    let label = meta.and_then(|m| m.labels().get("tier").cloned());
    let whole = ctx.get::<ConfigMap>("settings").await?;
    let data = whole.and_then(|cm| cm.data.as_ref()?.get("k").cloned());
    ctx.state().lock().unwrap().push((label, data));
    Ok(Outcome::unchanged())
}

/// A kind declared for its metadata is watched and cached as metadata only: metadata reads
/// cost nothing, a whole object is read from the API server (and counted as such), never made
/// up from the metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_only_cache_serves_metadata_and_never_a_whole_object() {
    let env = Env::start().await;
    env.install::<Parent>().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let settings = ConfigMap {
        metadata: ObjectMeta {
            name: Some("settings".into()),
            labels: Some([("tier".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    };
    cms.create(&PostParams::default(), &settings).await.unwrap();
    create_parent(&env).await;
    let looked = Looked::default();
    let op = Operator::with_state(
        env.client.clone(),
        staircase!(Parent => [look_at_metadata]),
        looked.clone(),
    )
    .with_config(OperatorConfig::default().with_namespace("default"))
    .reads_metadata::<ConfigMap>();
    let metrics = op.metrics();
    let running = Running::operator(op);
    running
        .wait_report(|r| matches!(r.end, RunEnd::Converged))
        .await;
    running.stop().await;
    let seen = looked.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|s| *s == (Some("web".into()), Some("v".into()))),
        "{seen:?}"
    );
    let stats = env.server.stats();
    let gets = stats.count_resource("configmaps", None, Verb::Get);
    assert_eq!(
        gets as usize,
        seen.len(),
        "one GET per whole read, none for metadata"
    );
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"staircase_cache_live_reads_total{controller="staircase",kind="configmaps",reason="metadata_only"}"#
        ),
        "{text}"
    );
}
