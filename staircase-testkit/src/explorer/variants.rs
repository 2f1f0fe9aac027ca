//! The variants: what each case changes relative to the reference, and how a case is judged
//! against it.

use std::collections::BTreeMap;

use super::driver::{CaseOutcome, CasePlan, Mode};
use super::gate::OPERATOR_AGENT;
use super::seed::Rng;
use super::shards::Handoff;
use crate::{Fault, Verb};

/// A way of disturbing the operator. Every variant also checks the one-write rule on every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// For each write `i` of the reference: the operator process dies right after write `i` is
    /// committed; a fresh one takes over. Pass: the reference end state, no duplicate effect, at
    /// most [`max_extra_runs`](super::Explorer::max_extra_runs) more runs than the reference.
    Crash,
    /// For each write `i`: the write is committed but its answer is lost (the client sees a
    /// connection error). Same pass criteria as [`Variant::Crash`].
    LostResponse,
    /// The controller loop, with the watch lagging `N` resourceVersions behind the server (for
    /// each configured lag). Pass: the reference end state, and no destructive write (delete,
    /// replace, finalizer removal) issued on an outdated view: when the operator sent it, the
    /// primary object on the server was no newer than the version its run acted on
    /// ([`RunReport::observed_resource_version`](staircase_runtime::RunReport)), or newer only
    /// by the operator's own status writes. (This holds in every controller-loop variant; the
    /// stale-view cases are where it bites. Destructive writes the reference did not make are
    /// reported too.)
    StaleView,
    /// The controller loop, with live watch events dropped with probability `p` (0.3 and 0.9 by
    /// default, several seeds each). Pass: the reference end state and no duplicate effect. A
    /// lost delete event leaves a deleted object in the operator's cache: an operator without a
    /// finalizer keeps running it until the cache relists, and a step that creates a child
    /// creates it again each run (the garbage collector removes it at once, its owner being
    /// gone), which is reported as duplicate creates. A cleanup step (and so the runtime's
    /// finalizer) makes the deletion a change the runs see.
    LostEvents,
    /// After convergence, every object runs [`idle_runs`](super::Explorer::idle_runs) more
    /// times. Pass: zero writes and zero external effects.
    Idle,
    /// Seeded random mixes of crashes, 409s, 5xx, answers lost after commit and unanswered
    /// requests. Pass: the reference end state within `reference runs + faults × (3 + objects)`
    /// runs (a failed run, its retry, a crashed run, and one more round over every object).
    Random,
    /// The controller loop under seeded random faults: watch resets (streams closed, half of
    /// them with history compacted so the client's resume gets `410 Gone` and it relists),
    /// 409s, 500s, unanswered requests and answers lost after commit. Pass: the reference end
    /// state, the one-write rule, no duplicate effect and no destructive write on an outdated
    /// view. Task scheduling is not seeded: a seed reproduces in distribution.
    RandomLoop,
    /// [`StaleView`](Variant::StaleView) with only the watches of the other kinds (the children
    /// the operator owns and reads from its caches) lagging behind the operator's writes; the
    /// primary resource's watch keeps up, so runs follow one another at once and read children
    /// from the lagging caches. The scenario's own writes reach the caches at once (no cache can
    /// show a change whose event has not come, and without the event nothing runs). Pass: as
    /// for `StaleView`, and no create refused with `409 AlreadyExists` into a collection the
    /// operator had created an object in before (a step that reads a child it has created as
    /// missing creates it again). Not in [`Variant::ALL`]: for operators that own or read other
    /// kinds ([`Variant::CHILDREN`]).
    ChildStaleView,
    /// [`LostEvents`](Variant::LostEvents) on the watches of every kind but the primary
    /// resource; the scenario's own writes reach them (their streams are restarted after each
    /// of its actions, and a restarted watch replays what it missed). Pass: as for
    /// [`ChildStaleView`](Variant::ChildStaleView).
    ChildLostEvents,
    /// The controller loop with the operator [sharded](staircase_runtime::shard) over two
    /// replicas, one of which crashes in the middle of a handoff. Replica `a` starts alone and
    /// owns every slot; right after the action of a phase, replica `b` joins, and `a` (the
    /// leader) moves half the slots to it while the action's runs are in flight. One of the two
    /// dies right after its `n`-th write of the handoff (the leader's counted from the
    /// assignment it publishes, the joiner's from its first, its member Lease: Lease,
    /// assignment and object writes alike), and a fresh replica starts in its place, under the
    /// same identity or a new one. One case per phase, replica, `n` in
    /// `1..=`[`handoff_crashes`](super::Explorer::handoff_crashes) and restart, named
    /// `<phase>-<leader|joiner>-<n>-<same|new>`. Build the operator without leader election:
    /// the explorer shards it itself.
    /// Pass: the reference end state, no duplicate effect, no destructive write on an outdated
    /// view, the assignment settled on both replicas at the end of every phase from the
    /// handoff on, and **no object run by two replicas at once** (from the run reports: a run's
    /// span lies inside the time its replica counts it in flight in its slot). Embedded server
    /// only; not in [`Variant::ALL`]. The Leases and the assignment live in the namespace
    /// `staircase-explorer-sharding`, left out of the end state.
    ShardHandoff,
}

