//! The assignment of slots to replicas, as the assigning replica publishes it in a ConfigMap,
//! and how the next one is planned from the live members.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::hash::{SLOTS, parse_ranges, ranges};

/// One slot's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    /// The replica that may run the slot's objects (unless it is moving).
    pub(crate) owner: Option<String>,
    /// Moving to this replica: the owner stops starting runs, finishes those in flight and
    /// acknowledges; only then does this replica become the owner.
    pub(crate) to: Option<String>,
    /// The generation that last gave the slot its owner or its move.
    pub(crate) since: u64,
}

/// Which replica runs which part of the hash space: the document the assigning replica (the
/// leader) publishes in the ConfigMap `<lease>-shards`, key `assignment`, beside a `summary`
/// for people (`kubectl get configmap <lease>-shards -o yaml`).
///
/// Slot `s` is the hash range `[s << 56, (s + 1) << 56)` of the 64-bit FNV-1a hash of an
/// object's uid ([`slot_of`](super::slot_of)). A replica runs a slot's objects only while the
/// slot is settled on it: it is the owner, the slot is not moving, and the member term the
/// assignment names is the replica's current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub(crate) generation: u64,
    /// Member identity → the term the slots were given for.
    pub(crate) members: BTreeMap<String, String>,
    pub(crate) slots: Vec<Slot>,
}

impl Default for Assignment {
    fn default() -> Self {
        Assignment {
            generation: 0,
            members: BTreeMap::new(),
            slots: vec![Slot::default(); SLOTS],
        }
    }
}

/// What a member publishes on its Lease (annotation [`ACK`]): the assignment generation it
/// has applied and the slots it may still be running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ack {
    pub(crate) term: String,
    pub(crate) seen: u64,
    /// Compact ranges ([`ranges`]).
    pub(crate) running: String,
}

/// The Lease annotation a member acknowledges in.
pub(crate) const ACK: &str = "staircase.rs/shards";

/// A live member, as the assigner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) term: String,
    pub(crate) ack: Option<Ack>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    generation: u64,
    members: BTreeMap<String, String>,
    ranges: Vec<WireRange>,
}

#[derive(Serialize, Deserialize)]
struct WireRange {
    slots: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    to: Option<String>,
    since: u64,
}

impl Assignment {
    /// The generation: raised by every change, so a replica never applies an older one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The member identities slots are given to.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// The replica that runs slot `slot` now: its owner when it is not moving, else `None`
    /// (during a handoff, and for a slot not given to anyone).
    pub fn settled_owner(&self, slot: usize) -> Option<&str> {
        let s = self.slots.get(slot)?;
        s.to.is_none().then_some(s.owner.as_deref()).flatten()
    }

    /// The slots settled on `member` (see [`settled_owner`](Self::settled_owner)).
    pub fn settled_on(&self, member: &str) -> Vec<usize> {
        (0..SLOTS)
            .filter(|&s| self.settled_owner(s) == Some(member))
            .collect()
    }

    /// The slots `member` owns, settled on it or moving away from it.
    pub(crate) fn owned_by(&self, member: &str) -> Vec<usize> {
        (0..SLOTS)
            .filter(|&s| self.slots[s].owner.as_deref() == Some(member))
            .collect()
    }

    /// Slots that are moving or have no owner.
    pub fn unsettled(&self) -> usize {
        (0..SLOTS)
            .filter(|&s| self.settled_owner(s).is_none())
            .count()
    }

    /// The slots `member` may run while its term is `term`.
    pub(crate) fn runnable(&self, member: &str, term: &str) -> Vec<usize> {
        if self.members.get(member).map(String::as_str) != Some(term) {
            return Vec::new();
        }
        self.settled_on(member)
    }

    /// The slots moving to `member` while its term is `term`: with the split done by the API
    /// server, its cache takes them in before they are its to run.
    pub(crate) fn incoming(&self, member: &str, term: &str) -> Vec<usize> {
        if self.members.get(member).map(String::as_str) != Some(term) {
            return Vec::new();
        }
        (0..SLOTS)
            .filter(|&s| self.slots[s].to.as_deref() == Some(member))
            .collect()
    }

