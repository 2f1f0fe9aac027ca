//! The WebApp operator as an idiomatic `kube::runtime::Controller`: the controller's reflector
//! store of WebApps, server-side apply of every desired child on every reconcile (the Deployment's
//! status read from the apply's answer), a status patch when the status changed, the finalizer
//! from `kube::runtime::finalizer`, and a requeue after the resync period.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::{
    FINALIZER, RECORDS_NAMESPACE, WebApp, WebAppStatus, desired_config_map, desired_deployment,
    desired_service, record_name,
};

const MANAGER: &str = "webapp-kube";

struct Ctx {
    client: kube::Client,
    resync: Duration,
}

type Error = kube::runtime::finalizer::Error<kube::Error>;

async fn reconcile(app: Arc<WebApp>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = app.namespace().unwrap_or_default();
    let api: Api<WebApp> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, app, |event| async {
        match event {
            Event::Apply(app) => apply(&app, &ctx).await,
            Event::Cleanup(app) => cleanup(&app, &ctx).await,
        }
    })
    .await
}

/// Sets `cond` in `conditions`, keeping the transition time when its status did not change
/// (what `meta.SetStatusCondition` does in Go).
fn set_condition(conditions: &mut Vec<Condition>, mut cond: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(c) => {
            if c.status == cond.status {
                cond.last_transition_time = c.last_transition_time.clone();
            }
            *c = cond;
        }
        None => conditions.push(cond),
    }
}

async fn apply(app: &WebApp, ctx: &Ctx) -> Result<Action, kube::Error> {
    let ns = app.namespace().unwrap_or_default();
    let client = &ctx.client;
    let pp = PatchParams::apply(MANAGER).force();
    let owner = app.controller_owner_ref(&()).map(|o| vec![o]);

    let mut cm = desired_config_map(app);
    cm.metadata.owner_references = owner.clone();
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .patch(&cm.name_any(), &pp, &Patch::Apply(&cm))
        .await?;
    let mut dep = desired_deployment(app);
    dep.metadata.owner_references = owner.clone();
    let dep = Api::<Deployment>::namespaced(client.clone(), &ns)
        .patch(&dep.name_any(), &pp, &Patch::Apply(&dep))
        .await?;
    let mut svc = desired_service(app);
    svc.metadata.owner_references = owner;
    Api::<Service>::namespaced(client.clone(), &ns)
        .patch(&svc.name_any(), &pp, &Patch::Apply(&svc))
        .await?;

    let want = app.spec.replicas;
    let ds = dep.status.clone().unwrap_or_default();
    let available = ds.available_replicas.unwrap_or(0);
    let ready = ds.observed_generation.unwrap_or(0) >= dep.metadata.generation.unwrap_or(0)
        && ds.updated_replicas.unwrap_or(0) >= want
        && available >= want;
    let old = app.status.clone().unwrap_or_default();
    let mut status = WebAppStatus {
        available_replicas: Some(available),
        ..old.clone()
    };
    status.steps.observed_generation = app.metadata.generation;
    let (s, reason, message) = if ready {
        (
            "True",
            "Available",
            "the Deployment is available".to_string(),
        )
    } else {
        (
            "False",
            "DeploymentNotAvailable",
            format!("{available}/{want} replicas available"),
        )
    };
    set_condition(
        &mut status.steps.conditions,
        Condition {
            type_: "Ready".into(),
            status: s.into(),
            reason: reason.into(),
            message,
            observed_generation: app.metadata.generation,
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
        },
    );
    if status != old {
        let patch = serde_json::json!({ "status": status });
        Api::<WebApp>::namespaced(client.clone(), &ns)
            .patch_status(
                &app.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    Ok(Action::requeue(ctx.resync))
}

async fn cleanup(app: &WebApp, ctx: &Ctx) -> Result<Action, kube::Error> {
    let records: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), RECORDS_NAMESPACE);
    match records
        .delete(&record_name(app), &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e),
    }
    Ok(Action::await_change())
}

fn error_policy(app: Arc<WebApp>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    eprintln!("reconcile of {} failed: {error:?}", app.name_any());
    Action::requeue(Duration::from_secs(1))
}

/// Runs the operator until SIGTERM or Ctrl-C, with the settings from the environment.
pub async fn main(client: kube::Client) {
    let (resync, concurrency) = super::env_settings();
    run(client, resync, concurrency, None).await;
}

/// Runs the operator until SIGTERM or Ctrl-C, or until `stop` (when given) completes.
pub async fn run(
    client: kube::Client,
    resync: Duration,
    concurrency: u16,
    stop: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>>,
) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        resync,
    });
    let wc = watcher::Config::default();
    let mut controller = Controller::new(Api::<WebApp>::all(client.clone()), wc.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), wc.clone())
        .owns(Api::<Deployment>::all(client.clone()), wc.clone())
        .owns(Api::<Service>::all(client.clone()), wc)
        .with_config(Config::default().concurrency(concurrency))
        .shutdown_on_signal();
    if let Some(stop) = stop {
        controller = controller.graceful_shutdown_on(stop);
    }
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
