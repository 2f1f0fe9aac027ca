//! End to end against the real kube-apiserver v1.37.2 (with etcd and kube-controller-manager,
//! started by `staircase_testkit::real`): the demo `Foo` operator (`examples/foo.rs`) reaches
//! Ready, follows a spec change, and on deletion runs its cleanup behind the finalizer while the
//! real garbage collector removes the owned children.
//!
//! Build the binaries once with `bash scripts/real-apiserver/build.sh`; without them these tests
//! print how to and pass, unless `CI=true`, where they fail. Every test runs in a namespace of
//! its own on the server shared by this test binary, with the operator watching only that
//! namespace; the cluster-scoped `Foo` CRD is installed once (an existing one is fine).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResourceExt, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use staircase::RunEnd;
use staircase::prelude::*;
use staircase_examples::foo::{self, App, Foo, FooSpec};
use staircase_testkit::real::shared_or_skip;
use staircase_tests::{Running, eventually, recorder};

/// Upper bound for anything these tests wait for (a guard against hangs, not a timing
/// assumption): the real controllers act within seconds.
const GUARD: Duration = Duration::from_secs(90);

/// Installs the `Foo` CRD unless it exists, then waits until it is Established and served.
async fn install_foo_crd(client: &Client, ns: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Foo::crd();
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        // Installed by another test of this binary (or an earlier run against this server).
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("install the Foo CRD: {e}"),
    }
    let name = crd.name_any();
    let established = await_condition(crds, &name, conditions::is_crd_established());
    tokio::time::timeout(GUARD, established)
        .await
        .expect("Foo CRD Established in time")
        .expect("watch works");
    // The real server answers 404 for a moment after Established, until its CRD handler has
    // picked the definition up.
    let foos: Api<Foo> = Api::namespaced(client.clone(), ns);
    eventually(GUARD, "Foo served", || async {
        foos.list(&ListParams::default()).await.is_ok()
    })
    .await;
}

/// Waits (watch-based) until `cond` holds for `name`.
async fn wait_for<K>(api: &Api<K>, name: &str, cond: impl kube::runtime::wait::Condition<K>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::time::timeout(GUARD, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("condition on {name} not reached within {GUARD:?}"))
        .expect("watch works");
}

/// Waits until the object named `name` no longer exists.
async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    wait_for(api, name, |o: Option<&K>| o.is_none()).await;
}

fn ready(foo: Option<&Foo>) -> bool {
    foo.is_some_and(|f| {
        f.status
            .as_ref()
            .is_some_and(|s| s.steps.is_ready_at(f.metadata.generation))
    })
}

fn new_foo(name: &str, message: &str, port: i32) -> Foo {
    Foo::new(
        name,
        FooSpec {
            message: message.into(),
            port,
        },
    )
}

