//! Anthropic Messages API (`POST {base_url}/messages`), pure translation to and from
//! OpenAI chat completions:
//! - [`chat_body`]: an OpenAI chat request becomes a Messages request (system prompts
//!   lifted to `system`, content parts to blocks, tool calls to `tool_use`, tool
//!   messages to `tool_result`, `max_tokens` supplied when the client gave none);
//! - [`completion`]: a Message becomes a `chat.completion`;
//! - [`StreamTranslator`]: the Messages SSE events become `chat.completion.chunk`s, with
//!   tool-call arguments passed on in order and a usage chunk at the end;
//! - errors keep their `error.message`; status 529 (overloaded) becomes a retryable 503.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::adapter::bad;
use super::capabilities::{Capabilities, Images};
use super::openai::{data_url, function_tools, push_turn, stop_list, tool_arguments};
use super::sse::SseEvent;
use super::{DecodeCtx, DecodeError, Sse, StreamTranslate};
use crate::types::{ChatRequest, EmbeddingsRequest, Endpoint, NativeRequest, WireFormat};
use crate::GatewayError;
use switchyard_config::Provider;

/// Sent as `anthropic-version` unless the provider's `headers` set one.
pub const VERSION: &str = "2023-06-01";
/// `max_tokens` is required by Anthropic; used when the client sent none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Anthropic's "overloaded" status, answered to clients as a retryable 503.
pub const OVERLOADED: u16 = 529;

/// `kind = "anthropic"`: the Messages API.
pub struct Anthropic;

impl super::Adapter for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { images: Images::Any, json_schema: true, web_search: true, ..Capabilities::MINIMAL }
    }

    fn url(&self, p: &Provider, endpoint: Endpoint, _model: &str, _stream: bool) -> Result<String, GatewayError> {
        match endpoint {
            Endpoint::Chat => Ok(format!("{}/messages", p.base_url)),
            Endpoint::Embeddings => Err(unsupported("embeddings")),
        }
    }

    fn auth(&self, api_key: &str) -> (&'static str, String) {
        ("x-api-key", api_key.to_string())
    }

    fn default_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("anthropic-version", VERSION)]
    }

    fn translate_chat(&self, req: &ChatRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
        chat_body(req, model)
    }

    fn translate_embeddings(&self, _req: &EmbeddingsRequest, _model: &str) -> Result<Vec<u8>, GatewayError> {
        Err(unsupported("embeddings"))
    }

    fn encode_native(&self, native: &NativeRequest, model: &str) -> Option<Result<Vec<u8>, GatewayError>> {
        if native.format != WireFormat::Anthropic {
            return None;
        }
        let mut body = native.body.clone();
        body.insert("model".into(), Value::String(model.to_string()));
        Some(serde_json::to_vec(&body).map_err(super::adapter::encode_error))
    }

    fn decode(&self, _endpoint: Endpoint, body: Bytes, cx: &DecodeCtx<'_>) -> Result<Bytes, DecodeError> {
        completion(&body, cx.created).map_err(|e| DecodeError(format!("anthropic answer: {e}")))
    }

    fn stream_decoder(&self, cx: &DecodeCtx<'_>) -> Option<Box<dyn StreamTranslate>> {
        Some(Box::new(Sse::new(StreamTranslator::new(cx.created))))
    }

    fn native_error_event(&self, class: crate::error::Class, message: &str) -> Bytes {
        let body = super::from_anthropic::error_body(class, message);
        Bytes::from(format!("event: error\ndata: {body}\n\n"))
    }

    fn native_stream_step(&self, ev: &SseEvent) -> super::StreamStep {
        use super::StreamStep;
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            return StreamStep::Failed { status: 502, message: "stream event is not JSON".into() };
        };
        match v.get("type").and_then(Value::as_str).or(ev.event.as_deref()).unwrap_or_default() {
            "message_start" | "ping" => StreamStep::Preamble,
            // an empty text or thinking block opens; a tool call's start names the tool
            "content_block_start" => match v.pointer("/content_block/type").and_then(Value::as_str) {
                Some("text") if v.pointer("/content_block/text").and_then(Value::as_str).unwrap_or("").is_empty() => {
                    StreamStep::Preamble
                }
                Some("thinking" | "redacted_thinking") => StreamStep::Preamble,
                _ => StreamStep::Content,
            },
            "error" => {
                let e = v.get("error").unwrap_or(&Value::Null);
                let kind = e.get("type").and_then(Value::as_str).unwrap_or("api_error");
                let message = e.get("message").and_then(Value::as_str).unwrap_or("upstream stream error").to_string();
                StreamStep::Failed { status: super::stream_error_status(kind), message }
            }
            // deltas, block and message ends, and event types newer than this gateway
            _ => StreamStep::Content,
        }
    }

    fn error_status(&self, status: u16) -> u16 {
        // "overloaded": a retryable 503 for clients and the job queue
        if status == OVERLOADED {
            503
        } else {
            status
        }
    }
}

