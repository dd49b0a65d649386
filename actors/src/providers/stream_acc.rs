//! A stream's chunks, accumulated: the relay meters a stream and rebuilds its
//! non-stream completion (for the cache, the request log and the trace) from them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::types::Usage;

#[derive(Default, Debug)]
struct ToolCallAcc {
    id: Option<String>,
    kind: Option<String>,
    name: String,
    arguments: String,
}

/// What the relay learns from one chunk.
#[derive(Debug, PartialEq)]
pub struct ChunkFacts {
    /// It carried content, a refusal or a tool call.
    pub had_content: bool,
    /// Only the usage (`choices` empty).
    pub usage_only: bool,
    /// An `error` object's message: the provider failed mid-stream.
    pub error: Option<String>,
}

/// One stream chunk, borrowed from its text where it can be.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    created: Option<Value>,
    system_fingerprint: Option<Value>,
    usage: Option<Value>,
    #[serde(borrow)]
    choices: Option<Vec<ChunkChoice<'a>>>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    index: Option<u64>,
    #[serde(borrow)]
    delta: Option<ChunkDelta<'a>>,
    finish_reason: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkDelta<'a> {
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<ChunkToolCall<'a>>>,
}

#[derive(Deserialize)]
struct ChunkToolCall<'a> {
    index: Option<u64>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: Option<ChunkFunction<'a>>,
}

#[derive(Deserialize)]
struct ChunkFunction<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Default, Debug)]
struct ChoiceAcc {
    role: Option<String>,
    content: String,
    has_content: bool,
    refusal: Option<String>,
    finish_reason: Option<Value>,
    tool_calls: BTreeMap<u64, ToolCallAcc>,
}

/// Builds the full completion out of a stream's chunks, in order, including tool calls
/// whose arguments arrive split across many chunks.
#[derive(Default, Debug)]
pub struct StreamAccumulator {
    id: Option<String>,
    model: Option<String>,
    created: Option<Value>,
    system_fingerprint: Option<Value>,
    choices: BTreeMap<u64, ChoiceAcc>,
    pub usage: Option<Usage>,
    usage_raw: Option<Value>,
    /// Characters of content seen (for estimating output tokens without usage).
    pub content_text: String,
}

