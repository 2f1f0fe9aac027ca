//! Resource request handlers: one function per verb, each taking the parsed request and the
//! locked store, returning a JSON reply, a watch stream, or a Status error.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};

use crate::faults::Faults;
use crate::ops::{self, Deleted, FieldValidation, WriteOpts, present};
use crate::registry::ResourceType;
use crate::router::{ResourcePath, Verb};
use crate::selectors::{FieldSelector, LabelSelector, ShardSelector};
use crate::status::{ApiError, ApiResult};
use crate::store::{ObjKey, Store};
use crate::watch::{self, Start, WatchRequest};

/// A successful answer.
pub enum Reply {
    /// A JSON document with an HTTP status and `Warning` headers.
    Json(u16, Value, Vec<String>),
    /// A stored object (shared with the store, not copied) with an HTTP status and `Warning`
    /// headers.
    Object(u16, Arc<Value>, Vec<String>),
    /// A write that changed nothing (the stored object, at its resourceVersion): answered like
    /// [`Reply::Object`] with status 200, counted apart in the [`Stats`](crate::Stats).
    Unchanged(Arc<Value>, Vec<String>),
    /// Pre-serialized JSON (lists are streamed into one buffer).
    Raw(u16, Bytes),
    /// A watch: newline-delimited JSON events.
    Watch(Pin<Box<dyn Stream<Item = Bytes> + Send>>),
}

/// Everything about a resource request the handlers need.
#[derive(Clone)]
pub struct ResourceRequest<'a> {
    /// Parsed URL.
    pub path: &'a ResourcePath,
    /// The verb derived from method and URL.
    pub verb: Verb,
    /// Query parameters.
    pub query: &'a HashMap<String, String>,
    /// `Content-Type`, lower-cased, without parameters.
    pub content_type: String,
    /// `Accept` header.
    pub accept: String,
    /// The body.
    pub body: Bytes,
    /// Field manager to record for writes.
    pub field_manager: String,
    /// For a write to a custom resource whose CRD converts by webhook: the stored object as
    /// the request's version sees it, converted before the handler runs (a webhook call cannot
    /// happen under the store's lock). Patches apply to it.
    pub seen: Option<Arc<Value>>,
    /// The request runs as a dry run (its query says `dryRun=All`) only to plan what the
    /// conversion layer then stores in the CRD's storage version: admission webhooks are told
    /// it is a real write.
    pub planning: bool,
}

/// The stored object `old` as the request's version sees it: [`ResourceRequest::seen`] when the
/// conversion webhook made it from this very version of the object, else [`present`].
pub fn seen_as_requested(
    old: &Arc<Value>,
    rt: &ResourceType,
    r: &ResourceRequest<'_>,
) -> ApiResult<Arc<Value>> {
    let Some(seen) = &r.seen else {
        return Ok(present(old, rt));
    };
    let rv = |o: &Value| o.pointer("/metadata/resourceVersion").cloned();
    if rv(seen) != rv(old) {
        // Changed since it was converted: the caller converts the new version and retries.
        return Err(ApiError::conflict_msg(
            &rt.group,
            &rt.plural,
            crate::meta::name_of(old),
            STALE_CONVERSION,
        ));
    }
    Ok(seen.clone())
}

/// The message of the conflict [`seen_as_requested`] reports; never reaches a client.
pub const STALE_CONVERSION: &str = "the object changed while it was converted";

/// Derives the verb; `None` for methods the resource API does not have.
pub fn verb_of(
    method: &http::Method,
    p: &ResourcePath,
    query: &HashMap<String, String>,
) -> Option<Verb> {
    let watch = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    Some(match (method.as_str(), p.name.is_some()) {
        ("GET", true) if watch => Verb::Watch,
        ("GET", true) => Verb::Get,
        ("GET", false) if watch => Verb::Watch,
        ("GET", false) => Verb::List,
        ("POST", false) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => return None,
    })
}

