//! `/admin/experiments*`: experiments from the config file and the admin API, their
//! status (start, pause, stop), the report per variant, and promotion (the winning
//! variant's prompt version gets the label, and the experiment stops).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_actors::prompts::experiments::Entry;
use switchyard_actors::GatewayError;
use switchyard_config::Experiment;

use super::{actor, admin, admin_json_required, answer, audited};
use crate::app::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/experiments", web::get().to(list))
        .route("/admin/experiments", web::post().to(create))
        .route("/admin/experiments/{id}", web::get().to(get))
        .route("/admin/experiments/{id}/promote", web::post().to(promote))
        .route("/admin/experiments/{id}/{action}", web::post().to(set_status));
}

fn shown(e: &std::sync::Arc<Entry>) -> Value {
    let mut v = serde_json::to_value(&e.experiment).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("object".into(), json!("experiment"));
        o.insert("source".into(), json!(if e.from_config { "config" } else { "api" }));
        o.insert("audit".into(), serde_json::to_value(&e.audit).unwrap_or_default());
    }
    v
}

fn entry(state: &AppState, id: &str) -> Result<std::sync::Arc<Entry>, GatewayError> {
    state.engine.experiments().get(id).ok_or_else(|| GatewayError::Missing(format!("no experiment `{id}`")))
}

/// `GET /admin/experiments`
async fn list(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let result = (|| {
        admin(&req, &state)?;
        let data: Vec<Value> = state.engine.experiments().list().iter().map(shown).collect();
        Ok(json!({"object": "list", "data": data}))
    })();
    answer(&req, 200, result)
}

/// `POST /admin/experiments`: a new experiment (the shape of `[[experiments]]`).
async fn create(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let e: Experiment = admin_json_required(&req, payload, &state).await?;
        let id = e.id.clone();
        let config = state.engine.runtime().config.clone();
        state.engine.experiments().create(e, &actor(&req, &state), &config, state.engine.prompts()).await?;
        audited(&req, &state, "experiments.create", &id, json!({}));
        Ok(shown(&entry(&state, &id)?))
    }
    .await;
    answer(&req, 201, result)
}

/// The experiment's report from its records beside the ledger (committed first, so it includes the
/// requests just answered) and the feedback.
async fn report(state: &AppState, e: &std::sync::Arc<Entry>) -> Result<Value, GatewayError> {
    state.engine.flush_ledger().await?;
    let engine = state.engine.clone();
    let since = e.audit.first().map_or(0, |a| a.at_ms.saturating_sub(1000));
    let experiment = e.experiment.clone();
    tokio::task::spawn_blocking(move || {
        use switchyard_actors::prompts::{feedback, report::Tally};
        let store = engine.store();
        let mut tally = Tally::new(&experiment);
        store
            .visit_experiment(&experiment.id, since, |r| tally.add(&r, |key, id| feedback::score(store, key, id)))
            .map_err(|e| GatewayError::Internal(format!("reading the ledger: {e}")))?;
        Ok(tally.finish())
    })
    .await
    .map_err(|e| GatewayError::Internal(e.to_string()))?
}

/// `GET /admin/experiments/{id}`: the definition and the report per variant.
async fn get(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        admin(&req, &state)?;
        let e = entry(&state, &path)?;
        let mut v = shown(&e);
        v["report"] = report(&state, &e).await?;
        Ok(v)
    }
    .await;
    answer(&req, 200, result)
}

/// `POST /admin/experiments/{id}/start|pause|stop`
async fn set_status(req: HttpRequest, path: web::Path<(String, String)>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        admin(&req, &state)?;
        let (id, action) = path.into_inner();
        let status = match action.as_str() {
            "start" => "running",
            "pause" => "paused",
            "stop" => "stopped",
            other => return Err(GatewayError::Missing(format!("no action `{other}` (start, pause, stop, promote)"))),
        };
        let config = state.engine.runtime().config.clone();
        let who = actor(&req, &state);
        state.engine.experiments().set_status(&id, status, &who, &config, state.engine.prompts()).await?;
        audited(&req, &state, &format!("experiments.{action}"), &id, json!({"status": status}));
        Ok(shown(&entry(&state, &id)?))
    }
    .await;
    answer(&req, 200, result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Promote {
    variant: String,
    /// The prompt label that moves to the variant's version (default `production`).
    #[serde(default)]
    label: Option<String>,
}

/// `POST /admin/experiments/{id}/promote` `{"variant", "label"?}`: the variant's prompt
/// version gets the label (every request naming the prompt gets it from now on), and
/// the experiment stops. Answers the final report.
async fn promote(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let result = async {
        let p: Promote = admin_json_required(&req, payload, &state).await?;
        let e = entry(&state, &path)?;
        let x = &e.experiment;
        let v =
            x.variants.iter().find(|v| v.name == p.variant).ok_or_else(|| {
                GatewayError::BadRequest(format!("experiment `{}` has no variant `{}`", x.id, p.variant))
            })?;
        let no_version = || {
            GatewayError::BadRequest(format!(
                "variant `{}` serves no prompt version: point clients or a route at its alias instead",
                v.name
            ))
        };
        let prompt = x.prompt.as_deref().ok_or_else(no_version)?;
        let prompts = state.engine.prompts();
        let version = match (v.prompt_version, &v.prompt_label) {
            (Some(n), _) => n,
            (None, Some(l)) => {
                prompts.resolve(prompt, &switchyard_actors::prompts::Selector::Label(l.clone()))?.version
            }
            (None, None) => return Err(no_version()),
        };
        let label = p.label.unwrap_or_else(|| switchyard_actors::prompts::DEFAULT_LABEL.to_string());
        let config = state.engine.runtime().config.clone();
        let who = actor(&req, &state);
        prompts.set_label(prompt, &label, Some(version), &who, &config).await?;
        state.engine.experiments().set_status(&x.id, "stopped", &who, &config, prompts).await?;
        let detail = json!({"variant": v.name, "prompt": prompt, "label": label, "version": version});
        audited(&req, &state, "experiments.promote", &x.id, detail);
        let e = entry(&state, &path)?;
        let mut out = shown(&e);
        out["promoted"] = json!({"variant": v.name, "prompt": prompt, "label": label, "version": version});
        out["report"] = report(&state, &e).await?;
        Ok(out)
    }
    .await;
    answer(&req, 200, result)
}
