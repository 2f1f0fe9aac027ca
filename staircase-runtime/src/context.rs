//! What a step gets besides the resource: the client, the user's state, and facts about the run.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::Selector;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::cache::{Cache, Live, label_of};
use crate::replay::tape;
use crate::writes::{Write, record_current};
use crate::{Error, Result};

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
    /// Conditions steps set in this run, for the runtime's status write.
    conditions: std::sync::Mutex<Vec<Condition>>,
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
            conditions: std::sync::Mutex::default(),
        }
    }

    /// Sets a condition of your own in the object's status (with
    /// [`Operator::with_status`](crate::Operator::with_status)): the runtime writes it with its
    /// own conditions after the run, only when it changed, keeping `lastTransitionTime` while
    /// `status` stays the same. This is no write of the step's (the rule counts none) and, like
    /// every status write of the runtime, it may fail: no step may depend on reading it back.
    /// A condition set once stays until a step sets it again.
    ///
    /// ```
    /// # use staircase_runtime::*;
    /// # async fn step(ctx: &Context) -> Result<Outcome> {
    /// ctx.set_condition("DatabaseReady", true, "Provisioned", "the database answers")?;
    /// # Ok(Outcome::unchanged())
    /// # }
    /// ```
    ///
    /// Refused (a permanent error): a type the runtime keeps (`Ready`, `Progressing`, `Waiting`,
    /// `Failed`, `Paused`, `Fighting`, `Reconciling`, `Stalled`) and a type that is not a valid
    /// condition type (`[prefix/]CamelCase`, letters, digits, `.`, `-`, `_`). The reason is made
    /// valid the way the runtime's are.
    pub fn set_condition(
        &self,
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Result<()> {
        let name = type_.rsplit_once('/').map_or(type_, |(_, n)| n);
        let valid = !name.is_empty()
            && name.len() <= 316
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && type_
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'));
        if !valid {
            return Err(Error::permanent(anyhow::anyhow!(
                "{type_:?} is not a valid condition type (`[prefix/]CamelCase`)"
            )));
        }
        if crate::step_status::is_runtime_condition(type_) {
            return Err(Error::permanent(anyhow::anyhow!(
                "the condition type {type_:?} is kept by the runtime; name yours otherwise"
            )));
        }
        let c = Condition {
            type_: type_.to_string(),
            status: if status { "True" } else { "False" }.into(),
            reason: crate::step_status::reason(reason).into_owned(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        };
        let mut set = self.conditions.lock().unwrap_or_else(|e| e.into_inner());
        set.retain(|o| o.type_ != c.type_);
        set.push(c);
        Ok(())
    }

    /// The conditions steps set in this run.
    pub(crate) fn take_conditions(&self) -> Vec<Condition> {
        std::mem::take(&mut *self.conditions.lock().unwrap_or_else(|e| e.into_inner()))
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
