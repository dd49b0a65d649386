//! The web console: its session (cookie attributes, CSRF), its off switch and the size
//! of its assets; and the main journey in a real browser (`tests/console/journey.py`:
//! Debian's Chromium driven by Playwright, both installed by `ops/test.sh`).

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;

const SECRET: &str = "a-console-sso-secret-of-32-bytes-at-least";

/// A gateway that also takes single sign-on tokens (HS256) for team `research`.
fn sso_gateway(mock: &str) -> Gateway {
    let extra = format!("[[teams]]\nid = \"research\"\nmodels = [\"chat\"]\n\n[jwt]\nhs256_secret = \"{SECRET}\"\n");
    Gateway::start_with(mock, &extra)
}

/// A token of `sub` in team `research` with `role`.
fn token(sub: &str, role: &str) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = json!({"sub": sub, "team": "research", "switchyard_role": role, "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

const CLIENT_ID: &str = "switchyard-console";
const CLIENT_SECRET: &str = "idp-client-secret";

/// The identity provider of the single sign-on tests (`tests/common/oidc_idp.py`),
/// signing in `claims`' user; killed on drop.
fn idp(python: &str, claims: Value) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/oidc_idp.py");
    let mut command = Command::new(python);
    command.arg(script).args([CLIENT_ID, CLIENT_SECRET, &claims.to_string()]);
    start_idp(command)
}

/// panva's `oidc-provider` from npm (`tests/node/oidc_provider.mjs`) on `port`, for a
/// gateway on `gateway_port`: its own login and consent pages, any login name.
fn certified_idp(node: &str, port: u16, gateway_port: u16, claims: Value) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/oidc_provider.mjs");
    let redirect = format!("http://127.0.0.1:{gateway_port}/ui/api/sso/callback");
    let mut command = Command::new(node);
    command.arg(script).arg(port.to_string()).args([CLIENT_ID, CLIENT_SECRET, &redirect, &claims.to_string()]);
    start_idp(command)
}

/// Starts a provider that prints `{"port": N}` first; waits for it up to 60 s.
fn start_idp(mut command: Command) -> Proc {
    use std::io::BufRead;
    let mut child = command.stdout(std::process::Stdio::piped()).spawn().expect("start the identity provider");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = out.read_line(&mut first);
        let _ = tx.send(first);
        // the rest is read (and dropped) so that the provider never writes to a closed pipe
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    let first = rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap_or_default();
    let Some(port) = serde_json::from_str::<Value>(&first).ok().and_then(|v| v["port"].as_u64()) else {
        let _ = child.kill();
        panic!("the identity provider did not start: {first:?}");
    };
    Proc { child, url: format!("http://127.0.0.1:{port}") }
}

/// A gateway on `port` whose console signs in through `idp` (discovered from its
/// issuer; ID tokens checked against its JWKS), with `extra` settings.
fn sso_gateway_at(mock: &str, idp: &Proc, port: u16, extra: &str) -> Gateway {
    sso_gateway_with(mock, &idp.url, CLIENT_SECRET, port, extra)
}

/// [`sso_gateway_at`] for a provider at `issuer`, sending `secret` as the client's.
fn sso_gateway_with(mock: &str, issuer: &str, secret: &str, port: u16, extra: &str) -> Gateway {
    let sso = format!(
        "[[teams]]\nid = \"research\"\nmodels = [\"chat\"]\n{extra}\n[jwt]\nissuer = \"{issuer}\"\njwks_url = \"{issuer}/jwks\"\n\n\
         [jwt.oidc]\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{secret}\"\n\
         redirect_url = \"http://127.0.0.1:{port}/ui/api/sso/callback\"\n"
    );
    Gateway::start_config(|dir| {
        config_text(dir, mock, &sso)
            .replace("http_addr = \"127.0.0.1:0\"", &format!("http_addr = \"127.0.0.1:{port}\""))
    })
}

