//! One kind's store: kube-runtime's reflector store, with the watermarks of this operator's writes.

use std::any::Any;
use std::sync::Arc;

use kube::api::DynamicObject;
use kube::core::{Selector, SelectorExt, TypeMeta};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::Value;

use super::marks::{ObjKey, Shown, Tracker};
use super::owners::Owners;
use crate::children::OWNER_LABEL;

/// A kind's store, whatever its Rust type.
pub(crate) trait KindStore: Send + Sync {
    fn tracker(&self) -> &Tracker;
    /// Whether the store holds objects of `namespace` (`None`: a cluster-scoped read).
    fn covers(&self, namespace: Option<&str>) -> bool;
    fn show(&self, key: &ObjKey) -> Option<Shown>;
    /// The object `name` in `namespace`, as a dynamic object.
    fn get_dynamic(&self, namespace: Option<&str>, name: &str) -> Option<DynamicObject>;
    /// Every object in `namespace` (everywhere for `None`) whose labels match `selector`.
    fn list_dynamic(&self, namespace: Option<&str>, selector: &Selector) -> Vec<DynamicObject>;
    /// `obj` as JSON, when it is an object of the store's Rust type (for a recorded run).
    fn json(&self, obj: &dyn Any) -> Option<serde_json::Value>;
    fn as_any(&self) -> &dyn Any;
    /// The objects in `namespace` (everywhere for `None`) labelled as owned by `owner` (the
    /// children step's [`OWNER_LABEL`]), found through the owner index.
    fn list_owned_dynamic(&self, namespace: Option<&str>, owner: &str) -> Vec<DynamicObject>;
    /// The store holds `PartialObjectMeta`s (a metadata-only watch).
    fn metadata_only(&self) -> bool;
}

/// The store of `T` objects, and its watermarks.
pub(crate) struct KindCache<T: Resource<DynamicType = ()> + 'static> {
    pub(crate) store: Store<T>,
    tracker: Tracker,
    /// The namespace the watch covers (`None`: all of them).
    scope: Option<String>,
    namespaced: bool,
    metadata_only: bool,
    owners: Owners,
}

impl<T> KindCache<T>
where
    T: Resource<DynamicType = ()> + Clone + 'static,
{
    pub(crate) fn new(
        store: Store<T>,
        scope: Option<String>,
        namespaced: bool,
        metadata_only: bool,
    ) -> Self {
        KindCache {
            store,
            tracker: Tracker::default(),
            scope,
            namespaced,
            metadata_only,
            owners: Owners::default(),
        }
    }

    fn object_ref(&self, namespace: Option<&str>, name: &str) -> ObjectRef<T> {
        let r = ObjectRef::new(name);
        match namespace {
            Some(ns) if self.namespaced => r.within(ns),
            _ => r,
        }
    }

    pub(crate) fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<T>> {
        self.store.get(&self.object_ref(namespace, name))
    }

    pub(crate) fn list(&self, namespace: Option<&str>, selector: &Selector) -> Vec<Arc<T>> {
        self.store.state_filter(|o| {
            (namespace.is_none() || !self.namespaced || o.meta().namespace.as_deref() == namespace)
                && selector.matches(o.labels())
        })
    }

    fn shown(&self, key: &ObjKey) -> Option<Shown> {
        let o = self.get(key.0.as_deref(), &key.1)?;
        let m = o.meta();
        Some(Shown {
            rv: crate::memory::rv_number(m.resource_version.as_deref()),
            deleting: m.deletion_timestamp.is_some(),
        })
    }
}

/// The children step's owner of `o`, from its label.
fn owner<T: Resource>(o: &T) -> Option<&str> {
    o.labels().get(OWNER_LABEL).map(String::as_str)
}

impl<T> KindCache<T>
where
    T: Resource<DynamicType = ()> + Clone + 'static,
{
    /// Notes what the store applied: called with each watch event after the reflector.
    pub(crate) fn observe(&self, ev: &watcher::Result<Event<T>>) {
        let look = |k: &ObjKey| self.shown(k);
        match ev {
            Ok(Event::Apply(o) | Event::Delete(o)) => {
                let m = o.meta();
                let key = (m.namespace.clone(), m.name.clone().unwrap_or_default());
                let deleted = matches!(ev, Ok(Event::Delete(_)));
                self.owners
                    .set(key.clone(), if deleted { None } else { owner(o) });
                self.tracker
                    .applied(key, m.resource_version.as_deref(), look);
            }
            Ok(Event::InitApply(o)) => {
                let m = o.meta();
                let key = (m.namespace.clone(), m.name.clone().unwrap_or_default());
                self.owners.set(key, owner(o));
                self.tracker.listed(m.resource_version.as_deref());
            }
            Ok(Event::InitDone) => {
                // The store dropped what the list no longer has: so does the index.
                self.owners
                    .rebuild(self.store.state().iter().filter_map(|o| {
                        let m = o.meta();
                        let key = (m.namespace.clone(), m.name.clone().unwrap_or_default());
                        Some((key, owner(&**o)?.to_string()))
                    }));
                self.tracker.list_done(look)
            }
            Ok(Event::Init) | Err(_) => {}
        }
    }
}

