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
    /// Handing the held events to the client (until `out` is empty).
    emitting: bool,
    /// Events arrived since the relay last let the runtime turn (see `poll_next`).
    fresh: bool,
    /// The turn of the runtime the relay is waiting out.
    turn: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// The most a relay holds back while it gathers a burst of events into one write.
const BURST_BYTES: usize = 32 * 1024;
const BURST_EVENTS: usize = 256;

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
            emitting: false,
            fresh: false,
            turn: None,
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

    /// Events are gathered into bursts. The HTTP server writes to the socket whenever
    /// this stream is pending, and the upstream connection hands its body over one
    /// chunk per turn of the runtime (hyper's body channel holds one), so relaying each
    /// event as soon as it is parsed made one `send` per event even when the provider's
    /// whole answer had arrived in one read. So when the upstream is pending right after
    /// giving events, the relay lets the runtime turn once (`yield_now`: pending, holding
    /// what it has, woken after the other ready tasks ran) and reads on; it hands the
    /// events over when a turn brings nothing new, or when it holds `BURST_BYTES` or
    /// `BURST_EVENTS`. An event is never held longer than one turn of the runtime after
    /// the last that came with it, and a client that reads slowly still slows the
    /// upstream read.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(turn) = this.turn.as_mut() {
            if turn.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.turn = None;
        }
        loop {
            if this.emitting || this.ended {
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
                this.emitting = false;
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending if this.out.is_empty() => {
                    this.fresh = false;
                    return Poll::Pending;
                }
                Poll::Pending => {
                    let held = || this.out.iter().map(Bytes::len).sum::<usize>();
                    if this.fresh && this.out.len() < BURST_EVENTS && held() < BURST_BYTES {
                        this.fresh = false;
                        // `yield_now` wakes the relay after the runtime's other ready
                        // tasks (the upstream connection's among them) have run
                        let mut turn: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(tokio::task::yield_now());
                        if turn.as_mut().poll(cx).is_pending() {
                            this.turn = Some(turn);
                            return Poll::Pending;
                        }
                        continue;
                    }
                    this.fresh = false;
                    this.emitting = true;
                }
                Poll::Ready(Some(Ok(bytes))) => {
                    this.fresh = true;
                    match this.decoder.take() {
                        Some(mut decoder) => {
                            this.on_native(decoder.as_mut(), bytes);
                            this.decoder = Some(decoder);
                        }
                        None => this.on_bytes(&bytes),
                    }
                }
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

    /// Relays `chunks` to their end and returns the events and the ledger records.
    async fn relay(chunks: Vec<Result<Bytes, UpstreamError>>) -> (Vec<String>, Vec<UsageRecord>) {
        let dir = tempfile::tempdir().unwrap();
        let (relay, store, acc) = relay_over(Box::pin(futures_util::stream::iter(chunks)), dir.path());
        let events: Vec<String> = relay
            .map(|b| match b {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(never) => match never {},
            })
            .collect()
            .await;
        acc.send(Flush).await.unwrap();
        (events, store.usage_since(0).unwrap())
    }

    /// A relay over `upstream`, with its ledger in `dir`.
    fn relay_over(upstream: ByteStream, dir: &Path) -> (Relay, Store, Addr<Accounting>) {
        let store = Store::open(dir).unwrap();
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
        (Relay::new(upstream, fin, false, "p".into()), store, acc)
    }

    /// An upstream that hands its chunks over as hyper's body does: through a channel
    /// that holds one, fed by a task of its own. Returns the stream and the feeder.
    fn channel_upstream() -> (ByteStream, tokio::sync::mpsc::Sender<Result<Bytes, UpstreamError>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let s = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        (Box::pin(s), tx)
    }

    /// Polls `relay` to its end and returns its events in bursts: the events it gave
    /// between two of its pendings (what the HTTP server writes to the socket at once).
    async fn bursts(mut relay: Relay) -> Vec<Vec<String>> {
        let (mut all, mut current) = (Vec::new(), Vec::new());
        std::future::poll_fn(|cx| loop {
            match Pin::new(&mut relay).poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => current.push(String::from_utf8_lossy(&b).into_owned()),
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => {
                    all.push(std::mem::take(&mut current));
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    if !current.is_empty() {
                        all.push(std::mem::take(&mut current));
                    }
                    return Poll::Pending;
                }
            }
        })
        .await;
        all.retain(|b| !b.is_empty());
        all
    }

    #[actix_rt::test]
    async fn events_that_have_arrived_go_to_the_client_together() {
        let dir = tempfile::tempdir().unwrap();
        let (upstream, tx) = channel_upstream();
        let (relay, store, acc) = relay_over(upstream, dir.path());
        tokio::spawn(async move {
            for _ in 0..10 {
                tx.send(sse(CHUNK_A)).await.unwrap();
            }
            for c in [CHUNK_B, USAGE, "[DONE]"] {
                tx.send(sse(c)).await.unwrap();
            }
        });
        let bursts = bursts(relay).await;
        let events: Vec<&String> = bursts.iter().flatten().collect();
        assert_eq!(events.len(), 12, "{bursts:?}");
        assert_eq!(events[11], "data: [DONE]\n\n");
        // one event at a time, this was twelve writes
        assert!(bursts.len() <= 2, "{} bursts: {bursts:?}", bursts.len());
        acc.send(Flush).await.unwrap();
        assert_eq!(store.usage_since(0).unwrap()[0].status, 200);
    }

    #[actix_rt::test]
    async fn an_event_is_not_held_back_for_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let (upstream, tx) = channel_upstream();
        let (relay, _store, _acc) = relay_over(upstream, dir.path());
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<()>();
        // the upstream sends its second event only once the client has the first
        tokio::spawn(async move {
            tx.send(sse(CHUNK_A)).await.unwrap();
            seen_rx.await.unwrap();
            for c in [CHUNK_B, "[DONE]"] {
                tx.send(sse(c)).await.unwrap();
            }
        });
        let mut relay = Box::pin(relay);
        let first = tokio::time::timeout(Duration::from_secs(10), relay.next()).await;
        let first = first.expect("the first event was held back").unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("Hel"));
        seen_tx.send(()).unwrap();
        let rest: Vec<_> = relay.collect().await;
        assert_eq!(rest.len(), 2);
    }

    fn error_of(last: &str) -> Value {
        let json = last.strip_prefix("data: ").unwrap().trim();
        serde_json::from_str::<Value>(json).unwrap()["error"].clone()
    }

    #[actix_rt::test]
    async fn complete_stream_is_relayed_and_metered_with_the_gateways_usage_chunk_hidden() {
        let (events, records) = relay(vec![sse(CHUNK_A), sse(CHUNK_B), sse(USAGE), sse("[DONE]")]).await;
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
        let (events, records) = relay(chunks).await;
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
            relay(vec![sse(CHUNK_A), sse(r#"{"error":{"message":"overloaded"}}"#), sse(CHUNK_B)]).await;
        assert_eq!(events.len(), 2);
        assert!(error_of(&events[1])["message"].as_str().unwrap().contains("overloaded"));
        assert_eq!(records[0].status, 502);
    }

    #[actix_rt::test]
    async fn a_chunk_that_is_not_json_is_an_invalid_response() {
        let (events, records) = relay(vec![sse(CHUNK_A), sse("{not json")]).await;
        assert_eq!(error_of(&events[1])["code"], "upstream_invalid_response");
        assert_eq!(records[0].status, 502);
    }

    #[actix_rt::test]
    async fn a_stream_that_stops_early_is_not_a_success() {
        let (events, records) = relay(vec![sse(CHUNK_A)]).await;
        assert!(error_of(&events[1])["message"].as_str().unwrap().contains("before it was complete"));
        assert!(!events.iter().any(|e| e.contains("[DONE]")));
        assert_eq!(records[0].status, 502);
    }

    #[actix_rt::test]
    async fn a_timeout_mid_stream_is_a_504_error_event() {
        let (events, records) = relay(vec![sse(CHUNK_A), Err(UpstreamError::Timeout("total"))]).await;
        assert_eq!(error_of(&events[1])["code"], "upstream_timeout");
        assert_eq!(records[0].status, 504);
    }

    #[actix_rt::test]
    async fn a_client_that_leaves_is_recorded_with_the_output_so_far() {
        // the upstream is still sending when the client leaves after the first event
        let dir = tempfile::tempdir().unwrap();
        let (upstream, tx) = channel_upstream();
        let (relay, store, acc) = relay_over(upstream, dir.path());
        let (left_tx, left_rx) = tokio::sync::oneshot::channel::<()>();
        let feeder = tokio::spawn(async move {
            tx.send(sse(CHUNK_A)).await.unwrap();
            let _ = left_rx.await;
            let _ = tx.send(sse(CHUNK_B)).await;
        });
        let events: Vec<_> = relay.take(1).collect().await;
        left_tx.send(()).unwrap();
        feeder.await.unwrap();
        assert_eq!(events.len(), 1);
        acc.send(Flush).await.unwrap();
        let records = store.usage_since(0).unwrap();
        let r = &records[0];
        assert_eq!(r.status, 499);
        assert!(r.output_tokens > 0 && r.usage_estimated, "{r:?}");
    }
}
