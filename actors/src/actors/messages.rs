//! Every message and token the admission stages exchange, in one place: the `Job` that
//! travels rate limiter -> cache -> router -> provider worker, its answer (admission or
//! refusal), the cache key and cached answer, the route decision, the provider permit and
//! its release, the limit scopes, demand, ticket and settle, and the rate-limit headers.
//!
//! The stages import this module and nothing of each other: each holds the next as a
//! [`Recipient`] (the limiter holds the cache and the router, the cache the router, the
//! router the workers' [`WorkerRef`]s), and a guard that notifies a stage when it drops
//! (a [`Permit`], a [`LimitTicket`]) holds that stage's recipient too. Only the engine's
//! wiring (`pipeline`) knows the actor types.
//!
//! One `Job` is one request: each stage does its part and forwards it (or answers early:
//! refused, cache hit, unknown alias, queue full, or a free provider slot the router takes
//! itself). All four actors share the engine thread, so a request costs at most one
//! cross-thread round trip however many stages it passes; the answer comes back through
//! the job's oneshot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use switchyard_config::{Budget, Limits, Priority};
use tokio::sync::{mpsc, oneshot};

use super::load::TargetSlot;
use crate::error::LimitKind;
use crate::types::Usage;

/// A request's hold on limits shared with other instances, reconciled with the real
/// usage when it drops (`crate::actors::shared_limits::SharedTicket`).
pub trait Reconcile: Send {
    fn set_actual(&mut self, tokens: u64);
    fn set_actual_cost(&mut self, usd: f64);
}

/// A stage's recipient that guards hold (a [`Permit`], a [`LimitTicket`]): shared, so a
/// request's guard costs a reference count, not the allocation of a [`Recipient`] clone.
pub type To<M> = Arc<Recipient<M>>;

/// Fill the cache with an answer (the end of a request that missed it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Put {
    pub key: CacheKey,
    pub response: CachedResponse,
    pub ttl: Duration,
}

/// A message that cannot wait (from a `Drop`): `try_send`, and when the mailbox is full,
/// a task that waits for room. A closed mailbox means the stage is gone (shutdown).
pub fn deliver<M>(to: &Recipient<M>, msg: M)
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    match to.try_send(msg) {
        Ok(()) | Err(SendError::Closed(_)) => {}
        Err(SendError::Full(msg)) => {
            let to = to.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = to.send(msg).await;
                });
            }
        }
    }
}

/// What the cache stage decided.
pub enum CacheDecision {
    /// Cache off or `no-cache`.
    Bypass,
    /// Looked up, not there: fill it under this key.
    Miss(CacheKey),
    Hit(CachedResponse),
}

/// See [`JobState::route_hints`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteHints {
    pub sticky: Option<u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A request that may go ahead.
pub struct Admission {
    pub rate: RateHeaders,
    pub ticket: LimitTicket,
    pub cache: CacheDecision,
    /// The target and its concurrency slot; `None` for a cache hit.
    pub route: Option<(RouteDecision, Permit)>,
}

/// Why a job was not admitted.
#[derive(Debug)]
pub enum Refusal {
    Limited(Refused),
    UnknownModel,
    QueueFull {
        provider: String,
        rate: RateHeaders,
    },
    /// A stage's mailbox was full or gone.
    Overloaded(&'static str),
}

pub type Answer = Result<Admission, Refusal>;

/// The job itself (boxed in [`Job`] so forwarding moves a pointer).
pub struct JobState {
    pub key_id: Arc<str>,
    /// The limits and budgets it is held to (key, team, alias).
    pub scopes: Scopes,
    /// Tokens to reserve.
    pub tokens: u64,
    /// USD to reserve against budgets.
    pub cost_usd: f64,
    pub alias: String,
    pub priority: Priority,
    /// A queued NATS job: limited to the provider's `jobs_share`, after interactive work.
    pub background: bool,
    /// `None`: skip the cache; the hash is computed by the caller, off the engine thread.
    pub cache_key: Option<CacheKey>,
    /// Providers already tried for this request (a failover re-route skips them).
    pub exclude: Vec<String>,
    /// What the router's choice depends on: the hash of the request's `user` (sticky
    /// splits) and its estimated input and output tokens (the `cost` strategy).
    pub route_hints: RouteHints,
    pub reply: oneshot::Sender<Answer>,
    // filled in by the stages
    pub rate: Option<RateHeaders>,
    pub ticket: Option<LimitTicket>,
    pub decision: Option<RouteDecision>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Job(pub Box<JobState>);

impl JobState {
    /// A job and the receiver of its answer.
    pub fn create(
        key_id: Arc<str>,
        scopes: Scopes,
        tokens: u64,
        alias: String,
        priority: Priority,
        cache_key: Option<CacheKey>,
    ) -> (Job, oneshot::Receiver<Answer>) {
        let (reply, rx) = oneshot::channel();
        let state = JobState {
            key_id,
            scopes,
            tokens,
            cost_usd: 0.0,
            alias,
            priority,
            background: false,
            cache_key,
            exclude: Vec::new(),
            route_hints: RouteHints::default(),
            reply,
            rate: None,
            ticket: None,
            decision: None,
        };
        (Job(Box::new(state)), rx)
    }

