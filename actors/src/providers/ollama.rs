//! Ollama's native API, pure translation to and from OpenAI's format:
//! - [`chat_body`]: OpenAI chat request → `POST {base_url}/api/chat` (string content,
//!   base64 `images`, tool calls with object arguments, sampling settings in `options`);
//! - [`completion`]: the `/api/chat` answer → `chat.completion`;
//! - [`StreamTranslator`]: the NDJSON stream (one JSON object a line, the last with
//!   `done: true` and the token counts) → `chat.completion.chunk` events;
//! - [`embed_body`] / [`embeddings`]: `/api/embed` both ways.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::adapter::bad;
use super::capabilities::Capabilities;
use super::openai::{inline_image, stop_list, tool_arguments};
use super::sse::{data_event, DONE};
use super::{DecodeCtx, DecodeError, StreamTranslate};
use crate::types::{ChatRequest, EmbeddingsRequest, Endpoint};
use crate::GatewayError;
use switchyard_config::Provider;

/// `kind = "ollama"`: Ollama's native API (`/api/chat` with NDJSON streams, `/api/embed`).
pub struct Ollama;

impl super::Adapter for Ollama {
    fn name(&self) -> &'static str {
        "ollama"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { embeddings: true, json_mode: true, json_schema: true, ..Capabilities::MINIMAL }
    }

    fn url(&self, p: &Provider, endpoint: Endpoint, _model: &str, _stream: bool) -> Result<String, GatewayError> {
        Ok(match endpoint {
            Endpoint::Chat => format!("{}/api/chat", p.base_url),
            Endpoint::Embeddings => format!("{}/api/embed", p.base_url),
        })
    }

    fn stream_framing(&self) -> super::Framing {
        super::Framing::Lines
    }

    fn translate_chat(&self, req: &ChatRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
        chat_body(req, model)
    }

    fn translate_embeddings(&self, req: &EmbeddingsRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
        embed_body(req, model)
    }

    fn decode(&self, endpoint: Endpoint, body: Bytes, cx: &DecodeCtx<'_>) -> Result<Bytes, DecodeError> {
        match endpoint {
            Endpoint::Chat => completion(&body, &cx.new_id(), cx.created),
            Endpoint::Embeddings => embeddings(&body, cx.base64),
        }
        .map_err(|e| DecodeError(format!("ollama answer: {e}")))
    }

    fn stream_decoder(&self, cx: &DecodeCtx<'_>) -> Option<Box<dyn StreamTranslate>> {
        Some(Box::new(StreamTranslator::new(cx.new_id(), cx.created)))
    }
}

/// Longest NDJSON line accepted from upstream.
pub const MAX_LINE: usize = 8 << 20;

fn unsupported(what: &str) -> GatewayError {
    super::adapter::unsupported("ollama", what)
}

/// A message's text and base64 images.
fn content(v: Option<&Value>, at: &str) -> Result<(String, Vec<String>), GatewayError> {
    match v {
        None | Some(Value::Null) => Ok((String::new(), Vec::new())),
        Some(Value::String(s)) => Ok((s.clone(), Vec::new())),
        Some(Value::Array(parts)) => {
            let (mut text, mut images) = (Vec::new(), Vec::new());
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => text.push(p.get("text").and_then(Value::as_str).unwrap_or_default().to_string()),
                    Some("image_url") => {
                        let (_, data) = inline_image(p, at, j, "ollama")?;
                        images.push(data.to_string());
                    }
                    other => return Err(unsupported(&format!("`{}` content parts", other.unwrap_or("?")))),
                }
            }
            Ok((text.join("\n"), images))
        }
        Some(_) => Err(bad(format!("{at}: `content` must be a string or an array of parts"))),
    }
}

