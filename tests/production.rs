//! The production runtime against the embedded API server: Events, metrics and health over HTTP,
//! graceful shutdown with a run in flight, the concurrency limit, watches on owned and related
//! objects, resync, CRD installation and the startup preflight.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{CustomResourceExt, ResourceExt};
use staircase::prelude::*;
use staircase::{Backoff, NextRun, RunEnd, RunReport, crds, events, preflight, server};
use staircase_examples::foo::{self, App, Foo};
use staircase_testkit::{Fault, Verb};
use staircase_tests::foos::{new_foo, ready};
use staircase_tests::http::get;
use staircase_tests::widget::{Widget, widget};
use staircase_tests::{Env, GUARD, Running, recorder, until, wait_for};
use tokio::sync::Notify;

fn app() -> App {
    App {
        manager: "foo-operator".into(),
    }
}

/// Starts the metrics/health endpoint of an operator on a free port.
async fn serve<K, S, M, C>(op: &Operator<K, S, M, C>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(server::serve(listener, op.metrics(), op.health()));
    addr
}

/// The `controller` label of an operator with the default name.
const OP: (&str, &str) = ("controller", "staircase");

/// A parsed Prometheus text exposition: the value of `name` with exactly `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, ls) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let got: BTreeMap<String, String> = ls
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect();
            (n == name && got == want)
                .then(|| value.parse().ok())
                .flatten()
        })
}

async fn events_about(env: &Env, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_modification_is_an_event_named_after_its_step_and_metrics_and_health_are_served() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let op = Operator::with_state(env.client.clone(), foo::stairs(), app()).with_status();
    let addr = serve(&op).await;
    // Not running yet: neither live nor ready.
    assert_eq!(get(addr, "/healthz").await.0, 503);
    assert_eq!(get(addr, "/readyz").await.0, 503);
    let running = Running::operator(op);
    until("ready once the cache synced", async || {
        get(addr, "/readyz").await.0 == 200
    })
    .await;
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/nope").await.0, 404);

    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("foo-0"))
        .await
        .unwrap();
    wait_for(&foos, "foo-0", ready).await;
    until("the converged run is counted", async || {
        let m = get(addr, "/metrics").await.1;
        // The runtime's own Ready status write triggers one more run: wait for
        // the operator to be idle before reading exact counts.
        sample(&m, "staircase_objects_not_ready", &[OP]) == Some(0.0)
            && sample(&m, "staircase_runs_total", &[OP, ("result", "converged")])
                .is_some_and(|n| n >= 1.0)
            && sample(&m, "staircase_runs_in_flight", &[OP]) == Some(0.0)
    })
    .await;
    let (status, m) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    // One run per child plus the finalizer, each counted with its step.
    assert_eq!(
        sample(&m, "staircase_runs_total", &[OP, ("result", "modified")]),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "staircase_runs_total",
            &[OP, ("result", "finalizer_added")]
        ),
        Some(1.0)
    );
    for step in ["ensure_config", "ensure_secret", "ensure_service"] {
        let modified = [OP, ("step", step), ("outcome", "modified")];
        assert_eq!(
            sample(&m, "staircase_step_outcomes_total", &modified),
            Some(1.0),
            "{step}"
        );
        assert!(
            sample(
                &m,
                "staircase_step_duration_seconds_count",
                &[OP, ("step", step)]
            )
            .unwrap()
                >= 1.0
        );
    }
    let runs = sample(
        &m,
        "staircase_run_duration_seconds_count",
        &[OP, ("result", "modified")],
    )
    .unwrap();
    assert_eq!(runs, 3.0);
    // Every run made at most one write: the writes histogram has nothing above 1.
    let total = sample(&m, "staircase_run_writes_count", &[OP]).unwrap();
    assert_eq!(
        sample(&m, "staircase_run_writes_bucket", &[OP, ("le", "1.0")]),
        Some(total)
    );
    // `staircase_runs_in_flight` reached 0 in the wait above; it is a gauge, and the runtime's
    // own status write may start one more (no-op) run at any moment, so it is not re-checked.
    assert!(sample(&m, "staircase_queue_depth", &[OP]).is_some());

    let reports = running.stop().await;
    // Stopping flushes queued Events.
    let events = events_about(&env, "foo-0").await;
    for r in &reports {
        if let RunEnd::Modified { step, description } = &r.end {
            let e = events
                .iter()
                .find(|e| e.reason.as_deref() == Some(*step))
                .unwrap_or_else(|| panic!("an Event for {step}: {events:#?}"));
            assert_eq!(e.type_.as_deref(), Some("Normal"));
            assert_eq!(e.note.as_deref(), Some(description.as_ref()));
            assert_eq!(e.reporting_controller.as_deref(), Some("staircase"));
        }
    }
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("FinalizerAdded"))
    );
    // Converged runs change nothing and publish nothing.
    assert_eq!(events.len(), 4, "{events:#?}");
}

fn hot_loop_config() -> OperatorConfig {
    let fast = Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(1),
        permanent: Duration::from_millis(1),
    };
    OperatorConfig::default()
        .with_backoff(fast)
        .with_namespace("default")
}

