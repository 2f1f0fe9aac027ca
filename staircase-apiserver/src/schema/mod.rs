//! Validation of custom resources against a CRD's `openAPIV3Schema`, with unknown-field pruning.
//!
//! Mirrors what kube-apiserver does to a custom resource on create/update/patch, in the same
//! order: prune unknown fields, drop `null`s of non-nullable fields without a default, apply
//! defaults, then validate (embedded-resource type meta first, then the schema).
//!
//! Error wording, reasons and field paths follow the Go sources (kube-openapi
//! `pkg/validation`, apiextensions-apiserver `pkg/apiserver/validation`, apimachinery
//! `field` errors) rather than memory, including where they surprise:
//!
//! * Type mismatches have reason `FieldValueTypeInvalid` and show the *JSON type name* of the
//!   bad value, not the value: `Invalid value: "string": spec.replicas in body must be of type
//!   integer: "string"`.
//! * A float with zero fraction (`3.0`) is accepted for `type: integer` (go-openapi checks
//!   `IsFloat64AJSONInteger`); it is kept as the float it was sent as.
//! * `maxLength` counts characters but the message says bytes:
//!   `Too long: may not be more than 5 bytes` (reason `FieldValueTooLong`).
//! * `maxItems`/`maxProperties`: `Too many: 3: must have at most 2 items` (`FieldValueTooMany`).
//! * anyOf/oneOf/allOf/not failures, and out-of-range `int32`/`float` values, are attached to
//!   no field: field `<nil>`, message `Invalid value: "": "spec.x" must validate at least one
//!   schema (anyOf)`; the best-matching branch's own errors follow.
//! * Array items are addressed `spec.items[0].name`; `additionalProperties` entries
//!   `spec.labels.key` (go-openapi's dotted form).
//!
//! * CEL rules (`x-kubernetes-validations`, see [`validate_rules`]) run once the schema holds; a
//!   broken rule is `FieldValueInvalid` at its field, printing the value only for a scalar:
//!   `spec: Invalid value: replicas may not exceed maxReplicas`, `spec.replicas: Invalid value:
//!   3: failed rule: self % 2 == 0`.
//!
//! `metadata`, `apiVersion` and `kind` at the top level are never pruned, defaulted or
//! validated here; the server validates them as ObjectMeta/TypeMeta.

mod defaults;
mod format;
pub(crate) mod gofmt;
mod node;
mod prune;
mod rules;
mod validate;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use rules::validate as validate_rules;

/// One offending field, reported in the `details.causes` of a `422 Invalid` Status.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Kubernetes cause reason, e.g. `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`.
    pub reason: String,
    /// The field path, e.g. `spec.replicas`.
    pub field: String,
    /// Human-readable message in kube-apiserver's wording.
    pub message: String,
}

/// Validates `object` against `schema` (a structural `openAPIV3Schema`) and prunes unknown
/// fields where the schema does not preserve them. `metadata`, `apiVersion` and `kind` are not
/// checked here. Returns every offending field, not just the first.
///
/// On return (success or failure) `object` has been pruned, had non-nullable `null`s without
/// a default removed, and had defaults applied, exactly what the server would persist on
/// success. Use [`unknown_fields`] first to implement `fieldValidation=Strict`.
pub fn validate_and_prune(object: &mut Value, schema: &Value) -> Result<(), Vec<FieldError>> {
    prune_unknown_fields(object, schema);
    apply_defaults(object, schema);
    let errors = validate(object, schema);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Paths of the fields that pruning would remove, sorted, in the server's notation
/// (`spec.foo`, `spec.items[0].bar`), for `fieldValidation=Strict`/`Warn`. The server turns
/// them into `strict decoding error: unknown field "spec.foo", unknown field "spec.bar"`.
/// `object` is not modified.
pub fn unknown_fields(object: &Value, schema: &Value) -> Vec<String> {
    let mut copy = object.clone();
    prune_unknown_fields(&mut copy, schema)
}

/// Removes unknown fields in place and returns their paths, sorted (the same list as
/// [`unknown_fields`], without the extra copy).
pub fn prune_unknown_fields(object: &mut Value, schema: &Value) -> Vec<String> {
    prune::prune_root(object, schema)
}

/// Drops `null`s of non-nullable fields that have no default, then fills in defaults for
/// missing (or non-nullable `null`) fields, recursively. The server does this on every write
/// and also when reading objects from storage, so it is exposed on its own.
pub fn apply_defaults(object: &mut Value, schema: &Value) {
    defaults::prune_nulls(object, Some(schema), true);
    defaults::apply(object, schema, true);
}

/// Validates without pruning or defaulting; returns all errors in the server's order (empty
/// when valid). Normally called through [`validate_and_prune`].
pub fn validate(object: &Value, schema: &Value) -> Vec<FieldError> {
    validate::validate_root(object, schema).into_vec()
}

/// The message of the `422 Invalid` Status for these errors, as `errors.NewInvalid` builds it:
/// `Foo.example.com "name" is invalid: [spec.a: Invalid value: …, spec.b: Required value]`,
/// without brackets for a single (distinct) error. `kind_group` is `Kind.group` (or just
/// `Kind` for the core group). Identical `field: message` lines are reported once.
pub fn format_invalid_message(kind_group: &str, name: &str, errors: &[FieldError]) -> String {
    let mut lines: Vec<String> = Vec::new();
    for e in errors {
        let line = format!("{}: {}", e.field, e.message);
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    let head = format!("{kind_group} {} is invalid", gofmt::quote(name));
    match lines.len() {
        0 => head,
        1 => format!("{head}: {}", lines[0]),
        _ => format!("{head}: [{}]", lines.join(", ")),
    }
}
