use staircase::prelude::*;

pub struct Foo;

#[step(read_only, name = "a", read_only)]
async fn ensure_config(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {}
