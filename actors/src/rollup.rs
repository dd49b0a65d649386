//! Usage totals beside the ledger, by day and by hour, so that a usage report reads one
//! row per day (and per hour of its first, partial day), key, alias and provider instead
//! of every record since `since`.
//!
//! Tree `usage_hourly`: key = grain (`d` a day, `h` an hour) ++ that unit (u32 BE, since
//! the epoch, of the record's `ts_ms`) ++ key id ++ 0 ++ alias ++ 0 ++ provider (`cache`
//! for a hit), value = the bincode of [`Counters`]. The group commit that appends a ledger segment adds the
//! segment's records in one batch that also moves the watermark (the last segment
//! added). The ledger stays the source of truth: sled's log is one for every tree, so
//! the totals are never ahead of the ledger, and a crash between the two writes leaves
//! segments past the watermark, which [`Store::catch_up_rollup`] adds at start and a
//! report reads from the ledger meanwhile.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{decode, encode, Store, StoreError};
use crate::types::UsageRecord;

/// The watermark's key (a grain of its own).
const WATERMARK: &[u8] = b"watermark";
const HOUR_MS: u64 = 3_600_000;
const DAY: u8 = b'd';
const HOUR: u8 = b'h';

/// What a report adds up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub requests: u64,
    pub errors: u64,
    pub cache_hits: u64,
    pub semantic_hits: u64,
    pub upstream_calls: u64,
    pub guardrail_actions: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
    pub saved_usd: f64,
}

impl Counters {
    pub fn add(&mut self, r: &UsageRecord) {
        self.requests += 1;
        self.errors += u64::from(r.status >= 400);
        self.cache_hits += u64::from(r.cache_hit);
        self.semantic_hits += u64::from(r.semantic_similarity.is_some());
        self.upstream_calls += u64::from(r.upstream_attempts);
        self.guardrail_actions += r.guardrails.len() as u64;
        self.input_tokens += r.input_tokens;
        self.output_tokens += r.output_tokens;
        self.cached_tokens += r.cached_tokens;
        self.cache_write_tokens += r.cache_write_tokens;
        self.reasoning_tokens += r.reasoning_tokens;
        self.cost_usd += r.cost_usd;
        self.saved_usd += r.saved_usd;
    }

    pub fn merge(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.cache_hits += o.cache_hits;
        self.semantic_hits += o.semantic_hits;
        self.upstream_calls += o.upstream_calls;
        self.guardrail_actions += o.guardrail_actions;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cached_tokens += o.cached_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.cost_usd += o.cost_usd;
        self.saved_usd += o.saved_usd;
    }
}

/// One hour's or day's totals of one key, alias and provider.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    /// Hours since the epoch (a day's row: its first hour).
    pub hour: u32,
    pub key_id: String,
    pub alias: String,
    /// `cache` for cache hits.
    pub provider: String,
    pub counters: Counters,
}

fn provider_of(r: &UsageRecord) -> &str {
    if r.cache_hit {
        "cache"
    } else {
        &r.provider
    }
}

fn bucket(grain: u8, unit: u32, key_id: &str, alias: &str, provider: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + key_id.len() + alias.len() + provider.len() + 2);
    k.push(grain);
    k.extend_from_slice(&unit.to_be_bytes());
    k.extend_from_slice(key_id.as_bytes());
    k.push(0);
    k.extend_from_slice(alias.as_bytes());
    k.push(0);
    k.extend_from_slice(provider.as_bytes());
    k
}

/// A bucket key's first hour, key id, alias and provider.
fn parse(key: &[u8]) -> Option<(u32, String, String, String)> {
    let unit = u32::from_be_bytes(key.get(1..5)?.try_into().ok()?);
    let hour = match *key.first()? {
        DAY => unit.saturating_mul(24),
        HOUR => unit,
        _ => return None,
    };
    let mut parts = key.get(5..)?.splitn(3, |b| *b == 0);
    let mut next = || parts.next().map(|p| String::from_utf8_lossy(p).into_owned());
    Some((hour, next()?, next()?, next()?))
}

fn hour_of(ts_ms: u64) -> u32 {
    u32::try_from(ts_ms / HOUR_MS).unwrap_or(u32::MAX)
}

fn day_of(ts_ms: u64) -> u32 {
    hour_of(ts_ms) / 24
}

/// The buckets a record adds to: its day's and its hour's.
fn buckets_of(r: &UsageRecord) -> [Vec<u8>; 2] {
    let p = provider_of(r);
    [bucket(DAY, day_of(r.ts_ms), &r.key_id, &r.alias, p), bucket(HOUR, hour_of(r.ts_ms), &r.key_id, &r.alias, p)]
}

