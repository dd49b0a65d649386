//! OpenAI's wire format (also every `openai-compatible` server): request bodies with the
//! upstream model and forced stream usage, usage extraction, stream accumulation into a
//! full completion (for the cache) and the replay of a completion as chunks.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::types::{ChatRequest, EmbeddingsRequest, StreamOptions, Usage};
use crate::GatewayError;

pub use super::stream_acc::{ChunkFacts, StreamAccumulator};

/// `kind = "openai"`: api.openai.com. The trait's defaults are this wire format.
pub struct OpenAi;

impl super::Adapter for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    /// A `/v1/responses` request goes to OpenAI's own Responses endpoint, as it came.
    fn encode_native(
        &self,
        native: &crate::types::NativeRequest,
        model: &str,
    ) -> Option<Result<Vec<u8>, GatewayError>> {
        super::openai_responses::OpenAiResponses.encode_native(native, model)
    }

    fn for_format(&self, format: crate::types::WireFormat) -> Option<&'static dyn super::Adapter> {
        (format == crate::types::WireFormat::Responses).then_some(&super::openai_responses::OpenAiResponses)
    }
}

/// `kind = "openai-compatible"`: any server that speaks OpenAI's API (vLLM, TGI,
/// Groq, Ollama's `/v1`, ...).
pub struct OpenAiCompatible;

impl super::Adapter for OpenAiCompatible {
    fn name(&self) -> &'static str {
        "openai-compatible"
    }
}

#[derive(Serialize)]
struct ChatOut<'a> {
    model: &'a str,
    messages: &'a [Value],
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(flatten)]
    rest: &'a Map<String, Value>,
}

/// The upstream body: the client's request with the upstream model, and, for streams,
/// `stream_options.include_usage` forced on so every stream can be metered.
pub fn chat_body(req: &ChatRequest, upstream_model: &str) -> Result<Vec<u8>, serde_json::Error> {
    let stream_options = if req.is_stream() {
        let mut o = req.stream_options.clone().unwrap_or_default();
        o.include_usage = Some(true);
        Some(o)
    } else {
        req.stream_options.clone()
    };
    serde_json::to_vec(&ChatOut {
        model: upstream_model,
        messages: &req.messages,
        stream: req.stream,
        stream_options,
        max_tokens: req.max_tokens,
        max_completion_tokens: req.max_completion_tokens,
        rest: &req.rest,
    })
}

#[derive(Serialize)]
struct EmbedOut<'a> {
    model: &'a str,
    input: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding_format: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
    #[serde(flatten)]
    rest: &'a Map<String, Value>,
}

pub fn embeddings_body(req: &EmbeddingsRequest, upstream_model: &str) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&EmbedOut {
        model: upstream_model,
        input: &req.input,
        encoding_format: req.encoding_format.as_deref(),
        dimensions: req.dimensions,
        rest: &req.rest,
    })
}

#[derive(Deserialize)]
struct UsageOnly {
    #[serde(default)]
    usage: Option<Value>,
}

/// Usage from a full response body; `None` when the provider reported none.
pub fn response_usage(body: &[u8]) -> Option<Usage> {
    answer_usage(body).ok().flatten()
}

/// The usage of a non-streamed answer in OpenAI's shape, read in the one parse that also
/// proves the body is one JSON document (an error when it is not: a cut body, or SSE
/// sent to a call that asked for none).
pub fn answer_usage(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    let u: UsageOnly = serde_json::from_slice(body)?;
    Ok(u.usage.as_ref().and_then(Usage::from_openai))
}

// === reading OpenAI requests: shared by every translator ===

/// `data:<media type>;base64,<data>` as (media type, data).
pub fn data_url(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("data:")?.split_once(";base64,")
}

/// The (media type, base64 data) of image part `j` of `at`, for providers that take
/// inline images only; anything else is a 400 naming the part.
pub fn inline_image<'a>(
    part: &'a Value,
    at: &str,
    j: usize,
    provider: &str,
) -> Result<(&'a str, &'a str), GatewayError> {
    let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or_default();
    data_url(url).ok_or_else(|| {
        GatewayError::BadRequest(format!(
            "the {provider} provider does not support image URLs ({at}.content[{j}]); send a base64 data URL"
        ))
    })
}

