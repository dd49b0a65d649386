//! `[server]`, `[nats]`, `[cache]` and the pricing file.

use super::*;

pub(super) fn server(s: RawServer, env: &dyn Fn(&str) -> Option<String>, errs: &mut Errors) -> Server {
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
        let k = interpolate("server.admin_key", k, env, errs);
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
        data_dir: PathBuf::from(interpolate("server.data_dir", s.data_dir.as_deref().unwrap_or("./data"), env, errs)),
        body_limit_bytes,
        workers: s.workers,
        admin_key_sha256,
        console: s.console.unwrap_or(true),
        console_session: Duration::from_secs(s.console_session_secs.unwrap_or(8 * 3600).max(60)),
        ledger_flush: positive_ms("server.ledger_flush_ms", s.ledger_flush_ms, 50, errs),
        ledger_batch_max,
        ledger_sync: match s.ledger_durability.as_deref() {
            None | Some("batched") => false,
            Some("sync") => true,
            Some(other) => {
                errs.push("server.ledger_durability", format!("`{other}` is not one of batched, sync"));
                false
            }
        },
        access_log: s.access_log.unwrap_or(false),
        routing_seed: s.routing_seed,
        max_messages: at_least_one("server.max_messages", s.max_messages, 1000, errs),
        max_json_depth: at_least_one("server.max_json_depth", s.max_json_depth, 32, errs),
        prompt_render_fuel: at_least_one(
            "server.prompt_render_fuel",
            s.prompt_render_fuel.map(|n| n as usize),
            200_000,
            errs,
        ) as u64,
        prompt_max_rendered_bytes: at_least_one(
            "server.prompt_max_rendered_bytes",
            s.prompt_max_rendered_bytes,
            1 << 20,
            errs,
        ),
        // OpenAI's own limits: 2,048 inputs an embeddings request; the largest model
        // answers 3,072 dimensions (4,096 leaves room for others)
        body_timeout: positive_ms("server.body_timeout_ms", s.body_timeout_ms, 30_000, errs),
        max_inputs: at_least_one("server.max_inputs", s.max_inputs, 2048, errs),
        max_dimensions: at_least_one("server.max_dimensions", s.max_dimensions.map(|d| d as usize), 4096, errs) as u32,
        // OpenAI keeps stored responses 30 days
        responses_ttl: match s.responses_ttl_secs.unwrap_or(30 * 86_400) {
            0 => None,
            secs => Some(std::time::Duration::from_secs(secs)),
        },
        responses_max_bytes: at_least_one("server.responses_max_bytes", s.responses_max_bytes, 8 << 20, errs),
        store_cache_bytes: s.store_cache_bytes.unwrap_or(16 << 20).max(1 << 20),
    };
    server
}

