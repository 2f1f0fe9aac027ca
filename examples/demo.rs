//! The staircase demo: the `Foo` operator (`examples/foo.rs`) converging three objects, run by
//! run, then cleaning up.
//!
//! ```text
//! cargo run --example demo                          # against an embedded API server
//! cargo run --example demo -- --kubeconfig PATH     # against the cluster of PATH's current context
//! ```
//!
//! Without `--kubeconfig` it starts an in-process API server and touches nothing else (`KUBECONFIG`
//! is not read). With it, it names the cluster before writing, installs the `Foo` CRD if missing,
//! creates three Foos in `default`, waits until each is Ready, deletes them, and deletes the CRD
//! again if it installed it (the Events the operator published expire on their own). Each run is
//! logged at INFO (`RUST_LOG` changes the filter); a per-object summary follows.

use anyhow::{Context as _, bail};
use staircase::RunEnd;
use staircase_examples::foo;

const NAMESPACE: &str = "default";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,staircase_runtime=info,staircase_examples=info".into()),
        )
        .with_target(false)
        .init();

    // Keep the embedded server alive for the whole demo.
    let (client, _server) = match kubeconfig_arg()? {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("reading kubeconfig {path}"))?;
            let context = kc.current_context.clone().unwrap_or_default();
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("kubeconfig {path} has no usable context"))?;
            println!(
                "staircase demo against the cluster at {} (context {context:?} of {path}), \
                 namespace {NAMESPACE}",
                config.cluster_url
            );
            let client =
                kube::Client::try_from(config).context("building a client from the kubeconfig")?;
            (client, None)
        }
        None => {
            let server = staircase_testkit::ApiServer::start().await?;
            println!(
                "staircase demo against an embedded API server at {} (use --kubeconfig PATH for a real cluster)",
                server.url()
            );
            (server.client(), Some(server))
        }
    };

    let out = foo::demo(client, NAMESPACE).await?;

    println!("\nper object, run by run:");
    for name in &out.names {
        println!("  {name}:");
        let key = format!("{NAMESPACE}/{name}");
        for r in out.runs.iter().filter(|r| r.object == key) {
            let what = match &r.end {
                RunEnd::Modified { step, description } => format!("{step}: {description}"),
                RunEnd::Converged => "converged: every step unchanged".into(),
                RunEnd::FinalizerAdded => "finalizer added".into(),
                RunEnd::FinalizerRemoved => "cleanup finished, finalizer removed".into(),
                other => format!("{other:?}"),
            };
            let deleting = if r.deleting { " (deleting)" } else { "" };
            println!("    run {:>3}{deleting}: {what}", r.run_id);
        }
    }
    println!(
        "{} runs: every Foo became Ready, then was deleted again (the CRD too, if the demo installed it)",
        out.runs.len()
    );
    Ok(())
}

/// `--kubeconfig PATH`, else none (the embedded server).
fn kubeconfig_arg() -> anyhow::Result<Option<String>> {
    let mut args = std::env::args().skip(1);
    let Some(a) = args.next() else {
        return Ok(None);
    };
    match a.as_str() {
        "--kubeconfig" => {
            let path = args.next().context("--kubeconfig needs a path")?;
            if let Some(extra) = args.next() {
                bail!("unexpected argument {extra:?}; try --help");
            }
            Ok(Some(path))
        }
        "-h" | "--help" => {
            println!(
                "usage: demo [--kubeconfig PATH]\n\n\
                 Without --kubeconfig: an embedded API server (KUBECONFIG is not read).\n\
                 With it: the current context of PATH; the demo removes what it installed there."
            );
            std::process::exit(0);
        }
        other => bail!("unknown argument {other:?}; try --help"),
    }
}
