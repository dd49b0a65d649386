//! Guardrail services of the operator's own, each a real HTTP server: a webhook (on
//! requests and answers, with its timeout and fail-open / fail-closed), a Presidio
//! analyzer, an OpenAI-format `/moderations` (in `guardrails.rs`), and a Llama-Guard
//! model served by an alias.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

async fn received(mock: &str) -> String {
    let v: Value = client().get(format!("{mock}/mock/requests")).send().await.unwrap().json().await.unwrap();
    v.to_string()
}

#[tokio::test]
async fn a_webhook_allows_flags_blocks_and_rewrites_requests_and_answers() {
    let mock = mock_upstream();
    let hook = Responder::start(Duration::ZERO, |_, body| {
        let text = body.to_string();
        let action = if text.contains("forbidden") {
            json!({"action": "block", "reason": "policy 7"})
        } else if text.contains("suspicious") {
            json!({"action": "flag", "reason": "looks odd"})
        } else if text.contains("rewrite me") {
            json!({"action": "allow", "messages": [{"role": "user", "content": "rewritten by the webhook"}]})
        } else {
            json!({"action": "allow"})
        };
        (200, action)
    })
    .await;
    let slow = Responder::start(Duration::from_millis(1500), |_, _| (200, json!({"action": "allow"}))).await;
    let big =
        Responder::start(Duration::ZERO, |_, _| (200, json!({"action": "allow", "reason": "x".repeat(4096)}))).await;
    let extra = format!(
        r#"
[[guardrails]]
name = "corp"
webhook = {{ url = "{hook}/check", headers = {{ authorization = "Bearer hook-secret-1" }}, timeout_ms = 1000 }}

[[guardrails]]
name = "slow-open"
direction = "request"
webhook = {{ url = "{slow}/check", timeout_ms = 200 }}

[[guardrails]]
name = "slow-closed"
direction = "request"
webhook = {{ url = "{slow}/check", timeout_ms = 200, on_error = "block" }}

[[guardrails]]
name = "too-big"
direction = "request"
webhook = {{ url = "{big}/check", max_answer_bytes = 1000, on_error = "block" }}

[[models]]
alias = "big"
guardrails = ["too-big"]
targets = [{{ provider = "up", model = "gpt-4o-mini" }}]

[[models]]
alias = "hooked"
guardrails = ["corp"]
targets = [{{ provider = "up", model = "gpt-4o-mini" }}]

[[models]]
alias = "open"
guardrails = ["slow-open"]
targets = [{{ provider = "up", model = "gpt-4o-mini" }}]

[[models]]
alias = "closed"
guardrails = ["slow-closed"]
targets = [{{ provider = "up", model = "gpt-4o-mini" }}]
"#,
        hook = hook.url,
        slow = slow.url,
        big = big.url
    );
    let gw = Gateway::start_with(&mock.url, &extra);
    let nc = [("cache-control", "no-cache")];
    // allowed: the webhook saw the request as the provider would, with who sent it
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("hooked", "a calm question")).await;
    assert_eq!(r.status(), 200);
    let sent = hook.bodies("/check").await;
    assert_eq!(sent[0]["direction"], "request");
    assert_eq!(sent[0]["model"], "hooked");
    assert_eq!(sent[0]["guardrail"], "corp");
    assert!(sent[0]["key_id"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(sent[0]["messages"][0]["content"], "a calm question");
    // and the answer (non-streamed) after it
    assert_eq!(sent[1]["direction"], "response");
    assert!(sent[1]["output"].as_str().unwrap().contains("a calm question"));
    // blocked: never reaches the provider
    let calls = mock_requests(&mock.url).await;
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("hooked", "something forbidden")).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "content_policy_violation");
    assert!(v["error"]["message"].as_str().unwrap().contains("policy 7"), "{v}");
    assert_eq!(mock_requests(&mock.url).await, calls);
    // flagged: through, with the flag in a header
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("hooked", "a suspicious one")).await;
    assert_eq!(r.status(), 200);
    // (the echoing mock repeats the word, so the answer is flagged too)
    assert!(r.headers()["x-switchyard-guardrails"].to_str().unwrap().starts_with("corp:webhook=1.00"));
    // rewritten: the provider gets the webhook's messages
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("hooked", "rewrite me please")).await;
    assert_eq!(r.status(), 200);
    let up = received(&mock.url).await;
    assert!(up.contains("rewritten by the webhook") && !up.contains("rewrite me please"), "{up}");
    // an answer the webhook refuses: the echoing mock repeats the word
    let r = post_as(
        gw.url(),
        MAIN_KEY,
        &nc,
        &json!({"model": "hooked", "messages": [
        {"role": "system", "content": "forbidden"}, {"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status(), 400, "the system message went to the webhook too");
    // too slow: fail open lets it through and counts it; fail closed answers 503
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("open", "hello")).await;
    assert_eq!(r.status(), 200);
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("closed", "hello")).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("fails closed"), "{v}");
    // an answer over max_answer_bytes is a failure too
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("big", "hello")).await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("max_answer_bytes"));
    let failed =
        "switchyard_guardrail_actions_total{guardrail=\"slow-open\",category=\"webhook\",action=\"service_failed\"}";
    assert_eq!(metric(gw.url(), failed).await, Some(1.0));
    // the webhook's credential is sent to it, and never shown
    let metrics = client().get(format!("{}/metrics", gw.url())).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("hook-secret-1"));
    assert!(!gw.log().contains("hook-secret-1"));
}

