//! What a streamed answer is held to: its total deadline, the longest silence between
//! two reads, and the largest event (as its framing delimits events), read line by line.

use std::time::Duration;

use futures_util::StreamExt;

use super::{ByteStream, UpstreamError};
use crate::providers::Framing;

/// What a streamed answer is held to.
#[derive(Clone, Copy)]
pub(super) struct StreamBounds {
    /// The call's total timeout.
    pub(super) deadline: tokio::time::Instant,
    /// The longest silence between two reads.
    pub(super) idle: Duration,
    pub(super) max_event: usize,
    pub(super) framing: Framing,
}

/// Ends a byte stream with a timeout error at its deadline or after a silence longer
/// than its idle bound, and with an invalid-answer error when one event (as its framing
/// delimits them) grows past its bound.
pub(super) fn guarded(s: ByteStream, b: StreamBounds) -> ByteStream {
    let events = EventBound::new(b.max_event, b.framing);
    Box::pin(futures_util::stream::unfold((s, events, false), move |(mut s, mut events, done)| async move {
        if done {
            return None;
        }
        let idle_until = tokio::time::Instant::now() + b.idle;
        let (until, phase) = if idle_until < b.deadline { (idle_until, "stream idle") } else { (b.deadline, "total") };
        match tokio::time::timeout_at(until, s.next()).await {
            Err(_) => Some((Err(UpstreamError::Timeout(phase)), (s, events, true))),
            Ok(None) => None,
            Ok(Some(Ok(b))) => match events.feed(&b) {
                Ok(()) => Some((Ok(b), (s, events, false))),
                Err(e) => Some((Err(e), (s, events, true))),
            },
            Ok(Some(Err(e))) => Some((Err(e), (s, events, true))),
        }
    }))
}

/// Tracks the size of a stream's current event.
struct EventBound {
    max: usize,
    framing: Framing,
    /// Bytes of the event not yet ended.
    current: usize,
    /// Whether the current line has had nothing but `\r` so far (SSE: a blank line
    /// ends the event).
    blank_line: bool,
}

impl EventBound {
    fn new(max: usize, framing: Framing) -> EventBound {
        EventBound { max, framing, current: 0, blank_line: true }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        match self.framing {
            // binary frames carry their own lengths, checked by their decoder
            Framing::Binary => return Ok(()),
            // line by line (memchr finds the newlines), not byte by byte
            Framing::Lines => {
                let mut start = 0;
                for end in memchr::memchr_iter(b'\n', bytes) {
                    if self.current + (end - start) > self.max {
                        return Err(self.too_large());
                    }
                    self.current = 0;
                    start = end + 1;
                }
                self.current += bytes.len() - start;
            }
            Framing::Sse => {
                let mut start = 0;
                for end in memchr::memchr_iter(b'\n', bytes) {
                    self.sse_segment(&bytes[start..end]);
                    if self.current > self.max {
                        return Err(self.too_large());
                    }
                    // a line with nothing but `\r` in it ends the event
                    if self.blank_line {
                        self.current = 0;
                    } else {
                        self.blank_line = true;
                        self.current += 1;
                    }
                    if self.current > self.max {
                        return Err(self.too_large());
                    }
                    start = end + 1;
                }
                self.sse_segment(&bytes[start..]);
            }
        }
        if self.current > self.max {
            return Err(self.too_large());
        }
        Ok(())
    }

    /// Bytes of an SSE line up to (not with) its newline.
    fn sse_segment(&mut self, seg: &[u8]) {
        if seg.iter().any(|&b| b != b'\r') {
            self.blank_line = false;
        }
        self.current += seg.len();
    }

    fn too_large(&self) -> UpstreamError {
        UpstreamError::Body(format!("a stream event is larger than {} bytes (max_event_bytes)", self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound as it was first written, byte by byte: the line-by-line one must say
    /// the same of any input, split anywhere.
    fn reference(max: usize, framing: Framing, chunks: &[&[u8]]) -> bool {
        let (mut current, mut blank) = (0usize, true);
        for &b in chunks.concat().iter() {
            match framing {
                Framing::Binary => return true,
                Framing::Lines => current = if b == b'\n' { 0 } else { current + 1 },
                Framing::Sse => match b {
                    b'\n' if blank => current = 0,
                    b'\n' => {
                        blank = true;
                        current += 1;
                    }
                    b'\r' => current += 1,
                    _ => {
                        blank = false;
                        current += 1;
                    }
                },
            }
            if current > max {
                return false;
            }
        }
        true
    }

    #[test]
    fn the_line_by_line_bound_says_what_the_byte_by_byte_one_said() {
        let mut rng = fastrand::Rng::with_seed(5);
        let alphabet = [b'\n', b'\r', b'a', b'd', b':', b' '];
        for _ in 0..20_000 {
            let input: Vec<u8> = (0..rng.usize(0..40)).map(|_| alphabet[rng.usize(0..alphabet.len())]).collect();
            let cut = rng.usize(0..=input.len());
            let (a, b) = input.split_at(cut);
            let max = rng.usize(1..12);
            for framing in [Framing::Sse, Framing::Lines] {
                let mut e = EventBound::new(max, framing);
                let ours = e.feed(a).is_ok() && e.feed(b).is_ok();
                assert_eq!(ours, reference(max, framing, &[a, b]), "{input:?} cut {cut} max {max}");
            }
        }
    }

    #[test]
    fn events_are_bounded_whatever_their_line_endings() {
        let mut sse = EventBound::new(12, Framing::Sse);
        // events of 9 to 11 bytes, ended by LF LF and by CRLF CRLF, split anywhere
        for part in ["data: ab\n", "\ndata: cd\r", "\n\r\n", "data: ef\n\n"] {
            assert!(sse.feed(part.as_bytes()).is_ok(), "{part:?}");
        }
        let err = sse.feed(b"data: 0123456789\n\n").unwrap_err();
        assert!(err.to_string().contains("max_event_bytes"), "{err}");
        let mut lines = EventBound::new(5, Framing::Lines);
        assert!(lines.feed(b"{\"a\"}\n{\"b\"}\n").is_ok());
        assert!(lines.feed(b"{\"abc\":1}\n").is_err());
        assert!(EventBound::new(1, Framing::Binary).feed(&[0u8; 100]).is_ok());
    }
}
