//! A `Ticket` operator written from the guide alone, and explored: the default variants, then
//! the operator sharded over two replicas under the `shard-handoff` variant.
//!
//! A Ticket (`title`, `priority`, `assignee`) gets:
//! 1. a ConfigMap `<name>-ticket` holding its title and priority;
//! 2. a label `priority=high|low` on itself (high from priority 5): a write to the primary;
//! 3. `status.queue` (`urgent` / `normal`), written by a step through the status subresource;
//! 4. an entry in an external tracker (an explorer `ExternalService`), removed by a cleanup
//!    step when the Ticket is deleted (behind the runtime's finalizer).

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::Stairs;
use staircase::external::{self, IdempotencyKey};
use staircase::prelude::*;
use staircase_testkit::explorer::{Explorer, ExternalService, Scenario, Variant};

/// A ticket in somebody's queue.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Ticket",
    namespaced,
    status = "TicketStatus"
)]
pub struct TicketSpec {
    pub title: String,
    pub priority: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
}

/// The runtime's conditions plus the queue the ticket is in.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, StepStatus)]
pub struct TicketStatus {
    #[serde(flatten)]
    pub steps: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// The operator's state: the external tracker's client.
#[derive(Clone)]
pub struct Tracker {
    pub service: ExternalService,
}

fn high(t: &Ticket) -> bool {
    t.spec.priority >= 5
}

fn config_name(t: &Ticket) -> String {
    format!("{}-ticket", t.name_any())
}

/// The ConfigMap `<name>-ticket` holds the title and the priority.
#[step]
async fn ensure_config_map(t: &Ticket, ctx: &Context<Tracker>) -> Result<Outcome> {
    let name = config_name(t);
    let data = BTreeMap::from([
        ("title".to_string(), t.spec.title.clone()),
        ("priority".to_string(), t.spec.priority.to_string()),
    ]);
    let api = ctx.api::<ConfigMap>();
    match ctx.get::<ConfigMap>(&name).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    owner_references: t.controller_owner_ref(&()).map(|o| vec![o]),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await?;
            Ok(Outcome::modified(format!("created ConfigMap {name}")))
        }
        Some(cm) if cm.data.as_ref() != Some(&data) => {
            let patch = serde_json::json!({ "data": data });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(Outcome::modified(format!("updated ConfigMap {name}")))
        }
        Some(_) => Ok(Outcome::unchanged()),
    }
}

/// The Ticket carries the label `priority=high|low`.
#[step]
async fn label_priority(t: &Ticket, ctx: &Context<Tracker>) -> Result<Outcome> {
    let want = if high(t) { "high" } else { "low" };
    if t.labels().get("priority").map(String::as_str) == Some(want) {
        return Ok(Outcome::unchanged());
    }
    let patch = serde_json::json!({ "metadata": { "labels": { "priority": want } } });
    ctx.api::<Ticket>()
        .patch(
            &t.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Outcome::modified(format!("labelled priority={want}")))
}

/// `status.queue` says which queue the ticket is in.
#[step]
async fn report_queue(t: &Ticket, ctx: &Context<Tracker>) -> Result<Outcome> {
    let want = if high(t) { "urgent" } else { "normal" };
    if t.status.as_ref().and_then(|s| s.queue.as_deref()) == Some(want) {
        return Ok(Outcome::unchanged());
    }
    let patch = serde_json::json!({ "status": { "queue": want } });
    ctx.api::<Ticket>()
        .patch_status(
            &t.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Outcome::modified(format!("queued as {want}")))
}

/// The tracker has an entry for the ticket, keyed by its uid.
#[step]
async fn register(t: &Ticket, ctx: &Context<Tracker>) -> Result<Outcome> {
    let key = IdempotencyKey::for_step(t, "register")?;
    let tracker = &ctx.state().service;
    if tracker.find(key.as_str()).await.is_some() {
        return Ok(Outcome::unchanged());
    }
    let value = serde_json::json!({ "title": t.spec.title, "ticket": t.name_any() });
    let id = external::call(
        ctx,
        &key,
        "POST /tickets",
        tracker.create(key.as_str(), value),
    )
    .await?;
    Ok(Outcome::modified(format!("registered as {id}")))
}

