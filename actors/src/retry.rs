//! The one backoff: every path that waits before trying again (same-target retries in
//! the upstream client, durable jobs) draws its delay here. Which failures deserve
//! another try is decided by the one classifier, [`crate::error::retryable_status`] and
//! [`crate::GatewayError::retryable`].

use std::time::Duration;

/// Exponential backoff with jitter in its upper half: `base * 2^(attempt-1)`, capped at
/// `max`, drawn from `[d/2, d]`. `attempt` counts from 1.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let d = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(max);
    d / 2 + d.mul_f64(fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_and_are_capped() {
        let (base, max) = (Duration::from_millis(50), Duration::from_secs(2));
        for attempt in 1..=40 {
            let full = base.saturating_mul(1 << (attempt - 1).min(16)).min(max);
            for _ in 0..50 {
                let d = backoff(base, max, attempt);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
    }
}
