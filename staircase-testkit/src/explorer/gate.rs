//! The gate: the client layer every operator under exploration talks through. It numbers each
//! committed write (Kubernetes or external), so "crash right after write i" and "write i's
//! response is lost" hit exactly the same point in every replay, and it keeps the write log the
//! end-of-case checks (duplicates, destructive writes, the one-write rule) read.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use kube::client::Body;
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

    fn alive(&self, incarnation: u64) -> bool {
        self.incarnation.load(Ordering::SeqCst) == incarnation
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

fn is_write(m: &Method) -> bool {
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
        let counted = is_write(req.method())
            && !req.uri().query().is_some_and(|q| q.contains("dryRun="))
            && !req.uri().path().contains("/events");
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let json_patch = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json-patch"));
        Box::pin(async move {
            if !svc.gate.alive(svc.incarnation) {
                return futures::future::pending().await;
            }
            // Finalizer removal is only visible in the body; JSON patches are small, so peek.
            let (req, removes_finalizer) = if json_patch {
                let (parts, body) = req.into_parts();
                let bytes = http_body_util::BodyExt::collect(body)
                    .await
                    .map_err(|e| kube::Error::Service(e.into()))?
                    .to_bytes();
                let text = String::from_utf8_lossy(&bytes);
                let removes = text.contains("\"remove\"") && text.contains("/metadata/finalizers");
                (
                    Request::from_parts(parts, Body::from(bytes.to_vec())),
                    removes,
                )
            } else {
                (req, false)
            };
            let res = svc.inner.send(req).await;
            if !svc.gate.alive(svc.incarnation) {
                return futures::future::pending().await;
            }
            let status = match &res {
                Ok(r) => r.status().as_u16(),
                Err(_) => return res,
            };
            if !counted || !(200..300).contains(&status) {
                return res;
            }
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