fn unsupported(what: &str) -> GatewayError {
    super::adapter::unsupported("anthropic", what)
}

/// The text of an OpenAI `content` (a string, or text parts).
fn text_content(content: Option<&Value>, at: &str) -> Result<String, GatewayError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => out.push(p.get("text").and_then(Value::as_str).unwrap_or_default()),
                    other => return Err(bad(format!("{at}: a `{}` part is not allowed here", other.unwrap_or("?")))),
                }
            }
            Ok(out.join("\n"))
        }
        Some(_) => Err(bad(format!("{at}: `content` must be a string or an array of parts"))),
    }
}

/// An OpenAI user `content` as Anthropic blocks.
fn user_blocks(content: Option<&Value>, at: &str) -> Result<Vec<Value>, GatewayError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({"type": "text", "text": s})]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(breakpoint(
                    json!({"type": "text", "text": p.get("text").and_then(Value::as_str).unwrap_or_default()}),
                    p,
                )),
                Some("image_url") => {
                    let url = p
                        .get("image_url")
                        .and_then(|i| i.get("url").or(Some(i)))
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad(format!("{at}.content[{j}]: `image_url.url` is required")))?;
                    let block =
                        image_block(url).ok_or_else(|| bad(format!("{at}.content[{j}]: unsupported image URL")))?;
                    Ok(breakpoint(block, p))
                }
                Some(other) => Err(unsupported(&format!("`{other}` content parts"))),
                None => Err(bad(format!("{at}.content[{j}]: a part needs a `type`"))),
            })
            .collect(),
        Some(_) => Err(bad(format!("{at}: `content` must be a string or an array of parts"))),
    }
}

/// A prompt-cache breakpoint an OpenAI-format client set on a part (`cache_control`, as
/// LiteLLM and others let OpenAI clients write it for Anthropic models), kept on the block.
fn breakpoint(mut block: Value, part: &Value) -> Value {
    if let Some(c) = part.get("cache_control").filter(|c| c.is_object()) {
        block["cache_control"] = c.clone();
    }
    block
}

/// The system prompt's blocks: one text block per system message (or text part), each
/// with the breakpoint its client set.
fn system_blocks(m: &Value, at: &str, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    match m.get("content") {
        Some(Value::Array(parts)) => {
            for p in parts {
                if p.get("type").and_then(Value::as_str) != Some("text") {
                    let other = p.get("type").and_then(Value::as_str).unwrap_or("?");
                    return Err(bad(format!("{at}: a `{other}` part is not allowed here")));
                }
                let text = p.get("text").and_then(Value::as_str).unwrap_or_default();
                if !text.is_empty() {
                    out.push(breakpoint(json!({"type": "text", "text": text}), p));
                }
            }
        }
        other => {
            let text = text_content(other, at)?;
            if !text.is_empty() {
                out.push(breakpoint(json!({"type": "text", "text": text}), m));
            }
        }
    }
    Ok(())
}

/// `data:<media type>;base64,<data>` or an http(s) URL.
fn image_block(url: &str) -> Option<Value> {
    if let Some((media_type, data)) = data_url(url) {
        return Some(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}));
    }
    (url.starts_with("https://") || url.starts_with("http://"))
        .then(|| json!({"type": "image", "source": {"type": "url", "url": url}}))
}

