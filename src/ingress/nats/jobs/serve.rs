//! One job: read it, skip it when its result exists, run it through the engine, store
//! its usage event and result (each confirmed, de-duplicated by id), then ack; a failed
//! attempt is retried, deferred or failed by the one classifier.

use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_actors::telemetry;
use tracing::Instrument as _;

use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream;
use async_nats::jetstream::{self, Context as JetStream};
use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use switchyard_actors::metrics::{JOBS_TOTAL, JOB_DURATION, JOB_QUEUE_WAIT};
use switchyard_actors::pipeline::{Failure, JobHooks, OutcomeBody, RequestCtx};
use switchyard_actors::types::{unix_ms, EmbeddingsRequest, UsageRecord};
use switchyard_actors::GatewayError;
use switchyard_config::{Nats, Priority};

use crate::ingress::batch::items::{foreign, gate, live, output_line, BatchRef, Gate};
use crate::ingress::batch::{item_signed, ITEM_SIGNATURE};
use crate::ingress::nats::batcher::BatchJob;
use crate::ingress::nats::streams::{valid_job_id, Names};
use crate::ingress::nats::{call, header};
use switchyard_actors::types::Endpoint;

use super::{Buffered, Shared};

/// `{"id", "endpoint", "body"}`, plus `batch` for an item of a Batch API batch.
#[derive(Deserialize)]
pub(super) struct JobBody {
    id: String,
    #[serde(default = "default_endpoint")]
    endpoint: String,
    body: Value,
    #[serde(default)]
    batch: Option<BatchRef>,
}

pub(super) fn default_endpoint() -> String {
    "chat".into()
}

/// How a failed attempt goes on.
#[derive(Debug, PartialEq)]
pub(super) enum Next {
    /// Refused by the gateway's own limits: try again later, never a failed result.
    Defer(Duration),
    /// Transient upstream failure: retry while attempts remain.
    Retry(Option<Duration>),
    /// Fail now.
    Fail,
}

pub(super) fn next_step(err: &GatewayError) -> Next {
    use GatewayError::*;
    match err {
        RateLimited { retry_after, .. } => Next::Defer(*retry_after),
        QueueFull(_) | Unavailable(_) => Next::Defer(Duration::from_millis(500)),
        // the one classifier: what another try may fix
        e if e.retryable() => Next::Retry(e.retry_after_secs().map(Duration::from_secs)),
        _ => Next::Fail,
    }
}

/// The delay before a job's next attempt: the one backoff, with the `[nats]` settings.
pub(super) fn backoff(cfg: &Nats, attempt: u32) -> Duration {
    switchyard_actors::retry::backoff(cfg.retry_backoff, cfg.retry_backoff_max, attempt)
}

pub(super) async fn serve_job(s: &Shared, lane: Priority, b: Buffered) {
    let msg = Arc::new(b.msg);
    let (delivered, seq) = match msg.info() {
        Ok(i) => (i.delivered.max(1) as u32, i.stream_sequence),
        Err(_) => (1, 0),
    };
    if delivered == 1 {
        let wait = unix_ms().saturating_sub(b.published_ms) as f64 / 1000.0;
        metrics::histogram!(JOB_QUEUE_WAIT, "lane" => lane.as_str()).record(wait);
    }
    // in-progress acks while the job runs
    let keepalive = {
        let (msg, every) = (msg.clone(), s.cfg.ack_wait / 3);
        actix_web::rt::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let _ = msg.ack_with(AckKind::Progress).await;
            }
        })
    };
    // with traces on, the job runs under a span of its own, a child of the trace its
    // publisher sent (`traceparent`); its result and usage messages carry it on
    let name = format!("process {}", msg.subject);
    let span = telemetry::request_span(&name, "consumer", header(msg.headers.as_ref()));
    if !span.is_disabled() {
        span.record("switchyard.attempt", i64::from(delivered));
    }
    let outcome = run_job(s, lane, &msg, delivered, seq).instrument(span.clone()).await;
    keepalive.abort();
    let label = match outcome {
        Done::Answered { failed, id } => {
            // a plain ack, not a confirmed one: the answer is stored, so an ack that is
            // lost costs a redelivery that finds it and only acks (no second run, no
            // second usage event), and waiting for the server's word would cost every job
            // a round trip
            if let Err(e) = msg.ack().await {
                tracing::warn!(job = %id, error = %e, "cannot ack a finished job");
            }
            metrics::histogram!(JOB_DURATION, "lane" => lane.as_str())
                .record(unix_ms().saturating_sub(b.published_ms) as f64 / 1000.0);
            if failed {
                "failed"
            } else {
                "completed"
            }
        }
        Done::Duplicate => {
            let _ = msg.ack().await;
            "duplicate"
        }
        Done::Later { delay, retried } => {
            let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
            if retried {
                "retried"
            } else {
                "deferred"
            }
        }
        Done::Unstored => {
            // not acked: JetStream redelivers after ack_wait
            "unstored"
        }
    };
    if !span.is_disabled() {
        span.record("switchyard.result", label);
        if label == "failed" {
            telemetry::failed(&span, label);
        }
    }
    metrics::counter!(JOBS_TOTAL, "lane" => lane.as_str(), "outcome" => label).increment(1);
}

