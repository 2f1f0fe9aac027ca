//! Graceful shutdown: the signals that trigger it and the flag that spreads it.
//!
//! kube-runtime runs each reconcile in a task of its own that is aborted when the controller
//! stream is dropped, and its graceful shutdown stops new triggers and ends the stream once the
//! runs in flight are done. The operator therefore keeps polling the stream after a shutdown
//! request, bounded by `shutdown_timeout`, before it returns and releases its Lease.

use tokio::sync::watch;

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
