//! Admission and conversion webhooks (feature `webhooks`): plain async functions served over
//! HTTPS, with the certificate and the `caBundle` the API server needs kept by the operator.
//!
//! - a **validating** handler takes the [`AdmissionRequest`] and returns a [`Verdict`];
//! - a **mutating** handler takes the object (and the request) and returns the object as it
//!   should be stored: the JSON patch the API server wants is computed from the difference;
//! - a **conversion** handler maps an object of one served version of a CRD to another
//!   ([`Conversion`]).
//!
//! ```no_run
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::core::admission::AdmissionRequest;
//! use staircase_runtime::webhook::{CaBundle, Tls, Verdict, Webhooks};
//!
//! async fn no_secrets(req: AdmissionRequest<ConfigMap>) -> Result<Verdict, std::convert::Infallible> {
//!     let cm = req.object.unwrap_or_default();
//!     Ok(match cm.data.unwrap_or_default().contains_key("password") {
//!         true => Verdict::deny("passwords belong in a Secret"),
//!         false => Verdict::Allow,
//!     })
//! }
//!
//! # async fn demo(client: kube::Client) -> anyhow::Result<()> {
//! // A certificate for the Service the webhook configuration names, kept in its caBundle.
//! let tls = Tls::generate(["my-operator-webhooks.my-system.svc"]);
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
//! let _serving = Webhooks::new(tls)
//!     .validate("/validate-configmaps", no_secrets)
//!     .keep_ca_bundle(client, [CaBundle::validating("my-operator")])
//!     .start(listener)
//!     .await?; // the certificate is in every caBundle: the API server can call
//! // ... run the operator; the webhooks are served until `_serving` is dropped.
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//! - [`Webhooks::start`] returns once the certificate is served and every [`CaBundle`] target
//!   carries its CA, or with the error that prevented it (a missing RBAC permission, a CRD
//!   without a webhook conversion stanza, unreadable certificate files).
//! - Every well-formed review is answered: a handler that returns an error or panics denies the
//!   request (admission) or fails the conversion, with the message, and the connection stays
//!   usable. A body that is not a review of the kind the path serves is answered `400` saying
//!   why; an unknown path `404`.
//! - A generated certificate is renewed when two thirds of its validity have passed: the new CA
//!   is added to every caBundle (beside the old one) before the new certificate is served, so
//!   no call fails over the switch. Certificate files ([`Tls::from_dir`]) are read again when
//!   they change, as cert-manager rotates them.
//!
//! # Caveats
//! - A handler's error is a denial, not a failed call: the webhook configuration's
//!   `failurePolicy` applies only when the API server gets no usable answer (the operator is
//!   down or unreachable, the TLS handshake fails, the handler outlasts `timeoutSeconds`, a
//!   `400`). With `Fail` such a request is rejected; with `Ignore` it is admitted unchecked
//!   (unmutated). A conversion the API server cannot get fails the read or write that needed it
//!   whatever the policy: keep the operator available while a CRD converts by webhook.
//! - The runtime sets no deadline of its own: a handler slower than the configuration's
//!   `timeoutSeconds` (default 10, at most 30) is a failed call, with the `failurePolicy`.
//! - A generated certificate belongs to one process: with several replicas behind one Service,
//!   each would replace the others' CA. Run one replica that serves webhooks, or mount one
//!   certificate into all of them ([`Tls::from_dir`], e.g. from cert-manager).
//! - A mutating handler's patch is computed on the object as the type `K` (de)serializes it:
//!   fields `K` does not know are neither seen nor removed.

mod admission;
mod ca_bundle;
mod conversion;
mod http;
mod tls;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use kube::Resource;
use kube::core::admission::AdmissionRequest;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use admission::Verdict;
pub use ca_bundle::CaBundle;
pub use conversion::Conversion;
pub use tls::Tls;

/// One served path: the body of a request in, the JSON answer out, or why the body is not a
/// review (`400`).
type Route = Arc<dyn Fn(bytes::Bytes) -> BoxFuture<'static, Result<Vec<u8>, String>> + Send + Sync>;

/// Runs a handler's future, turning a panic into an error message: a panicking handler must
/// still answer (else the API server waits for its timeout).
async fn guarded<T>(fut: impl Future<Output = T>) -> Result<T, String> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(t) => Ok(t),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".into());
            Err(format!("the webhook handler panicked: {what}"))
        }
    }
}

/// The webhooks an operator serves, by URL path, and how it serves them (see the [module
/// docs](self)).
pub struct Webhooks {
    tls: Tls,
    routes: BTreeMap<String, Route>,
    ca_bundles: Option<(kube::Client, Vec<CaBundle>)>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("tls", &self.tls)
            .field("paths", &self.routes.keys().collect::<Vec<_>>())
            .field("ca_bundles", &self.ca_bundles.as_ref().map(|(_, t)| t))
            .finish()
    }
}