#[tokio::test]
async fn presidio_findings_are_redacted_masked_or_blocked() {
    let mock = mock_upstream();
    // a stand-in analyzer with Presidio's wire format: character offsets, scores
    let presidio = Responder::start(Duration::ZERO, |path, body| {
        assert_eq!(path, "/analyze");
        let text = body["text"].as_str().unwrap_or_default();
        let chars: Vec<char> = text.chars().collect();
        let find = |needle: &str| -> Option<usize> {
            let n: Vec<char> = needle.chars().collect();
            chars.windows(n.len()).position(|w| w == n.as_slice())
        };
        let mut out = Vec::new();
        for (needle, entity, score) in
            [("212-555-5555", "PHONE_NUMBER", 0.75), ("078-05-1120", "US_SSN", 0.85), ("Jürgen", "PERSON", 0.3)]
        {
            if let Some(at) = find(needle) {
                out.push(
                    json!({"entity_type": entity, "start": at, "end": at + needle.chars().count(), "score": score}),
                );
            }
        }
        (200, json!(out))
    })
    .await;
    let extra = format!(
        r#"
[[guardrails]]
name = "presidio"
direction = "request"
presidio = {{ url = "{p}", language = "en", score = 0.5, entities = {{ US_SSN = "mask", CREDIT_CARD = "block", "*" = "redact" }} }}

[[guardrails]]
name = "strict"
direction = "request"
presidio = {{ url = "{p}", entities = {{ US_SSN = "block" }} }}

[[guardrails]]
name = "down"
direction = "request"
presidio = {{ url = "http://127.0.0.1:9", on_error = "block" }}

[[models]]
alias = "scrubbed"
guardrails = ["presidio"]
targets = [{{ provider = "up", model = "gpt-4o-mini" }}]

[[models]]
alias = "strict"
guardrails = ["strict"]
targets = [{{ provider = "up", model = "gpt-4o-mini" }}]

[[models]]
alias = "down"
guardrails = ["down"]
targets = [{{ provider = "up", model = "gpt-4o-mini" }}]
"#,
        p = presidio.url
    );
    let gw = Gateway::start_with(&mock.url, &extra);
    let nc = [("cache-control", "no-cache")];
    let text = "Jürgen here: call 212-555-5555, SSN 078-05-1120";
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("scrubbed", text)).await;
    assert_eq!(r.status(), 200);
    let up = received(&mock.url).await;
    assert!(up.contains("Jürgen here: call [PHONE_NUMBER], SSN *******1120"), "{up}");
    assert_eq!(presidio.bodies("/analyze").await[0]["language"], "en");
    let counted = "switchyard_guardrail_actions_total{guardrail=\"presidio\",category=\"US_SSN\",action=\"mask\"}";
    assert_eq!(metric(gw.url(), counted).await, Some(1.0));
    let calls = mock_requests(&mock.url).await;
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("strict", text)).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("US_SSN"));
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("down", text)).await;
    assert_eq!(r.status(), 503);
    assert_eq!(mock_requests(&mock.url).await, calls, "neither reached the provider");
}

#[tokio::test]
async fn a_llama_guard_alias_moderates_requests() {
    let mock = mock_upstream();
    // a provider serving a Llama-Guard-style model: `safe`, or `unsafe` and codes
    let guard = Responder::start(Duration::ZERO, |_, body| {
        let said = body["messages"].to_string();
        let verdict = if said.contains("hate them") {
            "unsafe\nS10"
        } else if said.contains("gibberish") {
            "I am not sure"
        } else {
            "safe"
        };
        (
            200,
            json!({"id": "x", "object": "chat.completion", "created": 0, "model": "llama-guard3",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": verdict}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}),
        )
    })
    .await;
    let extra = format!(
        r#"
[[providers]]
name = "guard-host"
kind = "openai"
base_url = "{g}/v1"
api_key = "guard-secret"

[[models]]
alias = "llama-guard"
targets = [{{ provider = "guard-host", model = "llama-guard3:1b" }}]

[[guardrails]]
name = "lg"
direction = "request"
moderation = {{ classifier = "llama-guard", model = false }}

[[models]]
alias = "guarded"
guardrails = ["lg"]
targets = [{{ provider = "up", model = "gpt-4o-mini" }}]
"#,
        g = guard.url
    );
    let gw = Gateway::start_with(&mock.url, &extra);
    let nc = [("cache-control", "no-cache")];
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("guarded", "I hate them all")).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("hate") && message.contains("llama-guard"), "{v}");
    // the conversation went to the model as it is
    let asked = guard.bodies("/v1/chat/completions").await;
    assert_eq!(asked[0]["model"], "llama-guard3:1b");
    assert_eq!(asked[0]["messages"][0]["content"], "I hate them all");
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("guarded", "what a lovely day")).await;
    assert_eq!(r.status(), 200);
    // no verdict: the request goes on, counted
    let r = post_as(gw.url(), MAIN_KEY, &nc, &ask("guarded", "gibberish")).await;
    assert_eq!(r.status(), 200);
    let failed =
        "switchyard_guardrail_actions_total{guardrail=\"lg\",category=\"moderation\",action=\"second_opinion_failed\"}";
    assert_eq!(metric(gw.url(), failed).await, Some(1.0));
}
