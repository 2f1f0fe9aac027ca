//! The HTTP side: a loopback listener, one hyper connection task per client (HTTP/1.1 or h2),
//! request routing, faults and statistics around the handlers, and orderly shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::faults::{FaultAction, Faults, RequestInfo};
use crate::handlers::{self, Reply, ResourceRequest};
use crate::protobuf::Accept;
use crate::router::{self, Route};
use crate::stats::{RequestRecord, Stats};
use crate::status::ApiError;
use crate::store::Store;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Configures an [`ApiServer`] before it starts.
#[derive(Debug, Clone)]
pub struct ApiServerBuilder {
    port: u16,
    watch_window: usize,
    max_body_bytes: usize,
}

impl Default for ApiServerBuilder {
    fn default() -> Self {
        ApiServerBuilder {
            port: 0,
            watch_window: 10_000,
            max_body_bytes: 3 << 20,
        }
    }
}

impl ApiServerBuilder {
    /// TCP port on 127.0.0.1; 0 (the default) picks a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// How many events the server keeps for watches resuming from an older resourceVersion
    /// (default 10 000). Older versions get `410 Gone`, as after an etcd compaction.
    pub fn watch_window(mut self, events: usize) -> Self {
        self.watch_window = events;
        self
    }

    /// Largest accepted request body (default 3 MiB, like kube-apiserver); larger bodies get
    /// `413 RequestEntityTooLarge`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Binds the listener and starts serving on the current tokio runtime.
    pub async fn start(self) -> std::io::Result<ApiServer> {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Store::new(self.watch_window));
        {
            let mut st = store.lock();
            let ns = st.registry.get("", "v1", "namespaces").expect("built-in");
            for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                crate::ops::create(&mut st, &ns, None, obj, &Default::default())
                    .expect("bootstrap namespace");
            }
        }
        let faults = Faults::new(store.clone());
        let stats = Stats::new();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            store,
            faults,
            stats,
            addr,
            max_body: self.max_body_bytes,
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone(), shutdown_rx));
        Ok(ApiServer {
            shared,
            shutdown: shutdown_tx,
            task: Some(task),
        })
    }
}

struct Shared {
    store: Arc<Store>,
    faults: Faults,
    stats: Stats,
    addr: SocketAddr,
    max_body: usize,
}

/// An in-process Kubernetes API server on loopback. See the [crate docs](crate) for a tour.
///
/// Dropping it shuts it down (stops accepting, ends watches); [`shutdown`](Self::shutdown)
/// does the same and waits for the accept loop to finish.
pub struct ApiServer {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("url", &self.url())
            .finish()
    }
}

impl ApiServer {
    /// Starts a server with default settings on a free port.
    pub async fn start() -> std::io::Result<ApiServer> {
        ApiServerBuilder::default().start().await
    }

    /// A builder for non-default settings.
    pub fn builder() -> ApiServerBuilder {
        ApiServerBuilder::default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// A kubeconfig with one cluster, user and context named `staircase` (namespace `default`).
    pub fn kubeconfig(&self) -> kube::config::Kubeconfig {
        let yaml = self.kubeconfig_yaml();
        serde_saphyr::from_str(&yaml).expect("kubeconfig is well-formed")
    }

    fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: staircase\n  cluster:\n    server: {}\nusers:\n- name: staircase\n  user: {{}}\ncontexts:\n- name: staircase\n  context:\n    cluster: staircase\n    user: staircase\n    namespace: default\ncurrent-context: staircase\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Writes [`kubeconfig`](Self::kubeconfig) to `path`, for kubectl or other processes.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// A `kube::Client` for this server, defaulting to namespace `default`.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("plain-http client")
    }

    /// The `kube::Config` [`client`](Self::client) is built from, for building a client stack of
    /// one's own (`kube::client::ClientBuilder`).
    pub fn config(&self) -> kube::Config {
        let mut config = kube::Config::new(self.url().parse().expect("valid URL"));
        config.default_namespace = "default".into();
        config.read_timeout = None;
        // Plain HTTP: an empty trust store keeps kube from loading the system's CA certificates,
        // which otherwise costs more than the requests of a short test.
        config.root_cert = Some(Vec::new());
        config
    }

    /// Request statistics and the request log.
    pub fn stats(&self) -> Stats {
        self.shared.stats.clone()
    }

