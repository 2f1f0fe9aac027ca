//! The shard-handoff variant: the operator [sharded](staircase_runtime::shard) over two
//! replicas, one of which crashes in the middle of a handoff. Replica `a` starts alone and owns
//! every slot; right after the action of the chosen phase, replica `b` joins, and the leader
//! (`a`) starts moving half the slots to it while the action's runs are in flight. One of them
//! dies right after its `n`-th write of the handoff — the leader counting from the assignment
//! it publishes, the joiner from its first write — and a fresh replica starts in its place,
//! under the same identity (a StatefulSet's pod, restarted) or a new one (a Deployment's).
//!
//! Besides the end state, the case checks that no object was ever run by two replicas at once:
//! from the run reports, whose span (start to report) lies inside the time the runtime counts
//! the run as in flight in its slot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::{Request, Response};
use kube::client::Body;
use staircase_runtime::LeaderElection;
use staircase_runtime::shard;
use tokio::sync::Notify;

/// Where the replicas keep their Leases and the assignment: apart from the scenario's objects,
/// and left out of the end state.
pub(crate) const NAMESPACE: &str = "staircase-explorer-sharding";

/// The Lease name; the assignment is the ConfigMap `<LEASE>-shards`.
const LEASE: &str = "staircase-explorer";

/// How long the replica that owned every slot holds each of its writes to objects while the
/// handoff is under way: long enough that runs are in flight when slots move (a new owner
/// starting before they end would run the same objects beside them), short enough that a case
/// stays quick.
const SLOW_WRITE: Duration = Duration::from_millis(100);

/// The replica that dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    /// `a`: the leader, which owned every slot and hands half of them over.
    Leader,
    /// `b`: the replica that joins and receives them.
    Joiner,
}

impl Who {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Who::Leader => "leader",
            Who::Joiner => "joiner",
        }
    }

    pub(crate) fn identity(self) -> &'static str {
        match self {
            Who::Leader => "a",
            Who::Joiner => "b",
        }
    }
}

/// A case of the variant: in `phase`, `who` dies right after its `after`-th write of the
/// handoff, and a fresh replica starts in its place: with the same identity (a StatefulSet's
/// pod, restarted) or a new one (a Deployment's new pod; the dead one's Leases must expire).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Handoff {
    pub phase: usize,
    pub who: Who,
    pub after: u64,
    pub same_identity: bool,
}

impl Handoff {
    /// The case's name: `<phase>-<who>-<after>-<same|new>`.
    pub(crate) fn id(&self) -> String {
        let restart = if self.same_identity { "same" } else { "new" };
        format!(
            "{}-{}-{}-{restart}",
            self.phase,
            self.who.name(),
            self.after
        )
    }

    pub(crate) fn describe(&self) -> String {
        let restart = if self.same_identity {
            "restarts under the same identity"
        } else {
            "is replaced by a replica of a new identity"
        };
        format!(
            "phase {}: the {} crashes after its write {} of the handoff and {restart}",
            self.phase,
            self.who.name(),
            self.after
        )
    }
}

/// The election every replica of a case takes part in. Short timings: a dead replica's slots
/// move after a one-second lease.
pub(crate) fn election(identity: &str) -> LeaderElection {
    LeaderElection::new(LEASE)
        .with_namespace(NAMESPACE)
        .with_identity(identity)
        .with_timing(
            Duration::from_secs(1),
            Duration::from_millis(500),
            Duration::from_millis(50),
        )
        .sharded()
}

/// Whether the assignment names exactly `members` (sorted) and no slot is moving.
pub(crate) async fn settled_on(client: &kube::Client, members: &[&str]) -> anyhow::Result<bool> {
    let Some(a) = shard::read(client.clone(), &election("explorer")).await? else {
        return Ok(false);
    };
    Ok(a.unsettled() == 0 && a.members().eq(members.iter().copied()))
}

/// When a replica dies: after its `after`-th successful write, counted from its first write to
/// a path containing `from`.
struct Arming {
    from: &'static str,
    started: bool,
    after: u64,
    writes: u64,
}

