//! `GET /staircase/stats`: the request counts as JSON, writes that changed nothing apart.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use staircase_apiserver::ApiServer;

async fn stats(client: &kube::Client) -> Value {
    let req = http::Request::get("/staircase/stats")
        .body(Vec::new())
        .expect("request");
    serde_json::from_str(&client.request_text(req).await.expect("stats")).expect("json")
}

#[tokio::test]
async fn stats_endpoint_counts_unchanged_writes() -> anyhow::Result<()> {
    let server = ApiServer::start().await?;
    let mut config = server.config();
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static("stats-test/v1 (linux/amd64)"),
    ));
    let client = kube::Client::try_from(config)?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("a".into());
    cms.create(&PostParams::default(), &cm).await?;
    let same = json!({"data": {"k": "v"}});
    let first = cms
        .patch("a", &PatchParams::default(), &Patch::Merge(&same))
        .await?;
    // The same patch again: nothing changes, the resourceVersion stays.
    let again = cms
        .patch("a", &PatchParams::default(), &Patch::Merge(&same))
        .await?;
    assert_eq!(
        first.metadata.resource_version,
        again.metadata.resource_version
    );
    // A server-side apply of what is stored, twice: the second changes nothing.
    let apply = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"x": "y"}});
    let pp = PatchParams::apply("stats-test").force();
    cms.patch("a", &pp, &Patch::Apply(&apply)).await?;
    cms.patch("a", &pp, &Patch::Apply(&apply)).await?;
    cms.get("a").await?;
    // A second later the same apply still changes nothing: the managed fields' timestamps stay
    // (kube-apiserver's IgnoreManagedFieldsTimestampsTransformer).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let before = cms.get("a").await?.metadata.resource_version;
    let after = cms.patch("a", &pp, &Patch::Apply(&apply)).await?;
    assert_eq!(after.metadata.resource_version, before);

    let s = stats(&client).await;
    assert_eq!(s["writes"], 6, "{s}");
    assert_eq!(s["unchanged_writes"], 3, "{s}");
    assert_eq!(s["by_verb"]["patch"], 5, "{s}");
    assert_eq!(s["by_verb"]["get"], 2, "{s}");
    let agent = &s["by_agent"]["stats-test"];
    assert_eq!(agent["writes"], 6, "{s}");
    assert_eq!(agent["unchanged_writes"], 3, "{s}");
    assert_eq!(agent["by_verb"]["create"], 1, "{s}");
    assert_eq!(agent["by_resource"]["patch configmaps"], 5, "{s}");
    // The same counts through the library handle.
    assert_eq!(server.stats().unchanged_writes(), 3);
    Ok(())
}
