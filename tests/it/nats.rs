//! NATS ingress against a real `nats-server` (JetStream on, temp store, free port):
//! request/reply, streamed replies, durable jobs with results and usage events,
//! retries, priorities, crashes and restarts.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::{HeaderMap, Message};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::common::*;

async fn connect(url: &str) -> async_nats::Client {
    async_nats::connect(url).await.expect("connect to nats-server")
}

fn auth(key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Authorization", format!("Bearer {key}").as_str());
    h
}

fn hdr(m: &Message, name: &str) -> Option<String> {
    m.headers.as_ref()?.get(name).map(|v| v.as_str().to_string())
}

async fn request(nc: &async_nats::Client, subject: &str, headers: HeaderMap, body: Value) -> Message {
    let fut = nc.request_with_headers(subject.to_string(), headers, body.to_string().into());
    tokio::time::timeout(Duration::from_secs(20), fut).await.expect("reply in time").expect("request")
}

async fn stream_len(js: &async_nats::jetstream::Context, name: &str) -> usize {
    match js.get_stream(name).await {
        Ok(s) => s.get_info().await.map(|i| i.state.messages as usize).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Waits (up to `secs`) until the gateway has created the stream (and its consumers).
async fn wait_stream(js: &async_nats::jetstream::Context, name: &str, secs: u64) {
    for _ in 0..secs * 50 {
        if let Ok(mut s) = js.get_stream(name).await {
            if s.info().await.is_ok_and(|i| i.state.consumer_count >= 3) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the gateway never created {name}");
}

/// Waits (up to `secs`) until the stream holds at least `n` messages.
async fn wait_len(js: &async_nats::jetstream::Context, name: &str, n: usize, secs: u64) {
    for _ in 0..secs * 50 {
        if stream_len(js, name).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} never reached {n} messages (has {})", stream_len(js, name).await);
}

/// Publishes a job and waits for JetStream's ack.
async fn publish_job(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    lane: &str,
    job: Value,
    extra: &[(&str, &str)],
) {
    let mut h = auth(MAIN_KEY);
    if let Some(id) = job["id"].as_str() {
        h.insert("Nats-Msg-Id", id);
    }
    for (k, v) in extra {
        h.insert(*k, *v);
    }
    let subject = format!("{prefix}.v1.jobs.{lane}");
    js.publish_with_headers(subject, h, job.to_string().into()).await.expect("publish").await.expect("stored");
}

fn chat_job(id: &str, text: &str) -> Value {
    json!({"id": id, "endpoint": "chat", "body": chat_body(text)})
}

/// Results keyed by job id (every result message, so duplicates would show).
fn by_id(results: &[Value], field: &str) -> HashMap<String, Vec<Value>> {
    let mut m: HashMap<String, Vec<Value>> = HashMap::new();
    for r in results {
        m.entry(r[field].as_str().unwrap_or("").to_string()).or_default().push(r.clone());
    }
    m
}

#[tokio::test]
async fn request_reply_answers_errors_and_streams_in_order() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    // a cluster's servers, comma-separated: one of them is down
    let servers = format!("nats://127.0.0.1:1, {}", nats.url());
    let gw = Gateway::start_with(&mock.url, &nats_section(&servers, "rr", "jobs = false"));
    gw.wait_nats("connected").await;
    let nc = connect(&nats.url()).await;

    // chat
    let m = request(&nc, "rr.v1.chat", auth(MAIN_KEY), chat_body("hello over nats")).await;
    assert_eq!(hdr(&m, "x-switchyard-status"), None);
    assert_eq!(hdr(&m, "x-switchyard-provider").as_deref(), Some("up"));
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("hello over nats"));

    // embeddings
    let m = request(&nc, "rr.v1.embeddings", auth(MAIN_KEY), json!({"model": "embed", "input": ["a", "b"]})).await;
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);

    // errors: the status in a header, the OpenAI error body
    let m = request(&nc, "rr.v1.chat", auth("sk-wrong"), chat_body("x")).await;
    assert_eq!(hdr(&m, "x-switchyard-status").as_deref(), Some("401"));
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let m = request(&nc, "rr.v1.chat", HeaderMap::new(), chat_body("x")).await;
    assert_eq!(hdr(&m, "x-switchyard-status").as_deref(), Some("401"));
    let m = request(
        &nc,
        "rr.v1.chat",
        auth(MAIN_KEY),
        json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(hdr(&m, "x-switchyard-status").as_deref(), Some("404"));
    let bad = nc.request_with_headers("rr.v1.chat".to_string(), auth(MAIN_KEY), "{not json".into());
    let m = tokio::time::timeout(Duration::from_secs(10), bad).await.unwrap().unwrap();
    assert_eq!(hdr(&m, "x-switchyard-status").as_deref(), Some("400"));
    // x-api-key works too, header names in any case
    let mut h = HeaderMap::new();
    h.insert("X-Api-Key", MAIN_KEY);
    let m = request(&nc, "rr.v1.chat", h, chat_body("x")).await;
    assert_eq!(hdr(&m, "x-switchyard-status"), None);

    // a streamed reply: chunks in order, then the end marker
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
    let mut body = chat_body("one two three four five");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    nc.publish_with_reply_and_headers("rr.v1.chat", inbox, auth(MAIN_KEY), body.to_string().into()).await.unwrap();
    let mut text = String::new();
    let mut saw_usage = false;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next()).await.expect("chunk").expect("open");
        if hdr(&m, "x-switchyard-stream").as_deref() == Some("end") {
            assert_eq!(hdr(&m, "x-switchyard-status"), None, "a clean end");
            break;
        }
        let c: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(c["object"], "chat.completion.chunk");
        if let Some(t) = c["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        saw_usage |= c["usage"]["total_tokens"].as_u64().is_some();
    }
    assert!(text.contains("one two three four five"), "{text}");
    assert!(saw_usage);

    // a stream cut by the provider ends with an error, never a clean end
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
    let mut h = auth(MAIN_KEY);
    h.insert("x-mock-disconnect-after", "2");
    let mut body = chat_body("cut me off please now");
    body["stream"] = json!(true);
    nc.publish_with_reply_and_headers("rr.v1.chat", inbox, h, body.to_string().into()).await.unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next()).await.expect("chunk").expect("open");
        if hdr(&m, "x-switchyard-stream").as_deref() == Some("end") {
            assert_eq!(hdr(&m, "x-switchyard-status").as_deref(), Some("502"));
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            assert!(v["error"]["message"].is_string());
            break;
        }
    }
    // every NATS request that reached the provider is in the metrics like HTTP's
    wait_for_metric(gw.url(), "switchyard_nats_requests_total{api=\"chat\",status=\"200\"}", |v| v >= 3.0).await;
}

