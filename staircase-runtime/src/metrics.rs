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
//! | `staircase_fights_total` | counter | `step` | runs whose modification was a round of a [fight](crate::fight) with another field manager |
//! | `staircase_runs_in_flight` | gauge | | runs executing now |
//! | `staircase_queue_depth` | gauge | | runs executing or due but waiting for a slot (approximate) |
//! | `staircase_objects_not_ready` | gauge | | existing objects whose last run did not converge |
//! | `staircase_events_dropped_total` | counter | | Events not published because of the spam filter |
//! | `staircase_status_write_failures_total` | counter | | status writes the API server refused or that failed |
//! | `staircase_undecodable_objects_total` | counter | | watched objects left out because they do not decode as the resource type |
//! | `staircase_cache_live_reads_total` | counter | `kind`, `reason` | step reads sent to the API server instead of a watch cache: `no_store` (no cache of the kind), `not_synced` (its first list not in yet), `behind` (it had not shown a write of the operator in time) |
//! | `staircase_cache_waits_total` | counter | `kind` | step reads that waited for a watch cache to show one of the operator's writes |
//! | `staircase_cache_pending_marks` | gauge | | writes of the operator's steps its watch caches have not shown yet |
//! | `staircase_shard_slots` | gauge | | with [sharding](crate::shard): hash slots this replica runs |
//! | `staircase_shard_objects` | gauge | | with sharding: cached objects in the slots this replica runs |
//! | `staircase_shard_handoffs_total` | counter | | with sharding: slots this replica gave up to another (it stopped starting runs in them) |
//! | `staircase_shard_gap_seconds` | histogram | | with sharding, on the assigning replica: how long each slot that changed hands had no replica running it |
//!
//! `result` is one of `converged`, `modified`, `waiting`, `done`, `failed`, `finalizer_added`,
//! `finalizer_removed`, `skipped_stale`, `cancelled`, `paused`.
//!
//! Every `staircase_` series also carries the label `controller`, first: the operator's
//! [`OperatorConfig::name`](crate::OperatorConfig::name) (e.g.
//! `staircase_runs_total{controller="foo-operator",result="modified"}`). Several operators in
//! one process can share one registry, and so one `/metrics`, with
//! [`Operator::with_metrics`](crate::Operator::with_metrics); the label tells their series apart.
//! An operator's series appear when it starts running, under the name it runs with (a handle
//! taken before `with_config` named it counts under that later name).
//!
//! Metrics of your own go into the same registry, and so onto the same `/metrics`, with
//! [`Metrics::register`]; they are [`prometheus-client`](https://docs.rs/prometheus-client)
//! metrics (add `prometheus-client = "0.25"` to your dependencies):
//!
//! ```
//! # use staircase_runtime as staircase;
//! use prometheus_client::metrics::counter::Counter;
//!
//! let metrics = staircase::metrics::Metrics::new(); // in an operator: `operator.metrics()`
//! let orders: Counter = Counter::default();
//! metrics.register("shop_orders", "Orders placed with the shop", orders.clone())?;
//! orders.inc(); // e.g. in a step, with the counter kept in the operator's state
//! assert!(metrics.encode().contains("shop_orders_total 1"));
//! # Ok::<(), staircase::metrics::RegisterError>(())
//! ```
//!
//! # Caveats
//! - Operators of the same name on one registry count into the same series; the gauges computed
//!   at scrape time (`staircase_queue_depth`, `staircase_objects_not_ready`,
//!   `staircase_cache_pending_marks`) then follow the one that started last. Name each operator.
//! - The queue depth is approximate because kube-runtime does not expose its scheduler: runs the
//!   operator itself requeued and whose time has come but which have not started (all slots
//!   busy) are counted, plus the runs in flight; runs triggered by watch events are not counted
//!   until they start.

use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::OutcomeKind;
use crate::run::{RunEnd, RunReport};

