//! The runtime of [staircase](https://docs.rs/staircase): it drives step-based reconcilers on
//! `kube-runtime`, one modification per run, and enforces that rule.
//!
//! Most users depend on the `staircase` facade crate and never name this one. Read it top-down:
//! - [`outcome`]: what a step reports; [`error`]: what it fails with;
//! - [`step`]: the `Step` trait `#[step]` implements; [`context`]: what a step gets;
//! - [`chain`]: the typed list of steps `staircase!` builds; [`mod@staircase`]: steps + cleanup;
//! - [`writes`]: counting each step's writes; [`run`]: what a run did;
//! - [`runner`]: one run over one object; [`operator`]: the loop on kube-runtime;
//!   [`relist`]: a watch cache that can take a relist in place;
//! - [`mod@children`]: the declarative children step; [`external`]: idempotent external calls;
//! - [`status`], `finalizer`, [`backoff`], [`config`]: the pieces the runner uses;
//! - production: [`events`], [`metrics`], [`health`] and [`server`], [`leader`], [`shutdown`],
//!   [`crds`], [`preflight`] (see `docs/production.md`).
#![warn(missing_docs)]

pub mod backoff;
pub mod chain;
pub mod children;
pub mod config;
pub mod context;
pub mod crds;
mod decode;
pub mod error;
pub mod events;
pub mod external;
mod finalizer;
pub mod health;
pub mod leader;
mod memory;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod operator;
pub mod outcome;
mod own_path;
pub mod preflight;
pub mod relist;
pub mod run;
pub mod runner;
#[cfg(feature = "server")]
pub mod server;
pub mod shutdown;
mod spans;
pub mod staircase;
pub mod status;
pub mod step;
pub mod writes;

pub use backoff::Backoff;
pub use chain::{Stairs, Start, Then};
pub use children::{Children, Strategy, children};
pub use config::{ConfigError, OperatorConfig, Relist, StatusUpdates};
pub use context::{ApiScope, Context, RunInfo};
pub use error::{Error, Result, Rule, RuleViolation};
pub use health::{Health, Leadership};
pub use leader::LeaderElection;
#[cfg(feature = "metrics")]
pub use metrics::Metrics;
pub use operator::{Operator, Watchable};
pub use outcome::{Outcome, OutcomeKind};
pub use preflight::PreflightError;
pub use run::{RulePolicy, RunEnd, RunReport, StepRecord};
pub use runner::NextRun;
pub use staircase::{DEFAULT_FINALIZER, Reconciler, Staircase};
pub use status::{HasStepStatus, StepStatus};
pub use step::{ForResource, Step, StepInfo, StepReturn, TakesData, WithState};
pub use writes::{OperatorClient, Write};
