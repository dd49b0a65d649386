//! Traffic management over real HTTP: the latency strategy learns which target is slow,
//! weighted and sticky splits hold over thousands of requests, failover covers 500s,
//! 429s, timeouts and streams cut before their first chunk, `[[routes]]` rules pick the
//! alias, and active health checks take a dead target out and put it back. Routing
//! randomness is seeded (`routing_seed` in the test config).

use std::collections::HashMap;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::common::*;

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

const NO_CACHE: [(&str, &str); 1] = [("cache-control", "no-cache")];

/// Providers on the mock that misbehave through static headers, and aliases over them.
fn providers(mock: &str) -> String {
    r#"
[[providers]]
name = "quick"
kind = "openai-compatible"
base_url = "MOCK/v1"

[[providers]]
name = "sluggish"
kind = "openai-compatible"
base_url = "MOCK/v1"
headers = { "x-mock-latency-ms" = "150" }

[[providers]]
name = "broken"
kind = "openai-compatible"
base_url = "MOCK/v1"
headers = { "x-mock-status" = "500" }
breaker_failures = 0

[[providers]]
name = "throttled"
kind = "openai-compatible"
base_url = "MOCK/v1"
headers = { "x-mock-status" = "429" }
breaker_failures = 0

[[providers]]
name = "hanging"
kind = "openai-compatible"
base_url = "MOCK/v1"
headers = { "x-mock-latency-ms" = "5000" }
first_byte_timeout_ms = 200
breaker_failures = 0

[[providers]]
name = "cut-at-once"
kind = "openai-compatible"
base_url = "MOCK/v1"
headers = { "x-mock-disconnect-after" = "0" }
breaker_failures = 0

[[providers]]
name = "cut-later"
kind = "openai-compatible"
base_url = "MOCK/v1"
headers = { "x-mock-disconnect-after" = "2" }
breaker_failures = 0

[[providers]]
name = "cut-after-role"
kind = "openai-compatible"
base_url = "MOCK/v1"
headers = { "x-mock-disconnect-after" = "1" }
breaker_failures = 0

[[models]]
alias = "after-role-chunk"
strategy = "failover"
targets = [{ provider = "cut-after-role", model = "gpt-4o-mini" }, { provider = "up", model = "gpt-4o-mini" }]

[[models]]
alias = "lat"
strategy = "latency"
targets = [{ provider = "sluggish", model = "gpt-4o-mini" }, { provider = "quick", model = "gpt-4o-mini" }]

[[models]]
alias = "after-500"
strategy = "failover"
targets = [{ provider = "broken", model = "gpt-4o-mini" }, { provider = "up", model = "gpt-4o-mini" }]

[[models]]
alias = "after-429"
strategy = "failover"
targets = [{ provider = "throttled", model = "gpt-4o-mini" }, { provider = "up", model = "gpt-4o-mini" }]

[[models]]
alias = "after-timeout"
strategy = "failover"
targets = [{ provider = "hanging", model = "gpt-4o-mini" }, { provider = "up", model = "gpt-4o-mini" }]

[[models]]
alias = "after-cut"
strategy = "failover"
targets = [{ provider = "cut-at-once", model = "gpt-4o-mini" }, { provider = "up", model = "gpt-4o-mini" }]

[[models]]
alias = "cut-mid-stream"
strategy = "failover"
targets = [{ provider = "cut-later", model = "gpt-4o-mini" }, { provider = "up", model = "gpt-4o-mini" }]
"#
    .replace("MOCK", mock)
}

#[tokio::test]
async fn the_latency_strategy_moves_traffic_off_a_slow_target() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &providers(&mock.url));
    let mut by: Vec<String> = Vec::new();
    for i in 0..40 {
        let r = post_as(gw.url(), MAIN_KEY, &NO_CACHE, &ask("lat", &format!("latency {i}"))).await;
        assert_eq!(r.status(), 200);
        by.push(header(&r, "x-switchyard-provider"));
    }
    // each target is measured at most once before its estimate exists; after that the
    // slow one loses every draw (one request at a time: nothing in flight to offset it)
    let slow = by.iter().filter(|p| *p == "sluggish").count();
    assert!(slow <= 1, "{slow} of 40 went to the slow target: {by:?}");
    assert!(by[2..].iter().all(|p| p == "quick"), "{by:?}");
    let ewma = "switchyard_target_latency_ewma_seconds{provider=\"sluggish\",model=\"gpt-4o-mini\"}";
    if slow == 1 {
        let v = metric(gw.url(), ewma).await.unwrap();
        assert!(v >= 0.15, "the slow target's estimate is its latency: {v}");
    }
    let quick = "switchyard_target_latency_ewma_seconds{provider=\"quick\",model=\"gpt-4o-mini\"}";
    assert!(metric(gw.url(), quick).await.unwrap() < 0.15);
}