impl StreamAccumulator {
    /// Takes one parsed chunk; returns whether it carried content or a tool call.
    pub fn add(&mut self, chunk: &Value) -> bool {
        let mut had_content = false;
        if self.id.is_none() {
            self.id = chunk.get("id").and_then(Value::as_str).map(str::to_string);
            self.model = chunk.get("model").and_then(Value::as_str).map(str::to_string);
            self.created = chunk.get("created").cloned();
        }
        if let Some(fp) = chunk.get("system_fingerprint").filter(|v| !v.is_null()) {
            self.system_fingerprint = Some(fp.clone());
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Usage::from_openai(u);
            self.usage_raw = Some(u.clone());
        }
        for c in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let acc = self.choices.entry(index).or_default();
            if let Some(d) = c.get("delta") {
                if let Some(r) = d.get("role").and_then(Value::as_str) {
                    acc.role = Some(r.to_string());
                }
                if let Some(t) = d.get("content").and_then(Value::as_str) {
                    acc.has_content = true;
                    if !t.is_empty() {
                        had_content = true;
                        acc.content.push_str(t);
                        self.content_text.push_str(t);
                    }
                }
                if let Some(t) = d.get("refusal").and_then(Value::as_str) {
                    acc.refusal.get_or_insert_with(String::new).push_str(t);
                    had_content = true;
                }
                for tc in d.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    had_content = true;
                    let ti = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let t = acc.tool_calls.entry(ti).or_default();
                    if let Some(id) = tc.get("id").and_then(Value::as_str) {
                        t.id = Some(id.to_string());
                    }
                    if let Some(k) = tc.get("type").and_then(Value::as_str) {
                        t.kind = Some(k.to_string());
                    }
                    if let Some(f) = tc.get("function") {
                        if let Some(n) = f.get("name").and_then(Value::as_str) {
                            t.name.push_str(n);
                        }
                        if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                            t.arguments.push_str(a);
                            self.content_text.push_str(a);
                        }
                    }
                }
            }
            if let Some(f) = c.get("finish_reason").filter(|f| !f.is_null()) {
                acc.finish_reason = Some(f.clone());
            }
        }
        had_content
    }

    /// Takes one chunk's JSON text: the relay's path. The chunk is read into borrowed,
    /// typed fields (a `Value` per chunk was most of the relay's cost); a chunk whose
    /// fields have other types than OpenAI's goes the `Value` way, as [`add`](Self::add).
    pub fn add_str(&mut self, data: &str) -> Result<ChunkFacts, serde_json::Error> {
        let Ok(c) = serde_json::from_str::<Chunk<'_>>(data) else {
            let v: Value = serde_json::from_str(data)?;
            let error = v
                .get("error")
                .filter(|e| !e.is_null())
                .map(|e| e.get("message").and_then(Value::as_str).unwrap_or("upstream error").to_string());
            let usage_only = v.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty)
                && v.get("usage").is_some_and(|u| !u.is_null());
            let had_content = error.is_none() && self.add(&v);
            return Ok(ChunkFacts { had_content, usage_only, error });
        };
        if let Some(e) = c.error {
            let message = e.get("message").and_then(Value::as_str).unwrap_or("upstream error").to_string();
            return Ok(ChunkFacts { had_content: false, usage_only: false, error: Some(message) });
        }
        let mut had_content = false;
        if self.id.is_none() {
            self.id = c.id.map(Cow::into_owned);
            self.model = c.model.map(Cow::into_owned);
            self.created = c.created;
        }
        if c.system_fingerprint.is_some() {
            self.system_fingerprint = c.system_fingerprint;
        }
        let usage_only = c.choices.as_ref().is_some_and(Vec::is_empty) && c.usage.is_some();
        if let Some(u) = c.usage {
            self.usage = Usage::from_openai(&u);
            self.usage_raw = Some(u);
        }
        for ch in c.choices.into_iter().flatten() {
            let acc = self.choices.entry(ch.index.unwrap_or(0)).or_default();
            if let Some(d) = ch.delta {
                if let Some(r) = d.role {
                    acc.role = Some(r.into_owned());
                }
                if let Some(t) = d.content {
                    acc.has_content = true;
                    if !t.is_empty() {
                        had_content = true;
                        acc.content.push_str(&t);
                        self.content_text.push_str(&t);
                    }
                }
                if let Some(t) = d.refusal {
                    acc.refusal.get_or_insert_with(String::new).push_str(&t);
                    had_content = true;
                }
                for tc in d.tool_calls.into_iter().flatten() {
                    had_content = true;
                    let t = acc.tool_calls.entry(tc.index.unwrap_or(0)).or_default();
                    if let Some(id) = tc.id {
                        t.id = Some(id.into_owned());
                    }
                    if let Some(k) = tc.kind {
                        t.kind = Some(k.into_owned());
                    }
                    if let Some(f) = tc.function {
                        if let Some(n) = f.name {
                            t.name.push_str(&n);
                        }
                        if let Some(a) = f.arguments {
                            t.arguments.push_str(&a);
                            self.content_text.push_str(&a);
                        }
                    }
                }
            }
            if ch.finish_reason.is_some() {
                acc.finish_reason = ch.finish_reason;
            }
        }
        Ok(ChunkFacts { had_content, usage_only, error: None })
    }

    /// Whether every choice seen has a finish reason.
    pub fn finished(&self) -> bool {
        !self.choices.is_empty() && self.choices.values().all(|c| c.finish_reason.is_some())
    }

    /// The stream's id, model and finish reasons (for its trace).
    pub fn answer(&self) -> crate::telemetry::Answer {
        crate::telemetry::Answer {
            id: self.id.clone(),
            model: self.model.clone(),
            finish_reasons: self
                .choices
                .values()
                .filter_map(|c| c.finish_reason.as_ref().and_then(Value::as_str).map(str::to_string))
                .collect(),
        }
    }

    /// The equivalent non-stream `chat.completion`.
    pub fn completion(&self) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .map(|(i, c)| {
                let mut message = json!({
                    "role": c.role.clone().unwrap_or_else(|| "assistant".into()),
                    "content": if c.has_content || c.tool_calls.is_empty() { Value::String(c.content.clone()) } else { Value::Null },
                });
                if let Some(r) = &c.refusal {
                    message["refusal"] = Value::String(r.clone());
                }
                if !c.tool_calls.is_empty() {
                    message["tool_calls"] = c
                        .tool_calls
                        .values()
                        .map(|t| {
                            json!({
                                "id": t.id, "type": t.kind.clone().unwrap_or_else(|| "function".into()),
                                "function": {"name": t.name, "arguments": t.arguments},
                            })
                        })
                        .collect();
                }
                json!({"index": i, "message": message, "logprobs": null,
                       "finish_reason": c.finish_reason.clone().unwrap_or(Value::Null)})
            })
            .collect();
        let mut out = json!({
            "id": self.id, "object": "chat.completion", "created": self.created.clone().unwrap_or(json!(0)),
            "model": self.model, "choices": choices,
        });
        if let Some(fp) = &self.system_fingerprint {
            out["system_fingerprint"] = fp.clone();
        }
        if let Some(u) = &self.usage_raw {
            out["usage"] = u.clone();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks of every shape the relay meets, the odd ones included.
    fn corpus() -> Vec<String> {
        let mut chunks: Vec<String> = include_str!("fixtures/openai_stream.sse")
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(str::to_string)
            .collect();
        chunks.extend(
            [
                r#"{"id":"c1","model":"m","created":7,"system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"caf\u00e9 \"quoted\"\n"}}]}"#,
                r#"{"choices":[{"index":1,"delta":{"refusal":"no"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"a\""}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":null},"logprobs":{"content":[]},"finish_reason":"tool_calls"}]}"#,
                r#"{"choices":[{"index":1,"delta":{},"finish_reason":"stop"}],"system_fingerprint":null}"#,
                r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#,
                // not OpenAI's types: the Value way
                r#"{"choices":[{"index":"2","delta":{"content":"odd index"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":["a","b"]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"role":7}}],"usage":null}"#,
            ]
            .map(str::to_string),
        );
        chunks
    }

    #[test]
    fn the_typed_path_accumulates_as_the_value_path() {
        let (mut typed, mut valued) = (StreamAccumulator::default(), StreamAccumulator::default());
        for chunk in corpus() {
            let v: Value = serde_json::from_str(&chunk).unwrap();
            let facts = typed.add_str(&chunk).unwrap();
            assert_eq!(facts.had_content, valued.add(&v), "{chunk}");
            assert_eq!(facts.error, None);
            let usage_only = v["choices"].as_array().is_some_and(Vec::is_empty) && !v["usage"].is_null();
            assert_eq!(facts.usage_only, usage_only, "{chunk}");
        }
        assert_eq!(typed.completion(), valued.completion());
        assert_eq!(typed.content_text, valued.content_text);
        assert_eq!(typed.usage, valued.usage);
        assert_eq!(typed.finished(), valued.finished());
        let args = typed.completion()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"].clone();
        assert!(args.as_str().is_some_and(|a| a.ends_with("{\"a\":1}")), "{args}");
    }

    #[test]
    fn an_error_chunk_and_bad_json() {
        let mut acc = StreamAccumulator::default();
        let facts = acc.add_str(r#"{"error":{"type":"overloaded_error","message":"Overloaded"}}"#).unwrap();
        assert_eq!(facts.error.as_deref(), Some("Overloaded"));
        let facts = acc.add_str(r#"{"error":"plain text","choices":[]}"#).unwrap();
        assert_eq!(facts.error.as_deref(), Some("upstream error"));
        assert!(acc.add_str("{not json").is_err());
        assert!(acc.add_str(r#"{"choices":[{"delta":{"content":"x"}}]}"#).unwrap().had_content);
    }
}
