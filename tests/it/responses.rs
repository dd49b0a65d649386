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
