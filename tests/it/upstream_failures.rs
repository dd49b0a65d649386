use serde_json::{json, Value};

use crate::common::*;

async fn chat_with(gw: &str, headers: &[(&str, &str)], body: Value) -> reqwest::Response {
    post_as(gw, MAIN_KEY, headers, &body).await
}

#[tokio::test]
async fn upstream_500_becomes_502() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let r = chat_with(gw.url(), &[("x-mock-status", "500")], chat_body("fail please")).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("failure requested"), "{v}");
}

#[tokio::test]
async fn upstream_429_is_passed_on_with_retry_after() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let r = chat_with(gw.url(), &[("x-mock-status", "429")], chat_body("throttle please")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_rate_limited");
}

#[tokio::test]
async fn upstream_timeout_becomes_504() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    // first_byte_timeout_ms = 1500 in the test config
    let r = chat_with(gw.url(), &[("x-mock-latency-ms", "4000")], chat_body("too slow")).await;
    assert_eq!(r.status(), 504);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_timeout");
    // the slot came back: the next request works
    assert_eq!(chat_with(gw.url(), &[], chat_body("fast again")).await.status(), 200);
}

#[tokio::test]
async fn unreachable_upstream_becomes_502() {
    // a port that nothing listens on: bind, take the port, close
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gw = Gateway::start(&format!("http://127.0.0.1:{port}"));
    let r = post(gw.url(), "/v1/chat/completions", chat_body("anyone there")).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_unreachable");
}

#[tokio::test]
async fn mid_stream_disconnect_ends_with_an_error_event_not_done() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let mut body = chat_body("cut me off after three chunks");
    body["stream"] = json!(true);
    let r = chat_with(gw.url(), &[("x-mock-disconnect-after", "3")], body).await;
    assert_eq!(r.status(), 200, "headers were sent before the cut");
    let text = r.text().await.unwrap();
    let events = sse_data(&text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].as_str().unwrap().contains("mid-stream"), "{last}");
    // the three chunks before the cut arrived
    assert_eq!(events.len(), 4, "{text}");
}

#[tokio::test]
async fn streamed_upstream_error_status_is_a_plain_error_response() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let mut body = chat_body("stream fails before the first byte");
    body["stream"] = json!(true);
    let r = chat_with(gw.url(), &[("x-mock-status", "503")], body).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "api_error");
}

