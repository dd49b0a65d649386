//! Deterministic replies in OpenAI's format, shared by the built-in `mock` provider and
//! `switchyard mock-upstream`: the same request always gets the same content, token
//! counts and embedding vectors.

mod native;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use native::*;

/// `kind = "mock"`: answers in-process, deterministically, in OpenAI's format (the
/// embedded default runs on it: no network, no keys).
pub struct Mock;

impl super::Adapter for Mock {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn url(
        &self,
        _p: &switchyard_config::Provider,
        endpoint: crate::types::Endpoint,
        _model: &str,
        _stream: bool,
    ) -> Result<String, crate::GatewayError> {
        Ok(format!("http://mock.invalid{}", endpoint.path()))
    }

    fn answer_locally(
        &self,
        endpoint: crate::types::Endpoint,
        body: &[u8],
        stream: bool,
    ) -> Option<Result<super::LocalAnswer, super::LocalError>> {
        use crate::types::Endpoint;
        use bytes::Bytes;
        let req: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Some(Err(super::LocalError::Invalid(e.to_string()))),
        };
        let model = req.get("model").and_then(Value::as_str).unwrap_or("mock").to_string();
        let created = crate::types::unix_secs();
        Some(match endpoint {
            Endpoint::Chat if stream => {
                let mut events: Vec<Bytes> =
                    chat_chunks(&req, &model, created).iter().map(|c| super::sse::data_event(&c.to_string())).collect();
                events.push(Bytes::from_static(super::sse::DONE));
                Ok(super::LocalAnswer::Events(events))
            }
            Endpoint::Chat => {
                Ok(super::LocalAnswer::Full(Bytes::from(chat_completion(&req, &model, created).to_string())))
            }
            Endpoint::Embeddings => embeddings(&req, &model)
                .map(|v| super::LocalAnswer::Full(Bytes::from(v.to_string())))
                .map_err(|m| super::LocalError::Status(400, m)),
        })
    }
}

/// Rough token count used by the mock (4 characters a token, at least 1 for non-empty).
pub fn mock_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
        }
        _ => String::new(),
    }
}

fn digest_hex(v: &[u8]) -> String {
    hex::encode(&Sha256::digest(v)[..12])
}

/// The reply words for a chat request.
fn reply_words(req: &Value) -> Vec<String> {
    let messages = req.get("messages").and_then(Value::as_array);
    let last_user = messages
        .and_then(|m| m.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")))
        .map(|m| text_of(m.get("content")))
        .unwrap_or_default();
    let mut words: Vec<String> = ["This", "is", "a", "mock", "reply", "to:"].iter().map(|s| s.to_string()).collect();
    words.extend(last_user.split_whitespace().take(24).map(str::to_string));
    let max =
        req.get("max_completion_tokens").or_else(|| req.get("max_tokens")).and_then(Value::as_u64).unwrap_or(u64::MAX);
    words.truncate(max.clamp(1, 10_000) as usize);
    words
}

fn prompt_tokens(req: &Value) -> u64 {
    req.get("messages")
        .and_then(Value::as_array)
        .map(|ms| ms.iter().map(|m| 4 + mock_tokens(&text_of(m.get("content")))).sum::<u64>() + 3)
        .unwrap_or(0)
}

fn finish_reason(req: &Value, words: &[String]) -> &'static str {
    let max = req.get("max_completion_tokens").or_else(|| req.get("max_tokens")).and_then(Value::as_u64);
    match max {
        Some(m) if words.len() as u64 >= m => "length",
        _ => "stop",
    }
}

/// A value that matches a JSON schema (enough of it for tools and structured outputs):
/// objects with every property, strings from `text`, the first of an enum, `const`,
/// arrays of one item, 1 for numbers, `true` for booleans.
pub fn sample(schema: &Value, text: &str, depth: usize) -> Value {
    if depth > 16 {
        return Value::Null;
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = schema.get(key).and_then(Value::as_array).and_then(|a| a.first()) {
            return sample(first, text, depth + 1);
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // `["string", "null"]`: the first that is not null
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match kind {
        "object" => {
            let mut out = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    out.insert(k.clone(), sample(v, text, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => json!([sample(schema.get("items").unwrap_or(&Value::Null), text, depth + 1)]),
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => json!(text),
    }
}

/// The last user message's text.
fn last_user_text(req: &Value) -> String {
    req.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")))
        .map(|m| text_of(m.get("content")))
        .unwrap_or_default()
}

/// The function call an OpenAI-format request gets when it offers tools (the one
/// `tool_choice` names, else the first) and no tool has answered yet, unless
/// `tool_choice` is `none`: arguments made from the function's parameters schema.
fn openai_tool_call(req: &Value) -> Option<(String, String, String)> {
    if req.get("tool_choice") == Some(&json!("none")) {
        return None;
    }
    let answered = req
        .get("messages")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|m| m.get("role").and_then(Value::as_str) == Some("tool")));
    if answered {
        return None;
    }
    let named = req.pointer("/tool_choice/function/name").and_then(Value::as_str);
    let f = req
        .get("tools")?
        .as_array()?
        .iter()
        .filter_map(|t| t.get("function"))
        .find(|f| named.is_none_or(|n| f.get("name").and_then(Value::as_str) == Some(n)))?;
    let name = f.get("name")?.as_str()?.to_string();
    let params = f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}));
    let args = sample(&params, &last_user_text(req), 0).to_string();
    Some((format!("call_mock_{}", digest_hex(req.to_string().as_bytes())), name, args))
}

