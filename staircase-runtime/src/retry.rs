//! Transparent request retries that never repeat a write the server may have applied.
//!
//! kube's default client retries every request answered 429, 503 or 504. For a `POST` or a
//! `PATCH` a 504 (and a 503 from a proxy in front of the server) can come back after the server
//! committed the write: resent, a `generateName` create makes a second object and a JSON patch
//! that appends to a list appends twice. client-go does not resend those either. Here a request
//! whose repetition is harmless (`GET`, `HEAD`, `PUT` with its resourceVersion precondition,
//! `DELETE`) keeps kube's policy; `POST` and `PATCH` are resent only after a 429, which the
//! server's flow control answers before it runs the request. Any other failure fails the step,
//! and the next run reads the world and decides again.

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::client::retry::RetryPolicy;
use tower::BoxError;
use tower::retry::Policy;

/// kube's server-aware policy, narrowed for requests that must not be applied twice.
#[derive(Clone)]
pub(crate) struct SafeRetry(RetryPolicy);

impl SafeRetry {
    /// kube's own parameters (`RetryPolicy::server_retry`): 5 ms to 1000 s, 15 attempts, honouring
    /// `Retry-After`.
    pub(crate) fn new() -> Self {
        SafeRetry(RetryPolicy::server_retry())
    }
}

/// Whether the server may have applied `method` although it answered `status`, and repeating it
/// would not be harmless.
fn must_not_resend(method: &Method, status: StatusCode) -> bool {
    (method == Method::POST || method == Method::PATCH) && status != StatusCode::TOO_MANY_REQUESTS
}

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for SafeRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        match result {
            Ok(res) if must_not_resend(req.method(), res.status()) => None,
            _ => self.0.retry(req, result),
        }
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        <RetryPolicy as Policy<Request<Body>, Response<Res>, BoxError>>::clone_request(
            &mut self.0,
            req,
        )
    }
}

/// Requests queued ahead of the retrying service (kube's own client buffer holds 1024).
pub(crate) const BUFFER: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_rejected_write_is_resent() {
        for m in [Method::POST, Method::PATCH] {
            assert!(must_not_resend(&m, StatusCode::GATEWAY_TIMEOUT));
            assert!(must_not_resend(&m, StatusCode::SERVICE_UNAVAILABLE));
            assert!(!must_not_resend(&m, StatusCode::TOO_MANY_REQUESTS));
        }
        for m in [Method::GET, Method::PUT, Method::DELETE] {
            assert!(!must_not_resend(&m, StatusCode::GATEWAY_TIMEOUT));
        }
    }
}
