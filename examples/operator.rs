//! The `Foo` operator as a deployable program (what `deploy/Dockerfile` builds and
//! `deploy/*.yaml` runs).
//!
//! ```text
//! cargo run --example foo-operator                          # KUBECONFIG / ~/.kube/config / in-cluster
//! cargo run --example foo-operator -- --kubeconfig PATH
//! cargo run --example foo-operator -- crd > deploy/01-crd.yaml
//! cargo run --example foo-operator -- explain web -n default   # what the next run would do
//! FOO_RECORD_DIR=/tmp/runs cargo run --example foo-operator     # record every run
//! cargo run --example foo-operator -- replay /tmp/runs/default_web/…json   # replay one
//! ```
//!
//! Linked on the `PATH` as `kubectl-staircase`, it is also a kubectl plugin:
//! `kubectl staircase explain foo/web -n default` (see `staircase::explain`).
//!
//! Settings come from the environment (`STAIRCASE_CONCURRENCY`, `STAIRCASE_NAMESPACE`,
//! `STAIRCASE_METRICS_ADDR`, `STAIRCASE_LEADER_ELECTION`, …: see `OperatorConfig::from_env`).
//! It checks connectivity and RBAC first and exits with a precise message when something is
//! missing, then runs until SIGTERM, shutting down gracefully.

use std::path::PathBuf;

use anyhow::Context as _;
use staircase::prelude::*;
use staircase::{crds, preflight};
use staircase_examples::foo::{self, App, Foo};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    staircase::logging::init()?;
    let mut args = std::env::args().skip(1);
    let mut kubeconfig = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            // Handled by `explain::from_args` and `replay::from_args` below, once the operator
            // is built.
            "explain" | "replay" => break,
            "crd" => {
                print!("{}", crds::print::<Foo>());
                return Ok(());
            }
            "--kubeconfig" => {
                kubeconfig = Some(PathBuf::from(
                    args.next().context("--kubeconfig needs a path")?,
                ))
            }
            other => anyhow::bail!(
                "unknown argument {other:?}; usage: foo-operator [crd] [--kubeconfig PATH]"
            ),
        }
    }
    let mut config = OperatorConfig::from_env()?;
    if std::env::var_os("STAIRCASE_NAME").is_none() {
        config.name = "foo-operator".into();
    }
    let client = preflight::client(kubeconfig.as_deref()).await?;
    let app = App {
        manager: "foo-operator".into(),
    };
    // The staircase, its status and the child kinds it owns (and reads from their caches).
    let mut operator = foo::operator(client, app).with_config(config);
    if let Some(dir) = std::env::var_os("FOO_RECORD_DIR") {
        // Each run's reads and writes, to replay with `foo-operator replay FILE`.
        operator = operator.record(staircase::replay::Recorder::new(dir).redact_secrets());
    }
    staircase::explain::from_args(&operator).await;
    staircase::replay::from_args(&operator).await;
    operator.check().await.context("preflight")?;
    operator.run().await;
    Ok(())
}
