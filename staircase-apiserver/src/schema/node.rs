//! Read-only accessors over a raw `openAPIV3Schema` node.
//!
//! The schema arrives as JSON straight from the CRD; reading it in place avoids a second
//! model of JSONSchemaProps that would have to be kept in sync with the API.

use serde_json::{Map, Value};

/// Top-level keys the server owns; never pruned, defaulted or validated here.
pub(super) const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

pub(super) fn is_meta(key: &str) -> bool {
    META_FIELDS.contains(&key)
}

fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// The `type` list as kube-apiserver sees it: `x-kubernetes-int-or-string` becomes
/// `["integer", "string"]`, which also drives the "must be of type integer,string" wording.
pub(super) fn types(s: &Value) -> Vec<&str> {
    if flag(s, "x-kubernetes-int-or-string") {
        return vec!["integer", "string"];
    }
    match s.get("type") {
        Some(Value::String(t)) if !t.is_empty() => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

pub(super) fn nullable(s: &Value) -> bool {
    flag(s, "nullable")
}

pub(super) fn preserve_unknown(s: &Value) -> bool {
    flag(s, "x-kubernetes-preserve-unknown-fields")
}

pub(super) fn embedded(s: &Value) -> bool {
    flag(s, "x-kubernetes-embedded-resource")
}

pub(super) fn properties(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

pub(super) fn property<'a>(s: &'a Value, key: &str) -> Option<&'a Value> {
    properties(s).and_then(|p| p.get(key))
}

/// `additionalProperties`, distinguishing "absent" from `true`/`false` from a schema.
pub(super) enum Additional<'a> {
    Bool(bool),
    Schema(&'a Value),
}

impl<'a> Additional<'a> {
    pub(super) fn schema(&self) -> Option<&'a Value> {
        match self {
            Additional::Schema(s) => Some(s),
            Additional::Bool(_) => None,
        }
    }
}

pub(super) fn additional(s: &Value) -> Option<Additional<'_>> {
    match s.get("additionalProperties")? {
        Value::Bool(b) => Some(Additional::Bool(*b)),
        v @ Value::Object(_) => Some(Additional::Schema(v)),
        _ => None,
    }
}

/// The schema governing `key` in an object: its property, else `additionalProperties`.
pub(super) fn field_schema<'a>(s: &'a Value, key: &str) -> Option<&'a Value> {
    property(s, key).or_else(|| additional(s).and_then(|a| a.schema()))
}

/// `items` as a single schema; tuple-form `items` is not structural and is ignored.
pub(super) fn items(s: &Value) -> Option<&Value> {
    s.get("items").filter(|i| i.is_object())
}

/// A `default` the server would apply; `default: null` counts as none, as in Go.
pub(super) fn default(s: &Value) -> Option<&Value> {
    s.get("default").filter(|d| !d.is_null())
}

pub(super) fn str_field<'a>(s: &'a Value, key: &str) -> &'a str {
    s.get(key).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn f64_field(s: &Value, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

/// Non-negative integer keywords (`maxLength`, `minItems`, …); Go holds them as `int64`.
pub(super) fn i64_field(s: &Value, key: &str) -> Option<i64> {
    let v = s.get(key)?;
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

pub(super) fn list<'a>(s: &'a Value, key: &str) -> &'a [Value] {
    s.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}
