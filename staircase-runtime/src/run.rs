//! What one run did, step by step: recorded while it runs, reported when it ends.

use std::borrow::Cow;
use std::time::Duration;

use crate::OutcomeKind;
use crate::error::RuleViolation;
use crate::fight::Fight;
use crate::pause::Pause;
use crate::writes::Write;

/// What the runtime does when a step breaks the one-modification rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RulePolicy {
    /// The run fails with an error naming the step and its writes (the default).
    #[default]
    Fail,
    /// The violation is logged and reported, and the run goes on as the step said.
    Warn,
}

impl RulePolicy {
    pub(crate) fn fails_run(self) -> bool {
        self == RulePolicy::Fail
    }
}

/// What one step did in one run.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// The step's name.
    pub step: &'static str,
    /// Its verdict.
    pub outcome: OutcomeKind,
    /// The modification's description, the wait or done reason, or the error message (what the
    /// step gave, moved here: a `&'static str` stays borrowed).
    pub detail: Cow<'static, str>,
    /// For a wait: when to look again.
    pub recheck_after: Option<Duration>,
    /// How long the step took.
    pub duration: Duration,
    /// Every write it attempted, including failed ones.
    pub writes: Vec<Write>,
    /// The rule it broke, if any.
    pub violation: Option<RuleViolation>,
}

/// Collects step records during a run.
#[derive(Debug)]
pub struct RunRecorder {
    records: Vec<StepRecord>,
    policy: RulePolicy,
    /// The newest resourceVersion the runtime itself (finalizer, status) wrote to the object.
    runtime_rv: Option<String>,
    /// The step running now, for the report of a run cut off in the middle of it.
    current: Option<&'static str>,
    /// The object's pause with its reason, if it has one, and the step the run stopped before.
    pause: Option<(Pause, Cow<'static, str>)>,
    paused_before: Option<&'static str>,
}

impl RunRecorder {
    /// `steps`: the most records the run can make (one allocation, never a regrowth).
    pub(crate) fn new(policy: RulePolicy, steps: usize) -> Self {
        RunRecorder {
            records: Vec::with_capacity(steps),
            policy,
            runtime_rv: None,
            current: None,
            pause: None,
            paused_before: None,
        }
    }

    /// The object asks runs to pause (see [`crate::pause`]), for this reason.
    pub(crate) fn set_pause(&mut self, pause: Pause, reason: Cow<'static, str>) {
        self.pause = Some((pause, reason));
    }

    /// Whether `step` may start; if not, the run stops before it.
    pub(crate) fn may_start(&mut self, step: &'static str) -> bool {
        if self.pause.as_ref().is_some_and(|(p, _)| p.stops(step)) {
            self.paused_before = Some(step);
            return false;
        }
        true
    }

    /// How the run ended if a pause stopped it.
    pub(crate) fn paused(&self) -> Option<RunEnd> {
        let step = self.paused_before?;
        let reason = self.pause.as_ref()?.1.clone();
        let every_step = matches!(self.pause.as_ref()?.0, Pause::All { .. });
        Some(RunEnd::Paused {
            step,
            every_step,
            reason,
        })
    }

    /// A step starts.
    pub(crate) fn begin(&mut self, step: &'static str) {
        self.current = Some(step);
    }

    pub(crate) fn push(&mut self, r: StepRecord) {
        self.current = None;
        self.records.push(r);
    }

    /// The step that was running when the run was cut off.
    pub(crate) fn current(&self) -> Option<&'static str> {
        self.current
    }

    pub(crate) fn policy(&self) -> RulePolicy {
        self.policy
    }

    /// Remembers the resourceVersion a write of the runtime's own (after the steps) produced.
    pub(crate) fn note_runtime_write(&mut self, rv: Option<String>) {
        if rv.is_some() {
            self.runtime_rv = rv;
        }
    }

    /// The newest resourceVersion this run wrote to the reconciled object itself (`is_own` tells
    /// its path, or its status's, from any other), so the next run can refuse to act on an older
    /// view. The runtime's own writes come after every step's.
    pub(crate) fn primary_rv(&self, is_own: impl Fn(&str) -> bool) -> Option<&str> {
        if self.runtime_rv.is_some() {
            return self.runtime_rv.as_deref();
        }
        self.records
            .iter()
            .flat_map(|r| &r.writes)
            .filter(|w| w.succeeded())
            .filter_map(|w| Some((w.path.as_str(), w.resource_version.as_deref()?)))
            .rfind(|(path, _)| is_own(path))
            .map(|(_, rv)| rv)
    }

    pub(crate) fn records(&self) -> &[StepRecord] {
        &self.records
    }

    pub(crate) fn take_records(&mut self) -> Vec<StepRecord> {
        std::mem::take(&mut self.records)
    }
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every step was unchanged: the object is converged.
    Converged,
    /// A step made its modification.
    Modified {
        /// The step.
        step: &'static str,
        /// What it changed.
        description: Cow<'static, str>,
    },
    /// A step waits.
    Waiting {
        /// The step.
        step: &'static str,
        /// Why.
        reason: Cow<'static, str>,
    },
    /// A step ended the run early.
    Done {
        /// The step.
        step: &'static str,
        /// Why.
        reason: Cow<'static, str>,
    },
    /// A step failed or broke a rule.
    Failed {
        /// The step, when the error came from one.
        step: Option<&'static str>,
        /// The error message.
        error: Cow<'static, str>,
    },
    /// The object is paused by its [`pause-before`](crate::pause) annotation: the run stopped
    /// before this step (the first one, for `all`).
    Paused {
        /// The step the run stopped before.
        step: &'static str,
        /// The pause is before every step (`all`, or a value that names no step), not before
        /// this one in particular.
        every_step: bool,
        /// What the annotation asks, in words (names the steps when its value names none).
        reason: Cow<'static, str>,
    },
    /// The runtime added its finalizer (the run's one modification).
    FinalizerAdded,
    /// All cleanup steps were unchanged; the finalizer was removed.
    FinalizerRemoved,
    /// The run was skipped because the watch cache was older than this operator's own last write.
    SkippedStale,
    /// The run was cut off before it ended: this replica lost its leadership, or shutdown timed
    /// out. The step that was running may or may not have made its change; the next run (here,
    /// or on the replica that leads now) finds out from the world. Reported to
    /// [`on_run`](crate::Operator::on_run) observers and counted in the metrics; no status write
    /// and no Event follow it (this replica may no longer act).
    Cancelled {
        /// The step that was running, if one was.
        step: Option<&'static str>,
    },
}

