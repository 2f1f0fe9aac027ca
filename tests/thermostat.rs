//! A `Thermostat` operator written from the docs alone: a CRD served in two versions (`v1` with
//! `spec.target: "21.5C"` or `"70F"`, `v2` with `spec.target: {celsius: f64}`, stored as `v2`)
//! converted by a webhook of `staircase::webhook`, served over TLS with a generated certificate
//! whose CA the webhooks keep in the CRD's `caBundle`. The operator runs on `v2` and keeps a
//! ConfigMap `<name>-setpoint` with the target in Celsius, and a condition `SetpointApplied`.
//!
//! Tested against the embedded API server, which calls the conversion webhook by URL: reads,
//! lists and patches through either version, the operator converging objects written through
//! `v1`, a conversion that fails, and the explorer's variants.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition, WebhookClientConfig, WebhookConversion,
};
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::crd::merge_crds;
use kube::{Client, CustomResourceExt, Resource, ResourceExt};
use staircase::prelude::*;
use staircase::webhook::{CaBundle, Conversion, Serving, Tls, Webhooks};
use staircase::{OperatorConfig, RunEnd, Stairs};
use staircase_testkit::explorer::{Explorer, Scenario};
use staircase_testkit::real::shared_or_skip;
use staircase_tests::{Env, GUARD, Running, wait_for};
use tokio::net::TcpListener;

const GROUP: &str = "climate.example.com";
const CRD_NAME: &str = "thermostats.climate.example.com";
const CONVERT: &str = "/convert-thermostats";
const CONDITION: &str = "SetpointApplied";

/// The first version: the target as text, with its unit.
pub mod v1 {
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};
    use staircase::StepStatus;

    /// A thermostat, as `v1` has it.
    #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
    #[kube(
        group = "climate.example.com",
        version = "v1",
        kind = "Thermostat",
        namespaced
    )]
    #[kube(status = "StepStatus")]
    pub struct ThermostatSpec {
        /// `21.5C` or `70F`.
        pub target: String,
    }
}

/// The stored version: the target in degrees Celsius.
pub mod v2 {
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};
    use staircase::StepStatus;

    /// A thermostat, as `v2` has it.
    #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
    #[kube(
        group = "climate.example.com",
        version = "v2",
        kind = "Thermostat",
        namespaced
    )]
    #[kube(status = "StepStatus")]
    pub struct ThermostatSpec {
        /// The temperature to hold.
        pub target: Target,
    }

    /// A temperature.
    #[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
    pub struct Target {
        /// Degrees Celsius.
        pub celsius: f64,
    }
}

/// `"21.5C"` or `"70F"` in degrees Celsius.
fn parse_target(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let bad = || format!("target {text:?} is not a temperature like \"21.5C\" or \"70F\"");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    match unit {
        "C" | "c" => Ok(value),
        "F" | "f" => Ok((value - 32.0) * 5.0 / 9.0),
        _ => Err(bad()),
    }
}

/// How `v1` writes a Celsius value.
fn format_celsius(celsius: f64) -> String {
    format!("{celsius}C")
}

/// Conversion from `v1` up to `v2`; an unparseable target fails the conversion.
async fn up(old: v1::Thermostat) -> Result<v2::Thermostat, String> {
    let celsius = parse_target(&old.spec.target)?;
    let mut new = v2::Thermostat::new(
        "",
        v2::ThermostatSpec {
            target: v2::Target { celsius },
        },
    );
    // Metadata is the original's whatever is set here; the status is ours to carry over.
    new.status = old.status;
    Ok(new)
}

/// Conversion from `v2` down to `v1`.
async fn down(new: v2::Thermostat) -> Result<v1::Thermostat, String> {
    let celsius = new.spec.target.celsius;
    if celsius < -273.15 {
        return Err(format!("{celsius}°C is below absolute zero"));
    }
    let mut old = v1::Thermostat::new(
        "",
        v1::ThermostatSpec {
            target: format_celsius(new.spec.target.celsius),
        },
    );
    old.status = new.status;
    Ok(old)
}

