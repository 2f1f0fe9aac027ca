//! A step with a wrong return type is reported once, at that step: not again at the steps after
//! it, at `staircase!` or at `Operator::new`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::prelude::*;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(group = "demo.staircase.rs", version = "v1", kind = "Foo", namespaced)]
pub struct FooSpec {
    pub message: String,
}

#[step]
async fn ensure_config(_foo: &Foo) -> Result<String> {
    Ok(String::new())
}

#[step]
async fn wait_ready(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

async fn run(client: kube::Client) {
    let stairs = staircase!(Foo => [ensure_config, wait_ready]);
    let _ = Operator::new(client, stairs).run().await;
}

fn main() {
    let _ = run;
}
