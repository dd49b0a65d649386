//! The `anthropic` provider kind over real HTTP: `switchyard mock-upstream` speaks the
//! Messages API (and checks `x-api-key`, `anthropic-version` and `max_tokens` like
//! Anthropic), and OpenAI clients get OpenAI answers, streams, tool calls and errors.

use serde_json::{json, Value};

use crate::common::*;

fn claude(text: &str) -> Value {
    json!({"model": "claude", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": text}]})
}

fn tools_body(text: &str) -> Value {
    json!({"model": "claude", "messages": [{"role": "user", "content": text}],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "find things",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]})
}

#[tokio::test]
async fn chat_through_anthropic_answers_in_openai_format() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let r = post(gw.url(), "/v1/chat/completions", claude("hello claude")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "anth");
    assert_eq!(header(&r, "x-switchyard-model"), "claude-mock");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "This is a mock reply to: hello claude");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["usage"]["completion_tokens"], 8);

    // max_tokens reaches Anthropic and a cut answer says `length`
    let mut short = claude("one two three four five six");
    short["max_tokens"] = json!(3);
    let v: Value = post(gw.url(), "/v1/chat/completions", short).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["choices"][0]["message"]["content"], "This is a");

    // streamed: text in order, a usage chunk, then [DONE]
    let Streamed { status, events } = stream_chat(gw.url(), &[], &claude("stream to me")).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "This is a mock reply to: stream to me");
    assert_eq!(chunks.iter().filter_map(|c| c["choices"][0]["finish_reason"].as_str()).collect::<Vec<_>>(), ["stop"]);
    assert!(chunks.last().unwrap()["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn tool_calls_round_trip_and_streamed_arguments_arrive_whole() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let v: Value = post(gw.url(), "/v1/chat/completions", tools_body("weather in Paris")).await.json().await.unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "lookup");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"query": "weather in Paris"}));

    // the tool's answer goes back as a tool message; the model then answers in text
    let id = call["id"].as_str().unwrap();
    let mut follow = tools_body("weather in Paris");
    follow["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": null, "tool_calls": [call]}),
        json!({"role": "tool", "tool_call_id": id, "content": "sunny"}),
    ]);
    let v: Value = post(gw.url(), "/v1/chat/completions", follow).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().starts_with("This is a mock reply"));

    // streamed: the arguments arrive in 5-character pieces and come out whole, in order
    let Streamed { status, events } = stream_chat(gw.url(), &[], &tools_body("stream the weather in Paris")).await;
    assert_eq!(status, 200);
    let chunks: Vec<Value> =
        events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect();
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .filter(|a| !a.is_empty())
        .collect();
    assert!(pieces.len() > 3, "{pieces:?}");
    let args: Value = serde_json::from_str(&pieces.concat()).unwrap();
    assert_eq!(args, json!({"query": "stream the weather in Paris"}));
    let first = chunks.iter().find(|c| c["choices"][0]["delta"]["tool_calls"].is_array()).unwrap();
    assert_eq!(first["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], "lookup");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[tokio::test]
async fn anthropic_errors_map_to_openai_errors() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let body = claude("x");
    for (asked, want, code) in [
        ("400", 400, "upstream_rejected"),
        ("429", 429, "upstream_rate_limited"),
        ("529", 502, "upstream_error"),
        ("500", 502, "upstream_error"),
    ] {
        let r = post_as(gw.url(), MAIN_KEY, &[("x-mock-status", asked)], &body).await;
        assert_eq!(r.status().as_u16(), want, "upstream {asked}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "upstream {asked}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("failure requested"), "{v}");
    }
    // a provider without an API key: Anthropic says 401, which is the gateway's problem
    let mut nokey = body.clone();
    nokey["model"] = json!("claude-nokey");
    let r = post(gw.url(), "/v1/chat/completions", nokey).await;
    assert_eq!(r.status(), 502);

    // a stream cut mid-way ends with an error event, never [DONE]
    let Streamed { status, events } =
        stream_chat(gw.url(), &[("x-mock-disconnect-after", "4")], &claude("cut me off please")).await;
    assert_eq!(status, 200);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{last}");

    // what Anthropic cannot do is refused before any call
    let calls = mock_requests(&mock.url).await;
    let r = post(gw.url(), "/v1/embeddings", json!({"model": "claude", "input": "x"})).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("does not support embeddings"), "{v}");
    let mut n2 = claude("x");
    n2["n"] = json!(2);
    let r = post(gw.url(), "/v1/chat/completions", n2).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("`n`"), "{v}");
    assert_eq!(mock_requests(&mock.url).await, calls, "no provider call for a refused request");
}

/// Prompt-cache reads and writes and thinking tokens reported by Anthropic reach the
/// client's usage, the metrics and the ledger, the writes priced at their own price.
#[tokio::test]
async fn cache_writes_and_reads_are_counted_and_priced_apart() {
    let answer = json!({"id": "msg_u", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 100, "output_tokens": 10, "cache_read_input_tokens": 2000,
            "cache_creation_input_tokens": 1000}});
    let rec = Recorder::start(vec![("application/json", answer.to_string().into_bytes())]).await;
    let extra = format!(
        "\n[[providers]]\nname = \"anth-rec\"\nkind = \"anthropic\"\nbase_url = \"{}/v1\"\napi_key = \"k-secret\"\n\n[[models]]\nalias = \"sonnet\"\ntargets = [{{ provider = \"anth-rec\", model = \"claude-sonnet-4-5\" }}]\n",
        rec.url
    );
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &extra);
    let r = post(
        gw.url(),
        "/v1/chat/completions",
        json!({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 3100);
    assert_eq!(v["usage"]["prompt_tokens_details"], json!({"cached_tokens": 2000, "cache_write_tokens": 1000}));
    let m = |d: &str| format!("switchyard_tokens_total{{direction=\"{d}\",model=\"sonnet\"}}");
    wait_for_metric(gw.url(), &m("cache_write"), |v| v == 1000.0).await;
    assert_eq!(metric(gw.url(), &m("cached")).await, Some(2000.0));
    // 100 x 3.00 + 2000 x 0.30 + 1000 x 3.75 + 10 x 15.00 per million
    let cost = metric(gw.url(), "switchyard_cost_usd_total{model=\"sonnet\"}").await.unwrap();
    assert!((cost - 0.0048).abs() < 1e-9, "{cost}");
}
