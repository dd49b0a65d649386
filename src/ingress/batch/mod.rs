//! OpenAI Batch API over the durable job queue.
//!
//! Everything a batch needs lives in JetStream, so any instance can answer for any
//! batch and a crashed instance loses nothing:
//! - input files: the object store `<PREFIX>_FILES` (chunked, any size up to
//!   `nats.files_max_bytes`), with the owner's key id in the object's metadata;
//! - batches: the key-value bucket `<PREFIX>_BATCHES`, one JSON record per batch,
//!   changed only by compare-and-set;
//! - items: ordinary durable jobs on `<prefix>.v1.jobs.<lane>` (low unless the request
//!   says `x-switchyard-priority`), each carrying `{"batch": {"id", "custom_id"}}`, so
//!   they get the queue's retries, priorities, exactly-once results and usage records;
//! - outputs: each item's output line (OpenAI's batch output format) is stored in
//!   `<PREFIX>_RESULTS` on `<prefix>.v1.batches.<batch>.ok.<job>` or `.err.<job>`. The
//!   request counts are the number of messages under each, read from the server
//!   (a consumer's pending count) on every `GET`, so they are always current; the output
//!   and error files are read from there too (`file-<batch>-output`, `file-<batch>-errors`).

pub mod http;
pub mod items;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::object_store::{self, ObjectMetadata, ObjectStore};
use async_nats::jetstream::stream;
use async_nats::jetstream::{self, kv, Context as JetStream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use switchyard_actors::types::unix_secs;
use switchyard_actors::GatewayError;
use switchyard_config::{Nats, Priority};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

use crate::ingress::nats::streams::{batches_bucket, ensure_streams, files_bucket, valid_job_id, Names, NatsError};

/// Publishes in flight at once while a batch's items are queued.
const PUBLISH_WINDOW: usize = 256;
/// A batch still `validating` this long after its creation was interrupted.
const STALE_VALIDATING_SECS: u64 = 600;
/// Output lines read per fetch while an output file is streamed.
const READ_CHUNK: usize = 256;

/// The endpoints a batch may target, with the job endpoint each maps to.
const ENDPOINTS: [(&str, &str); 2] = [("/v1/chat/completions", "chat"), ("/v1/embeddings", "embeddings")];

/// A batch's life, as OpenAI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl Status {
    /// Items of a batch in this state are still served.
    pub fn serves_items(self) -> bool {
        matches!(self, Status::Validating | Status::InProgress | Status::Finalizing)
    }
}

/// The stored form of a batch (the KV value).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchRecord {
    pub id: String,
    /// The key id that created it; only that key sees it.
    pub owner: String,
    pub endpoint: String,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: Status,
    pub total: u64,
    /// Final counts, set when the batch ends.
    pub completed: u64,
    pub failed: u64,
    pub created_at: u64,
    pub expires_at: u64,
    pub in_progress_at: Option<u64>,
    pub finalizing_at: Option<u64>,
    pub completed_at: Option<u64>,
    pub failed_at: Option<u64>,
    pub cancelling_at: Option<u64>,
    pub cancelled_at: Option<u64>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub errors: Option<Value>,
    pub metadata: Value,
    pub lane: Priority,
}

impl BatchRecord {
    /// OpenAI's Batch object with these request counts.
    fn view(&self, completed: u64, failed: u64) -> Value {
        json!({
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "errors": self.errors,
            "input_file_id": self.input_file_id, "completion_window": self.completion_window,
            "status": self.status, "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": self.created_at, "in_progress_at": self.in_progress_at, "expires_at": self.expires_at,
            "finalizing_at": self.finalizing_at, "completed_at": self.completed_at, "failed_at": self.failed_at,
            "expired_at": null, "cancelling_at": self.cancelling_at, "cancelled_at": self.cancelled_at,
            "request_counts": {"total": self.total, "completed": completed, "failed": failed},
            "metadata": self.metadata,
        })
    }
}

