//! Procedural macros of [staircase](https://docs.rs/staircase): `#[step]` turns an `async fn` into
//! a step, `staircase!` lists steps into a reconciler. Use them through the `staircase` crate,
//! whose hidden `__private` module every expansion refers to.
//!
//! Each macro is split into parse (syntax), validate (rules, with every error collected) and
//! expand (code generation) modules; type-level rules (does a step fit the resource, state and
//! data of its position?) are left to the compiler, with the expansion arranged so that its error
//! lands on the user's token with a message written for it.

mod attr;
mod errors;
mod staircase;
mod status;
mod step;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

// The examples are in the `staircase` crate's documentation of its re-export, where they
// compile; rustdoc shows them above this text.
/// The function stays as written (call it directly in unit tests). Next to it the macro defines
/// a unit-like type of the same name (`struct ensure_config {}`, in the type namespace only)
/// implementing [`Step`](https://docs.rs/staircase/latest/staircase/trait.Step.html); that is
/// what `staircase!(Foo => [ensure_config, ...])` refers to.
///
/// # Parameters
///
/// 1. the resource, `&Foo` (required);
/// 2. the context, `&Context<S>` or `&Context` (optional);
/// 3. data handed down by earlier steps, `&T` or `T` (optional, only after a context). A step
///    that takes `&T` and returns `Result<Outcome>` passes `T` on to the steps after it.
///
/// The return type is `Result<Outcome>`, or `Result<Outcome<T>>` to hand `T` to later steps
/// (any `Result<Outcome<T>, E>` with `E: Into<staircase::Error>`; an alias of the whole return
/// type works too). A wrong return type is reported once, at the return type, not again where
/// the step is listed.
///
/// # Options
///
/// - `name = "..."`: the step's name in traces, events and the status conditions (default: the
///   function's name; the runtime turns it into a valid condition reason);
/// - `read_only`: the step only looks (waits, or computes data); a write from it is a violation;
/// - `crate = "path"`: where the `staircase` crate is, when it is renamed in `Cargo.toml`.
#[proc_macro_attribute]
pub fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    step::step(args.into(), item.into()).into()
}

/// The implementation of `staircase!`; use the `staircase!` of the `staircase` crate, which passes
/// it the crate's path.
#[doc(hidden)]
#[proc_macro]
pub fn __staircase(input: TokenStream) -> TokenStream {
    staircase::staircase(input.into()).into()
}

// The example is in the `staircase` crate's documentation of its re-export, where it compiles;
// rustdoc shows it above this text.
/// The struct needs exactly one field of type `StepStatus`, marked `#[serde(flatten)]`: the
/// runtime writes `observedGeneration` and `conditions` at the top of the status. The derive
/// implements `staircase::LendsStepStatus`; a resource whose status type does (kube's `CustomResource`
/// derive with `status = "FooStatus"`) has `HasStepStatus`. When the `staircase` crate is reached
/// under another path, say where: `#[step_status(crate = "path")]` on the struct.
#[proc_macro_derive(StepStatus, attributes(step_status))]
pub fn derive_step_status(item: TokenStream) -> TokenStream {
    status::derive(item.into()).into()
}
