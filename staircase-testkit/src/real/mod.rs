//! A harness for tests against the genuine Kubernetes API server.
//!
//! [`RealApiServer`] starts etcd, kube-apiserver v1.37.2 and kube-controller-manager (built from
//! their Go modules by `bash scripts/real-apiserver/build.sh`, cached in
//! `~/.cache/staircase/k8s-v1.37.2/bin`) on free loopback ports, writes a kubeconfig that
//! authenticates with a `system:masters` bearer token and trusts a freshly generated CA, and
//! hands out [`kube::Client`]s and per-test namespaces.
//!
//! Every process it starts is killed by its pid when the [`RealApiServer`] is dropped (also while
//! a test unwinds from a panic), when the test process exits (for the [`RealApiServer::shared`]
//! instance, via `atexit`), and, as a last resort, by the kernel when the test process dies
//! (`PR_SET_PDEATHSIG`).
//!
//! ```no_run
//! # async fn demo() {
//! use staircase_testkit::real::shared_or_skip;
//! // `None` (after printing how to build the binaries) when they are missing and CI != "true".
//! let Some(server) = shared_or_skip("my_test").await else { return };
//! let ns = server.namespace("my-test").await.unwrap();
//! let _client = ns.client();
//! # }
//! ```
//!
//! Environment variables:
//! - `STAIRCASE_K8S_BIN`: directory holding `kube-apiserver`, `kube-controller-manager` and
//!   `etcd` (default `$STAIRCASE_K8S_CACHE/bin`, `STAIRCASE_K8S_CACHE` defaulting to
//!   `~/.cache/staircase/k8s-v1.37.2`).
//! - `STAIRCASE_REAL_START_TIMEOUT_SECS`: readiness deadline (default 180).
//! - `STAIRCASE_REAL_KEEP_DIR=1`: keep the scratch directory (logs, certificates, kubeconfig).
//! - `CI=true`: [`shared_or_skip`] fails instead of skipping when the binaries are missing.

mod certs;
mod kubeconfig;
mod processes;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, Resource};
use kube::core::NamespaceResourceScope;
use serde_json::{Value, json};

pub use kubeconfig::ADMIN_USER;
pub use processes::ChildProcess;
use processes::{ScratchDir, free_port};

/// The Kubernetes version the build script produces and the harness expects.
pub const K8S_VERSION: &str = "v1.37.2";

/// kube-controller-manager controllers the harness turns off: node, cloud and IP management
/// (no nodes, no cloud) and the workload controllers (no nodes to run pods; tests own the status
/// of the workload objects they create). Everything else runs: garbage collector, namespace
/// deletion, ServiceAccounts, the root-CA publisher, ... (The cloud controllers are not part
/// of kube-controller-manager any more; an unknown name here would stop it from starting.)
pub const DISABLED_CONTROLLERS: [&str; 10] = [
    "node-ipam-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "persistentvolume-attach-detach-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
];

/// The command that builds the real binaries (run from the repository root).
pub const BUILD_COMMAND: &str = "bash scripts/real-apiserver/build.sh";

/// Why the real server is not available.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RealError {
    /// The binaries have not been built (or not where the harness looks).
    #[error(
        "the real kube-apiserver {K8S_VERSION} binaries are missing ({missing}) in {dir}; \
         build them once with `{BUILD_COMMAND}` (about 10 minutes on 2 cores, once; cached outside the repository)"
    )]
    BinariesMissing {
        /// The directory searched.
        dir: PathBuf,
        /// The missing file names, comma-separated.
        missing: String,
    },
    /// A process failed to start or did not become ready in time (with log excerpts).
    #[error("real kube-apiserver harness: {0}")]
    Start(String),
}

/// Where the three binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `kube-apiserver` ([`K8S_VERSION`]).
    pub kube_apiserver: PathBuf,
    /// `kube-controller-manager` ([`K8S_VERSION`]).
    pub kube_controller_manager: PathBuf,
    /// `etcd` (the version `k8s.io/kubernetes` requires, from its Go module).
    pub etcd: PathBuf,
}

impl Binaries {
    /// The directory searched: `$STAIRCASE_K8S_BIN`, else `$STAIRCASE_K8S_CACHE/bin`, else
    /// `~/.cache/staircase/k8s-v1.37.2/bin` (the build script's defaults).
    pub fn bin_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("STAIRCASE_K8S_BIN") {
            return dir.into();
        }
        if let Some(cache) = std::env::var_os("STAIRCASE_K8S_CACHE") {
            return PathBuf::from(cache).join("bin");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/root".into());
        home.join(".cache/staircase")
            .join(format!("k8s-{K8S_VERSION}"))
            .join("bin")
    }

