//! The console's single sign-on through an OpenID Connect provider (`[jwt.oidc]`): the
//! authorization code flow with PKCE (S256), its `state` bound to the browser by a
//! cookie, a `nonce` checked in the ID token. The ID token is verified with the `[jwt]`
//! settings (JWKS or HS256 secret, issuer), its audience being the client id; its team
//! claim and `switchyard_role` claim make the session, as a token pasted into the
//! sign-in form does.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use switchyard_actors::GatewayError;
use switchyard_config::Oidc;

use super::{random_hex, served, session_cookie};
use crate::app::AppState;

/// The cookie that ties a sign-in's `state` to the browser that started it.
const STATE_COOKIE: &str = "sy_sso";
/// Sign-ins under way at once; past it the oldest are dropped.
const MAX_PENDING: usize = 1024;
/// How long a started sign-in may take at the identity provider.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// The largest answer read from the identity provider (discovery, token).
const MAX_ANSWER: usize = 1 << 20;
/// The longest a call to the identity provider (discovery, token) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui/api/sso", web::get().to(enabled))
        .route("/ui/api/sso/start", web::get().to(start))
        .route("/ui/api/sso/callback", web::get().to(callback));
}

/// A sign-in sent to the identity provider, waiting for its code.
struct Started {
    verifier: String,
    nonce: String,
    expires: Instant,
}

/// The identity provider's endpoints.
#[derive(Clone, Debug, Deserialize)]
struct Endpoints {
    authorization_endpoint: String,
    token_endpoint: String,
}

/// Sign-ins under way, and the provider's endpoints once discovered.
pub struct Pending {
    by_state: RwLock<HashMap<String, Started>>,
    discovered: RwLock<Option<(String, Endpoints)>>,
    http: reqwest::Client,
}

