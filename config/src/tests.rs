use std::path::Path;

use std::time::Duration;

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
    let usage = TokenCounts { input: 1_000_000, output: 1_000_000, cached_input: 0, cache_write_input: 0 };
    let fast = cfg.model("fast").map(|m| cfg.pricing.cost(m, "p", "gpt-4o-mini", usage));
    assert_eq!(fast, Some(0.75));
    let cheap = cfg.model("cheap").map(|m| cfg.pricing.cost(m, "p", "gpt-4o-mini", usage));
    assert_eq!(cheap, Some(0.60));
    let cached = TokenCounts { input: 1_000_000, output: 0, cached_input: 1_000_000, cache_write_input: 0 };
    assert_eq!(cfg.model("fast").map(|m| cfg.pricing.cost(m, "p", "gpt-4o-mini", cached)), Some(0.075));
    // prompt-cache writes at their own price (claude-sonnet-4-5: 3.75 against 3.00 input),
    // reads at theirs (0.30), the rest of the input at the input price
    let text = "[[providers]]\nname = \"a\"\nkind = \"anthropic\"\n[[models]]\nalias = \"c\"\ntargets = [{ provider = \"a\", model = \"claude-sonnet-4-5\" }]\n";
    let cfg = load_str(text, dir, &no_env).unwrap_or_else(|e| panic!("{e}"));
    let mixed = TokenCounts { input: 3_000_000, output: 0, cached_input: 1_000_000, cache_write_input: 1_000_000 };
    let cost = cfg.model("c").map(|m| cfg.pricing.cost(m, "a", "claude-sonnet-4-5", mixed));
    assert_eq!(cost.map(|c| (c * 100.0).round() / 100.0), Some(3.00 + 0.30 + 3.75));
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

#[test]
fn target_prices_override_the_alias_and_the_price_list() {
    let text = r#"
[[providers]]
name = "o"
kind = "mock"
[[models]]
alias = "fast"
input_per_mtok = 1.0
targets = [{ provider = "o", model = "gpt-4o-mini", input_per_mtok = 2.0, output_per_mtok = 3.0 },
           { provider = "o", model = "gpt-4o" }]
"#;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = load_str(text, dir, &no_env).unwrap_or_else(|e| panic!("{e}"));
    let m = cfg.model("fast").unwrap_or_else(|| panic!("alias"));
    let usage = TokenCounts { input: 1_000_000, output: 1_000_000, cached_input: 0, cache_write_input: 0 };
    assert_eq!(cfg.pricing.cost(m, "o", "gpt-4o-mini", usage), 5.0, "the target's own price");
    // the other target: the alias's input price, pricing.toml's output price (gpt-4o: 10.00)
    assert_eq!(cfg.pricing.cost(m, "o", "gpt-4o", usage), 11.0);
    // the same model through another provider is not that target
    assert_eq!(cfg.pricing.cost(m, "other", "gpt-4o-mini", usage), 1.6);
    let (_, known) = cfg.pricing.target_cost(m, None, "no-such-model", usage);
    assert!(known, "the alias's input price is a price");
}

#[test]
fn routes_are_checked_and_match_on_every_condition() {
    let text = r#"
[[providers]]
name = "p"
kind = "mock"
[[models]]
alias = "small"
targets = [{ provider = "p", model = "m" }]
[[models]]
alias = "big"
strategy = "latency"
targets = [{ provider = "p", model = "m", max_concurrency = 4 }]
[[keys]]
id = "team-a"
key = "sk-team-a-secret"
models = ["*"]
[[routes]]
name = "code"
models = ["auto"]
alias = "big"
regex = '(?i)\b(rust|python)\b'
headers = { "X-Team" = "^search$" }
[[routes]]
name = "faq"
alias = "small"
keywords = ["Refund", "opening hours"]
keys = ["team-a"]
max_prompt_tokens = 100
"#;
    let cfg = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let (code, faq) = (&cfg.routes[0], &cfg.routes[1]);
    let headers = vec![("x-team".to_string(), "search".to_string())];
    let input = RouteInput {
        model: "auto",
        key_id: "team-b",
        headers: &headers,
        prompt_tokens: 50,
        last_user_text: "How do I read a file in Python?",
        ..Default::default()
    };
    assert!(code.matches(&input));
    assert!(!code.matches(&RouteInput { model: "gpt-4o", ..input }), "only for `auto`");
    assert!(!code.matches(&RouteInput { headers: &[], ..input }), "the header is required");
    assert!(!code.matches(&RouteInput { last_user_text: "pythonic", ..input }), "whole words only");
    assert!(!faq.matches(&input), "another key");
    let faq_input = RouteInput { key_id: "team-a", last_user_text: "what about a REFUND?", ..input };
    assert!(faq.matches(&faq_input), "keywords ignore case");
    assert!(!faq.matches(&RouteInput { prompt_tokens: 101, ..faq_input }));
    assert!(cfg.model("big").is_some_and(|m| m.strategy == Strategy::Latency));

    let bad = r#"
[[providers]]
name = "p"
kind = "mock"
health_check_interval_ms = 1000
[[models]]
alias = "a"
strategy = "failover"
sticky = "user"
targets = [{ provider = "p", model = "m", max_concurrency = 0, input_per_mtok = -1.0 }]
[[routes]]
name = "r"
alias = "nope"
regex = "(unclosed"
keywords = [""]
keys = ["ghost"]
min_prompt_tokens = 10
max_prompt_tokens = 5
headers = { "x-a" = "[" }
[[routes]]
name = "r"
alias = "a"
"#;
    let err = parse(bad).err().map(|e| fields(&e)).unwrap_or_default();
    for want in [
        "providers[0].health_check_interval_ms",
        "models[0].sticky",
        "models[0].targets[0].max_concurrency",
        "models[0].targets[0].input_per_mtok",
        "routes[0].alias",
        "routes[0].regex",
        "routes[0].keywords",
        "routes[0].keys[0]",
        "routes[0].min_prompt_tokens",
        "routes[0].headers.x-a",
        "routes[1].name",
    ] {
        assert!(err.iter().any(|f| f == want), "missing error for {want}: {err:?}");
    }
}

