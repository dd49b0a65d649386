//! Feedback on requests (`POST /v1/feedback`, `<prefix>.v1.feedback`): a score and a
//! comment kept by key and request id, on disk before the call answers. It counts only
//! for a request of the same key (the report joins on both; another key's feedback can
//! neither count nor replace it), and a key's latest one wins.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::store::Store;
use crate::types::unix_ms;
use crate::GatewayError;

/// Longest comment kept, in bytes.
pub const MAX_COMMENT: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub request_id: String,
    pub key_id: String,
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub ts_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    request_id: String,
    score: f64,
    #[serde(default)]
    comment: Option<String>,
}

fn bad(m: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(m.into())
}

/// Checks and keeps one piece of feedback from `key_id`; the answer's JSON.
pub fn record(store: &Store, key_id: &str, body: &[u8]) -> Result<Value, GatewayError> {
    let b: Body = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "invalid feedback: {e} (expected {{\"request_id\": string, \"score\": number, \"comment\"?: string}})"
        ))
    })?;
    if b.request_id.is_empty() || b.request_id.len() > 256 {
        return Err(bad("`request_id` must be 1 to 256 characters"));
    }
    if !b.score.is_finite() || b.score.abs() > 1e9 {
        return Err(bad("`score` must be a finite number"));
    }
    if b.comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT) {
        return Err(bad(format!("`comment` is longer than {MAX_COMMENT} bytes")));
    }
    let f = Feedback {
        request_id: b.request_id,
        key_id: key_id.to_string(),
        score: b.score,
        comment: b.comment,
        ts_ms: unix_ms(),
    };
    let bytes = serde_json::to_vec(&f).map_err(|e| GatewayError::Internal(e.to_string()))?;
    let stored = store.feedback.insert(storage_key(key_id, &f.request_id), bytes).and_then(|_| store.feedback.flush());
    stored.map_err(|e| GatewayError::Internal(format!("storing feedback: {e}")))?;
    metrics::counter!(crate::metrics::FEEDBACK_TOTAL).increment(1);
    Ok(json!({"object": "feedback", "request_id": f.request_id, "score": f.score, "comment": f.comment}))
}

fn storage_key(key_id: &str, request_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key_id.len() + request_id.len() + 1);
    k.extend_from_slice(key_id.as_bytes());
    k.push(0);
    k.extend_from_slice(request_id.as_bytes());
    k
}

/// The score `key_id` gave its request `request_id`, if it gave one.
pub fn score(store: &Store, key_id: &str, request_id: &str) -> Option<f64> {
    let v = store.feedback.get(storage_key(key_id, request_id)).ok()??;
    serde_json::from_slice::<Feedback>(&v).ok().map(|f| f.score)
}
