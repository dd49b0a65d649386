//! The endpoints: chat (OpenAI's and Anthropic's Messages, which may go upstream as
//! the client sent it) and embeddings. Each parses, applies the key's policy and the
//! guardrails, admits, calls and meters.

use std::sync::Arc;

use serde_json::{json, Value};
use switchyard_config::Api;

use super::admit::{RouteFacts, NOMINAL_OUTPUT_TOKENS};
use super::call::{Called, Encoded};
use super::{relay, CacheStatus, Engine, Failure, Outcome, OutcomeBody, RequestCtx};
use crate::prompts::shape::Format;
use crate::types::{ChatRequest, EmbeddingsRequest, Endpoint, NativeRequest, Usage, WireFormat};
use crate::upstream::{UpstreamBody, UpstreamReply};
use crate::{telemetry, tokens, GatewayError};
use tracing::Span;

impl Engine {
    /// `POST /v1/chat/completions` (and its NATS twin).
    pub async fn chat(&self, ctx: &RequestCtx, body: &[u8]) -> Result<Outcome, Failure> {
        // a shaped body is taken as it is, not written and read again
        let req = match self.shape_object(ctx, Format::Chat, body) {
            Ok(Some(shaped)) => ChatRequest::from_object(shaped),
            Ok(None) => ChatRequest::parse(body),
            Err(e) => Err(e),
        };
        self.chat_request(ctx, req).await
    }

    /// The endpoint's request (OpenAI's JSON), whichever ingress it came from.
    pub async fn serve(&self, endpoint: Endpoint, ctx: &RequestCtx, body: &[u8]) -> Result<Outcome, Failure> {
        match endpoint {
            Endpoint::Chat => self.chat(ctx, body).await,
            Endpoint::Embeddings => self.embeddings(ctx, body).await,
        }
    }

