//! The workload: a `Bench` custom resource whose operator must set K = 5 annotations on the
//! object itself (one merge patch each, decided from the watched object alone, no GETs), written
//! once as a staircase and once as a hand-written `kube::runtime::Controller`.
//!
//! Both variants run at the same concurrency, drive progress by the watch event of their own
//! write, and keep read-your-own-writes (a view older than the variant's last write to the
//! object is skipped until the watch catches up), so a lagging watch cannot cause duplicate
//! patches in either.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::prelude::*;
use staircase::{RunEnd, StepStatus};
use tokio::sync::Notify;

/// Changes each object needs.
pub const K: usize = 5;

/// Annotation keys the five steps set, in order.
pub const KEYS: [&str; K] = [
    "bench.staircase.rs/a",
    "bench.staircase.rs/b",
    "bench.staircase.rs/c",
    "bench.staircase.rs/d",
    "bench.staircase.rs/e",
];

/// The desired state of a `Bench`: the value every annotation must carry.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "bench.staircase.rs",
    version = "v1",
    kind = "Bench",
    namespaced,
    status = "BenchStatus"
)]
pub struct BenchSpec {
    /// Value of the five annotations.
    pub value: String,
}

/// The status: only what the staircase runtime keeps (the hand-written variant writes none).
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq, StepStatus)]
pub struct BenchStatus {
    /// Kept by staircase.
    #[serde(flatten)]
    pub steps: StepStatus,
}

/// The resource name on the API server (`plural.group`), for request statistics.
pub const RESOURCE: &str = "benches.bench.staircase.rs";

/// Index of the first annotation that is missing or wrong (`None`: converged).
pub fn first_missing(obj: &Bench) -> Option<usize> {
    let ann = obj.metadata.annotations.as_ref();
    KEYS.iter()
        .position(|k| ann.and_then(|a| a.get(*k)) != Some(&obj.spec.value))
}

fn annotation_patch(obj: &Bench, i: usize) -> serde_json::Value {
    serde_json::json!({ "metadata": { "annotations": { KEYS[i]: obj.spec.value } } })
}

/// Run counters shared by the harness and a running variant.
#[derive(Default, Debug)]
pub struct Counters {
    /// Runs (reconciles) so far.
    pub runs: AtomicU64,
    /// Runs that found the object converged.
    pub converged: AtomicU64,
    /// Runs that found the object converged when the object's previous run had not (a new
    /// version, or the first run): objects that converged. A further run at the same version,
    /// e.g. a duplicate trigger, is not counted again.
    pub converged_new: AtomicU64,
    /// Runs that saw the same resourceVersion as the previous run of the same object: not
    /// driven by a change of the object (a requeue timer, a retry, a duplicate trigger).
    pub unchanged_reruns: AtomicU64,
    /// The resourceVersion of each object's last run (shifted left by one, the low bit set when
    /// it found the object converged), by a hash of its key. Keyed by hash and
    /// sized up front (see [`Counters::for_objects`]) so that bookkeeping allocates nothing
    /// while a variant runs and stays out of its allocation and memory figures.
    last_rv: Mutex<HashMap<u64, u64>>,
    /// Woken on every run.
    pub notify: Notify,
}

impl Counters {
    /// Counters for `n` objects (the map of last versions is allocated now, not during runs).
    pub fn for_objects(n: usize) -> Counters {
        Counters {
            last_rv: Mutex::new(HashMap::with_capacity(n)),
            ..Counters::default()
        }
    }

    pub(crate) fn ran(&self, key: &str, rv: Option<u64>, converged: bool) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        if converged {
            self.converged.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(rv) = rv {
            let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
            // The version, and in the low bit whether that run found the object converged.
            let seen = rv << 1 | u64::from(converged);
            let prev = self.last_rv.lock().expect("poisoned").insert(h, seen);
            if prev.is_some_and(|p| p >> 1 == rv) {
                self.unchanged_reruns.fetch_add(1, Ordering::Relaxed);
            }
            if converged && prev != Some(seen) {
                self.converged_new.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.notify.notify_waiters();
    }
}

// ---------------------------------------------------------------------------------------------
// Variant A: the staircase.

async fn step_patch(obj: &Bench, ctx: &Context<()>, i: usize) -> Result<Outcome> {
    let ann = obj.metadata.annotations.as_ref();
    if ann.and_then(|a| a.get(KEYS[i])) == Some(&obj.spec.value) {
        return Ok(Outcome::unchanged());
    }
    ctx.api::<Bench>()
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&annotation_patch(obj, i)),
        )
        .await?;
    Ok(Outcome::modified(KEYS[i]))
}

