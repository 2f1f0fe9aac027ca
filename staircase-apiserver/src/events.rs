//! Events are one resource seen through two APIs, as on a real server: `core/v1` Events and
//! `events.k8s.io/v1` Events share one store (the core form), and each write or read through
//! `events.k8s.io` is converted with kube-apiserver's field mapping. So `kubectl get events` and
//! `kubectl describe` show what a controller recorded through either API.

use serde_json::Value;

use crate::registry::ResourceType;

/// `events.k8s.io/v1` field ↔ `core/v1` field; every other field has one name in both.
const RENAMED: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// The storage key both Event APIs share.
pub(crate) const KEY: &str = "/events";

/// Whether `rt` is the `events.k8s.io` view of Events.
pub(crate) fn is_events_api(rt: &ResourceType) -> bool {
    rt.group == "events.k8s.io" && rt.plural == "events"
}

/// An `events.k8s.io/v1` Event in the stored (core) form.
pub(crate) fn to_core(obj: &mut Value) {
    rename(obj, |(events, core)| (events, core));
    obj["apiVersion"] = "v1".into();
}

/// A stored (core) Event as `events.k8s.io/v1` shows it.
pub(crate) fn to_events_api(obj: &Value) -> Value {
    let mut o = obj.clone();
    rename(&mut o, |(events, core)| (core, events));
    o["apiVersion"] = "events.k8s.io/v1".into();
    o
}

fn rename(
    obj: &mut Value,
    direction: impl Fn((&'static str, &'static str)) -> (&'static str, &'static str),
) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    for pair in RENAMED {
        let (from, to) = direction(pair);
        if let Some(v) = map.remove(from) {
            map.insert(to.into(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_two_forms_convert_both_ways() {
        let events_api = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "regarding": {"kind": "Foo", "name": "a"}, "note": "created ConfigMap",
            "reason": "Modified", "type": "Normal", "reportingController": "staircase",
            "reportingInstance": "pod-1", "action": "Reconcile", "deprecatedCount": 2
        });
        let mut core = events_api.clone();
        to_core(&mut core);
        assert_eq!(
            core,
            json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "e", "namespace": "default"},
                "involvedObject": {"kind": "Foo", "name": "a"}, "message": "created ConfigMap",
                "reason": "Modified", "type": "Normal", "reportingComponent": "staircase",
                "reportingInstance": "pod-1", "action": "Reconcile", "count": 2
            })
        );
        assert_eq!(to_events_api(&core), events_api);
    }
}
