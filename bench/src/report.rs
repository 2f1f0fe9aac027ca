//! Medians, ratios, the markdown table and the JSON document.

use serde::Serialize;

use crate::compile::Compile;
use crate::harness::{Options, Sample, Scenario, Variant};
use crate::workload::K;

/// Median, min and max of one quantity over repetitions.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Stat {
    /// Median.
    pub median: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Stat {
    /// Of `xs` (empty: all NaN).
    pub fn of(mut xs: Vec<f64>) -> Stat {
        if xs.is_empty() {
            return Stat {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        xs.sort_by(f64::total_cmp);
        let m = xs.len() / 2;
        let median = if xs.len() % 2 == 1 {
            xs[m]
        } else {
            (xs[m - 1] + xs[m]) / 2.0
        };
        Stat {
            median,
            min: xs[0],
            max: xs[xs.len() - 1],
        }
    }

    fn show(&self, prec: usize) -> String {
        format!(
            "{:.p$} ({:.p$}–{:.p$})",
            self.median,
            self.min,
            self.max,
            p = prec
        )
    }
}

/// One row: a quantity for both variants, the ratio A/B of the medians and the target.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Figure number (1–5).
    pub figure: u8,
    /// What is measured.
    pub metric: String,
    /// Staircase (A).
    pub staircase: Stat,
    /// Hand-written (B).
    pub hand: Stat,
    /// A / B of the medians (absent when B is zero).
    pub ratio: Option<f64>,
    /// The target, as text.
    pub target: String,
    /// Whether the target is met (absent when not judged by a ratio or a bound here).
    pub met: Option<bool>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// False while repetitions (or figure 5) are still to come: the files are rewritten after
    /// each repetition, so an interrupted run leaves what it measured.
    pub complete: bool,
    /// Repetitions whose samples are included.
    pub reps_done: usize,
    /// The machine.
    pub machine: Machine,
    /// The options.
    pub options: Options,
    /// The rows, by figure.
    pub rows: Vec<Row>,
    /// Figure 5, when measured.
    pub compile: Option<Compile>,
    /// Why figure 5 was not measured, when it was attempted and failed.
    pub compile_error: Option<String>,
    /// Notes on method.
    pub notes: Vec<String>,
    /// Every raw sample.
    pub samples: Vec<Sample>,
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub nproc: usize,
    /// CPU model (from /proc/cpuinfo).
    pub cpu: String,
    /// Total memory (from /proc/meminfo).
    pub memory: String,
    /// Load average at the start (from /proc/loadavg).
    pub loadavg_start: String,
    /// Load average at the end.
    pub loadavg_end: String,
    /// `rustc -V`.
    pub rustc: String,
    /// Build profile of this binary.
    pub profile: String,
    /// Whether the server and operator threads were pinned to CPUs 0 and 1.
    pub pinned: bool,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The current load average.
pub fn loadavg() -> String {
    read("/proc/loadavg").trim().to_string()
}

impl Machine {
    /// Describes this machine (`loadavg_end` filled in later).
    pub fn describe() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let rustc = std::process::Command::new("rustc")
            .arg("-V")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu: field(&cpuinfo, "model name"),
            memory: field(&read("/proc/meminfo"), "MemTotal"),
            loadavg_start: loadavg(),
            loadavg_end: String::new(),
            rustc,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .into(),
            pinned: crate::cpu::pinning(),
        }
    }
}

fn pick<'a>(
    samples: &'a [Sample],
    v: Variant,
    f: impl Fn(&Scenario) -> bool + 'a,
) -> impl Iterator<Item = &'a Sample> + 'a {
    samples
        .iter()
        .filter(move |s| s.variant == v && f(&s.scenario))
}

/// A row reported for information, with no target.
fn info_row(
    rows: &mut Vec<Row>,
    samples: &[Sample],
    figure: u8,
    metric: String,
    sel: impl Fn(&Scenario) -> bool + Copy,
    val: impl Fn(&Sample) -> Option<f64> + Copy,
) {
    row(
        rows,
        samples,
        figure,
        metric,
        sel,
        val,
        "(info)",
        |_, _, _| None,
    );
}

