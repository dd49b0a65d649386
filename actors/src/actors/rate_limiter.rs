//! Rate limiter: per key, requests per minute and tokens per minute (token buckets that
//! refill continuously) and concurrent requests. Tokens are reserved from the estimate
//! before the call and reconciled with the real usage after (`Settle`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use switchyard_config::Budget;
use tokio::sync::mpsc;

use super::messages::{
    deliver, forward, CacheDecision, Demand, Job, LimitTicket, NextStages, RateHeaders, Refusal, Refused, Release,
    Scope, Settle, To,
};
use crate::metrics::BUDGET_REMAINING;

pub use crate::error::LimitKind;

/// A bucket of `capacity` that refills at `capacity` per `period`.
#[derive(Debug, Clone)]
struct Bucket {
    level: f64,
    capacity: f64,
    period_secs: f64,
    at: Instant,
}

impl Bucket {
    fn new(capacity: u64, period: Duration, now: Instant) -> Bucket {
        Bucket { level: capacity as f64, capacity: capacity as f64, period_secs: period.as_secs_f64(), at: now }
    }

    fn refill(&mut self, capacity: u64, now: Instant) {
        let capacity = capacity as f64;
        if capacity != self.capacity {
            // a reload changed the limit: keep what was used
            self.level += capacity - self.capacity;
            self.capacity = capacity;
        }
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * self.capacity / self.period_secs).min(self.capacity);
        self.at = now;
    }

    /// Time until `amount` is available.
    fn wait_for(&self, amount: f64) -> Duration {
        let missing = amount - self.level;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing * self.period_secs / self.capacity)
        }
    }

    fn reset(&self) -> Duration {
        self.wait_for(self.capacity)
    }

    fn remaining(&self) -> u64 {
        self.level.max(0.0).floor() as u64
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// A budget's spend in its current period.
#[derive(Debug)]
struct Spend {
    period_start_ms: u64,
    /// Reconciled cost of finished requests.
    spent: f64,
    /// Reserved by requests in flight.
    reserved: f64,
    gauge: metrics::Gauge,
}

#[derive(Debug, Default)]
struct ScopeState {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    day_tokens: Option<Bucket>,
    inflight: u32,
    spend: Option<Spend>,
}

impl ScopeState {
    /// Brings the buckets to `now` (creating, resizing or dropping them as the limits
    /// say) and the budget to its current period.
    fn refresh(&mut self, scope: &Scope, now: Instant, now_ms: u64) {
        fn bucket(b: &mut Option<Bucket>, limit: Option<u64>, period: Duration, now: Instant) {
            match limit {
                Some(cap) => b.get_or_insert_with(|| Bucket::new(cap, period, now)).refill(cap, now),
                None => *b = None,
            }
        }
        bucket(&mut self.requests, scope.limits.rpm.map(u64::from), MINUTE, now);
        bucket(&mut self.tokens, scope.limits.tpm, MINUTE, now);
        bucket(&mut self.day_tokens, scope.limits.tpd, DAY, now);
        match scope.budget {
            None => self.spend = None,
            Some(b) => {
                let start = b.period.start_ms(now_ms);
                let s = self.spend.get_or_insert_with(|| Spend {
                    period_start_ms: start,
                    spent: 0.0,
                    reserved: 0.0,
                    gauge: metrics::gauge!(BUDGET_REMAINING, "scope" => scope.id.to_string()),
                });
                if s.period_start_ms != start {
                    // a new day or month: what was spent before does not count
                    s.period_start_ms = start;
                    s.spent = 0.0;
                }
            }
        }
    }

    /// Whether the demand fits every limit of the scope (nothing is taken).
    fn refuse(&self, scope: &Scope, demand: Demand) -> Option<(LimitKind, Duration)> {
        if let Some(b) = &self.requests {
            if b.level < 1.0 {
                return Some((LimitKind::Requests, b.wait_for(1.0)));
            }
        }
        // a request larger than a whole bucket waits for a full bucket
        for (b, kind) in [(&self.tokens, LimitKind::Tokens), (&self.day_tokens, LimitKind::DailyTokens)] {
            if let Some(b) = b {
                let need = (demand.tokens as f64).min(b.capacity);
                if b.level < need {
                    return Some((kind, b.wait_for(need)));
                }
            }
        }
        if let Some(max) = scope.limits.max_concurrent {
            if self.inflight >= max {
                return Some((LimitKind::Concurrency, Duration::from_secs(1)));
            }
        }
        if let (Some(s), Some(b)) = (&self.spend, scope.budget) {
            if s.spent + s.reserved + demand.cost_usd > b.usd + 1e-12 {
                let wait = match b.period {
                    switchyard_config::BudgetPeriod::Total => Duration::from_secs(3600),
                    p => {
                        let next = match p {
                            switchyard_config::BudgetPeriod::Day => s.period_start_ms + 86_400_000,
                            _ => p.start_ms(s.period_start_ms + 32 * 86_400_000),
                        };
                        Duration::from_millis(next.saturating_sub(crate::types::unix_ms()).max(1000))
                    }
                };
                return Some((LimitKind::Budget, wait));
            }
        }
        None
    }

    fn take(&mut self, demand: Demand) {
        if let Some(b) = &mut self.requests {
            b.level -= 1.0;
        }
        // a reservation takes at most a whole bucket: a request that asks for more
        // (`max_tokens` of 10^15) waits for a full bucket and takes it, and the others
        // wait one period at most, never for ever
        for b in [&mut self.tokens, &mut self.day_tokens].into_iter().flatten() {
            b.level -= (demand.tokens as f64).min(b.capacity);
        }
        self.inflight += 1;
        if let Some(s) = &mut self.spend {
            s.reserved += demand.cost_usd;
        }
    }

    fn publish(&self, budget: Option<Budget>) {
        if let (Some(s), Some(b)) = (&self.spend, budget) {
            s.gauge.set((b.usd - s.spent - s.reserved).max(0.0));
        }
    }
}

/// Spend already in the ledger for the current period of each budget (at start).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SeedSpend(pub Vec<(Scope, f64)>);

/// How often the limiter drains its settle queue when no admission does it first.
///
/// Finished requests put their settle (concurrency slot, token correction, provider slot)
/// on a queue instead of the limiter's mailbox, so the end of a request costs no
/// cross-thread wake-up (a third of the wake-ups per request before). Every admission
/// drains the queue before it checks limits, so a request never sees a stale count
/// left by one that finished before it; the tick bounds the delay of a provider slot's
/// release when no request arrives (a queued request waits at most this much longer)
/// and of the budget gauges. It runs only while admitted requests have not settled:
/// an idle gateway's limiter sleeps (ticking always, it woke its thread 500 times a
/// second and cost an idle gateway 2% of a CPU).
pub const SETTLE_TICK: Duration = Duration::from_millis(2);

/// Settles waiting before the mailbox is used instead.
const SETTLE_QUEUE: usize = 1 << 16;

pub struct RateLimiter {
    scopes: HashMap<Arc<str>, ScopeState>,
    /// `None` (unit tests): admitted jobs are answered here.
    next: Option<NextStages>,
    settle_tx: mpsc::Sender<Settle>,
    settle_rx: mpsc::Receiver<Settle>,
    /// Tickets handed out and not yet settled.
    unsettled: usize,
    /// The settle tick, while `unsettled > 0`.
    tick: Option<SpawnHandle>,
    /// Its own address as tickets hold it (made once).
    me: Option<To<Settle>>,
}

impl Default for RateLimiter {
    fn default() -> RateLimiter {
        let (settle_tx, settle_rx) = mpsc::channel(SETTLE_QUEUE);
        RateLimiter { scopes: HashMap::new(), next: None, settle_tx, settle_rx, unsettled: 0, tick: None, me: None }
    }
}

impl RateLimiter {
    pub fn new(next: NextStages) -> RateLimiter {
        RateLimiter { next: Some(next), ..RateLimiter::default() }
    }

    /// Applies every queued settle.
    fn drain_settles(&mut self) {
        let now = Instant::now();
        while let Ok(msg) = self.settle_rx.try_recv() {
            self.apply(msg, now);
        }
    }

    /// Starts the settle tick for a ticket just handed out, unless it runs.
    fn ticket_out(&mut self, ctx: &mut Context<Self>) {
        self.unsettled += 1;
        if self.tick.is_none() {
            self.tick = Some(ctx.run_interval(SETTLE_TICK, |limiter, ctx| {
                limiter.drain_settles();
                if limiter.unsettled == 0 {
                    if let Some(h) = limiter.tick.take() {
                        ctx.cancel_future(h);
                    }
                }
            }));
        }
    }

    fn apply(&mut self, msg: Settle, now: Instant) {
        self.unsettled = self.unsettled.saturating_sub(1);
        self.settle(&msg, now);
        if let Some((worker, background)) = &msg.release {
            deliver(worker, Release { background: *background });
        }
    }

    /// The admission decision (plain function, benchmarked): every scope's limits and
    /// budget must take the demand, or none is charged. The `x-ratelimit-*` headers
    /// report, for requests and for tokens per minute, the scope with the least left.
    pub fn check(&mut self, scopes: &[Scope], demand: Demand, now: Instant) -> Result<RateHeaders, Refused> {
        let now_ms = crate::types::unix_ms();
        for scope in scopes {
            let st = self.scopes.entry(scope.id.clone()).or_default();
            st.refresh(scope, now, now_ms);
            if let Some((kind, retry_after)) = st.refuse(scope, demand) {
                let headers = Box::new(self.headers(scopes));
                return Err(Refused { kind, retry_after, headers, scope: scope.id.clone() });
            }
        }
        for scope in scopes {
            if let Some(st) = self.scopes.get_mut(&scope.id) {
                st.take(demand);
                st.publish(scope.budget);
            }
        }
        Ok(self.headers(scopes))
    }

    fn headers(&self, scopes: &[Scope]) -> RateHeaders {
        let mut h = RateHeaders::default();
        for scope in scopes {
            let Some(st) = self.scopes.get(&scope.id) else { continue };
            if let Some(b) = &st.requests {
                if h.remaining_requests.is_none_or(|r| b.remaining() < r) {
                    h.limit_requests = Some(b.capacity as u64);
                    h.remaining_requests = Some(b.remaining());
                    h.reset_requests = Some(b.reset());
                }
            }
            if let Some(b) = &st.tokens {
                if h.remaining_tokens.is_none_or(|r| b.remaining() < r) {
                    h.limit_tokens = Some(b.capacity as u64);
                    h.remaining_tokens = Some(b.remaining());
                    h.reset_tokens = Some(b.reset());
                }
            }
        }
        h
    }

    pub fn settle(&mut self, msg: &Settle, now: Instant) {
        let now_ms = crate::types::unix_ms();
        for scope in msg.scopes.iter() {
            let Some(st) = self.scopes.get_mut(&scope.id) else { continue };
            // refilled to now, and a budget moved to its current period (a request
            // that began in the previous one is charged to this one)
            st.refresh(scope, now, now_ms);
            st.inflight = st.inflight.saturating_sub(1);
            if let Some(actual) = msg.actual {
                // refund what was reserved but not used, or charge the overshoot
                for b in [&mut st.tokens, &mut st.day_tokens].into_iter().flatten() {
                    let reserved = (msg.reserved.tokens as f64).min(b.capacity);
                    b.level = (b.level + reserved - actual as f64).min(b.capacity);
                }
            }
            if let Some(s) = &mut st.spend {
                s.reserved = (s.reserved - msg.reserved.cost_usd).max(0.0);
                s.spent += msg.actual_cost.unwrap_or(msg.reserved.cost_usd);
            }
            st.publish(scope.budget);
        }
    }
}

impl Actor for RateLimiter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
    }
}

