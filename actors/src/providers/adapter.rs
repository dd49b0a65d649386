//! One adapter per provider kind, and the registry that finds it.
//!
//! An [`Adapter`] owns everything the gateway knows about one kind of provider: what it
//! can do, where each endpoint is, how it authenticates, how a request is encoded for it,
//! how its answers, streams and errors are decoded back into OpenAI's shape. Adapters
//! are pure (no I/O, no actix, no metrics): `crate::upstream` does the calling, with
//! retries and timeouts, and asks the adapter for every provider-specific step.
//!
//! Adding a provider kind means one new module with one `impl Adapter` and one line in
//! [`adapter`]. Nothing outside the adapters and this registry matches on the kind.
//!
//! A trait object rather than a closed enum: each kind is a unit struct in its own
//! module, the trait's defaults are the OpenAI wire format (which most kinds share in
//! part), and the registry is the only place that names them all. The dynamic call
//! costs a few nanoseconds per request, against microseconds of translation.

use bytes::Bytes;
use switchyard_config::{Provider, ProviderKind};

use super::capabilities::{self, Capabilities};
use super::{anthropic, azure, bedrock, gemini, mock, ollama, openai, StreamTranslate};
use crate::types::{ChatRequest, EmbeddingsRequest, Endpoint, NativeRequest, WireFormat};
use crate::GatewayError;

/// How a provider's stream delimits its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Server-sent events: a blank line ends one.
    Sse,
    /// One JSON document a line (Ollama).
    Lines,
    /// Length-prefixed binary frames (AWS event stream).
    Binary,
}

/// A provider's answer that could not be decoded (a 502 `upstream_invalid_response`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl From<String> for DecodeError {
    fn from(s: String) -> Self {
        DecodeError(s)
    }
}

/// What decoding an answer needs besides its bytes. (A provider that sends no response
/// id gets one from [`DecodeCtx::new_id`], made only where it is needed.)
#[derive(Debug, Clone, Copy)]
pub struct DecodeCtx<'a> {
    /// The upstream model the call was for.
    pub model: &'a str,
    /// OpenAI's `created` (Unix seconds).
    pub created: u64,
    /// Embeddings: the client asked for base64 vectors.
    pub base64: bool,
}

impl DecodeCtx<'_> {
    /// A response id for providers that send none.
    pub fn new_id(&self) -> String {
        crate::ids::new_id("")
    }
}

/// Signs a request (Bedrock's SigV4): the headers to add for a JSON `POST` of `body`.
pub trait Sign: Send + Sync {
    fn sign(&self, url: &str, body: &[u8]) -> Result<Vec<(String, String)>, String>;
}

/// A provider answered in-process (the built-in `mock`).
pub enum LocalAnswer {
    Full(Bytes),
    /// OpenAI SSE events, `[DONE]` included.
    Events(Vec<Bytes>),
}

/// Why an in-process provider did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalError {
    /// The request body could not be read.
    Invalid(String),
    /// The provider refused the request with this status.
    Status(u16, String),
}

/// Everything about one provider kind. The defaults are OpenAI's wire format.
pub trait Adapter: Sync {
    /// The kind's name in the config (`kind = "..."`), for messages.
    fn name(&self) -> &'static str;

    /// What the kind can do; `encode_*` check a request against it.
    fn capabilities(&self) -> Capabilities {
        Capabilities::OPENAI
    }

    /// The URL of `endpoint` for `model` (`stream` where the provider has a separate
    /// streaming operation).
    fn url(&self, p: &Provider, endpoint: Endpoint, model: &str, stream: bool) -> Result<String, GatewayError> {
        let _ = (model, stream);
        Ok(format!("{}{}", p.base_url, endpoint.path()))
    }

    /// Whether [`Adapter::url`] depends on the model or on streaming (then it is built per
    /// call; otherwise once per endpoint).
    fn url_per_call(&self) -> bool {
        false
    }

    /// The credential header for `api_key`.
    fn auth(&self, api_key: &str) -> (&'static str, String) {
        ("authorization", format!("Bearer {api_key}"))
    }

    /// Headers sent on every call unless the provider's own `headers` set them.
    fn default_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// How a streamed answer delimits its events (for the event size bound).
    fn stream_framing(&self) -> Framing {
        Framing::Sse
    }

