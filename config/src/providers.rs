//! Checked providers (and what the config knows of each kind), model aliases, targets,
//! strategies and prices.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Limits;

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProviderKind {
    /// api.openai.com
    OpenAi,
    /// Any server speaking OpenAI's API (vLLM, Ollama's `/v1`, TGI, Groq, ...).
    OpenAiCompatible,
    /// Anthropic's Messages API.
    Anthropic,
    /// Azure OpenAI: deployment URLs, `api-version`, `api-key`.
    Azure,
    /// Ollama's native API (`/api/chat` with NDJSON streams, `/api/embed`).
    Ollama,
    /// Google's Gemini API (`generateContent`, `streamGenerateContent`, `batchEmbedContents`).
    Gemini,
    /// Amazon Bedrock's Converse API, SigV4-signed.
    Bedrock,
    /// Built in: deterministic replies without a network.
    Mock,
}

/// What the config knows of one provider kind: its name in `kind = "..."`, and the
/// fields only it takes. One row per kind, in [`ProviderKind::KINDS`]; everything else
/// about a kind (URLs per endpoint, auth, translation) is its adapter's, in the engine.
#[derive(Debug)]
pub struct KindSpec {
    pub kind: ProviderKind,
    pub name: &'static str,
    /// The `base_url` when the file gives none; `None`: the file must give one; empty:
    /// made from another field (Bedrock's region).
    pub default_base_url: Option<&'static str>,
    /// Whether `base_url` is an http(s) URL that can be called (not the built-in mock).
    pub http: bool,
    /// `api_version`, and its default, for kinds that take one (Azure).
    pub api_version: Option<&'static str>,
    /// Whether requests are SigV4-signed (`region`, `aws_*` fields; Bedrock).
    pub aws: bool,
}

impl ProviderKind {
    /// Every kind, in declaration order.
    pub const KINDS: &'static [KindSpec] = &[
        KindSpec::of(ProviderKind::OpenAi, "openai", Some("https://api.openai.com/v1")),
        KindSpec::of(ProviderKind::OpenAiCompatible, "openai-compatible", None),
        KindSpec::of(ProviderKind::Anthropic, "anthropic", Some("https://api.anthropic.com/v1")),
        KindSpec { api_version: Some("2024-10-21"), ..KindSpec::of(ProviderKind::Azure, "azure", None) },
        KindSpec::of(ProviderKind::Ollama, "ollama", Some("http://127.0.0.1:11434")),
        KindSpec::of(ProviderKind::Gemini, "gemini", Some("https://generativelanguage.googleapis.com/v1beta")),
        KindSpec { aws: true, ..KindSpec::of(ProviderKind::Bedrock, "bedrock", Some("")) },
        KindSpec { http: false, ..KindSpec::of(ProviderKind::Mock, "mock", Some("mock://")) },
    ];

    /// The kind named `name` in a config file.
    pub fn parse(name: &str) -> Option<ProviderKind> {
        Self::KINDS.iter().find(|s| s.name == name).map(|s| s.kind)
    }

    /// This kind's row.
    pub fn spec(self) -> &'static KindSpec {
        // KINDS lists the kinds in declaration order
        &Self::KINDS[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        self.spec().name
    }
}

impl KindSpec {
    const fn of(kind: ProviderKind, name: &'static str, default_base_url: Option<&'static str>) -> KindSpec {
        KindSpec { kind, name, default_base_url, http: true, api_version: None, aws: false }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key: Option<String>,
    pub concurrency: usize,
    pub queue_size: usize,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub timeout: Duration,
    pub max_retries: u32,
    /// Longest silence between two events of a streamed answer (an error event after).
    pub stream_idle_timeout: Duration,
    /// Largest non-streamed answer read from the provider (502 above).
    pub max_response_bytes: usize,
    /// Largest single event of a streamed answer (an error event above).
    pub max_event_bytes: usize,
    /// Lower-cased header names.
    pub forward_headers: Vec<String>,
    pub headers: Vec<(String, String)>,
    /// Share of `concurrency` that queued jobs may hold.
    pub jobs_share: f64,
    pub mock_latency: Duration,
    /// Consecutive retryable failures that open the circuit breaker (0: off).
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// Share of failures within `breaker_window` (after `breaker_min_requests` calls)
    /// that opens the breaker; `None`: consecutive failures only.
    pub breaker_error_ratio: Option<f64>,
    pub breaker_min_requests: u32,
    pub breaker_window: Duration,
    /// Active health checks, when configured.
    pub health_check: Option<HealthCheck>,
    /// `azure` only: the `api-version` query parameter.
    pub api_version: String,
    /// `bedrock` only: how requests are signed.
    pub aws: Option<AwsAuth>,
}

/// `GET base_url + path` every `interval`: a failure (connection error, timeout or a
/// non-2xx status) opens the provider's breaker, a success closes it.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub interval: Duration,
    pub path: String,
}

