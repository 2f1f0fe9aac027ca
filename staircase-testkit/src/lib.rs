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
//!   events (core and `events.k8s.io`), deployments, statefulsets, daemonsets, replicasets, jobs,
//!   leases, RBAC roles and bindings, and customresourcedefinitions. Objects are schemaless JSON
//!   apart from a few defaults (namespace phase, pod phase, service cluster IPs, workload
//!   replicas) and their immutable fields (below).
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
//!   foreground, orphan; a dependent whose owners are all absent when its references appear is
//!   deleted, as by the real collector) and namespace termination. Garbage collection runs synchronously
//!   inside the write that triggers it, so tests see the settled state without polling and
//!   behave the same under `tokio::time::pause()`.
//! * **Immutable fields of built-in kinds**, enforced on update, every patch type and
//!   server-side apply alike with the real `422 Invalid` body (`details.causes` with reason, field
//!   path and kube-apiserver's message): the `spec.selector` of Deployments, ReplicaSets and
//!   DaemonSets; a StatefulSet's spec except `replicas`, `ordinals`, `template`,
//!   `updateStrategy`, `revisionHistoryLimit`, `persistentVolumeClaimRetentionPolicy` and
//!   `minReadySeconds`; a Job's `spec.template` (scheduling directives of a suspended Job that
//!   never started excepted), `selector`, `completions` (an Indexed Job's may change with
//!   `parallelism`), `completionMode`, `podFailurePolicy`, `backoffLimitPerIndex`, `managedBy`
//!   and `successPolicy`; a Service's `clusterIP`/`clusterIPs` once set (a write that leaves
//!   them out keeps the allocated ones); `data`/`binaryData` and `immutable` of a ConfigMap or
//!   Secret created with `immutable: true`, and every Secret's `type`; the `roleRef` of
//!   RoleBindings and ClusterRoleBindings. `/status` writes never trip them. Values compare as
//!   the real server compares them after decoding: missing, `null` and empty are alike, and
//!   the defaults it fills in (pod template, StatefulSet, Job) count as written.
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
//! # Fidelity against a real kube-apiserver
//!
//! The conformance cases (`tests/conformance/cases.rs`) run unchanged against this server
//! (test target `conformance`) and against the genuine kube-apiserver v1.20.2 with etcd and
//! kube-controller-manager (test target `conformance_real`, via the `real` module; built once
//! by `bash scripts/real-apiserver/build.sh`). Both run in `cargo test --workspace`;
//! `bash scripts/real-apiserver/conformance.sh` prints the comparison.
//!
//! Cargo features: `explorer` (the crash-anywhere explorer, which depends on staircase's
//! runtime) and `real` (the real-apiserver harness: etcd and kube-apiserver as child processes,
//! spoken to over HTTPS with rustls). Without them the crate is the API server alone, usable by
//! any kube-rs project.
//!
//! **Agreement: 28 / 28 cases** have the same outcome on both servers (all pass), the seven
//! about immutable fields included, message texts and all. 8 further cases are about this server
//! itself (fault injection, stats, compaction, watch window, shutdown, kubectl against it) and
//! return early on the real one; they are not counted.
//!
//! Details this server shares with the real one: `metadata.generation` exists only for workloads
//! (`apps`, `batch`), CRDs and custom resources (not ConfigMaps, Secrets, Services, …), and a
//! Deployment's annotation change bumps it; every namespace gets the `kube-root-ca.crt`
//! ConfigMap; server-side apply without `fieldManager` is `422 Invalid` (PatchOptions), not
//! 400; a custom-resource body without `kind`/`apiVersion` is `400` ("Object 'Kind' is
//! missing").
//!
//! Remaining differences, each tolerated by the cases or chosen by the server's version:
//!
//! * **Timing.** This server settles everything inside the write; the real one does these
//!   asynchronously, and the cases wait for them (watch-based, or polling under a guard
//!   timeout): a CRD's `Established` condition and its endpoint being served (404 for a moment
//!   after `Established`), removal of a `Terminating` namespace's contents, garbage collection
//!   (background, foreground's marking of dependents, orphaning), `kube-root-ca.crt` appearing
//!   in a new namespace, and the stop of serving after a CRD is deleted.
//! * **Versions** (the embedded server follows current Kubernetes; v1.20 predates): no
//!   streaming lists (`sendInitialEvents` watch → `422`); `fieldValidation=Strict` is ignored
//!   (on by default only since 1.25; unknown fields are pruned either way); built-in resources
//!   have `singularName: ""` in discovery (filled since 1.27); `/version` says
//!   `v1.33.0-staircase` here. Immutable fields: v1.20 lets a StatefulSet change only
//!   `replicas`, `template` and `updateStrategy` (and its message lists those three); it lets no
//!   Job template change, suspended or not; it rejects a Service write that leaves out
//!   `clusterIP`/`clusterIPs` (`primary clusterIP can not be unset`), where current Kubernetes
//!   and this server keep the allocated IPs.
//! * **Bookmarks:** this server sends a BOOKMARK right after a watch starts; v1.20 sends them
//!   periodically (about once a minute). Cases skip bookmarks wherever they come.
//! * **Message texts** of some errors differ (codes and reasons agree): a failed UID
//!   precondition (`Precondition failed: UID in precondition: …` vs v1.20's `the UID in the
//!   precondition (…) does not match the UID in record (…)`), a body whose `apiVersion` does not
//!   fit the URL (`… does not match the expected API version …` vs `no kind "ConfigMap" is
//!   registered for version "apps/v1"`). An immutable Job template (and `podFailurePolicy`,
//!   `successPolicy`) is shown as `core.PodTemplateSpec{...}`: the real server prints the whole
//!   Go struct with `%#v`, pointers as memory addresses; selectors, role references, cluster
//!   IPs and scalars are printed exactly as Go prints them.
//! * **Order and resourceVersions:** the initial ADDED events of a watch from `"0"` come in name
//!   order here, in no particular order from v1.20's watch cache; a list's resourceVersion is
//!   the newest write here, the etcd revision there (which other writers, such as the
//!   controllers, move on).
//! * **Not modelled here** (not covered by the cases): ServiceAccounts and their token Secrets
//!   in every namespace (v1.20 rejects pods until the `default` ServiceAccount has a token;
//!   [`real::RealApiServer::namespace`] waits for it); restoring `kube-root-ca.crt` when it is
//!   changed or deleted; this server labels namespaces `kubernetes.io/metadata.name` (since
//!   1.21; v1.20 does not); workload controllers (the real harness runs without them too, see
//!   [`real::DISABLED_CONTROLLERS`]); the validation of built-in objects beyond their metadata
//!   and immutable fields (a selector that does not match the template's labels, a missing
//!   container image, … are accepted here); a Job's generated selector and `controller-uid` /
//!   `job-name` template labels; when comparing immutable fields, quantities are compared as
//!   written (`1` and `1000m` differ here, not there) and only the common pod template defaults
//!   are known.
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
mod delay;
mod discovery;
#[cfg(feature = "explorer")]
pub mod explorer;
mod faults;
mod gc;
mod handlers;
mod immutable;
mod meta;
mod openapi;
mod ops;
pub mod patch;
#[cfg(feature = "real")]
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
