//! The write semantics of kube-apiserver, independent of HTTP: create, update (main resource or
//! `/status`), and delete with finalizers and propagation policies. Each operation validates the
//! complete new object first and commits with a single store call at the end, so a rejected
//! request changes nothing.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::crd::{self, CRD_KEY};
use crate::events;
use crate::meta::{self, meta_mut};
use crate::registry::ResourceType;
use crate::status::{ApiError, ApiResult, Cause};
use crate::store::State;

/// The `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop unknown fields and warn (the server default).
    #[default]
    Warn,
    /// Reject unknown fields with 400.
    Strict,
}

/// Per-request options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    /// `dryRun=All`: compute and validate, but do not store.
    pub dry_run: bool,
    /// `fieldManager`, or the manager derived from the user agent.
    pub field_manager: String,
    /// How to treat unknown fields of custom resources.
    pub validation: FieldValidation,
    /// Set by server-side apply, which computes `managedFields` itself.
    pub managed_fields_done: bool,
    /// The stored object as the request's version sees it, made by the CRD's conversion
    /// webhook ([`crate::handlers::ResourceRequest::seen`]).
    pub seen: Option<Arc<Value>>,
}

/// The result of a successful create or update.
#[derive(Debug)]
pub struct Written {
    /// The stored object (or what would be stored, for dry runs).
    pub object: Arc<Value>,
    /// `Warning` headers to return.
    pub warnings: Vec<String>,
    /// The write changed nothing: the object is the stored one, at the same resourceVersion.
    pub unchanged: bool,
}

/// The `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Remove owner references from dependents, keep them.
    Orphan,
    /// Delete the owner now, dependents afterwards.
    Background,
    /// Delete dependents (with `blockOwnerDeletion`) before the owner.
    Foreground,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// Explicit propagation policy, else the resource's default.
    pub policy: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

/// What a delete did.
#[derive(Debug)]
pub enum Deleted {
    /// The object is gone; this is its last state.
    Gone(Arc<Value>),
    /// The object has finalizers and now carries a deletionTimestamp.
    Pending(Arc<Value>),
}

fn ns_key() -> &'static str {
    "/namespaces"
}

/// Returns the object as seen through `rt`'s version (custom resources are stored in whatever
/// version wrote them; conversion between versions only changes `apiVersion`, or is left to the
/// CRD's conversion webhook, see [`crate::conversion`]; Events are stored in the core form, see
/// [`events`]).
pub fn present(obj: &Arc<Value>, rt: &ResourceType) -> Arc<Value> {
    if events::is_events_api(rt) {
        return Arc::new(events::to_events_api(obj));
    }
    if !rt.custom
        || rt.conversion_webhook.is_some()
        || obj.get("apiVersion").and_then(Value::as_str) == Some(&rt.api_version())
    {
        return obj.clone();
    }
    let mut o = (**obj).clone();
    o["apiVersion"] = rt.api_version().into();
    Arc::new(o)
}

/// Checks `apiVersion`/`kind` of a request body against the URL, filling them when absent.
pub fn check_type_meta(st: &State, obj: &mut Value, rt: &ResourceType) -> ApiResult<()> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: the request body must be a JSON object",
            rt.kind, rt.version, rt.kind
        )));
    };
    // Custom resources are decoded as unstructured objects, which must name their kind and
    // apiVersion (built-in kinds default both from the URL).
    if rt.custom {
        let missing = |k: &str| map.get(k).and_then(Value::as_str).is_none_or(str::is_empty);
        let which = if missing("kind") {
            Some("Kind")
        } else if missing("apiVersion") {
            Some("apiVersion")
        } else {
            None
        };
        if let Some(which) = which {
            let body = serde_json::to_string(&*map).unwrap_or_default();
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: unmarshalerDecoder: Object '{which}' is missing in '{body}'",
                rt.kind, rt.version, rt.kind
            )));
        }
    }
    let want_av = rt.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), want_av.clone().into());
        }
        Some(av) if av == want_av => {}
        Some(av) => {
            let same_group_other_version = rt.custom
                && av.split_once('/').is_some_and(|(g, v)| {
                    g == rt.group && st.registry.get(g, v, &rt.plural).is_some()
                });
            if !same_group_other_version {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )));
            }
            map.insert("apiVersion".into(), want_av.clone().into());
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), rt.kind.clone().into());
        }
        Some(k) if k == rt.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )));
        }
    }
    match map.get("metadata") {
        None | Some(Value::Null) => {
            map.insert("metadata".into(), json!({}));
        }
        Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: metadata must be an object",
                rt.kind, rt.version, rt.kind
            )));
        }
    }
    Ok(())
}

