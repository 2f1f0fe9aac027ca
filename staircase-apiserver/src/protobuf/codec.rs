//! Kubernetes protobuf messages <-> the API's JSON, driven by the descriptors.
//!
//! Field names are the JSON names (exceptions in `json-fields.txt`). The types whose JSON is not
//! their message's fields are mapped here: `Time`/`MicroTime` (RFC 3339 strings), `Duration`
//! (Go duration strings), `Quantity` (a string), `IntOrString`, `RawExtension`/`FieldsV1`/the
//! CRD schema's `JSON` (raw JSON bytes), the CRD schema's `...Or...` unions; `bytes` are base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message as _;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage as _,
    Value as Pb,
};
use serde_json::{Map, Value};

use super::descriptors::{FieldInfo, JsonName, schema};

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.";
const APIEXT: &str = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.";

/// The JSON form of a message.
pub fn to_json(msg: &DynamicMessage) -> Result<Value, String> {
    let d = msg.descriptor();
    if let Some(v) = special_to_json(&d, msg)? {
        return Ok(v);
    }
    let mut out = Map::new();
    object_to_json(msg, &mut out)?;
    Ok(Value::Object(out))
}

fn object_to_json(msg: &DynamicMessage, out: &mut Map<String, Value>) -> Result<(), String> {
    let d = msg.descriptor();
    for f in &schema().info(&d).fields {
        if !msg.has_field(&f.field) {
            continue;
        }
        let value = msg.get_field(&f.field);
        match &f.json {
            JsonName::Inline => match value.as_message() {
                Some(sub) => object_to_json(sub, out)?,
                None => return Err(format!("inline field {} is not a message", f.field.name())),
            },
            JsonName::Key(key) => {
                if is_zero_scalar(f, &value) && !f.keep_zero {
                    continue;
                }
                out.insert(key.clone(), value_to_json(&value)?);
            }
        }
    }
    Ok(())
}

fn is_zero_scalar(f: &FieldInfo, v: &Pb) -> bool {
    if f.field.is_list() || f.field.is_map() {
        return false;
    }
    match v {
        Pb::Bool(b) => !b,
        Pb::I32(n) => *n == 0,
        Pb::I64(n) => *n == 0,
        Pb::U32(n) => *n == 0,
        Pb::U64(n) => *n == 0,
        Pb::F32(n) => *n == 0.0,
        Pb::F64(n) => *n == 0.0,
        Pb::String(s) => s.is_empty(),
        Pb::Bytes(b) => b.is_empty(),
        Pb::EnumNumber(n) => *n == 0,
        _ => false,
    }
}

fn value_to_json(v: &Pb) -> Result<Value, String> {
    match v {
        Pb::List(items) => items.iter().map(scalar_to_json).collect(),
        Pb::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                out.insert(key, scalar_to_json(v)?);
            }
            Ok(Value::Object(out))
        }
        other => scalar_to_json(other),
    }
}

fn scalar_to_json(v: &Pb) -> Result<Value, String> {
    Ok(match v {
        Pb::Bool(b) => Value::Bool(*b),
        Pb::I32(n) => Value::from(*n),
        Pb::I64(n) => Value::from(*n),
        Pb::U32(n) => Value::from(*n),
        Pb::U64(n) => Value::from(*n),
        Pb::F32(n) => float(f64::from(*n))?,
        Pb::F64(n) => float(*n)?,
        Pb::String(s) => Value::String(s.clone()),
        Pb::Bytes(b) => Value::String(BASE64.encode(b)),
        Pb::EnumNumber(n) => Value::from(*n),
        Pb::Message(m) => to_json(m)?,
        Pb::List(_) | Pb::Map(_) => return Err("nested list or map".into()),
    })
}

fn float(n: f64) -> Result<Value, String> {
    serde_json::Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| format!("{n} is not a JSON number"))
}

fn field<'a>(msg: &'a DynamicMessage, name: &str) -> Option<std::borrow::Cow<'a, Pb>> {
    msg.get_field_by_name(name)
        .filter(|_| msg.has_field_by_name(name))
}

fn raw_json(bytes: &[u8]) -> Result<Value, String> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    if bytes.starts_with(super::MAGIC) {
        return super::decode_object(bytes).map_err(|e| e.message);
    }
    serde_json::from_slice(bytes).map_err(|e| format!("embedded JSON: {e}"))
}