    /// The JSON published in the ConfigMap.
    pub(crate) fn to_json(&self) -> String {
        let mut out: Vec<WireRange> = Vec::new();
        let mut start = 0;
        for s in 1..=SLOTS {
            if s == SLOTS || self.slots[s] != self.slots[start] {
                let slot = &self.slots[start];
                out.push(WireRange {
                    slots: ranges(start..s),
                    owner: slot.owner.clone(),
                    to: slot.to.clone(),
                    since: slot.since,
                });
                start = s;
            }
        }
        serde_json::to_string(&Wire {
            generation: self.generation,
            members: self.members.clone(),
            ranges: out,
        })
        .expect("an assignment serializes")
    }

    /// Parses [`to_json`](Self::to_json)'s output; the error says what is wrong.
    pub(crate) fn from_json(s: &str) -> Result<Self, String> {
        let wire: Wire = serde_json::from_str(s).map_err(|e| e.to_string())?;
        let mut a = Assignment {
            generation: wire.generation,
            members: wire.members,
            ..Assignment::default()
        };
        let mut covered = vec![false; SLOTS];
        for r in wire.ranges {
            let slots =
                parse_ranges(&r.slots).ok_or_else(|| format!("bad slot range {:?}", r.slots))?;
            for s in slots {
                covered[s] = true;
                a.slots[s] = Slot {
                    owner: r.owner.clone(),
                    to: r.to.clone(),
                    since: r.since,
                };
            }
        }
        if covered.iter().any(|c| !c) {
            return Err("some slots are missing".into());
        }
        Ok(a)
    }

    /// For people, as the ConfigMap's `summary` key holds it: the generation, then one line per
    /// member with the slots settled on it, and the slots moving or without an owner.
    pub fn summary(&self) -> String {
        let mut out = format!("generation {}\n", self.generation);
        for m in self.members.keys() {
            let settled = self.settled_on(m);
            out += &format!("{m}: {} slots ({})\n", settled.len(), ranges(settled));
        }
        let moving: Vec<usize> = (0..SLOTS).filter(|&s| self.slots[s].to.is_some()).collect();
        if !moving.is_empty() {
            out += &format!("moving: {} slots ({})\n", moving.len(), ranges(moving));
        }
        let free: Vec<usize> = (0..SLOTS)
            .filter(|&s| self.slots[s].owner.is_none())
            .collect();
        if !free.is_empty() {
            out += &format!("unowned: {} slots ({})\n", free.len(), ranges(free));
        }
        out
    }

    /// The next assignment for these live members: slots of members that are gone (or began a
    /// new term) are freed, moves whose old owner acknowledged complete, free slots go to the
    /// members with the fewest, and members above their share move the excess to those below
    /// it. Moves only what balance needs. Unchanged (same generation) when nothing changes.
    #[cfg(test)]
    pub(crate) fn plan(&self, live: &BTreeMap<String, Member>) -> Assignment {
        self.plan_holding(live, &BTreeSet::new())
    }

    /// [`plan`](Self::plan), giving none of the `held` slots (those of a member gone, or in a
    /// new term, within the takeover delay: its last external calls may still land) to anyone.
    pub(crate) fn plan_holding(
        &self,
        live: &BTreeMap<String, Member>,
        held: &BTreeSet<usize>,
    ) -> Assignment {
        let mut next = self.clone();
        let generation = self.generation + 1;
        let current = |id: &Option<String>| {
            id.as_ref()
                .is_some_and(|id| match (live.get(id), self.members.get(id)) {
                    (Some(m), Some(term)) => m.term == *term,
                    _ => false,
                })
        };
        for (s, slot) in next.slots.iter_mut().enumerate() {
            if slot.owner.is_some() && !current(&slot.owner) {
                // Gone, or a new term: that replica stopped everything when its term ended.
                *slot = Slot {
                    since: generation,
                    ..Slot::default()
                };
                continue;
            }
            let Some(to) = slot.to.clone() else { continue };
            if !live.contains_key(&to) {
                slot.to = None;
                slot.since = generation;
                continue;
            }
            let owner = slot.owner.as_deref().unwrap_or_default();
            let released = live[owner].ack.as_ref().is_some_and(|ack| {
                ack.term == live[owner].term
                    && ack.seen >= slot.since
                    && parse_ranges(&ack.running).is_some_and(|r| !r.contains(&s))
            });
            if released {
                *slot = Slot {
                    owner: Some(to),
                    to: None,
                    since: generation,
                };
            }
        }
        next.members = live
            .iter()
            .map(|(id, m)| (id.clone(), m.term.clone()))
            .collect();
        // A free slot a live member still reports running (its ack) waits until it stops: after
        // the ConfigMap was deleted, say, or a member that has not yet applied a freeing.
        let mut busy = [false; SLOTS];
        for &s in held {
            busy[s] = true;
        }
        for m in live.values() {
            let ack = m.ack.as_ref().filter(|a| a.term == m.term);
            for s in ack
                .and_then(|a| parse_ranges(&a.running))
                .unwrap_or_default()
            {
                busy[s] = true;
            }
        }
        next.balance(generation, &busy);
        if next.slots == self.slots && next.members == self.members {
            return self.clone();
        }
        next.generation = generation;
        next
    }

