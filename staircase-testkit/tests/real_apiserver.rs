//! Tests against the genuine kube-apiserver v1.37.2 (+ etcd + kube-controller-manager), started
//! by `staircase_testkit::real`. Build the binaries once with `bash scripts/real-apiserver/build.sh`;
//! without them these tests print how to and pass, unless `CI=true`, where they fail.
//!
//! All tests share one server per test binary (`RealApiServer::shared`), each in a namespace of
//! its own; `own_instance_is_stopped_even_when_the_test_panics` starts a second one of its own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use staircase_testkit::real::{K8S_VERSION, RealApiServer, shared_or_skip};

async fn get_json(client: &Client, path: &str) -> Value {
    let req = http::Request::get(path).body(Vec::new()).unwrap();
    client.request::<Value>(req).await.unwrap()
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    }
}

#[tokio::test]
async fn version_is_the_harness_version() {
    let Some(server) = shared_or_skip("version_is_the_harness_version").await else {
        return;
    };
    let v = get_json(&server.client(), "/version").await;
    assert_eq!(v["gitVersion"], K8S_VERSION, "{v}");
    assert_eq!(v["major"], "1");
    assert_eq!(v["minor"], "37");
    assert_eq!(v["gitTreeState"], "clean");
}

#[tokio::test]
async fn namespaces_are_per_test_and_ready_for_pods() {
    let Some(server) = shared_or_skip("namespaces_are_per_test_and_ready_for_pods").await else {
        return;
    };
    let a = server.namespace("Per_Test").await.unwrap();
    let b = server.namespace("per-test").await.unwrap();
    assert_ne!(a.name(), b.name());
    assert!(a.name().starts_with("per-test-"), "{}", a.name());
    let cms: Api<ConfigMap> = a.api();
    cms.create(&PostParams::default(), &cm("x")).await.unwrap();
    let other: Api<ConfigMap> = b.api();
    assert!(other.get_opt("x").await.unwrap().is_none());
    // The controller manager's ServiceAccount controller ran for the new namespace, so
    // ServiceAccount admission accepts a pod and projects the default account's token into it.
    let pods: Api<Pod> = a.api();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/x"}]}
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let volumes = spec.volumes.unwrap_or_default();
    assert!(
        volumes
            .iter()
            .any(|v| v.name.starts_with("kube-api-access-")),
        "{volumes:?}"
    );
}

/// A custom resource's create, status update and listing.
#[tokio::test]
async fn custom_resources_work() {
    let Some(server) = shared_or_skip("custom_resources_work").await else {
        return;
    };
    let ns = server.namespace("crd").await.unwrap();
    let client = ns.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "gadgets.real.staircase.dev"},
        "spec": {
            "group": "real.staircase.dev",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]
        }
    }))
    .unwrap();
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create CRD: {e}"),
    }
    eventually("CRD Established", Duration::from_secs(30), || {
        let crds = crds.clone();
        async move {
            let crd = crds.get("gadgets.real.staircase.dev").await.unwrap();
            crd.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        }
    })
    .await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("real.staircase.dev", "v1", "Gadget"),
        "gadgets",
    );
    let gadgets: Api<DynamicObject> = Api::namespaced_with(client, ns.name(), &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "real.staircase.dev/v1", "kind": "Gadget",
        "metadata": {"name": "g1"}, "spec": {"size": 3, "labels": {"a": "b"}, "dropped": true}
    }))
    .unwrap();
    // A create with a map in it (labels) and a field the schema does not know (pruned).
    let created = eventually_create(&gadgets, &obj).await;
    assert_eq!(
        created.data["spec"],
        json!({"size": 3, "labels": {"a": "b"}}),
        "unknown field pruned"
    );
    // The server is still alive afterwards.
    assert_eq!(gadgets.get("g1").await.unwrap().data["spec"]["size"], 3);
}

/// Creates `obj`, retrying while the CRD's endpoint is not served yet (404 right after Established).
async fn eventually_create(api: &Api<DynamicObject>, obj: &DynamicObject) -> DynamicObject {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match api.create(&PostParams::default(), obj).await {
            Ok(o) => return o,
            Err(kube::Error::Api(s)) if s.code == 404 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("create custom resource: {e}"),
        }
    }
}

