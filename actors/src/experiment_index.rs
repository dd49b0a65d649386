//! Each experiment's records beside the ledger, so that its report reads its own
//! requests and not every record since it started. Tree `experiment_records`: key = the
//! experiment's id ++ 0 ++ time (ms, u64 BE) ++ the request id, value = the record
//! (bincode). Written by [`Store::roll_up`] (the group commit, and the catch-up after a
//! crash, so it follows the usage totals' watermark); a ledger from before the index is
//! indexed once at start ([`Store::build_experiment_index`]). Keys are the records' own,
//! so indexing a record twice changes nothing.

use crate::store::{decode, encode, Store, StoreError};
use crate::types::UsageRecord;

/// Set once the ledger from before the index has been indexed (never an experiment id).
const BUILT: &[u8] = b"\xffbuilt";

fn key(experiment: &str, r: &UsageRecord) -> Vec<u8> {
    let mut k = Vec::with_capacity(experiment.len() + 9 + r.request_id.len());
    k.extend_from_slice(experiment.as_bytes());
    k.push(0);
    k.extend_from_slice(&r.ts_ms.to_be_bytes());
    k.extend_from_slice(r.request_id.as_bytes());
    k
}

impl Store {
    /// Adds the records that took part in an experiment (`EXPERIMENT/VARIANT`).
    pub(crate) fn index_experiments(&self, records: &[&UsageRecord]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut any = false;
        for r in records {
            if let Some((experiment, _)) = r.experiment.as_deref().and_then(|x| x.split_once('/')) {
                batch.insert(key(experiment, r), encode(r)?);
                any = true;
            }
        }
        if any {
            self.experiment_records.apply_batch(batch)?;
        }
        Ok(())
    }

    /// Indexes a ledger written before the index, once: how many segments were read.
    pub fn build_experiment_index(&self) -> Result<usize, StoreError> {
        if self.experiment_records.contains_key(BUILT)? {
            return Ok(0);
        }
        let mut n = 0;
        for item in self.ledger.iter() {
            let (_, v) = item?;
            let records = Self::records_of(&v)?;
            self.index_experiments(&records.iter().collect::<Vec<_>>())?;
            n += 1;
        }
        self.experiment_records.insert(BUILT, &[])?;
        Ok(n)
    }

    /// Every record of `experiment` since `since_ms`, oldest first.
    pub fn visit_experiment(
        &self,
        experiment: &str,
        since_ms: u64,
        mut f: impl FnMut(UsageRecord),
    ) -> Result<(), StoreError> {
        let mut from = experiment.as_bytes().to_vec();
        from.push(0);
        let mut to = from.clone();
        from.extend_from_slice(&since_ms.to_be_bytes());
        *to.last_mut().unwrap_or(&mut 0) = 1;
        for item in self.experiment_records.range(from..to) {
            let (_, v) = item?;
            f(decode(&v)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Endpoint;

    fn record(id: &str, ts_ms: u64, experiment: Option<&str>) -> UsageRecord {
        UsageRecord {
            experiment: experiment.map(str::to_string),
            status: 200,
            ..UsageRecord::new(id, ts_ms, "k", Endpoint::Chat, "chat", false)
        }
    }

    #[test]
    fn an_experiment_reads_its_own_records_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut seq = 0;
        let records = [
            record("a", 1_000, Some("tone/control")),
            record("b", 2_000, None),
            record("c", 3_000, Some("tone/v2")),
            record("d", 4_000, Some("tone-b/x")),
            record("e", 5_000, Some("tone/v2")),
        ];
        store.append_usage(&records, &mut seq).unwrap();
        let ids = |since: u64| {
            let mut out = Vec::new();
            store.visit_experiment("tone", since, |r| out.push(r.request_id)).unwrap();
            out
        };
        assert_eq!(ids(0), ["a", "c", "e"], "not another experiment's whose id starts alike");
        assert_eq!(ids(2_500), ["c", "e"]);
        // a ledger from before the index: built once, and nothing counted twice
        store.experiment_records.clear().unwrap();
        assert!(ids(0).is_empty());
        assert_eq!(store.build_experiment_index().unwrap(), 1);
        assert_eq!(store.build_experiment_index().unwrap(), 0);
        assert_eq!(ids(0), ["a", "c", "e"]);
        store.index_experiments(&records.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(ids(0), ["a", "c", "e"]);
    }
}
