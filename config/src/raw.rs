//! Raw serde types: exactly what the TOML file says, unknown fields rejected.
//! `validate()` (in `validate.rs`) turns them into the checked [`crate::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// HTTP listener, storage and admin settings.
    #[serde(default)]
    pub server: RawServer,
    /// NATS ingress; absent means HTTP only.
    pub nats: Option<RawNats>,
    /// OpenTelemetry traces over OTLP; absent means off.
    pub telemetry: Option<RawTelemetry>,
    /// Where prices per model live; relative paths are resolved beside the config file.
    pub pricing_file: Option<String>,
    /// Upstream deployments.
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// Model aliases that clients ask for.
    #[serde(default)]
    pub models: Vec<RawModel>,
    /// API keys allowed to call the gateway.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Exact response cache.
    #[serde(default)]
    pub cache: RawCache,
    /// Rules that pick the model alias from the request; the first that matches wins.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Teams: a policy (models, endpoints, limits, budget) shared by their keys.
    #[serde(default)]
    pub teams: Vec<RawTeam>,
    /// JWT bearer tokens whose claims map to a team.
    pub jwt: Option<RawJwt>,
    /// Named guardrail sets that keys, teams and aliases refer to.
    #[serde(default)]
    pub guardrails: Vec<RawGuardrail>,
    /// Prompt templates with numbered versions and labels (prompt-as-code).
    #[serde(default)]
    pub prompts: Vec<crate::Prompt>,
    /// System text added to the requests of some keys, teams or aliases.
    #[serde(default)]
    pub prompt_policies: Vec<crate::PromptPolicy>,
    /// A/B tests of prompt versions and model aliases.
    #[serde(default)]
    pub experiments: Vec<crate::Experiment>,
}

/// `[[guardrails]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrail {
    pub name: String,
    /// `request`, `response` or `both` (default).
    pub direction: Option<String>,
    /// Entity (`email`, `phone`, `card`, `iban`, `ssn`, `ip`, `secret`) -> action
    /// (`redact`, `mask`, `pseudonymize`, `block`, `log`).
    #[serde(default)]
    pub pii: BTreeMap<String, String>,
    /// Patterns of your own.
    #[serde(default)]
    pub custom: Vec<RawCustomPattern>,
    /// Regions (ISO 3166 codes) whose national phone formats count (default `["US"]`;
    /// international numbers, with `+` or `00`, count for every country).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Prompt-injection scoring of every non-system message.
    pub injection: Option<RawInjection>,
    /// Content moderation by category, of requests and answers (per `direction`).
    pub moderation: Option<RawModeration>,
    /// Your own guardrail service, asked about each request (and non-streamed answer).
    pub webhook: Option<RawWebhook>,
    /// A Presidio analyzer (`POST /analyze`) finding PII in each request's texts.
    pub presidio: Option<RawPresidio>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: String,
    /// Headers sent with each call (`${ENV}` allowed in values).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How long a call may take (default 1000).
    pub timeout_ms: Option<u64>,
    /// `allow` (default: fail open) or `block` (fail closed) when it cannot answer.
    pub on_error: Option<String>,
    /// The largest answer read (default 1 MiB); a larger one is a failure.
    pub max_answer_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPresidio {
    /// The analyzer's address (`http://presidio-analyzer:3000`); `/analyze` is appended.
    pub url: String,
    /// The language sent (default `en`).
    pub language: Option<String>,
    /// The lowest score acted on (default 0.5).
    pub score: Option<f64>,
    /// Presidio entity type (`PHONE_NUMBER`, `US_SSN`, ...) -> action (`redact`, `mask`,
    /// `block`, `log`); `"*"` for every other type (default: `redact` for all).
    #[serde(default)]
    pub entities: BTreeMap<String, String>,
    pub timeout_ms: Option<u64>,
    pub on_error: Option<String>,
    pub max_answer_bytes: Option<usize>,
}

