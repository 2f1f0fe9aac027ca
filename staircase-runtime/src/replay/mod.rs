//! Recording runs, and replaying a recorded run without a cluster: debug a production run
//! locally, step by step, and see whether the current code would make the same write.
//!
//! An operator built with [`Operator::record`](crate::Operator::record) writes one JSON file
//! per run: the object the run acted on, the staircase's step names, every request each step
//! (and the runtime) made with its answer, in order, and what the run did (each step's outcome
//! and writes, how the run ended). [`Operator::replay`](crate::Operator::replay) runs the
//! staircase once more on the recorded object, with a client that answers every request from
//! the recording, and compares the two runs step by step:
//!
//! ```text
//! replay of Foo default/r: run 3, recorded at 2026-12-07T12:17:15.948Z (generation 1, resourceVersion 15)
//!   ensure_config   unchanged
//!   ensure_secret   modifies: created Secret r-token
//!                     POST /api/v1/namespaces/default/secrets?fieldManager=foo-operator: the same write
//!   ensure_service  not reached
//! the current code makes the same write: ensure_secret POST /api/v1/namespaces/default/secrets?fieldManager=foo-operator
//! nothing was sent to a cluster: every answer came from the recording
//! ```
//!
//! ```no_run
//! # use staircase_runtime as staircase;
//! # use k8s_openapi::api::core::v1::ConfigMap as Foo;
//! use staircase::replay::{self, Recorder, Recording};
//! use staircase::{Operator, Reconciler};
//!
//! // In production: record every run, the last 20 of each object.
//! async fn serve(client: kube::Client, stairs: impl Reconciler<Foo, ()>) {
//!     let recorder = Recorder::new("/var/run/recordings").keep(20).redact_secrets();
//!     Operator::new(client, stairs).record(recorder).run().await;
//! }
//!
//! // On a laptop, with the recording copied over: no cluster needed (the client is never used).
//! async fn debug(client: kube::Client, stairs: impl Reconciler<Foo, ()>) -> anyhow::Result<()> {
//!     let operator = Operator::new(client, stairs);
//!     for file in replay::recordings("recordings/")? {
//!         let replay = operator.replay(&Recording::read(&file)?).await?;
//!         print!("{replay}");
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # What a recording holds
//! One file per run, `<dir>/<namespace>_<name>/<time>-<run id>.json` (`<name>` for a
//! cluster-scoped object), a [`Recording`]:
//! - the object view the run acted on, its generation and resourceVersion, and how many runs
//!   before it failed (`ctx.run().retries`);
//! - the staircase's step names (the cleanup steps', for an object being deleted);
//! - every request the run made, in order, each filed under the step that made it (or the
//!   runtime: the finalizer, the status), with its body and the answer's status and body
//!   ([`Exchange`]). A read the operator's watch cache answered sends no request; it is recorded
//!   as the request a read without the cache sends (`GET` of the object, or a `LIST` with the
//!   same label selector), answered with what the cache held, and marked `cached`;
//! - each step's outcome and writes, and how the run ended.
//!
//! Only the last [`keep`](Recorder::keep) runs of each object are kept (20 by default): older
//! files are deleted as new ones are written. A recording's size is about the size of the
//! objects its steps read and wrote; a step that lists many objects makes large recordings.
//!
//! # Guarantees
//! - Recording never fails a run: a file that cannot be written is logged (a warning) and
//!   counted ([`Recorder::failed`]); the run's outcome is unchanged. A file is written whole
//!   (to a temporary name, then renamed) before the run's report reaches
//!   [`on_run`](crate::Operator::on_run) observers.
//! - A replay sends nothing anywhere: every request of the replayed run is answered from the
//!   recording, writes included. A request the recording lacks is answered with a `500` whose
//!   message names it, and the replay reports "the current code made a request the recorded run
//!   did not". [`external::call`](crate::external::call) is not made: the step stops where it
//!   would call, and the replay compares the call it names with the recorded one.
//! - The comparison is step by step: the same steps reached, the same outcome at each, and the
//!   same writes (method, path with query, body) in the same order. [`Replay::divergence`] names
//!   the first difference; without one, the current code makes the same write (or, as recorded,
//!   none). Events are left out (a step that publishes one stamps it with the time).
//!
//! # Caveats
//! - **A recording holds the bodies of what steps read and wrote, Secrets included.** Treat the
//!   directory as you treat the Secrets. [`Recorder::redact_secrets`] replaces every value of a
//!   Secret (`data`, `stringData`, the last-applied annotation) with `<redacted>`, keeping the
//!   keys; a step that compares a Secret's values then replays differently from the recorded
//!   run, and the replay compares its writes to Secrets redacted the same way.
//! - A replay runs the steps' own code: what they do outside the Kubernetes client (the
//!   operator's state, an HTTP client of their own, the clock, randomness) is not replayed.
//!   A step that reads the time or draws a random name may write differently, and the replay
//!   says so.
//! - Requests are matched by method, path and query, in the order they were recorded; a read
//!   the replayed run repeats more often than the recorded run gets the last recorded answer
//!   again.
//! - A run that found nothing to do is recorded too; a run that was cut off (leadership lost,
//!   shutdown timed out) is not. A step's request made from a task it spawned is not recorded.
//! - The replayed run starts from a fresh memory: read-your-own-writes and the runaway check
//!   see no earlier run, and the status is not written.

