//! Prompts: templates from the config file and the admin API, rendered into requests of
//! every API (Chat Completions, Messages, Responses, NATS), policies that add system
//! text, the version in the response header and the ledger, replication over NATS.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// Two versions of `support` (labels production -> 1, staging -> 2) and a policy for
/// every request of the main key.
const PROMPTS: &str = r#"
[[prompts]]
id = "support"
labels = { production = 1, staging = 2 }

[[prompts.versions]]
messages = [
  { role = "system", content = "You are {{ company }} support." },
  { role = "user", content = "Question: {{ question }}" },
]
variables = { company = "string", question = "string", tone = "string?" }

[[prompts.versions]]
messages = [
  { role = "system", content = "v2 for {{ company }}." },
  { role = "user", content = "Q2 {{ question | upper }}" },
]
model = "chat"
params = { max_tokens = 7, temperature = 0.1 }
variables = { company = "string", question = "string" }
"#;

const POLICIES: &str = r#"
[[prompt_policies]]
name = "tone"
keys = ["main"]
prepend = "Tone guide: be kind. Today is {{ date }}."

[[prompt_policies]]
name = "tier"
prepend = "Customer tier: {{ meta.tier | default('unknown') }}."
append = "Answer as key {{ key_id }}."
"#;

fn prompt(version: Option<Value>, label: Option<&str>) -> Value {
    let mut p = json!({"id": "support", "variables": {"company": "ACME", "question": "why is the sky blue"}});
    if let Some(v) = version {
        p["version"] = v;
    }
    if let Some(l) = label {
        p["label"] = json!(l);
    }
    p
}

async fn send(url: &str, path: &str, body: &Value) -> (u16, String, Value) {
    let r = client().post(format!("{url}{path}")).bearer_auth(MAIN_KEY).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let prompt = header(&r, "x-switchyard-prompt");
    (status, prompt, r.json().await.unwrap_or(Value::Null))
}

