//! Admission: authorize the alias, estimate and reserve, pass the job through the
//! actors (rate limiter, cache, router, provider worker), and answer cache hits.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::{
    mailbox, CacheStatus, Engine, Failure, Finisher, InflightGuard, Outcome, OutcomeBody, ProviderHandle, RequestCtx,
    Runtime,
};
use crate::actors::cache::cache_key;
use crate::actors::load::TargetSlot;
use crate::actors::messages::CacheKey;
use crate::actors::messages::{CacheDecision, JobState, Refusal, RouteHints};
use crate::actors::messages::{Demand, RateHeaders, Scope};
use crate::actors::router::sticky_hash;
use crate::actors::shared_limits::{SharedLimits, SharedRefusal};
use crate::metrics::{CACHE_REQUESTS_TOTAL, RATE_LIMITED_TOTAL, ROUTES_TOTAL, SHARED_LIMITS_FALLBACK_TOTAL};
use crate::providers::openai;
use crate::providers::sse::{data_event, DONE};
use crate::types::{unix_ms, Endpoint, UsageRecord};
use crate::GatewayError;

impl Engine {
    pub(super) fn record_template(
        &self,
        ctx: &RequestCtx,
        endpoint: Endpoint,
        alias: &str,
        stream: bool,
    ) -> UsageRecord {
        let mut r = UsageRecord::new(
            &ctx.request_id,
            unix_ms().saturating_sub(ctx.received.elapsed().as_millis() as u64),
            &ctx.key.id,
            endpoint,
            alias,
            stream,
        );
        if let Some(j) = &ctx.job {
            r.idempotency_key = Some(j.id.clone());
            r.attempts = j.attempt;
        }
        if let Some(s) = ctx.shaped.get() {
            r.prompt = s.prompt.as_ref().map(|(id, v)| format!("{id}@{v}"));
            r.experiment = s.experiment.as_ref().map(|(e, v)| format!("{e}/{v}"));
        }
        r
    }

    /// Alias exists (404) and the key may use it (403).
    pub(super) fn authorize(&self, rt: &Runtime, ctx: &RequestCtx, alias: &str) -> Result<(), GatewayError> {
        if rt.config.model(alias).is_none() {
            return Err(GatewayError::UnknownModel(alias.to_string()));
        }
        if !ctx.key.allows_model(alias) {
            return Err(GatewayError::ModelNotAllowed(alias.to_string()));
        }
        Ok(())
    }

