//! Traces: the spans of a request's path and W3C trace context in and out. The spans
//! are `tracing` spans of target [`TARGET`]; the binary bridges them to OpenTelemetry
//! (`src/telemetry.rs`) when `[telemetry]` is on. When it is off nothing takes them:
//! each span macro is one relaxed load that says "disabled", its fields are not even
//! computed, and [`enabled`] skips the header work.
//!
//! The LLM call follows OpenTelemetry's GenAI conventions: one `{operation} {model}`
//! client span per target tried (it covers that target's retries, each an HTTP span of
//! its own), with `gen_ai.*` attributes for the request, the response and the usage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use switchyard_config::ProviderKind;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::types::Usage;

/// The target of every span the gateway makes (what the exporter's filter takes).
pub const TARGET: &str = "switchyard::trace";

static ENABLED: AtomicBool = AtomicBool::new(false);
static PROPAGATE: AtomicBool = AtomicBool::new(false);

/// Called once by the binary when spans are exported.
pub fn set_enabled(propagate_to_providers: bool) {
    ENABLED.store(true, Ordering::Relaxed);
    PROPAGATE.store(propagate_to_providers, Ordering::Relaxed);
}

/// Whether spans are exported.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A caller's trace context, as its headers had it.
struct Carrier {
    traceparent: String,
    tracestate: Option<String>,
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(&self.traceparent),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

struct Put<F>(F);

impl<F: FnMut(&str, String)> Injector for Put<F> {
    fn set(&mut self, key: &str, value: String) {
        (self.0)(key, value)
    }
}

/// Makes `span` a child of the caller's trace when `lookup` (a header by its lower-case
/// name) holds a valid `traceparent`.
pub fn continue_trace<'a>(span: &Span, lookup: impl Fn(&str) -> Option<&'a str>) {
    if span.is_disabled() {
        return;
    }
    let Some(traceparent) = lookup("traceparent") else { return };
    let carrier =
        Carrier { traceparent: traceparent.to_string(), tracestate: lookup("tracestate").map(str::to_string) };
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Writes `span`'s `traceparent` (and `tracestate`) with `put`: to a provider, a NATS
/// message, a job's result.
pub fn inject(span: &Span, put: impl FnMut(&str, String)) {
    if span.is_disabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut Put(put));
}

/// As [`inject`], for a call to a provider (unless `propagate = false`).
pub fn inject_upstream(span: &Span, put: impl FnMut(&str, String)) {
    if PROPAGATE.load(Ordering::Relaxed) {
        inject(span, put);
    }
}

/// The trace id of `span`, for the access log (`None` when not traced).
pub fn trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The span of one request, the root of its tree (or a child of the caller's trace):
/// `name` is its route, as `POST /v1/chat/completions` or a NATS subject.
pub fn request_span<'a>(name: &str, kind: &'static str, lookup: impl Fn(&str) -> Option<&'a str>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(target: TARGET, "request", otel.name = name, otel.kind = kind,
        switchyard.request_id = Empty, switchyard.key_id = Empty, gen_ai.request.model = Empty,
        switchyard.attempt = Empty, switchyard.result = Empty,
        http.response.status_code = Empty, otel.status_code = Empty, error.type = Empty);
    continue_trace(&span, lookup);
    span
}

/// Marks how the request ended: its HTTP status (an error from 500 on, or any refusal
/// for which `error` is given).
pub fn record_status(span: &Span, status: u16, error: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 || error.is_some() {
        span.record("otel.status_code", "ERROR");
        match error {
            Some(e) => span.record("error.type", e),
            None => span.record("error.type", status.to_string().as_str()),
        };
    }
}

/// `gen_ai.provider.name` of a provider kind (the conventions' well-known values).
pub fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "openai",
        ProviderKind::OpenAiCompatible => "openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Azure => "azure.ai.openai",
        ProviderKind::Ollama => "ollama",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::Bedrock => "aws.bedrock",
        ProviderKind::Mock => "switchyard.mock",
    }
}

/// The GenAI client span of a call to one target: `chat gpt-4o` (kind client). It lives
/// until the answer is complete (a stream's last chunk) and gets the usage then.
pub fn gen_ai_span(parent: &Span, operation: &str, kind: ProviderKind, provider: &str, model: &str) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(target: TARGET, parent: parent, "gen_ai", otel.name = format!("{operation} {model}"),
        otel.kind = "client", gen_ai.operation.name = operation, gen_ai.provider.name = provider_name(kind),
        gen_ai.request.model = model, switchyard.provider = provider, gen_ai.request.max_tokens = Empty,
        gen_ai.request.temperature = Empty, gen_ai.response.model = Empty, gen_ai.response.id = Empty,
        gen_ai.usage.input_tokens = Empty, gen_ai.usage.output_tokens = Empty,
        gen_ai.usage.cache_read.input_tokens = Empty, gen_ai.response.time_to_first_chunk = Empty,
        switchyard.retries = Empty, otel.status_code = Empty, error.type = Empty, switchyard.cost_usd = Empty)
}

