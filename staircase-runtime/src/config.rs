//! Operator settings, with defaults that suit most operators, readable from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use kube::api::ObjectMeta;

use crate::backoff::Backoff;
use crate::leader::LeaderElection;
use crate::run::RulePolicy;

/// How the operator runs. Build it with `OperatorConfig::default()` and the `with_*` methods, or
/// read it from the environment with [`OperatorConfig::from_env`].
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// The operator's name: the reporting controller of its Events, the default Lease name and
    /// the `controller` label of its metrics. Two operators in one process need two names.
    /// Default `staircase`.
    pub name: String,
    /// At most this many runs at once (never two for the same object). Default 16.
    pub concurrency: u16,
    /// What happens when a step breaks the one-modification rule. Default: the run fails.
    pub rule_policy: RulePolicy,
    /// Retry delays for failing objects.
    pub backoff: Backoff,
    /// A step that modifies on more than this many runs in a row while the object's generation
    /// stays the same is a runaway (it never finds what it made: a random name, a wrong
    /// lookup): its runs from then on end as failures, with the `Failed` condition, a Warning
    /// Event and the failure backoff, until it reports unchanged or the spec changes. Raise it
    /// for a step that legitimately makes many modifications one run at a time (e.g. hundreds of
    /// children). Default 64.
    pub runaway_after: u32,
    /// A step that writes the same object in this many modifying runs in a row while the
    /// object's generation stays the same, with another field manager writing that object in
    /// between (its `managedFields` say so), is fighting that manager: the run reports the
    /// fight (a `Fighting` condition, a Warning Event, a metric) and the object backs off with
    /// [`backoff`](Self::backoff) instead of running again at once. See [`fight`](crate::fight).
    /// 0 turns detection off; at least 2 otherwise (the first write is the step's own).
    /// Default 3.
    pub fight_after: u32,
    /// After an [`external::call`](crate::external::call) failed (it may still land: a client
    /// timeout while the service works on), the object does not run again for this long, so
    /// the next run's lookup by key sees the call if it landed. Set it to the longest a call
    /// can take to land. Default 30 s.
    pub external_call_window: Duration,
    /// Converged objects are run again after this long, to catch drift nobody announced. Default 10 min.
    pub resync: Duration,
    /// After a write to the object itself, how long to wait for the watch to deliver it before
    /// reading the object from the API server instead of the cache. Cached reads of any other
    /// object a step wrote ([`Context::get`](crate::Context::get), the children step) wait as
    /// long. Default 2 s.
    pub read_your_writes_grace: Duration,
    /// Whether cached reads wait for the watch cache to show the writes this operator's steps
    /// made (read-your-own-writes for every object, not only the one a run is for). Default on.
    /// Off, a step can read a child it has just created as missing and create it again: only
    /// for showing what the waits prevent.
    pub cache_read_your_writes: bool,
    /// Applied to the metadata of every object the caches of owned, watched and read kinds keep
    /// (see [`Context::get`](crate::Context::get)). The default drops `managedFields` and the
    /// `kubectl.kubernetes.io/last-applied-configuration` annotation, which steps rarely read
    /// and which are often most of an object's size; `|_| {}` keeps objects whole.
    pub cache_transform: fn(&mut ObjectMeta),
    /// Only objects in this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Only objects matching this label selector.
    pub label_selector: Option<String>,
    /// On shutdown, how long runs in flight may take to finish before they are cancelled.
    /// Keep it below the pod's `terminationGracePeriodSeconds` (30 s by default). Default 20 s.
    pub shutdown_timeout: Duration,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (feature `server`); `None` serves nothing.
    pub metrics_addr: Option<SocketAddr>,
    /// Only one replica runs at a time when set. Default: off (a single replica).
    pub leader_election: Option<LeaderElection>,
    /// Publish Kubernetes Events for modifications, failures and rule violations. Default on.
    pub events: bool,
    /// When the runtime rewrites the status conditions (with `with_status()`). Default: on every
    /// change, so `Progressing` always names the step that last modified.
    pub status_updates: StatusUpdates,
    /// How a relist of the watched resource reaches the cache. Default: in place.
    pub relist: Relist,
    /// How the watches take their initial list: a streaming list where the API server serves
    /// one, by default.
    pub initial_list: InitialList,
    /// Also keep kstatus's `Reconciling` and `Stalled` conditions (with `with_status()`), as
    /// Flux, kpt and other tools that judge readiness by the kstatus convention read them:
    /// `Reconciling` is present while the object is not settled, `Stalled` while it failed with
    /// an error retrying will not fix. Default off.
    pub kstatus: bool,
}