/// Types whose JSON is not an object of their fields.
fn special_to_json(d: &MessageDescriptor, msg: &DynamicMessage) -> Result<Option<Value>, String> {
    let name = d.full_name();
    let int = |f: &str| field(msg, f).and_then(|v| v.as_i64().or(v.as_i32().map(i64::from)));
    let string = |f: &str| field(msg, f).and_then(|v| v.as_str().map(String::from));
    let bytes = |f: &str| field(msg, f).and_then(|v| v.as_bytes().map(|b| b.to_vec()));
    Ok(Some(match name.strip_prefix(META).unwrap_or(name) {
        "Time" | "MicroTime" => {
            let (secs, nanos) = (int("seconds").unwrap_or(0), int("nanos").unwrap_or(0));
            if secs == 0 && nanos == 0 {
                // Go's zero time, which its JSON writes as null.
                return Ok(Some(Value::Null));
            }
            let ts = jiff::Timestamp::new(secs, 0).map_err(|e| e.to_string())?;
            let base = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
            if name.ends_with("MicroTime") {
                Value::String(format!("{base}.{:06}Z", nanos / 1000))
            } else {
                Value::String(format!("{base}Z"))
            }
        }
        "Duration" => Value::String(go_duration(int("duration").unwrap_or(0))),
        "FieldsV1" => raw_json(&bytes("Raw").unwrap_or_default())?,
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
            Value::String(string("string").unwrap_or_default())
        }
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => match int("type").unwrap_or(0) {
            1 => Value::String(string("strVal").unwrap_or_default()),
            _ => Value::from(int("intVal").unwrap_or(0)),
        },
        "k8s.io.apimachinery.pkg.runtime.RawExtension" => {
            raw_json(&bytes("raw").unwrap_or_default())?
        }
        _ => match name.strip_prefix(APIEXT).unwrap_or("") {
            "JSON" => raw_json(&bytes("raw").unwrap_or_default())?,
            "JSONSchemaPropsOrArray" => match field(msg, "schema") {
                Some(s) => scalar_to_json(&s)?,
                None => match field(msg, "jSONSchemas") {
                    Some(l) => scalar_list(&l)?,
                    None => Value::Array(vec![]),
                },
            },
            "JSONSchemaPropsOrBool" => match field(msg, "schema") {
                Some(s) => scalar_to_json(&s)?,
                None => Value::Bool(
                    field(msg, "allows")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false),
                ),
            },
            "JSONSchemaPropsOrStringArray" => match field(msg, "schema") {
                Some(s) => scalar_to_json(&s)?,
                None => match field(msg, "property") {
                    Some(l) => scalar_list(&l)?,
                    None => Value::Array(vec![]),
                },
            },
            _ => return Ok(None),
        },
    }))
}

