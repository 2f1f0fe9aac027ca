//! Other actors of the cluster: controllers the embedded server does not run (a Deployment's
//! controller, a kubelet, a user approving something), played by the explorer while the
//! operator runs, identically in every case.

use std::fmt::Debug;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

type React =
    Arc<dyn Fn(kube::Client, Value) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// Another actor of the cluster, played by the explorer: a simulated controller that reacts to
/// the objects of one kind while the operator runs (the embedded API server stores objects but
/// runs no controllers, so nothing else would ever make a Deployment available).
///
/// The explorer shows the actor every object of its kind, in every namespace, whenever the
/// server changed since it last did: in the stepwise variants before each run of the operator
/// (so every case replays it at the same points), in the controller-loop variants whenever the
/// explorer looks at the world (after each run report, at least every 25 ms). Its requests go
/// through the explorer's own client, which no fault, crash or lost answer touches, and its
/// writes are not the operator's (no crash points, not counted by the one-write rule). A phase
/// has settled only once the actors too have nothing left to do.
///
/// An actor must be deterministic and idempotent — given the same object, it does the same
/// thing, and nothing once the object is as it wants it — so every case sees the same world.
///
/// ```
/// use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
/// use staircase_testkit::explorer::Actor;
///
/// // "When a Deployment exists, all its replicas become available."
/// let deployments = Actor::status("deployment controller", |d: &Deployment| {
///     let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
///     Some(DeploymentStatus {
///         observed_generation: d.metadata.generation,
///         replicas: Some(wanted),
///         updated_replicas: Some(wanted),
///         ready_replicas: Some(wanted),
///         available_replicas: Some(wanted),
///         ..Default::default()
///     })
/// });
/// ```
#[derive(Clone)]
pub struct Actor {
    pub(crate) name: String,
    pub(crate) resource: ApiResource,
    react: React,
}

impl Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor")
            .field("name", &self.name)
            .field("kind", &self.resource.kind)
            .finish_non_exhaustive()
    }
}

impl Actor {
    /// An actor that reacts to each object of kind `T` with `react(client, object)`, an async
    /// function free to read and write anything through `client` (the explorer's own client,
    /// which no fault touches). `name` appears in reports.
    pub fn new<T, F, Fut>(name: &str, react: F) -> Self
    where
        T: Resource<DynamicType = ()> + DeserializeOwned + Send + 'static,
        F: Fn(kube::Client, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let react = Arc::new(react);
        Actor {
            name: name.into(),
            resource: ApiResource::erase::<T>(&()),
            react: Arc::new(move |client, v| {
                let react = react.clone();
                Box::pin(async move {
                    let obj: T = serde_json::from_value(v)?;
                    react(client, obj).await
                })
            }),
        }
    }

    /// An actor that keeps the status of each object of kind `T` as `status(object)` says,
    /// through the status subresource (a JSON merge patch of `{"status": ..}`, sent only when it
    /// would change the status). `None` leaves the object alone. This is how a controller
    /// reports on what it runs: a Deployment's available replicas, a Job's completion.
    pub fn status<T, S, F>(name: &str, status: F) -> Self
    where
        T: Resource<DynamicType = ()> + DeserializeOwned + Send + 'static,
        S: Serialize,
        F: Fn(&T) -> Option<S> + Send + Sync + 'static,
    {
        let status = Arc::new(status);
        let ar = ApiResource::erase::<T>(&());
        let react = move |client: kube::Client, raw: Value| {
            let status = status.clone();
            let ar = ar.clone();
            Box::pin(async move {
                let obj: T = serde_json::from_value(raw.clone())?;
                let Some(want) = status(&obj) else {
                    return Ok(());
                };
                let want = serde_json::to_value(want)?;
                let current = raw.get("status").cloned().unwrap_or(Value::Null);
                let mut merged = current.clone();
                merge(&mut merged, &want);
                if merged == current {
                    return Ok(());
                }
                let api: Api<DynamicObject> = match obj.namespace() {
                    Some(ns) => Api::namespaced_with(client, &ns, &ar),
                    None => Api::all_with(client, &ar),
                };
                api.patch_status(
                    &obj.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&serde_json::json!({ "status": want })),
                )
                .await?;
                Ok(())
            }) as BoxFuture<'static, anyhow::Result<()>>
        };
        Actor {
            name: name.into(),
            resource: ApiResource::erase::<T>(&()),
            react: Arc::new(react),
        }
    }

    /// The Deployment controller and the kubelet, as far as an operator waiting for a
    /// Deployment can tell: every Deployment gets all the replicas its spec asks for (1 when it
    /// names none) updated, ready and available, at its current generation
    /// (`observedGeneration`, `replicas`, `updatedReplicas`, `readyReplicas`,
    /// `availableReplicas`). [`deployment_available`](staircase_runtime::children::deployment_available)
    /// holds for it from then on.
    pub fn deployment_controller() -> Self {
        Actor::status("deployment controller", |d: &Deployment| {
            // Read through JSON: `spec` is optional up to Kubernetes 1.36 and required from
            // 1.37 on in k8s-openapi, and the version is the final binary's choice.
            let replicas = serde_json::to_value(&d.spec)
                .ok()
                .and_then(|spec| spec.get("replicas")?.as_i64());
            let wanted = replicas.map_or(1, |r| r as i32);
            Some(DeploymentStatus {
                observed_generation: d.metadata.generation,
                replicas: Some(wanted),
                updated_replicas: Some(wanted),
                ready_replicas: Some(wanted),
                available_replicas: Some(wanted),
                ..Default::default()
            })
        })
    }

    /// The actor's name, as reports show it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// RFC 7386 merge of `patch` into `target`.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// The actors of one case, with what they last saw.
