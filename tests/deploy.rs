//! The manifests in `deploy/` against the embedded API server: every object is accepted (the
//! Deployment will not run there), the CRD is the one generated from the type, and the RBAC rules
//! grant exactly the requests the Foo operator makes (none missing, none unused).

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::api::{Api, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use staircase::prelude::*;
use staircase::{LeaderElection, crds};
use staircase_examples::foo::{self, App, Foo, FooSpec};
use staircase_tests::{Env, Running, wait_for, wait_gone};

/// The manifests in `deploy/`, and with `sharded` those of `deploy/sharded/` after them.
fn manifests(sharded: bool) -> Vec<(String, serde_json::Value)> {
    let mut out = manifests_in("deploy");
    if sharded {
        out.extend(manifests_in("deploy/sharded"));
    }
    out
}

fn manifests_in(dir: &str) -> Vec<(String, serde_json::Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the manifests' directory exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("valid YAML");
        for v in docs {
            if !v.is_null() {
                out.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
            }
        }
    }
    out
}

fn gvk(v: &serde_json::Value) -> GroupVersionKind {
    let api_version = v["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, v["kind"].as_str().expect("kind"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_manifest_is_accepted_and_the_crd_is_generated_from_the_type() {
    let env = Env::start().await;
    let all = manifests(true);
    let crd = all
        .iter()
        .find(|(_, v)| v["kind"] == "CustomResourceDefinition")
        .expect("a CRD manifest");
    let generated = serde_json::to_value(<Foo as kube::CustomResourceExt>::crd()).unwrap();
    assert_eq!(
        crd.1, generated,
        "deploy/01-crd.yaml is stale: regenerate it with `cargo run --example foo-operator -- crd`"
    );

    for (file, v) in &all {
        let gvk = gvk(v);
        // Discovery again for each object: the CRD applied earlier adds its resource.
        let discovery = Discovery::new(env.client.clone())
            .run()
            .await
            .expect("discovery");
        let (ar, caps) = discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("{file}: {gvk:?} is not served"));
        let obj: DynamicObject = serde_json::from_value(v.clone()).unwrap();
        let name = obj.metadata.name.clone().expect("named");
        let api: Api<DynamicObject> = match (caps.scope, obj.metadata.namespace.as_deref()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(env.client.clone(), ns, &ar),
            (Scope::Namespaced, None) => panic!("{file}: {name} needs a namespace"),
            (Scope::Cluster, _) => Api::all_with(env.client.clone(), &ar),
        };
        let pp = PatchParams::apply("deploy-test").validation_strict();
        api.patch(&name, &pp, &Patch::Apply(&obj))
            .await
            .unwrap_or_else(|e| panic!("{file}: {} {name} rejected: {e}", gvk.kind));
        if gvk.kind == "CustomResourceDefinition" {
            crds::install::<Foo>(&env.client)
                .await
                .expect("established");
        }
    }
    let kinds: BTreeSet<&str> = all.iter().filter_map(|(_, v)| v["kind"].as_str()).collect();
    for k in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.contains(k), "deploy/ has a {k}");
    }
}

/// `(group, resource[/subresource], verb)` as RBAC names them.
type Grant = (String, String, String);

