//! Startup checks that turn the usual first-deployment mistakes into one precise message: a
//! kubeconfig that cannot be used, an API server that cannot be reached, a missing RBAC
//! permission (naming the verb and the resource), a CRD that is not installed.
//!
//! ```no_run
//! # async fn demo<K, S, M, C>(op: staircase_runtime::Operator<K, S, M, C>) -> anyhow::Result<()>
//! # where K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
//! #       K::Scope: staircase_runtime::ApiScope, S: Send + Sync + 'static,
//! #       M: staircase_runtime::Stairs<K, S>, C: staircase_runtime::Stairs<K, S> {
//! op.check().await?; // e.g. "missing RBAC permission: cannot watch foos.demo.staircase.rs in all namespaces"
//! op.run().await;
//! # Ok(()) }
//! ```

use std::path::Path;

use kube::api::{Api, ListParams, WatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::context::ApiScope;
use crate::writes::OperatorClient;

/// What a startup check found.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The kubeconfig is missing, unreadable, or names no usable context.
    #[error("the kubeconfig cannot be used: {0}")]
    Kubeconfig(String),
    /// No answer from the API server (wrong address, network, TLS).
    #[error("cannot reach the API server: {0}")]
    Unreachable(String),
    /// The operator's identity lacks a permission.
    #[error(
        "missing RBAC permission: cannot {verb} {resource} in {scope}; grant it in the operator's \
         (Cluster)Role (the API server said: {message})"
    )]
    Forbidden {
        /// The verb, e.g. `watch`.
        verb: &'static str,
        /// `plural.group`, e.g. `foos.demo.staircase.rs`.
        resource: String,
        /// `namespace apps` or `all namespaces`.
        scope: String,
        /// The API server's message.
        message: String,
    },
    /// The API server does not serve the resource: for a custom resource usually its CRD is not
    /// installed; for a built-in kind, this server does not serve it (another version, an
    /// API group that is off, or a test server that leaves it out).
    #[error("the API server does not serve {resource} ({})", not_served_hint(*custom))]
    NotServed {
        /// `plural.group`.
        resource: String,
        /// Whether it is a custom resource (its group is not one of Kubernetes' own).
        custom: bool,
    },
    /// Any other API error while checking `verb` on `resource`.
    #[error("cannot {verb} {resource}: {source}")]
    Api {
        /// The verb.
        verb: &'static str,
        /// `plural.group`.
        resource: String,
        /// The error.
        source: kube::Error,
    },
}

/// The operator's client from the kubeconfig at `path`, else the usual places (`KUBECONFIG`,
/// `~/.kube/config`, the in-cluster service account), with errors that say which of them failed
/// and why. Built from the config, so a step's write is counted inside the client's own stack
/// (see [`OperatorClient`]); [`OperatorClient::client`] is the plain `kube::Client` for the rest.
pub async fn client(path: Option<&Path>) -> Result<OperatorClient, PreflightError> {
    let config = match path {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| {
                PreflightError::Kubeconfig(format!("{}: {}", p.display(), chain(&e)))
            })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| {
                    PreflightError::Kubeconfig(format!("{}: {}", p.display(), chain(&e)))
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| PreflightError::Kubeconfig(chain(&e)))?,
    };
    let url = config.cluster_url.to_string();
    let clients =
        OperatorClient::try_from(config).map_err(|e| PreflightError::Kubeconfig(chain(&e)))?;
    reachable(clients.client())
        .await
        .map_err(|e| PreflightError::Unreachable(format!("{url}: {e}")))?;
    Ok(clients)
}

/// Asks the API server for its version: the cheapest request that proves it answers.
pub(crate) async fn reachable(client: &Client) -> Result<(), String> {
    match client.apiserver_version().await {
        Ok(_) => Ok(()),
        // An answer, even an error status, means the server is there.
        Err(kube::Error::Api(_)) => Ok(()),
        Err(e) => Err(chain(&e)),
    }
}

/// The resource as RBAC rules and error messages name it: `plural` or `plural.group`.
pub fn resource_name<R: Resource<DynamicType = ()>>() -> String {
    let (plural, group) = (R::plural(&()), R::group(&()));
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// Checks that the client may `list` and `watch` `R` in `namespace` (all namespaces when `None`).
pub async fn check_list_watch<R>(
    client: Client,
    namespace: Option<&str>,
) -> Result<(), PreflightError>
where
    R: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    R::Scope: ApiScope,
{
    let api: Api<R> = match namespace {
        Some(ns) => <R::Scope as ApiScope>::api::<R>(client, Some(ns)),
        None => Api::all(client),
    };
    let scope = namespace.map_or("all namespaces".to_string(), |ns| format!("namespace {ns}"));
    let fail = |verb, e| classify::<R>(verb, &scope, e);
    let list = api
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map_err(|e| fail("list", e))?;
    let rv = list.metadata.resource_version.unwrap_or_else(|| "0".into());
    // The stream is dropped at once: the answer to the request is what tells.
    api.watch_metadata(&WatchParams::default().timeout(1), &rv)
        .await
        .map(drop)
        .map_err(|e| fail("watch", e))
}

/// Checks that the client may `get` `R` named `name` in `namespace` (absent is fine).
pub(crate) async fn check_get<R>(api: Api<R>, name: &str, scope: &str) -> Result<(), PreflightError>
where
    R: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .map(drop)
        .map_err(|e| classify::<R>("get", scope, e))
}

fn not_served_hint(custom: bool) -> &'static str {
    if custom {
        "is its CustomResourceDefinition installed?"
    } else {
        "a built-in kind this server does not serve"
    }
}

fn classify<R: Resource<DynamicType = ()>>(
    verb: &'static str,
    scope: &str,
    e: kube::Error,
) -> PreflightError {
    let resource = resource_name::<R>();
    match e {
        kube::Error::Api(s) if s.code == 403 => PreflightError::Forbidden {
            verb,
            resource,
            scope: scope.to_string(),
            message: s.message,
        },
        kube::Error::Api(s) if s.code == 404 => PreflightError::NotServed {
            resource,
            custom: {
                let group = R::group(&());
                group.contains('.') && !group.ends_with(".k8s.io")
            },
        },
        kube::Error::Api(_) => PreflightError::Api {
            verb,
            resource,
            source: e,
        },
        other => PreflightError::Unreachable(chain(&other)),
    }
}

/// An error with its causes, `a: b: c`: kube's top-level messages alone ("ServiceError") do not
/// say "connection refused".
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
