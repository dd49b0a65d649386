//! Calling providers: pooled HTTP with connect, first-byte and total timeouts, bounded
//! same-target retries before the first byte, and the in-process answer of the built-in
//! `mock`. Everything provider-specific (URL, auth, body, decoding) comes from the
//! provider's [`Adapter`]; this module only moves bytes.

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use switchyard_config::Provider;

use crate::error::retryable_status;
use crate::providers::{adapter, capabilities, Adapter, DecodeCtx, LocalAnswer, LocalError, Sign, StreamTranslate};
use crate::types::{unix_secs, Endpoint};
use crate::GatewayError;

mod bounds;
mod side_calls;

use self::bounds::{guarded, StreamBounds};

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
    /// `error.type` of a trace.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Status { .. } => "status",
            UpstreamError::Body(_) => "body",
        }
    }

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

    fn refused(message: String) -> UpstreamError {
        UpstreamError::Status { status: 400, message, retry_after: None }
    }
}

pub enum UpstreamBody {
    Full(Bytes),
    /// Raw bytes of an SSE stream.
    Stream(ByteStream),
}

/// A successful (2xx) upstream answer.
pub struct UpstreamReply {
    /// OpenAI's shape, except for the stream of a native call (see `decoder`).
    pub body: UpstreamBody,
    /// Time to response headers (first byte).
    pub first_byte: Duration,
    /// A native call's answer as the provider sent it (the client speaks its format).
    pub native_body: Option<Bytes>,
    /// A native call's stream: `body` is the provider's own bytes, which this turns
    /// into OpenAI SSE for metering.
    pub decoder: Option<Box<dyn StreamTranslate>>,
    /// The provider's adapter (what a native stream's own events look like).
    pub adapter: &'static dyn Adapter,
}

impl UpstreamReply {
    fn new(body: UpstreamBody, first_byte: Duration, adapter: &'static dyn Adapter) -> UpstreamReply {
        UpstreamReply { body, first_byte, native_body: None, decoder: None, adapter }
    }
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
    /// `Some` when `body` is the client's own request in the provider's format: the
    /// answer comes back as the provider sent it too.
    pub native: Option<Native<'a>>,
    /// The call's GenAI span: each HTTP request is a child, and its `traceparent` goes
    /// to the provider.
    pub span: &'a tracing::Span,
}

/// A native call: the client's format, and its headers of that format (sent as they are).
#[derive(Debug, Clone, Copy)]
pub struct Native<'a> {
    pub format: crate::types::WireFormat,
    pub headers: &'a [(String, String)],
}