fn namespace_for(rt: &ResourceType, url_ns: Option<&str>, obj: &mut Value) -> ApiResult<String> {
    let m = meta_mut(obj);
    if !rt.namespaced {
        m.remove("namespace");
        return Ok(String::new());
    }
    let url_ns = url_ns.unwrap_or("");
    match m.get("namespace").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n != url_ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            m.insert("namespace".into(), url_ns.into());
            Ok(url_ns.to_string())
        }
    }
}

/// 404 when the namespace is missing, 403 when it is terminating (creates only).
pub fn check_namespace(st: &State, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<()> {
    if !rt.namespaced {
        return Ok(());
    }
    match st.get(ns_key(), "", ns) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if meta::is_deleting(n) => Err(ApiError::forbidden(
            &rt.group,
            &rt.plural,
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Validates, prunes and defaults a custom resource against its version's schema.
///
/// The object is pruned in place, once: the pruned paths are the unknown fields that
/// `fieldValidation` reports, and a rejected object is dropped by the caller anyway, so nothing
/// needs a copy. `metadata`, `apiVersion` and `kind` are left as sent: the schema functions skip
/// them at the root (the server checks them itself).
fn validate_custom(
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    opts: &WriteOpts,
) -> ApiResult<Vec<String>> {
    let Some(schema) = &rt.schema else {
        return Ok(vec![]);
    };
    let pruned = crate::schema::prune_unknown_fields(obj, schema);
    let unknown: Vec<String> = match opts.validation {
        FieldValidation::Ignore => vec![],
        _ => pruned
            .into_iter()
            .filter(|p| !p.starts_with("metadata") && p != "apiVersion" && p != "kind")
            .collect(),
    };
    if opts.validation == FieldValidation::Strict && !unknown.is_empty() {
        let msgs: Vec<String> = unknown
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect();
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            msgs.join(", ")
        )));
    }
    crate::schema::apply_defaults(obj, schema);
    let mut errors = crate::schema::validate(obj, schema);
    if errors.is_empty() {
        errors = crate::schema::validate_rules(obj, old, schema);
    }
    if !errors.is_empty() {
        let name = meta::name_of(obj).to_string();
        let causes = errors
            .into_iter()
            .map(|e| Cause {
                reason: e.reason,
                message: e.message,
                field: e.field,
            })
            .collect();
        return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
    }
    Ok(unknown
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect())
}

/// Validates an object about to be stored; `old` is the stored object of an update, whose
/// immutable fields (see [`crate::immutable`]) the new object must keep (a `/status` write
/// keeps them by construction: it changes only `status`).
fn validate_common(
    st: &State,
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    opts: &WriteOpts,
) -> ApiResult<Vec<String>> {
    let name = meta::name_of(obj).to_string();
    let mut causes = meta::validate_metadata(obj, meta::name_rule(&rt.group, &rt.plural));
    if let Some(old) = old {
        causes.extend(crate::immutable::check(rt, old, obj));
    }
    if rt.key() == CRD_KEY {
        causes.extend(crd::validate(obj));
        if let Some(old) = old {
            crd::validate_update(old, obj)?;
        } else if causes.is_empty() {
            let group = obj
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("");
            let plural = obj
                .pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or("");
            if st
                .registry
                .any_version(group, plural)
                .is_some_and(|t| !t.custom)
            {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: "Invalid value: \"...\": conflicts with a built-in resource".into(),
                    field: "spec.names.plural".into(),
                });
            }
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
    }
    if rt.custom {
        validate_custom(rt, obj, old, opts)
    } else {
        Ok(vec![])
    }
}

