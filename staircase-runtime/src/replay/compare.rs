//! Comparing a replayed run with the recorded one, step by step.

use std::fmt;

use serde_json::Value;

use super::script::{Served, normal, tidy};
use super::{RecordedEnd, Recording, redact};
use crate::external::EXPLAIN_STOP;
use crate::run::{RunEnd, RunReport};
use crate::writes::{Write, write_method};

/// What replaying a recorded run found: the replayed run next to the recorded one, step by step,
/// and the first difference (see the [module docs](super)). `Display` prints it.
#[derive(Debug, Clone)]
pub struct Replay {
    /// `Kind namespace/name`.
    pub object: String,
    /// The recorded run's number.
    pub run_id: u64,
    /// When the run was recorded.
    pub recorded_at: String,
    /// The object's generation in the recorded view.
    pub generation: Option<i64>,
    /// The resourceVersion of the recorded view.
    pub resource_version: Option<String>,
    /// Whether the cleanup steps ran.
    pub deleting: bool,
    /// Each step, in order; the runtime's own writes (the finalizer) last, as a step named
    /// `runtime`, when either run made one.
    pub steps: Vec<StepReplay>,
    /// How the recorded run ended.
    pub recorded_end: RecordedEnd,
    /// The replayed run's report (`None` when there was nothing to run).
    pub report: Option<RunReport>,
    /// Requests the replayed run made that the recording could not answer, as `METHOD path
    /// (step)`.
    pub unrecorded: Vec<String>,
    /// The first difference between the runs, in words (`at <step>: ...`, or `in how the run
    /// ends: ...`); `None` when the current code does what the recorded run did.
    pub divergence: Option<String>,
}

/// One step of a replay, the recorded run next to the replayed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReplay {
    /// The step's name.
    pub step: String,
    /// What the step did in the recorded run (`modifies: ...`, `unchanged`, ...); `None` when
    /// the run did not reach it.
    pub recorded: Option<String>,
    /// What it did in the replay, in the same words.
    pub replayed: Option<String>,
    /// Its writes, the replayed ones next to the recorded ones, in order.
    pub writes: Vec<WriteReplay>,
    /// How this step differs, if it does.
    pub divergence: Option<String>,
}

/// One write of a step in a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReplay {
    /// The method (`EXTERNAL` for an external call).
    pub method: String,
    /// The path with its query (or the external call's description).
    pub path: String,
    /// How the replayed write differs from the recorded one; `None` when it is the same.
    pub difference: Option<String>,
}

/// A write as the comparison sees it.
struct Made<'a> {
    method: &'a str,
    path: &'a str,
    body: Option<Value>,
    /// The replayed request the recording could not answer.
    unrecorded: bool,
}

/// The runtime's pseudo-step.
const RUNTIME: &str = "runtime";

impl Replay {
    /// Whether the current code does what the recorded run did (no divergence).
    pub fn same(&self) -> bool {
        self.divergence.is_none()
    }

    /// Compares the replayed run (`report`, having made the requests `served`) with `rec`.
    /// `staircase`: the step names of the staircase the replay ran.
    pub(crate) fn compare(
        object: String,
        rec: &Recording,
        report: Option<RunReport>,
        served: &[Served],
        staircase: Vec<&'static str>,
    ) -> Replay {
        let mut names: Vec<&str> = rec.staircase.iter().map(String::as_str).collect();
        for s in &staircase {
            if !names.contains(s) {
                names.push(s);
            }
        }
        let mut steps: Vec<StepReplay> = names
            .iter()
            .map(|name| compare_step(name, rec, report.as_ref(), served))
            .collect();
        let runtime = compare_writes(
            recorded_writes(rec, None),
            replayed_writes(rec, served, None),
        );
        let runtime_unrecorded = served
            .iter()
            .find(|s| s.step.is_none() && s.answered.is_none());
        if !runtime.0.is_empty() || runtime_unrecorded.is_some() {
            let divergence = match runtime_unrecorded {
                Some(s) => Some(made_unrecorded(s)),
                None => runtime.1,
            };
            steps.push(StepReplay {
                step: RUNTIME.into(),
                recorded: None,
                replayed: None,
                writes: runtime.0,
                divergence,
            });
        }
        let replayed_end = report.as_ref().map(end_of);
        let divergence = steps
            .iter()
            .find_map(|s| Some(format!("at {}: {}", s.step, s.divergence.as_ref()?)))
            .or_else(|| {
                let replayed = replayed_end.as_ref();
                let same = replayed.is_some_and(|e| e.end == rec.end.end && e.step == rec.end.step);
                (!same).then(|| {
                    format!(
                        "in how the run ends: the recorded run {}; the replayed run {}",
                        end_words(&rec.end),
                        replayed.map_or_else(|| "had nothing to run".into(), end_words)
                    )
                })
            });
        let unrecorded = served
            .iter()
            .filter(|s| s.answered.is_none())
            .map(|s| {
                format!(
                    "{} {} ({})",
                    s.method,
                    tidy(&s.path),
                    s.step.unwrap_or(RUNTIME)
                )
            })
            .collect();
        Replay {
            object,
            run_id: rec.run_id,
            recorded_at: rec.recorded_at.clone(),
            generation: rec.generation,
            resource_version: rec.resource_version.clone(),
            deleting: rec.deleting,
            steps,
            recorded_end: rec.end.clone(),
            report,
            unrecorded,
            divergence,
        }
    }
}

