//! The cost of a staircase's reads: the `Foo` example operator (`examples/foo.rs`: three
//! children, each step reads its child with `ctx.get`) converging N objects and then idling
//! through two resync periods, on one embedded API server.
//!
//! Two variants of the same staircase:
//! - **cached**: `foo::operator` as the example ships it (`owns` each child kind, so `ctx.get`
//!   is served from the operator's watch caches, with read-your-own-writes);
//! - **live**: the same staircase with no child kind declared, so every `ctx.get` goes to the API
//!   server (what a step that reads children costs without caches).
//!
//! And the memory of a cached child: the children of the converged objects read into
//! kube-runtime reflector stores twice, whole and with the staircase's default cache transform.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{CustomResourceExt, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use staircase::prelude::*;
use staircase::{RunEnd, RunReport};
use staircase_apiserver::{Stats, Verb};
use staircase_examples::foo::{self, App, Foo, FooSpec};
use tokio::sync::Notify;

use crate::harness::{Host, client, operator_client};
use crate::{alloc, cpu};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Objects per variant.
    pub n: usize,
    /// The operators' resync period; the idle phase lasts two of them.
    pub resync: Duration,
    /// Concurrent runs.
    pub concurrency: u16,
    /// Longest a phase may take.
    pub timeout: Duration,
}

/// The two ways the staircase reads its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Variant {
    /// Child kinds declared with `owns`: reads from the watch caches.
    Cached,
    /// No child kind declared: every read goes to the API server.
    Live,
}

/// Requests the server saw in a phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Requests {
    /// GETs of one object.
    pub get: u64,
    /// LISTs.
    pub list: u64,
    /// WATCHes opened.
    pub watch: u64,
    /// Creates, updates, patches and deletes, status writes included.
    pub writes: u64,
    /// Of the writes, those to the `Foo`s' `/status`.
    pub status_writes: u64,
}

impl Requests {
    fn of(s: &Stats) -> Requests {
        let writes = [Verb::Create, Verb::Update, Verb::Patch, Verb::Delete]
            .iter()
            .map(|v| s.count(*v))
            .sum();
        Requests {
            get: s.count(Verb::Get),
            list: s.count(Verb::List),
            watch: s.count(Verb::Watch),
            writes,
            status_writes: s.count_resource(FOOS, Some("status"), Verb::Patch)
                + s.count_resource(FOOS, Some("status"), Verb::Update),
        }
    }

    fn since(self, before: Requests) -> Requests {
        Requests {
            get: self.get - before.get,
            list: self.list - before.list,
            watch: self.watch - before.watch,
            writes: self.writes - before.writes,
            status_writes: self.status_writes - before.status_writes,
        }
    }

    /// GETs and LISTs.
    pub fn reads(&self) -> u64 {
        self.get + self.list
    }
}

const FOOS: &str = "foos.demo.staircase.rs";

/// One phase of one variant.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Phase {
    /// Wall time, s.
    pub seconds: f64,
    /// Operator thread CPU, ms.
    pub cpu_ms: f64,
    /// Runs.
    pub runs: u64,
    /// Runs that saw the same resourceVersion of their object as its previous run.
    pub same_rv_runs: u64,
    /// Requests the server saw.
    pub requests: Requests,
}

/// One variant's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Which variant.
    pub variant: Variant,
    /// Objects.
    pub n: usize,
    /// From the operator's start until every object converged and runs stopped.
    pub converge: Phase,
    /// Two resync periods after that.
    pub idle: Phase,
    /// `staircase_cache_live_reads_total` by reason, over both phases.
    pub live_reads: BTreeMap<String, u64>,
    /// `staircase_cache_waits_total`, over both phases.
    pub cache_waits: u64,
}

/// Bytes held per cached child object.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StoreMemory {
    /// Child objects (ConfigMaps, Secrets and Services) stored.
    pub objects: usize,
    /// kube-runtime reflector stores, objects whole.
    pub whole_bytes_per_object: f64,
    /// The same stores with the staircase's default transform (`OperatorConfig::cache_transform`).
    pub staircase_bytes_per_object: f64,
}

#[derive(Default)]
struct Runs {
    runs: AtomicU64,
    same_rv: AtomicU64,
    converged: AtomicU64,
    last: Mutex<HashMap<String, (Option<String>, bool)>>,
    notify: Notify,
}