fn scalar_list(v: &Pb) -> Result<Value, String> {
    match v {
        Pb::List(items) => items.iter().map(scalar_to_json).collect(),
        _ => Err("expected a list".into()),
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `150ms`, `0s`.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    if u < 1_000_000_000 {
        let (unit, div) = match u {
            0..1_000 => ("ns", 1),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{sign}{}{unit}", frac(u, div));
    }
    let (h, rem) = (u / 3_600_000_000_000, u % 3_600_000_000_000);
    let (m, s) = (rem / 60_000_000_000, rem % 60_000_000_000);
    let mut out = sign.to_string();
    if h > 0 {
        out += &format!("{h}h");
    }
    if h > 0 || m > 0 {
        out += &format!("{m}m");
    }
    out + &format!("{}s", frac(s, 1_000_000_000))
}

fn frac(n: u64, div: u64) -> String {
    let (whole, rest) = (n / div, n % div);
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Parses a Go duration string (`1h30m`, `1.5s`, `-2ms`) into nanoseconds.
fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|n| *n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * scale;
    }
    let total = if neg { -total } else { total };
    (total.abs() < 9.2e18).then_some(total.round() as i64)
}

/// The message `d` holding the JSON value `v` (fields it does not know are dropped, as the real
/// server drops them).
pub fn from_json(d: &MessageDescriptor, v: &Value) -> Result<DynamicMessage, String> {
    let mut msg = DynamicMessage::new(d.clone());
    if let Some(()) = special_from_json(d, v, &mut msg)? {
        return Ok(msg);
    }
    let Value::Object(obj) = v else {
        return Err(format!(
            "expected an object for {}, got {}",
            d.name(),
            kind_of(v)
        ));
    };
    let info = schema().info(d);
    // Keys of inlined submessages are gathered first, then converted as one object.
    let mut inlined: std::collections::BTreeMap<usize, Map<String, Value>> = Default::default();
    for (key, value) in obj {
        let Some(&i) = info.by_key.get(key) else {
            continue;
        };
        let f = &info.fields[i];
        if let JsonName::Inline = f.json {
            inlined
                .entry(i)
                .or_default()
                .insert(key.clone(), value.clone());
            continue;
        }
        if value.is_null() {
            // A null time is Go's zero time: written as an empty message (which reads back as
            // null), so `creationTimestamp: null` survives as it does in kube-apiserver.
            if let Kind::Message(sd) = f.field.kind()
                && !f.field.is_list()
                && matches!(
                    sd.full_name().strip_prefix(META),
                    Some("Time" | "MicroTime")
                )
            {
                msg.set_field(&f.field, Pb::Message(DynamicMessage::new(sd)));
            }
            continue;
        }
        let pb = field_from_json(&f.field, value).map_err(|e| format!("{key}: {e}"))?;
        msg.set_field(&f.field, pb);
    }
    for (i, sub) in inlined {
        let f = &info.fields[i];
        let Kind::Message(sd) = f.field.kind() else {
            return Err(format!("inline field {} is not a message", f.field.name()));
        };
        msg.set_field(&f.field, Pb::Message(from_json(&sd, &Value::Object(sub))?));
    }
    Ok(msg)
}

fn field_from_json(fd: &FieldDescriptor, v: &Value) -> Result<Pb, String> {
    if fd.is_map() {
        let Value::Object(obj) = v else {
            return Err(format!("expected an object, got {}", kind_of(v)));
        };
        let Kind::Message(entry) = fd.kind() else {
            return Err("map without an entry message".into());
        };
        let (kf, vf) = (entry.map_entry_key_field(), entry.map_entry_value_field());
        let mut out = std::collections::HashMap::new();
        for (k, val) in obj {
            // Every map of the Kubernetes API is keyed by strings.
            if !matches!(kf.kind(), Kind::String) {
                return Err("a map not keyed by strings".into());
            }
            let key = MapKey::String(k.clone());
            let value = if val.is_null() {
                Pb::default_value(&vf.kind())
            } else {
                scalar_from_json(&vf.kind(), val).map_err(|e| format!("{k}: {e}"))?
            };
            out.insert(key, value);
        }
        return Ok(Pb::Map(out));
    }
    if fd.is_list() {
        let Value::Array(items) = v else {
            return Err(format!("expected an array, got {}", kind_of(v)));
        };
        return items
            .iter()
            .map(|i| scalar_from_json(&fd.kind(), i))
            .collect::<Result<Vec<_>, _>>()
            .map(Pb::List);
    }
    scalar_from_json(&fd.kind(), v)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn scalar_from_json(kind: &Kind, v: &Value) -> Result<Pb, String> {
    let int = || -> Result<i64, String> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                        .map(|f| f as i64)
                })
                .ok_or_else(|| format!("{n} is not an integer")),
            _ => Err(format!("expected a number, got {}", kind_of(v))),
        }
    };
    let ranged = |lo: i64, hi: i64| -> Result<i64, String> {
        let n = int()?;
        if n < lo || n > hi {
            return Err(format!("{n} is out of range"));
        }
        Ok(n)
    };
    Ok(match kind {
        Kind::Bool => Pb::Bool(
            v.as_bool()
                .ok_or_else(|| format!("expected a boolean, got {}", kind_of(v)))?,
        ),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Pb::I32(ranged(i32::MIN.into(), i32::MAX.into())? as i32)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Pb::I64(int()?),
        Kind::Uint32 | Kind::Fixed32 => Pb::U32(ranged(0, u32::MAX.into())? as u32),
        Kind::Uint64 | Kind::Fixed64 => Pb::U64(ranged(0, i64::MAX)? as u64),
        Kind::Double => Pb::F64(
            v.as_f64()
                .ok_or_else(|| format!("expected a number, got {}", kind_of(v)))?,
        ),
        Kind::Float => Pb::F32(
            v.as_f64()
                .ok_or_else(|| format!("expected a number, got {}", kind_of(v)))?
                as f32,
        ),
        Kind::String => Pb::String(
            v.as_str()
                .ok_or_else(|| format!("expected a string, got {}", kind_of(v)))?
                .to_string(),
        ),
        Kind::Bytes => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("expected a base64 string, got {}", kind_of(v)))?;
            Pb::Bytes(
                BASE64
                    .decode(s)
                    .map_err(|e| format!("illegal base64 data: {e}"))?
                    .into(),
            )
        }
        Kind::Enum(_) => Pb::EnumNumber(ranged(i32::MIN.into(), i32::MAX.into())? as i32),
        Kind::Message(d) => Pb::Message(from_json(d, v)?),
    })
}

