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

use serde_json::{json, Map, Value};

use super::adapter::bad;
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
            // one of OpenAI's own stored prompts (the gateway's are rendered before this)
            "prompt" if !v.is_null() => {
                return Err(bad("prompt: OpenAI's stored prompts (`pmpt_…`) are served only by an `openai` target; \
                     a prompt in Switchyard's registry works with any provider"
                    .into()))
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
    r.remove("prompt");
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

mod answer;
mod events;

#[cfg(test)]
use self::answer::message_item;
pub use self::answer::{final_response, output_as_input, response, usage, with_previous};
pub use self::events::EventTranslator;

#[cfg(test)]
mod tests;