mod compare;
mod redact;
pub(crate) mod script;
pub(crate) mod tape;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use compare::{Replay, StepReplay, WriteReplay};

use crate::run::{RunEnd, RunReport};

/// The version of the recording format this runtime writes and reads.
pub const FORMAT: u32 = 1;

/// One recorded run (see the [module docs](self)): what it acted on, every request it made
/// with the answers, and what it did. Written as JSON; read with [`Recording::read`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// The format's version ([`FORMAT`]).
    pub format: u32,
    /// The operator's name ([`OperatorConfig::name`](crate::OperatorConfig::name)).
    pub operator: String,
    /// The object's `apiVersion`.
    pub api_version: String,
    /// The object's kind.
    pub kind: String,
    /// `namespace/name` (or `name` for a cluster-scoped object).
    pub object: String,
    /// The run's number in the operator process that recorded it.
    pub run_id: u64,
    /// When the run ended (RFC 3339, UTC, to the millisecond).
    pub recorded_at: String,
    /// The object's generation at the start of the run.
    #[serde(default)]
    pub generation: Option<i64>,
    /// The resourceVersion of the view the run acted on.
    #[serde(default)]
    pub resource_version: Option<String>,
    /// Whether the cleanup steps ran.
    #[serde(default)]
    pub deleting: bool,
    /// Failed runs in a row before this one (`ctx.run().retries`).
    #[serde(default)]
    pub retries: u32,
    /// Whether the values of Secrets were redacted ([`Recorder::redact_secrets`]).
    #[serde(default)]
    pub redacted: bool,
    /// The step names of the staircase that ran (main, or cleanup), in order.
    pub staircase: Vec<String>,
    /// Each step that ran, in order.
    pub steps: Vec<RecordedStep>,
    /// How the run ended.
    pub end: RecordedEnd,
    /// The object the run acted on.
    pub view: Value,
    /// Every request the run made, in order, with its answer.
    pub exchanges: Vec<Exchange>,
}

/// One request a recorded run made, and the answer it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// The step that made it; `None` for the runtime's own (the finalizer, the status, a
    /// re-read of the object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The request's body: JSON as JSON, anything else as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    /// The answer's HTTP status; 0 when none came (the error is the response).
    pub status: u16,
    /// The answer's body, as for `request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// Answered by the operator's watch cache, not sent: recorded as the request a read without
    /// the cache sends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

