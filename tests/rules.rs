//! Every outcome and every rule violation, produced on purpose by `Widget`'s misbehaving steps.
//! Single runs go through `Operator::run_once`, so each assertion is about exactly one run.

use std::time::Duration;

use kube::api::{Api, PostParams};
use staircase::prelude::*;
use staircase::{NextRun, OperatorClient, Rule, RunEnd, status};
use staircase_tests::widget::{Counters, Widget, behave, first, inspect, last, widget};
use staircase_tests::{Env, Running, recorder, wait_for};

fn stairs() -> impl Reconciler<Widget, Counters> {
    staircase!(Widget => [first, behave, inspect, last])
}

type WidgetOperator<M, C> = Operator<Widget, Counters, M, C>;

async fn setup(
    mode: &str,
) -> (
    Env,
    Api<Widget>,
    WidgetOperator<
        impl staircase::Stairs<Widget, Counters>,
        impl staircase::Stairs<Widget, Counters>,
    >,
) {
    setup_with(mode, |env| env.client.clone().into()).await
}

/// `setup` with the operator's clients made by `clients`.
async fn setup_with(
    mode: &str,
    clients: impl FnOnce(&Env) -> OperatorClient,
) -> (
    Env,
    Api<Widget>,
    WidgetOperator<
        impl staircase::Stairs<Widget, Counters>,
        impl staircase::Stairs<Widget, Counters>,
    >,
) {
    let env = Env::start().await;
    env.install::<Widget>().await;
    let api: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    api.create(&PostParams::default(), &widget("w", mode))
        .await
        .unwrap();
    let op = Operator::with_state(clients(&env), stairs(), Counters::default()).with_status();
    (env, api, op)
}

/// Runs once on the current object (re-read from the server first).
async fn run(
    api: &Api<Widget>,
    op: &WidgetOperator<
        impl staircase::Stairs<Widget, Counters>,
        impl staircase::Stairs<Widget, Counters>,
    >,
) -> RunReport {
    let obj = api.get("w").await.unwrap();
    op.run_once(obj).await.expect("a run happens")
}

