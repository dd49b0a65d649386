//! The API handlers (actix-web): chat, embeddings, messages, moderations, models, and the
//! operational endpoints. Handlers are thin: read and bound the body, authenticate,
//! build a `RequestCtx`, call the engine, and map its outcome to a response (the helpers
//! in `respond`). Every error is in the path's API shape.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde_json::json;
use switchyard_actors::pipeline::{access_refused, Failure, OutcomeBody, RequestCtx};
use switchyard_actors::providers::from_anthropic;
use switchyard_actors::providers::sse::SseParser;
use switchyard_actors::types::Endpoint;
use switchyard_actors::GatewayError;

use crate::app::AppState;
use crate::ingress::respond::{
    anthropic_error, authenticate, error_response, header, names, read_body, request_id, respond, set, simple_error,
    success_head, with_shaped,
};

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
    let (limit, timeout) = (runtime.config.server.body_limit_bytes, runtime.config.server.body_timeout);
    let access_log = runtime.config.server.access_log;
    let refused = |key: Option<&str>, e: &GatewayError| {
        if access_log {
            access_refused(&request_id, key, "-", e, received);
        }
    };
    let ctx = match RequestCtx::from_headers(runtime, request_id.clone(), received, header(&req)) {
        Ok(c) => c,
        Err(e) => {
            refused(None, &e);
            return simple_error(&request_id, e);
        }
    };
    let body = match read_body(&req, payload, limit, timeout).await {
        Ok(b) => b,
        Err(e) => {
            refused(Some(&ctx.key.id), &e);
            return simple_error(&request_id, e);
        }
    };
    match state.engine.serve(endpoint, &ctx, &body).await {
        Ok(outcome) => respond(&request_id, outcome, received),
        Err(failure) => with_shaped(error_response(&request_id, &failure), &ctx),
    }
}

