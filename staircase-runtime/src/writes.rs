//! Counting every write a step makes, so the one-modification rule is enforced rather than hoped for.
//!
//! Steps get a `kube::Client` whose stack records each mutating request into the log of the step
//! that issued it ([`CountWrites`]); the log travels as a tokio task-local.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Either, Full};
use kube::client::Body;
use tower::Layer;

use crate::cache::Cache;
use crate::retry::SafeRetry;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

tokio::task_local! {
    static CURRENT: RefCell<Log>;
}

/// A step's writes, and the cache its writes leave their marks in.
struct Log {
    /// The step's name (a recorded run's requests are filed under it).
    step: &'static str,
    writes: Vec<Write>,
    cache: Option<Arc<Cache>>,
}

/// One mutating request made during a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// `POST`, `PUT`, `PATCH` or `DELETE`; `EXTERNAL` for a call recorded with
    /// [`Context::record_external`](crate::Context::record_external).
    pub method: &'static str,
    /// The request path (or the description of an external call).
    pub path: String,
    /// The HTTP status the server answered (0 when no answer came back).
    pub status: u16,
    /// `metadata.resourceVersion` of the object the server returned, when it returned one.
    pub resource_version: Option<String>,
    /// The `fieldManager` the request named (`None` when it named none: the API server then
    /// records the write under a manager derived from the client's user agent).
    pub field_manager: Option<String>,
}

impl Write {
    /// Whether the write took effect: a 2xx answer (or a recorded external call).
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether this write is to an Event (core `v1` or `events.k8s.io`), which reports rather
    /// than modifies and so is exempt. Decided by the path's resource, so an object in a
    /// namespace, or named, `events` still counts.
    pub fn is_event(&self) -> bool {
        let Some(rest) = self.path.strip_prefix("/api/v1/").or_else(|| {
            let rest = self.path.strip_prefix("/apis/events.k8s.io/")?;
            Some(rest.split_once('/')?.1) // the version
        }) else {
            return false;
        };
        let resource = match rest.strip_prefix("namespaces/") {
            Some(rest) => rest.split_once('/').map_or("", |(_, rest)| rest),
            None => rest,
        };
        resource == "events" || resource.starts_with("events/")
    }
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.method, self.path, self.status)
    }
}

/// Runs `fut` (one step) with a fresh write log: returns its output and every write it made
/// through a counting client. Each write leaves its mark in `cache` as soon as its answer
/// arrives (read-your-own-writes for the step's later reads and every run's). The log lives in
/// the task-local itself, so a step that writes nothing allocates nothing for it.
pub(crate) async fn recorded<F: Future>(
    cache: Option<Arc<Cache>>,
    step: &'static str,
    fut: F,
) -> (F::Output, Vec<Write>) {
    let log = Log {
        step,
        writes: Vec::new(),
        cache,
    };
    let mut scoped = std::pin::pin!(CURRENT.scope(RefCell::new(log), fut));
    let out = scoped.as_mut().await;
    let writes = scoped
        .as_mut()
        .take_value()
        .map(|log| log.into_inner().writes)
        .unwrap_or_default();
    (out, writes)
}

/// The name of the step being run, when the caller is inside one.
pub(crate) fn current_step() -> Option<&'static str> {
    CURRENT.try_with(|log| log.borrow().step).ok()
}

/// Records `w` into the log of the step being run; `false` when the caller is not inside one.
pub fn record_current(w: Write) -> bool {
    CURRENT
        .try_with(|log| log.borrow_mut().writes.push(w))
        .is_ok()
}

/// Records a write a step made through a counting client, and leaves its mark in the cache.
fn record_write(w: Write, created: Option<&str>) {
    let _ = CURRENT.try_with(|log| {
        let mut log = log.borrow_mut();
        if let Some(cache) = &log.cache {
            cache.note(&w, created);
        }
        log.writes.push(w);
    });
}

