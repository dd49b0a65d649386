//! Experiments: weighted, sticky assignment (checked with a chi-square test over a fixed
//! set of users), the variant in the header, the ledger and the metrics, feedback joined
//! to records, the report checked against what the test computes, status changes,
//! promotion, the admin API and the CLI.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;
use crate::it::prompts::PROMPTS;

const EXPERIMENT: &str = r#"
[[experiments]]
id = "tone"
prompt = "support"
sticky = "user"

[[experiments.variants]]
name = "control"
weight = 70
prompt_version = 1

[[experiments.variants]]
name = "v2"
weight = 30
prompt_version = 2
"#;

const OTHER: &str = "\n[[keys]]\nid = \"other\"\nkey = \"sk-test-other\"\nmodels = [\"*\"]\n";

async fn admin(method: Method, url: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = client().request(method, format!("{url}{path}")).bearer_auth(ADMIN_KEY);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn ask(user: &str) -> Value {
    json!({"model": "chat", "messages": [], "user": user,
        "prompt": {"id": "support", "variables": {"company": "ACME", "question": format!("hello from {user}")}}})
}

struct Answer {
    status: u16,
    variant: String,
    prompt: String,
    request_id: String,
}

async fn send(url: &str, key: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
    let r = post_as(url, key, headers, body).await;
    let variant = header(&r, "x-switchyard-experiment");
    Answer {
        status: r.status().as_u16(),
        variant: variant.strip_prefix("tone/").unwrap_or(&variant).to_string(),
        prompt: header(&r, "x-switchyard-prompt"),
        request_id: header(&r, "x-request-id"),
    }
}

async fn feedback(url: &str, key: &str, body: &Value) -> (u16, Value) {
    let r = client().post(format!("{url}/v1/feedback")).bearer_auth(key).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_experiment_splits_sticky_by_weight_and_its_report_matches_the_ledger() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &format!("{PROMPTS}{EXPERIMENT}{OTHER}"));
    let url = gw.url();

    // 300 users (a fixed set: the assignment is a stable hash, so the outcome is too):
    // the split matches the 70/30 weights by a chi-square test at the 1% level, and the
    // variant serves its prompt version
    let mut by_user: HashMap<String, String> = HashMap::new();
    let mut answers = Vec::new();
    for i in 0..300 {
        let user = format!("user-{i}");
        // every tenth user's request fails upstream
        let fail: &[(&str, &str)] = if i % 10 == 0 { &[("x-mock-status", "500")] } else { &[] };
        let a = send(url, MAIN_KEY, fail, &ask(&user)).await;
        assert_eq!(a.status, if i % 10 == 0 { 502 } else { 200 });
        if a.status == 200 {
            let want = if a.variant == "control" { "support@1" } else { "support@2" };
            assert_eq!(a.prompt, want, "{user}");
        }
        by_user.insert(user, a.variant.clone());
        answers.push(a);
    }
    let ok: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let n_v2 = ok.iter().filter(|a| a.variant == "v2").count() as f64;
    let n = ok.len() as f64;
    let (e_v2, e_c) = (0.3 * n, 0.7 * n);
    let chi2 = (n_v2 - e_v2).powi(2) / e_v2 + ((n - n_v2) - e_c).powi(2) / e_c;
    assert!(chi2 < 6.635, "chi-square {chi2} (v2 {n_v2} of {n}): the split does not follow the weights");
    // sticky: the same user, the same variant, whatever else the request says
    for i in [1, 2, 3, 5, 8] {
        let user = format!("user-{i}");
        for _ in 0..3 {
            let mut body = ask(&user);
            body["messages"] = json!([{"role": "user", "content": "again"}]);
            assert_eq!(send(url, MAIN_KEY, &[], &body).await.variant, by_user[&user]);
        }
    }

    // feedback on some of the answered requests: score 1 for control, 0..4 for v2
    let mut expected: HashMap<&str, Vec<f64>> = HashMap::new();
    for (j, a) in ok.iter().take(60).enumerate() {
        let score = if a.variant == "control" { 1.0 } else { (j % 5) as f64 };
        let (status, v) =
            feedback(url, MAIN_KEY, &json!({"request_id": a.request_id, "score": score, "comment": "ok"})).await;
        assert_eq!(status, 200, "{v}");
        expected.entry(if a.variant == "control" { "control" } else { "v2" }).or_default().push(score);
    }
    // another key's feedback on the same request does not count; bad feedback is a 400
    let (status, _) = feedback(url, "sk-test-other", &json!({"request_id": ok[0].request_id, "score": -50.0})).await;
    assert_eq!(status, 200);
    for bad in [
        json!({"request_id": "x"}),
        json!({"request_id": "x", "score": "good"}),
        json!({"request_id": "", "score": 1}),
        json!({"request_id": "x", "score": 1, "extra": true}),
    ] {
        let (status, v) = feedback(url, MAIN_KEY, &bad).await;
        assert_eq!(status, 400, "{bad} {v}");
    }

    // the report, against what the test saw and the ledger says
    let (status, v) = admin(Method::GET, url, "/admin/experiments/tone", None).await;
    assert_eq!(status, 200, "{v}");
    let report = &v["report"];
    let (_, usage) = admin(Method::GET, url, "/admin/usage?by=experiment", None).await;
    for (i, name) in ["control", "v2"].iter().enumerate() {
        let row = &report["variants"][i];
        assert_eq!(row["name"], *name);
        let mine: Vec<&Answer> = answers.iter().filter(|a| a.variant == *name).collect();
        let repeats = [1, 2, 3, 5, 8].iter().filter(|i| by_user[&format!("user-{i}")] == *name).count() * 3;
        assert_eq!(row["requests"].as_u64().unwrap() as usize, mine.len() + repeats, "{row}");
        let errors = mine.iter().filter(|a| a.status != 200).count();
        assert_eq!(row["errors"].as_u64().unwrap() as usize, errors, "{row}");
        let total = (mine.len() + repeats) as f64;
        let rate = row["error_rate"]["value"].as_f64().unwrap();
        assert!((rate - errors as f64 / total).abs() < 1e-9);
        let ci = row["error_rate"]["ci95"].as_array().unwrap();
        assert!(ci[0].as_f64().unwrap() <= rate && rate <= ci[1].as_f64().unwrap());
        // the cost per request is the ledger's spend over its requests
        let ledger = usage["data"].as_array().unwrap().iter().find(|r| r["group"] == format!("tone/{name}")).unwrap();
        assert_eq!(ledger["requests"], row["requests"]);
        let mean = ledger["cost_usd"].as_f64().unwrap() / ledger["requests"].as_f64().unwrap();
        assert!((row["cost_per_request_usd"]["mean"].as_f64().unwrap() - mean).abs() < 1e-12, "{row}");
        // feedback: only the key's own, the mean of what was sent
        let scores = &expected[name];
        assert_eq!(row["feedback"]["count"].as_u64().unwrap() as usize, scores.len());
        let fb_mean = scores.iter().sum::<f64>() / scores.len() as f64;
        assert!((row["feedback"]["mean"].as_f64().unwrap() - fb_mean).abs() < 1e-9, "{row}");
        let p50 = row["latency_ms"]["p50"]["value"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 <= row["latency_ms"]["p95"]["value"].as_f64().unwrap());
    }
    let vs = &report["variants"][1]["vs_control"];
    assert_eq!(vs["error_rate"]["test"], "two_proportion_z");
    assert_eq!(vs["feedback"]["test"], "welch_t");
    let p = vs["feedback"]["p_value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{vs}");

    // the metrics carry the variant
    let ok_control = ok.iter().filter(|a| a.variant == "control").count() as f64;
    let repeats = [1, 2, 3, 5, 8].iter().filter(|i| by_user[&format!("user-{i}")] == "control").count() as f64 * 3.0;
    let text = client().get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| {
        l.starts_with("switchyard_experiment_requests_total") && l.contains("\"control\"") && l.contains("\"200\"")
    });
    let m: Option<f64> = line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok());
    assert_eq!(m, Some(ok_control + repeats), "{line:?}");

    // paused: requests get what they asked for (the production label), no variant
    let (status, _) = admin(Method::POST, url, "/admin/experiments/tone/pause", None).await;
    assert_eq!(status, 200);
    let a = send(url, MAIN_KEY, &[], &ask("user-77")).await;
    assert_eq!((a.variant.as_str(), a.prompt.as_str()), ("", "support@1"));
    let (status, _) = admin(Method::POST, url, "/admin/experiments/tone/start", None).await;
    assert_eq!(status, 200);
    assert_eq!(send(url, MAIN_KEY, &[], &ask("user-77")).await.variant, by_user["user-77"]);
    // a config prompt's label is moved in the file
    let (status, v) = admin(Method::POST, url, "/admin/experiments/tone/promote", Some(json!({"variant": "v2"}))).await;
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("prompt_in_config")), "{v}");
    let (status, _) = admin(Method::POST, url, "/admin/experiments/tone/stop", None).await;
    assert_eq!(status, 200);
    let (status, v) = admin(Method::POST, url, "/admin/experiments/tone/start", None).await;
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("experiment_stopped")));
}

