//! Two gateway instances on one nats-server share their limits and budgets through
//! key-value buckets: together they admit what one would, not twice as much.

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::common::*;

pub(crate) const KEYS: &str = r#"
[[models]]
alias = "metered"
targets = [{ provider = "up", model = "gpt-4o-mini", input_per_mtok = 0.0, output_per_mtok = 1000000.0 }]

[[keys]]
id = "shared-rpm"
key = "sk-shared-rpm-0001"
models = ["chat"]
rpm = 60

[[keys]]
id = "shared-budget"
key = "sk-shared-budget-01"
models = ["metered"]
budget_usd = 50.0
budget_period = "total"
"#;

/// Fires `n` requests at each gateway at once; returns the statuses.
pub(crate) async fn burst(urls: &[String], key: &str, body: impl Fn(usize) -> Value, n: usize) -> Vec<u16> {
    let c = client();
    let jobs: Vec<(String, Value)> =
        (0..n).flat_map(|i| urls.iter().map(move |u| (u.clone(), i))).map(|(u, i)| (u, body(i))).collect();
    futures_util::stream::iter(jobs)
        .map(|(url, body)| {
            let c = c.clone();
            async move {
                c.post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(key)
                    .header("cache-control", "no-cache")
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(64)
        .collect()
        .await
}

#[tokio::test]
async fn two_instances_admit_one_limit_not_two() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let section = nats_section(&nats.url(), "shared", "jobs = false\nrequest_reply = false");
    let a = Gateway::start_with(&mock.url, &format!("{KEYS}{section}"));
    let b = Gateway::start_with(&mock.url, &format!("{KEYS}{section}"));
    a.wait_ready("limits", "shared").await;
    b.wait_ready("limits", "shared").await;
    let urls = vec![a.url().to_string(), b.url().to_string()];

    // budget (no window): $5 reserved per request, $50 in all: 10 across both
    let statuses = burst(
        &urls,
        "sk-shared-budget-01",
        |i| json!({"model": "metered", "max_tokens": 5, "messages": [{"role": "user", "content": format!("b {i}")}]}),
        50,
    )
    .await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 10, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));

    // 60 requests per minute: the window is the UTC minute, so start well inside one
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if secs > 40 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - secs)).await;
    }
    let statuses = burst(
        &urls,
        "sk-shared-rpm-0001",
        |i| json!({"model": "chat", "messages": [{"role": "user", "content": format!("r {i}")}]}),
        70,
    )
    .await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 60, "two instances with a shared 60/min admit 60, not 120: {statuses:?}");
    // both instances served some of them
    for gw in [&a, &b] {
        let served = metric(gw.url(), "switchyard_requests_total{model=\"chat\",provider=\"up\",status=\"200\"}").await;
        assert!(served.unwrap_or(0.0) >= 1.0, "{served:?}");
    }
}

