//! Operating a running staircase: pausing an object's runs with an annotation, and explaining
//! what the next run would do without changing anything.

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use staircase::explain::Command;
use staircase::prelude::*;
use staircase::{RunEnd, RunReport, pause, status};
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
    let events: Vec<Event> = Api::<Event>::namespaced(env.client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Paused"))
        .collect();
    let kinds = |t: &str| {
        events
            .iter()
            .filter(|e| e.type_.as_deref() == Some(t))
            .map(|e| e.note.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert!(
        kinds("Normal")
            .iter()
            .any(|n| n.starts_with("paused before ensure_service")),
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
    let RunEnd::Paused { step, reason } = &report.end else {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_an_external_call_and_does_not_make_it() {
    let env = Env::start().await;
    env.install::<Order>().await;
    let shop = Shop::start().await.expect("shop starts");
    let orders: Api<Order> = Api::namespaced(env.client.clone(), "default");
    let o = Order::new(
        "tea",
        OrderSpec {
            item: "leaves".into(),
            quantity: 1,
        },
    );
    orders.create(&PostParams::default(), &o).await.unwrap();
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