fn compare_step(
    name: &str,
    rec: &Recording,
    report: Option<&RunReport>,
    served: &[Served],
) -> StepReplay {
    let recorded = rec.steps.iter().find(|s| s.step == name);
    let replayed = report.and_then(|r| r.steps.iter().find(|s| s.step == name));
    let recorded_text = recorded.map(|s| describe(&s.outcome, &s.detail));
    // A step that stopped at an external call modifies, as far as the replay can tell.
    let external =
        replayed.and_then(|s| external_stop(&s.detail).filter(|_| s.outcome.as_str() == "error"));
    let replayed_text = replayed.map(|s| match external {
        Some(call) => format!("modifies: would call {call} (not made in a replay)"),
        None => describe(s.outcome.as_str(), &s.detail),
    });
    let replayed_outcome = replayed.map(|s| match external {
        Some(_) => "modified",
        None => s.outcome.as_str(),
    });

    let mut mine = recorded_writes(rec, Some(name));
    if let Some(s) = recorded {
        mine.extend(
            s.writes
                .iter()
                .filter(|w| w.method == "EXTERNAL")
                .map(|w| Made {
                    method: "EXTERNAL",
                    path: &w.path,
                    body: None,
                    unrecorded: false,
                }),
        );
    }
    let mut theirs = replayed_writes(rec, served, Some(name));
    if let Some(call) = external {
        theirs.push(Made {
            method: "EXTERNAL",
            path: call,
            body: None,
            unrecorded: false,
        });
    }
    let (writes, write_divergence) = compare_writes(mine, theirs);

    let unrecorded = served
        .iter()
        .find(|s| s.step == Some(name) && s.answered.is_none());
    let divergence = if let Some(s) = unrecorded {
        Some(made_unrecorded(s))
    } else {
        match (&recorded_text, &replayed_text) {
            (None, None) => None,
            (None, Some(now)) => Some(format!(
                "the recorded run did not reach this step; the replayed run did ({now})"
            )),
            (Some(then), None) => Some(format!(
                "the replayed run did not reach this step; the recorded run did ({then})"
            )),
            (Some(then), Some(now)) if recorded.map(|s| s.outcome.as_str()) != replayed_outcome => {
                Some(format!("recorded: {then}; replayed: {now}"))
            }
            _ => write_divergence,
        }
    };
    StepReplay {
        step: name.to_string(),
        recorded: recorded_text,
        replayed: replayed_text,
        writes,
        divergence,
    }
}

fn made_unrecorded(s: &Served) -> String {
    format!(
        "the current code made a request the recorded run did not: {} {}",
        s.method,
        tidy(&s.path)
    )
}

/// The writes of `step` (`None`: the runtime's, its status writes left out) in the recording.
fn recorded_writes<'a>(rec: &'a Recording, step: Option<&str>) -> Vec<Made<'a>> {
    rec.exchanges
        .iter()
        .filter(|e| e.step.as_deref() == step && counts(&e.method, &e.path, step))
        .map(|e| Made {
            method: &e.method,
            path: &e.path,
            body: e.request.clone(),
            unrecorded: false,
        })
        .collect()
}

/// The writes of `step` in the replayed run, their bodies redacted as the recording's are.
fn replayed_writes<'a>(rec: &Recording, served: &'a [Served], step: Option<&str>) -> Vec<Made<'a>> {
    served
        .iter()
        .filter(|s| s.step == step && counts(&s.method, &s.path, step))
        .map(|s| {
            let mut body = s.body.clone();
            if let (true, Some(b)) = (rec.redacted, &mut body) {
                redact::body(&s.path, b);
            }
            Made {
                method: &s.method,
                path: &s.path,
                body,
                unrecorded: s.answered.is_none(),
            }
        })
        .collect()
}

