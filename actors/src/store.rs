//! The one place that knows sled and bincode. Trees:
//! - `ledger`: usage records in segments, one per group commit: key = commit time in ms
//!   (u64 BE) ++ sequence (u64 BE), value = [`SEGMENT_V6`] then the bincode of the records
//!   (older segments start with [`SEGMENT_V4`], [`SEGMENT_V3`], [`SEGMENT_V2`] or [`SEGMENT`] and hold earlier layouts).
//!   One sled insert per commit instead of one per record: per-record B-tree inserts
//!   (node splits, page rewrites) were 10-15% of the gateway's CPU under load. Values
//!   written before segments (one bincode record each, whose first byte is a request id
//!   length of at most 128) are still read.
//! - `ledger_ids`: idempotency key -> ledger key, so a job's record is written once.
//! - `cache`: response cache entries; `cache_order`: insertion order for eviction.
//! - `vkeys`: virtual keys; `responses`: stored Responses API responses (id -> JSON).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};

use crate::types::UsageRecord;

/// sled's page cache unless the config says otherwise (`server.store_cache_bytes`).
pub const DEFAULT_CACHE_BYTES: u64 = 16 << 20;

/// Largest record the codec will decode (a guard against corrupt or hostile bytes).
const DECODE_LIMIT: usize = 64 << 20;

/// First byte of a segment value of [`UsageRecordV1`]s; never the first byte of a
/// single encoded record.
const SEGMENT: u8 = 0xA5;
/// First byte of a segment value of [`UsageRecordV2`]s (the layout that added
/// `upstream_attempts`). bincode is positional, so every change of the record's fields
/// gets a new marker, and the old layouts keep being read.
const SEGMENT_V2: u8 = 0xA6;
/// First byte of a segment value of [`UsageRecordV3`]s (the layout that added `guardrails`).
const SEGMENT_V3: u8 = 0xA7;
/// First byte of a segment value of [`UsageRecord`]s as they are now (adds
/// `cache_write_tokens` and `reasoning_tokens`).
const SEGMENT_V4: u8 = 0xA8;
/// First byte of a segment value of [`UsageRecordV5`]s (adds `prompt` and `experiment`).
const SEGMENT_V5: u8 = 0xA9;
/// First byte of a segment value of [`UsageRecord`]s as they are now (adds
/// `semantic_similarity` and `saved_usd`).
const SEGMENT_V6: u8 = 0xAA;

/// The record before `semantic_similarity` and `saved_usd`: the fields of V4, then
/// `prompt` and `experiment`.
#[derive(serde::Deserialize, serde::Serialize)]
struct UsageRecordV5 {
    v4: UsageRecordV4,
    prompt: Option<String>,
    experiment: Option<String>,
}

impl From<UsageRecordV5> for UsageRecord {
    fn from(r: UsageRecordV5) -> UsageRecord {
        UsageRecord { prompt: r.prompt, experiment: r.experiment, ..UsageRecord::from(r.v4) }
    }
}

/// The record before `prompt` and `experiment`: the fields of V3, then
/// `cache_write_tokens` and `reasoning_tokens`.
#[derive(serde::Deserialize, serde::Serialize)]
struct UsageRecordV4 {
    v3: UsageRecordV3,
    cache_write_tokens: u64,
    reasoning_tokens: u64,
}

impl From<UsageRecordV4> for UsageRecord {
    fn from(r: UsageRecordV4) -> UsageRecord {
        UsageRecord {
            cache_write_tokens: r.cache_write_tokens,
            reasoning_tokens: r.reasoning_tokens,
            ..UsageRecord::from(r.v3)
        }
    }
}

/// The record before `cache_write_tokens` and `reasoning_tokens`: the fields of V2, then
/// `guardrails`.
#[derive(serde::Deserialize, serde::Serialize)]
struct UsageRecordV3 {
    v2: UsageRecordV2,
    guardrails: Vec<String>,
}

impl From<UsageRecordV3> for UsageRecord {
    fn from(r: UsageRecordV3) -> UsageRecord {
        UsageRecord { guardrails: r.guardrails, ..UsageRecord::from(r.v2) }
    }
}

/// The record before `guardrails`: the fields of V1, then `upstream_attempts` (bincode
/// lays a nested struct out field by field, so this is that layout exactly).
#[derive(serde::Deserialize, serde::Serialize)]
struct UsageRecordV2 {
    v1: UsageRecordV1,
    upstream_attempts: u32,
}