#[tokio::test]
async fn jobs_get_exactly_one_result_and_one_usage_event_each() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "jq", "ack_wait_secs = 5"));
    gw.wait_nats("connected").await;
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_stream(&js, "JQ_JOBS", 10).await;
    for i in 0..20 {
        let lane = ["high", "normal", "low"][i % 3];
        publish_job(&js, "jq", lane, chat_job(&format!("chat-{i}"), &format!("job number {i}")), &[]).await;
    }
    for i in 0..5 {
        let job = json!({"id": format!("emb-{i}"), "endpoint": "embeddings",
            "body": {"model": "embed", "input": format!("text {i}")}});
        publish_job(&js, "jq", "normal", job, &[]).await;
    }
    // the same publish again (same Nats-Msg-Id): JetStream drops it
    publish_job(&js, "jq", "normal", chat_job("chat-0", "job number 0"), &[]).await;
    wait_len(&js, "JQ_RESULTS", 25, 30).await;
    // a job id that already has a result, under a new message id: acked without a call
    let calls = mock_requests(&mock.url).await;
    publish_job(&js, "jq", "low", chat_job("chat-1", "again"), &[("Nats-Msg-Id", "another-msg-id")]).await;
    wait_for_metric(gw.url(), "switchyard_jobs_total{lane=\"low\",outcome=\"duplicate\"}", |v| v >= 1.0).await;
    assert_eq!(mock_requests(&mock.url).await, calls, "a job with a result is never sent again");

    let results = read_stream(&js, "JQ_RESULTS").await;
    let results = by_id(&results, "id");
    assert_eq!(results.len(), 25);
    for (id, rs) in &results {
        assert_eq!(rs.len(), 1, "{id} has one result");
        let r = &rs[0];
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["usage"]["request_id"], id.as_str());
        assert_eq!(r["attempts"], 1);
        if id.starts_with("chat") {
            let n = id.trim_start_matches("chat-");
            let content = r["response"]["choices"][0]["message"]["content"].as_str().unwrap();
            assert!(content.contains(&format!("job number {n}")), "{content}");
        } else {
            assert_eq!(r["response"]["object"], "list");
        }
    }
    let usage = read_stream(&js, "JQ_USAGE").await;
    let usage = by_id(&usage, "request_id");
    assert_eq!(usage.len(), 25);
    assert!(usage.values().all(|u| u.len() == 1 && u[0]["key_id"] == "main" && u[0]["status"] == 200));
    // the work queue is empty: every job was acked
    wait_len(&js, "JQ_RESULTS", 25, 1).await;
    for _ in 0..100 {
        if stream_len(&js, "JQ_JOBS").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stream_len(&js, "JQ_JOBS").await, 0);
    assert_eq!(metric(gw.url(), "switchyard_jobs_total{lane=\"normal\",outcome=\"completed\"}").await, Some(12.0));
}