/// The answer's text: JSON matching `response_format` when it asks for JSON, else the
/// reply words.
fn openai_content(req: &Value, words: &[String]) -> String {
    match req.pointer("/response_format/type").and_then(Value::as_str) {
        Some("json_schema") => {
            let schema = req.pointer("/response_format/json_schema/schema").cloned().unwrap_or(json!({}));
            sample(&schema, &last_user_text(req), 0).to_string()
        }
        Some("json_object") => json!({"reply": words.join(" ")}).to_string(),
        _ => words.join(" "),
    }
}

/// The source a mock web search finds for `text`: a URL made from its first word.
pub fn search_source(text: &str) -> (String, String) {
    let word: String =
        text.split_whitespace().next().unwrap_or("nothing").chars().filter(char::is_ascii_alphanumeric).collect();
    (format!("https://search.mock/{}", word.to_ascii_lowercase()), format!("About {word}"))
}

/// The annotation a `web_search_options` request gets: the whole reply cites the
/// source found for the last user text.
fn openai_annotations(req: &Value, reply: &str) -> Option<Value> {
    req.get("web_search_options").filter(|o| !o.is_null())?;
    let (url, title) = search_source(&last_user_text(req));
    let end = reply.chars().count();
    Some(
        json!([{"type": "url_citation", "url_citation": {"url": url, "title": title, "start_index": 0, "end_index": end}}]),
    )
}

/// A full `chat.completion` for `req`, answered as `model`: a function call when it
/// offers tools, JSON when it asks for it, else the reply words.
pub fn chat_completion(req: &Value, model: &str, created: u64) -> Value {
    let words = reply_words(req);
    let prompt = prompt_tokens(req);
    let (message, finish, completion) = match openai_tool_call(req) {
        Some((id, name, args)) => {
            let tokens = mock_tokens(&args).max(1);
            let call = json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}});
            (json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [call]}), "tool_calls", tokens)
        }
        None => {
            let content = openai_content(req, &words);
            let tokens =
                if content.starts_with(['{', '[']) { mock_tokens(&content).max(1) } else { words.len() as u64 };
            let mut message = json!({"role": "assistant", "content": content, "refusal": null});
            if let Some(a) = openai_annotations(req, &content) {
                message["annotations"] = a;
            }
            (message, finish_reason(req, &words), tokens)
        }
    };
    json!({
        "id": format!("chatcmpl-mock-{}", digest_hex(req.to_string().as_bytes())),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    })
}

/// The `chat.completion.chunk`s of a streamed reply: role, one chunk a word (JSON and a
/// function call's arguments in pieces of 8 characters), the finish chunk, and the usage
/// chunk when `stream_options.include_usage` is set.
pub fn chat_chunks(req: &Value, model: &str, created: u64) -> Vec<Value> {
    let words = reply_words(req);
    let id = format!("chatcmpl-mock-{}", digest_hex(req.to_string().as_bytes()));
    let include_usage =
        req.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let pieces = |s: &str| -> Vec<String> {
        s.chars().collect::<Vec<_>>().chunks(8).map(|c| c.iter().collect::<String>()).collect()
    };
    let mut out = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    let (finish, completion) = match openai_tool_call(req) {
        Some((call_id, name, args)) => {
            out.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            for p in pieces(&args) {
                out.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}), Value::Null));
            }
            (json!("tool_calls"), mock_tokens(&args).max(1))
        }
        None if req.pointer("/response_format/type").and_then(Value::as_str).is_some_and(|t| t != "text") => {
            let content = openai_content(req, &words);
            for p in pieces(&content) {
                out.push(chunk(json!({"content": p}), Value::Null));
            }
            (json!("stop"), mock_tokens(&content).max(1))
        }
        None => {
            for (i, w) in words.iter().enumerate() {
                let text = if i == 0 { w.clone() } else { format!(" {w}") };
                out.push(chunk(json!({"content": text}), Value::Null));
            }
            if let Some(a) = openai_annotations(req, &words.join(" ")) {
                out.push(chunk(json!({"annotations": a}), Value::Null));
            }
            (json!(finish_reason(req, &words)), words.len() as u64)
        }
    };
    out.push(chunk(json!({}), finish));
    if include_usage {
        let prompt = prompt_tokens(req);
        out.push(json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }));
    }
    out
}

