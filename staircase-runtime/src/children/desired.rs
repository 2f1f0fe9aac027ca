//! A desired child: any Kubernetes object, typed or dynamic, erased to JSON plus the facts needed
//! to reach it (its API resource and scope), and stamped with the marks that tie it to its parent.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject};
use serde::Serialize;
use serde_json::Value;

use crate::Error;

/// Label carried by every child the children step manages: the uid of the parent. Pruning lists
/// children by this label and then also requires an owner reference to the same uid, so an
/// object that merely copies the label is never deleted.
pub const OWNER_LABEL: &str = "staircase.rs/owner-uid";

/// Annotation holding a hash of the configuration last applied to a child. A change in what the
/// parent wants (including a field it no longer sets) changes the hash, which is how the step
/// notices drift that a comparison with the live object cannot see.
pub const APPLIED_HASH_ANNOTATION: &str = "staircase.rs/applied-hash";

/// Whether a child kind lives in a namespace; implemented for k8s-openapi's scope markers so
/// typed children carry their scope in their type.
pub trait ChildScope {
    /// `true` for namespaced kinds.
    const NAMESPACED: bool;
}

impl ChildScope for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl ChildScope for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// Identifies a child kind: enough to list, apply and delete objects of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildKind {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// Whether objects of the kind live in a namespace.
    pub namespaced: bool,
}

impl ChildKind {
    /// The kind of typed objects `T`.
    pub fn of<T>() -> Self
    where
        T: Resource<DynamicType = ()>,
        T::Scope: ChildScope,
    {
        ChildKind {
            resource: ApiResource::erase::<T>(&()),
            namespaced: <T::Scope as ChildScope>::NAMESPACED,
        }
    }

    /// A kind known only at run time (a custom resource of another operator, say).
    pub fn dynamic(resource: ApiResource, namespaced: bool) -> Self {
        ChildKind {
            resource,
            namespaced,
        }
    }

    /// The key changes are ordered by: Namespaces and CustomResourceDefinitions first (what
    /// other children live in, or are instances of, must exist before them), then by kind, so
    /// the order reads "all ConfigMaps, then all Deployments, …", then the group to separate
    /// same-named kinds of different APIs.
    pub(crate) fn sort_key(&self) -> (bool, &str, &str) {
        let (kind, group) = (self.resource.kind.as_str(), self.resource.group.as_str());
        let container = matches!(
            (kind, group),
            ("Namespace", "") | ("CustomResourceDefinition", "apiextensions.k8s.io")
        );
        (!container, kind, group)
    }

    /// `Kind.group` (or `Kind` for the core group), for messages.
    pub fn label(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.kind.clone()
        } else {
            format!("{}.{}", self.resource.kind, self.resource.group)
        }
    }
}

impl fmt::Display for ChildKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// One desired child: what the parent wants to exist, as the configuration the step applies.
#[derive(Debug, Clone)]
pub struct DesiredChild {
    pub(crate) kind: ChildKind,
    pub(crate) name: String,
    /// `None` until the parent's namespace is filled in for namespaced kinds.
    pub(crate) namespace: Option<String>,
    pub(crate) object: Value,
}

impl DesiredChild {
    /// A typed child (any k8s-openapi type or `#[derive(CustomResource)]` type).
    ///
    /// Set only the fields you care about: the step applies exactly these with server-side apply,
    /// so fields other actors set (an HPA's replicas, injected sidecars, defaults) are left alone.
    pub fn typed<T>(object: &T) -> Result<Self, Error>
    where
        T: Resource<DynamicType = ()> + Serialize,
        T::Scope: ChildScope,
    {
        let mut value = serde_json::to_value(object)?;
        // Some types (custom resources built with `Default`) serialize without their type fields;
        // apply needs them.
        let kind = ChildKind::of::<T>();
        set_type_fields(&mut value, &kind.resource);
        Self::from_value(kind, value)
    }

    /// A child known only as a `DynamicObject`, of the kind `kind`.
    pub fn dynamic(object: &DynamicObject, kind: ChildKind) -> Result<Self, Error> {
        let mut value = serde_json::to_value(object)?;
        set_type_fields(&mut value, &kind.resource);
        Self::from_value(kind, value)
    }

