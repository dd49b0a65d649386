//! The one place that knows sled and bincode. Trees:
//! - `ledger`: usage records in segments, one per group commit: key = commit time in ms
//!   (u64 BE) ++ sequence (u64 BE), value = [`SEGMENT`] then the bincode of the records.
//!   One sled insert per commit instead of one per record: per-record B-tree inserts
//!   (node splits, page rewrites) were 10-15% of the gateway's CPU under load. Values
//!   written before segments (one bincode record each, whose first byte is a request id
//!   length of at most 128) are still read.
//! - `ledger_ids`: idempotency key -> ledger key, so a job's record is written once.
//! - `cache`: response cache entries; `cache_order`: insertion order for eviction.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use crate::types::UsageRecord;

/// Largest record the codec will decode (a guard against corrupt or hostile bytes).
const DECODE_LIMIT: usize = 64 << 20;

/// First byte of a segment value; never the first byte of a single encoded record.
const SEGMENT: u8 = 0xA5;

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
}

impl Store {
    /// Opens (or creates) the database in `dir`. Fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Sled(sled::Error::Io(e)))?;
        let db = sled::Config::new().path(dir.join("switchyard.sled")).cache_capacity(64 << 20).open()?;
        Ok(Store {
            ledger: db.open_tree("ledger")?,
            ledger_ids: db.open_tree("ledger_ids")?,
            cache: db.open_tree("cache")?,
            cache_order: db.open_tree("cache_order")?,
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
        let mut keys = sled::Batch::default();
        let mut seen = std::collections::HashSet::new();
        let mut segment: Vec<&UsageRecord> = Vec::with_capacity(records.len());
        // a segment is keyed by when it is committed, which is after every record in it
        // began: the records since T are in the segments keyed T or later
        let commit_ms = records.iter().map(|r| r.ts_ms).max().unwrap_or(0).max(crate::types::unix_ms());
        let key = ledger_key(commit_ms, *next_seq);
        for r in records {
            if let Some(k) = &r.idempotency_key {
                if !seen.insert(k.as_str()) || self.ledger_ids.contains_key(k.as_bytes())? {
                    continue;
                }
                keys.insert(k.as_bytes(), &key[..]);
            }
            segment.push(r);
        }
        if !segment.is_empty() {
            let mut value = vec![SEGMENT];
            bincode::serde::encode_into_std_write(&segment, &mut value, bincode::config::standard())?;
            *next_seq += 1;
            self.ledger.insert(&key[..], value)?;
            self.ledger_ids.apply_batch(keys)?;
        }
        self.db.flush()?;
        Ok(segment.len())
    }

    /// The records of one ledger value (a segment, or a single record written before
    /// segments).
    fn records_of(value: &[u8]) -> Result<Vec<UsageRecord>, StoreError> {
        match value.split_first() {
            Some((&SEGMENT, rest)) => decode(rest),
            _ => Ok(vec![decode(value)?]),
        }
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
        for item in self.ledger.range(since_ms.to_be_bytes().to_vec()..) {
            let (_, v) = item?;
            out.extend(Self::records_of(&v)?.into_iter().filter(|r| r.ts_ms >= since_ms));
        }
        Ok(out)
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
        // the layout before segments: one bincode record per key
        store.ledger.insert(&ledger_key(5, 0)[..], encode(&record("old", 5)).unwrap()).unwrap();
        let mut seq = store.last_ledger_seq().unwrap();
        assert_eq!(seq, 1);
        store.append_usage(&[record("new", 6)], &mut seq).unwrap();
        let ids: Vec<String> = store.usage_since(0).unwrap().into_iter().map(|r| r.request_id).collect();
        assert_eq!(ids, ["old", "new"]);
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
