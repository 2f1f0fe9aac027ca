//! Cached reads for steps ([`Context::get`](crate::Context::get),
//! [`Context::list`](crate::Context::list), the children step): served from one reflector store per
//! kind the operator owns, watches or reads, shared by every run, with read-your-own-writes for
//! every object a step writes.
//!
//! Each successful write a step makes leaves a watermark on the object it wrote (the
//! resourceVersion the server answered with, or "deleted"); a cached read of that object waits
//! until the store has reached it, for at most
//! [`read_your_writes_grace`](crate::OperatorConfig::read_your_writes_grace) after the write, and
//! then reads from the API server instead. A mark is dropped as soon as the store reaches it.

mod kind;
mod marks;
mod owners;

use std::fmt::Debug;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hashbrown::HashMap;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject};
use kube::core::Selector;
use kube::runtime::reflector::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use kind::{KindCache, KindStore};
use marks::{Fresh, ObjKey, Want};

use crate::writes::Write;

/// A kind as the API server's paths name it: group and plural (versions of one kind share
/// objects and resourceVersions).
pub(crate) type KindKey = (String, String);

/// The key of `T`'s kind.
pub(crate) fn key_of<T: Resource<DynamicType = ()>>() -> KindKey {
    let ar = ApiResource::erase::<T>(&());
    (ar.group, ar.plural)
}

fn key_of_resource(ar: &ApiResource) -> KindKey {
    (ar.group.clone(), ar.plural.clone())
}

/// Why a read went to the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Live {
    /// No store holds the kind (or not in that namespace).
    NoStore,
    /// The store had not finished its first list in time.
    NotSynced,
    /// The store had not reached a step's write in time.
    Behind,
    /// The kind is cached as metadata only and the whole object was asked for.
    MetadataOnly,
}

impl Live {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Live::NoStore => "no_store",
            Live::NotSynced => "not_synced",
            Live::Behind => "behind",
            Live::MetadataOnly => "metadata_only",
        }
    }
}

struct Inner {
    kinds: HashMap<KindKey, Arc<dyn KindStore>>,
    bound: Duration,
    read_your_writes: bool,
}

/// Every store the operator keeps, by kind. Empty outside a leadership term (and for
/// [`Operator::run_once`](crate::Operator::run_once)): reads are then live.
pub(crate) struct Cache {
    inner: RwLock<Inner>,
    #[cfg(feature = "metrics")]
    metrics: RwLock<Option<crate::metrics::Controller>>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            inner: RwLock::new(Inner {
                kinds: HashMap::new(),
                bound: Duration::from_secs(2),
                read_your_writes: true,
            }),
            #[cfg(feature = "metrics")]
            metrics: RwLock::new(None),
        }
    }
}

