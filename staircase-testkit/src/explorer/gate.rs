//! The gate: the client layer every operator under exploration talks through. It numbers each
//! committed write (Kubernetes or external), so "crash right after write i" and "write i's
//! response is lost" hit exactly the same point in every replay, and it keeps the write log the
//! end-of-case checks (duplicates, destructive writes, the one-write rule) read.
//!
//! In the controller-loop variants it also feeds the stale-view oracle (see [`Gate::watch_primary`]):
//! the server version of every primary object at the moment each destructive request was issued,
//! and every version of a primary object anyone (operator or scenario) wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context as TaskContext, Poll};

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use kube::client::Body;
use kube::core::ApiResource;
use staircase_runtime::children::APPLIED_HASH_ANNOTATION;
use tokio::sync::Notify;

/// One committed write as the gate saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateWrite {
    /// `POST`, `PUT`, `PATCH`, `DELETE`, or `EXTERNAL`.
    pub method: String,
    /// Request path (or `service/operation key` for external calls).
    pub path: String,
    /// HTTP status the server answered.
    pub status: u16,
    /// Whether the operator saw the success (false when the gate lost the response).
    pub visible: bool,
    /// For JSON patches: whether the patch removes a finalizer (a destructive write).
    pub removes_finalizer: bool,
    /// The scenario phase (action index) during which it happened.
    pub phase: usize,
}

impl GateWrite {
    /// Delete, replace, or finalizer removal: writes that destroy what others may rely on.
    pub fn is_destructive(&self) -> bool {
        self.method == "DELETE" || self.method == "PUT" || self.removes_finalizer
    }

    /// A create of a Kubernetes object.
    pub fn is_create(&self) -> bool {
        self.method == "POST"
    }

    /// An effect outside Kubernetes: operation `op` (`create`, `update`, `delete`) of the
    /// record with idempotency key `key` (or the request path) in `service`.
    pub(crate) fn external(op: &str, service: &str, key: &str) -> Self {
        GateWrite {
            method: "EXTERNAL".into(),
            path: format!("{op} {service}/{key}"),
            status: 200,
            visible: true,
            removes_finalizer: false,
            phase: 0,
        }
    }
}

/// Lists the primary objects: `namespace/name` (or `name`) → resourceVersion.
pub(crate) type Lister =
    Arc<dyn Fn() -> BoxFuture<'static, kube::Result<BTreeMap<String, u64>>> + Send + Sync>;

/// A destructive request of the operator, as the stale-view oracle saw it.
#[derive(Debug, Clone)]
pub(crate) struct Destructive {
    pub method: String,
    pub path: String,
    /// A JSON patch removing a finalizer (the runtime's, or a step's).
    pub finalizer: bool,
    /// The object the path names, when it is a primary object (`namespace/name`).
    pub primary: Option<String>,
    /// The HTTP status of the answer (0: none came).
    pub status: u16,
    /// Every primary object's resourceVersion on the server just before the request was sent.
    pub server: BTreeMap<String, u64>,
    /// The scenario phase it was issued in.
    pub phase: usize,
}

/// A version of a primary object, and who wrote it.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub key: String,
    pub rv: u64,
    pub by_operator: bool,
    /// Written through the `/status` subresource.
    pub status: bool,
    pub method: String,
}

/// What the stale-view oracle records.
struct Oracle {
    /// `/api/v1` or `/apis/group/version`.
    prefix: String,
    plural: String,
    list: Lister,
    destructive: Mutex<Vec<Destructive>>,
    history: Mutex<Vec<Version>>,
}

