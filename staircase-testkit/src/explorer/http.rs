//! The recorder in front of a user's fake HTTP service: the operator's own REST client talks to
//! it, it forwards every request to the fake, and it treats each modifying request the fake
//! answered with success as an effect: numbered by the gate like a Kubernetes write (so the
//! explorer can crash the operator right after it or lose its answer) and counted per key.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use staircase_runtime::external::IdempotencyKey;

use super::gate::{Gate, GateWrite, Verdict};

/// A fake of an external HTTP service, started afresh for every case of
/// [`Explorer::with_http_service`](super::Explorer::with_http_service): where it listens, and
/// how to read what it holds for the end-state comparison.
pub struct HttpFake {
    url: String,
    state: Box<dyn Fn() -> Value + Send + Sync>,
}

impl HttpFake {
    /// The fake listening at `url` (e.g. `http://127.0.0.1:41234`, plain HTTP); `state` returns
    /// what it holds as JSON (its records, in an order that does not depend on timing). The
    /// explorer compares it with the reference run's after every phase, with uids named and
    /// [`ignore_field`](super::Explorer::ignore_field) paths removed. The fake is dropped, with
    /// `state` and what it captured, when its case ends.
    pub fn new(url: impl Into<String>, state: impl Fn() -> Value + Send + Sync + 'static) -> Self {
        HttpFake {
            url: url.into(),
            state: Box::new(state),
        }
    }
}

impl std::fmt::Debug for HttpFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFake").field("url", &self.url).finish()
    }
}

/// What a modifying request is, by its method.
fn operation(m: &Method) -> Option<&'static str> {
    match *m {
        Method::POST => Some("create"),
        Method::PUT | Method::PATCH => Some("update"),
        Method::DELETE => Some("delete"),
        _ => None,
    }
}

struct Shared {
    name: String,
    backend: String,
    gate: Arc<Gate>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Keys a create was counted for: a POST the fake answers `200` (not `201`) under one of
    /// them is a replay the fake recognised by the key, not a create.
    created: Mutex<BTreeSet<String>>,
}

/// The answer was lost on the way back: hyper closes the connection without one.
#[derive(Debug, thiserror::Error)]
#[error("explorer: the connection broke before the answer arrived")]
struct Lost;

/// One case's recorder; stops (with its fake) when dropped.
pub(crate) struct Recorder {
    url: String,
    fake: HttpFake,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// Listens on loopback and forwards to `fake`, as service `name`.
    pub(crate) async fn start(name: &str, fake: HttpFake, gate: Arc<Gate>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            name: name.to_string(),
            backend: fake.url.trim_end_matches('/').to_string(),
            gate,
            client: Client::builder(TokioExecutor::new()).build_http(),
            created: Mutex::default(),
        });
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                let service = hyper::service::service_fn(move |req| forward(shared.clone(), req));
                connections.spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Ok(Recorder { url, fake, task })
    }

    /// Where the operator's client should send its requests.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// What the fake holds now.
    pub(crate) fn state(&self) -> Value {
        (self.fake.state)()
    }
}

async fn forward(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Lost> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await else {
        return Err(Lost);
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{path}", shared.backend));
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            out = out.header(name, value);
        }
    }
    let answer = match out.body(Full::new(body.to_bytes())) {
        Ok(r) => shared.client.request(r).await,
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    let Ok(answer) = answer else {
        return Ok(status(StatusCode::BAD_GATEWAY));
    };
    let (rparts, rbody) = answer.into_parts();
    let Ok(rbody) = rbody.collect().await else {
        return Err(Lost);
    };
    let response = Response::from_parts(rparts, Full::new(rbody.to_bytes()));
    let Some(op) = operation(&parts.method).filter(|_| response.status().is_success()) else {
        return Ok(response);
    };
    // Effects are counted per idempotency key when the client sends one, else per path.
    let key = parts
        .headers
        .get(IdempotencyKey::HEADER)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| parts.uri.path().to_string(), String::from);
    if op == "create" {
        let mut created = shared.created.lock().expect("created keys");
        if response.status() != StatusCode::CREATED && created.contains(&key) {
            return Ok(response);
        }
        created.insert(key.clone());
    }
    match shared
        .gate
        .commit(GateWrite::external(op, &shared.name, &key))
    {
        Verdict::Deliver => Ok(response),
        Verdict::Crash => futures::future::pending().await,
        Verdict::Lose => Err(Lost),
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::default());
    *r.status_mut() = code;
    r
}
