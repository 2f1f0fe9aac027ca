//! How an existing child is brought back to what the parent wants, and when a child counts as
//! ready.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::batch::v1::Job;
use kube::api::DynamicObject;
use serde::de::DeserializeOwned;

/// What the children step does with a child that exists but differs from what the parent wants.
/// Missing children are always created and unwanted ones always pruned; the strategy only governs
/// existing ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Server-side apply the desired fields onto the live object (one write). The default.
    #[default]
    InPlace,
    /// Server-side apply like `InPlace`; when the API server refuses the change as immutable
    /// (`422 Invalid` for a field that cannot change once created: a Job's template, a
    /// Deployment's selector, a ConfigMap marked `immutable`), delete the child in this run and
    /// create it in a later one. The delete uses `propagationPolicy: Foreground`, so what the
    /// child owns (a Job's pods, a Deployment's ReplicaSets) goes with it instead of being
    /// orphaned, and the step waits while the old object is terminating, so the two never
    /// coexist. A change the server accepts in place (a Deployment's `replicas` set by an HPA
    /// or `kubectl scale`) never deletes the child.
    Recreate,
    /// Never touch an existing child: it is replaced only when someone deletes it (like a
    /// StatefulSet's `OnDelete`). Creation and pruning still happen.
    OnDelete,
}

/// Whether a child is ready, as judged by a readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The child does its job.
    Ready,
    /// The child is not ready yet; the reason is shown in the parent's `Waiting` condition.
    NotReady(Cow<'static, str>),
}

/// A readiness check on the live child, erased to `DynamicObject` so checks of any kinds share
/// one map.
pub(crate) type ReadyCheck = Arc<dyn Fn(&DynamicObject) -> Readiness + Send + Sync>;

/// Wraps a typed check. A child that does not deserialize as `T` is reported not ready rather than
/// failing the run: the next change to it triggers another look.
pub(crate) fn erase<T, F>(check: F) -> ReadyCheck
where
    T: DeserializeOwned,
    F: Fn(&T) -> Readiness + Send + Sync + 'static,
{
    Arc::new(move |obj: &DynamicObject| {
        match serde_json::to_value(obj).and_then(serde_json::from_value::<T>) {
            Ok(typed) => check(&typed),
            Err(e) => Readiness::NotReady(format!("cannot read it: {e}").into()),
        }
    })
}

/// `spec` of a workload, optional in Kubernetes up to 1.36 and required from 1.37 on: the
/// version is the final binary's choice (a k8s-openapi feature), so this crate reads both.
trait SpecOf<T> {
    fn spec_ref(&self) -> Option<&T>;
}

impl<T> SpecOf<T> for Option<T> {
    fn spec_ref(&self) -> Option<&T> {
        self.as_ref()
    }
}

#[allow(dead_code)] // used with k8s-openapi's v1_37 and later only
impl SpecOf<DeploymentSpec> for DeploymentSpec {
    fn spec_ref(&self) -> Option<&DeploymentSpec> {
        Some(self)
    }
}

#[allow(dead_code)] // used with k8s-openapi's v1_37 and later only
impl SpecOf<StatefulSetSpec> for StatefulSetSpec {
    fn spec_ref(&self) -> Option<&StatefulSetSpec> {
        Some(self)
    }
}

/// A Deployment is ready when its controller has seen the current generation and every wanted
/// replica is updated and available.
pub fn deployment_available(d: &Deployment) -> Readiness {
    let wanted = d.spec.spec_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let generation = d.metadata.generation.unwrap_or(0);
    // Counts from before the controller saw the latest spec describe the old pods.
    if status.observed_generation.unwrap_or(0) < generation {
        return Readiness::NotReady(
            format!("{available}/{wanted} replicas available, generation {generation} not yet seen by its controller")
                .into(),
        );
    }
    if updated < wanted || available < wanted {
        return Readiness::NotReady(format!("{available}/{wanted} replicas available").into());
    }
    Readiness::Ready
}

/// A StatefulSet is ready when every wanted replica is ready at the current revision.
pub fn statefulset_ready(s: &StatefulSet) -> Readiness {
    let wanted = s.spec.spec_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = s.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < s.metadata.generation.unwrap_or(0)
        || ready < wanted
    {
        return Readiness::NotReady(format!("{ready}/{wanted} replicas ready").into());
    }
    Readiness::Ready
}

/// A Job is ready when it has completed successfully.
pub fn job_complete(j: &Job) -> Readiness {
    let complete = j
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        });
    if complete {
        Readiness::Ready
    } else {
        Readiness::NotReady("not complete".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn deployment(replicas: i32, available: i32, observed: i64) -> Deployment {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                updated_replicas: Some(available),
                available_replicas: Some(available),
                ..Default::default()
            }),
            ..Default::default()
        };
        d.metadata.generation = Some(2);
        d
    }

    #[test]
    fn a_deployment_is_ready_only_with_all_replicas_available_at_its_generation() {
        assert_eq!(deployment_available(&deployment(2, 2, 2)), Readiness::Ready);
        assert_eq!(
            deployment_available(&deployment(2, 1, 2)),
            Readiness::NotReady("1/2 replicas available".into())
        );
        assert!(matches!(
            deployment_available(&deployment(2, 2, 1)),
            Readiness::NotReady(_)
        ));
    }
}
