//! HTTP ingress (actix-web). Handlers are thin: read and bound the body, authenticate,
//! build a `RequestCtx`, call the engine, and map its outcome to a response with the
//! `x-switchyard-*` and `x-ratelimit-*` headers. Every error is an OpenAI error body.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::json;
use switchyard_actors::actors::rate_limiter::{RateHeader, RateHeaders};
use switchyard_actors::pipeline::{credential, record_overhead, Failure, KeyEntry, OutcomeBody, RequestCtx, Runtime};
use switchyard_actors::providers::from_anthropic;
use switchyard_actors::providers::sse::SseParser;
use switchyard_actors::types::Endpoint;
use switchyard_actors::{GatewayError, Outcome};

use crate::app::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/chat/completions", web::post().to(chat))
        .route("/v1/embeddings", web::post().to(embeddings))
        .route("/v1/messages", web::post().to(messages))
        .route("/v1/moderations", web::post().to(moderations))
        .route("/v1/models", web::get().to(models))
        .route("/metrics", web::get().to(metrics))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .configure(crate::ingress::admin::routes)
        .configure(crate::ingress::batch::http::routes)
        .default_service(web::to(not_found));
}

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
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, GatewayError> {
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
    pub const X_SWITCHYARD_OVERHEAD_US: HeaderName = HeaderName::from_static("x-switchyard-overhead-us");
    pub const X_SWITCHYARD_ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");
    pub const X_SWITCHYARD_ROUTE: HeaderName = HeaderName::from_static("x-switchyard-route");
    pub const X_RATELIMIT_LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
    pub const X_RATELIMIT_REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
    pub const X_RATELIMIT_RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
    pub const X_RATELIMIT_LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
    pub const X_RATELIMIT_REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
    pub const X_RATELIMIT_RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
}

