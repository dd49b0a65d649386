//! A capped log of JSON entries in one sled tree, read newest first a page at a time:
//! the audit trail and the recent guardrail actions. Key = time (ms, u64 BE) ++ a
//! sequence (u32 BE), so entries of one millisecond keep their order.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::StoreError;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Appends `entries` (time, entry) in one batch; trims the oldest past `max` now and then
/// (counting the tree is a scan: once every 1,024 entries).
pub(crate) fn append<'a, T: Serialize + 'a>(
    tree: &sled::Tree,
    entries: impl IntoIterator<Item = (u64, &'a T)>,
    max: usize,
) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    let mut trim = false;
    for (ts_ms, e) in entries {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        trim |= seq % 1024 == 1023;
        let mut key = [0u8; 12];
        key[..8].copy_from_slice(&ts_ms.to_be_bytes());
        key[8..].copy_from_slice(&seq.to_be_bytes());
        if let Ok(v) = serde_json::to_vec(e) {
            batch.insert(&key[..], v);
        }
    }
    tree.apply_batch(batch)?;
    if trim {
        while tree.len() > max {
            if tree.pop_min()?.is_none() {
                break;
            }
        }
    }
    Ok(())
}

/// The newest `limit` entries older than `before_ms` (all when `None`) that `keep`
/// accepts, newest first. A page never splits a millisecond (it takes the rest of its
/// last one), so the next page, before the last entry's time, misses nothing.
pub(crate) fn page<T: DeserializeOwned>(
    tree: &sled::Tree,
    before_ms: Option<u64>,
    limit: usize,
    keep: impl Fn(&T) -> bool,
) -> Result<Vec<T>, StoreError> {
    let end = before_ms.unwrap_or(u64::MAX).to_be_bytes();
    let mut out: Vec<(u64, T)> = Vec::new();
    for item in tree.range(..&end[..]).rev() {
        let (k, v) = item?;
        let Ok(e) = serde_json::from_slice::<T>(&v) else { continue };
        if !keep(&e) {
            continue;
        }
        let ts = k.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
        if out.len() >= limit && out.last().is_some_and(|(last, _)| *last != ts) {
            break;
        }
        out.push((ts, e));
    }
    Ok(out.into_iter().map(|(_, e)| e).collect())
}
