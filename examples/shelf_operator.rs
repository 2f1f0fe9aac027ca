//! The `Shelf` operator with its webhooks, as deployed by `deploy/shelf/`.
//!
//! ```text
//! cargo run --example shelf-operator -- crd > deploy/shelf/01-crd.yaml
//! cargo run --example shelf-operator      # in the cluster: see deploy/shelf/
//! ```
//!
//! It serves the webhooks on `:8443` with a certificate it generates for its Service
//! (`SHELF_SERVICE`, default `shelf-operator.shelf-system.svc`) and keeps that certificate's CA
//! in the CRD's conversion stanza and in both webhook configurations, then runs the operator.
//! With `SHELF_TLS_DIR` set it serves the certificate mounted there instead (cert-manager's
//! `tls.crt`/`tls.key`/`ca.crt`).

use anyhow::Context as _;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    ServiceReference, WebhookClientConfig,
};
use staircase::preflight;
use staircase::prelude::*;
use staircase::webhook::{CaBundle, Tls};
use staircase_examples::shelf;

/// The names `deploy/shelf/` gives the objects the operator keeps the caBundle of.
const WEBHOOK_CONFIGURATION: &str = "shelf-operator";
const CRD: &str = "shelves.demo.staircase.rs";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    staircase::logging::init()?;
    let service =
        std::env::var("SHELF_SERVICE").unwrap_or_else(|_| "shelf-operator.shelf-system.svc".into());
    if std::env::args().nth(1).as_deref() == Some("crd") {
        let (name, namespace) = service
            .split_once('.')
            .context("SHELF_SERVICE: name.namespace.svc")?;
        let namespace = namespace.trim_end_matches(".svc");
        let crd = shelf::crd(WebhookClientConfig {
            service: Some(ServiceReference {
                name: name.into(),
                namespace: namespace.into(),
                path: Some(shelf::CONVERT.into()),
                port: Some(443),
            }),
            ..Default::default()
        });
        print!("{}", serde_saphyr::to_string(&crd)?);
        return Ok(());
    }
    let client = preflight::client(None).await?;
    let tls = match std::env::var_os("SHELF_TLS_DIR") {
        Some(dir) => Tls::from_dir(dir),
        None => Tls::generate([service]),
    };
    let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
    let _webhooks = shelf::webhooks(tls)
        .keep_ca_bundle(
            client.client().clone(),
            [
                CaBundle::crd(CRD),
                CaBundle::validating(WEBHOOK_CONFIGURATION),
                CaBundle::mutating(WEBHOOK_CONFIGURATION),
            ],
        )
        .start(listener)
        .await
        .context("webhooks")?;
    let operator = Operator::new(client, shelf::stairs())
        .with_config(OperatorConfig::from_env()?)
        .with_status()
        .owns::<ConfigMap>();
    operator.check().await.context("preflight")?;
    operator.run().await;
    Ok(())
}
