//! The runtime against the embedded API server over HTTP: convergence with exactly one write per
//! step, nothing written once converged, status and conditions, cleanup behind a finalizer, and
//! a crash after any write.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use staircase::prelude::*;
use staircase::{RunEnd, status};
use staircase_examples::foo::{self, App, Foo};
use staircase_testkit::Verb;
use staircase_tests::foos::{new_foo, ready};
use staircase_tests::{Env, Running, recorder, wait_for, wait_gone};

/// Steps in the Foo staircase; each makes one child.
const K: usize = 3;

fn app() -> App {
    App {
        manager: "foo-operator".into(),
    }
}

fn spawn(env: &Env) -> Running {
    spawn_with(env, OperatorConfig::default())
}

fn spawn_with(env: &Env, config: OperatorConfig) -> Running {
    let client = env.client.clone();
    Running::spawn(move |reports, stop| {
        Operator::with_state(client, foo::stairs(), app())
            .with_status()
            .with_config(config)
            .on_run(recorder(reports))
            .run_until(async {
                stop.await.ok();
            })
    })
}

async fn create_foos(env: &Env, n: usize) -> (Api<Foo>, Vec<String>) {
    let api: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("foo-{i}");
        api.create(&PostParams::default(), &new_foo(&name))
            .await
            .expect("create foo");
        names.push(name);
    }
    (api, names)
}

