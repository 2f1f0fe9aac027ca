//! Null pruning and defaulting, mirroring apiextensions' `defaulting` package.
//!
//! The server runs both on every decoded request body, after pruning and before validation,
//! so a `null` for a non-nullable field either becomes its default or disappears (and may
//! then trip `required`).

use super::node::{self, is_meta};
use serde_json::Value;

fn non_nullable_null(v: &Value, s: &Value) -> bool {
    v.is_null() && !node::nullable(s)
}

/// `PruneNonNullableNullsWithoutDefaults`.
pub(super) fn prune_nulls(x: &mut Value, s: Option<&Value>, root: bool) {
    match x {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if root && is_meta(&k) {
                    continue;
                }
                let field_schema = s.and_then(|s| node::field_schema(s, &k));
                let drop = field_schema.is_some_and(|fs| {
                    non_nullable_null(&map[&k], fs) && node::default(fs).is_none()
                });
                if drop {
                    map.remove(&k);
                } else {
                    prune_nulls(&mut map[&k], field_schema, false);
                }
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(node::items);
            for v in items {
                prune_nulls(v, item_schema, false);
            }
        }
        _ => {}
    }
}

/// `defaulting.Default`: fills missing (or non-nullable `null`) fields from `default`,
/// recursing into the result so nested defaults inside a defaulted object apply too.
pub(super) fn apply(x: &mut Value, s: &Value, root: bool) {
    match x {
        Value::Object(map) => {
            if let Some(props) = node::properties(s) {
                for (k, p) in props {
                    if root && is_meta(k) {
                        continue;
                    }
                    let Some(d) = node::default(p) else { continue };
                    let missing = map.get(k).is_none_or(|v| non_nullable_null(v, p));
                    if missing {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
            let additional = node::additional(s).and_then(|a| a.schema());
            for (k, v) in map.iter_mut() {
                if root && is_meta(k) {
                    continue;
                }
                if let Some(p) = node::property(s, k) {
                    apply(v, p, false);
                } else if let Some(a) = additional {
                    if non_nullable_null(v, a)
                        && let Some(d) = node::default(a)
                    {
                        *v = d.clone();
                    }
                    apply(v, a, false);
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = node::items(s) else {
                return;
            };
            for v in items {
                if non_nullable_null(v, item_schema)
                    && let Some(d) = node::default(item_schema)
                {
                    *v = d.clone();
                }
                apply(v, item_schema, false);
            }
        }
        _ => {}
    }
}
