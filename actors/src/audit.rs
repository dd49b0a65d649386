//! The admin audit trail: every change made through the admin API (keys, the cache, a
//! reload) and every console sign-in, with who made it and when. Tree `audit`: key =
//! time ++ a sequence, value = the entry's JSON (`timelog.rs`). Kept for
//! [`MAX_ENTRIES`] entries (the oldest go first).

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};
use crate::timelog;
use crate::types::unix_ms;

/// Entries kept.
pub const MAX_ENTRIES: usize = 100_000;

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
        if let Err(e) = timelog::append(&self.audit, [(entry.ts_ms, &entry)], MAX_ENTRIES) {
            tracing::warn!(error = %e, "the audit trail could not be written");
        }
    }

    /// The newest `limit` entries older than `before_ms` (all when `None`), newest first
    /// (a page never splits a millisecond: [`timelog::page`]).
    pub fn audit_page(&self, before_ms: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        timelog::page(&self.audit, before_ms, limit, |_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_newest_first_a_page_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.audit("admin", "keys.create", Some("now"), serde_json::json!({}));
        assert_eq!(store.audit_page(None, 1).unwrap()[0].target.as_deref(), Some("now"));
        // entries a millisecond apart, then a page of three and the one after it
        store.audit.clear().unwrap();
        let entries: Vec<AuditEntry> = (0..5)
            .map(|i| AuditEntry {
                ts_ms: 1_000 + i,
                who: "admin".into(),
                action: "keys.create".into(),
                target: Some(format!("k{i}")),
                detail: serde_json::json!({}),
            })
            .collect();
        timelog::append(&store.audit, entries.iter().map(|e| (e.ts_ms, e)), MAX_ENTRIES).unwrap();
        let page = store.audit_page(None, 3).unwrap();
        let targets: Vec<_> = page.iter().map(|e| e.target.clone().unwrap()).collect();
        assert_eq!(targets, ["k4", "k3", "k2"]);
        let older = store.audit_page(Some(page[2].ts_ms), 10).unwrap();
        assert!(older.iter().all(|e| e.ts_ms < page[2].ts_ms));
        assert_eq!(older.len(), 2);
    }
}
