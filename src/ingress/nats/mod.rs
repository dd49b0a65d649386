//! NATS ingress (async-nats): core request/reply on `<prefix>.v1.chat`,
//! `<prefix>.v1.embeddings` and `<prefix>.v1.responses` in the queue group `switchyard`, and durable jobs from
//! JetStream ([`jobs`]). Both go through the same [`Engine`] as HTTP: auth, routing,
//! limits, cache, ledger and metrics.
//!
//! The connection is made in the background and re-made after a loss; HTTP serves
//! meanwhile, and `/readyz` reports the state.

pub mod batcher;
pub mod jobs;
pub mod logs;
pub mod logs_read;
pub mod quota;
pub mod replicate;
pub mod streams;

use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_actors::telemetry;
use tracing::Instrument as _;

use async_nats::{Client, HeaderMap, Message};
use bytes::Bytes;
use futures_util::StreamExt;
use switchyard_actors::metrics::NATS_REQUESTS_TOTAL;
use switchyard_actors::pipeline::{Failure, OutcomeBody, RequestCtx};
use switchyard_actors::types::Endpoint;
use switchyard_actors::{Engine, GatewayError, Outcome};
use switchyard_config::Nats;

use crate::ingress::responses::store::ResponseStore;

/// Queue group every instance joins, so a request is served by one of them.
pub const QUEUE_GROUP: &str = "switchyard";

/// Header of an error reply: the HTTP status the error would have had.
pub const STATUS_HEADER: &str = "x-switchyard-status";
/// Header of the message that closes a streamed reply.
pub const STREAM_HEADER: &str = "x-switchyard-stream";

/// Connects in the background: `connect` returns at once and the client keeps trying
/// (also after a loss) for as long as the gateway runs.
pub async fn connect(cfg: &Nats) -> Result<Client, streams::NatsError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(&cfg.name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("NATS connected"),
                async_nats::Event::Disconnected => tracing::warn!("NATS disconnected; reconnecting"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        });
    if let Some(t) = &cfg.token {
        opts = opts.token(t.clone());
    }
    if let Some((u, p)) = &cfg.user_password {
        opts = opts.user_and_password(u.clone(), p.clone());
    }
    if let Some(seed) = &cfg.nkey_seed {
        opts = opts.nkey(seed.clone());
    }
    if let Some(ca) = &cfg.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &cfg.tls_client {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if cfg.tls_required {
        opts = opts.require_tls(true);
    }
    if let Some(path) = &cfg.credentials_file {
        let file = path.display().to_string();
        opts = opts.credentials_file(path).await.map_err(streams::NatsError::on("nats.credentials_file", &file))?;
    }
    // a cluster's servers, comma-separated
    let servers: Vec<&str> = cfg.url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    opts.connect(servers).await.map_err(streams::NatsError::on("connect", &cfg.url))
}

/// `connected`, `connecting` or `disconnected`.
pub fn state(client: &Client) -> &'static str {
    match client.connection_state() {
        async_nats::connection::State::Connected => "connected",
        async_nats::connection::State::Pending => "connecting",
        async_nats::connection::State::Disconnected => "disconnected",
    }
}

/// Case-insensitive header lookup (NATS header names keep the client's case).
pub fn header<'a>(headers: Option<&'a HeaderMap>) -> impl Fn(&str) -> Option<&'a str> {
    move |name| {
        headers?
            .iter()
            .find(|(k, _)| AsRef::<str>::as_ref(k).eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first())
            .map(|v| v.as_str())
    }
}

/// A request id from `x-request-id` when it is sane, else a new one.
pub fn request_id<'a>(lookup: &impl Fn(&str) -> Option<&'a str>) -> String {
    switchyard_actors::ids::request_id(lookup("x-request-id"))
}

/// Runs the engine for one request (either ingress).
pub async fn call(engine: &Engine, api: Endpoint, ctx: &RequestCtx, body: &[u8]) -> Result<Outcome, Failure> {
    engine.serve(api, ctx, body).await
}

/// What a request/reply subject serves.
#[derive(Debug, Clone, Copy)]
enum Api {
    /// `<prefix>.v1.chat`, `<prefix>.v1.embeddings`
    Engine(Endpoint),
    /// `<prefix>.v1.responses`: the Responses API, its stored responses shared with HTTP.
    Responses,
    /// `<prefix>.v1.feedback`: feedback on a request.
    Feedback,
}

impl Api {
    fn as_str(self) -> &'static str {
        match self {
            Api::Engine(e) => e.as_str(),
            Api::Responses => "responses",
            Api::Feedback => "feedback",
        }
    }
}

