//! Checked `[server]`, `[nats]` and `[cache]` settings.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub http_addr: String,
    pub data_dir: PathBuf,
    pub body_limit_bytes: usize,
    pub workers: Option<usize>,
    /// SHA-256 (hex) of the admin credential.
    pub admin_key_sha256: Option<String>,
    /// The web console at `/ui` (served only with an admin credential).
    pub console: bool,
    pub console_session: Duration,
    pub ledger_flush: Duration,
    pub ledger_batch_max: usize,
    /// Whether a response waits for its usage record to be on disk.
    pub ledger_sync: bool,
    /// One log line per request.
    pub access_log: bool,
    /// Seed of the routing random numbers; `None`: random.
    pub routing_seed: Option<u64>,
    /// Hostile-input limits (400 beyond them).
    pub max_messages: usize,
    pub max_json_depth: usize,
    /// Bounds of one prompt template's render: instructions, and the text's bytes.
    pub prompt_render_fuel: u64,
    pub prompt_max_rendered_bytes: usize,
    /// Longest a request body may take to arrive (408 after).
    pub body_timeout: std::time::Duration,
    /// Most inputs an embeddings or moderations request may hold (400 above).
    pub max_inputs: usize,
    /// Largest `dimensions` an embeddings request may ask for (400 above).
    pub max_dimensions: u32,
    /// How long a stored Responses API response is kept (`None`: for ever).
    pub responses_ttl: Option<Duration>,
    /// Largest conversation a Responses request may continue (its stored items and its
    /// own body, bytes; 400 above).
    pub responses_max_bytes: usize,
    /// sled's page cache (resident memory), bytes.
    pub store_cache_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Nats {
    pub url: String,
    pub prefix: String,
    pub name: String,
    pub credentials_file: Option<PathBuf>,
    pub token: Option<String>,
    pub user_password: Option<(String, String)>,
    /// NKey seed (a secret).
    pub nkey_seed: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    pub tls_required: bool,
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
    /// `<PREFIX>_LOGS`: retention, size, and the most bytes of a prompt or answer kept.
    pub request_logs_max_age: Duration,
    pub request_logs_max_bytes: i64,
    pub request_logs_max_field_bytes: usize,
    /// Largest Batch API input file, bytes.
    pub files_max_bytes: usize,
    /// Most requests in one batch.
    pub batch_max_requests: usize,
    /// Limits and budgets shared through key-value buckets.
    pub shared_limits: bool,
    /// When the shared counters cannot be reached: `false` enforces the limits per
    /// instance meanwhile (availability first), `true` answers 503 (never over the limit).
    pub shared_limits_strict: bool,
}

impl Nats {
    /// `<prefix>.v1.<rest>`
    pub fn subject(&self, rest: &str) -> String {
        format!("{}.v1.{rest}", self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cache {
    pub enabled: bool,
    pub ttl: Duration,
    pub max_bytes: u64,
    /// `[cache.semantic]`; `None`: off.
    pub semantic: Option<crate::Semantic>,
}
