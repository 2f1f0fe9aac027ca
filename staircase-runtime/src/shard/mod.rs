//! Sharding: one operator's objects split across its replicas, each running its share.
//!
//! Turned on with [`LeaderElection::sharded`](crate::LeaderElection::sharded) (or
//! `STAIRCASE_SHARDING=true`). Without it, leader election makes extra replicas idle standbys;
//! with it, every replica runs, and the elected leader only decides who runs what.
//!
//! - **Membership.** Each replica holds a Lease of its own, `<lease>-member-<identity>`
//!   (labelled `staircase.rs/shard-group=<lease>`), renewed every `retry_period` like the leader
//!   Lease and released on shutdown. A replica that cannot renew it for `renew_deadline` stops
//!   every run at once; when it can again, it joins under a new *term*.
//! - **Assignment.** The hash space of the objects' uids (64-bit FNV-1a, as the API server's
//!   sharded list and watch use) is cut into [`SLOTS`] slots. The leader assigns them to the
//!   live members, about `SLOTS / R` each, and publishes the [`Assignment`] in the ConfigMap
//!   `<lease>-shards` (`kubectl get configmap <lease>-shards -o jsonpath='{.data.summary}'`).
//!   A replica runs an object only while the object's slot is settled on it. Children and
//!   watched objects run their parent, so they go wherever their parent goes.
//! - **Handoff.** Moving a slot is a fenced two-step transfer. The leader marks it moving; the
//!   owner stops starting runs in it, lets the runs in flight finish, and acknowledges on its
//!   Lease; only then does the leader give the slot to the new owner.
//! - **Rebalance.** A new replica receives its share, taken from the replicas above theirs and
//!   nothing else (3 → 4 replicas moves a quarter of the slots). A lost replica's slots go to the
//!   others once its Lease has not been renewed for its duration, as the leader measures it.
//!
//! # Guarantees
//! - No two replicas run objects of one slot at the same time, as long as a replica's clock does
//!   not run slower than the leader's by more than `lease_duration - renew_deadline` over one
//!   lease duration (the assumption leader election makes too).
//! - After a replica is lost, its objects are without a runner for at most the lease duration
//!   plus a retry period or two; twice that when the lost replica was also the leader (its
//!   successor first waits for the leader Lease to expire, then a lease duration of its own
//!   before it declares anyone lost), plus [`takeover_delay`](crate::LeaderElection::takeover_delay)
//!   when one is set: the share of a replica that crashed, or restarted under its identity
//!   without releasing its Lease, goes to nobody for that long, so its last external calls
//!   land before another replica runs its objects. A graceful shutdown releases both Leases:
//!   no wait.
//! - A leader change moves nothing: the assignment lives in the cluster; a new leader waits a
//!   full lease duration of its own before it declares anyone lost.
//!
//! # Caveats
//! - The split of the primary resource's watch is done by the API server where it honours
//!   `shardSelector` (KEP-5866), which each replica probes for at the start of its term: its
//!   cache then holds only its slots and those moving to it, filled before it runs them (a
//!   slot opens only once the restarted watch has listed it). kube-apiserver 1.37 does this
//!   for built-in kinds with its alpha `ShardedListAndWatch` gate on, not for custom resources;
//!   elsewhere every replica caches every object and filters on its side. Children and watched
//!   kinds are always cached whole: sharding spreads the runs (CPU, API writes, external
//!   calls), and the memory of the primary cache only where the server splits it.
//! - An object's runs wait while its slot moves: typically two or three retry periods.
//! - Replicas of one operator must share its Lease name and namespace, and each needs `get`,
//!   `list`, `create` and `update` on Leases, and `get`, `create` and `update` on ConfigMaps, in
//!   that namespace (see `deploy/`).
//! - A hand-edited assignment that does not parse stops the leader from changing it (replicas
//!   keep what they run). Deleting the ConfigMap makes the leader start over safely: a slot a
//!   replica still runs is given out only after that replica stops.

mod assigner;
mod assignment;
mod gate;
mod hash;
mod member;
pub(crate) mod server_side;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

pub use assignment::Assignment;
pub use hash::{SLOTS, hash, slot_of};

pub(crate) use assigner::Assigner;
pub(crate) use gate::Gate;
pub(crate) use member::Member;

use crate::LeaderElection;

/// The assignment the leader of the operator whose Lease is `election`'s published, if any.
/// An assignment that does not parse is an error saying why.
pub async fn read(client: Client, election: &LeaderElection) -> anyhow::Result<Option<Assignment>> {
    let maps = maps(client, election);
    match assigner::read(&maps, &election.lease_name).await? {
        None => Ok(None),
        Some(p) => p.assignment.map(Some).map_err(anyhow::Error::msg),
    }
}

fn maps(client: Client, election: &LeaderElection) -> Api<ConfigMap> {
    match &election.namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::default_namespaced(client),
    }
}

/// Keeps a member: every retry period, applies the published assignment to the gate and
/// renews the Lease with the acknowledgement; `on_handoff` hears of slots given up. Returns
/// why the membership was lost (not renewed within the renew deadline).
pub(crate) async fn hold(
    member: &Member,
    gate: &Gate,
    client: Client,
    cfg: &LeaderElection,
    on_handoff: impl Fn(u64),
) -> String {
    let maps = maps(client, cfg);
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(cfg.retry_period).await;
        let left = cfg.renew_deadline.saturating_sub(renewed.elapsed());
        let look = async {
            match assigner::read(&maps, &cfg.lease_name).await {
                Ok(Some(Parsed {
                    assignment: Ok(a), ..
                })) => {
                    let closed = gate.apply(&a, member.identity(), member.term());
                    if closed > 0 {
                        tracing::info!(
                            slots = closed,
                            generation = a.generation(),
                            "sharding: handing slots off"
                        );
                        on_handoff(closed);
                    }
                }
                Ok(Some(Parsed {
                    assignment: Err(e), ..
                })) => tracing::warn!(
                    "sharding: the published assignment does not parse ({e}); keeping what this replica runs"
                ),
                Ok(None) => {}
                Err(e) => tracing::debug!("sharding: reading the assignment failed: {e}"),
            }
            member.renew(&gate.ack(member.term())).await
        };
        match tokio::time::timeout(left, look).await {
            Ok(Ok(())) => renewed = Instant::now(),
            Ok(Err(e)) if renewed.elapsed() >= cfg.renew_deadline => {
                return format!("not renewed for {:?}: {e}", cfg.renew_deadline);
            }
            Ok(Err(e)) => {
                tracing::warn!("sharding: renewing the member Lease failed, retrying: {e}")
            }
            Err(_) => return format!("not renewed for {:?}", cfg.renew_deadline),
        }
    }
}

use assigner::Parsed;

/// The leader's loop: one look at the members every retry period, forever.
pub(crate) async fn assign(assigner: &mut Assigner, retry: Duration) {
    loop {
        match assigner.tick().await {
            Ok(Some(a)) => tracing::trace!(generation = a.generation(), "sharding: assignment"),
            Ok(None) => {}
            Err(e) => tracing::warn!("sharding: {e}"),
        }
        tokio::time::sleep(retry).await;
    }
}
