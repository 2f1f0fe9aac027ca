use staircase::prelude::*;

pub struct Foo;

#[step]
async fn ensure_config(_foo: &Foo) -> Result<Outcome> {
    let not_send = std::rc::Rc::new(1);
    std::future::ready(()).await;
    drop(not_send);
    Ok(Outcome::unchanged())
}

fn main() {}
