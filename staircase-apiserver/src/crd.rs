//! CustomResourceDefinitions: validating them, serving their resources once created, and
//! tearing those down when the CRD goes away.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::registry::ResourceType;
use crate::status::{ApiError, ApiResult, Cause};
use crate::store::State;

/// Storage key of the CRD resource itself.
pub const CRD_KEY: &str = "apiextensions.k8s.io/customresourcedefinitions";

fn req(field: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired".into(),
        message: "Required value".into(),
        field: field.into(),
    }
}

/// Checks the parts of a CRD the server relies on; returns the causes of a 422.
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut c = vec![];
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or("");
    let (group, plural, kind) = (
        s("/spec/group"),
        s("/spec/names/plural"),
        s("/spec/names/kind"),
    );
    if group.is_empty() {
        c.push(req("spec.group"));
    }
    if plural.is_empty() {
        c.push(req("spec.names.plural"));
    }
    if kind.is_empty() {
        c.push(req("spec.names.kind"));
    }
    let scope = s("/spec/scope");
    if scope != "Namespaced" && scope != "Cluster" {
        c.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                json!(scope)
            ),
            field: "spec.scope".into(),
        });
    }
    let name = crate::meta::name_of(crd);
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        c.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: {}: must be spec.names.plural+\".\"+spec.group",
                json!(name)
            ),
            field: "metadata.name".into(),
        });
    }
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array);
    match versions {
        Some(vs) if !vs.is_empty() => {
            let storage = vs
                .iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .count();
            if storage != 1 {
                c.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!("Invalid value: {}: must have exactly one version marked as storage version", json!(vs.iter().map(|v| v.get("name").cloned().unwrap_or(Value::Null)).collect::<Vec<_>>())),
                    field: "spec.versions".into(),
                });
            }
            for (i, v) in vs.iter().enumerate() {
                if v.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    c.push(req(&format!("spec.versions[{i}].name")));
                }
            }
        }
        _ => c.push(req("spec.versions")),
    }
    c
}

/// Sets the status the real server reports once a CRD's names are accepted and it is served.
pub fn set_established(crd: &mut Value) {
    let now = crate::meta::now();
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut accepted = names.clone();
    if accepted
        .get("singular")
        .is_none_or(|s| s.as_str() == Some(""))
    {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_lowercase();
        accepted["singular"] = kind.into();
    }
    if accepted.get("listKind").is_none() {
        let kind = names.get("kind").and_then(Value::as_str).unwrap_or("");
        accepted["listKind"] = format!("{kind}List").into();
    }
    let versions: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"] == true)
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    crd["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
        ],
        "storedVersions": versions,
    });
}

/// Fills defaults a CRD gets on the real server (singular, listKind).
pub fn default(crd: &mut Value) {
    if let Some(names) = crd
        .pointer_mut("/spec/names")
        .and_then(Value::as_object_mut)
    {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if names.get("singular").is_none_or(|s| s.as_str() == Some("")) {
            names.insert("singular".into(), kind.to_lowercase().into());
        }
        if names.get("listKind").is_none() {
            names.insert("listKind".into(), format!("{kind}List").into());
        }
    }
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Serves (or re-serves, after an update) every served version of the CRD.
pub fn register(state: &mut State, crd: &Value) {
    let s = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (group, plural) = (s("/spec/group"), s("/spec/names/plural"));
    state.registry.remove_resource(&group, &plural);
    if crate::meta::is_deleting(crd) {
        return;
    }
    let conversion_webhook = (s("/spec/conversion/strategy") == "Webhook")
        .then(|| crd.pointer("/spec/conversion/webhook").cloned())
        .flatten()
        .map(Arc::new);
    for v in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        state.registry.insert(ResourceType {
            group: group.clone(),
            version: v.get("name").and_then(Value::as_str).unwrap_or("").into(),
            plural: plural.clone(),
            singular: {
                let sg = s("/spec/names/singular");
                if sg.is_empty() {
                    s("/spec/names/kind").to_lowercase()
                } else {
                    sg
                }
            },
            kind: s("/spec/names/kind"),
            namespaced: s("/spec/scope") == "Namespaced",
            short_names: strs(crd.pointer("/spec/names/shortNames")),
            categories: strs(crd.pointer("/spec/names/categories")),
            status_subresource: v.pointer("/subresources/status").is_some(),
            schema: v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new),
            custom: true,
            printer_columns: v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            scale: v
                .pointer("/subresources/scale")
                .and_then(crate::scale::ScalePaths::of_crd),
            selectable_fields: v
                .get("selectableFields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                .map(|p| p.trim_start_matches('.').to_string())
                .collect(),
            conversion_webhook: conversion_webhook.clone(),
        });
    }
}

/// Stops serving the CRD's resource and deletes all its objects.
pub fn unregister(state: &mut State, crd: &Value) {
    let s = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (group, plural) = (s("/spec/group"), s("/spec/names/plural"));
    state.registry.remove_resource(&group, &plural);
    state.remove_all(&format!("{group}/{plural}"));
}

/// Rejects changes the real server forbids on an existing CRD.
pub fn validate_update(old: &Value, new: &Value) -> ApiResult<()> {
    for (p, field) in [
        ("/spec/group", "spec.group"),
        ("/spec/names/plural", "spec.names.plural"),
        ("/spec/scope", "spec.scope"),
    ] {
        if old.pointer(p) != new.pointer(p) {
            return Err(ApiError::invalid(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                crate::meta::name_of(new),
                vec![Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: {}: field is immutable",
                        new.pointer(p).cloned().unwrap_or(Value::Null)
                    ),
                    field: field.into(),
                }],
            ));
        }
    }
    Ok(())
}
