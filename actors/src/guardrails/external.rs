//! Guardrail services outside the gateway, for operators who already run one: a webhook
//! of their own, a Presidio analyzer, and a Llama-Guard-style model served by any alias.
//! This module holds the wire formats (what is sent, how an answer is read and
//! applied); the engine makes the calls (`pipeline/external.rs`).
//!
//! **Webhook.** `POST url` with `{"guardrail", "direction": "request"|"response",
//! "request_id", "key_id", "model", "messages"}` (a request; `messages` as the gateway
//! is about to send them, after its own guardrails) or `{..., "output"}` (a non-streamed
//! answer's text). It answers `{"action": "allow"|"flag"|"block", "reason": "..."}`,
//! and on a request may answer `"messages": [...]` to replace them. Anything else, a
//! status other than 2xx, or no answer within `timeout_ms` is an error: the request
//! goes on (`on_error = "allow"`, counted) or is refused with 503 (`"block"`).
//!
//! **Presidio.** `POST url/analyze` with `{"text", "language", "score_threshold"}` per
//! text; its answer (`[{"entity_type", "start", "end", "score"}]`, offsets in
//! characters) is applied with the action configured per entity type.
//!
//! **Llama Guard.** The conversation goes to the alias as it is (the model's own chat
//! template frames it); the answer is `safe`, or `unsafe` and a line of category codes
//! (`S1,S10`), mapped to this gateway's moderation categories.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

/// One HTTP client for every guardrail service: no redirects, pooled.
pub fn client() -> &'static reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default()
    })
}

/// A JSON `POST`, whole within `timeout`, its answer at most `max_bytes`. The error
/// says what went wrong, never a header's value.
pub async fn post(
    url: &str,
    headers: &[(String, String)],
    body: &Value,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Value, String> {
    let mut rb = client().post(url).json(body);
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    let call = async {
        let r =
            rb.send()
                .await
                .map_err(|e| if e.is_connect() { "could not connect".to_string() } else { e.to_string() })?;
        let status = r.status();
        if r.content_length().is_some_and(|n| n > max_bytes as u64) {
            return Err(format!("answer larger than {max_bytes} bytes (max_answer_bytes)"));
        }
        let mut r = r;
        let mut bytes = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
            if bytes.len() + chunk.len() > max_bytes {
                return Err(format!("answer larger than {max_bytes} bytes (max_answer_bytes)"));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(format!("answered {}", status.as_u16()));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("answer is not JSON: {e}"))
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// What a webhook decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow,
    Flag(String),
    Block(String),
    /// Let through with these messages instead (requests only).
    Replace(Vec<Value>),
}

/// The body sent to a webhook.
pub fn webhook_body(
    guard: &str,
    request_id: &str,
    key_id: &str,
    model: &str,
    messages: Option<&[Value]>,
    output: Option<&str>,
) -> Value {
    let mut v = json!({"guardrail": guard, "request_id": request_id, "key_id": key_id, "model": model});
    match (messages, output) {
        (Some(m), _) => {
            v["direction"] = json!("request");
            v["messages"] = json!(m);
        }
        (None, o) => {
            v["direction"] = json!("response");
            v["output"] = json!(o.unwrap_or_default());
        }
    }
    v
}

/// Reads a webhook's answer.
pub fn webhook_decision(v: &Value, request: bool) -> Result<Decision, String> {
    let reason = v.get("reason").and_then(Value::as_str).unwrap_or("no reason given").to_string();
    match v.get("action").and_then(Value::as_str) {
        Some("allow") => match v.get("messages") {
            Some(Value::Array(m)) if request => {
                if m.iter().all(|m| m.get("role").and_then(Value::as_str).is_some()) {
                    Ok(Decision::Replace(m.clone()))
                } else {
                    Err("`messages` must be messages with a `role`".into())
                }
            }
            Some(_) if request => Err("`messages` must be an array".into()),
            _ => Ok(Decision::Allow),
        },
        Some("flag") => Ok(Decision::Flag(reason)),
        Some("block") => Ok(Decision::Block(reason)),
        Some(other) => Err(format!("unknown action `{other}`")),
        None => Err("no `action` in the answer".into()),
    }
}

/// Presidio's analyze request for one text.
pub fn presidio_body(text: &str, language: &str, score: f64) -> Value {
    json!({"text": text, "language": language, "score_threshold": score})
}

/// The action configured for a Presidio entity type (`*` for the rest; `redact` when
/// nothing is configured).
fn presidio_action<'a>(entities: &'a [(String, String)], entity: &str) -> Option<&'a str> {
    if entities.is_empty() {
        return Some("redact");
    }
    entities
        .iter()
        .find(|(e, _)| e == entity)
        .or_else(|| entities.iter().find(|(e, _)| e == "*"))
        .map(|(_, a)| a.as_str())
}

