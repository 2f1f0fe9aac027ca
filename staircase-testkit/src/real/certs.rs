//! Certificates for the real server, made with the `openssl` command-line tool: a CA, a serving
//! certificate for 127.0.0.1/localhost signed by it, and a service-account signing key pair.
//! All keys are ECDSA P-256 (fast to generate; accepted by Go's TLS stack, rustls and the
//! service-account token signer).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::RealError;

/// The files written by [`generate`].
#[derive(Debug, Clone)]
pub struct Certs {
    /// The CA certificate (PEM) that signed the serving certificate; clients trust it.
    pub ca_crt: PathBuf,
    /// The serving certificate (PEM) for `127.0.0.1` and `localhost`.
    pub serving_crt: PathBuf,
    /// The serving certificate's private key (PEM).
    pub serving_key: PathBuf,
    /// The service-account token signing key (PEM, private).
    pub sa_key: PathBuf,
    /// The service-account token verification key (PEM, public).
    pub sa_pub: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), RealError> {
    let out = Command::new("openssl").args(args).current_dir(dir).output().map_err(|e| {
        RealError::Start(format!(
            "cannot run `openssl` ({e}); install it (apt-get install openssl) or run bash scripts/real-apiserver/build.sh"
        ))
    })?;
    if !out.status.success() {
        return Err(RealError::Start(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// Writes a fresh CA, serving certificate and service-account key pair into `dir`.
pub fn generate(dir: &Path) -> Result<Certs, RealError> {
    std::fs::write(
        dir.join("serving.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1\n",
    )
    .map_err(|e| RealError::Start(format!("write serving.ext: {e}")))?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=staircase-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca)?;
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "serving.key",
        "-out",
        "serving.csr",
        "-subj",
        "/CN=kube-apiserver",
    ]);
    openssl(dir, &csr)?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "serving.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "serving.crt",
            "-days",
            "3650",
            "-extfile",
            "serving.ext",
        ],
    )?;
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "sa.key",
        ],
    )?;
    openssl(dir, &["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(Certs {
        ca_crt: dir.join("ca.crt"),
        serving_crt: dir.join("serving.crt"),
        serving_key: dir.join("serving.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
    })
}
