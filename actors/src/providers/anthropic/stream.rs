//! The Messages SSE stream as OpenAI chunk events.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::super::sse::{data_event, SseEvent, DONE};
use super::super::EventTranslate;
use super::{finish_reason, usage};

/// Turns the Messages SSE events into OpenAI chunk events (`data: {...}` and a final
/// `data: [DONE]`). An `error` event becomes an OpenAI error event, which the relay
/// ends the stream with.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    /// Content block index to OpenAI tool-call index.
    tools: HashMap<u64, usize>,
    usage: Map<String, Value>,
    finish: Option<&'static str>,
    /// Characters of text sent so far, and where each text block began (for the span of
    /// the sources a block cites) with the citations it has had.
    chars: usize,
    cited: HashMap<u64, (usize, Vec<Value>)>,
}

impl StreamTranslator {
    pub fn new(created: u64) -> StreamTranslator {
        StreamTranslator { created, ..Default::default() }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        data_event(&c.to_string())
    }

    /// The OpenAI events for one upstream event.
    pub fn on_event(&mut self, ev: &SseEvent) -> Result<Vec<Bytes>, String> {
        EventTranslate::on_event(self, ev)
    }
}

impl EventTranslate for StreamTranslator {
    fn on_event(&mut self, ev: &SseEvent) -> Result<Vec<Bytes>, String> {
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| format!("invalid event JSON: {e}"))?;
        let kind = v.get("type").and_then(Value::as_str).or(ev.event.as_deref()).unwrap_or_default();
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                self.id = m.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                self.model = m.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
                if let Some(u) = m.get("usage").and_then(Value::as_object) {
                    self.usage.extend(u.clone());
                }
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_start" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = v.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let n = self.tools.len();
                        self.tools.insert(index, n);
                        out.push(self.chunk(
                            json!({"tool_calls": [{"index": n, "id": block.get("id"), "type": "function",
                                "function": {"name": block.get("name"), "arguments": ""}}]}),
                            None,
                        ));
                    }
                    Some("text") => {
                        self.cited.insert(index, (self.chars, Vec::new()));
                        if let Some(t) = block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                            self.chars += t.chars().count();
                            out.push(self.chunk(json!({"content": t}), None));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let d = v.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let t = d.get("text").and_then(Value::as_str).unwrap_or_default();
                        self.chars += t.chars().count();
                        out.push(self.chunk(json!({"content": t}), None));
                    }
                    Some("citations_delta") => {
                        if let (Some(c), Some((_, list))) = (d.get("citation"), self.cited.get_mut(&index)) {
                            list.push(c.clone());
                        }
                    }
                    Some("input_json_delta") => {
                        let Some(&n) = self.tools.get(&index) else {
                            return Err(format!("input_json_delta for block {index}, which is not a tool_use"));
                        };
                        let part = d.get("partial_json").and_then(Value::as_str).unwrap_or_default();
                        out.push(
                            self.chunk(json!({"tool_calls": [{"index": n, "function": {"arguments": part}}]}), None),
                        );
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage").and_then(Value::as_object) {
                    self.usage.extend(u.clone());
                }
                let stop = v.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str);
                if let Some(f) = finish_reason(stop) {
                    self.finish = Some(f);
                    out.push(self.chunk(json!({}), Some(f)));
                }
            }
            "message_stop" => {
                let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "choices": [], "usage": usage(&Value::Object(self.usage.clone()))});
                out.push(data_event(&c.to_string()));
                out.push(Bytes::from_static(DONE));
            }
            "error" => {
                let e = v.get("error").unwrap_or(&Value::Null);
                let message = e.get("message").and_then(Value::as_str).unwrap_or("upstream stream error");
                let kind = e.get("type").and_then(Value::as_str).unwrap_or("api_error");
                let body = json!({"error": {"message": format!("anthropic: {message}"), "type": kind, "code": kind}});
                out.push(data_event(&body.to_string()));
            }
            // a cited text block ends: its sources, for the text it held
            "content_block_stop" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some((start, citations)) = self.cited.remove(&index).filter(|(_, c)| !c.is_empty()) {
                    let list = Value::Array(citations);
                    let annotations =
                        super::super::web_search::annotations_of_citations(Some(&list), start, self.chars);
                    out.push(self.chunk(json!({"annotations": annotations}), None));
                }
            }
            // ping and future event types
            _ => {}
        }
        Ok(out)
    }
}