/// A stream whose connection drops after OpenAI's opening role-only chunk has shown the
/// client nothing it needs: it fails over unseen, as the same request without `stream`
/// would, and the client gets one clean stream from the next target.
#[tokio::test]
async fn a_stream_cut_after_its_opening_chunk_fails_over() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &providers(&mock.url));
    let body = ask("after-role-chunk", "cut after the role chunk");
    let s = stream_chat(gw.url(), &NO_CACHE, &body).await;
    assert_eq!(s.status, 200);
    assert!(s.done(), "a clean end: {:?}", s.events);
    assert_eq!(s.text(), "This is a mock reply to: cut after the role chunk");
    let roles = s.chunks().iter().filter(|c| c["choices"][0]["delta"]["role"] == "assistant").count();
    assert_eq!(roles, 1, "one opening chunk, from the target that answered: {:?}", s.events);
    let failovers = metric(gw.url(), "switchyard_failovers_total{from=\"cut-after-role\"}").await;
    assert_eq!(failovers, Some(1.0));
}

#[tokio::test]
async fn retryable_failures_fail_over_and_the_ledger_counts_every_call() {
    let mock = mock_upstream();
    let mut gw = Gateway::start_with(&mock.url, &providers(&mock.url));
    for alias in ["after-500", "after-429", "after-timeout"] {
        let r = post_as(gw.url(), MAIN_KEY, &NO_CACHE, &ask(alias, alias)).await;
        assert_eq!(r.status(), 200, "{alias}");
        assert_eq!(header(&r, "x-switchyard-provider"), "up", "{alias}");
        assert_eq!(header(&r, "x-switchyard-attempts"), "2", "{alias}");
    }
    // a stream cut before its first chunk: the client gets one clean stream from the next target
    let mut body = ask("after-cut", "cut before the first token");
    body["stream"] = json!(true);
    let s = stream_chat(gw.url(), &[], &body).await;
    assert!(s.done(), "a clean end: {:?}", s.events);
    assert!(s.text().contains("cut before the first token"));
    // cut after chunks reached the client: an error event, never a silent [DONE]
    let mut body = ask("cut-mid-stream", "cut after two chunks");
    body["stream"] = json!(true);
    let s = stream_chat(gw.url(), &NO_CACHE, &body).await;
    assert!(!s.done(), "{:?}", s.events);
    assert!(s.events.iter().any(|e| e.contains("\"error\"")), "{:?}", s.events);
    for from in ["broken", "throttled", "hanging", "cut-at-once"] {
        let failovers = metric(gw.url(), &format!("switchyard_failovers_total{{from=\"{from}\"}}")).await;
        assert_eq!(failovers, Some(1.0), "{from}");
    }
    assert_eq!(metric(gw.url(), "switchyard_failovers_total{from=\"cut-later\"}").await, None);
    let calls = metric(gw.url(), "switchyard_upstream_attempts_total{provider=\"throttled\"}").await;
    assert_eq!(calls, Some(1.0));

    // the ledger: one record per request, naming the target that answered and counting
    // the failed call before it
    gw.stop();
    let (code, out, err) =
        run_cli(&["usage", "--data-dir", gw.data_dir().to_str().unwrap(), "--by", "provider", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    let row = |name: &str| rows.as_array().unwrap().iter().find(|r| r["group"] == name).cloned();
    let up = row("up").unwrap();
    assert_eq!((up["requests"].as_u64(), up["upstream_calls"].as_u64()), (Some(4), Some(8)), "{out}");
    let cut = row("cut-later").unwrap();
    assert_eq!((cut["requests"].as_u64(), cut["errors"].as_u64()), (Some(1), Some(1)), "{out}");
}

/// Three built-in mock providers (no upstream network: the gateway is what is measured)
/// and a weighted and a sticky alias over them.
const SPLITS: &str = r#"
[[providers]]
name = "w1"
kind = "mock"
[[providers]]
name = "w2"
kind = "mock"
[[providers]]
name = "w3"
kind = "mock"

[[models]]
alias = "split"
targets = [{ provider = "w1", model = "m", weight = 70 }, { provider = "w2", model = "m", weight = 20 },
           { provider = "w3", model = "m", weight = 10 }]

[[models]]
alias = "canary"
sticky = "user"
targets = [{ provider = "w1", model = "stable", weight = 90 }, { provider = "w2", model = "canary", weight = 10 }]
"#;

#[tokio::test]
async fn weighted_splits_hold_over_ten_thousand_requests() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, SPLITS);
    let url = gw.url().to_string();
    let c = client();
    let answers: Vec<String> = futures_util::stream::iter(0..10_000)
        .map(|i| {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let r = c
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(MAIN_KEY)
                    .header("cache-control", "no-cache")
                    .json(&ask("split", &format!("split {i}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                header(&r, "x-switchyard-provider")
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for a in answers {
        *counts.entry(a).or_default() += 1;
    }
    // within 4 standard deviations of n*p (binomial), for each target
    for (p, share) in [("w1", 0.7_f64), ("w2", 0.2), ("w3", 0.1)] {
        let got = counts.get(p).copied().unwrap_or(0) as f64;
        let (mean, sd) = (10_000.0 * share, (10_000.0 * share * (1.0 - share)).sqrt());
        assert!((got - mean).abs() <= 4.0 * sd, "{p}: {got} of 10000, expected {mean} +- {}", 4.0 * sd);
    }

    // sticky canary: every user keeps its target, and about 10% of users are on the canary
    let mut on_canary = 0;
    for u in 0..300 {
        let mut seen = Vec::new();
        for i in 0..3 {
            let mut body = ask("canary", &format!("user {u} request {i}"));
            body["user"] = json!(format!("user-{u}"));
            let r = post_as(gw.url(), MAIN_KEY, &NO_CACHE, &body).await;
            assert_eq!(r.status(), 200);
            seen.push(header(&r, "x-switchyard-model"));
        }
        assert!(seen.iter().all(|m| *m == seen[0]), "user-{u} moved: {seen:?}");
        on_canary += usize::from(seen[0] == "canary");
    }
    // 10% of 300 = 30, sd 5.2
    assert!((9..=51).contains(&on_canary), "{on_canary} of 300 users on the canary");
}

#[tokio::test]
async fn routes_pick_the_alias_by_header_key_tools_and_content() {
    let mock = mock_upstream();
    let extra = r#"
[[models]]
alias = "coder"
targets = [{ provider = "up", model = "code-model" }]

[[models]]
alias = "faq"
targets = [{ provider = "up", model = "faq-model" }]

[[models]]
alias = "tools"
targets = [{ provider = "up", model = "tool-model" }]

[[models]]
alias = "general"
targets = [{ provider = "up", model = "general-model" }]

[[keys]]
id = "only-general"
key = "sk-only-general"
models = ["general", "faq"]

[[routes]]
name = "beta-header"
models = ["auto"]
alias = "coder"
headers = { "x-beta" = "^(yes|true)$" }

[[routes]]
name = "has-tools"
models = ["auto"]
alias = "tools"
has_tools = true

[[routes]]
name = "code"
models = ["auto"]
alias = "coder"
regex = '(?i)\b(rust|python|stack trace)\b'

[[routes]]
name = "faq"
models = ["auto"]
alias = "faq"
keywords = ["refund", "opening hours"]
max_prompt_tokens = 200

[[routes]]
name = "default"
models = ["auto"]
alias = "general"
"#;
    let gw = Gateway::start_with(&mock.url, extra);
    // (request, headers, the rule that should match, the upstream model it leads to)
    type Case<'a> = (Value, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (ask("auto", "How do I borrow in Rust?"), vec![], "code", "code-model"),
        (ask("auto", "What are your OPENING HOURS?"), vec![], "faq", "faq-model"),
        (ask("auto", "Tell me a story"), vec![], "default", "general-model"),
        (ask("auto", "Tell me a story"), vec![("x-beta", "yes")], "beta-header", "code-model"),
        (
            json!({"model": "auto", "messages": [{"role": "user", "content": "refund?"}],
                   "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}),
            vec![],
            "has-tools",
            "tool-model",
        ),
    ];
    for (body, mut headers, rule, model) in cases {
        headers.push(NO_CACHE[0]);
        let r = post_as(gw.url(), MAIN_KEY, &headers, &body).await;
        assert_eq!(r.status(), 200, "{rule}");
        assert_eq!(header(&r, "x-switchyard-route"), rule);
        assert_eq!(header(&r, "x-switchyard-model"), model, "{rule}");
    }
    // a long FAQ-like prompt is over the rule's limit and falls through to the default
    let long = format!("refund {}", "please explain in detail ".repeat(100));
    let r = post_as(gw.url(), MAIN_KEY, &NO_CACHE, &ask("auto", &long)).await;
    assert_eq!(header(&r, "x-switchyard-route"), "default");
    // a model that names an alias is served by it when no rule applies: no route header
    let r = post_as(gw.url(), MAIN_KEY, &NO_CACHE, &ask("chat", "plain")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-switchyard-route").is_none());
    // the key must be allowed the alias the rule picked
    let r = post_as(gw.url(), "sk-only-general", &NO_CACHE, &ask("auto", "python question")).await;
    assert_eq!(r.status(), 403);
    let r = post_as(gw.url(), "sk-only-general", &NO_CACHE, &ask("auto", "a story")).await;
    assert_eq!(r.status(), 200);
    // no rule and no such alias: 404
    let r = post_as(gw.url(), MAIN_KEY, &NO_CACHE, &ask("nothing-here", "x")).await;
    assert_eq!(r.status(), 404);
    // a rule's match is counted whatever the request's fate (the 403 above included)
    assert_eq!(metric(gw.url(), "switchyard_routes_total{route=\"code\",alias=\"coder\"}").await, Some(2.0));
    assert_eq!(metric(gw.url(), "switchyard_routes_total{route=\"default\",alias=\"general\"}").await, Some(3.0));
}

#[tokio::test]
async fn health_checks_take_a_dead_target_out_and_bring_it_back() {
    let mock = mock_upstream();
    let port = free_port();
    let extra = format!(
        r#"
[[providers]]
name = "checked"
kind = "openai-compatible"
base_url = "http://127.0.0.1:{port}/v1"
health_check_interval_ms = 100
breaker_cooldown_ms = 600000

[[models]]
alias = "hc"
targets = [{{ provider = "checked", model = "gpt-4o-mini" }}, {{ provider = "up", model = "gpt-4o-mini" }}]
"#
    );
    let gw = Gateway::start_with(&mock.url, &extra);
    // nothing listens on the port: the first check opens the breaker
    wait_for_metric(gw.url(), "switchyard_provider_up{provider=\"checked\"}", |v| v == 0.0).await;
    assert!(
        metric(gw.url(), "switchyard_health_checks_total{provider=\"checked\",result=\"failed\"}").await >= Some(1.0)
    );
    for i in 0..20 {
        let r = post_as(gw.url(), MAIN_KEY, &NO_CACHE, &ask("hc", &format!("while down {i}"))).await;
        assert_eq!(header(&r, "x-switchyard-provider"), "up");
        assert_eq!(header(&r, "x-switchyard-attempts"), "1", "the open target is skipped, not tried");
    }
    // the target comes up: a passing check lets traffic back long before the 10-minute cooldown
    let _checked = mock_upstream_at(port);
    wait_for_metric(gw.url(), "switchyard_provider_up{provider=\"checked\"}", |v| v == 1.0).await;
    let mut served = 0;
    for i in 0..40 {
        let r = post_as(gw.url(), MAIN_KEY, &NO_CACHE, &ask("hc", &format!("after recovery {i}"))).await;
        assert_eq!(r.status(), 200);
        served += usize::from(header(&r, "x-switchyard-provider") == "checked");
    }
    assert!(served >= 5, "the recovered target got {served} of 40");
}
