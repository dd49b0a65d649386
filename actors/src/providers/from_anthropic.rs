//! The Anthropic-format ingress (`POST /v1/messages`), pure translation: an Anthropic
//! Messages request becomes the OpenAI chat request the engine serves (so it is routed
//! to any provider like the rest), and the engine's OpenAI answer, stream and errors
//! become Anthropic's again:
//! - [`request`]: Messages request → OpenAI chat request body;
//! - [`message`]: `chat.completion` → Message;
//! - [`EventTranslator`]: `chat.completion.chunk` events → Messages SSE events
//!   (`message_start`, `content_block_*`, `message_delta`, `message_stop`, `error`);
//! - [`error_body`]: an error in Anthropic's shape.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::adapter::bad;
use super::sse::SseEvent;
use crate::error::Class;
use crate::types::Shape;
use crate::GatewayError;

/// The optional fields of a Messages request the gateway checks (Anthropic's ranges):
/// checked for every target, so a malformed request is a 400 here and never reaches
/// a provider as it is.
const MESSAGES_FIELDS: &[(&str, Shape)] = &[
    ("stream", Shape::Bool),
    ("max_tokens", Shape::Int(1, i64::MAX)),
    ("temperature", Shape::Number(0.0, 1.0)),
    ("top_p", Shape::Number(0.0, 1.0)),
    ("top_k", Shape::Int(0, i64::MAX)),
    ("stop_sequences", Shape::Array),
    ("metadata", Shape::Object),
    ("system", Shape::StrOrArray),
    ("tools", Shape::Array),
    ("tool_choice", Shape::Object),
    ("thinking", Shape::Object),
    ("service_tier", Shape::Str),
    ("output_config", Shape::Object),
    ("context_management", Shape::Object),
];

/// Top-level fields the translation to OpenAI's format carries (or maps).
const TRANSLATED: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "temperature",
    "top_p",
    "stop_sequences",
    "stream",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
];

/// What of an Anthropic request a translation to another format leaves out: its
/// top-level fields with no counterpart there (`thinking`, `top_k`, `output_config`,
/// `context_management`, ...) by name, then `cache_control` breakpoints anywhere. Said to the client (`x-switchyard-dropped-fields`), never dropped
/// silently; a target that speaks Anthropic's format gets them all.
pub fn untranslated_fields(body: &[u8]) -> Vec<String> {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else { return Vec::new() };
    let mut out: Vec<String> = req.keys().filter(|k| !TRANSLATED.contains(&k.as_str())).cloned().collect();
    let blocks = ["system", "messages", "tools"].iter().filter_map(|k| req.get(*k)).flat_map(|v| match v {
        Value::Array(a) => a.iter().collect::<Vec<_>>(),
        _ => Vec::new(),
    });
    let has_breakpoint = blocks.into_iter().any(|b| {
        b.get("cache_control").is_some()
            || b.get("content")
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().any(|p| p.get("cache_control").is_some()))
    });
    if has_breakpoint {
        out.push("cache_control".into());
    }
    if req.get("metadata").and_then(Value::as_object).is_some_and(|m| m.keys().any(|k| k != "user_id")) {
        out.push("metadata (all but user_id)".into());
    }
    if let Some(cfg) = req.get("output_config").and_then(Value::as_object) {
        out.extend(cfg.keys().filter(|k| *k != "format" && *k != "effort").map(|k| format!("output_config.{k}")));
    }
    out
}

/// Client request headers of Anthropic's API that go upstream with the client's own
/// request when the target is Anthropic (never to other providers).
pub const CLIENT_HEADERS: &[&str] = &["anthropic-beta"];

