//! What a step gets besides the resource: the client, the user's state, and facts about the run.

use std::fmt::Debug;
use std::sync::Arc;

use kube::core::Selector;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::cache::{Cache, Live, label_of};
use crate::replay::tape;
use crate::writes::{Write, record_current};

/// Facts about the current run, for logs and decisions.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// A number unique per operator process, increasing with every run.
    pub run_id: u64,
    /// The object's `metadata.generation` when the run started.
    pub generation: Option<i64>,
    /// How many runs in a row failed before this one (0 after a success; saturates at 255).
    pub retries: u32,
    /// Whether the object is being deleted (cleanup steps are running).
    pub deleting: bool,
}

/// The context handed to every step of a run.
///
/// Writes through [`Context::client`] (or an [`Api`] from [`Context::api`]) are counted; the
/// runtime checks the count against what the step reports. Reads through [`Context::get`] and
/// [`Context::list`] are served from the operator's watch caches and never older than the
/// operator's own writes (the guide's chapter on reads says how).
pub struct Context<S = ()> {
    // Shared: cloning a `kube::Client` allocates (its buffer's sender and default namespace),
    // and the runtime builds a context for every run.
    client: Arc<kube::Client>,
    state: Arc<S>,
    namespace: Option<String>,
    run: RunInfo,
    cache: Option<Arc<Cache>>,
    /// The run only explains or replays (`"explain"`, `"replay"`): external calls are not made.
    dry: Option<&'static str>,
}

impl<S> Context<S> {
    /// Builds a context; the runtime does this for every run. Public so steps can be unit-tested.
    /// A context built here has no watch caches: [`get`](Self::get) and [`list`](Self::list)
    /// read from the API server.
    pub fn new(
        client: kube::Client,
        state: Arc<S>,
        namespace: Option<String>,
        run: RunInfo,
    ) -> Self {
        Self::shared(Arc::new(client), state, namespace, run, None)
    }

    /// [`new`](Self::new) with a client the runtime keeps for all its runs, and its caches.
    pub(crate) fn shared(
        client: Arc<kube::Client>,
        state: Arc<S>,
        namespace: Option<String>,
        run: RunInfo,
        cache: Option<Arc<Cache>>,
    ) -> Self {
        Context {
            client,
            state,
            namespace,
            run,
            cache,
            dry: None,
        }
    }

    /// Marks the context of a run that only explains or replays (`mode` names which).
    pub(crate) fn dry(mut self, mode: Option<&'static str>) -> Self {
        self.dry = mode;
        self
    }

