//! What every HTTP handler shares: the request id, header lookup, authentication, the
//! bounded body read, and the responses (success and error heads with the
//! `x-switchyard-*` and `x-ratelimit-*` headers, OpenAI's and Anthropic's error bodies).
//! The handlers (`http`, `admin`, `batch::http`) import from here; nothing here imports
//! a handler.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use switchyard_actors::actors::messages::{RateHeader, RateHeaders};
use switchyard_actors::pipeline::{credential, record_overhead, Failure, KeyEntry, OutcomeBody, RequestCtx, Runtime};
use switchyard_actors::providers::from_anthropic;
use switchyard_actors::{GatewayError, Outcome};

/// The client's `x-request-id` when it is sane, else a new one.
pub(crate) fn request_id(req: &HttpRequest) -> String {
    switchyard_actors::ids::request_id(req.headers().get("x-request-id").and_then(|v| v.to_str().ok()))
}

pub(crate) fn header<'a>(req: &'a HttpRequest) -> impl Fn(&str) -> Option<&'a str> {
    |name| req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn authenticate(req: &HttpRequest, rt: &Runtime) -> Result<Arc<KeyEntry>, GatewayError> {
    let secret = credential(&header(req)).filter(|s| !s.is_empty()).ok_or(GatewayError::MissingKey)?;
    rt.authenticate(secret)
}

/// Reads the body up to `limit` bytes (413 beyond, without reading the rest).
pub(crate) async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, GatewayError> {
    tokio::time::timeout(timeout, read_body_untimed(req, payload, limit))
        .await
        .map_err(|_| GatewayError::BodyTimeout(timeout))?
}