impl Default for Pending {
    fn default() -> Pending {
        Pending {
            by_state: RwLock::default(),
            discovered: RwLock::default(),
            http: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }
}

impl Pending {
    fn put(&self, state: String, started: Started) {
        let mut map = self.by_state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_PENDING {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(state, started);
    }

    /// The sign-in `state` names, once (a code is exchanged at most once).
    fn take(&self, state: &str) -> Option<Started> {
        let mut map = self.by_state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(state).filter(|s| s.expires > Instant::now())
    }

    /// The configured endpoints, else those of `{issuer}/.well-known/openid-configuration`
    /// (read once per issuer).
    async fn endpoints(&self, oidc: &Oidc, issuer: Option<&str>) -> Result<Endpoints, GatewayError> {
        if let (Some(a), Some(t)) = (&oidc.authorization_url, &oidc.token_url) {
            return Ok(Endpoints { authorization_endpoint: a.clone(), token_endpoint: t.clone() });
        }
        let issuer = issuer.ok_or_else(|| GatewayError::Unavailable("`jwt.issuer` is not set".into()))?;
        let cached = self.discovered.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let found = match cached {
            Some((i, e)) if i == issuer => e,
            _ => {
                let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
                let fetch = async {
                    let r = self.http.get(&url).send().await.map_err(|e| e.to_string())?;
                    json_capped::<Endpoints>(r.error_for_status().map_err(|e| e.to_string())?).await
                };
                let e =
                    fetch.await.map_err(|e| GatewayError::Unavailable(format!("OpenID discovery at {url}: {e}")))?;
                *self.discovered.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((issuer.to_string(), e.clone()));
                e
            }
        };
        Ok(Endpoints {
            authorization_endpoint: oidc.authorization_url.clone().unwrap_or(found.authorization_endpoint),
            token_endpoint: oidc.token_url.clone().unwrap_or(found.token_endpoint),
        })
    }
}

fn oidc(state: &AppState) -> Option<(Oidc, Option<String>)> {
    let rt = state.engine.runtime();
    let jwt = rt.config.jwt.as_ref()?;
    Some((jwt.oidc.clone()?, jwt.issuer.clone()))
}

/// An answer of the provider read as JSON, refused past [`MAX_ANSWER`] bytes.
async fn json_capped<T: serde::de::DeserializeOwned>(mut r: reqwest::Response) -> Result<T, String> {
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("an answer over {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("not the JSON expected: {e}"))
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `GET /ui/api/sso`: whether the sign-in page offers single sign-on.
async fn enabled(state: web::Data<AppState>) -> HttpResponse {
    if !served(&state) {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok().json(json!({"enabled": oidc(&state).is_some()}))
}

/// `GET /ui/api/sso/start`: sends the browser to the identity provider.
async fn start(state: web::Data<AppState>) -> HttpResponse {
    let Some((oidc, issuer)) = oidc(&state).filter(|_| served(&state)) else {
        return HttpResponse::NotFound().finish();
    };
    let result = async {
        let endpoints = state.console.sso.endpoints(&oidc, issuer.as_deref()).await?;
        let (sign_in, verifier, nonce) = (random_hex()?, random_hex()?, random_hex()?);
        let challenge = b64url(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
        let scope = oidc.scopes.join(" ");
        let url = reqwest::Url::parse_with_params(
            &endpoints.authorization_endpoint,
            [
                ("response_type", "code"),
                ("client_id", oidc.client_id.as_str()),
                ("redirect_uri", oidc.redirect_url.as_str()),
                ("scope", scope.as_str()),
                ("state", sign_in.as_str()),
                ("nonce", nonce.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|e| GatewayError::Unavailable(format!("the authorization URL: {e}")))?;
        state.console.sso.put(sign_in.clone(), Started { verifier, nonce, expires: Instant::now() + PENDING_TTL });
        Ok::<_, GatewayError>((url, sign_in))
    }
    .await;
    match result {
        Ok((url, sign_in)) => {
            // Lax: the provider's redirect back is a cross-site navigation
            let cookie = Cookie::build(STATE_COOKIE, sign_in)
                .path("/ui/api/sso")
                .http_only(true)
                .secure(true)
                .same_site(SameSite::Lax)
                .max_age(actix_web::cookie::time::Duration::seconds(PENDING_TTL.as_secs() as i64))
                .finish();
            HttpResponse::Found().insert_header(("location", url.as_str())).cookie(cookie).finish()
        }
        Err(e) => page(e.class().status, &format!("Single sign-on is unavailable: {e}")),
    }
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    error: Option<String>,
}

/// `GET /ui/api/sso/callback?code&state`: the code exchanged for an ID token, the token
/// verified, the session opened; the browser goes on to the console.
async fn callback(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some((oidc, issuer)) = oidc(&state).filter(|_| served(&state)) else {
        return HttpResponse::NotFound().finish();
    };
    let result = async {
        let q = web::Query::<Callback>::from_query(req.query_string())
            .map_err(|e| GatewayError::BadRequest(format!("invalid callback: {e}")))?;
        if let Some(e) = &q.error {
            let why = q.error_description.as_deref().unwrap_or("");
            return Err(GatewayError::InvalidToken(format!("the identity provider answered {e} {why}")));
        }
        let sign_in = q.state.as_deref().ok_or_else(|| GatewayError::BadRequest("no `state`".into()))?;
        if req.cookie(STATE_COOKIE).is_none_or(|c| c.value() != sign_in) {
            return Err(GatewayError::Forbidden {
                code: "sso_state_mismatch",
                message: "this sign-in was not started by this browser".into(),
            });
        }
        let started = state.console.sso.take(sign_in).ok_or_else(|| GatewayError::Forbidden {
            code: "sso_state_unknown",
            message: "this sign-in is unknown, used or expired: start again".into(),
        })?;
        let code = q.code.as_deref().ok_or_else(|| GatewayError::BadRequest("no `code`".into()))?;
        let endpoints = state.console.sso.endpoints(&oidc, issuer.as_deref()).await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", oidc.redirect_url.as_str()),
            ("client_id", oidc.client_id.as_str()),
            ("code_verifier", started.verifier.as_str()),
        ];
        if let Some(secret) = &oidc.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let unavailable = |e: reqwest::Error| GatewayError::Unavailable(format!("the token endpoint: {e}"));
        let answer =
            state.console.sso.http.post(&endpoints.token_endpoint).form(&form).send().await.map_err(unavailable)?;
        let status = answer.status();
        let body: TokenAnswer =
            json_capped(answer).await.map_err(|e| GatewayError::Unavailable(format!("the token endpoint: {e}")))?;
        let id_token = match (status.is_success(), body.id_token) {
            (true, Some(t)) => t,
            (true, None) => return Err(GatewayError::InvalidToken("the token endpoint sent no ID token".into())),
            (false, _) => {
                let e = body.error.unwrap_or_default();
                return Err(GatewayError::InvalidToken(format!("the token endpoint answered {status} {e}")));
            }
        };
        let (key, claims) = state.engine.runtime().verify_token(&id_token, Some(&oidc.client_id))?;
        if claims.get("nonce").and_then(|n| n.as_str()) != Some(started.nonce.as_str()) {
            return Err(GatewayError::InvalidToken("the ID token's nonce is not this sign-in's".into()));
        }
        Ok(super::of_token(&key, &claims))
    }
    .await;
    let opened = result.and_then(|who| session_cookie(&state, who, "sso")).map(|(cookie, _)| cookie);
    let mut gone = Cookie::build(STATE_COOKIE, "").path("/ui/api/sso").finish();
    gone.make_removal();
    match opened {
        Ok(cookie) => {
            let mut ok = page(200, "Signed in. On to the console…");
            ok.add_cookie(&cookie).ok();
            ok.add_cookie(&gone).ok();
            ok.headers_mut().insert(
                actix_web::http::header::REFRESH,
                actix_web::http::header::HeaderValue::from_static("0; url=/ui"),
            );
            ok
        }
        Err(e) => {
            tracing::warn!(target: "switchyard::audit", error = %e, "console single sign-on refused");
            let mut refused = page(e.class().status, &format!("Single sign-on failed: {e}"));
            refused.add_cookie(&gone).ok();
            refused
        }
    }
}

/// A short HTML page with a link back to the console (the text escaped).
fn page(status: u16, text: &str) -> HttpResponse {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Switchyard console</title></head>\
         <body><p id=\"sso-result\">{escaped}</p><p><a href=\"/ui\">Back to the console</a></p></body></html>"
    );
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .insert_header(("content-security-policy", "default-src 'none'; frame-ancestors 'none'"))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: Vec<u8>) -> reqwest::Response {
        reqwest::Response::from(http::Response::builder().body(body).unwrap())
    }

    #[actix_rt::test]
    async fn a_provider_answer_is_bounded_and_must_be_the_json_expected() {
        let ok = br#"{"authorization_endpoint": "https://idp/a", "token_endpoint": "https://idp/t", "x": 1}"#;
        let e: Endpoints = json_capped(answer(ok.to_vec())).await.unwrap();
        assert_eq!(e.token_endpoint, "https://idp/t");
        let huge = format!(r#"{{"authorization_endpoint": "{}"}}"#, "a".repeat(MAX_ANSWER));
        assert!(json_capped::<Endpoints>(answer(huge.into_bytes())).await.unwrap_err().contains("over"));
        assert!(json_capped::<Endpoints>(answer(b"<html>".to_vec())).await.unwrap_err().contains("not the JSON"));
    }
}
