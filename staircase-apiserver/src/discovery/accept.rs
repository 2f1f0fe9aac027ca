//! Whether an `Accept` header asks `/api` or `/apis` for the aggregated discovery document, decided
//! as kube-apiserver 1.37 decides it.
//!
//! kube-apiserver serves the aggregated document when any clause of the header names
//! `g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList` on a media type it can write, whatever
//! the clause's position or `q`: a clause without those parameters never selects the aggregated
//! handler, so a trailing plain `application/json` only matters when no clause asks for it.
//! `v2beta1` is no longer served (feature `AggregatedDiscoveryRemoveBetaType`, on by default), so
//! a client offering v2beta1 and plain JSON gets the legacy document.

/// The `Content-Type` of an aggregated discovery response, exactly as kube-apiserver 1.37 sends it.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether `accept` selects the aggregated discovery document (v2, as JSON).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(clause_wants_aggregated)
}

fn clause_wants_aggregated(clause: &str) -> bool {
    let mut parts = clause.split(';');
    let range = parts.next().unwrap_or("").trim();
    // Only JSON is written here; kube-apiserver would also answer YAML, protobuf and CBOR clauses.
    if !matches!(range, "application/json" | "application/*" | "*/*") {
        return false;
    }
    let (mut g, mut v, mut kind) = (None, None, None);
    for p in parts {
        let Some((key, value)) = p.split_once('=') else {
            continue;
        };
        match key.trim() {
            "g" => g = Some(value.trim()),
            "v" => v = Some(value.trim()),
            "as" => kind = Some(value.trim()),
            // kube-apiserver turns down clauses asking for another stream or a server version.
            "stream" if !matches!(value.trim(), "" | "watch") => return false,
            "sv" if !value.trim().is_empty() => return false,
            _ => {}
        }
    }
    g == Some("apidiscovery.k8s.io") && v == Some("v2") && kind == Some("APIGroupDiscoveryList")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        // What client-go and kube-rs send.
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(wants_aggregated(
            "application/json, application/json; v=v2; g=apidiscovery.k8s.io; as=APIGroupDiscoveryList;profile=nopeer"
        ));
        assert!(wants_aggregated(
            "*/*;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
        assert!(!wants_aggregated(""));
        assert!(!wants_aggregated("application/json"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated(
            "application/yaml;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupList"
        ));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;stream=lines"
        ));
    }
}
