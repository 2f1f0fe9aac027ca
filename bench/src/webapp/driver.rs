//! The webapp benchmark's driver: for each variant in turn, a fresh `staircase-apiserver`
//! process (pinned to CPU 0) and the variant's operator process (pinned to CPU 1), through the
//! phases create, edit, idle, restart and delete; requests from the server's
//! `GET /staircase/stats` (split by client program), CPU and memory from `/proc`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{CustomResourceExt, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{RECORDS_NAMESPACE, WebApp, WebAppSpec, kubelet};

/// The client programs (`User-Agent`) of the driver and of the kubelet stub; every other
/// client's requests are the operator's.
pub const DRIVER_AGENT: &str = "staircase-bench-driver";
/// See [`DRIVER_AGENT`].
pub const KUBELET_AGENT: &str = "staircase-bench-kubelet";

/// The namespace of the WebApps.
pub const NAMESPACE: &str = "webapps";

/// The three operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Variant {
    /// `webapp-staircase`.
    Staircase,
    /// `webapp-kube`.
    KubeRuntime,
    /// `webapp-go`.
    ControllerRuntime,
}

impl Variant {
    /// Every variant, in the order they run.
    pub const ALL: [Variant; 3] = [
        Variant::Staircase,
        Variant::KubeRuntime,
        Variant::ControllerRuntime,
    ];

    /// The name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Staircase => "staircase",
            Variant::KubeRuntime => "kube-runtime",
            Variant::ControllerRuntime => "controller-runtime",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// WebApps.
    pub n: usize,
    /// Every operator's resync period; the idle phase lasts two of them.
    pub resync: Duration,
    /// Concurrent reconciles, the same for every operator.
    pub concurrency: u16,
    /// Longest a phase may take.
    pub timeout: Duration,
    /// The variants, in order.
    pub variants: Vec<Variant>,
    /// The `staircase-apiserver` binary.
    pub server_bin: PathBuf,
    /// The `webapp-staircase` and `webapp-kube` binaries' directory.
    pub bin_dir: PathBuf,
    /// The `webapp-go` binary.
    pub go_bin: PathBuf,
    /// Whether to pin the server to CPU 0 and the operator to CPU 1.
    pub pin: bool,
    /// A phase whose operator never goes quiet for a second (kube-runtime's requeues at a
    /// large N keep it busy) ends this long after it converged; `None`: wait for quiet.
    pub tail: Option<Duration>,
}

/// Requests of one client group over a phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Requests {
    /// GETs and LISTs.
    pub reads: u64,
    /// WATCHes opened.
    pub watches: u64,
    /// Successful writes (create, update, patch, delete), status included.
    pub writes: u64,
    /// Of the writes, those that changed nothing (same resourceVersion before and after).
    pub noop_writes: u64,
    /// Write requests that failed (conflicts, not found, ...).
    pub failed_writes: u64,
    /// By `verb resource[/subresource]`.
    pub by_resource: BTreeMap<String, u64>,
}

/// One phase of one variant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phase {
    /// `create`, `edit`, `idle`, `restart`, `delete`.
    pub name: String,
    /// From the phase's start until every object was seen converged (ready, or gone), s;
    /// for `restart`, until the operator's no-op pass ended (its last CPU use or request
    /// before a quiet second); for `idle`, the idle time.
    pub converge_s: f64,
    /// The measurement window: until the operator had been quiet (no request, no CPU) for a
    /// second, s, or until the tail (`--tail-s`) after convergence ran out.
    pub window_s: f64,
    /// Whether the window ended with the tail running out, the operator still busy (absent
    /// from results written before the tail existed).
    #[serde(default)]
    pub cut_by_tail: bool,
    /// The operator's requests.
    pub operator: Requests,
    /// The driver's and the kubelet stub's requests (the same work for every variant).
    pub harness_requests: u64,
    /// Operator process CPU (utime + stime), ms.
    pub operator_cpu_ms: f64,
    /// API server process CPU, ms (it also served the driver and the kubelet stub).
    pub server_cpu_ms: f64,
    /// Operator peak RSS in the phase (VmHWM, reset at the phase's start), KiB.
    pub operator_peak_rss_kib: u64,
    /// Operator RSS at the phase's end (VmRSS), KiB.
    pub operator_rss_kib: u64,
    /// Server peak RSS in the phase, KiB.
    pub server_peak_rss_kib: u64,
    /// For `create` and `edit`: when the driver's watch first saw each WebApp Ready at the
    /// phase's generation, s from the phase's start, ascending. Absent from results written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ready_s: Vec<f64>,
}

