//! The serving certificate: generated (and renewed) or read from files (and re-read), with its
//! CA kept in the caBundles.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{CaBundle, WebhookError};

/// Where the webhook server's certificate comes from.
#[derive(Debug, Clone)]
pub struct Tls {
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Generate {
        names: Vec<String>,
        validity: Duration,
    },
    Dir {
        dir: PathBuf,
        check_every: Duration,
    },
}

impl Tls {
    /// A certificate generated at start: a CA of its own signs a serving certificate for
    /// `names`: DNS names (the Service, `<service>.<namespace>.svc`) or IP addresses
    /// (`127.0.0.1` for a webhook the API server calls by URL). Valid for a year; renewed, with
    /// a new CA, when two thirds of that have passed. The CA is what
    /// [`keep_ca_bundle`](super::Webhooks::keep_ca_bundle) writes.
    pub fn generate(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Tls {
            source: Source::Generate {
                names: names.into_iter().map(Into::into).collect(),
                validity: Duration::from_secs(365 * 24 * 3600),
            },
        }
    }

    /// How long a generated certificate is valid (renewed after two thirds of it). No effect
    /// on certificate files.
    pub fn with_validity(mut self, validity: Duration) -> Self {
        if let Source::Generate { validity: v, .. } = &mut self.source {
            *v = validity;
        }
        self
    }

    /// How often certificate files are checked for changes (30 seconds unless set). No effect
    /// on a generated certificate.
    pub fn with_check_interval(mut self, every: Duration) -> Self {
        if let Source::Dir { check_every, .. } = &mut self.source {
            *check_every = every;
        }
        self
    }

    /// The certificate in `dir/tls.crt` (PEM, the chain) and its key in `dir/tls.key`, as a
    /// `kubernetes.io/tls` Secret mounts them (cert-manager's among them). `dir/ca.crt`, when
    /// present, is what `keep_ca_bundle` writes. The files are checked for changes every 30
    /// seconds ([`with_check_interval`](Self::with_check_interval)) and served anew when they
    /// change (a changed `ca.crt` first joins the caBundles, beside the old one, for 10 seconds).
    pub fn from_dir(dir: impl Into<PathBuf>) -> Self {
        Tls {
            source: Source::Dir {
                dir: dir.into(),
                check_every: Duration::from_secs(30),
            },
        }
    }
}

/// A certificate ready to serve, the CA bundle for it, and when to look again.
struct Loaded {
    key: Arc<CertifiedKey>,
    ca: String,
    /// Generated: when to renew. Files: their modification times.
    renew_at: Option<SystemTime>,
    /// Generated: when it expires.
    expires: Option<SystemTime>,
    stamp: Vec<Option<SystemTime>>,
}

fn provider() -> Arc<CryptoProvider> {
    // Explicit, not the process default: an operator may link other rustls providers.
    Arc::new(rustls::crypto::ring::default_provider())
}

fn cert_err(e: impl std::fmt::Display) -> WebhookError {
    WebhookError::Certificate(e.to_string())
}

fn timestamp(t: SystemTime) -> Result<time::OffsetDateTime, WebhookError> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(cert_err)?
        .as_secs();
    time::OffsetDateTime::from_unix_timestamp(secs as i64).map_err(cert_err)
}

fn generate(names: &[String], validity: Duration) -> Result<Loaded, WebhookError> {
    let now = SystemTime::now();
    // Another node's clock may lag ours a little.
    let not_before = timestamp(now - Duration::from_secs(60))?;
    let not_after = timestamp(now + validity)?;

    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "staircase webhook CA");
    (ca.not_before, ca.not_after) = (not_before, not_after);
    let ca_pem = ca.self_signed(&ca_key).map_err(cert_err)?.pem();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(cert_err)?;
    let mut leaf = CertificateParams::new(names.to_vec()).map_err(cert_err)?;
    if let Some(first) = names.first() {
        leaf.distinguished_name.push(DnType::CommonName, first);
    }
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    (leaf.not_before, leaf.not_after) = (not_before, not_after);
    let cert = leaf.signed_by(&key, &issuer).map_err(cert_err)?;
    let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let key =
        CertifiedKey::from_der(vec![cert.der().clone()], der, &provider()).map_err(cert_err)?;
    Ok(Loaded {
        key: Arc::new(key),
        ca: ca_pem,
        renew_at: Some(now + validity * 2 / 3),
        expires: Some(now + validity),
        stamp: Vec::new(),
    })
}

const FILES: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

