//! Recent requests a guardrail acted on (flagged, redacted, pseudonymized or blocked),
//! for the console's guardrail page: who sent them, to which alias, what each guardrail
//! did and its scores. Never the text: a value a guardrail found is not kept here (the
//! request log, when it is on, holds the request as redacted). Tree `flagged`: key =
//! time ++ a sequence, value = the entry's JSON (`timelog.rs`). Kept for
//! [`MAX_ENTRIES`] entries (the oldest go first).

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};
use crate::timelog;
use crate::types::UsageRecord;

/// Entries kept.
pub const MAX_ENTRIES: usize = 10_000;

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

impl Store {
    /// Adds entries (flushed with the next write), the oldest going past [`MAX_ENTRIES`].
    pub fn add_flagged<'a>(&self, entries: impl IntoIterator<Item = &'a Flagged>) -> Result<(), StoreError> {
        timelog::append(&self.flagged, entries.into_iter().map(|e| (e.ts_ms, e)), MAX_ENTRIES)
    }

    /// The newest `limit` entries older than `before_ms` (all when `None`) that `keep`
    /// accepts, newest first (a page never splits a millisecond: [`timelog::page`]).
    pub fn flagged_page(
        &self,
        before_ms: Option<u64>,
        limit: usize,
        keep: impl Fn(&Flagged) -> bool,
    ) -> Result<Vec<Flagged>, StoreError> {
        timelog::page(&self.flagged, before_ms, limit, keep)
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
    fn a_page_never_splits_a_millisecond() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let e = |id: &str, ts_ms: u64| Flagged {
            ts_ms,
            request_id: id.into(),
            key_id: "k".into(),
            alias: "chat".into(),
            status: 400,
            blocked: true,
            actions: vec!["g:block".into()],
            message: None,
        };
        let entries = [e("a", 5), e("b", 7), e("c", 7), e("d", 7), e("e", 9)];
        store.add_flagged(&entries).unwrap();
        let first = store.flagged_page(None, 2, |_| true).unwrap();
        assert_eq!(first.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ["e", "d", "c", "b"]);
        let next = store.flagged_page(Some(7), 2, |_| true).unwrap();
        assert_eq!(next.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ["a"]);
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