    /// `"explain"` or `"replay"` when the run makes no call outside Kubernetes (see
    /// [`crate::explain`], [`crate::replay`]).
    pub(crate) fn dry_mode(&self) -> Option<&'static str> {
        self.dry
    }

    /// The operator's caches, for the write log of a step (each write leaves its mark there).
    pub(crate) fn cache_handle(&self) -> Option<Arc<Cache>> {
        self.cache.clone()
    }

    pub(crate) fn cache(&self) -> Option<&Cache> {
        self.cache.as_deref()
    }

    /// The Kubernetes client; writes through it are counted against the current step.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The operator's shared state (the value given to `Operator::with_state`).
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The shared state as an `Arc`, to move into spawned work.
    pub fn state_arc(&self) -> Arc<S> {
        self.state.clone()
    }

    /// Facts about this run.
    pub fn run(&self) -> &RunInfo {
        &self.run
    }

    /// The namespace of the object this run is for (`None` for cluster-scoped objects).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// An `Api` for `T` in the object's namespace (or cluster-wide for cluster-scoped `T`).
    pub fn api<T>(&self) -> Api<T>
    where
        T: Resource<DynamicType = ()>,
        T::Scope: ApiScope,
    {
        <T::Scope as ApiScope>::api(kube::Client::clone(&self.client), self.namespace.as_deref())
    }

    /// The object `name` of type `T` in the object's namespace (or cluster-wide for
    /// cluster-scoped `T`), `None` when it does not exist. Reads the operator's watch cache of
    /// `T` when it has one (the kinds it [`owns`](crate::Operator::owns),
    /// [`watches`](crate::Operator::watches) or [`reads`](crate::Operator::reads)), and the
    /// API server otherwise. Never older than a write this operator's steps made to the object:
    /// the read waits for the cache to show that write, and reads the API server when that
    /// takes longer than [`read_your_writes_grace`](crate::OperatorConfig::read_your_writes_grace).
    ///
    /// ```no_run
    /// # use staircase_runtime::*;
    /// # use k8s_openapi::api::core::v1::ConfigMap;
    /// # async fn step(ctx: &Context) -> Result<Outcome> {
    /// match ctx.get::<ConfigMap>("settings").await? {
    ///     Some(cm) if cm.data.is_some() => Ok(Outcome::unchanged()),
    ///     _ => Ok(Outcome::wait("the ConfigMap settings has no data yet")),
    /// }
    /// # }
    /// ```
    pub async fn get<T>(&self, name: &str) -> kube::Result<Option<Arc<T>>>
    where
        T: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        T::Scope: ApiScope,
    {
        if let Some(cache) = &self.cache {
            match cache.get::<T>(self.namespace.as_deref(), name).await {
                Ok(found) => {
                    if tape::active() {
                        self.tape_get(cache, name, found.as_deref());
                    }
                    return Ok(found);
                }
                Err(Live::NoStore) => {}
                Err(why) => cache.live(&label_of(&T::plural(&()), &T::group(&())), why),
            }
        }
        Ok(self.api::<T>().get_opt(name).await?.map(Arc::new))
    }

    /// The objects of type `T` in the object's namespace (or cluster-wide for cluster-scoped
    /// `T`) whose labels match `selector` (`&Selector::default()` for all of them), from the
    /// watch cache as for [`get`](Self::get). The list reflects every write this operator's steps
    /// made to objects of `T` in that namespace.
    ///
    /// ```no_run
    /// # use staircase_runtime::*;
    /// # use k8s_openapi::api::core::v1::Pod;
    /// use kube::core::Selector;
    /// # async fn step(ctx: &Context) -> Result<Outcome> {
    /// let selector = Selector::from_iter([("app", "web")]);
    /// let pods = ctx.list::<Pod>(&selector).await?;
    /// # let _ = pods; Ok(Outcome::unchanged())
    /// # }
    /// ```
    pub async fn list<T>(&self, selector: &Selector) -> kube::Result<Vec<Arc<T>>>
    where
        T: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        T::Scope: ApiScope,
    {
        if let Some(cache) = &self.cache {
            match cache.list::<T>(self.namespace.as_deref(), selector).await {
                Ok(found) => {
                    if tape::active() {
                        self.tape_list(cache, selector, &found);
                    }
                    return Ok(found);
                }
                Err(Live::NoStore) => {}
                Err(why) => cache.live(&label_of(&T::plural(&()), &T::group(&())), why),
            }
        }
        let params = kube::api::ListParams::default().labels_from(selector);
        let list = self.api::<T>().list(&params).await?;
        Ok(list.items.into_iter().map(Arc::new).collect())
    }

    /// Records a read the cache answered in the run's recording, as the request
    /// [`get`](Self::get) sends without a cache.
    fn tape_get<T>(&self, cache: &Cache, name: &str, found: Option<&T>)
    where
        T: Resource<DynamicType = ()> + 'static,
        T::Scope: ApiScope,
    {
        let json = found.map(|o| {
            cache
                .json_of(o, self.namespace.as_deref(), name)
                .unwrap_or_default()
        });
        let url = self.api::<T>().resource_url().to_string();
        tape::cached_get(&url, name, &T::plural(&()), json);
    }

    /// [`tape_get`](Self::tape_get) for [`list`](Self::list).
    fn tape_list<T>(&self, cache: &Cache, selector: &Selector, found: &[Arc<T>])
    where
        T: Resource<DynamicType = ()> + 'static,
        T::Scope: ApiScope,
    {
        let items = found
            .iter()
            .map(|o| {
                let m = o.meta();
                let name = m.name.as_deref().unwrap_or_default();
                cache
                    .json_of(&**o, m.namespace.as_deref(), name)
                    .unwrap_or_default()
            })
            .collect();
        let url = self.api::<T>().resource_url().to_string();
        let params = kube::api::ListParams::default().labels_from(selector);
        let (api_version, kind) = (T::api_version(&()), T::kind(&()));
        tape::cached_list(&url, &params, (&api_version, &kind), items);
    }

    /// Records a modification made outside Kubernetes (a call to an external service), so the
    /// one-modification rule counts it like a write. `description` names the call for traces.
    pub fn record_external(&self, description: impl Into<String>) {
        record_current(Write {
            method: "EXTERNAL",
            path: description.into(),
            status: 200,
            resource_version: None,
            field_manager: None,
        });
    }

    /// Records an external call that failed without a known outcome (it may still land): not a
    /// modification, but the object does not run again until
    /// [`external_call_window`](crate::OperatorConfig::external_call_window) has passed, so the
    /// next run's lookup sees the call if it landed.
    pub(crate) fn record_external_unknown(&self, description: String) {
        record_current(Write {
            method: "EXTERNAL",
            path: description,
            status: 0,
            resource_version: None,
            field_manager: None,
        });
    }
}

/// How to build an [`Api`] for a resource scope; implemented for kube's scope markers.
pub trait ApiScope {
    /// An `Api` for `T` in `namespace` when namespaced, cluster-wide otherwise.
    fn api<T: Resource<DynamicType = (), Scope = Self>>(
        client: kube::Client,
        namespace: Option<&str>,
    ) -> Api<T>
    where
        Self: Sized;
}

impl ApiScope for k8s_openapi::NamespaceResourceScope {
    fn api<T: Resource<DynamicType = (), Scope = Self>>(
        client: kube::Client,
        namespace: Option<&str>,
    ) -> Api<T> {
        match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::default_namespaced(client),
        }
    }
}

impl ApiScope for k8s_openapi::ClusterResourceScope {
    fn api<T: Resource<DynamicType = (), Scope = Self>>(
        client: kube::Client,
        _: Option<&str>,
    ) -> Api<T> {
        Api::all(client)
    }
}
