//! Access control and budgets over real HTTP: expired keys, team and key policies
//! (models, endpoints, max_tokens, priority), limits shared by a team and by an alias,
//! and a USD budget that admits exactly what it can pay for, concurrently, across a restart.

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::common::*;

const POLICIES: &str = r#"
[[models]]
alias = "metered"
targets = [{ provider = "up", model = "gpt-4o-mini", input_per_mtok = 0.0, output_per_mtok = 1000000.0 }]

[[models]]
alias = "capped-alias"
rpm = 2
targets = [{ provider = "up", model = "gpt-4o-mini" }]

[[teams]]
id = "search"
models = ["chat", "capped-alias"]
endpoints = ["chat"]
max_tokens = 64
max_priority = "normal"
rpm = 3

[[keys]]
id = "search-a"
key = "sk-search-a-0001"
team = "search"

[[keys]]
id = "search-b"
key = "sk-search-b-0001"
team = "search"

[[keys]]
id = "expired"
key = "sk-expired-0001"
models = ["*"]
expires_at = "2020-01-01T00:00:00Z"

[[keys]]
id = "budget"
key = "sk-budget-0001"
models = ["metered"]
budget_usd = 50.0
budget_period = "total"
"#;

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

async fn error_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn key_and_team_policies_refuse_what_they_do_not_allow() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, POLICIES);
    let url = gw.url();
    // an expired key
    let r = post_as(url, "sk-expired-0001", &[], &ask("chat", "hi")).await;
    assert_eq!(error_code(r).await, (401, "expired_api_key".into()));
    // the team allows `chat` but not `claude`
    let r = post_as(url, "sk-search-a-0001", &[], &ask("chat", "allowed")).await;
    assert_eq!(r.status(), 200);
    let r = post_as(url, "sk-search-a-0001", &[], &ask("claude", "forbidden")).await;
    assert_eq!(error_code(r).await, (403, "model_not_allowed".into()));
    // chat only: embeddings and the Batch API are refused
    let r = client()
        .post(format!("{url}/v1/embeddings"))
        .bearer_auth("sk-search-a-0001")
        .json(&json!({"model": "chat", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (403, "endpoint_not_allowed".into()));
    let r = client().get(format!("{url}/v1/batches")).bearer_auth("sk-search-a-0001").send().await.unwrap();
    assert_eq!(error_code(r).await, (403, "endpoint_not_allowed".into()));
    // max_tokens above the team's cap
    let mut big = ask("chat", "long answer");
    big["max_tokens"] = json!(65);
    let r = post_as(url, "sk-search-b-0001", &[], &big).await;
    assert_eq!(error_code(r).await, (403, "max_tokens_not_allowed".into()));
    // priority above the team's maximum
    let r = post_as(url, "sk-search-b-0001", &[("x-switchyard-priority", "high")], &ask("chat", "urgent")).await;
    assert_eq!(error_code(r).await, (403, "priority_not_allowed".into()));
    let r = post_as(url, "sk-search-b-0001", &[("x-switchyard-priority", "low")], &ask("chat", "whenever")).await;
    assert_eq!(r.status(), 200);
    // /v1/models lists what the key and its team both allow
    let v: Value = client()
        .get(format!("{url}/v1/models"))
        .bearer_auth("sk-search-a-0001")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["capped-alias", "chat"]);
}

#[tokio::test]
async fn a_team_limit_is_shared_by_its_keys_and_an_alias_limit_by_everyone() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, POLICIES);
    let url = gw.url();
    let nc = [("cache-control", "no-cache")];
    for (key, n) in [("sk-search-a-0001", 2), ("sk-search-b-0001", 1)] {
        for i in 0..n {
            let r = post_as(url, key, &nc, &ask("chat", &format!("{key} {i}"))).await;
            assert_eq!(r.status(), 200);
        }
    }
    // the team's 3 per minute are spent, whichever key asks; the headers say so
    let r = post_as(url, "sk-search-b-0001", &nc, &ask("chat", "one too many")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    assert!(!header(&r, "retry-after").is_empty());
    // an alias limit holds across keys that have no limits of their own
    for i in 0..2 {
        let r = post_as(url, MAIN_KEY, &nc, &ask("capped-alias", &format!("alias {i}"))).await;
        assert_eq!(r.status(), 200);
    }
    let r = post_as(url, MAIN_KEY, &nc, &ask("capped-alias", "alias 3")).await;
    assert_eq!(error_code(r).await, (429, "rate_limit_requests".into()));
    // the main key itself is not limited
    assert_eq!(post_as(url, MAIN_KEY, &nc, &ask("chat", "free")).await.status(), 200);
}

#[tokio::test]
async fn a_budget_admits_exactly_what_it_can_pay_for_and_survives_a_restart() {
    let mock = mock_upstream();
    let mut gw = Gateway::start_with(&mock.url, POLICIES);
    let url = gw.url().to_string();
    // each request reserves 5 output tokens at $1 each: $5 of a $50 budget
    let c = client();
    let statuses: Vec<(u16, String)> = futures_util::stream::iter(0..100)
        .map(|i| {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let mut body = ask("metered", &format!("budget {i}"));
                body["max_tokens"] = json!(5);
                let r = c
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth("sk-budget-0001")
                    .header("x-mock-latency-ms", "400")
                    .header("cache-control", "no-cache")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                error_code(r).await
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 10, "{statuses:?}");
    assert!(statuses.iter().all(|(s, c)| *s == 200 || (*s == 429 && c == "insufficient_quota")), "{statuses:?}");
    let refused = "switchyard_rate_limited_total{kind=\"budget\"}";
    assert_eq!(metric(&url, refused).await, Some(90.0));
    // the real cost replaced the reservations: what is left is what the gauge says
    let remaining = metric(&url, "switchyard_budget_remaining_usd{scope=\"key:budget\"}").await.unwrap();
    assert!(remaining < 50.0, "{remaining}");

    // spend is read back from the ledger: a restart does not refill the budget
    gw.restart();
    let spent = 50.0 - remaining;
    let mut body = ask("metered", "after restart");
    body["max_tokens"] = json!(5);
    let r = post_as(gw.url(), "sk-budget-0001", &[("cache-control", "no-cache")], &body).await;
    let want = if spent + 5.0 > 50.0 { 429 } else { 200 };
    assert_eq!(r.status(), want, "spent {spent} before the restart");
    wait_for_metric(gw.url(), "switchyard_budget_remaining_usd{scope=\"key:budget\"}", |v| v <= remaining).await;
}
