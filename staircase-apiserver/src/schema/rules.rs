//! CEL validation rules (`x-kubernetes-validations`), evaluated by the `kube-cel` crate with the
//! Kubernetes CEL libraries, after the schema itself validated. Transition rules (`oldSelf`) see
//! the stored object on an update and are skipped on a create, as on a real server.

use std::cell::RefCell;

use kube_cel::{ErrorKind, ValidationError, Validator};
use serde_json::Value;

use super::FieldError;

thread_local! {
    // Registering the Kubernetes CEL functions takes a while; do it once per server thread.
    static VALIDATOR: RefCell<Option<Validator>> = const { RefCell::new(None) };
}

/// Whether the schema has any CEL rule, so objects of kinds without rules skip the evaluator.
pub(crate) fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key("x-kubernetes-validations") || m.values().any(has_rules),
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

/// The CEL rules of `schema` that `object` breaks (`old`: the stored object of an update).
pub fn validate(object: &Value, old: Option<&Value>, schema: &Value) -> Vec<FieldError> {
    if !has_rules(schema) {
        return vec![];
    }
    // The CEL crate parses a chain such as `1 + 1 + … + 1` without a depth limit and then
    // evaluates it recursively: a long one overflows the stack (the whole process aborts) and a
    // deeply nested one takes seconds to parse. Such rules are refused before they get there, as
    // kube-apiserver's parser refuses them (`expression recursion limit exceeded`).
    let mut too_deep = Vec::new();
    find_too_deep(schema, &mut Vec::new(), &mut too_deep);
    if !too_deep.is_empty() {
        return too_deep;
    }
    let result = VALIDATOR.with(|v| {
        v.borrow_mut()
            .get_or_insert_with(Validator::new)
            .validate(schema, object, old)
    });
    match result {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| field_error(e, object)).collect(),
    }
}

/// Deepest expression nesting a rule may have: cel-go's default parser recursion limit.
const MAX_RULE_DEPTH: usize = 250;

/// A `FieldValueInvalid` for each rule (or `messageExpression`) under `schema` nested deeper
/// than [`MAX_RULE_DEPTH`], at the field the rule sits on (`path`: its property names; a rule
/// under `items` or `additionalProperties` is reported at the enclosing property).
fn find_too_deep(schema: &Value, path: &mut Vec<String>, out: &mut Vec<FieldError>) {
    let Some(map) = schema.as_object() else {
        return;
    };
    for rule in map
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let exprs = ["rule", "messageExpression"].map(|k| rule.get(k).and_then(Value::as_str));
        if exprs
            .into_iter()
            .flatten()
            .any(|e| nesting(e) > MAX_RULE_DEPTH)
        {
            out.push(FieldError {
                reason: "FieldValueInvalid".into(),
                field: if path.is_empty() {
                    "<nil>".into()
                } else {
                    path.join(".")
                },
                message: format!(
                    "Invalid value: compilation failed: expression recursion limit exceeded: {MAX_RULE_DEPTH}"
                ),
            });
        }
    }
    for (key, child) in map {
        match (key.as_str(), child) {
            ("properties", Value::Object(props)) => {
                for (name, prop) in props {
                    path.push(name.clone());
                    find_too_deep(prop, path, out);
                    path.pop();
                }
            }
            ("x-kubernetes-validations" | "properties" | "default" | "enum" | "example", _) => {}
            (_, Value::Array(items)) => items.iter().for_each(|i| find_too_deep(i, path, out)),
            (_, child) => find_too_deep(child, path, out),
        }
    }
}

/// An upper bound of the expression nesting of a CEL expression, from its text alone: open
/// brackets plus the operators chained within each (`a + b + c` nests two deep, `a.b.c` too),
/// string literals skipped. Linear in the text.
fn nesting(expr: &str) -> usize {
    // Operators chained inside each open bracket (the first entry: outside any); their sum
    // plus the brackets is the current depth.
    let mut chained: Vec<usize> = vec![0];
    let mut depth = 0usize;
    let mut max = 0;
    let mut quote: Option<char> = None;
    let mut after_operator = false;
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            if c == '\\' {
                chars.next();
            } else if c == q {
                quote = None;
            }
            continue;
        }
        let operator = "+-*/%!<>=&|?:.".contains(c);
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => {
                chained.push(0);
                depth += 1;
            }
            ')' | ']' | '}' if chained.len() > 1 => {
                depth -= chained.pop().unwrap_or(0) + 1;
            }
            ',' => {
                let last = chained.last_mut().expect("never empty");
                depth -= *last;
                *last = 0;
            }
            _ if operator && !after_operator => {
                *chained.last_mut().expect("never empty") += 1;
                depth += 1;
            }
            _ => {}
        }
        after_operator = operator;
        max = max.max(depth);
    }
    max
}

