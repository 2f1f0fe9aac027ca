//! The object store: every object as shared JSON, one global resourceVersion counter, a bounded
//! history of events for watches that resume from a version, and the fan-out to open watches.
//!
//! All of it lives behind one mutex ([`Store`]) so a write is validated and committed in a single
//! critical section: there is never a half-applied change, and event order is commit order.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::registry::Registry;

/// The three kinds of change a watch can see (bookmarks and errors are produced by `watch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The object was created (or, in a synthetic initial list, exists).
    Added,
    /// The object changed.
    Modified,
    /// The object is gone.
    Deleted,
}

impl EventType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct Event {
    /// The resourceVersion of the change (of the deletion, for `Deleted`).
    pub rv: u64,
    /// What happened.
    pub etype: EventType,
    /// Storage key of the resource (`group/plural`).
    pub resource: Arc<str>,
    /// Namespace of the object ("" when cluster-scoped).
    pub namespace: String,
    /// The object after the change (the last state, for deletions).
    pub object: Arc<Value>,
    /// The object before the change, so selector-filtered watches can tell "stopped matching".
    pub prev: Option<Arc<Value>>,
    /// The serialized `{"type":..,"object":..}\n` line, built once for all watchers.
    line: OnceLock<Bytes>,
}

impl Event {
    /// Builds an event that is not (yet) part of history, e.g. a synthetic ADDED.
    pub fn new(
        rv: u64,
        etype: EventType,
        resource: Arc<str>,
        namespace: String,
        object: Arc<Value>,
    ) -> Self {
        Event {
            rv,
            etype,
            resource,
            namespace,
            object,
            prev: None,
            line: OnceLock::new(),
        }
    }

    /// The newline-terminated watch line with the object as stored.
    pub fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| watch_line(self.etype.as_str(), &self.object))
            .clone()
    }
}

