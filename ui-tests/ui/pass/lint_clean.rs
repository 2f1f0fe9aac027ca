//! Generated code passes strict lints: docs on every public item, no unused code, idioms.
#![deny(
    warnings,
    missing_docs,
    missing_debug_implementations,
    missing_copy_implementations,
    rust_2018_idioms,
    unreachable_pub,
    unused,
    unused_qualifications,
    unused_results,
    trivial_casts,
    trivial_numeric_casts,
    single_use_lifetimes,
    non_ascii_idents,
    unsafe_code
)]

/// The steps of the operator.
pub mod steps {
    use staircase::prelude::*;

    /// The resource.
    #[derive(Debug, Clone, Copy)]
    pub struct Foo;

    /// Operator state.
    #[derive(Debug, Clone, Copy)]
    pub struct App;

    /// Makes sure the config exists.
    #[step]
    pub async fn ensure_config(_foo: &Foo, _ctx: &Context<App>) -> Result<Outcome> {
        Ok(Outcome::unchanged())
    }

    /// Finds a number for the next step.
    #[step(read_only, name = "find number")]
    pub async fn find_number(_foo: &Foo, _ctx: &Context<App>) -> Result<Outcome<u64>> {
        Ok(Outcome::Unchanged(7))
    }

    /// Uses the number.
    #[step]
    pub async fn use_number(_foo: &Foo, _ctx: &Context<App>, n: u64) -> Result<Outcome> {
        if n > 10 {
            return Ok(Outcome::done("large"));
        }
        Ok(Outcome::unchanged())
    }

    /// Cleans up.
    #[step]
    pub async fn cleanup(_foo: &Foo, _ctx: &Context<App>) -> Result<Outcome> {
        Ok(Outcome::unchanged())
    }

    /// The staircase.
    pub fn stairs() -> Staircase<
        Foo,
        App,
        impl staircase::Stairs<Foo, App>,
        impl staircase::Stairs<Foo, App>,
    > {
        staircase!(Foo => [ensure_config, find_number, use_number], cleanup => [cleanup])
    }
}

fn main() {
    let stairs = steps::stairs();
    assert_eq!(stairs.step_names(), ["ensure_config", "find number", "use_number"]);
}
