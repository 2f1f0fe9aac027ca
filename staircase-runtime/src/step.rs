//! The `Step` trait: one check, at most one fix.
//!
//! Users rarely implement it by hand: `#[step]` generates the implementation from an `async fn`.
//! It is public so that library code (built-in steps such as children management) can implement it
//! directly.

use futures::future::BoxFuture;

use crate::{Context, Outcome, Result};

/// Static facts about a step, used in traces, metrics, conditions and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepInfo {
    /// The step's name (the function name for `#[step]`).
    pub name: &'static str,
    /// A read-only step only looks (it waits, or computes data for later steps); the runtime
    /// treats any write it makes as a rule violation.
    pub read_only: bool,
}

/// One step of a staircase for resource `K`, with shared user state `S`, receiving data `In`
/// from the steps before it.
///
/// `Output` is what it hands to the steps after it. A step that takes no data passes what it was
/// given along unchanged, so data produced by one step reaches the next step that asks for it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot run as a step of a staircase for `{K}` here",
    label = "this step does not accept the resource, context or data of this position",
    note = "a step's first parameter is the resource (`&{K}`), the second the `&Context<_>` of the operator, the third the data handed down by the earlier steps (`{In}` here)"
)]
pub trait Step<K, S, In>: Send + Sync + 'static {
    /// The data this step hands to the steps after it.
    type Output: Send + 'static;

    /// Name and flags of this step.
    fn info(&self) -> StepInfo;

    /// Runs the step once against `resource`.
    fn run<'a>(
        &'a self,
        resource: &'a K,
        ctx: &'a Context<S>,
        input: In,
    ) -> BoxFuture<'a, Result<Outcome<Self::Output>>>;
}

/// Implemented by `#[step]` for the one resource type a step is written for, so that putting a
/// step into the staircase of another resource is reported at that step.
#[diagnostic::on_unimplemented(
    message = "step `{Self}` is not written for resource `{K}`",
    label = "this step takes a different resource type",
    note = "every step of `staircase!({K} => [...])` must take `&{K}` as its first parameter"
)]
pub trait ForResource<K> {
    /// Always `Self`. `staircase!` passes each step through this projection: when the trait is not
    /// implemented the projection cannot be resolved, so the compiler reports the mismatch once, at
    /// that step, and does not report the rest of the chain again.
    #[doc(hidden)]
    type This;
}

/// Implemented by `#[step]` for the data a step accepts, so a mismatch between what the earlier
/// steps hand down and what a step takes is reported at that step.
#[diagnostic::on_unimplemented(
    message = "step `{Self}` cannot take the data `{D}` handed down by the steps before it",
    label = "expects different data",
    note = "a step receives the data of the nearest earlier step that produced some (`()` when none did); produce it with `Outcome::Unchanged(data)`"
)]
pub trait TakesData<D> {
    /// Always `Self`. `staircase!` passes each step through this projection: when the trait is not
    /// implemented the projection cannot be resolved, so the compiler reports the mismatch once, at
    /// that step, and does not report the rest of the chain again.
    #[doc(hidden)]
    type This;
}

/// Implemented by `#[step]` for the user state a step's context carries.
#[diagnostic::on_unimplemented(
    message = "step `{Self}` expects a different operator state than `{S}`",
    label = "this step's `Context<_>` has another state type",
    note = "all steps of one staircase share one `Context<S>`"
)]
pub trait WithState<S> {
    /// Always `Self`. `staircase!` passes each step through this projection: when the trait is not
    /// implemented the projection cannot be resolved, so the compiler reports the mismatch once, at
    /// that step, and does not report the rest of the chain again.
    #[doc(hidden)]
    type This;
}

/// Return types a `#[step]` function may have: `Result<Outcome<T>, E>` with `E` convertible
/// into [`crate::Error`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid return type for a step",
    label = "a step returns `Result<Outcome>` (or `Result<Outcome<T>>` to hand data `T` to later steps)"
)]
pub trait StepReturn: Send {
    /// The data the step hands down.
    type Output: Send + 'static;
    /// Normalises into the runtime's result type.
    fn into_result(self) -> Result<Outcome<Self::Output>>;
}

impl<T, E> StepReturn for std::result::Result<Outcome<T>, E>
where
    T: Send + 'static,
    E: Into<crate::Error> + Send,
{
    type Output = T;
    fn into_result(self) -> Result<Outcome<T>> {
        self.map_err(Into::into)
    }
}
