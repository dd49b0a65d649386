//! OpenAI Batch API over the durable job queue, against a real `nats-server`: files,
//! batches, outputs and errors, counts, cancel, ownership, and every refusal.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const OTHER_KEY: &str = "sk-test-other";

fn other_key() -> &'static str {
    "\n[[keys]]\nid = \"other\"\nkey = \"sk-test-other\"\nmodels = [\"*\"]\n"
}

fn line(custom_id: &str, body: Value) -> String {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}).to_string()
}

async fn upload(url: &str, key: &str, purpose: &str, content: &str) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(content.as_bytes().to_vec()).file_name("input.jsonl");
    let form = reqwest::multipart::Form::new().text("purpose", purpose.to_string()).part("file", part);
    client().post(format!("{url}/v1/files")).bearer_auth(key).multipart(form).send().await.expect("upload")
}

async fn get(url: &str, key: &str, path: &str) -> reqwest::Response {
    client().get(format!("{url}{path}")).bearer_auth(key).send().await.expect("get")
}

async fn post_json(url: &str, key: &str, path: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = client().post(format!("{url}{path}")).bearer_auth(key).json(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.expect("post")
}

async fn create_batch(url: &str, file_id: &str, headers: &[(&str, &str)]) -> Value {
    let body = json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h",
        "metadata": {"run": "test"}});
    let r = post_json(url, MAIN_KEY, "/v1/batches", &body, headers).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Polls the batch until its status is `want` (up to 30 s).
