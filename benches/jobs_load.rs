//! Load generator for durable jobs (used by `ops/bench-jobs.sh`): publishes jobs to a
//! lane through JetStream, watches the result subjects, and prints JSON with the
//! throughput and the publish-to-result latency percentiles.
//!
//! `--probe-lane high --probe-count 200 --probe-rate 20` also publishes probe jobs at a
//! fixed rate while the main load drains, and reports their latencies separately
//! (priority under a backlog).
//!
//! `--ceiling` serves the jobs itself with no gateway work: from the lane's durable
//! consumer (which a gateway made, with the gateway's settings, and no longer serves),
//! each job gets what the gateway's NATS side does for it (the result lookup, the
//! usage event and the result, each published with a message id and confirmed, the
//! double ack), `--ceiling-concurrency` at once. What that sustains is JetStream's own
//! ceiling for the jobs path on this machine.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    #[arg(long, default_value = "switchyard")]
    prefix: String,
    #[arg(long, default_value = "sk-switchyard-dev")]
    key: String,
    #[arg(long, default_value_t = 1000)]
    count: usize,
    #[arg(long, default_value = "normal")]
    lane: String,
    /// `chat` or `embeddings`
    #[arg(long, default_value = "chat")]
    endpoint: String,
    #[arg(long, default_value = "fast")]
    model: String,
    /// Sent as `x-mock-latency-ms` (forwarded to the mock upstream).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long)]
    probe_lane: Option<String>,
    #[arg(long, default_value_t = 0)]
    probe_count: usize,
    #[arg(long, default_value_t = 20.0)]
    probe_rate: f64,
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Serve the jobs here, with only their NATS work (see the module's doc).
    #[arg(long)]
    ceiling: bool,
    #[arg(long, default_value_t = 128)]
    ceiling_concurrency: usize,
}

/// Publishes with a message id and waits for JetStream's ack.
async fn confirmed(js: &async_nats::jetstream::Context, subject: String, id: String, body: String) {
    let mut h = HeaderMap::new();
    h.insert("Nats-Msg-Id", id.as_str());
    if let Ok(ack) = js.publish_with_headers(subject, h, body.into()).await {
        let _ = ack.await;
    }
}

/// The jobs' NATS work without the gateway (`--ceiling`).
async fn stand_in(js: async_nats::jetstream::Context, prefix: String, lane: String, concurrency: usize) {
    let upper: String =
        prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    let (Ok(jobs), Ok(results)) =
        (js.get_stream(format!("{upper}_JOBS")).await, js.get_stream(format!("{upper}_RESULTS")).await)
    else {
        eprintln!("--ceiling: no {upper}_JOBS / {upper}_RESULTS streams (start a gateway on the prefix once)");
        return;
    };
    let name = format!("{}-jobs-{lane}", prefix.replace('.', "_"));
    let consumer: async_nats::jetstream::consumer::PullConsumer = match jobs.get_consumer(&name).await {
        Ok(c) => c,
        Err(e) => return eprintln!("--ceiling: consumer {name}: {e}"),
    };
    let Ok(mut messages) = consumer.messages().await else { return };
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    while let Some(Ok(m)) = messages.next().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (js, results, prefix) = (js.clone(), results.clone(), prefix.clone());
        tokio::spawn(async move {
            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            let id = v["id"].as_str().unwrap_or("x").to_string();
            let _ = results.get_last_raw_message_by_subject(&format!("{prefix}.v1.results.{id}")).await;
            // bodies the size of the gateway's (a usage record; a result holding the answer)
            let usage = json!({"request_id": format!("req_{id}"), "ts_ms": 0, "key_id": "bench", "endpoint": "chat",
                "alias": "fast", "provider": "mock", "upstream_model": "gpt-4o-mini", "input_tokens": 12,
                "output_tokens": 9, "cached_tokens": 0, "cost_usd": 0.0000072, "latency_us": 900, "ttft_us": null,
                "status": 200, "cache_hit": false, "stream": false, "usage_estimated": false,
                "idempotency_key": id, "attempts": 1, "upstream_attempts": 1, "guardrails": []});
            let response = json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 0,
                "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "This is a mock reply to: job, say hello"}}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}});
            let result = json!({"id": id, "status": "completed", "response": response, "error": null,
                "usage": usage, "attempts": 1});
            confirmed(&js, format!("{prefix}.v1.usage.bench"), format!("usage-{id}"), usage.to_string()).await;
            confirmed(&js, format!("{prefix}.v1.results.{id}"), format!("result-{id}"), result.to_string()).await;
            let _ = m.double_ack().await;
            drop(slot);
        });
    }
}

