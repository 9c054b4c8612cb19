//! Request bodies: the members of a JSON object located by byte span, and
//! edits made as byte splices, so every byte the gateway does not mean to
//! change reaches the provider exactly as the client sent it.
//!
//! Structured outputs, tool schemas and signed thinking blocks depend on
//! key order, number spelling and whitespace, so a body is never parsed
//! into a value and printed again. [`JsonObject::parse`] locates each
//! top-level member's value with `serde_json`'s [`RawValue`] (the JSON
//! grammar stays the library's), and the edits ([`BodyEdits`]) replace,
//! insert or remove whole members by their spans.
//!
//! The rules a body must follow to be read here (RFC 8259 with the
//! ambiguities removed): UTF-8 throughout, one JSON object, and no member
//! name twice at the top level (parsers disagree on which duplicate wins,
//! so the gateway could meter or route on one value while the provider
//! used another).
//!
//! ```
//! use llm_integration_core::body::{BodyEdits, JsonObject};
//!
//! let body = br#"{"model": "anthropic/claude-sonnet-4-6", "n": 12345678901234567890123}"#;
//! let object = JsonObject::parse(body)?;
//! let mut edits = BodyEdits::default();
//! edits.set_string(&object, "model", "claude-sonnet-4-6");
//! assert_eq!(
//!     edits.apply(body),
//!     br#"{"model": "claude-sonnet-4-6", "n": 12345678901234567890123}"#.to_vec()
//! );
//! # Ok::<(), llm_integration_core::body::BodyError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Why a body could not be read as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is not UTF-8 (the byte offset of the first bad byte).
    #[error("the request body is not valid UTF-8 (at byte {0}); JSON bodies must be UTF-8")]
    NotUtf8(usize),
    /// The body is not JSON, or not an object.
    #[error("the request body is not a valid JSON object: {0}")]
    NotAnObject(String),
    /// A member name appears twice at the top level.
    #[error("the request body has the member {0:?} more than once; send each member once")]
    DuplicateMember(String),
}

/// One member of an object: its decoded name and where its value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    /// The name, with escapes decoded (`"mod\u0065l"` is `model`).
    pub name: Cow<'a, str>,
    /// The value's bytes within the parsed slice (no surrounding whitespace).
    pub value: Range<usize>,
}

/// A JSON object whose top-level members are located by byte span.
#[derive(Debug, Clone)]
pub struct JsonObject<'a> {
    bytes: &'a [u8],
    /// Where this object starts in the body that edits apply to (non-zero
    /// for a nested object).
    base: usize,
    open: usize,
    close: usize,
    members: Vec<Member<'a>>,
}

const fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A member name, borrowed when it has no escapes.
#[derive(Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'de>, M::Error> {
                let mut members = Vec::new();
                while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push((name, value));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> JsonObject<'a> {
    /// Reads `bytes` as one JSON object (leading and trailing whitespace
    /// allowed) and locates its members.
    ///
    /// # Errors
    /// [`BodyError`]: not UTF-8, not a JSON object, or a duplicate member.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BodyError> {
        Self::parse_at(bytes, 0)
    }

    fn parse_at(bytes: &'a [u8], base: usize) -> Result<Self, BodyError> {
        if let Err(e) = std::str::from_utf8(bytes) {
            return Err(BodyError::NotUtf8(base + e.valid_up_to()));
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let parsed = Members::deserialize(&mut de)
            .and_then(|m| de.end().map(|()| m))
            .map_err(|e| BodyError::NotAnObject(e.to_string()))?;
        let open = bytes.iter().position(|b| !is_ws(*b)).unwrap_or(0);
        let close = bytes.iter().rposition(|b| !is_ws(*b)).unwrap_or(0);
        if bytes.get(open) != Some(&b'{') || bytes.get(close) != Some(&b'}') {
            return Err(BodyError::NotAnObject("expected an object".into()));
        }
        let start = bytes.as_ptr() as usize;
        let members: Vec<Member<'a>> = parsed
            .0
            .into_iter()
            .map(|(name, raw)| {
                // A borrowed RawValue is a sub-slice of `bytes`.
                let at = raw.get().as_ptr() as usize - start;
                Member {
                    name,
                    value: at..at + raw.get().len(),
                }
            })
            .collect();
        // A request has a dozen members: compared pairwise, without a
        // hash set to build; a set past that, so a hostile body of many
        // members costs linear time.
        let twice = if members.len() <= 16 {
            members
                .iter()
                .enumerate()
                .find(|(i, m)| members[..*i].iter().any(|e| e.name == m.name))
                .map(|(_, m)| m)
        } else {
            let mut seen = std::collections::HashSet::with_capacity(members.len());
            members.iter().find(|m| !seen.insert(m.name.as_ref()))
        };
        if let Some(twice) = twice {
            return Err(BodyError::DuplicateMember(twice.name.clone().into_owned()));
        }
        Ok(JsonObject {
            bytes,
            base,
            open,
            close,
            members,
        })
    }

    /// The text this object was read from: for an object read with
    /// [`JsonObject::parse`], the whole body.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The members, in the order they appear.
    pub fn members(&self) -> &[Member<'a>] {
        &self.members
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.name == name)
    }

    /// The raw bytes of a member's value.
    pub fn raw(&self, name: &str) -> Option<&'a [u8]> {
        let bytes = self.bytes;
        self.index(name)
            .map(|i| &bytes[self.members[i].value.clone()])
    }

    /// A member's value as `T`, or `None` when the member is absent or
    /// not of that type (lenient: routing and metering read what they
    /// understand and leave the rest to the provider).
    pub fn get<T: Deserialize<'a>>(&self, name: &str) -> Option<T> {
        self.raw(name)
            .and_then(|raw| serde_json::from_slice(raw).ok())
    }

    /// A member's value when it is a string.
    pub fn str(&self, name: &str) -> Option<Cow<'a, str>> {
        self.get::<Name<'a>>(name).map(|n| n.0)
    }

    /// A member's value when it is `true` or `false`.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.get(name)
    }

    /// A member's value when it is a non-negative integer.
    pub fn u64(&self, name: &str) -> Option<u64> {
        self.get(name)
    }

    /// A member's value when it is itself an object, located within the
    /// same body (so edits to it apply to the whole body).
    ///
    /// # Errors
    /// A nested object with a duplicate member.
    pub fn object(&self, name: &str) -> Result<Option<JsonObject<'a>>, BodyError> {
        let Some(i) = self.index(name) else {
            return Ok(None);
        };
        let range = self.members[i].value.clone();
        if self.bytes.get(range.start) != Some(&b'{') {
            return Ok(None);
        }
        Self::parse_at(&self.bytes[range.clone()], self.base + range.start).map(Some)
    }

    /// The span, in the whole body, of `local` (a range in this object's bytes).
    fn global(&self, local: Range<usize>) -> Range<usize> {
        self.base + local.start..self.base + local.end
    }

    /// Where member `i`'s text begins: after the previous value (with the
    /// comma and whitespace between them), or after `{`.
    fn region(&self, i: usize) -> Range<usize> {
        let start = if i == 0 {
            self.open + 1
        } else {
            self.members[i - 1].value.end
        };
        start..self.members[i].value.end
    }
}

/// A byte splice: replace `range` of the body with `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    /// The bytes replaced (empty for an insertion).
    pub range: Range<usize>,
    /// What goes in their place.
    pub with: Vec<u8>,
}

/// Edits to a request body, as byte splices. Each edit concerns one member;
/// the bytes between them are never touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyEdits {
    splices: Vec<Splice>,
    /// Members added (positive) or removed (negative) per object, by the
    /// position of the object's `{` in the body.
    counts: Vec<(usize, isize)>,
}

fn json_string(s: &str) -> Vec<u8> {
    // Serialising a string cannot fail.
    serde_json::to_vec(s).unwrap_or_default()
}