impl Oracle {
    /// `(object key, status subresource)` when `path` addresses the primary resource (the key is
    /// `None` for a collection, e.g. a create).
    fn classify(&self, path: &str) -> Option<(Option<String>, bool)> {
        let rest = path.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let (ns, parts) = match parts.as_slice() {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(*ns), rest),
            _ => (None, parts.as_slice()),
        };
        match parts {
            [p] if *p == self.plural => Some((None, false)),
            [p, name, sub @ ..] if *p == self.plural => {
                let key = match ns {
                    Some(ns) => format!("{ns}/{name}"),
                    None => name.to_string(),
                };
                Some((Some(key), sub.first() == Some(&"status")))
            }
            _ => None,
        }
    }

    fn record(&self, method: &str, status: bool, by_operator: bool, body: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Meta {
            name: Option<String>,
            namespace: Option<String>,
            #[serde(rename = "resourceVersion")]
            resource_version: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Obj {
            kind: Option<String>,
            metadata: Option<Meta>,
        }
        let Ok(o) = serde_json::from_slice::<Obj>(body) else {
            return;
        };
        if o.kind.as_deref() == Some("Status") {
            return;
        }
        let Some(m) = o.metadata else { return };
        let (Some(name), Some(rv)) = (m.name, m.resource_version.and_then(|v| v.parse().ok()))
        else {
            return;
        };
        let key = match m.namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        };
        self.history.lock().expect("oracle history").push(Version {
            key,
            rv,
            by_operator,
            status,
            method: method.to_string(),
        });
    }
}

#[derive(Default)]
struct Plan {
    crash_at: BTreeSet<u64>,
    lose_at: BTreeSet<u64>,
}

/// Shared by all operator incarnations of one case.
#[derive(Default)]
pub struct Gate {
    committed: AtomicU64,
    visible: AtomicU64,
    incarnation: AtomicU64,
    phase: AtomicU64,
    plan: Mutex<Plan>,
    log: Mutex<Vec<GateWrite>>,
    crashed: Notify,
    oracle: OnceLock<Oracle>,
    /// Server-side apply bodies carrying the children step's hash annotation, by that hash.
    applied: Mutex<BTreeMap<String, serde_json::Value>>,
}

/// What the gate does with a committed write.
pub(crate) enum Verdict {
    /// Hand the answer to the operator.
    Deliver,
    /// The operator crashed right after the commit: it never gets an answer.
    Crash,
    /// The answer is lost in transit: the operator sees a connection error.
    Lose,
}

impl Gate {
    /// A gate that lets everything through until [`Gate::set_plan`] says otherwise.
    pub fn new() -> Arc<Self> {
        Arc::new(Gate::default())
    }

    /// Crash the operator right after these committed writes (1-based, counted over the whole
    /// case) and lose the answers of those.
    pub fn set_plan(&self, crash_at: BTreeSet<u64>, lose_at: BTreeSet<u64>) {
        *self.plan.lock().expect("gate plan") = Plan { crash_at, lose_at };
    }

    /// Writes committed so far (including ones whose answer was lost or that crashed).
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// Writes whose success the operator saw.
    pub fn visible(&self) -> u64 {
        self.visible.load(Ordering::SeqCst)
    }

    /// The write log so far.
    pub fn log(&self) -> Vec<GateWrite> {
        self.log.lock().expect("gate log").clone()
    }

    /// The configurations the children step applied, by the hash it stamped on them: the
    /// snapshots name each child's hash by what it hashes (see `compare::Names`).
    pub(crate) fn applied(&self) -> BTreeMap<String, serde_json::Value> {
        self.applied.lock().expect("gate applied").clone()
    }

