//! `Operator`: runs a staircase on kube-runtime's `Controller`, one modification per run, with
//! what production needs around it: Events, metrics, health, leader election, graceful shutdown,
//! watches on owned and related objects.

use std::any::{Any, TypeId};
use std::convert::Infallible;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store, reflector, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::Layer;

use crate::OperatorConfig;
use crate::audit::audit;
use crate::cache::Cache;
use crate::chain::{Stairs, Start};
use crate::config::Relist;
use crate::context::ApiScope;
use crate::decode::{Lenient, OnUndecodable, skip_undecodable};
use crate::events::EventPublisher;
use crate::explain::{self, Explanation};
use crate::health::{Health, Leadership};
use crate::leader::Elector;
#[cfg(feature = "metrics")]
use crate::metrics::Metrics;
use crate::preflight::{self, PreflightError};
use crate::relist::reflector_in_place;
use crate::replay::script::{Replayer, Script};
use crate::replay::tape::Taping;
use crate::replay::{Recorder, Recording, Replay, ReplayError};
use crate::run::RunReport;
use crate::runner::{NextRun, Runner};
use crate::shard;
use crate::shutdown::Stop;
use crate::staircase::Reconciler;
use crate::step_status::HasStepStatus;
use crate::streaming;
use crate::writes::{CountWrites, OperatorClient, SendVia};

/// Resources the operator can watch: what kube-runtime's reflectors need.
pub trait Watchable:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<T> Watchable for T where
    T: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

/// Another kind the operator keeps a watch cache of (one watch per kind, however many ways it is
/// related), and whose changes may run objects: owned children, related objects.
trait Relation<K>: Send + Sync {
    /// The Rust type of the other kind, to find the relation of a kind declared twice.
    fn other(&self) -> TypeId;
    fn owns(&self) -> bool;
    fn set_owns(&mut self);
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn attach(&self, c: Controller<K>, on: Attach<'_>) -> Controller<K>
    where
        K: Watchable;
    fn check(
        &self,
        client: kube::Client,
        ns: Option<String>,
    ) -> BoxFuture<'static, Result<(), PreflightError>>;
}

/// What a relation's watch is attached with.
struct Attach<'a> {
    client: &'a kube::Client,
    namespace: Option<&'a str>,
    relist: Relist,
    cache: &'a Cache,
    transform: fn(&mut kube::api::ObjectMeta),
    /// Initial lists and relists are streaming lists.
    streaming: bool,
}

fn api_in<T>(client: kube::Client, ns: Option<&str>) -> Api<T>
where
    T: Resource<DynamicType = ()>,
    T::Scope: ApiScope,
{
    match ns {
        Some(ns) => <T::Scope as ApiScope>::api::<T>(client, Some(ns)),
        None => Api::all(client),
    }
}

/// Whether objects of `T` live in namespaces, as its scope builds its URLs.
fn namespaced<T>(client: &kube::Client) -> bool
where
    T: Resource<DynamicType = ()>,
    T::Scope: ApiScope,
{
    <T::Scope as ApiScope>::api::<T>(client.clone(), Some("n"))
        .resource_url()
        .contains("/namespaces/n/")
}

type Mapper<Other, K> = Arc<dyn Fn(Other) -> Vec<ObjectRef<K>> + Send + Sync>;

/// How the operator relates to `Other`: it owns such objects (a change runs the owner), maps
/// them to objects to run, or only reads them.
struct Related<Other, K: Resource<DynamicType = ()>> {
    owns: bool,
    mappers: Vec<Mapper<Other, K>>,
    /// `Other` is `PartialObjectMeta<T>`, declared with `owns_metadata` or `reads_metadata`
    /// (`Api<PartialObjectMeta<T>>` watches metadata only).
    metadata_only: bool,
}

impl<Other, K> Related<Other, K>
where
    Other: Watchable,
    Other::Scope: ApiScope,
    K: Resource<DynamicType = ()>,
{
    fn whole() -> Self {
        Related {
            owns: false,
            mappers: Vec::new(),
            metadata_only: false,
        }
    }
}

impl<T, K> Related<PartialObjectMeta<T>, K>
where
    T: Watchable,
    T::Scope: ApiScope,
    K: Resource<DynamicType = ()>,
{
    fn metadata() -> Self {
        Related {
            metadata_only: true,
            ..Related::whole()
        }
    }
}

