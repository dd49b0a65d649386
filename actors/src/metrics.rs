//! Metric names, declared once. Base units (`_seconds`, `_total`), Prometheus style.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const REQUESTS_TOTAL: &str = "switchyard_requests_total";
pub const REQUEST_DURATION: &str = "switchyard_request_duration_seconds";
pub const UPSTREAM_DURATION: &str = "switchyard_upstream_duration_seconds";
pub const TIME_TO_FIRST_TOKEN: &str = "switchyard_time_to_first_token_seconds";
pub const GATEWAY_OVERHEAD: &str = "switchyard_gateway_overhead_seconds";
pub const TOKENS_TOTAL: &str = "switchyard_tokens_total";
pub const COST_USD_TOTAL: &str = "switchyard_cost_usd_total";
pub const CACHE_REQUESTS_TOTAL: &str = "switchyard_cache_requests_total";
pub const RATE_LIMITED_TOTAL: &str = "switchyard_rate_limited_total";
pub const QUEUE_DEPTH: &str = "switchyard_queue_depth";
pub const INFLIGHT_REQUESTS: &str = "switchyard_inflight_requests";
pub const LEDGER_RECORDS_TOTAL: &str = "switchyard_ledger_records_total";
pub const LEDGER_FLUSH_DURATION: &str = "switchyard_ledger_flush_seconds";
pub const CONFIG_RELOADS_TOTAL: &str = "switchyard_config_reloads_total";
pub const NATS_CONNECTED: &str = "switchyard_nats_connected";
pub const NATS_REQUESTS_TOTAL: &str = "switchyard_nats_requests_total";
pub const JOBS_TOTAL: &str = "switchyard_jobs_total";
pub const JOBS_INFLIGHT: &str = "switchyard_jobs_inflight";
pub const JOB_DURATION: &str = "switchyard_job_duration_seconds";
pub const JOB_QUEUE_WAIT: &str = "switchyard_job_queue_wait_seconds";
pub const FAILOVERS_TOTAL: &str = "switchyard_failovers_total";
pub const TARGET_UP: &str = "switchyard_target_up";
pub const PROVIDER_UP: &str = "switchyard_provider_up";
pub const BUDGET_REMAINING: &str = "switchyard_budget_remaining_usd";
pub const GUARDRAIL_ACTIONS_TOTAL: &str = "switchyard_guardrail_actions_total";
pub const SHARED_LIMITS_FALLBACK_TOTAL: &str = "switchyard_shared_limits_fallback_total";
pub const REQUEST_LOGS_TOTAL: &str = "switchyard_request_logs_total";
pub const REQUEST_LOGS_DROPPED_TOTAL: &str = "switchyard_request_logs_dropped_total";
pub const TARGET_LATENCY_EWMA: &str = "switchyard_target_latency_ewma_seconds";
pub const UPSTREAM_ATTEMPTS_TOTAL: &str = "switchyard_upstream_attempts_total";
pub const RETRIES_TOTAL: &str = "switchyard_retries_total";
pub const FALLBACKS_TOTAL: &str = "switchyard_fallbacks_total";
pub const ROUTES_TOTAL: &str = "switchyard_routes_total";
pub const HEALTH_CHECKS_TOTAL: &str = "switchyard_health_checks_total";
pub const EXPERIMENT_REQUESTS_TOTAL: &str = "switchyard_experiment_requests_total";
pub const EXPERIMENT_TOKENS_TOTAL: &str = "switchyard_experiment_tokens_total";
pub const EXPERIMENT_COST_USD_TOTAL: &str = "switchyard_experiment_cost_usd_total";
pub const EXPERIMENT_DURATION: &str = "switchyard_experiment_request_duration_seconds";
pub const FEEDBACK_TOTAL: &str = "switchyard_feedback_total";
pub const SEMANTIC_CACHE_REQUESTS_TOTAL: &str = "switchyard_semantic_cache_requests_total";
pub const SEMANTIC_CACHE_SIMILARITY: &str = "switchyard_semantic_cache_similarity";
pub const SEMANTIC_CACHE_EMBED_SECONDS: &str = "switchyard_semantic_cache_embedding_seconds";
pub const SEMANTIC_CACHE_ENTRIES: &str = "switchyard_semantic_cache_entries";
pub const SEMANTIC_CACHE_MEMORY_BYTES: &str = "switchyard_semantic_cache_memory_bytes";

