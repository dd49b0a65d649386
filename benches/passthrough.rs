//! The floor of the HTTP stacks the gateway is built on, for `FLOOR=1 ops/bench.sh`:
//! actix-web in front, a pooled reqwest client behind (one per worker thread, as in the
//! gateway, with the same settings), and nothing in between. It forwards a POST's body
//! to `UPSTREAM` + the request's path and answers with the upstream's status and body.
//! No auth, limits, routing, token counting or ledger: what is left of the gateway's
//! added latency once those are gone is the two HTTP hops themselves.
//!
//! `passthrough ADDR UPSTREAM [WORKERS]`, e.g.
//! `passthrough 127.0.0.1:9000 http://127.0.0.1:9001 2`.

use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

thread_local! {
    static CLIENT: Option<reqwest::Client> = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(512)
        .tcp_nodelay(true)
        .build()
        .ok();
}

struct Upstream(String);

async fn forward(req: HttpRequest, body: Bytes, upstream: web::Data<Upstream>) -> HttpResponse {
    let Some(client) = CLIENT.with(Clone::clone) else {
        return HttpResponse::InternalServerError().body("no http client");
    };
    let url = format!("{}{}", upstream.0, req.path());
    let sent = client.post(url).header("content-type", "application/json").body(body).send().await;
    let reply = match sent {
        Ok(r) => r,
        Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
    };
    let status = actix_web::http::StatusCode::from_u16(reply.status().as_u16())
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    match reply.bytes().await {
        Ok(b) => HttpResponse::build(status).content_type("application/json").body(b),
        Err(e) => HttpResponse::BadGateway().body(e.to_string()),
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(upstream)) = (args.get(1).cloned(), args.get(2).cloned()) else {
        eprintln!("usage: passthrough ADDR UPSTREAM [WORKERS]");
        std::process::exit(2);
    };
    let workers = args.get(3).and_then(|w| w.parse().ok()).unwrap_or(1);
    actix_web::rt::System::new().block_on(async move {
        let upstream = web::Data::new(Upstream(upstream.trim_end_matches('/').to_string()));
        HttpServer::new(move || App::new().app_data(upstream.clone()).default_service(web::post().to(forward)))
            .workers(workers)
            .bind(addr)?
            .run()
            .await
    })
}