#[test]
fn breaker_and_health_check_settings_are_checked() {
    let text = r#"
[[providers]]
name = "p"
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"
breaker_error_ratio = 0.5
health_check_interval_ms = 2000
[[providers]]
name = "q"
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"
breaker_error_ratio = 1.5
breaker_min_requests = 0
health_check_path = "models"
"#;
    let err = parse(text).err().map(|e| fields(&e)).unwrap_or_default();
    for want in
        ["providers[1].breaker_error_ratio", "providers[1].breaker_min_requests", "providers[1].health_check_path"]
    {
        assert!(err.iter().any(|f| f == want), "missing error for {want}: {err:?}");
    }
    assert!(!err.iter().any(|f| f.starts_with("providers[0]")), "{err:?}");
    let ok = parse(&text[..text.find("[[providers]]\nname = \"q\"").unwrap_or(0)]).unwrap_or_else(|e| panic!("{e}"));
    let p = &ok.providers[0];
    assert_eq!((p.breaker_error_ratio, p.breaker_min_requests), (Some(0.5), 20));
    let hc = p.health_check.clone().unwrap_or_else(|| panic!("health check"));
    assert_eq!((hc.interval, hc.path.as_str()), (Duration::from_secs(2), "/models"));
}

#[test]
fn teams_and_key_policies_are_checked() {
    let text = r#"
[[providers]]
name = "p"
kind = "mock"
[[models]]
alias = "fast"
rpm = 100
targets = [{ provider = "p", model = "m" }]
[[models]]
alias = "smart"
targets = [{ provider = "p", model = "m" }]
[[teams]]
id = "search"
models = ["fast"]
endpoints = ["chat", "batch"]
max_tokens = 512
max_priority = "normal"
rpm = 60
tpd = 100000
budget_usd = 25.0
budget_period = "day"
[[keys]]
id = "a"
key = "sk-aaaaaaaaaaaa"
team = "search"
expires_at = "2027-01-31T00:00:00Z"
budget_usd = 5
"#;
    let cfg = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let k = &cfg.keys[0];
    assert_eq!(k.models, None, "a team's key with no models of its own defers to the team");
    assert_eq!(k.expires_at_ms, Some(1_801_353_600_000));
    assert_eq!(k.budget, Some(Budget { usd: 5.0, period: BudgetPeriod::Month }));
    let t = cfg.team("search").unwrap_or_else(|| panic!("team"));
    assert!(t.allows("fast") && !t.allows("smart"));
    assert!(allows_api(&t.endpoints, Api::Batch) && !allows_api(&t.endpoints, Api::Embeddings));
    assert_eq!((t.max_tokens, t.max_priority), (Some(512), Priority::Normal));
    assert_eq!(t.limits, Limits { rpm: Some(60), tpm: None, tpd: Some(100_000), max_concurrent: None });
    assert_eq!(cfg.model("fast").map(|m| m.limits.rpm), Some(Some(100)));

    let bad = r#"
[[providers]]
name = "p"
kind = "mock"
[[models]]
alias = "fast"
max_concurrent = 0
targets = [{ provider = "p", model = "m" }]
[[teams]]
id = "t"
models = ["nope"]
endpoints = ["chat", "images"]
budget_usd = -1
budget_period = "week"
max_priority = "urgent"
tpd = 0
[[teams]]
id = "t"
[[keys]]
id = "a"
key = "sk-aaaaaaaaaaaa"
team = "ghost"
expires_at = "next tuesday"
max_tokens = 0
"#;
    let err = parse(bad).err().map(|e| fields(&e)).unwrap_or_default();
    for want in [
        "models[0].max_concurrent",
        "teams[0].models[0]",
        "teams[0].endpoints[1]",
        "teams[0].budget_usd",
        "teams[0].budget_period",
        "teams[0].max_priority",
        "teams[0].tpd",
        "teams[1].id",
        "keys[0].team",
        "keys[0].expires_at",
        "keys[0].max_tokens",
    ] {
        assert!(err.iter().any(|f| f == want), "missing error for {want}: {err:?}");
    }
}

