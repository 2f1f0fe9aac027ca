//! Routes of your own on the operator's endpoint ([`server`](crate::server)), beside `/metrics`,
//! `/healthz` and `/readyz`.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};

/// A handler, its body type erased.
type Handler = Arc<dyn Fn(Request<Bytes>) -> BoxFuture<'static, Response<Bytes>> + Send + Sync>;

/// The paths the endpoint answers itself.
const RESERVED: [&str; 4] = ["/metrics", "/healthz", "/livez", "/readyz"];

/// Requests with a larger body are refused (`413`) before a handler sees them: the endpoint
/// usually listens on every interface of the pod.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// HTTP handlers of your own, served by the operator's endpoint beside `/metrics`, `/healthz`
/// and `/readyz`: a `/debug/...` page, a version, a hook for your tooling.
///
/// A handler is an async function from the request (its body read whole, at most 1 MiB) to a
/// response whose body is anything that converts into [`Bytes`] (`String`, `&'static str`,
/// `Vec<u8>`, …). It gets every method; answer `405` yourself where that matters.
///
/// ```
/// # use staircase_runtime as staircase;
/// use staircase::server::Routes;
///
/// let routes = Routes::new()
///     .route("/version", |_req| async { http::Response::new("1.4.2\n") })
///     // A path ending in `/*` takes every path below it.
///     .route("/debug/*", |req| async move {
///         let what = req.uri().path().trim_start_matches("/debug/").to_string();
///         http::Response::new(format!("no debug page {what:?}\n"))
///     });
/// # let _ = routes;
/// ```
///
/// An [`Operator`](crate::Operator) takes them one by one with
/// [`Operator::with_route`](crate::Operator::with_route) and serves them on its
/// [`metrics_addr`](crate::OperatorConfig::metrics_addr);
/// [`serve_with`](crate::server::serve_with) serves them on a listener of your choice.
#[derive(Clone, Default)]
pub struct Routes {
    /// (path, whether it is a prefix, handler), in the order added: the first match answers.
    routes: Vec<(String, bool, Handler)>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.routes.iter().map(|(p, prefix, _)| match prefix {
                true => format!("{p}*"),
                false => p.clone(),
            }))
            .finish()
    }
}

impl Routes {
    /// No routes of your own.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `path` with `handler`. `path` is exact (`/version`), or ends in `/*` to take
    /// every path below it (`/debug/*` answers `/debug/` and `/debug/a/b`). Query strings are
    /// not part of the path: the handler finds them in `req.uri()`.
    ///
    /// # Panics
    /// On a path that does not start with `/`, one the endpoint answers itself (`/metrics`,
    /// `/healthz`, `/livez`, `/readyz`), and one added before: these are mistakes in the
    /// program, found at its start.
    pub fn route<F, Fut, B>(mut self, path: &str, handler: F) -> Self
    where
        F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: Into<Bytes>,
    {
        assert!(
            path.starts_with('/'),
            "route {path:?}: a path starts with `/`"
        );
        let (at, prefix) = match path.strip_suffix('*') {
            Some(p) if p.ends_with('/') => (p, true),
            _ => (path, false),
        };
        assert!(
            !RESERVED.iter().any(|r| match prefix {
                true => r.starts_with(at),
                false => *r == at,
            }),
            "route {path:?}: the endpoint answers {RESERVED:?} itself"
        );
        assert!(
            !self
                .routes
                .iter()
                .any(|(p, pre, _)| p == at && *pre == prefix),
            "route {path:?} was added already"
        );
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |req| {
            let fut = handler(req);
            Box::pin(async move { fut.await.map(Into::into) })
        });
        self.routes.push((at.to_string(), prefix, erased));
        self
    }

    /// Whether no route was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The handler answering `path`, if any.
    pub(crate) fn find(
        &self,
        path: &str,
    ) -> Option<&(dyn Fn(Request<Bytes>) -> BoxFuture<'static, Response<Bytes>> + Send + Sync)>
    {
        self.routes
            .iter()
            .find(|(p, prefix, _)| match prefix {
                true => path.starts_with(p.as_str()),
                false => path == p,
            })
            .map(|(_, _, h)| &**h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Routes {
        Routes::new()
    }

    #[test]
    fn exact_paths_and_prefixes_match_as_documented() {
        let r = noop()
            .route("/version", |_| async { Response::new("v") })
            .route("/debug/*", |_| async { Response::new("d") });
        assert!(r.find("/version").is_some());
        assert!(r.find("/version/x").is_none());
        assert!(r.find("/debug/").is_some());
        assert!(r.find("/debug/a/b").is_some());
        assert!(r.find("/debug").is_none());
        assert_eq!(format!("{r:?}"), r#"["/version", "/debug/*"]"#);
    }

    #[test]
    #[should_panic(expected = "answers")]
    fn the_endpoints_own_paths_are_refused() {
        let _ = noop().route("/readyz", |_| async { Response::new("") });
    }

    #[test]
    #[should_panic(expected = "answers")]
    fn a_prefix_over_the_endpoints_own_paths_is_refused() {
        let _ = noop().route("/*", |_| async { Response::new("") });
    }

    #[test]
    #[should_panic(expected = "added already")]
    fn a_path_added_twice_is_refused() {
        let _ = noop()
            .route("/v", |_| async { Response::new("") })
            .route("/v", |_| async { Response::new("") });
    }
}
