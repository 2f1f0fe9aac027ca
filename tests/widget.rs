//! `Widget`: a test resource whose `spec.mode` makes one step misbehave on purpose, so every
//! outcome and every rule violation can be produced against the real server.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::prelude::*;

/// Spec of the test resource.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "test.staircase.rs",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    /// How the `behave` step acts: ok, wait, countdown, done, fail, permanent, fail_twice,
    /// sneaky, runaway, double, readonly_write.
    pub mode: String,
}

/// Status: only what the runtime keeps.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, StepStatus)]
pub struct WidgetStatus {
    /// Kept by staircase.
    #[serde(flatten)]
    pub steps: StepStatus,
}

/// Shared test state: how often `behave` ran, to make failures stop after a while.
#[derive(Debug, Default)]
pub struct Counters {
    /// Calls of `behave`.
    pub behave_calls: AtomicU32,
}

async fn ensure_cm(w: &Widget, ctx: &Context<Counters>, suffix: &str) -> Result<bool> {
    let api = ctx.api::<ConfigMap>();
    let name = format!("{}-{suffix}", w.name_any());
    if api.get_opt(&name).await?.is_some() {
        return Ok(false);
    }
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(BTreeMap::from([("widget".into(), w.name_any())])),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &cm).await?;
    Ok(true)
}

/// Makes the ConfigMap `<name>-first`.
#[step]
pub async fn first(w: &Widget, ctx: &Context<Counters>) -> Result<Outcome> {
    Ok(match ensure_cm(w, ctx, "first").await? {
        true => Outcome::modified("created first"),
        false => Outcome::unchanged(),
    })
}

/// Acts as `spec.mode` says.
#[step]
pub async fn behave(w: &Widget, ctx: &Context<Counters>) -> Result<Outcome> {
    let calls = ctx.state().behave_calls.fetch_add(1, Ordering::SeqCst) + 1;
    match w.spec.mode.as_str() {
        "wait" => Ok(Outcome::wait("waiting for approval")),
        // A reason that differs on every run, as a schedule's countdown does.
        "countdown" => Ok(Outcome::wait_for(
            format!("due in {}s", 3600 - calls),
            std::time::Duration::from_secs(3600),
        )),
        "done" => Ok(Outcome::done("suspended by spec")),
        "fail" => Err(Error::msg("the backend is down")),
        "permanent" => Err(Error::permanent(anyhow::anyhow!("spec.mode is unusable"))),
        "fail_twice" if calls <= 2 => Err(Error::msg(format!("transient failure #{calls}"))),
        "sneaky" => {
            ensure_cm(w, ctx, &format!("sneaky-{calls}")).await?;
            Ok(Outcome::unchanged())
        }
        // Never finds what it made: a new ConfigMap on every run.
        "runaway" => {
            ensure_cm(w, ctx, &format!("runaway-{calls}")).await?;
            Ok(Outcome::modified(format!("made runaway-{calls}")))
        }
        "double" => {
            ensure_cm(w, ctx, &format!("double-a-{calls}")).await?;
            ensure_cm(w, ctx, &format!("double-b-{calls}")).await?;
            Ok(Outcome::modified("made two ConfigMaps"))
        }
        _ => Ok(Outcome::unchanged()),
    }
}

/// Only looks, but with mode `readonly_write` it writes anyway.
#[step(read_only)]
pub async fn inspect(w: &Widget, ctx: &Context<Counters>) -> Result<Outcome> {
    if w.spec.mode == "readonly_write" && ensure_cm(w, ctx, "inspected").await? {
        return Ok(Outcome::modified("wrote from a read-only step"));
    }
    Ok(Outcome::unchanged())
}

/// Makes the ConfigMap `<name>-last`.
#[step]
pub async fn last(w: &Widget, ctx: &Context<Counters>) -> Result<Outcome> {
    Ok(match ensure_cm(w, ctx, "last").await? {
        true => Outcome::modified("created last"),
        false => Outcome::unchanged(),
    })
}

/// A new widget in `default`.
pub fn widget(name: &str, mode: &str) -> Widget {
    let mut w = Widget::new(name, WidgetSpec { mode: mode.into() });
    w.metadata.namespace = Some("default".into());
    w
}
