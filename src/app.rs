//! Wiring: load the config, install metrics, open the store, start the engine's actors,
//! run the HTTP server, reload on SIGHUP, flush the ledger on shutdown.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use switchyard_actors::metrics::{describe_all, CONFIG_RELOADS_TOTAL, HISTOGRAMS, LATENCY_BUCKETS, SIMILARITY_BUCKETS};
use switchyard_actors::pipeline::EngineThread;
use switchyard_actors::store::Store;
use switchyard_actors::Engine;
use switchyard_config::{Config, ConfigErrors};

use crate::ingress;

/// Shared by every HTTP worker.
pub struct AppState {
    pub engine: Arc<Engine>,
    /// The NATS connection when `[nats]` is configured.
    pub nats: Option<async_nats::Client>,
    /// The Batch API (answers 503 without `[nats]`).
    pub batch: Arc<ingress::batch::BatchApi>,
    /// Stored Responses API responses (local, or shared through NATS).
    pub responses: Arc<ingress::responses::store::ResponseStore>,
    pub metrics: PrometheusHandle,
    pub config_path: PathBuf,
    /// The web console's sessions.
    pub console: ingress::console::Sessions,
    /// The config file's text as it was last loaded (`GET /admin/config` masks it).
    pub config_text: std::sync::RwLock<String>,
}

fn install_metrics() -> Result<PrometheusHandle, String> {
    let mut b = PrometheusBuilder::new();
    for h in HISTOGRAMS {
        b = b.set_buckets_for_metric(Matcher::Full((*h).to_string()), LATENCY_BUCKETS).map_err(|e| e.to_string())?;
    }
    let similarity = Matcher::Full(switchyard_actors::metrics::SEMANTIC_CACHE_SIMILARITY.to_string());
    b = b.set_buckets_for_metric(similarity, SIMILARITY_BUCKETS).map_err(|e| e.to_string())?;
    let handle = b.install_recorder().map_err(|e| e.to_string())?;
    describe_all();
    Ok(handle)
}

/// Re-reads the config file and swaps it in; an invalid file leaves the old config serving.
pub async fn reload(state: &AppState) -> Result<(), ConfigErrors> {
    match switchyard_config::load(&state.config_path) {
        Ok(new) => {
            let old = state.engine.runtime().config.clone();
            if new.server.http_addr != old.server.http_addr || new.server.data_dir != old.server.data_dir {
                tracing::warn!("server.http_addr and server.data_dir take effect at the next restart");
            }
            if new.nats != old.nats {
                tracing::warn!("[nats] takes effect at the next restart");
            }
            if new.telemetry != old.telemetry {
                tracing::warn!("[telemetry] takes effect at the next restart");
            }
            if let Err(e) = state.engine.reload(new).await {
                tracing::error!(error = %e, "reload failed; the old config keeps serving");
                metrics::counter!(CONFIG_RELOADS_TOTAL, "result" => "failed").increment(1);
                return Err(ConfigErrors(vec![switchyard_config::ConfigError {
                    field: "<engine>".into(),
                    message: e.to_string(),
                }]));
            }
            if let Ok(text) = std::fs::read_to_string(&state.config_path) {
                *state.config_text.write().unwrap_or_else(std::sync::PoisonError::into_inner) = text;
            }
            metrics::counter!(CONFIG_RELOADS_TOTAL, "result" => "ok").increment(1);
            tracing::info!(path = %state.config_path.display(), "config reloaded");
            Ok(())
        }
        Err(errs) => {
            metrics::counter!(CONFIG_RELOADS_TOTAL, "result" => "invalid").increment(1);
            tracing::error!(errors = %errs, "new config is invalid; the old config keeps serving");
            Err(errs)
        }
    }
}