impl From<UsageRecordV2> for UsageRecord {
    fn from(r: UsageRecordV2) -> UsageRecord {
        UsageRecord { upstream_attempts: r.upstream_attempts, ..UsageRecord::from(r.v1) }
    }
}

/// The record before `upstream_attempts`: segments marked [`SEGMENT`] and the single
/// records written before segments hold these.
#[derive(serde::Deserialize, serde::Serialize)]
struct UsageRecordV1 {
    request_id: String,
    ts_ms: u64,
    key_id: String,
    endpoint: crate::types::Endpoint,
    alias: String,
    provider: String,
    upstream_model: String,
    input_tokens: u64,
    output_tokens: u64,
    cached_tokens: u64,
    cost_usd: f64,
    latency_us: u64,
    ttft_us: Option<u64>,
    status: u16,
    cache_hit: bool,
    stream: bool,
    usage_estimated: bool,
    idempotency_key: Option<String>,
    attempts: u32,
}

impl From<UsageRecordV1> for UsageRecord {
    fn from(r: UsageRecordV1) -> UsageRecord {
        // not recorded then: one call unless no provider was called (a cache hit)
        let upstream_attempts = u32::from(!r.cache_hit && !r.provider.is_empty());
        UsageRecord {
            request_id: r.request_id,
            ts_ms: r.ts_ms,
            key_id: r.key_id,
            endpoint: r.endpoint,
            alias: r.alias,
            provider: r.provider,
            upstream_model: r.upstream_model,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cached_tokens: r.cached_tokens,
            cost_usd: r.cost_usd,
            latency_us: r.latency_us,
            ttft_us: r.ttft_us,
            status: r.status,
            cache_hit: r.cache_hit,
            stream: r.stream,
            usage_estimated: r.usage_estimated,
            idempotency_key: r.idempotency_key,
            attempts: r.attempts,
            upstream_attempts,
            guardrails: Vec::new(),
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            prompt: None,
            experiment: None,
            semantic_similarity: None,
            saved_usd: 0.0,
        }
    }
}

/// The most bytes one ledger segment holds (about 50 records); a larger group commit is
/// written as several segments. sled splits a leaf above 16 entries, and writes a leaf
/// that serializes to more than a quarter of its segment size (128 KiB by default) as a
/// blob, which its page cache counts at the size of the pointer: such leaves were never
/// evicted, and the process grew by every byte the ledger wrote. 16 segments of this
/// size stay under that.
const SEGMENT_BYTES: usize = 6 * 1024;

fn ledger_key(ts_ms: u64, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&ts_ms.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("transaction: {0}")]
    Transaction(String),
    #[error("json: {0}")]
    Json(String),
    #[error("{0} is in use by another process (another gateway on the same data_dir?)")]
    Locked(String),
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    Ok(bincode::serde::encode_to_vec(v, bincode::config::standard())?)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    let cfg = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    Ok(bincode::serde::decode_from_slice(bytes, cfg)?.0)
}

/// The opened database and its trees. Cheap to clone (sled handles are `Arc`s).
#[derive(Clone)]
pub struct Store {
    pub db: sled::Db,
    pub ledger: sled::Tree,
    pub ledger_ids: sled::Tree,
    pub cache: sled::Tree,
    pub cache_order: sled::Tree,
    /// The semantic cache: entry id (u64 BE) -> bincode of its vector, text and answer.
    pub semantic: sled::Tree,
    /// Hourly usage totals beside the ledger (`rollup.rs`).
    pub usage_hourly: sled::Tree,
    /// The admin audit trail (`audit.rs`).
    pub audit: sled::Tree,
    /// Recent requests a guardrail acted on (`flagged.rs`).
    pub flagged: sled::Tree,
    /// Each experiment's records (`experiment_index.rs`).
    pub experiment_records: sled::Tree,
    /// Virtual keys created through the admin API: SHA-256 of the secret (hex) -> JSON.
    pub vkeys: sled::Tree,
    /// Stored Responses API responses: id -> the caller's JSON record.
    pub responses: sled::Tree,
    /// Prompts made through the admin API: id -> JSON (`prompts::StoredPrompt`).
    pub prompts: sled::Tree,
    /// Experiments made or changed through the admin API: id -> JSON.
    pub experiments: sled::Tree,
    /// Feedback on requests: key id, NUL, request id -> JSON (`prompts::feedback::Feedback`).
    pub feedback: sled::Tree,
}

