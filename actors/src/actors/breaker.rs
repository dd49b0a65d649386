//! Circuit breakers, shared without locks between the request threads (which record
//! outcomes) and the router (which skips open ones): one per target (provider and
//! upstream model, fed by the calls), and one per provider fed only by its active
//! health checks (a failed check takes every target of the provider out).
//!
//! `failures` consecutive retryable failures open it for `cooldown`, and so does an
//! error ratio at or above `error_ratio` among at least `min_requests` calls of the
//! current window (when configured). After the cooldown it is half-open: requests go
//! through again, the first success closes it, and a failure opens it for another
//! cooldown at once. Active health checks feed it too: a failed check opens it, a
//! passing one makes an open breaker half-open.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::{PROVIDER_UP, TARGET_UP};

/// A provider's breaker settings, applied to each of its targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Consecutive retryable failures that open it (0: never).
    pub failures: u32,
    pub cooldown: Duration,
    pub error_ratio: Option<f64>,
    pub min_requests: u32,
    pub window: Duration,
}

impl BreakerSettings {
    pub fn of(p: &switchyard_config::Provider) -> BreakerSettings {
        BreakerSettings {
            failures: p.breaker_failures,
            cooldown: p.breaker_cooldown,
            error_ratio: p.breaker_error_ratio,
            min_requests: p.breaker_min_requests,
            window: p.breaker_window,
        }
    }
}

impl Default for BreakerSettings {
    /// The config's defaults.
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            cooldown: Duration::from_secs(30),
            error_ratio: None,
            min_requests: 20,
            window: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    /// What it guards, for the log: `provider` or `provider/model`.
    name: String,
    /// `switchyard_target_up` or `switchyard_provider_up` with its labels.
    gauge: metrics::Gauge,
    threshold: u32,
    cooldown_ms: u64,
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    ratio: Option<RatioWindow>,
}

/// Calls and failures of the current fixed window.
#[derive(Debug)]
struct RatioWindow {
    ratio: f64,
    min_requests: u32,
    window_ms: u64,
    start_ms: AtomicU64,
    calls: AtomicU32,
    failed: AtomicU32,
}

impl Breaker {
    /// A provider's breaker (`switchyard_provider_up`); `threshold` 0 turns its
    /// consecutive-failure rule off.
    pub fn new(provider: &str, threshold: u32, cooldown: Duration) -> Breaker {
        let gauge = metrics::gauge!(PROVIDER_UP, "provider" => provider.to_string());
        Breaker::with_gauge(provider.to_string(), gauge, threshold, cooldown)
    }

    /// A target's breaker (`switchyard_target_up{provider,model}`).
    pub fn for_target(provider: &str, model: &str, s: &BreakerSettings) -> Breaker {
        let gauge = metrics::gauge!(TARGET_UP, "provider" => provider.to_string(), "model" => model.to_string());
        Breaker::with_gauge(format!("{provider}/{model}"), gauge, s.failures, s.cooldown).with_error_ratio(
            s.error_ratio,
            s.min_requests,
            s.window,
        )
    }

    fn with_gauge(name: String, gauge: metrics::Gauge, threshold: u32, cooldown: Duration) -> Breaker {
        gauge.set(1.0);
        Breaker {
            name,
            gauge,
            threshold,
            cooldown_ms: cooldown.as_millis() as u64,
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            ratio: None,
        }
    }

    /// Also open on an error ratio of at least `ratio` among at least `min_requests`
    /// calls within a window of `window`.
    pub fn with_error_ratio(mut self, ratio: Option<f64>, min_requests: u32, window: Duration) -> Breaker {
        self.ratio = ratio.map(|ratio| RatioWindow {
            ratio,
            min_requests: min_requests.max(1),
            window_ms: window.as_millis().max(1) as u64,
            start_ms: AtomicU64::new(0),
            calls: AtomicU32::new(0),
            failed: AtomicU32::new(0),
        });
        self
    }

    /// Whether the breaker is open now.
    pub fn is_open(&self, now_ms: u64) -> bool {
        !self.allows(now_ms)
    }

    fn open(&self, now_ms: u64, why: &str) {
        let was_open = self.is_open(now_ms);
        self.open_until_ms.store(now_ms + self.cooldown_ms, Ordering::Relaxed);
        if !was_open {
            self.gauge.set(0.0);
            tracing::warn!(target = %self.name, why, "circuit opened");
        }
    }

