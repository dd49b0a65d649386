//! How requests get in.

pub mod admin;
pub mod batch;
pub mod console;
pub mod http;
pub mod nats;
pub mod respond;
pub mod responses;

use actix_web::web;
use switchyard_actors::GatewayError;

/// With traces on, an API request (`/v1/...`) runs under its span, `POST
/// /v1/chat/completions` (a child of the caller's `traceparent`), which gets the status;
/// the engine's steps hang under it. Off: one load and a pass-through.
pub fn traced<S>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<actix_web::dev::ServiceResponse, actix_web::Error>>
where
    S: actix_web::dev::Service<
        actix_web::dev::ServiceRequest,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    use futures_util::future::Either;
    use switchyard_actors::telemetry;
    use tracing::Instrument as _;
    if !telemetry::enabled() || !req.path().starts_with("/v1/") {
        return Either::Left(srv.call(req));
    }
    let name = format!("{} {}", req.method(), req.match_pattern().unwrap_or_else(|| "/v1/*".into()));
    let span = telemetry::request_span(&name, "server", respond::header(req.request()));
    let call = span.in_scope(|| srv.call(req));
    Either::Right(async move {
        let res = call.instrument(span.clone()).await;
        if let Ok(r) = &res {
            telemetry::record_status(&span, r.status().as_u16(), None);
        }
        res
    })
}

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
        .configure(console::routes)
        .configure(batch::http::routes)
        .configure(responses::routes)
        .default_service(web::to(http::not_found));
}
