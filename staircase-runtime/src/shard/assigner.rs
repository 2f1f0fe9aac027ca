//! The leader's job: watch the members' Leases, plan the next assignment and publish it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};

use super::assignment::{ACK, Ack, Assignment, Member};
use super::hash::SLOTS;
use super::member::{GROUP, lease_name};
use crate::LeaderElection;

/// The ConfigMap key holding the assignment.
pub(crate) const KEY: &str = "assignment";

/// The name of the assignment ConfigMap of the group of Lease `lease`.
pub(crate) fn map_name(lease: &str) -> String {
    format!("{lease}-shards")
}

/// What the assigner last saw of a member Lease, and when (on its own clock).
#[derive(PartialEq)]
struct Seen {
    holder: Option<String>,
    renewed: Option<String>,
    ack: Option<String>,
}

/// Called with each gap: how long a slot that changed hands had no replica running it.
pub(crate) type OnGap = Box<dyn Fn(Duration) + Send + Sync>;

pub(crate) struct Assigner {
    leases: Api<Lease>,
    maps: Api<ConfigMap>,
    group: String,
    map: String,
    observed: HashMap<String, (Seen, Instant)>,
    /// How long a member that stopped renewing, or began a new term without releasing its
    /// Lease, keeps its slots from everyone (`LeaderElection::takeover_delay`).
    takeover_delay: Duration,
    /// Per member Lease: the term last seen, and since when its slots are held (a crash seen).
    terms: HashMap<String, (String, Option<Instant>)>,
    /// Per held member identity: until when, and the slots it owned when it was seen crashed.
    holds: HashMap<String, (Instant, Vec<usize>)>,
    /// Per slot, since when it has had no runner (as far as this leader knows).
    unsettled: Vec<Option<Instant>>,
    on_gap: Option<OnGap>,
}

/// Reads the published assignment: `Ok(None)` when there is none yet.
pub(crate) async fn read(maps: &Api<ConfigMap>, lease: &str) -> kube::Result<Option<Parsed>> {
    Ok(maps.get_opt(&map_name(lease)).await?.map(|cm| {
        let rv = cm.resource_version();
        let text = cm.data.as_ref().and_then(|d| d.get(KEY));
        let assignment = match text {
            Some(t) => Assignment::from_json(t),
            None => Err(format!("no {KEY:?} key")),
        };
        Parsed { assignment, rv }
    }))
}

/// A published assignment, or why it does not parse.
pub(crate) struct Parsed {
    pub(crate) assignment: Result<Assignment, String>,
    rv: Option<String>,
}