#[tokio::test]
async fn experiments_made_through_the_cli_stick_by_header_switch_aliases_and_promote_a_winner() {
    let mock = mock_upstream();
    let mut gw = Gateway::start_with(&mock.url, PROMPTS);
    let url = gw.url().to_string();
    let greet = json!({"id": "greet", "labels": {"production": 1}, "versions": [
        {"messages": [{"role": "user", "content": "Hello {{ name }}"}]},
        {"messages": [{"role": "user", "content": "Howdy {{ name }}"}]}]});
    assert_eq!(admin(Method::POST, &url, "/admin/prompts", Some(greet)).await.0, 201);
    let cli = |args: &[&str]| {
        let mut all = vec!["experiments", "--url", &url, "--admin-key", ADMIN_KEY, "--actor", "ci"];
        all.extend_from_slice(args);
        run_cli(&all)
    };
    let file = gw.dir.path().join("exp.toml");
    std::fs::write(
        &file,
        "id = \"greeting\"\nprompt = \"greet\"\nsticky = \"header:x-session\"\n\
         [[variants]]\nname = \"hello\"\nweight = 1\nprompt_label = \"production\"\n\
         [[variants]]\nname = \"howdy\"\nweight = 1\nprompt_version = 2\nmodel = \"secret\"\n",
    )
    .unwrap();
    let (code, out, err) = cli(&["create", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let bad = gw.dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"id": "b", "prompt": "nope", "variants": [{"name": "a", "weight": 1}]}"#).unwrap();
    let (code, _, err) = cli(&["create", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("prompt: no prompt `nope`") && err.contains("at least two variants"), "{err}");

    // sticky by the header; the second variant is served by another alias
    let body = json!({"model": "chat", "messages": [], "prompt": {"id": "greet", "variables": {"name": "Di"}}});
    let mut seen: HashMap<String, (String, String)> = HashMap::new();
    for s in 0..40 {
        let session = format!("s-{s}");
        for _ in 0..2 {
            let r = post_as(&url, MAIN_KEY, &[("x-session", &session)], &body).await;
            assert_eq!(r.status(), 200);
            let got = (header(&r, "x-switchyard-experiment"), header(&r, "x-switchyard-model"));
            let first = seen.entry(session.clone()).or_insert_with(|| got.clone());
            assert_eq!(*first, got, "sticky by x-session");
        }
    }
    let howdy: Vec<_> = seen.values().filter(|(e, _)| e == "greeting/howdy").collect();
    assert!(!howdy.is_empty() && howdy.len() < 40, "both variants serve");
    assert!(howdy.iter().all(|(_, model)| model == "mock-chat"), "the variant's alias `secret`");
    assert!(seen.values().filter(|(e, _)| e == "greeting/hello").all(|(_, m)| m == "gpt-4o-mini"));

    let (code, out, _) = cli(&["report", "greeting"]);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["report"]["variants"][1]["requests"].as_u64().unwrap() as usize, howdy.len() * 2);

    // promote: the winner's version gets the label, the experiment stops, everyone gets it
    let (code, out, err) = cli(&["promote", "greeting", "howdy"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["status"].as_str(), v["promoted"]["version"].as_u64()), (Some("stopped"), Some(2)), "{v}");
    let r = post_as(&url, MAIN_KEY, &[("x-session", "s-0")], &body).await;
    assert_eq!(
        (header(&r, "x-switchyard-experiment").as_str(), header(&r, "x-switchyard-prompt").as_str()),
        ("", "greet@2")
    );
    let (_, v) = admin(Method::GET, &url, "/admin/prompts/greet", None).await;
    let last = v["audit"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["actor"].as_str(), last["label"].as_str(), last["from"].as_u64()),
        (Some("ci"), Some("production"), Some(1))
    );

    // kept across a restart, stopped
    gw.restart();
    let url = gw.url().to_string();
    let (_, v) = admin(Method::GET, &url, "/admin/experiments/greeting", None).await;
    assert_eq!(v["status"], "stopped", "{v}");
}

