//! Scenarios: initial objects plus a sequence of user actions, replayed identically in every
//! case of every variant.

use std::sync::Arc;

use futures::future::BoxFuture;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use staircase_runtime::ApiScope;

use super::actor::Actor;

type Custom = Arc<dyn Fn(kube::Client) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;
type Edit<K> = Arc<dyn Fn(&mut K) + Send + Sync>;

/// One thing the user does; the operator converges after each.
pub enum Action<K> {
    /// Create a primary object.
    Create(K),
    /// Read the named primary object, change it, write it back (a full update, as `kubectl edit`).
    Edit(String, Edit<K>),
    /// Delete the named primary object (the operator's cleanup runs behind its finalizer).
    Delete(String),
    /// Create any other object, given as JSON with `apiVersion` and `kind`.
    CreateOther(serde_json::Value),
    /// Anything else, through an admin client that no fault or crash touches.
    Custom(String, Custom),
}

impl<K> Clone for Action<K>
where
    K: Clone,
{
    fn clone(&self) -> Self {
        match self {
            Action::Create(k) => Action::Create(k.clone()),
            Action::Edit(n, f) => Action::Edit(n.clone(), f.clone()),
            Action::Delete(n) => Action::Delete(n.clone()),
            Action::CreateOther(v) => Action::CreateOther(v.clone()),
            Action::Custom(d, f) => Action::Custom(d.clone(), f.clone()),
        }
    }
}

impl<K: Resource> Action<K> {
    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            Action::Create(k) => format!("create {}", k.meta().name.as_deref().unwrap_or("?")),
            Action::Edit(n, _) => format!("edit {n}"),
            Action::Delete(n) => format!("delete {n}"),
            Action::CreateOther(v) => format!(
                "create {} {}",
                v["kind"].as_str().unwrap_or("?"),
                v["metadata"]["name"].as_str().unwrap_or("?")
            ),
            Action::Custom(d, _) => d.clone(),
        }
    }
}

/// Initial objects and user actions. Each action forms a *phase*: it is applied, then the
/// operator runs until everything converged, then the next action follows.
///
/// ```
/// # use staircase_testkit::explorer::Scenario;
/// # use kube::CustomResource;
/// # use schemars::JsonSchema;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
/// # #[kube(group = "example.com", version = "v1", kind = "Foo", namespaced)]
/// # pub struct FooSpec { message: String }
/// # fn foo(name: &str) -> Foo {
/// #     Foo::new(name, FooSpec { message: "hello".into() })
/// # }
/// Scenario::new("spec change")
///     .create(foo("a"))
///     .then_edit("a", |f: &mut Foo| f.spec.message = "changed".into())
///     .then_delete("a")
/// # ;
/// ```
pub struct Scenario<K> {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) actions: Vec<Action<K>>,
    pub(crate) actors: Vec<Actor>,
    /// Steps whose `Outcome::wait` settles a phase.
    pub(crate) accepted_waits: Vec<String>,
}

