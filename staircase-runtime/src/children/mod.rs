//! Declarative children: "for each parent, keep this set of child objects", as one step.
//!
//! A function of the parent says which children should exist (any kinds, typed k8s-openapi
//! objects or `DynamicObject`s); the step compares that with what exists and makes **at most one
//! change per run**, like every other step:
//!
//! 1. create a missing child,
//! 2. bring a drifted child back (per-kind [`Strategy`]: in place, recreate, or never),
//! 3. delete (prune) a child this parent owns that is no longer wanted.
//!
//! Changes are made in a fixed order, so runs are reproducible: Namespaces and
//! CustomResourceDefinitions first (the children that live in them, or are instances of them,
//! can only be made after them), then by kind, then by name. When nothing
//! needs changing the step checks readiness (see [`Children::ready_when`]) and reports
//! [`Outcome::wait`](crate::Outcome::wait) until every checked child is ready.
//!
//! The body of a step (marked `#[step]` in an operator; the guide's *children* page has the
//! whole operator):
//!
//! ```
//! # use staircase_runtime as staircase;
//! use k8s_openapi::api::apps::v1::Deployment;
//! use k8s_openapi::api::core::v1::Service;
//! use staircase::children::{Children, Strategy, deployment_available};
//! use staircase::{Context, Outcome, Result};
//! # use k8s_openapi::api::core::v1::ConfigMap as Echo;
//! # fn desired_deployment(_: &Echo) -> Deployment { Deployment::default() }
//! # fn desired_service(_: &Echo) -> Service { Service::default() }
//!
//! async fn echo_children(echo: &Echo, ctx: &Context) -> Result<Outcome> {
//!     Children::new(echo)
//!         .apply(desired_deployment(echo))
//!         .apply(desired_service(echo))
//!         .strategy::<Deployment>(Strategy::Recreate)
//!         .ready_when(deployment_available)
//!         .sync(ctx)
//!         .await
//! }
//! # let _ = echo_children;
//! ```
//!
//! # How the step decides without writing
//!
//! Writes are server-side apply with a stable field manager ([`DEFAULT_FIELD_MANAGER`] unless
//! [`Children::field_manager`] says otherwise), `force`d so the parent wins over hand edits of the
//! fields it sets, while fields it does not set stay with whoever set them. A converged child is
//! never written: before applying, the step checks that
//! - the live object *contains* the desired configuration (every field the parent sets has that
//!   value; extra fields, defaults and other managers' list items are not drift), and
//! - the child's [`APPLIED_HASH_ANNOTATION`] equals the hash of the desired configuration, which
//!   catches what containment cannot: a field the parent *stopped* setting (apply then removes
//!   it).
//!
//! If the server answers an apply with an object that still does not contain the desired fields
//! (a value it normalises, a webhook that reverts it), the step fails with a permanent error
//! naming the field instead of rewriting the child forever.
//!
//! # What the parent owns
//!
//! Every child gets a controller owner reference to the parent (so garbage collection removes
//! children with their parent) and the label [`OWNER_LABEL`] = the parent's uid. Pruning lists
//! each kind by that label and deletes only objects that also carry the owner reference. A kind
//! that may disappear from the desired set entirely must be declared with [`Children::owns`] (or
//! a strategy or readiness check for it), or its last objects would not be looked at.
//!
//! # Owned-object watches
//!
//! For a change to a child (a Deployment becoming available) to run its parent at once, the
//! operator must watch the child kinds: [`Children::kinds`] lists them, [`parent_triggers`] turns
//! them into a stream of parents to run.

mod desired;
mod diff;
mod step;
mod strategy;
mod sync;
mod watch;

use std::time::Duration;

use kube::Resource;
use kube::api::DynamicObject;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use desired::{APPLIED_HASH_ANNOTATION, ChildKind, ChildScope, DesiredChild, OWNER_LABEL};
pub use diff::first_difference;
pub use step::{ChildrenStep, children};
pub use strategy::{Readiness, Strategy, deployment_available, job_complete, statefulset_ready};
pub use sync::Observed;
pub use watch::{owned_watch_config, parent_triggers};

use crate::Error;
use desired::ParentRef;
use strategy::ReadyCheck;

/// The field manager children are applied with unless [`Children::field_manager`] sets another.
/// Keep it stable: a new name would make the old one's fields look like someone else's.
pub const DEFAULT_FIELD_MANAGER: &str = "staircase";

/// How long a step waiting for a child's readiness waits before looking again even without a
/// watch event (a fallback: with owned-object watches the child's change wakes the parent).
pub const DEFAULT_READY_RECHECK: Duration = Duration::from_secs(10);

/// The desired children of one parent, and how to keep them. Build it in a step, then
/// [`sync`](Children::sync) it; see the [module docs](self).
///
/// Building never fails: a child that cannot be converted (no name, not serializable) is kept as
/// an error and reported by `sync`, so the builder chains without `?`.
pub struct Children {
    parent: Result<ParentRef, String>,
    desired: Vec<DesiredChild>,
    declared: Vec<ChildKind>,
    strategies: Vec<(ChildKind, Strategy)>,
    ready: Vec<(ChildKind, ReadyCheck)>,
    field_manager: String,
    ready_recheck: Option<Duration>,
    error: Option<Error>,
}