async fn wait_status(url: &str, id: &str, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        last = get(url, MAIN_KEY, &format!("/v1/batches/{id}")).await.json().await.unwrap();
        if last["status"] == want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("batch {id} never became {want}: {last}");
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

async fn error_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("OpenAI error body");
    (status, v["error"]["code"].as_str().unwrap_or("").to_string() + " " + v["error"]["message"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn a_batch_runs_through_the_queue_and_its_files_hold_every_answer() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let extra = format!("{}{}", nats_section(&nats.url(), "bt", ""), other_key());
    let gw = Gateway::start_with(&mock.url, &extra);
    gw.wait_nats("connected").await;
    let url = gw.url();

    let mut input: Vec<String> =
        (0..5).map(|i| line(&format!("req-{i}"), chat_body(&format!("batch item {i}")))).collect();
    input.push(line("bad", json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]})));
    let input = input.join("\n") + "\n";

    let r = upload(url, MAIN_KEY, "batch", &input).await;
    assert_eq!(r.status(), 200);
    let file: Value = r.json().await.unwrap();
    let file_id = file["id"].as_str().unwrap().to_string();
    assert!(file_id.starts_with("file-"));
    assert_eq!(file["object"], "file");
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["filename"], "input.jsonl");
    assert_eq!(file["bytes"], input.len());
    let meta: Value = get(url, MAIN_KEY, &format!("/v1/files/{file_id}")).await.json().await.unwrap();
    assert_eq!(meta["bytes"], input.len());
    let content = get(url, MAIN_KEY, &format!("/v1/files/{file_id}/content")).await.text().await.unwrap();
    assert_eq!(content, input);

    let created = create_batch(url, &file_id, &[]).await;
    let batch_id = created["id"].as_str().unwrap().to_string();
    assert!(batch_id.starts_with("batch_"));
    assert_eq!(created["object"], "batch");
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["request_counts"]["total"], 6);
    assert_eq!(created["metadata"]["run"], "test");

    let done = wait_status(url, &batch_id, "completed").await;
    assert_eq!(done["request_counts"], json!({"total": 6, "completed": 5, "failed": 1}));
    assert!(done["completed_at"].as_u64().is_some());
    let out_id = done["output_file_id"].as_str().unwrap();
    let err_id = done["error_file_id"].as_str().unwrap();

    let output = jsonl(&get(url, MAIN_KEY, &format!("/v1/files/{out_id}/content")).await.text().await.unwrap());
    assert_eq!(output.len(), 5);
    let mut seen: Vec<&str> = output.iter().map(|l| l["custom_id"].as_str().unwrap()).collect();
    seen.sort();
    assert_eq!(seen, ["req-0", "req-1", "req-2", "req-3", "req-4"]);
    for l in &output {
        let n = l["custom_id"].as_str().unwrap().trim_start_matches("req-");
        assert_eq!(l["response"]["status_code"], 200);
        assert!(l["error"].is_null());
        let text = l["response"]["body"]["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(text.contains(&format!("batch item {n}")), "{text}");
    }
    let errors = jsonl(&get(url, MAIN_KEY, &format!("/v1/files/{err_id}/content")).await.text().await.unwrap());
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["custom_id"], "bad");
    assert_eq!(errors[0]["response"]["status_code"], 404);
    assert_eq!(errors[0]["response"]["body"]["error"]["code"], "model_not_found");
    // a key without `batch_priority` queues its items in the low lane
    let low = metric(url, "switchyard_jobs_total{lane=\"low\",outcome=\"completed\"}").await;
    let failed = metric(url, "switchyard_jobs_total{lane=\"low\",outcome=\"failed\"}").await;
    assert_eq!((low, failed), (Some(5.0), Some(1.0)));
    let out_meta: Value = get(url, MAIN_KEY, &format!("/v1/files/{out_id}")).await.json().await.unwrap();
    assert_eq!(out_meta["purpose"], "batch_output");

    // the list has it; a second GET is stable (the record is final)
    let list: Value = get(url, MAIN_KEY, "/v1/batches?limit=10").await.json().await.unwrap();
    assert_eq!(list["object"], "list");
    assert!(list["data"].as_array().unwrap().iter().any(|b| b["id"] == batch_id.as_str()));
    let again: Value = get(url, MAIN_KEY, &format!("/v1/batches/{batch_id}")).await.json().await.unwrap();
    assert_eq!(again["request_counts"], done["request_counts"]);

    // the console's view: every key's batches with owner and lane, and the lanes' backlog
    let all: Value = get(url, ADMIN_KEY, "/admin/batches?limit=5").await.json().await.unwrap();
    let mine = all["data"].as_array().unwrap().iter().find(|b| b["id"] == batch_id.as_str()).expect("listed");
    assert_eq!((mine["owner"].as_str(), mine["priority"].as_str()), (Some("main"), Some("low")), "{all}");
    assert_eq!(mine["request_counts"], done["request_counts"]);
    let lanes: Value = get(url, ADMIN_KEY, "/admin/jobs").await.json().await.unwrap();
    let names: Vec<&str> = lanes["data"].as_array().unwrap().iter().map(|l| l["priority"].as_str().unwrap()).collect();
    assert_eq!(names, ["high", "normal", "low"], "{lanes}");
    let low = &lanes["data"][2];
    assert_eq!((low["pending"].as_u64(), low["in_progress"].as_u64()), (Some(0), Some(0)), "all served: {lanes}");
    for path in ["/admin/batches", "/admin/jobs"] {
        assert_eq!(get(url, MAIN_KEY, path).await.status(), 401, "{path} needs the admin credential");
    }

    // another key sees none of it
    for path in [
        format!("/v1/batches/{batch_id}"),
        format!("/v1/files/{file_id}"),
        format!("/v1/files/{file_id}/content"),
        format!("/v1/files/{out_id}/content"),
    ] {
        let (status, _) = error_code(get(url, OTHER_KEY, &path).await).await;
        assert_eq!(status, 404, "{path}");
    }
    let list: Value = get(url, OTHER_KEY, "/v1/batches").await.json().await.unwrap();
    assert_eq!(list["data"], json!([]));

    // one provider call and one usage event per served item, keyed by its job id
    assert_eq!(mock_requests(&mock.url).await, 5);
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url()).await.unwrap());
    let usage = read_stream(&js, "BT_USAGE").await;
    assert_eq!(usage.len(), 5);
    for u in &usage {
        assert!(u["request_id"].as_str().unwrap().starts_with(&format!("{batch_id}-")), "{u}");
        assert_eq!(u["key_id"], "main");
    }
}

