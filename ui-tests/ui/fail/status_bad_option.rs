// `#[step_status(...)]` takes only `crate = "path"`; the field check still runs.
use serde::Serialize;
use staircase::prelude::*;

#[derive(Serialize, StepStatus)]
#[step_status(krate = "::staircase")]
pub struct FooStatus {
    pub steps: StepStatus,
}

fn main() {}
