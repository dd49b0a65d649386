use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn chat_non_stream_through_the_gateway() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let r = post(gw.url(), "/v1/chat/completions", chat_body("hello non-stream")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "up");
    assert_eq!(header(&r, "x-switchyard-model"), "gpt-4o-mini");
    assert_eq!(header(&r, "x-switchyard-cache"), "miss");
    assert!(header(&r, "x-request-id").starts_with("req_"));
    assert!(header(&r, "x-switchyard-overhead-us").parse::<u64>().is_ok());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["choices"][0]["message"]["content"], "This is a mock reply to: hello non-stream");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(mock_requests(&mock.url).await, 1);

    // a client request id is echoed
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .header("x-api-key", MAIN_KEY)
        .header("x-request-id", "my-trace-1")
        .json(&chat_body("hello request id"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-request-id"), "my-trace-1");
}

#[tokio::test]
async fn chat_stream_forwards_chunks_and_honours_include_usage() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let mut body = chat_body("stream without usage please");
    body["stream"] = json!(true);
    let r = post(gw.url(), "/v1/chat/completions", body).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "This is a mock reply to: stream without usage please");
    // the gateway asked upstream for usage, but the client did not: no usage chunk
    assert!(chunks.iter().all(|c| c["usage"].is_null()), "{text}");

    let mut body = chat_body("stream with usage please");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = post(gw.url(), "/v1/chat/completions", body).await.text().await.unwrap();
    let events = sse_data(&text);
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let r = post(gw.url(), "/v1/embeddings", json!({"model": "embed", "input": ["one", "two"]})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 16);
    assert_eq!(v["model"], "text-embedding-3-small");

    // what the OpenAI SDK sends by default
    let r =
        post(gw.url(), "/v1/embeddings", json!({"model": "embed", "input": "one", "encoding_format": "base64"})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["data"][0]["embedding"].is_string());

    let r = post(gw.url(), "/v1/embeddings", json!({"model": "embed", "input": 5})).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn models_lists_only_the_keys_aliases() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let all: Value = client()
        .get(format!("{}/v1/models", gw.url()))
        .bearer_auth(MAIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = all["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        vec![
            "chat",
            "azure-chat",
            "azure-embed",
            "llama",
            "llama-embed",
            "gemini",
            "gemini-embed",
            "nova",
            "claude",
            "claude-nokey",
            "embed",
            "narrow",
            "secret"
        ]
    );
    let some: Value = client()
        .get(format!("{}/v1/models", gw.url()))
        .bearer_auth("sk-test-rpm")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(some["data"].as_array().unwrap().len(), 1);
    assert_eq!(some["data"][0]["id"], "chat");
    let r = client().get(format!("{}/v1/models", gw.url())).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // one model (the SDKs' `models.retrieve`): the key's aliases only
    let get = |key: &'static str, id: &str| {
        let url = format!("{}/v1/models/{id}", gw.url());
        async move { client().get(url).bearer_auth(key).send().await.unwrap() }
    };
    let r = get(MAIN_KEY, "claude").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["id"].as_str(), v["object"].as_str()), (Some("claude"), Some("model")));
    for (key, id) in [("sk-test-rpm", "claude"), (MAIN_KEY, "no-such-model")] {
        let r = get(key, id).await;
        assert_eq!(r.status(), 404, "{key} {id}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
    }
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    assert_eq!(post(gw.url(), "/v1/chat/completions", chat_body("for metrics")).await.status(), 200);
    let mut body = chat_body("for metrics, streamed");
    body["stream"] = json!(true);
    let _ = post(gw.url(), "/v1/chat/completions", body).await.text().await.unwrap();
    // rpm = 2: the third is refused
    for text in ["m1", "m2", "m3"] {
        let url = format!("{}/v1/chat/completions", gw.url());
        let _ = client().post(url).bearer_auth("sk-test-rpm").json(&chat_body(text)).send().await.unwrap();
    }
    // the ledger commits on a 20 ms timer; wait for it so its metrics exist
    wait_for_metric(gw.url(), "switchyard_ledger_records_total", |v| v >= 2.0).await;
    let text = client().get(format!("{}/metrics", gw.url())).send().await.unwrap().text().await.unwrap();
    for name in [
        "switchyard_requests_total{",
        "switchyard_request_duration_seconds_bucket",
        "switchyard_upstream_duration_seconds_bucket",
        "switchyard_time_to_first_token_seconds_bucket",
        "switchyard_gateway_overhead_seconds_bucket",
        "switchyard_tokens_total{direction=\"input\",model=\"chat\"}",
        "switchyard_cost_usd_total{model=\"chat\"}",
        "switchyard_cache_requests_total{result=\"miss\"}",
        "switchyard_rate_limited_total{kind=\"requests\"}",
        "switchyard_queue_depth{provider=\"up\",priority=\"normal\"}",
        "switchyard_inflight_requests",
        "switchyard_ledger_records_total",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    assert!(text.contains("status=\"429\""), "{text}");
    let h = client().get(format!("{}/healthz", gw.url())).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let r: Value = client().get(format!("{}/readyz", gw.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "ready");
}