/// A moderation phrase: `"text"` (severity 0.8) or `{ phrase = "text", severity = 0.6 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPhrase {
    Plain(String),
    Weighted { phrase: String, severity: f64 },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModeration {
    /// Score at or above which a category flags (default 0.5).
    pub threshold: Option<f64>,
    /// Per-category thresholds (`hate`, `harassment`, `violence`, `self-harm`, `sexual`, `illicit`).
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
    /// Your own phrases per category (severity 0.8).
    #[serde(default)]
    pub extra: BTreeMap<String, Vec<RawPhrase>>,
    /// `block` (default) or `flag`.
    pub action: Option<String>,
    /// A second opinion: an OpenAI-format `/moderations` endpoint of this provider.
    pub upstream_provider: Option<String>,
    /// The moderation model asked (e.g. `omni-moderation-latest`).
    pub upstream_model: Option<String>,
    /// Score with the shipped classifier as well as the phrase lists (default true).
    pub model: Option<bool>,
    /// A Llama-Guard-style model alias asked about each request (`safe`, or `unsafe`
    /// and its category codes S1-S14).
    pub classifier: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInjection {
    /// Score (0 to 1) at or above which a message is an injection (default 0.5).
    pub threshold: Option<f64>,
    /// `block` (default) or `flag` (counted and logged, let through).
    pub action: Option<String>,
    /// A second opinion: a model alias asked whether a message is an injection, for
    /// messages the scorer puts between `ask_above` and the threshold.
    pub classifier: Option<String>,
    /// Score from which the classifier is asked (default 0.2).
    pub ask_above: Option<f64>,
    /// Score with the shipped classifier as well as the phrase scorer (default true).
    pub model: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomPattern {
    /// Upper-case label (`EMPLOYEE_ID` gives `[EMPLOYEE_ID]` and `<EMPLOYEE_ID_1>`).
    pub name: String,
    pub regex: String,
    pub action: String,
}

/// `[jwt]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Secret of HS256 tokens; `${ENV}` allowed.
    pub hs256_secret: Option<String>,
    /// A JWKS file with the public keys of RS256/ES256 tokens.
    pub jwks_file: Option<String>,
    /// A JWKS URL, fetched at start and every `jwks_refresh_secs`.
    pub jwks_url: Option<String>,
    pub jwks_refresh_secs: Option<u64>,
    /// The claim whose value is a `[[teams]]` id (default `team`).
    pub team_claim: Option<String>,
    /// The claim that identifies the caller in the ledger, as `jwt:<value>` (default `sub`).
    pub subject_claim: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, seconds (default 30).
    pub leeway_secs: Option<u64>,
    /// The console's single sign-on through the identity provider (OpenID Connect).
    pub oidc: Option<RawOidc>,
}

/// `[jwt.oidc]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub client_id: String,
    /// `${ENV}` allowed; absent for a public client (PKCE alone).
    pub client_secret: Option<String>,
    /// Where the identity provider sends the browser back:
    /// `https://GATEWAY/ui/api/sso/callback`.
    pub redirect_url: String,
    /// Default: read from `{jwt.issuer}/.well-known/openid-configuration`.
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    /// Default `["openid", "profile", "email"]`.
    pub scopes: Option<Vec<String>>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Listen address, e.g. `127.0.0.1:8080` (port 0 picks a free port).
    pub http_addr: Option<String>,
    /// Directory for the sled database (ledger, cache).
    pub data_dir: Option<String>,
    /// Largest request body accepted, in bytes (413 above it).
    pub body_limit_bytes: Option<usize>,
    /// HTTP worker threads (default: number of CPUs).
    pub workers: Option<usize>,
    /// Credential for `/admin/*` (`Authorization: Bearer`); absent disables the admin API.
    pub admin_key: Option<String>,
    /// The web console at `/ui` (default true; it needs `admin_key`).
    pub console: Option<bool>,
    /// How long a console session lasts, seconds (default 8 hours).
    pub console_session_secs: Option<u64>,
    /// Group-commit interval of the usage ledger, in milliseconds.
    pub ledger_flush_ms: Option<u64>,
    /// Largest number of usage records buffered before a flush is forced.
    pub ledger_batch_max: Option<usize>,
    /// `batched` (default): answer at once, commit every `ledger_flush_ms`.
    /// `sync`: each response waits for the group commit that holds its record.
    pub ledger_durability: Option<String>,
    /// One log line per request (target `switchyard::access`; default false).
    pub access_log: Option<bool>,
    /// Seed of the routing random numbers (weighted draws, power-of-two choices), for
    /// reproducible tests and benchmarks; absent means a random seed.
    pub routing_seed: Option<u64>,
    /// Most messages a chat request may hold (default 1000; 400 above it).
    pub max_messages: Option<usize>,
    /// Deepest JSON nesting a request may have (default 32; 400 deeper).
    pub max_json_depth: Option<usize>,
    /// Instructions one prompt template may run per render (default 200,000; 400 past it).
    pub prompt_render_fuel: Option<u64>,
    /// Largest text one prompt template may render, bytes (default 1 MiB; 400 past it).
    pub prompt_max_rendered_bytes: Option<usize>,
    /// Longest a request body may take to arrive, ms (408 after).
    pub body_timeout_ms: Option<u64>,
    /// Most inputs an embeddings or moderations request may hold.
    pub max_inputs: Option<usize>,
    /// Largest `dimensions` an embeddings request may ask for.
    pub max_dimensions: Option<u32>,
    /// How long a stored Responses API response is kept, seconds (default 30 days; 0 keeps them).
    pub responses_ttl_secs: Option<u64>,
    /// Largest conversation a Responses request may continue, bytes (default 8 MiB).
    pub responses_max_bytes: Option<usize>,
    /// sled's page cache, bytes (default 16 MiB).
    pub store_cache_bytes: Option<u64>,
}