impl<K, Other> Relation<K> for Related<Other, K>
where
    Other: Watchable + Serialize,
    Other::Scope: ApiScope,
    K: Resource<DynamicType = ()> + 'static,
{
    fn other(&self) -> TypeId {
        TypeId::of::<Other>()
    }

    fn owns(&self) -> bool {
        self.owns
    }

    fn set_owns(&mut self) {
        self.owns = true;
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn attach(&self, c: Controller<K>, on: Attach<'_>) -> Controller<K>
    where
        K: Watchable,
    {
        let writer = Writer::<Other>::default();
        let scope = on.namespace.map(str::to_string);
        let kind = on.cache.register(
            writer.as_reader(),
            scope,
            namespaced::<Other>(on.client),
            self.metadata_only,
        );
        let watch = watcher(
            api_in::<Other>(on.client.clone(), on.namespace),
            streaming::initial_list(watcher::Config::default(), on.streaming),
        )
        .default_backoff()
        .modify(move |o: &mut Other| (on.transform)(o.meta_mut()));
        let events = match on.relist {
            Relist::InPlace => reflector_in_place(writer, watch).boxed(),
            Relist::Swap => reflector(writer, watch).boxed(),
        };
        // After the reflector: the store holds what each event says when its marks are checked.
        let events = events.inspect(move |ev| kind.observe(ev));
        let (owns, mappers) = (self.owns, self.mappers.clone());
        // An owner reference names no namespace: a namespaced owner is in its child's, a
        // cluster-scoped one in none (keyed with the child's, it would run as a second object).
        let owner_namespaced = TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>();
        c.watches_stream(events.touched_objects(), move |o: Other| {
            let mut refs: Vec<ObjectRef<K>> = Vec::new();
            if owns {
                let ns = o.meta().namespace.as_deref().filter(|_| owner_namespaced);
                refs.extend(
                    o.owner_references()
                        .iter()
                        .filter_map(|owner| ObjectRef::from_owner_ref(ns, owner, ())),
                );
            }
            for map in &mappers {
                refs.extend(map(o.clone()));
            }
            refs
        })
    }

    fn check(
        &self,
        client: kube::Client,
        ns: Option<String>,
    ) -> BoxFuture<'static, Result<(), PreflightError>> {
        Box::pin(async move { preflight::check_list_watch::<Other>(client, ns.as_deref()).await })
    }
}

/// Runs a [`Staircase`](crate::Staircase) against a cluster: watches the resource, schedules
/// runs, enforces the rules, keeps status, retries with backoff; publishes Events and metrics,
/// serves health probes, elects a leader among replicas and shuts down gracefully, as configured.
///
/// ```no_run
/// # use staircase_runtime::*;
/// # use k8s_openapi::api::core::v1::{ConfigMap, Secret};
/// # use kube::runtime::reflector::ObjectRef;
/// # async fn demo<K, M>(client: kube::Client, stairs: Staircase<K, (), M>) -> anyhow::Result<()>
/// # where K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
/// #       M: Stairs<K, ()> {
/// let op = Operator::new(client, stairs)
///     .with_config(OperatorConfig::from_env()?) // STAIRCASE_CONCURRENCY, STAIRCASE_METRICS_ADDR, …
///     .owns::<ConfigMap>() // a change to a child runs its owner
///     .watches::<Secret, _>(|s: Secret| {
///         // a Secret labelled `app=<name>` belongs to that object
///         let owner = s.metadata.labels.as_ref().and_then(|l| l.get("app")).cloned();
///         owner.map(|n| ObjectRef::new(&n).within(s.metadata.namespace.as_deref().unwrap_or_default()))
///     });
/// op.check().await?; // RBAC and connectivity, with precise errors
/// op.run().await; // until SIGTERM/SIGINT
/// # Ok(()) }
/// ```
pub struct Operator<K, S, M, C = Start<K, S>> {
    runner: Runner<K, S, M, C>,
    relations: Vec<Box<dyn Relation<K>>>,
    health: Health,
    #[cfg(feature = "metrics")]
    metrics: Metrics,
    #[cfg(feature = "server")]
    routes: crate::server::Routes,
}

impl<K, M, C> Operator<K, (), M, C>
where
    M: Stairs<K, ()>,
    C: Stairs<K, ()>,
{
    /// An operator whose steps need no shared state. `client` is a `kube::Client` or an
    /// [`OperatorClient`] (see there: built from a `kube::Config`, a step's request takes one
    /// tower buffer instead of two).
    pub fn new(
        client: impl Into<OperatorClient>,
        staircase: impl Reconciler<K, (), Main = M, Cleanup = C>,
    ) -> Self {
        Self::with_state(client, staircase, ())
    }
}

impl<K, S, M, C> Operator<K, S, M, C>
where
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    /// An operator whose steps share `state` (reachable as `ctx.state()`); `client` as for
    /// [`Operator::new`].
    pub fn with_state(
        client: impl Into<OperatorClient>,
        staircase: impl Reconciler<K, S, Main = M, Cleanup = C>,
        state: S,
    ) -> Self {
        Operator {
            runner: Runner::new(
                staircase.into_staircase(),
                client.into(),
                Arc::new(state),
                OperatorConfig::default(),
            ),
            relations: Vec::new(),
            health: Health::default(),
            #[cfg(feature = "metrics")]
            metrics: Metrics::new(),
            #[cfg(feature = "server")]
            routes: crate::server::Routes::new(),
        }
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: OperatorConfig) -> Self {
        self.runner.config = config;
        self
    }

    /// Keeps `observedGeneration` and the `Ready`/`Progressing`/`Waiting`/`Failed` conditions in
    /// the object's status (through the `/status` subresource, best effort).
    pub fn with_status(mut self) -> Self
    where
        K: HasStepStatus,
    {
        self.runner.status = Some(<K as HasStepStatus>::step_status);
        self
    }

    /// Calls `f` with the report of every run (for traces, tests, the demo).
    ///
    /// `f` runs after the operator's own bookkeeping: by the time it sees a report, the
    /// report is already counted in `/metrics` and handed to the Event recorder.
    pub fn on_run(mut self, f: impl Fn(&RunReport) + Send + Sync + 'static) -> Self {
        self.runner.observers.push(Arc::new(f));
        self
    }

    /// The relation to `Other`, created on first use: one watch per kind.
    fn related<Other>(&mut self) -> &mut Related<Other, K>
    where
        Other: Watchable + Serialize,
        Other::Scope: ApiScope,
        K: Resource<DynamicType = ()> + 'static,
    {
        let at = match self.position::<Other>() {
            Some(at) => at,
            None => {
                let mut whole = Related::<Other, K>::whole();
                // A kind declared for its metadata first: the whole objects' cache serves
                // metadata reads too, so one watch remains.
                if let Some(meta) = self.position::<PartialObjectMeta<Other>>() {
                    let meta = self.relations.remove(meta);
                    whole.owns = meta.owns();
                }
                self.relations.push(Box::new(whole));
                self.relations.len() - 1
            }
        };
        self.relations[at]
            .as_any_mut()
            .downcast_mut()
            .expect("the relation of this type")
    }

    fn position<Other: 'static>(&self) -> Option<usize> {
        self.relations
            .iter()
            .position(|r| r.other() == TypeId::of::<Other>())
    }

    /// The relation with `T`'s metadata, or with the whole `T` if that is declared already.
    fn related_metadata<T>(&mut self) -> &mut dyn Relation<K>
    where
        T: Watchable + Serialize,
        T::Scope: ApiScope,
        K: Resource<DynamicType = ()> + 'static,
    {
        let at = match (
            self.position::<T>(),
            self.position::<PartialObjectMeta<T>>(),
        ) {
            (Some(at), _) | (None, Some(at)) => at,
            (None, None) => {
                self.relations
                    .push(Box::new(Related::<PartialObjectMeta<T>, K>::metadata()));
                self.relations.len() - 1
            }
        };
        &mut *self.relations[at]
    }

    /// Runs an object again when one of its children changes: every `Child` whose
    /// `ownerReferences` name the object (what `controller_owner_ref` sets).
    /// Watched in the operator's namespace (all namespaces when it has none), into a cache that
    /// [`Context::get`](crate::Context::get), [`Context::list`](crate::Context::list) and the
    /// children step read.
    pub fn owns<Child>(mut self) -> Self
    where
        Child: Watchable + Serialize,
        Child::Scope: ApiScope,
        K: Resource<DynamicType = ()> + 'static,
    {
        self.related::<Child>().owns = true;
        self
    }

    /// Runs objects again when a related `Other` changes: `mapper` names the objects an `Other`
    /// belongs to (e.g. by a label, or by a reference in the object's spec looked up in a cache).
    /// `Other` is cached as for [`owns`](Self::owns).
    pub fn watches<Other, I>(mut self, mapper: impl Fn(Other) -> I + Send + Sync + 'static) -> Self
    where
        Other: Watchable + Serialize,
        Other::Scope: ApiScope,
        I: IntoIterator<Item = ObjectRef<K>>,
        K: Resource<DynamicType = ()> + 'static,
    {
        let mapper: Mapper<Other, K> = Arc::new(move |o| mapper(o).into_iter().collect());
        self.related::<Other>().mappers.push(mapper);
        self
    }

    /// Keeps a watch cache of `Other` for steps to read ([`Context::get`](crate::Context::get),
    /// [`Context::list`](crate::Context::list)), without its changes running anything. Kinds the
    /// operator [`owns`](Self::owns) or [`watches`](Self::watches) are cached already.
    pub fn reads<Other>(mut self) -> Self
    where
        Other: Watchable + Serialize,
        Other::Scope: ApiScope,
        K: Resource<DynamicType = ()> + 'static,
    {
        self.related::<Other>();
        self
    }

    /// [`owns`](Self::owns), caching only the children's metadata (a metadata-only watch):
    /// for children a step checks for existence, labels, annotations or owner, read with
    /// `ctx.get::<PartialObjectMeta<Child>>` and `ctx.list::<PartialObjectMeta<Child>>`. The
    /// cache holds a fraction of the whole objects' memory; a read of a whole `Child` goes to
    /// the API server (counted as `metadata_only`). Declared with [`owns`](Self::owns),
    /// [`watches`](Self::watches) or [`reads`](Self::reads) as well, the kind is cached whole
    /// and serves both.
    ///
    /// ```no_run
    /// # use staircase_runtime::*;
    /// use k8s_openapi::api::core::v1::Secret;
    /// use kube::core::PartialObjectMeta;
    /// # async fn demo<K, M>(client: kube::Client, stairs: Staircase<K, (), M>)
    /// # where K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    /// #       M: Stairs<K, ()> {
    /// // In a step: does the Secret exist? Its data is never cached.
    /// async fn has_token(ctx: &Context) -> Result<bool> {
    ///     Ok(ctx.get::<PartialObjectMeta<Secret>>("token").await?.is_some())
    /// }
    /// Operator::new(client, stairs).owns_metadata::<Secret>().run().await;
    /// # }
    /// ```
    pub fn owns_metadata<Child>(mut self) -> Self
    where
        Child: Watchable + Serialize,
        Child::Scope: ApiScope,
        K: Resource<DynamicType = ()> + 'static,
    {
        self.related_metadata::<Child>().set_owns();
        self
    }

    /// [`reads`](Self::reads), caching only the metadata of `Other` (see
    /// [`owns_metadata`](Self::owns_metadata)).
    pub fn reads_metadata<Other>(mut self) -> Self
    where
        Other: Watchable + Serialize,
        Other::Scope: ApiScope,
        K: Resource<DynamicType = ()> + 'static,
    {
        self.related_metadata::<Other>();
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &OperatorConfig {
        &self.runner.config
    }

    /// Records every run into `recorder`'s directory: the object the run acted on, every request
    /// its steps and the runtime made with the answers, and what the run did, one JSON file per
    /// run, for [`replay`](Self::replay) (see [`replay`](crate::replay)). A recording that
    /// cannot be written is logged and counted, never fails the run.
    ///
    /// Recordings hold the bodies of what steps read and write, Secrets included, unless
    /// [`Recorder::redact_secrets`](crate::replay::Recorder::redact_secrets) is set.
    pub fn record(mut self, recorder: Recorder) -> Self
    where
        K: Serialize,
    {
        let r = &mut self.runner;
        if r.recording.is_none() {
            // Every request of the operator passes the taping layer, which looks only at those
            // made inside a run.
            let ns = r.client.default_namespace().to_string();
            let counting = kube::Client::clone(&r.counting);
            r.client = kube::Client::new(Taping(SendVia(r.client.clone())), ns.clone());
            r.counting = Arc::new(kube::Client::new(Taping(SendVia(counting)), ns));
        }
        r.recording = Some(crate::runner::RunRecording {
            recorder,
            view: |obj| serde_json::to_value(obj).ok(),
        });
        self
    }
}

impl<K, S, M, C> Operator<K, S, M, C> {
    /// The operator's health as its probes report it (shared: it follows the running operator).
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// The operator's metrics (shared: they follow the running operator). The runtime's
    /// `staircase_` series carry the label `controller` = [`OperatorConfig::name`]; metrics
    /// registered with [`Metrics::register`] are exported as registered.
    #[cfg(feature = "metrics")]
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Counts into `metrics` instead of a registry of its own: several operators in one process
    /// share one registry, and so one `/metrics`, told apart by their `controller` label (their
    /// [`OperatorConfig::name`], which must then differ).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Answers `path` on the operator's endpoint with `handler`, beside `/metrics`, `/healthz`
    /// and `/readyz`: see [`Routes::route`](crate::server::Routes::route), which says which
    /// paths it takes (and refuses, with a panic).
    #[cfg(feature = "server")]
    pub fn with_route<F, Fut, B>(mut self, path: &str, handler: F) -> Self
    where
        F: Fn(http::Request<bytes::Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = http::Response<B>> + Send + 'static,
        B: Into<bytes::Bytes>,
    {
        self.routes = self.routes.route(path, handler);
        self
    }

    /// The routes of your own the endpoint serves (for
    /// [`server::serve_with`](crate::server::serve_with) on a listener of your choice).
    #[cfg(feature = "server")]
    pub fn routes(&self) -> crate::server::Routes {
        self.routes.clone()
    }

    /// Adds a check of your own to readiness: `/readyz` answers 200 only while `check` returns
    /// `Ok` (and the operator is ready), and names `name` with the message of its `Err`
    /// otherwise. It runs on every probe: keep it quick, e.g. reading a flag another task keeps.
    pub fn with_ready_check(
        self,
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.health.add_check(name.into(), Arc::new(check));
        self
    }
}

/// What the controller's runs share.
struct Shared<K, S, M, C> {
    runner: Arc<Runner<K, S, M, C>>,
    /// With sharding: the slots this replica may run.
    gate: Option<Arc<shard::Gate>>,
    /// Reports a watched object left out because it does not decode.
    undecodable: OnUndecodable,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Controller,
}

/// Forgets the operator's watch caches when leading ends, however it ends.
struct ForgetStores<'a>(&'a Cache);

impl Drop for ForgetStores<'_> {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// Aborts a helper task when the phase that spawned it ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<K, S, M, C> Operator<K, S, M, C>
where
    K: Watchable,
    K::Scope: ApiScope,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    /// Runs until SIGTERM or SIGINT, then shuts down gracefully (see [`run_until`](Self::run_until)).
    pub async fn run(self) {
        self.run_until(crate::shutdown::signal()).await
    }

    /// Runs until `shutdown` completes, then shuts down gracefully: no new runs start, runs in
    /// flight finish (each delivers its report) within
    /// [`shutdown_timeout`](OperatorConfig::shutdown_timeout) and are cancelled after it, queued
    /// Events are published, and the Lease (with leader election) is released so a standby
    /// replica takes over at once. Returns when all of that is done.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Operator {
            mut runner,
            relations,
            health,
            #[cfg(feature = "metrics")]
            metrics,
            #[cfg(feature = "server")]
            routes,
        } = self;
        let cfg = runner.config.clone();
        let client = runner.client.clone();
        let stop = Stop::on(shutdown);
        // The name is known only now: `with_config` may come after `metrics()` was handed out.
        #[cfg(feature = "server")]
        let registry = metrics.clone();
        #[cfg(feature = "metrics")]
        let metrics = metrics.controller(&cfg.name);

        let identity = cfg
            .leader_election
            .as_ref()
            .map(|le| le.identity.clone())
            .or_else(|| std::env::var("POD_NAME").ok());
        let events = cfg.events.then(|| {
            #[cfg(feature = "metrics")]
            let dropped = {
                let m = metrics.clone();
                move || m.event_dropped()
            };
            #[cfg(not(feature = "metrics"))]
            let dropped = || {};
            let reporter = Reporter {
                controller: cfg.name.clone(),
                instance: identity.clone(),
            };
            EventPublisher::spawn(client.clone(), reporter, dropped)
        });
        if let Some((publisher, _)) = &events {
            let p = publisher.clone();
            runner
                .observers
                .insert(0, Arc::new(move |r: &RunReport| p.observe(r)));
        }
        #[cfg(feature = "metrics")]
        {
            let mut steps = runner.staircase.step_names();
            steps.extend(runner.staircase.cleanup_step_names());
            let m = metrics.run_observer(steps);
            // Ahead of the user's observers, so a report they see is already counted.
            runner
                .observers
                .insert(0, Arc::new(move |r: &RunReport| m.observe(r)));
        }
        #[cfg(feature = "server")]
        let _server = match cfg.metrics_addr {
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    let local = listener.local_addr().map_or(addr, |a| a);
                    tracing::info!("serving /metrics, /healthz and /readyz on http://{local}");
                    Some(AbortOnDrop(tokio::spawn(crate::server::serve_with(
                        listener,
                        registry,
                        health.clone(),
                        routes,
                    ))))
                }
                Err(e) => {
                    tracing::error!("cannot serve metrics and health on {addr}: {e}");
                    None
                }
            },
            None => None,
        };

        let undecodable: OnUndecodable = {
            let publisher = events.as_ref().map(|(p, _)| p.clone());
            #[cfg(feature = "metrics")]
            let metrics = metrics.clone();
            Arc::new(move |meta: &kube::api::ObjectMeta, error: &str| {
                let name = meta.name.as_deref().unwrap_or("<unnamed>");
                let ns = meta.namespace.as_deref().unwrap_or_default();
                tracing::error!(
                    kind = %K::kind(&()),
                    namespace = ns,
                    name,
                    "skipped an object that does not decode (the others run): {error}"
                );
                #[cfg(feature = "metrics")]
                metrics.undecodable_object();
                if let Some(p) = &publisher {
                    let reference = k8s_openapi::api::core::v1::ObjectReference {
                        api_version: Some(K::api_version(&()).into_owned()),
                        kind: Some(K::kind(&()).into_owned()),
                        name: meta.name.clone(),
                        namespace: meta.namespace.clone(),
                        uid: meta.uid.clone(),
                        resource_version: meta.resource_version.clone(),
                        field_path: None,
                    };
                    p.queue(reference, crate::events::undecodable(error));
                }
            })
        };
        #[cfg(feature = "metrics")]
        runner.cache.set_metrics(metrics.clone());
        let sharding = cfg.leader_election.as_ref().is_some_and(|le| le.sharding);
        let shared = Arc::new(Shared {
            runner: Arc::new(runner),
            gate: sharding.then(Arc::default),
            undecodable,
            #[cfg(feature = "metrics")]
            metrics,
        });
        health.set_running(true);
        match cfg.leader_election.clone() {
            None => {
                health.set_leadership(Leadership::Disabled);
                lead(&shared, &relations, &health, stop).await;
            }
            Some(le) if le.sharding => {
                sharded(client, le, &shared, &relations, &health, stop).await
            }
            Some(le) => elect(Elector::new(client, le), &shared, &relations, &health, stop).await,
        }
        health.set_running(false);

        if let Some((publisher, task)) = events {
            publisher.close();
            // Queued Events are published unless the API server is too slow to wait for.
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("shutdown: some Events were not published in time");
            }
        }
    }

    /// Checks, before running, that the API server answers and that the operator may list and
    /// watch its resource and every resource it [`owns`](Self::owns) or
    /// [`watches`](Self::watches) (and read its Lease, with leader election). The error names
    /// the first missing verb and resource precisely.
    pub async fn check(&self) -> Result<(), PreflightError> {
        let client = self.runner.client.clone();
        preflight::reachable(&client)
            .await
            .map_err(PreflightError::Unreachable)?;
        let ns = self.runner.config.namespace.clone();
        preflight::check_list_watch::<K>(client.clone(), ns.as_deref()).await?;
        for r in &self.relations {
            r.check(client.clone(), ns.clone()).await?;
        }
        if let Some(le) = &self.runner.config.leader_election {
            let elector = Elector::new(client.clone(), le.clone());
            let cfg = elector.config();
            let api: Api<k8s_openapi::api::coordination::v1::Lease> = match &cfg.namespace {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::default_namespaced(client.clone()),
            };
            let scope = format!(
                "namespace {}",
                cfg.namespace
                    .as_deref()
                    .unwrap_or(client.default_namespace())
            );
            preflight::check_get(api, &cfg.lease_name, &scope).await?;
        }
        Ok(())
    }

    /// Runs the staircase once for `obj`, outside the controller loop (the object is taken as
    /// given, e.g. freshly read in a test). What the runtime remembers between runs (failures
    /// for backoff, its own last write) is kept across calls. Returns the report, or `None` when
    /// there was nothing to run.
    pub async fn run_once(&self, obj: K) -> Option<RunReport> {
        self.runner.run(Arc::new(obj)).await.0
    }

    /// What the next run would do to `obj`, step by step, found by running the staircase with
    /// every write sent as a dry run: nothing changes (see [`explain`](crate::explain)). The
    /// explaining run shares nothing with this operator's runs (what they remember, their
    /// caches), so it can run beside a running operator: [`run`](Self::run) takes the operator,
    /// so explain with a second one built the same way (the hook
    /// [`explain::from_args`](crate::explain::from_args) does this in a process of its own).
    pub async fn explain(&self, obj: K) -> Explanation {
        let meta = obj.meta();
        let object = object_name(&obj);
        let steps = match meta.deletion_timestamp {
            Some(_) => self.runner.staircase.cleanup_step_names(),
            None => self.runner.staircase.step_names(),
        };
        let paused = self.runner.pause_of(meta);
        let report = self.runner.explainer().run(Arc::new(obj)).await.0;
        Explanation {
            object,
            steps,
            paused,
            report,
        }
    }

    /// Replays a recorded run (see [`replay`](crate::replay)): runs the staircase once on the
    /// recorded object, every request answered from the recording (nothing is sent anywhere:
    /// this operator's client is not used), and compares the replayed run with the recorded one
    /// step by step. The replayed run shares nothing with this operator's runs.
    pub async fn replay(&self, recording: &Recording) -> Result<Replay, ReplayError> {
        let (api_version, kind) = (K::api_version(&()), K::kind(&()));
        if recording.api_version != api_version || recording.kind != kind {
            return Err(ReplayError::Kind {
                recorded: format!("{} {}", recording.api_version, recording.kind),
                expected: format!("{api_version} {kind}"),
            });
        }
        let obj: K =
            serde_json::from_value(recording.view.clone()).map_err(|source| ReplayError::View {
                kind: kind.to_string(),
                source,
            })?;
        let meta = obj.meta();
        let steps = match meta.deletion_timestamp {
            Some(_) => self.runner.staircase.cleanup_step_names(),
            None => self.runner.staircase.step_names(),
        };
        let script = Arc::new(std::sync::Mutex::new(Script::new(
            recording.exchanges.clone(),
        )));
        let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let answers = Replayer(script.clone());
        let clients = OperatorClient {
            client: kube::Client::new(answers.clone(), ns.clone()),
            counting: kube::Client::new(CountWrites.layer(answers), ns),
        };
        let object = object_name(&obj);
        let runner = self
            .runner
            .replayer(clients, recording.run_id, recording.retries);
        let report = runner.run(Arc::new(obj)).await.0;
        let script = script.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Replay::compare(
            object,
            recording,
            report,
            script.served(),
            steps,
        ))
    }

    /// Reads the object an `explain` command line names and [explains](Self::explain) it.
    pub async fn explain_named(&self, cmd: &explain::Command) -> crate::Result<Explanation> {
        if let Some(kind) = cmd
            .kind
            .as_deref()
            .filter(|k| !explain::Command::names::<K>(k))
        {
            let group = K::group(&());
            let plural = K::plural(&());
            let resource = if group.is_empty() {
                plural.to_string()
            } else {
                format!("{plural}.{group}")
            };
            return Err(crate::Error::permanent(anyhow::anyhow!(
                "this operator explains {resource} ({}), not {kind:?}",
                K::kind(&())
            )));
        }
        let client = &self.runner.client;
        let namespaced =
            TypeId::of::<K::Scope>() == TypeId::of::<k8s_openapi::NamespaceResourceScope>();
        let ns = namespaced.then(|| {
            cmd.namespace
                .as_deref()
                .unwrap_or(client.default_namespace())
        });
        let api = <K::Scope as ApiScope>::api(client.clone(), ns);
        match api.get_opt(&cmd.name).await? {
            Some(obj) => Ok(self.explain(obj).await),
            None => Err(crate::Error::permanent(anyhow::anyhow!(
                "{} {:?} not found{}",
                K::kind(&()),
                cmd.name,
                ns.map(|ns| format!(" in namespace {ns}"))
                    .unwrap_or_default()
            ))),
        }
    }
}

