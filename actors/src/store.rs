//! The one place that knows sled and bincode. Trees:
//! - `ledger`: usage records, key = ts_ms (u64 BE) ++ sequence (u64 BE), value = bincode.
//! - `ledger_ids`: request id -> ledger key, so a record is written exactly once.
//! - `cache`: response cache entries; `cache_order`: insertion order for eviction.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use crate::types::UsageRecord;

/// Largest record the codec will decode (a guard against corrupt or hostile bytes).
const DECODE_LIMIT: usize = 64 << 20;

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
        let db = sled::Config::new()
            .path(dir.join("switchyard.sled"))
            .cache_capacity(64 << 20)
            .open()?;
        Ok(Store {
            ledger: db.open_tree("ledger")?,
            ledger_ids: db.open_tree("ledger_ids")?,
            cache: db.open_tree("cache")?,
            cache_order: db.open_tree("cache_order")?,
            db,
        })
    }

    /// Writes records that are not in the ledger yet, in one transaction, and flushes to
    /// disk. Returns how many were new.
    pub fn append_usage(&self, records: &[UsageRecord], next_seq: &mut u64) -> Result<usize, StoreError> {
        let mut encoded = Vec::with_capacity(records.len());
        for r in records {
            encoded.push((r.request_id.as_bytes().to_vec(), encode(r)?, r.ts_ms));
        }
        let base_seq = *next_seq;
        use sled::Transactional;
        let written = (&self.ledger, &self.ledger_ids)
            .transaction(|(ledger, ids)| {
                let mut n = 0usize;
                let mut seq = base_seq;
                for (id, value, ts) in &encoded {
                    if ids.get(id.as_slice())?.is_some() {
                        continue;
                    }
                    let mut key = [0u8; 16];
                    key[..8].copy_from_slice(&ts.to_be_bytes());
                    key[8..].copy_from_slice(&seq.to_be_bytes());
                    seq += 1;
                    ledger.insert(&key[..], value.as_slice())?;
                    ids.insert(id.as_slice(), &key[..])?;
                    n += 1;
                }
                Ok::<usize, sled::transaction::ConflictableTransactionError<()>>(n)
            })
            .map_err(|e| StoreError::Transaction(format!("{e:?}")))?;
        *next_seq = base_seq + records.len() as u64;
        self.db.flush()?;
        Ok(written)
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

    pub fn has_usage(&self, request_id: &str) -> Result<bool, StoreError> {
        Ok(self.ledger_ids.contains_key(request_id.as_bytes())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Endpoint;

    pub(crate) fn record(id: &str, ts_ms: u64) -> UsageRecord {
        UsageRecord {
            request_id: id.into(),
            ts_ms,
            key_id: "k".into(),
            endpoint: Endpoint::Chat,
            alias: "a".into(),
            provider: "p".into(),
            upstream_model: "m".into(),
            input_tokens: 10,
            output_tokens: 5,
            cached_tokens: 0,
            cost_usd: 0.001,
            latency_us: 1000,
            ttft_us: None,
            status: 200,
            cache_hit: false,
            stream: false,
            usage_estimated: false,
        }
    }

    #[test]
    fn ledger_is_exactly_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut seq = store.last_ledger_seq().unwrap();
            let n = store.append_usage(&[record("a", 1), record("b", 2)], &mut seq).unwrap();
            assert_eq!(n, 2);
            // a redelivered record is not written twice
            let n = store.append_usage(&[record("b", 3), record("c", 3)], &mut seq).unwrap();
            assert_eq!(n, 1);
        }
        let store = Store::open(dir.path()).unwrap();
        let all = store.usage_since(0).unwrap();
        assert_eq!(
            all.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
        assert_eq!(store.usage_since(2).unwrap().len(), 2);
        assert!(store.has_usage("c").unwrap());
        assert!(store.last_ledger_seq().unwrap() >= 3);
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode::<UsageRecord>(&[0xff, 0xff, 0xff]).is_err());
    }
}