/// Fills `msg` for the types whose JSON is not an object of their fields; `None` for the others.
fn special_from_json(
    d: &MessageDescriptor,
    v: &Value,
    msg: &mut DynamicMessage,
) -> Result<Option<()>, String> {
    let name = d.full_name();
    let mut set = |f: &str, value: Pb| -> Result<(), String> {
        let fd = d
            .get_field_by_name(f)
            .ok_or_else(|| format!("{name} has no field {f}"))?;
        msg.set_field(&fd, value);
        Ok(())
    };
    let raw = |v: &Value| Pb::Bytes(serde_json::to_vec(v).unwrap_or_default().into());
    match name.strip_prefix(META).unwrap_or(name) {
        "Time" | "MicroTime" => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("expected a time string, got {}", kind_of(v)))?;
            let ts: jiff::Timestamp = s.parse().map_err(|e| format!("bad time {s:?}: {e}"))?;
            set("seconds", Pb::I64(ts.as_second()))?;
            // Time keeps whole seconds, as the real server's Time does.
            if name.ends_with("MicroTime") {
                set("nanos", Pb::I32(ts.subsec_nanosecond() / 1000 * 1000))?;
            }
        }
        "Duration" => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("expected a duration string, got {}", kind_of(v)))?;
            let ns = parse_go_duration(s).ok_or_else(|| format!("time: invalid duration {s:?}"))?;
            set("duration", Pb::I64(ns))?;
        }
        "FieldsV1" => set("Raw", raw(v))?,
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(format!("expected a quantity, got {}", kind_of(v))),
            };
            set("string", Pb::String(s))?;
        }
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => match v {
            Value::String(s) => {
                set("type", Pb::I64(1))?;
                set("strVal", Pb::String(s.clone()))?;
            }
            Value::Number(_) => {
                set("type", Pb::I64(0))?;
                set("intVal", scalar_from_json(&Kind::Int32, v)?)?;
            }
            _ => return Err(format!("expected an int or a string, got {}", kind_of(v))),
        },
        "k8s.io.apimachinery.pkg.runtime.RawExtension" => set("raw", raw(v))?,
        _ => match (name.strip_prefix(APIEXT).unwrap_or(""), v) {
            ("JSON", _) => set("raw", raw(v))?,
            ("JSONSchemaPropsOrArray", Value::Array(items)) => {
                let Some(Kind::Message(sd)) = d.get_field_by_name("jSONSchemas").map(|f| f.kind())
                else {
                    return Err("no jSONSchemas".into());
                };
                let list = items.iter().map(|i| from_json(&sd, i).map(Pb::Message));
                set("jSONSchemas", Pb::List(list.collect::<Result<_, _>>()?))?;
            }
            ("JSONSchemaPropsOrBool", Value::Bool(b)) => set("allows", Pb::Bool(*b))?,
            ("JSONSchemaPropsOrStringArray", Value::Array(items)) => {
                let list = items.iter().map(|i| scalar_from_json(&Kind::String, i));
                set("property", Pb::List(list.collect::<Result<_, _>>()?))?;
            }
            ("JSONSchemaPropsOrArray" | "JSONSchemaPropsOrStringArray", _) => {
                set("schema", schema_props(d, v)?)?
            }
            ("JSONSchemaPropsOrBool", _) => {
                set("allows", Pb::Bool(true))?;
                set("schema", schema_props(d, v)?)?;
            }
            _ => return Ok(None),
        },
    }
    Ok(Some(()))
}

fn schema_props(d: &MessageDescriptor, v: &Value) -> Result<Pb, String> {
    let Some(Kind::Message(sd)) = d.get_field_by_name("schema").map(|f| f.kind()) else {
        return Err("no schema field".into());
    };
    Ok(Pb::Message(from_json(&sd, v)?))
}

/// Encodes the JSON value `v` as the protobuf of message `d`.
pub fn encode(d: &MessageDescriptor, v: &Value) -> Result<Vec<u8>, String> {
    Ok(from_json(d, v)?.encode_to_vec())
}

