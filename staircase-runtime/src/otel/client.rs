//! The HTTP client the OTLP exporter sends with: hyper, on a runtime of its own.
//!
//! The SDK's batch processor exports from a plain thread of its own (no Tokio runtime there), and
//! the exporter shuts down inside `Drop` of the guard, possibly on the only thread of the
//! application's runtime. A client that needed the application's runtime would find none on the
//! first, and deadlock on the second; one thread with its own small runtime has neither problem.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError};
use tokio::sync::oneshot;

/// Answers of the collector are small; this bounds a misbehaving one.
const MAX_RESPONSE: usize = 4 << 20;

/// Sends OTLP requests over plain HTTP from a thread of its own, which ends when the client is
/// dropped.
#[derive(Debug)]
pub(crate) struct OtlpHttp {
    runtime: tokio::runtime::Handle,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    /// Whether the last request failed: a collector that is down is logged once, not per batch.
    failing: Arc<AtomicBool>,
    /// Dropping it ends the thread.
    _stop: oneshot::Sender<()>,
}

impl OtlpHttp {
    /// Starts the client's thread; each request gives up after `timeout`.
    pub(crate) fn start(timeout: Duration) -> std::io::Result<OtlpHttp> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("staircase-otlp".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })?;
        // Built inside the runtime: the connector's timers belong to it.
        let client = {
            let _inside = handle.enter();
            Client::builder(TokioExecutor::new()).build_http()
        };
        Ok(OtlpHttp {
            runtime: handle,
            client,
            timeout,
            failing: Arc::default(),
            _stop: stop,
        })
    }
}

/// One request: sent, and its answer read whole.
async fn send(
    client: Client<HttpConnector, Full<Bytes>>,
    request: Request<Bytes>,
) -> Result<Response<Bytes>, HttpError> {
    let response = client.request(request.map(Full::new)).await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_RESPONSE).collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

/// What to log about an export that went well (`problem` `None`) or not: only a change, the
/// first failure (`Err`) and the first success after failures (`Ok`).
fn news(failing: &AtomicBool, problem: Option<String>) -> Option<Result<(), String>> {
    let was_failing = failing.swap(problem.is_some(), Ordering::Relaxed);
    match (problem, was_failing) {
        (Some(p), false) => Some(Err(p)),
        (None, true) => Some(Ok(())),
        _ => None,
    }
}

type Sent<'a> = Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'a>>;

// `HttpClient` is an `async_trait`: this is the signature the macro would write.
impl HttpClient for OtlpHttp {
    fn send_bytes<'s, 'a>(&'s self, request: Request<Bytes>) -> Sent<'a>
    where
        's: 'a,
        Self: 'a,
    {
        let (client, timeout) = (self.client.clone(), self.timeout);
        let failing = self.failing.clone();
        let (answer, answered) = oneshot::channel();
        self.runtime.spawn(async move {
            let uri = request.uri().clone();
            let result = match tokio::time::timeout(timeout, send(client, request)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {timeout:?}").into()),
            };
            let problem = match &result {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("answered {}", r.status())),
                Err(e) => Some(e.to_string()),
            };
            match news(&failing, problem) {
                Some(Err(p)) => tracing::warn!(
                    "cannot export spans to {uri}: {p} (logged again once it recovers)"
                ),
                Some(Ok(())) => tracing::info!("exporting spans to {uri} again"),
                None => {}
            }
            let _ = answer.send(result);
        });
        Box::pin(async move {
            answered
                .await
                .unwrap_or_else(|_| Err("the OTLP client's thread has stopped".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collector_that_is_down_is_news_once_and_again_when_it_is_back() {
        let failing = AtomicBool::new(false);
        assert_eq!(news(&failing, None), None);
        assert_eq!(
            news(&failing, Some("refused".into())),
            Some(Err("refused".into()))
        );
        assert_eq!(news(&failing, Some("refused".into())), None);
        assert_eq!(news(&failing, None), Some(Ok(())));
        assert_eq!(news(&failing, None), None);
    }

    /// A collector that accepts the connection and never answers: the export gives up after
    /// the timeout instead of holding the batch thread.
    #[tokio::test]
    async fn an_export_without_an_answer_gives_up_after_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let client = OtlpHttp::start(Duration::from_millis(200)).unwrap();
        let request = Request::post(format!("http://{addr}/v1/traces"))
            .body(Bytes::from_static(b"x"))
            .unwrap();
        let err = client.send_bytes(request).await.unwrap_err();
        assert!(err.to_string().contains("no answer within 200ms"), "{err}");
    }
}
