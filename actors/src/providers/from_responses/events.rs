//! The engine's chat chunk events as Responses SSE events.

use bytes::Bytes;
use serde_json::{json, Value};

use super::super::sse::SseEvent;
use super::super::web_search;
use super::answer::{call_item, item_id, message_item, response_object, status, usage};
use super::Echo;

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
