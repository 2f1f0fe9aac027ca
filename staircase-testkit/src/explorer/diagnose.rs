//! Why a phase did not settle: what the operator did in its last runs, so that "not converged"
//! names the step that keeps acting or failing, its error, and whether objects keep piling up.

use std::collections::{BTreeMap, VecDeque};

use staircase_runtime::{RunEnd, RunReport};

/// Runs kept for the diagnosis.
const KEPT: usize = 64;
/// Runs of the object shown one by one.
const SHOWN: usize = 5;

/// The operator's most recent runs in a phase.
#[derive(Default)]
pub(crate) struct Recent {
    runs: VecDeque<RunReport>,
}

impl Recent {
    pub(crate) fn push(&mut self, r: &RunReport) {
        if self.runs.len() == KEPT {
            self.runs.pop_front();
        }
        self.runs.push_back(r.clone());
    }

    /// What the last runs did, for a phase that did not settle; `object` (`namespace/name`)
    /// narrows the runs shown one by one to that object's.
    pub(crate) fn explain(&self, object: Option<&str>) -> String {
        if self.runs.is_empty() {
            return "no run reported".into();
        }
        let mut out = Vec::new();
        let theirs: Vec<&RunReport> = self
            .runs
            .iter()
            .filter(|r| object.is_none_or(|o| r.object == o))
            .collect();
        let shown = if theirs.is_empty() {
            self.runs.iter().collect()
        } else {
            theirs
        };
        out.push(format!(
            "last {} runs{}:",
            shown.len().min(SHOWN),
            object.map(|o| format!(" of {o}")).unwrap_or_default()
        ));
        for r in shown.iter().rev().take(SHOWN).rev() {
            out.push(format!("  {}", line(r)));
        }
        // Which step acted or failed, over all kept runs (a loop between two steps shows both),
        // with the latest error of each failing one.
        let mut by_step: BTreeMap<String, (usize, Option<String>)> = BTreeMap::new();
        for r in &self.runs {
            if let Some((what, error)) = acted(r) {
                let e = by_step.entry(what).or_default();
                e.0 += 1;
                if error.is_some() {
                    e.1 = error;
                }
            }
        }
        if !by_step.is_empty() {
            let mut v: Vec<_> = by_step.into_iter().collect();
            v.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
            let list: Vec<String> = v
                .iter()
                .map(|(s, (n, e))| match e {
                    Some(e) => format!("{s} ×{n} (last error: {e})"),
                    None => format!("{s} ×{n}"),
                })
                .collect();
            out.push(format!(
                "in the last {} runs: {}",
                self.runs.len(),
                list.join("; ")
            ));
        }
        let mut creates: BTreeMap<&str, usize> = BTreeMap::new();
        for w in self
            .runs
            .iter()
            .flat_map(|r| &r.steps)
            .flat_map(|s| &s.writes)
            .filter(|w| w.method == "POST" && w.succeeded() && !w.is_event())
        {
            *creates.entry(w.path.as_str()).or_default() += 1;
        }
        let total: usize = creates.values().sum();
        if total == 0 {
            out.push(format!(
                "it created no object in its last {} runs",
                self.runs.len()
            ));
        } else {
            let list: Vec<String> = creates
                .iter()
                .map(|(p, n)| format!("POST {p} ×{n}"))
                .collect();
            out.push(format!(
                "it keeps creating objects: {total} creates in its last {} runs ({})",
                self.runs.len(),
                list.join(", ")
            ));
        }
        out.join("\n")
    }
}

/// One run on one line: the run, how it ended and what it wrote.
pub(crate) fn line(r: &RunReport) -> String {
    let writes: Vec<String> = r
        .steps
        .iter()
        .flat_map(|s| &s.writes)
        .filter(|w| !w.is_event())
        .map(|w| match w.status {
            0 => format!("{} {} (no answer)", w.method, w.path),
            s => format!("{} {} ({s})", w.method, w.path),
        })
        .collect();
    let mut s = r.to_string();
    if !writes.is_empty() {
        s.push_str(&format!(" [{}]", writes.join(", ")));
    }
    if let Some(e) = &r.status_error {
        s.push_str(&format!(" [status write failed: {e}]"));
    }
    s
}

/// `step modified`, `step failed` (with its error) or `step waits`, for runs that did something.
fn acted(r: &RunReport) -> Option<(String, Option<String>)> {
    let e = |error: &str| Some(first_line(error).to_string());
    Some(match &r.end {
        RunEnd::Modified { step, .. } => (format!("{step} modified"), None),
        RunEnd::Failed {
            step: Some(step),
            error,
        } => (format!("{step} failed"), e(error)),
        RunEnd::Failed { step: None, error } => ("the run failed".into(), e(error)),
        RunEnd::Waiting { step, .. } => (format!("{step} waits"), None),
        RunEnd::FinalizerAdded => ("finalizer added".into(), None),
        RunEnd::FinalizerRemoved => ("finalizer removed".into(), None),
        RunEnd::Converged
        | RunEnd::Done { .. }
        | RunEnd::SkippedStale
        | RunEnd::Paused { .. }
        | RunEnd::Cancelled { .. } => return None,
    })
}

fn first_line(s: &str) -> &str {
    let l = s.lines().next().unwrap_or("");
    match l.char_indices().nth(240) {
        Some((i, _)) => &l[..i],
        None => l,
    }
}