/// A deterministic unit vector for `text`.
pub fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(dims);
    let mut block = Sha256::digest(text.as_bytes());
    while out.len() < dims {
        for pair in block.chunks(2) {
            if out.len() == dims {
                break;
            }
            let v = u16::from_le_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            out.push(v as f32 / 32767.5 - 1.0);
        }
        block = Sha256::digest(block);
    }
    let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::EPSILON);
    out.iter_mut().for_each(|v| *v /= norm);
    out
}

/// Default embedding size of the mock.
pub const DEFAULT_DIMS: usize = 16;

/// An embeddings response for `req` (`input` a string or array; `encoding_format`
/// float or base64; `dimensions` honoured).
pub fn embeddings(req: &Value, model: &str) -> Result<Value, String> {
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => return Err("`input` must be a string or a non-empty array".into()),
    };
    let dims = req.get("dimensions").and_then(Value::as_u64).map_or(DEFAULT_DIMS, |d| d.clamp(1, 8192) as usize);
    let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            tokens += mock_tokens(text).max(1);
            let v = vector(text, dims);
            let embedding = if base64 { Value::String(super::f32_base64(v.iter().copied())) } else { json!(v) };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn replies_are_deterministic_and_respect_max_tokens() {
        let req = json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}]});
        let a = chat_completion(&req, "mock", 1);
        assert_eq!(a, chat_completion(&req, "mock", 1));
        assert_eq!(a["choices"][0]["message"]["content"], "This is a mock reply to: hello there");
        assert_eq!(a["usage"]["completion_tokens"], 8);
        let short = json!({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]});
        let b = chat_completion(&short, "mock", 1);
        assert_eq!(b["choices"][0]["message"]["content"], "This is");
        assert_eq!(b["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn chunks_concatenate_to_the_full_reply() {
        let req = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                         "messages": [{"role": "user", "content": "hello there"}]});
        let chunks = chat_chunks(&req, "mock", 1);
        let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, chat_completion(&req, "mock", 1)["choices"][0]["message"]["content"]);
        assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 8);
    }

    #[test]
    fn embeddings_float_and_base64_agree() {
        let f = embeddings(&json!({"input": ["a", "b"], "dimensions": 4}), "e").unwrap();
        let b = embeddings(&json!({"input": ["a", "b"], "dimensions": 4, "encoding_format": "base64"}), "e").unwrap();
        let floats: Vec<f32> =
            f["data"][1]["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let raw =
            base64::engine::general_purpose::STANDARD.decode(b["data"][1]["embedding"].as_str().unwrap()).unwrap();
        let decoded: Vec<f32> = raw.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(floats, decoded);
        let norm: f32 = floats.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert!(embeddings(&json!({"input": []}), "e").is_err());
    }
}

#[cfg(test)]
mod structured_tests {
    use serde_json::json;

    use super::*;

    fn ask(extra: Value) -> Value {
        let mut r = json!({"model": "m", "messages": [{"role": "user", "content": "Lisbon"}]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    }

    /// The mock answers tools with a call whose arguments match the function's schema, and
    /// `response_format` with JSON that matches it, streamed or not, deterministically.
    #[test]
    fn the_mock_honours_tools_and_response_format() {
        let tools = json!([{"type": "function", "function": {"name": "weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["c", "f"]}}}}}]);
        let c = chat_completion(&ask(json!({"tools": tools})), "m", 1);
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        let call = &c["choices"][0]["message"]["tool_calls"][0]["function"];
        assert_eq!(call["name"], "weather");
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "Lisbon", "days": 1, "unit": "c"}));
        // streamed: the arguments arrive in pieces that add up to the same
        let chunks = chat_chunks(&ask(json!({"tools": tools, "stream": true})), "m", 1);
        let streamed: String = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments")?.as_str().map(str::to_string))
            .collect();
        assert_eq!(streamed, call["arguments"].as_str().unwrap());
        // `none`, or a tool that already answered: text
        let none = chat_completion(&ask(json!({"tools": tools, "tool_choice": "none"})), "m", 1);
        assert_eq!(none["choices"][0]["finish_reason"], "stop");
        // structured output
        let schema = json!({"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["name", "tags"]});
        let rf = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}});
        let c = chat_completion(&ask(json!({"response_format": rf})), "m", 1);
        let v: Value = serde_json::from_str(c["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert_eq!(v, json!({"name": "Lisbon", "tags": ["Lisbon"]}));
        let c = chat_completion(&ask(json!({"response_format": {"type": "json_object"}})), "m", 1);
        assert!(serde_json::from_str::<Value>(c["choices"][0]["message"]["content"].as_str().unwrap()).is_ok());
    }
}
