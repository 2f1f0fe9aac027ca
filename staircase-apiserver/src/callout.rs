//! Calls out to webhooks (admission and conversion): one HTTPS POST of a review to a
//! `clientConfig.url`, trusting only the configuration's `caBundle`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// POSTs `review` to the webhook over HTTPS, trusting only its `caBundle`, and returns the
/// review it answers; errors are worded as kube-apiserver words a failed call.
pub async fn post(client_config: &Value, review: &Value) -> Result<Value, String> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

    let url = match (client_config["url"].as_str(), client_config.get("service")) {
        (Some(url), _) => url,
        (None, Some(s)) => {
            return Err(format!(
                "the embedded API server cannot call service {}/{} (a Service routes nowhere here): give the webhook a clientConfig.url",
                s["namespace"].as_str().unwrap_or(""),
                s["name"].as_str().unwrap_or("")
            ));
        }
        (None, None) => return Err("the webhook has neither clientConfig.url nor .service".into()),
    };
    let uri: http::Uri = url.parse().map_err(|e| format!("bad url {url:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("url {url:?}: only https is supported"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("url {url:?} has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let mut roots = rustls::RootCertStore::empty();
    if let Some(bundle) = client_config["caBundle"].as_str() {
        let pem: k8s_openapi::ByteString = serde_json::from_value(json!(bundle))
            .map_err(|e| format!("caBundle is not base64: {e}"))?;
        for cert in CertificateDer::pem_slice_iter(&pem.0) {
            let cert = cert.map_err(|e| format!("caBundle: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("caBundle certificate: {e}"))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let post = |e: &dyn std::fmt::Display| format!("Post {url:?}: {e}");
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| post(&e))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(server_name, tcp)
        .await
        .map_err(|e| post(&e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| post(&e))?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::post(path)
        .header(
            http::header::HOST,
            uri.authority().map_or("", |a| a.as_str()),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(review.to_string())))
        .map_err(|e| post(&e))?;
    let response = sender.send_request(request).await.map_err(|e| post(&e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| post(&e))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "the server responded with the status code {} but did not return more information: {}",
            status.as_u16(),
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("the response is not a review: {e}"))
}
