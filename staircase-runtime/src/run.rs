//! What one run did, step by step: recorded while it runs, reported when it ends.

use std::time::Duration;

use crate::OutcomeKind;
use crate::error::RuleViolation;
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
    /// The modification's description, the wait or done reason, or the error message.
    pub detail: String,
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
    primary_path: String,
    primary_rv: Option<String>,
}

impl RunRecorder {
    pub(crate) fn new(policy: RulePolicy, primary_path: String) -> Self {
        RunRecorder {
            records: Vec::new(),
            policy,
            primary_path,
            primary_rv: None,
        }
    }

    pub(crate) fn push(&mut self, r: StepRecord) {
        self.records.push(r);
    }

    pub(crate) fn policy(&self) -> RulePolicy {
        self.policy
    }

    /// Remembers the newest resourceVersion this run wrote to the reconciled object itself, so the
    /// next run can refuse to act on an older view of it.
    pub(crate) fn note_writes(&mut self, writes: &[Write]) {
        for w in writes {
            let on_primary = w.path == self.primary_path
                || w.path.strip_prefix(self.primary_path.as_str()) == Some("/status");
            if on_primary && let Some(rv) = &w.resource_version {
                self.primary_rv = Some(rv.clone());
            }
        }
    }

    pub(crate) fn primary_rv(&self) -> Option<&str> {
        self.primary_rv.as_deref()
    }

    pub(crate) fn records(&self) -> &[StepRecord] {
        &self.records
    }

    pub(crate) fn into_records(self) -> Vec<StepRecord> {
        self.records
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
        description: String,
    },
    /// A step waits.
    Waiting {
        /// The step.
        step: &'static str,
        /// Why.
        reason: String,
    },
    /// A step ended the run early.
    Done {
        /// The step.
        step: &'static str,
        /// Why.
        reason: String,
    },
    /// A step failed or broke a rule.
    Failed {
        /// The step, when the error came from one.
        step: Option<&'static str>,
        /// The error message.
        error: String,
    },
    /// The runtime added its finalizer (the run's one modification).
    FinalizerAdded,
    /// All cleanup steps were unchanged; the finalizer was removed.
    FinalizerRemoved,
    /// The run was skipped because the watch cache was older than this operator's own last write.
    SkippedStale,
}

/// Everything one run did, handed to [`on_run`](crate::Operator::on_run) observers.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Process-unique run number.
    pub run_id: u64,
    /// `namespace/name` (or `name` for cluster-scoped objects).
    pub object: String,
    /// A full reference to the object (kind, apiVersion, uid…), e.g. to publish Events about it.
    pub object_ref: k8s_openapi::api::core::v1::ObjectReference,
    /// The object's generation at the start of the run.
    pub generation: Option<i64>,
    /// Whether cleanup steps ran (the object is being deleted).
    pub deleting: bool,
    /// Each step that ran, in order.
    pub steps: Vec<StepRecord>,
    /// Why the run ended.
    pub end: RunEnd,
    /// Whether the runtime wrote the object's status after the run.
    pub status_written: bool,
    /// The status needed writing but the write failed; the object runs again soon (see `next`)
    /// so the status catches up even when nothing else changes.
    pub status_failed: bool,
    /// When the object runs again (sooner if it changes).
    pub next: crate::NextRun,
    /// How long the run took.
    pub duration: Duration,
}

impl RunReport {
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
            RunEnd::FinalizerAdded => write!(f, ": finalizer added"),
            RunEnd::FinalizerRemoved => write!(f, ": cleanup finished, finalizer removed"),
            RunEnd::SkippedStale => {
                write!(f, ": skipped, waiting for the cache to see our last write")
            }
        }
    }
}