/// Whether a request is a write the comparison looks at: not an Event, and for the runtime not
/// its status write (a replay writes no status).
fn counts(method: &str, path: &str, step: Option<&str>) -> bool {
    let Ok(m) = method.parse::<http::Method>() else {
        return false;
    };
    let bare = path.split_once('?').map_or(path, |(p, _)| p);
    write_method(&m).is_some()
        && !Write {
            method: "",
            path: bare.to_string(),
            status: 0,
            resource_version: None,
            field_manager: None,
        }
        .is_event()
        && (step.is_some() || !bare.ends_with("/status"))
}

/// Pairs the recorded writes with the replayed ones, in order; returns them and the first
/// difference.
fn compare_writes(
    mine: Vec<Made<'_>>,
    theirs: Vec<Made<'_>>,
) -> (Vec<WriteReplay>, Option<String>) {
    let mut out = Vec::new();
    let mut first = None;
    for i in 0..mine.len().max(theirs.len()) {
        let (w, difference) = match (mine.get(i), theirs.get(i)) {
            (Some(r), Some(p)) => {
                let difference =
                    if p.unrecorded || r.method != p.method || normal(r.path) != normal(p.path) {
                        Some(format!(
                            "the recorded run made {} {} here",
                            r.method,
                            tidy(r.path)
                        ))
                    } else if r.body != p.body {
                        let mut at = String::new();
                        let what = match (&r.body, &p.body) {
                            (Some(a), Some(b)) => first_difference(a, b, &mut at),
                            (a, b) => Some(format!(
                                "(recorded: {}, replayed: {})",
                                short(a.as_ref()),
                                short(b.as_ref())
                            )),
                        };
                        let at = if at.is_empty() {
                            String::new()
                        } else {
                            format!(" at {at}")
                        };
                        Some(format!("the body differs{at} {}", what.unwrap_or_default()))
                    } else {
                        None
                    };
                (p, difference)
            }
            (Some(r), None) => (
                r,
                Some("recorded, not made by the current code".to_string()),
            ),
            (None, Some(p)) => (
                p,
                Some("made by the current code, not recorded".to_string()),
            ),
            (None, None) => unreachable!("i < the longer list's length"),
        };
        if first.is_none()
            && let Some(d) = &difference
        {
            first = Some(format!("{} {}: {d}", w.method, tidy(w.path)));
        }
        out.push(WriteReplay {
            method: w.method.to_string(),
            path: tidy(w.path),
            difference,
        });
    }
    (out, first)
}

/// The first place `b` differs from `a` (its path into `at`), with both values.
fn first_difference(a: &Value, b: &Value, at: &mut String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let len = at.len();
                at.push('.');
                at.push_str(k);
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => {
                        if let Some(d) = first_difference(p, q, at) {
                            return Some(d);
                        }
                    }
                    (p, q) => {
                        return Some(format!("(recorded: {}, replayed: {})", short(p), short(q)));
                    }
                }
                at.truncate(len);
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                match (x.get(i), y.get(i)) {
                    (Some(p), Some(q)) => {
                        if let Some(d) = first_difference(p, q, at) {
                            return Some(d);
                        }
                    }
                    (p, q) => {
                        return Some(format!("(recorded: {}, replayed: {})", short(p), short(q)));
                    }
                }
                at.truncate(len);
            }
            None
        }
        (x, y) if x == y => None,
        (x, y) => Some(format!(
            "(recorded: {}, replayed: {})",
            short(Some(x)),
            short(Some(y))
        )),
    }
}

/// A value in a line of text: absent, or its JSON cut to 60 characters.
fn short(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "absent".into();
    };
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s,
    }
}

/// What a step did, as explain says it.
fn describe(outcome: &str, detail: &str) -> String {
    match outcome {
        "unchanged" => "unchanged".into(),
        "modified" => format!("modifies: {detail}"),
        "wait" => format!("waits: {detail}"),
        "done" => format!("done: {detail}"),
        _ => format!("fails: {detail}"),
    }
}

/// The external call a replayed step stopped at (`description [key]`).
fn external_stop(detail: &str) -> Option<&str> {
    let rest = &detail[detail.find(EXPLAIN_STOP)? + EXPLAIN_STOP.len()..];
    Some(rest.split_once("; replay makes no call")?.0)
}

/// How the replayed run ended, a stop at an external call counted as the step's modification.
fn end_of(r: &RunReport) -> RecordedEnd {
    match &r.end {
        RunEnd::Failed {
            step: Some(step),
            error,
        } if external_stop(error).is_some() => RecordedEnd {
            end: "modified".into(),
            step: Some(step.to_string()),
            detail: None,
        },
        end => RecordedEnd::of(end),
    }
}