/// `POST /v1/batches`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Accepted for the SDK's sake; outputs live for `nats.results_max_age_secs`.
    #[serde(default)]
    #[allow(dead_code)]
    pub output_expires_after: Option<Value>,
}

/// One line of an input file.
#[derive(Debug, Deserialize)]
struct InputLine {
    custom_id: String,
    method: String,
    url: String,
    body: Value,
}

/// A parsed request of an input file.
#[derive(Debug, PartialEq)]
pub struct Item {
    pub custom_id: String,
    pub url: String,
    pub body: Value,
}

/// Checks an input file: JSONL, each line `{"custom_id", "method": "POST", "url", "body"}`
/// with a supported `url`, unique `custom_id`s, at most `max` lines. Errors name the line.
pub fn parse_input(bytes: &[u8], max: usize) -> Result<Vec<Item>, GatewayError> {
    let text = std::str::from_utf8(bytes).map_err(|e| bad(format!("the file is not UTF-8: {e}")))?;
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let l: InputLine = serde_json::from_str(line).map_err(|e| bad(format!("line {n}: {e}")))?;
        if l.method != "POST" {
            return Err(bad(format!("line {n}: `method` must be POST, not `{}`", l.method)));
        }
        if !ENDPOINTS.iter().any(|(url, _)| *url == l.url) {
            return Err(bad(format!(
                "line {n}: `url` must be /v1/chat/completions or /v1/embeddings, not `{}`",
                l.url
            )));
        }
        if !l.body.is_object() {
            return Err(bad(format!("line {n}: `body` must be an object")));
        }
        if l.custom_id.is_empty() || l.custom_id.len() > 512 {
            return Err(bad(format!("line {n}: `custom_id` must be 1-512 characters")));
        }
        if !seen.insert(l.custom_id.clone()) {
            return Err(bad(format!("line {n}: `custom_id` `{}` is used twice", l.custom_id)));
        }
        items.push(Item { custom_id: l.custom_id, url: l.url, body: l.body });
        if items.len() > max {
            return Err(bad(format!("the file holds more than {max} requests")));
        }
    }
    if items.is_empty() {
        return Err(bad("the file holds no requests".into()));
    }
    Ok(items)
}

fn bad(message: String) -> GatewayError {
    GatewayError::BadRequest(message)
}

fn missing(what: &str, id: &str) -> GatewayError {
    GatewayError::Missing(format!("no {what} `{id}`"))
}

fn unavailable(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Unavailable(format!("the batch store is unavailable: {e}"))
}

use switchyard_actors::ids::new_id;

/// The batch of a virtual output/error file id, and whether it is the error file.
fn output_file(id: &str) -> Option<(&str, bool)> {
    let rest = id.strip_prefix("file-")?;
    if let Some(b) = rest.strip_suffix("-output") {
        return Some((b, false));
    }
    rest.strip_suffix("-errors").map(|b| (b, true))
}

/// Handles opened once the connection is up.
pub struct Stores {
    js: JetStream,
    files: ObjectStore,
    batches: kv::Store,
    results: stream::Stream,
}

/// Opens (creating when missing) the files bucket, the batches bucket and the streams.
pub async fn open_stores(js: &JetStream, cfg: &Nats, names: &Names) -> Result<Stores, NatsError> {
    ensure_streams(js, cfg, names).await?;
    let files = files_bucket(js, cfg, names).await?;
    let batches = batches_bucket(js, cfg, names).await?;
    let results = js.get_stream(&names.results_stream).await.map_err(NatsError::on("stream", &names.results_stream))?;
    Ok(Stores { js: js.clone(), files, batches, results })
}

