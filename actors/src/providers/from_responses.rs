//! The Responses-format ingress (`POST /v1/responses`), pure translation: a Responses
//! request becomes the OpenAI chat request the engine serves (so it is routed to any
//! provider), and the engine's chat answer and stream become a Response again:
//! - [`request`]: Responses request (and the items of the conversation it continues)
//!   → OpenAI chat request body;
//! - [`Echo`]: the request's fields a Response repeats back;
//! - [`response`]: `chat.completion` → Response (and its output items);
//! - [`EventTranslator`]: `chat.completion.chunk` events → Responses SSE events
//!   (`response.created`, `response.output_item.added`, `response.output_text.delta`,
//!   `response.function_call_arguments.delta`, ..., `response.completed`).
//!
//! What a chat target cannot do (hosted tools such as `web_search`, `background`,
//! stored files) is a 400 that names it; reasoning items of an earlier turn are left out
//! (they only mean something to the model that made them).

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::adapter::bad;
use super::sse::SseEvent;
use super::web_search;
use crate::types::Shape;
use crate::GatewayError;

/// The optional fields of a Responses request the gateway checks (OpenAI's ranges).
const RESPONSES_FIELDS: &[(&str, Shape)] = &[
    ("stream", Shape::Bool),
    ("store", Shape::Bool),
    ("background", Shape::Bool),
    ("instructions", Shape::StrOrArray),
    ("input", Shape::StrOrArray),
    ("max_output_tokens", Shape::Int(1, i64::MAX)),
    ("temperature", Shape::Number(0.0, 2.0)),
    ("top_p", Shape::Number(0.0, 1.0)),
    ("tools", Shape::Array),
    ("tool_choice", Shape::StrOrObject),
    ("parallel_tool_calls", Shape::Bool),
    ("text", Shape::Object),
    ("reasoning", Shape::Object),
    ("metadata", Shape::Object),
    ("previous_response_id", Shape::Str),
    ("user", Shape::Str),
    ("include", Shape::Array),
    ("truncation", Shape::Str),
    ("service_tier", Shape::Str),
];

/// The fields of a Responses request a Response repeats back, as the client sent them
/// (defaults where it sent none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Echo(pub Map<String, Value>);

impl Echo {
    /// From the client's request.
    pub fn of(req: &Map<String, Value>) -> Echo {
        let mut m = Map::new();
        let get = |k: &str, default: Value| req.get(k).cloned().unwrap_or(default);
        m.insert("instructions".into(), get("instructions", Value::Null));
        m.insert("max_output_tokens".into(), get("max_output_tokens", Value::Null));
        m.insert("metadata".into(), get("metadata", json!({})));
        m.insert("parallel_tool_calls".into(), get("parallel_tool_calls", json!(true)));
        m.insert("previous_response_id".into(), get("previous_response_id", Value::Null));
        m.insert("reasoning".into(), get("reasoning", json!({"effort": null, "summary": null})));
        m.insert("store".into(), get("store", json!(true)));
        m.insert("temperature".into(), get("temperature", json!(1.0)));
        m.insert("text".into(), get("text", json!({"format": {"type": "text"}})));
        m.insert("tool_choice".into(), get("tool_choice", json!("auto")));
        m.insert("tools".into(), get("tools", json!([])));
        m.insert("top_p".into(), get("top_p", json!(1.0)));
        m.insert("truncation".into(), get("truncation", json!("disabled")));
        m.insert("user".into(), get("user", Value::Null));
        Echo(m)
    }

    /// Whether the client asked for the response to be kept (`store`, default true).
    pub fn store(&self) -> bool {
        self.0.get("store").and_then(Value::as_bool).unwrap_or(true)
    }
}

/// The request's body as an object, checked.
pub fn parse(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let Value::Object(req) = v else { return Err(bad("the body must be a JSON object".into())) };
    crate::types::check_fields(&req, RESPONSES_FIELDS)?;
    if req.get("background") == Some(&json!(true)) {
        return Err(bad("background: background responses are not supported; use the Batch API or NATS jobs".into()));
    }
    Ok(req)
}

