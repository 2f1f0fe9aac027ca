//! One small HTTP endpoint (feature `server`) for what the cluster asks an operator:
//!
//! - `GET /metrics`: the [`Metrics`] in the Prometheus text format;
//! - `GET /healthz`: 200 while the operator loop runs (liveness probe);
//! - `GET /readyz`: 200 once the operator is ready (readiness probe, see [`Health`]), else 503.
//!
//! The operator starts it on [`OperatorConfig::metrics_addr`](crate::OperatorConfig::metrics_addr);
//! call [`serve`] yourself to pick the listener (e.g. port 0 in tests).

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::health::Health;
use crate::metrics::Metrics;

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
        let (metrics, health) = (metrics.clone(), health.clone());
        let svc = service_fn(move |req: http::Request<Incoming>| {
            let resp = respond(req.method(), req.uri().path(), &metrics, &health);
            async move { Ok::<_, Infallible>(resp) }
        });
        tokio::spawn(async move {
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = conn.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!("metrics endpoint: connection: {e}");
            }
        });
    }
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
            let ok = health.is_ready();
            (
                code(ok),
                "text/plain; charset=utf-8",
                health.describe() + "\n",
            )
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
