//! The `Foo` operator: three children, one step each, and a cleanup step.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServicePort, ServiceSpec};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::{CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::Stairs;
use staircase::prelude::*;

/// The desired state of a `Foo`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "demo.staircase.rs",
    version = "v1",
    kind = "Foo",
    namespaced,
    status = "FooStatus",
    shortname = "foo",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
pub struct FooSpec {
    /// Written into the child ConfigMap.
    pub message: String,
    /// The port the child Service exposes.
    #[serde(default = "default_port")]
    pub port: i32,
}

fn default_port() -> i32 {
    8080
}

/// The status of a `Foo`: only what the runtime keeps (observedGeneration and conditions).
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq, StepStatus)]
pub struct FooStatus {
    /// Kept by staircase.
    #[serde(flatten)]
    pub steps: StepStatus,
}

/// Shared state of the operator.
#[derive(Debug, Clone, Default)]
pub struct App {
    /// Field manager used for every write, so ownership is visible in `managedFields`.
    pub manager: String,
}

fn child_meta(obj: &Foo, suffix: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(format!("{}-{suffix}", obj.name_any())),
        namespace: obj.namespace(),
        owner_references: obj.controller_owner_ref(&()).map(|o| vec![o]),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".into(),
            "foo-operator".into(),
        )])),
        ..Default::default()
    }
}

fn post(app: &App) -> PostParams {
    PostParams {
        field_manager: Some(app.manager.clone()),
        ..Default::default()
    }
}

/// The ConfigMap `<name>-config` exists and carries `spec.message`.
///
/// Reads go through `ctx.get`: from the operator's cache of the ConfigMaps it owns, never older
/// than its own last write to one; writes go through `ctx.api`.
#[step]
pub async fn ensure_config(obj: &Foo, ctx: &Context<App>) -> Result<Outcome> {
    let api = ctx.api::<ConfigMap>();
    let meta = child_meta(obj, "config");
    let name = meta.name.clone().unwrap_or_default();
    let want = BTreeMap::from([("message".to_string(), obj.spec.message.clone())]);
    match ctx.get::<ConfigMap>(&name).await? {
        None => {
            let cm = ConfigMap {
                metadata: meta,
                data: Some(want),
                ..Default::default()
            };
            api.create(&post(ctx.state()), &cm).await?;
            Ok(Outcome::modified(format!("created ConfigMap {name}")))
        }
        Some(cm) if cm.data.as_ref() != Some(&want) => {
            let patch = serde_json::json!({ "data": want });
            let pp = PatchParams {
                field_manager: Some(ctx.state().manager.clone()),
                ..Default::default()
            };
            api.patch(&name, &pp, &Patch::Merge(&patch)).await?;
            Ok(Outcome::modified(format!("updated ConfigMap {name}")))
        }
        Some(_) => Ok(Outcome::unchanged()),
    }
}

/// The Secret `<name>-token` exists. Its token is generated once and never rewritten.
///
/// Only its existence matters, so the operator caches the Secrets' metadata alone
/// (`owns_metadata`): their data never sits in the operator's memory.
#[step]
pub async fn ensure_secret(obj: &Foo, ctx: &Context<App>) -> Result<Outcome> {
    let api = ctx.api::<Secret>();
    let meta = child_meta(obj, "token");
    let name = meta.name.clone().unwrap_or_default();
    if ctx.get::<PartialObjectMeta<Secret>>(&name).await?.is_some() {
        return Ok(Outcome::unchanged());
    }
    // Derived from the uid, so a retried create after a crash would carry the same value.
    let token = format!("token-{}", obj.uid().unwrap_or_default());
    let secret = Secret {
        metadata: meta,
        string_data: Some(BTreeMap::from([("token".into(), token)])),
        ..Default::default()
    };
    api.create(&post(ctx.state()), &secret).await?;
    Ok(Outcome::modified(format!("created Secret {name}")))
}

