//! Rate limiter: per key, requests per minute and tokens per minute (token buckets that
//! refill continuously) and concurrent requests. Tokens are reserved from the estimate
//! before the call and reconciled with the real usage after (`Settle`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use switchyard_config::Limits;
use tokio::sync::mpsc;

use super::cache::Cache;
use super::deliver;
use super::job::{forward, CacheDecision, Job, Refusal};
use super::provider_worker::{Permit, ProviderWorker, Release};
use super::router::Router;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
    Concurrency,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
            LimitKind::Concurrency => "concurrency",
        }
    }

    /// OpenAI-style error code.
    pub fn code(self) -> &'static str {
        match self {
            LimitKind::Requests => "rate_limit_requests",
            LimitKind::Tokens => "rate_limit_tokens",
            LimitKind::Concurrency => "rate_limit_concurrency",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::Requests => "requests per minute",
            LimitKind::Tokens => "tokens per minute",
            LimitKind::Concurrency => "concurrent requests",
        })
    }
}

/// Values for OpenAI's `x-ratelimit-*` headers; `None` fields are unlimited and omitted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateHeaders {
    pub limit_requests: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub reset_requests: Option<Duration>,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub reset_tokens: Option<Duration>,
}

impl RateHeaders {
    /// `(name, value)` pairs in OpenAI's format (durations like `1s`, `250ms`).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(6);
        let mut push = |name, v: Option<String>| {
            if let Some(v) = v {
                out.push((name, v));
            }
        };
        push("x-ratelimit-limit-requests", self.limit_requests.map(|v| v.to_string()));
        push("x-ratelimit-remaining-requests", self.remaining_requests.map(|v| v.to_string()));
        push("x-ratelimit-reset-requests", self.reset_requests.map(fmt_duration));
        push("x-ratelimit-limit-tokens", self.limit_tokens.map(|v| v.to_string()));
        push("x-ratelimit-remaining-tokens", self.remaining_tokens.map(|v| v.to_string()));
        push("x-ratelimit-reset-tokens", self.reset_tokens.map(fmt_duration));
        out
    }
}

fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        let s = d.as_secs_f64();
        let text = format!("{s:.3}");
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// A bucket of `capacity` that refills at `capacity` per minute.
#[derive(Debug, Clone)]
struct Bucket {
    level: f64,
    capacity: f64,
    at: Instant,
}

impl Bucket {
    fn new(capacity: u64, now: Instant) -> Bucket {
        Bucket { level: capacity as f64, capacity: capacity as f64, at: now }
    }

    fn refill(&mut self, capacity: u64, now: Instant) {
        let capacity = capacity as f64;
        if capacity != self.capacity {
            // a reload changed the limit: keep what was used
            self.level += capacity - self.capacity;
            self.capacity = capacity;
        }
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * self.capacity / 60.0).min(self.capacity);
        self.at = now;
    }

    /// Time until `amount` is available.
    fn wait_for(&self, amount: f64) -> Duration {
        let missing = amount - self.level;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing * 60.0 / self.capacity)
        }
    }

    fn reset(&self) -> Duration {
        self.wait_for(self.capacity)
    }
}

#[derive(Debug, Default)]
struct KeyState {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    inflight: u32,
}

/// A request ended: give back the concurrency slot and correct the token reservation.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Settle {
    pub key_id: Arc<str>,
    pub limits: Limits,
    pub reserved: u64,
    /// Real tokens used; `None` when unknown (the reservation stands).
    pub actual: Option<u64>,
    /// A provider slot to give back in the same trip (both actors share an arbiter).
    /// The provider slot to give back with the ticket (and whether it was a job's).
    pub release: Option<(Addr<ProviderWorker>, bool)>,
}

#[derive(Debug)]
pub struct Refused {
    pub kind: LimitKind,
    pub retry_after: Duration,
    pub headers: RateHeaders,
}

/// Held for the life of a request; dropping it settles with the limiter.
pub struct LimitTicket {
    addr: Option<Addr<RateLimiter>>,
    /// The limiter's settle queue: a finished request wakes no thread (see [`SETTLE_TICK`]).
    queue: Option<mpsc::Sender<Settle>>,
    key_id: Arc<str>,
    limits: Limits,
    reserved: u64,
    actual: Option<u64>,
    release: Option<(Addr<ProviderWorker>, bool)>,
}

impl LimitTicket {
    /// A ticket that settles nothing (a failover re-route: the request's own ticket
    /// settles its limits).
    pub fn detached(key_id: Arc<str>) -> LimitTicket {
        LimitTicket {
            addr: None,
            queue: None,
            key_id,
            limits: Limits::default(),
            reserved: 0,
            actual: None,
            release: None,
        }
    }

    /// Takes over a provider permit: settling the ticket also releases the slot, so a
    /// finished request sends one cross-thread message instead of two.
    pub fn release_with(&mut self, permit: Permit) {
        self.release = permit.disarm();
    }

    /// Records the real token count, applied when the ticket drops.
    pub fn set_actual(&mut self, tokens: u64) {
        self.actual = Some(tokens);
    }
}