fn not_served() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Decodes a request body as JSON or YAML according to its content type.
pub fn decode_body(body: &Bytes, content_type: &str) -> ApiResult<Value> {
    if content_type.contains("protobuf") {
        return Err(ApiError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if content_type.contains("yaml") {
        return serde_saphyr::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(e) => {
            // Humans and some tools send YAML labelled as JSON; the real server's universal
            // decoder accepts that, so fall back when the body does not even start like JSON.
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            if first.is_some_and(|b| *b != b'{' && *b != b'[')
                && let Ok(v) = serde_saphyr::from_slice::<Value>(body)
                && v.is_object()
            {
                return Ok(v);
            }
            Err(ApiError::bad_request(format!(
                "couldn't get version/kind; json parse error: {e}"
            )))
        }
    }
}

/// Decodes the body of a create, an update or a delete: JSON or YAML, or protobuf for built-in
/// kinds and `/scale`. Custom resources have no protobuf form: `415`, as from kube-apiserver.
fn decode_object_body(rt: &ResourceType, r: &ResourceRequest<'_>) -> ApiResult<Value> {
    if r.content_type == crate::protobuf::MEDIA_TYPE
        && (!rt.custom || r.path.subresource.as_deref() == Some("scale"))
    {
        return crate::protobuf::decode_object(&r.body);
    }
    decode_body(&r.body, &r.content_type)
}

fn write_opts(r: &ResourceRequest<'_>) -> ApiResult<WriteOpts> {
    let validation = match r.query.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other:?}, must be one of \"Ignore\", \"Warn\", \"Strict\""
            )));
        }
    };
    let dry_run = match r.query.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other:?}, must be \"All\""
            )));
        }
    };
    Ok(WriteOpts {
        dry_run,
        field_manager: r.field_manager.clone(),
        validation,
        managed_fields_done: false,
        seen: r.seen.clone(),
    })
}

/// Dispatches one resource request.
pub fn handle(store: &Arc<Store>, faults: &Faults, r: ResourceRequest<'_>) -> ApiResult<Reply> {
    let p = r.path;
    let rt = store
        .lock()
        .registry
        .get(&p.group, &p.version, &p.plural)
        .ok_or_else(not_served)?;
    if !rt.namespaced && p.namespace.is_some() {
        return Err(not_served());
    }
    if rt.namespaced && p.namespace.is_none() && !matches!(r.verb, Verb::List | Verb::Watch) {
        return Err(not_served());
    }
    match p.subresource.as_deref() {
        None => {}
        Some("status")
            if rt.status_subresource
                && matches!(r.verb, Verb::Get | Verb::Update | Verb::Patch) => {}
        Some("finalize") if rt.plural == "namespaces" && r.verb == Verb::Update => {}
        Some("scale")
            if rt.scale.is_some() && matches!(r.verb, Verb::Get | Verb::Update | Verb::Patch) =>
        {
            return scale(store, &rt, &r);
        }
        Some(_) => return Err(not_served()),
    }
    match r.verb {
        Verb::Get => get(store, &rt, &r),
        Verb::List => list(store, &rt, &r),
        Verb::Watch => start_watch(store, faults, &rt, &r),
        Verb::Create => create(store, &rt, &r),
        Verb::Update => update(store, &rt, &r),
        Verb::Patch => patch(store, &rt, &r),
        Verb::Delete => delete(store, &rt, &r),
        Verb::DeleteCollection => delete_collection(store, &rt, &r),
    }
}

/// The answer to a write: [`Reply::Unchanged`] when it changed nothing.
fn written(code: u16, w: ops::Written, rt: &ResourceType) -> Reply {
    if w.unchanged {
        Reply::Unchanged(present(&w.object, rt), w.warnings)
    } else {
        Reply::Object(code, present(&w.object, rt), w.warnings)
    }
}

fn ns_of<'a>(r: &'a ResourceRequest<'_>) -> &'a str {
    r.path.namespace.as_deref().unwrap_or("")
}

fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

