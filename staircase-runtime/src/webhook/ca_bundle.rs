//! The `caBundle` fields that tell the API server which CA signed the webhook's certificate.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::WebhookError;

/// An object whose `caBundle` the operator keeps (see [`Webhooks::keep_ca_bundle`](super::Webhooks::keep_ca_bundle)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaBundle {
    /// Every webhook of the `ValidatingWebhookConfiguration` of this name.
    Validating(String),
    /// Every webhook of the `MutatingWebhookConfiguration` of this name.
    Mutating(String),
    /// `spec.conversion.webhook.clientConfig` of the `CustomResourceDefinition` of this name
    /// (e.g. `foos.example.com`); its conversion strategy must be `Webhook`.
    Crd(String),
}

impl CaBundle {
    /// The `ValidatingWebhookConfiguration` named `name`.
    pub fn validating(name: impl Into<String>) -> Self {
        CaBundle::Validating(name.into())
    }

    /// The `MutatingWebhookConfiguration` named `name`.
    pub fn mutating(name: impl Into<String>) -> Self {
        CaBundle::Mutating(name.into())
    }

    /// The `CustomResourceDefinition` named `name`.
    pub fn crd(name: impl Into<String>) -> Self {
        CaBundle::Crd(name.into())
    }

    fn describe(&self) -> String {
        match self {
            CaBundle::Validating(n) => format!("ValidatingWebhookConfiguration {n}"),
            CaBundle::Mutating(n) => format!("MutatingWebhookConfiguration {n}"),
            CaBundle::Crd(n) => format!("CustomResourceDefinition {n}"),
        }
    }

    /// Sets the caBundle to `pem` where it differs.
    pub(super) async fn write(&self, client: &kube::Client, pem: &str) -> Result<(), WebhookError> {
        let err = |message: String| WebhookError::CaBundle {
            target: self.describe(),
            message,
        };
        let bundle = ByteString(pem.as_bytes().to_vec());
        // Read, set every webhook's caBundle, replace: a conflict (someone else wrote in
        // between) reads again.
        for _ in 0..5 {
            let result = match self {
                CaBundle::Validating(name) => {
                    let api = Api::all(client.clone());
                    replace_bundles(api, name, &bundle, validating_bundles).await
                }
                CaBundle::Mutating(name) => {
                    let api = Api::all(client.clone());
                    replace_bundles(api, name, &bundle, mutating_bundles).await
                }
                CaBundle::Crd(name) => {
                    let api = Api::<CustomResourceDefinition>::all(client.clone());
                    let crd = api.get(name).await.map_err(|e| err(e.to_string()))?;
                    let conversion = crd.spec.conversion.as_ref();
                    let Some(hook) = conversion.and_then(|c| c.webhook.as_ref()) else {
                        return Err(err(
                            "its spec.conversion has no webhook (set strategy: Webhook and \
                             webhook.clientConfig)"
                                .into(),
                        ));
                    };
                    let current = hook
                        .client_config
                        .as_ref()
                        .and_then(|c| c.ca_bundle.as_ref());
                    if current == Some(&bundle) {
                        return Ok(());
                    }
                    // A merge patch leaves the rest of the stanza (url or service) alone.
                    let patch = serde_json::json!({"spec": {"conversion": {"webhook": {
                        "clientConfig": {"caBundle": bundle}}}}});
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(drop)
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(err(e.to_string())),
            }
        }
        Err(err("conflicting writes, five times in a row".into()))
    }
}

/// Reads the webhook configuration `name`, sets the caBundle of every webhook `bundles` gives,
/// and replaces it when one changed.
async fn replace_bundles<T>(
    api: Api<T>,
    name: &str,
    bundle: &ByteString,
    bundles: fn(&mut T) -> Vec<&mut Option<ByteString>>,
) -> kube::Result<()>
where
    T: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut c = api.get(name).await?;
    if !set_all(bundles(&mut c).into_iter(), bundle) {
        return Ok(());
    }
    api.replace(name, &PostParams::default(), &c)
        .await
        .map(drop)
}

fn validating_bundles(c: &mut ValidatingWebhookConfiguration) -> Vec<&mut Option<ByteString>> {
    let hooks = c.webhooks.iter_mut().flatten();
    hooks.map(|w| &mut w.client_config.ca_bundle).collect()
}

fn mutating_bundles(c: &mut MutatingWebhookConfiguration) -> Vec<&mut Option<ByteString>> {
    let hooks = c.webhooks.iter_mut().flatten();
    hooks.map(|w| &mut w.client_config.ca_bundle).collect()
}

/// Sets each field to `bundle`; whether any changed.
fn set_all<'a>(
    fields: impl Iterator<Item = &'a mut Option<ByteString>>,
    bundle: &ByteString,
) -> bool {
    let mut changed = false;
    for field in fields {
        if field.as_ref() != Some(bundle) {
            *field = Some(bundle.clone());
            changed = true;
        }
    }
    changed
}
