use std::path::Path;
use std::process::Command;

use crate::common::*;

/// The official OpenAI Python SDK against the gateway. `ops/test.sh` installs the SDK in
/// a venv and sets `SWITCHYARD_TEST_PYTHON`; under plain `cargo test` it is skipped.
#[test]
fn openai_python_sdk_works_unchanged() {
    let Ok(python) = std::env::var("SWITCHYARD_TEST_PYTHON") else {
        eprintln!("skipped: SWITCHYARD_TEST_PYTHON is not set (run ops/test.sh)");
        return;
    };
    let mock = mock_upstream();
    let gw = Gateway::start(&mock.url);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/openai_sdk.py");
    let out = Command::new(python).arg(script).arg(gw.url()).arg(MAIN_KEY).output().expect("python");
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
}
