//! OpenTelemetry traces of runs and steps (feature `otel`): one call at the top of `main`.
//!
//! ```no_run
//! # use staircase_runtime as staircase;
//! # async fn demo() {
//! // Keep the guard until the operator stopped: dropping it sends the spans still buffered.
//! let _otel = staircase::otel::init().expect("no other logger was set up");
//! # }
//! ```
//!
//! [`init`] installs the logs of [`logging::init`] (same format, same
//! filter) and a [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry) layer that
//! exports every span over OTLP, HTTP/protobuf, to an OpenTelemetry Collector or any backend
//! that takes OTLP. The spans of the runtime form this tree:
//!
//! | span | parent | attributes |
//! |---|---|---|
//! | `reconciling object` | (kube-runtime's, one per run) | `object.ref`, `object.reason` |
//! | `run` | `reconciling object` | `object` (`namespace/name`), `generation`, `run_id`, `result` (the metrics' `result`: `converged`, `modified`, `failed`, …) |
//! | `step` | `run` | `step` (its name), `outcome` (`unchanged`, `modified`, `wait`, `done`, `error`) |
//!
//! Spans of your own (`tracing::info_span!` inside a step) become children of the step.
//!
//! # Configuration
//! The standard OpenTelemetry environment variables:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | `http://localhost:4318` | the collector; traces go to `<endpoint>/v1/traces` |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | | the full URL for traces, instead |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `…_TRACES_HEADERS` | | `key=value,…` sent with every export (e.g. an API key) |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT`, `…_TRACES_TIMEOUT` | 10000 | milliseconds an export may take |
//! | `OTEL_SERVICE_NAME` | `unknown_service` | the `service.name` of every span |
//! | `OTEL_RESOURCE_ATTRIBUTES` | | `key=value,…` more resource attributes (e.g. `k8s.pod.name`) |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | `parentbased_always_on` | which traces to keep, e.g. `traceidratio` and `0.1` |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, … | 5000 ms, 2048, … | the batching of exports |
//! | `RUST_LOG` | `info` | as for the logs: it filters spans too (the runtime's are `info`) |
//!
//! # Guarantees
//! - Spans are sent in batches from a thread of their own: a run never waits for the collector.
//! - Dropping the [`Guard`] sends what is buffered (bounded by the export timeout) and shuts the
//!   exporter down; `operator.run().await` returns after a graceful shutdown, so the guard in
//!   `main` outlives the last run.
//! - A collector that cannot be reached is logged once (a `warn` line), and again once it
//!   answers; the operator runs on either way.
//!
//! # Caveats
//! - Plain HTTP only: an `https://` endpoint is refused by [`init`]. Send to a collector in the
//!   cluster (a sidecar, a DaemonSet, a Service) and let it forward over TLS. gRPC
//!   (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`) is not supported either.
//! - When the queue is full (a collector that is down for long), the newest spans are dropped.
//! - Traces only: the metrics stay on `/metrics` for Prometheus (a collector's Prometheus
//!   receiver can scrape them into OTLP).
//! - Like [`logging::init`], it installs the process's global `tracing`
//!   subscriber (once, before anything logs), and it also installs the OpenTelemetry global
//!   tracer provider, for OpenTelemetry code of your own.

mod client;

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;

use crate::logging::{self, Format, InitError};

/// Keeps the exporter running; dropping it sends the buffered spans and shuts it down. Keep it
/// in `main` for as long as the operator runs.
#[must_use = "dropping the guard shuts the exporter down"]
#[derive(Debug)]
pub struct Guard {
    provider: SdkTracerProvider,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("OpenTelemetry: the last spans may not have been sent: {e}");
        }
    }
}

/// Installs the global logger (as [`logging::init`] does) and the export
/// of spans over OTLP as the `OTEL_*` environment variables say (see the module docs).
/// Fails when another logger was installed already, or the configuration cannot be used (an
/// `https://` endpoint, a malformed one).
pub fn init() -> Result<Guard, InitError> {
    plain_http(|v| std::env::var(v).ok())?;
    let client = client::OtlpHttp::start(export_timeout()).map_err(InitError::new)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(client)
        .build()
        .map_err(InitError::new)?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().build())
        .build();
    let tracer = provider.tracer("staircase");
    let subscriber = tracing_subscriber::registry()
        .with(logging::fmt_layer(
            Format::from_env(),
            std::io::stderr().is_terminal(),
            std::io::stderr,
        ))
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(logging::env_filter());
    let guard = Guard {
        provider: provider.clone(),
    };
    tracing::subscriber::set_global_default(subscriber).map_err(InitError::new)?;
    opentelemetry::global::set_tracer_provider(provider);
    Ok(guard)
}

/// Refuses an `https` endpoint in the variables `var` reads: the client speaks plain HTTP.
fn plain_http(var: impl Fn(&str) -> Option<String>) -> Result<(), InitError> {
    let endpoint = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .find_map(|v| var(v).filter(|e| !e.is_empty()).map(|e| (v, e)));
    match endpoint {
        Some((v, e)) if e.to_ascii_lowercase().starts_with("https:") => {
            Err(InitError::new(format!(
                "{v}={e}: OTLP over https is not supported; send to a collector over plain http"
            )))
        }
        _ => Ok(()),
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else
/// 10 s: what the exporter itself reads, enforced by the client.
fn export_timeout() -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .into_iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
    .map_or(Duration::from_secs(10), Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(vars: &[(&str, &str)]) -> Result<(), String> {
        plain_http(|v| {
            vars.iter()
                .find(|(k, _)| *k == v)
                .map(|(_, e)| e.to_string())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn an_https_endpoint_is_refused_with_the_variable_that_set_it() {
        assert_eq!(check(&[]), Ok(()));
        assert_eq!(
            check(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]),
            Ok(())
        );
        let err = check(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "HTTPS://collector:4318")]).unwrap_err();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_ENDPOINT=HTTPS://collector:4318"),
            "{err}"
        );
        // The traces' own endpoint wins over the general one.
        let traces = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://vendor/v1/traces",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ];
        assert!(check(&traces).unwrap_err().contains("TRACES_ENDPOINT"));
        let plain = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://collector:4318/v1/traces",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://vendor"),
        ];
        assert_eq!(check(&plain), Ok(()));
    }
}