/// The CRD: both versions served, `v2` stored, converted by the webhook at `url`, trusting
/// `ca_bundle` (none yet when `keep_ca_bundle` will write it).
fn crd(url: &str, ca_bundle: Option<String>) -> CustomResourceDefinition {
    let mut crd = merge_crds(vec![v1::Thermostat::crd(), v2::Thermostat::crd()], "v2")
        .expect("two versions of one kind");
    crd.spec.conversion = Some(CustomResourceConversion {
        strategy: "Webhook".into(),
        webhook: Some(WebhookConversion {
            client_config: Some(WebhookClientConfig {
                url: Some(url.into()),
                ca_bundle: ca_bundle.map(|pem| ByteString(pem.into_bytes())),
                ..Default::default()
            }),
            conversion_review_versions: vec!["v1".into()],
        }),
    });
    crd
}

/// The ConfigMap `<name>-setpoint` carries the target in Celsius.
#[step]
async fn ensure_setpoint(t: &v2::Thermostat, ctx: &Context) -> Result<Outcome> {
    let name = format!("{}-setpoint", t.name_any());
    let celsius = t.spec.target.celsius.to_string();
    let data = BTreeMap::from([("celsius".to_string(), celsius.clone())]);
    let outcome = match ctx.get::<ConfigMap>(&name).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    owner_references: t.controller_owner_ref(&()).map(|o| vec![o]),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            ctx.api::<ConfigMap>()
                .create(&PostParams::default(), &cm)
                .await?;
            Outcome::modified(format!("created ConfigMap {name}"))
        }
        Some(cm) if cm.data.as_ref() != Some(&data) => {
            let patch = serde_json::json!({ "data": data });
            ctx.api::<ConfigMap>()
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Outcome::modified(format!("updated ConfigMap {name}"))
        }
        Some(_) => Outcome::unchanged(),
    };
    if matches!(outcome, Outcome::Unchanged(_)) {
        ctx.set_condition(CONDITION, true, "Applied", format!("holding {celsius}°C"))?;
    }
    Ok(outcome)
}

fn stairs() -> impl Reconciler<v2::Thermostat, ()> {
    staircase!(v2::Thermostat => [ensure_setpoint])
}

fn operator(
    client: Client,
) -> Operator<v2::Thermostat, (), impl Stairs<v2::Thermostat, ()>, impl Stairs<v2::Thermostat, ()>>
{
    Operator::new(client, stairs())
        .with_status()
        .owns::<ConfigMap>()
}

fn thermostat_v1(name: &str, target: &str) -> v1::Thermostat {
    v1::Thermostat::new(
        name,
        v1::ThermostatSpec {
            target: target.into(),
        },
    )
}

fn thermostat_v2(name: &str, celsius: f64) -> v2::Thermostat {
    v2::Thermostat::new(
        name,
        v2::ThermostatSpec {
            target: v2::Target { celsius },
        },
    )
}

/// The conversion webhook on 127.0.0.1 with a generated certificate: the listener is bound
/// first, so the CRD (created here, without a caBundle) can name its URL; the webhooks then
/// write their CA into it.
async fn serve_conversion(client: &Client) -> Serving {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}{CONVERT}", listener.local_addr().unwrap());
    staircase::crds::install_crd(client, crd(&url, None), GUARD)
        .await
        .expect("CRD installed");
    let serving = webhooks()
        .keep_ca_bundle(client.clone(), [CaBundle::crd(CRD_NAME)])
        .start(listener)
        .await
        .expect("webhooks served");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let kept = crds.get(CRD_NAME).await.unwrap().spec.conversion.unwrap();
    assert_eq!(
        kept.webhook.unwrap().client_config.unwrap().ca_bundle,
        Some(ByteString(serving.ca_bundle().into_bytes())),
        "the CRD's conversion stanza carries the served CA"
    );
    serving
}

fn webhooks() -> Webhooks {
    Webhooks::new(Tls::generate(["127.0.0.1"]))
        .convert(CONVERT, Conversion::new().map(up).map(down))
}

fn setpoint(cm: Option<&ConfigMap>) -> Option<f64> {
    cm?.data.as_ref()?.get("celsius")?.parse().ok()
}