/// What one step did in a recorded run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedStep {
    /// The step's name.
    pub step: String,
    /// `unchanged`, `modified`, `wait`, `done` or `error` ([`OutcomeKind`](crate::OutcomeKind)).
    pub outcome: String,
    /// The modification's description, the reason, or the error.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Every write it attempted (`EXTERNAL` for an external call).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<RecordedWrite>,
}

/// One write of a recorded step, as [`Write`](crate::Write) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedWrite {
    /// The method (`EXTERNAL` for an external call).
    pub method: String,
    /// The request path (or the external call's description).
    pub path: String,
    /// The answer's HTTP status (0 when none came).
    pub status: u16,
}

/// How a recorded run ended ([`RunEnd`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEnd {
    /// `converged`, `modified`, `waiting`, `done`, `failed`, `paused`, `finalizer_added`,
    /// `finalizer_removed`, `skipped_stale` or `cancelled`.
    pub end: String,
    /// The step it ended at, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The description, reason or error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl RecordedEnd {
    pub(crate) fn of(end: &RunEnd) -> Self {
        let (name, step, detail): (_, Option<&str>, Option<&str>) = match end {
            RunEnd::Converged => ("converged", None, None),
            RunEnd::Modified { step, description } => ("modified", Some(step), Some(description)),
            RunEnd::Waiting { step, reason } => ("waiting", Some(step), Some(reason)),
            RunEnd::Done { step, reason } => ("done", Some(step), Some(reason)),
            RunEnd::Failed { step, error } => ("failed", *step, Some(error)),
            RunEnd::Paused { step, reason, .. } => ("paused", Some(step), Some(reason)),
            RunEnd::FinalizerAdded => ("finalizer_added", None, None),
            RunEnd::FinalizerRemoved => ("finalizer_removed", None, None),
            RunEnd::SkippedStale => ("skipped_stale", None, None),
            RunEnd::Cancelled { step } => ("cancelled", *step, None),
        };
        RecordedEnd {
            end: name.into(),
            step: step.map(str::to_string),
            detail: detail.map(str::to_string),
        }
    }
}

impl Recording {
    /// The recording of the run `report` describes: `tape` holds what it read and wrote.
    pub(crate) fn of(
        operator: &str,
        report: &RunReport,
        staircase: Vec<&'static str>,
        tape: tape::Tape,
    ) -> Self {
        let steps = report
            .steps
            .iter()
            .map(|s| RecordedStep {
                step: s.step.into(),
                outcome: s.outcome.as_str().into(),
                detail: s.detail.to_string(),
                writes: s
                    .writes
                    .iter()
                    .map(|w| RecordedWrite {
                        method: w.method.into(),
                        path: w.path.clone(),
                        status: w.status,
                    })
                    .collect(),
            })
            .collect();
        Recording {
            format: FORMAT,
            operator: operator.into(),
            api_version: report.api_version.to_string(),
            kind: report.kind.to_string(),
            object: report.object.clone(),
            run_id: report.run_id,
            recorded_at: k8s_openapi::jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
            generation: report.generation,
            resource_version: report.observed_resource_version.clone(),
            deleting: report.deleting,
            retries: tape.retries,
            redacted: false,
            staircase: staircase.into_iter().map(str::to_string).collect(),
            steps,
            end: RecordedEnd::of(&report.end),
            view: tape.view.unwrap_or(Value::Null),
            exchanges: tape.exchanges,
        }
    }

