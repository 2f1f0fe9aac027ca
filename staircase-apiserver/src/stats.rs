//! Request accounting: what the operator under test asked the server, for assertions such as
//! "the reconciler issued no writes on the second pass" or "it never listed all namespaces".

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::router::Verb;

/// One served request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string ("" when absent).
    pub query: String,
    /// Kubernetes verb, for resource requests.
    pub verb: Option<Verb>,
    /// Resource as `plural` or `plural.group`, for resource requests.
    pub resource: Option<String>,
    /// Subresource, e.g. `status`.
    pub subresource: Option<String>,
    /// Namespace from the URL.
    pub namespace: Option<String>,
    /// Object name from the URL.
    pub name: Option<String>,
    /// HTTP status code of the response (for watches: of the stream's start).
    pub status: u16,
    /// `fieldManager` query parameter, when given.
    pub field_manager: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// From the request's arrival to its answer being handed to HTTP (for a watch: to the
    /// stream's start), injected latency included.
    pub elapsed: Duration,
    /// A successful write that changed nothing: the object kept its resourceVersion (the
    /// server stored nothing and sent no watch event).
    pub unchanged: bool,
}

#[derive(Debug, Default)]
struct Inner {
    log: Vec<RequestRecord>,
    by_verb: BTreeMap<Verb, u64>,
    time_by_verb: BTreeMap<Verb, Duration>,
    by_resource: BTreeMap<(String, Option<String>, Verb), u64>,
    writes: u64,
    unchanged_writes: u64,
    total: u64,
    by_agent: BTreeMap<String, AgentCounts>,
}

/// Counts of one client program (see [`Stats::to_json`]).
#[derive(Debug, Default, Clone)]
struct AgentCounts {
    by_verb: BTreeMap<Verb, u64>,
    /// Keyed `verb resource[/subresource]`, e.g. `patch deployments.apps/status`.
    by_resource: BTreeMap<String, u64>,
    writes: u64,
    unchanged_writes: u64,
}

/// The program name of a `User-Agent` (`kubectl/v1.32 (linux/amd64)` -> `kubectl`), "" without
/// one.
fn agent_of(ua: Option<&str>) -> String {
    ua.and_then(|u| u.split('/').next())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// A handle to the server's request statistics; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    inner: Arc<Mutex<Inner>>,
    keep_log: Arc<std::sync::atomic::AtomicBool>,
}

impl Stats {
    pub(crate) fn new() -> Self {
        let s = Stats::default();
        s.keep_log.store(true, std::sync::atomic::Ordering::Relaxed);
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn record(&self, r: RequestRecord) {
        let mut i = self.lock();
        i.total += 1;
        if let Some(v) = r.verb {
            *i.by_verb.entry(v).or_default() += 1;
            *i.time_by_verb.entry(v).or_default() += r.elapsed;
            let agent = i
                .by_agent
                .entry(agent_of(r.user_agent.as_deref()))
                .or_default();
            *agent.by_verb.entry(v).or_default() += 1;
            if let Some(res) = &r.resource {
                let key = match &r.subresource {
                    Some(sub) => format!("{} {res}/{sub}", v.as_str()),
                    None => format!("{} {res}", v.as_str()),
                };
                *agent.by_resource.entry(key).or_default() += 1;
            }
            // A dry run (`dryRun=All`) is answered like a write but stores nothing.
            if v.is_write() && r.status < 400 && !r.query.contains("dryRun=") {
                agent.writes += 1;
                if r.unchanged {
                    agent.unchanged_writes += 1;
                }
                i.writes += 1;
                if r.unchanged {
                    i.unchanged_writes += 1;
                }
            }
            if let Some(res) = &r.resource {
                *i.by_resource
                    .entry((res.clone(), r.subresource.clone(), v))
                    .or_default() += 1;
            }
        }
        if self.keep_log.load(std::sync::atomic::Ordering::Relaxed) {
            i.log.push(r);
        }
    }

    /// Requests served with this verb (successful or not).
    pub fn count(&self, verb: Verb) -> u64 {
        self.lock().by_verb.get(&verb).copied().unwrap_or(0)
    }

    /// Requests with this verb on a resource, named `plural` for core or `plural.group`
    /// (e.g. `deployments.apps`), on the main resource (`subresource == None`) or a subresource.
    pub fn count_resource(&self, resource: &str, subresource: Option<&str>, verb: Verb) -> u64 {
        self.lock()
            .by_resource
            .get(&(resource.to_string(), subresource.map(String::from), verb))
            .copied()
            .unwrap_or(0)
    }

    /// Successful writes (create, update, patch, delete, deletecollection), all resources; dry
    /// runs (`dryRun=All`) store nothing and are not counted.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// Of the [`writes`](Self::writes), those that changed nothing: the object kept its
    /// resourceVersion (a patch or apply of what was already stored).
    pub fn unchanged_writes(&self) -> u64 {
        self.lock().unchanged_writes
    }

    /// The counters as JSON, for a process outside the server (the `staircase-apiserver` binary
    /// serves them at `GET /staircase/stats`):
    ///
    /// ```json
    /// {"total": 120, "writes": 40, "unchanged_writes": 3,
    ///  "by_verb": {"get": 10, "list": 5, "patch": 30, ...},
    ///  "by_agent": {"kubectl": {"by_verb": {"get": 2}, "by_resource": {"get pods": 2},
    ///                          "writes": 0, "unchanged_writes": 0}, ...}}
    /// ```
    ///
    /// `by_agent` splits the resource requests by the program name of their `User-Agent`
    /// (the part before the first `/`; `""` for requests without one), and each agent's by
    /// `verb resource[/subresource]`.
    pub fn to_json(&self) -> serde_json::Value {
        fn verbs(m: &BTreeMap<Verb, u64>) -> serde_json::Value {
            m.iter()
                .map(|(v, n)| (v.as_str().to_string(), serde_json::Value::from(*n)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        }
        let i = self.lock();
        let agents: serde_json::Map<_, _> = i
            .by_agent
            .iter()
            .map(|(a, c)| {
                (
                    a.clone(),
                    serde_json::json!({
                        "by_verb": verbs(&c.by_verb),
                        "by_resource": c.by_resource,
                        "writes": c.writes,
                        "unchanged_writes": c.unchanged_writes,
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "total": i.total,
            "writes": i.writes,
            "unchanged_writes": i.unchanged_writes,
            "by_verb": verbs(&i.by_verb),
            "by_agent": agents,
        })
    }

    /// All requests, including discovery.
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// The mean [`elapsed`](RequestRecord::elapsed) of requests with this verb, `None` before
    /// the first: what the server took to answer, as a benchmark's request latency.
    pub fn mean_elapsed(&self, verb: Verb) -> Option<Duration> {
        let n = self.count(verb);
        (n > 0).then(|| self.total_elapsed(verb) / u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The summed [`elapsed`](RequestRecord::elapsed) of requests with this verb (a mean over
    /// an interval is the difference of two readings over the difference of two counts).
    pub fn total_elapsed(&self, verb: Verb) -> Duration {
        self.lock()
            .time_by_verb
            .get(&verb)
            .copied()
            .unwrap_or_default()
    }

    /// Counts per verb.
    pub fn by_verb(&self) -> BTreeMap<Verb, u64> {
        self.lock().by_verb.clone()
    }

    /// A copy of the request log, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }

    /// Turns the per-request log on or off (counters are always kept); off saves memory in
    /// long benchmarks.
    pub fn set_log_enabled(&self, on: bool) {
        self.keep_log
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Forgets everything recorded so far.
    pub fn reset(&self) {
        *self.lock() = Inner::default();
    }
}
