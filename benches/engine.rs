#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! One chat request through the engine, in process: authentication, parse, token
//! estimate, the admission job (rate limiter -> router -> provider worker), the
//! built-in `mock` provider and the usage record. Once with the admission actors on a
//! thread of their own (`server.workers` > 1), once on the caller's thread
//! (`server.workers = 1`): the difference is what the cross-thread hand-off costs.
//! Then once more on the caller's thread with traces on (every span made, bridged to
//! OpenTelemetry, sampled and handed to a batch processor whose exporter drops them):
//! what `[telemetry]` costs a request before any export I/O. The runs without it are
//! what traces off cost (compare them with a build from before traces existed).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use switchyard_actors::pipeline::EngineThread;
use switchyard_actors::store::Store;
use switchyard_actors::{telemetry, Engine, RequestCtx};

const BODY: &[u8] =
    br#"{"model":"fast","max_tokens":64,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}"#;

const CONFIG: &str = r#"
[[providers]]
name = "builtin"
kind = "mock"
concurrency = 512
[[models]]
alias = "fast"
targets = [{ provider = "builtin", model = "gpt-4o-mini" }]
[[keys]]
id = "bench"
key = "sk-bench-key-0001"
models = ["fast"]
rpm = 100000000
tpm = 100000000000
[cache]
enabled = false
"#;

fn engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_chat");
    let runs = [
        ("actors_on_own_thread", false, false),
        ("actors_on_callers_thread", true, false),
        ("actors_on_callers_thread_traced", true, true),
    ];
    for (name, hosted, traced) in runs {
        if traced {
            trace_everything();
        }
        let dir = tempfile::tempdir().unwrap();
        let config = std::sync::Arc::new(switchyard_config::load_str(CONFIG, Path::new("."), &|_| None).unwrap());
        let store = Store::open(dir.path()).unwrap();
        let sys = actix_rt::System::new();
        let engine = sys.block_on(async {
            let thread = if hosted {
                let (t, host) = EngineThread::deferred();
                host.host_here();
                t
            } else {
                EngineThread::own()
            };
            Engine::start(config, store, Some(7), thread).unwrap()
        });
        let headers = |name: &str| (name == "authorization").then_some("Bearer sk-bench-key-0001");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                sys.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let rt = engine.runtime();
                        // as the HTTP ingress does: the request's span, current while the context is made
                        let span = telemetry::request_span("POST /v1/chat/completions", "server", |_| None);
                        let ctx = span
                            .in_scope(|| RequestCtx::from_headers(rt, "req".into(), Instant::now(), headers))
                            .unwrap();
                        let out = engine.chat(&ctx, black_box(BODY)).await;
                        assert!(out.is_ok());
                    }
                    started.elapsed()
                })
            })
        });
        drop(engine);
        sys.block_on(async { actix_rt::time::sleep(Duration::from_millis(100)).await });
    }
    g.finish();
}

/// An exporter that drops every batch.
#[derive(Debug)]
struct Discard;

impl opentelemetry_sdk::trace::SpanExporter for Discard {
    async fn export(&self, _: Vec<opentelemetry_sdk::trace::SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// The subscriber `[telemetry]` installs, with every trace sampled and a discarding exporter.
fn trace_everything() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().with_batch_exporter(Discard).build();
    let only_ours = tracing_subscriber::filter::Targets::new().with_target(telemetry::TARGET, tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")).with_filter(only_ours);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
    telemetry::set_enabled(true);
    // kept for the rest of the process
    std::mem::forget(provider);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = engine
}
criterion_main!(benches);
