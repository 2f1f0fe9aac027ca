//! The observed-generation operator, in the style of kuberator's status example: a `Greeting`
//! keeps its own status, and records in it which generation of the spec it has applied. A client
//! that reads `status.observedGeneration == metadata.generation` and `phase == Ready` knows its
//! latest change is in effect.
//!
//! The status write is a step of its own (the last one), because something depends on it: the
//! staircase rule is that the runtime's optional status writes may fail, but a status a reader
//! relies on is a modification like any other. This operator does not use `with_status()`: it
//! owns its whole status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::prelude::*;

/// The desired state of a `Greeting`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "demo.staircase.rs",
    version = "v1",
    kind = "Greeting",
    namespaced,
    status = "GreetingStatus"
)]
pub struct GreetingSpec {
    /// The greeting, published in the ConfigMap `<name>-greeting`.
    pub message: String,
}

/// The status this operator keeps itself.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GreetingStatus {
    /// The generation of the spec whose greeting is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` once the observed generation is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The ConfigMap carrying the greeting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
}

impl Greeting {
    /// Whether the current spec is applied: what a client waits for after a change.
    pub fn is_current(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.observed_generation == self.metadata.generation && s.phase.as_deref() == Some("Ready")
        })
    }
}

fn config_name(g: &Greeting) -> String {
    format!("{}-greeting", g.name_any())
}

/// The ConfigMap carries the greeting (kept by the children step).
#[step]
pub async fn publish(g: &Greeting, ctx: &Context) -> Result<Outcome> {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_name(g)),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("message".into(), g.spec.message.clone())])),
        ..Default::default()
    };
    Children::new(g)
        .field_manager("greeting-operator")
        .apply(cm)
        .sync(ctx)
        .await
}

/// Everything before this step was unchanged at this generation, so it is in effect: record that.
#[step]
pub async fn observe_generation(g: &Greeting, ctx: &Context) -> Result<Outcome> {
    let want = GreetingStatus {
        observed_generation: g.metadata.generation,
        phase: Some("Ready".into()),
        config_map: Some(config_name(g)),
    };
    if g.status.as_ref() == Some(&want) {
        return Ok(Outcome::unchanged());
    }
    let patch = serde_json::json!({ "status": want });
    ctx.api::<Greeting>()
        .patch_status(
            &g.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Outcome::modified(format!(
        "observed generation {}",
        g.metadata.generation.unwrap_or_default()
    )))
}

/// The Greeting staircase.
pub fn stairs() -> impl Reconciler<Greeting, ()> {
    staircase!(Greeting => [publish, observe_generation])
}

/// The demo: creates `Greeting hello`, waits until its status observes generation 1, changes the
/// message and waits until generation 2 is observed. Returns every run, as printed.
pub async fn demo(client: kube::Client, quiet: bool) -> anyhow::Result<Vec<String>> {
    use crate::harness;
    const NS: &str = "default";
    harness::install_crd::<Greeting>(&client).await?;
    let api: Api<Greeting> = Api::namespaced(client.clone(), NS);
    let g = Greeting::new(
        "hello",
        GreetingSpec {
            message: "hello, world".into(),
        },
    );
    api.create(&Default::default(), &g).await?;

    let trace = harness::Trace::default();
    let op = Operator::new(client.clone(), stairs())
        .with_config(OperatorConfig::default().with_namespace(NS))
        .on_run(harness::tracer(trace.clone(), quiet));
    let (stop, running) = harness::spawn_until_stopped(|stopped| {
        op.run_until(async {
            stopped.await.ok();
        })
    });
    let current = |g: Option<&Greeting>| g.is_some_and(Greeting::is_current);
    harness::wait(&api, "hello", current).await?;
    let change = serde_json::json!({ "spec": { "message": "hello again" } });
    api.patch("hello", &PatchParams::default(), &Patch::Merge(&change))
        .await?;
    harness::wait(&api, "hello", |g: Option<&Greeting>| {
        g.is_some_and(|g| g.metadata.generation == Some(2) && g.is_current())
    })
    .await?;
    stop.send(()).ok();
    running.await?;
    let trace = trace.lock().expect("trace").clone();
    Ok(trace)
}
