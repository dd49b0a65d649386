//! Gateway-side batching of embeddings: several requests for the same model (and the same
//! key and parameters) become one upstream call, and its answer is split back. Pure
//! functions; the NATS job runner decides when to flush.

use std::ops::Range;

use serde_json::{json, Value};

use crate::types::EmbeddingsRequest;

/// Requests that may share one upstream call have the same group: same key, alias,
/// parameters, and kind of input (text or token arrays).
pub fn group_key(key_id: &str, req: &EmbeddingsRequest) -> String {
    let tokens = matches!(&req.input, Value::Array(items) if items.first().is_some_and(|i| !i.is_string()));
    json!({
        "k": key_id,
        "m": req.model,
        "f": req.encoding_format,
        "d": req.dimensions,
        "r": req.rest,
        "t": tokens,
    })
    .to_string()
}

/// A request's inputs as a list (a single string or token array becomes one item).
pub fn inputs(req: &EmbeddingsRequest) -> Vec<Value> {
    match &req.input {
        Value::Array(items) if items.iter().all(|i| i.is_string() || i.is_array()) => items.clone(),
        other => vec![other.clone()],
    }
}

/// One request with every input, and where each part's inputs sit in it.
pub fn merge(parts: &[EmbeddingsRequest]) -> Option<(EmbeddingsRequest, Vec<Range<usize>>)> {
    let first = parts.first()?;
    let mut all = Vec::new();
    let mut ranges = Vec::with_capacity(parts.len());
    for p in parts {
        let start = all.len();
        all.extend(inputs(p));
        ranges.push(start..all.len());
    }
    let mut merged = first.clone();
    merged.input = Value::Array(all);
    Some((merged, ranges))
}

/// Splits a merged embeddings response: each part gets its own `data` (re-indexed from
/// 0) and a share of the prompt tokens in proportion to `weights` (its estimated
/// tokens; the shares add up to the total). `None` if the response does not hold one
/// embedding per input.
pub fn split(response: &Value, ranges: &[Range<usize>], weights: &[u64]) -> Option<Vec<(Value, u64)>> {
    let data = response.get("data")?.as_array()?;
    let total_inputs = ranges.last().map_or(0, |r| r.end);
    if data.len() != total_inputs {
        return None;
    }
    let mut by_index: Vec<Option<&Value>> = vec![None; total_inputs];
    for (pos, item) in data.iter().enumerate() {
        let i = item.get("index").and_then(Value::as_u64).map_or(pos, |i| i as usize);
        *by_index.get_mut(i)? = Some(item);
    }
    let total_tokens = response.pointer("/usage/prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    let shares = proportional(total_tokens, weights);
    let mut out = Vec::with_capacity(ranges.len());
    for (range, share) in ranges.iter().zip(shares) {
        let mut items = Vec::with_capacity(range.len());
        for (new_index, i) in range.clone().enumerate() {
            let mut item = by_index[i]?.clone();
            if let Some(o) = item.as_object_mut() {
                o.insert("index".into(), json!(new_index));
            }
            items.push(item);
        }
        let mut part = response.clone();
        if let Some(o) = part.as_object_mut() {
            o.insert("data".into(), Value::Array(items));
            o.insert("usage".into(), json!({"prompt_tokens": share, "total_tokens": share}));
        }
        out.push((part, share));
    }
    Some(out)
}

/// `total` split in proportion to `weights`, summing exactly to `total`.
pub fn proportional(total: u64, weights: &[u64]) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let sum: u64 = weights.iter().sum();
    let mut shares: Vec<u64> = if sum == 0 {
        weights.iter().map(|_| total / weights.len() as u64).collect()
    } else {
        weights.iter().map(|w| (total as u128 * *w as u128 / sum as u128) as u64).collect()
    };
    let given: u64 = shares.iter().sum();
    if let Some(last) = shares.last_mut() {
        *last += total - given;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(input: Value) -> EmbeddingsRequest {
        EmbeddingsRequest::parse(json!({"model": "embed", "input": input}).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn merges_and_splits_back_in_order() {
        let parts = [req(json!("a")), req(json!(["b", "c"])), req(json!("d"))];
        let (merged, ranges) = merge(&parts).unwrap();
        assert_eq!(merged.input, json!(["a", "b", "c", "d"]));
        assert_eq!(ranges, vec![0..1, 1..3, 3..4]);
        // the provider may answer out of order; `index` says where each belongs
        let response = json!({"object": "list", "model": "m", "data": [
            {"object": "embedding", "index": 3, "embedding": [3.0]},
            {"object": "embedding", "index": 0, "embedding": [0.0]},
            {"object": "embedding", "index": 2, "embedding": [2.0]},
            {"object": "embedding", "index": 1, "embedding": [1.0]},
        ], "usage": {"prompt_tokens": 10, "total_tokens": 10}});
        let out = split(&response, &ranges, &[1, 2, 2]).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].0["data"], json!([{"object": "embedding", "index": 0, "embedding": [0.0]}]));
        assert_eq!(out[1].0["data"][1], json!({"object": "embedding", "index": 1, "embedding": [2.0]}));
        assert_eq!(out[2].0["data"][0]["embedding"], json!([3.0]));
        assert_eq!(out.iter().map(|p| p.1).collect::<Vec<_>>(), vec![2, 4, 4]);
        assert_eq!(out[1].0["usage"]["prompt_tokens"], 4);
        assert_eq!(out[1].0["model"], "m");
    }

    #[test]
    fn a_short_answer_is_refused() {
        let (_, ranges) = merge(&[req(json!("a")), req(json!("b"))]).unwrap();
        let response = json!({"data": [{"index": 0, "embedding": [0.0]}]});
        assert!(split(&response, &ranges, &[1, 1]).is_none());
        let response = json!({"data": [{"index": 0}, {"index": 7}]});
        assert!(split(&response, &ranges, &[1, 1]).is_none());
    }

    #[test]
    fn groups_separate_what_cannot_share_a_call() {
        let a = req(json!("x"));
        let mut b = req(json!("y"));
        assert_eq!(group_key("k", &a), group_key("k", &b));
        assert_ne!(group_key("k", &a), group_key("other", &b));
        b.dimensions = Some(256);
        assert_ne!(group_key("k", &a), group_key("k", &b));
        assert_ne!(group_key("k", &a), group_key("k", &req(json!([[1, 2, 3]]))));
    }

    #[test]
    fn shares_add_up() {
        assert_eq!(proportional(10, &[1, 1, 1]), vec![3, 3, 4]);
        assert_eq!(proportional(7, &[0, 0]), vec![3, 4]);
        assert_eq!(proportional(0, &[5]), vec![0]);
        assert!(proportional(5, &[]).is_empty());
    }
}
