//! Strategic merge patch, as kube-apiserver applies it to built-in kinds.

use serde_json::{Map, Value};

use super::PatchError;
use super::fields::{ListType, Schema};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Applies a Kubernetes strategic merge patch to a copy of `target`.
///
/// `kind` is `group/version/Kind` with an empty group for core (`"/v1/Pod"`,
/// `"apps/v1/Deployment"`). Maps merge recursively and `null` deletes; lists with a patch merge
/// key (containers by `name`, container ports by `containerPort`, ...) merge item by item;
/// `metadata.finalizers` merges as a set; other lists are replaced. The directives `$patch`
/// (`replace`, `delete`, `merge`), `$retainKeys`, `$deleteFromPrimitiveList/<field>` and
/// `$setElementOrder/<field>` are honoured.
///
/// Kinds outside the built-in table (custom resources) get [`PatchError::UnsupportedMediaType`],
/// as strategic merge patch needs Go struct tags a CRD does not have. A malformed patch is
/// [`PatchError::BadRequest`].
pub fn strategic_merge_patch(
    target: &Value,
    patch: &Value,
    kind: &str,
) -> Result<Value, PatchError> {
    let schema = Schema::for_kind(kind, None);
    if !schema.is_builtin() {
        return Err(PatchError::UnsupportedMediaType(
            "strategic merge patch is not supported for custom resources; use merge or json patch"
                .into(),
        ));
    }
    let patch = patch
        .as_object()
        .ok_or_else(|| bad("strategic merge patch must be a JSON object".into()))?;
    let mut doc = match target {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let mut path = Vec::new();
    match merge_map(&mut doc, patch, &schema, &mut path)? {
        MapOutcome::Keep => Ok(Value::Object(doc)),
        MapOutcome::Delete => Ok(Value::Object(Map::new())),
    }
}

fn bad(msg: String) -> PatchError {
    PatchError::BadRequest(msg)
}

fn dotted(path: &[&str]) -> String {
    path.join(".")
}

/// `$patch: delete` on a map removes the map from its parent, which only the parent can do.
enum MapOutcome {
    Keep,
    Delete,
}

fn merge_map<'p>(
    original: &mut Map<String, Value>,
    patch: &'p Map<String, Value>,
    schema: &Schema,
    path: &mut Vec<&'p str>,
) -> Result<MapOutcome, PatchError> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "delete" => return Ok(MapOutcome::Delete),
        Some(Value::String(d)) if d == "replace" => {
            // Building from empty still honours directives and nulls nested in the replacement.
            original.clear();
        }
        Some(other) => {
            return Err(bad(format!(
                "unknown $patch directive {other} at {}",
                dotted(path)
            )));
        }
    }

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let retain: Vec<&str> = retain
            .as_array()
            .and_then(|items| items.iter().map(Value::as_str).collect())
            .ok_or_else(|| {
                bad(format!(
                    "$retainKeys at {} must be a list of strings",
                    dotted(path)
                ))
            })?;
        for (k, v) in patch {
            if !v.is_null() && !is_directive(k) && !retain.contains(&k.as_str()) {
                return Err(bad(format!(
                    "$retainKeys at {} does not list patched field {k:?}",
                    dotted(path)
                )));
            }
        }
        original.retain(|k, _| retain.contains(&k.as_str()));
    }

    for (k, v) in patch {
        let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) else {
            continue;
        };
        let remove = v
            .as_array()
            .ok_or_else(|| bad(format!("{k} at {} must be a list", dotted(path))))?;
        if let Some(Value::Array(items)) = original.get_mut(field) {
            items.retain(|item| !remove.contains(item));
        }
    }

    for (k, v) in patch {
        if is_directive(k) {
            continue;
        }
        path.push(k);
        merge_field(original, k, v, schema, path)?;
        path.pop();
    }

    for (k, order) in patch {
        let Some(field) = k.strip_prefix(SET_ELEMENT_ORDER) else {
            continue;
        };
        let order = order
            .as_array()
            .ok_or_else(|| bad(format!("{k} at {} must be a list", dotted(path))))?;
        path.push(field);
        let list_type = schema.list_type(path);
        path.pop();
        if let Some(Value::Array(items)) = original.get_mut(field) {
            let key = match &list_type {
                ListType::Map(keys) => Some(keys[0].name.as_str()),
                ListType::Set => None,
                // An order for a list that is replaced anyway has nothing to reorder.
                ListType::Atomic => continue,
            };
            let order_ids = order.iter().map(|o| identity(o, key)).collect::<Vec<_>>();
            let server_ids = items.iter().map(|i| identity(i, key)).collect::<Vec<_>>();
            *items = normalize_order(std::mem::take(items), key, &order_ids, &server_ids);
        }
    }
    Ok(MapOutcome::Keep)
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
        || key.starts_with(SET_ELEMENT_ORDER)
}