/// The clients an [`Operator`](crate::Operator) works with: one for its own requests (reads,
/// status, Events) and one, handed to steps, that counts their writes.
///
/// From a `kube::Client` (what `Operator::new` takes) the counting one wraps it, so a step's
/// request passes two tower buffers. Built from a `kube::Config` ([`OperatorClient::try_from`])
/// it is one client whose stack has the counting layer (`CountWrites`) built in, and the layer
/// only looks at requests made inside a step.
///
/// # Retries
///
/// Built from a `kube::Config`, the client resends a request answered 429, 503 or 504 as kube's
/// does, except a `POST` or `PATCH` answered 503 or 504: the server may have applied it, and
/// resent, a `generateName` create would make a second object. That failure fails the step;
/// the next run reads what the server holds and decides again. A `kube::Client` handed to
/// `Operator::new` keeps its own stack, kube's default retries included: build the operator's
/// client with [`preflight::client`](crate::preflight::client) or `OperatorClient::try_from(config)`.
#[derive(Clone)]
pub struct OperatorClient {
    pub(crate) client: kube::Client,
    pub(crate) counting: kube::Client,
}

impl From<kube::Client> for OperatorClient {
    fn from(client: kube::Client) -> Self {
        let ns = client.default_namespace().to_string();
        let counting = kube::Client::new(CountWrites.layer(SendVia(client.clone())), ns);
        OperatorClient { client, counting }
    }
}

impl TryFrom<kube::Config> for OperatorClient {
    type Error = kube::Error;

    /// kube's default client stack for `config`, with the write-counting layer at its bottom.
    /// When `config.default_retry` is on (kube's default), kube's retry policy is replaced by one
    /// that never resends a `POST` or `PATCH` the server may have applied (see
    /// [`OperatorClient`]).
    fn try_from(mut config: kube::Config) -> Result<Self, kube::Error> {
        let retry = std::mem::replace(&mut config.default_retry, false);
        let builder = kube::client::ClientBuilder::try_from(config)?;
        let client = if retry {
            let safe = tower::layer::layer_fn(|inner| {
                tower::retry::Retry::new(
                    SafeRetry::new(),
                    tower::buffer::Buffer::new(inner, crate::retry::BUFFER),
                )
            });
            builder.with_layer(&safe).with_layer(&CountWrites).build()
        } else {
            builder.with_layer(&CountWrites).build()
        };
        Ok(OperatorClient {
            counting: client.clone(),
            client,
        })
    }
}

impl OperatorClient {
    /// The client for requests that are not a step's (they are never counted).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Clients over `client` that send every write as a server-side dry run (`dryRun=All`),
    /// for explaining a run. The counting one counts those writes as a step's (the dry-run
    /// marker is added below the counting layer): they are what the step would do.
    pub(crate) fn dry_run(client: &kube::Client) -> OperatorClient {
        let ns = client.default_namespace().to_string();
        let dry = DryRun(SendVia(client.clone()));
        OperatorClient {
            client: kube::Client::new(dry.clone(), ns.clone()),
            counting: kube::Client::new(CountWrites.layer(dry), ns),
        }
    }
}

/// Adds `dryRun=All` to every write: the API server validates and answers it, stores nothing.
#[derive(Clone)]
struct DryRun<S>(S);

impl<S> tower::Service<Request<Body>> for DryRun<S>
where
    S: tower::Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if write_method(req.method()).is_some() && !is_dry_run(&req) {
            let mut parts = req.uri().clone().into_parts();
            let pq = parts.path_and_query.as_ref();
            let path = pq.map_or("/", |p| p.path());
            let with = match pq.and_then(|p| p.query()) {
                Some(q) => format!("{path}?{q}&dryRun=All"),
                None => format!("{path}?dryRun=All"),
            };
            parts.path_and_query = with.parse().ok();
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
        self.0.call(req)
    }
}

/// A tower layer that records every write made inside a step into that step's log; requests
/// made outside a step pass through untouched. The log is task-local: kube's client hands
/// requests to a buffer worker, but the response future is polled by the caller, inside the
/// step, so that is where the write is recorded.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountWrites;

impl<S> tower::Layer<S> for CountWrites {
    type Service = Counting<S>;

    fn layer(&self, inner: S) -> Counting<S> {
        Counting { inner }
    }
}

/// The service [`CountWrites`] wraps around a client stack.
#[derive(Debug, Clone)]
pub struct Counting<S> {
    inner: S,
}

/// A `kube::Client` as a tower service, so that [`Counting`] can wrap a client it is given.
#[derive(Clone)]
pub(crate) struct SendVia(pub(crate) kube::Client);

impl tower::Service<Request<Body>> for SendVia {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move { client.send(req).await })
    }
}

