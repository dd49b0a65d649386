//! Limits on the way in: the scopes a request is held to, its demand, the ticket that
//! settles it, the refusal and the rate-limit headers.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use switchyard_config::{Budget, Limits};
use tokio::sync::mpsc;

use crate::error::LimitKind;

use super::{deliver, Permit, Release, To};

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

/// A request's hold on limits shared with other instances, reconciled with the real
/// usage when it drops (`crate::actors::shared_limits::SharedTicket`).
pub trait Reconcile: Send {
    fn set_actual(&mut self, tokens: u64);
    fn set_actual_cost(&mut self, usd: f64);
}
