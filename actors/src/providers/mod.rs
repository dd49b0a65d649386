//! Provider adapters: pure translation between OpenAI's wire format (the engine's own)
//! and each provider's, one module per kind, found through [`adapter`]. Nothing here does
//! I/O; `crate::upstream` calls providers and asks their adapter for every
//! provider-specific step.

pub mod adapter;
pub mod anthropic;
mod aws;
pub mod azure;
pub mod bedrock;
pub mod capabilities;
pub mod from_anthropic;
pub mod from_responses;
pub mod gemini;
pub mod mock;
pub mod ollama;
pub mod openai;
pub mod openai_responses;
pub mod sse;
pub mod stream_acc;
pub mod web_search;

#[cfg(test)]
mod golden_tests;

use bytes::Bytes;

pub use adapter::{adapter, Adapter, DecodeCtx, DecodeError, Framing, LocalAnswer, LocalError, Sign};

/// A vector as OpenAI's `encoding_format: base64`: little-endian `f32`s, base64.
pub fn f32_base64(values: impl Iterator<Item = f32>) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = values.flat_map(f32::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// What one event of a stream says about it: whether the client would see something
/// yet. Until the first content a failure can still go to another target unseen, so
/// the events before it (OpenAI's role-only chunk, Anthropic's `message_start` and
/// `ping`) are held back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStep {
    /// An opening event: nothing the client needs yet.
    Preamble,
    /// Content (text, a tool call, a refusal, reasoning) or the end of the stream.
    Content,
    /// The provider reported an error in the stream, with the status it stands for.
    Failed { status: u16, message: String },
}

/// The HTTP status an error `type` or `code` sent inside a stream stands for.
pub fn stream_error_status(kind: &str) -> u16 {
    if kind.contains("overloaded") {
        503
    } else if kind.contains("rate_limit") {
        429
    } else if kind.contains("invalid_request") || kind.contains("not_found") {
        400
    } else if kind.contains("authentication") || kind.contains("permission") {
        401
    } else {
        502
    }
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

impl StreamTranslate for Box<dyn StreamTranslate> {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Bytes>, String> {
        (**self).feed(bytes)
    }

    fn finish(&mut self) -> Vec<Bytes> {
        (**self).finish()
    }
}