    /// `POST /v1/messages`: an Anthropic Messages request, served as chat. A target that
    /// speaks Anthropic's format gets the client's request whole (with `headers`, the
    /// client's `anthropic-beta`), and the answer comes back as it sent it
    /// ([`Outcome::native`]); any other target gets the translation.
    pub async fn messages(
        &self,
        ctx: &RequestCtx,
        body: &[u8],
        headers: Vec<(String, String)>,
    ) -> Result<Outcome, Failure> {
        let shaped = match self.shape_object(ctx, Format::Anthropic, body) {
            Ok(s) => s.map(|m| serde_json::to_vec(&m).unwrap_or_default()),
            Err(e) => return self.chat_request(ctx, Err(e)).await,
        };
        let body = shaped.as_deref().unwrap_or(body);
        let req = crate::providers::from_anthropic::request(body).and_then(|openai| {
            let mut req = ChatRequest::parse(&openai)?;
            let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
                return Err(GatewayError::BadRequest("the body must be a JSON object".into()));
            };
            let native = NativeRequest { format: WireFormat::Anthropic, body, headers, untranslatable: None };
            req.native = Some(Arc::new(native));
            Ok(req)
        });
        self.chat_request(ctx, req).await
    }

    /// `POST /v1/responses`: a Responses request (`req`, parsed by
    /// `from_responses::parse`) continuing the conversation whose items are `prior`,
    /// served as chat under the same key policy, limits, guardrails, cache and ledger. A
    /// target with a Responses endpoint (`openai`) gets the client's request whole, the
    /// conversation spelled out in `input` ([`Outcome::native`]: the answer is OpenAI's
    /// Response); for any other the caller turns the chat answer into a Response
    /// (`from_responses`).
    pub async fn responses(
        &self,
        ctx: &RequestCtx,
        req: &serde_json::Map<String, Value>,
        prior: &[Value],
    ) -> Result<Outcome, Failure> {
        use crate::providers::from_responses;
        let mut shaped = None;
        if req.contains_key("prompt") || self.shapes_any(ctx) {
            let mut owned = req.clone();
            match self.shape(ctx, Format::Responses, &mut owned) {
                Ok(true) => shaped = Some(owned),
                Ok(false) => {}
                Err(e) => return self.chat_request(ctx, Err(e)).await,
            }
        }
        let req = shaped.as_ref().unwrap_or(req);
        let translated = from_responses::request_for_any(req, prior);
        let chat = translated.and_then(|(b, untranslatable)| Ok((ChatRequest::parse(&b)?, untranslatable)));
        let chat = chat.map(|(mut chat, untranslatable)| {
            let mut body = req.clone();
            // the gateway keeps the conversation: the provider gets all of it
            if body.remove("previous_response_id").is_some() {
                let mut input = prior.to_vec();
                input.extend(from_responses::input_items(req));
                body.insert("input".into(), Value::Array(input));
            }
            // bounded upstream as the translated request is (the key's `max_tokens`)
            if let (Some(cap), false) = (ctx.key.max_tokens(), body.contains_key("max_output_tokens")) {
                body.insert("max_output_tokens".into(), json!(cap));
            }
            let native = NativeRequest { format: WireFormat::Responses, body, headers: Vec::new(), untranslatable };
            chat.native = Some(Arc::new(native));
            chat
        });
        self.chat_request(ctx, chat).await
    }

    pub(super) async fn chat_request(
        &self,
        ctx: &RequestCtx,
        req: Result<ChatRequest, GatewayError>,
    ) -> Result<Outcome, Failure> {
        let alias = req.as_ref().ok().map(|r| r.model.clone());
        let result = match req {
            Ok(req) => self.chat_inner(ctx, req).await,
            Err(e) => Err(e.into()),
        };
        self.count_early(ctx, &result, alias.as_deref());
        result
    }

    pub(super) async fn chat_inner(&self, ctx: &RequestCtx, mut req: ChatRequest) -> Result<Outcome, Failure> {
        ctx.key.check_api(ctx.api(Api::Chat))?;
        let server = &ctx.runtime.config.server;
        if req.messages.len() > server.max_messages {
            let n = req.messages.len();
            return Err(GatewayError::BadRequest(format!(
                "{n} messages; at most {} are accepted",
                server.max_messages
            ))
            .into());
        }
        let depth = req.messages.iter().chain(req.rest.values()).map(crate::types::json_depth).max().unwrap_or(0) + 2;
        if depth > server.max_json_depth {
            return Err(GatewayError::BadRequest(format!(
                "the request nests {depth} levels deep; at most {} are accepted",
                server.max_json_depth
            ))
            .into());
        }
        if let Some(cap) = ctx.key.max_tokens() {
            match req.max_output_tokens() {
                Some(n) if n > cap => {
                    return Err(GatewayError::Forbidden {
                        code: "max_tokens_not_allowed",
                        message: format!("max_tokens {n} is above this key's limit of {cap}"),
                    }
                    .into())
                }
                Some(_) => {}
                // bounded upstream, and what the limits and budget reserve
                None => req.max_tokens = Some(cap),
            }
        }
        let prompt = tokens::estimate_prompt(&req);
        let stream = req.is_stream();
        let facts = RouteFacts {
            requested: &req.model,
            user: req.user(),
            has_tools: req.has_tools(),
            has_images: req.has_images(),
            prompt_tokens: prompt,
            output_tokens: req.max_output_tokens().unwrap_or(NOMINAL_OUTPUT_TOKENS),
        };
        let routing = Self::routing(ctx, facts, || req.last_user_text());
        let alias = routing.alias.clone();
        if !ctx.span.is_disabled() {
            ctx.span.record("gen_ai.request.model", alias.as_str());
        }
        // guardrails act on the request before anything else sees it (cache key included)
        let mut guards = ctx.runtime.guardrails(&ctx.key, &alias);
        let span = if guards.is_empty() { Span::none() } else { telemetry::stage(&ctx.span, "switchyard.guardrails") };
        let blocked = |e: &GatewayError| telemetry::failed(&span, e.class().code);
        if req.native.is_some() && !guards.is_empty() {
            // the client's own request goes upstream only as the guardrails left it
            let before = req.messages.clone();
            guards.on_messages(&mut req.messages).inspect_err(blocked)?;
            if before != req.messages {
                // what only the client's own request could carry cannot go translated
                if let Some(why) = req.native.as_ref().and_then(|n| n.untranslatable.clone()) {
                    return Err(GatewayError::BadRequest(why).into());
                }
                req.native = None;
            }
        } else {
            guards.on_messages(&mut req.messages).inspect_err(blocked)?;
        }
        let texts = || crate::guardrails::Applied::moderation_texts(&req.messages);
        self.moderation_second_opinions(ctx, &mut guards, texts, true).await.inspect_err(blocked)?;
        self.injection_second_opinions(ctx, &mut guards).await.inspect_err(blocked)?;
        if guards.guards.iter().any(|g| g.on_request && g.has_services()) {
            let before = req.native.is_some().then(|| req.messages.clone());
            self.external_request_guardrails(ctx, &mut guards, &mut req.messages, &alias).await.inspect_err(blocked)?;
            if before.is_some_and(|b| b != req.messages) {
                if let Some(why) = req.native.as_ref().and_then(|n| n.untranslatable.clone()) {
                    return Err(GatewayError::BadRequest(why).into());
                }
                req.native = None;
            }
        }
        drop(span);
        // no more than the alias's targets can produce, whatever `max_tokens` asks for
        let output_cap = ctx.runtime.config.model(&alias).and_then(|m| m.max_output_tokens);
        let reserve = match output_cap {
            Some(cap) => tokens::reservation(&req, prompt).min(prompt + cap),
            None => tokens::reservation(&req, prompt),
        };
        // the semantic cache: the prompt's embedding first (within its budget), before a
        // provider slot is held, so that the two never wait on each other
        let ask = if guards.vault.is_empty() { self.semantic_ask(ctx, &alias, &req) } else { None };
        let vector = match &ask {
            Some(a) => self.embed_prompt(ctx, a).await,
            None => None,
        };
        let mut p = self
            .prepare(ctx, Endpoint::Chat, &routing, reserve, || {
                let mut v = serde_json::to_value(&req).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.remove("stream");
                    o.remove("stream_options");
                    // what only the client's own request holds (thinking, cache_control,
                    // beta headers) tells answers apart too
                    if let Some(n) = &req.native {
                        let mut native = n.body.clone();
                        native.remove("stream");
                        o.insert("native".into(), json!({"body": native, "headers": n.headers}));
                    }
                }
                v
            })
            .await?;
        match (&p.hit, ask, vector) {
            (None, Some(ask), Some(vector)) => {
                let (hit, status) = self.semantic_lookup(ctx, &ask, &vector);
                p.cache_status = status;
                match hit {
                    Some(h) => p.hit = Some(h),
                    None => p.semantic_fill = self.semantic_fill(ask, vector),
                }
            }
            // no embedding in time: a miss, not stored
            (None, Some(_), None) => p.cache_status = CacheStatus::SemanticMiss(None),
            _ => {}
        }
        // logged as the guardrails left it: what the provider gets
        p.log = self.log_draft(ctx, &alias, || serde_json::to_value(&req).unwrap_or(Value::Null));
        let record = self.record_template(ctx, Endpoint::Chat, &alias, stream);
        if p.hit.is_some() {
            return self.answer_from_cache(ctx, p, record, stream.then(|| req.wants_stream_usage())).await;
        }
        let called = self
            .call_upstream(ctx, p, record, prompt, false, |adapter, model| {
                // a target that speaks the client's own format gets the client's request
                if let Some(native) = req.native.as_deref() {
                    if let Some(body) = adapter.encode_native(native, model) {
                        let native =
                            crate::upstream::Native { format: native.format, headers: native.headers.as_slice() };
                        return body.map(|body| Encoded { body, native: Some(native) });
                    }
                    // the translation would leave out what the client asked for
                    if let Some(why) = &native.untranslatable {
                        return Err(GatewayError::BadRequest(why.clone()));
                    }
                }
                adapter.encode_chat(&req, model).map(Encoded::translated)
            })
            .await?;
        let Called { mut fin, provider, model, reply, usage, rate, cache_status, route } = called;
        let (upstream_time, attempts) = (fin.upstream_time, fin.record.upstream_attempts);
        let UpstreamReply { body, native_body, decoder, adapter, .. } = reply;
        let mut native = false;
        let body = match body {
            UpstreamBody::Full(bytes) => {
                // placeholders restored, the answer checked
                let mut checked = guards.on_completion(&bytes);
                // the answer's second opinion, when a guardrail asks a provider for one
                if checked.is_ok() && !guards.upstream_moderations(false).is_empty() {
                    let answer = content_text(checked.as_ref().ok().and_then(Option::as_ref).unwrap_or(&bytes));
                    if let Err(e) = self.moderation_second_opinions(ctx, &mut guards, || vec![answer], false).await {
                        checked = Err(e);
                    }
                }
                if checked.is_ok() && guards.guards.iter().any(|g| g.on_response && g.webhook.is_some()) {
                    let answer = content_text(checked.as_ref().ok().and_then(Option::as_ref).unwrap_or(&bytes));
                    if let Err(e) = self.external_answer_guardrails(ctx, &mut guards, &answer, &alias).await {
                        checked = Err(e);
                    }
                }
                fin.record.guardrails = guards.notes();
                // the log gets the answer the client gets, unless that holds the real
                // values behind pseudonyms: then the provider's, which holds placeholders
                let provider_answer = (!guards.vault.is_empty()).then(|| bytes.clone());
                let (bytes, changed) = match checked {
                    Ok(Some(new)) => (new, true),
                    Ok(None) => (bytes, false),
                    Err(e) => {
                        if let Some(d) = &mut fin.log {
                            d.withhold("blocked by a guardrail");
                        }
                        let text = content_text(&bytes);
                        fin.finish(e.class().status, usage, &text, None);
                        fin.durable().await;
                        return Err(Failure { error: e, rate: Some(Box::new(rate)), counted: true });
                    }
                };
                let text = if usage.is_none() { content_text(&bytes) } else { String::new() };
                // an answer holding real values behind pseudonyms is not cached
                let cache_body = (fin.wants_body() && guards.vault.is_empty()).then(|| bytes.to_vec());
                if let Some(d) = &mut fin.log {
                    d.answer(provider_answer.as_ref().unwrap_or(&bytes));
                }
                fin.finish(200, usage, &text, cache_body);
                fin.durable().await;
                match native_body {
                    // the provider's own answer, as it came, unless a guardrail changed it
                    Some(raw) if !changed => {
                        native = true;
                        OutcomeBody::Json(raw)
                    }
                    _ => OutcomeBody::Json(bytes),
                }
            }
            UpstreamBody::Stream(s) => {
                fin.record.guardrails = guards.notes();
                let guarded = crate::guardrails::GuardStream::needed(&guards);
                let (s, decoder) = match decoder {
                    // a native stream relayed as it came, metered through its decoder
                    Some(d) if !guarded => {
                        native = true;
                        (s, Some(d))
                    }
                    // the guardrails read OpenAI's events: translated after all
                    Some(d) => (crate::upstream::translated(s, d), None),
                    None => (s, None),
                };
                let s = if guarded {
                    if !guards.vault.is_empty() {
                        fin.cache_put = None;
                        fin.semantic_put = None;
                    }
                    let stage = crate::providers::Sse::new(crate::guardrails::GuardStream::new(&guards));
                    crate::upstream::translated(s, stage)
                } else {
                    s
                };
                let mut relay = relay::Relay::new(s, fin, req.wants_stream_usage(), provider.clone());
                relay.pseudonymized = !guards.vault.is_empty();
                OutcomeBody::Sse(Box::pin(relay.native(decoder, adapter)))
            }
        };
        Ok(Outcome {
            body,
            provider,
            upstream_model: model,
            cache: cache_status,
            rate,
            upstream_time,
            route,
            attempts,
            native,
            shaped: ctx.shaped.get().cloned(),
            guardrail_flags: guards.flags_header(),
        })
    }

    /// `POST /v1/embeddings` (and its NATS twin).
    pub async fn embeddings(&self, ctx: &RequestCtx, body: &[u8]) -> Result<Outcome, Failure> {
        let req = EmbeddingsRequest::parse(body);
        let alias = req.as_ref().ok().map(|r| r.model.clone());
        let result = match req {
            Ok(req) => self.embeddings_inner(ctx, req).await,
            Err(e) => Err(e.into()),
        };
        self.count_early(ctx, &result, alias.as_deref());
        result
    }

    pub(super) async fn embeddings_inner(&self, ctx: &RequestCtx, req: EmbeddingsRequest) -> Result<Outcome, Failure> {
        ctx.key.check_api(ctx.api(Api::Embeddings))?;
        let server = &ctx.runtime.config.server;
        let inputs = req.input_count();
        if inputs > server.max_inputs {
            let max = server.max_inputs;
            return Err(GatewayError::BadRequest(format!(
                "{inputs} inputs; at most {max} are accepted (server.max_inputs)"
            ))
            .into());
        }
        if let Some(d) = req.dimensions.filter(|d| *d > server.max_dimensions) {
            let max = server.max_dimensions;
            return Err(GatewayError::BadRequest(format!(
                "`dimensions` {d} is above the most accepted, {max} (server.max_dimensions)"
            ))
            .into());
        }
        let prompt = tokens::estimate_embeddings(&req);
        let facts = RouteFacts {
            requested: &req.model,
            user: req.rest.get("user").and_then(Value::as_str),
            has_tools: false,
            has_images: false,
            prompt_tokens: prompt,
            output_tokens: 0,
        };
        let routing = Self::routing(ctx, facts, || req.inputs().join("\n"));
        let alias = routing.alias.clone();
        let mut p = self
            .prepare(ctx, Endpoint::Embeddings, &routing, prompt, || serde_json::to_value(&req).unwrap_or(Value::Null))
            .await?;
        p.log = self.log_draft(ctx, &alias, || serde_json::to_value(&req).unwrap_or(Value::Null)).map(|mut d| {
            d.withhold("embeddings: vectors are not logged");
            d
        });
        let record = self.record_template(ctx, Endpoint::Embeddings, &alias, false);
        if p.hit.is_some() {
            return self.answer_from_cache(ctx, p, record, None).await;
        }
        let called = self
            .call_upstream(
                ctx,
                p,
                record,
                prompt,
                req.encoding_format.as_deref() == Some("base64"),
                |adapter, model| adapter.encode_embeddings(&req, model).map(Encoded::translated),
            )
            .await?;
        let Called { mut fin, provider, model, reply, usage, rate, cache_status, route } = called;
        let UpstreamBody::Full(bytes) = reply.body else {
            let err = GatewayError::UpstreamInvalid { provider, message: "unexpected stream".into() };
            return Err(Self::failed(ctx, &mut fin, err, rate).await);
        };
        let usage = usage.map(|u| Usage { output: 0, ..u });
        let cache_body = fin.cache_put.map(|_| bytes.to_vec());
        fin.finish(200, usage, "", cache_body);
        fin.durable().await;
        let (upstream_time, attempts) = (fin.upstream_time, fin.record.upstream_attempts);
        let body = OutcomeBody::Json(bytes);
        Ok(Outcome {
            body,
            provider,
            upstream_model: model,
            cache: cache_status,
            rate,
            upstream_time,
            route,
            attempts,
            native: false,
            shaped: ctx.shaped.get().cloned(),
            guardrail_flags: None,
        })
    }
}

/// The assistant text of a completion body (for estimating output tokens).
pub(super) fn content_text(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v.get("choices")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter().filter_map(|c| c.pointer("/message/content").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        })
        .unwrap_or_default()
}