/// An OpenAI message `content` (a string, or text and image parts) as a provider's
/// blocks: `text` makes a text block, `image` an inline image from (media type, base64
/// data); other parts, and image URLs, are a 400 naming them.
pub fn map_content(
    content: Option<&Value>,
    at: &str,
    provider: &str,
    text: impl Fn(&str) -> Value,
    image: impl Fn(&str, &str) -> Value,
) -> Result<Vec<Value>, GatewayError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![text(s)]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(text(p.get("text").and_then(Value::as_str).unwrap_or_default())),
                Some("image_url") => inline_image(p, at, j, provider).map(|(media, data)| image(media, data)),
                other => Err(GatewayError::BadRequest(format!(
                    "the {provider} provider does not support `{}` content parts",
                    other.unwrap_or("?")
                ))),
            })
            .collect(),
        Some(_) => Err(GatewayError::BadRequest(format!("{at}: `content` must be a string or an array of parts"))),
    }
}

/// One function tool of an OpenAI `tools` list.
pub struct FunctionTool<'a> {
    pub name: &'a str,
    pub description: Option<&'a Value>,
    /// The JSON schema of its arguments, if given.
    pub parameters: Option<&'a Value>,
}

/// The function tools of an OpenAI `tools` list; a tool of another type, or one with
/// no name, is a 400.
pub fn function_tools<'a>(tools: &'a Value, provider: &str) -> Result<Vec<FunctionTool<'a>>, GatewayError> {
    let bad = |m: String| GatewayError::BadRequest(m);
    tools
        .as_array()
        .ok_or_else(|| bad("`tools` must be an array".into()))?
        .iter()
        .map(|t| {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(bad(format!("the {provider} provider does not support tools other than `function`")));
            }
            let f = t.get("function").unwrap_or(&Value::Null);
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| bad("a tool needs a name".into()))?;
            Ok(FunctionTool { name, description: f.get("description"), parameters: f.get("parameters") })
        })
        .collect()
}

/// The object in tool call `j`'s `function.arguments` (a JSON string; empty is `{}`).
pub fn tool_arguments(call: &Value, at: &str, j: usize) -> Result<Value, GatewayError> {
    let args = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
    let args = if args.trim().is_empty() { "{}" } else { args };
    serde_json::from_str(args)
        .map_err(|e| GatewayError::BadRequest(format!("{at}.tool_calls[{j}].function.arguments is not JSON: {e}")))
}

/// `stop` (a string or a list) as a list.
pub fn stop_list(v: &Value) -> Value {
    match v {
        Value::String(s) => json!([s]),
        other => other.clone(),
    }
}

/// Appends `new` to the last turn when it has the same role, else starts a turn: for
/// providers whose user and assistant turns must alternate. `key` names the turn's list
/// (`content`, or Gemini's `parts`).
pub fn push_turn(turns: &mut Vec<Value>, role: &str, key: &str, new: Vec<Value>) {
    if new.is_empty() {
        return;
    }
    if let Some(last) = turns.last_mut() {
        if last["role"] == role {
            if let Some(list) = last[key].as_array_mut() {
                list.extend(new);
                return;
            }
        }
    }
    let mut turn = Map::new();
    turn.insert("role".into(), json!(role));
    turn.insert(key.into(), Value::Array(new));
    turns.push(Value::Object(turn));
}

/// What one event of an OpenAI stream says: a chunk with content (text, tool calls, a
/// refusal, reasoning), a finish reason, usage or `[DONE]` is content; a role-only or
/// empty chunk is preamble; an `error` object is a failure.
pub fn stream_step(ev: &super::sse::SseEvent) -> super::StreamStep {
    use super::StreamStep;
    if ev.data == "[DONE]" {
        return StreamStep::Content;
    }
    let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
        return StreamStep::Failed { status: 502, message: "stream chunk is not JSON".into() };
    };
    if let Some(e) = v.get("error") {
        let kind = ["type", "code"].iter().find_map(|k| e.get(*k).and_then(Value::as_str)).unwrap_or("api_error");
        let message = e.get("message").and_then(Value::as_str).unwrap_or("upstream stream error").to_string();
        return StreamStep::Failed { status: super::stream_error_status(kind), message };
    }
    let choices = v.get("choices").and_then(Value::as_array);
    if choices.is_none_or(Vec::is_empty) {
        return if v.get("usage").is_some_and(|u| !u.is_null()) { StreamStep::Content } else { StreamStep::Preamble };
    }
    let content = choices.into_iter().flatten().any(|c| {
        let d = c.get("delta");
        let text = |k: &str| d.and_then(|d| d.get(k)).and_then(Value::as_str).is_some_and(|t| !t.is_empty());
        !c.get("finish_reason").is_none_or(Value::is_null)
            || text("content")
            || text("refusal")
            || text("reasoning_content")
            || text("reasoning")
            || d.and_then(|d| d.get("tool_calls")).and_then(Value::as_array).is_some_and(|a| !a.is_empty())
            || d.and_then(|d| d.get("function_call")).is_some_and(|f| !f.is_null())
    });
    if content {
        StreamStep::Content
    } else {
        StreamStep::Preamble
    }
}