/// One incarnation of a replica: alive until its planned crash.
pub(crate) struct Life {
    pub label: String,
    arming: Mutex<Option<Arming>>,
    /// Holds each of the operator's own writes (not the runtime's Leases and assignment) for
    /// [`SLOW_WRITE`] before sending it: runs stay in flight through the handoff.
    slow: AtomicBool,
    dead: AtomicBool,
    /// The write it died after.
    pub died_after: Mutex<Option<String>>,
    wake: Arc<Notify>,
}

impl Life {
    pub(crate) fn new(label: String, wake: Arc<Notify>) -> Arc<Self> {
        Arc::new(Life {
            label,
            arming: Mutex::new(None),
            slow: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            died_after: Mutex::new(None),
            wake,
        })
    }

    /// Plans the crash of `who` for this incarnation (a replica of identity `who`).
    pub(crate) fn arm(&self, who: Who, after: u64) {
        let from = match who {
            // The assignment the leader publishes when it sees the joiner.
            Who::Leader => "/configmaps/staircase-explorer-shards",
            Who::Joiner => "",
        };
        *self.arming.lock().expect("arming") = Some(Arming {
            from,
            started: false,
            after,
            writes: 0,
        });
    }

    /// Slows the operator's writes, or stops slowing them.
    pub(crate) fn slow_writes(&self, on: bool) {
        self.slow.store(on, Ordering::SeqCst);
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Counts a successful write; whether the incarnation dies right after it.
    fn wrote(&self, what: &str, path: &str) -> bool {
        let mut arming = self.arming.lock().expect("arming");
        let Some(a) = arming.as_mut() else {
            return false;
        };
        a.started |= path.contains(a.from);
        if !a.started {
            return false;
        }
        a.writes += 1;
        if a.writes != a.after {
            return false;
        }
        *arming = None;
        self.dead.store(true, Ordering::SeqCst);
        *self.died_after.lock().expect("died") = Some(what.to_string());
        self.wake.notify_waiters();
        true
    }

    /// Wraps a replica's client: once dead, its requests never complete, as a dead process's.
    pub(crate) fn client(self: &Arc<Self>, inner: kube::Client) -> kube::Client {
        let ns = inner.default_namespace().to_string();
        kube::Client::new(
            LifeService {
                life: self.clone(),
                inner,
            },
            ns,
        )
    }
}

#[derive(Clone)]
struct LifeService {
    life: Arc<Life>,
    inner: kube::Client,
}

impl tower::Service<Request<Body>> for LifeService {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let svc = self.clone();
        let write = super::gate::is_write(req.method()) && !req.uri().path().contains("/events");
        let what = format!("{} {}", req.method(), req.uri().path());
        let path = req.uri().path().to_string();
        Box::pin(async move {
            if write && !path.contains(NAMESPACE) && svc.life.slow.load(Ordering::SeqCst) {
                tokio::time::sleep(SLOW_WRITE).await;
            }
            if svc.life.is_dead() {
                return futures::future::pending().await;
            }
            let res = svc.inner.send(req).await;
            if svc.life.is_dead() {
                return futures::future::pending().await;
            }
            let ok = res.as_ref().is_ok_and(|r| r.status().is_success());
            if write && ok && svc.life.wrote(&what, &path) {
                return futures::future::pending().await;
            }
            res
        })
    }
}

/// One run of one object by one replica incarnation.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub replica: String,
    pub object: String,
    pub run_id: u64,
    pub start: Instant,
    pub end: Instant,
}

/// Runs of one object by two replica incarnations whose spans overlap.
pub(crate) fn overlaps(spans: &[Span]) -> Vec<String> {
    let mut by_object: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for s in spans {
        by_object.entry(&s.object).or_default().push(s);
    }
    let mut out = Vec::new();
    for (object, mut runs) in by_object {
        runs.sort_by_key(|s| s.start);
        for (i, x) in runs.iter().enumerate() {
            if let Some(y) = runs[i + 1..]
                .iter()
                .take_while(|y| y.start < x.end)
                .find(|y| y.replica != x.replica)
            {
                out.push(format!(
                    "two replicas ran {object} at once: run {} of replica {} had not ended when \
                     run {} of replica {} started {:?} after it",
                    x.run_id,
                    x.replica,
                    y.run_id,
                    y.replica,
                    y.start - x.start
                ));
            }
        }
    }
    out
}