/// The Foo operator on `client`, watching namespace `ns` only, in the background.
fn spawn_operator(client: Client, ns: &str) -> Running {
    // Operator logs (RUST_LOG, default warn) go to the test's captured output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let ns = ns.to_string();
    Running::spawn(move |reports, stop| {
        Operator::with_state(
            client,
            foo::stairs(),
            App {
                manager: "foo-operator".into(),
            },
        )
        .with_config(OperatorConfig::default().with_namespace(ns))
        .with_status()
        .on_run(recorder(reports))
        .run_until(async {
            stop.await.ok();
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foo_operator_reaches_ready_follows_changes_and_cleans_up() {
    let Some(server) =
        shared_or_skip("foo_operator_reaches_ready_follows_changes_and_cleans_up").await
    else {
        return;
    };
    let ns = server.namespace("foo-e2e").await.unwrap();
    let client = ns.client();
    install_foo_crd(&client, ns.name()).await;
    let foos: Api<Foo> = ns.api();
    let cms: Api<ConfigMap> = ns.api();
    let secrets: Api<Secret> = ns.api();
    let services: Api<Service> = ns.api();
    for (i, name) in ["alpha", "beta"].iter().enumerate() {
        foos.create(
            &PostParams::default(),
            &new_foo(name, &format!("hello from {name}"), 8080 + i as i32),
        )
        .await
        .unwrap();
    }

    let op = spawn_operator(client.clone(), ns.name());
    for name in ["alpha", "beta"] {
        wait_for(&foos, name, ready).await;
    }

    // Every child exists, is owned (controller reference) by its Foo, and carries the spec.
    let alpha = foos.get("alpha").await.unwrap();
    assert_eq!(
        alpha.finalizers(),
        [staircase::DEFAULT_FINALIZER.to_string()]
    );
    let owner_uid = alpha.uid().unwrap();
    let owned_by_alpha = |refs: Option<Vec<_>>| {
        refs.unwrap_or_default().iter().any(
            |r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference| {
                r.uid == owner_uid && r.controller == Some(true) && r.kind == "Foo"
            },
        )
    };
    let cm = cms.get("alpha-config").await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["message"], "hello from alpha");
    assert!(owned_by_alpha(cm.metadata.owner_references.clone()));
    let secret = secrets.get("alpha-token").await.unwrap();
    assert!(owned_by_alpha(secret.metadata.owner_references.clone()));
    // stringData was folded into data by the real server.
    assert!(secret.data.unwrap().contains_key("token"));
    let svc = services.get("alpha-svc").await.unwrap();
    assert!(owned_by_alpha(svc.metadata.owner_references.clone()));
    let port = svc.spec.unwrap().ports.unwrap()[0].port;
    assert_eq!(port, 8080);

    // A spec change: a new generation, followed to Ready again, children updated.
    let patched = foos
        .patch(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"message": "changed", "port": 9090}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    wait_for(&foos, "alpha", ready).await;
    assert_eq!(
        cms.get("alpha-config").await.unwrap().data.unwrap()["message"],
        "changed"
    );
    let svc = services.get("alpha-svc").await.unwrap();
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 9090);

    // Deletion: the cleanup step removes the ConfigMap behind the finalizer, the finalizer is
    // released, the Foo goes away, and kube-controller-manager's garbage collector removes the
    // owned Secret and Service.
    foos.delete("alpha", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&foos, "alpha").await;
    op.wait_report(|r| r.object.ends_with("/alpha") && r.end == RunEnd::FinalizerRemoved)
        .await;
    wait_gone(&cms, "alpha-config").await;
    wait_gone(&secrets, "alpha-token").await;
    wait_gone(&services, "alpha-svc").await;
    // The other Foo and its children are untouched.
    assert!(ready(Some(&foos.get("beta").await.unwrap())));
    assert!(cms.get_opt("beta-config").await.unwrap().is_some());
    assert!(secrets.get_opt("beta-token").await.unwrap().is_some());

    let reports = op.stop().await;
    let alpha_cleanup: Vec<_> = reports
        .iter()
        .filter(|r| r.object.ends_with("/alpha") && r.deleting)
        .collect();
    assert!(
        alpha_cleanup
            .iter()
            .any(|r| matches!(&r.end, RunEnd::Modified { step, .. } if *step == "remove_config")),
        "the cleanup step deleted the ConfigMap: {alpha_cleanup:?}"
    );
    assert_eq!(
        alpha_cleanup.last().map(|r| r.end.clone()),
        Some(RunEnd::FinalizerRemoved)
    );
}

/// A Foo deleted while no operator runs stays (finalizer) until an operator comes back; then
/// it is cleaned up and its children are collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_while_the_operator_is_down_completes_when_it_returns() {
    let Some(server) =
        shared_or_skip("deletion_while_the_operator_is_down_completes_when_it_returns").await
    else {
        return;
    };
    let ns = server.namespace("foo-e2e-down").await.unwrap();
    let client = ns.client();
    install_foo_crd(&client, ns.name()).await;
    let foos: Api<Foo> = ns.api();
    let services: Api<Service> = ns.api();
    foos.create(&PostParams::default(), &new_foo("gamma", "hi", 8080))
        .await
        .unwrap();
    let op = spawn_operator(client.clone(), ns.name());
    wait_for(&foos, "gamma", ready).await;
    op.stop().await;

    foos.delete("gamma", &DeleteParams::default())
        .await
        .unwrap();
    let held = foos.get("gamma").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "held by the finalizer"
    );

    let op = spawn_operator(client.clone(), ns.name());
    wait_gone(&foos, "gamma").await;
    wait_gone(&services, "gamma-svc").await;
    let cms: Api<ConfigMap> = ns.api();
    wait_gone(&cms, "gamma-config").await;
    op.stop().await;
}

/// Every other example's demo (echo: Deployment + Service children; greeting: the operator
/// keeps its own status; order: an external HTTP service) runs unchanged against the real server.
/// (This found that real list items carry no apiVersion/kind, which the children step compared.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_demo_converges_on_the_real_server() {
    let Some(server) = shared_or_skip("every_example_demo_converges_on_the_real_server").await
    else {
        return;
    };
    staircase_examples::echo::demo(server.client(), true)
        .await
        .expect("echo demo converges");
    let greeting = staircase_examples::greeting::demo(server.client(), true)
        .await
        .expect("greeting demo converges");
    assert!(!greeting.is_empty());
    let (order, shop) = staircase_examples::order::demo(server.client(), true)
        .await
        .expect("order demo converges");
    assert!(!order.is_empty());
    drop(shop);
}

