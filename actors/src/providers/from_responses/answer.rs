//! A chat completion as a Response, and what the ingress reads of Responses.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::super::sse::SseEvent;
use super::super::web_search;
use super::Echo;
use crate::GatewayError;

/// Responses usage from chat usage.
pub fn usage(u: Option<&Value>) -> Value {
    let n = |p: &str| u.and_then(|u| u.pointer(p)).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (n("/prompt_tokens"), n("/completion_tokens"));
    json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": n("/prompt_tokens_details/cached_tokens"),
            "cache_write_tokens": n("/prompt_tokens_details/cache_write_tokens")},
        "output_tokens": output, "output_tokens_details": {"reasoning_tokens": n("/completion_tokens_details/reasoning_tokens")},
        "total_tokens": input + output})
}

/// The status and `incomplete_details` a finish reason stands for.
pub(super) fn status(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// An output item id: `prefix` and the response id's own part.
pub(super) fn item_id(prefix: &str, response_id: &str, n: usize) -> String {
    let own = response_id.trim_start_matches("resp_");
    if n == 0 {
        format!("{prefix}_{own}")
    } else {
        format!("{prefix}_{own}_{n}")
    }
}

/// The web search a Response's sources came from.
pub(super) fn search_item(response_id: &str) -> Value {
    json!({"id": item_id("ws", response_id, 0), "type": "web_search_call", "status": "completed",
        "action": {"type": "search"}})
}

pub(super) fn message_item(id: String, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

pub(super) fn call_item(id: String, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": arguments})
}

/// A Response object around `output`.
pub(super) fn response_object(
    id: &str,
    created_at: u64,
    model: &Value,
    echo: &Echo,
    status: &str,
    output: Vec<Value>,
) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("id".into(), json!(id));
    r.insert("object".into(), json!("response"));
    r.insert("created_at".into(), json!(created_at));
    r.insert("status".into(), json!(status));
    r.insert("error".into(), Value::Null);
    r.insert("incomplete_details".into(), Value::Null);
    r.insert("model".into(), model.clone());
    r.insert("output".into(), Value::Array(output));
    for (k, v) in &echo.0 {
        r.insert(k.clone(), v.clone());
    }
    r.insert("usage".into(), Value::Null);
    r
}

/// A `chat.completion` as the Response `id`.
pub fn response(completion: &[u8], id: &str, created_at: u64, echo: &Echo) -> Result<Value, GatewayError> {
    let c: Value = serde_json::from_slice(completion)
        .map_err(|e| GatewayError::Internal(format!("the answer is not JSON: {e}")))?;
    let choice = c.pointer("/choices/0").unwrap_or(&Value::Null);
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut output = Vec::new();
    let text = msg.get("content").and_then(Value::as_str).or_else(|| msg.get("refusal").and_then(Value::as_str));
    // the sources a web search found: a search call, then the text that cites them
    let annotations: Vec<Value> = msg
        .get("annotations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(web_search::responses_annotation)
        .collect();
    if !annotations.is_empty() {
        output.push(search_item(id));
    }
    if let Some(t) = text.filter(|t| !t.is_empty()) {
        let mut item = message_item(item_id("msg", id, 0), t, "completed");
        item["content"][0]["annotations"] = Value::Array(annotations);
        output.push(item);
    }
    for (n, call) in msg.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let f = call.get("function").unwrap_or(&Value::Null);
        let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let (call_id, name, args) = (s(call.get("id")), s(f.get("name")), s(f.get("arguments")));
        output.push(call_item(item_id("fc", id, n), &call_id, &name, &args, "completed"));
    }
    let (status, details) = status(choice.get("finish_reason").and_then(Value::as_str));
    let model = c.get("model").cloned().unwrap_or(Value::Null);
    let mut r = response_object(id, created_at, &model, echo, status, output);
    r.insert("incomplete_details".into(), details);
    r.insert("usage".into(), usage(c.get("usage")));
    Ok(Value::Object(r))
}

/// The output items of a Response that a later turn takes as input (reasoning items
/// included: a target with a Responses endpoint wants them back; a chat translation
/// leaves them out).
pub fn output_as_input(response: &Value) -> Vec<Value> {
    response.get("output").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// The Response a stream's last event (`response.completed`, `response.incomplete`,
/// `response.failed`) carries.
pub fn final_response(ev: &SseEvent) -> Option<Value> {
    const LAST: [&str; 3] = ["response.completed", "response.incomplete", "response.failed"];
    if ev.event.as_deref().is_some_and(|name| !LAST.contains(&name)) {
        return None;
    }
    let v: Value = serde_json::from_str(&ev.data).ok()?;
    let kind = v.get("type").and_then(Value::as_str)?;
    LAST.contains(&kind).then(|| v.get("response").cloned()).flatten()
}

/// A provider's Responses event saying which response the conversation continued: the
/// gateway resolved `previous_response_id` itself and sent the whole conversation, so
/// the provider's Response has none. The event as it came when it carries no Response.
pub fn with_previous(ev: &SseEvent, previous: &Value) -> Bytes {
    let data = match serde_json::from_str::<Value>(&ev.data) {
        Ok(mut v) if v.get("response").is_some_and(Value::is_object) => {
            v["response"]["previous_response_id"] = previous.clone();
            v.to_string()
        }
        _ => ev.data.clone(),
    };
    match &ev.event {
        Some(name) => Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}
