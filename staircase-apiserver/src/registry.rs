//! Which resources the server serves: the built-in kinds and, at runtime, every served version
//! of every established CustomResourceDefinition.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// Everything the server knows about one resource in one API version.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// API version within the group, e.g. `v1`.
    pub version: String,
    /// Lower-case plural used in URLs, e.g. `deployments`.
    pub plural: String,
    /// Lower-case singular.
    pub singular: String,
    /// CamelCase kind, e.g. `Deployment`.
    pub kind: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names for kubectl, e.g. `cm`.
    pub short_names: Vec<String>,
    /// Categories such as `all`.
    pub categories: Vec<String>,
    /// Whether `/status` exists, which also splits spec and status writes.
    pub status_subresource: bool,
    /// The `openAPIV3Schema` of a custom resource version.
    pub schema: Option<Arc<Value>>,
    /// True for resources defined by a CRD.
    pub custom: bool,
    /// `additionalPrinterColumns` of a CRD version, used for `kubectl get` tables.
    pub printer_columns: Vec<Value>,
    /// Where the `/scale` subresource finds the replicas, for kinds that have one.
    pub scale: Option<crate::scale::ScalePaths>,
    /// A CRD version's `selectableFields` (e.g. `spec.color`), usable in field selectors.
    pub selectable_fields: Vec<String>,
    /// The CRD's `conversion.webhook` when its strategy is `Webhook`: objects stored in another
    /// version are converted by calling it (see `conversion`).
    pub conversion_webhook: Option<Arc<Value>>,
}

impl ResourceType {
    /// The built-in workload's `/scale` (`spec.replicas`, `status.replicas`, `spec.selector`).
    fn with_scale(mut self) -> Self {
        self.scale = Some(crate::scale::ScalePaths::workload());
        self
    }

    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key of the resource, independent of version: `apps/deployments`.
    pub fn key(&self) -> String {
        if crate::events::is_events_api(self) {
            return crate::events::KEY.into();
        }
        format!("{}/{}", self.group, self.plural)
    }

    /// The real server returns the deleted object (rather than a Success Status) for these.
    pub fn returns_deleted_object(&self) -> bool {
        self.custom || (self.group.is_empty() && self.plural == "pods")
    }

    /// `apps/v1/Deployment`, `/v1/ConfigMap` (empty core group): the kind string the patch
    /// module expects.
    pub fn gvk_string(&self) -> String {
        format!("{}/{}/{}", self.group, self.version, self.kind)
    }
}

/// Resource types by (group, version, plural), plus an index of groups for discovery.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    singular: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: singular.into(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: vec![],
        status_subresource: status,
        schema: None,
        custom: false,
        printer_columns: vec![],
        scale: None,
        selectable_fields: vec![],
        conversion_webhook: None,
    }
}

