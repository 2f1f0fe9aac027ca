use staircase::prelude::*;

pub struct Foo;

#[step(name = "ensure config", retries = 3)]
async fn ensure_config(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {}