    /// Where each slot is headed: the mover's target, else its owner.
    fn destined(&self, slot: &Slot) -> Option<String> {
        slot.to.clone().or_else(|| slot.owner.clone())
    }

    fn balance(&mut self, generation: u64, busy: &[bool; SLOTS]) {
        let r = self.members.len();
        if r == 0 {
            return;
        }
        let mut count: BTreeMap<String, usize> =
            self.members.keys().map(|m| (m.clone(), 0)).collect();
        for slot in &self.slots {
            if let Some(d) = self.destined(slot) {
                *count.get_mut(&d).expect("destined to a member") += 1;
            }
        }
        // Shares: SLOTS / r each, the remainder to those that hold the most already, so a
        // balanced assignment stays as it is.
        let mut order: Vec<String> = count.keys().cloned().collect();
        order.sort_by(|a, b| count[b].cmp(&count[a]).then(a.cmp(b)));
        let share: BTreeMap<String, usize> = order
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), SLOTS / r + usize::from(i < SLOTS % r)))
            .collect();
        // The first member below its share, in identity order: free slots are handed out in
        // runs, so a member's share stays a few contiguous ranges.
        let below =
            |count: &BTreeMap<String, usize>| count.keys().find(|m| count[*m] < share[*m]).cloned();
        for (s, slot) in self.slots.iter_mut().enumerate() {
            if slot.owner.is_none() && !busy[s] {
                let Some(m) = below(&count) else { break };
                *count.get_mut(&m).expect("member") += 1;
                *slot = Slot {
                    owner: Some(m),
                    to: None,
                    since: generation,
                };
            }
        }
        // Excess moves from the end of each member's slots, keeping its ranges contiguous.
        for s in (0..SLOTS).rev() {
            let slot = &self.slots[s];
            let Some(owner) = slot.owner.clone().filter(|_| slot.to.is_none()) else {
                continue;
            };
            if count[&owner] <= share[&owner] {
                continue;
            }
            let Some(m) = below(&count) else { break };
            *count.get_mut(&owner).expect("member") -= 1;
            *count.get_mut(&m).expect("member") += 1;
            self.slots[s].to = Some(m);
            self.slots[s].since = generation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(ids: &[(&str, &str)]) -> BTreeMap<String, Member> {
        ids.iter()
            .map(|(id, term)| {
                (
                    id.to_string(),
                    Member {
                        term: term.to_string(),
                        ack: None,
                    },
                )
            })
            .collect()
    }

    /// Every member acknowledges the generation it is given, running only what is settled on it.
    fn ack_all(a: &Assignment, live: &mut BTreeMap<String, Member>) {
        for (id, m) in live.iter_mut() {
            m.ack = Some(Ack {
                term: m.term.clone(),
                seen: a.generation,
                running: ranges(a.runnable(id, &m.term)),
            });
        }
    }

    /// Plans and acknowledges until nothing changes; returns the settled assignment.
    fn settle(mut a: Assignment, live: &mut BTreeMap<String, Member>) -> Assignment {
        ack_all(&a, live);
        for _ in 0..10 {
            let next = a.plan(live);
            if next == a {
                return a;
            }
            a = next;
            ack_all(&a, live);
        }
        panic!("did not settle: {}", a.summary());
    }

    fn counts(a: &Assignment) -> Vec<usize> {
        a.members.keys().map(|m| a.settled_on(m).len()).collect()
    }

    #[test]
    fn free_slots_are_shared_out_at_once() {
        let mut members = live(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let a = Assignment::default().plan(&members);
        assert_eq!(a.generation, 1);
        assert_eq!(counts(&a), vec![86, 85, 85]);
        assert_eq!(a.unsettled(), 0);
        // Settled: planning again changes nothing.
        ack_all(&a, &mut members);
        assert_eq!(a.plan(&members), a);
    }

    #[test]
    fn a_new_member_gets_a_quarter_and_only_that_moves() {
        let mut members = live(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let three = settle(Assignment::default(), &mut members);
        members.insert(
            "d".into(),
            Member {
                term: "1".into(),
                ack: None,
            },
        );
        let next = three.plan(&members);
        // Nothing moves before its owner acknowledges: the slots are unsettled meanwhile.
        assert_eq!(next.settled_on("d").len(), 0);
        assert_eq!(next.unsettled(), 64);
        let four = settle(next, &mut members);
        assert_eq!(counts(&four), vec![64, 64, 64, 64]);
        let moved = (0..SLOTS)
            .filter(|&s| three.settled_owner(s) != four.settled_owner(s))
            .count();
        assert_eq!(moved, 64);
    }

    #[test]
    fn a_move_completes_only_after_the_owner_stops_running_the_slot() {
        let mut members = live(&[("a", "1")]);
        let one = settle(Assignment::default(), &mut members);
        members.insert(
            "b".into(),
            Member {
                term: "1".into(),
                ack: None,
            },
        );
        let moving = one.plan(&members);
        let s = (0..SLOTS).find(|&s| moving.slots[s].to.is_some()).unwrap();
        // `a` saw the move but still runs the slot (a run in flight): the move waits.
        members.get_mut("a").unwrap().ack = Some(Ack {
            term: "1".into(),
            seen: moving.generation,
            running: ranges(0..SLOTS),
        });
        assert_eq!(moving.plan(&members), moving);
        // An acknowledgement of an older generation does not count either.
        members.get_mut("a").unwrap().ack = Some(Ack {
            term: "1".into(),
            seen: moving.generation - 1,
            running: String::new(),
        });
        assert_eq!(moving.plan(&members), moving);
        members.get_mut("a").unwrap().ack = Some(Ack {
            term: "1".into(),
            seen: moving.generation,
            running: ranges(moving.runnable("a", "1")),
        });
        let done = moving.plan(&members);
        assert_eq!(done.settled_owner(s), Some("b"));
    }

    #[test]
    fn a_lost_member_or_a_new_term_frees_its_slots_for_the_others() {
        let mut members = live(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let three = settle(Assignment::default(), &mut members);
        members.remove("c");
        let two = three.plan(&members);
        assert_eq!(counts(&two), vec![128, 128]);
        // `b` lost its Lease and came back under a new term: nothing of the old grant is its.
        members.get_mut("b").unwrap().term = "2".into();
        members.get_mut("b").unwrap().ack = None;
        let again = two.plan(&members);
        assert!(again.runnable("b", "1").is_empty());
        assert_eq!(again.settled_on("a").len(), 128);
        let settled = settle(again, &mut members);
        assert_eq!(counts(&settled), vec![128, 128]);
    }

    #[test]
    fn a_held_members_slots_wait_out_the_takeover_delay() {
        let mut members = live(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let three = settle(Assignment::default(), &mut members);
        let of_c = three.settled_on("c");
        members.remove("c");
        let held: BTreeSet<usize> = of_c.iter().copied().collect();
        // Gone, but within the delay: its slots are freed and given to nobody.
        let waiting = three.plan_holding(&members, &held);
        assert!(of_c.iter().all(|&s| waiting.settled_owner(s).is_none()));
        assert_eq!(waiting.settled_on("a"), three.settled_on("a"));
        assert_eq!(waiting.plan_holding(&members, &held), waiting);
        // The delay over: they go to the others.
        let after = waiting.plan(&members);
        assert_eq!(counts(&after), vec![128, 128]);
    }

    #[test]
    fn a_free_slot_a_live_member_still_runs_is_not_given_away() {
        let mut members = live(&[("a", "1"), ("b", "1")]);
        let settled = settle(Assignment::default(), &mut members);
        // The ConfigMap is gone: planning starts from nothing while both still run their slots.
        let fresh = Assignment {
            generation: settled.generation,
            ..Assignment::default()
        }
        .plan(&members);
        assert_eq!(fresh.unsettled(), SLOTS);
        ack_all(&fresh, &mut members);
        let next = fresh.plan(&members);
        assert_eq!(counts(&next), vec![128, 128]);
    }

    #[test]
    fn json_round_trips_and_rejects_holes() {
        let mut members = live(&[("a", "1"), ("b", "1")]);
        let a = settle(Assignment::default(), &mut members);
        assert_eq!(Assignment::from_json(&a.to_json()).unwrap(), a);
        let holed = a.to_json().replace("\"0-127\"", "\"0-126\"");
        assert!(Assignment::from_json(&holed).is_err());
        assert!(Assignment::from_json("{}").is_err());
    }
}