impl Runs {
    fn ran(&self, r: &RunReport) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let converged = matches!(r.end, RunEnd::Converged);
        let mut last = self.last.lock().expect("poisoned");
        let prev = last.insert(
            r.object.clone(),
            (r.observed_resource_version.clone(), converged),
        );
        if prev
            .as_ref()
            .is_some_and(|(rv, _)| rv.is_some() && *rv == r.observed_resource_version)
        {
            self.same_rv.fetch_add(1, Ordering::Relaxed);
        }
        if converged && !prev.is_some_and(|(_, c)| c) {
            self.converged.fetch_add(1, Ordering::Relaxed);
        }
        drop(last);
        self.notify.notify_waiters();
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.runs.load(Ordering::Relaxed),
            self.same_rv.load(Ordering::Relaxed),
        )
    }
}

/// Installs the `Foo` CRD (once per server) and creates `n` Foos in a new namespace `ns`.
async fn populate(client: &kube::Client, ns: &str, n: usize) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.create(&PostParams::default(), &Foo::crd()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let foos: Api<Foo> = Api::namespaced(client.clone(), ns);
    let served = async {
        while foos.list(&ListParams::default().limit(1)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), served).await?;
    let mut nsobj = Namespace::default();
    nsobj.metadata.name = Some(ns.into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &nsobj)
        .await?;
    futures::stream::iter(0..n)
        .map(|i| {
            let foos = foos.clone();
            async move {
                let spec = FooSpec {
                    message: format!("hello {i}"),
                    port: 8080,
                };
                foos.create(&PostParams::default(), &Foo::new(&format!("foo-{i}"), spec))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Sums the samples of `metric` in Prometheus text, by the value of `label` (all under "" when
/// `label` is empty).
fn samples(text: &str, metric: &str, label: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some(x) => x,
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue,
            },
        };
        let key = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{label}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        let v: f64 = value.trim().parse().unwrap_or(0.0);
        *out.entry(if label.is_empty() { String::new() } else { key })
            .or_default() += v as u64;
    }
    out
}

/// Runs one variant on `host` in namespace `ns`, on the calling thread (pinned to CPU 1 by the
/// caller).
pub fn run_variant(
    host: &Host,
    variant: Variant,
    ns: &str,
    o: &Options,
) -> anyhow::Result<Figures> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        populate(&client(&host.url), ns, o.n).await?;
        let cfg = OperatorConfig::default()
            .with_namespace(ns)
            .with_concurrency(o.concurrency)
            .with_resync(o.resync)
            .with_events(false)
            .with_shutdown_timeout(Duration::from_secs(2));
        let app = App {
            manager: "foo-operator".into(),
        };
        let runs = Arc::new(Runs::default());
        let observer = runs.clone();
        let on_run = move |r: &RunReport| observer.ran(r);
        match variant {
            Variant::Cached => {
                let op = foo::operator(operator_client(&host.url), app).with_config(cfg);
                measure(op.on_run(on_run), runs, host, variant, o).await
            }
            Variant::Live => {
                let op = Operator::with_state(operator_client(&host.url), foo::stairs(), app)
                    .with_status()
                    .with_config(cfg);
                measure(op.on_run(on_run), runs, host, variant, o).await
            }
        }
    })
}

