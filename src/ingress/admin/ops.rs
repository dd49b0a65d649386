//! What the console's operations pages read: the recent requests a guardrail acted on,
//! every key's batches, and the jobs' backlog by lane. A team admin or viewer sees their
//! team's keys' entries only.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_actors::GatewayError;

use super::{answer, roles};
use crate::app::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/guardrails/flagged", web::get().to(flagged))
        .route("/admin/batches", web::get().to(batches))
        .route("/admin/jobs", web::get().to(jobs));
}

#[derive(Deserialize)]
struct FlaggedQuery {
    /// Entries per page (default 50, at most 500).
    limit: Option<usize>,
    /// Entries older than this time (ms), for the next page.
    before: Option<u64>,
}

/// `GET /admin/guardrails/flagged?limit=50&before=MS`: the recent requests a guardrail
/// acted on, newest first (what each did and its scores; never the text).
async fn flagged(req: HttpRequest, q: web::Query<FlaggedQuery>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let who = roles::principal(&req, &state)?;
        // the records just answered are committed first
        state.engine.flush_ledger().await?;
        let teams = state.engine.teams_of_keys();
        let limit = q.limit.unwrap_or(50).clamp(1, 500);
        let page = state
            .engine
            .store()
            .flagged_page(q.before, limit, |e| who.sees_key(&e.key_id, &teams))
            .map_err(|e| GatewayError::Internal(format!("reading the flagged requests: {e}")))?;
        let next = (page.len() >= limit).then(|| page.last().map(|e| e.ts_ms)).flatten();
        Ok(json!({"object": "list", "data": page, "next_before": next}))
    }
    .await;
    answer(&req, 200, result)
}

#[derive(Deserialize)]
struct BatchesQuery {
    /// Batches per page (default 20, at most 100).
    limit: Option<usize>,
    /// The last batch id of the previous page.
    after: Option<String>,
}

/// `GET /admin/batches?limit=20&after=ID`: every key's batches (a team's, for a team
/// admin or viewer), newest first, each with its owner, lane and request counts.
async fn batches(req: HttpRequest, q: web::Query<BatchesQuery>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let who = roles::principal(&req, &state)?;
        let teams = state.engine.teams_of_keys();
        let limit = q.limit.unwrap_or(20).clamp(1, 100);
        let keep = |b: &crate::ingress::batch::BatchRecord| match &b.owner_team {
            Some(team) => who.sees(Some(team)),
            None => who.sees_key(&b.owner, &teams),
        };
        state.batch.list_all(keep, limit, q.after.as_deref()).await
    }
    .await;
    answer(&req, 200, result)
}

/// `GET /admin/jobs`: the durable jobs' backlog by lane (pending, in progress,
/// redelivered), read from the lanes' JetStream consumers.
async fn jobs(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let result: Result<Value, GatewayError> = async {
        roles::principal(&req, &state)?;
        state.batch.backlog().await
    }
    .await;
    answer(&req, 200, result)
}
