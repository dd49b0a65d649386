//! Token estimates before the call (tiktoken's o200k_base), used for the tpm reservation
//! and when a provider reports no usage.

use serde_json::Value;

use crate::types::{ChatRequest, EmbeddingsRequest};

/// Per-message framing tokens in OpenAI's chat format.
const PER_MESSAGE: u64 = 4;
const PER_REQUEST: u64 = 3;

pub fn count_text(text: &str) -> u64 {
    tiktoken_rs::o200k_base_singleton().count_ordinary(text) as u64
}

fn count_content(v: &Value) -> u64 {
    match v {
        Value::String(s) => count_text(s),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("text") {
                Some(Value::String(s)) => count_text(s),
                // images and audio: a flat nominal cost, providers bill them separately
                _ => 85,
            })
            .sum(),
        Value::Null => 0,
        other => count_text(&other.to_string()),
    }
}

/// Prompt tokens of a chat request.
pub fn estimate_prompt(req: &ChatRequest) -> u64 {
    let mut n = PER_REQUEST;
    for m in &req.messages {
        n += PER_MESSAGE;
        if let Some(c) = m.get("content") {
            n += count_content(c);
        }
        if let Some(calls) = m.get("tool_calls") {
            n += count_text(&calls.to_string());
        }
    }
    if let Some(tools) = req.rest.get("tools") {
        n += count_text(&tools.to_string());
    }
    n
}

/// What the tpm limit reserves: the prompt plus the most the reply may use.
pub fn reservation(req: &ChatRequest, prompt: u64) -> u64 {
    prompt + req.max_output_tokens().unwrap_or(0)
}

/// Input tokens of an embeddings request.
pub fn estimate_embeddings(req: &EmbeddingsRequest) -> u64 {
    match &req.input {
        Value::String(s) => count_text(s),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => count_text(s),
                Value::Array(ids) => ids.len() as u64, // pre-tokenized input
                Value::Number(_) => 1,
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tokens_of_messages() {
        let req: ChatRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"user","content":"Hello world"}],"max_tokens":10}"#,
        )
        .unwrap();
        let p = estimate_prompt(&req);
        assert_eq!(p, 3 + 4 + 2);
        assert_eq!(reservation(&req, p), p + 10);
    }

    #[test]
    fn counts_content_parts_and_embeddings() {
        let req: ChatRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"Hello world"},{"type":"image_url","image_url":{"url":"x"}}]}]}"#,
        )
        .unwrap();
        assert_eq!(estimate_prompt(&req), 3 + 4 + 2 + 85);
        let e: EmbeddingsRequest = serde_json::from_str(r#"{"model":"m","input":["Hello world","a"]}"#).unwrap();
        assert_eq!(estimate_embeddings(&e), 3);
    }
}
