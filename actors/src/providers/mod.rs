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
pub mod gemini;
pub mod mock;
pub mod ollama;
pub mod openai;
pub mod sse;

#[cfg(test)]
mod golden_tests;

use bytes::Bytes;

pub use adapter::{adapter, Adapter, DecodeCtx, DecodeError, LocalAnswer, LocalError, Sign};

/// A vector as OpenAI's `encoding_format: base64`: little-endian `f32`s, base64.
pub fn f32_base64(values: impl Iterator<Item = f32>) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = values.flat_map(f32::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
