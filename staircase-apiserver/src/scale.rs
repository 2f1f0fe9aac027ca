//! The `/scale` subresource: an `autoscaling/v1` `Scale` view of the replica count of
//! Deployments, ReplicaSets and StatefulSets, and of custom resources whose CRD version declares
//! `subresources.scale`. Reading it shows the object's replicas and selector; writing it (PUT,
//! or a merge or JSON patch of the view, what `kubectl scale` sends) changes the object's
//! replicas as an update of the object itself.

use serde_json::{Value, json};

use crate::registry::ResourceType;
use crate::status::{ApiError, ApiResult, Cause};

/// Where a kind keeps what `/scale` shows: JSON pointers into the object.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    /// The desired replicas, e.g. `/spec/replicas`.
    pub spec_replicas: String,
    /// The observed replicas, e.g. `/status/replicas`.
    pub status_replicas: String,
    /// The label selector: a `LabelSelector` object for built-in kinds, a string for CRDs.
    pub selector: Option<String>,
}

impl ScalePaths {
    /// The paths of the built-in workloads.
    pub(crate) fn workload() -> Self {
        ScalePaths {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            selector: Some("/spec/selector".into()),
        }
    }

    /// A CRD version's `subresources.scale` (`.spec.replicas`-style paths).
    pub(crate) fn of_crd(scale: &Value) -> Option<Self> {
        let pointer = |field: &str| {
            scale
                .get(field)
                .and_then(Value::as_str)
                .map(|p| p.replace('.', "/"))
        };
        Some(ScalePaths {
            spec_replicas: pointer("specReplicasPath")?,
            status_replicas: pointer("statusReplicasPath")?,
            selector: pointer("labelSelectorPath"),
        })
    }
}

/// The `Scale` of an object.
pub(crate) fn view(paths: &ScalePaths, obj: &Value) -> Value {
    let int = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let m = &obj["metadata"];
    let mut meta = json!({});
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(k) {
            meta[k] = v.clone();
        }
    }
    let mut status = json!({"replicas": int(&paths.status_replicas)});
    let selector = paths.selector.as_deref().and_then(|p| obj.pointer(p));
    match selector {
        Some(Value::String(s)) => status["selector"] = s.clone().into(),
        Some(sel @ Value::Object(_)) => status["selector"] = selector_string(sel).into(),
        _ => {}
    }
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
        "spec": {"replicas": int(&paths.spec_replicas)}, "status": status
    })
}

/// The object with the replicas a written `Scale` asks for. A `resourceVersion` in the `Scale`
/// must be the object's (409 otherwise), as for any update.
pub(crate) fn apply(
    paths: &ScalePaths,
    rt: &ResourceType,
    obj: &Value,
    scale: &Value,
) -> ApiResult<Value> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let replicas = match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "Scale.autoscaling {name:?}: spec.replicas must be an integer"
            ))
        })?,
    };
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                field: "spec.replicas".into(),
            }],
        ));
    }
    let rv = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    if rv.is_some_and(|rv| {
        !rv.is_empty()
            && Some(rv)
                != obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
    }) {
        return Err(ApiError::conflict(&rt.group, &rt.plural, name));
    }
    let mut new = obj.clone();
    set(&mut new, &paths.spec_replicas, replicas.into());
    Ok(new)
}

/// Sets the value at a JSON pointer, creating objects on the way.
fn set(obj: &mut Value, pointer: &str, value: Value) {
    let mut cur = obj;
    let mut parts = pointer.split('/').filter(|s| !s.is_empty()).peekable();
    while let Some(part) = parts.next() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let map = cur.as_object_mut().expect("an object");
        if parts.peek().is_none() {
            map.insert(part.into(), value);
            return;
        }
        cur = map.entry(part).or_insert_with(|| json!({}));
    }
}

/// A `LabelSelector` as a selector string (`app=d,tier in (a,b)`), as `metav1.FormatLabelSelector`
/// prints it.
fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_seen_and_written_through_its_scale() {
        let d = json!({
            "metadata": {"name": "d", "namespace": "n", "resourceVersion": "7", "labels": {"x": "y"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 1}
        });
        let paths = ScalePaths::workload();
        let v = view(&paths, &d);
        assert_eq!(v["spec"]["replicas"], 2);
        assert_eq!(
            v["status"],
            json!({"replicas": 1, "selector": "app=d,tier in (a,b)"})
        );
        assert_eq!(
            v["metadata"],
            json!({"name": "d", "namespace": "n", "resourceVersion": "7"})
        );
        let rt = crate::registry::Registry::with_builtins()
            .get("apps", "v1", "deployments")
            .unwrap();
        let scaled = apply(&paths, &rt, &d, &json!({"spec": {"replicas": 5}})).unwrap();
        assert_eq!(scaled["spec"]["replicas"], 5);
        let stale = json!({"metadata": {"resourceVersion": "6"}, "spec": {"replicas": 5}});
        assert_eq!(apply(&paths, &rt, &d, &stale).unwrap_err().code, 409);
        let negative = apply(&paths, &rt, &d, &json!({"spec": {"replicas": -1}})).unwrap_err();
        assert_eq!(negative.code, 422);
    }

    #[test]
    fn crd_paths_become_pointers() {
        let p = ScalePaths::of_crd(&json!({"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size", "labelSelectorPath": ".status.selector"})).unwrap();
        assert_eq!(p.spec_replicas, "/spec/size");
        assert_eq!(p.selector.as_deref(), Some("/status/selector"));
        let mut o = json!({});
        set(&mut o, &p.spec_replicas, 3.into());
        assert_eq!(o, json!({"spec": {"size": 3}}));
    }
}
