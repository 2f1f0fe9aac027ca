//! Printing and installing the CustomResourceDefinitions of your resource types.
//!
//! The CRD comes from the type itself (`#[derive(CustomResource, JsonSchema)]` generates
//! `K::crd()`), so the schema in the cluster and the Rust type cannot drift apart:
//!
//! ```no_run
//! # async fn demo<Foo: kube::CustomResourceExt>(client: kube::Client) -> Result<(), staircase_runtime::crds::CrdError> {
//! // `my-operator crd print > deploy/crd.yaml`:
//! print!("{}", staircase_runtime::crds::print::<Foo>());
//! // or at startup / in tests: apply it and wait until the API server serves it.
//! staircase_runtime::crds::install::<Foo>(&client).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResourceExt, ResourceExt};

/// Field manager of the CRD writes, so `managedFields` shows who installed it.
const MANAGER: &str = "staircase";
/// How long [`install`] waits for `Established` (a real API server takes about a second).
pub const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Why installing a CRD failed.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The API server refused the CRD (e.g. 403: no permission on customresourcedefinitions).
    #[error("applying CustomResourceDefinition {name}: {source}")]
    Apply {
        /// The CRD's name (`plural.group`).
        name: String,
        /// What the API server answered.
        source: kube::Error,
    },
    /// The CRD was accepted but is not served yet (names conflict, or a slow API server).
    #[error("CustomResourceDefinition {name} was not Established within {timeout:?}")]
    NotEstablished {
        /// The CRD's name.
        name: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// Watching the CRD failed.
    #[error("watching CustomResourceDefinition {name}: {source}")]
    Watch {
        /// The CRD's name.
        name: String,
        /// The watch error.
        source: kube::runtime::wait::Error,
    },
}

/// The CRD of `K` as YAML, ready for `kubectl apply -f -`.
pub fn print<K: CustomResourceExt>() -> String {
    serde_saphyr::to_string(&K::crd()).expect("a CRD serializes to YAML")
}

/// Applies the CRD of `K` (server-side apply: creates it, or updates the schema of an existing one)
/// and waits until it is `Established`, at most [`ESTABLISH_TIMEOUT`].
pub async fn install<K: CustomResourceExt>(
    client: &Client,
) -> Result<CustomResourceDefinition, CrdError> {
    install_crd(client, K::crd(), ESTABLISH_TIMEOUT).await
}

/// [`install`] for a CRD value (e.g. read from a file), with your own timeout.
pub async fn install_crd(
    client: &Client,
    crd: CustomResourceDefinition,
    timeout: Duration,
) -> Result<CustomResourceDefinition, CrdError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    let pp = PatchParams::apply(MANAGER).force();
    api.patch(&name, &pp, &Patch::Apply(&crd))
        .await
        .map_err(|source| CrdError::Apply {
            name: name.clone(),
            source,
        })?;
    let established = await_condition(api, &name, conditions::is_crd_established());
    match tokio::time::timeout(timeout, established).await {
        Ok(Ok(Some(crd))) => Ok(crd),
        Ok(Ok(None)) | Err(_) => Err(CrdError::NotEstablished { name, timeout }),
        Ok(Err(source)) => Err(CrdError::Watch { name, source }),
    }
}