/// Resource-specific defaults on create, mirroring each kind's create strategy.
fn prepare_create(st: &mut State, rt: &ResourceType, obj: &mut Value) {
    if rt.status_subresource {
        if rt.custom {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        } else {
            obj["status"] = json!({});
        }
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => {
            obj["status"] = json!({"phase": "Active"});
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            let name = meta::name_of(obj).to_string();
            let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), name.into());
            }
        }
        ("", "pods") => obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"}),
        ("", "services") => {
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            let spec = obj["spec"].as_object_mut().expect("object");
            spec.entry("type").or_insert_with(|| "ClusterIP".into());
            spec.entry("sessionAffinity")
                .or_insert_with(|| "None".into());
            if spec.get("clusterIP").and_then(Value::as_str) == Some("None") {
                spec.entry("clusterIPs").or_insert_with(|| json!(["None"]));
            } else {
                let n = st.next_cluster_ip;
                st.next_cluster_ip += 1;
                let ip = format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff);
                spec.insert("clusterIP".into(), ip.clone().into());
                spec.insert("clusterIPs".into(), json!([ip]));
            }
        }
        ("apps", "deployments" | "statefulsets" | "replicasets") => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.entry("replicas").or_insert_with(|| 1.into());
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            crd::default(obj);
            crd::set_established(obj);
        }
        _ => {}
    }
}

/// Records field ownership of a non-apply write in `metadata.managedFields`.
fn track_managed_fields(rt: &ResourceType, old: Option<&Value>, new: &mut Value, opts: &WriteOpts) {
    if opts.managed_fields_done || opts.field_manager.is_empty() {
        return;
    }
    crate::patch::update_managed_fields_with_schema(
        old,
        new,
        &opts.field_manager,
        &rt.gvk_string(),
        &meta::now(),
        rt.schema.as_deref(),
    );
}

/// POST: creates an object (or, for dry runs, says what would be created).
pub fn create(
    st: &mut State,
    rt: &ResourceType,
    url_ns: Option<&str>,
    mut obj: Value,
    opts: &WriteOpts,
) -> ApiResult<Written> {
    check_type_meta(st, &mut obj, rt)?;
    let ns = namespace_for(rt, url_ns, &mut obj)?;
    let m = meta_mut(&mut obj);
    if m.get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let name = m
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = if name.is_empty() {
        match m.get("generateName").and_then(Value::as_str) {
            Some(g) if !g.is_empty() => {
                // Like the real server, keep at most 58 bytes of the prefix so that the name
                // with its 5-character suffix fits the 63 a name may have.
                let mut end = g.len().min(58);
                while !g.is_char_boundary(end) {
                    end -= 1;
                }
                let g = &g[..end];
                let mut candidate;
                loop {
                    candidate = format!("{g}{}", meta::random_suffix());
                    if st.get(&rt.key(), &ns, &candidate).is_none() {
                        break;
                    }
                }
                m.insert("name".into(), candidate.clone().into());
                candidate
            }
            _ => name,
        }
    } else {
        name
    };
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
        "selfLink",
    ] {
        m.remove(k);
    }
    m.insert("uid".into(), meta::new_uid().into());
    m.insert("creationTimestamp".into(), meta::now().into());
    if meta::tracks_generation(rt) {
        m.insert("generation".into(), 1.into());
    } else {
        m.remove("generation");
    }
    let warnings = validate_common(st, rt, &mut obj, None, opts)?;
    if events::is_events_api(rt) {
        events::to_core(&mut obj);
    }
    check_namespace(st, rt, &ns, &name)?;
    if st.get(&rt.key(), &ns, &name).is_some() {
        return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
    }
    prepare_create(st, rt, &mut obj);
    track_managed_fields(rt, None, &mut obj, opts);
    if opts.dry_run {
        return Ok(Written {
            object: Arc::new(obj),
            warnings,
            unchanged: false,
        });
    }
    let stored = st.put(&rt.key(), &ns, &name, obj);
    if rt.key() == CRD_KEY {
        crd::register(st, &stored);
    }
    if rt.key() == "/namespaces" {
        publish_root_ca(st, &name);
    }
    Ok(Written {
        object: stored,
        warnings,
        unchanged: false,
    })
}