fn get(store: &Arc<Store>, rt: &ResourceType, r: &ResourceRequest<'_>) -> ApiResult<Reply> {
    let name = r.path.name.as_deref().unwrap_or("");
    let obj = {
        let st = store.lock();
        st.get(&rt.key(), ns_of(r), name).cloned()
    }
    .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
    let obj = present(&obj, rt);
    if wants_table(&r.accept) {
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(Value::Null);
        return Ok(Reply::Json(
            200,
            table(rt, &[obj], json!({"resourceVersion": rv})),
            vec![],
        ));
    }
    Ok(Reply::Raw(
        200,
        Bytes::from(serde_json::to_vec(&*obj).expect("serializable")),
    ))
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn selectors(
    rt: &ResourceType,
    q: &HashMap<String, String>,
) -> ApiResult<(LabelSelector, FieldSelector)> {
    let l = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let mut f = FieldSelector::parse(
        q.get("fieldSelector").map(String::as_str).unwrap_or(""),
        &rt.group,
        &rt.plural,
        &rt.selectable_fields,
    )?;
    if let Some(shard) = q.get("shardSelector").filter(|s| !s.is_empty()) {
        f = f.with_shard(ShardSelector::parse(shard)?);
    }
    Ok((l, f))
}

fn parse_rv(s: &str) -> ApiResult<u64> {
    s.parse::<u64>().map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid value: \"{s}\": resourceVersion must be a non-negative integer"
        ))
    })
}

