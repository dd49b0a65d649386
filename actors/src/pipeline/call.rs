//! The upstream call shared by every endpoint: encode for the chosen target, call,
//! fail over to another target of the alias on a retryable failure, and record a failed
//! call (it reached a provider).

use std::time::Instant;

use bytes::Bytes;

use super::admit::{Dispatched, Prepared};
use super::{CacheStatus, Engine, Failure, Finisher, RequestCtx};
use crate::actors::messages::RateHeaders;
use crate::actors::messages::{JobState, RouteHints};
use crate::metrics::{FAILOVERS_TOTAL, FALLBACKS_TOTAL};
use crate::providers::sse::{SseEvent, SseParser};
use crate::providers::{openai, Adapter, StreamStep};
use crate::types::{unix_ms, Endpoint, Usage, UsageRecord};
use crate::upstream::{ByteStream, UpstreamBody, UpstreamCall, UpstreamError, UpstreamReply};
use crate::{telemetry, GatewayError};

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
            let kind = d.handle.client.cfg.kind;
            fin.trace = telemetry::gen_ai_span(&ctx.span, endpoint.as_str(), kind, &d.provider, &d.model);
            let span = &fin.trace;
            let call =
                UpstreamCall { endpoint, model: &d.model, base64, body, stream, headers: &ctx.headers, native, span };
            let before = tries;
            let mut result = d.handle.client.call(call, &mut tries).await.map_err(|e| e.into_gateway(&d.provider));
            if !fin.trace.is_disabled() {
                fin.trace.record("switchyard.retries", i64::from(tries.saturating_sub(before + 1)));
            }
            let mut usage = None;
            fin.record.upstream_attempts = tries;
            // a stream cut before its first chunk has sent the client nothing: it fails
            // over like any other failure
            result = match result {
                Ok(mut reply) => match reply.body {
                    UpstreamBody::Stream(s) => {
                        // a native stream is read in its provider's format, the rest in OpenAI's
                        let adapter = reply.adapter;
                        let native = reply.decoder.is_some();
                        let step = |ev: &SseEvent| {
                            if native {
                                adapter.native_stream_step(ev)
                            } else {
                                crate::providers::openai::stream_step(ev)
                            }
                        };
                        match first_content(s, step, MAX_HELD_BYTES).await {
                            Ok(body) => {
                                reply.body = body;
                                Ok(reply)
                            }
                            Err(e) => Err(e.into_gateway(&d.provider)),
                        }
                    }
                    // one parse reads the usage and proves the answer one JSON document:
                    // a cut body, or SSE to a call that asked for none, is a 502 that fails over
                    UpstreamBody::Full(bytes) => match openai::answer_usage(&bytes) {
                        Ok(u) => {
                            usage = u;
                            if !fin.trace.is_disabled() {
                                fin.answer = Some(telemetry::Answer::of_body(&bytes));
                            }
                            reply.body = UpstreamBody::Full(bytes);
                            Ok(reply)
                        }
                        Err(e) => Err(GatewayError::UpstreamInvalid {
                            provider: d.provider.clone(),
                            message: format!("the answer is not JSON ({e})"),
                        }),
                    },
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
                    let (provider, model) = (d.provider, d.model);
                    return Ok(Called { fin, provider, model, reply, usage, rate, cache_status, route });
                }
                Err(e) => e,
            };
            telemetry::failed(&fin.trace, err.class().code);
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
        let mut job = job;
        job.0.span = ctx.span.clone();
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

/// The most a stream's opening events may take before they go to the client anyway.
pub(super) const MAX_HELD_BYTES: usize = 64 << 10;