pub(super) enum Done {
    /// The result (and usage) are stored: ack.
    Answered { failed: bool, id: String },
    /// A result already existed: ack without a call.
    Duplicate,
    /// NAK with this delay.
    Later { delay: Duration, retried: bool },
    /// The result could not be stored: leave unacked.
    Unstored,
}

/// A job's id (from its body, else the publisher's `Nats-Msg-Id`, else its stream
/// sequence) and its parsed body, or why the body is refused.
fn identify(payload: &[u8], msg_id: Option<&str>, seq: u64) -> (String, Result<JobBody, GatewayError>) {
    let parsed = serde_json::from_slice::<JobBody>(payload);
    let fallback_id = msg_id.filter(|i| valid_job_id(i)).map_or_else(|| format!("seq-{seq}"), str::to_string);
    match parsed {
        Ok(j) if !valid_job_id(&j.id) => {
            let message = format!("`id` must be 1-128 characters of [A-Za-z0-9_-], not `{}`", j.id);
            (fallback_id, Err(GatewayError::BadRequest(message)))
        }
        Ok(j) if j.batch.as_ref().is_some_and(|b| !valid_job_id(&b.id)) => {
            let message = "`batch.id` must be 1-128 characters of [A-Za-z0-9_-]".to_string();
            (j.id.clone(), Err(GatewayError::BadRequest(message)))
        }
        Ok(j) => (j.id.clone(), Ok(j)),
        Err(e) => (fallback_id, Err(GatewayError::BadRequest(format!("invalid job body: {e}")))),
    }
}

/// Where a job's answer is stored: its result, or a batch item's output or error line.
fn answer_subjects(names: &Names, id: &str, batch: Option<&BatchRef>) -> Vec<String> {
    match batch {
        None => vec![names.result_subject(id)],
        Some(b) => vec![names.batch_output(&b.id, true, id), names.batch_output(&b.id, false, id)],
    }
}

/// Whether the job stored as `payload` (with its `Nats-Msg-Id`) at `seq` has been
/// answered; `None` when the results cannot be read.
pub(super) async fn answered(
    results: &stream::Stream,
    names: &Names,
    payload: &[u8],
    msg_id: Option<&str>,
    seq: u64,
) -> Option<bool> {
    let (id, job) = identify(payload, msg_id, seq);
    let batch = job.as_ref().ok().and_then(|j| j.batch.as_ref());
    for subject in answer_subjects(names, &id, batch) {
        match results.get_last_raw_message_by_subject(&subject).await {
            Ok(_) => return Some(true),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {}
            Err(_) => return None,
        }
    }
    Some(false)
}

