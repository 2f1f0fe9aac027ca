//! Validating and mutating admission: a review in, the handler's answer out.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use kube::Resource;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::response::Status;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Route, guarded};

/// What a validating webhook says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The request may go on.
    Allow,
    /// The request is rejected; the reason is shown to whoever made it.
    Deny(String),
}

impl Verdict {
    /// A denial with `reason`.
    pub fn deny(reason: impl Into<String>) -> Self {
        Verdict::Deny(reason.into())
    }
}

/// The request of an admission review, or why the body is not one (the `400` message).
fn parse(body: &[u8]) -> Result<(AdmissionResponse, serde_json::Value), String> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not an AdmissionReview: {e}"))?;
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| "the AdmissionReview has no request".to_string())?;
    let response = AdmissionResponse::from(&request);
    // Parsed again as the handler's type below; this one proved the shape.
    let value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok((response, value))
}

/// The review's request with its objects as `K`, or why they are not (a denial's message).
fn typed<K: Resource<DynamicType: Default> + DeserializeOwned>(
    value: serde_json::Value,
) -> Result<AdmissionRequest<K>, String> {
    let review: AdmissionReview<K> = serde_json::from_value(value).map_err(|e| {
        let kind = K::kind(&Default::default()).into_owned();
        format!("the object is not a valid {kind}: {e}")
    })?;
    review
        .try_into()
        .map_err(|_| "the AdmissionReview has no request".to_string())
}

fn deny(mut response: AdmissionResponse, message: String, code: u16) -> AdmissionResponse {
    response.allowed = false;
    let reason = if code == 403 {
        "Forbidden"
    } else {
        "InternalError"
    };
    response.result = Status::failure(&message, reason).with_code(code);
    response
}

fn answer(response: AdmissionResponse) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&response.into_review()).map_err(|e| e.to_string())
}

pub(super) fn validating<K, F, Fut, E>(handler: F) -> Route
where
    K: Resource + DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
    F: Fn(AdmissionRequest<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Verdict, E>> + Send + 'static,
    E: Display,
{
    let handler = Arc::new(handler);
    Arc::new(move |body| {
        let handler = handler.clone();
        async move {
            let (response, value) = parse(&body)?;
            let request = match typed::<K>(value) {
                Ok(r) => r,
                Err(message) => return answer(deny(response, message, 500)),
            };
            let response = match guarded(handler(request)).await {
                Ok(Ok(Verdict::Allow)) => response,
                Ok(Ok(Verdict::Deny(reason))) => deny(response, reason, 403),
                Ok(Err(e)) => deny(response, e.to_string(), 500),
                Err(panic) => deny(response, panic, 500),
            };
            answer(response)
        }
        .boxed()
    })
}

pub(super) fn mutating<K, F, Fut, E>(handler: F) -> Route
where
    K: Resource + Clone + Serialize + DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
    F: Fn(K, AdmissionRequest<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<K, E>> + Send + 'static,
    E: Display,
{
    let handler = Arc::new(handler);
    Arc::new(move |body| {
        let handler = handler.clone();
        async move {
            let (response, value) = parse(&body)?;
            let request = match typed::<K>(value) {
                Ok(r) => r,
                Err(message) => return answer(deny(response, message, 500)),
            };
            let Some(object) = request.object.clone() else {
                return answer(response);
            };
            // Both sides serialized as `K`: the patch holds the handler's changes only.
            let before = serde_json::to_value(&object).map_err(|e| e.to_string())?;
            let response = match guarded(handler(object, request)).await {
                Ok(Ok(after)) => match serde_json::to_value(&after) {
                    Ok(after) => {
                        let patch = json_patch::diff(&before, &after);
                        if patch.0.is_empty() {
                            response
                        } else {
                            response.with_patch(patch).map_err(|e| e.to_string())?
                        }
                    }
                    Err(e) => deny(response, format!("cannot serialize the object: {e}"), 500),
                },
                Ok(Err(e)) => deny(response, e.to_string(), 500),
                Err(panic) => deny(response, panic, 500),
            };
            answer(response)
        }
        .boxed()
    })
}
