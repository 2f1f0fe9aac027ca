//! Garbage collection as kube-controller-manager does it, but synchronous: the work queued by a
//! commit is drained before the request's lock is released, so tests observe the settled state
//! without polling and results do not depend on timing (or on `tokio::time::pause()`).
//!
//! Like the real collector, it also deletes a dependent whose owners are all absent when its
//! references appear (a child created after its owner was deleted): an owner is absent when no
//! object of its kind has its name in the dependent's namespace (or cluster-wide, for a
//! cluster-scoped kind), or the one that has it has another uid.

use serde_json::Value;

use crate::meta;
use crate::ops::{self, DeleteOpts, Propagation};
use crate::store::{FullKey, GcWork, State};

/// Drains the garbage-collection queue.
pub fn run(st: &mut State) {
    // Bounded so that a pathological owner cycle cannot spin forever.
    let mut budget = 1_000_000usize;
    while let Some(work) = st.gc_queue.pop_front() {
        budget -= 1;
        if budget == 0 {
            st.gc_queue.clear();
            break;
        }
        match work {
            GcWork::OwnerGone(uid) => owner_gone(st, &uid),
            GcWork::CheckForeground(uid) => check_foreground(st, &uid),
            GcWork::CheckNamespace(ns) => check_namespace(st, &ns),
            GcWork::CheckOwners(key) => check_owners(st, &key),
        }
    }
}

/// The uids an object's ownerReferences name.
pub(crate) fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Background deletion: a dependent goes once none of its owners exist; references to owners
/// that are gone are dropped from dependents that still have a live owner.
fn owner_gone(st: &mut State, uid: &str) {
    for key in st.dependents_of(uid) {
        let Some(obj) = st.get(&key.0, &key.1, &key.2).cloned() else {
            continue;
        };
        let alive = owner_uids(&obj)
            .iter()
            .any(|u| u != uid && st.by_uid(u).is_some());
        if alive {
            ops::orphan(st, &key, uid);
            continue;
        }
        delete_dependent(st, &key, &obj);
    }
}

/// Deletes a dependent none of whose owners exists.
fn delete_dependent(st: &mut State, key: &FullKey, obj: &Value) {
    // Dependents of an owner that was deleted in the foreground go in the foreground too.
    let policy = if meta::finalizers(obj)
        .iter()
        .any(|f| f == "foregroundDeletion")
    {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    if let Some(t) = ops::resource_type_for_key(st, &key.0) {
        let _ = ops::delete(
            st,
            &t,
            &key.1,
            &key.2,
            &DeleteOpts {
                policy: Some(policy),
                ..Default::default()
            },
        );
    }
}

/// What an owner reference names, as the real collector classifies it.
enum Owner {
    /// An object of that kind, name and uid exists.
    Solid,
    /// None does (never existed, deleted, or re-created under the name with another uid).
    Absent(String),
    /// Not resolvable: a kind the server does not serve, or a namespaced owner of a
    /// cluster-scoped dependent. The real collector leaves such a dependent alone.
    Unresolvable,
}

fn classify(st: &State, dependent_ns: &str, r: &Value) -> Owner {
    let field = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or_default();
    let group = field("apiVersion").rsplit_once('/').map_or("", |(g, _)| g);
    let Some(t) = st.registry.by_kind(group, field("kind")) else {
        return Owner::Unresolvable;
    };
    let ns = match (t.namespaced, dependent_ns) {
        (true, "") => return Owner::Unresolvable,
        (true, ns) => ns,
        (false, _) => "",
    };
    match st.get(&t.key(), ns, field("name")) {
        Some(o) if meta::uid_of(o) == field("uid") => Owner::Solid,
        _ => Owner::Absent(field("uid").to_string()),
    }
}

/// A dependent whose references just appeared: deleted if every owner is absent; references to
/// absent owners are dropped if another owner exists.
fn check_owners(st: &mut State, key: &FullKey) {
    let Some(obj) = st.get(&key.0, &key.1, &key.2).cloned() else {
        return;
    };
    let refs = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let owners: Vec<Owner> = refs.iter().map(|r| classify(st, &key.1, r)).collect();
    let absent: Vec<&String> = owners
        .iter()
        .filter_map(|o| match o {
            Owner::Absent(uid) => Some(uid),
            _ => None,
        })
        .collect();
    if absent.is_empty() || meta::is_deleting(&obj) {
        return;
    }
    if owners.iter().any(|o| matches!(o, Owner::Solid)) {
        for uid in absent {
            ops::orphan(st, key, uid);
        }
    } else if owners.iter().all(|o| matches!(o, Owner::Absent(_))) {
        delete_dependent(st, key, &obj);
    }
}

/// Foreground deletion: the owner loses its `foregroundDeletion` finalizer once no dependent
/// with `blockOwnerDeletion: true` remains.
fn check_foreground(st: &mut State, uid: &str) {
    let Some(key) = st.by_uid(uid).cloned() else {
        return;
    };
    let Some(owner) = st.get(&key.0, &key.1, &key.2).cloned() else {
        return;
    };
    let fins = meta::finalizers(&owner);
    if !meta::is_deleting(&owner) || !fins.iter().any(|f| f == "foregroundDeletion") {
        return;
    }
    let blocked = st.dependents_of(uid).iter().any(|d| {
        st.get(&d.0, &d.1, &d.2).is_some_and(|o| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter().any(|r| {
                        r.get("uid").and_then(Value::as_str) == Some(uid)
                            && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
                    })
                })
        })
    });
    if blocked {
        return;
    }
    let mut o = (*owner).clone();
    let rest: Vec<Value> = fins
        .into_iter()
        .filter(|f| f != "foregroundDeletion")
        .map(Value::from)
        .collect();
    if rest.is_empty() {
        meta::meta_mut(&mut o).remove("finalizers");
        ops::remove(st, &key.0, &key.1, &key.2, Some(o));
    } else {
        meta::meta_mut(&mut o).insert("finalizers".into(), Value::Array(rest));
        st.put(&key.0, &key.1, &key.2, o);
    }
}

/// The namespace controller: a terminating namespace disappears once it is empty.
fn check_namespace(st: &mut State, ns: &str) {
    let Some(obj) = st.get("/namespaces", "", ns).cloned() else {
        return;
    };
    if !meta::is_deleting(&obj) || !st.keys_in_namespace(ns).is_empty() {
        return;
    }
    let mut o = (*obj).clone();
    if meta::finalizers(&o).is_empty() {
        o["spec"]["finalizers"] = Value::Array(vec![]);
        ops::remove(st, "/namespaces", "", ns, Some(o));
    } else if o
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        o["spec"]["finalizers"] = Value::Array(vec![]);
        st.put("/namespaces", "", ns, o);
    }
}
