//! What the router knows about a target (a provider and upstream model): its circuit
//! breaker, a peak-EWMA of its observed latency and the requests in flight to it (for
//! the `latency` strategy), shared without locks between the request threads (which
//! observe) and the router (which reads).
//!
//! Peak EWMA, as in Finagle and linkerd: an observation above the average replaces it at
//! once (a target that turns slow is penalised by its first slow answer), one below it
//! is folded in with a weight that grows with the time since the last observation
//! (`1 - e^(-dt/TAU)`). The router scores a target `ewma * (inflight + 1)`; an estimate
//! that has not been refreshed loses half its weight every `IDLE_HALF_LIFE`, so a target
//! that was shunned for being slow is probed again once the estimate has decayed.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::breaker::{Breaker, BreakerSettings};
use crate::metrics::TARGET_LATENCY_EWMA;

/// Time constant of the moving average.
pub const TAU: Duration = Duration::from_secs(2);
/// Half-life of an estimate that gets no new observations.
pub const IDLE_HALF_LIFE: Duration = Duration::from_secs(5);
/// What a failed call counts as (a refused connection is fast, but not a good answer).
pub const FAILURE_PENALTY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct TargetLoad {
    ewma_ns: AtomicU64,
    /// Unix ms of the last observation (0: none yet).
    stamp_ms: AtomicU64,
    inflight: AtomicU32,
    gauge: metrics::Gauge,
    /// The target's circuit breaker, with the provider's settings.
    pub breaker: Breaker,
    pub settings: BreakerSettings,
}

impl TargetLoad {
    pub fn new(provider: &str, model: &str, settings: &BreakerSettings) -> TargetLoad {
        let gauge =
            metrics::gauge!(TARGET_LATENCY_EWMA, "provider" => provider.to_string(), "model" => model.to_string());
        TargetLoad {
            ewma_ns: AtomicU64::new(0),
            stamp_ms: AtomicU64::new(0),
            inflight: AtomicU32::new(0),
            gauge,
            breaker: Breaker::for_target(provider, model, settings),
            settings: *settings,
        }
    }

    /// One call's latency (to the first byte for a stream); a failure counts as at
    /// least [`FAILURE_PENALTY`].
    pub fn observe(&self, latency: Duration, ok: bool, now_ms: u64) {
        let rtt = if ok { latency } else { latency.max(FAILURE_PENALTY) };
        let rtt = rtt.as_nanos().min(u128::from(u64::MAX)) as u64;
        let last = self.stamp_ms.swap(now_ms, Ordering::Relaxed);
        let old = self.ewma_ns.load(Ordering::Relaxed);
        let new = if last == 0 || rtt >= old {
            rtt
        } else {
            let dt = now_ms.saturating_sub(last) as f64;
            let w = (-dt / TAU.as_millis() as f64).exp();
            (old as f64 * w + rtt as f64 * (1.0 - w)) as u64
        };
        // a concurrent observation may be lost; the average does not need every one
        self.ewma_ns.store(new, Ordering::Relaxed);
        self.gauge.set(new as f64 / 1e9);
    }

    /// The estimate now, in ns, decayed for the time without observations.
    pub fn ewma_ns(&self, now_ms: u64) -> f64 {
        let ewma = self.ewma_ns.load(Ordering::Relaxed) as f64;
        let idle = now_ms.saturating_sub(self.stamp_ms.load(Ordering::Relaxed)) as f64;
        ewma * (-idle * std::f64::consts::LN_2 / IDLE_HALF_LIFE.as_millis() as f64).exp()
    }

    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// What the `latency` strategy minimises. A target never observed scores 0, so
    /// it is tried (and measured) first.
    pub fn score(&self, now_ms: u64) -> f64 {
        self.ewma_ns(now_ms) * f64::from(self.inflight() + 1)
    }
}

/// A request's hold on its target: counts it in flight (for the `latency` score and the
/// target's `max_concurrency`) until dropped, and carries the target's load for the
/// latency observation.
#[derive(Debug)]
pub struct TargetSlot {
    pub load: Arc<TargetLoad>,
    limit: Option<Arc<AtomicU32>>,
}

impl TargetSlot {
    pub fn take(load: Arc<TargetLoad>, limit: Option<Arc<AtomicU32>>) -> TargetSlot {
        load.inflight.fetch_add(1, Ordering::Relaxed);
        if let Some(l) = &limit {
            l.fetch_add(1, Ordering::Relaxed);
        }
        TargetSlot { load, limit }
    }
}

impl Drop for TargetSlot {
    fn drop(&mut self) {
        self.load.inflight.fetch_sub(1, Ordering::Relaxed);
        if let Some(l) = &self.limit {
            l.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn peaks_at_once_and_decays_slowly() {
        let l = TargetLoad::new("p", "m", &BreakerSettings::default());
        assert_eq!(l.score(0), 0.0, "never observed: tried first");
        l.observe(Duration::from_millis(10), true, 1_000);
        assert_eq!(l.ewma_ns(1_000), 10.0 * MS as f64);
        l.observe(Duration::from_millis(200), true, 1_001);
        assert_eq!(l.ewma_ns(1_001), 200.0 * MS as f64, "a slower answer replaces the average at once");
        // a fast answer 100 ms later moves it by 1 - e^(-0.05), about 5%
        l.observe(Duration::from_millis(10), true, 1_101);
        let e = l.ewma_ns(1_101) / MS as f64;
        assert!((189.0..192.0).contains(&e), "{e}");
        // after a long quiet spell the next observation dominates
        l.observe(Duration::from_millis(10), true, 61_101);
        assert!(l.ewma_ns(61_101) / (MS as f64) < 10.1);
        // a failure counts as at least the penalty
        l.observe(Duration::from_millis(1), false, 61_102);
        assert_eq!(l.ewma_ns(61_102), FAILURE_PENALTY.as_nanos() as f64);
        // idle: half the estimate after one half-life
        let half = l.ewma_ns(61_102 + IDLE_HALF_LIFE.as_millis() as u64);
        assert!((half / FAILURE_PENALTY.as_nanos() as f64 - 0.5).abs() < 1e-9);
    }

    #[test]
    fn slots_count_in_flight_requests_until_dropped() {
        let l = Arc::new(TargetLoad::new("p", "m2", &BreakerSettings::default()));
        l.observe(Duration::from_millis(4), true, 10);
        let limit = Arc::new(AtomicU32::new(0));
        let a = TargetSlot::take(l.clone(), Some(limit.clone()));
        let b = TargetSlot::take(l.clone(), None);
        assert_eq!((l.inflight(), limit.load(Ordering::Relaxed)), (2, 1));
        assert_eq!(l.score(10), 3.0 * 4.0 * MS as f64);
        drop(a);
        drop(b);
        assert_eq!((l.inflight(), limit.load(Ordering::Relaxed)), (0, 0));
    }
}
