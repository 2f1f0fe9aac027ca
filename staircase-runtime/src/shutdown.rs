//! Graceful shutdown: the signals that trigger it, and the runs it waits for.
//!
//! kube-runtime runs each reconcile in a task that is aborted when the controller stream is
//! dropped, and its graceful shutdown only stops new triggers: whether a run already executing
//! finishes (and reports) depends on the controller stream being polled until the run is done.
//! The operator therefore executes every run in a task of its own, tracked here, and after the
//! controller stops waits for those tasks (bounded by `shutdown_timeout`) before it returns and
//! releases its Lease.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Completes on SIGTERM (what Kubernetes sends to stop a pod) or SIGINT (Ctrl-C).
/// `Operator::run` shuts down on it; pass it to `run_until` when combining it with more.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C shuts down");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A shutdown request that many places can wait for (the shutdown future can be awaited once).
#[derive(Clone)]
pub(crate) struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Spawns a task awaiting `shutdown`.
    pub(crate) fn on(shutdown: impl Future<Output = ()> + Send + 'static) -> Stop {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown => { let _ = tx.send(true); }
                // Nobody listens any more: the operator is gone.
                _ = tx.closed() => {}
            }
        });
        Stop(rx)
    }

    pub(crate) fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once shutdown was requested.
    pub(crate) async fn wait(mut self) {
        // An error means the sender is gone without a request: never complete.
        if self.0.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The runs executing now, each in its own task.
pub(crate) struct InFlight {
    next: AtomicU64,
    tasks: Mutex<HashMap<u64, AbortHandle>>,
    count: watch::Sender<usize>,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight {
            next: AtomicU64::new(0),
            tasks: Mutex::default(),
            count: watch::channel(0).0,
        }
    }
}

impl InFlight {
    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, AbortHandle>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `fut` in a task of its own that outlives the caller being dropped; `None` when the
    /// task was aborted (lease lost, shutdown timeout).
    pub(crate) async fn run<F>(&self, fut: F) -> Option<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.count.clone();
        count.send_modify(|n| *n += 1);
        let handle = tokio::spawn(async move {
            // Decrement when the task ends, however it ends (also when aborted).
            struct Done(watch::Sender<usize>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.send_modify(|n| *n -= 1);
                }
            }
            let _done = Done(count);
            fut.await
        });
        {
            let mut tasks = self.tasks();
            // Entries of callers that were dropped before their run ended.
            tasks.retain(|_, h| !h.is_finished());
            tasks.insert(id, handle.abort_handle());
        }
        let out = handle.await.ok();
        self.tasks().remove(&id);
        out
    }

    /// Waits until no run executes, at most `timeout`; `false` when runs were still executing.
    pub(crate) async fn drained(&self, timeout: Duration) -> bool {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }

    /// Cancels every run executing now.
    pub(crate) fn abort_all(&self) {
        for (_, h) in self.tasks().drain() {
            h.abort();
        }
    }
}
