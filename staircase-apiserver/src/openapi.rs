//! Minimal OpenAPI documents. kubectl fetches them before `apply`, `explain` and client-side
//! validation; an empty but well-formed document (plus the schemas of custom resources) makes
//! it fall back to its built-in knowledge instead of failing.

use serde_json::{Value, json};

use crate::registry::Registry;

/// `/openapi/v2`.
pub fn v2() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {}, "definitions": {}})
}

/// `/openapi/v3`: one entry per served group/version.
pub fn v3_index(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": "/openapi/v3/api/v1?hash=0"}),
    );
    for (g, vs) in reg.groups() {
        for v in vs {
            paths.insert(
                format!("apis/{g}/{v}"),
                json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash=0")}),
            );
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/apis/{group}/{version}`, with custom resource schemas tagged by GVK.
pub fn v3_group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.in_group_version(group, version);
    if types.is_empty() && !(group.is_empty() && version == "v1") {
        return None;
    }
    let mut schemas = serde_json::Map::new();
    for t in types.iter().filter(|t| t.custom) {
        let mut s = t
            .schema
            .as_deref()
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        s["x-kubernetes-group-version-kind"] =
            json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
        let rev: Vec<&str> = t.group.split('.').rev().collect();
        schemas.insert(format!("{}.{}.{}", rev.join("."), t.version, t.kind), s);
    }
    // kubectl decides whether to leave validation to the server (`fieldValidation`) by finding
    // a PATCH operation tagged with the kind that declares that query parameter.
    let mut paths = serde_json::Map::new();
    for t in &types {
        let prefix = if t.group.is_empty() {
            format!("/api/{}", t.version)
        } else {
            format!("/apis/{}/{}", t.group, t.version)
        };
        let ns = if t.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            {"name": "force", "in": "query", "schema": {"type": "boolean"}}
        ]);
        let op = |action: &str| {
            json!({
                "x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": action,
                "parameters": params, "responses": {"200": {"description": "OK"}}
            })
        };
        paths.insert(
            format!("{prefix}{ns}/{}/{{name}}", t.plural),
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
        paths.insert(
            format!("{prefix}{ns}/{}", t.plural),
            json!({"get": op("list"), "post": op("post")}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas}
    }))
}
