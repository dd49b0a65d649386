//! Switchyard's typed configuration: raw serde types ([`raw`]) are read from TOML,
//! then [`validate`] turns them into a checked [`Config`] whose every error names the
//! field it is about.

pub mod raw;
mod routes;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use routes::{Route, RouteInput};
pub use validate::validate;

/// A checked configuration. Cheap to share: hold it in an `Arc`.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub nats: Option<Nats>,
    pub providers: Vec<Provider>,
    /// Aliases in file order.
    pub models: Vec<Model>,
    pub keys: Vec<Key>,
    pub cache: Cache,
    pub pricing: Pricing,
    /// `[[routes]]` in file order; the first that matches picks the alias.
    pub routes: Vec<Route>,
    pub teams: Vec<Team>,
    pub jwt: Option<Jwt>,
    pub guardrails: Vec<Guardrail>,
}

/// A `[[guardrails]]` set (compiled by the engine).
#[derive(Debug, Clone, PartialEq)]
pub struct Guardrail {
    pub name: String,
    pub on_request: bool,
    pub on_response: bool,
    /// Entity -> action, as written (checked).
    pub pii: Vec<(String, String)>,
    pub custom: Vec<CustomPattern>,
    /// Prompt-injection scoring: threshold, and whether to block (else flag).
    pub injection: Option<(f64, bool)>,
    /// A classifier alias asked about messages scored from the second value up.
    pub injection_classifier: Option<(String, f64)>,
    pub moderation: Option<ModerationCfg>,
}

/// The moderation categories, in OpenAI's names (validated here, scored by the
/// engine's moderator).
pub const MODERATION_CATEGORIES: &[&str] = &["hate", "harassment", "violence", "self-harm", "sexual", "illicit"];

#[derive(Debug, Clone, PartialEq)]
pub struct ModerationCfg {
    pub threshold: f64,
    pub thresholds: Vec<(String, f64)>,
    /// Category -> (phrase, severity).
    pub extra: Vec<(String, Vec<(String, f64)>)>,
    pub block: bool,
    /// A second opinion from a provider's `/moderations` (provider, model).
    pub upstream: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomPattern {
    pub name: String,
    pub regex: String,
    pub action: String,
}

/// JWT bearer tokens: verified with an HS256 secret or the public keys of a JWKS
/// (file or URL); the team claim picks the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwt {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub hs256_secret: Option<String>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub jwks_refresh: Duration,
    pub team_claim: String,
    pub subject_claim: String,
    pub leeway_secs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub http_addr: String,
    pub data_dir: PathBuf,
    pub body_limit_bytes: usize,
    pub workers: Option<usize>,
    /// SHA-256 (hex) of the admin credential.
    pub admin_key_sha256: Option<String>,
    pub ledger_flush: Duration,
    pub ledger_batch_max: usize,
    /// Whether a response waits for its usage record to be on disk.
    pub ledger_sync: bool,
    /// Seed of the routing random numbers; `None`: random.
    pub routing_seed: Option<u64>,
    /// Hostile-input limits (400 beyond them).
    pub max_messages: usize,
    pub max_json_depth: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Nats {
    pub url: String,
    pub prefix: String,
    pub name: String,
    pub credentials_file: Option<PathBuf>,
    pub token: Option<String>,
    pub user_password: Option<(String, String)>,
    pub request_reply: bool,
    pub jobs: bool,
    pub job_concurrency: usize,
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    pub ack_wait: Duration,
    pub aging: Duration,
    pub jobs_max_messages: i64,
    pub jobs_max_bytes: i64,
    pub results_max_age: Duration,
    pub usage_max_age: Duration,
    pub duplicate_window: Duration,
    pub embed_batch_max_inputs: usize,
    pub embed_batch_window: Duration,
    pub replicas: usize,
    /// Largest Batch API input file, bytes.
    pub files_max_bytes: usize,
    /// Most requests in one batch.
    pub batch_max_requests: usize,
    /// Limits and budgets shared through key-value buckets.
    pub shared_limits: bool,
}

impl Nats {
    /// `<prefix>.v1.<rest>`
    pub fn subject(&self, rest: &str) -> String {
        format!("{}.v1.{rest}", self.prefix)
    }
}

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

/// Request priority, from the key's default or the `x-switchyard-priority` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    High,
    Normal,
    Low,
}

impl Priority {
    pub fn parse(s: &str) -> Option<Priority> {
        match s.trim().to_ascii_lowercase().as_str() {
            "high" => Some(Priority::High),
            "normal" => Some(Priority::Normal),
            "low" => Some(Priority::Low),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub id: String,
    pub key_sha256: String,
    /// `None` means every alias (for a key of a team: whatever the team allows).
    pub models: Option<Vec<String>>,
    pub limits: Limits,
    pub priority: Priority,
    /// Lane of its Batch API items.
    pub batch_priority: Priority,
    /// The team whose policy applies too.
    pub team: Option<String>,
    /// `None`: every API.
    pub endpoints: Option<Vec<Api>>,
    pub max_tokens: Option<u64>,
    /// Highest priority it may ask for.
    pub max_priority: Priority,
    pub budget: Option<Budget>,
    /// Unix ms after which it is refused.
    pub expires_at_ms: Option<u64>,
    /// `[[guardrails]]` names.
    pub guardrails: Vec<String>,
}

impl Key {
    pub fn allows(&self, alias: &str) -> bool {
        allows_model(&self.models, alias)
    }
}

/// A team: the policy every key of the team is held to as well as its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Team {
    pub id: String,
    /// `None`: every alias.
    pub models: Option<Vec<String>>,
    pub endpoints: Option<Vec<Api>>,
    pub max_tokens: Option<u64>,
    pub max_priority: Priority,
    /// Shared by all the team's keys.
    pub limits: Limits,
    pub budget: Option<Budget>,
    pub guardrails: Vec<String>,
}

impl Team {
    pub fn allows(&self, alias: &str) -> bool {
        allows_model(&self.models, alias)
    }
}

fn allows_model(list: &Option<Vec<String>>, alias: &str) -> bool {
    match list {
        None => true,
        Some(list) => list.iter().any(|m| m == alias),
    }
}

/// Whether `api` is in an endpoint list (`None`: all).
pub fn allows_api(list: &Option<Vec<Api>>, api: Api) -> bool {
    list.as_ref().is_none_or(|l| l.contains(&api))
}

/// The APIs a key or team may be limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    Chat,
    Embeddings,
    Batch,
}

