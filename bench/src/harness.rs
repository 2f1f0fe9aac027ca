//! Scenarios and measurement.
//!
//! Threads: the embedded API server runs alone on a dedicated thread (a current-thread tokio
//! runtime), each operator variant runs alone on a fresh dedicated thread (another current-thread
//! runtime, with its own `kube::Client`), and the harness (creating objects, faults, checks) runs
//! on the main thread. The operator's CPU is that thread's `CLOCK_THREAD_CPUTIME_ID` and its
//! allocations are that thread's counters, so neither the server nor the harness is in the
//! operator's figures; the server's thread CPU is reported beside them.
//!
//! Per repetition and scenario a fresh API server is started and both variants run on it one
//! after the other (order alternating between repetitions), each in a namespace of its own with
//! N fresh objects.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde::Serialize;
use staircase_apiserver::{ApiServer, Fault, Faults, Stats, Verb};

use crate::workload::{self, Bench, BenchSpec, Counters, RESOURCE};
use crate::{alloc, cpu};

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Objects per variant and scenario.
    pub n: usize,
    /// Repetitions (each runs every scenario for both variants).
    pub reps: usize,
    /// Concurrent runs per operator (both variants).
    pub concurrency: u16,
    /// Watch delays for figure 2, in ms (the first scenario also gives figures 1, 3 at L = 0, 4).
    pub delays_ms: Vec<u64>,
    /// Request latency for figure 3, in ms (applied to every PATCH, status included).
    pub latency_ms: u64,
    /// Whether the staircase keeps status (`with_status()`); its writes are reported apart.
    pub status: bool,
    /// Quiet period that ends a phase: no run for this long.
    pub settle_ms: u64,
    /// Give up on a phase after this long.
    pub timeout_s: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            n: 200,
            reps: 5,
            concurrency: 16,
            delays_ms: vec![0, 2, 10],
            latency_ms: 5,
            status: true,
            settle_ms: 300,
            timeout_s: 300,
        }
    }
}

/// The two implementations of the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Variant {
    /// `#[step]` + `staircase!` on `staircase::Operator` (A).
    Staircase,
    /// A hand-written `kube::runtime::Controller` (B).
    Hand,
}

impl Variant {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Staircase => "staircase",
            Variant::Hand => "hand",
        }
    }
}

/// One scenario: watch delay and request latency.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scenario {
    /// Watch event delay.
    pub delay_ms: u64,
    /// Latency added to every PATCH.
    pub latency_ms: u64,
    /// Whether a forced relist (full pass over converged objects) is measured after convergence.
    pub relist: bool,
}

impl Scenario {
    /// A short label.
    pub fn label(&self) -> String {
        format!("lag{}ms-lat{}ms", self.delay_ms, self.latency_ms)
    }
}

/// The no-op pass forced by a relist over converged objects.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Relist {
    /// Runs that found their object converged during the pass.
    pub runs: u64,
    /// Operator-thread CPU for the whole pass (relist decode included), ns.
    pub cpu_ns: u64,
    /// Operator-thread allocations during the pass.
    pub allocs: u64,
    /// Peak operator-thread live bytes during the pass (above the thread's start).
    pub peak_bytes: i64,
    /// Operator-thread live bytes once the pass settled (above the thread's start).
    pub end_bytes: i64,
    /// Server-thread CPU during the pass, ns.
    pub server_cpu_ns: u64,
}