/// Serializes one watch event line.
pub fn watch_line(etype: &str, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(etype.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    serde_json::to_writer(&mut buf, object).expect("JSON values always serialize");
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// What a watch stream receives from the store.
#[derive(Debug, Clone)]
pub enum WatchMsg {
    /// A committed change to the watched resource.
    Event(Arc<Event>),
    /// Re-evaluate held-back events (a watch fault changed).
    Flush,
}

struct Watcher {
    id: u64,
    namespace: Option<String>,
    tx: mpsc::UnboundedSender<WatchMsg>,
}

/// `(namespace, name)` inside one resource.
pub type ObjKey = (String, String);

/// A full object address: storage key of the resource, namespace, name.
pub type FullKey = (Arc<str>, String, String);

/// Work the garbage collector must do after a commit; processed before the lock is released.
#[derive(Debug, Clone)]
pub enum GcWork {
    /// An object with this uid disappeared: handle its dependents.
    OwnerGone(String),
    /// Re-check whether a foreground-deleting owner has no blocking dependents left.
    CheckForeground(String),
    /// Re-check whether a terminating namespace is empty.
    CheckNamespace(String),
    /// An object gained owner references: check that its owners exist.
    CheckOwners(FullKey),
}

/// Everything mutable in the server.
pub struct State {
    /// Served resource types (built-ins plus CRD-defined).
    pub registry: Registry,
    objects: HashMap<Arc<str>, BTreeMap<ObjKey, Arc<Value>>>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    /// Every event with `rv > history_start` is in `history`.
    history_start: u64,
    window: usize,
    watchers: HashMap<Arc<str>, Vec<Watcher>>,
    next_watcher: u64,
    /// uid -> address, for owner lookups.
    uids: HashMap<String, FullKey>,
    /// owner uid -> dependents' addresses.
    dependents: HashMap<String, BTreeSet<FullKey>>,
    /// Pending garbage-collection work.
    pub gc_queue: VecDeque<GcWork>,
    /// Set on shutdown: no new watches.
    pub closed: bool,
    /// Allocator for Service cluster IPs.
    pub next_cluster_ip: u32,
}

impl State {
    fn new(window: usize) -> Self {
        State {
            registry: Registry::with_builtins(),
            objects: HashMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_start: 0,
            window: window.max(1),
            watchers: HashMap::new(),
            next_watcher: 0,
            uids: HashMap::new(),
            dependents: HashMap::new(),
            gc_queue: VecDeque::new(),
            closed: false,
            next_cluster_ip: 10,
        }
    }

    /// The current (latest committed) resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch may resume from.
    pub fn oldest_resumable_rv(&self) -> u64 {
        self.history_start
    }

    fn intern(&mut self, resource: &str) -> Arc<str> {
        if let Some((k, _)) = self.objects.get_key_value(resource) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(resource);
        self.objects.insert(k.clone(), BTreeMap::new());
        k
    }

    /// One object.
    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.objects
            .get(resource)?
            .get(&(ns.to_string(), name.to_string()))
    }

    /// Objects of a resource, in one namespace (`Some`) or all, ordered by namespace then name,
    /// starting strictly after `after` when given (for pagination).
    pub fn range<'a>(
        &'a self,
        resource: &str,
        ns: Option<&'a str>,
        after: Option<&ObjKey>,
    ) -> Box<dyn Iterator<Item = (&'a ObjKey, &'a Arc<Value>)> + 'a> {
        use std::ops::Bound;
        let Some(map) = self.objects.get(resource) else {
            return Box::new(std::iter::empty());
        };
        let start = match (after, ns) {
            (Some(a), _) => Bound::Excluded(a.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let it = map.range((start, Bound::Unbounded));
        match ns {
            Some(ns) => Box::new(it.take_while(move |((n, _), _)| n == ns)),
            None => Box::new(it),
        }
    }

    /// Address of the object with this uid.
    pub fn by_uid(&self, uid: &str) -> Option<&FullKey> {
        self.uids.get(uid)
    }

    /// Addresses of objects whose ownerReferences name `uid`.
    pub fn dependents_of(&self, uid: &str) -> Vec<FullKey> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every namespace holding objects of any resource, used when a namespace terminates.
    pub fn keys_in_namespace(&self, ns: &str) -> Vec<FullKey> {
        let mut out = vec![];
        for (res, map) in &self.objects {
            for ((n, name), _) in map.range((ns.to_string(), String::new())..) {
                if n != ns {
                    break;
                }
                out.push((res.clone(), n.clone(), name.clone()));
            }
        }
        out
    }

    fn index(&mut self, key: &FullKey, old: Option<&Value>, new: Option<&Value>) {
        let owners = |v: Option<&Value>| v.map(crate::gc::owner_uids).unwrap_or_default();
        for o in owners(old) {
            if let Some(s) = self.dependents.get_mut(&o) {
                s.remove(key);
                if s.is_empty() {
                    self.dependents.remove(&o);
                }
            }
        }
        for o in owners(new) {
            self.dependents.entry(o).or_default().insert(key.clone());
        }
        if let Some(old) = old {
            self.uids.remove(crate::meta::uid_of(old));
        }
        if let Some(new) = new {
            self.uids
                .insert(crate::meta::uid_of(new).to_string(), key.clone());
        }
    }

    /// Commits a created or updated object: assigns the next resourceVersion, stores it,
    /// records history and notifies watches. Returns the stored object.
    pub fn put(&mut self, resource: &str, ns: &str, name: &str, mut obj: Value) -> Arc<Value> {
        let res = self.intern(resource);
        self.rv += 1;
        let rv = self.rv;
        crate::meta::meta_mut(&mut obj).insert("resourceVersion".into(), rv.to_string().into());
        let obj = Arc::new(obj);
        let key = (ns.to_string(), name.to_string());
        let prev = self
            .objects
            .get_mut(&res)
            .expect("interned")
            .insert(key, obj.clone());
        let full = (res.clone(), ns.to_string(), name.to_string());
        self.index(&full, prev.as_deref(), Some(&obj));
        // Like the real collector, look at owners when references appear, not on every write.
        if crate::gc::owner_uids(&obj).iter().any(|u| {
            !prev
                .as_deref()
                .is_some_and(|p| crate::gc::owner_uids(p).contains(u))
        }) {
            self.gc_queue.push_back(GcWork::CheckOwners(full.clone()));
        }
        let etype = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        let mut ev = Event::new(rv, etype, res, ns.to_string(), obj.clone());
        ev.prev = prev;
        self.record(ev);
        obj
    }

    /// Removes an object for good, emitting DELETED with a fresh resourceVersion, and queues
    /// the garbage-collection consequences.
    /// `last` is the final state to report (e.g. the update that removed the last finalizer);
    /// by default the stored object.
    pub fn remove(
        &mut self,
        resource: &str,
        ns: &str,
        name: &str,
        last: Option<Value>,
    ) -> Option<Arc<Value>> {
        let res = self.intern(resource);
        let key = (ns.to_string(), name.to_string());
        let old = self.objects.get_mut(&res)?.remove(&key)?;
        self.rv += 1;
        let rv = self.rv;
        let mut last = last.unwrap_or_else(|| (*old).clone());
        crate::meta::meta_mut(&mut last).insert("resourceVersion".into(), rv.to_string().into());
        let last = Arc::new(last);
        let full = (res.clone(), ns.to_string(), name.to_string());
        self.index(&full, Some(&old), None);
        let uid = crate::meta::uid_of(&old).to_string();
        let mut ev = Event::new(rv, EventType::Deleted, res, ns.to_string(), last.clone());
        ev.prev = Some(old.clone());
        self.record(ev);
        self.gc_queue.push_back(GcWork::OwnerGone(uid));
        if let Some(refs) = old
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
        {
            for r in refs {
                if let Some(u) = r.get("uid").and_then(Value::as_str) {
                    self.gc_queue
                        .push_back(GcWork::CheckForeground(u.to_string()));
                }
            }
        }
        if !ns.is_empty() {
            self.gc_queue
                .push_back(GcWork::CheckNamespace(ns.to_string()));
        }
        Some(last)
    }

    fn record(&mut self, ev: Event) {
        let ev = Arc::new(ev);
        if let Some(ws) = self.watchers.get_mut(&ev.resource) {
            ws.retain(|w| {
                if w.namespace.as_ref().is_some_and(|n| *n != ev.namespace) {
                    return !w.tx.is_closed();
                }
                w.tx.send(WatchMsg::Event(ev.clone())).is_ok()
            });
        }
        self.history.push_back(ev);
        while self.history.len() > self.window {
            let gone = self.history.pop_front().expect("non-empty");
            self.history_start = gone.rv;
        }
    }

    /// Drops all history: watches from any version before now get `410 Gone`.
    pub fn compact(&mut self) {
        self.history.clear();
        self.history_start = self.rv;
    }

    /// Events of `resource` (and namespace) after `rv`, or `None` when they are no longer retained.
    pub fn events_since(
        &self,
        resource: &str,
        ns: Option<&str>,
        rv: u64,
    ) -> Option<Vec<Arc<Event>>> {
        if rv < self.history_start {
            return None;
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Some(
            self.history
                .range(start..)
                .filter(|e| &*e.resource == resource && ns.is_none_or(|n| n == e.namespace))
                .cloned()
                .collect(),
        )
    }

    /// Registers a watch; it receives every event committed after this call.
    pub fn add_watcher(
        &mut self,
        resource: &str,
        ns: Option<&str>,
    ) -> (u64, mpsc::UnboundedReceiver<WatchMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let res = self.intern(resource);
        self.next_watcher += 1;
        let id = self.next_watcher;
        if !self.closed {
            self.watchers.entry(res).or_default().push(Watcher {
                id,
                namespace: ns.map(String::from),
                tx,
            });
        }
        (id, rx)
    }

    /// Ends every open watch stream (their channels close).
    pub fn close_watchers(&mut self) {
        self.watchers.clear();
    }

    /// Number of open watch streams.
    pub fn watcher_count(&self) -> usize {
        self.watchers
            .values()
            .map(|v| v.iter().filter(|w| !w.tx.is_closed()).count())
            .sum()
    }

    /// Asks every watch to re-evaluate held-back events.
    pub fn flush_watchers(&mut self) {
        for ws in self.watchers.values() {
            for w in ws {
                let _ = w.tx.send(WatchMsg::Flush);
            }
        }
    }

    /// Removes a watcher whose stream ended.
    pub fn remove_watcher(&mut self, resource: &str, id: u64) {
        if let Some(ws) = self.watchers.get_mut(resource) {
            ws.retain(|w| w.id != id);
        }
    }

    /// Drops every object of a resource (its CRD went away), emitting DELETED events.
    pub fn remove_all(&mut self, resource: &str) {
        let keys: Vec<ObjKey> = self
            .objects
            .get(resource)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for (ns, name) in keys {
            self.remove(resource, &ns, &name, None);
        }
    }
}

/// The shared, lockable state.
pub struct Store {
    state: Mutex<State>,
}

impl Store {
    /// An empty store with the built-in resources and a history of `window` events.
    pub fn new(window: usize) -> Self {
        Store {
            state: Mutex::new(State::new(window)),
        }
    }

    /// Locks the state. A panic while holding the lock never leaves a half-applied write
    /// (commits are single `put`/`remove` calls), so a poisoned lock is safe to reuse.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