fn end_words(e: &RecordedEnd) -> String {
    let step = e.step.as_deref().unwrap_or("?");
    let detail = e.detail.as_deref().unwrap_or("");
    match e.end.as_str() {
        "converged" => "found the object converged".into(),
        "modified" => format!("modified at {step}"),
        "waiting" => format!("waited at {step}: {detail}"),
        "done" => format!("ended at {step}: {detail}"),
        "failed" if e.step.is_some() => format!("failed at {step}: {detail}"),
        "failed" => format!("failed: {detail}"),
        "paused" => format!("paused before {step}"),
        "finalizer_added" => "added the finalizer".into(),
        "finalizer_removed" => "removed the finalizer".into(),
        other => format!("ended {other}"),
    }
}

impl fmt::Display for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replay of {}: run {}, recorded at {}",
            self.object, self.run_id, self.recorded_at
        )?;
        let rv = self.resource_version.as_deref().unwrap_or("?");
        match self.generation {
            Some(g) => writeln!(f, " (generation {g}, resourceVersion {rv})")?,
            None => writeln!(f, " (resourceVersion {rv})")?,
        }
        if self.deleting {
            writeln!(f, "  being deleted: the cleanup steps run")?;
        }
        let width = self.steps.iter().map(|s| s.step.len()).max().unwrap_or(0);
        let pad = width + 4;
        for s in &self.steps {
            if s.step == RUNTIME && s.recorded.is_none() && s.replayed.is_none() {
                writeln!(f, "  {:<width$}  (the runtime's own writes)", s.step)?;
            } else {
                let now = s.replayed.as_deref().unwrap_or("not reached");
                writeln!(f, "  {:<width$}  {now}", s.step)?;
                if s.recorded != s.replayed {
                    let then = s.recorded.as_deref().unwrap_or("not reached");
                    writeln!(f, "  {:pad$}recorded: {then}", "")?;
                }
            }
            for w in &s.writes {
                match &w.difference {
                    None => writeln!(f, "  {:pad$}{} {}: the same write", "", w.method, w.path)?,
                    Some(d) => writeln!(f, "  {:pad$}{} {}: {d}", "", w.method, w.path)?,
                }
            }
        }
        for u in &self.unrecorded {
            writeln!(f, "not in the recording: {u}")?;
        }
        match &self.divergence {
            Some(d) => writeln!(f, "the current code diverges; the first divergence is {d}")?,
            None => {
                let writes: Vec<String> = self
                    .steps
                    .iter()
                    .flat_map(|s| {
                        s.writes
                            .iter()
                            .map(move |w| format!("{} {} {}", s.step, w.method, w.path))
                    })
                    .collect();
                if writes.is_empty() {
                    writeln!(
                        f,
                        "the current code makes no write, as recorded: the run {}",
                        end_words(&self.recorded_end)
                    )?;
                } else {
                    writeln!(
                        f,
                        "the current code makes the same write: {}",
                        writes.join(", ")
                    )?;
                }
            }
        }
        writeln!(
            f,
            "nothing was sent to a cluster: every answer came from the recording"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_difference_is_named_with_its_path_and_both_values() {
        let a = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": [1, 2]}});
        let mut at = String::new();
        assert_eq!(first_difference(&a, &a.clone(), &mut at), None);
        let b = json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}, "data": {"k": [1, 2]}});
        let mut at = String::new();
        assert_eq!(
            first_difference(&a, &b, &mut at).as_deref(),
            Some("(recorded: absent, replayed: \"2\")")
        );
        assert_eq!(at, ".metadata.labels.b");
        let c = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": [1, 3]}});
        let mut at = String::new();
        assert_eq!(
            first_difference(&a, &c, &mut at).as_deref(),
            Some("(recorded: 2, replayed: 3)")
        );
        assert_eq!(at, ".data.k[1]");
    }

    #[test]
    fn an_external_stop_names_the_call() {
        let e = "would call POST /orders [uid.place_order]; replay makes no call outside Kubernetes, so ...";
        assert_eq!(external_stop(e), Some("POST /orders [uid.place_order]"));
        assert_eq!(external_stop("would call X; explain makes no call"), None);
        assert_eq!(external_stop("boom"), None);
    }

    #[test]
    fn only_writes_count_and_not_events_or_the_runtimes_status() {
        assert!(counts(
            "POST",
            "/api/v1/namespaces/d/secrets?fieldManager=m",
            Some("s")
        ));
        assert!(!counts("GET", "/api/v1/namespaces/d/secrets/x", Some("s")));
        assert!(!counts("POST", "/api/v1/namespaces/d/events", Some("s")));
        assert!(!counts(
            "PATCH",
            "/apis/g/v1/namespaces/d/foos/x/status",
            None
        ));
        assert!(counts(
            "PATCH",
            "/apis/g/v1/namespaces/d/foos/x/status",
            Some("s")
        ));
        assert!(counts("PATCH", "/apis/g/v1/namespaces/d/foos/x", None));
    }
}