/// What one variant did in one scenario of one repetition.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Run {
    /// Every object ended with all K annotations (checked by listing them afterwards).
    pub converged: bool,
    /// Objects found converged by the check.
    pub converged_objects: usize,
    /// Start of the operator until the N-th object was seen converged, seconds.
    pub converge_s: f64,
    /// Requests the server saw during convergence (all verbs, status included).
    pub requests: u64,
    /// PATCHes of the primary (main resource).
    pub patches: u64,
    /// PATCHes of `/status`.
    pub status_patches: u64,
    /// GETs of single objects.
    pub gets: u64,
    /// LIST + WATCH requests.
    pub list_watch: u64,
    /// Runs during convergence (the staircase counts only runs that produced a report).
    pub runs: u64,
    /// Runs during convergence at the same resourceVersion as the object's previous run: not
    /// driven by a watch event of a change (requeue timers, retries). Zero means progress was
    /// driven by watch events alone.
    pub unchanged_reruns: u64,
    /// Operator-thread CPU during convergence, ns.
    pub cpu_ns: u64,
    /// Operator-thread allocations from start to convergence and the quiet period after it.
    pub allocs: u64,
    /// Server-thread CPU during convergence, ns.
    pub server_cpu_ns: u64,
    /// Mean time the server took to answer a PATCH (arrival to answer, injected latency
    /// included) during convergence, ms; `None` without PATCHes.
    pub patch_ms: Option<f64>,
    /// Time the operator thread was runnable but waiting for a CPU during convergence, ns
    /// (`schedstat`: the cores are shared with the server thread and other processes).
    pub wait_ns: u64,
    /// The same for the server thread, ns.
    pub server_wait_ns: u64,
    /// Operator-thread live bytes after convergence (above the thread's start).
    pub live_bytes: i64,
    /// The same variant converged on a smaller namespace just before (relist scenario only):
    /// its object count and live bytes after sync. Two sizes give the memory per cached object
    /// as a slope, free of fixed costs and of costs that grow with concurrency (pooled
    /// connections and their buffers), which a single size would spread over N.
    pub small: Option<(usize, i64)>,
    /// The forced relist, when measured.
    pub relist: Option<Relist>,
}

