//! `switchyard mock-upstream`: a standalone provider with deterministic replies (shared
//! with the built-in `mock` provider) in OpenAI's format (`/v1/chat/completions`,
//! `/v1/embeddings`) and Anthropic's (`/v1/messages`, which checks `x-api-key`,
//! `anthropic-version` and `max_tokens` as Anthropic does, and calls the first offered
//! tool until it gets a tool result), and behaviour a test can ask for per request
//! through headers:
//! - `x-mock-latency-ms: N`      wait N ms before answering
//! - `x-mock-status: S`          answer status S with an OpenAI error body
//! - `x-mock-disconnect-after: N` (streams) send N chunks, then cut the connection
//! - `x-mock-chunk-delay-ms: N`  (streams) wait N ms between chunks
//! - `x-mock-chunk-chars: N`     (OpenAI streams) content in pieces of N characters
//! - `x-mock-fail-first: N` with `x-mock-fail-key: K`: the first N requests with key K
//!   fail (status from `x-mock-status`, else 503), later ones succeed
//!
//! `GET /mock/requests` returns the last 64 request bodies it received;
//! `GET /mock/stats` counts the requests it has served and the most it held at once
//! (`max_inflight`; `DELETE /mock/stats` resets that high-water mark).

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use switchyard_actors::providers::{mock, sse};
use switchyard_actors::types::unix_secs;

#[derive(Default)]
struct Stats {
    chat: AtomicU64,
    embeddings: AtomicU64,
    inflight: AtomicU64,
    max_inflight: AtomicU64,
}

/// Counts a request as in flight (non-streamed part) while it lives.
struct InflightMark<'a>(&'a Stats);

impl<'a> InflightMark<'a> {
    fn new(s: &'a Stats) -> Self {
        let now = s.inflight.fetch_add(1, Ordering::Relaxed) + 1;
        s.max_inflight.fetch_max(now, Ordering::Relaxed);
        InflightMark(s)
    }
}

impl Drop for InflightMark<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

struct MockState {
    latency: Duration,
    chunk_delay: Duration,
    stats: Stats,
    /// Failures served so far per `x-mock-fail-key`.
    failed: tokio::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// The last request bodies received (the newest last), for tests that must prove
    /// what did or did not leave the gateway.
    received: tokio::sync::Mutex<std::collections::VecDeque<Value>>,
}

fn header_u64(req: &HttpRequest, name: &str) -> Option<u64> {
    req.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    let mut b = HttpResponse::build(status);
    if status == StatusCode::TOO_MANY_REQUESTS {
        b.insert_header(("retry-after", "1"));
    }
    b.json(json!({"error": {"message": message, "type": "mock_error", "code": status.as_u16().to_string()}}))
}

/// Common prologue: latency, requested error status, JSON parsing.
async fn prologue(req: &HttpRequest, state: &MockState, body: &[u8]) -> Result<Value, HttpResponse> {
    let _mark = InflightMark::new(&state.stats);
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let mut received = state.received.lock().await;
        if received.len() == RECEIVED_KEPT {
            received.pop_front();
        }
        received.push_back(v);
    }
    let latency = header_u64(req, "x-mock-latency-ms").map(Duration::from_millis).unwrap_or(state.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let status =
        header_u64(req, "x-mock-status").and_then(|s| u16::try_from(s).ok()).and_then(|s| StatusCode::from_u16(s).ok());
    match (header_u64(req, "x-mock-fail-first"), req.headers().get("x-mock-fail-key").and_then(|v| v.to_str().ok())) {
        // the first N requests carrying this key fail (with x-mock-status, else 503)
        (Some(n), Some(key)) => {
            let mut failed = state.failed.lock().await;
            let count = failed.entry(key.to_string()).or_insert(0);
            if *count < n {
                *count += 1;
                return Err(error(
                    status.unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    "failure requested by x-mock-fail-first",
                ));
            }
        }
        _ => {
            if let Some(status) = status {
                return Err(error(status, "failure requested by x-mock-status"));
            }
        }
    }
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")))
}

