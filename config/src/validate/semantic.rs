//! `[cache.semantic]` and the aliases' `semantic_cache`.

use super::*;
use crate::{RawAliasSemantic, RawSemantic, RawSemanticPolicy, Semantic, SemanticPolicy, SemanticScope};

/// Checks `[cache.semantic]` and sets each opted-in alias's policy (`per_alias` is in
/// the order of `models`).
pub(super) fn semantic(
    raw: Option<RawSemantic>,
    per_alias: Vec<Option<RawAliasSemantic>>,
    models: &mut [Model],
    errs: &mut Errors,
) -> Option<Semantic> {
    let on = |a: &Option<RawAliasSemantic>| !matches!(a, None | Some(RawAliasSemantic::On(false)));
    let Some(raw) = raw else {
        for (m, a) in models.iter().zip(&per_alias) {
            if on(a) {
                errs.push(
                    format!("models `{}`.semantic_cache", m.alias),
                    "needs [cache.semantic] (the embeddings alias and the index's bounds)",
                );
            }
        }
        return None;
    };
    let f = |name: &str| format!("cache.semantic.{name}");
    match models.iter().find(|m| m.alias == raw.embeddings) {
        None => errs.push(f("embeddings"), format!("no model alias `{}`", raw.embeddings)),
        Some(_) if per_alias.iter().zip(models.iter()).any(|(a, m)| on(a) && m.alias == raw.embeddings) => {
            errs.push(f("embeddings"), "the embeddings alias cannot itself be semantically cached")
        }
        Some(_) => {}
    }
    let positive = |name: &str, v: Option<u64>, default: u64, errs: &mut Errors| match v {
        Some(0) => {
            errs.push(f(name), "must be at least 1");
            default
        }
        v => v.unwrap_or(default),
    };
    let semantic = Semantic {
        embeddings: raw.embeddings.clone(),
        max_entries: positive("max_entries", raw.max_entries.map(|v| v as u64), 50_000, errs) as usize,
        embed_timeout: Duration::from_millis(positive("embed_timeout_ms", raw.embed_timeout_ms, 300, errs)),
        max_prompt_chars: positive("max_prompt_chars", raw.max_prompt_chars.map(|v| v as u64), 2_000, errs) as usize,
        guards: raw.guards.unwrap_or(true),
        candidates: positive("candidates", raw.candidates.map(|v| v as u64), 8, errs).min(256) as usize,
    };
    let defaults = policy(&raw.policy, None, &f, errs);
    for (m, a) in models.iter_mut().zip(per_alias) {
        m.semantic = match a {
            None | Some(RawAliasSemantic::On(false)) => None,
            Some(RawAliasSemantic::On(true)) => Some(defaults.clone()),
            Some(RawAliasSemantic::Policy(p)) => {
                let alias = m.alias.clone();
                Some(policy(&p, Some(&defaults), &|name| format!("models `{alias}`.semantic_cache.{name}"), errs))
            }
        };
    }
    Some(semantic)
}

fn policy(
    raw: &RawSemanticPolicy,
    base: Option<&SemanticPolicy>,
    f: &dyn Fn(&str) -> String,
    errs: &mut Errors,
) -> SemanticPolicy {
    let threshold = raw.threshold.or(base.map(|b| b.threshold)).unwrap_or(0.93);
    if !(threshold > 0.0 && threshold <= 1.0) {
        errs.push(f("threshold"), "must be above 0 and at most 1");
    }
    let scope = match raw.scope.as_deref() {
        None => base.map_or(SemanticScope::Key, |b| b.scope),
        Some("key") => SemanticScope::Key,
        Some("team") => SemanticScope::Team,
        Some("global") => SemanticScope::Global,
        Some(other) => {
            errs.push(f("scope"), format!("`{other}` is not one of key, team, global"));
            SemanticScope::Key
        }
    };
    if raw.ttl_secs == Some(0) {
        errs.push(f("ttl_secs"), "must be at least 1");
    }
    let max_temperature = raw.max_temperature.or(base.and_then(|b| b.max_temperature));
    if max_temperature.is_some_and(|t| !(t >= 0.0 && t.is_finite())) {
        errs.push(f("max_temperature"), "must be a finite number >= 0");
    }
    SemanticPolicy {
        threshold,
        scope,
        per_user: raw.per_user.or(base.map(|b| b.per_user)).unwrap_or(false),
        ttl: raw.ttl_secs.map(Duration::from_secs).or(base.map(|b| b.ttl)).unwrap_or(Duration::from_secs(3600)),
        max_temperature,
        tools: raw.tools.or(base.map(|b| b.tools)).unwrap_or(false),
    }
}