impl Cache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a read waits for a write's mark, and whether marks are kept at all.
    pub(crate) fn configure(&self, bound: Duration, read_your_writes: bool) {
        let mut i = self.write();
        i.bound = bound;
        i.read_your_writes = read_your_writes;
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn set_metrics(&self, metrics: crate::metrics::Controller) {
        *self.metrics.write().unwrap_or_else(|e| e.into_inner()) = Some(metrics);
    }

    /// Adds the store of `T` objects watched in `scope` (all namespaces for `None`); returns it
    /// for the watch to report its events to.
    pub(crate) fn register<T>(
        &self,
        store: Store<T>,
        scope: Option<String>,
        namespaced: bool,
        metadata_only: bool,
    ) -> Arc<KindCache<T>>
    where
        T: Resource<DynamicType = ()> + Clone + Serialize + Send + Sync + 'static,
    {
        let cache = Arc::new(KindCache::new(store, scope, namespaced, metadata_only));
        self.write().kinds.insert(key_of::<T>(), cache.clone());
        cache
    }

    /// Forgets every store (the watches behind them have ended).
    pub(crate) fn clear(&self) {
        self.write().kinds.clear();
    }

    fn kind(&self, key: &KindKey) -> Option<Arc<dyn KindStore>> {
        self.read().kinds.get(key).cloned()
    }

    /// Watermarks not yet reached, over every kind.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn pending_marks(&self) -> usize {
        let i = self.read();
        i.kinds.values().map(|k| k.tracker().pending()).sum()
    }

    /// Leaves the mark of a step's write (`created`: the name a create answered with; its path
    /// names only the collection).
    pub(crate) fn note(&self, write: &Write, created: Option<&str>) {
        if !write.succeeded() {
            return;
        }
        let Some(path) = ObjectPath::parse(&write.path) else {
            return;
        };
        let deleted = write.method == "DELETE";
        let name = match (path.name, write.method) {
            (Some(name), _) => name,
            (None, "POST") => match created {
                Some(name) => name,
                None => return,
            },
            // A delete of a whole collection names no object.
            (None, _) => return,
        };
        if deleted && path.subresource.is_some() {
            return;
        }
        let (bound_on, kind) = {
            let i = self.read();
            (i.read_your_writes, i.kinds.get(&path.kind()).cloned())
        };
        let (true, Some(kind)) = (bound_on, kind) else {
            return;
        };
        if let Some(want) = Want::of(deleted, write.resource_version.as_deref()) {
            let key = (path.namespace.map(str::to_string), name.to_string());
            kind.tracker().mark(key, want);
        }
    }

    /// Whether `kind`'s store may answer a read in `namespace` concerning the objects `concerns`
    /// selects: waits for the store to reach the marks of those objects (bounded).
    async fn fresh(
        &self,
        store: &dyn KindStore,
        label: &str,
        concerns: impl Fn(&ObjKey) -> bool,
    ) -> Result<(), Live> {
        let (bound, ryow) = {
            let i = self.read();
            (i.bound, i.read_your_writes)
        };
        let (fresh, waited) = if ryow {
            store
                .tracker()
                .fresh(bound, concerns, |k| store.show(k))
                .await
        } else {
            store.tracker().fresh(bound, |_| false, |_| None).await
        };
        if waited {
            #[cfg(feature = "metrics")]
            if let Some(m) = &*self.metrics.read().unwrap_or_else(|e| e.into_inner()) {
                m.cache_wait(label);
            }
            tracing::debug!(kind = label, ?fresh, "a cached read waited for the store");
        }
        match fresh {
            Fresh::Cached => Ok(()),
            Fresh::NotSynced => Err(Live::NotSynced),
            Fresh::Behind => Err(Live::Behind),
        }
    }

    /// Reports a read that goes to the API server.
    pub(crate) fn live(&self, label: &str, why: Live) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &*self.metrics.read().unwrap_or_else(|e| e.into_inner()) {
            m.cache_live_read(label, why.as_str());
        }
        tracing::debug!(
            kind = label,
            reason = why.as_str(),
            "read from the API server"
        );
    }

    /// The object `name` of type `T` in `namespace`, from the store: `Err` says why the read
    /// must go to the API server.
    pub(crate) async fn get<T>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Arc<T>>, Live>
    where
        T: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let store = self.covering(&key_of::<T>(), namespace)?;
        let label = label_of(&T::plural(&()), &T::group(&()));
        self.fresh(&*store, &label, |k| {
            k.1 == name && (k.0.as_deref() == namespace || k.0.is_none())
        })
        .await?;
        Ok(match store.as_any().downcast_ref::<KindCache<T>>() {
            Some(typed) => typed.get(namespace, name),
            // The kind is watched as another Rust type.
            None => whole(&*store)?
                .get_dynamic(namespace, name)
                .map(whole_object)
                .transpose()?
                .and_then(|o| from_dynamic(&o))
                .map(Arc::new),
        })
    }

    /// The objects of type `T` in `namespace` whose labels match `selector`, from the store.
    pub(crate) async fn list<T>(
        &self,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Result<Vec<Arc<T>>, Live>
    where
        T: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let store = self.covering(&key_of::<T>(), namespace)?;
        let label = label_of(&T::plural(&()), &T::group(&()));
        self.fresh(&*store, &label, in_namespace(namespace)).await?;
        Ok(match store.as_any().downcast_ref::<KindCache<T>>() {
            Some(typed) => typed.list(namespace, selector),
            None => whole(&*store)?
                .list_dynamic(namespace, selector)
                .into_iter()
                .map(whole_object)
                .collect::<Result<Vec<_>, _>>()?
                .iter()
                .filter_map(from_dynamic)
                .map(Arc::new)
                .collect(),
        })
    }

    /// A cached `obj` (`name` in `namespace`) as JSON, for a recorded run: serialized as the
    /// store's Rust type, or taken from the store when `T` is another type of the kind.
    pub(crate) fn json_of<T: Resource<DynamicType = ()> + 'static>(
        &self,
        obj: &T,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<serde_json::Value> {
        let store = self.kind(&key_of::<T>())?;
        store.json(obj as &dyn std::any::Any).or_else(|| {
            let o = store.get_dynamic(namespace, name)?;
            serde_json::to_value(o).ok()
        })
    }

    /// [`get`](Self::get) for a kind known at run time.
    pub(crate) async fn get_dynamic(
        &self,
        kind: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<DynamicObject>, Live> {
        let store = self.covering(&key_of_resource(kind), namespace)?;
        let label = label_of(&kind.plural, &kind.group);
        self.fresh(&*store, &label, |k| {
            k.1 == name && (k.0.as_deref() == namespace || k.0.is_none())
        })
        .await?;
        whole(&*store)?
            .get_dynamic(namespace, name)
            .map(whole_object)
            .transpose()
    }

    /// The objects of `kind` in `namespace` that the children step's owner label gives to
    /// `owner`, from the store's owner index (no pass over the whole store), with the
    /// freshness of [`list`](Self::list).
    pub(crate) async fn list_owned_dynamic(
        &self,
        kind: &ApiResource,
        namespace: Option<&str>,
        owner: &str,
    ) -> Result<Vec<DynamicObject>, Live> {
        let store = self.covering(&key_of_resource(kind), namespace)?;
        let label = label_of(&kind.plural, &kind.group);
        self.fresh(&*store, &label, in_namespace(namespace)).await?;
        whole(&*store)?
            .list_owned_dynamic(namespace, owner)
            .into_iter()
            .map(whole_object)
            .collect()
    }

    fn covering(&self, key: &KindKey, namespace: Option<&str>) -> Result<Arc<dyn KindStore>, Live> {
        match self.kind(key) {
            Some(store) if store.covers(namespace) => Ok(store),
            _ => {
                let label = label_of(&key.1, &key.0);
                self.live(&label, Live::NoStore);
                Err(Live::NoStore)
            }
        }
    }
}

