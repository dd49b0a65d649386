//! `GET /admin/logs` and `GET /admin/logs/{request_id}`: the request logs (keys, teams
//! or aliases with `log_requests`) read back from `<PREFIX>_LOGS` for the console, a page
//! at a time, newest first; a team admin or viewer reads their team's keys' entries.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_actors::GatewayError;

use super::{answer, roles};
use crate::app::AppState;
use crate::ingress::nats::logs_read;
use crate::ingress::nats::streams::Names;

/// The most stream sequences one page reads back (then it says where to go on).
const SCAN: u64 = 20_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/logs", web::get().to(list)).route("/admin/logs/{request_id}", web::get().to(get));
}

/// The logs stream, or `None` when request logs were never on.
async fn stream(state: &AppState) -> Result<Option<(async_nats::jetstream::stream::Stream, Names)>, GatewayError> {
    let (Some(client), Some(cfg)) = (&state.nats, state.engine.runtime().config.nats.clone()) else {
        return Err(GatewayError::Unavailable("request logs need `[nats]` (JetStream) in the config".into()));
    };
    let names = Names::new(&cfg);
    let js = async_nats::jetstream::new(client.clone());
    match js.get_stream(&names.logs_stream).await {
        Ok(s) => Ok(Some((s, names))),
        Err(e)
            if matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            Ok(None)
        }
        Err(e) => Err(GatewayError::Unavailable(format!("stream {}: {e}", names.logs_stream))),
    }
}

#[derive(Deserialize)]
struct LogsQuery {
    /// One key's entries.
    key: Option<String>,
    /// Entries per page (default 50, at most 200).
    limit: Option<usize>,
    /// Entries before this stream sequence, for the next page.
    before: Option<u64>,
}

/// `GET /admin/logs?key=ID&limit=50&before=SEQ`
async fn list(req: HttpRequest, q: web::Query<LogsQuery>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let who = roles::principal(&req, &state)?;
        let teams = state.engine.teams_of_keys();
        if q.key.as_deref().is_some_and(|k| !who.sees_key(k, &teams)) {
            return Err(GatewayError::NotFound);
        }
        let Some((stream, names)) = stream(&state).await? else {
            return Ok(json!({"object": "list", "data": [], "enabled": false, "next_before": null}));
        };
        let limit = q.limit.unwrap_or(50).clamp(1, 200);
        let keep = |v: &Value| v["record"]["key_id"].as_str().is_some_and(|k| who.sees_key(k, &teams));
        let page = logs_read::page(&stream, &names, q.key.as_deref(), q.before, limit, SCAN, keep)
            .await
            .map_err(|e| GatewayError::Unavailable(format!("reading the request logs: {e}")))?;
        Ok(json!({"object": "list", "data": page.entries, "enabled": true, "next_before": page.next_before}))
    }
    .await;
    answer(&req, 200, result)
}

/// `GET /admin/logs/{request_id}`
async fn get(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let who = roles::principal(&req, &state)?;
        let Some((stream, names)) = stream(&state).await? else { return Err(GatewayError::NotFound) };
        let entry = logs_read::one(&stream, &names, &path)
            .await
            .map_err(|e| GatewayError::Unavailable(format!("reading the request logs: {e}")))?
            .ok_or(GatewayError::NotFound)?;
        let teams = state.engine.teams_of_keys();
        let key_id = entry["record"]["key_id"].as_str().unwrap_or_default();
        if !who.sees_key(key_id, &teams) {
            return Err(GatewayError::NotFound);
        }
        Ok(entry)
    }
    .await;
    answer(&req, 200, result)
}
