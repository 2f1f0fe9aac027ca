//! Conformance suite against the real kube-apiserver v1.37.2: the cases of
//! `conformance/cases.rs`, unchanged, each in a namespace of its own on the server shared by this
//! test binary (`staircase_testkit::real::RealApiServer::shared`, with etcd and
//! kube-controller-manager).
//!
//! Without the binaries every case prints how to build them (`bash
//! scripts/real-apiserver/build.sh`) and passes; under `CI=true` it fails instead. Cases about
//! the embedded server itself (fault injection, stats, shutdown, kubectl against it) return early
//! here. The agreement of both targets is published in staircase-apiserver's crate docs ("Fidelity
//! against a real kube-apiserver").

#[path = "conformance/cases.rs"]
mod cases;

/// Always the real server.
fn backend() -> cases::Backend {
    cases::Backend::Real
}