#[tokio::test]
async fn failing_jobs_are_retried_then_failed_and_bad_jobs_fail_at_once() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let extra = "max_attempts = 3\nretry_backoff_ms = 50\nretry_backoff_max_ms = 200\nack_wait_secs = 5";
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "jf", extra));
    gw.wait_nats("connected").await;
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_stream(&js, "JF_JOBS", 10).await;

    // transient: the provider answers 503 every time -> 3 attempts, one failed result
    publish_job(&js, "jf", "normal", chat_job("always-503", "x"), &[("x-mock-status", "503")]).await;
    // permanent: unknown model, bad key, bad endpoint, bad body
    let unknown =
        json!({"id": "unknown-model", "body": {"model": "nope", "messages": [{"role": "user", "content": "x"}]}});
    publish_job(&js, "jf", "normal", unknown, &[]).await;
    let mut h = HeaderMap::new();
    h.insert("Authorization", "Bearer sk-wrong");
    js.publish_with_headers("jf.v1.jobs.normal", h, chat_job("bad-key", "x").to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    publish_job(&js, "jf", "normal", json!({"id": "bad-endpoint", "endpoint": "images", "body": {}}), &[]).await;
    let mut h = auth(MAIN_KEY);
    h.insert("Nats-Msg-Id", "not-json");
    js.publish_with_headers("jf.v1.jobs.low", h, "{this is not json".into()).await.unwrap().await.unwrap();
    publish_job(&js, "jf", "low", json!({"id": "bad.id", "body": chat_body("x")}), &[("Nats-Msg-Id", "dotted")]).await;

    wait_len(&js, "JF_RESULTS", 6, 30).await;
    let results = by_id(&read_stream(&js, "JF_RESULTS").await, "id");
    let one = |id: &str| -> Value {
        let rs = results.get(id).unwrap_or_else(|| panic!("no result for {id}: {results:?}"));
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0]["status"], "failed", "{}", rs[0]);
        rs[0].clone()
    };
    let r = one("always-503");
    assert_eq!(r["attempts"], 3);
    assert_eq!(r["error"]["status"], 502);
    assert_eq!(r["usage"]["status"], 502, "the final failed call is in the usage record");
    assert_eq!(r["usage"]["attempts"], 3);
    assert_eq!(mock_requests(&mock.url).await, 3);
    let r = one("unknown-model");
    assert_eq!(r["error"]["code"], "model_not_found");
    assert_eq!(r["attempts"], 1);
    assert!(r["usage"].is_null(), "nothing reached a provider");
    assert_eq!(one("bad-key")["error"]["code"], "invalid_api_key");
    assert!(one("bad-endpoint")["error"]["message"].as_str().unwrap().contains("endpoint"));
    assert!(one("not-json")["error"]["message"].as_str().unwrap().contains("invalid job body"));
    assert!(one("dotted")["error"]["message"].as_str().unwrap().contains("`id`"));
    // one usage event: the failed call that reached the provider
    let usage = read_stream(&js, "JF_USAGE").await;
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["request_id"], "always-503");
    wait_for_metric(gw.url(), "switchyard_jobs_total{lane=\"normal\",outcome=\"retried\"}", |v| v == 2.0).await;
}

