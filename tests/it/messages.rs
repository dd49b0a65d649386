//! `POST /v1/messages`: Anthropic's Messages API in front of the engine, routed to any
//! provider (an OpenAI-format upstream and an Anthropic one), streams and errors in
//! Anthropic's shapes.

use serde_json::{json, Value};

use crate::common::*;

async fn messages(url: &str, key: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb =
        client().post(format!("{url}/v1/messages")).header("x-api-key", key).header("anthropic-version", "2023-06-01");
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.json(body).send().await.expect("send")
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 256, "system": "be brief",
        "messages": [{"role": "user", "content": text}]})
}

/// (event name, data) pairs of an SSE body.
fn named_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("").to_string();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("null");
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn messages_ingress_reaches_openai_and_anthropic_providers() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    // an OpenAI-format upstream
    let r = messages(gw.url(), MAIN_KEY, &ask("chat", "hello from the anthropic sdk"), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "up");
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["content"][0]["text"], "This is a mock reply to: hello from the anthropic sdk");
    assert_eq!(m["stop_reason"], "end_turn");
    assert!(m["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));

    // an Anthropic upstream with a tool: translated both ways and back
    let mut tool_ask = ask("claude", "weather in Rome");
    tool_ask["tools"] = json!([{"name": "lookup", "input_schema": {"type": "object"}}]);
    let m: Value = messages(gw.url(), MAIN_KEY, &tool_ask, &[]).await.json().await.unwrap();
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(m["content"][0]["type"], "tool_use");
    assert_eq!(m["content"][0]["name"], "lookup");
    assert_eq!(m["content"][0]["input"], json!({"query": "weather in Rome"}));
    let tool_id = m["content"][0]["id"].as_str().unwrap().to_string();
    let mut follow = tool_ask.clone();
    follow["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": m["content"]}),
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "sunny"}]}),
    ]);
    let m: Value = messages(gw.url(), MAIN_KEY, &follow, &[]).await.json().await.unwrap();
    assert_eq!(m["stop_reason"], "end_turn", "{m}");

    // and through every other translated provider, stream and not
    for model in ["gemini", "llama", "nova", "azure-chat"] {
        let m: Value = messages(gw.url(), MAIN_KEY, &ask(model, "hi all"), &[]).await.json().await.unwrap();
        assert_eq!(m["content"][0]["text"], "This is a mock reply to: hi all", "{model}: {m}");
        let mut s = ask(model, "stream all");
        s["stream"] = json!(true);
        let ev = named_events(&messages(gw.url(), MAIN_KEY, &s, &[]).await.text().await.unwrap());
        let text: String = ev.iter().filter_map(|(_, d)| d["delta"]["text"].as_str().map(str::to_string)).collect();
        assert_eq!(text, "This is a mock reply to: stream all", "{model}");
        assert_eq!(ev.last().unwrap().0, "message_stop", "{model}");
    }
}

#[tokio::test]
async fn streamed_messages_follow_anthropics_event_sequence() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let mut body = ask("chat", "stream this please");
    body["stream"] = json!(true);
    let r = messages(gw.url(), MAIN_KEY, &body, &[]).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/event-stream"));
    let ev = named_events(&r.text().await.unwrap());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, "This is a mock reply to: stream this please");
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);

    // a streamed tool call through an Anthropic upstream: input_json_delta pieces, whole
    let mut tools = ask("claude", "stream weather in Oslo");
    tools["stream"] = json!(true);
    tools["tools"] = json!([{"name": "lookup", "input_schema": {"type": "object"}}]);
    let ev = named_events(&messages(gw.url(), MAIN_KEY, &tools, &[]).await.text().await.unwrap());
    let start =
        ev.iter().find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use").unwrap();
    assert_eq!(start.1["content_block"]["name"], "lookup");
    let json: String = ev.iter().filter_map(|(_, d)| d["delta"]["partial_json"].as_str().map(str::to_string)).collect();
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), json!({"query": "stream weather in Oslo"}));
    assert!(ev.iter().any(|(n, d)| n == "message_delta" && d["delta"]["stop_reason"] == "tool_use"));

    // a stream cut upstream ends with an `error` event and no message_stop
    let mut cut = ask("chat", "cut this stream short please");
    cut["stream"] = json!(true);
    let ev = named_events(
        &messages(gw.url(), MAIN_KEY, &cut, &[("x-mock-disconnect-after", "3")]).await.text().await.unwrap(),
    );
    assert_eq!(ev.last().unwrap().0, "error", "{ev:?}");
    assert!(!ev.iter().any(|(n, _)| n == "message_stop"));
}

#[tokio::test]
async fn messages_errors_use_anthropics_shape() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let cases = [
        (messages(gw.url(), "sk-wrong", &ask("chat", "x"), &[]).await, 401, "authentication_error"),
        (messages(gw.url(), MAIN_KEY, &ask("nope", "x"), &[]).await, 404, "not_found_error"),
        (messages(gw.url(), "sk-test-rpm", &ask("narrow", "x"), &[]).await, 403, "permission_error"),
        (
            messages(gw.url(), MAIN_KEY, &json!({"model": "chat", "messages": []}), &[]).await,
            400,
            "invalid_request_error",
        ),
        (messages(gw.url(), MAIN_KEY, &ask("chat", "x"), &[("x-mock-status", "500")]).await, 502, "api_error"),
    ];
    for (r, status, kind) in cases {
        assert_eq!(r.status().as_u16(), status);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let r = client()
        .post(format!("{}/v1/messages", gw.url()))
        .header("x-api-key", MAIN_KEY)
        .header("content-type", "application/json")
        .body("{broken")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let big = ask("chat", &"x".repeat(5000));
    assert_eq!(messages(gw.url(), MAIN_KEY, &big, &[]).await.status(), 413);
}
