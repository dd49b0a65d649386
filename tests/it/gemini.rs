//! The `gemini` provider kind over real HTTP: `generateContent`,
//! `streamGenerateContent?alt=sse` and `batchEmbedContents` on `switchyard mock-upstream`
//! (which requires `x-goog-api-key`, as Google does), answered in OpenAI's format.

use serde_json::{json, Value};

use crate::common::*;

fn gem(text: &str) -> Value {
    json!({"model": "gemini", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]})
}

#[tokio::test]
async fn gemini_chat_streams_tools_safety_and_embeddings() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let r = post(gw.url(), "/v1/chat/completions", gem("hello gemini")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "gem");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["model"], "gemini-2.5-flash");
    assert_eq!(v["choices"][0]["message"]["content"], "This is a mock reply to: hello gemini");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 8);

    let mut short = gem("a b c d");
    short["max_tokens"] = json!(3);
    let v: Value = post(gw.url(), "/v1/chat/completions", short).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");

    // streamed: text in order, then finish, usage and [DONE] at the end of the body
    let s = stream_chat(gw.url(), &[], &gem("stream from gemini")).await;
    assert!(s.done());
    assert_eq!(s.text(), "This is a mock reply to: stream from gemini");
    assert_eq!(s.chunks().last().unwrap()["usage"]["completion_tokens"], 9);

    // a function call, then its answer by tool_call_id (Gemini matches it by name)
    let mut t = gem("find Madrid");
    t["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let v: Value = post(gw.url(), "/v1/chat/completions", t.clone()).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = v["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"query": "find Madrid"})
    );
    t["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": null, "tool_calls": [call.clone()]}),
        json!({"role": "tool", "tool_call_id": call["id"], "content": "{\"found\": true}"}),
    ]);
    let v: Value = post(gw.url(), "/v1/chat/completions", t).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");

    // a safety block is a content_filter finish, not an error
    let v: Value = post(gw.url(), "/v1/chat/completions", gem("unsafe-please")).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");

    // embeddings through batchEmbedContents; usage is the gateway's estimate
    let v: Value =
        post(gw.url(), "/v1/embeddings", json!({"model": "gemini-embed", "input": ["a", "bb"], "dimensions": 8}))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn gemini_failures_are_openai_errors() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    for (asked, want) in [("400", 400), ("429", 429), ("503", 502)] {
        let r = post_as(gw.url(), MAIN_KEY, &[("x-mock-status", asked)], &gem(&format!("fail {asked}"))).await;
        assert_eq!(r.status().as_u16(), want, "upstream {asked}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("failure requested"), "{v}");
    }
    let s = stream_chat(gw.url(), &[("x-mock-disconnect-after", "3")], &gem("cut the gemini stream now please")).await;
    assert!(!s.done(), "{:?}", s.events);
    let last: Value = serde_json::from_str(s.events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string());
}
