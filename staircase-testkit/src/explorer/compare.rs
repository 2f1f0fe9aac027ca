//! End states: a snapshot of everything the operator may have touched, normalized so that only
//! meaningful differences remain, and a readable diff between two snapshots.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use serde_json::Value;
use staircase_runtime::children::APPLIED_HASH_ANNOTATION;

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
    /// Field paths removed from every object before comparing (e.g. `spec.clusterIP`), in the
    /// syntax [`path_segments`] reads.
    pub ignore: Vec<String>,
    /// Whether each extra resource is namespaced, by `plural.group`: asked of the server's
    /// discovery once, then shared by every case (a resource's scope is the same on each).
    scopes: Arc<Mutex<BTreeMap<String, bool>>>,
}

/// A resource to list, and whether it lives in namespaces.
pub(crate) type Listed = (ApiResource, bool);

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

/// Every compared resource with its scope: the primary, the built-ins (all namespaced) and the
/// extras (their scope from discovery).
pub(crate) async fn resources(
    client: &kube::Client,
    primary: Listed,
    cfg: &CompareConfig,
) -> anyhow::Result<Vec<Listed>> {
    let mut out = vec![primary];
    out.extend(builtin_resources().into_iter().map(|ar| (ar, true)));
    for ar in &cfg.extra {
        let key = format!("{}.{}", ar.plural, ar.group);
        let known = cfg.scopes.lock().expect("scopes").get(&key).copied();
        let namespaced = match known {
            Some(n) => n,
            None => {
                let gvk = GroupVersionKind::gvk(&ar.group, &ar.version, &ar.kind);
                let (_, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
                let n = caps.scope == Scope::Namespaced;
                cfg.scopes.lock().expect("scopes").insert(key, n);
                n
            }
        };
        out.push((ar.clone(), namespaced));
    }
    Ok(out)
}

/// How one case names its random values so that two cases can be compared: each uid by the
/// object it belongs to, and each hash the children step stamps on a child by the configuration
/// it hashes (which contains the parent's uid). Kept for the whole case, so that a uid stays
/// named after its object is gone (an external record keyed by it outlives the object).
#[derive(Default)]
pub(crate) struct Names {
    uids: BTreeMap<String, String>,
    /// Names the server generated (`metadata.generateName` plus a random suffix), by the
    /// identity their object is compared under.
    generated: BTreeMap<String, String>,
    /// The ids the external service gave its records, by the record's key: an id follows the
    /// order of creation, which under the controller loop follows task scheduling.
    ids: BTreeMap<String, String>,
    /// Applied configurations by their [`APPLIED_HASH_ANNOTATION`], as the operator sent them.
    pub applied: BTreeMap<String, Value>,
    /// On a shared real server: the case's namespace, and the scenario's namespace it is shown
    /// as. Only that namespace is listed, and its name is replaced wherever it appears, so
    /// cases in different namespaces compare.
    pub namespace: Option<(String, String)>,
}

impl Names {
    /// `text` with every uid and generated name named.
    pub(crate) fn name_uids(&self, text: &str) -> String {
        let mut s = Value::String(text.to_string());
        walk(&mut s, self, false);
        s.as_str().unwrap_or(text).to_string()
    }
}

/// What stands for the random suffix of a generated name in snapshot keys and in the objects'
/// `metadata.name`.
pub(crate) const GENERATED: &str = "<generated>";

/// The `generateName` a name was generated from: the object has one and its name is that
/// prefix plus a suffix.
fn generated_from(meta: &Value) -> Option<&str> {
    let prefix = meta["generateName"].as_str().filter(|p| !p.is_empty())?;
    let name = meta["name"].as_str()?;
    (name.len() > prefix.len() && name.starts_with(prefix)).then_some(prefix)
}

/// The identity an object with a generated name is compared under, in place of its name:
/// `plural/namespace/<generateName><generated>`, its owners (`owner Kind/name`) and its labels
/// (with uids named), so that the same object in two cases has the same key, and two objects
/// of one identity in a case show as a duplicate.
fn generated_identity(base: &str, prefix: &str, meta: &Value, names: &Names) -> String {
    let mut key = format!("{base}/{prefix}{GENERATED}");
    let owners: Vec<String> = meta["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{}/{}",
                r["kind"].as_str().unwrap_or("?"),
                r["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if !owners.is_empty() {
        key.push_str(&format!(" owner {}", owners.join(",")));
    }
    if let Some(labels) = meta["labels"].as_object().filter(|l| !l.is_empty()) {
        let mut labels = Value::Object(labels.clone());
        walk(&mut labels, names, false);
        let list: Vec<String> = labels
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        key.push_str(&format!(" labels {}", list.join(",")));
    }
    key
}

/// How many objects with a generated name each identity has in a snapshot (the keys of the
/// second and later objects of one identity carry ` #2`, ` #3`, …).
pub(crate) fn generated_counts(s: &Snapshot) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for key in s.keys().filter(|k| k.contains(GENERATED)) {
        let base = match key.rsplit_once(" #") {
            Some((b, n)) if n.chars().all(|c| c.is_ascii_digit()) => b,
            _ => key.as_str(),
        };
        *out.entry(base.to_string()).or_default() += 1;
    }
    out
}

/// Lists every resource of `resources` (in all namespaces), every external record and what the
/// fake HTTP service `http` (name, state) holds, and normalizes them.
pub(crate) async fn snapshot(
    client: &kube::Client,
    resources: &[Listed],
    cfg: &CompareConfig,
    external: &ExternalService,
    http: Option<(&str, Value)>,
    names: &mut Names,
) -> anyhow::Result<Snapshot> {
    let mut raw = Vec::new();
    // Objects whose name the server generated, by identity: keyed once the names they hold
    // (their owners', in labels) are known.
    let mut generated: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut bases = Vec::new();
    for (ar, namespaced) in resources {
        let api: Api<DynamicObject> = match &names.namespace {
            Some((ns, _)) if *namespaced => Api::namespaced_with(client.clone(), ns, ar),
            _ => Api::all_with(client.clone(), ar),
        };
        for o in api.list(&ListParams::default()).await?.items {
            let name = o.metadata.name.clone().unwrap_or_default();
            // The sharded replicas' assignment is the runtime's bookkeeping, not an end state.
            let sharding = Some(super::shards::NAMESPACE);
            if o.metadata.namespace.as_deref() == sharding
                || (ar.plural == "namespaces" && o.metadata.name.as_deref() == sharding)
            {
                continue;
            }
            if names.namespace.is_some()
                && super::backend::CONTROL_PLANE.contains(&(ar.plural.as_str(), name.as_str()))
            {
                continue;
            }
            let base = match (&o.metadata.namespace, namespaced, &names.namespace) {
                (Some(ns), true, Some((case, shown))) if ns == case => {
                    format!("{}/{shown}", ar.plural)
                }
                (Some(ns), true, _) => format!("{}/{ns}", ar.plural),
                _ => ar.plural.clone(),
            };
            let mut v = serde_json::to_value(&o)?;
            v["kind"] = Value::String(ar.kind.clone());
            if generated_from(&v["metadata"]).is_some() {
                bases.push((base, v));
            } else {
                raw.push((format!("{base}/{name}"), v));
            }
        }
    }
    // uids are random per server: name them by their object so references stay comparable.
    for (key, v) in &raw {
        if let Some(u) = v["metadata"]["uid"].as_str() {
            names.uids.insert(u.to_string(), format!("<uid of {key}>"));
        }
    }
    for (base, v) in bases {
        let prefix = generated_from(&v["metadata"])
            .unwrap_or_default()
            .to_string();
        let identity = generated_identity(&base, &prefix, &v["metadata"], names);
        generated.entry(identity).or_default().push(v);
    }
    for (identity, mut objs) in generated {
        // Several objects of one identity are told apart by their content, not their names.
        let content = |v: &Value| {
            let mut c = v.clone();
            if let Some(m) = c.as_object_mut() {
                m.remove("metadata");
            }
            walk(&mut c, names, false);
            c.to_string()
        };
        objs.sort_by_cached_key(content);
        for (i, mut v) in objs.into_iter().enumerate() {
            let key = match i {
                0 => identity.clone(),
                _ => format!("{identity} #{}", i + 1),
            };
            let prefix = generated_from(&v["metadata"])
                .unwrap_or_default()
                .to_string();
            if let Some(n) = v["metadata"]["name"].as_str() {
                names
                    .generated
                    .insert(n.to_string(), format!("<name of {key}>"));
            }
            if let Some(u) = v["metadata"]["uid"].as_str() {
                names.uids.insert(u.to_string(), format!("<uid of {key}>"));
            }
            v["metadata"]["name"] = Value::String(format!("{prefix}{GENERATED}"));
            raw.push((key, v));
        }
    }
    name_ids(external, names);
    let mut out = Snapshot::new();
    for (key, mut v) in raw {
        normalize(&mut v, names, cfg);
        out.insert(key, v);
    }
    out.extend(external_records(external, cfg, names));
    if let Some((name, mut state)) = http {
        for path in &cfg.ignore {
            remove_path(&mut state, path);
        }
        walk(&mut state, names, false);
        out.insert(format!("external/{name}"), state);
    }
    Ok(out)
}

/// Names every record id of the external service by its record's key (uids in the key named).
fn name_ids(external: &ExternalService, names: &mut Names) {
    for r in external.records() {
        let key = format!(
            "<id of external/{}/{}>",
            external.name(),
            names.name_uids(&r.key)
        );
        names.ids.insert(r.id, key);
    }
}

/// The external service's records as snapshot entries: `external/<service>/<key>` →
/// `{"id", "value"}`, with uids named in keys and values (a key from
/// `IdempotencyKey::for_step` holds one), ids named by their record's key, and the ignored
/// paths removed.
fn external_records(
    external: &ExternalService,
    cfg: &CompareConfig,
    names: &Names,
) -> Vec<(String, Value)> {
    external
        .records()
        .into_iter()
        .map(|r| {
            let mut v = serde_json::json!({ "id": r.id, "value": r.value });
            for path in &cfg.ignore {
                remove_path(&mut v, path);
            }
            walk(&mut v, names, false);
            let key = format!("external/{}/{}", external.name(), names.name_uids(&r.key));
            (key, v)
        })
        .collect()
}

fn normalize(v: &mut Value, names: &Names, cfg: &CompareConfig) {
    if v["kind"] == "Secret" {
        decode_secret(v);
    }
    // The children step's hash covers the parent's uid; name it by what it hashes.
    if let Some(a) = v
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        && let Some(applied) = a
            .get(APPLIED_HASH_ANNOTATION)
            .and_then(Value::as_str)
            .and_then(|h| names.applied.get(h))
    {
        let mut applied = applied.clone();
        if let Some(own) = applied
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            own.remove(APPLIED_HASH_ANNOTATION);
        }
        normalize(&mut applied, names, cfg);
        a.insert(APPLIED_HASH_ANNOTATION.into(), applied);
    }
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
    walk(v, names, false);
}

