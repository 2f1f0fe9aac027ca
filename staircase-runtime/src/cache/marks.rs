//! Watermarks: what a store must have seen before a cached read of an object a step wrote may be
//! served from it.

use std::time::Duration;

use tokio::time::Instant;

use hashbrown::HashMap;
use tokio::sync::watch;

use crate::memory::rv_number;

/// A mark no store ever reaches (the object was created and deleted by others while the watch
/// was down) is dropped after this long; reads of it have gone to the API server since it was
/// overdue anyway.
const EXPIRE_AFTER: Duration = Duration::from_secs(300);

/// `(namespace, name)` of an object in a store.
pub(crate) type ObjKey = (Option<String>, String);

/// What a step's write left the object at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Created, updated or patched: the store must hold this version or a later one.
    At(u64),
    /// Deleted: the store must no longer hold the object, or hold it being deleted, or have seen
    /// the deletion's version (when the server answered with the deleted object).
    Gone(Option<u64>),
}

/// How the store shows one object: its version and whether it is being deleted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shown {
    pub(crate) rv: Option<u64>,
    pub(crate) deleting: bool,
}

impl Want {
    /// The mark for a write that answered with `rv` (`deleted`: a DELETE). `None` when there is
    /// nothing to compare a store with: resourceVersions are compared as numbers, as for the
    /// primary object, and a write whose version is not a number leaves no mark.
    pub(crate) fn of(deleted: bool, rv: Option<&str>) -> Option<Want> {
        let rv = rv_number(rv);
        match deleted {
            true => Some(Want::Gone(rv)),
            false => rv.map(Want::At),
        }
    }

    /// Whether a store that shows the object as `shown`, and has applied every change of it up
    /// to `progress` (an event of the object at that version, or a whole list at it), has
    /// caught up with this mark.
    fn reached(self, progress: u64, shown: Option<Shown>) -> bool {
        match self {
            Want::At(w) => progress >= w || shown.and_then(|s| s.rv).is_some_and(|v| v >= w),
            Want::Gone(rv) => match shown {
                None => true,
                Some(s) if s.deleting => true,
                Some(s) => rv.is_some_and(|r| progress >= r || s.rv.is_some_and(|v| v >= r)),
            },
        }
    }
}

struct Mark {
    want: Want,
    since: Instant,
}

/// What the store has applied so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Seen {
    /// The first list is in.
    pub(crate) synced: bool,
    /// The highest resourceVersion of the latest complete list: an object it does not hold was
    /// deleted by then. (Watch events only vouch for their own object: a watch cache that lost
    /// an event says nothing about it by delivering others.)
    pub(crate) listed: u64,
    /// Bumped by every change, to wake waiting reads.
    changes: u64,
}

/// Whether a read may be served from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fresh {
    /// Yes: it holds every version this operator's steps wrote (that the read concerns).
    Cached,
    /// No, the store has not finished its first list in time.
    NotSynced,
    /// No, a write's mark was not reached in time.
    Behind,
}

/// One store's watermarks and progress.
pub(crate) struct Tracker {
    marks: std::sync::Mutex<HashMap<ObjKey, Mark>>,
    seen: watch::Sender<Seen>,
    /// The highest version of the first list (or a swapped relist) so far: the store only holds
    /// those objects once the list ends.
    listing: std::sync::Mutex<u64>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            marks: Default::default(),
            seen: watch::Sender::new(Seen::default()),
            listing: Default::default(),
        }
    }
}

impl Tracker {
    fn marks(&self) -> std::sync::MutexGuard<'_, HashMap<ObjKey, Mark>> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A step wrote the object `key`.
    pub(crate) fn mark(&self, key: ObjKey, want: Want) {
        let mark = Mark {
            want,
            since: Instant::now(),
        };
        self.marks().insert(key, mark);
    }

