//! Provider adapters. Translation lives in one module per wire format (`openai`, `mock`)
//! and is pure; [`UpstreamClient`] is the only part that does I/O: pooled HTTP with
//! connect, first-byte and total timeouts, and bounded retries before the first byte.

pub mod anthropic;
mod aws;
pub mod bedrock;
pub mod capabilities;
pub mod from_anthropic;
pub mod gemini;
pub mod mock;
pub mod ollama;
pub mod openai;
pub mod sse;

#[cfg(test)]
mod golden_tests;

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn retry_delays_double_with_jitter_and_are_capped() {
        for attempt in 1..=12 {
            let full = Duration::from_millis(50u64 << (attempt - 1).min(6)).min(Duration::from_secs(2));
            for _ in 0..50 {
                let d = retry_delay(attempt);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
    }
}

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use switchyard_config::{Provider, ProviderKind};

use crate::types::{unix_secs, Endpoint};
use crate::GatewayError;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// What went wrong talking to a provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("timed out ({0})")]
    Timeout(&'static str),
    #[error("status {status}: {message}")]
    Status { status: u16, message: String, retry_after: Option<u64> },
    #[error("body: {0}")]
    Body(String),
}

impl UpstreamError {
    pub fn into_gateway(self, provider: &str) -> GatewayError {
        let provider = provider.to_string();
        match self {
            UpstreamError::Connect(message) => GatewayError::UpstreamConnect { provider, message },
            UpstreamError::Timeout(phase) => GatewayError::UpstreamTimeout { provider, phase },
            UpstreamError::Status { status, message, retry_after } => {
                GatewayError::UpstreamStatus { provider, status, message, retry_after }
            }
            UpstreamError::Body(message) => GatewayError::UpstreamInvalid { provider, message },
        }
    }
}

pub enum UpstreamBody {
    Full(Bytes),
    /// Raw bytes of an SSE stream.
    Stream(ByteStream),
}

/// A successful (2xx) upstream answer.
pub struct UpstreamReply {
    pub body: UpstreamBody,
    /// Time to response headers (first byte).
    pub first_byte: Duration,
}

/// One call to make.
pub struct UpstreamCall<'a> {
    pub endpoint: Endpoint,
    /// The upstream model (an Azure deployment name goes into the URL).
    pub model: &'a str,
    /// Embeddings: the client asked for base64 vectors (providers that answer floats
    /// only are converted).
    pub base64: bool,
    /// The translated request body.
    pub body: Vec<u8>,
    pub stream: bool,
    /// Client headers that the provider's `forward_headers` lets through.
    pub headers: &'a [(String, String)],
}

/// A provider's client: config plus pooled `reqwest::Client`s, one per thread.
pub struct UpstreamClient {
    pub cfg: Provider,
    /// One client (so one connection pool) per thread that calls: a pooled connection's
    /// driver task runs on the runtime that opened it, so a client shared by the HTTP
    /// workers would hand about half the calls to another thread and back (two
    /// cross-thread wake-ups per call, visible in the p99 at a fixed rate).
    http: thread_local::ThreadLocal<reqwest::Client>,
    /// Used when a thread's own client cannot be built (it was built once already here,
    /// so this does not happen in practice).
    shared_http: reqwest::Client,
    /// Parsed once: URL parsing was visible in the load benchmark's profile.
    chat_url: reqwest::Url,
    /// `None` when the provider has no embeddings API.
    embeddings_url: Option<reqwest::Url>,
    /// `bedrock`: SigV4 signing.
    signer: Option<aws::Signer>,
    /// `switchyard_upstream_attempts_total` and `switchyard_retries_total` of this
    /// provider (handles made once: label allocation per call showed in profiles).
    attempts_total: metrics::Counter,
    retries_total: metrics::Counter,
}