/// Reads a batch record and its revision.
pub async fn read_batch(kv: &kv::Store, id: &str) -> Result<Option<(BatchRecord, u64)>, GatewayError> {
    if !valid_job_id(id) {
        return Ok(None);
    }
    let Some(entry) = kv.entry(id).await.map_err(unavailable)? else {
        return Ok(None);
    };
    if entry.operation != kv::Operation::Put {
        return Ok(None);
    }
    let rec = serde_json::from_slice(&entry.value)
        .map_err(|e| GatewayError::Internal(format!("batch record `{id}` is unreadable: {e}")))?;
    Ok(Some((rec, entry.revision)))
}

/// The Batch API; `None` inside when `[nats]` is not configured.
pub struct BatchApi {
    inner: Option<(Client, Nats, Names)>,
    stores: OnceCell<Stores>,
}

impl BatchApi {
    pub fn new(client: Option<Client>, cfg: Option<Nats>) -> BatchApi {
        let inner = client.zip(cfg).map(|(c, cfg)| {
            let names = Names::new(&cfg);
            (c, cfg, names)
        });
        BatchApi { inner, stores: OnceCell::new() }
    }

    fn inner(&self) -> Result<&(Client, Nats, Names), GatewayError> {
        self.inner
            .as_ref()
            .ok_or_else(|| GatewayError::Unavailable("the Batch API needs `[nats]` (JetStream) in the config".into()))
    }

    pub fn files_max_bytes(&self) -> Option<usize> {
        self.inner.as_ref().map(|(_, cfg, _)| cfg.files_max_bytes)
    }

