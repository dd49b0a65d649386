//! The end of a request: one usage record to accounting, the metrics, the cache fill,
//! and the release of the rate-limit ticket and provider permit. A [`Finisher`] that is
//! dropped before it finished (a client that went away mid-stream) still records, with
//! status 499 and the usage seen so far, so nothing that reached a provider is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_config::Config;
use tokio::sync::oneshot;

use crate::actors::accounting::{Record, RecordSink};
use crate::actors::messages::{deliver, LimitTicket, Permit, Put, To};
use crate::actors::messages::{CacheKey, CachedResponse};
use crate::types::{Usage, UsageRecord};

/// Counts a request in `switchyard_inflight_requests` for as long as it lives.
pub struct InflightGuard;

impl InflightGuard {
    pub fn new() -> InflightGuard {
        crate::metrics::hot(|h| h.inflight.increment(1.0));
        InflightGuard
    }
}

impl Default for InflightGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        crate::metrics::hot(|h| h.inflight.decrement(1.0));
    }
}

/// Client status recorded when the client went away before the end.
pub const CLIENT_CLOSED: u16 = 499;

pub struct Finisher {
    pub record: UsageRecord,
    pub config: Arc<Config>,
    pub accounting: RecordSink,
    pub cache: To<Put>,
    /// Where to store the response if it succeeds.
    pub cache_put: Option<(CacheKey, Duration)>,
    /// What the semantic cache stores if it succeeds.
    pub semantic_put: Option<Box<super::semantic::Fill>>,
    pub ticket: Option<LimitTicket>,
    pub permit: Option<Permit>,
    /// The target's in-flight count (latency strategy, `max_concurrency`).
    pub slot: Option<crate::actors::load::TargetSlot>,
    pub received: Instant,
    pub upstream_time: Duration,
    pub ttft: Option<Duration>,
    /// Prompt tokens estimated before the call (used when the provider reports none).
    pub prompt_estimate: u64,
    pub finished: bool,
    pub _inflight: Option<InflightGuard>,
    /// Wait for the record to be on disk (`ledger_durability = "sync"`, or a durable job).
    pub sync: bool,
    /// A durable job's hooks: the record is handed back, failures may be deferred.
    pub job: Option<Arc<super::JobHooks>>,
    /// Answered when the record is on disk.
    pub durable: Option<oneshot::Receiver<()>>,
    /// The request's span, and the GenAI span of the target now called (with what the
    /// answer said, for it).
    pub root: tracing::Span,
    pub trace: tracing::Span,
    pub answer: Option<crate::telemetry::Answer>,
    /// This request's log entry, when it is logged.
    pub log: Option<Box<super::request_log::LogDraft>>,
}

