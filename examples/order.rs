//! The external order operator: an `Order` resource orders an item from a shop's REST API and
//! records the shop's order id in its status, safely across crashes, in two steps (see
//! `staircase::external`):
//!
//! 1. `place_order`: if the shop has no order under this resource's idempotency key, place one
//!    (the run's one modification, counted through `external::call`);
//! 2. `record_order`: if the shop has it and the status does not say so, write the id;
//! 3. `change_order`: if the shop's order differs from the spec (the quantity was edited),
//!    change it.
//!
//! On deletion, `cancel_order` cancels the shop's order before the finalizer goes.

use kube::api::{Api, Patch, PatchParams};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::external;
use staircase::prelude::*;

use crate::shop::{NewOrder, ShopClient};

/// What to order.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "demo.staircase.rs",
    version = "v1",
    kind = "Order",
    namespaced,
    status = "OrderStatus"
)]
pub struct OrderSpec {
    /// The article.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// Status: the shop's order id, and what the runtime keeps.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq, StepStatus)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatus {
    /// The shop's id of the order, once recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Kept by staircase.
    #[serde(flatten)]
    pub steps: StepStatus,
}

/// The key of this resource's order: the uid and the step that places it. Both steps use it.
pub fn order_key(order: &Order) -> Result<IdempotencyKey> {
    IdempotencyKey::for_step(order, "place_order")
}

/// The shop has an order for this resource.
#[step]
pub async fn place_order(order: &Order, ctx: &Context<ShopClient>) -> Result<Outcome> {
    let key = order_key(order)?;
    let shop = ctx.state();
    if shop.find(&key).await?.is_some() {
        return Ok(Outcome::unchanged());
    }
    let wanted = wanted(order);
    let placed = external::call(ctx, &key, "POST /orders", shop.create(&key, &wanted)).await?;
    Ok(Outcome::modified(format!(
        "ordered {} x {} as {}",
        wanted.quantity, wanted.item, placed.id
    )))
}

/// The resource records the shop's order id.
#[step]
pub async fn record_order(order: &Order, ctx: &Context<ShopClient>) -> Result<Outcome> {
    let Some(placed) = ctx.state().find(&order_key(order)?).await? else {
        // Only possible if the shop lost the order; the next run of `place_order` places it again.
        return Ok(Outcome::wait("the shop does not know the order yet"));
    };
    if order.status.as_ref().and_then(|s| s.order_id.as_ref()) == Some(&placed.id) {
        return Ok(Outcome::unchanged());
    }
    let patch = serde_json::json!({ "status": { "orderId": placed.id } });
    ctx.api::<Order>()
        .patch_status(
            &order.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Outcome::modified(format!("recorded order {}", placed.id)))
}

/// What the spec orders.
fn wanted(order: &Order) -> NewOrder {
    NewOrder {
        item: order.spec.item.clone(),
        quantity: order.spec.quantity,
    }
}

/// The shop's order is what the spec says.
#[step]
pub async fn change_order(order: &Order, ctx: &Context<ShopClient>) -> Result<Outcome> {
    let key = order_key(order)?;
    let shop = ctx.state();
    let Some(placed) = shop.find(&key).await? else {
        return Ok(Outcome::wait("the shop does not know the order yet"));
    };
    let wanted = wanted(order);
    if placed.order == wanted {
        return Ok(Outcome::unchanged());
    }
    let what = format!("PUT /orders/{}", placed.id);
    external::call(ctx, &key, &what, shop.update(&key, &placed.id, &wanted)).await?;
    Ok(Outcome::modified(format!(
        "changed {} to {} x {}",
        placed.id, wanted.quantity, wanted.item
    )))
}

/// On deletion: the shop's order is cancelled.
#[step]
pub async fn cancel_order(order: &Order, ctx: &Context<ShopClient>) -> Result<Outcome> {
    let key = order_key(order)?;
    let shop = ctx.state();
    let Some(placed) = shop.find(&key).await? else {
        return Ok(Outcome::unchanged());
    };
    let what = format!("DELETE /orders/{}", placed.id);
    external::call(ctx, &key, &what, shop.cancel(&key, &placed.id)).await?;
    Ok(Outcome::modified(format!("cancelled {}", placed.id)))
}

/// The Order staircase.
pub fn stairs() -> impl Reconciler<Order, ShopClient> {
    staircase!(Order => [place_order, record_order, change_order], cleanup => [cancel_order])
}

/// Whether the order is recorded and the object Ready at its generation.
pub fn is_recorded(o: Option<&Order>) -> bool {
    o.is_some_and(|o| {
        o.status
            .as_ref()
            .is_some_and(|s| s.order_id.is_some() && s.steps.is_ready_at(o.metadata.generation))
    })
}

/// The demo: starts the shop, creates `Order coffee`, runs the operator until the order is
/// recorded and Ready. Returns every run, as printed, and the shop.
pub async fn demo(
    client: kube::Client,
    quiet: bool,
) -> anyhow::Result<(Vec<String>, crate::shop::Shop)> {
    use crate::harness;
    const NS: &str = "default";
    let shop = crate::shop::Shop::start().await?;
    if !quiet {
        println!("the shop listens at {}", shop.url());
    }
    harness::install_crd::<Order>(&client).await?;
    let api: Api<Order> = Api::namespaced(client.clone(), NS);
    let order = Order::new(
        "coffee",
        OrderSpec {
            item: "coffee beans".into(),
            quantity: 2,
        },
    );
    api.create(&Default::default(), &order).await?;

    let trace = harness::Trace::default();
    let op = Operator::with_state(client.clone(), stairs(), ShopClient::new(shop.url()))
        .with_config(OperatorConfig::default().with_namespace(NS))
        .with_status()
        .on_run(harness::tracer(trace.clone(), quiet));
    let (stop, running) = harness::spawn_until_stopped(|stopped| {
        op.run_until(async {
            stopped.await.ok();
        })
    });
    harness::wait(&api, "coffee", is_recorded).await?;
    stop.send(()).ok();
    running.await?;
    let trace = trace.lock().expect("trace").clone();
    Ok((trace, shop))
}
