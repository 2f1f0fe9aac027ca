use staircase::prelude::*;

pub struct Foo;

#[step]
async fn ensure_config(_foo: &mut Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {}