    /// Remembers the configuration of a server-side apply that carries the children step's
    /// hash annotation.
    fn record_applied(&self, body: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        if let Some(h) = v
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(APPLIED_HASH_ANNOTATION))
            .and_then(serde_json::Value::as_str)
        {
            let h = h.to_string();
            self.applied.lock().expect("gate applied").insert(h, v);
        }
    }

    /// Turns on the stale-view oracle's recording for the primary resource `ar`; `list` reads
    /// the primary objects' versions from the server (through a client the gate does not count).
    pub(crate) fn watch_primary(&self, ar: &ApiResource, list: Lister) {
        let prefix = match ar.group.as_str() {
            "" => format!("/api/{}", ar.version),
            g => format!("/apis/{g}/{}", ar.version),
        };
        let _ = self.oracle.set(Oracle {
            prefix,
            plural: ar.plural.clone(),
            list,
            destructive: Mutex::default(),
            history: Mutex::default(),
        });
    }

    /// The operator's destructive requests in the order they were issued (oracle on).
    pub(crate) fn destructive(&self) -> Vec<Destructive> {
        self.oracle.get().map_or_else(Vec::new, |o| {
            o.destructive.lock().expect("oracle log").clone()
        })
    }

    /// Every version of a primary object written by the operator or the scenario (oracle on).
    pub(crate) fn history(&self) -> Vec<Version> {
        self.oracle.get().map_or_else(Vec::new, |o| {
            o.history.lock().expect("oracle history").clone()
        })
    }

    /// Wraps the explorer's own client so that its writes to primary objects enter the
    /// oracle's history (a user's edit is what makes an operator's view stale).
    pub(crate) fn tap(self: &Arc<Self>, inner: kube::Client) -> kube::Client {
        if self.oracle.get().is_none() {
            return inner;
        }
        let ns = inner.default_namespace().to_string();
        kube::Client::new(
            TapService {
                gate: self.clone(),
                inner,
            },
            ns,
        )
    }

    pub(crate) fn set_phase(&self, phase: usize) {
        self.phase.store(phase as u64, Ordering::SeqCst);
    }

    /// Resolves when the current incarnation crashed.
    pub(crate) async fn crashed(&self) {
        self.crashed.notified().await
    }

    /// A client for a new operator incarnation; earlier incarnations' clients hang from now on,
    /// as a dead process's would.
    pub(crate) fn client(self: &Arc<Self>, inner: kube::Client) -> kube::Client {
        let incarnation = self.incarnation.fetch_add(1, Ordering::SeqCst) + 1;
        let ns = inner.default_namespace().to_string();
        kube::Client::new(
            GateService {
                gate: self.clone(),
                inner,
                incarnation,
            },
            ns,
        )
    }

    /// A client for one of several operator replicas alive at once (shard-handoff variant):
    /// never retired by a crash plan; a replica dies by its own `shards::Life`.
    pub(crate) fn replica_client(self: &Arc<Self>, inner: kube::Client) -> kube::Client {
        let ns = inner.default_namespace().to_string();
        kube::Client::new(
            GateService {
                gate: self.clone(),
                inner,
                incarnation: REPLICA,
            },
            ns,
        )
    }

    fn alive(&self, incarnation: u64) -> bool {
        incarnation == REPLICA || self.incarnation.load(Ordering::SeqCst) == incarnation
    }

    /// Records a committed write and decides what the caller sees.
    pub(crate) fn commit(&self, mut w: GateWrite) -> Verdict {
        let n = self.committed.fetch_add(1, Ordering::SeqCst) + 1;
        w.phase = self.phase.load(Ordering::SeqCst) as usize;
        let plan = self.plan.lock().expect("gate plan");
        let verdict = if plan.crash_at.contains(&n) {
            Verdict::Crash
        } else if plan.lose_at.contains(&n) {
            Verdict::Lose
        } else {
            Verdict::Deliver
        };
        drop(plan);
        w.visible = matches!(verdict, Verdict::Deliver);
        if w.visible {
            self.visible.fetch_add(1, Ordering::SeqCst);
        }
        self.log.lock().expect("gate log").push(w);
        if matches!(verdict, Verdict::Crash) {
            // Retire the incarnation before anyone learns of the crash, so nothing it still has
            // in flight gets through.
            self.incarnation.fetch_add(1, Ordering::SeqCst);
            self.crashed.notify_one();
        }
        verdict
    }
}

#[derive(Clone)]
struct GateService {
    gate: Arc<Gate>,
    inner: kube::Client,
    incarnation: u64,
}

/// The `User-Agent` of operator requests, so fault plans can aim at them and not at the
/// explorer's own reads.
pub(crate) const OPERATOR_AGENT: &str = "staircase-explorer-operator";

/// The incarnation of replica clients (single-operator incarnations count from 1).
const REPLICA: u64 = 0;

