//! Server-sent events, framed by the rules of the HTML Living Standard
//! ("Server-sent events", § 9.2.6 *Interpreting an event stream*): lines end
//! in CRLF, LF or CR; a blank line ends an event; a line starting with `:`
//! is a comment; `data:` lines accumulate (joined by LF); `event:`, `id:`
//! and `retry:` are fields; one space after the colon is not part of the
//! value.
//!
//! [`SseFramer`] is incremental and split-invariant: fed the stream in any
//! chunks, it reports the same events. It can keep each event's raw bytes,
//! so a relay that drops an event passes every other one on byte for byte.
//! Memory is bounded: an event larger than [`MAX_EVENT`] is reported as
//! [`SseEvent::oversize`] with its data cut, and its raw bytes are not kept.
//!
//! ```
//! use llm_integration_core::sse::SseFramer;
//!
//! let mut framer = SseFramer::new(true);
//! let mut seen = Vec::new();
//! for chunk in ["event: ping\r\ndata: {\"a\"", ":1}\r\n\r", "\ndata: x\n", "data: y\n\n"] {
//!     framer.feed(chunk.as_bytes(), &mut |e| {
//!         if !e.tail {
//!             seen.push((e.event.to_owned(), String::from_utf8_lossy(e.data).into_owned()))
//!         }
//!     });
//! }
//! assert_eq!(seen, [("ping".into(), "{\"a\":1}".into()), (String::new(), "x\ny".into())]);
//! ```

/// The largest event kept whole (a Responses API `response.completed`
/// event carries the whole response).
pub const MAX_EVENT: usize = 16 * 1024 * 1024;

/// One event of a stream.
#[derive(Debug, Clone, Copy)]
pub struct SseEvent<'a> {
    /// The `event:` field (empty when absent).
    pub event: &'a str,
    /// The `data:` lines joined by LF (empty when none).
    pub data: &'a [u8],
    /// Whether any `data:` line was seen.
    pub has_data: bool,
    /// The event's bytes as received, terminators included (empty unless
    /// the framer keeps raw bytes, or when the event was over [`MAX_EVENT`]).
    pub raw: &'a [u8],
    /// The event was over [`MAX_EVENT`]: its data is cut and its raw
    /// bytes were passed on as they came (see [`SseFramer::take_passed`]).
    pub oversize: bool,
    /// Not an event: `raw` is the LF of a CRLF whose CR ended the previous
    /// event in the previous chunk. A relay passes it on if it passed that
    /// event, so the relayed bytes do not depend on where chunks split.
    pub tail: bool,
}

/// An incremental event-stream parser.
#[derive(Debug, Clone, Default)]
pub struct SseFramer {
    keep_raw: bool,
    /// The current event's raw bytes (with `keep_raw`).
    raw: Vec<u8>,
    /// Raw bytes of an oversize event, to pass on at once.
    passed: Vec<u8>,
    /// The current, unfinished line.
    line: Vec<u8>,
    data: Vec<u8>,
    event: String,
    has_data: bool,
    /// The last byte seen was a CR: a LF right after it ends nothing.
    after_cr: bool,
    oversize: bool,
    started: bool,
    /// The current line has bytes (kept in `line` unless oversize).
    partial: bool,
    /// How many bytes of a byte order mark the stream began with so far.
    bom_len: usize,
}

impl SseFramer {
    /// A framer; with `keep_raw`, each event comes with its raw bytes.
    pub fn new(keep_raw: bool) -> Self {
        SseFramer {
            keep_raw,
            ..Self::default()
        }
    }

    fn size(&self) -> usize {
        self.raw.len().max(self.line.len() + self.data.len())
    }

    fn keep(&mut self, bytes: &[u8]) {
        if !self.keep_raw {
            return;
        }
        if self.oversize {
            self.passed.extend_from_slice(bytes);
        } else {
            self.raw.extend_from_slice(bytes);
        }
    }

    fn check_size(&mut self) {
        if !self.oversize && self.size() > MAX_EVENT {
            self.oversize = true;
            self.passed.append(&mut self.raw);
            self.raw = Vec::new();
            self.line = Vec::new();
            self.data = Vec::new();
        }
    }

