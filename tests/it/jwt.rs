//! JWT bearer tokens: HS256 and ES256 (keys from a JWKS file), the team claim picking the
//! policy, and every way a token can be wrong.

use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::common::*;

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn claims(team: &str, aud: &str, exp: u64) -> Value {
    json!({"sub": "alice", "team": team, "aud": aud, "iss": "https://idp.test", "exp": exp})
}

/// An ES256 key pair: the signing key (PKCS#8) and its JWKS.
fn es256_keys() -> (Vec<u8>, Value) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = pair.public_key().as_ref(); // 0x04 || x || y
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": b64(&public[1..33]), "y": b64(&public[33..65])}]});
    (pkcs8.as_ref().to_vec(), jwks)
}

#[tokio::test]
async fn tokens_are_verified_and_their_team_sets_the_policy() {
    let mock = mock_upstream();
    let (pkcs8, jwks) = es256_keys();
    let jwks_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(jwks_file.path(), jwks.to_string()).unwrap();
    let extra = format!(
        r#"
[[teams]]
id = "research"
models = ["chat"]
rpm = 2

[jwt]
issuer = "https://idp.test"
audience = "switchyard"
hs256_secret = "{SECRET}"
jwks_file = "{}"
"#,
        jwks_file.path().display()
    );
    let gw = Gateway::start_with(&mock.url, &extra);
    let nc = [("cache-control", "no-cache")];
    let ask = |m: &str| json!({"model": m, "messages": [{"role": "user", "content": "hi"}]});
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        (status, v["error"]["message"].as_str().unwrap_or("").to_string())
    };

    // HS256: a good token gets in with its team's policy
    let good = hs256(&claims("research", "switchyard", now() + 600), SECRET);
    assert_eq!(post_as(gw.url(), &good, &nc, &ask("chat")).await.status(), 200);
    let (s, _) = code(post_as(gw.url(), &good, &nc, &ask("claude")).await).await;
    assert_eq!(s, 403, "the team allows `chat` only");

    // ES256 with the JWKS key, through `x-api-key` too
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let es =
        encode(&header, &claims("research", "switchyard", now() + 600), &EncodingKey::from_ec_der(&pkcs8)).unwrap();
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .header("x-api-key", &es)
        .header("cache-control", "no-cache")
        .json(&ask("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // the team's rpm of 2 is shared by every token of the team
    let (s, _) = code(post_as(gw.url(), &good, &nc, &ask("chat")).await).await;
    assert_eq!(s, 429);

    // every way to be wrong is a 401 that says why
    let cases = [
        (
            hs256(&claims("research", "switchyard", now() + 600), "another-secret-that-is-long-enough!!"),
            "bad signature",
        ),
        (hs256(&claims("research", "someone-else", now() + 600), SECRET), "wrong audience"),
        (hs256(&claims("research", "switchyard", now() - 3600), SECRET), "expired"),
        (hs256(&claims("ghosts", "switchyard", now() + 600), SECRET), "unknown team"),
        (
            hs256(&json!({"sub": "x", "aud": "switchyard", "iss": "https://idp.test", "exp": now() + 600}), SECRET),
            "no `team` claim",
        ),
        (
            hs256(
                &json!({"team": "research", "aud": "switchyard", "iss": "https://evil.test", "exp": now() + 600}),
                SECRET,
            ),
            "wrong issuer",
        ),
        // a configured audience or issuer is a required claim, and so is the subject
        (
            hs256(&json!({"sub": "x", "team": "research", "iss": "https://idp.test", "exp": now() + 600}), SECRET),
            "missing claim `aud`",
        ),
        (
            hs256(&json!({"sub": "x", "team": "research", "aud": "switchyard", "exp": now() + 600}), SECRET),
            "missing claim `iss`",
        ),
        (
            hs256(
                &json!({"team": "research", "aud": "switchyard", "iss": "https://idp.test", "exp": now() + 600}),
                SECRET,
            ),
            "no `sub` claim",
        ),
        (
            hs256(
                &json!({"sub": "", "team": "research", "aud": "switchyard", "iss": "https://idp.test", "exp": now() + 600}),
                SECRET,
            ),
            "no `sub` claim",
        ),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.garbage".to_string(), "bad signature"),
        ("eyJub3QganNvbg.e30.x".to_string(), "malformed token"),
    ];
    for (token, why) in cases {
        let (s, message) = code(post_as(gw.url(), &token, &nc, &ask("chat")).await).await;
        assert_eq!(s, 401, "{why}");
        assert!(message.contains(why), "{why}: {message}");
    }
    // an ES256 token whose kid is not in the JWKS
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k2".into());
    let stray =
        encode(&header, &claims("research", "switchyard", now() + 600), &EncodingKey::from_ec_der(&pkcs8)).unwrap();
    let (s, message) = code(post_as(gw.url(), &stray, &nc, &ask("chat")).await).await;
    assert_eq!((s, message.contains("no key in the JWKS")), (401, true), "{message}");

    // the ledger names the token's subject
    let r = client().get(format!("{}/admin/usage?by=key", gw.url())).bearer_auth(ADMIN_KEY).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    let row = v["data"].as_array().unwrap().iter().find(|r| r["group"] == "jwt:alice@research").cloned();
    assert_eq!(row.map(|r| r["requests"].clone()), Some(json!(2)), "{v}");
    // and its team's usage counts it
    let r = client().get(format!("{}/admin/usage?by=team", gw.url())).bearer_auth(ADMIN_KEY).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    let row = v["data"].as_array().unwrap().iter().find(|r| r["group"] == "research").cloned();
    assert_eq!(row.map(|r| r["requests"].clone()), Some(json!(2)), "{v}");
}

#[tokio::test]
async fn an_hs256_token_is_refused_when_only_a_jwks_is_configured() {
    let mock = mock_upstream();
    let (_, jwks) = es256_keys();
    let jwks_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(jwks_file.path(), jwks.to_string()).unwrap();
    let extra = format!(
        "\n[[teams]]\nid = \"research\"\n\n[jwt]\naudience = \"switchyard\"\njwks_file = \"{}\"\n",
        jwks_file.path().display()
    );
    let gw = Gateway::start_with(&mock.url, &extra);
    let token = hs256(&claims("research", "switchyard", now() + 600), SECRET);
    let r =
        post_as(gw.url(), &token, &[], &json!({"model": "chat", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("HS256 tokens are not accepted"), "{v}");
    // plain API keys still work beside JWTs
    let r = post_as(gw.url(), MAIN_KEY, &[], &json!({"model": "chat", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(r.status(), 200);
}
