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

    #[test]
    fn schemas_without_rules_are_not_evaluated() {
        assert!(!has_rules(
            &json!({"type": "object", "properties": {"a": {"type": "string"}}})
        ));
        assert!(has_rules(&schema()));
    }
}
