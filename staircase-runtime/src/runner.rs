//! One run over one object: pick the chain (steps or cleanup), climb it, write status, decide
//! when to run again. `Operator` calls this for every object the controller schedules.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::chain::Stairs;
use crate::context::ApiScope;
use crate::fight::{self, Fight, Seen};
use crate::memory::{self, Memory, ObjectKey, StatusWrite, View, rv_number};
use crate::own_path::OwnPath;
use crate::pause::Pause;
use crate::replay::Recorder;
use crate::replay::tape::{self, taped};
use crate::run::{RunEnd, RunRecorder, RunReport};
use crate::spans;
use crate::staircase::Staircase;
use crate::status::STATUS_FAILURES_REPORTED;
use crate::step_status::{Kstatus, StepStatus, next_status, with_own_conditions};
use crate::writes::OperatorClient;
use crate::{Context, OperatorConfig, OutcomeKind, RunInfo, finalizer};

/// Reads the runtime-kept part of an object's status.
pub(crate) type StatusReader<K> = fn(&K) -> Option<&StepStatus>;

/// Called with every run's report.
pub(crate) type Observer = Arc<dyn Fn(&RunReport) + Send + Sync>;

/// When the object should run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextRun {
    /// After this delay (or sooner, on a change, unless the runtime holds the object: a fight's
    /// backoff, the window after an external call of unknown outcome).
    After(Duration),
    /// Only when the object changes.
    OnChange,
}

/// What a runner's runs are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The operator's own runs.
    Live,
    /// Explaining: every write a dry run (see [`crate::explain`]).
    Explain,
    /// Replaying a recorded run: every request answered from the recording (see
    /// [`crate::replay`]).
    Replay,
}

impl Mode {
    /// The name a run that only looks goes by (`None` for a live run).
    fn dry(self) -> Option<&'static str> {
        match self {
            Mode::Live => None,
            Mode::Explain => Some("explain"),
            Mode::Replay => Some("replay"),
        }
    }
}

/// Records a live operator's runs (see [`crate::replay`]).
pub(crate) struct RunRecording<K> {
    pub(crate) recorder: Recorder,
    /// The object view as JSON (the resource is `Serialize` where recording is turned on).
    pub(crate) view: fn(&K) -> Option<serde_json::Value>,
}

/// Everything runs share.
pub(crate) struct Runner<K, S, M, C> {
    pub(crate) staircase: Arc<Staircase<K, S, M, C>>,
    pub(crate) client: kube::Client,
    pub(crate) counting: Arc<kube::Client>,
    pub(crate) state: Arc<S>,
    pub(crate) config: OperatorConfig,
    pub(crate) status: Option<StatusReader<K>>,
    pub(crate) observers: Vec<Observer>,
    pub(crate) memory: Memory,
    /// The watch caches steps read through (`Context::get`, the children step).
    pub(crate) cache: Arc<Cache>,
    run_ids: AtomicU64,
    /// The most steps a run can climb (main or cleanup): the capacity of its record.
    steps: usize,
    /// Every step name, main and cleanup: what a pause annotation may name.
    step_names: Vec<&'static str>,
    /// How a write's path is recognised as the object's own (read-your-own-writes); found by
    /// the first run, where `K` is known to be a `Resource`.
    own_path: OnceLock<OwnPath>,
    /// Live, or only explaining or replaying: then nothing is logged as done or reported.
    mode: Mode,
    /// Records every run, when set (live runs only).
    pub(crate) recording: Option<RunRecording<K>>,
    /// A replayed run's `ctx.run().retries`: the recorded run's.
    retries: Option<u32>,
}

impl<K, S, M: Stairs<K, S>, C: Stairs<K, S>> Runner<K, S, M, C> {
    pub(crate) fn new(
        staircase: Staircase<K, S, M, C>,
        clients: OperatorClient,
        state: Arc<S>,
        config: OperatorConfig,
    ) -> Self {
        let mut names = Vec::new();
        staircase.main.step_names(&mut names);
        let mut steps = names.len();
        if let Some(c) = &staircase.cleanup {
            let main = names.len();
            c.step_names(&mut names);
            steps = steps.max(names.len() - main);
        }
        Runner {
            steps,
            step_names: names,
            staircase: Arc::new(staircase),
            counting: Arc::new(clients.counting),
            client: clients.client,
            state,
            config,
            status: None,
            observers: Vec::new(),
            memory: Memory::default(),
            cache: Arc::default(),
            run_ids: AtomicU64::new(1),
            own_path: OnceLock::new(),
            mode: Mode::Live,
            recording: None,
            retries: None,
        }
    }

