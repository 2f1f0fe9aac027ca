//! Aggregated discovery (`apidiscovery.k8s.io/v2`) against the legacy documents: kube-rs reads
//! the same resources from both, the `Accept` header picks one, and the `ETag` follows changes.
//! (The shape against the real kube-apiserver is the testkit's conformance case
//! `aggregated_discovery_lists_builtins_and_crds`.)

use std::collections::BTreeSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Discovery};
use serde_json::json;
use staircase_apiserver::ApiServer;

const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const ACCEPT_DISCOVERY: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

/// One line per resource and version: group, version, plural, kind, scope, verbs, subresources.
fn summary(d: &Discovery) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for g in d.groups() {
        for v in g.versions() {
            for (ar, caps) in g.versioned_resources(v) {
                let mut verbs = caps.operations.clone();
                verbs.sort();
                let mut subs: Vec<String> = caps
                    .subresources
                    .iter()
                    .map(|(s, c)| format!("{}:{}", s.plural, c.operations.join(",")))
                    .collect();
                subs.sort();
                lines.insert(format!(
                    "{}/{} {} {} {:?} [{}] [{}]",
                    ar.group,
                    ar.version,
                    ar.plural,
                    ar.kind,
                    caps.scope,
                    verbs.join(","),
                    subs.join(" ")
                ));
            }
        }
    }
    lines
}

async fn create_crd(client: &Client) -> Api<CustomResourceDefinition> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let schema = json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
    let crd = serde_json::from_value(json!({
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Cluster",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false, "schema": schema},
                {"name": "v1", "served": true, "storage": true, "schema": schema, "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}
                }}
            ]
        }
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    crds
}

#[tokio::test]
async fn aggregated_and_legacy_discovery_agree() {
    let server = ApiServer::start().await.unwrap();
    let client = server.client();
    let crds = create_crd(&client).await;
    let legacy = summary(&Discovery::new(client.clone()).run().await.unwrap());
    let aggregated = summary(
        &Discovery::new(client.clone())
            .run_aggregated()
            .await
            .unwrap(),
    );
    assert_eq!(aggregated, legacy);
    for gadgets in ["example.com/v1 gadgets", "example.com/v1beta1 gadgets"] {
        assert!(
            aggregated.iter().any(|l| l.starts_with(gadgets)),
            "{gadgets} in {aggregated:#?}"
        );
    }
    assert!(
        aggregated
            .iter()
            .any(|l| l.starts_with("apps/v1 deployments")
                && l.ends_with("[scale:get,patch,update status:get,patch,update]"))
    );

    crds.delete("gadgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let after = Discovery::new(client).run_aggregated().await.unwrap();
    assert!(!after.has_group("example.com"));
    assert!(after.has_group("apps"));
}

/// GET `path` with `accept` (and `If-None-Match`); the status and the named response headers.
async fn get(
    client: &Client,
    path: &str,
    accept: &str,
    if_none_match: Option<&str>,
) -> (u16, Option<String>, Option<String>, Vec<u8>) {
    let mut req = http::Request::get(path).header(http::header::ACCEPT, accept);
    if let Some(etag) = if_none_match {
        req = req.header(http::header::IF_NONE_MATCH, etag);
    }
    let resp = client
        .send(req.body(kube::client::Body::empty()).unwrap())
        .await
        .unwrap();
    let header = |h| {
        resp.headers()
            .get(h)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_string())
    };
    let (ct, etag) = (
        header(http::header::CONTENT_TYPE),
        header(http::header::ETAG),
    );
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, ct, etag, body)
}

#[tokio::test]
async fn accept_header_picks_the_document_and_the_etag_follows_changes() {
    let server = ApiServer::start().await.unwrap();
    let client = server.client();
    for path in ["/api", "/apis"] {
        let (code, ct, _, _) = get(&client, path, ACCEPT_DISCOVERY, None).await;
        assert_eq!((code, ct.as_deref()), (200, Some(AGGREGATED_V2)), "{path}");
        // v2beta1 is no longer served by kube-apiserver 1.37: the legacy document.
        let beta = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        for accept in ["application/json", "*/*", beta] {
            let (code, ct, etag, _) = get(&client, path, accept, None).await;
            assert_eq!(
                (code, ct.as_deref(), etag),
                (200, Some("application/json"), None),
                "{path} {accept}"
            );
        }
    }
    let (_, _, etag, _) = get(&client, "/apis", ACCEPT_DISCOVERY, None).await;
    let etag = etag.expect("ETag");
    let (code, _, again, body) = get(&client, "/apis", ACCEPT_DISCOVERY, Some(&etag)).await;
    assert_eq!(
        (code, again.as_deref(), body.len()),
        (304, Some(etag.as_str()), 0)
    );
    create_crd(&client).await;
    let (code, ct, changed, body) = get(&client, "/apis", ACCEPT_DISCOVERY, Some(&etag)).await;
    assert_eq!((code, ct.as_deref()), (200, Some(AGGREGATED_V2)));
    assert_ne!(changed, Some(etag));
    assert!(String::from_utf8(body).unwrap().contains("gadgets"));
}