fn merge_field<'p>(
    original: &mut Map<String, Value>,
    key: &str,
    patch: &'p Value,
    schema: &Schema,
    path: &mut Vec<&'p str>,
) -> Result<(), PatchError> {
    match patch {
        Value::Null => {
            original.remove(key);
        }
        Value::Object(patch_map) => {
            let mut child = match original.remove(key) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            if let MapOutcome::Keep = merge_map(&mut child, patch_map, schema, path)? {
                original.insert(key.to_string(), Value::Object(child));
            }
        }
        Value::Array(patch_items) => {
            let current = match original.remove(key) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let merged = match schema.list_type(path) {
                ListType::Atomic => patch_items.clone(),
                ListType::Set => merge_primitive_list(current, patch_items),
                ListType::Map(keys) => {
                    merge_keyed_list(current, patch_items, &keys[0].name, schema, path)?
                }
            };
            original.insert(key.to_string(), Value::Array(merged));
        }
        scalar => {
            original.insert(key.to_string(), scalar.clone());
        }
    }
    Ok(())
}

/// Splits `$patch` elements off a list patch: returns whether the list is to be replaced, and
/// the remaining items.
fn list_directives<'p>(
    patch: &'p [Value],
    key: Option<&str>,
    original: &mut Vec<Value>,
    path: &[&str],
) -> Result<(bool, Vec<&'p Value>), PatchError> {
    let mut replace = false;
    let mut items = Vec::new();
    for item in patch {
        let Some(directive) = item.get(PATCH) else {
            items.push(item);
            continue;
        };
        match directive.as_str() {
            Some("replace") => replace = true,
            Some("delete") => {
                let key = key.ok_or_else(|| {
                    bad(format!(
                        "$patch: delete in list {} without a merge key",
                        dotted(path)
                    ))
                })?;
                let value = item.get(key).ok_or_else(|| {
                    bad(format!(
                        "$patch: delete in list {} lacks merge key {key:?}",
                        dotted(path)
                    ))
                })?;
                original.retain(|o| o.get(key) != Some(value));
            }
            Some("merge") => {
                return Err(bad(format!(
                    "$patch: merge is not supported on list elements ({})",
                    dotted(path)
                )));
            }
            _ => {
                return Err(bad(format!(
                    "unknown $patch directive {directive} in list {}",
                    dotted(path)
                )));
            }
        }
    }
    Ok((replace, items))
}

fn merge_primitive_list(mut original: Vec<Value>, patch: &[Value]) -> Vec<Value> {
    // Primitive lists cannot carry `$patch: delete` (that is what $deleteFromPrimitiveList is
    // for), so the only directive that can appear is `replace`.
    let (replace, items) =
        list_directives(patch, None, &mut original, &[]).unwrap_or((false, patch.iter().collect()));
    if replace {
        original.clear();
    }
    let server_ids = original.clone();
    for item in &items {
        if !original.contains(item) {
            original.push((*item).clone());
        }
    }
    let order: Vec<Value> = items.into_iter().cloned().collect();
    normalize_order(original, None, &order, &server_ids)
}

fn merge_keyed_list<'p>(
    mut original: Vec<Value>,
    patch: &'p [Value],
    key: &str,
    schema: &Schema,
    path: &mut Vec<&'p str>,
) -> Result<Vec<Value>, PatchError> {
    let (replace, items) = list_directives(patch, Some(key), &mut original, path)?;
    if replace {
        original.clear();
    }
    let server_ids = original
        .iter()
        .map(|o| identity(o, Some(key)))
        .collect::<Vec<_>>();
    let mut order = Vec::new();
    for item in items {
        let item_map = item.as_object().ok_or_else(|| {
            bad(format!(
                "list {} merges by {key:?} but has a non-object item {item}",
                dotted(path)
            ))
        })?;
        let id = item_map.get(key).ok_or_else(|| {
            bad(format!(
                "an item of list {} does not contain merge key {key:?}: {item}",
                dotted(path)
            ))
        })?;
        order.push(id.clone());
        let pos = original.iter().position(|o| o.get(key) == Some(id));
        let mut merged = match pos.map(|i| &mut original[i]) {
            Some(Value::Object(m)) => std::mem::take(m),
            _ => Map::new(),
        };
        let keep = matches!(
            merge_map(&mut merged, item_map, schema, path)?,
            MapOutcome::Keep
        );
        match (pos, keep) {
            (Some(i), true) => original[i] = Value::Object(merged),
            (Some(i), false) => {
                original.remove(i);
            }
            (None, true) => original.push(Value::Object(merged)),
            (None, false) => {}
        }
    }
    Ok(normalize_order(original, Some(key), &order, &server_ids))
}