/// The keys of a field path: separated by `.`; a key that contains dots is written in brackets
/// and quotes (`metadata.annotations["example.com/x"]`) or with its dots escaped
/// (`metadata.annotations.example\.com/x`).
pub(crate) fn path_segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            '.' | '[' if !cur.is_empty() => {
                out.push(std::mem::take(&mut cur));
                if c == '[' {
                    out.push(bracketed(&mut chars));
                }
            }
            '.' => {}
            '[' => out.push(bracketed(&mut chars)),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The key of `["key"]` (or `['key']`), after its opening bracket; consumes the closing one.
fn bracketed(chars: &mut std::str::Chars<'_>) -> String {
    let quote = chars.next();
    let key: String = chars.by_ref().take_while(|k| Some(*k) != quote).collect();
    chars.next();
    key
}

fn remove_path(v: &mut Value, path: &str) {
    let mut parts = path_segments(path);
    let Some(last) = parts.pop() else { return };
    let mut cur = v;
    for p in &parts {
        match cur.get_mut(p.as_str()) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(o) = cur.as_object_mut() {
        o.remove(&last);
    }
}

fn walk(v: &mut Value, names: &Names, in_conditions: bool) {
    match v {
        Value::String(s) => {
            if let Some((ns, shown)) = &names.namespace
                && s.contains(ns.as_str())
            {
                *s = replace_name(s, ns, shown);
            }
            for (u, name) in &names.uids {
                if s.contains(u.as_str()) {
                    *s = s.replace(u.as_str(), name);
                }
            }
            for (n, name) in names.generated.iter().chain(&names.ids) {
                if s.contains(n.as_str()) {
                    *s = replace_name(s, n, name);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| walk(x, names, in_conditions)),
        Value::Object(o) => {
            if in_conditions {
                for t in CONDITION_TIMES {
                    o.remove(*t);
                }
            }
            for (k, x) in o.iter_mut() {
                walk(x, names, k == "conditions");
            }
        }
        _ => {}
    }
}

/// `s` with the case namespace `ns` named as `shown` wherever it stands alone (a request path
/// of a case on a real server).
pub(crate) fn rename_namespace(s: &str, ns: &str, shown: &str) -> String {
    replace_name(s, ns, shown)
}

/// The objects of `snap` whose owner (a compared kind, in their namespace) is not in it: on a
/// real server, children the garbage collector has yet to delete.
pub(crate) fn orphans(snap: &Snapshot, listed: &[Listed]) -> Vec<String> {
    let mut out = Vec::new();
    for (key, v) in snap {
        let ns = v["metadata"]["namespace"].as_str();
        for r in v["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let (Some(kind), Some(name)) = (r["kind"].as_str(), r["name"].as_str()) else {
                continue;
            };
            let Some((ar, namespaced)) = listed.iter().find(|(ar, _)| ar.kind == kind) else {
                continue;
            };
            let owner = match (ns, namespaced) {
                (Some(ns), true) => format!("{}/{ns}/{name}", ar.plural),
                _ => format!("{}/{name}", ar.plural),
            };
            // A generated owner name is keyed by identity, not name: not looked up.
            if !name.contains(GENERATED) && !snap.contains_key(&owner) {
                out.push(key.clone());
            }
        }
    }
    out
}

/// `s` with every occurrence of the object name `name` that stands alone (not inside a longer
/// name: the characters around it are not `[a-z0-9-]`) replaced by `with`.
fn replace_name(s: &str, name: &str, with: &str) -> String {
    let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(name) {
        let before = match i {
            0 => out.chars().next_back(),
            _ => rest[..i].chars().next_back(),
        };
        let after = rest[i + name.len()..].chars().next();
        out.push_str(&rest[..i]);
        if part(before) || part(after) {
            out.push_str(name);
        } else {
            out.push_str(with);
        }
        rest = &rest[i + name.len()..];
    }
    out.push_str(rest);
    out
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
    // A case rerun alone (its reproduce command) shows the whole diff.
    const MAX: usize = 24;
    if std::env::var_os("STAIRCASE_EXPLORER_CASE").is_none() {
        let more = lines.len().saturating_sub(MAX);
        lines.truncate(MAX);
        if more > 0 {
            lines.push(format!(
                "… {more} more lines (rerun the case alone to see them all)"
            ));
        }
    }
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case on a real server lives in a namespace of its own: it is named like the
    /// scenario's wherever it stands alone, and nowhere else.
    #[test]
    fn a_case_namespace_is_named_like_the_scenarios() {
        let names = Names {
            namespace: Some(("explorer-1a2b".into(), "default".into())),
            ..Default::default()
        };
        let mut v = serde_json::json!({"kind": "ConfigMap",
            "metadata": {"name": "a-config", "namespace": "explorer-1a2b"},
            "data": {"url": "http://svc.explorer-1a2b.svc", "other": "explorer-1a2bc"}});
        normalize(&mut v, &names, &CompareConfig::default());
        assert_eq!(v["metadata"]["namespace"], "default");
        assert_eq!(v["data"]["url"], "http://svc.default.svc");
        assert_eq!(v["data"]["other"], "explorer-1a2bc");
        assert_eq!(
            rename_namespace(
                "/api/v1/namespaces/explorer-1a2b/secrets",
                "explorer-1a2b",
                "default"
            ),
            "/api/v1/namespaces/default/secrets"
        );
    }

    /// A child whose owner is gone is one the garbage collector has yet to delete.
    #[test]
    fn children_of_a_missing_owner_are_orphans() {
        let foo = ApiResource {
            group: "demo.staircase.rs".into(),
            version: "v1".into(),
            api_version: "demo.staircase.rs/v1".into(),
            kind: "Foo".into(),
            plural: "foos".into(),
        };
        let child = serde_json::json!({"kind": "Secret", "metadata": {"name": "a-token",
            "namespace": "default", "ownerReferences": [{"kind": "Foo", "name": "a"}]}});
        let mut snap = Snapshot::from([("secrets/default/a-token".to_string(), child)]);
        let listed = [(foo, true)];
        assert_eq!(orphans(&snap, &listed), ["secrets/default/a-token"]);
        snap.insert("foos/default/a".into(), serde_json::json!({"kind": "Foo"}));
        assert!(orphans(&snap, &listed).is_empty());
    }

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert!(base64_decode("a").is_none());
    }

    #[test]
    fn volatile_fields_and_condition_times_are_ignored_but_values_are_not() {
        let cfg = CompareConfig::default();
        let names = Names {
            uids: BTreeMap::from([("u-1".to_string(), "<uid of x>".to_string())]),
            ..Default::default()
        };
        let mut a = serde_json::json!({"kind": "Foo", "metadata": {"name": "x", "uid": "u-1", "resourceVersion": "5",
            "ownerReferences": [{"name": "o", "uid": "u-9"}]},
            "status": {"conditions": [{"type": "Ready", "lastTransitionTime": "t1"}], "token": "tok-u-1"}});
        let mut b = a.clone();
        b["metadata"]["resourceVersion"] = "9".into();
        b["status"]["conditions"][0]["lastTransitionTime"] = "t2".into();
        normalize(&mut a, &names, &cfg);
        normalize(&mut b, &names, &cfg);
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

    #[test]
    fn paths_name_dotted_keys_in_brackets_or_with_escaped_dots() {
        assert_eq!(path_segments("status.lastSync"), ["status", "lastSync"]);
        let want = ["metadata", "annotations", "staircase.rs/applied-hash"];
        assert_eq!(
            path_segments(r#"metadata.annotations["staircase.rs/applied-hash"]"#),
            want
        );
        assert_eq!(
            path_segments("metadata.annotations['staircase.rs/applied-hash']"),
            want
        );
        assert_eq!(
            path_segments(r"metadata.annotations.staircase\.rs/applied-hash"),
            want
        );
        assert_eq!(path_segments(r#"a["b.c"].d"#), ["a", "b.c", "d"]);
        let mut v =
            serde_json::json!({"metadata": {"annotations": {"x.io/a": "1", "x": {"io/a": "2"}}}});
        remove_path(&mut v, r#"metadata.annotations["x.io/a"]"#);
        assert_eq!(
            v["metadata"]["annotations"],
            serde_json::json!({"x": {"io/a": "2"}})
        );
    }

    /// Two cases whose children were applied from the same configuration (up to the parent's
    /// uid) compare equal although the hashes differ; a different configuration shows.
    #[test]
    fn applied_hashes_are_named_by_the_configuration_they_hash() {
        let cfg = CompareConfig::default();
        let child = |uid: &str, hash: &str| {
            serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "c", "uid": format!("c-{uid}"),
                "labels": {"staircase.rs/owner-uid": uid},
                "ownerReferences": [{"name": "p", "uid": uid}],
                "annotations": {APPLIED_HASH_ANNOTATION: hash}}, "data": {"m": "hi"}})
        };
        let applied = |uid: &str, hash: &str, m: &str| {
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
                "labels": {"staircase.rs/owner-uid": uid},
                "ownerReferences": [{"name": "p", "uid": uid}],
                "annotations": {APPLIED_HASH_ANNOTATION: hash}}, "data": {"m": m}})
        };
        let case = |uid: &str, hash: &str, m: &str| {
            let names = Names {
                uids: BTreeMap::from([(uid.to_string(), "<uid of p>".to_string())]),
                applied: BTreeMap::from([(hash.to_string(), applied(uid, hash, m))]),
                ..Default::default()
            };
            let mut v = child(uid, hash);
            normalize(&mut v, &names, &cfg);
            v
        };
        let reference = case("u-1", "h1", "hi");
        assert_eq!(reference, case("u-2", "h2", "hi"));
        assert_eq!(
            reference["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]["metadata"]["labels"]["staircase.rs/owner-uid"],
            "<uid of p>"
        );
        assert_ne!(reference, case("u-2", "h2", "bye"));
        // Ignoring the annotation by name removes it whatever it holds.
        let cfg = CompareConfig {
            ignore: vec![format!(
                "metadata.annotations[\"{APPLIED_HASH_ANNOTATION}\"]"
            )],
            ..Default::default()
        };
        let mut v = child("u-1", "h1");
        normalize(&mut v, &Names::default(), &cfg);
        assert!(
            v["metadata"]
                .get("annotations")
                .unwrap()
                .as_object()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn record_ids_are_named_by_key_whatever_the_order_of_creation() {
        let snapshot = |keys: [&str; 2]| {
            let svc = ExternalService::new("tracker");
            for k in keys {
                futures::executor::block_on(svc.create(k, serde_json::json!({"k": k}))).unwrap();
            }
            let mut names = Names::default();
            name_ids(&svc, &mut names);
            // A value that holds another record's id, as a step may store it.
            let mut status = serde_json::json!({"first": "tracker-1", "tenth": "tracker-10"});
            walk(&mut status, &names, false);
            // A snapshot is a map: the records' order is not compared.
            let records: BTreeMap<String, Value> =
                external_records(&svc, &CompareConfig::default(), &names)
                    .into_iter()
                    .collect();
            (records, status)
        };
        let (a, status) = snapshot(["a", "b"]);
        let (b, _) = snapshot(["b", "a"]);
        assert_eq!(a, b);
        assert_eq!(a["external/tracker/a"]["id"], "<id of external/tracker/a>");
        // Named where it stands alone, not inside a longer id.
        assert_eq!(
            status,
            serde_json::json!({"first": "<id of external/tracker/a>", "tenth": "tracker-10"})
        );
    }

    #[test]
    fn external_records_name_uids_in_keys_and_values_and_obey_ignore_field() {
        let svc = ExternalService::new("orders");
        let names = Names {
            uids: BTreeMap::from([("u-1".to_string(), "<uid of orders/default/o>".to_string())]),
            ..Default::default()
        };
        futures::executor::block_on(svc.create(
            "u-1.place_order",
            serde_json::json!({"for": "u-1", "placedAt": "12:00"}),
        ))
        .unwrap();
        let cfg = CompareConfig {
            ignore: vec!["value.placedAt".into()],
            ..Default::default()
        };
        assert_eq!(
            external_records(&svc, &cfg, &names),
            [(
                "external/orders/<uid of orders/default/o>.place_order".to_string(),
                serde_json::json!({"id": "orders-1", "value": {"for": "<uid of orders/default/o>"}})
            )]
        );
    }
}
