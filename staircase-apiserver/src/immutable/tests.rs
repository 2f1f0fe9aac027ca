//! The rule table against hand-built old/new pairs. Expected texts come from the Go sources'
//! format strings (and Go's `%#v`), so a failure means a divergence from kube-apiserver.

use super::*;
use serde_json::json;

use crate::registry::Registry;

fn causes(group: &str, plural: &str, old: &Value, new: &Value) -> Vec<(String, String, String)> {
    let rt = Registry::with_builtins()
        .get(group, "v1", plural)
        .unwrap_or_else(|| panic!("{group}/{plural} served"));
    check(&rt, old, new)
        .into_iter()
        .map(|c| (c.reason, c.field, c.message))
        .collect()
}

fn one(reason: &str, field: &str, message: &str) -> Vec<(String, String, String)> {
    vec![(reason.into(), field.into(), message.into())]
}

/// `base` with the value at `pointer` set (the parent must exist).
fn with(base: &Value, pointer: &str, v: Value) -> Value {
    let mut o = base.clone();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match o.pointer_mut(parent).unwrap() {
        Value::Array(a) => a[key.parse::<usize>().unwrap()] = v,
        p => p[key] = v,
    }
    o
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        }
    })
}

#[test]
fn every_rule_names_a_served_kind() {
    let reg = Registry::with_builtins();
    for r in RULES {
        assert!(
            reg.any_version(r.group, r.plural).is_some(),
            "{}/{} is in the table but not served",
            r.group,
            r.plural
        );
    }
}

#[test]
fn workload_selectors_are_immutable_with_json_rendering() {
    let old = deployment();
    let new = with(
        &old,
        "/spec/selector",
        json!({"matchLabels": {"app": "other", "tier": "a\"b"}}),
    );
    let msg = r#"Invalid value: {"matchLabels":{"app":"other","tier":"a\"b"}}: field is immutable"#;
    for plural in ["deployments", "replicasets", "daemonsets"] {
        assert_eq!(
            causes("apps", plural, &old, &new),
            one("FieldValueInvalid", "spec.selector", msg),
            "{plural}"
        );
    }
    let exprs = with(
        &old,
        "/spec/selector",
        json!({"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["a", "b"]},
            {"key": "x", "operator": "Exists"}
        ]}),
    );
    assert_eq!(
        causes("apps", "deployments", &old, &exprs),
        one(
            "FieldValueInvalid",
            "spec.selector",
            r#"Invalid value: {"matchExpressions":[{"key":"app","operator":"In","values":["a","b"]},{"key":"x","operator":"Exists"}]}: field is immutable"#
        )
    );
    let removed = with(&old, "/spec/selector", Value::Null);
    assert_eq!(
        causes("apps", "deployments", &old, &removed),
        one(
            "FieldValueInvalid",
            "spec.selector",
            "Invalid value: null: field is immutable"
        )
    );
}

#[test]
fn workload_selector_compares_semantically_and_allows_other_changes() {
    let old = deployment();
    // Empty lists and maps are the same as missing ones; replicas and the template may change.
    let mut new = with(
        &old,
        "/spec/selector",
        json!({"matchLabels": {"app": "web"}, "matchExpressions": []}),
    );
    new["spec"]["replicas"] = 5.into();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2".into();
    assert!(causes("apps", "deployments", &old, &new).is_empty());
    assert!(causes("apps", "deployments", &old, &old).is_empty());
}

