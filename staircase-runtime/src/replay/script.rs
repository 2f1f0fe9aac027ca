//! The client a replayed run talks to: a tower service that answers every request from the
//! recording, and remembers what it was asked.

use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body_util::Full;
use kube::client::Body;
use serde_json::Value;

use super::Exchange;
use super::tape::body_value;
use crate::writes::current_step;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request the replayed run made.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    /// The step that made it (`None`: the runtime).
    pub(crate) step: Option<&'static str>,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) body: Option<Value>,
    /// The recorded exchange that answered it; `None` when the recording has none.
    pub(crate) answered: Option<usize>,
}

/// The recorded exchanges, which of them answered a request, and what was asked.
#[derive(Debug)]
pub(crate) struct Script {
    exchanges: Vec<Exchange>,
    used: Vec<bool>,
    served: Vec<Served>,
}

impl Script {
    pub(crate) fn new(exchanges: Vec<Exchange>) -> Self {
        Script {
            used: vec![false; exchanges.len()],
            exchanges,
            served: Vec::new(),
        }
    }

    /// The recorded exchange that answers `method path`: the first one not used yet; for a read
    /// the recording made fewer times than the replay, the last answer again (the recorded run
    /// saw nothing change in between).
    fn find(&mut self, method: &str, path: &str) -> Option<usize> {
        let want = normal(path);
        let same = |e: &Exchange| e.method == method && normal(&e.path) == want;
        if let Some(i) =
            (0..self.exchanges.len()).find(|&i| !self.used[i] && same(&self.exchanges[i]))
        {
            self.used[i] = true;
            return Some(i);
        }
        if method == "GET" {
            return (0..self.exchanges.len()).rfind(|&i| same(&self.exchanges[i]));
        }
        None
    }

    pub(crate) fn served(&self) -> &[Served] {
        &self.served
    }
}

/// A path with its query's parameters sorted, empty ones dropped: two requests kube builds from
/// the same parameters compare equal.
pub(crate) fn normal(path: &str) -> (&str, Vec<&str>) {
    match path.split_once('?') {
        Some((p, q)) => {
            let mut params: Vec<&str> = q.split('&').filter(|s| !s.is_empty()).collect();
            params.sort_unstable();
            (p, params)
        }
        None => (path, Vec::new()),
    }
}

/// `path` as it reads best: the query's empty parameters dropped (kube writes `?&name=...`).
pub(crate) fn tidy(path: &str) -> String {
    match path.split_once('?').filter(|_| path.starts_with('/')) {
        Some((p, q)) => {
            let params: Vec<&str> = q.split('&').filter(|s| !s.is_empty()).collect();
            if params.is_empty() {
                p.to_string()
            } else {
                format!("{p}?{}", params.join("&"))
            }
        }
        None => path.to_string(),
    }
}

/// The replaying service (see the module docs).
#[derive(Clone)]
pub(crate) struct Replayer(pub(crate) Arc<Mutex<Script>>);

impl tower::Service<Request<Body>> for Replayer {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let script = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await?;
            let method = parts.method.to_string();
            let path = parts.uri.path_and_query().map_or_else(
                || parts.uri.path().to_string(),
                |pq| pq.as_str().to_string(),
            );
            // Polled by the caller: inside the step that made the request, if one did.
            let step = current_step();
            let mut script = script.lock().unwrap_or_else(|e| e.into_inner());
            let answered = script.find(&method, &path);
            script.served.push(Served {
                step,
                method: method.clone(),
                path: path.clone(),
                body: body_value(&bytes),
                answered,
            });
            let Some(i) = answered else {
                return Ok(unrecorded(&method, &path));
            };
            let e = &script.exchanges[i];
            if e.status == 0 {
                // The recorded request got no answer: neither does this one.
                let why = match &e.response {
                    Some(Value::String(s)) => s.clone(),
                    _ => "no answer".into(),
                };
                return Err(format!("replay: the recorded request got no answer: {why}").into());
            }
            let body = match &e.response {
                None => Bytes::new(),
                Some(Value::String(text)) => Bytes::from(text.clone()),
                Some(json) => Bytes::from(serde_json::to_vec(json)?),
            };
            Ok(Response::builder()
                .status(e.status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))?)
        })
    }
}

/// How a replay answers a request the recording lacks: a server error that names it.
fn unrecorded(method: &str, path: &str) -> Response<Full<Bytes>> {
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "replay: the recorded run made no request {method} {}: the current code made \
             one the recording cannot answer",
            tidy(path)
        ),
        "reason": "NotRecorded",
        "code": 500,
    });
    Response::builder()
        .status(500)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(status.to_string())))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(method: &str, path: &str, status: u16) -> Exchange {
        Exchange {
            step: None,
            method: method.into(),
            path: path.into(),
            request: None,
            status,
            response: None,
            cached: false,
        }
    }

    #[test]
    fn requests_are_answered_in_order_and_reads_again_with_the_last_answer() {
        let mut s = Script::new(vec![
            ex("GET", "/api/v1/namespaces/d/configmaps/a", 404),
            ex(
                "POST",
                "/api/v1/namespaces/d/configmaps?fieldManager=m&dryRun=All",
                201,
            ),
            ex("GET", "/api/v1/namespaces/d/configmaps/a", 200),
        ]);
        assert_eq!(s.find("GET", "/api/v1/namespaces/d/configmaps/a"), Some(0));
        // The query's order does not matter.
        assert_eq!(
            s.find(
                "POST",
                "/api/v1/namespaces/d/configmaps?dryRun=All&fieldManager=m"
            ),
            Some(1)
        );
        assert_eq!(
            s.find(
                "POST",
                "/api/v1/namespaces/d/configmaps?dryRun=All&fieldManager=m"
            ),
            None
        );
        assert_eq!(s.find("GET", "/api/v1/namespaces/d/configmaps/a"), Some(2));
        assert_eq!(s.find("GET", "/api/v1/namespaces/d/configmaps/a"), Some(2));
        assert_eq!(s.find("DELETE", "/api/v1/namespaces/d/configmaps/a"), None);
        assert_eq!(s.find("GET", "/api/v1/namespaces/d/secrets/a"), None);
    }
}