#[tokio::test]
async fn single_sign_on_through_the_identity_provider() {
    let Ok(python) = std::env::var("SWITCHYARD_TEST_PYTHON") else {
        eprintln!("skipped: SWITCHYARD_TEST_PYTHON is not set (run ops/test.sh)");
        return;
    };
    let provider = idp(&python, json!({"sub": "lead", "team": "research", "switchyard_role": "team_admin"}));
    let mock = mock_upstream();
    let port = free_port();
    let gw = sso_gateway_at(&mock.url, &provider, port, "");
    let url = gw.url();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let enabled: Value = http.get(format!("{url}/ui/api/sso")).send().await.unwrap().json().await.unwrap();
    assert_eq!(enabled["enabled"], true);

    // start: to the provider's authorization endpoint (discovered), with PKCE and a nonce
    let start = http.get(format!("{url}/ui/api/sso/start")).send().await.unwrap();
    assert_eq!(start.status(), 302);
    let to_idp = header(&start, "location");
    assert!(to_idp.starts_with(&format!("{}/authorize?", provider.url)), "{to_idp}");
    for part in ["code_challenge_method=S256", "code_challenge=", "nonce=", "response_type=code", "scope=openid"] {
        assert!(to_idp.contains(part), "{part} in {to_idp}");
    }
    let state_cookie = header(&start, "set-cookie");
    for attribute in ["sy_sso=", "HttpOnly", "Secure", "SameSite=Lax", "Path=/ui/api/sso"] {
        assert!(state_cookie.contains(attribute), "{state_cookie}");
    }
    let state_cookie = state_cookie.split(';').next().unwrap().to_string();
    // the provider signs the user in and sends the browser back with a code
    let back = http.get(&to_idp).send().await.unwrap();
    assert_eq!(back.status(), 302);
    let callback = header(&back, "location");
    assert!(callback.starts_with(&format!("{url}/ui/api/sso/callback?code=")), "{callback}");

    // another browser (no state cookie) cannot use it
    let stolen = http.get(&callback).send().await.unwrap();
    assert_eq!(stolen.status(), 403);
    assert!(stolen.text().await.unwrap().contains("not started by this browser"));
    // this one can: the code is exchanged, the ID token verified, the session opened
    let done = http.get(&callback).header("cookie", &state_cookie).send().await.unwrap();
    assert_eq!(done.status(), 200);
    assert_eq!(header(&done, "refresh"), "0; url=/ui");
    let session_cookie = done
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("sy_session="))
        .expect("a session cookie");
    assert!(session_cookie.contains("SameSite=Strict") && session_cookie.contains("HttpOnly"), "{session_cookie}");
    let session_cookie = session_cookie.split(';').next().unwrap().to_string();
    let who: Value = http
        .get(format!("{url}/ui/api/session"))
        .header("cookie", &session_cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((who["role"].as_str(), who["team"].as_str()), (Some("team_admin"), Some("research")), "{who}");
    assert_eq!(who["who"], "console:jwt:lead@research");
    // a code and its state are used once
    let again = http.get(&callback).header("cookie", &state_cookie).send().await.unwrap();
    assert_eq!(again.status(), 403);
    // the provider's refusal is shown, escaped
    let refused = http
        .get(format!("{url}/ui/api/sso/callback?error=access_denied&error_description=%3Cb%3Eno%3C/b%3E&state=x"))
        .header("cookie", "sy_sso=x")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let text = refused.text().await.unwrap();
    assert!(text.contains("access_denied") && text.contains("&lt;b&gt;no") && !text.contains("<b>"), "{text}");
    // the sign-in is in the audit trail
    let audit: Value =
        client().get(format!("{url}/admin/audit")).bearer_auth(ADMIN_KEY).send().await.unwrap().json().await.unwrap();
    let entry = audit["data"].as_array().unwrap().iter().find(|e| e["action"] == "console.sign_in").expect("audited");
    assert_eq!(
        (entry["who"].as_str(), entry["detail"]["with"].as_str()),
        (Some("console:jwt:lead@research"), Some("sso"))
    );
    drop(gw);

    // an ID token for another client, or with another sign-in's nonce, opens nothing
    for (forged, why) in [(json!({"aud": "another-client"}), "wrong audience"), (json!({"nonce": "forged"}), "nonce")] {
        let mut claims = json!({"sub": "lead", "team": "research", "switchyard_role": "admin"});
        claims.as_object_mut().unwrap().extend(forged.as_object().unwrap().clone());
        let provider = idp(&python, claims);
        let port = free_port();
        let gw = sso_gateway_at(&mock.url, &provider, port, "");
        let start = http.get(format!("{}/ui/api/sso/start", gw.url())).send().await.unwrap();
        let state_cookie = header(&start, "set-cookie").split(';').next().unwrap().to_string();
        let back = http.get(header(&start, "location")).send().await.unwrap();
        let done = http.get(header(&back, "location")).header("cookie", &state_cookie).send().await.unwrap();
        assert_eq!(done.status(), 401, "{why}");
        assert!(done.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("sy_session=")));
        assert!(done.text().await.unwrap().contains(why), "{why}");
    }

    // a client secret the provider refuses: its answer is shown, no session
    let port = free_port();
    let wrong = sso_gateway_with(&mock.url, &provider.url, "not-the-secret", port, "");
    let start = http.get(format!("{}/ui/api/sso/start", wrong.url())).send().await.unwrap();
    let state_cookie = header(&start, "set-cookie").split(';').next().unwrap().to_string();
    let back = http.get(header(&start, "location")).send().await.unwrap();
    let done = http.get(header(&back, "location")).header("cookie", &state_cookie).send().await.unwrap();
    assert_eq!(done.status(), 401);
    assert!(done.text().await.unwrap().contains("invalid_client"));
    // a provider that cannot be reached: the sign-in page says so, nothing is started
    let gone =
        sso_gateway_with(&mock.url, &format!("http://127.0.0.1:{}", free_port()), CLIENT_SECRET, free_port(), "");
    let start = http.get(format!("{}/ui/api/sso/start", gone.url())).send().await.unwrap();
    assert_eq!(start.status(), 503);
    assert!(start.headers().get("set-cookie").is_none());
    assert!(start.text().await.unwrap().contains("OpenID discovery"));
}