    /// A runner that explains: this one's staircase, state and configuration, every write sent
    /// as a dry run, nothing remembered from this runner's runs, no status, no observers, and
    /// no pause (the explanation reports it).
    pub(crate) fn explainer(&self) -> Self {
        self.detached(OperatorClient::dry_run(&self.client), Mode::Explain)
    }

    /// A runner that replays a recorded run through `clients` (which answer from the
    /// recording): as [`explainer`](Self::explainer), its run numbered `run_id` and its context
    /// saying `retries`, as the recorded run's did.
    pub(crate) fn replayer(&self, clients: OperatorClient, run_id: u64, retries: u32) -> Self {
        let mut r = self.detached(clients, Mode::Replay);
        r.run_ids = AtomicU64::new(run_id);
        r.retries = Some(retries);
        r
    }

    /// This runner's staircase, state and configuration over `clients`, sharing nothing else.
    fn detached(&self, clients: OperatorClient, mode: Mode) -> Self {
        Runner {
            staircase: self.staircase.clone(),
            client: clients.client,
            counting: Arc::new(clients.counting),
            state: self.state.clone(),
            config: self.config.clone(),
            status: None,
            observers: Vec::new(),
            memory: Memory::default(),
            cache: Arc::default(),
            run_ids: AtomicU64::new(1),
            steps: self.steps,
            step_names: self.step_names.clone(),
            own_path: OnceLock::new(),
            mode,
            recording: None,
            retries: None,
        }
    }

    /// What the object's pause annotation asks, in words, if it has one.
    pub(crate) fn pause_of(&self, meta: &kube::api::ObjectMeta) -> Option<String> {
        let p = Pause::of(meta, &self.step_names)?;
        let before = match &p {
            Pause::Before(step) => format!("before {step}"),
            Pause::All { .. } => "before every step".to_string(),
        };
        Some(format!("{before}: {}", p.reason(&self.step_names)))
    }
}

