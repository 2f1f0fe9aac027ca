//! Per-object retry delays: exponential with jitter, reset on success.

use std::time::Duration;

/// How long to wait before retrying an object whose runs fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound for transient errors.
    pub max: Duration,
    /// Delay after a permanent error (the object also runs again when it changes).
    pub permanent: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(300),
            permanent: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 = first failure).
    ///
    /// Jitter takes the delay down by up to a quarter, so objects that failed together do not
    /// all retry in the same instant.
    pub fn delay(&self, failures: u32, permanent: bool) -> Duration {
        if permanent {
            return self.permanent;
        }
        let exp = failures.saturating_sub(1).min(20);
        let raw = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let jitter = rand::random_range(0.75..=1.0);
        raw.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let b = Backoff::default();
        let d1 = b.delay(1, false);
        assert!(d1 <= b.initial && d1 >= b.initial.mul_f64(0.75));
        let d3 = b.delay(3, false);
        assert!(d3 >= (b.initial * 4).mul_f64(0.75) && d3 <= b.initial * 4);
        assert!(b.delay(40, false) <= b.max);
        assert_eq!(b.delay(1, true), b.permanent);
    }
}
