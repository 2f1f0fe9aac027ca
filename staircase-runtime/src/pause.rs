//! Pausing an object's runs with an annotation, for on-call work: stop an operator before one
//! step (or before every step) on one object, look, then remove the annotation to resume.
//!
//! ```text
//! kubectl annotate foo web staircase.rs/pause-before=ensure_service   # stop before that step
//! kubectl annotate foo web staircase.rs/pause-before=all              # stop before every step
//! kubectl annotate foo web staircase.rs/pause-before-                 # resume
//! ```
//!
//! # Guarantees
//! - A run on a paused object climbs the steps before the named one as usual (they may still make
//!   their one modification each, so the object reaches the paused step), and never starts the
//!   named step or any after it. With `all`, no step runs and the runtime adds no finalizer.
//! - A paused run ends as [`RunEnd::Paused`](crate::RunEnd::Paused). With
//!   [`with_status`](crate::Operator::with_status) the object's status carries a
//!   [`PAUSED`](crate::status::PAUSED) condition (`True`, reason = the step, or `All`) and `Ready`
//!   is `False` with reason `Paused`; the condition goes away when the annotation does. With
//!   Events on, each paused run leaves a `Paused` Event (repeats aggregate into one Event with
//!   a growing count).
//! - Removing the annotation is a change to the object, so the next run starts at once.
//! - A value that names no step of the staircase pauses every step (the safe reading of a typo)
//!   and the condition's message lists the steps there are.
//!
//! # Deletion
//! Cleanup is paused by the same rule: `all`, or the name of a cleanup step, stops the cleanup
//! steps; the object keeps the runtime's finalizer, so the deletion waits. It is never silent: a
//! paused cleanup run leaves a `Warning` Event (`Paused`, "deletion waits ...") rather than a
//! `Normal` one, and `Ready` says `Deleting`. A pause that names a step of the main staircase only
//! does not hold a deletion up.
//!
//! # Caveats
//! - The annotation is read from the view the run acts on: a run already past the named step
//!   when the annotation lands finishes (it makes at most one modification).
//! - A pause changes no metadata the runtime owns; it is the user's annotation, and only a user
//!   removes it.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The annotation that pauses an object's runs: `all`, or the name of the step to stop before.
pub const ANNOTATION: &str = "staircase.rs/pause-before";

/// A pause, as read from one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pause {
    /// Before every step (also `*`, and a value that names no step).
    All { unknown: Option<String> },
    /// Before this step.
    Before(&'static str),
}

impl Pause {
    /// The pause the object asks for. `steps`: every step name of the main and cleanup
    /// staircases, so a value that names none can be told apart.
    pub(crate) fn of(meta: &ObjectMeta, steps: &[&'static str]) -> Option<Pause> {
        let value = meta.annotations.as_ref()?.get(ANNOTATION)?.trim();
        if value.eq_ignore_ascii_case("all") || value == "*" {
            return Some(Pause::All { unknown: None });
        }
        match steps.iter().find(|s| **s == value) {
            Some(s) => Some(Pause::Before(s)),
            None => Some(Pause::All {
                unknown: Some(value.to_string()),
            }),
        }
    }

    /// Whether the run stops before `step`.
    pub(crate) fn stops(&self, step: &str) -> bool {
        match self {
            Pause::All { .. } => true,
            Pause::Before(s) => *s == step,
        }
    }

    /// What the status and the Event say.
    pub(crate) fn reason(&self, steps: &[&'static str]) -> Cow<'static, str> {
        match self {
            Pause::All { unknown: None } => format!("paused by {ANNOTATION}=all").into(),
            Pause::All { unknown: Some(v) } => format!(
                "{ANNOTATION}={v:?} names no step (the steps are: {}); every step is paused \
                 until the annotation is fixed or removed",
                steps.join(", ")
            )
            .into(),
            Pause::Before(s) => format!("paused by {ANNOTATION}={s}").into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn meta(v: &str) -> ObjectMeta {
        ObjectMeta {
            annotations: Some(BTreeMap::from([(ANNOTATION.to_string(), v.to_string())])),
            ..Default::default()
        }
    }

    const STEPS: &[&str] = &["a", "b"];

    #[test]
    fn values_are_read_safely() {
        assert_eq!(Pause::of(&ObjectMeta::default(), STEPS), None);
        assert_eq!(
            Pause::of(&meta(" ALL "), STEPS),
            Some(Pause::All { unknown: None })
        );
        assert_eq!(Pause::of(&meta("b"), STEPS), Some(Pause::Before("b")));
        let typo = Pause::of(&meta("bb"), STEPS).unwrap();
        assert!(typo.stops("a"), "a typo pauses everything");
        assert!(typo.reason(STEPS).contains("the steps are: a, b"));
        assert!(!Pause::Before("b").stops("a"));
    }
}
