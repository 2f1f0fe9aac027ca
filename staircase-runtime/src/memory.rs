//! What the runtime remembers about each object between runs: its own newest write (for
//! read-your-own-writes), whether the resync audit found the watch cache's copy behind the API
//! server's (the next run re-reads it),
//! whether it is gone (the runtime removed its finalizer: no view from before may run again),
//! whether that newest write was its own status write (so the write's echo cannot restart the
//! object), consecutive failures of runs and of status writes (for backoff), and, for the
//! metrics, when it is due again and whether it is ready.
//!
//! One small entry per object in the watch cache, so its size is the framework's memory cost
//! per object: 16 bytes plus the `namespace/name` key. Versions are kept as numbers, times as
//! 32-bit offsets from the operator's start: milliseconds that wrap (only durations up to a
//! resync period are ever asked of them) and, for the due time, seconds. Looking an entry up allocates nothing: the
//! key is matched against the object's namespace and name in place.

use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashbrown::{Equivalent, HashMap};

use crate::runner::NextRun;

/// An object's `namespace/name` (just `name` for cluster-scoped objects).
pub(crate) struct Key(Box<str>);

impl Key {
    /// `namespace/name`.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// The same, borrowed from an object's metadata.
#[derive(Clone, Copy)]
pub(crate) struct ObjectKey<'a> {
    pub(crate) namespace: Option<&'a str>,
    pub(crate) name: &'a str,
}

impl<'a> ObjectKey<'a> {
    /// The key of the object with metadata `meta`.
    pub(crate) fn of(meta: &'a kube::api::ObjectMeta) -> Self {
        ObjectKey {
            namespace: meta.namespace.as_deref(),
            name: meta.name.as_deref().unwrap_or_default(),
        }
    }

    /// `namespace/name` in one allocation of exactly its length (`to_string` would grow a buffer
    /// as it writes).
    pub(crate) fn joined(&self) -> String {
        let ns = self.namespace.map_or(0, |ns| ns.len() + 1);
        let mut key = String::with_capacity(ns + self.name.len());
        if let Some(namespace) = self.namespace {
            key.push_str(namespace);
            key.push('/');
        }
        key.push_str(self.name);
        key
    }

    /// The owned key (the exact-length string boxed, no copy).
    pub(crate) fn owned(&self) -> Key {
        Key(self.joined().into_boxed_str())
    }
}

impl std::fmt::Display for ObjectKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(self.name),
        }
    }
}

// Both forms hash the name alone (names hold no `/`), so they agree without building the
// joined string; objects of the same name in different namespaces are told apart by `Eq`.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let name = self.0.rsplit_once('/').map_or(&*self.0, |(_, name)| name);
        name.hash(state);
    }
}

impl Hash for ObjectKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Key {}

impl Equivalent<Key> for ObjectKey<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        match self.namespace {
            Some(ns) => key
                .0
                .strip_prefix(ns)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|name| name == self.name),
            None => *key.0 == *self.name,
        }
    }
}

/// Milliseconds since the operator started, wrapping every 49.7 days: only differences are
/// used, and only to compare with periods far shorter than that. (A version settled for longer
/// may be re-read up to one resync period late, once per wrap.)
type Millis = u32;

/// Whole seconds since the operator started (136 years fit).
type Secs = u32;

/// Where an object stands, with the time it got there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Neither of the two below.
    Idle,
    /// The last run settled (converged, done, waiting) with the object at `written_rv`.
    Settled { since: Millis },
    /// Runs see views older than `written_rv`: the watch has not caught up with our write.
    Stale { since: Millis },
    /// The runtime removed the finalizer at `written_rv` and the object is gone: a view at that
    /// version or older (a lagging watch's copy) must never run; a newer one is a new object
    /// of the same name.
    Gone,
}

