//! What a batch is made of: its record (status, counts, files) as the batches bucket
//! keeps it, the input file's lines, and the parsing and encoding of both.

use std::collections::HashSet;

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use switchyard_actors::GatewayError;
use switchyard_config::Priority;

use crate::ingress::nats::streams::valid_job_id;

use super::{bad, unavailable};

/// The endpoints a batch may target, with the job endpoint each maps to.
pub(super) const ENDPOINTS: [(&str, &str); 2] = [("/v1/chat/completions", "chat"), ("/v1/embeddings", "embeddings")];

/// A batch's life, as OpenAI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl Status {
    /// Items of a batch in this state are still served.
    pub fn serves_items(self) -> bool {
        matches!(self, Status::Validating | Status::InProgress | Status::Finalizing)
    }
}

/// The stored form of a batch (the KV value).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchRecord {
    pub id: String,
    /// The key id that created it; only that key sees it, and its items run as it.
    pub owner: String,
    /// The team of a JWT owner (`jwt:<sub>`): with it, the items' caller is made again.
    #[serde(default)]
    pub owner_team: Option<String>,
    /// The key of its items' signatures (hex): an item runs as the owner only when its
    /// job is signed with it. Empty in records made before items were signed.
    #[serde(default)]
    pub item_key: String,
    pub endpoint: String,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: Status,
    pub total: u64,
    /// Final counts, set when the batch ends.
    pub completed: u64,
    pub failed: u64,
    pub created_at: u64,
    pub expires_at: u64,
    pub in_progress_at: Option<u64>,
    pub finalizing_at: Option<u64>,
    pub completed_at: Option<u64>,
    pub failed_at: Option<u64>,
    pub cancelling_at: Option<u64>,
    pub cancelled_at: Option<u64>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub errors: Option<Value>,
    pub metadata: Value,
    pub lane: Priority,
}

impl BatchRecord {
    /// OpenAI's Batch object with these request counts.
    pub(super) fn view(&self, completed: u64, failed: u64) -> Value {
        json!({
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "errors": self.errors,
            "input_file_id": self.input_file_id, "completion_window": self.completion_window,
            "status": self.status, "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": self.created_at, "in_progress_at": self.in_progress_at, "expires_at": self.expires_at,
            "finalizing_at": self.finalizing_at, "completed_at": self.completed_at, "failed_at": self.failed_at,
            "expired_at": null, "cancelling_at": self.cancelling_at, "cancelled_at": self.cancelled_at,
            "request_counts": {"total": self.total, "completed": completed, "failed": failed},
            "metadata": self.metadata,
        })
    }
}

/// `POST /v1/batches`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Accepted for the SDK's sake; outputs live for `nats.results_max_age_secs`.
    #[serde(default)]
    #[allow(dead_code)]
    pub output_expires_after: Option<Value>,
}

/// One line of an input file.
#[derive(Debug, Deserialize)]
pub(super) struct InputLine {
    custom_id: String,
    method: String,
    url: String,
    body: Value,
}

/// A parsed request of an input file.
#[derive(Debug, PartialEq)]
pub struct Item {
    pub custom_id: String,
    pub url: String,
    pub body: Value,
}

/// Checks an input file: JSONL, each line `{"custom_id", "method": "POST", "url", "body"}`
/// with a supported `url`, unique `custom_id`s, at most `max` lines. Errors name the line.
pub fn parse_input(bytes: &[u8], max: usize) -> Result<Vec<Item>, GatewayError> {
    let text = std::str::from_utf8(bytes).map_err(|e| bad(format!("the file is not UTF-8: {e}")))?;
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let l: InputLine = serde_json::from_str(line).map_err(|e| bad(format!("line {n}: {e}")))?;
        if l.method != "POST" {
            return Err(bad(format!("line {n}: `method` must be POST, not `{}`", l.method)));
        }
        if !ENDPOINTS.iter().any(|(url, _)| *url == l.url) {
            return Err(bad(format!(
                "line {n}: `url` must be /v1/chat/completions or /v1/embeddings, not `{}`",
                l.url
            )));
        }
        if !l.body.is_object() {
            return Err(bad(format!("line {n}: `body` must be an object")));
        }
        if l.custom_id.is_empty() || l.custom_id.len() > 512 {
            return Err(bad(format!("line {n}: `custom_id` must be 1-512 characters")));
        }
        if !seen.insert(l.custom_id.clone()) {
            return Err(bad(format!("line {n}: `custom_id` `{}` is used twice", l.custom_id)));
        }
        items.push(Item { custom_id: l.custom_id, url: l.url, body: l.body });
        if items.len() > max {
            return Err(bad(format!("the file holds more than {max} requests")));
        }
    }
    if items.is_empty() {
        return Err(bad("the file holds no requests".into()));
    }
    Ok(items)
}