/// `Kind namespace/name` (or `Kind name`).
fn object_name<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    match &obj.meta().namespace {
        Some(ns) => format!("{} {ns}/{}", K::kind(&()), obj.name_any()),
        None => format!("{} {}", K::kind(&()), obj.name_any()),
    }
}

/// Reconciles until `stop`: the controller stops taking runs, then the runs in flight get
/// `shutdown_timeout` to finish.
async fn lead<K, S, M, C>(
    shared: &Arc<Shared<K, S, M, C>>,
    relations: &[Box<dyn Relation<K>>],
    health: &Health,
    stop: Stop,
) where
    K: Watchable,
    K::Scope: ApiScope,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    let cfg = &shared.runner.config;
    let client = shared.runner.client.clone();
    let ns = cfg.namespace.as_deref();
    let streaming = streaming::choose(cfg.initial_list, &api_in::<K>(client.clone(), ns)).await;
    let mut wc = streaming::initial_list(watcher::Config::default(), streaming);
    if let Some(sel) = &cfg.label_selector {
        wc = wc.labels(sel);
    }
    let writer = Writer::<K>::default();
    let store = writer.as_reader();
    // With sharding, the API server may do the split: the primary watch then selects only
    // this replica's slots (and those moving to it), restarted as they change.
    let split_on_server = match &shared.gate {
        Some(gate) => {
            let path = api_in::<K>(client.clone(), ns).resource_url().to_string();
            let on = shard::server_side::supported(&client, &path).await;
            gate.filter_on_server(on);
            on.then_some((gate.clone(), path))
        }
        None => None,
    };
    let primary = match split_on_server {
        Some((gate, path)) => {
            let selector = Arc::default();
            let filtered = kube::Client::new(
                shard::server_side::ShardFilter {
                    inner: crate::writes::SendVia(client.clone()),
                    path: path.into(),
                    selector: Arc::clone(&selector),
                },
                client.default_namespace().to_string(),
            );
            let api = api_in::<Lenient<K>>(filtered, ns);
            shard::server_side::watch(gate, api, wc, selector).boxed()
        }
        None => watcher(api_in::<Lenient<K>>(client.clone(), ns), wc).boxed(),
    };
    let watch = skip_undecodable(primary, shared.undecodable.clone());
    let events = match cfg.relist {
        Relist::InPlace => reflector_in_place(writer, watch).boxed(),
        Relist::Swap => reflector(writer, watch).boxed(),
    };
    let mut controller = Controller::for_stream(events.applied_objects(), store.clone())
        .with_config(ControllerConfig::default().concurrency(cfg.concurrency));
    if let Some(gate) = &shared.gate {
        // Objects of slots that open here were skipped while they were another replica's.
        let opened = futures::stream::unfold(gate.opened(), |mut rx| async move {
            rx.changed().await.ok().map(|_| ((), rx))
        });
        controller = controller.reconcile_all_on(opened);
    }
    let cache = &shared.runner.cache;
    // However leading ends (a lost Lease drops this future), the watches behind the caches end
    // with it: later reads (a later term) wait for new ones.
    let _forget = ForgetStores(cache);
    cache.configure(cfg.read_your_writes_grace, cfg.cache_read_your_writes);
    for r in relations {
        let on = Attach {
            client: &client,
            namespace: ns,
            relist: cfg.relist,
            cache,
            transform: cfg.cache_transform,
            streaming,
        };
        controller = r.attach(controller, on);
    }
    #[cfg(feature = "metrics")]
    {
        let (exists, runner) = (exists_in(store.clone()), shared.runner.clone());
        shared
            .metrics
            .set_counts(Arc::new(move || runner.memory.counts(&*exists)));
        let runner = shared.runner.clone();
        shared
            .metrics
            .set_pending_marks(Arc::new(move || runner.cache.pending_marks()));
        if let Some(gate) = shared.gate.clone() {
            let store = store.clone();
            shared.metrics.set_shard_counts(Arc::new(move || {
                let objects = store
                    .state()
                    .iter()
                    .filter(|o| gate.is_open(o.meta().uid.as_deref().unwrap_or_default()))
                    .count();
                (gate.owned(), objects)
            }));
        }
    }
    let synced = {
        let (health, store) = (health.clone(), store.clone());
        let runner = shared.runner.clone();
        AbortOnDrop(tokio::spawn(async move {
            // kube-runtime's readiness signal wakes only the last of several concurrent waiters
            // (the controller waits on it too), so look again now and then instead of waiting once.
            loop {
                match tokio::time::timeout(Duration::from_millis(50), store.wait_until_ready())
                    .await
                {
                    Ok(Ok(())) => break,
                    Ok(Err(_)) => return,
                    Err(_) => {}
                }
            }
            tracing::info!("watch cache synced: ready");
            health.set_synced(true);
            // Once per resync period: forget what the runner remembers of objects deleted
            // without our finalizer (they never run again), and audit the cache.
            let exists = exists_in(store.clone());
            let period = runner.config.resync.max(Duration::from_millis(10));
            let api = api_in::<K>(runner.client.clone(), runner.config.namespace.as_deref());
            let labels = runner.config.label_selector.clone();
            loop {
                tokio::time::sleep(period).await;
                let forgotten = runner.memory.forget_missing(&*exists);
                if forgotten > 0 {
                    tracing::debug!(forgotten, "forgot objects that no longer exist");
                }
                match audit(&api, labels.as_deref(), &store, &runner.memory).await {
                    Ok(found) if found.behind > 0 => tracing::debug!(
                        listed = found.listed,
                        behind = found.behind,
                        "resync audit: the watch cache is behind on some objects; their next runs re-read them"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::debug!("resync audit: listing failed: {e}"),
                }
            }
        }))
    };
    let runs = controller
        .graceful_shutdown_on(stop.clone().wait())
        .run(reconcile, error_policy, shared.clone())
        .for_each(|res| async move {
            match res {
                // A related object's change mapped to an object deleted since: nothing to run.
                Err(e @ kube::runtime::controller::Error::ObjectNotFound(_)) => {
                    tracing::debug!("controller: {e}")
                }
                // A watch of the resource or of a related kind that fails (not served, not
                // allowed) keeps retrying: say so where people look.
                Err(e) => tracing::warn!("controller: {e}"),
                Ok(_) => {}
            }
        });
    // Once shutdown is requested kube-runtime starts no new runs, and its stream ends when the
    // runs in flight (each in a task of its own) have finished: keep polling it, bounded by the
    // timeout. Dropping it aborts the runs still executing.
    let timeout = cfg.shutdown_timeout;
    let timed_out = tokio::select! {
        _ = runs => false,
        _ = async { stop.wait().await; tokio::time::sleep(timeout).await } => true,
    };
    drop(synced);
    if timed_out {
        tracing::warn!("shutdown: runs still in flight after {timeout:?} are cancelled");
    }
    health.set_synced(false);
}