    async fn stores(&self) -> Result<&Stores, GatewayError> {
        let (client, cfg, names) = self.inner()?;
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err(GatewayError::Unavailable("NATS is not connected; the Batch API is unavailable".into()));
        }
        self.stores
            .get_or_try_init(|| async { open_stores(&jetstream::new(client.clone()), cfg, names).await })
            .await
            .map_err(unavailable)
    }

    /// `POST /v1/files`: stores the file; a `batch` file must parse as a batch input.
    pub async fn put_file(
        &self,
        owner: &str,
        filename: &str,
        purpose: &str,
        data: Bytes,
    ) -> Result<Value, GatewayError> {
        let (_, cfg, _) = self.inner()?;
        if purpose != "batch" {
            return Err(bad(format!("`purpose` must be `batch`, not `{purpose}`")));
        }
        parse_input(&data, cfg.batch_max_requests)?;
        let s = self.stores().await?;
        let id = new_id("file-");
        let created_at = unix_secs();
        let meta = ObjectMetadata {
            name: id.clone(),
            metadata: HashMap::from([
                ("owner".to_string(), owner.to_string()),
                ("filename".to_string(), filename.to_string()),
                ("purpose".to_string(), purpose.to_string()),
                ("created_at".to_string(), created_at.to_string()),
            ]),
            ..Default::default()
        };
        let bytes = data.len();
        s.files.put(meta, &mut data.as_ref()).await.map_err(unavailable)?;
        Ok(file_object(&id, bytes, created_at, filename, purpose))
    }

    /// `GET /v1/files/{id}`
    pub async fn file(&self, owner: &str, id: &str) -> Result<Value, GatewayError> {
        if let Some((batch, errors)) = output_file(id) {
            let s = self.stores().await?;
            let (rec, _) = self.owned_batch(s, owner, batch).await.map_err(|_| missing("file", id))?;
            let body = self.collect_output(s, &rec.id, !errors).await?;
            let name = if errors { "batch_errors.jsonl" } else { "batch_output.jsonl" };
            let created = rec.completed_at.or(rec.cancelled_at).unwrap_or(rec.created_at);
            return Ok(file_object(id, body.len(), created, name, "batch_output"));
        }
        let s = self.stores().await?;
        let info = self.owned_file(s, owner, id).await?;
        let m = |k: &str| info.metadata.get(k).cloned().unwrap_or_default();
        Ok(file_object(id, info.size, m("created_at").parse().unwrap_or(0), &m("filename"), &m("purpose")))
    }

    /// `GET /v1/files/{id}/content`
    pub async fn file_content(&self, owner: &str, id: &str) -> Result<Bytes, GatewayError> {
        let s = self.stores().await?;
        if let Some((batch, errors)) = output_file(id) {
            let (rec, _) = self.owned_batch(s, owner, batch).await.map_err(|_| missing("file", id))?;
            return self.collect_output(s, &rec.id, !errors).await;
        }
        self.owned_file(s, owner, id).await?;
        self.read_file(s, id).await
    }

    async fn owned_file(&self, s: &Stores, owner: &str, id: &str) -> Result<object_store::ObjectInfo, GatewayError> {
        match s.files.info(id).await {
            Ok(info) if !info.deleted && info.metadata.get("owner").is_some_and(|o| o == owner) => Ok(info),
            Ok(_) => Err(missing("file", id)),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Err(missing("file", id)),
            Err(e) if e.kind() == object_store::InfoErrorKind::InvalidName => Err(missing("file", id)),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn read_file(&self, s: &Stores, id: &str) -> Result<Bytes, GatewayError> {
        let mut object = s.files.get(id).await.map_err(unavailable)?;
        let mut buf = Vec::with_capacity(object.info().size);
        object.read_to_end(&mut buf).await.map_err(unavailable)?;
        Ok(Bytes::from(buf))
    }

    async fn owned_batch(&self, s: &Stores, owner: &str, id: &str) -> Result<(BatchRecord, u64), GatewayError> {
        match read_batch(&s.batches, id).await? {
            Some((rec, rev)) if rec.owner == owner => Ok((rec, rev)),
            _ => Err(missing("batch", id)),
        }
    }

    /// `POST /v1/batches`: checks the input file, records the batch, queues its items.
    /// `headers` (the caller's credential and forwarded headers) go with every item.
    pub async fn create(
        &self,
        owner: &str,
        req: CreateBatch,
        lane: Priority,
        headers: &[(String, String)],
    ) -> Result<Value, GatewayError> {
        let (_, cfg, names) = self.inner()?;
        let Some((_, job_endpoint)) = ENDPOINTS.iter().find(|(url, _)| *url == req.endpoint) else {
            return Err(bad(format!(
                "`endpoint` must be /v1/chat/completions or /v1/embeddings, not `{}`",
                req.endpoint
            )));
        };
        if req.completion_window != "24h" {
            return Err(bad(format!("`completion_window` must be `24h`, not `{}`", req.completion_window)));
        }
        let metadata = req.metadata.unwrap_or(Value::Null);
        if !(metadata.is_null() || metadata.as_object().is_some_and(|m| m.len() <= 16)) {
            return Err(bad("`metadata` must be an object of at most 16 pairs".into()));
        }
        let s = self.stores().await?;
        self.owned_file(s, owner, &req.input_file_id).await?;
        let items = parse_input(&self.read_file(s, &req.input_file_id).await?, cfg.batch_max_requests)?;
        if let Some((i, item)) = items.iter().enumerate().find(|(_, it)| it.url != req.endpoint) {
            return Err(bad(format!(
                "request {} (`{}`) is for `{}`, but the batch's endpoint is `{}`",
                i + 1,
                item.custom_id,
                item.url,
                req.endpoint
            )));
        }
        let now = unix_secs();
        let mut rec = BatchRecord {
            id: new_id("batch_"),
            owner: owner.to_string(),
            endpoint: req.endpoint.clone(),
            input_file_id: req.input_file_id.clone(),
            completion_window: req.completion_window.clone(),
            status: Status::Validating,
            total: items.len() as u64,
            completed: 0,
            failed: 0,
            created_at: now,
            expires_at: now + 86_400,
            in_progress_at: None,
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            cancelling_at: None,
            cancelled_at: None,
            output_file_id: None,
            error_file_id: None,
            errors: None,
            metadata,
            lane,
        };
        // the record exists before any item runs: the runner checks it for every item
        let rev = s.batches.create(&rec.id, encode(&rec)?).await.map_err(unavailable)?;
        let queued = queue_items(&s.js, names, &rec, job_endpoint, items, headers).await;
        match queued {
            Ok(()) => {
                rec.status = Status::InProgress;
                rec.in_progress_at = Some(unix_secs());
            }
            Err(e) => {
                // items queued so far find the batch failed and are skipped
                tracing::warn!(batch = %rec.id, error = %e, "cannot queue a batch's items");
                rec.status = Status::Failed;
                rec.failed_at = Some(unix_secs());
                rec.errors = Some(json!({"object": "list", "data": [
                    {"code": "queue_unavailable", "message": format!("the items could not be queued: {e}"),
                     "param": null, "line": null}]}));
            }
        }
        s.batches.update(&rec.id, encode(&rec)?, rev).await.map_err(unavailable)?;
        Ok(rec.view(0, 0))
    }

    /// `GET /v1/batches/{id}`: the batch with current counts; ends it once every item
    /// has an output.
    pub async fn get(&self, owner: &str, id: &str) -> Result<Value, GatewayError> {
        let s = self.stores().await?;
        let (rec, rev) = self.owned_batch(s, owner, id).await?;
        self.refresh(s, rec, rev).await
    }

    async fn refresh(&self, s: &Stores, mut rec: BatchRecord, mut rev: u64) -> Result<Value, GatewayError> {
        for _ in 0..5 {
            if !matches!(rec.status, Status::InProgress | Status::Finalizing | Status::Cancelling | Status::Validating)
            {
                return Ok(rec.view(rec.completed, rec.failed));
            }
            let now = unix_secs();
            if rec.status == Status::Validating && now.saturating_sub(rec.created_at) > STALE_VALIDATING_SECS {
                // the instance creating it died while queueing the items: what was
                // queued is skipped, and the batch says why
                rec.status = Status::Failed;
                rec.failed_at = Some(now);
                rec.errors = Some(json!({"object": "list", "data": [{"code": "creation_interrupted",
                    "message": "the gateway stopped while queueing this batch's requests; create it again",
                    "param": null, "line": null}]}));
                match s.batches.update(&rec.id, encode(&rec)?, rev).await {
                    Ok(_) => return Ok(rec.view(0, 0)),
                    Err(_) => match read_batch(&s.batches, &rec.id).await? {
                        Some((r, v)) => (rec, rev) = (r, v),
                        None => return Err(missing("batch", &rec.id)),
                    },
                }
                continue;
            }
            let ok = self.count(s, &rec.id, true).await?;
            let failed = self.count(s, &rec.id, false).await?;
            if ok + failed < rec.total || rec.status == Status::Validating {
                return Ok(rec.view(ok, failed));
            }
            rec.finalizing_at.get_or_insert(now);
            if rec.status == Status::Cancelling {
                rec.status = Status::Cancelled;
                rec.cancelled_at = Some(now);
            } else {
                rec.status = Status::Completed;
                rec.completed_at = Some(now);
            }
            rec.completed = ok;
            rec.failed = failed;
            rec.output_file_id = (ok > 0).then(|| format!("file-{}-output", rec.id));
            rec.error_file_id = (failed > 0).then(|| format!("file-{}-errors", rec.id));
            match s.batches.update(&rec.id, encode(&rec)?, rev).await {
                Ok(_) => return Ok(rec.view(ok, failed)),
                // changed meanwhile (a cancel, another instance): read it again
                Err(_) => match read_batch(&s.batches, &rec.id).await? {
                    Some((r, v)) => (rec, rev) = (r, v),
                    None => return Err(missing("batch", &rec.id)),
                },
            }
        }
        Err(GatewayError::Unavailable("the batch kept changing; try again".into()))
    }

    /// `GET /v1/batches`: the caller's batches, newest first.
    pub async fn list(&self, owner: &str, limit: usize, after: Option<&str>) -> Result<Value, GatewayError> {
        let s = self.stores().await?;
        let mut keys = s.batches.keys().await.map_err(unavailable)?;
        let mut mine = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(unavailable)?;
            if let Some((rec, rev)) = read_batch(&s.batches, &k).await? {
                if rec.owner == owner {
                    mine.push((rec, rev));
                }
            }
        }
        mine.sort_by(|a, b| b.0.created_at.cmp(&a.0.created_at).then_with(|| b.0.id.cmp(&a.0.id)));
        let start = match after {
            Some(a) => mine.iter().position(|(r, _)| r.id == a).map_or(mine.len(), |p| p + 1),
            None => 0,
        };
        let has_more = mine.len() > start + limit;
        let mut data = Vec::new();
        for (rec, rev) in mine.into_iter().skip(start).take(limit) {
            data.push(self.refresh(s, rec, rev).await?);
        }
        let first = data.first().map(|b| b["id"].clone()).unwrap_or(Value::Null);
        let last = data.last().map(|b| b["id"].clone()).unwrap_or(Value::Null);
        Ok(json!({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more}))
    }

    /// `POST /v1/batches/{id}/cancel`: items not yet served are skipped (each gets an
    /// error line `batch_cancelled`); the batch is `cancelled` once all are accounted for.
    pub async fn cancel(&self, owner: &str, id: &str) -> Result<Value, GatewayError> {
        let s = self.stores().await?;
        for _ in 0..5 {
            let (mut rec, rev) = self.owned_batch(s, owner, id).await?;
            match rec.status {
                Status::Cancelling | Status::Cancelled => return self.refresh(s, rec, rev).await,
                Status::Validating | Status::InProgress | Status::Finalizing => {}
                other => {
                    return Err(bad(format!("batch `{id}` is {} and cannot be cancelled", json!(other))));
                }
            }
            rec.status = Status::Cancelling;
            rec.cancelling_at = Some(unix_secs());
            if let Ok(rev) = s.batches.update(id, encode(&rec)?, rev).await {
                return self.refresh(s, rec, rev).await;
            }
        }
        Err(GatewayError::Unavailable("the batch kept changing; try again".into()))
    }

    /// A short-lived consumer over a batch's outputs (`ok`) or errors, and how many
    /// there are (the server counts; nothing is read).
    async fn outputs(&self, s: &Stores, batch: &str, ok: bool) -> Result<(PullConsumer, u64), GatewayError> {
        let (_, _, names) = self.inner()?;
        let mut consumer = s
            .results
            .create_consumer(pull::Config {
                filter_subject: names.batch_outputs(batch, ok),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let n = consumer.info().await.map_err(unavailable)?.num_pending;
        Ok((consumer, n))
    }

    async fn drop_consumer(&self, s: &Stores, consumer: &PullConsumer) {
        let _ = s.results.delete_consumer(&consumer.cached_info().name).await;
    }

    /// How many outputs (`ok`) or errors a batch has.
    async fn count(&self, s: &Stores, batch: &str, ok: bool) -> Result<u64, GatewayError> {
        let (consumer, n) = self.outputs(s, batch, ok).await?;
        self.drop_consumer(s, &consumer).await;
        Ok(n)
    }

    /// Every output (or error) line of a batch, one JSON object per line.
    async fn collect_output(&self, s: &Stores, batch: &str, ok: bool) -> Result<Bytes, GatewayError> {
        let (consumer, total) = self.outputs(s, batch, ok).await?;
        let mut out = Vec::new();
        let mut read = 0;
        while read < total {
            let want = (total - read).min(READ_CHUNK as u64) as usize;
            let mut batch = consumer
                .fetch()
                .max_messages(want)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(unavailable)?;
            let before = read;
            while let Some(m) = batch.next().await {
                let m = m.map_err(unavailable)?;
                out.extend_from_slice(&m.payload);
                out.push(b'\n');
                read += 1;
            }
            if read == before {
                break;
            }
        }
        self.drop_consumer(s, &consumer).await;
        Ok(Bytes::from(out))
    }
}

fn file_object(id: &str, bytes: usize, created_at: u64, filename: &str, purpose: &str) -> Value {
    json!({"id": id, "object": "file", "bytes": bytes, "created_at": created_at, "filename": filename,
        "purpose": purpose, "status": "processed", "expires_at": null, "status_details": null})
}

fn encode(rec: &BatchRecord) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(rec).map(Bytes::from).map_err(|e| GatewayError::Internal(e.to_string()))
}

/// Publishes every item as a job (`Nats-Msg-Id` = the item's job id), at most
/// [`PUBLISH_WINDOW`] unconfirmed at once, and waits until JetStream has them all.
async fn queue_items(
    js: &JetStream,
    names: &Names,
    rec: &BatchRecord,
    endpoint: &str,
    items: Vec<Item>,
    headers: &[(String, String)],
) -> Result<(), NatsError> {
    let subject = names.lane_subject(rec.lane);
    let mut pending = FuturesUnordered::new();
    for (i, item) in items.into_iter().enumerate() {
        let id = format!("{}-{i}", rec.id);
        let job = json!({"id": id, "endpoint": endpoint, "body": item.body,
            "batch": {"id": rec.id, "custom_id": item.custom_id}});
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(k.as_str(), v.as_str());
        }
        h.insert("Nats-Msg-Id", id.as_str());
        let ack = js
            .publish_with_headers(subject.clone(), h, Bytes::from(job.to_string()))
            .await
            .map_err(NatsError::on("publish", &subject))?;
        pending.push(std::future::IntoFuture::into_future(ack));
        if pending.len() >= PUBLISH_WINDOW {
            if let Some(r) = pending.next().await {
                r.map_err(NatsError::on("publish ack", &subject))?;
            }
        }
    }
    while let Some(r) = pending.next().await {
        r.map_err(NatsError::on("publish ack", &subject))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, url: &str) -> String {
        json!({"custom_id": id, "method": "POST", "url": url, "body": {"model": "m"}}).to_string()
    }

    #[test]
    fn input_files_parse_and_errors_name_the_line() {
        let good = format!("{}\n\n{}\n", line("a", "/v1/chat/completions"), line("b", "/v1/chat/completions"));
        let items = parse_input(good.as_bytes(), 10).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].custom_id, "b");

        let err = |text: &str, max| parse_input(text.as_bytes(), max).unwrap_err().to_string();
        assert!(err("", 10).contains("no requests"));
        assert!(err("{not json", 10).contains("line 1"));
        let dup = format!("{}\n{}", line("a", "/v1/embeddings"), line("a", "/v1/embeddings"));
        assert!(err(&dup, 10).contains("line 2") && err(&dup, 10).contains("twice"));
        assert!(err(&line("a", "/v1/completions"), 10).contains("`url`"));
        let get = json!({"custom_id": "a", "method": "GET", "url": "/v1/embeddings", "body": {}}).to_string();
        assert!(err(&get, 10).contains("POST"));
        let not_obj = json!({"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": 3}).to_string();
        assert!(err(&not_obj, 10).contains("`body`"));
        assert!(err(&good, 1).contains("more than 1"));
        assert!(parse_input(&[0xff, 0xfe], 10).unwrap_err().to_string().contains("UTF-8"));
    }

    #[test]
    fn output_file_ids_name_their_batch() {
        assert_eq!(output_file("file-batch_12-output"), Some(("batch_12", false)));
        assert_eq!(output_file("file-batch_12-errors"), Some(("batch_12", true)));
        assert_eq!(output_file("file-0123"), None);
        assert_eq!(output_file("batch_12-output"), None);
    }

    #[test]
    fn only_live_batches_serve_items() {
        assert!(Status::InProgress.serves_items());
        assert!(Status::Validating.serves_items());
        assert!(!Status::Cancelling.serves_items());
        assert!(!Status::Failed.serves_items());
        assert_eq!(json!(Status::InProgress), "in_progress");
    }
}
