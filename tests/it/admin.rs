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