/// The operator a series belongs to: the first label of every staircase series.
type Name = Arc<str>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    controller: Name,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    controller: Name,
    step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepOutcomeLabel {
    controller: Name,
    step: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LiveReadLabel {
    controller: Name,
    kind: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    controller: Name,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViolationLabel {
    controller: Name,
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

/// Counts, at scrape time, the writes the watch caches have not shown yet.
type Marks = Arc<dyn Fn() -> usize + Send + Sync>;

/// Counts, at scrape time, the slots this replica runs and the cached objects in them.
type ShardCounts = Arc<dyn Fn() -> (usize, usize) + Send + Sync>;

/// Every staircase metric, each a family whose first label is `controller`.
struct Families {
    runs: Family<ResultLabel, Counter>,
    run_duration: Timings<ResultLabel>,
    step_duration: Timings<StepLabel>,
    step_outcomes: Family<StepOutcomeLabel, Counter>,
    run_writes: Family<ControllerLabel, Histogram, fn() -> Histogram>,
    violations: Family<ViolationLabel, Counter>,
    fights: Family<StepLabel, Counter>,
    in_flight: Family<ControllerLabel, Gauge>,
    queue_depth: Family<ControllerLabel, Gauge>,
    not_ready: Family<ControllerLabel, Gauge>,
    events_dropped: Family<ControllerLabel, Counter>,
    status_write_failures: Family<ControllerLabel, Counter>,
    undecodable: Family<ControllerLabel, Counter>,
    live_reads: Family<LiveReadLabel, Counter>,
    cache_waits: Family<KindLabel, Counter>,
    pending_marks: Family<ControllerLabel, Gauge>,
    shard_slots: Family<ControllerLabel, Gauge>,
    shard_objects: Family<ControllerLabel, Gauge>,
    shard_handoffs: Family<ControllerLabel, Counter>,
    shard_gap: Timings<ControllerLabel>,
}

fn writes() -> Histogram {
    Histogram::new([0.0, 1.0, 2.0, 3.0, 5.0, 10.0])
}

impl Families {
    /// The families, registered in `registry` (the `staircase_` sub-registry).
    fn register(registry: &mut Registry) -> Families {
        let f = Families {
            runs: Family::default(),
            run_duration: Family::new_with_constructor(seconds),
            step_duration: Family::new_with_constructor(seconds),
            step_outcomes: Family::default(),
            run_writes: Family::new_with_constructor(writes),
            violations: Family::default(),
            fights: Family::default(),
            in_flight: Family::default(),
            queue_depth: Family::default(),
            not_ready: Family::default(),
            events_dropped: Family::default(),
            status_write_failures: Family::default(),
            undecodable: Family::default(),
            live_reads: Family::default(),
            cache_waits: Family::default(),
            pending_marks: Family::default(),
            shard_slots: Family::default(),
            shard_objects: Family::default(),
            shard_handoffs: Family::default(),
            shard_gap: Family::new_with_constructor(seconds),
        };
        registry.register(
            "shard_slots",
            "Hash slots this replica runs (sharding)",
            f.shard_slots.clone(),
        );
        registry.register(
            "shard_objects",
            "Cached objects in the slots this replica runs (sharding)",
            f.shard_objects.clone(),
        );
        registry.register(
            "shard_handoffs",
            "Slots this replica gave up to another (sharding)",
            f.shard_handoffs.clone(),
        );
        registry.register(
            "shard_gap_seconds",
            "How long a slot that changed hands had no replica running it, as the assigning \
             replica measures it (sharding)",
            f.shard_gap.clone(),
        );
        registry.register(
            "cache_pending_marks",
            "Writes of the operator's steps its watch caches have not shown yet",
            f.pending_marks.clone(),
        );
        registry.register(
            "cache_live_reads",
            "Step reads sent to the API server instead of a watch cache",
            f.live_reads.clone(),
        );
        registry.register(
            "cache_waits",
            "Step reads that waited for a watch cache to show the operator's own write",
            f.cache_waits.clone(),
        );
        registry.register(
            "undecodable_objects",
            "Watched objects left out because they do not decode",
            f.undecodable.clone(),
        );
        registry.register(
            "status_write_failures",
            "Failed status writes",
            f.status_write_failures.clone(),
        );
        registry.register("runs", "Finished runs by how they ended", f.runs.clone());
        registry.register(
            "run_duration_seconds",
            "Run duration by how it ended",
            f.run_duration.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Step duration",
            f.step_duration.clone(),
        );
        registry.register("step_outcomes", "Step verdicts", f.step_outcomes.clone());
        registry.register(
            "run_writes",
            "Successful step writes per run",
            f.run_writes.clone(),
        );
        registry.register(
            "rule_violations",
            "Broken one-modification rules",
            f.violations.clone(),
        );
        registry.register(
            "fights",
            "Runs whose modification was a round of a fight with another field manager",
            f.fights.clone(),
        );
        registry.register("runs_in_flight", "Runs executing now", f.in_flight.clone());
        registry.register(
            "queue_depth",
            "Runs executing or due and waiting for a slot (approximate)",
            f.queue_depth.clone(),
        );
        registry.register(
            "objects_not_ready",
            "Objects whose last run did not converge",
            f.not_ready.clone(),
        );
        registry.register(
            "events_dropped",
            "Events held back by the spam filter",
            f.events_dropped.clone(),
        );
        f
    }
}

struct Inner {
    /// The root: staircase's own metrics in a `staircase_` sub-registry, the user's beside it.
    registry: Mutex<Registry>,
    /// The names users registered (duplicates are refused).
    user_names: Mutex<Vec<String>>,
    families: Arc<Families>,
    /// The gauges of each operator counting into this registry, computed at scrape time.
    scrapes: Mutex<Vec<Arc<Scrape>>>,
}

/// One operator's gauges that are computed when `/metrics` is read.
struct Scrape {
    name: Name,
    in_flight: Gauge,
    queue_depth: Gauge,
    not_ready: Gauge,
    pending_marks: Gauge,
    shard_slots: Gauge,
    shard_objects: Gauge,
    counts: Mutex<Option<Counts>>,
    marks: Mutex<Option<Marks>>,
    shard: Mutex<Option<ShardCounts>>,
}

impl Scrape {
    fn update(&self) {
        let counts = lock(&self.counts).clone().map_or((0, 0), |c| c());
        self.queue_depth.set(self.in_flight.get() + counts.0 as i64);
        self.not_ready.set(counts.1 as i64);
        let marks = lock(&self.marks).clone();
        self.pending_marks.set(marks.map_or(0, |m| m()) as i64);
        if let Some(shard) = lock(&self.shard).clone() {
            let (slots, objects) = shard();
            self.shard_slots.set(slots as i64);
            self.shard_objects.set(objects as i64);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A metric of your own could not be registered ([`Metrics::register`]): the message says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterError(String);

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RegisterError {}

/// The operator's metrics: a cheaply cloneable handle to one Prometheus registry. Every
/// [`Operator`](crate::Operator) has one ([`Operator::metrics`](crate::Operator::metrics)), or
/// shares one with other operators of the process
/// ([`Operator::with_metrics`](crate::Operator::with_metrics)); the endpoint of
/// [`server`](crate::server) serves it, [`Metrics::encode`] renders it.
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
    /// A fresh registry with every staircase metric registered (and no series yet: an
    /// operator's appear when it starts).
    pub fn new() -> Self {
        let mut root = Registry::default();
        let families = Families::register(root.sub_registry_with_prefix("staircase"));
        Metrics(Arc::new(Inner {
            registry: Mutex::new(root),
            user_names: Mutex::default(),
            families: Arc::new(families),
            scrapes: Mutex::default(),
        }))
    }

    /// Everything in the Prometheus text format (what `GET /metrics` answers).
    pub fn encode(&self) -> String {
        for s in lock(&self.0.scrapes).iter() {
            s.update();
        }
        let mut out = String::new();
        let registry = lock(&self.0.registry);
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Adds a metric of your own (any `prometheus_client` metric: a `Counter`, a `Gauge`, a
    /// `Histogram`, a `Family` of them) to the registry `/metrics` serves, under `name` as given
    /// (with the type's suffix, e.g. `_total` for a counter). Keep a clone of the metric to
    /// update it. Refused: a name already registered, one that is not a valid Prometheus name,
    /// and names starting with `staircase_`, which are the runtime's.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) -> Result<(), RegisterError> {
        let valid = name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
        let why = if name.is_empty() || !valid {
            Some("is not a valid metric name ([a-zA-Z_][a-zA-Z0-9_]*)")
        } else if name.starts_with("staircase_") || name == "staircase" {
            Some("is in the runtime's `staircase_` namespace")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(RegisterError(format!("metric name {name:?} {why}")));
        }
        let mut names = lock(&self.0.user_names);
        if names.iter().any(|n| n == name) {
            return Err(RegisterError(format!(
                "metric name {name:?} is registered already"
            )));
        }
        names.push(name.to_string());
        lock(&self.0.registry).register(name, help, metric);
        Ok(())
    }

    /// The series of the operator named `name` (its `controller` label), created with their
    /// zero values. Operators of one name share them, so give each operator its own.
    pub(crate) fn controller(&self, name: &str) -> Controller {
        let f = &self.0.families;
        let label = ControllerLabel {
            controller: name.into(),
        };
        let mut scrapes = lock(&self.0.scrapes);
        let scrape = match scrapes.iter().find(|s| &*s.name == name) {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(Scrape {
                    name: label.controller.clone(),
                    in_flight: f.in_flight.get_or_create(&label).clone(),
                    queue_depth: f.queue_depth.get_or_create(&label).clone(),
                    not_ready: f.not_ready.get_or_create(&label).clone(),
                    pending_marks: f.pending_marks.get_or_create(&label).clone(),
                    shard_slots: f.shard_slots.get_or_create(&label).clone(),
                    shard_objects: f.shard_objects.get_or_create(&label).clone(),
                    counts: Mutex::default(),
                    marks: Mutex::default(),
                    shard: Mutex::default(),
                });
                scrapes.push(s.clone());
                s
            }
        };
        Controller {
            families: f.clone(),
            run_writes: f.run_writes.get_or_create(&label).clone(),
            events_dropped: f.events_dropped.get_or_create(&label).clone(),
            status_write_failures: f.status_write_failures.get_or_create(&label).clone(),
            undecodable: f.undecodable.get_or_create(&label).clone(),
            name: label.controller,
            scrape,
        }
    }
}

/// One operator's view of [`Metrics`]: its series, each labelled `controller="<its name>"`.
#[derive(Clone)]
pub(crate) struct Controller {
    name: Name,
    families: Arc<Families>,
    run_writes: Histogram,
    events_dropped: Counter,
    status_write_failures: Counter,
    undecodable: Counter,
    scrape: Arc<Scrape>,
}

impl Controller {
    pub(crate) fn set_counts(&self, counts: Counts) {
        *lock(&self.scrape.counts) = Some(counts);
    }

    pub(crate) fn set_pending_marks(&self, marks: Marks) {
        *lock(&self.scrape.marks) = Some(marks);
    }

    pub(crate) fn set_shard_counts(&self, counts: ShardCounts) {
        *lock(&self.scrape.shard) = Some(counts);
    }

    pub(crate) fn shard_handoffs(&self, n: u64) {
        let label = ControllerLabel {
            controller: self.name.clone(),
        };
        self.families.shard_handoffs.get_or_create(&label).inc_by(n);
    }

    pub(crate) fn shard_gap(&self, gap: std::time::Duration) {
        let label = ControllerLabel {
            controller: self.name.clone(),
        };
        self.families
            .shard_gap
            .get_or_create(&label)
            .observe(gap.as_secs_f64());
    }

    pub(crate) fn run_started(&self) {
        self.scrape.in_flight.inc();
    }

    pub(crate) fn run_finished(&self) {
        self.scrape.in_flight.dec();
    }

    pub(crate) fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    pub(crate) fn undecodable_object(&self) {
        self.undecodable.inc();
    }

    pub(crate) fn cache_live_read(&self, kind: &str, reason: &'static str) {
        let label = LiveReadLabel {
            controller: self.name.clone(),
            kind: kind.to_string(),
            reason,
        };
        self.families.live_reads.get_or_create(&label).inc();
    }

    pub(crate) fn cache_wait(&self, kind: &str) {
        let label = KindLabel {
            controller: self.name.clone(),
            kind: kind.to_string(),
        };
        self.families.cache_waits.get_or_create(&label).inc();
    }

    /// The observer the operator registers for every run's report, with a handle kept for
    /// each series of `steps` (the names of the main and cleanup steps).
    pub(crate) fn run_observer(&self, steps: Vec<&'static str>) -> RunObserver {
        RunObserver {
            metrics: self.clone(),
            results: Default::default(),
            steps: steps
                .into_iter()
                .map(|name| StepSeries {
                    name,
                    duration: OnceLock::new(),
                    outcomes: Default::default(),
                })
                .collect(),
        }
    }

    fn step_label(&self, step: &'static str) -> StepLabel {
        StepLabel {
            controller: self.name.clone(),
            step,
        }
    }

    fn step_duration(&self, step: &'static str) -> Histogram {
        let label = self.step_label(step);
        self.families.step_duration.get_or_create(&label).clone()
    }

    fn step_outcome(&self, step: &'static str, outcome: OutcomeKind) -> Counter {
        let label = StepOutcomeLabel {
            controller: self.name.clone(),
            step,
            outcome: outcome.as_str(),
        };
        self.families.step_outcomes.get_or_create(&label).clone()
    }
}

/// Feeds run reports into [`Metrics`], holding on to the handle of every series it has fed once.
///
/// A family (`runs{result}`, `step_outcomes{step, outcome}`, …) hashes its labels and takes a
/// lock on every lookup. Looked up per run and per step, that was about 15 K instructions per
/// converged object in the bench (five steps, six runs), a tenth of the staircase's cost over a
/// hand-written controller. A handle shares its series with the registry, so what `/metrics`
/// shows is the same; a series still appears only once it has a sample.
pub(crate) struct RunObserver {
    metrics: Controller,
    results: [OnceLock<(Counter, Histogram)>; RESULTS],
    steps: Vec<StepSeries>,
}

/// The series of one step.
struct StepSeries {
    name: &'static str,
    duration: OnceLock<Histogram>,
    /// Indexed by `OutcomeKind as usize`.
    outcomes: [OnceLock<Counter>; OUTCOMES],
}

/// How many `OutcomeKind`s there are.
const OUTCOMES: usize = OutcomeKind::Error as usize + 1;

impl RunObserver {
    /// Records one run's report.
    pub(crate) fn observe(&self, r: &RunReport) {
        let m = &self.metrics;
        let result = result_index(&r.end);
        let (runs, duration) = self.results[result].get_or_init(|| {
            let label = ResultLabel {
                controller: m.name.clone(),
                result: r.end.result(),
            };
            (
                m.families.runs.get_or_create(&label).clone(),
                m.families.run_duration.get_or_create(&label).clone(),
            )
        });
        runs.inc();
        duration.observe(r.duration.as_secs_f64());
        if r.status_error.is_some() {
            m.status_write_failures.inc();
        }
        m.run_writes.observe(r.step_writes() as f64);
        if let Some(f) = &r.fight {
            m.families.fights.get_or_create(&m.step_label(f.step)).inc();
        }
        for s in &r.steps {
            let seconds = s.duration.as_secs_f64();
            // Names are the steps' own `&'static str`s: most compare equal by address.
            match self
                .steps
                .iter()
                .find(|c| std::ptr::eq(c.name, s.step) || c.name == s.step)
            {
                Some(c) => {
                    let d = c.duration.get_or_init(|| m.step_duration(c.name));
                    d.observe(seconds);
                    c.outcomes[s.outcome as usize]
                        .get_or_init(|| m.step_outcome(c.name, s.outcome))
                        .inc();
                }
                None => {
                    m.step_duration(s.step).observe(seconds);
                    m.step_outcome(s.step, s.outcome).inc();
                }
            }
            if let Some(v) = &s.violation {
                m.families
                    .violations
                    .get_or_create(&ViolationLabel {
                        controller: m.name.clone(),
                        step: v.step.clone(),
                        rule: format!("{:?}", v.rule),
                    })
                    .inc();
            }
        }
    }
}

/// How many values the `result` label has ([`RunEnd::result`]), in the order of [`result_index`].
const RESULTS: usize = 10;

fn result_index(end: &RunEnd) -> usize {
    match end {
        RunEnd::Converged => 0,
        RunEnd::Modified { .. } => 1,
        RunEnd::Waiting { .. } => 2,
        RunEnd::Done { .. } => 3,
        RunEnd::Failed { .. } => 4,
        RunEnd::FinalizerAdded => 5,
        RunEnd::FinalizerRemoved => 6,
        RunEnd::SkippedStale => 7,
        RunEnd::Cancelled { .. } => 8,
        RunEnd::Paused { .. } => 9,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use super::*;
    use crate::NextRun;
    use crate::run::StepRecord;

    fn step(step: &'static str, outcome: OutcomeKind) -> StepRecord {
        StepRecord {
            step,
            outcome,
            detail: Cow::Borrowed(""),
            recheck_after: None,
            duration: Duration::from_millis(3),
            writes: Vec::new(),
            violation: None,
        }
    }

    fn report(steps: Vec<StepRecord>, end: RunEnd) -> RunReport {
        RunReport {
            run_id: 1,
            object: "ns/a".into(),
            api_version: "demo/v1".into(),
            kind: "Foo".into(),
            uid: None,
            generation: Some(1),
            observed_resource_version: None,
            deleting: false,
            steps,
            end,
            status_written: false,
            status_error: None,
            status_failures: 0,
            fight: None,
            next: NextRun::OnChange,
            duration: Duration::from_millis(7),
        }
    }

    #[test]
    fn user_metrics_are_served_beside_the_runtimes() {
        use prometheus_client::metrics::gauge::Gauge;
        let metrics = Metrics::new();
        let g: Gauge = Gauge::default();
        metrics
            .register("queue_items", "Items waiting", g.clone())
            .unwrap();
        g.set(4);
        let _operator = metrics.controller("shop");
        let text = metrics.encode();
        assert_eq!(sample(&text, "queue_items"), Some("4"), "{text}");
        assert_eq!(
            sample(&text, r#"staircase_cache_pending_marks{controller="shop"}"#),
            Some("0"),
            "{text}"
        );
        let again = metrics.register("queue_items", "", Gauge::<i64>::default());
        assert!(
            again
                .unwrap_err()
                .to_string()
                .contains("registered already")
        );
        let ours = metrics.register("staircase_runs", "", Gauge::<i64>::default());
        assert!(ours.unwrap_err().to_string().contains("runtime's"));
        let bad = metrics.register("9 lives", "", Gauge::<i64>::default());
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("not a valid metric name")
        );
        assert_eq!(metrics.encode().matches("# EOF").count(), 1);
    }

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    // The kept handles feed the registry's own series: counts add up across reports, a step the
    // observer was not told about is still counted, and a series without samples stays absent.
    #[test]
    fn kept_handles_count_into_the_registry() {
        let metrics = Metrics::new();
        let observer = metrics
            .controller("shop")
            .run_observer(vec!["check_a", "check_b"]);
        // A name equal to a known step's but at another address must find the same series.
        let same_name: &'static str = String::from("check_a").leak();
        for _ in 0..2 {
            observer.observe(&report(
                vec![
                    step(same_name, OutcomeKind::Unchanged),
                    step("check_b", OutcomeKind::Modified),
                ],
                RunEnd::Modified {
                    step: "check_b",
                    description: Cow::Borrowed("set b"),
                },
            ));
        }
        let mut fought = report(
            vec![step("check_b", OutcomeKind::Modified)],
            RunEnd::Modified {
                step: "check_b",
                description: Cow::Borrowed("set b"),
            },
        );
        fought.fight = Some(crate::fight::Fight {
            step: "check_b",
            path: "/api/v1/namespaces/ns/configmaps/b".into(),
            managers: vec!["intruder".into()],
            rounds: 3,
        });
        observer.observe(&fought);
        let mut status_failed = report(
            vec![step("elsewhere", OutcomeKind::Error)],
            RunEnd::Converged,
        );
        status_failed.status_error = Some("refused".into());
        observer.observe(&status_failed);
        // Another operator on the same registry counts into series of its own.
        let other = metrics.controller("other").run_observer(vec!["check_a"]);
        other.observe(&report(
            vec![step("check_a", OutcomeKind::Unchanged)],
            RunEnd::Converged,
        ));

        let text = metrics.encode();
        for (series, expected) in [
            (
                r#"staircase_runs_total{controller="shop",result="modified"}"#,
                Some("3"),
            ),
            (
                r#"staircase_fights_total{controller="shop",step="check_b"}"#,
                Some("1"),
            ),
            (
                r#"staircase_fights_total{controller="shop",step="check_a"}"#,
                None,
            ),
            (
                r#"staircase_runs_total{controller="shop",result="converged"}"#,
                Some("1"),
            ),
            (
                r#"staircase_runs_total{controller="other",result="converged"}"#,
                Some("1"),
            ),
            (
                r#"staircase_runs_total{controller="other",result="modified"}"#,
                None,
            ),
            (
                r#"staircase_runs_total{controller="shop",result="failed"}"#,
                None,
            ),
            (
                r#"staircase_status_write_failures_total{controller="shop"}"#,
                Some("1"),
            ),
            (
                r#"staircase_status_write_failures_total{controller="other"}"#,
                Some("0"),
            ),
            (
                r#"staircase_step_outcomes_total{controller="other",step="check_a",outcome="unchanged"}"#,
                Some("1"),
            ),
            (
                r#"staircase_step_outcomes_total{controller="shop",step="check_a",outcome="unchanged"}"#,
                Some("2"),
            ),
            (
                r#"staircase_step_outcomes_total{controller="shop",step="check_b",outcome="modified"}"#,
                Some("3"),
            ),
            (
                r#"staircase_step_outcomes_total{controller="shop",step="elsewhere",outcome="error"}"#,
                Some("1"),
            ),
            (
                r#"staircase_step_duration_seconds_count{controller="shop",step="check_a"}"#,
                Some("2"),
            ),
            (
                r#"staircase_run_duration_seconds_count{controller="shop",result="modified"}"#,
                Some("3"),
            ),
        ] {
            assert_eq!(sample(&text, series), expected, "{series}");
        }
    }
}
