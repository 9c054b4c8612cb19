//! Finding members of a JSON document's top-level object as the document
//! streams past, with bounded memory: `usage` is read from the response
//! object itself, never from a member of the same name inside content the
//! caller controls (an echoed `metadata`, a tool's arguments), wherever it
//! stands and however long the document is.
//!
//! The scanner follows only the structure (RFC 8259 § 2: strings with
//! their escapes, objects and arrays by depth) and keeps the bytes of the
//! members it was asked for; their values are then read with `serde_json`.

/// The largest value kept for a wanted member (a `usage` object is far
/// smaller); a larger one is dropped.
pub const MAX_VALUE: usize = 1024 * 1024;

/// The room first made for a kept value: a `usage` object takes 100 to
/// 400 bytes, so it is kept without growing.
const FIRST_CAPACITY: usize = 512;

/// The most bytes a member name may have to be compared (longer names are
/// never wanted).
const MAX_NAME: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Expect {
    /// Before the document's first byte.
    #[default]
    Start,
    /// Inside the top-level object, before a member name (or `}`).
    Name,
    /// After a member name, before `:`.
    Colon,
    /// Inside a member's value.
    Value,
    /// The top level is not an object, or it ended: nothing more to find.
    Done,
}

/// Scans a JSON document chunk by chunk for the values of some top-level
/// members.
#[derive(Debug, Clone, Default)]
pub struct TopLevelScanner {
    wanted: &'static [&'static str],
    expect: Expect,
    /// Nesting depth (1 inside the top-level object).
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The raw bytes of the current member name (quotes included).
    name: Vec<u8>,
    name_too_long: bool,
    /// The wanted member whose value is being kept.
    keeping: Option<&'static str>,
    value: Vec<u8>,
    found: Vec<(&'static str, Vec<u8>)>,
}