/// A console session: its cookie and CSRF token.
struct Session {
    url: String,
    cookie: String,
    csrf: String,
}

impl Session {
    /// A request to `path` with the session (and its CSRF token).
    fn req(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        client()
            .request(m, format!("{}{path}", self.url))
            .header("cookie", self.cookie.clone())
            .header("x-csrf-token", self.csrf.clone())
    }
}

/// Signs in with `form`.
async fn sign_in(url: &str, form: Value) -> Session {
    let r = client().post(format!("{url}/ui/api/session")).json(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = header(&r, "set-cookie").split(';').next().unwrap().to_string();
    let csrf = r.json::<Value>().await.unwrap()["csrf"].as_str().unwrap().to_string();
    Session { url: url.to_string(), cookie, csrf }
}

/// A request's JSON answer.
async fn json_of(rb: reqwest::RequestBuilder) -> Value {
    rb.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn team_admins_and_viewers_see_their_team_only() {
    let mock = mock_upstream();
    let gw = sso_gateway(&mock.url);
    let admin =
        |m: reqwest::Method, path: &str| client().request(m, format!("{}{path}", gw.url())).bearer_auth(ADMIN_KEY);
    for (id, team) in [("ops-key", json!(null)), ("research-key", json!("research"))] {
        let r =
            admin(reqwest::Method::POST, "/admin/keys").json(&json!({"id": id, "team": team})).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
    let lead = sign_in(gw.url(), json!({"token": token("lead", "team_admin")})).await;
    let as_lead = |m: reqwest::Method, path: &str| lead.req(m, path);
    let keys: Value = json_of(as_lead(reqwest::Method::GET, "/admin/keys")).await;
    let ids: Vec<&str> = keys["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["research-key"], "{keys}");
    assert!(keys["config_keys"].as_array().unwrap().is_empty(), "no config key is of the team");
    // a key it makes is of its team; another team's is refused; another team's key is not there
    let made: Value = json_of(as_lead(reqwest::Method::POST, "/admin/keys").json(&json!({"id": "lead-made"}))).await;
    assert_eq!(made["team"], "research", "{made}");
    let r =
        as_lead(reqwest::Method::POST, "/admin/keys").json(&json!({"id": "x", "team": "ops"})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(as_lead(reqwest::Method::DELETE, "/admin/keys/ops-key").send().await.unwrap().status(), 404);
    assert_eq!(as_lead(reqwest::Method::DELETE, "/admin/keys/lead-made").send().await.unwrap().status(), 200);
    // admin-only parts of the API
    assert_eq!(as_lead(reqwest::Method::DELETE, "/admin/cache").send().await.unwrap().status(), 403);
    assert_eq!(as_lead(reqwest::Method::POST, "/admin/reload").send().await.unwrap().status(), 403);
    assert_eq!(as_lead(reqwest::Method::GET, "/admin/config").send().await.unwrap().status(), 403);
    assert_eq!(as_lead(reqwest::Method::GET, "/admin/audit").send().await.unwrap().status(), 403);
    // every change is in the audit trail, with who made it
    let trail: Value = json_of(admin(reqwest::Method::GET, "/admin/audit")).await;
    let seen: Vec<(String, String, String)> = trail["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["who"].as_str().unwrap().into(),
                e["action"].as_str().unwrap().into(),
                e["target"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    for want in [
        ("admin", "keys.create", "ops-key"),
        ("console:jwt:lead@research", "keys.create", "lead-made"),
        ("console:jwt:lead@research", "keys.revoke", "lead-made"),
        ("console:jwt:lead@research", "console.sign_in", ""),
    ] {
        assert!(seen.iter().any(|s| (s.0.as_str(), s.1.as_str(), s.2.as_str()) == want), "{want:?} not in {seen:?}");
    }
    assert!(!trail.to_string().contains("sk-sy-"), "no secret in the trail");
    // the running configuration, to an admin, without its secrets
    let config: Value = json_of(admin(reqwest::Method::GET, "/admin/config")).await;
    let text = config["toml"].as_str().unwrap();
    for secret in [ADMIN_KEY, "upstream-secret", "anthropic-secret", SECRET, MAIN_KEY] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("***") && text.contains("research"), "{text}");
    // usage: the team's keys only
    let secret = |v: &Value| v["key"].as_str().unwrap().to_string();
    let ops: Value = json_of(admin(reqwest::Method::POST, "/admin/keys").json(&json!({"id": "ops-2"}))).await;
    let research: Value =
        json_of(admin(reqwest::Method::POST, "/admin/keys").json(&json!({"id": "research-2", "team": "research"})))
            .await;
    for s in [secret(&ops), secret(&research)] {
        assert_eq!(post_as(gw.url(), &s, &[], &chat_body("usage by team")).await.status(), 200);
    }
    let usage: Value = json_of(as_lead(reqwest::Method::GET, "/admin/usage?by=key")).await;
    let groups: Vec<&str> = usage["data"].as_array().unwrap().iter().map(|r| r["group"].as_str().unwrap()).collect();
    assert_eq!(groups, ["research-2"], "{usage}");

    // a viewer reads and changes nothing
    let viewer = sign_in(gw.url(), json!({"token": token("eve", "viewer")})).await;
    let as_viewer = |m: reqwest::Method, path: &str| viewer.req(m, path);
    assert_eq!(as_viewer(reqwest::Method::GET, "/admin/keys").send().await.unwrap().status(), 200);
    let r = as_viewer(reqwest::Method::POST, "/admin/keys").json(&json!({"id": "v"})).send().await.unwrap();
    assert_eq!(r.status(), 403);

    // prompts: a team's are its team admins' to change and its viewers' to read; another
    // team's are not there; experiments stay the admins'
    let prompt = |id: &str, team: Value| {
        json!({"id": id, "team": team, "versions": [{"messages": [{"role": "user", "content": "v1"}]},
            {"messages": [{"role": "user", "content": "v2"}]}]})
    };
    for (id, team) in [("ops-prompt", json!(null)), ("research-prompt", json!("research"))] {
        let r = admin(reqwest::Method::POST, "/admin/prompts").json(&prompt(id, team)).send().await.unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let r = admin(reqwest::Method::POST, "/admin/prompts").json(&prompt("x", json!("nope"))).send().await.unwrap();
    assert_eq!(r.status(), 400, "an unknown team");
    let listed: Value = json_of(as_lead(reqwest::Method::GET, "/admin/prompts")).await;
    let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["research-prompt"], "{listed}");
    let label = json!({"version": 2});
    let r = as_lead(reqwest::Method::PUT, "/admin/prompts/research-prompt/labels/staging").json(&label).send().await;
    assert_eq!(r.unwrap().status(), 200);
    for path in ["/admin/prompts/ops-prompt", "/admin/prompts/ops-prompt/diff?from=1&to=2"] {
        assert_eq!(as_lead(reqwest::Method::GET, path).send().await.unwrap().status(), 404, "{path}");
    }
    let r = as_lead(reqwest::Method::PUT, "/admin/prompts/ops-prompt/labels/staging").json(&label).send().await;
    assert_eq!(r.unwrap().status(), 404);
    let made: Value =
        json_of(as_lead(reqwest::Method::POST, "/admin/prompts").json(&prompt("lead-prompt", json!(null)))).await;
    assert_eq!(made["team"], "research", "{made}");
    let r = as_lead(reqwest::Method::POST, "/admin/prompts").json(&prompt("y", json!("ops"))).send().await;
    assert_eq!(r.unwrap().status(), 403, "another team's");
    assert_eq!(as_lead(reqwest::Method::GET, "/admin/experiments").send().await.unwrap().status(), 403);
    let seen: Value = json_of(as_viewer(reqwest::Method::GET, "/admin/prompts/research-prompt")).await;
    assert_eq!(seen["labels"]["staging"], 2);
    let r = as_viewer(reqwest::Method::PUT, "/admin/prompts/research-prompt/labels/staging").json(&label).send().await;
    assert_eq!(r.unwrap().status(), 403);
    // a token with the admin role is an admin; a bad token signs no one in
    let root = sign_in(gw.url(), json!({"token": token("root", "admin")})).await;
    let all = json_of(root.req(reqwest::Method::GET, "/admin/keys")).await;
    assert!(all["data"].as_array().unwrap().len() >= 4, "{all}");
    let bad = client().post(format!("{}/ui/api/session", gw.url())).json(&json!({"token": "a.b.c"})).send().await;
    assert_eq!(bad.unwrap().status(), 401);
}

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
    // without [nats] the pages that read JetStream say so in the API's error shape
    for path in ["/admin/logs", "/admin/logs/req_x", "/admin/batches", "/admin/jobs"] {
        let r = client().get(format!("{}{path}", gw.url())).bearer_auth(ADMIN_KEY).send().await.unwrap();
        assert_eq!(r.status(), 503, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("[nats]"), "{path}: {v}");
    }
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
    let (Ok(python), Ok(node)) = (std::env::var("SWITCHYARD_TEST_PYTHON"), std::env::var("SWITCHYARD_TEST_NODE"))
    else {
        eprintln!("skipped: SWITCHYARD_TEST_PYTHON or SWITCHYARD_TEST_NODE is not set (run ops/test.sh)");
        return;
    };
    let nats = NatsServer::start();
    let mock = mock_upstream();
    // the team admin signs in through an OpenID Connect provider (panva's, OpenID
    // Certified); research's requests pass guardrail `watch`, which flags injections; a
    // real nats-server serves the Batch API and the jobs' lanes
    let gateway_port = free_port();
    let claims = json!({"team": "research", "switchyard_role": "team_admin"});
    let provider = certified_idp(&node, free_port(), gateway_port, claims);
    // research's requests are logged; traces (sent nowhere) link to a tracing UI
    let extra = format!(
        "guardrails = [\"watch\"]\nlog_requests = true\n\n[[guardrails]]\nname = \"watch\"\n\
         injection = {{ threshold = 0.5, action = \"flag\" }}\n{}\n[telemetry]\nendpoint = \"http://127.0.0.1:9\"\n\
         protocol = \"http/protobuf\"\ntrace_url = \"http://traces.example.com/trace/{{trace_id}}\"\n",
        nats_section(&nats.url(), "console", "")
    );
    let gw = sso_gateway_at(&mock.url, &provider, gateway_port, &extra);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        gw.wait_nats("connected").await;
        let url = gw.url();
        // a batch of three
        let input: String = (0..3)
            .map(|i| {
                json!({"custom_id": format!("c{i}"), "method": "POST", "url": "/v1/chat/completions",
                    "body": chat_body(&format!("console batch {i}"))})
                .to_string()
                    + "\n"
            })
            .collect();
        let part = reqwest::multipart::Part::bytes(input.into_bytes()).file_name("in.jsonl");
        let form = reqwest::multipart::Form::new().text("purpose", "batch").part("file", part);
        let file: Value = json_of(client().post(format!("{url}/v1/files")).bearer_auth(MAIN_KEY).multipart(form)).await;
        let body = json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"});
        let batch: Value = json_of(client().post(format!("{url}/v1/batches")).bearer_auth(MAIN_KEY).json(&body)).await;
        assert_eq!(batch["status"], "in_progress", "{batch}");
        // a prompt of two versions, an experiment between them, and traffic through it
        let admin = |m: reqwest::Method, path: &str| client().request(m, format!("{url}{path}")).bearer_auth(ADMIN_KEY);
        let prompt = json!({"id": "greeting", "description": "the welcome line", "labels": {"production": 1},
            "versions": [
                {"messages": [{"role": "user", "content": "Say hello to {{ name }}."}], "variables": {"name": "string"}},
                {"messages": [{"role": "user", "content": "Say a warm hello to {{ name }}."}], "variables": {"name": "string"}}]});
        let r = admin(reqwest::Method::POST, "/admin/prompts").json(&prompt).send().await.unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let experiment = json!({"id": "warmth", "prompt": "greeting", "variants": [
            {"name": "control", "weight": 50, "prompt_version": 1}, {"name": "warm", "weight": 50, "prompt_version": 2}]});
        let r = admin(reqwest::Method::POST, "/admin/experiments").json(&experiment).send().await.unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        for i in 0..8 {
            let body = json!({"model": "chat", "messages": [], "user": format!("user-{i}"),
                "prompt": {"id": "greeting", "variables": {"name": format!("user {i}")}}});
            assert_eq!(post_as(url, MAIN_KEY, &[], &body).await.status(), 200);
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let shots = std::env::var("SWITCHYARD_CONSOLE_SHOTS")
        .map(|d| Path::new(env!("CARGO_MANIFEST_DIR")).join(d))
        .unwrap_or_else(|_| tmp.path().to_path_buf());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/journey.py");
    let out = Command::new(python).arg(script).arg(gw.url()).arg(ADMIN_KEY).arg(&shots).output().expect("python");
    assert_ran(&out, &gw);
    assert!(shots.join("console-usage.png").exists());
}

/// The usage the console shows comes a page at a time, in group order.
#[tokio::test]
async fn usage_comes_a_page_at_a_time() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    for id in ["page-a", "page-b", "page-c"] {
        let r = client()
            .post(format!("{}/admin/keys", gw.url()))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"id": id}))
            .send()
            .await
            .unwrap();
        let secret = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
        assert_eq!(post_as(gw.url(), &secret, &[], &chat_body(id)).await.status(), 200);
    }
    let page = |q: String| {
        let url = format!("{}/admin/usage?by=key&{q}", gw.url());
        async move { client().get(url).bearer_auth(ADMIN_KEY).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let groups = |v: &Value| {
        v["data"].as_array().unwrap().iter().map(|r| r["group"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let first = page("limit=2".into()).await;
    assert_eq!(groups(&first), ["page-a", "page-b"], "{first}");
    assert_eq!((first["has_more"].as_bool(), first["next"].as_str()), (Some(true), Some("page-b")));
    let second = page("limit=2&after=page-b".into()).await;
    assert_eq!(groups(&second), ["page-c"], "{second}");
    assert_eq!(second["has_more"], false);
}