    /// Everything before the call: authorize, then one admission job through the
    /// rate limiter, the cache, the router and the chosen provider's worker.
    pub(super) async fn prepare(
        &self,
        ctx: &RequestCtx,
        endpoint: Endpoint,
        routing: &Routing,
        reserve: u64,
        normalized: impl FnOnce() -> Value,
    ) -> Result<Prepared, Failure> {
        let alias = routing.alias.as_str();
        let rt = ctx.runtime.clone();
        self.authorize(&rt, ctx, alias)?;
        let ckey = if !rt.config.cache.enabled {
            None
        } else if ctx.no_cache {
            metrics::counter!(CACHE_REQUESTS_TOTAL, "result" => "bypass").increment(1);
            None
        } else {
            Some(cache_key(endpoint, alias, &normalized()))
        };
        let mut scopes = rt.scopes(&ctx.key, alias);
        // a prompt larger than a tokens limit can never be served under it: a 400 now,
        // not a 429 whose retry would never succeed
        let prompt = routing.hints.input_tokens;
        for s in scopes.iter() {
            for (limit, name) in [(s.limits.tpm, "tokens per minute"), (s.limits.tpd, "tokens per day")] {
                if let Some(limit) = limit.filter(|l| prompt > *l) {
                    return Err(GatewayError::BadRequest(format!(
                        "the request needs about {prompt} tokens; {} allows {limit} {name}, so it can never be served",
                        s.id
                    ))
                    .into());
                }
            }
        }
        let cost_usd = rt.reserve_cost(alias, routing.hints.input_tokens, routing.hints.output_tokens);
        // limits shared across instances are taken first; the local limiter then keeps
        // only what stays per instance (concurrency)
        let mut shared_hold = None;
        if let Some(sl) = self.shared.load_full().filter(|_| SharedLimits::applies(&scopes)) {
            let span = crate::telemetry::stage(&ctx.span, "switchyard.limits.shared");
            let taken = sl.take(&scopes, Demand { tokens: reserve, cost_usd }).await;
            if let Err(SharedRefusal::Limited(r)) = &taken {
                crate::telemetry::failed(&span, r.kind.as_str());
            }
            drop(span);
            match taken {
                Ok(hold) => {
                    shared_hold = Some(hold);
                    scopes = scopes
                        .iter()
                        .map(|s| Scope {
                            id: s.id.clone(),
                            limits: switchyard_config::Limits {
                                max_concurrent: s.limits.max_concurrent,
                                ..Default::default()
                            },
                            budget: None,
                        })
                        .collect();
                }
                Err(SharedRefusal::Limited(refused)) => {
                    metrics::counter!(RATE_LIMITED_TOTAL, "kind" => refused.kind.as_str()).increment(1);
                    return Err(Failure {
                        error: GatewayError::RateLimited { kind: refused.kind, retry_after: refused.retry_after },
                        rate: Some(refused.headers),
                        counted: false,
                    });
                }
                Err(SharedRefusal::Unavailable(e))
                    if rt.config.nats.as_ref().is_some_and(|n| n.shared_limits_strict) =>
                {
                    // exactness first: nothing is admitted that the counters did not grant
                    metrics::counter!(SHARED_LIMITS_FALLBACK_TOTAL, "action" => "refuse").increment(1);
                    return Err(GatewayError::Unavailable(format!("shared limits cannot be checked now ({e})")).into());
                }
                Err(SharedRefusal::Unavailable(e)) => {
                    // availability first: this instance enforces the limits alone meanwhile
                    metrics::counter!(SHARED_LIMITS_FALLBACK_TOTAL, "action" => "local").increment(1);
                    tracing::warn!(error = %e, "shared limits unavailable; enforcing them per instance");
                }
            }
        }
        let (mut job, rx) =
            JobState::create(ctx.key.id.clone(), scopes, reserve, alias.to_string(), ctx.priority, ckey);
        job.0.cost_usd = cost_usd;
        job.0.background = ctx.job.is_some();
        job.0.route_hints = routing.hints;
        job.0.span = ctx.span.clone();
        // the limiter's answer comes on `rx`
        crate::actors::enqueue(&self.limiter, job).await.map_err(mailbox)?;
        let answer = rx.await.map_err(|_| GatewayError::Unavailable("the engine dropped the request".into()))?;
        let mut adm = match answer {
            Ok(a) => a,
            Err(Refusal::Limited(refused)) => {
                metrics::counter!(RATE_LIMITED_TOTAL, "kind" => refused.kind.as_str()).increment(1);
                return Err(Failure {
                    error: GatewayError::RateLimited { kind: refused.kind, retry_after: refused.retry_after },
                    rate: Some(refused.headers),
                    counted: false,
                });
            }
            Err(Refusal::UnknownModel) => return Err(GatewayError::UnknownModel(alias.to_string()).into()),
            Err(Refusal::QueueFull { provider, rate }) => {
                return Err(Failure {
                    error: GatewayError::QueueFull(provider),
                    rate: Some(Box::new(rate)),
                    counted: false,
                })
            }
            Err(Refusal::Overloaded(stage)) => {
                return Err(GatewayError::Unavailable(format!("the engine is overloaded ({stage})")).into())
            }
        };
        if let Some((hold, headers)) = shared_hold {
            adm.ticket.attach_shared(Box::new(hold));
            if adm.rate.limit_requests.is_none() && adm.rate.limit_tokens.is_none() {
                adm.rate = headers;
            }
        }
        let inflight = InflightGuard::new();
        let (hit, cache_status) = match adm.cache {
            CacheDecision::Bypass => (None, CacheStatus::Bypass),
            CacheDecision::Miss(_) => (None, CacheStatus::Miss),
            CacheDecision::Hit(h) => (Some(h), CacheStatus::Hit),
        };
        if ckey.is_some() {
            metrics::counter!(CACHE_REQUESTS_TOTAL, "result" => cache_status.as_str()).increment(1);
        }
        let route = match adm.route {
            None => None,
            Some((d, permit)) => {
                let handle = rt
                    .providers
                    .get(&d.provider)
                    .cloned()
                    .ok_or_else(|| GatewayError::Internal(format!("no client for provider `{}`", d.provider)))?;
                Some(Dispatched { provider: d.provider, model: d.model, handle, permit, slot: d.slot })
            }
        };
        Ok(Prepared {
            rt,
            rate: adm.rate,
            ticket: adm.ticket,
            inflight,
            ckey,
            hit,
            cache_status,
            route,
            hints: routing.hints,
            rule: routing.rule.clone(),
            log: None,
            semantic_fill: None,
        })
    }

