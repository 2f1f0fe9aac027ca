//! Object metadata rules: names, labels, server-set fields (uid, timestamps, generation).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::status::Cause;

static DNS1123_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap()
});
static DNS1123_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap());
static QUALIFIED_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").unwrap());
static LABEL_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").unwrap());

/// Which naming rule a resource uses for `metadata.name`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most resources).
    Subdomain,
    /// RFC 1123 label (namespaces, services).
    Label,
}

/// The naming rule for a resource, as kube-apiserver applies it.
pub fn name_rule(group: &str, plural: &str) -> NameRule {
    match (group, plural) {
        ("", "namespaces") | ("", "services") => NameRule::Label,
        _ => NameRule::Subdomain,
    }
}

/// Validates `name`, returning the message kube-apiserver prints after `Invalid value: "x": `.
pub fn validate_name(name: &str, rule: NameRule) -> Option<String> {
    match rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                return Some("must be no more than 253 characters".into());
            }
            if !DNS1123_SUBDOMAIN.is_match(name) {
                return Some("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into());
            }
        }
        NameRule::Label => {
            if name.len() > 63 {
                return Some("must be no more than 63 characters".into());
            }
            if !DNS1123_LABEL.is_match(name) {
                return Some("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into());
            }
        }
    }
    None
}

/// Validates a label or annotation key (`prefix/name`), returning an error message.
pub fn validate_label_key(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty() || p.len() > 253 || !DNS1123_SUBDOMAIN.is_match(p))
    {
        return Some("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into());
    }
    if name.is_empty() || name.len() > 63 || !QUALIFIED_NAME.is_match(name) {
        return Some("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into());
    }
    None
}

fn invalid(field: &str, value: &str, msg: String) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {}: {msg}", Value::String(value.into())),
        field: field.into(),
    }
}

/// Validates the client-controlled parts of `metadata`: name, labels, annotations, finalizers.
pub fn validate_metadata(obj: &Value, rule: NameRule) -> Vec<Cause> {
    let mut causes = vec![];
    let meta = obj.get("metadata");
    match meta.and_then(|m| m.get("name")).and_then(Value::as_str) {
        Some(n) if !n.is_empty() => {
            if let Some(m) = validate_name(n, rule) {
                causes.push(invalid("metadata.name", n, m));
            }
        }
        _ => causes.push(Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value: name or generateName is required".into(),
            field: "metadata.name".into(),
        }),
    }
    if let Some(labels) = meta.and_then(|m| m.get("labels")) {
        match labels.as_object() {
            Some(l) => {
                for (k, v) in l {
                    if let Some(m) = validate_label_key(k) {
                        causes.push(invalid("metadata.labels", k, m));
                    }
                    match v.as_str() {
                        Some(s) if s.len() <= 63 && LABEL_VALUE.is_match(s) => {}
                        Some(s) => causes.push(invalid(
                            "metadata.labels",
                            s,
                            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into(),
                        )),
                        None => causes.push(invalid("metadata.labels", k, "label values must be strings".into())),
                    }
                }
            }
            None if labels.is_null() => {}
            None => causes.push(invalid("metadata.labels", "", "must be an object".into())),
        }
    }
    if let Some(ann) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        for (k, v) in ann {
            if let Some(m) = validate_label_key(&k.to_lowercase()) {
                causes.push(invalid("metadata.annotations", k, m));
            }
            if !v.is_string() {
                causes.push(invalid(
                    "metadata.annotations",
                    k,
                    "annotation values must be strings".into(),
                ));
            }
        }
    }
    if let Some(f) = meta
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
    {
        for v in f {
            match v.as_str() {
                Some(s) if !s.contains('/') && !s.is_empty() && !is_standard_finalizer(s) => {
                    // The real server only warns about unqualified finalizer names.
                }
                Some(s) if !s.is_empty() => {}
                _ => causes.push(invalid(
                    "metadata.finalizers",
                    &v.to_string(),
                    "must be a non-empty string".into(),
                )),
            }
        }
    }
    causes
}

fn is_standard_finalizer(s: &str) -> bool {
    matches!(s, "kubernetes" | "orphan" | "foregroundDeletion")
}

/// Now in RFC 3339 with second precision, as every Kubernetes timestamp.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A fresh object UID.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The 5-character `[a-z0-9]` suffix appended to `generateName`, from the same alphabet as the
/// real server (which omits vowels and look-alike characters to avoid words).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// `metadata.name` of an object, or "".
pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.uid` of an object, or "".
pub fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Mutable `metadata`, creating it when absent.
pub fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Default::default());
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// Whether the resource has `metadata.generation` at all. kube-apiserver sets it (to 1 on
/// create, bumped by [`spec_changed`]) only in the strategies of kinds with a desired state:
/// workloads (`apps`, `batch`), CustomResourceDefinitions and custom resources. ConfigMaps,
/// Secrets, Services, ServiceAccounts, Namespaces, Events, Leases and (before 1.33) Pods have
/// none.
pub fn tracks_generation(rt: &crate::registry::ResourceType) -> bool {
    rt.custom
        || matches!(
            (rt.group.as_str(), rt.plural.as_str()),
            ("apps" | "batch", _) | ("apiextensions.k8s.io", "customresourcedefinitions")
        )
}

/// Whether anything outside `metadata` (and `status`, when it is a subresource) differs:
/// the rule for bumping `metadata.generation`.
pub fn spec_changed(old: &Value, new: &Value, status_subresource: bool) -> bool {
    let skip = |k: &str| k == "metadata" || (status_subresource && k == "status");
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    o.iter()
        .filter(|(k, _)| !skip(k))
        .any(|(k, v)| n.get(k) != Some(v))
        || n.iter()
            .filter(|(k, _)| !skip(k))
            .any(|(k, _)| !o.contains_key(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(validate_name("a.b-c", NameRule::Subdomain).is_none());
        assert!(validate_name("a.b", NameRule::Label).is_some());
        assert!(validate_name("Bad", NameRule::Subdomain).is_some());
        assert_eq!(random_suffix().len(), 5);
    }

    #[test]
    fn generation_rule() {
        let a = json!({"metadata": {"labels": {}}, "spec": {"x": 1}, "status": {"y": 1}});
        let mut b = a.clone();
        b["status"]["y"] = 2.into();
        assert!(!spec_changed(&a, &b, true));
        assert!(spec_changed(&a, &b, false));
        b["spec"]["x"] = 2.into();
        assert!(spec_changed(&a, &b, true));
    }
}