    /// A re-route after a failed attempt: straight to the router (the request was
    /// already limited and looked up in the cache), for a target not in `exclude`.
    pub fn reroute(
        key_id: Arc<str>,
        alias: String,
        priority: Priority,
        background: bool,
        rate: RateHeaders,
        exclude: Vec<String>,
        route_hints: RouteHints,
    ) -> (Job, oneshot::Receiver<Answer>) {
        let (Job(mut state), rx) = JobState::create(key_id.clone(), Arc::from(Vec::new()), 0, alias, priority, None);
        state.background = background;
        state.exclude = exclude;
        state.route_hints = route_hints;
        state.rate = Some(rate);
        state.ticket = Some(LimitTicket::detached(key_id));
        (Job(state), rx)
    }

    /// Answers the caller (who may have gone: then the guards drop here).
    pub fn answer(self, answer: Answer) {
        let _ = self.reply.send(answer);
    }

    /// Admits with what the stages gathered.
    pub fn admit(mut self, cache: CacheDecision, route: Option<(RouteDecision, Permit)>) {
        let (Some(rate), Some(ticket)) = (self.rate.take(), self.ticket.take()) else {
            return self.answer(Err(Refusal::Overloaded("job reached admission without a rate-limit ticket")));
        };
        self.answer(Ok(Admission { rate, ticket, cache, route }))
    }

    pub fn refuse(self, r: Refusal) {
        self.answer(Err(r))
    }
}

/// Hands a job to the next stage. When the next stage's mailbox is full, this stage
/// stops taking messages until the job is in (`ctx.wait`): the backpressure reaches the
/// callers, which wait for room in the first stage's mailbox, instead of a job the
/// first stage took being refused between two stages. (The stages form a chain, the
/// limiter, the cache, the router and the provider workers, so a wait never waits on
/// itself.) A stage that is gone refuses the job (503).
pub fn forward<S>(ctx: &mut Context<S>, next: &Recipient<Job>, job: Job, stage: &'static str)
where
    S: Actor<Context = Context<S>>,
{
    match next.try_send(job) {
        Ok(()) => {}
        Err(SendError::Full(job)) => {
            let send = next.send(job);
            // a closed mailbox dropped the job, and with it its reply: the caller is
            // answered that the engine dropped the request
            ctx.wait(actix::fut::wrap_future(async move {
                if send.await.is_err() {
                    tracing::warn!(stage, "the next admission stage stopped");
                }
            }));
        }
        Err(SendError::Closed(Job(j))) => j.refuse(Refusal::Overloaded(stage)),
    }
}

pub type CacheKey = [u8; 32];

/// A stored response: the full (non-stream) body and what the ledger needs about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedResponse {
    pub body: Vec<u8>,
    pub provider: String,
    pub upstream_model: String,
    pub usage: Usage,
}

/// Where one request goes, and its hold on that target.
#[derive(Debug)]
pub struct RouteDecision {
    pub provider: String,
    pub model: String,
    pub slot: TargetSlot,
}

impl PartialEq for RouteDecision {
    fn eq(&self, other: &Self) -> bool {
        self.provider == other.provider && self.model == other.model
    }
}

/// A slot was given back (sent by a dropping [`Permit`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub background: bool,
}

/// Change concurrency and queue size (config reload).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resize {
    pub concurrency: usize,
    pub queue_size: usize,
    pub jobs_share: f64,
}

/// Current counters (tests and diagnostics).
#[derive(Message)]
#[rtype(result = "WorkerStats")]
pub struct Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct WorkerStats {
    pub inflight: usize,
    pub queued: usize,
    /// Of `inflight`, the slots held by jobs.
    pub background: usize,
}

/// A concurrency slot; dropping it releases the slot.
pub struct Permit {
    to: Option<To<Release>>,
    background: bool,
}

impl Permit {
    /// A slot of the worker at `to`, given back there when the permit drops.
    pub fn new(to: To<Release>, background: bool) -> Permit {
        Permit { to: Some(to), background }
    }