    /// Fault injection.
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// The current global resourceVersion (the version of the latest write).
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().current_rv()
    }

    /// Number of open watch streams (useful to wait until a controller is watching).
    pub fn open_watches(&self) -> usize {
        self.shared.store.lock().watcher_count()
    }

    /// Answers one request in-process, through the same routing, faults, statistics and
    /// handlers as a request arriving over HTTP, without a connection. For fuzzing
    /// (`staircase-apiserver/fuzz`); not part of the supported API. `Err` is a dropped
    /// connection (an injected fault); a watch answers with a body that streams until the watch
    /// ends.
    #[doc(hidden)]
    pub async fn handle_in_process(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<UnsyncBoxBody<Bytes, Infallible>>, std::io::Error> {
        serve(self.shared.clone(), req).await
    }

    /// Stops accepting connections, ends all watches, and waits for the accept loop.
    pub async fn shutdown(mut self) {
        self.signal_shutdown();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    fn signal_shutdown(&self) {
        let _ = self.shutdown.send(true);
        let mut st = self.shared.store.lock();
        st.closed = true;
        st.close_watchers();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(_) => continue,
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { serve(shared, req).await }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                }
            }
        });
    }
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|e| match e {}).boxed_unsync()
}

fn json_response(code: u16, body: Bytes, warnings: &[String]) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {}", Value::String(w.clone()))) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// An answer's document: a JSON value, or JSON already serialized.
enum Doc<'a> {
    Value(&'a Value),
    Json(Bytes),
}

/// Answers with an object as protobuf when the client asks for protobuf first (as client-go
/// does, like kube-apiserver) and the object has a protobuf form, else as JSON; `406` when the
/// client accepts neither.
fn object_response(code: u16, doc: Doc<'_>, warnings: &[String], accept: Accept) -> Response<Body> {
    if accept.protobuf_first {
        let parsed;
        let value = match &doc {
            Doc::Value(v) => *v,
            Doc::Json(b) => {
                parsed = serde_json::from_slice::<Value>(b).unwrap_or(Value::Null);
                &parsed
            }
        };
        match crate::protobuf::encode_object(value) {
            Ok(Some(bytes)) => {
                let mut r = json_response(code, Bytes::from(bytes), warnings);
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(crate::protobuf::MEDIA_TYPE),
                );
                return r;
            }
            Ok(None) if !accept.json => return not_acceptable(),
            Err(e) if !accept.json => {
                return error_response(&ApiError::new(
                    500,
                    "InternalError",
                    format!("unable to encode the object as protobuf: {e}"),
                ));
            }
            Err(e) => tracing::warn!("answering JSON: the object does not encode as protobuf: {e}"),
            Ok(None) => {}
        }
    }
    match doc {
        Doc::Value(v) => json_response(code, Bytes::from(v.to_string()), warnings),
        Doc::Json(b) => json_response(code, b, warnings),
    }
}

fn not_acceptable() -> Response<Body> {
    error_response(&ApiError::new(
        406,
        "NotAcceptable",
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
    ))
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, Bytes::from(e.to_status().to_string()), &[])
}

fn value_response(code: u16, v: &Value) -> Response<Body> {
    json_response(code, Bytes::from(v.to_string()), &[])
}

