//! Who may call: `[[teams]]`, `[[keys]]`, `[jwt]`, and the `[[routes]]` that pick an alias.

use super::*;

pub(super) fn teams(
    raw: Vec<RawTeam>,
    aliases: &HashSet<String>,
    guards: &HashSet<String>,
    errs: &mut Errors,
) -> (Vec<Team>, HashSet<String>) {
    let mut teams = Vec::new();
    let mut team_ids = HashSet::new();
    for (i, t) in raw.into_iter().enumerate() {
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
            endpoints: endpoints(&f, t.endpoints, errs),
            max_tokens: t.max_tokens,
            max_priority: max_priority(&f, t.max_priority.as_deref(), errs),
            limits: limits(&f, t.rpm, t.tpm, t.tpd, t.max_concurrent, errs),
            budget: budget(&f, t.budget_usd, t.budget_period.as_deref(), errs),
            guardrails: {
                guard_refs(guards, &f("guardrails"), &t.guardrails, errs);
                t.guardrails
            },
            log_requests: t.log_requests.unwrap_or(false),
        });
    }
    (teams, team_ids)
}

pub(super) fn keys(
    raw: Vec<RawKey>,
    env: &dyn Fn(&str) -> Option<String>,
    aliases: &HashSet<String>,
    team_ids: &HashSet<String>,
    guards: &HashSet<String>,
    errs: &mut Errors,
) -> (Vec<Key>, HashSet<String>) {
    let mut keys = Vec::new();
    let mut ids = HashSet::new();
    let mut hashes = HashSet::new();
    for (i, k) in raw.into_iter().enumerate() {
        let f = |name: &str| format!("keys[{i}].{name}");
        if k.id.is_empty() {
            errs.push(f("id"), "must not be empty");
        } else if !ids.insert(k.id.clone()) {
            errs.push(f("id"), format!("duplicate key id `{}`", k.id));
        }
        let key_sha256 = match (k.key.as_deref(), k.key_sha256.as_deref()) {
            (Some(secret), None) => {
                let secret = interpolate(&f("key"), secret, env, errs);
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
            limits: limits(&f, k.rpm, k.tpm, k.tpd, k.max_concurrent, errs),
            priority,
            batch_priority,
            team: k.team,
            endpoints: endpoints(&f, k.endpoints, errs),
            max_tokens: k.max_tokens,
            max_priority: max_priority(&f, k.max_priority.as_deref(), errs),
            budget: budget(&f, k.budget_usd, k.budget_period.as_deref(), errs),
            expires_at_ms,
            guardrails: {
                guard_refs(guards, &f("guardrails"), &k.guardrails, errs);
                k.guardrails
            },
            log_requests: k.log_requests.unwrap_or(false),
        });
    }
    (keys, ids)
}

pub(super) fn routes(
    raw: Vec<RawRoute>,
    aliases: &HashSet<String>,
    ids: &HashSet<String>,
    errs: &mut Errors,
) -> Vec<Route> {
    let mut routes = Vec::new();
    let mut route_names = HashSet::new();
    for (i, r) in raw.into_iter().enumerate() {
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
    routes
}

pub(super) fn jwt(raw: Option<RawJwt>, env: &dyn Fn(&str) -> Option<String>, errs: &mut Errors) -> Option<Jwt> {
    let jwt = raw.map(|j| {
        let hs256_secret = j.hs256_secret.as_deref().map(|v| interpolate("jwt.hs256_secret", v, env, errs));
        if hs256_secret.as_ref().is_some_and(|s| s.len() < 32) {
            errs.push("jwt.hs256_secret", "must be at least 32 bytes");
        }
        let jwks_url = j.jwks_url.as_deref().map(|v| interpolate("jwt.jwks_url", v, env, errs));
        if jwks_url.as_ref().is_some_and(|u| !(u.starts_with("https://") || u.starts_with("http://"))) {
            errs.push("jwt.jwks_url", "must be an http(s) URL");
        }
        if hs256_secret.is_none() && j.jwks_file.is_none() && jwks_url.is_none() {
            errs.push("jwt", "set `hs256_secret`, `jwks_file` or `jwks_url`");
        }
        let oidc = j.oidc.map(|o| {
            let http = |s: &str| s.starts_with("https://") || s.starts_with("http://");
            for (field, value) in [
                ("jwt.oidc.redirect_url", Some(&o.redirect_url)),
                ("jwt.oidc.authorization_url", o.authorization_url.as_ref()),
                ("jwt.oidc.token_url", o.token_url.as_ref()),
            ] {
                if value.is_some_and(|v| !http(v)) {
                    errs.push(field, "must be an http(s) URL");
                }
            }
            if !o.redirect_url.ends_with("/ui/api/sso/callback") {
                errs.push(
                    "jwt.oidc.redirect_url",
                    "must be the gateway's `/ui/api/sso/callback` as the browser reaches it",
                );
            }
            if (o.authorization_url.is_none() || o.token_url.is_none()) && j.issuer.is_none() {
                errs.push("jwt.oidc", "set `authorization_url` and `token_url`, or `jwt.issuer` to discover them");
            }
            if o.client_id.is_empty() {
                errs.push("jwt.oidc.client_id", "must not be empty");
            }
            crate::Oidc {
                client_id: o.client_id,
                client_secret: o.client_secret.as_deref().map(|v| interpolate("jwt.oidc.client_secret", v, env, errs)),
                redirect_url: o.redirect_url,
                authorization_url: o.authorization_url,
                token_url: o.token_url,
                scopes: o.scopes.unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]),
            }
        });
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
            oidc,
        }
    });
    jwt
}