/// One variant's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    /// Which.
    pub variant: Variant,
    /// The phases, in order.
    pub phases: Vec<Phase>,
    /// Operator RSS after start-up on an empty namespace (before the create phase), KiB.
    pub operator_idle_rss_kib: u64,
    /// External records left after the delete phase (0 when the finalizer did its work).
    pub records_left: usize,
    /// Objects left in the WebApps' namespace after the delete phase (children GC'd).
    pub children_left: usize,
}

// ---------------------------------------------------------------------------------------------
// Processes

/// `utime + stime` of a process, in ms.
fn proc_cpu_ms(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it are space-separated.
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // After ")": state is field 3, utime 14, stime 15 (1-based) -> indexes 11 and 12.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 * 1000.0 / hz
}

/// A `/proc/PID/status` field in KiB (`VmHWM`, `VmRSS`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Spawns `cmd` pinned to `cpu` (when `pin`).
fn spawn_pinned(mut cmd: Command, cpu: Option<usize>) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt;
    if let Some(cpu) = cpu {
        // SAFETY: the closure runs between fork and exec and only calls sched_setaffinity on a
        // stack value (async-signal-safe; no allocation).
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    Ok(cmd.spawn()?)
}

/// Sends SIGTERM and waits (SIGKILL after 20 s).
fn stop(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

struct Server {
    child: Child,
    url: String,
    kubeconfig: PathBuf,
}

impl Server {
    fn start(o: &Options, dir: &Path) -> anyhow::Result<Server> {
        let kubeconfig = dir.join("kubeconfig");
        let mut cmd = Command::new(&o.server_bin);
        cmd.args(["--port", "0", "--watch-window"])
            .arg((20 * o.n).max(10_000).to_string())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = spawn_pinned(cmd, o.pin.then_some(0))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        anyhow::ensure!(
            line.starts_with("http"),
            "staircase-apiserver printed {line:?}"
        );
        Ok(Server {
            child,
            url: line.trim().to_string(),
            kubeconfig,
        })
    }
}

fn operator_command(o: &Options, v: Variant, kubeconfig: &Path) -> Command {
    let bin = match v {
        Variant::Staircase => o.bin_dir.join("webapp-staircase"),
        Variant::KubeRuntime => o.bin_dir.join("webapp-kube"),
        Variant::ControllerRuntime => o.go_bin.clone(),
    };
    let mut cmd = Command::new(bin);
    cmd.env("KUBECONFIG", kubeconfig)
        .env("WEBAPP_RESYNC_S", o.resync.as_secs().to_string())
        .env("WEBAPP_CONCURRENCY", o.concurrency.to_string())
        .env("RUST_LOG", "warn")
        // Every operator sends JSON (client-go would send built-in kinds as protobuf): the
        // figures compare the operators, not the encodings.
        .env("WEBAPP_JSON", "1")
        .stdout(Stdio::null());
    // The operators' logs, for debugging a variant: `WEBAPP_OPERATOR_LOGS=1`.
    if std::env::var_os("WEBAPP_OPERATOR_LOGS").is_none() {
        cmd.stderr(Stdio::null());
    }
    cmd
}

// ---------------------------------------------------------------------------------------------
// Requests

fn client_as(url: &str, agent: &str) -> anyhow::Result<kube::Client> {
    let mut c = kube::Config::new(url.parse()?);
    c.default_namespace = "default".into();
    c.read_timeout = None;
    c.root_cert = Some(Vec::new());
    c.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&format!("{agent}/v1"))?,
    ));
    Ok(kube::Client::try_from(c)?)
}