/// With leader election: stand by until this replica holds the Lease, lead while it holds it,
/// stand by again when it is lost; on `stop`, finish leading and release the Lease.
async fn elect<K, S, M, C>(
    mut elector: Elector,
    shared: &Arc<Shared<K, S, M, C>>,
    relations: &[Box<dyn Relation<K>>],
    health: &Health,
    stop: Stop,
) where
    K: Watchable,
    K::Scope: ApiScope,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    health.set_leadership(Leadership::Unknown);
    loop {
        if !acquire(&mut elector, &stop, |l| health.set_leadership(l)).await {
            return;
        }
        let delay = elector.config().takeover_delay;
        if elector.took_over() && !delay.is_zero() {
            tracing::info!(
                "leader election: took the Lease over; waiting {delay:?} for the last leader's external calls"
            );
            let lost = tokio::select! {
                _ = tokio::time::sleep(delay) => None,
                _ = stop.clone().wait() => return,
                reason = hold(&mut elector) => Some(reason),
            };
            if let Some(reason) = lost {
                tracing::warn!("leader election: lost the Lease while waiting ({reason})");
                health.set_leadership(Leadership::Standby);
                continue;
            }
        }
        tracing::info!(
            identity = elector.config().identity,
            "leader election: leading"
        );
        health.set_leadership(Leadership::Leading);
        let lost = tokio::select! {
            _ = lead(shared, relations, health, stop.clone()) => None,
            reason = hold(&mut elector) => Some(reason),
        };
        match lost {
            Some(reason) => {
                // Another replica may start any moment: stop now, not gracefully (dropping
                // `lead` above dropped the controller, which aborted the runs in flight).
                health.set_synced(false);
                health.set_leadership(Leadership::Standby);
                tracing::warn!("leader election: lost the Lease ({reason}); stopped reconciling");
            }
            None => {
                if let Err(e) = elector.release().await {
                    tracing::warn!("leader election: releasing the Lease failed: {e}");
                }
                health.set_leadership(Leadership::Standby);
                return;
            }
        }
    }
}