/// The name of the ConfigMap kube-controller-manager's root-CA publisher puts into every
/// namespace (feature `RootCAConfigMap`: on by default since 1.20, GA in 1.21).
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// A self-signed CA certificate for [`ROOT_CA_CONFIGMAP`]: the embedded server serves plain
/// HTTP, so no client verifies anything against it; it only has the real one's shape.
const ROOT_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBmDCCAT2gAwIBAgIUZ4FP1/UkNZTydjMNBrBexUOXBQMwCgYIKoZIzj0EAwIw\nIDEeMBwGA1UEAwwVc3RhaXJjYXNlLWVtYmVkZGVkLWNhMCAXDTI2MTEyMjAzMzIw\nMFoYDzIxMjYxMDI5MDMzMjAwWjAgMR4wHAYDVQQDDBVzdGFpcmNhc2UtZW1iZWRk\nZWQtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAS7KLKSuWvZIywHWoUuQnqt\nFVROQqlNYsoNQnv71pee6V6UdMEfIK/9gkl50I0X3SASfcd7oa4NYMz9H/t9syrS\no1MwUTAdBgNVHQ4EFgQUGoeDoqvyKXs0TNd2W162+XJ5mFUwHwYDVR0jBBgwFoAU\nGoeDoqvyKXs0TNd2W162+XJ5mFUwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD\nAgNJADBGAiEArEV7QAanzAEatRMuOoJoHWEmsF8WosataEeMpwKMsqYCIQDT1NjY\npW0oBXOb/E4Y27S2Pd1Kv0v9UXZp7PYJOqjIkw==\n-----END CERTIFICATE-----\n";

/// Like kube-controller-manager's root-CA publisher: every new namespace gets the ConfigMap
/// [`ROOT_CA_CONFIGMAP`] with `data["ca.crt"]`. The real controller does it moments after the
/// namespace appears (and restores the ConfigMap when it is changed or deleted); here it happens
/// within the namespace's create, once.
fn publish_root_ca(st: &mut State, namespace: &str) {
    let Some(cms) = st.registry.get("", "v1", "configmaps") else {
        return;
    };
    let obj = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": namespace},
        "data": {"ca.crt": ROOT_CA_PEM},
    });
    let opts = WriteOpts {
        field_manager: "kube-controller-manager".into(),
        ..Default::default()
    };
    if let Err(e) = create(st, &cms, Some(namespace), obj, &opts) {
        tracing::warn!(namespace, error = ?e, "cannot publish {ROOT_CA_CONFIGMAP}");
    }
}

/// PUT: replaces an object (main resource or a subresource).
#[allow(clippy::too_many_arguments)]
pub fn update(
    st: &mut State,
    rt: &ResourceType,
    url_ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    mut new: Value,
    opts: &WriteOpts,
) -> ApiResult<Written> {
    check_type_meta(st, &mut new, rt)?;
    let ns = namespace_for(rt, url_ns, &mut new)?;
    let m = meta_mut(&mut new);
    match m.get("name").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("name".into(), name.into());
        }
        Some(n) if n == name => {}
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    let Some(old) = st.get(&rt.key(), &ns, name).cloned() else {
        if rt.key() == "coordination.k8s.io/leases" && subresource.is_none() {
            meta_mut(&mut new).remove("resourceVersion");
            return create(st, rt, url_ns, new, opts);
        }
        return Err(ApiError::not_found(&rt.group, &rt.plural, name));
    };
    let body_rv = meta_mut(&mut new)
        .get("resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !body_rv.is_empty()
        && Some(body_rv.as_str())
            != old
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
    {
        return Err(ApiError::conflict(&rt.group, &rt.plural, name));
    }
    apply_update(st, rt, &old, new, subresource, opts)
}