    /// Reads a recording from its file.
    pub fn read(path: impl AsRef<Path>) -> Result<Recording, ReplayError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ReplayError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let rec: Recording =
            serde_json::from_slice(&bytes).map_err(|source| ReplayError::Format {
                path: path.to_path_buf(),
                source,
            })?;
        if rec.format != FORMAT {
            return Err(ReplayError::Version {
                path: path.to_path_buf(),
                format: rec.format,
            });
        }
        Ok(rec)
    }

    /// The name of the directory (under the recorder's) that holds this object's recordings.
    fn object_dir(&self) -> String {
        self.object
            .replace('/', "_")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// The one-line hook that lets an operator binary replay a recording from the command line:
/// when the process was started as `... replay FILE`, replays that recording with the
/// operator's current code (no cluster needed), prints the comparison and exits: 0 when the
/// current code makes the same writes, 1 when it diverges, 2 when the file cannot be replayed
/// (unreadable, another kind) or on a usage error. With any other arguments it returns at once.
///
/// ```no_run
/// # use staircase_runtime as staircase;
/// # use k8s_openapi::api::core::v1::ConfigMap as Foo;
/// use staircase::{Operator, Reconciler};
///
/// async fn serve(client: kube::Client, stairs: impl Reconciler<Foo, ()>) {
///     let operator = Operator::new(client, stairs);
///     staircase::explain::from_args(&operator).await; // `explain ...`
///     staircase::replay::from_args(&operator).await; // `replay FILE`
///     operator.run().await;
/// }
/// ```
pub async fn from_args<K, S, M, C>(operator: &crate::Operator<K, S, M, C>)
where
    K: crate::Watchable,
    K::Scope: crate::ApiScope,
    S: Send + Sync + 'static,
    M: crate::Stairs<K, S>,
    C: crate::Stairs<K, S>,
{
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("replay") {
        return;
    }
    let code = match (args.next(), args.next()) {
        (Some(file), None) if !file.starts_with('-') => match Recording::read(&file) {
            Ok(recording) => match operator.replay(&recording).await {
                Ok(r) => {
                    print!("{r}");
                    if r.same() { 0 } else { 1 }
                }
                Err(e) => {
                    eprintln!("{file}: {e}");
                    2
                }
            },
            Err(e) => {
                eprintln!("{file}: {e}");
                2
            }
        },
        _ => {
            eprintln!("usage: replay FILE (a recording written by Operator::record)");
            2
        }
    };
    crate::explain::exit(code)
}

/// Every recording file under `dir` (one directory per object), sorted: by object, then oldest
/// first.
pub fn recordings(dir: impl AsRef<Path>) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for object in std::fs::read_dir(dir)? {
        let object = object?.path();
        if object.is_dir() {
            files.extend(json_files(&object)?);
        }
    }
    files.sort();
    Ok(files)
}

/// The `.json` files of one directory, sorted by name (oldest first).
fn json_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Where and how an operator records its runs (see the [module docs](self)). Cloning it shares
/// its counts.
#[derive(Debug, Clone)]
pub struct Recorder {
    dir: PathBuf,
    keep: usize,
    redact: bool,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    written: AtomicU64,
    failed: AtomicU64,
}

impl Recorder {
    /// Records into `dir` (created when missing), keeping the last 20 runs of each object,
    /// Secrets' values as they are.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Recorder {
            dir: dir.into(),
            keep: 20,
            redact: false,
            counts: Arc::default(),
        }
    }

    /// Keeps the last `runs` recordings of each object (at least 1); older ones are deleted.
    pub fn keep(mut self, runs: usize) -> Self {
        self.keep = runs.max(1);
        self
    }

    /// Replaces the values of Secrets in every recording with `<redacted>` (see the
    /// [module docs](self#caveats)).
    pub fn redact_secrets(mut self) -> Self {
        self.redact = true;
        self
    }

    /// The directory recordings are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Recordings written so far.
    pub fn written(&self) -> u64 {
        self.counts.written.load(Ordering::Relaxed)
    }

    /// Recordings that could not be written (each was logged as a warning).
    pub fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Relaxed)
    }

    /// Writes `rec` off the async threads; a failure is logged and counted, never returned.
    pub(crate) async fn write(&self, rec: Recording) {
        let this = self.clone();
        let written = tokio::task::spawn_blocking(move || this.write_now(rec)).await;
        match written {
            Ok(Ok(path)) => {
                self.counts.written.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(path = %path.display(), "run recorded");
            }
            Ok(Err(e)) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(dir = %self.dir.display(), "recording the run failed: {e}");
            }
            Err(e) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("recording the run failed: {e}");
            }
        }
    }

    fn write_now(&self, mut rec: Recording) -> io::Result<PathBuf> {
        if self.redact {
            redact::recording(&mut rec);
        }
        let dir = self.dir.join(rec.object_dir());
        std::fs::create_dir_all(&dir)?;
        let time = k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.3fZ");
        let name = format!("{time}-{:08}.json", rec.run_id);
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let bytes = serde_json::to_vec_pretty(&rec).map_err(io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)?;
        let files = json_files(&dir)?;
        for old in files.iter().take(files.len().saturating_sub(self.keep)) {
            std::fs::remove_file(old)?;
        }
        Ok(path)
    }
}