#[tokio::test]
async fn high_priority_jobs_overtake_a_low_backlog() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "jp", "job_concurrency = 1\naging_ms = 600000"));
    gw.wait_nats("connected").await;
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_stream(&js, "JP_JOBS", 10).await;
    let slow = [("x-mock-latency-ms", "20")];
    for i in 0..30 {
        publish_job(&js, "jp", "low", chat_job(&format!("low-{i}"), "x"), &slow).await;
    }
    for i in 0..5 {
        publish_job(&js, "jp", "high", chat_job(&format!("high-{i}"), "x"), &slow).await;
    }
    wait_len(&js, "JP_RESULTS", 35, 60).await;
    let order: Vec<String> =
        read_stream(&js, "JP_RESULTS").await.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let last_high = order.iter().rposition(|id| id.starts_with("high")).unwrap();
    // the highs were published after 30 lows; a few lows may have started before
    // they arrived, the rest wait behind them
    assert!(last_high < 15, "high jobs finished at positions up to {last_high}: {order:?}");
}

#[tokio::test]
async fn low_jobs_age_into_service() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "ja", "job_concurrency = 1\naging_ms = 100"));
    gw.wait_nats("connected").await;
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_stream(&js, "JA_JOBS", 10).await;
    let slow = [("x-mock-latency-ms", "30")];
    publish_job(&js, "ja", "low", chat_job("old-low", "x"), &slow).await;
    // high jobs keep arriving (one per 15 ms) faster than they are served (30 ms each),
    // so there is always a fresh high job: without aging the low one would run last
    for i in 0..40 {
        publish_job(&js, "ja", "high", chat_job(&format!("high-{i}"), "x"), &slow).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    wait_len(&js, "JA_RESULTS", 41, 60).await;
    let order: Vec<String> =
        read_stream(&js, "JA_RESULTS").await.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let low = order.iter().position(|id| id == "old-low").unwrap();
    // once it has waited 2 x aging_ms longer than the oldest queued high job, the low
    // job goes first: it is not starved until the high arrivals stop
    assert!(low < 30, "the old low job ran at position {low}: {order:?}");
}

#[tokio::test]
async fn interactive_requests_keep_their_share_while_jobs_drain() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    // provider `up` has concurrency 16; jobs may hold half
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "js", "job_concurrency = 32"));
    gw.wait_nats("connected").await;
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_stream(&js, "JS_JOBS", 10).await;
    for i in 0..64 {
        publish_job(&js, "js", "normal", chat_job(&format!("j-{i}"), "x"), &[("x-mock-latency-ms", "150")]).await;
    }
    wait_for_metric(gw.url(), "switchyard_jobs_inflight", |v| v >= 8.0).await;
    // the job tasks run before their calls reach the mock: wait for the mock to see them
    let mut seen = 0;
    for _ in 0..500 {
        let stats: Value = client().get(format!("{}/mock/stats", mock.url)).send().await.unwrap().json().await.unwrap();
        seen = stats["max_inflight"].as_u64().unwrap();
        if seen >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, 8, "jobs hold at most jobs_share (0.5) of 16 slots");
    // 8 interactive requests at once all get a slot at once, next to the jobs
    let body = chat_body("now");
    let calls = (0..8)
        .map(|_| post_as(gw.url(), MAIN_KEY, &[("x-mock-latency-ms", "300"), ("cache-control", "no-cache")], &body));
    let responses = futures_util::future::join_all(calls).await;
    assert!(responses.iter().all(|r| r.status() == 200));
    let stats: Value = client().get(format!("{}/mock/stats", mock.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["max_inflight"], 16, "interactive requests took the other half");
    wait_len(&js, "JS_RESULTS", 64, 60).await;
}