/// Decodes the protobuf bytes of message `d` into JSON.
pub fn decode(d: &MessageDescriptor, bytes: &[u8]) -> Result<Value, String> {
    let msg = DynamicMessage::decode(d.clone(), bytes).map_err(|e| e.to_string())?;
    to_json(&msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(api_version: &str, kind: &str, v: Value) -> Value {
        let d = schema().kind(api_version, kind).unwrap();
        let bytes = encode(&d, &v).unwrap();
        decode(&d, &bytes).unwrap()
    }

    #[test]
    fn configmap_round_trips() {
        let cm = json!({
            "metadata": {"name": "x", "namespace": "default", "labels": {"a": "b"},
                         "creationTimestamp": "2026-01-02T03:04:05Z", "resourceVersion": "7",
                         "managedFields": [{"manager": "kubectl", "operation": "Update",
                                            "apiVersion": "v1", "time": "2026-01-02T03:04:05Z",
                                            "fieldsType": "FieldsV1",
                                            "fieldsV1": {"f:data": {"f:a": {}}}}]},
            "data": {"a": "b", "empty": ""},
            "immutable": false,
        });
        assert_eq!(round_trip("v1", "ConfigMap", cm.clone()), cm);
    }

    #[test]
    fn secret_bytes_are_base64() {
        let secret = json!({
            "metadata": {"name": "s", "creationTimestamp": null},
            "data": {"password": "aHVudGVyMg==", "binary": "AP8="},
            "type": "Opaque",
        });
        assert_eq!(round_trip("v1", "Secret", secret.clone()), secret);
        let d = schema().kind("v1", "Secret").unwrap();
        let bytes = encode(&d, &secret).unwrap();
        // The raw value, not its base64 text, is on the wire.
        assert!(bytes.windows(7).any(|w| w == b"hunter2"));
        let bad = json!({"data": {"p": "not base64!"}});
        assert!(encode(&d, &bad).unwrap_err().contains("base64"));
    }

    #[test]
    fn deployment_with_quantities_int_or_string_and_inlined_fields_round_trips() {
        let deploy = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-05-06T07:08:09Z",
                         "deletionTimestamp": "2026-05-06T07:09:09Z"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx", "image": "nginx",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                               "periodSeconds": 5},
                            "env": [{"name": "K", "valueFrom": {"configMapKeyRef":
                                     {"name": "cm", "key": "k"}}}],
                        }],
                        "volumes": [{"name": "v", "configMap": {"name": "cm"}}],
                    }
                }
            },
            "status": {"conditions": [{"type": "Available", "status": "True",
                                       "lastUpdateTime": "2026-05-06T07:08:10Z"}]},
        });
        assert_eq!(round_trip("apps/v1", "Deployment", deploy.clone()), deploy);
    }

    #[test]
    fn zero_scalars_follow_go_omitempty() {
        // `replicas` is a pointer in Go (0 is written); a ServicePort's `port` has no omitempty;
        // ObjectMeta's `generateName` has omitempty and is left out when empty.
        let d = schema().kind("apps/v1", "Deployment").unwrap();
        let msg = from_json(&d, &json!({"metadata": {"generateName": ""}, "spec": {"replicas": 0, "minReadySeconds": 0}})).unwrap();
        assert_eq!(
            to_json(&msg).unwrap(),
            json!({"metadata": {}, "spec": {"replicas": 0}})
        );
    }

    #[test]
    fn times_durations_and_raw_json() {
        let d = schema().kind("v1", "Event").unwrap();
        let ev = json!({"metadata": {"name": "e"}, "eventTime": "2026-01-02T03:04:05.123456Z",
                        "related": {"kind": "Pod", "name": "p"}, "count": 3});
        assert_eq!(decode(&d, &encode(&d, &ev).unwrap()).unwrap(), ev);
        for (ns, s) in [
            (0, "0s"),
            (1_500_000_000, "1.5s"),
            (3_723_000_000_000, "1h2m3s"),
            (150_000_000, "150ms"),
        ] {
            assert_eq!(go_duration(ns), s);
            assert_eq!(parse_go_duration(s), Some(ns));
        }
        assert_eq!(parse_go_duration("5x"), None);
    }

    #[test]
    fn crd_schemas_keep_their_json_shape() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object",
                            "x-kubernetes-preserve-unknown-fields": true,
                            "properties": {"spec": {"type": "object",
                                "additionalProperties": {"type": "string"},
                                "default": {"a": 1}}},
                            "items": [{"type": "string"}]}}}]},
        });
        assert_eq!(
            round_trip(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                crd.clone()
            ),
            crd
        );
    }

    #[test]
    fn mistyped_values_are_errors_not_panics() {
        let d = schema().kind("apps/v1", "Deployment").unwrap();
        for bad in [
            json!([]),
            json!({"spec": {"replicas": "3"}}),
            json!({"spec": {"replicas": 1e20}}),
            json!({"metadata": {"labels": []}}),
            json!({"metadata": {"creationTimestamp": "yesterday"}}),
        ] {
            assert!(encode(&d, &bad).is_err(), "{bad}");
        }
        assert!(decode(&d, b"\xff\xff\xff").is_err());
    }
}