impl Variant {
    /// Every variant.
    pub const ALL: [Variant; 7] = [
        Variant::Crash,
        Variant::LostResponse,
        Variant::StaleView,
        Variant::LostEvents,
        Variant::Idle,
        Variant::Random,
        Variant::RandomLoop,
    ];

    /// The variants that disturb only the watches of the kinds an operator owns or reads, not
    /// its primary resource's.
    pub const CHILDREN: [Variant; 2] = [Variant::ChildStaleView, Variant::ChildLostEvents];

    /// The name used in reports and in `STAIRCASE_EXPLORER_CASE=<name>/<case>`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Crash => "crash",
            Variant::LostResponse => "lost-response",
            Variant::StaleView => "stale-view",
            Variant::LostEvents => "lost-events",
            Variant::Idle => "idle",
            Variant::Random => "random",
            Variant::RandomLoop => "random-loop",
            Variant::ChildStaleView => "child-stale-view",
            Variant::ChildLostEvents => "child-lost-events",
            Variant::ShardHandoff => "shard-handoff",
        }
    }
}

/// What to check beyond the end state.
pub(crate) struct Judge {
    pub max_extra_runs: Option<i64>,
    pub max_runs: Option<u64>,
}

/// The verdict on one case.
pub(crate) struct Verdict {
    pub converged: bool,
    pub duplicates: u64,
    pub extra_runs: i64,
    /// `(phase, problem)`.
    pub problems: Vec<(usize, String)>,
}

/// Creates per collection path, with the phase of the last one (where a duplicate shows).
fn creates(o: &CaseOutcome) -> BTreeMap<String, (u64, usize)> {
    let mut m: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    for w in o.writes.iter().filter(|w| w.is_create()) {
        let e = m.entry(w.path.clone()).or_default();
        *e = (e.0 + 1, w.phase);
    }
    m
}

/// External effects of `case` beyond or short of the reference's: a create or delete more is a
/// duplicate; an effect fewer is lost. An update more is neither (setting a value again is
/// harmless, and a run on a stale view may set an old one before the next sets the new).
/// Returns the duplicates' count and the problems.
fn external_effects(reference: &CaseOutcome, case: &CaseOutcome) -> (u64, Vec<String>) {
    let (r, c) = (&reference.ext_effects, &case.ext_effects);
    let mut duplicates = 0;
    let mut problems = Vec::new();
    for effect in r.keys().chain(c.keys().filter(|k| !r.contains_key(*k))) {
        let (want, got) = (
            r.get(effect).copied().unwrap_or(0),
            c.get(effect).copied().unwrap_or(0),
        );
        let (op, what) = effect.split_once(' ').unwrap_or(("effect", effect));
        if got > want && op != "update" {
            duplicates += got - want;
            problems.push(format!(
                "duplicate effect: {} more {op}(s) of external {what} than the reference",
                got - want
            ));
        } else if got < want {
            problems.push(format!(
                "lost effect: {} {op}(s) of external {what} in the reference, {got} in this case",
                want
            ));
        }
    }
    (duplicates, problems)
}

