//! Programmable misbehaviour, so operator tests can prove they survive what real clusters do:
//! failed and slow requests, writes whose response is lost, broken or lagging watches, and
//! compacted history.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::router::Verb;
use crate::store::Store;

/// What a fault does to a matching request.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Answer with this Status instead of handling the request (nothing is stored).
    Fail {
        /// HTTP code, e.g. 500.
        code: u16,
        /// Status reason, e.g. `InternalError`.
        reason: String,
    },
    /// Handle and commit the request, then answer with this Status anyway.
    FailAfterCommit {
        /// HTTP code.
        code: u16,
        /// Status reason.
        reason: String,
    },
    /// Handle and commit the request, then close the connection without an answer.
    DropAfterCommit,
    /// Close the connection without handling the request.
    Drop,
    /// Sleep (with `tokio::time::sleep`, so paused time applies) before handling.
    Latency(Duration),
    /// Answer no sooner than this after the request arrived, handling it half-way.
    RoundTrip(Duration),
}

/// A rule: which requests it matches and what happens to them.
///
/// ```
/// use staircase_apiserver::{Fault, Verb};
/// // The second update of any ConfigMap in namespace "ns" fails with 500, once.
/// let f = Fault::fail(500, "InternalError").verb(Verb::Update).resource("configmaps").namespace("ns").nth(2);
/// # let _ = f;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    action: FaultAction,
    verb: Option<Verb>,
    resource: Option<String>,
    subresource: Option<Option<String>>,
    name: Option<String>,
    namespace: Option<String>,
    user_agent: Option<String>,
    field_manager: Option<String>,
    nth: usize,
    times: Option<usize>,
}

impl Fault {
    fn new(action: FaultAction, times: Option<usize>) -> Self {
        Fault {
            action,
            verb: None,
            resource: None,
            subresource: None,
            name: None,
            namespace: None,
            user_agent: None,
            field_manager: None,
            nth: 1,
            times,
        }
    }

    /// Fail matching requests with a Status of this code and reason, before anything is stored.
    /// Fires once unless [`times`](Self::times) or [`always`](Self::always) says otherwise.
    pub fn fail(code: u16, reason: &str) -> Self {
        Self::new(
            FaultAction::Fail {
                code,
                reason: reason.into(),
            },
            Some(1),
        )
    }

    /// Commit the write, then answer with an error: the client cannot know it succeeded.
    pub fn fail_after_commit(code: u16, reason: &str) -> Self {
        Self::new(
            FaultAction::FailAfterCommit {
                code,
                reason: reason.into(),
            },
            Some(1),
        )
    }

    /// Commit the write, then drop the connection without a response.
    pub fn drop_after_commit() -> Self {
        Self::new(FaultAction::DropAfterCommit, Some(1))
    }

    /// Drop the connection without handling the request.
    pub fn drop_connection() -> Self {
        Self::new(FaultAction::Drop, Some(1))
    }

    /// Delay every matching request by `d` (until removed): never less, and later only by the
    /// OS's wake-up latency, not rounded up to tokio's millisecond timer ticks.
    pub fn latency(d: Duration) -> Self {
        Self::new(FaultAction::Latency(d), None)
    }

    /// Make every matching request a round trip of `d` (until removed), as a client sees a
    /// remote API server: the request reaches the handler `d / 2` after it arrived and the
    /// answer leaves `d` after it arrived, so the server's own work happens inside `d` instead
    /// of adding to it (unless it takes longer than `d / 2`; then the answer leaves when it is
    /// done). [`latency`](Self::latency), by contrast, holds the request for `d` and then
    /// handles it: the client waits `d` plus the handling.
    ///
    /// A write is committed, and its watch event sent, half-way through the round trip: a
    /// watcher sees it before the writer has its answer (add
    /// [`delay_watch_events`](crate::Faults::delay_watch_events) to model a slow watch).
    pub fn round_trip(d: Duration) -> Self {
        Self::new(FaultAction::RoundTrip(d), None)
    }

    /// Only requests with this verb.
    pub fn verb(mut self, v: Verb) -> Self {
        self.verb = Some(v);
        self
    }

    /// Only this resource: `configmaps` (any group) or `deployments.apps`.
    pub fn resource(mut self, r: &str) -> Self {
        self.resource = Some(r.into());
        self
    }

