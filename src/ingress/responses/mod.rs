//! OpenAI's Responses API in front of the same engine: `POST /v1/responses` (plain and
//! streamed), `GET` and `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`.
//! A request is served as chat (any provider; `from_responses` translates both ways)
//! and, unless `store: false`, kept in the [`store`] so that a later turn can continue
//! it with `previous_response_id`. Errors are OpenAI's error shape.

pub mod store;

use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{json, Value};
use switchyard_actors::ids::new_id;
use switchyard_actors::pipeline::{Failure, OutcomeBody, RequestCtx};
use switchyard_actors::providers::from_responses::{self, Echo, EventTranslator};
use switchyard_actors::providers::sse::SseParser;
use switchyard_actors::types::unix_secs;
use switchyard_actors::{Engine, GatewayError, Outcome};

use self::store::{ResponseStore, Stored};
use crate::app::AppState;
use crate::ingress::respond::{
    authenticate, error_response, header, read_body, reply, request_id, respond, with_shaped,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/responses", web::post().to(create))
        .route("/v1/responses/{id}", web::get().to(get))
        .route("/v1/responses/{id}", web::delete().to(delete))
        .route("/v1/responses/{id}/input_items", web::get().to(input_items));
}

/// What a finished response is kept as: owned by the key, with the conversation's items.
struct Keep {
    store: Arc<ResponseStore>,
    owner: String,
    ttl: Option<std::time::Duration>,
    input: Vec<Value>,
}

impl Keep {
    async fn save(self, response: Value) {
        let id = response.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let expires_at = self.ttl.map(|t| unix_secs() + t.as_secs());
        let rec = Stored { owner: self.owner, expires_at, response, input: self.input };
        // the answer stands without it; a later turn naming it gets a 400
        if let Err(e) = self.store.put(&id, &rec).await {
            tracing::warn!(response = %id, error = %e, "storing a response");
        }
    }
}

async fn create(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let received = Instant::now();
    let request_id = request_id(&req);
    let runtime = state.engine.runtime();
    let (limit, timeout) = (runtime.config.server.body_limit_bytes, runtime.config.server.body_timeout);
    let ctx = match RequestCtx::from_headers(runtime, request_id.clone(), received, header(&req)) {
        Ok(ctx) => ctx,
        Err(e) => return error_response(&request_id, &e.into()),
    };
    let result = match read_body(&req, payload, limit, timeout).await {
        Ok(body) => serve(&state.engine, &state.responses, &ctx, &body).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(outcome) => respond(&request_id, outcome, received),
        Err(f) => with_shaped(error_response(&request_id, &f), &ctx),
    }
}

