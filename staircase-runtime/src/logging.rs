//! Logs an operations team can ship: one call at the top of `main`.
//!
//! ```no_run
//! # use staircase_runtime as staircase;
//! staircase::logging::init().expect("no other logger was set up");
//! ```
//!
//! - **Format**: text by default; `STAIRCASE_LOG_FORMAT=json` writes one JSON object per line,
//!   for a log pipeline.
//! - **Fields**: every line logged during a run carries the run's fields (`object`,
//!   `generation`, `run_id`) and, inside a step, the step's name: in JSON as `span` (the
//!   innermost) and `spans` (all of them), in text as the line's prefix.
//! - **Colours** only when the output (stderr) is a terminal: a log file or a container log gets
//!   no escape codes.
//! - **Filter**: `RUST_LOG` as usual (e.g. `info,staircase_runtime=debug`), `info` when unset.
//!
//! # Caveats
//! - It installs the process's global `tracing` subscriber, so call it once, before anything
//!   logs; it fails if another one was installed. Operators with their own subscriber keep
//!   theirs and skip this. To export the run and step spans too, call `otel::init` instead
//!   (feature `otel`): the same logs, plus OpenTelemetry.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines (colours only on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// `STAIRCASE_LOG_FORMAT`: `json` (any case) is [`Format::Json`], anything else text.
    pub fn from_env() -> Format {
        match std::env::var("STAIRCASE_LOG_FORMAT") {
            Ok(v) if v.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Text,
        }
    }
}

/// A global logger could not be installed (one already was).
#[derive(Debug)]
pub struct InitError(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot install the logger: {}", self.0)
    }
}

impl std::error::Error for InitError {}

/// Installs the global logger to stderr: format from `STAIRCASE_LOG_FORMAT`, filter from
/// `RUST_LOG` (default `info`), colours only on a terminal.
pub fn init() -> Result<(), InitError> {
    let ansi = std::io::stderr().is_terminal();
    tracing::subscriber::set_global_default(subscriber(
        Format::from_env(),
        env_filter(),
        ansi,
        std::io::stderr,
    ))
    .map_err(|e| InitError(Box::new(e)))
}

/// `RUST_LOG`, or `info` when unset or malformed.
pub(crate) fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The lines [`init`] writes, as a layer of a subscriber: writing to `writer`, colours only
/// with `ansi` (and in text).
pub(crate) fn fmt_layer<S, W>(
    format: Format,
    ansi: bool,
    writer: W,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        Format::Text => Box::new(layer.with_ansi(ansi)),
        Format::Json => Box::new(layer.json().with_current_span(true).with_span_list(true)),
    }
}

/// The subscriber [`init`] installs, writing to `writer`.
fn subscriber<W>(
    format: Format,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    Box::new(
        tracing_subscriber::registry()
            .with(fmt_layer(format, ansi, writer))
            .with(filter),
    )
}

impl InitError {
    /// An error of the OpenTelemetry setup, which installs the logger too.
    #[cfg(feature = "otel")]
    pub(crate) fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> InitError {
        InitError(e.into())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log_in_a_step(format: Format, ansi: bool) -> String {
        let buf = Buffer::default();
        let out = buf.clone();
        let sub = subscriber(format, EnvFilter::new("info"), ansi, move || out.clone());
        tracing::subscriber::with_default(sub, || {
            let run = tracing::info_span!("run", object = "default/a", run_id = 7);
            let _run = run.enter();
            let step = tracing::info_span!("step", step = "ensure_config");
            let _step = step.enter();
            tracing::info!("created ConfigMap a-config");
        });
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_carry_the_object_and_the_step() {
        let out = log_in_a_step(Format::Json, false);
        let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(line["fields"]["message"], "created ConfigMap a-config");
        assert_eq!(line["span"]["step"], "ensure_config");
        assert_eq!(line["spans"][0]["object"], "default/a");
        assert_eq!(line["spans"][0]["run_id"], 7);
    }

    #[test]
    fn text_has_no_escape_codes_off_a_terminal() {
        let plain = log_in_a_step(Format::Text, false);
        assert!(
            plain.contains("object=\"default/a\"") || plain.contains("object=default/a"),
            "{plain}"
        );
        assert!(
            plain.contains("step=\"ensure_config\"") || plain.contains("step=ensure_config"),
            "{plain}"
        );
        assert!(!plain.contains('\u{1b}'), "{plain:?}");
        assert!(log_in_a_step(Format::Text, true).contains('\u{1b}'));
    }
}