/// How the operator's watch cache takes a relist (the full list a watch that cannot resume
/// after `410 Gone` reads again); see [`relist`](crate::relist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Relist {
    /// Each listed object replaces its old copy as it arrives (unless the cache already holds it
    /// at the same resourceVersion: then the cached copy stays and the decoded one is freed at
    /// once), and what the list no longer has is dropped at its end. Memory peaks at one cache
    /// plus a page of the list, where [`Swap`](Self::Swap) peaks near two caches, and a relist
    /// over unchanged objects costs less CPU than a swap (the repository's `bench/results` has
    /// the figures).
    #[default]
    InPlace,
    /// kube-runtime's own way: the list is built beside the cache and swapped in at its end, so
    /// memory peaks near twice the cache; readers see the old cache, all of it, until the swap.
    /// For an operator that must never see a cache where some objects were relisted and others
    /// not yet.
    Swap,
}

/// How every watch of the operator (its resource's and the owned, watched and read kinds')
/// takes its initial list, and each relist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitialList {
    /// A streaming list where the API server serves one, else [`Paged`](Self::Paged). Whether
    /// it does is asked once each time the operator starts leading: a watch of its resource
    /// with `sendInitialEvents=true` that matches no object must end its (empty) initial
    /// events with a bookmark within a few seconds.
    #[default]
    Auto,
    /// A paginated LIST (500 objects a page), then a WATCH from its resourceVersion.
    Paged,
    /// A streaming list: one WATCH with `sendInitialEvents=true`, whose initial events are
    /// the objects, one by one. The API server builds no list response, and the operator
    /// decodes one object at a time instead of a page. Needs an API server that serves it
    /// (Kubernetes' `WatchList` feature); one that ignores the parameter leaves the caches
    /// unsynced for good, so prefer [`Auto`](Self::Auto).
    Streaming,
}

/// When the runtime writes the object's status conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusUpdates {
    /// Whenever a condition's status, reason or message changes: after every modification
    /// `Progressing` names the step that made it. Costs one status write per modification.
    #[default]
    EveryChange,
    /// Only when a condition flips between `True` and `False` or a new generation is observed:
    /// a staircase of K modifications writes status twice (`Progressing`, then `Ready`) instead
    /// of K + 1 times; `Progressing` names the first step of the climb, not the latest.
    Transitions,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            name: "staircase".into(),
            concurrency: 16,
            rule_policy: RulePolicy::Fail,
            backoff: Backoff::default(),
            runaway_after: 64,
            fight_after: 3,
            external_call_window: Duration::from_secs(30),
            resync: Duration::from_secs(600),
            read_your_writes_grace: Duration::from_secs(2),
            cache_read_your_writes: true,
            cache_transform: trim_metadata,
            namespace: None,
            label_selector: None,
            shutdown_timeout: Duration::from_secs(20),
            metrics_addr: None,
            leader_election: None,
            events: true,
            status_updates: StatusUpdates::EveryChange,
            relist: Relist::InPlace,
            initial_list: InitialList::Auto,
            kstatus: false,
        }
    }
}

