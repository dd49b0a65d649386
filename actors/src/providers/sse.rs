//! Incremental Server-Sent Events parser: feed it bytes as they arrive, in any split,
//! and it yields complete events.

/// One event: its `event:` type (if any) and its joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

/// Lines longer than this without a newline are a broken upstream, not an event.
pub const MAX_LINE: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SSE line longer than {MAX_LINE} bytes")]
pub struct LineTooLong;

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Adds bytes and returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &buf) {
            let mut line = &buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            start = end + 1;
            // valid UTF-8 (what providers send) is read in place; anything else lossily
            match std::str::from_utf8(line) {
                Ok(line) => self.line(line, &mut events),
                Err(_) => self.line(&String::from_utf8_lossy(line), &mut events),
            }
        }
        buf.drain(..start);
        self.buf = buf;
        if self.buf.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        Ok(events)
    }

    fn line(&mut self, line: &str, events: &mut Vec<SseEvent>) {
        if line.is_empty() {
            let data = match self.data.len() {
                0 => None,
                // one data line (the usual event): the line itself
                1 => self.data.pop(),
                _ => Some(self.data.join("\n")),
            };
            if let Some(data) = data {
                events.push(SseEvent { event: self.event.take(), data });
                self.data.clear();
            }
            self.event = None;
            return;
        }
        if line.starts_with(':') {
            return; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => self.data.push(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
    }
}

/// Formats one `data:` event.
pub fn data_event(json: &str) -> bytes::Bytes {
    let mut s = String::with_capacity(json.len() + 8);
    s.push_str("data: ");
    s.push_str(json);
    s.push_str("\n\n");
    bytes::Bytes::from(s)
}

pub const DONE: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere() {
        let text = "data: {\"a\":1}\n\n: keepalive\n\nevent: x\ndata: one\ndata: two\r\n\r\ndata: [DONE]\n\n";
        for split in 0..text.len() {
            let mut p = SseParser::new();
            let mut all = p.feed(&text.as_bytes()[..split]).unwrap();
            all.extend(p.feed(&text.as_bytes()[split..]).unwrap());
            assert_eq!(
                all,
                vec![
                    SseEvent { event: None, data: "{\"a\":1}".into() },
                    SseEvent { event: Some("x".into()), data: "one\ntwo".into() },
                    SseEvent { event: None, data: "[DONE]".into() },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_read_lossily_and_multi_line_data_is_joined() {
        let mut p = SseParser::new();
        let events = p.feed(b"data: a\xffb\ndata: c\n\n").unwrap();
        assert_eq!(events, vec![SseEvent { event: None, data: "a\u{fffd}b\nc".into() }]);
    }

    #[test]
    fn byte_by_byte() {
        let mut p = SseParser::new();
        let mut n = 0;
        for b in b"data: x\n\ndata: y\n\n" {
            n += p.feed(&[*b]).unwrap().len();
        }
        assert_eq!(n, 2);
    }
}
