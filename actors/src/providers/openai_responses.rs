//! OpenAI's Responses endpoint as a provider wire format: the adapter an `openai`
//! target uses for a `/v1/responses` request, which goes upstream as the client wrote it
//! (hosted tools, reasoning items, `include` and fields newer than the gateway kept) and
//! comes back as OpenAI sent it. The engine meters, caches and guards it through what
//! this adapter decodes: the Response as a `chat.completion` ([`completion`]), the
//! Responses events as chat chunks ([`ToChat`]).

use bytes::Bytes;
use serde_json::{json, Value};
use switchyard_config::Provider;

use super::adapter::{unsupported, Adapter, DecodeCtx, DecodeError};
use super::sse::{data_event, SseEvent};
use super::{stream_error_status, EventTranslate, Sse, StreamStep, StreamTranslate};
use crate::types::{Endpoint, NativeRequest, WireFormat};
use crate::GatewayError;

/// `POST {base_url}/responses` of an `openai` provider.
pub struct OpenAiResponses;

impl Adapter for OpenAiResponses {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn url(&self, p: &Provider, endpoint: Endpoint, _model: &str, _stream: bool) -> Result<String, GatewayError> {
        match endpoint {
            Endpoint::Chat => Ok(format!("{}/responses", p.base_url)),
            Endpoint::Embeddings => Err(unsupported("openai", "embeddings through the Responses API")),
        }
    }

    fn encode_native(&self, native: &NativeRequest, model: &str) -> Option<Result<Vec<u8>, GatewayError>> {
        if native.format != WireFormat::Responses {
            return None;
        }
        let mut body = native.body.clone();
        body.insert("model".into(), Value::String(model.to_string()));
        Some(serde_json::to_vec(&body).map_err(super::adapter::encode_error))
    }

    fn decode(&self, _endpoint: Endpoint, body: Bytes, cx: &DecodeCtx<'_>) -> Result<Bytes, DecodeError> {
        let r: Value = serde_json::from_slice(&body).map_err(|e| DecodeError(format!("responses answer: {e}")))?;
        Ok(Bytes::from(completion(&r, cx.created).to_string()))
    }

    fn stream_decoder(&self, cx: &DecodeCtx<'_>) -> Option<Box<dyn StreamTranslate>> {
        Some(Box::new(Sse::new(ToChat { created: cx.created, ..ToChat::default() })))
    }

    fn native_stream_step(&self, ev: &SseEvent) -> StreamStep {
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            return StreamStep::Failed { status: 502, message: "stream event is not JSON".into() };
        };
        match v.get("type").and_then(Value::as_str).unwrap_or("") {
            "response.created" | "response.in_progress" | "response.queued" | "response.content_part.added" => {
                StreamStep::Preamble
            }
            "response.output_item.added" if v.pointer("/item/type") == Some(&json!("message")) => StreamStep::Preamble,
            "error" | "response.failed" => {
                let (code, message) = failure(&v);
                StreamStep::Failed { status: stream_error_status(&code), message }
            }
            _ => StreamStep::Content,
        }
    }

    fn native_error_event(&self, class: crate::error::Class, message: &str) -> Bytes {
        let data =
            json!({"type": "error", "code": class.code, "message": message, "param": null, "sequence_number": 0});
        Bytes::from(format!("event: error\ndata: {data}\n\n"))
    }
}

/// The code and message of an `error` or `response.failed` event.
fn failure(v: &Value) -> (String, String) {
    let e = v.pointer("/response/error").unwrap_or(v);
    let s = |k: &str, d: &str| e.get(k).and_then(Value::as_str).unwrap_or(d).to_string();
    (s("code", "server_error"), s("message", "the response failed"))
}

/// Chat usage from Responses usage.
fn chat_usage(u: &Value) -> Value {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (n("/input_tokens"), n("/output_tokens"));
    json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
        "prompt_tokens_details": {"cached_tokens": n("/input_tokens_details/cached_tokens"),
            "cache_write_tokens": n("/input_tokens_details/cache_write_tokens")},
        "completion_tokens_details": {"reasoning_tokens": n("/output_tokens_details/reasoning_tokens")}})
}

/// The chat finish reason of a Response.
fn finish_reason(r: &Value, called: bool) -> &'static str {
    match (r.get("status").and_then(Value::as_str), r.pointer("/incomplete_details/reason").and_then(Value::as_str)) {
        (Some("incomplete"), Some("content_filter")) => "content_filter",
        (Some("incomplete"), _) => "length",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// A Response as a `chat.completion`: the output text, the function calls, the finish
/// reason and the usage (cached and reasoning tokens included).
pub fn completion(r: &Value, created: u64) -> Value {
    let (mut text, mut calls) = (String::new(), Vec::new());
    for item in r.get("output").and_then(Value::as_array).into_iter().flatten() {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(t) = part.get("text").or_else(|| part.get("refusal")).and_then(Value::as_str) {
                        text.push_str(t);
                    }
                }
            }
            Some("function_call") => calls.push(json!({"id": item.get("call_id"), "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")}})),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": (!text.is_empty()).then_some(text)});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let finish = finish_reason(r, message.get("tool_calls").is_some());
    json!({"id": r.get("id"), "object": "chat.completion",
        "created": r.get("created_at").and_then(Value::as_u64).unwrap_or(created), "model": r.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": r.get("usage").map(chat_usage)})
}

/// Responses events as chat chunks (text, function calls, the finish, usage, `[DONE]`;
/// a failure as an error event), for the engine to meter a native stream.
#[derive(Debug, Default)]
pub struct ToChat {
    created: u64,
    id: String,
    model: Value,
    /// Function-call item ids, in the order their calls began (the chunk's index).
    calls: Vec<String>,
}

impl ToChat {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        data_event(&c.to_string())
    }
}