/// The OpenAI chat request as an Anthropic Messages request for `model`.
pub fn chat_body(req: &ChatRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        match role {
            "system" | "developer" => system_blocks(m, &at, &mut system)?,
            "user" => {
                let mut blocks = user_blocks(m.get("content"), &at)?;
                // a breakpoint on the message marks its last block
                if let Some(last) = blocks.last_mut() {
                    *last = breakpoint(last.take(), m);
                }
                push_turn(&mut messages, "user", "content", blocks)
            }
            "assistant" => {
                let mut blocks = Vec::new();
                let text = text_content(m.get("content"), &at)?;
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for (j, call) in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
                    let input = tool_arguments(call, &at, j)?;
                    let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
                    blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
                }
                push_turn(&mut messages, "assistant", "content", blocks);
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("{at}: a tool message needs `tool_call_id`")))?;
                let text = text_content(m.get("content"), &at)?;
                push_turn(
                    &mut messages,
                    "user",
                    "content",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": text})],
                );
            }
            other => return Err(unsupported(&format!("`{other}` messages"))),
        }
    }
    if messages.is_empty() {
        return Err(bad("the request needs at least one user or assistant message".into()));
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("max_tokens".into(), json!(req.max_completion_tokens.or(req.max_tokens).unwrap_or(DEFAULT_MAX_TOKENS)));
    out.insert("messages".into(), Value::Array(messages));
    // a system prompt with a cache breakpoint goes as blocks; otherwise as one string
    if system.iter().any(|b| b.get("cache_control").is_some()) {
        out.insert("system".into(), Value::Array(system));
    } else if !system.is_empty() {
        let texts: Vec<&str> = system.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
        out.insert("system".into(), json!(texts.join("\n\n")));
    }
    if req.is_stream() {
        out.insert("stream".into(), json!(true));
    }
    translate_options(&req.rest, &mut out)?;
    thinking(&req.rest, &mut out)?;
    serde_json::to_vec(&Value::Object(out)).map_err(|e| GatewayError::Internal(e.to_string()))
}

/// The optional fields: kept, renamed, dropped (no Anthropic meaning and no effect on the
/// answer's content), or refused (the client would get something else than it asked).
pub(crate) fn translate_options(rest: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), GatewayError> {
    for (k, v) in rest {
        match k.as_str() {
            "temperature" | "top_p" | "top_k" => {
                out.insert(k.clone(), v.clone());
            }
            "stop" if !v.is_null() => {
                out.insert("stop_sequences".into(), stop_list(v));
            }
            "tools" => {
                let originals = v.as_array().map(Vec::as_slice).unwrap_or_default();
                let tools: Vec<Value> = function_tools(v, "anthropic")?
                    .into_iter()
                    .zip(originals)
                    .map(|(t, original)| {
                        let mut tool = json!({"name": t.name,
                            "input_schema": t.parameters.cloned().unwrap_or_else(|| json!({"type": "object"}))});
                        if let Some(d) = t.description {
                            tool["description"] = d.clone();
                        }
                        breakpoint(tool, original)
                    })
                    .collect();
                add_tools(out, tools);
            }
            // web search: Anthropic's own server tool
            "web_search_options" if !v.is_null() => add_tools(out, vec![super::web_search::anthropic_tool(v)]),
            "tool_choice" => {
                let choice = match v {
                    Value::String(s) if s == "auto" => json!({"type": "auto"}),
                    Value::String(s) if s == "none" => json!({"type": "none"}),
                    Value::String(s) if s == "required" => json!({"type": "any"}),
                    Value::Object(o) => match o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
                        Some(name) => json!({"type": "tool", "name": name}),
                        None => return Err(bad("`tool_choice` names no function".into())),
                    },
                    _ => return Err(bad("`tool_choice` must be auto, none, required or a function".into())),
                };
                let parallel_off = out.get("tool_choice").is_some_and(|c| c["disable_parallel_tool_use"] == true);
                out.insert("tool_choice".into(), choice);
                if parallel_off {
                    out["tool_choice"]["disable_parallel_tool_use"] = json!(true);
                }
            }
            "parallel_tool_calls" if v == &json!(false) => {
                let choice = out.entry("tool_choice").or_insert_with(|| json!({"type": "auto"}));
                choice["disable_parallel_tool_use"] = json!(true);
            }
            "user" => {
                out.insert("metadata".into(), json!({"user_id": v}));
            }
            "n" if v.as_u64().unwrap_or(1) > 1 => return Err(unsupported("`n` greater than 1")),
            "logprobs" if v == &json!(true) => return Err(unsupported("`logprobs`")),
            // structured outputs: Anthropic's `output_config.format`
            "response_format" => match v.get("type").and_then(Value::as_str) {
                None | Some("text") => {}
                Some("json_schema") => {
                    let schema = v
                        .pointer("/json_schema/schema")
                        .ok_or_else(|| bad("`response_format.json_schema.schema` is required".into()))?;
                    out.insert("output_config".into(), json!({"format": {"type": "json_schema", "schema": schema}}));
                }
                Some(_) => {
                    return Err(unsupported(
                        "`response_format` `json_object` (JSON without a schema); send `json_schema` with a schema",
                    ))
                }
            },
            // no counterpart, no effect on the answer's shape
            _ => {}
        }
    }
    Ok(())
}

