//! Request logs on a real `nats-server` (JetStream): the prompts and answers of the keys
//! that ask for it, after the guardrails, read back with `switchyard logs get|tail`; no
//! entry for the others; the access log's line for a refused request.

use serde_json::{json, Value};

use crate::common::*;

const LOGGED_KEY: &str = "sk-test-logged-key";

fn extra(nats: &str) -> String {
    format!(
        "{}\n[[guardrails]]\nname = \"pii\"\npii = {{ email = \"pseudonymize\", phone = \"redact\" }}\n\n\
         [[keys]]\nid = \"logged\"\nkey = \"{LOGGED_KEY}\"\nmodels = [\"*\"]\nguardrails = [\"pii\"]\nlog_requests = true\n",
        nats_section(nats, "rl", "")
    )
}

/// `switchyard logs --config <the gateway's> ARGS`, killed after 20 s.
async fn cli(gw: &Gateway, args: &[&str]) -> (i32, String, String) {
    let config = gw.config.to_string_lossy().to_string();
    let run = tokio::process::Command::new(BIN)
        .args(["logs", "--config", config.as_str()])
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| panic!("`switchyard logs {args:?}` did not end"))
        .expect("run the CLI");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// `logs get`, retried while the entry is on its way (published after the answer).
async fn get(gw: &Gateway, request_id: &str) -> Value {
    for _ in 0..100 {
        let (code, out, _) = cli(gw, &["get", request_id]).await;
        if code == 0 {
            return serde_json::from_str(&out).expect("an entry is JSON");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no log entry for {request_id}; gateway log:\n{}", gw.log());
}

#[tokio::test]
async fn logged_keys_requests_are_on_jetstream_as_the_guardrails_left_them() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let gw = Gateway::start_config(|dir| {
        config_text(dir, &mock.url, &extra(&nats.url())).replace("workers = 2", "workers = 2\naccess_log = true")
    });
    gw.wait_nats("connected").await;
    let prompt = "Mail alice@example.com or call +1 415 555 0134 about the order";
    let r = post_as(gw.url(), LOGGED_KEY, &[], &chat_body(prompt)).await;
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-request-id");
    let answer: Value = r.json().await.unwrap();
    // the client gets the real address back
    assert!(answer.to_string().contains("alice@example.com"), "{answer}");

    let entry = get(&gw, &id).await;
    let text = entry.to_string();
    assert!(!text.contains("alice@example.com"), "a pseudonymized value is never logged: {text}");
    assert!(!text.contains("555 0134"), "a redacted value is never logged: {text}");
    assert!(!text.contains(LOGGED_KEY));
    assert_eq!(entry["request_id"], id.as_str());
    assert_eq!(entry["record"]["key_id"], "logged");
    assert_eq!(entry["record"]["status"], 200);
    let sent = entry["request"]["messages"][0]["content"].as_str().unwrap();
    assert!(sent.starts_with("Mail ") && sent.contains("about the order"), "{sent}");
    let said = entry["response"]["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(said.starts_with("This is a mock reply to: Mail "), "{said}");

    // a stream's answer is the whole completion
    let body = json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "stream this"}]});
    let r = post_as(gw.url(), LOGGED_KEY, &[], &body).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("[DONE]"));

    // the main key logs nothing
    let r = post_as(gw.url(), MAIN_KEY, &[], &chat_body("not logged")).await;
    let unlogged = header(&r, "x-request-id");
    let (tail_code, tail, _) = cli(&gw, &["tail", "--key", "logged", "--last", "10", "--count", "2"]).await;
    assert_eq!(tail_code, 0);
    let entries: Vec<Value> = tail.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(entries.len(), 2);
    let s = entries.iter().find(|e| e["record"]["stream"] == true).expect("the stream's entry");
    assert_eq!(s["response"]["choices"][0]["message"]["content"], "This is a mock reply to: stream this");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (code, _, err) = cli(&gw, &["get", &unlogged]).await;
    assert_eq!(code, 1, "{err}");
    assert!(metric(gw.url(), "switchyard_request_logs_total").await.is_some_and(|n| n >= 2.0));

    // the console's reading: newest first, a page at a time, one request's entry
    let admin = |path: String| {
        let rb = client().get(format!("{}{path}", gw.url())).bearer_auth(ADMIN_KEY);
        async move { rb.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let page = admin("/admin/logs?limit=10".into()).await;
    assert_eq!(page["enabled"], true);
    let ids: Vec<&str> = page["data"].as_array().unwrap().iter().map(|e| e["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{page}");
    assert_eq!(ids[1], id.as_str(), "newest first: {page}");
    assert!(!page.to_string().contains("alice@example.com"));
    let first = admin("/admin/logs?limit=1".into()).await;
    assert_eq!(first["data"][0]["request_id"], ids[0]);
    let before = first["next_before"].as_u64().expect("a next page");
    let second = admin(format!("/admin/logs?limit=1&before={before}")).await;
    assert_eq!(second["data"][0]["request_id"], ids[1], "{second}");
    let third = admin(format!("/admin/logs?limit=1&before={}", second["next_before"].as_u64().unwrap())).await;
    assert!(third["data"].as_array().unwrap().is_empty() && third["next_before"].is_null(), "{third}");
    assert_eq!(admin("/admin/logs?key=main".into()).await["data"].as_array().unwrap().len(), 0);
    assert_eq!(admin("/admin/logs?key=logged&limit=5".into()).await["data"].as_array().unwrap().len(), 2);
    let one = admin(format!("/admin/logs/{id}")).await;
    assert_eq!(one["record"]["key_id"], "logged");
    let r = client().get(format!("{}/admin/logs/{unlogged}", gw.url())).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = client().get(format!("{}/admin/logs", gw.url())).bearer_auth(LOGGED_KEY).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // a refused request has its access line too
    let r = post_as(gw.url(), "sk-wrong", &[], &chat_body("x")).await;
    assert_eq!(r.status(), 401);
    let refused = header(&r, "x-request-id");
    let log = gw.log();
    let line = log.lines().find(|l| l.contains(&refused)).unwrap_or_else(|| panic!("no access line:\n{log}"));
    assert!(line.contains("\"status\":401") && line.contains("switchyard::access"), "{line}");
}