/// The input of a request as a list of items (a string is one user message).
pub fn input_items(req: &Map<String, Value>) -> Vec<Value> {
    match req.get("input") {
        Some(Value::String(s)) => vec![json!({"type": "message", "role": "user", "content": s})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// An input item in the shape the API lists it back (`input_items`): typed, with an
/// id, a message's content as parts.
pub fn normalize_item(item: &Value) -> Value {
    let mut item = item.clone();
    let Some(o) = item.as_object_mut() else { return item };
    let ty = o.entry("type").or_insert_with(|| json!("message")).as_str().unwrap_or("").to_string();
    if ty == "message" {
        let part = if o.get("role") == Some(&json!("assistant")) { "output_text" } else { "input_text" };
        if let Some(Value::String(s)) = o.get("content") {
            let parts = json!([{"type": part, "text": s}]);
            o.insert("content".into(), parts);
        }
    }
    if !o.contains_key("id") {
        let prefix = match ty.as_str() {
            "function_call" => "fc_",
            "function_call_output" => "fco_",
            _ => "msg_",
        };
        o.insert("id".into(), json!(crate::ids::new_id(prefix)));
    }
    item
}

/// The text of content that is a string or a list of text parts.
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").or_else(|| p.get("refusal")).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// One input content part as a chat content part.
fn part(p: &Value, at: &str) -> Result<Value, GatewayError> {
    let ty = p.get("type").and_then(Value::as_str).unwrap_or("");
    Ok(match ty {
        "input_text" | "output_text" | "text" => {
            json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))})
        }
        "input_image" => {
            let Some(url) = p.get("image_url").and_then(Value::as_str) else {
                return Err(bad(format!(
                    "{at}: an input_image needs `image_url` (a URL or a data URL); stored files (`file_id`) are not supported"
                )));
            };
            let mut image = json!({"url": url});
            if let Some(d) = p.get("detail").filter(|d| !d.is_null()) {
                image["detail"] = d.clone();
            }
            json!({"type": "image_url", "image_url": image})
        }
        "input_file" => {
            let Some(data) = p.get("file_data").and_then(Value::as_str) else {
                return Err(bad(format!(
                    "{at}: an input_file needs `file_data`; stored files (`file_id`) and `file_url` are not supported"
                )));
            };
            let mut file = json!({"file_data": data});
            if let Some(n) = p.get("filename") {
                file["filename"] = n.clone();
            }
            json!({"type": "file", "file": file})
        }
        "input_audio" => {
            json!({"type": "input_audio", "input_audio": p.get("input_audio").cloned().unwrap_or(Value::Null)})
        }
        other => return Err(bad(format!("{at}: content type `{other}` is not supported"))),
    })
}

/// Appends one input item to the chat messages (function calls join the assistant
/// message before them).
fn convert_item(item: &Value, at: &str, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let ty = item.get("type").and_then(Value::as_str).unwrap_or("message");
    match ty {
        "message" => {
            let role =
                item.get("role").and_then(Value::as_str).ok_or_else(|| bad(format!("{at}.role: Field required")))?;
            if !["user", "assistant", "system", "developer"].contains(&role) {
                return Err(bad(format!("{at}.role: must be user, assistant, system or developer, not `{role}`")));
            }
            let content = match item.get("content") {
                Some(Value::String(s)) => json!(s),
                // text alone goes as a string: every chat server reads that
                Some(Value::Array(parts))
                    if role == "assistant"
                        || parts.iter().all(|p| {
                            matches!(p.get("type").and_then(Value::as_str), Some("input_text" | "output_text" | "text"))
                        }) =>
                {
                    json!(text_of(item.get("content")))
                }
                Some(Value::Array(parts)) => Value::Array(
                    parts
                        .iter()
                        .enumerate()
                        .map(|(j, p)| part(p, &format!("{at}.content.{j}")))
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(bad(format!("{at}.content: must be a string or an array of content parts"))),
            };
            out.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let field =
                |k: &str| item.get(k).and_then(Value::as_str).ok_or_else(|| bad(format!("{at}.{k}: Field required")));
            let call = json!({"id": field("call_id")?, "type": "function",
                "function": {"name": field("name")?, "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("{}")}});
            match out.last_mut() {
                Some(m) if m["role"] == "assistant" => {
                    let calls = m.as_object_mut().map(|o| o.entry("tool_calls").or_insert_with(|| json!([])));
                    if let Some(Value::Array(calls)) = calls {
                        calls.push(call);
                    }
                }
                _ => out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let id = item
                .get("call_id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{at}.call_id: Field required")))?;
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Array(_)) => text_of(Some(v)),
                _ => return Err(bad(format!("{at}.output: Field required"))),
            };
            out.push(json!({"role": "tool", "tool_call_id": id, "content": output}));
        }
        // an earlier turn's reasoning means something only to the model that made it, and
        // its web search's results are in the message that followed
        "reasoning" | "web_search_call" => {}
        other => {
            return Err(bad(format!(
                "{at}: input item type `{other}` is not supported (function calls, their outputs and messages are)"
            )))
        }
    }
    Ok(())
}

/// A Responses function tool as a chat tool; any other tool is a 400 naming it.
fn tool(t: &Value, i: usize) -> Result<Value, GatewayError> {
    let ty = t.get("type").and_then(Value::as_str).unwrap_or("");
    if ty != "function" {
        return Err(bad(format!(
            "tools.{i}: the hosted tool `{ty}` is not supported through the gateway; only `function` tools are"
        )));
    }
    let name = t.get("name").and_then(Value::as_str).ok_or_else(|| bad(format!("tools.{i}.name: Field required")))?;
    let mut f = json!({"name": name, "parameters": t.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}))});
    for k in ["description", "strict"] {
        if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
            f[k] = v.clone();
        }
    }
    Ok(json!({"type": "function", "function": f}))
}

