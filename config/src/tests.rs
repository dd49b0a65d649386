use std::path::Path;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn fake_env(name: &str) -> Option<String> {
    Some(format!("value-of-{name}"))
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    load_str(text, Path::new("/nonexistent"), &no_env)
}

fn fields(e: &ConfigErrors) -> Vec<String> {
    e.0.iter().map(|e| e.field.clone()).collect()
}

/// Every file shipped in `config/` parses and validates.
#[test]
fn every_shipped_config_file_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![dir.join("switchyard.toml")];
    for entry in std::fs::read_dir(dir.join("examples")).into_iter().flatten().flatten() {
        files.push(entry.path());
    }
    assert!(files.len() >= 3, "expected the default and at least two examples");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let base = f.parent().unwrap_or(dir);
        let cfg = load_str(&text, base, &fake_env);
        assert!(cfg.is_ok(), "{}: {}", f.display(), cfg.err().map(|e| e.to_string()).unwrap_or_default());
    }
    // pricing.toml on its own
    let pricing = read_pricing(&dir.join("pricing.toml"), "pricing_file");
    assert!(pricing.is_ok_and(|p| p.models.contains_key("gpt-4o-mini")));
}

#[test]
fn default_config_needs_no_keys_and_no_nats() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = load(&dir.join("switchyard.toml"));
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert!(cfg.nats.is_none());
    assert!(cfg.providers.iter().all(|p| p.kind == ProviderKind::Mock));
    assert!(cfg.pricing.models.contains_key("mock-chat"));
}

#[test]
fn unknown_field_is_rejected_with_its_line() {
    let err = parse("[server]\nhttp_adr = \"127.0.0.1:1\"\n").err();
    let err = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("http_adr"), "{err}");
}

#[test]
fn type_error_quotes_the_key() {
    let err = parse("[[providers]]\nname = \"a\"\nkind = \"mock\"\nconcurrency = \"many\"\n").err();
    let err = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("concurrency"), "{err}");
}

#[test]
fn every_error_names_its_field() {
    let text = r#"
[server]
http_addr = "nope"
[[providers]]
name = "p"
kind = "telepathy"
[[providers]]
name = "q"
kind = "openai-compatible"
[[models]]
alias = "m"
strategy = "psychic"
targets = [{ provider = "ghost", model = "x" }]
[[keys]]
id = "k"
key = "short"
models = ["nope"]
priority = "urgent"
rpm = 0
"#;
    let err = parse(text).err().map(|e| fields(&e)).unwrap_or_default();
    for want in [
        "server.http_addr",
        "providers[0].kind",
        "providers[1].base_url",
        "models[0].strategy",
        "models[0].targets[0].provider",
        "keys[0].key",
        "keys[0].models[0]",
        "keys[0].priority",
        "keys[0].rpm",
    ] {
        assert!(err.iter().any(|f| f == want), "missing {want} in {err:?}");
    }
}

#[test]
fn env_interpolation_and_missing_variable() {
    let text = r#"
[[providers]]
name = "o"
kind = "openai"
api_key = "${OPENAI_API_KEY}"
[[keys]]
id = "k"
key = "${TEAM_KEY}"
models = ["*"]
"#;
    let cfg = load_str(text, Path::new("."), &fake_env);
    let cfg = cfg.ok();
    assert_eq!(cfg.as_ref().and_then(|c| c.providers[0].api_key.clone()).as_deref(), Some("value-of-OPENAI_API_KEY"));
    assert_eq!(cfg.map(|c| c.keys[0].key_sha256.clone()), Some(hash_key("value-of-TEAM_KEY")));
    let err = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("providers[0].api_key: environment variable `OPENAI_API_KEY` is not set"), "{err}");
}

#[test]
fn interpolation_keeps_literal_dollars() {
    let mut errs = validate::tests_support::errors();
    let out = validate::tests_support::interp("x", "a$$b$c", &mut errs);
    assert_eq!(out, "a$b$c");
}

