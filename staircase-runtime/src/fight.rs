//! Fights: another actor keeps undoing what a step does.
//!
//! Two actors that disagree about a field of one object (an autoscaler and an operator both
//! setting `replicas`, a mutating webhook, a script, someone with `kubectl edit`) take turns
//! changing it back. To the operator every turn is a modification like any other: the step finds
//! the field wrong and fixes it, the run ends, and the other actor's change wakes the object
//! again. Left alone, the two write the object as fast as the API server answers them. The
//! runtime recognises the pattern, says who the other actor is, and backs off.
//!
//! # What a fight is
//! A step fights when it wrote the same object (a `PATCH` or `PUT` to the same path) in
//! [`fight_after`](crate::OperatorConfig::fight_after) modifying runs in a row (3 by default)
//! while the reconciled object's generation stayed the same, and that object's
//! `metadata.managedFields`, read before the step's latest write, show another field manager
//! that wrote it since the step's previous write. Settled runs between the modifications (the
//! step found its change in place before the other actor undid it) do not break the row.
//!
//! # Guarantees
//! - A run that finds a fight ends as it would have: the step's modification happened
//!   ([`RunEnd::Modified`](crate::RunEnd::Modified)). Its report carries the [`Fight`]
//!   ([`RunReport::fight`](crate::RunReport::fight)): the step, the object's path and the other
//!   field managers.
//! - The object then does not run again for the operator's
//!   [`backoff`](crate::OperatorConfig::backoff) delay, whatever wakes it (the other actor's next
//!   change included), where a modification would otherwise run it again at once; the delay
//!   grows with each further round of the fight, up to the backoff's cap. A change of the
//!   object's spec (a new generation) or its deletion runs it at once.
//! - With [`with_status`](crate::Operator::with_status) the status carries a
//!   [`FIGHTING`](crate::status::FIGHTING) condition (`True`, reason = the step, message = the
//!   object and the other field managers) from that run until a later run settles (converged,
//!   done, waiting or paused) or makes a modification that is no round of the fight (one at a new
//!   generation, say). A failed run leaves it as it is.
//! - With Events on, each such run leaves a `Warning` Event with reason `Fighting` whose note is
//!   the same on every round, so repeats aggregate into one Event; with metrics,
//!   `staircase_fights_total{step}` counts the rounds.
//! - Reading `managedFields` costs one GET of the written object, made only at the start of a
//!   run of an object whose step has already written that object `fight_after - 1` times in a
//!   row: with the default of 3, a step that writes another object once per generation never
//!   pays it.
//! - A fight is not a runaway: its runs are never failed by
//!   [`runaway_after`](crate::OperatorConfig::runaway_after). A step that keeps modifying with no
//!   other field manager involved still is one.
//!
//! # Caveats
//! - The other managers are told by the times of the `managedFields` entries, which the API server
//!   keeps to the second: every manager that wrote the object (any field of it) since the
//!   operator's previous write, or in the same second, is named.
//! - The operator's own entry is found by the field manager its step's write named
//!   (`PatchParams::field_manager`, `PostParams::field_manager`). For a write that names none the
//!   API server derives a name from the client's user agent, which the runtime does not see: it
//!   then names the newest writers, which can include the operator itself when both wrote in the
//!   same second. Steps should name their field manager.
//! - An actor that deletes what the step creates leaves no `managedFields` behind: a create is
//!   never a fight.
//! - Modifications count as one row while each comes within a resync period (or twice the
//!   backoff's cap, if that is longer) of the one before: an actor slower than that starts a new
//!   row each time.
//! - [Explaining](crate::explain) a run neither reads `managedFields` nor reports a fight.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

use crate::memory::{Key, ObjectKey};
use crate::run::StepRecord;
use crate::writes::Write;