fn tool_choice(v: &Value) -> Result<Value, GatewayError> {
    Ok(match v {
        Value::String(s) if ["auto", "none", "required"].contains(&s.as_str()) => v.clone(),
        Value::Object(o) if o.get("type") == Some(&json!("function")) => {
            let name =
                o.get("name").and_then(Value::as_str).ok_or_else(|| bad("tool_choice.name: Field required".into()))?;
            json!({"type": "function", "function": {"name": name}})
        }
        Value::Object(o) if o.get("type") == Some(&json!("allowed_tools")) => {
            let tools: Vec<Value> = o
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|t| json!({"type": "function", "function": {"name": t.get("name")}}))
                .collect();
            json!({"type": "allowed_tools", "allowed_tools": {"mode": o.get("mode").cloned().unwrap_or(json!("auto")), "tools": tools}})
        }
        _ => return Err(bad("tool_choice: must be auto, none, required, a function or allowed_tools".into())),
    })
}

/// `text.format` as chat's `response_format` (`None` for plain text).
fn response_format(format: &Value) -> Result<Option<Value>, GatewayError> {
    match format.get("type").and_then(Value::as_str) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let name = format.get("name").and_then(Value::as_str).unwrap_or("response");
            let schema = format.get("schema").ok_or_else(|| bad("text.format.schema: Field required".into()))?;
            let mut js = json!({"name": name, "schema": schema});
            for k in ["strict", "description"] {
                if let Some(v) = format.get(k).filter(|v| !v.is_null()) {
                    js[k] = v.clone();
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": js})))
        }
        Some(other) => Err(bad(format!("text.format.type: `{other}` is not supported"))),
    }
}