impl Drop for LimitTicket {
    fn drop(&mut self) {
        if let Some(addr) = self.addr.take() {
            let settle = Settle {
                key_id: self.key_id.clone(),
                limits: self.limits,
                reserved: self.reserved,
                actual: self.actual,
                release: self.release.take(),
            };
            match self.queue.take().map(|q| q.try_send(settle)) {
                Some(Ok(())) => {}
                // no queue, or it is full: through the mailbox
                Some(Err(mpsc::error::TrySendError::Full(settle) | mpsc::error::TrySendError::Closed(settle))) => {
                    deliver(&addr, settle)
                }
                None => {}
            }
        }
    }
}

/// Where admitted jobs go next.
pub struct NextStages {
    pub cache: Addr<Cache>,
    pub router: Addr<Router>,
}

/// How often the limiter drains its settle queue when no admission does it first.
///
/// Finished requests put their settle (concurrency slot, token correction, provider slot)
/// on a queue instead of the limiter's mailbox, so the end of a request costs no
/// cross-thread wake-up (a third of the wake-ups per request before). Every admission
/// drains the queue before it checks limits, so a request never sees a stale count
/// left by one that finished before it; the tick bounds the delay of a provider slot's
/// release when no request arrives (a queued request waits at most this much longer).
pub const SETTLE_TICK: Duration = Duration::from_millis(2);

/// Settles waiting before the mailbox is used instead.
const SETTLE_QUEUE: usize = 1 << 16;

pub struct RateLimiter {
    keys: HashMap<Arc<str>, KeyState>,
    /// `None` (unit tests): admitted jobs are answered here.
    next: Option<NextStages>,
    settle_tx: mpsc::Sender<Settle>,
    settle_rx: mpsc::Receiver<Settle>,
}

impl Default for RateLimiter {
    fn default() -> RateLimiter {
        let (settle_tx, settle_rx) = mpsc::channel(SETTLE_QUEUE);
        RateLimiter { keys: HashMap::new(), next: None, settle_tx, settle_rx }
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

    fn apply(&mut self, msg: Settle, now: Instant) {
        self.settle(&msg, now);
        if let Some((worker, background)) = &msg.release {
            deliver(worker, Release { background: *background });
        }
    }

    /// The admission decision (plain function, benchmarked).
    pub fn check(
        &mut self,
        key_id: &Arc<str>,
        limits: Limits,
        tokens: u64,
        now: Instant,
    ) -> Result<RateHeaders, Refused> {
        let st = self.keys.entry(key_id.clone()).or_default();
        let mut h = RateHeaders::default();
        if let Some(rpm) = limits.rpm {
            let b = st.requests.get_or_insert_with(|| Bucket::new(u64::from(rpm), now));
            b.refill(u64::from(rpm), now);
            h.limit_requests = Some(u64::from(rpm));
        } else {
            st.requests = None;
        }
        if let Some(tpm) = limits.tpm {
            let b = st.tokens.get_or_insert_with(|| Bucket::new(tpm, now));
            b.refill(tpm, now);
            h.limit_tokens = Some(tpm);
        } else {
            st.tokens = None;
        }
        let fill = |h: &mut RateHeaders, st: &KeyState| {
            if let Some(b) = &st.requests {
                h.remaining_requests = Some(b.level.max(0.0).floor() as u64);
                h.reset_requests = Some(b.reset());
            }
            if let Some(b) = &st.tokens {
                h.remaining_tokens = Some(b.level.max(0.0).floor() as u64);
                h.reset_tokens = Some(b.reset());
            }
        };
        if let Some(b) = &st.requests {
            if b.level < 1.0 {
                fill(&mut h, st);
                return Err(Refused { kind: LimitKind::Requests, retry_after: b.wait_for(1.0), headers: h });
            }
        }
        if let Some(b) = &st.tokens {
            // a request larger than the whole bucket waits for a full bucket
            let need = (tokens as f64).min(b.capacity);
            if b.level < need {
                fill(&mut h, st);
                return Err(Refused { kind: LimitKind::Tokens, retry_after: b.wait_for(need), headers: h });
            }
        }
        if let Some(max) = limits.max_concurrent {
            if st.inflight >= max {
                fill(&mut h, st);
                return Err(Refused { kind: LimitKind::Concurrency, retry_after: Duration::from_secs(1), headers: h });
            }
        }
        if let Some(b) = &mut st.requests {
            b.level -= 1.0;
        }
        if let Some(b) = &mut st.tokens {
            b.level -= tokens as f64;
        }
        st.inflight += 1;
        fill(&mut h, st);
        Ok(h)
    }

    pub fn settle(&mut self, msg: &Settle, now: Instant) {
        let Some(st) = self.keys.get_mut(&msg.key_id) else {
            return;
        };
        st.inflight = st.inflight.saturating_sub(1);
        if let (Some(b), Some(actual), Some(tpm)) = (&mut st.tokens, msg.actual, msg.limits.tpm) {
            b.refill(tpm, now);
            // refund what was reserved but not used, or charge the overshoot
            b.level = (b.level + msg.reserved as f64 - actual as f64).min(b.capacity);
        }
    }
}

impl Actor for RateLimiter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
        ctx.run_interval(SETTLE_TICK, |limiter, _| limiter.drain_settles());
    }
}

