//! `#[step(crate = "...")]` names the facade when it is reached under another path, and
//! `staircase!` finds it through `$crate` however it was imported.

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
