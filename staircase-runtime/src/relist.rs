//! A reflector that takes a relist in place, so the watch cache never holds two copies of itself.
//!
//! When a watch cannot resume (its resourceVersion was compacted away: `410 Gone`), kube-runtime's
//! watcher lists everything again. Its store builds that list into a second map and swaps it in
//! at the end, so for the length of the relist the old and the new copy of every object are alive
//! together: the operator's memory peaks at twice its cache, exactly when the API server is under
//! stress too (measured at 2.02× the store in `bench/`; kube-rs PR 1494).
//!
//! A controller does not need that all-at-once switch. Each object it reads is a whole snapshot of
//! that one object either way, and between lists the watch changes the cache one object at a time
//! anyway. So [`reflector_in_place`] hands the first list to the store as kube-runtime does (the
//! store is empty then, and its readiness signal fires at the end of it) and replays every later
//! list as ordinary changes: each listed object replaces its old copy the moment it arrives (the
//! old one is freed then, unless a run still holds it), and what the list no longer contains is
//! deleted when it ends. The peak is one cache plus the page being decoded.
//!
//! Most relisted objects have not changed: the store then already holds the object at the listed
//! resourceVersion, keeps that copy, and the decoded one is freed right away. That is also why a
//! relist in place costs less CPU than a swap: no object is copied into the store, and what is
//! freed is what was just allocated (an earlier version that replaced every object anyway spent
//! the difference in glibc's `malloc`, which had to find room among thousands of old copies'
//! scattered chunks).
//!
//! What a reader can see during a relist: an object that was deleted while the watch was down
//! stays until the list ends (as with kube-runtime's store), and other objects may already be
//! newer than it; never an object older than before the relist.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use hashbrown::HashSet;
use kube::Resource;
use kube::api::ObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};

/// Like kube-runtime's [`reflector`](kube::runtime::reflector::reflector): applies every watch
/// event of `events` to `writer`'s store and passes it on, except that a relist (every list after
/// the first) updates the store in place instead of building a second copy of it. A relisted
/// object the store already holds at the same resourceVersion is passed on but not written: the
/// store keeps its copy.
///
/// Downstream, a relisted object arrives as [`Event::Apply`] and an object the relist no longer
/// has as [`Event::Delete`]; the relist's own `Init` and `InitDone` markers are not passed on, so
/// [`applied_objects`](kube::runtime::WatchStreamExt::applied_objects) triggers one run per
/// listed object, as with kube-runtime's reflector.
pub fn reflector_in_place<K, W>(
    mut writer: Writer<K>,
    events: W,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    W: Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
{
    let store = writer.as_reader();
    InPlace {
        events: events.boxed(),
        store,
        listed: false,
        relist: None,
        deletes: VecDeque::new(),
    }
    .map(move |item| {
        item.map(|Rewritten { event, unchanged }| {
            if !unchanged {
                writer.apply_watcher_event(&event);
            }
            event
        })
    })
}

/// An event to pass on, and whether the store already holds exactly what it carries.
struct Rewritten<K> {
    event: Event<K>,
    /// A relisted object the store holds at the same resourceVersion: the same object (a
    /// resourceVersion names one state of one object), so writing it again would only trade the
    /// cached copy for an equal one. Left alone, the decoded copy is freed at once, which is the
    /// cheap case for the allocator too: replacing every object in a long-lived heap made a
    /// relist of 10,000 unchanged objects cost 1.3–1.5× kube-runtime's swap, mostly in `malloc`.
    unchanged: bool,
}

/// Rewrites relists into in-place changes; see the module docs.
struct InPlace<K: Resource<DynamicType = ()> + 'static> {
    events: BoxStream<'static, watcher::Result<Event<K>>>,
    /// The store the events end up in: what a relist starts from.
    store: Store<K>,
    /// Whether the first list has completed (the store's readiness fired).
    listed: bool,
    /// During a relist: what it has shown so far.
    relist: Option<Listed>,
    /// At the end of a relist: deletions for the objects it did not show, passed on one by one.
    deletes: VecDeque<K>,
}

