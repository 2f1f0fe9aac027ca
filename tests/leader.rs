//! Leader election with two operators against one embedded API server: only the leader runs,
//! the standby takes over when the leader releases the Lease on shutdown or crashes, and a leader
//! whose Lease is taken stops reconciling at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use staircase::prelude::*;
use staircase::{Health, LeaderElection, Leadership, RunEnd};
use staircase_examples::foo::{self, App, Foo};
use staircase_tests::foos::{new_foo, ready};
use staircase_tests::{Env, GUARD, Running, wait_for};

/// Short timings so handovers take a fraction of a second (the defaults are client-go's 15/10/2 s).
fn election(identity: &str) -> LeaderElection {
    LeaderElection::new("foo-operator")
        .with_namespace("default")
        .with_identity(identity)
        .with_timing(
            Duration::from_secs(2),
            Duration::from_secs(1),
            Duration::from_millis(50),
        )
}

/// A replica: its handle and its health.
struct Replica {
    running: Running,
    health: Health,
}

fn replica(env: &Env, identity: &str) -> Replica {
    replica_with(env, election(identity))
}

fn replica_with(env: &Env, election: LeaderElection) -> Replica {
    let op = Operator::with_state(
        env.client.clone(),
        foo::stairs(),
        App {
            manager: "foo-operator".into(),
        },
    )
    .with_status()
    .with_config(OperatorConfig::default().with_leader_election(election));
    let health = op.health();
    let running = Running::spawn(move |reports, stop| {
        op.on_run(staircase_tests::recorder(reports))
            .run_until(async {
                stop.await.ok();
            })
    });
    Replica { running, health }
}

