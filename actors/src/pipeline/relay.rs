//! Relays an upstream SSE stream to the client as it arrives (pull-based, so a slow
//! client slows the upstream read: backpressure without a buffer), meters it, and fills
//! the cache at the end. An upstream failure mid-stream ends the stream with an error
//! event and never with `[DONE]`.
//!
//! A native stream (the client speaks the provider's format, as `/v1/messages` to
//! Anthropic) is relayed byte for byte: its decoder turns a copy into OpenAI's events
//! for the metering, and a failure the provider did not report itself ends it with an
//! error event of the client's format.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Future, Stream};

use super::finish::{Finisher, CLIENT_CLOSED};
use crate::providers::openai::StreamAccumulator;
use crate::providers::sse::{data_event, SseParser, DONE};
use crate::providers::{Adapter, StreamTranslate};
use crate::upstream::{ByteStream, UpstreamError};
use crate::GatewayError;

pub struct Relay {
    upstream: ByteStream,
    parser: SseParser,
    acc: StreamAccumulator,
    out: VecDeque<Bytes>,
    finisher: Finisher,
    client_wants_usage: bool,
    provider: String,
    saw_done: bool,
    ended: bool,
    /// Native relay: what turns the provider's bytes into OpenAI's events, and the
    /// provider's adapter (its own error event).
    decoder: Option<Box<dyn StreamTranslate>>,
    adapter: Option<&'static dyn Adapter>,
    /// Native relay: the provider reported the failure in its own stream already.
    reported: bool,
    /// `switchyard.stream`: from the first content to the end.
    span: tracing::Span,
    /// The client gets real values back for pseudonyms: the request log keeps no answer.
    pub pseudonymized: bool,
}

impl Relay {
    pub fn new(upstream: ByteStream, finisher: Finisher, client_wants_usage: bool, provider: String) -> Relay {
        let finisher_root = finisher.root.clone();
        Relay {
            upstream,
            parser: SseParser::new(),
            acc: StreamAccumulator::default(),
            out: VecDeque::new(),
            finisher,
            client_wants_usage,
            provider,
            saw_done: false,
            ended: false,
            decoder: None,
            adapter: None,
            reported: false,
            span: crate::telemetry::stage(&finisher_root, "switchyard.stream"),
            pseudonymized: false,
        }
    }

    /// Relays the provider's own bytes when `decoder` is given (a native stream of the
    /// provider that `adapter` speaks for).
    pub fn native(mut self, decoder: Option<Box<dyn StreamTranslate>>, adapter: &'static dyn Adapter) -> Relay {
        self.adapter = decoder.is_some().then_some(adapter);
        self.decoder = decoder;
        self
    }

    fn fail(&mut self, err: GatewayError) {
        let status = err.class().status;
        tracing::warn!(provider = %self.provider, error = %err, "stream failed mid-way");
        match self.adapter {
            None => self.out.push_back(data_event(&err.body().to_string())),
            Some(a) if !self.reported => self.out.push_back(a.native_error_event(err.class(), &err.to_string())),
            Some(_) => {}
        }
        self.ended = true;
        crate::telemetry::failed(&self.span, err.class().code);
        self.span = tracing::Span::none();
        if !self.finisher.trace.is_disabled() {
            self.finisher.answer = Some(self.acc.answer());
        }
        let text = std::mem::take(&mut self.acc.content_text);
        self.finisher.finish(status, self.acc.usage, &text, None);
    }

    fn complete(&mut self) {
        if self.adapter.is_none() {
            self.out.push_back(Bytes::from_static(DONE));
        }
        self.ended = true;
        self.span = tracing::Span::none();
        if !self.finisher.trace.is_disabled() {
            self.finisher.answer = Some(self.acc.answer());
        }
        let body = self.finisher.wants_body().then(|| self.acc.completion().to_string().into_bytes());
        if let Some(draft) = &mut self.finisher.log {
            if self.pseudonymized {
                draft.withhold("pseudonymized");
            } else {
                draft.answer(self.acc.completion().to_string().as_bytes());
            }
        }
        let text = std::mem::take(&mut self.acc.content_text);
        self.finisher.finish(200, self.acc.usage, &text, body);
    }

    /// A native stream's bytes: sent as they are, metered through the decoder. The
    /// chunk that ends the stream completes it at once, so that it is the last event,
    /// held until the record is durable.
    fn on_native(&mut self, decoder: &mut dyn StreamTranslate, raw: Bytes) {
        let translated = decoder.feed(&raw);
        self.out.push_back(raw);
        match translated {
            Ok(parts) => self.on_bytes(&parts.concat()),
            Err(message) => {
                self.fail(GatewayError::UpstreamInvalid { provider: self.provider.clone(), message });
            }
        }
        // the decoder says `[DONE]` at the provider's own end (Anthropic's `message_stop`);
        // a finish reason alone is not the end (the usage may follow)
        if !self.ended && self.saw_done {
            self.complete();
        }
    }