impl<K> Scenario<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    /// An empty scenario in namespace `default`.
    pub fn new(name: impl Into<String>) -> Self {
        Scenario {
            name: name.into(),
            namespace: "default".into(),
            actions: Vec::new(),
            actors: Vec::new(),
            accepted_waits: Vec::new(),
        }
    }

    /// The namespace every namespaced primary object lives in (created when it is not
    /// `default`); cluster-scoped primaries have none.
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = ns.into();
        self
    }

    /// Creates a primary object (its namespace is set to the scenario's).
    pub fn create(mut self, obj: K) -> Self {
        self.actions.push(Action::Create(obj));
        self
    }

    /// Same as [`Scenario::create`]; reads better after the first action.
    pub fn then_create(self, obj: K) -> Self {
        self.create(obj)
    }

    /// Changes the named primary object with `f` (read, modify, full update).
    pub fn then_edit(mut self, name: &str, f: impl Fn(&mut K) + Send + Sync + 'static) -> Self {
        self.actions.push(Action::Edit(name.into(), Arc::new(f)));
        self
    }

    /// Deletes the named primary object.
    pub fn then_delete(mut self, name: &str) -> Self {
        self.actions.push(Action::Delete(name.into()));
        self
    }

    /// Creates any object from JSON (e.g. a pre-existing ConfigMap the operator must adopt).
    pub fn given(mut self, obj: serde_json::Value) -> Self {
        self.actions.push(Action::CreateOther(obj));
        self
    }

    /// Any other action, run with an admin client no fault touches. Its default namespace is
    /// `default` on the embedded server and the case's own on a real server (where that stands
    /// in for the scenario's); `Api::default_namespaced` addresses the right one in a scenario
    /// without [`namespace`](Scenario::namespace). `describe` names it in reports; `f`
    /// must be deterministic so every case sees the same world. Several writes in one action
    /// make one phase: e.g. several objects created at once, which the controller then runs
    /// side by side.
    pub fn then<F, Fut>(mut self, describe: &str, f: F) -> Self
    where
        F: Fn(kube::Client) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.actions.push(Action::Custom(
            describe.into(),
            Arc::new(move |c| Box::pin(f(c))),
        ));
        self
    }

    /// Plays another actor of the cluster throughout the scenario (see [`Actor`]), e.g. a
    /// Deployment controller that makes the operator's Deployments available.
    /// [`Explorer::actor`](super::Explorer::actor) adds one to every scenario.
    pub fn with_actor(mut self, actor: Actor) -> Self {
        self.actors.push(actor);
        self
    }

    /// Lets an `Outcome::wait` of the step named `step` settle a phase: an object whose run ends
    /// waiting in that step counts as converged, and its end state is compared like any other.
    /// For a wait on something no [`Actor`] provides in the scenario (an approval, an external
    /// system); without it, a phase whose object still waits fails with "not converged: … waits:
    /// …". Applies to every phase of the scenario.
    pub fn accept_wait(mut self, step: &str) -> Self {
        self.accepted_waits.push(step.to_string());
        self
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Applies one action with the admin client.
pub(crate) async fn apply<K>(
    action: &Action<K>,
    client: &kube::Client,
    ns: &str,
) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::Scope: ApiScope,
{
    // Namespaced kinds get the scenario's namespace; cluster-scoped kinds ignore it.
    let api: Api<K> = <K::Scope as ApiScope>::api(client.clone(), Some(ns));
    match action {
        Action::Create(obj) => {
            let mut obj = obj.clone();
            // The URL names the namespace; a different one in the object would be rejected.
            obj.meta_mut().namespace = None;
            api.create(&PostParams::default(), &obj).await?;
        }
        Action::Edit(name, f) => {
            // The operator may write the object meanwhile only in the real-loop variants; a
            // conflict there is retried like any client would.
            loop {
                let mut obj = api.get(name).await?;
                f(&mut obj);
                match api.replace(name, &PostParams::default(), &obj).await {
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    r => {
                        r?;
                        break;
                    }
                }
            }
        }
        Action::Delete(name) => {
            api.delete(name, &DeleteParams::default()).await?;
        }
        Action::CreateOther(v) => {
            let obj: DynamicObject = serde_json::from_value(v.clone())?;
            let tm = obj
                .types
                .clone()
                .ok_or_else(|| anyhow::anyhow!("object without apiVersion/kind"))?;
            let gvk = GroupVersionKind::try_from(&tm)?;
            // The server knows the kind's plural and scope (a cluster-scoped kind has no
            // namespace to put it in).
            let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
            let api: Api<DynamicObject> = match (caps.scope, obj.namespace()) {
                (Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
                (_, Some(n)) => Api::namespaced_with(client.clone(), &n, &ar),
                (_, None) => Api::namespaced_with(client.clone(), ns, &ar),
            };
            api.create(&PostParams::default(), &obj).await?;
        }
        Action::Custom(_, f) => f(client.clone()).await?,
    }
    Ok(())
}
