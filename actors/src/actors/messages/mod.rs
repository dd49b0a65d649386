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

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use switchyard_config::Priority;
use tokio::sync::oneshot;

use super::load::TargetSlot;
use crate::types::Usage;

mod limits;
mod slots;

pub use limits::*;
pub use slots::*;

/// A stage's recipient that guards hold (a [`Permit`], a [`LimitTicket`]): shared, so a
/// request's guard costs a reference count, not the allocation of a [`Recipient`] clone.
pub type To<M> = Arc<Recipient<M>>;

/// Fill the cache with an answer (the end of a request that missed it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Put {
    pub key: CacheKey,
    /// The alias it answered (`DELETE /admin/cache?alias=`).
    pub alias: String,
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
    /// The request's span: the stages' spans are its children (disabled when traces are off).
    pub span: tracing::Span,
    /// The wait for a provider slot, while the job is queued.
    pub queued: tracing::Span,
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
            span: tracing::Span::none(),
            queued: tracing::Span::none(),
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// Where admitted jobs go next.
pub struct NextStages {
    pub cache: Recipient<Job>,
    pub router: Recipient<Job>,
}
