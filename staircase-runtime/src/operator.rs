//! `Operator`: runs a staircase on kube-runtime's `Controller`, one modification per run.

use std::convert::Infallible;
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::chain::{Stairs, Start};
use crate::context::ApiScope;
use crate::run::RunReport;
use crate::runner::{NextRun, Observer, Runner};
use crate::staircase::Staircase;
use crate::status::HasStepStatus;
use crate::OperatorConfig;

/// Runs a [`Staircase`] against a cluster: watches the resource, schedules runs, enforces the
/// rules, keeps status, retries with backoff.
///
/// ```no_run
/// # use staircase_runtime::*;
/// # async fn demo<K, M>(client: kube::Client, stairs: Staircase<K, (), M>) -> anyhow::Result<()>
/// # where K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
/// #       K::Scope: ApiScope, M: Stairs<K, ()> {
/// Operator::new(client, stairs)
///     .with_config(OperatorConfig::default().with_concurrency(8))
///     .run()
///     .await;
/// # Ok(()) }
/// ```
pub struct Operator<K, S, M, C = Start<K, S>> {
    client: kube::Client,
    staircase: Staircase<K, S, M, C>,
    state: Arc<S>,
    config: OperatorConfig,
    status: Option<crate::runner::StatusReader<K>>,
    observers: Vec<Observer>,
}

impl<K, M, C> Operator<K, (), M, C>
where
    M: Stairs<K, ()>,
    C: Stairs<K, ()>,
{
    /// An operator whose steps need no shared state.
    pub fn new(client: kube::Client, staircase: Staircase<K, (), M, C>) -> Self {
        Self::with_state(client, staircase, ())
    }
}

impl<K, S, M, C> Operator<K, S, M, C>
where
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    /// An operator whose steps share `state` (reachable as `ctx.state()`).
    pub fn with_state(client: kube::Client, staircase: Staircase<K, S, M, C>, state: S) -> Self {
        Operator {
            client,
            staircase,
            state: Arc::new(state),
            config: OperatorConfig::default(),
            status: None,
            observers: Vec::new(),
        }
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: OperatorConfig) -> Self {
        self.config = config;
        self
    }

    /// Keeps `observedGeneration` and the `Ready`/`Progressing`/`Waiting`/`Failed` conditions in
    /// the object's status (through the `/status` subresource, best effort).
    pub fn with_status(mut self) -> Self
    where
        K: HasStepStatus,
    {
        self.status = Some(<K as HasStepStatus>::step_status);
        self
    }

    /// Calls `f` with the report of every run (for traces, tests, the demo).
    pub fn on_run(mut self, f: impl Fn(&RunReport) + Send + Sync + 'static) -> Self {
        self.observers.push(Arc::new(f));
        self
    }
}

impl<K, S, M, C> Operator<K, S, M, C>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::Scope: ApiScope,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    /// Runs until the process ends.
    pub async fn run(self) {
        self.run_until(std::future::pending()).await
    }

    /// Runs until `shutdown` completes; runs in flight then finish, no new ones start.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
        let api = <K::Scope as ApiScope>::api::<K>(self.client.clone(), self.config.namespace.as_deref());
        let api = match &self.config.namespace {
            Some(_) => api,
            None => kube::Api::all(self.client.clone()),
        };
        let mut wc = watcher::Config::default();
        if let Some(sel) = &self.config.label_selector {
            wc = wc.labels(sel);
        }
        let cc = ControllerConfig::default().concurrency(self.config.concurrency);
        let runner = Arc::new(self.into_runner());
        Controller::new(api, wc)
            .with_config(cc)
            .graceful_shutdown_on(shutdown)
            .run(reconcile, error_policy, runner)
            .for_each(|res| async move {
                if let Err(e) = res {
                    tracing::debug!("controller: {e}");
                }
            })
            .await;
    }

    /// Runs the staircase once for `obj`, outside the controller loop (the object is taken as
    /// given, e.g. from a test). Returns the report, or `None` when there was nothing to run.
    pub async fn run_once(&self, obj: K) -> Option<RunReport>
    where
        M: Clone,
        C: Clone,
        S: Clone,
    {
        let runner = Runner::new(
            Staircase {
                main: self.staircase.main.clone(),
                cleanup: self.staircase.cleanup.clone(),
                finalizer: self.staircase.finalizer.clone(),
                _p: std::marker::PhantomData,
            },
            self.client.clone(),
            self.state.clone(),
            self.config.clone(),
            self.status,
            self.observers.clone(),
        );
        runner.run(Arc::new(obj)).await.0
    }

    fn into_runner(self) -> Runner<K, S, M, C> {
        Runner::new(
            self.staircase,
            self.client,
            self.state,
            self.config,
            self.status,
            self.observers,
        )
    }
}

async fn reconcile<K, S, M, C>(obj: Arc<K>, runner: Arc<Runner<K, S, M, C>>) -> Result<Action, Never>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::Scope: ApiScope,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    let (_, next) = runner.run(obj).await;
    Ok(match next {
        NextRun::After(d) => Action::requeue(d),
        NextRun::OnChange => Action::await_change(),
    })
}

fn error_policy<K, T>(_: Arc<K>, e: &Never, _: Arc<T>) -> Action {
    match e.0 {}
}

/// Runs never fail towards the controller: errors are handled (backoff, status) by the runner.
#[derive(Debug)]
struct Never(Infallible);

impl std::fmt::Display for Never {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {}
    }
}

impl std::error::Error for Never {}
