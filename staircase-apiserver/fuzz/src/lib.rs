//! Shared harness of the request targets: one server per fuzzing process, requests answered
//! in-process (no socket) through the server's real routing and handlers, and every write
//! undone after each input so inputs do not depend on each other.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use staircase_apiserver::ApiServer;
use tokio::runtime::Runtime;

struct Harness {
    rt: Runtime,
    server: ApiServer,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // A small watch window: the event log is the only state that outlives an input.
        let server = rt
            .block_on(ApiServer::builder().watch_window(64).start())
            .expect("server");
        server.stats().set_log_enabled(false);
        let h = Harness { rt, server };
        let (code, body) = h.send(
            Method::POST,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            "application/json",
            CRD.as_bytes(),
        );
        assert_eq!(code, 201, "CRD: {body}");
        h
    })
}

impl Harness {
    fn send(&self, method: Method, uri: &str, content_type: &str, body: &[u8]) -> (u16, String) {
        self.send_accepting(method, uri, content_type, "application/json", body)
    }

    fn send_accepting(
        &self,
        method: Method,
        uri: &str,
        content_type: &str,
        accept: &str,
        body: &[u8],
    ) -> (u16, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .header("accept", accept)
            .header("user-agent", "fuzz/1")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        self.rt.block_on(async {
            let resp = self
                .server
                .handle_in_process(req)
                .await
                .expect("no faults are injected");
            let code = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .expect("infallible")
                .to_bytes();
            (code, String::from_utf8_lossy(&bytes).into_owned())
        })
    }
}

/// A CRD whose schema uses most of what validation, pruning, defaulting, CEL and server-side
/// apply know about, with `/status` and `/scale`.
const CRD: &str = r#"{
 "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
 "metadata": {"name": "widgets.fuzz.example.com"},
 "spec": {"group": "fuzz.example.com", "scope": "Namespaced",
  "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
  "versions": [{"name": "v1", "served": true, "storage": true,
   "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
     "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
   "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
     {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}],
   "selectableFields": [{"jsonPath": ".spec.color"}],
   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
    "spec": {"type": "object",
     "x-kubernetes-validations": [{"rule": "!has(self.maxReplicas) || self.replicas <= self.maxReplicas",
       "message": "replicas may not exceed maxReplicas"}],
     "properties": {
      "replicas": {"type": "integer", "format": "int32", "minimum": 0, "default": 1},
      "maxReplicas": {"type": "integer"},
      "color": {"type": "string", "enum": ["red", "green", "blue"]},
      "name": {"type": "string", "maxLength": 20, "pattern": "^[a-z]+$",
        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "name is immutable"}]},
      "ratio": {"type": "number", "format": "float", "maximum": 1, "exclusiveMaximum": true},
      "when": {"type": "string", "format": "date-time"},
      "port": {"x-kubernetes-int-or-string": true},
      "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set", "maxItems": 8},
      "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "protocol"],
        "items": {"type": "object", "required": ["name"], "properties": {
          "name": {"type": "string"}, "protocol": {"type": "string", "default": "TCP"}, "port": {"type": "integer"}}}},
      "labels": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 5},
      "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
      "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
      "atomic": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {"a": {"type": "string"}}},
      "choice": {"type": "object", "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}},
      "maybe": {"type": "string", "nullable": true}
     }},
    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"},
      "conditions": {"type": "array", "items": {"type": "object", "properties": {
        "type": {"type": "string"}, "status": {"type": "string"}}}}}}
   }}}}]}}"#;

/// The resources a request input can address: (collection path, seed object).
fn resources() -> [(&'static str, Value); 3] {
    [
        (
            "/api/v1/namespaces/default/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "fuzz", "labels": {"a": "b"}}, "data": {"k": "v"}}),
        ),
        (
            "/apis/apps/v1/namespaces/default/deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fuzz"},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "fuzz"}},
                            "template": {"metadata": {"labels": {"app": "fuzz"}},
                                         "spec": {"containers": [{"name": "c", "image": "i",
                                                   "ports": [{"containerPort": 80}]}]}}}}),
        ),
        (
            "/apis/fuzz.example.com/v1/namespaces/default/widgets",
            json!({"apiVersion": "fuzz.example.com/v1", "kind": "Widget", "metadata": {"name": "fuzz"},
                   "spec": {"replicas": 1, "maxReplicas": 3, "name": "abc", "tags": ["x"],
                            "ports": [{"name": "http", "port": 80}]},
                   "status": {"replicas": 1, "selector": "app=fuzz"}}),
        ),
    ]
}

