//! Conformance suite against the embedded server: the cases of `conformance/cases.rs` (the
//! API semantics an operator relies on, through `kube::Api`, `kube::Discovery` and
//! `kube::runtime::watcher` over HTTP), each against a fresh in-process
//! `staircase_testkit::ApiServer`.
//!
//! The same cases run against the real kube-apiserver v1.37.2 in the `conformance_real` target.
//! This target can be pointed elsewhere too: `STAIRCASE_CONFORMANCE_TARGET=real` runs it against
//! the real server (like `conformance_real`), `STAIRCASE_CONFORMANCE_KUBECONFIG=<path>` against
//! any cluster (cases that need the embedded server's fault injection or stats return early
//! there).

#[path = "conformance/cases.rs"]
mod cases;

/// The embedded server, unless the environment picks another backend.
fn backend() -> cases::Backend {
    if let Ok(path) = std::env::var("STAIRCASE_CONFORMANCE_KUBECONFIG") {
        return cases::Backend::Kubeconfig(path);
    }
    match std::env::var("STAIRCASE_CONFORMANCE_TARGET").as_deref() {
        Ok("real") => cases::Backend::Real,
        Ok("embedded") | Err(_) => cases::Backend::Embedded,
        Ok(other) => {
            panic!("STAIRCASE_CONFORMANCE_TARGET={other:?}: expected `embedded` or `real`")
        }
    }
}
