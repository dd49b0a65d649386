//! Google's Gemini API (`{base_url}/models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse`, `:batchEmbedContents`), pure translation:
//! - [`chat_body`]: OpenAI chat → `contents` (roles `user`/`model`), `systemInstruction`,
//!   `functionDeclarations`, `toolConfig`, `generationConfig`;
//! - [`completion`]: a `GenerateContentResponse` → `chat.completion` (a safety block is
//!   `finish_reason: content_filter`);
//! - [`StreamTranslator`]: each streamed response → chunks, usage at the end;
//! - [`embed_body`] / [`embeddings`]: `batchEmbedContents` both ways.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::adapter::bad;
use super::capabilities::Capabilities;
use super::openai::{function_tools, map_content, push_turn, stop_list, tool_arguments};
use super::sse::{data_event, SseEvent, DONE};
use super::{DecodeCtx, DecodeError, EventTranslate, Sse, StreamTranslate};
use crate::types::{ChatRequest, EmbeddingsRequest, Endpoint};
use crate::GatewayError;
use switchyard_config::Provider;

/// `kind = "gemini"`: Google's Gemini API, keyed by `x-goog-api-key`.
pub struct Gemini;

impl super::Adapter for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { embeddings: true, json_mode: true, json_schema: true, ..Capabilities::MINIMAL }
    }

    fn url(&self, p: &Provider, endpoint: Endpoint, model: &str, stream: bool) -> Result<String, GatewayError> {
        let method = match (endpoint, stream) {
            (Endpoint::Chat, false) => "generateContent",
            (Endpoint::Chat, true) => "streamGenerateContent?alt=sse",
            (Endpoint::Embeddings, _) => "batchEmbedContents",
        };
        Ok(format!("{}/models/{model}:{method}", p.base_url))
    }

    fn url_per_call(&self) -> bool {
        true
    }

    fn auth(&self, api_key: &str) -> (&'static str, String) {
        ("x-goog-api-key", api_key.to_string())
    }

    fn translate_chat(&self, req: &ChatRequest, _model: &str) -> Result<Vec<u8>, GatewayError> {
        chat_body(req)
    }

    fn translate_embeddings(&self, req: &EmbeddingsRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
        embed_body(req, model)
    }

    fn decode(&self, endpoint: Endpoint, body: Bytes, cx: &DecodeCtx<'_>) -> Result<Bytes, DecodeError> {
        match endpoint {
            Endpoint::Chat => completion(&body, cx.model, &cx.new_id(), cx.created),
            Endpoint::Embeddings => embeddings(&body, cx.model, cx.base64),
        }
        .map_err(|e| DecodeError(format!("gemini answer: {e}")))
    }

    fn stream_decoder(&self, cx: &DecodeCtx<'_>) -> Option<Box<dyn StreamTranslate>> {
        Some(Box::new(Sse::new(StreamTranslator::new(cx.new_id(), cx.model.to_string(), cx.created))))
    }
}

fn unsupported(what: &str) -> GatewayError {
    super::adapter::unsupported("gemini", what)
}

/// Text and inline images of an OpenAI `content` as Gemini parts.
fn parts(content: Option<&Value>, at: &str) -> Result<Vec<Value>, GatewayError> {
    map_content(
        content,
        at,
        "gemini",
        |t| json!({"text": t}),
        |mime, data| json!({"inlineData": {"mimeType": mime, "data": data}}),
    )
}

