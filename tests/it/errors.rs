use serde_json::{json, Value};

use crate::common::*;

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(v["error"]["type"].is_string(), "{v}");
    (status, v)
}

#[tokio::test]
async fn client_errors_have_the_openai_shape_and_status() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let url = format!("{}/v1/chat/completions", gw.url());
    let c = client();

    let (s, v) = error_of(c.post(&url).json(&chat_body("x")).send().await.unwrap()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("missing_api_key")));

    let (s, v) = error_of(c.post(&url).bearer_auth("sk-wrong-key").json(&chat_body("x")).send().await.unwrap()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("invalid_api_key")));

    let (s, v) = error_of(
        c.post(&url)
            .bearer_auth("sk-test-rpm")
            .json(&json!({"model": "secret", "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("model_not_allowed")));

    let (s, v) = error_of(
        post(
            gw.url(),
            "/v1/chat/completions",
            json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await,
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("model_not_found")));

    let (s, v) = error_of(
        c.post(&url)
            .bearer_auth(MAIN_KEY)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["error"]["type"].as_str()), (400, Some("invalid_request_error")));
    assert!(v["error"]["message"].as_str().unwrap().contains("invalid JSON"));

    let (s, v) = error_of(post(gw.url(), "/v1/chat/completions", json!({"model": "chat", "messages": []})).await).await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("messages"));

    let (s, _) = error_of(
        post(gw.url(), "/v1/chat/completions", json!({"model": "chat", "messages": [{"content": "no role"}]})).await,
    )
    .await;
    assert_eq!(s, 400);

    // the test config's body limit is 4096 bytes
    let big = "x".repeat(10_000);
    let (s, v) = error_of(post(gw.url(), "/v1/chat/completions", chat_body(&big)).await).await;
    assert_eq!((s, v["error"]["code"].as_str()), (413, Some("request_too_large")));

    let (s, _) = error_of(
        c.post(&url)
            .bearer_auth(MAIN_KEY)
            .header("x-switchyard-priority", "urgent")
            .json(&chat_body("x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);

    let (s, _) = error_of(c.get(format!("{}/v1/nothing-here", gw.url())).send().await.unwrap()).await;
    assert_eq!(s, 404);

    // the gateway is still fine after all that
    assert_eq!(post(gw.url(), "/v1/chat/completions", chat_body("still alive")).await.status(), 200);
    assert_eq!(mock_requests(&mock.url).await, 1, "no refused request reached the provider");
}

#[tokio::test]
async fn a_body_sent_in_chunks_over_the_limit_is_refused() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    // no content-length: the limit is enforced while reading
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .bearer_auth(MAIN_KEY)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

/// Every ingress checks the shape of what it is sent: a field of the wrong type or out of
/// range, or a role no API has, is a 400 that names it (in the path's own error shape),
/// and nothing reaches a provider.
#[tokio::test]
async fn malformed_fields_are_refused_by_name_on_every_ingress() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let user = json!([{"role": "user", "content": "hi"}]);
    let chat = |extra: Value| {
        let mut b = json!({"model": "chat", "messages": user});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, field) in [
        (chat(json!({"stream": "yes"})), "`stream`"),
        (chat(json!({"n": -1})), "`n`"),
        (chat(json!({"tools": "all"})), "`tools`"),
        (chat(json!({"temperature": 7})), "`temperature`"),
        (chat(json!({"max_tokens": -5})), "`max_tokens`"),
        (chat(json!({"max_tokens": 0})), "`max_tokens`"),
        (json!({"model": "chat", "messages": [{"role": "root", "content": "hi"}]}), "`messages[0].role`"),
        (json!({"model": 5, "messages": user}), "`model`"),
    ] {
        let r = post(gw.url(), "/v1/chat/completions", body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(field), "{body}: {m}");
    }
    let msg = |extra: Value| {
        let mut b = json!({"model": "chat", "max_tokens": 64, "messages": user});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, field) in [
        (msg(json!({"stream": "yes"})), "`stream`"),
        (msg(json!({"tools": "all"})), "`tools`"),
        (msg(json!({"max_tokens": "many"})), "`max_tokens`"),
        (msg(json!({"thinking": true})), "`thinking`"),
        (json!({"model": "chat", "max_tokens": 64, "messages": [{"role": "root", "content": "hi"}]}), "role"),
    ] {
        let r = client()
            .post(format!("{}/v1/messages", gw.url()))
            .header("x-api-key", MAIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error", "Anthropic's shape: {v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(field), "{body}: {m}");
    }
    assert_eq!(mock_requests(&mock.url).await, 0);
}

/// Sends `head` and then `body` on a raw connection and returns what comes back (status
/// line and body), or `None` when nothing came within 10 s.
async fn raw_exchange(addr: &str, head: &str, body: &[u8]) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&out);
                    // a whole JSON body after the head is enough
                    if let Some((_, body)) = text.split_once("\r\n\r\n") {
                        if body.trim_end().ends_with('}') {
                            break;
                        }
                    }
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read).await.ok()?;
    Some(String::from_utf8_lossy(&out).to_string())
}

/// Credentials are checked before any body is read, on every route (an admin call with
/// no credential and a body that never comes is answered 401 at once), and a body that
/// does not arrive within `server.body_timeout_ms` is a 408 in the API's error shape.
#[tokio::test]
async fn credentials_come_before_bodies_and_slow_bodies_time_out() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let addr = gw.url().trim_start_matches("http://").to_string();
    let head = |path: &str, auth: &str, length: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n{auth}\r\n"
        )
    };
    for path in ["/admin/keys", "/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/moderations"] {
        let answer =
            raw_exchange(&addr, &head(path, "", 100_000), b"{").await.unwrap_or_else(|| panic!("{path}: no answer"));
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        assert!(answer.contains("\"error\""), "{path}: {answer}");
    }
    // an admin credential and a body that stalls: 408, JSON
    let auth = format!("authorization: Bearer {ADMIN_KEY}\r\n");
    let answer = raw_exchange(&addr, &head("/admin/keys", &auth, 1000), b"{").await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    let auth = format!("authorization: Bearer {MAIN_KEY}\r\n");
    let answer = raw_exchange(&addr, &head("/v1/chat/completions", &auth, 1000), b"{").await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}