/// The text of a `tool_result`'s content (a string or blocks).
fn result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => {
            blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// An image block as an OpenAI `image_url` part.
fn image_part(block: &Value, at: &str) -> Result<Value, GatewayError> {
    let src = block.get("source").ok_or_else(|| bad(format!("{at}: an image needs a `source`")))?;
    let url = match src.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = src.get("media_type").and_then(Value::as_str).unwrap_or("image/png");
            let data = src.get("data").and_then(Value::as_str).unwrap_or_default();
            format!("data:{media};base64,{data}")
        }
        Some("url") => src.get("url").and_then(Value::as_str).unwrap_or_default().to_string(),
        other => return Err(bad(format!("{at}: image source `{}` is not supported", other.unwrap_or("?")))),
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// One Anthropic message as OpenAI messages (tool results become `tool` messages,
/// placed before the rest of the user turn).
fn convert_message(m: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let at = format!("messages.{i}");
    let role = m.get("role").and_then(Value::as_str).ok_or_else(|| bad(format!("{at}.role: Field required")))?;
    if role == "system" {
        // a system turn inside the conversation (the current API takes it; Claude Code
        // sends one): a system message at the same place
        let text = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(_)) => result_text(m.get("content")),
            _ => return Err(bad(format!("{at}.content: must be a string or an array of text blocks"))),
        };
        out.push(json!({"role": "system", "content": text}));
        return Ok(());
    }
    if role != "user" && role != "assistant" {
        return Err(bad(format!("{at}.role: must be `user`, `assistant` or `system`, not `{role}`")));
    }
    let blocks = match m.get("content") {
        Some(Value::String(s)) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Some(Value::Array(b)) => b,
        _ => return Err(bad(format!("{at}.content: must be a string or an array of blocks"))),
    };
    let (mut parts, mut calls) = (Vec::new(), Vec::new());
    for (j, b) in blocks.iter().enumerate() {
        let bat = format!("{at}.content.{j}");
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                parts.push(json!({"type": "text", "text": b.get("text").and_then(Value::as_str).unwrap_or_default()}))
            }
            Some("image") if role == "user" => parts.push(image_part(b, &bat)?),
            Some("tool_use") if role == "assistant" => calls.push(json!({
                "id": b.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {"name": b.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": b.get("input").map_or_else(|| "{}".to_string(), Value::to_string)},
            })),
            Some("tool_result") if role == "user" => {
                let id = b
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("{bat}.tool_use_id: Field required")))?;
                let mut text = result_text(b.get("content"));
                if b.get("is_error") == Some(&json!(true)) {
                    text = format!("Error: {text}");
                }
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            // the model's own reasoning is not sent back to other providers
            Some("thinking" | "redacted_thinking") => {}
            Some(other) => return Err(bad(format!("{bat}: `{other}` blocks are not supported in a {role} message"))),
            None => return Err(bad(format!("{bat}.type: Field required"))),
        }
    }
    if role == "assistant" {
        let text: String = parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
        let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
        if !calls.is_empty() {
            msg["tool_calls"] = Value::Array(calls);
        }
        if !text.is_empty() || msg.get("tool_calls").is_some() {
            out.push(msg);
        }
    } else if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