#[tokio::test]
async fn kill_9_with_200_jobs_in_flight_loses_nothing_and_duplicates_nothing() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let section = nats_section(&nats.url(), "jk", "job_concurrency = 32\nack_wait_secs = 2");
    let mut gw = Gateway::start_with(&mock.url, &section);
    gw.wait_nats("connected").await;
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_stream(&js, "JK_JOBS", 10).await;
    for i in 0..200 {
        publish_job(&js, "jk", "normal", chat_job(&format!("k-{i}"), &format!("n{i}")), &[("x-mock-latency-ms", "40")])
            .await;
    }
    wait_len(&js, "JK_RESULTS", 40, 30).await;
    gw.kill9();
    let done_before = stream_len(&js, "JK_RESULTS").await;
    assert!(done_before < 200, "the crash came mid-run");
    gw.restart();
    wait_len(&js, "JK_RESULTS", 200, 60).await;
    // let any straggling redelivery land before counting
    wait_for_metric(gw.url(), "switchyard_jobs_inflight", |v| v == 0.0).await;
    let results = by_id(&read_stream(&js, "JK_RESULTS").await, "id");
    assert_eq!(results.len(), 200);
    assert!(results.values().all(|r| r.len() == 1 && r[0]["status"] == "completed"));
    let usage = by_id(&read_stream(&js, "JK_USAGE").await, "request_id");
    assert_eq!(usage.len(), 200);
    assert!(usage.values().all(|u| u.len() == 1), "one usage event per job");
    // and the ledger holds one record per job
    gw.stop();
    let (code, out, err) = run_cli(&["usage", "--data-dir", gw.data_dir().to_str().unwrap(), "--by", "key", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let rows = v.as_array().unwrap();
    let main = rows.iter().find(|r| r["group"] == "main").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(main["requests"], 200, "{out}");
}

#[tokio::test]
async fn two_instances_share_the_queue_and_serve_each_job_once() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let section = nats_section(&nats.url(), "j2", "job_concurrency = 4");
    let a = Gateway::start_with(&mock.url, &section);
    let b = Gateway::start_with(&mock.url, &section);
    a.wait_nats("connected").await;
    b.wait_nats("connected").await;
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_stream(&js, "J2_JOBS", 10).await;
    for i in 0..100 {
        let job = chat_job(&format!("t-{i}"), &format!("text {i}"));
        publish_job(&js, "j2", "normal", job, &[("x-mock-latency-ms", "10")]).await;
    }
    wait_len(&js, "J2_RESULTS", 100, 60).await;
    let results = by_id(&read_stream(&js, "J2_RESULTS").await, "id");
    assert_eq!(results.len(), 100);
    assert!(results.values().all(|r| r.len() == 1));
    assert_eq!(mock_requests(&mock.url).await, 100, "each job reached the provider once");
    let served = |g: &Gateway| {
        let url = g.url().to_string();
        async move { metric(&url, "switchyard_jobs_total{lane=\"normal\",outcome=\"completed\"}").await.unwrap_or(0.0) }
    };
    let (sa, sb) = (served(&a).await, served(&b).await);
    assert_eq!(sa + sb, 100.0);
    assert!(sa > 0.0 && sb > 0.0, "both instances served: {sa} / {sb}");
    // request/reply is spread over the queue group as well
    let nc = connect(&nats.url()).await;
    for _ in 0..20 {
        request(&nc, "j2.v1.chat", auth(MAIN_KEY), chat_body("spread")).await;
    }
    let rr = |g: &Gateway| {
        let url = g.url().to_string();
        async move { metric(&url, "switchyard_nats_requests_total{api=\"chat\",status=\"200\"}").await.unwrap_or(0.0) }
    };
    let (ra, rb) = (rr(&a).await, rr(&b).await);
    assert_eq!(ra + rb, 20.0);
}

