//! Limits and budgets shared by every instance (with `[nats]`): one truth for N gateways.
//!
//! Each limited quantity of a scope (requests and tokens per minute, tokens per day,
//! USD per budget period) has, per window, one counter in a JetStream key-value bucket:
//! the units granted to instances so far. An instance takes a *lease* (a chunk of the
//! window's units, by compare-and-set on the counter) and admits requests from it
//! locally, going back to the bucket only when its lease runs out. The counters never
//! grant more than the limit, so N instances together admit at most the limit, never N
//! times it. The price of that exactness: a lease an instance does not use up before
//! the window ends is lost (under-admission of at most one chunk per instance per
//! window), and a request that needs a new lease waits for one key-value round trip.
//! Chunks are a tenth of the limit: few round trips, small loss.
//!
//! Windows are fixed: the UTC minute for requests and tokens per minute, the UTC day
//! for tokens per day, the budget's period. Token and cost reservations are reconciled
//! with the real usage against the instance's lease (a refund stays local).
//! Concurrent-request limits stay per instance.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::actors::messages::{Demand, RateHeaders, Reconcile, Refused, Scope, Scopes};
use crate::error::LimitKind;
use crate::types::unix_ms;

/// What [`QuotaStore::grant`] returns: `(granted, granted_before)`.
pub type Grant<'a> = Pin<Box<dyn Future<Output = Result<(u64, u64), String>> + Send + 'a>>;

/// The counters' home (JetStream key-value in the gateway; anything with a
/// compare-and-set counter could be).
pub trait QuotaStore: Send + Sync {
    /// Grants up to `want` of the `limit` units of counter `key` (which starts at 0):
    /// returns `(granted, granted_before)`; `granted` is 0 when the window is spent.
    fn grant(&self, key: String, limit: u64, want: u64) -> Grant<'_>;
}

/// Which quantity of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Requests,
    Tokens,
    DayTokens,
    Budget,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Requests => "rpm",
            Kind::Tokens => "tpm",
            Kind::DayTokens => "tpd",
            Kind::Budget => "usd",
        }
    }

    fn limit_kind(self) -> LimitKind {
        match self {
            Kind::Requests => LimitKind::Requests,
            Kind::Tokens => LimitKind::Tokens,
            Kind::DayTokens => LimitKind::DailyTokens,
            Kind::Budget => LimitKind::Budget,
        }
    }
}

/// USD are counted in micro-dollars.
const MICRO: f64 = 1_000_000.0;

/// The shared quantities of a scope: (kind, limit in units, window id, window end ms, units this request needs).
fn quantities(scope: &Scope, demand: Demand, now_ms: u64) -> Vec<(Kind, u64, u64, u64, u64)> {
    const MIN: u64 = 60_000;
    const DAY: u64 = 86_400_000;
    let minute = now_ms / MIN;
    let day = now_ms / DAY;
    let mut out = Vec::new();
    let l = scope.limits;
    if let Some(rpm) = l.rpm {
        out.push((Kind::Requests, u64::from(rpm), minute, (minute + 1) * MIN, 1));
    }
    if let Some(tpm) = l.tpm {
        out.push((Kind::Tokens, tpm, minute, (minute + 1) * MIN, demand.tokens.min(tpm)));
    }
    if let Some(tpd) = l.tpd {
        out.push((Kind::DayTokens, tpd, day, (day + 1) * DAY, demand.tokens.min(tpd)));
    }
    if let Some(b) = scope.budget {
        let start = b.period.start_ms(now_ms);
        let end = match b.period {
            switchyard_config::BudgetPeriod::Total => now_ms + 3_600_000,
            switchyard_config::BudgetPeriod::Day => start + DAY,
            p => p.start_ms(start + 32 * DAY),
        };
        let need = (demand.cost_usd * MICRO).ceil().max(0.0) as u64;
        out.push((Kind::Budget, (b.usd * MICRO).floor() as u64, start, end, need));
    }
    out
}

/// This instance's lease on one counter, shared without locks: requests take from it,
/// finished requests give back what they did not use.
#[derive(Debug, Default)]
struct Lease {
    window: AtomicU64,
    /// Units of the lease not used yet (negative: an overshoot to repay).
    units: AtomicI64,
    /// The counter as last seen in the bucket (for the headers).
    granted: AtomicU64,
    /// The limit its units were granted under (0: none yet).
    limit: AtomicU64,
}

