//! Label and field selectors as kube-apiserver parses them from `?labelSelector=` and
//! `?fieldSelector=`.

use serde_json::Value;

use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<LabelReq>);

/// Splits on commas that are not inside `( )`.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, vec![]);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let bad =
            |msg: String| ApiError::bad_request(format!("unable to parse requirement: {msg}"));
        let mut reqs = vec![];
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                return Err(bad("found '', expected: identifier".into()));
            }
            let req = if let Some(k) = p.strip_prefix('!') {
                LabelReq::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = p.split_once("!=") {
                LabelReq::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once("==") {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once('=') {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some(idx) = p.find(" notin ") {
                let set =
                    parse_set(&p[idx + 7..]).ok_or_else(|| bad(format!("invalid set in {p:?}")))?;
                LabelReq::NotIn(p[..idx].trim().into(), set)
            } else if let Some(idx) = p.find(" in ") {
                let set =
                    parse_set(&p[idx + 4..]).ok_or_else(|| bad(format!("invalid set in {p:?}")))?;
                LabelReq::In(p[..idx].trim().into(), set)
            } else if p.contains(['(', ')', ' ', '<', '>']) {
                return Err(bad(format!("invalid requirement {p:?}")));
            } else {
                LabelReq::Exists(p.to_string())
            };
            let key = match &req {
                LabelReq::Eq(k, _)
                | LabelReq::NotEq(k, _)
                | LabelReq::In(k, _)
                | LabelReq::NotIn(k, _)
                | LabelReq::Exists(k)
                | LabelReq::NotExists(k) => k,
            };
            if key.is_empty() || crate::meta::validate_label_key(key).is_some() {
                return Err(bad(format!("invalid label key {key:?}")));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether this selector selects nothing-in-particular (matches everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Evaluates the selector against an object's `metadata.labels`.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector: conjunction of `path=value` / `path!=value`, and the request's
/// shard selector, which filters the same way wherever a field selector does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>, Option<ShardSelector>);

/// `?shardSelector=` (KEP-5866, alpha in kube-apiserver behind `ShardedListAndWatch`):
/// `shardRange(object.metadata.uid, '0xSTART', '0xEND')` terms joined by `||`. An object
/// matches when the 64-bit FNV-1a hash of the field falls in `[START, END)` of a term.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSelector {
    /// As given, echoed in a list's `metadata.shardInfo.selector`.
    pub text: String,
    terms: Vec<(ShardField, u128, u128)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ShardField {
    Uid,
    Namespace,
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl ShardSelector {
    /// Parses a shard selector. An invalid one is a `500` saying what is wrong, as
    /// kube-apiserver 1.37 answers it.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let bad = |why: String| ApiError::internal(format!("invalid shard selector: {why}"));
        let mut terms = Vec::new();
        for term in s.split("||").map(str::trim) {
            let args = term
                .strip_prefix("shardRange(")
                .and_then(|t| t.strip_suffix(')'))
                .ok_or_else(|| {
                    bad(format!(
                        "{term:?} is not shardRange(field, 'hexStart', 'hexEnd')"
                    ))
                })?;
            let parts: Vec<&str> = args.split(',').map(str::trim).collect();
            let [field, start, end] = parts[..] else {
                return Err(bad("shardRange takes three arguments".into()));
            };
            let field = match field {
                "object.metadata.uid" => ShardField::Uid,
                "object.metadata.namespace" => ShardField::Namespace,
                _ => {
                    return Err(bad(format!(
                        "unsupported field path {field:?}; supported: object.metadata.uid, object.metadata.namespace"
                    )));
                }
            };
            // 16 hex digits, or 2^64 as the exclusive end of the last range.
            let hex = |which: &str, v: &str| {
                let digits = v
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .and_then(|v| v.strip_prefix("0x"))
                    .filter(|d| d.len() == 16 || (which == "hexEnd" && *d == "10000000000000000"));
                digits
                    .and_then(|d| u128::from_str_radix(d, 16).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "{which} must be a 0x-prefixed 16-digit hex value, got {v:?}"
                        ))
                    })
            };
            let (start, end) = (hex("hexStart", start)?, hex("hexEnd", end)?);
            if start >= end {
                return Err(bad(format!(
                    "hexStart {start:#x} is not below hexEnd {end:#x}"
                )));
            }
            terms.push((field, start, end));
        }
        Ok(ShardSelector {
            text: s.to_string(),
            terms,
        })
    }

    /// Whether `obj` falls in one of the ranges.
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().any(|(field, start, end)| {
            let key = match field {
                ShardField::Uid => "uid",
                ShardField::Namespace => "namespace",
            };
            let v = obj["metadata"][key].as_str().unwrap_or_default();
            let h = u128::from(fnv1a(v));
            *start <= h && h < *end
        })
    }
}

/// Fields kube-apiserver supports per resource besides `metadata.name` and `metadata.namespace`.
fn extra_fields(group: &str, plural: &str) -> &'static [&'static str] {
    match (group, plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "events") => &[
            "regarding.kind",
            "regarding.name",
            "regarding.namespace",
            "reason",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("batch", "jobs") => &["status.successful"],
        ("apps", "replicasets") => &["status.replicas"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses `metadata.name=x,metadata.namespace!=y`, rejecting fields the real server rejects;
    /// `selectable` are a custom resource's declared `selectableFields`.
    pub fn parse(
        s: &str,
        group: &str,
        plural: &str,
        selectable: &[String],
    ) -> Result<Self, ApiError> {
        let mut out = vec![];
        if s.trim().is_empty() {
            return Ok(FieldSelector(out, None));
        }
        for part in s.split(',') {
            let (k, neg, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, false, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let k = k.trim();
            if k != "metadata.name"
                && k != "metadata.namespace"
                && !extra_fields(group, plural).contains(&k)
                && !selectable.iter().any(|f| f == k)
            {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {k}"
                )));
            }
            // Both Event APIs share the core form in the store (see `events`).
            let k = match k.strip_prefix("regarding.") {
                Some(rest) if group == "events.k8s.io" => format!("involvedObject.{rest}"),
                _ => k.to_string(),
            };
            out.push((k, neg, v.trim().to_string()));
        }
        Ok(FieldSelector(out, None))
    }

    /// Adds a shard selector.
    pub fn with_shard(mut self, shard: ShardSelector) -> Self {
        self.1 = Some(shard);
        self
    }

    /// The shard selector, if the request gave one.
    pub fn shard(&self) -> Option<&ShardSelector> {
        self.1.as_ref()
    }

    /// Whether the selector is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty() && self.1.is_none()
    }

    /// If the selector pins `metadata.name`, the name (lets lists skip a scan).
    pub fn pinned_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, neg, _)| k == "metadata.name" && !neg)
            .map(|(_, _, v)| v.as_str())
    }

    /// Evaluates the selector; missing fields compare as the empty string, like the real server.
    pub fn matches(&self, obj: &Value) -> bool {
        self.1.as_ref().is_none_or(|s| s.matches(obj))
            && self.0.iter().all(|(k, neg, v)| {
                let mut cur = obj;
                let mut found = true;
                for seg in k.split('.') {
                    match cur.get(seg) {
                        Some(x) => cur = x,
                        None => {
                            found = false;
                            break;
                        }
                    }
                }
                let actual = if !found {
                    String::new()
                } else {
                    match cur {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    }
                };
                (actual == *v) != *neg
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}});
        for (s, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web,db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("missing notin (x)", true),
            ("app=web,tier in (fe)", true),
            ("", true),
        ] {
            assert_eq!(LabelSelector::parse(s).unwrap().matches(&o), want, "{s}");
        }
        assert!(LabelSelector::parse("a in x").is_err());
    }

    #[test]
    fn fields() {
        let o = json!({"metadata": {"name": "a", "namespace": "n"}});
        assert!(
            FieldSelector::parse("metadata.name=a", "", "configmaps", &[])
                .unwrap()
                .matches(&o)
        );
        assert!(
            !FieldSelector::parse("metadata.name!=a", "", "configmaps", &[])
                .unwrap()
                .matches(&o)
        );
        assert!(FieldSelector::parse("spec.x=a", "", "configmaps", &[]).is_err());
    }

    #[test]
    fn shards() {
        // FNV-1a("a") = 0xaf63dc4c8601ec8c: in the upper half.
        let o = json!({"metadata": {"uid": "a", "namespace": "n"}});
        let upper = "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')";
        let lower = "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')";
        assert!(ShardSelector::parse(upper).unwrap().matches(&o));
        assert!(!ShardSelector::parse(lower).unwrap().matches(&o));
        assert!(
            ShardSelector::parse(&format!("{lower} || {upper}"))
                .unwrap()
                .matches(&o)
        );
        for bad in [
            "",
            "shardRange(object.metadata.name, '0x0', '0x1')",
            "shardRange(object.metadata.uid, '0x0000000000000001', '0x0000000000000000')",
            "shardRange(object.metadata.uid, '0x0', '0x8000000000000000')",
            "shardRange(object.metadata.uid, 0x0, '0x1')",
            "shardRange(object.metadata.uid, '0x0', '0x10000000000000001')",
            "shardRange(object.metadata.uid, '0x0')",
        ] {
            assert!(ShardSelector::parse(bad).is_err(), "{bad}");
        }
    }
}
