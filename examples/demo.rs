//! The staircase demo: the `Foo` operator converging a few objects, run by run.
//!
//! ```text
//! cargo run --example demo                      # against the embedded API server
//! cargo run --example demo -- --kubeconfig PATH # against a real cluster (or set KUBECONFIG)
//! ```
//!
//! It installs the `Foo` CRD, creates three `Foo`s, runs the operator until every one is Ready,
//! prints which step modified what in each run, and exits 0.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResourceExt, ResourceExt};
use staircase::prelude::*;
use staircase_examples::foo::{self, App, Foo, FooSpec};

const NAMESPACE: &str = "default";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let kubeconfig = kubeconfig_arg()?;
    // Keep the embedded server alive for the whole demo.
    let (client, _server, target) = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("reading kubeconfig {path}"))?;
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("kubeconfig {path} has no usable context"))?;
            let client =
                Client::try_from(config).context("building a client from the kubeconfig")?;
            (client, None, format!("the cluster in {path}"))
        }
        None => {
            let server = staircase_testkit::ApiServer::start().await?;
            let url = server.url().to_string();
            (
                server.client(),
                Some(server),
                format!("the embedded API server at {url}"),
            )
        }
    };
    println!("staircase demo against {target}");

    install_crd(&client).await?;
    let foos: Api<Foo> = Api::namespaced(client.clone(), NAMESPACE);
    let names = ["alpha", "beta", "gamma"];
    for (i, name) in names.iter().enumerate() {
        let foo = Foo::new(
            name,
            FooSpec {
                message: format!("hello from {name}"),
                port: 8080 + i as i32,
            },
        );
        match foos.create(&PostParams::default(), &foo).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                foos.delete(name, &DeleteParams::default()).await.ok();
                bail!(
                    "a Foo named {name} already exists in {NAMESPACE}; it was deleted, run the demo again"
                );
            }
            Err(e) => return Err(e).context("creating a Foo"),
        }
    }

    let trace: Arc<Mutex<Vec<RunReport>>> = Arc::default();
    let log = trace.clone();
    let operator = Operator::with_state(
        client.clone(),
        foo::stairs(),
        App {
            manager: "foo-operator".into(),
        },
    )
    .with_config(OperatorConfig::default().with_namespace(NAMESPACE))
    .with_status()
    .on_run(move |report| {
        println!("  {report}");
        log.lock().expect("trace").push(report.clone());
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Metrics and health while the demo runs (STAIRCASE_METRICS_ADDR picks the address).
    let addr = std::env::var("STAIRCASE_METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    println!("metrics on {url}/metrics, health on {url}/healthz and {url}/readyz");
    tokio::spawn(staircase::server::serve(
        listener,
        operator.metrics(),
        operator.health(),
    ));
    let running = tokio::spawn(operator.run_until(async {
        stopped.await.ok();
    }));

    for name in names {
        let ready = await_condition(foos.clone(), name, is_ready());
        tokio::time::timeout(Duration::from_secs(60), ready)
            .await
            .with_context(|| format!("{name} did not become Ready within 60s"))??;
    }
    stop.send(()).ok();
    running.await?;

    println!("\nall {} Foos are Ready:", names.len());
    for foo in foos.list(&Default::default()).await? {
        let status = foo.status.as_ref().map(|s| &s.steps);
        println!(
            "  {:<6} generation {} observedGeneration {:?}",
            foo.name_any(),
            foo.metadata.generation.unwrap_or_default(),
            status.and_then(|s| s.observed_generation)
        );
    }
    let trace = std::mem::take(&mut *trace.lock().expect("trace"));
    println!("\nper object, run by run:");
    for name in names {
        let key = format!("{NAMESPACE}/{name}");
        println!("  {name}:");
        for r in trace.iter().filter(|r| r.object == key) {
            let what = match &r.end {
                staircase::RunEnd::Modified { step, description } => {
                    format!("{step}: {description}")
                }
                other => format!("{other:?}"),
            };
            println!(
                "    run {:>3}: {what} ({} step(s), {} write(s))",
                r.run_id,
                r.steps.len(),
                r.step_writes()
            );
        }
    }
    println!("{} runs in total", trace.len());

    // Leave a real cluster as we found it.
    for name in names {
        foos.delete(name, &DeleteParams::default()).await.ok();
    }
    Ok(())
}

fn is_ready() -> impl kube::runtime::wait::Condition<Foo> {
    |foo: Option<&Foo>| {
        foo.is_some_and(|f| {
            f.status
                .as_ref()
                .is_some_and(|s| s.steps.is_ready_at(f.metadata.generation))
        })
    }
}

async fn install_crd(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Foo::crd();
    let name = crd.name_any();
    if crds.get_opt(&name).await?.is_none() {
        crds.create(&PostParams::default(), &crd)
            .await
            .context("installing the Foo CRD")?;
    }
    let established = await_condition(crds, &name, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .context("the Foo CRD was not Established within 30s")??;
    Ok(())
}

/// `--kubeconfig PATH`, else `KUBECONFIG`, else none (the embedded server).
fn kubeconfig_arg() -> anyhow::Result<Option<String>> {
    let mut args = std::env::args().skip(1);
    if let Some(a) = args.next() {
        match a.as_str() {
            "--kubeconfig" => {
                return args.next().map(Some).context("--kubeconfig needs a path");
            }
            "-h" | "--help" => {
                println!(
                    "usage: demo [--kubeconfig PATH]  (default: KUBECONFIG, else the embedded API server)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; try --help"),
        }
    }
    Ok(std::env::var("KUBECONFIG").ok().filter(|s| !s.is_empty()))
}