/// `ValidateListOptions` for a list (not a watch): the `422` causes kube-apiserver gives for
/// `resourceVersionMatch` without `resourceVersion`, with `continue`, of an unknown value, or
/// `Exact` at `"0"`, and for `sendInitialEvents` on a list.
fn validate_list_options(q: &HashMap<String, String>) -> ApiResult<()> {
    let forbidden = |field: &str, msg: &str| crate::status::Cause {
        reason: "FieldValueForbidden".into(),
        message: format!("Forbidden: {msg}"),
        field: field.into(),
    };
    let mut causes = vec![];
    let rv = q.get("resourceVersion").map_or("", String::as_str);
    if let Some(m) = q.get("resourceVersionMatch").filter(|m| !m.is_empty()) {
        let field = "resourceVersionMatch";
        if rv.is_empty() {
            causes.push(forbidden(
                field,
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if q.get("continue").is_some_and(|c| !c.is_empty()) {
            causes.push(forbidden(
                field,
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if m != "Exact" && m != "NotOlderThan" {
            causes.push(crate::status::Cause {
                reason: "FieldValueNotSupported".into(),
                message: format!(
                    "Unsupported value: {}: supported values: \"Exact\", \"NotOlderThan\", \"\"",
                    crate::schema::gofmt::json(&Value::String(m.clone()))
                ),
                field: field.into(),
            });
        }
        if m == "Exact" && rv == "0" {
            causes.push(forbidden(
                field,
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
    }
    if q.contains_key("sendInitialEvents") {
        causes.push(forbidden(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for list",
        ));
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", causes))
}

fn list(store: &Arc<Store>, rt: &ResourceType, r: &ResourceRequest<'_>) -> ApiResult<Reply> {
    let q = r.query;
    validate_list_options(q)?;
    let (labels, fields) = selectors(rt, q)?;
    let limit: usize = match q.get("limit").map(String::as_str) {
        None | Some("") | Some("0") => usize::MAX,
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
    };
    let ns = r.path.namespace.as_deref();
    let st = store.lock();
    let current = st.current_rv();
    let mut list_rv = current;
    let mut after: Option<ObjKey> = None;
    if let Some(token) = q.get("continue").filter(|t| !t.is_empty()) {
        let decoded = unhex(token)
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .ok_or_else(|| ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
        let rv = decoded["rv"].as_u64().unwrap_or(0);
        if rv < st.oldest_resumable_rv() {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ));
        }
        list_rv = rv;
        after = Some((
            decoded["ns"].as_str().unwrap_or("").to_string(),
            decoded["name"].as_str().unwrap_or("").to_string(),
        ));
    } else if let Some(rv) = q
        .get("resourceVersion")
        .filter(|s| !s.is_empty() && *s != "0")
    {
        let rv = parse_rv(rv)?;
        let exact = q.get("resourceVersionMatch").is_some_and(|m| m == "Exact");
        if exact && rv < st.oldest_resumable_rv() {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                st.oldest_resumable_rv() + 1
            )));
        }
    }
    let mut items: Vec<Arc<Value>> = vec![];
    let mut last_key = None;
    let mut more = false;
    let mut scanned_after_limit = 0usize;
    let candidates: Box<dyn Iterator<Item = (&ObjKey, &Arc<Value>)>> =
        match (fields.pinned_name(), ns) {
            (Some(name), Some(ns)) if after.is_none() => Box::new(
                st.get(&rt.key(), ns, name)
                    .map(|o| (o, (ns.to_string(), name.to_string())))
                    .into_iter()
                    .map(|(o, _)| (&EMPTY_KEY, o)),
            ),
            _ => st.range(&rt.key(), ns, after.as_ref()),
        };
    for (k, obj) in candidates {
        if !labels.matches(obj) || !fields.matches(obj) {
            continue;
        }
        if items.len() == limit {
            more = true;
            scanned_after_limit += 1;
            continue;
        }
        items.push(present(obj, rt));
        last_key = Some(k.clone());
    }
    drop(st);
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if let Some(shard) = fields.shard() {
        meta["shardInfo"] = json!({ "selector": shard.text });
    }
    if more && let Some((kns, kname)) = last_key {
        meta["continue"] =
            hex(&json!({"rv": list_rv, "ns": kns, "name": kname}).to_string()).into();
        if labels.is_empty() && fields.is_empty() {
            meta["remainingItemCount"] = scanned_after_limit.into();
        }
    }
    if wants_table(&r.accept) {
        return Ok(Reply::Json(200, table(rt, &items, meta), vec![]));
    }
    let mut buf = Vec::with_capacity(128 + items.len() * 512);
    buf.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut buf, &format!("{}List", rt.kind)).expect("string");
    buf.extend_from_slice(b",\"apiVersion\":");
    serde_json::to_writer(&mut buf, &rt.api_version()).expect("string");
    buf.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut buf, &meta).expect("value");
    buf.extend_from_slice(b",\"items\":[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        serde_json::to_writer(&mut buf, &**it).expect("value");
    }
    buf.extend_from_slice(b"]}");
    Ok(Reply::Raw(200, Bytes::from(buf)))
}

static EMPTY_KEY: ObjKey = (String::new(), String::new());

fn human_age(ts: Option<&str>) -> String {
    let Some(t) = ts.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = jiff::Timestamp::now().duration_since(t).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A printer column's cell as kube-apiserver's table convertor makes it: the column's JSONPath
/// (kubectl's syntax, e.g. `.status.conditions[?(@.type=="Ready")].status`) on the object, first
/// result only, then typed by the column (`string` prints any scalar; `integer`, `number` and
/// `boolean` keep only a value of that type; `date` becomes an age).
fn column_cell(obj: &Value, column: &Value) -> Value {
    use jsonpath_rust::JsonPath;
    let path = column["jsonPath"].as_str().unwrap_or("").trim();
    let path = path.trim_start_matches('{').trim_end_matches('}');
    let query = if path.starts_with('$') {
        path.to_string()
    } else {
        format!("${path}")
    };
    let Some(v) = obj
        .query(&query)
        .ok()
        .and_then(|found| found.first().map(|v| (*v).clone()))
    else {
        return Value::Null;
    };
    match column
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string")
    {
        "string" => match v {
            Value::String(_) | Value::Null => v,
            Value::Number(_) | Value::Bool(_) => v.to_string().into(),
            other => other.to_string().into(),
        },
        "integer" if v.is_i64() || v.is_u64() => v,
        "number" if v.is_number() => v,
        "boolean" if v.is_boolean() => v,
        "date" => human_age(v.as_str()).into(),
        _ => Value::Null,
    }
}

/// A `meta.k8s.io/v1` Table, which `kubectl get` asks for: name, age and CRD printer columns.
fn table(rt: &ResourceType, items: &[Arc<Value>], meta: Value) -> Value {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    let extra: Vec<&Value> = rt.printer_columns.iter().collect();
    for c in &extra {
        cols.push(json!({
            "name": c["name"], "type": c.get("type").cloned().unwrap_or("string".into()),
            "format": c.get("format").cloned().unwrap_or("".into()),
            "description": c.get("description").cloned().unwrap_or("".into()),
            "priority": c.get("priority").cloned().unwrap_or(0.into())
        }));
    }
    // As kube-apiserver's CRD table convertor: `Age` only stands in for declared columns.
    let has_age = !extra.is_empty();
    if !has_age {
        cols.push(json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp", "priority": 0}));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            for c in &extra {
                cells.push(column_cell(o, c));
            }
            if !has_age {
                cells.push(human_age(o.pointer("/metadata/creationTimestamp").and_then(Value::as_str)).into());
            }
            json!({
                "cells": cells,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
            })
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": cols, "rows": rows})
}

fn start_watch(
    store: &Arc<Store>,
    faults: &Faults,
    rt: &Arc<ResourceType>,
    r: &ResourceRequest<'_>,
) -> ApiResult<Reply> {
    let q = r.query;
    let (labels, mut fields) = selectors(rt, q)?;
    if let Some(name) = &r.path.name {
        // Legacy `GET .../name?watch=true`: a watch pinned to one object.
        fields =
            FieldSelector::parse(&format!("metadata.name={name}"), &rt.group, &rt.plural, &[])?;
    }
    let send_initial_events = q.get("sendInitialEvents").is_some_and(|v| v == "true");
    let start = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => Start::Current,
        Some(_) if send_initial_events => Start::Current,
        Some(rv) => Start::After(parse_rv(rv)?),
    };
    if send_initial_events
        && q.get("resourceVersionMatch")
            .is_none_or(|m| m != "NotOlderThan")
    {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![crate::status::Cause {
                reason: "FieldValueForbidden".into(),
                message: "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into(),
                field: "resourceVersionMatch".into(),
            }],
        ));
    }
    let timeout = match q.get("timeoutSeconds").map(String::as_str) {
        None | Some("") => None,
        Some(t) => Some(Duration::from_secs(t.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {t:?}"))
        })?)),
    };
    let req = WatchRequest {
        rt: rt.clone(),
        namespace: r.path.namespace.clone(),
        labels,
        fields,
        bookmarks: q
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true" || v == "1"),
        send_initial_events,
        timeout,
        start,
    };
    Ok(Reply::Watch(Box::pin(watch::start(store, faults, req))))
}

fn create(store: &Arc<Store>, rt: &ResourceType, r: &ResourceRequest<'_>) -> ApiResult<Reply> {
    let opts = write_opts(r)?;
    let body = decode_object_body(rt, r)?;
    let mut st = store.lock();
    let w = ops::create(&mut st, rt, r.path.namespace.as_deref(), body, &opts)?;
    crate::gc::run(&mut st);
    drop(st);
    Ok(Reply::Object(201, present(&w.object, rt), w.warnings))
}

fn update(store: &Arc<Store>, rt: &ResourceType, r: &ResourceRequest<'_>) -> ApiResult<Reply> {
    let opts = write_opts(r)?;
    let body = decode_object_body(rt, r)?;
    let name = r.path.name.as_deref().expect("update has a name");
    let sub = r.path.subresource.as_deref();
    let mut st = store.lock();
    let w = if sub == Some("finalize") {
        finalize_namespace(&mut st, rt, name, body, &opts)?
    } else {
        ops::update(
            &mut st,
            rt,
            r.path.namespace.as_deref(),
            name,
            sub,
            body,
            &opts,
        )?
    };
    crate::gc::run(&mut st);
    drop(st);
    Ok(written(200, w, rt))
}

/// `PUT /api/v1/namespaces/x/finalize`: only `spec.finalizers` changes.
fn finalize_namespace(
    st: &mut crate::store::State,
    rt: &ResourceType,
    name: &str,
    body: Value,
    opts: &WriteOpts,
) -> ApiResult<ops::Written> {
    let old = st
        .get(&rt.key(), "", name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("", "namespaces", name))?;
    let mut new = (*old).clone();
    new["spec"]["finalizers"] = body
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or(json!([]));
    if opts.dry_run {
        return Ok(ops::Written {
            object: Arc::new(new),
            warnings: vec![],
            unchanged: false,
        });
    }
    let stored = st.put(&rt.key(), "", name, new);
    st.gc_queue
        .push_back(crate::store::GcWork::CheckNamespace(name.to_string()));
    Ok(ops::Written {
        object: stored,
        warnings: vec![],
        unchanged: false,
    })
}

fn patch_error(rt: &ResourceType, name: &str, e: crate::patch::PatchError) -> ApiError {
    use crate::patch::PatchError as P;
    match e {
        P::BadRequest(m) => ApiError::bad_request(m),
        P::Invalid(m) => {
            let mut err = ApiError::new(422, "Invalid", m);
            err.details = Some(json!({"name": name, "group": rt.group, "kind": rt.kind}));
            err
        }
        P::UnsupportedMediaType(m) => ApiError::unsupported_media_type(m),
        e @ P::Conflict(_) => ApiError::conflict_msg(&rt.group, &rt.plural, name, &e.to_string()),
    }
}

/// `/scale`: the object's replicas as a `Scale`; a PUT or a patch of that view is an update of
/// the object.
fn scale(store: &Arc<Store>, rt: &ResourceType, r: &ResourceRequest<'_>) -> ApiResult<Reply> {
    let paths = rt
        .scale
        .as_ref()
        .expect("routed only for kinds with a scale");
    let name = r.path.name.as_deref().unwrap_or("");
    let opts = write_opts(r)?;
    let mut st = store.lock();
    let old = st
        .get(&rt.key(), ns_of(r), name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
    let current = crate::scale::view(paths, &old);
    let wanted = match (r.verb, r.content_type.as_str()) {
        (Verb::Get, _) => return Ok(Reply::Json(200, current, vec![])),
        (Verb::Update, _) => decode_object_body(rt, r)?,
        // A Scale has no list to merge by key: a strategic merge patch is a merge patch here.
        (_, "application/merge-patch+json" | "application/strategic-merge-patch+json") => {
            let body = decode_body(&r.body, "json")?;
            let mut t = current;
            crate::patch::merge_patch(&mut t, &body);
            t
        }
        (_, "application/json-patch+json") => {
            let body = decode_body(&r.body, "json")?;
            crate::patch::json_patch(&current, &body).map_err(|e| patch_error(rt, name, e))?
        }
        _ => return Err(ApiError::unsupported_media_type(PATCH_TYPES)),
    };
    let new = crate::scale::apply(paths, rt, &old, &wanted)?;
    let w = ops::apply_update(&mut st, rt, &old, new, None, &opts)?;
    crate::gc::run(&mut st);
    Ok(Reply::Json(
        200,
        crate::scale::view(paths, &w.object),
        w.warnings,
    ))
}

const PATCH_TYPES: &str = "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

fn patch(store: &Arc<Store>, rt: &ResourceType, r: &ResourceRequest<'_>) -> ApiResult<Reply> {
    let opts = write_opts(r)?;
    let name = r.path.name.as_deref().expect("patch has a name");
    let ns = ns_of(r);
    let ct = r.content_type.as_str();
    let kind = match ct {
        "application/merge-patch+json" => "merge",
        "application/json-patch+json" => "json",
        "application/strategic-merge-patch+json" if !rt.custom => "strategic",
        "application/apply-patch+yaml" | "application/apply-patch+json" => "apply",
        "application/strategic-merge-patch+json" => {
            return Err(ApiError::unsupported_media_type(PATCH_TYPES));
        }
        _ => {
            return Err(ApiError::unsupported_media_type(format!(
                "{PATCH_TYPES}, application/strategic-merge-patch+json"
            )));
        }
    };
    let body = decode_body(&r.body, if kind == "apply" { "yaml" } else { "json" })?;
    let mut st = store.lock();
    if kind == "apply" {
        let w = server_side_apply(&mut st, rt, r, body, opts)?;
        crate::gc::run(&mut st);
        drop(st);
        return Ok(written(if w.1 { 201 } else { 200 }, w.0, rt));
    }
    let old = st
        .get(&rt.key(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
    let base = seen_as_requested(&old, rt, r)?;
    let patched = match kind {
        "merge" => {
            if !body.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            let mut t = (*base).clone();
            crate::patch::merge_patch(&mut t, &body);
            t
        }
        "json" => crate::patch::json_patch(&base, &body).map_err(|e| patch_error(rt, name, e))?,
        _ => crate::patch::strategic_merge_patch(&base, &body, &rt.gvk_string())
            .map_err(|e| patch_error(rt, name, e))?,
    };
    let mut patched = patched;
    ops::check_type_meta(&st, &mut patched, rt)?;
    if crate::meta::name_of(&patched) != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            crate::meta::name_of(&patched)
        )));
    }
    let rv = patched
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !rv.is_empty()
        && Some(rv)
            != old
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
    {
        return Err(ApiError::conflict(&rt.group, &rt.plural, name));
    }
    let w = ops::apply_update(
        &mut st,
        rt,
        &old,
        patched,
        r.path.subresource.as_deref(),
        &opts,
    )?;
    crate::gc::run(&mut st);
    drop(st);
    Ok(written(200, w, rt))
}