/// The method's name when it writes (a `&'static str`: nothing to allocate per write).
pub(crate) fn write_method(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => return None,
    })
}

/// The `fieldManager` parameter of a request's query, decoded.
fn field_manager(query: Option<&str>) -> Option<String> {
    let value = query?
        .split('&')
        .find_map(|p| p.strip_prefix("fieldManager="))?;
    if !value.contains(['%', '+']) {
        return Some(value.to_string());
    }
    // `application/x-www-form-urlencoded`, as kube writes its queries.
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => bytes.push(b' '),
            b'%' => match rest
                .get(..2)
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
            {
                Some(v) => {
                    bytes.push(v);
                    rest = &rest[2..];
                }
                None => bytes.push(b'%'),
            },
            _ => bytes.push(b),
        }
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn is_dry_run(req: &Request<Body>) -> bool {
    req.uri().query().is_some_and(|q| q.contains("dryRun="))
}

fn in_a_step() -> bool {
    CURRENT.try_with(|_| ()).is_ok()
}

/// Marks a request an outer [`Counting`] layer already counts.
#[derive(Clone, Copy)]
struct Counted;

/// A response body: passed through, or read whole by [`Counting`] to learn the write's version.
pub type CountedBody<B> = Either<B, Full<Bytes>>;

impl<S, B> tower::Service<Request<Body>> for Counting<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<CountedBody<B>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // A client whose stack counts already, handed to `Operator::new` (which wraps it in a
        // counting layer of its own), must not count each write twice.
        let counted = req.extensions_mut().insert(Counted).is_some();
        let write = write_method(req.method())
            .filter(|_| !counted && !is_dry_run(&req))
            .map(|method| {
                let uri = req.uri();
                (method, uri.path().to_string(), field_manager(uri.query()))
            });
        let sent = self.inner.call(req);
        Box::pin(async move {
            let res = sent.await.map_err(Into::into);
            // Polled by the caller: this is where we can tell whether a step made the request.
            match write {
                Some((method, path, manager)) if in_a_step() => {
                    let (res, write, created) = read_write(method, path, manager, res).await;
                    record_write(write, created.as_deref());
                    res
                }
                _ => res.map(|r| r.map(Either::Left)),
            }
        })
    }
}

/// The response to a write, its body read whole (kube reads it whole anyway), and what the
/// write did, including the resourceVersion it produced (for read-your-own-writes) and, for a
/// create, the name of the object it made.
async fn read_write<B>(
    method: &'static str,
    path: String,
    field_manager: Option<String>,
    res: Result<Response<B>, BoxError>,
) -> (
    Result<Response<CountedBody<B>>, BoxError>,
    Write,
    Option<String>,
)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut write = Write {
        method,
        path,
        status: 0,
        resource_version: None,
        field_manager,
    };
    let resp = match res {
        Ok(resp) => resp,
        Err(e) => return (Err(e), write, None),
    };
    write.status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return (Err(e.into()), write, None),
    };
    let mut created = None;
    if write.succeeded() {
        write.resource_version = resource_version_of(&bytes);
        if method == "POST" {
            created = metadata_string(&bytes, b"name");
        }
    }
    let resp = Response::from_parts(parts, Either::Right(Full::new(bytes)));
    (Ok(resp), write, created)
}

/// `metadata.resourceVersion` of the JSON object in `body`, read without parsing the rest: the
/// response to every write passes through here (and is parsed again by kube), so this only
/// walks the structure, skipping values (strings eight bytes at a time), and stops at the answer. `None` for anything
/// it does not understand (not an object, malformed, a version with escapes).
fn resource_version_of(body: &[u8]) -> Option<String> {
    metadata_string(body, b"resourceVersion")
}

/// The string `metadata.<key>` of the JSON object in `body`, found as [`resource_version_of`]
/// finds the version.
fn metadata_string(body: &[u8], key: &[u8]) -> Option<String> {
    let mut j = Scan { b: body, i: 0 };
    j.enter_object()?;
    j.find_key(b"metadata")?;
    j.enter_object()?;
    j.find_key(key)?;
    let v = j.plain_string()?;
    String::from_utf8(v.to_vec()).ok()
}

