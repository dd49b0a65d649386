//! Everything the gateway keeps on JetStream, named in one place: the streams (jobs,
//! results, usage), the buckets (Batch API files and batches, shared rate limits and
//! budgets, virtual keys), their subjects, and how they are created. Jobs, the Batch API,
//! shared quotas and key replication all open them through here. Also the error every
//! NATS path returns.

use std::time::Duration;

use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{kv, Context as JetStream};
use switchyard_config::{Nats, Priority};

/// The lanes, highest first.
pub const LANES: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

/// How long to wait before opening a bucket again after `failures` failures in a row
/// (NATS not reachable yet): the one backoff, 200 ms doubling up to 10 s.
pub fn reconnect_delay(failures: u32) -> Duration {
    switchyard_actors::retry::backoff(Duration::from_millis(200), Duration::from_secs(10), failures)
}

/// What went wrong talking to NATS: the operation, what it was on, and the server's or
/// the client's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatsError {
    /// An operation on a named thing (a stream, consumer, bucket, subject, counter).
    #[error("{op} {name}: {message}")]
    On { op: &'static str, name: String, message: String },
    /// Something NATS answered that the gateway cannot use.
    #[error("{0}")]
    Invalid(String),
}

impl NatsError {
    /// A `map_err` for an operation on `name`.
    pub fn on<E: std::fmt::Display>(op: &'static str, name: &str) -> impl FnOnce(E) -> NatsError {
        let name = name.to_string();
        move |e| NatsError::On { op, name, message: e.to_string() }
    }
}

/// Stream and subject names for a prefix.
#[derive(Clone, Debug)]
pub struct Names {
    pub jobs_stream: String,
    pub results_stream: String,
    pub usage_stream: String,
    /// Batch API input files (object store).
    pub files_bucket: String,
    /// Batch API batches (key-value).
    pub batches_bucket: String,
    /// Shared rate-limit counters (key-value, short-lived windows).
    pub rates_bucket: String,
    /// Shared budget counters (key-value, kept).
    pub spend_bucket: String,
    /// Virtual keys (key-value, kept).
    pub keys_bucket: String,
    /// Prompts made through the admin API (key-value, kept).
    pub prompts_bucket: String,
    /// Experiments made or changed through the admin API (key-value, kept).
    pub experiments_bucket: String,
    /// Stored Responses API responses (object store, `server.responses_ttl_secs`).
    pub responses_bucket: String,
    /// Request logs (prompts and answers of the requests that ask for it).
    pub logs_stream: String,
    pub prefix: String,
}

impl Names {
    pub fn new(cfg: &Nats) -> Names {
        let upper: String =
            cfg.prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        Names {
            jobs_stream: format!("{upper}_JOBS"),
            results_stream: format!("{upper}_RESULTS"),
            usage_stream: format!("{upper}_USAGE"),
            files_bucket: format!("{upper}_FILES"),
            batches_bucket: format!("{upper}_BATCHES"),
            rates_bucket: format!("{upper}_RATES"),
            spend_bucket: format!("{upper}_SPEND"),
            responses_bucket: format!("{upper}_RESPONSES"),
            prompts_bucket: format!("{upper}_PROMPTS"),
            experiments_bucket: format!("{upper}_EXPERIMENTS"),
            logs_stream: format!("{upper}_LOGS"),
            // named before the others were sanitised; kept so that upgrades find it
            keys_bucket: format!("{}_KEYS", cfg.prefix.to_ascii_uppercase()),
            prefix: cfg.prefix.clone(),
        }
    }

    pub fn lane_subject(&self, p: Priority) -> String {
        format!("{}.v1.jobs.{}", self.prefix, p.as_str())
    }

    pub fn consumer(&self, p: Priority) -> String {
        format!("{}-jobs-{}", self.prefix.replace('.', "_"), p.as_str())
    }

    pub fn result_subject(&self, id: &str) -> String {
        format!("{}.v1.results.{id}", self.prefix)
    }

    /// Where a batch item's output line is stored: `<prefix>.v1.batches.<batch>.ok.<job>`
    /// (answered) or `.err.<job>` (failed).
    pub fn batch_output(&self, batch: &str, ok: bool, job: &str) -> String {
        format!("{}.v1.batches.{batch}.{}.{job}", self.prefix, if ok { "ok" } else { "err" })
    }

    /// Every output (or error) line of a batch.
    pub fn batch_outputs(&self, batch: &str, ok: bool) -> String {
        format!("{}.v1.batches.{batch}.{}.*", self.prefix, if ok { "ok" } else { "err" })
    }

    /// A request's log entry: `<prefix>.v1.logs.<key id>.<request id>` (a consumer of
    /// `<prefix>.v1.logs.<key id>.>` reads one key's; `logs get` finds one by its id).
    pub fn log_subject(&self, key_id: &str, request_id: &str) -> String {
        format!("{}.v1.logs.{}.{}", self.prefix, subject_token(key_id), subject_token(request_id))
    }

    /// Every log entry of one key (`None`: of every key).
    pub fn logs_of_key(&self, key_id: Option<&str>) -> String {
        match key_id {
            Some(k) => format!("{}.v1.logs.{}.>", self.prefix, subject_token(k)),
            None => format!("{}.v1.logs.>", self.prefix),
        }
    }

    /// The log entry of one request, whichever key made it.
    pub fn log_of_request(&self, request_id: &str) -> String {
        format!("{}.v1.logs.*.{}", self.prefix, subject_token(request_id))
    }

    pub fn usage_subject(&self, key_id: &str) -> String {
        format!("{}.v1.usage.{}", self.prefix, subject_token(key_id))
    }
}