pub(super) async fn run_job(s: &Shared, lane: Priority, msg: &jetstream::Message, attempt: u32, seq: u64) -> Done {
    let received = Instant::now();
    let lookup = header(msg.headers.as_ref());
    let (id, job) = identify(&msg.payload, lookup("nats-msg-id"), seq);
    let batch = job.as_ref().ok().and_then(|j| j.batch.clone());
    let batch = batch.as_ref();
    // a job whose result exists is never run again
    let subjects = answer_subjects(&s.names, &id, batch);
    for subject in subjects {
        match s.results.get_last_raw_message_by_subject(&subject).await {
            Ok(_) => return Done::Duplicate,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {}
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot look the result up; retrying later");
                return Done::Later { delay: Duration::from_secs(1), retried: false };
            }
        }
    }
    let job = match job {
        Ok(j) => j,
        Err(error) => {
            let failure = Failure::from(error);
            return store(s, &id, attempt, Err(&failure), None, batch).await;
        }
    };
    let api = match job.endpoint.as_str() {
        "chat" | "chat.completions" | "/v1/chat/completions" => Endpoint::Chat,
        "embeddings" | "/v1/embeddings" => Endpoint::Embeddings,
        other => {
            let failure = Failure::from(GatewayError::BadRequest(format!(
                "`endpoint` must be `chat` or `embeddings`, not `{other}`"
            )));
            return store(s, &id, attempt, Err(&failure), None, batch).await;
        }
    };
    // a plain job runs under the credential its publisher sent; a Batch API item runs as
    // its batch's owner, when the gateway's signature proves it is that batch's item
    let rt = s.engine.runtime();
    let made = match batch {
        None => RequestCtx::from_headers(rt, id.clone(), received, lookup),
        Some(b) => {
            let rec = match gate(&s.batches, b).await {
                Ok(rec) => rec,
                Err(Gate::Later) => return Done::Later { delay: Duration::from_secs(1), retried: false },
                Err(Gate::Skip(failure) | Gate::Foreign(failure)) => {
                    return store(s, &id, attempt, Err(&failure), None, None).await
                }
            };
            let made = if rec.item_key.is_empty() {
                // a batch made before items were signed: its items carry the owner's key
                RequestCtx::from_headers(rt, id.clone(), received, lookup)
                    .ok()
                    .filter(|c| *c.key.id == *rec.owner)
                    .ok_or_else(|| foreign(b))
            } else if lookup(ITEM_SIGNATURE).is_some_and(|sig| item_signed(&rec.item_key, &msg.payload, sig)) {
                rt.key_by_id(&rec.owner, rec.owner_team.as_deref())
                    .and_then(|key| RequestCtx::for_key(rt.clone(), id.clone(), received, key, lookup))
                    .map_err(|e| Gate::Skip(Failure::from(e)))
            } else {
                Err(foreign(b))
            };
            match made.and_then(|c| live(&rec).map(|()| c)) {
                Ok(c) => Ok(c),
                // a forged item or another key's job: answered like a plain job, no batch touched
                Err(Gate::Foreign(failure)) => return store(s, &id, attempt, Err(&failure), None, None).await,
                Err(Gate::Skip(failure)) => return store(s, &id, attempt, Err(&failure), None, batch).await,
                Err(Gate::Later) => return Done::Later { delay: Duration::from_secs(1), retried: false },
            }
        }
    };
    let mut ctx = match made {
        Ok(c) => c,
        Err(e) => return store(s, &id, attempt, Err(&Failure::from(e)), None, batch).await,
    };
    ctx.priority = lane;
    // a job's answer is stored whole: no streaming
    let mut body = job.body;
    if let Some(o) = body.as_object_mut() {
        o.remove("stream");
        o.remove("stream_options");
    }
    let body = serde_json::to_vec(&body).unwrap_or_default();
    // `written`: the finisher already put a success's record in the ledger
    let (result, record, written) = match (api, &s.batcher) {
        (Endpoint::Embeddings, Some(batcher)) => {
            let req = match EmbeddingsRequest::parse(&body) {
                Ok(r) => r,
                Err(e) => return store(s, &id, attempt, Err(&Failure::from(e)), None, batch).await,
            };
            let (key, headers) = (ctx.key.clone(), std::mem::take(&mut ctx.headers));
            drop(ctx);
            let job = BatchJob { job_id: id.clone(), attempt, key, priority: lane, headers, req };
            let (result, record) = batcher.submit(job).await;
            (result, record, false)
        }
        _ => {
            let hooks = Arc::new(JobHooks {
                id: id.clone(),
                attempt,
                defer_failures: true,
                defer_all: false,
                record: std::sync::OnceLock::new(),
                batch: batch.is_some(),
            });
            ctx.job = Some(hooks.clone());
            let result = call(&s.engine, api, &ctx, &body).await;
            drop(ctx);
            let result = match result {
                Ok(outcome) => match outcome.body {
                    OutcomeBody::Json(bytes) => Ok(bytes),
                    OutcomeBody::Sse(_) => {
                        Err(Failure::from(GatewayError::Internal("a job was answered with a stream".into())))
                    }
                },
                Err(f) => Err(f),
            };
            (result, hooks.record.get().cloned(), true)
        }
    };
    match result {
        Ok(bytes) => {
            if let (false, Some(r)) = (written, &record) {
                s.engine.record_usage(r.clone()).await;
            }
            store(s, &id, attempt, Ok(bytes), record, batch).await
        }
        Err(failure) => match next_step(&failure.error) {
            Next::Defer(d) => Done::Later { delay: d.max(Duration::from_millis(100)), retried: false },
            Next::Retry(after) if attempt < s.cfg.max_attempts => {
                let delay = backoff(&s.cfg, attempt).max(after.unwrap_or_default());
                tracing::info!(job = %id, attempt, delay_ms = delay.as_millis() as u64, error = %failure.error,
                    "transient failure; the job will be retried");
                Done::Later { delay, retried: true }
            }
            _ => {
                if let Some(r) = &record {
                    // failures are deferred: this one is the job's final outcome
                    s.engine.record_usage(r.clone()).await;
                }
                store(s, &id, attempt, Err(&failure), record, batch).await
            }
        },
    }
}