async fn chat(req: HttpRequest, body: web::Bytes, state: web::Data<MockState>) -> HttpResponse {
    state.stats.chat.fetch_add(1, Ordering::Relaxed);
    let v = match prologue(&req, &state, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if !v.get("messages").is_some_and(Value::is_array) {
        return error(StatusCode::BAD_REQUEST, "`messages` is required");
    }
    let model = v.get("model").and_then(Value::as_str).unwrap_or("mock").to_string();
    if !v.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return HttpResponse::Ok().json(mock::chat_completion(&v, &model, unix_secs()));
    }
    let mut chunks = mock::chat_chunks(&v, &model, unix_secs());
    if let Some(n) = header_u64(&req, "x-mock-chunk-chars").filter(|n| *n > 0) {
        chunks = rechunk(chunks, n as usize);
    }
    let mut events: Vec<Bytes> = chunks.iter().map(|c| sse::data_event(&c.to_string())).collect();
    events.push(Bytes::from_static(sse::DONE));
    sse_response(&req, &state, events)
}

/// The same reply in content pieces of `n` characters (to split words across chunks).
fn rechunk(chunks: Vec<Value>, n: usize) -> Vec<Value> {
    let text: String =
        chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    let Some(template) = chunks.iter().find(|c| c.pointer("/choices/0/delta/content").is_some()).cloned() else {
        return chunks;
    };
    let mut out: Vec<Value> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(n) {
        let mut c = template.clone();
        c["choices"][0]["delta"] = json!({"content": piece.iter().collect::<String>()});
        out.push(c);
    }
    out.extend(chunks.into_iter().filter(|c| c.pointer("/choices/0/delta/content").is_none()));
    out
}

