//! The web console at `/ui`: a page and its script and style, embedded in the binary
//! (no build step, no CDN), and the session it signs in with. Every change the console
//! makes goes through the admin API (`/admin/*`) with the same checks; a session stands
//! in for the admin credential there (see [`Sessions::admin`]), and a change also needs
//! the session's CSRF token in `x-csrf-token`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use switchyard_actors::GatewayError;

use super::admin::answer;
use super::admin::roles::{Principal, Role};
use super::respond::simple_error;
use crate::app::AppState;

mod sso;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// The session cookie.
pub const COOKIE: &str = "sy_session";
/// Sessions kept at once; past it the oldest are dropped.
const MAX_SESSIONS: usize = 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui", web::get().to(page))
        .route("/ui/", web::get().to(page))
        .route("/ui/assets/app.js", web::get().to(script))
        .route("/ui/assets/app.css", web::get().to(style))
        .route("/ui/api/session", web::post().to(sign_in))
        .route("/ui/api/session", web::get().to(session))
        .route("/ui/api/session", web::delete().to(sign_out))
        .configure(sso::routes)
        .route("/ui/{page}", web::get().to(page));
}

/// A signed-in console user.
#[derive(Clone)]
struct Session {
    csrf: String,
    who: Principal,
    expires: Instant,
}

/// The console's sessions (in memory: a restart signs everyone out).
#[derive(Default)]
pub struct Sessions {
    by_token: RwLock<HashMap<String, Session>>,
    /// Single sign-on through the identity provider, under way.
    sso: sso::Pending,
}

fn random_hex() -> Result<String, GatewayError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| GatewayError::Internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

impl Sessions {
    fn open(&self, who: Principal, ttl: Duration) -> Result<(String, Session), GatewayError> {
        let token = random_hex()?;
        let session = Session { csrf: random_hex()?, who, expires: Instant::now() + ttl };
        let mut map = self.by_token.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(t, _)| t.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(token.clone(), session.clone());
        Ok((token, session))
    }

    fn get(&self, req: &HttpRequest) -> Option<Session> {
        let token = req.cookie(COOKIE)?;
        let map = self.by_token.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(token.value()).filter(|s| s.expires > Instant::now()).cloned()
    }

    fn close(&self, req: &HttpRequest) {
        if let Some(token) = req.cookie(COOKIE) {
            self.by_token.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(token.value());
        }
    }

    /// The admin API's caller when a request carries no admin credential: a console
    /// session, and for a change its CSRF token. `None`: no session (the caller answers
    /// as for a missing credential).
    pub fn principal(&self, req: &HttpRequest) -> Option<Result<Principal, GatewayError>> {
        let session = self.get(req)?;
        if matches!(*req.method(), Method::GET | Method::HEAD) {
            return Some(Ok(session.who));
        }
        let token = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok());
        Some(if token == Some(session.csrf.as_str()) {
            Ok(session.who)
        } else {
            Err(GatewayError::Forbidden {
                code: "csrf_token_missing",
                message: "a console change needs the session's x-csrf-token header".into(),
            })
        })
    }
}

/// The console is served when it is on and the admin API is (it signs in with its key).
fn served(state: &AppState) -> bool {
    let server = &state.engine.runtime().config.server;
    server.console && server.admin_key_sha256.is_some()
}