/// The Service `<name>` exists and exposes `spec.port`.
#[step]
pub async fn ensure_service(obj: &Foo, ctx: &Context<App>) -> Result<Outcome> {
    let api = ctx.api::<Service>();
    let meta = child_meta(obj, "svc");
    let name = meta.name.clone().unwrap_or_default();
    let port = obj.spec.port;
    match ctx.get::<Service>(&name).await? {
        None => {
            let svc = Service {
                metadata: meta,
                spec: Some(ServiceSpec {
                    selector: Some(BTreeMap::from([("app".into(), obj.name_any())])),
                    ports: Some(vec![ServicePort {
                        name: Some("http".into()),
                        port,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            api.create(&post(ctx.state()), &svc).await?;
            Ok(Outcome::modified(format!("created Service {name}")))
        }
        Some(svc) => {
            let current = svc
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .and_then(|p| p.first().map(|p| p.port));
            if current == Some(port) {
                return Ok(Outcome::unchanged());
            }
            let patch =
                serde_json::json!({ "spec": { "ports": [{ "name": "http", "port": port }] } });
            let pp = PatchParams {
                field_manager: Some(ctx.state().manager.clone()),
                ..Default::default()
            };
            api.patch(&name, &pp, &Patch::Merge(&patch)).await?;
            Ok(Outcome::modified(format!(
                "set Service {name} port to {port}"
            )))
        }
    }
}

/// On deletion: remove the ConfigMap explicitly (garbage collection would too; this shows
/// a cleanup step doing one modification per run and reporting unchanged once done).
#[step]
pub async fn remove_config(obj: &Foo, ctx: &Context<App>) -> Result<Outcome> {
    let api = ctx.api::<ConfigMap>();
    let name = format!("{}-config", obj.name_any());
    match ctx.get::<ConfigMap>(&name).await? {
        Some(cm) if cm.metadata.deletion_timestamp.is_none() => {
            api.delete(&name, &Default::default()).await?;
            Ok(Outcome::modified(format!("deleted ConfigMap {name}")))
        }
        _ => Ok(Outcome::unchanged()),
    }
}

/// The Foo staircase: three children, then cleanup on deletion.
pub fn stairs() -> impl Reconciler<Foo, App> {
    staircase!(Foo => [ensure_config, ensure_secret, ensure_service], cleanup => [remove_config])
}

/// The Foo operator: the staircase, its status, and the three child kinds it owns (a child's
/// change runs its Foo; the steps read the children from these watches' caches).
pub fn operator(
    client: impl Into<staircase::OperatorClient>,
    app: App,
) -> Operator<Foo, App, impl Stairs<Foo, App>, impl Stairs<Foo, App>> {
    Operator::with_state(client, stairs(), app)
        .with_status()
        .owns::<ConfigMap>()
        .owns_metadata::<Secret>()
        .owns::<Service>()
}

/// The resource's `kind` for messages.
pub fn kind() -> String {
    Foo::kind(&()).to_string()
}

/// What [`demo`] saw: every run of the operator, in the order the runs ended.
#[derive(Debug)]
pub struct DemoOutcome {
    /// The Foos the demo created (and deleted again).
    pub names: Vec<String>,
    /// Each run's report; the demo also logs each at INFO.
    pub runs: Vec<RunReport>,
}

/// The demo of `cargo run --example demo`: installs the `Foo` CRD if it is missing, creates three
/// Foos in `namespace`, runs the operator until every one is Ready, deletes them again (their
/// cleanup step runs and the runtime removes its finalizer), and removes the CRD if it installed
/// it. Objects it did not create are left alone: a Foo of the same name makes it stop before it
/// writes anything.
pub async fn demo(client: kube::Client, namespace: &str) -> anyhow::Result<DemoOutcome> {
    use crate::harness;
    use anyhow::Context as _;

    let installed = harness::install_crd::<Foo>(&client).await?;
    let foos: Api<Foo> = Api::namespaced(client.clone(), namespace);
    let names: Vec<String> = ["alpha", "beta", "gamma"].map(String::from).into();
    if !installed {
        for name in &names {
            if foos.get_opt(name).await?.is_some() {
                anyhow::bail!(
                    "a Foo named {name} already exists in namespace {namespace}; the demo leaves \
                     it alone and stops (delete it, or run the demo elsewhere)"
                );
            }
        }
    }

    let runs: Arc<Mutex<Vec<RunReport>>> = Arc::default();
    let log = runs.clone();
    let app = App {
        manager: "foo-operator".into(),
    };
    let operator = operator(client.clone(), app)
        .with_config(OperatorConfig::default().with_namespace(namespace))
        .on_run(move |report| {
            tracing::info!("{report}");
            log.lock().expect("runs").push(report.clone());
        });
    let (stop, running) = harness::spawn_until_stopped(|stopped| {
        operator.run_until(async {
            stopped.await.ok();
        })
    });

    // Create the Foos and wait until each is Ready; whatever happens, delete what was created
    // while the operator still runs (its cleanup step and finalizer removal need it).
    let mut created = Vec::new();
    let converged = async {
        for (i, name) in names.iter().enumerate() {
            let spec = FooSpec {
                message: format!("hello from {name}"),
                port: 8080 + i as i32,
            };
            foos.create(&PostParams::default(), &Foo::new(name, spec))
                .await
                .with_context(|| format!("creating Foo {name}"))?;
            created.push(name.clone());
        }
        for name in &names {
            harness::wait(&foos, name, is_ready).await?;
        }
        tracing::info!("all {} Foos are Ready; deleting them", names.len());
        anyhow::Ok(())
    }
    .await;
    let cleaned = async {
        for name in &created {
            foos.delete(name, &Default::default()).await?;
        }
        for name in &created {
            harness::gone(&foos, name).await?;
        }
        anyhow::Ok(())
    }
    .await;
    stop.send(()).ok();
    running.await?;
    if installed {
        harness::remove_crd::<Foo>(&client).await?;
    }
    converged?;
    cleaned?;
    let runs = std::mem::take(&mut *runs.lock().expect("runs"));
    Ok(DemoOutcome { names, runs })
}

/// Whether a Foo exists and its `Ready` condition holds for its current generation.
pub fn is_ready(foo: Option<&Foo>) -> bool {
    foo.is_some_and(|f| {
        f.status
            .as_ref()
            .is_some_and(|s| s.steps.is_ready_at(f.metadata.generation))
    })
}
