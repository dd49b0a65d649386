//! Token estimates before the call (o200k_base, counted by [`crate::bpe`]), used for the
//! tpm reservation and when a provider reports no usage.

use serde_json::Value;

use crate::types::{ChatRequest, EmbeddingsRequest};

/// Per-message framing tokens in OpenAI's chat format.
const PER_MESSAGE: u64 = 4;
const PER_REQUEST: u64 = 3;

/// Loads the tokenizer's tables (about 60 ms) without tokenizing anything.
///
/// Not by counting a word at start: the tokenizer's regex keeps its scratch space in a
/// pool whose fast path belongs to the first thread that matches with it; every other
/// thread takes a lock to borrow scratch space, and gives it back, once per word. Had
/// the main thread warmed it up, no HTTP worker would get the fast path: that lock was
/// 30% of counting a long prompt. Now the first worker to count owns it (with one
/// worker, every count).
pub fn load_tables() {
    let _ = crate::bpe::o200k();
}

/// Texts up to this many bytes (about 8k tokens of English) are counted exactly.
pub const EXACT_BYTES: usize = 32 * 1024;
/// Longer ones are sampled: this many evenly spaced windows of [`WINDOW_BYTES`] are
/// counted, and the whole text is estimated at their tokens per byte.
const WINDOWS: usize = 4;
const WINDOW_BYTES: usize = 8 * 1024;

/// The tokens of `text`: exact up to [`EXACT_BYTES`], sampled beyond. Counting costs
/// about 0.12 µs per token on the thread that serves the request, and nothing else runs
/// on that thread meanwhile: a 76k-token prompt held its worker for 9-13 ms. Sampled,
/// any text costs at most what 32 KiB does, and natural text stays within a few percent
/// (the tests bound it); the estimate only reserves tokens before the call, and the
/// provider's own count replaces it after.
pub fn count_text(text: &str) -> u64 {
    let bpe = crate::bpe::o200k();
    if text.len() <= EXACT_BYTES {
        return bpe.count(text) as u64;
    }
    let stride = (text.len() - WINDOW_BYTES) / (WINDOWS - 1);
    let (mut tokens, mut bytes) = (0usize, 0usize);
    for i in 0..WINDOWS {
        let start = char_boundary_at_or_before(text, i * stride);
        let end = char_boundary_at_or_before(text, (start + WINDOW_BYTES).min(text.len()));
        let window = &text[start..end];
        tokens += bpe.count(window);
        bytes += window.len();
    }
    if bytes == 0 {
        return 0;
    }
    (tokens as f64 * text.len() as f64 / bytes as f64).ceil() as u64
}