/// The OpenAI chat request as a `generateContent` request.
pub fn chat_body(req: &ChatRequest) -> Result<Vec<u8>, GatewayError> {
    let mut system = Vec::new();
    let mut contents = Vec::new();
    // a tool result names its call by id; Gemini wants the function's name
    let mut names: HashMap<String, Value> = HashMap::new();
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.get("role").and_then(Value::as_str).unwrap_or_default() {
            "system" | "developer" => system.extend(parts(m.get("content"), &at)?),
            "user" => push_turn(&mut contents, "user", "parts", parts(m.get("content"), &at)?),
            "assistant" => {
                let mut p = parts(m.get("content"), &at)?;
                for (j, c) in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let f = c.get("function").unwrap_or(&Value::Null);
                    let args = tool_arguments(c, &at, j)?;
                    let name = f.get("name").cloned().unwrap_or(Value::Null);
                    if let Some(id) = c.get("id").and_then(Value::as_str) {
                        names.insert(id.to_string(), name.clone());
                    }
                    p.push(json!({"functionCall": {"name": name, "args": args}}));
                }
                push_turn(&mut contents, "model", "parts", p);
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or_default();
                let name = names.get(id).cloned().ok_or_else(|| {
                    bad(format!("{at}: `tool_call_id` `{id}` matches no earlier assistant tool call"))
                })?;
                let text = match m.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    other => {
                        parts(other, &at)?.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n")
                    }
                };
                // a JSON object answer is passed as is, anything else wrapped
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({"content": text}),
                };
                push_turn(
                    &mut contents,
                    "user",
                    "parts",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                );
            }
            other => return Err(unsupported(&format!("`{other}` messages"))),
        }
    }
    if contents.is_empty() {
        return Err(bad("the request needs at least one user or assistant message".into()));
    }
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let mut gen = Map::new();
    if let Some(n) = req.max_completion_tokens.or(req.max_tokens) {
        gen.insert("maxOutputTokens".into(), json!(n));
    }
    for (k, v) in &req.rest {
        match k.as_str() {
            "temperature" => {
                gen.insert("temperature".into(), v.clone());
            }
            "top_p" => {
                gen.insert("topP".into(), v.clone());
            }
            "seed" => {
                gen.insert("seed".into(), v.clone());
            }
            "presence_penalty" => {
                gen.insert("presencePenalty".into(), v.clone());
            }
            "frequency_penalty" => {
                gen.insert("frequencyPenalty".into(), v.clone());
            }
            "stop" => {
                gen.insert("stopSequences".into(), stop_list(v));
            }
            "response_format" => match v.get("type").and_then(Value::as_str) {
                Some("json_object") => {
                    gen.insert("responseMimeType".into(), json!("application/json"));
                }
                Some("json_schema") => {
                    gen.insert("responseMimeType".into(), json!("application/json"));
                    if let Some(s) = v.pointer("/json_schema/schema") {
                        gen.insert("responseJsonSchema".into(), s.clone());
                    }
                }
                _ => {}
            },
            // Gemini's thinking budget for the effort asked (`none` turns thinking off)
            "reasoning_effort" => {
                let budget = match v.as_str() {
                    Some("none") => Some(0),
                    Some("minimal" | "low") => Some(1024),
                    Some("medium") => Some(8192),
                    Some("high" | "xhigh" | "max") => Some(24_576),
                    _ => None,
                };
                if let Some(b) = budget {
                    gen.insert("thinkingConfig".into(), json!({"thinkingBudget": b}));
                }
            }
            "tools" => {
                let decls: Vec<Value> = function_tools(v, "gemini")?
                    .into_iter()
                    .map(|t| {
                        let mut d = json!({"name": t.name});
                        if let Some(desc) = t.description {
                            d["description"] = desc.clone();
                        }
                        if let Some(p) = t.parameters {
                            d["parametersJsonSchema"] = p.clone();
                        }
                        d
                    })
                    .collect();
                out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
            }
            "tool_choice" => {
                let config = match v {
                    Value::String(s) if s == "auto" => json!({"mode": "AUTO"}),
                    Value::String(s) if s == "none" => json!({"mode": "NONE"}),
                    Value::String(s) if s == "required" => json!({"mode": "ANY"}),
                    Value::Object(o) => match o.get("function").and_then(|f| f.get("name")) {
                        Some(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
                        None => return Err(bad("`tool_choice` names no function".into())),
                    },
                    _ => return Err(bad("`tool_choice` must be auto, none, required or a function".into())),
                };
                out.insert("toolConfig".into(), json!({"functionCallingConfig": config}));
            }
            "n" if v.as_u64().unwrap_or(1) > 1 => return Err(unsupported("`n` greater than 1")),
            "logprobs" if v == &json!(true) => return Err(unsupported("`logprobs`")),
            "web_search_options" if !v.is_null() => {
                return Err(unsupported("web search (`web_search_options`, a `web_search` tool)"))
            }
            _ => {}
        }
    }
    if !gen.is_empty() {
        out.insert("generationConfig".into(), Value::Object(gen));
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| GatewayError::Internal(e.to_string()))
}

