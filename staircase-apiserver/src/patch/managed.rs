//! Field sets as server-side apply tracks them, and their `FieldsV1` / `managedFields` encoding.
//!
//! A path is a list of elements in their FieldsV1 spelling: `f:<field>`, `k:<key json>` for an
//! associative list item, `v:<json>` for a set item, `i:<index>` for a positional item. A set holds
//! the paths a manager owns; a path whose node also has children is encoded with a `.` member.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::fields::KeyField;

pub(crate) type Path = Vec<String>;
pub(crate) type FieldSet = BTreeSet<Path>;

pub(crate) fn field(name: &str) -> String {
    format!("f:{name}")
}

pub(crate) fn set_item(value: &Value) -> String {
    format!("v:{value}")
}

/// The `k:` element of an associative list item, or `None` if it lacks a key without default.
/// Keys are written sorted by name, as the API server does, so equal keys compare equal.
pub(crate) fn key_item(item: &Value, keys: &[KeyField]) -> Option<String> {
    let obj = item.as_object()?;
    let mut pairs = keys
        .iter()
        .map(|k| {
            Some((
                k.name.as_str(),
                obj.get(&k.name)
                    .filter(|v| !v.is_null())
                    .or(k.default.as_ref())?,
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    pairs.sort_by_key(|(name, _)| *name);
    let body = pairs
        .iter()
        .map(|(name, v)| format!("{}:{v}", Value::from(*name)))
        .collect::<Vec<_>>()
        .join(",");
    Some(format!("k:{{{body}}}"))
}

/// Encodes a set as a `fieldsV1` object.
pub(crate) fn encode(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        node_mut(&mut root, path);
    }
    for path in set {
        let node = node_mut(&mut root, path);
        if !node.is_empty() {
            node.insert(".".into(), Value::Object(Map::new()));
        }
    }
    Value::Object(root)
}

fn node_mut<'m>(root: &'m mut Map<String, Value>, path: &Path) -> &'m mut Map<String, Value> {
    path.iter().fold(root, |node, element| {
        node.entry(element.clone())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("field set nodes are objects")
    })
}

/// Decodes a `fieldsV1` object; anything that is not an object decodes to the empty set.
pub(crate) fn decode(fields: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    decode_into(fields, &mut Vec::new(), &mut set);
    set
}

fn decode_into(node: &Value, path: &mut Path, set: &mut FieldSet) {
    let Some(children) = node.as_object() else {
        return;
    };
    for (element, child) in children {
        if element == "." {
            set.insert(path.clone());
            continue;
        }
        path.push(element.clone());
        if child.as_object().is_some_and(|c| !c.is_empty()) {
            decode_into(child, path, set);
        } else {
            set.insert(path.clone());
        }
        path.pop();
    }
}

/// A path as kube-apiserver prints it in conflicts: `.spec.containers[name="nginx"].image`.
pub(crate) fn display(path: &Path) -> String {
    let mut out = String::new();
    for element in path {
        let (kind, rest) = element.split_at(2.min(element.len()));
        match kind {
            "f:" => {
                out.push('.');
                out.push_str(rest);
            }
            "k:" => {
                let keys = serde_json::from_str::<Map<String, Value>>(rest).unwrap_or_default();
                let parts = keys
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            "v:" => out.push_str(&format!("[={rest}]")),
            "i:" => out.push_str(&format!("[{rest}]")),
            _ => out.push_str(element),
        }
    }
    out
}

/// One `managedFields` entry with its set decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub set: FieldSet,
}

impl Entry {
    /// Whether this entry is the one `manager` writes with `operation`: Update entries are also
    /// per API version, as in kube-apiserver, so an updater switching versions gets a new entry.
    pub fn is(&self, manager: &str, operation: &str, api_version: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.is_none()
            && (operation == "Apply" || self.api_version == api_version)
    }
}

fn str_field(entry: &Value, name: &str) -> Option<String> {
    entry.get(name).and_then(Value::as_str).map(str::to_string)
}

/// The entries recorded on `object`; malformed entries decode leniently rather than failing a write.
pub(crate) fn read_entries(object: &Value) -> Vec<Entry> {
    let Some(items) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    items
        .iter()
        .map(|e| Entry {
            manager: str_field(e, "manager").unwrap_or_default(),
            operation: str_field(e, "operation").unwrap_or_else(|| "Update".into()),
            api_version: str_field(e, "apiVersion").unwrap_or_default(),
            time: str_field(e, "time"),
            subresource: str_field(e, "subresource").filter(|s| !s.is_empty()),
            set: e.get("fieldsV1").map(decode).unwrap_or_default(),
        })
        .collect()
}

/// Writes `entries` to `metadata.managedFields` in kube's order (Apply before Update, then by
/// time, manager, version), dropping empty ones and the key itself when none remain.
pub(crate) fn write_entries(object: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    let metadata = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        metadata.remove("managedFields");
        return;
    }
    let encoded = entries
        .into_iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), e.manager.into());
            m.insert("operation".into(), e.operation.into());
            m.insert("apiVersion".into(), e.api_version.into());
            if let Some(t) = e.time {
                m.insert("time".into(), t.into());
            }
            m.insert("fieldsType".into(), "FieldsV1".into());
            m.insert("fieldsV1".into(), encode(&e.set));
            if let Some(s) = e.subresource {
                m.insert("subresource".into(), s.into());
            }
            Value::Object(m)
        })
        .collect();
    metadata.insert("managedFields".into(), Value::Array(encoded));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(elements: &[&str]) -> Path {
        elements.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn encode_decode_round_trip_with_dot_members() {
        let set: FieldSet = [
            p(&["f:metadata", "f:labels"]),
            p(&["f:metadata", "f:labels", "f:app"]),
            p(&["f:spec", "f:containers", r#"k:{"name":"nginx"}"#]),
            p(&["f:spec", "f:containers", r#"k:{"name":"nginx"}"#, "f:image"]),
            p(&["f:spec", "f:replicas"]),
        ]
        .into();
        let encoded = encode(&set);
        assert_eq!(
            encoded,
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                   "f:spec": {"f:containers": {r#"k:{"name":"nginx"}"#: {".": {}, "f:image": {}}}, "f:replicas": {}}})
        );
        assert_eq!(decode(&encoded), set);
    }

    #[test]
    fn key_items_sort_and_default() {
        let keys = [
            KeyField {
                name: "protocol".into(),
                default: Some("TCP".into()),
            },
            KeyField {
                name: "containerPort".into(),
                default: None,
            },
        ];
        assert_eq!(
            key_item(&json!({"containerPort": 80}), &keys).unwrap(),
            r#"k:{"containerPort":80,"protocol":"TCP"}"#
        );
        assert_eq!(key_item(&json!({"protocol": "UDP"}), &keys), None);
    }

    #[test]
    fn display_like_kube() {
        assert_eq!(display(&p(&["f:spec", "f:replicas"])), ".spec.replicas");
        assert_eq!(
            display(&p(&[
                "f:spec",
                "f:containers",
                r#"k:{"name":"nginx"}"#,
                "f:image"
            ])),
            r#".spec.containers[name="nginx"].image"#
        );
        assert_eq!(
            display(&p(&[
                "f:spec",
                "f:ports",
                r#"k:{"port":80,"protocol":"TCP"}"#
            ])),
            r#".spec.ports[port=80,protocol="TCP"]"#
        );
        assert_eq!(
            display(&p(&["f:metadata", "f:finalizers", r#"v:"a""#])),
            r#".metadata.finalizers[="a"]"#
        );
    }
}