    /// The `accept` of a streamed call.
    fn stream_accept(&self) -> &'static str {
        "text/event-stream"
    }

    /// A request signer, for kinds whose requests are signed; `env` looks up the
    /// process environment (credentials the config leaves out).
    fn signer(&self, p: &Provider, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Box<dyn Sign>>, String> {
        let _ = (p, env);
        Ok(None)
    }

    /// The chat request translated for the upstream `model` (no capability check).
    fn translate_chat(&self, req: &ChatRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
        openai::chat_body(req, model).map_err(encode_error)
    }

    /// The embeddings request translated for the upstream `model` (no capability check).
    fn translate_embeddings(&self, req: &EmbeddingsRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
        openai::embeddings_body(req, model).map_err(encode_error)
    }

    /// The chat request body for the upstream `model`: a request that needs what the
    /// kind lacks is a 400 naming it, before any translation.
    fn encode_chat(&self, req: &ChatRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
        capabilities::check_chat(self.name(), &self.capabilities(), req)?;
        self.translate_chat(req, model)
    }

    /// The embeddings request body for the upstream `model`, checked as [`Adapter::encode_chat`].
    fn encode_embeddings(&self, req: &EmbeddingsRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
        capabilities::check_embeddings(self.name(), &self.capabilities(), req)?;
        self.translate_embeddings(req, model)
    }

    /// The client's own request, when the client speaks this provider's format: sent
    /// as the client wrote it but for the upstream `model` (every field kept). `None`
    /// when the formats differ; the request is then translated from its OpenAI view.
    fn encode_native(&self, native: &NativeRequest, model: &str) -> Option<Result<Vec<u8>, GatewayError>> {
        let _ = (native, model);
        None
    }

    /// The adapter of another endpoint of this provider that speaks the client format
    /// `format` (OpenAI's Responses API for `openai`): a native request of that format
    /// is sent, decoded and relayed through it instead. `None`: this adapter serves it
    /// (or no endpoint of the provider speaks it).
    fn for_format(&self, format: WireFormat) -> Option<&'static dyn Adapter> {
        let _ = format;
        None
    }

    /// A non-streamed 2xx answer as OpenAI's JSON. The default passes OpenAI's own answer
    /// on as it came (the call proves it one JSON document in the parse that reads its
    /// usage: `openai::answer_usage`).
    fn decode(&self, endpoint: Endpoint, body: Bytes, cx: &DecodeCtx<'_>) -> Result<Bytes, DecodeError> {
        let _ = (endpoint, cx);
        Ok(body)
    }

    /// The translator of a streamed answer into OpenAI SSE; `None` when it already is.
    fn stream_decoder(&self, cx: &DecodeCtx<'_>) -> Option<Box<dyn StreamTranslate>> {
        let _ = cx;
        None
    }

    /// What an event of this provider's own stream says (a native stream is relayed
    /// as it came, so its commit point is read in its own format).
    fn native_stream_step(&self, ev: &super::sse::SseEvent) -> super::StreamStep {
        openai::stream_step(ev)
    }

    /// An error event in this provider's own stream format, for a native stream that
    /// fails without the provider saying so itself.
    fn native_error_event(&self, class: crate::error::Class, message: &str) -> Bytes {
        let body = serde_json::json!({"error": {"message": message, "type": class.kind, "code": class.code}});
        super::sse::data_event(&body.to_string())
    }

    /// The status a provider's error status stands for (Anthropic's 529 is a 503).
    fn error_status(&self, status: u16) -> u16 {
        status
    }

    /// The message of a provider's error body.
    fn error_message(&self, body: &[u8]) -> String {
        openai::error_message(body)
    }

    /// Answers in-process instead of over HTTP (the built-in `mock`).
    fn answer_locally(&self, endpoint: Endpoint, body: &[u8], stream: bool) -> Option<Result<LocalAnswer, LocalError>> {
        let _ = (endpoint, body, stream);
        None
    }
}

/// The registry: the one place that names every kind.
pub fn adapter(kind: ProviderKind) -> &'static dyn Adapter {
    match kind {
        ProviderKind::OpenAi => &openai::OpenAi,
        ProviderKind::OpenAiCompatible => &openai::OpenAiCompatible,
        ProviderKind::Azure => &azure::Azure,
        ProviderKind::Anthropic => &anthropic::Anthropic,
        ProviderKind::Gemini => &gemini::Gemini,
        ProviderKind::Bedrock => &bedrock::Bedrock,
        ProviderKind::Ollama => &ollama::Ollama,
        ProviderKind::Mock => &mock::Mock,
    }
}

/// A request the client must fix: a 400 with `message`.
pub(crate) fn bad(message: String) -> GatewayError {
    GatewayError::BadRequest(message)
}

/// What a provider kind cannot do: a 400 that names it.
pub(crate) fn unsupported(kind: &str, what: &str) -> GatewayError {
    GatewayError::BadRequest(format!("the {kind} provider does not support {what}"))
}

/// An encoder's serde failure (it cannot happen for values that were parsed from JSON).
pub fn encode_error(e: serde_json::Error) -> GatewayError {
    GatewayError::Internal(format!("encoding the upstream request: {e}"))
}

/// A model id as one URL path segment (Bedrock's `anthropic.claude-3-haiku-...-v1:0`).
pub fn path_segment(model: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(model.len());
    for b in model.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            other => {
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
    out
}
