//! The children step as a value, for `staircase!` entries such as `children(desired)`.

use std::marker::PhantomData;

use futures::future::BoxFuture;

use super::Children;
use crate::step::{ForResource, TakesData, WithState};
use crate::step::{Step, StepInfo};
use crate::{Context, Outcome, Result};

/// Makes a step from a function returning the desired children of a parent.
///
/// The step takes whatever data the steps before it hand down and passes it on unchanged, so it
/// can stand anywhere in a staircase:
///
/// ```
/// # use staircase_runtime as staircase;
/// use staircase::children::{Children, children};
/// # use k8s_openapi::api::core::v1::ConfigMap as Echo;
/// # use k8s_openapi::api::apps::v1::Deployment;
/// # use k8s_openapi::api::core::v1::Service;
/// # fn deployment(_: &Echo) -> Deployment { Deployment::default() }
/// # fn service(_: &Echo) -> Service { Service::default() }
///
/// fn desired(echo: &Echo) -> Children {
///     Children::new(echo).apply(deployment(echo)).apply(service(echo))
/// }
/// // In a staircase: `staircase!(Echo => [children(desired), report_status])`.
/// let step = children(desired).named("echo-children");
/// # let _: staircase::children::ChildrenStep<Echo, _> = step;
/// ```
pub fn children<K, F>(desired: F) -> ChildrenStep<K, F>
where
    F: Fn(&K) -> Children + Send + Sync + 'static,
{
    ChildrenStep {
        desired,
        name: "children",
        _k: PhantomData,
    }
}

/// A step that keeps the children `F` describes; built by [`children`].
pub struct ChildrenStep<K, F> {
    desired: F,
    name: &'static str,
    _k: PhantomData<fn(&K)>,
}

impl<K, F> ChildrenStep<K, F>
where
    F: Fn(&K) -> Children,
{
    /// Names the step in traces, conditions and reports (default `children`); give each
    /// children step of one staircase its own name.
    pub fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// The kinds the step would manage for `parent`, for owned-object watches.
    pub fn kinds(&self, parent: &K) -> Vec<super::ChildKind> {
        (self.desired)(parent).kinds()
    }
}

impl<K, F: Clone> Clone for ChildrenStep<K, F> {
    fn clone(&self) -> Self {
        ChildrenStep {
            desired: self.desired.clone(),
            name: self.name,
            _k: PhantomData,
        }
    }
}

impl<K, S, D, F> Step<K, S, D> for ChildrenStep<K, F>
where
    K: Send + Sync + 'static,
    S: Send + Sync + 'static,
    D: Send + 'static,
    F: Fn(&K) -> Children + Send + Sync + 'static,
{
    type Output = D;

    fn info(&self) -> StepInfo {
        StepInfo {
            name: self.name,
            read_only: false,
        }
    }

    fn run<'a>(
        &'a self,
        resource: &'a K,
        ctx: &'a Context<S>,
        input: D,
    ) -> BoxFuture<'a, Result<Outcome<D>>> {
        let set = (self.desired)(resource);
        Box::pin(async move { Ok(set.sync(ctx).await?.map(|()| input)) })
    }
}

// The witnesses `staircase!` checks each entry with: the step is written for `K`, accepts any
// state and any data, so it fits every position of a staircase for `K`.

impl<K, F> ForResource<K> for ChildrenStep<K, F> {
    type This = Self;
}

impl<K, F, S> WithState<S> for ChildrenStep<K, F> {
    type This = Self;
}

impl<K, F, D> TakesData<D> for ChildrenStep<K, F> {
    type This = Self;
}