/// Server-side apply: merges the configuration with field ownership; creates when missing.
/// Returns the write and whether it created the object.
fn server_side_apply(
    st: &mut crate::store::State,
    rt: &ResourceType,
    r: &ResourceRequest<'_>,
    mut body: Value,
    mut opts: WriteOpts,
) -> ApiResult<(ops::Written, bool)> {
    let name = r.path.name.as_deref().expect("patch has a name");
    let Some(manager) = r.query.get("fieldManager").filter(|m| !m.is_empty()) else {
        // Like kube-apiserver's ValidatePatchOptions: 422, not 400.
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![crate::status::Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value: is required for apply patch".into(),
                field: "fieldManager".into(),
            }],
        ));
    };
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "error decoding patch: apply configuration must be an object",
        ));
    }
    for (k, want) in [("apiVersion", rt.api_version()), ("kind", rt.kind.clone())] {
        match body.get(k).and_then(Value::as_str) {
            Some(v) if v == want => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "the {k} in the apply configuration ({v}) does not match the expected {k} ({want})"
                )));
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "invalid object: {k} must be set"
                )));
            }
        }
    }
    match body.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        Some(_) => {}
        None => {
            crate::meta::meta_mut(&mut body).insert("name".into(), name.into());
        }
    }
    let force = r.query.get("force").is_some_and(|f| f == "true");
    let ns = ns_of(r);
    let old = st.get(&rt.key(), ns, name).cloned();
    let base = match (&old, &r.seen) {
        (Some(old), Some(_)) => Some(seen_as_requested(old, rt, r)?),
        _ => old.clone(),
    };
    let now = crate::meta::now();
    let schema = rt.schema.as_deref();
    let apply = match r.path.subresource.as_deref() {
        Some("status") => crate::patch::apply_to_status,
        _ => crate::patch::apply_with_schema,
    };
    let merged = apply(
        base.as_deref(),
        &body,
        manager,
        force,
        &rt.gvk_string(),
        &now,
        schema,
    )
    .map_err(|e| patch_error(rt, name, e))?;
    opts.managed_fields_done = true;
    match old {
        None => {
            if r.path.subresource.is_some() {
                return Err(ApiError::not_found(&rt.group, &rt.plural, name));
            }
            Ok((
                ops::create(st, rt, r.path.namespace.as_deref(), merged, &opts)?,
                true,
            ))
        }
        Some(old) => {
            let mut merged = merged;
            if let Some(m) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let w = ops::apply_update(st, rt, &old, merged, r.path.subresource.as_deref(), &opts)?;
            Ok((w, false))
        }
    }
}