/// Histograms and the buckets they are exported with.
pub const HISTOGRAMS: &[&str] = &[
    REQUEST_DURATION,
    UPSTREAM_DURATION,
    TIME_TO_FIRST_TOKEN,
    GATEWAY_OVERHEAD,
    LEDGER_FLUSH_DURATION,
    JOB_DURATION,
    JOB_QUEUE_WAIT,
    EXPERIMENT_DURATION,
    SEMANTIC_CACHE_EMBED_SECONDS,
];

/// Buckets for similarities (cosine, 0 to 1).
pub const SIMILARITY_BUCKETS: &[f64] =
    &[0.5, 0.6, 0.7, 0.8, 0.85, 0.88, 0.9, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0];

/// Buckets for request-scale latencies (seconds).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 120.0,
];

/// Describes every metric; call once at start, after installing the recorder.
pub fn describe_all() {
    describe_counter!(REQUESTS_TOTAL, "Requests finished, by model alias, provider and HTTP status.");
    describe_counter!(EXPERIMENT_REQUESTS_TOTAL, "Requests in an experiment, by experiment, variant and HTTP status.");
    describe_counter!(
        EXPERIMENT_TOKENS_TOTAL,
        "Tokens of requests in an experiment, by experiment, variant and direction."
    );
    describe_gauge!(EXPERIMENT_COST_USD_TOTAL, "Cost in USD of requests in an experiment, by experiment and variant.");
    describe_histogram!(
        EXPERIMENT_DURATION,
        Unit::Seconds,
        "Whole request time in an experiment, by experiment and variant."
    );
    describe_counter!(FEEDBACK_TOTAL, "Feedback received on requests (POST /v1/feedback and its NATS twin).");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Whole request time as the client sees it.");
    describe_histogram!(UPSTREAM_DURATION, Unit::Seconds, "Time spent waiting on the provider.");
    describe_histogram!(TIME_TO_FIRST_TOKEN, Unit::Seconds, "Time to the first streamed content chunk.");
    describe_histogram!(GATEWAY_OVERHEAD, Unit::Seconds, "Time spent inside the gateway, upstream excluded.");
    describe_counter!(
        TOKENS_TOTAL,
        "Tokens, by direction (input, output; of those, cached and cache_write input and reasoning output) and model alias."
    );
    describe_counter!(COST_USD_TOTAL, "Cost in USD from pricing.toml, by model alias.");
    describe_counter!(CACHE_REQUESTS_TOTAL, "Cache lookups, by result (hit, miss, bypass).");
    describe_counter!(
        SEMANTIC_CACHE_REQUESTS_TOTAL,
        "Semantic cache lookups, by alias and result (hit, miss, guard_rejected, timeout, error, skipped, bypass)."
    );
    describe_histogram!(SEMANTIC_CACHE_SIMILARITY, "Similarity of the nearest stored prompt, per semantic lookup.");
    describe_histogram!(SEMANTIC_CACHE_EMBED_SECONDS, Unit::Seconds, "The semantic cache's embedding calls.");
    describe_gauge!(SEMANTIC_CACHE_ENTRIES, "Entries in the semantic cache.");
    describe_gauge!(SEMANTIC_CACHE_MEMORY_BYTES, Unit::Bytes, "Memory held by the semantic cache's index.");
    describe_counter!(RATE_LIMITED_TOTAL, "Requests refused by a limit, by kind.");
    describe_gauge!(QUEUE_DEPTH, "Requests waiting for a provider concurrency slot.");
    describe_gauge!(INFLIGHT_REQUESTS, "Requests being served now.");
    describe_counter!(LEDGER_RECORDS_TOTAL, "Usage records durably written to the ledger.");
    describe_histogram!(LEDGER_FLUSH_DURATION, Unit::Seconds, "Duration of one ledger group commit.");
    describe_counter!(CONFIG_RELOADS_TOTAL, "Config reloads, by result (ok, invalid).");
    describe_gauge!(NATS_CONNECTED, "1 while the NATS connection is up, 0 otherwise.");
    describe_counter!(NATS_REQUESTS_TOTAL, "NATS request/reply requests, by api and status.");
    describe_counter!(
        JOBS_TOTAL,
        "Durable jobs handled, by lane and outcome (completed, failed, retried, deferred, duplicate)."
    );
    describe_gauge!(JOBS_INFLIGHT, "Durable jobs being served by this instance now.");
    describe_histogram!(JOB_DURATION, Unit::Seconds, "Job time from its publication to its stored result.");
    describe_histogram!(JOB_QUEUE_WAIT, Unit::Seconds, "Job time from its publication to the start of its delivery.");
    describe_gauge!(TARGET_UP, "0 while a target's (provider, upstream model) circuit breaker is open, else 1.");
    describe_gauge!(PROVIDER_UP, "0 while a provider's active health checks fail, else 1.");
    describe_counter!(REQUEST_LOGS_TOTAL, "Request log entries published to JetStream.");
    describe_counter!(
        REQUEST_LOGS_DROPPED_TOTAL,
        "Request log entries dropped: the queue to JetStream was full or a publish failed."
    );
    describe_counter!(
        SHARED_LIMITS_FALLBACK_TOTAL,
        "Requests the shared limits bucket could not decide (unreachable): `local` ones limited per instance, `refuse` ones answered 503."
    );
    describe_counter!(
        GUARDRAIL_ACTIONS_TOTAL,
        "Guardrail actions taken (redact, mask, pseudonymize, block, log), by guardrail and action."
    );
    describe_gauge!(BUDGET_REMAINING, "USD left in a key's or team's budget this period (reservations deducted).");
    describe_counter!(
        FAILOVERS_TOTAL,
        "Requests moved to another target after a retryable failure, by the target that failed."
    );
    describe_gauge!(
        TARGET_LATENCY_EWMA,
        Unit::Seconds,
        "Peak-EWMA latency of a target (provider, upstream model) as the latency strategy sees it."
    );
    describe_counter!(UPSTREAM_ATTEMPTS_TOTAL, "Calls sent to a provider, retries included, by provider.");
    describe_counter!(RETRIES_TOTAL, "Calls repeated on the same provider after a retryable failure, by provider.");
    describe_counter!(
        FALLBACKS_TOTAL,
        "Requests served by a fallback alias after every target of theirs failed, by alias and fallback."
    );
    describe_counter!(ROUTES_TOTAL, "Requests whose alias a [[routes]] rule picked, by rule and alias.");
    describe_counter!(HEALTH_CHECKS_TOTAL, "Active health checks, by provider and result (ok, failed).");
}