/// The Responses request `req`, continuing the conversation whose items are `prior`
/// (the input and output items of the response it names as `previous_response_id`), as
/// an OpenAI chat request body.
pub fn request(req: &Map<String, Value>, prior: &[Value]) -> Result<Vec<u8>, GatewayError> {
    let model = req.get("model").and_then(Value::as_str).filter(|m| !m.is_empty());
    let model = model.ok_or_else(|| bad("model: Field required".into()))?;
    let mut messages = Vec::new();
    match req.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                convert_item(item, &format!("instructions.{i}"), &mut messages)?;
            }
        }
        Some(_) => return Err(bad("instructions: must be a string or a list of items".into())),
    }
    for (i, item) in prior.iter().enumerate() {
        convert_item(item, &format!("previous_response_id: item {i}"), &mut messages)?;
    }
    for (i, item) in input_items(req).iter().enumerate() {
        convert_item(item, &format!("input.{i}"), &mut messages)?;
    }
    if !messages.iter().any(|m| m["role"] != "system" && m["role"] != "developer") {
        return Err(bad("input: Field required (at least one input item)".into()));
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    for (k, v) in req {
        match k.as_str() {
            "temperature"
            | "top_p"
            | "parallel_tool_calls"
            | "user"
            | "service_tier"
            | "prompt_cache_key"
            | "safety_identifier" => {
                out.insert(k.clone(), v.clone());
            }
            "max_output_tokens" => {
                out.insert("max_tokens".into(), v.clone());
            }
            "stream" if v == &json!(true) => {
                out.insert("stream".into(), json!(true));
                out.insert("stream_options".into(), json!({"include_usage": true}));
            }
            "tools" => {
                let all = v.as_array().into_iter().flatten().enumerate();
                // web search is the one hosted tool every format has: chat's `web_search_options`
                if let Some((_, search)) = all.clone().find(|(_, t)| web_search::is_responses_tool(t)) {
                    out.insert("web_search_options".into(), web_search::options_from_responses_tool(search));
                }
                let tools = all.filter(|(_, t)| !web_search::is_responses_tool(t)).map(|(i, t)| tool(t, i));
                let tools = tools.collect::<Result<Vec<_>, _>>()?;
                if !tools.is_empty() {
                    out.insert("tools".into(), Value::Array(tools));
                }
            }
            "tool_choice" => {
                out.insert("tool_choice".into(), tool_choice(v)?);
            }
            "text" => {
                if let Some(f) = v.get("format") {
                    if let Some(rf) = response_format(f)? {
                        out.insert("response_format".into(), rf);
                    }
                }
                if let Some(verbosity) = v.get("verbosity").filter(|v| !v.is_null()) {
                    out.insert("verbosity".into(), verbosity.clone());
                }
            }
            "reasoning" => {
                if let Some(effort) = v.get("effort").filter(|v| !v.is_null()) {
                    out.insert("reasoning_effort".into(), effort.clone());
                }
            }
            // the gateway's own (store, previous_response_id, metadata, include,
            // truncation) or nothing a chat target has
            _ => {}
        }
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| GatewayError::Internal(e.to_string()))
}

/// [`request`] for a request that may go to a target with a Responses endpoint of its
/// own: what chat cannot carry that the request asks for (hosted tools, their items,
/// stored files) is left out of the chat view, and why is returned beside it, so that a
/// native target gets the request whole and any other target a 400 naming it. Hosted
/// tool items of earlier turns (`prior`) are history: left out without a refusal, as
/// reasoning items are. A request that is malformed whatever the target is an error.
pub fn request_for_any(req: &Map<String, Value>, prior: &[Value]) -> Result<(Vec<u8>, Option<String>), GatewayError> {
    let prior: Vec<Value> = prior.iter().filter_map(carriable_item).collect();
    let why = match request(req, &prior) {
        Ok(b) => return Ok((b, None)),
        Err(GatewayError::BadRequest(why)) => why,
        Err(e) => return Err(e),
    };
    let stripped = chat_carriable(req);
    if stripped == *req {
        return Err(GatewayError::BadRequest(why));
    }
    // nothing chat can carry is left: the first thing it could not is the reason
    let body = request(&stripped, &prior).map_err(|_| GatewayError::BadRequest(why.clone()))?;
    Ok((body, Some(why)))
}

/// The request without what chat cannot carry.
fn chat_carriable(req: &Map<String, Value>) -> Map<String, Value> {
    let mut r = req.clone();
    if let Some(Value::Array(items)) = r.get_mut("input") {
        *items = items.iter().filter_map(carriable_item).collect();
    }
    if let Some(Value::Array(tools)) = r.get_mut("tools") {
        tools.retain(|t| t.get("type") == Some(&json!("function")) || web_search::is_responses_tool(t));
    }
    let hosted_choice = r.get("tool_choice").and_then(|c| c.get("type")).and_then(Value::as_str);
    if hosted_choice.is_some_and(|t| t != "function" && t != "allowed_tools") {
        r.remove("tool_choice");
    }
    r
}

