//! A replica's side of the split: which slots it may start runs in, and which still have runs
//! in flight, so it can acknowledge a handoff only once the slot is quiet.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};

use tokio::sync::watch;

use super::assignment::{Ack, Assignment};
use super::hash::{SLOTS, ranges, slot_of};

pub(crate) struct Gate {
    open: Vec<AtomicBool>,
    in_flight: Vec<AtomicUsize>,
    /// The assignment generation applied last (0: none this term).
    seen: AtomicU64,
    /// Bumped when slots open, so the controller runs every object again (those of the new
    /// slots were skipped while they were someone else's).
    opened: watch::Sender<u64>,
    /// With the split done by the API server: the slots the primary watch selects, and those
    /// its cache holds (a watch with them has synced). A slot opens only once cached; without
    /// the server's split every slot counts as cached.
    filtered: AtomicBool,
    selection: Mutex<Vec<usize>>,
    cached: Vec<AtomicBool>,
    /// Bumped when the selection grows: the primary watch restarts with it.
    reselect: watch::Sender<u64>,
}

/// A run in progress in a slot; dropping it ends it.
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            open: (0..SLOTS).map(|_| AtomicBool::new(false)).collect(),
            in_flight: (0..SLOTS).map(|_| AtomicUsize::new(0)).collect(),
            seen: AtomicU64::new(0),
            opened: watch::channel(0).0,
            filtered: AtomicBool::new(false),
            selection: Mutex::default(),
            cached: (0..SLOTS).map(|_| AtomicBool::new(true)).collect(),
            reselect: watch::channel(0).0,
        }
    }
}

impl Gate {
    /// Starts a run of the object with this uid if its slot is open here.
    pub(crate) fn enter(&self, uid: &str) -> Option<InFlight<'_>> {
        let s = slot_of(uid);
        // Counted before the check, and the closer checks the count after closing (both
        // SeqCst): a run that saw the slot open is always seen in flight by the handoff.
        self.in_flight[s].fetch_add(1, SeqCst);
        let run = InFlight(&self.in_flight[s]);
        self.open[s].load(SeqCst).then_some(run)
    }

    /// Applies an assignment read for this member and term; an older one than the last applied
    /// is ignored (reads may be served out of order). Returns how many slots it closed.
    pub(crate) fn apply(&self, a: &Assignment, member: &str, term: &str) -> u64 {
        if a.generation < self.seen.load(SeqCst) {
            return 0;
        }
        let mut want = [false; SLOTS];
        let runnable = a.runnable(member, term);
        for &s in &runnable {
            want[s] = self.cached[s].load(SeqCst);
        }
        if self.filtered.load(SeqCst) {
            let mut wanted = runnable;
            wanted.extend(a.incoming(member, term));
            wanted.sort_unstable();
            let mut selection = self.selection.lock().unwrap_or_else(|e| e.into_inner());
            if wanted.iter().any(|s| selection.binary_search(s).is_err()) {
                *selection = wanted;
                self.reselect.send_modify(|n| *n += 1);
            }
        }
        let (mut opened, mut closed) = (false, 0);
        for (s, w) in want.into_iter().enumerate() {
            let was = self.open[s].swap(w, SeqCst);
            opened |= w && !was;
            closed += u64::from(was && !w);
        }
        self.seen.store(a.generation, SeqCst);
        if opened {
            self.opened.send_modify(|n| *n += 1);
        }
        closed
    }

    /// Whether the slot of the object with this uid is open here.
    pub(crate) fn is_open(&self, uid: &str) -> bool {
        self.open[slot_of(uid)].load(SeqCst)
    }

    /// Whether the API server splits the primary watch for this replica (decided per term).
    pub(crate) fn filter_on_server(&self, on: bool) {
        self.filtered.store(on, SeqCst);
        self.selection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        for c in &self.cached {
            c.store(!on, SeqCst);
        }
    }

    /// The slots the primary watch should select now.
    pub(crate) fn selection(&self) -> Vec<usize> {
        self.selection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A primary watch selecting `slots` has synced: the cache holds exactly them.
    pub(crate) fn synced(&self, slots: &[usize]) {
        let mut held = [false; SLOTS];
        for &s in slots {
            held[s] = true;
        }
        for (s, h) in held.into_iter().enumerate() {
            self.cached[s].store(h, SeqCst);
        }
    }

    /// Changes each time the selection grows.
    pub(crate) fn reselects(&self) -> watch::Receiver<u64> {
        self.reselect.subscribe()
    }

    /// Closes every slot: the term ended (or is starting).
    pub(crate) fn close_all(&self) {
        for o in &self.open {
            o.store(false, SeqCst);
        }
        self.seen.store(0, SeqCst);
    }

    /// What to acknowledge: the generation applied and every slot open or still running.
    pub(crate) fn ack(&self, term: &str) -> Ack {
        let running =
            (0..SLOTS).filter(|&s| self.open[s].load(SeqCst) || self.in_flight[s].load(SeqCst) > 0);
        Ack {
            term: term.to_string(),
            seen: self.seen.load(SeqCst),
            running: ranges(running),
        }
    }

    /// Slots open here.
    pub(crate) fn owned(&self) -> usize {
        self.open.iter().filter(|o| o.load(SeqCst)).count()
    }

    /// Changes each time slots open.
    pub(crate) fn opened(&self) -> watch::Receiver<u64> {
        self.opened.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::shard::assignment::Member;

    #[test]
    fn a_slot_runs_only_while_open_and_acks_wait_for_runs_in_flight() {
        let gate = Gate::default();
        let live = BTreeMap::from([(
            "a".to_string(),
            Member {
                term: "t".into(),
                ack: None,
            },
        )]);
        let a = Assignment::default().plan(&live);
        assert!(gate.enter("u").is_none(), "closed before any assignment");
        gate.apply(&a, "a", "other-term");
        assert!(
            gate.enter("u").is_none(),
            "another term's grant is not ours"
        );
        let opened = gate.opened();
        gate.apply(&a, "a", "t");
        assert!(opened.has_changed().unwrap());
        let run = gate.enter("u").expect("open");
        gate.close_all();
        assert!(gate.enter("u").is_none());
        let s = slot_of("u");
        assert_eq!(gate.ack("t").running, s.to_string(), "still running");
        drop(run);
        assert_eq!(gate.ack("t").running, "");
        // A later assignment that moves the slot away closes it.
        let b = BTreeMap::from([(
            "b".to_string(),
            Member {
                term: "t".into(),
                ack: None,
            },
        )]);
        let mut both = live.clone();
        both.extend(b);
        let mut acked = both.clone();
        acked.get_mut("a").unwrap().ack = Some(gate.ack("t"));
        let moving = a.plan(&acked);
        assert_eq!(gate.apply(&moving, "a", "t"), 0, "closed already");
        assert_eq!(gate.owned(), SLOTS / 2);
        // An older generation than the one applied is ignored.
        gate.apply(&a, "a", "t");
        assert_eq!(gate.owned(), SLOTS / 2);
    }
}
