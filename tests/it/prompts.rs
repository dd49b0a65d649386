//! Prompts: templates from the config file and the admin API, rendered into requests of
//! every API (Chat Completions, Messages, Responses, NATS), policies that add system
//! text, the version in the response header and the ledger, replication over NATS.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// Two versions of `support` (labels production -> 1, staging -> 2) and a policy for
/// every request of the main key.
pub(crate) const PROMPTS: &str = r#"
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

async fn admin(method: reqwest::Method, url: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = client()
        .request(method, format!("{url}{path}"))
        .bearer_auth(ADMIN_KEY)
        .header("x-switchyard-actor", "ann@example.com");
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn prompts_are_managed_through_the_admin_api_and_the_cli_and_kept_across_restarts() {
    use reqwest::Method;
    let mock = mock_upstream();
    let mut gw = Gateway::start_with(&mock.url, PROMPTS);
    let url = gw.url().to_string();
    let greet = json!({"id": "greet", "description": "a greeting",
        "versions": [{"messages": [{"role": "user", "content": "Say hello to {{ name }}"}]}]});
    // only the admin credential
    let r = client().post(format!("{url}/admin/prompts")).bearer_auth(MAIN_KEY).json(&greet).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (status, v) = admin(Method::POST, &url, "/admin/prompts", Some(greet.clone())).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!((v["source"].as_str(), v["latest_version"].as_u64()), (Some("api"), Some(1)));
    let (status, v) = admin(Method::POST, &url, "/admin/prompts", Some(greet)).await;
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("prompt_exists")));
    // a bad template or alias is refused with the field named
    let bad =
        json!({"id": "bad", "versions": [{"messages": [{"role": "user", "content": "{% if %}"}], "model": "nope"}]});
    let (status, v) = admin(Method::POST, &url, "/admin/prompts", Some(bad)).await;
    assert_eq!(status, 400);
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("versions[0].messages[0].content: template error") && m.contains("no model alias `nope`"),
        "{m}"
    );
    // a config prompt is changed in the file
    let v2 = json!({"messages": [{"role": "user", "content": "x"}]});
    let (status, v) = admin(Method::POST, &url, "/admin/prompts/support/versions", Some(v2)).await;
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("prompt_in_config")), "{v}");

    // version 2 with the production label, then a rollback
    let (status, _) =
        admin(Method::PUT, &url, "/admin/prompts/greet/labels/production", Some(json!({"version": 1}))).await;
    assert_eq!(status, 200);
    let v2 = json!({"messages": [{"role": "system", "content": "Be {{ mood }}."}, {"role": "user", "content": "Hi {{ name }}!"}],
        "variables": {"name": "string", "mood": "string?"}, "note": "friendlier", "labels": ["production"]});
    let (status, v) = admin(Method::POST, &url, "/admin/prompts/greet/versions", Some(v2)).await;
    assert_eq!((status, v["version"].as_u64()), (201, Some(2)), "{v}");
    let chat = json!({"model": "chat", "messages": [], "prompt": {"id": "greet", "variables": {"name": "Bo"}}});
    let (status, version, v) = send(&url, "/v1/chat/completions", &chat).await;
    assert_eq!((status, version.as_str()), (200, "greet@2"), "{v}");
    assert!(chat_text(&v).ends_with("Hi Bo!"), "{v}");
    let (status, v) =
        admin(Method::POST, &url, "/admin/prompts/greet/rollback", Some(json!({"label": "production"}))).await;
    assert_eq!((status, v["labels"]["production"].as_u64()), (200, Some(1)), "{v}");
    let (_, version, _) = send(&url, "/v1/chat/completions", &chat).await;
    assert_eq!(version, "greet@1", "the label moved back at once");
    let (status, _) =
        admin(Method::PUT, &url, "/admin/prompts/greet/labels/production", Some(json!({"version": 5}))).await;
    assert_eq!(status, 400);

    // render and diff
    let (status, v) = admin(
        Method::POST,
        &url,
        "/admin/prompts/greet/render",
        Some(json!({"version": 2, "variables": {"name": "Al", "mood": "warm"}})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["messages"],
        json!([{"role": "system", "content": "Be warm."}, {"role": "user", "content": "Hi Al!"}])
    );
    let (status, v) = admin(Method::POST, &url, "/admin/prompts/greet/render", Some(json!({"version": 2}))).await;
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("variable `name` is missing"), "{v}");
    let (status, v) = admin(Method::GET, &url, "/admin/prompts/greet/diff?from=1&to=2", None).await;
    assert_eq!(status, 200);
    let diff = v["diff"].as_str().unwrap();
    assert!(
        diff.contains("--- greet@1") && diff.contains("-Say hello to {{ name }}") && diff.contains("+Hi {{ name }}!"),
        "{diff}"
    );

    // the audit trail: who, when, what
    let (_, v) = admin(Method::GET, &url, "/admin/prompts/greet", None).await;
    let trail: Vec<(String, String)> = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["actor"].as_str().unwrap().to_string(), a["action"].as_str().unwrap().to_string()))
        .collect();
    let actions: Vec<&str> = trail.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(actions, ["create", "label", "version", "label", "label"]);
    assert!(trail.iter().all(|(who, _)| who == "ann@example.com"));
    assert!(v["audit"][0]["at_ms"].as_u64().unwrap() > 0);

    // the CLI: a TOML file, a label, a diff and a render
    let file = gw.dir.path().join("faq.toml");
    std::fs::write(&file, "id = \"faq\"\nlabels = { production = 1 }\n[[versions]]\nmessages = [{ role = \"user\", content = \"FAQ: {{ topic }}\" }]\n").unwrap();
    let cli = |args: &[&str]| {
        let mut all = vec!["prompts", "--url", &url, "--admin-key", ADMIN_KEY, "--actor", "ci-job"];
        all.extend_from_slice(args);
        run_cli(&all)
    };
    let (code, out, err) = cli(&["create", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let v2 = gw.dir.path().join("faq2.json");
    std::fs::write(&v2, r#"{"messages": [{"role": "user", "content": "FAQ v2: {{ topic }}"}]}"#).unwrap();
    let (code, out, err) = cli(&["version", "faq", v2.to_str().unwrap(), "--label", "staging"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = cli(&["render", "faq", "--label", "staging", "--var", "topic=billing"]);
    assert_eq!(code, 0);
    assert!(out.contains("FAQ v2: billing"), "{out}");
    let (code, out, _) = cli(&["diff", "faq", "1", "2"]);
    assert!(code == 0 && out.contains("+FAQ v2: {{ topic }}"), "{out}");
    let (code, out, _) = cli(&["list"]);
    assert!(code == 0 && out.contains("\"faq\"") && out.contains("\"support\""), "{out}");
    let (code, _, err) = cli(&["label", "faq", "production", "9"]);
    assert_eq!(code, 1);
    assert!(err.contains("no version 9"), "{err}");

    // on disk before the calls answered: a restart keeps every prompt, label and entry
    gw.restart();
    let url = gw.url().to_string();
    let (_, v) = admin(Method::GET, &url, "/admin/prompts/faq", None).await;
    assert_eq!((v["labels"]["staging"].as_u64(), v["audit"][0]["actor"].as_str()), (Some(2), Some("ci-job")), "{v}");
    let (_, version, _) = send(&url, "/v1/chat/completions", &chat).await;
    assert_eq!(version, "greet@1");
}

#[tokio::test]
async fn prompts_made_on_one_instance_serve_on_another_and_on_nats_requests_and_jobs() {
    use reqwest::Method;
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let a = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "pr", "jobs = true"));
    let b = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "pr", "jobs = false"));
    a.wait_nats("connected").await;
    b.wait_nats("connected").await;
    let greet = json!({"id": "greet", "versions": [{"messages": [{"role": "user", "content": "Hello {{ name }}"}]}]});
    let (status, _) = admin(Method::POST, a.url(), "/admin/prompts", Some(greet)).await;
    assert_eq!(status, 201);
    let chat = json!({"model": "chat", "messages": [], "prompt": {"id": "greet", "variables": {"name": "Cy"}}});
    let mut served = None;
    for _ in 0..200 {
        let (status, version, v) = send(b.url(), "/v1/chat/completions", &chat).await;
        if status == 200 {
            served = Some((version, chat_text(&v)));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (version, text) = served.expect("the prompt reached the other instance");
    assert_eq!(version, "greet@1");
    assert!(text.ends_with("Hello Cy"), "{text}");
    // a version added on the other instance comes back
    let v2 = json!({"messages": [{"role": "user", "content": "Hi again {{ name }}"}], "labels": ["production"]});
    let (status, _) = admin(Method::POST, b.url(), "/admin/prompts/greet/versions", Some(v2)).await;
    assert_eq!(status, 201);
    let mut seen = String::new();
    for _ in 0..200 {
        seen = send(a.url(), "/v1/chat/completions", &chat).await.1;
        if seen == "greet@2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, "greet@2");

    // an experiment made on one instance runs on the other; its pause comes back
    let exp = json!({"id": "hello-ab", "prompt": "greet", "sticky": "key",
        "variants": [{"name": "one", "weight": 0, "prompt_version": 1}, {"name": "two", "weight": 1, "prompt_version": 2}]});
    let (status, v) = admin(Method::POST, a.url(), "/admin/experiments", Some(exp)).await;
    assert_eq!(status, 201, "{v}");
    let mut variant = String::new();
    for _ in 0..200 {
        let r = post_as(b.url(), MAIN_KEY, &[], &chat).await;
        variant = header(&r, "x-switchyard-experiment");
        if !variant.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(variant, "hello-ab/two", "a weight of 0 never serves");
    assert_eq!(admin(Method::POST, b.url(), "/admin/experiments/hello-ab/pause", None).await.0, 200);
    for _ in 0..200 {
        variant = header(&post_as(a.url(), MAIN_KEY, &[], &chat).await, "x-switchyard-experiment");
        if variant.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(variant, "", "paused on the other instance too");

    // NATS request/reply, and a durable job whose usage event names the version
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let mut h = async_nats::HeaderMap::new();
    h.insert("Authorization", format!("Bearer {MAIN_KEY}").as_str());
    let m = tokio::time::timeout(
        Duration::from_secs(20),
        nc.request_with_headers("pr.v1.chat".to_string(), h.clone(), chat.to_string().into()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(m.headers.as_ref().and_then(|h| h.get("x-switchyard-prompt")).map(|v| v.as_str()), Some("greet@2"));
    // an error reply after the prompt was rendered names the version too
    let mut failing = h.clone();
    failing.insert("x-mock-status", "500");
    failing.insert("cache-control", "no-cache");
    let e = nc.request_with_headers("pr.v1.chat".to_string(), failing, chat.to_string().into()).await.unwrap();
    let eh = e.headers.as_ref().unwrap();
    assert_eq!(eh.get("x-switchyard-status").map(|v| v.as_str()), Some("502"));
    assert_eq!(eh.get("x-switchyard-prompt").map(|v| v.as_str()), Some("greet@2"));
    // feedback on it over NATS too
    let request_id = m.headers.as_ref().and_then(|h| h.get("x-request-id")).map(|v| v.as_str().to_string()).unwrap();
    let fb = json!({"request_id": request_id, "score": 4, "comment": "nice"});
    let m = nc.request_with_headers("pr.v1.feedback".to_string(), h.clone(), fb.to_string().into()).await.unwrap();
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!((v["object"].as_str(), v["score"].as_f64()), (Some("feedback"), Some(4.0)), "{v}");
    let m = nc.request_with_headers("pr.v1.feedback".to_string(), h.clone(), "{\"score\": 1}".into()).await.unwrap();
    assert_eq!(m.headers.as_ref().and_then(|h| h.get("x-switchyard-status")).map(|v| v.as_str()), Some("400"));
    let js = async_nats::jetstream::new(nc.clone());
    h.insert("Nats-Msg-Id", "job-prompt-1");
    let job = json!({"id": "job-prompt-1", "endpoint": "chat", "body": chat});
    js.publish_with_headers("pr.v1.jobs.normal", h, job.to_string().into()).await.unwrap().await.unwrap();
    let mut usage = Vec::new();
    for _ in 0..200 {
        usage = read_stream(&js, "PR_USAGE").await;
        if usage.iter().any(|u| u["request_id"] == "job-prompt-1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = usage.iter().find(|u| u["request_id"] == "job-prompt-1").expect("the job's usage event");
    assert_eq!(record["prompt"], "greet@2", "{record}");
}

/// The official OpenAI Python SDK (`extra_body`, the Responses API's `prompt`) and the
/// Anthropic SDK (`extra_body`) use prompts unchanged.
#[test]
fn the_sdks_pass_the_prompt_object_unchanged() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, PROMPTS);
    crate::it::sdk::run_sdk_script("openai_prompts.py", &gw);
}