fn cond(w: &Widget, t: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    w.status
        .as_ref()
        .unwrap()
        .steps
        .condition(t)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn modified_stops_the_run_and_unchanged_goes_on() {
    let (env, api, op) = setup("ok").await;
    let r = run(&api, &op).await;
    assert_eq!(
        r.end,
        RunEnd::Modified {
            step: "first",
            description: "created first".into()
        }
    );
    assert_eq!(r.steps.len(), 1, "nothing runs after a modification");
    let r = run(&api, &op).await;
    assert_eq!(
        r.steps.iter().map(|s| s.step).collect::<Vec<_>>(),
        ["first", "behave", "inspect", "last"]
    );
    assert!(matches!(r.end, RunEnd::Modified { step: "last", .. }));
    let r = run(&api, &op).await;
    assert_eq!(r.end, RunEnd::Converged);
    assert_eq!(r.step_writes(), 0);
    assert_eq!(env.writes("configmaps"), 2);
}

#[tokio::test]
async fn wait_stops_without_change_and_sets_waiting() {
    let (_env, api, op) = setup("wait").await;
    run(&api, &op).await;
    let r = run(&api, &op).await;
    assert_eq!(
        r.end,
        RunEnd::Waiting {
            step: "behave",
            reason: "waiting for approval".into()
        }
    );
    assert_eq!(r.next, NextRun::After(OperatorConfig::default().resync));
    let w = api.get("w").await.unwrap();
    let waiting = cond(&w, status::WAITING);
    assert_eq!(
        (waiting.status.as_str(), waiting.reason.as_str()),
        ("True", "behave")
    );
    assert_eq!(cond(&w, status::READY).status, "False");
}

#[tokio::test]
async fn done_ends_early_and_counts_as_ready() {
    let (_env, api, op) = setup("done").await;
    run(&api, &op).await;
    let r = run(&api, &op).await;
    assert_eq!(
        r.end,
        RunEnd::Done {
            step: "behave",
            reason: "suspended by spec".into()
        }
    );
    assert_eq!(r.steps.len(), 2, "later steps do not run");
    let w = api.get("w").await.unwrap();
    let ready = cond(&w, status::READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Done")
    );
}

#[tokio::test]
async fn errors_back_off_and_permanent_errors_do_not_hot_loop() {
    let (_env, api, op) = setup("fail").await;
    run(&api, &op).await;
    let backoff = OperatorConfig::default().backoff;
    let mut delays = Vec::new();
    for _ in 0..3 {
        let r = run(&api, &op).await;
        assert!(
            matches!(&r.end, RunEnd::Failed { step: Some("behave"), error } if error.contains("the backend is down"))
        );
        let NextRun::After(d) = r.next else {
            panic!("failed runs are retried")
        };
        delays.push(d);
    }
    // Exponential with jitter of at most a quarter: each delay is within its band.
    for (i, d) in delays.iter().enumerate() {
        let full = backoff.initial * 2u32.pow(i as u32);
        assert!(
            *d <= full && *d >= full.mul_f64(0.75),
            "retry {i}: {d:?} vs {full:?}"
        );
    }
    let w = api.get("w").await.unwrap();
    let failed = cond(&w, status::FAILED);
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("True", "behave")
    );
    assert!(failed.message.contains("the backend is down"));

    let (_env, api, op) = setup("permanent").await;
    run(&api, &op).await;
    let r = run(&api, &op).await;
    assert_eq!(r.next, NextRun::After(backoff.permanent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_recover_and_clear_the_failed_condition() {
    let env = Env::start().await;
    env.install::<Widget>().await;
    let api: Api<Widget> = Api::namespaced(env.client.clone(), "default");
    api.create(&PostParams::default(), &widget("w", "fail_twice"))
        .await
        .unwrap();
    let client = env.client.clone();
    let cfg = OperatorConfig::default().with_backoff(staircase::Backoff {
        initial: Duration::from_millis(20),
        ..Default::default()
    });
    let op = Running::spawn(move |reports, stop| {
        Operator::with_state(client, stairs(), Counters::default())
            .with_config(cfg)
            .with_status()
            .on_run(recorder(reports))
            .run_until(async {
                stop.await.ok();
            })
    });
    wait_for(&api, "w", |w: Option<&Widget>| {
        w.and_then(|w| w.status.as_ref())
            .is_some_and(|s| s.steps.is_ready_at(Some(1)))
    })
    .await;
    let reports = op.stop().await;
    let failures = reports
        .iter()
        .filter(|r| matches!(r.end, RunEnd::Failed { .. }))
        .count();
    assert_eq!(failures, 2);
    let w = api.get("w").await.unwrap();
    assert_eq!(cond(&w, status::FAILED).status, "False");
}

async fn violation(mode: &str) -> (RunReport, Api<Widget>, Env) {
    let (env, api, op) = setup(mode).await;
    run(&api, &op).await;
    (run(&api, &op).await, api, env)
}

#[tokio::test]
async fn a_write_reported_as_unchanged_fails_the_run() {
    let (r, api, _env) = violation("sneaky").await;
    let v = r.steps[1].violation.as_ref().expect("violation recorded");
    assert_eq!(
        (v.step.as_str(), v.rule),
        ("behave", Rule::WriteWithoutModified)
    );
    assert_eq!(v.writes.len(), 1);
    assert!(v.writes[0].path.ends_with("/configmaps") && v.writes[0].method == "POST");
    assert!(
        matches!(&r.end, RunEnd::Failed { step: Some("behave"), error } if error.contains("broke the one-modification rule"))
    );
    assert_eq!(r.steps.len(), 2, "the run stops at the violation");
    let w = api.get("w").await.unwrap();
    assert!(cond(&w, status::FAILED).message.contains("behave"));
}

#[tokio::test]
async fn two_writes_in_one_modification_fail_the_run() {
    let (r, _, _env) = violation("double").await;
    let v = r.steps[1].violation.as_ref().expect("violation recorded");
    assert_eq!(v.rule, Rule::MoreThanOneWrite);
    assert_eq!(v.writes.len(), 2);
    assert!(matches!(r.end, RunEnd::Failed { .. }));
}

/// Built from a `kube::Config`, the operator's client has the write counting in its own stack
/// (one client, not one wrapping another): every rule is still enforced, and a step's single
/// write is counted once, not twice.
#[tokio::test]
async fn the_counting_layer_in_a_client_built_from_a_config_enforces_the_same_rules() {
    let from_config = |env: &Env| OperatorClient::try_from(env.server.config()).unwrap();
    let (_env, api, op) = setup_with("ok", from_config).await;
    let first = run(&api, &op).await;
    assert!(matches!(first.end, RunEnd::Modified { step: "first", .. }));
    assert!(first.steps.iter().all(|s| s.violation.is_none()));
    for (mode, rule) in [
        ("double", Rule::MoreThanOneWrite),
        ("sneaky", Rule::WriteWithoutModified),
    ] {
        let (_env, api, op) = setup_with(mode, from_config).await;
        run(&api, &op).await;
        let r = run(&api, &op).await;
        let v = r.steps[1].violation.as_ref().expect("violation recorded");
        assert_eq!(v.rule, rule, "{mode}");
    }
}

#[tokio::test]
async fn a_read_only_step_may_not_write() {
    let (r, _, _env) = violation("readonly_write").await;
    let v = r.steps[2].violation.as_ref().expect("violation recorded");
    assert_eq!((v.step.as_str(), v.rule), ("inspect", Rule::ReadOnlyWrote));
}

#[tokio::test]
async fn warn_policy_reports_but_lets_the_run_go_on() {
    let (_env, api, op) = setup("sneaky").await;
    let op = op.with_config(OperatorConfig::default().with_rule_policy(RulePolicy::Warn));
    run(&api, &op).await;
    let r = run(&api, &op).await;
    assert!(r.steps[1].violation.is_some());
    assert!(
        matches!(r.end, RunEnd::Modified { step: "last", .. }),
        "went on to the next step"
    );
}
