use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn add_alias(gw: &Gateway, alias: &str) {
    let mut text = std::fs::read_to_string(&gw.config).unwrap();
    text.push_str(&format!(
        "\n[[models]]\nalias = \"{alias}\"\ntargets = [{{ provider = \"up\", model = \"mock-chat\" }}]\n"
    ));
    // [[models]] after [cache] is fine in TOML: arrays of tables can come anywhere
    std::fs::write(&gw.config, text).unwrap();
}

async fn reload(gw: &Gateway, key: Option<&str>) -> reqwest::Response {
    let mut rb = client().post(format!("{}/admin/reload", gw.url()));
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn reload_by_admin_api_and_sighup_and_invalid_configs_are_refused() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let new_model = json!({"model": "added", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(post(gw.url(), "/v1/chat/completions", new_model.clone()).await.status(), 404);

    assert_eq!(reload(&gw, None).await.status(), 401);
    assert_eq!(reload(&gw, Some(MAIN_KEY)).await.status(), 401, "a client key is not the admin key");

    // a request in flight while the config changes finishes normally
    let inflight = {
        let url = format!("{}/v1/chat/completions", gw.url());
        tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(MAIN_KEY)
                .header("x-mock-latency-ms", "600")
                .json(&chat_body("in flight"))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    wait_for_metric(gw.url(), "switchyard_inflight_requests ", |v| v >= 1.0).await;
    add_alias(&gw, "added");
    let r = reload(&gw, Some(ADMIN_KEY)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(post(gw.url(), "/v1/chat/completions", new_model).await.status(), 200);
    assert_eq!(inflight.await.unwrap(), 200);

    // an invalid file is refused with its fields named; the old config keeps serving
    let good = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(&gw.config, good.replace("concurrency = 16", "concurrency = 0")).unwrap();
    let r = reload(&gw, Some(ADMIN_KEY)).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_config");
    assert!(v["error"]["message"].as_str().unwrap().contains("providers[0].concurrency"), "{v}");
    assert_eq!(post(gw.url(), "/v1/chat/completions", chat_body("old config")).await.status(), 200);

    // SIGHUP: same path
    std::fs::write(&gw.config, &good).unwrap();
    add_alias(&gw, "by-signal");
    gw.signal("HUP");
    let by_signal = json!({"model": "by-signal", "messages": [{"role": "user", "content": "hi"}]});
    let mut status = 0;
    for _ in 0..50 {
        status = post(gw.url(), "/v1/chat/completions", by_signal.clone()).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
    // a broken file on SIGHUP is logged and ignored
    std::fs::write(&gw.config, "this is = = not toml").unwrap();
    gw.signal("HUP");
    for _ in 0..500 {
        if gw.log().contains("new config is invalid") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(post(gw.url(), "/v1/chat/completions", chat_body("still old")).await.status(), 200);
    assert!(gw.log().contains("new config is invalid"), "{}", gw.log());
}

#[test]
fn check_config_names_every_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nhttp_addr = \"nowhere\"\n[[providers]]\nname = \"p\"\nkind = \"gopher\"\n[[models]]\nalias = \"m\"\ntargets = []\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["check-config", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    for field in ["server.http_addr", "providers[0].kind", "models[0].targets"] {
        assert!(err.contains(field), "missing {field} in {err}");
    }
    let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/switchyard.toml");
    let (code, out, err) = run_cli(&["check-config", default.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"));
    let (code, _, err) = run_cli(&["check-config", "/nonexistent.toml"]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot read"));
}

/// An admin API call with the admin credential (or `key`).
async fn admin_call(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut rb = client().request(method, format!("{}{path}", gw.url())).bearer_auth(key);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn virtual_keys_are_created_used_limited_revoked_and_survive_a_restart() {
    let mock = mock_upstream();
    let teams = r#"
[[teams]]
id = "research"
models = ["chat", "embed"]
"#;
    let mut gw = Gateway::start_with(&mock.url, teams);
    use reqwest::Method;
    // only the admin credential
    let r = admin_call(&gw, Method::GET, "/admin/keys", MAIN_KEY, None).await;
    assert_eq!(r.status(), 401);
    // bad input is named
    let r = admin_call(&gw, Method::POST, "/admin/keys", ADMIN_KEY, Some(json!({"id": "x", "team": "ghost"}))).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no team `ghost`"));
    let r = admin_call(&gw, Method::POST, "/admin/keys", ADMIN_KEY, Some(json!({"id": "main"}))).await;
    assert_eq!(r.status(), 403, "the id of a config key");
    let r = admin_call(&gw, Method::POST, "/admin/keys", ADMIN_KEY, Some(json!({"id": "x", "rpn": 3}))).await;
    assert_eq!(r.status(), 400, "unknown field");

    // create: the secret is shown once
    let body = json!({"id": "alice", "owner": "alice@example.com", "team": "research", "rpm": 2});
    let r = admin_call(&gw, Method::POST, "/admin/keys", ADMIN_KEY, Some(body)).await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let secret = created["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("sk-sy-") && secret.len() > 60);
    let nc = [("cache-control", "no-cache")];
    let ask = |m: &str| json!({"model": m, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(post_as(gw.url(), &secret, &nc, &ask("chat")).await.status(), 200);
    assert_eq!(post_as(gw.url(), &secret, &nc, &ask("claude")).await.status(), 403, "the team's models only");
    assert_eq!(post_as(gw.url(), &secret, &nc, &ask("chat")).await.status(), 200);
    assert_eq!(post_as(gw.url(), &secret, &nc, &ask("chat")).await.status(), 429, "its rpm of 2");
    // the list never shows a secret or its hash
    let listed = admin_call(&gw, Method::GET, "/admin/keys", ADMIN_KEY, None).await.text().await.unwrap();
    assert!(listed.contains("alice@example.com") && !listed.contains(&secret));
    assert!(!listed.contains(&switchyard_config::hash_key(&secret)));

    // update: a higher limit takes effect at once
    let r = admin_call(&gw, Method::PATCH, "/admin/keys/alice", ADMIN_KEY, Some(json!({"rpm": 100}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(post_as(gw.url(), &secret, &nc, &ask("chat")).await.status(), 200);
    let r = admin_call(&gw, Method::PATCH, "/admin/keys/bob", ADMIN_KEY, Some(json!({"rpm": 1}))).await;
    assert_eq!(r.status(), 404);
    let r = admin_call(&gw, Method::PATCH, "/admin/keys/alice", ADMIN_KEY, Some(json!({"id": "mallory"}))).await;
    assert_eq!(r.status(), 400, "the id cannot be changed");
    let r = admin_call(&gw, Method::PATCH, "/admin/keys/alice", ADMIN_KEY, Some(json!({"models": ["nope"]}))).await;
    assert_eq!(r.status(), 400, "an unknown alias is named");

    // the keys survive a restart (the store, not memory, is the truth)
    gw.restart();
    assert_eq!(post_as(gw.url(), &secret, &nc, &ask("chat")).await.status(), 200);

    // revoke: refused from the next request on
    let r = admin_call(&gw, Method::DELETE, "/admin/keys/alice", ADMIN_KEY, None).await;
    assert_eq!(r.status(), 200);
    let r = post_as(gw.url(), &secret, &nc, &ask("chat")).await;
    assert_eq!(r.status(), 401);
    gw.restart();
    assert_eq!(post_as(gw.url(), &secret, &nc, &ask("chat")).await.status(), 401, "still revoked after a restart");
    let r = admin_call(&gw, Method::PATCH, "/admin/keys/alice", ADMIN_KEY, Some(json!({"rpm": 5}))).await;
    assert_eq!(r.status(), 403, "a revoked key cannot be changed back to life");

    // reports from the ledger: by key, team, model and day
    let r = admin_call(&gw, Method::GET, "/admin/usage?by=team", ADMIN_KEY, None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let research = v["data"].as_array().unwrap().iter().find(|r| r["group"] == "research").cloned().unwrap();
    assert_eq!(research["requests"], 4, "{v}");
    for by in ["key", "model", "provider", "day"] {
        let r = admin_call(&gw, Method::GET, &format!("/admin/usage?by={by}&since=1h"), ADMIN_KEY, None).await;
        assert_eq!(r.status(), 200, "{by}");
    }
    let r = admin_call(&gw, Method::GET, "/admin/usage?by=week", ADMIN_KEY, None).await;
    assert_eq!(r.status(), 400);
    // a query actix cannot read is answered in the same JSON shape
    let r = admin_call(&gw, Method::GET, "/admin/usage?by=key&by=team", ADMIN_KEY, None).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_request", "{v}");

    // the CLI speaks to the same API
    let url = gw.url().to_string();
    let (code, out, err) = run_cli(&["keys", "--url", &url, "--admin-key", ADMIN_KEY, "create", "carol", "--rpm", "5"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let carol = v["key"].as_str().unwrap().to_string();
    assert_eq!(post_as(&url, &carol, &nc, &ask("chat")).await.status(), 200);
    let (code, out, _) =
        run_cli(&["keys", "--url", &url, "--admin-key", ADMIN_KEY, "update", "carol", "--set", "rpm=7"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"rpm\": 7"), "{out}");
    let (code, _, _) = run_cli(&["keys", "--url", &url, "--admin-key", ADMIN_KEY, "revoke", "carol"]);
    assert_eq!(code, 0);
    assert_eq!(post_as(&url, &carol, &nc, &ask("chat")).await.status(), 401);
    let (code, out, _) = run_cli(&["keys", "--url", &url, "--admin-key", ADMIN_KEY, "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"carol\"") && out.contains("\"revoked\": true"), "{out}");
    let (code, _, err) = run_cli(&["keys", "--url", &url, "--admin-key", "wrong-key-123", "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
}