    /// Only this subresource (e.g. `status`); `None` means only the main resource.
    pub fn subresource(mut self, s: Option<&str>) -> Self {
        self.subresource = Some(s.map(String::from));
        self
    }

    /// Only the object with this name.
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }

    /// Only requests in this namespace.
    pub fn namespace(mut self, n: &str) -> Self {
        self.namespace = Some(n.into());
        self
    }

    /// Only requests of one client: those whose `User-Agent` header starts with `agent` (e.g.
    /// `replica-b` matches `replica-b/1.0 (linux)`). Give each client its own agent through
    /// `kube::Config::headers`, and a fault can cut off one replica while the others go on.
    pub fn user_agent(mut self, agent: &str) -> Self {
        self.user_agent = Some(agent.into());
        self
    }

    /// Only requests made as this field manager: the `fieldManager` parameter, or for a request
    /// without one, the manager the server derives from the user agent (its program name, as
    /// Kubernetes does). Reads carry no `fieldManager`, so they match by the derived one.
    pub fn field_manager(mut self, manager: &str) -> Self {
        self.field_manager = Some(manager.into());
        self
    }

    /// Skip the first `n - 1` matching requests (1 = the first match fires).
    pub fn nth(mut self, n: usize) -> Self {
        self.nth = n.max(1);
        self
    }

    /// Fire for `n` matching requests (from the `nth`), then stay inert.
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }

    /// Fire for every matching request from the `nth` on.
    pub fn always(mut self) -> Self {
        self.times = None;
        self
    }

    fn matches(&self, r: &RequestInfo<'_>) -> bool {
        self.verb.is_none_or(|v| Some(v) == r.verb)
            && self.resource.as_ref().is_none_or(|want| {
                r.plural.is_some_and(|p| {
                    if want.contains('.') {
                        *want == crate::status::qualified(r.group.unwrap_or(""), p)
                    } else {
                        want == p
                    }
                })
            })
            && self
                .subresource
                .as_ref()
                .is_none_or(|s| s.as_deref() == r.subresource)
            && self
                .name
                .as_ref()
                .is_none_or(|n| Some(n.as_str()) == r.name)
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| Some(n.as_str()) == r.namespace)
            && self
                .user_agent
                .as_ref()
                .is_none_or(|a| r.user_agent.is_some_and(|u| u.starts_with(a.as_str())))
            && self
                .field_manager
                .as_ref()
                .is_none_or(|m| m == r.field_manager)
    }
}

/// Identifies an injected fault, for [`Faults::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultId(u64);

/// The request attributes faults match on.
pub(crate) struct RequestInfo<'a> {
    pub verb: Option<Verb>,
    pub group: Option<&'a str>,
    pub plural: Option<&'a str>,
    pub subresource: Option<&'a str>,
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// The `fieldManager` parameter, else the manager derived from the user agent.
    pub field_manager: &'a str,
}

/// What the server must do for one request, decided when it arrives.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub latency: Duration,
    pub round_trip: Duration,
    pub before: Option<FaultAction>,
    pub after: Option<FaultAction>,
}

#[derive(Default)]
struct Inner {
    rules: Vec<(FaultId, Fault, usize, usize)>,
    next: u64,
    watch_delay: Duration,
    hold_back: u64,
    /// Held events up to this resourceVersion are released whatever the hold-back (see
    /// [`Faults::release_held_watch_events`]).
    released_through: u64,
    /// Probability of dropping a live watch event, and the state of the seeded generator that
    /// decides (splitmix64), so a run with the same seed drops the same sequence of events.
    drop_p: f64,
    drop_rng: u64,
    /// Resources whose watches the watch faults (hold-back, drops) leave alone.
    spared: Vec<String>,
}

/// A handle to the server's fault injection; cheap to clone.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<Mutex<Inner>>,
    store: Arc<Store>,
}

impl Faults {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Faults {
            inner: Arc::default(),
            store,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a fault rule.
    pub fn inject(&self, fault: Fault) -> FaultId {
        let mut i = self.lock();
        i.next += 1;
        let id = FaultId(i.next);
        i.rules.push((id, fault, 0, 0));
        id
    }

