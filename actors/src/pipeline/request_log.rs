//! Request logs: the prompt and the answer of a request whose key, team or alias asks
//! for it (`log_requests = true`), as the guardrails left them, with the usage record.
//! The finisher hands each entry to a bounded queue; the NATS ingress publishes them to
//! `<prefix>.v1.logs.<key id>.<request id>` (`src/ingress/nats/logs.rs`). A full queue
//! drops the entry (counted), never the request.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::RequestCtx;
use crate::types::UsageRecord;

/// One entry for the publisher.
pub struct LogEntry {
    pub key_id: String,
    pub request_id: String,
    /// The entry's JSON.
    pub body: Bytes,
}

/// The queue entries go to, and the most bytes of a prompt or answer kept.
pub struct RequestLogs {
    tx: mpsc::Sender<LogEntry>,
    max_field_bytes: usize,
}

/// Entries waiting for the publisher; past it they are dropped.
pub const QUEUE: usize = 4096;

impl RequestLogs {
    pub fn new(max_field_bytes: usize) -> (Arc<RequestLogs>, mpsc::Receiver<LogEntry>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Arc::new(RequestLogs { tx, max_field_bytes }), rx)
    }
}

/// What a logged request keeps until it is finished: where it goes, the request as
/// sent, and the answer once there is one.
pub struct LogDraft {
    logs: Arc<RequestLogs>,
    request: Value,
    answer: Option<Value>,
    /// Why the answer is not in the entry.
    withheld: Option<&'static str>,
}

impl LogDraft {
    pub fn new(logs: Arc<RequestLogs>, request: Value) -> Box<LogDraft> {
        Box::new(LogDraft { logs, request, answer: None, withheld: None })
    }

    /// The answer (a JSON body); one that is not JSON is kept as text.
    pub fn answer(&mut self, body: &[u8]) {
        if self.withheld.is_some() {
            return;
        }
        self.answer = Some(serde_json::from_slice(body).unwrap_or_else(|_| json!(String::from_utf8_lossy(body))));
    }

    /// The answer is left out, for `why`.
    pub fn withhold(&mut self, why: &'static str) {
        self.withheld = Some(why);
        self.answer = None;
    }

    /// Sends the entry for `record` (the usage record as written).
    pub fn send(self, record: &UsageRecord, trace_id: Option<String>) {
        let max = self.logs.max_field_bytes;
        let mut truncated = Vec::new();
        let request = bounded(self.request, max, "request", &mut truncated);
        let response = self.answer.map(|a| bounded(a, max, "response", &mut truncated));
        let entry = json!({
            "request_id": record.request_id,
            "trace_id": trace_id,
            "record": record,
            "request": request,
            "response": response,
            "response_withheld": self.withheld,
            "truncated": truncated,
        });
        let body = Bytes::from(entry.to_string());
        let e = LogEntry { key_id: record.key_id.clone(), request_id: record.request_id.clone(), body };
        if self.logs.tx.try_send(e).is_err() {
            metrics::counter!(crate::metrics::REQUEST_LOGS_DROPPED_TOTAL).increment(1);
        }
    }
}

/// `v` whole, or its first `max` bytes of JSON as text when it is longer.
fn bounded(v: Value, max: usize, name: &'static str, truncated: &mut Vec<&'static str>) -> Value {
    let text = v.to_string();
    if text.len() <= max {
        return v;
    }
    truncated.push(name);
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    json!({"bytes": text.len(), "head": &text[..cut]})
}

impl RequestCtx {
    /// Whether this request is logged: its key, its key's team, or `alias` says so.
    pub fn logs_requests(&self, alias: &str) -> bool {
        self.key.key.log_requests
            || self.key.team.as_ref().is_some_and(|t| t.log_requests)
            || self.runtime.config.model(alias).is_some_and(|m| m.log_requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_on_a_char_boundary_and_named() {
        let mut t = Vec::new();
        let v = bounded(json!({"text": "é".repeat(100)}), 51, "request", &mut t);
        assert_eq!(t, ["request"]);
        let head = v["head"].as_str().unwrap();
        assert!(head.len() <= 51 && head.starts_with("{\"text\":\"é"));
        assert_eq!(v["bytes"], json!({"text": "é".repeat(100)}).to_string().len());
        let mut t = Vec::new();
        assert_eq!(bounded(json!({"a": 1}), 51, "response", &mut t), json!({"a": 1}));
        assert!(t.is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_drops_entries_and_never_waits() {
        let (logs, mut rx) = RequestLogs::new(1024);
        let record = UsageRecord::new("r", 0, "k", crate::types::Endpoint::Chat, "a", false);
        for _ in 0..QUEUE + 10 {
            LogDraft::new(logs.clone(), json!({"messages": []})).send(&record, None);
        }
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, QUEUE);
    }
}