impl TopLevelScanner {
    /// A scanner for the top-level members named in `wanted`.
    pub fn new(wanted: &'static [&'static str]) -> Self {
        TopLevelScanner {
            wanted,
            ..Self::default()
        }
    }

    /// The values found so far, raw, with their member names (a repeated
    /// member's first and last, see [`values`](Self::values)).
    pub fn found(&self) -> &[(&'static str, Vec<u8>)] {
        &self.found
    }

    /// The raw values of top-level member `name`: its first and, when it is
    /// repeated, its last (JSON parsers differ on which they keep).
    pub fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.found
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The last value of top-level member `name` (a repeated member's
    /// last, as JSON parsers read it).
    pub fn value(&self, name: &str) -> Option<&[u8]> {
        self.found
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn end_value(&mut self) {
        if let Some(name) = self.keeping.take() {
            let mut value = std::mem::take(&mut self.value);
            while value.last().is_some_and(|b| b.is_ascii_whitespace()) {
                value.pop();
            }
            if !value.is_empty() {
                // A repeated member: its first and its last value are kept
                // (what first-wins and last-wins parsers read), so memory
                // stays bounded however often it repeats.
                let second = (0..self.found.len())
                    .filter(|i| self.found[*i].0 == name)
                    .nth(1);
                match second {
                    Some(last) => self.found[last].1 = value,
                    None => self.found.push((name, value)),
                }
            }
        }
        self.value.clear();
    }

    fn name_done(&mut self) {
        self.keeping = None;
        if !self.name_too_long {
            let inner = self.name.get(1..self.name.len().saturating_sub(1));
            match inner {
                // Without escapes a name is its bytes between the quotes.
                Some(inner) if !inner.contains(&b'\\') => {
                    self.keeping = self.wanted.iter().copied().find(|w| w.as_bytes() == inner);
                }
                _ => {
                    if let Ok(name) = serde_json::from_slice::<String>(&self.name) {
                        self.keeping = self.wanted.iter().copied().find(|w| *w == name);
                    }
                }
            }
        }
        self.name.clear();
        self.name_too_long = false;
    }

    /// Feeds the next chunk of the document.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut at = 0;
        while at < chunk.len() {
            if self.expect == Expect::Done {
                return;
            }
            if self.expect == Expect::Value && !self.escaped {
                // A run of bytes that changes nothing but the kept value:
                // inside a string, up to its next quote or escape; outside,
                // up to the next byte of the structure.
                let rest = &chunk[at..];
                let run = if self.in_string {
                    memchr::memchr2(b'"', b'\\', rest)
                } else {
                    rest.iter()
                        .position(|b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']' | b','))
                }
                .unwrap_or(rest.len());
                if run > 0 {
                    if self.keeping.is_some() {
                        let run = &rest[..run];
                        if self.value.is_empty() && !self.in_string {
                            self.keep_all(run.trim_ascii_start());
                        } else {
                            self.keep_all(run);
                        }
                    }
                    at += run;
                    continue;
                }
            }
            let b = chunk[at];
            at += 1;
            if self.in_string {
                match self.expect {
                    Expect::Name => {
                        if self.name.len() < MAX_NAME {
                            self.name.push(b);
                        } else {
                            self.name_too_long = true;
                        }
                    }
                    Expect::Value if self.keeping.is_some() => self.keep(b),
                    _ => {}
                }
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if self.expect == Expect::Name {
                        self.expect = Expect::Colon;
                    }
                }
                continue;
            }
            match self.expect {
                Expect::Start => match b {
                    b'{' => {
                        self.depth = 1;
                        self.expect = Expect::Name;
                    }
                    b if b.is_ascii_whitespace() => {}
                    _ => self.expect = Expect::Done,
                },
                Expect::Name => match b {
                    b'"' => {
                        self.in_string = true;
                        self.name.push(b);
                    }
                    b'}' => self.expect = Expect::Done,
                    _ => {}
                },
                Expect::Colon => {
                    if b == b':' {
                        self.name_done();
                        self.expect = Expect::Value;
                    }
                }
                Expect::Value => {
                    match b {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' if self.depth > 1 => self.depth -= 1,
                        b',' if self.depth == 1 => {
                            self.end_value();
                            self.expect = Expect::Name;
                            continue;
                        }
                        b'}' => {
                            self.end_value();
                            self.expect = Expect::Done;
                            continue;
                        }
                        _ => {}
                    }
                    if self.keeping.is_some() && !(self.value.is_empty() && b.is_ascii_whitespace())
                    {
                        self.keep(b);
                    }
                }
                Expect::Done => return,
            }
        }
    }

    fn keep(&mut self, b: u8) {
        self.keep_all(&[b]);
    }

    fn keep_all(&mut self, bytes: &[u8]) {
        let needed = self.value.len() + bytes.len();
        if needed <= MAX_VALUE {
            if needed > self.value.capacity() {
                // Doubling from room for a usual value, but never past
                // the bound: a kept value holds at most MAX_VALUE bytes of
                // memory.
                let target = needed
                    .max(self.value.capacity() * 2)
                    .clamp(FIRST_CAPACITY, MAX_VALUE);
                self.value.reserve_exact(target - self.value.len());
            }
            self.value.extend_from_slice(bytes);
        } else {
            // Too large to be what is wanted: forget it.
            self.keeping = None;
            self.value = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(doc: &str, split: usize) -> TopLevelScanner {
        let mut s = TopLevelScanner::new(&["usage", "model"]);
        for chunk in doc.as_bytes().chunks(split.max(1)) {
            s.feed(chunk);
        }
        s
    }

    #[test]
    fn finds_only_top_level_members_in_any_split() {
        let doc = r#"{"id":"r","output":[{"usage":"x","model":"inner"}],"model" : "gpt-5.5",
 "usage": {"input_tokens":150000,"output_tokens":20, "d":{"a":[1,"}\"",2]}},
 "metadata":{"usage":"x"},"text":"\"usage\": {\"input_tokens\": 1}"}"#;
        for split in [1, 2, 3, 7, 64, doc.len()] {
            let s = scan(doc, split);
            assert_eq!(
                s.value("usage"),
                Some(&br#"{"input_tokens":150000,"output_tokens":20, "d":{"a":[1,"}\"",2]}}"#[..]),
                "split {split}"
            );
            assert_eq!(
                s.value("model"),
                Some(&br#""gpt-5.5""#[..]),
                "split {split}"
            );
        }
    }

    #[test]
    fn escaped_names_and_scalars() {
        let s = scan(r#"{"\u0075sage": 7 ,"model":null}"#, 1);
        assert_eq!(s.value("usage"), Some(&b"7"[..]));
        assert_eq!(s.value("model"), Some(&b"null"[..]));
        let s = scan(r#"[{"usage":{}}]"#, 1);
        assert!(s.found().is_empty());
        let s = scan(r#"{"a":{"usage":{}}}"#, 1);
        assert!(s.found().is_empty());
    }

    /// Whatever the chunks, a wanted member's value is exactly its text in
    /// the document as a JSON parser reads it (without the whitespace
    /// around it).
    #[test]
    fn values_are_the_documents_own_text_in_any_split() {
        let docs = [
            r#"{ "usage" :	{"a": [1, {"b":"}],\"{"}], "c" : "x"} , "model":"m"}"#,
            r#"{"model":"\"usage\"","usage":  -1.5e3  }"#,
            r#"{"x":[[[[]]],{"usage":1}],"usage":"a\\\"b{","model":{}}"#,
            r#"{"usage":[ "]", "[", {"k":"\u005d"} ] ,"model":true}"#,
        ];
        for doc in docs {
            let parsed: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
                serde_json::from_str(doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
            for split in 1..=doc.len() {
                let s = scan(doc, split);
                for name in ["usage", "model"] {
                    assert_eq!(
                        s.value(name).map(|v| std::str::from_utf8(v).unwrap_or("")),
                        parsed.get(name).map(|v| v.get()),
                        "{doc} split {split} member {name}"
                    );
                }
            }
        }
    }

    /// A value of exactly [`MAX_VALUE`] bytes is kept; one byte more and
    /// it is dropped, wherever the chunks fall.
    #[test]
    fn the_value_bound_is_exact_in_any_split() {
        for (len, kept) in [(MAX_VALUE, true), (MAX_VALUE + 1, false)] {
            let value = format!("\"{}\"", "u".repeat(len - 2));
            let doc = format!(r#"{{"usage": {value},"model":"m"}}"#);
            for split in [1000, 4096, 65536, doc.len()] {
                let s = scan(&doc, split);
                assert_eq!(
                    s.value("usage").map(<[u8]>::len),
                    kept.then_some(len),
                    "{len} {split}"
                );
                assert_eq!(s.value("model"), Some(&br#""m""#[..]));
                // Memory too: a kept value's buffer never grows past it.
                assert!(s.found().iter().all(|(_, v)| v.capacity() <= MAX_VALUE));
            }
        }
    }

    #[test]
    fn huge_documents_keep_little() {
        let filler = "x".repeat(3 << 20);
        let doc = format!(r#"{{"data":"{filler}","usage":{{"prompt_tokens":5}}}}"#);
        let s = scan(&doc, 65536);
        assert_eq!(s.value("usage"), Some(&br#"{"prompt_tokens":5}"#[..]));
    }
}