    /// Removes one rule.
    pub fn remove(&self, id: FaultId) {
        self.lock().rules.retain(|(i, ..)| *i != id);
    }

    /// Removes every rule and watch fault.
    pub fn clear(&self) {
        {
            let mut i = self.lock();
            i.rules.clear();
            i.watch_delay = Duration::ZERO;
            i.hold_back = 0;
            i.drop_p = 0.0;
            i.spared.clear();
        }
        self.store.lock().flush_watchers();
    }

    /// How many times a rule has fired so far.
    pub fn fired(&self, id: FaultId) -> usize {
        self.lock()
            .rules
            .iter()
            .find(|(i, ..)| *i == id)
            .map_or(0, |r| r.3)
    }

    /// Ends every open watch stream now, as an apiserver restart or a load balancer would.
    /// Clients see the stream end cleanly and must re-watch.
    pub fn close_watches(&self) {
        self.store.lock().close_watchers();
    }

    /// Delivers each watch event `d` after it was committed, like a lagging watch cache (zero
    /// turns it off and releases what is waiting). A pure latency: events stay in commit order
    /// and the watch's throughput is not limited, so a thousand events committed at once all
    /// arrive about `d` later, not one `d` apart. Lines a watch replays when it starts count as
    /// committed at its start. Applies to open watches at once, and composes with
    /// [`hold_back_watch_events`](Self::hold_back_watch_events) (a held event keeps its
    /// commit time).
    pub fn delay_watch_events(&self, d: Duration) {
        self.lock().watch_delay = d;
        // Wake waiting streams so they re-read the delay (a shorter one releases lines now).
        self.store.lock().flush_watchers();
    }

    /// Holds watch events back until the store is `n` resourceVersions ahead of them, like a
    /// lagging watch cache (zero turns it off and releases everything held).
    pub fn hold_back_watch_events(&self, n: u64) {
        self.lock().hold_back = n;
        self.store.lock().flush_watchers();
    }

    /// Releases every watch event held back so far, as a lagging watch cache catches up; events
    /// committed later are held back as before. One call, no window: turning the hold-back off
    /// and on again would release nothing when the streams only look after both calls.
    pub fn release_held_watch_events(&self) {
        let current = self.store.lock().current_rv();
        {
            let mut i = self.lock();
            i.released_through = i.released_through.max(current);
        }
        self.store.lock().flush_watchers();
    }

    /// Drops each live watch event with probability `p` (0 turns it off), decided by a generator
    /// seeded with `seed`: the `n`-th event delivered to any watcher is dropped or kept the same
    /// way for the same seed. Events replayed when a watch starts or resumes are never dropped, so
    /// a client that re-lists (or resumes from an older resourceVersion) recovers, as it must on
    /// a real cluster whose watch cache lost events.
    pub fn drop_watch_events(&self, p: f64, seed: u64) {
        let mut i = self.lock();
        i.drop_p = p.clamp(0.0, 1.0);
        i.drop_rng = seed;
    }

    /// Leaves watches of `resource` (`configmaps` in any group, or `deployments.apps`) alone:
    /// [`hold_back_watch_events`](Self::hold_back_watch_events) and
    /// [`drop_watch_events`](Self::drop_watch_events) then lag or thin out only the other
    /// resources' watches, e.g. an operator's child kinds while its primary resource's watch
    /// keeps up. Until [`clear`](Self::clear).
    pub fn spare_watches_of(&self, resource: &str) {
        self.lock().spared.push(resource.to_string());
        self.store.lock().flush_watchers();
    }

    /// Whether the watch faults leave watches of `group`'s `plural` alone.
    pub(crate) fn spares(&self, group: &str, plural: &str) -> bool {
        let i = self.lock();
        i.spared.iter().any(|want| {
            if want.contains('.') {
                *want == crate::status::qualified(group, plural)
            } else {
                want == plural
            }
        })
    }

    /// Forgets all watch history: resuming a watch (or a continue token) from any earlier
    /// resourceVersion now fails with `410 Gone`.
    pub fn compact(&self) {
        self.store.lock().compact();
    }

    /// The current watch delay, read by each watch stream when it delivers a line.
    pub(crate) fn watch_delay(&self) -> Duration {
        self.lock().watch_delay
    }

