//! Conversion webhooks: the custom resources of a CRD whose `spec.conversion.strategy` is
//! `Webhook` are converted between versions by calling the webhook with an
//! `apiextensions.k8s.io/v1` `ConversionReview`, checked as kube-apiserver checks the answer.
//!
//! # Where conversions happen
//!
//! Objects are stored in the CRD's storage version, as kube-apiserver stores them. A request at
//! another version goes through the webhook:
//!
//! * reads: a get, a list (one review for every item that needs it), each watch event, and the
//!   object a write answers with;
//! * writes: planned as a dry run in the request's version (a patch, a server-side apply or an
//!   update merged into the stored object as converted there; admission webhooks called),
//!   converted to the storage version, then committed if the object has not changed since,
//!   else the request starts again; a write the webhook cannot convert stores nothing. No lock
//!   is held across a call.
//!
//! A failed call, or an answer that breaks the rules (wrong `uid`, a result other than
//! `Success`, a count, version, kind, name, namespace or uid that does not match), fails the
//! request with `500` and kube-apiserver's message (`conversion webhook for <group>/<version>,
//! Kind=<Kind> failed: ...`, which kube-apiserver wraps in a storage error on a read); a watch
//! ends with an `ERROR` event. As on kube-apiserver, only
//! the labels and annotations of a converted object's metadata are taken from the webhook.
//!
//! Not converted: `kubectl get`'s server-side tables (columns are read from the stored version)
//! and `/scale`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::faults::Faults;
use crate::handlers::{Reply, ResourceRequest, STALE_CONVERSION};
use crate::registry::ResourceType;
use crate::router::Verb;
use crate::status::{ApiError, ApiResult};
use crate::store::{Store, watch_line};

/// How often a write whose object changed during its conversion starts again.
const ATTEMPTS: usize = 8;
/// kube-apiserver's timeout for a conversion webhook call.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Handles a resource request, converting custom resources through their CRD's webhook where
/// the request's version differs from the stored one.
pub async fn handle(
    store: &Arc<Store>,
    faults: &Faults,
    r: ResourceRequest<'_>,
) -> ApiResult<Reply> {
    let (rt, storage) = {
        let st = store.lock();
        let rt = st
            .registry
            .get(&r.path.group, &r.path.version, &r.path.plural);
        let storage = rt.as_ref().and_then(|rt| storage_version(&st, rt));
        (rt, storage)
    };
    let Some((rt, webhook)) = rt.and_then(|rt| rt.conversion_webhook.clone().map(|w| (rt, w)))
    else {
        return crate::admission::handle(store, faults, r).await;
    };
    let converter = Converter { rt, webhook };
    let write = matches!(r.verb, Verb::Create | Verb::Update | Verb::Patch)
        && r.path.subresource.as_deref() != Some("scale");
    let storage = storage.filter(|s| write && s.version != converter.rt.version);
    for _ in 0..ATTEMPTS {
        let mut attempt = r.clone();
        if matches!(r.verb, Verb::Update | Verb::Patch) {
            attempt.seen = converter.stored_as_requested(store, &r).await?;
        }
        let answer = match &storage {
            Some(storage) => {
                converter
                    .store_converted(store, faults, attempt, storage)
                    .await
            }
            None => crate::admission::handle(store, faults, attempt).await,
        };
        match answer {
            Err(e) if e.code == 409 && e.message.ends_with(STALE_CONVERSION) => continue,
            Err(e) => return Err(e),
            Ok(reply) => return converter.reply(reply).await,
        }
    }
    Err(ApiError::conflict_msg(
        &converter.rt.group,
        &converter.rt.plural,
        r.path.name.as_deref().unwrap_or(""),
        "the object kept changing while it was converted",
    ))
}

/// The served storage version of `rt`'s CRD, where objects are kept.
fn storage_version(st: &crate::store::State, rt: &ResourceType) -> Option<Arc<ResourceType>> {
    let crd = st.get(
        crate::crd::CRD_KEY,
        "",
        &format!("{}.{}", rt.plural, rt.group),
    )?;
    let version = crd
        .pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v["storage"] == true)?["name"]
        .as_str()?;
    st.registry.get(&rt.group, version, &rt.plural)
}

