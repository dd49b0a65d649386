use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn identical_requests_hit_the_cache_and_streams_replay_it() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let body = json!({"model": "chat", "temperature": 0, "messages": [{"role": "user", "content": "cache me"}]});
    let first = post(gw.url(), "/v1/chat/completions", body.clone()).await;
    assert_eq!(header(&first, "x-switchyard-cache"), "miss");
    let first: Value = first.json().await.unwrap();
    // same request, keys in another order
    let reordered: Value =
        serde_json::from_str(r#"{"messages":[{"content":"cache me","role":"user"}],"temperature":0,"model":"chat"}"#)
            .unwrap();
    let second = post(gw.url(), "/v1/chat/completions", reordered).await;
    assert_eq!(header(&second, "x-switchyard-cache"), "hit");
    assert_eq!(header(&second, "x-switchyard-provider"), "up");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(mock_requests(&mock.url).await, 1, "the hit never reached the provider");

    // the same request streamed is replayed from the cache as SSE
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let r = post(gw.url(), "/v1/chat/completions", streamed).await;
    assert_eq!(header(&r, "x-switchyard-cache"), "hit");
    let events = sse_data(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let content: String =
        chunks.iter().filter_map(|c| c["choices"].get(0).and_then(|c| c["delta"]["content"].as_str())).collect();
    assert_eq!(content, first["choices"][0]["message"]["content"].as_str().unwrap());
    assert_eq!(chunks.last().unwrap()["usage"], first["usage"]);
    assert_eq!(mock_requests(&mock.url).await, 1);

    // cache-control: no-cache goes to the provider
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .bearer_auth(MAIN_KEY)
        .header("cache-control", "no-cache")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-switchyard-cache"), "bypass");
    assert_eq!(mock_requests(&mock.url).await, 2);
}

#[tokio::test]
async fn a_streamed_miss_fills_the_cache_for_later_requests() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let mut body = json!({"model": "chat", "messages": [{"role": "user", "content": "stream then cache"}]});
    body["stream"] = json!(true);
    let text = post(gw.url(), "/v1/chat/completions", body.clone()).await.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    // the cache is filled when the stream ends, before `[DONE]` is sent; the put is in
    // the cache actor's mailbox ahead of the next request's job
    body.as_object_mut().unwrap().remove("stream");
    let r = post(gw.url(), "/v1/chat/completions", body).await;
    assert_eq!(header(&r, "x-switchyard-cache"), "hit");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "This is a mock reply to: stream then cache");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(mock_requests(&mock.url).await, 1);
}

#[tokio::test]
async fn embeddings_are_cached_too() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let body = json!({"model": "embed", "input": ["same", "inputs"]});
    let a: Value = post(gw.url(), "/v1/embeddings", body.clone()).await.json().await.unwrap();
    let r = post(gw.url(), "/v1/embeddings", body).await;
    assert_eq!(header(&r, "x-switchyard-cache"), "hit");
    let b: Value = r.json().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(mock_requests(&mock.url).await, 1);
}
