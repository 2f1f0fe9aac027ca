use staircase::prelude::*;

pub struct Foo;

pub struct Config;

#[step]
async fn ensure_config(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

#[step]
async fn wait_ready(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

#[step]
async fn use_config(_foo: &Foo, _ctx: &Context, _config: Config) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {
    let _ = staircase!(Foo => [ensure_config, use_config]);
}
