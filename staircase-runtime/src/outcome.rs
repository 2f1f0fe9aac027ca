//! What a step reports after it looked at the world.

use std::borrow::Cow;
use std::time::Duration;

/// The verdict of one step.
///
/// A step checks one thing. If it is already right, the step reports [`Outcome::Unchanged`] and the
/// run goes on to the next step. If it is wrong, the step fixes it with exactly one modification and
/// reports [`Outcome::Modified`]: the run stops there and the object is run again from the top,
/// where this step should now find nothing to do.
///
/// `T` is the data the step hands to the steps after it (see the crate docs on data flow); most
/// steps hand nothing and use `Outcome` (that is, `Outcome<()>`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a step's outcome decides what the run does next"]
pub enum Outcome<T = ()> {
    /// Nothing to fix here; go on to the next step, handing it `T`.
    Unchanged(T),
    /// The step made its one modification. The run stops and the object is run again promptly.
    Modified {
        /// What was changed, in words a person reads in traces, events and the `Progressing` condition.
        description: Cow<'static, str>,
    },
    /// Something is not ready yet (a child still starting, an external job running). The run stops
    /// without a change and the object is run again after `recheck_after`, or on its next change.
    Wait {
        /// Why the run waits; shown in the `Waiting` condition.
        reason: Cow<'static, str>,
        /// When to look again even if nothing changes; `None` waits for a change only.
        recheck_after: Option<Duration>,
    },
    /// End the run early without a change: there is nothing more to do for this object now
    /// (for example it is suspended). Later steps do not run; the object counts as settled.
    Done {
        /// Why the run ended early.
        reason: Cow<'static, str>,
    },
}

impl Outcome<()> {
    /// Nothing to fix here; go on to the next step.
    pub const fn unchanged() -> Self {
        Outcome::Unchanged(())
    }
}

impl<T> Outcome<T> {
    /// The step made its one modification, described for people.
    pub fn modified(description: impl Into<Cow<'static, str>>) -> Self {
        Outcome::Modified {
            description: description.into(),
        }
    }

    /// Stop the run without a change until the object changes again.
    pub fn wait(reason: impl Into<Cow<'static, str>>) -> Self {
        Outcome::Wait {
            reason: reason.into(),
            recheck_after: None,
        }
    }

    /// Stop the run without a change and look again after `after` (or on the next change).
    pub fn wait_for(reason: impl Into<Cow<'static, str>>, after: Duration) -> Self {
        Outcome::Wait {
            reason: reason.into(),
            recheck_after: Some(after),
        }
    }

    /// End the run early: nothing more to do for this object now.
    pub fn done(reason: impl Into<Cow<'static, str>>) -> Self {
        Outcome::Done {
            reason: reason.into(),
        }
    }

    /// The short name of this outcome, as used in traces and metrics labels.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Unchanged(_) => OutcomeKind::Unchanged,
            Outcome::Modified { .. } => OutcomeKind::Modified,
            Outcome::Wait { .. } => OutcomeKind::Wait,
            Outcome::Done { .. } => OutcomeKind::Done,
        }
    }

    /// Replaces the handed-down data, keeping the verdict; used by the runtime to pass data along.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Unchanged(t) => Outcome::Unchanged(f(t)),
            Outcome::Modified { description } => Outcome::Modified { description },
            Outcome::Wait {
                reason,
                recheck_after,
            } => Outcome::Wait {
                reason,
                recheck_after,
            },
            Outcome::Done { reason } => Outcome::Done { reason },
        }
    }
}

/// The verdict of a step without its data: what traces, metrics and run reports record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// See [`Outcome::Unchanged`].
    Unchanged,
    /// See [`Outcome::Modified`].
    Modified,
    /// See [`Outcome::Wait`].
    Wait,
    /// See [`Outcome::Done`].
    Done,
    /// The step returned an error (or broke a rule).
    Error,
}

impl OutcomeKind {
    /// Lower-case label, stable for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Unchanged => "unchanged",
            OutcomeKind::Modified => "modified",
            OutcomeKind::Wait => "wait",
            OutcomeKind::Done => "done",
            OutcomeKind::Error => "error",
        }
    }
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
