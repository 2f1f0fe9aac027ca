//! The operator processes of a controller-loop case: one, or (shard-handoff variant) sharded
//! replicas that join, die and restart as the plan says.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use staircase_runtime::{RunReport, Stairs};
use tokio::sync::{Notify, oneshot};

use super::ExplorableResource;
use super::driver::{Externals, Setup, client, operator};
use super::gate::Gate;
use super::lag::WatchLag;
use super::shards::{self, Handoff, Life, Span, Who};

/// Starts operators for one case, all configured alike and reporting into the case's log.
pub(crate) struct Spawner<'a, K, S, M, C> {
    pub setup: &'a Setup<K, S, M, C>,
    pub ext: Externals,
    pub config: kube::Config,
    pub gate: Arc<Gate>,
    pub lag: Option<WatchLag>,
    /// On a shared real server: the case's namespace, the only one the operator may see.
    pub namespace: Option<String>,
    /// Every run report, with when its run started.
    pub reports: Arc<Mutex<Vec<(Instant, RunReport)>>>,
    pub notify: Arc<Notify>,
    /// Replicas' runs, for the one-runner-at-a-time check.
    pub spans: Arc<Mutex<Vec<Span>>>,
}

/// A running operator.
pub(crate) struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    /// A replica's life (sharded cases).
    life: Option<Arc<Life>>,
}

impl<K, S, M, C> Spawner<'_, K, S, M, C>
where
    K: ExplorableResource,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    /// Starts the case's operator, or with `replica` a sharded replica of that identity whose
    /// client dies with `life`.
    pub(crate) fn spawn(&self, replica: Option<(&str, Arc<Life>)>) -> Running {
        let base = client(self.config.clone(), self.setup.retries);
        let mut c = match &replica {
            None => self.gate.client(base),
            Some((_, life)) => life.client(self.gate.replica_client(base)),
        };
        if let Some(lag) = &self.lag {
            c = lag.client(c);
        }
        let op = operator(self.setup, c, &self.ext);
        let mut cfg = op.config().clone();
        if let Some(ns) = &self.namespace {
            // On a shared real server the operator must not see (and write) other cases' objects.
            cfg = cfg.with_namespace(ns);
        }
        if let Some((identity, _)) = &replica {
            cfg = cfg.with_leader_election(shards::election(identity));
        }
        // Resync, the read-your-writes grace and the retry backoff drive recovery from lost or
        // late events and failed requests; at their production defaults (10 min, 2 s, 200 ms
        // doubling) a case would take minutes.
        cfg.resync = self.setup.resync;
        cfg.read_your_writes_grace = Duration::from_millis(20);
        cfg.backoff = staircase_runtime::Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            permanent: Duration::from_millis(500),
        };
        let life = replica.map(|(_, l)| l);
        let (reports, notify, spans, seen) = (
            self.reports.clone(),
            self.notify.clone(),
            self.spans.clone(),
            life.clone(),
        );
        let op = op.with_config(cfg).on_run(move |rep| {
            // A dead process reports nothing: a run that needed no request can still end
            // between the crash and the task's abort.
            if seen.as_ref().is_some_and(|l| l.is_dead()) {
                return;
            }
            let now = Instant::now();
            let started = now.checked_sub(rep.duration).unwrap_or(now);
            if let Some(l) = &seen {
                spans.lock().expect("spans").push(Span {
                    replica: l.label.clone(),
                    object: rep.object.clone(),
                    run_id: rep.run_id,
                    start: started,
                    end: now,
                });
            }
            reports
                .lock()
                .expect("reports")
                .push((started, rep.clone()));
            notify.notify_waiters();
        });
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(op.run_until(async {
            rx.await.ok();
        }));
        Running { stop, task, life }
    }
}

/// The operators of a case, by identity (`""` for the one of an unsharded case).
pub(crate) struct Replicas {
    running: BTreeMap<String, Running>,
    handoff: Option<Handoff>,
    /// Incarnations started per identity.
    incarnations: BTreeMap<String, u32>,
    /// The crash that happened: the replica and the write it died after.
    pub crashed: Option<String>,
}

impl Replicas {
    pub(crate) fn single(r: Running) -> Self {
        Replicas {
            running: BTreeMap::from([(String::new(), r)]),
            handoff: None,
            incarnations: BTreeMap::new(),
            crashed: None,
        }
    }

