//! An operator whose resource has two served versions and three webhooks: a `Shelf` lists
//! books, as one comma-separated string in `v1` and as a list in `v2` (stored). A conversion
//! webhook maps between the two, a validating one refuses a shelf of more than
//! [`CAPACITY`] books, a mutating one sorts the books and drops repeats. The operator itself
//! keeps a ConfigMap `<name>-books` with one book per line.
//!
//! `examples/shelf_operator.rs` runs it; `deploy/shelf/` deploys it.

use std::collections::BTreeMap;
use std::convert::Infallible;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition, WebhookClientConfig, WebhookConversion,
};
use kube::core::admission::AdmissionRequest;
use kube::core::crd::merge_crds;
use kube::{CustomResourceExt, Resource};
use staircase::prelude::*;
use staircase::webhook::{Conversion, Tls, Verdict, Webhooks};

/// The most books a shelf holds.
pub const CAPACITY: usize = 10;

/// The first version: books as one comma-separated string.
pub mod v1 {
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// A shelf, as `v1` has it.
    #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
    #[kube(
        group = "demo.staircase.rs",
        version = "v1",
        kind = "Shelf",
        plural = "shelves",
        namespaced
    )]
    pub struct ShelfSpec {
        /// Titles, separated by commas.
        pub books: String,
    }
}

/// The stored version: books as a list.
pub mod v2 {
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};
    use staircase::StepStatus;

    /// A shelf, as `v2` has it.
    #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
    #[kube(
        group = "demo.staircase.rs",
        version = "v2",
        kind = "Shelf",
        plural = "shelves",
        namespaced
    )]
    #[kube(status = "StepStatus")]
    pub struct ShelfSpec {
        /// Titles.
        pub books: Vec<String>,
    }
}

/// The CRD: both versions served, `v2` stored, converted by the webhook at `client_config`
/// (its `caBundle` is kept by the operator).
pub fn crd(client_config: WebhookClientConfig) -> CustomResourceDefinition {
    let mut crd = merge_crds(vec![v1::Shelf::crd(), v2::Shelf::crd()], "v2")
        .expect("two versions of one kind");
    crd.spec.conversion = Some(CustomResourceConversion {
        strategy: "Webhook".into(),
        webhook: Some(WebhookConversion {
            client_config: Some(client_config),
            conversion_review_versions: vec!["v1".into()],
        }),
    });
    crd
}

/// Validating: at most [`CAPACITY`] books, none with an empty title.
pub async fn validate(req: AdmissionRequest<v2::Shelf>) -> Result<Verdict, Infallible> {
    let Some(shelf) = req.object else {
        return Ok(Verdict::Allow); // a deletion
    };
    let books = &shelf.spec.books;
    Ok(if books.len() > CAPACITY {
        Verdict::deny(format!(
            "a shelf holds at most {CAPACITY} books, this one has {}",
            books.len()
        ))
    } else if books.iter().any(|b| b.trim().is_empty()) {
        Verdict::deny("a book needs a title")
    } else {
        Verdict::Allow
    })
}

/// Mutating: the books sorted, each once.
pub async fn tidy(
    mut shelf: v2::Shelf,
    _req: AdmissionRequest<v2::Shelf>,
) -> Result<v2::Shelf, Infallible> {
    shelf.spec.books.sort();
    shelf.spec.books.dedup();
    Ok(shelf)
}

/// Conversion from `v1` up to `v2`.
pub async fn up(old: v1::Shelf) -> Result<v2::Shelf, Infallible> {
    let books = old
        .spec
        .books
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty());
    let spec = v2::ShelfSpec {
        books: books.map(String::from).collect(),
    };
    // The metadata is the original's whatever is set here (see `Conversion`).
    Ok(v2::Shelf::new("", spec))
}

/// Conversion from `v2` down to `v1`.
pub async fn down(new: v2::Shelf) -> Result<v1::Shelf, Infallible> {
    let spec = v1::ShelfSpec {
        books: new.spec.books.join(","),
    };
    Ok(v1::Shelf::new("", spec))
}

/// The paths the webhooks are served at.
pub const VALIDATE: &str = "/validate-shelves";
/// See [`VALIDATE`].
pub const MUTATE: &str = "/mutate-shelves";
/// See [`VALIDATE`].
pub const CONVERT: &str = "/convert-shelves";

/// The three webhooks, served with `tls`.
pub fn webhooks(tls: Tls) -> Webhooks {
    Webhooks::new(tls)
        .validate(VALIDATE, validate)
        .mutate(MUTATE, tidy)
        .convert(CONVERT, Conversion::new().map(up).map(down))
}

/// The ConfigMap `<name>-books` lists the books, one per line.
#[step]
async fn ensure_index(shelf: &v2::Shelf, ctx: &Context) -> Result<Outcome> {
    let name = format!("{}-books", shelf.name_any());
    let data = BTreeMap::from([("books".to_string(), shelf.spec.books.join("\n"))]);
    match ctx.get::<ConfigMap>(&name).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    owner_references: shelf.controller_owner_ref(&()).map(|o| vec![o]),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            ctx.api::<ConfigMap>()
                .create(&PostParams::default(), &cm)
                .await?;
            Ok(Outcome::modified(format!("created ConfigMap {name}")))
        }
        Some(cm) if cm.data.as_ref() != Some(&data) => {
            let patch = serde_json::json!({ "data": data });
            ctx.api::<ConfigMap>()
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(Outcome::modified(format!("updated ConfigMap {name}")))
        }
        Some(_) => Ok(Outcome::unchanged()),
    }
}

/// The steps, in the order they run.
pub fn stairs() -> impl Reconciler<v2::Shelf, ()> {
    staircase!(v2::Shelf => [ensure_index])
}
