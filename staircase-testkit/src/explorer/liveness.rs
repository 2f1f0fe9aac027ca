//! The liveness oracle: an object must settle, and a staircase whose writes undo each other is
//! named as such at once rather than after the run bound.
//!
//! A staircase is deterministic in the world it reads. If, inside one phase, a step's
//! modification brings the cluster back to a state it was already in after an earlier run of
//! the same object, and every run in between was a step's modification too, those runs form a
//! cycle the operator will repeat forever: two steps (or a step and another actor) undo each
//! other. The state is the explorer's normalised snapshot
//! (what phases are compared on), so a cycle is exact, not a guess from counts. Snapshots are
//! taken only once an object has run more often in the phase than its staircase has steps (plus
//! the finalizer and the converged run), so a staircase that settles normally costs nothing, and
//! only for a window of runs after that: a cycle longer than the window, or a staircase that
//! keeps making new objects, is left to the run bound, where a snapshot per run would grow with
//! every object made.

use std::collections::HashMap;

use staircase_runtime::{RunEnd, RunReport};

use super::compare::Snapshot;
use super::diagnose;

/// Runs an object gets in a phase before its states are remembered, beyond its step count:
/// the finalizer's run and the converged one.
const FREE_RUNS: u64 = 2;

/// Runs past the free ones whose states are remembered: cycles up to this long are named.
const WINDOW: u64 = 24;

#[derive(Default)]
struct Track {
    runs: u64,
    /// The most steps a run of the object executed: its staircase's length, once it converged.
    steps: u64,
    /// States after the object's writing runs past the free ones: the state, the run it
    /// followed, and the actors' change count then.
    seen: Vec<(Snapshot, u64, u64)>,
    /// What each remembered run did, by run number.
    lines: Vec<(u64, String)>,
}

/// Per phase: how often each object ran, and the states its writes led to.
#[derive(Default)]
pub(crate) struct Liveness {
    objects: HashMap<String, Track>,
}

impl Liveness {
    /// Counts a run of `object`; whether the state after it is to be checked with
    /// [`Liveness::check`] (the run committed a write and the object is past its free runs).
    pub(crate) fn ran(&mut self, object: &str, report: &RunReport, wrote: bool) -> bool {
        let t = self.objects.entry(object.to_string()).or_default();
        t.runs += 1;
        t.steps = t.steps.max(report.steps.len() as u64);
        // A cycle is one of steps' modifications only: a failed run (a fault) or a settled one
        // between two equal states is the world recovering, not the staircase going round.
        if !matches!(report.end, RunEnd::Modified { .. }) {
            t.seen.clear();
            t.lines.clear();
            return false;
        }
        let past = t.runs.saturating_sub(t.steps + FREE_RUNS);
        let checked = wrote && past > 0 && past <= WINDOW;
        if checked {
            t.lines.push((t.runs, diagnose::line(report)));
        }
        checked
    }

    /// The cluster's state after `object`'s latest run; a cycle is reported with its runs.
    pub(crate) fn check(
        &mut self,
        object: &str,
        state: Snapshot,
        actor_changes: u64,
    ) -> Result<(), String> {
        let t = self.objects.get_mut(object).expect("ran() came first");
        let Some((_, since, changes)) = t.seen.iter().find(|(s, ..)| *s == state) else {
            t.seen.push((state, t.runs, actor_changes));
            return Ok(());
        };
        let cycle: Vec<&str> = t
            .lines
            .iter()
            .filter(|(n, _)| n > since)
            .map(|(_, l)| l.as_str())
            .collect();
        let who = if *changes == actor_changes {
            "nothing else changed the cluster meanwhile, so steps of the staircase undo each \
             other"
        } else {
            "the explorer's actors changed the cluster meanwhile, so a step and an actor undo \
             each other"
        };
        Err(format!(
            "never settles: after run {} of {object} the cluster is back in the state it was in \
             after run {since}; {who}, and the operator would repeat these runs forever:\n  {}",
            t.runs,
            cycle.join("\n  ")
        ))
    }

    /// The most runs one object needed in the phase.
    pub(crate) fn most_runs(&self) -> u64 {
        self.objects.values().map(|t| t.runs).max().unwrap_or(0)
    }
}