/// A cursor over JSON bytes that can skip values; just enough for [`resource_version_of`].
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    fn enter_object(&mut self) -> Option<()> {
        self.eat(b'{')
    }

    /// Moves past `"key":` of the current object's member named `key`, skipping the others.
    fn find_key(&mut self, key: &[u8]) -> Option<()> {
        loop {
            self.ws();
            let k = self.raw_string()?;
            self.eat(b':')?;
            if k == key {
                return Some(());
            }
            self.skip_value()?;
            self.ws();
            match self.b.get(self.i)? {
                b',' => self.i += 1,
                _ => return None, // `}`: no such member
            }
        }
    }

    /// The raw bytes between the quotes of a string (escapes left as they are).
    fn raw_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        self.i = string_end(self.b, start)?;
        Some(&self.b[start..self.i - 1])
    }

    /// A string without escapes (what a resourceVersion is).
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.raw_string().filter(|s| !s.contains(&b'\\'))
    }

    fn skip_value(&mut self) -> Option<()> {
        self.ws();
        match *self.b.get(self.i)? {
            b'"' => self.raw_string().map(|_| ()),
            b'{' | b'[' => {
                self.i = container_end(self.b, self.i)?;
                Some(())
            }
            _ => {
                // A number, true, false or null: up to the next delimiter.
                let rest = &self.b[self.i..];
                self.i += rest.iter().position(|c| matches!(c, b',' | b'}' | b']'))?;
                Some(())
            }
        }
    }
}