/// The batch of a virtual output/error file id, and whether it is the error file.
pub(super) fn output_file(id: &str) -> Option<(&str, bool)> {
    let rest = id.strip_prefix("file-")?;
    if let Some(b) = rest.strip_suffix("-output") {
        return Some((b, false));
    }
    rest.strip_suffix("-errors").map(|b| (b, true))
}

pub(super) fn file_object(id: &str, bytes: usize, created_at: u64, filename: &str, purpose: &str) -> Value {
    json!({"id": id, "object": "file", "bytes": bytes, "created_at": created_at, "filename": filename,
        "purpose": purpose, "status": "processed", "expires_at": null, "status_details": null})
}

pub(super) fn encode(rec: &BatchRecord) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(rec).map(Bytes::from).map_err(|e| GatewayError::Internal(e.to_string()))
}

/// Reads a batch record and its revision.
pub async fn read_batch(kv: &kv::Store, id: &str) -> Result<Option<(BatchRecord, u64)>, GatewayError> {
    if !valid_job_id(id) {
        return Ok(None);
    }
    let Some(entry) = kv.entry(id).await.map_err(unavailable)? else {
        return Ok(None);
    };
    if entry.operation != kv::Operation::Put {
        return Ok(None);
    }
    let rec = serde_json::from_slice(&entry.value)
        .map_err(|e| GatewayError::Internal(format!("batch record `{id}` is unreadable: {e}")))?;
    Ok(Some((rec, entry.revision)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batch input files (JSONL from any caller) under seeded random mutation: an error
    /// value, never a panic, and never more items than the bound.
    #[test]
    fn input_files_survive_mutated_and_random_input() {
        let good = [line("a", "/v1/chat/completions"), line("b", "/v1/embeddings")].join("\n");
        let seeds: [&[u8]; 2] =
            [good.as_bytes(), b"{\"custom_id\":\"x\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{}}\n"];
        let mut rng = fastrand::Rng::with_seed(0xba7c);
        for i in 0..4_000 {
            let input = if i % 10 == 0 {
                (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect()
            } else {
                let seed = seeds[rng.usize(0..seeds.len())];
                switchyard_actors::fuzz::mutate(&mut rng, seed, &seeds)
            };
            if let Ok(items) = parse_input(&input, 3) {
                assert!(items.len() <= 3);
            }
        }
    }

    fn line(id: &str, url: &str) -> String {
        json!({"custom_id": id, "method": "POST", "url": url, "body": {"model": "m"}}).to_string()
    }

    #[test]
    fn input_files_parse_and_errors_name_the_line() {
        let good = format!("{}\n\n{}\n", line("a", "/v1/chat/completions"), line("b", "/v1/chat/completions"));
        let items = parse_input(good.as_bytes(), 10).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].custom_id, "b");

        let err = |text: &str, max| parse_input(text.as_bytes(), max).unwrap_err().to_string();
        assert!(err("", 10).contains("no requests"));
        assert!(err("{not json", 10).contains("line 1"));
        let dup = format!("{}\n{}", line("a", "/v1/embeddings"), line("a", "/v1/embeddings"));
        assert!(err(&dup, 10).contains("line 2") && err(&dup, 10).contains("twice"));
        assert!(err(&line("a", "/v1/completions"), 10).contains("`url`"));
        let get = json!({"custom_id": "a", "method": "GET", "url": "/v1/embeddings", "body": {}}).to_string();
        assert!(err(&get, 10).contains("POST"));
        let not_obj = json!({"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": 3}).to_string();
        assert!(err(&not_obj, 10).contains("`body`"));
        assert!(err(&good, 1).contains("more than 1"));
        assert!(parse_input(&[0xff, 0xfe], 10).unwrap_err().to_string().contains("UTF-8"));
    }

    #[test]
    fn output_file_ids_name_their_batch() {
        assert_eq!(output_file("file-batch_12-output"), Some(("batch_12", false)));
        assert_eq!(output_file("file-batch_12-errors"), Some(("batch_12", true)));
        assert_eq!(output_file("file-0123"), None);
        assert_eq!(output_file("batch_12-output"), None);
    }

    #[test]
    fn only_live_batches_serve_items() {
        assert!(Status::InProgress.serves_items());
        assert!(Status::Validating.serves_items());
        assert!(!Status::Cancelling.serves_items());
        assert!(!Status::Failed.serves_items());
        assert_eq!(json!(Status::InProgress), "in_progress");
    }
}