#[allow(clippy::too_many_arguments)]
fn row(
    rows: &mut Vec<Row>,
    samples: &[Sample],
    figure: u8,
    metric: String,
    sel: impl Fn(&Scenario) -> bool + Copy,
    val: impl Fn(&Sample) -> Option<f64> + Copy,
    target: &str,
    judge: impl Fn(&Stat, &Stat, Option<f64>) -> Option<bool>,
) {
    let a = Stat::of(
        pick(samples, Variant::Staircase, sel)
            .filter_map(val)
            .collect(),
    );
    let b = Stat::of(pick(samples, Variant::Hand, sel).filter_map(val).collect());
    let ratio = (b.median != 0.0 && b.median.is_finite()).then(|| a.median / b.median);
    let met = judge(&a, &b, ratio);
    rows.push(Row {
        figure,
        metric,
        staircase: a,
        hand: b,
        ratio,
        target: target.into(),
        met,
    });
}

/// Builds the rows of figures 1–4 from the samples.
pub fn rows(o: &Options, samples: &[Sample]) -> Vec<Row> {
    let mut r = Vec::new();
    let nk = (o.n * K) as f64;
    let relist = |s: &Scenario| s.relist;
    let per_run = |f: fn(&crate::harness::Relist) -> f64| {
        move |s: &Sample| s.run.relist.as_ref().map(|x| f(x) / x.runs.max(1) as f64)
    };
    let ratio_le = |t: f64| move |_: &Stat, _: &Stat, r: Option<f64>| r.map(|r| r <= t);
    row(
        &mut r,
        samples,
        1,
        "no-op pass: operator CPU µs per run (forced relist)".into(),
        relist,
        per_run(|x| x.cpu_ns as f64 / 1e3),
        "≤ 1.2×",
        ratio_le(1.2),
    );
    row(
        &mut r,
        samples,
        1,
        "no-op pass: allocations per run".into(),
        relist,
        per_run(|x| x.allocs as f64),
        "≤ 1.2×",
        ratio_le(1.2),
    );
    info_row(
        &mut r,
        samples,
        1,
        "no-op pass: runs per object".into(),
        relist,
        move |s| s.run.relist.as_ref().map(|x| x.runs as f64 / o.n as f64),
    );
    info_row(
        &mut r,
        samples,
        1,
        "no-op pass: API server thread CPU µs per object (excluded above)".into(),
        relist,
        move |s| {
            s.run
                .relist
                .as_ref()
                .map(|x| x.server_cpu_ns as f64 / 1e3 / o.n as f64)
        },
    );
    for &d in &o.delays_ms {
        let sel = move |s: &Scenario| s.delay_ms == d && s.latency_ms == 0;
        row(
            &mut r,
            samples,
            2,
            format!("requests per required write, watch lag {d} ms (status excluded)"),
            sel,
            move |s| Some((s.run.requests - s.run.status_patches) as f64 / nk),
            "≤ 1.02",
            |a, _, _| Some(a.max <= 1.02),
        );
        row(
            &mut r,
            samples,
            2,
            format!("duplicate (no-op) patches, watch lag {d} ms"),
            sel,
            move |s| Some(s.run.patches as f64 - nk),
            "0",
            |a, _, _| Some(a.max <= 0.0),
        );
        row(
            &mut r,
            samples,
            2,
            format!("status writes per object, watch lag {d} ms"),
            sel,
            move |s| Some(s.run.status_patches as f64 / o.n as f64),
            "(reported apart)",
            |_, _, _| None,
        );
    }
    let l0 = |s: &Scenario| s.delay_ms == 0 && s.latency_ms == 0;
    row(
        &mut r,
        samples,
        3,
        format!("time to converge, L = 0, C = {} (s)", o.concurrency),
        l0,
        |s| Some(s.run.converge_s),
        "≤ 1.1×",
        ratio_le(1.1),
    );
    info_row(
        &mut r,
        samples,
        3,
        "operator CPU during convergence, µs per object".into(),
        l0,
        move |s| Some(s.run.cpu_ns as f64 / 1e3 / o.n as f64),
    );
    info_row(
        &mut r,
        samples,
        3,
        "operator allocations during convergence, per object".into(),
        l0,
        move |s| Some(s.run.allocs as f64 / o.n as f64),
    );
    let lat = o.latency_ms;
    let ceiling = o.concurrency as f64 / (K as f64 * lat as f64 / 1e3);
    let ll = move |s: &Scenario| s.latency_ms == lat && lat > 0;
    info_row(
        &mut r,
        samples,
        3,
        format!(
            "time to converge, PATCH round trip L = {lat} ms, C = {} (s)",
            o.concurrency
        ),
        ll,
        |s| Some(s.run.converge_s),
    );
    row(
        &mut r,
        samples,
        3,
        format!("throughput at L = {lat} ms, % of ceiling C/(K·L) = {ceiling:.0} obj/s"),
        ll,
        move |s| Some(100.0 * o.n as f64 / s.run.converge_s / ceiling),
        "≥ 90 %",
        |a, _, _| Some(a.median >= 90.0),
    );
    let c = o.concurrency as f64;
    info_row(
        &mut r,
        samples,
        3,
        format!(
            "time per write per concurrent run at L = {lat} ms, C·T ÷ (N·K), ms (the ceiling \
             assumes L)"
        ),
        ll,
        move |s| Some(c * s.run.converge_s * 1e3 / (o.n * K) as f64),
    );
    info_row(
        &mut r,
        samples,
        3,
        format!("PATCH round trip at the server at L = {lat} ms, mean ms (arrival to answer)"),
        ll,
        |s| s.run.patch_ms,
    );
    for (who, wait) in [
        ("operator", (|s| s.run.wait_ns) as fn(&Sample) -> u64),
        ("API server", |s| s.run.server_wait_ns),
    ] {
        row(
            &mut r,
            samples,
            3,
            format!(
                "{who} thread runnable but waiting for a CPU at L = {lat} ms, % of the \
                 convergence time (shared cores)"
            ),
            ll,
            move |s| Some(100.0 * wait(s) as f64 / 1e9 / s.run.converge_s),
            "(info)",
            |_, _, _| None,
        );
    }
    type Select = fn(&Scenario) -> bool;
    let phases: [(&str, Select); 3] = [
        ("lag 0, L = 0", |s| s.delay_ms == 0 && s.latency_ms == 0),
        ("lag > 0", |s| s.delay_ms > 0 && s.latency_ms == 0),
        ("L > 0", |s| s.latency_ms > 0),
    ];
    for (label, sel) in phases {
        row(
            &mut r,
            samples,
            3,
            format!(
                "runs during convergence not driven by a change (same resourceVersion as the \
                 object's previous run: timers, retries), {label}"
            ),
            sel,
            |s| Some(s.run.unchanged_reruns as f64),
            "(info: 0 = watch-driven)",
            |_, _, _| None,
        );
    }
    // Figure 4. Memory per cached object is the slope between two sizes (N and a smaller
    // count converged just before by the same variant on the same server), so neither fixed
    // costs nor costs that grow with concurrency are spread over N; the intercept is the
    // variant's size-independent memory.
    let slope = move |s: &Sample| {
        let (n0, b0) = s.run.small?;
        (o.n > n0).then(|| (s.run.live_bytes - b0) as f64 / (o.n - n0) as f64)
    };
    let intercept = move |s: &Sample| Some(s.run.live_bytes as f64 - slope(s)? * o.n as f64);
    row(
        &mut r,
        samples,
        4,
        "live bytes per cached object after sync (slope between two sizes)".into(),
        relist,
        slope,
        "A − B ≤ 64 B",
        |a, b, _| Some(a.median - b.median <= 64.0),
    );
    info_row(
        &mut r,
        samples,
        4,
        "size-independent live memory (intercept), KiB".into(),
        relist,
        move |s| Some(intercept(s)? / 1024.0),
    );
    info_row(
        &mut r,
        samples,
        4,
        "live bytes ÷ N after sync, everything included".into(),
        relist,
        move |s| Some(s.run.live_bytes as f64 / o.n as f64),
    );
    row(
        &mut r,
        samples,
        4,
        "relist peak ÷ store (peak above the intercept ÷ N × slope)".into(),
        relist,
        move |s| {
            let peak = s.run.relist.as_ref()?.peak_bytes as f64;
            Some((peak - intercept(s)?) / (slope(s)? * o.n as f64).max(1.0))
        },
        "≤ 2×",
        |a, _, _| Some(a.median <= 2.0),
    );
    r
}

