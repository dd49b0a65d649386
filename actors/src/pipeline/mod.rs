//! The request path, shared by every ingress: parse, authorize, limit, cache, route,
//! acquire a provider slot, call, meter. One [`Engine`] holds the actors' addresses and
//! the current config snapshot, which a reload swaps atomically; requests in flight keep
//! the snapshot they started with.

mod finish;
mod relay;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;
use switchyard_config::{Config, Key, Priority, Provider};

pub use self::finish::{record_overhead, Finisher, InflightGuard};
use crate::actors::accounting::{Accounting, Flush};
use crate::actors::cache::{cache_key, Cache, Lookup, SetCapacity};
use crate::actors::provider_worker::{Acquire, ProviderWorker, Resize};
use crate::actors::rate_limiter::{Admit, RateHeaders, RateLimiter};
use crate::actors::router::{Route, Router, UpdateModels};
use crate::metrics::{CACHE_REQUESTS_TOTAL, RATE_LIMITED_TOTAL};
use crate::providers::openai;
use crate::providers::sse::{data_event, DONE};
use crate::providers::{UpstreamBody, UpstreamCall, UpstreamClient};
use crate::store::Store;
use crate::types::{ChatRequest, EmbeddingsRequest, Endpoint, Usage, UsageRecord};
use crate::{tokens, GatewayError};

/// A key as the engine sees it.
pub struct KeyEntry {
    pub id: Arc<str>,
    pub key: Key,
}

/// A provider's worker actor and client.
pub struct ProviderHandle {
    pub worker: Addr<ProviderWorker>,
    pub client: UpstreamClient,
}

/// Everything derived from one config, swapped as a whole on reload.
pub struct Runtime {
    pub config: Arc<Config>,
    keys: HashMap<String, Arc<KeyEntry>>,
    providers: HashMap<String, Arc<ProviderHandle>>,
    /// Union of every provider's `forward_headers`.
    pub forward_headers: HashSet<String>,
}

impl Runtime {
    /// Looks a presented credential up (by its SHA-256).
    pub fn authenticate(&self, secret: &str) -> Option<Arc<KeyEntry>> {
        self.keys.get(&switchyard_config::hash_key(secret)).cloned()
    }

    pub fn model_aliases(&self) -> impl Iterator<Item = &str> {
        self.config.models.iter().map(|m| m.alias.as_str())
    }
}

