//! The stale-view oracle: no destructive write (delete, replace, finalizer removal) may be issued
//! on the basis of a view of the primary object that was already outdated when it was issued.
//!
//! Each run reports the resourceVersion of the view it acted on
//! ([`RunReport::observed_resource_version`]); the gate records, for each destructive request,
//! every primary object's version on the server just before the request left, and every version
//! of a primary object that anyone wrote. A destructive write is stale when the server was
//! already past the run's view and the versions in between are not all the operator's own status
//! writes (which no step depends on).

use std::collections::{BTreeMap, VecDeque};

use staircase_runtime::{RunEnd, RunReport};

use super::gate::{Destructive, Version};

/// Which queue a destructive request belongs to: a step's own delete/replace is found again in
/// the run's write list by method and path; a finalizer removal by the object it is on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Write(String, String),
    Finalizer(String),
}

/// Pairs each destructive request with the run that issued it and reports the stale ones.
///
/// Runs of one object never overlap (the controller serializes them) and each object owns the
/// paths it deletes, so the n-th request on a key belongs to the n-th run that attempted it.
pub(crate) fn check(
    reports: &[RunReport],
    destructive: &[Destructive],
    history: &[Version],
) -> Vec<(usize, String)> {
    let mut queues: BTreeMap<Key, VecDeque<&Destructive>> = BTreeMap::new();
    for d in destructive {
        let key = match (&d.primary, d.finalizer) {
            (Some(obj), true) => Key::Finalizer(obj.clone()),
            _ => Key::Write(d.method.clone(), d.path.clone()),
        };
        queues.entry(key).or_default().push_back(d);
    }
    let mut out = Vec::new();
    for r in reports {
        let mut keys: Vec<Key> = r
            .steps
            .iter()
            .flat_map(|s| &s.writes)
            .filter(|w| w.method == "DELETE" || w.method == "PUT")
            .map(|w| Key::Write(w.method.to_string(), w.path.clone()))
            .collect();
        // The runtime removes its finalizer outside any step: a run that finished cleanup
        // removed it, and a deleting run failing outside a step failed to.
        let tried_finalizer = matches!(r.end, RunEnd::FinalizerRemoved)
            || (r.deleting && matches!(r.end, RunEnd::Failed { step: None, .. }));
        if tried_finalizer {
            keys.push(Key::Finalizer(r.object.clone()));
        }
        for key in keys {
            let Some(d) = queues.get_mut(&key).and_then(VecDeque::pop_front) else {
                continue;
            };
            if let Some(problem) = judge(r, d, history) {
                out.push((d.phase, problem));
            }
        }
    }
    out
}

