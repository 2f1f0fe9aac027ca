//! The object's own status as the runtime keeps it: `observedGeneration` and four conditions.
//!
//! Status writes are best effort: they go through the `/status` subresource as a merge patch
//! (never a replace with a stale `resourceVersion`, which would 409 after every modification),
//! happen only when something changed, and may fail without failing the run. No step may depend
//! on them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::{Deserialize, Serialize};

use crate::run::RunEnd;

/// Condition type: every step was unchanged at the current generation.
pub const READY: &str = "Ready";
/// Condition type: the last run made a modification (reason = the step, message = what changed).
pub const PROGRESSING: &str = "Progressing";
/// Condition type: a step waits (reason = the step, message = why).
pub const WAITING: &str = "Waiting";
/// Condition type: the last run failed (message = the error).
pub const FAILED: &str = "Failed";

const OURS: [&str; 4] = [READY, PROGRESSING, WAITING, FAILED];

/// The part of a status the runtime maintains. Embed it in your status struct with
/// `#[serde(flatten)]` and implement [`HasStepStatus`] for your resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// The generation the operator last ran against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Waiting` and `Failed`, plus any conditions of your own (kept as they are).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl StepStatus {
    /// The condition of the given type.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the `Ready` condition is `True` for the given generation.
    pub fn is_ready_at(&self, generation: Option<i64>) -> bool {
        self.observed_generation == generation
            && self.condition(READY).is_some_and(|c| c.status == "True")
    }
}

/// Resources whose status carries a [`StepStatus`] the runtime keeps up to date.
pub trait HasStepStatus {
    /// The current step status, `None` when the object has no status yet.
    fn step_status(&self) -> Option<&StepStatus>;
}

struct Wanted {
    type_: &'static str,
    status: bool,
    reason: String,
    message: String,
}

/// Kubernetes requires condition reasons to match `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`;
/// step names are Rust identifiers, so only a leading underscore or digit needs a prefix.
fn reason(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match cleaned.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => cleaned,
        _ => format!("Step{cleaned}"),
    }
}

fn wanted(end: &RunEnd, deleting: bool) -> Option<[Wanted; 4]> {
    let w = |type_, status, reason: &str, message: String| Wanted {
        type_,
        status,
        reason: self::reason(reason),
        message,
    };
    let (ready, ready_reason, ready_msg) = match end {
        RunEnd::Converged => (true, "Converged", "every step is unchanged".to_string()),
        RunEnd::Done { step, reason } => (true, "Done", format!("{step}: {reason}")),
        RunEnd::Modified { step, .. } => (false, "Progressing", format!("{step} made a change")),
        RunEnd::FinalizerAdded => (false, "Progressing", "finalizer added".to_string()),
        RunEnd::Waiting { step, reason } => (false, "Waiting", format!("{step}: {reason}")),
        RunEnd::Failed { error, .. } => (false, "Failed", error.clone()),
        RunEnd::FinalizerRemoved | RunEnd::SkippedStale => return None,
    };
    let (ready, ready_reason) = if deleting {
        (false, "Deleting")
    } else {
        (ready, ready_reason)
    };
    let progressing = match end {
        RunEnd::Modified { step, description } => w(PROGRESSING, true, step, description.clone()),
        RunEnd::FinalizerAdded => w(PROGRESSING, true, "Finalizer", "finalizer added".into()),
        _ => w(PROGRESSING, false, "Idle", String::new()),
    };
    let waiting = match end {
        RunEnd::Waiting { step, reason } => w(WAITING, true, step, reason.clone()),
        _ => w(WAITING, false, "NotWaiting", String::new()),
    };
    let failed = match end {
        RunEnd::Failed { step, error } => w(FAILED, true, step.unwrap_or("Runtime"), error.clone()),
        _ => w(FAILED, false, "NoError", String::new()),
    };
    Some([
        w(READY, ready, ready_reason, ready_msg),
        progressing,
        waiting,
        failed,
    ])
}

/// The status to write after a run, or `None` when the current one is already right.
pub(crate) fn next_status(
    current: Option<&StepStatus>,
    generation: Option<i64>,
    end: &RunEnd,
    deleting: bool,
) -> Option<StepStatus> {
    let wanted = wanted(end, deleting)?;
    let empty = StepStatus::default();
    let current = current.unwrap_or(&empty);
    let mut changed = current.observed_generation != generation;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut conditions: Vec<Condition> = current
        .conditions
        .iter()
        .filter(|c| !OURS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    for w in wanted {
        let status = if w.status { "True" } else { "False" };
        let old = current.condition(w.type_);
        let same = old.is_some_and(|c| {
            c.status == status
                && c.reason == w.reason
                && c.message == w.message
                && c.observed_generation == generation
        });
        changed |= !same;
        let last_transition_time = match old {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => now.clone(),
        };
        conditions.push(Condition {
            type_: w.type_.to_string(),
            status: status.to_string(),
            reason: w.reason,
            message: w.message,
            observed_generation: generation,
            last_transition_time,
        });
    }
    changed.then_some(StepStatus {
        observed_generation: generation,
        conditions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converged_twice_writes_once() {
        let first = next_status(None, Some(2), &RunEnd::Converged, false).expect("first write");
        assert!(first.is_ready_at(Some(2)));
        assert_eq!(
            next_status(Some(&first), Some(2), &RunEnd::Converged, false),
            None
        );
        // A new generation is observed even when the verdict is the same.
        assert!(next_status(Some(&first), Some(3), &RunEnd::Converged, false).is_some());
    }

    #[test]
    fn progressing_names_the_step() {
        let end = RunEnd::Modified {
            step: "ensure_config",
            description: "created ConfigMap x".into(),
        };
        let s = next_status(None, Some(1), &end, false).unwrap();
        let p = s.condition(PROGRESSING).unwrap();
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", "ensure_config")
        );
        assert_eq!(s.condition(READY).unwrap().status, "False");
    }

    #[test]
    fn reasons_are_valid() {
        assert_eq!(reason("_x"), "Step_x");
        assert_eq!(reason("a-b"), "a_b");
    }
}