/// Handles of the metrics every request touches, registered once per thread: a
/// registration builds the key, hashes it and looks it up under a lock, where a handle
/// is one atomic update. (Registered on first use, so after the recorder is installed.)
pub struct Hot {
    pub inflight: metrics::Gauge,
    pub request_duration: metrics::Histogram,
    pub time_to_first_token: metrics::Histogram,
    pub overhead: metrics::Histogram,
    /// `(alias, provider, status)`: few per thread (the config bounds aliases and
    /// providers), so a scan beats hashing; cleared if it ever grows past [`HOT_CAP`].
    requests: Vec<((String, String, u16), metrics::Counter)>,
    upstream: Vec<(String, metrics::Histogram)>,
    /// `(EXPERIMENT/VARIANT, status)`.
    experiments: Vec<((String, u16), ExperimentHandles)>,
}

const HOT_CAP: usize = 256;

impl Hot {
    fn new() -> Hot {
        Hot {
            inflight: metrics::gauge!(INFLIGHT_REQUESTS),
            request_duration: metrics::histogram!(REQUEST_DURATION),
            time_to_first_token: metrics::histogram!(TIME_TO_FIRST_TOKEN),
            overhead: metrics::histogram!(GATEWAY_OVERHEAD),
            requests: Vec::new(),
            upstream: Vec::new(),
            experiments: Vec::new(),
        }
    }

    /// The `switchyard_experiment_*` handles of a variant and status.
    fn experiment(&mut self, label: &str, status: u16) -> &ExperimentHandles {
        cached(
            &mut self.experiments,
            |(l, s)| *s == status && l == label,
            || ((label.to_string(), status), ExperimentHandles::register(label, status)),
        )
    }

