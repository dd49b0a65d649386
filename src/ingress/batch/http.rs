//! HTTP handlers of the Batch API: `/v1/files` and `/v1/batches`, thin over [`BatchApi`].

use std::sync::Arc;

use actix_multipart::Multipart;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Deserialize;
use switchyard_actors::pipeline::KeyEntry;
use switchyard_actors::GatewayError;
use switchyard_config::Priority;

use super::CreateBatch;
use crate::app::AppState;
use crate::ingress::respond::{authenticate, header, names, read_body, reply, request_id, set, simple_error};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/files", web::post().to(upload))
        .route("/v1/files/{id}", web::get().to(file))
        .route("/v1/files/{id}/content", web::get().to(file_content))
        .route("/v1/batches", web::post().to(create))
        .route("/v1/batches", web::get().to(list))
        .route("/v1/batches/{id}", web::get().to(get))
        .route("/v1/batches/{id}/cancel", web::post().to(cancel));
}

/// The key of the request, which must be allowed the `batch` API.
fn caller(req: &HttpRequest, state: &AppState) -> Result<Arc<KeyEntry>, GatewayError> {
    let key = authenticate(req, &state.engine.runtime())?;
    key.check_api(switchyard_config::Api::Batch)?;
    Ok(key)
}

/// `POST /v1/files`: multipart with `purpose` and `file`.
async fn upload(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let key = match caller(&req, &state) {
        Ok(k) => k,
        Err(e) => return simple_error(&request_id(&req), e),
    };
    let Some(limit) = state.batch.files_max_bytes() else {
        return reply(
            &req,
            Err(GatewayError::Unavailable("the Batch API needs `[nats]` (JetStream) in the config".into())),
        );
    };
    let result = async {
        let timeout = state.engine.runtime().config.server.body_timeout;
        let form = tokio::time::timeout(timeout, read_form(&req, payload, limit)).await;
        let (purpose, filename, data) = form.map_err(|_| GatewayError::BodyTimeout(timeout))??;
        state.batch.put_file(&key.id, &filename, &purpose, data).await
    }
    .await;
    reply(&req, result)
}

/// Reads `purpose` and `file` from a multipart form, the file up to `limit` bytes.
async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(String, String, Bytes), GatewayError> {
    let declared =
        req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    // the form's own overhead is small; a body far beyond the file limit is refused unread
    if declared.is_some_and(|n| n > limit + 64 * 1024) {
        return Err(GatewayError::TooLarge(limit));
    }
    let mut form = Multipart::new(req.headers(), payload);
    let (mut purpose, mut file) = (None, None);
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| GatewayError::BadRequest(format!("invalid multipart body: {e}")))?;
        let name = field.name().unwrap_or_default().to_string();
        let filename = field.content_disposition().and_then(|d| d.get_filename()).unwrap_or("upload.jsonl").to_string();
        let cap = if name == "file" { limit } else { 1024 };
        let mut buf = BytesMut::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| GatewayError::BadRequest(format!("invalid multipart body: {e}")))?;
            if buf.len() + chunk.len() > cap {
                return Err(if name == "file" {
                    GatewayError::TooLarge(limit)
                } else {
                    GatewayError::BadRequest(format!("form field `{name}` is too long"))
                });
            }
            buf.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "purpose" => purpose = Some(String::from_utf8_lossy(&buf).trim().to_string()),
            "file" => file = Some((filename, buf.freeze())),
            _ => {}
        }
    }
    let purpose = purpose.ok_or_else(|| GatewayError::BadRequest("the form has no `purpose` field".into()))?;
    let (filename, data) = file.ok_or_else(|| GatewayError::BadRequest("the form has no `file` field".into()))?;
    Ok((purpose, filename, data))
}

async fn file(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let key = caller(&req, &state)?;
        state.batch.file(&key.id, &path).await
    }
    .await;
    reply(&req, result)
}

async fn file_content(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let key = match caller(&req, &state) {
        Ok(k) => k,
        Err(e) => return simple_error(&request_id(&req), e),
    };
    match state.batch.file_content(&key.id, &path).await {
        Ok(bytes) => {
            let mut b = HttpResponse::Ok();
            set(&mut b, names::X_REQUEST_ID, &request_id(&req));
            b.content_type("application/jsonl").body(bytes)
        }
        Err(e) => simple_error(&request_id(&req), e),
    }
}

/// `POST /v1/batches`. The items run under the caller's key, in the lane its
/// `x-switchyard-priority` names, else the key's `batch_priority` (low by default).
async fn create(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let rt = state.engine.runtime();
    let key = match caller(&req, &state) {
        Ok(k) => k,
        Err(e) => return simple_error(&request_id(&req), e),
    };
    let result = async {
        let lane = match req.headers().get("x-switchyard-priority").map(|v| v.to_str().ok().and_then(Priority::parse)) {
            None => key.key.batch_priority,
            Some(Some(p)) => p,
            Some(None) => {
                return Err(GatewayError::BadRequest("`x-switchyard-priority` must be high, normal or low".into()))
            }
        };
        let body = read_body(&req, payload, rt.config.server.body_limit_bytes, rt.config.server.body_timeout).await?;
        let create: CreateBatch = serde_json::from_slice(&body)
            .map_err(|e| GatewayError::BadRequest(format!("invalid batch request: {e}")))?;
        // what every item carries: the forwarded headers; never the caller's credential
        // (any subscriber of the jobs' subjects would read it), the items run as the
        // batch's owner
        let lookup = header(&req);
        let mut headers = Vec::new();
        for name in &rt.forward_headers {
            if let Some(v) = lookup(name) {
                headers.push((name.clone(), v.to_string()));
            }
        }
        state.batch.create(&key.id, key.key.team.as_deref(), create, lane, &headers).await
    }
    .await;
    reply(&req, result)
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let key = match caller(&req, &state) {
        Ok(k) => k,
        Err(e) => return simple_error(&request_id(&req), e),
    };
    let query = match web::Query::<ListQuery>::from_query(req.query_string()) {
        Ok(q) => q,
        Err(e) => return simple_error(&request_id(&req), GatewayError::BadRequest(format!("invalid query: {e}"))),
    };
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    reply(&req, state.batch.list(&key.id, limit, query.after.as_deref()).await)
}

async fn get(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let key = caller(&req, &state)?;
        state.batch.get(&key.id, &path).await
    }
    .await;
    reply(&req, result)
}

async fn cancel(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let key = caller(&req, &state)?;
        state.batch.cancel(&key.id, &path).await
    }
    .await;
    reply(&req, result)
}
