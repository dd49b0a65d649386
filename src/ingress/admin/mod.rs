//! `/admin/*` (admin credential only): config reload, virtual keys, usage and spend
//! reports read from the ledger, and prompts (`prompts`).

mod cache;
mod config_view;
mod experiments;
mod logs;
mod ops;
mod prompts;
pub mod roles;

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use switchyard_actors::pipeline::vkeys::VirtualKey;
use switchyard_actors::GatewayError;

use super::respond::{names, read_body, request_id, set, simple_error};
use crate::app::{reload, AppState};
use crate::usage::{aggregate, aggregate_totals, from_totals, rollup_for, GroupBy};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/reload", web::post().to(admin_reload))
        .route("/admin/keys", web::post().to(create_key))
        .route("/admin/keys", web::get().to(list_keys))
        .route("/admin/keys/{id}", web::patch().to(update_key))
        .route("/admin/keys/{id}", web::delete().to(revoke_key))
        .route("/admin/usage", web::get().to(usage))
        .route("/admin/audit", web::get().to(audit))
        .configure(cache::routes)
        .configure(config_view::routes)
        .configure(prompts::routes)
        .configure(experiments::routes)
        .configure(ops::routes)
        .configure(logs::routes);
}

/// The admin credential or a console session with the admin role, or the error to
/// answer (404 when the admin API is off).
pub(super) fn admin(req: &HttpRequest, state: &AppState) -> Result<(), GatewayError> {
    roles::principal(req, state)?.require_admin()
}

pub(super) fn answer(req: &HttpRequest, status: u16, result: Result<Value, GatewayError>) -> HttpResponse {
    match result {
        Ok(v) => {
            let mut b = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default());
            set(&mut b, names::X_REQUEST_ID, &request_id(req));
            b.json(v)
        }
        Err(e) => simple_error(&request_id(req), e),
    }
}

/// A key as the API shows it.
fn shown(k: &VirtualKey) -> Value {
    let mut v = serde_json::to_value(k).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("object".into(), json!("virtual_key"));
        o.insert("revoked".into(), json!(k.revoked_ms.is_some()));
    }
    v
}

/// `POST /admin/reload`
async fn admin_reload(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let request_id = request_id(&req);
    let who = match roles::principal(&req, &state).and_then(|p| p.require_admin().map(|()| p)) {
        Ok(p) => p,
        Err(e) => return simple_error(&request_id, e),
    };
    match reload(&state).await {
        Ok(()) => {
            record(&req, &state, &who, "config.reload", None, json!({}));
            HttpResponse::Ok().json(json!({"status": "reloaded"}))
        }
        Err(errs) => {
            let fields: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
            let mut b = HttpResponse::BadRequest();
            set(&mut b, names::X_REQUEST_ID, &request_id);
            b.json(json!({"error": {
                "message": format!("invalid config, the old one keeps serving: {}", fields.join("; ")),
                "type": "invalid_request_error", "code": "invalid_config", "param": null,
                "fields": fields,
            }}))
        }
    }
}

/// An admin request's body, read after its credential was checked, bounded as every body.
pub(super) async fn admin_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<bytes::Bytes, GatewayError> {
    let server = &state.engine.runtime().config.server;
    read_body(req, payload, server.body_limit_bytes, server.body_timeout).await
}

/// The admin credential checked, then the body read and parsed as `T`; an empty body
/// is `None`.
pub(super) async fn admin_json<T: for<'de> Deserialize<'de>>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Option<T>, GatewayError> {
    admin(req, state)?;
    let body = admin_body(req, payload, state).await?;
    if body.is_empty() {
        return Ok(None);
    }
    json_body(&body).map(Some)
}

/// [`admin_json`] for a body that must be there.
pub(super) async fn admin_json_required<T: for<'de> Deserialize<'de>>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<T, GatewayError> {
    admin_json(req, payload, state).await?.ok_or_else(|| GatewayError::BadRequest("a JSON body is required".into()))
}

/// Writes a change to the audit trail: who (the `x-switchyard-actor` header, else the
/// caller), what, to what.
pub(super) fn record(
    req: &HttpRequest,
    state: &AppState,
    who: &roles::Principal,
    action: &str,
    target: Option<&str>,
    detail: Value,
) {
    let actor = match req.headers().get("x-switchyard-actor") {
        Some(_) => actor(req, state),
        None => who.who.clone(),
    };
    state.engine.store().audit(&actor, action, target, detail);
}