impl Api {
    pub fn parse(s: &str) -> Option<Api> {
        match s {
            "chat" => Some(Api::Chat),
            "embeddings" => Some(Api::Embeddings),
            "batch" => Some(Api::Batch),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Embeddings => "embeddings",
            Api::Batch => "batch",
        }
    }
}

/// A spending cap in USD over a period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub usd: f64,
    pub period: BudgetPeriod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetPeriod {
    /// The UTC day.
    Day,
    /// The UTC calendar month.
    Month,
    /// Since the beginning.
    Total,
}

impl BudgetPeriod {
    pub fn parse(s: &str) -> Option<BudgetPeriod> {
        match s {
            "day" => Some(BudgetPeriod::Day),
            "month" => Some(BudgetPeriod::Month),
            "total" => Some(BudgetPeriod::Total),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
            BudgetPeriod::Total => "total",
        }
    }

    /// Unix ms when the period holding `now_ms` began (UTC).
    pub fn start_ms(self, now_ms: u64) -> u64 {
        const DAY: u64 = 86_400_000;
        match self {
            BudgetPeriod::Total => 0,
            BudgetPeriod::Day => now_ms - now_ms % DAY,
            BudgetPeriod::Month => {
                let (y, m, _) = civil_from_days((now_ms / DAY) as i64);
                days_from_civil(y, m, 1) as u64 * DAY
            }
        }
    }
}

/// The UTC date of a unix time in ms, `YYYY-MM-DD`.
pub fn utc_day(ms: u64) -> String {
    let (y, m, d) = civil_from_days((ms / 86_400_000) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm: a few lines instead of a date crate for one month boundary).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Limits of a key, a team or an alias; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    /// Tokens per day.
    pub tpd: Option<u64>,
    pub max_concurrent: Option<u32>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cache {
    pub enabled: bool,
    pub ttl: Duration,
    pub max_bytes: u64,
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
        let cached = match target.and_then(|t| t.input_per_mtok) {
            Some(p) => p,
            None => base.map(|p| p.cached_input_per_mtok).unwrap_or(input),
        };
        let uncached_in = usage.input.saturating_sub(usage.cached_input);
        let cost = (uncached_in as f64 * input + usage.cached_input as f64 * cached + usage.output as f64 * output)
            / 1_000_000.0;
        (cost, known)
    }
}

/// Token counts of one request, as the pricing needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
}

impl Config {
    pub fn model(&self, alias: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.alias == alias)
    }

    pub fn team(&self, id: &str) -> Option<&Team> {
        self.teams.iter().find(|t| t.id == id)
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }
}

/// One problem in a config file, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// e.g. `providers[1].base_url`
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a file, so one run of `check-config` shows them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError { field: field.into(), message: message.into() }])
    }
}

/// Hex SHA-256 of a credential; keys are only ever compared in this form.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Reads, parses and validates a config file (and the pricing file it names).
pub fn load(path: &Path) -> Result<Arc<Config>, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one("<file>", format!("cannot read {}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    load_str(&text, base, &|name| std::env::var(name).ok()).map(Arc::new)
}

/// Parses and validates config text; `base` resolves relative paths, `env` looks up `${VAR}`.
pub fn load_str(text: &str, base: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| toml_error(&e, text))?;
    let pricing = match &raw.pricing_file {
        Some(p) => Some(read_pricing(&base.join(p), "pricing_file")?),
        None => {
            let default = base.join("pricing.toml");
            if default.exists() {
                Some(read_pricing(&default, "pricing_file")?)
            } else {
                None
            }
        }
    };
    let mut cfg = validate(raw, pricing.unwrap_or_default(), env)?;
    if let Some(f) = cfg.jwt.as_mut().and_then(|j| j.jwks_file.as_mut()) {
        if f.is_relative() {
            *f = base.join(&*f);
        }
    }
    Ok(cfg)
}

fn read_pricing(path: &Path, field: &str) -> Result<raw::RawPricing, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one(field, format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let inner = toml_error(&e, &text);
        ConfigErrors(
            inner
                .0
                .into_iter()
                .map(|c| ConfigError { field: format!("{} ({})", c.field, path.display()), message: c.message })
                .collect(),
        )
    })
}

/// A parse error names the line and quotes it, so the key is always visible
/// (toml's own message names unknown fields but not the key of a type error).
fn toml_error(e: &toml::de::Error, text: &str) -> ConfigErrors {
    let message = e.message().trim().to_string();
    let field = match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line_no = text[..start].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            format!("line {line_no} `{line}`")
        }
        None => "<toml>".to_string(),
    };
    ConfigErrors::one(field, message)
}

#[cfg(test)]
mod tests;