/// `[nats]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNats {
    /// Server URL, e.g. `nats://127.0.0.1:4222`; a cluster's servers comma-separated.
    pub url: String,
    /// Subject prefix (default `switchyard`).
    pub prefix: Option<String>,
    /// Connection name shown by the server (default `switchyard`).
    pub name: Option<String>,
    /// A `.creds` file (JWT + NKey seed) for decentralized auth.
    pub credentials_file: Option<String>,
    /// Token auth; `${ENV}` allowed.
    pub token: Option<String>,
    /// User/password auth; `${ENV}` allowed.
    pub user: Option<String>,
    pub password: Option<String>,
    /// NKey auth: the user's seed (`SU...`); `${ENV}` allowed.
    pub nkey_seed: Option<String>,
    /// TLS: the CA that signs the servers' certificates (default: the system's roots).
    pub tls_ca_file: Option<String>,
    /// TLS client certificate and key (servers that verify clients).
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    /// Refuse a connection without TLS (default: true when a TLS file or a `tls://`
    /// URL is given).
    pub tls_required: Option<bool>,
    /// Serve `<prefix>.v1.chat` and `<prefix>.v1.embeddings` request/reply (default true).
    pub request_reply: Option<bool>,
    /// Serve durable jobs from JetStream (default true).
    pub jobs: Option<bool>,
    /// Jobs this instance runs at once (default 32).
    pub job_concurrency: Option<usize>,
    /// Deliveries of a job before a transient failure becomes a failed result (default 5).
    pub max_attempts: Option<u32>,
    /// First retry delay after a transient failure, ms; doubles per attempt, with jitter (default 1000).
    pub retry_backoff_ms: Option<u64>,
    /// Longest retry delay, ms (default 60000).
    pub retry_backoff_max_ms: Option<u64>,
    /// JetStream ack wait: a job not acked or progressed within it is redelivered, seconds (default 30).
    pub ack_wait_secs: Option<u64>,
    /// A queued job gains one priority level per this many ms of waiting (default 30000).
    pub aging_ms: Option<u64>,
    /// `SWITCHYARD_JOBS` limits.
    pub jobs_max_messages: Option<i64>,
    pub jobs_max_bytes: Option<i64>,
    /// `SWITCHYARD_RESULTS` retention, seconds (default 7 days).
    pub results_max_age_secs: Option<u64>,
    /// `SWITCHYARD_USAGE` retention, seconds (default 30 days).
    pub usage_max_age_secs: Option<u64>,
    /// `Nats-Msg-Id` de-duplication window of every stream, seconds (default 600).
    pub duplicate_window_secs: Option<u64>,
    /// Embedding jobs for the same model and key are coalesced into one upstream call of
    /// up to this many inputs (default 64; 1 turns batching off).
    pub embed_batch_max_inputs: Option<usize>,
    /// How long the first job of a batch waits for more, ms (default 5).
    pub embed_batch_window_ms: Option<u64>,
    /// `<PREFIX>_LOGS` (request logs) retention, seconds (default 7 days).
    pub request_logs_max_age_secs: Option<u64>,
    /// `<PREFIX>_LOGS` size limit, bytes (default 1 GiB); the oldest go first.
    pub request_logs_max_bytes: Option<i64>,
    /// Largest prompt or answer kept in one log entry, bytes (default 262144); longer
    /// ones are cut and marked.
    pub request_logs_max_field_bytes: Option<usize>,
    /// Stream replicas (1 for a single server; 3 in a cluster).
    pub replicas: Option<usize>,
    /// Largest file `POST /v1/files` accepts, bytes (default 104857600, 100 MiB).
    pub files_max_bytes: Option<usize>,
    /// Most requests one batch (one input file) may hold (default 50000).
    pub batch_max_requests: Option<usize>,
    /// Share rate limits and budgets with every instance on this NATS through
    /// key-value buckets (default true).
    pub shared_limits: Option<bool>,
    /// When the shared counters cannot be reached: `local` (default: each instance
    /// enforces the limits alone meanwhile) or `refuse` (503: never over a limit).
    pub shared_limits_unavailable: Option<String>,
}