fn about(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn applied(t: Option<&v2::Thermostat>) -> bool {
    t.is_some_and(|t| {
        t.status.as_ref().is_some_and(|s| {
            s.is_ready_at(t.metadata.generation)
                && s.condition(CONDITION).is_some_and(|c| c.status == "True")
        })
    })
}

/// Waits until the ConfigMap of `name` holds `celsius`.
async fn wait_setpoint(cms: &Api<ConfigMap>, name: &str, celsius: f64) {
    let cm = format!("{name}-setpoint");
    wait_for(cms, &cm, move |cm: Option<&ConfigMap>| {
        setpoint(cm).is_some_and(|c| about(c, celsius))
    })
    .await;
}

/// The API error of `result`, which must have failed.
fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

const FAHRENHEIT_70: f64 = (70.0 - 32.0) * 5.0 / 9.0;

/// Reads, lists and patches through both versions (steps 2 and 3 of the brief).
async fn conversions(client: &Client, ns: &str) {
    let v1s: Api<v1::Thermostat> = Api::namespaced(client.clone(), ns);
    let v2s: Api<v2::Thermostat> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();

    // Created through v1, read through v2: converted by the webhook.
    v1s.create(&pp, &thermostat_v1("hall", "70F"))
        .await
        .unwrap();
    let hall = v2s.get("hall").await.expect("v1 object read through v2");
    assert!(about(hall.spec.target.celsius, FAHRENHEIT_70));
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::erase::<v2::Thermostat>(&()),
    );
    let raw_hall = raw.get("hall").await.unwrap();
    assert_eq!(raw_hall.types.unwrap().api_version, format!("{GROUP}/v2"));
    // Read back through v1. The server stored it as v2, so v1 shows the round trip.
    let hall_v1 = v1s.get("hall").await.unwrap().spec.target;
    assert_eq!(hall_v1, format_celsius(FAHRENHEIT_70));

    // Created through v2, read through v1.
    v2s.create(&pp, &thermostat_v2("attic", 19.5))
        .await
        .unwrap();
    assert_eq!(v1s.get("attic").await.unwrap().spec.target, "19.5C");
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::erase::<v1::Thermostat>(&()),
    );
    let raw_attic = raw.get("attic").await.unwrap();
    assert_eq!(raw_attic.types.unwrap().api_version, format!("{GROUP}/v1"));

    // Listed through both versions: every item converted.
    let mut v2_items: Vec<_> = v2s.list(&Default::default()).await.unwrap().items;
    v2_items.sort_by_key(|t| t.name_any());
    let v2_items: Vec<_> = v2_items
        .iter()
        .map(|t| (t.name_any(), t.spec.target.celsius))
        .collect();
    assert_eq!(v2_items.len(), 2);
    assert_eq!(v2_items[0], ("attic".to_string(), 19.5));
    assert_eq!(v2_items[1].0, "hall");
    assert!(about(v2_items[1].1, FAHRENHEIT_70));
    let mut v1_items: Vec<_> = v1s.list(&Default::default()).await.unwrap().items;
    v1_items.sort_by_key(|t| t.name_any());
    let v1_items: Vec<_> = v1_items
        .iter()
        .map(|t| (t.name_any(), parse_target(&t.spec.target).unwrap()))
        .collect();
    assert_eq!(v1_items[0], ("attic".to_string(), 19.5));
    assert_eq!(v1_items[1].0, "hall");
    assert!(about(v1_items[1].1, FAHRENHEIT_70));

    // A patch through v1 of the object created through v2; the v2 view follows.
    let merge = |v| Patch::Merge(serde_json::json!({"spec": {"target": v}}));
    let params = PatchParams::default();
    let patched = v1s
        .patch("attic", &params, &merge("68F".into()))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    // Stored as v2: the answer and later v1 reads show the round trip.
    let expected_v1 = "20C";
    assert_eq!(patched.spec.target, expected_v1);
    assert_eq!(v1s.get("attic").await.unwrap().spec.target, expected_v1);
    let attic = v2s.get("attic").await.unwrap();
    assert_eq!(attic.spec.target.celsius, 20.0);

    // A no-op patch through v1 (of what v1 shows) writes nothing, on an object written
    // through v1 and on one written through v2.
    let noop = v1s
        .patch("attic", &params, &merge(expected_v1.into()))
        .await
        .unwrap();
    assert_eq!(noop.resource_version(), attic.resource_version());
    v2s.create(&pp, &thermostat_v2("loft", 20.0)).await.unwrap();
    let loft = v2s.get("loft").await.unwrap();
    let noop = v1s
        .patch("loft", &params, &merge("20C".into()))
        .await
        .unwrap();
    assert_eq!(noop.resource_version(), loft.resource_version());
    assert_eq!(noop.metadata.generation, Some(1));

    // A no-op patch through v2 of the object last written through v1.
    let noop = v2s
        .patch(
            "attic",
            &params,
            &merge(serde_json::json!({"celsius": 20.0})),
        )
        .await
        .unwrap();
    assert_eq!(noop.spec.target.celsius, 20.0);
    // (kube-apiserver 1.37 itself writes here: a new generation and a second managedFields
    // entry, for a patch of the v2 view with the value it already has.)
    assert_eq!(v2s.get("attic").await.unwrap().spec.target.celsius, 20.0);
}