pub(super) fn nats(raw: Option<RawNats>, env: &dyn Fn(&str) -> Option<String>, errs: &mut Errors) -> Option<Nats> {
    let nats = raw.map(|n| {
        let url = interpolate("nats.url", &n.url, env, errs);
        // several servers of a cluster, comma-separated: the client picks one and
        // moves to another when it is lost
        for one in url.split(',').map(str::trim) {
            if !(one.starts_with("nats://") || one.starts_with("tls://") || one.starts_with("ws")) {
                errs.push("nats.url", format!("`{one}` is not a nats:// URL"));
            }
        }
        let prefix = n.prefix.unwrap_or_else(|| "switchyard".into());
        if prefix.is_empty() || prefix.contains([' ', '*', '>']) {
            errs.push("nats.prefix", "must be a non-empty subject token without spaces or wildcards");
        }
        let f = |name: &str| format!("nats.{name}");
        let secret = |name: &str, v: Option<String>, errs: &mut Errors| v.map(|v| interpolate(&f(name), &v, env, errs));
        let token = secret("token", n.token, errs);
        let user = secret("user", n.user, errs);
        let password = secret("password", n.password, errs);
        let user_password = match (user, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => {
                errs.push("nats.user", "`user` and `password` go together");
                None
            }
        };
        let credentials_file = secret("credentials_file", n.credentials_file, errs).map(PathBuf::from);
        let nkey_seed = secret("nkey_seed", n.nkey_seed, errs);
        if nkey_seed.as_ref().is_some_and(|s| !s.starts_with("SU")) {
            errs.push(f("nkey_seed"), "must be a user seed (it starts with `SU`)");
        }
        let ways = [token.is_some(), user_password.is_some(), credentials_file.is_some(), nkey_seed.is_some()];
        if ways.iter().filter(|b| **b).count() > 1 {
            errs.push("nats", "use one of `token`, `user`/`password`, `nkey_seed` or `credentials_file`");
        }
        let tls_ca_file = secret("tls_ca_file", n.tls_ca_file, errs).map(PathBuf::from);
        let tls_client = match (n.tls_cert_file, n.tls_key_file) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            _ => {
                errs.push(f("tls_cert_file"), "`tls_cert_file` and `tls_key_file` go together");
                None
            }
        };
        let tls_required = n.tls_required.unwrap_or(
            tls_ca_file.is_some() || tls_client.is_some() || url.split(',').any(|u| u.trim().starts_with("tls://")),
        );
        let job_concurrency = n.job_concurrency.unwrap_or(32);
        if job_concurrency == 0 {
            errs.push(f("job_concurrency"), "must be at least 1");
        }
        let max_attempts = n.max_attempts.unwrap_or(5);
        if max_attempts == 0 {
            errs.push(f("max_attempts"), "must be at least 1");
        }
        let retry_backoff = positive_ms(&f("retry_backoff_ms"), n.retry_backoff_ms, 1_000, errs);
        let retry_backoff_max = positive_ms(&f("retry_backoff_max_ms"), n.retry_backoff_max_ms, 60_000, errs);
        let secs = |name: &str, v: Option<u64>, default: u64, errs: &mut Errors| {
            positive_ms(&f(name), v.map(|s| s.saturating_mul(1000)), default * 1000, errs)
        };
        let ack_wait = secs("ack_wait_secs", n.ack_wait_secs, 30, errs);
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
            nkey_seed,
            tls_ca_file,
            tls_client,
            tls_required,
            request_reply: n.request_reply.unwrap_or(true),
            jobs: n.jobs.unwrap_or(true),
            job_concurrency,
            max_attempts,
            retry_backoff,
            retry_backoff_max,
            ack_wait,
            aging: positive_ms(&f("aging_ms"), n.aging_ms, 30_000, errs),
            jobs_max_messages: n.jobs_max_messages.unwrap_or(-1),
            jobs_max_bytes: n.jobs_max_bytes.unwrap_or(-1),
            results_max_age: secs("results_max_age_secs", n.results_max_age_secs, 7 * 86_400, errs),
            usage_max_age: secs("usage_max_age_secs", n.usage_max_age_secs, 30 * 86_400, errs),
            duplicate_window: secs("duplicate_window_secs", n.duplicate_window_secs, 600, errs),
            embed_batch_max_inputs: match n.embed_batch_max_inputs.unwrap_or(64) {
                0 => {
                    errs.push(f("embed_batch_max_inputs"), "must be at least 1 (1 turns batching off)");
                    1
                }
                v => v,
            },
            embed_batch_window: Duration::from_millis(n.embed_batch_window_ms.unwrap_or(5)),
            replicas,
            request_logs_max_age: secs("request_logs_max_age_secs", n.request_logs_max_age_secs, 7 * 86_400, errs),
            request_logs_max_bytes: match n.request_logs_max_bytes.unwrap_or(1 << 30) {
                b if b < 1 << 20 => {
                    errs.push(f("request_logs_max_bytes"), "must be at least 1048576 (1 MiB)");
                    1 << 20
                }
                b => b,
            },
            request_logs_max_field_bytes: at_least_one(
                &f("request_logs_max_field_bytes"),
                n.request_logs_max_field_bytes,
                256 << 10,
                errs,
            ),
            files_max_bytes: at_least_one(&f("files_max_bytes"), n.files_max_bytes, 100 << 20, errs),
            batch_max_requests: at_least_one(&f("batch_max_requests"), n.batch_max_requests, 50_000, errs),
            shared_limits: n.shared_limits.unwrap_or(true),
            shared_limits_strict: match n.shared_limits_unavailable.as_deref() {
                None | Some("local") => false,
                Some("refuse") => true,
                Some(other) => {
                    errs.push(f("shared_limits_unavailable"), format!("`{other}` is not one of local, refuse"));
                    false
                }
            },
        }
    });
    nats
}

pub(super) fn cache(raw: &RawCache, errs: &mut Errors) -> Cache {
    let cache = Cache {
        enabled: raw.enabled.unwrap_or(false),
        ttl: Duration::from_secs(raw.ttl_secs.unwrap_or(600)),
        max_bytes: raw.max_bytes.unwrap_or(256 << 20),
        semantic: None,
    };
    if raw.ttl_secs == Some(0) {
        errs.push("cache.ttl_secs", "must be at least 1");
    }
    cache
}

pub(super) fn pricing(pricing: RawPricing, errs: &mut Errors) -> HashMap<String, Price> {
    let mut prices = HashMap::new();
    for (name, p) in pricing.models {
        let f = |field: &str| format!("pricing.models.\"{name}\".{field}");
        for (field, v) in [
            ("input_per_mtok", Some(p.input_per_mtok)),
            ("output_per_mtok", Some(p.output_per_mtok)),
            ("cached_input_per_mtok", p.cached_input_per_mtok),
            ("cache_write_input_per_mtok", p.cache_write_input_per_mtok),
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
                cache_write_input_per_mtok: p.cache_write_input_per_mtok.unwrap_or(p.input_per_mtok),
            },
        );
    }
    prices
}