impl Webhooks {
    /// No webhooks yet, served with the certificate of `tls`.
    pub fn new(tls: Tls) -> Self {
        Webhooks {
            tls,
            routes: BTreeMap::new(),
            ca_bundles: None,
        }
    }

    /// Serves a validating webhook for `K` at `path` (e.g. `/validate-foos`): `handler` says
    /// whether the request may go on. An error it returns denies the request with its message.
    ///
    /// # Panics
    /// If `path` is already taken.
    pub fn validate<K, F, Fut, E>(mut self, path: &str, handler: F) -> Self
    where
        K: Resource + DeserializeOwned + Send + 'static,
        K::DynamicType: Default,
        F: Fn(AdmissionRequest<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Verdict, E>> + Send + 'static,
        E: Display,
    {
        self.route(path, admission::validating(handler));
        self
    }

    /// Serves a mutating webhook for `K` at `path`: `handler` gets the object (and the whole
    /// request) and returns the object to store; the API server receives the JSON patch between
    /// the two. Requests without an object (`DELETE`) are admitted without calling it. An error
    /// denies the request with its message.
    ///
    /// # Panics
    /// If `path` is already taken.
    pub fn mutate<K, F, Fut, E>(mut self, path: &str, handler: F) -> Self
    where
        K: Resource + Clone + Serialize + DeserializeOwned + Send + 'static,
        K::DynamicType: Default,
        F: Fn(K, AdmissionRequest<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<K, E>> + Send + 'static,
        E: Display,
    {
        self.route(path, admission::mutating(handler));
        self
    }

    /// Serves a CRD's conversion webhook at `path`.
    ///
    /// # Panics
    /// If `path` is already taken.
    pub fn convert(mut self, path: &str, conversion: Conversion) -> Self {
        self.route(path, conversion.into_route());
        self
    }

    fn route(&mut self, path: &str, route: Route) {
        let old = self.routes.insert(path.to_string(), route);
        assert!(old.is_none(), "webhook path {path} registered twice");
    }

    /// Keeps the CA of the served certificate in the `caBundle` of each target, through
    /// `client`: at [`start`](Self::start), and again whenever the certificate is renewed or
    /// reloaded. A target is written only when its caBundle differs. (Without it, the caBundle
    /// is someone else's job: cert-manager's CA injector, say.)
    pub fn keep_ca_bundle(
        mut self,
        client: kube::Client,
        targets: impl IntoIterator<Item = CaBundle>,
    ) -> Self {
        self.ca_bundles = Some((client, targets.into_iter().collect()));
        self
    }

    /// Makes or loads the certificate, writes the caBundles, and serves the webhooks on
    /// `listener` in the background until the returned [`Serving`] is dropped.
    pub async fn start(self, listener: TcpListener) -> Result<Serving, WebhookError> {
        let addr = listener.local_addr().map_err(WebhookError::Listen)?;
        let keeper = tls::Keeper::start(self.tls, self.ca_bundles).await?;
        let ca = keeper.ca_bundle();
        let server = tokio::spawn(http::serve(
            listener,
            Arc::new(self.routes),
            keeper.resolver(),
        ));
        let renewal = tokio::spawn(keeper.renew());
        Ok(Serving {
            addr,
            ca,
            tasks: [server, renewal],
        })
    }
}

/// Webhooks being served (see [`Webhooks::start`]); dropping it stops them.
#[derive(Debug)]
pub struct Serving {
    addr: SocketAddr,
    ca: Arc<std::sync::RwLock<String>>,
    tasks: [JoinHandle<()>; 2],
}

impl Serving {
    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM of the CA(s) that signed the served certificate, as written into the caBundles
    /// (empty for certificate files without a `ca.crt`).
    pub fn ca_bundle(&self) -> String {
        self.ca.read().expect("not poisoned").clone()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Why the webhooks could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The listener has no local address.
    #[error("webhook listener: {0}")]
    Listen(#[source] std::io::Error),
    /// A certificate file could not be read or used.
    #[error("webhook certificate {path}: {message}")]
    CertificateFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A certificate could not be generated or served.
    #[error("webhook certificate: {0}")]
    Certificate(String),
    /// A caBundle could not be written.
    #[error("cannot keep the caBundle of {target}: {message}")]
    CaBundle {
        /// The target, e.g. `ValidatingWebhookConfiguration foo-operator`.
        target: String,
        /// The API server's answer.
        message: String,
    },
}