impl Finisher {
    /// Records the outcome. `usage` is the provider's, or `None` to estimate
    /// from `output_text`; `cache_body` fills the cache when the status is 200.
    pub fn finish(&mut self, status: u16, usage: Option<Usage>, output_text: &str, cache_body: Option<Vec<u8>>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let cache_hit = self.record.cache_hit;
        let (usage, estimated) = match usage {
            Some(u) => (u, false),
            None if cache_hit => (Usage::default(), false),
            None => {
                let out = if output_text.is_empty() { 0 } else { crate::tokens::count_text(output_text) };
                let input = if self.record.provider.is_empty() { 0 } else { self.prompt_estimate };
                (Usage { input, output: out, ..Usage::default() }, true)
            }
        };
        let cost = match (cache_hit, self.config.model(&self.record.alias)) {
            (false, Some(m)) => {
                self.config.pricing.cost(m, &self.record.provider, &self.record.upstream_model, usage.counts())
            }
            _ => 0.0,
        };
        if let Some(t) = &mut self.ticket {
            t.set_actual(if cache_hit { 0 } else { usage.total() });
            t.set_actual_cost(cost);
        }
        let elapsed = self.received.elapsed();
        let mut r = self.record.clone();
        r.input_tokens = usage.input;
        r.output_tokens = usage.output;
        r.cached_tokens = usage.cached_input;
        r.cache_write_tokens = usage.cache_write;
        r.reasoning_tokens = usage.reasoning;
        r.cost_usd = cost;
        r.status = status;
        r.latency_us = elapsed.as_micros() as u64;
        r.ttft_us = self.ttft.map(|d| d.as_micros() as u64);
        r.usage_estimated = estimated;
        crate::telemetry::gen_ai_end(&self.trace, status, &usage, self.answer.as_ref(), self.ttft, cost);
        self.trace = tracing::Span::none();
        if self.config.server.access_log {
            let trace_id = crate::telemetry::trace_id(&self.root);
            tracing::info!(target: "switchyard::access", request_id = %r.request_id, trace_id, key = %r.key_id,
                model = %r.alias, provider = %r.provider, upstream_model = %r.upstream_model, status,
                input_tokens = r.input_tokens, output_tokens = r.output_tokens, cost_usd = cost,
                latency_ms = elapsed.as_secs_f64() * 1e3, cache_hit, stream = r.stream,
                attempts = r.upstream_attempts, "request");
        }

        crate::metrics::hot(|h| {
            let provider = if cache_hit { "cache" } else { r.provider.as_str() };
            h.requests(&r.alias, provider, status).increment(1);
            h.request_duration.record(elapsed.as_secs_f64());
            if !cache_hit {
                h.upstream(provider).record(self.upstream_time.as_secs_f64());
            }
            if let Some(t) = self.ttft {
                h.time_to_first_token.record(t.as_secs_f64());
            }
        });
        if let Some(draft) = self.log.take() {
            draft.send(&r, crate::telemetry::trace_id(&self.root));
        }
        if let Some(e) = &r.experiment {
            crate::metrics::experiment(e, status, elapsed, (usage.input, usage.output), cost);
        }
        if let (Some(body), 200) = (cache_body, status) {
            let response =
                CachedResponse { body, provider: r.provider.clone(), upstream_model: r.upstream_model.clone(), usage };
            match (self.cache_put, self.semantic_put.take()) {
                (Some((key, ttl)), fill) => {
                    if let Some(fill) = fill {
                        fill.store(response.clone());
                    }
                    deliver(&self.cache, Put { key, alias: r.alias.clone(), response, ttl });
                }
                (None, Some(fill)) => fill.store(response),
                (None, None) => {}
            }
        }
        let defer = match &self.job {
            Some(j) => {
                let _ = j.record.set(r.clone());
                j.defer_all || (j.defer_failures && status != 200)
            }
            None => false,
        };
        if !defer {
            let ack = if self.sync {
                let (tx, rx) = oneshot::channel();
                self.durable = Some(rx);
                Some(tx)
            } else {
                None
            };
            let span = crate::telemetry::stage(&self.root, "switchyard.ledger");
            self.accounting.record(Record(r, ack, span));
        }
        self.slot = None;
        // one message gives back both the rate-limit ticket and the provider slot
        match (self.ticket.take(), self.permit.take()) {
            (Some(mut t), Some(p)) => {
                t.release_with(p);
                drop(t);
            }
            (t, p) => {
                drop(t);
                drop(p);
            }
        }
    }
}

impl Finisher {
    /// Whether a successful answer's body is stored (exact or semantic cache).
    pub fn wants_body(&self) -> bool {
        self.cache_put.is_some() || self.semantic_put.is_some()
    }

    /// In sync durability mode, waits until the record is committed.
    pub async fn durable(&mut self) {
        if let Some(rx) = self.durable.take() {
            let _ = rx.await;
        }
    }
}

impl Drop for Finisher {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(CLIENT_CLOSED, None, "", None);
        }
    }
}

/// The access-log line of a request refused before any provider or cache saw it (no
/// usage record): its status and error code, who asked and for what, when known.
pub fn access_refused(
    request_id: &str,
    key: Option<&str>,
    model: &str,
    error: &crate::GatewayError,
    received: Instant,
) {
    let class = error.class();
    tracing::info!(target: "switchyard::access", request_id, trace_id = crate::telemetry::trace_id(&crate::telemetry::current()),
        key = key.unwrap_or("-"), model, status = class.status, error = class.code,
        latency_ms = received.elapsed().as_secs_f64() * 1e3, "refused");
}

/// Records the gateway's own time for one request.
pub fn record_overhead(total: Duration, upstream: Duration) -> Duration {
    let overhead = total.saturating_sub(upstream);
    crate::metrics::hot(|h| h.overhead.record(overhead.as_secs_f64()));
    overhead
}
