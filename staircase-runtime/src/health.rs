//! Liveness and readiness of the operator, as `/healthz` and `/readyz` report them.
//!
//! Live: the operator loop is running (it has not returned or panicked). Ready: without leader
//! election, once the watch cache has synced (the first full list arrived, so runs see every
//! object); with leader election, once this replica either leads with a synced cache, or stands
//! by and can read the Lease (a standby that cannot reach the API server is not ready). Ready
//! also takes every check of your own to pass
//! ([`Operator::with_ready_check`](crate::Operator::with_ready_check)).

use std::sync::{Arc, Mutex};

/// This replica's part in leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// Leader election is off: this replica always runs.
    Disabled,
    /// Not yet known (the Lease has not been read yet) or the API server is unreachable.
    Unknown,
    /// Another replica leads; this one watches the Lease.
    Standby,
    /// This replica holds the Lease and reconciles.
    Leading,
}

/// A ready check of the user's: `Err` says why not ready.
type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

struct State {
    running: bool,
    synced: bool,
    leadership: Leadership,
    checks: Vec<(String, Check)>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("running", &self.running)
            .field("synced", &self.synced)
            .field("leadership", &self.leadership)
            .field(
                "checks",
                &self.checks.iter().map(|c| &c.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A shared, cheaply cloneable view of the operator's health, updated by the operator loop.
#[derive(Debug, Clone)]
pub struct Health(Arc<Mutex<State>>);

impl Default for Health {
    fn default() -> Self {
        Health(Arc::new(Mutex::new(State {
            running: false,
            synced: false,
            leadership: Leadership::Disabled,
            checks: Vec::new(),
        })))
    }
}

impl Health {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn set_running(&self, on: bool) {
        self.with(|s| s.running = on);
    }

    pub(crate) fn set_synced(&self, on: bool) {
        self.with(|s| s.synced = on);
    }

    pub(crate) fn set_leadership(&self, l: Leadership) {
        self.with(|s| s.leadership = l);
    }

    pub(crate) fn add_check(&self, name: String, check: Check) {
        self.with(|s| s.checks.push((name, check)));
    }

    /// The checks of the user's that fail now, with their messages. Called outside the lock:
    /// a check may read the health itself.
    fn failing_checks(&self) -> Vec<(String, String)> {
        let checks = self.with(|s| s.checks.clone());
        checks
            .into_iter()
            .filter_map(|(name, check)| check().err().map(|why| (name, why)))
            .collect()
    }

    /// The replica's current part in leader election.
    pub fn leadership(&self) -> Leadership {
        self.with(|s| s.leadership)
    }

    /// `/healthz`: the operator loop is running.
    pub fn is_live(&self) -> bool {
        self.with(|s| s.running)
    }

    /// `/readyz`: see the module docs.
    pub fn is_ready(&self) -> bool {
        self.runtime_ready() && self.failing_checks().is_empty()
    }

    /// Ready as far as the runtime goes.
    fn runtime_ready(&self) -> bool {
        self.with(|s| {
            s.running
                && match s.leadership {
                    Leadership::Disabled | Leadership::Leading => s.synced,
                    Leadership::Standby => true,
                    Leadership::Unknown => false,
                }
        })
    }

    /// A one-line explanation for probe bodies and logs, e.g. `ready: leading, cache synced`,
    /// or `not ready: single replica, cache synced; database: no connection`.
    pub fn describe(&self) -> String {
        self.readiness().1
    }

    /// Whether ready, and [`describe`](Self::describe)'s line, from one call of each check.
    pub(crate) fn readiness(&self) -> (bool, String) {
        let failing = self.failing_checks();
        let ready = self.runtime_ready() && failing.is_empty();
        let mut line = self.with(|s| {
            let role = match s.leadership {
                Leadership::Disabled => "single replica",
                Leadership::Unknown => "lease not read yet",
                Leadership::Standby => "standing by",
                Leadership::Leading => "leading",
            };
            let cache = if s.synced {
                "cache synced"
            } else {
                "cache not synced"
            };
            let state = match (s.running, ready) {
                (false, _) => "not running",
                (true, true) => "ready",
                (true, false) => "not ready",
            };
            format!("{state}: {role}, {cache}")
        });
        for (name, why) in failing {
            line.push_str(&format!("; {name}: {why}"));
        }
        (ready, line)
    }
}