/// Writes what the admission webhooks admitted (see [`crate::admission`]): `object` as a create,
/// or as an update conditional on the `resourceVersion` it carries.
pub fn commit(
    store: &Arc<Store>,
    rt: &ResourceType,
    r: &ResourceRequest<'_>,
    created: bool,
    mut object: Value,
) -> ApiResult<Reply> {
    let mut opts = write_opts(r)?;
    // Server-side apply recorded its field ownership in the planned object already.
    opts.managed_fields_done =
        r.verb == Verb::Patch && r.content_type.starts_with("application/apply-patch");
    let mut st = store.lock();
    let w = if created {
        crate::meta::meta_mut(&mut object).remove("resourceVersion");
        ops::create(&mut st, rt, r.path.namespace.as_deref(), object, &opts)?
    } else {
        let name = r.path.name.as_deref().expect("an update has a name");
        let sub = r.path.subresource.as_deref();
        ops::update(
            &mut st,
            rt,
            r.path.namespace.as_deref(),
            name,
            sub,
            object,
            &opts,
        )?
    };
    crate::gc::run(&mut st);
    drop(st);
    Ok(Reply::Object(
        if created { 201 } else { 200 },
        present(&w.object, rt),
        w.warnings,
    ))
}

fn body_or_none(rt: &ResourceType, r: &ResourceRequest<'_>) -> ApiResult<Option<Value>> {
    if r.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    decode_object_body(rt, r).map(Some)
}