#[tokio::test]
async fn a_cancelled_batch_skips_what_is_still_queued() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let extra = format!("{}{}", nats_section(&nats.url(), "bc", "job_concurrency = 1"), other_key());
    let gw = Gateway::start_with(&mock.url, &extra);
    gw.wait_nats("connected").await;
    let url = gw.url();

    let input: Vec<String> = (0..12).map(|i| line(&format!("c-{i}"), chat_body(&format!("slow {i}")))).collect();
    let file: Value = upload(url, MAIN_KEY, "batch", &input.join("\n")).await.json().await.unwrap();
    // forwarded to every item: each takes 150 ms upstream, one at a time
    let batch = create_batch(url, file["id"].as_str().unwrap(), &[("x-mock-latency-ms", "150")]).await;
    let id = batch["id"].as_str().unwrap();
    let r = post_json(url, MAIN_KEY, &format!("/v1/batches/{id}/cancel"), &json!({}), &[]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["status"] == "cancelling" || v["status"] == "cancelled", "{v}");

    let done = wait_status(url, id, "cancelled").await;
    let counts = &done["request_counts"];
    assert_eq!(counts["total"], 12);
    assert_eq!(counts["completed"].as_u64().unwrap() + counts["failed"].as_u64().unwrap(), 12);
    assert!(counts["failed"].as_u64().unwrap() >= 6, "most items were still queued: {counts}");
    assert!(mock_requests(&mock.url).await < 12);
    let err_id = done["error_file_id"].as_str().unwrap();
    let errors = jsonl(&get(url, MAIN_KEY, &format!("/v1/files/{err_id}/content")).await.text().await.unwrap());
    assert!(errors.iter().all(|l| l["error"]["code"] == "batch_cancelled" && l["response"].is_null()), "{errors:?}");

    // cancelling again is a no-op; another key cannot
    let r = post_json(url, MAIN_KEY, &format!("/v1/batches/{id}/cancel"), &json!({}), &[]).await;
    assert_eq!(r.status(), 200);
    let (status, _) =
        error_code(post_json(url, OTHER_KEY, &format!("/v1/batches/{id}/cancel"), &json!({}), &[]).await).await;
    assert_eq!(status, 404);

    // a job that claims someone else's batch is answered as a plain job and leaves
    // the batch untouched
    let calls = mock_requests(&mock.url).await;
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url()).await.unwrap());
    let job = json!({"id": "forged-1", "endpoint": "chat", "body": chat_body("x"),
        "batch": {"id": id, "custom_id": "evil"}});
    let mut h = async_nats::HeaderMap::new();
    h.insert("Authorization", format!("Bearer {OTHER_KEY}").as_str());
    js.publish_with_headers("bc.v1.jobs.high", h, job.to_string().into()).await.unwrap().await.unwrap();
    let mut result = Value::Null;
    for _ in 0..200 {
        let results = read_stream(&js, "BC_RESULTS").await;
        if let Some(r) = results.into_iter().find(|r| r["id"] == "forged-1") {
            result = r;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["error"]["status"], 404);
    assert_eq!(mock_requests(&mock.url).await, calls);
    let after: Value = get(url, MAIN_KEY, &format!("/v1/batches/{id}")).await.json().await.unwrap();
    assert_eq!(after["request_counts"], done["request_counts"]);
}