impl Registry {
    /// The built-in kinds served from startup.
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        let mut all = |mut t: ResourceType, cat_all: bool| {
            if cat_all {
                t.categories = vec!["all".into()];
            }
            r.insert(t);
        };
        all(
            builtin(
                "",
                "v1",
                "namespaces",
                "namespace",
                "Namespace",
                false,
                &["ns"],
                true,
            ),
            false,
        );
        all(
            builtin(
                "",
                "v1",
                "configmaps",
                "configmap",
                "ConfigMap",
                true,
                &["cm"],
                false,
            ),
            false,
        );
        all(
            builtin("", "v1", "secrets", "secret", "Secret", true, &[], false),
            false,
        );
        all(
            builtin(
                "",
                "v1",
                "services",
                "service",
                "Service",
                true,
                &["svc"],
                true,
            ),
            true,
        );
        all(
            builtin(
                "",
                "v1",
                "serviceaccounts",
                "serviceaccount",
                "ServiceAccount",
                true,
                &["sa"],
                false,
            ),
            false,
        );
        all(
            builtin("", "v1", "pods", "pod", "Pod", true, &["po"], true),
            true,
        );
        all(
            builtin("", "v1", "events", "event", "Event", true, &["ev"], false),
            false,
        );
        all(
            builtin(
                "events.k8s.io",
                "v1",
                "events",
                "event",
                "Event",
                true,
                &["ev"],
                false,
            ),
            false,
        );
        all(
            builtin(
                "apps",
                "v1",
                "deployments",
                "deployment",
                "Deployment",
                true,
                &["deploy"],
                true,
            )
            .with_scale(),
            true,
        );
        all(
            builtin(
                "apps",
                "v1",
                "statefulsets",
                "statefulset",
                "StatefulSet",
                true,
                &["sts"],
                true,
            )
            .with_scale(),
            true,
        );
        all(
            builtin(
                "apps",
                "v1",
                "daemonsets",
                "daemonset",
                "DaemonSet",
                true,
                &["ds"],
                true,
            ),
            true,
        );
        all(
            builtin(
                "apps",
                "v1",
                "replicasets",
                "replicaset",
                "ReplicaSet",
                true,
                &["rs"],
                true,
            )
            .with_scale(),
            true,
        );
        all(
            builtin("batch", "v1", "jobs", "job", "Job", true, &[], true),
            true,
        );
        all(
            builtin(
                "coordination.k8s.io",
                "v1",
                "leases",
                "lease",
                "Lease",
                true,
                &[],
                false,
            ),
            false,
        );
        // Kinds operators keep as children of a tenant or an app: stored and served; what a real
        // cluster's controllers do with them (quota accounting, volume binding, ingress
        // routing) does not happen here.
        for (group, plural, singular, kind, short, status) in [
            (
                "",
                "resourcequotas",
                "resourcequota",
                "ResourceQuota",
                "quota",
                true,
            ),
            (
                "",
                "limitranges",
                "limitrange",
                "LimitRange",
                "limits",
                false,
            ),
            (
                "",
                "persistentvolumeclaims",
                "persistentvolumeclaim",
                "PersistentVolumeClaim",
                "pvc",
                true,
            ),
            ("batch", "cronjobs", "cronjob", "CronJob", "cj", true),
            (
                "networking.k8s.io",
                "ingresses",
                "ingress",
                "Ingress",
                "ing",
                true,
            ),
            (
                "networking.k8s.io",
                "networkpolicies",
                "networkpolicy",
                "NetworkPolicy",
                "netpol",
                false,
            ),
            (
                "policy",
                "poddisruptionbudgets",
                "poddisruptionbudget",
                "PodDisruptionBudget",
                "pdb",
                true,
            ),
        ] {
            all(
                builtin(group, "v1", plural, singular, kind, true, &[short], status),
                false,
            );
        }
        // RBAC objects are stored and served (so manifests can be applied and checked), never
        // enforced: the embedded server authorises every request.
        for (plural, singular, kind, namespaced) in [
            ("roles", "role", "Role", true),
            ("rolebindings", "rolebinding", "RoleBinding", true),
            ("clusterroles", "clusterrole", "ClusterRole", false),
            (
                "clusterrolebindings",
                "clusterrolebinding",
                "ClusterRoleBinding",
                false,
            ),
        ] {
            all(
                builtin(
                    "rbac.authorization.k8s.io",
                    "v1",
                    plural,
                    singular,
                    kind,
                    namespaced,
                    &[],
                    false,
                ),
                false,
            );
        }
        // Admission webhook configurations: the server calls their webhooks (see
        // `crate::admission`).
        for (plural, singular, kind) in [
            (
                "validatingwebhookconfigurations",
                "validatingwebhookconfiguration",
                "ValidatingWebhookConfiguration",
            ),
            (
                "mutatingwebhookconfigurations",
                "mutatingwebhookconfiguration",
                "MutatingWebhookConfiguration",
            ),
        ] {
            all(
                builtin(
                    "admissionregistration.k8s.io",
                    "v1",
                    plural,
                    singular,
                    kind,
                    false,
                    &[],
                    false,
                ),
                false,
            );
        }
        all(
            builtin(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "customresourcedefinition",
                "CustomResourceDefinition",
                false,
                &["crd", "crds"],
                true,
            ),
            false,
        );
        r
    }

    /// Adds or replaces one resource type.
    pub fn insert(&mut self, t: ResourceType) {
        self.types.insert(
            (t.group.clone(), t.version.clone(), t.plural.clone()),
            Arc::new(t),
        );
    }

    /// Removes every version of a resource (used when its CRD goes away).
    pub fn remove_resource(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|(g, _, p), _| !(g == group && p == plural));
    }

    /// Looks up a resource type as addressed by a URL.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Every resource type of one group/version, for discovery.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .values()
            .filter(|t| t.group == group && t.version == version)
            .cloned()
            .collect()
    }

    /// All groups (excluding core) with their versions, preferred version first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (g, v, _) in self.types.keys() {
            if g.is_empty() {
                continue;
            }
            let vs = groups.entry(g.clone()).or_default();
            if !vs.contains(v) {
                vs.push(v.clone());
            }
        }
        groups
            .into_iter()
            .map(|(g, mut vs)| {
                vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
                (g, vs)
            })
            .collect()
    }

    /// Any type serving the resource (any version), used to find the kind for a storage key.
    pub fn any_version(&self, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .values()
            .find(|t| t.group == group && t.plural == plural)
            .cloned()
    }

    /// Any type serving `kind` in `group` (any version), as an owner reference names it.
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .values()
            .find(|t| t.group == group && t.kind == kind)
            .cloned()
    }
}

/// Kubernetes version ordering: GA > beta > alpha, then by numbers (`v2` > `v1` > `v1beta2`).
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let re = regex_lite_version(v);
    match re {
        Some((major, None)) => (3, major, 0),
        Some((major, Some(("beta", minor)))) => (2, major, minor),
        Some((major, Some((_, minor)))) => (1, major, minor),
        None => (0, 0, 0),
    }
}

fn regex_lite_version(v: &str) -> Option<(u32, Option<(&'static str, u32)>)> {
    let rest = v.strip_prefix('v')?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major: u32 = digits.parse().ok()?;
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return Some((major, None));
    }
    for (label, name) in [("beta", "beta"), ("alpha", "alpha")] {
        if let Some(n) = tail.strip_prefix(label) {
            return Some((major, Some((name, n.parse().ok()?))));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order() {
        let mut v = vec!["v1alpha1", "v1", "v2beta1", "v1beta2", "v2", "v1beta1"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(
            v,
            vec!["v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1"]
        );
    }
}