/// One object's entry: 16 bytes, so a slot of the table (with the key's 16) is 32. Fields are
/// packed because the table has up to twice as many slots as objects: every byte here counts
/// about 1.1–2.3 times in the framework's memory per object.
#[derive(Clone, Copy)]
struct Entry {
    /// The low 48 bits: the newest resourceVersion of the object this operator wrote or acted on
    /// (0: none); an older view is stale. Acted-on versions count too: after a re-read showed
    /// version 12, a lagging watch may still deliver version 11, and acting on it would undo
    /// what 12 said. ([`rv_number`] gives no number above 48 bits: an etcd revision gets
    /// there after 890 years at 10,000 writes a second.) Above them: the phase (2 bits),
    /// whether the last run ended converged or done (1 bit), whether `written_rv` is the
    /// runtime's own status write (1 bit), the consecutive failed status writes (4 bits), whether
    /// the next run must re-read the object (1 bit) and the consecutive failed runs (7 bits),
    /// both counts saturating: the backoff reaches its cap long before either does.
    bits: u64,
    /// When the phase began (`Settled`, `Stale`).
    since: Millis,
    /// When the operator's own requeue is due (`NOT_DUE` while running or waiting for a change).
    due: Secs,
}

const RV_BITS: u32 = 48;
const RV_MASK: u64 = (1 << RV_BITS) - 1;
const PHASE_SHIFT: u32 = RV_BITS;
const READY_BIT: u64 = 1 << (RV_BITS + 2);
const ECHO_BIT: u64 = 1 << (RV_BITS + 3);
const STATUS_FAILURES_SHIFT: u32 = RV_BITS + 4;
const MAX_STATUS_FAILURES: u64 = 0b1111;
const SUSPECT_BIT: u64 = 1 << (RV_BITS + 8);
const FAILURES_SHIFT: u32 = RV_BITS + 9;
const MAX_FAILURES: u64 = (1 << (64 - FAILURES_SHIFT)) - 1;

const NOT_DUE: Secs = Secs::MAX;

impl Default for Entry {
    fn default() -> Self {
        Entry {
            bits: 0,
            since: 0,
            due: NOT_DUE,
        }
    }
}

impl Entry {
    fn written_rv(&self) -> u64 {
        self.bits & RV_MASK
    }

    fn set_written_rv(&mut self, rv: u64) {
        debug_assert!(rv <= RV_MASK, "rv_number gives no larger version");
        self.bits = (self.bits & !RV_MASK) | (rv & RV_MASK);
    }

