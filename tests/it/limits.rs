use serde_json::{json, Value};

use crate::common::*;

async fn chat_as(gw: &str, key: &str, body: Value) -> reqwest::Response {
    post_as(gw, key, &[], &body).await
}

const INFLIGHT: &str = "switchyard_inflight_requests ";

/// Sends `body` as `key` with a 600 ms provider latency and returns once the mock
/// provider holds it (so its reservation is taken); the task yields its status.
async fn held_at_the_provider(gw: &str, mock: &str, key: &str, body: Value) -> tokio::task::JoinHandle<u16> {
    let (url, key) = (gw.to_string(), key.to_string());
    let slow = tokio::spawn(async move {
        let r = client()
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-mock-latency-ms", "600")
            .json(&body)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    });
    for _ in 0..200 {
        let v: Value = client().get(format!("{mock}/mock/stats")).send().await.unwrap().json().await.unwrap();
        if v["max_inflight"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    slow
}

#[tokio::test]
async fn requests_per_minute() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let a = chat_as(gw.url(), "sk-test-rpm", chat_body("r1")).await;
    assert_eq!(a.status(), 200);
    assert_eq!(header(&a, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&a, "x-ratelimit-remaining-requests"), "1");
    assert_eq!(chat_as(gw.url(), "sk-test-rpm", chat_body("r2")).await.status(), 200);
    let r = chat_as(gw.url(), "sk-test-rpm", chat_body("r3")).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=30).contains(&retry), "retry-after {retry}");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    assert!(!header(&r, "x-ratelimit-reset-requests").is_empty());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_requests");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    // other keys are not affected
    assert_eq!(post(gw.url(), "/v1/chat/completions", chat_body("r4")).await.status(), 200);
}

#[tokio::test]
async fn tokens_per_minute_reserve_max_tokens() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    // tpm = 100: a request that may use 90 tokens fits; the real usage (about 20) is
    // reconciled after, so the next small request fits too
    let mut body = chat_body("tokens one");
    body["max_tokens"] = json!(80);
    let r = chat_as(gw.url(), "sk-test-tpm", body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "100");
    let mut body = chat_body("tokens two");
    body["max_tokens"] = json!(40);
    assert_eq!(chat_as(gw.url(), "sk-test-tpm", body).await.status(), 200);
    // a request that could use far more than what is left is refused
    let mut body = chat_body("tokens three");
    body["max_tokens"] = json!(95);
    let r = chat_as(gw.url(), "sk-test-tpm", body).await;
    assert_eq!(r.status(), 429);
    assert!(header(&r, "retry-after").parse::<u64>().unwrap() >= 1);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_tokens");
}

#[tokio::test]
async fn concurrent_requests_per_key() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let slow = {
        let url = format!("{}/v1/chat/completions", gw.url());
        tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth("sk-test-conc")
                .header("x-mock-latency-ms", "800")
                .json(&chat_body("slow"))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    wait_for_metric(gw.url(), INFLIGHT, |v| v >= 1.0).await;
    let r = chat_as(gw.url(), "sk-test-conc", chat_body("second")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_concurrency");
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(chat_as(gw.url(), "sk-test-conc", chat_body("third")).await.status(), 200);
}

#[tokio::test]
async fn a_full_provider_queue_answers_503() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    // provider `narrow`: concurrency 1, queue_size 0
    let slow = {
        let url = format!("{}/v1/chat/completions", gw.url());
        tokio::spawn(async move {
            let body = json!({"model": "narrow", "messages": [{"role": "user", "content": "slow"}]});
            client()
                .post(url)
                .bearer_auth(MAIN_KEY)
                .header("x-mock-latency-ms", "800")
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    wait_for_metric(gw.url(), INFLIGHT, |v| v >= 1.0).await;
    let r = post(
        gw.url(),
        "/v1/chat/completions",
        json!({"model": "narrow", "messages": [{"role": "user", "content": "fast"}]}),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after"), "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "queue_full");
    assert_eq!(slow.await.unwrap(), 200);
}

/// A huge `max_tokens` reserves at most one whole bucket: it waits for a full bucket and
/// takes it, the others wait for it (with a truthful `retry-after` of at most a minute)
/// and get their tokens back when it settles at its real usage. A prompt larger than the
/// limit itself can never be served: a 400, not a 429 to retry for ever.
#[tokio::test]
async fn a_huge_max_tokens_takes_one_bucket_at_most() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let mut huge = chat_body("huge reservation");
    huge["max_tokens"] = json!(1_000_000_000_000_000u64);
    // at the provider (admitted, holding the bucket) for 600 ms
    let slow = held_at_the_provider(gw.url(), &mock.url, "sk-test-tpm", huge).await;
    // while it holds the bucket: refused, told to come back within the minute
    let r = chat_as(gw.url(), "sk-test-tpm", chat_body("meanwhile")).await;
    assert_eq!(r.status(), 429);
    let after: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&after), "retry-after {after}");
    assert_eq!(slow.await.unwrap(), 200);
    // settled at its real usage: the bucket is back
    assert_eq!(chat_as(gw.url(), "sk-test-tpm", chat_body("afterwards")).await.status(), 200);
    // a prompt beyond the limit itself
    let r = chat_as(gw.url(), "sk-test-tpm", chat_body(&"many words here ".repeat(60))).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("can never be served"), "{v}");
}

/// An alias's `max_output_tokens` caps what a request reserves, whatever `max_tokens` it
/// asks for: a huge `max_tokens` leaves room in the bucket for others.
#[tokio::test]
async fn the_alias_output_limit_caps_the_reservation() {
    let mock = mock_upstream();
    let extra = r#"
[[models]]
alias = "capped"
max_output_tokens = 30
targets = [{ provider = "up", model = "gpt-4o-mini" }]

[[keys]]
id = "capped-key"
key = "sk-test-capped"
models = ["capped"]
tpm = 100
"#;
    let gw = Gateway::start_with(&mock.url, extra);
    let body = |text: &str, max: u64| json!({"model": "capped", "max_tokens": max, "messages": [{"role": "user", "content": text}]});
    let slow = held_at_the_provider(gw.url(), &mock.url, "sk-test-capped", body("huge but capped", 1_000_000)).await;
    // the first holds its prompt and 30, not a whole bucket: this one fits beside it
    let r = chat_as(gw.url(), "sk-test-capped", body("meanwhile", 20)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(slow.await.unwrap(), 200);
}