fn delete(store: &Arc<Store>, rt: &ResourceType, r: &ResourceRequest<'_>) -> ApiResult<Reply> {
    let opts = ops::delete_opts(body_or_none(rt, r)?.as_ref(), r.query)?;
    let name = r.path.name.as_deref().expect("delete has a name");
    let mut st = store.lock();
    let d = ops::delete(&mut st, rt, ns_of(r), name, &opts)?;
    crate::gc::run(&mut st);
    drop(st);
    Ok(match d {
        Deleted::Pending(o) => Reply::Object(200, present(&o, rt), vec![]),
        Deleted::Gone(o) if rt.returns_deleted_object() => {
            Reply::Object(200, present(&o, rt), vec![])
        }
        Deleted::Gone(o) => Reply::Json(
            200,
            crate::status::success(&rt.group, &rt.plural, name, crate::meta::uid_of(&o)),
            vec![],
        ),
    })
}

fn delete_collection(
    store: &Arc<Store>,
    rt: &ResourceType,
    r: &ResourceRequest<'_>,
) -> ApiResult<Reply> {
    let opts = ops::delete_opts(body_or_none(rt, r)?.as_ref(), r.query)?;
    let (labels, fields) = selectors(rt, r.query)?;
    let ns = r.path.namespace.as_deref();
    let mut st = store.lock();
    let targets: Vec<ObjKey> = st
        .range(&rt.key(), ns, None)
        .filter(|(_, o)| labels.matches(o) && fields.matches(o))
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = vec![];
    for (ons, oname) in targets {
        let one = ops::DeleteOpts {
            uid: None,
            resource_version: None,
            ..opts.clone()
        };
        match ops::delete(&mut st, rt, &ons, &oname, &one) {
            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => items.push((*present(&o, rt)).clone()),
            Err(_) => {}
        }
    }
    crate::gc::run(&mut st);
    let rv = st.current_rv();
    drop(st);
    Ok(Reply::Json(
        200,
        json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
        vec![],
    ))
}
