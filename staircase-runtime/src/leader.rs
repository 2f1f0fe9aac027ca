//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one
//! reconciles at a time.
//!
//! The algorithm is client-go's: the leader renews the Lease every `retry_period`; a candidate
//! takes it over when it is free (no holder, e.g. released on shutdown) or when its record has not
//! changed for `lease_duration`, measured on the candidate's own clock (so clock skew between
//! nodes does not matter). Every write carries the `resourceVersion` it read, so of two candidates
//! racing for the same Lease exactly one wins (the other gets 409 Conflict). A leader that cannot
//! renew for `renew_deadline` (< `lease_duration`) gives up before anyone else may take over.
//!
//! Why not the `kube-lease-manager` crate (evaluated at 0.13.1, which does build with kube 5): its
//! standby sleeps until the old lease expires even when the leader released it, so a rolling update
//! always waits a full lease duration; a leader that cannot reach the API server keeps reporting
//! itself leader past the lease's expiry (errors are retried, never turned into "lost"), which breaks
//! "stop reconciling immediately"; its durations are whole seconds (tests take seconds); and it pulls
//! a second `rand` major version. What is needed here is ~150 lines.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Leader-election settings. `LeaderElection::new("my-operator")` gives client-go's defaults:
/// a 15 s lease, renewed every 2 s, given up when not renewed for 10 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    /// The Lease's name (one per operator, shared by its replicas).
    pub lease_name: String,
    /// The Lease's namespace; `None`: the client's default namespace (the pod's own namespace in
    /// a cluster).
    pub namespace: Option<String>,
    /// This replica's identity, unique among replicas: the pod name is the usual choice.
    pub identity: String,
    /// How long a Lease that is no longer renewed blocks the other replicas.
    pub lease_duration: Duration,
    /// The leader stops reconciling when it could not renew for this long (< `lease_duration`,
    /// so it stops before anyone else may start).
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby replica looks at the Lease.
    pub retry_period: Duration,
    /// After taking the Lease over from a replica that stopped renewing it (crashed, or cut
    /// off from the API server), wait this long before running anything: that replica's
    /// external calls may still land (see [`external`](crate::external)). Renewed meanwhile.
    /// Not waited after a graceful handover, where the Lease was released. With
    /// [`sharded`](Self::sharded), the leader likewise gives the slots of a replica whose member
    /// Lease expired unreleased, or that began a new term without releasing it (restarted under
    /// its identity), to nobody until this long after. Default 0; set it to the
    /// [`external_call_window`](crate::OperatorConfig::external_call_window) in an operator
    /// that calls external services.
    pub takeover_delay: Duration,
    /// Every replica runs its share of the objects instead of standing by; the leader assigns
    /// the shares (see [`shard`](crate::shard)). Default off.
    pub sharding: bool,
}

/// `host` (the pod or host name) plus a random suffix: a pod name is unique only while the pod
/// lives and a host name not even that (two processes on one host, `hostNetwork` pods), and two
/// replicas sharing an identity would both believe they lead.
pub(crate) fn unique_identity(host: Option<&str>) -> String {
    format!(
        "{}-{:08x}",
        host.unwrap_or("staircase"),
        rand::random::<u32>()
    )
}

impl LeaderElection {
    /// Settings for the Lease `lease_name`, with an identity from `POD_NAME` (else `HOSTNAME`)
    /// plus a random suffix, so two processes on one host never share one.
    pub fn new(lease_name: impl Into<String>) -> Self {
        let host = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok();
        LeaderElection {
            lease_name: lease_name.into(),
            namespace: None,
            identity: unique_identity(host.as_deref()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            takeover_delay: Duration::ZERO,
            sharding: false,
        }
    }

    /// Turns [`sharding`](Self::sharding) on: every replica runs, each its share.
    pub fn sharded(mut self) -> Self {
        self.sharding = true;
        self
    }

    /// Sets [`LeaderElection::namespace`].
    pub fn with_namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// Sets [`LeaderElection::identity`] exactly as given: the caller makes it unique among
    /// the processes that share the Lease (two replicas with one identity both lead).
    pub fn with_identity(mut self, id: impl Into<String>) -> Self {
        self.identity = id.into();
        self
    }

    /// Sets [`LeaderElection::takeover_delay`].
    pub fn with_takeover_delay(mut self, delay: Duration) -> Self {
        self.takeover_delay = delay;
        self
    }

    /// Sets the three timings; `renew_deadline` is capped below `lease_duration`.
    pub fn with_timing(
        mut self,
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Self {
        self.lease_duration = lease_duration;
        self.renew_deadline = renew_deadline.min(lease_duration.mul_f32(0.9));
        self.retry_period = retry_period;
        self
    }
}

/// What a replica last saw of the Lease, and when (on its own clock).
#[derive(Debug, PartialEq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    duration: Duration,
}

/// One replica's side of the election.
pub(crate) struct Elector {
    api: Api<Lease>,
    cfg: LeaderElection,
    observed: Option<(Record, Instant)>,
    /// The last acquisition took the Lease from another holder whose lease had expired.
    took_over: bool,
}

impl Elector {
    pub(crate) fn new(client: Client, cfg: LeaderElection) -> Self {
        let api = match &cfg.namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::default_namespaced(client),
        };
        Elector {
            api,
            cfg,
            observed: None,
            took_over: false,
        }
    }

    pub(crate) fn config(&self) -> &LeaderElection {
        &self.cfg
    }

    /// Whether the Lease this replica holds was taken over from another holder that stopped
    /// renewing it (rather than found free, released, or already ours).
    pub(crate) fn took_over(&self) -> bool {
        self.took_over
    }

    fn spec(&self, acquire_time: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire_time.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Takes the Lease when it is free or expired, renews it when held: `Ok(true)` when this
    /// replica holds it now.
    pub(crate) async fn try_acquire_or_renew(&mut self) -> kube::Result<bool> {
        let name = self.cfg.lease_name.clone();
        let Some(mut lease) = self.api.get_opt(&name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    ..Default::default()
                },
                spec: Some(self.spec(None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = Record {
            holder: holder.clone(),
            renew_time: spec.renew_time.clone(),
            duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64),
        };
        let seen_at = match self.observed.take() {
            Some((old, at)) if old == record => at,
            _ => Instant::now(),
        };
        let held_by_other = holder.as_ref().is_some_and(|h| *h != self.cfg.identity);
        let expired = seen_at.elapsed() >= record.duration;
        self.observed = Some((record, seen_at));
        if held_by_other && !expired {
            return Ok(false);
        }
        let ours = holder.as_deref() == Some(self.cfg.identity.as_str());
        self.took_over = held_by_other;
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        lease.spec = Some(self.spec(if ours { spec.acquire_time } else { None }, transitions));
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if this replica holds it, so a standby takes over at its next look
    /// instead of after the lease duration.
    pub(crate) async fn release(&self) -> kube::Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.lease_name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        lease.spec = Some(spec);
        self.api
            .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}