/// OpenAI's finish reason for Gemini's.
pub fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

fn usage(v: &Value) -> Value {
    let n = |k: &str| v.pointer(&format!("/usageMetadata/{k}")).and_then(Value::as_u64).unwrap_or(0);
    let prompt = n("promptTokenCount");
    let completion = n("candidatesTokenCount") + n("thoughtsTokenCount");
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": n("cachedContentTokenCount")},
        "completion_tokens_details": {"reasoning_tokens": n("thoughtsTokenCount")}})
}

/// Text and calls of a response's first candidate, and its finish reason.
fn candidate(v: &Value, first_call: usize, id: &str) -> (String, Vec<Value>, Option<String>) {
    let c = v.pointer("/candidates/0");
    let mut text = String::new();
    let mut calls = Vec::new();
    for p in c.and_then(|c| c.pointer("/content/parts")).and_then(Value::as_array).into_iter().flatten() {
        if p.get("thought") == Some(&json!(true)) {
            continue;
        }
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
        if let Some(f) = p.get("functionCall") {
            let n = first_call + calls.len();
            let call_id = f.get("id").and_then(Value::as_str).map_or_else(|| format!("call_{id}_{n}"), str::to_string);
            calls.push(json!({"index": n, "id": call_id, "type": "function", "function": {
                "name": f.get("name"), "arguments": f.get("args").map_or_else(|| "{}".to_string(), Value::to_string)}}));
        }
    }
    let mut reason = c.and_then(|c| c.get("finishReason")).and_then(Value::as_str).map(str::to_string);
    if c.is_none() && v.pointer("/promptFeedback/blockReason").is_some() {
        reason = Some("SAFETY".into());
    }
    (text, calls, reason)
}

/// A `generateContent` answer as a `chat.completion`.
pub fn completion(body: &[u8], model: &str, id: &str, created: u64) -> Result<Bytes, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let (text, calls, reason) = candidate(&v, 0, id);
    let called = !calls.is_empty();
    let calls: Vec<Value> = calls
        .into_iter()
        .map(|mut c| {
            if let Some(o) = c.as_object_mut() {
                o.remove("index");
            }
            c
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && called { Value::Null } else { json!(text) }, "refusal": null});
    if called {
        message["tool_calls"] = Value::Array(calls);
    }
    let finish = finish_reason(reason.as_deref().unwrap_or("STOP"), called);
    let out = json!({"id": format!("chatcmpl-{id}"), "object": "chat.completion", "created": created,
        "model": v.get("modelVersion").and_then(Value::as_str).unwrap_or(model),
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage(&v)});
    Ok(Bytes::from(out.to_string()))
}

/// Turns each streamed `GenerateContentResponse` into chunks; the stream's end (Gemini
/// sends no terminator) gives the finish, usage and `[DONE]` through [`Self::finish`].
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    started: bool,
    calls: usize,
    reason: Option<String>,
    last: Value,
}

