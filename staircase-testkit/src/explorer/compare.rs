//! End states: a snapshot of everything the operator may have touched, normalized so that only
//! meaningful differences remain, and a readable diff between two snapshots.

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use serde_json::Value;

use super::external::ExternalService;

/// A normalized end state: `resource/namespace/name` → object.
pub type Snapshot = BTreeMap<String, Value>;

/// The built-in kinds compared by default: what operators usually own.
const BUILTINS: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "Secret", "secrets"),
    ("", "v1", "Service", "services"),
    ("", "v1", "ServiceAccount", "serviceaccounts"),
    ("", "v1", "Pod", "pods"),
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("batch", "v1", "Job", "jobs"),
];

/// Metadata the server (not the operator) decides: differs between two identical histories.
const VOLATILE_META: &[&str] = &[
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
];

/// Timestamps inside conditions.
const CONDITION_TIMES: &[&str] = &[
    "lastTransitionTime",
    "lastUpdateTime",
    "lastProbeTime",
    "lastHeartbeatTime",
];

/// What to compare beyond the defaults.
#[derive(Clone, Default)]
pub(crate) struct CompareConfig {
    pub extra: Vec<ApiResource>,
    /// Dotted paths removed from every object before comparing (e.g. `spec.clusterIP`).
    pub ignore: Vec<String>,
}

pub(crate) fn builtin_resources() -> Vec<ApiResource> {
    BUILTINS
        .iter()
        .map(|(g, v, k, p)| ApiResource {
            group: g.to_string(),
            version: v.to_string(),
            api_version: if g.is_empty() {
                v.to_string()
            } else {
                format!("{g}/{v}")
            },
            kind: k.to_string(),
            plural: p.to_string(),
        })
        .collect()
}

/// Lists every compared resource in `ns` for which `may_exist` holds and normalizes it.
pub(crate) async fn snapshot(
    client: &kube::Client,
    ns: &str,
    primary: &ApiResource,
    cfg: &CompareConfig,
    external: &ExternalService,
    may_exist: impl Fn(&ApiResource) -> bool,
) -> anyhow::Result<Snapshot> {
    let mut raw = Vec::new();
    let mut resources = vec![primary.clone()];
    resources.extend(builtin_resources());
    resources.extend(cfg.extra.iter().cloned());
    for ar in resources.iter().filter(|ar| may_exist(ar)) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
        for o in api.list(&ListParams::default()).await?.items {
            let name = o.metadata.name.clone().unwrap_or_default();
            let mut v = serde_json::to_value(&o)?;
            v["kind"] = Value::String(ar.kind.clone());
            raw.push((format!("{}/{ns}/{name}", ar.plural), v));
        }
    }
    // uids are random per server: name them by their object so references stay comparable.
    let mut uids = BTreeMap::new();
    for (key, v) in &raw {
        if let Some(u) = v["metadata"]["uid"].as_str() {
            uids.insert(u.to_string(), format!("<uid of {key}>"));
        }
    }
    let mut out = Snapshot::new();
    for (key, mut v) in raw {
        if v["kind"] == "Secret" {
            decode_secret(&mut v);
        }
        normalize(&mut v, &uids, cfg);
        out.insert(key, v);
    }
    for r in external.records() {
        out.insert(
            format!("external/{}/{}", external.name(), r.key),
            serde_json::json!({ "id": r.id, "value": r.value }),
        );
    }
    Ok(out)
}

fn normalize(v: &mut Value, uids: &BTreeMap<String, String>, cfg: &CompareConfig) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in VOLATILE_META {
            meta.remove(*f);
        }
        if meta.contains_key("deletionTimestamp") {
            meta.insert("deletionTimestamp".into(), Value::String("<set>".into()));
        }
        if let Some(refs) = meta
            .get_mut("ownerReferences")
            .and_then(Value::as_array_mut)
        {
            for r in refs.iter_mut().filter_map(Value::as_object_mut) {
                r.remove("uid");
            }
        }
    }
    if v["kind"] == "Service"
        && let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut)
    {
        // Allocated by the server from a pool: not the operator's doing.
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    for path in &cfg.ignore {
        remove_path(v, path);
    }
    walk(v, uids, false);
}