    /// `switchyard_requests_total{model, provider, status}`.
    pub fn requests(&mut self, alias: &str, provider: &str, status: u16) -> &metrics::Counter {
        cached(
            &mut self.requests,
            |(a, p, s)| *s == status && a == alias && p == provider,
            || {
                let c = metrics::counter!(REQUESTS_TOTAL, "model" => alias.to_string(),
                    "provider" => provider.to_string(), "status" => status.to_string());
                ((alias.to_string(), provider.to_string(), status), c)
            },
        )
    }

    /// `switchyard_upstream_duration_seconds{provider}`.
    pub fn upstream(&mut self, provider: &str) -> &metrics::Histogram {
        cached(
            &mut self.upstream,
            |p| p == provider,
            || (provider.to_string(), metrics::histogram!(UPSTREAM_DURATION, "provider" => provider.to_string())),
        )
    }
}

/// The handle kept for the labels `matches` finds in `list`, or one `register`ed now
/// (the list is cleared first if it reached [`HOT_CAP`]).
fn cached<K, H>(list: &mut Vec<(K, H)>, matches: impl Fn(&K) -> bool, register: impl FnOnce() -> (K, H)) -> &H {
    let i = match list.iter().position(|(k, _)| matches(k)) {
        Some(i) => i,
        None => {
            if list.len() >= HOT_CAP {
                list.clear();
            }
            list.push(register());
            list.len() - 1
        }
    };
    &list[i].1
}

thread_local! {
    static HOT: std::cell::RefCell<Option<Hot>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's [`Hot`] handles (with handles registered just for it
/// while the thread is being torn down, or if `f` ever ran inside itself).
pub fn hot(f: impl FnOnce(&mut Hot)) {
    let mut f = Some(f);
    let _ = HOT.try_with(|h| {
        if let (Ok(mut h), Some(f)) = (h.try_borrow_mut(), f.take()) {
            f(h.get_or_insert_with(Hot::new));
        }
    });
    if let Some(f) = f {
        f(&mut Hot::new());
    }
}

/// A finished request of an experiment (`label` is `EXPERIMENT/VARIANT`).
pub fn experiment(label: &str, status: u16, elapsed: std::time::Duration, tokens: (u64, u64), cost: f64) {
    hot(|h| {
        let e = h.experiment(label, status);
        e.requests.increment(1);
        e.input.increment(tokens.0);
        e.output.increment(tokens.1);
        // a float that only grows, as `switchyard_cost_usd_total` (counters are integers)
        e.cost.increment(cost);
        e.duration.record(elapsed.as_secs_f64());
    });
}

/// The handles of one experiment variant and status.
pub struct ExperimentHandles {
    requests: metrics::Counter,
    input: metrics::Counter,
    output: metrics::Counter,
    cost: metrics::Gauge,
    duration: metrics::Histogram,
}

impl ExperimentHandles {
    fn register(label: &str, status: u16) -> ExperimentHandles {
        let (e, v) = label.split_once('/').unwrap_or((label, ""));
        let (e, v) = (e.to_string(), v.to_string());
        let tokens = |direction: &'static str| metrics::counter!(EXPERIMENT_TOKENS_TOTAL, "experiment" => e.clone(), "variant" => v.clone(), "direction" => direction);
        ExperimentHandles {
            requests: metrics::counter!(EXPERIMENT_REQUESTS_TOTAL, "experiment" => e.clone(), "variant" => v.clone(),
                "status" => status.to_string()),
            input: tokens("input"),
            output: tokens("output"),
            cost: metrics::gauge!(EXPERIMENT_COST_USD_TOTAL, "experiment" => e.clone(), "variant" => v.clone()),
            duration: metrics::histogram!(EXPERIMENT_DURATION, "experiment" => e, "variant" => v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_handles_are_found_again_and_bounded() {
        let mut list: Vec<(usize, usize)> = Vec::new();
        let mut made = 0;
        for round in 0..2 {
            for k in 0..HOT_CAP {
                let h = *cached(
                    &mut list,
                    |x| *x == k,
                    || {
                        made += 1;
                        (k, k * 10)
                    },
                );
                assert_eq!(h, k * 10);
            }
            // the second round finds every handle registered in the first
            assert_eq!(made, HOT_CAP, "round {round}");
        }
        // one more label set: the list starts over rather than growing
        assert_eq!(*cached(&mut list, |x| *x == HOT_CAP, || (HOT_CAP, 1)), 1);
        assert_eq!(list.len(), 1);
    }
}