fn destructive(o: &CaseOutcome) -> BTreeMap<(String, String), (u64, usize)> {
    let mut m: BTreeMap<(String, String), (u64, usize)> = BTreeMap::new();
    for w in o.writes.iter().filter(|w| w.is_destructive()) {
        let what = if w.removes_finalizer {
            "PATCH (finalizer removal)".to_string()
        } else {
            w.method.clone()
        };
        let e = m.entry((what, w.path.clone())).or_insert((0, w.phase));
        e.0 += 1;
    }
    m
}

/// Judges `case` against `reference`.
pub(crate) fn judge(reference: &CaseOutcome, case: &CaseOutcome, j: &Judge) -> Verdict {
    let mut problems: Vec<(usize, String)> = case
        .problems
        .iter()
        .map(|p| (p.phase, p.text.clone()))
        .collect();
    let mut converged = case.converged() && case.snapshots.len() == reference.snapshots.len();
    for (phase, (r, c)) in reference.snapshots.iter().zip(&case.snapshots).enumerate() {
        if let (Some(r), Some(c)) = (r, c)
            && let Some(d) = super::compare::diff(r, c)
        {
            converged = false;
            problems.push((
                phase,
                format!("end state differs from the reference (- reference, + this case):\n{d}"),
            ));
        }
    }
    // Objects with generated names are compared by identity: more of one identity than the
    // reference has is a duplicate, whatever their random names.
    for (phase, (r, c)) in reference.snapshots.iter().zip(&case.snapshots).enumerate() {
        if let (Some(r), Some(c)) = (r, c) {
            let want = super::compare::generated_counts(r);
            for (identity, n) in super::compare::generated_counts(c) {
                let m = want.get(&identity).copied().unwrap_or(0);
                if n > m.max(1) {
                    problems.push((
                        phase,
                        format!(
                            "duplicate: {n} objects {identity} (named by generateName), the \
                             reference has {m}"
                        ),
                    ));
                }
            }
        }
    }
    let (rc, cc) = (creates(reference), creates(case));
    let mut duplicates = 0;
    for (path, (n, phase)) in &cc {
        let extra = n.saturating_sub(rc.get(path).map_or(0, |r| r.0));
        if extra > 0 {
            duplicates += extra;
            problems.push((
                *phase,
                format!("duplicate effect: {extra} more create(s) of {path} than the reference"),
            ));
        }
    }
    let (extra, ext_problems) = external_effects(reference, case);
    duplicates += extra;
    problems.extend(ext_problems.into_iter().map(|p| (0, p)));
    let rd = destructive(reference);
    for ((what, path), (n, phase)) in destructive(case) {
        let allowed = rd.get(&(what.clone(), path.clone())).map_or(0, |x| x.0);
        if n > allowed {
            problems.push((
                phase,
                format!("destructive write the reference did not make: {what} {path} ({n} times, reference {allowed})"),
            ));
        }
    }
    let extra_runs = case.runs as i64 - reference.runs as i64;
    if let Some(max) = j.max_extra_runs
        && extra_runs > max
    {
        problems.push((
            0,
            format!("{extra_runs} runs more than the reference (at most {max} allowed)"),
        ));
    }
    if let Some(max) = j.max_runs
        && case.runs > max
    {
        problems.push((
            0,
            format!("{} runs, more than the bound of {max}", case.runs),
        ));
    }
    Verdict {
        converged: converged && problems.is_empty(),
        duplicates,
        extra_runs,
        problems,
    }
}

