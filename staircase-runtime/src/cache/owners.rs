//! The objects of a kind that carry the children step's owner label, by its value: the step lists
//! one parent's children on every run, and filtering the whole store by label would cost a pass
//! over every object of the kind, per run (quadratic in the number of parents).

use std::sync::Mutex;

use hashbrown::{HashMap, HashSet};

use super::marks::ObjKey;

#[derive(Default)]
struct Index {
    /// Each labelled object's owner.
    owner_of: HashMap<ObjKey, String>,
    /// The labelled objects of each owner.
    owned_by: HashMap<String, HashSet<ObjKey>>,
}

/// The index, kept from the store's events.
#[derive(Default)]
pub(crate) struct Owners(Mutex<Index>);

impl Owners {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `key` now carries `owner` (`None`: no owner label, or the object is gone).
    pub(crate) fn set(&self, key: ObjKey, owner: Option<&str>) {
        let mut i = self.lock();
        let old = match owner {
            Some(o) => i.owner_of.insert(key.clone(), o.to_string()),
            None => i.owner_of.remove(&key),
        };
        if old.as_deref() == owner {
            return;
        }
        if let Some(old) = old
            && let Some(set) = i.owned_by.get_mut(&old)
        {
            set.remove(&key);
            if set.is_empty() {
                i.owned_by.remove(&old);
            }
        }
        if let Some(o) = owner {
            i.owned_by.entry(o.to_string()).or_default().insert(key);
        }
    }

    /// Starts over from `objects` (after a relist, whose end drops what the list no longer has).
    pub(crate) fn rebuild(&self, objects: impl Iterator<Item = (ObjKey, String)>) {
        let mut fresh = Index::default();
        for (key, owner) in objects {
            fresh
                .owned_by
                .entry(owner.clone())
                .or_default()
                .insert(key.clone());
            fresh.owner_of.insert(key, owner);
        }
        *self.lock() = fresh;
    }

    /// The objects `owner` owns.
    pub(crate) fn of(&self, owner: &str) -> Vec<ObjKey> {
        self.lock()
            .owned_by
            .get(owner)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::Owners;

    fn key(n: &str) -> (Option<String>, String) {
        (Some("ns".into()), n.into())
    }

    #[test]
    fn objects_follow_their_owner_label() {
        let o = Owners::default();
        o.set(key("a"), Some("p"));
        o.set(key("b"), Some("p"));
        o.set(key("c"), Some("q"));
        let mut of_p = o.of("p");
        of_p.sort();
        assert_eq!(of_p, [key("a"), key("b")]);
        o.set(key("b"), Some("q"));
        assert_eq!(o.of("p"), [key("a")]);
        o.set(key("a"), None);
        assert!(o.of("p").is_empty());
        o.rebuild([(key("z"), "p".to_string())].into_iter());
        assert_eq!(o.of("p"), [key("z")]);
        assert!(o.of("q").is_empty());
    }
}
