//! `[cache.semantic]` and an alias's `semantic_cache`: answer a request that means the
//! same as an earlier one from the cache.

use std::time::Duration;

use serde::Deserialize;

/// `[cache.semantic]`: what every opted-in alias shares (the embedding model, the index's
/// bounds) and the defaults of the per-alias policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSemantic {
    /// The alias that embeds prompts (its targets serve `/v1/embeddings`).
    pub embeddings: String,
    /// Most entries kept; the oldest are evicted above it (default 50,000).
    pub max_entries: Option<usize>,
    /// The embedding call's time budget, ms: past it the request is a miss (default 300).
    pub embed_timeout_ms: Option<u64>,
    /// Longest prompt text embedded, in characters; longer prompts do not qualify
    /// (default 2,000).
    pub max_prompt_chars: Option<usize>,
    /// Numbers, negations, units and named entities of the two prompts must agree
    /// (default true).
    pub guards: Option<bool>,
    /// Candidates read from the index per lookup (default 8).
    pub candidates: Option<usize>,
    /// The defaults of every alias's policy.
    #[serde(flatten)]
    pub policy: RawSemanticPolicy,
}

/// The per-alias policy (defaults from `[cache.semantic]`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSemanticPolicy {
    /// Cosine similarity at or above which a stored answer may answer (default 0.93).
    pub threshold: Option<f32>,
    /// `key` (default), `team` or `global`: an answer never crosses it.
    pub scope: Option<String>,
    /// The request's `user` field must match too.
    pub per_user: Option<bool>,
    /// Entry lifetime, seconds (default 3600).
    pub ttl_secs: Option<u64>,
    /// Requests with a higher `temperature` do not qualify (absent counts as 1.0).
    pub max_temperature: Option<f64>,
    /// Requests with tools qualify (default false).
    pub tools: Option<bool>,
}

/// An alias's `semantic_cache`: `true` (the defaults) or a table overriding them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawAliasSemantic {
    On(bool),
    Policy(RawSemanticPolicy),
}

/// Checked `[cache.semantic]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Semantic {
    pub embeddings: String,
    pub max_entries: usize,
    pub embed_timeout: Duration,
    pub max_prompt_chars: usize,
    pub guards: bool,
    pub candidates: usize,
}

/// Where a cached answer may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemanticScope {
    Key,
    Team,
    Global,
}

impl SemanticScope {
    pub fn as_str(self) -> &'static str {
        match self {
            SemanticScope::Key => "key",
            SemanticScope::Team => "team",
            SemanticScope::Global => "global",
        }
    }
}

/// Checked per-alias policy.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticPolicy {
    pub threshold: f32,
    pub scope: SemanticScope,
    pub per_user: bool,
    pub ttl: Duration,
    pub max_temperature: Option<f64>,
    pub tools: bool,
}
