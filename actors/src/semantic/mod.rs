//! The semantic cache's store: answers kept with the embedding of the prompt they
//! answered, found again by meaning.
//!
//! Entries live in sled (tree `semantic`: id -> vector, prompt text, answer, partition,
//! expiry), so a restart keeps them; the approximate-nearest-neighbour index (usearch's
//! HNSW, vectors quantized to i8) is rebuilt from sled at start, in the background. A
//! lookup only ever sees entries of its own partition: the hash of everything that must
//! match exactly (alias, scope, system prompt, earlier turns, tools, sampling
//! parameters). Small partitions are scanned exactly; large ones go through the index
//! with the partition as a filter. Candidates at or above the threshold are checked again
//! on their stored full-precision vectors and by [`agree`] before one answers.

pub mod agree;
mod asks;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actors::messages::CachedResponse;
use crate::store::{decode, encode};
use crate::types::unix_ms;

/// SHA-256 of what must match exactly for a hit.
pub type Partition = [u8; 32];

/// Partitions up to this size are scanned exactly rather than searched.
const SCAN_MAX: usize = 512;

/// How far below the threshold a candidate's quantized similarity may be and still be
/// read and compared on its full vector.
const APPROXIMATION_MARGIN: f32 = 0.03;

/// Entries read from sled per bulk index build at start.
const LOAD_CHUNK: usize = 8192;

/// One entry as stored in sled.
#[derive(Serialize, Deserialize)]
struct Stored {
    partition: Partition,
    alias: String,
    scope: String,
    expires_ms: u64,
    /// The prompt text that was embedded.
    text: String,
    /// Unit length.
    vector: Vec<f32>,
    response: CachedResponse,
}

/// What the index keeps in memory per entry.
struct Meta {
    partition: Partition,
    expires_ms: u64,
    alias: Arc<str>,
    scope: Box<str>,
}

struct Inner {
    /// Made at the first vector, with its dimensions.
    index: Option<usearch::Index>,
    dims: usize,
    /// By id: the oldest first.
    meta: BTreeMap<u64, Meta>,
    partitions: HashMap<Partition, Vec<u64>>,
}

/// A stored answer that answers this request.
#[derive(Debug)]
pub struct Hit {
    pub response: CachedResponse,
    pub similarity: f32,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Hit),
    /// `best`: the highest similarity among the candidates, when there were any;
    /// `rejected`: what a candidate at or above the threshold disagreed on.
    Miss {
        best: Option<f32>,
        rejected: Option<agree::Disagreement>,
    },
}

/// What a lookup compares with.
pub struct Query<'a> {
    pub partition: &'a Partition,
    /// Unit length (see [`normalize`]).
    pub vector: &'a [f32],
    pub text: &'a str,
    pub threshold: f32,
    pub candidates: usize,
    pub guards: bool,
}

/// What is stored with an answer.
pub struct NewEntry {
    pub partition: Partition,
    pub alias: String,
    pub scope: String,
    pub text: String,
    pub vector: Vec<f32>,
    pub response: CachedResponse,
    pub ttl: Duration,
}

pub struct SemanticIndex {
    tree: sled::Tree,
    inner: RwLock<Inner>,
    max_entries: AtomicUsize,
    next_id: AtomicU64,
}

/// Scales `v` to unit length (cosine similarity is then a dot product); `false` for a
/// vector that cannot be (empty, zero or not finite).
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn new_index(dims: usize, capacity: usize) -> Option<usearch::Index> {
    let options = usearch::IndexOptions {
        dimensions: dims,
        metric: usearch::MetricKind::Cos,
        quantization: usearch::ScalarKind::I8,
        connectivity: 16,
        expansion_add: 64,
        expansion_search: 64,
        multi: false,
    };
    let index = usearch::Index::new(&options).ok()?;
    index.reserve(capacity.max(64)).ok()?;
    Some(index)
}