/// An input item as chat can carry it, or `None`.
fn carriable_item(item: &Value) -> Option<Value> {
    match item.get("type").and_then(Value::as_str).unwrap_or("message") {
        "function_call" | "function_call_output" | "reasoning" | "web_search_call" => Some(item.clone()),
        "message" => {
            let mut item = item.clone();
            if let Some(Value::Array(parts)) = item.get_mut("content") {
                parts.retain(|p| match p.get("type").and_then(Value::as_str) {
                    Some("input_image") => p.get("image_url").is_some_and(Value::is_string),
                    Some("input_file") => p.get("file_data").is_some_and(Value::is_string),
                    _ => true,
                });
            }
            Some(item)
        }
        _ => None,
    }
}

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
fn status(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// An output item id: `prefix` and the response id's own part.
fn item_id(prefix: &str, response_id: &str, n: usize) -> String {
    let own = response_id.trim_start_matches("resp_");
    if n == 0 {
        format!("{prefix}_{own}")
    } else {
        format!("{prefix}_{own}_{n}")
    }
}

/// The web search a Response's sources came from.
fn search_item(response_id: &str) -> Value {
    json!({"id": item_id("ws", response_id, 0), "type": "web_search_call", "status": "completed",
        "action": {"type": "search"}})
}

fn message_item(id: String, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

fn call_item(id: String, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": arguments})
}

/// A Response object around `output`.
fn response_object(
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

/// One Responses SSE event, named by its type.
fn event(data: &Value) -> Bytes {
    let name = data.get("type").and_then(Value::as_str).unwrap_or("message");
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// One output item being streamed.
#[derive(Debug)]
enum Open {
    Text { id: String, text: String, annotations: Vec<Value> },
    Call { id: String, call_id: String, name: String, arguments: String },
}

/// Turns the engine's chat chunk events into Responses SSE events, and keeps the
/// Response they add up to ([`EventTranslator::finished`]).
#[derive(Debug)]
pub struct EventTranslator {
    id: String,
    created_at: u64,
    echo: Echo,
    model: Value,
    seq: u64,
    started: bool,
    open: Option<(usize, Open)>,
    /// The chat tool-call index of the call now open.
    open_call: Option<u64>,
    output: Vec<Value>,
    calls: usize,
    finish: Option<String>,
    usage: Option<Value>,
    done: Option<Value>,
}

impl EventTranslator {
    pub fn new(id: String, created_at: u64, echo: Echo) -> EventTranslator {
        EventTranslator {
            id,
            created_at,
            echo,
            model: Value::Null,
            seq: 0,
            started: false,
            open: None,
            open_call: None,
            output: Vec::new(),
            calls: 0,
            finish: None,
            usage: None,
            done: None,
        }
    }

    /// The Response the stream ended with (completed, incomplete or failed).
    pub fn finished(&self) -> Option<&Value> {
        self.done.as_ref()
    }

    fn emit(&mut self, mut data: Value, out: &mut Vec<Bytes>) {
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.push(event(&data));
    }

    fn snapshot(&self, status: &str) -> Value {
        Value::Object(response_object(&self.id, self.created_at, &self.model, &self.echo, status, self.output.clone()))
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(m) = chunk.get("model") {
            self.model = m.clone();
        }
        let r = self.snapshot("in_progress");
        self.emit(json!({"type": "response.created", "response": r}), out);
        self.emit(json!({"type": "response.in_progress", "response": r}), out);
    }

    /// Closes the item being streamed, if any.
    fn close(&mut self, out: &mut Vec<Bytes>) {
        let Some((index, open)) = self.open.take() else { return };
        self.open_call = None;
        let item = match open {
            Open::Text { id, text, annotations } => {
                let part = json!({"type": "output_text", "text": text, "annotations": annotations, "logprobs": []});
                self.emit(
                    json!({"type": "response.output_text.done", "item_id": id, "output_index": index,
                    "content_index": 0, "text": text, "logprobs": []}),
                    out,
                );
                self.emit(
                    json!({"type": "response.content_part.done", "item_id": id, "output_index": index,
                    "content_index": 0, "part": part}),
                    out,
                );
                let mut item = message_item(id, &text, "completed");
                item["content"][0]["annotations"] = Value::Array(annotations);
                item
            }
            Open::Call { id, call_id, name, arguments } => {
                self.emit(
                    json!({"type": "response.function_call_arguments.done", "item_id": id,
                    "output_index": index, "name": name, "arguments": arguments}),
                    out,
                );
                call_item(id, &call_id, &name, &arguments, "completed")
            }
        };
        self.emit(json!({"type": "response.output_item.done", "output_index": index, "item": item}), out);
        self.output.push(item);
    }

    fn text(&mut self, t: &str, out: &mut Vec<Bytes>) {
        if !matches!(self.open, Some((_, Open::Text { .. }))) {
            self.close(out);
            let index = self.output.len();
            let id = item_id("msg", &self.id, index);
            let mut item = message_item(id.clone(), "", "in_progress");
            item["content"] = json!([]);
            self.emit(json!({"type": "response.output_item.added", "output_index": index, "item": item}), out);
            self.emit(
                json!({"type": "response.content_part.added", "item_id": id, "output_index": index,
                "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
                out,
            );
            self.open = Some((index, Open::Text { id, text: String::new(), annotations: Vec::new() }));
        }
        let Some((index, Open::Text { id, text, .. })) = &mut self.open else { return };
        text.push_str(t);
        let data = json!({"type": "response.output_text.delta", "item_id": id, "output_index": index,
            "content_index": 0, "delta": t, "logprobs": []});
        self.emit(data, out);
    }

    /// A source of the text being streamed (after a web search).
    fn annotation(&mut self, a: &Value, out: &mut Vec<Bytes>) {
        let Some(annotation) = web_search::responses_annotation(a) else { return };
        if !matches!(self.open, Some((_, Open::Text { .. }))) {
            self.text("", out);
        }
        let Some((index, Open::Text { id, annotations, .. })) = &mut self.open else { return };
        annotations.push(annotation.clone());
        let data = json!({"type": "response.output_text.annotation.added", "item_id": id, "output_index": index,
            "content_index": 0, "annotation_index": annotations.len() - 1, "annotation": annotation});
        self.emit(data, out);
    }

    fn call(&mut self, call: &Value, out: &mut Vec<Bytes>) {
        let k = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let f = call.get("function").unwrap_or(&Value::Null);
        if self.open_call != Some(k) {
            self.close(out);
            let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
            let (call_id, name) = (s(call.get("id")), s(f.get("name")));
            let (index, id) = (self.output.len(), item_id("fc", &self.id, self.calls));
            self.calls += 1;
            let item = call_item(id.clone(), &call_id, &name, "", "in_progress");
            self.emit(json!({"type": "response.output_item.added", "output_index": index, "item": item}), out);
            self.open = Some((index, Open::Call { id, call_id, name, arguments: String::new() }));
            self.open_call = Some(k);
        }
        let Some(a) = f.get("arguments").and_then(Value::as_str).filter(|a| !a.is_empty()) else { return };
        let Some((index, Open::Call { id, arguments, .. })) = &mut self.open else { return };
        arguments.push_str(a);
        let data =
            json!({"type": "response.function_call_arguments.delta", "item_id": id, "output_index": index, "delta": a});
        self.emit(data, out);
    }

    fn fail(&mut self, code: &str, message: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.emit(json!({"type": "error", "code": code, "message": message, "param": null}), &mut out);
        let mut r = self.snapshot("failed");
        r["error"] = json!({"code": code, "message": message});
        self.emit(json!({"type": "response.failed", "response": r}), &mut out);
        self.done = Some(r);
        out
    }

    /// The Responses events for one engine event (`data: {chunk}`, `data: [DONE]` or
    /// `data: {"error": ...}`).
    pub fn on_event(&mut self, ev: &SseEvent) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.done.is_some() {
            return out;
        }
        if ev.data == "[DONE]" {
            self.start(&Value::Null, &mut out);
            self.close(&mut out);
            let (status, details) = status(self.finish.as_deref());
            let mut r = self.snapshot(status);
            r["incomplete_details"] = details;
            r["usage"] = usage(self.usage.as_ref());
            let kind = if status == "completed" { "response.completed" } else { "response.incomplete" };
            self.emit(json!({"type": kind, "response": r}), &mut out);
            self.done = Some(r);
            return out;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&ev.data) else {
            return self.fail("server_error", "the upstream stream sent an unreadable event");
        };
        if let Some(e) = chunk.get("error") {
            let message = e.get("message").and_then(Value::as_str).unwrap_or("the stream failed");
            let code = e.get("code").and_then(Value::as_str).unwrap_or("server_error");
            let mut out = Vec::new();
            self.start(&Value::Null, &mut out);
            out.extend(self.fail(code, message));
            return out;
        }
        self.start(&chunk, &mut out);
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else { return out };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        let text =
            delta.get("content").and_then(Value::as_str).or_else(|| delta.get("refusal").and_then(Value::as_str));
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            self.text(t, &mut out);
        }
        for a in delta.get("annotations").and_then(Value::as_array).into_iter().flatten() {
            self.annotation(a, &mut out);
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            self.call(call, &mut out);
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        out
    }
}

#[cfg(test)]
#[path = "from_responses_tests.rs"]
mod tests;