/// The webhook of one served version of a CRD.
#[derive(Clone)]
struct Converter {
    rt: Arc<ResourceType>,
    /// The CRD's `spec.conversion.webhook`.
    webhook: Arc<Value>,
}

impl Converter {
    /// Whether `obj` is one of this kind's objects in another version than the requested one.
    fn needs(&self, obj: &Value) -> bool {
        obj.get("kind").and_then(Value::as_str) == Some(&self.rt.kind)
            && obj.get("apiVersion").and_then(Value::as_str) != Some(&self.rt.api_version())
    }

    /// The stored object a write addresses, converted to the request's version, when it is
    /// stored in another.
    async fn stored_as_requested(
        &self,
        store: &Arc<Store>,
        r: &ResourceRequest<'_>,
    ) -> ApiResult<Option<Arc<Value>>> {
        let stored = {
            let st = store.lock();
            st.get(
                &self.rt.key(),
                r.path.namespace.as_deref().unwrap_or(""),
                r.path.name.as_deref().unwrap_or(""),
            )
            .cloned()
        };
        match stored {
            Some(o) if self.needs(&o) => Ok(Some(Arc::new(self.one((*o).clone()).await?))),
            _ => Ok(None),
        }
    }

    /// A write through a version other than the storage one, as kube-apiserver makes it: the
    /// request (admission webhooks included) planned as a dry run in its own version, the
    /// result converted to the storage version, then stored if the object has not changed
    /// since (else the request starts again). The answer is in the storage version; `reply`
    /// converts it back.
    async fn store_converted(
        &self,
        store: &Arc<Store>,
        faults: &Faults,
        r: ResourceRequest<'_>,
        storage: &ResourceType,
    ) -> ApiResult<Reply> {
        let mut query = r.query.clone();
        query.insert("dryRun".into(), "All".into());
        let plan = ResourceRequest {
            query: &query,
            planning: true,
            ..r.clone()
        };
        let (code, planned, warnings) = match crate::admission::handle(store, faults, plan).await? {
            Reply::Object(code, o, w) => (code, o, w),
            Reply::Unchanged(o, w) => (200, o, w),
            other => return Ok(other),
        };
        if r.query.get("dryRun").is_some_and(|d| d == "All") {
            return Ok(Reply::Object(code, planned, warnings));
        }
        let in_storage = planned.get("apiVersion").and_then(Value::as_str)
            == Some(storage.api_version().as_str());
        let stored = if !in_storage {
            self.convert(vec![(*planned).clone()], &storage.api_version())
                .await?
                .pop()
                .expect("one converted object per object sent")
        } else {
            (*planned).clone()
        };
        let commit = ResourceRequest { seen: None, ..r };
        match crate::handlers::commit(store, storage, &commit, code == 201, stored) {
            // The object changed since the plan: a conflict of this server's making.
            Err(e) if e.code == 409 && code != 201 => Err(ApiError::conflict_msg(
                &self.rt.group,
                &self.rt.plural,
                crate::meta::name_of(&planned),
                STALE_CONVERSION,
            )),
            other => other,
        }
    }

    /// The reply with every object of the kind in the requested version.
    async fn reply(&self, reply: Reply) -> ApiResult<Reply> {
        Ok(match reply {
            Reply::Object(code, o, w) if self.needs(&o) => {
                Reply::Object(code, Arc::new(self.one((*o).clone()).await?), w)
            }
            Reply::Unchanged(o, w) if self.needs(&o) => {
                Reply::Unchanged(Arc::new(self.one((*o).clone()).await?), w)
            }
            Reply::Json(code, list, w) if list.get("items").is_some() => {
                Reply::Json(code, self.list(list).await?, w)
            }
            // A get or a list, serialized by the handler.
            Reply::Raw(code, bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(list) if list.get("items").is_some() => {
                    Reply::Json(code, self.list(list).await?, vec![])
                }
                Ok(obj) if self.needs(&obj) => Reply::Json(code, self.one(obj).await?, vec![]),
                _ => Reply::Raw(code, bytes),
            },
            Reply::Watch(events) => Reply::Watch(self.watch(events)),
            other => other,
        })
    }

