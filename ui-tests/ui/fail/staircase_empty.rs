use staircase::prelude::*;

pub struct Foo;

fn main() {
    let _ = staircase!(Foo => []);
}
