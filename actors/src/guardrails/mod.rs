//! Guardrails: named sets (`[[guardrails]]`) applied to a request by its key, its team
//! and its alias (`guardrails = [...]` on each). This module holds the PII and secrets
//! guardrail: applied to every message and text part of a request before it leaves,
//! and to the answer (placeholders restored, detections acted on), streams included.

pub mod decode;
pub mod external;
pub mod injection;
pub mod linear;
pub mod moderation;
pub mod pii;
#[cfg(test)]
mod pii_eval;
#[cfg(test)]
mod pii_holdout;
pub mod train;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use self::pii::{Action, Entity, Scanner, StreamRestorer, Vault};
use crate::metrics::GUARDRAIL_ACTIONS_TOTAL;
use crate::providers::sse::{data_event, SseEvent, DONE};
use crate::providers::EventTranslate;
use crate::GatewayError;

/// One compiled `[[guardrails]]` set.
#[derive(Debug)]
pub struct Guard {
    pub name: String,
    pub scanner: Scanner,
    /// Prompt-injection scoring: the scorer, its threshold, and block (else flag).
    pub injection: Option<(injection::InjectionScorer, f64, bool)>,
    /// Moderation: the moderator, and block (else flag).
    pub moderation: Option<(moderation::Moderator, bool)>,
    /// A provider's `/moderations` as a second opinion: (provider, model).
    pub upstream_moderation: Option<(String, String)>,
    /// A classifier alias asked about texts the injection scorer puts from this score
    /// up to its threshold.
    pub injection_classifier: Option<(String, f64)>,
    /// A Llama-Guard-style alias asked about each request.
    pub moderation_classifier: Option<String>,
    /// Services of the operator's own (`external.rs`).
    pub webhook: Option<switchyard_config::WebhookCfg>,
    pub presidio: Option<switchyard_config::PresidioCfg>,
    pub on_request: bool,
    pub on_response: bool,
}

impl Guard {
    /// Whether it calls a service on requests (Presidio, a webhook, a Llama-Guard alias).
    pub fn has_services(&self) -> bool {
        self.presidio.is_some() || self.webhook.is_some() || self.moderation_classifier.is_some()
    }

    pub fn build(g: &switchyard_config::Guardrail) -> Result<Guard, String> {
        let mut actions = HashMap::new();
        for (entity, action) in &g.pii {
            let e = Entity::parse(entity).ok_or_else(|| format!("unknown entity `{entity}`"))?;
            let a = Action::parse(action).ok_or_else(|| format!("unknown action `{action}`"))?;
            actions.insert(e, a);
        }
        let mut custom = Vec::new();
        for c in &g.custom {
            let a = Action::parse(&c.action).ok_or_else(|| format!("unknown action `{}`", c.action))?;
            custom.push((c.name.clone(), c.regex.clone(), a));
        }
        Ok(Guard {
            name: g.name.clone(),
            scanner: Scanner::with_regions(actions, &custom, &g.regions)?,
            injection: match g.injection {
                None => None,
                Some((threshold, block)) => {
                    let scorer = if g.injection_model {
                        injection::InjectionScorer::new()?
                    } else {
                        injection::InjectionScorer::with_model(None)?
                    };
                    Some((scorer, threshold, block))
                }
            },
            upstream_moderation: g.moderation.as_ref().and_then(|m| m.upstream.clone()),
            injection_classifier: g.injection_classifier.clone(),
            moderation_classifier: g.moderation.as_ref().and_then(|m| m.classifier.clone()),
            webhook: g.webhook.clone(),
            presidio: g.presidio.clone(),
            moderation: match &g.moderation {
                None => None,
                Some(m) => {
                    let model = if m.model { Some(moderation::builtin_model()?) } else { None };
                    Some((moderation::Moderator::with_model(&m.extra, m.threshold, &m.thresholds, model)?, m.block))
                }
            },
            on_request: g.on_request,
            on_response: g.on_response,
        })
    }
}

/// The guardrails of one request, and its pseudonyms.
#[derive(Default)]
pub struct Applied {
    pub guards: Vec<Arc<Guard>>,
    pub vault: Vault,
    /// What was done, for the usage note and the flags header (never the values).
    pub actions: Vec<Noted>,
    /// Texts to ask a classifier about: (guardrail, classifier alias, text, threshold, block).
    pub asks: Vec<(String, String, String, f64, bool)>,
}