/// SigV4 signing for `bedrock`: the region, and credentials from the config or, when
/// absent, the standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
/// `AWS_SESSION_TOKEN` environment variables (read when the provider starts).
#[derive(Debug, Clone, PartialEq)]
pub struct AwsAuth {
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub alias: String,
    pub strategy: Strategy,
    pub targets: Vec<Target>,
    /// Aliases tried, in order, when every target of this one failed.
    pub fallbacks: Vec<String>,
    pub input_per_mtok: Option<f64>,
    pub output_per_mtok: Option<f64>,
    /// `weighted`: the same `user` always draws the same target.
    pub sticky_user: bool,
    /// Limits on the alias across every key.
    pub limits: Limits,
    pub guardrails: Vec<String>,
    /// The most output tokens its targets can produce (caps the token reservation).
    pub max_output_tokens: Option<u64>,
    /// Its requests are logged (prompts and answers, after guardrails).
    pub log_requests: bool,
    /// Its semantic-cache policy; `None`: not cached by meaning.
    pub semantic: Option<crate::SemanticPolicy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub provider: String,
    pub model: String,
    pub weight: u32,
    /// Requests of this alias in flight to this target at once.
    pub max_concurrency: Option<u32>,
    /// Price override, USD per million input / output tokens.
    pub input_per_mtok: Option<f64>,
    pub output_per_mtok: Option<f64>,
}

/// How a model alias picks among its targets. Whatever the strategy, a target that
/// fails with a retryable error (connection, timeout, 429, 5xx) before sending anything
/// to the client is replaced by another of the alias's targets not yet tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// At random, by weight.
    Weighted,
    /// In the listed order: the next target only when the ones before it failed.
    Failover,
    /// The cheapest target for the request's estimated input and output tokens first
    /// (target price, else the alias's, else `pricing.toml`; targets without a price
    /// last), the next cheapest when it fails.
    Cost,
    /// Power of two choices: two targets drawn at random, the one with the lower
    /// peak-EWMA latency times (in-flight requests + 1) wins.
    Latency,
}

/// Prices per upstream model, USD per million tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pricing {
    pub models: HashMap<String, Price>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: f64,
    pub cache_write_input_per_mtok: f64,
}

impl Pricing {
    /// Cost in USD of one request served by `provider`'s `upstream_model` for the alias
    /// `model`: the target's price, else the alias's, else `pricing.toml`. Unknown
    /// models cost 0 (and are reported as such).
    pub fn cost(&self, model: &Model, provider: &str, upstream_model: &str, usage: TokenCounts) -> f64 {
        let target = model.targets.iter().find(|t| t.provider == provider && t.model == upstream_model);
        self.target_cost(model, target, upstream_model, usage).0
    }

    /// Cost of `usage` on `target` of `model` (or on `upstream_model` when the target is
    /// not one of the alias's), and whether any price was known.
    pub fn target_cost(
        &self,
        model: &Model,
        target: Option<&Target>,
        upstream_model: &str,
        usage: TokenCounts,
    ) -> (f64, bool) {
        let base = self.models.get(upstream_model).copied();
        let input = target.and_then(|t| t.input_per_mtok).or(model.input_per_mtok).or(base.map(|p| p.input_per_mtok));
        let output =
            target.and_then(|t| t.output_per_mtok).or(model.output_per_mtok).or(base.map(|p| p.output_per_mtok));
        let known = input.is_some() || output.is_some();
        let (input, output) = (input.unwrap_or(0.0), output.unwrap_or(0.0));
        // a price set on the target is its price for every input token
        let (cached, cache_write) = match target.and_then(|t| t.input_per_mtok) {
            Some(p) => (p, p),
            None => (
                base.map(|p| p.cached_input_per_mtok).unwrap_or(input),
                base.map(|p| p.cache_write_input_per_mtok).unwrap_or(input),
            ),
        };
        let plain_in = usage.input.saturating_sub(usage.cached_input).saturating_sub(usage.cache_write_input);
        let cost = (plain_in as f64 * input
            + usage.cached_input as f64 * cached
            + usage.cache_write_input as f64 * cache_write
            + usage.output as f64 * output)
            / 1_000_000.0;
        (cost, known)
    }
}

/// Token counts of one request, as the pricing needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Every input token, cache reads and writes included.
    pub input: u64,
    /// Every output token, reasoning included.
    pub output: u64,
    /// Of `input`, read from a prompt cache.
    pub cached_input: u64,
    /// Of `input`, written to a prompt cache.
    pub cache_write_input: u64,
}
