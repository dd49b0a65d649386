//! Failover across an alias's targets: a retryable failure before anything reached the
//! client (connection refused, 5xx, 429) moves the request to another target, streams
//! included; what the request itself got wrong does not.

use serde_json::{json, Value};

use crate::common::*;

/// A provider nobody listens on, and aliases that put it first.
fn extra(dead_port: u16) -> String {
    format!(
        r#"
[[providers]]
name = "dead"
kind = "openai-compatible"
base_url = "http://127.0.0.1:{dead_port}/v1"
forward_headers = ["x-mock-status"]

[[models]]
alias = "ha"
strategy = "failover"
targets = [{{ provider = "dead", model = "gpt-4o-mini" }}, {{ provider = "up", model = "gpt-4o-mini" }}]

[[models]]
alias = "ha-weighted"
targets = [{{ provider = "dead", model = "gpt-4o-mini", weight = 1 }}, {{ provider = "up", model = "gpt-4o-mini", weight = 1 }}]

[[models]]
alias = "all-dead"
strategy = "failover"
targets = [{{ provider = "dead", model = "m" }}]

[[models]]
alias = "cheapest"
strategy = "cost"
targets = [{{ provider = "up", model = "gpt-4o" }}, {{ provider = "up", model = "gpt-4o-mini" }}]

[[models]]
alias = "cheapest-healthy"
strategy = "cost"
targets = [{{ provider = "up", model = "gpt-4o" }}, {{ provider = "dead", model = "gpt-4o-mini" }}]

[[models]]
alias = "primary"
targets = [{{ provider = "dead", model = "m" }}]
fallbacks = ["all-dead", "chat"]
"#
    )
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn a_failed_target_is_replaced_by_the_next_one() {
    let mock = mock_upstream();
    let mut gw = Gateway::start_with(&mock.url, &extra(free_port()));

    // failover: the first target refuses connections, the second answers
    let r = post_as(gw.url(), MAIN_KEY, &[], &ask("ha", "fail over please")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "up");
    let v: Value = r.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("fail over please"));

    // weighted: whichever is drawn first, every request is answered
    for i in 0..20 {
        let r =
            post_as(gw.url(), MAIN_KEY, &[("cache-control", "no-cache")], &ask("ha-weighted", &format!("w {i}"))).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchyard-provider"), "up");
    }
    // every target of the alias failed: its fallback aliases take over, in order
    let r = post_as(gw.url(), MAIN_KEY, &[], &ask("primary", "fall back please")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "up");
    let failovers = metric(gw.url(), "switchyard_failovers_total{from=\"dead\"}").await.unwrap_or(0.0);
    assert!(failovers >= 2.0, "{failovers}");

    // a stream fails over before its first byte: the client sees one clean stream
    let mut s = ask("ha", "stream after failover");
    s["stream"] = json!(true);
    let r = post_as(gw.url(), MAIN_KEY, &[], &s).await;
    assert_eq!(r.status(), 200);
    let events = sse_data(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // the answering target is what the ledger records, once per request
    gw.stop();
    let (code, out, err) =
        run_cli(&["usage", "--data-dir", gw.data_dir().to_str().unwrap(), "--by", "provider", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    let up = rows.as_array().unwrap().iter().find(|r| r["group"] == "up").unwrap();
    assert_eq!(up["requests"], 23, "{out}");
    assert!(rows.as_array().unwrap().iter().all(|r| r["group"] != "dead"), "{out}");
}

#[tokio::test]
async fn what_failover_cannot_fix_is_answered_as_it_is() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &extra(free_port()));
    // every target down: the last error, 502
    let r = post_as(gw.url(), MAIN_KEY, &[], &ask("all-dead", "x")).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_unreachable");
    // a request the provider rejects (400) is not retried elsewhere
    let calls = mock_requests(&mock.url).await;
    let r = post_as(
        gw.url(),
        MAIN_KEY,
        &[("x-mock-status", "400")],
        &json!({"model": "chat",
        "messages": [{"role": "user", "content": "bad"}]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(mock_requests(&mock.url).await, calls + 1, "one call, no failover");
}

#[tokio::test]
async fn an_open_breaker_keeps_requests_away_until_its_target_recovers() {
    let mock = mock_upstream();
    let port = free_port();
    let flaky = mock_upstream_at(port);
    let extra = format!(
        r#"
[[providers]]
name = "flaky"
kind = "openai-compatible"
base_url = "http://127.0.0.1:{port}/v1"
breaker_failures = 2
breaker_cooldown_ms = 400

[[models]]
alias = "fl"
strategy = "failover"
targets = [{{ provider = "flaky", model = "gpt-4o-mini" }}, {{ provider = "up", model = "gpt-4o-mini" }}]
"#
    );
    let gw = Gateway::start_with(&mock.url, &extra);
    let nocache = [("cache-control", "no-cache")];
    let r = post_as(gw.url(), MAIN_KEY, &nocache, &ask("fl", "first")).await;
    assert_eq!(header(&r, "x-switchyard-provider"), "flaky");

    // the flaky target goes away: two failures fail over and open its breaker
    drop(flaky);
    for i in 0..2 {
        let r = post_as(gw.url(), MAIN_KEY, &nocache, &ask("fl", &format!("down {i}"))).await;
        assert_eq!(header(&r, "x-switchyard-provider"), "up");
    }
    let failovers = "switchyard_failovers_total{from=\"flaky\"}";
    assert_eq!(metric(gw.url(), failovers).await, Some(2.0));
    assert_eq!(metric(gw.url(), "switchyard_target_up{provider=\"flaky\",model=\"gpt-4o-mini\"}").await, Some(0.0));
    // while it is open, requests go straight to the next target: no more failovers
    for i in 0..3 {
        let r = post_as(gw.url(), MAIN_KEY, &nocache, &ask("fl", &format!("open {i}"))).await;
        assert_eq!(header(&r, "x-switchyard-provider"), "up");
    }
    assert_eq!(metric(gw.url(), failovers).await, Some(2.0));

    // back on the same address: after the cooldown a half-open try succeeds and closes it
    let _flaky = mock_upstream_at(port);
    let mut answered_by_flaky = false;
    for i in 0..250 {
        let r = post_as(gw.url(), MAIN_KEY, &nocache, &ask("fl", &format!("probe {i}"))).await;
        if header(&r, "x-switchyard-provider") == "flaky" {
            answered_by_flaky = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(answered_by_flaky, "the recovered target never got traffic back");
    assert_eq!(metric(gw.url(), "switchyard_target_up{provider=\"flaky\",model=\"gpt-4o-mini\"}").await, Some(1.0));
}

#[tokio::test]
async fn retryable_failures_are_retried_on_the_same_target_with_backoff() {
    let mock = mock_upstream();
    let extra = r#"
[[providers]]
name = "retrying"
kind = "openai-compatible"
base_url = "MOCK/v1"
max_retries = 3
breaker_failures = 0
forward_headers = ["x-mock-status", "x-mock-fail-first", "x-mock-fail-key"]

[[models]]
alias = "retry"
targets = [{ provider = "retrying", model = "gpt-4o-mini" }]
"#
    .replace("MOCK", &mock.url);
    let gw = Gateway::start_with(&mock.url, &extra);
    // two 503s, then an answer: the client sees the answer
    let calls = mock_requests(&mock.url).await;
    let h = [("x-mock-fail-first", "2"), ("x-mock-fail-key", "k1")];
    let r = post_as(gw.url(), MAIN_KEY, &h, &ask("retry", "after two failures")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(mock_requests(&mock.url).await, calls + 3, "two failures and one success");
    // a 429 with retry-after: 1 is waited out, then retried
    let h = [("x-mock-fail-first", "1"), ("x-mock-fail-key", "k2"), ("x-mock-status", "429")];
    let started = std::time::Instant::now();
    let r = post_as(gw.url(), MAIN_KEY, &h, &ask("retry", "after a 429")).await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "retry-after was honoured");
    // more failures than retries: the last error
    let h = [("x-mock-fail-first", "9"), ("x-mock-fail-key", "k3")];
    let calls = mock_requests(&mock.url).await;
    let r = post_as(gw.url(), MAIN_KEY, &h, &ask("retry", "always failing")).await;
    assert_eq!(r.status(), 502);
    assert_eq!(mock_requests(&mock.url).await, calls + 4, "the first try and three retries");
    // a 400 is not retried
    let h = [("x-mock-fail-first", "1"), ("x-mock-fail-key", "k4"), ("x-mock-status", "400")];
    let calls = mock_requests(&mock.url).await;
    let r = post_as(gw.url(), MAIN_KEY, &h, &ask("retry", "bad request")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(mock_requests(&mock.url).await, calls + 1);
}

#[tokio::test]
async fn cost_routing_picks_the_cheapest_target_that_answers() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &extra(free_port()));
    let r = post_as(gw.url(), MAIN_KEY, &[], &ask("cheapest", "cheap please")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-model"), "gpt-4o-mini", "gpt-4o-mini is the cheaper in pricing.toml");
    // the cheapest is down: the next cheapest answers
    let r = post_as(gw.url(), MAIN_KEY, &[], &ask("cheapest-healthy", "cheap but up")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-model"), "gpt-4o");
}
