//! What the request path answers: a body (JSON or SSE) with what the response headers
//! say, or a failure with the rate-limit headers known when it happened.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use crate::actors::messages::RateHeaders;
use crate::GatewayError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Bypass,
    /// Answered by the semantic cache: the similarity of the stored prompt.
    SemanticHit(f32),
    /// Missed both caches: the nearest stored prompt's similarity, when there was one.
    SemanticMiss(Option<f32>),
}

impl CacheStatus {
    /// `x-switchyard-cache`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss | CacheStatus::SemanticMiss(_) => "miss",
            CacheStatus::Bypass => "bypass",
            CacheStatus::SemanticHit(_) => "semantic-hit",
        }
    }

    /// `x-switchyard-cache-similarity`: the semantic lookup's similarity.
    pub fn similarity(self) -> Option<f32> {
        match self {
            CacheStatus::SemanticHit(s) => Some(s),
            CacheStatus::SemanticMiss(s) => s,
            _ => None,
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
    /// The `[[routes]]` rule that picked the alias, if one did.
    pub route: Option<String>,
    /// Calls sent to providers (0 for a cache hit).
    pub attempts: u32,
    /// The body (or stream) is the provider's own answer in the client's format (a
    /// native call, such as `/v1/messages` to Anthropic), not OpenAI's.
    pub native: bool,
    /// The prompt version, experiment variant and policies that shaped the request.
    pub shaped: Option<std::sync::Arc<crate::prompts::shape::Shaped>>,
    /// What guardrails flagged (not blocked), with scores: `x-switchyard-guardrails`.
    pub guardrail_flags: Option<String>,
}

/// An error and the rate-limit headers known when it happened.
pub struct Failure {
    pub error: GatewayError,
    pub rate: Option<Box<RateHeaders>>,
    /// Already counted (and recorded) by the finisher.
    pub counted: bool,
}

impl From<GatewayError> for Failure {
    fn from(error: GatewayError) -> Failure {
        Failure { error, rate: None, counted: false }
    }
}
