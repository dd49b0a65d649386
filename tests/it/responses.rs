//! The Responses API end to end: stored responses belong to their key, survive a
//! restart, are shared by every instance on one NATS, and bad input is a clear 400.
//! (The OpenAI SDK's own calls are in `sdk.rs`.)

use serde_json::{json, Value};

use crate::common::*;

async fn create(url: &str, key: &str, body: &Value) -> (u16, Value) {
    let r = client().post(format!("{url}/v1/responses")).bearer_auth(key).json(body).send().await.expect("send");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(url: &str, key: &str, id: &str) -> (u16, Value) {
    let r = client().get(format!("{url}/v1/responses/{id}")).bearer_auth(key).send().await.expect("send");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The user turns the mock upstream saw in the chat request it served last.
async fn last_upstream_messages(mock: &str) -> Vec<Value> {
    let v: Value = client().get(format!("{mock}/mock/requests")).send().await.unwrap().json().await.unwrap();
    let last = v.as_array().and_then(|a| a.last()).cloned().unwrap_or(Value::Null);
    last["messages"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_stored_response_is_its_keys_alone_and_survives_a_restart() {
    let mock = mock_upstream();
    let mut gw = Gateway::start(&mock.url);
    let (status, r) = create(gw.url(), MAIN_KEY, &json!({"model": "chat", "input": "remember me"})).await;
    assert_eq!(status, 200, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    // another key sees no such response and cannot continue it
    let (status, e) = get(gw.url(), "sk-test-rpm", &id).await;
    assert_eq!(status, 404, "{e}");
    assert_eq!(e["error"]["code"], "not_found");
    let (status, e) =
        create(gw.url(), "sk-test-rpm", &json!({"model": "chat", "input": "x", "previous_response_id": id})).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("previous_response_id"), "{e}");
    // the owner continues it after a restart: the upstream gets the whole conversation
    gw.restart();
    let (status, got) = get(gw.url(), MAIN_KEY, &id).await;
    assert_eq!((status, &got["output"]), (200, &r["output"]));
    let (status, r2) =
        create(gw.url(), MAIN_KEY, &json!({"model": "chat", "input": "and now", "previous_response_id": id})).await;
    assert_eq!(status, 200, "{r2}");
    let seen: Vec<Value> = last_upstream_messages(&mock.url).await.iter().map(|m| m["content"].clone()).collect();
    assert_eq!(seen, [json!("remember me"), json!("This is a mock reply to: remember me"), json!("and now")]);
    // deleted, it is gone
    let r = client().delete(format!("{}/v1/responses/{id}", gw.url())).bearer_auth(MAIN_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(gw.url(), MAIN_KEY, &id).await.0, 404);
}

#[tokio::test]
async fn bad_responses_requests_get_a_400_in_openais_shape() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let before = mock_requests(&mock.url).await;
    let cases = [
        (json!({"model": "chat"}), "input"),
        (json!({"model": "chat", "input": 7}), "input"),
        (json!({"model": "chat", "input": "x", "tools": [{"type": "file_search"}]}), "file_search"),
        (json!({"model": "chat", "input": [{"type": "computer_call_output", "call_id": "c"}]}), "computer_call_output"),
        (
            json!({"model": "chat", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            "file_id",
        ),
        (json!({"model": "chat", "input": "x", "max_output_tokens": 0}), "max_output_tokens"),
        (json!({"model": "chat", "input": "x", "previous_response_id": "resp_../../etc"}), "previous_response_id"),
        (json!({"model": "chat", "input": "x", "text": {"format": {"type": "xml"}}}), "xml"),
    ];
    for (body, needle) in cases {
        let (status, e) = create(gw.url(), MAIN_KEY, &body).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        assert!(e["error"]["message"].as_str().unwrap().contains(needle), "{body}: {e}");
    }
    let r = client()
        .post(format!("{}/v1/responses", gw.url()))
        .bearer_auth(MAIN_KEY)
        .header("content-type", "application/json")
        .body("{\"model\": \"chat\", \"input\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("JSON"));
    // without a key: 401 in the same shape; an unknown id: 404
    let r = client().post(format!("{}/v1/responses", gw.url())).json(&json!({"model": "chat", "input": "x"})).send();
    assert_eq!(r.await.unwrap().status(), 401);
    assert_eq!(get(gw.url(), MAIN_KEY, "resp_nothere").await.0, 404);
    assert_eq!(get(gw.url(), MAIN_KEY, "not-an-id").await.0, 404);
    assert_eq!(mock_requests(&mock.url).await, before, "nothing reached the provider");
}

/// With `[nats]` a response stored by one instance is read and continued by another.
#[tokio::test]
async fn every_instance_on_one_nats_reads_the_stored_responses() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let section = nats_section(&nats.url(), "resp", "");
    let (a, b) = (Gateway::start_with(&mock.url, &section), Gateway::start_with(&mock.url, &section));
    a.wait_nats("connected").await;
    b.wait_nats("connected").await;
    let (status, r) = create(a.url(), MAIN_KEY, &json!({"model": "chat", "input": "made on a", "stream": false})).await;
    assert_eq!(status, 200, "{r}");
    let id = r["id"].as_str().unwrap();
    let (status, got) = get(b.url(), MAIN_KEY, id).await;
    assert_eq!((status, &got), (200, &r));
    // continued on b, streamed: the conversation made on a reaches the upstream
    let body = json!({"model": "chat", "input": "continued on b", "previous_response_id": id, "stream": true});
    let text = client().post(format!("{}/v1/responses", b.url())).bearer_auth(MAIN_KEY).json(&body).send().await;
    let text = text.unwrap().text().await.unwrap();
    let last: Value = serde_json::from_str(sse_data(&text).last().unwrap()).unwrap();
    assert_eq!(last["type"], "response.completed", "{text}");
    let seen: Vec<Value> = last_upstream_messages(&mock.url).await.iter().map(|m| m["content"].clone()).collect();
    assert_eq!(seen[0], "made on a");
    assert_eq!(seen.len(), 3, "{seen:?}");
    // and that one is on a too
    let id2 = last["response"]["id"].as_str().unwrap();
    assert_eq!(get(a.url(), MAIN_KEY, id2).await.1["output"], last["response"]["output"]);
}

/// `<prefix>.v1.responses` over NATS request/reply: a Response, or the events one a
/// message, then the end; stored where HTTP reads it.
#[tokio::test]
async fn nats_request_reply_serves_the_responses_api() {
    use futures_util::StreamExt;
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "rr", ""));
    gw.wait_nats("connected").await;
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let mut auth = async_nats::HeaderMap::new();
    auth.insert("authorization", format!("Bearer {MAIN_KEY}").as_str());
    let body = json!({"model": "chat", "input": "over nats"});
    let m = nc.request_with_headers("rr.v1.responses", auth.clone(), body.to_string().into()).await.unwrap();
    let r: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(r["output"][0]["content"][0]["text"], "This is a mock reply to: over nats", "{r}");
    assert_eq!(get(gw.url(), MAIN_KEY, r["id"].as_str().unwrap()).await.1, r);

    // streamed: every event a message, the end after response.completed
    let stream = |text: &str, headers: async_nats::HeaderMap| {
        let nc = nc.clone();
        let body = json!({"model": "chat", "input": text, "stream": true, "previous_response_id": r["id"]});
        async move {
            let inbox = nc.new_inbox();
            let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
            nc.publish_with_reply_and_headers("rr.v1.responses", inbox, headers, body.to_string().into())
                .await
                .unwrap();
            let mut got = Vec::new();
            loop {
                let m = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next()).await.unwrap().unwrap();
                let h = |n: &str| m.headers.as_ref().and_then(|h| h.get(n)).map(|v| v.to_string());
                if h("x-switchyard-stream").as_deref() == Some("end") {
                    return (got, h("x-switchyard-status"), m.payload);
                }
                got.push(serde_json::from_slice::<Value>(&m.payload).unwrap());
            }
        }
    };
    let (events, status, _) = stream("streamed over nats", auth.clone()).await;
    assert_eq!(status, None);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!((types[0], *types.last().unwrap()), ("response.created", "response.completed"), "{types:?}");
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "This is a mock reply to: streamed over nats");
    // a stream the provider cuts ends with response.failed and a 502 end
    let mut cut = auth.clone();
    cut.insert("x-mock-disconnect-after", "2");
    let (events, status, payload) = stream("cut this one off early please", cut).await;
    assert_eq!(events.last().unwrap()["type"], "response.failed", "{events:?}");
    assert_eq!(status.as_deref(), Some("502"));
    assert!(serde_json::from_slice::<Value>(&payload).unwrap()["error"]["message"].is_string());
}

/// The last request the mock received.
async fn last_upstream(mock: &str) -> Value {
    let v: Value = client().get(format!("{mock}/mock/requests")).send().await.unwrap().json().await.unwrap();
    v.as_array().and_then(|a| a.last()).cloned().unwrap_or(Value::Null)
}

/// To an `openai` target the request goes to its Responses endpoint whole (hosted tools,
/// `include`, reasoning items), the answer comes back as OpenAI sent it, and the
/// conversation, metering and storage are the gateway's as for any target.
#[tokio::test]
async fn an_openai_target_gets_the_responses_request_whole() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &openai_target(&mock.url));
    let tools = json!([{"type": "web_search"}, {"type": "function", "name": "f", "parameters": {"type": "object"}}]);
    let body = json!({"model": "gpt", "input": "find Lisbon", "tools": tools, "tool_choice": "none",
        "include": ["reasoning.encrypted_content"], "a_field_from_next_year": {"x": 1}});
    let r = client().post(format!("{}/v1/responses", gw.url())).bearer_auth(MAIN_KEY).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "oai");
    let first: Value = r.json().await.unwrap();
    let id = first["id"].as_str().unwrap();
    assert!(id.starts_with("resp_mock_"), "OpenAI's own answer: {first}");
    let kinds: Vec<&str> = first["output"].as_array().unwrap().iter().map(|o| o["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["reasoning", "web_search_call", "message"]);
    let sent = last_upstream(&mock.url).await;
    let mut expected = body.clone();
    expected["model"] = json!("gpt-up");
    assert_eq!(sent, expected, "sent as the client wrote it, the model replaced");

    // the next turn: the gateway spells the conversation out (reasoning item included)
    let next = json!({"model": "gpt", "input": "and Porto", "previous_response_id": id, "stream": true});
    let text = client().post(format!("{}/v1/responses", gw.url())).bearer_auth(MAIN_KEY).json(&next).send().await;
    let text = text.unwrap().text().await.unwrap();
    let sent = last_upstream(&mock.url).await;
    assert!(sent.get("previous_response_id").is_none(), "{sent}");
    let input_types: Vec<Value> = sent["input"].as_array().unwrap().iter().map(|i| i["type"].clone()).collect();
    assert_eq!(
        input_types,
        [json!("message"), json!("reasoning"), json!("web_search_call"), json!("message"), json!("message")]
    );
    // streamed as OpenAI sent it, and stored from its last event
    let last: Value = serde_json::from_str(sse_data(&text).last().unwrap()).unwrap();
    assert_eq!(last["type"], "response.completed", "{text}");
    let id2 = last["response"]["id"].as_str().unwrap();
    assert!(id2.starts_with("resp_mock_"));
    assert_eq!(get(gw.url(), MAIN_KEY, id2).await.1, last["response"]);
    // the conversation goes on with another provider: the hosted tool's items are history
    let other = json!({"model": "chat", "input": "now elsewhere", "previous_response_id": id2});
    let (status, r) = create(gw.url(), MAIN_KEY, &other).await;
    assert_eq!(status, 200, "{r}");
    assert!(!r["id"].as_str().unwrap().starts_with("resp_mock_"), "translated: {r}");
    // but asking a chat target for a hosted tool is a 400 naming it, before any call
    let before = mock_requests(&mock.url).await;
    let tools = json!([{"type": "file_search", "vector_store_ids": ["vs_1"]}]);
    let (status, e) = create(gw.url(), MAIN_KEY, &json!({"model": "chat", "input": "x", "tools": tools})).await;
    assert_eq!(status, 400);
    assert!(e["error"]["message"].as_str().unwrap().contains("file_search"), "{e}");
    assert_eq!(mock_requests(&mock.url).await, before);
    // metered from OpenAI's usage, like any request
    wait_for_metric(gw.url(), "switchyard_tokens_total{direction=\"output\",model=\"gpt\"}", |v| v > 0.0).await;
}

/// Each turn stores the whole conversation again, so a conversation is bounded
/// (`server.responses_max_bytes`): past it, continuing is a 400 that says so.
#[tokio::test]
async fn a_conversation_is_bounded() {
    let mock = mock_upstream();
    let gw = Gateway::start_config(|dir| {
        config_text(dir, &mock.url, "")
            .replace("max_dimensions = 2048", "max_dimensions = 2048\nresponses_max_bytes = 1500")
    });
    let mut previous: Option<String> = None;
    let mut refused = None;
    for turn in 0..10 {
        let mut body = json!({"model": "chat", "input": format!("turn {turn} {}", "words ".repeat(20))});
        if let Some(p) = &previous {
            body["previous_response_id"] = json!(p);
        }
        let (status, r) = create(gw.url(), MAIN_KEY, &body).await;
        if status == 400 {
            refused = Some((turn, r));
            break;
        }
        assert_eq!(status, 200, "{r}");
        previous = r["id"].as_str().map(str::to_string);
    }
    let (turn, e) = refused.expect("refused at some turn");
    assert!(turn >= 2, "the first turns fit: refused at {turn}");
    assert!(e["error"]["message"].as_str().unwrap().contains("server.responses_max_bytes"), "{e}");
}

/// With `[nats]` configured but NATS down, an answer still comes back (storing it is
/// not the client's failure), a later turn naming it is a clear error, and reading a
/// stored response is a 503 in OpenAI's shape until NATS is back.
#[tokio::test]
async fn nats_down_leaves_answers_standing_and_stored_responses_unavailable() {
    let nats = NatsServer::not_started();
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "down", ""));
    let (status, r) = create(gw.url(), MAIN_KEY, &json!({"model": "chat", "input": "while NATS is down"})).await;
    assert_eq!(status, 200, "{r}");
    let id = r["id"].as_str().unwrap();
    let (status, e) = get(gw.url(), MAIN_KEY, id).await;
    assert_eq!(status, 503, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("NATS"), "{e}");
    let (status, e) =
        create(gw.url(), MAIN_KEY, &json!({"model": "chat", "input": "x", "previous_response_id": id})).await;
    assert_eq!(status, 503, "{e}");
}
