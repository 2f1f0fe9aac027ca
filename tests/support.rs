//! Shared helpers for the integration tests: an embedded API server with the test CRDs
//! installed, an operator running in the background, and waits on real conditions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, CustomResourceExt, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use staircase::RunReport;
use staircase_testkit::ApiServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod widget;

/// `Foo` objects for the tests that run the quickstart operator.
pub mod foos {
    use staircase_examples::foo::{Foo, FooSpec};

    /// A new `Foo` in `default`.
    pub fn new_foo(name: &str) -> Foo {
        let mut f = Foo::new(
            name,
            FooSpec {
                message: format!("hi {name}"),
                port: 80,
            },
        );
        f.metadata.namespace = Some("default".into());
        f
    }

    /// Ready at its current generation, as the runtime's status says.
    pub fn ready(foo: Option<&Foo>) -> bool {
        foo.is_some_and(|f| {
            f.status
                .as_ref()
                .is_some_and(|s| s.steps.is_ready_at(f.metadata.generation))
        })
    }
}

/// Plain HTTP/1.1 requests to the operator's endpoint.
pub mod http {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `method path` with `body` on the endpoint at `addr`: (status, body).
    pub async fn request(
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: operator\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.expect("send");
        // A server that refuses a large body may answer and close before reading it all.
        let _ = s.write_all(body).await;
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        let raw = String::from_utf8_lossy(&raw);
        let status = raw
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {raw:?}"));
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// `GET path` on the endpoint at `addr`: (status, body).
    pub async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        request(addr, "GET", path, b"").await
    }
}

/// The echo example run as an operator until its first `e` converged.
pub mod echoes {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{Api, PostParams};
    use staircase::{Operator, OperatorConfig, RunEnd, Stairs};
    use staircase_examples::echo::{EchoServer, EchoServerSpec};

    use super::Running;

    /// Runs `op` (the echo staircase; `with_status`, namespace and owned kinds are added here),
    /// creates the EchoServer `e` in `default` through `client` and waits for a converged run.
    pub async fn run_until_converged<S, M, C>(
        client: kube::Client,
        op: Operator<EchoServer, S, M, C>,
    ) -> Running
    where
        S: Send + Sync + 'static,
        M: Stairs<EchoServer, S>,
        C: Stairs<EchoServer, S>,
    {
        let op = op
            .with_config(OperatorConfig::default().with_namespace("default"))
            .with_status()
            .owns::<Deployment>()
            .owns::<Service>();
        let running = Running::operator(op);
        let echoes: Api<EchoServer> = Api::namespaced(client, "default");
        let spec = EchoServerSpec {
            replicas: 1,
            port: 8080,
        };
        echoes
            .create(&PostParams::default(), &EchoServer::new("e", spec))
            .await
            .unwrap();
        running
            .wait_report(|r| matches!(r.end, RunEnd::Converged))
            .await;
        running
    }
}

/// Upper bound for any wait in a test: a guard against hangs, never a timing assumption.
pub const GUARD: Duration = Duration::from_secs(30);

/// A fresh embedded API server and a client for it.
pub struct Env {
    /// The server (kept alive for the test).
    pub server: ApiServer,
    /// A client talking to it over HTTP.
    pub client: Client,
}