fn job(a: &Args, id: &str, i: usize) -> Value {
    let body = if a.endpoint == "embeddings" {
        json!({"model": a.model, "input": format!("document number {i} about switchyard")})
    } else {
        json!({"model": a.model, "messages": [{"role": "user", "content": format!("job {i}: say hello")}]})
    };
    json!({"id": id, "endpoint": a.endpoint, "body": body})
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(lat: &mut [f64]) -> Value {
    lat.sort_by(|a, b| a.total_cmp(b));
    json!({"n": lat.len(), "p50_ms": percentile(lat, 0.5), "p90_ms": percentile(lat, 0.9),
        "p99_ms": percentile(lat, 0.99), "max_ms": lat.last().copied().unwrap_or(0.0)})
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let nc = async_nats::connect(&a.nats).await?;
    let js = async_nats::jetstream::new(nc.clone());
    let run = format!("{:08x}", fastrand::u32(..));
    let mut results = nc.subscribe(format!("{}.v1.results.>", a.prefix)).await?;
    let mut headers = HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {}", a.key).as_str());
    headers.insert("x-mock-latency-ms", a.latency_ms.to_string().as_str());

    if a.ceiling {
        tokio::spawn(stand_in(js.clone(), a.prefix.clone(), a.lane.clone(), a.ceiling_concurrency));
    }
    let published: std::sync::Arc<tokio::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let started = Instant::now();
    // main load, as fast as JetStream acks
    let main = {
        let (js, headers, published, run) = (js.clone(), headers.clone(), published.clone(), run.clone());
        let jobs: Vec<(String, Value)> = (0..a.count)
            .map(|i| {
                let id = format!("m{run}-{i}");
                (id.clone(), job(&a, &id, i))
            })
            .collect();
        let subject = format!("{}.v1.jobs.{}", a.prefix, a.lane);
        tokio::spawn(async move {
            let mut acks = Vec::new();
            for (id, body) in jobs {
                let mut h = headers.clone();
                h.insert("Nats-Msg-Id", id.as_str());
                published.lock().await.insert(id, Instant::now());
                match js.publish_with_headers(subject.clone(), h, body.to_string().into()).await {
                    Ok(ack) => acks.push(ack),
                    Err(e) => eprintln!("publish: {e}"),
                }
                if acks.len() >= 256 {
                    for ack in acks.drain(..) {
                        let _ = ack.await;
                    }
                }
            }
            for ack in acks {
                let _ = ack.await;
            }
        })
    };
    // probes at a fixed rate
    let probes = a.probe_lane.clone().map(|lane| {
        let (js, headers, published, run) = (js.clone(), headers.clone(), published.clone(), run.clone());
        let subject = format!("{}.v1.jobs.{lane}", a.prefix);
        let jobs: Vec<(String, Value)> = (0..a.probe_count)
            .map(|i| {
                let id = format!("p{run}-{i}");
                (id.clone(), job(&a, &id, 1_000_000 + i))
            })
            .collect();
        let every = Duration::from_secs_f64(1.0 / a.probe_rate.max(0.1));
        tokio::spawn(async move {
            // let the backlog build first
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut tick = tokio::time::interval(every);
            for (id, body) in jobs {
                tick.tick().await;
                let mut h = headers.clone();
                h.insert("Nats-Msg-Id", id.as_str());
                published.lock().await.insert(id, Instant::now());
                if let Ok(ack) = js.publish_with_headers(subject.clone(), h, body.to_string().into()).await {
                    let _ = ack.await;
                }
            }
        })
    });

    let total = a.count + if probes.is_some() { a.probe_count } else { 0 };
    let (mut main_lat, mut probe_lat) = (Vec::new(), Vec::new());
    let (mut completed, mut failed) = (0usize, 0usize);
    let deadline = tokio::time::sleep(Duration::from_secs(a.timeout_secs));
    tokio::pin!(deadline);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < total {
        let msg = tokio::select! {
            m = results.next() => match m { Some(m) => m, None => break },
            _ = &mut deadline => break,
        };
        let now = Instant::now();
        let v: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
        let Some(id) = v["id"].as_str() else { continue };
        if !id.contains(&run) || !seen.insert(id.to_string()) {
            continue;
        }
        if v["status"] == "completed" {
            completed += 1;
        } else {
            failed += 1;
        }
        if let Some(t) = published.lock().await.get(id) {
            let ms = now.duration_since(*t).as_secs_f64() * 1000.0;
            if id.starts_with('p') {
                probe_lat.push(ms);
            } else {
                main_lat.push(ms);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = main.await;
    if let Some(p) = probes {
        let _ = p.await;
    }
    let out = json!({
        "jobs": total, "results": seen.len(), "completed": completed, "failed": failed,
        "seconds": elapsed, "jobs_per_sec": seen.len() as f64 / elapsed,
        "latency": summary(&mut main_lat),
        "probe_latency": summary(&mut probe_lat),
    });
    println!("{out}");
    Ok(())
}
