//! JSON patch (RFC 6902) with JSON pointers (RFC 6901).
//!
//! Written here rather than taken from the `json-patch` crate (which `merge_patch` uses), because
//! the server must answer as kube-apiserver does, and the crate differs in two ways:
//! - `test` compares numbers by value, as RFC 6902 §4.6 and kube-apiserver do (`1` equals `1.0`);
//!   the crate compares `serde_json::Value`s, where an integer never equals a float.
//! - A failed operation is reported with kube-apiserver's messages (e.g. `testing value /baz
//!   failed`), which clients match on; the crate's errors name only the operation's index.

use serde_json::{Map, Value};

use super::PatchError;

/// Applies an RFC 6902 JSON patch (`ops` is the array of operations) to a copy of `target`.
///
/// Supports `add`, `remove`, `replace`, `move`, `copy` and `test`, pointers with `~0`/`~1`
/// escapes and `-` to append to an array. The patch is all-or-nothing: on any failure `target`
/// is untouched (it is only borrowed) and an error is returned. A malformed patch document
/// (not an array, unknown op, missing `path`/`value`/`from`, pointer not starting with `/`) is
/// [`PatchError::BadRequest`]; a failed `test`, a missing path or an out-of-range index is
/// [`PatchError::Invalid`].
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, PatchError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| bad("json patch must be a JSON array of operations".into()))?;
    // Parse every operation before touching the document so a malformed op late in the list is
    // reported as BadRequest rather than as whatever an earlier op happened to do.
    let parsed = ops
        .iter()
        .enumerate()
        .map(|(i, op)| Op::parse(i, op))
        .collect::<Result<Vec<_>, _>>()?;
    let mut doc = target.clone();
    for op in parsed {
        op.run(&mut doc)?;
    }
    Ok(doc)
}

fn bad(msg: String) -> PatchError {
    PatchError::BadRequest(msg)
}

fn invalid(msg: String) -> PatchError {
    PatchError::Invalid(msg)
}