/// The OpenAI chat request as an `/api/chat` request for `model`.
pub fn chat_body(req: &ChatRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
    let mut messages = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let role = match role {
            "developer" => "system",
            "system" | "user" | "assistant" | "tool" => role,
            other => return Err(unsupported(&format!("`{other}` messages"))),
        };
        let (text, images) = content(m.get("content"), &at)?;
        let mut out = json!({"role": role, "content": text});
        if !images.is_empty() {
            out["images"] = json!(images);
        }
        if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
            let calls = calls
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    let name = c.pointer("/function/name");
                    Ok(json!({"function": {"name": name, "arguments": tool_arguments(c, &at, j)?}}))
                })
                .collect::<Result<Vec<_>, GatewayError>>()?;
            out["tool_calls"] = Value::Array(calls);
        }
        messages.push(out);
    }
    let mut options = Map::new();
    if let Some(n) = req.max_completion_tokens.or(req.max_tokens) {
        options.insert("num_predict".into(), json!(n));
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    out.insert("stream".into(), json!(req.is_stream()));
    for (k, v) in &req.rest {
        match k.as_str() {
            "temperature" | "top_p" | "seed" | "presence_penalty" | "frequency_penalty" => {
                options.insert(k.clone(), v.clone());
            }
            "stop" => {
                options.insert("stop".into(), stop_list(v));
            }
            // the same shape as OpenAI's
            "tools" => {
                out.insert("tools".into(), v.clone());
            }
            "response_format" => match v.get("type").and_then(Value::as_str) {
                Some("json_object") => {
                    out.insert("format".into(), json!("json"));
                }
                Some("json_schema") => {
                    let schema = v.pointer("/json_schema/schema").cloned().unwrap_or_else(|| json!({}));
                    out.insert("format".into(), schema);
                }
                _ => {}
            },
            "n" if v.as_u64().unwrap_or(1) > 1 => return Err(unsupported("`n` greater than 1")),
            "logprobs" if v == &json!(true) => return Err(unsupported("`logprobs`")),
            "web_search_options" if !v.is_null() => {
                return Err(unsupported("web search (`web_search_options`, a `web_search` tool)"))
            }
            _ => {}
        }
    }
    if !options.is_empty() {
        out.insert("options".into(), Value::Object(options));
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| GatewayError::Internal(e.to_string()))
}

/// OpenAI tool calls from an Ollama message (arguments as JSON strings, ids made up:
/// Ollama has none).
fn tool_calls(msg: &Value, first: usize, prefix: &str) -> Vec<Value> {
    msg.get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(j, c)| {
            let f = c.get("function").unwrap_or(&Value::Null);
            let args = match f.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "{}".into(),
            };
            json!({"index": first + j, "id": format!("call_{prefix}_{}", first + j), "type": "function",
                "function": {"name": f.get("name"), "arguments": args}})
        })
        .collect()
}

fn finish(done_reason: Option<&str>, called: bool) -> &'static str {
    match done_reason {
        Some("length") => "length",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

fn usage(v: &Value) -> Value {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (p, c) = (n("prompt_eval_count"), n("eval_count"));
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c, "prompt_tokens_details": {"cached_tokens": 0}})
}

/// An `/api/chat` answer (`stream: false`) as a `chat.completion`.
pub fn completion(body: &[u8], id: &str, created: u64) -> Result<Bytes, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let msg = v.get("message").ok_or("no `message`")?;
    let calls: Vec<Value> = tool_calls(msg, 0, id)
        .into_iter()
        .map(|mut c| {
            if let Some(o) = c.as_object_mut() {
                o.remove("index");
            }
            c
        })
        .collect();
    let text = msg.get("content").and_then(Value::as_str).unwrap_or_default();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }, "refusal": null});
    let called = !calls.is_empty();
    if called {
        message["tool_calls"] = Value::Array(calls);
    }
    let out = json!({"id": format!("chatcmpl-{id}"), "object": "chat.completion", "created": created,
        "model": v.get("model"), "choices": [{"index": 0, "message": message, "logprobs": null,
        "finish_reason": finish(v.get("done_reason").and_then(Value::as_str), called)}],
        "usage": usage(&v)});
    Ok(Bytes::from(out.to_string()))
}

/// Splits NDJSON into lines across reads and turns each into OpenAI chunk events.
#[derive(Debug)]
pub struct StreamTranslator {
    buf: Vec<u8>,
    id: String,
    created: u64,
    started: bool,
    tools: usize,
    done: bool,
}

impl StreamTranslator {
    pub fn new(id: String, created: u64) -> StreamTranslator {
        StreamTranslator { buf: Vec::new(), id, created, started: false, tools: 0, done: false }
    }

