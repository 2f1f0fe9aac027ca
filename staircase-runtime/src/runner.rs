//! One run over one object: pick the chain (steps or cleanup), climb it, write status, decide
//! when to run again. `Operator` calls this for every object the controller schedules.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::chain::Stairs;
use crate::context::ApiScope;
use crate::run::{RunEnd, RunRecorder, RunReport};
use crate::staircase::Staircase;
use crate::status::{StepStatus, next_status};
use crate::{Context, OperatorConfig, OutcomeKind, RunInfo, finalizer};

/// Reads the runtime-kept part of an object's status.
pub(crate) type StatusReader<K> = fn(&K) -> Option<&StepStatus>;

/// Called with every run's report.
pub(crate) type Observer = Arc<dyn Fn(&RunReport) + Send + Sync>;

/// What the runtime remembers about an object between runs.
#[derive(Default)]
struct ObjectMemory {
    failures: u32,
    /// The newest resourceVersion of the object this operator wrote or acted on; an older view
    /// is stale. Acted-on versions count too: after a re-read showed version 12, a lagging watch
    /// may still deliver version 11, and acting on it would undo what 12 said.
    written_rv: Option<String>,
    /// When a stale view was first seen; past the grace period we read from the API server.
    stale_since: Option<Instant>,
    /// The resourceVersion a settled run (converged, done, waiting) left the object at, and when
    /// that version was first settled on. A run at the same version a full resync period later
    /// is the resync: the watch may have lost an event since, so the object is read fresh. Runs
    /// at the same version sooner than that (a relist, a child's or a mapped object's event, the
    /// echo of our own status write) trust the cache: re-reading on each would cost a GET per
    /// run and protect against nothing the resync doesn't.
    verified_rv: Option<String>,
    verified_at: Option<Instant>,
}

/// When the object should run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextRun {
    /// After this delay (or sooner, on a change).
    After(Duration),
    /// Only when the object changes.
    OnChange,
}

/// Everything runs share.
pub(crate) struct Runner<K, S, M, C> {
    pub(crate) staircase: Staircase<K, S, M, C>,
    pub(crate) client: kube::Client,
    pub(crate) counting: kube::Client,
    pub(crate) state: Arc<S>,
    pub(crate) config: OperatorConfig,
    pub(crate) status: Option<StatusReader<K>>,
    pub(crate) observers: Vec<Observer>,
    memory: Mutex<HashMap<String, ObjectMemory>>,
    run_ids: AtomicU64,
}

