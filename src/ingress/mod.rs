//! How requests get in.

pub mod admin;
pub mod batch;
pub mod http;
pub mod nats;
pub mod respond;
pub mod responses;

use actix_web::web;
use switchyard_actors::GatewayError;

/// Every route, in one place.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // a query actix cannot read (a repeated `by=`, a wrong type) is answered in the API's
    // error shape too, not in actix's plain text
    let query = web::QueryConfig::default().error_handler(|e, req| {
        let message = format!("invalid query string: {e}");
        let answer = respond::simple_error(&respond::request_id(req), GatewayError::BadRequest(message));
        actix_web::error::InternalError::from_response(e, answer).into()
    });
    cfg.app_data(query)
        .route("/v1/chat/completions", web::post().to(http::chat))
        .route("/v1/embeddings", web::post().to(http::embeddings))
        .route("/v1/messages", web::post().to(http::messages))
        .route("/v1/messages/count_tokens", web::post().to(http::count_tokens))
        .route("/v1/moderations", web::post().to(http::moderations))
        .route("/v1/feedback", web::post().to(http::feedback))
        .route("/v1/models", web::get().to(http::models))
        .route("/v1/models/{id}", web::get().to(http::model))
        .route("/metrics", web::get().to(http::metrics))
        .route("/healthz", web::get().to(http::healthz))
        .route("/readyz", web::get().to(http::readyz))
        .configure(admin::routes)
        .configure(batch::http::routes)
        .configure(responses::routes)
        .default_service(web::to(http::not_found));
}
