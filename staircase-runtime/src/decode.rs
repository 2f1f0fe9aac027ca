//! Objects that do not decode as the operator's type are skipped, not fatal.
//!
//! kube-runtime's watcher decodes a whole list page at once: one object it cannot decode (created
//! through another served version, missing a field the operator's type requires, or hand-edited
//! into a shape the type rejects) fails the list, the watcher retries it forever, and no object
//! runs at all. The operator's watch decodes each object on its own instead: one that fails is
//! reported (a warning naming it, a metric, a Warning Event on it) and left out of the cache, and
//! every other object runs.
//!
//! Caveat: an object that decoded before and no longer does keeps its last decodable copy in the
//! cache (there is nothing of the new version to put there), and runs may act on that copy until
//! the object is fixed; the report says which object it is.

use std::borrow::Cow;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// A watched object, or what could be read of one that does not decode as `K`.
#[derive(Clone, Debug)]
pub(crate) enum Lenient<K> {
    Decoded(K),
    /// Boxed: the decodable case is the one that must stay small.
    Undecodable {
        meta: Box<ObjectMeta>,
        error: Arc<str>,
    },
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrowed, so a decodable object costs one extra scan of its text, not a copy: kube
        // decodes lists and watch lines from a string it holds.
        let raw = <&'de RawValue>::deserialize(d)?;
        Ok(match serde_json::from_str::<K>(raw.get()) {
            Ok(k) => Lenient::Decoded(k),
            Err(e) => {
                #[derive(Deserialize)]
                struct MetaOnly {
                    #[serde(default)]
                    metadata: ObjectMeta,
                }
                let meta = serde_json::from_str::<MetaOnly>(raw.get())
                    .map(|m| m.metadata)
                    .unwrap_or_default();
                Lenient::Undecodable {
                    meta: Box::new(meta),
                    error: e.to_string().into(),
                }
            }
        })
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Lenient<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn api_version(dt: &()) -> Cow<'_, str> {
        K::api_version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn url_path(dt: &(), namespace: Option<&str>) -> String {
        K::url_path(dt, namespace)
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Lenient::Decoded(k) => k.meta(),
            Lenient::Undecodable { meta, .. } => meta,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Lenient::Decoded(k) => k.meta_mut(),
            Lenient::Undecodable { meta, .. } => meta,
        }
    }
}

/// Told about every object left out: its metadata and why it did not decode.
pub(crate) type OnUndecodable = Arc<dyn Fn(&ObjectMeta, &str) + Send + Sync>;

/// The watch events of `events` with every undecodable object left out and handed to `report`.
pub(crate) fn skip_undecodable<K>(
    events: impl Stream<Item = watcher::Result<Event<Lenient<K>>>> + Send + 'static,
    report: OnUndecodable,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static
where
    K: Send + 'static,
{
    events.filter_map(move |ev| {
        let decoded = |o: Lenient<K>| match o {
            Lenient::Decoded(k) => Some(k),
            Lenient::Undecodable { meta, error } => {
                report(&meta, &error);
                None
            }
        };
        let out = match ev {
            Ok(Event::Apply(o)) => decoded(o).map(|k| Ok(Event::Apply(k))),
            Ok(Event::Delete(o)) => decoded(o).map(|k| Ok(Event::Delete(k))),
            Ok(Event::InitApply(o)) => decoded(o).map(|k| Ok(Event::InitApply(k))),
            Ok(Event::Init) => Some(Ok(Event::Init)),
            Ok(Event::InitDone) => Some(Ok(Event::InitDone)),
            Err(e) => Some(Err(e)),
        };
        std::future::ready(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[derive(Clone, Debug, Deserialize)]
    struct Strict {
        metadata: ObjectMeta,
        #[allow(dead_code)]
        spec: StrictSpec,
    }

    #[derive(Clone, Debug, Deserialize)]
    struct StrictSpec {
        #[allow(dead_code)]
        size: u32,
    }

    #[test]
    fn one_undecodable_item_leaves_the_others_decoded() {
        let list = r#"[
            {"metadata": {"name": "good", "namespace": "ns"}, "spec": {"size": 3}},
            {"metadata": {"name": "bad", "namespace": "ns", "resourceVersion": "7"}, "spec": {"size": "three"}},
            {"metadata": {"name": "escaped \"name\""}, "spec": {"size": 1}}
        ]"#;
        let items: Vec<Lenient<Strict>> = serde_json::from_str(list).unwrap();
        assert!(matches!(&items[0], Lenient::Decoded(_)));
        match &items[1] {
            Lenient::Undecodable { meta, error } => {
                assert_eq!(meta.name.as_deref(), Some("bad"));
                assert_eq!(meta.resource_version.as_deref(), Some("7"));
                assert!(error.contains("invalid type"), "{error}");
            }
            Lenient::Decoded(_) => panic!("decoded a bad object"),
        }
        match &items[2] {
            Lenient::Decoded(s) => assert_eq!(s.metadata.name.as_deref(), Some("escaped \"name\"")),
            Lenient::Undecodable { error, .. } => panic!("{error}"),
        }
    }

    #[test]
    fn the_wrapper_is_the_same_resource() {
        assert_eq!(Lenient::<ConfigMap>::kind(&()), "ConfigMap");
        assert_eq!(Lenient::<ConfigMap>::api_version(&()), "v1");
        assert_eq!(Lenient::<ConfigMap>::plural(&()), "configmaps");
    }
}
