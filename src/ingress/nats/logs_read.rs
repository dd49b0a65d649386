//! Reading the request logs back from `<PREFIX>_LOGS`: one request's entry (by its
//! subject), and a page of entries newest first, read backwards in windows of stream
//! sequences so that a page never reads the whole stream (`switchyard logs`, and the
//! console through `GET /admin/logs`).

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;
use serde_json::Value;

use super::streams::Names;

/// How long an empty fetch waits for a message that is not there.
const FETCH_WAIT: Duration = Duration::from_millis(500);

/// An ephemeral consumer of `filter` delivering from `deliver_policy`, unacknowledged.
pub async fn reader(stream: &Stream, filter: String, deliver_policy: DeliverPolicy) -> Result<PullConsumer, String> {
    stream
        .create_consumer(pull::Config {
            filter_subject: filter,
            deliver_policy,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())
}

async fn drop_reader(stream: &Stream, mut consumer: PullConsumer) {
    if let Ok(info) = consumer.info().await {
        let name = info.name.clone();
        let _ = stream.delete_consumer(&name).await;
    }
}

/// The entry of request `request_id`, whichever key made it.
pub async fn one(stream: &Stream, names: &Names, request_id: &str) -> Result<Option<Value>, String> {
    let consumer = reader(stream, names.log_of_request(request_id), DeliverPolicy::All).await?;
    let mut batch = consumer.fetch().max_messages(1).expires(FETCH_WAIT).messages().await.map_err(|e| e.to_string())?;
    let found = match batch.next().await {
        Some(Ok(m)) => Some(serde_json::from_slice(&m.payload).unwrap_or(Value::Null)),
        _ => None,
    };
    drop(batch);
    drop_reader(stream, consumer).await;
    Ok(found)
}

/// A page of entries.
pub struct Page {
    /// Newest first, each with its stream sequence as `seq`.
    pub entries: Vec<Value>,
    /// Where the next page starts (`before`), when there may be more.
    pub next_before: Option<u64>,
}

/// Up to `limit` entries of `key` (every key's when `None`) that `keep` accepts, newest
/// first, among those before sequence `before` (the newest when `None`); reads at most
/// `scan` sequences back, then says where to go on.
pub async fn page(
    stream: &Stream,
    names: &Names,
    key: Option<&str>,
    before: Option<u64>,
    limit: usize,
    scan: u64,
    keep: impl Fn(&Value) -> bool,
) -> Result<Page, String> {
    let info = stream.get_info().await.map_err(|e| e.to_string())?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut end = before.unwrap_or(u64::MAX).min(last.saturating_add(1));
    let window = (limit as u64 * 2).max(64);
    let (mut found, mut scanned) = (Vec::new(), 0);
    while found.len() < limit && end > first && info.state.messages > 0 && scanned < scan {
        let start = end.saturating_sub(window).max(first);
        let from = DeliverPolicy::ByStartSequence { start_sequence: start };
        let mut consumer = reader(stream, names.logs_of_key(key), from).await?;
        // what the window can hold, and no more than the consumer has (a fetch of more
        // than there is would wait)
        let pending = consumer.info().await.map_err(|e| e.to_string())?.num_pending;
        let want = pending.min(end - start) as usize;
        let mut batch = Vec::new();
        if want > 0 {
            let mut messages =
                consumer.fetch().max_messages(want).expires(FETCH_WAIT).messages().await.map_err(|e| e.to_string())?;
            while let Some(Ok(m)) = messages.next().await {
                let seq = m.info().map(|i| i.stream_sequence).unwrap_or(u64::MAX);
                if seq >= end {
                    break;
                }
                let mut v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                if keep(&v) {
                    if let Some(o) = v.as_object_mut() {
                        o.insert("seq".into(), seq.into());
                    }
                    batch.push(v);
                }
            }
        }
        drop_reader(stream, consumer).await;
        scanned += end - start;
        found.extend(batch.into_iter().rev());
        end = start;
    }
    found.truncate(limit);
    let next_before = if found.len() == limit {
        found.last().and_then(|v| v["seq"].as_u64())
    } else {
        (end > first && info.state.messages > 0).then_some(end)
    };
    Ok(Page { entries: found, next_before })
}