/// A string made safe to be one subject token.
fn subject_token(s: &str) -> String {
    let t: String =
        s.chars().map(|c| if c.is_ascii_graphic() && !matches!(c, '.' | '*' | '>') { c } else { '_' }).collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

/// A job id is one subject token: `[A-Za-z0-9_-]`, 1 to 128 characters.
pub fn valid_job_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Creates or updates the three streams.
pub async fn ensure_streams(js: &JetStream, cfg: &Nats, names: &Names) -> Result<(), NatsError> {
    let jobs = stream::Config {
        name: names.jobs_stream.clone(),
        subjects: LANES.iter().map(|p| names.lane_subject(*p)).collect(),
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        max_messages: cfg.jobs_max_messages,
        max_bytes: cfg.jobs_max_bytes,
        duplicate_window: cfg.duplicate_window,
        num_replicas: cfg.replicas,
        ..Default::default()
    };
    let results = stream::Config {
        name: names.results_stream.clone(),
        subjects: vec![format!("{}.v1.results.>", names.prefix), format!("{}.v1.batches.>", names.prefix)],
        storage: StorageType::File,
        max_age: cfg.results_max_age,
        duplicate_window: cfg.duplicate_window,
        num_replicas: cfg.replicas,
        allow_direct: true,
        ..Default::default()
    };
    let usage = stream::Config {
        name: names.usage_stream.clone(),
        subjects: vec![format!("{}.v1.usage.>", names.prefix)],
        storage: StorageType::File,
        max_age: cfg.usage_max_age,
        duplicate_window: cfg.duplicate_window,
        num_replicas: cfg.replicas,
        ..Default::default()
    };
    for c in [jobs, results, usage] {
        let name = c.name.clone();
        js.create_or_update_stream(c).await.map_err(NatsError::on("stream", &name))?;
    }
    Ok(())
}

/// Opens the Batch API's files bucket (object store), creating it when missing.
pub async fn files_bucket(js: &JetStream, cfg: &Nats, names: &Names) -> Result<ObjectStore, NatsError> {
    match js.get_object_store(&names.files_bucket).await {
        Ok(s) => Ok(s),
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: names.files_bucket.clone(),
                description: Some("Switchyard Batch API input files".into()),
                max_age: cfg.results_max_age,
                storage: StorageType::File,
                num_replicas: cfg.replicas,
                ..Default::default()
            })
            .await
            .map_err(NatsError::on("object store", &names.files_bucket)),
    }
}

/// The stored-responses bucket (an object store: a conversation's record may be larger
/// than a NATS message), entries kept `ttl` (`None`: for ever).
pub async fn responses_bucket(
    js: &JetStream,
    cfg: &Nats,
    names: &Names,
    ttl: Option<Duration>,
) -> Result<ObjectStore, NatsError> {
    match js.get_object_store(&names.responses_bucket).await {
        Ok(s) => Ok(s),
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: names.responses_bucket.clone(),
                description: Some("Switchyard stored Responses API responses".into()),
                max_age: ttl.unwrap_or_default(),
                storage: StorageType::File,
                num_replicas: cfg.replicas,
                ..Default::default()
            })
            .await
            .map_err(NatsError::on("object store", &names.responses_bucket)),
    }
}

/// The batches bucket (created or updated); the job runner reads it too.
///
/// The bucket's stream is made here with the settings a KV bucket has, instead of by
/// `create_key_value`: that one first asks for the account info, whose answer from
/// nats-server 2.9 (Debian's) async-nats 0.51 cannot parse.
pub async fn batches_bucket(js: &JetStream, cfg: &Nats, names: &Names) -> Result<kv::Store, NatsError> {
    kv_bucket(js, &names.batches_bucket, "Switchyard Batch API batches", cfg.results_max_age, cfg).await
}

/// Creates (or updates) a key-value bucket's stream with the settings a bucket has, and
/// opens it: async-nats' `create_key_value` cannot parse nats-server 2.9's account info.
/// `max_age` zero keeps entries for ever.
pub async fn kv_bucket(
    js: &JetStream,
    bucket: &str,
    description: &str,
    max_age: Duration,
    cfg: &Nats,
) -> Result<kv::Store, NatsError> {
    let config = stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: StorageType::File,
        num_replicas: cfg.replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    js.create_or_update_stream(config).await.map_err(NatsError::on("key-value bucket", bucket))?;
    js.get_key_value(bucket).await.map_err(NatsError::on("key-value bucket", bucket))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `[nats]` section with prefix `acme.ai` (shared by the NATS ingress's unit tests).
    pub(crate) fn cfg() -> Nats {
        let raw = "[nats]\nurl = \"nats://127.0.0.1:4222\"\nprefix = \"acme.ai\"\n";
        match switchyard_config::load_str(raw, std::path::Path::new("."), &|_| None) {
            Ok(c) => c.nats.clone().unwrap(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn names_follow_the_prefix() {
        let n = Names::new(&cfg());
        assert_eq!(n.jobs_stream, "ACME_AI_JOBS");
        assert_eq!(n.lane_subject(Priority::Low), "acme.ai.v1.jobs.low");
        assert_eq!(n.result_subject("j1"), "acme.ai.v1.results.j1");
        assert_eq!(n.usage_subject("team.a b"), "acme.ai.v1.usage.team_a_b");
        assert_eq!(n.consumer(Priority::High), "acme_ai-jobs-high");
    }

    #[test]
    fn job_ids_are_one_subject_token() {
        assert!(valid_job_id("job-1_A"));
        for bad in ["", "a.b", "a*", "a b", ">", &"x".repeat(129)] {
            assert!(!valid_job_id(bad), "{bad}");
        }
    }
}
