use staircase::prelude::*;

pub struct Foo;

#[step]
async fn ensure_config(_foo: &Foo) -> std::result::Result<Outcome, String> {
    Ok(Outcome::unchanged())
}

fn main() {}
