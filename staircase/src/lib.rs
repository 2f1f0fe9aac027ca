#![doc = include_str!("../docs/guide.md")]
#![warn(missing_docs)]

/// Derives [`LendsStepStatus`] for a status struct that embeds the runtime's [`StepStatus`](struct@StepStatus), so
/// that its resource has [`HasStepStatus`] and [`Operator::with_status`] keeps it:
///
/// ```
/// use kube::CustomResource;
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
/// use staircase::prelude::*;
///
/// #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
/// #[kube(group = "example.com", version = "v1", kind = "Foo", namespaced, status = "FooStatus")]
/// pub struct FooSpec {
///     pub message: String,
/// }
///
/// #[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, StepStatus)]
/// pub struct FooStatus {
///     /// `observedGeneration` and the conditions, kept by the runtime.
///     #[serde(flatten)]
///     pub steps: StepStatus,
///     /// A field of your own, written by a step.
///     pub replicas: Option<i32>,
/// }
///
/// fn has_step_status<K: HasStepStatus>() {}
/// has_step_status::<Foo>();
/// ```
///
/// The runtime writes only `observedGeneration` and its conditions, as a merge patch of the
/// status: fields of your own (`replicas` here) keep what your steps wrote. A resource whose
/// status is `StepStatus` itself (`status = "StepStatus"`) needs no derive at all.
pub use staircase_macros::StepStatus;
/// Turns an `async fn` into a step of a staircase.
///
/// ```
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use staircase::prelude::*;
/// # use k8s_openapi::api::core::v1::Secret as Foo;
/// # #[derive(Clone)] struct App;
///
/// #[step]
/// async fn ensure_config(foo: &Foo, ctx: &Context<App>) -> Result<Outcome> {
///     // look; if already right:
///     Ok(Outcome::unchanged())
///     // else make ONE change: Ok(Outcome::modified("created ConfigMap foo-config"))
/// }
///
/// // A step can hand data to later steps, which take it as a third parameter:
/// #[step(read_only)]
/// async fn find_config(foo: &Foo, ctx: &Context<App>) -> Result<Outcome<ConfigMap>> {
///     let name = format!("{}-config", foo.name_any());
///     match ctx.api::<ConfigMap>().get_opt(&name).await? {
///         Some(cm) => Ok(Outcome::Unchanged(cm)),
///         None => Ok(Outcome::wait(format!("no ConfigMap {name} yet"))),
///     }
/// }
///
/// #[step]
/// async fn use_config(foo: &Foo, ctx: &Context<App>, cm: &ConfigMap) -> Result<Outcome> {
///     # let _ = (foo, ctx, cm);
///     Ok(Outcome::unchanged())
/// }
///
/// fn stairs() -> impl Reconciler<Foo, App> {
///     staircase!(Foo => [ensure_config, find_config, use_config])
/// }
/// # let _ = stairs();
/// ```
pub use staircase_macros::step;
// By name, not by glob: each item has one public path (the prelude aside).
#[cfg(feature = "logging")]
pub use staircase_runtime::logging;
#[cfg(feature = "metrics")]
pub use staircase_runtime::metrics;
#[cfg(feature = "otel")]
pub use staircase_runtime::otel;
#[doc(hidden)]
pub use staircase_runtime::relist;
#[cfg(feature = "server")]
pub use staircase_runtime::server;
#[cfg(feature = "webhooks")]
pub use staircase_runtime::webhook;
pub use staircase_runtime::{
    ApiScope, Backoff, ConfigError, Context, DEFAULT_FINALIZER, Error, HasStepStatus, Health,
    InitialList, LeaderElection, Leadership, LendsStepStatus, NextRun, Operator, OperatorClient,
    OperatorConfig, Outcome, OutcomeKind, Reconciler, Relist, Result, Rule, RulePolicy,
    RuleViolation, RunEnd, RunInfo, RunReport, Staircase, Stairs, Start, StatusUpdates, StepRecord,
    StepStatus, Then, Watchable, Write,
};
pub use staircase_runtime::{
    apply, children, crds, events, explain, external, fight, pause, preflight, replay, shard,
    status,
};

/// Builds a [`Staircase`] from `#[step]` functions, in the order they run.
///
/// ```
/// # use staircase::prelude::*;
/// # use k8s_openapi::api::core::v1::ConfigMap as Foo;
/// # #[step] async fn ensure_config(_: &Foo) -> Result<Outcome> { Ok(Outcome::unchanged()) }
/// # #[step] async fn wait_ready(_: &Foo) -> Result<Outcome> { Ok(Outcome::unchanged()) }
/// # #[step] async fn delete_external(_: &Foo) -> Result<Outcome> { Ok(Outcome::unchanged()) }
/// fn stairs() -> impl Reconciler<Foo, ()> {
///     staircase!(Foo => [ensure_config, wait_ready])
/// }
/// // with cleanup steps, run behind a finalizer when an object is deleted:
/// fn with_cleanup() -> impl Reconciler<Foo, ()> {
///     staircase!(Foo => [ensure_config, wait_ready], cleanup => [delete_external])
/// }
/// ```
///
/// Each listed name is a function marked `#[step]` (a path such as `steps::ensure_config` works
/// too). The compiler checks that every step takes `&Foo`, that all steps share one
/// `Context<S>`, and that each step taking data gets the data an earlier step hands down; a
/// mismatch is reported at the step that does not fit.
///
/// A function listed without `#[step]` is reported by the compiler as
/// `error[E0574]: expected struct, variant or union type, found function `name``, at its name in
/// the list: mark the function `#[step]`. (`#[step]` defines a step type of the function's name
/// next to it; the list names those types. A macro cannot change how the compiler reports a name
/// that has no such type.)
// Defined as `__staircase_entry` and re-exported as `staircase`: a `use` of the name `staircase`
// in this crate would also pick up the runtime's `staircase` module (from the glob above) and let
// it shadow the crate name in user code that imports the prelude.
#[macro_export]
#[doc(hidden)]
macro_rules! __staircase_entry {
    ($($tokens:tt)*) => {
        // `$crate` names this crate however the user's `Cargo.toml` renamed it; the proc macro
        // builds every path from it.
        $crate::__private::staircase_impl! { $crate; $($tokens)* }
    };
}

