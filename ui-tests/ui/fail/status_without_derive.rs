// A status struct that embeds `StepStatus` but does not derive it: `with_status` cannot keep it.
use kube::{Client, CustomResource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::prelude::*;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(group = "example.com", version = "v1", kind = "Foo", namespaced, status = "FooStatus")]
pub struct FooSpec {
    pub message: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct FooStatus {
    #[serde(flatten)]
    pub steps: StepStatus,
}

#[step]
async fn noop(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

async fn run(client: Client) {
    Operator::new(client, staircase!(Foo => [noop]))
        .with_status()
        .run()
        .await;
}

fn main() {
    let _ = run;
}