/// Step 1: annotation `a`.
#[step]
pub async fn set_a(obj: &Bench, ctx: &Context<()>) -> Result<Outcome> {
    step_patch(obj, ctx, 0).await
}

/// Step 2: annotation `b`.
#[step]
pub async fn set_b(obj: &Bench, ctx: &Context<()>) -> Result<Outcome> {
    step_patch(obj, ctx, 1).await
}

/// Step 3: annotation `c`.
#[step]
pub async fn set_c(obj: &Bench, ctx: &Context<()>) -> Result<Outcome> {
    step_patch(obj, ctx, 2).await
}

/// Step 4: annotation `d`.
#[step]
pub async fn set_d(obj: &Bench, ctx: &Context<()>) -> Result<Outcome> {
    step_patch(obj, ctx, 3).await
}

/// Step 5: annotation `e`.
#[step]
pub async fn set_e(obj: &Bench, ctx: &Context<()>) -> Result<Outcome> {
    step_patch(obj, ctx, 4).await
}

/// Runs the staircase variant in namespace `ns` until `stop` completes.
pub async fn run_staircase(
    client: staircase::OperatorClient,
    ns: String,
    concurrency: u16,
    status: bool,
    counters: Arc<Counters>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let stairs = staircase!(Bench => [set_a, set_b, set_c, set_d, set_e]);
    let cfg = OperatorConfig::default()
        .with_namespace(ns)
        .with_concurrency(concurrency)
        .with_events(false)
        .with_shutdown_timeout(Duration::from_secs(2));
    // `STAIRCASE_BENCH_RELIST=swap`: the relist taken kube-runtime's way, a second cache swapped
    // in (the default takes it into the cache in place).
    let cfg = match std::env::var("STAIRCASE_BENCH_RELIST").as_deref() {
        Ok("swap") => cfg.with_relist(staircase::Relist::Swap),
        _ => cfg,
    };
    let mut op = Operator::new(client, stairs).with_config(cfg);
    if status {
        op = op.with_status();
    }
    op.on_run(move |r| {
        let rv = r
            .observed_resource_version
            .as_deref()
            .and_then(|v| v.parse().ok());
        counters.ran(&r.object, rv, matches!(r.end, RunEnd::Converged))
    })
    .run_until(stop)
    .await;
}

// ---------------------------------------------------------------------------------------------
// Variant B: hand-written on kube-runtime.

struct Hand {
    client: kube::Client,
    /// Read-your-own-writes: the newest resourceVersion written per object name.
    written: Mutex<HashMap<String, u64>>,
    counters: Arc<Counters>,
}

fn rv(obj: &Bench) -> Option<u64> {
    obj.metadata.resource_version.as_deref()?.parse().ok()
}

async fn reconcile(obj: Arc<Bench>, ctx: Arc<Hand>) -> Result<Action, kube::Error> {
    let name = obj.name_any();
    let stale = {
        let w = ctx.written.lock().expect("poisoned");
        matches!((w.get(&name), rv(&obj)), (Some(w), Some(r)) if r < *w)
    };
    if stale {
        // The watch event of our own write is on its way and triggers the next reconcile.
        ctx.counters.ran(&name, rv(&obj), false);
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let Some(i) = first_missing(&obj) else {
        ctx.counters.ran(&name, rv(&obj), true);
        return Ok(Action::requeue(Duration::from_secs(600)));
    };
    let api: Api<Bench> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let res = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&annotation_patch(&obj, i)),
        )
        .await;
    ctx.counters.ran(&name, rv(&obj), false);
    let updated = res?;
    if let Some(r) = rv(&updated) {
        ctx.written.lock().expect("poisoned").insert(name, r);
    }
    // Progress comes from the watch event of this write; the timer is only a fallback.
    Ok(Action::requeue(Duration::from_secs(2)))
}

fn error_policy(_: Arc<Bench>, _: &kube::Error, _: Arc<Hand>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

/// Runs the hand-written variant in namespace `ns` until `stop` completes.
pub async fn run_hand(
    client: kube::Client,
    ns: String,
    concurrency: u16,
    counters: Arc<Counters>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<Bench> = Api::namespaced(client.clone(), &ns);
    let ctx = Arc::new(Hand {
        client,
        written: Mutex::default(),
        counters,
    });
    Controller::new(api, watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}