pub(crate) fn is_write(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn lost() -> kube::Error {
    kube::Error::Service("explorer: the connection broke before the answer arrived".into())
}

impl tower::Service<Request<Body>> for GateService {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let svc = self.clone();
        req.headers_mut().insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(OPERATOR_AGENT),
        );
        // The replicas' Leases and assignment are the runtime's, not the operator's writes.
        let counted = is_write(req.method())
            && !req.uri().query().is_some_and(|q| q.contains("dryRun="))
            && !req.uri().path().contains("/events")
            && !req.uri().path().contains(super::shards::NAMESPACE);
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let content_type = req.headers().get(http::header::CONTENT_TYPE);
        let json_patch =
            content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/json-patch"));
        let apply =
            content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"));
        Box::pin(async move {
            if !svc.gate.alive(svc.incarnation) {
                return futures::future::pending().await;
            }
            // Finalizer removal is only visible in the body; JSON patches are small, so peek. An
            // apply's body is the configuration its hash annotation stands for.
            let (req, removes_finalizer) = if json_patch || apply {
                let (parts, body) = req.into_parts();
                let bytes = http_body_util::BodyExt::collect(body)
                    .await
                    .map_err(|e| kube::Error::Service(e.into()))?
                    .to_bytes();
                if apply {
                    svc.gate.record_applied(&bytes);
                }
                let text = String::from_utf8_lossy(&bytes);
                let removes = json_patch
                    && text.contains("\"remove\"")
                    && text.contains("/metadata/finalizers");
                (
                    Request::from_parts(parts, Body::from(bytes.to_vec())),
                    removes,
                )
            } else {
                (req, false)
            };
            let oracle = svc.gate.oracle.get().filter(|_| counted);
            let on_primary = oracle.and_then(|o| o.classify(&path));
            let destructive = counted
                && (method == "DELETE" || method == "PUT" || removes_finalizer)
                && oracle.is_some();
            let logged = match oracle {
                Some(o) if destructive => {
                    // Read before sending: what the server held when the operator committed to
                    // the write. Nothing else writes a primary object while its run is in flight
                    // except the scenario, and a scenario write racing the run is exactly the
                    // staleness to report.
                    let server = (o.list)().await.unwrap_or_default();
                    let mut log = o.destructive.lock().expect("oracle log");
                    log.push(Destructive {
                        method: method.clone(),
                        path: path.clone(),
                        finalizer: removes_finalizer,
                        primary: on_primary.as_ref().and_then(|p| p.0.clone()),
                        status: 0,
                        server,
                        phase: svc.gate.phase.load(Ordering::SeqCst) as usize,
                    });
                    Some(log.len() - 1)
                }
                _ => None,
            };
            let res = svc.inner.send(req).await;
            if !svc.gate.alive(svc.incarnation) {
                return futures::future::pending().await;
            }
            let status = match &res {
                Ok(r) => r.status().as_u16(),
                Err(_) => return res,
            };
            if let (Some(o), Some(i)) = (oracle, logged) {
                o.destructive.lock().expect("oracle log")[i].status = status;
            }
            if !counted || !(200..300).contains(&status) {
                return res;
            }
            let res = match (oracle, &on_primary) {
                (Some(o), Some((_, sub))) => {
                    let (parts, body) = res?.into_parts();
                    let bytes = http_body_util::BodyExt::collect(body)
                        .await
                        .map_err(|e| kube::Error::Service(e.into()))?
                        .to_bytes();
                    o.record(&method, *sub, true, &bytes);
                    Ok(Response::from_parts(parts, Body::from(bytes.to_vec())))
                }
                _ => res,
            };
            let w = GateWrite {
                method,
                path,
                status,
                visible: true,
                removes_finalizer,
                phase: 0,
            };
            match svc.gate.commit(w) {
                Verdict::Deliver => res,
                Verdict::Crash => futures::future::pending().await,
                Verdict::Lose => Err(lost()),
            }
        })
    }
}

/// The explorer's own client in the controller-loop variants: records its writes to primary
/// objects for the stale-view oracle, counts nothing, fails nothing.
#[derive(Clone)]
struct TapService {
    gate: Arc<Gate>,
    inner: kube::Client,
}

impl tower::Service<Request<Body>> for TapService {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let svc = self.clone();
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let write = is_write(req.method());
        Box::pin(async move {
            let res = svc.inner.send(req).await?;
            let Some(o) = svc.gate.oracle.get() else {
                return Ok(res);
            };
            let Some((_, sub)) = o.classify(&path).filter(|_| write) else {
                return Ok(res);
            };
            if !res.status().is_success() {
                return Ok(res);
            }
            let (parts, body) = res.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .map_err(|e| kube::Error::Service(e.into()))?
                .to_bytes();
            o.record(&method, sub, false, &bytes);
            Ok(Response::from_parts(parts, Body::from(bytes.to_vec())))
        })
    }
}
