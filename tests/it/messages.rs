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
    tool_ask["tools"] =
        json!([{"name": "lookup", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}]);
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
    tools["tools"] =
        json!([{"name": "lookup", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}]);
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

/// Anthropic to Anthropic keeps everything: fields the OpenAI view has no place for
/// (`thinking`, `cache_control`, `output_config`, `context_management`, `top_k`) and the
/// `anthropic-beta` header reach the provider as the client sent them, and its answer
/// and stream (thinking blocks, `ping` events, fields unknown to the gateway) come back
/// byte for byte, metered all the same.
#[tokio::test]
async fn anthropic_to_anthropic_is_lossless_both_ways() {
    let answer = br#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-up","content":[{"type":"thinking","thinking":"hmm","signature":"sig=="},{"type":"text","text":"hi","citations":null}],"stop_reason":"end_turn","stop_sequence":null,"container":{"id":"c1"},"usage":{"input_tokens":11,"cache_read_input_tokens":5,"cache_creation_input_tokens":0,"output_tokens":3,"service_tier":"standard"}}"#.to_vec();
    let stream = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_02\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-up\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"let me see\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"c2ln\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"streamed\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":7}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let rec = Recorder::start(vec![("application/json", answer.clone()), ("text/event-stream", stream.into())]).await;
    let extra = format!(
        r#"
[[providers]]
name = "rec"
kind = "anthropic"
base_url = "{}/v1"
api_key = "rec-provider-secret"

[[models]]
alias = "claude-native"
targets = [{{ provider = "rec", model = "claude-up" }}]
"#,
        rec.url
    );
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &extra);
    let body = json!({
        "model": "claude-native",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "a long document", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "text", "text": "say hi"}]}],
        "thinking": {"type": "enabled", "budget_tokens": 512},
        "output_config": {"effort": "low"},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "some_future_field": {"kept": [1, 2, 3]},
    });
    let beta = "context-management-2025-06-27,interleaved-thinking-2025-05-14";
    let r = messages(gw.url(), MAIN_KEY, &body, &[("anthropic-beta", beta)]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "rec");
    assert!(r.headers().get("x-switchyard-dropped-fields").is_none(), "nothing is dropped for Anthropic");
    assert_eq!(r.bytes().await.unwrap().to_vec(), answer, "the answer comes back as the provider sent it");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["messages"][0]["content"][1]["text"] = json!("stream hi");
    let r = messages(gw.url(), MAIN_KEY, &streamed, &[("anthropic-beta", beta)]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), stream, "the stream comes back as the provider sent it");

    let mut rec = rec;
    let mut seen = Vec::new();
    while let Ok(one) = rec.seen.try_recv() {
        seen.push(one);
    }
    assert_eq!(seen.len(), 2);
    for ((head, sent), client) in seen.iter().zip([&body, &streamed]) {
        let sent: Value = serde_json::from_slice(sent).unwrap();
        let mut expected = client.clone();
        expected["model"] = json!("claude-up");
        assert_eq!(sent, expected, "the provider gets the client's request, for the upstream model");
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("post /v1/messages "), "{head}");
        assert!(head.contains(&format!("anthropic-beta: {beta}")), "{head}");
        assert!(head.contains("x-api-key: rec-provider-secret"), "the provider's own credential: {head}");
        assert!(!head.contains(MAIN_KEY), "the client's key never goes upstream: {head}");
    }
    // metered from the provider's usage, as translated requests are
    wait_for_metric(gw.url(), "switchyard_tokens_total{direction=\"output\",model=\"claude-native\"}", |v| v >= 10.0)
        .await;
}

