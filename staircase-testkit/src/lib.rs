//! An in-process Kubernetes API server that speaks the real HTTP protocol, so operator tests run
//! against an unmodified `kube::Client` (or `kubectl`) in milliseconds, without a cluster.
//!
//! # Using it in an operator's tests
//!
//! ```no_run
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, PostParams};
//! use staircase_testkit::{ApiServer, Fault, Verb};
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let server = ApiServer::start().await?;          // 127.0.0.1, free port
//! let client: kube::Client = server.client();      // default namespace "default"
//!
//! // Hand `client` to the controller under test, then drive it with ordinary API calls.
//! let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
//! let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "cfg"}}))?;
//! cms.create(&PostParams::default(), &cm).await?;
//!
//! // Make the next update of that ConfigMap fail, as a flaky apiserver would.
//! server.faults().inject(Fault::fail(500, "InternalError").verb(Verb::Update).name("cfg"));
//!
//! // Assert on what the controller asked for.
//! assert_eq!(server.stats().count(Verb::Create), 1);
//!
//! // Point other processes (kubectl, an operator binary) at it.
//! server.write_kubeconfig("/tmp/kubeconfig")?;
//! server.shutdown().await;                         // also happens on drop
//! # Ok(())
//! # }
//! ```
//!
//! # What it implements
//!
//! * **Discovery** (`/version`, `/api`, `/apis`, legacy resource lists) and minimal OpenAPI
//!   documents, enough for `kube::Discovery`, `kubectl get/apply/wait/api-resources`.
//! * **Built-in kinds**: namespaces, configmaps, secrets, services, serviceaccounts, pods,
//!   events (core and `events.k8s.io`), deployments, statefulsets, replicasets, jobs, leases and
//!   customresourcedefinitions. Objects are schemaless JSON apart from a few defaults
//!   (namespace phase, pod phase, service cluster IPs, workload replicas).
//! * **CRDs**: creating one serves all its served versions (scope, short names, categories,
//!   `/status`); custom resources are validated, pruned and defaulted against the version's
//!   `openAPIV3Schema` (see [`schema`]); `fieldValidation=Strict` rejects unknown fields.
//!   Deleting the CRD deletes its objects.
//! * **Verbs**: get, list (label and field selectors, pagination), watch, create, update,
//!   patch (merge, JSON, strategic for built-ins, server-side apply with managed fields; see
//!   [`patch`]), delete (preconditions, propagation policies), deletecollection, `dryRun=All`.
//! * **Semantics operators depend on**: one global resourceVersion, optimistic concurrency
//!   (409 Conflict), generation bumps, `/status` splitting, no-op writes that do not create
//!   events, finalizers and deletionTimestamp, owner-reference garbage collection (background,
//!   foreground, orphan) and namespace termination. Garbage collection runs synchronously
//!   inside the write that triggers it, so tests see the settled state without polling and
//!   behave the same under `tokio::time::pause()`.
//! * **Watches**: from a resourceVersion or from "now" (synthetic ADDED), bookmarks,
//!   `sendInitialEvents` streaming lists, `410 Gone` for versions older than the retained window,
//!   `timeoutSeconds`, selectors (objects leaving the selection are reported as DELETED).
//!   `kube::runtime::watcher` works in both list-watch and streaming-list modes.
//! * **Errors** are Kubernetes `Status` objects with the real codes, reasons and messages.
//!
//! Requests are answered in JSON; protobuf request bodies get `415` (so the few `kubectl`
//! commands that send protobuf, such as `kubectl create configmap`, do not work; `kubectl
//! apply/create -f`, `get`, `delete`, `patch`, `wait` do).
//!
//! # Speed
//!
//! Measured with `cargo run --release -p staircase-testkit --example throughput` (one
//! `kube::Client`, sequential requests over loopback, 2 shared CPU cores): about **4 000
//! creates/s**, **3 700 merge patches/s**, and **4 500 watch events/s** delivered to a watcher
//! while another task writes (the writer is the bottleneck). Each object is stored once as
//! shared JSON; watch lines are serialized once per event for all watchers.
#![warn(missing_docs)]

mod crd;
mod discovery;
#[cfg(feature = "explorer")]
pub mod explorer;
mod faults;
mod gc;
mod handlers;
mod meta;
mod openapi;
mod ops;
pub mod patch;
pub mod real;
mod registry;
mod router;
pub mod schema;
mod selectors;
mod server;
mod stats;
mod status;
mod store;
mod watch;

pub use faults::{Fault, FaultAction, FaultId, Faults};
pub use router::Verb;
pub use server::{ApiServer, ApiServerBuilder};
pub use stats::{RequestRecord, Stats};
