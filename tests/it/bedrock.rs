//! The `bedrock` provider kind over real HTTP: Converse and ConverseStream (binary
//! event-stream frames) on `switchyard mock-upstream`, SigV4-signed (the mock refuses
//! requests without a well-formed `bedrock` signature).

use serde_json::{json, Value};

use crate::common::*;

fn nova(text: &str) -> Value {
    json!({"model": "nova", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]})
}

#[tokio::test]
async fn bedrock_converse_streams_and_tools() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let r = post(gw.url(), "/v1/chat/completions", nova("hello bedrock")).await;
    assert_eq!(r.status(), 200, "{}", gw.log());
    assert_eq!(header(&r, "x-switchyard-provider"), "bed");
    assert_eq!(header(&r, "x-switchyard-model"), "amazon.nova-lite-v1:0");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "This is a mock reply to: hello bedrock");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 8);

    // event-stream frames become SSE chunks, usage from the metadata event, [DONE]
    let s = stream_chat(gw.url(), &[], &nova("stream from bedrock")).await;
    assert!(s.done());
    assert_eq!(s.text(), "This is a mock reply to: stream from bedrock");
    assert_eq!(s.chunks().last().unwrap()["usage"]["completion_tokens"], 9);

    // a streamed tool use: the input arrives in pieces and comes out whole
    let mut t = nova("find Lima");
    t["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let s = stream_chat(gw.url(), &[], &t).await;
    assert_eq!(serde_json::from_str::<Value>(&s.tool_arguments()).unwrap(), json!({"query": "find Lima"}));
    assert!(s.finished_with("tool_calls"));
    // and non-streamed, then the tool result back
    let v: Value = post(gw.url(), "/v1/chat/completions", t.clone()).await.json().await.unwrap();
    let call = v["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "lookup");
    t["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": null, "tool_calls": [call.clone()]}),
        json!({"role": "tool", "tool_call_id": call["id"], "content": "found"}),
    ]);
    let v: Value = post(gw.url(), "/v1/chat/completions", t).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
}

#[tokio::test]
async fn bedrock_failures_are_openai_errors() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    for (asked, want) in [("400", 400), ("429", 429), ("500", 502)] {
        let r = post_as(gw.url(), MAIN_KEY, &[("x-mock-status", asked)], &nova(&format!("fail {asked}"))).await;
        assert_eq!(r.status().as_u16(), want, "upstream {asked}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("failure requested"), "{v}");
    }
    let s = stream_chat(gw.url(), &[("x-mock-disconnect-after", "3")], &nova("cut the bedrock stream short")).await;
    assert!(!s.done(), "{:?}", s.events);
    let r = post(gw.url(), "/v1/embeddings", json!({"model": "nova", "input": "x"})).await;
    assert_eq!(r.status(), 400);
}

/// A Bedrock provider with no credentials in the config or the environment stops the
/// start with a clear error instead of failing every request later.
#[test]
fn no_aws_credentials_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    let text = format!(
        "[server]\nhttp_addr = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[[providers]]\nname = \"b\"\nkind = \"bedrock\"\n\
         region = \"us-east-1\"\n[[models]]\nalias = \"m\"\ntargets = [{{ provider = \"b\", model = \"x\" }}]\n",
        dir.path().join("data").display()
    );
    std::fs::write(&cfg, text).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no AWS credentials"), "{err}");
}
