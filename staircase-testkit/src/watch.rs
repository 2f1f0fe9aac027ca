//! Watch streams: replay (synthetic ADDED for the current state, or history after a
//! resourceVersion), then live events in commit order as newline-delimited JSON, with
//! bookmarks, selector transitions, timeouts and the watch faults.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::faults::Faults;
use crate::ops::present;
use crate::registry::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Event, EventType, Store, WatchMsg, watch_line};

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// `resourceVersion` unset or `0`: the current state as ADDED events, then changes.
    Current,
    /// Changes after this resourceVersion.
    After(u64),
}

/// A parsed watch request.
pub struct WatchRequest {
    /// The watched resource, as addressed (its version shapes `apiVersion` of events).
    pub rt: Arc<ResourceType>,
    /// Namespace, or all.
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// Starting point.
    pub start: Start,
}

struct Filter {
    rt: Arc<ResourceType>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, o: &Value) -> bool {
        self.labels.matches(o) && self.fields.matches(o)
    }

    fn line(&self, etype: EventType, ev: &Event, object: &Arc<Value>) -> Bytes {
        let shown = present(object, &self.rt);
        if etype == ev.etype && Arc::ptr_eq(&shown, &ev.object) {
            ev.line()
        } else {
            watch_line(etype.as_str(), &shown)
        }
    }

    /// The line this watcher sees for a committed event, if any.
    fn translate(&self, ev: &Event) -> Option<Bytes> {
        if self.labels.is_empty() && self.fields.is_empty() {
            return Some(self.line(ev.etype, ev, &ev.object));
        }
        let now = self.matches(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.matches(p));
        let etype = match (ev.etype, before, now) {
            (EventType::Added, _, true) => EventType::Added,
            (EventType::Modified, true, true) => EventType::Modified,
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (EventType::Deleted, true, _) => EventType::Deleted,
            _ => return None,
        };
        Some(self.line(etype, ev, &ev.object))
    }
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    watch_line(
        "BOOKMARK",
        &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta}),
    )
}

/// The watch `ERROR` event for a resourceVersion that history no longer holds.
pub fn expired_line(rv: u64, oldest: u64) -> Bytes {
    let e = ApiError::expired(format!("too old resource version: {rv} ({})", oldest + 1));
    watch_line("ERROR", &e.to_status())
}

/// Unregisters the watcher when the response body is dropped (client gone or stream ended).
struct Registration {
    store: Arc<Store>,
    resource: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.store.lock().remove_watcher(&self.resource, self.id);
    }
}

struct Live {
    rx: mpsc::UnboundedReceiver<WatchMsg>,
    filter: Filter,
    ready: VecDeque<Bytes>,
    held: VecDeque<(u64, Bytes)>,
    deadline: Option<tokio::time::Instant>,
    faults: Faults,
    store: Arc<Store>,
    _reg: Option<Registration>,
}

impl Live {
    fn release_held(&mut self) {
        let n = self.faults.hold_back();
        let current = if n == 0 {
            u64::MAX
        } else {
            self.store.lock().current_rv()
        };
        while let Some((rv, _)) = self.held.front() {
            if n == 0 || current.saturating_sub(*rv) >= n {
                let (_, line) = self.held.pop_front().expect("front exists");
                self.ready.push_back(line);
            } else {
                break;
            }
        }
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                let delay = self.faults.watch_delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                return Some(line);
            }
            let msg = match self.deadline {
                Some(d) => tokio::select! {
                    m = self.rx.recv() => m,
                    _ = tokio::time::sleep_until(d) => None,
                },
                None => self.rx.recv().await,
            };
            match msg? {
                // A dropped event is lost for this stream only; history keeps it for resumes.
                WatchMsg::Event(_) if self.faults.drop_event() => {}
                WatchMsg::Event(ev) => {
                    if let Some(line) = self.filter.translate(&ev) {
                        self.held.push_back((ev.rv, line));
                    }
                }
                WatchMsg::Flush => {}
            }
            self.release_held();
        }
    }
}

/// Starts a watch: registers it atomically with the replay so no event is missed or doubled.
pub fn start(
    store: &Arc<Store>,
    faults: &Faults,
    req: WatchRequest,
) -> impl Stream<Item = Bytes> + Send + use<> {
    let key = req.rt.key();
    let filter = Filter {
        rt: req.rt.clone(),
        labels: req.labels,
        fields: req.fields,
    };
    let mut ready = VecDeque::new();
    let mut st = store.lock();
    let ns = req.namespace.as_deref();
    let current = st.current_rv();
    let mut reg = None;
    let mut rx = None;
    match req.start {
        Start::After(rv) => match st.events_since(&key, ns, rv) {
            None => ready.push_back(expired_line(rv, st.oldest_resumable_rv())),
            Some(events) => {
                ready.extend(events.iter().filter_map(|e| filter.translate(e)));
                if req.bookmarks {
                    ready.push_back(bookmark(&req.rt, current.max(rv), false));
                }
            }
        },
        Start::Current => {
            for (_, obj) in st.range(&key, ns, None) {
                if filter.matches(obj) {
                    ready.push_back(watch_line("ADDED", &present(obj, &req.rt)));
                }
            }
            if req.send_initial_events && req.bookmarks {
                ready.push_back(bookmark(&req.rt, current, true));
            }
        }
    }
    let expired = matches!(req.start, Start::After(rv) if rv < st.oldest_resumable_rv());
    if !expired {
        let (id, r) = st.add_watcher(&key, ns);
        reg = Some(Registration {
            store: store.clone(),
            resource: key.clone(),
            id,
        });
        rx = Some(r);
    }
    drop(st);
    let rx = rx.unwrap_or_else(|| mpsc::unbounded_channel().1);
    let live = Live {
        rx,
        filter,
        ready,
        held: VecDeque::new(),
        deadline: req.timeout.map(|t| tokio::time::Instant::now() + t),
        faults: faults.clone(),
        store: store.clone(),
        _reg: reg,
    };
    futures::stream::unfold(live, |mut live| async move {
        live.next().await.map(|b| (b, live))
    })
}
