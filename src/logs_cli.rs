//! `switchyard logs`: reads the request logs from JetStream, with the `[nats]` settings
//! of the gateway's config file. `tail` prints entries as they are stored (one JSON
//! object per line; `--key` for one key's, `--last N` to start N entries back); `get`
//! prints one request's entry.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use clap::Subcommand;
use futures_util::StreamExt;

use crate::ingress::nats::streams::Names;

#[derive(Subcommand)]
pub enum Action {
    /// Prints entries as they are stored, one JSON object per line.
    Tail {
        /// Only this key's requests.
        #[arg(long)]
        key: Option<String>,
        /// Start this many entries back (default: only new ones).
        #[arg(long, default_value_t = 0)]
        last: u64,
        /// Stop after this many entries.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Prints one request's entry (its `x-request-id`).
    Get { request_id: String },
}

pub fn run(config: &Path, action: Action) -> ExitCode {
    let cfg = match switchyard_config::load(config) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{}: invalid config: {errs}", config.display());
            return ExitCode::from(2);
        }
    };
    let Some(nats) = cfg.nats.clone() else {
        eprintln!("{}: no [nats] section: request logs live on JetStream", config.display());
        return ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard logs: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(read(&nats, action)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("switchyard logs: {e}");
            ExitCode::from(1)
        }
    }
}

async fn read(cfg: &switchyard_config::Nats, action: Action) -> Result<ExitCode, String> {
    let names = Names::new(cfg);
    let client = crate::ingress::nats::connect(cfg).await.map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client);
    let stream = tokio::time::timeout(Duration::from_secs(10), js.get_stream(&names.logs_stream))
        .await
        .map_err(|_| format!("NATS at {} did not answer", cfg.url))?
        .map_err(|e| format!("stream {}: {e}", names.logs_stream))?;
    match action {
        Action::Get { request_id } => match crate::ingress::nats::logs_read::one(&stream, &names, &request_id).await? {
            Some(v) => {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("no log entry for request {request_id}");
                Ok(ExitCode::from(1))
            }
        },
        Action::Tail { key, last, count } => {
            let filter = names.logs_of_key(key.as_deref());
            let deliver_policy = if last == 0 {
                DeliverPolicy::New
            } else {
                let info = stream.get_info().await.map_err(|e| e.to_string())?;
                let from = info.state.last_sequence.saturating_sub(last - 1).max(info.state.first_sequence);
                DeliverPolicy::ByStartSequence { start_sequence: from }
            };
            let consumer = crate::ingress::nats::logs_read::reader(&stream, filter, deliver_policy).await?;
            let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
            let mut seen = 0;
            while let Some(m) = messages.next().await {
                let m = m.map_err(|e| e.to_string())?;
                println!("{}", String::from_utf8_lossy(&m.payload));
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