/// The shared tail of PUT and PATCH: `new` is the complete desired object, `old` the stored one.
pub fn apply_update(
    st: &mut State,
    rt: &ResourceType,
    old: &Arc<Value>,
    new: Value,
    subresource: Option<&str>,
    opts: &WriteOpts,
) -> ApiResult<Written> {
    // Through a conversion webhook the write is merged into, and compared with, the stored
    // object as its own version sees it (same metadata, another version's body).
    let old = match &opts.seen {
        Some(seen)
            if seen.pointer("/metadata/resourceVersion")
                == old.pointer("/metadata/resourceVersion") =>
        {
            seen
        }
        _ => old,
    };
    let ns = old
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = meta::name_of(old).to_string();
    let mut new = match subresource {
        Some(_) => {
            // Status writes change only status (and nothing in metadata).
            let mut o = (**old).clone();
            match new.get("status") {
                Some(s) if !s.is_null() => o["status"] = s.clone(),
                _ => {
                    if let Some(m) = o.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if let Some(mf) = new.pointer("/metadata/managedFields") {
                meta_mut(&mut o).insert("managedFields".into(), mf.clone());
            }
            o
        }
        None => {
            let mut n = new;
            if rt.status_subresource {
                match old.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(m) = n.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            n
        }
    };
    // Without a conversion webhook versions differ in name only: the object keeps the stored one.
    if rt.custom
        && rt.conversion_webhook.is_none()
        && new.get("apiVersion") != old.get("apiVersion")
    {
        new["apiVersion"] = old["apiVersion"].clone();
    }
    // Server-owned metadata always comes from the stored object.
    let no_meta = serde_json::Map::new();
    let old_meta = old
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&no_meta);
    {
        let m = meta_mut(&mut new);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "resourceVersion",
        ] {
            match old_meta.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
        if !m.contains_key("managedFields")
            && let Some(mf) = old_meta.get("managedFields")
        {
            m.insert("managedFields".into(), mf.clone());
        }
        m.remove("selfLink");
    }
    if meta::is_deleting(old) {
        let before = meta::finalizers(old);
        let added: Vec<String> = meta::finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                &name,
                vec![Cause {
                    reason: "FieldValueForbidden".into(),
                    message: format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                        added
                            .iter()
                            .map(|f| format!("{f:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    field: "metadata.finalizers".into(),
                }],
            ));
        }
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") if subresource.is_none() => {
            new["status"] = old
                .get("status")
                .cloned()
                .unwrap_or(json!({"phase": "Active"}));
        }
        ("", "services") => {
            // Like kube-apiserver's patchAllocatedValues: a client that resubmits a Service
            // without the allocated cluster IPs (missing or empty) keeps them.
            let external =
                |s: &Value| s.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName");
            let keeps_ips = !external(old) && !external(&new);
            if keeps_ips && let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                let unset = |v: Option<&Value>| {
                    v.is_none_or(|v| {
                        v.is_null()
                            || v.as_str() == Some("")
                            || v.as_array().is_some_and(Vec::is_empty)
                    })
                };
                for key in ["clusterIP", "clusterIPs"] {
                    if let Some(kept) = old.pointer(&format!("/spec/{key}"))
                        && !unset(Some(kept))
                        && unset(spec.get(key))
                    {
                        spec.insert(key.into(), kept.clone());
                    }
                }
            }
        }
        _ => {}
    }
    let warnings = validate_common(st, rt, &mut new, Some(old), opts)?;
    if events::is_events_api(rt) {
        events::to_core(&mut new);
    }
    // Deployments also count annotation changes (they are copied to the ReplicaSets).
    let deployment_annotations = rt.group == "apps"
        && rt.plural == "deployments"
        && old.pointer("/metadata/annotations") != new.pointer("/metadata/annotations");
    if subresource.is_none()
        && meta::tracks_generation(rt)
        && (meta::spec_changed(old, &new, rt.status_subresource) || deployment_annotations)
    {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), (g + 1).into());
    }
    // Like kube-apiserver's IgnoreManagedFieldsTimestampsTransformer: a write that would change
    // nothing but the managed fields' timestamps (a server-side apply of what is stored, a second
    // later) keeps the old ones, so it is a no-op below.
    if new != **old
        && same_but_managed_times(&new, old)
        && let (Some(m), Some(kept)) = (
            new.get_mut("metadata").and_then(Value::as_object_mut),
            old.pointer("/metadata/managedFields"),
        )
    {
        m.insert("managedFields".into(), kept.clone());
    }
    // Like etcd's GuaranteedUpdate: an unchanged object is not written (no new resourceVersion,
    // no watch event), which keeps level-triggered controllers from looping on their own no-ops.
    if new == **old {
        return Ok(Written {
            object: old.clone(),
            warnings,
            unchanged: !opts.dry_run,
        });
    }
    track_managed_fields(rt, Some(old), &mut new, opts);
    if opts.dry_run {
        return Ok(Written {
            object: Arc::new(new),
            warnings,
            unchanged: false,
        });
    }
    let namespace_blocked = rt.key() == "/namespaces"
        && new
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    if meta::is_deleting(&new) && meta::finalizers(&new).is_empty() && !namespace_blocked {
        let last = remove(st, &rt.key(), &ns, &name, Some(new)).expect("present");
        return Ok(Written {
            object: last,
            warnings,
            unchanged: false,
        });
    }
    let stored = st.put(&rt.key(), &ns, &name, new);
    if rt.key() == CRD_KEY {
        crd::register(st, &stored);
    }
    Ok(Written {
        object: stored,
        warnings,
        unchanged: false,
    })
}

