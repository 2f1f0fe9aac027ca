//! Watch events as protobuf, as kube-apiserver streams them to a client that asks for protobuf
//! first: each event a frame of a 4-byte big-endian length and a `meta.v1.WatchEvent` {type,
//! object: RawExtension holding the protobuf object}.

use bytes::Bytes;
use prost::Message as _;
use prost_reflect::{DynamicMessage, Value as Pb};
use serde_json::Value;

use super::{encode_object, schema};
use crate::status::ApiError;

/// The `Content-Type` of a protobuf watch.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// The frames of the JSON watch lines in `chunk` (one event a line).
pub fn frames(chunk: &[u8]) -> Bytes {
    let mut out = Vec::new();
    for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let event = event(line).unwrap_or_else(|e| {
            // What kube-apiserver sends when it cannot go on: an ERROR event with a Status.
            let status = ApiError::new(500, "InternalError", e).to_status();
            event_of("ERROR", &status).unwrap_or_default()
        });
        out.extend_from_slice(&(event.len() as u32).to_be_bytes());
        out.extend_from_slice(&event);
    }
    Bytes::from(out)
}

fn event(line: &[u8]) -> Result<Vec<u8>, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let etype = v["type"].as_str().unwrap_or_default();
    event_of(etype, &v["object"])
}

fn event_of(etype: &str, object: &Value) -> Result<Vec<u8>, String> {
    let raw = encode_object(object)?.ok_or("the object has no protobuf form")?;
    let s = schema();
    let desc = s
        .message("k8s.io.apimachinery.pkg.apis.meta.v1.WatchEvent")
        .expect("WatchEvent is in the descriptors");
    let ext = s
        .message("k8s.io.apimachinery.pkg.runtime.RawExtension")
        .expect("RawExtension is in the descriptors");
    let mut object = DynamicMessage::new(ext);
    object.set_field_by_name("raw", Pb::Bytes(raw.into()));
    let mut msg = DynamicMessage::new(desc);
    msg.set_field_by_name("type", Pb::String(etype.to_string()));
    msg.set_field_by_name("object", Pb::Message(object));
    Ok(msg.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protobuf::decode_object;

    /// The events in `frames`: (type, object).
    pub fn read(mut frames: &[u8]) -> Vec<(String, Value)> {
        let s = schema();
        let desc = s
            .message("k8s.io.apimachinery.pkg.apis.meta.v1.WatchEvent")
            .unwrap();
        let mut out = vec![];
        while !frames.is_empty() {
            let len = u32::from_be_bytes(frames[..4].try_into().unwrap()) as usize;
            let msg = DynamicMessage::decode(desc.clone(), &frames[4..4 + len]).unwrap();
            frames = &frames[4 + len..];
            let etype = msg
                .get_field_by_name("type")
                .unwrap()
                .as_str()
                .unwrap()
                .to_string();
            let object = msg.get_field_by_name("object").unwrap();
            let raw = object
                .as_message()
                .unwrap()
                .get_field_by_name("raw")
                .unwrap();
            out.push((etype, decode_object(raw.as_bytes().unwrap()).unwrap()));
        }
        out
    }

    #[test]
    fn json_lines_become_frames() {
        let lines = concat!(
            r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"3"}}}"#,
            "\n",
            r#"{"type":"BOOKMARK","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"resourceVersion":"4"}}}"#,
            "\n",
            r#"{"type":"ADDED","object":{"apiVersion":"example.com/v1","kind":"Widget"}}"#,
            "\n",
        );
        let events = read(&frames(lines.as_bytes()));
        assert_eq!(events[0].0, "ADDED");
        assert_eq!(events[0].1["metadata"]["name"], "a");
        assert_eq!(events[1].0, "BOOKMARK");
        assert_eq!(events[1].1["metadata"]["resourceVersion"], "4");
        // What cannot be encoded ends up as an ERROR event, not a broken stream.
        assert_eq!(events[2].0, "ERROR");
        assert_eq!(events[2].1["kind"], "Status");
        assert_eq!(events.len(), 3);
    }
}