impl BodyEdits {
    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.splices.is_empty()
    }

    /// The splices, in the order they were made.
    pub fn splices(&self) -> &[Splice] {
        &self.splices
    }

    fn push(&mut self, range: Range<usize>, with: Vec<u8>) {
        self.splices.push(Splice { range, with });
    }

    /// Records `delta` members more (or fewer) in `object`; returns the
    /// number of members it has now.
    fn count(&mut self, object: &JsonObject<'_>, delta: isize) -> isize {
        let key = object.base + object.open;
        let slot = match self.counts.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.counts.push((key, object.members.len() as isize));
                self.counts.len() - 1
            }
        };
        self.counts[slot].1 += delta;
        self.counts[slot].1
    }

    /// Sets member `name` to the raw JSON `value`: its value is replaced if
    /// present, else the member is added at the end of the object.
    pub fn set_raw(&mut self, object: &JsonObject<'_>, name: &str, value: &[u8]) {
        match object.index(name) {
            Some(i) => {
                let range = object.global(object.members[i].value.clone());
                self.push(range, value.to_vec());
            }
            None => self.insert(object, name, value),
        }
    }

    /// Sets member `name` to the string `value`.
    pub fn set_string(&mut self, object: &JsonObject<'_>, name: &str, value: &str) {
        self.set_raw(object, name, &json_string(value));
    }

    /// Adds member `name` (absent from `object`) just before the closing
    /// brace, so it never falls inside a member removed by another edit.
    fn insert(&mut self, object: &JsonObject<'_>, name: &str, value: &[u8]) {
        let at = object.base + object.close;
        let before = self.count(object, 1) - 1;
        let mut text = Vec::with_capacity(name.len() + value.len() + 4);
        if before > 0 {
            text.push(b',');
        }
        text.extend_from_slice(&json_string(name));
        text.push(b':');
        text.extend_from_slice(value);
        self.push(at..at, text);
    }

    /// Removes every member of `object` for which `remove` is true, with
    /// the comma that separated it. Call before inserting into the same
    /// object.
    pub fn remove_where(&mut self, object: &JsonObject<'_>, remove: impl Fn(&str) -> bool) {
        let removed: Vec<bool> = object.members.iter().map(|m| remove(&m.name)).collect();
        let gone = removed.iter().filter(|g| **g).count() as isize;
        self.count(object, -gone);
        for (i, gone) in removed.iter().enumerate() {
            if *gone {
                self.push(object.global(object.region(i)), Vec::new());
            }
        }
        // With the first member gone, the first kept one loses its comma.
        if removed.first() == Some(&true) {
            if let Some(k) = removed.iter().position(|gone| !gone) {
                let region = object.region(k);
                let comma = object.bytes[region.clone()]
                    .iter()
                    .position(|b| *b == b',')
                    .map_or(region.start, |p| region.start + p + 1);
                self.push(object.global(region.start..comma), Vec::new());
            }
        }
    }

    /// Applies the edits to `body` (the bytes the object was parsed from).
    pub fn apply(&self, body: &[u8]) -> Vec<u8> {
        let mut order: Vec<&Splice> = self.splices.iter().collect();
        // Stable: insertions at one point keep the order they were made in.
        order.sort_by_key(|s| (s.range.start, s.range.end));
        let extra: usize = order.iter().map(|s| s.with.len()).sum();
        let mut out = Vec::with_capacity(body.len() + extra);
        let mut at = 0;
        for s in order {
            let start = s.range.start.clamp(at, body.len());
            out.extend_from_slice(&body[at..start]);
            out.extend_from_slice(&s.with);
            at = s.range.end.clamp(start, body.len());
        }
        out.extend_from_slice(&body[at..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edited(body: &str, f: impl FnOnce(&JsonObject<'_>, &mut BodyEdits)) -> String {
        let object = JsonObject::parse(body.as_bytes()).unwrap();
        let mut edits = BodyEdits::default();
        f(&object, &mut edits);
        let out = edits.apply(body.as_bytes());
        let text = String::from_utf8(out).unwrap();
        serde_json::from_str::<&RawValue>(&text)
            .unwrap_or_else(|e| panic!("edit of {body} gave invalid JSON {text}: {e}"));
        text
    }

    #[test]
    fn spans_and_values() {
        let body =
            br#" { "model" : "gpt-5" , "stream":true,"n":[1, {"a":2}], "m\u0061x_tokens": 300 } "#;
        let o = JsonObject::parse(body).unwrap();
        assert_eq!(o.str("model").as_deref(), Some("gpt-5"));
        assert_eq!(o.bool("stream"), Some(true));
        assert_eq!(o.u64("max_tokens"), Some(300));
        assert_eq!(o.raw("n"), Some(&br#"[1, {"a":2}]"#[..]));
        assert_eq!(o.u64("model"), None);
        assert_eq!(o.members().len(), 4);
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            JsonObject::parse(b"[1]"),
            Err(BodyError::NotAnObject(_))
        ));
        assert!(matches!(
            JsonObject::parse(b"{\"a\":1} x"),
            Err(BodyError::NotAnObject(_))
        ));
        assert!(matches!(
            JsonObject::parse(b""),
            Err(BodyError::NotAnObject(_))
        ));
        assert_eq!(
            JsonObject::parse(b"{\"model\":\"a\",\"m\\u006fdel\":\"b\"}").unwrap_err(),
            BodyError::DuplicateMember("model".into())
        );
        assert_eq!(
            JsonObject::parse(b"{\"a\":\"\xff\"}").unwrap_err(),
            BodyError::NotUtf8(6)
        );
        // Found however many members there are (compared pairwise up to
        // 16, through a set past that), and only when there is one.
        for n in [2usize, 3, 16, 17, 40] {
            let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
            let object = |names: &[String]| {
                let members: Vec<String> = names.iter().map(|m| format!("\"{m}\":1")).collect();
                format!("{{{}}}", members.join(","))
            };
            assert!(JsonObject::parse(object(&names).as_bytes()).is_ok(), "{n}");
            for (first, again) in [(0, n - 1), (n / 2 - 1, n - 1), (0, 1)] {
                let mut twice = names.clone();
                twice[again] = twice[first].clone();
                assert_eq!(
                    JsonObject::parse(object(&twice).as_bytes()).unwrap_err(),
                    BodyError::DuplicateMember(names[first].clone()),
                    "{n}: {first} and {again}"
                );
            }
        }
        // A lone surrogate in a value the gateway does not read is the
        // provider's to judge; in one it reads, the value is unreadable.
        let o = JsonObject::parse(b"{\"model\":\"\\ud800\"}").unwrap();
        assert_eq!(o.str("model"), None);
        // Nested duplicates are the provider's business, except where read.
        let o = JsonObject::parse(b"{\"o\":{\"x\":1,\"x\":2}}").unwrap();
        assert!(o.object("o").is_err());
    }

    #[test]
    fn replace_keeps_every_other_byte() {
        let body = r#"{"model":"anthropic/claude-x","x":1.2345678901234567890e400,"big":12345678901234567890123,"o":{"b":1,"a":2}}"#;
        let out = edited(body, |o, e| e.set_string(o, "model", "claude-x"));
        assert_eq!(out, body.replace("anthropic/claude-x", "claude-x"));
    }

    #[test]
    fn insert_at_end_and_into_empty() {
        assert_eq!(
            edited(r#"{"a":1 }"#, |o, e| e.set_raw(o, "b", b"true")),
            r#"{"a":1 ,"b":true}"#
        );
        assert_eq!(
            edited("{ }", |o, e| e.set_raw(o, "b", b"true")),
            r#"{ "b":true}"#
        );
        assert_eq!(
            edited("{}", |o, e| {
                e.set_raw(o, "b", b"1");
                e.set_raw(o, "c", b"2");
            }),
            r#"{"b":1,"c":2}"#
        );
    }

    #[test]
    fn nested_edits() {
        let body = r#"{"stream":true,"stream_options":{ "other": "x" }}"#;
        let out = edited(body, |o, e| {
            let inner = o.object("stream_options").unwrap().unwrap();
            e.set_raw(&inner, "include_usage", b"true");
        });
        assert_eq!(
            out,
            r#"{"stream":true,"stream_options":{ "other": "x" ,"include_usage":true}}"#
        );
        let body = r#"{"stream_options":{"include_usage":false}}"#;
        let out = edited(body, |o, e| {
            let inner = o.object("stream_options").unwrap().unwrap();
            e.set_raw(&inner, "include_usage", b"true");
        });
        assert_eq!(out, r#"{"stream_options":{"include_usage":true}}"#);
    }

    #[test]
    fn removals() {
        let keep = |names: &'static [&'static str]| move |n: &str| !names.contains(&n);
        let body = r#"{ "a" : 1 , "b":2,"c" :3 }"#;
        assert_eq!(
            edited(body, |o, e| e.remove_where(o, keep(&["b", "c"]))),
            r#"{ "b":2,"c" :3 }"#
        );
        assert_eq!(
            edited(body, |o, e| e.remove_where(o, keep(&["a", "c"]))),
            r#"{ "a" : 1,"c" :3 }"#
        );
        assert_eq!(
            edited(body, |o, e| e.remove_where(o, keep(&["a"]))),
            r#"{ "a" : 1 }"#
        );
        assert_eq!(
            edited(body, |o, e| e.remove_where(o, keep(&["c"]))),
            r#"{"c" :3 }"#
        );
        assert_eq!(edited(body, |o, e| e.remove_where(o, keep(&[]))), r#"{ }"#);
        // A comma inside a name is not a separator.
        let body = r#"{"x,y":1,"z":2}"#;
        assert_eq!(
            edited(body, |o, e| e.remove_where(o, keep(&["z"]))),
            r#"{"z":2}"#
        );
        // Removing then adding: the addition lands after what is kept.
        let body = r#"{"model":"m","temperature":1,"max_output_tokens":5}"#;
        let out = edited(body, |o, e| {
            e.remove_where(o, keep(&["model", "stream"]));
            e.set_raw(o, "stream", b"true");
            e.set_raw(o, "store", b"false");
        });
        assert_eq!(out, r#"{"model":"m","stream":true,"store":false}"#);
        let body = r#"{"temperature":1}"#;
        let out = edited(body, |o, e| {
            e.remove_where(o, keep(&["stream"]));
            e.set_raw(o, "stream", b"true");
        });
        assert_eq!(out, r#"{"stream":true}"#);
    }
}