impl Env {
    /// Starts a server and installs the CRDs of `K`s.
    pub async fn start() -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let server = ApiServer::start()
            .await
            .expect("embedded API server starts");
        let client = server.client();
        Env { server, client }
    }

    /// Installs the CRD of `K` and waits until it is Established.
    pub async fn install<K: CustomResourceExt>(&self) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let crd = K::crd();
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD created");
        let name = crd.name_any();
        tokio::time::timeout(
            GUARD,
            await_condition(crds, &name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD established in time")
        .expect("watch works");
    }

    /// Successful writes the server saw on `resource` (plural or `plural.group`), main resource
    /// only (status writes are counted by [`Env::status_writes`]).
    pub fn writes(&self, resource: &str) -> usize {
        self.server
            .stats()
            .requests()
            .iter()
            .filter(|r| {
                r.resource.as_deref() == Some(resource)
                    && r.subresource.is_none()
                    && r.verb.is_some_and(|v| v.is_write())
                    && r.status < 400
            })
            .count()
    }

    /// Successful status-subresource writes on `resource`.
    pub fn status_writes(&self, resource: &str) -> usize {
        self.server
            .stats()
            .requests()
            .iter()
            .filter(|r| {
                r.resource.as_deref() == Some(resource)
                    && r.subresource.as_deref() == Some("status")
                    && r.verb.is_some_and(|v| v.is_write())
                    && r.status < 400
            })
            .count()
    }
}

/// Waits until `cond` holds for the object `name`, failing the test after [`GUARD`].
pub async fn wait_for<K>(api: &Api<K>, name: &str, cond: impl Condition<K>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::time::timeout(GUARD, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("condition on {name} not reached within {GUARD:?}"))
        .expect("watch works");
}

/// Waits until `name` is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    // `conditions::is_deleted` needs the uid; absence is what we mean here.
    wait_for(api, name, |o: Option<&K>| o.is_none()).await;
}

/// Every run report of an operator, shared with the test.
pub type Reports = Arc<Mutex<Vec<RunReport>>>;

/// An operator running in the background until stopped (or dropped, which aborts it: a crash).
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// The reports of its runs so far.
    pub reports: Reports,
}

impl Running {
    /// Spawns `run_until` of an operator built by `build`, which gets the reports handle to
    /// register with `on_run`.
    pub fn spawn<F, Fut>(build: F) -> Running
    where
        F: FnOnce(Reports, oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let reports: Reports = Arc::default();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(build(reports.clone(), stopped));
        Running {
            stop: Some(stop),
            task,
            reports,
        }
    }

    /// Runs `op` in the background, recording its reports, until stopped.
    pub fn operator<K, S, M, C>(op: staircase::Operator<K, S, M, C>) -> Running
    where
        K: staircase::Watchable,
        K::Scope: staircase::ApiScope,
        S: Send + Sync + 'static,
        M: staircase::Stairs<K, S>,
        C: staircase::Stairs<K, S>,
    {
        Running::spawn(move |reports, stop| {
            op.on_run(recorder(reports)).run_until(async {
                stop.await.ok();
            })
        })
    }

    /// Graceful stop: in-flight runs finish.
    pub async fn stop(mut self) -> Vec<RunReport> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.expect("operator task");
        self.reports.lock().expect("reports").clone()
    }

    /// A crash: the operator is dropped wherever it is.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Waits until some report satisfies `pred` (failing the test after [`GUARD`]).
    pub async fn wait_report(&self, pred: impl Fn(&RunReport) -> bool) {
        let found = async {
            while !self.reports.lock().expect("reports").iter().any(&pred) {
                // Reports arrive from the operator's tasks; re-check after each short pause.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(GUARD, found)
            .await
            .expect("the expected run report arrived in time");
    }

    /// A copy of the reports so far.
    pub fn reports(&self) -> Vec<RunReport> {
        self.reports.lock().expect("reports").clone()
    }
}

/// Polls `cond` until it holds, failing the test after [`GUARD`].
pub async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let wait = async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: not reached within {GUARD:?}"));
}

/// Records every report into `reports`.
pub fn recorder(reports: Reports) -> impl Fn(&RunReport) + Send + Sync + 'static {
    move |r| reports.lock().expect("reports").push(r.clone())
}

/// Polls `check` until it holds; panics after `guard` (a bound against hangs, not a timing
/// assumption), naming `what` it waited for.
pub async fn eventually<F, Fut>(guard: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + guard;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {guard:?} waiting for {what}"
        );
        // Poll interval, bounded by the guard above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
