//! Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`): every group, version
//! and resource in one answer to `/api` or `/apis`, in the shape and order kube-apiserver 1.37
//! gives them.

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceType};

/// `/api`: the core group, one item without a name.
pub fn core(reg: &Registry) -> Value {
    list(vec![
        json!({"metadata": {}, "versions": [version(reg, "", "v1")]}),
    ])
}

/// `/apis`: every other group, by kube-apiserver's group priority, then by name.
pub fn groups(reg: &Registry) -> Value {
    let mut groups = reg.groups();
    // Stable: groups of equal priority stay in name order, as kube-apiserver breaks ties.
    groups.sort_by_key(|(g, vs)| std::cmp::Reverse(group_priority(reg, g, vs)));
    let items = groups
        .iter()
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions.iter().map(|v| version(reg, g, v)).collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .collect();
    list(items)
}

fn list(items: Vec<Value>) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// A group's priority in kube-apiserver's discovery (`APIService` `groupPriorityMinimum`): the
/// built-in groups' from its table, 1000 for groups of CRDs.
fn group_priority(reg: &Registry, group: &str, versions: &[String]) -> u32 {
    let custom = versions
        .iter()
        .flat_map(|v| reg.in_group_version(group, v))
        .any(|t| t.custom);
    if custom {
        return 1000;
    }
    match group {
        "apps" => 17800,
        "events.k8s.io" => 17750,
        "authentication.k8s.io" => 17700,
        "authorization.k8s.io" => 17600,
        "autoscaling" => 17500,
        "batch" => 17400,
        "certificates.k8s.io" => 17300,
        "networking.k8s.io" => 17200,
        "policy" => 17100,
        "rbac.authorization.k8s.io" => 17000,
        "storage.k8s.io" => 16800,
        "apiextensions.k8s.io" | "admissionregistration.k8s.io" => 16700,
        "scheduling.k8s.io" => 16600,
        "coordination.k8s.io" => 16500,
        "node.k8s.io" => 16300,
        "discovery.k8s.io" | "resource.k8s.io" => 16200,
        "flowcontrol.apiserver.k8s.io" => 16100,
        "storagemigration.k8s.io" => 15800,
        _ => 1000,
    }
}

fn version(reg: &Registry, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = reg
        .in_group_version(group, version)
        .iter()
        .map(|t| resource(t))
        .collect();
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

/// A built-in resource's `responseKind` leaves group and version empty (they are the enclosing
/// ones); a custom resource's names them.
fn response_kind(t: &ResourceType) -> Value {
    if t.custom {
        json!({"group": t.group, "version": t.version, "kind": t.kind})
    } else {
        json!({"group": "", "version": "", "kind": t.kind})
    }
}

fn resource(t: &ResourceType) -> Value {
    let verbs: Vec<&str> = if t.custom {
        // The apiextensions server's order, not sorted.
        vec![
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "create",
            "update",
            "watch",
        ]
    } else {
        super::verbs(t)
    };
    let mut r = json!({
        "resource": t.plural,
        "responseKind": response_kind(t),
        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": t.singular,
        "verbs": verbs,
    });
    if !t.short_names.is_empty() {
        r["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        r["categories"] = json!(t.categories);
    }
    let subresources = subresources(t);
    if !subresources.is_empty() {
        r["subresources"] = Value::Array(subresources);
    }
    r
}

/// A built-in resource's subresources in name order; a custom resource's `status` before `scale`
/// (the order the apiextensions server appends them).
fn subresources(t: &ResourceType) -> Vec<Value> {
    let rw = ["get", "patch", "update"];
    let mut subs = vec![];
    if t.plural == "namespaces" && t.group.is_empty() {
        subs.push(json!({"subresource": "finalize", "responseKind": response_kind(t), "verbs": ["update"]}));
    }
    let scale = t.scale.is_some().then(|| {
        json!({
            "subresource": "scale",
            "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": rw,
        })
    });
    if !t.custom {
        subs.extend(scale.clone());
    }
    if t.status_subresource {
        subs.push(json!({"subresource": "status", "responseKind": response_kind(t), "verbs": rw}));
    }
    if t.custom {
        subs.extend(scale);
    }
    subs
}
