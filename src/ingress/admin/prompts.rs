//! `/admin/prompts*`: the prompt registry. Prompts from the config file are listed and
//! rendered but changed only in the file (409); the others are created, versioned,
//! labelled and rolled back here, each change with its actor in the audit trail
//! (`x-switchyard-actor`, default `admin`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use switchyard_actors::prompts::{Entry, Selector};
use switchyard_actors::GatewayError;
use switchyard_config::{Prompt, PromptVersion};

use super::roles::{principal, Principal};
use super::{actor, admin_body, answer, audited, json_body};
use crate::app::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/prompts", web::get().to(list))
        .route("/admin/prompts", web::post().to(create))
        .route("/admin/prompts/{id}", web::get().to(get))
        .route("/admin/prompts/{id}/versions", web::post().to(add_version))
        .route("/admin/prompts/{id}/labels/{label}", web::put().to(set_label))
        .route("/admin/prompts/{id}/labels/{label}", web::delete().to(remove_label))
        .route("/admin/prompts/{id}/rollback", web::post().to(rollback))
        .route("/admin/prompts/{id}/diff", web::get().to(diff))
        .route("/admin/prompts/{id}/render", web::post().to(render));
}

/// A prompt as the API shows it.
fn shown(e: &std::sync::Arc<Entry>) -> Value {
    let mut v = serde_json::to_value(&e.prompt).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("object".into(), json!("prompt"));
        o.insert("source".into(), json!(if e.from_config { "config" } else { "api" }));
        o.insert("latest_version".into(), json!(e.prompt.versions.len()));
        o.insert("audit".into(), serde_json::to_value(&e.audit).unwrap_or_default());
        o.insert("updated_ms".into(), json!(e.updated_ms));
    }
    v
}

fn entry(state: &AppState, id: &str) -> Result<std::sync::Arc<Entry>, GatewayError> {
    state.engine.prompts().get(id).ok_or_else(|| GatewayError::Missing(format!("no prompt `{id}`")))
}

/// Whether `who` sees prompt `e`: an admin every prompt, a team admin or viewer their
/// team's.
fn sees(who: &Principal, e: &Entry) -> bool {
    who.sees(e.prompt.team.as_deref())
}

/// The prompt `id` as `who` may read it (another team's is not there).
fn visible(state: &AppState, who: &Principal, id: &str) -> Result<std::sync::Arc<Entry>, GatewayError> {
    entry(state, id).and_then(|e| {
        if sees(who, &e) {
            Ok(e)
        } else {
            Err(GatewayError::Missing(format!("no prompt `{id}`")))
        }
    })
}

/// The prompt `id` as `who` may change it: an admin any, a team admin their team's.
fn changeable(state: &AppState, who: &Principal, id: &str) -> Result<std::sync::Arc<Entry>, GatewayError> {
    who.require_write()?;
    visible(state, who, id)
}

/// The caller who may change a prompt, and the request's JSON body (`None` when empty).
async fn writer<T: for<'de> Deserialize<'de>>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(Principal, Option<T>), GatewayError> {
    let who = principal(req, state)?;
    who.require_write()?;
    let body = admin_body(req, payload, state).await?;
    Ok((who, if body.is_empty() { None } else { Some(json_body(&body)?) }))
}

fn required<T>(body: Option<T>) -> Result<T, GatewayError> {
    body.ok_or_else(|| GatewayError::BadRequest("a JSON body is required".into()))
}

/// `GET /admin/prompts`: every prompt with its labels (no audit trail).
async fn list(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let result = (|| {
        let who = principal(&req, &state)?;
        let data: Vec<Value> = state
            .engine
            .prompts()
            .list()
            .iter()
            .filter(|e| sees(&who, e))
            .map(|e| {
                json!({"object": "prompt", "id": e.prompt.id, "description": e.prompt.description, "team": e.prompt.team,
                    "source": if e.from_config { "config" } else { "api" },
                    "latest_version": e.prompt.versions.len(), "labels": e.prompt.labels, "updated_ms": e.updated_ms})
            })
            .collect();
        Ok(json!({"object": "list", "data": data}))
    })();
    answer(&req, 200, result)
}

