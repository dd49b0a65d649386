//! Checked access settings: keys, teams, priorities, APIs, limits, budgets, JWT.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    pub oidc: Option<Oidc>,
}

/// The console's sign-in through an OpenID Connect provider (authorization code with
/// PKCE); the ID token it returns is verified with the `[jwt]` settings, its audience
/// being `client_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Oidc {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_url: String,
    /// `None`: discovered from the issuer.
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub scopes: Vec<String>,
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
    /// Its requests are logged (prompts and answers, after guardrails).
    pub log_requests: bool,
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
    /// Its keys' requests are logged.
    pub log_requests: bool,
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
