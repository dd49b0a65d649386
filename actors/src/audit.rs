//! The admin audit trail: every change made through the admin API (keys, the cache, a
//! reload) and every console sign-in, with who made it and when. Tree `audit`: key =
//! time (ms, u64 BE) ++ a sequence (u32 BE), value = the entry's JSON. Kept for
//! [`MAX_ENTRIES`] entries (the oldest go first).

use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};
use crate::types::unix_ms;

/// Entries kept.
pub const MAX_ENTRIES: usize = 100_000;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub ts_ms: u64,
    /// Who: `admin` (the admin key), `console:…` (a console session), or the
    /// `x-switchyard-actor` header's value.
    pub who: String,
    /// What: `keys.create`, `keys.update`, `keys.revoke`, `cache.clear`, `config.reload`,
    /// `console.sign_in`, `prompts.create`, `prompts.add_version`, `prompts.set_label`,
    /// `prompts.remove_label`, `prompts.rollback`, `experiments.create`,
    /// `experiments.start|pause|stop`, `experiments.promote`.
    pub action: String,
    /// What it was done to (a key id, an alias), when there is one.
    pub target: Option<String>,
    /// The change's details (a key update's fields; never a secret).
    pub detail: serde_json::Value,
}

impl Store {
    /// Appends an entry (flushed with the next write; a change it records is flushed
    /// with it).
    pub fn audit(&self, who: &str, action: &str, target: Option<&str>, detail: serde_json::Value) {
        let entry = AuditEntry {
            ts_ms: unix_ms(),
            who: who.to_string(),
            action: action.to_string(),
            target: target.map(str::to_string),
            detail,
        };
        let mut key = [0u8; 12];
        key[..8].copy_from_slice(&entry.ts_ms.to_be_bytes());
        key[8..].copy_from_slice(&SEQ.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let Ok(value) = serde_json::to_vec(&entry) else { return };
        if let Err(e) = self.audit.insert(key, value) {
            tracing::warn!(error = %e, "the audit trail could not be written");
        }
        // counting is a scan: the trail is trimmed every 1,024 entries
        if SEQ.load(Ordering::Relaxed) % 1024 == 0 {
            while self.audit.len() > MAX_ENTRIES {
                if self.audit.pop_min().ok().flatten().is_none() {
                    break;
                }
            }
        }
    }

    /// The newest `limit` entries older than `before_ms` (all when `None`), newest first.
    pub fn audit_page(&self, before_ms: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let end = before_ms.unwrap_or(u64::MAX).to_be_bytes().to_vec();
        let mut out = Vec::new();
        for item in self.audit.range(..end).rev().take(limit) {
            let (_, v) = item?;
            if let Ok(e) = serde_json::from_slice(&v) {
                out.push(e);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_newest_first_a_page_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..5 {
            store.audit("admin", "keys.create", Some(&format!("k{i}")), serde_json::json!({}));
        }
        let page = store.audit_page(None, 3).unwrap();
        let targets: Vec<_> = page.iter().map(|e| e.target.clone().unwrap()).collect();
        assert_eq!(targets, ["k4", "k3", "k2"]);
        let older = store.audit_page(Some(page[2].ts_ms), 10).unwrap();
        assert!(older.iter().all(|e| e.ts_ms < page[2].ts_ms));
    }
}