    /// Builds the finisher that will record this request, taking over its guards.
    pub(super) fn finisher(
        &self,
        ctx: &RequestCtx,
        p: Prepared,
        record: UsageRecord,
        prompt_estimate: u64,
    ) -> Finisher {
        Finisher {
            record,
            config: p.rt.config.clone(),
            accounting: self.sink.clone(),
            cache: self.cache_put.clone(),
            cache_put: p.ckey.map(|k| (k, p.rt.config.cache.ttl)),
            semantic_put: p.semantic_fill,
            ticket: Some(p.ticket),
            permit: None,
            slot: None,
            received: ctx.received,
            upstream_time: Duration::ZERO,
            ttft: None,
            prompt_estimate,
            finished: false,
            _inflight: Some(p.inflight),
            sync: ctx.job.is_some() || p.rt.config.server.ledger_sync,
            job: ctx.job.clone(),
            durable: None,
            root: ctx.span.clone(),
            trace: tracing::Span::none(),
            answer: None,
            log: p.log,
        }
    }

    /// A cache hit: recorded (cost 0) and answered without a provider.
    pub(super) async fn answer_from_cache(
        &self,
        ctx: &RequestCtx,
        mut p: Prepared,
        record: UsageRecord,
        as_stream: Option<bool>,
    ) -> Result<Outcome, Failure> {
        let Some(hit) = p.hit.take() else {
            return Err(GatewayError::Internal("cache hit without an entry".into()).into());
        };
        let (rate, route) = (p.rate.clone(), p.rule.clone());
        let cache = match p.cache_status {
            s @ CacheStatus::SemanticHit(_) => s,
            _ => CacheStatus::Hit,
        };
        let saved =
            p.rt.config
                .model(&record.alias)
                .map_or(0.0, |m| p.rt.config.pricing.cost(m, &hit.provider, &hit.upstream_model, hit.usage.counts()));
        let mut fin = self.finisher(ctx, p, record, 0);
        fin.cache_put = None;
        fin.semantic_put = None;
        fin.record.cache_hit = true;
        fin.record.saved_usd = saved;
        fin.record.semantic_similarity = cache.similarity();
        fin.record.provider = hit.provider.clone();
        fin.record.upstream_model = hit.upstream_model.clone();
        if let Some(draft) = &mut fin.log {
            draft.answer(&hit.body);
        }
        fin.finish(200, Some(hit.usage), "", None);
        fin.durable().await;
        let body = match as_stream {
            Some(include_usage) => {
                let completion: Value = serde_json::from_slice(&hit.body).unwrap_or(Value::Null);
                let mut events: Vec<Bytes> = openai::completion_to_chunks(&completion, include_usage)
                    .iter()
                    .map(|c| data_event(&c.to_string()))
                    .collect();
                events.push(Bytes::from_static(DONE));
                OutcomeBody::Sse(Box::pin(futures_util::stream::iter(events.into_iter().map(Ok))))
            }
            None => OutcomeBody::Json(Bytes::from(hit.body)),
        };
        Ok(Outcome {
            body,
            provider: hit.provider,
            upstream_model: hit.upstream_model,
            cache,
            rate,
            upstream_time: Duration::ZERO,
            route,
            attempts: 0,
            native: false,
            shaped: ctx.shaped.get().cloned(),
            guardrail_flags: None,
        })
    }