/// `store`, unless it holds only metadata: a whole object read from it would come back with
/// every other field empty.
fn whole(store: &dyn KindStore) -> Result<&dyn KindStore, Live> {
    match store.metadata_only() {
        true => Err(Live::MetadataOnly),
        false => Ok(store),
    }
}

/// `o`, unless it is a `PartialObjectMetadata` (the kind declared as `PartialObjectMeta<T>`
/// with `owns`, `watches` or `reads`).
fn whole_object(o: DynamicObject) -> Result<DynamicObject, Live> {
    match o.types.as_ref().map(|t| t.kind.as_str()) {
        Some("PartialObjectMetadata") => Err(Live::MetadataOnly),
        _ => Ok(o),
    }
}

/// Marks of objects in `namespace` (everywhere for `None`): what a list must wait for.
fn in_namespace(namespace: Option<&str>) -> impl Fn(&ObjKey) -> bool {
    move |k: &ObjKey| namespace.is_none() || k.0.is_none() || k.0.as_deref() == namespace
}

/// `plural` or `plural.group`, as the API server's paths and RBAC name a kind.
pub(crate) fn label_of(plural: &str, group: &str) -> String {
    match group {
        "" => plural.to_string(),
        g => format!("{plural}.{g}"),
    }
}

fn from_dynamic<T: DeserializeOwned>(o: &DynamicObject) -> Option<T> {
    serde_json::to_value(o)
        .and_then(serde_json::from_value)
        .ok()
}

/// What a request path names: `/api/v1/namespaces/ns/configmaps/name/status` and the like.
struct ObjectPath<'a> {
    group: &'a str,
    plural: &'a str,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

impl<'a> ObjectPath<'a> {
    fn parse(path: &'a str) -> Option<Self> {
        let (group, rest) = match path.strip_prefix("/api/") {
            Some(rest) => ("", rest.split_once('/')?.1),
            None => {
                let rest = path.strip_prefix("/apis/")?;
                let (group, rest) = rest.split_once('/')?;
                (group, rest.split_once('/')?.1)
            }
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (namespace, parts) = match parts.as_slice() {
            ["namespaces", ns, resource, more @ ..] => (Some(*ns), {
                let mut v = vec![*resource];
                v.extend_from_slice(more);
                v
            }),
            _ => (None, parts),
        };
        Some(ObjectPath {
            group,
            plural: parts.first().copied().filter(|p| !p.is_empty())?,
            namespace,
            name: parts.get(1).copied(),
            subresource: parts.get(2).copied(),
        })
    }

    fn kind(&self) -> KindKey {
        (self.group.to_string(), self.plural.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::ObjectPath;

    #[test]
    fn paths_name_kind_namespace_and_object() {
        let p = |s| {
            let p = ObjectPath::parse(s).unwrap();
            (p.group, p.plural, p.namespace, p.name, p.subresource)
        };
        assert_eq!(
            p("/api/v1/namespaces/ns/configmaps"),
            ("", "configmaps", Some("ns"), None, None)
        );
        assert_eq!(
            p("/apis/apps/v1/namespaces/ns/deployments/web/scale"),
            (
                "apps",
                "deployments",
                Some("ns"),
                Some("web"),
                Some("scale")
            )
        );
        assert_eq!(p("/api/v1/nodes/n1"), ("", "nodes", None, Some("n1"), None));
        assert_eq!(
            p("/api/v1/namespaces/ns"),
            ("", "namespaces", None, Some("ns"), None)
        );
        assert!(ObjectPath::parse("https://example.com/order").is_none());
    }
}
