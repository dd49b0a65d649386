//! `[[providers]]` and `[[models]]`, and what guardrails ask of them.

use super::*;

pub(super) fn providers(
    raw: Vec<RawProvider>,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Errors,
) -> (Vec<Provider>, HashSet<String>) {
    let mut providers = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in raw.into_iter().enumerate() {
        let f = |name: &str| format!("providers[{i}].{name}");
        if p.name.is_empty() {
            errs.push(f("name"), "must not be empty");
        } else if !names.insert(p.name.clone()) {
            errs.push(f("name"), format!("duplicate provider `{}`", p.name));
        }
        let Some(kind) = ProviderKind::parse(&p.kind) else {
            let known: Vec<&str> = ProviderKind::KINDS.iter().map(|s| s.name).collect();
            errs.push(f("kind"), format!("unknown kind `{}`; expected one of {}", p.kind, known.join(", ")));
            continue;
        };
        let spec = kind.spec();
        let mut base_url = match (spec.default_base_url, p.base_url.as_deref()) {
            // an empty default is made from another field below (Bedrock's region)
            (Some(default), None) => default.to_string(),
            (None, None) => {
                errs.push(f("base_url"), format!("required for kind `{}`", kind.as_str()));
                String::new()
            }
            (_, Some(u)) => {
                let u = interpolate(&f("base_url"), u, env, errs);
                if spec.http && !(u.starts_with("http://") || u.starts_with("https://")) {
                    errs.push(f("base_url"), format!("`{u}` is not an http(s) URL"));
                }
                u.trim_end_matches('/').to_string()
            }
        };
        let api_key = p.api_key.as_deref().map(|k| interpolate(&f("api_key"), k, env, errs));
        let api_version = match (spec.api_version, p.api_version) {
            (Some(default), None) => default.to_string(),
            (Some(_), Some(v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => v,
            (Some(_), Some(v)) => {
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
        let aws = if spec.aws {
            let region = secret_field("region", p.region.clone(), errs).unwrap_or_default();
            if region.is_empty() || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                errs.push(f("region"), "required for kind `bedrock` (e.g. `us-east-1`)");
            }
            let access_key_id = secret_field("aws_access_key_id", p.aws_access_key_id, errs);
            let secret_access_key = secret_field("aws_secret_access_key", p.aws_secret_access_key, errs);
            if access_key_id.is_some() != secret_access_key.is_some() {
                errs.push(f("aws_access_key_id"), "`aws_access_key_id` and `aws_secret_access_key` go together");
            }
            let session_token = secret_field("aws_session_token", p.aws_session_token, errs);
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
            let v = interpolate(&f(&format!("headers.{k}")), &v, env, errs);
            headers.push((k.to_ascii_lowercase(), v));
        }
        providers.push(Provider {
            name: p.name,
            kind,
            base_url,
            api_key,
            concurrency,
            queue_size: p.queue_size.unwrap_or(1024),
            connect_timeout: positive_ms(&f("connect_timeout_ms"), p.connect_timeout_ms, 5_000, errs),
            first_byte_timeout: positive_ms(&f("first_byte_timeout_ms"), p.first_byte_timeout_ms, 60_000, errs),
            timeout: positive_ms(&f("timeout_ms"), p.timeout_ms, 600_000, errs),
            max_retries: p.max_retries.unwrap_or(0),
            stream_idle_timeout: positive_ms(&f("stream_idle_timeout_ms"), p.stream_idle_timeout_ms, 300_000, errs),
            max_response_bytes: at_least_one(&f("max_response_bytes"), p.max_response_bytes, 64 << 20, errs),
            max_event_bytes: at_least_one(&f("max_event_bytes"), p.max_event_bytes, 16 << 20, errs),
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
            breaker_cooldown: positive_ms(&f("breaker_cooldown_ms"), p.breaker_cooldown_ms, 30_000, errs),
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
            breaker_window: positive_ms(&f("breaker_window_ms"), p.breaker_window_ms, 10_000, errs),
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
                    if !spec.http {
                        errs.push(f("health_check_interval_ms"), "a `mock` provider has nothing to check");
                    }
                    Some(crate::HealthCheck {
                        interval: positive_ms(&f("health_check_interval_ms"), Some(ms), 0, errs),
                        path,
                    })
                }
            },
        });
    }
    (providers, names)
}

/// The aliases and providers guardrails send second opinions to.
pub(super) fn guardrail_targets(
    guardrails: &[Guardrail],
    models: &[RawModel],
    names: &HashSet<String>,
    errs: &mut Errors,
) {
    for (i, g) in guardrails.iter().enumerate() {
        if let Some((alias, _)) = &g.injection_classifier {
            if !models.iter().any(|m| &m.alias == alias) {
                errs.push(format!("guardrails[{i}].injection.classifier"), format!("no model alias `{alias}`"));
            }
        }
        if let Some(alias) = g.moderation.as_ref().and_then(|m| m.classifier.as_ref()) {
            if !models.iter().any(|m| &m.alias == alias) {
                errs.push(format!("guardrails[{i}].moderation.classifier"), format!("no model alias `{alias}`"));
            }
        }
        if let Some((p, _)) = g.moderation.as_ref().and_then(|m| m.upstream.as_ref()) {
            if !names.contains(p) {
                errs.push(format!("guardrails[{i}].moderation.upstream_provider"), format!("no provider named `{p}`"));
            }
        }
    }
}

pub(super) fn models(
    raw: Vec<RawModel>,
    names: &HashSet<String>,
    guards: &HashSet<String>,
    errs: &mut Errors,
) -> (Vec<Model>, HashSet<String>) {
    let mut models = Vec::new();
    let mut aliases = HashSet::new();
    for (i, m) in raw.into_iter().enumerate() {
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
            limits: limits(&f, m.rpm, m.tpm, m.tpd, m.max_concurrent, errs),
            max_output_tokens: match m.max_output_tokens {
                Some(0) => {
                    errs.push(f("max_output_tokens"), "must be at least 1");
                    None
                }
                n => n,
            },
            guardrails: {
                guard_refs(guards, &f("guardrails"), &m.guardrails, errs);
                m.guardrails
            },
            log_requests: m.log_requests.unwrap_or(false),
            semantic: None,
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
    (models, aliases)
}
