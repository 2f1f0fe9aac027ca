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

/// A line waiting to be delivered, stamped with when the stream received it.
///
/// The store wakes the stream at commit and the stream drains its channel whenever it is
/// polled (also while it waits for a delayed line), so the stamp is the commit time to within
/// scheduling latency; replayed lines carry the time the watch started.
type Stamped = (tokio::time::Instant, Bytes);

struct Live {
    rx: mpsc::UnboundedReceiver<WatchMsg>,
    /// The store closed the channel (watches closed or shutdown): end after `ready` drains.
    closed: bool,
    filter: Filter,
    ready: VecDeque<Stamped>,
    held: VecDeque<(u64, Stamped)>,
    deadline: Option<tokio::time::Instant>,
    faults: Faults,
    store: Arc<Store>,
    _reg: Option<Registration>,
}

impl Live {
    fn spared(&self) -> bool {
        self.faults
            .spares(&self.filter.rt.group, &self.filter.rt.plural)
    }

    fn release_held(&mut self) {
        let (n, released_through) = match self.spared() {
            true => (0, 0),
            false => self.faults.hold_back(),
        };
        let current = if n == 0 {
            u64::MAX
        } else {
            self.store.lock().current_rv()
        };
        while let Some((rv, _)) = self.held.front() {
            if n == 0 || *rv <= released_through || current.saturating_sub(*rv) >= n {
                let (_, line) = self.held.pop_front().expect("front exists");
                self.ready.push_back(line);
            } else {
                break;
            }
        }
    }

    /// Takes one message from the store, stamped `now`; `None` ended the channel.
    fn accept(&mut self, msg: Option<WatchMsg>, now: tokio::time::Instant) {
        match msg {
            None => self.closed = true,
            // A dropped event is lost for this stream only; history keeps it for resumes.
            Some(WatchMsg::Event(_)) if !self.spared() && self.faults.drop_event() => {}
            Some(WatchMsg::Event(ev)) => {
                if let Some(line) = self.filter.translate(&ev) {
                    self.held.push_back((ev.rv, (now, line)));
                }
            }
            Some(WatchMsg::Flush) => {}
        }
    }

    /// Stamps everything the store has sent so far, without waiting.
    fn drain(&mut self) {
        let now = tokio::time::Instant::now();
        while !self.closed {
            match self.rx.try_recv() {
                Ok(msg) => self.accept(Some(msg), now),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.accept(None, now),
            }
        }
    }

    /// The next line, in commit order. The watch delay is a pure latency: a line is delivered
    /// at its stamp + delay, and waiting for one line does not delay the stamping of later
    /// ones, so many events in flight arrive together rather than one delay apart (the fault
    /// models a lagging watch cache, not a slow link). The delay is read at delivery time, so
    /// turning it off releases everything waiting.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            self.drain();
            self.release_held();
            let due = match self.ready.front() {
                Some((at, _)) => {
                    let due = *at + self.faults.watch_delay();
                    if due <= tokio::time::Instant::now() {
                        return self.ready.pop_front().map(|(_, line)| line);
                    }
                    Some(due)
                }
                None if self.closed => return None,
                None => None,
            };
            // Wait for the front line's time, a message from the store (stamped at once, and a
            // `Flush` re-evaluates held lines and the delay), or the watch timeout.
            let (deadline, closed, rx) = (self.deadline, self.closed, &mut self.rx);
            let msg = tokio::select! {
                m = rx.recv(), if !closed => Some(m),
                _ = sleep_until(due) => None,
                _ = sleep_until(deadline) => return None,
            };
            if let Some(m) = msg {
                self.accept(m, tokio::time::Instant::now());
            }
        }
    }
}