impl<K, S, M, C> Runner<K, S, M, C>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::Scope: ApiScope,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    fn api_for(&self, obj: &K) -> Api<K> {
        <K::Scope as ApiScope>::api(self.client.clone(), obj.meta().namespace.as_deref())
    }

    fn key(obj: &K) -> ObjectKey<'_> {
        ObjectKey::of(obj.meta())
    }

    /// Runs the staircase once for `obj`. Returns the report (`None` when there was nothing to run,
    /// e.g. a deleted object without our finalizer) and when to run again.
    pub(crate) async fn run(&self, obj: Arc<K>) -> (Option<RunReport>, NextRun) {
        // The key borrows from this handle to the object, which outlives the run.
        let handle = obj.clone();
        let key = Self::key(&handle);
        let run_id = self.run_ids.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "run",
            object = %key,
            generation = obj.meta().generation,
            run_id,
            result = tracing::field::Empty,
        );
        let started = Instant::now();
        // Built in place: a named local would be kept beside the future it is moved into.
        let ((report, next), tape) = match &self.recording {
            Some(_) if self.mode == Mode::Live => {
                let (ran, tape) = rare(taped(spans::in_span(
                    &span,
                    self.climb_once(key, obj, run_id, started),
                )))
                .await;
                (ran, Some(tape))
            }
            _ => (
                spans::in_span(&span, self.climb_once(key, obj, run_id, started)).await,
                None,
            ),
        };
        if let Some(r) = &report {
            spans::record(&span, "result", r.end.result());
        }
        let ready = report.as_ref().and_then(|r| match r.end {
            RunEnd::Converged | RunEnd::Done { .. } => Some(true),
            RunEnd::SkippedStale => None,
            _ => Some(false),
        });
        self.memory.finish(key, next, ready);
        let report = report.map(|mut r| {
            r.duration = started.elapsed();
            r
        });
        if let (Some(r), Some(tape), Some(rec)) = (&report, tape, &self.recording) {
            // Written before the observers hear of the run; a failure is the recorder's to
            // report, never the run's.
            let steps = if r.deleting {
                self.staircase.cleanup_step_names()
            } else {
                self.staircase.step_names()
            };
            let recording = crate::replay::Recording::of(&self.config.name, r, steps, tape);
            rare(rec.recorder.write(recording)).await;
        }
        if let Some(r) = report.as_ref().filter(|_| self.mode == Mode::Live) {
            // A change to the world is news for whoever reads the logs; a run that found
            // nothing to do is not.
            let _in_run = (!span.is_disabled()).then(|| span.enter());
            match r.end {
                RunEnd::Modified { .. } | RunEnd::FinalizerAdded | RunEnd::FinalizerRemoved => {
                    tracing::info!("{r}")
                }
                _ => tracing::debug!("{r}"),
            }
            for o in &self.observers {
                o(r);
            }
        }
        (report, next)
    }

    /// One run's body: the view to act on, then the climb, reported as cancelled if it is cut
    /// off.
    async fn climb_once(
        &self,
        key: ObjectKey<'_>,
        obj: Arc<K>,
        run_id: u64,
        started: Instant,
    ) -> (Option<RunReport>, NextRun) {
        let (obj, view) = match self.fresh_view(key, obj).await {
            Ok(Some(fresh)) => fresh,
            Ok(None) => return (None, NextRun::OnChange),
            Err(skip) => return skip,
        };
        let mut cut = CutOff {
            runner: self,
            key,
            run_id,
            obj: obj.clone(),
            started,
            rec: RunRecorder::new(self.config.rule_policy, self.steps),
            armed: true,
        };
        let ran = self.run_fresh(key, run_id, obj, view, &mut cut.rec).await;
        cut.armed = false;
        ran
    }

    /// Refuses to act on a view older than our own last write (read-your-own-writes): first waits
    /// for the watch to catch up, then, past the grace period, reads the object directly. A view
    /// of an object whose finalizer the runtime removed is never acted on.
    async fn fresh_view(
        &self,
        key: ObjectKey<'_>,
        obj: Arc<K>,
    ) -> Result<Option<(Arc<K>, View)>, (Option<RunReport>, NextRun)> {
        let seen = rv_number(obj.meta().resource_version.as_deref());
        let view = self.memory.start(key, seen);
        if view.gone {
            return Ok(None);
        }
        if let Some(left) = self.memory.held(key) {
            // An external call of an earlier run may still land: a lookup now could miss it.
            return Err((None, NextRun::After(left)));
        }
        let meta = obj.meta();
        if meta.deletion_timestamp.is_none()
            && let Some(left) = self.memory.fights.held(key, meta.generation)
        {
            // A fight backs off; a new spec (or a deletion) runs at once.
            return Err((None, NextRun::After(left)));
        }
        if view.reread {
            return match self.read_object(&obj).await {
                Ok(fresh) => Ok(fresh.map(|o| (Arc::new(o), view))),
                Err(e) => {
                    tracing::warn!("re-reading the object failed: {e}");
                    Ok(Some((obj, view)))
                }
            };
        }
        let Some(stale_for) = view.stale_for else {
            return Ok(Some((obj, view)));
        };
        let grace = self.config.read_your_writes_grace;
        if stale_for < grace {
            // Our own write's watch event is on its way and will trigger the next run.
            return Err((None, NextRun::After(grace - stale_for)));
        }
        match self.read_object(&obj).await {
            Ok(Some(fresh)) => Ok(Some((Arc::new(fresh), view))),
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!("reading the object after a stale view failed: {e}");
                Err((None, NextRun::After(grace)))
            }
        }
    }

    async fn run_fresh(
        &self,
        key: ObjectKey<'_>,
        run_id: u64,
        obj: Arc<K>,
        view: View,
        rec: &mut RunRecorder,
    ) -> (Option<RunReport>, NextRun) {
        let failures = self.retries.unwrap_or(view.failures);
        if let Some(rec) = &self.recording
            && tape::active()
        {
            tape::note_view((rec.view)(&obj), failures);
        }
        let meta = obj.meta();
        let deleting = meta.deletion_timestamp.is_some();
        let generation = meta.generation;
        let ctx = Context::shared(
            self.counting.clone(),
            self.state.clone(),
            meta.namespace.clone(),
            RunInfo {
                run_id,
                generation,
                retries: failures,
                deleting,
            },
            Some(self.cache.clone()),
        )
        .dry(self.mode.dry());
        let finalizer = self.staircase.finalizer_name();
        // An explanation says what the run would do once resumed; it reports the pause itself.
        let pause = Pause::of(meta, &self.step_names).filter(|_| self.mode != Mode::Explain);
        let pause_all = matches!(pause, Some(Pause::All { .. }));
        if let Some(p) = pause {
            let reason = p.reason(&self.step_names);
            rec.set_pause(p, reason);
        }
        // Read before the steps run, so before the write that may make the row a fight: after
        // it, the other manager's entry is gone when the step took back every field it owned.
        let probe = match self.fight_armed(key, generation, deleting) {
            Some(path) => Some(rare(self.managed_fields(path)).await),
            None => None,
        };

        let (end, permanent) = match (&self.staircase.cleanup, deleting) {
            (Some(cleanup), true) => {
                let f = finalizer.expect("cleanup has a finalizer");
                if !finalizer::has(&*obj, f) {
                    return (None, NextRun::OnChange);
                }
                match cleanup.climb(&obj, &ctx, rec).await {
                    Ok(Some(_)) => {
                        match rare(finalizer::remove(&self.api_for(&obj), &obj, f)).await {
                            Ok(_) => (RunEnd::FinalizerRemoved, false),
                            Err(e) => (self.failed(None, &e.into()), false),
                        }
                    }
                    Ok(None) => (self.end_from(rec), false),
                    Err(e) => (self.failed(last_step(rec), &e), e.is_permanent()),
                }
            }
            (None, true) => return (None, NextRun::OnChange),
            (Some(_), false)
                if !pause_all
                    && !finalizer::has(&*obj, finalizer.expect("cleanup has a finalizer")) =>
            {
                match rare(finalizer::add(
                    &self.api_for(&obj),
                    &obj,
                    finalizer.expect("finalizer"),
                ))
                .await
                {
                    Ok(updated) => {
                        rec.note_runtime_write(updated.meta().resource_version.clone());
                        (RunEnd::FinalizerAdded, false)
                    }
                    Err(e) => (self.failed(None, &e.into()), false),
                }
            }
            _ => match self.staircase.main.climb(&obj, &ctx, rec).await {
                Ok(Some(_)) => (RunEnd::Converged, false),
                Ok(None) => (self.end_from(rec), false),
                Err(e) => (self.failed(last_step(rec), &e), e.is_permanent()),
            },
        };

        let fight = self.check_fight(key, &end, generation, rec, probe);
        let end = self.check_runaway(key, end, generation, fight.is_some());
        // Set before the status write, whose echo must find the object held too.
        let fight_delay = fight.as_ref().map(|f| {
            let round = f.rounds.saturating_sub(self.config.fight_after) + 1;
            let delay = self.config.backoff.delay(round, false);
            self.memory.fights.hold(key, Instant::now() + delay);
            delay
        });
        let unknown_external = rec
            .records()
            .iter()
            .flat_map(|s| &s.writes)
            .any(|w| w.method == "EXTERNAL" && w.status == 0);
        if unknown_external {
            let window = self.config.external_call_window;
            self.memory.hold(key, Instant::now() + window);
        }
        // Decided here, so only a run that writes its status pays for boxing the request.
        let seen_rv = rv_number(obj.meta().resource_version.as_deref());
        // On the echo of its own status write the runtime does not rewrite a message alone: a
        // message that changes on every run (a countdown, an error with a request id) would
        // otherwise wake the object with each write, hundreds of times a second.
        let echo = view.echo_rv.is_some() && view.echo_rv == seen_rv;
        let own = ctx.take_conditions();
        let new_status = self.status.and_then(|read| {
            let cfg = self.config.status_updates;
            let fighting = self.memory.fights.current(key);
            let runtime = next_status(
                read(&obj),
                generation,
                &end,
                deleting,
                cfg,
                echo,
                fighting.as_ref(),
                self.config.kstatus.then_some(Kstatus { permanent }),
            );
            with_own_conditions(read(&obj), runtime, own, generation)
        });
        let status = match new_status {
            Some(s) => Some(rare(self.write_status(&obj, s, rec)).await),
            None => None,
        };
        let status_written = matches!(status, Some(Ok(())));
        let own_path = *self.own_path.get_or_init(OwnPath::detect::<K>);
        let written_rv = rec.primary_rv(|path| own_path.is_own::<K>(path, key.namespace, key.name));
        let wrote_primary = written_rv.is_some();
        let wrote_rv = rv_number(written_rv);
        let failed = matches!(end, RunEnd::Failed { .. });
        let counts = self.memory.record(
            key,
            memory::Outcome {
                seen_rv,
                wrote_rv,
                settled: matches!(
                    end,
                    RunEnd::Converged
                        | RunEnd::Done { .. }
                        | RunEnd::Waiting { .. }
                        | RunEnd::Paused { .. }
                ),
                failed,
                gone: matches!(end, RunEnd::FinalizerRemoved),
                status: match &status {
                    None => StatusWrite::NotNeeded,
                    Some(Ok(())) => StatusWrite::Written,
                    Some(Err(_)) => StatusWrite::Failed,
                },
            },
        );
        let mut next = self.next_run(&end, rec, wrote_primary, counts.failures, permanent);
        if let Some(delay) = fight_delay {
            // Not at once, as after another modification: the object is held until then.
            next = NextRun::After(delay);
        }
        let status_error = status.and_then(Result::err);
        if let Some(e) = &status_error {
            // The status is wrong and no event will come to fix it (a settled object would wait
            // for its resync): try again, no step depends on it but people read it. Backing off
            // like a failed run, so a status the server keeps refusing (a schema that rejects
            // the conditions, a deleted object) does not hammer it.
            let n = counts.status_failures;
            if n == STATUS_FAILURES_REPORTED {
                tracing::warn!(failures = n, "status writes keep failing: {e}");
            }
            let retry = self.config.backoff.delay(n, false);
            next = match next {
                NextRun::After(d) => NextRun::After(d.min(retry)),
                NextRun::OnChange => NextRun::After(retry),
            };
        }
        let report = RunReport {
            run_id,
            api_version: K::api_version(&()),
            kind: K::kind(&()),
            uid: obj.meta().uid.clone(),
            object: key.joined(),
            generation,
            observed_resource_version: obj.meta().resource_version.clone(),
            deleting,
            steps: rec.take_records(),
            end,
            status_written,
            status_failures: counts.status_failures,
            status_error,
            fight,
            next,
            duration: Duration::ZERO,
        };
        (Some(report), next)
    }

    /// A step that modifies on every run while the generation stays the same never finds what
    /// it made (587 ConfigMaps in 3 s, for one such step): past
    /// [`runaway_after`](OperatorConfig::runaway_after) runs in a row its runs end as failures,
    /// which the status, the Events, the metrics and the backoff then treat as such. A run that
    /// found a fight (`fighting`) is not one: another manager undoes what the step makes.
    fn check_runaway(
        &self,
        key: ObjectKey<'_>,
        end: RunEnd,
        generation: Option<i64>,
        fighting: bool,
    ) -> RunEnd {
        let step = match &end {
            RunEnd::Modified { step, .. } => Some(*step),
            _ => None,
        };
        let runs = self.memory.streak(key, step.map(|s| (s, generation)));
        let limit = self.config.runaway_after;
        match step {
            Some(step) if runs > limit && !fighting => {
                let error = format!(
                    "runaway step: `{step}` made a modification in each of the last {runs} runs \
                     while the object's generation stayed the same (does it find what it made?); \
                     backing off"
                );
                if runs == limit + 1 {
                    tracing::warn!(step, runs, "{error}");
                }
                RunEnd::Failed {
                    step: Some(step),
                    error: error.into(),
                }
            }
            _ => end,
        }
    }

    /// The path whose `managedFields` a run should read before its steps run: the object its
    /// step wrote in the last `fight_after - 1` modifying runs in a row (see [`fight`]).
    fn fight_armed(
        &self,
        key: ObjectKey<'_>,
        generation: Option<i64>,
        deleting: bool,
    ) -> Option<String> {
        let after = self.config.fight_after;
        if after == 0 || self.mode != Mode::Live || deleting {
            return None;
        }
        let window = self.config.fight_window();
        self.memory.fights.armed(key, generation, after - 1, window)
    }

    /// The object at `path`'s `managedFields` as the API server has them now (`None` in the
    /// probe when the read failed: no fight is judged on this run).
    async fn managed_fields(&self, path: String) -> Box<Probe> {
        #[derive(serde::Deserialize)]
        struct Meta {
            metadata: kube::api::ObjectMeta,
        }
        let entries = match http::Request::get(path.as_str()).body(Vec::new()) {
            Ok(req) => match self.client.request::<Meta>(req).await {
                Ok(m) => Some(m.metadata.managed_fields.unwrap_or_default()),
                Err(e) => {
                    tracing::debug!(
                        path,
                        "reading managedFields for fight detection failed: {e}"
                    );
                    None
                }
            },
            Err(_) => None,
        };
        Box::new(Probe { path, entries })
    }

    /// Follows the rows of writes by one step to one object (see [`fight`]); returns the fight
    /// this run's modification was a round of, if it was one.
    fn check_fight(
        &self,
        key: ObjectKey<'_>,
        end: &RunEnd,
        generation: Option<i64>,
        rec: &RunRecorder,
        probe: Option<Box<Probe>>,
    ) -> Option<Fight> {
        let after = self.config.fight_after;
        if after == 0 || self.mode != Mode::Live {
            return None;
        }
        let window = self.config.fight_window();
        let tracks = &self.memory.fights;
        let (step, write) = match end {
            RunEnd::Modified { step, .. } => match fight::target(rec.records(), step) {
                Some(w) => (*step, w),
                None => {
                    tracks.record(key, generation, Seen::OtherModification, window);
                    return None;
                }
            },
            RunEnd::Converged
            | RunEnd::Done { .. }
            | RunEnd::Waiting { .. }
            | RunEnd::Paused { .. } => {
                tracks.record(key, generation, Seen::Settled, window);
                return None;
            }
            RunEnd::FinalizerRemoved => {
                tracks.record(key, generation, Seen::OtherModification, window);
                return None;
            }
            _ => {
                tracks.record(key, generation, Seen::Other, window);
                return None;
            }
        };
        let path = write.path.as_str();
        let rounds = tracks.record(key, generation, Seen::Wrote { step, path }, window);
        if rounds < after {
            return None;
        }
        // Not read (or not readable) before this write: not judged, the row goes on as it was.
        let entries = probe.filter(|p| p.path == path)?.entries?;
        let ours = write.field_manager.as_deref();
        let managers = fight::others(&entries, ours, fight::subresource(path));
        if managers.is_empty() {
            // Nobody else wrote it: not a fight (a runaway, maybe, which is told apart above).
            tracks.set_fight(key, None);
            return None;
        }
        let fight = Fight {
            step,
            path: write.path.clone(),
            managers,
            rounds,
        };
        if !tracks.set_fight(key, Some(fight.clone())) {
            tracing::warn!(step, rounds, "{fight}");
        }
        Some(fight)
    }

    fn end_from(&self, rec: &RunRecorder) -> RunEnd {
        if let Some(paused) = rec.paused() {
            return paused;
        }
        // `climb` stopped: the last record is the step that stopped it.
        let records = rec.records();
        let last = records.last().expect("a stopped run has a step");
        match last.outcome {
            OutcomeKind::Modified => RunEnd::Modified {
                step: last.step,
                description: last.detail.clone(),
            },
            OutcomeKind::Wait => RunEnd::Waiting {
                step: last.step,
                reason: last.detail.clone(),
            },
            OutcomeKind::Done => RunEnd::Done {
                step: last.step,
                reason: last.detail.clone(),
            },
            OutcomeKind::Unchanged | OutcomeKind::Error => RunEnd::Failed {
                step: Some(last.step),
                error: last.detail.clone(),
            },
        }
    }

    fn failed(&self, step: Option<&'static str>, e: &crate::Error) -> RunEnd {
        tracing::warn!(step, "run failed: {e}");
        RunEnd::Failed {
            step,
            error: e.to_string().into(),
        }
    }

    fn next_run(
        &self,
        end: &RunEnd,
        rec: &RunRecorder,
        wrote_primary: bool,
        failures: u32,
        permanent: bool,
    ) -> NextRun {
        let cfg = &self.config;
        match end {
            // After a write to the object itself its watch event triggers the next run; the timer
            // is only a fallback for a lost event.
            RunEnd::Modified { .. } | RunEnd::FinalizerAdded if wrote_primary => {
                NextRun::After(cfg.read_your_writes_grace)
            }
            RunEnd::Modified { .. } | RunEnd::FinalizerAdded => NextRun::After(Duration::ZERO),
            RunEnd::Waiting { .. } => NextRun::After(
                rec.records()
                    .last()
                    .and_then(|r| r.recheck_after)
                    .unwrap_or(cfg.resync),
            ),
            // Removing the annotation is a change, which runs the object at once.
            RunEnd::Converged | RunEnd::Done { .. } | RunEnd::Paused { .. } => {
                NextRun::After(cfg.resync)
            }
            RunEnd::Failed { .. } => NextRun::After(cfg.backoff.delay(failures, permanent)),
            RunEnd::FinalizerRemoved => NextRun::OnChange,
            RunEnd::SkippedStale => NextRun::After(cfg.read_your_writes_grace),
            RunEnd::Cancelled { .. } => NextRun::OnChange,
        }
    }

    /// The object as the API server has it now (`None` once it is gone).
    fn read_object<'a>(&'a self, obj: &'a K) -> BoxFuture<'a, kube::Result<Option<K>>> {
        rare(async move { self.api_for(obj).get_opt(&obj.name_any()).await })
    }

    /// Writes `status`, best effort: a failed status write is logged, never fails the run.
    /// Returns the API server's message when it failed.
    async fn write_status(
        &self,
        obj: &K,
        status: StepStatus,
        rec: &mut RunRecorder,
    ) -> Result<(), String> {
        let patch = serde_json::json!({ "status": status });
        let api = self.api_for(obj);
        match api
            .patch_status(
                &obj.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(updated) => {
                rec.note_runtime_write(updated.meta().resource_version.clone());
                Ok(())
            }
            Err(e) => {
                tracing::info!("status write failed (allowed): {e}");
                Err(crate::error::api_message(&e))
            }
        }
    }
}

