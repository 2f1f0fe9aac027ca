//! Admission webhooks: `admissionregistration.k8s.io/v1` Validating- and
//! MutatingWebhookConfigurations stored in the server are called, as kube-apiserver calls them,
//! for CREATE, UPDATE, PATCH (server-side apply included) and DELETE of every other resource.
//!
//! # Why a dry run, then the calls, then a commit
//!
//! The write path ([`handlers`]) is synchronous under the store's lock, and a webhook call is a
//! network round trip of up to `timeoutSeconds`: holding the lock across it would stall every
//! other request (watches included) and deadlock a webhook that reads the API server. So a
//! write that some webhook may concern runs in three steps, none holding the lock across an
//! await:
//!
//! 1. the request itself as a dry run (`dryRun=All`): the object the write would store, fully
//!    defaulted and validated, with the stored object's `resourceVersion` for an update;
//! 2. the matching mutating webhooks in turn (each `JSONPatch` applied), then the validating
//!    ones, with no lock held;
//! 3. the result written as an update carrying that `resourceVersion` as a precondition (or a
//!    create), validated again. When the object changed in between, the commit conflicts and
//!    the whole request starts again from step 1, like kube-apiserver's retry of a conflicting
//!    patch (a client's own stale `resourceVersion` fails in step 1, as it should).
//!
//! A dry-run request stops after step 2. A DELETE calls the webhooks with the stored object,
//! then deletes. Not done: DELETE of a collection and CONNECT admission,
//! `matchPolicy: Equivalent` (a rule matches the requested group/version only),
//! `matchConditions`, `reinvocationPolicy`, `/scale` and a namespace's `/finalize`. A
//! `clientConfig.service` cannot be reached (a Service here routes nowhere): the call fails, and
//! `failurePolicy` decides.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::faults::Faults;
use crate::handlers::{self, Reply, ResourceRequest};
use crate::registry::ResourceType;
use crate::router::Verb;
use crate::status::{ApiError, ApiResult};
use crate::store::Store;

const GROUP: &str = "admissionregistration.k8s.io";
const VALIDATING: &str = "admissionregistration.k8s.io/validatingwebhookconfigurations";
const MUTATING: &str = "admissionregistration.k8s.io/mutatingwebhookconfigurations";
/// How often a commit that lost a race with another write starts again.
const ATTEMPTS: usize = 8;

/// One webhook of a configuration, with whether it mutates.
struct Hook {
    mutating: bool,
    spec: Value,
}

impl Hook {
    fn name(&self) -> &str {
        self.spec["name"].as_str().unwrap_or("")
    }
}

