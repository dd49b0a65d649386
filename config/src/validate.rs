//! Raw -> checked. Collects every error with its field path instead of stopping at the first.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::raw::{RawConfig, RawPricing};
use crate::{
    hash_key, Api, AwsAuth, Budget, BudgetPeriod, Cache, Config, ConfigError, ConfigErrors, Key, Limits, Model, Nats,
    Price, Pricing, Priority, Provider, ProviderKind, Server, Strategy, Target, Team,
};

pub(crate) struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError { field: field.into(), message: message.into() });
    }
}

/// Replaces `${VAR}` with the environment's value; a missing variable is an error naming
/// the field. `$$` is a literal `$`.
fn interpolate(field: &str, value: &str, env: &dyn Fn(&str) -> Option<String>, errs: &mut Errors) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            match body.find('}') {
                Some(end) => {
                    let name = &body[..end];
                    match env(name) {
                        Some(v) => out.push_str(&v),
                        None => errs.push(field, format!("environment variable `{name}` is not set")),
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    errs.push(field, "unterminated `${`");
                    return out;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn positive_ms(field: &str, v: Option<u64>, default: u64, errs: &mut Errors) -> Duration {
    let ms = v.unwrap_or(default);
    if ms == 0 {
        errs.push(field, "must be greater than 0");
    }
    Duration::from_millis(ms)
}

fn at_least_one(field: &str, v: Option<usize>, default: usize, errs: &mut Errors) -> usize {
    let n = v.unwrap_or(default);
    if n == 0 {
        errs.push(field, "must be at least 1");
    }
    n
}

/// Limits as written; 0 is an error (omit a limit for none).
fn limits(
    f: &dyn Fn(&str) -> String,
    rpm: Option<u32>,
    tpm: Option<u64>,
    tpd: Option<u64>,
    max_concurrent: Option<u32>,
    errs: &mut Errors,
) -> Limits {
    for (name, zero) in [
        ("rpm", rpm == Some(0)),
        ("tpm", tpm == Some(0)),
        ("tpd", tpd == Some(0)),
        ("max_concurrent", max_concurrent == Some(0)),
    ] {
        if zero {
            errs.push(f(name), "must be at least 1 (omit it for no limit)");
        }
    }
    Limits { rpm, tpm, tpd, max_concurrent }
}

/// `endpoints = [...]`: `None` (all) when absent.
fn endpoints(f: &dyn Fn(&str) -> String, list: Option<Vec<String>>, errs: &mut Errors) -> Option<Vec<Api>> {
    list.map(|l| {
        l.iter()
            .enumerate()
            .filter_map(|(j, e)| {
                let api = Api::parse(e);
                if api.is_none() {
                    errs.push(
                        format!("{}[{j}]", f("endpoints")),
                        format!("`{e}` is not one of chat, embeddings, batch"),
                    );
                }
                api
            })
            .collect()
    })
}

fn budget(f: &dyn Fn(&str) -> String, usd: Option<f64>, period: Option<&str>, errs: &mut Errors) -> Option<Budget> {
    let period = match period {
        None => BudgetPeriod::Month,
        Some(p) => BudgetPeriod::parse(p).unwrap_or_else(|| {
            errs.push(f("budget_period"), format!("`{p}` is not one of day, month, total"));
            BudgetPeriod::Month
        }),
    };
    match usd {
        None => None,
        Some(v) if !(v >= 0.0 && v.is_finite()) => {
            errs.push(f("budget_usd"), "must be a finite number >= 0");
            None
        }
        Some(usd) => Some(Budget { usd, period }),
    }
}

/// A guardrail's `action`: `block` (the default) or `flag`.
fn blocks(action: Option<&str>, field: &str, errs: &mut Errors) -> bool {
    match action {
        None | Some("block") => true,
        Some("flag") => false,
        Some(other) => {
            errs.push(field, format!("`{other}` is not block or flag"));
            true
        }
    }
}

fn max_priority(f: &dyn Fn(&str) -> String, v: Option<&str>, errs: &mut Errors) -> Priority {
    match v {
        None => Priority::High,
        Some(p) => Priority::parse(p).unwrap_or_else(|| {
            errs.push(f("max_priority"), format!("`{p}` is not one of high, normal, low"));
            Priority::High
        }),
    }
}

/// Turns the raw file into a checked [`Config`], or every error found.
pub fn validate(
    mut raw: RawConfig,
    pricing: RawPricing,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut errs = Errors(Vec::new());

    // [[guardrails]] (first: keys, teams and aliases refer to them)
    let mut guardrails = Vec::new();
    let mut guard_names = HashSet::new();
    for (i, g) in std::mem::take(&mut raw.guardrails).into_iter().enumerate() {
        let f = |name: &str| format!("guardrails[{i}].{name}");
        if g.name.is_empty() || !guard_names.insert(g.name.clone()) {
            errs.push(f("name"), format!("`{}` is empty or used twice", g.name));
        }
        let (on_request, on_response) = match g.direction.as_deref() {
            None | Some("both") => (true, true),
            Some("request") => (true, false),
            Some("response") => (false, true),
            Some(other) => {
                errs.push(f("direction"), format!("`{other}` is not request, response or both"));
                (true, true)
            }
        };
        const ENTITIES: &[&str] = &["email", "phone", "card", "iban", "ssn", "ip", "secret"];
        const ACTIONS: &[&str] = &["redact", "mask", "pseudonymize", "block", "log"];
        for (entity, action) in &g.pii {
            if !ENTITIES.contains(&entity.as_str()) {
                errs.push(
                    format!("{}.{entity}", f("pii")),
                    format!("unknown entity; expected one of {}", ENTITIES.join(", ")),
                );
            }
            if !ACTIONS.contains(&action.as_str()) {
                errs.push(format!("{}.{entity}", f("pii")), format!("`{action}` is not one of {}", ACTIONS.join(", ")));
            }
        }
        let mut custom = Vec::new();
        for (j, c) in g.custom.into_iter().enumerate() {
            let cf = |name: &str| format!("guardrails[{i}].custom[{j}].{name}");
            if c.name.is_empty() || !c.name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
                errs.push(cf("name"), "must be upper-case letters, digits and `_`");
            }
            if let Err(e) = regex::Regex::new(&c.regex) {
                errs.push(cf("regex"), format!("not a regular expression: {e}"));
            }
            if !ACTIONS.contains(&c.action.as_str()) {
                errs.push(cf("action"), format!("`{}` is not one of {}", c.action, ACTIONS.join(", ")));
            }
            custom.push(crate::CustomPattern { name: c.name, regex: c.regex, action: c.action });
        }
        let injection_classifier = g.injection.as_ref().and_then(|i| {
            let ask_above = i.ask_above.unwrap_or(0.2);
            if !(0.0..=1.0).contains(&ask_above) {
                errs.push(f("injection.ask_above"), format!("{ask_above} is not in [0, 1]"));
            }
            i.classifier.clone().map(|c| (c, ask_above))
        });
        let injection = g.injection.map(|i| {
            let threshold = i.threshold.unwrap_or(0.5);
            if !(threshold > 0.0 && threshold <= 1.0) {
                errs.push(f("injection.threshold"), format!("{threshold} is not in (0, 1]"));
            }
            let block = blocks(i.action.as_deref(), &f("injection.action"), &mut errs);
            (threshold, block)
        });
        let moderation = g.moderation.map(|m| {
            let threshold = m.threshold.unwrap_or(0.5);
            let in_range = |v: f64| v > 0.0 && v <= 1.0;
            if !in_range(threshold) {
                errs.push(f("moderation.threshold"), format!("{threshold} is not in (0, 1]"));
            }
            for (c, v) in m.thresholds.iter().map(|(c, v)| (c, *v)).chain(m.extra.keys().map(|c| (c, 0.5))) {
                if !crate::MODERATION_CATEGORIES.contains(&c.as_str()) {
                    errs.push(
                        format!("{}.{c}", f("moderation")),
                        format!("unknown category; expected one of {}", crate::MODERATION_CATEGORIES.join(", ")),
                    );
                }
                if !in_range(v) {
                    errs.push(format!("{}.{c}", f("moderation.thresholds")), format!("{v} is not in (0, 1]"));
                }
            }
            let block = blocks(m.action.as_deref(), &f("moderation.action"), &mut errs);
            let upstream = match (m.upstream_provider, m.upstream_model) {
                (None, None) => None,
                (Some(p), model) => Some((p, model.unwrap_or_else(|| "omni-moderation-latest".into()))),
                (None, Some(_)) => {
                    errs.push(f("moderation.upstream_model"), "needs `upstream_provider`");
                    None
                }
            };
            crate::ModerationCfg {
                threshold,
                thresholds: m.thresholds.into_iter().collect(),
                extra: m
                    .extra
                    .into_iter()
                    .map(|(c, phrases)| {
                        let phrases = phrases
                            .into_iter()
                            .map(|p| match p {
                                crate::raw::RawPhrase::Plain(t) => (t, 0.8),
                                crate::raw::RawPhrase::Weighted { phrase, severity } => {
                                    if !(severity > 0.0 && severity <= 1.0) {
                                        errs.push(
                                            format!("{}.{c}", f("moderation.extra")),
                                            format!("severity {severity} of `{phrase}` is not in (0, 1]"),
                                        );
                                    }
                                    (phrase, severity)
                                }
                            })
                            .collect();
                        (c, phrases)
                    })
                    .collect(),
                block,
                upstream,
            }
        });
        if g.pii.is_empty() && custom.is_empty() && injection.is_none() && moderation.is_none() {
            errs.push(f("pii"), "set at least one entity, custom pattern, `injection` or `moderation`");
        }
        guardrails.push(crate::Guardrail {
            name: g.name,
            on_request,
            on_response,
            pii: g.pii.into_iter().collect(),
            custom,
            injection,
            injection_classifier,
            moderation,
        });
    }
    let guard_refs = |field: &str, list: &[String], errs: &mut Errors| {
        for (j, n) in list.iter().enumerate() {
            if !guard_names.contains(n) {
                errs.push(format!("{field}[{j}]"), format!("no guardrail `{n}`"));
            }
        }
    };

    // [server]
    let s = raw.server;
    let http_addr = s.http_addr.unwrap_or_else(|| "127.0.0.1:8080".into());
    if http_addr.parse::<std::net::SocketAddr>().is_err() {
        errs.push("server.http_addr", format!("`{http_addr}` is not an address like 127.0.0.1:8080"));
    }
    let body_limit_bytes = s.body_limit_bytes.unwrap_or(1 << 20);
    if body_limit_bytes < 1024 {
        errs.push("server.body_limit_bytes", "must be at least 1024");
    }
    if s.workers.is_some_and(|w| !(1..=512).contains(&w)) {
        errs.push("server.workers", "must be between 1 and 512");
    }
    let admin_key_sha256 = s.admin_key.as_deref().map(|k| {
        let k = interpolate("server.admin_key", k, env, &mut errs);
        if k.len() < 8 {
            errs.push("server.admin_key", "must be at least 8 characters");
        }
        hash_key(&k)
    });
    let ledger_batch_max = s.ledger_batch_max.unwrap_or(1024);
    if ledger_batch_max == 0 {
        errs.push("server.ledger_batch_max", "must be at least 1");
    }
    let server = Server {
        http_addr,
        data_dir: PathBuf::from(interpolate(
            "server.data_dir",
            s.data_dir.as_deref().unwrap_or("./data"),
            env,
            &mut errs,
        )),
        body_limit_bytes,
        workers: s.workers,
        admin_key_sha256,
        ledger_flush: positive_ms("server.ledger_flush_ms", s.ledger_flush_ms, 50, &mut errs),
        ledger_batch_max,
        ledger_sync: match s.ledger_durability.as_deref() {
            None | Some("batched") => false,
            Some("sync") => true,
            Some(other) => {
                errs.push("server.ledger_durability", format!("`{other}` is not one of batched, sync"));
                false
            }
        },
        routing_seed: s.routing_seed,
        max_messages: at_least_one("server.max_messages", s.max_messages, 1000, &mut errs),
        max_json_depth: at_least_one("server.max_json_depth", s.max_json_depth, 32, &mut errs),
    };

    // [nats]
    let nats = raw.nats.map(|n| {
        let url = interpolate("nats.url", &n.url, env, &mut errs);
        if !(url.starts_with("nats://") || url.starts_with("tls://") || url.starts_with("ws")) {
            errs.push("nats.url", format!("`{url}` is not a nats:// URL"));
        }
        let prefix = n.prefix.unwrap_or_else(|| "switchyard".into());
        if prefix.is_empty() || prefix.contains([' ', '*', '>']) {
            errs.push("nats.prefix", "must be a non-empty subject token without spaces or wildcards");
        }
        let f = |name: &str| format!("nats.{name}");
        let secret = |name: &str, v: Option<String>, errs: &mut Errors| v.map(|v| interpolate(&f(name), &v, env, errs));
        let token = secret("token", n.token, &mut errs);
        let user = secret("user", n.user, &mut errs);
        let password = secret("password", n.password, &mut errs);
        let user_password = match (user, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => {
                errs.push("nats.user", "`user` and `password` go together");
                None
            }
        };
        let credentials_file = secret("credentials_file", n.credentials_file, &mut errs).map(PathBuf::from);
        if [token.is_some(), user_password.is_some(), credentials_file.is_some()].iter().filter(|b| **b).count() > 1 {
            errs.push("nats", "use one of `token`, `user`/`password` or `credentials_file`");
        }
        let job_concurrency = n.job_concurrency.unwrap_or(32);
        if job_concurrency == 0 {
            errs.push(f("job_concurrency"), "must be at least 1");
        }
        let max_attempts = n.max_attempts.unwrap_or(5);
        if max_attempts == 0 {
            errs.push(f("max_attempts"), "must be at least 1");
        }
        let retry_backoff = positive_ms(&f("retry_backoff_ms"), n.retry_backoff_ms, 1_000, &mut errs);
        let retry_backoff_max = positive_ms(&f("retry_backoff_max_ms"), n.retry_backoff_max_ms, 60_000, &mut errs);
        let secs = |name: &str, v: Option<u64>, default: u64, errs: &mut Errors| {
            positive_ms(&f(name), v.map(|s| s.saturating_mul(1000)), default * 1000, errs)
        };
        let ack_wait = secs("ack_wait_secs", n.ack_wait_secs, 30, &mut errs);
        let replicas = n.replicas.unwrap_or(1);
        if !(1..=5).contains(&replicas) {
            errs.push(f("replicas"), "must be between 1 and 5");
        }
        Nats {
            url,
            prefix,
            name: n.name.unwrap_or_else(|| "switchyard".into()),
            credentials_file,
            token,
            user_password,
            request_reply: n.request_reply.unwrap_or(true),
            jobs: n.jobs.unwrap_or(true),
            job_concurrency,
            max_attempts,
            retry_backoff,
            retry_backoff_max,
            ack_wait,
            aging: positive_ms(&f("aging_ms"), n.aging_ms, 30_000, &mut errs),
            jobs_max_messages: n.jobs_max_messages.unwrap_or(-1),
            jobs_max_bytes: n.jobs_max_bytes.unwrap_or(-1),
            results_max_age: secs("results_max_age_secs", n.results_max_age_secs, 7 * 86_400, &mut errs),
            usage_max_age: secs("usage_max_age_secs", n.usage_max_age_secs, 30 * 86_400, &mut errs),
            duplicate_window: secs("duplicate_window_secs", n.duplicate_window_secs, 600, &mut errs),
            embed_batch_max_inputs: match n.embed_batch_max_inputs.unwrap_or(64) {
                0 => {
                    errs.push(f("embed_batch_max_inputs"), "must be at least 1 (1 turns batching off)");
                    1
                }
                v => v,
            },
            embed_batch_window: Duration::from_millis(n.embed_batch_window_ms.unwrap_or(5)),
            replicas,
            files_max_bytes: at_least_one(&f("files_max_bytes"), n.files_max_bytes, 100 << 20, &mut errs),
            batch_max_requests: at_least_one(&f("batch_max_requests"), n.batch_max_requests, 50_000, &mut errs),
            shared_limits: n.shared_limits.unwrap_or(true),
        }
    });

    // [[providers]]
    let mut providers = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in raw.providers.into_iter().enumerate() {
        let f = |name: &str| format!("providers[{i}].{name}");
        if p.name.is_empty() {
            errs.push(f("name"), "must not be empty");
        } else if !names.insert(p.name.clone()) {
            errs.push(f("name"), format!("duplicate provider `{}`", p.name));
        }
        let kind = ProviderKind::ALL.iter().find(|(n, _)| *n == p.kind).map(|(_, k)| *k);
        let Some(kind) = kind else {
            let known: Vec<&str> = ProviderKind::ALL.iter().map(|(n, _)| *n).collect();
            errs.push(f("kind"), format!("unknown kind `{}`; expected one of {}", p.kind, known.join(", ")));
            continue;
        };
        let mut base_url = match (kind, p.base_url.as_deref()) {
            (ProviderKind::OpenAi, None) => "https://api.openai.com/v1".to_string(),
            (ProviderKind::Anthropic, None) => "https://api.anthropic.com/v1".to_string(),
            (ProviderKind::Ollama, None) => "http://127.0.0.1:11434".to_string(),
            (ProviderKind::Gemini, None) => "https://generativelanguage.googleapis.com/v1beta".to_string(),
            // set from the region below
            (ProviderKind::Bedrock, None) => String::new(),
            (ProviderKind::Mock, None) => "mock://".to_string(),
            (ProviderKind::OpenAiCompatible | ProviderKind::Azure, None) => {
                errs.push(f("base_url"), format!("required for kind `{}`", kind.as_str()));
                String::new()
            }
            (_, Some(u)) => {
                let u = interpolate(&f("base_url"), u, env, &mut errs);
                if kind != ProviderKind::Mock && !(u.starts_with("http://") || u.starts_with("https://")) {
                    errs.push(f("base_url"), format!("`{u}` is not an http(s) URL"));
                }
                u.trim_end_matches('/').to_string()
            }
        };
        let api_key = p.api_key.as_deref().map(|k| interpolate(&f("api_key"), k, env, &mut errs));
        let api_version = match (kind, p.api_version) {
            (ProviderKind::Azure, None) => "2024-10-21".to_string(),
            (ProviderKind::Azure, Some(v))
                if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                v
            }
            (ProviderKind::Azure, Some(v)) => {
                errs.push(f("api_version"), format!("`{v}` is not an api-version such as 2024-10-21"));
                v
            }
            (_, Some(_)) => {
                errs.push(f("api_version"), "only for kind `azure`");
                String::new()
            }
            (_, None) => String::new(),
        };
        let secret_field =
            |name: &str, v: Option<String>, errs: &mut Errors| v.map(|v| interpolate(&f(name), &v, env, errs));
        let aws = if kind == ProviderKind::Bedrock {
            let region = secret_field("region", p.region.clone(), &mut errs).unwrap_or_default();
            if region.is_empty() || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                errs.push(f("region"), "required for kind `bedrock` (e.g. `us-east-1`)");
            }
            let access_key_id = secret_field("aws_access_key_id", p.aws_access_key_id, &mut errs);
            let secret_access_key = secret_field("aws_secret_access_key", p.aws_secret_access_key, &mut errs);
            if access_key_id.is_some() != secret_access_key.is_some() {
                errs.push(f("aws_access_key_id"), "`aws_access_key_id` and `aws_secret_access_key` go together");
            }
            let session_token = secret_field("aws_session_token", p.aws_session_token, &mut errs);
            if base_url.is_empty() {
                base_url = format!("https://bedrock-runtime.{region}.amazonaws.com");
            }
            Some(AwsAuth { region, access_key_id, secret_access_key, session_token })
        } else {
            for (name, set) in [
                ("region", p.region.is_some()),
                ("aws_access_key_id", p.aws_access_key_id.is_some()),
                ("aws_secret_access_key", p.aws_secret_access_key.is_some()),
                ("aws_session_token", p.aws_session_token.is_some()),
            ] {
                if set {
                    errs.push(f(name), "only for kind `bedrock`");
                }
            }
            None
        };
        let concurrency = p.concurrency.unwrap_or(64);
        if concurrency == 0 {
            errs.push(f("concurrency"), "must be at least 1");
        }
        let mut headers = Vec::new();
        for (k, v) in p.headers {
            let v = interpolate(&f(&format!("headers.{k}")), &v, env, &mut errs);
            headers.push((k.to_ascii_lowercase(), v));
        }
        providers.push(Provider {
            name: p.name,
            kind,
            base_url,
            api_key,
            concurrency,
            queue_size: p.queue_size.unwrap_or(1024),
            connect_timeout: positive_ms(&f("connect_timeout_ms"), p.connect_timeout_ms, 5_000, &mut errs),
            first_byte_timeout: positive_ms(&f("first_byte_timeout_ms"), p.first_byte_timeout_ms, 60_000, &mut errs),
            timeout: positive_ms(&f("timeout_ms"), p.timeout_ms, 600_000, &mut errs),
            max_retries: p.max_retries.unwrap_or(0),
            forward_headers: p.forward_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            headers,
            jobs_share: match p.jobs_share {
                None => 0.5,
                Some(v) if v > 0.0 && v <= 1.0 => v,
                Some(v) => {
                    errs.push(f("jobs_share"), format!("{v} is not in (0, 1]"));
                    0.5
                }
            },
            mock_latency: Duration::from_millis(p.mock_latency_ms.unwrap_or(0)),
            api_version,
            aws,
            breaker_failures: p.breaker_failures.unwrap_or(5),
            breaker_cooldown: positive_ms(&f("breaker_cooldown_ms"), p.breaker_cooldown_ms, 30_000, &mut errs),
            breaker_error_ratio: match p.breaker_error_ratio {
                Some(r) if !(r > 0.0 && r <= 1.0) => {
                    errs.push(f("breaker_error_ratio"), format!("{r} is not in (0, 1]"));
                    None
                }
                r => r,
            },
            breaker_min_requests: match p.breaker_min_requests {
                Some(0) => {
                    errs.push(f("breaker_min_requests"), "must be at least 1");
                    1
                }
                n => n.unwrap_or(20),
            },
            breaker_window: positive_ms(&f("breaker_window_ms"), p.breaker_window_ms, 10_000, &mut errs),
            health_check: match (p.health_check_interval_ms, p.health_check_path) {
                (None, None) => None,
                (None, Some(_)) => {
                    errs.push(f("health_check_path"), "needs `health_check_interval_ms`");
                    None
                }
                (Some(ms), path) => {
                    let path = path.unwrap_or_else(|| "/models".into());
                    if !path.starts_with('/') {
                        errs.push(f("health_check_path"), "must start with `/`");
                    }
                    if kind == ProviderKind::Mock {
                        errs.push(f("health_check_interval_ms"), "a `mock` provider has nothing to check");
                    }
                    Some(crate::HealthCheck {
                        interval: positive_ms(&f("health_check_interval_ms"), Some(ms), 0, &mut errs),
                        path,
                    })
                }
            },
        });
    }

    for (i, g) in guardrails.iter().enumerate() {
        if let Some((alias, _)) = &g.injection_classifier {
            if !raw.models.iter().any(|m| &m.alias == alias) {
                errs.push(format!("guardrails[{i}].injection.classifier"), format!("no model alias `{alias}`"));
            }
        }
        if let Some((p, _)) = g.moderation.as_ref().and_then(|m| m.upstream.as_ref()) {
            if !names.contains(p) {
                errs.push(format!("guardrails[{i}].moderation.upstream_provider"), format!("no provider named `{p}`"));
            }
        }
    }

    // [[models]]
    let mut models = Vec::new();
    let mut aliases = HashSet::new();
    for (i, m) in raw.models.into_iter().enumerate() {
        let f = |name: &str| format!("models[{i}].{name}");
        if m.alias.is_empty() || m.alias == "*" {
            errs.push(f("alias"), "must be a non-empty name other than `*`");
        } else if !aliases.insert(m.alias.clone()) {
            errs.push(f("alias"), format!("duplicate alias `{}`", m.alias));
        }
        let strategy = match m.strategy.as_deref() {
            None | Some("weighted") => Strategy::Weighted,
            Some("failover") => Strategy::Failover,
            Some("cost") => Strategy::Cost,
            Some("latency") => Strategy::Latency,
            Some(other) => {
                errs.push(
                    f("strategy"),
                    format!("unknown strategy `{other}`; expected `weighted`, `latency`, `failover` or `cost`"),
                );
                Strategy::Weighted
            }
        };
        let sticky_user = match m.sticky.as_deref() {
            None => false,
            Some("user") if strategy == Strategy::Weighted => true,
            Some("user") => {
                errs.push(f("sticky"), "only a `weighted` alias can be sticky");
                false
            }
            Some(other) => {
                errs.push(f("sticky"), format!("`{other}` is not `user`"));
                false
            }
        };
        if m.targets.is_empty() {
            errs.push(f("targets"), "needs at least one target");
        }
        let mut targets = Vec::new();
        for (j, t) in m.targets.into_iter().enumerate() {
            if !names.contains(&t.provider) {
                errs.push(format!("models[{i}].targets[{j}].provider"), format!("no provider named `{}`", t.provider));
            }
            if t.model.is_empty() {
                errs.push(format!("models[{i}].targets[{j}].model"), "must not be empty");
            }
            let tf = |name: &str| format!("models[{i}].targets[{j}].{name}");
            if t.max_concurrency == Some(0) {
                errs.push(tf("max_concurrency"), "must be at least 1 (omit it for no limit)");
            }
            for (name, v) in [("input_per_mtok", t.input_per_mtok), ("output_per_mtok", t.output_per_mtok)] {
                if v.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
                    errs.push(tf(name), "must be a finite number >= 0");
                }
            }
            targets.push(Target {
                provider: t.provider,
                model: t.model,
                weight: t.weight.unwrap_or(1),
                max_concurrency: t.max_concurrency,
                input_per_mtok: t.input_per_mtok,
                output_per_mtok: t.output_per_mtok,
            });
        }
        if !targets.is_empty() && targets.iter().all(|t| t.weight == 0) {
            errs.push(f("targets"), "at least one target needs a weight above 0");
        }
        for (name, v) in [("input_per_mtok", m.input_per_mtok), ("output_per_mtok", m.output_per_mtok)] {
            if v.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
                errs.push(f(name), "must be a finite number >= 0");
            }
        }
        models.push(Model {
            strategy,
            fallbacks: m.fallbacks.clone(),
            alias: m.alias,
            targets,
            input_per_mtok: m.input_per_mtok,
            output_per_mtok: m.output_per_mtok,
            sticky_user,
            limits: limits(&f, m.rpm, m.tpm, m.tpd, m.max_concurrent, &mut errs),
            guardrails: {
                guard_refs(&f("guardrails"), &m.guardrails, &mut errs);
                m.guardrails
            },
        });
    }

    for (i, m) in models.iter().enumerate() {
        for (j, fb) in m.fallbacks.iter().enumerate() {
            if fb == &m.alias {
                errs.push(format!("models[{i}].fallbacks[{j}]"), "an alias cannot fall back to itself");
            } else if !models.iter().any(|o| &o.alias == fb) {
                errs.push(format!("models[{i}].fallbacks[{j}]"), format!("no model alias `{fb}`"));
            }
        }
    }

    // [[teams]]
    let mut teams = Vec::new();
    let mut team_ids = HashSet::new();
    for (i, t) in raw.teams.into_iter().enumerate() {
        let f = |name: &str| format!("teams[{i}].{name}");
        if t.id.is_empty() {
            errs.push(f("id"), "must not be empty");
        } else if !team_ids.insert(t.id.clone()) {
            errs.push(f("id"), format!("duplicate team id `{}`", t.id));
        }
        let models = match t.models {
            Some(list) if !list.iter().any(|m| m == "*") => {
                for (j, m) in list.iter().enumerate() {
                    if !aliases.contains(m) {
                        errs.push(format!("teams[{i}].models[{j}]"), format!("no model alias `{m}`"));
                    }
                }
                Some(list)
            }
            _ => None,
        };
        if t.max_tokens == Some(0) {
            errs.push(f("max_tokens"), "must be at least 1 (omit it for no limit)");
        }
        teams.push(Team {
            id: t.id,
            models,
            endpoints: endpoints(&f, t.endpoints, &mut errs),
            max_tokens: t.max_tokens,
            max_priority: max_priority(&f, t.max_priority.as_deref(), &mut errs),
            limits: limits(&f, t.rpm, t.tpm, t.tpd, t.max_concurrent, &mut errs),
            budget: budget(&f, t.budget_usd, t.budget_period.as_deref(), &mut errs),
            guardrails: {
                guard_refs(&f("guardrails"), &t.guardrails, &mut errs);
                t.guardrails
            },
        });
    }

    // [[keys]]
    let mut keys = Vec::new();
    let mut ids = HashSet::new();
    let mut hashes = HashSet::new();
    for (i, k) in raw.keys.into_iter().enumerate() {
        let f = |name: &str| format!("keys[{i}].{name}");
        if k.id.is_empty() {
            errs.push(f("id"), "must not be empty");
        } else if !ids.insert(k.id.clone()) {
            errs.push(f("id"), format!("duplicate key id `{}`", k.id));
        }
        let key_sha256 = match (k.key.as_deref(), k.key_sha256.as_deref()) {
            (Some(secret), None) => {
                let secret = interpolate(&f("key"), secret, env, &mut errs);
                if secret.len() < 8 {
                    errs.push(f("key"), "must be at least 8 characters");
                }
                hash_key(&secret)
            }
            (None, Some(h)) => {
                let h = h.to_ascii_lowercase();
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    errs.push(f("key_sha256"), "must be 64 hex characters");
                }
                h
            }
            _ => {
                errs.push(f("key"), "set exactly one of `key` and `key_sha256`");
                String::new()
            }
        };
        if !key_sha256.is_empty() && !hashes.insert(key_sha256.clone()) {
            errs.push(f("key"), "the same secret is used by another key");
        }
        if let Some(team) = &k.team {
            if !team_ids.contains(team) {
                errs.push(f("team"), format!("no team `{team}`"));
            }
        }
        // a key of a team that lists no models may use what the team allows
        let models_allowed = if k.models.iter().any(|m| m == "*") || (k.models.is_empty() && k.team.is_some()) {
            None
        } else {
            for (j, m) in k.models.iter().enumerate() {
                if !aliases.contains(m) {
                    errs.push(format!("keys[{i}].models[{j}]"), format!("no model alias `{m}`"));
                }
            }
            Some(k.models)
        };
        let mut priority = |name: &str, v: Option<&str>, default: Priority| match v {
            None => default,
            Some(p) => Priority::parse(p).unwrap_or_else(|| {
                errs.push(f(name), format!("`{p}` is not one of high, normal, low"));
                default
            }),
        };
        let batch_priority = priority("batch_priority", k.batch_priority.as_deref(), Priority::Low);
        let priority = priority("priority", k.priority.as_deref(), Priority::Normal);
        let expires_at_ms = k.expires_at.as_deref().and_then(|t| match humantime::parse_rfc3339_weak(t) {
            Ok(at) => at.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis() as u64),
            Err(e) => {
                errs.push(f("expires_at"), format!("`{t}` is not an RFC 3339 time like 2027-01-31T00:00:00Z: {e}"));
                None
            }
        });
        if k.max_tokens == Some(0) {
            errs.push(f("max_tokens"), "must be at least 1 (omit it for no limit)");
        }
        keys.push(Key {
            id: k.id,
            key_sha256,
            models: models_allowed,
            limits: limits(&f, k.rpm, k.tpm, k.tpd, k.max_concurrent, &mut errs),
            priority,
            batch_priority,
            team: k.team,
            endpoints: endpoints(&f, k.endpoints, &mut errs),
            max_tokens: k.max_tokens,
            max_priority: max_priority(&f, k.max_priority.as_deref(), &mut errs),
            budget: budget(&f, k.budget_usd, k.budget_period.as_deref(), &mut errs),
            expires_at_ms,
            guardrails: {
                guard_refs(&f("guardrails"), &k.guardrails, &mut errs);
                k.guardrails
            },
        });
    }

    // [[routes]]
    let mut routes = Vec::new();
    let mut route_names = HashSet::new();
    for (i, r) in raw.routes.into_iter().enumerate() {
        let f = |name: &str| format!("routes[{i}].{name}");
        if r.name.is_empty() {
            errs.push(f("name"), "must not be empty");
        } else if !route_names.insert(r.name.clone()) {
            errs.push(f("name"), format!("duplicate route name `{}`", r.name));
        }
        if !aliases.contains(&r.alias) {
            errs.push(f("alias"), format!("no model alias `{}`", r.alias));
        }
        for (j, k) in r.keys.iter().enumerate() {
            if !ids.contains(k) {
                errs.push(format!("routes[{i}].keys[{j}]"), format!("no key with id `{k}`"));
            }
        }
        let mut regex = |field: &str, pattern: &str| match regex::Regex::new(pattern) {
            Ok(re) => Some(re),
            Err(e) => {
                errs.push(f(field), format!("not a regular expression: {e}"));
                None
            }
        };
        let headers = r
            .headers
            .iter()
            .filter_map(|(name, pattern)| {
                regex(&format!("headers.{name}"), pattern).map(|re| (name.to_ascii_lowercase(), re))
            })
            .collect();
        let content = r.regex.as_deref().and_then(|p| regex("regex", p));
        let keywords = if r.keywords.is_empty() {
            None
        } else if r.keywords.iter().any(String::is_empty) {
            errs.push(f("keywords"), "must not contain an empty keyword");
            None
        } else {
            match aho_corasick::AhoCorasick::builder().ascii_case_insensitive(true).build(&r.keywords) {
                Ok(ac) => Some(ac),
                Err(e) => {
                    errs.push(f("keywords"), e.to_string());
                    None
                }
            }
        };
        if let (Some(lo), Some(hi)) = (r.min_prompt_tokens, r.max_prompt_tokens) {
            if lo > hi {
                errs.push(f("min_prompt_tokens"), format!("{lo} is above max_prompt_tokens {hi}"));
            }
        }
        routes.push(crate::Route {
            name: r.name,
            alias: r.alias,
            models: r.models,
            headers,
            keys: r.keys,
            users: r.users,
            has_tools: r.has_tools,
            has_images: r.has_images,
            min_prompt_tokens: r.min_prompt_tokens,
            max_prompt_tokens: r.max_prompt_tokens,
            regex: content,
            keywords,
        });
    }

    // [jwt]
    let jwt = raw.jwt.map(|j| {
        let hs256_secret = j.hs256_secret.as_deref().map(|v| interpolate("jwt.hs256_secret", v, env, &mut errs));
        if hs256_secret.as_ref().is_some_and(|s| s.len() < 32) {
            errs.push("jwt.hs256_secret", "must be at least 32 bytes");
        }
        let jwks_url = j.jwks_url.as_deref().map(|v| interpolate("jwt.jwks_url", v, env, &mut errs));
        if jwks_url.as_ref().is_some_and(|u| !(u.starts_with("https://") || u.starts_with("http://"))) {
            errs.push("jwt.jwks_url", "must be an http(s) URL");
        }
        if hs256_secret.is_none() && j.jwks_file.is_none() && jwks_url.is_none() {
            errs.push("jwt", "set `hs256_secret`, `jwks_file` or `jwks_url`");
        }
        crate::Jwt {
            issuer: j.issuer,
            audience: j.audience,
            hs256_secret,
            jwks_file: j.jwks_file.map(PathBuf::from),
            jwks_url,
            jwks_refresh: Duration::from_secs(j.jwks_refresh_secs.unwrap_or(600).max(1)),
            team_claim: j.team_claim.unwrap_or_else(|| "team".into()),
            subject_claim: j.subject_claim.unwrap_or_else(|| "sub".into()),
            leeway_secs: j.leeway_secs.unwrap_or(30),
        }
    });

    // [cache]
    let cache = Cache {
        enabled: raw.cache.enabled.unwrap_or(false),
        ttl: Duration::from_secs(raw.cache.ttl_secs.unwrap_or(600)),
        max_bytes: raw.cache.max_bytes.unwrap_or(256 << 20),
    };
    if raw.cache.ttl_secs == Some(0) {
        errs.push("cache.ttl_secs", "must be at least 1");
    }

    // pricing
    let mut prices = HashMap::new();
    for (name, p) in pricing.models {
        let f = |field: &str| format!("pricing.models.\"{name}\".{field}");
        for (field, v) in [
            ("input_per_mtok", Some(p.input_per_mtok)),
            ("output_per_mtok", Some(p.output_per_mtok)),
            ("cached_input_per_mtok", p.cached_input_per_mtok),
        ] {
            if v.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
                errs.push(f(field), "must be a finite number >= 0");
            }
        }
        prices.insert(
            name,
            Price {
                input_per_mtok: p.input_per_mtok,
                output_per_mtok: p.output_per_mtok,
                cached_input_per_mtok: p.cached_input_per_mtok.unwrap_or(p.input_per_mtok),
            },
        );
    }

    if !errs.0.is_empty() {
        return Err(ConfigErrors(errs.0));
    }
    Ok(Config {
        server,
        nats,
        providers,
        models,
        keys,
        cache,
        pricing: Pricing { models: prices },
        routes,
        teams,
        jwt,
        guardrails,
    })
}

#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) fn errors() -> super::Errors {
        super::Errors(Vec::new())
    }
    pub(crate) fn interp(field: &str, v: &str, errs: &mut super::Errors) -> String {
        super::interpolate(field, v, &|_| None, errs)
    }
}
