use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Runs `tests/sdk/<script>` with the Python that `ops/test.sh` prepared (it installs the
/// SDK in a venv and sets `SWITCHYARD_TEST_PYTHON`); under plain `cargo test` the SDK
/// tests are skipped.
pub(crate) fn run_sdk_script(script: &str, gw: &Gateway) {
    let Ok(python) = std::env::var("SWITCHYARD_TEST_PYTHON") else {
        eprintln!("skipped: SWITCHYARD_TEST_PYTHON is not set (run ops/test.sh)");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk").join(script);
    let out = Command::new(python).arg(script).arg(gw.url()).arg(MAIN_KEY).output().expect("python");
    assert_ran(&out, gw);
}

/// Runs `tests/node/<script>` with the Node.js that `ops/test.sh` prepared (it installs
/// the clients with `npm ci` and sets `SWITCHYARD_TEST_NODE`); skipped otherwise.
fn run_node_script(script: &str, gw: &Gateway) {
    let Ok(node) = std::env::var("SWITCHYARD_TEST_NODE") else {
        eprintln!("skipped: SWITCHYARD_TEST_NODE is not set (run ops/test.sh)");
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    let out = Command::new(node).current_dir(&dir).arg(script).arg(gw.url()).arg(MAIN_KEY).output().expect("node");
    assert_ran(&out, gw);
}

/// The OpenAI Node SDK, the Anthropic TypeScript SDK and the Vercel AI SDK's `openai()`
/// (Responses API) and `anthropic()` providers, from the npm registry.
#[test]
fn node_clients_work_unchanged() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &openai_target(&mock.url));
    run_node_script("clients.mjs", &gw);
}

/// The official OpenAI Python SDK against the gateway.
#[test]
fn openai_python_sdk_works_unchanged() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    run_sdk_script("openai_sdk.py", &gw);
}

/// The official OpenAI Python SDK's Responses API calls (create, stream, tools across
/// turns, parse, retrieve, input items, delete) to an OpenAI and an Anthropic upstream.
#[test]
fn openai_python_sdk_responses_api_works_unchanged() {
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &openai_target(&mock.url));
    run_sdk_script("openai_responses.py", &gw);
}

/// The official Anthropic Python SDK against `/v1/messages`.
#[test]
fn anthropic_python_sdk_works_unchanged() {
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    run_sdk_script("anthropic_sdk.py", &gw);
}

/// The SDK's batch calls (`files.create`, `batches.create/retrieve/list/cancel`,
/// `files.content`) against the Batch API on a real `nats-server`.
#[tokio::test]
async fn openai_python_sdk_batch_calls_work_unchanged() {
    let nats = NatsServer::start();
    let mock = mock_upstream();
    let gw = Gateway::start_with(&mock.url, &nats_section(&nats.url(), "sdk", "job_concurrency = 2"));
    gw.wait_nats("connected").await;
    tokio::task::spawn_blocking(move || run_sdk_script("openai_batch.py", &gw)).await.expect("sdk script");
}