/// The first hour of the day after `day`.
fn days_from_hours(day: u32) -> u32 {
    day.saturating_add(1).saturating_mul(24)
}

impl Store {
    /// Adds a committed segment's records to the hourly totals and moves the watermark
    /// to `segment_key`, in one batch. (The accounting actor is the ledger's one writer,
    /// so nothing else changes these rows meanwhile.)
    pub fn roll_up(&self, records: &[&UsageRecord], segment_key: &[u8]) -> Result<(), StoreError> {
        let mut deltas: BTreeMap<Vec<u8>, Counters> = BTreeMap::new();
        for r in records {
            for b in buckets_of(r) {
                deltas.entry(b).or_default().add(r);
            }
        }
        let mut batch = sled::Batch::default();
        for (k, delta) in deltas {
            let mut total: Counters = match self.usage_hourly.get(&k)? {
                Some(v) => decode(&v).unwrap_or_default(),
                None => Counters::default(),
            };
            total.merge(&delta);
            batch.insert(k, encode(&total)?);
        }
        batch.insert(WATERMARK, segment_key);
        self.usage_hourly.apply_batch(batch)?;
        self.index_experiments(records)
    }

    /// The last ledger segment the totals hold.
    fn watermark(&self) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.usage_hourly.get(WATERMARK)?)
    }

    /// Adds the segments past the watermark (after a crash between a segment and its
    /// totals, or a ledger written before the totals existed): how many.
    pub fn catch_up_rollup(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        let from = self.watermark()?;
        let segments = match &from {
            Some(w) => {
                self.ledger.range::<&[u8], _>((std::ops::Bound::Excluded(w.as_ref()), std::ops::Bound::Unbounded))
            }
            None => self.ledger.iter(),
        };
        for item in segments {
            let (k, v) = item?;
            let records = Self::records_of(&v)?;
            self.roll_up(&records.iter().collect::<Vec<_>>(), &k)?;
            n += 1;
        }
        Ok(n)
    }

    /// The totals of records since `since_ms` (from the start of its hour): the day rows
    /// of the days after its own, the hour rows of its day from its hour on, both up to
    /// the watermark; and the records of the segments past it read from the ledger.
    pub fn usage_rollup(&self, since_ms: u64) -> Result<Vec<RollupRow>, StoreError> {
        self.rollup_rows(since_ms, false)
    }

    /// [`Store::usage_rollup`] an hour at a time: the hour rows from `since_ms`'s hour on
    /// (for a chart over time).
    pub fn usage_rollup_hourly(&self, since_ms: u64) -> Result<Vec<RollupRow>, StoreError> {
        self.rollup_rows(since_ms, true)
    }

    fn rollup_rows(&self, since_ms: u64, hourly: bool) -> Result<Vec<RollupRow>, StoreError> {
        let watermark = self.watermark()?;
        let mut rows: BTreeMap<Vec<u8>, Counters> = BTreeMap::new();
        let first_day = day_of(since_ms);
        let at = |grain: u8, unit: u32| {
            let mut k = vec![grain];
            k.extend_from_slice(&unit.to_be_bytes());
            k
        };
        // a day that starts at `since` is read whole
        let (days_from, hours) = if hourly {
            (u32::MAX, Some(at(HOUR, hour_of(since_ms))..at(HOUR + 1, 0)))
        } else if since_ms % (24 * HOUR_MS) == 0 {
            (first_day, None)
        } else {
            (first_day.saturating_add(1), Some(at(HOUR, hour_of(since_ms))..at(HOUR, days_from_hours(first_day))))
        };
        let days = (days_from < u32::MAX).then(|| at(DAY, days_from)..at(DAY + 1, 0));
        let ranges = days.into_iter().chain(hours);
        for range in ranges {
            for item in self.usage_hourly.range(range) {
                let (k, v) = item?;
                rows.insert(k.to_vec(), decode(&v)?);
            }
        }
        let tail = match &watermark {
            Some(w) => {
                self.ledger.range::<&[u8], _>((std::ops::Bound::Excluded(w.as_ref()), std::ops::Bound::Unbounded))
            }
            None => self.ledger.iter(),
        };
        for item in tail {
            let (_, v) = item?;
            for r in Self::records_of(&v)?.iter().filter(|r| r.ts_ms >= since_ms) {
                rows.entry(bucket(HOUR, hour_of(r.ts_ms), &r.key_id, &r.alias, provider_of(r))).or_default().add(r);
            }
        }
        Ok(rows
            .into_iter()
            .filter_map(|(k, counters)| {
                let (hour, key_id, alias, provider) = parse(&k)?;
                Some(RollupRow { hour, key_id, alias, provider, counters })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Endpoint;

    fn record(id: &str, ts_ms: u64, key: &str, cost: f64) -> UsageRecord {
        UsageRecord {
            provider: "p".into(),
            input_tokens: 10,
            output_tokens: 5,
            cost_usd: cost,
            status: 200,
            upstream_attempts: 1,
            ..UsageRecord::new(id, ts_ms, key, Endpoint::Chat, "chat", false)
        }
    }

    fn totals(rows: &[RollupRow]) -> BTreeMap<String, u64> {
        let mut t = BTreeMap::new();
        for r in rows {
            *t.entry(r.key_id.clone()).or_default() += r.counters.requests;
        }
        t
    }

    #[test]
    fn commits_roll_up_and_reports_match_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut seq = 0;
        let base = 1_800_000_000_000;
        store.append_usage(&[record("a", base, "k1", 0.5), record("b", base + 10, "k2", 0.25)], &mut seq).unwrap();
        store.append_usage(&[record("c", base + 2 * HOUR_MS, "k1", 1.0)], &mut seq).unwrap();
        let rows = store.usage_rollup(0).unwrap();
        assert_eq!(totals(&rows), BTreeMap::from([("k1".into(), 2), ("k2".into(), 1)]));
        let k1_cost: f64 = rows.iter().filter(|r| r.key_id == "k1").map(|r| r.counters.cost_usd).sum();
        assert_eq!(k1_cost, 1.5);
        // since: from the start of that record's hour
        assert_eq!(totals(&store.usage_rollup(base + HOUR_MS).unwrap()), BTreeMap::from([("k1".into(), 1)]));
        // nothing is counted twice by the catch-up
        assert_eq!(store.catch_up_rollup().unwrap(), 0);
        assert_eq!(totals(&store.usage_rollup(0).unwrap()).values().sum::<u64>(), 3);
    }

    #[test]
    fn segments_past_the_watermark_are_read_then_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut seq = 0;
        store.append_usage(&[record("a", 1_000, "k1", 0.0)], &mut seq).unwrap();
        // a ledger written before the totals (or a crash before them): no watermark
        store.usage_hourly.clear().unwrap();
        store.append_usage(&[record("b", 2_000, "k1", 0.0)], &mut seq).unwrap();
        store.usage_hourly.clear().unwrap();
        assert_eq!(totals(&store.usage_rollup(0).unwrap()), BTreeMap::from([("k1".into(), 2)]), "read from the ledger");
        assert_eq!(store.catch_up_rollup().unwrap(), 2);
        assert_eq!(totals(&store.usage_rollup(0).unwrap()), BTreeMap::from([("k1".into(), 2)]));
        assert_eq!(store.catch_up_rollup().unwrap(), 0);
    }

    #[test]
    fn days_and_the_hours_of_the_first_day_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut seq = 0;
        let day = 24 * HOUR_MS;
        let d = 20_000 * day;
        let at = [d + HOUR_MS, d + 5 * HOUR_MS, d + day + 2 * HOUR_MS, d + 3 * day];
        for (i, ts) in at.iter().enumerate() {
            store.append_usage(&[record(&format!("r{i}"), *ts, "k", 0.0)], &mut seq).unwrap();
        }
        let count = |since: u64| store.usage_rollup(since).unwrap().iter().map(|r| r.counters.requests).sum::<u64>();
        let hourly =
            |since: u64| store.usage_rollup_hourly(since).unwrap().iter().map(|r| r.counters.requests).sum::<u64>();
        assert_eq!(count(0), 4);
        assert_eq!(count(d), 4, "a whole first day");
        assert_eq!(count(d + 3 * HOUR_MS), 3, "from the first day's fourth hour");
        assert_eq!(count(d + day), 2);
        assert_eq!(count(d + day + 3 * HOUR_MS), 1);
        assert_eq!(count(d + 4 * day), 0);
        // an hour at a time: one row per hour that had requests, from since's hour on
        assert_eq!(hourly(0), 4);
        assert_eq!(hourly(d + 3 * HOUR_MS), 3);
        assert_eq!(hourly(d + day + 2 * HOUR_MS), 2);
        let hours: Vec<u32> = store.usage_rollup_hourly(d).unwrap().iter().map(|r| r.hour).collect();
        assert_eq!(hours, at.iter().map(|ts| hour_of(*ts)).collect::<Vec<_>>());
    }

    #[test]
    fn keys_with_separators_parse_back() {
        let k = bucket(HOUR, 7, "jwt:alice@research", "chat", "cache");
        assert_eq!(parse(&k), Some((7, "jwt:alice@research".into(), "chat".into(), "cache".into())));
        assert_eq!(parse(&bucket(DAY, 2, "k", "a", "p")).map(|p| p.0), Some(48));
    }
}