#[doc(inline)]
pub use __staircase_entry as staircase;

mod step_future;

/// The user guide, one chapter per module (the same text as the repository's `docs/`).
pub mod guide {
    pub mod concepts {
        #![doc = include_str!("../docs/concepts.md")]
    }
    pub mod children {
        #![doc = include_str!("../docs/children.md")]
    }
    pub mod reads {
        #![doc = include_str!("../docs/reads.md")]
    }
    pub mod external {
        #![doc = include_str!("../docs/external.md")]
    }
    pub mod testing {
        #![doc = include_str!("../docs/testing.md")]
    }
    pub mod explorer {
        #![doc = include_str!("../docs/explorer.md")]
    }
    pub mod crds {
        #![doc = include_str!("../docs/crds.md")]
    }
    pub mod production {
        #![doc = include_str!("../docs/production.md")]
    }
    pub mod operating {
        #![doc = include_str!("../docs/operating.md")]
    }
    pub mod migrating {
        #![doc = include_str!("../docs/migrating.md")]
    }
    pub mod compatibility {
        #![doc = include_str!("../docs/compatibility.md")]
    }
}

/// The repository README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;

/// Everything a typical operator file needs.
pub mod prelude {
    pub use crate::__staircase_entry as staircase;
    pub use staircase_macros::{StepStatus, step};
    pub use staircase_runtime::{
        Context, Error, HasStepStatus, LeaderElection, Operator, OperatorConfig, Outcome,
        Reconciler, Result, RulePolicy, RunReport, Staircase, StepStatus,
    };
    // What nearly every step calls: typed API handles and the parameters of their requests.
    pub use kube::ResourceExt;
    pub use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
    // The children step (`Children::new(parent)….sync(ctx)`, or `children(desired)` as an entry)
    // and the key external calls carry.
    pub use staircase_runtime::children::{Children, Readiness, Strategy, children};
    pub use staircase_runtime::external::IdempotencyKey;
}

/// Paths used by macro expansions. Not public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use futures::future::BoxFuture;
    pub use staircase_macros::__staircase as staircase_impl;
    pub use staircase_runtime::__private::{
        ForResource, Step, StepInfo, StepReturn, TakesData, WithState,
    };
    pub use staircase_runtime::{Context, Error, Outcome, Result, Staircase, Stairs, Start};
    pub use std::boxed::Box;
    pub use std::marker::{Send, Sync};

    pub use crate::step_future::{boxed, boxed_passing_on};

    // The checks below run on each step of a `staircase!`, in this order, before the step is
    // appended to the chain. Each returns the step through a projection of the trait it checks:
    // when the trait is not implemented the projection stays unresolved, so the compiler reports
    // that one trait's message at the step and then stays silent about everything built on it
    // (the later checks, `.then()`, the rest of the chain), instead of a cascade of errors.

    /// What a step that hands down no data of its own returns: its outcome, carrying on the data
    /// `input` it received. (A function rather than a closure in each step's expansion.)
    #[inline]
    pub fn pass_on<D>(result: Result<Outcome<()>>, input: D) -> Result<Outcome<D>> {
        match result {
            Ok(outcome) => Ok(outcome.map(move |()| input)),
            Err(e) => Err(e),
        }
    }

    /// An empty chain with the resource and state types of `main`: cleanup steps share them.
    pub fn start_like<K, S, M: Stairs<K, S>>(_main: &M) -> Start<K, S> {
        Start::new()
    }

    /// Checks that `step` is written for resource `K`.
    pub fn check_resource<K, St>(step: St) -> <St as ForResource<K>>::This
    where
        St: ForResource<K, This = St>,
    {
        step
    }

    /// Checks that `step` takes the `Context<S>` of the steps in `chain`.
    pub fn check_state<K, S, C, St>(_chain: &C, step: St) -> <St as WithState<S>>::This
    where
        C: Stairs<K, S>,
        St: WithState<S, This = St>,
    {
        step
    }

    /// Checks that `step` takes the data the steps in `chain` hand down.
    pub fn check_data<K, S, C, St>(_chain: &C, step: St) -> <St as TakesData<C::Output>>::This
    where
        C: Stairs<K, S>,
        St: TakesData<C::Output, This = St>,
    {
        step
    }
}
