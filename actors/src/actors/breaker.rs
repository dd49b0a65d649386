//! A circuit breaker per provider, shared without locks between the request threads
//! (which record outcomes) and the router (which skips open ones).
//!
//! `failures` consecutive retryable failures open it for `cooldown`; after that it is
//! half-open: requests go through again, the first success closes it, and a failure
//! opens it for another cooldown at once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::TARGET_UP;

#[derive(Debug)]
pub struct Breaker {
    provider: String,
    threshold: u32,
    cooldown_ms: u64,
    failures: AtomicU32,
    open_until_ms: AtomicU64,
}

impl Breaker {
    /// `threshold` 0 turns it off.
    pub fn new(provider: &str, threshold: u32, cooldown: Duration) -> Breaker {
        metrics::gauge!(TARGET_UP, "provider" => provider.to_string()).set(1.0);
        Breaker {
            provider: provider.to_string(),
            threshold,
            cooldown_ms: cooldown.as_millis() as u64,
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
        }
    }

    /// Whether requests may go to this provider now (closed, or half-open).
    pub fn allows(&self, now_ms: u64) -> bool {
        now_ms >= self.open_until_ms.load(Ordering::Relaxed)
    }

    /// One call's outcome: `ok` unless it failed in a way another try could fix.
    pub fn record(&self, ok: bool, now_ms: u64) {
        if self.threshold == 0 {
            return;
        }
        if ok {
            if self.failures.swap(0, Ordering::Relaxed) >= self.threshold {
                self.open_until_ms.store(0, Ordering::Relaxed);
                metrics::gauge!(TARGET_UP, "provider" => self.provider.clone()).set(1.0);
                tracing::info!(provider = %self.provider, "circuit closed");
            }
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if failures >= self.threshold {
            self.open_until_ms.store(now_ms + self.cooldown_ms, Ordering::Relaxed);
            if failures == self.threshold {
                metrics::gauge!(TARGET_UP, "provider" => self.provider.clone()).set(0.0);
                tracing::warn!(provider = %self.provider, failures, "circuit opened");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_recovers_half_open() {
        let b = Breaker::new("p", 3, Duration::from_millis(100));
        b.record(false, 0);
        b.record(false, 1);
        b.record(true, 2); // a success resets the count
        b.record(false, 3);
        b.record(false, 4);
        assert!(b.allows(5));
        b.record(false, 5);
        assert!(!b.allows(6), "three in a row open it");
        assert!(!b.allows(104));
        assert!(b.allows(105), "half-open after the cooldown");
        b.record(false, 105);
        assert!(!b.allows(106), "a half-open failure opens it again at once");
        assert!(b.allows(205));
        b.record(true, 205);
        b.record(false, 206);
        assert!(b.allows(207), "closed again: one failure is not enough");
        let off = Breaker::new("q", 0, Duration::from_secs(1));
        for t in 0..10 {
            off.record(false, t);
        }
        assert!(off.allows(10));
    }
}
