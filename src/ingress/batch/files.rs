//! Batch API input files in the object store: upload, metadata, content, ownership.

use std::collections::HashMap;

use async_nats::jetstream::object_store::{self, ObjectMetadata};
use bytes::Bytes;
use serde_json::Value;
use switchyard_actors::types::unix_secs;
use switchyard_actors::GatewayError;
use tokio::io::AsyncReadExt;

use super::records::{file_object, output_file, parse_input};
use super::{bad, known_shape, missing, new_id, unavailable, BatchApi, Stores};

impl BatchApi {
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
        let id = known_shape("file", id)?;
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
        let id = known_shape("file", id)?;
        let s = self.stores().await?;
        if let Some((batch, errors)) = output_file(id) {
            let (rec, _) = self.owned_batch(s, owner, batch).await.map_err(|_| missing("file", id))?;
            return self.collect_output(s, &rec.id, !errors).await;
        }
        self.owned_file(s, owner, id).await?;
        self.read_file(s, id).await
    }

    pub(super) async fn owned_file(
        &self,
        s: &Stores,
        owner: &str,
        id: &str,
    ) -> Result<object_store::ObjectInfo, GatewayError> {
        match s.files.info(id).await {
            Ok(info) if !info.deleted && info.metadata.get("owner").is_some_and(|o| o == owner) => Ok(info),
            Ok(_) => Err(missing("file", id)),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Err(missing("file", id)),
            Err(e) if e.kind() == object_store::InfoErrorKind::InvalidName => Err(missing("file", id)),
            Err(e) => Err(unavailable(e)),
        }
    }

    pub(super) async fn read_file(&self, s: &Stores, id: &str) -> Result<Bytes, GatewayError> {
        let mut object = s.files.get(id).await.map_err(unavailable)?;
        let mut buf = Vec::with_capacity(object.info().size);
        object.read_to_end(&mut buf).await.map_err(unavailable)?;
        Ok(Bytes::from(buf))
    }
}