/// Sleeps until `at`, or forever when there is no such time.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
    // Replayed lines count as committed when the watch starts.
    let now = tokio::time::Instant::now();
    let ns = req.namespace.as_deref();
    let current = st.current_rv();
    let mut reg = None;
    let mut rx = None;
    match req.start {
        Start::After(rv) => match st.events_since(&key, ns, rv) {
            None => ready.push_back((now, expired_line(rv, st.oldest_resumable_rv()))),
            Some(events) => {
                ready.extend(
                    events
                        .iter()
                        .filter_map(|e| filter.translate(e))
                        .map(|l| (now, l)),
                );
                if req.bookmarks {
                    ready.push_back((now, bookmark(&req.rt, current.max(rv), false)));
                }
            }
        },
        Start::Current => {
            for (_, obj) in st.range(&key, ns, None) {
                if filter.matches(obj) {
                    ready.push_back((now, watch_line("ADDED", &present(obj, &req.rt))));
                }
            }
            if req.send_initial_events && req.bookmarks {
                ready.push_back((now, bookmark(&req.rt, current, true)));
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
        closed: false,
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

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    const DELAY: Duration = Duration::from_millis(50);
    const WRITES: usize = 200;

    /// A store, its faults and a configmap watch on it, from `start`.
    fn watch(start: Start) -> (Arc<Store>, Faults, impl Stream<Item = Bytes> + Send + use<>) {
        let store = Arc::new(Store::new(10_000));
        let faults = Faults::new(store.clone());
        let rt = store
            .lock()
            .registry
            .get("", "v1", "configmaps")
            .expect("built-in");
        let req = WatchRequest {
            rt,
            namespace: Some("ns".into()),
            labels: LabelSelector::default(),
            fields: FieldSelector::default(),
            bookmarks: false,
            send_initial_events: false,
            timeout: None,
            start,
        };
        let s = super::start(&store, &faults, req);
        (store, faults, s)
    }

    fn write(store: &Store, i: usize) {
        let name = format!("cm-{i}");
        store.lock().put(
            "/configmaps",
            "ns",
            &name,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}),
        );
    }

    /// Asserts that `s` yields nothing for a minute (of paused time).
    async fn assert_quiet(s: &mut (impl Stream<Item = Bytes> + Unpin), why: &str) {
        assert!(
            tokio::time::timeout(Duration::from_secs(60), s.next())
                .await
                .is_err(),
            "{why}"
        );
    }

    fn rv_of(line: &Bytes) -> u64 {
        let v: Value = serde_json::from_slice(line).expect("JSON line");
        v["object"]["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("resourceVersion")
    }

    // Paused time makes the schedule exact: the writes all commit at the same virtual instant,
    // so a pure latency delivers every event exactly DELAY later, while the old per-event sleep
    // took WRITES × DELAY. The bounds below are structural (one delay, not 200), not timing.
    #[tokio::test(start_paused = true)]
    async fn delayed_watch_events_are_delayed_not_serialised() {
        let (store, faults, s) = watch(Start::After(0));
        faults.delay_watch_events(DELAY);
        let mut s = Box::pin(s);
        let t0 = tokio::time::Instant::now();
        for i in 0..WRITES {
            write(&store, i);
        }
        let mut rvs = Vec::new();
        let mut first = None;
        while rvs.len() < WRITES {
            let line = s.next().await.expect("stream open");
            first.get_or_insert_with(|| t0.elapsed());
            rvs.push(rv_of(&line));
        }
        let (first, total) = (first.expect("one event"), t0.elapsed());
        assert!(first >= DELAY, "each event waits the delay: {first:?}");
        assert!(
            total < DELAY * 2,
            "{WRITES} events arrive about one delay after their commit, not one delay apart: {total:?}"
        );
        assert!(rvs.windows(2).all(|w| w[0] < w[1]), "commit order kept");
    }

    // Events committed while earlier ones wait are stamped when committed, not when the earlier
    // ones leave: a steady stream of writes keeps a constant lag instead of a growing one.
    #[tokio::test(start_paused = true)]
    async fn watch_lag_stays_constant_under_a_steady_write_rate() {
        let (store, faults, s) = watch(Start::After(0));
        faults.delay_watch_events(DELAY);
        let mut s = Box::pin(s);
        let store2 = store.clone();
        // One write per millisecond (20 per delay), committed independently of the reader.
        let writer = tokio::spawn(async move {
            let mut committed = Vec::new();
            for i in 0..WRITES {
                write(&store2, i);
                committed.push(tokio::time::Instant::now());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            committed
        });
        let mut arrived = Vec::new();
        while arrived.len() < WRITES {
            s.next().await.expect("stream open");
            arrived.push(tokio::time::Instant::now());
        }
        let committed = writer.await.expect("writer");
        let worst = committed
            .iter()
            .zip(&arrived)
            .map(|(c, a)| *a - *c)
            .max()
            .expect("events");
        assert!(
            worst < DELAY * 2,
            "lag bounded by about one delay, not growing: {worst:?}"
        );
    }

    // Replayed objects (a watch from "now", as a relist) are delayed once as a batch too.
    #[tokio::test(start_paused = true)]
    async fn replayed_events_are_delayed_once() {
        let (store, faults, _) = watch(Start::After(0));
        for i in 0..WRITES {
            write(&store, i);
        }
        faults.delay_watch_events(DELAY);
        let rt = store
            .lock()
            .registry
            .get("", "v1", "configmaps")
            .expect("built-in");
        let t0 = tokio::time::Instant::now();
        let s = start(
            &store,
            &faults,
            WatchRequest {
                rt,
                namespace: None,
                labels: LabelSelector::default(),
                fields: FieldSelector::default(),
                bookmarks: false,
                send_initial_events: false,
                timeout: None,
                start: Start::Current,
            },
        );
        let n = Box::pin(s).take(WRITES).count().await;
        assert_eq!(n, WRITES);
        assert!(t0.elapsed() >= DELAY && t0.elapsed() < DELAY * 2);
    }

    // Turning the delay off releases what is waiting at once (the virtual clock stays far from
    // the hour-long delay), and hold-back still works after a delay.
    #[tokio::test(start_paused = true)]
    async fn clearing_the_delay_releases_waiting_events_and_hold_back_still_holds() {
        let (store, faults, s) = watch(Start::After(0));
        let mut s = Box::pin(s);
        let t0 = tokio::time::Instant::now();
        faults.delay_watch_events(Duration::from_secs(3600));
        write(&store, 0);
        assert_quiet(&mut s, "delayed").await;
        faults.delay_watch_events(Duration::ZERO);
        assert_eq!(rv_of(&s.next().await.expect("released")), 1);
        // Paused time would also end the hour by jumping the clock; it did not get there.
        assert!(t0.elapsed() < Duration::from_secs(3600));

        faults.hold_back_watch_events(2);
        write(&store, 1);
        assert_quiet(&mut s, "held back").await;
        write(&store, 2);
        write(&store, 3);
        assert_eq!(rv_of(&s.next().await.expect("released")), 2);
    }

    // A spared resource's watch keeps up while the watch faults hold or drop the others' events.
    #[tokio::test(start_paused = true)]
    async fn a_spared_resources_watch_is_neither_held_back_nor_thinned() {
        let (store, faults, s) = watch(Start::After(0));
        let mut s = Box::pin(s);
        faults.hold_back_watch_events(1_000);
        faults.spare_watches_of("secrets");
        write(&store, 0);
        assert_quiet(&mut s, "held back").await;
        faults.spare_watches_of("configmaps");
        let line = tokio::time::timeout(Duration::from_secs(60), s.next()).await;
        assert_eq!(rv_of(&line.expect("released").expect("open")), 1);
        // Dropping decides when an event arrives: a spared watch's events are all delivered.
        faults.drop_watch_events(1.0, 7);
        write(&store, 1);
        let line = tokio::time::timeout(Duration::from_secs(60), s.next()).await;
        assert_eq!(rv_of(&line.expect("not dropped").expect("open")), 2);
    }

    // The explorer's nudge of a stalled lagging watch: everything held is released by one call
    // (the stream is only polled after it returns), and later events are held back again.
    #[tokio::test(start_paused = true)]
    async fn releasing_held_events_lets_them_all_through_and_holds_later_ones() {
        let (store, faults, s) = watch(Start::After(0));
        let mut s = Box::pin(s);
        faults.hold_back_watch_events(3);
        write(&store, 0);
        write(&store, 1);
        assert_quiet(&mut s, "held back").await;
        faults.release_held_watch_events();
        assert_eq!(rv_of(&s.next().await.expect("released")), 1);
        assert_eq!(rv_of(&s.next().await.expect("released")), 2);
        write(&store, 2);
        assert_quiet(&mut s, "a later event is held again").await;
    }
}