    /// Marks not yet reached (for tests and metrics: memory stays O(objects being written)).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn pending(&self) -> usize {
        self.marks().len()
    }

    /// An object of a list the store only shows once the list ends.
    pub(crate) fn listed(&self, rv: Option<&str>) {
        if let Some(v) = rv_number(rv) {
            let mut l = self.listing.lock().unwrap_or_else(|e| e.into_inner());
            *l = (*l).max(v);
        }
    }

    /// A list ended: the store holds what it listed, all of it.
    pub(crate) fn list_done(&self, look: impl Fn(&ObjKey) -> Option<Shown>) {
        let listed = std::mem::take(&mut *self.listing.lock().unwrap_or_else(|e| e.into_inner()));
        let mut progress = 0;
        self.seen.send_modify(|s| {
            s.listed = s.listed.max(listed);
            s.synced = true;
            s.changes += 1;
            progress = s.listed;
        });
        self.marks()
            .retain(|k, m| !m.want.reached(progress, look(k)) && m.since.elapsed() < EXPIRE_AFTER);
    }

    /// The store applied a change of `key` at `rv`: its mark, if any, is reached or not, and
    /// waiting reads look again.
    pub(crate) fn applied(
        &self,
        key: ObjKey,
        rv: Option<&str>,
        look: impl Fn(&ObjKey) -> Option<Shown>,
    ) {
        let mut marks = self.marks();
        if !marks.is_empty() {
            let at = rv_number(rv).unwrap_or(0);
            if let Some(m) = marks.get(&key)
                && m.want.reached(at, look(&key))
            {
                marks.remove(&key);
            }
            // Marks no watch event ever reaches (lost while the watch was down) go eventually.
            marks.retain(|_, m| m.since.elapsed() < EXPIRE_AFTER);
        }
        drop(marks);
        self.seen.send_modify(|s| s.changes += 1);
    }

    /// Waits (until `bound` after each write) for the store to be synced and to reach the marks
    /// of the objects `concerns` selects. `look` tells how the store shows an object now.
    pub(crate) async fn fresh(
        &self,
        bound: Duration,
        concerns: impl Fn(&ObjKey) -> bool,
        look: impl Fn(&ObjKey) -> Option<Shown>,
    ) -> (Fresh, bool) {
        let mut rx = self.seen.subscribe();
        let started = Instant::now();
        let mut waited = false;
        loop {
            let seen = *rx.borrow_and_update();
            let deadline = if !seen.synced {
                if started.elapsed() >= bound {
                    return (Fresh::NotSynced, waited);
                }
                started + bound
            } else {
                let mut marks = self.marks();
                let mut oldest: Option<Instant> = None;
                marks.retain(|k, m| {
                    if !concerns(k) {
                        return true;
                    }
                    if m.want.reached(seen.listed, look(k)) {
                        return false;
                    }
                    oldest = Some(oldest.map_or(m.since, |o| o.min(m.since)));
                    true
                });
                let Some(oldest) = oldest else {
                    return (Fresh::Cached, waited);
                };
                if oldest.elapsed() >= bound {
                    return (Fresh::Behind, waited);
                }
                oldest + bound
            };
            waited = true;
            let left = deadline.saturating_duration_since(Instant::now());
            // A change of the store wakes us; so does the deadline, for the verdict above.
            let _ = tokio::time::timeout(left, rx.changed()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(rv: u64, deleting: bool) -> Option<Shown> {
        Some(Shown {
            rv: Some(rv),
            deleting,
        })
    }

    #[test]
    fn a_written_version_is_reached_by_the_object_or_by_progress() {
        let w = Want::At(10);
        assert!(!w.reached(9, None));
        assert!(!w.reached(9, shown(9, false)));
        assert!(w.reached(9, shown(10, false)));
        assert!(w.reached(10, None), "deleted by someone else since");
    }

    #[test]
    fn only_the_objects_own_events_or_a_whole_list_reach_its_mark() {
        let t = Tracker::default();
        let (a, b): (ObjKey, ObjKey) = ((None, "a".into()), (None, "b".into()));
        t.list_done(|_| None);
        t.mark(a.clone(), Want::At(5));
        // A later event of another object says nothing about `a` (its event may be lost).
        t.applied(b.clone(), Some("9"), |_| None);
        assert_eq!(t.pending(), 1);
        // `a` deleted by someone else: its own deletion event reaches the mark.
        t.applied(a.clone(), Some("7"), |_| None);
        assert_eq!(t.pending(), 0);
        // A relist that no longer holds `a` (versions up to 9) vouches for it too.
        t.mark(a.clone(), Want::At(8));
        t.listed(Some("9"));
        t.list_done(|_| None);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_deletion_is_reached_when_the_object_is_gone_or_going() {
        assert!(Want::Gone(None).reached(0, None));
        assert!(Want::Gone(None).reached(0, shown(5, true)));
        assert!(!Want::Gone(None).reached(100, shown(5, false)));
        assert!(!Want::Gone(Some(7)).reached(6, shown(5, false)));
        assert!(Want::Gone(Some(7)).reached(7, shown(5, false)));
        assert!(
            Want::Gone(Some(7)).reached(0, shown(8, false)),
            "created again"
        );
    }

    #[test]
    fn versions_that_are_not_numbers_leave_no_mark() {
        assert_eq!(Want::of(false, Some("abc")), None);
        assert_eq!(Want::of(false, None), None);
        assert_eq!(Want::of(false, Some("12")), Some(Want::At(12)));
        assert_eq!(Want::of(true, Some("abc")), Some(Want::Gone(None)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_waits_for_the_mark_and_is_bounded() {
        let t = std::sync::Arc::new(Tracker::default());
        let key: ObjKey = (Some("ns".into()), "a".into());
        t.list_done(|_| None);
        t.mark(key.clone(), Want::At(5));
        let bound = Duration::from_secs(2);
        // Behind until the store applies version 5.
        let waiting = {
            let t = t.clone();
            tokio::spawn(async move { t.fresh(bound, |_| true, |_| None).await })
        };
        tokio::task::yield_now().await;
        t.applied(key.clone(), Some("5"), |_| shown(5, false));
        assert_eq!(waiting.await.unwrap(), (Fresh::Cached, true));
        assert_eq!(t.pending(), 0, "a reached mark is dropped");

        t.mark(key.clone(), Want::At(9));
        let (fresh, waited) = t.fresh(bound, |_| true, |_| shown(5, false)).await;
        assert_eq!((fresh, waited), (Fresh::Behind, true));
        // Once overdue, reads go to the server at once.
        let (fresh, waited) = t.fresh(bound, |_| true, |_| shown(5, false)).await;
        assert_eq!((fresh, waited), (Fresh::Behind, false));
        // Other objects are not held up.
        let other = |k: &ObjKey| k.1 != "a";
        assert_eq!(t.fresh(bound, other, |_| None).await.0, Fresh::Cached);
    }
}