/// A seeded random fault plan for a stepwise case, aimed at requests the reference made (so
/// the first fault is sure to fire), and a description for the report.
pub(crate) fn random_plan(
    seed: u64,
    reference: &CaseOutcome,
    base: &CasePlan,
) -> (CasePlan, usize, String) {
    let mut rng = Rng::new(seed, 0x5EED);
    let mut plan = base.clone();
    let mut what = Vec::new();
    let phases = reference.requests.len().max(1) as u64;
    let k = 1 + rng.below(3);
    for _ in 0..k {
        let phase = rng.below(phases) as usize;
        let kind = rng.below(6);
        if kind == 0 {
            let idx: Vec<u64> = reference
                .writes
                .iter()
                .enumerate()
                .filter(|(_, w)| w.phase == phase)
                .map(|(i, _)| i as u64 + 1)
                .collect();
            if !idx.is_empty() {
                let i = idx[rng.below(idx.len() as u64) as usize];
                plan.crash_at.insert(i);
                what.push(format!("crash after write {i}"));
            }
            continue;
        }
        // Aim at the operator's requests only; the explorer's own reads must see the truth.
        let full: &[crate::RequestRecord] =
            reference.requests.get(phase).map_or(&[], Vec::as_slice);
        let candidates: Vec<usize> = (0..full.len())
            .filter(|i| {
                let r = &full[*i];
                r.user_agent.as_deref() == Some(OPERATOR_AGENT)
                    && r.verb
                        .is_some_and(|v| !matches!(v, Verb::Watch | Verb::List))
            })
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let at = candidates[rng.below(candidates.len() as u64) as usize];
        let target = &full[at];
        let same = |r: &crate::RequestRecord| {
            r.user_agent == target.user_agent
                && r.verb == target.verb
                && r.resource == target.resource
                && r.subresource == target.subresource
                && r.name == target.name
                && r.namespace == target.namespace
        };
        // The fault counts the operator's requests only: the explorer's own and its actors' are
        // never hit.
        let nth = full[..=at].iter().filter(|r| same(r)).count();
        let write = target.verb.is_some_and(|v| v.is_write());
        let (fault, label) = match kind {
            1 => (Fault::fail(409, "Conflict"), "409 Conflict"),
            2 => (Fault::fail(500, "InternalError"), "500"),
            3 if write => (Fault::fail_after_commit(504, "Timeout"), "504 after commit"),
            4 if write => (Fault::drop_after_commit(), "answer lost after commit"),
            _ => (Fault::drop_connection(), "no answer (timeout)"),
        };
        let (f, described) = aim(fault, target, nth);
        what.push(format!("phase {phase}: {label} on {described}"));
        plan.faults.push((phase, f));
    }
    let n = what.len();
    (plan, n, what.join("; "))
}

/// `fault` aimed at the `nth` request of the operator like `target` (same verb, resource,
/// subresource, name and namespace), and how to describe it in a report.
fn aim(fault: Fault, target: &crate::RequestRecord, nth: usize) -> (Fault, String) {
    let mut f = fault
        .user_agent(OPERATOR_AGENT)
        .verb(target.verb.expect("filtered"))
        .nth(nth);
    if let Some(r) = &target.resource {
        f = f.resource(r);
    }
    f = f.subresource(target.subresource.as_deref());
    if let Some(n) = &target.name {
        f = f.name(n);
    }
    if let Some(n) = &target.namespace {
        f = f.namespace(n);
    }
    let described = format!(
        "{} #{nth} of {} {}{}",
        target.verb.map_or("?", |v| v.as_str()),
        target.resource.as_deref().unwrap_or("?"),
        target.name.as_deref().unwrap_or(""),
        target
            .subresource
            .as_deref()
            .map(|s| format!("/{s}"))
            .unwrap_or_default(),
    );
    (f, described)
}

/// The controller-loop plan of a stale-view or lost-events case.
pub(crate) fn loop_plan(hold_back: u64, drop: Option<(f64, u64)>, children_only: bool) -> CasePlan {
    CasePlan {
        mode: Mode::Loop {
            hold_back,
            drop,
            children_only,
        },
        ..CasePlan::stepwise(u64::MAX)
    }
}