/// One action a guardrail took.
#[derive(Debug, Clone)]
pub struct Noted {
    pub guard: String,
    /// The entity or categories, upper-case (`EMAIL`, `INJECTION`, `HATE+VIOLENCE`).
    pub what: String,
    pub action: &'static str,
    /// A flag's categories and scores (empty for the other actions).
    pub flagged: Vec<(&'static str, f64)>,
}

/// What a moderation block says.
fn flagged_message(categories: &[&str], request: bool) -> String {
    format!("the {} was flagged for {}", if request { "request" } else { "answer" }, categories.join(", "))
}

fn count(guard: &str, entity: &Entity, action: Action) {
    metrics::counter!(GUARDRAIL_ACTIONS_TOTAL, "guardrail" => guard.to_string(),
        "category" => entity.label().to_string(), "action" => action.as_str())
    .increment(1);
}

impl Applied {
    /// A detection's outcome: counted, noted for the usage record, and with `block`
    /// the 400 that names the guardrail; otherwise flagged and let through.
    /// `found`: each category detected (`injection`, or moderation's) with its score.
    pub fn verdict(
        &mut self,
        guard: &str,
        found: &[(&'static str, f64)],
        block: bool,
        message: String,
    ) -> Result<(), GatewayError> {
        let action = if block { "block" } else { "flag" };
        for (category, _) in found {
            metrics::counter!(GUARDRAIL_ACTIONS_TOTAL, "guardrail" => guard.to_string(), "category" => *category,
                "action" => action)
            .increment(1);
        }
        tracing::warn!(guardrail = %guard, %message, action, "guardrail");
        let what: Vec<String> = found.iter().map(|(c, _)| c.to_uppercase()).collect();
        self.actions.push(Noted {
            guard: guard.to_string(),
            what: what.join("+"),
            action,
            flagged: if block { Vec::new() } else { found.to_vec() },
        });
        if block {
            return Err(GatewayError::PolicyViolation {
                guardrail: guard.to_string(),
                message: format!("{message} ({guard})"),
            });
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.guards.is_empty()
    }

    /// An action a service of the operator's own took (a Presidio entity redacted, a
    /// webhook that could not answer): counted and noted for the usage record.
    pub fn note(&mut self, guard: &str, category: &str, action: &'static str) {
        metrics::counter!(GUARDRAIL_ACTIONS_TOTAL, "guardrail" => guard.to_string(),
            "category" => category.to_string(), "action" => action)
        .increment(1);
        self.actions.push(Noted {
            guard: guard.to_string(),
            what: category.to_uppercase(),
            action,
            flagged: Vec::new(),
        });
    }

    /// The actions taken so far, for the usage record: `guardrail:ENTITY:action`, and
    /// for a flag its scores: `guardrail:INJECTION:flag:0.83`.
    pub fn notes(&self) -> Vec<String> {
        self.actions
            .iter()
            .map(|n| {
                let (g, e, a) = (&n.guard, &n.what, n.action);
                if n.flagged.is_empty() {
                    return format!("{g}:{e}:{a}");
                }
                let s: Vec<String> = n.flagged.iter().map(|(_, v)| format!("{v:.2}")).collect();
                format!("{g}:{e}:{a}:{}", s.join("+"))
            })
            .collect()
    }

    /// The `x-switchyard-guardrails` header of a flagged request: each flag's guardrail,
    /// category and score (`watch:injection=0.83, moderate:violence=0.71`).
    pub fn flags_header(&self) -> Option<String> {
        let parts: Vec<String> = self
            .actions
            .iter()
            .flat_map(|n| n.flagged.iter().map(move |(c, s)| format!("{}:{c}={s:.2}", n.guard)))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    fn apply_text(&mut self, text: &str, request: bool) -> Result<Option<String>, GatewayError> {
        let mut current: Option<String> = None;
        for g in &self.guards {
            if (request && !g.on_request) || (!request && !g.on_response) {
                continue;
            }
            let input = current.as_deref().unwrap_or(text);
            match g.scanner.apply_as(input, &mut self.vault, !request) {
                Err(entity) => {
                    count(&g.name, &entity, Action::Block);
                    return Err(GatewayError::PolicyViolation {
                        guardrail: g.name.clone(),
                        message: format!(
                            "the {} contains {} ({})",
                            if request { "request" } else { "answer" },
                            entity.label(),
                            g.name
                        ),
                    });
                }
                Ok((out, done)) => {
                    for (entity, action) in &done {
                        count(&g.name, entity, *action);
                        self.actions.push(Noted {
                            guard: g.name.clone(),
                            what: entity.label().to_string(),
                            action: action.as_str(),
                            flagged: Vec::new(),
                        });
                    }
                    if !done.is_empty() {
                        current = Some(out);
                    }
                }
            }
        }
        Ok(current)
    }

    /// Scores every non-system message for prompt injection: a score at or above a
    /// guardrail's threshold blocks the request (or is flagged: counted and logged).
    fn injection(&mut self, messages: &[Value]) -> Result<(), GatewayError> {
        let mut flagged: Vec<(String, bool, String, f64)> = Vec::new();
        for g in &self.guards {
            let Some((scorer, threshold, block)) = &g.injection else { continue };
            for m in messages.iter().filter(|m| m.get("role").and_then(Value::as_str) != Some("system")) {
                let texts: Vec<&str> = match m.get("content") {
                    Some(Value::String(s)) => vec![s.as_str()],
                    Some(Value::Array(parts)) => {
                        parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect()
                    }
                    _ => Vec::new(),
                };
                for t in texts {
                    let v = scorer.score(t);
                    if v.score >= *threshold {
                        let message = format!(
                            "the request looks like a prompt injection (score {:.2}: {})",
                            v.score,
                            v.signals.join(", ")
                        );
                        flagged.push((g.name.clone(), *block, message, v.score));
                    } else if let Some((alias, _)) =
                        g.injection_classifier.as_ref().filter(|(_, above)| v.score >= *above)
                    {
                        self.asks.push((g.name.clone(), alias.clone(), t.to_string(), *threshold, *block));
                    }
                }
            }
        }
        for (guard, block, message, score) in flagged {
            self.verdict(&guard, &[("injection", score)], block, message)?;
        }
        Ok(())
    }

    /// Applies a second opinion for one guardrail's moderation of `texts` (`results` is
    /// a provider's OpenAI-format answer, one result per text).
    pub fn second_opinion(
        &mut self,
        guard: &str,
        texts: &[String],
        results: &Value,
        request: bool,
    ) -> Result<(), GatewayError> {
        let Some(g) = self.guards.iter().find(|g| g.name == guard).cloned() else { return Ok(()) };
        let Some((moderator, block)) = &g.moderation else { return Ok(()) };
        let items = results.get("results").and_then(Value::as_array).cloned().unwrap_or_default();
        for (text, upstream) in texts.iter().zip(items.iter()) {
            let m = moderator.combine(&moderator.moderate(text), upstream);
            if !m.flagged.is_empty() {
                self.verdict(&g.name, &m.found(), *block, flagged_message(&m.flagged, request))?;
            }
        }
        Ok(())
    }

    /// The guardrails that ask a provider for a second moderation opinion on requests
    /// (or on answers).
    pub fn upstream_moderations(&self, request: bool) -> Vec<(String, String, String)> {
        self.guards
            .iter()
            .filter(|g| if request { g.on_request } else { g.on_response })
            .filter_map(|g| g.upstream_moderation.clone().map(|(p, m)| (g.name.clone(), p, m)))
            .collect()
    }

    /// The texts a request's moderation looks at: every non-system message.
    pub fn moderation_texts(messages: &[Value]) -> Vec<String> {
        messages
            .iter()
            .filter(|m| m.get("role").and_then(Value::as_str) != Some("system"))
            .filter_map(|m| match m.get("content") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Array(parts)) => Some(
                    parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"),
                ),
                _ => None,
            })
            .collect()
    }

    /// Moderates a text (a request's message or an answer) with every guardrail that
    /// moderates in that direction: blocked, or flagged (counted and logged).
    fn moderate(&mut self, text: &str, request: bool) -> Result<(), GatewayError> {
        let mut flagged: Vec<(String, bool, moderation::Moderation)> = Vec::new();
        for g in &self.guards {
            let Some((moderator, block)) = &g.moderation else { continue };
            if (request && g.on_request) || (!request && g.on_response) {
                let m = moderator.moderate(text);
                if !m.flagged.is_empty() {
                    flagged.push((g.name.clone(), *block, m));
                }
            }
        }
        for (guard, block, m) in flagged {
            self.verdict(&guard, &m.found(), block, flagged_message(&m.flagged, request))?;
        }
        Ok(())
    }

    /// Every message's content (a string, or the text of each part) of a chat request.
    pub fn on_messages(&mut self, messages: &mut [Value]) -> Result<(), GatewayError> {
        if self.is_empty() {
            return Ok(());
        }
        self.injection(messages)?;
        if self.guards.iter().any(|g| g.moderation.is_some()) {
            for text in Self::moderation_texts(messages) {
                self.moderate(&text, true)?;
            }
        }
        for m in messages.iter_mut() {
            match m.get_mut("content") {
                Some(Value::String(s)) => {
                    if let Some(new) = self.apply_text(s, true)? {
                        *s = new;
                    }
                }
                Some(Value::Array(parts)) => {
                    for p in parts.iter_mut() {
                        if let Some(Value::String(s)) = p.get_mut("text") {
                            if let Some(new) = self.apply_text(s, true)? {
                                *s = new;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A whole chat completion body: placeholders restored, then the answer checked.
    pub fn on_completion(&mut self, body: &Bytes) -> Result<Option<Bytes>, GatewayError> {
        // request-only guardrails that pseudonymized nothing leave the answer as it is
        if self.vault.is_empty() && !self.guards.iter().any(|g| g.on_response) {
            return Ok(None);
        }
        let mut v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        let mut changed = false;
        if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
            for c in choices {
                if let Some(Value::String(s)) = c.pointer_mut("/message/content") {
                    let restored = self.vault.restore(s);
                    self.moderate(&restored, false)?;
                    let checked = self.apply_text(&restored, false)?.unwrap_or(restored);
                    if checked != *s {
                        *s = checked;
                        changed = true;
                    }
                }
            }
        }
        Ok(changed.then(|| Bytes::from(serde_json::to_vec(&v).unwrap_or_default())))
    }
}

/// The most text a stream holds back while a match may still be forming.
pub const MAX_HOLD: usize = 512;

/// Where the text that can be released ends: before the last partial word, before a
/// trailing run of digits, capitals and separators that holds a digit (a phone number,
/// card or IBAN still arriving), and before an unfinished private-key block; never
/// more than [`MAX_HOLD`] bytes held.
fn safe_cut(pending: &str) -> usize {
    let mut cut = pending.len();
    if !pending.ends_with(char::is_whitespace) {
        cut = pending.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    }
    let mut run_start = pending.len();
    let mut digit = false;
    for (i, c) in pending.char_indices().rev() {
        if c.is_ascii_digit() || c.is_ascii_uppercase() || matches!(c, ' ' | '-' | '+' | '(' | ')' | '.') {
            digit |= c.is_ascii_digit();
            run_start = i;
        } else {
            break;
        }
    }
    if digit {
        cut = cut.min(run_start);
    }
    if let Some(begin) = pending.rfind("-----BEGIN") {
        if !pending[begin..].contains("-----END") {
            cut = cut.min(begin);
        }
    }
    let floor = pending.len().saturating_sub(MAX_HOLD);
    let mut cut = cut.max(floor);
    while !pending.is_char_boundary(cut) {
        cut += 1;
    }
    cut
}

/// One choice of a guarded stream.
#[derive(Default)]
struct ChoiceText {
    restorer: StreamRestorer,
    /// Restored text not released yet (a match may still be forming).
    pending: String,
}

/// The answer side of the guardrails in an OpenAI SSE stream, per choice: placeholders
/// restored (one split across chunks is held back and released whole), then the
/// answer's own PII acted on with a bounded hold-back ([`safe_cut`]), so no partial
/// secret is ever emitted and text that cannot start a match is not delayed. `block`
/// redacts in a stream: the answer has already begun.
pub struct GuardStream {
    vault: Vault,
    guards: Vec<Arc<Guard>>,
    choices: HashMap<u64, ChoiceText>,
}

impl GuardStream {
    pub fn new(applied: &Applied) -> GuardStream {
        let guards = applied.guards.iter().filter(|g| g.on_response).cloned().collect();
        GuardStream { vault: applied.vault.clone(), guards, choices: HashMap::new() }
    }

    /// Whether a stream needs this stage at all.
    pub fn needed(applied: &Applied) -> bool {
        !applied.vault.is_empty() || applied.guards.iter().any(|g| g.on_response)
    }

    fn check(guards: &[Arc<Guard>], vault: &mut Vault, text: String) -> String {
        let mut text = text;
        for g in guards {
            let (out, done) = match g.scanner.apply_as(&text, vault, true) {
                Ok(r) => r,
                // the answer has begun: what would block is redacted instead
                Err(entity) => {
                    count(&g.name, &entity, Action::Block);
                    let findings = g.scanner.scan(&text);
                    let mut out = String::with_capacity(text.len());
                    let mut at = 0;
                    for f in findings.iter().filter(|f| f.entity == entity) {
                        out.push_str(&text[at..f.start]);
                        out.push_str(&format!("[{}]", f.entity.label()));
                        at = f.end;
                    }
                    out.push_str(&text[at..]);
                    (out, Vec::new())
                }
            };
            for (entity, action) in &done {
                count(&g.name, entity, *action);
            }
            text = out;
        }
        text
    }

    fn release(&mut self, index: u64, piece: Option<&str>, finishing: bool) -> String {
        let c = self.choices.entry(index).or_default();
        if let Some(p) = piece {
            let restored = c.restorer.push(&self.vault, p);
            c.pending.push_str(&restored);
        }
        if finishing {
            let rest = c.restorer.finish(&self.vault);
            c.pending.push_str(&rest);
        }
        let cut = if finishing || self.guards.is_empty() { c.pending.len() } else { safe_cut(&c.pending) };
        let ready: String = c.pending.drain(..cut).collect();
        if ready.is_empty() || self.guards.is_empty() {
            return ready;
        }
        Self::check(&self.guards, &mut self.vault, ready)
    }

    fn flush(&mut self) -> Vec<Bytes> {
        let mut indexes: Vec<u64> = self.choices.keys().copied().collect();
        indexes.sort_unstable();
        let mut out = Vec::new();
        for index in indexes {
            let text = self.release(index, None, true);
            if !text.is_empty() {
                let chunk = serde_json::json!({"object": "chat.completion.chunk",
                    "choices": [{"index": index, "delta": {"content": text}, "finish_reason": null}]});
                out.push(data_event(&chunk.to_string()));
            }
        }
        out
    }
}

impl EventTranslate for GuardStream {
    fn on_event(&mut self, ev: &SseEvent) -> Result<Vec<Bytes>, String> {
        if ev.data.trim() == "[DONE]" {
            let mut out = self.flush();
            out.push(Bytes::from_static(DONE));
            return Ok(out);
        }
        let mut v: Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(_) => return Ok(vec![data_event(&ev.data)]),
        };
        if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
            for c in choices {
                let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                let finishing = c.get("finish_reason").is_some_and(|f| !f.is_null());
                let piece = c.pointer("/delta/content").and_then(Value::as_str).map(str::to_string);
                // what is held back goes out with the chunk that finishes the choice
                let text = self.release(index, piece.as_deref(), finishing);
                if let Some(delta) = c.get_mut("delta").and_then(Value::as_object_mut) {
                    if delta.contains_key("content") || !text.is_empty() {
                        delta.insert("content".into(), Value::String(text));
                    }
                }
            }
        }
        Ok(vec![data_event(&v.to_string())])
    }

    fn finish(&mut self) -> Vec<Bytes> {
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_keeps_what_may_still_become_a_match() {
        assert_eq!(safe_cut("hello world "), 12, "nothing pending after a space");
        assert_eq!(safe_cut("mail me at jane.d"), 11, "the last partial word waits");
        assert_eq!(safe_cut("call +44 20 79"), 4, "a number still arriving waits");
        assert_eq!(safe_cut("iban DE89 3704 0"), 4);
        assert_eq!(safe_cut("key -----BEGIN PRIVATE KEY-----\nMIIE "), 4);
        let long = "x".repeat(2000);
        assert_eq!(safe_cut(&long), 2000 - MAX_HOLD, "bounded");
    }
}