/// How a request input's body is labelled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json` for create and update.
    Json,
    /// `application/yaml` for create and update.
    Yaml,
    /// `application/vnd.kubernetes.protobuf` for create and update, answers asked for in
    /// protobuf first (as kubectl asks).
    Protobuf,
}

/// Sends `data[2..]` as the body of a write picked by `data[0]` (resource, verb, patch type) and
/// `data[1]` (subresource, query) to a server holding one seed object of that resource, then
/// removes everything the request left behind. The server must answer, with any status but 5xx.
pub fn request(encoding: Encoding, data: &[u8]) {
    let [what, how, body @ ..] = data else {
        return;
    };
    let h = harness();
    let (collection, seed) = resources()[(what % 3) as usize].clone();
    let verb = (what / 3) % 7;
    let sub = match how % 4 {
        1 if collection.ends_with("widgets") => "/status",
        2 if !collection.ends_with("configmaps") => "/scale",
        _ => "",
    };
    let mut query = Vec::new();
    if how & 4 != 0 {
        query.push("fieldValidation=Strict");
    }
    if how & 8 != 0 {
        query.push("dryRun=All");
    }
    let write_ct = match encoding {
        Encoding::Json => "application/json",
        Encoding::Yaml => "application/yaml",
        Encoding::Protobuf => "application/vnd.kubernetes.protobuf",
    };
    let accept = match encoding {
        Encoding::Protobuf => "application/vnd.kubernetes.protobuf, application/json",
        _ => "application/json",
    };
    let (code, text) = h.send(
        Method::POST,
        collection,
        "application/json",
        seed.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "seed: {text}");
    let object = format!("{collection}/fuzz{sub}");
    let (method, uri, ct) = match verb {
        0 => (Method::POST, collection.to_string(), write_ct),
        1 => (Method::PUT, object, write_ct),
        2 => (Method::PATCH, object, "application/merge-patch+json"),
        3 => (Method::PATCH, object, "application/json-patch+json"),
        4 => (
            Method::PATCH,
            object,
            "application/strategic-merge-patch+json",
        ),
        5 => {
            query.push("fieldManager=fuzz");
            (Method::PATCH, object, "application/apply-patch+yaml")
        }
        _ => {
            query.push("fieldManager=fuzz&force=true");
            (Method::PATCH, object, "application/apply-patch+yaml")
        }
    };
    let uri = if query.is_empty() {
        uri
    } else {
        format!("{uri}?{}", query.join("&"))
    };
    let (code, text) = h.send_accepting(method, &uri, ct, accept, body);
    assert!(code < 500, "{uri} ({ct}) answered {code}: {text}");
    clean(h, collection);
}

/// Deletes every object of the collection, finalizers and all, and forgets the requests.
fn clean(h: &Harness, collection: &str) {
    h.server.stats().reset();
    let (code, text) = h.send(Method::DELETE, collection, "application/json", b"");
    assert_eq!(code, 200, "deletecollection: {text}");
    let (code, text) = h.send(Method::GET, collection, "application/json", b"");
    assert_eq!(code, 200, "list: {text}");
    let list: Value = serde_json::from_str(&text).expect("list is JSON");
    for item in list["items"].as_array().into_iter().flatten() {
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        let uri = format!("{collection}/{}", percent(name));
        let (code, text) = h.send(
            Method::PATCH,
            &uri,
            "application/merge-patch+json",
            br#"{"metadata":{"finalizers":null}}"#,
        );
        assert!(code == 200 || code == 404, "{uri}: {code} {text}");
        h.send(Method::DELETE, &uri, "application/json", b"");
    }
    let (_, text) = h.send(Method::GET, collection, "application/json", b"");
    let list: Value = serde_json::from_str(&text).expect("list is JSON");
    assert_eq!(list["items"], json!([]), "left behind in {collection}");
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The JSON values at the start of `bytes`, one after the other (whitespace between them), up to
/// `max`; stops at the first thing that is not JSON.
pub fn json_values(bytes: &[u8], max: usize) -> Vec<Value> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<Value>()
        .take(max)
        .map_while(Result::ok)
        .collect()
}

/// The `openAPIV3Schema` of the fuzzing CRD's Widget.
pub fn widget_schema() -> Value {
    let crd: Value = serde_json::from_str(CRD).expect("CRD is JSON");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}
