use staircase::prelude::*;

// The resource parameter is missing: the context came first.
#[step]
async fn ensure_config(_ctx: &Context) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

fn main() {}