fn char_boundary_at_or_before(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The texts of one request, counted exactly until [`REQUEST_BUDGET_BYTES`] of them
/// have been read; the rest are estimated at the tokens per byte seen so far. Without
/// it, a request of many texts each under [`EXACT_BYTES`] (a long conversation, a
/// batch of embeddings inputs) was counted in full on the worker's thread.
#[derive(Default)]
struct Tally {
    tokens: u64,
    bytes: usize,
    skipped_bytes: usize,
}

/// Bytes of text per request counted (or, past [`EXACT_BYTES`], sampled) before the
/// rest is estimated from them.
pub const REQUEST_BUDGET_BYTES: usize = 32 * 1024;

impl Tally {
    fn text(&mut self, text: &str) {
        if self.bytes >= REQUEST_BUDGET_BYTES {
            self.skipped_bytes += text.len();
        } else {
            self.tokens += count_text(text);
            self.bytes += text.len();
        }
    }

    fn total(&self) -> u64 {
        if self.skipped_bytes == 0 || self.bytes == 0 {
            return self.tokens;
        }
        self.tokens + (self.tokens as f64 * self.skipped_bytes as f64 / self.bytes as f64).ceil() as u64
    }
}

fn count_content(v: &Value, tally: &mut Tally) -> u64 {
    match v {
        Value::String(s) => tally.text(s),
        Value::Array(parts) => {
            let mut flat = 0;
            for p in parts {
                match p.get("text") {
                    Some(Value::String(s)) => tally.text(s),
                    // images and audio: a flat nominal cost, providers bill them separately
                    _ => flat += 85,
                }
            }
            return flat;
        }
        Value::Null => {}
        other => tally.text(&other.to_string()),
    }
    0
}

/// Prompt tokens of a chat request.
pub fn estimate_prompt(req: &ChatRequest) -> u64 {
    let mut n = PER_REQUEST;
    let mut tally = Tally::default();
    for m in &req.messages {
        n += PER_MESSAGE;
        if let Some(c) = m.get("content") {
            n += count_content(c, &mut tally);
        }
        if let Some(calls) = m.get("tool_calls") {
            tally.text(&calls.to_string());
        }
    }
    if let Some(tools) = req.rest.get("tools") {
        tally.text(&tools.to_string());
    }
    n + tally.total()
}

/// What the tpm limit reserves: the prompt plus the most the reply may use.
pub fn reservation(req: &ChatRequest, prompt: u64) -> u64 {
    prompt + req.max_output_tokens().unwrap_or(0)
}

/// Input tokens of an embeddings request.
pub fn estimate_embeddings(req: &EmbeddingsRequest) -> u64 {
    let mut tally = Tally::default();
    let mut n = 0;
    match &req.input {
        Value::String(s) => tally.text(s),
        Value::Array(items) => {
            for i in items {
                match i {
                    Value::String(s) => tally.text(s),
                    Value::Array(ids) => n += ids.len() as u64, // pre-tokenized input
                    Value::Number(_) => n += 1,
                    _ => {}
                }
            }
        }
        _ => {}
    }
    n + tally.total()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(text: &str) -> u64 {
        tiktoken_rs::o200k_base_singleton().count_ordinary(text) as u64
    }

    #[test]
    fn short_texts_are_counted_exactly_and_long_ones_sampled_closely() {
        let short = "The gateway counts every token of a short prompt. ".repeat(600);
        assert!(short.len() <= EXACT_BYTES);
        assert_eq!(count_text(&short), exact(&short));

        // varied prose, code and numbers, then multi-byte text: within 5% of exact
        let mut long = String::new();
        for i in 0..3000 {
            long.push_str(&format!(
                "Paragraph {i}: the request of key k-{} asks for {} tokens; fn main() {{ let x = {i} * 7; }}\n",
                i % 17,
                i * 31 % 997
            ));
        }
        let accents = "Grüße aus Zürich, naïve café — 東京の天気は晴れ。✓ ".repeat(2500);
        for text in [long.as_str(), accents.as_str()] {
            assert!(text.len() > EXACT_BYTES * 4);
            let (sampled, exact) = (count_text(text) as f64, exact(text) as f64);
            assert!((sampled - exact).abs() / exact < 0.05, "sampled {sampled} vs exact {exact}");
        }
        // many texts, each short, past the request's budget: the rest is estimated
        let lines: Vec<String> = long.lines().map(str::to_string).collect();
        let messages: Vec<Value> = lines.iter().map(|l| serde_json::json!({"role": "user", "content": l})).collect();
        let total_bytes: usize = lines.iter().map(String::len).sum();
        assert!(total_bytes > REQUEST_BUDGET_BYTES * 2);
        let req = ChatRequest {
            model: "m".into(),
            messages,
            stream: None,
            stream_options: None,
            max_tokens: None,
            max_completion_tokens: None,
            rest: Default::default(),
            native: None,
        };
        let exact_prompt: u64 = PER_REQUEST + lines.iter().map(|l| PER_MESSAGE + exact(l)).sum::<u64>();
        let estimated = estimate_prompt(&req) as f64;
        assert!(
            (estimated - exact_prompt as f64).abs() / (exact_prompt as f64) < 0.05,
            "{estimated} vs {exact_prompt}"
        );
        let emb = EmbeddingsRequest {
            model: "e".into(),
            input: serde_json::json!(lines),
            encoding_format: None,
            dimensions: None,
            rest: Default::default(),
        };
        let exact_inputs: u64 = lines.iter().map(|l| exact(l)).sum();
        let estimated = estimate_embeddings(&emb) as f64;
        assert!(
            (estimated - exact_inputs as f64).abs() / (exact_inputs as f64) < 0.05,
            "{estimated} vs {exact_inputs}"
        );

        // a window may start inside a multi-byte character: no panic, a sane count
        let odd = "é".repeat(EXACT_BYTES) + "x";
        assert!(count_text(&odd) > 0);
    }

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