/// Handles a resource request, calling admission webhooks around the writes they concern.
pub async fn handle(
    store: &Arc<Store>,
    faults: &Faults,
    r: ResourceRequest<'_>,
) -> ApiResult<Reply> {
    let concerned = match r.verb {
        Verb::Create | Verb::Update | Verb::Patch => {
            !matches!(r.path.subresource.as_deref(), Some("scale" | "finalize"))
        }
        Verb::Delete => r.path.subresource.is_none(),
        _ => false,
    } && r.path.group != GROUP;
    if !concerned {
        return handlers::handle(store, faults, r);
    }
    let (rt, hooks) = {
        let st = store.lock();
        let Some(rt) = st
            .registry
            .get(&r.path.group, &r.path.version, &r.path.plural)
        else {
            drop(st);
            return handlers::handle(store, faults, r);
        };
        let mut hooks = vec![];
        for (key, mutating) in [(MUTATING, true), (VALIDATING, false)] {
            for (_, config) in st.range(key, None, None) {
                for spec in config["webhooks"].as_array().into_iter().flatten() {
                    hooks.push(Hook {
                        mutating,
                        spec: spec.clone(),
                    });
                }
            }
        }
        (rt, hooks)
    };
    if hooks.is_empty() {
        return handlers::handle(store, faults, r);
    }
    let dry_run = r.query.get("dryRun").is_some_and(|d| d == "All") && !r.planning;
    if r.verb == Verb::Delete {
        return delete(store, faults, r, &rt, &hooks, dry_run).await;
    }
    let mut dry_query: HashMap<String, String> = r.query.clone();
    dry_query.insert("dryRun".into(), "All".into());
    for _ in 0..ATTEMPTS {
        // Step 1: what the write would store.
        let planned = handlers::handle(
            store,
            faults,
            ResourceRequest {
                path: r.path,
                verb: r.verb,
                query: &dry_query,
                content_type: r.content_type.clone(),
                accept: r.accept.clone(),
                body: r.body.clone(),
                field_manager: r.field_manager.clone(),
                seen: r.seen.clone(),
                planning: r.planning,
            },
        )?;
        let Reply::Object(code, planned, warnings) = planned else {
            return handlers::handle(store, faults, r);
        };
        let created = code == 201;
        let mut object = (*planned).clone();
        let (old, namespace_labels) = {
            let st = store.lock();
            let ns = object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let old = if created {
                None
            } else {
                let old = match st.get(&rt.key(), &ns, crate::meta::name_of(&object)) {
                    Some(o) => Some(handlers::seen_as_requested(o, &rt, &r)?),
                    None => None,
                };
                if old
                    .as_ref()
                    .and_then(|o| o.pointer("/metadata/resourceVersion"))
                    != object.pointer("/metadata/resourceVersion")
                {
                    continue; // changed since the dry run
                }
                old
            };
            let labels = namespace_labels(&st, &rt, &object);
            (old, labels)
        };
        let operation = if created { "CREATE" } else { "UPDATE" };
        let matching: Vec<&Hook> = hooks
            .iter()
            .filter(|h| {
                applies(
                    &h.spec,
                    operation,
                    &rt,
                    r.path.subresource.as_deref(),
                    namespace_labels.as_ref(),
                    &object,
                    old.as_deref(),
                )
            })
            .collect();
        if matching.is_empty() {
            return handlers::handle(store, faults, r);
        }
        // Step 2: the webhooks, mutating before validating, no lock held.
        let request = |object: &Value| review(&rt, &r, operation, object, old.as_deref(), dry_run);
        for hook in matching.iter().filter(|h| h.mutating) {
            if let Some(patch) = admit(hook, request(&object)).await? {
                object = crate::patch::json_patch(&object, &patch).map_err(|e| {
                    ApiError::internal(format!(
                        "admission webhook {:?} returned a patch that does not apply: {e:?}",
                        hook.name()
                    ))
                })?;
            }
        }
        let validating = matching.iter().filter(|h| !h.mutating);
        let answers =
            futures::future::join_all(validating.map(|hook| admit(hook, request(&object)))).await;
        for answer in answers {
            answer?;
        }
        if dry_run {
            return Ok(Reply::Object(code, Arc::new(object), warnings));
        }
        // Step 3: the commit, conditional on the object being as it was in step 1.
        match handlers::commit(store, &rt, &r, created, object) {
            Err(e) if e.code == 409 && e.reason == "Conflict" && !created => continue,
            other => return other,
        }
    }
    Err(ApiError::conflict_msg(
        &rt.group,
        &rt.plural,
        r.path.name.as_deref().unwrap_or(""),
        "the object kept changing while its admission webhooks were called",
    ))
}