    fn line(&mut self, line: &str, out: &mut Vec<Bytes>) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let v: Value = serde_json::from_str(line).map_err(|e| format!("invalid NDJSON line: {e}"))?;
        if let Some(e) = v.get("error") {
            let message = e.as_str().map_or_else(|| e.to_string(), str::to_string);
            let body = json!({"error": {"message": format!("ollama: {message}"), "type": "api_error", "code": "upstream_error"}});
            out.push(data_event(&body.to_string()));
            self.done = true;
            return Ok(());
        }
        let model = v.get("model").cloned().unwrap_or(Value::Null);
        if !self.started {
            self.started = true;
            out.push(self.chunk(&model, json!({"role": "assistant", "content": ""}), None));
        }
        let msg = v.get("message").unwrap_or(&Value::Null);
        if let Some(t) = msg.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            out.push(self.chunk(&model, json!({"content": t}), None));
        }
        let calls = tool_calls(msg, self.tools, &self.id);
        if !calls.is_empty() {
            self.tools += calls.len();
            out.push(self.chunk(&model, json!({"tool_calls": calls}), None));
        }
        if v.get("done") == Some(&json!(true)) {
            let f = finish(v.get("done_reason").and_then(Value::as_str), self.tools > 0);
            out.push(self.chunk(&model, json!({}), Some(f)));
            let u = json!({"id": format!("chatcmpl-{}", self.id), "object": "chat.completion.chunk",
                "created": self.created, "model": model, "choices": [], "usage": usage(&v)});
            out.push(data_event(&u.to_string()));
            out.push(Bytes::from_static(DONE));
            self.done = true;
        }
        Ok(())
    }

    fn chunk(&self, model: &Value, delta: Value, finish: Option<&str>) -> Bytes {
        let c = json!({"id": format!("chatcmpl-{}", self.id), "object": "chat.completion.chunk",
            "created": self.created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        data_event(&c.to_string())
    }

    /// Feeds upstream bytes; returns the events of every complete line.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Bytes>, String> {
        StreamTranslate::feed(self, bytes)
    }
}

impl StreamTranslate for StreamTranslator {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Bytes>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            if !line.trim().is_empty() {
                self.line(line.trim(), &mut out)?;
            }
        }
        if self.buf.len() > MAX_LINE {
            return Err(format!("an NDJSON line is longer than {MAX_LINE} bytes"));
        }
        Ok(out)
    }
}

/// The OpenAI embeddings request as an `/api/embed` request.
pub fn embed_body(req: &EmbeddingsRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
    if req.input.as_array().is_some_and(|a| a.iter().any(|i| !i.is_string())) || req.input.is_number() {
        return Err(unsupported("token-array embedding inputs"));
    }
    let mut out = json!({"model": model, "input": req.input});
    if let Some(d) = req.dimensions {
        out["dimensions"] = json!(d);
    }
    serde_json::to_vec(&out).map_err(|e| GatewayError::Internal(e.to_string()))
}