/// Sets the `x-ratelimit-*` headers.
fn set_rate(b: &mut HttpResponseBuilder, rate: &RateHeaders) {
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
fn set_number(b: &mut HttpResponseBuilder, name: HeaderName, value: u64) {
    b.insert_header((name, HeaderValue::from(value)));
}

/// The status line and headers of an error, in either API's shape.
fn error_head(request_id: &str, failure: &Failure) -> HttpResponseBuilder {
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

fn error_response(request_id: &str, failure: &Failure) -> HttpResponse {
    let status = failure.error.class().status;
    if status >= 500 {
        tracing::warn!(request_id, status, error = %failure.error, "request failed");
    }
    error_head(request_id, failure).json(failure.error.body())
}

pub(crate) fn simple_error(request_id: &str, error: GatewayError) -> HttpResponse {
    error_response(request_id, &Failure::from(error))
}

async fn serve(
    endpoint: Endpoint,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let received = Instant::now();
    let request_id = request_id(&req);
    // one config snapshot for the whole request
    let runtime = state.engine.runtime();
    let limit = runtime.config.server.body_limit_bytes;
    let ctx = match RequestCtx::from_headers(runtime, request_id.clone(), received, header(&req)) {
        Ok(c) => c,
        Err(e) => return simple_error(&request_id, e),
    };
    let body = match read_body(&req, payload, limit).await {
        Ok(b) => b,
        Err(e) => return simple_error(&request_id, e),
    };
    match state.engine.serve(endpoint, &ctx, &body).await {
        Ok(outcome) => respond(&request_id, outcome, received),
        Err(failure) => error_response(&request_id, &failure),
    }
}

/// The status line and the `x-switchyard-*`/`x-ratelimit-*` headers of a success.
fn success_head(request_id: &str, o: &Outcome, received: Instant) -> HttpResponseBuilder {
    let overhead = record_overhead(received.elapsed(), o.upstream_time);
    let mut b = HttpResponse::Ok();
    set(&mut b, names::X_REQUEST_ID, request_id);
    set(&mut b, names::X_SWITCHYARD_PROVIDER, &o.provider);
    set(&mut b, names::X_SWITCHYARD_MODEL, &o.upstream_model);
    set(&mut b, names::X_SWITCHYARD_CACHE, o.cache.as_str());
    set_number(&mut b, names::X_SWITCHYARD_OVERHEAD_US, u64::try_from(overhead.as_micros()).unwrap_or(u64::MAX));
    set_number(&mut b, names::X_SWITCHYARD_ATTEMPTS, u64::from(o.attempts));
    if let Some(route) = &o.route {
        set(&mut b, names::X_SWITCHYARD_ROUTE, route);
    }
    set_rate(&mut b, &o.rate);
    b
}

fn respond(request_id: &str, o: Outcome, received: Instant) -> HttpResponse {
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

/// `POST /v1/messages`: Anthropic's Messages API in front of the same engine, so the
/// Anthropic SDK reaches any provider. Errors are Anthropic's error shape.
async fn messages(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let received = Instant::now();
    let request_id = request_id(&req);
    let runtime = state.engine.runtime();
    let limit = runtime.config.server.body_limit_bytes;
    let result = async {
        let ctx = RequestCtx::from_headers(runtime, request_id.clone(), received, header(&req))?;
        let body = read_body(&req, payload, limit).await?;
        Ok::<_, Failure>((ctx, body))
    }
    .await;
    let result = match result {
        Ok((ctx, body)) => {
            let headers = from_anthropic::CLIENT_HEADERS
                .iter()
                .filter_map(|&name| {
                    let v = req.headers().get(name)?.to_str().ok()?;
                    Some((name.to_string(), v.to_string()))
                })
                .collect();
            state.engine.messages(&ctx, &body, headers).await
        }
        Err(f) => Err(f),
    };
    let outcome = match result {
        Ok(o) => o,
        Err(f) => return anthropic_error(&request_id, &f),
    };
    let mut b = success_head(&request_id, &outcome, received);
    match outcome.body {
        // the provider's own answer (an Anthropic target): as it came
        OutcomeBody::Json(bytes) if outcome.native => b.content_type("application/json").body(bytes),
        OutcomeBody::Sse(stream) if outcome.native => b
            .content_type("text/event-stream")
            .insert_header(("cache-control", "no-cache"))
            .insert_header(("x-accel-buffering", "no"))
            .streaming(stream),
        OutcomeBody::Json(bytes) => match from_anthropic::message(&bytes) {
            Ok(m) => b.content_type("application/json").body(m),
            Err(e) => anthropic_error(&request_id, &Failure::from(e)),
        },
        OutcomeBody::Sse(stream) => {
            let mut parser = SseParser::new();
            let mut tr = from_anthropic::EventTranslator::default();
            let events = stream.map(move |item| {
                item.map(|bytes| {
                    let mut out = BytesMut::new();
                    // the relay yields whole events; a parse error cannot happen on them
                    for ev in parser.feed(&bytes).unwrap_or_default() {
                        for b in tr.on_event(&ev) {
                            out.extend_from_slice(&b);
                        }
                    }
                    out.freeze()
                })
            });
            b.content_type("text/event-stream")
                .insert_header(("cache-control", "no-cache"))
                .insert_header(("x-accel-buffering", "no"))
                .streaming(events)
        }
    }
}

/// An error in Anthropic's shape, with the same status and headers as the OpenAI one.
fn anthropic_error(request_id: &str, failure: &Failure) -> HttpResponse {
    let mut b = error_head(request_id, failure);
    set(&mut b, names::REQUEST_ID, request_id);
    b.json(from_anthropic::error_body(failure.error.class(), &failure.error.to_string()))
}

async fn chat(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    serve(Endpoint::Chat, req, payload, state).await
}

async fn embeddings(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    serve(Endpoint::Embeddings, req, payload, state).await
}

/// `GET /v1/models`: the aliases the caller's key may use.
async fn models(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let request_id = request_id(&req);
    let rt = state.engine.runtime();
    let key = match authenticate(&req, &rt) {
        Ok(k) => k,
        Err(e) => return simple_error(&request_id, e),
    };
    let data: Vec<_> = rt
        .model_aliases()
        .filter(|a| key.allows_model(a))
        .map(|a| json!({"id": a, "object": "model", "created": 0, "owned_by": "switchyard"}))
        .collect();
    let mut b = HttpResponse::Ok();
    set(&mut b, names::X_REQUEST_ID, &request_id);
    b.json(json!({"object": "list", "data": data}))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let rt = state.engine.runtime();
    if rt.config.providers.is_empty() {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "not ready", "reason": "no providers"}));
    }
    if !state.engine.running() {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "not ready", "reason": "engine stopped"}));
    }
    HttpResponse::Ok().json(json!({
        "status": "ready",
        "providers": rt.config.providers.len(),
        "models": rt.config.models.len(),
        "nats": state.nats.as_ref().map_or("disabled", crate::ingress::nats::state),
        "limits": if state.engine.limits_shared() { "shared" } else { "local" },
    }))
}

/// `POST /v1/moderations`: the built-in category lists, in OpenAI's format.
async fn moderations(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let request_id = request_id(&req);
    let runtime = state.engine.runtime();
    let limit = runtime.config.server.body_limit_bytes;
    let result = async {
        authenticate(&req, &runtime)?;
        let body = read_body(&req, payload, limit).await?;
        switchyard_actors::guardrails::moderation::openai_moderations(&body)
    }
    .await;
    match result {
        Ok(v) => {
            let mut b = HttpResponse::Ok();
            set(&mut b, names::X_REQUEST_ID, &request_id);
            b.json(v)
        }
        Err(e) => simple_error(&request_id, e),
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    simple_error(&request_id(&req), GatewayError::NotFound)
}
