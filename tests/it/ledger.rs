use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn every_served_request_is_in_the_ledger_once_and_survives_restarts() {
    let mock = mock_upstream();
    let mut gw = Gateway::start(&mock.url);
    for i in 0..5 {
        assert_eq!(post(gw.url(), "/v1/chat/completions", chat_body(&format!("ledger {i}"))).await.status(), 200);
    }
    // a cache hit, a stream, an embedding, an upstream failure, and a refused request
    assert_eq!(post(gw.url(), "/v1/chat/completions", chat_body("ledger 0")).await.status(), 200);
    let mut s = chat_body("ledger stream");
    s["stream"] = json!(true);
    let _ = post(gw.url(), "/v1/chat/completions", s).await.text().await.unwrap();
    assert_eq!(post(gw.url(), "/v1/embeddings", json!({"model": "embed", "input": "ledger"})).await.status(), 200);
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .bearer_auth(MAIN_KEY)
        .header("x-mock-status", "500")
        .json(&chat_body("ledger failure"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .bearer_auth("bad-key-123")
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // kill -9 after the group commit of all nine: nothing committed may be lost
    wait_for_metric(gw.url(), "switchyard_ledger_records_total", |v| v >= 9.0).await;
    let _ = gw.proc.as_mut().unwrap().child.kill();
    gw.proc = None;
    gw.restart();
    assert_eq!(post(gw.url(), "/v1/chat/completions", chat_body("after restart")).await.status(), 200);
    gw.stop(); // graceful: flushes the rest

    let data = gw.data_dir();
    let (code, out, err) = run_cli(&["usage", "--data-dir", data.to_str().unwrap(), "--by", "model", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let chat = rows.iter().find(|r| r["group"] == "chat").unwrap();
    // 5 + 1 hit + 1 stream + 1 failure + 1 after restart; the 401 never reached a provider
    assert_eq!(chat["requests"], 9, "{out}");
    assert_eq!(chat["errors"], 1);
    assert_eq!(chat["cache_hits"], 1);
    assert!(chat["input_tokens"].as_u64().unwrap() > 0);
    assert!(chat["cost_usd"].as_f64().unwrap() > 0.0, "priced from pricing.toml (gpt-4o-mini)");
    let embed = rows.iter().find(|r| r["group"] == "embed").unwrap();
    assert_eq!(embed["requests"], 1);

    let (code, table, _) =
        run_cli(&["usage", "--data-dir", data.to_str().unwrap(), "--by", "provider", "--since", "1h"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("PROVIDER"), "{table}");
    assert!(lines.iter().any(|l| l.starts_with("cache ") && l.split_whitespace().nth(1) == Some("1")), "{table}");
    assert!(lines.iter().any(|l| l.starts_with("up ") && l.split_whitespace().nth(1) == Some("9")), "{table}");
    assert!(lines.last().unwrap().starts_with("TOTAL"));

    let (code, _, err) = run_cli(&["usage", "--data-dir", data.to_str().unwrap(), "--since", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("--since"));
    let (code, _, err) = run_cli(&["usage", "--data-dir", "/nonexistent/dir"]);
    assert_eq!(code, 2);
    assert!(err.contains("no ledger"));
}

#[tokio::test]
async fn sync_durability_loses_nothing_on_kill_9() {
    let mock = mock_upstream();
    let mut gw = Gateway::start(&mock.url);
    let text = std::fs::read_to_string(&gw.config).unwrap();
    // a long commit interval: in batched mode a kill -9 would lose these records
    let text = text.replace("ledger_flush_ms = 20", "ledger_flush_ms = 400\nledger_durability = \"sync\"");
    std::fs::write(&gw.config, text).unwrap();
    gw.restart();
    assert_eq!(post(gw.url(), "/v1/chat/completions", chat_body("durable one")).await.status(), 200);
    let mut s = chat_body("durable stream");
    s["stream"] = json!(true);
    let body = post(gw.url(), "/v1/chat/completions", s).await.text().await.unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"));
    let _ = gw.proc.as_mut().unwrap().child.kill(); // kill -9, right after the answers
    gw.proc = None;
    let (code, out, err) = run_cli(&["usage", "--data-dir", gw.data_dir().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["requests"], 2, "{out}");
}

/// SIGTERM stops the gateway gracefully and flushes the ledger while the accounting
/// actor still runs: the log says how many records the last flush wrote, never that the
/// final flush failed, and the records are there after the restart.
#[tokio::test]
async fn sigterm_flushes_the_ledger_cleanly() {
    let mock = mock_upstream();
    let mut gw = Gateway::start(&mock.url);
    for i in 0..3 {
        assert_eq!(post(gw.url(), "/v1/chat/completions", chat_body(&format!("term {i}"))).await.status(), 200);
    }
    gw.stop();
    let log = gw.log();
    assert!(log.contains("ledger flushed"), "{log}");
    assert!(!log.contains("final ledger flush failed"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    // not a terminal: one JSON object per line, no colour codes
    assert!(!log.contains('\u{1b}'), "{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
    }
    let (code, out, err) = run_cli(&["usage", "--data-dir", gw.data_dir().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    let requests: u64 = rows.as_array().unwrap().iter().filter_map(|r| r["requests"].as_u64()).sum();
    assert_eq!(requests, 3, "{out}");
}

/// `server.access_log`: one JSON line per request with who, what, where, the outcome,
/// tokens, cost and latency; a refused request gets a `refused` line with its status and
/// error code; never a credential or the prompt.
#[tokio::test]
async fn the_access_log_has_one_line_per_request() {
    let mock = mock_upstream();
    let mut gw = Gateway::start(&mock.url);
    let text = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(&gw.config, text.replace("ledger_flush_ms = 20", "ledger_flush_ms = 20\naccess_log = true"))
        .unwrap();
    gw.restart();
    assert_eq!(post(gw.url(), "/v1/chat/completions", chat_body("a secret plan")).await.status(), 200);
    let r = post(gw.url(), "/v1/chat/completions", json!({"model": "nope", "messages": []})).await;
    assert_eq!(r.status(), 400);
    gw.stop();
    let log = gw.log();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "switchyard::access")
        .collect();
    assert_eq!(lines.len(), 2, "one line per request, served or refused: {log}");
    let refused = &lines[1]["fields"];
    assert_eq!(refused["message"], "refused");
    assert_eq!((refused["status"].as_u64(), refused["error"].as_str()), (Some(400), Some("invalid_request")));
    assert_eq!(refused["model"], "-", "an unknown alias is not echoed");
    let f = &lines[0]["fields"];
    assert_eq!(f["status"], 200);
    assert_eq!(f["model"], "chat");
    assert_eq!(f["provider"], "up");
    assert!(f["request_id"].as_str().is_some_and(|s| !s.is_empty()), "{f}");
    assert!(f["key"].as_str().is_some_and(|s| !s.is_empty()), "{f}");
    assert!(f["input_tokens"].as_u64().unwrap() > 0 && f["latency_ms"].as_f64().unwrap() > 0.0, "{f}");
    assert!(!log.contains("a secret plan") && !log.contains(MAIN_KEY) && !log.contains("upstream-secret"), "{log}");
}