    /// Starts replica `a`, and waits until it owns every slot.
    pub(crate) async fn sharded<K, S, M, C>(
        spawner: &Spawner<'_, K, S, M, C>,
        handoff: Handoff,
        admin: &kube::Client,
    ) -> anyhow::Result<Self>
    where
        K: ExplorableResource,
        S: Send + Sync + 'static,
        M: Stairs<K, S>,
        C: Stairs<K, S>,
    {
        let mut r = Replicas {
            running: BTreeMap::new(),
            handoff: Some(handoff),
            incarnations: BTreeMap::new(),
            crashed: None,
        };
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(admin.clone());
        let ns = serde_json::from_value(serde_json::json!({
            "metadata": {"name": shards::NAMESPACE}
        }))?;
        namespaces.create(&Default::default(), &ns).await?;
        r.start(spawner, Who::Leader.identity(), None);
        let since = Instant::now();
        while !r.settled(admin).await? {
            if since.elapsed() > spawner.setup.guard {
                let seen =
                    staircase_runtime::shard::read(admin.clone(), &shards::election("explorer"))
                        .await?
                        .map_or_else(|| "no assignment".to_string(), |a| a.summary());
                anyhow::bail!(
                    "replica a did not take every slot within {:?} (assignment: {seen})",
                    spawner.setup.guard
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(r)
    }

    fn start<K, S, M, C>(
        &mut self,
        spawner: &Spawner<'_, K, S, M, C>,
        identity: &str,
        arm: Option<(Who, u64)>,
    ) where
        K: ExplorableResource,
        S: Send + Sync + 'static,
        M: Stairs<K, S>,
        C: Stairs<K, S>,
    {
        let n = self.incarnations.entry(identity.to_string()).or_default();
        *n += 1;
        let life = Life::new(format!("{identity}#{n}"), spawner.notify.clone());
        if let Some((who, after)) = arm {
            life.arm(who, after);
        }
        let running = spawner.spawn(Some((identity, life)));
        self.running.insert(identity.to_string(), running);
    }

    /// Right after the action of `phase`: the handoff's joiner starts, and the replica that is
    /// to die starts counting its writes.
    pub(crate) fn after_action<K, S, M, C>(
        &mut self,
        phase: usize,
        spawner: &Spawner<'_, K, S, M, C>,
    ) where
        K: ExplorableResource,
        S: Send + Sync + 'static,
        M: Stairs<K, S>,
        C: Stairs<K, S>,
    {
        let Some(h) = self.handoff.filter(|h| h.phase == phase) else {
            return;
        };
        let leader = self.running[Who::Leader.identity()].life.as_ref();
        let leader = leader.expect("a replica has a life");
        leader.slow_writes(true);
        if h.who == Who::Leader {
            leader.arm(Who::Leader, h.after);
        }
        let arm = (h.who == Who::Joiner).then_some((Who::Joiner, h.after));
        self.start(spawner, Who::Joiner.identity(), arm);
    }

    /// Replaces every replica that died by a fresh one of its identity (a restarted pod).
    pub(crate) async fn restart_dead<K, S, M, C>(&mut self, spawner: &Spawner<'_, K, S, M, C>)
    where
        K: ExplorableResource,
        S: Send + Sync + 'static,
        M: Stairs<K, S>,
        C: Stairs<K, S>,
    {
        let dead: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.life.as_ref().is_some_and(|l| l.is_dead()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            let r = self.running.remove(&id).expect("listed");
            r.task.abort();
            let _ = r.task.await;
            let life = r.life.expect("a dead replica has a life");
            let after = life.died_after.lock().expect("died").clone();
            self.crashed = Some(format!(
                "replica {} crashed after {}",
                life.label,
                after.unwrap_or_default()
            ));
            let same = self.handoff.is_some_and(|h| h.same_identity);
            let next = if same { id } else { format!("{id}2") };
            self.start(spawner, &next, None);
        }
    }

    /// The phase settled: nobody's writes are slowed any more.
    pub(crate) fn end_phase(&self) {
        for r in self.running.values() {
            if let Some(l) = &r.life {
                l.slow_writes(false);
            }
        }
    }

    /// Unsharded: always. Sharded: the assignment names every replica and no slot is moving.
    pub(crate) async fn settled(&self, admin: &kube::Client) -> anyhow::Result<bool> {
        if self.handoff.is_none() {
            return Ok(true);
        }
        let members: Vec<&str> = self.running.keys().map(String::as_str).collect();
        shards::settled_on(admin, &members).await
    }

    /// Stops every operator gracefully; one that does not stop within `guard` (a run that never
    /// ends) is aborted: it must not outlive its case.
    pub(crate) async fn stop(self, guard: Duration) {
        for (_, r) in self.running {
            let _ = r.stop.send(());
            let abort = r.task.abort_handle();
            if tokio::time::timeout(guard, r.task).await.is_err() {
                abort.abort();
            }
        }
    }
}
