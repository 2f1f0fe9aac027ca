//! Where a case runs: on a fresh embedded API server, or (feature `real`) in a fresh namespace
//! of a shared real kube-apiserver.
//!
//! The crash and lost-response disturbances live in the operator's client (the gate), so they
//! run on either; so does a lagging watch, which a client layer makes on a real server. The
//! embedded server's other faults (random API errors, dropped watch events, watch resets) have
//! no counterpart on a real server, so their variants are skipped there.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;

use super::Variant;
use crate::{ApiServer, Faults, Stats};

/// Objects a real control plane puts into every namespace on its own (`plural`, `name`): not
/// the operator's doing, and absent from the embedded server, so never compared on a real one.
pub(crate) const CONTROL_PLANE: &[(&str, &str)] = &[
    ("configmaps", "kube-root-ca.crt"),
    ("serviceaccounts", "default"),
];

/// Where the explorer runs its cases.
#[derive(Clone, Default)]
pub(crate) enum Backend {
    /// A fresh in-process [`ApiServer`] per case.
    #[default]
    Embedded,
    /// A fresh namespace per case on the real server this configuration reaches.
    #[cfg(feature = "real")]
    Real(Box<kube::Config>),
}

impl Backend {
    /// Why `v` cannot run on this backend, if it cannot.
    #[cfg_attr(not(feature = "real"), allow(unused_variables))]
    pub(crate) fn skips(&self, v: Variant) -> Option<&'static str> {
        match self {
            Backend::Embedded => None,
            #[cfg(feature = "real")]
            Backend::Real(_) => match v {
                // The watch lag of the stale-view variants is made in the operator's client
                // there (see `lag`).
                Variant::Crash
                | Variant::LostResponse
                | Variant::Idle
                | Variant::StaleView
                | Variant::ChildStaleView => None,
                Variant::LostEvents | Variant::ChildLostEvents => {
                    Some("skipped on the real server: event drops are the embedded server's")
                }
                Variant::Random | Variant::RandomLoop => {
                    Some("skipped on the real server: its faults are the embedded server's")
                }
                Variant::ShardHandoff => Some(
                    "skipped on the real server: the replicas' Leases need a namespace of the \
                     case's own server",
                ),
            },
        }
    }

    /// What a watch lag counts: the embedded server's lags by resourceVersions of the whole
    /// server, the client-side one on a real server by events of the lagging stream.
    pub(crate) fn lag_unit(&self) -> &'static str {
        match self {
            Backend::Embedded => "versions",
            #[cfg(feature = "real")]
            Backend::Real(_) => "events",
        }
    }

    /// A server for one case, with `crds` installed and the case's namespace created
    /// (`scenario_ns` on a fresh embedded server; a fresh one on a real server). `guard` bounds
    /// the wait for a real server to serve the CRDs.
    #[cfg_attr(not(feature = "real"), allow(unused_variables))]
    pub(crate) async fn start(
        &self,
        crds: &[CustomResourceDefinition],
        scenario_ns: &str,
        guard: std::time::Duration,
    ) -> anyhow::Result<CaseServer> {
        match self {
            Backend::Embedded => {
                let server = ApiServer::start().await?;
                install(&server.client(), crds, scenario_ns).await?;
                Ok(CaseServer::Embedded(server))
            }
            #[cfg(feature = "real")]
            Backend::Real(config) => Ok(CaseServer::Real(Box::new(
                real::start(config, crds, guard).await?,
            ))),
        }
    }
}

/// The server of one case.
pub(crate) enum CaseServer {
    Embedded(ApiServer),
    #[cfg(feature = "real")]
    Real(Box<real::RealCase>),
}

impl CaseServer {
    /// A client configuration for this case (on a real server, defaulting to its namespace).
    pub(crate) fn config(&self) -> kube::Config {
        match self {
            CaseServer::Embedded(s) => s.config(),
            #[cfg(feature = "real")]
            CaseServer::Real(r) => r.config.clone(),
        }
    }

    pub(crate) fn client(&self) -> kube::Client {
        match self {
            CaseServer::Embedded(s) => s.client(),
            #[cfg(feature = "real")]
            CaseServer::Real(r) => kube::Client::try_from(r.config.clone())
                .expect("a client from a configuration that worked"),
        }
    }

    /// The namespace the case's objects live in when it is not the scenario's own (a real
    /// server, shared by every case).
    pub(crate) fn case_namespace(&self) -> Option<&str> {
        match self {
            CaseServer::Embedded(_) => None,
            #[cfg(feature = "real")]
            CaseServer::Real(r) => Some(&r.namespace),
        }
    }