pub(crate) struct Stage {
    actors: Vec<Actor>,
    /// The server's resourceVersion when the actors last found nothing to do.
    quiet_at: Option<u64>,
}

/// How many rounds over every actor a pass may take before it counts as a loop: an actor (or
/// two) that keeps writing never lets a phase settle.
const MAX_ROUNDS: usize = 50;

impl Stage {
    pub(crate) fn new(actors: Vec<Actor>) -> Self {
        Stage {
            actors,
            quiet_at: None,
        }
    }

    /// Shows every actor every object of its kind, again until a round changes nothing on the
    /// server (an actor may react to another's write). `version` reads the server's current
    /// resourceVersion. Returns whether anything changed; skips the lists when nothing changed
    /// since the actors last looked.
    pub(crate) async fn play(
        &mut self,
        client: &kube::Client,
        version: impl Fn() -> u64,
    ) -> anyhow::Result<bool> {
        if self.actors.is_empty() || self.quiet_at == Some(version()) {
            return Ok(false);
        }
        let mut changed = false;
        for _ in 0..MAX_ROUNDS {
            let before = version();
            for actor in &self.actors {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &actor.resource);
                let mut objs = api.list(&ListParams::default()).await?.items;
                objs.sort_by_key(|o| (o.metadata.namespace.clone(), o.name_any()));
                for o in objs {
                    let what = format!(
                        "{} {}",
                        actor.resource.kind,
                        match o.namespace() {
                            Some(ns) => format!("{ns}/{}", o.name_any()),
                            None => o.name_any(),
                        }
                    );
                    let mut v = serde_json::to_value(&o)?;
                    v["apiVersion"] = Value::String(actor.resource.api_version.clone());
                    v["kind"] = Value::String(actor.resource.kind.clone());
                    (actor.react)(client.clone(), v).await.map_err(|e| {
                        anyhow::anyhow!("actor {:?} failed on {what}: {e:#}", actor.name)
                    })?;
                }
            }
            if version() == before {
                self.quiet_at = Some(before);
                return Ok(changed);
            }
            changed = true;
        }
        let names: Vec<&str> = self.actors.iter().map(|a| a.name.as_str()).collect();
        anyhow::bail!(
            "the actors ({}) kept writing for {MAX_ROUNDS} rounds: an actor must do nothing once \
             the world is as it wants it",
            names.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patches_like_rfc_7386() {
        let mut t = serde_json::json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge(
            &mut t,
            &serde_json::json!({"b": {"c": 5, "d": null}, "e": [1]}),
        );
        assert_eq!(t, serde_json::json!({"a": 1, "b": {"c": 5}, "e": [1]}));
        let mut n = Value::Null;
        merge(&mut n, &serde_json::json!({"x": 1}));
        assert_eq!(n, serde_json::json!({"x": 1}));
    }
}