fn asset(state: &AppState, content_type: &str, body: &'static str) -> HttpResponse {
    if !served(state) {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header((
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ))
        .body(body)
}

async fn page(state: web::Data<AppState>) -> HttpResponse {
    asset(&state, "text/html; charset=utf-8", INDEX)
}

async fn script(state: web::Data<AppState>) -> HttpResponse {
    asset(&state, "text/javascript; charset=utf-8", SCRIPT)
}

async fn style(state: web::Data<AppState>) -> HttpResponse {
    asset(&state, "text/css; charset=utf-8", STYLE)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// The admin credential.
    key: Option<String>,
    /// A single sign-on token (verified with `[jwt]`): its team claim and its
    /// `switchyard_role` claim (`admin`, `team_admin`, else viewer) make the session.
    token: Option<String>,
}

/// The session a verified token opens: its caller's team, and the role its
/// `switchyard_role` claim names (`admin`, `team_admin`, else viewer).
fn of_token(key: &switchyard_actors::pipeline::KeyEntry, claims: &HashMap<String, serde_json::Value>) -> Principal {
    let role = Role::from_claim(claims.get("switchyard_role").and_then(|r| r.as_str()));
    Principal { role, team: key.team.as_ref().map(|t| t.id.clone()), who: format!("console:{}", key.id) }
}

/// Who a sign-in form names, or why not.
fn who_signs_in(form: SignIn, state: &AppState) -> Result<Principal, GatewayError> {
    use switchyard_actors::pipeline::jwt::looks_like_jwt;
    let rt = state.engine.runtime();
    let expected = rt.config.server.admin_key_sha256.clone().ok_or(GatewayError::NotFound)?;
    match (form.key, form.token) {
        (Some(key), None) if switchyard_config::hash_key(&key) == expected => Ok(Principal::admin("console:admin")),
        (None, Some(token)) if looks_like_jwt(&token) && rt.config.jwt.is_some() => {
            let (key, claims) = rt.verify_token(&token, None)?;
            Ok(of_token(&key, &claims))
        }
        (Some(_), None) | (None, Some(_)) => Err(GatewayError::InvalidKey),
        _ => Err(GatewayError::BadRequest("sign in with {\"key\"} or {\"token\"}".into())),
    }
}

/// `POST /ui/api/session {"key"} | {"token"}`: signs in with the admin credential or a
/// single sign-on token; the session is an HttpOnly, Secure, SameSite=Strict cookie,
/// and the answer holds its CSRF token.
async fn sign_in(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    if !served(&state) {
        return HttpResponse::NotFound().finish();
    }
    let result = (|| {
        let form: SignIn = serde_json::from_slice(&body)
            .map_err(|e| GatewayError::BadRequest(format!("expected {{\"key\"}} or {{\"token\"}}: {e}")))?;
        let who = who_signs_in(form, &state).inspect_err(|e| {
            tracing::warn!(target: "switchyard::audit", error = %e, "console sign-in refused");
        })?;
        session_cookie(&state, who, "form")
    })();
    match result {
        Ok((cookie, session)) => HttpResponse::Ok().cookie(cookie).json(shown(&session, &state)),
        Err(e) => simple_error(&super::respond::request_id(&req), e),
    }
}

/// Opens a session for `who` (signed in by `how`: `form` or `sso`), in the audit trail:
/// its cookie (HttpOnly, Secure, SameSite=Strict), and the session.
fn session_cookie(state: &AppState, who: Principal, how: &str) -> Result<(Cookie<'static>, Session), GatewayError> {
    let ttl = state.engine.runtime().config.server.console_session;
    state.engine.store().audit(
        &who.who,
        "console.sign_in",
        None,
        json!({"role": who.role.as_str(), "team": who.team, "with": how}),
    );
    let (token, session) = state.console.open(who, ttl)?;
    tracing::info!(target: "switchyard::audit", who = %session.who.who, role = session.who.role.as_str(), with = how,
        "console sign-in");
    let cookie = Cookie::build(COOKIE, token)
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(ttl.as_secs() as i64))
        .finish();
    Ok((cookie, session))
}

/// A session as the console reads it.
fn shown(s: &Session, state: &AppState) -> serde_json::Value {
    // where a trace id links to (`telemetry.trace_url`), when set
    let trace_url = state.engine.runtime().config.telemetry.as_ref().and_then(|t| t.trace_url.clone());
    json!({"role": s.who.role.as_str(), "team": s.who.team, "who": s.who.who, "csrf": s.csrf, "trace_url": trace_url})
}

/// `GET /ui/api/session`: who is signed in, and the CSRF token (401 without a session).
async fn session(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !served(&state) {
        return HttpResponse::NotFound().finish();
    }
    let result = state.console.get(&req).map(|s| shown(&s, &state)).ok_or(GatewayError::MissingKey);
    answer(&req, 200, result)
}

/// `DELETE /ui/api/session`: signs out.
async fn sign_out(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    state.console.close(&req);
    let mut gone =
        Cookie::build(COOKIE, "").path("/").http_only(true).secure(true).same_site(SameSite::Strict).finish();
    gone.make_removal();
    HttpResponse::Ok().cookie(gone).json(json!({"signed_out": true}))
}
