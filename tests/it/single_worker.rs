//! `server.workers = 1`: the engine's actors (rate limiter, cache, router, provider
//! workers) run on the single HTTP worker's thread. Everything that reaches them from
//! elsewhere (NATS, the admin API, a reload that starts a new provider worker) must
//! still work, and the ledger must still get every record. (Two workers, as in most
//! tests, share the actors the same way; more than two give them a thread of their own.)

use async_nats::HeaderMap;
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn one_worker_hosts_the_engine_for_http_nats_reload_and_the_ledger() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let mut gw = Gateway::start_single_worker(&mock.url, &nats_section(&nats.url(), "sw", "jobs = false"));
    gw.wait_nats("connected").await;

    // chat, stream, embeddings through the hosted actors
    let r = post(gw.url(), "/v1/chat/completions", chat_body("one thread")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "up");
    let v: Value = r.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("one thread"));
    let s = stream_chat(gw.url(), &[], &chat_body("streamed on one thread")).await;
    assert_eq!(s.status, 200);
    assert!(s.done(), "the stream ends with [DONE]");
    assert!(s.text().contains("streamed on one thread"));
    let r = post(gw.url(), "/v1/embeddings", json!({"model": "embed", "input": ["a", "b"]})).await;
    assert_eq!(r.status(), 200);

    // the limiter is there: rpm = 2 refuses the third
    let body = chat_body("limited");
    for _ in 0..2 {
        assert_eq!(post_as(gw.url(), "sk-test-rpm", &[], &body).await.status(), 200);
    }
    let r = post_as(gw.url(), "sk-test-rpm", &[], &body).await;
    assert_eq!(r.status(), 429);
    assert!(!header(&r, "retry-after").is_empty());

    // a NATS request comes from another thread to the hosted actors
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let mut h = HeaderMap::new();
    h.insert("Authorization", format!("Bearer {MAIN_KEY}").as_str());
    let m = nc.request_with_headers("sw.v1.chat", h, chat_body("over nats").to_string().into()).await.unwrap();
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("over nats"), "{v}");

    // a reload that adds a provider starts its worker on the hosting thread
    let mut text = std::fs::read_to_string(&gw.config).unwrap();
    text.push_str(&format!(
        "\n[[providers]]\nname = \"added\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\n\
         [[models]]\nalias = \"added\"\ntargets = [{{ provider = \"added\", model = \"mock-chat\" }}]\n",
        mock.url
    ));
    std::fs::write(&gw.config, text).unwrap();
    let r = client().post(format!("{}/admin/reload", gw.url())).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post(
        gw.url(),
        "/v1/chat/completions",
        json!({"model": "added", "messages": [{"role": "user", "content": "new"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "added");

    // every request that reached a provider is in the ledger after a graceful stop
    gw.restart();
    let r = client().get(format!("{}/admin/usage?by=key", gw.url())).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let requests = |key: &str| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["group"] == key)
            .map_or(0, |row| row["requests"].as_u64().unwrap())
    };
    // main: chat, stream, embeddings, NATS chat, the added alias; rpm: 2 served (the
    // refused one never reached a provider)
    assert_eq!(requests("main"), 5, "{v}");
    assert_eq!(requests("rpm"), 2, "{v}");
}

/// More than two workers: the actors get a thread of their own, and every worker's
/// requests reach them across threads. Concurrent requests on all workers are served,
/// the limiter counts them all, and a stream ends cleanly.
#[tokio::test]
async fn three_workers_share_an_engine_on_its_own_thread() {
    let mock = mock_upstream();
    let gw = Gateway::start_config(|dir| config_text(dir, &mock.url, "").replace("workers = 2", "workers = 3"));
    let calls = (0..24).map(|i| {
        let url = gw.url().to_string();
        async move { post(&url, "/v1/chat/completions", chat_body(&format!("worker call {i}"))).await.status() }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let s = stream_chat(gw.url(), &[], &chat_body("streamed across threads")).await;
    assert!(s.done(), "the stream ends with [DONE]");
    // one limiter for all three workers: rpm = 2 refuses the third, wherever it lands
    let body = chat_body("limited");
    let mut refused = 0;
    for _ in 0..3 {
        if post_as(gw.url(), "sk-test-rpm", &[], &body).await.status() == 429 {
            refused += 1;
        }
    }
    assert_eq!(refused, 1);
}