/// Holds a stream back until its first content (see [`StreamStep`]): the stream again,
/// the held events first, or the error that ended it before any content. Until then
/// nothing has reached the client, so a connection lost after the opening events, an
/// in-stream error event or a stream that ends with no content fails over like any
/// other failure. Past `max_held` bytes of opening events the stream goes on as it is.
pub(super) async fn first_content(
    mut s: ByteStream,
    step: impl Fn(&SseEvent) -> StreamStep,
    max_held: usize,
) -> Result<UpstreamBody, UpstreamError> {
    use futures_util::StreamExt;
    let (mut held, mut size, mut parser) = (Vec::new(), 0, SseParser::new());
    let release = |held: Vec<Bytes>, s: ByteStream| {
        UpstreamBody::Stream(Box::pin(futures_util::stream::iter(held.into_iter().map(Ok)).chain(s)))
    };
    loop {
        let bytes = match s.next().await {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Err(e),
            None if held.is_empty() => {
                return Err(UpstreamError::Body("the stream ended before its first chunk".into()))
            }
            None => return Err(UpstreamError::Body("the stream ended before any content".into())),
        };
        size += bytes.len();
        let events = parser.feed(&bytes);
        held.push(bytes);
        // what the relay cannot parse, it reports itself
        let Ok(events) = events else { return Ok(release(held, s)) };
        for ev in &events {
            match step(ev) {
                StreamStep::Preamble => {}
                StreamStep::Content => return Ok(release(held, s)),
                StreamStep::Failed { status, message } => {
                    let message = crate::redact::credentials(&message, &[]);
                    return Err(UpstreamError::Status { status, message, retry_after: None });
                }
            }
        }
        if size > max_held {
            return Ok(release(held, s));
        }
    }
}

/// An upstream request body, and whether it is the client's own (native) request.
pub(super) struct Encoded<'r> {
    pub(super) body: Vec<u8>,
    /// `Some` for a native request: the client's format and headers.
    pub(super) native: Option<crate::upstream::Native<'r>>,
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
    /// A non-streamed answer's usage, as the provider reported it.
    pub(super) usage: Option<Usage>,
    pub(super) rate: RateHeaders,
    pub(super) cache_status: CacheStatus,
    pub(super) route: Option<String>,
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::providers::openai::stream_step;

    fn chunks(parts: &[&str]) -> ByteStream {
        let owned: Vec<Result<Bytes, UpstreamError>> = parts.iter().map(|p| Ok(Bytes::from(p.to_string()))).collect();
        Box::pin(futures_util::stream::iter(owned))
    }

    async fn all(body: UpstreamBody) -> String {
        let UpstreamBody::Stream(mut s) = body else { panic!("a stream") };
        let mut out = String::new();
        while let Some(Ok(b)) = s.next().await {
            out.push_str(std::str::from_utf8(&b).unwrap());
        }
        out
    }

    const ROLE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
    const WORD: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";

    #[tokio::test]
    async fn opening_events_are_held_until_content_then_replayed_in_order() {
        // split mid-event, as a socket may deliver it
        let (a, b) = WORD.split_at(20);
        let body = first_content(chunks(&[ROLE, a, b, "data: [DONE]\n\n"]), stream_step, 1 << 16).await.unwrap();
        assert_eq!(all(body).await, format!("{ROLE}{WORD}data: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn a_failure_before_content_is_an_error_the_caller_can_fail_over_on() {
        let cut = first_content(chunks(&[ROLE]), stream_step, 1 << 16).await;
        assert!(matches!(cut, Err(UpstreamError::Body(m)) if m.contains("before any content")));
        let empty = first_content(chunks(&[]), stream_step, 1 << 16).await;
        assert!(matches!(empty, Err(UpstreamError::Body(m)) if m.contains("first chunk")));
        let overloaded = "data: {\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let err = first_content(chunks(&[ROLE, overloaded]), stream_step, 1 << 16).await;
        assert!(matches!(err, Err(UpstreamError::Status { status: 503, .. })), "{:?}", err.err());
        let bad = "data: {\"error\":{\"type\":\"invalid_request_error\",\"message\":\"no\"}}\n\n";
        let err = first_content(chunks(&[bad]), stream_step, 1 << 16).await;
        assert!(matches!(err, Err(UpstreamError::Status { status: 400, .. })));
    }

    #[tokio::test]
    async fn opening_events_past_the_bound_go_on_as_they_are() {
        let body = first_content(chunks(&[ROLE, ROLE, ROLE]), stream_step, ROLE.len()).await.unwrap();
        assert_eq!(all(body).await, ROLE.repeat(3));
    }

    #[test]
    fn what_counts_as_content() {
        let ev = |data: &str| crate::providers::sse::SseEvent { event: None, data: data.into() };
        assert_eq!(stream_step(&ev(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#)), StreamStep::Preamble);
        assert_eq!(stream_step(&ev(r#"{"choices":[]}"#)), StreamStep::Preamble);
        for content in [
            r#"{"choices":[{"delta":{"content":"x"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#,
            r#"{"choices":[{"delta":{"refusal":"no"}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            "[DONE]",
        ] {
            assert_eq!(stream_step(&ev(content)), StreamStep::Content, "{content}");
        }
    }
}
