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

mod files;
pub mod http;
pub mod items;
mod outputs;
mod records;

use records::{encode, ENDPOINTS};
pub use records::{parse_input, read_batch, BatchRecord, CreateBatch, Item, Status};

use async_nats::jetstream::object_store::ObjectStore;
use async_nats::jetstream::stream;
use async_nats::jetstream::{self, kv, Context as JetStream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};
use switchyard_actors::types::unix_secs;
use switchyard_actors::GatewayError;
use switchyard_config::{Nats, Priority};
use tokio::sync::OnceCell;

use crate::ingress::nats::streams::{batches_bucket, ensure_streams, files_bucket, valid_job_id, Names, NatsError};

/// Publishes in flight at once while a batch's items are queued.
const PUBLISH_WINDOW: usize = 256;
/// A batch still `validating` this long after its creation was interrupted.
const STALE_VALIDATING_SECS: u64 = 600;
/// Output lines read per fetch while an output file is streamed.
const READ_CHUNK: usize = 256;

fn bad(message: String) -> GatewayError {
    GatewayError::BadRequest(message)
}

fn missing(what: &str, id: &str) -> GatewayError {
    let shown: String = id.chars().take(64).collect();
    GatewayError::Missing(format!("no {what} `{shown}`"))
}

/// The header that signs a Batch API item's job: HMAC-SHA256 of the job's body with its
/// batch's `item_key`. Items carry no credential (any subscriber of the jobs' subjects
/// could read one); the signature proves the job was made by the gateway for that batch,
/// so it may run as the batch's owner.
pub const ITEM_SIGNATURE: &str = "x-switchyard-item-signature";

/// The signature of one item's job body.
pub fn item_signature(item_key: &str, payload: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, item_key.as_bytes());
    hex::encode(ring::hmac::sign(&key, payload).as_ref())
}

/// Whether `signature` signs `payload` with `item_key` (in constant time).
pub fn item_signed(item_key: &str, payload: &[u8], signature: &str) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, item_key.as_bytes());
    hex::decode(signature).is_ok_and(|tag| ring::hmac::verify(&key, payload, &tag).is_ok())
}

/// A new batch's item key: 32 random bytes from the system's generator, in hex.
fn new_item_key() -> Result<String, GatewayError> {
    use ring::rand::SecureRandom as _;
    let mut raw = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| GatewayError::Internal("no system randomness for a batch's item key".into()))?;
    Ok(hex::encode(raw))
}

/// An id as the API makes them (1 to 128 characters of `[A-Za-z0-9_-]`), checked before
/// it reaches NATS as part of a subject or key: anything else is a 404 at once.
fn known_shape<'a>(what: &str, id: &'a str) -> Result<&'a str, GatewayError> {
    if valid_job_id(id) {
        Ok(id)
    } else {
        Err(missing(what, id))
    }
}

fn unavailable(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Unavailable(format!("the batch store is unavailable: {e}"))
}