impl EventTranslate for ToChat {
    fn on_event(&mut self, ev: &SseEvent) -> Result<Vec<Bytes>, String> {
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| format!("responses event: {e}"))?;
        let mut out = Vec::new();
        match v.get("type").and_then(Value::as_str).unwrap_or("") {
            "response.created" => {
                self.id = v.pointer("/response/id").and_then(Value::as_str).unwrap_or_default().to_string();
                self.model = v.pointer("/response/model").cloned().unwrap_or(Value::Null);
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                let key = if v["type"] == "response.refusal.delta" { "refusal" } else { "content" };
                out.push(self.chunk(json!({key: v.get("delta")}), None));
            }
            "response.output_item.added" if v.pointer("/item/type") == Some(&json!("function_call")) => {
                let item = &v["item"];
                self.calls.push(item.get("id").and_then(Value::as_str).unwrap_or_default().to_string());
                let call = json!({"index": self.calls.len() - 1, "id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": ""}});
                out.push(self.chunk(json!({"tool_calls": [call]}), None));
            }
            "response.function_call_arguments.delta" => {
                let id = v.get("item_id").and_then(Value::as_str).unwrap_or_default();
                let index = self.calls.iter().position(|c| c == id).unwrap_or(0);
                let call = json!({"index": index, "function": {"arguments": v.get("delta")}});
                out.push(self.chunk(json!({"tool_calls": [call]}), None));
            }
            "response.completed" | "response.incomplete" => {
                let r = &v["response"];
                out.push(self.chunk(json!({}), Some(finish_reason(r, !self.calls.is_empty()))));
                if let Some(u) = r.get("usage").filter(|u| !u.is_null()) {
                    let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": chat_usage(u)});
                    out.push(data_event(&c.to_string()));
                }
                out.push(data_event("[DONE]"));
            }
            "error" | "response.failed" => {
                let (code, message) = failure(&v);
                out.push(data_event(
                    &json!({"error": {"message": message, "type": "api_error", "code": code}}).to_string(),
                ));
            }
            _ => {}
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::sse::SseParser;

    #[test]
    fn a_response_decodes_as_a_completion() {
        let r = json!({"id": "resp_1", "created_at": 5, "model": "gpt-5", "status": "completed",
            "output": [{"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "content": [{"type": "output_text", "text": "hi", "annotations": []}]},
                {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}],
            "usage": {"input_tokens": 10, "output_tokens": 20, "input_tokens_details": {"cached_tokens": 4},
                "output_tokens_details": {"reasoning_tokens": 12}}});
        let c = completion(&r, 0);
        assert_eq!(c["choices"][0]["message"]["content"], "hi");
        assert_eq!(c["choices"][0]["message"]["tool_calls"][0]["id"], "call_1");
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(c["usage"]["completion_tokens_details"]["reasoning_tokens"], 12);
        assert_eq!(crate::types::Usage::from_openai(&c["usage"]).map(|u| u.total()), Some(30));
        let cut = json!({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "output": []});
        assert_eq!(completion(&cut, 0)["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn responses_events_meter_as_chat_chunks() {
        let events = [
            json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_s", "model": "gpt-5"}}),
            json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "msg"}}),
            json!({"type": "response.output_text.delta", "item_id": "msg", "delta": "Hel"}),
            json!({"type": "response.output_text.delta", "item_id": "msg", "delta": "lo"}),
            json!({"type": "response.output_item.added", "item": {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f"}}),
            json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "{}"}),
            json!({"type": "response.completed", "response": {"status": "completed", "usage": {"input_tokens": 3, "output_tokens": 4}}}),
        ];
        let sse: String =
            events.iter().map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap())).collect();
        let a = OpenAiResponses;
        let steps: Vec<StreamStep> =
            SseParser::new().feed(sse.as_bytes()).unwrap().iter().map(|e| a.native_stream_step(e)).collect();
        assert_eq!(steps[..3], [StreamStep::Preamble, StreamStep::Preamble, StreamStep::Content]);
        let cx = DecodeCtx { model: "m", created: 1, base64: false };
        let mut d = a.stream_decoder(&cx).unwrap();
        let out: Vec<Bytes> = d.feed(sse.as_bytes()).unwrap();
        let mut acc = crate::providers::openai::StreamAccumulator::default();
        let evs = SseParser::new().feed(&out.concat()).unwrap();
        assert_eq!(evs.last().map(|e| e.data.as_str()), Some("[DONE]"));
        for ev in &evs[..evs.len() - 1] {
            acc.add(&serde_json::from_str(&ev.data).unwrap());
        }
        assert_eq!(acc.usage.map(|u| u.total()), Some(7));
        let completion = acc.completion();
        assert_eq!(completion["choices"][0]["message"]["content"], "Hello");
        assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(completion["id"], "resp_s");
        // a failure is an error event, and the commit point sees it
        let failed = json!({"type": "response.failed", "response": {"error": {"code": "rate_limit_exceeded", "message": "slow"}}});
        let ev = SseEvent { event: None, data: failed.to_string() };
        assert_eq!(a.native_stream_step(&ev), StreamStep::Failed { status: 429, message: "slow".into() });
    }
}