async fn read_body_untimed(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Bytes, GatewayError> {
    let declared =
        req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::TooLarge(limit));
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| GatewayError::BadRequest(format!("cannot read the body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(GatewayError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The response headers the gateway sets, built at compile time: building a
/// `HeaderName` from a string at run time validates it and looks it up among the
/// standard ones, a third of what setting a header cost.
pub(crate) mod names {
    use actix_web::http::header::HeaderName;
    pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
    pub const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");
    pub const X_SWITCHYARD_PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");
    pub const X_SWITCHYARD_MODEL: HeaderName = HeaderName::from_static("x-switchyard-model");
    pub const X_SWITCHYARD_CACHE: HeaderName = HeaderName::from_static("x-switchyard-cache");
    pub const X_SWITCHYARD_CACHE_SIMILARITY: HeaderName = HeaderName::from_static("x-switchyard-cache-similarity");
    pub const X_SWITCHYARD_OVERHEAD_US: HeaderName = HeaderName::from_static("x-switchyard-overhead-us");
    pub const X_SWITCHYARD_ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");
    pub const X_SWITCHYARD_ROUTE: HeaderName = HeaderName::from_static("x-switchyard-route");
    pub const X_SWITCHYARD_GUARDRAILS: HeaderName = HeaderName::from_static("x-switchyard-guardrails");
    pub const X_SWITCHYARD_PROMPT: HeaderName = HeaderName::from_static("x-switchyard-prompt");
    pub const X_SWITCHYARD_EXPERIMENT: HeaderName = HeaderName::from_static("x-switchyard-experiment");
    pub const X_SWITCHYARD_DROPPED_FIELDS: HeaderName = HeaderName::from_static("x-switchyard-dropped-fields");
    pub const X_RATELIMIT_LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
    pub const X_RATELIMIT_REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
    pub const X_RATELIMIT_RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
    pub const X_RATELIMIT_LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
    pub const X_RATELIMIT_REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
    pub const X_RATELIMIT_RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
}

/// Sets the `x-ratelimit-*` headers.
pub(crate) fn set_rate(b: &mut HttpResponseBuilder, rate: &RateHeaders) {
    for (header, v) in rate.pairs() {
        let name = match header {
            RateHeader::LimitRequests => names::X_RATELIMIT_LIMIT_REQUESTS,
            RateHeader::RemainingRequests => names::X_RATELIMIT_REMAINING_REQUESTS,
            RateHeader::ResetRequests => names::X_RATELIMIT_RESET_REQUESTS,
            RateHeader::LimitTokens => names::X_RATELIMIT_LIMIT_TOKENS,
            RateHeader::RemainingTokens => names::X_RATELIMIT_REMAINING_TOKENS,
            RateHeader::ResetTokens => names::X_RATELIMIT_RESET_TOKENS,
        };
        set(b, name, &v);
    }
}

pub(crate) fn set(b: &mut HttpResponseBuilder, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        b.insert_header((name, v));
    }
}

/// A number needs no validation as a header value.
pub(crate) fn set_number(b: &mut HttpResponseBuilder, name: HeaderName, value: u64) {
    b.insert_header((name, HeaderValue::from(value)));
}

/// The status line and headers of an error, in either API's shape.
pub(crate) fn error_head(request_id: &str, failure: &Failure) -> HttpResponseBuilder {
    let status = StatusCode::from_u16(failure.error.class().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut b = HttpResponse::build(status);
    set(&mut b, names::X_REQUEST_ID, request_id);
    if let Some(s) = failure.error.retry_after_secs() {
        set_number(&mut b, names::RETRY_AFTER, s);
    }
    if let Some(rate) = &failure.rate {
        set_rate(&mut b, rate);
    }
    b
}

pub(crate) fn error_response(request_id: &str, failure: &Failure) -> HttpResponse {
    let status = failure.error.class().status;
    if status >= 500 {
        tracing::warn!(request_id, status, error = %failure.error, "request failed");
    }
    error_head(request_id, failure).json(failure.error.body())
}

/// A JSON answer with the request id, or the error in OpenAI's shape (the admin-style
/// endpoints: Batch API, stored responses).
pub(crate) fn reply(req: &HttpRequest, result: Result<serde_json::Value, GatewayError>) -> HttpResponse {
    let id = request_id(req);
    match result {
        Ok(v) => {
            let mut b = HttpResponse::Ok();
            set(&mut b, names::X_REQUEST_ID, &id);
            b.json(v)
        }
        Err(e) => simple_error(&id, e),
    }
}

/// An error answer of a request that a prompt or an experiment had already shaped
/// carries their headers too (which variant failed is what an experiment needs).
pub(crate) fn with_shaped(mut resp: HttpResponse, ctx: &RequestCtx) -> HttpResponse {
    if let Some(s) = ctx.shaped.get() {
        let h = resp.headers_mut();
        let pairs = [
            (names::X_SWITCHYARD_PROMPT, s.prompt.as_ref().map(|(id, v)| format!("{id}@{v}"))),
            (names::X_SWITCHYARD_EXPERIMENT, s.experiment.as_ref().map(|(e, v)| format!("{e}/{v}"))),
        ];
        for (name, value) in pairs {
            if let Some(v) = value.and_then(|v: String| actix_web::http::header::HeaderValue::from_str(&v).ok()) {
                h.insert(name, v);
            }
        }
    }
    resp
}

pub(crate) fn simple_error(request_id: &str, error: GatewayError) -> HttpResponse {
    error_response(request_id, &Failure::from(error))
}

/// The status line and the `x-switchyard-*`/`x-ratelimit-*` headers of a success.
pub(crate) fn success_head(request_id: &str, o: &Outcome, received: Instant) -> HttpResponseBuilder {
    let overhead = record_overhead(received.elapsed(), o.upstream_time);
    let mut b = HttpResponse::Ok();
    set(&mut b, names::X_REQUEST_ID, request_id);
    set(&mut b, names::X_SWITCHYARD_PROVIDER, &o.provider);
    set(&mut b, names::X_SWITCHYARD_MODEL, &o.upstream_model);
    set(&mut b, names::X_SWITCHYARD_CACHE, o.cache.as_str());
    if let Some(s) = o.cache.similarity() {
        set(&mut b, names::X_SWITCHYARD_CACHE_SIMILARITY, &format!("{s:.4}"));
    }
    set_number(&mut b, names::X_SWITCHYARD_OVERHEAD_US, u64::try_from(overhead.as_micros()).unwrap_or(u64::MAX));
    set_number(&mut b, names::X_SWITCHYARD_ATTEMPTS, u64::from(o.attempts));
    if let Some(route) = &o.route {
        set(&mut b, names::X_SWITCHYARD_ROUTE, route);
    }
    if let Some(flags) = &o.guardrail_flags {
        set(&mut b, names::X_SWITCHYARD_GUARDRAILS, flags);
    }
    if let Some(s) = &o.shaped {
        if let Some((id, v)) = &s.prompt {
            set(&mut b, names::X_SWITCHYARD_PROMPT, &format!("{id}@{v}"));
        }
        if let Some((e, v)) = &s.experiment {
            set(&mut b, names::X_SWITCHYARD_EXPERIMENT, &format!("{e}/{v}"));
        }
    }
    set_rate(&mut b, &o.rate);
    b
}

pub(crate) fn respond(request_id: &str, o: Outcome, received: Instant) -> HttpResponse {
    let mut b = success_head(request_id, &o, received);
    match o.body {
        OutcomeBody::Json(bytes) => b.content_type("application/json").body(bytes),
        OutcomeBody::Sse(stream) => b
            .content_type("text/event-stream")
            .insert_header(("cache-control", "no-cache"))
            .insert_header(("x-accel-buffering", "no"))
            .streaming(stream),
    }
}

/// An error in Anthropic's shape, with the same status and headers as the OpenAI one.
pub(crate) fn anthropic_error(request_id: &str, failure: &Failure) -> HttpResponse {
    let mut b = error_head(request_id, failure);
    set(&mut b, names::REQUEST_ID, request_id);
    b.json(from_anthropic::error_body(failure.error.class(), &failure.error.to_string()))
}