    fn phase(&self) -> Phase {
        match (self.bits >> PHASE_SHIFT) & 0b11 {
            1 => Phase::Settled { since: self.since },
            2 => Phase::Stale { since: self.since },
            3 => Phase::Gone,
            _ => Phase::Idle,
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        let (tag, since) = match phase {
            Phase::Idle => (0, 0),
            Phase::Settled { since } => (1, since),
            Phase::Stale { since } => (2, since),
            Phase::Gone => (3, 0),
        };
        self.bits = (self.bits & !(0b11 << PHASE_SHIFT)) | (tag << PHASE_SHIFT);
        self.since = since;
    }

    fn ready(&self) -> bool {
        self.bits & READY_BIT != 0
    }

    fn set_ready(&mut self, ready: bool) {
        self.bits = (self.bits & !READY_BIT) | if ready { READY_BIT } else { 0 };
    }

    fn echo(&self) -> bool {
        self.bits & ECHO_BIT != 0
    }

    fn set_echo(&mut self, echo: bool) {
        self.bits = (self.bits & !ECHO_BIT) | if echo { ECHO_BIT } else { 0 };
    }

    fn suspect(&self) -> bool {
        self.bits & SUSPECT_BIT != 0
    }

    fn set_suspect(&mut self, suspect: bool) {
        self.bits = (self.bits & !SUSPECT_BIT) | if suspect { SUSPECT_BIT } else { 0 };
    }

    fn status_failures(&self) -> u32 {
        ((self.bits >> STATUS_FAILURES_SHIFT) & MAX_STATUS_FAILURES) as u32
    }

    fn set_status_failures(&mut self, failures: u64) {
        let f = failures.min(MAX_STATUS_FAILURES);
        self.bits = (self.bits & !(MAX_STATUS_FAILURES << STATUS_FAILURES_SHIFT))
            | (f << STATUS_FAILURES_SHIFT);
    }

    fn failures(&self) -> u32 {
        (self.bits >> FAILURES_SHIFT) as u32
    }

    fn set_failures(&mut self, failures: u64) {
        let f = failures.min(MAX_FAILURES);
        self.bits = (self.bits & !(MAX_FAILURES << FAILURES_SHIFT)) | (f << FAILURES_SHIFT);
    }
}

/// Parses a resourceVersion. They are opaque strings, but every real API server (and ours)
/// uses etcd revisions; one that is not a number is never called older or equal, so the
/// stale-view and resync checks are simply off for it.
pub(crate) fn rv_number(rv: Option<&str>) -> Option<u64> {
    rv?.parse().ok().filter(|&v| v != 0 && v <= RV_MASK)
}

/// How a run should treat the view it was given.
pub(crate) struct View {
    /// The object is gone and this view is from before: do not run.
    pub(crate) gone: bool,
    /// The version of the runtime's own status write, when that is the newest write: a view at
    /// exactly this version is the write's echo.
    pub(crate) echo_rv: Option<u64>,
    /// The resync audit found the watch cache behind the API server on this object: read it
    /// fresh.
    pub(crate) reread: bool,
    /// For how long runs have seen views older than our own newest write (`None`: fresh).
    pub(crate) stale_for: Option<Duration>,
    /// Consecutive failures before this run.
    pub(crate) failures: u32,
}

/// What a run that got to climb leaves behind.
pub(crate) struct Outcome {
    /// The version the run acted on.
    pub(crate) seen_rv: Option<u64>,
    /// The version of the run's (or the runtime's) own newest write to the object.
    pub(crate) wrote_rv: Option<u64>,
    /// The run converged, is done or waits.
    pub(crate) settled: bool,
    pub(crate) failed: bool,
    /// The runtime removed the finalizer: the object is gone.
    pub(crate) gone: bool,
    /// What became of the status write after the run.
    pub(crate) status: StatusWrite,
}

/// The runtime's status write after a run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusWrite {
    /// The status was right already (or is not kept).
    NotNeeded,
    /// Written: the newest write to the object, so its version is `wrote_rv`.
    Written,
    Failed,
}

/// What [`Memory::record`] counted.
pub(crate) struct Counts {
    /// Consecutive failed runs, this one included.
    pub(crate) failures: u32,
    /// Consecutive failed status writes, this one included.
    pub(crate) status_failures: u32,
}

/// Every object's entry.
pub(crate) struct Memory {
    objects: Mutex<HashMap<Key, Entry>>,
    /// Objects whose last runs were modifications by one step at one generation (a climb in
    /// progress), for runaway detection. Empty once everything settled, so a settled run pays
    /// for no lookup here.
    streaks: Mutex<HashMap<Key, Streak>>,
    /// Objects held back until a failed external call can no longer land (see
    /// `external::call`). Usually empty.
    holds: Mutex<HashMap<Key, Instant>>,
    /// Objects whose step wrote the same object in recent runs, for fight detection, and the
    /// fights' backoff.
    pub(crate) fights: crate::fight::Tracks,
    epoch: Instant,
}

/// Modifications in a row by one step at one generation.
struct Streak {
    step: &'static str,
    generation: Option<i64>,
    runs: u32,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            objects: Mutex::new(HashMap::default()),
            streaks: Mutex::new(HashMap::default()),
            holds: Mutex::new(HashMap::default()),
            fights: Default::default(),
            epoch: Instant::now(),
        }
    }
}

