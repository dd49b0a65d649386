//! The `azure` provider kind over real HTTP: deployment URLs with `api-version`, the
//! `api-key` header (the mock refuses requests without them, as Azure does).

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn azure_deployments_serve_chat_streams_and_embeddings() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let body = json!({"model": "azure-chat", "messages": [{"role": "user", "content": "hello azure"}]});
    let r = post(gw.url(), "/v1/chat/completions", body.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "azure");
    let v: Value = r.json().await.unwrap();
    // the mock answers as the deployment it was called on: the URL carried it
    assert_eq!(v["model"], "my-gpt4o-deployment");
    assert_eq!(v["choices"][0]["message"]["content"], "This is a mock reply to: hello azure");

    let mut s = body.clone();
    s["stream"] = json!(true);
    let r = post(gw.url(), "/v1/chat/completions", s).await;
    let events = sse_data(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    let r = post(gw.url(), "/v1/embeddings", json!({"model": "azure-embed", "input": ["a", "b"]})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["model"], "my-embedding-deployment");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);

    // Azure's errors map like OpenAI's
    let fresh = json!({"model": "azure-chat", "messages": [{"role": "user", "content": "not cached"}]});
    let r = post_as(gw.url(), MAIN_KEY, &[("x-mock-status", "429")], &fresh).await;
    assert_eq!(r.status(), 429);
    // a stream cut mid-way ends with an error event, never [DONE]
    let mut cut = fresh.clone();
    cut["stream"] = json!(true);
    let r = post_as(gw.url(), MAIN_KEY, &[("x-mock-disconnect-after", "2")], &cut).await;
    let events = sse_data(&r.text().await.unwrap());
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    assert!(events.last().unwrap().contains("\"error\""), "{events:?}");
}

#[test]
fn azure_config_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[providers]]\nname = \"a\"\nkind = \"azure\"\napi_version = \"2024 10\"\n\
         [[providers]]\nname = \"b\"\nkind = \"openai\"\napi_version = \"2024-10-21\"\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("providers[0].base_url"), "{err}");
    assert!(err.contains("providers[0].api_version"), "{err}");
    assert!(err.contains("providers[1].api_version"), "{err}");
}