fn granted(sharded: bool) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for (_, v) in manifests(sharded) {
        let rules = match v["kind"].as_str() {
            Some("ClusterRole") => serde_json::from_value::<ClusterRole>(v).unwrap().rules,
            Some("Role") => serde_json::from_value::<Role>(v).unwrap().rules,
            _ => continue,
        };
        for r in rules.unwrap_or_default() {
            for g in r.api_groups.unwrap_or_default() {
                for res in r.resources.clone().unwrap_or_default() {
                    for verb in &r.verbs {
                        out.insert((g.clone(), res.clone(), verb.clone()));
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_grants_exactly_the_requests_the_operator_makes() {
    rbac_grants_exactly_what_is_used(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_rbac_grants_exactly_the_requests_the_replicas_make() {
    rbac_grants_exactly_what_is_used(true).await;
}

/// Runs the Foo operator as the Deployment configures it (two sharded replicas with `sharded`)
/// through everything its staircase does, and compares the requests with the RBAC rules.
async fn rbac_grants_exactly_what_is_used(sharded: bool) {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("foo-system".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    env.server.stats().reset();

    // The operator as `examples/operator.rs` configures it in the Deployment.
    let replica = |identity: &str| {
        let mut le = LeaderElection::new("foo-operator")
            .with_namespace("foo-system")
            .with_identity(identity);
        if sharded {
            // Shorter than the defaults, so the second replica's share moves in a second.
            le = le.sharded().with_timing(
                std::time::Duration::from_secs(2),
                std::time::Duration::from_secs(1),
                std::time::Duration::from_millis(100),
            );
        }
        Operator::with_state(
            env.client.clone(),
            foo::stairs(),
            App {
                manager: "foo-operator".into(),
            },
        )
        .with_config(
            OperatorConfig::default()
                .with_name("foo-operator")
                .with_leader_election(le),
        )
        .with_status()
        .owns::<ConfigMap>()
        .owns::<Secret>()
        .owns::<Service>()
    };
    let identities: &[&str] = if sharded {
        &["pod-0", "pod-1"]
    } else {
        &["pod-0"]
    };
    let mut replicas = Vec::new();
    for id in identities {
        let op = replica(id);
        op.check().await.expect("preflight");
        replicas.push(Running::operator(op));
    }

    // Everything the staircase does: create the children, repair them after a spec change,
    // clean up on deletion.
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    let foo = {
        let mut f = Foo::new(
            "f",
            FooSpec {
                message: "one".into(),
                port: 80,
            },
        );
        f.metadata.namespace = Some("default".into());
        f
    };
    foos.create(&PostParams::default(), &foo).await.unwrap();
    let ready = |g: i64| {
        move |f: Option<&Foo>| {
            f.is_some_and(|f| {
                f.metadata.generation == Some(g)
                    && f.status
                        .as_ref()
                        .is_some_and(|s| s.steps.is_ready_at(Some(g)))
            })
        }
    };
    wait_for(&foos, "f", ready(1)).await;
    let change = serde_json::json!({ "spec": { "message": "two", "port": 81 } });
    foos.patch("f", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .unwrap();
    wait_for(&foos, "f", ready(2)).await;
    foos.delete("f", &DeleteParams::default()).await.unwrap();
    wait_gone(&foos, "f").await;
    for r in replicas {
        r.stop().await;
    }

    let mut used = BTreeSet::new();
    for r in env.server.stats().requests() {
        let (Some(verb), Some(resource)) = (r.verb, r.resource.as_deref()) else {
            continue;
        };
        let verb = format!("{verb:?}").to_lowercase();
        let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
        // The test's own requests, not the operator's.
        if plural == "foos" && (verb == "create" || verb == "delete") {
            continue;
        }
        if plural == "leases" || (plural == "configmaps" && sharded && verb == "update") {
            assert_eq!(
                r.namespace.as_deref(),
                Some("foo-system"),
                "leases and the assignment only in the operator's namespace"
            );
        }
        let res = match &r.subresource {
            Some(s) => format!("{plural}/{s}"),
            None => plural.to_string(),
        };
        used.insert((group.to_string(), res, verb));
    }
    let granted = granted(sharded);
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "the operator needs permissions deploy/02-rbac.yaml does not grant: {missing:?}"
    );
    // Granted but only needed when the watch lags behind the operator's own write (the runner
    // then reads the object directly, after `read_your_writes_grace`; the steps read their
    // children from the caches, and directly only when a cache lags that long behind a write of
    // theirs): not provoked here.
    // The cleanup step's ConfigMap delete is usually observed, but in some runs the ConfigMap is
    // already gone when cleanup looks (not pinned down yet; see the issue-6 report), so it is
    // not required to appear.
    // An Event is patched only when the same one repeats (aggregation into a series), which a
    // clean run does not always provoke. And a converged object is re-read only at its resync.
    let rarely: BTreeSet<Grant> = [
        ("demo.staircase.rs", "foos", "get"),
        ("", "configmaps", "get"),
        ("", "secrets", "get"),
        ("", "services", "get"),
        ("", "configmaps", "delete"),
        ("events.k8s.io", "events", "patch"),
    ]
    .into_iter()
    .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
    .collect();
    let unused: Vec<_> = granted
        .difference(&used)
        .filter(|g| !rarely.contains(*g))
        .collect();
    assert!(
        unused.is_empty(),
        "deploy/02-rbac.yaml grants permissions the operator never used: {unused:?}"
    );
}
