//! Relays an upstream SSE stream to the client as it arrives (pull-based, so a slow
//! client slows the upstream read: backpressure without a buffer), meters it, and fills
//! the cache at the end. An upstream failure mid-stream ends the stream with an error
//! event and never with `[DONE]`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Future, Stream};
use serde_json::Value;

use super::finish::{Finisher, CLIENT_CLOSED};
use crate::providers::openai::StreamAccumulator;
use crate::providers::sse::{data_event, SseParser, DONE};
use crate::providers::{ByteStream, UpstreamError};
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
}

impl Relay {
    pub fn new(upstream: ByteStream, finisher: Finisher, client_wants_usage: bool, provider: String) -> Relay {
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
        }
    }

    fn fail(&mut self, err: GatewayError) {
        let status = err.class().status;
        tracing::warn!(provider = %self.provider, error = %err, "stream failed mid-way");
        self.out.push_back(data_event(&err.body().to_string()));
        self.ended = true;
        let text = std::mem::take(&mut self.acc.content_text);
        self.finisher.finish(status, self.acc.usage, &text, None);
    }

    fn complete(&mut self) {
        self.out.push_back(Bytes::from_static(DONE));
        self.ended = true;
        let body = self.finisher.cache_put.map(|_| self.acc.completion().to_string().into_bytes());
        let text = std::mem::take(&mut self.acc.content_text);
        self.finisher.finish(200, self.acc.usage, &text, body);
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
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
            let v: Value = match serde_json::from_str(&ev.data) {
                Ok(v) => v,
                Err(e) => {
                    return self.fail(GatewayError::UpstreamInvalid {
                        provider: self.provider.clone(),
                        message: format!("stream chunk is not JSON: {e}"),
                    })
                }
            };
            if let Some(err) = v.get("error") {
                let message = err.get("message").and_then(Value::as_str).unwrap_or("upstream error").to_string();
                return self.fail(GatewayError::UpstreamStatus {
                    provider: self.provider.clone(),
                    status: 502,
                    message,
                    retry_after: None,
                });
            }
            let had_content = self.acc.add(&v);
            if had_content && self.finisher.ttft.is_none() {
                self.finisher.ttft = Some(self.finisher.received.elapsed());
            }
            let usage_only = v.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty)
                && v.get("usage").is_some_and(|u| !u.is_null());
            if usage_only && !self.client_wants_usage {
                continue; // the gateway asked for it, the client did not
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
                Poll::Ready(Some(Ok(bytes))) => this.on_bytes(&bytes),
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
