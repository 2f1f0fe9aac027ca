//! A complete staircase: a custom resource, state, data handed from step to step, cleanup.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::prelude::*;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(group = "demo.staircase.rs", version = "v1", kind = "Foo", namespaced)]
pub struct FooSpec {
    pub message: String,
}

pub struct App {
    pub manager: String,
}

#[step]
async fn ensure_config(_foo: &Foo, _ctx: &Context<App>) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

/// Hands the ConfigMap to the steps after it.
#[step(read_only)]
async fn find_config(_foo: &Foo, _ctx: &Context<App>) -> Result<Outcome<ConfigMap>> {
    Ok(Outcome::Unchanged(ConfigMap::default()))
}

/// Takes no data: the ConfigMap passes through to `use_config`.
#[step(name = "wait for rollout", read_only)]
async fn wait_ready(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::wait("rolling out"))
}

#[step]
async fn use_config(_foo: &Foo, ctx: &Context<App>, cm: &ConfigMap) -> Result<Outcome> {
    let _ = (&ctx.state().manager, cm);
    Ok(Outcome::unchanged())
}

/// Consumes the ConfigMap and hands down a count.
#[step]
async fn count_keys(_foo: &Foo, _ctx: &Context<App>, cm: ConfigMap) -> anyhow::Result<Outcome<usize>> {
    Ok(Outcome::Unchanged(cm.data.map_or(0, |d| d.len())))
}

#[step]
async fn check_count(_foo: &Foo, _ctx: &Context<App>, n: usize) -> Result<Outcome> {
    if n > 100 {
        return Ok(Outcome::done("too many keys"));
    }
    Ok(Outcome::unchanged())
}

mod cleanup {
    use super::{App, Foo};
    use staircase::prelude::*;

    #[step]
    pub(crate) async fn remove_config(_foo: &Foo, _ctx: &Context<App>) -> Result<Outcome, staircase::Error> {
        Ok(Outcome::modified("deleted ConfigMap"))
    }
}

fn main() {
    let stairs = staircase!(
        Foo => [ensure_config, find_config, wait_ready, use_config, count_keys, check_count],
        cleanup => [cleanup::remove_config, wait_ready],
    );
    assert_eq!(
        stairs.step_names(),
        ["ensure_config", "find_config", "wait for rollout", "use_config", "count_keys", "check_count"]
    );
    assert_eq!(stairs.cleanup_step_names(), ["remove_config", "wait for rollout"]);
    assert!(stairs.finalizer_name().is_some());
    let _typed: Staircase<Foo, App, _, _> = stairs;

    let without_cleanup = staircase!(Foo => [ensure_config,]);
    assert_eq!(without_cleanup.finalizer_name(), None);
    let _typed: Staircase<Foo, App, _> = without_cleanup;
}