    /// The end of a native stream: what its decoder still holds.
    fn on_native_end(&mut self) {
        if let Some(parts) = self.decoder.as_mut().map(|d| d.finish()) {
            if !parts.is_empty() {
                self.on_bytes(&parts.concat());
            }
        }
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        let native = self.adapter.is_some();
        let events = match self.parser.feed(bytes) {
            Ok(ev) => ev,
            Err(e) => {
                return self
                    .fail(GatewayError::UpstreamInvalid { provider: self.provider.clone(), message: e.to_string() })
            }
        };
        for ev in events {
            if self.ended {
                return;
            }
            if ev.data == "[DONE]" {
                self.saw_done = true;
                continue;
            }
            let facts = match self.acc.add_str(&ev.data) {
                Ok(f) => f,
                Err(e) => {
                    return self.fail(GatewayError::UpstreamInvalid {
                        provider: self.provider.clone(),
                        message: format!("stream chunk is not JSON: {e}"),
                    })
                }
            };
            if let Some(message) = facts.error {
                // a native client has the provider's own error event already
                self.reported = native;
                let message = crate::redact::credentials(&message, &[]);
                return self.fail(GatewayError::UpstreamStatus {
                    provider: self.provider.clone(),
                    status: 502,
                    message,
                    retry_after: None,
                });
            }
            if facts.had_content && self.finisher.ttft.is_none() {
                self.finisher.ttft = Some(self.finisher.received.elapsed());
            }
            let usage_only = facts.usage_only;
            // a native client has the provider's own bytes already; a usage chunk is sent
            // only when the client asked for it (the gateway always does)
            if native || (usage_only && !self.client_wants_usage) {
                continue;
            }
            self.out.push_back(data_event(&ev.data));
        }
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            // sync durability: the last event waits for the record's commit
            if this.ended && this.out.len() == 1 {
                if let Some(rx) = this.finisher.durable.as_mut() {
                    if Pin::new(rx).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.finisher.durable = None;
                }
            }
            if let Some(b) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(b)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(bytes))) => match this.decoder.take() {
                    Some(mut decoder) => {
                        this.on_native(decoder.as_mut(), bytes);
                        this.decoder = Some(decoder);
                    }
                    None => this.on_bytes(&bytes),
                },
                Poll::Ready(Some(Err(e))) => {
                    let provider = this.provider.clone();
                    this.fail(match e {
                        UpstreamError::Body(m) => GatewayError::UpstreamInvalid {
                            provider,
                            message: format!("connection lost mid-stream: {m}"),
                        },
                        other => other.into_gateway(&provider),
                    })
                }
                Poll::Ready(None) => {
                    this.on_native_end();
                    if this.ended {
                        continue;
                    }
                    if this.saw_done || this.acc.finished() {
                        this.complete();
                    } else {
                        let provider = this.provider.clone();
                        this.fail(GatewayError::UpstreamInvalid {
                            provider,
                            message: "the stream ended before it was complete".into(),
                        });
                    }
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if !self.finisher.finished {
            let text = std::mem::take(&mut self.acc.content_text);
            self.finisher.finish(CLIENT_CLOSED, self.acc.usage, &text, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::Value;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use actix::prelude::*;
    use futures_util::StreamExt;

    use super::*;
    use crate::actors::accounting::{Accounting, Flush};
    use crate::actors::cache::Cache;
    use crate::store::Store;
    use crate::types::{Endpoint, UsageRecord};

    const CHUNK_A: &str = r#"{"id":"c","model":"m","created":1,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}"#;
    const CHUNK_B: &str = r#"{"id":"c","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#;
    const USAGE: &str = r#"{"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#;

    fn sse(data: &str) -> Result<Bytes, UpstreamError> {
        Ok(data_event(data))
    }

    /// Relays `chunks` (optionally stopping after `take` output events, as a client
    /// that leaves would) and returns the events and the ledger records.
    async fn relay(chunks: Vec<Result<Bytes, UpstreamError>>, take: Option<usize>) -> (Vec<String>, Vec<UsageRecord>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let text = "[[providers]]\nname = \"p\"\nkind = \"mock\"\n[[models]]\nalias = \"a\"\ntargets = [{ provider = \"p\", model = \"m\" }]\n";
        let config = Arc::new(switchyard_config::load_str(text, Path::new("."), &|_| None).unwrap());
        let (acc, sink) = Accounting::start_with_sink(&Arbiter::current(), store.clone(), Duration::from_secs(60), 100);
        let record = UsageRecord {
            provider: "p".into(),
            upstream_model: "m".into(),
            ..UsageRecord::new("r", 1, "k", Endpoint::Chat, "a", true)
        };
        let fin = Finisher {
            record,
            config,
            accounting: sink,
            cache: Arc::new(Cache::new(store.clone(), 1 << 20).start().recipient()),
            cache_put: None,
            semantic_put: None,
            ticket: None,
            permit: None,
            slot: None,
            received: Instant::now(),
            upstream_time: Duration::ZERO,
            ttft: None,
            prompt_estimate: 7,
            finished: false,
            _inflight: None,
            sync: false,
            job: None,
            durable: None,
            root: tracing::Span::none(),
            trace: tracing::Span::none(),
            answer: None,
            log: None,
        };
        let relay = Relay::new(Box::pin(futures_util::stream::iter(chunks)), fin, false, "p".into());
        let events: Vec<String> = relay
            .take(take.unwrap_or(usize::MAX))
            .map(|b| match b {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(never) => match never {},
            })
            .collect()
            .await;
        acc.send(Flush).await.unwrap();
        (events, store.usage_since(0).unwrap())
    }

    fn error_of(last: &str) -> Value {
        let json = last.strip_prefix("data: ").unwrap().trim();
        serde_json::from_str::<Value>(json).unwrap()["error"].clone()
    }

    #[actix_rt::test]
    async fn complete_stream_is_relayed_and_metered_with_the_gateways_usage_chunk_hidden() {
        let (events, records) = relay(vec![sse(CHUNK_A), sse(CHUNK_B), sse(USAGE), sse("[DONE]")], None).await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[2], "data: [DONE]\n\n");
        assert!(!events.iter().any(|e| e.contains("prompt_tokens")), "the client did not ask for usage");
        let r = &records[0];
        assert_eq!((r.status, r.input_tokens, r.output_tokens, r.usage_estimated), (200, 7, 2, false));
        assert!(r.ttft_us.is_some());
    }

    #[actix_rt::test]
    async fn events_split_across_reads_are_reassembled() {
        let whole = format!("data: {CHUNK_A}\n\ndata: {CHUNK_B}\n\ndata: [DONE]\n\n");
        let bytes = whole.as_bytes();
        let chunks: Vec<_> = bytes.chunks(7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let (events, records) = relay(chunks, None).await;
        assert_eq!(
            events,
            vec![format!("data: {CHUNK_A}\n\n"), format!("data: {CHUNK_B}\n\n"), "data: [DONE]\n\n".into()]
        );
        assert_eq!(records[0].status, 200);
        assert!(records[0].usage_estimated, "no usage chunk: output counted by the gateway");
    }

    #[actix_rt::test]
    async fn an_error_event_from_upstream_ends_the_stream_with_an_error() {
        let (events, records) =
            relay(vec![sse(CHUNK_A), sse(r#"{"error":{"message":"overloaded"}}"#), sse(CHUNK_B)], None).await;
        assert_eq!(events.len(), 2);
        assert!(error_of(&events[1])["message"].as_str().unwrap().contains("overloaded"));
        assert_eq!(records[0].status, 502);
    }

    #[actix_rt::test]
    async fn a_chunk_that_is_not_json_is_an_invalid_response() {
        let (events, records) = relay(vec![sse(CHUNK_A), sse("{not json")], None).await;
        assert_eq!(error_of(&events[1])["code"], "upstream_invalid_response");
        assert_eq!(records[0].status, 502);
    }

    #[actix_rt::test]
    async fn a_stream_that_stops_early_is_not_a_success() {
        let (events, records) = relay(vec![sse(CHUNK_A)], None).await;
        assert!(error_of(&events[1])["message"].as_str().unwrap().contains("before it was complete"));
        assert!(!events.iter().any(|e| e.contains("[DONE]")));
        assert_eq!(records[0].status, 502);
    }

    #[actix_rt::test]
    async fn a_timeout_mid_stream_is_a_504_error_event() {
        let (events, records) = relay(vec![sse(CHUNK_A), Err(UpstreamError::Timeout("total"))], None).await;
        assert_eq!(error_of(&events[1])["code"], "upstream_timeout");
        assert_eq!(records[0].status, 504);
    }

    #[actix_rt::test]
    async fn a_client_that_leaves_is_recorded_with_the_output_so_far() {
        let (events, records) = relay(vec![sse(CHUNK_A), sse(CHUNK_B), sse("[DONE]")], Some(1)).await;
        assert_eq!(events.len(), 1);
        let r = &records[0];
        assert_eq!(r.status, 499);
        assert!(r.output_tokens > 0 && r.usage_estimated, "{r:?}");
    }
}