fn judge(r: &RunReport, d: &Destructive, history: &[Version]) -> Option<String> {
    let observed: u64 = r.observed_resource_version.as_deref()?.parse().ok()?;
    let server = *d.server.get(&r.object)?;
    if server <= observed {
        return None;
    }
    let between: Vec<&Version> = history
        .iter()
        .filter(|v| v.key == r.object && v.rv > observed && v.rv <= server)
        .collect();
    let own_status_only =
        between.iter().any(|v| v.rv == server) && between.iter().all(|v| v.by_operator && v.status);
    if own_status_only {
        return None;
    }
    let mut by: Vec<String> = between
        .iter()
        .filter(|v| !(v.by_operator && v.status))
        .map(|v| {
            let who = if v.by_operator {
                "operator"
            } else {
                "scenario"
            };
            format!("{who} {} at {}", v.method, v.rv)
        })
        .collect();
    if !between.iter().any(|v| v.rv == server) {
        by.push(format!("an unrecorded write at {server}"));
    }
    let what = if d.finalizer {
        format!("finalizer removal PATCH {}", d.path)
    } else {
        format!("{} {}", d.method, d.path)
    };
    Some(format!(
        "stale view: run {} of {} acted on resourceVersion {observed}, but the server was already \
         at {server} when it issued {what} (answered {}); changed meanwhile by: {}",
        r.run_id,
        r.object,
        d.status,
        by.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use staircase_runtime::{StepRecord, Write};

    fn report(run_id: u64, observed: &str, end: RunEnd, writes: Vec<Write>) -> RunReport {
        RunReport {
            run_id,
            object: "ns/a".into(),
            api_version: "v1".into(),
            kind: "Thing".into(),
            uid: None,
            generation: Some(1),
            observed_resource_version: Some(observed.into()),
            deleting: false,
            steps: vec![StepRecord {
                step: "prune",
                outcome: staircase_runtime::OutcomeKind::Modified,
                detail: "".into(),
                recheck_after: None,
                duration: Default::default(),
                writes,
                violation: None,
            }],
            end,
            status_written: false,
            status_error: None,
            status_failures: 0,
            fight: None,
            next: staircase_runtime::NextRun::OnChange,
            duration: Default::default(),
        }
    }

    fn delete(path: &str) -> Write {
        Write {
            method: "DELETE",
            path: path.into(),
            status: 200,
            resource_version: None,
            field_manager: None,
        }
    }

    fn destructive(path: &str, server_rv: u64) -> Destructive {
        Destructive {
            method: "DELETE".into(),
            path: path.into(),
            finalizer: false,
            primary: None,
            status: 200,
            server: BTreeMap::from([("ns/a".to_string(), server_rv)]),
            phase: 0,
        }
    }

    fn version(rv: u64, by_operator: bool, status: bool) -> Version {
        Version {
            key: "ns/a".into(),
            rv,
            by_operator,
            status,
            method: "PATCH".into(),
        }
    }

    #[test]
    fn a_delete_on_an_outdated_view_is_reported_with_both_versions() {
        let r = report(7, "10", RunEnd::Converged, vec![delete("/x/cm")]);
        let problems = check(
            &[r],
            &[destructive("/x/cm", 12)],
            &[version(12, false, false)],
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .1
                .contains("run 7 of ns/a acted on resourceVersion 10")
        );
        assert!(problems[0].1.contains("already at 12"));
        assert!(problems[0].1.contains("scenario PATCH at 12"));
    }

    #[test]
    fn a_fresh_view_or_only_our_own_status_write_in_between_passes() {
        let fresh = report(1, "12", RunEnd::Converged, vec![delete("/x/cm")]);
        assert!(check(&[fresh], &[destructive("/x/cm", 12)], &[]).is_empty());
        let own = report(2, "10", RunEnd::Converged, vec![delete("/x/cm")]);
        let history = [version(11, true, true), version(12, true, true)];
        assert!(check(&[own], &[destructive("/x/cm", 12)], &history).is_empty());
        // An operator write that is not a status write, or one nobody recorded, is a change.
        let spec = report(3, "10", RunEnd::Converged, vec![delete("/x/cm")]);
        let history = [version(11, true, false), version(12, true, true)];
        assert_eq!(
            check(&[spec], &[destructive("/x/cm", 12)], &history).len(),
            1
        );
        let unknown = report(4, "10", RunEnd::Converged, vec![delete("/x/cm")]);
        let p = check(&[unknown], &[destructive("/x/cm", 12)], &[]);
        assert!(p[0].1.contains("unrecorded write at 12"), "{p:?}");
    }

    #[test]
    fn requests_pair_with_runs_in_order_per_path_and_finalizers_per_object() {
        let old = report(1, "5", RunEnd::Converged, vec![delete("/x/cm")]);
        let new = report(2, "9", RunEnd::Converged, vec![delete("/x/cm")]);
        // The first delete was issued when the server was at 5 (fresh), the second at 9.
        let d = [destructive("/x/cm", 5), destructive("/x/cm", 9)];
        assert!(check(&[old.clone(), new.clone()], &d, &[]).is_empty());
        let mut fin = report(3, "9", RunEnd::FinalizerRemoved, vec![]);
        fin.steps.clear();
        let d = [Destructive {
            method: "PATCH".into(),
            finalizer: true,
            primary: Some("ns/a".into()),
            ..destructive("/apis/g/v1/namespaces/ns/things/a", 11)
        }];
        let p = check(&[fin], &d, &[version(11, false, false)]);
        assert!(p[0].1.contains("finalizer removal"), "{p:?}");
    }
}
