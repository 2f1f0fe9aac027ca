//! The webapp benchmark's Rust operators (`staircase_bench::webapp`), in-process on the embedded
//! API server with five WebApps: all become Ready, an edit of the image converges again, and
//! deletion removes every external record. The benchmark's driver, its processes and the Go
//! operator are not run here (see bench/README.md).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use staircase_apiserver::ApiServer;
use staircase_bench::webapp::{
    RECORDS_NAMESPACE, WebApp, WebAppSpec, kube_op, kubelet, staircase_op,
};

const N: usize = 5;
const NS: &str = "webapps";

async fn until(apps: &Api<WebApp>, what: &str, done: impl Fn(&[WebApp]) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = apps.list(&ListParams::default()).await.expect("list");
        if done(&list.items) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn exercise(client: kube::Client, name: &str) {
    let apps: Api<WebApp> = Api::namespaced(client.clone(), NS);
    for i in 0..N {
        let spec = WebAppSpec {
            image: "web:1".into(),
            replicas: 2,
            config: [("K".to_string(), i.to_string())].into(),
        };
        apps.create(
            &PostParams::default(),
            &WebApp::new(&format!("app-{i}"), spec),
        )
        .await
        .expect("create");
    }
    until(&apps, &format!("{name}: all Ready"), |a| {
        a.len() == N && a.iter().all(WebApp::is_ready)
    })
    .await;
    let patch = serde_json::json!({"spec": {"image": "web:2"}});
    for i in 0..N {
        apps.patch(
            &format!("app-{i}"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("edit");
    }
    until(&apps, &format!("{name}: all Ready after the edit"), |a| {
        a.iter()
            .all(|w| w.metadata.generation == Some(2) && w.is_ready())
    })
    .await;
    for i in 0..N {
        apps.delete(&format!("app-{i}"), &DeleteParams::default())
            .await
            .expect("delete");
    }
    until(&apps, &format!("{name}: all gone"), |a| a.is_empty()).await;
    let records = Api::<ConfigMap>::namespaced(client, RECORDS_NAMESPACE)
        .list(&ListParams::default())
        .await
        .expect("records");
    let left: Vec<String> = records
        .items
        .iter()
        .map(|r| r.name_any())
        .filter(|n| n.starts_with("webapps."))
        .collect();
    assert!(left.is_empty(), "{name}: external records left: {left:?}");
}

async fn setup() -> ApiServer {
    let server = ApiServer::start().await.expect("server");
    let client = server.client();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &WebApp::crd())
        .await
        .expect("crd");
    for ns in [NS, RECORDS_NAMESPACE] {
        let mut o = Namespace::default();
        o.metadata.name = Some(ns.into());
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &o)
            .await
            .expect("namespace");
    }
    let records: Api<ConfigMap> = Api::namespaced(client.clone(), RECORDS_NAMESPACE);
    for i in 0..N {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("{NS}.app-{i}"));
        records
            .create(&PostParams::default(), &cm)
            .await
            .expect("record");
    }
    tokio::spawn(kubelet(client, NS.into()));
    server
}

#[tokio::test]
async fn staircase_operator_converges_edits_and_cleans_up() {
    let server = setup().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let op = staircase_op::operator(server.client(), Duration::from_secs(3600), 4);
    let running = tokio::spawn(op.run_until(async {
        let _ = stopped.await;
    }));
    exercise(server.client(), "staircase").await;
    let _ = stop.send(());
    running.await.expect("operator");
}

#[tokio::test]
async fn kube_runtime_operator_converges_edits_and_cleans_up() {
    let server = setup().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(kube_op::run(
        server.client(),
        Duration::from_secs(3600),
        4,
        Some(Box::pin(async {
            let _ = stopped.await;
        })),
    ));
    exercise(server.client(), "kube-runtime").await;
    let _ = stop.send(());
    running.await.expect("operator");
}
