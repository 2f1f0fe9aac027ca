//! A lagging watch made in the operator's client, for servers the explorer cannot make lag (a
//! real kube-apiserver): every watch stream's events are held back until `n` later events have
//! arrived on the same stream, or until the explorer releases them (as it nudges a stalled
//! case, like a cache that catches up eventually).
//!
//! The embedded server lags a watch by `n` resourceVersions of the whole server; this lags it
//! by `n` events of its own stream. Either way the operator's cache shows an older world than
//! the server holds, which is what the stale-view variants need.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use kube::client::Body;
use tokio::sync::watch;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Lagged = StreamBody<futures::channel::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>>;

/// The watch lag of one case: shared by every client it wraps.
#[derive(Clone)]
pub(crate) struct WatchLag {
    n: usize,
    /// A watch whose path starts with this is not held back (the primary resource's, when only
    /// the children's watches lag).
    spare: Option<String>,
    release: Arc<watch::Sender<u64>>,
}

impl WatchLag {
    pub(crate) fn new(n: u64, spare: Option<String>) -> Self {
        WatchLag {
            n: n as usize,
            spare,
            release: Arc::new(watch::channel(0).0),
        }
    }

    /// Delivers every event held back so far.
    pub(crate) fn release(&self) {
        self.release.send_modify(|g| *g += 1);
    }

    /// `inner` with its watches lagging.
    pub(crate) fn client(&self, inner: kube::Client) -> kube::Client {
        let ns = inner.default_namespace().to_string();
        kube::Client::new(
            LagService {
                lag: self.clone(),
                inner,
            },
            ns,
        )
    }

    fn lags(&self, req: &Request<Body>) -> bool {
        let watching = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        watching
            && !self
                .spare
                .as_ref()
                .is_some_and(|s| req.uri().path().starts_with(s.as_str()))
    }
}

#[derive(Clone)]
struct LagService {
    lag: WatchLag,
    inner: kube::Client,
}

impl tower::Service<Request<Body>> for LagService {
    type Response = Response<http_body_util::Either<Body, Lagged>>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Self::Response, kube::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let svc = self.clone();
        let lags = svc.lag.lags(&req);
        // A streaming list's initial events are the list the cache starts from: they come at
        // once, as a plain list would; only the changes after it lag.
        let initial = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "sendInitialEvents=true"));
        Box::pin(async move {
            let res = svc.inner.send(req).await?;
            if !lags || !res.status().is_success() {
                return Ok(res.map(http_body_util::Either::Left));
            }
            let (parts, body) = res.into_parts();
            let (tx, rx) = futures::channel::mpsc::channel(16);
            let release = svc.lag.release.subscribe();
            tokio::spawn(hold_back(body, tx, svc.lag.n, initial, release));
            Ok(Response::from_parts(
                parts,
                http_body_util::Either::Right(StreamBody::new(rx)),
            ))
        })
    }
}

/// The annotation of the bookmark that ends a streaming list's initial events.
const INITIAL_EVENTS_END: &[u8] = b"k8s.io/initial-events-end";

/// Forwards the watch events (one JSON object a line) of `body` to `tx`, each once `n` later
/// ones have arrived or when `release` changes; with `initial`, the events up to the bookmark
/// that ends the initial ones at once. Ends when either side does; events still held then are
/// delivered first (a lag, not a loss).
async fn hold_back(
    body: Body,
    mut tx: futures::channel::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    n: usize,
    mut initial: bool,
    mut release: watch::Receiver<u64>,
) {
    let mut data = body.into_data_stream();
    let mut partial: Vec<u8> = Vec::new();
    let mut held: VecDeque<Bytes> = VecDeque::new();
    loop {
        let (keep, ended) = tokio::select! {
            chunk = data.next() => match chunk {
                Some(Ok(bytes)) => {
                    partial.extend_from_slice(&bytes);
                    while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=i).collect();
                        if initial && held.is_empty() {
                            initial = !line
                                .windows(INITIAL_EVENTS_END.len())
                                .any(|w| w == INITIAL_EVENTS_END);
                            if tx.send(Ok(Frame::data(Bytes::from(line)))).await.is_err() {
                                return;
                            }
                        } else {
                            held.push_back(Bytes::from(line));
                        }
                    }
                    (n, false)
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
                None => {
                    if !partial.is_empty() {
                        held.push_back(Bytes::from(std::mem::take(&mut partial)));
                    }
                    (0, true)
                }
            },
            changed = release.changed() => match changed {
                Ok(()) => (0, false),
                Err(_) => return,
            },
        };
        while held.len() > keep {
            let event = held.pop_front().expect("counted");
            if tx.send(Ok(Frame::data(event))).await.is_err() {
                return;
            }
        }
        if ended {
            return;
        }
    }
}