/// An Anthropic stream that reports `overloaded_error` after its opening events (before
/// any content) fails over to the alias's next target: the client sees one clean
/// stream, from that target, and never the error.
#[tokio::test]
async fn an_overloaded_error_before_any_content_fails_over() {
    let overloaded = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_x\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-up\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    );
    // asked twice: once natively (/v1/messages), once translated (chat completions)
    let rec =
        Recorder::start(vec![("text/event-stream", overloaded.into()), ("text/event-stream", overloaded.into())]).await;
    let extra = format!(
        r#"
[[providers]]
name = "busy"
kind = "anthropic"
base_url = "{}/v1"
api_key = "busy-secret"
breaker_failures = 0

[[models]]
alias = "claude-busy"
strategy = "failover"
targets = [{{ provider = "busy", model = "claude-up" }}, {{ provider = "anth", model = "claude-next" }}]
"#,
        rec.url
    );
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &extra);
    let mut body = ask("claude-busy", "stream through the overload");
    body["stream"] = json!(true);
    let r = messages(gw.url(), MAIN_KEY, &body, &[("cache-control", "no-cache")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "anth");
    let ev = named_events(&r.text().await.unwrap());
    assert!(ev.iter().all(|(name, _)| name != "error"), "{ev:?}");
    let text: String = ev.iter().filter_map(|(_, d)| d["delta"]["text"].as_str().map(str::to_string)).collect();
    assert_eq!(text, "This is a mock reply to: stream through the overload");
    assert_eq!(ev.iter().filter(|(name, _)| name == "message_start").count(), 1, "{ev:?}");
    assert_eq!(ev.last().unwrap().0, "message_stop");

    // the OpenAI format reading the same provider: translated, and failed over the same way
    let s = stream_chat(
        gw.url(),
        &[("cache-control", "no-cache")],
        &json!({"model": "claude-busy", "messages": [{"role": "user", "content": "openai client"}]}),
    )
    .await;
    assert!(s.done(), "{:?}", s.events);
    assert!(!s.events.iter().any(|e| e.contains("\"error\"")), "{:?}", s.events);
    assert_eq!(s.text(), "This is a mock reply to: openai client");
    assert_eq!(metric(gw.url(), "switchyard_failovers_total{from=\"busy\"}").await, Some(2.0));
}

/// Translated for an OpenAI-format target, what the translation cannot carry is named in
/// `x-switchyard-dropped-fields`, never dropped silently.
#[tokio::test]
async fn what_a_translation_cannot_carry_is_named() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let mut body = ask("chat", "say what was dropped");
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    body["top_k"] = json!(3);
    body["messages"][0]["content"] = json!([{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]);
    let r = messages(gw.url(), MAIN_KEY, &body, &[("anthropic-beta", "interleaved-thinking-2025-05-14")]).await;
    assert_eq!(r.status(), 200);
    // (thinking is carried, as `reasoning_effort`)
    assert_eq!(header(&r, "x-switchyard-dropped-fields"), "top_k, cache_control, anthropic-beta (header)");
    // a plain request drops nothing
    let r = messages(gw.url(), MAIN_KEY, &ask("chat", "nothing to drop"), &[]).await;
    assert!(r.headers().get("x-switchyard-dropped-fields").is_none());
}

/// A system turn after a user turn (the current Messages API takes it, and Claude Code
/// sends one on its first request) is served, by an OpenAI-format target and by an
/// Anthropic one.
#[tokio::test]
async fn a_system_turn_inside_the_conversation_is_served() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    for model in ["chat", "claude"] {
        let body = json!({"model": model, "max_tokens": 64, "messages": [
            {"role": "user", "content": "first"},
            {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
            {"role": "user", "content": "second"}]});
        let r = messages(gw.url(), MAIN_KEY, &body, &[]).await;
        assert_eq!(r.status(), 200, "{model}");
        let m: Value = r.json().await.unwrap();
        assert_eq!(m["type"], "message", "{model}: {m}");
    }
}

