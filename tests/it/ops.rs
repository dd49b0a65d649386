//! The operations assets in `ops/`: the alert rules pass `promtool` (their syntax and
//! their unit tests), and a real Prometheus scrapes a gateway, evaluates every rule
//! without error, and answers every query of the Grafana dashboard.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ops(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ops").join(path)
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(ops("prometheus"))
        .output()
        .expect("promtool (Debian's prometheus package; bash ops/test.sh installs it)");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn api(base: &str, path: &str) -> Value {
    client().get(format!("{base}{path}")).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn alert_rules_and_the_dashboard_work_against_a_real_prometheus() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);

    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    for i in 0..3 {
        assert_eq!(post(gw.url(), "/v1/chat/completions", chat_body(&format!("scrape me {i}"))).await.status(), 200);
    }
    let dir = tempfile::tempdir().unwrap();
    let target = gw.url().trim_start_matches("http://").to_string();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: ['{target}']\n",
        rules = ops("prometheus/alerts.yml").display()
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian's prometheus package; bash ops/test.sh installs it)");
    let _prom = Prometheus(child);
    let base = format!("http://127.0.0.1:{port}");

    // the gateway is scraped, and its series are there
    let mut scraped = false;
    for _ in 0..300 {
        if let Ok(r) = client().get(format!("{base}/api/v1/query?query=switchyard_requests_total")).send().await {
            let v: Value = r.json().await.unwrap_or_default();
            if v["data"]["result"].as_array().is_some_and(|a| !a.is_empty()) {
                scraped = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(scraped, "Prometheus never scraped the gateway");
    let up = api(&base, "/api/v1/query?query=up%7Bjob%3D%22switchyard%22%7D").await;
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");

    // every rule was evaluated, without error
    let mut all_ok = false;
    let mut last = Value::Null;
    for _ in 0..100 {
        last = api(&base, "/api/v1/rules").await;
        let rules: Vec<&Value> = last["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        if rules.len() == 11
            && rules
                .iter()
                .all(|r| r["health"] == "ok" && r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")))
        {
            all_ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(all_ok, "{last}");
    // a healthy gateway fires nothing
    let alerts = api(&base, "/api/v1/alerts").await;
    let firing: Vec<&Value> =
        alerts["data"]["alerts"].as_array().into_iter().flatten().filter(|a| a["state"] == "firing").collect();
    assert!(firing.is_empty(), "{alerts}");

    // every dashboard query parses and runs
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(ops("grafana/switchyard.json")).unwrap()).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 12);
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap().replace("$__rate_interval", "1m");
            let r =
                client().get(format!("{base}/api/v1/query")).query(&[("query", expr.as_str())]).send().await.unwrap();
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["status"], "success", "{}: {expr}: {v}", p["title"]);
        }
    }
}

/// The deployment files in `ops/deploy`: the Kubernetes manifests against the
/// Kubernetes 1.30 schemas (kubernetes-validate, from PyPI), the container file through
/// a linter (dockerfilelint, from npm), the systemd unit through `systemd-analyze
/// verify` (no warning allowed), and the compose file and every config they carry
/// (`ops/deploy/check.py`, which runs `switchyard check-config`). Needs what `ops/test.sh`
/// installs; skipped under plain `cargo test`.
#[test]
fn deployment_files_validate() {
    let (Ok(python), Ok(_node)) = (std::env::var("SWITCHYARD_TEST_PYTHON"), std::env::var("SWITCHYARD_TEST_NODE"))
    else {
        eprintln!("skipped: SWITCHYARD_TEST_PYTHON and SWITCHYARD_TEST_NODE are not set (run ops/test.sh)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{cmd:?}:\n{stdout}\n{stderr}");
        (stdout.to_string(), stderr.to_string())
    };
    let validator = Path::new(&python).with_file_name("kubernetes-validate");
    let manifests: Vec<_> =
        std::fs::read_dir(root.join("ops/deploy/k8s")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(manifests.len() >= 6);
    // it exits non-zero on any manifest that does not validate
    run(Command::new(validator).args(["-k", "1.30.0", "--strict"]).args(&manifests));
    run(Command::new(root.join("tests/node/node_modules/.bin/dockerfilelint"))
        .arg(root.join("ops/deploy/Containerfile")));
    // systemd-analyze checks that ExecStart exists: point it at this build
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(root.join("ops/deploy/switchyard.service"))
        .unwrap()
        .replace("/usr/local/bin/switchyard", env!("CARGO_BIN_EXE_switchyard"));
    let path = dir.path().join("switchyard.service");
    std::fs::write(&path, unit).unwrap();
    let (_, stderr) = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
    run(Command::new(&python).arg(root.join("ops/deploy/check.py")).arg(env!("CARGO_BIN_EXE_switchyard")));
}