/// Whether `a` and `b` differ at most in their `metadata.managedFields[*].time`.
fn same_but_managed_times(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut c = v.clone();
        if let Some(entries) = c
            .pointer_mut("/metadata/managedFields")
            .and_then(Value::as_array_mut)
        {
            for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("time");
            }
        }
        c
    };
    strip(a) == strip(b)
}

/// Removes an object for good, with the side effects of special resources.
pub fn remove(
    st: &mut State,
    key: &str,
    ns: &str,
    name: &str,
    last: Option<Value>,
) -> Option<Arc<Value>> {
    let last = st.remove(key, ns, name, last)?;
    if key == CRD_KEY {
        crd::unregister(st, &last);
    }
    Some(last)
}

fn default_policy(rt: &ResourceType) -> Propagation {
    // batch/v1 Jobs still default to orphaning their pods, for compatibility.
    if rt.group == "batch" && rt.plural == "jobs" {
        Propagation::Orphan
    } else {
        Propagation::Background
    }
}

fn set_deleting(obj: &mut Value) {
    let g = obj.pointer("/metadata/generation").and_then(Value::as_i64);
    let m = meta_mut(obj);
    if !m.contains_key("deletionTimestamp") {
        m.insert("deletionTimestamp".into(), meta::now().into());
        m.insert("deletionGracePeriodSeconds".into(), 0.into());
        if let Some(g) = g {
            m.insert("generation".into(), (g + 1).into());
        }
    }
}

fn add_finalizer(obj: &mut Value, f: &str) {
    let m = meta_mut(obj);
    let list = m.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(a) = list.as_array_mut()
        && !a.iter().any(|x| x == f)
    {
        a.push(f.into());
    }
}

/// Removes references to `owner_uid` from one dependent.
pub fn orphan(st: &mut State, key: &crate::store::FullKey, owner_uid: &str) {
    let Some(obj) = st.get(&key.0, &key.1, &key.2) else {
        return;
    };
    let mut o = (**obj).clone();
    if let Some(refs) = o
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
        if refs.is_empty() {
            meta_mut(&mut o).remove("ownerReferences");
        }
    }
    st.put(&key.0, &key.1, &key.2, o);
}

