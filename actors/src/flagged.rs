//! Recent requests a guardrail acted on (flagged, redacted, pseudonymized or blocked),
//! for the console's guardrail page: who sent them, to which alias, what each guardrail
//! did and its scores. Never the text: a value a guardrail found is not kept here (the
//! request log, when it is on, holds the request as redacted). Tree `flagged`: key =
//! time (ms, u64 BE) ++ a sequence (u32 BE), value = the entry's JSON. Kept for
//! [`MAX_ENTRIES`] entries (the oldest go first).

use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};
use crate::types::UsageRecord;

/// Entries kept.
pub const MAX_ENTRIES: usize = 10_000;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One request a guardrail acted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flagged {
    pub ts_ms: u64,
    pub request_id: String,
    pub key_id: String,
    pub alias: String,
    /// The status the client got (400 for a blocked request).
    pub status: u16,
    /// Whether a guardrail refused it (nothing reached a provider).
    pub blocked: bool,
    /// What each guardrail did: `guardrail:ENTITY:action`, a flag with its scores
    /// (`guardrail:INJECTION:flag:0.83`), as in the usage record.
    pub actions: Vec<String>,
    /// A block's message (names the guardrail and the category, never a value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Flagged {
    /// The entry of a ledger record, when a guardrail acted on it.
    pub fn of_record(r: &UsageRecord) -> Option<Flagged> {
        (!r.guardrails.is_empty()).then(|| Flagged {
            ts_ms: r.ts_ms,
            request_id: r.request_id.clone(),
            key_id: r.key_id.clone(),
            alias: r.alias.clone(),
            status: r.status,
            blocked: false,
            actions: r.guardrails.clone(),
            message: None,
        })
    }
}

fn key_of(ts_ms: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&ts_ms.to_be_bytes());
    key[8..].copy_from_slice(&SEQ.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    key
}

impl Store {
    /// Adds entries (flushed with the next write), trimming the oldest past
    /// [`MAX_ENTRIES`] now and then (counting is a scan).
    pub fn add_flagged<'a>(&self, entries: impl IntoIterator<Item = &'a Flagged>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut trim = false;
        for e in entries {
            let key = key_of(e.ts_ms);
            trim |= u32::from_be_bytes([key[8], key[9], key[10], key[11]]) % 1024 == 1023;
            if let Ok(v) = serde_json::to_vec(e) {
                batch.insert(&key[..], v);
            }
        }
        self.flagged.apply_batch(batch)?;
        if trim {
            while self.flagged.len() > MAX_ENTRIES {
                if self.flagged.pop_min()?.is_none() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The newest `limit` entries older than `before_ms` (all when `None`) that `keep`
    /// accepts, newest first.
    pub fn flagged_page(
        &self,
        before_ms: Option<u64>,
        limit: usize,
        keep: impl Fn(&Flagged) -> bool,
    ) -> Result<Vec<Flagged>, StoreError> {
        let end = before_ms.unwrap_or(u64::MAX).to_be_bytes().to_vec();
        let mut out = Vec::new();
        for item in self.flagged.range(..end).rev() {
            let (_, v) = item?;
            if let Ok(e) = serde_json::from_slice::<Flagged>(&v) {
                if keep(&e) {
                    out.push(e);
                    if out.len() == limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Endpoint;

    #[test]
    fn acted_on_records_come_back_newest_first_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut seq = 0;
        let mut records = Vec::new();
        for i in 0..6u64 {
            let mut r =
                UsageRecord::new(&format!("r{i}"), 1_000 + i, &format!("k{}", i % 2), Endpoint::Chat, "chat", false);
            r.status = 200;
            if i != 2 {
                r.guardrails = vec![format!("watch:INJECTION:flag:0.{i}1")];
            }
            records.push(r);
        }
        store.append_usage(&records, &mut seq).unwrap();
        let page = store.flagged_page(None, 3, |_| true).unwrap();
        let ids: Vec<_> = page.iter().map(|e| e.request_id.as_str()).collect();
        assert_eq!(ids, ["r5", "r4", "r3"], "newest first, the unflagged r2 absent");
        let older = store.flagged_page(Some(page[2].ts_ms), 10, |_| true).unwrap();
        assert_eq!(older.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ["r1", "r0"]);
        let k0 = store.flagged_page(None, 10, |e| e.key_id == "k0").unwrap();
        assert_eq!(k0.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ["r4", "r0"]);
        assert_eq!(k0[0].actions, ["watch:INJECTION:flag:0.41"]);
        // a record delivered again (same idempotency key) is not listed twice: only new
        // ledger records are added
    }

    #[test]
    fn the_oldest_go_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let e = |i: u64| Flagged {
            ts_ms: i,
            request_id: format!("r{i}"),
            key_id: "k".into(),
            alias: "chat".into(),
            status: 400,
            blocked: true,
            actions: vec!["g:request:block".into()],
            message: None,
        };
        let entries: Vec<Flagged> = (0..(MAX_ENTRIES as u64 + 2048)).map(e).collect();
        store.add_flagged(&entries).unwrap();
        assert!(store.flagged.len() <= MAX_ENTRIES + 1024, "trimmed: {}", store.flagged.len());
        let newest = store.flagged_page(None, 1, |_| true).unwrap();
        assert_eq!(newest[0].request_id, format!("r{}", MAX_ENTRIES + 2047));
    }
}