/// Owner-reference garbage collection is done by kube-controller-manager.
#[tokio::test]
async fn garbage_collection_of_owned_objects() {
    let Some(server) = shared_or_skip("garbage_collection_of_owned_objects").await else {
        return;
    };
    let ns = server.namespace("gc").await.unwrap();
    let cms: Api<ConfigMap> = ns.api();
    let owner = cms
        .create(&PostParams::default(), &cm("owner"))
        .await
        .unwrap();
    let mut owned = cm("owned");
    owned.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "owner".into(),
            uid: owner.uid().unwrap(),
            ..Default::default()
        },
    ]);
    cms.create(&PostParams::default(), &owned).await.unwrap();
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually("owned ConfigMap collected", Duration::from_secs(60), || {
        let cms = cms.clone();
        async move { cms.get_opt("owned").await.unwrap().is_none() }
    })
    .await;
}

/// Figures for the docs: startup time and idle memory (run with `--nocapture` to see them).
#[tokio::test]
async fn report_startup_time_and_memory() {
    let Some(server) = shared_or_skip("report_startup_time_and_memory").await else {
        return;
    };
    eprintln!(
        "real kube-apiserver at {} started in {:.1?}",
        server.url(),
        server.startup_time()
    );
    for p in server.processes() {
        let rss = p.rss_kib().expect("process alive");
        eprintln!(
            "  {:<24} pid {:<8} RSS {:>7.1} MiB",
            p.name(),
            p.pid(),
            rss as f64 / 1024.0
        );
    }
}

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; it is reaped by the harness, so "gone" means reaped.
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A server of its own, dropped while its task unwinds from a panic: every process is killed.
#[tokio::test]
async fn own_instance_is_stopped_even_when_the_test_panics() {
    // Only to learn whether the binaries exist (and to skip like the others when they don't).
    if shared_or_skip("own_instance_is_stopped_even_when_the_test_panics")
        .await
        .is_none()
    {
        return;
    }
    let pids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let dir = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (p2, d2) = (pids.clone(), dir.clone());
    let task = tokio::spawn(async move {
        let server = RealApiServer::start().await.unwrap();
        *p2.lock().unwrap() = server
            .processes()
            .iter()
            .map(|p| p.pid())
            .collect::<Vec<_>>();
        *d2.lock().unwrap() = Some(server.dir().to_path_buf());
        let v = get_json(&server.client(), "/version").await;
        assert_eq!(v["gitVersion"], K8S_VERSION);
        panic!("deliberate panic with the server alive");
    });
    let err = task.await.expect_err("the task panicked");
    assert!(err.is_panic());
    let pids = pids.lock().unwrap().clone();
    assert_eq!(
        pids.len(),
        3,
        "etcd, kube-apiserver, kube-controller-manager"
    );
    for pid in pids {
        assert!(!alive(pid), "process {pid} survived the panic");
    }
    let dir = dir.lock().unwrap().clone().unwrap();
    if std::env::var("STAIRCASE_REAL_KEEP_DIR").as_deref() != Ok("1") {
        assert!(!dir.exists(), "scratch dir {} not removed", dir.display());
    }
}

/// Not a test but a tool: keeps a real server of its own up so that other suites can run against
/// it through a kubeconfig (used by `scripts/real-apiserver/conformance.sh`). Writes the
/// kubeconfig's path to `$STAIRCASE_REAL_SERVE_DIR/ready` and stops when the file
/// `$STAIRCASE_REAL_SERVE_DIR/stop` appears (or after `STAIRCASE_REAL_SERVE_MAX_SECS`, default 3600).
#[tokio::test]
#[ignore = "a tool: run with `-- --ignored --exact serve` and STAIRCASE_REAL_SERVE_DIR set"]
async fn serve() {
    let dir = std::path::PathBuf::from(
        std::env::var("STAIRCASE_REAL_SERVE_DIR").expect("STAIRCASE_REAL_SERVE_DIR"),
    );
    let max = std::env::var("STAIRCASE_REAL_SERVE_MAX_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    let server = RealApiServer::start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "real kube-apiserver at {} ready in {:.1?}",
        server.url(),
        server.startup_time()
    );
    let tmp = dir.join("ready.tmp");
    std::fs::write(&tmp, server.kubeconfig_path().display().to_string()).unwrap();
    std::fs::rename(&tmp, dir.join("ready")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(max);
    while !dir.join("stop").exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
}