impl RunEnd {
    /// How the run ended, as the `result` of the run's span and of the metrics.
    pub(crate) fn result(&self) -> &'static str {
        match self {
            RunEnd::Converged => "converged",
            RunEnd::Modified { .. } => "modified",
            RunEnd::Waiting { .. } => "waiting",
            RunEnd::Done { .. } => "done",
            RunEnd::Failed { .. } => "failed",
            RunEnd::FinalizerAdded => "finalizer_added",
            RunEnd::FinalizerRemoved => "finalizer_removed",
            RunEnd::SkippedStale => "skipped_stale",
            RunEnd::Cancelled { .. } => "cancelled",
            RunEnd::Paused { .. } => "paused",
        }
    }
}

/// Everything one run did, handed to [`on_run`](crate::Operator::on_run) observers.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Process-unique run number.
    pub run_id: u64,
    /// `namespace/name` (or `name` for cluster-scoped objects).
    pub object: String,
    /// The object's `apiVersion` (with [`kind`](Self::kind) and [`uid`](Self::uid), what
    /// [`object_ref`](Self::object_ref) needs).
    pub api_version: Cow<'static, str>,
    /// The object's kind.
    pub kind: Cow<'static, str>,
    /// The object's uid.
    pub uid: Option<String>,
    /// The object's generation at the start of the run.
    pub generation: Option<i64>,
    /// The resourceVersion of the view the run acted on (after read-your-own-writes and any
    /// re-read): every decision of the run was made on this version of the object.
    pub observed_resource_version: Option<String>,
    /// Whether cleanup steps ran (the object is being deleted).
    pub deleting: bool,
    /// Each step that ran, in order.
    pub steps: Vec<StepRecord>,
    /// Why the run ended.
    pub end: RunEnd,
    /// Whether the runtime wrote the object's status after the run.
    pub status_written: bool,
    /// The status needed writing but the write failed: the API server's message. The object
    /// runs again (see `next`, backing off like failed runs) so the status catches up even when
    /// nothing else changes.
    pub status_error: Option<String>,
    /// Failed status writes in a row, this run's included (0 when the status was written or
    /// was right already). At [`STATUS_FAILURES_REPORTED`](crate::status::STATUS_FAILURES_REPORTED)
    /// the failure is logged as a warning and published as a Warning Event, once.
    pub status_failures: u32,
    /// The run's modification was a round of a [fight](crate::fight): another field manager
    /// keeps undoing what the step writes. `next` then backs off.
    pub fight: Option<Fight>,
    /// When the object runs again (sooner if it changes).
    pub next: crate::NextRun,
    /// How long the run took.
    pub duration: Duration,
}

impl RunReport {
    /// A full reference to the object, e.g. to publish Events about it. Built on demand: most
    /// runs (converged ones) are never reported anywhere that needs it.
    pub fn object_ref(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        let (namespace, name) = match self.object.split_once('/') {
            Some((ns, name)) => (Some(ns.to_string()), name),
            None => (None, self.object.as_str()),
        };
        k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(self.api_version.to_string()),
            kind: Some(self.kind.to_string()),
            name: Some(name.to_string()),
            namespace,
            uid: self.uid.clone(),
            resource_version: self.observed_resource_version.clone(),
            field_path: None,
        }
    }

    /// Successful writes made by steps (not the runtime's status writes).
    pub fn step_writes(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.writes)
            .filter(|w| w.succeeded() && !w.is_event())
            .count()
    }
}

impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "run {:>3} {}", self.run_id, self.object)?;
        if let Some(g) = self.generation {
            write!(f, " (gen {g})")?;
        }
        match &self.end {
            RunEnd::Converged => write!(f, ": converged, {} steps unchanged", self.steps.len()),
            RunEnd::Modified { step, description } => write!(f, ": {step} modified: {description}"),
            RunEnd::Waiting { step, reason } => write!(f, ": {step} waits: {reason}"),
            RunEnd::Done { step, reason } => write!(f, ": {step} done: {reason}"),
            RunEnd::Failed { step, error } => match step {
                Some(s) => write!(f, ": {s} failed: {error}"),
                None => write!(f, ": failed: {error}"),
            },
            RunEnd::Paused { step, reason, .. } => {
                write!(f, ": paused before {step}: {reason}")
            }
            RunEnd::FinalizerAdded => write!(f, ": finalizer added"),
            RunEnd::FinalizerRemoved => write!(f, ": cleanup finished, finalizer removed"),
            RunEnd::SkippedStale => {
                write!(f, ": skipped, waiting for the cache to see our last write")
            }
            RunEnd::Cancelled { step: Some(s) } => write!(f, ": cancelled while {s} ran"),
            RunEnd::Cancelled { step: None } => write!(f, ": cancelled"),
        }?;
        if let Some(fight) = &self.fight {
            write!(
                f,
                " (round {} of a fight with {} over {})",
                fight.rounds,
                fight.managers.join(", "),
                fight.path
            )?;
        }
        Ok(())
    }
}