/// The Foo operator as the example ships it (cached reads: ConfigMaps and Services whole,
/// Secrets as metadata only), its caches filled by streaming lists, which kube-apiserver 1.37
/// serves (1.33, whose `WatchList` gate is off by default, refuses them with 422: the watches
/// would retry forever and nothing would converge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cached_foo_operator_fills_its_caches_from_streaming_lists() {
    let Some(server) =
        shared_or_skip("the_cached_foo_operator_fills_its_caches_from_streaming_lists").await
    else {
        return;
    };
    let ns = server.namespace("foo-e2e-stream").await.unwrap();
    let client = ns.client();
    install_foo_crd(&client, ns.name()).await;
    let cfg = OperatorConfig::default()
        .with_namespace(ns.name())
        .with_initial_list(staircase::InitialList::Streaming);
    let app = App {
        manager: "foo-operator".into(),
    };
    let op = Running::operator(foo::operator(client.clone(), app).with_config(cfg));
    let foos: Api<Foo> = ns.api();
    foos.create(&PostParams::default(), &new_foo("delta", "hi", 8080))
        .await
        .unwrap();
    wait_for(&foos, "delta", ready).await;
    let secrets: Api<Secret> = ns.api();
    assert!(secrets.get_opt("delta-token").await.unwrap().is_some());
    let edit = json!({ "spec": { "message": "edited" } });
    foos.patch("delta", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = ns.api();
    eventually(GUARD, "the ConfigMap follows the edit", || {
        let cms = cms.clone();
        async move {
            cms.get("delta-config")
                .await
                .ok()
                .and_then(|cm| cm.data?.get("message").cloned())
                == Some("edited".to_string())
        }
    })
    .await;
    op.stop().await;
}