impl<T> KindStore for KindCache<T>
where
    T: Resource<DynamicType = ()> + Clone + Serialize + Send + Sync + 'static,
{
    fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    fn covers(&self, namespace: Option<&str>) -> bool {
        match (namespace, &self.scope) {
            _ if !self.namespaced => true,
            // A namespaced kind read without a namespace: what the API would default to is the
            // client's business.
            (None, _) => false,
            (Some(_), None) => true,
            (Some(ns), Some(scope)) => ns == scope,
        }
    }

    fn show(&self, key: &ObjKey) -> Option<Shown> {
        self.shown(key)
    }

    fn get_dynamic(&self, namespace: Option<&str>, name: &str) -> Option<DynamicObject> {
        self.get(namespace, name).and_then(|o| to_dynamic(&*o))
    }

    fn list_dynamic(&self, namespace: Option<&str>, selector: &Selector) -> Vec<DynamicObject> {
        let objects = self.list(namespace, selector);
        objects.iter().filter_map(|o| to_dynamic(&**o)).collect()
    }

    fn json(&self, obj: &dyn Any) -> Option<serde_json::Value> {
        serde_json::to_value(obj.downcast_ref::<T>()?).ok()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn list_owned_dynamic(&self, namespace: Option<&str>, owner: &str) -> Vec<DynamicObject> {
        self.owners
            .of(owner)
            .iter()
            .filter(|k| namespace.is_none() || !self.namespaced || k.0.as_deref() == namespace)
            .filter_map(|k| self.get(k.0.as_deref(), &k.1))
            // The index follows the events; the store is the truth.
            .filter(|o| o.labels().get(OWNER_LABEL).map(String::as_str) == Some(owner))
            .filter_map(|o| to_dynamic(&*o))
            .collect()
    }

    fn metadata_only(&self) -> bool {
        self.metadata_only
    }
}

/// The typed object as the children step reads it. Built by hand rather than through
/// `from_value`, whose flattened fields buffer the whole object once more: this runs for every
/// child on every run. The fields are those `DynamicObject`'s deserializer gives: the type, the
/// metadata, and the rest as `data`.
fn to_dynamic<T: Resource + Serialize>(o: &T) -> Option<DynamicObject> {
    let mut data = serde_json::to_value(o).ok()?;
    let fields = data.as_object_mut()?;
    fields.remove("metadata");
    let types = match (fields.remove("apiVersion"), fields.remove("kind")) {
        (Some(Value::String(api_version)), Some(Value::String(kind))) => {
            Some(TypeMeta { api_version, kind })
        }
        _ => None,
    };
    Some(DynamicObject {
        types,
        metadata: o.meta().clone(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::core::PartialObjectMeta;

    use super::*;

    fn through_serde<T: Serialize>(o: &T) -> DynamicObject {
        serde_json::from_value(serde_json::to_value(o).unwrap()).unwrap()
    }

    #[test]
    fn a_typed_object_turns_dynamic_as_its_deserializer_would_make_it() {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "labels": {"a": "b"}, "uid": "u1"},
            "data": {"k": "v"}
        }))
        .unwrap();
        let deploy: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "ownerReferences": [{"apiVersion": "v1", "kind": "X",
                "name": "x", "uid": "u2", "controller": true}]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "w"}},
                "template": {"metadata": {"labels": {"app": "w"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"availableReplicas": 2}
        }))
        .unwrap();
        let meta: PartialObjectMeta<ConfigMap> = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}
        }))
        .unwrap();
        assert_eq!(to_dynamic(&cm), Some(through_serde(&cm)));
        assert_eq!(to_dynamic(&deploy), Some(through_serde(&deploy)));
        assert_eq!(to_dynamic(&meta), Some(through_serde(&meta)));
    }
}