impl Lease {
    /// Moves the lease to `window` (a new window starts empty).
    fn at(&self, window: u64) {
        let seen = self.window.load(Ordering::Acquire);
        if seen != window && self.window.compare_exchange(seen, window, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.units.store(0, Ordering::Release);
            self.granted.store(0, Ordering::Release);
        }
    }

    /// Holds the lease to `limit`: units granted under another limit (a key's limit
    /// lowered or raised since) are not used, so that a lowered limit holds at once; the
    /// bucket is asked again under the new one. (An overshoot still owed is kept.)
    fn under(&self, limit: u64) {
        let seen = self.limit.swap(limit, Ordering::AcqRel);
        if seen != 0 && seen != limit {
            let mut cur = self.units.load(Ordering::Acquire);
            while cur > 0 {
                match self.units.compare_exchange_weak(cur, 0, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
        }
    }

    /// Takes `need` units if the lease has them.
    fn take(&self, need: i64) -> bool {
        let mut cur = self.units.load(Ordering::Acquire);
        loop {
            if cur < need {
                return false;
            }
            match self.units.compare_exchange_weak(cur, cur - need, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Adds units (a grant, a refund, or a negative overshoot) while still in `window`.
    fn give(&self, window: u64, units: i64) {
        if self.window.load(Ordering::Acquire) == window {
            self.units.fetch_add(units, Ordering::AcqRel);
        }
    }
}

/// Leases by scope and quantity.
type Leases = HashMap<(Arc<str>, Kind), Arc<Lease>>;

/// A request's hold on shared units, given back (as a reconciliation) when it ends.
pub struct SharedTicket {
    shared: Arc<SharedLimits>,
    taken: Vec<(Arc<str>, Kind, u64, u64)>,
    actual_tokens: Option<u64>,
    actual_cost: Option<f64>,
}

impl Reconcile for SharedTicket {
    fn set_actual(&mut self, tokens: u64) {
        self.actual_tokens = Some(tokens);
    }

    fn set_actual_cost(&mut self, usd: f64) {
        self.actual_cost = Some(usd);
    }
}

impl Drop for SharedTicket {
    fn drop(&mut self) {
        for (scope, kind, window, reserved) in &self.taken {
            let actual = match kind {
                Kind::Requests => continue,
                Kind::Tokens | Kind::DayTokens => match self.actual_tokens {
                    Some(t) => t,
                    None => continue,
                },
                Kind::Budget => match self.actual_cost {
                    Some(c) => (c * MICRO).ceil().max(0.0) as u64,
                    None => continue,
                },
            };
            // the unused part comes back to this instance's lease; an overshoot is owed
            self.shared.lease(scope, *kind).give(*window, *reserved as i64 - actual as i64);
        }
    }
}

/// Why shared admission did not admit.
pub enum SharedRefusal {
    Limited(Refused),
    /// The bucket cannot be reached: the caller falls back to per-instance limits.
    Unavailable(String),
}

pub struct SharedLimits {
    store: Box<dyn QuotaStore>,
    /// Copied on the rare insert (a scope's first request), read without locks.
    leases: ArcSwap<Leases>,
    /// One bucket round trip at a time (leases are rare; this keeps instances from
    /// racing themselves on the same counter).
    fetch: tokio::sync::Mutex<()>,
    /// After the bucket failed to answer, unix ms until which it is not asked again:
    /// requests go straight to per-instance limits instead of each waiting for a timeout.
    down_until_ms: AtomicU64,
}

/// How long the bucket is left alone after it failed to answer.
const RETRY_AFTER_FAILURE_MS: u64 = 2_000;

/// Share of a limit one lease takes.
const CHUNK: f64 = 0.1;

impl SharedLimits {
    pub fn new(store: Box<dyn QuotaStore>) -> Arc<SharedLimits> {
        Arc::new(SharedLimits {
            store,
            leases: ArcSwap::from_pointee(HashMap::new()),
            fetch: tokio::sync::Mutex::new(()),
            down_until_ms: AtomicU64::new(0),
        })
    }

    /// The lease of a scope's quantity (created empty on first use).
    fn lease(&self, scope: &Arc<str>, kind: Kind) -> Arc<Lease> {
        let key = (scope.clone(), kind);
        if let Some(l) = self.leases.load().get(&key) {
            return l.clone();
        }
        self.leases.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(key.clone()).or_default();
            m
        });
        self.leases.load().get(&key).cloned().unwrap_or_default()
    }

    /// Whether any scope has something to share.
    pub fn applies(scopes: &[Scope]) -> bool {
        scopes
            .iter()
            .any(|s| s.budget.is_some() || s.limits.rpm.is_some() || s.limits.tpm.is_some() || s.limits.tpd.is_some())
    }

    /// Takes the demand from every scope's shared quantities, or nothing.
    pub async fn take(
        self: &Arc<Self>,
        scopes: &Scopes,
        demand: Demand,
    ) -> Result<(SharedTicket, RateHeaders), SharedRefusal> {
        let now_ms = unix_ms();
        if now_ms < self.down_until_ms.load(Ordering::Relaxed) {
            return Err(SharedRefusal::Unavailable("the shared limits bucket did not answer recently".into()));
        }
        let mut ticket =
            SharedTicket { shared: self.clone(), taken: Vec::new(), actual_tokens: None, actual_cost: None };
        let mut headers = RateHeaders::default();
        for scope in scopes.iter() {
            for (kind, limit, window, end, need) in quantities(scope, demand, now_ms) {
                let lease = self.lease(&scope.id, kind);
                lease.under(limit);
                loop {
                    lease.at(window);
                    if lease.take(need as i64) {
                        ticket.taken.push((scope.id.clone(), kind, window, need));
                        let left = lease.units.load(Ordering::Acquire).max(0) as u64;
                        let remaining = limit.saturating_sub(lease.granted.load(Ordering::Acquire)) + left;
                        let reset = Duration::from_millis(end.saturating_sub(now_ms));
                        match kind {
                            Kind::Requests if headers.remaining_requests.is_none_or(|r| remaining < r) => {
                                headers.limit_requests = Some(limit);
                                headers.remaining_requests = Some(remaining);
                                headers.reset_requests = Some(reset);
                            }
                            Kind::Tokens if headers.remaining_tokens.is_none_or(|r| remaining < r) => {
                                headers.limit_tokens = Some(limit);
                                headers.remaining_tokens = Some(remaining);
                                headers.reset_tokens = Some(reset);
                            }
                            _ => {}
                        }
                        break;
                    }
                    let (got, before) = {
                        let _one = self.fetch.lock().await;
                        // another request may have fetched while this one waited
                        if lease.units.load(Ordering::Acquire) >= need as i64 {
                            continue;
                        }
                        let missing = need as i64 - lease.units.load(Ordering::Acquire);
                        let want = (missing.max(0) as u64).max((limit as f64 * CHUNK).ceil() as u64).max(1);
                        let counter = format!("{}.{}.{window}", kind.as_str(), hex::encode(scope.id.as_bytes()));
                        match self.store.grant(counter, limit, want).await {
                            Ok(g) => g,
                            Err(e) => {
                                self.down_until_ms.store(unix_ms() + RETRY_AFTER_FAILURE_MS, Ordering::Relaxed);
                                // what this request took comes back before it falls back
                                for (s, k, w, units) in std::mem::take(&mut ticket.taken) {
                                    self.lease(&s, k).give(w, units as i64);
                                }
                                return Err(SharedRefusal::Unavailable(e));
                            }
                        }
                    };
                    lease.give(window, got as i64);
                    lease.granted.fetch_max(before + got, Ordering::AcqRel);
                    if got == 0 {
                        // the window is spent everywhere: give back what this request took
                        for (s, k, w, units) in std::mem::take(&mut ticket.taken) {
                            self.lease(&s, k).give(w, units as i64);
                        }
                        return Err(SharedRefusal::Limited(Refused {
                            kind: kind.limit_kind(),
                            retry_after: Duration::from_millis(end.saturating_sub(unix_ms()).max(1000)),
                            headers: Box::new(RateHeaders {
                                limit_requests: (kind == Kind::Requests).then_some(limit),
                                remaining_requests: (kind == Kind::Requests).then_some(0),
                                ..Default::default()
                            }),
                            scope: scope.id.clone(),
                        }));
                    }
                }
            }
        }
        Ok((ticket, headers))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use switchyard_config::{Budget, BudgetPeriod, Limits};

    use super::*;

    /// One counter in memory (the lease logic is what is tested here; the JetStream
    /// counters are tested with two gateways on a real nats-server).
    #[derive(Default)]
    struct Memory(HashMap<String, AtomicU64>);

    impl QuotaStore for Memory {
        fn grant(&self, key: String, limit: u64, want: u64) -> Grant<'_> {
            Box::pin(async move {
                let c = self.0.get(&key).ok_or_else(|| format!("no counter {key}"))?;
                let before = c.load(Ordering::SeqCst);
                let take = want.min(limit.saturating_sub(before));
                c.fetch_add(take, Ordering::SeqCst);
                Ok((take, before))
            })
        }
    }

    #[tokio::test]
    async fn leases_take_chunks_refund_locally_and_roll_back_refusals() {
        let key: Arc<str> = Arc::from("key:k");
        let budget = Some(Budget { usd: 1.0, period: BudgetPeriod::Total });
        let scope = Scope { id: key.clone(), limits: Limits { rpm: Some(20), ..Default::default() }, budget };
        let now = unix_ms();
        let counters: HashMap<String, AtomicU64> =
            [format!("rpm.{}.{}", hex::encode("key:k"), now / 60_000), format!("usd.{}.0", hex::encode("key:k"))]
                .into_iter()
                .map(|k| (k, AtomicU64::new(0)))
                .collect();
        let shared = SharedLimits::new(Box::new(Memory(counters)));
        let scopes: Scopes = Arc::from(vec![scope]);
        let demand = Demand { tokens: 10, cost_usd: 0.3 };
        // a lease is a tenth of the limit (2 requests) or what the request needs
        let (mut t1, h) = shared.take(&scopes, demand).await.ok().unwrap();
        assert_eq!((h.limit_requests, h.remaining_requests), (Some(20), Some(19)));
        let (t2, _) = shared.take(&scopes, demand).await.ok().unwrap();
        let (t3, _) = shared.take(&scopes, demand).await.ok().unwrap();
        // $0.90 reserved of $1: a fourth is refused, and gives its request unit back
        let err = shared.take(&scopes, demand).await.err().unwrap();
        assert!(matches!(err, SharedRefusal::Limited(ref r) if r.kind == LimitKind::Budget));
        assert_eq!(shared.lease(&key, Kind::Requests).units.load(Ordering::SeqCst), 1);
        // the first cost $0.05 really: $0.25 comes back to this instance's lease
        t1.set_actual_cost(0.05);
        drop(t1);
        assert!(shared.take(&scopes, demand).await.is_ok());
        drop((t2, t3));
        // the bucket never granted more than the budget
        assert!(shared.lease(&key, Kind::Budget).granted.load(Ordering::SeqCst) <= 1_000_000);
    }

    #[tokio::test]
    async fn a_lowered_limit_holds_at_once_despite_the_lease() {
        let key: Arc<str> = Arc::from("key:k");
        let now = unix_ms();
        // this minute's counter and the next's (the test may run across the minute's end)
        let counters: HashMap<String, AtomicU64> = [now / 60_000, now / 60_000 + 1]
            .map(|m| (format!("rpm.{}.{m}", hex::encode("key:k")), AtomicU64::new(0)))
            .into_iter()
            .collect();
        let shared = SharedLimits::new(Box::new(Memory(counters)));
        let at = |rpm: u32| -> Scopes {
            Arc::from(vec![Scope {
                id: key.clone(),
                limits: Limits { rpm: Some(rpm), ..Default::default() },
                budget: None,
            }])
        };
        let demand = Demand { tokens: 1, cost_usd: 0.0 };
        // at 100/min the lease holds 10; 3 are used
        for _ in 0..3 {
            assert!(shared.take(&at(100), demand).await.is_ok());
        }
        assert_eq!(shared.lease(&key, Kind::Requests).units.load(Ordering::SeqCst), 7);
        // lowered to 1/min: the 10 granted this minute are past it, the next is refused
        // (unless the window just turned: then one is admitted and the next refused)
        let mut refused = false;
        for _ in 0..2 {
            refused |= matches!(shared.take(&at(1), demand).await, Err(SharedRefusal::Limited(_)));
        }
        assert!(refused, "a lowered limit is not waved through by the old lease");
        // raised again: the bucket grants under the new limit
        assert!(shared.take(&at(1000), demand).await.is_ok());
    }
}