/// An Anthropic Messages request as the OpenAI chat request body the engine serves.
pub fn request(body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let req = v.as_object().ok_or_else(|| bad("the body must be a JSON object".into()))?;
    crate::types::check_fields(req, MESSAGES_FIELDS)?;
    let model = req.get("model").and_then(Value::as_str).filter(|m| !m.is_empty());
    let model = model.ok_or_else(|| bad("model: Field required".into()))?;
    let max_tokens =
        req.get("max_tokens").and_then(Value::as_u64).ok_or_else(|| bad("max_tokens: Field required".into()))?;
    let messages =
        req.get("messages").and_then(Value::as_array).ok_or_else(|| bad("messages: Field required".into()))?;
    let mut out_messages = Vec::new();
    match req.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out_messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            let text = result_text(Some(&Value::Array(blocks.clone())));
            out_messages.push(json!({"role": "system", "content": text}));
        }
        Some(_) => return Err(bad("system: must be a string or an array of text blocks".into())),
    }
    for (i, m) in messages.iter().enumerate() {
        convert_message(m, i, &mut out_messages)?;
    }
    if !out_messages.iter().any(|m| m["role"] != "system") {
        return Err(bad("messages: at least one message is required".into()));
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(out_messages));
    out.insert("max_tokens".into(), json!(max_tokens));
    for (k, v) in req {
        match k.as_str() {
            "temperature" | "top_p" => {
                out.insert(k.clone(), v.clone());
            }
            "stop_sequences" => {
                out.insert("stop".into(), v.clone());
            }
            "stream" if v == &json!(true) => {
                out.insert("stream".into(), json!(true));
                out.insert("stream_options".into(), json!({"include_usage": true}));
            }
            "metadata" => {
                if let Some(u) = v.get("user_id") {
                    out.insert("user".into(), u.clone());
                }
            }
            "tools" => {
                let all = v.as_array().ok_or_else(|| bad("tools: must be an array".into()))?;
                // web search: chat's `web_search_options` (the target runs its own search)
                if let Some(search) = all.iter().find(|t| super::web_search::is_anthropic_tool(t)) {
                    out.insert("web_search_options".into(), super::web_search::options_from_anthropic_tool(search));
                }
                let tools = all
                    .iter()
                    .filter(|t| !super::web_search::is_anthropic_tool(t))
                    .map(|t| {
                        let name = t
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| bad("tools: a tool needs a name".into()))?;
                        if t.get("type").and_then(Value::as_str).is_some_and(|ty| ty != "custom") {
                            return Err(bad(format!("tools: server tool `{name}` is not supported")));
                        }
                        let mut f = json!({"name": name,
                            "parameters": t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"}))});
                        if let Some(d) = t.get("description") {
                            f["description"] = d.clone();
                        }
                        Ok(json!({"type": "function", "function": f}))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if !tools.is_empty() {
                    out.insert("tools".into(), Value::Array(tools));
                }
            }
            "tool_choice" => {
                let choice = match v.get("type").and_then(Value::as_str) {
                    Some("auto") => json!("auto"),
                    Some("any") => json!("required"),
                    Some("none") => json!("none"),
                    Some("tool") => {
                        let name = v
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| bad("tool_choice.name: Field required".into()))?;
                        json!({"type": "function", "function": {"name": name}})
                    }
                    _ => return Err(bad("tool_choice.type: must be auto, any, tool or none".into())),
                };
                out.insert("tool_choice".into(), choice);
                if v.get("disable_parallel_tool_use") == Some(&json!(true)) {
                    out.insert("parallel_tool_calls".into(), json!(false));
                }
            }
            // structured outputs and effort
            "output_config" => {
                if let Some(f) = v.get("format").filter(|f| !f.is_null()) {
                    if f.get("type").and_then(Value::as_str) != Some("json_schema") {
                        return Err(bad("output_config.format.type: must be `json_schema`".into()));
                    }
                    let schema =
                        f.get("schema").ok_or_else(|| bad("output_config.format.schema: Field required".into()))?;
                    let format = json!({"name": "output", "schema": schema, "strict": true});
                    out.insert("response_format".into(), json!({"type": "json_schema", "json_schema": format}));
                }
                if let Some(e) = v.get("effort").and_then(Value::as_str) {
                    let effort = if matches!(e, "xhigh" | "max") { "high" } else { e };
                    out.insert("reasoning_effort".into(), json!(effort));
                }
            }
            // extended thinking: the reasoning effort its budget stands for (an explicit
            // `output_config.effort` wins)
            "thinking" => match v.get("type").and_then(Value::as_str) {
                Some("enabled") => {
                    let budget = v.get("budget_tokens").and_then(Value::as_u64).unwrap_or(0);
                    out.entry("reasoning_effort").or_insert(json!(super::anthropic::effort_for_budget(budget)));
                }
                Some("adaptive") => {
                    out.entry("reasoning_effort").or_insert(json!("medium"));
                }
                _ => {}
            },
            // no OpenAI counterpart (top_k, service_tier, ...)
            _ => {}
        }
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| GatewayError::Internal(e.to_string()))
}

/// Anthropic's stop reason for an OpenAI finish reason.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic usage from OpenAI's (cache reads and writes are reported apart from the
/// other input tokens).
pub fn usage(u: Option<&Value>) -> Value {
    let n = |p: &str| u.and_then(|u| u.pointer(p)).and_then(Value::as_u64).unwrap_or(0);
    let (cached, written) = (n("/prompt_tokens_details/cached_tokens"), n("/prompt_tokens_details/cache_write_tokens"));
    json!({"input_tokens": n("/prompt_tokens").saturating_sub(cached + written), "output_tokens": n("/completion_tokens"),
        "cache_read_input_tokens": cached, "cache_creation_input_tokens": written})
}

fn message_id(id: Option<&str>) -> String {
    match id {
        Some(i) if i.starts_with("msg_") => i.to_string(),
        Some(i) => format!("msg_{}", i.trim_start_matches("chatcmpl-")),
        None => "msg_switchyard".into(),
    }
}

/// A `chat.completion` as an Anthropic Message.
pub fn message(completion: &[u8]) -> Result<Bytes, GatewayError> {
    let c: Value = serde_json::from_slice(completion)
        .map_err(|e| GatewayError::Internal(format!("the answer is not JSON: {e}")))?;
    let choice = c.pointer("/choices/0").unwrap_or(&Value::Null);
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(t) = msg.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        let mut block = json!({"type": "text", "text": t});
        // a web search's sources, as Anthropic cites them
        let citations: Vec<Value> = msg
            .get("annotations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| super::web_search::anthropic_citation(a, t))
            .collect();
        if !citations.is_empty() {
            block["citations"] = Value::Array(citations);
        }
        content.push(block);
    }
    for call in msg.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let f = call.get("function").unwrap_or(&Value::Null);
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": call.get("id"), "name": f.get("name"), "input": input}));
    }
    let out = json!({
        "id": message_id(c.get("id").and_then(Value::as_str)),
        "type": "message", "role": "assistant",
        "model": c.get("model").cloned().unwrap_or(Value::Null),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage(c.get("usage")),
    });
    Ok(Bytes::from(out.to_string()))
}

