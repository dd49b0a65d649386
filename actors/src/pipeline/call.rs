//! The upstream call shared by every endpoint: encode for the chosen target, call,
//! fail over to another target of the alias on a retryable failure, and record a failed
//! call (it reached a provider).

use std::time::Instant;

use super::admit::{Dispatched, Prepared};
use super::{CacheStatus, Engine, Failure, Finisher, RequestCtx};
use crate::actors::messages::RateHeaders;
use crate::actors::messages::{JobState, RouteHints};
use crate::metrics::{FAILOVERS_TOTAL, FALLBACKS_TOTAL};
use crate::providers::Adapter;
use crate::types::{unix_ms, Endpoint, UsageRecord};
use crate::upstream::{UpstreamBody, UpstreamCall, UpstreamReply};
use crate::GatewayError;

impl Engine {
    /// The call itself, shared by every endpoint: the finisher takes over the admitted
    /// request's guards, `encode` builds the body for the chosen upstream model, and a
    /// failed call is recorded (it reached a provider) before it is returned.
    pub(super) async fn call_upstream<'r>(
        &self,
        ctx: &RequestCtx,
        mut p: Prepared,
        record: UsageRecord,
        prompt: u64,
        base64: bool,
        encode: impl Fn(&dyn Adapter, &str) -> Result<Encoded<'r>, GatewayError>,
    ) -> Result<Called, Failure> {
        let Some(mut d) = p.route.take() else {
            return Err(GatewayError::Internal("admitted without a route".into()).into());
        };
        let (rate, cache_status, hints, route) = (p.rate.clone(), p.cache_status, p.hints, p.rule.clone());
        let mut fin = self.finisher(ctx, p, record, prompt);
        let (endpoint, stream) = (fin.record.endpoint, fin.record.stream);
        let base64 = endpoint == Endpoint::Embeddings && base64;
        // providers tried so far; a retryable failure moves on to another target
        let mut tried: Vec<String> = Vec::new();
        let mut tries = 0u32;
        loop {
            fin.record.provider = d.provider.clone();
            fin.record.upstream_model = d.model.clone();
            // the new slots replace (and so release) the failed target's
            fin.permit = Some(d.permit);
            let load = d.slot.load.clone();
            fin.slot = Some(d.slot);
            let body = match encode(d.handle.client.adapter(), &d.model) {
                Ok(b) => b,
                // the request asks for what this provider cannot do: refused before any
                // call, so it is no usage record and its reservation is given back
                Err(err @ GatewayError::BadRequest(_)) if tried.is_empty() => {
                    fin.finished = true;
                    if let Some(t) = &mut fin.ticket {
                        t.set_actual(0);
                    }
                    return Err(err.into());
                }
                Err(err) => return Err(Self::failed(ctx, &mut fin, err, rate).await),
            };
            let started = Instant::now();
            let Encoded { body, native } = body;
            let call = UpstreamCall { endpoint, model: &d.model, base64, body, stream, headers: &ctx.headers, native };
            let mut result = d.handle.client.call(call, &mut tries).await.map_err(|e| e.into_gateway(&d.provider));
            fin.record.upstream_attempts = tries;
            // a stream cut before its first chunk has sent the client nothing: it fails
            // over like any other failure
            result = match result {
                Ok(mut reply) => match reply.body {
                    UpstreamBody::Stream(s) => match first_chunk(s).await {
                        Ok(body) => {
                            reply.body = body;
                            Ok(reply)
                        }
                        Err(e) => Err(e.into_gateway(&d.provider)),
                    },
                    full @ UpstreamBody::Full(_) => {
                        reply.body = full;
                        Ok(reply)
                    }
                },
                Err(e) => Err(e),
            };
            // what another try could fix counts against the provider; anything else, not
            let ok = !result.as_ref().is_err_and(GatewayError::retryable);
            load.breaker.record(ok, unix_ms());
            fin.upstream_time += match &result {
                // a stream's upstream time is its time to first byte; the rest is relayed
                Ok(UpstreamReply { body: UpstreamBody::Stream(_), first_byte, .. }) => *first_byte,
                _ => started.elapsed(),
            };
            load.observe(
                match &result {
                    Ok(r) if stream => r.first_byte,
                    _ => started.elapsed(),
                },
                ok,
                unix_ms(),
            );
            let err = match result {
                Ok(reply) => {
                    return Ok(Called { fin, provider: d.provider, model: d.model, reply, rate, cache_status, route })
                }
                Err(e) => e,
            };
            // nothing has reached the client yet: another target of the alias may answer
            if err.retryable() && tried.len() < MAX_FAILOVERS {
                tried.push(d.provider.clone());
                if let Some(next) = self.reroute(ctx, &fin.record.alias, &rate, &tried, hints).await {
                    tracing::info!(request_id = %ctx.request_id, from = %d.provider, to = %next.provider, error = %err,
                        "failing over to another target");
                    metrics::counter!(FAILOVERS_TOTAL, "from" => d.provider.clone()).increment(1);
                    d = next;
                    continue;
                }
            }
            return Err(Self::failed(ctx, &mut fin, err, rate).await);
        }
    }

    /// Another target whose provider is not in `tried`, with its slots: of `alias`, else
    /// of its fallback aliases in order; `None` when there is none (or no slot now).
    pub(super) async fn reroute(
        &self,
        ctx: &RequestCtx,
        alias: &str,
        rate: &RateHeaders,
        tried: &[String],
        hints: RouteHints,
    ) -> Option<Dispatched> {
        if let Some(d) = self.reroute_to(ctx, alias, rate, tried, hints).await {
            return Some(d);
        }
        let fallbacks = ctx.runtime.config.model(alias).map(|m| m.fallbacks.clone()).unwrap_or_default();
        for fallback in fallbacks {
            if let Some(d) = self.reroute_to(ctx, &fallback, rate, tried, hints).await {
                metrics::counter!(FALLBACKS_TOTAL, "model" => alias.to_string(), "fallback" => fallback).increment(1);
                return Some(d);
            }
        }
        None
    }

    pub(super) async fn reroute_to(
        &self,
        ctx: &RequestCtx,
        alias: &str,
        rate: &RateHeaders,
        tried: &[String],
        hints: RouteHints,
    ) -> Option<Dispatched> {
        let (job, rx) = JobState::reroute(
            ctx.key.id.clone(),
            alias.to_string(),
            ctx.priority,
            ctx.job.is_some(),
            rate.clone(),
            tried.to_vec(),
            hints,
        );
        // a closed mailbox ends the failover
        crate::actors::enqueue(&self.router, job).await.ok()?;
        let adm = rx.await.ok()?.ok()?;
        let (decision, permit) = adm.route?;
        let handle = ctx.runtime.providers.get(&decision.provider).cloned()?;
        Some(Dispatched { provider: decision.provider, model: decision.model, handle, permit, slot: decision.slot })
    }

    /// Records a request that failed after it reached a provider.
    pub(super) async fn failed(ctx: &RequestCtx, fin: &mut Finisher, err: GatewayError, rate: RateHeaders) -> Failure {
        tracing::warn!(request_id = %ctx.request_id, error = %err, "upstream call failed");
        fin.finish(err.class().status, None, "", None);
        fin.durable().await;
        Failure { error: err, rate: Some(Box::new(rate)), counted: true }
    }
}