/// `POST /v1/messages`: Anthropic's Messages API in front of the same engine, so the
/// Anthropic SDK reaches any provider. Errors are Anthropic's error shape.
pub(crate) async fn messages(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let received = Instant::now();
    let request_id = request_id(&req);
    let runtime = state.engine.runtime();
    let (limit, timeout) = (runtime.config.server.body_limit_bytes, runtime.config.server.body_timeout);
    let result = async {
        let ctx = RequestCtx::from_headers(runtime, request_id.clone(), received, header(&req))?;
        let body = read_body(&req, payload, limit, timeout).await?;
        Ok::<_, Failure>((ctx, body))
    }
    .await;
    let (ctx, body) = match result {
        Ok(parts) => parts,
        Err(f) => {
            if state.engine.runtime().config.server.access_log {
                access_refused(&request_id, None, "-", &f.error, received);
            }
            return anthropic_error(&request_id, &f);
        }
    };
    let outcome = match state.engine.messages(&ctx, &body, anthropic_headers(&req)).await {
        Ok(o) => o,
        Err(f) => return with_shaped(anthropic_error(&request_id, &f), &ctx),
    };
    let mut b = success_head(&request_id, &outcome, received);
    if !outcome.native {
        // translated for another format: what it could not carry is said, never dropped silently
        let mut dropped = from_anthropic::untranslated_fields(&body);
        if req.headers().contains_key("anthropic-beta") {
            dropped.push("anthropic-beta (header)".into());
        }
        if !dropped.is_empty() {
            set(&mut b, names::X_SWITCHYARD_DROPPED_FIELDS, &dropped.join(", "));
        }
    }
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

/// The client's headers of Anthropic's API that go upstream with its own request.
fn anthropic_headers(req: &HttpRequest) -> Vec<(String, String)> {
    from_anthropic::CLIENT_HEADERS
        .iter()
        .filter_map(|&name| {
            let v = req.headers().get(name)?.to_str().ok()?;
            Some((name.to_string(), v.to_string()))
        })
        .collect()
}

pub(crate) async fn chat(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    serve(Endpoint::Chat, req, payload, state).await
}

pub(crate) async fn embeddings(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    serve(Endpoint::Embeddings, req, payload, state).await
}

/// `GET /v1/models`: the aliases the caller's key may use.
pub(crate) async fn models(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
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

/// `GET /v1/models/{id}`: one alias the caller's key may use (the OpenAI SDKs'
/// `models.retrieve`); 404 `model_not_found` for any other id.
pub(crate) async fn model(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let request_id = request_id(&req);
    let rt = state.engine.runtime();
    let key = match authenticate(&req, &rt) {
        Ok(k) => k,
        Err(e) => return simple_error(&request_id, e),
    };
    let id = path.into_inner();
    if !rt.model_aliases().any(|a| a == id) || !key.allows_model(&id) {
        return simple_error(&request_id, GatewayError::UnknownModel(id));
    }
    let mut b = HttpResponse::Ok();
    set(&mut b, names::X_REQUEST_ID, &request_id);
    b.json(json!({"id": id, "object": "model", "created": 0, "owned_by": "switchyard"}))
}

pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
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
pub(crate) async fn moderations(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let request_id = request_id(&req);
    let runtime = state.engine.runtime();
    let limit = runtime.config.server.body_limit_bytes;
    let result = async {
        authenticate(&req, &runtime)?;
        let body = read_body(&req, payload, limit, runtime.config.server.body_timeout).await?;
        switchyard_actors::guardrails::moderation::openai_moderations(&body, runtime.config.server.max_inputs)
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

pub(crate) async fn not_found(req: HttpRequest) -> HttpResponse {
    let request_id = request_id(&req);
    // an Anthropic path gets Anthropic's error shape
    if req.path().starts_with("/v1/messages") {
        return anthropic_error(&request_id, &Failure::from(GatewayError::NotFound));
    }
    simple_error(&request_id, GatewayError::NotFound)
}

/// `POST /v1/messages/count_tokens`: the input tokens of a Messages request for an alias
/// the key may use, in Anthropic's shape (`{"input_tokens"}`): Anthropic's own count when
/// the alias has an Anthropic target, else the gateway's (tiktoken's `o200k_base`, as
/// for its limits); `x-switchyard-count: provider | estimate` says which.
pub(crate) async fn count_tokens(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let request_id = request_id(&req);
    let runtime = state.engine.runtime();
    let (limit, timeout) = (runtime.config.server.body_limit_bytes, runtime.config.server.body_timeout);
    let result = async {
        let ctx = RequestCtx::from_headers(runtime.clone(), request_id.clone(), Instant::now(), header(&req))?;
        let body = read_body(&req, payload, limit, timeout).await?;
        let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return Err(GatewayError::BadRequest("the body must be a JSON object".into()));
        };
        state.engine.count_tokens(&ctx, obj, &anthropic_headers(&req)).await
    }
    .await;
    match result {
        Ok((n, counted)) => {
            let mut b = HttpResponse::Ok();
            set(&mut b, names::X_REQUEST_ID, &request_id);
            set(&mut b, names::REQUEST_ID, &request_id);
            b.insert_header(("x-switchyard-count", counted.as_str()));
            b.json(json!({"input_tokens": n}))
        }
        Err(e) => anthropic_error(&request_id, &Failure::from(e)),
    }
}

/// `POST /v1/feedback` `{"request_id", "score", "comment"?}`: feedback on one of the
/// key's requests, for experiment reports.
pub(crate) async fn feedback(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let runtime = state.engine.runtime();
    let (limit, timeout) = (runtime.config.server.body_limit_bytes, runtime.config.server.body_timeout);
    let result = async {
        let ctx = RequestCtx::from_headers(runtime.clone(), request_id(&req), Instant::now(), header(&req))?;
        let body = read_body(&req, payload, limit, timeout).await?;
        state.engine.feedback(&ctx, &body)
    }
    .await;
    crate::ingress::respond::reply(&req, result)
}