/// Sharding on the real server: three replicas of the Foo operator split the Foos, a fourth
/// takes its share, a crashed one's share moves after its Lease expires, a stopped one's at once.
/// After each change every Foo converges again, and every run that modified a Foo was made by
/// the replica its slot is settled on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_replicas_split_hand_off_and_take_over_on_the_real_server() {
    use staircase::LeaderElection;
    use staircase::shard::{self, Assignment};
    use std::collections::BTreeMap;

    let Some(server) =
        shared_or_skip("sharded_replicas_split_hand_off_and_take_over_on_the_real_server").await
    else {
        return;
    };
    let ns = server.namespace("foo-e2e-shard").await.unwrap();
    let client = ns.client();
    install_foo_crd(&client, ns.name()).await;
    let election = |identity: &str| {
        LeaderElection::new("foo-operator")
            .with_namespace(ns.name())
            .with_identity(identity)
            .with_timing(
                Duration::from_secs(2),
                Duration::from_secs(1),
                Duration::from_millis(100),
            )
            .sharded()
    };
    let replica = |identity: &str| {
        let cfg = OperatorConfig::default()
            .with_namespace(ns.name())
            .with_name(format!("foo-operator-{identity}"))
            .with_leader_election(election(identity));
        let app = App {
            manager: "foo-operator".into(),
        };
        Running::operator(foo::operator(client.clone(), app).with_config(cfg))
    };
    let reader = election("reader");

    let foos: Api<Foo> = ns.api();
    let names: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
    let converged = || async {
        for n in &names {
            wait_for(&foos, n, ready).await;
        }
    };
    let edit = |round: u32| {
        let foos = foos.clone();
        let names = names.clone();
        async move {
            for n in &names {
                let patch = json!({ "spec": { "message": format!("round {round}") } });
                foos.patch(n, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .unwrap();
            }
        }
    };
    // Every modifying run since `marks` was made by the replica its Foo's slot is settled on.
    let check =
        |replicas: &BTreeMap<&str, Running>, marks: &BTreeMap<&str, usize>, a: &Assignment| {
            for (id, r) in replicas {
                for report in r.reports().iter().skip(marks.get(id).copied().unwrap_or(0)) {
                    let modified = report
                        .steps
                        .iter()
                        .any(|s| s.outcome == staircase::OutcomeKind::Modified);
                    let uid = report.uid.as_deref().unwrap_or_default();
                    if modified && !report.deleting {
                        assert_eq!(
                            a.settled_owner(shard::slot_of(uid)),
                            Some(*id),
                            "{} ran by {id}",
                            report.object
                        );
                    }
                }
            }
        };
    let marks = |replicas: &BTreeMap<&'static str, Running>| -> BTreeMap<&'static str, usize> {
        replicas
            .iter()
            .map(|(id, r)| (*id, r.reports().len()))
            .collect()
    };

    let mut replicas: BTreeMap<&'static str, Running> = ["a", "b", "c"]
        .into_iter()
        .map(|id| (id, replica(id)))
        .collect();
    let three = settled(&client, &reader, &["a", "b", "c"]).await;
    for n in &names {
        foos.create(&PostParams::default(), &new_foo(n, "hi", 80))
            .await
            .unwrap();
    }
    converged().await;
    check(&replicas, &BTreeMap::new(), &three);
    // Whether the server split the Foo watches (the replicas probe for `shardInfo` the same way
    // and filter on their side when it is missing).
    let probe = http::Request::get(format!(
        "/apis/demo.staircase.rs/v1/namespaces/{}/foos?limit=1&shardSelector={}",
        ns.name(),
        "shardRange%28object.metadata.uid%2C%20%270x0000000000000000%27%2C%20%270x10000000000000000%27%29"
    ))
    .body(Vec::new())
    .unwrap();
    let list: serde_json::Value = client.request(probe).await.unwrap();
    eprintln!(
        "real server: Foo lists split by shardSelector: {}",
        list["metadata"].get("shardInfo").is_some()
    );

    replicas.insert("d", replica("d"));
    let four = settled(&client, &reader, &["a", "b", "c", "d"]).await;
    let m = marks(&replicas);
    edit(1).await;
    converged().await;
    check(&replicas, &m, &four);

    // Crashed: its Lease is not released; the others take its share once it expires.
    replicas.remove("b").unwrap().crash().await;
    let crashed = std::time::Instant::now();
    let without_b = settled(&client, &reader, &["a", "c", "d"]).await;
    eprintln!(
        "real server: a crashed replica's share settled elsewhere after {:?}",
        crashed.elapsed()
    );
    let m = marks(&replicas);
    edit(2).await;
    converged().await;
    check(&replicas, &m, &without_b);

    // Stopped: it releases its Lease and its share moves at once.
    replicas.remove("a").unwrap().stop().await;
    let last = settled(&client, &reader, &["c", "d"]).await;
    let m = marks(&replicas);
    edit(3).await;
    converged().await;
    check(&replicas, &m, &last);
    for (_, r) in replicas {
        r.stop().await;
    }
}

