//! Operating a running staircase: pausing an object's runs with an annotation, explaining
//! what the next run would do without changing anything, fights with another actor, and
//! recording runs to replay them without a cluster.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use staircase::explain::Command;
use staircase::prelude::*;
use staircase::replay::{self, Recorder, Recording};
use staircase::{Backoff, NextRun, RunEnd, RunReport, pause, status};
use staircase_examples::foo::{self, App, Foo};
use staircase_examples::order::{self, Order, OrderSpec};
use staircase_examples::shop::{Shop, ShopClient};
use staircase_tests::foos::{new_foo, ready};
use staircase_tests::{Env, Running, wait_for, wait_gone};

fn app() -> App {
    App {
        manager: "foo-operator".into(),
    }
}

async fn annotate(foos: &Api<Foo>, name: &str, value: Option<&str>) {
    let patch = serde_json::json!({ "metadata": { "annotations": { pause::ANNOTATION: value } } });
    foos.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
}

fn paused_before(step: &'static str, deleting: bool) -> impl Fn(&RunReport) -> bool {
    move |r| r.deleting == deleting && matches!(r.end, RunEnd::Paused { step: s, .. } if s == step)
}

/// The Events in `default` with this reason.
async fn events_with_reason(env: &Env, reason: &str) -> Vec<Event> {
    let api = Api::<Event>::namespaced(env.client.clone(), "default");
    let all = api.list(&ListParams::default()).await.unwrap().items;
    all.into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

fn paused_condition(f: Option<&Foo>) -> Option<(String, String)> {
    let c = f?.status.as_ref()?.steps.condition(status::PAUSED)?;
    Some((c.status.clone(), c.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_stops_runs_before_its_step_says_so_and_resumes_when_removed() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let op = Operator::with_state(env.client.clone(), foo::stairs(), app()).with_status();
    let running = Running::operator(op);
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    let services: Api<Service> = Api::namespaced(env.client.clone(), "default");
    let configs: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");

    let mut f = new_foo("p");
    f.metadata.annotations = Some([(pause::ANNOTATION.into(), "ensure_service".into())].into());
    foos.create(&PostParams::default(), &f).await.unwrap();
    running
        .wait_report(paused_before("ensure_service", false))
        .await;
    wait_for(&foos, "p", |f: Option<&Foo>| {
        paused_condition(f) == Some(("True".into(), "ensure_service".into()))
    })
    .await;
    // The steps before the pause did their work; the paused one never ran.
    assert!(configs.get_opt("p-config").await.unwrap().is_some());
    assert!(services.get_opt("p-svc").await.unwrap().is_none());
    let reports = running.reports();
    assert!(
        reports
            .iter()
            .flat_map(|r| &r.steps)
            .all(|s| s.step != "ensure_service"),
        "{reports:#?}"
    );
    // Explained, a paused object says what resuming it would set off.
    let explainer = Operator::with_state(env.client.clone(), foo::stairs(), app());
    let e = explainer.explain(foos.get("p").await.unwrap()).await;
    assert_eq!(e.next_modification(), Some("ensure_service"), "{e}");
    assert!(
        e.to_string().contains(
            "  paused before ensure_service: paused by staircase.rs/pause-before=ensure_service\n"
        ),
        "{e}"
    );
    assert!(services.get_opt("p-svc").await.unwrap().is_none());
    let now = foos.get("p").await.unwrap();
    let ready_cond = now.status.as_ref().unwrap().steps.condition(status::READY);
    assert_eq!(ready_cond.map(|c| c.reason.as_str()), Some("Paused"));

    // Resuming: the annotation goes, the step runs, the condition goes.
    annotate(&foos, "p", None).await;
    wait_for(&foos, "p", |f: Option<&Foo>| {
        ready(f) && paused_condition(f).is_none()
    })
    .await;
    assert!(services.get_opt("p-svc").await.unwrap().is_some());

    // `all` holds a deletion up, loudly: the cleanup step does not run and the object stays.
    annotate(&foos, "p", Some("all")).await;
    running
        .wait_report(paused_before("ensure_config", false))
        .await;
    foos.delete("p", &DeleteParams::default()).await.unwrap();
    running
        .wait_report(paused_before("remove_config", true))
        .await;
    assert!(
        foos.get_opt("p").await.unwrap().is_some(),
        "the finalizer holds"
    );
    assert!(configs.get_opt("p-config").await.unwrap().is_some());
    annotate(&foos, "p", None).await;
    wait_gone(&foos, "p").await;

    running.stop().await;
    let events = events_with_reason(&env, "Paused").await;
    let kinds = |t: &str| {
        events
            .iter()
            .filter(|e| e.type_.as_deref() == Some(t))
            .map(|e| e.note.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    // Every paused run left the same Event, across the versions they saw: one Event, counted.
    assert_eq!(
        kinds("Normal")
            .iter()
            .filter(|n| n.starts_with("paused before ensure_service"))
            .count(),
        1,
        "{events:#?}"
    );
    assert!(
        kinds("Warning")
            .iter()
            .any(|n| n.starts_with("deletion waits: cleanup is paused before remove_config")),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_naming_no_step_pauses_everything_and_lists_the_steps() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let op = Operator::with_state(env.client.clone(), foo::stairs(), app()).with_status();
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    let mut f = new_foo("typo");
    f.metadata.annotations = Some([(pause::ANNOTATION.into(), "ensure_servce".into())].into());
    let f = foos.create(&PostParams::default(), &f).await.unwrap();
    let created = env.writes("foos.demo.staircase.rs");
    let report = op.run_once(f).await.expect("a run");
    let RunEnd::Paused {
        step,
        every_step: true,
        reason,
    } = &report.end
    else {
        panic!("{report}")
    };
    assert_eq!(*step, "ensure_config");
    assert!(
        reason.contains("names no step (the steps are: ensure_config, ensure_secret, ensure_service, remove_config)"),
        "{reason}"
    );
    // Not even the finalizer: nothing is written but the status.
    assert_eq!(report.step_writes(), 0);
    assert_eq!(env.writes("foos.demo.staircase.rs"), created);
}

/// Everything the server holds of the kinds the Foo operator touches, with each list's
/// resourceVersion (the server's write counter): equal snapshots mean nothing was written.
async fn snapshot(env: &Env) -> serde_json::Value {
    async fn list<K>(env: &Env) -> serde_json::Value
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(env.client.clone(), "default");
        serde_json::to_value(api.list(&ListParams::default()).await.expect("list")).unwrap()
    }
    serde_json::json!([
        list::<Foo>(env).await,
        list::<ConfigMap>(env).await,
        list::<Secret>(env).await,
        list::<Service>(env).await,
        list::<Event>(env).await,
    ])
}

fn command(line: &str) -> Command {
    Command::parse(line.split_whitespace().map(String::from))
        .expect("an explain command")
        .expect("well formed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_next_modification_and_changes_nothing() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let op = Operator::with_state(env.client.clone(), foo::stairs(), app()).with_status();
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("e"))
        .await
        .unwrap();

    // A new object: the runtime's finalizer comes first.
    let before = snapshot(&env).await;
    let e = op.explain(foos.get("e").await.unwrap()).await;
    assert!(
        matches!(e.report.as_ref().unwrap().end, RunEnd::FinalizerAdded),
        "{e}"
    );
    assert_eq!(snapshot(&env).await, before, "explain wrote something");

    // Two real runs: the finalizer, then ensure_config.
    for _ in 0..2 {
        op.run_once(foos.get("e").await.unwrap()).await.unwrap();
    }
    let before = snapshot(&env).await;
    let e = op
        .explain_named(&command("explain foos/e -n default"))
        .await
        .unwrap();
    assert_eq!(snapshot(&env).await, before, "explain wrote something");
    let text = e.to_string();
    assert_eq!(e.next_modification(), Some("ensure_secret"), "{text}");
    for line in [
        "Foo default/e (generation 1, resourceVersion ",
        "  ensure_config   unchanged\n",
        "  ensure_secret   modifies: ",
        "POST /api/v1/namespaces/default/secrets (dry run: 201)",
        "  ensure_service  not reached\n",
        "next: ensure_secret would make the run's one modification: ",
        "nothing was changed: every write was sent with dryRun=All",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    // The next real run makes exactly the modification explained.
    let RunEnd::Modified { description, .. } = &e.report.as_ref().unwrap().end else {
        panic!("{text}")
    };
    let real = op.run_once(foos.get("e").await.unwrap()).await.unwrap();
    assert!(
        matches!(&real.end, RunEnd::Modified { step: "ensure_secret", description: d } if d == description),
        "{real}"
    );

    // Converged: nothing to do, and still nothing written.
    for _ in 0..3 {
        op.run_once(foos.get("e").await.unwrap()).await.unwrap();
    }
    let before = snapshot(&env).await;
    let e = op.explain(foos.get("e").await.unwrap()).await;
    assert!(
        e.to_string()
            .contains("next: the object is converged: the next run changes nothing"),
        "{e}"
    );
    assert_eq!(snapshot(&env).await, before);

    // A command line that names another kind, or an object that is not there, is refused.
    let other = op
        .explain_named(&command("explain secrets/e"))
        .await
        .unwrap_err();
    assert!(
        other
            .to_string()
            .contains("this operator explains foos.demo.staircase.rs (Foo), not \"secrets\""),
        "{other}"
    );
    let missing = op
        .explain_named(&command("explain nope -n default"))
        .await
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "Foo \"nope\" not found in namespace default"
    );
}

/// A server with an Order `tea` for one pack of leaves, and a shop to order from.
async fn tea_order() -> (Env, Shop, Api<Order>) {
    let env = Env::start().await;
    env.install::<Order>().await;
    let shop = Shop::start().await.expect("shop starts");
    let orders: Api<Order> = Api::namespaced(env.client.clone(), "default");
    let spec = OrderSpec {
        item: "leaves".into(),
        quantity: 1,
    };
    let o = Order::new("tea", spec);
    orders.create(&PostParams::default(), &o).await.unwrap();
    (env, shop, orders)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_an_external_call_and_does_not_make_it() {
    let (env, shop, orders) = tea_order().await;
    let op = Operator::with_state(
        env.client.clone(),
        order::stairs(),
        ShopClient::new(shop.url()),
    );
    // The finalizer first; then place_order would call the shop.
    op.run_once(orders.get("tea").await.unwrap()).await.unwrap();
    let e = op.explain(orders.get("tea").await.unwrap()).await;
    assert_eq!(e.next_modification(), Some("place_order"), "{e}");
    assert!(e.to_string().contains("would call "), "{e}");
    assert_eq!(shop.create_calls(), 0, "explain called the shop");
    assert!(shop.orders().is_empty());
}

/// A directory of its own under the system's temporary one, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("staircase-{name}-{}-{nanos}", std::process::id()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every recording under `dir`, read.
fn read_all(dir: &std::path::Path) -> Vec<Recording> {
    replay::recordings(dir)
        .expect("the recordings directory")
        .iter()
        .map(|f| Recording::read(f).expect("a recording"))
        .collect()
}

/// Variants of the Foo operator's `ensure_secret`, as a later version of the code might have it.
mod changed {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use kube::Resource;
    use staircase::prelude::*;
    use staircase_examples::foo::{App, Foo};

    fn meta(obj: &Foo, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(format!("{}-token", obj.name_any())),
            namespace: obj.namespace(),
            owner_references: obj.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(labels),
            ..Default::default()
        }
    }

    fn post(app: &App) -> PostParams {
        PostParams {
            field_manager: Some(app.manager.clone()),
            ..Default::default()
        }
    }

    /// As the Foo operator's, with one label more on the Secret.
    pub mod labelled {
        use super::*;

        #[step]
        pub async fn ensure_secret(obj: &Foo, ctx: &Context<App>) -> Result<Outcome> {
            let name = format!("{}-token", obj.name_any());
            if ctx.get::<Secret>(&name).await?.is_some() {
                return Ok(Outcome::unchanged());
            }
            let labels = BTreeMap::from([
                ("app.kubernetes.io/managed-by".into(), "foo-operator".into()),
                ("tier".into(), "gold".into()),
            ]);
            let secret = Secret {
                metadata: meta(obj, labels),
                string_data: Some(BTreeMap::from([(
                    "token".into(),
                    format!("token-{}", obj.uid().unwrap_or_default()),
                )])),
                ..Default::default()
            };
            ctx.api::<Secret>()
                .create(&post(ctx.state()), &secret)
                .await?;
            Ok(Outcome::modified(format!("created Secret {name}")))
        }
    }

    /// Keeps the token in a ConfigMap instead.
    pub mod in_a_config_map {
        use super::*;

        #[step]
        pub async fn ensure_secret(obj: &Foo, ctx: &Context<App>) -> Result<Outcome> {
            let name = format!("{}-token", obj.name_any());
            if ctx.get::<Secret>(&name).await?.is_some() {
                return Ok(Outcome::unchanged());
            }
            let labels =
                BTreeMap::from([("app.kubernetes.io/managed-by".into(), "foo-operator".into())]);
            let cm = ConfigMap {
                metadata: meta(obj, labels),
                data: Some(BTreeMap::from([("token".into(), "t".into())])),
                ..Default::default()
            };
            ctx.api::<ConfigMap>()
                .create(&post(ctx.state()), &cm)
                .await?;
            Ok(Outcome::modified(format!("created ConfigMap {name}")))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_run_replays_without_a_cluster_and_a_changed_step_is_named() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let dir = Scratch::new("record");
    let recorder = Recorder::new(&dir.0).keep(100).redact_secrets();
    let running =
        Running::operator(foo::operator(env.client.clone(), app()).record(recorder.clone()));
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("r"))
        .await
        .unwrap();
    wait_for(&foos, "r", ready).await;
    let uid = foos.get("r").await.unwrap().metadata.uid.unwrap();
    let reports = running.stop().await;

    // One file per run, each written before its report went out.
    let recordings = read_all(&dir.0);
    assert_eq!(recorder.failed(), 0);
    assert_eq!(recordings.len(), reports.len(), "{reports:#?}");
    assert_eq!(recorder.written(), reports.len() as u64);
    let secret_run = recordings
        .iter()
        .find(|r| r.end.end == "modified" && r.end.step.as_deref() == Some("ensure_secret"))
        .expect("the run that created the Secret was recorded");
    assert_eq!(secret_run.object, "default/r");
    assert_eq!(
        secret_run.staircase,
        ["ensure_config", "ensure_secret", "ensure_service"]
    );
    assert_eq!(secret_run.view["metadata"]["uid"], uid.as_str());
    // What the step read came from the watch cache: recorded as the read it stands for.
    let read = secret_run
        .exchanges
        .iter()
        .find(|e| e.step.as_deref() == Some("ensure_secret") && e.method == "GET")
        .expect("ensure_secret's read");
    assert!(read.cached && read.status == 404, "{read:?}");
    assert_eq!(read.path, "/api/v1/namespaces/default/secrets/r-token");
    let write = secret_run
        .exchanges
        .iter()
        .find(|e| e.step.as_deref() == Some("ensure_secret") && e.method == "POST")
        .expect("ensure_secret's write");
    assert_eq!(write.status, 201);
    assert_eq!(
        write.request.as_ref().unwrap()["stringData"]["token"],
        "<redacted>"
    );
    // Redacted: the token is in no file.
    for file in replay::recordings(&dir.0).unwrap() {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains(&format!("token-{uid}")),
            "{}",
            file.display()
        );
    }

    // No cluster from here on: the server is gone, its client can reach nothing.
    let client = env.client.clone();
    drop(env);
    let replayed = foo::operator(client.clone(), app())
        .replay(secret_run)
        .await
        .expect("a replay");
    let text = replayed.to_string();
    println!("{text}");
    assert!(replayed.same(), "{text}");
    assert!(replayed.unrecorded.is_empty(), "{text}");
    for line in [
        "replay of Foo default/r: run ",
        "  ensure_config   unchanged\n",
        "  ensure_secret   modifies: created Secret r-token\n",
        "POST /api/v1/namespaces/default/secrets?fieldManager=foo-operator: the same write",
        "  ensure_service  not reached\n",
        "the current code makes the same write: ensure_secret POST /api/v1/namespaces/default/secrets?fieldManager=foo-operator",
        "nothing was sent to a cluster: every answer came from the recording",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    // Every run replays the same, the converged ones and the finalizer's included.
    for rec in &recordings {
        let r = foo::operator(client.clone(), app())
            .replay(rec)
            .await
            .unwrap();
        assert!(r.same(), "{r}");
    }

    // A later version whose step writes something else: the difference is named.
    let labelled = Operator::with_state(
        client.clone(),
        staircase!(Foo => [foo::ensure_config, changed::labelled::ensure_secret, foo::ensure_service]),
        app(),
    );
    let r = labelled.replay(secret_run).await.unwrap();
    let text = r.to_string();
    println!("{text}");
    assert!(!r.same(), "{text}");
    assert!(
        text.contains(
            "the current code diverges; the first divergence is at ensure_secret: POST \
             /api/v1/namespaces/default/secrets?fieldManager=foo-operator: the body differs at \
             .metadata.labels.tier (recorded: absent, replayed: \"gold\")"
        ),
        "{text}"
    );

    // One that writes elsewhere: the request the recording lacks is named.
    let elsewhere = Operator::with_state(
        client.clone(),
        staircase!(Foo => [foo::ensure_config, changed::in_a_config_map::ensure_secret, foo::ensure_service]),
        app(),
    );
    let r = elsewhere.replay(secret_run).await.unwrap();
    let text = r.to_string();
    println!("{text}");
    assert_eq!(
        r.unrecorded,
        ["POST /api/v1/namespaces/default/configmaps?fieldManager=foo-operator (ensure_secret)"],
        "{text}"
    );
    assert!(
        text.contains(
            "the first divergence is at ensure_secret: the current code made a request the \
             recorded run did not: POST /api/v1/namespaces/default/configmaps?fieldManager=foo-operator"
        ),
        "{text}"
    );

    // A recording of another kind is refused.
    let orders = Operator::with_state(
        client,
        order::stairs(),
        ShopClient::new("http://127.0.0.1:1"),
    );
    let err = orders.replay(secret_run).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the recording is of a demo.staircase.rs/v1 Foo, this operator runs demo.staircase.rs/v1 Order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_external_call_is_named_not_made() {
    let (env, shop, orders) = tea_order().await;
    let dir = Scratch::new("record-order");
    let recorder = Recorder::new(&dir.0).keep(2);
    let op = Operator::with_state(
        env.client.clone(),
        order::stairs(),
        ShopClient::new(shop.url()),
    )
    .record(recorder.clone());
    // The finalizer, then the order.
    for _ in 0..2 {
        op.run_once(orders.get("tea").await.unwrap()).await.unwrap();
    }
    assert_eq!(shop.create_calls(), 1);
    let recordings = read_all(&dir.0);
    let placed = recordings.last().expect("recorded");
    assert_eq!(
        placed.end.step.as_deref(),
        Some("place_order"),
        "{placed:#?}"
    );
    let call = &placed.steps[0].writes[0];
    assert_eq!(call.method, "EXTERNAL");

    // Replayed against a shop that has no order yet (the shop is the operator's state, outside
    // the recording): the call the step would make is the recorded one, and it is not made.
    let fresh = Shop::start().await.expect("shop starts");
    let replayer = Operator::with_state(
        env.client.clone(),
        order::stairs(),
        ShopClient::new(fresh.url()),
    );
    let r = replayer.replay(placed).await.unwrap();
    assert!(r.same(), "{r}");
    assert!(
        r.to_string()
            .contains(&format!("place_order EXTERNAL {}", call.path)),
        "{r}"
    );
    assert_eq!(fresh.create_calls(), 0, "the replay called the shop");

    // Only the last two runs are kept.
    for _ in 0..3 {
        op.run_once(orders.get("tea").await.unwrap()).await.unwrap();
    }
    assert_eq!(replay::recordings(&dir.0).unwrap().len(), 2);
    assert_eq!(recorder.written(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_of_a_children_step_replays_the_same() {
    use staircase_examples::echo::{self, EchoServer};

    let env = Env::start().await;
    env.install::<EchoServer>().await;
    let simulator = tokio::spawn(echo::simulate_deployments(env.client.clone(), "default"));
    let dir = Scratch::new("record-echo");
    let op =
        Operator::new(env.client.clone(), echo::stairs()).record(Recorder::new(&dir.0).keep(100));
    let running = staircase_tests::echoes::run_until_converged(env.client.clone(), op).await;
    running.stop().await;
    simulator.abort();

    let recordings = read_all(&dir.0);
    // The children step read its children from the caches: recorded as the list it stands for.
    let listed = recordings
        .iter()
        .flat_map(|r| &r.exchanges)
        .find(|e| {
            e.cached
                && e.path
                    .starts_with("/apis/apps/v1/namespaces/default/deployments?")
        })
        .expect("a cached list of the Deployments");
    assert!(listed.path.contains("labelSelector="), "{listed:?}");
    let client = env.client.clone();
    drop(env);
    let op = Operator::new(client, echo::stairs());
    for rec in &recordings {
        let r = op.replay(rec).await.unwrap();
        assert!(r.same(), "{r}");
    }
    assert!(
        recordings.iter().any(|r| r.end.end == "modified"),
        "{recordings:#?}"
    );
}

fn fighting_condition(f: Option<&Foo>) -> Option<Condition> {
    f?.status
        .as_ref()?
        .steps
        .condition(status::FIGHTING)
        .cloned()
}

/// What the intruder writes into the message of the ConfigMap it fights over.
const INTRUDER_SAYS: &str = "the intruder's message";

/// Another actor, with a client and a field manager of its own: whenever the ConfigMap `name`
/// does not carry its message, it writes it back. Runs until aborted.
async fn intrude(client: kube::Client, name: &'static str) {
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let pp = PatchParams {
        field_manager: Some("intruder".into()),
        ..Default::default()
    };
    let patch = serde_json::json!({ "data": { "message": INTRUDER_SAYS } });
    let only = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut changes = watcher(cms.clone(), only).applied_objects().boxed();
    while let Some(change) = changes.next().await {
        let Ok(cm) = change else { continue };
        let says = cm.data.as_ref().and_then(|d| d.get("message"));
        if says.map(String::as_str) != Some(INTRUDER_SAYS) {
            cms.patch(name, &pp, &Patch::Merge(&patch))
                .await
                .expect("the intruder writes");
        }
    }
}

/// Writes the server saw to the ConfigMap `name` under the field manager `manager` (its create,
/// to the collection's path, is not one of them).
fn writes_by(env: &Env, name: &str, manager: &str) -> usize {
    env.server
        .stats()
        .requests()
        .iter()
        .filter(|r| {
            r.resource.as_deref() == Some("configmaps")
                && r.name.as_deref() == Some(name)
                && r.field_manager.as_deref() == Some(manager)
                && r.verb.is_some_and(|v| v.is_write())
                && r.status < 400
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fight_over_a_child_is_reported_and_backs_off() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
        permanent: Duration::from_secs(60),
    };
    // The Foo operator owns its ConfigMaps: a change to one runs its Foo at once.
    let op = foo::operator(env.client.clone(), app()).with_config(
        OperatorConfig::default()
            .with_namespace("default")
            .with_backoff(backoff),
    );
    let after = op.config().fight_after;
    assert_eq!(after, 3, "the default");
    let metrics = op.metrics();
    // When each round of a fight ended, as the operator reported it.
    let rounds: Arc<Mutex<Vec<(Instant, u32)>>> = Arc::default();
    let seen = rounds.clone();
    let op = op.on_run(move |r| {
        if let Some(f) = &r.fight {
            seen.lock().unwrap().push((Instant::now(), f.rounds));
        }
    });
    let running = Running::operator(op);
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    let configs: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    for name in ["f", "calm"] {
        foos.create(&PostParams::default(), &new_foo(name))
            .await
            .unwrap();
        wait_for(&foos, name, |f: Option<&Foo>| ready(f)).await;
    }

    // A normal object: its spec changes three times, and someone else changes its ConfigMap
    // once. Each is put right with one write; none of that is a fight.
    for n in 1..=3 {
        let spec = serde_json::json!({ "spec": { "message": format!("calm {n}") } });
        foos.patch("calm", &PatchParams::default(), &Patch::Merge(&spec))
            .await
            .unwrap();
        wait_for(&foos, "calm", |f: Option<&Foo>| ready(f)).await;
    }
    let drift = PatchParams {
        field_manager: Some("drifter".into()),
        ..Default::default()
    };
    let patch = serde_json::json!({ "data": { "message": "drifted" } });
    configs
        .patch("calm-config", &drift, &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(&configs, "calm-config", |cm: Option<&ConfigMap>| {
        cm.and_then(|c| c.data.as_ref()?.get("message").cloned()) == Some("calm 3".into())
    })
    .await;
    assert_eq!(
        writes_by(&env, "calm-config", "foo-operator"),
        4,
        "one write per spec change and one for the drift"
    );

    // The fight: each time the operator puts f's message back, the intruder changes it again.
    let intruder = tokio::spawn(intrude(env.client.clone(), "f-config"));
    let fight_with_intruder = |r: &RunReport| {
        r.fight
            .as_ref()
            .is_some_and(|f| f.managers == ["intruder"] && f.step == "ensure_config")
    };
    running.wait_report(fight_with_intruder).await;
    let first = running
        .reports()
        .into_iter()
        .find(|r| fight_with_intruder(r))
        .unwrap();
    let fight = first.fight.clone().unwrap();
    assert_eq!(fight.path, "/api/v1/namespaces/default/configmaps/f-config");
    assert!(fight.rounds >= 3, "{fight:?}");
    assert!(
        matches!(
            first.end,
            RunEnd::Modified {
                step: "ensure_config",
                ..
            }
        ),
        "the modification happened: {first}"
    );
    wait_for(&foos, "f", |f: Option<&Foo>| {
        fighting_condition(f).is_some_and(|c| {
            c.status == "True"
                && c.reason == "ensure_config"
                && c.message.contains("intruder")
                && c.message.contains("/configmaps/f-config")
        })
    })
    .await;

    // The operator backs off: four more rounds take at least the four delays of its backoff
    // (100, 200, 400 and 800 ms, less up to a quarter of jitter), where without a backoff the
    // two would write the ConfigMap as fast as the server answers them.
    let detected = fight.rounds;
    running
        .wait_report(|r| r.fight.as_ref().is_some_and(|f| f.rounds >= detected + 4))
        .await;
    let rounds = rounds.lock().unwrap().clone();
    let at = |n: u32| {
        rounds
            .iter()
            .find(|(_, r)| *r >= n)
            .map(|(t, _)| *t)
            .unwrap()
    };
    let took = at(detected + 4) - at(detected);
    assert!(
        took >= Duration::from_millis(1000),
        "{took:?} for {rounds:?}"
    );
    for r in running.reports().iter().filter(|r| fight_with_intruder(r)) {
        // The fight's first round (the `after`th write in a row) waits the backoff's first delay.
        let round = r.fight.as_ref().unwrap().rounds + 1 - after;
        let least = backoff
            .initial
            .saturating_mul(1 << (round - 1))
            .min(backoff.max);
        assert!(
            matches!(r.next, NextRun::After(d) if d >= least.mul_f64(0.75)),
            "round {round} runs again after {:?}",
            r.next
        );
    }
    // Every write of the operator to the ConfigMap is a round the reports counted (one more may
    // be on its way); the intruder only answers them.
    let max_round = running
        .reports()
        .iter()
        .filter_map(|r| r.fight.as_ref().map(|f| f.rounds))
        .max()
        .unwrap();
    let operator_writes = writes_by(&env, "f-config", "foo-operator");
    assert!(
        operator_writes <= max_round as usize + 1,
        "{operator_writes} writes for {max_round} rounds"
    );
    let intruder_writes = writes_by(&env, "f-config", "intruder");
    assert!(
        intruder_writes <= operator_writes + 1,
        "{intruder_writes} writes of the intruder, {operator_writes} of the operator"
    );
    let text = metrics.encode();
    let fights = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                r#"staircase_fights_total{controller="staircase",step="ensure_config"} "#,
            )
        })
        .and_then(|v| v.parse::<u64>().ok());
    assert!(fights.is_some_and(|n| n >= 5), "{text}");

    // The intruder stops: the operator's change holds, the object settles, the condition goes.
    intruder.abort();
    let _ = intruder.await;
    wait_for(&foos, "f", |f: Option<&Foo>| {
        ready(f) && fighting_condition(f).is_none()
    })
    .await;
    let cm = configs.get("f-config").await.unwrap();
    assert_eq!(cm.data.unwrap()["message"], "hi f");

    let reports = running.stop().await;
    assert!(
        reports
            .iter()
            .filter(|r| r.object == "default/calm")
            .all(|r| r.fight.is_none()),
        "a normal object reported a fight"
    );
    assert!(fighting_condition(foos.get("calm").await.ok().as_ref()).is_none());
    let events = events_with_reason(&env, "Fighting").await;
    assert!(!events.is_empty(), "no Fighting Event");
    let note = events[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("ensure_config")
            && note.contains("intruder")
            && note.contains("/configmaps/f-config"),
        "{note}"
    );
    for e in &events {
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(
            e.regarding.as_ref().and_then(|r| r.name.as_deref()),
            Some("f")
        );
        assert_eq!(
            e.note.as_deref(),
            Some(note.as_str()),
            "the same note every round"
        );
    }
}