/// Serves core request/reply until the client is dropped: one subscription per API in
/// the queue group, one task per request.
pub async fn serve_requests(client: Client, engine: Arc<Engine>, cfg: Nats, responses: Arc<ResponseStore>) {
    for api in [Api::Engine(Endpoint::Chat), Api::Engine(Endpoint::Embeddings), Api::Responses, Api::Feedback] {
        let subject = cfg.subject(api.as_str());
        let sub = match client.queue_subscribe(subject.clone(), QUEUE_GROUP.to_string()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(subject, error = %e, "cannot subscribe; NATS request/reply is off");
                continue;
            }
        };
        tracing::info!(subject, queue = QUEUE_GROUP, "serving NATS requests");
        let (client, engine, responses) = (client.clone(), engine.clone(), responses.clone());
        actix_web::rt::spawn(async move {
            let mut sub = sub;
            while let Some(msg) = sub.next().await {
                let (client, engine, responses) = (client.clone(), engine.clone(), responses.clone());
                // with traces on, the request runs under a span of its subject (a child
                // of the `traceparent` header's trace)
                let span = telemetry::request_span(msg.subject.as_str(), "server", header(msg.headers.as_ref()));
                let handled = async move { handle_request(&client, &engine, &responses, api, msg).await };
                actix_web::rt::spawn(handled.instrument(span));
            }
        });
    }
}

async fn handle_request(client: &Client, engine: &Engine, responses: &Arc<ResponseStore>, api: Api, msg: Message) {
    let received = Instant::now();
    let Some(reply) = msg.reply.clone() else {
        metrics::counter!(NATS_REQUESTS_TOTAL, "api" => api.as_str(), "status" => "no_reply").increment(1);
        tracing::debug!(subject = %msg.subject, "NATS request without a reply subject dropped");
        return;
    };
    let lookup = header(msg.headers.as_ref());
    let request_id = request_id(&lookup);
    let runtime = engine.runtime();
    let limit = runtime.config.server.body_limit_bytes;
    // what a prompt or an experiment did, for an error reply's headers too
    let mut shaped = None;
    let result = match RequestCtx::from_headers(runtime, request_id.clone(), received, lookup) {
        Err(e) => Err(Failure::from(e)),
        Ok(_) if msg.payload.len() > limit => Err(Failure::from(GatewayError::TooLarge(limit))),
        Ok(ctx) => {
            let result = serve_api(client, engine, responses, api, &ctx, &msg, &request_id).await;
            shaped = ctx.shaped.get().cloned();
            match result {
                Some(r) => r,
                None => return,
            }
        }
    };
    let status = match result {
        Ok(outcome) => {
            let mut headers = HeaderMap::new();
            headers.insert("x-request-id", request_id.as_str());
            headers.insert("x-switchyard-provider", outcome.provider.as_str());
            headers.insert("x-switchyard-model", outcome.upstream_model.as_str());
            headers.insert("x-switchyard-cache", outcome.cache.as_str());
            if let Some(s) = outcome.cache.similarity() {
                headers.insert("x-switchyard-cache-similarity", format!("{s:.4}").as_str());
            }
            headers.insert("x-switchyard-attempts", outcome.attempts.to_string().as_str());
            if let Some(route) = &outcome.route {
                headers.insert("x-switchyard-route", route.as_str());
            }
            if let Some(flags) = &outcome.guardrail_flags {
                headers.insert("x-switchyard-guardrails", flags.as_str());
            }
            shaped_headers(&mut headers, outcome.shaped.as_deref());
            for (k, v) in outcome.rate.pairs() {
                headers.insert(k.name(), v.as_str());
            }
            telemetry::inject(&telemetry::current(), |k, v| headers.insert(k, v.as_str()));
            match outcome.body {
                OutcomeBody::Json(bytes) => {
                    publish(client, reply, headers, bytes).await;
                    200
                }
                OutcomeBody::Sse(stream) => relay_stream(client, reply, headers, stream).await,
            }
        }
        Err(failure) => {
            let status = failure.error.class().status;
            let (mut headers, body) = error_message(&request_id, &failure);
            shaped_headers(&mut headers, shaped.as_deref());
            telemetry::inject(&telemetry::current(), |k, v| headers.insert(k, v.as_str()));
            publish(client, reply, headers, body).await;
            status
        }
    };
    telemetry::record_status(&telemetry::current(), status, None);
    metrics::counter!(NATS_REQUESTS_TOTAL, "api" => api.as_str(), "status" => status.to_string()).increment(1);
}

/// The `x-switchyard-prompt` and `x-switchyard-experiment` headers of a reply.
fn shaped_headers(headers: &mut HeaderMap, shaped: Option<&switchyard_actors::prompts::shape::Shaped>) {
    if let Some((id, v)) = shaped.and_then(|s| s.prompt.as_ref()) {
        headers.insert("x-switchyard-prompt", format!("{id}@{v}").as_str());
    }
    if let Some((e, v)) = shaped.and_then(|s| s.experiment.as_ref()) {
        headers.insert("x-switchyard-experiment", format!("{e}/{v}").as_str());
    }
}

