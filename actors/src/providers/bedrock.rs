//! Amazon Bedrock's Converse API (`POST {base_url}/model/{model}/converse` and
//! `/converse-stream`), pure translation. The stream is AWS's binary event-stream
//! framing; the frames are decoded by `aws-smithy-eventstream` in the client, and each
//! decoded message (its `:event-type` and JSON payload) comes here.
//! - [`chat_body`]: OpenAI chat → Converse (`system`, content blocks, `toolUse`,
//!   `toolResult`, `inferenceConfig`, `toolConfig`);
//! - [`completion`]: a Converse answer → `chat.completion`;
//! - [`StreamTranslator`]: ConverseStream events → chunks (usage from `metadata`, which
//!   Bedrock sends after `messageStop`).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::adapter::bad;
use super::capabilities::Capabilities;
use super::openai::{function_tools, map_content, push_turn, stop_list, tool_arguments};
use super::sse::{data_event, DONE};
use super::{DecodeCtx, DecodeError, Sign, StreamTranslate};
use crate::types::{ChatRequest, EmbeddingsRequest, Endpoint};
use crate::GatewayError;
use switchyard_config::Provider;

/// `kind = "bedrock"`: the Converse API, SigV4-signed.
pub struct Bedrock;

impl super::Adapter for Bedrock {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::MINIMAL
    }

    fn url(&self, p: &Provider, endpoint: Endpoint, model: &str, stream: bool) -> Result<String, GatewayError> {
        if endpoint == Endpoint::Embeddings {
            return Err(unsupported("embeddings"));
        }
        let op = if stream { "converse-stream" } else { "converse" };
        // model ids such as `anthropic.claude-3-haiku-20240307-v1:0` are one path segment
        Ok(format!("{}/model/{}/{op}", p.base_url, super::adapter::path_segment(model)))
    }

    fn url_per_call(&self) -> bool {
        true
    }

    fn stream_framing(&self) -> super::Framing {
        super::Framing::Binary
    }

    fn stream_accept(&self) -> &'static str {
        "application/vnd.amazon.eventstream"
    }

    fn signer(&self, p: &Provider, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Box<dyn Sign>>, String> {
        match &p.aws {
            Some(a) => Ok(Some(Box::new(super::aws::Signer::new(a, env)?))),
            None => Ok(None),
        }
    }

    fn translate_chat(&self, req: &ChatRequest, _model: &str) -> Result<Vec<u8>, GatewayError> {
        chat_body(req)
    }

    fn translate_embeddings(&self, _req: &EmbeddingsRequest, _model: &str) -> Result<Vec<u8>, GatewayError> {
        Err(unsupported("embeddings"))
    }

    fn decode(&self, _endpoint: Endpoint, body: Bytes, cx: &DecodeCtx<'_>) -> Result<Bytes, DecodeError> {
        completion(&body, cx.model, &cx.new_id(), cx.created).map_err(|e| DecodeError(format!("bedrock answer: {e}")))
    }

    fn stream_decoder(&self, cx: &DecodeCtx<'_>) -> Option<Box<dyn StreamTranslate>> {
        let t = StreamTranslator::new(cx.new_id(), cx.model.to_string(), cx.created);
        Some(Box::new(super::aws::EventStream::new(t)))
    }
}

fn unsupported(what: &str) -> GatewayError {
    super::adapter::unsupported("bedrock", what)
}

/// OpenAI content as Converse content blocks.
fn blocks(content: Option<&Value>, at: &str) -> Result<Vec<Value>, GatewayError> {
    map_content(
        content,
        at,
        "bedrock",
        |t| json!({"text": t}),
        |media, data| {
            let format = media.strip_prefix("image/").unwrap_or(media);
            json!({"image": {"format": format, "source": {"bytes": data}}})
        },
    )
}

