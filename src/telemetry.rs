//! Logs and traces: the `tracing` subscriber. Logs go to stderr (plain on a terminal,
//! JSON lines otherwise); with `[telemetry]` the engine's spans (target
//! `switchyard::trace`) also go to an OpenTelemetry tracer whose batches are exported
//! over OTLP, gRPC or HTTP, from a runtime thread of their own, so an export never
//! waits on, or holds up, a request.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData};
use switchyard_config::{OtlpProtocol, Telemetry};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Keeps the tracer and its export thread; dropping it flushes what is buffered.
pub struct Guard {
    provider: Option<SdkTracerProvider>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            // the export thread hands the last batches to the runtime, which must still run
            let _ = p.shutdown();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Logs go to stderr: plain text with colours on a terminal; one JSON object per line
/// otherwise (a file, a pipe, a container's log driver), never with colour codes.
/// `SWITCHYARD_LOG_FORMAT=json|plain` overrides the choice; `RUST_LOG` the levels.
/// With `telemetry`, spans are exported too.
pub fn init(telemetry: Option<&Telemetry>) -> Result<Guard, String> {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let json = match std::env::var("SWITCHYARD_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("plain") => false,
        _ => !terminal,
    };
    let logs = logs_filter(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().with_current_span(false).with_span_list(false).with_filter(logs).boxed()
    } else {
        fmt.with_ansi(terminal).with_filter(logs).boxed()
    };
    let (otel, guard) = match telemetry {
        None => (None, Guard { provider: None, runtime: None }),
        Some(t) => {
            let (provider, runtime) = tracer(t)?;
            let tracer = provider.tracer("switchyard");
            let only_ours = Targets::new().with_target(switchyard_actors::telemetry::TARGET, tracing::Level::INFO);
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_level(false)
                .with_target(false)
                .with_filter(only_ours);
            switchyard_actors::telemetry::set_enabled(t.propagate);
            (Some(layer), Guard { provider: Some(provider), runtime: Some(runtime) })
        }
    };
    // a second init (tests in one process) keeps the first subscriber
    let _ = tracing_subscriber::registry().with(fmt).with(otel).try_init();
    Ok(guard)
}

type NoSpans = tracing_subscriber::filter::FilterFn<fn(&tracing::Metadata<'_>) -> bool>;
type LogsFilter = tracing_subscriber::filter::combinator::And<EnvFilter, NoSpans, tracing_subscriber::Registry>;

/// What the log layer takes: the events `RUST_LOG` enables, never a span (spans are for
/// the tracer only, so with traces off no layer wants one and none is ever made). The
/// level hint is kept: without it the combination would report none, and every
/// `trace!` of every crate (actix-http's per poll, through the `log` bridge too) would
/// be built and offered to the subscriber.
fn logs_filter(env: EnvFilter) -> LogsFilter {
    use tracing_subscriber::layer::Filter;
    let hint = <EnvFilter as Filter<tracing_subscriber::Registry>>::max_level_hint(&env)
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
    let no_spans: fn(&tracing::Metadata<'_>) -> bool = |m| !m.is_span();
    env.and(filter_fn(no_spans).with_max_level_hint(hint))
}

/// The tracer provider: sampler, resource, and a batch processor whose exports run on
/// a one-thread runtime of their own.
fn tracer(t: &Telemetry) -> Result<(SdkTracerProvider, tokio::runtime::Runtime), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(|e| format!("telemetry: cannot start the export thread: {e}"))?;
    let exporter = {
        // tonic's channel is made on (and its tasks run on) the export runtime
        let _entered = runtime.enter();
        match t.protocol {
            OtlpProtocol::Grpc => {
                use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in &t.headers {
                    let key = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| format!("telemetry.headers: `{k}` is not a valid header name"))?;
                    let value = v
                        .parse()
                        .map_err(|_| format!("telemetry.headers.{k}: the value is not a valid header value"))?;
                    headers.insert(key, value);
                }
                let metadata = MetadataMap::from_headers(headers);
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(t.endpoint.clone())
                    .with_timeout(t.timeout)
                    .with_metadata(metadata);
                if t.endpoint.starts_with("https://") {
                    use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
                    b = b.with_tls_config(ClientTlsConfig::new().with_webpki_roots());
                }
                b.build()
            }
            OtlpProtocol::HttpProtobuf => {
                let endpoint = if t.endpoint.trim_end_matches('/').ends_with("/v1/traces") {
                    t.endpoint.clone()
                } else {
                    format!("{}/v1/traces", t.endpoint.trim_end_matches('/'))
                };
                let client = reqwest::Client::builder()
                    .timeout(t.timeout)
                    .build()
                    .map_err(|e| format!("telemetry: HTTP client: {e}"))?;
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_endpoint(endpoint)
                    .with_timeout(t.timeout)
                    .with_headers(t.headers.iter().cloned().collect::<HashMap<_, _>>())
                    .with_http_client(Reqwest(client))
                    .build()
            }
        }
        .map_err(|e| format!("telemetry: {e}"))?
    };
    let exporter = OnRuntime { inner: Arc::new(exporter), runtime: runtime.handle().clone() };
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(t.max_queue)
        .with_max_export_batch_size(t.max_batch)
        .with_scheduled_delay(t.export_interval)
        .build();
    let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
    let mut resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(t.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    for (k, v) in &t.resource {
        resource = resource.with_attribute(KeyValue::new(k.clone(), v.clone()));
    }
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(t.sample_ratio))))
        .with_span_processor(processor)
        .with_resource(resource.build())
        .build();
    Ok((provider, runtime))
}

/// An exporter whose exports run on the export runtime: the batch processor's thread
/// only waits for them (tonic and reqwest need a Tokio runtime to run on).
#[derive(Debug)]
struct OnRuntime<E> {
    inner: Arc<E>,
    runtime: tokio::runtime::Handle,
}

impl<E: opentelemetry_sdk::trace::SpanExporter + 'static> opentelemetry_sdk::trace::SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let inner = self.inner.clone();
        let task = self.runtime.spawn(async move { inner.export(batch).await });
        async move { task.await.map_err(|e| OTelSdkError::InternalFailure(e.to_string()))? }
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// OTLP over HTTP with the gateway's own reqwest (rustls), on the export runtime.
#[derive(Debug)]
struct Reqwest(reqwest::Client);

impl opentelemetry_http::HttpClient for Reqwest {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: opentelemetry_http::Request<bytes::Bytes>,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<opentelemetry_http::Response<bytes::Bytes>, opentelemetry_http::HttpError>>
                + Send
                + 'b,
        >,
    >
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let url = parts.uri.to_string();
            let mut rb = self.0.request(parts.method, url).body(body);
            for (k, v) in &parts.headers {
                rb = rb.header(k, v);
            }
            let resp = rb.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?;
            let mut out = opentelemetry_http::Response::builder().status(status);
            if let Some(h) = out.headers_mut() {
                *h = headers;
            }
            Ok(out.body(body)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    /// The log layer's filter keeps `RUST_LOG`'s level as the subscriber's hint, so that
    /// a `debug!` or `trace!` anywhere costs one comparison, not a dispatch.
    #[test]
    fn the_log_filter_keeps_the_level_hint() {
        use tracing::Subscriber;
        let layer = tracing_subscriber::fmt::layer().with_filter(super::logs_filter(super::EnvFilter::new("info")));
        let subscriber = tracing_subscriber::registry().with(layer);
        assert_eq!(subscriber.max_level_hint(), Some(tracing_subscriber::filter::LevelFilter::INFO));
    }
}