/// First stage of admission: check the key's limits, take a ticket, pass the job on.
impl Handler<Job> for RateLimiter {
    type Result = ();

    fn handle(&mut self, Job(mut job): Job, ctx: &mut Self::Context) {
        self.drain_settles();
        match self.check(&job.key_id, job.limits, job.tokens, Instant::now()) {
            Err(refused) => job.refuse(Refusal::Limited(refused)),
            Ok(headers) => {
                job.rate = Some(headers);
                job.ticket = Some(LimitTicket {
                    addr: Some(ctx.address()),
                    queue: Some(self.settle_tx.clone()),
                    key_id: job.key_id.clone(),
                    limits: job.limits,
                    reserved: job.tokens,
                    actual: None,
                    release: None,
                });
                match &self.next {
                    None => job.admit(CacheDecision::Bypass, None),
                    Some(next) if job.cache_key.is_some() => forward(&next.cache, Job(job), "cache"),
                    Some(next) => forward(&next.router, Job(job), "router"),
                }
            }
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
    use super::*;
    use crate::actors::job::JobState;

    fn key() -> Arc<str> {
        Arc::from("k")
    }

    #[test]
    fn rpm_refuses_then_refills() {
        let mut rl = RateLimiter::default();
        let limits = Limits { rpm: Some(2), tpm: None, max_concurrent: None };
        let t0 = Instant::now();
        assert!(rl.check(&key(), limits, 0, t0).is_ok());
        let h = rl.check(&key(), limits, 0, t0).unwrap();
        assert_eq!(h.remaining_requests, Some(0));
        let r = rl.check(&key(), limits, 0, t0).unwrap_err();
        assert_eq!(r.kind, LimitKind::Requests);
        assert_eq!(r.retry_after, Duration::from_secs(30));
        assert!(rl.check(&key(), limits, 0, t0 + Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn tpm_reserves_and_reconciles() {
        let mut rl = RateLimiter::default();
        let limits = Limits { rpm: None, tpm: Some(100), max_concurrent: None };
        let t0 = Instant::now();
        rl.check(&key(), limits, 80, t0).unwrap();
        let r = rl.check(&key(), limits, 30, t0).unwrap_err();
        assert_eq!(r.kind, LimitKind::Tokens);
        assert!(r.retry_after > Duration::ZERO);
        // the first request really used 10: 70 come back
        rl.settle(&Settle { key_id: key(), limits, reserved: 80, actual: Some(10), release: None }, t0);
        let h = rl.check(&key(), limits, 30, t0).unwrap();
        assert_eq!(h.remaining_tokens, Some(60));
        // an overshoot is charged
        rl.settle(&Settle { key_id: key(), limits, reserved: 30, actual: Some(90), release: None }, t0);
        assert_eq!(rl.check(&key(), limits, 1, t0).unwrap_err().kind, LimitKind::Tokens);
    }

    #[test]
    fn concurrency_counts_inflight() {
        let mut rl = RateLimiter::default();
        let limits = Limits { rpm: None, tpm: None, max_concurrent: Some(1) };
        let t0 = Instant::now();
        rl.check(&key(), limits, 0, t0).unwrap();
        assert_eq!(rl.check(&key(), limits, 0, t0).unwrap_err().kind, LimitKind::Concurrency);
        rl.settle(&Settle { key_id: key(), limits, reserved: 0, actual: None, release: None }, t0);
        assert!(rl.check(&key(), limits, 0, t0).is_ok());
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
        let p = h.pairs();
        assert!(p.contains(&("x-ratelimit-reset-requests", "1.5s".into())));
        assert!(p.contains(&("x-ratelimit-reset-tokens", "250ms".into())));
        assert!(!p.iter().any(|(n, _)| *n == "x-ratelimit-limit-tokens"));
    }

    async fn admit(rl: &Addr<RateLimiter>, limits: Limits) -> crate::actors::job::Answer {
        let (job, rx) = JobState::create(key(), limits, 0, "m".into(), switchyard_config::Priority::Normal, None);
        rl.send(job).await.unwrap();
        rx.await.unwrap()
    }

    #[actix_rt::test]
    async fn ticket_drop_releases_the_slot() {
        let rl = RateLimiter::default().start();
        let limits = Limits { rpm: None, tpm: None, max_concurrent: Some(1) };
        let a = admit(&rl, limits).await;
        assert!(a.is_ok());
        let refused = admit(&rl, limits).await;
        assert!(matches!(refused, Err(Refusal::Limited(r)) if r.kind == LimitKind::Concurrency));
        drop(a); // the Settle goes ahead of the next job in the same mailbox
        assert!(admit(&rl, limits).await.is_ok());
    }
}
