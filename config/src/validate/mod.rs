//! Raw -> checked. Collects every error with its field path instead of stopping at the first.

mod access;
mod guardrails;
mod prompts;
mod providers;
mod semantic;
mod server;
mod telemetry;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::raw::{
    RawCache, RawConfig, RawGuardrail, RawJwt, RawKey, RawModel, RawNats, RawPricing, RawProvider, RawRoute, RawServer,
    RawTeam,
};
use crate::{
    hash_key, Api, AwsAuth, Budget, BudgetPeriod, Cache, Config, ConfigError, ConfigErrors, Guardrail, Jwt, Key,
    Limits, Model, Nats, Price, Pricing, Priority, Provider, ProviderKind, Route, Server, Strategy, Target, Team,
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

/// A list of guardrail names checked against the ones defined.
fn guard_refs(known: &HashSet<String>, field: &str, list: &[String], errs: &mut Errors) {
    for (j, n) in list.iter().enumerate() {
        if !known.contains(n) {
            errs.push(format!("{field}[{j}]"), format!("no guardrail `{n}`"));
        }
    }
}

/// Turns the raw file into a checked [`Config`], or every error found: one function
/// per section, in the order their cross-references need.
pub fn validate(
    mut raw: RawConfig,
    pricing: RawPricing,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut errs = Errors(Vec::new());
    let errs = &mut errs;
    // guardrails first: keys, teams and aliases refer to them
    let (guardrails, guards) = guardrails::guardrails(std::mem::take(&mut raw.guardrails), env, errs);
    let server = server::server(raw.server, env, errs);
    let nats = server::nats(raw.nats, env, errs);
    let telemetry = telemetry::telemetry(raw.telemetry, env, errs);
    if let Some(n) = nats.as_ref().filter(|n| n.embed_batch_max_inputs > server.max_inputs) {
        let (batch, max) = (n.embed_batch_max_inputs, server.max_inputs);
        errs.push("nats.embed_batch_max_inputs", format!("{batch} is above server.max_inputs ({max})"));
    }
    let (providers, provider_names) = providers::providers(raw.providers, env, errs);
    let semantic_asks: Vec<_> = raw.models.iter_mut().map(|m| m.semantic_cache.take()).collect();
    providers::guardrail_targets(&guardrails, &raw.models, &provider_names, errs);
    let (mut models, aliases) = providers::models(raw.models, &provider_names, &guards, errs);
    let (teams, team_ids) = access::teams(raw.teams, &aliases, &guards, errs);
    let (keys, key_ids) = access::keys(raw.keys, env, &aliases, &team_ids, &guards, errs);
    let routes = access::routes(raw.routes, &aliases, &key_ids, errs);
    let jwt = access::jwt(raw.jwt, env, errs);
    let mut cache = server::cache(&raw.cache, errs);
    cache.semantic = semantic::semantic(raw.cache.semantic.take(), semantic_asks, &mut models, errs);
    let prices = server::pricing(pricing, errs);
    let prompts = prompts::prompts(raw.prompts, &aliases, &team_ids, errs);
    let prompt_policies = prompts::policies(raw.prompt_policies, &aliases, &key_ids, &team_ids, errs);
    let experiments = prompts::experiments(raw.experiments, &prompts, &aliases, errs);
    // request logs go to a JetStream stream: without NATS there is nowhere to put them
    if nats.is_none() {
        let asks = keys.iter().filter(|k| k.log_requests).map(|k| format!("keys `{}`", k.id));
        let asks = asks.chain(teams.iter().filter(|t| t.log_requests).map(|t| format!("teams `{}`", t.id)));
        let asks = asks.chain(models.iter().filter(|m| m.log_requests).map(|m| format!("models `{}`", m.alias)));
        for who in asks.collect::<Vec<_>>() {
            errs.push("log_requests", format!("{who} logs requests, which go to JetStream: configure [nats]"));
        }
    }

    if !errs.0.is_empty() {
        return Err(ConfigErrors(std::mem::take(&mut errs.0)));
    }
    Ok(Config {
        server,
        nats,
        telemetry,
        providers,
        models,
        keys,
        cache,
        pricing: Pricing { models: prices },
        routes,
        teams,
        jwt,
        guardrails,
        prompts,
        prompt_policies,
        experiments,
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
