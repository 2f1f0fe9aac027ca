//! CRD conversion: each object of a review mapped to the version the API server asks for.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use kube::Resource;
use kube::core::conversion::{ConversionRequest, ConversionResponse, ConversionReview};
use kube::core::response::Status;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Route, guarded};

type Map = Arc<dyn Fn(Value) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// How a CRD's served versions convert into each other: one function per direction.
///
/// ```
/// use staircase_runtime::webhook::Conversion;
/// # mod v1 { #[derive(kube::CustomResource, serde::Deserialize, serde::Serialize, Clone, Debug, schemars::JsonSchema)]
/// # #[kube(group = "example.com", version = "v1", kind = "Shelf", namespaced)]
/// # pub struct ShelfSpec { pub books: String } }
/// # mod v2 { #[derive(kube::CustomResource, serde::Deserialize, serde::Serialize, Clone, Debug, schemars::JsonSchema)]
/// # #[kube(group = "example.com", version = "v2", kind = "Shelf", namespaced)]
/// # pub struct ShelfSpec { pub books: Vec<String> } }
/// use std::convert::Infallible;
///
/// // v1 keeps the books comma-separated, v2 as a list.
/// async fn up(old: v1::Shelf) -> Result<v2::Shelf, Infallible> {
///     let books = old.spec.books.split(',').filter(|b| !b.is_empty()).map(String::from);
///     Ok(v2::Shelf::new("", v2::ShelfSpec { books: books.collect() }))
/// }
/// async fn down(new: v2::Shelf) -> Result<v1::Shelf, Infallible> {
///     Ok(v1::Shelf::new("", v1::ShelfSpec { books: new.spec.books.join(",") }))
/// }
///
/// let conversion = Conversion::new().map(up).map(down);
/// # let _ = conversion;
/// ```
///
/// The converted object always keeps the metadata of the one it was converted from (the API
/// server refuses other changes to it), whatever the function put there; its `apiVersion` and
/// `kind` are the target type's. An object already at the asked version is returned as it is.
/// A CRD with more than two versions needs a function for every pair the API server may ask
/// for (no chaining): usually each version to the storage version and back.
///
/// Everything else is the function's to carry across, `status` included: a status (the
/// operator's conditions among it) that a function drops is missing from that version's view,
/// and, since a write through that version is stored as the function converts it, from the
/// stored object after such a write. The example above has no status to carry.
#[derive(Clone, Default)]
pub struct Conversion {
    maps: HashMap<(String, String), Map>,
}

impl std::fmt::Debug for Conversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut pairs: Vec<_> = self.maps.keys().collect();
        pairs.sort();
        f.debug_struct("Conversion").field("maps", &pairs).finish()
    }
}

impl Conversion {
    /// No conversions yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts objects of `A`'s version to `B`'s with `f`. An error it returns (or a panic)
    /// fails the whole review with its message: the API server then fails the request that
    /// needed the conversion.
    ///
    /// # Panics
    /// If a function from `A`'s version to `B`'s is already registered.
    pub fn map<A, B, F, Fut, E>(mut self, f: F) -> Self
    where
        A: Resource<DynamicType = ()> + DeserializeOwned + Send + 'static,
        B: Resource<DynamicType = ()> + Serialize,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<B, E>> + Send + 'static,
        E: Display,
    {
        let (from, to) = (
            A::api_version(&()).into_owned(),
            B::api_version(&()).into_owned(),
        );
        let kind = B::kind(&()).into_owned();
        let f = Arc::new(f);
        let map: Map = Arc::new(move |object: Value| {
            let (f, to, kind) = (f.clone(), B::api_version(&()).into_owned(), kind.clone());
            async move {
                let metadata = object.get("metadata").cloned();
                let a: A = serde_json::from_value(object).map_err(|e| {
                    format!("cannot read the object as {}: {e}", A::api_version(&()))
                })?;
                let b = guarded(f(a))
                    .await?
                    .map_err(|e| format!("converting to {to}: {e}"))?;
                let mut b = serde_json::to_value(&b).map_err(|e| e.to_string())?;
                let fields = b
                    .as_object_mut()
                    .ok_or("the converted object is not a JSON object")?;
                fields.insert("apiVersion".into(), to.into());
                fields.insert("kind".into(), kind.into());
                fields.insert("metadata".into(), metadata.unwrap_or_default());
                Ok(b)
            }
            .boxed()
        });
        let pair = (from, to);
        assert!(
            !self.maps.contains_key(&pair),
            "a conversion from {} to {} is registered twice",
            pair.0,
            pair.1
        );
        self.maps.insert(pair, map);
        self
    }