/// Cleanup: the tracker's entry goes with the ticket.
#[step]
async fn unregister(t: &Ticket, ctx: &Context<Tracker>) -> Result<Outcome> {
    let key = IdempotencyKey::for_step(t, "register")?; // the key of `register`
    let tracker = &ctx.state().service;
    let Some(entry) = tracker.find(key.as_str()).await else {
        return Ok(Outcome::unchanged());
    };
    external::call(ctx, &key, "DELETE /tickets", tracker.delete(&entry.id)).await?;
    Ok(Outcome::modified(format!("removed {}", entry.id)))
}

fn stairs() -> impl Reconciler<Ticket, Tracker> {
    staircase!(
        Ticket => [ensure_config_map, label_priority, report_queue, register],
        cleanup => [unregister]
    )
}

fn ticket(name: &str, priority: u8) -> Ticket {
    Ticket::new(
        name,
        TicketSpec {
            title: format!("fix {name}"),
            priority,
            assignee: None,
        },
    )
}

/// The operator as `main` would build it, minus sharding (`main` adds leader election with
/// `sharded()`): the explorer shards it itself in the shard-handoff variant.
fn explorer()
-> Explorer<Ticket, Tracker, impl Stairs<Ticket, Tracker>, impl Stairs<Ticket, Tracker>> {
    Explorer::with_external("tracker", |client, tracker| {
        Operator::with_state(
            client,
            stairs(),
            Tracker {
                service: tracker.clone(),
            },
        )
        .with_status()
        .owns::<ConfigMap>()
    })
    .crd(Ticket::crd())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_survives_anything() {
    explorer()
        .scenario(Scenario::new("ticket create").create(ticket("a", 7)))
        .scenario(
            Scenario::new("ticket priority across the threshold")
                .create(ticket("a", 2))
                .then_edit("a", |t: &mut Ticket| t.spec.priority = 8)
                .then_edit("a", |t: &mut Ticket| t.spec.priority = 4),
        )
        .scenario(
            Scenario::new("ticket lifecycle")
                .create(ticket("a", 5))
                .then_edit("a", |t: &mut Ticket| {
                    t.spec.assignee = Some("ana".into());
                    t.spec.title = "fix it now".into();
                })
                .then_delete("a"),
        )
        .scenario(
            Scenario::new("several tickets")
                .create(ticket("a", 1))
                .then_create(ticket("b", 9))
                .then_create(ticket("c", 5))
                .then_edit("b", |t: &mut Ticket| t.spec.priority = 0)
                .then_delete("a"),
        )
        .scenario(
            Scenario::new("several tickets at once")
                .create(ticket("a", 3))
                .then("create b and c", |client| async move {
                    let api: Api<Ticket> = Api::namespaced(client, "default");
                    for t in [ticket("b", 6), ticket("c", 2)] {
                        api.create(&PostParams::default(), &t).await?;
                    }
                    Ok(())
                })
                .then("delete a and c", |client| async move {
                    let api: Api<Ticket> = Api::namespaced(client, "default");
                    for name in ["a", "c"] {
                        api.delete(name, &Default::default()).await?;
                    }
                    Ok(())
                }),
        )
        .run()
        .await
        .assert_all_converged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_sharded_survives_a_crash_in_every_handoff() {
    let started = Instant::now();
    let report = explorer()
        .variants(&[Variant::ShardHandoff])
        .scenario(
            Scenario::new("ticket sharded")
                .create(ticket("a", 1))
                .then("create b, c and d", |client| async move {
                    let api: Api<Ticket> = Api::namespaced(client, "default");
                    for t in [ticket("b", 6), ticket("c", 9), ticket("d", 3)] {
                        api.create(&PostParams::default(), &t).await?;
                    }
                    Ok(())
                })
                .then("raise a, lower c", |client| async move {
                    let api: Api<Ticket> = Api::namespaced(client, "default");
                    for (name, priority) in [("a", 7), ("c", 2)] {
                        let patch = serde_json::json!({ "spec": { "priority": priority } });
                        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await?;
                    }
                    Ok(())
                })
                .then("delete b and d", |client| async move {
                    let api: Api<Ticket> = Api::namespaced(client, "default");
                    for name in ["b", "d"] {
                        api.delete(name, &Default::default()).await?;
                    }
                    Ok(())
                }),
        )
        .run()
        .await
        .assert_all_converged();
    eprintln!(
        "ticket shard-handoff: {} cases in {:.1?}",
        report.cases_of("shard-handoff"),
        started.elapsed()
    );
    assert!(report.cases_of("shard-handoff") > 0);
}
