use staircase::prelude::*;

pub struct Foo;

// Every problem of a step is reported in one build.
#[step(colour = "red")]
fn ensure_config(_foo: Foo, _ctx: &String) {}

fn main() {}
