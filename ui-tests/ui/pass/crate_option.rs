//! `#[step(crate = "...")]` names the facade when it is reached under another path, and
//! `staircase!` finds it through `$crate` however it was imported; `#[step_status(crate = "...")]`
//! does the same for `#[derive(StepStatus)]`.

mod facade {
    pub use ::staircase::*;
}

use facade::{Context, Outcome, Result, step};

pub struct Foo;

#[step(crate = "crate::facade")]
async fn ensure_config(_foo: &Foo, _ctx: &Context) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {
    let stairs = facade::staircase!(Foo => [ensure_config]);
    let _typed: facade::Staircase<Foo, (), _> = stairs;
}

/// `#[step_status(crate = "...")]` does the same for the derive.
#[derive(serde::Serialize, facade::StepStatus)]
#[step_status(crate = "crate::facade")]
pub struct FooStatus {
    #[serde(flatten)]
    pub steps: facade::StepStatus,
}

fn lends<S: facade::LendsStepStatus>() {}

#[allow(dead_code)]
fn status() {
    lends::<FooStatus>();
}