impl Assigner {
    pub(crate) fn new(client: Client, cfg: &LeaderElection) -> Self {
        let (leases, maps) = match &cfg.namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client, ns),
            ),
            None => (
                Api::default_namespaced(client.clone()),
                Api::default_namespaced(client),
            ),
        };
        Assigner {
            leases,
            maps,
            map: map_name(&cfg.lease_name),
            group: cfg.lease_name.clone(),
            observed: HashMap::new(),
            takeover_delay: cfg.takeover_delay,
            terms: HashMap::new(),
            holds: HashMap::new(),
            unsettled: vec![None; SLOTS],
            on_gap: None,
        }
    }

    /// Reports every gap to `f`.
    pub(crate) fn on_gap(mut self, f: OnGap) -> Self {
        self.on_gap = Some(f);
        self
    }

    /// Measures the gaps `before` → `after` closed: a slot's gap starts when its settled owner
    /// goes (a move starts now; a lost owner's at its last renewal the leader saw) and ends when
    /// the slot is settled again.
    fn track(&mut self, before: &Assignment, after: &Assignment) {
        let now = Instant::now();
        for s in 0..SLOTS {
            let (b, a) = (before.settled_owner(s), after.settled_owner(s));
            if a == b {
                continue;
            }
            if let Some(old) = b {
                let lost = !after.members.contains_key(old);
                let last_seen = lost
                    .then(|| self.observed.get(&lease_name(&self.group, old)))
                    .flatten()
                    .map(|(_, at)| *at);
                self.unsettled[s] = Some(last_seen.unwrap_or(now));
            }
            if a.is_some()
                && let Some(since) = self.unsettled[s].take()
                && let Some(f) = &self.on_gap
            {
                f(now.saturating_duration_since(since));
            }
        }
    }

    /// The members whose Leases are held and renewed within their duration, as seen now, and
    /// those whose slots are held: within the takeover delay of their Lease expiring unreleased
    /// (a crash, a partition) or of a new term begun without a release (a restart under the
    /// same identity). Their runs may have left external calls that can still land.
    async fn live(
        &mut self,
    ) -> kube::Result<(BTreeMap<String, Member>, BTreeMap<String, Instant>)> {
        let lp = ListParams::default().labels(&format!("{GROUP}={}", self.group));
        let mut live = BTreeMap::new();
        let mut held = BTreeMap::new();
        let mut names = Vec::new();
        for lease in self.leases.list(&lp).await? {
            let name = lease.name_any();
            let spec = lease.spec.clone().unwrap_or_default();
            let ack_text = lease.annotations().get(ACK).cloned();
            let seen = Seen {
                holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
                renewed: spec.renew_time.as_ref().map(|t| t.0.to_string()),
                ack: ack_text.clone(),
            };
            let at = match self.observed.remove(&name) {
                Some((old, at)) if old == seen => at,
                // A new leader sees every member as just renewed: it frees nothing before a
                // full lease duration of its own observation.
                _ => Instant::now(),
            };
            let duration =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
            let ack: Option<Ack> = ack_text.and_then(|t| serde_json::from_str(&t).ok());
            match &seen.holder {
                // Released: whatever term comes next follows a clean stop.
                None => {
                    self.terms.remove(&name);
                }
                Some(holder) if !self.takeover_delay.is_zero() => {
                    let term = ack.as_ref().map(|a| a.term.clone()).unwrap_or_default();
                    let crashed = match self.terms.get(&name) {
                        // Expired unreleased: held from its expiry on.
                        _ if at.elapsed() >= duration => Some(at + duration),
                        Some((old, _)) if *old != term => Some(Instant::now()),
                        Some((_, since)) => *since,
                        None => None,
                    };
                    let crashed = crashed.filter(|t| t.elapsed() < self.takeover_delay);
                    if let Some(t) = crashed {
                        held.insert(holder.clone(), t + self.takeover_delay);
                    }
                    self.terms.insert(name.clone(), (term, crashed));
                }
                Some(_) => {}
            }
            if let (Some(holder), Some(ack)) = (&seen.holder, ack)
                && at.elapsed() < duration
            {
                live.insert(
                    holder.clone(),
                    Member {
                        term: ack.term.clone(),
                        ack: Some(ack),
                    },
                );
            }
            self.observed.insert(name.clone(), (seen, at));
            names.push(name);
        }
        self.observed.retain(|n, _| names.contains(n));
        self.terms.retain(|n, _| names.contains(n));
        Ok((live, held))
    }

    /// One look: plans from the live members and publishes the result when it changed.
    /// Returns the assignment in force (`None` when another writer got there first).
    pub(crate) async fn tick(&mut self) -> Result<Option<Assignment>, String> {
        let (live, held) = self
            .live()
            .await
            .map_err(|e| format!("listing member Leases: {e}"))?;
        let found = read(&self.maps, &self.group)
            .await
            .map_err(|e| format!("reading ConfigMap {}: {e}", self.map))?;
        let (mut current, rv) = match found {
            Some(p) => (
                p.assignment.map_err(|e| {
                    format!(
                        "ConfigMap {} does not hold an assignment ({e}); delete it to start over",
                        self.map
                    )
                })?,
                p.rv,
            ),
            None => (Assignment::default(), None),
        };
        // Started over (the ConfigMap was deleted): never go below what members applied.
        let floor = live
            .values()
            .filter_map(|m| m.ack.as_ref().map(|a| a.seen))
            .max();
        current.generation = current.generation.max(floor.unwrap_or(0));
        // The slots a crashed member owned, taken from the assignment before planning frees them.
        for (id, until) in held {
            self.holds
                .entry(id.clone())
                .or_insert_with(|| (until, current.owned_by(&id)));
        }
        self.holds.retain(|_, (until, _)| until.elapsed().is_zero());
        let held: BTreeSet<usize> = self.holds.values().flat_map(|(_, s)| s.clone()).collect();
        let next = current.plan_holding(&live, &held);
        if next.generation == current.generation && rv.is_some() {
            return Ok(Some(next));
        }
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.map.clone()),
                labels: Some(BTreeMap::from([(GROUP.to_string(), self.group.clone())])),
                resource_version: rv.clone(),
                ..Default::default()
            },
            data: Some(BTreeMap::from([
                (KEY.to_string(), next.to_json()),
                ("summary".to_string(), next.summary()),
            ])),
            ..Default::default()
        };
        // The resourceVersion read guards against a replica that still believes it leads.
        let written = match rv {
            Some(_) => {
                self.maps
                    .replace(&self.map, &PostParams::default(), &cm)
                    .await
            }
            None => self.maps.create(&PostParams::default(), &cm).await,
        };
        match written {
            Ok(_) => {
                self.track(&current, &next);
                Ok(Some(next))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(format!("writing ConfigMap {}: {e}", self.map)),
        }
    }
}
