//! An in-process Kubernetes API server that speaks the real HTTP protocol, so tests run against
//! an unmodified `kube::Client` (or `kubectl`) in milliseconds, without a cluster.
//!
//! It depends on kube, hyper and tokio, and on no other staircase crate: any kube-rs project can
//! test its controllers against it.
//!
//! # Using it in tests
//!
//! ```toml
//! [dev-dependencies]
//! staircase-apiserver = { path = "../staircase/staircase-apiserver" }   # not on crates.io yet
//! kube = { version = "5", features = ["runtime"] }
//! k8s-openapi = { version = "0.29", features = ["v1_33"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! Each test starts a server of its own and hands its `kube::Client` to the code under test:
//!
//! ```no_run
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, PostParams};
//! use staircase_apiserver::{ApiServer, Fault, Verb};
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
//! [`ApiServer::builder`] sets the port, the watch window and the other options before it starts.
//!
//! # The `staircase-apiserver` binary
//!
//! The same server as a process of its own, for `kubectl` or an operator binary (feature `cli`,
//! which also picks the k8s-openapi version the binary is built with):
//!
//! ```text
//! cargo run -p staircase-apiserver --bin staircase-apiserver --features cli -- \
//!     --port 0 --kubeconfig /tmp/kc --watch-window 10000
//! kubectl --kubeconfig /tmp/kc get ns
//! ```
//!
//! It prints its URL and serves until Ctrl-C.
//!
//! Cargo features: `cli` (the binary) and `latest` (k8s-openapi's newest version, for building
//! the library alone, as docs.rs does). A library or test leaves the version to the final
//! binary, like kube.
//!
//! # What it implements
//!
//! * **Discovery** (`/version`, `/api`, `/apis`, legacy resource lists) and minimal OpenAPI
//!   documents, enough for `kube::Discovery`, `kubectl get/apply/wait/api-resources`.
//!   Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`, what kubectl and
//!   client-go ask `/api` and `/apis` for first, and `kube::Discovery::run_aggregated`) is
//!   answered as kube-apiserver 1.37 answers it: content type
//!   `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`, `ETag` and
//!   `If-None-Match`, groups in its priority order, every resource with scope, verbs, short
//!   names, categories and subresources, a CRD's served versions preferred first (appearing and
//!   disappearing with the CRD). `v2beta1` is not served (nor by 1.37): an `Accept` header
//!   without the `v2` type gets the legacy documents.
//! * **Built-in kinds**: namespaces, configmaps, secrets, services, serviceaccounts, pods,
//!   events (core and `events.k8s.io`: one resource seen through both APIs, with the real
//!   server's field mapping, so `kubectl get events` shows what a recorder wrote through
//!   `events.k8s.io`), deployments, statefulsets, daemonsets, replicasets, jobs,
//!   leases, RBAC roles and bindings, and customresourcedefinitions. Objects are schemaless JSON
//!   apart from a few defaults (namespace phase, pod phase, service cluster IPs, workload
//!   replicas) and their immutable fields (below).
//! * **CRDs**: creating one serves all its served versions (scope, short names, categories,
//!   `/status`); custom resources are validated, pruned and defaulted against the version's
//!   `openAPIV3Schema` (see [`schema`]), including its CEL validation rules
//!   (`x-kubernetes-validations`: `message`, `messageExpression`, `reason`, transition rules on
//!   `oldSelf`; evaluated with the `kube-cel` crate's Kubernetes CEL libraries);
//!   `fieldValidation=Strict` rejects unknown fields; a version's `selectableFields` work in
//!   field selectors.
//!   `kubectl get` receives a Table with the version's printer columns, their JSONPath
//!   (filters such as `[?(@.type=="Ready")]` included) evaluated as kube-apiserver does.
//!   Deleting the CRD deletes its objects.
//! * **Verbs**: get, list (label and field selectors, pagination), watch, create, update,
//!   patch (merge, JSON, strategic for built-ins, server-side apply with managed fields; see
//!   [`patch`]), delete (preconditions, propagation policies), deletecollection, `dryRun=All`;
//!   `/scale` of Deployments, ReplicaSets, StatefulSets and custom resources whose CRD declares
//!   it (`kubectl scale`).
//! * **Semantics operators depend on**: one global resourceVersion, optimistic concurrency
//!   (409 Conflict), generation bumps, `/status` splitting, no-op writes that do not create
//!   events, finalizers and deletionTimestamp, owner-reference garbage collection (background,
//!   foreground, orphan; a dependent whose owners are all absent when its references appear is
//!   deleted, as by the real collector) and namespace termination. Garbage collection runs synchronously
//!   inside the write that triggers it, so tests see the settled state without polling and
//!   behave the same under `tokio::time::pause()`.
//! * **Admission webhooks**: `admissionregistration.k8s.io/v1` Validating- and
//!   MutatingWebhookConfigurations are served and their webhooks called for CREATE, UPDATE,
//!   PATCH (server-side apply included) and DELETE as kube-apiserver calls them: `rules` (groups,
//!   versions, operations, resources and subresources, scope), `namespaceSelector` and
//!   `objectSelector`; an `admission.k8s.io/v1` `AdmissionReview` POSTed to `clientConfig.url`
//!   over HTTPS trusting only the `caBundle`; mutating webhooks first, each `JSONPatch`
//!   applied, then the validating ones; a denial as `admission webhook "<name>" denied the
//!   request: <message>` with the webhook's code; `failurePolicy` and `timeoutSeconds` for calls
//!   that fail; `dryRun` passed on. No lock is held during a call (a dry run computes the
//!   object, the webhooks see it, the write commits only if the object has not changed since,
//!   else it starts again). Not done: deletecollection admission, `matchPolicy: Equivalent`,
//!   `matchConditions`, `reinvocationPolicy`, and `clientConfig.service` (a Service routes
//!   nowhere here: the call fails and `failurePolicy` decides).
//! * **Conversion webhooks** of CRDs with `conversion.strategy: Webhook`: a custom resource
//!   read, listed, watched or written through another version than the one it is stored in is
//!   converted by an `apiextensions.k8s.io/v1` `ConversionReview` POSTed to the webhook's
//!   `clientConfig.url` (one per request; a list sends all its items at once), and the answer
//!   checked as kube-apiserver checks it (uid, result, count, version, kind, name, namespace,
//!   uid; only labels and annotations taken from the returned metadata). Objects are stored in
//!   the CRD's storage version: a write through another version is planned there (a patch
//!   applies to the converted object), converted, and stored only if the conversion succeeds. A
//!   failed conversion fails the request with `500` and a message ending as kube-apiserver's
//!   (`conversion webhook for <group/version, Kind=...> failed: ...`); a watch ends with an
//!   `ERROR` event. Server-side tables and `/scale` are computed from the stored version. Without a webhook
//!   (`None`), a custom resource read in another version only has its `apiVersion` changed.
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
//! * **Formats**: request bodies in JSON, YAML, and for built-in kinds protobuf
//!   (`application/vnd.kubernetes.protobuf`, what kubectl's typed clients send: `kubectl create
//!   configmap|secret|deployment|service|namespace|serviceaccount|role|rolebinding ...` and
//!   `kubectl scale` work). Answers are protobuf when the `Accept` header puts protobuf first
//!   (client-go's `application/vnd.kubernetes.protobuf, application/json`, as kube-apiserver
//!   answers it) and the object is of a built-in kind (lists, error `Status` objects and watch
//!   events too: `application/vnd.kubernetes.protobuf;stream=watch`, length-prefixed
//!   `WatchEvent` frames), JSON otherwise. Custom resources have no protobuf form: a protobuf
//!   body gets `415`, an `Accept` of protobuf only gets `406`. A malformed protobuf body is a
//!   `400`. The protobuf schema is that of
//!   Kubernetes v1.37 (the `generated.proto` files of `k8s.io/api` and `k8s.io/apimachinery`
//!   v0.37.2, carried as a descriptor set); field names and values map to the API's JSON as in
//!   kube-apiserver (times as RFC 3339 strings, quantities and int-or-strings as written, `bytes`
//!   as base64, zero values left out where the Go types leave them out).
//!
//! # Fidelity against a real kube-apiserver
//!
//! The conformance cases of `staircase-testkit` (`staircase-testkit/tests/conformance/cases.rs`)
//! run unchanged against this server (test target `conformance`) and against the genuine
//! kube-apiserver v1.37.2 with etcd 3.7.0 and kube-controller-manager (test target
//! `conformance_real`, via the testkit's real-apiserver harness `staircase_testkit::real`; built
//! once from their Go modules by `bash scripts/real-apiserver/build.sh`). Both run in
//! `cargo test --workspace`; `bash scripts/real-apiserver/conformance.sh` prints the comparison.
//!
//! **Agreement against Kubernetes 1.37: 40 / 40 cases (100 %)** have the same outcome on both
//! servers (all pass), the seven about immutable fields included, message texts and all. 8
//! further cases are about this server itself (fault injection, stats, compaction, watch window,
//! shutdown, kubectl against it) and return early on the real one; they are not counted.
//!
//! Details this server shares with the real one: `metadata.generation` exists only for workloads
//! (`apps`, `batch`), CRDs and custom resources (not ConfigMaps, Secrets, Services, …), and a
//! Deployment's annotation change bumps it; every namespace gets the `kube-root-ca.crt`
//! ConfigMap; server-side apply without `fieldManager` is `422 Invalid` (PatchOptions), not
//! 400; a custom-resource body without `kind`/`apiVersion` is `400` ("Object 'Kind' is
//! missing"); bad values in `422` causes are printed as Kubernetes 1.37 prints them (`%q` for
//! strings, JSON for selectors, lists and structs); a failed delete precondition is worded as
//! the real server words it, naming the Kind; `generateName` keeps at most 58 characters of the
//! prefix; list options are validated (`resourceVersionMatch` without `resourceVersion`,
//! `Exact` at `"0"`, unknown values).
//!
//! Remaining differences, each tolerated by the cases:
//!
//! * **Timing.** This server settles everything inside the write; the real one does these
//!   asynchronously, and the cases wait for them (watch-based, or polling under a guard
//!   timeout): a CRD's `Established` condition and its endpoint being served (404 for a moment
//!   after `Established`), removal of a `Terminating` namespace's contents, garbage collection
//!   (background, foreground's marking of dependents, orphaning), `kube-root-ca.crt` appearing
//!   in a new namespace, the stop of serving after a CRD is deleted, and a CRD's versions
//!   entering and leaving aggregated discovery.
//! * **Version:** `/version` says `v1.33.0-staircase` here.
//! * **Bookmarks:** this server sends a BOOKMARK right after a watch starts; the real one sends
//!   them periodically. Cases skip bookmarks wherever they come.
//! * **Values of internal Go types in messages:** an immutable Job template (and
//!   `podFailurePolicy`, `successPolicy`) or StatefulSet `volumeClaimTemplates` is printed by
//!   the real server as JSON of its internal Go struct (Go field names, every default spelled
//!   out); this server prints the value as the API's JSON. Selectors, role references, cluster
//!   IPs and scalars are printed exactly as the real server prints them.
//! * **Order and resourceVersions:** the initial ADDED events of a watch from `"0"` come in name
//!   order here, in no particular order from the real server's watch cache; a list's
//!   resourceVersion is the newest write here, the etcd revision there (which other writers,
//!   such as the controllers, move on).
//! * **Not modelled here** (not covered by the cases): ServiceAccounts in every namespace (the
//!   testkit's `RealApiServer::namespace` waits for the `default` one, without which pods are
//!   rejected); restoring `kube-root-ca.crt` when it is changed or deleted; workload controllers
//!   (the real harness runs without them too, see `staircase_testkit::real::DISABLED_CONTROLLERS`);
//!   the validation of built-in objects beyond their metadata and immutable fields (a selector
//!   that does not match the template's labels, a missing container image, … are accepted here);
//!   a Job's generated selector and `controller-uid` / `job-name` template labels; when comparing
//!   immutable fields, quantities are compared as written (`1` and `1000m` differ here, not
//!   there) and only the common pod template defaults are known; a list at an older
//!   `resourceVersion` (`resourceVersionMatch=Exact`) answers the current state here;
//!   aggregated discovery is written as JSON only (an `Accept` asking for it only as YAML,
//!   protobuf or CBOR, or only as `v2beta1`, gets the legacy JSON here, not that format or `406`);
//!   likewise discovery and OpenAPI documents and tables are JSON only.
//! * **`shardSelector` on custom resources:** lists and watches of every resource honour a
//!   `shardSelector` here (KEP-5866: `shardRange(object.metadata.uid, '0x…', '0x…')` terms
//!   joined by `||`, ranges over the 64-bit FNV-1a hash, the selector echoed in
//!   `metadata.shardInfo`); kube-apiserver 1.37.2, with its alpha `ShardedListAndWatch` gate on
//!   (as the real harness runs it), honours it for built-in kinds and ignores it for custom
//!   resources (no `shardInfo`). The conformance case uses ConfigMaps; a sharded staircase
//!   operator probes for `shardInfo` and filters on its side where it is missing.
//! * **A protobuf body for a custom resource** is answered `415 UnsupportedMediaType` here;
//!   kube-apiserver 1.37.2 panics decoding it (its handler recovers) and drops the connection
//!   without an answer. The conformance case checks each server's behaviour.
//!
//! # Speed
//!
//! Measured with `cargo run --release -p staircase-apiserver --example throughput` (one
//! `kube::Client`, sequential requests over loopback, 2 shared CPU cores): about **4 000
//! creates/s**, **3 700 merge patches/s**, and **4 500 watch events/s** delivered to a watcher
//! while another task writes (the writer is the bottleneck). Each object is stored once as
//! shared JSON; watch lines are serialized once per event for all watchers.
//!
//! # Fuzzing
//!
//! Bad input never takes the server down: a panic or a hang on any request body is a bug. The
//! `cargo fuzz` targets in `staircase-apiserver/fuzz/` (a crate of its own, outside the
//! workspace) check that:
//!
//! * `request_json`, `request_yaml`, `request_protobuf`: arbitrary bytes as the JSON, YAML or
//!   protobuf (answered in protobuf) body of a create,
//!   update or patch (merge, JSON, strategic, server-side apply; `fieldValidation=Strict`,
//!   `dryRun=All`) of a ConfigMap, a Deployment, and a custom resource whose schema has
//!   defaults, formats, list and map types, CEL rules, `/status` and `/scale`. Requests go
//!   through the server's real routing and handlers, in-process (no socket); any `5xx` answer
//!   counts as a failure too.
//! * `patch`: the engines of [`patch`] (merge, JSON patch, strategic merge, server-side apply
//!   and managed fields, with and without a schema) on arbitrary documents and patches.
//! * `schema`: [`schema`]'s pruning, defaulting, validation and CEL rules of arbitrary objects
//!   against arbitrary schemas.
//!
//! `bash scripts/fuzz.sh` runs each target for `FUZZ_SECONDS` (default 60) and fails on the
//! first crash, leaving the input in `fuzz/artifacts/<target>/`. It installs `cargo-fuzz` if
//! needed and works on a stable toolchain (`RUSTC_BOOTSTRAP=1` lets it accept the sanitizer
//! flags); `FUZZ_SANITIZER=none` drops the address sanitizer for several times more runs. It
//! is not part of `.ci/run`, whose time is limited: run it after changing request decoding,
//! the patch engines or schema validation. Fixed crashes have regression tests among the unit
//! tests.
#![warn(missing_docs)]

mod admission;
mod callout;
mod conversion;
mod crd;
mod delay;
mod discovery;
mod events;
mod faults;
mod gc;
mod handlers;
mod immutable;
mod meta;
mod openapi;
mod ops;
pub mod patch;
mod protobuf;
mod registry;
mod router;
mod scale;
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