fn remove_path(v: &mut Value, path: &str) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut cur = v;
    for p in parts {
        match cur.get_mut(p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(o) = cur.as_object_mut() {
        o.remove(last);
    }
}

fn walk(v: &mut Value, uids: &BTreeMap<String, String>, in_conditions: bool) {
    match v {
        Value::String(s) => {
            for (u, name) in uids {
                if s.contains(u.as_str()) {
                    *s = s.replace(u.as_str(), name);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| walk(x, uids, in_conditions)),
        Value::Object(o) => {
            if in_conditions {
                for t in CONDITION_TIMES {
                    o.remove(*t);
                }
            }
            for (k, x) in o.iter_mut() {
                walk(x, uids, k == "conditions");
            }
        }
        _ => {}
    }
}

/// Secret data is base64; decode it so uids inside (tokens derived from them) can be named.
fn decode_secret(v: &mut Value) {
    if let Some(data) = v.get_mut("data").and_then(Value::as_object_mut) {
        for x in data.values_mut() {
            if let Some(s) = x.as_str()
                && let Some(bytes) = base64_decode(s)
                && let Ok(text) = String::from_utf8(bytes)
            {
                *x = Value::String(text);
            }
        }
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, x) in o {
                flatten(&format!("{prefix}.{k}"), x, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.to_string());
        }
    }
}

/// A readable diff (`-` reference, `+` this case), or `None` when the snapshots are equal.
/// Whole missing or extra objects are named once rather than field by field.
pub fn diff(reference: &Snapshot, got: &Snapshot) -> Option<String> {
    if reference == got {
        return None;
    }
    let mut lines = Vec::new();
    for (k, v) in reference {
        match got.get(k) {
            None => lines.push(format!("- {k} (missing)")),
            Some(g) if g != v => {
                let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
                flatten("", v, &mut a);
                flatten("", g, &mut b);
                for (p, x) in &a {
                    match b.get(p) {
                        Some(y) if y == x => {}
                        Some(y) => {
                            lines.push(format!("- {k} {p}: {x}"));
                            lines.push(format!("+ {k} {p}: {y}"));
                        }
                        None => lines.push(format!("- {k} {p}: {x}")),
                    }
                }
                for (p, y) in &b {
                    if !a.contains_key(p) {
                        lines.push(format!("+ {k} {p}: {y}"));
                    }
                }
            }
            Some(_) => {}
        }
    }
    for k in got.keys().filter(|k| !reference.contains_key(*k)) {
        lines.push(format!("+ {k} (extra)"));
    }
    const MAX: usize = 24;
    let more = lines.len().saturating_sub(MAX);
    lines.truncate(MAX);
    if more > 0 {
        lines.push(format!("… {more} more lines"));
    }
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert!(base64_decode("a").is_none());
    }

    #[test]
    fn volatile_fields_and_condition_times_are_ignored_but_values_are_not() {
        let cfg = CompareConfig::default();
        let uids = BTreeMap::from([("u-1".to_string(), "<uid of x>".to_string())]);
        let mut a = serde_json::json!({"kind": "Foo", "metadata": {"name": "x", "uid": "u-1", "resourceVersion": "5",
            "ownerReferences": [{"name": "o", "uid": "u-9"}]},
            "status": {"conditions": [{"type": "Ready", "lastTransitionTime": "t1"}], "token": "tok-u-1"}});
        let mut b = a.clone();
        b["metadata"]["resourceVersion"] = "9".into();
        b["status"]["conditions"][0]["lastTransitionTime"] = "t2".into();
        normalize(&mut a, &uids, &cfg);
        normalize(&mut b, &uids, &cfg);
        assert_eq!(a, b);
        assert_eq!(a["status"]["token"], "tok-<uid of x>");
        let mut c = b.clone();
        c["status"]["conditions"][0]["type"] = "Failed".into();
        let d = diff(
            &Snapshot::from([("k".into(), b)]),
            &Snapshot::from([("k".into(), c)]),
        )
        .unwrap();
        assert!(
            d.contains("- k .status.conditions[0].type: \"Ready\""),
            "{d}"
        );
    }
}