    /// Whether the next live watch event is dropped (see [`Faults::drop_watch_events`]).
    pub(crate) fn drop_event(&self) -> bool {
        let mut i = self.lock();
        if i.drop_p <= 0.0 {
            return false;
        }
        // splitmix64: tiny, seedable, and good enough to pick events.
        i.drop_rng = i.drop_rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = i.drop_rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < i.drop_p
    }

    /// The hold-back lag, and the resourceVersion through which held events are released.
    pub(crate) fn hold_back(&self) -> (u64, u64) {
        let i = self.lock();
        (i.hold_back, i.released_through)
    }

    pub(crate) fn decide(&self, r: &RequestInfo<'_>) -> Decision {
        let mut d = Decision::default();
        let mut i = self.lock();
        for (_, f, seen, fired) in i.rules.iter_mut() {
            if !f.matches(r) {
                continue;
            }
            *seen += 1;
            if *seen < f.nth || f.times.is_some_and(|t| *fired >= t) {
                continue;
            }
            match &f.action {
                FaultAction::Latency(l) => {
                    *fired += 1;
                    d.latency += *l;
                }
                FaultAction::RoundTrip(t) => {
                    *fired += 1;
                    d.round_trip += *t;
                }
                a @ (FaultAction::Fail { .. } | FaultAction::Drop) if d.before.is_none() => {
                    *fired += 1;
                    d.before = Some(a.clone());
                }
                a @ (FaultAction::FailAfterCommit { .. } | FaultAction::DropAfterCommit)
                    if d.after.is_none() =>
                {
                    *fired += 1;
                    d.after = Some(a.clone());
                }
                _ => {}
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiServer;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams};

    /// A client of the server that sends this `User-Agent`.
    fn client_as(server: &ApiServer, agent: &'static str) -> kube::Client {
        let mut config = server.config();
        // kube's own retries would hide the injected answers.
        config.default_retry = false;
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(agent),
        ));
        kube::Client::try_from(config).expect("client")
    }

    fn cm(name: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm
    }

    fn code(r: kube::Result<ConfigMap>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(kube::Error::Api(e)) => e.code,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    /// A fault aimed at one client by its user agent cuts off that client only, and counts only
    /// its requests; one aimed at a field manager fails only that manager's writes.
    #[tokio::test]
    async fn faults_can_target_one_client() {
        let server = ApiServer::start().await.expect("server");
        let (a, b) = (
            client_as(&server, "replica-a/1.0"),
            client_as(&server, "replica-b/1.0"),
        );
        let (api_a, api_b): (Api<ConfigMap>, Api<ConfigMap>) =
            (Api::default_namespaced(a), Api::default_namespaced(b));
        let pp = PostParams::default();
        let partitioned = server.faults().inject(
            Fault::fail(503, "ServiceUnavailable")
                .user_agent("replica-b")
                .verb(Verb::Create)
                .nth(2)
                .always(),
        );
        assert_eq!(code(api_a.create(&pp, &cm("a1")).await), 200);
        // Replica a's create did not count towards the rule: b's first create still passes.
        assert_eq!(code(api_b.create(&pp, &cm("b1")).await), 200);
        assert_eq!(code(api_b.create(&pp, &cm("b2")).await), 503);
        assert_eq!(code(api_a.create(&pp, &cm("a2")).await), 200);
        assert_eq!(server.faults().fired(partitioned), 1);
        server.faults().clear();

        server.faults().inject(
            Fault::fail(500, "InternalError")
                .field_manager("mover")
                .always(),
        );
        let as_mover = PostParams {
            field_manager: Some("mover".into()),
            ..Default::default()
        };
        assert_eq!(code(api_a.create(&as_mover, &cm("m1")).await), 500);
        assert_eq!(code(api_a.create(&pp, &cm("a3")).await), 200);
        // Without `fieldManager`, a request's manager is its agent's program name.
        server.faults().inject(
            Fault::fail(500, "InternalError")
                .field_manager("replica-a")
                .always(),
        );
        assert_eq!(code(api_a.get("a1").await), 500);
        assert_eq!(code(api_b.get("a1").await), 200);
        server.shutdown().await;
    }
}