impl Store {
    /// Opens (or creates) the database in `dir`. Fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Self::open_waiting(dir, Duration::from_secs(2))
    }

    /// [`Store::open`] with sled's page cache at most `cache_bytes` (resident memory it
    /// keeps; the ledger is written far more than read, so a small one costs little).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        Self::open_sized(dir, Duration::from_secs(2), cache_bytes)
    }

    /// Opens the store, waiting up to `wait` while another holder (a process on its way
    /// out, or a handle whose background flusher has not finished) keeps its lock.
    pub fn open_waiting(dir: &Path, wait: Duration) -> Result<Store, StoreError> {
        Self::open_sized(dir, wait, DEFAULT_CACHE_BYTES)
    }

    fn open_sized(dir: &Path, wait: Duration, cache_bytes: u64) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Sled(sled::Error::Io(e)))?;
        let deadline = Instant::now() + wait;
        let db = loop {
            match sled::Config::new().path(dir.join("switchyard.sled")).cache_capacity(cache_bytes).open() {
                Ok(db) => break db,
                // sled reports a held lock only in its message
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if Instant::now() >= deadline {
                        return Err(StoreError::Locked(dir.display().to_string()));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Store {
            ledger: db.open_tree("ledger")?,
            ledger_ids: db.open_tree("ledger_ids")?,
            cache: db.open_tree("cache")?,
            cache_order: db.open_tree("cache_order")?,
            semantic: db.open_tree("semantic")?,
            usage_hourly: db.open_tree("usage_hourly")?,
            audit: db.open_tree("audit")?,
            flagged: db.open_tree("flagged")?,
            experiment_records: db.open_tree("experiment_records")?,
            vkeys: db.open_tree("vkeys")?,
            responses: db.open_tree("responses")?,
            prompts: db.open_tree("prompts")?,
            experiments: db.open_tree("experiments")?,
            feedback: db.open_tree("feedback")?,
            db,
        })
    }

    /// Appends records in one batch and flushes to disk; a record whose
    /// `idempotency_key` is already in the ledger is skipped. Returns how many were new.
    ///
    /// Order matters for crashes: the ledger batch is applied before the key index, so a
    /// crash can leave a record without its key (repaired by [`Store::repair_keys`] at
    /// start), never a key without its record.
    pub fn append_usage(&self, records: &[UsageRecord], next_seq: &mut u64) -> Result<usize, StoreError> {
        let mut seen = std::collections::HashSet::new();
        let mut segment: Vec<&UsageRecord> = Vec::with_capacity(records.len());
        // a segment is keyed by when it is committed, which is after every record in it
        // began: the records since T are in the segments keyed T or later
        let commit_ms = records.iter().map(|r| r.ts_ms).max().unwrap_or(0).max(crate::types::unix_ms());
        for r in records {
            if let Some(k) = &r.idempotency_key {
                if !seen.insert(k.as_str()) || self.ledger_ids.contains_key(k.as_bytes())? {
                    continue;
                }
            }
            segment.push(r);
        }
        if !segment.is_empty() {
            let mut value = vec![SEGMENT_V6];
            bincode::serde::encode_into_std_write(&segment, &mut value, bincode::config::standard())?;
            // a larger commit goes in as several segments of about SEGMENT_BYTES (see
            // there: what sled does with larger leaves), in one batch
            let per = segment.len().div_ceil(value.len().div_ceil(SEGMENT_BYTES).max(1));
            let chunks: Vec<&[&UsageRecord]> = segment.chunks(per).collect();
            let (mut batch, mut keys) = (sled::Batch::default(), sled::Batch::default());
            let mut last = ledger_key(commit_ms, *next_seq);
            for chunk in &chunks {
                let key = ledger_key(commit_ms, *next_seq);
                *next_seq += 1;
                if chunks.len() > 1 {
                    value = vec![SEGMENT_V6];
                    bincode::serde::encode_into_std_write(chunk, &mut value, bincode::config::standard())?;
                }
                batch.insert(&key[..], std::mem::take(&mut value));
                for r in chunk.iter() {
                    if let Some(k) = &r.idempotency_key {
                        keys.insert(k.as_bytes(), &key[..]);
                    }
                }
                last = key;
            }
            self.ledger.apply_batch(batch)?;
            self.roll_up(&segment, &last)?;
            self.ledger_ids.apply_batch(keys)?;
            let flagged: Vec<_> = segment.iter().filter_map(|r| crate::flagged::Flagged::of_record(r)).collect();
            if !flagged.is_empty() {
                self.add_flagged(&flagged)?;
            }
        }
        self.db.flush()?;
        Ok(segment.len())
    }

    /// The records of one ledger value (a segment, or a single record written before
    /// segments).
    pub(crate) fn records_of(value: &[u8]) -> Result<Vec<UsageRecord>, StoreError> {
        match value.split_first() {
            Some((&SEGMENT_V6, rest)) => decode(rest),
            Some((&SEGMENT_V5, rest)) => Ok(decode::<Vec<UsageRecordV5>>(rest)?.into_iter().map(Into::into).collect()),
            Some((&SEGMENT_V4, rest)) => Ok(decode::<Vec<UsageRecordV4>>(rest)?.into_iter().map(Into::into).collect()),
            Some((&SEGMENT_V3, rest)) => Ok(decode::<Vec<UsageRecordV3>>(rest)?.into_iter().map(Into::into).collect()),
            Some((&SEGMENT_V2, rest)) => Ok(decode::<Vec<UsageRecordV2>>(rest)?.into_iter().map(Into::into).collect()),
            Some((&SEGMENT, rest)) => Ok(decode::<Vec<UsageRecordV1>>(rest)?.into_iter().map(Into::into).collect()),
            _ => Ok(vec![decode::<UsageRecordV1>(value)?.into()]),
        }
    }

    /// Every virtual key, revoked ones included, as stored (JSON).
    pub fn virtual_keys<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.vkeys.iter() {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k).into_owned();
            out.push((key, serde_json::from_slice(&v).map_err(|e| StoreError::Json(e.to_string()))?));
        }
        Ok(out)
    }

    /// Writes a virtual key (by the hash of its secret) and flushes it to disk before
    /// the caller answers: a created or revoked key survives a crash.
    pub fn put_virtual_key<T: Serialize>(&self, hash: &str, key: &T) -> Result<(), StoreError> {
        let v = serde_json::to_vec(key).map_err(|e| StoreError::Json(e.to_string()))?;
        self.vkeys.insert(hash.as_bytes(), v)?;
        self.vkeys.flush()?;
        Ok(())
    }

    /// Re-indexes the idempotency keys of records newer than `since_ms` (after a crash
    /// between the two batches of [`Store::append_usage`]). Returns how many were missing.
    pub fn repair_keys(&self, since_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.ledger.range(since_ms.to_be_bytes().to_vec()..) {
            let (k, v) = item?;
            for r in Self::records_of(&v)? {
                if let Some(id) = r.idempotency_key {
                    if !self.ledger_ids.contains_key(id.as_bytes())? {
                        self.ledger_ids.insert(id.as_bytes(), &k)?;
                        n += 1;
                    }
                }
            }
        }
        if n > 0 {
            self.db.flush()?;
        }
        Ok(n)
    }

    /// The sequence number to continue from after a restart.
    pub fn last_ledger_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.ledger.last()? {
            Some((k, _)) if k.len() == 16 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&k[8..]);
                u64::from_be_bytes(b) + 1
            }
            _ => 0,
        })
    }

    /// Records with `ts_ms >= since_ms`, in the order they were committed.
    pub fn usage_since(&self, since_ms: u64) -> Result<Vec<UsageRecord>, StoreError> {
        let mut out = Vec::new();
        self.visit_usage_since(since_ms, |r| out.push(r))?;
        Ok(out)
    }

    /// Each record newer than `since_ms`, one segment in memory at a time (a report over
    /// a long ledger need not hold it all).
    pub fn visit_usage_since(&self, since_ms: u64, mut f: impl FnMut(UsageRecord)) -> Result<(), StoreError> {
        for item in self.ledger.range(since_ms.to_be_bytes().to_vec()..) {
            let (_, v) = item?;
            Self::records_of(&v)?.into_iter().filter(|r| r.ts_ms >= since_ms).for_each(&mut f);
        }
        Ok(())
    }

    /// Stores a Responses API response record, on disk before it returns (a later turn
    /// may name it at once, on this instance or after a restart).
    pub fn put_response(&self, id: &str, record: &[u8]) -> Result<(), StoreError> {
        self.responses.insert(id.as_bytes(), record)?;
        self.responses.flush()?;
        Ok(())
    }

    /// A stored Responses API response record.
    pub fn response(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.responses.get(id.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Deletes a stored response; whether it was there.
    pub fn delete_response(&self, id: &str) -> Result<bool, StoreError> {
        let was = self.responses.remove(id.as_bytes())?.is_some();
        self.responses.flush()?;
        Ok(was)
    }

    /// Deletes the stored responses `expired` says are past their time; how many.
    pub fn sweep_responses(&self, expired: impl Fn(&[u8]) -> bool) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.responses.iter() {
            let (k, v) = item?;
            if expired(&v) {
                self.responses.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Whether a record with this idempotency key is in the ledger.
    pub fn has_usage(&self, idempotency_key: &str) -> Result<bool, StoreError> {
        Ok(self.ledger_ids.contains_key(idempotency_key.as_bytes())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Endpoint;

    pub(crate) fn record(id: &str, ts_ms: u64) -> UsageRecord {
        UsageRecord {
            provider: "p".into(),
            upstream_model: "m".into(),
            input_tokens: 10,
            output_tokens: 5,
            cost_usd: 0.001,
            latency_us: 1000,
            status: 200,
            ..UsageRecord::new(id, ts_ms, "k", Endpoint::Chat, "a", false)
        }
    }

    fn job(id: &str, ts_ms: u64) -> UsageRecord {
        UsageRecord { idempotency_key: Some(id.to_string()), ..record(id, ts_ms) }
    }

    #[test]
    fn ledger_is_exactly_once_per_key_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut seq = store.last_ledger_seq().unwrap();
            assert_eq!(store.append_usage(&[job("a", 1), job("b", 2)], &mut seq).unwrap(), 2);
            // a redelivered job is not written twice, even within one batch
            assert_eq!(store.append_usage(&[job("b", 3), job("c", 3), job("c", 4)], &mut seq).unwrap(), 1);
            // requests without a key are all kept, even with the same request id
            assert_eq!(store.append_usage(&[record("x", 5), record("x", 5)], &mut seq).unwrap(), 2);
        }
        let store = Store::open(dir.path()).unwrap();
        let all = store.usage_since(0).unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "c", "x", "x"]);
        assert_eq!(store.usage_since(2).unwrap().len(), 4);
        assert!(store.has_usage("c").unwrap());
        assert_eq!(store.last_ledger_seq().unwrap(), 3, "one segment per commit");
    }

    #[test]
    fn a_large_commit_is_written_as_segments_that_sled_can_evict() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut seq = 0;
        let records: Vec<_> = (0..3000).map(|i| job(&format!("job-{i}"), 1_000 + i)).collect();
        assert_eq!(store.append_usage(&records, &mut seq).unwrap(), 3000);
        assert!(seq > 4, "{seq} segments");
        let sizes: Vec<usize> = store.ledger.iter().map(|kv| kv.unwrap().1.len()).collect();
        assert_eq!(sizes.len() as u64, seq);
        // a full leaf of them (16) stays under sled's blob threshold (128 KiB)
        assert!(sizes.iter().all(|&s| s <= SEGMENT_BYTES + SEGMENT_BYTES / 8), "{sizes:?}");
        assert!(16 * (SEGMENT_BYTES + SEGMENT_BYTES / 8) < 128 * 1024);
        let all = store.usage_since(0).unwrap();
        assert_eq!(all.len(), 3000);
        assert_eq!(all.iter().map(|r| r.request_id.as_str()).collect::<std::collections::HashSet<_>>().len(), 3000);
        // each record's key points at a segment that holds it: redeliveries are skipped
        assert_eq!(store.append_usage(&[job("job-0", 9_000), job("job-2999", 9_000)], &mut seq).unwrap(), 0);
        store.ledger_ids.remove("job-2999").unwrap();
        assert_eq!(store.repair_keys(0).unwrap(), 1);
        // the totals count every record once, and the watermark is the last segment
        let rows = store.usage_rollup(0).unwrap();
        assert_eq!(rows.iter().map(|r| r.counters.requests).sum::<u64>(), 3000);
        assert_eq!(store.catch_up_rollup().unwrap(), 0);
    }

    #[test]
    fn a_held_store_is_refused_after_the_wait_then_opens_once_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let held = Store::open(dir.path()).unwrap();
        let err = Store::open_waiting(dir.path(), Duration::from_millis(100)).err().expect("refused while held");
        assert!(matches!(err, StoreError::Locked(_)), "{err}");
        assert!(err.to_string().contains("in use"), "{err}");
        drop(held);
        // the dropped handle's flusher may still hold the lock for a moment
        assert!(Store::open(dir.path()).is_ok());
    }

    #[test]
    fn missing_keys_are_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut seq = 0;
        store.append_usage(&[job("a", 10), job("b", 20)], &mut seq).unwrap();
        // simulate a crash between the ledger batch and the key batch
        store.ledger_ids.remove("b").unwrap();
        assert_eq!(store.repair_keys(15).unwrap(), 1);
        assert!(store.has_usage("b").unwrap());
        assert_eq!(store.append_usage(&[job("b", 30)], &mut seq).unwrap(), 0);
    }

    #[test]
    fn records_written_one_per_value_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let v1 = |id: &str, ts_ms: u64, cache_hit: bool| {
            let r = record(id, ts_ms);
            UsageRecordV1 {
                request_id: r.request_id,
                ts_ms,
                key_id: r.key_id,
                endpoint: r.endpoint,
                alias: r.alias,
                provider: r.provider,
                upstream_model: r.upstream_model,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                cached_tokens: 0,
                cost_usd: r.cost_usd,
                latency_us: r.latency_us,
                ttft_us: None,
                status: 200,
                cache_hit,
                stream: false,
                usage_estimated: false,
                idempotency_key: None,
                attempts: 1,
            }
        };
        // the layout before segments: one bincode record per key
        store.ledger.insert(&ledger_key(5, 0)[..], encode(&v1("old", 5, false)).unwrap()).unwrap();
        // a segment of the layout before `upstream_attempts`
        let mut value = vec![SEGMENT];
        value.extend(encode(&vec![v1("seg", 5, false), v1("hit", 5, true)]).unwrap());
        store.ledger.insert(&ledger_key(5, 1)[..], value).unwrap();
        // a segment of the layout before `guardrails`
        let mut value = vec![SEGMENT_V2];
        value.extend(encode(&vec![UsageRecordV2 { v1: v1("v2", 5, false), upstream_attempts: 2 }]).unwrap());
        store.ledger.insert(&ledger_key(5, 2)[..], value).unwrap();
        // a segment of the layout before the cache-write and reasoning counts
        let mut value = vec![SEGMENT_V3];
        let v2 = UsageRecordV2 { v1: v1("v3", 5, false), upstream_attempts: 1 };
        value.extend(encode(&vec![UsageRecordV3 { v2, guardrails: vec!["g".into()] }]).unwrap());
        store.ledger.insert(&ledger_key(5, 3)[..], value).unwrap();
        let mut value = vec![SEGMENT_V5];
        let v2 = UsageRecordV2 { v1: v1("v5", 5, false), upstream_attempts: 1 };
        let v4 =
            UsageRecordV4 { v3: UsageRecordV3 { v2, guardrails: vec![] }, cache_write_tokens: 2, reasoning_tokens: 3 };
        value.extend(encode(&vec![UsageRecordV5 { v4, prompt: Some("p@1".into()), experiment: None }]).unwrap());
        store.ledger.insert(&ledger_key(5, 4)[..], value).unwrap();
        let mut seq = store.last_ledger_seq().unwrap();
        assert_eq!(seq, 5);
        let new = UsageRecord {
            upstream_attempts: 3,
            guardrails: vec!["pii:EMAIL:redact".into()],
            cache_write_tokens: 7,
            reasoning_tokens: 9,
            semantic_similarity: Some(0.97),
            saved_usd: 0.25,
            ..record("new", 6)
        };
        store.append_usage(&[new], &mut seq).unwrap();
        let all = store.usage_since(0).unwrap();
        let ids: Vec<(&str, u32, usize, u64)> = all
            .iter()
            .map(|r| {
                (
                    r.request_id.as_str(),
                    r.upstream_attempts,
                    r.guardrails.len(),
                    r.cache_write_tokens + r.reasoning_tokens,
                )
            })
            .collect();
        assert_eq!(
            ids,
            [
                ("old", 1, 0, 0),
                ("seg", 1, 0, 0),
                ("hit", 0, 0, 0),
                ("v2", 2, 0, 0),
                ("v3", 1, 1, 0),
                ("v5", 1, 0, 5),
                ("new", 3, 1, 16)
            ]
        );
        assert_eq!(all[5].prompt.as_deref(), Some("p@1"));
        assert_eq!((all[6].semantic_similarity, all[6].saved_usd), (Some(0.97), 0.25));
        // one value per commit, however many records it holds
        let before = store.ledger.len();
        store.append_usage(&[record("a", 7), record("b", 7), record("c", 7)], &mut seq).unwrap();
        assert_eq!(store.ledger.len(), before + 1);
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode::<UsageRecord>(&[0xff, 0xff, 0xff]).is_err());
    }
}
