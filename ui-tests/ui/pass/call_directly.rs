//! The function under `#[step]` stays an ordinary async function: unit tests call it directly.

use staircase::prelude::*;

pub struct Foo {
    pub ready: bool,
}

#[step(read_only)]
async fn wait_ready(foo: &Foo) -> Result<Outcome> {
    if foo.ready {
        Ok(Outcome::unchanged())
    } else {
        Ok(Outcome::wait("not ready yet"))
    }
}

#[step]
async fn ensure_config(_foo: &Foo, ctx: &Context<u32>, label: &String) -> Result<Outcome> {
    let _ = (ctx.state(), label);
    Ok(Outcome::unchanged())
}

// `#[cfg]` after `#[step]` applies to the generated step type too.
#[step]
#[cfg(any())]
async fn never_compiled(_foo: &Foo) -> Result<Outcome> {
    Ok(Outcome::unchanged())
}

// Type-checks a direct call with a context; a unit test would build the context with
// `Context::new` and a test client.
#[allow(dead_code)]
async fn call_with_context(foo: &Foo, ctx: &Context<u32>) -> Result<Outcome> {
    ensure_config(foo, ctx, &"label".to_string()).await
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let ready = rt.block_on(wait_ready(&Foo { ready: true })).unwrap();
    assert_eq!(ready, Outcome::unchanged());
    let waiting = rt.block_on(wait_ready(&Foo { ready: false })).unwrap();
    assert_eq!(waiting, Outcome::wait("not ready yet"));

    // The step type of the same name lives next to the function; what the macro recorded about
    // it is read through the trait the expansions use.
    let step = wait_ready {};
    let info = staircase::__private::Step::<Foo, (), ()>::info(&step);
    assert_eq!(info.name, "wait_ready");
    assert!(info.read_only);
}