#[test]
fn budget_periods_start_at_utc_boundaries() {
    // 2026-11-29T12:34:56Z
    let now = 1_795_955_696_000;
    assert_eq!(BudgetPeriod::Day.start_ms(now), 1_795_910_400_000); // 2026-11-29T00:00Z
    assert_eq!(BudgetPeriod::Month.start_ms(now), 1_793_491_200_000); // 2026-11-01T00:00Z
    assert_eq!(BudgetPeriod::Total.start_ms(now), 0);
    // 2024-03-01T00:00:00Z: the day after a leap day starts its month
    assert_eq!(BudgetPeriod::Month.start_ms(1_709_251_200_000), 1_709_251_200_000);
    assert_eq!(BudgetPeriod::Month.start_ms(1_709_251_199_999), 1_706_745_600_000);
    // 2024-02-01
}

#[test]
fn jwt_settings_are_checked() {
    let ok = parse("[jwt]\naudience = \"sw\"\njwks_file = \"keys/jwks.json\"\n").unwrap_or_else(|e| panic!("{e}"));
    let j = ok.jwt.unwrap_or_else(|| panic!("jwt"));
    assert_eq!((j.team_claim.as_str(), j.subject_claim.as_str(), j.leeway_secs), ("team", "sub", 30));
    assert_eq!(j.jwks_file, Some(Path::new("/nonexistent/keys/jwks.json").to_path_buf()), "beside the config");
    let err = parse("[jwt]\nhs256_secret = \"short\"\njwks_url = \"ftp://x\"\n")
        .err()
        .map(|e| fields(&e))
        .unwrap_or_default();
    for want in ["jwt.hs256_secret", "jwt.jwks_url"] {
        assert!(err.iter().any(|f| f == want), "missing error for {want}: {err:?}");
    }
    let err = parse("[jwt]\naudience = \"sw\"\n").err().map(|e| fields(&e)).unwrap_or_default();
    assert_eq!(err, ["jwt"]);
}

#[test]
fn worker_count_is_bounded() {
    for bad in [0, 513] {
        let err = parse(&format!("[server]\nworkers = {bad}\n")).err();
        assert!(err.as_ref().is_some_and(|e| fields(e).contains(&"server.workers".to_string())), "{bad}: {err:?}");
    }
    for good in [1, 512] {
        assert!(parse(&format!("[server]\nworkers = {good}\n")).is_ok(), "{good}");
    }
}

#[test]
fn bad_guardrail_settings_are_refused_with_their_fields() {
    let text = r#"
[[guardrails]]
name = "g"
injection = { threshold = 1.5, action = "warn" }
moderation = { action = "nope", thresholds = { gossip = 0.5, hate = 2.0 }, classifier = "no-such-alias" }
webhook = { url = "ftp://guard", on_error = "maybe", headers = { authorization = "Bearer ${NO_SUCH_VAR_XYZ}" } }
presidio = { url = "presidio:3000", score = 1.5, on_error = "never", entities = { US_SSN = "shred" } }
"#;
    let err = parse(text).expect_err("refused");
    let got = fields(&err);
    for want in [
        "guardrails[0].injection.threshold",
        "guardrails[0].injection.action",
        "guardrails[0].moderation.action",
        "guardrails[0].moderation.gossip",
        "guardrails[0].moderation.thresholds.hate",
        "guardrails[0].moderation.classifier",
        "guardrails[0].webhook.url",
        "guardrails[0].webhook.on_error",
        "guardrails[0].webhook.headers.authorization",
        "guardrails[0].presidio.url",
        "guardrails[0].presidio.score",
        "guardrails[0].presidio.on_error",
        "guardrails[0].presidio.entities.US_SSN",
    ] {
        assert!(got.iter().any(|f| f == want), "{want} not in {got:?}");
    }
    // the two that are right pass
    let ok = "[[guardrails]]\nname = \"g\"\ninjection = { action = \"flag\" }\nmoderation = { action = \"block\" }\n";
    assert!(parse(ok).is_ok());
}

