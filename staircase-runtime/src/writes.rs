//! Counting every write a step makes, so the one-modification rule is enforced rather than hoped for.
//!
//! The operator wraps the user's `kube::Client` in a tower service that records each mutating
//! request into the log of the run that issued it. The log travels as a tokio task-local: kube's
//! `Client` hands requests to a buffer worker, but the response future is polled by the caller,
//! inside the step, so that is where the write is recorded.

use std::cell::RefCell;
use std::fmt;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;

tokio::task_local! {
    static CURRENT: RefCell<Vec<Write>>;
}

/// One mutating request made during a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// `POST`, `PUT`, `PATCH` or `DELETE`; `EXTERNAL` for a call recorded with
    /// [`Context::record_external`](crate::Context::record_external).
    pub method: String,
    /// The request path (or the description of an external call).
    pub path: String,
    /// The HTTP status the server answered (0 when no answer came back).
    pub status: u16,
    /// `metadata.resourceVersion` of the object the server returned, when it returned one.
    pub resource_version: Option<String>,
}

impl Write {
    /// Whether the write took effect: a 2xx answer (or a recorded external call).
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether this write is to an Event, which reports rather than modifies and so is exempt.
    pub fn is_event(&self) -> bool {
        self.path.contains("/events")
    }
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.method, self.path, self.status)
    }
}

/// Runs `fut` (one step) with a fresh write log: returns its output and every write it made
/// through a counting client. The log lives in the task-local itself, so a step that writes
/// nothing allocates nothing for it.
pub async fn recorded<F: Future>(fut: F) -> (F::Output, Vec<Write>) {
    let mut scoped = std::pin::pin!(CURRENT.scope(RefCell::new(Vec::new()), fut));
    let out = scoped.as_mut().await;
    let writes = scoped
        .as_mut()
        .take_value()
        .map(RefCell::into_inner)
        .unwrap_or_default();
    (out, writes)
}

/// Records `w` into the log of the step being run; `false` when the caller is not inside one.
pub fn record_current(w: Write) -> bool {
    CURRENT.try_with(|log| log.borrow_mut().push(w)).is_ok()
}

/// A tower service that forwards to a `kube::Client` and records writes into the current run log.
#[derive(Clone)]
pub struct CountingService {
    inner: kube::Client,
}

/// Wraps `client` so that every write made through the returned client during a step is counted.
pub fn counting_client(client: kube::Client) -> kube::Client {
    let ns = client.default_namespace().to_string();
    kube::Client::new(CountingService { inner: client }, ns)
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn is_dry_run(req: &Request<Body>) -> bool {
    req.uri().query().is_some_and(|q| q.contains("dryRun="))
}

impl tower::Service<Request<Body>> for CountingService {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let client = self.inner.clone();
        if !is_write(req.method()) || is_dry_run(&req) {
            return Box::pin(async move { client.send(req).await });
        }
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        Box::pin(async move {
            let res = client.send(req).await;
            let (resp, write) = match res {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let (parts, body) = resp.into_parts();
                    // kube reads the whole body anyway; reading it here lets us learn the
                    // resourceVersion the write produced (for read-your-own-writes).
                    let bytes: Bytes = body
                        .collect()
                        .await
                        .map_err(|e| kube::Error::Service(e.into()))?
                        .to_bytes();
                    let rv = if (200..300).contains(&status) {
                        resource_version_of(&bytes)
                    } else {
                        None
                    };
                    let write = Write {
                        method,
                        path,
                        status,
                        resource_version: rv,
                    };
                    (Ok(Response::from_parts(parts, Body::from(bytes))), write)
                }
                Err(e) => {
                    let write = Write {
                        method,
                        path,
                        status: 0,
                        resource_version: None,
                    };
                    (Err(e), write)
                }
            };
            record_current(write);
            resp
        })
    }
}

/// `metadata.resourceVersion` of the JSON object in `body`, read without parsing the rest: the
/// response to every write passes through here (and is parsed again by kube), so this only
/// walks the structure, skipping values byte-wise, and stops at the answer. `None` for anything
/// it does not understand (not an object, malformed, a version with escapes).
fn resource_version_of(body: &[u8]) -> Option<String> {
    let mut j = Scan { b: body, i: 0 };
    j.enter_object()?;
    j.find_key(b"metadata")?;
    j.enter_object()?;
    j.find_key(b"resourceVersion")?;
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
        loop {
            match *self.b.get(self.i)? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return Some(&self.b[start..self.i - 1]);
                }
                _ => self.i += 1,
            }
        }
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
                // Brackets nest; strings may hold brackets, so step over them whole.
                let mut depth = 0usize;
                loop {
                    match *self.b.get(self.i)? {
                        b'"' => {
                            self.raw_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                // A number, true, false or null: up to the next delimiter.
                while !matches!(self.b.get(self.i)?, b',' | b'}' | b']') {
                    self.i += 1;
                }
                Some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resource_version_of as rv;

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
}