impl StreamTranslator {
    pub fn new(id: String, model: String, created: u64) -> StreamTranslator {
        StreamTranslator { id, model, created, started: false, calls: 0, reason: None, last: Value::Null }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let c = json!({"id": format!("chatcmpl-{}", self.id), "object": "chat.completion.chunk",
            "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        data_event(&c.to_string())
    }

    pub fn on_event(&mut self, ev: &SseEvent) -> Result<Vec<Bytes>, String> {
        EventTranslate::on_event(self, ev)
    }

    /// The end of the upstream stream: a finished answer gets its finish chunk, usage and
    /// `[DONE]`; one that never said why it stopped was cut, and gets nothing (the relay
    /// then reports the stream as incomplete).
    pub fn finish(&mut self) -> Vec<Bytes> {
        EventTranslate::finish(self)
    }
}

impl EventTranslate for StreamTranslator {
    fn on_event(&mut self, ev: &SseEvent) -> Result<Vec<Bytes>, String> {
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| format!("invalid event JSON: {e}"))?;
        let mut out = Vec::new();
        if let Some(e) = v.get("error") {
            let message = e.get("message").and_then(Value::as_str).unwrap_or("upstream stream error");
            let body = json!({"error": {"message": format!("gemini: {message}"), "type": "api_error", "code": "upstream_error"}});
            out.push(data_event(&body.to_string()));
            return Ok(out);
        }
        if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
            self.model = m.to_string();
        }
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        let (text, calls, reason) = candidate(&v, self.calls, &self.id);
        if !text.is_empty() {
            out.push(self.chunk(json!({"content": text}), None));
        }
        if !calls.is_empty() {
            self.calls += calls.len();
            out.push(self.chunk(json!({"tool_calls": calls}), None));
        }
        if reason.is_some() {
            self.reason = reason;
        }
        if v.get("usageMetadata").is_some() {
            self.last = v;
        }
        Ok(out)
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let Some(reason) = self.reason.take() else {
            return Vec::new();
        };
        let f = finish_reason(&reason, self.calls > 0);
        let u = json!({"id": format!("chatcmpl-{}", self.id), "object": "chat.completion.chunk",
            "created": self.created, "model": self.model, "choices": [], "usage": usage(&self.last)});
        vec![self.chunk(json!({}), Some(f)), data_event(&u.to_string()), Bytes::from_static(DONE)]
    }
}

/// The OpenAI embeddings request as a `batchEmbedContents` request.
pub fn embed_body(req: &EmbeddingsRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
    let inputs: Vec<&str> = match &req.input {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| unsupported("token-array embedding inputs"))?,
        _ => return Err(bad("`input` must be a string or an array of strings".into())),
    };
    let requests: Vec<Value> = inputs
        .iter()
        .map(|t| {
            let mut r = json!({"model": format!("models/{model}"), "content": {"parts": [{"text": t}]}});
            if let Some(d) = req.dimensions {
                r["outputDimensionality"] = json!(d);
            }
            r
        })
        .collect();
    serde_json::to_vec(&json!({"requests": requests})).map_err(|e| GatewayError::Internal(e.to_string()))
}