/// Runs `op` until every object converged and runs stopped, then through two resync periods.
async fn measure<M, C>(
    op: Operator<Foo, App, M, C>,
    runs: Arc<Runs>,
    host: &Host,
    variant: Variant,
    o: &Options,
) -> anyhow::Result<Figures>
where
    M: staircase::Stairs<Foo, App>,
    C: staircase::Stairs<Foo, App>,
{
    let metrics = op.metrics();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let before = Requests::of(&host.stats);
    let (cpu0, t0) = (cpu::thread_cpu_ns(), Instant::now());
    let running = tokio::spawn(op.run_until(async {
        let _ = stop_rx.await;
    }));

    // Converged: every object had a converged run, then no run for a quiet second.
    let deadline = t0 + o.timeout;
    loop {
        let notified = runs.notify.notified();
        if runs.converged.load(Ordering::Relaxed) >= o.n as u64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{variant:?}: not converged in time"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
    loop {
        let seen = runs.runs.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if runs.runs.load(Ordering::Relaxed) == seen {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{variant:?}: runs never stopped");
    }
    let (runs1, same1) = runs.counts();
    let mid = Requests::of(&host.stats);
    let (cpu1, t1) = (cpu::thread_cpu_ns(), Instant::now());
    let converge = Phase {
        seconds: (t1 - t0).as_secs_f64(),
        cpu_ms: (cpu1 - cpu0) as f64 / 1e6,
        runs: runs1,
        same_rv_runs: same1,
        requests: mid.since(before),
    };

    // Idle: two resync periods and a second for the last resync's runs.
    tokio::time::sleep(o.resync * 2 + Duration::from_secs(1)).await;
    let (runs2, same2) = runs.counts();
    let end = Requests::of(&host.stats);
    let idle = Phase {
        seconds: t1.elapsed().as_secs_f64(),
        cpu_ms: (cpu::thread_cpu_ns() - cpu1) as f64 / 1e6,
        runs: runs2 - runs1,
        same_rv_runs: same2 - same1,
        requests: end.since(mid),
    };
    let text = metrics.encode();
    let _ = stop_tx.send(());
    running.await?;
    Ok(Figures {
        variant,
        n: o.n,
        converge,
        idle,
        live_reads: samples(&text, "staircase_cache_live_reads_total", "reason"),
        cache_waits: samples(&text, "staircase_cache_waits_total", "")
            .values()
            .sum(),
    })
}

/// Reads every `T` in `ns` into a reflector store (each object passed through `transform`) and
/// returns the store once it holds them all (the watch behind it ended).
async fn fill<T>(client: &kube::Client, ns: &str, transform: fn(&mut ObjectMeta)) -> Store<T>
where
    T: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let api: Api<T> = Api::namespaced(client.clone(), ns);
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).modify(move |o: &mut T| transform(o.meta_mut())),
    );
    let mut stream = std::pin::pin!(stream);
    while let Some(ev) = stream.next().await {
        if matches!(ev, Ok(watcher::Event::InitDone)) {
            break;
        }
    }
    reader
}

/// Bytes the children of `ns` take in reflector stores, per object: whole and with the default
/// transform. Run on a thread of its own (the allocator counts per thread).
pub fn store_memory(url: &str, ns: &str) -> anyhow::Result<StoreMemory> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = client(url);
        // Opens the connection first: its buffers are not the stores'.
        let _ = Api::<ConfigMap>::namespaced(client.clone(), ns)
            .list(&ListParams::default().limit(1))
            .await?;
        let measure = |transform: fn(&mut ObjectMeta)| {
            let client = client.clone();
            async move {
                let before = alloc::snapshot().live;
                let stores = (
                    fill::<ConfigMap>(&client, ns, transform).await,
                    fill::<Secret>(&client, ns, transform).await,
                    fill::<Service>(&client, ns, transform).await,
                );
                let held = alloc::snapshot().live - before;
                let objects =
                    stores.0.state().len() + stores.1.state().len() + stores.2.state().len();
                (objects, held)
            }
        };
        let (objects, whole) = measure(|_| {}).await;
        let (again, trimmed) = measure(OperatorConfig::default().cache_transform).await;
        anyhow::ensure!(
            objects == again && objects > 0,
            "stores differ: {objects} and {again}"
        );
        Ok(StoreMemory {
            objects,
            whole_bytes_per_object: whole as f64 / objects as f64,
            staircase_bytes_per_object: trimmed as f64 / objects as f64,
        })
    })
}

/// Runs both variants and the store measurement on a fresh server; returns them with the
/// markdown report.
pub fn run(o: &Options) -> anyhow::Result<(Vec<Figures>, StoreMemory)> {
    let host = Host::start();
    let mut figures = Vec::new();
    for (i, variant) in [Variant::Cached, Variant::Live].into_iter().enumerate() {
        let ns = format!("reads-{i}");
        let (url, o2) = (&host, o.clone());
        let f = std::thread::scope(|s| {
            s.spawn(|| {
                cpu::pin_this_thread(1);
                run_variant(url, variant, &ns, &o2)
            })
            .join()
            .expect("variant thread")
        })?;
        eprintln!(
            "{variant:?}: converged in {:.1} s, idle reads {}",
            f.converge.seconds,
            f.idle.requests.reads()
        );
        figures.push(f);
    }
    let mem = std::thread::scope(|s| {
        s.spawn(|| {
            cpu::pin_this_thread(1);
            store_memory(&host.url, "reads-0")
        })
        .join()
        .expect("memory thread")
    })?;
    Ok((figures, mem))
}