async fn stats(client: &kube::Client) -> anyhow::Result<Value> {
    let req = http::Request::get("/staircase/stats").body(Vec::new())?;
    Ok(serde_json::from_str(&client.request_text(req).await?)?)
}

/// The operator's counters (every agent but the driver's and the kubelet's) and the harness's
/// request total.
fn split(stats: &Value) -> (Requests, u64) {
    let mut op = Requests::default();
    let mut harness = 0;
    let empty = serde_json::Map::new();
    for (agent, c) in stats["by_agent"].as_object().unwrap_or(&empty) {
        let verb = |v: &str| c["by_verb"][v].as_u64().unwrap_or(0);
        if agent == DRIVER_AGENT || agent == KUBELET_AGENT {
            harness += c["by_verb"]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_u64).sum::<u64>())
                .unwrap_or(0);
            continue;
        }
        let write_requests: u64 = ["create", "update", "patch", "delete", "deletecollection"]
            .iter()
            .map(|v| verb(v))
            .sum();
        let writes = c["writes"].as_u64().unwrap_or(0);
        op.reads += verb("get") + verb("list");
        op.watches += verb("watch");
        op.writes += writes;
        op.noop_writes += c["unchanged_writes"].as_u64().unwrap_or(0);
        op.failed_writes += write_requests.saturating_sub(writes);
        for (k, n) in c["by_resource"].as_object().unwrap_or(&empty) {
            *op.by_resource.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    (op, harness)
}

fn since(a: &Requests, b: &Requests) -> Requests {
    let mut by_resource = BTreeMap::new();
    for (k, n) in &a.by_resource {
        let d = n - b.by_resource.get(k).copied().unwrap_or(0);
        if d > 0 {
            by_resource.insert(k.clone(), d);
        }
    }
    Requests {
        reads: a.reads - b.reads,
        watches: a.watches - b.watches,
        writes: a.writes - b.writes,
        noop_writes: a.noop_writes - b.noop_writes,
        failed_writes: a.failed_writes - b.failed_writes,
        by_resource,
    }
}

fn total(r: &Requests) -> u64 {
    r.by_resource.values().sum()
}

/// A reading of everything a phase measures.
struct Mark {
    at: Instant,
    op: Requests,
    harness: u64,
    op_cpu: f64,
    server_cpu: f64,
}

struct Run<'a> {
    o: &'a Options,
    driver: kube::Client,
    server_pid: u32,
    op_pid: u32,
    store: Store<WebApp>,
    ready_seen: ReadySeen,
}

/// When the driver's watch first saw each WebApp (name, generation) Ready.
type ReadySeen =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(String, i64), Instant>>>;