fn stamp(dir: &Path) -> Vec<Option<SystemTime>> {
    FILES
        .iter()
        .map(|f| {
            std::fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect()
}

fn load(dir: &Path) -> Result<Loaded, WebhookError> {
    let stamp = stamp(dir);
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| WebhookError::CertificateFile {
            path,
            message: e.to_string(),
        })
    };
    let bad = |name: &str, e: &dyn std::fmt::Display| WebhookError::CertificateFile {
        path: dir.join(name),
        message: e.to_string(),
    };
    let crt = read("tls.crt")?;
    let chain = CertificateDer::pem_slice_iter(&crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("tls.crt", &e))?;
    if chain.is_empty() {
        return Err(bad("tls.crt", &"no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("tls.key")?).map_err(|e| bad("tls.key", &e))?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| bad("tls.key", &e))?;
    let ca = match std::fs::read_to_string(dir.join("ca.crt")) {
        Ok(ca) => ca,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(bad("ca.crt", &e)),
    };
    Ok(Loaded {
        key: Arc::new(key),
        ca,
        renew_at: None,
        expires: None,
        stamp,
    })
}

/// How long a new caBundle is given to reach the API servers before the certificate it is for
/// is served (less when the current certificate expires sooner).
const PROPAGATION: Duration = Duration::from_secs(10);

/// Serves whatever certificate is current to each new connection.
#[derive(Debug)]
pub(super) struct Resolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().expect("not poisoned").clone())
    }
}

/// Keeps the certificate current and its CA in the caBundles.
pub(super) struct Keeper {
    source: Source,
    resolver: Arc<Resolver>,
    ca: Arc<RwLock<String>>,
    current: Loaded,
    bundles: Option<(kube::Client, Vec<CaBundle>)>,
}

impl Keeper {
    pub(super) async fn start(
        tls: Tls,
        bundles: Option<(kube::Client, Vec<CaBundle>)>,
    ) -> Result<Keeper, WebhookError> {
        let current = match &tls.source {
            Source::Generate { names, validity } => generate(names, *validity)?,
            Source::Dir { dir, .. } => load(dir)?,
        };
        let keeper = Keeper {
            source: tls.source,
            resolver: Arc::new(Resolver(RwLock::new(current.key.clone()))),
            ca: Arc::new(RwLock::new(current.ca.clone())),
            current,
            bundles,
        };
        keeper.publish(&keeper.current.ca).await?;
        Ok(keeper)
    }

    pub(super) fn resolver(&self) -> Arc<Resolver> {
        self.resolver.clone()
    }

    pub(super) fn ca_bundle(&self) -> Arc<RwLock<String>> {
        self.ca.clone()
    }

    async fn publish(&self, pem: &str) -> Result<(), WebhookError> {
        *self.ca.write().expect("not poisoned") = pem.to_string();
        let Some((client, targets)) = &self.bundles else {
            return Ok(());
        };
        if pem.is_empty() {
            return Ok(());
        }
        for target in targets {
            target.write(client, pem).await?;
        }
        Ok(())
    }

    /// How long the current generated certificate stays valid.
    fn expires_in(&self) -> Duration {
        self.current
            .expires
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .unwrap_or_default()
    }

    /// Renews a generated certificate before it expires; serves changed files.
    pub(super) async fn renew(mut self) {
        loop {
            let next = match &self.source {
                Source::Generate { names, validity } => {
                    let at = self.current.renew_at.expect("generated");
                    let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
                    tokio::time::sleep(wait).await;
                    generate(names, *validity)
                }
                Source::Dir { dir, check_every } => {
                    tokio::time::sleep(*check_every).await;
                    if stamp(dir) == self.current.stamp {
                        continue;
                    }
                    load(dir)
                }
            };
            let next = match next {
                Ok(next) => next,
                Err(e) => {
                    // Files caught mid-update, say: the old certificate stays until they read.
                    tracing::warn!("webhook certificate not renewed: {e}");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            };
            // Both CAs trusted before the new certificate is served: calls already on their way
            // with the old bundle, and those with the new, both verify.
            let bundle = if next.ca.is_empty() || next.ca == self.current.ca {
                next.ca.clone()
            } else {
                format!("{}{}", next.ca, self.current.ca)
            };
            let mut delay = Duration::from_secs(1);
            while let Err(e) = self.publish(&bundle).await {
                tracing::warn!("webhook certificate renewed, caBundle not yet written: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
            if bundle != self.current.ca {
                // Every API server learns the new bundle through its watch of the object: give
                // that a moment before serving a certificate only the new bundle trusts.
                let wait = match self.current.expires {
                    Some(_) => PROPAGATION.min(self.expires_in() / 2),
                    None => PROPAGATION,
                };
                tokio::time::sleep(wait).await;
            }
            *self.resolver.0.write().expect("not poisoned") = next.key.clone();
            tracing::info!("webhook certificate renewed");
            self.current = next;
        }
    }
}