#[tokio::test]
async fn nats_down_at_start_and_restarted_mid_run_loses_nothing() {
    let mut nats = NatsServer::not_started();
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "jr", "ack_wait_secs = 2"));
    // NATS is down: HTTP serves, readyz says so
    let r = post(gw.url(), "/v1/chat/completions", chat_body("http works")).await;
    assert_eq!(r.status(), 200);
    let ready: Value = client().get(format!("{}/readyz", gw.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_ne!(ready["nats"], "connected");
    // NATS comes up: the gateway connects and serves jobs
    nats.restart();
    gw.wait_nats("connected").await;
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_stream(&js, "JR_JOBS", 20).await;
    for i in 0..30 {
        publish_job(&js, "jr", "normal", chat_job(&format!("r-{i}"), "x"), &[("x-mock-latency-ms", "20")]).await;
    }
    wait_len(&js, "JR_RESULTS", 5, 30).await;
    // restart nats-server mid-run (same store): nothing is lost
    nats.restart();
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    for i in 30..40 {
        publish_job(&js, "jr", "normal", chat_job(&format!("r-{i}"), "x"), &[]).await;
    }
    wait_len(&js, "JR_RESULTS", 40, 60).await;
    let results = by_id(&read_stream(&js, "JR_RESULTS").await, "id");
    assert_eq!(results.len(), 40);
    assert!(results.values().all(|r| r.len() == 1));
    assert_eq!(by_id(&read_stream(&js, "JR_USAGE").await, "request_id").len(), 40);
}

#[tokio::test]
async fn embedding_jobs_are_coalesced_into_few_upstream_calls_and_split_back() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let extra = "job_concurrency = 64\nembed_batch_window_ms = 100\nembed_batch_max_inputs = 64";
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "jb", extra));
    gw.wait_nats("connected").await;
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_stream(&js, "JB_JOBS", 10).await;
    for i in 0..40 {
        // one or two inputs per job
        let input = if i % 2 == 0 { json!(format!("sentence {i}")) } else { json!([format!("first {i}"), "second"]) };
        let job = json!({"id": format!("e-{i}"), "endpoint": "embeddings", "body": {"model": "embed", "input": input}});
        publish_job(&js, "jb", "normal", job, &[]).await;
    }
    // in the same window, a job whose provider call fails (its own batch: its headers differ)
    let job = json!({"id": "rejected", "endpoint": "embeddings", "body": {"model": "embed", "input": "bad"}});
    publish_job(&js, "jb", "normal", job, &[("x-mock-status", "400")]).await;
    wait_len(&js, "JB_RESULTS", 41, 30).await;
    let calls = mock_requests(&mock.url).await;
    assert!(calls <= 5, "41 jobs took {calls} upstream calls");
    let results = by_id(&read_stream(&js, "JB_RESULTS").await, "id");
    assert_eq!(results.len(), 41);
    let rejected = &results["rejected"][0];
    assert_eq!(rejected["status"], "failed");
    assert_eq!(rejected["error"]["code"], "upstream_rejected");
    assert_eq!(rejected["usage"]["status"], 400);
    let usage = by_id(&read_stream(&js, "JB_USAGE").await, "request_id");
    assert_eq!(usage.len(), 41, "one usage event per job, not per upstream call");
    for i in [0, 1, 2, 3, 38, 39] {
        let r = &results[&format!("e-{i}")][0];
        assert_eq!(r["status"], "completed", "{r}");
        let data = r["response"]["data"].as_array().unwrap();
        assert_eq!(data.len(), if i % 2 == 0 { 1 } else { 2 });
        assert_eq!(data[0]["index"], 0);
        assert!(r["usage"]["input_tokens"].as_u64().unwrap() > 0);
        assert_eq!(r["response"]["usage"]["prompt_tokens"], r["usage"]["input_tokens"]);
        // the same embedding as a direct call for that input
        let input = if i % 2 == 0 { json!(format!("sentence {i}")) } else { json!(format!("first {i}")) };
        let direct: Value =
            post(gw.url(), "/v1/embeddings", json!({"model": "embed", "input": input})).await.json().await.unwrap();
        assert_eq!(data[0]["embedding"], direct["data"][0]["embedding"], "job e-{i}");
    }
}

#[tokio::test]
async fn with_batching_off_each_embedding_job_is_its_own_call() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let extra = "job_concurrency = 64\nembed_batch_max_inputs = 1";
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "jn", extra));
    gw.wait_nats("connected").await;
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_stream(&js, "JN_JOBS", 10).await;
    for i in 0..20 {
        let job = json!({"id": format!("e-{i}"), "endpoint": "embeddings",
            "body": {"model": "embed", "input": format!("sentence {i}")}});
        publish_job(&js, "jn", "normal", job, &[]).await;
    }
    wait_len(&js, "JN_RESULTS", 20, 30).await;
    assert_eq!(mock_requests(&mock.url).await, 20);
}

/// nats-server killed with -9 mid-run and started again on the same store: every job is
/// answered once, and the jobs stream ends empty. (The killed server can come back with
/// answered jobs still in the work queue, below their consumer's ack floor, so never
/// delivered again: one run of the whole suite left 10 of 40; the dispatcher's start
/// sweeps them.)
#[tokio::test]
async fn answered_jobs_do_not_stay_in_the_queue_after_nats_is_killed() {
    let mut nats = NatsServer::start();
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "jk", "ack_wait_secs = 2"));
    gw.wait_nats("connected").await;
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_stream(&js, "JK_JOBS", 20).await;
    for i in 0..40 {
        publish_job(&js, "jk", "normal", chat_job(&format!("k-{i}"), "x"), &[("x-mock-latency-ms", "10")]).await;
    }
    wait_len(&js, "JK_RESULTS", 20, 30).await;
    nats.kill9();
    nats.restart();
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_len(&js, "JK_RESULTS", 40, 60).await;
    let results = by_id(&read_stream(&js, "JK_RESULTS").await, "id");
    assert_eq!(results.len(), 40);
    assert!(results.values().all(|r| r.len() == 1));
    // the sweep runs when the dispatcher reconnects, whose backoff reaches 10 s under a
    // loaded suite: up to 40 s, done as soon as the queue is empty
    let mut left = u64::MAX;
    for _ in 0..400 {
        let mut stream = js.get_stream("JK_JOBS").await.unwrap();
        left = stream.info().await.unwrap().state.messages;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "answered jobs left in the work queue");
}

