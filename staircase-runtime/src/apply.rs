//! Server-side apply as one step's modification: apply only when the apply would change something.
//!
//! The kube-rs idiom is to server-side apply the desired object on every reconcile and let the
//! server sort out what changed. In a staircase every write counts: a step that applies and then
//! reports `unchanged` breaks the one-modification rule, and one that always reports `modified`
//! never lets the run go on. [`apply_if_different`] makes the idiom fit: it first decides whether
//! the apply would change anything, and applies only then, as the step's one modification.
//!
//! ```no_run
//! # use staircase_runtime as staircase;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use staircase::apply::{Compare, apply_if_different};
//! use staircase::{Context, Outcome, Result};
//! # use k8s_openapi::api::core::v1::Secret as Foo;
//! # fn desired_config(_: &Foo) -> ConfigMap { ConfigMap::default() }
//!
//! async fn ensure_config(foo: &Foo, ctx: &Context) -> Result<Outcome> {
//!     let desired: ConfigMap = desired_config(foo);
//!     apply_if_different(ctx, &desired, "foo-operator", Compare::Local).await
//! }
//! ```
//!
//! # Guarantees
//! - At most one write: the apply (with `force`, so the operator takes over the fields it sets),
//!   made only when the comparison finds a difference; the outcome is `modified` then (naming
//!   the first differing field), `unchanged` otherwise.
//! - [`Compare::DryRun`] is exact: the API server computes the apply with `dryRun=All` (its
//!   defaulting, normalisation, list merging and webhooks included) and the result is compared
//!   with the live object. It costs one more request per check; the dry run is no write.
//! - [`Compare::Local`] sends nothing to decide: the desired object must be *contained* in the
//!   live one (fields it does not set, such as defaults and other managers' fields, do not
//!   count). It is exact when the server stores each field you set as you wrote it. When it
//!   does not (a quantity written `0.5` is stored `500m`, a defaulted field set to a different
//!   spelling), the apply is made, and if the stored object still differs the step fails with a
//!   permanent error naming the field, so it cannot apply on every run.
//!
//! # Caveats
//! - Ownership is not compared: values equal to the desired ones but owned by another manager
//!   stay theirs until a value differs.
//! - `Compare::DryRun` needs the API server to honour `dryRun=All` for the kind (every built-in
//!   kind and custom resource does; an aggregated API may not).

use std::fmt::Debug;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::children::first_difference;
use crate::context::ApiScope;
use crate::{Context, Error, Outcome, Result};

/// How [`apply_if_different`] decides whether the apply would change anything (see the
/// [module docs](self) for when each is exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// The desired object must be contained in the live one; no request to decide.
    Local,
    /// A `dryRun=All` apply, compared with the live object: exact, one request.
    DryRun,
}

/// Applies `desired` (server-side apply as `manager`, forced) only when that would change the
/// object, and says so as the step's outcome: `modified` (created, or the first differing
/// field) or `unchanged`. The object's namespace is its own `metadata.namespace`, else the
/// context's.
pub async fn apply_if_different<T, S>(
    ctx: &Context<S>,
    desired: &T,
    manager: &str,
    compare: Compare,
) -> Result<Outcome>
where
    T: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
    T::Scope: ApiScope,
{
    let name = desired.meta().name.clone().ok_or_else(|| {
        Error::permanent(anyhow::anyhow!(
            "apply_if_different: the desired {} has no metadata.name",
            T::kind(&())
        ))
    })?;
    let ns = desired.meta().namespace.as_deref().or(ctx.namespace());
    let api: Api<T> = <T::Scope as ApiScope>::api(ctx.client().clone(), ns);
    let what = format!("{} {name}", T::kind(&()));
    let want = serde_json::to_value(desired)?;
    let live = api.get_opt(&name).await?;
    let Some(live) = live else {
        apply(&api, &name, desired, manager).await?;
        return Ok(Outcome::modified(format!("created {what}")));
    };
    let live = serde_json::to_value(&live)?;
    let differs = match compare {
        Compare::Local => first_difference(&want, &live),
        Compare::DryRun => {
            let params = PatchParams::apply(manager).force().dry_run();
            let would = api.patch(&name, &params, &Patch::Apply(desired)).await?;
            changed(&live, &serde_json::to_value(&would)?)
        }
    };
    let Some(path) = differs else {
        return Ok(Outcome::unchanged());
    };
    let written = serde_json::to_value(apply(&api, &name, desired, manager).await?)?;
    if compare == Compare::Local
        && let Some(still) = first_difference(&want, &written)
    {
        return Err(Error::permanent(anyhow::anyhow!(
            "applied {what} but the server stores {still} differently from the desired value \
             (normalised or defaulted): set it as the server stores it, or compare with \
             Compare::DryRun"
        )));
    }
    Ok(Outcome::modified(format!(
        "applied {what} ({path} differed)"
    )))
}

async fn apply<T>(api: &Api<T>, name: &str, desired: &T, manager: &str) -> Result<T>
where
    T: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let params = PatchParams::apply(manager).force();
    Ok(api.patch(name, &params, &Patch::Apply(desired)).await?)
}

/// The first field where the dry-run result differs from the live object, leaving out what a
/// write always changes (`resourceVersion`, `managedFields`) and `generation`, which follows the
/// spec the comparison already covers.
fn changed(live: &Value, would: &Value) -> Option<String> {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in ["resourceVersion", "managedFields", "generation"] {
                m.remove(k);
            }
        }
        v
    };
    let (live, would) = (strip(live), strip(would));
    // Either way round: a field the apply adds, changes or removes.
    first_difference(&would, &live).or_else(|| first_difference(&live, &would))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_dry_run_that_only_moves_the_version_changes_nothing() {
        let live = json!({"metadata": {"name": "a", "resourceVersion": "1",
            "managedFields": [{"manager": "x"}]}, "data": {"k": "v"}});
        let same = json!({"metadata": {"name": "a", "resourceVersion": "2",
            "managedFields": [{"manager": "y"}]}, "data": {"k": "v"}});
        assert_eq!(changed(&live, &same), None);
        let added = json!({"metadata": {"name": "a"}, "data": {"k": "v", "k2": "w"}});
        assert_eq!(changed(&live, &added).as_deref(), Some(".data.k2"));
        let removed = json!({"metadata": {"name": "a"}, "data": {}});
        assert_eq!(changed(&live, &removed).as_deref(), Some(".data.k"));
    }
}
