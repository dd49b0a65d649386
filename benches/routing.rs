#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! What each routing decision costs per request: one `Router::pick` per strategy over
//! three targets (the choice, the breaker check and the target slot taken and given
//! back), and the `[[routes]]` rules a request is matched against.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use switchyard_actors::actors::router::{sticky_hash, PickArgs, Router};
use switchyard_actors::types::unix_ms;
use switchyard_actors::types::ChatRequest;
use switchyard_config::RouteInput;

fn config() -> switchyard_config::Config {
    let text = r#"
[[providers]]
name = "a"
kind = "mock"
[[providers]]
name = "b"
kind = "mock"
[[providers]]
name = "c"
kind = "mock"
[[models]]
alias = "weighted"
targets = [{ provider = "a", model = "m", weight = 5 }, { provider = "b", model = "m", weight = 3 },
           { provider = "c", model = "m", weight = 2 }]
[[models]]
alias = "sticky"
sticky = "user"
targets = [{ provider = "a", model = "v1", weight = 95 }, { provider = "b", model = "v2", weight = 5 },
           { provider = "c", model = "v3", weight = 0 }]
[[models]]
alias = "latency"
strategy = "latency"
targets = [{ provider = "a", model = "m" }, { provider = "b", model = "m" }, { provider = "c", model = "m" }]
[[models]]
alias = "cost"
strategy = "cost"
targets = [{ provider = "a", model = "gpt-4o" }, { provider = "b", model = "gpt-4o-mini" },
           { provider = "c", model = "x", input_per_mtok = 0.2, output_per_mtok = 0.8 }]
[[models]]
alias = "failover"
strategy = "failover"
targets = [{ provider = "a", model = "m", max_concurrency = 1000000 }, { provider = "b", model = "m" },
           { provider = "c", model = "m" }]

[[routes]]
name = "vision"
models = ["auto"]
alias = "weighted"
has_images = true
[[routes]]
name = "long"
models = ["auto"]
alias = "cost"
min_prompt_tokens = 8000
[[routes]]
name = "code"
models = ["auto"]
alias = "latency"
regex = '(?i)\b(rust|python|golang|typescript|stack trace|compile|segfault)\b'
[[routes]]
name = "faq"
models = ["auto"]
alias = "cost"
keywords = ["refund", "opening hours", "password reset", "shipping", "invoice", "cancel my"]
"#;
    let pricing = format!("{}/config/pricing.toml", env!("CARGO_MANIFEST_DIR"));
    let text = format!("pricing_file = \"{pricing}\"\n{text}");
    match switchyard_config::load_str(&text, Path::new("."), &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn strategies(c: &mut Criterion) {
    let cfg = config();
    let mut router = Router::new(&cfg, Default::default(), Some(1));
    let now = unix_ms();
    for (p, ms) in [("a", 40), ("b", 25), ("c", 90)] {
        router.target_load(p, "m").observe(Duration::from_millis(ms), true, now);
    }
    let args = PickArgs { input_tokens: 800, output_tokens: 256, ..Default::default() };
    let mut g = c.benchmark_group("route_pick");
    for alias in ["weighted", "latency", "cost", "failover"] {
        g.bench_function(alias, |b| b.iter(|| router.pick(black_box(alias), &args).map(|d| d.provider.len())));
    }
    let user = PickArgs { sticky: Some(sticky_hash("user-1234")), ..args };
    g.bench_function("sticky", |b| b.iter(|| router.pick(black_box("sticky"), &user).map(|d| d.provider.len())));
    g.bench_function("sticky_hash", |b| b.iter(|| sticky_hash(black_box("user-1234"))));
    g.finish();
}

fn rules(c: &mut Criterion) {
    let cfg = config();
    let body = br#"{"model":"auto","messages":[{"role":"system","content":"You are a support agent."},
{"role":"user","content":"Hi, I ordered a jacket two weeks ago and would like to know how the refund works if it does not fit."}]}"#;
    let req = ChatRequest::parse(body).unwrap();
    let mut g = c.benchmark_group("route_rules");
    // what the pipeline does per request: the request's facts, then the first match
    g.bench_function("four_rules_keyword_match", |b| {
        b.iter(|| {
            let text = req.last_user_text();
            let input = RouteInput {
                model: &req.model,
                key_id: "team-a",
                user: req.user(),
                headers: &[],
                has_tools: req.has_tools(),
                has_images: req.has_images(),
                prompt_tokens: 40,
                last_user_text: &text,
            };
            cfg.routes.iter().find(|r| r.matches(black_box(&input))).map(|r| r.name.len())
        })
    });
    g.bench_function("no_rule_applies", |b| {
        b.iter(|| {
            let input = RouteInput { model: "gpt-4o", key_id: "team-a", ..Default::default() };
            cfg.routes.iter().find(|r| r.matches(black_box(&input))).map(|r| r.name.len())
        })
    });
    g.finish();
}

criterion_group!(benches, strategies, rules);
criterion_main!(benches);