enum Op<'a> {
    Add(Pointer, &'a Value),
    Remove(Pointer),
    Replace(Pointer, &'a Value),
    Move(Pointer, Pointer),
    Copy(Pointer, Pointer),
    Test(Pointer, &'a Value),
}

impl<'a> Op<'a> {
    fn parse(index: usize, op: &'a Value) -> Result<Op<'a>, PatchError> {
        let obj = op
            .as_object()
            .ok_or_else(|| bad(format!("json patch operation {index} is not an object")))?;
        let name = obj
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("json patch operation {index} has no string \"op\"")))?;
        let pointer = |field: &str| -> Result<Pointer, PatchError> {
            let raw = obj.get(field).and_then(Value::as_str).ok_or_else(|| {
                bad(format!(
                    "json patch operation {index} ({name}) is missing \"{field}\""
                ))
            })?;
            Pointer::parse(raw)
                .map_err(|e| bad(format!("json patch operation {index} ({name}): {e}")))
        };
        // `"value": null` is a real value, so presence is checked on the key, not the content.
        let value = || {
            obj.get("value").ok_or_else(|| {
                bad(format!(
                    "json patch operation {index} ({name}) is missing \"value\""
                ))
            })
        };
        Ok(match name {
            "add" => Op::Add(pointer("path")?, value()?),
            "remove" => Op::Remove(pointer("path")?),
            "replace" => Op::Replace(pointer("path")?, value()?),
            "move" => Op::Move(pointer("from")?, pointer("path")?),
            "copy" => Op::Copy(pointer("from")?, pointer("path")?),
            "test" => Op::Test(pointer("path")?, value()?),
            other => {
                return Err(bad(format!(
                    "json patch operation {index} has unknown op \"{other}\""
                )));
            }
        })
    }

    fn run(self, doc: &mut Value) -> Result<(), PatchError> {
        match self {
            Op::Add(path, value) => add(doc, &path, value.clone()),
            Op::Remove(path) => remove(doc, &path).map(drop),
            Op::Replace(path, value) => {
                *get_mut(doc, &path)? = value.clone();
                Ok(())
            }
            Op::Move(from, path) => {
                if from == path {
                    return Ok(());
                }
                if path.0.len() > from.0.len() && path.0.starts_with(&from.0) {
                    return Err(invalid(format!(
                        "cannot move {} into its own child {}",
                        from.raw(),
                        path.raw()
                    )));
                }
                let value = remove(doc, &from)?;
                add(doc, &path, value)
            }
            Op::Copy(from, path) => {
                let value = get_mut(doc, &from)?.clone();
                add(doc, &path, value)
            }
            Op::Test(path, want) => {
                // kube-apiserver's json-patch reads a missing member as null: testing for null
                // at a path that does not exist succeeds (kube-rs's finalizer helper relies on it
                // to add the first finalizer).
                if want.is_null() && get_mut(doc, &path).is_err() {
                    return Ok(());
                }
                let found = get_mut(doc, &path).map_err(|_| {
                    invalid(format!(
                        "testing value {} failed: path does not exist",
                        path.raw()
                    ))
                })?;
                if json_equal(found, want) {
                    Ok(())
                } else {
                    Err(invalid(format!(
                        "testing value {} failed: expected {want}, found {found}",
                        path.raw()
                    )))
                }
            }
        }
    }
}

/// A parsed RFC 6901 pointer: the unescaped reference tokens.
#[derive(Debug, Clone, PartialEq)]
struct Pointer(Vec<String>);

impl Pointer {
    fn parse(raw: &str) -> Result<Pointer, String> {
        if raw.is_empty() {
            return Ok(Pointer(Vec::new()));
        }
        let Some(rest) = raw.strip_prefix('/') else {
            return Err(format!(
                "JSON pointer {raw:?} must be empty or start with '/'"
            ));
        };
        rest.split('/')
            .map(|t| unescape(t).ok_or_else(|| format!("bad escape in JSON pointer {raw:?}")))
            .collect::<Result<_, _>>()
            .map(Pointer)
    }

    /// Re-escaped form, for messages.
    fn raw(&self) -> String {
        if self.0.is_empty() {
            return "\"\"".into();
        }
        self.0
            .iter()
            .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
            .collect()
    }

    fn split_last(&self) -> Option<(&str, Pointer)> {
        let (last, parent) = self.0.split_last()?;
        Some((last, Pointer(parent.to_vec())))
    }
}

/// `~1` must decode before `~0` would matter; decoding char by char gets `~01` -> `~1` right.
fn unescape(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Array index per RFC 6901: decimal without leading zeros.
fn parse_index(token: &str, pointer: &Pointer) -> Result<usize, PatchError> {
    let ok = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    ok.then(|| token.parse().ok()).flatten().ok_or_else(|| {
        invalid(format!(
            "invalid array index {token:?} in path {}",
            pointer.raw()
        ))
    })
}

fn get_mut<'v>(doc: &'v mut Value, pointer: &Pointer) -> Result<&'v mut Value, PatchError> {
    let mut cur = doc;
    for token in &pointer.0 {
        cur = match cur {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => {
                let i = parse_index(token, pointer)?;
                items.get_mut(i)
            }
            _ => None,
        }
        .ok_or_else(|| invalid(format!("path {} does not exist", pointer.raw())))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, pointer: &Pointer, value: Value) -> Result<(), PatchError> {
    let Some((last, parent)) = pointer.split_last() else {
        *doc = value;
        return Ok(());
    };
    let missing_parent = || {
        invalid(format!(
            "cannot add {}: parent path does not exist",
            pointer.raw()
        ))
    };
    match get_mut(doc, &parent).map_err(|_| missing_parent())? {
        Value::Object(map) => {
            map.insert(last.to_string(), value);
            Ok(())
        }
        Value::Array(items) => {
            let i = if last == "-" {
                items.len()
            } else {
                parse_index(last, pointer)?
            };
            if i > items.len() {
                return Err(invalid(format!(
                    "cannot add {}: index out of range (length {})",
                    pointer.raw(),
                    items.len()
                )));
            }
            items.insert(i, value);
            Ok(())
        }
        _ => Err(missing_parent()),
    }
}

fn remove(doc: &mut Value, pointer: &Pointer) -> Result<Value, PatchError> {
    let Some((last, parent)) = pointer.split_last() else {
        return Err(invalid("cannot remove the whole document".into()));
    };
    let missing = || {
        invalid(format!(
            "cannot remove {}: path does not exist",
            pointer.raw()
        ))
    };
    match get_mut(doc, &parent).map_err(|_| missing())? {
        Value::Object(map) => map.remove(last).ok_or_else(missing),
        Value::Array(items) => {
            let i = parse_index(last, pointer)?;
            (i < items.len())
                .then(|| items.remove(i))
                .ok_or_else(missing)
        }
        _ => Err(missing()),
    }
}

/// RFC 6902 §4.6 equality: numbers compare by value (`1` equals `1.0`), objects ignore order.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => objects_equal(x, y),
        _ => a == b,
    }
}