/// How to read the table.
const NOTES: &str = "
Reads are GETs and LISTs of any resource; the cached variant's caches fill from streaming lists
(one WATCH each, no LIST; the extra WATCH is the operator's probe for them), the live variant
watches only the `Foo`s. Its idle requests are the resync audit's: one metadata-only LIST of the
`Foo`s per resync period, 500 objects a page. The status writes are the runtime's
(`with_status()`: the conditions rewritten on every change), the same in both variants.
";

/// The figures as markdown.
pub fn markdown(o: &Options, figures: &[Figures], mem: &StoreMemory, machine: &str) -> String {
    let mut s = String::new();
    let n = o.n as f64;
    s.push_str(&format!(
        "# Cached reads: the Foo operator at N = {}\n\n{machine}\n\nResync period {} s (idle phase: two of them and 1 s), concurrency {}. \
         One repetition; requests as the embedded API server counted them.\n\n",
        o.n,
        o.resync.as_secs(),
        o.concurrency
    ));
    s.push_str("| | cached (`owns`) | live (no child kind declared) |\n|---|---:|---:|\n");
    let row = |s: &mut String, name: &str, f: &dyn Fn(&Figures) -> String| {
        s.push_str(&format!("| {name} |"));
        for fig in figures {
            s.push_str(&format!(" {} |", f(fig)));
        }
        s.push('\n');
    };
    let per = |x: u64, d: f64| format!("{:.2}", x as f64 / d);
    row(&mut s, "converge: reads (GET + LIST) per object", &|f| {
        per(f.converge.requests.reads(), n)
    });
    row(
        &mut s,
        "converge: writes per object (status included)",
        &|f| per(f.converge.requests.writes, n),
    );
    row(&mut s, "converge: status writes per object", &|f| {
        per(f.converge.requests.status_writes, n)
    });
    row(&mut s, "converge: watches opened", &|f| {
        f.converge.requests.watch.to_string()
    });
    row(&mut s, "converge: runs per object", &|f| {
        per(f.converge.runs, n)
    });
    row(
        &mut s,
        "converge: runs at an unchanged resourceVersion",
        &|f| f.converge.same_rv_runs.to_string(),
    );
    row(&mut s, "converge: wall time, s", &|f| {
        format!("{:.2}", f.converge.seconds)
    });
    row(&mut s, "converge: operator CPU per object, µs", &|f| {
        format!("{:.0}", f.converge.cpu_ms * 1000.0 / n)
    });
    row(&mut s, "idle: runs", &|f| f.idle.runs.to_string());
    row(&mut s, "idle: reads per run", &|f| {
        if f.idle.runs == 0 {
            "–".into()
        } else {
            per(f.idle.requests.reads(), f.idle.runs as f64)
        }
    });
    row(&mut s, "idle: requests (all verbs)", &|f| {
        let r = f.idle.requests;
        (r.reads() + r.watch + r.writes).to_string()
    });
    row(&mut s, "idle: requests per hour per 1,000 objects", &|f| {
        let r = f.idle.requests;
        let total = (r.reads() + r.watch + r.writes) as f64;
        format!("{:.0}", total / f.idle.seconds * 3600.0 * 1000.0 / n)
    });
    row(&mut s, "idle: operator CPU per run, µs", &|f| {
        if f.idle.runs == 0 {
            "–".into()
        } else {
            format!("{:.0}", f.idle.cpu_ms * 1000.0 / f.idle.runs as f64)
        }
    });
    row(&mut s, "live-read fallbacks (by reason)", &|f| {
        if f.live_reads.is_empty() {
            "0".into()
        } else {
            f.live_reads
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    });
    row(&mut s, "reads that waited for a watermark", &|f| {
        f.cache_waits.to_string()
    });
    s.push_str(NOTES);
    s.push_str(&format!(
        "\n**Memory per cached child object** ({} ConfigMaps, Secrets and Services the cached variant created, \
         read into kube-runtime reflector stores; bytes requested from the allocator, store and objects):\n\n\
         | kube-runtime store, objects whole | with the staircase's default transform | ratio |\n|---:|---:|---:|\n\
         | {:.0} B | {:.0} B | {:.2} |\n",
        mem.objects,
        mem.whole_bytes_per_object,
        mem.staircase_bytes_per_object,
        mem.staircase_bytes_per_object / mem.whole_bytes_per_object
    ));
    s
}
