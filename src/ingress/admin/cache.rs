//! `DELETE /admin/cache`: empty the response caches, whole or in part.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{admin, answer};
use crate::app::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/cache", web::delete().to(clear));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearQuery {
    /// Only this alias's entries.
    alias: Option<String>,
    /// Only the semantic cache's entries of this scope: `key:ID`, `team:ID` or `global`.
    scope: Option<String>,
}

/// `DELETE /admin/cache[?alias=A][&scope=S]`: removes every cached answer, or those of an
/// alias and/or a semantic-cache scope, and says how many of each cache went.
async fn clear(req: HttpRequest, q: web::Query<ClearQuery>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        admin(&req, &state)?;
        let q = q.into_inner();
        if let Some(s) = &q.scope {
            let known = s == "global" || s.starts_with("key:") || s.starts_with("team:");
            if !known {
                return Err(switchyard_actors::GatewayError::BadRequest(format!(
                    "`scope` must be key:ID, team:ID or global, not `{s}`"
                )));
            }
        }
        let (exact, semantic) = state.engine.clear_cache(q.alias.clone(), q.scope.clone()).await?;
        tracing::info!(alias = ?q.alias, scope = ?q.scope, exact, semantic, "cache cleared");
        let detail = json!({"alias": q.alias, "scope": q.scope, "exact": exact, "semantic": semantic});
        super::record(&req, &state, &super::roles::principal(&req, &state)?, "cache.clear", q.alias.as_deref(), detail);
        Ok(json!({"object": "cache.cleared", "exact": exact, "semantic": semantic}))
    }
    .await;
    answer(&req, 200, result)
}