/// Who made a change (free text: an email, a CI job), for audit trails:
/// `x-switchyard-actor`, default `admin`.
/// `x-switchyard-actor` when sent, else the caller (`admin`, or a console session's
/// `console:…`).
pub(super) fn actor(req: &HttpRequest, state: &AppState) -> String {
    match req.headers().get("x-switchyard-actor").and_then(|v| v.to_str().ok()) {
        Some(v) => v.chars().filter(|c| !c.is_control()).take(200).collect(),
        None => roles::principal(req, state).map_or_else(|_| "admin".to_string(), |p| p.who),
    }
}

/// A change made through the admin API, in the audit trail with its [`actor`].
pub(super) fn audited(req: &HttpRequest, state: &AppState, action: &str, target: &str, detail: Value) {
    state.engine.store().audit(&actor(req, state), action, Some(target), detail);
}

pub(super) fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, GatewayError> {
    serde_json::from_slice(body).map_err(|e| GatewayError::BadRequest(format!("invalid JSON body: {e}")))
}

/// `POST /admin/keys`: the new key, with its secret (`key`), shown this once. A team
/// admin's key is of their team.
async fn create_key(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        // the credential first: nothing is read of a body an unknown caller sends
        let who = roles::principal(&req, &state)?;
        who.require_write()?;
        let mut vk: VirtualKey = json_body(&admin_body(&req, payload, &state).await?)?;
        vk.team = who.team_of_new(vk.team.take())?;
        let config = state.engine.runtime().config.clone();
        let (vk, secret) = state.engine.virtual_keys().create(vk, &config).await?;
        let mut v = shown(&vk);
        record(&req, &state, &who, "keys.create", Some(&vk.id), v.clone());
        if let Some(o) = v.as_object_mut() {
            o.insert("key".into(), json!(secret));
        }
        Ok(v)
    }
    .await;
    answer(&req, 201, result)
}

/// `GET /admin/keys`: virtual keys (revoked ones too) and, read-only, the config's.
async fn list_keys(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let result = (|| {
        let who = roles::principal(&req, &state)?;
        let all = state.engine.virtual_keys().list()?;
        let virtual_keys: Vec<Value> = all.iter().filter(|k| who.sees(k.team.as_deref())).map(shown).collect();
        let rt = state.engine.runtime();
        let config_keys: Vec<Value> = rt
            .config
            .keys
            .iter()
            .filter(|k| who.sees(k.team.as_deref()))
            .map(|k| {
                json!({"object": "config_key", "id": k.id, "team": k.team, "models": k.models,
                "rpm": k.limits.rpm, "tpm": k.limits.tpm, "tpd": k.limits.tpd,
                "max_concurrent": k.limits.max_concurrent, "budget_usd": k.budget.map(|b| b.usd),
                "budget_period": k.budget.map(|b| b.period.as_str())})
            })
            .collect();
        Ok(json!({"object": "list", "data": virtual_keys, "config_keys": config_keys}))
    })();
    answer(&req, 200, result)
}

/// `PATCH /admin/keys/{id}`: the fields given replace the key's (`null` removes one).
async fn update_key(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let result = async {
        let who = roles::principal(&req, &state)?;
        own_key(&who, &state, &path)?;
        let patch: Map<String, Value> = json_body(&admin_body(&req, payload, &state).await?)?;
        if who.role != roles::Role::Admin && patch.contains_key("team") {
            return Err(GatewayError::Forbidden {
                code: "role_not_allowed",
                message: "a team admin cannot move a key to another team".into(),
            });
        }
        let config = state.engine.runtime().config.clone();
        let detail = Value::Object(patch.clone());
        let updated = shown(&state.engine.virtual_keys().update(&path, patch, &config).await?);
        record(&req, &state, &who, "keys.update", Some(&path), detail);
        Ok(updated)
    }
    .await;
    answer(&req, 200, result)
}

/// `DELETE /admin/keys/{id}`: revoked at once.
async fn revoke_key(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let who = roles::principal(&req, &state)?;
        own_key(&who, &state, &path)?;
        let config = state.engine.runtime().config.clone();
        let revoked = shown(&state.engine.virtual_keys().revoke(&path, &config).await?);
        record(&req, &state, &who, "keys.revoke", Some(&path), json!({}));
        Ok(revoked)
    }
    .await;
    answer(&req, 200, result)
}

