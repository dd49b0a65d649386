//! `[telemetry]`.

use super::*;
use crate::raw::RawTelemetry;
use crate::{OtlpProtocol, Telemetry};

pub(super) fn telemetry(
    raw: Option<RawTelemetry>,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Errors,
) -> Option<Telemetry> {
    let t = raw?;
    let protocol = match t.protocol.as_deref() {
        None | Some("grpc") => OtlpProtocol::Grpc,
        Some("http/protobuf" | "http") => OtlpProtocol::HttpProtobuf,
        Some(other) => {
            errs.push("telemetry.protocol", format!("`{other}` is not one of grpc, http/protobuf"));
            OtlpProtocol::Grpc
        }
    };
    let default_endpoint = match protocol {
        OtlpProtocol::Grpc => "http://127.0.0.1:4317",
        OtlpProtocol::HttpProtobuf => "http://127.0.0.1:4318",
    };
    let endpoint = interpolate("telemetry.endpoint", t.endpoint.as_deref().unwrap_or(default_endpoint), env, errs);
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        errs.push("telemetry.endpoint", format!("`{endpoint}` is not an http:// or https:// URL"));
    }
    let sample_ratio = t.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        errs.push("telemetry.sample_ratio", "must be between 0 and 1");
    }
    let headers = t
        .headers
        .into_iter()
        .map(|(k, v)| {
            let v = interpolate(&format!("telemetry.headers.{k}"), &v, env, errs);
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    let max_queue = at_least_one("telemetry.max_queue", t.max_queue, 4096, errs);
    let max_batch = at_least_one("telemetry.max_batch", t.max_batch, 512, errs);
    if max_batch > max_queue {
        errs.push("telemetry.max_batch", format!("{max_batch} is above telemetry.max_queue ({max_queue})"));
    }
    let telemetry = Telemetry {
        endpoint,
        protocol,
        sample_ratio,
        service_name: t.service_name.unwrap_or_else(|| "switchyard".into()),
        resource: t.resource.into_iter().collect(),
        headers,
        timeout: positive_ms("telemetry.timeout_ms", t.timeout_ms, 10_000, errs),
        max_queue,
        max_batch,
        export_interval: positive_ms("telemetry.export_interval_ms", t.export_interval_ms, 1_000, errs),
        propagate: t.propagate.unwrap_or(true),
        trace_url: t.trace_url.filter(|u| {
            let ok = (u.starts_with("https://") || u.starts_with("http://")) && u.contains("{trace_id}");
            if !ok {
                errs.push("telemetry.trace_url", "must be an http(s) URL with `{trace_id}` in it");
            }
            ok
        }),
    };
    t.enabled.unwrap_or(true).then_some(telemetry)
}