    /// A list with its items converted, in one review.
    async fn list(&self, mut list: Value) -> ApiResult<Value> {
        if list.get("kind").and_then(Value::as_str) == Some("Table") {
            return Ok(list);
        }
        let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) else {
            return Ok(list);
        };
        let at: Vec<usize> = (0..items.len())
            .filter(|&i| self.needs(&items[i]))
            .collect();
        if at.is_empty() {
            return Ok(list);
        }
        let sent = at.iter().map(|&i| items[i].clone()).collect();
        let want = self.rt.api_version();
        for (i, converted) in at.into_iter().zip(self.convert(sent, &want).await?) {
            items[i] = converted;
        }
        Ok(list)
    }

    /// A watch's events with their objects converted; a failed conversion ends the watch with
    /// an `ERROR` event.
    fn watch(
        &self,
        events: std::pin::Pin<Box<dyn futures::Stream<Item = Bytes> + Send>>,
    ) -> std::pin::Pin<Box<dyn futures::Stream<Item = Bytes> + Send>> {
        let this = self.clone();
        let converted = events.then(move |line| {
            let this = this.clone();
            async move { this.event(line).await }
        });
        let mut failed = false;
        Box::pin(
            converted
                .take_while(move |r| {
                    let go = !failed;
                    failed |= r.is_err();
                    std::future::ready(go)
                })
                .map(|r| r.unwrap_or_else(|line| line)),
        )
    }

    /// One watch line, converted; `Err` carries the `ERROR` event that ends the watch.
    async fn event(&self, line: Bytes) -> Result<Bytes, Bytes> {
        let Ok(mut event) = serde_json::from_slice::<Value>(&line) else {
            return Ok(line);
        };
        let etype = event["type"].as_str().unwrap_or("").to_string();
        if etype == "BOOKMARK" || etype == "ERROR" || !self.needs(&event["object"]) {
            return Ok(line);
        }
        match self.one(event["object"].take()).await {
            Ok(obj) => Ok(watch_line(&etype, &obj)),
            Err(e) => Err(watch_line("ERROR", &e.to_status())),
        }
    }

    async fn one(&self, obj: Value) -> ApiResult<Value> {
        let mut converted = self.convert(vec![obj], &self.rt.api_version()).await?;
        Ok(converted
            .pop()
            .expect("one converted object per object sent"))
    }

    /// Sends `objects` (all of this kind, none in version `want`) in one review and returns
    /// them converted to `want`, in order.
    async fn convert(&self, objects: Vec<Value>, want: &str) -> ApiResult<Vec<Value>> {
        let gvk = format!(
            "{}, Kind={}",
            objects[0]["apiVersion"].as_str().unwrap_or(""),
            self.rt.kind
        );
        let fail = |why: String| ApiError::internal(format!("conversion webhook for {gvk} {why}"));
        let uid = crate::meta::new_uid();
        let review = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "request": {"uid": uid, "desiredAPIVersion": want, "objects": objects},
        });
        let call = crate::callout::post(&self.webhook["clientConfig"], &review);
        let answer = match tokio::time::timeout(TIMEOUT, call).await {
            Ok(answer) => answer,
            Err(_) => Err("context deadline exceeded".into()),
        };
        let converted = answer
            .and_then(|review| checked_response(&review, &uid))
            .map_err(|e| fail(format!("failed: {e}")))?;
        if converted.len() != objects.len() {
            return Err(fail(format!(
                "returned {} objects, expected {}",
                converted.len(),
                objects.len()
            )));
        }
        objects
            .iter()
            .zip(converted)
            .enumerate()
            .map(|(i, (original, converted))| {
                let at = |why: String| {
                    fail(format!(
                        "returned invalid converted object at index {i}: {why}"
                    ))
                };
                let got = converted["apiVersion"].as_str().unwrap_or("");
                if got != want {
                    return Err(at(format!(
                        "invalid groupVersion (expected {want}, received {got})"
                    )));
                }
                let same = |what: &str, path: &str| {
                    let (e, a) = (original.pointer(path), converted.pointer(path));
                    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
                    (e != a).then(|| at(format!("must have the same {what}: {} != {}", s(e), s(a))))
                };
                for (what, path) in [
                    ("kind", "/kind"),
                    ("name", "/metadata/name"),
                    ("namespace", "/metadata/namespace"),
                    ("UID", "/metadata/uid"),
                ] {
                    if let Some(e) = same(what, path) {
                        return Err(e);
                    }
                }
                restore_meta(original, converted).map_err(|e| {
                    fail(format!(
                        "returned invalid metadata in object at index {i}: {e}"
                    ))
                })
            })
            .collect()
    }
}