/// Anthropic's error type for a status.
fn error_type(status: u16) -> &'static str {
    match status {
        400 | 413 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        503 => "overloaded_error",
        _ => "api_error",
    }
}

/// `{"type": "error", "error": {"type", "message"}}`
pub fn error_body(class: Class, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(class.status), "message": message}})
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Turns the engine's OpenAI chunk events into Messages SSE events.
#[derive(Debug, Default)]
pub struct EventTranslator {
    started: bool,
    /// Index of the content block now open, and whether it is text.
    open: Option<(usize, bool)>,
    next_block: usize,
    /// OpenAI tool-call index → content block index.
    tools: Vec<(u64, usize)>,
    finish: Option<String>,
    usage: Option<Value>,
    ended: bool,
    /// The text sent so far (what a source's span cites).
    text: String,
}

impl EventTranslator {
    fn start(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let msg = json!({"id": message_id(chunk.get("id").and_then(Value::as_str)), "type": "message",
            "role": "assistant", "model": chunk.get("model"), "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}});
        out.push(event("message_start", &json!({"type": "message_start", "message": msg})));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open.take() {
            out.push(event("content_block_stop", &json!({"type": "content_block_stop", "index": index})));
        }
    }

    fn open_block(&mut self, block: Value, text: bool, out: &mut Vec<Bytes>) -> usize {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, text));
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    /// The index of the text block now open, opening one if none is.
    fn text_block(&mut self, out: &mut Vec<Bytes>) -> usize {
        match self.open {
            Some((i, true)) => i,
            _ => self.open_block(json!({"type": "text", "text": ""}), true, out),
        }
    }

    /// The Messages events for one engine event (`data: {chunk}`, `data: [DONE]` or
    /// `data: {"error": ...}`).
    pub fn on_event(&mut self, ev: &SseEvent) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        if ev.data == "[DONE]" {
            let placeholder = json!({});
            self.start(&placeholder, &mut out);
            self.close(&mut out);
            let stop = stop_reason(self.finish.as_deref());
            out.push(event(
                "message_delta",
                &json!({"type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": usage(self.usage.as_ref())}),
            ));
            out.push(event("message_stop", &json!({"type": "message_stop"})));
            self.ended = true;
            return out;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&ev.data) else {
            return self.fail("the upstream stream sent an unreadable event");
        };
        if let Some(e) = chunk.get("error") {
            let message = e.get("message").and_then(Value::as_str).unwrap_or("the stream failed");
            return self.fail(message);
        }
        self.start(&chunk, &mut out);
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return out;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(t) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            let index = self.text_block(&mut out);
            out.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": t}}),
            ));
            self.text.push_str(t);
        }
        for a in delta.get("annotations").and_then(Value::as_array).into_iter().flatten() {
            let Some(citation) = super::web_search::anthropic_citation(a, &self.text) else { continue };
            let index = self.text_block(&mut out);
            out.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "citations_delta", "citation": citation}}),
            ));
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let k = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let f = call.get("function").unwrap_or(&Value::Null);
            let index = match self.tools.iter().find(|(t, _)| *t == k) {
                Some((_, i)) => *i,
                None => {
                    let block = json!({"type": "tool_use", "id": call.get("id"), "name": f.get("name"), "input": {}});
                    let i = self.open_block(block, false, &mut out);
                    self.tools.push((k, i));
                    i
                }
            };
            if let Some(a) = f.get("arguments").and_then(Value::as_str).filter(|a| !a.is_empty()) {
                out.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": a}}),
                ));
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        out
    }

    fn fail(&mut self, message: &str) -> Vec<Bytes> {
        self.ended = true;
        vec![event("error", &json!({"type": "error", "error": {"type": "api_error", "message": message}}))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::sse::SseParser;

    fn req(v: Value) -> Value {
        serde_json::from_slice(&request(v.to_string().as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn messages_requests_become_openai_requests() {
        let out = req(json!({
            "model": "fast", "max_tokens": 100, "system": [{"type": "text", "text": "be brief"}],
            "stop_sequences": ["END"], "temperature": 0.5, "top_k": 3, "stream": true,
            "metadata": {"user_id": "u1"},
            "tools": [{"name": "get", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"q": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
                    {"type": "text", "text": "so?"}]},
            ]
        }));
        assert_eq!(out["model"], "fast");
        assert_eq!(out["max_tokens"], 100);
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!(out["temperature"], 0.5);
        assert!(out.get("top_k").is_none());
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(out["user"], "u1");
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(out["tools"][0]["function"]["parameters"], json!({"type": "object"}));
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(m[1]["content"][1]["image_url"]["url"], "data:image/jpeg;base64,AAAA");
        assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], "{\"q\":1}");
        assert_eq!(m[3], json!({"role": "tool", "tool_call_id": "toolu_1", "content": "42"}));
        assert_eq!(m[4]["content"][0]["text"], "so?");
    }

    #[test]
    fn bad_messages_requests_say_which_field() {
        let err = |v: Value| request(v.to_string().as_bytes()).unwrap_err().to_string();
        assert!(err(json!({"model": "m", "messages": []})).contains("max_tokens"));
        assert!(err(json!({"max_tokens": 1, "messages": []})).contains("model"));
        assert!(err(json!({"model": "m", "max_tokens": 1})).contains("messages"));
        assert!(err(json!({"model": "m", "max_tokens": 1, "messages": []})).contains("at least one"));
        let m =
            |content: Value| json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": content}]});
        assert!(err(m(json!([{"type": "document"}]))).contains("`document`"));
        assert!(err(m(json!([{"type": "tool_result"}]))).contains("tool_use_id"));
        // a system turn alone is no conversation; a role no API has is named
        assert!(err(json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}))
            .contains("at least one"));
        assert!(err(json!({"model": "m", "max_tokens": 1, "messages": [{"role": "root", "content": "x"}]}))
            .contains("role"));
        assert!(request(b"{not json").unwrap_err().to_string().contains("invalid JSON"));
    }

    #[test]
    fn completions_become_messages() {
        let c = json!({"id": "chatcmpl-abc", "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "ok", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"q\":2}"}}]}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 10}}});
        let m: Value = serde_json::from_slice(&message(c.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!(m["id"], "msg_abc");
        assert_eq!(m["type"], "message");
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["content"][0], json!({"type": "text", "text": "ok"}));
        assert_eq!(m["content"][1]["input"], json!({"q": 2}));
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 20, "output_tokens": 5, "cache_read_input_tokens": 10,
            "cache_creation_input_tokens": 0})
        );
    }

    fn events(chunks: &[Value], end: &str) -> Vec<(String, Value)> {
        let mut text = String::new();
        for c in chunks {
            text.push_str(&format!("data: {c}\n\n"));
        }
        text.push_str(end);
        let mut p = SseParser::new();
        let mut t = EventTranslator::default();
        let mut out = Vec::new();
        for ev in p.feed(text.as_bytes()).unwrap() {
            for b in t.on_event(&ev) {
                let s = String::from_utf8(b.to_vec()).unwrap();
                let mut lines = s.lines();
                let name = lines.next().unwrap().trim_start_matches("event: ").to_string();
                let data: Value = lines.next().unwrap().trim_start_matches("data: ").parse().unwrap();
                out.push((name, data));
            }
        }
        out
    }

    #[test]
    fn chunk_streams_become_messages_events_in_order() {
        let c = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-1", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let chunks = [
            c(json!({"role": "assistant", "content": ""}), Value::Null),
            c(json!({"content": "Hi"}), Value::Null),
            c(json!({"content": " there"}), Value::Null),
            c(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get", "arguments": ""}}]}),
                Value::Null,
            ),
            c(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\""}}]}), Value::Null),
            c(json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}), Value::Null),
            c(json!({}), json!("tool_calls")),
            json!({"id": "chatcmpl-1", "model": "m", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}),
        ];
        let ev = events(&chunks, "data: [DONE]\n\n");
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[0].1["message"]["id"], "msg_1");
        assert_eq!(ev[3].1["delta"]["text"], " there");
        assert_eq!(ev[5].1["content_block"]["name"], "get");
        assert_eq!(ev[5].1["index"], 1);
        let args: String = ev[6..8].iter().map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap()).collect();
        assert_eq!(args, "{\"a\":1}");
        assert_eq!(ev[9].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[9].1["usage"]["output_tokens"], 3);
        assert_eq!(ev[9].1["usage"]["input_tokens"], 7);
    }

    #[test]
    fn a_failed_stream_ends_with_an_error_event_and_no_message_stop() {
        let first = json!({"id": "x", "choices": [{"index": 0, "delta": {"content": "a"}}]});
        let ev = events(&[first], "data: {\"error\": {\"message\": \"upstream cut\"}}\n\ndata: [DONE]\n\n");
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["message_start", "content_block_start", "content_block_delta", "error"]);
        assert_eq!(ev[3].1["error"]["message"], "upstream cut");
    }
}