    /// Finds the binaries in [`Binaries::bin_dir`], or says which are missing.
    pub fn locate() -> Result<Binaries, RealError> {
        let dir = Self::bin_dir();
        let names = ["kube-apiserver", "kube-controller-manager", "etcd"];
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !dir.join(n).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(RealError::BinariesMissing {
                dir,
                missing: missing.join(", "),
            });
        }
        Ok(Binaries {
            kube_apiserver: dir.join("kube-apiserver"),
            kube_controller_manager: dir.join("kube-controller-manager"),
            etcd: dir.join("etcd"),
        })
    }
}

/// A running etcd + kube-apiserver + kube-controller-manager, stopped when dropped.
#[derive(Debug)]
pub struct RealApiServer {
    processes: Vec<ChildProcess>,
    url: String,
    kubeconfig: PathBuf,
    config: kube::Config,
    startup: Duration,
    // Dropped after the processes are killed (see `Drop`).
    dir: ScratchDir,
    etcd_dir: Option<ScratchDir>,
}

fn start_err(msg: impl Into<String>) -> RealError {
    RealError::Start(msg.into())
}

impl RealApiServer {
    /// Starts a server of its own (a few seconds; see the crate README for figures), using
    /// [`Binaries::locate`].
    pub async fn start() -> Result<RealApiServer, RealError> {
        Self::start_with(&Binaries::locate()?).await
    }