/// Publishes the usage event and then the result (or a batch item's output line), each
/// confirmed by JetStream and de-duplicated by a `Nats-Msg-Id` derived from the job id.
pub(super) async fn store(
    s: &Shared,
    id: &str,
    attempts: u32,
    answer: Result<Bytes, &Failure>,
    record: Option<UsageRecord>,
    batch: Option<&BatchRef>,
) -> Done {
    let failed = answer.is_err();
    // the record's JSON, once: the usage event, and the result's `usage`
    let usage = record.as_ref().and_then(|r| serde_json::to_vec(r).ok()).map(Bytes::from);
    if let (Some(r), Some(body)) = (&record, &usage) {
        if !publish_confirmed(&s.js, s.names.usage_subject(&r.key_id), &format!("usage-{id}"), body.clone()).await {
            return Done::Unstored;
        }
    }
    if let Some(b) = batch {
        let answer = answer.map(|bytes| serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null));
        let line = Bytes::from(output_line(id, b, &answer).to_string());
        let subject = s.names.batch_output(&b.id, !failed, id);
        // its own message-id space: a forged plain job of the same id cannot shadow it
        if !publish_confirmed(&s.js, subject, &format!("batch-result-{id}"), line).await {
            return Done::Unstored;
        }
        return Done::Answered { failed, id: id.to_string() };
    }
    let body = match answer {
        // the provider's answer and the record go in as the JSON they already are
        Ok(bytes) => result_message(id, "completed", &bytes, b"null", usage.as_deref(), attempts),
        Err(f) => {
            let mut error = f.error.body().get("error").cloned().unwrap_or(Value::Null);
            if let Some(o) = error.as_object_mut() {
                o.insert("status".into(), json!(f.error.class().status));
            }
            let error = serde_json::to_vec(&error).unwrap_or_else(|_| b"null".to_vec());
            result_message(id, "failed", b"null", &error, usage.as_deref(), attempts)
        }
    };
    if !publish_confirmed(&s.js, s.names.result_subject(id), &format!("result-{id}"), body).await {
        return Done::Unstored;
    }
    Done::Answered { failed, id: id.to_string() }
}

/// A job's result message, `{"id", "status", "response", "error", "usage", "attempts"}`.
#[derive(serde::Serialize)]
struct ResultMessage<'a> {
    id: &'a str,
    status: &'a str,
    response: Option<&'a RawValue>,
    error: Option<&'a RawValue>,
    usage: Option<&'a RawValue>,
    attempts: u32,
}

/// The result message, its parts put in as the JSON they already are (an answer that is
/// not JSON goes as `null`), not parsed into values and written again.
fn result_message(id: &str, status: &str, response: &[u8], error: &[u8], usage: Option<&[u8]>, attempts: u32) -> Bytes {
    fn raw(b: &[u8]) -> Option<&RawValue> {
        serde_json::from_slice::<&RawValue>(b).ok().filter(|v| v.get() != "null")
    }
    let message =
        ResultMessage { id, status, response: raw(response), error: raw(error), usage: usage.and_then(raw), attempts };
    serde_json::to_vec(&message).map(Bytes::from).unwrap_or_default()
}

