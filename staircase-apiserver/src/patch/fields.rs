//! What the patch engines need to know about a field they have no Go struct for: how a list
//! merges (atomic, set, or map keyed by some fields) and how a map is owned (struct-like,
//! granular map, atomic). Built-in kinds use a hand-written table mirroring the
//! `patchStrategy`/`patchMergeKey`/`listType` tags of the Kubernetes types; custom resources use
//! the CRD's OpenAPI schema (`x-kubernetes-list-type`, ...) when one is given.
//!
//! Paths here are field names only: list items do not add a segment, so
//! `spec.containers[0].env` is `["spec", "containers", "env"]`.

use serde_json::Value;

/// One key field of an associative list; `default` fills a key the item omits (as
/// `protocol: TCP` for ports) because the API server keys items after defaulting.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyField {
    pub name: String,
    pub default: Option<Value>,
}

/// How a list merges.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// Primitive items merged as a set (`metadata.finalizers`).
    Set,
    /// Items are objects identified by these key fields. Strategic merge patch only ever uses the
    /// first one (its `patchMergeKey`); server-side apply uses all of them.
    Map(Vec<KeyField>),
}

/// How an object field is tracked by server-side apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum MapType {
    /// A struct: owning a child does not own the struct itself.
    Struct,
    /// A map with arbitrary keys (`labels`): owned itself (`.`) as well as per key.
    Granular,
    /// Replaced and owned as a whole (`LabelSelector`, `x-kubernetes-map-type: atomic`).
    Atomic,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Builtin {
    Pod,
    Service,
    ServiceAccount,
    /// Kinds with nothing special beyond metadata: ConfigMap, Secret, Namespace, Event, Lease.
    Plain,
    /// Deployment, StatefulSet, ReplicaSet, DaemonSet, Job: pod spec at `spec.template.spec`.
    Workload,
    /// CronJob: pod spec at `spec.jobTemplate.spec.template.spec`.
    CronJob,
}

/// Field strategies for one kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schema<'a> {
    builtin: Option<Builtin>,
    crd: Option<&'a Value>,
}

impl<'a> Schema<'a> {
    /// `kind` is `group/version/Kind` (empty group for core); `crd` is the OpenAPI v3 schema of
    /// a custom resource version (either the schema itself or `{"openAPIV3Schema": ...}`).
    pub fn for_kind(kind: &str, crd: Option<&'a Value>) -> Schema<'a> {
        let mut parts = kind.split('/');
        let group = parts.next().unwrap_or_default();
        let name = kind.rsplit('/').next().unwrap_or_default();
        let builtin = match (group, name) {
            ("", "Pod") => Some(Builtin::Pod),
            ("", "Service") => Some(Builtin::Service),
            ("", "ServiceAccount") => Some(Builtin::ServiceAccount),
            ("", "ConfigMap" | "Secret" | "Namespace" | "Event")
            | ("events.k8s.io", "Event")
            | ("coordination.k8s.io", "Lease") => Some(Builtin::Plain),
            ("apps", "Deployment" | "StatefulSet" | "ReplicaSet" | "DaemonSet")
            | ("batch", "Job") => Some(Builtin::Workload),
            ("batch", "CronJob") => Some(Builtin::CronJob),
            _ => None,
        };
        let crd = crd.map(|s| s.get("openAPIV3Schema").unwrap_or(s));
        Schema { builtin, crd }
    }

    /// Whether the kind is one of the built-in kinds the table describes.
    pub fn is_builtin(&self) -> bool {
        self.builtin.is_some()
    }

    /// How the list at `path` merges; unknown lists are atomic, as in Kubernetes.
    pub fn list_type(&self, path: &[&str]) -> ListType {
        if let Some(t) = metadata_list(path) {
            return t;
        }
        match self.builtin {
            Some(b) => builtin_list(b, path),
            None => self
                .crd_node(path)
                .map(crd_list)
                .unwrap_or(ListType::Atomic),
        }
    }

    /// How the object at `path` is tracked by server-side apply.
    pub fn map_type(&self, path: &[&str]) -> MapType {
        let Some((last, parent)) = path.split_last() else {
            return MapType::Struct;
        };
        if parent.last() == Some(&"metadata") && matches!(*last, "labels" | "annotations") {
            return MapType::Granular;
        }
        match self.builtin {
            Some(b) => builtin_map(b, path),
            None => self.crd_node(path).map(crd_map).unwrap_or(MapType::Struct),
        }
    }

    /// The schema node of the field at `path`, stepping into `items` of arrays on the way.
    fn crd_node(&self, path: &[&str]) -> Option<&'a Value> {
        let mut node = self.crd?;
        for segment in path {
            if node.get("type").and_then(Value::as_str) == Some("array") {
                node = node.get("items")?;
            }
            node = match node.get("properties").and_then(|p| p.get(*segment)) {
                Some(child) => child,
                None => node.get("additionalProperties").filter(|a| a.is_object())?,
            };
        }
        Some(node)
    }
}