/// A vector as OpenAI's `encoding_format: base64`: little-endian `f32`s, base64.
pub fn f32_base64(values: impl Iterator<Item = f32>) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = values.flat_map(f32::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl UpstreamClient {
    fn build_http(cfg: &Provider) -> Result<reqwest::Client, GatewayError> {
        reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(cfg.concurrency)
            .tcp_nodelay(true)
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GatewayError::Internal(format!("http client: {e}")))
    }

    /// This thread's client.
    fn http(&self) -> &reqwest::Client {
        self.http.get_or(|| Self::build_http(&self.cfg).unwrap_or_else(|_| self.shared_http.clone()))
    }

    pub fn new(cfg: Provider) -> Result<UpstreamClient, GatewayError> {
        let shared_http = Self::build_http(&cfg)?;
        let url = |e: Endpoint| {
            let text = match (cfg.kind, e) {
                (ProviderKind::Mock, _) => format!("http://mock.invalid{}", e.path()),
                (ProviderKind::Anthropic, Endpoint::Chat) => format!("{}/messages", cfg.base_url),
                (ProviderKind::Ollama, Endpoint::Chat) => format!("{}/api/chat", cfg.base_url),
                (ProviderKind::Ollama, Endpoint::Embeddings) => format!("{}/api/embed", cfg.base_url),
                _ => format!("{}{}", cfg.base_url, e.path()),
            };
            reqwest::Url::parse(&text)
                .map_err(|err| GatewayError::Internal(format!("provider `{}`: {text}: {err}", cfg.name)))
        };
        let chat_url = url(Endpoint::Chat)?;
        let embeddings_url =
            if capabilities::serves(cfg.kind, Endpoint::Embeddings) { Some(url(Endpoint::Embeddings)?) } else { None };
        let signer = match (&cfg.aws, cfg.kind) {
            (Some(a), ProviderKind::Bedrock) => Some(
                aws::Signer::new(a, &|name| std::env::var(name).ok())
                    .map_err(|e| GatewayError::Internal(format!("provider `{}`: {e}", cfg.name)))?,
            ),
            _ => None,
        };
        let attempts_total = metrics::counter!(crate::metrics::UPSTREAM_ATTEMPTS_TOTAL, "provider" => cfg.name.clone());
        let retries_total = metrics::counter!(crate::metrics::RETRIES_TOTAL, "provider" => cfg.name.clone());
        Ok(UpstreamClient {
            cfg,
            http: thread_local::ThreadLocal::new(),
            shared_http,
            chat_url,
            embeddings_url,
            signer,
            attempts_total,
            retries_total,
        })
    }

    /// Sends the call and returns the 2xx reply, or the error (non-2xx included).
    /// `tries` counts the requests sent (same-target retries included).
    pub async fn call(&self, call: UpstreamCall<'_>, tries: &mut u32) -> Result<UpstreamReply, UpstreamError> {
        match self.cfg.kind {
            ProviderKind::Mock => {
                *tries += 1;
                self.attempts_total.increment(1);
                self.call_mock(call).await
            }
            ProviderKind::OpenAi
            | ProviderKind::OpenAiCompatible
            | ProviderKind::Anthropic
            | ProviderKind::Azure
            | ProviderKind::Ollama
            | ProviderKind::Gemini
            | ProviderKind::Bedrock => self.call_http(call, tries).await,
        }
    }

    /// Where a call goes: parsed once per endpoint, or per deployment for Azure
    /// (`{base_url}/openai/deployments/{model}/...?api-version=...`).
    fn url(
        &self,
        endpoint: Endpoint,
        model: &str,
        stream: bool,
    ) -> Result<std::borrow::Cow<'_, reqwest::Url>, UpstreamError> {
        use std::borrow::Cow;
        if self.cfg.kind == ProviderKind::Gemini {
            let method = match (endpoint, stream) {
                (Endpoint::Chat, false) => "generateContent",
                (Endpoint::Chat, true) => "streamGenerateContent?alt=sse",
                (Endpoint::Embeddings, _) => "batchEmbedContents",
            };
            let text = format!("{}/models/{model}:{method}", self.cfg.base_url);
            return reqwest::Url::parse(&text).map(Cow::Owned).map_err(|e| UpstreamError::Status {
                status: 400,
                message: format!("model URL {text}: {e}"),
                retry_after: None,
            });
        }
        if self.cfg.kind == ProviderKind::Bedrock {
            let op = if stream { "converse-stream" } else { "converse" };
            // model ids such as `anthropic.claude-3-haiku-20240307-v1:0` are one path segment
            let id: String = model
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                    other => format!("%{other:02X}"),
                })
                .collect();
            let text = format!("{}/model/{id}/{op}", self.cfg.base_url);
            return reqwest::Url::parse(&text).map(Cow::Owned).map_err(|e| UpstreamError::Status {
                status: 400,
                message: format!("model URL {text}: {e}"),
                retry_after: None,
            });
        }
        if self.cfg.kind == ProviderKind::Azure {
            let text = format!(
                "{}/openai/deployments/{model}{}?api-version={}",
                self.cfg.base_url,
                endpoint.path(),
                self.cfg.api_version
            );
            return reqwest::Url::parse(&text).map(Cow::Owned).map_err(|e| UpstreamError::Status {
                status: 400,
                message: format!("deployment URL {text}: {e}"),
                retry_after: None,
            });
        }
        match (endpoint, &self.embeddings_url) {
            (Endpoint::Chat, _) => Ok(Cow::Borrowed(&self.chat_url)),
            (Endpoint::Embeddings, Some(u)) => Ok(Cow::Borrowed(u)),
            (Endpoint::Embeddings, None) => Err(UpstreamError::Status {
                status: 400,
                message: format!("provider `{}` has no embeddings API", self.cfg.name),
                retry_after: None,
            }),
        }
    }

    /// The provider's credential and static headers (and Anthropic's version header).
    fn credentials(&self, mut rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.cfg.api_key, self.cfg.kind) {
            (Some(k), ProviderKind::Anthropic) => rb = rb.header("x-api-key", k),
            (Some(k), ProviderKind::Azure) => rb = rb.header("api-key", k),
            (Some(k), ProviderKind::Gemini) => rb = rb.header("x-goog-api-key", k),
            (Some(k), _) => rb = rb.bearer_auth(k),
            (None, _) => {}
        }
        if self.cfg.kind == ProviderKind::Anthropic
            && !self.cfg.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case("anthropic-version"))
        {
            rb = rb.header("anthropic-version", anthropic::VERSION);
        }
        for (k, v) in &self.cfg.headers {
            rb = rb.header(k, v);
        }
        rb
    }

    /// One active health check (`GET base_url + health_check_path` with the provider's
    /// credentials): whether it answered 2xx within the connect and first-byte timeouts
    /// (and the check interval).
    pub async fn health_check(&self) -> bool {
        let Some(hc) = &self.cfg.health_check else { return true };
        let Ok(url) = reqwest::Url::parse(&format!("{}{}", self.cfg.base_url, hc.path)) else { return false };
        let limit = (self.cfg.connect_timeout + self.cfg.first_byte_timeout).min(hc.interval);
        let sent = tokio::time::timeout(limit, self.credentials(self.http().get(url)).send()).await;
        matches!(sent, Ok(Ok(r)) if r.status().is_success())
    }

    /// OpenAI's moderation API on this provider (`POST base_url/moderations`), for a
    /// guardrail's second opinion: the answer's JSON.
    pub async fn moderations(&self, model: &str, inputs: &[String]) -> Result<serde_json::Value, UpstreamError> {
        let url = format!("{}/moderations", self.cfg.base_url);
        let body = serde_json::json!({"model": model, "input": inputs});
        let rb = self.credentials(self.http().post(url)).json(&body);
        self.attempts_total.increment(1);
        let r = match tokio::time::timeout(self.cfg.first_byte_timeout, rb.send()).await {
            Err(_) => return Err(UpstreamError::Timeout("first byte")),
            Ok(Err(e)) if e.is_connect() => return Err(UpstreamError::Connect(root_cause(&e))),
            Ok(Err(e)) => return Err(UpstreamError::Body(root_cause(&e))),
            Ok(Ok(r)) => r,
        };
        let status = r.status().as_u16();
        let bytes = tokio::time::timeout(self.cfg.timeout, r.bytes())
            .await
            .map_err(|_| UpstreamError::Timeout("total"))?
            .map_err(|e| UpstreamError::Body(root_cause(&e)))?;
        if !(200..300).contains(&status) {
            return Err(UpstreamError::Status { status, message: openai::error_message(&bytes), retry_after: None });
        }
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Body(format!("moderation answer: {e}")))
    }

    async fn call_http(&self, call: UpstreamCall<'_>, tries: &mut u32) -> Result<UpstreamReply, UpstreamError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let anthropic = self.cfg.kind == ProviderKind::Anthropic;
        let url = self.url(call.endpoint, call.model, call.stream)?;
        let body = Bytes::from(call.body);
        let mut attempt = 0;
        let resp = loop {
            let mut rb =
                self.credentials(self.http().post(url.as_ref().clone()).header("content-type", "application/json"));
            for (k, v) in call.headers {
                if self.cfg.forward_headers.iter().any(|f| f == k) {
                    rb = rb.header(k, v);
                }
            }
            if call.stream {
                let accept = if self.cfg.kind == ProviderKind::Bedrock {
                    "application/vnd.amazon.eventstream"
                } else {
                    "text/event-stream"
                };
                rb = rb.header("accept", accept);
            }
            if let Some(signer) = &self.signer {
                for (k, v) in
                    signer.sign(url.as_str(), &body).map_err(|e| UpstreamError::Body(format!("signing: {e}")))?
                {
                    rb = rb.header(k, v);
                }
            }
            *tries += 1;
            self.attempts_total.increment(1);
            let sent = tokio::time::timeout(self.cfg.first_byte_timeout, rb.body(body.clone()).send()).await;
            let result = match sent {
                Err(_) => Err(UpstreamError::Timeout("first byte")),
                Ok(Err(e)) if e.is_timeout() => Err(UpstreamError::Timeout("connect")),
                Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(root_cause(&e))),
                Ok(Err(e)) => Err(UpstreamError::Body(root_cause(&e))),
                Ok(Ok(r)) => Ok(r),
            };
            // what another try may fix, and how long the provider asked us to wait
            let (retryable, asked) = match &result {
                Err(UpstreamError::Connect(_) | UpstreamError::Timeout("first byte")) => (true, None),
                Ok(r) => {
                    let asked = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    (matches!(r.status().as_u16(), 408 | 429 | 500 | 502 | 503 | 504 | 529), asked)
                }
                Err(_) => (false, None),
            };
            if retryable && attempt < self.cfg.max_retries {
                attempt += 1;
                let delay = retry_delay(attempt).max(asked.unwrap_or_default());
                // a wait that would pass the deadline is not taken: the caller fails over
                if tokio::time::Instant::now() + delay < deadline {
                    self.retries_total.increment(1);
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            break result?;
        };
        let first_byte = started.elapsed();
        let status = match resp.status().as_u16() {
            // Anthropic's "overloaded": a retryable 503 for clients and the job queue
            anthropic::OVERLOADED if anthropic => 503,
            s => s,
        };
        if !(200..300).contains(&status) {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = tokio::time::timeout_at(deadline, resp.bytes()).await.ok().and_then(Result::ok);
            let message = body.map(|b| openai::error_message(&b)).unwrap_or_default();
            return Err(UpstreamError::Status { status, message, retry_after });
        }
        if call.stream {
            let s = resp.bytes_stream().map(|r| r.map_err(|e| UpstreamError::Body(root_cause(&e))));
            let s = timed(Box::pin(s), deadline);
            let (id, now, model) = (new_id(), unix_secs(), call.model.to_string());
            let body = match self.cfg.kind {
                ProviderKind::Anthropic => translated(s, Sse::new(anthropic::StreamTranslator::new(now))),
                ProviderKind::Ollama => translated(s, ollama::StreamTranslator::new(id, now)),
                ProviderKind::Gemini => translated(s, Sse::new(gemini::StreamTranslator::new(id, model, now))),
                ProviderKind::Bedrock => {
                    translated(s, aws::EventStream::new(bedrock::StreamTranslator::new(id, model, now)))
                }
                _ => s,
            };
            Ok(UpstreamReply { body: UpstreamBody::Stream(body), first_byte })
        } else {
            match tokio::time::timeout_at(deadline, resp.bytes()).await {
                Err(_) => Err(UpstreamError::Timeout("total")),
                Ok(Err(e)) => Err(UpstreamError::Body(root_cause(&e))),
                Ok(Ok(b)) if anthropic => match anthropic::completion(&b, unix_secs()) {
                    Ok(b) => Ok(UpstreamReply { body: UpstreamBody::Full(b), first_byte }),
                    Err(e) => Err(UpstreamError::Body(format!("anthropic answer: {e}"))),
                },
                Ok(Ok(b)) if self.cfg.kind == ProviderKind::Bedrock => {
                    match bedrock::completion(&b, call.model, &new_id(), unix_secs()) {
                        Ok(b) => Ok(UpstreamReply { body: UpstreamBody::Full(b), first_byte }),
                        Err(e) => Err(UpstreamError::Body(format!("bedrock answer: {e}"))),
                    }
                }
                Ok(Ok(b)) if self.cfg.kind == ProviderKind::Gemini => {
                    let translated = match call.endpoint {
                        Endpoint::Chat => gemini::completion(&b, call.model, &new_id(), unix_secs()),
                        Endpoint::Embeddings => gemini::embeddings(&b, call.model, call.base64),
                    };
                    match translated {
                        Ok(b) => Ok(UpstreamReply { body: UpstreamBody::Full(b), first_byte }),
                        Err(e) => Err(UpstreamError::Body(format!("gemini answer: {e}"))),
                    }
                }
                Ok(Ok(b)) if self.cfg.kind == ProviderKind::Ollama => {
                    let translated = match call.endpoint {
                        Endpoint::Chat => ollama::completion(&b, &new_id(), unix_secs()),
                        Endpoint::Embeddings => ollama::embeddings(&b, call.base64),
                    };
                    match translated {
                        Ok(b) => Ok(UpstreamReply { body: UpstreamBody::Full(b), first_byte }),
                        Err(e) => Err(UpstreamError::Body(format!("ollama answer: {e}"))),
                    }
                }
                Ok(Ok(b)) => Ok(UpstreamReply { body: UpstreamBody::Full(b), first_byte }),
            }
        }
    }

    async fn call_mock(&self, call: UpstreamCall<'_>) -> Result<UpstreamReply, UpstreamError> {
        let started = Instant::now();
        if !self.cfg.mock_latency.is_zero() {
            tokio::time::sleep(self.cfg.mock_latency).await;
        }
        let req: serde_json::Value =
            serde_json::from_slice(&call.body).map_err(|e| UpstreamError::Body(e.to_string()))?;
        let model = req.get("model").and_then(|m| m.as_str()).unwrap_or("mock").to_string();
        let body = match call.endpoint {
            Endpoint::Chat if call.stream => {
                let chunks = mock::chat_chunks(&req, &model, unix_secs());
                let mut events: Vec<Result<Bytes, UpstreamError>> =
                    chunks.iter().map(|c| Ok(sse::data_event(&c.to_string()))).collect();
                events.push(Ok(Bytes::from_static(sse::DONE)));
                UpstreamBody::Stream(Box::pin(futures_util::stream::iter(events)))
            }
            Endpoint::Chat => {
                UpstreamBody::Full(Bytes::from(mock::chat_completion(&req, &model, unix_secs()).to_string()))
            }
            Endpoint::Embeddings => {
                let v = mock::embeddings(&req, &model).map_err(|message| UpstreamError::Status {
                    status: 400,
                    message,
                    retry_after: None,
                })?;
                UpstreamBody::Full(Bytes::from(v.to_string()))
            }
        };
        Ok(UpstreamReply { body, first_byte: started.elapsed() })
    }
}