/// The operator on v2 keeps every Thermostat's ConfigMap, those written through v1 included
/// (step 4), after [`conversions`].
async fn operator_converges(client: &Client, ns: &str) {
    let v1s: Api<v1::Thermostat> = Api::namespaced(client.clone(), ns);
    let v2s: Api<v2::Thermostat> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let op = operator(client.clone()).with_config(OperatorConfig::default().with_namespace(ns));
    let running = Running::operator(op);

    wait_setpoint(&cms, "hall", FAHRENHEIT_70).await;
    wait_setpoint(&cms, "attic", 20.0).await;
    wait_setpoint(&cms, "loft", 20.0).await;
    wait_for(&v2s, "attic", applied).await;
    wait_for(&v2s, "loft", applied).await;
    wait_for(&v2s, "hall", applied).await;
    // The status written through v2 reads through v1 too (the conversion carries it).
    let status = v1s.get("hall").await.unwrap().status;
    assert!(
        status
            .as_ref()
            .and_then(|s| s.condition(CONDITION))
            .is_some_and(|c| c.status == "True"),
        "{status:?}"
    );

    // A new object and an edit, both through v1, while the operator runs.
    let pp = PostParams::default();
    v1s.create(&pp, &thermostat_v1("porch", "10C"))
        .await
        .unwrap();
    let patch = Patch::Merge(serde_json::json!({"spec": {"target": "22.5C"}}));
    v1s.patch("hall", &PatchParams::default(), &patch)
        .await
        .unwrap();
    wait_setpoint(&cms, "porch", 10.0).await;
    wait_setpoint(&cms, "hall", 22.5).await;
    wait_for(&v2s, "porch", applied).await;
    wait_for(&v2s, "hall", applied).await;

    let reports = running.stop().await;
    let failed: Vec<_> = reports
        .iter()
        .filter(|r| matches!(r.end, RunEnd::Failed { .. }))
        .collect();
    assert!(failed.is_empty(), "no run failed: {failed:#?}");
}