fn objects_equal(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    x.len() == y.len()
        && x.iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(target: Value, ops: Value) -> Value {
        json_patch(&target, &ops).unwrap_or_else(|e| panic!("{ops}: {e:?}"))
    }

    fn err(target: Value, ops: Value) -> PatchError {
        json_patch(&target, &ops).expect_err("patch should fail")
    }

    #[test]
    fn a1_add_object_member() {
        assert_eq!(
            ok(
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz","value":"qux"}])
            ),
            json!({"baz":"qux","foo":"bar"})
        );
    }

    #[test]
    fn a2_add_array_element() {
        assert_eq!(
            ok(
                json!({"foo":["bar","baz"]}),
                json!([{"op":"add","path":"/foo/1","value":"qux"}])
            ),
            json!({"foo":["bar","qux","baz"]})
        );
    }

    #[test]
    fn a3_remove_object_member() {
        assert_eq!(
            ok(
                json!({"baz":"qux","foo":"bar"}),
                json!([{"op":"remove","path":"/baz"}])
            ),
            json!({"foo":"bar"})
        );
    }

    #[test]
    fn a4_remove_array_element() {
        assert_eq!(
            ok(
                json!({"foo":["bar","qux","baz"]}),
                json!([{"op":"remove","path":"/foo/1"}])
            ),
            json!({"foo":["bar","baz"]})
        );
    }

    #[test]
    fn a5_replace() {
        assert_eq!(
            ok(
                json!({"baz":"qux","foo":"bar"}),
                json!([{"op":"replace","path":"/baz","value":"boo"}])
            ),
            json!({"baz":"boo","foo":"bar"})
        );
    }

    #[test]
    fn a6_move_value() {
        let target = json!({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}});
        let want = json!({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}});
        assert_eq!(
            ok(
                target,
                json!([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}])
            ),
            want
        );
    }

    #[test]
    fn a7_move_array_element() {
        assert_eq!(
            ok(
                json!({"foo":["all","grass","cows","eat"]}),
                json!([{"op":"move","from":"/foo/1","path":"/foo/3"}])
            ),
            json!({"foo":["all","cows","eat","grass"]})
        );
    }

    #[test]
    fn a8_test_success() {
        let doc = json!({"baz":"qux","foo":["a",2,"c"]});
        let ops = json!([{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]);
        assert_eq!(ok(doc.clone(), ops), doc);
    }

    #[test]
    fn a9_test_error() {
        let e = err(
            json!({"baz":"qux"}),
            json!([{"op":"test","path":"/baz","value":"bar"}]),
        );
        assert!(
            matches!(&e, PatchError::Invalid(m) if m.contains("testing value /baz failed")),
            "{e:?}"
        );
    }

    #[test]
    fn test_null_at_a_missing_path_succeeds_as_in_kube_apiserver() {
        let doc = json!({"metadata": {"name": "a"}});
        let ops = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}
        ]);
        assert_eq!(
            ok(doc, ops),
            json!({"metadata": {"name": "a", "finalizers": ["f"]}})
        );
        let e = err(
            json!({"metadata": {}}),
            json!([{"op": "test", "path": "/metadata/finalizers", "value": "x"}]),
        );
        assert!(matches!(&e, PatchError::Invalid(_)), "{e:?}");
    }

    #[test]
    fn a10_add_nested_member_object() {
        assert_eq!(
            ok(
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/child","value":{"grandchild":{}}}])
            ),
            json!({"foo":"bar","child":{"grandchild":{}}})
        );
    }

    #[test]
    fn a11_ignore_unrecognized_members() {
        assert_eq!(
            ok(
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz","value":"qux","xyz":123}])
            ),
            json!({"foo":"bar","baz":"qux"})
        );
    }

    #[test]
    fn a12_add_to_nonexistent_target() {
        let e = err(
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/baz/bat","value":"qux"}]),
        );
        assert!(matches!(e, PatchError::Invalid(_)), "{e:?}");
    }

    #[test]
    fn a14_escape_ordering() {
        let doc = json!({"/":9,"~1":10});
        assert_eq!(
            ok(doc.clone(), json!([{"op":"test","path":"/~01","value":10}])),
            doc
        );
        assert_eq!(
            ok(json!({"a/b":1}), json!([{"op":"remove","path":"/a~1b"}])),
            json!({})
        );
    }

    #[test]
    fn a15_string_is_not_number() {
        let e = err(
            json!({"/":9,"~1":10}),
            json!([{"op":"test","path":"/~01","value":"10"}]),
        );
        assert!(matches!(e, PatchError::Invalid(_)));
    }

    #[test]
    fn a16_add_array_value_and_append() {
        assert_eq!(
            ok(
                json!({"foo":["bar"]}),
                json!([{"op":"add","path":"/foo/-","value":["abc","def"]}])
            ),
            json!({"foo":["bar",["abc","def"]]})
        );
    }

    #[test]
    fn copy_and_root_replace() {
        assert_eq!(
            ok(
                json!({"a":{"b":1}}),
                json!([{"op":"copy","from":"/a","path":"/c"}])
            ),
            json!({"a":{"b":1},"c":{"b":1}})
        );
        assert_eq!(
            ok(
                json!({"a":1}),
                json!([{"op":"replace","path":"","value":[1]}])
            ),
            json!([1])
        );
        assert_eq!(
            ok(
                json!({"a":1}),
                json!([{"op":"add","path":"","value":{"b":2}}])
            ),
            json!({"b":2})
        );
    }

    #[test]
    fn null_value_is_a_value() {
        assert_eq!(
            ok(json!({}), json!([{"op":"add","path":"/a","value":null}])),
            json!({"a":null})
        );
        assert_eq!(
            ok(
                json!({"a":null}),
                json!([{"op":"test","path":"/a","value":null}])
            ),
            json!({"a":null})
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        ok(
            json!({"a":1}),
            json!([{"op":"test","path":"/a","value":1.0}]),
        );
        ok(
            json!({"a":{"x":[1,{"y":2}]}}),
            json!([{"op":"test","path":"/a","value":{"x":[1.0,{"y":2}]}}]),
        );
    }

    #[test]
    fn all_or_nothing() {
        let doc = json!({"a":1});
        let e = err(
            doc.clone(),
            json!([{"op":"add","path":"/b","value":2},{"op":"test","path":"/a","value":2}]),
        );
        assert!(matches!(e, PatchError::Invalid(_)));
        assert_eq!(doc, json!({"a":1}));
    }

    #[test]
    fn malformed_documents_are_bad_requests() {
        for ops in [
            json!({"op":"add"}),
            json!([1]),
            json!([{"path":"/a"}]),
            json!([{"op":"frob","path":"/a"}]),
            json!([{"op":"add","path":"/a"}]),
            json!([{"op":"replace","path":"/a"}]),
            json!([{"op":"test","path":"/a"}]),
            json!([{"op":"move","path":"/a"}]),
            json!([{"op":"copy","from":"/a"}]),
            json!([{"op":"add","path":"a","value":1}]),
            json!([{"op":"add","path":"/a~2","value":1}]),
            json!([{"op":"add","path":1,"value":1}]),
        ] {
            assert!(
                matches!(err(json!({"a":1}), ops.clone()), PatchError::BadRequest(_)),
                "{ops}"
            );
        }
    }

    #[test]
    fn missing_paths_and_bad_indices_are_invalid() {
        for ops in [
            json!([{"op":"remove","path":"/x"}]),
            json!([{"op":"replace","path":"/x","value":1}]),
            json!([{"op":"move","from":"/x","path":"/y"}]),
            json!([{"op":"copy","from":"/x","path":"/y"}]),
            json!([{"op":"test","path":"/x","value":1}]),
            json!([{"op":"add","path":"/l/5","value":1}]),
            json!([{"op":"add","path":"/l/01","value":1}]),
            json!([{"op":"remove","path":"/l/-"}]),
            json!([{"op":"remove","path":"/l/2"}]),
            json!([{"op":"add","path":"/s/x","value":1}]),
            json!([{"op":"move","from":"/m","path":"/m/n"}]),
            json!([{"op":"remove","path":""}]),
        ] {
            let doc = json!({"l":[1,2],"s":"str","m":{"k":1}});
            assert!(
                matches!(err(doc, ops.clone()), PatchError::Invalid(_)),
                "{ops}"
            );
        }
    }

    #[test]
    fn move_to_same_place_is_noop() {
        assert_eq!(
            ok(
                json!({"a":1}),
                json!([{"op":"move","from":"/a","path":"/a"}])
            ),
            json!({"a":1})
        );
    }

    #[test]
    fn add_at_end_index_and_replace_array_item() {
        assert_eq!(
            ok(json!([1, 2]), json!([{"op":"add","path":"/2","value":3}])),
            json!([1, 2, 3])
        );
        assert_eq!(
            ok(
                json!([1, 2]),
                json!([{"op":"replace","path":"/0","value":9}])
            ),
            json!([9, 2])
        );
    }
}
