//! The web console: its session (cookie attributes, CSRF), its off switch and the size
//! of its assets; and the main journey in a real browser (`tests/console/journey.py`:
//! Debian's Chromium driven by Playwright, both installed by `ops/test.sh`).

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn a_session_opens_the_admin_api_and_a_change_needs_its_csrf_token() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let page = client().get(format!("{}/ui", gw.url())).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-security-policy").contains("default-src 'self'"));
    // the page and its assets, under 200 KB together
    let mut total = page.bytes().await.unwrap().len();
    for asset in ["/ui/assets/app.js", "/ui/assets/app.css"] {
        let r = client().get(format!("{}{asset}", gw.url())).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        total += r.bytes().await.unwrap().len();
    }
    assert!(total < 200_000, "{total} bytes");

    let http = client();
    let wrong = http.post(format!("{}/ui/api/session", gw.url())).json(&json!({"key": "nope"})).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let r = http.post(format!("{}/ui/api/session", gw.url())).json(&json!({"key": ADMIN_KEY})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = header(&r, "set-cookie");
    for attribute in ["sy_session=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let token = cookie.split(';').next().unwrap().to_string();
    let csrf = r.json::<Value>().await.unwrap()["csrf"].as_str().unwrap().to_string();
    // reqwest keeps no Secure cookie over http: the cookie is sent by hand
    let with = |rb: reqwest::RequestBuilder| rb.header("cookie", token.clone());
    assert_eq!(with(client().get(format!("{}/admin/keys", gw.url()))).send().await.unwrap().status(), 200);
    let body = json!({"id": "console-made"});
    let no_csrf = with(client().post(format!("{}/admin/keys", gw.url()))).json(&body).send().await.unwrap();
    assert_eq!(no_csrf.status(), 403);
    assert_eq!(no_csrf.json::<Value>().await.unwrap()["error"]["code"], "csrf_token_missing");
    let made =
        with(client().post(format!("{}/admin/keys", gw.url()))).header("x-csrf-token", &csrf).json(&body).send().await;
    assert_eq!(made.unwrap().status(), 201);
    // signed out: the same cookie opens nothing
    with(client().delete(format!("{}/ui/api/session", gw.url()))).send().await.unwrap();
    assert_eq!(with(client().get(format!("{}/admin/keys", gw.url()))).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn the_console_is_off_with_one_switch_and_without_an_admin_key() {
    let mock = mock_upstream();
    let off = Gateway::start_config(|dir| {
        config_text(dir, &mock.url, "").replace("[server]\n", "[server]\nconsole = false\n")
    });
    assert_eq!(client().get(format!("{}/ui", off.url())).send().await.unwrap().status(), 404);
    let r = client().post(format!("{}/ui/api/session", off.url())).json(&json!({"key": ADMIN_KEY})).send().await;
    assert_eq!(r.unwrap().status(), 404);
    let no_admin = Gateway::start_config(|dir| {
        config_text(dir, &mock.url, "").replace(&format!("admin_key = \"{ADMIN_KEY}\"\n"), "")
    });
    assert_eq!(client().get(format!("{}/ui", no_admin.url())).send().await.unwrap().status(), 404);
}

/// The journey in Chromium; screenshots go to `SWITCHYARD_CONSOLE_SHOTS` (the docs' are
/// made with `SWITCHYARD_CONSOLE_SHOTS=docs`), else to a temp dir.
#[test]
fn the_console_journey_in_a_real_browser() {
    let Ok(python) = std::env::var("SWITCHYARD_TEST_PYTHON") else {
        eprintln!("skipped: SWITCHYARD_TEST_PYTHON is not set (run ops/test.sh)");
        return;
    };
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let tmp = tempfile::tempdir().unwrap();
    let shots = std::env::var("SWITCHYARD_CONSOLE_SHOTS")
        .map(|d| Path::new(env!("CARGO_MANIFEST_DIR")).join(d))
        .unwrap_or_else(|_| tmp.path().to_path_buf());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/journey.py");
    let out = Command::new(python).arg(script).arg(gw.url()).arg(ADMIN_KEY).arg(&shots).output().expect("python");
    assert_ran(&out, &gw);
    assert!(shots.join("console-usage.png").exists());
}
