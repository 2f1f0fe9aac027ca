//! The object's own status as the runtime keeps it: `observedGeneration` and four conditions.
//!
//! Status writes are best effort: they go through the `/status` subresource as a merge patch
//! (never a replace with a stale `resourceVersion`, which would 409 after every modification),
//! happen only when something changed, and may fail without failing the run. No step may depend
//! on them.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::{Deserialize, Serialize};

use crate::config::StatusUpdates;
use crate::fight::Fight;
use crate::run::RunEnd;

/// Condition type: every step was unchanged at the current generation.
pub const READY: &str = "Ready";
/// Condition type: the last run made a modification (reason = the step, message = what changed).
pub const PROGRESSING: &str = "Progressing";
/// Condition type: a step waits (reason = the step, message = why).
pub const WAITING: &str = "Waiting";
/// Condition type: the last run failed (message = the error).
pub const FAILED: &str = "Failed";
/// Condition type: the object is paused by its [`pause-before`](crate::pause) annotation
/// (reason = the step the runs stop before, or `All`; message = what the annotation asks). Present only
/// while the object is paused.
pub const PAUSED: &str = "Paused";
/// Condition type: a step [fights](crate::fight) another field manager over an object (reason =
/// the step, message = the object and the other managers). Present only from a run that found
/// the fight until a later run settles or makes a modification that is no round of it.
pub const FIGHTING: &str = "Fighting";

const OURS: [&str; 6] = [READY, PROGRESSING, WAITING, FAILED, PAUSED, FIGHTING];

/// kstatus's condition: the object is being brought to its desired state (present only while
/// that is so; with [`OperatorConfig::kstatus`](crate::OperatorConfig::kstatus)).
pub const RECONCILING: &str = "Reconciling";
/// kstatus's condition: the operator cannot make progress without a change (a permanent error;
/// present only while that is so; with [`OperatorConfig::kstatus`](crate::OperatorConfig::kstatus)).
pub const STALLED: &str = "Stalled";

/// The kstatus conditions, kept only when the operator is configured for them (otherwise a
/// step's own `Reconciling` or `Stalled` is left alone).
const KSTATUS: [&str; 2] = [RECONCILING, STALLED];

/// The kstatus conventions are on; `permanent`: the run failed with an error retrying will not
/// fix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kstatus {
    pub(crate) permanent: bool,
}

/// The part of a status the runtime maintains. Embed it in your status struct with
/// `#[serde(flatten)]` and derive `staircase::StepStatus` on that struct (which gives the
/// resource [`HasStepStatus`]), or use it as the whole status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// The generation the operator last ran against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Waiting` and `Failed` (and `Paused` while the object is paused,
    /// `Fighting` while a step fights another field manager), plus any conditions of your own
    /// (kept as they are).
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
///
/// Implemented for every resource whose status type embeds one ([`LendsStepStatus`]): a custom
/// resource with `#[kube(status = "FooStatus")]` whose `FooStatus` derives `staircase::StepStatus`,
/// or with `status = "StepStatus"` itself. Implement it by hand for a resource whose status is
/// found another way.
pub trait HasStepStatus {
    /// The current step status, `None` when the object has no status yet.
    fn step_status(&self) -> Option<&StepStatus>;
}

impl<K> HasStepStatus for K
where
    K: kube::core::object::HasStatus,
    K::Status: LendsStepStatus,
{
    fn step_status(&self) -> Option<&StepStatus> {
        self.status().map(LendsStepStatus::step_status)
    }
}

/// A status type that embeds the runtime's [`StepStatus`]; `#[derive(StepStatus)]` implements
/// it. Its resource then has [`HasStepStatus`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not embed a `StepStatus` the runtime can keep",
    label = "this needs the resource's status type to embed a `StepStatus`",
    note = "add `#[derive(staircase::StepStatus)]` to `{Self}`, with a field `#[serde(flatten)] steps: StepStatus`; or use `#[kube(status = \"StepStatus\")]`"
)]
pub trait LendsStepStatus {
    /// The embedded step status.
    fn step_status(&self) -> &StepStatus;
}

