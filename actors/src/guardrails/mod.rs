//! Guardrails: named sets (`[[guardrails]]`) applied to a request by its key, its team
//! and its alias (`guardrails = [...]` on each). This module holds the PII and secrets
//! guardrail: applied to every message and text part of a request before it leaves,
//! and to the answer (placeholders restored, detections acted on), streams included.

pub mod injection;
pub mod moderation;
pub mod pii;

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
    pub on_request: bool,
    pub on_response: bool,
}

impl Guard {
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
            scanner: Scanner::new(actions, &custom)?,
            injection: match g.injection {
                None => None,
                Some((threshold, block)) => Some((injection::InjectionScorer::new()?, threshold, block)),
            },
            moderation: match &g.moderation {
                None => None,
                Some(m) => Some((moderation::Moderator::new(&m.extra, m.threshold, &m.thresholds)?, m.block)),
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
    /// `(guardrail, entity, action)` for the usage note (never the values).
    pub actions: Vec<(String, String, &'static str)>,
}

fn count(guard: &str, action: Action) {
    metrics::counter!(GUARDRAIL_ACTIONS_TOTAL, "guardrail" => guard.to_string(), "action" => action.as_str())
        .increment(1);
}

impl Applied {
    pub fn is_empty(&self) -> bool {
        self.guards.is_empty()
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
                    count(&g.name, Action::Block);
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
                        count(&g.name, *action);
                        self.actions.push((g.name.clone(), entity.label().to_string(), action.as_str()));
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
                    if v.score < *threshold {
                        continue;
                    }
                    let action = if *block { "block" } else { "flag" };
                    metrics::counter!(GUARDRAIL_ACTIONS_TOTAL, "guardrail" => g.name.clone(), "action" => action)
                        .increment(1);
                    tracing::warn!(guardrail = %g.name, score = v.score, signals = ?v.signals, action, "prompt injection");
                    self.actions.push((g.name.clone(), "INJECTION".into(), action));
                    if *block {
                        return Err(GatewayError::PolicyViolation {
                            guardrail: g.name.clone(),
                            message: format!(
                                "the request looks like a prompt injection (score {:.2}: {}) ({})",
                                v.score,
                                v.signals.join(", "),
                                g.name
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Moderates a text (a request's message or an answer) with every guardrail that
    /// moderates in that direction: blocked, or flagged (counted and logged).
    fn moderate(&mut self, text: &str, request: bool) -> Result<(), GatewayError> {
        for g in &self.guards {
            let Some((moderator, block)) = &g.moderation else { continue };
            if (request && !g.on_request) || (!request && !g.on_response) {
                continue;
            }
            let m = moderator.moderate(text);
            if m.flagged.is_empty() {
                continue;
            }
            let action = if *block { "block" } else { "flag" };
            metrics::counter!(GUARDRAIL_ACTIONS_TOTAL, "guardrail" => g.name.clone(), "action" => action).increment(1);
            tracing::warn!(guardrail = %g.name, categories = ?m.flagged, action, "moderation");
            self.actions.push((g.name.clone(), m.flagged.join("+").to_uppercase(), action));
            if *block {
                return Err(GatewayError::PolicyViolation {
                    guardrail: g.name.clone(),
                    message: format!(
                        "the {} was flagged for {} ({})",
                        if request { "request" } else { "answer" },
                        m.flagged.join(", "),
                        g.name
                    ),
                });
            }
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
            for m in messages.iter().filter(|m| m.get("role").and_then(Value::as_str) != Some("system")) {
                let text = match m.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => continue,
                };
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
        if self.is_empty() {
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

/// Restores placeholders in an OpenAI SSE stream, one restorer per choice: a
/// placeholder split across chunks is held back and released whole; text that cannot
/// be part of one is not delayed.
pub struct RestoreStream {
    vault: Vault,
    restorers: HashMap<u64, StreamRestorer>,
}

impl RestoreStream {
    pub fn new(vault: Vault) -> RestoreStream {
        RestoreStream { vault, restorers: HashMap::new() }
    }

    fn flush(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut rest: Vec<(u64, String)> = self
            .restorers
            .iter_mut()
            .map(|(i, r)| (*i, r.finish(&self.vault)))
            .filter(|(_, t)| !t.is_empty())
            .collect();
        rest.sort();
        for (index, text) in rest {
            let chunk = serde_json::json!({"object": "chat.completion.chunk",
                "choices": [{"index": index, "delta": {"content": text}, "finish_reason": null}]});
            out.push(data_event(&chunk.to_string()));
        }
        out
    }
}

impl EventTranslate for RestoreStream {
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
                let r = self.restorers.entry(index).or_default();
                let mut text = match c.pointer("/delta/content").and_then(Value::as_str) {
                    Some(piece) => r.push(&self.vault, piece),
                    None => String::new(),
                };
                // what is held back goes out with the chunk that finishes the choice
                if finishing {
                    text.push_str(&r.finish(&self.vault));
                }
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