    fn from_value(kind: ChildKind, mut object: Value) -> Result<Self, Error> {
        let meta = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| Error::permanent(anyhow::anyhow!("a desired {kind} has no metadata")))?;
        // Fields the server owns: sending them in an apply configuration is an error or a lie.
        for owned_by_server in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(owned_by_server);
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                Error::permanent(anyhow::anyhow!(
                    "a desired {kind} has no metadata.name (generateName cannot be tracked across runs)"
                ))
            })?
            .to_string();
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        // `status` is never applied: the child's controller owns it.
        if let Some(o) = object.as_object_mut() {
            o.remove("status");
        }
        Ok(DesiredChild {
            kind,
            name,
            namespace,
            object,
        })
    }

    /// The child's kind.
    pub fn kind(&self) -> &ChildKind {
        &self.kind
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration that will be applied; the parent's namespace, owner reference, tracking
    /// label and hash annotation are added to it when the step runs.
    pub fn object(&self) -> &Value {
        &self.object
    }

    /// Ties the child to its parent: namespace, controller owner reference, tracking label and
    /// the hash of everything else. Called once per run, before comparing.
    pub(crate) fn stamp(&mut self, parent: &ParentRef) {
        if self.kind.namespaced && self.namespace.is_none() {
            self.namespace = parent.namespace.clone();
        }
        let meta = self.object["metadata"]
            .as_object_mut()
            .expect("checked in from_value");
        if let Some(ns) = &self.namespace {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        let owner = serde_json::to_value(&parent.owner).expect("OwnerReference serializes");
        let refs = meta
            .entry("ownerReferences")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = refs.as_array_mut()
            && !list.iter().any(|r| r["uid"] == owner["uid"])
        {
            list.push(owner);
        }
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(OWNER_LABEL.into(), Value::String(parent.owner.uid.clone()));
        }
        let hash = format!("{:016x}", fnv1a(&self.object));
        let annotations = self.object["metadata"]
            .as_object_mut()
            .expect("checked in from_value")
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(APPLIED_HASH_ANNOTATION.into(), Value::String(hash));
        }
    }

    /// The hash stamped into the configuration.
    pub(crate) fn applied_hash(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(APPLIED_HASH_ANNOTATION))
            .and_then(Value::as_str)
    }
}

/// What a child needs to know about its parent.
#[derive(Debug, Clone)]
pub(crate) struct ParentRef {
    pub(crate) owner: OwnerReference,
    pub(crate) namespace: Option<String>,
    pub(crate) description: String,
}

impl ParentRef {
    pub(crate) fn of<K: Resource<DynamicType = ()>>(parent: &K) -> Result<Self, Error> {
        let owner = parent.controller_owner_ref(&()).ok_or_else(|| {
            Error::permanent(anyhow::anyhow!(
                "the parent {} has no name or uid, so children cannot be owned by it",
                K::kind(&())
            ))
        })?;
        let description = format!("{} {}", K::kind(&()), owner.name);
        Ok(ParentRef {
            owner,
            namespace: parent.meta().namespace.clone(),
            description,
        })
    }
}

fn set_type_fields(value: &mut Value, resource: &ApiResource) {
    if let Some(o) = value.as_object_mut() {
        o.entry("apiVersion")
            .or_insert_with(|| Value::String(resource.api_version.clone()));
        o.entry("kind")
            .or_insert_with(|| Value::String(resource.kind.clone()));
    }
}

/// FNV-1a over the canonical JSON text (object keys sorted, whatever map type serde_json was
/// built with). Hand-written rather than `DefaultHasher` because the hash is stored in the
/// cluster and must not change when the Rust toolchain does (a change would rewrite every child
/// once after an upgrade). The text is fed to the hash as it is produced, never built: this runs
/// for every desired child on every run.
fn fnv1a(value: &Value) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.canonical(value);
    h.0
}

struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn canonical(&mut self, value: &Value) {
        match value {
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                self.bytes(b"{");
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        self.bytes(b",");
                    }
                    self.json(k);
                    self.bytes(b":");
                    self.canonical(v);
                }
                self.bytes(b"}");
            }
            Value::Array(items) => {
                self.bytes(b"[");
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        self.bytes(b",");
                    }
                    self.canonical(v);
                }
                self.bytes(b"]");
            }
            other => self.json(other),
        }
    }

    /// serde_json's compact text of a scalar or a key, as `to_string` writes it.
    fn json<T: serde::Serialize + ?Sized>(&mut self, v: &T) {
        serde_json::to_writer(&mut *self, v).expect("writing to a hash cannot fail");
    }
}

impl std::io::Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use serde_json::json;

    /// The canonical text as a string, the definition the streamed hash must follow byte for
    /// byte (the hashes are stored in clusters).
    fn canonical(value: &Value) -> String {
        match value {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, String> =
                    m.iter().map(|(k, v)| (k, canonical(v))).collect();
                let body: Vec<String> = sorted
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                    .collect();
                format!("{{{}}}", body.join(","))
            }
            Value::Array(items) => format!(
                "[{}]",
                items.iter().map(canonical).collect::<Vec<_>>().join(",")
            ),
            other => other.to_string(),
        }
    }

    #[test]
    fn the_streamed_hash_is_the_hash_of_the_canonical_text() {
        let values = [
            json!({"b": 1, "a": {"y": [1, 2.5, -3, 1e300], "x": "s"}}),
            json!({"quote\"key": "tab\there", "é": "ü\u{1F600}", "ctl": "\u{1}\n"}),
            json!([null, true, false, {}, [], "", {"z": {"y": {"x": [{}]}}}]),
            json!({"spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "w"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27",
                "ports": [{"containerPort": 80}]}]}}}}),
        ];
        for v in values {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in canonical(&v).as_bytes() {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            assert_eq!(fnv1a(&v), h, "{v}");
        }
    }

    #[test]
    fn the_hash_ignores_key_order_and_sees_every_value() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b = json!({"a": {"x": "s", "y": [1, 2]}, "b": 1});
        let c = json!({"a": {"x": "s", "y": [2, 1]}, "b": 1});
        assert_eq!(fnv1a(&a), fnv1a(&b));
        assert_ne!(fnv1a(&a), fnv1a(&c));
        // Pinned: the value is stored in clusters, so it must never change between releases.
        assert_eq!(fnv1a(&json!({"a": 1})), 0x9c3e_82dd_6fca_e8b1);
    }
}