/// The plan of a shard-handoff case.
pub(crate) fn handoff_plan(handoff: Handoff) -> CasePlan {
    CasePlan {
        handoff: Some(handoff),
        ..loop_plan(0, None, false)
    }
}

/// A seeded fault plan for a controller-loop case: one to three disturbances, each a watch reset
/// after the first or second run of a phase, or a fault on one of the operator's requests the
/// reference made in that phase (its first or second occurrence: the loop's request order is
/// not the reference's, so a fault may find nothing to hit, and the report counts those that
/// fired).
pub(crate) fn random_loop_plan(
    seed: u64,
    reference: &CaseOutcome,
    primary: &str,
) -> (CasePlan, String) {
    let mut rng = Rng::new(seed, 0x1009);
    let mut plan = loop_plan(0, None, false);
    let mut what = Vec::new();
    let phases = reference.requests.len().max(1) as u64;
    for _ in 0..1 + rng.below(3) {
        let phase = rng.below(phases) as usize;
        let kind = rng.below(6);
        if kind < 2 {
            let after = 1 + rng.below(2) as usize;
            let compact = rng.below(2) == 0;
            plan.resets.push((phase, after, compact));
            what.push(format!(
                "phase {phase}: watch reset{} after run {after}",
                if compact { " with 410 Gone" } else { "" }
            ));
            continue;
        }
        let full: &[crate::RequestRecord] =
            reference.requests.get(phase).map_or(&[], Vec::as_slice);
        // Only the operator's requests, and none the scenario also makes (it reads and writes
        // the primary object itself, but never patches it or its status).
        let candidates: Vec<&crate::RequestRecord> = full
            .iter()
            .filter(|r| {
                r.user_agent.as_deref() == Some(OPERATOR_AGENT)
                    && r.verb
                        .is_some_and(|v| !matches!(v, Verb::Watch | Verb::List))
                    && (r.resource.as_deref() != Some(primary) || r.verb == Some(Verb::Patch))
            })
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let target = candidates[rng.below(candidates.len() as u64) as usize];
        let nth = 1 + rng.below(2) as usize;
        let write = target.verb.is_some_and(|v| v.is_write());
        // A write to the primary object whose answer is lost hides its version from the
        // operator and from the oracle's history alike; keep after-commit faults on children.
        let after_commit = write && target.resource.as_deref() != Some(primary);
        let (fault, label) = match kind {
            2 => (Fault::fail(409, "Conflict"), "409 Conflict"),
            3 => (Fault::fail(500, "InternalError"), "500"),
            4 if after_commit => (Fault::fail_after_commit(504, "Timeout"), "504 after commit"),
            _ => (Fault::drop_connection(), "no answer (timeout)"),
        };
        let (f, described) = aim(fault, target, nth);
        what.push(format!("phase {phase}: {label} on {described}"));
        plan.faults.push((phase, f));
    }
    (plan, what.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(effects: &[(&str, u64)]) -> CaseOutcome {
        CaseOutcome {
            ext_effects: effects.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn external_creates_and_deletes_more_are_duplicates_and_any_effect_fewer_is_lost() {
        let reference = outcome(&[
            ("create shop/k", 1),
            ("update shop/k", 1),
            ("delete shop/k", 1),
        ]);
        let case = outcome(&[
            ("create shop/k", 2),
            ("update shop/k", 3),
            ("delete shop/j", 1),
        ]);
        let (duplicates, problems) = external_effects(&reference, &case);
        assert_eq!(duplicates, 2);
        assert_eq!(
            problems,
            [
                "duplicate effect: 1 more create(s) of external shop/k than the reference",
                "lost effect: 1 delete(s) of external shop/k in the reference, 0 in this case",
                "duplicate effect: 1 more delete(s) of external shop/j than the reference",
            ]
        );
        let (duplicates, problems) = external_effects(&reference, &reference);
        assert_eq!((duplicates, problems.len()), (0, 0));
    }
}
