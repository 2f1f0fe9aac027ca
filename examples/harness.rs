//! What the example demos share: an embedded API server, CRD installation, an operator running in
//! the background with its run trace, and waiting on a condition with a guard timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, CustomResourceExt, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use staircase::RunReport;

/// The longest any demo waits for a condition; a guard against hangs, not a timing assumption.
pub const GUARD: Duration = Duration::from_secs(60);

/// Every run of an operator, as printed lines, shared between the operator and the demo.
pub type Trace = Arc<Mutex<Vec<String>>>;

/// An `on_run` observer that prints each run and appends it to `trace`.
pub fn tracer(trace: Trace, quiet: bool) -> impl Fn(&RunReport) + Send + Sync + 'static {
    move |report| {
        if !quiet {
            println!("  {report}");
        }
        trace.lock().expect("trace").push(report.to_string());
    }
}

/// Installs the CRD of `K` (if missing) and waits until it is Established and served. Returns
/// whether it installed it (`false`: it was there already).
pub async fn install_crd<K: CustomResourceExt + Resource<DynamicType = ()>>(
    client: &Client,
) -> anyhow::Result<bool> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = K::crd();
    let name = crd.name_any();
    let missing = crds.get_opt(&name).await?.is_none();
    if missing {
        crds.create(&PostParams::default(), &crd)
            .await
            .with_context(|| format!("installing the CRD {name}"))?;
    }
    wait(&crds, &name, conditions::is_crd_established()).await?;
    // A real API server may answer 404 for a moment after Established, until its CRD handler
    // picked the definition up: wait until the resource can be listed.
    let api: Api<kube::api::DynamicObject> =
        Api::all_with(client.clone(), &kube::api::ApiResource::erase::<K>(&()));
    let served = async {
        while api
            .list(&kube::api::ListParams::default().limit(1))
            .await
            .is_err()
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(GUARD, served)
        .await
        .with_context(|| format!("{name} was Established but not served within {GUARD:?}"))?;
    Ok(missing)
}

/// Deletes the CRD of `K` (and with it every object of the kind) and waits until it is gone.
pub async fn remove_crd<K: CustomResourceExt>(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = K::crd_name();
    crds.delete(name, &DeleteParams::default())
        .await
        .with_context(|| format!("deleting the CRD {name}"))?;
    gone(&crds, name).await
}

/// Waits until `name` no longer exists, failing after [`GUARD`].
pub async fn gone<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let deleted = async {
        while api.get_opt(name).await?.is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(GUARD, deleted)
        .await
        .with_context(|| format!("{name} was not deleted within {GUARD:?}"))?
}

/// Waits until `cond` holds for `name`, failing after [`GUARD`].
pub async fn wait<K>(api: &Api<K>, name: &str, cond: impl Condition<K>) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::time::timeout(GUARD, await_condition(api.clone(), name, cond))
        .await
        .with_context(|| format!("{name} did not reach the expected state within {GUARD:?}"))??;
    Ok(())
}

/// Runs `operator` (a future built from `Operator::run_until(stop)`) in the background; the
/// returned sender stops it gracefully.
pub fn spawn_until_stopped<F, Fut>(
    run: F,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)
where
    F: FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (stop, stopped) = tokio::sync::oneshot::channel();
    (stop, tokio::spawn(run(stopped)))
}
