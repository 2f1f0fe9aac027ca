//! The webapp workload (issue #21): a `WebApp` custom resource whose operator keeps a
//! ConfigMap, a Deployment and a Service, reports `observedGeneration`, a `Ready` condition and
//! `availableReplicas` in its status, and on deletion removes an external record (a ConfigMap in
//! [`RECORDS_NAMESPACE`]) behind a finalizer.
//!
//! - [`staircase_op`]: the operator as a staircase, as the README teaches it;
//! - [`kube_op`]: the operator as an idiomatic `kube::runtime::Controller`;
//! - `bench/webapp-go/`: the operator on controller-runtime (Go), built by its `build.sh`;
//! - [`driver`]: the benchmark that runs each of them as its own process against the
//!   `staircase-apiserver` binary, with [`kubelet`] making Deployments available.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, PodSpec,
    PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::prelude::StepStatus;

pub mod driver;
pub mod kube_op;
pub mod plot;
pub mod staircase_op;

/// The namespace of the external records.
pub const RECORDS_NAMESPACE: &str = "webapp-records";

/// The finalizer of the kube-runtime and controller-runtime variants (the staircase's runtime
/// manages its own).
pub const FINALIZER: &str = "bench.staircase.rs/external-record";

/// A web application: a Deployment of `image` with `replicas`, its configuration in a
/// ConfigMap, and a Service in front.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "bench.staircase.rs",
    version = "v1",
    kind = "WebApp",
    namespaced,
    status = "WebAppStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct WebAppSpec {
    /// The container image.
    pub image: String,
    /// Wanted replicas.
    pub replicas: i32,
    /// The configuration, as the ConfigMap's data.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// `observedGeneration` and the conditions (the staircase's runtime keeps `Ready`,
/// `Progressing`, `Waiting` and `Failed`; the peers `Ready`), and `availableReplicas`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq, StepStatus)]
#[serde(rename_all = "camelCase")]
pub struct WebAppStatus {
    /// The Deployment's available replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// `observedGeneration` and `conditions`.
    #[serde(flatten)]
    pub steps: StepStatus,
}

impl WebApp {
    /// Whether the status says ready at the current generation with every replica available:
    /// what the driver waits for, for every variant alike.
    pub fn is_ready(&self) -> bool {
        let Some(s) = &self.status else { return false };
        s.steps.observed_generation.is_some()
            && s.steps.observed_generation == self.metadata.generation
            && s.available_replicas == Some(self.spec.replicas)
            && s.steps
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    }
}

/// The labels of a WebApp's children (and the Deployment's selector).
pub fn labels(app: &WebApp) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "webapp".into()),
        ("app.kubernetes.io/instance".into(), app.name_any()),
    ])
}

/// The name of the ConfigMap.
pub fn config_map_name(app: &WebApp) -> String {
    format!("{}-config", app.name_any())
}

/// The name of the external record.
pub fn record_name(app: &WebApp) -> String {
    format!("{}.{}", app.namespace().unwrap_or_default(), app.name_any())
}

/// The desired ConfigMap (no owner reference; each variant sets it its own way).
pub fn desired_config_map(app: &WebApp) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(app)),
            labels: Some(labels(app)),
            ..Default::default()
        },
        data: Some(app.spec.config.clone()),
        ..Default::default()
    }
}

/// The desired Deployment.
pub fn desired_deployment(app: &WebApp) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some(app.name_any()),
            labels: Some(labels(app)),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(app.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels(app)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(app)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "web".into(),
                        image: Some(app.spec.image.clone()),
                        ports: Some(vec![ContainerPort {
                            name: Some("http".into()),
                            container_port: 8080,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
                        env_from: Some(vec![EnvFromSource {
                            config_map_ref: Some(ConfigMapEnvSource {
                                name: config_map_name(app),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The desired Service.
pub fn desired_service(app: &WebApp) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(app.name_any()),
            labels: Some(labels(app)),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(app)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(8080)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The operators' settings, from the environment the driver gives them: `WEBAPP_RESYNC_S`
/// (resync period, s) and `WEBAPP_CONCURRENCY` (concurrent reconciles).
pub fn env_settings() -> (std::time::Duration, u16) {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    (
        std::time::Duration::from_secs(var("WEBAPP_RESYNC_S").unwrap_or(600)),
        var("WEBAPP_CONCURRENCY").unwrap_or(16) as u16,
    )
}

/// Plays the Deployment controller and the kubelet (the embedded API server runs neither):
/// every Deployment in `namespace` gets its wanted replicas available, its status patched
/// once per generation. The same for every variant. Runs until dropped.
pub async fn kubelet(client: kube::Client, namespace: String) {
    let api: Api<Deployment> = Api::namespaced(client, &namespace);
    let mut events = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let Ok(d) = event else { continue };
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        if status.available_replicas == Some(wanted)
            && status.updated_replicas == Some(wanted)
            && status.observed_generation == d.metadata.generation
        {
            continue;
        }
        let patch = serde_json::json!({ "status": {
            "observedGeneration": d.metadata.generation,
            "replicas": wanted, "updatedReplicas": wanted, "readyReplicas": wanted,
            "availableReplicas": wanted,
        }});
        let api = api.clone();
        let name = d.name_any();
        // Not awaited in line: one slow patch must not hold up the others.
        tokio::spawn(async move {
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        });
    }
}
