//! The admission `Job`: one message that travels rate limiter -> cache -> router ->
//! provider worker, each stage doing its part and forwarding it (or answering early:
//! refused, cache hit, unknown alias, queue full, or a free provider slot the router
//! takes itself). All four actors share the engine thread, so a request costs at most
//! one cross-thread round trip however many stages it passes (none when that thread is
//! the single HTTP worker's); the answer comes back through the job's oneshot.

use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use switchyard_config::Priority;
use tokio::sync::oneshot;

use super::cache::{CacheKey, CachedResponse};
use super::provider_worker::Permit;
use super::rate_limiter::{LimitTicket, RateHeaders, Refused, Scopes};
use super::router::RouteDecision;

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
pub fn forward<S, A>(ctx: &mut Context<S>, next: &Addr<A>, job: Job, stage: &'static str)
where
    S: Actor<Context = Context<S>>,
    A: Actor + Handler<Job>,
    A::Context: ToEnvelope<A, Job>,
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