/// The value identifying a list item: its merge key for lists of maps, itself for primitives.
fn identity(item: &Value, key: Option<&str>) -> Value {
    match key {
        Some(k) => item.get(k).cloned().unwrap_or(Value::Null),
        None => item.clone(),
    }
}

/// Orders a merged list like the API server: items named in `order` (the patch list or its
/// `$setElementOrder`) follow that order, items only on the server keep their relative order,
/// and the two runs interleave by position in the original list; an item the server never had
/// goes before any server-only item still pending, as kube's `mergeSortedSlice` does.
fn normalize_order(
    merged: Vec<Value>,
    key: Option<&str>,
    order: &[Value],
    server: &[Value],
) -> Vec<Value> {
    let (mut patched, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| order.contains(&identity(item, key)));
    patched.sort_by_key(|item| order.iter().position(|o| *o == identity(item, key)));
    let server_pos = |item: &Value| server.iter().position(|s| *s == identity(item, key));
    let mut out = Vec::with_capacity(patched.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        patched.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => {
                matches!((server_pos(l), server_pos(r)), (Some(a), Some(b)) if a < b)
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(target: Value, patch: Value, kind: &str) -> Value {
        strategic_merge_patch(&target, &patch, kind).unwrap_or_else(|e| panic!("{patch}: {e:?}"))
    }

    fn pod(containers: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    #[test]
    fn custom_resources_are_unsupported() {
        let e = strategic_merge_patch(&json!({}), &json!({}), "example.com/v1/Widget").unwrap_err();
        assert!(matches!(e, PatchError::UnsupportedMediaType(m) if m.contains("custom resources")));
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let target =
            json!({"metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "data": {"y": "2"}});
        assert_eq!(
            smp(target, patch, "/v1/ConfigMap"),
            json!({"metadata": {"name": "c", "labels": {"b": "2", "c": "3"}}, "data": {"x": "1", "y": "2"}})
        );
    }

    #[test]
    fn containers_merge_by_name() {
        let target = pod(
            json!([{"name": "a", "image": "a:1", "args": ["x", "y"]}, {"name": "b", "image": "b:1"}]),
        );
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}]}});
        let got = smp(target, patch, "/v1/Pod");
        assert_eq!(
            got["spec"]["containers"],
            json!([{"name": "a", "image": "a:1", "args": ["x", "y"]}, {"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}])
        );
    }

    #[test]
    fn args_and_tolerations_replace() {
        let target = json!({"spec": {"containers": [{"name": "a", "args": ["x", "y"]}], "tolerations": [{"key": "k1"}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "args": ["z"]}], "tolerations": [{"key": "k2"}]}});
        let got = smp(target, patch, "/v1/Pod");
        assert_eq!(
            got["spec"]["containers"],
            json!([{"name": "a", "args": ["z"]}])
        );
        assert_eq!(got["spec"]["tolerations"], json!([{"key": "k2"}]));
    }

    #[test]
    fn deployment_env_ports_and_volume_mounts() {
        let target = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "app",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "ports": [{"containerPort": 80}],
            "volumeMounts": [{"mountPath": "/data", "name": "d"}]}]}}}});
        let patch = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app",
            "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}],
            "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}]}}}});
        let got = smp(target, patch, "apps/v1/Deployment");
        let c = &got["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(got["spec"]["replicas"], 3);
        assert_eq!(
            c["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "two"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(
            c["ports"],
            json!([{"containerPort": 80, "name": "http"}, {"containerPort": 443}])
        );
        assert_eq!(
            c["volumeMounts"],
            json!([{"mountPath": "/data", "name": "d", "readOnly": true}])
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        let target = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "x"}}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}});
        let got = smp(target, patch, "/v1/Service");
        assert_eq!(
            got["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
        assert_eq!(got["spec"]["selector"], json!({"app": "x"}));
    }

    #[test]
    fn status_conditions_merge_by_type() {
        let target = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Scheduled", "status": "True"}]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let got = smp(target, patch, "/v1/Pod");
        assert_eq!(
            got["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "Scheduled", "status": "True"}])
        );
    }

    #[test]
    fn finalizers_merge_as_set_and_delete_from_primitive_list() {
        let target = json!({"metadata": {"finalizers": ["a", "b"]}});
        let got = smp(
            target.clone(),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
            "/v1/ConfigMap",
        );
        assert_eq!(got["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let got = smp(
            target,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            "/v1/Secret",
        );
        assert_eq!(got["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let target = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}});
        let got = smp(
            target,
            json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}),
            "apps/v1/ReplicaSet",
        );
        // Items the server never had go first, exactly as kube's mergeSortedSlice orders them.
        assert_eq!(
            got["metadata"]["ownerReferences"],
            json!([{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}])
        );
    }

    #[test]
    fn patch_delete_on_list_item_and_map() {
        let target = pod(json!([{"name": "a"}, {"name": "b"}]));
        let got = smp(
            target.clone(),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            "/v1/Pod",
        );
        assert_eq!(got["spec"]["containers"], json!([{"name": "b"}]));
        let got = smp(target, json!({"metadata": {"$patch": "delete"}}), "/v1/Pod");
        assert!(got.get("metadata").is_none(), "{got}");
    }

    #[test]
    fn patch_replace_on_list_and_map() {
        let target = pod(json!([{"name": "a", "image": "a"}, {"name": "b"}]));
        let got = smp(
            target.clone(),
            json!({"spec": {"containers": [{"name": "c", "image": "c"}, {"$patch": "replace"}]}}),
            "/v1/Pod",
        );
        assert_eq!(
            got["spec"]["containers"],
            json!([{"name": "c", "image": "c"}])
        );
        let got = smp(
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
            "/v1/Pod",
        );
        assert_eq!(got["metadata"]["labels"], json!({"c": "3"}));
    }

    #[test]
    fn patch_merge_directive_is_a_plain_merge() {
        let got = smp(
            json!({"data": {"a": "1"}}),
            json!({"data": {"$patch": "merge", "b": "2"}}),
            "/v1/ConfigMap",
        );
        assert_eq!(got, json!({"data": {"a": "1", "b": "2"}}));
    }

    #[test]
    fn retain_keys_drops_unlisted_fields() {
        let target = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        assert_eq!(
            smp(target, patch, "apps/v1/Deployment"),
            json!({"spec": {"strategy": {"type": "Recreate"}}})
        );
        let bad = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        assert!(matches!(
            strategic_merge_patch(&json!({}), &bad, "apps/v1/Deployment"),
            Err(PatchError::BadRequest(_))
        ));
    }

    #[test]
    fn set_element_order_reorders() {
        let target = pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]));
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
            "containers": [{"name": "b", "image": "b"}]}});
        let got = smp(target, patch, "/v1/Pod");
        assert_eq!(
            got["spec"]["containers"],
            json!([{"name": "c"}, {"name": "b", "image": "b"}, {"name": "a"}])
        );
        let got = smp(
            json!({"metadata": {"finalizers": ["x", "y"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["y", "x"]}}),
            "/v1/Pod",
        );
        assert_eq!(got["metadata"]["finalizers"], json!(["y", "x"]));
    }

    #[test]
    fn new_items_keep_position_relative_to_untouched_ones() {
        let target = pod(json!([{"name": "a"}, {"name": "b"}]));
        let got = smp(
            target,
            json!({"spec": {"containers": [{"name": "z"}, {"name": "a", "image": "i"}]}}),
            "/v1/Pod",
        );
        assert_eq!(
            got["spec"]["containers"],
            json!([{"name": "z"}, {"name": "a", "image": "i"}, {"name": "b"}])
        );
    }

    #[test]
    fn directives_inside_new_fields_are_processed() {
        let got = smp(
            json!({}),
            json!({"metadata": {"labels": {"a": "1", "b": null, "$patch": "merge"}}}),
            "/v1/Pod",
        );
        assert_eq!(got, json!({"metadata": {"labels": {"a": "1"}}}));
    }

    #[test]
    fn bad_patches() {
        for patch in [
            json!([1]),
            json!({"spec": {"containers": [{"image": "no-name"}]}}),
            json!({"spec": {"containers": ["str"]}}),
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            json!({"spec": {"$patch": "frobnicate"}}),
            json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
        ] {
            assert!(
                matches!(
                    strategic_merge_patch(&pod(json!([])), &patch, "/v1/Pod"),
                    Err(PatchError::BadRequest(_))
                ),
                "{patch}"
            );
        }
    }

    #[test]
    fn cronjob_and_job_pod_templates() {
        let target = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}}});
        let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b"}]}}}}}});
        let got = smp(target, patch, "batch/v1/CronJob");
        assert_eq!(
            got["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b"}, {"name": "a"}])
        );
    }
}
