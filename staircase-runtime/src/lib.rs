//! The runtime of [staircase](https://docs.rs/staircase): it drives step-based reconcilers on
//! `kube-runtime`, one modification per run, and enforces that rule.
//!
//! Most users depend on the `staircase` facade crate, which re-exports everything here at the
//! same paths. The root holds what writing and running an operator takes:
//! - authoring: [`Outcome`], [`Context`], [`Error`]/[`Result`], the [`Staircase`] that
//!   `staircase!` builds and the [`Reconciler`] trait that names it;
//! - running: [`Operator`], [`OperatorConfig`], [`Backoff`], [`LeaderElection`], and what a run
//!   reports ([`RunReport`], [`RunEnd`]);
//! - the status the runtime keeps: [`HasStepStatus`], [`StepStatus`].
//!
//! Modules, each one job:
//! - [`mod@children`]: the declarative children step;
//! - [`apply`]: server-side apply of one object, only when it would change something;
//! - [`external`]: idempotent calls to services outside Kubernetes;
//! - [`status`]: the condition types the runtime writes;
//! - [`events`], [`metrics`], [`server`], [`logging`], `otel`: what an operator publishes;
//! - [`webhook`]: admission and conversion webhooks, with their certificates;
//! - [`crds`], [`preflight`]: installing the CRD, and the checks before running
//!   (see `docs/production.md`);
//! - [`pause`], [`explain`], [`replay`]: operating a running staircase: stop an object's runs
//!   before a step; say what the next run would do, changing nothing; record runs and replay
//!   one without a cluster;
//! - [`fight`]: another actor that keeps undoing a step's modification, found and reported;
//! - [`shard`]: the objects split across replicas, each running its share.
#![warn(missing_docs)]

pub mod apply;
mod audit;
mod backoff;
mod cache;
mod chain;
pub mod children;
mod config;
mod context;
pub mod crds;
mod decode;
mod error;
pub mod events;
pub mod explain;
pub mod external;
pub mod fight;
mod finalizer;
mod health;
mod leader;
#[cfg(feature = "logging")]
pub mod logging;
mod memory;
#[cfg(feature = "metrics")]
pub mod metrics;
mod operator;
#[cfg(feature = "otel")]
pub mod otel;
mod outcome;
mod own_path;
pub mod pause;
pub mod preflight;
#[doc(hidden)]
pub mod relist;
pub mod replay;
mod retry;
#[cfg(feature = "server")]
mod routes;
mod run;
mod runner;
#[cfg(feature = "server")]
pub mod server;
pub mod shard;
mod shutdown;
mod spans;
mod staircase;
pub mod status;
mod step;
mod step_status;
mod streaming;
#[cfg(feature = "webhooks")]
pub mod webhook;
mod writes;

pub use backoff::Backoff;
pub use chain::{Stairs, Start, Then};
pub use config::{ConfigError, InitialList, OperatorConfig, Relist, StatusUpdates};
pub use context::{ApiScope, Context, RunInfo};
pub use error::{Error, Result, Rule, RuleViolation};
pub use health::{Health, Leadership};
pub use leader::LeaderElection;
pub use operator::{Operator, Watchable};
pub use outcome::{Outcome, OutcomeKind};
pub use run::{RulePolicy, RunEnd, RunReport, StepRecord};
pub use runner::NextRun;
pub use staircase::{DEFAULT_FINALIZER, Reconciler, Staircase};
pub use step_status::{HasStepStatus, LendsStepStatus, StepStatus};
pub use writes::{OperatorClient, Write};

/// What the `#[step]` and `staircase!` expansions use. Not public API: may change in any
/// release.
#[doc(hidden)]
pub mod __private {
    pub use crate::step::{ForResource, Step, StepInfo, StepReturn, TakesData, WithState};
}