/// The `convertedObjects` of a review's response, after kube-apiserver's checks of `uid` and
/// `result`.
fn checked_response(review: &Value, uid: &str) -> Result<Vec<Value>, String> {
    let response = review.get("response").ok_or("no response provided")?;
    let got = response["uid"].as_str().unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let result = &response["result"];
    let status = result["status"].as_str().unwrap_or("");
    if status != "Success" {
        return Err(match result["message"].as_str() {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => format!("response.result.status was '{status}', not 'Success'"),
        });
    }
    Ok(response["convertedObjects"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// `converted` with the original's metadata, but for the labels and annotations the webhook
/// returned (kube-apiserver's `restoreObjectMeta`).
fn restore_meta(original: &Value, mut converted: Value) -> Result<Value, String> {
    let returned = match converted.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(format!(
                "invalid metadata of type {} in converted object",
                json_type(other)
            ));
        }
        None => return Err("missing metadata in converted object".into()),
    };
    let mut meta = original
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for field in ["labels", "annotations"] {
        match returned.get(field) {
            None | Some(Value::Null) => {
                meta.remove(field);
            }
            Some(Value::Object(m)) => {
                if let Some((k, v)) = m.iter().find(|(_, v)| !v.is_string()) {
                    return Err(format!(
                        "metadata.{field}[{k}] must be a string, but is {} in converted object",
                        json_type(v)
                    ));
                }
                meta.insert(field.into(), Value::Object(m.clone()));
            }
            Some(other) => {
                return Err(format!(
                    "invalid metadata.{field} of type {} in converted object",
                    json_type(other)
                ));
            }
        }
    }
    converted["metadata"] = Value::Object(meta);
    Ok(converted)
}

/// The Go type a JSON value decodes to, as kube-apiserver's messages name it.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_comes_from_the_original_but_labels_and_annotations() {
        let original = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1"}, "resourceVersion": "7"}});
        let converted = json!({"apiVersion": "g/v2", "metadata": {"name": "a", "uid": "u", "labels": {"y": "2"}, "annotations": {"n": "note"}, "resourceVersion": "99", "generation": 5}, "spec": {"b": 1}});
        let out = restore_meta(&original, converted).unwrap();
        assert_eq!(
            out,
            json!({"apiVersion": "g/v2", "metadata": {"name": "a", "uid": "u", "labels": {"y": "2"}, "annotations": {"n": "note"}, "resourceVersion": "7"}, "spec": {"b": 1}})
        );
        let dropped = restore_meta(&original, json!({"metadata": {}})).unwrap();
        assert_eq!(dropped["metadata"].get("labels"), None);
    }

    #[test]
    fn bad_metadata_is_refused_as_kube_apiserver_refuses_it() {
        let original = json!({"metadata": {"name": "a"}});
        assert_eq!(
            restore_meta(&original, json!({"spec": {}})).unwrap_err(),
            "missing metadata in converted object"
        );
        assert_eq!(
            restore_meta(&original, json!({"metadata": {"labels": {"a": 1}}})).unwrap_err(),
            "metadata.labels[a] must be a string, but is float64 in converted object"
        );
    }

    #[test]
    fn responses_are_checked_for_uid_and_result() {
        let ok = json!({"response": {"uid": "u", "result": {"status": "Success"}, "convertedObjects": [{"a": 1}]}});
        assert_eq!(checked_response(&ok, "u").unwrap(), vec![json!({"a": 1})]);
        assert_eq!(
            checked_response(&ok, "v").unwrap_err(),
            "expected response.uid=\"v\", got \"u\""
        );
        let failed = json!({"response": {"uid": "u", "result": {"status": "Failure", "message": "no v3 here"}}});
        assert_eq!(checked_response(&failed, "u").unwrap_err(), "no v3 here");
        let silent = json!({"response": {"uid": "u", "result": {"status": "Failure"}}});
        assert_eq!(
            checked_response(&silent, "u").unwrap_err(),
            "response.result.status was 'Failure', not 'Success'"
        );
        assert_eq!(
            checked_response(&json!({}), "u").unwrap_err(),
            "no response provided"
        );
    }
}
