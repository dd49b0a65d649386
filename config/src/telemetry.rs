//! `[telemetry]`: OpenTelemetry traces exported over OTLP.

use std::time::Duration;

/// Where and how spans are exported. Read at start: a reload does not change it.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// The OTLP receiver: `http://host:4317` for gRPC, `http://host:4318` (or the
    /// full `.../v1/traces` URL) for HTTP.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// The share of new traces kept, 0 to 1; a caller's `traceparent` decides for its
    /// own trace (parent-based sampling).
    pub sample_ratio: f64,
    /// `service.name`.
    pub service_name: String,
    /// Further resource attributes (`deployment.environment`, `service.namespace`, …).
    pub resource: Vec<(String, String)>,
    /// Headers sent with every export (a vendor's API key): secrets, never logged.
    pub headers: Vec<(String, String)>,
    /// One export's time limit.
    pub timeout: Duration,
    /// Spans waiting for export; past it new spans are dropped, never the requests.
    pub max_queue: usize,
    /// Spans per export.
    pub max_batch: usize,
    /// How often buffered spans are sent.
    pub export_interval: Duration,
    /// Send `traceparent` to providers.
    pub propagate: bool,
    /// A trace in the operator's tracing UI, with `{trace_id}` in it (console links).
    pub trace_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}