fn key(name: &str) -> KeyField {
    KeyField {
        name: name.into(),
        default: None,
    }
}

fn keys(names: &[&str]) -> ListType {
    ListType::Map(names.iter().map(|n| key(n)).collect())
}

/// Ports are keyed by number and protocol, and the protocol defaults to TCP.
fn port_keys(number: &str) -> ListType {
    ListType::Map(vec![
        key(number),
        KeyField {
            name: "protocol".into(),
            default: Some(Value::from("TCP")),
        },
    ])
}

/// `ObjectMeta` lists, wherever an object's metadata appears (top level or a pod template).
fn metadata_list(path: &[&str]) -> Option<ListType> {
    let [.., "metadata", last] = path else {
        return None;
    };
    match *last {
        "finalizers" => Some(ListType::Set),
        "ownerReferences" => Some(keys(&["uid"])),
        _ => None,
    }
}

fn pod_spec_root(b: Builtin) -> &'static [&'static str] {
    match b {
        Builtin::Pod => &["spec"],
        Builtin::Workload => &["spec", "template", "spec"],
        Builtin::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &[],
    }
}

fn is_container_list(name: &str) -> bool {
    matches!(
        name,
        "containers" | "initContainers" | "ephemeralContainers"
    )
}

fn builtin_list(b: Builtin, path: &[&str]) -> ListType {
    if let [.., "status", "conditions"] = path {
        return keys(&["type"]);
    }
    match (b, path) {
        (Builtin::Service, ["spec", "ports"]) => return port_keys("port"),
        (Builtin::ServiceAccount, ["secrets"]) => return keys(&["name"]),
        (Builtin::Pod, ["status", "podIPs" | "hostIPs"]) => return keys(&["ip"]),
        _ => {}
    }
    let root = pod_spec_root(b);
    if root.is_empty() || !path.starts_with(root) {
        return ListType::Atomic;
    }
    match &path[root.len()..] {
        [c] if is_container_list(c) => keys(&["name"]),
        ["volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims"] => keys(&["name"]),
        ["hostAliases"] => keys(&["ip"]),
        ["topologySpreadConstraints"] => keys(&["topologyKey", "whenUnsatisfiable"]),
        [c, "ports"] if is_container_list(c) => port_keys("containerPort"),
        [c, "env"] if is_container_list(c) => keys(&["name"]),
        [c, "volumeMounts"] if is_container_list(c) => keys(&["mountPath"]),
        [c, "volumeDevices"] if is_container_list(c) => keys(&["devicePath"]),
        _ => ListType::Atomic,
    }
}