/// Conversions the webhook refuses (step 5): a v2 target below absolute zero has no v1 form,
/// and a v1 target of `"warm"` no v2 form.
async fn failed_conversions(client: &Client, ns: &str) {
    let v1s: Api<v1::Thermostat> = Api::namespaced(client.clone(), ns);
    let v2s: Api<v2::Thermostat> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();
    let op = operator(client.clone()).with_config(OperatorConfig::default().with_namespace(ns));
    let running = Running::operator(op);
    v2s.create(&pp, &thermostat_v2("kitchen", 21.0))
        .await
        .unwrap();
    wait_setpoint(&cms, "kitchen", 21.0).await;

    // Down: a read through v1 fails with 500 and the webhook's message, through v2 it works,
    // and the operator (on v2) keeps it like any other.
    v2s.create(&pp, &thermostat_v2("vault", -300.0))
        .await
        .unwrap();
    let status = api_error(v1s.get("vault").await);
    assert_eq!(status.code, 500);
    let message = "conversion webhook for climate.example.com/v2, Kind=Thermostat failed: \
                   converting to climate.example.com/v1: -300°C is below absolute zero";
    // kube-apiserver wraps it: "Internal error occurred: StorageError: corrupt object, Code:
    // 7, Key: /climate.example.com/thermostats/<ns>/vault, ResourceVersion: 0,
    // AdditionalErrorMsg: object not decodable revision=<n>: conversion webhook for ..."
    assert!(status.message.ends_with(message), "{status:?}");
    // One object that cannot convert fails the whole list.
    assert_eq!(api_error(v1s.list(&Default::default()).await).code, 500);
    assert_eq!(v2s.get("vault").await.unwrap().spec.target.celsius, -300.0);
    wait_setpoint(&cms, "vault", -300.0).await;
    wait_for(&v2s, "vault", applied).await;

    // Up: "warm" has no v2 form.
    let message = "conversion webhook for climate.example.com/v1, Kind=Thermostat failed: \
                   converting to climate.example.com/v2: target \"warm\" is not a temperature \
                   like \"21.5C\" or \"70F\"";
    // Every write is converted to the storage version: the create fails, nothing is stored.
    let status = api_error(v1s.create(&pp, &thermostat_v1("cellar", "warm")).await);
    assert_eq!((status.code, status.message.as_str()), (500, message));
    assert_eq!(api_error(v2s.get("cellar").await).code, 404);

    // The others still converge: a new object, an edit.
    v2s.create(&pp, &thermostat_v2("garage", 12.0))
        .await
        .unwrap();
    let patch = Patch::Merge(serde_json::json!({"spec": {"target": {"celsius": 23.0}}}));
    v2s.patch("kitchen", &PatchParams::default(), &patch)
        .await
        .unwrap();
    wait_setpoint(&cms, "garage", 12.0).await;
    wait_setpoint(&cms, "kitchen", 23.0).await;
    wait_for(&v2s, "garage", applied).await;
    wait_for(&v2s, "kitchen", applied).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thermostat_converts_and_converges_on_the_embedded_server() {
    let env = Env::start().await;
    let _serving = serve_conversion(&env.client).await;
    conversions(&env.client, "default").await;
    operator_converges(&env.client, "default").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thermostat_failed_conversions_on_the_embedded_server() {
    let env = Env::start().await;
    let _serving = serve_conversion(&env.client).await;
    failed_conversions(&env.client, "default").await;
}

/// The same checks on kube-apiserver v1.37.2 (skips without its binaries): one test, as the
/// CRD and its webhook are cluster-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thermostat_on_the_real_apiserver() {
    let Some(server) = shared_or_skip("thermostat_on_the_real_apiserver").await else {
        return;
    };
    let ns = server.namespace("thermostat").await.unwrap();
    let client = ns.client();
    let _serving = serve_conversion(&client).await;
    conversions(&client, ns.name()).await;
    operator_converges(&client, ns.name()).await;
    let ns = server.namespace("thermostat-fail").await.unwrap();
    failed_conversions(&ns.client(), ns.name()).await;
}

fn scenarios() -> Vec<Scenario<v2::Thermostat>> {
    vec![
        Scenario::new("create").create(thermostat_v2("a", 21.0)),
        Scenario::new("spec change")
            .create(thermostat_v2("a", 21.0))
            .then_edit("a", |t: &mut v2::Thermostat| t.spec.target.celsius = 18.5),
        // Written through v1: converted to the storage version, run like any other.
        Scenario::new("written through v1")
            .given(serde_json::to_value(thermostat_v1("b", "70F")).expect("a Thermostat is JSON")),
    ]
}

/// The operator under the explorer's variants, its CRD converted by the one webhook this test
/// serves (every case's fresh server trusts its CA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thermostat_explored() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}{CONVERT}", listener.local_addr().unwrap());
    let serving = webhooks().start(listener).await.expect("webhooks served");
    let crd = crd(&url, Some(serving.ca_bundle()));
    let mut explorer = Explorer::new(operator).crd(crd).seeds(20).loop_seeds(2);
    for s in scenarios() {
        explorer = explorer.scenario(s);
    }
    explorer
        .reproduce_with("cargo test -p staircase-tests --test integration")
        .phase_timeout(Duration::from_secs(60))
        .run()
        .await
        .assert_all_converged();
    drop(serving);
}