async fn until_role(h: &Health, role: Leadership) {
    let wait = async {
        while h.leadership() != role {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .unwrap_or_else(|_| panic!("never became {role:?}"));
}

/// Another holder takes the Lease (e.g. a replica that saw it expire during a network partition).
async fn take_lease(env: &Env) {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "default");
    let take = serde_json::json!({ "spec": { "holderIdentity": "intruder", "leaseDurationSeconds": 3600 } });
    leases
        .patch(
            "foo-operator",
            &PatchParams::default(),
            &Patch::Merge(&take),
        )
        .await
        .unwrap();
}

async fn holder(env: &Env) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "default");
    leases.get("foo-operator").await.ok()?.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_runs_and_the_standby_takes_over_when_it_shuts_down() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let a = replica(&env, "a");
    until_role(&a.health, Leadership::Leading).await;
    let b = replica(&env, "b");
    until_role(&b.health, Leadership::Standby).await;
    assert!(
        b.health.is_ready(),
        "a standby that can read the Lease is ready"
    );
    assert_eq!(holder(&env).await.as_deref(), Some("a"));

    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("one"))
        .await
        .unwrap();
    wait_for(&foos, "one", ready).await;
    assert!(b.running.reports().is_empty(), "the standby never runs");

    // Graceful stop releases the Lease: the standby leads at its next look, not after expiry.
    let a_reports = a.running.stop().await;
    assert!(!a_reports.is_empty());
    assert_ne!(
        holder(&env).await.as_deref(),
        Some("a"),
        "released on shutdown"
    );
    until_role(&b.health, Leadership::Leading).await;
    assert_eq!(holder(&env).await.as_deref(), Some("b"));

    foos.create(&PostParams::default(), &new_foo("two"))
        .await
        .unwrap();
    wait_for(&foos, "two", ready).await;
    let b_reports = b.running.stop().await;
    assert!(b_reports.iter().any(|r| r.object == "default/two"));
    assert!(a_reports.iter().all(|r| r.object != "default/two"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_standby_leads_once_the_lease_expires() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let a = replica(&env, "a");
    until_role(&a.health, Leadership::Leading).await;
    let b = replica(&env, "b");
    until_role(&b.health, Leadership::Standby).await;
    // A crash: no release; the Lease still names `a` until it expires.
    a.running.crash().await;
    until_role(&b.health, Leadership::Leading).await;
    assert_eq!(holder(&env).await.as_deref(), Some("b"));
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("three"))
        .await
        .unwrap();
    wait_for(&foos, "three", ready).await;
    b.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_reconciling_at_once() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let a = replica(&env, "a");
    until_role(&a.health, Leadership::Leading).await;

    take_lease(&env).await;
    until_role(&a.health, Leadership::Standby).await;
    assert!(a.health.is_ready(), "standing by correctly is ready");

    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("four"))
        .await
        .unwrap();
    // Give the cache of a (wrongly) still-running controller every chance to see it: wait until
    // the object is in the API server, then check nothing ran it.
    foos.get("four").await.unwrap();
    assert!(
        a.running
            .reports()
            .iter()
            .all(|r| r.object != "default/four")
    );

    // The intruder lets go: `a` leads again and runs the object.
    let free = serde_json::json!({ "spec": { "holderIdentity": null } });
    Api::<Lease>::namespaced(env.client.clone(), "default")
        .patch(
            "foo-operator",
            &PatchParams::default(),
            &Patch::Merge(&free),
        )
        .await
        .unwrap();
    until_role(&a.health, Leadership::Leading).await;
    wait_for(&foos, "four", ready).await;
    let reports = a.running.stop().await;
    assert!(
        reports
            .iter()
            .any(|r| r.object == "default/four" && r.end == RunEnd::Converged)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_configured_from_one_hosts_environment_elect_one_leader() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    // Two processes on one host (or two `hostNetwork` pods on one node): same HOSTNAME, no
    // POD_NAME.
    let from_env = || {
        let vars = [
            ("STAIRCASE_LEADER_ELECTION", "true"),
            ("STAIRCASE_LEASE_NAME", "foo-operator"),
            ("STAIRCASE_LEASE_NAMESPACE", "default"),
            ("HOSTNAME", "node-1"),
        ];
        let cfg = OperatorConfig::from_lookup(|k| {
            vars.iter()
                .find(|(v, _)| *v == k)
                .map(|(_, x)| x.to_string())
        })
        .unwrap();
        let le = cfg.leader_election.expect("leader election on");
        let timing = election("unused");
        le.with_timing(
            timing.lease_duration,
            timing.renew_deadline,
            timing.retry_period,
        )
    };
    let a = replica_with(&env, from_env());
    until_role(&a.health, Leadership::Leading).await;
    let b = replica_with(&env, from_env());
    until_role(&b.health, Leadership::Standby).await;
    // Give `b` several looks at the Lease (the leader renews it every 50 ms): with an identity
    // equal to the holder's it would take the Lease as its own at the next one.
    let renewals = async {
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let leases: Api<Lease> = Api::namespaced(env.client.clone(), "default");
            let renewed = leases
                .get("foo-operator")
                .await
                .unwrap()
                .spec
                .unwrap()
                .renew_time;
            if seen.last() != Some(&renewed) {
                seen.push(renewed);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(GUARD, renewals)
        .await
        .expect("renewed");
    assert_eq!(b.health.leadership(), Leadership::Standby, "one leader");
    assert_eq!(a.health.leadership(), Leadership::Leading);
    b.running.stop().await;
    a.running.stop().await;
}

/// A replica that takes the Lease over from one that stopped renewing waits its
/// `takeover_delay` (the old leader's external calls may still land) before running anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_waits_its_delay_before_running_anything() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("late"))
        .await
        .unwrap();
    let a = replica(&env, "a");
    until_role(&a.health, Leadership::Leading).await;
    wait_for(&foos, "late", ready).await;
    a.running.crash().await;
    let delay = Duration::from_millis(800);
    let b = replica_with(&env, election("b").with_takeover_delay(delay));
    until_role(&b.health, Leadership::Leading).await;
    b.running.wait_report(|r| r.object == "default/late").await;
    // Measured from the takeover the Lease records (its `acquireTime`, written by `b`), not
    // from when this test noticed it, which is later.
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "default");
    let spec = leases.get("foo-operator").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    let took = spec.acquire_time.expect("acquireTime").0;
    let ran_after = k8s_openapi::jiff::Timestamp::now().duration_since(took);
    assert!(
        ran_after >= k8s_openapi::jiff::SignedDuration::try_from(delay).unwrap(),
        "ran {ran_after:?} after taking the Lease over"
    );
    b.running.stop().await;
}

/// Signalled when `blocks` starts; it then never finishes by itself.
static BLOCKING: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[step]
async fn blocks(_foo: &Foo) -> Result<Outcome> {
    BLOCKING.notify_one();
    std::future::pending().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_off_by_a_lost_leadership_is_reported_as_cancelled() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let op = Operator::new(env.client.clone(), staircase!(Foo => [blocks]))
        .with_config(OperatorConfig::default().with_leader_election(election("a")));
    let health = op.health();
    let running = Running::spawn(move |reports, stop| {
        op.on_run(staircase_tests::recorder(reports))
            .run_until(async {
                stop.await.ok();
            })
    });
    until_role(&health, Leadership::Leading).await;
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("cut"))
        .await
        .unwrap();
    tokio::time::timeout(GUARD, BLOCKING.notified())
        .await
        .expect("the step started");
    assert!(running.reports().is_empty(), "the run is still in flight");

    take_lease(&env).await;
    running.wait_report(|r| r.object == "default/cut").await;
    let report = running.reports().remove(0);
    assert_eq!(
        report.end,
        RunEnd::Cancelled {
            step: Some("blocks")
        }
    );
    assert!(report.steps.is_empty(), "no step finished");
    assert!(!report.status_written);
    running.stop().await;
}
