//! The `ollama` provider kind over real HTTP: `/api/chat` (NDJSON streams) and
//! `/api/embed` on `switchyard mock-upstream`, answered in OpenAI's format.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::*;

fn llama(text: &str) -> Value {
    json!({"model": "llama", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]})
}

#[tokio::test]
async fn ollama_chat_streams_tools_and_embeddings() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let r = post(gw.url(), "/v1/chat/completions", llama("hello llama")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "olla");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["model"], "llama3.2");
    assert_eq!(v["choices"][0]["message"]["content"], "This is a mock reply to: hello llama");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["usage"]["completion_tokens"], 8);

    // max_tokens becomes num_predict
    let mut short = llama("a b c d e f");
    short["max_tokens"] = json!(2);
    let v: Value = post(gw.url(), "/v1/chat/completions", short).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "This is");
    assert_eq!(v["choices"][0]["finish_reason"], "length");

    // NDJSON stream → SSE chunks, usage, [DONE]
    let s = stream_chat(gw.url(), &[], &llama("stream from llama")).await;
    assert!(s.done());
    assert_eq!(s.text(), "This is a mock reply to: stream from llama");
    assert_eq!(s.chunks().last().unwrap()["usage"]["completion_tokens"], 9);

    // tools: object arguments come back as a JSON string, streamed or not
    let mut t = llama("find Bergen");
    t["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let v: Value = post(gw.url(), "/v1/chat/completions", t.clone()).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "lookup");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"query": "find Bergen"}));
    let s = stream_chat(gw.url(), &[], &t).await;
    let calls: Vec<Value> =
        s.chunks().into_iter().filter(|c| c["choices"][0]["delta"]["tool_calls"].is_array()).collect();
    assert_eq!(calls.len(), 1);
    assert!(s.finished_with("tool_calls"));

    // embeddings, float and base64 (what the OpenAI SDK asks for)
    let v: Value = post(gw.url(), "/v1/embeddings", json!({"model": "llama-embed", "input": ["a", "b"]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let floats: Vec<f32> =
        v["data"][1]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let b: Value = post(
        gw.url(),
        "/v1/embeddings",
        json!({"model": "llama-embed", "input": ["a", "b"], "encoding_format": "base64"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(b["data"][1]["embedding"].as_str().unwrap()).unwrap();
    let decoded: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(decoded, floats);
    assert!(b["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn ollama_failures_are_openai_errors() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let r = post_as(gw.url(), MAIN_KEY, &[("x-mock-status", "500")], &llama("fail")).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("failure requested"), "{v}");
    let r = post_as(gw.url(), MAIN_KEY, &[("x-mock-status", "404")], &llama("no such model")).await;
    assert_eq!(r.status(), 400);

    let s = stream_chat(gw.url(), &[("x-mock-disconnect-after", "3")], &llama("cut this ndjson stream")).await;
    assert!(!s.done(), "{:?}", s.events);
    let last: Value = serde_json::from_str(s.events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string());

    let calls = mock_requests(&mock.url).await;
    let r = post(
        gw.url(),
        "/v1/chat/completions",
        json!({"model": "llama", "messages": [{"role": "user", "content": [{"type": "image_url",
            "image_url": {"url": "https://example.invalid/cat.png"}}]}]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(mock_requests(&mock.url).await, calls);
}
