use staircase::prelude::*;

pub struct Foo;

#[step]
async fn ensure_config(_foo: &Foo) {}

fn main() {}