fn show(x: f64) -> usize {
    if x.abs() >= 100.0 {
        0
    } else if x.abs() >= 1.0 {
        2
    } else {
        3
    }
}

impl Report {
    /// The markdown table (and notes).
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        s.push_str("# staircase vs hand-written kube-runtime controller\n\n");
        if !self.complete {
            s.push_str(&format!(
                "**Partial results**: {} of {} repetitions{} (the run was still going or was \
                 interrupted).\n\n",
                self.reps_done,
                self.options.reps,
                if self.compile.is_none() {
                    ", figure 5 not yet measured"
                } else {
                    ""
                },
            ));
        }
        s.push_str(&format!(
            "Machine: {} × {} ({} logical CPUs), {} RAM, {}; {} build; {}. Load average {} at start, {} \
             at end (other work on the machine shows there).\n\n",
            m.nproc,
            m.cpu,
            m.nproc,
            m.memory,
            m.rustc,
            m.profile,
            if m.pinned {
                "server thread pinned to CPU 0, operator threads to CPU 1"
            } else {
                "threads not pinned"
            },
            m.loadavg_start,
            m.loadavg_end
        ));
        let o = &self.options;
        s.push_str(&format!(
            "N = {} objects per variant and scenario, K = {K} changes each, C = {}, {} repetitions \
             (variant order alternating), staircase status {}. Cells: median (min–max).\n\n",
            o.n,
            o.concurrency,
            o.reps,
            if o.status { "on" } else { "off" }
        ));
        s.push_str("| # | metric | staircase (A) | hand-written (B) | A/B | target | met |\n|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            let p = show(r.hand.median.max(r.staircase.median));
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.figure,
                r.metric,
                r.staircase.show(p),
                r.hand.show(p),
                r.ratio.map_or("—".into(), |x| format!("{x:.2}")),
                r.target,
                match r.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "—",
                }
            ));
        }
        s.push('\n');
        match &self.compile {
            Some(c) => s.push_str(&c.markdown()),
            None => match &self.compile_error {
                // The first error line says which build failed; the JSON has the whole output.
                Some(e) => s.push_str(&format!(
                    "Figure 5 (compile cost): **failed**: {}\n",
                    e.lines()
                        .find(|l| l.starts_with("error"))
                        .or(e.lines().next())
                        .unwrap_or_default()
                )),
                None => s.push_str(
                    "Figure 5 (compile cost): not measured in this run (`--no-compile`, or not \
                     reached yet).\n",
                ),
            },
        }
        s.push_str("\n## Method\n\n");
        for n in &self.notes {
            s.push_str(&format!("- {n}\n"));
        }
        s
    }
}