    /// Every object of the request at the desired version, in order, or why not.
    async fn convert(&self, request: &ConversionRequest) -> Result<Vec<Value>, String> {
        let to = &request.desired_api_version;
        let mut converted = Vec::with_capacity(request.objects.len());
        for object in &request.objects {
            let from = object
                .get("apiVersion")
                .and_then(Value::as_str)
                .ok_or("an object without apiVersion")?;
            if from == to {
                converted.push(object.clone());
                continue;
            }
            let map = self
                .maps
                .get(&(from.to_string(), to.clone()))
                .ok_or_else(|| format!("no conversion from {from} to {to} is registered"))?;
            converted.push(map(object.clone()).await?);
        }
        Ok(converted)
    }

    pub(super) fn into_route(self) -> Route {
        let conversion = Arc::new(self);
        Arc::new(move |body| {
            let conversion = conversion.clone();
            async move {
                let review: ConversionReview = serde_json::from_slice(&body)
                    .map_err(|e| format!("the body is not a ConversionReview: {e}"))?;
                let request = ConversionRequest::from_review(review)
                    .map_err(|_| "the ConversionReview has no request".to_string())?;
                let result = conversion.convert(&request).await;
                let response = ConversionResponse::for_request(request);
                let response = match result {
                    Ok(objects) => response.success(objects),
                    Err(message) => response.failure(Status::failure(&message, "ConversionFailed")),
                };
                serde_json::to_vec(&response.into_review()).map_err(|e| e.to_string())
            }
            .boxed()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    mod v1 {
        #[derive(
            kube::CustomResource,
            serde::Deserialize,
            serde::Serialize,
            Clone,
            Debug,
            schemars::JsonSchema,
        )]
        #[kube(group = "example.com", version = "v1", kind = "Shelf", namespaced)]
        pub struct ShelfSpec {
            pub books: String,
        }
    }

    mod v2 {
        #[derive(
            kube::CustomResource,
            serde::Deserialize,
            serde::Serialize,
            Clone,
            Debug,
            schemars::JsonSchema,
        )]
        #[kube(group = "example.com", version = "v2", kind = "Shelf", namespaced)]
        pub struct ShelfSpec {
            pub books: Vec<String>,
        }
    }

    async fn up(old: v1::Shelf) -> Result<v2::Shelf, String> {
        if old.spec.books == "fail" {
            return Err("no room".into());
        }
        let books = old.spec.books.split(',').map(String::from).collect();
        Ok(v2::Shelf::new("ignored", v2::ShelfSpec { books }))
    }

    async fn answer(desired: &str, objects: Vec<Value>) -> Value {
        let review = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "request": {"uid": "u1", "desiredAPIVersion": desired, "objects": objects}
        });
        let route = Conversion::new().map(up).into_route();
        let body = route(bytes::Bytes::from(review.to_string())).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn shelf(version: &str, books: Value) -> Value {
        let metadata = json!({"name": "a", "uid": "123", "labels": {"x": "y"}});
        json!({"apiVersion": format!("example.com/{version}"), "kind": "Shelf",
            "metadata": metadata, "spec": {"books": books}})
    }

    #[tokio::test]
    async fn objects_are_converted_in_order_keeping_their_metadata() {
        let already = shelf("v2", json!(["c"]));
        let objects = vec![shelf("v1", json!("a,b")), already.clone()];
        let out = answer("example.com/v2", objects).await;
        assert_eq!(out["response"]["uid"], "u1");
        assert_eq!(out["response"]["result"]["status"], "Success");
        let converted = shelf("v2", json!(["a", "b"]));
        assert_eq!(
            out["response"]["convertedObjects"],
            json!([converted, already])
        );
    }

    #[tokio::test]
    async fn a_missing_conversion_or_a_handler_error_fails_the_review_saying_so() {
        let out = answer("example.com/v1", vec![shelf("v2", json!(["a"]))]).await;
        assert_eq!(out["response"]["result"]["status"], "Failure");
        let message = &out["response"]["result"]["message"];
        assert_eq!(
            message,
            "no conversion from example.com/v2 to example.com/v1 is registered"
        );

        let out = answer("example.com/v2", vec![shelf("v1", json!("fail"))]).await;
        assert_eq!(out["response"]["result"]["status"], "Failure");
        let message = &out["response"]["result"]["message"];
        assert_eq!(message, "converting to example.com/v2: no room");
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_review_is_refused() {
        let route = Conversion::new().into_route();
        let err = route(bytes::Bytes::from_static(b"[]")).await.unwrap_err();
        assert!(
            err.starts_with("the body is not a ConversionReview"),
            "{err}"
        );
    }
}