    /// Hands the release over to someone else (see `LimitTicket::release_with`).
    pub fn disarm(mut self) -> Option<(To<Release>, bool)> {
        self.to.take().map(|a| (a, self.background))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            deliver(&to, Release { background: self.background });
        }
    }
}

/// A provider's slot counts, written by its worker and read by the router: while a
/// slot is free and no interactive job waits, the router takes it at once
/// ([`Slots::try_take`]) instead of handing the job on to the worker, one hand-off less
/// per request. Queueing, priorities, the jobs' share and every release stay with the
/// worker, which owns the queues. (The router and the workers run on the one engine
/// thread, so a check and the take that follows it are not interleaved with another.)
#[derive(Debug)]
pub struct Slots {
    pub(crate) inflight: AtomicUsize,
    pub(crate) concurrency: AtomicUsize,
    /// High, normal and low jobs waiting (not background ones).
    pub(crate) interactive_queued: AtomicUsize,
}

impl Slots {
    pub(crate) fn new(concurrency: usize) -> Slots {
        Slots {
            inflight: AtomicUsize::new(0),
            concurrency: AtomicUsize::new(concurrency),
            interactive_queued: AtomicUsize::new(0),
        }
    }

    /// A slot for an interactive job, when one is free and no interactive job waits
    /// (the worker grants the same way); its release goes to `worker` like any other.
    pub fn try_take(&self, worker: &To<Release>) -> Option<Permit> {
        if self.interactive_queued.load(Ordering::Acquire) > 0 {
            return None;
        }
        let cap = self.concurrency.load(Ordering::Acquire);
        self.inflight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1)).ok()?;
        Some(Permit { to: Some(worker.clone()), background: false })
    }
}

/// A started worker and its slot counts.
#[derive(Clone)]
pub struct WorkerRef {
    /// Where jobs queue for a slot.
    pub jobs: Recipient<Job>,
    /// Where a permit the router took gives its slot back.
    pub release: To<Release>,
    /// Where a reload sends the provider's new limits.
    pub resize: Recipient<Resize>,
    pub slots: Arc<Slots>,
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

/// One of OpenAI's `x-ratelimit-*` response headers (an ingress maps it to its own
/// header type without parsing the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateHeader {
    LimitRequests,
    RemainingRequests,
    ResetRequests,
    LimitTokens,
    RemainingTokens,
    ResetTokens,
}

impl RateHeader {
    pub fn name(self) -> &'static str {
        match self {
            RateHeader::LimitRequests => "x-ratelimit-limit-requests",
            RateHeader::RemainingRequests => "x-ratelimit-remaining-requests",
            RateHeader::ResetRequests => "x-ratelimit-reset-requests",
            RateHeader::LimitTokens => "x-ratelimit-limit-tokens",
            RateHeader::RemainingTokens => "x-ratelimit-remaining-tokens",
            RateHeader::ResetTokens => "x-ratelimit-reset-tokens",
        }
    }
}

impl RateHeaders {
    /// `(header, value)` pairs in OpenAI's format (durations like `1s`, `250ms`).
    pub fn pairs(&self) -> Vec<(RateHeader, String)> {
        let mut out = Vec::with_capacity(6);
        let mut push = |name, v: Option<String>| {
            if let Some(v) = v {
                out.push((name, v));
            }
        };
        push(RateHeader::LimitRequests, self.limit_requests.map(|v| v.to_string()));
        push(RateHeader::RemainingRequests, self.remaining_requests.map(|v| v.to_string()));
        push(RateHeader::ResetRequests, self.reset_requests.map(fmt_duration));
        push(RateHeader::LimitTokens, self.limit_tokens.map(|v| v.to_string()));
        push(RateHeader::RemainingTokens, self.remaining_tokens.map(|v| v.to_string()));
        push(RateHeader::ResetTokens, self.reset_tokens.map(fmt_duration));
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

/// One set of limits a request is held to: its key's, its team's, its alias's.
#[derive(Debug, Clone)]
pub struct Scope {
    /// `key:<id>`, `team:<id>` or `model:<alias>`.
    pub id: Arc<str>,
    pub limits: Limits,
    pub budget: Option<Budget>,
}

/// The scopes of a request, shared (an `Arc` clone per request).
pub type Scopes = Arc<[Scope]>;

impl Scope {
    pub fn key(id: &str, limits: Limits, budget: Option<Budget>) -> Scope {
        Scope { id: Arc::from(format!("key:{id}")), limits, budget }
    }

    pub fn team(id: &str, limits: Limits, budget: Option<Budget>) -> Scope {
        Scope { id: Arc::from(format!("team:{id}")), limits, budget }
    }

    pub fn model(alias: &str, limits: Limits) -> Scope {
        Scope { id: Arc::from(format!("model:{alias}")), limits, budget: None }
    }
}

/// What a request asks of its scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Demand {
    /// Tokens to reserve (prompt estimate plus `max_tokens`).
    pub tokens: u64,
    /// USD to reserve against budgets (the demand priced at the alias's dearest target).
    pub cost_usd: f64,
}

/// A request ended: give back the concurrency slot and correct the token and cost
/// reservations.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Settle {
    pub scopes: Scopes,
    pub reserved: Demand,
    /// Real tokens used; `None` when unknown (the reservation stands).
    pub actual: Option<u64>,
    /// Real cost; `None` when unknown (the reservation stands).
    pub actual_cost: Option<f64>,
    /// The provider slot to give back with the ticket (and whether it was a job's).
    pub release: Option<(To<Release>, bool)>,
}

