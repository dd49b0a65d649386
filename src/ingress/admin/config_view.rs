//! `GET /admin/config`: the configuration the gateway runs on, as its file said when it
//! was last loaded, with every secret masked.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use switchyard_actors::GatewayError;

use super::{admin, answer};
use crate::app::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/config", web::get().to(show));
}

/// Fields whose values are secrets, wherever they are.
const SECRETS: &[&str] = &[
    "key",
    "api_key",
    "admin_key",
    "hs256_secret",
    "aws_secret_access_key",
    "aws_session_token",
    "token",
    "password",
    "nkey_seed",
    "client_secret",
];

/// What a secret shows as; a `${VAR}` reference is shown as it is (it names, not holds).
fn mask(s: &str) -> String {
    if s.starts_with("${") && s.ends_with('}') {
        s.to_string()
    } else {
        "***".to_string()
    }
}

/// A URL's user and password masked (`nats://user:pass@host`).
fn mask_userinfo(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let (userinfo, host) = rest.split_once('@')?;
    (!userinfo.contains('/')).then(|| format!("{scheme}://***@{host}"))
}

/// Masks `v` in place: secret fields, every value of a `headers` table, URLs' userinfo.
pub fn masked(v: &mut toml::Value, secret: bool) {
    match v {
        toml::Value::String(s) if secret => *s = mask(s),
        toml::Value::String(s) => {
            if let Some(m) = mask_userinfo(s) {
                *s = m;
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                masked(v, secret || SECRETS.contains(&k.as_str()) || k == "headers");
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(|v| masked(v, secret)),
        _ => {}
    }
}

/// `GET /admin/config` (admins only): the file's path and its text, secrets masked.
async fn show(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let result = (|| {
        admin(&req, &state)?;
        let text = state.config_text.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut v: toml::Value = toml::from_str(&text)
            .map_err(|e| GatewayError::Internal(format!("the loaded config no longer parses: {e}")))?;
        masked(&mut v, false);
        let shown = toml::to_string_pretty(&v).map_err(|e| GatewayError::Internal(e.to_string()))?;
        Ok(json!({"object": "config", "path": state.config_path.display().to_string(), "toml": shown}))
    })();
    answer(&req, 200, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_userinfo_are_masked_references_are_not() {
        let mut v: toml::Value = toml::from_str(
            r#"
[server]
admin_key = "admin-secret-key"
max_tokens = 5
[nats]
url = "nats://alice:hunter2@127.0.0.1:4222"
[[providers]]
name = "openai"
api_key = "${OPENAI_API_KEY}"
headers = { "x-tenant" = "t-secret" }
[[keys]]
id = "main"
key = "sk-live-123"
[jwt.oidc]
client_id = "console"
client_secret = "oidc-client-secret"
"#,
        )
        .unwrap();
        masked(&mut v, false);
        let text = toml::to_string(&v).unwrap();
        for secret in ["admin-secret-key", "hunter2", "alice", "t-secret", "sk-live-123", "oidc-client-secret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            text.contains("${OPENAI_API_KEY}") && text.contains("max_tokens = 5") && text.contains("id = \"main\"")
        );
    }
}