/// Appends to the request's `tools` (function tools and the web search server tool come
/// from two fields).
fn add_tools(out: &mut Map<String, Value>, tools: Vec<Value>) {
    match out.get_mut("tools") {
        Some(Value::Array(have)) => have.extend(tools),
        _ => {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
}

/// `reasoning_effort` as extended thinking: a budget for the effort asked, within
/// `max_tokens` (which counts thinking, as OpenAI's counts reasoning tokens); none when
/// fewer than Anthropic's smallest budget fit, or for `minimal` and `none`.
fn thinking(rest: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), GatewayError> {
    let Some(budget) = rest.get("reasoning_effort").and_then(Value::as_str).and_then(thinking_budget) else {
        return Ok(());
    };
    let max = out.get("max_tokens").and_then(Value::as_u64).unwrap_or(DEFAULT_MAX_TOKENS);
    let budget = budget.min(max.saturating_sub(1));
    if budget < 1024 {
        return Ok(());
    }
    // inside a tool loop Anthropic wants the last assistant turn's thinking blocks back,
    // which a translated conversation does not have: that turn goes without thinking
    let last_assistant = out
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|ms| ms.iter().rev().find(|m| m.get("role") == Some(&json!("assistant"))));
    let in_tool_loop = last_assistant
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .is_some_and(|blocks| blocks.iter().any(|b| b.get("type") == Some(&json!("tool_use"))));
    if in_tool_loop {
        return Ok(());
    }
    if out.get("temperature").is_some_and(|t| t.as_f64() != Some(1.0)) {
        return Err(bad(
            "`temperature` cannot be combined with `reasoning_effort` on an Anthropic target (extended thinking runs at temperature 1)"
                .into(),
        ));
    }
    out.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget}));
    Ok(())
}

/// The thinking budget (tokens) an OpenAI `reasoning_effort` stands for; `None` for no
/// thinking. (Anthropic's smallest budget is 1,024 tokens.)
pub fn thinking_budget(effort: &str) -> Option<u64> {
    match effort {
        "low" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16_384),
        "xhigh" | "max" => Some(32_768),
        _ => None,
    }
}

/// OpenAI's `reasoning_effort` for an Anthropic thinking budget.
pub fn effort_for_budget(budget: u64) -> &'static str {
    match budget {
        0..=2047 => "low",
        2048..=8191 => "medium",
        _ => "high",
    }
}

/// OpenAI's finish reason for an Anthropic stop reason.
pub fn finish_reason(stop: Option<&str>) -> Option<&'static str> {
    stop.map(|s| match s {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    })
}

