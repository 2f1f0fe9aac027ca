//! Immutable fields of the built-in kinds: what an update of an existing object may not change,
//! answered with kube-apiserver's `422 Invalid` causes (reason, field path and wording from the
//! Kubernetes sources: `ValidateImmutableField`, `ValidateStatefulSetUpdate`,
//! `ValidateJobSpecUpdate`, `ValidateServiceUpdate`, `ValidateConfigMapUpdate`, ...).
//!
//! [`RULES`] is the whole table. [`check`] runs it on every write that replaces the main resource
//! of an existing object (update, every patch type, server-side apply), after the server has
//! filled in what it carries over from the stored object; `/status` writes never reach it
//! because they cannot change anything but `status`.
//!
//! The rules and messages follow Kubernetes 1.37 (the release the conformance suite runs
//! against); older releases allow fewer StatefulSet changes and print bad values with `%#v`.
//!
//! Comparisons are semantic, as the real server's are after decoding into Go structs and
//! defaulting: a missing field, `null`, `""`, `0`, `false`, `[]` and `{}` are the same, numbers
//! compare by value, and the defaults the real server would have filled in (pod template,
//! StatefulSet and Job defaults) are applied to both sides first. Fields that are pointers in
//! Go (selectors, `completions`) are compared strictly between absent and present.

use serde_json::{Map, Value};

use crate::registry::ResourceType;
use crate::schema::gofmt::{json, quote};
use crate::status::Cause;

/// One row of the table: the resource a rule applies to and its check.
pub struct Rule {
    /// API group of the resource (empty for core).
    pub group: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
    /// The causes of a `422` for `old` -> `new`; empty when the change is allowed.
    check: fn(old: &Value, new: &Value) -> Vec<Cause>,
}

/// The immutable fields of the built-in kinds this server serves.
pub const RULES: &[Rule] = &[
    // spec.selector is immutable
    Rule {
        group: "apps",
        plural: "deployments",
        check: selector_immutable,
    },
    // spec.selector is immutable
    Rule {
        group: "apps",
        plural: "replicasets",
        check: selector_immutable,
    },
    // spec.selector is immutable
    Rule {
        group: "apps",
        plural: "daemonsets",
        check: selector_immutable,
    },
    // only replicas, ordinals, template, updateStrategy, revisionHistoryLimit,
    // persistentVolumeClaimRetentionPolicy and minReadySeconds of spec may change
    Rule {
        group: "apps",
        plural: "statefulsets",
        check: statefulset_spec,
    },
    // spec.completions (unless Indexed, with parallelism), spec.selector, spec.template (scheduling
    // directives of a suspended, never started Job excepted), completionMode, podFailurePolicy,
    // backoffLimitPerIndex, managedBy and successPolicy are immutable
    Rule {
        group: "batch",
        plural: "jobs",
        check: job_spec,
    },
    // spec.clusterIP / spec.clusterIPs may not change once set (ExternalName and
    // headless-to-headless excepted)
    Rule {
        group: "",
        plural: "services",
        check: service_cluster_ips,
    },
    // with immutable: true, immutable, data and binaryData may not change
    Rule {
        group: "",
        plural: "configmaps",
        check: configmap_immutable,
    },
    // type is immutable; with immutable: true, immutable and data may not change
    Rule {
        group: "",
        plural: "secrets",
        check: secret_immutable,
    },
    // roleRef is immutable
    Rule {
        group: "rbac.authorization.k8s.io",
        plural: "rolebindings",
        check: role_ref,
    },
    // roleRef is immutable
    Rule {
        group: "rbac.authorization.k8s.io",
        plural: "clusterrolebindings",
        check: role_ref,
    },
];

/// The causes of a `422 Invalid` for replacing `old` by `new` (both complete objects of `rt`),
/// in the order kube-apiserver lists them; empty when every immutable field is unchanged.
pub fn check(rt: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
    if rt.custom {
        return vec![];
    }
    RULES
        .iter()
        .filter(|r| r.group == rt.group && r.plural == rt.plural)
        .flat_map(|r| (r.check)(old, new))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Causes

const FIELD_IMMUTABLE: &str = "field is immutable";
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

fn invalid(field: &str, rendered_value: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {rendered_value}: {detail}"),
        field: field.into(),
    }
}

fn forbidden(field: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueForbidden".into(),
        message: format!("Forbidden: {detail}"),
        field: field.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Semantic equality

/// Whether `v` decodes to a Go zero value, which the real server cannot tell from a missing field.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.values().all(is_zero),
    }
}