/// DELETE: the webhooks see the stored object as `oldObject` (mutating ones cannot change
/// anything), then the delete runs as requested. The object may change between the calls and the
/// delete, which the request's own preconditions (`uid`, `resourceVersion`) can rule out.
async fn delete(
    store: &Arc<Store>,
    faults: &Faults,
    r: ResourceRequest<'_>,
    rt: &ResourceType,
    hooks: &[Hook],
    dry_run: bool,
) -> ApiResult<Reply> {
    let (old, labels) = {
        let st = store.lock();
        let ns = r.path.namespace.as_deref().unwrap_or("");
        let name = r.path.name.as_deref().unwrap_or("");
        let old = st
            .get(&rt.key(), ns, name)
            .map(|o| crate::ops::present(o, rt));
        let labels = old.as_ref().and_then(|o| namespace_labels(&st, rt, o));
        (old, labels)
    };
    let Some(old) = old else {
        return handlers::handle(store, faults, r); // not found
    };
    let matching = hooks.iter().filter(|h| {
        applies(
            &h.spec,
            "DELETE",
            rt,
            None,
            labels.as_ref(),
            &Value::Null,
            Some(&*old),
        )
    });
    let mut review = review(rt, &r, "DELETE", &old, Some(&*old), dry_run);
    review["request"]["object"] = Value::Null;
    let (mutating, validating): (Vec<&Hook>, Vec<&Hook>) = matching.partition(|h| h.mutating);
    for hook in mutating {
        admit(hook, review.clone()).await?;
    }
    let answers =
        futures::future::join_all(validating.iter().map(|h| admit(h, review.clone()))).await;
    for answer in answers {
        answer?;
    }
    handlers::handle(store, faults, r)
}

/// The labels a `namespaceSelector` is matched against: the object's own for a Namespace, its
/// namespace's for a namespaced object, none for other cluster-scoped ones (which every
/// `namespaceSelector` takes).
fn namespace_labels(st: &crate::store::State, rt: &ResourceType, object: &Value) -> Option<Value> {
    if rt.group.is_empty() && rt.plural == "namespaces" {
        object.pointer("/metadata/labels").cloned()
    } else if rt.namespaced {
        let ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        st.get("/namespaces", "", ns)
            .and_then(|n| n.pointer("/metadata/labels").cloned())
    } else {
        None
    }
}

/// Whether `hook`'s rules and selectors take this request.
fn applies(
    hook: &Value,
    operation: &str,
    rt: &ResourceType,
    subresource: Option<&str>,
    namespace_labels: Option<&Value>,
    object: &Value,
    old: Option<&Value>,
) -> bool {
    let has = |list: &Value, want: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|v| v == "*" || v == want))
    };
    let resource = match subresource {
        Some(s) => format!("{}/{s}", rt.plural),
        None => rt.plural.clone(),
    };
    let resource_matches = |pattern: &str| match (pattern, subresource) {
        ("*/*", _) => true,
        ("*", None) => true,
        (p, _) if p == resource => true,
        (p, Some(s)) => p == format!("{}/*", rt.plural) || p == format!("*/{s}"),
        _ => false,
    };
    let rule_matches = |rule: &Value| {
        has(&rule["operations"], operation)
            && has(&rule["apiGroups"], &rt.group)
            && has(&rule["apiVersions"], &rt.version)
            && rule["resources"]
                .as_array()
                .is_some_and(|l| l.iter().filter_map(Value::as_str).any(resource_matches))
            && match rule["scope"].as_str() {
                None | Some("*") => true,
                Some("Namespaced") => rt.namespaced,
                Some("Cluster") => !rt.namespaced,
                Some(_) => false,
            }
    };
    let rules = hook["rules"].as_array();
    if !rules.is_some_and(|rules| rules.iter().any(rule_matches)) {
        return false;
    }
    let namespace_ok = !(rt.namespaced || rt.group.is_empty() && rt.plural == "namespaces")
        || selects(&hook["namespaceSelector"], namespace_labels);
    let labels = |o: &Value| o.pointer("/metadata/labels").cloned();
    let object_ok = selects(&hook["objectSelector"], labels(object).as_ref())
        || old.is_some_and(|o| selects(&hook["objectSelector"], labels(o).as_ref()));
    namespace_ok && object_ok
}

/// A `metav1.LabelSelector` (absent or empty: everything) against labels.
fn selects(selector: &Value, labels: Option<&Value>) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let by_labels = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let by_expressions = selector["matchExpressions"].as_array().is_none_or(|es| {
        es.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e["operator"].as_str() {
                Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                Some("Exists") => label(key).is_some(),
                Some("DoesNotExist") => label(key).is_none(),
                _ => false,
            }
        })
    });
    by_labels && by_expressions
}