/// First stage of admission: check the key's limits, take a ticket, pass the job on.
impl Handler<Job> for RateLimiter {
    type Result = ();

    fn handle(&mut self, Job(mut job): Job, ctx: &mut Self::Context) {
        self.drain_settles();
        let span = crate::telemetry::stage(&job.span, "switchyard.limits");
        let demand = Demand { tokens: job.tokens, cost_usd: job.cost_usd };
        match self.check(&job.scopes, demand, Instant::now()) {
            Err(refused) => {
                crate::telemetry::failed(&span, refused.kind.as_str());
                job.refuse(Refusal::Limited(refused))
            }
            Ok(headers) => {
                job.rate = Some(headers);
                let me = self.me.get_or_insert_with(|| Arc::new(ctx.address().recipient())).clone();
                let (key_id, scopes) = (job.key_id.clone(), job.scopes.clone());
                job.ticket = Some(LimitTicket::new(me, self.settle_tx.clone(), key_id, scopes, demand));
                self.ticket_out(ctx);
                match &self.next {
                    None => job.admit(CacheDecision::Bypass, None),
                    Some(next) if job.cache_key.is_some() => forward(ctx, &next.cache, Job(job), "cache"),
                    Some(next) => forward(ctx, &next.router, Job(job), "router"),
                }
            }
        }
    }
}