/// What a run read of the object its step may be fighting over, before the steps ran.
struct Probe {
    path: String,
    /// `None`: the read failed.
    entries: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry>>,
}

/// Boxes a request a run makes only on some paths (re-reading the object, the finalizer, the
/// status). A run's future has room for the largest path it could take, and kube-runtime moves
/// that future into a task of its own for every run: unboxed, these kube request futures (about
/// 2 KB each) made the run's future 2.5 times the size of a hand-written reconciler's, copied
/// several times per run. One allocation on a path that makes a request is noise.
fn rare<'a, T>(fut: impl Future<Output = T> + Send + 'a) -> BoxFuture<'a, T> {
    Box::pin(fut)
}

fn last_step(rec: &RunRecorder) -> Option<&'static str> {
    rec.records().last().map(|r| r.step)
}

/// A run in flight. Dropped before the run ends (leadership lost, shutdown timed out: the
/// controller drops the run's future), it reports the run as [`RunEnd::Cancelled`] to the
/// observers, with the steps that had finished.
struct CutOff<'a, K: Resource<DynamicType = ()>, S, M, C> {
    runner: &'a Runner<K, S, M, C>,
    key: ObjectKey<'a>,
    run_id: u64,
    obj: Arc<K>,
    started: Instant,
    rec: RunRecorder,
    armed: bool,
}

impl<K: Resource<DynamicType = ()>, S, M, C> Drop for CutOff<'_, K, S, M, C> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let step = self.rec.current();
        tracing::warn!(object = %self.key, step, "run cancelled before it ended");
        let meta = self.obj.meta();
        let report = RunReport {
            run_id: self.run_id,
            api_version: K::api_version(&()),
            kind: K::kind(&()),
            uid: meta.uid.clone(),
            object: self.key.joined(),
            generation: meta.generation,
            observed_resource_version: meta.resource_version.clone(),
            deleting: meta.deletion_timestamp.is_some(),
            steps: self.rec.take_records(),
            end: RunEnd::Cancelled { step },
            status_written: false,
            status_error: None,
            status_failures: 0,
            fight: None,
            next: NextRun::OnChange,
            duration: self.started.elapsed(),
        };
        for o in &self.runner.observers {
            o(&report);
        }
    }
}
