//! The order example under the explorer: its own REST client (`ShopClient`) talks to the
//! example's shop through the explorer's HTTP recorder, keyed by `IdempotencyKey::for_step`
//! (uid + step), and it places, changes and cancels orders.

use std::sync::Arc;

use kube::CustomResourceExt;
use staircase::prelude::*;
use staircase_examples::order::{self, Order, OrderSpec};
use staircase_examples::shop::{Shop, ShopClient};
use staircase_testkit::explorer::{Explorer, HttpFake, Scenario, Variant};

use super::{LOOP_SEEDS, REPRODUCE, SMALL_SEEDS, assert_complete};

fn order_obj(name: &str, quantity: u32) -> Order {
    Order::new(
        name,
        OrderSpec {
            item: "book".into(),
            quantity,
        },
    )
}

/// A fresh shop for a case; its orders are what the explorer compares.
async fn shop() -> anyhow::Result<HttpFake> {
    let shop = Arc::new(Shop::start().await?);
    let state = shop.clone();
    Ok(HttpFake::new(shop.url(), move || {
        serde_json::to_value(state.orders()).unwrap_or_default()
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_example_places_changes_and_cancels_once_under_every_variant() {
    let report = Explorer::with_http_service("shop", shop, |client, url| {
        Operator::with_state(client, order::stairs(), ShopClient::new(url)).with_status()
    })
    .crd(Order::crd())
    .seeds(SMALL_SEEDS)
    .loop_seeds(LOOP_SEEDS)
    .reproduce_with(REPRODUCE)
    .scenario(Scenario::new("order").create(order_obj("o1", 1)))
    .scenario(
        Scenario::new("order changed and cancelled")
            .create(order_obj("o1", 1))
            .then_edit("o1", |o: &mut Order| o.spec.quantity = 3)
            .then_delete("o1"),
    )
    .run()
    .await
    .assert_all_converged();
    assert_complete(&report);
    if std::env::var_os("STAIRCASE_EXPLORER_SCENARIO").is_none() {
        // Finalizer, order, status; then the change, its status; then the cancellation and the
        // finalizer's removal: every external call is a crash point of its own.
        let changed = &report.scenarios[1];
        assert!(changed.reference_writes >= 7, "{report}");
        assert_eq!(
            report
                .variant("order changed and cancelled", "crash")
                .unwrap()
                .duplicate_effects,
            0
        );
    }
}

/// A step whose external call bypasses the recorder (a shop the explorer does not know of):
/// the runtime counts the call, the explorer cannot see it, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_call_the_explorer_cannot_see_is_named_as_such() {
    let elsewhere = Arc::new(Shop::start().await.unwrap());
    let url = elsewhere.url();
    let report = Explorer::new(move |client| {
        Operator::with_state(client, order::stairs(), ShopClient::new(url.clone())).with_status()
    })
    .crd(Order::crd())
    .variants(&[Variant::Crash])
    .reproduce_with(REPRODUCE)
    .scenario(Scenario::new("unseen order").create(order_obj("o1", 1)))
    .run()
    .await;
    let problems: Vec<String> = report.failures().map(|f| f.problem.clone()).collect();
    assert!(
        problems.iter().any(|p| p.contains("uncounted write")
            && p.contains("an external call the explorer cannot see")),
        "{report}"
    );
}