/// Polls until `key` gets `status` from `gw` (replication is asynchronous).
pub(crate) async fn wait_status(gw: &Gateway, key: &str, status: u16) {
    for _ in 0..500 {
        let r = post_as(
            gw.url(),
            key,
            &[("cache-control", "no-cache")],
            &json!({"model": "chat",
            "messages": [{"role": "user", "content": "replicated?"}]}),
        )
        .await;
        if r.status().as_u16() == status {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{key} never got {status} from {}", gw.url());
}

/// Creates virtual key `id` (allowed `chat`) through `gw`'s admin API: its secret.
pub(crate) async fn create_key(gw: &Gateway, id: &str) -> String {
    let r = client()
        .post(format!("{}/admin/keys", gw.url()))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"id": id, "models": ["chat"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["key"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_virtual_key_made_on_one_instance_works_on_the_other_until_revoked() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let section = nats_section(&nats.url(), "vk", "jobs = false\nrequest_reply = false\nshared_limits = false");
    let a = Gateway::start_with(&mock.url, &section);
    let b = Gateway::start_with(&mock.url, &section);
    a.wait_nats("connected").await;
    b.wait_nats("connected").await;
    let secret = create_key(&a, "roaming").await;
    // created on A, served by B
    wait_status(&b, &secret, 200).await;
    // revoked on B, refused by A
    let r = client().delete(format!("{}/admin/keys/roaming", b.url())).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    wait_status(&a, &secret, 401).await;
    // a third instance that starts later learns every key, revoked ones included
    let c = Gateway::start_with(&mock.url, &section);
    c.wait_nats("connected").await;
    let listed = || async {
        let r = client().get(format!("{}/admin/keys", c.url())).bearer_auth(ADMIN_KEY).send().await.unwrap();
        r.text().await.unwrap()
    };
    for _ in 0..500 {
        if listed().await.contains("roaming") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let text = listed().await;
    assert!(text.contains("roaming") && text.contains("\"revoked\":true"), "{text}");
    wait_status(&c, &secret, 401).await;
}

#[tokio::test]
async fn with_nats_gone_each_instance_enforces_the_limits_alone() {
    let mut nats = NatsServer::start();
    let mock = mock_upstream();
    let section = nats_section(&nats.url(), "gone", "jobs = false\nrequest_reply = false");
    let gw = Gateway::start_with(&mock.url, &format!("{KEYS}{section}"));
    gw.wait_ready("limits", "shared").await;
    let body = |i: usize| json!({"model": "chat", "messages": [{"role": "user", "content": format!("x {i}")}]});
    let nc = [("cache-control", "no-cache")];
    assert_eq!(post_as(gw.url(), "sk-shared-rpm-0001", &nc, &body(0)).await.status(), 200);
    nats.stop();
    gw.wait_nats("disconnected").await;
    // the bucket cannot be reached: requests are still limited, by this instance
    let mut ok = 0;
    for i in 1..=80 {
        ok += usize::from(post_as(gw.url(), "sk-shared-rpm-0001", &nc, &body(i)).await.status() == 200);
    }
    // at most the limit, plus what was left of the lease this instance held (a tenth)
    assert!(ok <= 66, "{ok} admitted with a 60/min limit");
    assert!(ok >= 1);
    let fallback = metric(gw.url(), "switchyard_shared_limits_fallback_total").await.unwrap_or(0.0);
    assert!(fallback >= 1.0, "{fallback}");
}

/// With `shared_limits_unavailable = "refuse"`, what the counters cannot decide is a 503,
/// never an admission: once NATS is gone only what is left of the instance's lease is
/// admitted.
#[tokio::test]
async fn with_nats_gone_and_refuse_nothing_past_the_lease_is_admitted() {
    let mut nats = NatsServer::start();
    let mock = mock_upstream();
    let extra = "jobs = false\nrequest_reply = false\nshared_limits_unavailable = \"refuse\"";
    let section = nats_section(&nats.url(), "refuse", extra);
    let gw = Gateway::start_with(&mock.url, &format!("{KEYS}{section}"));
    gw.wait_ready("limits", "shared").await;
    let body = |i: usize| json!({"model": "chat", "messages": [{"role": "user", "content": format!("x {i}")}]});
    let nc = [("cache-control", "no-cache")];
    assert_eq!(post_as(gw.url(), "sk-shared-rpm-0001", &nc, &body(0)).await.status(), 200);
    nats.stop();
    gw.wait_nats("disconnected").await;
    let mut statuses = Vec::new();
    for i in 1..=20 {
        statuses.push(post_as(gw.url(), "sk-shared-rpm-0001", &nc, &body(i)).await.status().as_u16());
    }
    // the first lease was a tenth of 60: five of it are left
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    let refused = metric(gw.url(), "switchyard_shared_limits_fallback_total{action=\"refuse\"}").await;
    assert!(refused.unwrap_or(0.0) >= 1.0, "{refused:?}");
}
