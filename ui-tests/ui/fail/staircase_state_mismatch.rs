use staircase::prelude::*;

pub struct Foo;

pub struct App;
pub struct Other;

#[step]
async fn ensure_config(_foo: &Foo, _ctx: &Context<App>) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

#[step]
async fn wait_ready(_foo: &Foo, _ctx: &Context<Other>) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {
    let _ = staircase!(Foo => [ensure_config, wait_ready]);
}