/// Manager recorded for writes without `fieldManager`: the user agent's program name, as the
/// real server derives it (`kubectl/v1.32 (linux/amd64)` -> `kubectl`).
fn default_manager(ua: Option<&str>) -> String {
    ua.and_then(|u| u.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

async fn serve<B>(shared: Arc<Shared>, req: Request<B>) -> Result<Response<Body>, std::io::Error>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let arrived = tokio::time::Instant::now();
    let (result, mut record, round_trip) = answer(&shared, req, arrived).await;
    // Failed and dropped requests take their round trip too: only the answer differs.
    if !round_trip.is_zero() {
        crate::delay::sleep_until(arrived + round_trip).await;
    }
    record.elapsed = arrived.elapsed();
    shared.stats.record(record);
    result
}

/// What [`answer`] produced: the response (or a dropped connection), the request's record (its
/// status filled in) and the round trip the answer must not leave before.
type Answered = (
    Result<Response<Body>, std::io::Error>,
    RequestRecord,
    Duration,
);

async fn answer<B>(shared: &Shared, req: Request<B>, arrived: tokio::time::Instant) -> Answered
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let query = router::parse_query(parts.uri.query());
    let header_str = |h: header::HeaderName| {
        parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let user_agent = header_str(header::USER_AGENT);
    let route = router::route(&path);
    let (verb, rpath) = match &route {
        Route::Resource(p) => (handlers::verb_of(&parts.method, p, &query), Some(p.clone())),
        _ => (None, None),
    };
    let field_manager = query.get("fieldManager").cloned();
    let mut record = RequestRecord {
        method: parts.method.to_string(),
        path: path.clone(),
        query: raw_query,
        verb,
        resource: rpath
            .as_ref()
            .map(|p| crate::status::qualified(&p.group, &p.plural)),
        subresource: rpath.as_ref().and_then(|p| p.subresource.clone()),
        namespace: rpath.as_ref().and_then(|p| p.namespace.clone()),
        name: rpath.as_ref().and_then(|p| p.name.clone()),
        status: 0,
        field_manager: field_manager.clone(),
        user_agent: user_agent.clone(),
        elapsed: Duration::ZERO,
        unchanged: false,
    };
    let effective_manager = field_manager
        .clone()
        .unwrap_or_else(|| default_manager(user_agent.as_deref()));
    let decision = shared.faults.decide(&RequestInfo {
        verb,
        group: rpath.as_ref().map(|p| p.group.as_str()),
        plural: rpath.as_ref().map(|p| p.plural.as_str()),
        subresource: rpath.as_ref().and_then(|p| p.subresource.as_deref()),
        name: rpath.as_ref().and_then(|p| p.name.as_deref()),
        namespace: rpath.as_ref().and_then(|p| p.namespace.as_deref()),
        user_agent: user_agent.as_deref(),
        field_manager: &effective_manager,
    });
    let rt = decision.round_trip;
    if !decision.latency.is_zero() {
        crate::delay::sleep(decision.latency).await;
    }
    if !rt.is_zero() {
        crate::delay::sleep_until(arrived + rt / 2).await;
    }
    match decision.before {
        Some(FaultAction::Fail { code, reason }) => {
            let e = ApiError::new(code, reason.clone(), format!("injected fault: {reason}"));
            record.status = code;
            return (Ok(error_response(&e)), record, rt);
        }
        Some(FaultAction::Drop) => {
            let e = std::io::Error::other("injected fault: connection dropped");
            return (Err(e), record, rt);
        }
        _ => {}
    }
    let response = match route {
        Route::Resource(p) => {
            let Some(verb) = verb else {
                let r = error_response(&ApiError::method_not_allowed());
                record.status = 405;
                return (Ok(r), record, rt);
            };
            let body = match read_body(body, &parts.headers, shared.max_body).await {
                Ok(b) => b,
                Err(e) => {
                    record.status = e.code;
                    return (Ok(error_response(&e)), record, rt);
                }
            };
            let content_type = header_str(header::CONTENT_TYPE)
                .map(|c| {
                    c.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            let accept = crate::protobuf::accept(&header_str(header::ACCEPT).unwrap_or_default());
            let rr = ResourceRequest {
                path: &p,
                verb,
                query: &query,
                content_type,
                accept: header_str(header::ACCEPT).unwrap_or_default(),
                body,
                field_manager: effective_manager,
                seen: None,
                planning: false,
            };
            // Custom resources have no protobuf form.
            let builtin = || {
                let st = shared.store.lock();
                st.registry
                    .get(&p.group, &p.version, &p.plural)
                    .is_some_and(|t| !t.custom)
            };
            match crate::conversion::handle(&shared.store, &shared.faults, rr).await {
                Ok(Reply::Json(code, v, warnings)) => {
                    object_response(code, Doc::Value(&v), &warnings, accept)
                }
                Ok(Reply::Object(code, v, warnings)) => {
                    object_response(code, Doc::Value(&v), &warnings, accept)
                }
                Ok(Reply::Unchanged(v, warnings)) => {
                    record.unchanged = true;
                    object_response(200, Doc::Value(&v), &warnings, accept)
                }
                Ok(Reply::Raw(code, b)) => object_response(code, Doc::Json(b), &[], accept),
                // A built-in kind's events as protobuf frames when asked for first; else
                // JSON lines (client-go reads a stream by its Content-Type).
                Ok(Reply::Watch(stream)) if accept.protobuf_first && builtin() => {
                    let frames = stream.map(|b| {
                        Ok::<_, Infallible>(Frame::data(crate::protobuf::watch_frames(&b)))
                    });
                    let mut r = Response::new(StreamBody::new(frames).boxed_unsync());
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(crate::protobuf::WATCH_MEDIA_TYPE),
                    );
                    r.headers_mut().insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("no-cache, private"),
                    );
                    r
                }
                Ok(Reply::Watch(_)) if accept.protobuf_only() => not_acceptable(),
                Ok(Reply::Watch(stream)) => {
                    let frames = stream.map(|b| Ok::<_, Infallible>(Frame::data(b)));
                    let mut r = Response::new(StreamBody::new(frames).boxed_unsync());
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r.headers_mut().insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("no-cache, private"),
                    );
                    r
                }
                Err(e) if accept.protobuf_only() => {
                    object_response(e.code, Doc::Value(&e.to_status()), &[], accept)
                }
                Err(e) => error_response(&e),
            }
        }
        other => non_resource(shared, other, &parts),
    };
    record.status = response.status().as_u16();
    let result = match decision.after {
        Some(FaultAction::FailAfterCommit { code, reason }) => Ok(error_response(&ApiError::new(
            code,
            reason.clone(),
            format!("injected fault after commit: {reason}"),
        ))),
        Some(FaultAction::DropAfterCommit) => Err(std::io::Error::other(
            "injected fault: connection dropped after commit",
        )),
        _ => Ok(response),
    };
    (result, record, rt)
}