/// However many jobs the dispatcher has started (here all of them: `job_concurrency` is
/// 32), the provider's slots go high before low: 20 low jobs then 6 high ones on a
/// provider with 2 slots (300 ms a call) finish with the highs right after the lows
/// that had already started (in arrival order before).
#[tokio::test]
async fn job_priorities_order_provider_access_whatever_the_dispatcher_started() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let extra = format!(
        r#"{}
[[providers]]
name = "pair"
kind = "openai-compatible"
base_url = "{}/v1"
concurrency = 2
queue_size = 64
jobs_share = 1.0
forward_headers = ["x-mock-latency-ms"]

[[models]]
alias = "pair"
targets = [{{ provider = "pair", model = "gpt-4o-mini" }}]
"#,
        nats_section(&nats.url(), "jq", "aging_ms = 600000"),
        mock.url
    );
    let gw = Gateway::start_with(&mock.url, &extra);
    gw.wait_nats("connected").await;
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    wait_stream(&js, "JQ_JOBS", 10).await;
    let slow = [("x-mock-latency-ms", "300")];
    let job = |id: String| json!({"id": id, "endpoint": "chat", "body": {"model": "pair", "messages": [{"role": "user", "content": "x"}]}});
    for i in 0..20 {
        publish_job(&js, "jq", "low", job(format!("low-{i}")), &slow).await;
    }
    // the dispatcher has taken every low job from JetStream by then: they wait at the
    // provider's worker, where the highs must still go first
    tokio::time::sleep(Duration::from_millis(250)).await;
    for i in 0..6 {
        publish_job(&js, "jq", "high", job(format!("high-{i}")), &slow).await;
    }
    wait_len(&js, "JQ_RESULTS", 26, 60).await;
    let order: Vec<String> =
        read_stream(&js, "JQ_RESULTS").await.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let last_high = order.iter().rposition(|id| id.starts_with("high")).unwrap();
    // two lows hold the slots when the highs arrive (a couple more may have begun);
    // then the six highs
    assert!(last_high < 11, "high jobs finished at positions up to {last_high}: {order:?}");
}

