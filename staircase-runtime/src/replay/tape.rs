//! Taping a run: every request its steps and the runtime make, with the answers, in order.
//!
//! The tape is a tokio task-local set around one run ([`taped`]). The [`Taping`] layer sits in
//! the recording operator's client stack; like the write counter it looks at the task-local when
//! the caller polls the response (kube's buffer worker makes the call, the run's task polls it),
//! so requests outside a run (watches, Events, the Lease) pass through untouched. Reads served
//! from a watch cache send no request: [`cached_get`] and [`cached_list`] tape them as the
//! request a read without the cache would have sent.

use std::cell::RefCell;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body_util::{BodyExt, Either, Full};
use kube::api::{GetParams, ListParams};
use kube::client::Body;
use serde_json::Value;

use super::Exchange;
use crate::writes::current_step;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

tokio::task_local! {
    static TAPE: RefCell<Tape>;
}

/// What one run read and wrote.
#[derive(Debug, Default)]
pub(crate) struct Tape {
    /// The object the run acted on.
    pub(crate) view: Option<Value>,
    /// Failed runs in a row before this one (what `ctx.run().retries` said).
    pub(crate) retries: u32,
    pub(crate) exchanges: Vec<Exchange>,
}

/// Runs `fut` (one run) with a fresh tape; returns its output and the tape.
pub(crate) async fn taped<F: Future>(fut: F) -> (F::Output, Tape) {
    let mut scoped = std::pin::pin!(TAPE.scope(RefCell::new(Tape::default()), fut));
    let out = scoped.as_mut().await;
    let tape = scoped
        .as_mut()
        .take_value()
        .map(RefCell::into_inner)
        .unwrap_or_default();
    (out, tape)
}

/// Whether the caller is inside a taped run.
pub(crate) fn active() -> bool {
    TAPE.try_with(|_| ()).is_ok()
}

/// Notes the object the run acts on, and the failures before it.
pub(crate) fn note_view(view: Option<Value>, retries: u32) {
    let _ = TAPE.try_with(|t| {
        let mut t = t.borrow_mut();
        t.view = view;
        t.retries = retries;
    });
}

fn push(exchange: Exchange) {
    let _ = TAPE.try_with(|t| t.borrow_mut().exchanges.push(exchange));
}

/// A body as the recording keeps it: JSON as JSON, anything else as a string.
pub(crate) fn body_value(bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
    )
}

/// A taped read the watch cache answered: `GET path` as a read without the cache would send it
/// (`Api::get_opt` of `name` under `url`), answered with `found` or a `404`.
pub(crate) fn cached_get(url: &str, name: &str, plural: &str, found: Option<Value>) {
    let Ok(req) = kube::core::Request::new(url).get(name, &GetParams::default()) else {
        return;
    };
    let (status, response) = match found {
        Some(obj) => (200, obj),
        None => (404, not_found(plural, name)),
    };
    push(Exchange {
        step: current_step().map(str::to_string),
        method: "GET".into(),
        path: req.uri().to_string(),
        request: None,
        status,
        response: Some(response),
        cached: true,
    });
}

/// A taped list the watch cache answered, as `Api::list(params)` under `url` would have sent it.
pub(crate) fn cached_list(
    url: &str,
    params: &ListParams,
    list_of: (&str, &str),
    items: Vec<Value>,
) {
    let Ok(req) = kube::core::Request::new(url).list(params) else {
        return;
    };
    let (api_version, kind) = list_of;
    push(Exchange {
        step: current_step().map(str::to_string),
        method: "GET".into(),
        path: req.uri().to_string(),
        request: None,
        status: 200,
        response: Some(serde_json::json!({
            "apiVersion": api_version,
            "kind": format!("{kind}List"),
            "metadata": {},
            "items": items,
        })),
        cached: true,
    });
}

/// The API server's answer to a read of an object that does not exist.
pub(crate) fn not_found(plural: &str, name: &str) -> Value {
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("{plural} \"{name}\" not found"),
        "reason": "NotFound",
        "details": { "name": name, "kind": plural },
        "code": 404,
    })
}

/// The service that tapes a run's requests (see the module docs).
#[derive(Clone)]
pub(crate) struct Taping<S>(pub(crate) S);

/// A response body: passed through, or read whole to be taped.
type TapedBody<B> = Either<B, Full<Bytes>>;

impl<S, B> tower::Service<Request<Body>> for Taping<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<TapedBody<B>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let method = req.method().to_string();
        let path = req.uri().path_and_query().map_or_else(
            || req.uri().path().to_string(),
            |pq| pq.as_str().to_string(),
        );
        // kube's requests carry their body whole; a streamed one is not taped.
        let body = req.body().try_clone();
        let sent = self.0.call(req);
        Box::pin(async move {
            let res = sent.await.map_err(Into::into);
            // Polled by the caller: here we can tell whether a run made the request. A watch
            // streams: never read whole.
            if !active() || is_watch(&path) {
                return res.map(|r| r.map(Either::Left));
            }
            let request = match body {
                Some(b) => b.collect_bytes().await.ok().and_then(|b| body_value(&b)),
                None => Some(Value::String("(a streamed body, not recorded)".into())),
            };
            let mut exchange = Exchange {
                step: current_step().map(str::to_string),
                method,
                path,
                request,
                status: 0,
                response: None,
                cached: false,
            };
            let resp = match res {
                Ok(resp) => resp,
                Err(e) => {
                    exchange.response = Some(Value::String(e.to_string()));
                    push(exchange);
                    return Err(e);
                }
            };
            exchange.status = resp.status().as_u16();
            let (parts, body) = resp.into_parts();
            match body.collect().await {
                Ok(b) => {
                    let bytes = b.to_bytes();
                    exchange.response = body_value(&bytes);
                    push(exchange);
                    Ok(Response::from_parts(parts, Either::Right(Full::new(bytes))))
                }
                Err(e) => {
                    let e: BoxError = e.into();
                    exchange.status = 0;
                    exchange.response = Some(Value::String(e.to_string()));
                    push(exchange);
                    Err(e)
                }
            }
        })
    }
}

fn is_watch(path: &str) -> bool {
    path.split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
}