/// `GET /admin/prompts/{id}`: versions, labels and the audit trail.
async fn get(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let result = (|| {
        let who = principal(&req, &state)?;
        Ok(shown(&visible(&state, &who, &path)?))
    })();
    answer(&req, 200, result)
}

/// `POST /admin/prompts`: a new prompt (`{"id", "versions": [...], "labels": {...}}`).
async fn create(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let (who, body) = writer::<Prompt>(&req, payload, &state).await?;
        let mut prompt = required(body)?;
        let config = state.engine.runtime().config.clone();
        // a team admin's prompt is of their team; a team must be one of `[[teams]]`
        prompt.team = who.team_of_new(prompt.team.take())?;
        if let Some(t) = prompt.team.as_ref().filter(|t| !config.teams.iter().any(|x| &x.id == *t)) {
            return Err(GatewayError::BadRequest(format!("no team `{t}` in [[teams]]")));
        }
        let id = prompt.id.clone();
        state.engine.prompts().create(prompt, &actor(&req, &state), &config).await?;
        audited(&req, &state, "prompts.create", &id, json!({}));
        Ok(shown(&entry(&state, &id)?))
    }
    .await;
    answer(&req, 201, result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewVersion {
    #[serde(flatten)]
    version: PromptVersion,
    /// Labels moved to the new version at once.
    #[serde(default)]
    labels: Vec<String>,
}

/// `POST /admin/prompts/{id}/versions`: the next version (`{"messages", "model"?,
/// "params"?, "variables"?, "note"?, "labels"?: [...]}`).
async fn add_version(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let result = async {
        let (who, body) = writer::<NewVersion>(&req, payload, &state).await?;
        let nv = required(body)?;
        changeable(&state, &who, &path)?;
        let config = state.engine.runtime().config.clone();
        let prompts = state.engine.prompts();
        let (_, n) = prompts.add_version(&path, nv.version, &nv.labels, &actor(&req, &state), &config).await?;
        audited(&req, &state, "prompts.add_version", &path, json!({"version": n, "labels": nv.labels}));
        let mut v = shown(&entry(&state, &path)?);
        if let Some(o) = v.as_object_mut() {
            o.insert("version".into(), json!(n));
        }
        Ok(v)
    }
    .await;
    answer(&req, 201, result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelBody {
    version: u32,
}

/// `PUT /admin/prompts/{id}/labels/{label}` `{"version": N}`: the label moves at once.
async fn set_label(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let result = async {
        let (who, body) = writer::<LabelBody>(&req, payload, &state).await?;
        let b = required(body)?;
        let (id, label) = path.into_inner();
        changeable(&state, &who, &id)?;
        let config = state.engine.runtime().config.clone();
        state.engine.prompts().set_label(&id, &label, Some(b.version), &actor(&req, &state), &config).await?;
        audited(&req, &state, "prompts.set_label", &id, json!({"label": label, "version": b.version}));
        Ok(shown(&entry(&state, &id)?))
    }
    .await;
    answer(&req, 200, result)
}

/// `DELETE /admin/prompts/{id}/labels/{label}`
async fn remove_label(req: HttpRequest, path: web::Path<(String, String)>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let who = principal(&req, &state)?;
        let (id, label) = path.into_inner();
        changeable(&state, &who, &id)?;
        let config = state.engine.runtime().config.clone();
        state.engine.prompts().set_label(&id, &label, None, &actor(&req, &state), &config).await?;
        audited(&req, &state, "prompts.remove_label", &id, json!({"label": label}));
        Ok(shown(&entry(&state, &id)?))
    }
    .await;
    answer(&req, 200, result)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    label: Option<String>,
}

/// `POST /admin/prompts/{id}/rollback` `{"label": "production"}` (the default): the label
/// goes back to the version it pointed at before its last move.
async fn rollback(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let result = async {
        let (who, body) = writer::<RollbackBody>(&req, payload, &state).await?;
        let b = body.unwrap_or_default();
        let label = b.label.unwrap_or_else(|| switchyard_actors::prompts::DEFAULT_LABEL.to_string());
        let e = changeable(&state, &who, &path)?;
        let last = e.audit.iter().rev().find(|a| a.action == "label" && a.label.as_deref() == Some(label.as_str()));
        let Some(to) = last.and_then(|a| a.from) else {
            return Err(GatewayError::BadRequest(format!(
                "label `{label}` of prompt `{path}` has no earlier version to go back to"
            )));
        };
        let config = state.engine.runtime().config.clone();
        state.engine.prompts().set_label(&path, &label, Some(to), &actor(&req, &state), &config).await?;
        audited(&req, &state, "prompts.rollback", &path, json!({"label": label, "version": to}));
        Ok(shown(&entry(&state, &path)?))
    }
    .await;
    answer(&req, 200, result)
}

#[derive(Deserialize)]
struct DiffQuery {
    from: u32,
    to: u32,
}

/// A version as text, for a line diff.
fn as_text(v: &PromptVersion) -> String {
    let mut out = String::new();
    for m in &v.messages {
        out.push_str(&format!("[{}]\n{}\n", m.role, m.content.trim_end_matches('\n')));
    }
    if let Some(m) = &v.model {
        out.push_str(&format!("model: {m}\n"));
    }
    for (k, p) in &v.params {
        out.push_str(&format!("params.{k}: {p}\n"));
    }
    for (k, t) in &v.variables {
        out.push_str(&format!("variables.{k}: {t}\n"));
    }
    out
}

/// `GET /admin/prompts/{id}/diff?from=1&to=2`: a unified diff of two versions.
async fn diff(
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<DiffQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let result = (|| {
        let who = principal(&req, &state)?;
        let e = visible(&state, &who, &path)?;
        let version = |n: u32| {
            n.checked_sub(1)
                .and_then(|i| e.prompt.versions.get(i as usize))
                .map(as_text)
                .ok_or_else(|| GatewayError::BadRequest(format!("prompt `{path}` has no version {n}")))
        };
        let (a, b) = (version(q.from)?, version(q.to)?);
        let text = similar::TextDiff::from_lines(&a, &b)
            .unified_diff()
            .header(&format!("{path}@{}", q.from), &format!("{path}@{}", q.to))
            .to_string();
        Ok(json!({"object": "prompt.diff", "id": *path, "from": q.from, "to": q.to, "diff": text}))
    })();
    answer(&req, 200, result)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RenderBody {
    version: Option<u32>,
    label: Option<String>,
    #[serde(default)]
    variables: Map<String, Value>,
}

/// `POST /admin/prompts/{id}/render` `{"version"|"label", "variables"}`: the messages a
/// request would get, without calling anything.
async fn render(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let result = async {
        let who = principal(&req, &state)?;
        visible(&state, &who, &path)?;
        let body = admin_body(&req, payload, &state).await?;
        let b: RenderBody = if body.is_empty() { RenderBody::default() } else { json_body(&body)? };
        let sel = match (b.version, b.label) {
            (Some(_), Some(_)) => return Err(GatewayError::BadRequest("give `version` or `label`, not both".into())),
            (Some(n), None) => Selector::Version(n),
            (None, Some(l)) => Selector::Label(l),
            (None, None) => Selector::Default,
        };
        let v = entry(&state, &path)?.select(&sel)?;
        let messages: Vec<Value> = v
            .render(&path, &b.variables)?
            .into_iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
        Ok(json!({"object": "prompt.render", "id": *path, "version": v.version, "model": v.spec.model,
            "params": v.spec.params, "messages": messages}))
    }
    .await;
    answer(&req, 200, result)
}