/// Waits until this replica holds the Lease (`true`), or until `stop` (`false`), reporting each
/// look that found another holder or failed.
async fn acquire(elector: &mut Elector, stop: &Stop, on_look: impl Fn(Leadership)) -> bool {
    let retry = elector.config().retry_period;
    loop {
        if stop.requested() {
            return false;
        }
        match elector.try_acquire_or_renew().await {
            Ok(true) => return true,
            Ok(false) => on_look(Leadership::Standby),
            Err(e) => {
                tracing::warn!("leader election: reading the Lease failed: {e}");
                on_look(Leadership::Unknown);
            }
        }
        tokio::select! {
            _ = stop.clone().wait() => return false,
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

/// With sharding: every replica runs the slots assigned to it while it holds its member Lease,
/// and the one holding the operator's Lease assigns the slots. On `stop`, finish the runs in
/// flight, then release both Leases.
async fn sharded<K, S, M, C>(
    client: kube::Client,
    le: crate::LeaderElection,
    shared: &Arc<Shared<K, S, M, C>>,
    relations: &[Box<dyn Relation<K>>],
    health: &Health,
    stop: Stop,
) where
    K: Watchable,
    K::Scope: ApiScope,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    let gate = shared.gate.clone().expect("sharding has a gate");
    let assigner = shard::Assigner::new(client.clone(), &le);
    #[cfg(feature = "metrics")]
    let assigner = {
        let m = shared.metrics.clone();
        assigner.on_gap(Box::new(move |gap| m.shard_gap(gap)))
    };
    let assigning = tokio::spawn(assign_while_leading(
        Elector::new(client.clone(), le.clone()),
        assigner,
        stop.clone(),
    ));
    let mut assigning = AbortOnDrop(assigning);
    health.set_leadership(Leadership::Unknown);
    let mut member = shard::Member::new(client.clone(), &le);
    loop {
        gate.close_all();
        let joined = loop {
            if stop.requested() {
                break false;
            }
            match member.join().await {
                Ok(()) => break true,
                Err(e) => {
                    tracing::warn!("sharding: writing the member Lease failed: {e}");
                    health.set_leadership(Leadership::Unknown);
                }
            }
            tokio::select! {
                _ = stop.clone().wait() => break false,
                _ = tokio::time::sleep(le.retry_period) => {}
            }
        };
        if !joined {
            break;
        }
        tracing::info!(
            identity = le.identity,
            term = member.term(),
            "sharding: joined"
        );
        health.set_leadership(Leadership::Leading);
        let lost = tokio::select! {
            _ = lead(shared, relations, health, stop.clone()) => None,
            reason = shard::hold(&member, &gate, client.clone(), &le, |n| {
                #[cfg(feature = "metrics")]
                shared.metrics.shard_handoffs(n);
                let _ = n;
            }) => Some(reason),
        };
        gate.close_all();
        health.set_leadership(Leadership::Standby);
        match lost {
            Some(reason) => {
                health.set_synced(false);
                tracing::warn!("sharding: lost the member Lease ({reason}); stopped every run");
            }
            None => {
                if let Err(e) = member.release().await {
                    tracing::warn!("sharding: releasing the member Lease failed: {e}");
                }
                break;
            }
        }
    }
    // The assigner releases the operator's Lease on `stop`, unless the API server is too slow
    // to wait for.
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut assigning.0).await;
}

/// With sharding: while this replica holds the operator's Lease, assign the slots; on `stop`,
/// release the Lease.
async fn assign_while_leading(mut elector: Elector, mut assigner: shard::Assigner, stop: Stop) {
    loop {
        if !acquire(&mut elector, &stop, |_| {}).await {
            return;
        }
        let cfg = elector.config().clone();
        tracing::info!(
            identity = cfg.identity,
            "sharding: leading, assigning slots"
        );
        tokio::select! {
            _ = stop.clone().wait() => {
                if let Err(e) = elector.release().await {
                    tracing::warn!("leader election: releasing the Lease failed: {e}");
                }
                return;
            }
            reason = hold(&mut elector) => {
                tracing::warn!("sharding: lost the Lease ({reason}); stopped assigning");
            }
            _ = shard::assign(&mut assigner, cfg.retry_period) => {}
        }
    }
}

/// Renews the Lease until it is lost; returns why.
async fn hold(elector: &mut Elector) -> String {
    let (retry, deadline) = (
        elector.config().retry_period,
        elector.config().renew_deadline,
    );
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(retry).await;
        // A renewal that hangs counts as failing: the deadline is what keeps two leaders apart.
        let left = deadline.saturating_sub(renewed.elapsed());
        match tokio::time::timeout(left, elector.try_acquire_or_renew()).await {
            Ok(Ok(true)) => renewed = Instant::now(),
            Ok(Ok(false)) => return "another replica holds it".into(),
            Ok(Err(e)) if renewed.elapsed() >= deadline => {
                return format!("not renewed for {deadline:?}: {e}");
            }
            Ok(Err(e)) => tracing::warn!("leader election: renewing failed, retrying: {e}"),
            Err(_) => return format!("not renewed for {deadline:?}"),
        }
    }
}