#[test]
fn telemetry_defaults_choices_and_errors() {
    assert_eq!(parse("").unwrap().telemetry, None);
    let t = load_str(
        "[telemetry]\nprotocol = \"http/protobuf\"\nheaders = { \"X-Api-Key\" = \"${OTLP_KEY}\" }\n\
         resource = { \"deployment.environment\" = \"prod\" }\nsample_ratio = 0.25\n",
        Path::new("."),
        &fake_env,
    )
    .unwrap()
    .telemetry
    .unwrap();
    assert_eq!(t.endpoint, "http://127.0.0.1:4318");
    assert_eq!(t.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(t.headers, vec![("x-api-key".to_string(), "value-of-OTLP_KEY".to_string())]);
    assert_eq!(t.resource, vec![("deployment.environment".to_string(), "prod".to_string())]);
    assert_eq!((t.sample_ratio, t.max_queue, t.propagate), (0.25, 4096, true));
    let grpc = parse("[telemetry]\n").unwrap().telemetry.unwrap();
    assert_eq!((grpc.endpoint.as_str(), grpc.protocol), ("http://127.0.0.1:4317", OtlpProtocol::Grpc));
    assert_eq!(parse("[telemetry]\nenabled = false\n").unwrap().telemetry, None);
    let err = parse(
        "[telemetry]\nprotocol = \"thrift\"\nendpoint = \"udp://x\"\nsample_ratio = 2.0\ntimeout_ms = 0\n\
         max_queue = 10\nmax_batch = 20\n",
    )
    .unwrap_err();
    assert_eq!(
        fields(&err),
        [
            "telemetry.protocol",
            "telemetry.endpoint",
            "telemetry.sample_ratio",
            "telemetry.max_batch",
            "telemetry.timeout_ms"
        ]
    );
}

#[test]
fn request_logs_need_nats() {
    let text = "[[keys]]\nid = \"k\"\nkey = \"sk-test-01\"\nlog_requests = true\n\
                [[teams]]\nid = \"t\"\nlog_requests = true\n";
    let err = parse(text).unwrap_err();
    assert_eq!(fields(&err), ["log_requests", "log_requests"]);
    assert!(err.to_string().contains("keys `k` logs requests"), "{err}");
    let ok =
        parse(&format!("{text}[nats]\nurl = \"nats://127.0.0.1:4222\"\nrequest_logs_max_bytes = 2000000\n")).unwrap();
    assert!(ok.keys[0].log_requests && ok.teams[0].log_requests);
    let nats = ok.nats.unwrap();
    assert_eq!((nats.request_logs_max_bytes, nats.request_logs_max_field_bytes), (2_000_000, 256 << 10));
    let small = parse("[nats]\nurl = \"nats://x:4222\"\nrequest_logs_max_bytes = 10\n").unwrap_err();
    assert_eq!(fields(&small), ["nats.request_logs_max_bytes"]);
}

#[test]
fn nats_nkeys_and_tls() {
    let n = parse("[nats]\nurl = \"tls://n1:4222\"\nnkey_seed = \"SUAEXAMPLE\"\n").unwrap().nats.unwrap();
    assert_eq!(n.nkey_seed.as_deref(), Some("SUAEXAMPLE"));
    assert!(n.tls_required, "a tls:// URL asks for TLS");
    let n = parse("[nats]\nurl = \"nats://n1:4222\"\ntls_ca_file = \"/ca.pem\"\ntls_cert_file = \"/c.pem\"\ntls_key_file = \"/c.key\"\n")
        .unwrap()
        .nats
        .unwrap();
    assert!(n.tls_required && n.tls_client.is_some());
    assert!(!parse("[nats]\nurl = \"nats://n1:4222\"\n").unwrap().nats.unwrap().tls_required);
    let err =
        parse("[nats]\nurl = \"nats://n1:4222\"\nnkey_seed = \"SOAB\"\ntoken = \"t\"\ntls_cert_file = \"/c.pem\"\n")
            .unwrap_err();
    assert_eq!(fields(&err), ["nats.nkey_seed", "nats", "nats.tls_cert_file"]);
    let err = parse("[nats]\nurl = \"nats://n1:4222\"\nshared_limits_unavailable = \"maybe\"\n").unwrap_err();
    assert_eq!(fields(&err), ["nats.shared_limits_unavailable"]);
}