#[test]
fn cost_uses_pricing_and_alias_overrides() {
    let text = r#"
[[providers]]
name = "o"
kind = "openai"
[[models]]
alias = "fast"
targets = [{ provider = "o", model = "gpt-4o-mini" }]
[[models]]
alias = "cheap"
input_per_mtok = 0.0
targets = [{ provider = "o", model = "gpt-4o-mini" }]
"#;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = match load_str(text, dir, &no_env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let usage = TokenCounts { input: 1_000_000, output: 1_000_000, cached_input: 0 };
    let fast = cfg.model("fast").map(|m| cfg.pricing.cost(m, "gpt-4o-mini", usage));
    assert_eq!(fast, Some(0.75));
    let cheap = cfg.model("cheap").map(|m| cfg.pricing.cost(m, "gpt-4o-mini", usage));
    assert_eq!(cheap, Some(0.60));
    let cached = TokenCounts { input: 1_000_000, output: 0, cached_input: 1_000_000 };
    assert_eq!(cfg.model("fast").map(|m| cfg.pricing.cost(m, "gpt-4o-mini", cached)), Some(0.075));
}

#[test]
fn nats_settings_are_checked_and_defaulted() {
    let ok = parse("[nats]\nurl = \"nats://127.0.0.1:4222\"\n").unwrap_or_else(|e| panic!("{e}"));
    let n = ok.nats.unwrap_or_else(|| panic!("nats"));
    assert_eq!((n.prefix.as_str(), n.job_concurrency, n.max_attempts), ("switchyard", 32, 5));
    assert_eq!(n.subject("chat"), "switchyard.v1.chat");
    assert!(n.request_reply && n.jobs);
    assert_eq!(n.ack_wait, Duration::from_secs(30));
    assert_eq!((n.files_max_bytes, n.batch_max_requests), (100 << 20, 50_000));
    let text = r#"
[nats]
url = "http://nope"
prefix = "a b"
token = "t"
user = "u"
job_concurrency = 0
max_attempts = 0
ack_wait_secs = 0
replicas = 7
files_max_bytes = 0
batch_max_requests = 0
[[providers]]
name = "p"
kind = "mock"
jobs_share = 1.5
[[models]]
alias = "a"
targets = [{ provider = "p", model = "m" }]
[[keys]]
id = "k"
key = "0123456789"
batch_priority = "urgent"
"#;
    let err = parse(text).err().map(|e| fields(&e)).unwrap_or_default();
    for want in [
        "nats.url",
        "nats.prefix",
        "nats.user",
        "nats.job_concurrency",
        "nats.max_attempts",
        "nats.ack_wait_secs",
        "nats.replicas",
        "providers[0].jobs_share",
        "nats.files_max_bytes",
        "nats.batch_max_requests",
        "keys[0].batch_priority",
    ] {
        assert!(err.iter().any(|f| f == want), "missing error for {want}: {err:?}");
    }
    let both = parse("[nats]\nurl = \"nats://x:1\"\ntoken = \"t\"\nuser = \"u\"\npassword = \"p\"\n");
    assert!(both.err().is_some_and(|e| fields(&e).contains(&"nats".to_string())));
}

#[test]
fn bedrock_needs_a_region_and_whole_credentials() {
    let ok = parse("[[providers]]\nname = \"b\"\nkind = \"bedrock\"\nregion = \"eu-west-1\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let p = &ok.providers[0];
    assert_eq!(p.base_url, "https://bedrock-runtime.eu-west-1.amazonaws.com");
    let aws = p.aws.clone().unwrap_or_else(|| panic!("aws"));
    assert_eq!((aws.region.as_str(), aws.access_key_id), ("eu-west-1", None));
    let text = r#"
[[providers]]
name = "b"
kind = "bedrock"
aws_access_key_id = "AKID"
[[providers]]
name = "o"
kind = "openai"
region = "us-east-1"
"#;
    let err = parse(text).err().map(|e| fields(&e)).unwrap_or_default();
    for want in ["providers[0].region", "providers[0].aws_access_key_id", "providers[1].region"] {
        assert!(err.iter().any(|f| f == want), "missing error for {want}: {err:?}");
    }
}

#[test]
fn strategies_and_fallbacks_are_checked() {
    let text = r#"
[[providers]]
name = "p"
kind = "mock"
[[models]]
alias = "a"
strategy = "failover"
targets = [{ provider = "p", model = "m" }]
fallbacks = ["b"]
[[models]]
alias = "b"
strategy = "fastest"
targets = [{ provider = "p", model = "m" }]
fallbacks = ["b", "nope"]
"#;
    let err = parse(text).err().map(|e| fields(&e)).unwrap_or_default();
    for want in ["models[1].strategy", "models[1].fallbacks[0]", "models[1].fallbacks[1]"] {
        assert!(err.iter().any(|f| f == want), "missing error for {want}: {err:?}");
    }
    assert!(!err.iter().any(|f| f.starts_with("models[0]")), "{err:?}");
}
