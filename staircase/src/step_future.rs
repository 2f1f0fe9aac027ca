//! The future `#[step]`'s `Step::run` returns: the step function's own future, boxed, with its
//! result normalised on the way out.
//!
//! A generic adapter rather than an `async move { … .await }` block in every step's expansion:
//! each such block is a coroutine of its own that the compiler analyses (its captures, what it
//! holds across the `.await`, its layout) on every build of the user's crate; the adapter is a
//! plain struct around the function's future, with nothing of the kind to work out (15 million
//! fewer rustc instructions for a 20-step crate, about 6 % of its incremental rebuild).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use staircase_runtime::__private::StepReturn;
use staircase_runtime::{Outcome, Result};

pin_project_lite::pin_project! {
    /// Polls the step function's future and converts what it returns.
    struct Normalised<F> {
        #[pin]
        step: F,
    }
}

impl<F> Future for Normalised<F>
where
    F: Future<Output: StepReturn>,
{
    type Output = Result<Outcome<<F::Output as StepReturn>::Output>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().step.poll(cx).map(StepReturn::into_result)
    }
}

pin_project_lite::pin_project! {
    /// Polls the step function's future and hands on the data the step received.
    struct PassingOn<F, D> {
        #[pin]
        step: F,
        input: Option<D>,
    }
}

impl<F, D> Future for PassingOn<F, D>
where
    F: Future<Output: StepReturn<Output = ()>>,
{
    type Output = Result<Outcome<D>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.step.poll(cx)).into_result();
        let input = this.input.take().expect("polled after completion");
        Poll::Ready(crate::__private::pass_on(result, input))
    }
}

/// The step function's future `step`, boxed, its result normalised.
#[inline]
pub fn boxed<'a, F>(step: F) -> BoxFuture<'a, Result<Outcome<<F::Output as StepReturn>::Output>>>
where
    F: Future<Output: StepReturn> + Send + 'a,
{
    Box::pin(Normalised { step })
}

/// The same for a step that hands down nothing of its own: its outcome carries `input` on.
#[inline]
pub fn boxed_passing_on<'a, F, D>(step: F, input: D) -> BoxFuture<'a, Result<Outcome<D>>>
where
    F: Future<Output: StepReturn<Output = ()>> + Send + 'a,
    D: Send + 'a,
{
    Box::pin(PassingOn {
        step,
        input: Some(input),
    })
}