#[tokio::test]
async fn batch_requests_that_cannot_be_served_get_clear_errors() {
    // without [nats] the Batch API says why it is unavailable
    let mock = mock_upstream();
    let plain = Gateway::start(&mock.url);
    let (status, msg) = error_code(upload(plain.url(), MAIN_KEY, "batch", &line("a", chat_body("x"))).await).await;
    assert_eq!(status, 503, "{msg}");
    assert!(msg.contains("[nats]"), "{msg}");
    let body = json!({"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let (status, _) = error_code(post_json(plain.url(), MAIN_KEY, "/v1/batches", &body, &[]).await).await;
    assert_eq!(status, 503);
    drop(plain);

    let nats = NatsServer::start();
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "be", "files_max_bytes = 2000"));
    gw.wait_nats("connected").await;
    let url = gw.url();
    let good = line("a", chat_body("x"));

    // credentials
    let (status, _) = error_code(upload(url, "sk-wrong", "batch", &good).await).await;
    assert_eq!(status, 401);
    let r = client().get(format!("{url}/v1/batches")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // uploads
    let (status, msg) = error_code(upload(url, MAIN_KEY, "fine-tune", &good).await).await;
    assert_eq!((status, msg.contains("purpose")), (400, true), "{msg}");
    let bad = format!("{good}\n{{not json\n");
    let (status, msg) = error_code(upload(url, MAIN_KEY, "batch", &bad).await).await;
    assert_eq!((status, msg.contains("line 2")), (400, true), "{msg}");
    let big: String = (0..40).map(|i| line(&format!("id-{i}"), chat_body("a long enough line")) + "\n").collect();
    let (status, _) = error_code(upload(url, MAIN_KEY, "batch", &big).await).await;
    assert_eq!(status, 413);
    let form = reqwest::multipart::Form::new().text("purpose", "batch");
    let r = client().post(format!("{url}/v1/files")).bearer_auth(MAIN_KEY).multipart(form).send().await.unwrap();
    let (status, msg) = error_code(r).await;
    assert_eq!((status, msg.contains("`file`")), (400, true), "{msg}");
    let r = post_json(url, MAIN_KEY, "/v1/files", &json!({"purpose": "batch"}), &[]).await;
    assert_eq!(error_code(r).await.0, 400, "not a multipart body");
    let (status, _) = error_code(get(url, MAIN_KEY, "/v1/files/file-nope").await).await;
    assert_eq!(status, 404);
    let (status, _) = error_code(get(url, MAIN_KEY, "/v1/files/file-batch_nope-output/content").await).await;
    assert_eq!(status, 404);

    // batch creation
    let file: Value = upload(url, MAIN_KEY, "batch", &good).await.json().await.unwrap();
    let fid = file["id"].as_str().unwrap();
    let create = |endpoint: &str, window: &str, file: &str| json!({"input_file_id": file, "endpoint": endpoint, "completion_window": window});
    let cases = [
        (create("/v1/chat/completions", "24h", "file-nope"), 404, "file-nope"),
        (create("/v1/completions", "24h", fid), 400, "endpoint"),
        (create("/v1/chat/completions", "1h", fid), 400, "completion_window"),
        (create("/v1/embeddings", "24h", fid), 400, "/v1/chat/completions"),
        (json!({"input_file_id": fid, "endpoint": "/v1/embeddings", "completion_window": "24h", "x": 1}), 400, "x"),
        (json!({"endpoint": "/v1/embeddings"}), 400, "input_file_id"),
    ];
    for (body, want, mention) in cases {
        let (status, msg) = error_code(post_json(url, MAIN_KEY, "/v1/batches", &body, &[]).await).await;
        assert_eq!(status, want, "{body}: {msg}");
        assert!(msg.contains(mention), "{body}: {msg}");
    }
    let body = create("/v1/chat/completions", "24h", fid);
    let r = post_json(url, MAIN_KEY, "/v1/batches", &body, &[("x-switchyard-priority", "urgent")]).await;
    assert_eq!(error_code(r).await.0, 400);
    let r = client()
        .post(format!("{url}/v1/batches"))
        .bearer_auth(MAIN_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 400);

    // lookups
    let (status, _) = error_code(get(url, MAIN_KEY, "/v1/batches/batch_nope").await).await;
    assert_eq!(status, 404);
    let (status, _) = error_code(get(url, MAIN_KEY, "/v1/batches/not.a.valid.id").await).await;
    assert_eq!(status, 404);
    let (status, _) = error_code(get(url, MAIN_KEY, "/v1/batches?limit=abc").await).await;
    assert_eq!(status, 400);

    // a finished batch cannot be cancelled
    let batch = create_batch(url, fid, &[("x-switchyard-priority", "high")]).await;
    let id = batch["id"].as_str().unwrap();
    wait_status(url, id, "completed").await;
    assert_eq!(metric(url, "switchyard_jobs_total{lane=\"high\",outcome=\"completed\"}").await, Some(1.0));
    let (status, msg) =
        error_code(post_json(url, MAIN_KEY, &format!("/v1/batches/{id}/cancel"), &json!({}), &[]).await).await;
    assert_eq!((status, msg.contains("completed")), (400, true), "{msg}");

    // a batch whose creation was cut off (its instance died while queueing the items)
    // ends as failed instead of staying `validating` forever
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url()).await.unwrap());
    let kv = js.get_key_value("BE_BATCHES").await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let stale = json!({"id": "batch_stale", "owner": "main", "endpoint": "/v1/chat/completions",
        "input_file_id": fid, "completion_window": "24h", "status": "validating", "total": 3, "completed": 0,
        "failed": 0, "created_at": now - 3600, "expires_at": now + 82_800, "metadata": null, "lane": "Low"});
    kv.put("batch_stale", stale.to_string().into()).await.unwrap();
    let v: Value = get(url, MAIN_KEY, "/v1/batches/batch_stale").await.json().await.unwrap();
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["errors"]["data"][0]["code"], "creation_interrupted");

    // ids that no API call makes are 404 before they reach NATS (a 3,500-character id
    // used to make nats-server drop the connection, and the client waited 10 s for a 503)
    let long = "f".repeat(3500);
    for path in [
        format!("/v1/files/file-{long}"),
        format!("/v1/files/file-{long}/content"),
        format!("/v1/batches/batch_{long}"),
        "/v1/batches/batch.with.dots".to_string(),
        "/v1/files/file-%2A".to_string(),
    ] {
        let (status, msg) = error_code(get(url, MAIN_KEY, &path).await).await;
        assert_eq!(status, 404, "{path}: {msg}");
        assert!(msg.len() < 200, "the id is not echoed whole: {msg}");
    }
    let (status, _) =
        error_code(post_json(url, MAIN_KEY, &format!("/v1/batches/batch_{long}/cancel"), &json!({}), &[]).await).await;
    assert_eq!(status, 404);
    // and the connection to NATS is still there
    let v: Value = get(url, MAIN_KEY, "/v1/batches/batch_stale").await.json().await.unwrap();
    assert_eq!(v["id"], "batch_stale");

    // NATS gone: 503, not a hang
    drop(nats);
    gw.wait_nats("disconnected").await;
    let (status, _) = error_code(get(url, MAIN_KEY, &format!("/v1/batches/{id}")).await).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn a_batch_survives_kill_9_with_one_output_and_one_usage_record_per_request() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let section = nats_section(&nats.url(), "bk", "job_concurrency = 16\nack_wait_secs = 2");
    let mut gw = Gateway::start_with(&mock.url, &section);
    gw.wait_nats("connected").await;

    let input: Vec<String> = (0..120).map(|i| line(&format!("k-{i}"), chat_body(&format!("crash {i}")))).collect();
    let file: Value = upload(gw.url(), MAIN_KEY, "batch", &input.join("\n")).await.json().await.unwrap();
    let batch = create_batch(gw.url(), file["id"].as_str().unwrap(), &[("x-mock-latency-ms", "40")]).await;
    let id = batch["id"].as_str().unwrap().to_string();
    // crash once some outputs are stored and more are in flight
    for _ in 0..600 {
        let v: Value = get(gw.url(), MAIN_KEY, &format!("/v1/batches/{id}")).await.json().await.unwrap();
        if v["request_counts"]["completed"].as_u64().unwrap_or(0) >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.kill9();
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url()).await.unwrap());
    let stored = read_stream(&js, "BK_RESULTS").await.len();
    assert!((20..120).contains(&stored), "the crash came mid-batch ({stored} outputs stored)");
    gw.restart();
    gw.wait_nats("connected").await;
    let done = wait_status(gw.url(), &id, "completed").await;
    assert_eq!(done["request_counts"], json!({"total": 120, "completed": 120, "failed": 0}));
    let out_id = done["output_file_id"].as_str().unwrap();
    let output = jsonl(&get(gw.url(), MAIN_KEY, &format!("/v1/files/{out_id}/content")).await.text().await.unwrap());
    let mut ids: Vec<&str> = output.iter().map(|l| l["custom_id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((output.len(), ids.len()), (120, 120), "one output line per request");

    let usage = read_stream(&js, "BK_USAGE").await;
    let mut req_ids: Vec<&str> = usage.iter().map(|u| u["request_id"].as_str().unwrap()).collect();
    req_ids.sort();
    req_ids.dedup();
    assert_eq!((usage.len(), req_ids.len()), (120, 120), "one usage event per request");
    wait_for_metric(gw.url(), "switchyard_jobs_inflight", |v| v == 0.0).await;
    gw.stop();
    let (code, out, err) = run_cli(&["usage", "--data-dir", gw.data_dir().to_str().unwrap(), "--by", "key", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    let main = rows.as_array().unwrap().iter().find(|r| r["group"] == "main").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(main["requests"], 120, "one ledger record per request: {out}");
}

/// Batch API items carry no credential into NATS (any subscriber of the jobs' subjects
/// would read it): they are signed by the gateway with their batch's key and run as the
/// batch's owner. A job that names a batch but is not signed for it (published by anyone
/// who can publish on those subjects) does not run as the owner and does not touch the
/// batch.
#[tokio::test]
async fn batch_items_carry_no_credential_and_forged_items_do_not_run_as_the_owner() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "bq", ""));
    gw.wait_nats("connected").await;
    let url = gw.url();
    let nc = async_nats::connect(&nats.url()).await.unwrap();
    let mut watch = nc.subscribe("bq.v1.jobs.>").await.unwrap();
    nc.flush().await.unwrap();

    let input = [line("a", chat_body("signed one")), line("b", chat_body("signed two"))].join("\n") + "\n";
    let file: Value = upload(url, MAIN_KEY, "batch", &input).await.json().await.unwrap();
    let created = create_batch(url, file["id"].as_str().unwrap(), &[]).await;
    let batch_id = created["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), futures_util::StreamExt::next(&mut watch))
            .await
            .expect("an item")
            .unwrap();
        let h = m.headers.clone().unwrap_or_default();
        assert!(h.get("Authorization").is_none() && h.get("authorization").is_none(), "{h:?}");
        let payload = String::from_utf8_lossy(&m.payload).to_string();
        assert!(!payload.contains(MAIN_KEY), "{payload}");
        assert!(h.get("x-switchyard-item-signature").is_some(), "{h:?}");
    }
    let done = wait_status(url, &batch_id, "completed").await;
    assert_eq!(done["request_counts"], json!({"total": 2, "completed": 2, "failed": 0}));

    // a forged item for that batch, unsigned, published straight to the queue
    let js = async_nats::jetstream::new(nc.clone());
    let forged = json!({"id": "forged-1", "endpoint": "chat", "body": chat_body("run me as the owner"),
        "batch": {"id": batch_id, "custom_id": "evil"}});
    js.publish("bq.v1.jobs.high", forged.to_string().into()).await.unwrap().await.unwrap();
    let results = js.get_stream("BQ_RESULTS").await.unwrap();
    let mut found = None;
    for _ in 0..100 {
        if let Ok(m) = results.get_last_raw_message_by_subject("bq.v1.results.forged-1").await {
            found = Some(serde_json::from_slice::<Value>(&m.payload).unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let result = found.expect("the forged job is answered");
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(mock_requests(&mock.url).await, 2, "no provider call for the forged job");
    let v: Value = get(url, MAIN_KEY, &format!("/v1/batches/{batch_id}")).await.json().await.unwrap();
    assert_eq!(v["request_counts"], json!({"total": 2, "completed": 2, "failed": 0}), "the batch is untouched");
}

/// A JWT caller's files and batches are its own within its team: the same subject under
/// another team sees none of them (every token without a subject used to share one).
#[tokio::test]
async fn jwt_callers_files_are_scoped_by_subject_and_team() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let extra = format!(
        "{}\n[[teams]]\nid = \"research\"\n\n[[teams]]\nid = \"sales\"\n\n[jwt]\nhs256_secret = \"{SECRET}\"\n",
        nats_section(&nats.url(), "bj", "")
    );
    let gw = Gateway::start_with(&mock.url, &extra);
    gw.wait_nats("connected").await;
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let token = |sub: &str, team: &str| {
        encode(
            &Header::default(),
            &json!({"sub": sub, "team": team, "exp": exp}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let (alice_research, alice_sales, bob_research) =
        (token("alice", "research"), token("alice", "sales"), token("bob", "research"));
    let r = upload(gw.url(), &alice_research, "batch", &(line("a", chat_body("x")) + "\n")).await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(get(gw.url(), &alice_research, &format!("/v1/files/{id}")).await.status(), 200);
    for other in [&alice_sales, &bob_research] {
        assert_eq!(get(gw.url(), other, &format!("/v1/files/{id}")).await.status(), 404);
    }
    // its batch runs as that caller (its items carry no token), and only it sees it
    let body = json!({"input_file_id": id, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let r = post_json(gw.url(), &alice_research, "/v1/batches", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let batch = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let mut last = Value::Null;
    for _ in 0..300 {
        last = get(gw.url(), &alice_research, &format!("/v1/batches/{batch}")).await.json().await.unwrap();
        if last["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["request_counts"], json!({"total": 1, "completed": 1, "failed": 0}), "{last}");
    assert_eq!(get(gw.url(), &alice_sales, &format!("/v1/batches/{batch}")).await.status(), 404);
}

/// A Batch API line may name a prompt: it is rendered as on the request path, and a line
/// whose variables do not fit fails alone with the reason.
#[tokio::test]
async fn batch_lines_use_prompts_from_the_registry() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let extra = format!("{}{}", nats_section(&nats.url(), "bp", ""), crate::it::prompts::PROMPTS);
    let gw = Gateway::start_with(&mock.url, &extra);
    gw.wait_nats("connected").await;
    let url = gw.url();
    let vars = json!({"company": "ACME", "question": "where is my order"});
    let input = [
        line("ok", json!({"model": "chat", "messages": [], "prompt": {"id": "support", "variables": vars}})),
        line(
            "v2",
            json!({"model": "chat", "messages": [], "prompt": {"id": "support", "version": "2", "variables": vars}}),
        ),
        line(
            "missing",
            json!({"model": "chat", "messages": [], "prompt": {"id": "support", "variables": {"company": "A"}}}),
        ),
    ]
    .join("\n")
        + "\n";
    let file: Value = upload(url, MAIN_KEY, "batch", &input).await.json().await.unwrap();
    let created = create_batch(url, file["id"].as_str().unwrap(), &[]).await;
    let done = wait_status(url, created["id"].as_str().unwrap(), "completed").await;
    assert_eq!(done["request_counts"], json!({"total": 3, "completed": 2, "failed": 1}), "{done}");
    let out = get(url, MAIN_KEY, &format!("/v1/files/{}/content", done["output_file_id"].as_str().unwrap())).await;
    let out = jsonl(&out.text().await.unwrap());
    let text = |id: &str| {
        let l = out.iter().find(|l| l["custom_id"] == id).unwrap();
        l["response"]["body"]["choices"][0]["message"]["content"].as_str().unwrap().to_string()
    };
    assert!(text("ok").ends_with("Question: where is my order"), "{out:?}");
    assert!(text("v2").ends_with("to: Q2"), "version 2: its max_tokens 7 {out:?}");
    let errs = get(url, MAIN_KEY, &format!("/v1/files/{}/content", done["error_file_id"].as_str().unwrap())).await;
    let errs = jsonl(&errs.text().await.unwrap());
    let missing = errs.iter().find(|l| l["custom_id"] == "missing").unwrap();
    assert!(missing.to_string().contains("variable `question` is missing"), "{missing}");
}
