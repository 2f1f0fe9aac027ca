//! Cached reads (`Context::get`, the children step) against the embedded API server: steps read
//! the operator's watch caches, and never a view older than their own writes, however far the
//! watches lag.

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use staircase::metrics::Metrics;
use staircase::{OperatorConfig, RunEnd, RunReport};
use staircase_examples::foo::{self, App, Foo};
use staircase_testkit::Verb;
use staircase_tests::foos::new_foo;
use staircase_tests::{Env, GUARD, Running};

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
    let mut cfg = OperatorConfig::default().with_namespace("default");
    cfg.read_your_writes_grace = Duration::from_millis(200);
    cfg.cache_read_your_writes = read_your_writes;
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
        metrics.contains("staircase_cache_live_reads_total{kind=\"configmaps\",reason=\"behind\"}"),
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
    for i in 0..RUNS {
        let note = serde_json::json!({ "metadata": { "annotations": { "nudge": i.to_string() } } });
        foos.patch("a", &PatchParams::default(), &Patch::Merge(&note))
            .await
            .unwrap();
        let seen = before.1 + i + 1;
        tokio::time::timeout(GUARD, async {
            while running.reports().len() < seen {
                // Reports arrive from the operator's tasks; re-check after each short pause.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the nudged run reported");
    }
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
