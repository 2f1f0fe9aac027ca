//! `application/vnd.kubernetes.protobuf` bodies of built-in kinds: request bodies decoded into
//! the JSON the handlers work on, answers encoded from it when the client asks for protobuf.
//!
//! On the wire an object is the 4 bytes `k8s\0`, then a `runtime.Unknown` message: its
//! `typeMeta` (apiVersion, kind) and `raw`, the object's own message. Watch events are
//! length-prefixed `WatchEvent` messages (see `watch`).

mod codec;
mod descriptors;
mod watch;

use prost::Message as _;
use prost_reflect::{DynamicMessage, Value as Pb};
use serde_json::Value;

use crate::status::{ApiError, ApiResult};

pub use descriptors::schema;
pub use watch::{WATCH_MEDIA_TYPE, frames as watch_frames};

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// What every protobuf object starts with.
pub const MAGIC: &[u8] = b"k8s\0";
const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";

fn bad(detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("error decoding protobuf body: {detail}"))
}

/// Decodes a protobuf object (`k8s\0` + `Unknown`) into its JSON form, `apiVersion` and `kind`
/// included.
pub fn decode_object(body: &[u8]) -> ApiResult<Value> {
    let Some(envelope) = body.strip_prefix(MAGIC) else {
        return Err(bad(
            "the body does not start with the protobuf prefix \"k8s\\x00\"",
        ));
    };
    let schema = schema();
    let unknown = schema
        .message(UNKNOWN)
        .expect("runtime.Unknown is in the descriptors");
    let msg = DynamicMessage::decode(unknown, envelope).map_err(bad)?;
    let text = |m: &DynamicMessage, f: &str| {
        m.get_field_by_name(f)
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    };
    let type_meta = msg.get_field_by_name("typeMeta");
    let (api_version, kind) = match type_meta.as_deref().and_then(Pb::as_message) {
        Some(tm) => (text(tm, "apiVersion"), text(tm, "kind")),
        None => Default::default(),
    };
    if kind.is_empty() {
        return Err(bad("Object 'Kind' is missing"));
    }
    let Some(d) = schema.kind(&api_version, &kind) else {
        return Err(bad(format!(
            "no kind \"{kind}\" is registered for version \"{api_version}\""
        )));
    };
    let raw = msg
        .get_field_by_name("raw")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let mut obj = codec::decode(&d, &raw).map_err(bad)?;
    let Value::Object(map) = &mut obj else {
        return Err(bad(format!("{kind} is not an object")));
    };
    map.insert("apiVersion".into(), Value::String(api_version));
    map.insert("kind".into(), Value::String(kind));
    Ok(obj)
}

/// Encodes an object as protobuf by its `apiVersion` and `kind`: `Ok(None)` when it has no
/// protobuf form (a custom resource, a `Table`), `Err` when its JSON does not fit its message.
pub fn encode_object(v: &Value) -> Result<Option<Vec<u8>>, String> {
    let field = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let schema = schema();
    let Some(d) = schema.kind(api_version, kind) else {
        return Ok(None);
    };
    let raw = codec::encode(&d, v)?;
    let unknown = schema
        .message(UNKNOWN)
        .expect("runtime.Unknown is in the descriptors");
    let type_meta = unknown
        .get_field_by_name("typeMeta")
        .and_then(|f| match f.kind() {
            prost_reflect::Kind::Message(m) => Some(m),
            _ => None,
        })
        .expect("Unknown.typeMeta is a message");
    let mut tm = DynamicMessage::new(type_meta);
    tm.set_field_by_name("apiVersion", Pb::String(api_version.into()));
    tm.set_field_by_name("kind", Pb::String(kind.into()));
    let mut msg = DynamicMessage::new(unknown);
    msg.set_field_by_name("typeMeta", Pb::Message(tm));
    msg.set_field_by_name("raw", Pb::Bytes(raw.into()));
    // Go writes its empty strings too; clients ignore them.
    msg.set_field_by_name("contentEncoding", Pb::String(String::new()));
    msg.set_field_by_name("contentType", Pb::String(String::new()));
    let mut out = MAGIC.to_vec();
    msg.encode(&mut out).map_err(|e| e.to_string())?;
    Ok(Some(out))
}