    /// The embedded server's resourceVersion: it tells the explorer that nothing changed since
    /// it last read (a real server's changes by others would never let it say so).
    pub(crate) fn resource_version(&self) -> Option<u64> {
        match self {
            CaseServer::Embedded(s) => Some(s.resource_version()),
            #[cfg(feature = "real")]
            CaseServer::Real(_) => None,
        }
    }

    pub(crate) fn stats(&self) -> Option<Stats> {
        match self {
            CaseServer::Embedded(s) => Some(s.stats()),
            #[cfg(feature = "real")]
            CaseServer::Real(_) => None,
        }
    }

    pub(crate) fn faults(&self) -> Option<Faults> {
        match self {
            CaseServer::Embedded(s) => Some(s.faults()),
            #[cfg(feature = "real")]
            CaseServer::Real(_) => None,
        }
    }

    /// Ends the case: stops an embedded server, deletes a real server's case namespace.
    pub(crate) async fn shutdown(self) {
        match self {
            CaseServer::Embedded(s) => s.shutdown().await,
            #[cfg(feature = "real")]
            CaseServer::Real(r) => r.delete().await,
        }
    }
}

/// Installs `crds` and creates namespace `ns` on a fresh embedded server.
async fn install(
    admin: &kube::Client,
    crds: &[CustomResourceDefinition],
    ns: &str,
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    // The embedded server establishes CRDs within the create, so no wait is needed.
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in crds {
        api.create(&Default::default(), crd).await?;
    }
    if ns != "default" {
        let nss: Api<Namespace> = Api::all(admin.clone());
        let mut n = Namespace::default();
        n.metadata.name = Some(ns.into());
        nss.create(&Default::default(), &n).await?;
    }
    Ok(())
}

#[cfg(feature = "real")]
pub(crate) mod real {
    //! A case in a namespace of its own on a shared real kube-apiserver.

    use std::time::{Duration, Instant};

    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
    use kube::core::ApiResource;

    pub(crate) struct RealCase {
        pub config: kube::Config,
        pub namespace: String,
    }

    /// Installs `crds` (an existing one is fine: they are shared by the whole server), waits
    /// until each is served, and creates a fresh namespace for the case.
    pub(crate) async fn start(
        config: &kube::Config,
        crds: &[CustomResourceDefinition],
        guard: Duration,
    ) -> anyhow::Result<RealCase> {
        let admin = kube::Client::try_from(config.clone())?;
        let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
        for crd in crds {
            match api.create(&PostParams::default(), crd).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        for crd in crds {
            served(&admin, crd, guard).await?;
        }
        let name = format!(
            "explorer-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let nss: Api<Namespace> = Api::all(admin);
        let mut n = Namespace::default();
        n.metadata.name = Some(name.clone());
        nss.create(&PostParams::default(), &n).await?;
        let mut config = config.clone();
        config.default_namespace = name.clone();
        Ok(RealCase {
            config,
            namespace: name,
        })
    }

    /// Waits until the server lists objects of `crd`: it answers 404 for a moment after the
    /// create, until it has established the definition and its handler has picked it up.
    async fn served(
        client: &kube::Client,
        crd: &CustomResourceDefinition,
        guard: Duration,
    ) -> anyhow::Result<()> {
        let spec = &crd.spec;
        let version = spec
            .versions
            .iter()
            .find(|v| v.served)
            .ok_or_else(|| anyhow::anyhow!("CRD {} serves no version", spec.names.plural))?;
        let ar = ApiResource {
            group: spec.group.clone(),
            version: version.name.clone(),
            api_version: format!("{}/{}", spec.group, version.name),
            kind: spec.names.kind.clone(),
            plural: spec.names.plural.clone(),
        };
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let deadline = Instant::now() + guard;
        loop {
            match api.list(&ListParams::default().limit(1)).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    anyhow::bail!("CRD {}.{} not served: {e}", ar.plural, ar.group)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    impl RealCase {
        /// Deletes the case's namespace (without waiting: the namespace controller empties it
        /// in the background). The primary objects' finalizers are removed first by the
        /// driver, as no operator is left to.
        pub(crate) async fn delete(self) {
            let Ok(client) = kube::Client::try_from(self.config) else {
                return;
            };
            let nss: Api<Namespace> = Api::all(client);
            let _ = nss.delete(&self.namespace, &DeleteParams::default()).await;
        }
    }
}