/// The message of an OpenAI-style error body, or the body text itself.
pub fn error_message(body: &[u8]) -> String {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    // OpenAI, Anthropic and Google put it in `error.message`, Ollama in `error`, AWS in
    // `message` or `Message`
    for pointer in ["/error/message", "/error", "/message", "/Message"] {
        if let Some(m) = v.as_ref().and_then(|v| v.pointer(pointer)).and_then(Value::as_str) {
            return m.to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    text.chars().take(512).collect()
}

/// Replays a full completion as stream chunks (a cache hit for a streamed request).
pub fn completion_to_chunks(completion: &Value, include_usage: bool) -> Vec<Value> {
    let base = |choices: Value| {
        let mut c = json!({
            "id": completion.get("id"), "object": "chat.completion.chunk",
            "created": completion.get("created"), "model": completion.get("model"), "choices": choices,
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut out = Vec::new();
    for choice in completion.get("choices").and_then(Value::as_array).into_iter().flatten() {
        let index = choice.get("index").cloned().unwrap_or(json!(0));
        let msg = choice.get("message").cloned().unwrap_or(json!({}));
        let mut delta = json!({"role": msg.get("role").cloned().unwrap_or(json!("assistant")),
                               "content": msg.get("content").cloned().unwrap_or(Value::Null)});
        if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut c = c.clone();
                    c["index"] = json!(i);
                    c
                })
                .collect();
            delta["tool_calls"] = Value::Array(calls);
        }
        out.push(base(json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": null}])));
        out.push(base(json!([{"index": index, "delta": {}, "logprobs": null,
                                "finish_reason": choice.get("finish_reason").cloned().unwrap_or(json!("stop"))}])));
    }
    if include_usage {
        if let Some(u) = completion.get("usage") {
            let mut c = base(json!([]));
            c["usage"] = u.clone();
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_body_swaps_model_and_forces_stream_usage() {
        let req: ChatRequest = serde_json::from_str(
            r#"{"model":"alias","messages":[{"role":"user","content":"hi"}],"stream":true,"temperature":0.2,"user":"u"}"#,
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&chat_body(&req, "gpt-4o-mini").unwrap()).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["user"], "u");
    }

    #[test]
    fn accumulates_split_tool_call_arguments_in_order() {
        let chunks = [
            json!({"id":"c1","model":"m","created":1,"choices":[{"index":0,"delta":{"role":"assistant","content":null,
                "tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"finish_reason":null}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Paris\"}"}}]},"finish_reason":null}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
            json!({"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}),
        ];
        let mut acc = StreamAccumulator::default();
        for c in &chunks {
            acc.add(c);
        }
        assert!(acc.finished());
        assert_eq!(acc.usage, Some(Usage { input: 5, output: 7, ..Usage::default() }));
        let full = acc.completion();
        let call = &full["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(call["id"], "call_1");
        assert_eq!(full["choices"][0]["finish_reason"], "tool_calls");
        // and the replay carries the same call
        let replay = completion_to_chunks(&full, true);
        assert_eq!(replay[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(replay.last().unwrap()["usage"]["total_tokens"], 12);
    }

    #[test]
    fn usage_and_error_extraction() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":2}}}"#;
        assert_eq!(response_usage(body), Some(Usage { input: 3, output: 4, cached_input: 2, ..Usage::default() }));
        assert_eq!(response_usage(b"{}"), None);
        assert_eq!(error_message(br#"{"error":{"message":"bad model"}}"#), "bad model");
        assert_eq!(error_message(b"plain text"), "plain text");
    }
}