/// What a GenAI span learns from the answer (OpenAI's shape).
#[derive(Debug, Default, Clone)]
pub struct Answer {
    pub id: Option<String>,
    pub model: Option<String>,
    pub finish_reasons: Vec<String>,
}

impl Answer {
    /// Read from a complete chat completion (or embeddings) body.
    pub fn of_body(body: &[u8]) -> Answer {
        #[derive(serde::Deserialize)]
        struct Choice {
            finish_reason: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Body {
            id: Option<String>,
            model: Option<String>,
            #[serde(default)]
            choices: Vec<Choice>,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(b) => Answer {
                id: b.id,
                model: b.model,
                finish_reasons: b.choices.into_iter().filter_map(|c| c.finish_reason).collect(),
            },
            Err(_) => Answer::default(),
        }
    }
}

/// Ends a GenAI span's story: usage, the response's model and finish reasons, time to
/// first chunk, or the error.
pub fn gen_ai_end(span: &Span, status: u16, usage: &Usage, answer: Option<&Answer>, ttft: Option<Duration>, cost: f64) {
    if span.is_disabled() {
        return;
    }
    // integers go as i64: the bridge would write a u64 as text
    span.record("gen_ai.usage.input_tokens", usage.input as i64);
    span.record("gen_ai.usage.output_tokens", usage.output as i64);
    if usage.cached_input > 0 {
        span.record("gen_ai.usage.cache_read.input_tokens", usage.cached_input as i64);
    }
    if cost > 0.0 {
        span.record("switchyard.cost_usd", cost);
    }
    if let Some(t) = ttft {
        span.record("gen_ai.response.time_to_first_chunk", t.as_secs_f64());
    }
    if let Some(a) = answer {
        if let Some(m) = &a.model {
            span.record("gen_ai.response.model", m.as_str());
        }
        if let Some(id) = &a.id {
            span.record("gen_ai.response.id", id.as_str());
        }
        if !a.finish_reasons.is_empty() {
            let reasons: Vec<opentelemetry::StringValue> =
                a.finish_reasons.iter().map(|r| opentelemetry::StringValue::from(r.clone())).collect();
            span.set_attribute("gen_ai.response.finish_reasons", opentelemetry::Value::Array(reasons.into()));
        }
    }
    if status != 200 {
        failed(span, &status.to_string());
    }
}

/// Marks a span (a step, a GenAI call, an HTTP try) failed, with `error.type`.
pub fn failed(span: &Span, error_type: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("otel.status_code", "ERROR");
    span.record("error.type", error_type);
}

/// One HTTP request to a provider (a retry is another), child of the GenAI span.
pub fn http_span(parent: &Span, host: &str, port: Option<u16>, attempt: u32) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(target: TARGET, parent: parent, "http", otel.name = "POST", otel.kind = "client",
        http.request.method = "POST", server.address = host, server.port = i64::from(port.unwrap_or_default()),
        http.request.resend_count = i64::from(attempt), http.response.status_code = Empty, otel.status_code = Empty,
        error.type = Empty)
}

/// A step of the request's path (`switchyard.guardrails`, `switchyard.limits`, …) as a
/// child of `parent`, from now until it is dropped.
pub fn stage(parent: &Span, name: &'static str) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(target: TARGET, parent: parent, "stage", otel.name = name, switchyard.result = Empty,
        switchyard.provider = Empty, switchyard.model = Empty, otel.status_code = Empty, error.type = Empty)
}

/// The span that work for the current request runs under: the current span when traces
/// are on (the ingress enters the request's span while it builds the context).
pub fn current() -> Span {
    if enabled() {
        Span::current()
    } else {
        Span::none()
    }
}

/// Ends an HTTP span: the status the provider answered, or what failed.
pub fn http_end(span: &Span, outcome: Result<u16, &'static str>) {
    if span.is_disabled() {
        return;
    }
    match outcome {
        Ok(status) => {
            span.record("http.response.status_code", i64::from(status));
            if status >= 400 {
                failed(span, &status.to_string());
            }
        }
        Err(kind) => failed(span, kind),
    }
}