/// An `/api/embed` answer as OpenAI's embeddings list (vectors as base64 of
/// little-endian `f32`s when the client asked for `encoding_format: base64`).
pub fn embeddings(body: &[u8], base64: bool) -> Result<Bytes, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let vectors = v.get("embeddings").and_then(Value::as_array).ok_or("no `embeddings`")?;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let embedding = if base64 {
                let floats = e.as_array().into_iter().flatten().map(|x| x.as_f64().unwrap_or(0.0) as f32);
                json!(super::f32_base64(floats))
            } else {
                e.clone()
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let p = v.get("prompt_eval_count").and_then(Value::as_u64).unwrap_or(0);
    let out = json!({"object": "list", "data": data, "model": v.get("model"),
        "usage": {"prompt_tokens": p, "total_tokens": p}});
    Ok(Bytes::from(out.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Value {
        let req = ChatRequest::parse(v.to_string().as_bytes()).unwrap();
        serde_json::from_slice(&chat_body(&req, "llama3.2").unwrap()).unwrap()
    }

    #[test]
    fn requests_carry_images_tools_and_options() {
        let out = body(json!({"model": "a", "max_tokens": 50, "temperature": 0.1, "stop": "x", "seed": 1,
            "response_format": {"type": "json_object"},
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "messages": [
                {"role": "developer", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}}]},
                {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "2"}]}));
        assert_eq!(out["model"], "llama3.2");
        assert_eq!(out["stream"], false);
        assert_eq!(out["format"], "json");
        assert_eq!(out["options"], json!({"num_predict": 50, "temperature": 0.1, "stop": ["x"], "seed": 1}));
        assert_eq!(out["messages"][0]["role"], "system");
        assert_eq!(out["messages"][1]["images"], json!(["QUJD"]));
        assert_eq!(out["messages"][2]["tool_calls"][0]["function"]["arguments"], json!({"a": 1}));
        assert_eq!(out["messages"][3], json!({"role": "tool", "content": "2"}));
        assert_eq!(out["tools"][0]["function"]["name"], "f");

        let req = ChatRequest::parse(
            json!({"model": "a", "messages": [{"role": "user", "content": [{"type": "image_url",
                "image_url": {"url": "https://x/y.png"}}]}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert!(chat_body(&req, "m").unwrap_err().to_string().contains("data URL"));
    }

    #[test]
    fn answers_and_ndjson_streams_become_openai() {
        let a = json!({"model": "llama3.2", "message": {"role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": "f", "arguments": {"city": "Oslo"}}}]},
            "done": true, "done_reason": "stop", "prompt_eval_count": 12, "eval_count": 4});
        let c: Value = serde_json::from_slice(&completion(a.to_string().as_bytes(), "x", 1).unwrap()).unwrap();
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
        assert_eq!(c["usage"]["total_tokens"], 16);

        let lines = [
            json!({"model": "m", "message": {"role": "assistant", "content": "Hel"}, "done": false}),
            json!({"model": "m", "message": {"role": "assistant", "content": "lo"}, "done": false}),
            json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true,
                "done_reason": "length", "prompt_eval_count": 3, "eval_count": 2}),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        for split in [0, 5, text.len() / 2, text.len() - 1] {
            let mut t = StreamTranslator::new("id".into(), 1);
            let mut out = t.feed(&text.as_bytes()[..split]).unwrap();
            out.extend(t.feed(&text.as_bytes()[split..]).unwrap());
            let events: Vec<String> = out.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect();
            assert_eq!(events.last().unwrap(), "data: [DONE]\n\n");
            let chunks: Vec<Value> =
                events.iter().filter_map(|e| e.strip_prefix("data: ")?.trim().parse().ok()).collect();
            let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
            assert_eq!(text, "Hello");
            assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "length"));
            assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 2);
        }
        let mut t = StreamTranslator::new("id".into(), 1);
        let out = t.feed(b"{\"error\":\"model not loaded\"}\n").unwrap();
        assert!(String::from_utf8(out[0].to_vec()).unwrap().contains("model not loaded"));
        assert!(StreamTranslator::new("id".into(), 1).feed(b"{oops\n").is_err());
    }

    #[test]
    fn embeddings_both_ways() {
        let req = EmbeddingsRequest::parse(br#"{"model":"e","input":["a","b"],"dimensions":8}"#).unwrap();
        let b: Value = serde_json::from_slice(&embed_body(&req, "nomic").unwrap()).unwrap();
        assert_eq!(b, json!({"model": "nomic", "input": ["a", "b"], "dimensions": 8}));
        let tokens = EmbeddingsRequest::parse(br#"{"model":"e","input":[[1,2]]}"#).unwrap();
        assert!(embed_body(&tokens, "m").is_err());
        let out: Value = serde_json::from_slice(
            &embeddings(br#"{"model":"nomic","embeddings":[[0.1],[0.2]],"prompt_eval_count":4}"#, false).unwrap(),
        )
        .unwrap();
        assert_eq!(out["data"][1]["embedding"], json!([0.2]));
        assert_eq!(out["usage"]["prompt_tokens"], 4);
        let out: Value = serde_json::from_slice(&embeddings(br#"{"embeddings":[[1.0]]}"#, true).unwrap()).unwrap();
        // 1.0f32 little-endian is 00 00 80 3f
        assert_eq!(out["data"][0]["embedding"], "AACAPw==");
    }
}