/// `apiequality.Semantic.DeepEqual` for JSON without a schema (see the module docs).
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a.filter(|v| !is_zero(v)), b.filter(|v| !is_zero(v))) {
        (None, None) => true,
        (Some(a), Some(b)) => match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                x.keys().chain(y.keys()).all(|k| same(x.get(k), y.get(k)))
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(Some(p), Some(q)))
            }
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            _ => a == b,
        },
        _ => false,
    }
}

/// Like [`same`] for a field that is a pointer in Go: absent (or `null`) differs from any value.
fn same_ptr(a: Option<&Value>, b: Option<&Value>) -> bool {
    let a = a.filter(|v| !v.is_null());
    let b = b.filter(|v| !v.is_null());
    match (a, b) {
        (None, None) => true,
        (Some(_), Some(_)) => same(a, b),
        _ => false,
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Go's rendering of the bad value (`field.Error.ErrorBody`): `%q` for a plain string, `%v` for
// numbers and booleans, and `json.Marshal` of the Go value for everything else, so a nil
// pointer, map or slice is `null` and a struct follows its Go type's field order and `json`
// tags (internal types without tags use their Go field names).

const GO_NIL: &str = "null";

/// A `[]string`: JSON; `null` when absent or empty (the real server normalises an emptied list
/// to nil before it validates).
fn go_string_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array).filter(|a| !a.is_empty()) {
        None => GO_NIL.into(),
        Some(a) => json(&Value::Array(a.clone())),
    }
}

fn go_strings(ips: &[String]) -> String {
    go_string_slice(Some(&Value::Array(
        ips.iter().map(|s| Value::String(s.clone())).collect(),
    )))
}

/// A `*metav1.LabelSelector`: its `json` tags, in field order, empty fields omitted
/// (`omitempty`): `{"matchLabels":{…},"matchExpressions":[{"key":…,"operator":…,"values":[…]}]}`.
fn go_label_selector(v: Option<&Value>) -> String {
    let Some(sel) = v.filter(|v| !v.is_null()) else {
        return GO_NIL.into();
    };
    let mut fields = vec![];
    if let Some(m) = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
    {
        fields.push(format!(
            "\"matchLabels\":{}",
            json(&Value::Object(m.clone()))
        ));
    }
    if let Some(reqs) = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        let items: Vec<String> = reqs
            .iter()
            .map(|r| {
                let s = |k: &str| json(&Value::String(str_at(r, &format!("/{k}")).into()));
                let mut req = format!("{{\"key\":{},\"operator\":{}", s("key"), s("operator"));
                if let Some(vals) = r
                    .get("values")
                    .and_then(Value::as_array)
                    .filter(|a| !a.is_empty())
                {
                    req.push_str(&format!(
                        ",\"values\":{}",
                        json(&Value::Array(vals.clone()))
                    ));
                }
                req + "}"
            })
            .collect();
        fields.push(format!("\"matchExpressions\":[{}]", items.join(",")));
    }
    format!("{{{}}}", fields.join(","))
}

/// A pointer to a number or string: its JSON, or `null`.
fn go_scalar_ptr(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => GO_NIL.into(),
        Some(v) => json(v),
    }
}

/// A value of an internal Go type without `json` tags (a pod template, a Job's failure or
/// success policy, a StatefulSet's claim templates): the real server marshals every field of
/// it under its Go name, defaults included, which this server does not reproduce; it shows the
/// value as the API's JSON instead (`null` when absent).
fn go_internal(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => GO_NIL.into(),
        Some(v) => json(v),
    }
}

// ---------------------------------------------------------------------------------------------
// Defaults the real server fills in before it compares

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    v.get_mut(key).and_then(Value::as_object_mut)
}

fn default_str(m: &mut Map<String, Value>, key: &str, value: &str) {
    if m.get(key).is_none_or(is_zero) {
        m.insert(key.into(), value.into());
    }
}

fn default_num(m: &mut Map<String, Value>, key: &str, value: i64) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value.into());
    }
}

/// `SetDefaults_Container`'s pull policy: `Always` for `:latest` or no tag, else `IfNotPresent`.
fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