/// OpenAI's moderation API, answered from the gateway's built-in lists (a test can
/// ask for a flag with `x-mock-flag: <category>`, whatever the text).
async fn moderations(req: HttpRequest, body: web::Bytes, state: web::Data<MockState>) -> HttpResponse {
    if let Err(resp) = prologue(&req, &state, &body).await {
        return resp;
    }
    match switchyard_actors::guardrails::moderation::openai_moderations(&body, usize::MAX) {
        Ok(mut v) => {
            if let Some(category) = req.headers().get("x-mock-flag").and_then(|h| h.to_str().ok()) {
                for r in v["results"].as_array_mut().into_iter().flatten() {
                    r["flagged"] = json!(true);
                    r["categories"][category] = json!(true);
                    r["category_scores"][category] = json!(0.99);
                }
            }
            HttpResponse::Ok().json(v)
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// Request bodies kept for `GET /mock/requests`.
const RECEIVED_KEPT: usize = 64;

/// `GET /mock/requests`: the last request bodies received, oldest first.
async fn received(state: web::Data<MockState>) -> HttpResponse {
    let r = state.received.lock().await;
    HttpResponse::Ok().json(r.iter().collect::<Vec<_>>())
}

/// Azure OpenAI's deployment routes: `api-key` and `?api-version=` are required (as
/// Azure requires them); the deployment answers as the model.
async fn azure(req: HttpRequest, body: web::Bytes, state: web::Data<MockState>) -> HttpResponse {
    if req.headers().get("api-key").is_none() {
        return error(StatusCode::UNAUTHORIZED, "Access denied due to a missing api-key header");
    }
    if !req.query_string().split('&').any(|kv| kv.starts_with("api-version=") && kv.len() > 12) {
        return error(StatusCode::NOT_FOUND, "Resource not found (api-version is required)");
    }
    let deployment = req.match_info().get("deployment").unwrap_or_default().to_string();
    let mut v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    v["model"] = json!(deployment);
    let body = web::Bytes::from(v.to_string());
    match req.match_info().get("op") {
        Some("chat") => chat(req, body, state).await,
        _ => embeddings(req, body, state).await,
    }
}

/// Ollama's `POST /api/chat` (streams NDJSON unless `"stream": false`, as Ollama does).
async fn ollama_chat(req: HttpRequest, body: web::Bytes, state: web::Data<MockState>) -> HttpResponse {
    state.stats.chat.fetch_add(1, Ordering::Relaxed);
    if let Some(status) = header_u64(&req, "x-mock-status") {
        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return HttpResponse::build(status).json(json!({"error": "failure requested by x-mock-status"}));
    }
    let v = match prologue(&req, &state, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let model = v.get("model").and_then(Value::as_str).unwrap_or("mock").to_string();
    if v.get("stream") == Some(&json!(false)) {
        return HttpResponse::Ok().json(mock::ollama_chat(&v, &model));
    }
    let lines: Vec<Bytes> = mock::ollama_lines(&v, &model).iter().map(|l| Bytes::from(format!("{l}\n"))).collect();
    let mut resp = sse_response(&req, &state, lines);
    resp.headers_mut().insert(
        actix_web::http::header::CONTENT_TYPE,
        actix_web::http::header::HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

/// Ollama's `POST /api/embed`.
async fn ollama_embed(req: HttpRequest, body: web::Bytes, state: web::Data<MockState>) -> HttpResponse {
    state.stats.embeddings.fetch_add(1, Ordering::Relaxed);
    let v = match prologue(&req, &state, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let model = v.get("model").and_then(Value::as_str).unwrap_or("mock").to_string();
    match mock::ollama_embed(&v, &model) {
        Ok(out) => HttpResponse::Ok().json(out),
        Err(m) => HttpResponse::BadRequest().json(json!({"error": m})),
    }
}

/// AWS's error shape: `{"message"}` and `x-amzn-ErrorType`.
fn aws_error(status: u16, kind: &str, message: &str) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(code).insert_header(("x-amzn-errortype", kind)).json(json!({"message": message}))
}

/// A SigV4 `authorization` header for the `bedrock` service, in form (the secret is not
/// known here, so the signature itself is not recomputed).
fn sigv4_ok(req: &HttpRequest) -> bool {
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 Credential=") else { return false };
    let scope_ok =
        rest.split(',').next().is_some_and(|c| c.ends_with("/bedrock/aws4_request") && c.split('/').count() == 5);
    let signed = rest.split("SignedHeaders=").nth(1).and_then(|s| s.split(',').next()).unwrap_or_default();
    let signature = rest.split("Signature=").nth(1).unwrap_or_default();
    scope_ok
        && ["content-type", "host", "x-amz-date"].iter().all(|h| signed.split(';').any(|s| s == *h))
        && signature.len() == 64
        && signature.bytes().all(|b| b.is_ascii_hexdigit())
        && req.headers().contains_key("x-amz-date")
}

/// Bedrock's `POST /model/{id}/converse` and `/converse-stream` (binary event-stream
/// frames); SigV4 is required in form.
async fn bedrock(req: HttpRequest, body: web::Bytes, state: web::Data<MockState>) -> HttpResponse {
    state.stats.chat.fetch_add(1, Ordering::Relaxed);
    if !sigv4_ok(&req) {
        return aws_error(403, "MissingAuthenticationTokenException", "Missing or malformed SigV4 authentication");
    }
    if let Some(status) = header_u64(&req, "x-mock-status") {
        let kind = match status {
            400 => "ValidationException",
            429 => "ThrottlingException",
            503 => "ServiceUnavailableException",
            _ => "InternalServerException",
        };
        return aws_error(status as u16, kind, "failure requested by x-mock-status");
    }
    let v = match prologue(&req, &state, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if req.match_info().get("op") == Some("converse") {
        return HttpResponse::Ok().json(mock::bedrock_response(&v));
    }
    let mut frames = Vec::new();
    for (kind, payload) in mock::bedrock_events(&v) {
        let m = Message::new(Bytes::from(payload.to_string()))
            .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
            .add_header(Header::new(":event-type", HeaderValue::String(kind.into())))
            .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
        let mut out = Vec::new();
        if write_message_to(&m, &mut out).is_err() {
            return aws_error(500, "InternalServerException", "cannot frame an event");
        }
        frames.push(Bytes::from(out));
    }
    let mut resp = sse_response(&req, &state, frames);
    resp.headers_mut().insert(
        actix_web::http::header::CONTENT_TYPE,
        actix_web::http::header::HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    resp
}

/// Google's error shape.
fn google_error(status: u16, message: &str) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let name = match status {
        400 => "INVALID_ARGUMENT",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    HttpResponse::build(code).json(json!({"error": {"code": status, "message": message, "status": name}}))
}

/// Gemini's `POST /v1beta/models/{model}:{generateContent|streamGenerateContent|batchEmbedContents}`
/// (`x-goog-api-key` required).
async fn gemini(req: HttpRequest, body: web::Bytes, state: web::Data<MockState>) -> HttpResponse {
    let spec = req.match_info().get("spec").unwrap_or_default().to_string();
    let Some((model, method)) = spec.split_once(':') else {
        return google_error(404, "expected models/{model}:{method}");
    };
    if method == "batchEmbedContents" {
        state.stats.embeddings.fetch_add(1, Ordering::Relaxed);
    } else {
        state.stats.chat.fetch_add(1, Ordering::Relaxed);
    }
    if req.headers().get("x-goog-api-key").is_none() {
        return google_error(403, "Method doesn't allow unregistered callers (an API key is required)");
    }
    if let Some(status) = header_u64(&req, "x-mock-status") {
        return google_error(status as u16, "failure requested by x-mock-status");
    }
    let v = match prologue(&req, &state, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    match method {
        "generateContent" => HttpResponse::Ok().json(mock::gemini_response(&v, model)),
        "streamGenerateContent" => {
            if !req.query_string().contains("alt=sse") {
                return google_error(400, "the mock streams only with alt=sse");
            }
            let events: Vec<Bytes> =
                mock::gemini_chunks(&v, model).iter().map(|c| Bytes::from(format!("data: {c}\r\n\r\n"))).collect();
            sse_response(&req, &state, events)
        }
        "batchEmbedContents" => match mock::gemini_embed(&v) {
            Ok(out) => HttpResponse::Ok().json(out),
            Err(m) => google_error(400, &m),
        },
        other => google_error(404, &format!("unknown method {other}")),
    }
}

/// Anthropic's error shape.
fn anthropic_error(status: u16, kind: &str, message: &str) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(json!({"type": "error", "error": {"type": kind, "message": message}}))
}

/// `POST /v1/messages` (Anthropic Messages API).
async fn messages(req: HttpRequest, body: web::Bytes, state: web::Data<MockState>) -> HttpResponse {
    state.stats.chat.fetch_add(1, Ordering::Relaxed);
    if req.headers().get("x-api-key").is_none() {
        return anthropic_error(401, "authentication_error", "x-api-key header is required");
    }
    if req.headers().get("anthropic-version").is_none() {
        return anthropic_error(400, "invalid_request_error", "anthropic-version header is required");
    }
    if let Some(status) = header_u64(&req, "x-mock-status") {
        let _mark = InflightMark::new(&state.stats);
        let kind = match status {
            429 => "rate_limit_error",
            529 => "overloaded_error",
            400 => "invalid_request_error",
            _ => "api_error",
        };
        return anthropic_error(status as u16, kind, "failure requested by x-mock-status");
    }
    let v = match prologue(&req, &state, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if !v.get("messages").is_some_and(Value::is_array) {
        return anthropic_error(400, "invalid_request_error", "messages: Field required");
    }
    if !v.get("max_tokens").is_some_and(Value::is_u64) {
        return anthropic_error(400, "invalid_request_error", "max_tokens: Field required");
    }
    let model = v.get("model").and_then(Value::as_str).unwrap_or("mock").to_string();
    if !v.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return HttpResponse::Ok().json(mock::anthropic_message(&v, &model));
    }
    let events: Vec<Bytes> = mock::anthropic_events(&v, &model)
        .into_iter()
        .map(|(name, data)| Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
        .collect();
    sse_response(&req, &state, events)
}

/// Anthropic's `POST /v1/messages/count_tokens` (the same header checks as `/v1/messages`).
async fn count_tokens(req: HttpRequest, body: web::Bytes, state: web::Data<MockState>) -> HttpResponse {
    if req.headers().get("x-api-key").is_none() {
        return anthropic_error(401, "authentication_error", "x-api-key header is required");
    }
    if req.headers().get("anthropic-version").is_none() {
        return anthropic_error(400, "invalid_request_error", "anthropic-version header is required");
    }
    match prologue(&req, &state, &body).await {
        Ok(v) if v.get("messages").is_some_and(Value::is_array) && v.get("max_tokens").is_none() => {
            HttpResponse::Ok().json(mock::anthropic_count(&v))
        }
        Ok(_) => anthropic_error(
            400,
            "invalid_request_error",
            "messages: Field required; max_tokens: Extra inputs are not permitted",
        ),
        Err(resp) => resp,
    }
}

/// OpenAI's Responses API (`kind = "openai"` targets): see `mock::responses_answer`.
async fn responses(req: HttpRequest, body: web::Bytes, state: web::Data<MockState>) -> HttpResponse {
    state.stats.chat.fetch_add(1, Ordering::Relaxed);
    let v = match prologue(&req, &state, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if v.get("previous_response_id").is_some() {
        return error(StatusCode::BAD_REQUEST, "the mock keeps no responses: send the conversation in `input`");
    }
    if !v.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return match mock::responses_answer(&v, unix_secs()) {
            Ok(r) => HttpResponse::Ok().json(r),
            Err(e) => error(StatusCode::BAD_REQUEST, &e),
        };
    }
    match mock::responses_events(&v, unix_secs()) {
        Ok(events) => sse_response(&req, &state, events),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

/// Streams `events` with the requested chunk delay and disconnect.
fn sse_response(req: &HttpRequest, state: &MockState, events: Vec<Bytes>) -> HttpResponse {
    let cut = header_u64(req, "x-mock-disconnect-after").map(|n| n as usize);
    let delay = header_u64(req, "x-mock-chunk-delay-ms").map(Duration::from_millis).unwrap_or(state.chunk_delay);
    let stream = futures_util::stream::iter(events.into_iter().enumerate()).then(move |(i, ev)| async move {
        if cut.is_some_and(|n| i >= n) {
            // let what was sent reach the wire, then fail the body stream: actix drops
            // the connection mid-body
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "disconnect requested"));
        }
        if i > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, std::io::Error>(ev)
    });
    HttpResponse::Ok().content_type("text/event-stream").insert_header(("cache-control", "no-cache")).streaming(stream)
}

async fn embeddings(req: HttpRequest, body: web::Bytes, state: web::Data<MockState>) -> HttpResponse {
    state.stats.embeddings.fetch_add(1, Ordering::Relaxed);
    let v = match prologue(&req, &state, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let model = v.get("model").and_then(Value::as_str).unwrap_or("mock").to_string();
    match mock::embeddings(&v, &model) {
        Ok(out) => HttpResponse::Ok().json(out),
        Err(m) => error(StatusCode::BAD_REQUEST, &m),
    }
}

async fn models() -> HttpResponse {
    HttpResponse::Ok().json(json!({"object": "list", "data": [
        {"id": "mock-chat", "object": "model", "created": 0, "owned_by": "mock"},
        {"id": "mock-embed", "object": "model", "created": 0, "owned_by": "mock"},
    ]}))
}

async fn stats(state: web::Data<MockState>) -> HttpResponse {
    let chat = state.stats.chat.load(Ordering::Relaxed);
    let embeddings = state.stats.embeddings.load(Ordering::Relaxed);
    let max_inflight = state.stats.max_inflight.load(Ordering::Relaxed);
    HttpResponse::Ok().json(
        json!({"requests": chat + embeddings, "chat": chat, "embeddings": embeddings, "max_inflight": max_inflight}),
    )
}

async fn reset_stats(state: web::Data<MockState>) -> HttpResponse {
    state.stats.max_inflight.store(state.stats.inflight.load(Ordering::Relaxed), Ordering::Relaxed);
    HttpResponse::NoContent().finish()
}

pub fn run(addr: &str, latency_ms: u64, chunk_delay_ms: u64, workers: Option<usize>) -> ExitCode {
    let state = web::Data::from(Arc::new(MockState {
        latency: Duration::from_millis(latency_ms),
        chunk_delay: Duration::from_millis(chunk_delay_ms),
        stats: Stats::default(),
        failed: Default::default(),
        received: Default::default(),
    }));
    let result = actix_web::rt::System::new().block_on(async move {
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .route("/v1/chat/completions", web::post().to(chat))
                .route("/v1/embeddings", web::post().to(embeddings))
                .route("/v1/messages", web::post().to(messages))
                .route("/v1/messages/count_tokens", web::post().to(count_tokens))
                .route("/v1/responses", web::post().to(responses))
                .route("/api/chat", web::post().to(ollama_chat))
                .route("/v1beta/models/{spec}", web::post().to(gemini))
                .route("/model/{id}/{op:converse|converse-stream}", web::post().to(bedrock))
                .route("/api/embed", web::post().to(ollama_embed))
                .route("/openai/deployments/{deployment}/{op:chat}/completions", web::post().to(azure))
                .route("/openai/deployments/{deployment}/{op:embeddings}", web::post().to(azure))
                .route("/v1/models", web::get().to(models))
                .route("/v1/moderations", web::post().to(moderations))
                .route("/mock/stats", web::get().to(stats))
                .route("/mock/requests", web::get().to(received))
                .route("/mock/stats", web::delete().to(reset_stats))
        })
        .backlog(4096)
        .tcp_nodelay(true);
        if let Some(w) = workers {
            server = server.workers(w.max(1));
        }
        let server = server.bind(addr)?;
        for a in server.addrs() {
            println!("mock-upstream listening on http://{a}");
        }
        let _ = std::io::stdout().flush();
        server.run().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mock-upstream: {e}");
            ExitCode::from(1)
        }
    }
}