fn chat_text(v: &Value) -> String {
    v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_prompt_object_is_rendered_on_every_api_and_its_version_is_answered_and_recorded() {
    let mock = mock_upstream();
    let mut gw = Gateway::start_with(&mock.url, PROMPTS);
    let chat = |p: Value| json!({"model": "chat", "messages": [], "prompt": p});

    // the production label by default; the template's user message is the last one
    let (status, version, v) = send(gw.url(), "/v1/chat/completions", &chat(prompt(None, None))).await;
    assert_eq!((status, version.as_str()), (200, "support@1"), "{v}");
    assert!(chat_text(&v).ends_with("Question: why is the sky blue"), "{v}");
    // a label, and a version as OpenAI writes it (a string); version 2 pins the alias and
    // its max_tokens (the mock answers with at most that many words)
    let mut body = chat(prompt(None, Some("staging")));
    body["model"] = json!("anything");
    let (status, version, v) = send(gw.url(), "/v1/chat/completions", &body).await;
    assert_eq!((status, version.as_str()), (200, "support@2"), "{v}");
    assert_eq!(chat_text(&v).split_whitespace().count(), 7, "{v}");
    let (_, version, _) = send(gw.url(), "/v1/chat/completions", &chat(prompt(Some(json!("1")), None))).await;
    assert_eq!(version, "support@1");
    // the client's own messages follow the template's
    let mut body = chat(prompt(None, None));
    body["messages"] = json!([{"role": "user", "content": "and one more thing"}]);
    let (_, _, v) = send(gw.url(), "/v1/chat/completions", &body).await;
    assert!(chat_text(&v).ends_with("and one more thing"), "{v}");

    // Anthropic's Messages API, with the object as an extra field
    let body = json!({"model": "claude", "max_tokens": 50, "messages": [], "prompt": prompt(Some(json!(2)), None)});
    let r = client()
        .post(format!("{}/v1/messages", gw.url()))
        .header("x-api-key", MAIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-prompt"), "support@2");
    let v: Value = r.json().await.unwrap();
    assert!(v["content"][0]["text"].as_str().unwrap().contains("Q2"), "{v}");
    // the Responses API (translated for this alias)
    let body = json!({"model": "chat", "input": "hello there", "prompt": prompt(None, None), "store": false});
    let (status, version, v) = send(gw.url(), "/v1/responses", &body).await;
    assert_eq!((status, version.as_str()), (200, "support@1"), "{v}");
    assert!(
        v["output_text"].as_str().or(v["output"][0]["content"][0]["text"].as_str()).unwrap().ends_with("hello there"),
        "{v}"
    );

    // every mistake is a 400 that names it, in the API's own shape
    let mut missing = prompt(None, None);
    missing["variables"].as_object_mut().unwrap().remove("question");
    for (p, says) in [
        (missing, "prompt `support` version 1: variable `question` is missing"),
        (json!({"id": "support", "variables": {"company": 5, "question": "q"}}), "variable `company` must be a string"),
        (
            json!({"id": "support", "variables": {"company": "a", "question": "q", "tnoe": "x"}}),
            "variable `tnoe` is not declared",
        ),
        (json!({"id": "nope"}), "no prompt `nope`"),
        (json!({"id": "support", "label": "canary"}), "prompt `support` has no label `canary`"),
        (json!({"id": "support", "version": 9}), "prompt `support` has no version 9"),
        (json!("support"), "`prompt` must be an object"),
    ] {
        let (status, _, v) = send(gw.url(), "/v1/chat/completions", &chat(p)).await;
        assert_eq!(status, 400, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(says), "{v}");
    }
    let body = json!({"model": "claude", "max_tokens": 50, "messages": [], "prompt": {"id": "nope"}});
    let r = client()
        .post(format!("{}/v1/messages", gw.url()))
        .header("x-api-key", MAIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert!(v["error"]["message"].as_str().unwrap().contains("no prompt `nope`"), "{v}");

    // the ledger says which version served each request
    gw.stop();
    let data = gw.data_dir();
    let (code, out, err) = run_cli(&["usage", "--data-dir", data.to_str().unwrap(), "--by", "prompt", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let count = |g: &str| rows.iter().find(|r| r["group"] == g).map_or(0, |r| r["requests"].as_u64().unwrap());
    assert_eq!((count("support@1"), count("support@2")), (4, 2), "{out}");
}

#[tokio::test]
async fn the_provider_gets_the_rendered_prompt_with_the_policies_in_order() {
    let answer = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}});
    let response = json!({"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "gpt-up",
        "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "ok", "annotations": []}]}],
        "usage": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6}});
    let mut rec = Recorder::start(vec![
        ("application/json", answer.to_string().into_bytes()),
        ("application/json", response.to_string().into_bytes()),
    ])
    .await;
    let extra = format!(
        "{PROMPTS}{POLICIES}\n[[providers]]\nname = \"rec\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\n\n\
         [[models]]\nalias = \"rec\"\ntargets = [{{ provider = \"rec\", model = \"m\" }}]\n{}",
        rec.url,
        openai_target(&rec.url)
    );
    let gw = Gateway::start_with(&rec.url, &extra);
    let today = &humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..10];

    let body = json!({"model": "rec", "messages": [{"role": "user", "content": "mine"}], "prompt": prompt(None, None)});
    let r = post_as(gw.url(), MAIN_KEY, &[("x-switchyard-meta-tier", "gold")], &body).await;
    assert_eq!(r.status(), 200);
    let (_, sent) = rec.seen.recv().await.unwrap();
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    assert!(sent.get("prompt").is_none(), "the gateway's own field never reaches a provider: {sent}");
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": format!("Tone guide: be kind. Today is {today}.\n\nCustomer tier: gold.\n\nYou are ACME support.\n\nAnswer as key main.")},
            {"role": "user", "content": "Question: why is the sky blue"},
            {"role": "user", "content": "mine"},
        ])
    );

    // the Responses API to an `openai` target goes as the client wrote it, the prompt
    // spelled out in its own items and the policies in `instructions`
    let body = json!({"model": "gpt", "input": "hi", "instructions": "Be brief.", "store": false,
        "prompt": prompt(None, None)});
    let (status, version, v) = send(gw.url(), "/v1/responses", &body).await;
    assert_eq!((status, version.as_str()), (200, "support@1"), "{v}");
    let (head, sent) = rec.seen.recv().await.unwrap();
    assert!(head.starts_with("POST /v1/responses"), "{head}");
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    assert!(sent.get("prompt").is_none(), "{sent}");
    assert_eq!(sent["model"], "gpt-up", "{sent}");
    assert_eq!(
        sent["instructions"],
        format!(
            "Tone guide: be kind. Today is {today}.\n\nCustomer tier: unknown.\n\nBe brief.\n\nAnswer as key main."
        )
    );
    assert_eq!(
        sent["input"],
        json!([
            {"type": "message", "role": "system", "content": "You are ACME support."},
            {"type": "message", "role": "user", "content": "Question: why is the sky blue"},
            {"role": "user", "content": "hi"},
        ])
    );
}