    /// The server shared by every test of this test binary: started by the first caller,
    /// stopped when the test process exits. Give each test its own namespace
    /// ([`RealApiServer::namespace`]) and its own client (clients are bound to the calling
    /// test's tokio runtime, so never keep one across tests).
    pub async fn shared() -> Result<&'static RealApiServer, RealError> {
        let r = SHARED
            .get_or_init(|| async {
                let r = RealApiServer::start().await;
                if r.is_ok() {
                    // SAFETY: registering a plain `extern "C" fn()`.
                    unsafe {
                        libc::atexit(stop_shared_at_exit);
                    }
                }
                r
            })
            .await;
        r.as_ref().map_err(Clone::clone)
    }

    /// Starts etcd, kube-apiserver and kube-controller-manager from `bins` and waits until the
    /// API server is ready (`/readyz`) and the controller manager has created the `default`
    /// ServiceAccount in namespace `default`.
    pub async fn start_with(bins: &Binaries) -> Result<RealApiServer, RealError> {
        let started = Instant::now();
        let io = |what: &str, e: std::io::Error| start_err(format!("{what}: {e}"));
        let dir =
            ScratchDir::new_in(&std::env::temp_dir()).map_err(|e| io("create scratch dir", e))?;
        // Test data is thrown away: tmpfs where there is one, and no fsync either way.
        let shm = Path::new("/dev/shm");
        let etcd_dir = if shm.is_dir() {
            ScratchDir::new_in(shm).ok()
        } else {
            None
        };
        let etcd_data = etcd_dir
            .as_ref()
            .map_or_else(|| dir.path().join("etcd"), |d| d.path().join("etcd"));
        let d = dir.path().to_path_buf();

        let certs = certs::generate(&d)?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let tokens = d.join("tokens.csv");
        kubeconfig::write_token_file(&tokens, &token).map_err(|e| io("write token file", e))?;
        let (etcd_port, peer_port, api_port) = (
            free_port().map_err(|e| io("free port", e))?,
            free_port().map_err(|e| io("free port", e))?,
            free_port().map_err(|e| io("free port", e))?,
        );
        let url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig_path = d.join("kubeconfig");
        kubeconfig::write_kubeconfig(&kubeconfig_path, &url, &certs.ca_crt, &token)
            .map_err(|e| io("write kubeconfig", e))?;
        let config = config_from(&kubeconfig_path).await?;

        let mut server = RealApiServer {
            processes: Vec::new(),
            url,
            kubeconfig: kubeconfig_path.clone(),
            config,
            startup: Duration::ZERO,
            dir,
            etcd_dir,
        };
        let p = |p: &Path| p.display().to_string();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        server.spawn(
            "etcd",
            &bins.etcd,
            vec![
                "--name=staircase".into(),
                format!("--data-dir={}", p(&etcd_data)),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=staircase={peer_url}"),
                "--log-level=warn".into(),
                "--unsafe-no-fsync".into(),
            ],
        )?;
        server.spawn(
            "kube-apiserver",
            &bins.kube_apiserver,
            vec![
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", p(&d)),
                format!("--tls-cert-file={}", p(&certs.serving_crt)),
                format!("--tls-private-key-file={}", p(&certs.serving_key)),
                format!("--token-auth-file={}", p(&tokens)),
                "--authorization-mode=RBAC".into(),
                format!("--service-account-key-file={}", p(&certs.sa_pub)),
                format!("--service-account-signing-key-file={}", p(&certs.sa_key)),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                // Endpoints may not hold loopback addresses; nothing routes to them anyway.
                "--endpoint-reconciler-type=none".into(),
                "--profiling=false".into(),
                // Alpha in 1.37: list and watch split by `shardSelector`, which sharded
                // operators use where a server honours it.
                "--feature-gates=ShardedListAndWatch=true".into(),
            ],
        )?;
        let deadline = started + start_timeout();
        let client = server.client();
        server
            .wait_until("kube-apiserver /readyz", deadline, || {
                let client = client.clone();
                async move {
                    let req = http::Request::get("/readyz")
                        .body(Vec::new())
                        .map_err(|e| e.to_string())?;
                    client
                        .request_text(req)
                        .await
                        .map(|_| true)
                        .map_err(|e| e.to_string())
                }
            })
            .await?;
        server.spawn(
            "kube-controller-manager",
            &bins.kube_controller_manager,
            vec![
                format!("--kubeconfig={}", p(&kubeconfig_path)),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                // Also without the workload controllers: there are no nodes to run pods on, and
                // tests (like the embedded server, which has no controllers) own the status of
                // the Deployments, ReplicaSets, StatefulSets and Jobs they create.
                format!(
                    "--controllers=*,{}",
                    DISABLED_CONTROLLERS.map(|c| format!("-{c}")).join(",")
                ),
                "--allocate-node-cidrs=false".into(),
                format!("--service-account-private-key-file={}", p(&certs.sa_key)),
                format!("--root-ca-file={}", p(&certs.ca_crt)),
                "--use-service-account-credentials=false".into(),
                "--profiling=false".into(),
            ],
        )?;
        server
            .wait_until(
                "kube-controller-manager (ServiceAccount default/default)",
                deadline,
                || default_service_account_ready(client.clone(), "default".to_string()),
            )
            .await?;
        server.startup = started.elapsed();
        tracing::info!(url = %server.url, startup = ?server.startup, "real kube-apiserver ready");
        Ok(server)
    }

    fn spawn(
        &mut self,
        name: &'static str,
        program: &Path,
        args: Vec<String>,
    ) -> Result<(), RealError> {
        let log = self.dir.path().join(format!("{name}.log"));
        let child = ChildProcess::spawn(name, program, &args, log)
            .map_err(|e| start_err(format!("cannot start {}: {e}", program.display())))?;
        self.processes.push(child);
        Ok(())
    }

    async fn wait_until<F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        mut check: F,
    ) -> Result<(), RealError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, String>>,
    {
        loop {
            for p in &self.processes {
                if let Some(status) = p.exited() {
                    return Err(start_err(format!(
                        "{} exited ({status}) while waiting for {what}; its log ({}) ends with:\n{}",
                        p.name(),
                        p.log_path().display(),
                        p.log_tail(40)
                    )));
                }
            }
            let last = match check().await {
                Ok(true) => return Ok(()),
                Ok(false) => "not yet".to_string(),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .processes
                    .iter()
                    .map(|p| format!("--- {}:\n{}", p.name(), p.log_tail(15)))
                    .collect();
                return Err(start_err(format!(
                    "timed out waiting for {what} (last: {last}); logs in {}:\n{}",
                    self.dir.path().display(),
                    logs.join("\n")
                )));
            }
            // Readiness polling interval, bounded by the deadline above.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new client for this server, authenticated as [`ADMIN_USER`] (`system:masters`).
    ///
    /// Must be called inside a tokio runtime; the client is bound to that runtime.
    ///
    /// # Panics
    /// If the client cannot be built (it is built from a configuration that worked at startup).
    pub fn client(&self) -> Client {
        Client::try_from(self.config()).expect("build a kube::Client for the real kube-apiserver")
    }

    /// The client configuration (the kubeconfig's, as loaded by kube).
    pub fn config(&self) -> kube::Config {
        self.config.clone()
    }

    /// The kubeconfig file (token auth, trusts the generated CA); valid while the server runs.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How long [`RealApiServer::start`] took until everything was ready.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The processes, in start order: etcd, kube-apiserver, kube-controller-manager.
    pub fn processes(&self) -> &[ChildProcess] {
        &self.processes
    }

    /// The scratch directory (logs, certificates, kubeconfig, token file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a fresh namespace named `<prefix>-<n>-<random>` and waits until the controller
    /// manager has settled it: its `default` ServiceAccount exists (so pods can be created)
    /// and the root-CA publisher has put `kube-root-ca.crt` into it (so nothing appears in it
    /// behind the test's back later).
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace, RealError> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let client = self.client();
        let mut base: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        base = base.trim_matches('-').to_string();
        if base.is_empty() {
            base = "test".into();
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let name = format!("{base}-{n}-{suffix}");
        let body = serde_json::to_vec(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .expect("serialize namespace");
        let req = http::Request::post("/api/v1/namespaces")
            .header("content-type", "application/json")
            .body(body)
            .map_err(|e| start_err(e.to_string()))?;
        client
            .request::<Value>(req)
            .await
            .map_err(|e| start_err(format!("create namespace {name}: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        self.wait_until(&format!("ServiceAccount {name}/default"), deadline, || {
            default_service_account_ready(client.clone(), name.clone())
        })
        .await?;
        self.wait_until(
            &format!("ConfigMap {name}/kube-root-ca.crt"),
            deadline,
            || {
                exists(
                    client.clone(),
                    format!("/api/v1/namespaces/{name}/configmaps/kube-root-ca.crt"),
                )
            },
        )
        .await?;
        Ok(TestNamespace { client, name })
    }

    /// Kills every process (by pid, SIGKILL, then reaps it) and removes the scratch
    /// directories. Idempotent; also done on drop.
    pub fn stop(&self) {
        for p in self.processes.iter().rev() {
            p.kill();
        }
        self.dir.remove();
        if let Some(d) = &self.etcd_dir {
            d.remove();
        }
    }
}

impl Drop for RealApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: tokio::sync::OnceCell<Result<RealApiServer, RealError>> =
    tokio::sync::OnceCell::const_new();

extern "C" fn stop_shared_at_exit() {
    if let Some(Ok(server)) = SHARED.get() {
        server.stop();
    }
}

/// A namespace of a test's own on a [`RealApiServer`], with a client.
#[derive(Clone)]
pub struct TestNamespace {
    client: Client,
    name: String,
}

impl TestNamespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A client (bound to the tokio runtime the namespace was created in).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// An [`Api`] for a namespaced resource in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// For tests: the [shared](RealApiServer::shared) real server, or `None` after printing how to
/// build the binaries when they are missing, so the test can return early and pass.
///
/// # Panics
/// When the binaries are missing and the environment has `CI=true` (a missing real server is a
/// failure in CI), and when the server fails to start for any other reason.
pub async fn shared_or_skip(test: &str) -> Option<&'static RealApiServer> {
    match RealApiServer::shared().await {
        Ok(server) => Some(server),
        Err(e @ RealError::BinariesMissing { .. }) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{e}\n(CI=true: a missing real kube-apiserver is a failure, not a skip)");
            }
            // Written to the stderr handle, not with `eprintln!`, so libtest's output capture
            // does not hide it: a skip must be visible in a plain `cargo test`.
            use std::io::Write;
            static ONCE: std::sync::Once = std::sync::Once::new();
            let mut err = std::io::stderr().lock();
            ONCE.call_once(|| {
                let _ = writeln!(err, "\nSKIPPING real kube-apiserver tests: {e}\n");
            });
            let _ = writeln!(err, "SKIPPED {test} (no real kube-apiserver; see above)");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn start_timeout() -> Duration {
    let secs = std::env::var("STAIRCASE_REAL_START_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    Duration::from_secs(secs)
}

async fn config_from(path: &Path) -> Result<kube::Config, RealError> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| start_err(format!("read kubeconfig: {e}")))?;
    kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| start_err(format!("load kubeconfig: {e}")))
}

/// Whether the object at `path` exists.
async fn exists(client: Client, path: String) -> Result<bool, String> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match client.request::<Value>(req).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// True once `namespace` has its `default` ServiceAccount (ServiceAccount admission rejects
/// pods before that; their tokens are projected, there is no token Secret to wait for).
async fn default_service_account_ready(client: Client, namespace: String) -> Result<bool, String> {
    exists(
        client,
        format!("/api/v1/namespaces/{namespace}/serviceaccounts/default"),
    )
    .await
}
