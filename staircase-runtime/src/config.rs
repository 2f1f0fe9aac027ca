//! Operator settings, with defaults that suit most operators.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::run::RulePolicy;

/// How the operator runs. Build it with `OperatorConfig::default()` and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// At most this many runs at once (never two for the same object). Default 16.
    pub concurrency: u16,
    /// What happens when a step breaks the one-modification rule. Default: the run fails.
    pub rule_policy: RulePolicy,
    /// Retry delays for failing objects.
    pub backoff: Backoff,
    /// Converged objects are run again after this long, to catch drift nobody announced. Default 10 min.
    pub resync: Duration,
    /// After a write to the object itself, how long to wait for the watch to deliver it before
    /// reading the object from the API server instead of the cache. Default 2 s.
    pub read_your_writes_grace: Duration,
    /// Only objects in this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Only objects matching this label selector.
    pub label_selector: Option<String>,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            concurrency: 16,
            rule_policy: RulePolicy::Fail,
            backoff: Backoff::default(),
            resync: Duration::from_secs(600),
            read_your_writes_grace: Duration::from_secs(2),
            namespace: None,
            label_selector: None,
        }
    }
}

impl OperatorConfig {
    /// Sets [`OperatorConfig::concurrency`] (at least 1).
    pub fn with_concurrency(mut self, n: u16) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets [`OperatorConfig::rule_policy`].
    pub fn with_rule_policy(mut self, p: RulePolicy) -> Self {
        self.rule_policy = p;
        self
    }

    /// Sets [`OperatorConfig::backoff`].
    pub fn with_backoff(mut self, b: Backoff) -> Self {
        self.backoff = b;
        self
    }

    /// Sets [`OperatorConfig::resync`].
    pub fn with_resync(mut self, d: Duration) -> Self {
        self.resync = d;
        self
    }

    /// Sets [`OperatorConfig::namespace`].
    pub fn with_namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// Sets [`OperatorConfig::label_selector`].
    pub fn with_label_selector(mut self, s: impl Into<String>) -> Self {
        self.label_selector = Some(s.into());
        self
    }
}