impl Memory {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn now(&self) -> Millis {
        // Truncation is the wrap.
        self.now_ms() as Millis
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A run starts on a view at `seen_rv`.
    pub(crate) fn start(&self, key: ObjectKey, seen_rv: Option<u64>) -> View {
        let now = self.now();
        let mut objects = self.lock();
        let fresh = View {
            gone: false,
            echo_rv: None,
            reread: false,
            stale_for: None,
            failures: 0,
        };
        let Some(e) = objects.get_mut(&key) else {
            // Never ran (or forgotten): nothing of ours to be newer than.
            return fresh;
        };
        if e.phase() == Phase::Gone {
            if seen_rv.is_some_and(|v| v > e.written_rv()) {
                // A new object of the same name.
                *e = Entry::default();
                return fresh;
            }
            return View {
                gone: true,
                ..fresh
            };
        }
        e.due = NOT_DUE;
        let reread = e.suspect();
        e.set_suspect(false);
        let stale = seen_rv.is_some_and(|v| v < e.written_rv());
        let stale_for = match (stale, e.phase()) {
            (true, Phase::Stale { since }) => Some(now.wrapping_sub(since)),
            (true, _) => {
                e.set_phase(Phase::Stale { since: now });
                Some(0)
            }
            (false, Phase::Stale { .. }) => {
                e.set_phase(Phase::Idle);
                None
            }
            (false, _) => None,
        };
        View {
            gone: false,
            echo_rv: e.echo().then(|| e.written_rv()),
            reread,
            stale_for: stale_for.map(|ms| Duration::from_millis(ms.into())),
            failures: e.failures(),
        }
    }

    /// The resync audit found the API server's copy of the object newer than (or gone from) the
    /// watch cache's: its next run re-reads it. Returns whether the object is known here (one
    /// that never ran has nothing to re-read: its first run is still to come).
    pub(crate) fn suspect(&self, key: ObjectKey) -> bool {
        let mut objects = self.lock();
        match objects.get_mut(&key) {
            Some(e) if e.phase() != Phase::Gone => {
                e.set_suspect(true);
                true
            }
            _ => false,
        }
    }

    /// Records what a run did; returns the consecutive failures it counted.
    pub(crate) fn record(&self, key: ObjectKey, run: Outcome) -> Counts {
        let now = self.now();
        let mut objects = self.lock();
        let e = match objects.get_mut(&key) {
            Some(e) => e,
            None => objects.entry(key.owned()).or_default(),
        };
        if run.gone {
            // Kept, not forgotten, until the watch cache no longer holds the object
            // (`forget_missing`): a lagging watch's copy of it must not run.
            let at = run.wrote_rv.max(run.seen_rv).unwrap_or(0);
            *e = Entry::default();
            e.set_written_rv(at);
            e.set_phase(Phase::Gone);
            // Not counted among the objects that are not ready.
            e.set_ready(true);
            return Counts {
                failures: 0,
                status_failures: 0,
            };
        }
        let before = e.written_rv();
        match (run.wrote_rv, run.seen_rv) {
            (Some(w), _) => e.set_written_rv(w),
            (None, Some(s)) if s > before => e.set_written_rv(s),
            _ => {}
        }
        let written = e.written_rv();
        // The version the run left the object at, if it settled.
        let settled_at = run.wrote_rv.or(run.seen_rv).filter(|_| run.settled);
        e.set_phase(match (settled_at, e.phase()) {
            (Some(v), Phase::Settled { since }) if v == written && before == v => {
                Phase::Settled { since }
            }
            (Some(v), _) if v == written => Phase::Settled { since: now },
            _ => Phase::Idle,
        });
        e.set_failures(if run.failed {
            u64::from(e.failures()) + 1
        } else {
            0
        });
        e.set_echo(run.status == StatusWrite::Written);
        e.set_status_failures(match run.status {
            StatusWrite::Failed => u64::from(e.status_failures()) + 1,
            StatusWrite::Written | StatusWrite::NotNeeded => 0,
        });
        Counts {
            failures: e.failures(),
            status_failures: e.status_failures(),
        }
    }

    /// A run ended (with or without a report): note when it is due again and, when it
    /// reported, whether the object is ready.
    pub(crate) fn finish(&self, key: ObjectKey, next: NextRun, ready: Option<bool>) {
        let now = self.now_ms();
        if let Some(e) = self.lock().get_mut(&key)
            && e.phase() != Phase::Gone
        {
            if let NextRun::After(d) = next {
                // To the second, like the clock `counts` compares it with.
                let at = now.saturating_add(d.as_millis().min(u64::MAX.into()) as u64);
                e.due = (at / 1000).min(u64::from(NOT_DUE - 1)) as Secs;
            }
            if let Some(ready) = ready {
                e.set_ready(ready);
            }
        }
    }

