//! Unknown-field pruning, mirroring apiextensions' `pruning.PruneWithOptions`.

use super::node::{self, is_meta};
use serde_json::Value;

fn key_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Prunes `x` against the root schema and returns the removed paths, sorted as the server
/// sorts them (byte order) for its strict-decoding message.
pub(super) fn prune_root(x: &mut Value, schema: &Value) -> Vec<String> {
    let mut removed = Vec::new();
    // The server treats the root like an embedded resource so apiVersion/kind/metadata
    // survive even when the schema does not mention them.
    prune(x, Some(schema), true, "", &mut removed);
    removed.sort();
    removed
}

fn prune(
    x: &mut Value,
    s: Option<&Value>,
    force_embedded: bool,
    path: &str,
    removed: &mut Vec<String>,
) {
    if let Some(s) = s.filter(|s| node::preserve_unknown(s)) {
        skip_prune(x, s, force_embedded, path, removed);
        return;
    }
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                // No schema at all (e.g. below `additionalProperties: true`): nothing is known.
                removed.extend(map.keys().map(|k| key_path(path, k)));
                map.clear();
                return;
            };
            let embedded = force_embedded || node::embedded(s);
            let additional = node::additional(s);
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if embedded && is_meta(&k) {
                    continue;
                }
                let child = key_path(path, &k);
                if let Some(p) = node::property(s, &k) {
                    prune(&mut map[&k], Some(p), false, &child, removed);
                } else if let Some(a) = &additional {
                    prune(&mut map[&k], a.schema(), false, &child, removed);
                } else {
                    removed.push(child);
                    map.remove(&k);
                }
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(node::items);
            for (i, v) in items.iter_mut().enumerate() {
                prune(v, item_schema, false, &format!("{path}[{i}]"), removed);
            }
        }
        _ => {}
    }
}

/// Below `x-kubernetes-preserve-unknown-fields: true` unknown keys stay, but known ones are
/// still pruned by their own schema.
fn skip_prune(
    x: &mut Value,
    s: &Value,
    force_embedded: bool,
    path: &str,
    removed: &mut Vec<String>,
) {
    match x {
        Value::Object(map) => {
            let embedded = force_embedded || node::embedded(s);
            let additional = node::additional(s);
            for (k, v) in map.iter_mut() {
                if embedded && is_meta(k) {
                    continue;
                }
                let child = key_path(path, k);
                if let Some(p) = node::property(s, k) {
                    prune(v, Some(p), false, &child, removed);
                } else if let Some(a) = &additional {
                    prune(v, a.schema(), false, &child, removed);
                }
            }
        }
        Value::Array(items) => {
            // The server keeps preserving inside array items (skipPrune recurses, not prune).
            if let Some(item_schema) = node::items(s) {
                for (i, v) in items.iter_mut().enumerate() {
                    skip_prune(v, item_schema, false, &format!("{path}[{i}]"), removed);
                }
            }
        }
        _ => {}
    }
}