/// Index just past the container (object or array) that opens at `start`. Brackets nest;
/// strings may hold brackets, so they are stepped over whole.
fn container_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while let Some(&c) = b.get(i) {
        i += 1;
        match c {
            b'"' => i = string_end(b, i)?,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Index just past the closing quote of the string whose contents start at `i`.
///
/// Most of a response's bytes are inside strings (keys, timestamps, uids, `managedFields`), so
/// this looks at eight bytes at a time for a quote or a backslash. On a 943-byte custom resource
/// (keys sorted, as the API server writes them, so `managedFields` comes before
/// `resourceVersion`) a scan took 9.5 K instructions with a byte loop and takes 6 K with this;
/// `memchr` cost more than either, its call outweighing these short strings.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        while let Some(chunk) = b.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let hits = has_byte(word, b'"') | has_byte(word, b'\\');
            if hits != 0 {
                // Little-endian: the lowest flagged byte is the first in the text.
                i += (hits.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The high bit of every byte of `word` equal to `c` (and possibly of bytes after the first such
/// byte, never before it: the subtraction's borrow only runs upwards).
fn has_byte(word: u64, c: u8) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let x = word ^ (ONES * u64::from(c));
    x.wrapping_sub(ONES) & !x & HIGHS
}

#[cfg(test)]
mod tests {
    use super::{Write, field_manager, resource_version_of as rv, string_end};

    #[test]
    fn the_field_manager_is_read_from_the_query_and_decoded() {
        assert_eq!(field_manager(None), None);
        assert_eq!(field_manager(Some("dryRun=All")), None);
        assert_eq!(
            field_manager(Some("fieldManager=foo-operator&force=true")).as_deref(),
            Some("foo-operator")
        );
        assert_eq!(
            field_manager(Some("force=true&fieldManager=my+op%2Fv1%C3%A9")).as_deref(),
            Some("my op/v1\u{e9}")
        );
        assert_eq!(
            field_manager(Some("fieldManager=a%2")).as_deref(),
            Some("a%2")
        );
    }

    #[test]
    fn finds_the_version_of_the_object_not_lookalikes() {
        let body =
            br#"{"apiVersion":"v1","kind":"ConfigMap","data":{"metadata":{"resourceVersion":"1"}},
            "metadata" : {"annotations":{"resourceVersion":"2","x":"a \" } { [ \\"},
            "labels":{},"managedFields":[{"a":[1,2,{"b":null}],"c":true}],
            "resourceVersion": "42", "uid":"u"},"spec":{}}"#;
        assert_eq!(rv(body).as_deref(), Some("42"));
    }

    #[test]
    fn anything_else_is_none() {
        for body in [
            &br#"{"metadata":{"name":"x"}}"#[..],
            br#"{"kind":"Status","code":409}"#,
            br#"[{"metadata":{"resourceVersion":"1"}}]"#,
            br#"{"metadata":{"resourceVersion":"1\u0031"}}"#,
            br#"{"metadata":{"resourceVersion":"#,
            br#"{"metadata":[],"x":1"#,
            b"",
            b"not json",
        ] {
            assert_eq!(rv(body), None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn agrees_with_a_full_parse_on_what_the_api_server_returns() {
        let obj = serde_json::json!({
            "apiVersion": "demo/v1", "kind": "Foo",
            "metadata": {"name": "a", "namespace": "n", "resourceVersion": "7",
                "annotations": {"k": "v \"q\" {"}, "finalizers": ["f"]},
            "spec": {"list": [1, 2.5, -3e2, null, true, {"x": []}]},
        });
        let pretty = serde_json::to_vec_pretty(&obj).unwrap();
        let compact = serde_json::to_vec(&obj).unwrap();
        assert_eq!(rv(&pretty).as_deref(), Some("7"));
        assert_eq!(rv(&compact).as_deref(), Some("7"));
    }

    // Skipping counts only the value's own kind of bracket: the other kind, nested any way and
    // inside strings (escaped quotes and backslashes included), must not end it early or late.
    #[test]
    fn skips_mixed_nesting_and_brackets_inside_strings() {
        let tricky = serde_json::json!([
            {"a": [[{"b": "]}]}\"["}], {}], "c": "\\"},
            "[{\"}]", [], [{}], {"d": [{"e": ["}"]}]}
        ]);
        for before in [tricky.clone(), serde_json::json!({"x": tricky})] {
            let obj = serde_json::json!({
                "kind": "Foo",
                "metadata": {"managedFields": before, "labels": {"l": "]"},
                    "resourceVersion": "99"},
                "spec": tricky,
            });
            let body = serde_json::to_vec(&obj).unwrap();
            assert_eq!(rv(&body).as_deref(), Some("99"));
        }
    }

    #[test]
    fn events_are_told_by_the_resource_not_by_a_name() {
        let write = |path: &str| Write {
            method: "POST",
            path: path.into(),
            status: 201,
            resource_version: None,
            field_manager: None,
        };
        for event in [
            "/api/v1/namespaces/default/events",
            "/api/v1/namespaces/events/events/x.17f",
            "/apis/events.k8s.io/v1/namespaces/default/events",
            "/apis/events.k8s.io/v1beta1/namespaces/default/events/x.17f",
            "/api/v1/events",
        ] {
            assert!(write(event).is_event(), "{event}");
        }
        for other in [
            "/api/v1/namespaces/events/configmaps/a",
            "/api/v1/namespaces/events",
            "/api/v1/namespaces/default/configmaps/events",
            "/apis/demo.example/v1/namespaces/default/events",
            "/apis/demo.example/v1/namespaces/default/foos/events/status",
            "/apis/events.k8s.io",
            "https://example.com/events",
        ] {
            assert!(!write(other).is_event(), "{other}");
        }
    }

    // The word-at-a-time search must find the first quote or backslash wherever it falls in
    // a word, with any mix of escapes before it, and must not read past the end.
    #[test]
    fn string_end_finds_the_closing_quote_at_every_offset() {
        for len in 0..40 {
            for escape_at in (0..len).map(Some).chain([None]) {
                let mut content = Vec::new();
                for k in 0..len {
                    if Some(k) == escape_at {
                        content.extend_from_slice(br#"\""#);
                    }
                    content.push(b'a' + (k % 26) as u8);
                }
                let mut body = content.clone();
                body.extend_from_slice(br#"","x""#);
                assert_eq!(
                    string_end(&body, 0),
                    Some(content.len() + 1),
                    "{}",
                    String::from_utf8_lossy(&body)
                );
                // Unterminated: no answer, no panic.
                assert_eq!(string_end(&content, 0), None);
            }
        }
    }

    // Every byte value next to a quote: the word trick's borrow must not flag a byte before the
    // real first match, whatever its neighbours.
    #[test]
    fn string_end_is_not_fooled_by_neighbouring_bytes() {
        for c in 0..=255u8 {
            if c == b'"' || c == b'\\' {
                continue;
            }
            for at in 0..9 {
                let mut body = vec![c; 16];
                body[at] = b'"';
                assert_eq!(string_end(&body, 0), Some(at + 1), "byte {c} quote at {at}");
            }
        }
    }
}