/// OpenAI usage from Anthropic's (cache reads and writes are prompt tokens too, said
/// apart in `prompt_tokens_details`: reads as `cached_tokens`, writes as
/// `cache_write_tokens`, which are priced apart).
pub fn usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (cached, written) = (n("cache_read_input_tokens"), n("cache_creation_input_tokens"));
    let prompt = n("input_tokens") + cached + written;
    let completion = n("output_tokens");
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written}})
}

/// A Message (non-stream answer) as an OpenAI `chat.completion`.
pub fn completion(body: &[u8], created: u64) -> Result<Bytes, String> {
    let m: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if m.get("type").and_then(Value::as_str) != Some("message") {
        return Err("not a message".into());
    }
    let mut text = String::new();
    let (mut chars, mut annotations) = (0, Vec::new());
    let mut calls = Vec::new();
    for block in m.get("content").and_then(Value::as_array).into_iter().flatten() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = block.get("text").and_then(Value::as_str).unwrap_or_default();
                text.push_str(t);
                let start = chars;
                chars += t.chars().count();
                // a web search's sources, for the text they support
                annotations.extend(super::web_search::annotations_of_citations(block.get("citations"), start, chars));
            }
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").map_or_else(|| "{}".to_string(), Value::to_string),
                },
            })),
            // thinking, the server tools' own blocks (their results are cited) and other
            // blocks have no OpenAI counterpart
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !annotations.is_empty() {
        message["annotations"] = Value::Array(annotations);
    }
    let out = json!({
        "id": m.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": created,
        "model": m.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "logprobs": null,
            "finish_reason": finish_reason(m.get("stop_reason").and_then(Value::as_str))}],
        "usage": usage(m.get("usage").unwrap_or(&Value::Null)),
    });
    Ok(Bytes::from(out.to_string()))
}

mod stream;
pub use self::stream::StreamTranslator;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::sse::SseParser;

    fn body(v: Value) -> Value {
        let req = ChatRequest::parse(v.to_string().as_bytes()).unwrap();
        serde_json::from_slice(&chat_body(&req, "claude-x").unwrap()).unwrap()
    }

    #[test]
    fn requests_lift_system_merge_turns_and_map_tools() {
        let out = body(json!({
            "model": "alias", "temperature": 0.2, "stop": "END", "user": "u1", "seed": 7,
            "parallel_tool_calls": false, "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "get", "description": "d", "parameters": {"type": "object"}}}],
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
                {"role": "user", "content": [{"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"q\":1}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
                {"role": "user", "content": "thanks"},
            ]
        }));
        assert_eq!(out["model"], "claude-x");
        assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(out["system"], "be brief\n\nand kind");
        assert_eq!(out["temperature"], 0.2);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["metadata"], json!({"user_id": "u1"}));
        assert!(out.get("seed").is_none());
        assert_eq!(out["tool_choice"], json!({"type": "any", "disable_parallel_tool_use": true}));
        assert_eq!(out["tools"], json!([{"name": "get", "description": "d", "input_schema": {"type": "object"}}]));
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[0]["content"][1]["source"], json!({"type": "base64", "media_type": "image/png", "data": "AAAA"}));
        assert_eq!(m[1]["content"][0], json!({"type": "tool_use", "id": "call_1", "name": "get", "input": {"q": 1}}));
        // the tool result and the next user turn share one user message
        assert_eq!(m[2]["content"][0], json!({"type": "tool_result", "tool_use_id": "call_1", "content": "42"}));
        assert_eq!(m[2]["content"][1], json!({"type": "text", "text": "thanks"}));
    }

    #[test]
    fn what_anthropic_cannot_do_is_a_clear_400() {
        let err = |v: Value| {
            let req = ChatRequest::parse(v.to_string().as_bytes()).unwrap();
            chat_body(&req, "m").unwrap_err()
        };
        let msgs = json!([{"role": "user", "content": "x"}]);
        for (extra, mention) in [
            (json!({"n": 2}), "`n`"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"response_format": {"type": "json_object"}}), "response_format"),
            (json!({"tools": [{"type": "web_search"}]}), "tools"),
        ] {
            let mut v = json!({"model": "m", "messages": msgs});
            for (k, val) in extra.as_object().unwrap() {
                v[k] = val.clone();
            }
            let e = err(v);
            assert_eq!(e.class().status, 400);
            assert!(e.to_string().contains(mention), "{e}");
        }
        let e = err(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}));
        assert!(e.to_string().contains("input_audio"), "{e}");
        let e = err(json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}]}));
        assert!(e.to_string().contains("arguments is not JSON"), "{e}");
        let e = err(json!({"model": "m", "messages": [{"role": "system", "content": "only a system prompt"}]}));
        assert!(e.to_string().contains("at least one"), "{e}");
    }

    #[test]
    fn messages_become_completions_with_tool_calls_and_cached_usage() {
        let m = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"q": 1}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2, "output_tokens": 7}});
        let out: Value = serde_json::from_slice(&completion(m.to_string().as_bytes(), 9).unwrap()).unwrap();
        assert_eq!(out["object"], "chat.completion");
        let c = &out["choices"][0];
        assert_eq!(c["finish_reason"], "tool_calls");
        assert_eq!(c["message"]["content"], "Let me check.");
        assert_eq!(c["message"]["tool_calls"][0]["function"]["arguments"], "{\"q\":1}");
        assert_eq!(out["usage"]["prompt_tokens"], 17);
        assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
        assert_eq!(out["usage"]["total_tokens"], 24);
        for (stop, want) in
            [("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"), ("refusal", "content_filter")]
        {
            assert_eq!(finish_reason(Some(stop)), Some(want));
        }
        assert!(completion(b"{\"type\":\"error\"}", 0).is_err());
    }

    /// An Anthropic stream, as the documentation shows it, with a tool call whose
    /// arguments arrive in pieces.
    const STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\n\