/// Publishes with a message id and waits for JetStream's ack; retries a few times.
pub(super) async fn publish_confirmed(js: &JetStream, subject: String, msg_id: &str, body: Bytes) -> bool {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=5 {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        telemetry::inject(&telemetry::current(), |k, v| headers.insert(k, v.as_str()));
        let sent = match js.publish_with_headers(subject.clone(), headers, body.clone()).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match sent {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(subject, attempt, error = %e, "cannot store a job message; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Job envelopes (JSON from any NATS publisher) under seeded random mutation: parsed
    /// or refused, never a panic.
    #[test]
    fn job_envelopes_survive_mutated_and_random_input() {
        let seeds: [&[u8]; 2] = [
            br#"{"id":"j-1","endpoint":"chat","body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}"#,
            br#"{"id":"b-0","endpoint":"embeddings","body":{"model":"e","input":"x"},"batch":{"id":"batch_1","custom_id":"c"}}"#,
        ];
        let mut rng = fastrand::Rng::with_seed(0x70b5);
        for i in 0..4_000 {
            let input: Vec<u8> = if i % 10 == 0 {
                (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect()
            } else {
                let seed = seeds[rng.usize(0..seeds.len())];
                switchyard_actors::fuzz::mutate(&mut rng, seed, &seeds)
            };
            if let Ok(j) = serde_json::from_slice::<JobBody>(&input) {
                let _ = (valid_job_id(&j.id), j.batch.map(|b| valid_job_id(&b.id)));
            }
        }
    }

    #[test]
    fn result_messages_hold_the_answer_and_record_as_they_are() {
        let answer = br#"{"id":"chatcmpl-1","choices":[{"message":{"content":"h\u00e9 \"x\""}}]}"#;
        let usage = br#"{"request_id":"r","cost_usd":1.5e-6}"#;
        let m: Value =
            serde_json::from_slice(&result_message("j-1", "completed", answer, b"null", Some(usage), 2)).unwrap();
        let want = json!({"id": "j-1", "status": "completed", "error": null, "attempts": 2,
            "response": serde_json::from_slice::<Value>(answer).unwrap(),
            "usage": serde_json::from_slice::<Value>(usage).unwrap()});
        assert_eq!(m, want);
        // an answer that is not JSON, no record, an error
        let m: Value =
            serde_json::from_slice(&result_message("j", "failed", b"<html>", br#"{"code":"x"}"#, None, 1)).unwrap();
        assert_eq!(
            m,
            json!({"id": "j", "status": "failed", "response": null, "error": {"code": "x"}, "usage": null, "attempts": 1})
        );
    }

    #[test]
    fn failures_are_deferred_retried_or_final() {
        let up = |status| GatewayError::UpstreamStatus {
            provider: "p".into(),
            status,
            message: String::new(),
            retry_after: Some(3),
        };
        assert_eq!(next_step(&up(503)), Next::Retry(Some(Duration::from_secs(3))));
        assert_eq!(next_step(&up(429)), Next::Retry(Some(Duration::from_secs(3))));
        assert_eq!(next_step(&up(400)), Next::Fail);
        assert_eq!(next_step(&up(401)), Next::Fail);
        assert_eq!(next_step(&GatewayError::UnknownModel("m".into())), Next::Fail);
        assert_eq!(next_step(&GatewayError::InvalidKey), Next::Fail);
        assert!(matches!(next_step(&GatewayError::QueueFull("p".into())), Next::Defer(_)));
        let timeout = GatewayError::UpstreamTimeout { provider: "p".into(), phase: "first byte" };
        assert_eq!(next_step(&timeout), Next::Retry(None));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let c = crate::ingress::nats::streams::tests::cfg();
        for attempt in 1..=20 {
            let d = backoff(&c, attempt);
            let full = c.retry_backoff.saturating_mul(1 << (attempt - 1).min(16)).min(c.retry_backoff_max);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?} vs {full:?}");
        }
    }
}
