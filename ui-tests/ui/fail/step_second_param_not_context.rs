use staircase::prelude::*;

pub struct Foo;

#[step]
async fn ensure_config(_foo: &Foo, _data: &String) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {}
