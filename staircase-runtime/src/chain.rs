//! The typed chain of steps that `staircase!` builds: `Start` then step, then step, …
//!
//! The chain is a nested generic type, so the data each step hands to the next is checked by the
//! compiler. Climbing it nests the steps' futures into one (no allocation per level) and never
//! dispatches dynamically on data; only each step's own future is boxed.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::time::Instant;

use crate::error::{Rule, RuleViolation};
use crate::run::{RunRecorder, StepRecord};
use crate::spans;
use crate::step::Step;
use crate::{Context, Error, Outcome, OutcomeKind, Result};

/// An ordered list of steps for resource `K` with user state `S`.
pub trait Stairs<K, S>: Send + Sync + 'static {
    /// The data the last step hands down (unused by the runtime, kept for type checking).
    type Output: Send + 'static;

    /// Runs the steps in order until one does not report `Unchanged`. Returns the final data when
    /// every step was unchanged, `None` when a step stopped the run.
    #[doc(hidden)]
    fn climb<'a>(
        &'a self,
        resource: &'a K,
        ctx: &'a Context<S>,
        rec: &'a mut RunRecorder,
    ) -> impl Future<Output = Result<Option<Self::Output>>> + Send + 'a;

    /// Appends the step names, in order.
    fn step_names(&self, out: &mut Vec<&'static str>);
}

/// The empty chain; `staircase!` starts here.
pub struct Start<K, S>(PhantomData<fn(&K, &S)>);

impl<K, S> Default for Start<K, S> {
    fn default() -> Self {
        Start(PhantomData)
    }
}

impl<K, S> Start<K, S> {
    /// An empty chain for resource `K`.
    pub fn new() -> Self {
        Start(PhantomData)
    }

    /// Appends the first step.
    pub fn then<St: Step<K, S, ()>>(self, step: St) -> Then<K, S, Self, St> {
        Then {
            prev: self,
            step,
            _p: PhantomData,
        }
    }
}

/// A chain `P` followed by step `St`.
pub struct Then<K, S, P, St> {
    prev: P,
    step: St,
    _p: PhantomData<fn(&K, &S)>,
}

impl<K, S, P, St> Then<K, S, P, St>
where
    P: Stairs<K, S>,
    St: Step<K, S, P::Output>,
{
    /// Appends the next step.
    pub fn then<Next: Step<K, S, St::Output>>(self, step: Next) -> Then<K, S, Self, Next> {
        Then {
            prev: self,
            step,
            _p: PhantomData,
        }
    }
}

impl<K, S> Stairs<K, S> for Start<K, S>
where
    K: Send + Sync + 'static,
    S: Send + Sync + 'static,
{
    type Output = ();

    fn climb<'a>(
        &'a self,
        _: &'a K,
        _: &'a Context<S>,
        _: &'a mut RunRecorder,
    ) -> impl Future<Output = Result<Option<()>>> + Send + 'a {
        std::future::ready(Ok(Some(())))
    }

    fn step_names(&self, _: &mut Vec<&'static str>) {}
}

impl<K, S, P, St> Stairs<K, S> for Then<K, S, P, St>
where
    K: Send + Sync + 'static,
    S: Send + Sync + 'static,
    P: Stairs<K, S>,
    St: Step<K, S, P::Output>,
{
    type Output = St::Output;

    async fn climb<'a>(
        &'a self,
        resource: &'a K,
        ctx: &'a Context<S>,
        rec: &'a mut RunRecorder,
    ) -> Result<Option<St::Output>> {
        match self.prev.climb(resource, ctx, &mut *rec).await? {
            Some(data) => execute(&self.step, resource, ctx, data, rec).await,
            None => Ok(None),
        }
    }

    fn step_names(&self, out: &mut Vec<&'static str>) {
        self.prev.step_names(out);
        out.push(self.step.info().name);
    }
}

/// Runs one step with its writes counted, checks the rules, and records what happened.
async fn execute<K, S, In, St: Step<K, S, In>>(
    step: &St,
    resource: &K,
    ctx: &Context<S>,
    input: In,
    rec: &mut RunRecorder,
) -> Result<Option<St::Output>> {
    let info = step.info();
    if !rec.may_start(info.name) {
        return Ok(None);
    }
    rec.begin(info.name);
    let span = tracing::info_span!("step", step = info.name, outcome = tracing::field::Empty);
    let started = Instant::now();
    let (result, writes) = spans::in_span(
        &span,
        crate::writes::recorded(
            ctx.cache_handle(),
            info.name,
            step.run(resource, ctx, input),
        ),
    )
    .await;
    let duration = started.elapsed();
    // Only writes that took effect count (Events report, they don't modify).
    let effective = || writes.iter().filter(|w| w.succeeded() && !w.is_event());
    let effective_count = effective().count();

    let kind = match &result {
        Ok(o) => o.kind(),
        Err(_) => OutcomeKind::Error,
    };
    spans::record(&span, "outcome", kind.as_str());

    let broken = match kind {
        _ if info.read_only && effective_count > 0 => Some(Rule::ReadOnlyWrote),
        OutcomeKind::Modified if effective_count > 1 => Some(Rule::MoreThanOneWrite),
        OutcomeKind::Unchanged | OutcomeKind::Wait | OutcomeKind::Done if effective_count > 0 => {
            Some(Rule::WriteWithoutModified)
        }
        _ => None,
    };
    let violation = broken.map(|rule| RuleViolation {
        step: info.name.to_string(),
        reported: kind,
        rule,
        writes: effective().cloned().collect(),
    });

    // The text moves into the record; the run goes on with the data or stops.
    let (detail, recheck_after, next) = match result {
        Ok(Outcome::Modified { description }) => (description, None, Ok(None)),
        Ok(Outcome::Wait {
            reason,
            recheck_after,
        }) => (reason, recheck_after, Ok(None)),
        Ok(Outcome::Done { reason }) => (reason, None, Ok(None)),
        Ok(Outcome::Unchanged(data)) => (Cow::Borrowed(""), None, Ok(Some(data))),
        Err(e) => (Cow::Owned(e.to_string()), None, Err(e)),
    };
    rec.push(StepRecord {
        step: info.name,
        outcome: kind,
        detail,
        recheck_after,
        duration,
        writes,
        violation: violation.clone(),
    });

    if let Some(v) = violation {
        tracing::warn!(step = info.name, "{v}");
        if rec.policy().fails_run() {
            return Err(Error::from_violation(v));
        }
    }
    next.map_err(|e| e.in_step(info.name))
}

impl<K, S> Clone for Start<K, S> {
    fn clone(&self) -> Self {
        Start(PhantomData)
    }
}

impl<K, S, P: Clone, St: Clone> Clone for Then<K, S, P, St> {
    fn clone(&self) -> Self {
        Then {
            prev: self.prev.clone(),
            step: self.step.clone(),
            _p: PhantomData,
        }
    }
}
