//! The integration suites that run against the embedded API server, one module per file, linked
//! into a single test binary: on a small machine each test binary's link costs seconds. The slow
//! explorer suite and the real-apiserver suite (`real_e2e`) stay binaries of their own.
//! `webhooks` and `thermostat` run against the embedded API server and, where the real
//! kube-apiserver is built, against it too (those tests skip without it).
//!
//! Run one suite with a filter on its module: `cargo test -p staircase-tests --test integration
//! production::`.

mod cache;
mod children;
mod deploy;
mod endpoint;
mod examples;
mod external;
mod fleet;
mod leader;
mod mirror;
mod operating;
mod production;
mod quota;
mod rules;
mod runtime;
mod shard;
mod thermostat;
mod ticket;
mod webhooks;