    /// Feeds the next chunk; `on_event` is called for each event it completes.
    pub fn feed(&mut self, chunk: &[u8], on_event: &mut dyn FnMut(SseEvent<'_>)) {
        const BOM: &[u8; 3] = b"\xEF\xBB\xBF";
        let mut rest = chunk;
        // A byte order mark starts the stream, in any split: its bytes are
        // kept raw but are not part of the first line.
        while !self.started {
            let Some((&b, after)) = rest.split_first() else {
                return;
            };
            if self.bom_len < BOM.len() && b == BOM[self.bom_len] {
                self.keep(&[b]);
                self.bom_len += 1;
                rest = after;
                if self.bom_len == BOM.len() {
                    self.started = true;
                }
            } else {
                // Not a byte order mark: what looked like one is content.
                self.started = true;
                if self.bom_len > 0 {
                    self.line.extend_from_slice(&BOM[..self.bom_len]);
                    self.partial = true;
                }
            }
        }
        if self.after_cr {
            if let Some((b'\n', after)) = rest.split_first() {
                if self.raw.is_empty() && !self.partial && self.data.is_empty() && !self.has_data {
                    on_event(SseEvent {
                        event: "",
                        data: b"",
                        has_data: false,
                        raw: b"\n",
                        oversize: false,
                        tail: true,
                    });
                } else {
                    self.keep(b"\n");
                }
                rest = after;
            }
            if !chunk.is_empty() {
                self.after_cr = false;
            }
        }
        while let Some(i) = memchr::memchr2(b'\n', b'\r', rest) {
            let mut end = i + 1;
            if rest[i] == b'\r' {
                match rest.get(i + 1) {
                    Some(b'\n') => end += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            self.keep(&rest[..end]);
            let blank = !self.partial && i == 0;
            self.partial = false;
            if self.oversize {
                // Only the blank line that ends the event matters now.
                if blank {
                    self.dispatch(on_event);
                }
            } else if self.line.is_empty() {
                self.line_done(&rest[..i], on_event);
            } else {
                self.line.extend_from_slice(&rest[..i]);
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, on_event);
                self.line = line;
                self.line.clear();
            }
            rest = &rest[end..];
        }
        self.keep(rest);
        if !rest.is_empty() {
            self.partial = true;
            if !self.oversize {
                self.line.extend_from_slice(rest);
            }
        }
        self.check_size();
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut dyn FnMut(SseEvent<'_>)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if self.oversize || line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = String::from_utf8_lossy(value).into_owned(),
            _ => {}
        }
        self.check_size();
    }

    fn dispatch(&mut self, on_event: &mut dyn FnMut(SseEvent<'_>)) {
        on_event(SseEvent {
            event: &self.event,
            data: &self.data,
            has_data: self.has_data,
            raw: &self.raw,
            oversize: self.oversize,
            tail: false,
        });
        self.raw.clear();
        self.data.clear();
        self.event.clear();
        self.has_data = false;
        self.oversize = false;
        if self.raw.capacity() > 64 * 1024 {
            self.raw = Vec::new();
        }
        if self.data.capacity() > 64 * 1024 {
            self.data = Vec::new();
        }
    }

    /// The raw bytes of an oversize event so far, to pass on now.
    pub fn take_passed(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.passed)
    }

    /// The stream ended. An event left without its blank line is reported
    /// (providers sometimes end that way); returns the raw bytes not yet
    /// part of any reported event (with `keep_raw`).
    pub fn finish(&mut self, on_event: &mut dyn FnMut(SseEvent<'_>)) -> Vec<u8> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, on_event);
        }
        self.partial = false;
        let mut rest = self.take_passed();
        if self.has_data || !self.event.is_empty() {
            self.dispatch(on_event);
        } else {
            rest.append(&mut self.raw);
        }
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events of `stream` fed in chunks of `split`, and the raw bytes
    /// of every event and tail, in order, with what `finish` left.
    fn events(stream: &[u8], split: usize) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
        let mut f = SseFramer::new(true);
        let mut out = Vec::new();
        let mut raw = Vec::new();
        let mut push = |e: SseEvent<'_>| {
            raw.extend_from_slice(e.raw);
            if !e.tail {
                out.push((e.event.to_owned(), e.data.to_vec()));
            }
        };
        for chunk in stream.chunks(split.max(1)) {
            f.feed(chunk, &mut push);
        }
        let rest = f.finish(&mut push);
        raw.extend_from_slice(&rest);
        (out, raw)
    }

    #[test]
    fn line_ends_and_fields() {
        for sep in ["\n", "\r\n", "\r"] {
            let stream = format!(
                ": comment{sep}event: e1{sep}data:no-space{sep}data:  two{sep}id: 7{sep}retry: 5{sep}{sep}data{sep}{sep}"
            );
            for split in 1..stream.len() {
                let (got, raw) = events(stream.as_bytes(), split);
                assert_eq!(got.len(), 2, "{sep:?} split {split}");
                assert_eq!(got[0].0, "e1");
                assert_eq!(got[0].1, b"no-space\n two");
                assert_eq!(got[1].1, b"");
                assert_eq!(
                    raw,
                    stream.as_bytes(),
                    "raw bytes kept, {sep:?} split {split}"
                );
            }
        }
    }

    #[test]
    fn unterminated_last_event_and_bom() {
        let stream = b"\xEF\xBB\xBFdata: a\n\ndata: b";
        let (got, raw) = events(stream, 3);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, b"a");
        assert_eq!(got[1].1, b"b");
        assert_eq!(raw, stream);
        let (got, raw) = events(b"data: a\n\n: keep-alive", 4);
        assert_eq!(got.len(), 1);
        assert_eq!(raw, b"data: a\n\n: keep-alive");
    }

    #[test]
    fn oversize_events_are_passed_and_cut() {
        let big = vec![b'x'; MAX_EVENT + 10];
        let mut f = SseFramer::new(true);
        let mut seen = Vec::new();
        let mut passed = Vec::new();
        f.feed(b"data: ", &mut |_| {});
        for chunk in big.chunks(1 << 20) {
            f.feed(chunk, &mut |e| seen.push(e.oversize));
            passed.extend(f.take_passed());
            assert!(f.raw.len() <= MAX_EVENT + (1 << 20));
        }
        f.feed(b"\n\ndata: small\n\n", &mut |e| seen.push(e.oversize));
        passed.extend(f.take_passed());
        assert_eq!(seen, [true, false]);
        assert_eq!(passed.len(), 6 + big.len() + 2);
    }
}