    /// The alias that serves the request: the first `[[routes]]` rule that matches
    /// picks it (counted, and reported in `x-switchyard-route`), else the requested
    /// model is the alias. `text` (the last user message) is read only when a rule
    /// looks at content.
    pub(super) fn routing(ctx: &RequestCtx, facts: RouteFacts<'_>, text: impl FnOnce() -> String) -> Routing {
        let routes = &ctx.runtime.config.routes;
        let hints = RouteHints {
            sticky: facts.user.map(sticky_hash),
            input_tokens: facts.prompt_tokens,
            output_tokens: facts.output_tokens,
        };
        if routes.is_empty() {
            return Routing { alias: facts.requested.to_string(), rule: None, hints };
        }
        let text = if routes.iter().any(switchyard_config::Route::reads_content) { text() } else { String::new() };
        let input = switchyard_config::RouteInput {
            model: facts.requested,
            key_id: &ctx.key.id,
            user: facts.user,
            headers: &ctx.headers,
            has_tools: facts.has_tools,
            has_images: facts.has_images,
            prompt_tokens: facts.prompt_tokens,
            last_user_text: &text,
        };
        match routes.iter().find(|r| r.matches(&input)) {
            Some(r) => {
                metrics::counter!(ROUTES_TOTAL, "route" => r.name.clone(), "alias" => r.alias.clone()).increment(1);
                Routing { alias: r.alias.clone(), rule: Some(r.name.clone()), hints }
            }
            None => Routing { alias: facts.requested.to_string(), rule: None, hints },
        }
    }

    /// Counts requests refused before any provider or cache was involved
    /// (the finisher counts all others).
    pub(super) fn count_early(&self, ctx: &RequestCtx, result: &Result<Outcome, Failure>, alias_hint: Option<&str>) {
        if let Err(f) = result {
            if let (false, GatewayError::PolicyViolation { guardrail, message }) = (f.counted, &f.error) {
                // a request blocked before any provider has no usage record: the
                // console's recent list has it
                let entry = crate::flagged::Flagged {
                    ts_ms: crate::types::unix_ms(),
                    request_id: ctx.request_id.clone(),
                    key_id: ctx.key.id.to_string(),
                    alias: alias_hint.unwrap_or("-").to_string(),
                    status: f.error.class().status,
                    blocked: true,
                    actions: vec![format!("{guardrail}:block")],
                    message: Some(message.clone()),
                };
                if let Err(e) = self.store().add_flagged([&entry]) {
                    tracing::warn!(error = %e, "a blocked request could not be listed");
                }
            }
            if !f.counted {
                let rt = &ctx.runtime;
                // only known aliases become label values
                let model = alias_hint.filter(|a| rt.config.model(a).is_some()).unwrap_or("-");
                let status = f.error.class().status;
                crate::metrics::hot(|h| h.requests(model, "none", status).increment(1));
                if rt.config.server.access_log {
                    super::finish::access_refused(&ctx.request_id, Some(&ctx.key.id), model, &f.error, ctx.received);
                }
            }
        }
    }
}

/// Steps before the provider: what they decided and the guards they hold.
pub(super) struct Prepared {
    pub(super) rt: Arc<Runtime>,
    pub(super) rate: RateHeaders,
    pub(super) ticket: crate::actors::messages::LimitTicket,
    pub(super) inflight: InflightGuard,
    pub(super) ckey: Option<CacheKey>,
    pub(super) hit: Option<crate::actors::messages::CachedResponse>,
    pub(super) cache_status: CacheStatus,
    /// The target and its slot (none on a cache hit).
    pub(super) route: Option<Dispatched>,
    pub(super) hints: RouteHints,
    /// The `[[routes]]` rule that picked the alias.
    pub(super) rule: Option<String>,
    /// The request's log entry, when it is logged (the endpoint sets it).
    pub(super) log: Option<Box<super::request_log::LogDraft>>,
    /// What the semantic cache stores once the answer is known (a semantic miss).
    pub(super) semantic_fill: Option<Box<super::semantic::Fill>>,
}

/// What `[[routes]]` and the request decided before admission.
pub(super) struct Routing {
    pub(super) alias: String,
    pub(super) rule: Option<String>,
    pub(super) hints: RouteHints,
}

/// What a `[[routes]]` rule may look at, besides the context.
pub(super) struct RouteFacts<'a> {
    pub(super) requested: &'a str,
    pub(super) user: Option<&'a str>,
    pub(super) has_tools: bool,
    pub(super) has_images: bool,
    pub(super) prompt_tokens: u64,
    pub(super) output_tokens: u64,
}

/// Output tokens the `cost` strategy assumes when the request sets no `max_tokens`.
pub(super) const NOMINAL_OUTPUT_TOKENS: u64 = 256;

/// The chosen target and its slots (the provider's and the target's).
pub(super) struct Dispatched {
    pub(super) provider: String,
    pub(super) model: String,
    pub(super) handle: Arc<ProviderHandle>,
    pub(super) permit: crate::actors::messages::Permit,
    pub(super) slot: TargetSlot,
}