fn exists_in<K: Watchable>(store: Store<K>) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
    Arc::new(move |key: &str| {
        let r = match key.split_once('/') {
            Some((ns, name)) => ObjectRef::new(name).within(ns),
            None => ObjectRef::new(key),
        };
        store.get(&r).is_some()
    })
}

/// Decrements the in-flight gauge when a run ends, however it ends.
#[cfg(feature = "metrics")]
struct RunGuard(crate::metrics::Controller);

#[cfg(feature = "metrics")]
impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.run_finished();
    }
}

async fn reconcile<K, S, M, C>(
    obj: Arc<K>,
    shared: Arc<Shared<K, S, M, C>>,
) -> Result<Action, Never>
where
    K: Watchable,
    K::Scope: ApiScope,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    let _in_flight = match &shared.gate {
        Some(gate) => match gate.enter(obj.meta().uid.as_deref().unwrap_or_default()) {
            Some(run) => Some(run),
            // Another replica's: it runs again here when its slot opens.
            None => return Ok(Action::await_change()),
        },
        None => None,
    };
    #[cfg(feature = "metrics")]
    let _guard = {
        shared.metrics.run_started();
        RunGuard(shared.metrics.clone())
    };
    // kube-runtime runs this in a task of its own; `lead` keeps polling the controller until the
    // runs in flight are done (or the shutdown timeout cancels them).
    Ok(match shared.runner.run(obj).await.1 {
        NextRun::After(d) => Action::requeue(d),
        NextRun::OnChange => Action::await_change(),
    })
}

fn error_policy<K, T>(_: Arc<K>, e: &Never, _: Arc<T>) -> Action {
    match e.0 {}
}

/// Runs never fail towards the controller: errors are handled (backoff, status) by the runner.
#[derive(Debug)]
struct Never(Infallible);

impl std::fmt::Display for Never {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {}
    }
}

impl std::error::Error for Never {}