/// Ends a byte stream with a timeout error at `deadline`.
fn timed(s: ByteStream, deadline: tokio::time::Instant) -> ByteStream {
    Box::pin(futures_util::stream::unfold((s, false), move |(mut s, done)| async move {
        if done {
            return None;
        }
        match tokio::time::timeout_at(deadline, s.next()).await {
            Err(_) => Some((Err(UpstreamError::Timeout("total")), (s, true))),
            Ok(None) => None,
            Ok(Some(Ok(b))) => Some((Ok(b), (s, false))),
            Ok(Some(Err(e))) => Some((Err(e), (s, true))),
        }
    }))
}

/// Turns a provider's stream into OpenAI SSE bytes as it is read.
pub trait StreamTranslate: Send + 'static {
    /// The OpenAI events for the bytes just read.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Bytes>, String>;
    /// What is due when the upstream body ends (a stream that ends without it having
    /// finished gets nothing, and the relay reports it as cut).
    fn finish(&mut self) -> Vec<Bytes> {
        Vec::new()
    }
}

/// Translates one SSE event at a time (Anthropic, Gemini).
pub trait EventTranslate: Send + 'static {
    fn on_event(&mut self, ev: &sse::SseEvent) -> Result<Vec<Bytes>, String>;
    fn finish(&mut self) -> Vec<Bytes> {
        Vec::new()
    }
}