/// A provider's client: config, its adapter, and pooled `reqwest::Client`s, one per thread.
pub struct UpstreamClient {
    pub cfg: Provider,
    adapter: &'static dyn Adapter,
    /// One client (so one connection pool) per thread that calls: a pooled connection's
    /// driver task runs on the runtime that opened it, so a client shared by the HTTP
    /// workers would hand about half the calls to another thread and back (two
    /// cross-thread wake-ups per call, visible in the p99 at a fixed rate).
    http: thread_local::ThreadLocal<reqwest::Client>,
    /// Used when a thread's own client cannot be built (it was built once already here,
    /// so this does not happen in practice).
    shared_http: reqwest::Client,
    /// Parsed once when the URL depends on the endpoint alone: URL parsing was visible
    /// in the load benchmark's profile. `None` for an endpoint the provider lacks.
    chat_url: Option<reqwest::Url>,
    embeddings_url: Option<reqwest::Url>,
    /// The credential header, made once and marked sensitive.
    auth: Option<(&'static str, reqwest::header::HeaderValue)>,
    /// Signs each request (`bedrock`).
    signer: Option<Box<dyn Sign>>,
    /// `switchyard_upstream_attempts_total` and `switchyard_retries_total` of this
    /// provider (handles made once: label allocation per call showed in profiles).
    attempts_total: metrics::Counter,
    retries_total: metrics::Counter,
}

/// The first same-target retry waits about this long; each further one twice as long.
const RETRY_BASE: Duration = Duration::from_millis(50);
/// The longest wait between same-target retries.
const RETRY_MAX: Duration = Duration::from_secs(2);

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
        let adapter = adapter(cfg.kind);
        let internal = |e: String| GatewayError::Internal(format!("provider `{}`: {e}", cfg.name));
        let shared_http = Self::build_http(&cfg)?;
        let parsed = |e: Endpoint| -> Result<Option<reqwest::Url>, GatewayError> {
            if adapter.url_per_call() || !capabilities::serves(&adapter.capabilities(), e) {
                return Ok(None);
            }
            let text = adapter.url(&cfg, e, "", false)?;
            reqwest::Url::parse(&text).map(Some).map_err(|err| internal(format!("{text}: {err}")))
        };
        let (chat_url, embeddings_url) = (parsed(Endpoint::Chat)?, parsed(Endpoint::Embeddings)?);
        let auth = match &cfg.api_key {
            Some(k) => {
                let (name, value) = adapter.auth(k);
                let mut value = reqwest::header::HeaderValue::from_str(&value)
                    .map_err(|_| internal("the api_key is not a valid header value".into()))?;
                value.set_sensitive(true);
                Some((name, value))
            }
            None => None,
        };
        let signer = adapter.signer(&cfg, &|name| std::env::var(name).ok()).map_err(internal)?;
        let attempts_total = metrics::counter!(crate::metrics::UPSTREAM_ATTEMPTS_TOTAL, "provider" => cfg.name.clone());
        let retries_total = metrics::counter!(crate::metrics::RETRIES_TOTAL, "provider" => cfg.name.clone());
        Ok(UpstreamClient {
            cfg,
            adapter,
            http: thread_local::ThreadLocal::new(),
            shared_http,
            chat_url,
            embeddings_url,
            auth,
            signer,
            attempts_total,
            retries_total,
        })
    }

    /// The provider's adapter.
    pub fn adapter(&self) -> &'static dyn Adapter {
        self.adapter
    }

    /// A provider's message with its own credentials (and anything shaped like one)
    /// masked: it goes on to the client, the log and the usage record.
    fn sanitized(&self, message: &str) -> String {
        let mut secrets: Vec<&str> = self.cfg.api_key.iter().map(String::as_str).collect();
        if let Some(aws) = &self.cfg.aws {
            secrets.extend(
                [&aws.access_key_id, &aws.secret_access_key, &aws.session_token]
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            );
        }
        secrets.extend(self.cfg.headers.iter().map(|(_, v)| v.as_str()));
        crate::redact::credentials(message, &secrets)
    }

    /// Sends the call and returns the 2xx reply, or the error (non-2xx included).
    /// `tries` counts the requests sent (same-target retries included).
    pub async fn call(&self, call: UpstreamCall<'_>, tries: &mut u32) -> Result<UpstreamReply, UpstreamError> {
        let started = Instant::now();
        let local = self.adapter.answer_locally(call.endpoint, &call.body, call.stream);
        if let Some(answer) = local {
            *tries += 1;
            self.attempts_total.increment(1);
            if !self.cfg.mock_latency.is_zero() {
                tokio::time::sleep(self.cfg.mock_latency).await;
            }
            let body = match answer {
                Ok(LocalAnswer::Full(b)) => UpstreamBody::Full(b),
                Ok(LocalAnswer::Events(events)) => {
                    UpstreamBody::Stream(Box::pin(futures_util::stream::iter(events.into_iter().map(Ok))))
                }
                Err(LocalError::Invalid(m)) => return Err(UpstreamError::Body(m)),
                Err(LocalError::Status(status, message)) => {
                    return Err(UpstreamError::Status { status, message, retry_after: None })
                }
            };
            return Ok(UpstreamReply::new(body, started.elapsed(), self.adapter));
        }
        self.call_http(call, tries).await
    }

    /// Where a call goes: parsed once per endpoint, or per call where the model or
    /// streaming is in the URL (Azure deployments, Gemini, Bedrock).
    fn url(
        &self,
        endpoint: Endpoint,
        model: &str,
        stream: bool,
    ) -> Result<std::borrow::Cow<'_, reqwest::Url>, UpstreamError> {
        use std::borrow::Cow;
        let once = match endpoint {
            Endpoint::Chat => &self.chat_url,
            Endpoint::Embeddings => &self.embeddings_url,
        };
        if let Some(u) = once {
            return Ok(Cow::Borrowed(u));
        }
        if !capabilities::serves(&self.adapter.capabilities(), endpoint) {
            return Err(UpstreamError::refused(format!(
                "provider `{}` has no {} API",
                self.cfg.name,
                endpoint.as_str()
            )));
        }
        let text =
            self.adapter.url(&self.cfg, endpoint, model, stream).map_err(|e| UpstreamError::refused(e.to_string()))?;
        reqwest::Url::parse(&text).map(Cow::Owned).map_err(|e| UpstreamError::refused(format!("model URL {text}: {e}")))
    }

    /// The provider's credential and static headers (the adapter's defaults, such as
    /// Anthropic's version header, unless the provider's `headers` set them).
    fn credentials(&self, mut rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some((name, value)) = &self.auth {
            rb = rb.header(*name, value.clone());
        }
        for (name, value) in self.adapter.default_headers() {
            if !self.cfg.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(name)) {
                rb = rb.header(*name, *value);
            }
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

    async fn call_http(&self, call: UpstreamCall<'_>, tries: &mut u32) -> Result<UpstreamReply, UpstreamError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        // a native request of a format another endpoint of the provider speaks goes there
        let other = call.native.and_then(|n| self.adapter.for_format(n.format));
        let adapter = other.unwrap_or(self.adapter);
        let url = match other {
            None => self.url(call.endpoint, call.model, call.stream)?,
            Some(a) => {
                let text = a
                    .url(&self.cfg, call.endpoint, call.model, call.stream)
                    .map_err(|e| UpstreamError::refused(e.to_string()))?;
                std::borrow::Cow::Owned(
                    reqwest::Url::parse(&text).map_err(|e| UpstreamError::refused(format!("URL {text}: {e}")))?,
                )
            }
        };
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
            for (k, v) in call.native.map(|n| n.headers).unwrap_or_default() {
                rb = rb.header(k, v);
            }
            if call.stream {
                rb = rb.header("accept", adapter.stream_accept());
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
            let span = crate::telemetry::http_span(
                call.span,
                url.host_str().unwrap_or(""),
                url.port_or_known_default(),
                attempt,
            );
            let mut context = Vec::new();
            crate::telemetry::inject_upstream(&span, |k, v| context.push((k.to_string(), v)));
            for (k, v) in context {
                rb = rb.header(k, v);
            }
            let sent = tokio::time::timeout(self.cfg.first_byte_timeout, rb.body(body.clone()).send()).await;
            let result = match sent {
                Err(_) => Err(UpstreamError::Timeout("first byte")),
                Ok(Err(e)) if e.is_timeout() => Err(UpstreamError::Timeout("connect")),
                Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(root_cause(&e))),
                Ok(Err(e)) => Err(UpstreamError::Body(root_cause(&e))),
                Ok(Ok(r)) => Ok(r),
            };
            crate::telemetry::http_end(
                &span,
                result.as_ref().map(|r| r.status().as_u16()).map_err(UpstreamError::kind),
            );
            // what another try may fix, and how long the provider asked us to wait
            let (retryable, asked) = match &result {
                Err(UpstreamError::Connect(_) | UpstreamError::Timeout("first byte")) => (true, None),
                Ok(r) => (
                    retryable_status(adapter.error_status(r.status().as_u16())),
                    retry_after(r.headers()).map(Duration::from_secs),
                ),
                Err(_) => (false, None),
            };
            if retryable && attempt < self.cfg.max_retries {
                attempt += 1;
                let delay = crate::retry::backoff(RETRY_BASE, RETRY_MAX, attempt).max(asked.unwrap_or_default());
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
        let status = adapter.error_status(resp.status().as_u16());
        if !(200..300).contains(&status) {
            let retry_after = retry_after(resp.headers());
            // the message is all that is read of an error body: its start is enough
            let body = tokio::time::timeout_at(deadline, read_prefix(resp, MAX_ERROR_BODY)).await.ok();
            let message = body.map(|b| self.sanitized(&adapter.error_message(&b))).unwrap_or_default();
            return Err(UpstreamError::Status { status, message, retry_after });
        }
        let cx = DecodeCtx { model: call.model, created: unix_secs(), base64: call.base64 };
        if call.stream {
            let s = resp.bytes_stream().map(|r| r.map_err(|e| UpstreamError::Body(root_cause(&e))));
            let bounds = StreamBounds {
                deadline,
                idle: self.cfg.stream_idle_timeout,
                max_event: self.cfg.max_event_bytes,
                framing: adapter.stream_framing(),
            };
            let s = guarded(Box::pin(s), bounds);
            let decoder = adapter.stream_decoder(&cx);
            if call.native.is_some() {
                // relayed as it came; the relay meters it through the decoder
                let mut reply = UpstreamReply::new(UpstreamBody::Stream(s), first_byte, adapter);
                reply.decoder = decoder;
                return Ok(reply);
            }
            let body = match decoder {
                Some(t) => translated(s, t),
                None => s,
            };
            Ok(UpstreamReply::new(UpstreamBody::Stream(body), first_byte, self.adapter))
        } else {
            match tokio::time::timeout_at(deadline, read_capped(resp, self.cfg.max_response_bytes)).await {
                Err(_) => Err(UpstreamError::Timeout("total")),
                Ok(Err(e)) => Err(e),
                Ok(Ok(b)) => {
                    let native = call.native.map(|_| b.clone());
                    match adapter.decode(call.endpoint, b, &cx) {
                        Ok(b) => {
                            let mut reply = UpstreamReply::new(UpstreamBody::Full(b), first_byte, adapter);
                            reply.native_body = native;
                            Ok(reply)
                        }
                        Err(e) => Err(UpstreamError::Body(e.0)),
                    }
                }
            }
        }
    }
}

/// A `retry-after` in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok())
}

/// The most of an error body read for its message.
const MAX_ERROR_BODY: usize = 64 << 10;

/// A body of at most `cap` bytes; a larger one is an invalid answer (502), found out
/// before it is buffered (from `content-length`) or as soon as it passes the cap.
async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<Bytes, UpstreamError> {
    let too_large = || UpstreamError::Body(format!("the answer is larger than {cap} bytes (max_response_bytes)"));
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut s = resp.bytes_stream();
    let mut parts: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| UpstreamError::Body(root_cause(&e)))?;
        size += chunk.len();
        if size > cap {
            return Err(too_large());
        }
        parts.push(chunk);
    }
    // one chunk (the usual small answer) is passed on without a copy
    Ok(match parts.len() {
        1 => parts.swap_remove(0),
        _ => Bytes::from(parts.concat()),
    })
}

/// The first `cap` bytes of a body (the rest is not read).
async fn read_prefix(resp: reqwest::Response, cap: usize) -> Bytes {
    let mut s = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = s.next().await {
        let room = cap - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    Bytes::from(out)
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