impl Children {
    /// An empty set of children for `parent` (which must have a name and uid, as any object read
    /// from the API server has).
    pub fn new<K: Resource<DynamicType = ()>>(parent: &K) -> Self {
        Children {
            parent: ParentRef::of(parent).map_err(|e| e.to_string()),
            desired: Vec::new(),
            declared: Vec::new(),
            strategies: Vec::new(),
            ready: Vec::new(),
            field_manager: DEFAULT_FIELD_MANAGER.to_string(),
            ready_recheck: Some(DEFAULT_READY_RECHECK),
            error: None,
        }
    }

    /// Wants `child` to exist as given. Set only the fields you mean: exactly these are applied.
    /// The namespace defaults to the parent's; owner reference and tracking label are added.
    pub fn apply<T>(self, child: T) -> Self
    where
        T: Resource<DynamicType = ()> + Serialize,
        T::Scope: ChildScope,
    {
        let desired = DesiredChild::typed(&child);
        self.push(desired)
    }

    /// Wants `child` if it is `Some`; `None` means "this child should not exist" (it is pruned
    /// if it does), which is how optional children are written. Declares the kind either way.
    pub fn apply_opt<T>(self, child: Option<T>) -> Self
    where
        T: Resource<DynamicType = ()> + Serialize,
        T::Scope: ChildScope,
    {
        let this = self.owns::<T>();
        match child {
            Some(c) => this.apply(c),
            None => this,
        }
    }

    /// Wants a child known only dynamically, of kind `kind` (see [`ChildKind::dynamic`]).
    pub fn apply_dynamic(self, child: DynamicObject, kind: ChildKind) -> Self {
        let desired = DesiredChild::dynamic(&child, kind);
        self.push(desired)
    }

    fn push(mut self, desired: Result<DesiredChild, Error>) -> Self {
        match desired {
            Ok(d) => self.desired.push(d),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Declares that this parent may own children of kind `T`, so they are pruned even when none
    /// is wanted any more.
    pub fn owns<T>(self) -> Self
    where
        T: Resource<DynamicType = ()>,
        T::Scope: ChildScope,
    {
        self.owns_kind(ChildKind::of::<T>())
    }

    /// [`Children::owns`] for a dynamic kind.
    pub fn owns_kind(mut self, kind: ChildKind) -> Self {
        if !self.declared.contains(&kind) {
            self.declared.push(kind);
        }
        self
    }

    /// How drifted children of kind `T` are brought back (default [`Strategy::InPlace`]).
    pub fn strategy<T>(self, strategy: Strategy) -> Self
    where
        T: Resource<DynamicType = ()>,
        T::Scope: ChildScope,
    {
        self.strategy_for(ChildKind::of::<T>(), strategy)
    }

    /// [`Children::strategy`] for a dynamic kind.
    pub fn strategy_for(mut self, kind: ChildKind, strategy: Strategy) -> Self {
        self.strategies.retain(|(k, _)| *k != kind);
        self.strategies.push((kind.clone(), strategy));
        self.owns_kind(kind)
    }

    /// Once every child is in place, waits until each child of kind `T` passes `check`
    /// (for example [`deployment_available`]). The step then reports `wait` with the first
    /// not-ready child's reason, and looks again on the next change of the parent (or of the
    /// child, with owned-object watches) or after [`Children::recheck_after`].
    pub fn ready_when<T, F>(mut self, check: F) -> Self
    where
        T: Resource<DynamicType = ()> + DeserializeOwned,
        T::Scope: ChildScope,
        F: Fn(&T) -> Readiness + Send + Sync + 'static,
    {
        let kind = ChildKind::of::<T>();
        self.ready.push((kind.clone(), strategy::erase(check)));
        self.owns_kind(kind)
    }

    /// [`Children::ready_when`] for a dynamic kind.
    pub fn ready_when_dynamic<F>(mut self, kind: ChildKind, check: F) -> Self
    where
        F: Fn(&DynamicObject) -> Readiness + Send + Sync + 'static,
    {
        self.ready.push((kind.clone(), std::sync::Arc::new(check)));
        self.owns_kind(kind)
    }

    /// How long a readiness wait lasts before the step looks again without any event
    /// (default [`DEFAULT_READY_RECHECK`]; `None` waits for a change only).
    pub fn recheck_after(mut self, after: Option<Duration>) -> Self {
        self.ready_recheck = after;
        self
    }

    /// The server-side apply field manager (default [`DEFAULT_FIELD_MANAGER`]).
    pub fn field_manager(mut self, manager: impl Into<String>) -> Self {
        self.field_manager = manager.into();
        self
    }

    /// Every kind this set manages (desired or declared), in the order changes are made. Feed
    /// it to the operator's owned-object watches.
    pub fn kinds(&self) -> Vec<ChildKind> {
        let mut kinds: Vec<ChildKind> = self.declared.clone();
        for d in &self.desired {
            if !kinds.contains(&d.kind) {
                kinds.push(d.kind.clone());
            }
        }
        kinds.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        kinds
    }

    /// The desired children, as they will be compared and applied (before the parent's marks are
    /// stamped on them).
    pub fn desired(&self) -> &[DesiredChild] {
        &self.desired
    }

    fn strategy_of(&self, kind: &ChildKind) -> Strategy {
        self.strategies
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, s)| *s)
            .unwrap_or_default()
    }
}