/// A step and other field managers undoing each other's changes to one object, as a run found
/// it (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fight {
    /// The step whose modification keeps being undone.
    pub step: &'static str,
    /// The request path of the object it writes, e.g.
    /// `/api/v1/namespaces/default/configmaps/web-config`.
    pub path: String,
    /// The other field managers: those that wrote the object since the step's previous write, as
    /// its `managedFields` showed before the step's latest write. Sorted, never empty.
    pub managers: Vec<String>,
    /// The step's writes to the object in a row at this generation, this run's included: at
    /// least [`fight_after`](crate::OperatorConfig::fight_after).
    pub rounds: u32,
}

impl fmt::Display for Fight {
    /// The same text on every round of one fight (it names no count), for conditions and Events.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (noun, verb) = match self.managers.len() {
            1 => ("field manager", "changes"),
            _ => ("field managers", "change"),
        };
        write!(
            f,
            "{} and the {noun} {} fight over {}: {} keeps making its change and {} {verb} it \
             back; runs of this object back off until one side stops",
            self.step,
            self.managers.join(", "),
            self.path,
            self.step,
            self.managers.join(", "),
        )
    }
}

/// The write of `step` a fight would be about: its last successful `PATCH` or `PUT` (a create
/// has no previous write to undo, an Event is no modification).
pub(crate) fn target<'a>(records: &'a [StepRecord], step: &str) -> Option<&'a Write> {
    records
        .iter()
        .rfind(|r| r.step == step)?
        .writes
        .iter()
        .rfind(|w| w.succeeded() && matches!(w.method, "PATCH" | "PUT") && !w.is_event())
}

/// The subresource a request path names (`status`, `scale`), if any:
/// `/api[s]/{group/}{version}/[namespaces/{ns}/]{plural}/{name}[/{subresource}]`.
pub(crate) fn subresource(path: &str) -> Option<&str> {
    let rest = match path.strip_prefix("/api/") {
        Some(rest) => rest.split_once('/')?.1,
        None => {
            let rest = path.strip_prefix("/apis/")?;
            rest.split_once('/')?.1.split_once('/')?.1
        }
    };
    let segments: Vec<&str> = rest.split('/').collect();
    // A namespaced path has two segments more; `namespaces/{name}[/{sub}]` is a Namespace.
    let resource = match segments.as_slice() {
        ["namespaces", _, rest @ ..] if rest.len() >= 2 => rest,
        all => all,
    };
    resource.get(2).copied()
}

/// The field managers other than `ours` that wrote the object since `ours` last did, by the
/// times of the `managedFields` entries of the main resource (or of `subresource`); when `ours`
/// has no entry there (another manager took every field it owned) or is not known, the newest
/// writers. Sorted, without repeats.
pub(crate) fn others(
    entries: &[ManagedFieldsEntry],
    ours: Option<&str>,
    subresource: Option<&str>,
) -> Vec<String> {
    let relevant = || {
        entries.iter().filter(move |e| {
            e.subresource.as_deref().filter(|s| !s.is_empty()) == subresource && e.time.is_some()
        })
    };
    let is_ours = |e: &ManagedFieldsEntry| ours.is_some() && e.manager.as_deref() == ours;
    let since = relevant()
        .filter(|e| is_ours(e))
        .filter_map(|e| e.time.as_ref())
        .max()
        .or_else(|| {
            relevant()
                .filter(|e| !is_ours(e))
                .filter_map(|e| e.time.as_ref())
                .max()
        });
    let Some(since) = since else {
        return Vec::new();
    };
    let mut names: Vec<String> = relevant()
        .filter(|e| !is_ours(e) && e.time.as_ref().is_some_and(|t| t >= since))
        .filter_map(|e| e.manager.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// How a run ended, as far as fights are concerned.
pub(crate) enum Seen<'a> {
    /// Modified by `step`, whose write went to `path`.
    Wrote { step: &'static str, path: &'a str },
    /// Modified otherwise: another kind of write (a create, a delete), or none the runtime can
    /// follow. Ends the row.
    OtherModification,
    /// Converged, done, waiting or paused: ends a reported fight, keeps the row.
    Settled,
    /// Anything else (a failure, the finalizer): changes nothing.
    Other,
}

/// One object's row of writes by one step to one object at one generation.
struct Track {
    step: &'static str,
    generation: Option<i64>,
    path: Box<str>,
    runs: u32,
    last: Instant,
    /// The fight the latest write was a round of, until a run settles.
    fight: Option<Fight>,
    /// Runs at `generation` wait until then (a fight's backoff).
    until: Option<Instant>,
}

/// Every object's row. Holds only objects whose step wrote an existing object in the last
/// window, so most runs find it empty and pay for neither the lock nor a lookup.
#[derive(Default)]
pub(crate) struct Tracks {
    map: Mutex<HashMap<Key, Track>>,
    /// Whether `map` holds anything, readable without its lock. Only an object's own runs add
    /// its row, and they never overlap: a run that reads `false` has no row to find.
    any: AtomicBool,
}

/// The map, locked; keeps `any` true to it when dropped.
struct Locked<'a> {
    map: std::sync::MutexGuard<'a, HashMap<Key, Track>>,
    any: &'a AtomicBool,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.any.store(!self.map.is_empty(), Ordering::Release);
    }
}

