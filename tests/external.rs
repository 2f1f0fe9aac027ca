//! External calls: a successful call is the run's one modification, and a crash between placing
//! an order and recording it still ends with exactly one order.

use kube::api::{Api, PostParams};
use staircase::prelude::*;
use staircase::{Rule, RunEnd};
use staircase_examples::order::{self, Order, OrderSpec, is_recorded};
use staircase_examples::shop::{Shop, ShopClient};
use staircase_tests::{Env, Running, recorder, wait_for};

async fn setup() -> (Env, Shop, Api<Order>) {
    let env = Env::start().await;
    env.install::<Order>().await;
    let shop = Shop::start().await.expect("shop starts");
    let orders: Api<Order> = Api::namespaced(env.client.clone(), "default");
    let o = Order::new(
        "coffee",
        OrderSpec {
            item: "beans".into(),
            quantity: 2,
        },
    );
    orders.create(&PostParams::default(), &o).await.unwrap();
    (env, shop, orders)
}

fn spawn(env: &Env, shop: &Shop) -> Running {
    let (client, url) = (env.client.clone(), shop.url());
    Running::spawn(move |reports, stop| {
        Operator::with_state(client, order::stairs(), ShopClient::new(url))
            .with_status()
            .on_run(recorder(reports))
            .run_until(async {
                stop.await.ok();
            })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_placing_and_recording_the_order_leaves_exactly_one_order() {
    let (env, shop, orders) = setup().await;
    let placed = shop.hold_next_create();
    let first = spawn(&env, &shop);
    // The shop has stored the order and holds the answer: the operator is between the steps.
    tokio::time::timeout(staircase_tests::GUARD, placed)
        .await
        .expect("the order arrives")
        .unwrap();
    first.crash().await;
    assert_eq!(shop.orders().len(), 1);
    let o = orders.get("coffee").await.unwrap();
    assert!(
        o.status.and_then(|s| s.order_id).is_none(),
        "not recorded before the crash"
    );

    let second = spawn(&env, &shop);
    wait_for(&orders, "coffee", is_recorded).await;
    let reports = second.stop().await;
    assert_eq!(
        shop.create_calls(),
        1,
        "the fresh operator found the order by key and did not call again"
    );
    let stored = shop.orders();
    assert_eq!(stored.len(), 1);
    let o = orders.get("coffee").await.unwrap();
    assert_eq!(
        o.status.as_ref().unwrap().order_id.as_deref(),
        Some(stored[0].id.as_str())
    );
    assert_eq!(stored[0].key, order::order_key(&o).unwrap().as_str());
    assert!(
        reports
            .iter()
            .all(|r| !matches!(&r.end, RunEnd::Modified { step, .. } if *step == "place_order"))
    );
}

#[tokio::test]
async fn a_successful_external_call_is_the_runs_one_modification() {
    let (env, shop, orders) = setup().await;
    let op = Operator::with_state(
        env.client.clone(),
        order::stairs(),
        ShopClient::new(shop.url()),
    );
    // The first run adds the finalizer the cancellation step needs.
    let first = op
        .run_once(orders.get("coffee").await.unwrap())
        .await
        .unwrap();
    assert!(matches!(first.end, RunEnd::FinalizerAdded), "{first}");
    let before = env.server.stats().writes();
    let report = op
        .run_once(orders.get("coffee").await.unwrap())
        .await
        .unwrap();
    assert!(
        matches!(
            &report.end,
            RunEnd::Modified {
                step: "place_order",
                ..
            }
        ),
        "{report}"
    );
    let writes = &report.steps[0].writes;
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].method, "EXTERNAL");
    assert!(
        writes[0].path.starts_with("POST /orders ["),
        "{}",
        writes[0]
    );
    assert_eq!(
        env.server.stats().writes(),
        before,
        "no Kubernetes write in that run"
    );
}

/// Places the order *and* writes to Kubernetes in one step: two modifications.
#[step]
async fn greedy(o: &Order, ctx: &Context<ShopClient>) -> Result<Outcome> {
    let key = order::order_key(o)?;
    let wanted = staircase_examples::shop::NewOrder {
        item: o.spec.item.clone(),
        quantity: 1,
    };
    staircase::external::call(ctx, &key, "POST /orders", ctx.state().create(&key, &wanted)).await?;
    let patch = serde_json::json!({ "status": { "orderId": "x" } });
    ctx.api::<Order>()
        .patch_status(
            "coffee",
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    Ok(Outcome::modified("ordered and recorded at once"))
}

#[tokio::test]
async fn an_external_call_plus_a_write_breaks_the_one_modification_rule() {
    let (env, shop, orders) = setup().await;
    let op = Operator::with_state(
        env.client.clone(),
        staircase!(Order => [greedy]),
        ShopClient::new(shop.url()),
    );
    let report = op
        .run_once(orders.get("coffee").await.unwrap())
        .await
        .unwrap();
    let violation = report.steps[0].violation.as_ref().expect("a violation");
    assert_eq!(violation.rule, Rule::MoreThanOneWrite);
    assert!(matches!(report.end, RunEnd::Failed { .. }));
}

/// A service that stores a record some time after the call that asked for it has failed at
/// the client (a client timeout while the service works on).
#[derive(Default)]
struct SlowService {
    records: std::sync::Mutex<Vec<String>>,
    calls: std::sync::atomic::AtomicUsize,
    land: std::sync::Arc<tokio::sync::Notify>,
}

impl SlowService {
    fn has(&self, key: &str) -> bool {
        self.records.lock().unwrap().iter().any(|k| k == key)
    }
}

type Slow = std::sync::Arc<SlowService>;

#[step]
async fn ensure_record(o: &Order, ctx: &Context<Slow>) -> Result<Outcome> {
    let key = staircase::external::IdempotencyKey::for_step(o, "ensure_record")?;
    let service = ctx.state().clone();
    if service.has(key.as_str()) {
        return Ok(Outcome::unchanged());
    }
    let create = async {
        service
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (s, k) = (service.clone(), key.to_string());
        tokio::spawn(async move {
            s.land.notified().await;
            s.records.lock().unwrap().push(k);
        });
        Err::<(), _>(anyhow::anyhow!("timed out waiting for the service"))
    };
    staircase::external::call(ctx, &key, "POST /records", create).await?;
    Ok(Outcome::modified("created the record"))
}

/// After a failed external call the object does not run again within the window in which the
/// call may still land, so the next lookup sees it instead of calling a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_external_call_holds_the_object_until_it_can_no_longer_land() {
    let env = Env::start().await;
    env.install::<Order>().await;
    let orders: Api<Order> = Api::namespaced(env.client.clone(), "default");
    let o = Order::new(
        "slow",
        OrderSpec {
            item: "tea".into(),
            quantity: 1,
        },
    );
    let o = orders.create(&PostParams::default(), &o).await.unwrap();
    let service = Slow::default();
    let window = std::time::Duration::from_millis(300);
    let op = Operator::with_state(
        env.client.clone(),
        staircase!(Order => [ensure_record]),
        service.clone(),
    )
    .with_config(OperatorConfig::default().with_external_call_window(window));
    let calls = || service.calls.load(std::sync::atomic::Ordering::SeqCst);

    let r = op.run_once(o.clone()).await.expect("a run");
    assert!(matches!(r.end, RunEnd::Failed { .. }), "{r}");
    assert_eq!(calls(), 1);
    assert!(
        op.run_once(o.clone()).await.is_none(),
        "held back: the call may still land"
    );
    assert_eq!(calls(), 1, "no second call while the first may land");

    // It lands late, within the window; once the window has passed the next run finds it.
    service.land.notify_one();
    let key = format!("{}.ensure_record", o.metadata.uid.clone().unwrap());
    let landed = async {
        while !service.has(&key) {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(staircase_tests::GUARD, landed)
        .await
        .expect("landed");
    tokio::time::sleep(window).await;
    let r = op.run_once(o).await.expect("runs after the window");
    assert_eq!(r.end, RunEnd::Converged, "{r}");
    assert_eq!(calls(), 1, "exactly one record");
}