impl LendsStepStatus for StepStatus {
    fn step_status(&self) -> &StepStatus {
        self
    }
}

/// One condition as the runtime wants it. Borrowed where it can be: on a converged object the
/// wanted status usually equals the current one, and finding that out should not allocate.
struct Wanted<'a> {
    type_: &'static str,
    status: bool,
    reason: Cow<'a, str>,
    message: Cow<'a, str>,
}

/// Kubernetes requires condition reasons to match `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`;
/// step names are Rust identifiers, so only a leading underscore or digit needs a prefix.
pub(crate) fn reason(s: &str) -> Cow<'_, str> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let starts_alpha = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if starts_alpha && s.chars().all(valid_char) {
        return Cow::Borrowed(s);
    }
    let cleaned: String = s
        .chars()
        .map(|c| if valid_char(c) { c } else { '_' })
        .collect();
    match cleaned.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => Cow::Owned(cleaned),
        _ => Cow::Owned(format!("Step{cleaned}")),
    }
}

/// A condition present only while it applies, by type.
type Extra<'a> = (&'static str, Option<Wanted<'a>>);

/// The four conditions always kept, then the ones present only while they apply: `Paused` when
/// the run was paused, `Fighting` while the object is in a fight, and with kstatus on,
/// `Reconciling` while the object is not settled and `Stalled` while it failed for good.
fn wanted<'a>(
    end: &'a RunEnd,
    deleting: bool,
    fighting: Option<&Fight>,
    kstatus: Option<Kstatus>,
) -> Option<([Wanted<'a>; 4], Vec<Extra<'a>>)> {
    let w = |type_, status, reason: &'static str, message: Cow<'static, str>| Wanted {
        type_,
        status,
        reason: Cow::Borrowed(reason),
        message,
    };
    let (ready, ready_reason, ready_msg): (bool, &'static str, Cow<'_, str>) = match end {
        RunEnd::Converged => (true, "Converged", "every step is unchanged".into()),
        RunEnd::Done { step, reason } => (true, "Done", format!("{step}: {reason}").into()),
        RunEnd::Modified { step, .. } => {
            (false, "Progressing", format!("{step} made a change").into())
        }
        RunEnd::FinalizerAdded => (false, "Progressing", "finalizer added".into()),
        RunEnd::Waiting { step, reason } => (false, "Waiting", format!("{step}: {reason}").into()),
        RunEnd::Failed { error, .. } => (false, "Failed", error.as_ref().into()),
        RunEnd::Paused { reason, .. } => (false, "Paused", reason.as_ref().into()),
        RunEnd::FinalizerRemoved | RunEnd::SkippedStale | RunEnd::Cancelled { .. } => return None,
    };
    let (ready, ready_reason, ready_msg) = match fighting {
        _ if deleting => (false, "Deleting", ready_msg),
        // Someone watching `Ready` alone learns why the object does not settle.
        Some(f) if !ready => (false, "Fighting", f.to_string().into()),
        _ => (ready, ready_reason, ready_msg),
    };
    let of_step = |type_, step: &'static str, message: &'static str| Wanted {
        type_,
        status: true,
        reason: self::reason(step),
        message: Cow::Borrowed(message),
    };
    let progressing = match end {
        RunEnd::Modified { step, description } => Wanted {
            message: description.as_ref().into(),
            ..of_step(PROGRESSING, step, "")
        },
        RunEnd::FinalizerAdded => w(PROGRESSING, true, "Finalizer", "finalizer added".into()),
        _ => w(PROGRESSING, false, "Idle", "".into()),
    };
    let waiting = match end {
        RunEnd::Waiting { step, reason } => Wanted {
            message: reason.as_ref().into(),
            ..of_step(WAITING, step, "")
        },
        _ => w(WAITING, false, "NotWaiting", "".into()),
    };
    let failed = match end {
        RunEnd::Failed { step, error } => Wanted {
            message: error.as_ref().into(),
            ..of_step(FAILED, step.unwrap_or("Runtime"), "")
        },
        _ => w(FAILED, false, "NoError", "".into()),
    };
    let paused = match end {
        RunEnd::Paused {
            step,
            every_step,
            reason,
        } => Some(Wanted {
            message: reason.as_ref().into(),
            ..of_step(PAUSED, if *every_step { "All" } else { step }, "")
        }),
        _ => None,
    };
    let fighting = fighting.map(|f| Wanted {
        message: f.to_string().into(),
        ..of_step(FIGHTING, f.step, "")
    });
    let mut extras = vec![(PAUSED, paused), (FIGHTING, fighting)];
    if let Some(k) = kstatus {
        // kstatus reads an abnormal-true condition's presence: absent means "no".
        let stalled = match end {
            RunEnd::Failed { step, error } if k.permanent => Some(Wanted {
                message: error.as_ref().into(),
                ..of_step(STALLED, step.unwrap_or("Runtime"), "")
            }),
            _ => None,
        };
        let reconciling = (!ready && stalled.is_none()).then(|| Wanted {
            message: ready_msg.clone(),
            ..w(RECONCILING, true, ready_reason, "".into())
        });
        extras.push((RECONCILING, reconciling));
        extras.push((STALLED, stalled));
    }
    Some((
        [
            Wanted {
                message: ready_msg,
                ..w(READY, ready, ready_reason, "".into())
            },
            progressing,
            waiting,
            failed,
        ],
        extras,
    ))
}

fn status_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// The status to write after a run, or `None` when the current one is already right.
///
/// `echo`: the run acted on the version the runtime's own status write left, so nothing else
/// changed the object since. A condition whose message alone changed is then left as it is:
/// rewriting it would wake the object again, and a message that differs on every run (a
/// countdown, an error carrying a request id) would loop.
///
/// `fighting`: the fight the object is in, for the `Fighting` condition. `kstatus`: keep
/// `Reconciling` and `Stalled` too.
// One caller (the runner) passes what one run found; a struct for it would only be built there.
#[allow(clippy::too_many_arguments)]
pub(crate) fn next_status(
    current: Option<&StepStatus>,
    generation: Option<i64>,
    end: &RunEnd,
    deleting: bool,
    updates: StatusUpdates,
    echo: bool,
    fighting: Option<&Fight>,
    kstatus: Option<Kstatus>,
) -> Option<StepStatus> {
    let (kept, extras) = wanted(end, deleting, fighting, kstatus)?;
    let empty = StepStatus::default();
    let current = current.unwrap_or(&empty);
    let same = |w: &Wanted<'_>| {
        current.condition(w.type_).is_some_and(|c| {
            c.status == status_str(w.status)
                && c.observed_generation == generation
                && (updates == StatusUpdates::Transitions
                    || (c.reason == w.reason && (echo || c.message == w.message)))
        })
    };
    let extras_same = extras.iter().all(|(type_, w)| match w {
        Some(w) => same(w),
        None => current.condition(type_).is_none(),
    });
    if current.observed_generation == generation && extras_same && kept.iter().all(same) {
        return None;
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut conditions: Vec<Condition> = current
        .conditions
        .iter()
        .filter(|c| {
            let t = c.type_.as_str();
            !(OURS.contains(&t) || kstatus.is_some() && KSTATUS.contains(&t))
        })
        .cloned()
        .collect();
    for w in kept
        .into_iter()
        .chain(extras.into_iter().filter_map(|(_, w)| w))
    {
        let status = status_str(w.status);
        let last_transition_time = match current.condition(w.type_) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => now.clone(),
        };
        conditions.push(Condition {
            type_: w.type_.to_string(),
            status: status.to_string(),
            reason: w.reason.into_owned(),
            message: w.message.into_owned(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    in_order(&mut conditions);
    Some(StepStatus {
        observed_generation: generation,
        conditions,
    })
}

/// Puts the conditions in an order that depends on their types alone, never on the history of
/// writes (a crash between two runs must not leave another order than a clean climb): the
/// steps' own conditions first, by type, then the runtime's in the order it writes them.
fn in_order(conditions: &mut [Condition]) {
    // Stable: the runtime's keep their relative order.
    conditions.sort_by(|a, b| {
        let (ra, rb) = (
            is_runtime_condition(&a.type_),
            is_runtime_condition(&b.type_),
        );
        ra.cmp(&rb).then_with(|| match ra {
            true => std::cmp::Ordering::Equal,
            false => a.type_.cmp(&b.type_),
        })
    });
}

/// Whether the runtime keeps conditions of this type (so a step may not set them).
pub(crate) fn is_runtime_condition(type_: &str) -> bool {
    OURS.contains(&type_) || KSTATUS.contains(&type_)
}

/// `proposed` (what [`next_status`] decided, `None` for "nothing to write") with the conditions
/// steps set in this run ([`Context::set_condition`](crate::Context::set_condition)): each
/// replaces the condition of its type, keeping its transition time while its status stays.
/// `None` when neither the runtime's nor the steps' conditions change.
pub(crate) fn with_own_conditions(
    current: Option<&StepStatus>,
    proposed: Option<StepStatus>,
    own: Vec<Condition>,
    generation: Option<i64>,
) -> Option<StepStatus> {
    if own.is_empty() {
        return proposed;
    }
    let changed = proposed.is_some();
    let mut status = match (proposed, current) {
        (Some(s), _) => s,
        (None, Some(c)) => c.clone(),
        // No status yet and none to write: the run ended without one (the object is going).
        (None, None) => return None,
    };
    let mut own_changed = false;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    for mut c in own {
        c.observed_generation = generation;
        let old = status.conditions.iter().position(|o| o.type_ == c.type_);
        let same = old.is_some_and(|i| {
            let o = &status.conditions[i];
            (&o.status, &o.reason, &o.message, o.observed_generation)
                == (&c.status, &c.reason, &c.message, c.observed_generation)
        });
        if same {
            continue;
        }
        own_changed = true;
        c.last_transition_time = match old.map(|i| &status.conditions[i]) {
            Some(o) if o.status == c.status => o.last_transition_time.clone(),
            _ => now.clone(),
        };
        match old {
            Some(i) => status.conditions[i] = c,
            None => status.conditions.push(c),
        }
    }
    in_order(&mut status.conditions);
    (changed || own_changed).then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    // However the writes went, conditions come in one order: the steps' by type, then the
    // runtime's.
    #[test]
    fn conditions_are_ordered_by_type_not_by_history() {
        let cond = |t: &str| Condition {
            type_: t.into(),
            status: "True".into(),
            reason: "R".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        };
        let mut a = vec![cond(READY), cond("Zeta"), cond(PROGRESSING), cond("Alpha")];
        let mut b = vec![cond("Alpha"), cond(READY), cond(PROGRESSING), cond("Zeta")];
        in_order(&mut a);
        in_order(&mut b);
        let types = |v: &[Condition]| v.iter().map(|c| c.type_.clone()).collect::<Vec<_>>();
        assert_eq!(types(&a), ["Alpha", "Zeta", READY, PROGRESSING]);
        assert_eq!(types(&a), types(&b));
    }

    #[test]
    fn a_steps_own_condition_is_written_once_and_kept_beside_the_runtimes() {
        let base = next(None, Some(1), &RunEnd::Converged, false, EVERY, false).unwrap();
        let first = with_own_conditions(
            Some(&base),
            None,
            vec![own("DatabaseReady", "True", "Provisioned")],
            Some(1),
        )
        .expect("a new condition is a change");
        let c = first.condition("DatabaseReady").unwrap();
        assert_eq!(
            (c.status.as_str(), c.observed_generation),
            ("True", Some(1))
        );
        assert!(first.is_ready_at(Some(1)));
        let again = vec![own("DatabaseReady", "True", "Provisioned")];
        assert_eq!(
            with_own_conditions(Some(&first), None, again, Some(1)),
            None
        );
        // A later run of the runtime keeps it (a condition of the user's own).
        let later = next(
            Some(&first),
            Some(2),
            &RunEnd::Converged,
            false,
            EVERY,
            false,
        )
        .unwrap();
        assert_eq!(later.condition("DatabaseReady").unwrap().status, "True");
        let flipped = vec![own("DatabaseReady", "False", "Lost")];
        let f = with_own_conditions(Some(&later), None, flipped, Some(2)).unwrap();
        let c = f.condition("DatabaseReady").unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Lost"));
        assert_ne!(
            c.last_transition_time.0,
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH
        );
        assert_eq!(
            f.conditions
                .iter()
                .filter(|c| c.type_ == "DatabaseReady")
                .count(),
            1
        );
        assert!(is_runtime_condition(READY) && !is_runtime_condition("DatabaseReady"));
    }

    const EVERY: StatusUpdates = StatusUpdates::EveryChange;

    /// `next_status` of an object in no fight.
    fn next(
        current: Option<&StepStatus>,
        generation: Option<i64>,
        end: &RunEnd,
        deleting: bool,
        updates: StatusUpdates,
        echo: bool,
    ) -> Option<StepStatus> {
        next_status(
            current, generation, end, deleting, updates, echo, None, None,
        )
    }

    fn modified(step: &'static str) -> RunEnd {
        RunEnd::Modified {
            step,
            description: format!("{step} changed something").into(),
        }
    }

    #[test]
    fn transitions_skip_a_new_step_name_but_not_a_flip() {
        let t = StatusUpdates::Transitions;
        let first = next(None, Some(1), &modified("a"), false, t, false).expect("first write");
        // Another modification: Progressing is still True, only its reason would change.
        assert_eq!(
            next(Some(&first), Some(1), &modified("b"), false, t, false),
            None
        );
        // ...which the default writes.
        assert!(next(Some(&first), Some(1), &modified("b"), false, EVERY, false).is_some());
        // Converging flips Ready and Progressing.
        let done = next(Some(&first), Some(1), &RunEnd::Converged, false, t, false).unwrap();
        assert!(done.is_ready_at(Some(1)));
        // A new generation is written even when nothing flips.
        assert!(next(Some(&first), Some(2), &modified("c"), false, t, false).is_some());
    }

    #[test]
    fn converged_twice_writes_once() {
        let first =
            next(None, Some(2), &RunEnd::Converged, false, EVERY, false).expect("first write");
        assert!(first.is_ready_at(Some(2)));
        assert_eq!(
            next(
                Some(&first),
                Some(2),
                &RunEnd::Converged,
                false,
                EVERY,
                false
            ),
            None
        );
        // A new generation is observed even when the verdict is the same.
        assert!(
            next(
                Some(&first),
                Some(3),
                &RunEnd::Converged,
                false,
                EVERY,
                false
            )
            .is_some()
        );
    }

    #[test]
    fn progressing_names_the_step() {
        let end = RunEnd::Modified {
            step: "ensure_config",
            description: "created ConfigMap x".into(),
        };
        let s = next(None, Some(1), &end, false, EVERY, false).unwrap();
        let p = s.condition(PROGRESSING).unwrap();
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", "ensure_config")
        );
        assert_eq!(s.condition(READY).unwrap().status, "False");
    }

    #[test]
    fn on_its_own_echo_a_message_alone_is_not_rewritten() {
        let wait = |reason: &str| RunEnd::Waiting {
            step: "schedule",
            reason: reason.to_string().into(),
        };
        let first = next(None, Some(1), &wait("due in 60s"), false, EVERY, false).unwrap();
        let again = |end: &RunEnd, echo| next(Some(&first), Some(1), end, false, EVERY, echo);
        assert!(
            again(&wait("due in 59s"), false).is_some(),
            "a new view: written"
        );
        assert_eq!(again(&wait("due in 59s"), true), None, "its echo: not");
        // Another step, or a flip, is written on the echo too.
        let other = RunEnd::Waiting {
            step: "other",
            reason: "x".into(),
        };
        assert!(again(&other, true).is_some());
        assert!(again(&RunEnd::Converged, true).is_some());
    }

    #[test]
    fn a_pause_is_a_condition_while_it_lasts() {
        let paused = RunEnd::Paused {
            step: "ensure_service",
            every_step: false,
            reason: "paused by staircase.rs/pause-before=ensure_service".into(),
        };
        let s = next(None, Some(1), &paused, false, EVERY, false).unwrap();
        let p = s.condition(PAUSED).unwrap();
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", "ensure_service")
        );
        assert_eq!(s.condition(READY).unwrap().reason, "Paused");
        assert_eq!(next(Some(&s), Some(1), &paused, false, EVERY, false), None);
        let resumed = next(Some(&s), Some(1), &RunEnd::Converged, false, EVERY, false);
        assert_eq!(
            resumed.unwrap().condition(PAUSED),
            None,
            "gone with the pause"
        );
    }

    #[test]
    fn a_fight_is_a_condition_while_it_lasts_whatever_the_run_did() {
        let fight = Fight {
            step: "ensure_config",
            path: "/api/v1/namespaces/d/configmaps/a".into(),
            managers: vec!["intruder".into()],
            rounds: 3,
        };
        let end = modified("ensure_config");
        let s = next_status(None, Some(1), &end, false, EVERY, false, Some(&fight), None).unwrap();
        let c = s.condition(FIGHTING).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "ensure_config")
        );
        assert!(c.message.contains("intruder"), "{}", c.message);
        let ready = s.condition(READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Fighting")
        );
        // The next round names no new count: nothing to rewrite.
        let later = Fight { rounds: 4, ..fight };
        assert_eq!(
            next_status(
                Some(&s),
                Some(1),
                &end,
                false,
                EVERY,
                false,
                Some(&later),
                None
            ),
            None
        );
        let settled = next(Some(&s), Some(1), &RunEnd::Converged, false, EVERY, false).unwrap();
        assert_eq!(settled.condition(FIGHTING), None, "gone once settled");
    }

    #[test]
    fn kstatus_reads_reconciling_and_stalled_by_their_presence() {
        let k = |permanent| Some(Kstatus { permanent });
        let at = |end: &RunEnd, current: Option<&StepStatus>, permanent| {
            next_status(
                current,
                Some(1),
                end,
                false,
                EVERY,
                false,
                None,
                k(permanent),
            )
        };
        let progressing = at(&modified("a"), None, false).unwrap();
        let r = progressing.condition(RECONCILING).unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("True", "Progressing")
        );
        assert_eq!(progressing.condition(STALLED), None);
        let failed = RunEnd::Failed {
            step: Some("a"),
            error: "spec.port: must be positive".into(),
        };
        let stalled = at(&failed, Some(&progressing), true).unwrap();
        assert_eq!(stalled.condition(STALLED).unwrap().reason, "a");
        assert_eq!(
            stalled.condition(RECONCILING),
            None,
            "stalled is not in progress"
        );
        let retrying = at(&failed, Some(&stalled), false).unwrap();
        assert_eq!(retrying.condition(RECONCILING).unwrap().status, "True");
        assert_eq!(retrying.condition(STALLED), None);
        let current = at(&RunEnd::Converged, Some(&retrying), false).unwrap();
        assert!(current.is_ready_at(Some(1)));
        assert_eq!(current.condition(RECONCILING), None);
        assert_eq!(current.condition(STALLED), None);
        assert_eq!(at(&RunEnd::Converged, Some(&current), false), None);
        // Off, a step's own `Reconciling` is left as it is.
        let mut own = current.clone();
        own.conditions.push(Condition {
            type_: RECONCILING.into(),
            status: "True".into(),
            reason: "Mine".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
        });
        let kept = next(Some(&own), Some(2), &RunEnd::Converged, false, EVERY, false).unwrap();
        assert_eq!(kept.condition(RECONCILING).unwrap().reason, "Mine");
    }

    #[test]
    fn reasons_are_valid() {
        assert_eq!(reason("_x"), "Step_x");
        assert_eq!(reason("a-b"), "a_b");
    }
}