/// The defaults of a pod template (`SetDefaults_PodSpec`, `_Container`, `_ContainerPort`,
/// `_Probe`, volume sources' `defaultMode`), so an update that spells a default out compares
/// equal to a stored template that left it to the server.
fn default_pod_template(t: &mut Value) {
    let Some(spec) = obj_mut(t, "spec") else {
        return;
    };
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_str(spec, "schedulerName", "default-scheduler");
    default_num(spec, "terminationGracePeriodSeconds", 30);
    for list in ["containers", "initContainers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            let policy = default_pull_policy(image);
            default_str(c, "imagePullPolicy", policy);
            default_str(c, "terminationMessagePath", "/dev/termination-log");
            default_str(c, "terminationMessagePolicy", "File");
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    default_str(p, "protocol", "TCP");
                }
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
                    for (k, d) in [
                        ("timeoutSeconds", 1),
                        ("periodSeconds", 10),
                        ("successThreshold", 1),
                        ("failureThreshold", 3),
                    ] {
                        if p.get(k).is_none_or(is_zero) {
                            p.insert(k.into(), d.into());
                        }
                    }
                }
            }
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            for source in ["secret", "configMap", "downwardAPI", "projected"] {
                if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
                    default_num(s, "defaultMode", 0o644);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// apps/v1

/// Deployments, ReplicaSets, DaemonSets: the strategies' `ValidateImmutableField(spec.selector)`
/// for `apps/v1`.
fn selector_immutable(old: &Value, new: &Value) -> Vec<Cause> {
    let (o, n) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
    if same_ptr(o, n) {
        return vec![];
    }
    vec![invalid(
        "spec.selector",
        &go_label_selector(n),
        FIELD_IMMUTABLE,
    )]
}

/// A StatefulSet's `volumeClaimTemplates` as the server compares them: without type meta and
/// the defaulted `status.phase: Pending` (not part of what a user can change), `volumeMode`
/// defaulted to Filesystem.
fn claim_templates(sts: &Value) -> Value {
    let mut ts = sts
        .pointer("/spec/volumeClaimTemplates")
        .cloned()
        .unwrap_or(Value::Null);
    for t in ts
        .as_array_mut()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        t.remove("apiVersion");
        t.remove("kind");
        t.remove("status");
        if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
            default_str(s, "volumeMode", "Filesystem");
        }
    }
    ts
}

/// `ValidateStatefulSetUpdate`: the selector, the claim templates, the service name and the pod
/// management policy are immutable, each reported on its own; every other spec field may
/// change.
fn statefulset_spec(old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = vec![];
    let (o, n) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
    if !same_ptr(o, n) {
        causes.push(invalid(
            "spec.selector",
            &go_label_selector(n),
            FIELD_IMMUTABLE,
        ));
    }
    if !same(Some(&claim_templates(old)), Some(&claim_templates(new))) {
        causes.push(invalid(
            "spec.volumeClaimTemplates",
            &go_internal(new.pointer("/spec/volumeClaimTemplates")),
            FIELD_IMMUTABLE,
        ));
    }
    let name = str_at(new, "/spec/serviceName");
    if str_at(old, "/spec/serviceName") != name {
        causes.push(invalid("spec.serviceName", &quote(name), FIELD_IMMUTABLE));
    }
    let policy = |s: &Value| match str_at(s, "/spec/podManagementPolicy") {
        "" => "OrderedReady".to_string(),
        p => p.to_string(),
    };
    let p = policy(new);
    if policy(old) != p {
        // A named string type: marshalled as JSON, not `%q`.
        causes.push(invalid(
            "spec.podManagementPolicy",
            &json(&Value::String(p)),
            FIELD_IMMUTABLE,
        ));
    }
    causes
}

// ---------------------------------------------------------------------------------------------
// batch/v1

/// `spec.completions` after `SetDefaults_Job` (1 when neither it nor parallelism is set).
fn job_completions(job: &Value) -> Option<Value> {
    let c = job.pointer("/spec/completions").filter(|v| !v.is_null());
    let p = job.pointer("/spec/parallelism").filter(|v| !v.is_null());
    match (c, p) {
        (None, None) => Some(1.into()),
        (c, _) => c.cloned(),
    }
}

