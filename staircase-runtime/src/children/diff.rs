//! Does the live object already carry everything the parent wants? Answered without a write: the
//! desired configuration must be *contained* in the live object. Fields the configuration does not
//! mention (defaults, other managers' fields, status) do not count as drift.

use serde_json::Value;

/// Keys that identify an item of a list of objects, in the order server-side apply's merge keys
/// of the built-in kinds use them (containers and env by `name`, ports by their port, volume
/// mounts by path, owner references by uid). Items whose desired form has none of these are
/// compared by position.
const ITEM_KEYS: [&str; 6] = [
    "name",
    "uid",
    "containerPort",
    "port",
    "mountPath",
    "devicePath",
];

/// The path of the first field where `live` does not contain `desired`, or `None` when it does.
pub fn first_difference(desired: &Value, live: &Value) -> Option<String> {
    diff(desired, live, &mut String::new())
}

/// [`first_difference`] of the fields of an object, the live side given field by field (the
/// children step compares a live object without first turning it into one JSON value).
pub(crate) fn first_field_difference<'a>(
    want: impl IntoIterator<Item = (&'a String, &'a Value)>,
    have: impl Fn(&str) -> Option<&'a Value>,
) -> Option<String> {
    fields(want, have, &mut String::new())
}

fn fields<'a>(
    want: impl IntoIterator<Item = (&'a String, &'a Value)>,
    have: impl Fn(&str) -> Option<&'a Value>,
    path: &mut String,
) -> Option<String> {
    for (k, v) in want {
        let len = path.len();
        path.push('.');
        path.push_str(k);
        let found = match have(k) {
            Some(h) => diff(v, h, path),
            // An explicit null or empty value asks for "absent", which is what the server
            // stores it as.
            None if is_empty(v) => None,
            None => Some(path.clone()),
        };
        path.truncate(len);
        if found.is_some() {
            return found;
        }
    }
    None
}

fn diff(desired: &Value, live: &Value, path: &mut String) -> Option<String> {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => fields(want, |k| have.get(k), path),
        (Value::Array(want), Value::Array(have)) => list_diff(want, have, path),
        (Value::Number(a), Value::Number(b)) => (a.as_f64() != b.as_f64()).then(|| path.clone()),
        (w, Value::Null) if is_empty(w) => None,
        (w, h) => (w != h).then(|| path.clone()),
    }
}

fn list_diff(want: &[Value], have: &[Value], path: &mut String) -> Option<String> {
    let key = want
        .first()
        .and_then(Value::as_object)
        .and_then(|o| ITEM_KEYS.iter().find(|k| o.contains_key(**k)));
    match key {
        // Keyed: each desired item must be contained in the live item with the same key; live
        // items nobody asked for (a sidecar someone injected) are not ours to judge.
        Some(k) => want.iter().find_map(|w| {
            let len = path.len();
            path.push_str(&format!(
                "[{k}={}]",
                w.get(*k).map(Value::to_string).unwrap_or_default()
            ));
            let found = match have.iter().find(|h| h.get(*k) == w.get(*k)) {
                Some(h) => diff(w, h, path),
                None => Some(path.clone()),
            };
            path.truncate(len);
            found
        }),
        None if want.len() != have.len() => Some(path.clone()),
        None => want.iter().zip(have).enumerate().find_map(|(i, (w, h))| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = diff(w, h, path);
            path.truncate(len);
            found
        }),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_live_fields_and_items_are_not_drift() {
        let want = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "a:1"}]}}}});
        let live = json!({"spec": {"replicas": 2, "paused": false, "template": {"spec": {"containers": [
            {"name": "sidecar", "image": "s"},
            {"name": "app", "image": "a:1", "imagePullPolicy": "IfNotPresent"}]}}}, "status": {"x": 1}});
        assert_eq!(first_difference(&want, &live), None);
    }

    #[test]
    fn a_changed_or_missing_field_is_reported_with_its_path() {
        let want = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "a:2"}]}}}});
        let live = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "a:1"}]}}}});
        assert_eq!(
            first_difference(&want, &live).as_deref(),
            Some(".spec.template.spec.containers[name=\"app\"].image")
        );
        let want = json!({"data": {"k": "v"}});
        assert_eq!(
            first_difference(&want, &json!({})).as_deref(),
            Some(".data")
        );
        assert_eq!(
            first_difference(&json!({"a": [1, 2]}), &json!({"a": [1]})).as_deref(),
            Some(".a")
        );
        assert_eq!(
            first_difference(&json!({"a": [1, 2]}), &json!({"a": [1, 3]})).as_deref(),
            Some(".a[1]")
        );
    }

    #[test]
    fn empty_values_match_absent_ones_and_numbers_compare_by_value() {
        assert_eq!(
            first_difference(&json!({"a": {}, "b": null, "c": []}), &json!({})),
            None
        );
        assert_eq!(first_difference(&json!({"a": 1}), &json!({"a": 1.0})), None);
    }
}