/// The default [`cache_transform`](OperatorConfig::cache_transform).
fn trim_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = &mut meta.annotations {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// A setting in the environment that cannot be used; names the variable and what it expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?}: expected {expected}")]
pub struct ConfigError {
    /// The variable, e.g. `STAIRCASE_CONCURRENCY`.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

impl OperatorConfig {
    /// The defaults, overridden by whichever of these variables are set (empty counts as unset):
    ///
    /// | variable | field | example |
    /// |---|---|---|
    /// | `STAIRCASE_NAME` | [`name`](Self::name) | `foo-operator` |
    /// | `STAIRCASE_CONCURRENCY` | [`concurrency`](Self::concurrency) | `8` |
    /// | `STAIRCASE_NAMESPACE` | [`namespace`](Self::namespace) | `apps` |
    /// | `STAIRCASE_LABEL_SELECTOR` | [`label_selector`](Self::label_selector) | `tier=web` |
    /// | `STAIRCASE_RESYNC_SECONDS` | [`resync`](Self::resync) | `300` |
    /// | `STAIRCASE_SHUTDOWN_TIMEOUT_SECONDS` | [`shutdown_timeout`](Self::shutdown_timeout) | `20` |
    /// | `STAIRCASE_METRICS_ADDR` | [`metrics_addr`](Self::metrics_addr) | `0.0.0.0:8080` |
    /// | `STAIRCASE_EVENTS` | [`events`](Self::events) | `false` |
    /// | `STAIRCASE_FIGHT_AFTER` | [`fight_after`](Self::fight_after) | `5` (or `0`: off) |
    /// | `STAIRCASE_STATUS_UPDATES` | [`status_updates`](Self::status_updates) | `transitions` (or `every-change`) |
    /// | `STAIRCASE_RELIST` | [`relist`](Self::relist) | `swap` (or `in-place`) |
    /// | `STAIRCASE_INITIAL_LIST` | [`initial_list`](Self::initial_list) | `paged` (or `auto`, `streaming`) |
    /// | `STAIRCASE_KSTATUS` | [`kstatus`](Self::kstatus) | `true` |
    /// | `STAIRCASE_LEADER_ELECTION` | [`leader_election`](Self::leader_election) | `true` |
    /// | `STAIRCASE_SHARDING` | leader election with [`sharding`](crate::LeaderElection::sharding) | `true` |
    /// | `STAIRCASE_LEASE_NAME` / `STAIRCASE_LEASE_NAMESPACE` | the Lease | `foo-operator` |
    /// | `POD_NAME` (else `HOSTNAME`) | the leader-election identity, plus a random suffix | from the downward API |
    ///
    /// A malformed value is an error naming the variable, never silently ignored.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`from_env`](Self::from_env) with the variables looked up by `get` (for tests and for
    /// merging CLI flags over the environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut c = OperatorConfig::default();
        if let Some(v) = get("STAIRCASE_NAME") {
            c.name = v;
        }
        if let Some(v) = get("STAIRCASE_CONCURRENCY") {
            let n: u16 = parse(
                "STAIRCASE_CONCURRENCY",
                &v,
                "a number of runs from 1 to 65535",
            )?;
            if n == 0 {
                return Err(err(
                    "STAIRCASE_CONCURRENCY",
                    &v,
                    "a number of runs from 1 to 65535",
                ));
            }
            c.concurrency = n;
        }
        c.namespace = get("STAIRCASE_NAMESPACE");
        c.label_selector = get("STAIRCASE_LABEL_SELECTOR");
        if let Some(v) = get("STAIRCASE_RESYNC_SECONDS") {
            c.resync = Duration::from_secs(parse("STAIRCASE_RESYNC_SECONDS", &v, "whole seconds")?);
        }
        if let Some(v) = get("STAIRCASE_SHUTDOWN_TIMEOUT_SECONDS") {
            let s = parse("STAIRCASE_SHUTDOWN_TIMEOUT_SECONDS", &v, "whole seconds")?;
            c.shutdown_timeout = Duration::from_secs(s);
        }
        if let Some(v) = get("STAIRCASE_METRICS_ADDR") {
            c.metrics_addr = Some(parse(
                "STAIRCASE_METRICS_ADDR",
                &v,
                "an address such as 0.0.0.0:8080",
            )?);
        }
        if let Some(v) = get("STAIRCASE_EVENTS") {
            c.events = boolean("STAIRCASE_EVENTS", &v)?;
        }
        if let Some(v) = get("STAIRCASE_FIGHT_AFTER") {
            let n: u32 = parse("STAIRCASE_FIGHT_AFTER", &v, "a number of runs (0: off)")?;
            c = c.with_fight_after(n);
        }
        if let Some(v) = get("STAIRCASE_KSTATUS") {
            c.kstatus = boolean("STAIRCASE_KSTATUS", &v)?;
        }
        if let Some(v) = get("STAIRCASE_RELIST") {
            c.relist = match v.trim() {
                "in-place" => Relist::InPlace,
                "swap" => Relist::Swap,
                _ => return Err(err("STAIRCASE_RELIST", &v, "in-place or swap")),
            };
        }
        if let Some(v) = get("STAIRCASE_INITIAL_LIST") {
            c.initial_list = match v.trim() {
                "auto" => InitialList::Auto,
                "paged" => InitialList::Paged,
                "streaming" => InitialList::Streaming,
                _ => {
                    return Err(err(
                        "STAIRCASE_INITIAL_LIST",
                        &v,
                        "auto, paged or streaming",
                    ));
                }
            };
        }
        if let Some(v) = get("STAIRCASE_STATUS_UPDATES") {
            c.status_updates = match v.trim() {
                "every-change" => StatusUpdates::EveryChange,
                "transitions" => StatusUpdates::Transitions,
                _ => {
                    return Err(err(
                        "STAIRCASE_STATUS_UPDATES",
                        &v,
                        "every-change or transitions",
                    ));
                }
            };
        }
        let sharding = match get("STAIRCASE_SHARDING") {
            Some(v) => boolean("STAIRCASE_SHARDING", &v)?,
            None => false,
        };
        let elect = match get("STAIRCASE_LEADER_ELECTION") {
            Some(v) => boolean("STAIRCASE_LEADER_ELECTION", &v)?,
            None => false,
        };
        if elect || sharding {
            let lease = get("STAIRCASE_LEASE_NAME").unwrap_or_else(|| c.name.clone());
            let mut le = LeaderElection::new(lease);
            if let Some(ns) = get("STAIRCASE_LEASE_NAMESPACE") {
                le = le.with_namespace(ns);
            }
            let host = get("POD_NAME").or_else(|| get("HOSTNAME"));
            le = le.with_identity(crate::leader::unique_identity(host.as_deref()));
            le.sharding = sharding;
            c.leader_election = Some(le);
        }
        Ok(c)
    }

    /// Sets [`OperatorConfig::name`].
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets [`OperatorConfig::concurrency`] (at least 1).
    pub fn with_concurrency(mut self, n: u16) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets [`OperatorConfig::rule_policy`].
    pub fn with_rule_policy(mut self, p: RulePolicy) -> Self {
        self.rule_policy = p;
        self
    }

    /// Sets [`OperatorConfig::backoff`].
    pub fn with_backoff(mut self, b: Backoff) -> Self {
        self.backoff = b;
        self
    }

    /// Sets [`OperatorConfig::runaway_after`] (at least 1).
    pub fn with_runaway_after(mut self, runs: u32) -> Self {
        self.runaway_after = runs.max(1);
        self
    }

    /// Sets [`OperatorConfig::fight_after`] (0: off; otherwise at least 2).
    pub fn with_fight_after(mut self, runs: u32) -> Self {
        self.fight_after = if runs == 0 { 0 } else { runs.max(2) };
        self
    }

    /// How far apart a step's writes to one object may be and still count as one row of a fight:
    /// a resync period, or twice the backoff's cap if that is longer (a fight's runs are that
    /// far apart at most).
    pub(crate) fn fight_window(&self) -> Duration {
        self.resync.max(self.backoff.max.saturating_mul(2))
    }

    /// Sets [`OperatorConfig::external_call_window`].
    pub fn with_external_call_window(mut self, window: Duration) -> Self {
        self.external_call_window = window;
        self
    }

    /// Sets [`OperatorConfig::resync`].
    pub fn with_resync(mut self, d: Duration) -> Self {
        self.resync = d;
        self
    }

    /// Sets [`OperatorConfig::namespace`].
    pub fn with_namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// Sets [`OperatorConfig::label_selector`].
    pub fn with_label_selector(mut self, s: impl Into<String>) -> Self {
        self.label_selector = Some(s.into());
        self
    }

    /// Sets [`OperatorConfig::shutdown_timeout`].
    pub fn with_shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// Sets [`OperatorConfig::metrics_addr`].
    pub fn with_metrics_addr(mut self, addr: SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    /// Sets [`OperatorConfig::leader_election`].
    pub fn with_leader_election(mut self, le: LeaderElection) -> Self {
        self.leader_election = Some(le);
        self
    }

    /// Sets [`OperatorConfig::events`].
    pub fn with_events(mut self, on: bool) -> Self {
        self.events = on;
        self
    }

    /// Sets [`OperatorConfig::cache_read_your_writes`].
    pub fn with_cache_read_your_writes(mut self, on: bool) -> Self {
        self.cache_read_your_writes = on;
        self
    }

    /// Sets [`OperatorConfig::cache_transform`].
    pub fn with_cache_transform(mut self, transform: fn(&mut ObjectMeta)) -> Self {
        self.cache_transform = transform;
        self
    }

    /// Sets [`OperatorConfig::relist`].
    pub fn with_relist(mut self, r: Relist) -> Self {
        self.relist = r;
        self
    }

    /// Sets [`OperatorConfig::initial_list`].
    pub fn with_initial_list(mut self, l: InitialList) -> Self {
        self.initial_list = l;
        self
    }

    /// Sets [`OperatorConfig::kstatus`].
    pub fn with_kstatus(mut self, on: bool) -> Self {
        self.kstatus = on;
        self
    }

    /// Sets [`OperatorConfig::status_updates`].
    pub fn with_status_updates(mut self, u: StatusUpdates) -> Self {
        self.status_updates = u;
        self
    }
}

fn err(var: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError {
        var,
        value: value.to_string(),
        expected,
    }
}

fn parse<T: std::str::FromStr>(
    var: &'static str,
    v: &str,
    expected: &'static str,
) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| err(var, v, expected))
}

