use staircase::prelude::*;

pub struct Foo;

#[step]
async fn ensure_config(_foo: &Foo, _ctx: &Context, _data: &String, _more: &u32) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {}