/// Waits until the published assignment names exactly `members` and every slot is settled.
async fn settled(
    client: &Client,
    election: &staircase::LeaderElection,
    members: &[&str],
) -> staircase::shard::Assignment {
    let wait = async {
        loop {
            if let Some(a) = staircase::shard::read(client.clone(), election)
                .await
                .unwrap()
                && a.members().collect::<Vec<_>>() == members
                && a.unsettled() == 0
            {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .unwrap_or_else(|_| panic!("slots never settled on {members:?}"))
}

/// The explorer's client-side variants on the real server, so that their findings are known not
/// to be artefacts of the embedded one: the Foo operator, created, edited and deleted, crashed
/// right after each of its writes and, separately, losing each write's answer, and run by its
/// controller loop behind a watch lagging 1 and 3 events, every case in a fresh namespace, ends
/// every phase as the reference run does, without a duplicate create or a delete on a stale
/// view, and a settled Foo runs idle without writing. The variants that need the embedded
/// server's faults are reported as skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_crashes_foo_after_every_write_on_the_real_server() {
    use staircase_testkit::explorer::{Explorer, Scenario};
    let test = "the_explorer_crashes_foo_after_every_write_on_the_real_server";
    let Some(server) = shared_or_skip(test).await else {
        return;
    };
    let started = std::time::Instant::now();
    let app = || App {
        manager: "foo-operator".into(),
    };
    let report = Explorer::new(move |client| {
        Operator::with_state(client, foo::stairs(), app()).with_status()
    })
    .crd(Foo::crd())
    .on_real_server(server)
    .idle_runs(5)
    .parallelism(2)
    .phase_timeout(GUARD)
    .reproduce_with(&format!(
        "CI=true cargo test -p staircase-tests --test real_e2e {test}"
    ))
    .scenario(
        Scenario::new("create, edit, delete")
            .create(new_foo("a", "hello", 8080))
            .then_edit("a", |f: &mut Foo| f.spec.message = "changed".into())
            .then_delete("a"),
    )
    .run()
    .await
    .assert_all_converged();
    eprintln!(
        "explorer on the real kube-apiserver: {} cases, {} runs in {:.1}s",
        report.cases(),
        report.runs(),
        started.elapsed().as_secs_f64()
    );
    if std::env::var_os("STAIRCASE_EXPLORER_CASE").is_some() {
        return;
    }
    // One case per write of the reference: every crash point ran.
    let s = &report.scenarios[0];
    assert!(s.reference_writes >= 6, "{report}");
    for v in ["crash", "lost-response"] {
        let stats = report.variant(&s.scenario, v).expect("a row per variant");
        assert_eq!(stats.cases, s.reference_writes, "{v}: {report}");
        assert_eq!(stats.converged, stats.cases, "{v}: {report}");
    }
    assert_eq!(report.cases_of("idle"), 1, "{report}");
    assert_eq!(report.cases_of("stale-view"), 2, "{report}");
    for v in ["lost-events", "random", "random-loop"] {
        let stats = report.variant(&s.scenario, v).expect("a row per variant");
        assert_eq!(stats.cases, 0, "{v}: {report}");
        assert!(
            stats.note.contains("skipped on the real server"),
            "{report}"
        );
    }
}