fn builtin_map(b: Builtin, path: &[&str]) -> MapType {
    let last = *path.last().expect("non-empty path");
    match (b, path) {
        (Builtin::Service, ["spec", "selector"]) => MapType::Granular,
        // LabelSelector and the env/volume source references are `+structType=atomic`.
        (_, [.., "selector" | "labelSelector" | "namespaceSelector"]) => MapType::Atomic,
        (
            _,
            [
                ..,
                "configMapKeyRef" | "secretKeyRef" | "fieldRef" | "resourceFieldRef",
            ],
        ) => MapType::Atomic,
        _ if matches!(
            last,
            "nodeSelector"
                | "data"
                | "binaryData"
                | "stringData"
                | "limits"
                | "requests"
                | "overhead"
        ) =>
        {
            MapType::Granular
        }
        _ => MapType::Struct,
    }
}

fn crd_list(node: &Value) -> ListType {
    match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => {
            let items = node.get("items");
            let names = node
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array);
            let fields = names
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|name| KeyField {
                    name: name.into(),
                    default: items
                        .and_then(|i| i.pointer(&format!("/properties/{name}/default")))
                        .cloned(),
                })
                .collect::<Vec<_>>();
            if fields.is_empty() {
                ListType::Atomic
            } else {
                ListType::Map(fields)
            }
        }
        _ => ListType::Atomic,
    }
}

fn crd_map(node: &Value) -> MapType {
    match node.get("x-kubernetes-map-type").and_then(Value::as_str) {
        Some("atomic") => MapType::Atomic,
        Some("granular") => MapType::Granular,
        _ if node.get("properties").is_none()
            && node
                .get("additionalProperties")
                .is_some_and(Value::is_object) =>
        {
            MapType::Granular
        }
        _ => MapType::Struct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_are_recognised_by_group_and_kind() {
        for k in [
            "/v1/Pod",
            "apps/v1/Deployment",
            "batch/v1/Job",
            "coordination.k8s.io/v1/Lease",
            "/v1/ConfigMap",
        ] {
            assert!(Schema::for_kind(k, None).is_builtin(), "{k}");
        }
        for k in [
            "example.com/v1/Pod",
            "apps/v1/Foo",
            "stable.example.com/v1/CronTab",
        ] {
            assert!(!Schema::for_kind(k, None).is_builtin(), "{k}");
        }
    }

    #[test]
    fn pod_template_lists() {
        let s = Schema::for_kind("apps/v1/Deployment", None);
        assert_eq!(
            s.list_type(&["spec", "template", "spec", "containers"]),
            keys(&["name"])
        );
        assert_eq!(
            s.list_type(&["spec", "template", "spec", "containers", "env"]),
            keys(&["name"])
        );
        assert_eq!(
            s.list_type(&["spec", "template", "spec", "containers", "args"]),
            ListType::Atomic
        );
        assert_eq!(
            s.list_type(&["spec", "template", "spec", "tolerations"]),
            ListType::Atomic
        );
        assert_eq!(
            s.list_type(&["spec", "template", "metadata", "finalizers"]),
            ListType::Set
        );
        assert_eq!(s.list_type(&["spec", "containers"]), ListType::Atomic);
        assert_eq!(s.map_type(&["spec", "selector"]), MapType::Atomic);
        let svc = Schema::for_kind("/v1/Service", None);
        assert_eq!(svc.list_type(&["spec", "ports"]), port_keys("port"));
        assert_eq!(svc.map_type(&["spec", "selector"]), MapType::Granular);
    }

    #[test]
    fn crd_schema_hints() {
        let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                "items": {"type": "object", "properties": {"id": {"type": "string"}, "tags": {"type": "array", "x-kubernetes-list-type": "set"}}}},
            "extra": {"type": "object", "additionalProperties": {"type": "string"}},
            "plain": {"type": "array"}
        }}}}});
        let s = Schema::for_kind("example.com/v1/Widget", Some(&schema));
        assert_eq!(s.list_type(&["spec", "items"]), keys(&["id"]));
        assert_eq!(s.list_type(&["spec", "items", "tags"]), ListType::Set);
        assert_eq!(s.list_type(&["spec", "plain"]), ListType::Atomic);
        assert_eq!(s.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert_eq!(s.map_type(&["spec", "extra"]), MapType::Granular);
        assert_eq!(s.map_type(&["spec"]), MapType::Struct);
    }
}
