use staircase::prelude::*;

pub struct Foo;

#[step]
fn ensure_config(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {}