/// The objects a relist has shown so far, as 64-bit fingerprints of their keys.
///
/// Fingerprints, not keys: taken from the object just decoded (hot in cache), they cost no
/// allocation, and nothing has to walk the store (10,000 cold objects) when the relist begins.
/// At its end, if the store holds no more objects than the relist showed, nothing was deleted
/// while the watch was down and the store is not walked at all. Otherwise every object whose
/// fingerprint the relist did not show is deleted. Two keys can share a fingerprint (for n
/// objects, a chance of about n² / 2^65 per relist; the hasher is keyed afresh for each one):
/// then an object deleted while the watch was down may stay until the next relist.
struct Listed {
    hasher: RandomState,
    seen: HashSet<u64>,
}

impl Listed {
    fn new(capacity: usize) -> Self {
        Listed {
            hasher: RandomState::new(),
            seen: HashSet::with_capacity(capacity),
        }
    }

    fn fingerprint(&self, meta: &ObjectMeta) -> u64 {
        self.hasher
            .hash_one((meta.namespace.as_deref(), meta.name.as_deref()))
    }
}

impl<K> InPlace<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// What to pass on for `ev`: `None` swallows it.
    fn rewrite(&mut self, ev: Event<K>) -> Option<Rewritten<K>> {
        if !self.listed {
            // The first list goes through untouched: it fills an empty store and ends in the
            // readiness signal (`Store::wait_until_ready`), which only an `InitDone` fires.
            self.listed = matches!(ev, Event::InitDone);
            return Some(Rewritten::changed(ev));
        }
        let relisted = self.relist.is_some();
        let ev = self.rewrite_relist(ev)?;
        let unchanged =
            relisted && matches!(&ev, Event::Apply(obj) if self.holds_same_version(obj));
        Some(Rewritten {
            event: ev,
            unchanged,
        })
    }

    /// Whether the store holds `obj` at `obj`'s resourceVersion.
    fn holds_same_version(&self, obj: &K) -> bool {
        let Some(version) = obj.meta().resource_version.as_deref() else {
            return false;
        };
        self.store
            .get(&ObjectRef::from_obj(obj))
            .is_some_and(|cached| cached.meta().resource_version.as_deref() == Some(version))
    }

    /// What `ev` becomes once the first list is in (a relist's markers are swallowed, its
    /// objects become changes, its end the deletions it implies): `None` swallows it.
    fn rewrite_relist(&mut self, ev: Event<K>) -> Option<Event<K>> {
        match ev {
            // A list that restarts (an error part-way) starts over.
            Event::Init => {
                self.relist = Some(Listed::new(self.store.len()));
                None
            }
            Event::InitApply(obj) | Event::Apply(obj) => {
                if let Some(listed) = &mut self.relist {
                    listed.seen.insert(listed.fingerprint(obj.meta()));
                }
                Some(Event::Apply(obj))
            }
            Event::Delete(obj) => {
                // Gone from the store: no longer among the listed objects it holds.
                if let Some(listed) = &mut self.relist {
                    listed.seen.remove(&listed.fingerprint(obj.meta()));
                }
                Some(Event::Delete(obj))
            }
            Event::InitDone => {
                let listed = self.relist.take()?;
                // Every listed object is in the store: any surplus was deleted meanwhile.
                if self.store.len() > listed.seen.len() {
                    let gone = self
                        .store
                        .state()
                        .into_iter()
                        .filter(|o| !listed.seen.contains(&listed.fingerprint(o.meta())));
                    self.deletes.extend(gone.map(Arc::unwrap_or_clone));
                }
                self.deletes.pop_front().map(Event::Delete)
            }
        }
    }
}

impl<K> Rewritten<K> {
    fn changed(event: Event<K>) -> Self {
        Rewritten {
            event,
            unchanged: false,
        }
    }
}

// Nothing in it is ever pinned in place: the inner stream is boxed.
impl<K: Resource<DynamicType = ()> + 'static> Unpin for InPlace<K> {}

