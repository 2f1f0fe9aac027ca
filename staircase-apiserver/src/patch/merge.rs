//! JSON merge patch (RFC 7386), as the `json-patch` crate implements it.

use serde_json::Value;

/// Applies an RFC 7386 JSON merge patch to `target` in place.
///
/// `null` members delete, objects merge recursively, anything else (arrays included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mp(target: Value, patch: Value) -> Value {
        let mut t = target;
        merge_patch(&mut t, &patch);
        t
    }

    #[test]
    fn rfc7386_appendix_a() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, want) in cases {
            assert_eq!(
                mp(target.clone(), patch.clone()),
                want,
                "{target} + {patch}"
            );
        }
    }

    #[test]
    fn rfc7386_section3_example() {
        let target = json!({"title":"Goodbye!","author":{"givenName":"John","familyName":"Doe"},
            "tags":["example","sample"],"content":"This will be unchanged"});
        let patch = json!({"title":"Hello!","phoneNumber":"+01-123-456-7890",
            "author":{"familyName":null},"tags":["example"]});
        let want = json!({"title":"Hello!","author":{"givenName":"John"},"tags":["example"],
            "content":"This will be unchanged","phoneNumber":"+01-123-456-7890"});
        assert_eq!(mp(target, patch), want);
    }
}