/// The OpenAI chat request as a Converse request.
pub fn chat_body(req: &ChatRequest) -> Result<Vec<u8>, GatewayError> {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.get("role").and_then(Value::as_str).unwrap_or_default() {
            "system" | "developer" => system.extend(blocks(m.get("content"), &at)?),
            "user" => push_turn(&mut messages, "user", "content", blocks(m.get("content"), &at)?),
            "assistant" => {
                let mut b = blocks(m.get("content"), &at)?;
                for (j, c) in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let f = c.get("function").unwrap_or(&Value::Null);
                    let input = tool_arguments(c, &at, j)?;
                    b.push(json!({"toolUse": {"toolUseId": c.get("id"), "name": f.get("name"), "input": input}}));
                }
                push_turn(&mut messages, "assistant", "content", b);
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("{at}: a tool message needs `tool_call_id`")))?;
                let text = match m.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    other => {
                        blocks(other, &at)?.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n")
                    }
                };
                let content = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => json!([{"json": v}]),
                    _ => json!([{"text": text}]),
                };
                push_turn(
                    &mut messages,
                    "user",
                    "content",
                    vec![json!({"toolResult": {"toolUseId": id, "content": content, "status": "success"}})],
                );
            }
            other => return Err(unsupported(&format!("`{other}` messages"))),
        }
    }
    if messages.is_empty() {
        return Err(bad("the request needs at least one user or assistant message".into()));
    }
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let mut inference = Map::new();
    if let Some(n) = req.max_completion_tokens.or(req.max_tokens) {
        inference.insert("maxTokens".into(), json!(n));
    }
    let mut tool_config = Map::new();
    for (k, v) in &req.rest {
        match k.as_str() {
            "temperature" => {
                inference.insert("temperature".into(), v.clone());
            }
            "top_p" => {
                inference.insert("topP".into(), v.clone());
            }
            "stop" => {
                inference.insert("stopSequences".into(), stop_list(v));
            }
            "tools" => {
                let tools: Vec<Value> = function_tools(v, "bedrock")?
                    .into_iter()
                    .map(|t| {
                        let schema = t.parameters.cloned().unwrap_or_else(|| json!({"type": "object"}));
                        let mut spec = json!({"name": t.name, "inputSchema": {"json": schema}});
                        if let Some(d) = t.description {
                            spec["description"] = d.clone();
                        }
                        json!({"toolSpec": spec})
                    })
                    .collect();
                tool_config.insert("tools".into(), Value::Array(tools));
            }
            "tool_choice" => {
                let choice = match v {
                    Value::String(s) if s == "auto" => Some(json!({"auto": {}})),
                    Value::String(s) if s == "required" => Some(json!({"any": {}})),
                    // Converse has no "none": the tools are simply not sent
                    Value::String(s) if s == "none" => None,
                    Value::Object(o) => match o.get("function").and_then(|f| f.get("name")) {
                        Some(name) => Some(json!({"tool": {"name": name}})),
                        None => return Err(bad("`tool_choice` names no function".into())),
                    },
                    _ => return Err(bad("`tool_choice` must be auto, none, required or a function".into())),
                };
                match choice {
                    Some(c) => {
                        tool_config.insert("toolChoice".into(), c);
                    }
                    None => {
                        tool_config.insert("none".into(), json!(true));
                    }
                }
            }
            "n" if v.as_u64().unwrap_or(1) > 1 => return Err(unsupported("`n` greater than 1")),
            "logprobs" if v == &json!(true) => return Err(unsupported("`logprobs`")),
            "web_search_options" if !v.is_null() => {
                return Err(unsupported("web search (`web_search_options`, a `web_search` tool)"))
            }
            "response_format" if v.get("type").and_then(Value::as_str).is_some_and(|t| t != "text") => {
                return Err(unsupported("`response_format` (JSON mode)"))
            }
            _ => {}
        }
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if tool_config.remove("none").is_none() && tool_config.contains_key("tools") {
        out.insert("toolConfig".into(), Value::Object(tool_config));
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| GatewayError::Internal(e.to_string()))
}

/// OpenAI's finish reason for a Converse stop reason.
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

fn usage(u: Option<&Value>) -> Value {
    let n = |k: &str| u.and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cacheReadInputTokens");
    let prompt = n("inputTokens") + cached + n("cacheWriteInputTokens");
    let completion = n("outputTokens");
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached}})
}