impl<K> Stream for InPlace<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    type Item = watcher::Result<Rewritten<K>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(obj) = this.deletes.pop_front() {
            return Poll::Ready(Some(Ok(Rewritten::changed(Event::Delete(obj)))));
        }
        loop {
            match futures::ready!(this.events.poll_next_unpin(cx)) {
                Some(Ok(ev)) => {
                    if let Some(ev) = this.rewrite(ev) {
                        return Poll::Ready(Some(Ok(ev)));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::reflector::ObjectRef;
    use std::collections::BTreeMap;

    fn cm(name: &str, v: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("v".to_string(), v.to_string())])),
            ..Default::default()
        }
    }

    fn contents(store: &Store<ConfigMap>) -> Vec<(String, String)> {
        let mut v: Vec<_> = store
            .state()
            .iter()
            .map(|o| {
                let name = o.metadata.name.clone().unwrap();
                (name, o.data.as_ref().unwrap()["v"].clone())
            })
            .collect();
        v.sort();
        v
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// Feeds events one at a time and looks at the store and the passed-on events in between.
    struct Harness {
        tx: mpsc::UnboundedSender<watcher::Result<Event<ConfigMap>>>,
        out: Pin<Box<dyn Stream<Item = watcher::Result<Event<ConfigMap>>> + Send>>,
        store: Store<ConfigMap>,
    }

    impl Harness {
        fn new() -> Self {
            let writer = Writer::default();
            let store = writer.as_reader();
            let (tx, rx) = mpsc::unbounded();
            let out = Box::pin(reflector_in_place(writer, rx));
            Harness { tx, out, store }
        }

        /// Sends `ev` and returns what came out (a description per event) until the stream waits.
        fn send(&mut self, ev: Event<ConfigMap>) -> Vec<String> {
            self.tx.unbounded_send(Ok(ev)).unwrap();
            let mut seen = Vec::new();
            let waker = futures::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            while let Poll::Ready(Some(ev)) = self.out.as_mut().poll_next(&mut cx) {
                seen.push(match ev.unwrap() {
                    Event::Apply(o) => format!("apply {}", o.metadata.name.unwrap()),
                    Event::Delete(o) => format!("delete {}", o.metadata.name.unwrap()),
                    Event::Init => "init".into(),
                    Event::InitApply(o) => format!("init-apply {}", o.metadata.name.unwrap()),
                    Event::InitDone => "init-done".into(),
                });
            }
            seen
        }

        /// A store that holds `objs` and has just begun a relist.
        fn relisting(objs: &[ConfigMap]) -> Self {
            let mut h = Harness::new();
            h.list(objs);
            h.send(Event::Init);
            h
        }

        fn list(&mut self, objs: &[ConfigMap]) -> Vec<String> {
            let mut out = self.send(Event::Init);
            for o in objs {
                out.extend(self.send(Event::InitApply(o.clone())));
            }
            out.extend(self.send(Event::InitDone));
            out
        }
    }

    #[test]
    fn the_first_list_passes_through_and_makes_the_store_ready() {
        let mut h = Harness::new();
        assert_eq!(h.send(Event::Init), ["init"]);
        assert_eq!(h.send(Event::InitApply(cm("a", "1"))), ["init-apply a"]);
        // kube-runtime's store fills a buffer and swaps it in at the end of the first list.
        assert!(h.store.is_empty());
        assert_eq!(h.send(Event::InitDone), ["init-done"]);
        assert_eq!(contents(&h.store), pairs(&[("a", "1")]));
        let ready = h.store.wait_until_ready();
        assert!(futures::executor::block_on(ready).is_ok());
    }

    #[test]
    fn a_relist_replaces_objects_as_they_arrive_and_deletes_the_missing_at_the_end() {
        let mut h = Harness::new();
        h.list(&[cm("a", "1"), cm("b", "1"), cm("c", "1")]);
        let old_a = Arc::downgrade(&h.store.get(&ObjectRef::new("a").within("ns")).unwrap());

        assert!(
            h.send(Event::Init).is_empty(),
            "the relist's start is not passed on"
        );
        assert_eq!(h.send(Event::InitApply(cm("a", "2"))), ["apply a"]);
        // Replaced in place: the old copy is gone before the list ends.
        assert!(old_a.upgrade().is_none());
        assert_eq!(
            contents(&h.store),
            pairs(&[("a", "2"), ("b", "1"), ("c", "1")])
        );
        assert_eq!(h.send(Event::InitApply(cm("d", "1"))), ["apply d"]);
        assert_eq!(h.send(Event::InitApply(cm("c", "2"))), ["apply c"]);
        // `b` was deleted while the watch was down: it leaves when the list ends.
        assert_eq!(h.send(Event::InitDone), ["delete b"]);
        assert_eq!(
            contents(&h.store),
            pairs(&[("a", "2"), ("c", "2"), ("d", "1")])
        );

        // Afterwards, watch events pass through as usual.
        assert_eq!(h.send(Event::Apply(cm("a", "3"))), ["apply a"]);
        assert_eq!(h.send(Event::Delete(cm("d", "1"))), ["delete d"]);
        assert_eq!(contents(&h.store), pairs(&[("a", "3"), ("c", "2")]));
    }

    #[test]
    fn a_relist_never_holds_more_objects_than_the_larger_of_the_two_lists() {
        let mut h = Harness::new();
        let first: Vec<_> = (0..50).map(|i| cm(&format!("o{i}"), "1")).collect();
        h.list(&first);
        h.send(Event::Init);
        let mut most = 0;
        for i in 10..60 {
            h.send(Event::InitApply(cm(&format!("o{i}"), "2")));
            most = most.max(h.store.len());
        }
        let deleted = h.send(Event::InitDone);
        assert_eq!(deleted.len(), 10);
        assert!(deleted.iter().all(|d| d.starts_with("delete o")));
        assert_eq!(h.store.len(), 50);
        assert_eq!(
            most, 60,
            "old objects not yet relisted stay, new ones are added"
        );
    }

    #[test]
    fn a_relist_that_restarts_part_way_still_deletes_what_is_gone() {
        let mut h = Harness::relisting(&[cm("a", "1"), cm("b", "1")]);
        h.send(Event::InitApply(cm("a", "2")));
        // The list failed part-way and starts over (the watcher sends `Init` again).
        assert!(h.send(Event::Init).is_empty());
        h.send(Event::InitApply(cm("a", "3")));
        assert_eq!(h.send(Event::InitDone), ["delete b"]);
        assert_eq!(contents(&h.store), pairs(&[("a", "3")]));
    }

    #[test]
    fn a_deletion_seen_during_a_relist_is_not_repeated_at_its_end() {
        let mut h = Harness::relisting(&[cm("a", "1"), cm("b", "1")]);
        assert_eq!(h.send(Event::Delete(cm("b", "1"))), ["delete b"]);
        h.send(Event::InitApply(cm("a", "2")));
        assert!(h.send(Event::InitDone).is_empty());
        assert_eq!(contents(&h.store), pairs(&[("a", "2")]));
    }

    #[test]
    fn an_object_listed_then_deleted_does_not_hide_one_that_was_never_listed() {
        let mut h = Harness::relisting(&[cm("a", "1"), cm("b", "1")]);
        h.send(Event::InitApply(cm("a", "2")));
        assert_eq!(h.send(Event::Delete(cm("a", "2"))), ["delete a"]);
        // One object in the store, none of the listed ones: `b` is gone too.
        assert_eq!(h.send(Event::InitDone), ["delete b"]);
        assert!(h.store.is_empty());
    }

    fn at_version(mut o: ConfigMap, rv: &str) -> ConfigMap {
        o.metadata.resource_version = Some(rv.into());
        o
    }

    #[test]
    fn a_relisted_object_at_the_cached_version_keeps_the_cached_copy() {
        let mut h =
            Harness::relisting(&[at_version(cm("a", "1"), "7"), at_version(cm("b", "1"), "8")]);
        let key = |n: &str| ObjectRef::new(n).within("ns");
        let (cached_a, cached_b) = (
            h.store.get(&key("a")).unwrap(),
            h.store.get(&key("b")).unwrap(),
        );

        // Same resourceVersion: passed on (a run still follows) but the store keeps its copy.
        // The relisted copy carries different data so that a write would show.
        assert_eq!(
            h.send(Event::InitApply(at_version(cm("a", "x"), "7"))),
            ["apply a"]
        );
        assert!(Arc::ptr_eq(&cached_a, &h.store.get(&key("a")).unwrap()));
        // A new resourceVersion replaces it.
        assert_eq!(
            h.send(Event::InitApply(at_version(cm("b", "2"), "9"))),
            ["apply b"]
        );
        assert!(!Arc::ptr_eq(&cached_b, &h.store.get(&key("b")).unwrap()));
        assert!(h.send(Event::InitDone).is_empty());
        assert_eq!(contents(&h.store), pairs(&[("a", "1"), ("b", "2")]));

        // Outside a relist every event is written, whatever its version.
        h.send(Event::Apply(at_version(cm("a", "y"), "7")));
        assert_eq!(contents(&h.store), pairs(&[("a", "y"), ("b", "2")]));
    }
}
