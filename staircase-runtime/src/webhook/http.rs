//! HTTPS: TLS on each accepted connection, then each request to its route.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::Route;
use super::tls::Resolver;

/// Larger than any review the API server sends (objects are at most ~1.5 MiB; a conversion
/// review carries a list page).
const MAX_BODY: usize = 64 << 20;

/// A client that opens a connection and never finishes its handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn serve(
    listener: TcpListener,
    routes: Arc<BTreeMap<String, Route>>,
    resolver: Arc<Resolver>,
) {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: keep serving once it passes.
                tracing::warn!("webhook endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, routes) = (acceptor.clone(), routes.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!("webhook endpoint: TLS handshake: {e}"),
                Err(_) => return tracing::debug!("webhook endpoint: TLS handshake timed out"),
            };
            let svc = service_fn(move |req| {
                let routes = routes.clone();
                async move { Ok::<_, Infallible>(respond(req, &routes).await) }
            });
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = conn.serve_connection(TokioIo::new(tls), svc).await {
                tracing::debug!("webhook endpoint: connection: {e}");
            }
        });
    }
}

async fn respond(
    req: Request<Incoming>,
    routes: &BTreeMap<String, Route>,
) -> Response<Full<Bytes>> {
    let Some(route) = routes.get(req.uri().path()) else {
        let paths: Vec<&str> = routes.keys().map(String::as_str).collect();
        let msg = format!(
            "no webhook at {}; served: {}",
            req.uri().path(),
            paths.join(", ")
        );
        return text(StatusCode::NOT_FOUND, msg);
    };
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "webhooks take POST".into());
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    match route(body).await {
        Ok(json) => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json)))
            .expect("static response parts are valid"),
        Err(msg) => text(StatusCode::BAD_REQUEST, msg),
    }
}

fn text(status: StatusCode, msg: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(msg + "\n")))
        .expect("static response parts are valid")
}
