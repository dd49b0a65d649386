#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Criterion benches of the hot-path pieces: parse, token estimate, route, rate-limit
//! check, cache key, SSE parse, and the ledger append (bincode + sled, one group commit).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use switchyard_actors::actors::cache::cache_key;
use switchyard_actors::actors::messages::{Demand, Scope};
use switchyard_actors::actors::rate_limiter::RateLimiter;
use switchyard_actors::actors::router::{PickArgs, Router};
use switchyard_actors::providers::openai;
use switchyard_actors::providers::sse::SseParser;
use switchyard_actors::store::Store;
use switchyard_actors::tokens;
use switchyard_actors::types::{ChatRequest, Endpoint, UsageRecord};
use switchyard_config::{Budget, BudgetPeriod, Limits};

const BODY: &[u8] = br#"{"model":"fast","temperature":0.2,"max_tokens":256,"messages":[
{"role":"system","content":"You are a helpful assistant that answers briefly."},
{"role":"user","content":"What is the capital of France, and what is it famous for? Answer in two sentences."}]}"#;

fn config() -> switchyard_config::Config {
    let text = r#"
[[providers]]
name = "a"
kind = "mock"
[[providers]]
name = "b"
kind = "mock"
[[models]]
alias = "fast"
targets = [{ provider = "a", model = "m1", weight = 9 }, { provider = "b", model = "m2", weight = 1 }]
"#;
    match switchyard_config::load_str(text, Path::new("."), &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn record(i: u64) -> UsageRecord {
    UsageRecord {
        provider: "openai".into(),
        upstream_model: "gpt-4o-mini".into(),
        input_tokens: 120,
        output_tokens: 48,
        cost_usd: 0.000_046_8,
        latency_us: 350_000,
        ttft_us: Some(120_000),
        status: 200,
        ..UsageRecord::new(&format!("req_{i:024x}"), 1_800_000_000_000 + i, "team-a", Endpoint::Chat, "fast", true)
    }
}

fn hot_path(c: &mut Criterion) {
    c.bench_function("parse_chat_request", |b| b.iter(|| ChatRequest::parse(black_box(BODY))));

    let req = match ChatRequest::parse(BODY) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    tokens::count_text("warm");
    c.bench_function("estimate_prompt_tokens", |b| b.iter(|| tokens::estimate_prompt(black_box(&req))));
    // a prompt of the size applications send (about 2 KB: prose, a list, some code)
    let prompt = "You are a support assistant for ACME Corp. Answer politely, cite the policy section, and never \
        promise refunds above $500 without a manager's approval.\n\nPolicy:\n  1. Returns within 30 days.\n  \
        2. Shipping costs are not refunded.\n  3. Damaged items: photo required.\n\n"
        .repeat(5)
        + "```python\ndef refund(order_id: str, amount: float) -> bool:\n    return amount <= 500.0\n```\n";
    c.bench_function("count_tokens_2kb", |b| b.iter(|| tokens::count_text(black_box(&prompt))));
    c.bench_function("upstream_body", |b| b.iter(|| openai::chat_body(black_box(&req), "gpt-4o-mini")));

    let cfg = config();
    let mut router = Router::new(&cfg, Default::default(), Some(1));
    c.bench_function("route_weighted", |b| b.iter(|| router.pick(black_box("fast"), &PickArgs::default())));

    let mut rl = RateLimiter::default();
    let limits = Limits { rpm: Some(u32::MAX), tpm: Some(u64::MAX / 4), tpd: None, max_concurrent: None };
    let key: Arc<[Scope]> = Arc::from(vec![Scope::key("team-a", limits, None)]);
    let demand = Demand { tokens: 300, cost_usd: 0.0 };
    c.bench_function("rate_limit_check", |b| b.iter(|| rl.check(black_box(&key), demand, Instant::now())));
    // what issue 6's policies cost: key, team and alias scopes, tokens per day, budgets
    let wide = Limits { tpd: Some(u64::MAX / 4), ..limits };
    let budget = Some(Budget { usd: 1e12, period: BudgetPeriod::Month });
    let three: Arc<[Scope]> = Arc::from(vec![
        Scope::key("team-a-key", wide, budget),
        Scope::team("team-a", wide, budget),
        Scope::model("fast", limits),
    ]);
    let demand = Demand { tokens: 300, cost_usd: 0.000_2 };
    c.bench_function("rate_limit_check_key_team_alias_budgets", |b| {
        b.iter(|| rl.check(black_box(&three), demand, Instant::now()))
    });
    c.bench_function("auth_key_hash", |b| {
        b.iter(|| switchyard_config::hash_key(black_box("sk-team-a-0123456789abcdef")))
    });

    let normalized = serde_json::to_value(&req).unwrap_or_default();
    c.bench_function("cache_key", |b| b.iter(|| cache_key(Endpoint::Chat, "fast", black_box(&normalized))));

    let chunk = br#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}]}

"#;
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("parse_chunk", |b| {
        let mut p = SseParser::new();
        b.iter(|| p.feed(black_box(chunk)))
    });
    g.finish();

    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let store = match Store::open(dir.path()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let mut seq = 0u64;
    let mut next = 0u64;
    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(256));
    g.bench_function("append_256_records_group_commit", |b| {
        b.iter_batched(
            || {
                let batch: Vec<UsageRecord> = (next..next + 256).map(record).collect();
                next += 256;
                batch
            },
            |batch| store.append_usage(&batch, &mut seq),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    c.bench_function("bincode_encode_record", |b| {
        let r = record(1);
        b.iter(|| switchyard_actors::store::encode(black_box(&r)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = hot_path
}
criterion_main!(benches);