/// `a` is older than `b`; resourceVersions are opaque strings, but every real API server (and
/// ours) uses etcd revisions, so compare numerically when both parse and never claim "older"
/// otherwise.
fn older(a: Option<&str>, b: &str) -> bool {
    match (a.and_then(|a| a.parse::<u64>().ok()), b.parse::<u64>().ok()) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

impl<K, S, M, C> Runner<K, S, M, C> {
    pub(crate) fn new(
        staircase: Staircase<K, S, M, C>,
        client: kube::Client,
        state: Arc<S>,
        config: OperatorConfig,
    ) -> Self {
        Runner {
            staircase,
            counting: crate::writes::counting_client(client.clone()),
            client,
            state,
            config,
            status: None,
            observers: Vec::new(),
            memory: Mutex::default(),
            run_ids: AtomicU64::new(1),
        }
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

    /// Forgets the objects `exists` no longer knows; returns how many.
    pub(crate) fn forget_missing(&self, exists: &dyn Fn(&str) -> bool) -> usize {
        let mut mem = self.memory.lock().expect("memory poisoned");
        let before = mem.len();
        mem.retain(|key, _| exists(key));
        before - mem.len()
    }

    fn key(obj: &K) -> String {
        match &obj.meta().namespace {
            Some(ns) => format!("{ns}/{}", obj.name_any()),
            None => obj.name_any(),
        }
    }

    /// Runs the staircase once for `obj`. Returns the report (`None` when there was nothing to run,
    /// e.g. a deleted object without our finalizer) and when to run again.
    pub(crate) async fn run(&self, obj: Arc<K>) -> (Option<RunReport>, NextRun) {
        let key = Self::key(&obj);
        let run_id = self.run_ids.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "run",
            object = %key,
            generation = obj.meta().generation,
            run_id,
        );
        let started = Instant::now();
        let (report, next) = async {
            let obj = match self.fresh_view(&key, obj).await {
                Ok(Some(obj)) => obj,
                Ok(None) => return (None, NextRun::OnChange),
                Err(skip) => return skip,
            };
            self.run_fresh(key.clone(), run_id, obj).await
        }
        .instrument(span)
        .await;
        let report = report.map(|mut r| {
            r.duration = started.elapsed();
            r
        });
        if let Some(r) = &report {
            tracing::debug!("{r}");
            for o in &self.observers {
                o(r);
            }
        }
        (report, next)
    }

    /// Refuses to act on a view older than our own last write (read-your-own-writes): first waits
    /// for the watch to catch up, then, past the grace period, reads the object directly.
    async fn fresh_view(
        &self,
        key: &str,
        obj: Arc<K>,
    ) -> Result<Option<Arc<K>>, (Option<RunReport>, NextRun)> {
        let (reverify, stale_for) = {
            let mut mem = self.memory.lock().expect("memory poisoned");
            let Some(m) = mem.get_mut(key) else {
                // Never ran (or forgotten): nothing of ours to be newer than.
                return Ok(Some(obj));
            };
            // A timer may fire a hair before a full period has passed by `Instant`'s clock.
            let period = self.config.resync.mul_f64(0.9);
            let reverify = m.verified_rv.is_some()
                && m.verified_rv == obj.meta().resource_version
                && m.verified_at.is_some_and(|t| t.elapsed() >= period);
            if reverify {
                m.verified_rv = None;
            }
            let stale_for = match &m.written_rv {
                Some(w) if older(obj.meta().resource_version.as_deref(), w) => {
                    Some(m.stale_since.get_or_insert_with(Instant::now).elapsed())
                }
                _ => {
                    m.stale_since = None;
                    None
                }
            };
            (reverify, stale_for)
        };
        if reverify {
            return match self.api_for(&obj).get_opt(&obj.name_any()).await {
                Ok(fresh) => Ok(fresh.map(Arc::new)),
                Err(e) => {
                    tracing::warn!("re-reading the object failed: {e}");
                    Ok(Some(obj))
                }
            };
        }
        let Some(stale_for) = stale_for else {
            return Ok(Some(obj));
        };
        let grace = self.config.read_your_writes_grace;
        if stale_for < grace {
            // Our own write's watch event is on its way and will trigger the next run.
            return Err((None, NextRun::After(grace - stale_for)));
        }
        match self.api_for(&obj).get_opt(&obj.name_any()).await {
            Ok(Some(fresh)) => Ok(Some(Arc::new(fresh))),
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!("reading the object after a stale view failed: {e}");
                Err((None, NextRun::After(grace)))
            }
        }
    }

    async fn run_fresh(
        &self,
        key: String,
        run_id: u64,
        obj: Arc<K>,
    ) -> (Option<RunReport>, NextRun) {
        let meta = obj.meta();
        let deleting = meta.deletion_timestamp.is_some();
        let generation = meta.generation;
        let retries = self
            .memory
            .lock()
            .expect("memory poisoned")
            .get(&key)
            .map_or(0, |m| m.failures);
        let ctx = Context::new(
            self.counting.clone(),
            self.state.clone(),
            meta.namespace.clone(),
            RunInfo {
                run_id,
                generation,
                retries,
                deleting,
            },
        );
        let mut rec = RunRecorder::new(self.config.rule_policy);
        let finalizer = self.staircase.finalizer_name();

        let (end, permanent) = match (&self.staircase.cleanup, deleting) {
            (Some(cleanup), true) => {
                let f = finalizer.expect("cleanup has a finalizer");
                if !finalizer::has(&*obj, f) {
                    return (None, NextRun::OnChange);
                }
                match cleanup.climb(&obj, &ctx, &mut rec).await {
                    Ok(Some(_)) => match finalizer::remove(&self.api_for(&obj), &obj, f).await {
                        Ok(_) => (RunEnd::FinalizerRemoved, false),
                        Err(e) => (self.failed(None, &e.into()), false),
                    },
                    Ok(None) => (self.end_from(&rec), false),
                    Err(e) => (self.failed(last_step(&rec), &e), e.is_permanent()),
                }
            }
            (None, true) => return (None, NextRun::OnChange),
            (Some(_), false)
                if !finalizer::has(&*obj, finalizer.expect("cleanup has a finalizer")) =>
            {
                match finalizer::add(&self.api_for(&obj), &obj, finalizer.expect("finalizer")).await
                {
                    Ok(updated) => {
                        rec.note_runtime_write(updated.meta().resource_version.clone());
                        (RunEnd::FinalizerAdded, false)
                    }
                    Err(e) => (self.failed(None, &e.into()), false),
                }
            }
            _ => match self.staircase.main.climb(&obj, &ctx, &mut rec).await {
                Ok(Some(_)) => (RunEnd::Converged, false),
                Ok(None) => (self.end_from(&rec), false),
                Err(e) => (self.failed(last_step(&rec), &e), e.is_permanent()),
            },
        };

        let status = self
            .write_status(&obj, generation, &end, deleting, &mut rec)
            .await;
        let status_written = status == Some(true);
        let written_rv = rec.primary_rv(|| rec_primary(&*obj));
        let failed = matches!(end, RunEnd::Failed { .. });
        let failures = {
            let mut mem = self.memory.lock().expect("memory poisoned");
            if matches!(end, RunEnd::FinalizerRemoved) {
                mem.remove(&key);
                0
            } else {
                let m = match mem.get_mut(&key) {
                    Some(m) => m,
                    None => mem.entry(key.clone()).or_default(),
                };
                if written_rv.is_some() {
                    m.written_rv = written_rv.clone();
                } else if let Some(seen) = obj.meta().resource_version.as_deref()
                    && (m.written_rv.is_none() || older(m.written_rv.as_deref(), seen))
                {
                    m.written_rv = Some(seen.to_string());
                }
                let settled = matches!(
                    end,
                    RunEnd::Converged | RunEnd::Done { .. } | RunEnd::Waiting { .. }
                );
                let verified = match (settled, &written_rv) {
                    (false, _) => None,
                    (true, Some(rv)) => Some(rv.as_str()),
                    (true, None) => obj.meta().resource_version.as_deref(),
                };
                if verified != m.verified_rv.as_deref() {
                    m.verified_rv = verified.map(str::to_string);
                    m.verified_at = verified.map(|_| Instant::now());
                }
                m.failures = if failed { m.failures + 1 } else { 0 };
                m.failures
            }
        };
        let mut next = self.next_run(&end, &rec, written_rv.is_some(), failures, permanent);
        if status == Some(false) {
            // The status is wrong and no event will come to fix it (a settled object would wait
            // for its resync): try again soon, no step depends on it but people read it.
            let retry = self.config.backoff.delay(1, false);
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
            object: key,
            generation,
            observed_resource_version: obj.meta().resource_version.clone(),
            deleting,
            steps: rec.into_records(),
            end,
            status_written,
            status_failed: status == Some(false),
            next,
            duration: Duration::ZERO,
        };
        (Some(report), next)
    }

    fn end_from(&self, rec: &RunRecorder) -> RunEnd {
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
            error: e.to_string(),
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
            RunEnd::Converged | RunEnd::Done { .. } => NextRun::After(cfg.resync),
            RunEnd::Failed { .. } => NextRun::After(cfg.backoff.delay(failures, permanent)),
            RunEnd::FinalizerRemoved => NextRun::OnChange,
            RunEnd::SkippedStale => NextRun::After(cfg.read_your_writes_grace),
        }
    }

    /// Best effort: a failed status write is logged, never fails the run. Returns `None` when
    /// nothing needed writing, else whether the write succeeded.
    async fn write_status(
        &self,
        obj: &K,
        generation: Option<i64>,
        end: &RunEnd,
        deleting: bool,
        rec: &mut RunRecorder,
    ) -> Option<bool> {
        let read = self.status?;
        let status = next_status(
            read(obj),
            generation,
            end,
            deleting,
            self.config.status_updates,
        )?;
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
                Some(true)
            }
            Err(e) => {
                tracing::info!("status write failed (allowed): {e}");
                Some(false)
            }
        }
    }
}

fn rec_primary<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    K::url_path(&(), obj.meta().namespace.as_deref())
        + "/"
        + obj.meta().name.as_deref().unwrap_or_default()
}

fn last_step(rec: &RunRecorder) -> Option<&'static str> {
    rec.records().last().map(|r| r.step)
}