fn boolean(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(err(var, v, "true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<OperatorConfig, ConfigError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OperatorConfig::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn empty_environment_gives_the_defaults() {
        let c = from(&[]).unwrap();
        assert_eq!(c.concurrency, 16);
        assert_eq!(c.relist, Relist::InPlace);
        assert_eq!(c.fight_after, 3);
        assert!(c.leader_election.is_none() && c.metrics_addr.is_none() && c.events);
    }

    #[test]
    fn variables_override_defaults() {
        let c = from(&[
            ("STAIRCASE_CONCURRENCY", "3"),
            ("STAIRCASE_NAMESPACE", "apps"),
            ("STAIRCASE_METRICS_ADDR", "0.0.0.0:9090"),
            ("STAIRCASE_LEADER_ELECTION", "true"),
            ("STAIRCASE_NAME", "foo-operator"),
            ("POD_NAME", "foo-operator-7d9-abc"),
            ("STAIRCASE_RELIST", "swap"),
            ("STAIRCASE_FIGHT_AFTER", "1"),
            ("STAIRCASE_INITIAL_LIST", "paged"),
        ])
        .unwrap();
        assert_eq!(c.initial_list, InitialList::Paged);
        assert!(from(&[("STAIRCASE_INITIAL_LIST", "stream")]).is_err());
        assert_eq!(c.concurrency, 3);
        assert_eq!(c.fight_after, 2, "the first write is the step's own");
        assert_eq!(
            from(&[("STAIRCASE_FIGHT_AFTER", "0")]).unwrap().fight_after,
            0
        );
        assert_eq!(c.relist, Relist::Swap);
        assert_eq!(c.namespace.as_deref(), Some("apps"));
        assert_eq!(c.metrics_addr, Some("0.0.0.0:9090".parse().unwrap()));
        let le = c.leader_election.unwrap();
        assert_eq!(le.lease_name, "foo-operator");
        assert!(le.identity.starts_with("foo-operator-7d9-abc-"), "{le:?}");
    }

    #[test]
    fn identities_from_the_environment_are_unique_per_process() {
        // Two replicas on one host (or two `hostNetwork` pods on one node) see the same
        // HOSTNAME; sharing an identity, both would lead.
        let vars = [
            ("STAIRCASE_LEADER_ELECTION", "true"),
            ("HOSTNAME", "node-1"),
        ];
        let id = || from(&vars).unwrap().leader_election.unwrap().identity;
        let (a, b) = (id(), id());
        assert!(
            a.starts_with("node-1-") && b.starts_with("node-1-"),
            "{a} {b}"
        );
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let e = from(&[("STAIRCASE_CONCURRENCY", "0")]).unwrap_err();
        assert_eq!(e.var, "STAIRCASE_CONCURRENCY");
        let e = from(&[("STAIRCASE_METRICS_ADDR", "localhost")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("STAIRCASE_METRICS_ADDR=\"localhost\": expected"),
            "{e}"
        );
        assert_eq!(
            from(&[("STAIRCASE_LEADER_ELECTION", "maybe")])
                .unwrap_err()
                .var,
            "STAIRCASE_LEADER_ELECTION"
        );
        assert_eq!(
            from(&[("STAIRCASE_RELIST", "atomic")]).unwrap_err().var,
            "STAIRCASE_RELIST"
        );
        assert_eq!(
            from(&[("STAIRCASE_FIGHT_AFTER", "-1")]).unwrap_err().var,
            "STAIRCASE_FIGHT_AFTER"
        );
    }
}