/// A `batchEmbedContents` answer as OpenAI's list. Gemini reports no token counts, so
/// the usage is the gateway's estimate from the inputs.
pub fn embeddings(body: &[u8], model: &str, base64: bool) -> Result<Bytes, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let list = v.get("embeddings").and_then(Value::as_array).ok_or("no `embeddings`")?;
    let data: Vec<Value> = list
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let values = e.get("values").cloned().unwrap_or_else(|| json!([]));
            let embedding = if base64 {
                let floats = values.as_array().into_iter().flatten().map(|x| x.as_f64().unwrap_or(0.0) as f32);
                json!(super::f32_base64(floats))
            } else {
                values
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Bytes::from(json!({"object": "list", "data": data, "model": model}).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::sse::SseParser;

    fn body(v: Value) -> Value {
        let req = ChatRequest::parse(v.to_string().as_bytes()).unwrap();
        serde_json::from_slice(&chat_body(&req).unwrap()).unwrap()
    }

    #[test]
    fn requests_map_roles_tools_and_generation_config() {
        let out = body(json!({"model": "a", "max_tokens": 64, "temperature": 0.3, "top_p": 0.9, "stop": ["x"],
            "response_format": {"type": "json_object"}, "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "get", "description": "d", "parameters": {"type": "object"}}}],
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_9", "type": "function", "function": {"name": "get", "arguments": "{\"q\":1}"}}]},
                {"role": "tool", "tool_call_id": "call_9", "content": "{\"temp\": 20}"},
                {"role": "user", "content": "and?"}]}));
        assert_eq!(out["systemInstruction"], json!({"parts": [{"text": "be brief"}]}));
        assert_eq!(
            out["generationConfig"],
            json!({"maxOutputTokens": 64, "temperature": 0.3, "topP": 0.9,
            "stopSequences": ["x"], "responseMimeType": "application/json"})
        );
        assert_eq!(out["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
        assert_eq!(out["tools"][0]["functionDeclarations"][0]["name"], "get");
        let c = out["contents"].as_array().unwrap();
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(c[0]["parts"][1], json!({"inlineData": {"mimeType": "image/jpeg", "data": "QUJD"}}));
        assert_eq!(c[1], json!({"role": "model", "parts": [{"functionCall": {"name": "get", "args": {"q": 1}}}]}));
        // the function's answer and the next user text share the user turn
        assert_eq!(c[2]["parts"][0], json!({"functionResponse": {"name": "get", "response": {"temp": 20}}}));
        assert_eq!(c[2]["parts"][1], json!({"text": "and?"}));

        let req = ChatRequest::parse(
            json!({"model": "a", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert!(chat_body(&req).unwrap_err().to_string().contains("matches no earlier"));
    }

    #[test]
    fn answers_safety_blocks_and_streams() {
        let a = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"},
            {"functionCall": {"name": "get", "args": {"q": 2}}}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3, "cachedContentTokenCount": 4},
            "modelVersion": "gemini-x"});
        let c: Value = serde_json::from_slice(&completion(a.to_string().as_bytes(), "m", "id", 1).unwrap()).unwrap();
        assert_eq!(c["model"], "gemini-x");
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"q\":2}");
        assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}});
        let c: Value =
            serde_json::from_slice(&completion(blocked.to_string().as_bytes(), "m", "id", 1).unwrap()).unwrap();
        assert_eq!(c["choices"][0]["finish_reason"], "content_filter");

        let text = [
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}, "finishReason": "MAX_TOKENS"}],
                "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 2}}),
        ]
        .iter()
        .map(|v| format!("data: {v}\r\n\r\n"))
        .collect::<String>();
        let mut p = SseParser::new();
        let mut t = StreamTranslator::new("id".into(), "gemini-x".into(), 1);
        let mut out = Vec::new();
        for ev in p.feed(text.as_bytes()).unwrap() {
            out.extend(t.on_event(&ev).unwrap());
        }
        out.extend(t.finish());
        let events: Vec<String> = out.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect();
        assert_eq!(events.last().unwrap(), "data: [DONE]\n\n");
        assert!(events.iter().any(|e| e.contains("\"finish_reason\":\"length\"")));
        assert!(events.iter().any(|e| e.contains("\"completion_tokens\":2")));
        // a stream that never said why it stopped was cut: no [DONE]
        let mut cut = StreamTranslator::new("id".into(), "m".into(), 1);
        cut.on_event(&SseEvent { event: None, data: "{\"candidates\":[]}".into() }).unwrap();
        assert!(cut.finish().is_empty());
    }

    #[test]
    fn embeddings_both_ways() {
        let req = EmbeddingsRequest::parse(br#"{"model":"e","input":["a","b"],"dimensions":8}"#).unwrap();
        let b: Value = serde_json::from_slice(&embed_body(&req, "text-embedding-004").unwrap()).unwrap();
        assert_eq!(
            b["requests"][1],
            json!({"model": "models/text-embedding-004",
            "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 8})
        );
        let out: Value = serde_json::from_slice(
            &embeddings(br#"{"embeddings":[{"values":[0.5]},{"values":[1.0]}]}"#, "e", false).unwrap(),
        )
        .unwrap();
        assert_eq!(out["data"][1]["embedding"], json!([1.0]));
    }
}