/// An SSE-framed provider stream: parsed into events, each translated.
pub struct Sse<T> {
    parser: sse::SseParser,
    inner: T,
}

impl<T: EventTranslate> Sse<T> {
    pub fn new(inner: T) -> Sse<T> {
        Sse { parser: sse::SseParser::new(), inner }
    }
}

impl<T: EventTranslate> StreamTranslate for Sse<T> {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Bytes>, String> {
        let mut out = Vec::new();
        for ev in self.parser.feed(bytes).map_err(|e| e.to_string())? {
            out.extend(self.inner.on_event(&ev)?);
        }
        Ok(out)
    }

    fn finish(&mut self) -> Vec<Bytes> {
        self.inner.finish()
    }
}

/// A provider's byte stream as an OpenAI SSE byte stream, through `t`.
pub fn translated(s: ByteStream, t: impl StreamTranslate) -> ByteStream {
    Box::pin(futures_util::stream::unfold((s, t, false), |(mut s, mut t, done)| async move {
        if done {
            return None;
        }
        loop {
            match s.next().await {
                None => {
                    let end: Vec<u8> = t.finish().concat();
                    return (!end.is_empty()).then(|| (Ok(Bytes::from(end)), (s, t, true)));
                }
                Some(Err(e)) => return Some((Err(e), (s, t, true))),
                Some(Ok(bytes)) => match t.feed(&bytes) {
                    Err(e) => return Some((Err(UpstreamError::Body(e)), (s, t, true))),
                    Ok(parts) if parts.is_empty() => {}
                    Ok(parts) => return Some((Ok(Bytes::from(parts.concat())), (s, t, false))),
                },
            }
        }
    }))
}

/// Exponential backoff with jitter in its upper half: 50 ms, 100 ms, 200 ms, ... capped
/// at 2 s, each drawn from [d/2, d].
fn retry_delay(attempt: u32) -> Duration {
    let d = Duration::from_millis(50u64 << attempt.saturating_sub(1).min(6)).min(Duration::from_secs(2));
    d / 2 + d.mul_f64(fastrand::f64() / 2.0)
}

/// A response id for providers that send none.
pub(crate) fn new_id() -> String {
    format!("{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}

/// The innermost error message (reqwest wraps hyper wraps io).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let inner = cur.to_string();
    let outer = e.to_string();
    if inner == outer {
        outer
    } else {
        format!("{outer}: {inner}")
    }
}