/// `spec.parallelism` after `SetDefaults_Job`.
fn job_parallelism(job: &Value) -> i64 {
    job.pointer("/spec/parallelism")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn job_completion_mode(job: &Value) -> &str {
    match str_at(job, "/spec/completionMode") {
        "" => "NonIndexed",
        m => m,
    }
}

fn job_template(job: &Value) -> Value {
    let mut t = job
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    default_pod_template(&mut t);
    t
}

/// The template as `validatePodTemplateUpdate` compares it: for a Job that is suspended and has
/// never started, the old template takes the new one's node affinity, node selector,
/// tolerations, scheduling gates, labels and annotations (those may change then).
fn job_templates(old: &Value, new: &Value) -> (Value, Value) {
    let (mut o, n) = (job_template(old), job_template(new));
    let suspended = old.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    let started = old
        .pointer("/status/startTime")
        .is_some_and(|v| !v.is_null());
    if !suspended || started {
        return (o, n);
    }
    let copy = |o: &mut Value, section: &str, key: &str| {
        let v = n.get(section).and_then(|s| s.get(key)).cloned();
        if let Some(s) = obj_mut(o, section) {
            match v {
                Some(v) => s.insert(key.into(), v),
                None => s.remove(key),
            };
        }
    };
    if o.get("metadata").is_none() {
        o["metadata"] = Value::Object(Map::new());
    }
    for k in ["labels", "annotations"] {
        copy(&mut o, "metadata", k);
    }
    for k in ["nodeSelector", "tolerations", "schedulingGates"] {
        copy(&mut o, "spec", k);
    }
    let new_node_affinity = n.pointer("/spec/affinity/nodeAffinity").cloned();
    if let Some(spec) = obj_mut(&mut o, "spec") {
        let affinity = spec
            .entry("affinity")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = affinity.as_object_mut() {
            match new_node_affinity {
                Some(na) => a.insert("nodeAffinity".into(), na),
                None => a.remove("nodeAffinity"),
            };
        }
    }
    (o, n)
}

fn job_spec(old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = vec![];
    let (oc, nc) = (job_completions(old), job_completions(new));
    if !same_ptr(oc.as_ref(), nc.as_ref()) {
        if job_completion_mode(new) != "Indexed" {
            causes.push(invalid(
                "spec.completions",
                &go_scalar_ptr(nc.as_ref()),
                FIELD_IMMUTABLE,
            ));
        } else if let Some(c) = nc.as_ref().and_then(Value::as_i64)
            && c != job_parallelism(new)
        {
            causes.push(invalid(
                "spec.completions",
                &c.to_string(),
                "can only be modified in tandem with spec.parallelism",
            ));
        }
    }
    let (os, ns) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
    if !same_ptr(os, ns) {
        causes.push(invalid(
            "spec.selector",
            &go_label_selector(ns),
            FIELD_IMMUTABLE,
        ));
    }
    let (ot, nt) = job_templates(old, new);
    if !same(Some(&ot), Some(&nt)) {
        causes.push(invalid(
            "spec.template",
            &go_internal(Some(&nt)),
            FIELD_IMMUTABLE,
        ));
    }
    let (om, nm) = (job_completion_mode(old), job_completion_mode(new));
    if om != nm {
        causes.push(invalid("spec.completionMode", &quote(nm), FIELD_IMMUTABLE));
    }
    for (key, internal) in [
        ("podFailurePolicy", true),
        ("backoffLimitPerIndex", false),
        ("managedBy", false),
        ("successPolicy", true),
    ] {
        let pointer = format!("/spec/{key}");
        let (o, n) = (old.pointer(&pointer), new.pointer(&pointer));
        if same_ptr(o, n) {
            continue;
        }
        let rendered = if internal {
            go_internal(n)
        } else {
            go_scalar_ptr(n)
        };
        causes.push(invalid(&format!("spec.{key}"), &rendered, FIELD_IMMUTABLE));
    }
    causes
}

// ---------------------------------------------------------------------------------------------
// core/v1 Service

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `spec.clusterIPs` as stored: filled from `spec.clusterIP` when a service predates it.
fn stored_cluster_ips(svc: &Value) -> Vec<String> {
    let ips = strings(svc.pointer("/spec/clusterIPs"));
    let ip = str_at(svc, "/spec/clusterIP");
    if ips.is_empty() && !ip.is_empty() {
        vec![ip.to_string()]
    } else {
        ips
    }
}

/// `spec.clusterIPs` of the new object as kube-apiserver validates it: missing or empty cluster
/// IPs are the allocated ones (`patchAllocatedValues`), and a client that changes only
/// `clusterIP` changes `clusterIPs` with it (`normalizeClusterIPs`).
fn requested_cluster_ips(old: &Value, new: &Value, old_ips: &[String]) -> Vec<String> {
    let old_ip = str_at(old, "/spec/clusterIP");
    let new_ip = match str_at(new, "/spec/clusterIP") {
        "" => old_ip,
        ip => ip,
    };
    let mut ips = strings(new.pointer("/spec/clusterIPs"));
    if ips.is_empty() {
        ips = old_ips.to_vec();
    }
    if old_ip != new_ip && ips == old_ips {
        ips = vec![new_ip.to_string()];
    }
    ips
}

/// `validateUpgradeDowngradeClusterIPs`.
fn service_cluster_ips(old: &Value, new: &Value) -> Vec<Cause> {
    let external = |s: &Value| str_at(s, "/spec/type") == "ExternalName";
    if external(old) || external(new) {
        return vec![];
    }
    let old_ips = stored_cluster_ips(old);
    let new_ips = requested_cluster_ips(old, new, &old_ips);
    let headless = |ips: &[String]| ips.len() == 1 && ips[0] == "None";
    if headless(&old_ips) && headless(&new_ips) {
        return vec![];
    }
    let rendered = go_strings(&new_ips);
    let changed = |i: usize| {
        invalid(
            &format!("spec.clusterIPs[{i}]"),
            &rendered,
            "may not change once set",
        )
    };
    let mut causes = vec![];
    match old_ips.len().cmp(&new_ips.len()) {
        std::cmp::Ordering::Equal => {
            for (i, ip) in old_ips.iter().enumerate() {
                if *ip != new_ips[i] {
                    causes.push(changed(i));
                }
            }
        }
        std::cmp::Ordering::Greater => {
            // Never empty: missing cluster IPs are the allocated ones (see above), so kube's
            // "primary clusterIP can not be unset" cannot happen either.
            if new_ips.first() != old_ips.first() {
                causes.push(changed(0));
            }
            if new_ips.len() == 1 && str_at(new, "/spec/ipFamilyPolicy") != "SingleStack" {
                causes.push(invalid(
                    "spec.ipFamilyPolicy",
                    &go_scalar_ptr(new.pointer("/spec/ipFamilyPolicy")),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        }
        std::cmp::Ordering::Less => {
            if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
                causes.push(changed(0));
            }
        }
    }
    causes
}

// ---------------------------------------------------------------------------------------------
// core/v1 ConfigMap, Secret

/// `ValidateConfigMapUpdate` / `ValidateSecretUpdate` once the stored object is immutable.
fn frozen_data(old: &Value, new: &Value, fields: &[&str]) -> Vec<Cause> {
    let frozen = |o: &Value| o.get("immutable").and_then(Value::as_bool) == Some(true);
    if !frozen(old) {
        return vec![];
    }
    let mut causes = vec![];
    if !frozen(new) {
        causes.push(forbidden("immutable", IMMUTABLE_WHEN_SET));
    }
    for f in fields {
        // Go compares these maps with reflect.DeepEqual, which tells a nil map from an empty
        // one; here an absent map and `{}` are the same, since the stored JSON cannot say which
        // one the real server would have kept.
        if !same(old.get(*f), new.get(*f)) {
            causes.push(forbidden(f, IMMUTABLE_WHEN_SET));
        }
    }
    causes
}

fn configmap_immutable(old: &Value, new: &Value) -> Vec<Cause> {
    frozen_data(old, new, &["data", "binaryData"])
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A Secret as the real server validates it: `stringData` merged into `data` (base64), `type`
/// defaulted to `Opaque`.
fn secret_as_decoded(s: &Value) -> Value {
    let mut s = s.clone();
    let string_data = s
        .get("stringData")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !string_data.is_empty() {
        if !s.get("data").is_some_and(Value::is_object) {
            s["data"] = Value::Object(Map::new());
        }
        let data = s["data"].as_object_mut().expect("object");
        for (k, v) in string_data {
            data.insert(k, base64(v.as_str().unwrap_or("").as_bytes()).into());
        }
    }
    if str_at(&s, "/type").is_empty() {
        s["type"] = "Opaque".into();
    }
    s
}

fn secret_immutable(old: &Value, new: &Value) -> Vec<Cause> {
    let (old, new) = (secret_as_decoded(old), secret_as_decoded(new));
    let mut causes = vec![];
    let new_type = str_at(&new, "/type");
    if str_at(&old, "/type") != new_type {
        causes.push(invalid("type", &quote(new_type), FIELD_IMMUTABLE));
    }
    causes.extend(frozen_data(&old, &new, &["data"]));
    causes
}

// ---------------------------------------------------------------------------------------------
// rbac.authorization.k8s.io/v1

fn role_ref(old: &Value, new: &Value) -> Vec<Cause> {
    let parts = |b: &Value| {
        ["apiGroup", "kind", "name"].map(|k| str_at(b, &format!("/roleRef/{k}")).to_string())
    };
    let n = parts(new);
    if parts(old) == n {
        return vec![];
    }
    // The internal `rbac.RoleRef` has no `json` tags: Go field names, in field order.
    let s = |x: &str| json(&Value::String(x.into()));
    let rendered = format!(
        "{{\"APIGroup\":{},\"Kind\":{},\"Name\":{}}}",
        s(&n[0]),
        s(&n[1]),
        s(&n[2])
    );
    vec![invalid("roleRef", &rendered, FIELD_IMMUTABLE)]
}

#[cfg(test)]
mod tests;