/// The API server on its own thread.
pub struct Host {
    /// Its URL.
    pub url: String,
    /// Its statistics.
    pub stats: Stats,
    /// Its faults.
    pub faults: Faults,
    /// Its thread's CPU clock.
    pub clock: libc::clockid_t,
    /// Its thread's kernel id.
    pub tid: libc::pid_t,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Host {
    /// Starts a fresh server on a dedicated thread.
    pub fn start() -> Host {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("apiserver".into())
            .spawn(move || {
                cpu::pin_this_thread(0);
                // The server looks for ready sockets and expired timers after every task it
                // polls. With tokio's default (every 61 tasks) the busy server noticed a PATCH's
                // latency fault ending about 1 ms late (5.9–6.0 ms on average for 5 ms; 5.3–5.9
                // ms with this), a delay of the server's own, not of the operator under test.
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .event_interval(1)
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let server = ApiServer::start().await.expect("server starts");
                    server.stats().set_log_enabled(false);
                    tx.send((
                        server.url(),
                        server.stats(),
                        server.faults(),
                        cpu::this_thread_clock(),
                        cpu::this_thread_id(),
                    ))
                    .expect("harness waits");
                    let _ = stop_rx.await;
                    server.shutdown().await;
                });
            })
            .expect("spawn server thread");
        let (url, stats, faults, clock, tid) = rx.recv().expect("server started");
        Host {
            url,
            stats,
            faults,
            clock,
            tid,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The server thread's CPU so far, ns.
    pub fn cpu_ns(&self) -> u64 {
        cpu::clock_ns(self.clock)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The client configuration for `url`.
pub fn config(url: &str) -> kube::Config {
    let mut config = kube::Config::new(url.parse().expect("valid URL"));
    config.default_namespace = "default".into();
    config.read_timeout = None;
    config
}

/// A client for `url` (made on the calling thread's runtime).
pub fn client(url: &str) -> kube::Client {
    kube::Client::try_from(config(url)).expect("plain-http client")
}

/// The staircase variant's clients for `url`: built from the config, so the write counting sits
/// in the client's own stack, as `OperatorClient::try_from(config)` gives any user. With
/// `STAIRCASE_BENCH_CLIENT=wrapped`, `Operator::new(kube::Client)`'s way instead: a counting
/// client wrapped around a plain one (two tower buffers per step request).
pub fn operator_client(url: &str) -> staircase::OperatorClient {
    if std::env::var("STAIRCASE_BENCH_CLIENT").is_ok_and(|v| v == "wrapped") {
        return client(url).into();
    }
    staircase::OperatorClient::try_from(config(url)).expect("plain-http client")
}

/// Installs the CRD and waits until it serves.
pub async fn install(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Bench::crd()).await?;
    let api: Api<Bench> = Api::all(client.clone());
    for _ in 0..200 {
        if api.list(&ListParams::default().limit(1)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("CRD not served")
}

/// Creates namespace `ns` and `n` unconverged objects in it.
pub async fn populate(client: &kube::Client, ns: &str, n: usize) -> anyhow::Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    let mut nsobj = Namespace::default();
    nsobj.metadata.name = Some(ns.into());
    nss.create(&PostParams::default(), &nsobj).await?;
    let api: Api<Bench> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let b = Bench::new(&format!("b-{i}"), BenchSpec { value: "v1".into() });
                api.create(&PostParams::default(), &b).await.map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Objects in `ns` carrying all K annotations.
pub async fn count_converged(client: &kube::Client, ns: &str) -> anyhow::Result<usize> {
    let api: Api<Bench> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|b| workload::first_missing(b).is_none())
        .count())
}

#[derive(Clone, Copy)]
struct Counts {
    total: u64,
    patches: u64,
    status: u64,
    gets: u64,
    list_watch: u64,
    watches: u64,
    all_patches: u64,
    patch_time: Duration,
}

fn counts(s: &Stats) -> Counts {
    Counts {
        total: s.total(),
        patches: s.count_resource(RESOURCE, None, Verb::Patch),
        status: s.count_resource(RESOURCE, Some("status"), Verb::Patch),
        gets: s.count(Verb::Get),
        list_watch: s.count(Verb::List) + s.count(Verb::Watch),
        watches: s.count(Verb::Watch),
        all_patches: s.count(Verb::Patch),
        patch_time: s.total_elapsed(Verb::Patch),
    }
}

/// Waits until `done()` or `timeout`; false on timeout.
async fn wait_until(c: &Counters, timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = c.notify.notified();
        if done() {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return done();
        }
    }
}

/// Waits until the server has seen a WATCH beyond the first `before` (the variant has synced
/// and watches), or `timeout`. Polled: the server's statistics have no notification.
async fn wait_for_watch(stats: &Stats, before: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while stats.count(Verb::Watch) <= before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until no run happened for `quiet`.
async fn settle(c: &Counters, quiet: Duration) {
    loop {
        let before = c.runs.load(Ordering::Relaxed);
        tokio::time::sleep(quiet).await;
        if c.runs.load(Ordering::Relaxed) == before {
            return;
        }
    }
}

/// Runs one variant on its own thread over the `n` objects in `ns`.
///
/// Everything the variant does runs on that thread (a current-thread runtime): its CPU clock
/// and allocation counters are the variant's alone. The measuring code also runs there, but
/// only reads counters and waits; the one request it makes (the relist marker) is outside
/// every measured window.
pub fn run_variant(v: Variant, host: &Host, ns: &str, n: usize, sc: Scenario, o: &Options) -> Run {
    let (url, stats, faults, server_clock, server_tid) = (
        host.url.clone(),
        host.stats.clone(),
        host.faults.clone(),
        host.clock,
        host.tid,
    );
    let (ns, o) = (ns.to_string(), o.clone());
    std::thread::Builder::new()
        .name(format!("operator-{}", v.name()))
        .spawn(move || {
            cpu::pin_this_thread(1);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("operator runtime");
            // Made before `base` so that its (pre-sized) bookkeeping is not counted.
            let counters = Arc::new(Counters::for_objects(n));
            let base = alloc::snapshot();
            rt.block_on(async move {
                let n = n as u64;
                let timeout = Duration::from_secs(o.timeout_s);
                let quiet = Duration::from_millis(o.settle_ms + 3 * sc.delay_ms);
                let client = client(&url);
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                // `Sync` (kube-runtime's graceful shutdown wants it): a watch channel, not a oneshot.
                let stop = async move {
                    let mut rx = stop_rx;
                    let _ = rx.wait_for(|s| *s).await;
                };
                let c0 = counts(&stats);
                let allocs0 = alloc::snapshot().allocs;
                let (cpu0, scpu0) = (cpu::thread_cpu_ns(), cpu::clock_ns(server_clock));
                let own_tid = cpu::this_thread_id();
                let (wait0, swait0) = (
                    cpu::run_queue_wait_ns(own_tid),
                    cpu::run_queue_wait_ns(server_tid),
                );
                let started = Instant::now();
                let task = match v {
                    Variant::Staircase => tokio::spawn(workload::run_staircase(
                        operator_client(&url),
                        ns.clone(),
                        o.concurrency,
                        o.status,
                        counters.clone(),
                        stop,
                    )),
                    Variant::Hand => tokio::spawn(workload::run_hand(
                        client.clone(),
                        ns.clone(),
                        o.concurrency,
                        counters.clone(),
                        stop,
                    )),
                };
                let cc = counters.clone();
                if n == 0 {
                    // Nothing to converge: wait until the variant has listed and watches.
                    wait_for_watch(&stats, c0.watches, timeout).await;
                }
                wait_until(&counters, timeout, || {
                    cc.converged_new.load(Ordering::Relaxed) >= n
                })
                .await;
                let converge_s = started.elapsed().as_secs_f64();
                let (wait1, swait1) = (
                    cpu::run_queue_wait_ns(own_tid),
                    cpu::run_queue_wait_ns(server_tid),
                );
                settle(&counters, quiet).await;
                let (cpu1, scpu1) = (cpu::thread_cpu_ns(), cpu::clock_ns(server_clock));
                let c1 = counts(&stats);
                let mut run = Run {
                    converge_s,
                    requests: c1.total - c0.total,
                    patches: c1.patches - c0.patches,
                    status_patches: c1.status - c0.status,
                    gets: c1.gets - c0.gets,
                    list_watch: c1.list_watch - c0.list_watch,
                    runs: counters.runs.load(Ordering::Relaxed),
                    unchanged_reruns: counters.unchanged_reruns.load(Ordering::Relaxed),
                    cpu_ns: cpu1 - cpu0,
                    allocs: alloc::snapshot().allocs - allocs0,
                    server_cpu_ns: scpu1 - scpu0,
                    patch_ms: (c1.all_patches > c0.all_patches).then(|| {
                        (c1.patch_time - c0.patch_time).as_secs_f64() * 1e3
                            / (c1.all_patches - c0.all_patches) as f64
                    }),
                    wait_ns: wait1.saturating_sub(wait0),
                    server_wait_ns: swait1.saturating_sub(swait0),
                    live_bytes: alloc::snapshot().live - base.live,
                    ..Run::default()
                };
                if sc.relist {
                    let mut passes = Vec::with_capacity(RELISTS);
                    for i in 0..RELISTS {
                        // Move the global resourceVersion past the watchers' last one, so that
                        // after `compact` their resume gets 410 Gone and they relist (outside
                        // the window).
                        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
                        let mut cm = ConfigMap::default();
                        cm.metadata.name = Some(format!("relist-marker-{i}"));
                        let _ = cms.create(&PostParams::default(), &cm).await;
                        alloc::reset_peak();
                        let a0 = alloc::snapshot();
                        let (cpu0, scpu0) = (cpu::thread_cpu_ns(), cpu::clock_ns(server_clock));
                        let conv0 = counters.converged.load(Ordering::Relaxed);
                        // On a helper thread: compaction frees the server's event history, which
                        // the server thread allocated; freed here it would count as the
                        // operator's (megabytes of negative live bytes that hide the relist peak).
                        std::thread::scope(|s| {
                            s.spawn(|| {
                                faults.compact();
                                faults.close_watches();
                            });
                        });
                        wait_until(&counters, timeout, || {
                            cc.converged.load(Ordering::Relaxed) >= conv0 + n
                        })
                        .await;
                        settle(&counters, quiet).await;
                        let a1 = alloc::snapshot();
                        passes.push(Relist {
                            runs: counters.converged.load(Ordering::Relaxed) - conv0,
                            cpu_ns: cpu::thread_cpu_ns() - cpu0,
                            allocs: a1.allocs - a0.allocs,
                            peak_bytes: a1.peak - base.live,
                            end_bytes: a1.live - base.live,
                            server_cpu_ns: cpu::clock_ns(server_clock) - scpu0,
                        });
                    }
                    run.relist = median_pass(passes);
                }
                let _ = stop_tx.send(true);
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
                run
            })
        })
        .expect("spawn operator thread")
        .join()
        .expect("operator thread")
}

/// Forced relists per run of the relist scenario: a pass over 1,000 objects takes tens of ms, so
/// one sample per run would be at the mercy of whatever else the shared cores are doing.
pub const RELISTS: usize = 3;

/// The pass of median operator CPU, with the highest peak of them all (the peak is a property of
/// every relist alike; the highest is the one to report).
fn median_pass(mut passes: Vec<Relist>) -> Option<Relist> {
    passes.sort_by_key(|p| p.cpu_ns);
    let peak = passes.iter().map(|p| p.peak_bytes).max()?;
    let mut median = passes.swap_remove(passes.len() / 2);
    median.peak_bytes = peak;
    Some(median)
}

/// The smaller object count of figure 4: a tenth of N, but enough objects to use the full
/// concurrency twice over (so the connection pool grows as it does at N), and at most N / 2.
pub fn small_n(o: &Options) -> usize {
    (o.n / 10).max(2 * o.concurrency as usize).min(o.n / 2)
}

/// Results of every run, in order.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Repetition.
    pub rep: usize,
    /// Scenario.
    pub scenario: Scenario,
    /// Variant.
    pub variant: Variant,
    /// What it did.
    pub run: Run,
}

/// The scenarios for `o`: one per watch delay (the first also measures the relist), plus
/// one with request latency.
pub fn scenarios(o: &Options) -> Vec<Scenario> {
    let mut v: Vec<Scenario> = o
        .delays_ms
        .iter()
        .enumerate()
        .map(|(i, &d)| Scenario {
            delay_ms: d,
            latency_ms: 0,
            relist: i == 0,
        })
        .collect();
    v.push(Scenario {
        delay_ms: 0,
        latency_ms: o.latency_ms,
        relist: false,
    });
    // `STAIRCASE_BENCH_ONLY=latency` (figure 3's latency scenario) or `=relist` (the scenario
    // with the forced relists, figures 1 and 4): a quick look at one figure; the other rows then
    // have no samples.
    // `=converge`: figure 3's L = 0 convergence alone, without the relists (what
    // `scripts/operator-instructions.sh` counts).
    match std::env::var("STAIRCASE_BENCH_ONLY").as_deref() {
        Ok("latency") => v.retain(|s| s.latency_ms > 0),
        Ok("relist") => v.retain(|s| s.relist),
        Ok("converge") => {
            v.retain(|s| s.latency_ms == 0 && s.delay_ms == 0);
            v.iter_mut().for_each(|s| s.relist = false);
        }
        _ => {}
    }
    v
}

/// The variants a repetition runs, in its order: both, alternating which goes first, unless
/// `STAIRCASE_BENCH_VARIANT` names one (`staircase` or `hand`: one operator thread to profile).
fn variants(rep: usize) -> Vec<Variant> {
    let mut order = if rep.is_multiple_of(2) {
        vec![Variant::Staircase, Variant::Hand]
    } else {
        vec![Variant::Hand, Variant::Staircase]
    };
    if let Ok(only) = std::env::var("STAIRCASE_BENCH_VARIANT") {
        order.retain(|v| v.name() == only);
        assert!(
            !order.is_empty(),
            "STAIRCASE_BENCH_VARIANT is `staircase` or `hand`"
        );
    }
    order
}

/// Runs every repetition, scenario and variant (interleaved); `log` gets progress lines and
/// `rep_done` the samples so far after each repetition (so an interrupted run leaves results).
pub fn run_all(
    o: &Options,
    mut log: impl FnMut(&str),
    mut rep_done: impl FnMut(&[Sample]),
) -> anyhow::Result<Vec<Sample>> {
    let harness = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut samples = Vec::new();
    for rep in 0..o.reps {
        let order = variants(rep);
        for sc in scenarios(o) {
            let host = Host::start();
            let hc = harness.block_on(async { client(&host.url) });
            harness.block_on(install(&hc))?;
            for &v in &order {
                // Figure 4's second size: the same variant, same server, fewer objects.
                let small = if sc.relist {
                    let n0 = small_n(o);
                    let ns = format!("{}-{}-small", v.name(), rep);
                    harness.block_on(populate(&hc, &ns, n0))?;
                    let sc0 = Scenario {
                        relist: false,
                        ..sc
                    };
                    Some((n0, run_variant(v, &host, &ns, n0, sc0, o).live_bytes))
                } else {
                    None
                };
                let ns = format!("{}-{}", v.name(), rep);
                harness.block_on(populate(&hc, &ns, o.n))?;
                if sc.delay_ms > 0 {
                    host.faults
                        .delay_watch_events(Duration::from_millis(sc.delay_ms));
                }
                if sc.latency_ms > 0 {
                    host.faults.inject(
                        Fault::round_trip(Duration::from_millis(sc.latency_ms))
                            .verb(Verb::Patch)
                            .always(),
                    );
                }
                let mut run = run_variant(v, &host, &ns, o.n, sc, o);
                run.small = small;
                host.faults.clear();
                run.converged_objects = harness.block_on(count_converged(&hc, &ns))?;
                run.converged = run.converged_objects == o.n;
                log(&format!(
                    "rep {rep} {} {:<9} converged {}/{} in {:.3}s: {} requests, {} patches (+{} status), \
                     {} unchanged reruns, cpu {:.1} ms, live {} KiB{}{}",
                    sc.label(),
                    v.name(),
                    run.converged_objects,
                    o.n,
                    run.converge_s,
                    run.requests,
                    run.patches,
                    run.status_patches,
                    run.unchanged_reruns,
                    run.cpu_ns as f64 / 1e6,
                    run.live_bytes / 1024,
                    run.small.map_or(String::new(), |(n0, b)| format!(
                        " ({} KiB with {n0} objects)",
                        b / 1024
                    )),
                    run.relist.as_ref().map_or(String::new(), |r| format!(
                        "; relist {} runs, {:.1} µs/run, {:.0} allocs/run, peak {} KiB, after {} KiB",
                        r.runs,
                        r.cpu_ns as f64 / 1e3 / r.runs.max(1) as f64,
                        r.allocs as f64 / r.runs.max(1) as f64,
                        r.peak_bytes / 1024,
                        r.end_bytes / 1024,
                    )),
                ));
                samples.push(Sample {
                    rep,
                    scenario: sc,
                    variant: v,
                    run,
                });
            }
            drop(hc);
            drop(host);
        }
        rep_done(&samples);
    }
    Ok(samples)
}