/// A change of key `id`: a team admin's own team's keys only (another team's is a 404,
/// as if it were not there).
fn own_key(who: &roles::Principal, state: &AppState, id: &str) -> Result<(), GatewayError> {
    who.require_write()?;
    if who.role == roles::Role::Admin {
        return Ok(());
    }
    let keys = state.engine.virtual_keys().list()?;
    match keys.iter().find(|k| k.id == id) {
        Some(k) if who.sees(k.team.as_deref()) => Ok(()),
        _ => Err(GatewayError::NotFound),
    }
}

#[derive(Deserialize)]
struct AuditQuery {
    /// Entries per page (default 100, at most 1,000).
    limit: Option<usize>,
    /// Entries older than this time (ms), for the next page.
    before: Option<u64>,
}

/// `GET /admin/audit?limit=100&before=MS` (admins only): the audit trail, newest first.
async fn audit(req: HttpRequest, q: web::Query<AuditQuery>, state: web::Data<AppState>) -> HttpResponse {
    let result = (|| {
        admin(&req, &state)?;
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let page = state
            .engine
            .store()
            .audit_page(q.before, limit)
            .map_err(|e| GatewayError::Internal(format!("reading the audit trail: {e}")))?;
        let next = (page.len() >= limit).then(|| page.last().map(|e| e.ts_ms)).flatten();
        Ok(json!({"object": "list", "data": page, "next_before": next}))
    })();
    answer(&req, 200, result)
}

#[derive(Deserialize)]
struct UsageQuery {
    by: Option<String>,
    since: Option<String>,
    /// Rows per page (default 100, at most 1,000).
    limit: Option<usize>,
    /// The last group of the previous page.
    after: Option<String>,
}

/// `GET /admin/usage?by=key|team|model|provider|day|hour&since=7d&limit=100&after=GROUP`:
/// requests, errors, tokens, upstream calls and spend, a page of groups at a time. Read
/// from the hourly totals beside the ledger (`since` counts from the start of its hour);
/// by prompt or experiment, from the records.
async fn usage(req: HttpRequest, q: web::Query<UsageQuery>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let who = roles::principal(&req, &state)?;
        let by = match q.by.as_deref().unwrap_or("key") {
            "key" => GroupBy::Key,
            "team" => GroupBy::Team,
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "day" => GroupBy::Day,
            "hour" => GroupBy::Hour,
            "prompt" => GroupBy::Prompt,
            "experiment" => GroupBy::Experiment,
            other => {
                return Err(GatewayError::BadRequest(format!(
                    "`by` must be key, team, model, provider, day, hour, prompt or experiment, not `{other}`"
                )))
            }
        };
        let since_ms = match q.since.as_deref() {
            None => 0,
            Some(s) => {
                let d = humantime::parse_duration(s)
                    .map_err(|e| GatewayError::BadRequest(format!("`since`: `{s}` is not a duration like 7d: {e}")))?;
                switchyard_actors::types::unix_ms().saturating_sub(d.as_millis() as u64)
            }
        };
        // commit what is buffered, so the report includes the requests just answered
        state.engine.flush_ledger().await?;
        let engine = state.engine.clone();
        let teams: HashMap<String, String> = engine.teams_of_keys();
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let rows = tokio::task::spawn_blocking(move || {
            // a team admin or viewer reads their team's keys' usage only
            let visible = |key_id: &str| who.sees_key(key_id, &teams);
            if from_totals(by) {
                rollup_for(engine.store(), since_ms, by).map(|mut totals| {
                    totals.retain(|t| visible(&t.key_id));
                    aggregate_totals(&totals, by, &teams)
                })
            } else {
                engine.store().usage_since(since_ms).map(|mut records| {
                    records.retain(|r| visible(&r.key_id));
                    aggregate(&records, by, &teams)
                })
            }
        })
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?
        .map_err(|e| GatewayError::Internal(format!("reading the ledger: {e}")))?;
        // groups in order; a page starts after the last group of the one before
        let mut page: Vec<_> = rows.into_iter().filter(|r| q.after.as_ref().is_none_or(|a| r.group > *a)).collect();
        let has_more = page.len() > limit;
        page.truncate(limit);
        let next = if has_more { page.last().map(|r| r.group.clone()) } else { None };
        Ok(json!({"object": "list", "by": q.by.as_deref().unwrap_or("key"), "data": page,
            "has_more": has_more, "next": next}))
    }
    .await;
    answer(&req, 200, result)
}