/// The admin API's refusals: each a clear error in OpenAI's shape, nothing changed.
#[tokio::test]
async fn the_admin_api_refuses_what_it_cannot_do() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, PROMPTS);
    let url = gw.url();
    let greet = json!({"id": "greet", "versions": [{"messages": [{"role": "user", "content": "Hi {{ name }}"}]}]});
    assert_eq!(admin(Method::POST, url, "/admin/prompts", Some(greet)).await.0, 201);
    let by_alias = json!({"id": "alias-ab", "model": "chat",
        "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "model": "secret"}]});
    assert_eq!(admin(Method::POST, url, "/admin/experiments", Some(by_alias)).await.0, 201);
    for (method, path, body, status, says) in [
        (Method::GET, "/admin/prompts/nope", None, 404, "no prompt `nope`"),
        (Method::DELETE, "/admin/prompts/greet/labels/staging", None, 404, "has no label `staging`"),
        (Method::GET, "/admin/prompts/greet/diff?from=1&to=3", None, 400, "has no version 3"),
        (Method::POST, "/admin/prompts/greet/rollback", None, 400, "no earlier version"),
        (Method::POST, "/admin/prompts/greet/render", Some(json!({"version": 1, "label": "x"})), 400, "not both"),
        (Method::POST, "/admin/prompts/greet/versions", Some(json!({"messages": "x"})), 400, "invalid JSON body"),
        (Method::GET, "/admin/experiments/nope", None, 404, "no experiment `nope`"),
        (Method::POST, "/admin/experiments/alias-ab/restart", None, 404, "no action `restart`"),
        (Method::POST, "/admin/experiments/alias-ab/promote", Some(json!({"variant": "c"})), 400, "no variant `c`"),
        (
            Method::POST,
            "/admin/experiments/alias-ab/promote",
            Some(json!({"variant": "b"})),
            400,
            "serves no prompt version",
        ),
        (
            Method::POST,
            "/admin/experiments",
            Some(json!({"id": "alias-ab", "model": "chat",
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]})),
            409,
            "exists",
        ),
    ] {
        let (got, v) = admin(method, url, path, body).await;
        assert_eq!(got, status, "{path}: {v}");
        let m = v["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains(says), "{path}: {m}");
    }
    // nothing moved: the experiment still runs, by alias alone
    let r = post_as(url, MAIN_KEY, &[], &chat_body("still running")).await;
    assert!(header(&r, "x-switchyard-experiment").starts_with("alias-ab/"));
}