/// Publishes a job, trying again (same `Nats-Msg-Id`: JetStream keeps one) while the
/// cluster elects a new leader after losing a node.
async fn publish_job_retrying(js: &async_nats::jetstream::Context, prefix: &str, job: Value) {
    let id = job["id"].as_str().unwrap().to_string();
    for _ in 0..100 {
        let mut h = auth(MAIN_KEY);
        h.insert("Nats-Msg-Id", id.as_str());
        if let Ok(ack) = js.publish_with_headers(format!("{prefix}.v1.jobs.normal"), h, job.to_string().into()).await {
            if ack.await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} could not be published");
}

/// Scale-out: a 3-node JetStream cluster (streams and buckets at replication 3) and two
/// gateways. Jobs keep coming while one NATS node is killed with -9 and brought back,
/// then one gateway is killed with -9 (jobs in its hands) and brought back: every job
/// gets exactly one result and one usage record. Then, on the cluster that lost a node,
/// a virtual key and a prompt made on one instance are served by the other, a shared
/// budget admits what it allows across both, and a shared 60/min admits 60 across both
/// while another node is killed and brought back in the middle of the minute (with
/// `shared_limits_unavailable = "refuse"`: what the counters cannot decide is a 503,
/// never an admission).
#[tokio::test]
async fn jobs_survive_losing_a_nats_node_and_a_gateway_on_a_3_node_cluster() {
    let mut cluster = NatsCluster::start();
    let mock = mock_upstream_slow(150);
    let section = nats_section(
        &cluster.urls(),
        "sc",
        "replicas = 3\nack_wait_secs = 3\njob_concurrency = 4\nshared_limits_unavailable = \"refuse\"",
    );
    let extra = format!("{}{section}", crate::it::shared_limits::KEYS);
    let mut g1 = Gateway::start_with(&mock.url, &extra);
    let g2 = Gateway::start_with(&mock.url, &extra);
    g1.wait_nats("connected").await;
    g2.wait_nats("connected").await;
    let servers: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let js = async_nats::jetstream::new(async_nats::connect(servers).await.expect("connect to the cluster"));
    wait_stream(&js, "SC_JOBS", 30).await;
    for name in ["SC_JOBS", "SC_RESULTS", "SC_USAGE"] {
        let info = js.get_stream(name).await.unwrap().get_info().await.unwrap();
        assert_eq!(info.config.num_replicas, 3, "{name}");
    }
    let job = |i: usize| chat_job(&format!("job-{i}"), &format!("cluster job {i}"));
    for i in 0..30 {
        publish_job_retrying(&js, "sc", job(i)).await;
    }
    // a NATS node lost under load, and back
    cluster.kill9(0);
    for i in 30..60 {
        publish_job_retrying(&js, "sc", job(i)).await;
    }
    cluster.restart(0);
    // a gateway lost with jobs in its hands, and back
    if let Some(mut p) = g1.proc.take() {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    for i in 60..90 {
        publish_job_retrying(&js, "sc", job(i)).await;
    }
    g1.restart();
    wait_len(&js, "SC_RESULTS", 90, 90).await;
    // what was redelivered is settled within an ack wait
    tokio::time::sleep(Duration::from_secs(4)).await;
    let results = by_id(&read_stream(&js, "SC_RESULTS").await, "id");
    assert_eq!(results.len(), 90);
    for (id, rs) in &results {
        assert_eq!(rs.len(), 1, "{id}: one result");
        assert_eq!(rs[0]["status"], "completed", "{id}: {}", rs[0]);
    }
    let usage = by_id(&read_stream(&js, "SC_USAGE").await, "request_id");
    assert_eq!(usage.len(), 90);
    assert!(usage.iter().all(|(_, u)| u.len() == 1), "one usage record per job");

    // a virtual key made on one instance is served by the other
    let secret = crate::it::shared_limits::create_key(&g2, "roaming").await;
    crate::it::shared_limits::wait_status(&g1, &secret, 200).await;
    let keys = js.get_stream("KV_SC_KEYS").await.unwrap().get_info().await.unwrap();
    assert_eq!(keys.config.num_replicas, 3, "the buckets are replicated too");
    // and a prompt
    let prompt = json!({"id": "roam", "labels": {"production": 1}, "versions": [
        {"messages": [{"role": "user", "content": "Hi {{ name }}"}]}]});
    let made = client().post(format!("{}/admin/prompts", g2.url())).bearer_auth(ADMIN_KEY).json(&prompt).send().await;
    assert_eq!(made.unwrap().status(), 201);
    let mut seen = 0;
    for _ in 0..200 {
        let r = client().get(format!("{}/admin/prompts/roam", g1.url())).bearer_auth(ADMIN_KEY).send().await.unwrap();
        seen = r.status().as_u16();
        if seen == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 200, "a prompt made on one instance is known to the other");

    // a shared budget ($5 reserved a request, $50 in all): 10 across both, once both
    // share their limits (the restarted one opens the buckets again first)
    g1.wait_ready("limits", "shared").await;
    g2.wait_ready("limits", "shared").await;
    let urls = vec![g1.url().to_string(), g2.url().to_string()];
    let budget = |i: usize| json!({"model": "metered", "max_tokens": 5, "messages": [{"role": "user", "content": format!("b {i}")}]});
    let statuses = crate::it::shared_limits::burst(&urls, "sk-shared-budget-01", budget, 30).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10, "{statuses:?}");

    // a shared 60/min across both while a node is lost and back: in one UTC minute
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if secs > 15 {
        tokio::time::sleep(Duration::from_secs(61 - secs)).await;
    }
    let rpm = |i: usize| json!({"model": "chat", "messages": [{"role": "user", "content": format!("r {i}")}]});
    let mut statuses = crate::it::shared_limits::burst(&urls, "sk-shared-rpm-0001", rpm, 15).await;
    cluster.kill9(1);
    statuses.extend(crate::it::shared_limits::burst(&urls, "sk-shared-rpm-0001", rpm, 15).await);
    cluster.restart(1);
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        statuses.extend(crate::it::shared_limits::burst(&urls, "sk-shared-rpm-0001", rpm, 10).await);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(statuses.iter().all(|s| [200, 429, 503].contains(s)), "{statuses:?}");
    assert_eq!(ok, 60, "a shared 60/min admits 60 across two instances on a cluster that lost a node: {statuses:?}");
}