/// Notes on what exactly was measured.
pub fn notes() -> Vec<String> {
    [
        "Workload: a `Bench` custom resource; each object needs 5 annotations set on itself, one merge patch each, decided from the watched object alone (no GETs). Staircase: 5 `#[step]`s in `staircase!`, `Operator` built on `OperatorClient::try_from(config)` (the write counting in the client's own stack; `STAIRCASE_BENCH_CLIENT=wrapped` measures `Operator::new(kube::Client)` instead), relists taken into the cache in place, the default (`STAIRCASE_BENCH_RELIST=swap` measures `Relist::Swap`, kube-runtime's way, which the hand-written controller uses), with Events off and `with_status()` unless the run says status off (`--no-status`: then both variants do exactly the same writes). Hand-written: one `Controller` reconcile setting the first missing annotation. Both keep read-your-own-writes (skip a view older than their last write) and progress on the watch event of their own write (the requeue timer is a 2 s fallback; figure 3 counts the runs that were not driven by a change).",
        "Threads: the embedded API server runs alone on one thread (current-thread tokio runtime), pinned to CPU 0; each variant runs alone on a fresh thread pinned to CPU 1, with its own current-thread runtime and `kube::Client` (pinning keeps the kernel from putting the two threads, which wake each other on every request, on one CPU; `STAIRCASE_BENCH_NO_PIN=1` turns it off). Operator CPU = that thread's CLOCK_THREAD_CPUTIME_ID; allocations and live bytes = that thread's counters in a counting global allocator. The server's own CPU is therefore excluded (its thread CPU is shown as info).",
        "Figure 1: after convergence the server's watch history is compacted and its watch streams closed, so each variant's watcher gets 410 Gone and relists: kube-runtime then reconciles every object once. Three such passes per repetition; the one with the median operator CPU is kept (and the highest of their three memory peaks, for figure 4). CPU and allocations cover the whole pass (list decode, store rebuild, scheduling, the runs) divided by the runs that found the object converged.",
        "Figure 2: requests = every request the server saw while the variant ran (list, watch, patches), status writes excluded and reported on their own row; divided by N·K. Watch lag = `faults().delay_watch_events(d)`: a pure latency, each event is stamped when committed and delivered d later, in commit order, without limiting the watch's throughput (the lag stays d at any write rate).",
        "Figure 3: time from operator start to the N-th object seen converged (so it includes the initial list and watch, about 1 % of it at N = 1,000). Latency = `Fault::round_trip(L)` on every PATCH (the staircase's status patches included): each PATCH reaches the server's handler L/2 after it arrived, is committed there (its watch event goes out half-way) and is answered L after it arrived, so the server's own handling happens inside L instead of adding to it. The waits end on a timerfd (tokio's millisecond timer alone overshot 5 ms by 1–2 ms) and the server's runtime looks for expired timers after every task; the row *PATCH round trip at the server* is the measured mean from arrival to answer. Until session 7 the bench used `Fault::latency(L)`, which holds a PATCH for L and then handles it: the client then waited L plus the server's handling plus the queue of PATCHes whose holds ended together on the server's one thread (5.61–5.72 ms seen by the client for L = 5 ms), a cost of the harness that both variants paid and that capped both below 90 %. The ceiling C ÷ (K·L) counts L alone: both HTTP stacks, the watch event and the operator's scheduling and run count against it, so the time per write row (C·T ÷ (N·K)) minus L is everything else a write costs at concurrency C, on a machine shared by both runtimes' threads. Whether progress was driven by watch events: a run is counted as *not driven by a change* when it saw the same resourceVersion as the previous run of the same object (a requeue timer, a retry or a duplicate trigger fired); zero such runs means every run followed a watch event of a new version.",
        "Figure 4: bytes requested from the allocator (layout sizes, not RSS) by the operator thread and not yet freed, relative to the thread's start. Everything the operator does runs on that one thread (current-thread runtime, its own client and connections), so nothing it allocates is freed elsewhere or vice versa. Live bytes are read after convergence and a quiet period, at N and (just before, same variant, same server) at a smaller count N0 = max(N/10, 2C), at most N/2. Memory per cached object = (live(N) − live(N0)) ÷ (N − N0): a slope, so neither fixed costs (runtime, client, metrics) nor costs that grow with concurrency (one pooled connection per concurrent request, with its buffers) are spread over N; the intercept live(N) − N × slope is reported as the size-independent part. Relist peak = (highest live bytes during the forced relist − intercept) ÷ (N × slope): 2× means the old and the new cache coexisted in full.",
        "Figure 5: see its section. Build times are wall clock on a shared machine; the expansion figures use `RUSTC_BOOTSTRAP=1` to pass `-Z` flags to the stable compiler (measurement only; nothing shipped is built that way).",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
