#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! A page of usage on a large ledger: `GET /admin/usage?by=key&since=7d` as the gateway
//! answers it, from the hourly totals beside the ledger, against the same report read
//! from every record. The ledger holds 10 million records (one a second would be 116
//! days; here a week: 1,000 keys, 5 aliases, 3 providers, 1,000 records per group commit)
//! written through `append_usage` as the accounting actor does. `USAGE_BENCH_RECORDS`
//! sets the count; under `cargo test` it is 20,000.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use switchyard_actors::store::Store;
use switchyard_actors::types::{Endpoint, UsageRecord};

const WEEK_MS: u64 = 7 * 24 * 3_600_000;

fn records(n: u64) -> u64 {
    match std::env::var("USAGE_BENCH_RECORDS").ok().and_then(|s| s.parse().ok()) {
        Some(n) => n,
        None if std::env::args().any(|a| a == "--bench") => n,
        None => 20_000,
    }
}

fn ledger(n: u64) -> (tempfile::TempDir, Store, u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = switchyard_actors::types::unix_ms() - WEEK_MS;
    let step = (WEEK_MS / n).max(1);
    let aliases = ["fast", "smart", "embed", "vision", "cheap"];
    let providers = ["openai", "anthropic", "bedrock"];
    let mut seq = 0;
    let began = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        batch.push(UsageRecord {
            provider: providers[(i % 3) as usize].into(),
            upstream_model: "m".into(),
            input_tokens: 100 + i % 50,
            output_tokens: 20 + i % 30,
            cost_usd: 0.000_1,
            status: if i % 50 == 0 { 429 } else { 200 },
            upstream_attempts: 1,
            ..UsageRecord::new(
                &format!("r{i}"),
                start + i * step,
                &format!("key-{:04}", i % 1000),
                Endpoint::Chat,
                aliases[(i % 5) as usize],
                false,
            )
        });
        if batch.len() == 1000 {
            store.append_usage(&batch, &mut seq).unwrap();
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.append_usage(&batch, &mut seq).unwrap();
    }
    eprintln!("ledger of {n} records written in {:.1} s", began.elapsed().as_secs_f64());
    (dir, store, start)
}

fn page(c: &mut Criterion) {
    let n = records(10_000_000);
    let (_dir, store, start) = ledger(n);
    let since = start;
    let began = Instant::now();
    let scanned = store.usage_since(since).unwrap().len();
    let scan = began.elapsed();
    let began = Instant::now();
    let totals = store.usage_rollup(since).unwrap();
    eprintln!(
        "the week's report by key: from every record ({scanned} read) {:.2} s; from the hourly totals ({} rows) {:.3} s",
        scan.as_secs_f64(),
        totals.len(),
        began.elapsed().as_secs_f64()
    );
    let mut group = c.benchmark_group("usage_page");
    group.sample_size(10);
    group.bench_function(format!("by_key_week_totals/{n}"), |b| {
        b.iter(|| {
            let rows = store.usage_rollup(black_box(since)).unwrap();
            black_box(rows.len())
        })
    });
    // the console's charts: the last 24 hours an hour at a time (`by=hour&since=24h`)
    let day = switchyard_actors::types::unix_ms() - 24 * 3_600_000;
    eprintln!("the last 24 hours by hour: {} rows", store.usage_rollup_hourly(day).unwrap().len());
    group.bench_function(format!("by_hour_last_24h_totals/{n}"), |b| {
        b.iter(|| {
            let rows = store.usage_rollup_hourly(black_box(day)).unwrap();
            black_box(rows.len())
        })
    });
    group.finish();
}

criterion_group!(benches, page);
criterion_main!(benches);