pub fn serve(path: &Path) -> ExitCode {
    let config = match switchyard_config::load(path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{}: invalid config", path.display());
            for e in &errs.0 {
                eprintln!("  {e}");
            }
            return ExitCode::from(2);
        }
    };
    // `[telemetry]` is read once: a reload does not change it
    let _telemetry = match crate::telemetry::init(config.telemetry.as_ref()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let metrics = match install_metrics() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("metrics: {e}");
            return ExitCode::from(1);
        }
    };
    let result = actix_web::rt::System::new().block_on(run(config, path.to_path_buf(), metrics));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::from(1)
        }
    }
}

/// Up to this many HTTP workers, the first one runs the engine's admission actors.
const HOSTED_ENGINE_MAX_WORKERS: usize = 2;

async fn run(config: Arc<Config>, config_path: PathBuf, metrics: PrometheusHandle) -> Result<(), String> {
    let store = Store::open_with_cache(&config.server.data_dir, config.server.store_cache_bytes)
        .map_err(|e| format!("cannot open the store in {}: {e}", config.server.data_dir.display()))?;
    // the hourly usage totals take the segments they miss (a crash between a segment and
    // its totals; a ledger from before them, once) before the ledger's one writer starts
    let started = std::time::Instant::now();
    match store.catch_up_rollup() {
        Ok(0) => {}
        Ok(n) => tracing::info!(segments = n, secs = started.elapsed().as_secs_f64(), "usage totals caught up"),
        Err(e) => return Err(format!("cannot bring the usage totals up to date: {e}")),
    }
    // each experiment's records beside the ledger: a ledger from before them, once
    match store.build_experiment_index() {
        Ok(0) => {}
        Ok(n) => tracing::info!(segments = n, secs = started.elapsed().as_secs_f64(), "experiment records indexed"),
        Err(e) => return Err(format!("cannot index the experiments' records: {e}")),
    }
    // load the tokenizer tables now, not on the first request (and leave its regex's
    // fast path to the first HTTP worker that counts: see `load_tables`)
    switchyard_actors::tokens::load_tables();
    // as actix-server would count them by default
    let workers =
        config.server.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()).min(512));
    // up to two HTTP workers: the admission actors run on the first worker's thread, so
    // its requests reach them and get their answer without waking another thread, and
    // no third busy thread competes with the workers for the (one or two) cores. With
    // more workers the actors' share of the work would crowd the first worker's own
    // requests: they get a thread of their own. (`ops/bench.sh`, 2 vCPUs: two workers
    // sharing the actors served 0.56-0.72 of nginx's maximum against 0.51-0.63 with
    // the actors on their own thread and 0.48-0.54 with one worker; BENCHMARKS.md.)
    let (engine_thread, host) = if workers <= HOSTED_ENGINE_MAX_WORKERS {
        let (t, h) = EngineThread::deferred();
        (t, Some(h))
    } else {
        (EngineThread::own(), None)
    };
    let host = Arc::new(tokio::sync::Mutex::new(host));
    let engine =
        Engine::start(config.clone(), store, config.server.routing_seed, engine_thread).map_err(|e| e.to_string())?;
    // connects in the background: HTTP serves whether or not NATS is up
    let nats = match &config.nats {
        None => None,
        Some(cfg) => Some(ingress::nats::connect(cfg).await.map_err(|e| e.to_string())?),
    };
    let responses = Arc::new(ingress::responses::store::ResponseStore::new(
        engine.store().clone(),
        nats.clone().zip(config.nats.clone()),
        config.server.responses_ttl,
    ));
    let nats = match (&config.nats, nats) {
        (Some(cfg), Some(client)) => {
            if cfg.request_reply {
                ingress::nats::serve_requests(client.clone(), engine.clone(), cfg.clone(), responses.clone()).await;
            }
            if cfg.jobs {
                let (client, engine, cfg) = (client.clone(), engine.clone(), cfg.clone());
                actix_web::rt::spawn(ingress::nats::jobs::run(client, engine, cfg));
            }
            {
                // virtual keys and prompts are known to every instance
                let (c, e, n) = (client.clone(), engine.clone(), cfg.clone());
                actix_web::rt::spawn(ingress::nats::replicate::keys(c, e, n));
                let (c, e, n) = (client.clone(), engine.clone(), cfg.clone());
                actix_web::rt::spawn(ingress::nats::replicate::prompts(c, e, n));
                let (c, e, n) = (client.clone(), engine.clone(), cfg.clone());
                actix_web::rt::spawn(ingress::nats::replicate::experiments(c, e, n));
            }
            {
                // request logs: whichever keys, teams or aliases ask for them, now or after a reload
                let (client, engine, cfg) = (client.clone(), engine.clone(), cfg.clone());
                actix_web::rt::spawn(ingress::nats::logs::run(client, engine, cfg));
            }
            if cfg.shared_limits {
                let (client, engine, cfg) = (client.clone(), engine.clone(), cfg.clone());
                actix_web::rt::spawn(ingress::nats::quota::share(client, engine, cfg));
            }
            Some(client)
        }
        _ => None,
    };
    let batch = Arc::new(ingress::batch::BatchApi::new(nats.clone(), config.nats.clone()));
    // the text of the file the config was just loaded from (masked by `GET /admin/config`)
    let config_text = std::fs::read_to_string(&config_path).unwrap_or_default();
    let state = web::Data::new(AppState {
        engine: engine.clone(),
        nats: nats.clone(),
        batch,
        responses,
        metrics: metrics.clone(),
        config_path,
        console: Default::default(),
        config_text: std::sync::RwLock::new(config_text),
    });

    let app_state = state.clone();
    let mut server = HttpServer::new(move || {
        // the first worker to start hosts the engine's actors (when they share one)
        if let Some(h) = host.try_lock().ok().and_then(|mut h| h.take()) {
            h.host_here();
        }
        App::new().app_data(app_state.clone()).wrap_fn(ingress::traced).configure(ingress::routes)
    })
    .backlog(4096)
    // a client that closes its side has left: its response (a stream waiting on a silent
    // provider) is dropped at once, and with it the provider slot, and the request is
    // recorded as the client's close
    .h1_allow_half_closed(false)
    // streamed answers are many small writes: with Nagle's algorithm each waited for the
    // client's delayed ACK (40 ms) before the next went out
    .tcp_nodelay(true)
    .shutdown_timeout(30);
    server = server.workers(workers);
    let server = server.bind(&config.server.http_addr).map_err(|e| format!("bind {}: {e}", config.server.http_addr))?;
    for a in server.addrs() {
        println!("switchyard listening on http://{a}");
    }
    let _ = std::io::stdout().flush();
    tracing::info!(providers = config.providers.len(), models = config.models.len(), "switchyard started");

    // metrics upkeep (histogram and summary housekeeping)
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            metrics.run_upkeep();
            if let Some(client) = &nats {
                let up = client.connection_state() == async_nats::connection::State::Connected;
                metrics::gauge!(switchyard_actors::metrics::NATS_CONNECTED).set(if up { 1.0 } else { 0.0 });
            }
        }
    });
    // SIGHUP reloads the config
    let hup_state = state.clone();
    actix_web::rt::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; use POST /admin/reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading config");
            let _ = reload(&hup_state).await;
        }
    });

    // SIGINT/SIGTERM stop the server gracefully (in-flight requests finish first), and
    // the ledger is flushed while the actors still run; actix-web's own signal handling
    // would stop the whole system first, and with it the accounting actor
    let server = server.disable_signals().run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::warn!("cannot listen for SIGTERM/SIGINT");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
        handle.stop(true).await;
    });
    server.await.map_err(|e| e.to_string())?;
    match engine.flush_ledger().await {
        Ok(n) => tracing::info!(records = n, "ledger flushed; bye"),
        Err(e) => tracing::error!(error = %e, "final ledger flush failed"),
    }
    Ok(())
}
