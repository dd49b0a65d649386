//! OpenTelemetry traces, received by a real OTLP receiver that the test starts
//! (`tests/common/otlp_receiver.py`: gRPC and HTTP, decoded with the OpenTelemetry
//! project's protobuf classes from PyPI): the span tree of a request, the GenAI
//! attributes, the caller's `traceparent` continued and passed on to the provider and
//! over NATS, sampling, and the exporter's headers. Needs the venv `ops/test.sh`
//! prepares; skipped under plain `cargo test`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// The receiver process and every span it printed so far.
struct Receiver {
    child: Child,
    grpc: u16,
    http: u16,
    incoming: tokio::sync::mpsc::UnboundedReceiver<Value>,
    spans: Vec<Value>,
}

impl Receiver {
    fn start() -> Option<Receiver> {
        let Ok(python) = std::env::var("SWITCHYARD_TEST_PYTHON") else {
            eprintln!("skipped: SWITCHYARD_TEST_PYTHON is not set (run ops/test.sh)");
            return None;
        };
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/otlp_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OTLP receiver");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first: Value = serde_json::from_str(&lines.next().expect("ports").expect("read")).expect("JSON");
        let (sink, incoming) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = sink.send(v);
                }
            }
        });
        let port = |k: &str| first[k].as_u64().expect("port") as u16;
        Some(Receiver { grpc: port("grpc"), http: port("http"), child, incoming, spans: Vec::new() })
    }

    /// Waits (up to 15 s) until `done` holds for the spans received so far.
    async fn wait(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..300 {
            while let Ok(v) = self.incoming.try_recv() {
                self.spans.push(v);
            }
            if done(&self.spans) {
                return self.spans.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: not received; spans: {:#?}", self.spans);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn children<'a>(spans: &'a [Value], parent: &Value) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["parent_span_id"] == parent["span_id"]).collect()
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

/// The `traceparent` in a raw HTTP request head.
fn sent_traceparent(head: &str) -> Option<String> {
    head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("traceparent:").map(|v| v.trim().to_string()))
}

const COMPLETION: &str = r#"{"id":"chatcmpl-up-1","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"traced"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}}"#;

const STREAM: &str = "data: {\"id\":\"chatcmpl-up-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hel\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"chatcmpl-up-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"length\"}]}\n\n\
data: {\"id\":\"chatcmpl-up-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
data: [DONE]\n\n";

/// Two providers on the recording upstream, an alias that fails over from the first to
/// the second, and a guardrail on it.
fn traced_providers(url: &str) -> String {
    format!(
        "\n[[providers]]\nname = \"rec-a\"\nkind = \"openai\"\nbase_url = \"{url}/v1\"\napi_key = \"rec-secret\"\n\
         max_retries = 1\n\n[[providers]]\nname = \"rec-b\"\nkind = \"openai\"\nbase_url = \"{url}/v1\"\n\
         api_key = \"rec-secret\"\n\n[[guardrails]]\nname = \"tpii\"\npii = {{ email = \"redact\" }}\n\n\
         [[models]]\nalias = \"traced\"\nstrategy = \"failover\"\nguardrails = [\"tpii\"]\n\
         targets = [{{ provider = \"rec-a\", model = \"gpt-4o-mini\" }}, {{ provider = \"rec-b\", model = \"gpt-4o-mini\" }}]\n"
    )
}

/// A request's whole tree over gRPC: the server span continues the caller's trace; auth,
/// guardrails, limits, cache, route, one GenAI client span per target tried (the first
/// provider answers 503 twice, a same-target retry included, so the request fails over
/// to the second), one HTTP span per try, the ledger write; each provider request gets
/// the `traceparent` of its own try. A stream adds its span and the time to first chunk.
#[tokio::test]
async fn a_request_is_one_trace_with_genai_spans_over_grpc() {
    let Some(mut rx) = Receiver::start() else { return };
    let busy = br#"{"error":{"message":"busy"}}"#.to_vec();
    let mut upstream = Recorder::start_with_status(vec![
        (503, "application/json", busy.clone()),
        (503, "application/json", busy),
        (200, "application/json", COMPLETION.as_bytes().to_vec()),
        (200, "text/event-stream", STREAM.as_bytes().to_vec()),
    ])
    .await;
    let extra = format!(
        "{}\n[telemetry]\nendpoint = \"http://127.0.0.1:{}\"\nexport_interval_ms = 100\n\
         resource = {{ \"deployment.environment\" = \"ci\" }}\n",
        traced_providers(&upstream.url),
        rx.grpc
    );
    let gw = Gateway::start_with("http://127.0.0.1:9", &extra);
    let tp = traceparent();
    let r = post_as(gw.url(), MAIN_KEY, &[("traceparent", tp.as_str())], &chat_body_for("traced", "hello")).await;
    assert_eq!(r.status(), 200);
    let request_id = header(&r, "x-request-id");
    let streamed = stream_chat(
        gw.url(),
        &[],
        &json!({"model": "traced", "stream": true, "messages": [
        {"role": "user", "content": "stream please"}]}),
    )
    .await;
    assert!(streamed.done());

    let spans = rx
        .wait("both requests' ledger spans", |s| {
            named(s, "switchyard.ledger").len() == 2 && named(s, "POST /v1/chat/completions").len() == 2
        })
        .await;
    let roots = named(&spans, "POST /v1/chat/completions");
    let root = roots.iter().find(|s| s["trace_id"] == CALLER_TRACE).expect("the caller's trace is continued");
    assert_eq!(root["parent_span_id"], CALLER_SPAN);
    assert_eq!(root["kind"], 2, "SERVER");
    assert_eq!(attr(root, "http.response.status_code"), 200);
    assert_eq!(attr(root, "switchyard.request_id"), request_id.as_str());
    assert_eq!(attr(root, "switchyard.key_id"), "main");
    assert_eq!(root["resource"]["service.name"], "switchyard");
    assert_eq!(root["resource"]["deployment.environment"], "ci");
    assert!(spans.iter().all(|s| s["protocol"] == "grpc"));

    let kids = children(&spans, root);
    let names: Vec<&str> = kids.iter().filter_map(|s| s["name"].as_str()).collect();
    let steps =
        ["switchyard.auth", "switchyard.guardrails", "switchyard.limits", "switchyard.cache", "switchyard.route"];
    for step in steps.into_iter().chain(["switchyard.ledger"]) {
        assert!(names.contains(&step), "{step} missing under the request: {names:?}");
    }
    let mut calls: Vec<&&Value> = kids.iter().filter(|s| s["name"] == "chat gpt-4o-mini").collect();
    calls.sort_by_key(|s| s["start"].as_u64());
    assert_eq!(calls.len(), 2, "one GenAI span per target tried: {calls:#?}");
    let failed = calls[0];
    assert_eq!(attr(failed, "switchyard.provider"), "rec-a");
    assert_eq!(failed["status"], 2, "the target that failed is an error");
    assert_eq!(attr(failed, "switchyard.retries"), 1);
    let gen_ai = calls[1];
    assert_eq!(attr(gen_ai, "switchyard.provider"), "rec-b");
    assert_eq!(gen_ai["kind"], 3, "CLIENT");
    assert_eq!(attr(gen_ai, "gen_ai.operation.name"), "chat");
    assert_eq!(attr(gen_ai, "gen_ai.provider.name"), "openai");
    assert_eq!(attr(gen_ai, "gen_ai.request.model"), "gpt-4o-mini");
    assert_eq!(attr(gen_ai, "gen_ai.response.model"), "gpt-4o-mini-2024-07-18");
    assert_eq!(attr(gen_ai, "gen_ai.response.id"), "chatcmpl-up-1");
    assert_eq!(attr(gen_ai, "gen_ai.usage.input_tokens"), 11);
    assert_eq!(attr(gen_ai, "gen_ai.usage.output_tokens"), 3);
    assert_eq!(attr(gen_ai, "gen_ai.response.finish_reasons"), &json!(["stop"]));
    assert_eq!(attr(gen_ai, "switchyard.retries"), 0);
    let tries = children(&spans, failed);
    assert_eq!(tries.len(), 2, "one HTTP span per try, the retry too: {tries:#?}");
    let first = tries.iter().find(|t| attr(t, "http.request.resend_count") == 0).unwrap();
    let retry = tries.iter().find(|t| attr(t, "http.request.resend_count") == 1).expect("the retry");
    for t in [first, retry] {
        assert_eq!(attr(t, "http.response.status_code"), 503);
        assert_eq!(t["status"], 2, "a failed try is an error");
    }
    let answered = children(&spans, gen_ai);
    assert_eq!(answered.len(), 1);
    assert_eq!(attr(answered[0], "http.response.status_code"), 200);
    assert_eq!(attr(answered[0], "server.address"), "127.0.0.1");

    // each provider request carried the trace, with its own try as the parent
    let expect = |t: &Value| Some(format!("00-{CALLER_TRACE}-{}-01", t["span_id"].as_str().unwrap()));
    for t in [first, retry, answered[0]] {
        let (head, _) = upstream.seen.recv().await.unwrap();
        assert_eq!(sent_traceparent(&head), expect(t));
    }

    // the stream: a new trace (no caller context), its relay span, and the time to first chunk
    let sroot = roots.iter().find(|s| s["trace_id"] != CALLER_TRACE).expect("the stream's trace");
    assert_eq!(sroot["parent_span_id"], "", "a new trace starts at the gateway");
    let skids = children(&spans, sroot);
    assert!(skids.iter().any(|s| s["name"] == "switchyard.stream"), "{skids:#?}");
    let sgen = skids.iter().find(|s| s["name"] == "chat gpt-4o-mini").expect("the stream's GenAI span");
    assert_eq!(attr(sgen, "gen_ai.usage.output_tokens"), 2);
    assert_eq!(attr(sgen, "gen_ai.response.finish_reasons"), &json!(["length"]));
    assert!(attr(sgen, "gen_ai.response.time_to_first_chunk").as_f64().is_some_and(|t| t > 0.0), "{sgen:#?}");
    let (head3, _) = upstream.seen.recv().await.unwrap();
    assert!(sent_traceparent(&head3).is_some_and(|t| t.contains(sroot["trace_id"].as_str().unwrap())));
    // no secret reached the trace
    let all = serde_json::to_string(&spans).unwrap();
    assert!(!all.contains("rec-secret") && !all.contains(MAIN_KEY));
}

fn chat_body_for(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Over HTTP with an API key header and `sample_ratio = 0`: a request without caller
/// context is not traced, one whose caller sampled it is (parent-based), the exporter's
/// header reaches the receiver and never the log; a durable NATS job published with a
/// `traceparent` runs as a consumer span of that trace, and its result message carries
/// the trace on; the items of a Batch API batch continue the trace of the request that
/// made the batch.
#[tokio::test]
async fn sampling_http_export_and_jobs_over_nats_keep_the_callers_trace() {
    let Some(mut rx) = Receiver::start() else { return };
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let extra = format!(
        "{}\n[telemetry]\nprotocol = \"http/protobuf\"\nendpoint = \"http://127.0.0.1:{}\"\nsample_ratio = 0.0\n\
         export_interval_ms = 100\nheaders = {{ \"x-otlp-key\" = \"otlp-secret-value\" }}\n",
        nats_section(&nats.url(), "tr", ""),
        rx.http
    );
    let gw = Gateway::start_with(&mock.url, &extra);
    gw.wait_nats("connected").await;
    // not sampled: no caller context and a ratio of 0
    assert_eq!(post_as(gw.url(), MAIN_KEY, &[], &chat_body("untraced")).await.status(), 200);
    let tp = traceparent();
    assert_eq!(post_as(gw.url(), MAIN_KEY, &[("traceparent", tp.as_str())], &chat_body("traced")).await.status(), 200);

    let nc = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(nc);
    let job_trace = "0af7651916cd43dd8448eb211c80319c";
    let mut h = async_nats::HeaderMap::new();
    h.insert("Authorization", format!("Bearer {MAIN_KEY}").as_str());
    h.insert("Nats-Msg-Id", "traced-job");
    h.insert("traceparent", format!("00-{job_trace}-b7ad6b7169203331-01").as_str());
    let job = json!({"id": "traced-job", "endpoint": "chat", "body": chat_body("job")});
    for _ in 0..100 {
        if let Ok(ack) = js.publish_with_headers("tr.v1.jobs.normal", h.clone(), job.to_string().into()).await {
            if ack.await.is_ok() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a Batch API batch made under a caller's trace: its items continue it
    let batch_trace = "1234567890abcdef1234567890abcdef";
    let lines: Vec<String> = (0..2)
        .map(|i| {
            json!({"custom_id": format!("c{i}"), "method": "POST", "url": "/v1/chat/completions",
            "body": chat_body(&format!("batch item {i}"))})
            .to_string()
        })
        .collect();
    let part = reqwest::multipart::Part::bytes((lines.join("\n") + "\n").into_bytes()).file_name("in.jsonl");
    let form = reqwest::multipart::Form::new().text("purpose", "batch").part("file", part);
    let file: Value = client()
        .post(format!("{}/v1/files", gw.url()))
        .bearer_auth(MAIN_KEY)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let created = client()
        .post(format!("{}/v1/batches", gw.url()))
        .bearer_auth(MAIN_KEY)
        .header("traceparent", format!("00-{batch_trace}-aaaaaaaaaaaaaaaa-01"))
        .json(&json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let item = |s: &Value| {
        s["name"].as_str().is_some_and(|n| n.starts_with("process tr.v1.jobs.")) && s["trace_id"] == batch_trace
    };
    let spans = rx
        .wait("the job's span and the batch items'", |s| {
            s.iter().any(|s| s["name"] == "process tr.v1.jobs.normal" && s["trace_id"] == job_trace)
                && s.iter().filter(|s| item(s)).count() == 2
                && named(s, "switchyard.ledger").len() >= 4
        })
        .await;
    let batch_root = spans.iter().find(|s| s["name"] == "POST /v1/batches").expect("the batch request's span");
    assert_eq!(batch_root["trace_id"], batch_trace);
    for s in spans.iter().filter(|s| item(s)) {
        assert_eq!(s["parent_span_id"], batch_root["span_id"], "an item continues the request that made it");
    }
    assert!(spans.iter().all(|s| s["protocol"] == "http"));
    assert!(spans.iter().all(|s| s["headers"]["x-otlp-key"] == "otlp-secret-value"));
    let traces: std::collections::HashSet<&str> = spans.iter().filter_map(|s| s["trace_id"].as_str()).collect();
    assert_eq!(
        traces,
        [CALLER_TRACE, job_trace, batch_trace].into_iter().collect(),
        "only sampled traces are exported"
    );
    let job_span = spans.iter().find(|s| s["name"] == "process tr.v1.jobs.normal").unwrap();
    assert_eq!(job_span["kind"], 5, "CONSUMER");
    assert_eq!(job_span["parent_span_id"], "b7ad6b7169203331");
    assert_eq!(attr(job_span, "switchyard.result"), "completed");
    let kids = children(&spans, job_span);
    assert!(kids.iter().any(|s| s["name"] == "chat gpt-4o-mini"), "{kids:#?}");

    // the result message carries the trace on
    let results = js.get_stream("TR_RESULTS").await.unwrap();
    let msg = results.get_last_raw_message_by_subject("tr.v1.results.traced-job").await.unwrap();
    let tp = msg.headers.get("traceparent").map(|v| v.as_str().to_string()).unwrap_or_default();
    assert!(tp.starts_with(&format!("00-{job_trace}-")), "{tp:?}");
    assert!(!gw.log().contains("otlp-secret-value"));
}

/// A receiver that is not there costs dropped spans, never a request: with the OTLP
/// endpoint on a closed port (gRPC and HTTP), requests, streams and a caller's
/// `traceparent` are served as usual, and the gateway stops cleanly.
#[tokio::test]
async fn an_unreachable_receiver_never_fails_a_request() {
    let mock = mock_upstream();
    for protocol in ["grpc", "http/protobuf"] {
        let port = free_port();
        let extra = format!(
            "\n[telemetry]\nprotocol = \"{protocol}\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
             export_interval_ms = 50\ntimeout_ms = 300\n"
        );
        let mut gw = Gateway::start_with(&mock.url, &extra);
        let tp = traceparent();
        for i in 0..20 {
            let r = post_as(gw.url(), MAIN_KEY, &[("traceparent", tp.as_str())], &chat_body(&format!("t {i}"))).await;
            assert_eq!(r.status(), 200, "{protocol}");
        }
        let streamed = stream_chat(gw.url(), &[], &chat_body("a stream")).await;
        assert!(streamed.done(), "{protocol}");
        gw.stop();
        assert!(gw.log().contains("ledger flushed"), "{protocol}: {}", gw.log());
    }
}
