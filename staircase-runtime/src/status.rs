//! The conditions the runtime keeps in an object's status (with
//! [`Operator::with_status`](crate::Operator::with_status)), by type, and when it reports status
//! writes that keep failing. The status itself is [`StepStatus`](crate::StepStatus).

pub use crate::step_status::{
    FAILED, FIGHTING, PAUSED, PROGRESSING, READY, RECONCILING, STALLED, WAITING,
};

/// After this many failed status writes in a row the failure is reported (a warning in the log
/// and, with Events on, a `StatusWriteFailing` Warning Event): once, not on every retry.
pub const STATUS_FAILURES_REPORTED: u32 = 3;