data: {\"type\":\"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get\",\"input\":{}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"loc\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ation\\\": \\\"Paris\\\"}\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

    fn translate(text: &str, split: usize) -> Vec<String> {
        let mut p = SseParser::new();
        let mut t = StreamTranslator::new(1);
        let mut events = p.feed(&text.as_bytes()[..split]).unwrap();
        events.extend(p.feed(&text.as_bytes()[split..]).unwrap());
        let mut out = Vec::new();
        for ev in &events {
            for b in t.on_event(ev).unwrap() {
                out.push(String::from_utf8(b.to_vec()).unwrap());
            }
        }
        out
    }

    #[test]
    fn streams_become_chunks_with_whole_tool_arguments_and_usage_at_the_end() {
        for split in [0, 17, STREAM.len() / 2, STREAM.len()] {
            let out = translate(STREAM, split);
            assert_eq!(out.last().map(String::as_str), Some("data: [DONE]\n\n"));
            let chunks: Vec<Value> =
                out.iter().filter_map(|e| e.strip_prefix("data: ")?.trim_end().parse::<Value>().ok()).collect();
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            let mut acc = crate::providers::openai::StreamAccumulator::default();
            for c in &chunks {
                acc.add(c);
            }
            let done = acc.completion();
            let msg = &done["choices"][0]["message"];
            assert_eq!(msg["content"], "Checking");
            assert_eq!(msg["tool_calls"][0]["id"], "toolu_1");
            assert_eq!(msg["tool_calls"][0]["function"]["arguments"], "{\"location\": \"Paris\"}");
            assert_eq!(done["choices"][0]["finish_reason"], "tool_calls");
            let last = chunks.last().unwrap();
            assert_eq!(last["choices"], json!([]));
            assert_eq!(last["usage"]["prompt_tokens"], 25);
            assert_eq!(last["usage"]["completion_tokens"], 89);
        }
    }

    #[test]
    fn an_error_event_becomes_an_openai_error_event() {
        let text = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let out = translate(text, 0);
        assert_eq!(out.len(), 1);
        let v: Value = out[0].strip_prefix("data: ").unwrap().trim_end().parse().unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("Overloaded"));
        let mut t = StreamTranslator::new(0);
        let bad = SseEvent { event: None, data: "{not json".into() };
        assert!(t.on_event(&bad).is_err());
    }
}