/// Two operators in one process count into one registry, served on one `/metrics`: each series
/// carries the `controller` label of the operator it belongs to, even for a handle taken before
/// the operator was named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_share_one_metrics_endpoint_told_apart_by_controller() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    env.install::<Widget>().await;
    let foos_op = Operator::with_state(env.client.clone(), foo::stairs(), app()).with_status();
    // Taken while the operator still has the default name.
    let shared = foos_op.metrics();
    let named = |name: &str| {
        OperatorConfig::default()
            .with_name(name)
            .with_namespace("default")
    };
    let foos_op = foos_op.with_config(named("foo-operator"));
    let widgets_op = widget_operator(&env)
        .with_config(named("widget-operator"))
        .with_metrics(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(server::serve(listener, shared, foos_op.health()));
    let (foo_running, widget_running) = (Running::operator(foos_op), Running::operator(widgets_op));

    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("foo-0"))
        .await
        .unwrap();
    let widgets: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    widgets
        .create(&PostParams::default(), &widget("w", "wait"))
        .await
        .unwrap();
    wait_for(&foos, "foo-0", ready).await;
    let foo_op = ("controller", "foo-operator");
    let widget_op = ("controller", "widget-operator");
    until("both operators' runs are counted", async || {
        let m = get(addr, "/metrics").await.1;
        sample(
            &m,
            "staircase_runs_total",
            &[foo_op, ("result", "converged")],
        )
        .is_some_and(|n| n >= 1.0)
            && sample(
                &m,
                "staircase_runs_total",
                &[widget_op, ("result", "waiting")],
            )
            .is_some_and(|n| n >= 1.0)
            && sample(&m, "staircase_objects_not_ready", &[foo_op]) == Some(0.0)
            && sample(&m, "staircase_runs_in_flight", &[foo_op]) == Some(0.0)
    })
    .await;
    let m = get(addr, "/metrics").await.1;
    // The Foo's climb is the foo operator's alone.
    assert_eq!(
        sample(
            &m,
            "staircase_runs_total",
            &[foo_op, ("result", "modified")]
        ),
        Some(3.0),
        "{m}"
    );
    let config_made = [foo_op, ("step", "ensure_config"), ("outcome", "modified")];
    assert_eq!(
        sample(&m, "staircase_step_outcomes_total", &config_made),
        Some(1.0)
    );
    // The waiting widget is the widget operator's alone.
    assert_eq!(
        sample(
            &m,
            "staircase_runs_total",
            &[widget_op, ("result", "modified")]
        ),
        None
    );
    assert_eq!(
        sample(&m, "staircase_runs_total", &[foo_op, ("result", "waiting")]),
        None
    );
    let behaved = [widget_op, ("step", "behave"), ("outcome", "wait")];
    assert!(sample(&m, "staircase_step_outcomes_total", &behaved).is_some_and(|n| n >= 1.0));
    assert_eq!(
        sample(&m, "staircase_objects_not_ready", &[widget_op]),
        Some(1.0)
    );
    // Nothing is counted under the default name either operator had at first.
    assert!(!m.contains(r#"controller="staircase""#), "{m}");
    foo_running.stop().await;
    widget_running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_aggregated_warnings_and_a_hot_loop_cannot_flood_the_api() {
    let env = Env::start().await;
    env.install::<Widget>().await;
    let stairs = staircase!(Widget => [staircase_tests::widget::behave]);
    let op = Operator::with_state(env.client.clone(), stairs, Default::default())
        .with_config(hot_loop_config());
    let addr = serve(&op).await;
    let running = Running::operator(op);
    let widgets: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    widgets
        .create(&PostParams::default(), &widget("w", "fail"))
        .await
        .unwrap();
    // Well past the spam filter's burst.
    let n = 3 * events::BURST as usize;
    let failed = |r: &RunReport| matches!(r.end, RunEnd::Failed { .. });
    until("many failed runs", async || {
        running.reports().iter().filter(|r| failed(r)).count() >= n
    })
    .await;
    let m = get(addr, "/metrics").await.1;
    assert!(sample(&m, "staircase_runs_total", &[OP, ("result", "failed")]).unwrap() >= n as f64);
    assert_eq!(sample(&m, "staircase_objects_not_ready", &[OP]), Some(1.0));
    let errors = [OP, ("step", "behave"), ("outcome", "error")];
    assert!(sample(&m, "staircase_step_outcomes_total", &errors).unwrap() >= n as f64);
    running.stop().await;

    // One Event, aggregated by the recorder into a series, and no more API writes than the burst.
    let events = events_about(&env, "w").await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(
        (e.type_.as_deref(), e.reason.as_deref()),
        (Some("Warning"), Some("behave"))
    );
    assert_eq!(
        e.note.as_deref(),
        Some("step `behave` failed: the backend is down")
    );
    assert_eq!(
        e.series.as_ref().map(|s| s.count),
        Some(events::BURST as i32)
    );
    assert_eq!(env.writes("events.events.k8s.io"), events::BURST as usize);
    let m = get(addr, "/metrics").await.1;
    assert!(sample(&m, "staircase_events_dropped_total", &[OP]).unwrap() >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_violations_are_warnings_and_counted() {
    let env = Env::start().await;
    env.install::<Widget>().await;
    let stairs = staircase!(Widget => [staircase_tests::widget::behave]);
    let config = hot_loop_config().with_rule_policy(RulePolicy::Warn);
    let op =
        Operator::with_state(env.client.clone(), stairs, Default::default()).with_config(config);
    let addr = serve(&op).await;
    let running = Running::operator(op);
    let widgets: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    // `sneaky` writes a ConfigMap and claims nothing changed.
    widgets
        .create(&PostParams::default(), &widget("s", "sneaky"))
        .await
        .unwrap();
    running
        .wait_report(|r| r.steps.iter().any(|s| s.violation.is_some()))
        .await;
    let m = get(addr, "/metrics").await.1;
    let labels = [OP, ("step", "behave"), ("rule", "WriteWithoutModified")];
    assert!(
        sample(&m, "staircase_rule_violations_total", &labels).unwrap() >= 1.0,
        "{m}"
    );
    running.stop().await;
    let events = events_about(&env, "s").await;
    let v = events
        .iter()
        .find(|e| e.action.as_deref() == Some("RuleViolation"))
        .unwrap_or_else(|| panic!("a RuleViolation Event: {events:#?}"));
    assert_eq!(
        (v.type_.as_deref(), v.reason.as_deref()),
        (Some("Warning"), Some("behave"))
    );
}

/// Test state: a gate a step can be held at, and a count of steps executing at once.
#[derive(Default)]
struct Probe {
    block: AtomicBool,
    entered: Notify,
    release: Notify,
    current: AtomicUsize,
    max: AtomicUsize,
}

/// Creates `<name>-probe` once; while creating it, holds at the gate (when `block`) or dwells a
/// little so that overlapping runs would be seen.
#[step]
async fn probe(w: &Widget, ctx: &Context<Arc<Probe>>) -> Result<Outcome> {
    let api = ctx.api::<ConfigMap>();
    let name = format!("{}-probe", w.name_any());
    if api.get_opt(&name).await?.is_some() {
        return Ok(Outcome::unchanged());
    }
    let p = ctx.state();
    let now = p.current.fetch_add(1, Ordering::SeqCst) + 1;
    p.max.fetch_max(now, Ordering::SeqCst);
    if p.block.load(Ordering::SeqCst) {
        p.entered.notify_one();
        p.release.notified().await;
    } else {
        // Not a synchronisation: only gives a second run the chance to overlap if it could.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.current.fetch_sub(1, Ordering::SeqCst);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &cm).await?;
    Ok(Outcome::modified(format!("created ConfigMap {name}")))
}

fn spawn_probe(env: &Env, p: Arc<Probe>, config: OperatorConfig) -> Running {
    let client = env.client.clone();
    Running::spawn(move |reports, stop| {
        Operator::with_state(client, staircase!(Widget => [probe]), p)
            .with_config(config)
            .on_run(recorder(reports))
            .run_until(async {
                stop.await.ok();
            })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_run_in_flight_finish_and_report() {
    let env = Env::start().await;
    env.install::<Widget>().await;
    let p = Arc::new(Probe::default());
    p.block.store(true, Ordering::SeqCst);
    let running = spawn_probe(
        &env,
        p.clone(),
        OperatorConfig::default().with_shutdown_timeout(GUARD),
    );
    let widgets: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    widgets
        .create(&PostParams::default(), &widget("g", "ok"))
        .await
        .unwrap();
    tokio::time::timeout(GUARD, p.entered.notified())
        .await
        .expect("the run reached the gate");

    // Shutdown is requested while the run holds at the gate; then the gate opens.
    let stopping = tokio::spawn(running.stop());
    p.release.notify_one();
    let reports_at_return = tokio::time::timeout(GUARD, stopping)
        .await
        .expect("stops")
        .expect("task");
    assert!(
        reports_at_return
            .iter()
            .any(|r| r.object == "default/g" && matches!(r.end, RunEnd::Modified { .. })),
        "the run in flight reported before run_until returned: {reports_at_return:#?}"
    );
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    assert!(cms.get_opt("g-probe").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_a_run_that_outlives_the_timeout() {
    let env = Env::start().await;
    env.install::<Widget>().await;
    let p = Arc::new(Probe::default());
    p.block.store(true, Ordering::SeqCst);
    let config = OperatorConfig::default().with_shutdown_timeout(Duration::from_millis(100));
    let running = spawn_probe(&env, p.clone(), config);
    let widgets: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    widgets
        .create(&PostParams::default(), &widget("h", "ok"))
        .await
        .unwrap();
    tokio::time::timeout(GUARD, p.entered.notified())
        .await
        .expect("the run reached the gate");
    // The gate never opens: run_until still returns, the run never wrote, and it is reported as
    // cut off in the step that waited at the gate.
    let reports = tokio::time::timeout(GUARD, running.stop())
        .await
        .expect("bounded shutdown");
    let h: Vec<_> = reports.iter().filter(|r| r.object == "default/h").collect();
    assert!(
        matches!(&h[..], [r] if matches!(r.end, RunEnd::Cancelled { step: Some(_) }) && r.step_writes() == 0),
        "{reports:#?}"
    );
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    assert!(cms.get_opt("h-probe").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_one_never_runs_two_objects_at_once() {
    let env = Env::start().await;
    env.install::<Widget>().await;
    let p = Arc::new(Probe::default());
    let running = spawn_probe(
        &env,
        p.clone(),
        OperatorConfig::default().with_concurrency(1),
    );
    let widgets: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    let names = ["c0", "c1", "c2", "c3", "c4"];
    for n in names {
        widgets
            .create(&PostParams::default(), &widget(n, "ok"))
            .await
            .unwrap();
    }
    for n in names {
        let key = format!("default/{n}");
        running
            .wait_report(|r| r.object == key && r.end == RunEnd::Converged)
            .await;
    }
    assert_eq!(p.max.load(Ordering::SeqCst), 1, "two runs overlapped");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_children_and_mapped_objects_run_their_parent_again() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let client = env.client.clone();
    let running = Running::spawn(move |reports, stop| {
        Operator::with_state(client, foo::stairs(), app())
            .with_status()
            .owns::<ConfigMap>()
            // The Secret `<foo>-token` belongs to `<foo>`: a mapper by name, not by owner reference.
            .watches::<Secret, _>(|s: Secret| {
                let foo = s.name_any().strip_suffix("-token").map(str::to_string);
                let ns = s.namespace().unwrap_or_default();
                foo.map(|f| ObjectRef::<Foo>::new(&f).within(&ns))
            })
            .on_run(recorder(reports))
            .run_until(async {
                stop.await.ok();
            })
    });
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("p"))
        .await
        .unwrap();
    wait_for(&foos, "p", ready).await;
    // Changes made before a watch starts are not events: wait until the operator watches its
    // three resources (foos, configmaps, secrets).
    until("the operator's watches are open", async || {
        env.server.open_watches() >= 3
    })
    .await;

    // Drift in an owned child: only a run of its owner repairs it (resync is 10 minutes away).
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let drift = serde_json::json!({ "data": { "message": "tampered" } });
    cms.patch("p-config", &PatchParams::default(), &Patch::Merge(&drift))
        .await
        .unwrap();
    wait_for(&cms, "p-config", |cm: Option<&ConfigMap>| {
        cm.and_then(|c| c.data.as_ref())
            .and_then(|d| d.get("message"))
            .map(String::as_str)
            == Some("hi p")
    })
    .await;

    // A related object through the mapper: deleting the Secret runs `p`, which makes it again.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "default");
    let old_uid = secrets.get("p-token").await.unwrap().uid();
    secrets
        .delete("p-token", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&secrets, "p-token", |s: Option<&Secret>| {
        s.is_some_and(|s| s.uid() != old_uid)
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converged_objects_run_again_after_the_resync_interval() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let client = env.client.clone();
    let resync = Duration::from_millis(200);
    let running = Running::spawn(move |reports, stop| {
        Operator::with_state(client, foo::stairs(), app())
            .with_status()
            .with_config(OperatorConfig::default().with_resync(resync))
            .on_run(recorder(reports))
            .run_until(async {
                stop.await.ok();
            })
    });
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("r"))
        .await
        .unwrap();
    wait_for(&foos, "r", ready).await;
    // Watch events account for two converged runs at most (the status write's echo); more can
    // only come from the resync timer.
    let converged = |rs: &[RunReport]| rs.iter().filter(|r| r.end == RunEnd::Converged).count();
    until("resync runs", async || converged(&running.reports()) >= 5).await;
    let reports = running.stop().await;
    assert!(
        reports
            .iter()
            .filter(|r| r.end == RunEnd::Converged)
            .all(|r| r.next == staircase::NextRun::After(resync) && r.step_writes() == 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_are_printed_from_the_type_and_installed_until_established() {
    let yaml = crds::print::<Foo>();
    let printed: CustomResourceDefinition = serde_saphyr::from_str(&yaml).expect("valid CRD YAML");
    assert_eq!(printed.name_any(), "foos.demo.staircase.rs");
    assert_eq!(printed, Foo::crd());

    let env = Env::start().await;
    let crd = crds::install::<Foo>(&env.client).await.expect("installed");
    let established = crd.status.unwrap().conditions.unwrap_or_default();
    assert!(
        established
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    // Installing again (e.g. every operator start) is a no-op that succeeds.
    crds::install::<Foo>(&env.client).await.expect("idempotent");
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("x"))
        .await
        .expect("served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_names_the_missing_verb_and_resource() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let op = || Operator::with_state(env.client.clone(), foo::stairs(), app()).owns::<ConfigMap>();
    op().check().await.expect("everything allowed");

    let faults = env.server.faults();
    let id = faults.inject(
        Fault::fail(403, "Forbidden")
            .verb(Verb::Watch)
            .resource("configmaps")
            .always(),
    );
    let e = op().check().await.unwrap_err();
    assert!(
        matches!(&e, preflight::PreflightError::Forbidden { verb: "watch", resource, scope, .. }
            if resource == "configmaps" && scope == "all namespaces"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("missing RBAC permission: cannot watch configmaps in all namespaces"),
        "{e}"
    );
    faults.remove(id);

    faults.inject(
        Fault::fail(403, "Forbidden")
            .verb(Verb::List)
            .resource("foos.demo.staircase.rs")
            .always(),
    );
    let e = op()
        .with_config(OperatorConfig::default().with_namespace("default"))
        .check()
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot list foos.demo.staircase.rs in namespace default"),
        "{e}"
    );
    faults.clear();

    // A resource nobody installed.
    let widgets = Operator::with_state(
        env.client.clone(),
        staircase!(Widget => [probe]),
        Arc::new(Probe::default()),
    );
    let e = widgets.check().await.unwrap_err();
    assert!(
        matches!(e, preflight::PreflightError::NotServed { custom: true, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .ends_with("(is its CustomResourceDefinition installed?)"),
        "{e}"
    );

    // A built-in kind the embedded server leaves out.
    let rcs = op().owns::<k8s_openapi::api::core::v1::ReplicationController>();
    let e = rcs.check().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "the API server does not serve replicationcontrollers (a built-in kind this server does not serve)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kubeconfig_and_unreachable_server_are_reported_clearly() {
    let e = preflight::client(Some(std::path::Path::new("/nonexistent/kubeconfig")))
        .await
        .err()
        .expect("an error");
    assert!(
        matches!(e, preflight::PreflightError::Kubeconfig(_)),
        "{e:?}"
    );
    assert!(e.to_string().contains("/nonexistent/kubeconfig"), "{e}");

    // A server that went away: its port refuses connections.
    let env = Env::start().await;
    let dir = std::env::temp_dir().join(format!("staircase-preflight-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kubeconfig");
    env.server.write_kubeconfig(&path).unwrap();
    let client = preflight::client(Some(&path))
        .await
        .expect("reachable while it runs");
    env.server.shutdown().await;
    let e = preflight::client(Some(&path))
        .await
        .err()
        .expect("an error");
    assert!(
        matches!(e, preflight::PreflightError::Unreachable(_)),
        "{e:?}"
    );
    let op = Operator::with_state(client, foo::stairs(), app());
    let e = op.check().await.unwrap_err();
    assert!(
        e.to_string().starts_with("cannot reach the API server"),
        "{e}"
    );
}

/// A widget operator with its status kept, `behave` its only step, default backoff.
fn widget_operator(
    env: &Env,
) -> Operator<
    Widget,
    staircase_tests::widget::Counters,
    impl staircase::Stairs<Widget, staircase_tests::widget::Counters>,
> {
    let stairs = staircase!(Widget => [staircase_tests::widget::behave]);
    Operator::with_state(env.client.clone(), stairs, Default::default())
        .with_status()
        .with_config(OperatorConfig::default().with_namespace("default"))
}

/// Every status write of widgets fails as a schema that rejects the conditions would.
fn refuse_widget_status(env: &Env) {
    env.server.faults().inject(
        Fault::fail(422, "Invalid")
            .resource("widgets")
            .subresource(Some("status"))
            .verb(Verb::Patch)
            .always(),
    );
}

/// The reports of `name` once it has had `n` runs whose status write failed.
async fn runs_with_failing_status(running: &Running, name: &str, n: usize) -> Vec<RunReport> {
    let object = format!("default/{name}");
    let of = |r: &RunReport| r.object == object;
    until("failing status writes", async || {
        running
            .reports()
            .iter()
            .filter(|r| of(r) && r.status_error.is_some())
            .count()
            >= n
    })
    .await;
    running.reports().into_iter().filter(of).collect()
}

/// Retries of a failed status write back off like failed runs (not a fixed short delay), for a
/// converged object and for one whose step keeps failing, and the failure is reported once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_status_writes_back_off_and_are_reported_once() {
    let env = Env::start().await;
    env.install::<Widget>().await;
    refuse_widget_status(&env);
    let op = widget_operator(&env);
    let addr = serve(&op).await;
    let running = Running::operator(op);
    let widgets: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    for (name, mode) in [("calm", "ok"), ("broken", "fail")] {
        widgets
            .create(&PostParams::default(), &widget(name, mode))
            .await
            .unwrap();
    }
    let initial = Backoff::default().initial;
    for name in ["calm", "broken"] {
        let reports = runs_with_failing_status(&running, name, 5).await;
        // No write lands, so nothing but the retry timer runs the object: each run's status
        // write is the next failure in a row, and each retry waits longer.
        for (i, r) in reports.iter().take(5).enumerate() {
            let n = i as u32 + 1;
            assert_eq!(r.status_failures, n, "{name}: {r}");
            assert!(
                r.status_error.as_deref().unwrap().contains("(422 Invalid)"),
                "{:?}",
                r.status_error
            );
            let least = (initial * (1 << (n - 1))).mul_f64(0.75);
            assert!(
                matches!(r.next, NextRun::After(d) if d >= least),
                "{name}: failure {n} retried after {:?}, expected at least {least:?}",
                r.next
            );
        }
    }
    let m = get(addr, "/metrics").await.1;
    assert!(sample(&m, "staircase_status_write_failures_total", &[OP]).unwrap() >= 10.0);
    running.stop().await;
    for name in ["calm", "broken"] {
        let warnings: Vec<_> = events_about(&env, name)
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("StatusWriteFailing"))
            .collect();
        assert_eq!(warnings.len(), 1, "{name}: {warnings:#?}");
        assert_eq!(
            warnings[0].series.as_ref().map(|s| s.count),
            None,
            "published once"
        );
    }
}

/// A step that waits with a reason that changes on every run: the status write it causes must
/// not wake the object again (its echo leaves a message-only change unwritten).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changing_wait_reason_does_not_loop_through_the_status() {
    let env = Env::start().await;
    env.install::<Widget>().await;
    let op = widget_operator(&env);
    let running = Running::operator(op);
    let widgets: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    widgets
        .create(&PostParams::default(), &widget("sched", "countdown"))
        .await
        .unwrap();
    let waiting_unwritten = |r: &RunReport| {
        matches!(r.end, RunEnd::Waiting { .. }) && !r.status_written && r.status_error.is_none()
    };
    // The first run writes `Waiting`; the run its watch event starts writes nothing.
    running.wait_report(waiting_unwritten).await;
    let settled = running.reports().len();
    // Each edit of the object (a new view, not the echo) runs it once and writes the new
    // reason once; its echo again writes nothing.
    for i in 0..3 {
        let poke = serde_json::json!({ "metadata": { "annotations": { "poke": i.to_string() } } });
        let poked = widgets
            .patch("sched", &PatchParams::default(), &Patch::Merge(&poke))
            .await
            .unwrap();
        let at = poked.resource_version();
        let poke_run = async || {
            let reports = running.reports();
            reports
                .iter()
                .find(|r| r.observed_resource_version == at)
                .map(|r| r.run_id)
        };
        until("the poke's run", async || poke_run().await.is_some()).await;
        let after = poke_run().await.unwrap();
        running
            .wait_report(|r| waiting_unwritten(r) && r.run_id > after)
            .await;
    }
    let reports = running.stop().await;
    let echo_runs = reports.iter().filter(|r| waiting_unwritten(r)).count();
    assert!(
        reports.len() <= settled + 3 * 2,
        "{} runs for 3 edits after settling at {settled}: {:#?}",
        reports.len(),
        reports.iter().map(|r| r.to_string()).collect::<Vec<_>>()
    );
    assert!(echo_runs >= 1);
}

/// One object that does not decode as the operator's type (another version of the CRD wrote a
/// shape the type rejects) is skipped and reported; every other object runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_object_is_reported_and_the_others_run() {
    let env = Env::start().await;
    // The Widget CRD with `spec.mode` optional in the schema: the server accepts a widget
    // without it, the operator's type cannot read one.
    let mut crd = Widget::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .expect("schema");
    let spec = schema
        .properties
        .as_mut()
        .and_then(|p| p.get_mut("spec"))
        .expect("spec");
    spec.required = None;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let name = crd.name_any();
    tokio::time::timeout(
        GUARD,
        kube::runtime::wait::await_condition(
            crds,
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        ),
    )
    .await
    .expect("established")
    .unwrap();
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        "default",
        &kube::api::ApiResource::erase::<Widget>(&()),
    );
    let bad: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "test.staircase.rs/v1",
        "kind": "Widget",
        "metadata": { "name": "bad", "namespace": "default" },
        "spec": {},
    }))
    .unwrap();
    raw.create(&PostParams::default(), &bad).await.unwrap();
    let widgets: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    widgets
        .create(&PostParams::default(), &widget("good", "ok"))
        .await
        .unwrap();

    let op = widget_operator(&env);
    let addr = serve(&op).await;
    let running = Running::operator(op);
    let ready = |w: Option<&Widget>| {
        w.and_then(|w| w.status.as_ref())
            .is_some_and(|s| s.steps.is_ready_at(w.and_then(|w| w.metadata.generation)))
    };
    wait_for(&widgets, "good", ready).await;
    until("the Warning Event on the bad object", async || {
        events_about(&env, "bad")
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("Undecodable"))
    })
    .await;
    let m = get(addr, "/metrics").await.1;
    assert!(sample(&m, "staircase_undecodable_objects_total", &[OP]).unwrap() >= 1.0);
    let reports = running.stop().await;
    assert!(reports.iter().all(|r| r.object != "default/bad"));
    let note = events_about(&env, "bad").await[0].note.clone().unwrap();
    assert!(note.contains("missing field `mode`"), "{note}");
}

/// A step that modifies on every run without the spec changing is caught past the configured
/// bound: its runs fail from then on (condition, Warning Event, backoff) instead of running
/// as fast as the API server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_step_is_reported_and_backs_off() {
    let env = Env::start().await;
    env.install::<Widget>().await;
    let stairs = staircase!(Widget => [staircase_tests::widget::behave]);
    let op = Operator::with_state(env.client.clone(), stairs, Default::default())
        .with_status()
        .with_config(
            OperatorConfig::default()
                .with_namespace("default")
                .with_runaway_after(5),
        );
    let running = Running::operator(op);
    let widgets: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    widgets
        .create(&PostParams::default(), &widget("loop", "runaway"))
        .await
        .unwrap();
    let runaway = |r: &RunReport| matches!(&r.end, RunEnd::Failed { error, .. } if error.contains("runaway step"));
    until("two runaway runs", async || {
        running.reports().iter().filter(|r| runaway(r)).count() >= 2
    })
    .await;
    let reports = running.stop().await;
    let first = reports.iter().position(runaway).unwrap();
    assert_eq!(
        reports[..first]
            .iter()
            .filter(|r| matches!(r.end, RunEnd::Modified { .. }))
            .count(),
        5,
        "five modifications in a row are allowed"
    );
    let initial = Backoff::default().initial;
    let runaways: Vec<_> = reports.iter().filter(|r| runaway(r)).collect();
    for (i, r) in runaways.iter().enumerate() {
        let least = (initial * (1 << i)).mul_f64(0.75);
        assert!(
            matches!(r.next, NextRun::After(d) if d >= least),
            "runaway run {i} retried after {:?}",
            r.next
        );
    }
    let w = widgets.get("loop").await.unwrap();
    let failed = w.status.unwrap().steps;
    let failed = failed.condition(staircase::status::FAILED).unwrap();
    assert_eq!(failed.status, "True");
    assert!(
        failed.message.contains("runaway step: `behave`"),
        "{}",
        failed.message
    );
    assert!(events_about(&env, "loop").await.iter().any(|e| {
        e.type_.as_deref() == Some("Warning")
            && e.note
                .as_deref()
                .is_some_and(|n| n.contains("runaway step"))
    }),);
}

/// A create the server committed but answered 504 is not resent by the operator's client (a
/// `generateName` create would make a second object); a 429 (flow control, nothing applied) is,
/// and so are reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_client_never_resends_a_write_the_server_may_have_applied() {
    let env = Env::start().await;
    let op = staircase::OperatorClient::try_from(env.server.config()).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(op.client().clone(), "default");
    let made = || ConfigMap {
        metadata: ObjectMeta {
            generate_name: Some("once-".into()),
            labels: Some([("test".to_string(), "retry".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let count = async || {
        let all: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
        all.list(&ListParams::default().labels("test=retry"))
            .await
            .unwrap()
            .items
            .len()
    };

    let timeout = Fault::fail_after_commit(504, "Timeout")
        .verb(Verb::Create)
        .resource("configmaps")
        .times(1);
    let id = env.server.faults().inject(timeout);
    let err = cms
        .create(&PostParams::default(), &made())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Timeout"), "{err}");
    assert_eq!(env.server.faults().fired(id), 1);
    assert_eq!(count().await, 1, "the committed create was not resent");

    let busy = Fault::fail(429, "TooManyRequests")
        .verb(Verb::Create)
        .resource("configmaps")
        .times(1);
    let id = env.server.faults().inject(busy);
    cms.create(&PostParams::default(), &made()).await.unwrap();
    assert_eq!(env.server.faults().fired(id), 1);
    assert_eq!(count().await, 2, "the rejected create was resent once");

    let timeout = Fault::fail(504, "Timeout")
        .verb(Verb::Get)
        .resource("configmaps")
        .times(1);
    let id = env.server.faults().inject(timeout);
    let name = cms
        .list(&ListParams::default().labels("test=retry"))
        .await
        .unwrap()
        .items[0]
        .name_any();
    cms.get(&name).await.expect("a read answered 504 is resent");
    assert_eq!(env.server.faults().fired(id), 1);
}

/// A cluster-scoped parent: a team gets a Namespace and a ConfigMap inside it.
#[derive(
    kube::CustomResource, serde::Deserialize, serde::Serialize, Clone, Debug, schemars::JsonSchema,
)]
#[kube(group = "test.staircase.rs", version = "v1", kind = "Team")]
pub struct TeamSpec {
    /// Written into the ConfigMap.
    pub motto: String,
}

#[step]
async fn team_space(team: &Team, ctx: &Context) -> Result<Outcome> {
    let ns = format!("team-{}", team.name_any());
    let namespace = k8s_openapi::api::core::v1::Namespace {
        metadata: ObjectMeta {
            name: Some(ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let settings = ConfigMap {
        metadata: ObjectMeta {
            name: Some("settings".into()),
            namespace: Some(ns),
            ..Default::default()
        },
        data: Some([("motto".to_string(), team.spec.motto.clone())].into()),
        ..Default::default()
    };
    // The ConfigMap sorts before the Namespace by kind: the Namespace must still come first.
    Children::new(team)
        .apply(settings)
        .apply(namespace)
        .sync(ctx)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_scoped_parent_gets_its_namespace_first_and_runs_when_a_child_in_it_drifts() {
    let env = Env::start().await;
    env.install::<Team>().await;
    let client = env.client.clone();
    let running = Running::spawn(move |reports, stop| {
        Operator::new(client, staircase!(Team => [team_space]))
            .owns::<k8s_openapi::api::core::v1::Namespace>()
            .owns::<ConfigMap>()
            .on_run(recorder(reports))
            .run_until(async {
                stop.await.ok();
            })
    });
    let teams: Api<Team> = Api::all(env.client.clone());
    let team = Team::new(
        "blue",
        TeamSpec {
            motto: "ship it".into(),
        },
    );
    teams.create(&PostParams::default(), &team).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "team-blue");
    let motto = |want: &'static str| {
        move |cm: Option<&ConfigMap>| {
            cm.and_then(|c| c.data.as_ref())
                .and_then(|d| d.get("motto"))
                .map(String::as_str)
                == Some(want)
        }
    };
    wait_for(&cms, "settings", motto("ship it")).await;
    running
        .wait_report(|r| matches!(r.end, RunEnd::Converged))
        .await;
    until("the operator's watches are open", async || {
        env.server.open_watches() >= 3
    })
    .await;

    // Drift in the child inside the team's Namespace: only a run of the (cluster-scoped) team,
    // found through the owner reference, repairs it; resync is minutes away.
    let drift = serde_json::json!({ "data": { "motto": "tampered" } });
    cms.patch("settings", &PatchParams::default(), &Patch::Merge(&drift))
        .await
        .unwrap();
    wait_for(&cms, "settings", motto("ship it")).await;
    let reports = running.stop().await;
    assert!(
        reports.iter().all(|r| r.object == "blue"),
        "every run is of the team itself, keyed without a namespace: {:#?}",
        reports.iter().map(|r| r.to_string()).collect::<Vec<_>>()
    );
}

fn conditions_of(w: &Widget) -> Vec<(String, String, String)> {
    let status = w.status.as_ref().map(|s| &s.steps);
    status
        .map(|s| &s.conditions)
        .into_iter()
        .flatten()
        .filter(|c| {
            [staircase::status::RECONCILING, staircase::status::STALLED].contains(&c.type_.as_str())
        })
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_conditions_say_in_progress_stalled_and_current() {
    let env = Env::start().await;
    env.install::<Widget>().await;
    let op = widget_operator(&env).with_config(
        OperatorConfig::default()
            .with_namespace("default")
            .with_kstatus(true),
    );
    let widgets: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    let w = widgets
        .create(&PostParams::default(), &widget("k", "wait"))
        .await
        .unwrap();
    let (reconciling, stalled) = (
        staircase::status::RECONCILING.to_string(),
        staircase::status::STALLED.to_string(),
    );
    // Sets the widget's mode, runs it once, and reads it back.
    let run_in_mode = async |mode: &str| {
        let patch = serde_json::json!({ "spec": { "mode": mode } });
        widgets
            .patch("k", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        op.run_once(widgets.get("k").await.unwrap()).await.unwrap();
        widgets.get("k").await.unwrap()
    };
    // Waiting: in progress.
    op.run_once(w).await.unwrap();
    let w = widgets.get("k").await.unwrap();
    assert_eq!(
        conditions_of(&w),
        [(reconciling.clone(), "True".into(), "Waiting".into())]
    );
    // An error retrying will not fix: stalled, no longer in progress.
    let w = run_in_mode("permanent").await;
    assert_eq!(
        conditions_of(&w),
        [(stalled.clone(), "True".into(), "behave".into())]
    );
    // Fixed: current, neither condition present (kstatus reads their absence as "no").
    let w = run_in_mode("").await;
    assert_eq!(conditions_of(&w), []);
    let s = &w.status.as_ref().unwrap().steps;
    assert!(s.is_ready_at(w.metadata.generation));
    assert_eq!(s.observed_generation, w.metadata.generation);
}

/// Says in a condition of its own whether the widget's mode is set; with mode `clash`, tries to
/// set the runtime's `Ready`.
#[step]
async fn mode_condition(
    w: &Widget,
    ctx: &Context<staircase_tests::widget::Counters>,
) -> Result<Outcome> {
    let type_ = if w.spec.mode == "clash" {
        "Ready"
    } else {
        "ModeSet"
    };
    let set = !w.spec.mode.is_empty();
    ctx.set_condition(type_, set, "FromSpec", format!("mode {:?}", w.spec.mode))?;
    Ok(Outcome::unchanged())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_sets_a_condition_of_its_own_through_the_runtimes_status_write() {
    let env = Env::start().await;
    env.install::<Widget>().await;
    let op = Operator::with_state(
        env.client.clone(),
        staircase!(Widget => [mode_condition]),
        Default::default(),
    )
    .with_status();
    let widgets: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    widgets
        .create(&PostParams::default(), &widget("c", ""))
        .await
        .unwrap();
    let mode_set = |w: &Widget| {
        let c = w.status.as_ref()?.steps.condition("ModeSet")?.clone();
        Some((c.status, c.reason, c.message))
    };
    let run = async || {
        let r = op.run_once(widgets.get("c").await.unwrap()).await.unwrap();
        (r, widgets.get("c").await.unwrap())
    };
    let (r, w) = run().await;
    assert!(
        matches!(r.end, RunEnd::Converged) && r.step_writes() == 0,
        "{r}"
    );
    assert_eq!(
        mode_set(&w),
        Some(("False".into(), "FromSpec".into(), "mode \"\"".into()))
    );
    assert!(
        w.status
            .as_ref()
            .unwrap()
            .steps
            .is_ready_at(w.metadata.generation)
    );
    // The same condition again: nothing to write.
    let before = env.status_writes("widgets.test.staircase.rs");
    run().await;
    assert_eq!(env.status_writes("widgets.test.staircase.rs"), before);
    let patch = serde_json::json!({ "spec": { "mode": "on" } });
    widgets
        .patch("c", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let (_, w) = run().await;
    assert_eq!(mode_set(&w).map(|c| c.0), Some("True".into()));
    // The runtime's own conditions are not a step's to set.
    let patch = serde_json::json!({ "spec": { "mode": "clash" } });
    widgets
        .patch("c", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let (r, _) = run().await;
    let RunEnd::Failed { error, .. } = &r.end else {
        panic!("{r}")
    };
    assert!(
        error.contains("the condition type \"Ready\" is kept by the runtime"),
        "{error}"
    );
}
