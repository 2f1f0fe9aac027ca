//! Owned-object watches: a change to a child runs its parent.

use futures::{Stream, StreamExt, stream};
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use super::desired::{ChildKind, ChildScope, OWNER_LABEL};

/// The watcher configuration for child kinds: only objects carrying [`OWNER_LABEL`], so an
/// operator does not cache every Deployment of the cluster to find its own.
pub fn owned_watch_config() -> watcher::Config {
    watcher::Config::default().labels(OWNER_LABEL)
}

/// A stream of the parents (of type `K`) to run because one of their children changed: watches
/// each of `kinds` (in `namespace`, or everywhere) and maps every touched child to the parent its
/// controller owner reference names.
///
/// This is what an operator plugs into kube-runtime's `Controller::reconcile_on` (or, per kind,
/// what `Controller::owns_with` with [`owned_watch_config`] does). Watch errors are retried by
/// the watcher's default backoff and never end the stream.
pub fn parent_triggers<K>(
    client: kube::Client,
    kinds: &[ChildKind],
    namespace: Option<&str>,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + 'static,
    K::Scope: ChildScope,
{
    let streams = kinds.iter().map(|kind| {
        let api: Api<DynamicObject> = match (namespace, kind.namespaced) {
            (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &kind.resource),
            _ => Api::all_with(client.clone(), &kind.resource),
        };
        watcher(api, owned_watch_config())
            .default_backoff()
            .touched_objects()
            .filter_map(|res| async move { res.ok().and_then(|child| parent_of::<K>(&child)) })
            .boxed()
    });
    stream::select_all(streams)
}

/// The parent named by `child`'s controller owner reference, if it is a `K`.
fn parent_of<K>(child: &DynamicObject) -> Option<ObjectRef<K>>
where
    K: Resource<DynamicType = ()>,
    K::Scope: ChildScope,
{
    let owner = child.owner_references().iter().find(|o| {
        o.controller == Some(true) && o.kind == K::kind(&()) && o.api_version == K::api_version(&())
    })?;
    let parent = ObjectRef::new(&owner.name);
    // Owner references cannot cross namespaces: a namespaced parent lives with its child.
    Some(match child.namespace() {
        Some(ns) if <K::Scope as ChildScope>::NAMESPACED => parent.within(&ns),
        _ => parent,
    })
}
