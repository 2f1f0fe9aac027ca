use staircase::prelude::*;

pub struct Foo;

#[step]
async fn ensure_config() -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {}
