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
use crate::runner::{NextRun, Runner};
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
    runner: Runner<K, S, M, C>,
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
            runner: Runner::new(staircase, client, Arc::new(state), OperatorConfig::default()),
        }
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: OperatorConfig) -> Self {
        self.runner.config = config;
        self
    }

    /// Keeps `observedGeneration` and the `Ready`/`Progressing`/`Waiting`/`Failed` conditions in
    /// the object's status (through the `/status` subresource, best effort).
    pub fn with_status(mut self) -> Self
    where
        K: HasStepStatus,
    {
        self.runner.status = Some(<K as HasStepStatus>::step_status);
        self
    }

    /// Calls `f` with the report of every run (for traces, tests, the demo).
    pub fn on_run(mut self, f: impl Fn(&RunReport) + Send + Sync + 'static) -> Self {
        self.runner.observers.push(Arc::new(f));
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &OperatorConfig {
        &self.runner.config
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
        let runner = self.runner;
        let client = runner.client.clone();
        let api = match runner.config.namespace.as_deref() {
            Some(ns) => <K::Scope as ApiScope>::api::<K>(client, Some(ns)),
            None => kube::Api::all(client),
        };
        let mut wc = watcher::Config::default();
        if let Some(sel) = &runner.config.label_selector {
            wc = wc.labels(sel);
        }
        let cc = ControllerConfig::default().concurrency(runner.config.concurrency);
        Controller::new(api, wc)
            .with_config(cc)
            .graceful_shutdown_on(shutdown)
            .run(reconcile, error_policy, Arc::new(runner))
            .for_each(|res| async move {
                if let Err(e) = res {
                    tracing::debug!("controller: {e}");
                }
            })
            .await;
    }

    /// Runs the staircase once for `obj`, outside the controller loop (the object is taken as
    /// given, e.g. freshly read in a test). What the runtime remembers between runs (failures
    /// for backoff, its own last write) is kept across calls. Returns the report, or `None` when
    /// there was nothing to run.
    pub async fn run_once(&self, obj: K) -> Option<RunReport> {
        self.runner.run(Arc::new(obj)).await.0
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
