//! Redacting the values of Secrets in a recording (see [`Recorder::redact_secrets`]).
//!
//! [`Recorder::redact_secrets`]: super::Recorder::redact_secrets

use serde_json::Value;

use super::Recording;

/// What a redacted `stringData` value (and a redacted annotation) becomes.
pub(crate) const REDACTED: &str = "<redacted>";
/// What a redacted `data` value becomes: [`REDACTED`], base64-encoded, so it still decodes.
pub(crate) const REDACTED_BASE64: &str = "PHJlZGFjdGVkPg==";

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Replaces every value of every Secret in `rec`: request and response bodies on the `secrets`
/// resource, and the object view if it is a Secret. Keys stay, so what a step checks for
/// presence replays the same.
pub(crate) fn recording(rec: &mut Recording) {
    rec.redacted = true;
    if rec.kind == "Secret" && rec.api_version == "v1" {
        object(&mut rec.view);
    }
    for e in &mut rec.exchanges {
        if let Some(v) = &mut e.request {
            body(&e.path, v);
        }
        if let Some(v) = &mut e.response {
            body(&e.path, v);
        }
    }
}

/// Redacts a body sent to or received from `path`, if the path is of Secrets.
pub(crate) fn body(path: &str, v: &mut Value) {
    if !is_secrets(path) {
        return;
    }
    match v {
        // A JSON patch: the operations that set data.
        Value::Array(ops) => {
            for op in ops {
                let sets_data = op
                    .get("path")
                    .and_then(Value::as_str)
                    .is_some_and(|p| p.starts_with("/data") || p.starts_with("/stringData"));
                match op.get_mut("value") {
                    Some(Value::Object(m)) if sets_data => m
                        .values_mut()
                        .for_each(|x| *x = Value::String(REDACTED.into())),
                    Some(value) if sets_data => *value = Value::String(REDACTED.into()),
                    _ => {}
                }
            }
        }
        Value::Object(m) => match m.get_mut("items") {
            Some(Value::Array(items)) => items.iter_mut().for_each(object),
            _ => object(v),
        },
        _ => {}
    }
}

/// Redacts one Secret (or a patch of one).
fn object(v: &mut Value) {
    let Value::Object(m) = v else { return };
    for (field, with) in [("data", REDACTED_BASE64), ("stringData", REDACTED)] {
        if let Some(Value::Object(values)) = m.get_mut(field) {
            values
                .values_mut()
                .for_each(|x| *x = Value::String(with.into()));
        }
    }
    let annotations = m
        .get_mut("metadata")
        .and_then(|meta| meta.get_mut("annotations"))
        .and_then(|a| a.get_mut(LAST_APPLIED));
    if let Some(a) = annotations {
        *a = Value::String(REDACTED.into());
    }
}

/// Whether `path` (query and all) is of the core `secrets` resource.
fn is_secrets(path: &str) -> bool {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return false;
    };
    let resource = match rest.strip_prefix("namespaces/") {
        Some(rest) => rest.split('/').nth(1).unwrap_or(""),
        None => rest.split('/').next().unwrap_or(""),
    };
    resource == "secrets"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_values_go_keys_stay() {
        let mut created = json!({
            "kind": "Secret", "metadata": {"name": "t", "annotations": {LAST_APPLIED: "{..}", "a": "b"}},
            "data": {"token": "c2VjcmV0"}, "stringData": {"password": "hunter2"},
        });
        body("/api/v1/namespaces/d/secrets?fieldManager=m", &mut created);
        assert_eq!(created["data"]["token"], REDACTED_BASE64);
        assert_eq!(created["stringData"]["password"], REDACTED);
        assert_eq!(created["metadata"]["annotations"][LAST_APPLIED], REDACTED);
        assert_eq!(created["metadata"]["annotations"]["a"], "b");

        let mut list = json!({"kind": "SecretList", "items": [{"data": {"k": "dg=="}}]});
        body("/api/v1/secrets", &mut list);
        assert_eq!(list["items"][0]["data"]["k"], REDACTED_BASE64);

        let mut patch = json!([
            {"op": "add", "path": "/data/k", "value": "dg=="},
            {"op": "replace", "path": "/stringData", "value": {"a": "b"}},
            {"op": "add", "path": "/metadata/labels/x", "value": "y"},
        ]);
        body("/api/v1/namespaces/d/secrets/t", &mut patch);
        assert_eq!(patch[0]["value"], REDACTED);
        assert_eq!(patch[1]["value"]["a"], REDACTED);
        assert_eq!(patch[2]["value"], "y");

        // Anything else is left alone, a ConfigMap named `secrets` included.
        let mut cm = json!({"data": {"k": "v"}});
        body("/api/v1/namespaces/d/configmaps/secrets", &mut cm);
        body("/api/v1/namespaces/secrets/configmaps/x", &mut cm);
        body("/apis/demo.example/v1/namespaces/d/secrets/x", &mut cm);
        assert_eq!(cm["data"]["k"], "v");
    }

    #[test]
    fn the_redacted_data_still_decodes() {
        use k8s_openapi::api::core::v1::Secret;
        let mut v = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"},
            "data": {"token": "c2VjcmV0"}});
        body("/api/v1/namespaces/d/secrets/t", &mut v);
        let s: Secret = serde_json::from_value(v).unwrap();
        assert_eq!(s.data.unwrap()["token"].0, REDACTED.as_bytes());
    }
}
