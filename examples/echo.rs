//! The echo-server operator, in the style of roperator's showcase: an `EchoServer` wants a
//! Deployment running an echo image and a Service in front of it. One declarative children step
//! keeps both; a second step reports what the children do in the parent's status.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::children::{Observed, deployment_available, owned_watch_config};
use staircase::prelude::*;

/// The desired state of an `EchoServer`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "demo.staircase.rs",
    version = "v1",
    kind = "EchoServer",
    namespaced,
    status = "EchoServerStatus",
    shortname = "echo"
)]
#[serde(rename_all = "camelCase")]
pub struct EchoServerSpec {
    /// How many echo pods to run.
    pub replicas: i32,
    /// The port the Service exposes.
    #[serde(default = "default_port")]
    pub port: i32,
}

fn default_port() -> i32 {
    8080
}

/// What the operator reports about its children.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq, StepStatus)]
#[serde(rename_all = "camelCase")]
pub struct EchoServerStatus {
    /// Available replicas of the child Deployment, as its controller reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// The in-cluster address of the child Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Kept by staircase.
    #[serde(flatten)]
    pub steps: StepStatus,
}

/// The image the pods run.
pub const IMAGE: &str = "ealen/echo-server:0.9.2";

fn labels(echo: &EchoServer) -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/instance".into(), echo.name_any())])
}

/// The Deployment `<name>`: only the fields this operator means, everything else is left to the
/// server's defaults and to other actors.
pub fn desired_deployment(echo: &EchoServer) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some(echo.name_any()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(echo.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels(echo)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(echo)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "echo".into(),
                        image: Some(IMAGE.into()),
                        ports: Some(vec![ContainerPort {
                            container_port: 80,
                            // Part of the ports' list key for server-side apply: set it rather
                            // than rely on defaulting (older servers reject a port without it).
                            protocol: Some("TCP".into()),
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

/// The Service `<name>` in front of the pods.
pub fn desired_service(echo: &EchoServer) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(echo.name_any()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(echo)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: echo.spec.port,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(80)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Deployment and the Service exist as desired, and the Deployment has all replicas
/// available; hands the live children to the status step.
#[step]
pub async fn echo_children(echo: &EchoServer, ctx: &Context) -> Result<Outcome<Observed>> {
    Children::new(echo)
        .field_manager("echo-operator")
        .apply(desired_deployment(echo))
        .apply(desired_service(echo))
        .ready_when(deployment_available)
        // The operator's watch of its Deployments wakes the EchoServer when one becomes
        // available; looking again soon as well is a fallback for an operator without it.
        .recheck_after(Some(std::time::Duration::from_millis(300)))
        .sync_observed(ctx)
        .await
}

/// The status reports the children: available replicas and the Service's address.
#[step]
pub async fn report_status(
    echo: &EchoServer,
    ctx: &Context,
    children: &Observed,
) -> Result<Outcome> {
    let name = echo.name_any();
    let available = children
        .get::<Deployment>(&name)
        .and_then(|d| d.status)
        .and_then(|s| s.available_replicas);
    let url = children.get::<Service>(&name).map(|s| {
        format!(
            "http://{}.{}.svc:{}",
            s.name_any(),
            s.namespace().unwrap_or_default(),
            echo.spec.port
        )
    });
    let current = echo.status.clone().unwrap_or_default();
    if current.available_replicas == available && current.url == url {
        return Ok(Outcome::unchanged());
    }
    let patch = serde_json::json!({ "status": { "availableReplicas": available, "url": url } });
    ctx.api::<EchoServer>()
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(Outcome::modified(format!(
        "reported {} available replicas",
        available.unwrap_or(0)
    )))
}

/// The EchoServer staircase.
pub fn stairs() -> impl Reconciler<EchoServer, ()> {
    staircase!(EchoServer => [echo_children, report_status])
}

/// Plays the Deployment controller and the kubelet, which the embedded API server does not run:
/// every Deployment this operator owns gets all its replicas available. Runs until dropped.
pub async fn simulate_deployments(client: kube::Client, namespace: &str) {
    let api: Api<Deployment> = Api::namespaced(client, namespace);
    let mut events = watcher(api.clone(), owned_watch_config())
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let Ok(d) = event else { continue };
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        if status.available_replicas == Some(wanted)
            && status.observed_generation == d.metadata.generation
        {
            continue;
        }
        let patch = serde_json::json!({ "status": {
            "observedGeneration": d.metadata.generation,
            "replicas": wanted, "updatedReplicas": wanted, "readyReplicas": wanted, "availableReplicas": wanted,
        }});
        // A failure here is retried on the Deployment's next event, as a real controller would.
        let _ = api
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
    }
}

/// What the demo saw.
#[derive(Debug)]
pub struct DemoOutcome {
    /// Every run, as printed.
    pub trace: Vec<String>,
    /// The EchoServer at the end.
    pub echo: EchoServer,
}

/// The demo: installs the CRD, creates `EchoServer hello` with 2 replicas, runs the operator
/// (and the stand-in Deployment controller) until it is Ready and reports 2 available replicas,
/// then scales it to 3 and waits again.
pub async fn demo(client: kube::Client, quiet: bool) -> anyhow::Result<DemoOutcome> {
    use crate::harness;
    const NS: &str = "default";
    harness::install_crd::<EchoServer>(&client).await?;
    let api: Api<EchoServer> = Api::namespaced(client.clone(), NS);
    let echo = EchoServer::new(
        "hello",
        EchoServerSpec {
            replicas: 2,
            port: 8080,
        },
    );
    api.create(&Default::default(), &echo).await?;

    let simulator = tokio::spawn(simulate_deployments(client.clone(), NS));
    let trace = harness::Trace::default();
    // Owning the child kinds: a child's change runs its EchoServer, and the children step reads
    // the children from these watches' caches instead of listing them on every run.
    let op = Operator::new(client.clone(), stairs())
        .with_config(OperatorConfig::default().with_namespace(NS))
        .with_status()
        .owns::<Deployment>()
        .owns::<Service>()
        .on_run(harness::tracer(trace.clone(), quiet));
    let (stop, running) = harness::spawn_until_stopped(|stopped| {
        op.run_until(async {
            stopped.await.ok();
        })
    });

    let reports = |want: i32| {
        move |e: Option<&EchoServer>| {
            e.is_some_and(|e| {
                let s = e.status.as_ref();
                s.is_some_and(|s| {
                    s.steps.is_ready_at(e.metadata.generation) && s.available_replicas == Some(want)
                })
            })
        }
    };
    harness::wait(&api, "hello", reports(2)).await?;
    let scale = serde_json::json!({ "spec": { "replicas": 3 } });
    api.patch("hello", &PatchParams::default(), &Patch::Merge(&scale))
        .await?;
    harness::wait(&api, "hello", reports(3)).await?;

    stop.send(()).ok();
    running.await?;
    simulator.abort();
    let echo = api.get("hello").await?;
    let trace = trace.lock().expect("trace").clone();
    Ok(DemoOutcome { trace, echo })
}
