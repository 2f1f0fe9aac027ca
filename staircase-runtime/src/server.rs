//! One small HTTP endpoint (feature `server`) for what the cluster asks an operator:
//!
//! - `GET /metrics`: the [`Metrics`] in the Prometheus text format;
//! - `GET /healthz`: 200 while the operator loop runs (liveness probe);
//! - `GET /readyz`: 200 once the operator is ready (readiness probe, see [`Health`]), else 503.
//!
//! The operator starts it on [`OperatorConfig::metrics_addr`](crate::OperatorConfig::metrics_addr);
//! call [`serve`] yourself to pick the listener (e.g. port 0 in tests).
//!
//! Routes of your own join these ([`Routes`], [`Operator::with_route`](crate::Operator::with_route)),
//! and checks of your own join `/readyz`
//! ([`Operator::with_ready_check`](crate::Operator::with_ready_check)):
//!
//! ```no_run
//! # use staircase_runtime as staircase;
//! # async fn demo<K, S, M, C>(op: staircase::Operator<K, S, M, C>) {
//! let db_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
//! let up = db_up.clone(); // set by whatever watches the database
//! let op = op
//!     .with_route("/debug/version", |_req| async { http::Response::new("1.4.2\n") })
//!     .with_ready_check("database", move || match up.load(std::sync::atomic::Ordering::Relaxed) {
//!         true => Ok(()),
//!         false => Err("no connection".into()),
//!     });
//! # let _ = op; }
//! ```
//!
//! # Guarantees
//! - `/metrics`, `/healthz`, `/livez` and `/readyz` are always the endpoint's own: a route of
//!   yours cannot shadow them.
//! - `/readyz` is 200 only while the operator is ready and every ready check passes; its body
//!   names each check that fails, with its message.
//!
//! # Caveats
//! - The endpoint speaks plain HTTP, without authentication, usually on every interface of the
//!   pod: serve nothing there that must stay private.
//! - A request body over 1 MiB is refused (`413`) before a route sees it.
//! - Ready checks run on every probe, on the endpoint's task: keep them quick (read a flag
//!   another task keeps), never a network call.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::routes::MAX_BODY;
pub use crate::routes::Routes;

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the future is dropped.
///
/// ```no_run
/// # async fn demo<K, S, M, C>(op: &staircase_runtime::Operator<K, S, M, C>) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// println!("metrics on http://{}/metrics", listener.local_addr()?);
/// tokio::spawn(staircase_runtime::server::serve(listener, op.metrics(), op.health()));
/// # Ok(()) }
/// ```
pub async fn serve(listener: TcpListener, metrics: Metrics, health: Health) {
    serve_with(listener, metrics, health, Routes::new()).await
}

/// [`serve`], plus `routes` of your own.
///
/// ```no_run
/// # async fn demo<K, S, M, C>(op: &staircase_runtime::Operator<K, S, M, C>) -> std::io::Result<()> {
/// use staircase_runtime::server;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// tokio::spawn(server::serve_with(listener, op.metrics(), op.health(), op.routes()));
/// # Ok(()) }
/// ```
pub async fn serve_with(listener: TcpListener, metrics: Metrics, health: Health, routes: Routes) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: keep serving once it passes.
                tracing::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (metrics, health, routes) = (metrics.clone(), health.clone(), routes.clone());
        let svc = service_fn(move |req: http::Request<Incoming>| {
            let own = (routes.is_empty() || routes.find(req.uri().path()).is_none())
                .then(|| respond(req.method(), req.uri().path(), &metrics, &health));
            let routes = routes.clone();
            async move {
                Ok::<_, Infallible>(match own {
                    Some(resp) => resp,
                    None => user_route(&routes, req).await,
                })
            }
        });
        tokio::spawn(async move {
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = conn.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!("metrics endpoint: connection: {e}");
            }
        });
    }
}

/// Answers `req` with the route of `routes` that takes its path.
async fn user_route(routes: &Routes, req: http::Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_large = e.is::<http_body_util::LengthLimitError>();
            let status = match too_large {
                true => StatusCode::PAYLOAD_TOO_LARGE,
                false => StatusCode::BAD_REQUEST,
            };
            return plain(status, format!("cannot read the request body: {e}\n"));
        }
    };
    let path = parts.uri.path().to_string();
    match routes.find(&path) {
        Some(handler) => handler(http::Request::from_parts(parts, body))
            .await
            .map(Full::new),
        None => plain(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn respond(
    method: &Method,
    path: &str,
    metrics: &Metrics,
    health: &Health,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        (&Method::GET, "/healthz" | "/livez") => {
            let ok = health.is_live();
            (
                code(ok),
                "text/plain; charset=utf-8",
                health.describe() + "\n",
            )
        }
        (&Method::GET, "/readyz") => {
            let (ok, line) = health.readiness();
            (code(ok), "text/plain; charset=utf-8", line + "\n")
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
