use staircase::prelude::*;

pub struct Foo;

#[step]
async fn ensure_config(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

#[step]
async fn wait_ready(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {
    let _ = staircase!(Foo => [ensure_config], finalize => [wait_ready]);
}