/// A Converse answer as a `chat.completion`.
pub fn completion(body: &[u8], model: &str, id: &str, created: u64) -> Result<Bytes, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let content = v.pointer("/output/message/content").and_then(Value::as_array).ok_or("no `output.message`")?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in content {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
        if let Some(u) = b.get("toolUse") {
            calls.push(json!({"id": u.get("toolUseId"), "type": "function", "function": {"name": u.get("name"),
                "arguments": u.get("input").map_or_else(|| "{}".to_string(), Value::to_string)}}));
        }
    }
    let called = !calls.is_empty();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && called { Value::Null } else { json!(text) }, "refusal": null});
    if called {
        message["tool_calls"] = Value::Array(calls);
    }
    let stop = v.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn");
    let out = json!({"id": format!("chatcmpl-{id}"), "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(stop)}],
        "usage": usage(v.get("usage"))});
    Ok(Bytes::from(out.to_string()))
}

/// Turns ConverseStream events into chunks.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    /// Content block index → tool-call index.
    tools: HashMap<u64, usize>,
    finish: Option<&'static str>,
    done: bool,
}

impl StreamTranslator {
    pub fn new(id: String, model: String, created: u64) -> StreamTranslator {
        StreamTranslator { id, model, created, tools: HashMap::new(), finish: None, done: false }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let c = json!({"id": format!("chatcmpl-{}", self.id), "object": "chat.completion.chunk",
            "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        data_event(&c.to_string())
    }

    fn end(&mut self, u: Option<&Value>) -> Vec<Bytes> {
        self.done = true;
        let c = json!({"id": format!("chatcmpl-{}", self.id), "object": "chat.completion.chunk",
            "created": self.created, "model": self.model, "choices": [], "usage": usage(u)});
        vec![data_event(&c.to_string()), Bytes::from_static(DONE)]
    }

    /// One decoded message: `message_type` is `event` or `exception`, `kind` its
    /// `:event-type` (or `:exception-type`).
    pub fn on_message(&mut self, message_type: &str, kind: &str, payload: &[u8]) -> Result<Vec<Bytes>, String> {
        if self.done {
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_slice(payload).map_err(|e| format!("invalid event JSON: {e}"))?;
        if message_type != "event" {
            self.done = true;
            let message = v.get("message").or(v.get("Message")).and_then(Value::as_str).unwrap_or("stream exception");
            let body = json!({"error": {"message": format!("bedrock {kind}: {message}"), "type": "api_error", "code": "upstream_error"}});
            return Ok(vec![data_event(&body.to_string())]);
        }
        let mut out = Vec::new();
        match kind {
            "messageStart" => out.push(self.chunk(json!({"role": "assistant", "content": ""}), None)),
            "contentBlockStart" => {
                if let Some(t) = v.pointer("/start/toolUse") {
                    let index = v.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
                    let n = self.tools.len();
                    self.tools.insert(index, n);
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": n, "id": t.get("toolUseId"), "type": "function",
                        "function": {"name": t.get("name"), "arguments": ""}}]}),
                        None,
                    ));
                }
            }
            "contentBlockDelta" => {
                let index = v.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
                if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                    out.push(self.chunk(json!({"content": t}), None));
                }
                if let Some(part) = v.pointer("/delta/toolUse/input").and_then(Value::as_str) {
                    let n = *self
                        .tools
                        .get(&index)
                        .ok_or_else(|| format!("tool input for block {index}, which is no tool"))?;
                    out.push(self.chunk(json!({"tool_calls": [{"index": n, "function": {"arguments": part}}]}), None));
                }
            }
            "messageStop" => {
                let f = finish_reason(v.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn"));
                self.finish = Some(f);
                out.push(self.chunk(json!({}), Some(f)));
            }
            "metadata" if self.finish.is_some() => out.extend(self.end(v.get("usage"))),
            _ => {}
        }
        Ok(out)
    }

    /// The end of the body: a stopped message without `metadata` still ends cleanly; one
    /// that never stopped was cut and gets nothing (the relay reports it).
    pub fn finish(&mut self) -> Vec<Bytes> {
        if self.done || self.finish.is_none() {
            return Vec::new();
        }
        self.end(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Value {
        let req = ChatRequest::parse(v.to_string().as_bytes()).unwrap();
        serde_json::from_slice(&chat_body(&req).unwrap()).unwrap()
    }

    #[test]
    fn requests_become_converse() {
        let out = body(
            json!({"model": "a", "max_tokens": 100, "temperature": 0.5, "stop": "END", "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}],
            "messages": [{"role": "system", "content": "brief"},
                {"role": "user", "content": [{"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}}]},
                {"role": "assistant", "tool_calls": [{"id": "t1", "function": {"name": "get", "arguments": "{\"q\":1}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "{\"a\": 2}"}]}),
        );
        assert_eq!(out["system"], json!([{"text": "brief"}]));
        assert_eq!(out["inferenceConfig"], json!({"maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"]}));
        assert_eq!(out["toolConfig"]["toolChoice"], json!({"any": {}}));
        assert_eq!(out["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"], json!({"json": {"type": "object"}}));
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m[0]["content"][1], json!({"image": {"format": "jpeg", "source": {"bytes": "QUJD"}}}));
        assert_eq!(m[1]["content"][0], json!({"toolUse": {"toolUseId": "t1", "name": "get", "input": {"q": 1}}}));
        assert_eq!(m[2]["content"][0]["toolResult"]["content"], json!([{"json": {"a": 2}}]));
        // tool_choice none: the tools are not sent
        let none = body(json!({"model": "a", "tool_choice": "none", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "get"}}]}));
        assert!(none.get("toolConfig").is_none());
    }

    #[test]
    fn answers_and_streams_become_openai() {
        let a = json!({"output": {"message": {"role": "assistant", "content": [{"text": "ok"},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "get", "input": {"q": 3}}}]}},
            "stopReason": "tool_use", "usage": {"inputTokens": 10, "outputTokens": 4, "totalTokens": 14, "cacheReadInputTokens": 2},
            "metrics": {"latencyMs": 100}});
        let c: Value = serde_json::from_slice(&completion(a.to_string().as_bytes(), "m", "id", 1).unwrap()).unwrap();
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["choices"][0]["message"]["tool_calls"][0]["id"], "tooluse_1");
        assert_eq!(c["usage"]["prompt_tokens"], 12);

        let mut t = StreamTranslator::new("id".into(), "m".into(), 1);
        let mut out = Vec::new();
        for (kind, payload) in [
            ("messageStart", json!({"role": "assistant"})),
            ("contentBlockDelta", json!({"delta": {"text": "Hi"}, "contentBlockIndex": 0})),
            ("contentBlockStop", json!({"contentBlockIndex": 0})),
            (
                "contentBlockStart",
                json!({"start": {"toolUse": {"toolUseId": "tu1", "name": "get"}}, "contentBlockIndex": 1}),
            ),
            ("contentBlockDelta", json!({"delta": {"toolUse": {"input": "{\"q\""}}, "contentBlockIndex": 1})),
            ("contentBlockDelta", json!({"delta": {"toolUse": {"input": ":1}"}}, "contentBlockIndex": 1})),
            ("messageStop", json!({"stopReason": "tool_use"})),
            (
                "metadata",
                json!({"usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}, "metrics": {"latencyMs": 9}}),
            ),
        ] {
            out.extend(t.on_message("event", kind, payload.to_string().as_bytes()).unwrap());
        }
        let chunks: Vec<Value> = out
            .iter()
            .filter_map(|b| std::str::from_utf8(b).ok()?.strip_prefix("data: ")?.trim().parse().ok())
            .collect();
        let mut acc = crate::providers::openai::StreamAccumulator::default();
        for c in &chunks {
            acc.add(c);
        }
        let done = acc.completion();
        assert_eq!(done["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"q\":1}");
        assert_eq!(done["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 7);
        assert!(String::from_utf8(out.last().unwrap().to_vec()).unwrap().contains("[DONE]"));

        let mut t = StreamTranslator::new("id".into(), "m".into(), 1);
        let e = t.on_message("exception", "throttlingException", br#"{"message":"Too many requests"}"#).unwrap();
        assert!(String::from_utf8(e[0].to_vec()).unwrap().contains("Too many requests"));
        assert!(t.finish().is_empty());
    }
}