/// `[telemetry]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// Export spans (default true when the section is present).
    pub enabled: Option<bool>,
    /// The OTLP receiver (default `http://127.0.0.1:4317`, or `:4318` for HTTP).
    pub endpoint: Option<String>,
    /// `grpc` (default) or `http/protobuf`.
    pub protocol: Option<String>,
    /// Share of new traces kept, 0 to 1 (default 1).
    pub sample_ratio: Option<f64>,
    /// `service.name` (default `switchyard`).
    pub service_name: Option<String>,
    /// More resource attributes.
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// Headers of every export; `${ENV}` allowed.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// One export's time limit, ms (default 10000).
    pub timeout_ms: Option<u64>,
    /// Spans buffered for export (default 4096).
    pub max_queue: Option<usize>,
    /// Spans per export (default 512).
    pub max_batch: Option<usize>,
    /// Export interval, ms (default 1000).
    pub export_interval_ms: Option<u64>,
    /// Send `traceparent` to providers (default true).
    pub propagate: Option<bool>,
    /// A trace in your tracing UI, `{trace_id}` replaced (the console links to it).
    pub trace_url: Option<String>,
}

/// `[[providers]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Unique name that model targets refer to.
    pub name: String,
    /// `openai`, `openai-compatible`, `anthropic`, `azure`, `ollama`, `gemini`, `bedrock` or `mock`.
    pub kind: String,
    /// Base URL up to and including `/v1`.
    pub base_url: Option<String>,
    /// Bearer credential sent upstream; `${ENV}` allowed.
    pub api_key: Option<String>,
    /// Requests in flight to this provider at once.
    pub concurrency: Option<usize>,
    /// Requests waiting for a concurrency slot before new ones get 503.
    pub queue_size: Option<usize>,
    /// TCP/TLS connect timeout, ms.
    pub connect_timeout_ms: Option<u64>,
    /// Time to response headers (first byte), ms.
    pub first_byte_timeout_ms: Option<u64>,
    /// Whole request (including a streamed body), ms.
    pub timeout_ms: Option<u64>,
    /// Retries on connect errors and 502/503 before the first byte.
    pub max_retries: Option<u32>,
    /// Longest silence between two events of a streamed answer, ms.
    pub stream_idle_timeout_ms: Option<u64>,
    /// Largest non-streamed answer read from the provider, bytes (502 above).
    pub max_response_bytes: Option<usize>,
    /// Largest single event of a streamed answer, bytes (the stream ends with an error
    /// event above).
    pub max_event_bytes: Option<usize>,
    /// Client request headers copied to the upstream request.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Static headers added to every upstream request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Share of `concurrency` that queued NATS jobs may hold (0 < share <= 1, default 0.5);
    /// interactive requests (HTTP, request/reply) always get the rest.
    pub jobs_share: Option<f64>,
    /// `mock` only: simulated latency per request, ms.
    pub mock_latency_ms: Option<u64>,
    /// Consecutive retryable failures that open this provider's circuit breaker
    /// (default 5; 0 turns it off).
    pub breaker_failures: Option<u32>,
    /// How long an open breaker keeps requests away, ms (default 30000).
    pub breaker_cooldown_ms: Option<u64>,
    /// Share of failed calls within `breaker_window_ms` that opens the breaker
    /// (0 < ratio <= 1; absent: only consecutive failures open it).
    pub breaker_error_ratio: Option<f64>,
    /// Calls a window needs before its error ratio counts (default 20).
    pub breaker_min_requests: Option<u32>,
    /// Length of the error-ratio window, ms (default 10000).
    pub breaker_window_ms: Option<u64>,
    /// Active health check: `GET base_url + health_check_path` every this many ms;
    /// a failed check opens the breaker, a passing one closes it (absent: off).
    pub health_check_interval_ms: Option<u64>,
    /// Path of the health check, relative to `base_url` (default `/models`).
    pub health_check_path: Option<String>,
    /// `azure` only: the `api-version` query parameter (default `2024-10-21`).
    pub api_version: Option<String>,
    /// `bedrock` only: the AWS region (e.g. `us-east-1`; `${AWS_REGION}` allowed).
    pub region: Option<String>,
    /// `bedrock` only: credentials; absent means the standard AWS environment variables.
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    pub aws_session_token: Option<String>,
}

