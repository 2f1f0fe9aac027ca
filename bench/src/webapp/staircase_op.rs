//! The WebApp operator as a staircase, written as the README and the guide teach it: the
//! `Children` step keeps the ConfigMap, the Deployment and the Service (waiting until the
//! Deployment is available), a step reports `availableReplicas`, the runtime keeps
//! `observedGeneration` and the conditions (`with_status`), and a cleanup step removes the
//! external record before the runtime removes its finalizer. Defaults otherwise.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use staircase::Stairs;
use staircase::children::{Observed, deployment_available};
use staircase::prelude::*;

use super::{
    RECORDS_NAMESPACE, WebApp, desired_config_map, desired_deployment, desired_service, record_name,
};

/// The ConfigMap, the Deployment and the Service; `wait` until the Deployment is available.
#[step]
pub async fn webapp_children(app: &WebApp, ctx: &Context) -> Result<Outcome<Observed>> {
    Children::new(app)
        .field_manager("webapp-operator")
        .apply(desired_config_map(app))
        .apply(desired_deployment(app))
        .apply(desired_service(app))
        .ready_when(deployment_available)
        .sync_observed(ctx)
        .await
}

/// `status.availableReplicas` is the Deployment's.
#[step]
pub async fn report_available(app: &WebApp, ctx: &Context, children: &Observed) -> Result<Outcome> {
    let available = children
        .get::<Deployment>(&app.name_any())
        .and_then(|d| d.status)
        .and_then(|s| s.available_replicas);
    if app.status.as_ref().and_then(|s| s.available_replicas) == available {
        return Ok(Outcome::unchanged());
    }
    let patch = serde_json::json!({ "status": { "availableReplicas": available } });
    ctx.api::<WebApp>()
        .patch_status(
            &app.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Outcome::modified(format!(
        "reported {} available replicas",
        available.unwrap_or(0)
    )))
}

/// On deletion: the external record is gone.
#[step]
pub async fn remove_record(app: &WebApp, ctx: &Context) -> Result<Outcome> {
    let records: Api<ConfigMap> = Api::namespaced(ctx.client().clone(), RECORDS_NAMESPACE);
    let name = record_name(app);
    match records.get_opt(&name).await? {
        Some(_) => {
            records.delete(&name, &Default::default()).await?;
            Ok(Outcome::modified(format!("removed external record {name}")))
        }
        None => Ok(Outcome::unchanged()),
    }
}

/// The WebApp staircase.
pub fn stairs() -> impl Reconciler<WebApp, ()> {
    staircase!(WebApp => [webapp_children, report_available], cleanup => [remove_record])
}

/// Runs the operator until SIGTERM or Ctrl-C, with the settings from the environment.
pub async fn main(client: kube::Client) {
    let (resync, concurrency) = super::env_settings();
    operator(client, resync, concurrency).run().await;
}

/// The operator: the staircase, its status, the three child kinds it owns.
pub fn operator(
    client: kube::Client,
    resync: std::time::Duration,
    concurrency: u16,
) -> Operator<WebApp, (), impl Stairs<WebApp, ()>, impl Stairs<WebApp, ()>> {
    Operator::new(client, stairs())
        .with_config(
            OperatorConfig::default()
                .with_resync(resync)
                .with_concurrency(concurrency),
        )
        .with_status()
        .owns::<ConfigMap>()
        .owns::<Deployment>()
        .owns::<Service>()
}