fn child_writes(env: &Env) -> usize {
    env.writes("configmaps") + env.writes("secrets") + env.writes("services")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_n_objects_with_exactly_n_times_k_writes_and_none_after() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    const N: usize = 12;
    let (api, names) = create_foos(&env, N).await;

    let op = spawn(&env);
    for n in &names {
        wait_for(&api, n, ready).await;
    }
    let reports = op.stop().await;
    assert_eq!(
        child_writes(&env),
        N * K,
        "exactly one write per step per object"
    );
    let modifications = reports
        .iter()
        .filter(|r| matches!(r.end, RunEnd::Modified { .. }))
        .count();
    assert_eq!(modifications, N * K);
    assert!(
        reports.iter().all(|r| r.step_writes() <= 1),
        "never two writes in a run"
    );

    // A fresh operator runs every object once at start: a forced full pass over converged objects.
    let before = env.server.stats().writes();
    let op = spawn(&env);
    let converged_all = async {
        loop {
            let seen: BTreeSet<String> = op
                .reports()
                .iter()
                .filter(|r| r.end == RunEnd::Converged)
                .map(|r| r.object.clone())
                .collect();
            if seen.len() == N {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(staircase_tests::GUARD, converged_all)
        .await
        .expect("every object ran once more");
    let again = op.stop().await;
    assert_eq!(
        env.server.stats().writes(),
        before,
        "a converged object is never written"
    );
    assert!(
        again
            .iter()
            .all(|r| r.step_writes() == 0 && !r.status_written)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_progress_then_ready_at_each_generation() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let (api, names) = create_foos(&env, 1).await;
    let name = &names[0];
    let op = spawn(&env);
    wait_for(&api, name, ready).await;

    let foo = api.get(name).await.unwrap();
    let s = &foo.status.as_ref().unwrap().steps;
    assert_eq!(s.observed_generation, Some(1));
    let cond = |t: &str| s.condition(t).unwrap().clone();
    assert_eq!(cond(status::READY).status, "True");
    assert_eq!(cond(status::PROGRESSING).status, "False");
    assert_eq!(cond(status::WAITING).status, "False");
    assert_eq!(cond(status::FAILED).status, "False");

    // A spec change bumps the generation; the operator fixes the one drifted child and is Ready
    // again at generation 2.
    let patch = serde_json::json!({"spec": {"message": "changed"}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(&api, name, |f: Option<&Foo>| {
        f.is_some_and(|f| f.metadata.generation == Some(2)) && ready(f)
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let cm = cms.get(&format!("{name}-config")).await.unwrap();
    assert_eq!(cm.data.unwrap()["message"], "changed");
    let reports = op.stop().await;
    let updated = reports
        .iter()
        .filter(|r| r.generation == Some(2))
        .filter_map(|r| match &r.end {
            RunEnd::Modified { step, .. } => Some(*step),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(
        updated,
        vec!["ensure_config"],
        "only the drifted child is rewritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_runs_behind_the_finalizer_then_releases_it() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let (api, names) = create_foos(&env, 1).await;
    let name = &names[0];
    let op = spawn(&env);
    wait_for(&api, name, ready).await;
    let foo = api.get(name).await.unwrap();
    assert_eq!(foo.finalizers(), [staircase::DEFAULT_FINALIZER.to_string()]);

    api.delete(name, &DeleteParams::default()).await.unwrap();
    wait_gone(&api, name).await;
    op.wait_report(|r| r.end == RunEnd::FinalizerRemoved).await;
    let reports = op.stop().await;
    let ends: Vec<_> = reports.iter().map(|r| r.end.clone()).collect();
    assert_eq!(
        ends.first(),
        Some(&RunEnd::FinalizerAdded),
        "the finalizer is the first modification"
    );
    let cleanup: Vec<_> = reports.iter().filter(|r| r.deleting).collect();
    assert!(
        cleanup
            .iter()
            .any(|r| matches!(&r.end, RunEnd::Modified { step, .. } if *step == "remove_config"))
    );
    assert_eq!(
        cleanup.last().map(|r| r.end.clone()),
        Some(RunEnd::FinalizerRemoved)
    );
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    assert!(
        cms.get_opt(&format!("{name}-config"))
            .await
            .unwrap()
            .is_none()
    );
}

/// Crash the operator right after write number `i` (for every `i` of a full convergence), start
/// a fresh one, and check it converges with no write repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_write_converges_without_duplicate_writes() {
    // Writes of one object's convergence: finalizer + K children (status writes not counted).
    for crash_after in 1..=(K + 1) {
        let env = Env::start().await;
        env.install::<Foo>().await;
        let (api, names) = create_foos(&env, 1).await;
        let name = &names[0];
        let baseline = env.writes("foos.demo.staircase.rs");
        let op = spawn(&env);
        let reached = async {
            while env.writes("foos.demo.staircase.rs") - baseline + child_writes(&env) < crash_after
            {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(staircase_tests::GUARD, reached)
            .await
            .expect("writes happen");
        op.crash().await;

        let op = spawn(&env);
        wait_for(&api, name, ready).await;
        op.stop().await;
        assert_eq!(
            child_writes(&env),
            K,
            "crash after write {crash_after}: no child written twice"
        );
        let finalizer_writes = env.writes("foos.demo.staircase.rs") - baseline;
        assert_eq!(
            finalizer_writes, 1,
            "crash after write {crash_after}: finalizer added once"
        );
    }
}

/// A converged object's resync runs read nothing from the API server: the object comes from the
/// watch cache and its children from the caches of the kinds it owns. A watch that loses an edit
/// is still caught: the resync audit's one LIST finds the cache behind, and the object's next run
/// re-reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_runs_read_nothing_and_the_audit_catches_a_lost_edit() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let mut cfg = OperatorConfig::default().with_resync(std::time::Duration::from_millis(300));
    cfg.read_your_writes_grace = std::time::Duration::from_millis(100);
    let running = Running::operator(foo::operator(env.client.clone(), app()).with_config(cfg));
    let api: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    api.create(&PostParams::default(), &new_foo("v"))
        .await
        .unwrap();
    wait_for(&api, "v", |f: Option<&Foo>| ready(f)).await;
    let stats = env.server.stats();
    let count = |r: &str, v| stats.count_resource(r, None, v);
    // GETs of the object and its children, LISTs of the children (the audit LISTs the Foos).
    let reads = || {
        count("foos.demo.staircase.rs", Verb::Get)
            + ["configmaps", "secrets", "services"]
                .iter()
                .map(|r| count(r, Verb::Get) + count(r, Verb::List))
                .sum::<u64>()
    };
    let converged = |r: &staircase::RunReport| r.end == RunEnd::Converged && !r.status_written;
    running.wait_report(converged).await;
    let (before, audits, runs) = (
        reads(),
        count("foos.demo.staircase.rs", Verb::List),
        running.reports().len(),
    );
    let resyncs = async {
        while running.reports()[runs..]
            .iter()
            .filter(|r| converged(r))
            .count()
            < 3
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(staircase_tests::GUARD, resyncs)
        .await
        .expect("three resync runs");
    assert_eq!(reads(), before, "resync runs read nothing");
    assert!(
        count("foos.demo.staircase.rs", Verb::List) > audits,
        "the audit listed the Foos"
    );

    // Every watch event is lost from now on: the edit never reaches the operator's caches.
    env.server.faults().drop_watch_events(1.0, 7);
    let edit = serde_json::json!({ "spec": { "message": "edited" } });
    api.patch("v", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let followed = async {
        loop {
            let cm = cms.get("v-config").await.unwrap();
            if cm.data.and_then(|d| d.get("message").cloned()).as_deref() == Some("edited") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(staircase_tests::GUARD, followed)
        .await
        .expect("the lost edit is caught by the audit and followed");
    running.stop().await;
}

/// A view older than one a run already acted on is stale even when this operator never wrote
/// that newer version (it came from a re-read, say, while the watch lags): it is not acted on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_older_than_one_already_acted_on_is_not_acted_on() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    // A long grace: within it a stale view is skipped rather than replaced by a read.
    let grace = std::time::Duration::from_secs(3600);
    let cfg = OperatorConfig {
        read_your_writes_grace: grace,
        ..OperatorConfig::default()
    };
    let op = Operator::with_state(env.client.clone(), foo::stairs(), app()).with_config(cfg);
    let api: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    let old = api
        .create(&PostParams::default(), &new_foo("o"))
        .await
        .unwrap();
    let edit = serde_json::json!({ "spec": { "message": "newer" } });
    let newer = api
        .patch("o", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    let r = op.run_once(newer.clone()).await.expect("a run");
    assert_eq!(r.observed_resource_version, newer.resource_version());
    let writes = child_writes(&env);
    // The lagging watch now delivers the creation: acting on it would write "hi o" back.
    assert!(
        op.run_once(old).await.is_none(),
        "the older view is skipped"
    );
    assert_eq!(child_writes(&env), writes);
}

/// After a watch cannot resume (`410 Gone`) the watcher lists everything again: with
/// `Relist::InPlace` the operator's cache takes that list in place (no second copy of the cache),
/// keeps its copy of what did not change, and still drops what was deleted while the watch was
/// down. Driven by the real watcher against
/// the embedded server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_updates_the_cache_in_place_and_drops_what_was_deleted_meanwhile() {
    use futures::StreamExt;
    use kube::runtime::reflector::{ObjectRef, store::Writer};
    use kube::runtime::watcher::{self, Event, watcher};
    use staircase::relist::reflector_in_place;

    let env = Env::start().await;
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let cm = |name: &str| ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some([("test".to_string(), "relist".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    for name in ["a", "b", "c"] {
        api.create(&PostParams::default(), &cm(name)).await.unwrap();
    }
    let writer = Writer::<ConfigMap>::default();
    let store = writer.as_reader();
    let mut events = std::pin::pin!(reflector_in_place(
        writer,
        watcher(
            api.clone(),
            watcher::Config::default().labels("test=relist")
        )
    ));
    // Drives the watch until `done` holds for the store; returns what was passed on.
    let mut drive = async |done: &dyn Fn() -> bool| {
        let mut passed_on = Vec::new();
        while !done() {
            let next = tokio::time::timeout(staircase_tests::GUARD, events.next()).await;
            let next = next.unwrap_or_else(|_| panic!("stuck after {passed_on:?}"));
            match next.expect("the watcher never ends") {
                Ok(Event::Apply(o)) => passed_on.push(format!("apply {}", o.name_any())),
                Ok(Event::InitApply(o)) => passed_on.push(format!("list {}", o.name_any())),
                Ok(Event::Delete(o)) => passed_on.push(format!("delete {}", o.name_any())),
                Ok(Event::Init) => passed_on.push("init".into()),
                Ok(Event::InitDone) => passed_on.push("init-done".into()),
                Err(_) => {} // the 410 Gone that starts the relist
            }
        }
        passed_on
    };
    let key = |name: &str| ObjectRef::<ConfigMap>::new(name).within("default");
    let passed_on = drive(&|| store.len() == 3).await;
    assert_eq!(
        passed_on,
        ["init", "list a", "list b", "list c", "init-done"]
    );

    let cached_c = store.get(&key("c")).unwrap();

    // While the watch is down (its events held back, then its history compacted): `b` is
    // deleted and `a` changes. The watch cannot resume, so the watcher lists again.
    env.server.faults().hold_back_watch_events(1_000_000);
    api.delete("b", &DeleteParams::default()).await.unwrap();
    let edit = serde_json::json!({ "data": { "v": "2" } });
    let a2 = api
        .patch("a", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    env.server.faults().compact();
    env.server.faults().close_watches();
    env.server.faults().hold_back_watch_events(0);

    let passed_on = drive(&|| {
        store.get(&key("b")).is_none()
            && store.get(&key("a")).and_then(|a| a.resource_version()) == a2.resource_version()
    })
    .await;
    // The relist arrived as changes, one object at a time, and the deletion at its end.
    assert_eq!(passed_on, ["apply a", "apply c", "delete b"]);
    assert_eq!(store.len(), 2);
    // `c` was listed at the version the cache held: the cache kept its copy.
    assert!(std::sync::Arc::ptr_eq(
        &cached_c,
        &store.get(&key("c")).unwrap()
    ));
}

/// Whichever way the cache takes a relist (in place, or kube-runtime's swap), the operator runs
/// every object once more afterwards, finds it converged and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_relist_either_way_every_object_runs_once_and_nothing_is_written() {
    for relist in [staircase::Relist::InPlace, staircase::Relist::Swap] {
        let env = Env::start().await;
        env.install::<Foo>().await;
        const N: usize = 4;
        let (api, names) = create_foos(&env, N).await;
        let op = spawn_with(&env, OperatorConfig::default().with_relist(relist));
        for n in &names {
            wait_for(&api, n, ready).await;
        }
        let converged = || {
            op.reports()
                .iter()
                .filter(|r| r.end == RunEnd::Converged)
                .count()
        };
        // Every object's status write comes back as a watch event; wait for those runs too.
        let settled = async {
            while converged() < N {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(staircase_tests::GUARD, settled)
            .await
            .expect("the echoes of the status writes ran");
        // Move the resourceVersion past the watch's, so that after `compact` it cannot resume.
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
        let mut marker = ConfigMap::default();
        marker.metadata.name = Some("relist-marker".into());
        cms.create(&PostParams::default(), &marker).await.unwrap();
        let (before, runs) = (env.server.stats().writes(), converged());

        env.server.faults().compact();
        env.server.faults().close_watches();
        let relisted = async {
            while converged() < runs + N {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(staircase_tests::GUARD, relisted)
            .await
            .unwrap_or_else(|_| panic!("{relist:?}: every object ran after the relist"));
        op.stop().await;
        assert_eq!(env.server.stats().writes(), before, "{relist:?}");
    }
}

/// After the runtime removed the finalizer of a deleted object, a lagging watch's copy of it
/// from before the deletion (an owned child's event maps to it, a resync) is never acted on:
/// acting on it would re-create the children cleanup just removed. A new object of the same
/// name runs as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_object_never_runs_again_on_its_copy_from_before_the_deletion() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let op = Operator::with_state(env.client.clone(), foo::stairs(), app()).with_status();
    let api: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    api.create(&PostParams::default(), &new_foo("d"))
        .await
        .unwrap();
    let converge = async |op: &Operator<_, _, _, _>| loop {
        let r = op.run_once(api.get("d").await.unwrap()).await.unwrap();
        if r.end == RunEnd::Converged && !r.status_written {
            break;
        }
    };
    converge(&op).await;
    // What the operator's watch cache holds while its watch lags behind the deletion.
    let cached = api.get("d").await.unwrap();
    api.delete("d", &DeleteParams::default()).await.unwrap();
    loop {
        let deleting = api.get("d").await.unwrap();
        let r = op.run_once(deleting).await.expect("a cleanup run");
        if r.end == RunEnd::FinalizerRemoved {
            break;
        }
    }
    wait_gone(&api, "d").await;
    let writes = child_writes(&env);
    assert!(
        op.run_once(cached.clone()).await.is_none(),
        "the copy from before the deletion does not run"
    );
    assert!(op.run_once(cached).await.is_none(), "nor later");
    assert_eq!(child_writes(&env), writes, "no child re-created");

    // The garbage collector removes the old object's other children; then the name is reused.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), "default");
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(env.client.clone(), "default");
    wait_gone(&secrets, "d-token").await;
    wait_gone(&services, "d-svc").await;
    api.create(&PostParams::default(), &new_foo("d"))
        .await
        .unwrap();
    converge(&op).await;
    assert_eq!(
        child_writes(&env),
        writes + K,
        "the new object gets its children"
    );
}