    /// Holds the object back until `until`.
    pub(crate) fn hold(&self, key: ObjectKey, until: Instant) {
        let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        match holds.get_mut(&key) {
            Some(t) => *t = (*t).max(until),
            None => {
                holds.insert(key.owned(), until);
            }
        }
    }

    /// How long the object is still held back (`None`: it may run).
    pub(crate) fn held(&self, key: ObjectKey) -> Option<Duration> {
        let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        if holds.is_empty() {
            return None;
        }
        let left = holds.get(&key)?.saturating_duration_since(Instant::now());
        if left.is_zero() {
            holds.remove(&key);
            return None;
        }
        Some(left)
    }

    /// A run ended modified by `step` at `generation` (`None`: it did not end modified).
    /// Returns the modifications in a row by that step at that generation, this one included.
    pub(crate) fn streak(
        &self,
        key: ObjectKey,
        modified: Option<(&'static str, Option<i64>)>,
    ) -> u32 {
        let mut streaks = self.streaks.lock().unwrap_or_else(|e| e.into_inner());
        let Some((step, generation)) = modified else {
            if !streaks.is_empty() {
                streaks.remove(&key);
            }
            return 0;
        };
        let fresh = Streak {
            step,
            generation,
            runs: 1,
        };
        match streaks.get_mut(&key) {
            Some(s) if s.step == step && s.generation == generation => {
                s.runs = s.runs.saturating_add(1);
                s.runs
            }
            Some(s) => {
                *s = fresh;
                1
            }
            None => {
                streaks.insert(key.owned(), fresh);
                1
            }
        }
    }

    /// Forgets the objects `exists` no longer knows; returns how many.
    pub(crate) fn forget_missing(&self, exists: &dyn Fn(&str) -> bool) -> usize {
        self.holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| exists(&key.0));
        self.streaks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| exists(&key.0));
        self.fights.retain(exists);
        let mut objects = self.lock();
        let before = objects.len();
        objects.retain(|key, _| exists(&key.0));
        before - objects.len()
    }

