use staircase::prelude::*;

pub struct Foo;

pub struct Config;
pub struct Secret;

#[step]
async fn ensure_config(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

#[step]
async fn wait_ready(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

#[step]
async fn find_secret(_foo: &Foo, _ctx: &Context) -> Result<Outcome<Secret>> {
    Ok(Outcome::Unchanged(Secret))
}

#[step]
async fn use_config(_foo: &Foo, _ctx: &Context, _config: &Config) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {
    let _ = staircase!(Foo => [ensure_config, find_secret, wait_ready, use_config]);
}