/// What Presidio's findings did to a text: the new text and `(entity, action)` for each
/// finding acted on.
pub type Applied = (String, Vec<(String, &'static str)>);

/// Applies Presidio's findings to `text`, or names the entity type that blocks it.
pub fn presidio_apply(
    text: &str,
    findings: &Value,
    entities: &[(String, String)],
    min_score: f64,
) -> Result<Applied, String> {
    let Some(items) = findings.as_array() else { return Ok((text.to_string(), Vec::new())) };
    // character offsets, as Presidio (Python) counts them
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |c: usize| chars.get(c).map_or(text.len(), |(b, _)| *b);
    let mut spans: Vec<(usize, usize, String, &'static str)> = Vec::new();
    for f in items {
        let (Some(entity), Some(start), Some(end)) = (
            f.get("entity_type").and_then(Value::as_str),
            f.get("start").and_then(Value::as_u64),
            f.get("end").and_then(Value::as_u64),
        ) else {
            continue;
        };
        let score = f.get("score").and_then(Value::as_f64).unwrap_or(1.0);
        let (start, end) = (start as usize, end as usize);
        if score < min_score || start >= end || end > chars.len() {
            continue;
        }
        let action = match presidio_action(entities, entity) {
            Some("block") => return Err(entity.to_string()),
            Some("redact") => "redact",
            Some("mask") => "mask",
            Some("log") => "log",
            _ => continue,
        };
        spans.push((byte_at(start), byte_at(end), entity.to_string(), action));
    }
    spans.sort_by_key(|s| s.0);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut done = Vec::new();
    for (start, end, entity, action) in spans {
        if start < at {
            continue; // overlaps one already applied
        }
        out.push_str(&text[at..start]);
        let value = &text[start..end];
        match action {
            "redact" => out.push_str(&format!("[{entity}]")),
            "mask" => {
                let n = value.chars().count();
                out.extend(value.chars().enumerate().map(|(i, c)| if i + 4 < n { '*' } else { c }));
            }
            _ => out.push_str(value),
        }
        at = end;
        done.push((entity, action));
    }
    out.push_str(&text[at..]);
    Ok((out, done))
}

/// Llama Guard 3's hazard codes, as this gateway's moderation categories (`None`: a
/// hazard with no category here, such as specialized advice or elections).
fn llama_guard_category(code: &str) -> Option<&'static str> {
    Some(match code.trim() {
        "S1" => "violence",
        "S2" | "S9" | "S14" => "illicit",
        "S3" | "S4" | "S12" => "sexual",
        "S5" => "harassment",
        "S10" => "hate",
        "S11" => "self-harm",
        _ => return None,
    })
}

/// A Llama-Guard-style answer: `Some([])` for `safe`, `Some(categories)` for `unsafe`
/// (`["unsafe"]`'s codes mapped; a hazard with no category here is `other`), `None` when
/// it is neither.
pub fn llama_guard_verdict(answer: &str) -> Option<Vec<&'static str>> {
    let mut lines = answer.trim().lines().map(str::trim).filter(|l| !l.is_empty());
    match lines.next()?.to_ascii_lowercase().as_str() {
        "safe" => Some(Vec::new()),
        "unsafe" => {
            let mut cats: Vec<&'static str> = lines
                .next()
                .unwrap_or_default()
                .split(',')
                .map(|c| llama_guard_category(c).unwrap_or("other"))
                .collect();
            cats.sort_unstable();
            cats.dedup();
            if cats.is_empty() {
                cats.push("other");
            }
            Some(cats)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_answers_are_read_strictly() {
        let d = |v: Value| webhook_decision(&v, true);
        assert_eq!(d(json!({"action": "allow"})), Ok(Decision::Allow));
        assert_eq!(d(json!({"action": "block", "reason": "r"})), Ok(Decision::Block("r".into())));
        assert_eq!(d(json!({"action": "flag"})), Ok(Decision::Flag("no reason given".into())));
        let m = json!([{"role": "user", "content": "x"}]);
        assert_eq!(d(json!({"action": "allow", "messages": m})), Ok(Decision::Replace(m.as_array().unwrap().clone())));
        assert!(d(json!({"action": "allow", "messages": [1]})).is_err());
        assert!(d(json!({"action": "allow", "messages": "x"})).is_err());
        assert!(d(json!({"action": "maybe"})).is_err());
        assert!(d(json!({})).is_err());
        // an answer's webhook cannot replace messages
        assert_eq!(webhook_decision(&json!({"action": "allow", "messages": "x"}), false), Ok(Decision::Allow));
        let b = webhook_body("g", "r1", "k", "m", None, Some("hi"));
        assert_eq!((b["direction"].as_str(), b["output"].as_str()), (Some("response"), Some("hi")));
    }

    #[test]
    fn presidio_findings_are_applied_by_character_offsets() {
        let text = "Grüße, call 212-555-5555, SSN 078-05-1120";
        let findings = json!([
            {"entity_type": "PHONE_NUMBER", "start": 12, "end": 24, "score": 0.75},
            {"entity_type": "US_SSN", "start": 30, "end": 41, "score": 0.85},
            {"entity_type": "PERSON", "start": 0, "end": 5, "score": 0.2}
        ]);
        let entities = vec![("US_SSN".to_string(), "mask".to_string()), ("*".to_string(), "redact".to_string())];
        let (out, done) = presidio_apply(text, &findings, &entities, 0.5).unwrap();
        assert_eq!(out, "Grüße, call [PHONE_NUMBER], SSN *******1120");
        assert_eq!(done.len(), 2);
        let block = vec![("US_SSN".to_string(), "block".to_string())];
        assert_eq!(presidio_apply(text, &findings, &block, 0.5).unwrap_err(), "US_SSN");
        // out of range or malformed findings are skipped
        let bad = json!([{"entity_type": "X", "start": 5, "end": 500}, {"start": 1}]);
        assert_eq!(presidio_apply(text, &bad, &[], 0.5).unwrap().0, text);
    }

    #[test]
    fn llama_guard_answers_map_to_categories() {
        assert_eq!(llama_guard_verdict("safe"), Some(vec![]));
        assert_eq!(llama_guard_verdict("\n\nunsafe\nS1,S10"), Some(vec!["hate", "violence"]));
        assert_eq!(llama_guard_verdict("unsafe\nS6"), Some(vec!["other"]));
        assert_eq!(llama_guard_verdict("unsafe"), Some(vec!["other"]));
        assert_eq!(llama_guard_verdict("I cannot help"), None);
    }
}