/// `[[models]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// The name clients put in `model`.
    pub alias: String,
    /// `weighted` (default: at random by weight), `latency` (power of two choices on
    /// peak-EWMA latency and in-flight requests), `failover` (in order) or `cost`
    /// (cheapest for the request's estimated tokens first).
    pub strategy: Option<String>,
    /// `weighted` only: `"user"` sends every request with the same `user` field to the
    /// same target (sticky canary splits).
    pub sticky: Option<String>,
    /// Where requests for this alias go.
    pub targets: Vec<RawTarget>,
    /// Aliases whose targets take over when every target of this one failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Price override, USD per million input tokens.
    pub input_per_mtok: Option<f64>,
    /// Price override, USD per million output tokens.
    pub output_per_mtok: Option<f64>,
    /// Limits on the alias across every key: requests and tokens per minute, tokens
    /// per day, requests in flight.
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
    pub max_concurrent: Option<u32>,
    /// The most output tokens the alias's targets can produce: what a request reserves
    /// against token limits at most, whatever `max_tokens` it asks for.
    pub max_output_tokens: Option<u64>,
    /// `[[guardrails]]` names applied to requests for this alias.
    #[serde(default)]
    pub guardrails: Vec<String>,
    /// Log its requests' prompts and answers (after guardrails) to JetStream.
    pub log_requests: Option<bool>,
    /// Answer paraphrases of earlier requests from the semantic cache: `true` or a
    /// table overriding `[cache.semantic]`'s policy.
    pub semantic_cache: Option<crate::RawAliasSemantic>,
}

/// One target of a model alias.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Provider name.
    pub provider: String,
    /// Model name sent upstream.
    pub model: String,
    /// Relative weight (default 1).
    pub weight: Option<u32>,
    /// Requests of this alias in flight to this target at once; a full target is
    /// skipped (absent: only the provider's `concurrency` applies).
    pub max_concurrency: Option<u32>,
    /// Price of this target, USD per million input / output tokens (overrides the
    /// alias's price and `pricing.toml`, for routing and for accounting).
    pub input_per_mtok: Option<f64>,
    pub output_per_mtok: Option<f64>,
}

/// `[[routes]]`: when every condition given holds, the request is served by `alias`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Reported in `x-switchyard-route` and the `route` metric label.
    pub name: String,
    /// The model alias that serves a matching request.
    pub alias: String,
    /// The `model` values this rule applies to (e.g. `["auto"]`); absent: any.
    #[serde(default)]
    pub models: Vec<String>,
    /// Request headers (name -> regular expression the value must match).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Key ids this rule applies to.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Values of the request's `user` field this rule applies to.
    #[serde(default)]
    pub users: Vec<String>,
    /// The request offers tools (true) or does not (false).
    pub has_tools: Option<bool>,
    /// The request carries images (true) or does not (false).
    pub has_images: Option<bool>,
    /// Estimated prompt tokens at least / at most this many.
    pub min_prompt_tokens: Option<u64>,
    pub max_prompt_tokens: Option<u64>,
    /// A regular expression the last user message must match.
    pub regex: Option<String>,
    /// Words or phrases of which the last user message must contain one (case-insensitive).
    #[serde(default)]
    pub keywords: Vec<String>,
}