/// DELETE of one object.
pub fn delete(
    st: &mut State,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    opts: &DeleteOpts,
) -> ApiResult<Deleted> {
    let key = rt.key();
    let Some(old) = st.get(&key, ns, name).cloned() else {
        return Err(ApiError::not_found(&rt.group, &rt.plural, name));
    };
    // `rest.BeforeDelete` checks the preconditions first and names the object by its Kind, not
    // its resource, in the message and the details.
    if let Some(uid) = &opts.uid
        && uid != meta::uid_of(&old)
    {
        return Err(ApiError::conflict_msg(
            &rt.group,
            &rt.kind,
            name,
            &format!(
                "the UID in the precondition ({uid}) does not match the UID in record ({}). \
                 The object might have been deleted and then recreated",
                meta::uid_of(&old)
            ),
        ));
    }
    if let Some(rv) = &opts.resource_version {
        let cur = old
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if rv != cur {
            return Err(ApiError::conflict_msg(
                &rt.group,
                &rt.kind,
                name,
                &format!(
                    "the ResourceVersion in the precondition ({rv}) does not match the \
                     ResourceVersion in record ({cur}). The object might have been modified"
                ),
            ));
        }
    }
    let policy = opts.policy.unwrap_or_else(|| default_policy(rt));
    let uid = meta::uid_of(&old).to_string();
    if opts.dry_run {
        let mut o = (*old).clone();
        if !meta::finalizers(&o).is_empty() || policy == Propagation::Foreground {
            set_deleting(&mut o);
            return Ok(Deleted::Pending(Arc::new(o)));
        }
        return Ok(Deleted::Gone(old));
    }
    if key == "/namespaces" {
        if matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(ApiError::forbidden(
                "",
                "namespaces",
                name,
                "this namespace may not be deleted",
            ));
        }
        let mut o = (*old).clone();
        set_deleting(&mut o);
        o["status"]["phase"] = "Terminating".into();
        let stored = if o != *old {
            st.put(&key, "", name, o)
        } else {
            old.clone()
        };
        for k in st.keys_in_namespace(name) {
            if let Some(t) = resource_type_for_key(st, &k.0) {
                let _ = delete(st, &t, &k.1, &k.2, &DeleteOpts::default());
            }
        }
        st.gc_queue
            .push_back(crate::store::GcWork::CheckNamespace(name.to_string()));
        return Ok(Deleted::Pending(stored));
    }
    if meta::is_deleting(&old) {
        if policy == Propagation::Foreground
            && !meta::finalizers(&old)
                .iter()
                .any(|f| f == "foregroundDeletion")
        {
            let mut o = (*old).clone();
            add_finalizer(&mut o, "foregroundDeletion");
            let stored = st.put(&key, ns, name, o);
            delete_dependents_foreground(st, &uid);
            return Ok(Deleted::Pending(stored));
        }
        return Ok(Deleted::Pending(old));
    }
    match policy {
        Propagation::Orphan => {
            for d in st.dependents_of(&uid) {
                orphan(st, &d, &uid);
            }
        }
        Propagation::Foreground => {
            let mut o = (*old).clone();
            add_finalizer(&mut o, "foregroundDeletion");
            set_deleting(&mut o);
            let stored = st.put(&key, ns, name, o);
            delete_dependents_foreground(st, &uid);
            return Ok(Deleted::Pending(stored));
        }
        Propagation::Background => {}
    }
    if !meta::finalizers(&old).is_empty() {
        let mut o = (*old).clone();
        set_deleting(&mut o);
        return Ok(Deleted::Pending(st.put(&key, ns, name, o)));
    }
    let last = remove(st, &key, ns, name, None).expect("present");
    Ok(Deleted::Gone(last))
}

fn delete_dependents_foreground(st: &mut State, uid: &str) {
    for d in st.dependents_of(uid) {
        if let Some(t) = resource_type_for_key(st, &d.0) {
            let _ = delete(
                st,
                &t,
                &d.1,
                &d.2,
                &DeleteOpts {
                    policy: Some(Propagation::Foreground),
                    ..Default::default()
                },
            );
        }
    }
    st.gc_queue
        .push_back(crate::store::GcWork::CheckForeground(uid.to_string()));
}

/// The resource type behind a storage key (`group/plural`).
pub fn resource_type_for_key(st: &State, key: &str) -> Option<Arc<ResourceType>> {
    let (g, p) = key.split_once('/')?;
    st.registry.any_version(g, p)
}

/// Builds the DeleteOptions of a request from its body and query.
pub fn delete_opts(
    body: Option<&Value>,
    query: &std::collections::HashMap<String, String>,
) -> ApiResult<DeleteOpts> {
    let mut o = DeleteOpts {
        dry_run: query.get("dryRun").is_some_and(|v| v == "All"),
        ..Default::default()
    };
    let parse = |s: &str| match s {
        "Orphan" => Ok(Propagation::Orphan),
        "Background" => Ok(Propagation::Background),
        "Foreground" => Ok(Propagation::Foreground),
        other => Err(ApiError::bad_request(format!(
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        ))),
    };
    if let Some(p) = query.get("propagationPolicy") {
        o.policy = Some(parse(p)?);
    }
    if query.get("orphanDependents").is_some_and(|v| v == "true") {
        o.policy = Some(Propagation::Orphan);
    }
    if let Some(b) = body {
        let empty = Map::new();
        let b = if b.is_null() {
            &empty
        } else {
            b.as_object()
                .ok_or_else(|| ApiError::bad_request("DeleteOptions must be an object"))?
        };
        if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
            o.policy = Some(parse(p)?);
        }
        if b.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            o.policy = Some(Propagation::Orphan);
        }
        if let Some(d) = b.get("dryRun").and_then(Value::as_array) {
            o.dry_run |= d.iter().any(|x| x == "All");
        }
        if let Some(p) = b.get("preconditions") {
            o.uid = p.get("uid").and_then(Value::as_str).map(String::from);
            o.resource_version = p
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(String::from);
        }
    }
    Ok(o)
}