impl Run<'_> {
    async fn mark(&self) -> anyhow::Result<Mark> {
        let s = stats(&self.driver).await?;
        let (op, harness) = split(&s);
        Ok(Mark {
            at: Instant::now(),
            op,
            harness,
            op_cpu: proc_cpu_ms(self.op_pid),
            server_cpu: proc_cpu_ms(self.server_pid),
        })
    }

    /// When each WebApp was first seen Ready at `generation`, s after `start`, ascending.
    fn ready_offsets(&self, generation: i64, start: Instant) -> Vec<f64> {
        let seen = self.ready_seen.lock().expect("not poisoned");
        let mut offsets: Vec<f64> = seen
            .iter()
            .filter(|((_, g), _)| *g == generation)
            .map(|(_, t)| t.saturating_duration_since(start).as_secs_f64())
            .collect();
        offsets.sort_by(f64::total_cmp);
        offsets
    }

    fn begin(&self) {
        reset_peak(self.op_pid);
        reset_peak(self.server_pid);
    }

    /// Waits until the operator sent no request and used no CPU for a second; returns the last
    /// moment it was active.
    /// `from` is the reading activity is measured from.
    /// With a tail (`Options::tail`), gives up that long after `since` and says so (`false`).
    async fn quiet(&self, since: Instant, from: &Mark) -> anyhow::Result<(Instant, bool)> {
        let deadline = Instant::now() + self.o.timeout;
        let mut last = (total(&from.op), from.op_cpu);
        let mut active = since;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = (total(&self.mark().await?.op), proc_cpu_ms(self.op_pid));
            if now != last {
                last = now;
                active = Instant::now();
            } else if active.elapsed() >= Duration::from_secs(1) {
                return Ok((active, true));
            }
            if self.o.tail.is_some_and(|t| since.elapsed() >= t) {
                return Ok((Instant::now(), false));
            }
            anyhow::ensure!(Instant::now() < deadline, "the operator never went quiet");
        }
    }

    /// Waits until `done` holds for the store of WebApps; returns when it first did.
    async fn until(
        &self,
        what: &str,
        done: impl Fn(&[std::sync::Arc<WebApp>]) -> bool,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + self.o.timeout;
        loop {
            if done(&self.store.state()) {
                return Ok(Instant::now());
            }
            anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ends the phase `name` begun at `start`: waits until `done` holds and the operator is
    /// quiet, then measures it.
    async fn settle(
        &self,
        name: &str,
        start: &Mark,
        done: impl Fn(&[std::sync::Arc<WebApp>]) -> bool,
    ) -> anyhow::Result<Phase> {
        let converged = self.until(name, done).await?;
        let (_, quiet) = self.quiet(converged, start).await?;
        let end = self.mark().await?;
        eprintln!(
            "  {name}: done in {:.2} s",
            (converged - start.at).as_secs_f64()
        );
        Ok(self.phase(name, start, &end, converged, !quiet))
    }

    fn phase(
        &self,
        name: &str,
        start: &Mark,
        end: &Mark,
        converged: Instant,
        cut_by_tail: bool,
    ) -> Phase {
        Phase {
            name: name.into(),
            converge_s: (converged - start.at).as_secs_f64(),
            window_s: (end.at - start.at).as_secs_f64(),
            cut_by_tail,
            operator: since(&end.op, &start.op),
            harness_requests: end.harness - start.harness,
            operator_cpu_ms: end.op_cpu - start.op_cpu,
            server_cpu_ms: end.server_cpu - start.server_cpu,
            operator_peak_rss_kib: proc_kib(self.op_pid, "VmHWM"),
            operator_rss_kib: proc_kib(self.op_pid, "VmRSS"),
            server_peak_rss_kib: proc_kib(self.server_pid, "VmHWM"),
            ready_s: Vec::new(),
        }
    }
}

fn ready_at(generation: i64, n: usize) -> impl Fn(&[std::sync::Arc<WebApp>]) -> bool {
    move |apps| {
        apps.len() == n
            && apps
                .iter()
                .all(|a| a.metadata.generation.unwrap_or(0) >= generation && a.is_ready())
    }
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// Runs one variant on a fresh server.
pub async fn run_variant(o: &Options, v: Variant) -> anyhow::Result<Figures> {
    let dir =
        std::env::temp_dir().join(format!("webapp-bench-{}-{}", std::process::id(), v.name()));
    std::fs::create_dir_all(&dir)?;
    let mut server = Server::start(o, &dir)?;
    let result = run_on(o, v, &server).await;
    stop(&mut server.child);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_on(o: &Options, v: Variant, server: &Server) -> anyhow::Result<Figures> {
    let driver = client_as(&server.url, DRIVER_AGENT)?;
    let kubelet_client = client_as(&server.url, KUBELET_AGENT)?;
    // Set-up: the CRD, the namespaces, the external records (what the "external system"
    // already holds for every app).
    let crds: Api<CustomResourceDefinition> = Api::all(driver.clone());
    crds.create(&PostParams::default(), &WebApp::crd()).await?;
    let apps: Api<WebApp> = Api::namespaced(driver.clone(), NAMESPACE);
    let t = Instant::now();
    while apps.list(&ListParams::default().limit(1)).await.is_err() {
        anyhow::ensure!(t.elapsed() < Duration::from_secs(10), "CRD never served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ensure_namespace(&driver, NAMESPACE).await?;
    ensure_namespace(&driver, RECORDS_NAMESPACE).await?;
    let records: Api<ConfigMap> = Api::namespaced(driver.clone(), RECORDS_NAMESPACE);
    futures::stream::iter(0..o.n)
        .map(|i| {
            let records = records.clone();
            async move {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(format!("{NAMESPACE}.app-{i}"));
                cm.data = Some([("app".to_string(), format!("{NAMESPACE}/app-{i}"))].into());
                records
                    .create(&PostParams::default(), &cm)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    let kubelet_task = tokio::spawn(kubelet(kubelet_client, NAMESPACE.into()));
    let (reader, writer) = reflector::store();
    let ready_seen = ReadySeen::default();
    let seen = ready_seen.clone();
    let store_task = tokio::spawn(
        reflector::reflector(writer, watcher(apps.clone(), watcher::Config::default())).for_each(
            move |ev| {
                // Stamped as the event arrives, for the convergence curve; the phases' ends
                // are still decided on the store, as before.
                if let Ok(watcher::Event::Apply(app) | watcher::Event::InitApply(app)) = &ev
                    && app.is_ready()
                {
                    let key = (app.name_any(), app.metadata.generation.unwrap_or(0));
                    seen.lock()
                        .expect("not poisoned")
                        .entry(key)
                        .or_insert_with(Instant::now);
                }
                futures::future::ready(())
            },
        ),
    );
    reader.wait_until_ready().await?;

    let cmd = operator_command(o, v, &server.kubeconfig);
    let mut op = spawn_pinned(cmd, o.pin.then_some(1))?;
    let mut run = Run {
        o,
        driver: driver.clone(),
        server_pid: server.child.id(),
        op_pid: op.id(),
        store: reader,
        ready_seen,
    };
    let result = async {
        // Started: its watches are open, then quiet.
        let t = Instant::now();
        while run.mark().await?.op.watches < 4 {
            anyhow::ensure!(
                t.elapsed() < o.timeout,
                "the operator never started watching"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let now = run.mark().await?;
        run.quiet(now.at, &now).await?;
        let idle_rss = proc_kib(run.op_pid, "VmRSS");
        let mut phases = Vec::new();

        // create
        run.begin();
        let start = run.mark().await?;
        futures::stream::iter(0..o.n)
            .map(|i| {
                let apps = apps.clone();
                async move {
                    let spec = WebAppSpec {
                        image: "registry.example/web:1.0".into(),
                        replicas: 2,
                        config: [("GREETING".to_string(), format!("hello {i}"))].into(),
                    };
                    apps.create(
                        &PostParams::default(),
                        &WebApp::new(&format!("app-{i}"), spec),
                    )
                    .await
                    .map(|_| ())
                }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<()>>()
            .await?;
        let mut create = run.settle("create", &start, ready_at(1, o.n)).await?;
        create.ready_s = run.ready_offsets(1, start.at);
        phases.push(create);

        // edit: a new image for every WebApp
        run.begin();
        let start = run.mark().await?;
        let patch = serde_json::json!({"spec": {"image": "registry.example/web:1.1"}});
        futures::stream::iter(0..o.n)
            .map(|i| {
                let (apps, patch) = (apps.clone(), &patch);
                async move {
                    apps.patch(
                        &format!("app-{i}"),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await
                    .map(|_| ())
                }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<()>>()
            .await?;
        let mut edit = run.settle("edit", &start, ready_at(2, o.n)).await?;
        edit.ready_s = run.ready_offsets(2, start.at);
        phases.push(edit);

        // idle: two resync periods and a second
        run.begin();
        let start = run.mark().await?;
        tokio::time::sleep(o.resync * 2 + Duration::from_secs(1)).await;
        let end = run.mark().await?;
        phases.push(run.phase("idle", &start, &end, end.at, false));

        // restart: stop the operator, start it again; until its no-op pass is over
        stop(&mut op);
        let start = run.mark().await?;
        let cmd = operator_command(o, v, &server.kubeconfig);
        op = spawn_pinned(cmd, o.pin.then_some(1))?;
        run.op_pid = op.id();
        let start = Mark {
            op_cpu: 0.0,
            ..start
        };
        let t = Instant::now();
        while run.mark().await?.op.watches < start.op.watches + 4 {
            anyhow::ensure!(
                t.elapsed() < o.timeout,
                "the restarted operator never watched"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (passed, quiet) = run.quiet(start.at, &start).await?;
        let end = run.mark().await?;
        anyhow::ensure!(
            ready_at(2, o.n)(&run.store.state()),
            "not all ready after the restart"
        );
        phases.push(run.phase("restart", &start, &end, passed, !quiet));
        eprintln!(
            "  {}: restart pass over after {:.2} s",
            v.name(),
            (passed - start.at).as_secs_f64()
        );

        // delete
        run.begin();
        let start = run.mark().await?;
        futures::stream::iter(0..o.n)
            .map(|i| {
                let apps = apps.clone();
                async move {
                    apps.delete(&format!("app-{i}"), &DeleteParams::default())
                        .await
                        .map(|_| ())
                }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<()>>()
            .await?;
        phases.push(run.settle("delete", &start, |apps| apps.is_empty()).await?);

        // (Namespaces also hold the server's own `kube-root-ca.crt`: only ours are counted.)
        let records_left = records
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|r| r.name_any().starts_with(&format!("{NAMESPACE}.")))
            .count();
        let ours = ListParams::default().labels("app.kubernetes.io/name=webapp");
        let children_left = Api::<ConfigMap>::namespaced(driver.clone(), NAMESPACE)
            .list(&ours)
            .await?
            .items
            .len()
            + Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(driver.clone(), NAMESPACE)
                .list(&ours)
                .await?
                .items
                .len()
            + Api::<k8s_openapi::api::core::v1::Service>::namespaced(driver.clone(), NAMESPACE)
                .list(&ours)
                .await?
                .items
                .len();
        Ok(Figures {
            variant: v,
            phases,
            operator_idle_rss_kib: idle_rss,
            records_left,
            children_left,
        })
    }
    .await;
    stop(&mut op);
    kubelet_task.abort();
    store_task.abort();
    result
}

// ---------------------------------------------------------------------------------------------
// Report

/// The figures as markdown: one table per phase, a column per variant.
pub fn markdown(o: &Options, figures: &[Figures], about: &str) -> String {
    let n = o.n as f64;
    let mut s = format!("# The webapp benchmark at N = {}\n\n{about}\n\n", o.n);
    s.push_str(&format!(
        "Each variant ran as its own process (pinned to CPU 1: {pin}) against a fresh `staircase-apiserver` \
         process (release build, pinned to CPU 0: {pin}); the driver and its kubelet stub ran unpinned in a third process. \
         Resync period {resync} s for every operator (staircase `with_resync`, kube-runtime `Action::requeue`, \
         controller-runtime `Cache.SyncPeriod`); {c} concurrent reconciles for every operator. One run per variant; \
         requests are the server's exact counts, CPU and memory single samples on a shared machine.\n\n",
        pin = o.pin,
        resync = o.resync.as_secs(),
        c = o.concurrency,
    ));
    let header = |s: &mut String, title: &str| {
        s.push_str(&format!("## {title}\n\n|  |"));
        for f in figures {
            s.push_str(&format!(" {} |", f.variant.name()));
        }
        s.push_str("\n|---|");
        for _ in figures {
            s.push_str("---:|");
        }
        s.push('\n');
    };
    let row = |s: &mut String, name: &str, f: &dyn Fn(&Figures) -> String| {
        s.push_str(&format!("| {name} |"));
        for fig in figures {
            s.push_str(&format!(" {} |", f(fig)));
        }
        s.push('\n');
    };
    let names = ["create", "edit", "idle", "restart", "delete"];
    for (i, name) in names.iter().enumerate() {
        let ph = |f: &Figures| f.phases.get(i).cloned().unwrap_or_default();
        let title = match *name {
            "create" => "create N WebApps, until all Ready",
            "edit" => "edit the image of all N, until all Ready again",
            "idle" => "idle through two resync periods",
            "restart" => "restart the operator (stop, start: relist and no-op pass)",
            _ => "delete all N, until gone (finalizer: external record removed)",
        };
        header(&mut s, &format!("{name}: {title}"));
        let per = |x: u64| format!("{:.2}", x as f64 / n);
        match *name {
            "idle" => row(&mut s, "idle time, s", &|f| {
                format!("{:.1}", ph(f).converge_s)
            }),
            "restart" => row(&mut s, "restart to end of no-op pass, s", &|f| {
                format!("{:.2}", ph(f).converge_s)
            }),
            _ => row(&mut s, "time to converge, s", &|f| {
                format!("{:.2}", ph(f).converge_s)
            }),
        }
        if figures.iter().any(|f| ph(f).cut_by_tail) {
            row(
                &mut s,
                "measured until (operator never quiet: cut by the tail)",
                &|f| {
                    let p = ph(f);
                    let how = if p.cut_by_tail { "tail" } else { "quiet" };
                    format!("{:.1} s ({how})", p.window_s)
                },
            );
        }
        row(&mut s, "reads (GET + LIST) per object", &|f| {
            per(ph(f).operator.reads)
        });
        row(&mut s, "writes per object", &|f| per(ph(f).operator.writes));
        row(&mut s, "of which no-op writes per object", &|f| {
            per(ph(f).operator.noop_writes)
        });
        row(&mut s, "failed writes per object", &|f| {
            per(ph(f).operator.failed_writes)
        });
        row(&mut s, "watches opened", &|f| {
            ph(f).operator.watches.to_string()
        });
        row(&mut s, "operator CPU per object, µs", &|f| {
            format!("{:.0}", ph(f).operator_cpu_ms * 1000.0 / n)
        });
        row(&mut s, "API server CPU per object, µs", &|f| {
            format!("{:.0}", ph(f).server_cpu_ms * 1000.0 / n)
        });
        row(&mut s, "operator RSS peak / end, MiB", &|f| {
            let p = ph(f);
            format!(
                "{:.1} / {:.1}",
                p.operator_peak_rss_kib as f64 / 1024.0,
                p.operator_rss_kib as f64 / 1024.0
            )
        });
        row(&mut s, "API server RSS peak, MiB", &|f| {
            format!("{:.1}", ph(f).server_peak_rss_kib as f64 / 1024.0)
        });
        row(&mut s, "driver + kubelet stub requests", &|f| {
            ph(f).harness_requests.to_string()
        });
        s.push('\n');
    }
    header(&mut s, "totals and checks");
    row(&mut s, "operator RSS before the create phase, MiB", &|f| {
        format!("{:.1}", f.operator_idle_rss_kib as f64 / 1024.0)
    });
    row(&mut s, "requests per object, all phases", &|f| {
        let t: u64 = f.phases.iter().map(|p| total(&p.operator)).sum();
        format!("{:.2}", t as f64 / n)
    });
    row(&mut s, "operator CPU per object, all phases, µs", &|f| {
        let t: f64 = f.phases.iter().map(|p| p.operator_cpu_ms).sum();
        format!("{:.0}", t * 1000.0 / n)
    });
    row(&mut s, "API server CPU per object, all phases, µs", &|f| {
        let t: f64 = f.phases.iter().map(|p| p.server_cpu_ms).sum();
        format!("{:.0}", t * 1000.0 / n)
    });
    row(&mut s, "external records left after delete", &|f| {
        f.records_left.to_string()
    });
    row(&mut s, "children left after delete", &|f| {
        f.children_left.to_string()
    });
    s.push_str("\n## Operator requests by verb and resource, per object\n\n");
    for f in figures {
        s.push_str(&format!("**{}**: ", f.variant.name()));
        let parts: Vec<String> = f
            .phases
            .iter()
            .map(|p| {
                let items: Vec<String> = p
                    .operator
                    .by_resource
                    .iter()
                    .map(|(k, v)| format!("{k} {:.2}", *v as f64 / n))
                    .collect();
                format!(
                    "{}: {}",
                    p.name,
                    if items.is_empty() {
                        "none".into()
                    } else {
                        items.join(", ")
                    }
                )
            })
            .collect();
        s.push_str(&parts.join("; "));
        s.push_str("\n\n");
    }
    s
}