/// `[[keys]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Stable identifier used in the ledger and metrics (never the secret).
    pub id: String,
    /// The secret itself; `${ENV}` allowed. Stored only as its SHA-256.
    pub key: Option<String>,
    /// Hex SHA-256 of the secret, instead of `key`.
    pub key_sha256: Option<String>,
    /// Aliases this key may use; `"*"` for all.
    #[serde(default)]
    pub models: Vec<String>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute (prompt estimate plus `max_tokens`, reconciled after).
    pub tpm: Option<u64>,
    /// Concurrent requests.
    pub max_concurrent: Option<u32>,
    /// Default priority: `high`, `normal` or `low`.
    pub priority: Option<String>,
    /// Lane of its Batch API items: `high`, `normal` or `low` (default `low`).
    pub batch_priority: Option<String>,
    /// The team whose policy also applies (both must allow a request).
    pub team: Option<String>,
    /// APIs it may call: `chat`, `embeddings`, `batch` (absent: all).
    pub endpoints: Option<Vec<String>>,
    /// Largest `max_tokens` a request may ask for (and what it gets when it sets none).
    pub max_tokens: Option<u64>,
    /// Highest priority it may ask for with `x-switchyard-priority` (default `high`).
    pub max_priority: Option<String>,
    /// Tokens per day (a bucket that refills continuously over 24 hours).
    pub tpd: Option<u64>,
    /// Spending cap in USD per `budget_period`, from the prices in `pricing.toml`.
    pub budget_usd: Option<f64>,
    /// `day` (UTC), `month` (UTC) or `total` (default `month`).
    pub budget_period: Option<String>,
    /// When it stops working: RFC 3339 (`2027-01-31T00:00:00Z`).
    pub expires_at: Option<String>,
    /// `[[guardrails]]` names applied to its requests.
    #[serde(default)]
    pub guardrails: Vec<String>,
    /// Log its requests' prompts and answers (after guardrails) to JetStream.
    pub log_requests: Option<bool>,
}

/// `[[teams]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeam {
    /// Stable identifier (keys refer to it; JWT claims map to it).
    pub id: String,
    /// Aliases its keys may use (absent or `"*"`: all).
    pub models: Option<Vec<String>>,
    /// APIs its keys may call: `chat`, `embeddings`, `batch` (absent: all).
    pub endpoints: Option<Vec<String>>,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens: Option<u64>,
    /// Highest priority its keys may ask for (default `high`).
    pub max_priority: Option<String>,
    /// Limits shared by all the team's keys.
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
    pub max_concurrent: Option<u32>,
    /// Spending cap in USD per `budget_period`, shared by all the team's keys.
    pub budget_usd: Option<f64>,
    /// `day`, `month` or `total` (default `month`).
    pub budget_period: Option<String>,
    /// `[[guardrails]]` names applied to its keys' requests.
    #[serde(default)]
    pub guardrails: Vec<String>,
    /// Log its keys' requests' prompts and answers (after guardrails) to JetStream.
    pub log_requests: Option<bool>,
}

/// `[cache]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Turn the exact response cache on.
    pub enabled: Option<bool>,
    /// Entry lifetime, seconds.
    pub ttl_secs: Option<u64>,
    /// Size cap of stored responses, bytes; oldest entries are evicted above it.
    pub max_bytes: Option<u64>,
    /// The semantic cache (aliases opt in with `semantic_cache`).
    pub semantic: Option<crate::RawSemantic>,
}

/// `pricing.toml`: `[models."<upstream model>"]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    #[serde(default)]
    pub models: BTreeMap<String, RawPrice>,
}

/// Price of one upstream model.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
    /// USD per million cached input tokens (default: the input price).
    pub cached_input_per_mtok: Option<f64>,
    /// USD per million input tokens written to a prompt cache (default: the input price).
    pub cache_write_input_per_mtok: Option<f64>,
}
