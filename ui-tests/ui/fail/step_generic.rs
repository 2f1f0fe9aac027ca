use staircase::prelude::*;

pub struct Foo;

#[step]
async fn ensure_config<K>(_foo: &K) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {}