/// What the ingress knows about a request before its body is parsed.
pub struct RequestCtx {
    pub request_id: String,
    pub key: Arc<KeyEntry>,
    pub priority: Priority,
    /// `cache-control: no-cache`
    pub no_cache: bool,
    /// Client headers that some provider forwards (lower-case names).
    pub headers: Vec<(String, String)>,
    pub received: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

pub type SseStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::convert::Infallible>> + Send>>;

pub enum OutcomeBody {
    Json(Bytes),
    Sse(SseStream),
}

/// A successful answer and what the response headers say about it.
pub struct Outcome {
    pub body: OutcomeBody,
    pub provider: String,
    pub upstream_model: String,
    pub cache: CacheStatus,
    pub rate: RateHeaders,
    /// Time spent waiting on the provider before the response could start.
    pub upstream_time: Duration,
}

/// An error and the rate-limit headers known when it happened.
pub struct Failure {
    pub error: GatewayError,
    pub rate: Option<RateHeaders>,
}

impl From<GatewayError> for Failure {
    fn from(error: GatewayError) -> Failure {
        Failure { error, rate: None }
    }
}

pub struct Engine {
    runtime: ArcSwap<Runtime>,
    router: Addr<Router>,
    limiter: Addr<RateLimiter>,
    cache: Addr<Cache>,
    accounting: Addr<Accounting>,
    engine_arbiter: ArbiterHandle,
    pub store: Store,
}

fn mailbox(e: MailboxError) -> GatewayError {
    GatewayError::Unavailable(format!("engine is shutting down: {e}"))
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn same_worker_settings(a: &Provider, b: &Provider) -> bool {
    a == b
}

impl Engine {
    /// Starts the actors: router, rate limiter, cache and the provider workers on one
    /// engine arbiter (their handlers are short and never block), accounting on its own
    /// (its commits fsync). Must be called inside a running actix `System`.
    pub fn start(config: Arc<Config>, store: Store, seed: Option<u64>) -> Result<Arc<Engine>, GatewayError> {
        let engine_arbiter = Arbiter::new().handle();
        let ledger_arbiter = Arbiter::new().handle();
        let cfg = config.clone();
        let router = Router::start_in_arbiter(&engine_arbiter, move |_| Router::new(&cfg, seed));
        let limiter = RateLimiter::start_in_arbiter(&engine_arbiter, |_| RateLimiter::default());
        let cache_store = store.clone();
        let max_bytes = config.cache.max_bytes;
        let cache = Cache::start_in_arbiter(&engine_arbiter, move |_| Cache::new(cache_store, max_bytes));
        let acc_store = store.clone();
        let (flush, batch) = (config.server.ledger_flush, config.server.ledger_batch_max);
        let accounting =
            Accounting::start_in_arbiter(&ledger_arbiter, move |_| Accounting::new(acc_store, flush, batch));
        let runtime = Self::build_runtime(config, &HashMap::new(), &engine_arbiter)?;
        Ok(Arc::new(Engine {
            runtime: ArcSwap::from_pointee(runtime),
            router,
            limiter,
            cache,
            accounting,
            engine_arbiter,
            store,
        }))
    }

    fn build_runtime(
        config: Arc<Config>,
        old: &HashMap<String, Arc<ProviderHandle>>,
        arbiter: &ArbiterHandle,
    ) -> Result<Runtime, GatewayError> {
        let mut providers = HashMap::new();
        for p in &config.providers {
            let handle = match old.get(&p.name) {
                Some(h) if same_worker_settings(&h.client.cfg, p) => h.clone(),
                Some(h) => {
                    // same provider, new settings: keep the worker (its in-flight slots),
                    // resize it, and use a new client
                    let _ = h.worker.try_send(Resize { concurrency: p.concurrency, queue_size: p.queue_size });
                    Arc::new(ProviderHandle { worker: h.worker.clone(), client: UpstreamClient::new(p.clone())? })
                }
                None => {
                    let (name, c, q) = (p.name.clone(), p.concurrency, p.queue_size);
                    let worker = ProviderWorker::start_in_arbiter(arbiter, move |_| ProviderWorker::new(name, c, q));
                    Arc::new(ProviderHandle { worker, client: UpstreamClient::new(p.clone())? })
                }
            };
            providers.insert(p.name.clone(), handle);
        }
        let keys = config
            .keys
            .iter()
            .map(|k| (k.key_sha256.clone(), Arc::new(KeyEntry { id: Arc::from(k.id.as_str()), key: k.clone() })))
            .collect();
        let forward_headers = config.providers.iter().flat_map(|p| p.forward_headers.iter().cloned()).collect();
        Ok(Runtime { config, keys, providers, forward_headers })
    }

    /// The current config snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Swaps in a new (already validated) config. Requests in flight finish on the old one.
    pub async fn reload(&self, config: Arc<Config>) -> Result<(), GatewayError> {
        let old = self.runtime.load_full();
        let rt = Self::build_runtime(config.clone(), &old.providers, &self.engine_arbiter)?;
        self.router.send(UpdateModels(config.clone())).await.map_err(mailbox)?;
        self.cache.send(SetCapacity(config.cache.max_bytes)).await.map_err(mailbox)?;
        self.runtime.store(Arc::new(rt));
        Ok(())
    }

    /// Commits buffered usage records now (graceful shutdown).
    pub async fn flush_ledger(&self) -> Result<usize, GatewayError> {
        self.accounting.send(Flush).await.map_err(mailbox)
    }

    fn record_template(&self, ctx: &RequestCtx, endpoint: Endpoint, alias: &str, stream: bool) -> UsageRecord {
        UsageRecord {
            request_id: ctx.request_id.clone(),
            ts_ms: unix_ms().saturating_sub(ctx.received.elapsed().as_millis() as u64),
            key_id: ctx.key.id.to_string(),
            endpoint,
            alias: alias.to_string(),
            provider: String::new(),
            upstream_model: String::new(),
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            cost_usd: 0.0,
            latency_us: 0,
            ttft_us: None,
            status: 0,
            cache_hit: false,
            stream,
            usage_estimated: false,
        }
    }

    /// Alias exists (404) and the key may use it (403).
    fn authorize(&self, rt: &Runtime, ctx: &RequestCtx, alias: &str) -> Result<(), GatewayError> {
        if rt.config.model(alias).is_none() {
            return Err(GatewayError::UnknownModel(alias.to_string()));
        }
        if !ctx.key.key.allows(alias) {
            return Err(GatewayError::ModelNotAllowed(alias.to_string()));
        }
        Ok(())
    }

    async fn admit(&self, ctx: &RequestCtx, tokens: u64) -> Result<crate::actors::rate_limiter::Admitted, Failure> {
        let admit = Admit { key_id: ctx.key.id.clone(), limits: ctx.key.key.limits, tokens };
        match self.limiter.send(admit).await.map_err(mailbox)? {
            Ok(a) => Ok(a),
            Err(refused) => {
                metrics::counter!(RATE_LIMITED_TOTAL, "kind" => refused.kind.as_str()).increment(1);
                let headers = refused.headers.clone();
                Err(Failure {
                    error: GatewayError::RateLimited {
                        kind: refused.kind,
                        retry_after: refused.retry_after,
                        headers: Box::new(refused.headers),
                    },
                    rate: Some(headers),
                })
            }
        }
    }

    async fn cache_lookup(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        endpoint: Endpoint,
        alias: &str,
        normalized: impl FnOnce() -> Value,
    ) -> (Option<[u8; 32]>, Option<crate::actors::cache::CachedResponse>) {
        if !rt.config.cache.enabled {
            return (None, None);
        }
        if ctx.no_cache {
            metrics::counter!(CACHE_REQUESTS_TOTAL, "result" => "bypass").increment(1);
            return (None, None);
        }
        let key = cache_key(endpoint, alias, &normalized());
        let hit = self.cache.send(Lookup(key)).await.ok().flatten();
        let result = if hit.is_some() { "hit" } else { "miss" };
        metrics::counter!(CACHE_REQUESTS_TOTAL, "result" => result).increment(1);
        (Some(key), hit)
    }

    fn finisher(&self, rt: &Runtime, ctx: &RequestCtx, record: UsageRecord, prompt_estimate: u64) -> Finisher {
        Finisher {
            record,
            config: rt.config.clone(),
            accounting: self.accounting.clone(),
            cache: self.cache.clone(),
            cache_put: None,
            ticket: None,
            permit: None,
            received: ctx.received,
            upstream_time: Duration::ZERO,
            ttft: None,
            prompt_estimate,
            finished: false,
            _inflight: None,
        }
    }

    /// `POST /v1/chat/completions` (and its NATS twin).
    pub async fn chat(&self, ctx: &RequestCtx, body: &[u8]) -> Result<Outcome, Failure> {
        let req = ChatRequest::parse(body)?;
        let rt = self.runtime();
        let alias = req.model.clone();
        self.authorize(&rt, ctx, &alias)?;
        let prompt = tokens::estimate_prompt(&req);
        let admitted = self.admit(ctx, tokens::reservation(&req, prompt)).await?;
        let rate = admitted.headers;
        let stream = req.is_stream();
        let mut fin = self.finisher(&rt, ctx, self.record_template(ctx, Endpoint::Chat, &alias, stream), prompt);
        fin.ticket = Some(admitted.ticket);
        fin._inflight = Some(InflightGuard::new());
        let fail = |error: GatewayError, rate: &RateHeaders| Failure { error, rate: Some(rate.clone()) };

        let (ckey, hit) = self
            .cache_lookup(&rt, ctx, Endpoint::Chat, &alias, || {
                let mut v = serde_json::to_value(&req).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.remove("stream");
                    o.remove("stream_options");
                }
                v
            })
            .await;
        let cache_status = match (ckey, &hit) {
            (None, _) => CacheStatus::Bypass,
            (Some(_), Some(_)) => CacheStatus::Hit,
            (Some(_), None) => CacheStatus::Miss,
        };
        if let Some(hit) = hit {
            fin.record.cache_hit = true;
            fin.record.provider = hit.provider.clone();
            fin.record.upstream_model = hit.upstream_model.clone();
            fin.finish(200, Some(hit.usage), "", None);
            let body = if stream {
                let completion: Value = serde_json::from_slice(&hit.body).unwrap_or(Value::Null);
                let mut events: Vec<Bytes> = openai::completion_to_chunks(&completion, req.wants_stream_usage())
                    .iter()
                    .map(|c| data_event(&c.to_string()))
                    .collect();
                events.push(Bytes::from_static(DONE));
                OutcomeBody::Sse(Box::pin(relay::replay(events, ctx.received)))
            } else {
                OutcomeBody::Json(Bytes::from(hit.body))
            };
            return Ok(Outcome {
                body,
                provider: hit.provider,
                upstream_model: hit.upstream_model,
                cache: CacheStatus::Hit,
                rate,
                upstream_time: Duration::ZERO,
            });
        }
        fin.cache_put = ckey.map(|k| (k, rt.config.cache.ttl));

        let decision = self
            .router
            .send(Route { alias: alias.clone() })
            .await
            .map_err(mailbox)?
            .ok_or_else(|| GatewayError::UnknownModel(alias.clone()))?;
        let handle = rt
            .providers
            .get(&decision.provider)
            .cloned()
            .ok_or_else(|| GatewayError::Internal(format!("no worker for provider `{}`", decision.provider)))?;
        let permit = handle
            .worker
            .send(Acquire { priority: ctx.priority })
            .await
            .map_err(mailbox)?
            .map_err(|_| fail(GatewayError::QueueFull(decision.provider.clone()), &rate))?;
        fin.permit = Some(permit);
        fin.record.provider = decision.provider.clone();
        fin.record.upstream_model = decision.model.clone();

        let upstream_body =
            openai::chat_body(&req, &decision.model).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let call_started = Instant::now();
        let reply = handle
            .client
            .call(UpstreamCall { endpoint: Endpoint::Chat, body: upstream_body, stream, headers: &ctx.headers })
            .await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                fin.upstream_time = call_started.elapsed();
                let err = e.into_gateway(&decision.provider);
                tracing::warn!(request_id = %ctx.request_id, error = %err, "upstream call failed");
                fin.finish(err.class().status, None, "", None);
                return Err(fail(err, &rate));
            }
        };
        match reply.body {
            UpstreamBody::Full(bytes) => {
                fin.upstream_time = call_started.elapsed();
                let usage = openai::response_usage(&bytes);
                let text = if usage.is_none() { content_text(&bytes) } else { String::new() };
                let cache_body = fin.cache_put.map(|_| bytes.to_vec());
                fin.finish(200, usage, &text, cache_body);
                Ok(Outcome {
                    body: OutcomeBody::Json(bytes),
                    provider: decision.provider,
                    upstream_model: decision.model,
                    cache: cache_status,
                    rate,
                    upstream_time: fin.upstream_time,
                })
            }
            UpstreamBody::Stream(s) => {
                fin.upstream_time = reply.first_byte;
                let upstream_time = reply.first_byte;
                let relay = relay::Relay::new(s, fin, req.wants_stream_usage(), decision.provider.clone());
                Ok(Outcome {
                    body: OutcomeBody::Sse(Box::pin(relay)),
                    provider: decision.provider,
                    upstream_model: decision.model,
                    cache: cache_status,
                    rate,
                    upstream_time,
                })
            }
        }
    }

    /// `POST /v1/embeddings` (and its NATS twin).
    pub async fn embeddings(&self, ctx: &RequestCtx, body: &[u8]) -> Result<Outcome, Failure> {
        let req = EmbeddingsRequest::parse(body)?;
        let rt = self.runtime();
        let alias = req.model.clone();
        self.authorize(&rt, ctx, &alias)?;
        let prompt = tokens::estimate_embeddings(&req);
        let admitted = self.admit(ctx, prompt).await?;
        let rate = admitted.headers;
        let mut fin =
            self.finisher(&rt, ctx, self.record_template(ctx, Endpoint::Embeddings, &alias, false), prompt);
        fin.ticket = Some(admitted.ticket);
        fin._inflight = Some(InflightGuard::new());
        let fail = |error: GatewayError, rate: &RateHeaders| Failure { error, rate: Some(rate.clone()) };

        let (ckey, hit) = self
            .cache_lookup(&rt, ctx, Endpoint::Embeddings, &alias, || {
                serde_json::to_value(&req).unwrap_or(Value::Null)
            })
            .await;
        let cache_status = match (ckey, &hit) {
            (None, _) => CacheStatus::Bypass,
            (Some(_), Some(_)) => CacheStatus::Hit,
            (Some(_), None) => CacheStatus::Miss,
        };
        if let Some(hit) = hit {
            fin.record.cache_hit = true;
            fin.record.provider = hit.provider.clone();
            fin.record.upstream_model = hit.upstream_model.clone();
            fin.finish(200, Some(hit.usage), "", None);
            return Ok(Outcome {
                body: OutcomeBody::Json(Bytes::from(hit.body)),
                provider: hit.provider,
                upstream_model: hit.upstream_model,
                cache: CacheStatus::Hit,
                rate,
                upstream_time: Duration::ZERO,
            });
        }
        fin.cache_put = ckey.map(|k| (k, rt.config.cache.ttl));
        let decision = self
            .router
            .send(Route { alias: alias.clone() })
            .await
            .map_err(mailbox)?
            .ok_or_else(|| GatewayError::UnknownModel(alias.clone()))?;
        let handle = rt
            .providers
            .get(&decision.provider)
            .cloned()
            .ok_or_else(|| GatewayError::Internal(format!("no worker for provider `{}`", decision.provider)))?;
        let permit = handle
            .worker
            .send(Acquire { priority: ctx.priority })
            .await
            .map_err(mailbox)?
            .map_err(|_| fail(GatewayError::QueueFull(decision.provider.clone()), &rate))?;
        fin.permit = Some(permit);
        fin.record.provider = decision.provider.clone();
        fin.record.upstream_model = decision.model.clone();
        let upstream_body =
            openai::embeddings_body(&req, &decision.model).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let call_started = Instant::now();
        let reply = handle
            .client
            .call(UpstreamCall { endpoint: Endpoint::Embeddings, body: upstream_body, stream: false, headers: &ctx.headers })
            .await;
        fin.upstream_time = call_started.elapsed();
        let bytes = match reply {
            Ok(r) => match r.body {
                UpstreamBody::Full(b) => b,
                UpstreamBody::Stream(_) => {
                    let err = GatewayError::UpstreamInvalid {
                        provider: decision.provider.clone(),
                        message: "unexpected stream".into(),
                    };
                    fin.finish(502, None, "", None);
                    return Err(fail(err, &rate));
                }
            },
            Err(e) => {
                let err = e.into_gateway(&decision.provider);
                tracing::warn!(request_id = %ctx.request_id, error = %err, "upstream call failed");
                fin.finish(err.class().status, None, "", None);
                return Err(fail(err, &rate));
            }
        };
        let usage = openai::response_usage(&bytes).map(|u| Usage { output: 0, ..u });
        let cache_body = fin.cache_put.map(|_| bytes.to_vec());
        fin.finish(200, usage, "", cache_body);
        Ok(Outcome {
            body: OutcomeBody::Json(bytes),
            provider: decision.provider,
            upstream_model: decision.model,
            cache: cache_status,
            rate,
            upstream_time: fin.upstream_time,
        })
    }
}

/// The assistant text of a completion body (for estimating output tokens).
fn content_text(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v.get("choices")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.pointer("/message/content").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default()
}
