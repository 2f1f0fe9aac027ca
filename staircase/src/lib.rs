//! # staircase
//!
//! Write Kubernetes operators as **step-based reconcilers**. A *run* is one pass over one object;
//! it executes *steps* in a fixed order. Each step checks one thing and, when it is wrong, fixes
//! it with exactly one modification. After a modification the run stops and the object runs again
//! from the top, where it should find one difference fewer. A crash or an error at any point is
//! harmless: the next run simply continues.
//!
//! ```ignore
//! use staircase::prelude::*;
//!
//! #[step]
//! async fn ensure_config(foo: &Foo, ctx: &Context<App>) -> Result<Outcome> {
//!     // look; if already right: Ok(Outcome::unchanged())
//!     // else make ONE change: Ok(Outcome::modified("created ConfigMap foo-config"))
//! #   Ok(Outcome::unchanged())
//! }
//!
//! let stairs = staircase!(Foo => [ensure_config, ensure_deployment, wait_ready]);
//! Operator::with_state(client, stairs, app).with_status().run().await;
//! ```
//!
//! See the repository README for the full walk-through; the runtime's docs
//! ([`staircase_runtime`]) explain each moving part.
#![warn(missing_docs)]

pub use staircase_macros::{staircase, step};
pub use staircase_runtime::*;

/// Everything a typical operator file needs.
pub mod prelude {
    pub use staircase_macros::{staircase, step};
    pub use staircase_runtime::{
        Context, Error, HasStepStatus, Operator, OperatorConfig, Outcome, Result, RulePolicy,
        RunReport, Staircase, StepStatus,
    };
}

/// Paths used by macro expansions. Not public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use futures::future::BoxFuture;
    pub use staircase_runtime::{
        Context, Error, ForResource, Outcome, Result, Staircase, Start, Step, StepInfo, StepReturn,
        TakesData, WithState,
    };
    pub use std::boxed::Box;
    pub use std::marker::{Send, Sync};
}
