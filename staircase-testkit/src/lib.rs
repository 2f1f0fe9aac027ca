//! Testing staircase operators: the in-process API server, the crash-anywhere explorer and a
//! harness for the genuine kube-apiserver.
//!
//! * **The in-process API server** is the crate [`staircase_apiserver`], which any kube-rs
//!   project can use on its own; its crate docs say what it serves, how close it is to a real
//!   kube-apiserver and how to run it as a process. This crate re-exports what tests use, so a
//!   staircase operator's tests need this one dev-dependency:
//!
//!   ```no_run
//!   use staircase_testkit::{ApiServer, Verb};
//!
//!   # async fn demo() -> std::io::Result<()> {
//!   let server = ApiServer::start().await?; // 127.0.0.1, a free port
//!   let client: kube::Client = server.client();
//!   // ... run the operator with `client`, then assert on what it asked for:
//!   assert_eq!(server.stats().count(Verb::Create), 0);
//!   # Ok(())
//!   # }
//!   ```
//!
//! * **The explorer** (feature `explorer`, module `explorer`; `cargo doc --features explorer`
//!   documents it) runs a staircase operator under
//!   crashes after any write, lost responses, stale and lossy watches and random faults, and
//!   compares every end state with a clean run.
//! * **The real-apiserver harness** (feature `real`, module `real`) starts etcd,
//!   kube-apiserver and kube-controller-manager as child processes and hands out clients and
//!   namespaces, for tests that must hold against the real server. It speaks HTTPS through
//!   rustls with ring, which the crate needs only with this feature.
//!
//! The conformance suite of this crate (`tests/conformance/cases.rs`) runs the same cases against
//! both servers; the agreement and the remaining differences are listed in
//! [`staircase_apiserver`]'s crate docs ("Fidelity against a real kube-apiserver").
#![warn(missing_docs)]

#[cfg(feature = "explorer")]
pub mod explorer;
#[cfg(feature = "real")]
pub mod real;

// The API server's items keep their single documented home in `staircase_apiserver`: shown as
// re-exports here (not inlined), they link there instead of being documented twice, while
// `staircase_testkit::ApiServer` and the other paths tests use keep working.
#[doc(no_inline)]
pub use staircase_apiserver::{
    ApiServer, ApiServerBuilder, Fault, FaultAction, FaultId, Faults, RequestRecord, Stats, Verb,
    patch, schema,
};
