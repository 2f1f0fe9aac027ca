use staircase::prelude::*;

pub struct Foo;

impl Foo {
    #[step]
    async fn ensure_config(&self) -> Result<Outcome> {
        Ok(Outcome::unchanged())
    }
}

fn main() {}