/// `POST /v1/messages/count_tokens` answers in Anthropic's shape, for the aliases the key
/// may use: Anthropic's own count for an alias it serves, the gateway's estimate for the
/// others; other paths under `/v1/messages` answer 404 in Anthropic's shape too.
#[tokio::test]
async fn count_tokens_and_anthropic_shaped_404s() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let count = |body: Value| {
        let url = format!("{}/v1/messages/count_tokens", gw.url());
        async move { client().post(url).header("x-api-key", MAIN_KEY).json(&body).send().await.unwrap() }
    };
    let short =
        count(json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9})).await;
    assert_eq!(short.status(), 200);
    assert_eq!(header(&short, "x-switchyard-count"), "provider");
    let short: Value = short.json().await.unwrap();
    // the provider got the request for its own model, without `max_tokens`
    let seen: Value = client().get(format!("{}/mock/requests", mock.url)).send().await.unwrap().json().await.unwrap();
    let seen = seen.as_array().unwrap().last().unwrap().clone();
    assert_eq!((seen["model"].clone(), seen.get("max_tokens")), (json!("claude-mock"), None), "{seen}");
    let expected = 3 + 4 + switchyard_actors::providers::mock::mock_tokens("hi");
    assert_eq!(short["input_tokens"], expected, "the mock provider's own count");
    let long = count(json!({"model": "chat", "messages": [{"role": "user", "content": "hi ".repeat(300)}]})).await;
    assert_eq!(header(&long, "x-switchyard-count"), "estimate");
    let long: Value = long.json().await.unwrap();
    let (s, l) = (short["input_tokens"].as_u64().unwrap(), long["input_tokens"].as_u64().unwrap());
    assert!(0 < s && s < l, "{short} {long}");
    let r = count(json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    let r = client()
        .post(format!("{}/v1/messages/nothing-here", gw.url()))
        .header("x-api-key", MAIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(mock_requests(&mock.url).await, 0, "counting calls no provider");
}

/// A native stream that ends before the provider finished it (after content reached the
/// client) ends with an error event in Anthropic's own format, after the provider's
/// bytes as they came.
#[tokio::test]
async fn a_native_stream_cut_after_content_ends_with_an_anthropic_error_event() {
    let cut = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_c\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-up\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"half\"}}\n\n",
    );
    let rec = Recorder::start(vec![("text/event-stream", cut.into())]).await;
    let extra = format!(
        "\n[[providers]]\nname = \"cutter\"\nkind = \"anthropic\"\nbase_url = \"{}/v1\"\napi_key = \"k-secret\"\n\n[[models]]\nalias = \"claude-cut\"\ntargets = [{{ provider = \"cutter\", model = \"claude-up\" }}]\n",
        rec.url
    );
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &extra);
    let mut body = ask("claude-cut", "cut me");
    body["stream"] = json!(true);
    let text = messages(gw.url(), MAIN_KEY, &body, &[]).await.text().await.unwrap();
    assert!(text.starts_with(cut), "the provider's bytes first: {text}");
    let ev = named_events(&text);
    let (last, data) = ev.last().unwrap();
    assert_eq!(last, "error", "{text}");
    assert_eq!(data["type"], "error", "{text}");
    assert!(data["error"]["message"].is_string(), "{text}");
    // No OpenAI-shaped bytes: every data line belongs to a named event and no `[DONE]`.
    assert!(ev.iter().all(|(name, _)| !name.is_empty()), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
}

/// Anthropic's own count failing (a 500, then an answer without `input_tokens`) is not
/// the client's failure: the gateway's estimate answers, and says so.
#[tokio::test]
async fn count_tokens_falls_back_to_the_estimate_when_anthropic_cannot_count() {
    let rec = Recorder::start_with_status(vec![
        (500, "application/json", br#"{"type":"error","error":{"type":"api_error","message":"down"}}"#.to_vec()),
        (200, "application/json", br#"{"tokens":3}"#.to_vec()),
    ])
    .await;
    let extra = format!(
        "\n[[providers]]\nname = \"counter\"\nkind = \"anthropic\"\nbase_url = \"{}/v1\"\napi_key = \"k-secret\"\n\n[[models]]\nalias = \"claude-count\"\ntargets = [{{ provider = \"counter\", model = \"claude-up\" }}]\n",
        rec.url
    );
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &extra);
    for _ in 0..2 {
        let r = client()
            .post(format!("{}/v1/messages/count_tokens", gw.url()))
            .header("x-api-key", MAIN_KEY)
            .json(&json!({"model": "claude-count", "messages": [{"role": "user", "content": "hello there"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchyard-count"), "estimate");
        let v: Value = r.json().await.unwrap();
        assert!(v["input_tokens"].as_u64().unwrap() > 0, "{v}");
    }
}
