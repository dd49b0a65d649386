//! How requests get in.

pub mod admin;
pub mod batch;
pub mod http;
pub mod nats;
pub mod respond;

use actix_web::web;

/// Every route, in one place.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/chat/completions", web::post().to(http::chat))
        .route("/v1/embeddings", web::post().to(http::embeddings))
        .route("/v1/messages", web::post().to(http::messages))
        .route("/v1/moderations", web::post().to(http::moderations))
        .route("/v1/models", web::get().to(http::models))
        .route("/metrics", web::get().to(http::metrics))
        .route("/healthz", web::get().to(http::healthz))
        .route("/readyz", web::get().to(http::readyz))
        .configure(admin::routes)
        .configure(batch::http::routes)
        .default_service(web::to(http::not_found));
}
