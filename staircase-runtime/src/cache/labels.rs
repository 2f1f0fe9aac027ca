//! The objects of a kind by the value of a label, for the labels lists select on: the children
//! step lists one parent's children on every run (its owner label), and a step's `ctx.list`
//! often selects on one label too. Filtering the whole store instead would cost a pass over every
//! object of the kind, per run (quadratic in the number of objects).
//!
//! A label is indexed from the first list that selects on it (built from the store then) and
//! kept from the store's events after; the owner label is indexed from the start.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hashbrown::{HashMap, HashSet};

use super::marks::ObjKey;

/// One label's values.
#[derive(Default)]
struct ByValue {
    /// Each labelled object's value.
    value_of: HashMap<ObjKey, String>,
    /// The objects with each value.
    with: HashMap<String, HashSet<ObjKey>>,
}

impl ByValue {
    fn set(&mut self, key: &ObjKey, value: Option<&str>) {
        let old = match value {
            Some(v) => self.value_of.insert(key.clone(), v.to_string()),
            None => self.value_of.remove(key),
        };
        if old.as_deref() == value {
            return;
        }
        if let Some(old) = old
            && let Some(set) = self.with.get_mut(&old)
        {
            set.remove(key);
            if set.is_empty() {
                self.with.remove(&old);
            }
        }
        if let Some(v) = value {
            self.with
                .entry(v.to_string())
                .or_default()
                .insert(key.clone());
        }
    }
}

/// The indexed labels, kept from the store's events.
#[derive(Default)]
pub(crate) struct LabelIndex(Mutex<HashMap<String, ByValue>>);

impl LabelIndex {
    /// An index of `label` from the start.
    pub(crate) fn of_label(label: &str) -> Self {
        let index = LabelIndex::default();
        index.lock().insert(label.to_string(), ByValue::default());
        index
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ByValue>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `key` now has `labels` (`None`: the object is gone).
    pub(crate) fn set(&self, key: &ObjKey, labels: Option<&BTreeMap<String, String>>) {
        for (label, index) in self.lock().iter_mut() {
            index.set(key, labels.and_then(|l| l.get(label)).map(String::as_str));
        }
    }

    /// Starts over from `objects` (after a relist, whose end drops what the list no longer has).
    pub(crate) fn rebuild<'a>(
        &self,
        objects: impl Iterator<Item = (ObjKey, &'a BTreeMap<String, String>)>,
    ) {
        let mut indexes = self.lock();
        for index in indexes.values_mut() {
            *index = ByValue::default();
        }
        for (key, labels) in objects {
            for (label, index) in indexes.iter_mut() {
                index.set(&key, labels.get(label).map(String::as_str));
            }
        }
    }

    /// The objects whose `label` is `value`. A label not indexed yet is indexed first, from
    /// `store`: every object with its value of the label. The lock is held meanwhile, so an event
    /// the store applies during the build is noted after it.
    pub(crate) fn with(
        &self,
        label: &str,
        value: &str,
        store: impl FnOnce() -> Vec<(ObjKey, Option<String>)>,
    ) -> Vec<ObjKey> {
        let mut indexes = self.lock();
        let index = indexes.entry_ref(label).or_insert_with(|| {
            let mut index = ByValue::default();
            for (key, value) in store() {
                index.set(&key, value.as_deref());
            }
            index
        });
        index
            .with
            .get(value)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::LabelIndex;
    use crate::cache::marks::ObjKey;

    fn key(n: &str) -> ObjKey {
        (Some("ns".into()), n.into())
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn none() -> Vec<(ObjKey, Option<String>)> {
        panic!("an indexed label is not built again")
    }

    #[test]
    fn objects_follow_their_label() {
        let o = LabelIndex::of_label("owner");
        o.set(&key("a"), Some(&labels(&[("owner", "p")])));
        o.set(&key("b"), Some(&labels(&[("owner", "p"), ("x", "1")])));
        o.set(&key("c"), Some(&labels(&[("owner", "q")])));
        let mut of_p = o.with("owner", "p", none);
        of_p.sort();
        assert_eq!(of_p, [key("a"), key("b")]);
        o.set(&key("b"), Some(&labels(&[("owner", "q")])));
        assert_eq!(o.with("owner", "p", none), [key("a")]);
        o.set(&key("a"), None);
        assert!(o.with("owner", "p", none).is_empty());
        let z = labels(&[("owner", "p")]);
        o.rebuild([(key("z"), &z)].into_iter());
        assert_eq!(o.with("owner", "p", none), [key("z")]);
        assert!(o.with("owner", "q", none).is_empty());
    }

    #[test]
    fn a_label_is_indexed_from_the_store_at_its_first_list_and_kept_after() {
        let o = LabelIndex::default();
        let store = || vec![(key("a"), Some("web".to_string())), (key("b"), None)];
        assert_eq!(o.with("app", "web", store), [key("a")]);
        o.set(&key("b"), Some(&labels(&[("app", "web")])));
        o.set(&key("a"), Some(&labels(&[("app", "db")])));
        assert_eq!(o.with("app", "web", none), [key("b")]);
        assert_eq!(o.with("app", "db", none), [key("a")]);
    }
}
