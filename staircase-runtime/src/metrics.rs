//! Prometheus metrics of runs and steps (feature `metrics`), in the text exposition format.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `staircase_runs_total` | counter | `result` | finished runs by how they ended |
//! | `staircase_run_duration_seconds` | histogram | `result` | how long runs take |
//! | `staircase_step_duration_seconds` | histogram | `step` | how long each step takes |
//! | `staircase_step_outcomes_total` | counter | `step`, `outcome` | unchanged/modified/wait/done/error per step |
//! | `staircase_run_writes` | histogram | | successful step writes per run (0 or 1 when the rule holds) |
//! | `staircase_rule_violations_total` | counter | `step`, `rule` | broken one-modification rules |
//! | `staircase_runs_in_flight` | gauge | | runs executing now |
//! | `staircase_queue_depth` | gauge | | runs executing or due but waiting for a slot (approximate) |
//! | `staircase_objects_not_ready` | gauge | | existing objects whose last run did not converge |
//! | `staircase_events_dropped_total` | counter | | Events not published because of the spam filter |
//!
//! `result` is one of `converged`, `modified`, `waiting`, `done`, `failed`, `finalizer_added`,
//! `finalizer_removed`, `skipped_stale`.
//!
//! The queue depth is approximate because kube-runtime does not expose its scheduler: runs the
//! operator itself requeued and whose time has come but which have not started (all slots busy)
//! are counted, plus the runs in flight; runs triggered by watch events are not counted until they
//! start.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::run::{RunEnd, RunReport};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepOutcomeLabel {
    step: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViolationLabel {
    step: String,
    rule: String,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds() -> Histogram {
    // 1 ms … 16 s: steps are API round trips; slower ones are what the histogram should show.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Counts, at scrape time, the objects whose requeue is due but has not started and the objects
/// whose last run was not ready (kept by the runner, which remembers every object anyway).
type Counts = Arc<dyn Fn() -> (usize, usize) + Send + Sync>;

struct Inner {
    registry: Registry,
    runs: Family<ResultLabel, Counter>,
    run_duration: Timings<ResultLabel>,
    step_duration: Timings<StepLabel>,
    step_outcomes: Family<StepOutcomeLabel, Counter>,
    run_writes: Histogram,
    violations: Family<ViolationLabel, Counter>,
    in_flight: Gauge,
    queue_depth: Gauge,
    not_ready: Gauge,
    events_dropped: Counter,
    counts: Mutex<Option<Counts>>,
}

/// The operator's metrics: a cheaply cloneable handle to one Prometheus registry. Every
/// [`Operator`](crate::Operator) has one ([`Operator::metrics`](crate::Operator::metrics)); the
/// endpoint of [`server`](crate::server) serves it, [`Metrics::encode`] renders it.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A fresh registry with every staircase metric registered (and no samples yet).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("staircase");
        let runs = Family::<ResultLabel, Counter>::default();
        let run_duration: Timings<ResultLabel> = Family::new_with_constructor(seconds);
        let step_duration: Timings<StepLabel> = Family::new_with_constructor(seconds);
        let step_outcomes = Family::<StepOutcomeLabel, Counter>::default();
        let run_writes = Histogram::new([0.0, 1.0, 2.0, 3.0, 5.0, 10.0]);
        let violations = Family::<ViolationLabel, Counter>::default();
        let (in_flight, queue_depth, not_ready) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        let events_dropped = Counter::default();
        registry.register("runs", "Finished runs by how they ended", runs.clone());
        registry.register(
            "run_duration_seconds",
            "Run duration by how it ended",
            run_duration.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Step duration",
            step_duration.clone(),
        );
        registry.register("step_outcomes", "Step verdicts", step_outcomes.clone());
        registry.register(
            "run_writes",
            "Successful step writes per run",
            run_writes.clone(),
        );
        registry.register(
            "rule_violations",
            "Broken one-modification rules",
            violations.clone(),
        );
        registry.register("runs_in_flight", "Runs executing now", in_flight.clone());
        registry.register(
            "queue_depth",
            "Runs executing or due and waiting for a slot (approximate)",
            queue_depth.clone(),
        );
        registry.register(
            "objects_not_ready",
            "Objects whose last run did not converge",
            not_ready.clone(),
        );
        registry.register(
            "events_dropped",
            "Events held back by the spam filter",
            events_dropped.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            runs,
            run_duration,
            step_duration,
            step_outcomes,
            run_writes,
            violations,
            in_flight,
            queue_depth,
            not_ready,
            events_dropped,
            counts: Mutex::default(),
        }))
    }

    /// Everything in the Prometheus text format (what `GET /metrics` answers).
    pub fn encode(&self) -> String {
        let counts = self.counts_fn().map_or((0, 0), |c| c());
        self.0
            .queue_depth
            .set(self.0.in_flight.get() + counts.0 as i64);
        self.0.not_ready.set(counts.1 as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0.registry)
            .expect("writing to a String cannot fail");
        out
    }

    fn counts_fn(&self) -> Option<Counts> {
        self.0
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_counts(&self, counts: Counts) {
        *self.0.counts.lock().unwrap_or_else(|e| e.into_inner()) = Some(counts);
    }

    pub(crate) fn run_started(&self) {
        self.0.in_flight.inc();
    }

    pub(crate) fn run_finished(&self) {
        self.0.in_flight.dec();
    }

    pub(crate) fn event_dropped(&self) {
        self.0.events_dropped.inc();
    }

    /// Records one run's report (registered as a run observer by the operator).
    pub(crate) fn observe(&self, r: &RunReport) {
        let result = result_label(&r.end);
        self.0.runs.get_or_create(&ResultLabel { result }).inc();
        self.0
            .run_duration
            .get_or_create(&ResultLabel { result })
            .observe(r.duration.as_secs_f64());
        self.0.run_writes.observe(r.step_writes() as f64);
        for s in &r.steps {
            self.0
                .step_duration
                .get_or_create(&StepLabel { step: s.step })
                .observe(s.duration.as_secs_f64());
            self.0
                .step_outcomes
                .get_or_create(&StepOutcomeLabel {
                    step: s.step,
                    outcome: s.outcome.as_str(),
                })
                .inc();
            if let Some(v) = &s.violation {
                self.0
                    .violations
                    .get_or_create(&ViolationLabel {
                        step: v.step.clone(),
                        rule: format!("{:?}", v.rule),
                    })
                    .inc();
            }
        }
    }
}

fn result_label(end: &RunEnd) -> &'static str {
    match end {
        RunEnd::Converged => "converged",
        RunEnd::Modified { .. } => "modified",
        RunEnd::Waiting { .. } => "waiting",
        RunEnd::Done { .. } => "done",
        RunEnd::Failed { .. } => "failed",
        RunEnd::FinalizerAdded => "finalizer_added",
        RunEnd::FinalizerRemoved => "finalizer_removed",
        RunEnd::SkippedStale => "skipped_stale",
    }
}