/// The `AdmissionReview` sent for this request.
fn review(
    rt: &ResourceType,
    r: &ResourceRequest<'_>,
    operation: &str,
    object: &Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Value {
    let kind = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
    let resource = json!({"group": rt.group, "version": rt.version, "resource": rt.plural});
    let options_kind = match (operation, r.verb) {
        (_, Verb::Delete) => "DeleteOptions",
        (_, Verb::Patch) => "PatchOptions",
        ("CREATE", _) => "CreateOptions",
        _ => "UpdateOptions",
    };
    let mut request = json!({
        "uid": crate::meta::new_uid(),
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": crate::meta::name_of(object),
        "operation": operation,
        "userInfo": {"username": "system:admin", "groups": ["system:masters", "system:authenticated"]},
        "object": object,
        "oldObject": old,
        "dryRun": dry_run,
        "options": {
            "apiVersion": "meta.k8s.io/v1",
            "kind": options_kind,
            "fieldManager": r.field_manager,
        },
    });
    if let Some(s) = &r.path.subresource {
        request["subResource"] = s.as_str().into();
        request["requestSubResource"] = s.as_str().into();
    }
    if rt.namespaced {
        request["namespace"] = object
            .pointer("/metadata/namespace")
            .cloned()
            .unwrap_or_default();
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// Calls one webhook: `Ok(Some(patch))` for a mutation, `Ok(None)` when admitted as is (or when
/// the call failed under `failurePolicy: Ignore`), `Err` for a denial or a failed call under
/// `Fail`, with kube-apiserver's messages.
async fn admit(hook: &Hook, review: Value) -> ApiResult<Option<Value>> {
    let name = hook.name();
    let uid = review["request"]["uid"].clone();
    let timeout = Duration::from_secs(hook.spec["timeoutSeconds"].as_u64().unwrap_or(10));
    let answer = match tokio::time::timeout(
        timeout,
        crate::callout::post(&hook.spec["clientConfig"], &review),
    )
    .await
    {
        Ok(answer) => answer,
        Err(_) => Err(format!(
            "context deadline exceeded (timeoutSeconds: {})",
            timeout.as_secs()
        )),
    };
    let response = answer.and_then(|review| {
        let response = review
            .get("response")
            .cloned()
            .ok_or("the webhook's AdmissionReview has no response")?;
        if response["uid"] != uid {
            return Err(format!(
                "expected response.uid={uid}, got {}",
                response["uid"]
            ));
        }
        Ok(response)
    });
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(webhook = name, error = %e, "failed calling admission webhook");
            return match hook.spec["failurePolicy"].as_str() {
                Some("Ignore") => Ok(None),
                _ => Err(ApiError::internal(format!(
                    "Internal error occurred: failed calling webhook {name:?}: {e}"
                ))),
            };
        }
    };
    if response["allowed"] != true {
        let status = &response["status"];
        let code = status["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| *c >= 400)
            .unwrap_or(400);
        let denied = format!("admission webhook {name:?} denied the request");
        let message = match (status["message"].as_str(), status["reason"].as_str()) {
            (Some(m), _) if !m.is_empty() => format!("{denied}: {m}"),
            (_, Some(r)) if !r.is_empty() => format!("{denied}: {r}"),
            _ => format!("{denied} without explanation"),
        };
        let mut e = ApiError::new(code, status["reason"].as_str().unwrap_or(""), message);
        e.details = status.get("details").cloned();
        return Err(e);
    }
    let patch = &response["patch"];
    if patch.is_null() {
        return Ok(None);
    }
    let fail = |why: String| {
        ApiError::internal(format!(
            "admission webhook {name:?} returned an invalid patch: {why}"
        ))
    };
    if !hook.mutating {
        return Err(fail("a validating webhook may not mutate".into()));
    }
    if response["patchType"] != "JSONPatch" {
        return Err(fail(format!(
            "unsupported patchType {}",
            response["patchType"]
        )));
    }
    // Bytes, which Go's decoder (and so kube-apiserver) takes as base64 or as an array of
    // numbers (what kube-core's `AdmissionResponse` sends).
    let bytes: Vec<u8> = match patch {
        Value::String(_) => serde_json::from_value::<k8s_openapi::ByteString>(patch.clone())
            .map(|b| b.0)
            .map_err(|e| fail(e.to_string()))?,
        _ => serde_json::from_value(patch.clone()).map_err(|e| fail(e.to_string()))?,
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configmaps() -> ResourceType {
        crate::registry::Registry::with_builtins()
            .get("", "v1", "configmaps")
            .map(|t| (*t).clone())
            .unwrap()
    }

    fn hook(rule: Value) -> Value {
        json!({"name": "h", "rules": [rule]})
    }

    #[test]
    fn rules_match_group_version_operation_resource_and_scope() {
        let rt = configmaps();
        let obj = json!({"metadata": {"name": "a"}});
        let yes =
            |h: &Value, op: &str, sub: Option<&str>| applies(h, op, &rt, sub, None, &obj, None);
        let rule = json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]});
        assert!(yes(&hook(rule.clone()), "CREATE", None));
        assert!(!yes(&hook(rule.clone()), "UPDATE", None));
        assert!(!yes(&hook(rule), "CREATE", Some("status")));
        let any = json!({"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]});
        assert!(yes(&hook(any.clone()), "UPDATE", None));
        assert!(
            !yes(&hook(any), "UPDATE", Some("status")),
            "`*` is no subresource"
        );
        for resources in [
            json!(["*/*"]),
            json!(["configmaps/*"]),
            json!(["*/status"]),
            json!(["configmaps/status"]),
        ] {
            let rule = json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": resources});
            assert!(yes(&hook(rule), "UPDATE", Some("status")), "{resources}");
        }
        let other = json!({"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["*"], "resources": ["*"]});
        assert!(!yes(&hook(other), "CREATE", None));
        let cluster = json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"], "resources": ["*"], "scope": "Cluster"});
        assert!(!yes(&hook(cluster), "CREATE", None));
        assert!(!yes(&json!({"name": "no rules"}), "CREATE", None));
    }

    #[test]
    fn selectors_match_namespace_and_object_labels() {
        let rt = configmaps();
        let any = json!({"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]});
        let mut h = hook(any);
        h["namespaceSelector"] = json!({"matchLabels": {"team": "a"}});
        h["objectSelector"] = json!({"matchExpressions": [
            {"key": "skip", "operator": "DoesNotExist"},
            {"key": "tier", "operator": "In", "values": ["web", "db"]},
        ]});
        let ns = json!({"team": "a"});
        let obj = |labels: Value| json!({"metadata": {"name": "x", "labels": labels}});
        let web = obj(json!({"tier": "web"}));
        assert!(applies(&h, "CREATE", &rt, None, Some(&ns), &web, None));
        assert!(!applies(
            &h,
            "CREATE",
            &rt,
            None,
            Some(&json!({"team": "b"})),
            &web,
            None
        ));
        assert!(!applies(&h, "CREATE", &rt, None, None, &web, None));
        let skipped = obj(json!({"tier": "web", "skip": "1"}));
        assert!(!applies(&h, "CREATE", &rt, None, Some(&ns), &skipped, None));
        // The old object's labels count too, as in kube-apiserver.
        assert!(applies(
            &h,
            "UPDATE",
            &rt,
            None,
            Some(&ns),
            &skipped,
            Some(&web)
        ));
        assert!(selects(&json!({}), None));
        assert!(selects(&Value::Null, None));
        let not_in =
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]});
        assert!(selects(&not_in, None));
        assert!(!selects(&not_in, Some(&json!({"tier": "db"}))));
    }
}
