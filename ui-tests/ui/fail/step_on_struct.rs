use staircase::prelude::*;

pub struct Foo;

#[step]
struct EnsureConfig;

fn main() {}
