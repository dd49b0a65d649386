//! The one place that knows sled and bincode. Trees:
//! - `ledger`: usage records, key = ts_ms (u64 BE) ++ sequence (u64 BE), value = bincode.
//! - `ledger_ids`: request id -> ledger key, so a record is written exactly once.
//! - `cache`: response cache entries; `cache_order`: insertion order for eviction.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use crate::types::UsageRecord;

/// Largest record the codec will decode (a guard against corrupt or hostile bytes).
const DECODE_LIMIT: usize = 64 << 20;

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
        let mut ledger = sled::Batch::default();
        let mut keys = sled::Batch::default();
        let mut seen = std::collections::HashSet::new();
        let mut n = 0;
        for r in records {
            if let Some(k) = &r.idempotency_key {
                if !seen.insert(k.as_str()) || self.ledger_ids.contains_key(k.as_bytes())? {
                    continue;
                }
            }
            let key = ledger_key(r.ts_ms, *next_seq);
            *next_seq += 1;
            ledger.insert(&key[..], encode(r)?);
            if let Some(k) = &r.idempotency_key {
                keys.insert(k.as_bytes(), &key[..]);
            }
            n += 1;
        }
        self.ledger.apply_batch(ledger)?;
        self.ledger_ids.apply_batch(keys)?;
        self.db.flush()?;
        Ok(n)
    }

    /// Re-indexes the idempotency keys of records newer than `since_ms` (after a crash
    /// between the two batches of [`Store::append_usage`]). Returns how many were missing.
    pub fn repair_keys(&self, since_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.ledger.range(since_ms.to_be_bytes().to_vec()..) {
            let (k, v) = item?;
            let r: UsageRecord = decode(&v)?;
            if let Some(id) = r.idempotency_key {
                if !self.ledger_ids.contains_key(id.as_bytes())? {
                    self.ledger_ids.insert(id.as_bytes(), k)?;
                    n += 1;
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

    /// Records with `ts_ms >= since_ms`, oldest first.
    pub fn usage_since(&self, since_ms: u64) -> Result<Vec<UsageRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.ledger.range(since_ms.to_be_bytes().to_vec()..) {
            let (_, v) = item?;
            out.push(decode(&v)?);
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
        assert_eq!(store.last_ledger_seq().unwrap(), 5);
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
    fn decode_rejects_garbage() {
        assert!(decode::<UsageRecord>(&[0xff, 0xff, 0xff]).is_err());
    }
}
