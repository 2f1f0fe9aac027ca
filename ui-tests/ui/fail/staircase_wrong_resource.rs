use staircase::prelude::*;

pub struct Foo;

pub struct Bar;

#[step]
async fn ensure_config(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

#[step]
async fn wait_ready(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

#[step]
async fn ensure_bar(_bar: &Bar) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {
    let _ = staircase!(Foo => [ensure_config, ensure_bar, wait_ready]);
}