/// A 200 whose body is cut JSON, or SSE answered to a call that asked for none, is a 502
/// `upstream_invalid_response` for the client (never a 200 it cannot parse), recorded as
/// such, and fails over to the alias's next target like any other upstream failure.
#[tokio::test]
async fn a_broken_200_is_a_502_and_fails_over() {
    let cut =
        br#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assis"#.to_vec();
    let sse = b"data: {\"id\":\"c\",\"choices\":[]}\n\ndata: [DONE]\n\n".to_vec();
    let rec =
        Recorder::start(vec![("application/json", cut.clone()), ("text/event-stream", sse), ("application/json", cut)])
            .await;
    let extra = format!(
        r#"
[[providers]]
name = "broken-json"
kind = "openai-compatible"
base_url = "{}/v1"
breaker_failures = 0

[[models]]
alias = "broken-only"
targets = [{{ provider = "broken-json", model = "m" }}]

[[models]]
alias = "broken-then-up"
strategy = "failover"
targets = [{{ provider = "broken-json", model = "m" }}, {{ provider = "up", model = "gpt-4o-mini" }}]
"#,
        rec.url
    );
    let mock = mock_upstream();
    let mut gw = Gateway::start_with(&mock.url, &extra);
    for text in ["cut json", "sse instead"] {
        let r = post_as(gw.url(), MAIN_KEY, &[("cache-control", "no-cache")], &chat_for("broken-only", text)).await;
        assert_eq!(r.status(), 502, "{text}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "upstream_invalid_response", "{text}: {v}");
    }
    let r =
        post_as(gw.url(), MAIN_KEY, &[("cache-control", "no-cache")], &chat_for("broken-then-up", "fail over")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-provider"), "up");
    assert_eq!(header(&r, "x-switchyard-attempts"), "2");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "This is a mock reply to: fail over");
    // the ledger says 502 for the two that failed
    gw.stop();
    let (code, out, err) =
        run_cli(&["usage", "--data-dir", gw.data_dir().to_str().unwrap(), "--by", "provider", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    let broken = rows.as_array().unwrap().iter().find(|r| r["group"] == "broken-json").cloned().unwrap();
    assert_eq!((broken["requests"].as_u64(), broken["errors"].as_u64()), (Some(2), Some(2)), "{out}");
}

fn chat_for(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Upstream answers are bounded: a non-streamed answer past the provider's
/// `max_response_bytes` is a 502 before it is buffered, and a stream whose event grows
/// past `max_event_bytes` ends with an error event (never unbounded memory).
#[tokio::test]
async fn upstream_answers_and_stream_events_are_bounded() {
    let mock = mock_upstream();
    let extra = format!(
        r#"
[[providers]]
name = "small"
kind = "openai-compatible"
base_url = "{}/v1"
max_response_bytes = 4000
max_event_bytes = 300
forward_headers = ["x-mock-chunk-chars"]
breaker_failures = 0

[[models]]
alias = "small-chat"
targets = [{{ provider = "small", model = "gpt-4o-mini" }}]

[[models]]
alias = "small-embed"
targets = [{{ provider = "small", model = "text-embedding-3-small" }}]
"#,
        mock.url
    );
    let gw = Gateway::start_with(&mock.url, &extra);
    let big = json!({"model": "small-embed", "input": ["one", "two"], "dimensions": 1000});
    let url = format!("{}/v1/embeddings", gw.url());
    let r = client().post(url).bearer_auth(MAIN_KEY).json(&big).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_invalid_response", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("max_response_bytes"), "{v}");
    // a small answer still fits
    let ok = client()
        .post(format!("{}/v1/embeddings", gw.url()))
        .bearer_auth(MAIN_KEY)
        .json(&json!({"model": "small-embed", "input": "one", "dimensions": 8}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // one streamed chunk of 400 characters is one event past 300 bytes: before any
    // content reached the client, so the answer is a 502 naming the bound
    let long = "word ".repeat(80);
    let body = json!({"model": "small-chat", "stream": true, "messages": [{"role": "user", "content": long}]});
    let r = post_as(gw.url(), MAIN_KEY, &[("x-mock-chunk-chars", "400")], &body).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("max_event_bytes"), "{v}");
}

/// Requests are bounded in inputs and dimensions: embeddings and moderations past
/// `server.max_inputs`, or `dimensions` past `server.max_dimensions`, are a 400 that names
/// the bound, before any provider is called (a 100,000-input moderation request used to
/// answer 59 MB).
#[tokio::test]
async fn inputs_and_dimensions_are_bounded() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let many: Vec<String> = (0..65).map(|i| i.to_string()).collect();
    for (path, body) in [
        ("/v1/embeddings", json!({"model": "embed", "input": many})),
        ("/v1/moderations", json!({"input": many})),
        ("/v1/embeddings", json!({"model": "embed", "input": "x", "dimensions": 3000})),
    ] {
        let r = post(gw.url(), path, body.clone()).await;
        assert_eq!(r.status(), 400, "{path} {body}");
        let v: Value = r.json().await.unwrap();
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("server.max_inputs") || m.contains("server.max_dimensions"), "{m}");
    }
    assert_eq!(mock_requests(&mock.url).await, 0, "nothing reached the provider");
    // at the bound, it is served
    let r = post(gw.url(), "/v1/embeddings", json!({"model": "embed", "input": many[..64], "dimensions": 8})).await;
    assert_eq!(r.status(), 200);
}

/// A provider that echoes the gateway's credential in its error (as OpenAI does for a
/// wrong key) has it masked before the message reaches the client, the log or the
/// ledger; anything else shaped like a credential is masked too.
#[tokio::test]
async fn upstream_errors_never_echo_a_credential() {
    let echo = br#"{"error":{"message":"Incorrect API key provided: Bearer the-provider-secret-42. Also sk-proj-abcdefghijklmnop1234 is wrong.","type":"invalid_request_error","code":"invalid_api_key"}}"#.to_vec();
    let rec = Recorder::start_with_status(vec![(401, "application/json", echo)]).await;
    let extra = format!(
        r#"
[[providers]]
name = "echoes"
kind = "openai-compatible"
base_url = "{}/v1"
api_key = "the-provider-secret-42"
breaker_failures = 0

[[models]]
alias = "echo"
targets = [{{ provider = "echoes", model = "m" }}]
"#,
        rec.url
    );
    let mock = mock_upstream();
    let mut gw = Gateway::start_with(&mock.url, &extra);
    let r = post(
        gw.url(),
        "/v1/chat/completions",
        json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(text.contains("Incorrect API key provided"), "{text}");
    for secret in ["the-provider-secret-42", "sk-proj-abcdefghijklmnop1234"] {
        assert!(!text.contains(secret), "{text}");
    }
    gw.stop();
    let log = gw.log();
    assert!(!log.contains("the-provider-secret-42") && !log.contains("sk-proj-abcdefghijklmnop1234"), "{log}");
    let ledger = std::fs::read_dir(gw.data_dir())
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path()).is_ok_and(|b| b.windows(22).any(|w| w == b"the-provider-secret-42")));
    assert!(!ledger, "the secret is not in the data dir");
}

/// A stream whose provider goes silent ends after the provider's `stream_idle_timeout_ms`
/// (a 504 before any content, an error event after), and a client that closes its side
/// while the provider is silent is let go at once: the request is recorded as the
/// client's close (499) and its slot is given back, long before the provider's timeout.
#[tokio::test]
async fn silent_streams_end_and_clients_that_leave_free_their_slot() {
    let mock = mock_upstream();
    let extra = format!(
        r#"
[[providers]]
name = "sleepy"
kind = "openai-compatible"
base_url = "{}/v1"
stream_idle_timeout_ms = 300
forward_headers = ["x-mock-chunk-delay-ms"]
breaker_failures = 0

[[models]]
alias = "sleepy"
targets = [{{ provider = "sleepy", model = "gpt-4o-mini" }}]
"#,
        mock.url
    );
    let gw = Gateway::start_with(&mock.url, &extra);
    let body = json!({"model": "sleepy", "stream": true, "messages": [{"role": "user", "content": "zzz"}]});
    let r = post_as(gw.url(), MAIN_KEY, &[("x-mock-chunk-delay-ms", "5000")], &body).await;
    assert_eq!(r.status(), 504);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("stream idle"), "{v}");

    // a client that sends its request and closes its side while the provider is silent
    use tokio::io::AsyncWriteExt;
    let addr = gw.url().trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let chat =
        json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "then leave"}]}).to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {MAIN_KEY}\r\ncontent-type: application/json\r\nx-mock-chunk-delay-ms: 30000\r\ncontent-length: {}\r\n\r\n",
        chat.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(chat.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    s.shutdown().await.unwrap();
    let mut recorded = false;
    for _ in 0..100 {
        let text = client().get(format!("{}/metrics", gw.url())).send().await.unwrap().text().await.unwrap();
        if text.lines().any(|l| l.starts_with("switchyard_requests_total") && l.contains("status=\"499\"")) {
            recorded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(recorded, "the client's close is recorded within 5 s, not after the provider's 30 s");
}