/// Why a recording could not be read or replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("reading {path}: {source}", path = path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not a recording.
    #[error("{path} is not a recording: {source}", path = path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The file is a recording of another format version.
    #[error("{path} is a recording of format {format}; this runtime reads format {FORMAT}", path = path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: u32,
    },
    /// The recording is of another kind than the operator's.
    #[error("the recording is of a {recorded}, this operator runs {expected}")]
    Kind {
        /// `apiVersion kind` of the recording.
        recorded: String,
        /// `apiVersion kind` of the operator's resource.
        expected: String,
    },
    /// The recorded object does not decode as the operator's resource type.
    #[error("the recorded object does not decode as a {kind}: {source}")]
    View {
        /// The operator's kind.
        kind: String,
        /// Why.
        source: serde_json::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(object: &str, run_id: u64) -> Recording {
        Recording {
            format: FORMAT,
            operator: "test".into(),
            api_version: "v1".into(),
            kind: "Secret".into(),
            object: object.into(),
            run_id,
            recorded_at: "2025-01-01T00:00:00.000Z".into(),
            generation: None,
            resource_version: Some("1".into()),
            deleting: false,
            retries: 0,
            redacted: false,
            staircase: vec!["a".into()],
            steps: Vec::new(),
            end: RecordedEnd::of(&RunEnd::Converged),
            view: serde_json::json!({"kind": "Secret", "data": {"k": "dg=="}}),
            exchanges: Vec::new(),
        }
    }

    #[test]
    fn the_last_runs_of_each_object_are_kept_and_read_back() {
        let dir = std::env::temp_dir().join(format!("staircase-recorder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let recorder = Recorder::new(&dir).keep(3).redact_secrets();
        for run in 1..=5 {
            recorder.write_now(recording("ns/a", run)).unwrap();
        }
        recorder.write_now(recording("cluster-wide", 6)).unwrap();
        let files = recordings(&dir).unwrap();
        let read: Vec<Recording> = files.iter().map(|f| Recording::read(f).unwrap()).collect();
        let runs: Vec<(&str, u64)> = read.iter().map(|r| (r.object.as_str(), r.run_id)).collect();
        assert_eq!(
            runs,
            [("cluster-wide", 6), ("ns/a", 3), ("ns/a", 4), ("ns/a", 5)]
        );
        assert!(files[1].parent().unwrap().ends_with("ns_a"), "{files:?}");
        // Redacted on the way to the file.
        assert!(
            read.iter()
                .all(|r| r.redacted && r.view["data"]["k"] == redact::REDACTED_BASE64)
        );
        // No temporary file is left behind.
        let left = std::fs::read_dir(dir.join("ns_a")).unwrap().count();
        assert_eq!(left, 3);
        std::fs::remove_dir_all(&dir).unwrap();

        let err = Recording::read(dir.join("missing.json")).unwrap_err();
        assert!(err.to_string().starts_with("reading "), "{err}");
    }
}