#[derive(Debug)]
pub struct Refused {
    pub kind: LimitKind,
    pub retry_after: Duration,
    pub headers: Box<RateHeaders>,
    /// The scope whose limit refused (`key:…`, `team:…`, `model:…`).
    pub scope: Arc<str>,
}

/// Held for the life of a request; dropping it settles with the limiter.
pub struct LimitTicket {
    limiter: Option<To<Settle>>,
    /// The limiter's settle queue: a finished request wakes no thread (see [`SETTLE_TICK`]).
    queue: Option<mpsc::Sender<Settle>>,
    key_id: Arc<str>,
    scopes: Scopes,
    reserved: Demand,
    actual: Option<u64>,
    actual_cost: Option<f64>,
    release: Option<(To<Release>, bool)>,
    /// The request's hold on limits shared across instances, when they apply.
    shared: Option<Box<dyn Reconcile>>,
}

impl LimitTicket {
    /// The ticket of an admitted request: dropping it settles with the limiter, through
    /// its settle queue (or its mailbox when the queue is full).
    pub fn new(
        limiter: To<Settle>,
        queue: mpsc::Sender<Settle>,
        key_id: Arc<str>,
        scopes: Scopes,
        reserved: Demand,
    ) -> LimitTicket {
        LimitTicket {
            limiter: Some(limiter),
            queue: Some(queue),
            key_id,
            scopes,
            reserved,
            actual: None,
            actual_cost: None,
            release: None,
            shared: None,
        }
    }

    /// A ticket that settles nothing (a failover re-route: the request's own ticket
    /// settles its limits).
    pub fn detached(key_id: Arc<str>) -> LimitTicket {
        LimitTicket {
            limiter: None,
            queue: None,
            key_id,
            scopes: Arc::from(Vec::new()),
            reserved: Demand::default(),
            actual: None,
            actual_cost: None,
            release: None,
            shared: None,
        }
    }

    /// Carries the request's shared-limit hold: reconciled with the same real usage.
    pub fn attach_shared(&mut self, t: Box<dyn Reconcile>) {
        self.shared = Some(t);
    }

    pub fn key_id(&self) -> &Arc<str> {
        &self.key_id
    }

    /// Takes over a provider permit: settling the ticket also releases the slot, so a
    /// finished request sends one cross-thread message instead of two.
    pub fn release_with(&mut self, permit: Permit) {
        self.release = permit.disarm();
    }

    /// Records the real token count and cost, applied when the ticket drops.
    pub fn set_actual(&mut self, tokens: u64) {
        self.actual = Some(tokens);
        if let Some(s) = &mut self.shared {
            s.set_actual(tokens);
        }
    }

    pub fn set_actual_cost(&mut self, usd: f64) {
        self.actual_cost = Some(usd);
        if let Some(s) = &mut self.shared {
            s.set_actual_cost(usd);
        }
    }
}

impl Drop for LimitTicket {
    fn drop(&mut self) {
        if let Some(limiter) = self.limiter.take() {
            let settle = Settle {
                scopes: self.scopes.clone(),
                reserved: self.reserved,
                actual: self.actual,
                actual_cost: self.actual_cost,
                release: self.release.take(),
            };
            match self.queue.take().map(|q| q.try_send(settle)) {
                Some(Ok(())) => {}
                // no queue, or it is full: through the mailbox
                Some(Err(mpsc::error::TrySendError::Full(settle) | mpsc::error::TrySendError::Closed(settle))) => {
                    deliver(&limiter, settle)
                }
                None => {}
            }
        }
    }
}

/// Where admitted jobs go next.
pub struct NextStages {
    pub cache: Recipient<Job>,
    pub router: Recipient<Job>,
}