use switchyard_actors::ids::new_id;

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

    async fn owned_batch(&self, s: &Stores, owner: &str, id: &str) -> Result<(BatchRecord, u64), GatewayError> {
        match read_batch(&s.batches, id).await? {
            Some((rec, rev)) if rec.owner == owner => Ok((rec, rev)),
            _ => Err(missing("batch", id)),
        }
    }

    /// `POST /v1/batches`: checks the input file, records the batch, queues its items.
    /// `headers` (the forwarded headers, never a credential) go with every item; the items
    /// run as the batch's owner, read from its record by the job runner.
    pub async fn create(
        &self,
        owner: &str,
        owner_team: Option<&str>,
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
            owner_team: owner_team.map(str::to_string),
            item_key: new_item_key()?,
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
        let id = known_shape("batch", id)?;
        let s = self.stores().await?;
        let (rec, rev) = self.owned_batch(s, owner, id).await?;
        self.refresh(s, rec, rev).await
    }

    /// `GET /v1/batches`: the caller's batches, newest first.
    pub async fn list(&self, owner: &str, limit: usize, after: Option<&str>) -> Result<Value, GatewayError> {
        self.list_where(|rec| rec.owner == owner, limit, after, false).await
    }

    /// `GET /admin/batches`: the batches `keep` accepts (of every key), newest first,
    /// each with its owner and lane.
    pub async fn list_all(
        &self,
        keep: impl Fn(&BatchRecord) -> bool,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Value, GatewayError> {
        self.list_where(keep, limit, after, true).await
    }

    async fn list_where(
        &self,
        keep: impl Fn(&BatchRecord) -> bool,
        limit: usize,
        after: Option<&str>,
        with_owner: bool,
    ) -> Result<Value, GatewayError> {
        let s = self.stores().await?;
        let mut keys = s.batches.keys().await.map_err(unavailable)?;
        let mut mine = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(unavailable)?;
            if let Some((rec, rev)) = read_batch(&s.batches, &k).await? {
                if keep(&rec) {
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
            let owner = with_owner.then(|| (rec.owner.clone(), rec.lane));
            let mut view = self.refresh(s, rec, rev).await?;
            if let (Some((owner, lane)), Some(o)) = (owner, view.as_object_mut()) {
                o.insert("owner".into(), json!(owner));
                o.insert("priority".into(), json!(lane.as_str()));
            }
            data.push(view);
        }
        let first = data.first().map(|b| b["id"].clone()).unwrap_or(Value::Null);
        let last = data.last().map(|b| b["id"].clone()).unwrap_or(Value::Null);
        Ok(json!({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more}))
    }

    /// The jobs' backlog, lane by lane: messages not yet delivered, delivered and not yet
    /// acknowledged (in progress), and redelivered.
    pub async fn backlog(&self) -> Result<Value, GatewayError> {
        let (_, _, names) = self.inner()?;
        let s = self.stores().await?;
        let stream = s.js.get_stream(&names.jobs_stream).await.map_err(unavailable)?;
        let mut lanes = Vec::new();
        for lane in crate::ingress::nats::streams::LANES {
            let row = match stream.consumer_info(names.consumer(lane)).await {
                Ok(info) => json!({"priority": lane.as_str(), "pending": info.num_pending,
                    "in_progress": info.num_ack_pending, "redelivered": info.num_redelivered}),
                // a lane no instance serves yet has no consumer: everything is pending
                Err(_) => json!({"priority": lane.as_str(), "pending": null, "in_progress": 0, "redelivered": 0}),
            };
            lanes.push(row);
        }
        Ok(json!({"object": "list", "data": lanes}))
    }

    /// `POST /v1/batches/{id}/cancel`: items not yet served are skipped (each gets an
    /// error line `batch_cancelled`); the batch is `cancelled` once all are accounted for.
    pub async fn cancel(&self, owner: &str, id: &str) -> Result<Value, GatewayError> {
        let id = known_shape("batch", id)?;
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
    // every item continues the trace of the request that made the batch
    let mut trace = Vec::new();
    let span = switchyard_actors::telemetry::current();
    switchyard_actors::telemetry::inject(&span, |k, v| trace.push((k.to_string(), v)));
    let mut pending = FuturesUnordered::new();
    for (i, item) in items.into_iter().enumerate() {
        let id = format!("{}-{i}", rec.id);
        let job = json!({"id": id, "endpoint": endpoint, "body": item.body,
            "batch": {"id": rec.id, "custom_id": item.custom_id}});
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(k.as_str(), v.as_str());
        }
        for (k, v) in &trace {
            h.insert(k.as_str(), v.as_str());
        }
        h.insert("Nats-Msg-Id", id.as_str());
        let payload = Bytes::from(job.to_string());
        h.insert(ITEM_SIGNATURE, item_signature(&rec.item_key, &payload).as_str());
        let ack =
            js.publish_with_headers(subject.clone(), h, payload).await.map_err(NatsError::on("publish", &subject))?;
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