/// kube-apiserver's wording: `field.Invalid(path, value, message)` unless the rule names another
/// reason, with the value printed only for a scalar (an object or list is left out); a rule on
/// the root has no field (`<nil>`).
fn field_error(e: &ValidationError, object: &Value) -> FieldError {
    let field = if e.field_path.is_empty() {
        "<nil>".to_string()
    } else {
        e.field_path.clone()
    };
    let reason = match e.kind {
        ErrorKind::ValidationFailure => e.reason.clone().unwrap_or("FieldValueInvalid".into()),
        _ => "FieldValueInvalid".into(),
    };
    let message = match reason.as_str() {
        "FieldValueForbidden" => format!("Forbidden: {}", e.message),
        "FieldValueRequired" => format!("Required value: {}", e.message),
        "FieldValueDuplicate" => format!("Duplicate value: {}", e.message),
        _ => match at_path(object, &e.field_path) {
            Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
                format!(
                    "Invalid value: {}: {}",
                    super::gofmt::bad_value(v),
                    e.message
                )
            }
            _ => format!("Invalid value: {}", e.message),
        },
    };
    FieldError {
        reason,
        field,
        message,
    }
}

/// The value a `spec.items[0].name`-style path names, if the object has it.
fn at_path<'v>(object: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = object;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (key, indices) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        for index in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
            cur = match index.parse::<usize>() {
                Ok(i) => cur.get(i)?,
                Err(_) => cur.get(index.trim_matches(['"', '\'']))?,
            };
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.replicas <= 10", "message": "at most 10 replicas"},
                    {"rule": "self.color == oldSelf.color", "message": "color is immutable"}
                ],
                "properties": {
                    "replicas": {"type": "integer", "x-kubernetes-validations": [{"rule": "self % 2 == 0"}]},
                    "color": {"type": "string"}
                }
            }}
        })
    }

    #[test]
    fn rules_report_kube_apiserver_causes() {
        let bad = json!({"spec": {"replicas": 11, "color": "red"}});
        let errors = validate(&bad, None, &schema());
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{} {}: {}", e.reason, e.field, e.message))
            .collect();
        assert!(
            lines.contains(
                &"FieldValueInvalid spec: Invalid value: at most 10 replicas".to_string()
            ),
            "{lines:?}"
        );
        assert!(
            lines.contains(
                &"FieldValueInvalid spec.replicas: Invalid value: 11: failed rule: self % 2 == 0"
                    .to_string()
            ),
            "{lines:?}"
        );
        assert_eq!(
            errors.len(),
            2,
            "a create skips the transition rule: {lines:?}"
        );
    }

    #[test]
    fn transition_rules_see_the_stored_object() {
        let old = json!({"spec": {"replicas": 2, "color": "red"}});
        let new = json!({"spec": {"replicas": 2, "color": "blue"}});
        let errors = validate(&new, Some(&old), &schema());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].message, "Invalid value: color is immutable");
        assert!(validate(&old, Some(&old), &schema()).is_empty());
    }

    /// Found by the `schema` fuzz target: a 4 KB rule `1 + 1 + … + 1` overflowed the stack while
    /// being evaluated (aborting the whole server), and `[[[…]]]` 2 000 deep took 14 s to parse.
    #[test]
    fn rules_nested_too_deep_are_refused_not_evaluated() {
        let schema = |rule: String| {
            json!({"type": "object", "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [{"rule": rule}]
            }}})
        };
        let obj = json!({"spec": {"a": 1}});
        let refused = |rule: String| {
            let started = std::time::Instant::now();
            let errors = validate(&obj, None, &schema(rule));
            assert!(
                started.elapsed().as_secs() < 2,
                "took {:?}",
                started.elapsed()
            );
            errors
        };
        let expected = vec![FieldError {
            reason: "FieldValueInvalid".into(),
            field: "spec".into(),
            message: "Invalid value: compilation failed: expression recursion limit exceeded: 250"
                .into(),
        }];
        let chain = |n: usize| format!("1{} > 0", " + 1".repeat(n));
        assert_eq!(refused(chain(5000)), expected);
        let lists = format!("{}1{} != []", "[".repeat(2000), "]".repeat(2000));
        assert_eq!(refused(lists), expected);
        // At the limit, the rule is evaluated (on a test thread's 2 MiB stack).
        assert_eq!(nesting(&chain(249)), 250);
        assert!(refused(chain(249)).is_empty());
        assert_eq!(refused(chain(250)), expected);
        // Strings, lists of many items and `&&` clauses side by side do not add up.
        assert_eq!(
            nesting("self.a == 'x.y.z(((' && [1, 2, 3].all(x, x > 0)"),
            6
        );
        let wide = format!("'v' in [{}]", vec!["'v'"; 5000].join(", "));
        assert!(refused(wide).is_empty());
    }

    #[test]
    fn schemas_without_rules_are_not_evaluated() {
        assert!(!has_rules(
            &json!({"type": "object", "properties": {"a": {"type": "string"}}})
        ));
        assert!(has_rules(&schema()));
    }
}