impl SemanticIndex {
    /// Opens the cache on its sled tree; the index is rebuilt from the stored entries on
    /// a thread of its own (lookups meanwhile see the entries loaded so far).
    pub fn open(tree: sled::Tree, max_entries: usize) -> Arc<SemanticIndex> {
        let next = tree.last().ok().flatten().and_then(|(k, _)| k.as_ref().try_into().ok()).map(u64::from_be_bytes);
        let cache = Arc::new(SemanticIndex {
            tree,
            inner: RwLock::new(Inner { index: None, dims: 0, meta: BTreeMap::new(), partitions: HashMap::new() }),
            max_entries: AtomicUsize::new(max_entries),
            next_id: AtomicU64::new(next.map_or(0, |n| n + 1)),
        });
        if next.is_some() {
            let loader = cache.clone();
            let spawned = std::thread::Builder::new().name("semantic-load".into()).spawn(move || loader.load());
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "semantic cache: cannot start loading; it starts empty");
            }
        }
        cache
    }

    /// Rebuilds the index from sled in chunks, on every core (expired and unreadable
    /// entries are dropped).
    pub fn load(&self) {
        let now = unix_ms();
        let mut loaded = 0usize;
        let mut chunk = Vec::with_capacity(LOAD_CHUNK);
        for item in self.tree.iter() {
            let Ok((k, v)) = item else { continue };
            let id = k.as_ref().try_into().map(u64::from_be_bytes).ok();
            match (id, decode::<Stored>(&v)) {
                (Some(id), Ok(s)) if s.expires_ms > now => chunk.push((id, s)),
                _ => {
                    let _ = self.tree.remove(k);
                }
            }
            if chunk.len() == LOAD_CHUNK {
                loaded += self.index_many(&std::mem::take(&mut chunk));
            }
        }
        loaded += self.index_many(&chunk);
        self.evict();
        self.report();
        tracing::info!(entries = loaded, "semantic cache loaded");
    }

    /// Stores many answers at once: one sled batch, the index built on every core (the
    /// bulk path of a warm-up or a benchmark).
    pub fn insert_many(&self, entries: Vec<NewEntry>) {
        let now = unix_ms();
        let mut batch = sled::Batch::default();
        let mut items = Vec::with_capacity(entries.len());
        for e in entries {
            let mut vector = e.vector;
            if !normalize(&mut vector) {
                continue;
            }
            let stored = Stored {
                partition: e.partition,
                alias: e.alias,
                scope: e.scope,
                expires_ms: now + e.ttl.as_millis() as u64,
                text: e.text,
                vector,
                response: e.response,
            };
            let Ok(value) = encode(&stored) else { continue };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            batch.insert(&id.to_be_bytes(), value);
            items.push((id, stored));
        }
        if let Err(e) = self.tree.apply_batch(batch) {
            tracing::warn!(error = %e, "semantic cache write failed");
            return;
        }
        self.index_many(&items);
        self.evict();
        self.report();
    }

    /// Adds stored entries to the in-memory index, the vectors on every core: how many.
    fn index_many(&self, items: &[(u64, Stored)]) -> usize {
        let Some(first) = items.first() else { return 0 };
        let max_entries = self.max_entries.load(Ordering::Relaxed);
        let mut inner = self.write();
        if inner.index.is_none() {
            inner.index = new_index(first.1.vector.len(), max_entries.min(4096));
            inner.dims = first.1.vector.len();
        }
        let dims = inner.dims;
        let Some(index) = &inner.index else { return 0 };
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let wanted = index.size() + items.len();
        if wanted > index.capacity() && index.reserve_capacity_and_threads(wanted, threads).is_err() {
            return 0;
        }
        let added: Vec<bool> = std::thread::scope(|scope| {
            let per = items.len().div_ceil(threads);
            let workers: Vec<_> = items
                .chunks(per.max(1))
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(id, s)| s.vector.len() == dims && index.add(*id, &s.vector).is_ok())
                            .collect::<Vec<bool>>()
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
        });
        let mut n = 0;
        for ((id, s), ok) in items.iter().zip(added) {
            if ok {
                Self::remember(&mut inner, *id, s);
                n += 1;
            }
        }
        n
    }

    /// The in-memory facts of an entry the index holds.
    fn remember(inner: &mut Inner, id: u64, s: &Stored) {
        let alias: Arc<str> = match inner.meta.values().next_back().filter(|m| *m.alias == *s.alias) {
            Some(m) => m.alias.clone(),
            None => Arc::from(s.alias.as_str()),
        };
        let meta = Meta { partition: s.partition, expires_ms: s.expires_ms, alias, scope: s.scope.as_str().into() };
        inner.meta.insert(id, meta);
        inner.partitions.entry(s.partition).or_default().push(id);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a stored entry to the in-memory index; `false` when its vector does not fit.
    fn index_add(inner: &mut Inner, id: u64, s: &Stored, max_entries: usize) -> bool {
        if inner.index.is_none() {
            inner.index = new_index(s.vector.len(), max_entries.min(4096));
            inner.dims = s.vector.len();
        }
        if s.vector.len() != inner.dims {
            return false;
        }
        let Some(index) = &inner.index else { return false };
        if index.size() + 1 > index.capacity() {
            let grown = (index.capacity() * 2).min(max_entries + 64).max(index.capacity() + 64);
            if index.reserve(grown).is_err() {
                return false;
            }
        }
        if index.add(id, &s.vector).is_err() {
            return false;
        }
        Self::remember(inner, id, s);
        true
    }

    fn index_remove(inner: &mut Inner, id: u64) -> Option<Meta> {
        let meta = inner.meta.remove(&id)?;
        if let Some(index) = &inner.index {
            let _ = index.remove(id);
        }
        if let Some(ids) = inner.partitions.get_mut(&meta.partition) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                inner.partitions.remove(&meta.partition);
            }
        }
        Some(meta)
    }

    /// The best stored answer for `q`, if one is similar enough and agrees with it.
    pub fn lookup(&self, q: &Query<'_>) -> Lookup {
        let candidates = self.candidates(q);
        let mut best: Option<f32> = None;
        let mut rejected = None;
        let mut hit: Option<Hit> = None;
        let mine = q.guards.then(|| agree::salient(q.text));
        for (id, approximate) in candidates {
            // the index's i8 copy is within about 0.01 of the full vector's similarity: a
            // candidate far below the threshold is not read
            if approximate < q.threshold - APPROXIMATION_MARGIN {
                best = Some(best.map_or(approximate, |b| b.max(approximate)));
                continue;
            }
            let Ok(Some(raw)) = self.tree.get(id.to_be_bytes()) else { continue };
            let Ok(stored) = decode::<Stored>(&raw) else { continue };
            if stored.partition != *q.partition || stored.vector.len() != q.vector.len() {
                continue;
            }
            let similarity = dot(q.vector, &stored.vector);
            best = Some(best.map_or(similarity, |b| b.max(similarity)));
            if similarity < q.threshold || hit.as_ref().is_some_and(|h| h.similarity >= similarity) {
                continue;
            }
            if let Some(mine) = &mine {
                if let Err(why) = agree::agree(mine, &agree::salient(&stored.text)) {
                    rejected = Some(why);
                    continue;
                }
            }
            hit = Some(Hit { response: stored.response, similarity });
        }
        match hit {
            Some(h) => Lookup::Hit(h),
            None => Lookup::Miss { best, rejected },
        }
    }

    /// The ids nearest `q` in its partition (live entries only), nearest first, with
    /// their similarity on the index's quantized copies.
    fn candidates(&self, q: &Query<'_>) -> Vec<(u64, f32)> {
        let inner = self.read();
        let (Some(index), Some(ids)) = (&inner.index, inner.partitions.get(q.partition)) else {
            return Vec::new();
        };
        if q.vector.len() != inner.dims {
            return Vec::new();
        }
        let now = unix_ms();
        let live = |id: u64| inner.meta.get(&id).is_some_and(|m| m.partition == *q.partition && m.expires_ms > now);
        if ids.len() <= SCAN_MAX {
            // exact: every entry of the partition, on the index's own (quantized) copy
            let mut buf = vec![0f32; inner.dims];
            let mut scored: Vec<(f32, u64)> = ids
                .iter()
                .filter(|id| live(**id))
                .filter_map(|id| index.get(*id, &mut buf).ok().filter(|n| *n > 0).map(|_| (dot(q.vector, &buf), *id)))
                .collect();
            scored.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
            return scored.into_iter().take(q.candidates).map(|(s, id)| (id, s)).collect();
        }
        match index.filtered_search(q.vector, q.candidates, live) {
            // cosine distance: 1 - similarity
            Ok(m) => m.keys.into_iter().zip(m.distances).map(|(id, d)| (id, 1.0 - d)).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Stores an answer (oldest entries are evicted above the cap).
    pub fn insert(&self, e: NewEntry) {
        let mut vector = e.vector;
        if !normalize(&mut vector) {
            return;
        }
        let stored = Stored {
            partition: e.partition,
            alias: e.alias,
            scope: e.scope,
            expires_ms: unix_ms() + e.ttl.as_millis() as u64,
            text: e.text,
            vector,
            response: e.response,
        };
        let Ok(value) = encode(&stored) else { return };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut inner = self.write();
            if inner.index.is_some() && inner.dims != stored.vector.len() {
                tracing::warn!(
                    dims = stored.vector.len(),
                    expected = inner.dims,
                    "semantic cache: an embedding of other dimensions is not stored (clear the cache after changing the embedding model)"
                );
                return;
            }
            if let Err(e) = self.tree.insert(id.to_be_bytes(), value) {
                tracing::warn!(error = %e, "semantic cache write failed");
                return;
            }
            Self::index_add(&mut inner, id, &stored, self.max_entries.load(Ordering::Relaxed));
        }
        self.evict();
        self.report();
    }

    /// Sets the entries and memory gauges (cheap: every write does it).
    pub fn report(&self) {
        metrics::gauge!(crate::metrics::SEMANTIC_CACHE_ENTRIES).set(self.len() as f64);
        metrics::gauge!(crate::metrics::SEMANTIC_CACHE_MEMORY_BYTES).set(self.memory_bytes() as f64);
    }

    /// Drops expired entries at the old end and the oldest above the cap.
    fn evict(&self) {
        let max = self.max_entries.load(Ordering::Relaxed);
        let now = unix_ms();
        let mut inner = self.write();
        let mut checked = 0;
        while let Some((&id, m)) = inner.meta.iter().next() {
            let over = inner.meta.len() > max;
            // a few expired entries at the old end go with every write
            let expired = m.expires_ms <= now && checked < 8;
            if !(over || expired) {
                break;
            }
            checked += 1;
            Self::index_remove(&mut inner, id);
            let _ = self.tree.remove(id.to_be_bytes());
        }
    }

    /// Changes the cap (config reload).
    pub fn set_max_entries(&self, max: usize) {
        self.max_entries.store(max, Ordering::Relaxed);
        self.evict();
    }

    /// Removes the entries of `alias` and/or `scope` (every entry when both are `None`):
    /// how many.
    pub fn clear(&self, alias: Option<&str>, scope: Option<&str>) -> usize {
        let mut inner = self.write();
        let ids: Vec<u64> = inner
            .meta
            .iter()
            .filter(|(_, m)| alias.is_none_or(|a| *m.alias == *a) && scope.is_none_or(|s| *m.scope == *s))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            Self::index_remove(&mut inner, *id);
            let _ = self.tree.remove(id.to_be_bytes());
        }
        drop(inner);
        self.report();
        ids.len()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.read().meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resident bytes of the index and, estimated, what is kept per entry beside it
    /// (the answers and full vectors are in sled).
    pub fn memory_bytes(&self) -> usize {
        let inner = self.read();
        let index = inner.index.as_ref().map_or(0, usearch::Index::memory_usage);
        // the map entries, a scope string, and the partition lists
        let per_entry = std::mem::size_of::<Meta>() + 48 + 32 + std::mem::size_of::<u64>() * 2;
        index + inner.meta.len() * per_entry
    }
}

#[cfg(test)]
mod tests;