    /// An active health check's result.
    pub fn check(&self, ok: bool, now_ms: u64) {
        if ok {
            if self.open_until_ms.load(Ordering::Relaxed) > now_ms {
                // half-open: traffic decides whether it closes
                self.open_until_ms.store(now_ms, Ordering::Relaxed);
                self.gauge.set(1.0);
                tracing::info!(target = %self.name, "health check passed: circuit half-open");
            }
        } else {
            self.failures.fetch_max(self.threshold.max(1), Ordering::Relaxed);
            self.open(now_ms, "health check failed");
        }
    }

    /// Counts one call in the error-ratio window; true when the window says open.
    fn ratio_says_open(&self, ok: bool, now_ms: u64) -> bool {
        let Some(w) = &self.ratio else { return false };
        let start = w.start_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(start) >= w.window_ms
            && w.start_ms.compare_exchange(start, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            // a new window; counts racing with the reset may land in either
            w.calls.store(0, Ordering::Relaxed);
            w.failed.store(0, Ordering::Relaxed);
        }
        let calls = w.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let failed = if ok { w.failed.load(Ordering::Relaxed) } else { w.failed.fetch_add(1, Ordering::Relaxed) + 1 };
        !ok && calls >= w.min_requests && f64::from(failed) >= w.ratio * f64::from(calls)
    }

    /// Whether requests may go to this provider now (closed, or half-open).
    pub fn allows(&self, now_ms: u64) -> bool {
        now_ms >= self.open_until_ms.load(Ordering::Relaxed)
    }

    /// One call's outcome: `ok` unless it failed in a way another try could fix.
    pub fn record(&self, ok: bool, now_ms: u64) {
        if self.ratio_says_open(ok, now_ms) {
            if let Some(w) = &self.ratio {
                // a new window starts: the half-open probes are judged on their own
                w.start_ms.store(now_ms, Ordering::Relaxed);
                w.calls.store(0, Ordering::Relaxed);
                w.failed.store(0, Ordering::Relaxed);
            }
            self.failures.fetch_max(self.threshold.max(1), Ordering::Relaxed);
            return self.open(now_ms, "error ratio");
        }
        if self.threshold == 0 && self.ratio.is_none() {
            return;
        }
        if ok {
            if self.failures.swap(0, Ordering::Relaxed) >= self.threshold {
                self.open_until_ms.store(0, Ordering::Relaxed);
                self.gauge.set(1.0);
                tracing::info!(target = %self.name, "circuit closed");
            }
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if self.threshold > 0 && failures >= self.threshold {
            self.open(now_ms, "consecutive failures");
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

    #[test]
    fn an_error_ratio_opens_it_even_between_successes() {
        // consecutive failures alone would never open it: every other call succeeds
        let b =
            Breaker::new("r", 5, Duration::from_millis(100)).with_error_ratio(Some(0.5), 10, Duration::from_secs(1));
        for t in 0..9 {
            b.record(t % 2 == 0, t);
        }
        assert!(b.allows(9), "9 calls: below min_requests");
        b.record(false, 9);
        assert!(!b.allows(10), "5 of 10 failed");
        // half-open after the cooldown; a success closes it, and the window starts over
        b.record(true, 110);
        for t in 111..120 {
            b.record(t % 3 != 0, t);
        }
        assert!(b.allows(120), "3 of 10 failed: below the ratio");
        // a window that ends resets the counts
        let c =
            Breaker::new("s", 0, Duration::from_millis(100)).with_error_ratio(Some(0.5), 4, Duration::from_millis(50));
        c.record(false, 0);
        c.record(false, 1);
        c.record(true, 2);
        c.record(false, 60); // new window: 1 call
        assert!(c.allows(61));
    }

    #[test]
    fn health_checks_open_it_and_make_it_half_open() {
        let b = Breaker::new("h", 3, Duration::from_millis(1000));
        b.check(false, 0);
        assert!(!b.allows(1), "a failed check opens it");
        b.check(true, 500);
        assert!(b.allows(500), "a passing check lets traffic probe it");
        b.record(false, 501);
        assert!(!b.allows(502), "a half-open failure opens it again");
        b.check(true, 600);
        b.record(true, 601);
        b.record(false, 602);
        assert!(b.allows(603), "closed by the success");
    }
}
