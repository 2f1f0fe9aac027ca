//! Adding and removing the runtime's finalizer without races.
//!
//! Both changes are JSON patches guarded by a `test` operation, so they never overwrite a
//! finalizer list someone else changed meanwhile (a blind replace of the list loses other
//! controllers' finalizers), and the finalizer is only added to the exact version of the object
//! that was seen without a `deletionTimestamp`.

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::json;

/// Adds `finalizer` to the object, provided it is still at `resource_version`.
pub(crate) async fn add<K>(api: &Api<K>, obj: &K, finalizer: &str) -> kube::Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let meta = obj.meta();
    let name = meta.name.clone().unwrap_or_default();
    let mut ops = vec![
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version}),
    ];
    if meta.finalizers.as_ref().is_none_or(|f| f.is_empty()) {
        ops.push(json!({"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}));
    } else {
        ops.push(json!({"op": "add", "path": "/metadata/finalizers/-", "value": finalizer}));
    }
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).expect("valid patch");
    api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
}

/// Removes `finalizer` from the object, provided it is still at the position we saw it.
pub(crate) async fn remove<K>(api: &Api<K>, obj: &K, finalizer: &str) -> kube::Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let meta = obj.meta();
    let name = meta.name.clone().unwrap_or_default();
    let Some(index) = meta
        .finalizers
        .iter()
        .flatten()
        .position(|f| f == finalizer)
    else {
        return Ok(None);
    };
    let path = format!("/metadata/finalizers/{index}");
    let ops = json!([
        {"op": "test", "path": path, "value": finalizer},
        {"op": "remove", "path": path},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("valid patch");
    api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map(Some)
}

/// Whether the object carries `finalizer`.
pub(crate) fn has<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.meta()
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == finalizer)
}
