//! The calls to guardrail services of the operator's own (wire formats in
//! `guardrails/external.rs`): Presidio and the webhook on each request, a Llama-Guard
//! alias on each request, and the webhook on each non-streamed answer. They run after
//! the gateway's own guardrails, so a service sees what a provider would.

use std::pin::Pin;

use serde_json::Value;

use super::{Engine, RequestCtx};
use crate::guardrails::external::{self, Decision};
use crate::guardrails::Applied;
use crate::GatewayError;

/// A service that could not answer: counted, and with `on_error = "block"` a 503.
fn failed(
    guards: &mut Applied,
    guard: &str,
    service: &'static str,
    why: &str,
    fail_closed: bool,
) -> Result<(), GatewayError> {
    guards.note(guard, service, "service_failed");
    tracing::warn!(guardrail = %guard, service, error = %why, fail_closed, "guardrail service gave no answer");
    if fail_closed {
        return Err(GatewayError::Unavailable(format!(
            "guardrail `{guard}`: its {service} could not answer ({why}); it fails closed"
        )));
    }
    Ok(())
}

impl Engine {
    /// Presidio, the webhook and the Llama-Guard alias of every guardrail that checks
    /// requests, in the order the guardrails apply.
    /// (Boxed with an explicit `Send` type: the Llama-Guard call goes through
    /// [`Engine::chat`], which calls this.)
    pub(super) fn external_request_guardrails<'a>(
        &'a self,
        ctx: &'a RequestCtx,
        guards: &'a mut Applied,
        messages: &'a mut Vec<Value>,
        alias: &'a str,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<(), GatewayError>> + Send + 'a>> {
        Box::pin(async move {
            for g in guards.guards.clone().iter().filter(|g| g.on_request) {
                if let Some(p) = &g.presidio {
                    let url = format!("{}/analyze", p.url);
                    for m in messages.iter_mut() {
                        let texts: Vec<&mut Value> = match m.get_mut("content") {
                            Some(s @ Value::String(_)) => vec![s],
                            Some(Value::Array(parts)) => parts.iter_mut().filter_map(|p| p.get_mut("text")).collect(),
                            _ => Vec::new(),
                        };
                        for t in texts {
                            let Some(text) = t.as_str().filter(|s| !s.is_empty()) else { continue };
                            let body = external::presidio_body(text, &p.language, p.score);
                            match external::post(&url, &[], &body, p.timeout, p.max_answer_bytes).await {
                                Err(why) => failed(guards, &g.name, "presidio", &why, p.fail_closed)?,
                                Ok(findings) => match external::presidio_apply(text, &findings, &p.entities, p.score) {
                                    Err(entity) => {
                                        guards.note(&g.name, &entity, "block");
                                        return Err(GatewayError::PolicyViolation {
                                            guardrail: g.name.clone(),
                                            message: format!("the request contains {entity} ({})", g.name),
                                        });
                                    }
                                    Ok((new, done)) => {
                                        for (entity, action) in done {
                                            guards.note(&g.name, &entity, action);
                                        }
                                        *t = Value::String(new);
                                    }
                                },
                            }
                        }
                    }
                }
                if let Some(w) = &g.webhook {
                    let body =
                        external::webhook_body(&g.name, &ctx.request_id, &ctx.key.id, alias, Some(messages), None);
                    let decision = external::post(&w.url, &w.headers, &body, w.timeout, w.max_answer_bytes)
                        .await
                        .and_then(|v| external::webhook_decision(&v, true));
                    match decision {
                        Err(why) => failed(guards, &g.name, "webhook", &why, w.fail_closed)?,
                        Ok(Decision::Allow) => {}
                        Ok(Decision::Replace(new)) => {
                            guards.note(&g.name, "webhook", "modify");
                            *messages = new;
                        }
                        Ok(Decision::Flag(reason)) => guards.verdict(&g.name, &[("webhook", 1.0)], false, reason)?,
                        Ok(Decision::Block(reason)) => guards.verdict(
                            &g.name,
                            &[("webhook", 1.0)],
                            true,
                            format!("the request was refused: {reason}"),
                        )?,
                    }
                }
                if let Some(judge) = &g.moderation_classifier {
                    self.llama_guard(ctx, guards, &g.name, judge, messages, g.moderation.as_ref().is_none_or(|m| m.1))
                        .await?;
                }
            }
            Ok(())
        })
    }

    /// The conversation goes to the Llama-Guard alias (a chat call through this engine,
    /// under the caller's key, its limits and ledger); `unsafe` blocks or flags with the
    /// categories it names. An answer that is neither `safe` nor `unsafe` leaves the
    /// local verdict standing (counted as `second_opinion_failed`).
    async fn llama_guard(
        &self,
        ctx: &RequestCtx,
        guards: &mut Applied,
        guard: &str,
        judge: &str,
        messages: &[Value],
        block: bool,
    ) -> Result<(), GatewayError> {
        let conversation: Vec<Value> = messages
            .iter()
            .filter(|m| matches!(m.get("role").and_then(Value::as_str), Some("user" | "assistant")))
            .map(|m| serde_json::json!({"role": m["role"], "content": content_of(m)}))
            .collect();
        let body = serde_json::json!({"model": judge, "max_tokens": 16, "temperature": 0, "messages": conversation});
        let verdict = self.guard_call(ctx, &body).await.and_then(|answer| external::llama_guard_verdict(&answer));
        match verdict {
            None => {
                guards.note(guard, "moderation", "second_opinion_failed");
                tracing::warn!(guardrail = %guard, classifier = %judge, "moderation classifier gave no verdict; the local one stands");
                Ok(())
            }
            Some(categories) if categories.is_empty() => Ok(()),
            Some(categories) => {
                let found: Vec<(&'static str, f64)> = categories.iter().map(|c| (*c, 1.0)).collect();
                let message = format!("the request was flagged for {} (classifier `{judge}`)", categories.join(", "));
                guards.verdict(guard, &found, block, message)
            }
        }
    }

    /// The webhook of every guardrail that checks answers, on a non-streamed answer's
    /// text (a stream has begun before its end is known: not sent).
    pub(super) async fn external_answer_guardrails(
        &self,
        ctx: &RequestCtx,
        guards: &mut Applied,
        answer: &str,
        alias: &str,
    ) -> Result<(), GatewayError> {
        for g in guards.guards.clone().iter().filter(|g| g.on_response) {
            let Some(w) = &g.webhook else { continue };
            let body = external::webhook_body(&g.name, &ctx.request_id, &ctx.key.id, alias, None, Some(answer));
            let decision = external::post(&w.url, &w.headers, &body, w.timeout, w.max_answer_bytes)
                .await
                .and_then(|v| external::webhook_decision(&v, false));
            match decision {
                Err(why) => failed(guards, &g.name, "webhook", &why, w.fail_closed)?,
                Ok(Decision::Allow | Decision::Replace(_)) => {}
                Ok(Decision::Flag(reason)) => guards.verdict(&g.name, &[("webhook", 1.0)], false, reason)?,
                Ok(Decision::Block(reason)) => {
                    guards.verdict(&g.name, &[("webhook", 1.0)], true, format!("the answer was refused: {reason}"))?
                }
            }
        }
        Ok(())
    }
}

/// A message's text (a string, or its text parts joined).
fn content_of(m: &Value) -> String {
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}