impl std::ops::Deref for Locked<'_> {
    type Target = HashMap<Key, Track>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

impl Tracks {
    fn lock(&self) -> Locked<'_> {
        Locked {
            map: self.map.lock().unwrap_or_else(|e| e.into_inner()),
            any: &self.any,
        }
    }

    /// Whether any object has a row (without taking the lock).
    fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// The path whose `managedFields` a run of `key` at `generation` should read before its
    /// steps run: the object its step has written `runs` times in a row or more, within `window`.
    pub(crate) fn armed(
        &self,
        key: ObjectKey,
        generation: Option<i64>,
        runs: u32,
        window: Duration,
    ) -> Option<String> {
        if !self.any() {
            return None;
        }
        let map = self.lock();
        let t = map.get(&key)?;
        (t.generation == generation && t.runs >= runs && t.last.elapsed() <= window)
            .then(|| t.path.to_string())
    }

    /// Records how a run of `key` at `generation` ended; returns the writes in a row its write
    /// makes (0 when it wrote nothing to follow).
    pub(crate) fn record(
        &self,
        key: ObjectKey,
        generation: Option<i64>,
        seen: Seen<'_>,
        window: Duration,
    ) -> u32 {
        let skip = match seen {
            Seen::Wrote { .. } => false,
            Seen::OtherModification | Seen::Settled => !self.any(),
            Seen::Other => true,
        };
        if skip {
            return 0;
        }
        let now = Instant::now();
        let mut map = self.lock();
        match seen {
            Seen::Wrote { step, path } => {
                let fresh = Track {
                    step,
                    generation,
                    path: path.into(),
                    runs: 1,
                    last: now,
                    fight: None,
                    until: None,
                };
                match map.get_mut(&key) {
                    Some(t)
                        if t.step == step
                            && t.generation == generation
                            && *t.path == *path
                            && now.duration_since(t.last) <= window =>
                    {
                        t.runs = t.runs.saturating_add(1);
                        t.last = now;
                        t.runs
                    }
                    Some(t) => {
                        *t = fresh;
                        1
                    }
                    None => {
                        map.insert(key.owned(), fresh);
                        1
                    }
                }
            }
            Seen::OtherModification => {
                map.remove(&key);
                0
            }
            Seen::Settled => {
                if let Some(t) = map.get_mut(&key) {
                    if t.generation != generation || now.duration_since(t.last) > window {
                        map.remove(&key);
                    } else {
                        t.fight = None;
                    }
                }
                0
            }
            Seen::Other => 0,
        }
    }

    /// Sets the fight the latest write of `key` was a round of (`None`: it was none); returns
    /// whether one was already reported.
    pub(crate) fn set_fight(&self, key: ObjectKey, fight: Option<Fight>) -> bool {
        match self.lock().get_mut(&key) {
            Some(t) => std::mem::replace(&mut t.fight, fight).is_some(),
            None => false,
        }
    }

    /// Holds runs of `key` at the generation of its row back until `until`.
    pub(crate) fn hold(&self, key: ObjectKey, until: Instant) {
        if let Some(t) = self.lock().get_mut(&key) {
            t.until = Some(until);
        }
    }

    /// How long a run of `key` at `generation` is still held back by a fight's backoff (`None`:
    /// it may run; at another generation it always may).
    pub(crate) fn held(&self, key: ObjectKey, generation: Option<i64>) -> Option<Duration> {
        if !self.any() {
            return None;
        }
        let map = self.lock();
        let t = map.get(&key).filter(|t| t.generation == generation)?;
        let left = t.until?.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// The fight `key` is in, if a run reported one and none settled since.
    pub(crate) fn current(&self, key: ObjectKey) -> Option<Fight> {
        if !self.any() {
            return None;
        }
        self.lock().get(&key)?.fight.clone()
    }

    /// Forgets the objects `exists` no longer knows.
    pub(crate) fn retain(&self, exists: &dyn Fn(&str) -> bool) {
        self.lock().retain(|key, _| exists(key.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::OutcomeKind;

    fn entry(manager: &str, at: i64, sub: Option<&str>) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            time: Some(Time(Timestamp::from_second(at).unwrap())),
            subresource: sub.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn others_are_the_managers_that_wrote_since_ours() {
        let entries = [
            entry("creator", 10, None),
            entry("ours", 20, None),
            entry("intruder", 25, None),
            entry("same-second", 20, None),
            entry("status-writer", 30, Some("status")),
        ];
        assert_eq!(
            others(&entries, Some("ours"), None),
            ["intruder", "same-second"]
        );
        assert_eq!(
            others(&entries, Some("ours"), Some("status")),
            ["status-writer"]
        );
        // Our entry is gone (the other took every field we owned), or ours is unknown: the
        // newest writers.
        assert_eq!(others(&entries[..1], Some("ours"), None), ["creator"]);
        assert_eq!(others(&entries, None, None), ["intruder"]);
        // Nobody wrote since us.
        assert!(others(&entries[..2], Some("ours"), None).is_empty());
        assert!(others(&[], Some("ours"), None).is_empty());
    }

    #[test]
    fn subresources_are_read_from_the_path() {
        for (path, sub) in [
            ("/api/v1/namespaces/default/configmaps/a", None),
            ("/api/v1/namespaces/default/configmaps/status", None),
            ("/api/v1/namespaces/default/pods/a/status", Some("status")),
            (
                "/apis/apps/v1/namespaces/x/deployments/web/scale",
                Some("scale"),
            ),
            ("/apis/demo.staircase.rs/v1/foos/a", None),
            ("/apis/demo.staircase.rs/v1/foos/a/status", Some("status")),
            ("/api/v1/namespaces/a", None),
            ("/api/v1/namespaces/a/status", Some("status")),
            ("/api/v1/nodes/n", None),
        ] {
            assert_eq!(subresource(path), sub, "{path}");
        }
    }

    fn record(writes: Vec<Write>) -> StepRecord {
        StepRecord {
            step: "s",
            outcome: OutcomeKind::Modified,
            detail: Cow::Borrowed(""),
            recheck_after: None,
            duration: Duration::ZERO,
            writes,
            violation: None,
        }
    }

    fn write(method: &'static str, path: &str, status: u16) -> Write {
        Write {
            method,
            path: path.into(),
            status,
            resource_version: None,
            field_manager: None,
        }
    }

    #[test]
    fn the_target_is_the_steps_last_successful_patch_or_put() {
        let cm = "/api/v1/namespaces/d/configmaps/a";
        let r = record(vec![
            write("PATCH", cm, 200),
            write("POST", "/api/v1/namespaces/d/events", 201),
            write("PUT", "/api/v1/namespaces/d/configmaps/b", 409),
        ]);
        assert_eq!(target(&[r], "s").map(|w| w.path.as_str()), Some(cm));
        let created = record(vec![write("POST", "/api/v1/namespaces/d/configmaps", 201)]);
        assert!(target(&[created], "s").is_none());
    }

    fn key(name: &str) -> ObjectKey<'_> {
        ObjectKey {
            namespace: Some("ns"),
            name,
        }
    }

    #[test]
    fn a_row_counts_writes_of_one_step_to_one_object_at_one_generation() {
        let t = Tracks::default();
        let w = Duration::from_secs(60);
        let wrote = |path| Seen::Wrote { step: "s", path };
        assert_eq!(t.record(key("o"), Some(1), wrote("/a"), w), 1);
        assert_eq!(t.armed(key("o"), Some(1), 2, w), None);
        // A settled run in between keeps the row.
        t.record(key("o"), Some(1), Seen::Settled, w);
        assert_eq!(t.record(key("o"), Some(1), wrote("/a"), w), 2);
        assert_eq!(t.armed(key("o"), Some(1), 2, w).as_deref(), Some("/a"));
        assert_eq!(t.armed(key("o"), Some(2), 2, w), None, "another generation");
        assert_eq!(
            t.record(key("o"), Some(1), wrote("/b"), w),
            1,
            "another path"
        );
        assert_eq!(t.record(key("o"), Some(2), wrote("/b"), w), 1, "generation");
        assert_eq!(t.record(key("o"), Some(2), wrote("/b"), Duration::ZERO), 1);
        t.record(key("o"), Some(2), Seen::OtherModification, w);
        assert_eq!(t.record(key("o"), Some(2), wrote("/b"), w), 1);

        // A reported fight lasts until a run settles.
        let fight = Fight {
            step: "s",
            path: "/b".into(),
            managers: vec!["intruder".into()],
            rounds: 3,
        };
        assert!(!t.set_fight(key("o"), Some(fight.clone())));
        assert!(
            t.set_fight(key("o"), Some(fight.clone())),
            "already reported"
        );
        t.record(key("o"), Some(2), Seen::Other, w);
        assert_eq!(t.current(key("o")), Some(fight));
        assert_eq!(t.current(key("other")), None);
        t.record(key("o"), Some(2), Seen::Settled, w);
        assert_eq!(t.current(key("o")), None);
        assert_eq!(t.record(key("o"), Some(2), wrote("/b"), w), 2, "row kept");
        // A fight's backoff holds runs at its generation only.
        t.hold(key("o"), Instant::now() + w);
        assert!(t.held(key("o"), Some(2)).is_some());
        assert_eq!(t.held(key("o"), Some(3)), None, "a new spec runs at once");
        t.hold(key("o"), Instant::now());
        assert_eq!(t.held(key("o"), Some(2)), None, "over");
        // Settled at another generation: forgotten.
        t.record(key("o"), Some(3), Seen::Settled, w);
        assert!(t.lock().is_empty() && !t.any());
        t.record(key("o"), Some(3), wrote("/b"), w);
        assert!(t.any());
        t.retain(&|_| false);
        assert!(t.lock().is_empty());
        assert!(!t.any(), "kept true to the map");
    }

    #[test]
    fn the_message_names_no_count() {
        let mut f = Fight {
            step: "ensure_config",
            path: "/api/v1/namespaces/d/configmaps/a".into(),
            managers: vec!["intruder".into()],
            rounds: 3,
        };
        let first = f.to_string();
        f.rounds = 9;
        assert_eq!(f.to_string(), first);
        assert!(
            first.contains("the field manager intruder fight over /api/v1/"),
            "{first}"
        );
    }
}