/// Serves one request of `api`; `None` when it answered itself (feedback).
async fn serve_api(
    client: &Client,
    engine: &Engine,
    responses: &Arc<ResponseStore>,
    api: Api,
    ctx: &RequestCtx,
    msg: &Message,
    request_id: &str,
) -> Option<Result<Outcome, Failure>> {
    Some(match api {
        Api::Engine(endpoint) => call(engine, endpoint, ctx, &msg.payload).await,
        Api::Responses => crate::ingress::responses::serve(engine, responses, ctx, &msg.payload).await,
        Api::Feedback => match engine.feedback(ctx, &msg.payload) {
            Ok(v) => {
                let mut headers = HeaderMap::new();
                headers.insert("x-request-id", request_id);
                publish(client, msg.reply.clone()?, headers, Bytes::from(v.to_string())).await;
                metrics::counter!(NATS_REQUESTS_TOTAL, "api" => "feedback", "status" => "200").increment(1);
                return None;
            }
            Err(e) => Err(Failure::from(e)),
        },
    })
}

/// The error reply: `x-switchyard-status` and the OpenAI error body.
pub fn error_message(request_id: &str, failure: &Failure) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert("x-request-id", request_id);
    headers.insert(STATUS_HEADER, failure.error.class().status.to_string().as_str());
    if let Some(s) = failure.error.retry_after_secs() {
        headers.insert("retry-after", s.to_string().as_str());
    }
    if let Some(rate) = &failure.rate {
        for (k, v) in rate.pairs() {
            headers.insert(k.name(), v.as_str());
        }
    }
    (headers, Bytes::from(failure.error.body().to_string()))
}

async fn publish(client: &Client, subject: async_nats::Subject, headers: HeaderMap, body: Bytes) {
    if let Err(e) = client.publish_with_headers(subject, headers, body).await {
        tracing::warn!(error = %e, "cannot publish a NATS reply");
    }
}

/// A streamed reply: one message per event (its JSON), in order, then a last message
/// with `x-switchyard-stream: end`. A chat stream that fails mid-way ends with the error
/// body and `x-switchyard-status` on that last message instead. A Responses stream's
/// events are all sent (`response.failed` included); the end message follows its last
/// (`response.completed`, `response.incomplete`, or `response.failed` with status 502 and
/// the error body).
async fn relay_stream(
    client: &Client,
    reply: async_nats::Subject,
    headers: HeaderMap,
    mut stream: switchyard_actors::pipeline::SseStream,
) -> u16 {
    let mut first = Some(headers);
    let mut status = 200;
    let mut ended = false;
    let mut parser = switchyard_actors::providers::sse::SseParser::new();
    'read: while let Some(Ok(bytes)) = stream.next().await {
        // the relay yields whole events; a parse error cannot happen on them
        for ev in parser.feed(&bytes).unwrap_or_default() {
            let data = ev.data.as_str();
            let mut headers = first.take().unwrap_or_default();
            if data == "[DONE]" {
                headers.insert(STREAM_HEADER, "end");
                publish(client, reply.clone(), headers, Bytes::new()).await;
                ended = true;
                break 'read;
            }
            if data.starts_with("{\"error\"") {
                status = 502;
                headers.insert(STREAM_HEADER, "end");
                headers.insert(STATUS_HEADER, "502");
                publish(client, reply.clone(), headers, Bytes::copy_from_slice(data.as_bytes())).await;
                ended = true;
                break 'read;
            }
            publish(client, reply.clone(), headers, Bytes::copy_from_slice(data.as_bytes())).await;
            let last = match ev.event.as_deref() {
                Some("response.completed" | "response.incomplete") => Some(None),
                Some("response.failed") => {
                    let v: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
                    Some(Some(serde_json::json!({"error": v.pointer("/response/error")})))
                }
                _ => None,
            };
            if let Some(error) = last {
                let mut headers = HeaderMap::new();
                headers.insert(STREAM_HEADER, "end");
                let body = match error {
                    Some(e) => {
                        status = 502;
                        headers.insert(STATUS_HEADER, "502");
                        Bytes::from(e.to_string())
                    }
                    None => Bytes::new(),
                };
                publish(client, reply.clone(), headers, body).await;
                ended = true;
                break 'read;
            }
        }
    }
    if !ended {
        // the relay always ends with [DONE] or an error event; never leave a reader hanging
        let mut headers = first.take().unwrap_or_default();
        headers.insert(STREAM_HEADER, "end");
        headers.insert(STATUS_HEADER, "502");
        let body = GatewayError::Internal("the stream ended without a close".into()).body().to_string();
        publish(client, reply, headers, Bytes::from(body)).await;
        status = 502;
    }
    status
}