    /// For the metrics: (objects whose requeue is due, to the second, but has not started,
    /// objects whose last run was not ready), counting only objects `exists` knows.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn counts(&self, exists: &dyn Fn(&str) -> bool) -> (usize, usize) {
        let now = (self.now_ms() / 1000) as Secs;
        let objects = self.lock();
        objects
            .iter()
            .filter(|(key, _)| exists(&key.0))
            .fold((0, 0), |(due, not_ready), (_, e)| {
                (
                    due + usize::from(e.due <= now),
                    not_ready + usize::from(!e.ready()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(ns: Option<&'a str>, name: &'a str) -> ObjectKey<'a> {
        ObjectKey {
            namespace: ns,
            name,
        }
    }

    fn settled(seen: u64) -> Outcome {
        Outcome {
            seen_rv: Some(seen),
            wrote_rv: None,
            settled: true,
            failed: false,
            gone: false,
            status: StatusWrite::NotNeeded,
        }
    }

    #[test]
    fn a_hold_lasts_until_its_time_and_the_later_of_two_wins() {
        let m = Memory::default();
        let k = key(Some("ns"), "o");
        assert_eq!(m.held(k), None);
        let now = Instant::now();
        m.hold(k, now + Duration::from_secs(60));
        m.hold(k, now + Duration::from_secs(1));
        assert!(
            m.held(k).unwrap() > Duration::from_secs(30),
            "the later one"
        );
        assert_eq!(m.held(key(Some("ns"), "other")), None);
        m.holds.lock().unwrap().insert(k.owned(), now);
        assert_eq!(m.held(k), None, "expired");
        assert!(m.holds.lock().unwrap().is_empty(), "and forgotten");
    }

    #[test]
    fn a_streak_counts_one_step_at_one_generation() {
        let m = Memory::default();
        let k = key(None, "o");
        assert_eq!(m.streak(k, Some(("a", Some(1)))), 1);
        assert_eq!(m.streak(k, Some(("a", Some(1)))), 2);
        assert_eq!(m.streak(k, Some(("b", Some(1)))), 1, "another step");
        assert_eq!(m.streak(k, Some(("b", Some(2)))), 1, "another generation");
        assert_eq!(m.streak(k, Some(("b", Some(2)))), 2);
        assert_eq!(m.streak(k, None), 0);
        assert!(m.streaks.lock().unwrap().is_empty(), "settled: forgotten");
        assert_eq!(m.streak(k, Some(("b", Some(2)))), 1);
    }

    #[test]
    fn owned_keys_join_namespace_and_name() {
        let k = key(Some("ns"), "x").owned();
        assert_eq!(&*k.0, "ns/x");
        let k = key(None, "x").owned();
        assert_eq!(&*k.0, "x");
    }

    #[test]
    fn borrowed_keys_find_owned_ones_and_namespaces_are_told_apart() {
        let m = Memory::default();
        m.record(key(Some("a"), "x"), settled(5));
        m.record(key(Some("ab"), "x"), settled(9));
        m.record(key(None, "x"), settled(7));
        let stale = |ns, rv| m.start(key(ns, "x"), Some(rv)).stale_for.is_some();
        assert!(stale(Some("a"), 4));
        assert!(!stale(Some("a"), 5));
        assert!(stale(Some("ab"), 8));
        assert!(stale(None, 6));
        assert!(!stale(Some("b"), 1), "never seen");
        assert_eq!(m.forget_missing(&|k| k == "a/x"), 2);
        assert!(stale(Some("a"), 4));
        assert!(!stale(None, 6));
    }

    #[test]
    fn a_suspect_object_is_reread_once() {
        let m = Memory::default();
        let k = key(Some("ns"), "o");
        assert!(!m.suspect(k), "never ran");
        m.record(k, settled(5));
        assert!(
            !m.start(k, Some(5)).reread,
            "trusted until the audit says otherwise"
        );
        m.record(k, settled(5));
        assert!(m.suspect(k));
        assert!(m.start(k, Some(5)).reread);
        m.record(k, settled(5));
        assert!(!m.start(k, Some(5)).reread, "once");
    }

    // The packed fields are independent: setting one leaves the others as they were, at their
    // extremes too.
    #[test]
    fn packed_fields_keep_to_their_bits() {
        let mut e = Entry::default();
        e.set_written_rv(RV_MASK);
        e.set_failures(u64::MAX);
        e.set_status_failures(u64::MAX);
        e.set_echo(true);
        e.set_ready(true);
        e.set_suspect(true);
        e.set_phase(Phase::Stale { since: 7 });
        assert!(e.suspect());
        assert_eq!(e.written_rv(), RV_MASK);
        assert_eq!(u64::from(e.failures()), MAX_FAILURES, "saturates");
        assert_eq!(
            u64::from(e.status_failures()),
            MAX_STATUS_FAILURES,
            "saturates"
        );
        assert!(e.echo());
        assert!(e.ready());
        assert!(e.phase() == Phase::Stale { since: 7 });
        e.set_written_rv(3);
        e.set_failures(0);
        e.set_echo(false);
        e.set_suspect(false);
        e.set_phase(Phase::Settled { since: 9 });
        assert!(!e.suspect());
        assert_eq!((e.written_rv(), e.failures(), e.ready()), (3, 0, true));
        assert_eq!((e.status_failures(), e.echo()), (15, false));
        assert!(e.phase() == Phase::Settled { since: 9 });
        e.set_status_failures(0);
        assert_eq!(u64::from(e.failures()), 0);
        e.set_phase(Phase::Gone);
        assert!(e.phase() == Phase::Gone);
        e.set_ready(false);
        e.set_phase(Phase::Idle);
        assert_eq!((e.written_rv(), e.failures(), e.ready()), (3, 0, false));
        assert!(e.phase() == Phase::Idle);
        assert_eq!(e.due, NOT_DUE);
    }

    #[test]
    fn versions_past_48_bits_are_not_numbers() {
        assert_eq!(rv_number(Some("281474976710655")), Some(RV_MASK));
        assert_eq!(rv_number(Some("281474976710656")), None);
        assert_eq!(rv_number(Some("0")), None);
        assert_eq!(rv_number(Some("abc")), None);
    }

    #[test]
    fn an_entry_stays_small() {
        // The framework's memory cost per cached object (plus the key); see the module docs.
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        assert_eq!(std::mem::size_of::<(Key, Entry)>(), 32);
    }

    #[test]
    fn failures_count_up_and_reset() {
        let m = Memory::default();
        let k = key(None, "o");
        let failed = Outcome {
            failed: true,
            settled: false,
            ..settled(3)
        };
        assert_eq!(m.record(k, failed).failures, 1);
        assert_eq!(m.start(k, Some(3)).failures, 1);
        assert_eq!(m.record(k, settled(3)).failures, 0);
    }

    #[test]
    fn status_failures_count_up_and_reset_apart_from_run_failures() {
        let m = Memory::default();
        let k = key(None, "o");
        let status = |status| Outcome {
            status,
            ..settled(3)
        };
        for n in 1..=20 {
            let c = m.record(k, status(StatusWrite::Failed));
            assert_eq!((c.failures, c.status_failures), (0, n.min(15)), "saturates");
        }
        assert_eq!(
            m.record(k, status(StatusWrite::NotNeeded)).status_failures,
            0
        );
        m.record(k, status(StatusWrite::Failed));
        assert_eq!(
            m.record(
                k,
                Outcome {
                    wrote_rv: Some(4),
                    ..status(StatusWrite::Written)
                }
            )
            .status_failures,
            0
        );
    }

    #[test]
    fn a_view_at_our_own_status_write_is_its_echo() {
        let m = Memory::default();
        let k = key(None, "o");
        let wrote = |rv, status| Outcome {
            wrote_rv: Some(rv),
            status,
            ..settled(3)
        };
        m.record(k, wrote(4, StatusWrite::Written));
        assert_eq!(m.start(k, Some(4)).echo_rv, Some(4));
        // A step's own write is not the runtime's echo.
        m.record(k, wrote(5, StatusWrite::NotNeeded));
        assert_eq!(m.start(k, Some(5)).echo_rv, None);
    }

    #[test]
    fn a_gone_object_never_runs_on_an_older_view_but_a_new_one_of_its_name_does() {
        let m = Memory::default();
        let k = key(Some("ns"), "o");
        m.record(k, settled(5));
        m.record(
            k,
            Outcome {
                seen_rv: Some(8),
                wrote_rv: Some(9),
                settled: false,
                gone: true,
                ..settled(8)
            },
        );
        for rv in [5, 8, 9] {
            assert!(m.start(k, Some(rv)).gone, "view at {rv}");
        }
        m.finish(k, NextRun::After(Duration::ZERO), Some(false));
        assert_eq!(
            m.counts(&|_| true),
            (0, 0),
            "a gone object is neither due nor unready"
        );
        let new = m.start(k, Some(12));
        assert!(!new.gone && new.stale_for.is_none() && new.failures == 0);
        assert!(!m.start(k, Some(12)).gone);
        assert_eq!(m.forget_missing(&|_| false), 1);
    }

    #[test]
    fn due_and_ready_counts_follow_the_runs() {
        let m = Memory::default();
        let k = key(None, "o");
        let all = |_: &str| true;
        m.record(k, settled(3));
        m.finish(k, NextRun::After(Duration::ZERO), Some(false));
        assert_eq!(m.counts(&all), (1, 1));
        m.start(k, Some(3));
        m.finish(k, NextRun::After(Duration::from_secs(600)), Some(true));
        assert_eq!(m.counts(&all), (0, 0));
        assert_eq!(m.counts(&|_| false), (0, 0));
    }
}
