//! The example operators run to completion against the embedded API server, as
//! `cargo run --example NAME` does, and converge with one modification per run.

use staircase_testkit::ApiServer;

fn modifications(trace: &[String]) -> Vec<String> {
    trace
        .iter()
        .filter(|l| l.contains(" modified: "))
        .map(|l| {
            l.split_once("): ")
                .map(|(_, m)| m.to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// `cargo run --example demo`: three Foos become Ready one modification per run, are deleted
/// again through their cleanup step, and the CRD the demo installed is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_converges_cleans_up_and_removes_its_crd() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use staircase::RunEnd;

    let server = ApiServer::start().await.unwrap();
    let out = staircase_examples::foo::demo(server.client(), "default")
        .await
        .unwrap();
    for name in &out.names {
        let key = format!("default/{name}");
        let ends: Vec<String> = out
            .runs
            .iter()
            .filter(|r| r.object == key)
            .filter_map(|r| match &r.end {
                RunEnd::Modified { description, .. } => Some(description.to_string()),
                RunEnd::FinalizerRemoved => Some("finalizer removed".into()),
                _ => None,
            })
            .collect();
        assert_eq!(
            ends,
            [
                format!("created ConfigMap {name}-config"),
                format!("created Secret {name}-token"),
                format!("created Service {name}-svc"),
                format!("deleted ConfigMap {name}-config"),
                "finalizer removed".into(),
            ],
            "{name}"
        );
        assert!(out.runs.iter().all(|r| r.step_writes() <= 1));
    }
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(server.client());
    assert!(
        crds.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_keeps_a_deployment_and_a_service_and_reports_them() {
    let server = ApiServer::start().await.unwrap();
    let out = staircase_examples::echo::demo(server.client(), true)
        .await
        .unwrap();
    let status = out.echo.status.unwrap();
    assert_eq!(status.available_replicas, Some(3));
    assert_eq!(status.url.as_deref(), Some("http://hello.default.svc:8080"));
    let changes = modifications(&out.trace);
    assert_eq!(
        changes,
        [
            "echo_children modified: created Deployment.apps hello",
            "echo_children modified: created Service hello",
            "report_status modified: reported 2 available replicas",
            "echo_children modified: updated Deployment.apps hello (the desired configuration changed)",
            "report_status modified: reported 3 available replicas",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_observes_each_generation_after_publishing_it() {
    let server = ApiServer::start().await.unwrap();
    let trace = staircase_examples::greeting::demo(server.client(), true)
        .await
        .unwrap();
    assert_eq!(
        modifications(&trace),
        [
            "publish modified: created ConfigMap hello-greeting",
            "observe_generation modified: observed generation 1",
            "publish modified: updated ConfigMap hello-greeting (the desired configuration changed)",
            "observe_generation modified: observed generation 2",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_places_one_order_and_records_it() {
    let server = ApiServer::start().await.unwrap();
    let (trace, shop) = staircase_examples::order::demo(server.client(), true)
        .await
        .unwrap();
    assert_eq!(shop.create_calls(), 1);
    let changes = modifications(&trace);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes[0].starts_with("place_order modified: ordered 2 x coffee beans as order-1"));
    assert_eq!(changes[1], "record_order modified: recorded order order-1");
}
