//! Graceful shutdown: the signals that trigger it and the flag that spreads it.
//!
//! kube-runtime runs each reconcile in a task of its own that is aborted when the controller
//! stream is dropped, and its graceful shutdown stops new triggers and ends the stream once the
//! runs in flight are done. The operator therefore keeps polling the stream after a shutdown
//! request, bounded by `shutdown_timeout`, before it returns and releases its Lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;
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
///
/// kube-runtime polls the future it was given for its graceful shutdown each time it polls the
/// controller stream, dozens of times per object: waiting here is a flag check plus an already
/// registered `Notified`. (A `watch` channel's `wait_for` cost about 400 instructions a poll,
/// 14 K per converged object in the bench.)
#[derive(Clone)]
pub(crate) struct Stop(Arc<Flag>);

struct Flag {
    requested: AtomicBool,
    notify: Notify,
    /// The task awaiting the shutdown future; it goes with the last `Stop`.
    task: OnceLock<AbortHandle>,
}

impl Drop for Flag {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

impl Stop {
    /// Spawns a task awaiting `shutdown`.
    pub(crate) fn on(shutdown: impl Future<Output = ()> + Send + 'static) -> Stop {
        let flag = Arc::new(Flag {
            requested: AtomicBool::new(false),
            notify: Notify::new(),
            task: OnceLock::new(),
        });
        let weak = Arc::downgrade(&flag);
        let task = tokio::spawn(async move {
            shutdown.await;
            if let Some(flag) = weak.upgrade() {
                flag.requested.store(true, Ordering::Release);
                flag.notify.notify_waiters();
            }
        });
        let _ = flag.task.set(task.abort_handle());
        Stop(flag)
    }

    pub(crate) fn requested(&self) -> bool {
        self.0.requested.load(Ordering::Acquire)
    }

    /// Completes once shutdown was requested.
    pub(crate) async fn wait(self) {
        loop {
            // Created before the check: `notify_waiters` reaches a `Notified` from its creation.
            let notified = self.0.notify.notified();
            if self.requested() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiter_completes_once_shutdown_is_requested() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = Stop::on(async move {
            let _ = rx.await;
        });
        let waiters: Vec<_> = (0..3).map(|_| tokio::spawn(stop.clone().wait())).collect();
        tokio::task::yield_now().await;
        assert!(!stop.requested());
        assert!(waiters.iter().all(|w| !w.is_finished()));
        tx.send(()).unwrap();
        for w in waiters {
            w.await.unwrap();
        }
        assert!(stop.requested());
        // A waiter that comes after the request completes at once.
        stop.clone().wait().await;
    }

    #[tokio::test]
    async fn the_task_ends_with_the_last_stop() {
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = Stop::on(async move {
            let _ = rx.await;
        });
        let task = stop.0.task.get().unwrap().clone();
        assert!(!task.is_finished());
        drop(stop);
        // Aborted tasks finish on their next scheduling; wait for it explicitly.
        while !task.is_finished() {
            tokio::task::yield_now().await;
        }
    }
}