/// An aggregated discovery document with the caching headers kube-apiserver sends: an `ETag` of
/// the content (`304 Not Modified` when `If-None-Match` names it), `Vary: Accept` (the same URL
/// serves the legacy document) and `Cache-Control: public`.
fn aggregated_response(doc: &Value, if_none_match: Option<&str>) -> Response<Body> {
    use std::hash::{Hash, Hasher};
    let body = doc.to_string();
    // Content-derived, so equal documents (even from another server on the same port) share it.
    let mut hasher = std::hash::DefaultHasher::new();
    body.hash(&mut hasher);
    let etag = format!("\"{:016X}\"", hasher.finish());
    let not_modified = if_none_match == Some(etag.as_str());
    let mut r = if not_modified {
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(full(Bytes::from(body)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::discovery::accept::AGGREGATED_V2),
        );
        r
    };
    let h = r.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
    r
}

async fn read_body<B>(body: B, headers: &http::HeaderMap, max: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        && len > max
    {
        return Err(ApiError::too_large(max));
    }
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(max)),
        Err(e) => Err(ApiError::bad_request(format!(
            "error reading request body: {e}"
        ))),
    }
}

fn non_resource(shared: &Shared, route: Route, req: &http::request::Parts) -> Response<Body> {
    if req.method != http::Method::GET {
        return error_response(&ApiError::method_not_allowed());
    }
    let header = |h: header::HeaderName| req.headers.get(h).and_then(|v| v.to_str().ok());
    let aggregated = matches!(route, Route::CoreVersions | Route::Groups)
        && crate::discovery::accept::wants_aggregated(header(header::ACCEPT).unwrap_or(""));
    let st = shared.store.lock();
    if aggregated {
        let doc = match route {
            Route::CoreVersions => crate::discovery::aggregated::core(&st.registry),
            _ => crate::discovery::aggregated::groups(&st.registry),
        };
        drop(st);
        return aggregated_response(&doc, header(header::IF_NONE_MATCH));
    }
    let doc = match route {
        Route::Version => Some(crate::discovery::version()),
        Route::Stats => Some(shared.stats.to_json()),
        Route::Health => {
            let mut r = Response::new(full(Bytes::from_static(b"ok")));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return r;
        }
        Route::CoreVersions => Some(crate::discovery::core_versions(&shared.addr.to_string())),
        Route::Groups => Some(crate::discovery::groups(&st.registry)),
        Route::Group(g) => crate::discovery::group(&st.registry, &g),
        Route::ResourceList(g, v) => crate::discovery::resource_list(&st.registry, &g, &v),
        Route::OpenApiV2 => Some(crate::openapi::v2()),
        Route::OpenApiV3Index => Some(crate::openapi::v3_index(&st.registry)),
        Route::OpenApiV3(g, v) => crate::openapi::v3_group_version(&st.registry, &g, &v),
        Route::Resource(_) | Route::NotFound => None,
    };
    drop(st);
    match doc {
        Some(d) => value_response(200, &d),
        None => error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn send(server: &ApiServer, method: &str, uri: &str, body: &str) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = server.handle_in_process(req).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap())
    }

    async fn send_with(
        server: &ApiServer,
        method: &str,
        uri: &str,
        headers: &[(header::HeaderName, &str)],
        body: Vec<u8>,
    ) -> (u16, String, Bytes) {
        let mut req = Request::builder().method(method).uri(uri);
        for (h, v) in headers {
            req = req.header(h, *v);
        }
        let resp = server
            .handle_in_process(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let code = resp.status().as_u16();
        let ct = resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        (
            code,
            ct,
            resp.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    /// Protobuf in and out for built-in kinds; JSON (or `406`) for what has no protobuf form.
    #[tokio::test]
    async fn protobuf_bodies_and_answers() {
        use crate::protobuf::{MEDIA_TYPE, decode_object, encode_object};
        let server = ApiServer::start().await.unwrap();
        let cms = "/api/v1/namespaces/default/configmaps";
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "pb", "creationTimestamp": null}, "data": {"a": "b"}});
        let both = format!("{MEDIA_TYPE}, application/json");
        let pb_headers = [
            (header::CONTENT_TYPE, MEDIA_TYPE),
            (header::ACCEPT, both.as_str()),
        ];
        let body = encode_object(&cm).unwrap().unwrap();
        let (code, ct, out) = send_with(&server, "POST", cms, &pb_headers, body).await;
        assert_eq!((code, ct.as_str()), (201, MEDIA_TYPE));
        let created = decode_object(&out).unwrap();
        assert_eq!(created["data"]["a"], "b");
        assert!(created["metadata"]["creationTimestamp"].is_string());
        // A list, and a protobuf-only client.
        let only = [(header::ACCEPT, MEDIA_TYPE)];
        let (code, ct, out) = send_with(&server, "GET", cms, &only, vec![]).await;
        assert_eq!((code, ct.as_str()), (200, MEDIA_TYPE));
        assert_eq!(decode_object(&out).unwrap()["kind"], "ConfigMapList");
        // Its errors are protobuf Status objects.
        let (code, ct, out) =
            send_with(&server, "GET", &format!("{cms}/nope"), &only, vec![]).await;
        assert_eq!((code, ct.as_str()), (404, MEDIA_TYPE));
        assert_eq!(decode_object(&out).unwrap()["reason"], "NotFound");
        // Watch events are protobuf frames.
        let req = Request::get(format!("{cms}?watch=true&resourceVersion=0"))
            .header(header::ACCEPT, MEDIA_TYPE)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = server.handle_in_process(req).await.unwrap();
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            crate::protobuf::WATCH_MEDIA_TYPE
        );
        let mut body = resp.into_body();
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(frame.len(), 4 + len);
        assert!(frame.windows(5).any(|w| w == b"ADDED"), "{frame:?}");
        // Malformed protobuf is a bad request.
        let (code, _, out) = send_with(
            &server,
            "POST",
            cms,
            &pb_headers,
            b"k8s\0\x12\x05ab".to_vec(),
        )
        .await;
        assert_eq!(code, 400, "{out:?}");
        // A body whose kind is not the resource's is refused as a JSON one is.
        let secret =
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
        let body = encode_object(&secret).unwrap().unwrap();
        let (code, ..) = send_with(&server, "POST", cms, &pb_headers, body).await;
        assert_eq!(code, 400);
        // Discovery documents and the namespace list: JSON for a client that takes both.
        let (code, ct, _) = send_with(
            &server,
            "GET",
            "/api/v1",
            &[(header::ACCEPT, both.as_str())],
            vec![],
        )
        .await;
        assert_eq!((code, ct.as_str()), (200, "application/json"));
    }

    /// The fuzz targets' entry point answers as the HTTP side does, and is counted the same.
    #[tokio::test]
    async fn in_process_requests_take_the_http_path() {
        let server = ApiServer::start().await.unwrap();
        let cms = "/api/v1/namespaces/default/configmaps";
        let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#;
        let (code, created) = send(&server, "POST", cms, cm).await;
        assert_eq!(code, 201, "{created}");
        let (code, got) = send(&server, "GET", &format!("{cms}/a"), "").await;
        assert_eq!(
            (code, &got["metadata"]["uid"]),
            (200, &created["metadata"]["uid"])
        );
        let (code, status) = send(&server, "POST", cms, "{").await;
        assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")));
        assert_eq!(server.stats().count(crate::Verb::Create), 2);
    }
}