fn statefulset() -> Value {
    json!({
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 1, "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": {"containers": [{"name": "c", "image": "postgres"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    })
}

#[test]
fn statefulset_keeps_selector_claims_service_name_and_policy() {
    let old = statefulset();
    for (pointer, v, field, value) in [
        ("/spec/serviceName", json!("db2"), "serviceName", r#""db2""#),
        (
            "/spec/selector",
            json!({"matchLabels": {"app": "x"}}),
            "selector",
            r#"{"matchLabels":{"app":"x"}}"#,
        ),
        (
            "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
            json!("2Gi"),
            "volumeClaimTemplates",
            r#"[{"metadata":{"name":"data"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"2Gi"}}}}]"#,
        ),
        (
            "/spec/podManagementPolicy",
            json!("Parallel"),
            "podManagementPolicy",
            r#""Parallel""#,
        ),
    ] {
        assert_eq!(
            causes("apps", "statefulsets", &old, &with(&old, pointer, v)),
            one(
                "FieldValueInvalid",
                &format!("spec.{field}"),
                &format!("Invalid value: {value}: field is immutable")
            ),
            "{pointer}"
        );
    }
    let mut both = with(&old, "/spec/serviceName", json!("db2"));
    both["spec"]["podManagementPolicy"] = "Parallel".into();
    let fields: Vec<String> = causes("apps", "statefulsets", &old, &both)
        .into_iter()
        .map(|c| c.1)
        .collect();
    assert_eq!(fields, ["spec.serviceName", "spec.podManagementPolicy"]);
    let mut ok = old.clone();
    for (k, v) in [
        ("replicas", json!(3)),
        ("updateStrategy", json!({"type": "OnDelete"})),
        ("minReadySeconds", json!(5)),
        ("revisionHistoryLimit", json!(2)),
        ("ordinals", json!({"start": 1})),
        (
            "persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Delete"}),
        ),
    ] {
        ok["spec"][k] = v;
    }
    ok["spec"]["template"]["spec"]["containers"][0]["image"] = "postgres:16".into();
    // Spelled-out defaults are no change.
    ok["spec"]["podManagementPolicy"] = "OrderedReady".into();
    ok["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"] = "Filesystem".into();
    ok["spec"]["volumeClaimTemplates"][0]["apiVersion"] = "v1".into();
    ok["spec"]["volumeClaimTemplates"][0]["kind"] = "PersistentVolumeClaim".into();
    ok["spec"]["volumeClaimTemplates"][0]["status"] = json!({"phase": "Pending"});
    assert!(causes("apps", "statefulsets", &old, &ok).is_empty());
}

fn job() -> Value {
    json!({
        "metadata": {"name": "once"},
        "spec": {
            "completions": 2, "parallelism": 1,
            "template": {"spec": {"restartPolicy": "Never",
                                   "containers": [{"name": "c", "image": "busybox:1.36"}]}}
        }
    })
}

#[test]
fn job_template_selector_and_completions_are_immutable() {
    let old = job();
    let image = with(
        &old,
        "/spec/template/spec/containers/0/image",
        json!("busybox:1.37"),
    );
    // The real server marshals the internal Go struct (Go field names); this server shows the
    // defaulted template as the API's JSON.
    let c = causes("batch", "jobs", &old, &image);
    assert_eq!(
        (c.len(), c[0].0.as_str(), c[0].1.as_str()),
        (1, "FieldValueInvalid", "spec.template")
    );
    assert!(
        c[0].2.starts_with("Invalid value: {")
            && c[0].2.contains(r#""image":"busybox:1.37""#)
            && c[0].2.ends_with("}: field is immutable"),
        "{}",
        c[0].2
    );
    assert_eq!(
        causes(
            "batch",
            "jobs",
            &old,
            &with(&old, "/spec/completions", json!(3))
        ),
        one(
            "FieldValueInvalid",
            "spec.completions",
            "Invalid value: 3: field is immutable"
        )
    );
    assert_eq!(
        causes(
            "batch",
            "jobs",
            &old,
            &with(&old, "/spec/selector", json!({"matchLabels": {"a": "b"}}))
        ),
        one(
            "FieldValueInvalid",
            "spec.selector",
            r#"Invalid value: {"matchLabels":{"a":"b"}}: field is immutable"#
        )
    );
    // All three at once, in kube-apiserver's order.
    let mut all = image.clone();
    all["spec"]["completions"] = 3.into();
    all["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
    let fields: Vec<String> = causes("batch", "jobs", &old, &all)
        .into_iter()
        .map(|c| c.1)
        .collect();
    assert_eq!(
        fields,
        ["spec.completions", "spec.selector", "spec.template"]
    );
    // Mutable: parallelism, activeDeadlineSeconds, suspend; spelled-out template defaults.
    let mut ok = old.clone();
    ok["spec"]["parallelism"] = 2.into();
    ok["spec"]["activeDeadlineSeconds"] = 60.into();
    ok["spec"]["suspend"] = true.into();
    ok["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst".into();
    ok["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30.into();
    ok["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent".into();
    ok["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
        "/dev/termination-log".into();
    assert!(causes("batch", "jobs", &old, &ok).is_empty());
}

#[test]
fn job_defaults_and_indexed_completions() {
    // Neither completions nor parallelism: both default to 1, so saying 1 is no change.
    let mut bare = job();
    let spec = bare["spec"].as_object_mut().unwrap();
    spec.remove("completions");
    spec.remove("parallelism");
    let explicit = with(&bare, "/spec/completions", json!(1));
    assert!(causes("batch", "jobs", &bare, &explicit).is_empty());
    // `:latest` (or no tag) defaults to Always, so `Always` is no change there either.
    let latest = with(
        &bare,
        "/spec/template/spec/containers/0/image",
        json!("busybox"),
    );
    let always = with(
        &latest,
        "/spec/template/spec/containers/0/imagePullPolicy",
        json!("Always"),
    );
    assert!(causes("batch", "jobs", &latest, &always).is_empty());

    let mut indexed = job();
    indexed["spec"]["completionMode"] = "Indexed".into();
    indexed["spec"]["parallelism"] = 2.into();
    let tandem = with(&indexed, "/spec/completions", json!(2));
    assert!(causes("batch", "jobs", &indexed, &tandem).is_empty());
    assert_eq!(
        causes(
            "batch",
            "jobs",
            &indexed,
            &with(&indexed, "/spec/completions", json!(4))
        ),
        one(
            "FieldValueInvalid",
            "spec.completions",
            "Invalid value: 4: can only be modified in tandem with spec.parallelism"
        )
    );
    assert_eq!(
        causes(
            "batch",
            "jobs",
            &indexed,
            &with(&indexed, "/spec/completionMode", json!("NonIndexed"))
        )
        .last()
        .cloned()
        .unwrap(),
        (
            "FieldValueInvalid".into(),
            "spec.completionMode".into(),
            r#"Invalid value: "NonIndexed": field is immutable"#.into()
        )
    );
    assert_eq!(
        causes(
            "batch",
            "jobs",
            &job(),
            &with(&job(), "/spec/managedBy", json!("example.com/x"))
        ),
        one(
            "FieldValueInvalid",
            "spec.managedBy",
            r#"Invalid value: "example.com/x": field is immutable"#
        )
    );
}

#[test]
fn suspended_job_that_never_started_may_change_scheduling_directives() {
    let mut old = job();
    old["spec"]["suspend"] = true.into();
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a"});
    new["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
    new["spec"]["template"]["spec"]["affinity"] =
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}});
    new["spec"]["template"]["metadata"] = json!({"labels": {"queue": "q"}});
    assert!(causes("batch", "jobs", &old, &new).is_empty());
    // The image still may not change, and once started nothing may.
    let image = with(
        &new,
        "/spec/template/spec/containers/0/image",
        json!("busybox:1.37"),
    );
    assert_eq!(causes("batch", "jobs", &old, &image).len(), 1);
    let mut started = old.clone();
    started["status"] = json!({"startTime": "2026-01-01T00:00:00Z"});
    assert_eq!(causes("batch", "jobs", &started, &new).len(), 1);
}

fn service() -> Value {
    json!({
        "metadata": {"name": "svc"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                 "ports": [{"port": 80}]}
    })
}

#[test]
fn service_cluster_ips_may_not_change_once_set() {
    let old = service();
    let expected = one(
        "FieldValueInvalid",
        "spec.clusterIPs[0]",
        r#"Invalid value: ["10.96.0.99"]: may not change once set"#,
    );
    // Only clusterIP changed: clusterIPs follows it (normalizeClusterIPs), then is compared.
    let ip = with(&old, "/spec/clusterIP", json!("10.96.0.99"));
    assert_eq!(causes("", "services", &old, &ip), expected);
    let both = with(&ip, "/spec/clusterIPs", json!(["10.96.0.99"]));
    assert_eq!(causes("", "services", &old, &both), expected);
    // Left out or emptied, the allocated IPs are kept (patchAllocatedValues): no change.
    let cleared = with(
        &with(&old, "/spec/clusterIP", json!("")),
        "/spec/clusterIPs",
        json!([]),
    );
    assert!(causes("", "services", &old, &cleared).is_empty());
    // Ports may change; ExternalName services and headless-to-headless are exempt.
    let ports = with(&old, "/spec/ports", json!([{"port": 81}]));
    assert!(causes("", "services", &old, &ports).is_empty());
    let external = with(&ip, "/spec/type", json!("ExternalName"));
    assert!(causes("", "services", &old, &external).is_empty());
    let headless = json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
    assert!(causes("", "services", &headless, &headless.clone()).is_empty());
    assert_eq!(
        causes(
            "",
            "services",
            &headless,
            &json!({"spec": {"clusterIP": "10.96.0.99"}})
        ),
        one(
            "FieldValueInvalid",
            "spec.clusterIPs[0]",
            r#"Invalid value: ["10.96.0.99"]: may not change once set"#
        )
    );
}

#[test]
fn service_downgrade_needs_single_stack() {
    let old =
        json!({"spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::10"]}});
    let new = json!({"spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]}});
    assert_eq!(
        causes("", "services", &old, &new),
        one(
            "FieldValueInvalid",
            "spec.ipFamilyPolicy",
            "Invalid value: null: must be set to 'SingleStack' when releasing the secondary clusterIP"
        )
    );
    let single = with(&new, "/spec/ipFamilyPolicy", json!("SingleStack"));
    assert!(causes("", "services", &old, &single).is_empty());
}

#[test]
fn immutable_configmaps_keep_their_data() {
    let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
    let data = with(&old, "/data", json!({"a": "2"}));
    let when_set = "Forbidden: field is immutable when `immutable` is set";
    assert_eq!(
        causes("", "configmaps", &old, &data),
        one("FieldValueForbidden", "data", when_set)
    );
    let mut all = with(&data, "/immutable", json!(false));
    all["binaryData"] = json!({"b": "AA=="});
    assert_eq!(
        causes("", "configmaps", &old, &all),
        vec![
            (
                "FieldValueForbidden".into(),
                "immutable".into(),
                when_set.into()
            ),
            ("FieldValueForbidden".into(), "data".into(), when_set.into()),
            (
                "FieldValueForbidden".into(),
                "binaryData".into(),
                when_set.into()
            ),
        ]
    );
    // Labels may change; a ConfigMap that is not immutable may change anything, and may become
    // immutable.
    let labels = with(&old, "/metadata/labels", json!({"x": "y"}));
    assert!(causes("", "configmaps", &old, &labels).is_empty());
    let mutable = json!({"data": {"a": "1"}});
    let frozen = with(
        &with(&mutable, "/data/a", json!("2")),
        "/immutable",
        json!(true),
    );
    assert!(causes("", "configmaps", &mutable, &frozen).is_empty());
}

#[test]
fn secrets_keep_type_and_frozen_data() {
    let old = json!({"metadata": {"name": "s"}, "data": {"a": "MQ=="}});
    // No type means Opaque, on both sides.
    let opaque = with(&old, "/type", json!("Opaque"));
    assert!(causes("", "secrets", &old, &opaque).is_empty());
    assert_eq!(
        causes(
            "",
            "secrets",
            &old,
            &with(&old, "/type", json!("example.com/x"))
        ),
        one(
            "FieldValueInvalid",
            "type",
            r#"Invalid value: "example.com/x": field is immutable"#
        )
    );
    let frozen = with(&old, "/immutable", json!(true));
    // stringData counts as the base64 data it becomes: "1" is "MQ==", "2" is "Mg==".
    let same_value = with(&frozen, "/stringData", json!({"a": "1"}));
    assert!(causes("", "secrets", &frozen, &same_value).is_empty());
    let other_value = with(&frozen, "/stringData", json!({"a": "2"}));
    assert_eq!(
        causes("", "secrets", &frozen, &other_value),
        one(
            "FieldValueForbidden",
            "data",
            "Forbidden: field is immutable when `immutable` is set"
        )
    );
}

#[test]
fn base64_matches_the_standard_alphabet_and_padding() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("hello?>", "aGVsbG8/Pg=="),
    ] {
        assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
    }
}

#[test]
fn role_bindings_keep_their_role_ref() {
    let old = json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}});
    let new = with(&old, "/roleRef/name", json!("edit"));
    let expected = one(
        "FieldValueInvalid",
        "roleRef",
        r#"Invalid value: {"APIGroup":"rbac.authorization.k8s.io","Kind":"ClusterRole","Name":"edit"}: field is immutable"#,
    );
    let rbac = "rbac.authorization.k8s.io";
    assert_eq!(causes(rbac, "rolebindings", &old, &new), expected);
    assert_eq!(causes(rbac, "clusterrolebindings", &old, &new), expected);
    let subjects = with(&old, "/subjects", json!([{"kind": "User", "name": "u"}]));
    assert!(causes(rbac, "rolebindings", &old, &subjects).is_empty());
}

#[test]
fn kinds_without_rules_and_custom_resources_are_unchecked() {
    let old = json!({"spec": {"selector": {"a": "b"}}});
    let new = json!({"spec": {"selector": {"a": "c"}}});
    assert!(causes("", "pods", &old, &new).is_empty());
    let mut rt = (*Registry::with_builtins()
        .get("apps", "v1", "deployments")
        .unwrap())
    .clone();
    rt.custom = true;
    assert!(
        check(
            &rt,
            &deployment(),
            &with(&deployment(), "/spec/selector", json!(null))
        )
        .is_empty()
    );
}
