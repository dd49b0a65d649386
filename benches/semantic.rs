#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The semantic cache's lookup at 10k and 1M entries (384 dimensions, multilingual-e5-
//! small's), in a large partition (one alias, global scope: through the HNSW index with
//! the partition as a filter) and in a small one (one key's: scanned exactly), with the
//! guards on. The vectors are clustered (1,000 topics with noise), as embeddings are;
//! queries are near copies of stored prompts. Prints the build time and the memory per
//! entry. `SEMANTIC_BENCH_SIZES=10000` runs the small size only (as `cargo test` does).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use switchyard_actors::actors::messages::CachedResponse;
use switchyard_actors::semantic::{normalize, Lookup, NewEntry, Partition, Query, SemanticIndex};
use switchyard_actors::store::Store;

const DIMS: usize = 384;
const TOPICS: usize = 1_000;
const SMALL_PARTITIONS: usize = 1_000;

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 20_000) as f32 / 10_000.0 - 1.0
    }
}

fn near(center: &[f32], rng: &mut Rng, noise: f32) -> Vec<f32> {
    let mut v: Vec<f32> = center.iter().map(|c| c + noise * rng.unit()).collect();
    assert!(normalize(&mut v));
    v
}

fn partition(i: usize) -> Partition {
    // 90% of the entries in one large partition, the rest over many small ones
    let mut p = [0u8; 32];
    if i % 10 != 0 {
        return p;
    }
    p[..8].copy_from_slice(&((i / 10) % SMALL_PARTITIONS + 1).to_be_bytes());
    p
}

struct Built {
    _dir: tempfile::TempDir,
    index: std::sync::Arc<SemanticIndex>,
    /// Stored vectors to query near: one in the large partition, one in a small one.
    large: (usize, Vec<f32>),
    small: (usize, Vec<f32>),
}

fn build(n: usize) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let index = SemanticIndex::open(store.semantic.clone(), n);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let centers: Vec<Vec<f32>> = (0..TOPICS).map(|_| (0..DIMS).map(|_| rng.unit()).collect()).collect();
    let answer = CachedResponse { body: vec![b'x'; 300], ..CachedResponse::default() };
    let started = Instant::now();
    let (mut large, mut small) = (None, None);
    for chunk_start in (0..n).step_by(50_000) {
        let entries: Vec<NewEntry> = (chunk_start..(chunk_start + 50_000).min(n))
            .map(|i| {
                let v = near(&centers[i % TOPICS], &mut rng, 0.6);
                if i == n / 2 + 1 {
                    large = Some((i, v.clone()));
                }
                if i == n / 2 + 10 {
                    small = Some((i, v.clone()));
                }
                NewEntry {
                    partition: partition(i),
                    alias: "chat".into(),
                    scope: "global".into(),
                    text: format!("question number {i}"),
                    vector: v,
                    response: answer.clone(),
                    ttl: Duration::from_secs(3600),
                }
            })
            .collect();
        index.insert_many(entries);
    }
    let built = started.elapsed();
    assert_eq!(index.len(), n);
    eprintln!(
        "semantic cache of {n} entries: built in {:.1} s, {:.0} bytes of memory per entry (index and map; answers in sled)",
        built.as_secs_f64(),
        index.memory_bytes() as f64 / n as f64
    );
    Built { _dir: dir, index, large: large.unwrap(), small: small.unwrap() }
}

fn lookups(c: &mut Criterion) {
    let sizes: Vec<usize> = std::env::var("SEMANTIC_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        // `cargo bench` passes --bench; under `cargo test` the benchmark is a quick
        // check, not a four-minute build of a million entries
        .unwrap_or_else(
            || if std::env::args().any(|a| a == "--bench") { vec![10_000, 1_000_000] } else { vec![10_000] },
        );
    let mut group = c.benchmark_group("semantic_lookup");
    group.sample_size(50);
    for n in sizes {
        let b = build(n);
        let mut rng = Rng(7);
        for (name, (i, v)) in [("large_partition", &b.large), ("small_partition", &b.small)] {
            let q = near(v, &mut rng, 0.01);
            let text = format!("question number {i}");
            let p = partition(*i);
            let query = Query { partition: &p, vector: &q, text: &text, threshold: 0.93, candidates: 8, guards: true };
            assert!(matches!(b.index.lookup(&query), Lookup::Hit(_)), "{name} at {n}: the stored prompt is found");
            group.bench_with_input(BenchmarkId::new(name, n), &query, |bench, q| {
                bench.iter(|| black_box(b.index.lookup(black_box(q))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