impl Handler<SeedSpend> for RateLimiter {
    type Result = ();

    fn handle(&mut self, SeedSpend(seed): SeedSpend, _: &mut Self::Context) {
        let (now, now_ms) = (Instant::now(), crate::types::unix_ms());
        for (scope, usd) in seed {
            let st = self.scopes.entry(scope.id.clone()).or_default();
            st.refresh(&scope, now, now_ms);
            if let Some(s) = &mut st.spend {
                s.spent += usd;
            }
            st.publish(scope.budget);
        }
    }
}

impl Handler<Settle> for RateLimiter {
    type Result = ();

    fn handle(&mut self, msg: Settle, _: &mut Self::Context) {
        self.drain_settles();
        self.apply(msg, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use switchyard_config::Limits;

    use super::*;
    use crate::actors::messages::{JobState, Scopes};

    fn lim(rpm: Option<u32>, tpm: Option<u64>, max_concurrent: Option<u32>) -> Limits {
        Limits { rpm, tpm, tpd: None, max_concurrent }
    }

    fn one(limits: Limits) -> Scopes {
        Arc::from(vec![Scope::key("k", limits, None)])
    }

    fn tokens(n: u64) -> Demand {
        Demand { tokens: n, cost_usd: 0.0 }
    }

    fn settle(scopes: &Scopes, reserved: Demand, actual: Option<u64>, actual_cost: Option<f64>) -> Settle {
        Settle { scopes: scopes.clone(), reserved, actual, actual_cost, release: None }
    }

    #[test]
    fn rpm_refuses_then_refills() {
        let mut rl = RateLimiter::default();
        let k = one(lim(Some(2), None, None));
        let t0 = Instant::now();
        assert!(rl.check(&k, tokens(0), t0).is_ok());
        let h = rl.check(&k, tokens(0), t0).unwrap();
        assert_eq!(h.remaining_requests, Some(0));
        let r = rl.check(&k, tokens(0), t0).unwrap_err();
        assert_eq!((r.kind, &*r.scope), (LimitKind::Requests, "key:k"));
        assert_eq!(r.retry_after, Duration::from_secs(30));
        assert!(rl.check(&k, tokens(0), t0 + Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn tpm_reserves_and_reconciles() {
        let mut rl = RateLimiter::default();
        let k = one(lim(None, Some(100), None));
        let t0 = Instant::now();
        rl.check(&k, tokens(80), t0).unwrap();
        let r = rl.check(&k, tokens(30), t0).unwrap_err();
        assert_eq!(r.kind, LimitKind::Tokens);
        assert!(r.retry_after > Duration::ZERO);
        // the first request really used 10: 70 come back
        rl.settle(&settle(&k, tokens(80), Some(10), None), t0);
        let h = rl.check(&k, tokens(30), t0).unwrap();
        assert_eq!(h.remaining_tokens, Some(60));
        // an overshoot is charged
        rl.settle(&settle(&k, tokens(30), Some(90), None), t0);
        assert_eq!(rl.check(&k, tokens(1), t0).unwrap_err().kind, LimitKind::Tokens);
    }

    #[test]
    fn tokens_per_day_refill_over_a_day() {
        let mut rl = RateLimiter::default();
        let k = one(Limits { tpd: Some(1000), ..Default::default() });
        let t0 = Instant::now();
        rl.check(&k, tokens(900), t0).unwrap();
        let r = rl.check(&k, tokens(200), t0).unwrap_err();
        assert_eq!(r.kind, LimitKind::DailyTokens);
        // 100 more tokens take a tenth of a day to come back
        assert_eq!(r.retry_after.as_secs(), 8640);
        assert!(rl.check(&k, tokens(200), t0 + Duration::from_secs(8640)).is_ok());
    }

    #[test]
    fn concurrency_counts_inflight() {
        let mut rl = RateLimiter::default();
        let k = one(lim(None, None, Some(1)));
        let t0 = Instant::now();
        rl.check(&k, tokens(0), t0).unwrap();
        assert_eq!(rl.check(&k, tokens(0), t0).unwrap_err().kind, LimitKind::Concurrency);
        rl.settle(&settle(&k, tokens(0), None, None), t0);
        assert!(rl.check(&k, tokens(0), t0).is_ok());
    }

    #[test]
    fn every_scope_must_admit_or_none_is_charged() {
        let mut rl = RateLimiter::default();
        let t0 = Instant::now();
        let team = Scope::team("t", lim(Some(3), None, None), None);
        let a: Scopes = Arc::from(vec![Scope::key("a", lim(Some(10), None, None), None), team.clone()]);
        let b: Scopes = Arc::from(vec![Scope::key("b", lim(Some(10), None, None), None), team]);
        rl.check(&a, tokens(0), t0).unwrap();
        rl.check(&b, tokens(0), t0).unwrap();
        let h = rl.check(&a, tokens(0), t0).unwrap();
        // the headers tell the tightest truth: the team has none left, not the key's 8
        assert_eq!((h.limit_requests, h.remaining_requests), (Some(3), Some(0)));
        let r = rl.check(&b, tokens(0), t0).unwrap_err();
        assert_eq!((r.kind, &*r.scope), (LimitKind::Requests, "team:t"));
        // the refused request took nothing from its key
        let only_b = one(lim(Some(10), None, None));
        let only_b: Scopes = Arc::from(vec![Scope { id: Arc::from("key:b"), ..only_b[0].clone() }]);
        assert_eq!(rl.check(&only_b, tokens(0), t0).unwrap().remaining_requests, Some(8));
    }

    #[test]
    fn budgets_reserve_then_reconcile_and_restart_from_the_seed() {
        let mut rl = RateLimiter::default();
        let t0 = Instant::now();
        let budget = Some(Budget { usd: 1.0, period: switchyard_config::BudgetPeriod::Day });
        let k: Scopes = Arc::from(vec![Scope::key("k", Limits::default(), budget)]);
        let d = Demand { tokens: 0, cost_usd: 0.3 };
        for _ in 0..3 {
            rl.check(&k, d, t0).unwrap();
        }
        let r = rl.check(&k, d, t0).unwrap_err();
        assert_eq!((r.kind, r.kind.code()), (LimitKind::Budget, "insufficient_quota"));
        // one really cost 0.05: 0.25 comes back, and a fourth fits
        rl.settle(&settle(&k, d, None, Some(0.05)), t0);
        rl.check(&k, d, t0).unwrap();
        assert!(rl.check(&k, d, t0).is_err());
        // a fresh limiter seeded with what the ledger holds refuses as the old one would
        let mut again = RateLimiter::default();
        let seed = SeedSpend(vec![(k[0].clone(), 0.8)]);
        for (scope, usd) in seed.0 {
            let st = again.scopes.entry(scope.id.clone()).or_default();
            st.refresh(&scope, t0, crate::types::unix_ms());
            st.spend.as_mut().unwrap().spent += usd;
        }
        assert!(again.check(&k, Demand { tokens: 0, cost_usd: 0.2 }, t0).is_ok());
        assert!(again.check(&k, Demand { tokens: 0, cost_usd: 0.01 }, t0).is_err());
    }

    #[test]
    fn headers_use_openai_names_and_durations() {
        let h = RateHeaders {
            limit_requests: Some(60),
            remaining_requests: Some(59),
            reset_requests: Some(Duration::from_millis(1500)),
            reset_tokens: Some(Duration::from_millis(250)),
            ..Default::default()
        };
        let p: Vec<_> = h.pairs().into_iter().map(|(n, v)| (n.name(), v)).collect();
        assert!(p.contains(&("x-ratelimit-reset-requests", "1.5s".into())));
        assert!(p.contains(&("x-ratelimit-reset-tokens", "250ms".into())));
        assert!(!p.iter().any(|(n, _)| *n == "x-ratelimit-limit-tokens"));
    }

    async fn admit(rl: &Addr<RateLimiter>, limits: Limits) -> crate::actors::messages::Answer {
        let (job, rx) =
            JobState::create("k".into(), one(limits), 0, "m".into(), switchyard_config::Priority::Normal, None);
        rl.send(job).await.unwrap();
        rx.await.unwrap()
    }

    #[actix_rt::test]
    async fn ticket_drop_releases_the_slot() {
        let rl = RateLimiter::default().start();
        let limits = lim(None, None, Some(1));
        let a = admit(&rl, limits).await;
        assert!(a.is_ok());
        let refused = admit(&rl, limits).await;
        assert!(matches!(refused, Err(Refusal::Limited(r)) if r.kind == LimitKind::Concurrency));
        drop(a); // the Settle goes ahead of the next job in the same mailbox
        assert!(admit(&rl, limits).await.is_ok());
    }

    /// Whether the settle tick runs.
    #[derive(Message)]
    #[rtype(result = "(bool, usize)")]
    struct Ticking;

    impl Handler<Ticking> for RateLimiter {
        type Result = MessageResult<Ticking>;

        fn handle(&mut self, _: Ticking, _: &mut Self::Context) -> MessageResult<Ticking> {
            MessageResult((self.tick.is_some(), self.unsettled))
        }
    }

    #[actix_rt::test]
    async fn the_settle_tick_runs_only_while_tickets_are_out() {
        let rl = RateLimiter::default().start();
        assert_eq!(rl.send(Ticking).await.unwrap(), (false, 0), "idle: no tick");
        let limits = lim(None, None, Some(1));
        let a = admit(&rl, limits).await;
        assert_eq!(rl.send(Ticking).await.unwrap(), (true, 1));
        // settled through the quiet queue: the tick applies it with no admission
        drop(a);
        let mut state = (true, 1);
        for _ in 0..100 {
            tokio::time::sleep(SETTLE_TICK).await;
            state = rl.send(Ticking).await.unwrap();
            if state == (false, 0) {
                break;
            }
        }
        assert_eq!(state, (false, 0), "the tick stops once every ticket settled");
        // the concurrency slot came back without another admission draining the queue
        assert!(admit(&rl, limits).await.is_ok());
        assert_eq!(rl.send(Ticking).await.unwrap(), (true, 1), "a new ticket starts it again");
    }
}
