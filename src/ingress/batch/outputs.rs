//! A batch's outputs: its counts and its output and error files, read from the lines
//! its items stored in the results stream.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use bytes::Bytes;
use futures_util::stream::StreamExt;
use serde_json::{json, Value};
use switchyard_actors::types::unix_secs;
use switchyard_actors::GatewayError;

use super::records::{encode, read_batch, BatchRecord, Status};
use super::{missing, unavailable, BatchApi, Stores, READ_CHUNK, STALE_VALIDATING_SECS};

impl BatchApi {
    pub(super) async fn refresh(&self, s: &Stores, mut rec: BatchRecord, mut rev: u64) -> Result<Value, GatewayError> {
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

    /// A short-lived consumer over a batch's outputs (`ok`) or errors, and how many
    /// there are (the server counts; nothing is read).
    pub(super) async fn outputs(&self, s: &Stores, batch: &str, ok: bool) -> Result<(PullConsumer, u64), GatewayError> {
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

    pub(super) async fn drop_consumer(&self, s: &Stores, consumer: &PullConsumer) {
        let _ = s.results.delete_consumer(&consumer.cached_info().name).await;
    }

    /// How many outputs (`ok`) or errors a batch has.
    pub(super) async fn count(&self, s: &Stores, batch: &str, ok: bool) -> Result<u64, GatewayError> {
        let (consumer, n) = self.outputs(s, batch, ok).await?;
        self.drop_consumer(s, &consumer).await;
        Ok(n)
    }

    /// Every output (or error) line of a batch, one JSON object per line.
    pub(super) async fn collect_output(&self, s: &Stores, batch: &str, ok: bool) -> Result<Bytes, GatewayError> {
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