/// What a request's `Accept` header allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accept {
    /// Protobuf comes before JSON in the client's order.
    pub protobuf_first: bool,
    /// JSON is acceptable (also when the header is missing or says `*/*`).
    pub json: bool,
}

impl Accept {
    /// Protobuf is asked for and JSON is not acceptable.
    pub fn protobuf_only(self) -> bool {
        self.protobuf_first && !self.json
    }
}

/// Reads an `Accept` header. Clauses count in the client's order (client-go lists its
/// preferred type first); `q=0` excludes one; protobuf asked `as=Table` is not protobuf of the
/// object, so it does not count.
pub fn accept(header: &str) -> Accept {
    let mut out = Accept {
        protobuf_first: false,
        json: header.trim().is_empty(),
    };
    let mut first = None;
    for clause in header.split(',') {
        let mut parts = clause.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<&str> = parts.collect();
        if params.iter().any(|p| p.replace(' ', "") == "q=0") {
            continue;
        }
        let is_json = matches!(
            media.as_str(),
            "application/json" | "application/*" | "*/*" | "application/yaml"
        );
        let is_pb = media == MEDIA_TYPE && !params.iter().any(|p| p.starts_with("as="));
        out.json |= is_json;
        if first.is_none() && (is_json || is_pb) {
            first = Some(is_pb);
        }
    }
    out.protobuf_first = first == Some(true);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accept_headers() {
        let a = accept("application/vnd.kubernetes.protobuf, application/json");
        assert_eq!((a.protobuf_first, a.json), (true, true));
        let a = accept("application/vnd.kubernetes.protobuf");
        assert_eq!((a.protobuf_first, a.json), (true, false));
        let a = accept("application/json, application/vnd.kubernetes.protobuf");
        assert_eq!((a.protobuf_first, a.json), (false, true));
        let a = accept("");
        assert_eq!((a.protobuf_first, a.json), (false, true));
        let a = accept(
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json",
        );
        assert_eq!((a.protobuf_first, a.json), (false, true));
        let a = accept("application/json;q=0, application/vnd.kubernetes.protobuf");
        assert_eq!((a.protobuf_first, a.json), (true, false));
    }

    #[test]
    fn objects_round_trip_through_the_envelope() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "x", "creationTimestamp": null}, "data": {"a": "b"}});
        let bytes = encode_object(&cm).unwrap().unwrap();
        assert!(bytes.starts_with(MAGIC));
        assert_eq!(decode_object(&bytes).unwrap(), cm);
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget"});
        assert_eq!(encode_object(&widget).unwrap(), None);
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        for body in [
            &b""[..],
            b"{}",
            b"k8s\0\xff\xff",
            b"k8s\0",
            b"k8s\0\x0a\x02\x12\x00",
        ] {
            let e = decode_object(body).unwrap_err();
            assert_eq!(e.code, 400, "{body:?}: {}", e.message);
        }
        // A kind this server has no message for.
        let mut unknown = DynamicMessage::new(schema().message(UNKNOWN).unwrap());
        let tm = schema()
            .message("k8s.io.apimachinery.pkg.runtime.TypeMeta")
            .unwrap();
        let mut t = DynamicMessage::new(tm);
        t.set_field_by_name("apiVersion", Pb::String("example.com/v1".into()));
        t.set_field_by_name("kind", Pb::String("Widget".into()));
        unknown.set_field_by_name("typeMeta", Pb::Message(t));
        let mut body = MAGIC.to_vec();
        unknown.encode(&mut body).unwrap();
        assert!(decode_object(&body).unwrap_err().message.contains("Widget"));
    }
}