/// Most other targets one request tries after a retryable failure.
pub(super) const MAX_FAILOVERS: usize = 3;

/// Waits for a stream's first chunk: the stream again (that chunk first), or the error
/// that ended it before anything came (an empty stream is such an error too).
pub(super) async fn first_chunk(
    mut s: crate::upstream::ByteStream,
) -> Result<UpstreamBody, crate::upstream::UpstreamError> {
    use futures_util::StreamExt;
    match s.next().await {
        Some(Ok(first)) => Ok(UpstreamBody::Stream(Box::pin(futures_util::stream::once(async { Ok(first) }).chain(s)))),
        Some(Err(e)) => Err(e),
        None => Err(crate::upstream::UpstreamError::Body("the stream ended before its first chunk".into())),
    }
}

/// An upstream request body, and whether it is the client's own (native) request.
pub(super) struct Encoded<'r> {
    pub(super) body: Vec<u8>,
    /// `Some` for a native request: the client's headers of its format.
    pub(super) native: Option<&'r [(String, String)]>,
}

impl Encoded<'_> {
    pub(super) fn translated(body: Vec<u8>) -> Self {
        Encoded { body, native: None }
    }
}

/// A call that came back 2xx, and what the response needs.
pub(super) struct Called {
    pub(super) fin: Finisher,
    pub(super) provider: String,
    pub(super) model: String,
    pub(super) reply: UpstreamReply,
    pub(super) rate: RateHeaders,
    pub(super) cache_status: CacheStatus,
    pub(super) route: Option<String>,
}