/// Serves one Responses request, whichever ingress it came from: the outcome's body is
/// the Response (JSON) or the Responses events (SSE), stored unless `store: false`.
pub async fn serve(
    engine: &Engine,
    store: &Arc<ResponseStore>,
    ctx: &RequestCtx,
    body: &[u8],
) -> Result<Outcome, Failure> {
    let parsed = from_responses::parse(body)?;
    // the conversation so far: the items of the response it continues, that one's output
    // included
    let mut prior = Vec::new();
    if let Some(prev) = parsed.get("previous_response_id").and_then(Value::as_str) {
        let Some(rec) = store.get(&ctx.key.id, prev).await? else {
            let shown: String = prev.chars().take(64).collect();
            return Err(GatewayError::BadRequest(format!(
                "previous_response_id: no stored response `{shown}` (it was made with `store: false`, by another key, or has expired)"
            ))
            .into());
        };
        prior = rec.input;
        prior.extend(from_responses::output_as_input(&rec.response));
        // every turn stores the whole conversation again: it is bounded
        let max = ctx.runtime.config.server.responses_max_bytes;
        let size = serde_json::to_vec(&prior).map_or(0, |b| b.len()) + body.len();
        if size > max {
            return Err(GatewayError::BadRequest(format!(
                "previous_response_id: the conversation would be {size} bytes; at most {max} are accepted (server.responses_max_bytes); start a new one"
            ))
            .into());
        }
    }
    let mut outcome = engine.responses(ctx, &parsed, &prior).await?;
    let previous = parsed.get("previous_response_id").cloned();
    let (id, created_at, echo) = (new_id("resp_"), unix_secs(), Echo::of(&parsed));
    let keep = echo.store().then(|| {
        let mut input = prior;
        input.extend(from_responses::input_items(&parsed).iter().map(from_responses::normalize_item));
        let ttl = ctx.runtime.config.server.responses_ttl;
        Keep { store: store.clone(), owner: ctx.key.id.to_string(), ttl, input }
    });
    outcome.body = match outcome.body {
        // OpenAI's own Response (a target with a Responses endpoint): as it came, kept
        // (the gateway kept the conversation, so the provider's Response names no
        // previous one: it is said again where the client named one)
        OutcomeBody::Json(bytes) if outcome.native => {
            let mut r = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
            let bytes = match &previous {
                Some(p) if r.is_object() => {
                    r["previous_response_id"] = p.clone();
                    Bytes::from(r.to_string())
                }
                _ => bytes,
            };
            if let Some(keep) = keep.filter(|_| r.is_object()) {
                keep.save(r).await;
            }
            OutcomeBody::Json(bytes)
        }
        OutcomeBody::Sse(stream) if outcome.native => {
            let mut parser = SseParser::new();
            let mut keep = keep;
            let events = stream.then(move |mut item| {
                // the provider's events as they came; its last one holds the Response
                let mut finished = None;
                if let Ok(bytes) = &mut item {
                    let evs = parser.feed(bytes).unwrap_or_default();
                    if let Some(p) = &previous {
                        *bytes = evs
                            .iter()
                            .map(|ev| from_responses::with_previous(ev, p))
                            .collect::<Vec<_>>()
                            .concat()
                            .into();
                    }
                    for ev in &evs {
                        if let Some(mut r) = from_responses::final_response(ev) {
                            if let Some(p) = &previous {
                                r["previous_response_id"] = p.clone();
                            }
                            finished = Some(r);
                        }
                    }
                }
                let keep = finished.and_then(|r| keep.take().map(|k| (k, r)));
                async move {
                    if let Some((k, r)) = keep {
                        k.save(r).await;
                    }
                    item
                }
            });
            OutcomeBody::Sse(Box::pin(events))
        }
        OutcomeBody::Json(bytes) => {
            let r = from_responses::response(&bytes, &id, created_at, &echo)?;
            if let Some(keep) = keep {
                keep.save(r.clone()).await;
            }
            OutcomeBody::Json(Bytes::from(r.to_string()))
        }
        OutcomeBody::Sse(stream) => {
            let mut parser = SseParser::new();
            let mut tr = EventTranslator::new(id, created_at, echo);
            let mut keep = keep;
            let events = stream.then(move |item| {
                let mut finished = None;
                let out = item.map(|bytes| {
                    let mut out = BytesMut::new();
                    // the relay yields whole events; a parse error cannot happen on them
                    for ev in parser.feed(&bytes).unwrap_or_default() {
                        for b in tr.on_event(&ev) {
                            out.extend_from_slice(&b);
                        }
                    }
                    finished = tr.finished().cloned();
                    out.freeze()
                });
                // kept before the client reads its end, so that its next turn finds it
                let keep = finished.and_then(|r| keep.take().map(|k| (k, r)));
                async move {
                    if let Some((k, r)) = keep {
                        k.save(r).await;
                    }
                    out
                }
            });
            OutcomeBody::Sse(Box::pin(events))
        }
    };
    Ok(outcome)
}

/// The caller's key and the stored response `id` it made (404 for any other).
async fn owned(req: &HttpRequest, state: &AppState, id: &str) -> Result<(String, Stored), GatewayError> {
    let key = authenticate(req, &state.engine.runtime())?;
    let shown: String = id.chars().take(64).collect();
    match state.responses.get(&key.id, id).await? {
        Some(rec) => Ok((key.id.to_string(), rec)),
        None => Err(GatewayError::Missing(format!("no response `{shown}`"))),
    }
}

/// `GET /v1/responses/{id}`
async fn get(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let result = owned(&req, &state, &path).await.map(|(_, rec)| rec.response);
    reply(&req, result)
}

/// `DELETE /v1/responses/{id}`
async fn delete(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let (owner, _) = owned(&req, &state, &path).await?;
        state.responses.delete(&owner, &path).await?;
        Ok(json!({"id": path.as_str(), "object": "response.deleted", "deleted": true}))
    }
    .await;
    reply(&req, result)
}

/// `GET /v1/responses/{id}/input_items`: the items the response was made from, the
/// conversation before it included, newest first unless `order=asc` (one page).
async fn input_items(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let asc = req.query_string().split('&').any(|kv| kv == "order=asc");
    let result = owned(&req, &state, &path).await.map(|(_, rec)| {
        let mut data = rec.input;
        if !asc {
            data.reverse();
        }
        let id = |i: Option<&Value>| i.and_then(|v| v.get("id")).cloned().unwrap_or(Value::Null);
        json!({"object": "list", "first_id": id(data.first()), "last_id": id(data.last()), "has_more": false, "data": data})
    });
    reply(&req, result)
}
