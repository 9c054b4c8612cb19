//! What a provider's successful answer must be, and what it turned out to
//! be: a `200` whose body is not what the route speaks (an HTML error page
//! from a proxy in front of the provider, plain text, JSON to a request
//! that asked for a stream) becomes a 502 naming what came back, instead of
//! reaching a client that cannot read it.
//!
//! An answer is recognised by its first bytes, not only by its
//! `Content-Type` (some backends send event streams without one, some
//! proxies label an HTML page `application/json`): leading whitespace and a
//! UTF-8 byte order mark skipped, `{` or `[` is JSON, an event-stream field
//! (`data:`, `event:`, `id:`, `retry:`) or a comment (`:`) is an event
//! stream, `<` is markup (named `text/html`), and anything else is named by
//! its `Content-Type`.
//!
//! ```
//! use llm_integration_core::answer::{check, sniff, Expect, Sniffed};
//! use llm_integration_core::Dialect;
//!
//! assert_eq!(sniff(None, b"event: message_start\n", false), Sniffed::EventStream);
//! assert_eq!(sniff(Some(b"application/json"), b"<html>", false), Sniffed::Other("text/html".into()));
//! assert_eq!(sniff(None, b"  da", false), Sniffed::Undecided);
//! let refused = check(Expect::EventStream, &sniff(Some(b"application/json"), b"<html>", true), Dialect::Anthropic);
//! assert_eq!(refused.unwrap_err().message, "the upstream answered text/html where an event stream was expected");
//! ```

use crate::body::JsonObject;
use crate::gateway_error::GatewayError;
use crate::provider::Dialect;
use crate::wire::errors::ErrorClass;

/// What a route's successful answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A `text/event-stream` (the client asked for a stream).
    EventStream,
    /// A JSON document.
    Json,
}

impl Expect {
    fn describe(self) -> &'static str {
        match self {
            Expect::EventStream => "an event stream",
            Expect::Json => "JSON",
        }
    }
}

/// What an answer's first bytes show it to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    /// An event stream.
    EventStream,
    /// A JSON document.
    Json,
    /// Something else, named by its media type.
    Other(String),
    /// The body is empty (or only whitespace).
    Empty,
    /// Not enough bytes yet to tell.
    Undecided,
}

/// The most leading bytes looked at before an answer is named by its
/// `Content-Type` alone.
pub const MAX_SNIFF: usize = 1024;

const FIELDS: [&[u8]; 4] = [b"data:", b"event:", b"id:", b"retry:"];

/// What an answer is, from its `Content-Type` and the first bytes of its
/// (decoded) body; `complete` when `prefix` is the whole body.
pub fn sniff(content_type: Option<&[u8]>, prefix: &[u8], complete: bool) -> Sniffed {
    let bytes = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        if complete {
            return Sniffed::Empty;
        }
        if prefix.len() >= MAX_SNIFF {
            return Sniffed::Other("whitespace".into());
        }
        return Sniffed::Undecided;
    };
    let rest = &bytes[start..];
    match rest[0] {
        b'{' | b'[' => return Sniffed::Json,
        b'<' => return Sniffed::Other("text/html".into()),
        b':' => return Sniffed::EventStream,
        _ => {}
    }
    for field in FIELDS {
        if rest.starts_with(field) {
            return Sniffed::EventStream;
        }
        if field.starts_with(rest) && !complete {
            return Sniffed::Undecided;
        }
    }
    let named = content_type
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty() && v.len() <= 100 && v.bytes().all(|b| b.is_ascii_graphic()));
    match named {
        // Labelled as what the route speaks, but not that.
        Some(label)
            if label == "application/json"
                || label.ends_with("+json")
                || label == "text/event-stream" =>
        {
            Sniffed::Other(format!(
                "a body that is neither JSON nor an event stream (labelled {label})"
            ))
        }
        Some(label) => Sniffed::Other(label),
        None => Sniffed::Other("a body of unknown type".to_owned()),
    }
}

/// Whether `sniffed` is what `expect` asks for; the 502 to answer if not.
///
/// # Errors
/// A [`GatewayError`] (502, the upstream's fault, retryable) naming what
/// came back and what was expected.
pub fn check(expect: Expect, sniffed: &Sniffed, dialect: Dialect) -> Result<(), GatewayError> {
    let what = match (expect, sniffed) {
        (Expect::EventStream, Sniffed::EventStream) | (Expect::Json, Sniffed::Json) => {
            return Ok(())
        }
        // Not decided: the caller reads more first; let it through rather
        // than refuse a good answer.
        (_, Sniffed::Undecided) => return Ok(()),
        (_, Sniffed::EventStream) => "an event stream",
        (_, Sniffed::Json) => "JSON",
        (_, Sniffed::Empty) => "an empty body",
        (_, Sniffed::Other(name)) => name.as_str(),
    };
    Err(GatewayError::new(
        dialect,
        ErrorClass::BadGateway,
        "upstream_bad_answer",
        format!(
            "the upstream answered {what} where {} was expected",
            expect.describe()
        ),
    ))
}

/// What a successful answer on `path` (the upstream path, without its
/// query) must be, for a request with `body`: the inference endpoints
/// answer an event stream when the request asked to stream, JSON
/// otherwise; other endpoints are not checked. `always_streams`: the
/// upstream streams whatever the request says (the ChatGPT backend).
pub fn expect_for(
    path: &str,
    body: Option<&JsonObject<'_>>,
    always_streams: bool,
) -> Option<Expect> {
    let api = path.strip_prefix("/inference").unwrap_or(path);
    let streams = always_streams || body.and_then(|b| b.bool("stream")) == Some(true);
    match api {
        "/v1/messages" | "/v1/chat/completions" | "/v1/completions" | "/v1/responses" => {
            Some(if streams {
                Expect::EventStream
            } else {
                Expect::Json
            })
        }
        "/v1/messages/count_tokens"
        | "/v1/responses/input_tokens"
        | "/v1/responses/compact"
        | "/v1/embeddings"
        | "/v1/moderations" => Some(Expect::Json),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A content type, the first bytes, whether they are all, the verdict.
    type Case = (Option<&'static [u8]>, &'static [u8], bool, Sniffed);

    #[test]
    fn sniffing() {
        let cases: [Case; 13] = [
            (
                Some(b"text/event-stream"),
                b"data: {}\n\n",
                false,
                Sniffed::EventStream,
            ),
            (None, b"\r\n: ping\r\n", false, Sniffed::EventStream),
            (None, b"retry: 10\n", false, Sniffed::EventStream),
            (
                Some(b"application/json"),
                b" \n{\"a\":1}",
                true,
                Sniffed::Json,
            ),
            (None, b"\xEF\xBB\xBF[1]", true, Sniffed::Json),
            (
                Some(b"application/json"),
                b"<html>not json</html>",
                true,
                Sniffed::Other("text/html".into()),
            ),
            (
                Some(b"text/plain; charset=utf-8"),
                b"Internal Server Error",
                true,
                Sniffed::Other("text/plain".into()),
            ),
            (
                None,
                b"oops",
                true,
                Sniffed::Other("a body of unknown type".into()),
            ),
            (
                Some(b"application/json"),
                b"\x00\x01garbage{{{",
                true,
                Sniffed::Other(
                    "a body that is neither JSON nor an event stream (labelled application/json)"
                        .into(),
                ),
            ),
            (None, b"", true, Sniffed::Empty),
            (None, b"  ", false, Sniffed::Undecided),
            (None, b"ev", false, Sniffed::Undecided),
            (
                None,
                b"ev",
                true,
                Sniffed::Other("a body of unknown type".into()),
            ),
        ];
        for (ct, prefix, complete, want) in cases {
            assert_eq!(
                sniff(ct, prefix, complete),
                want,
                "{:?}",
                String::from_utf8_lossy(prefix)
            );
        }
        assert_eq!(
            sniff(None, &[b' '; MAX_SNIFF], false),
            Sniffed::Other("whitespace".into())
        );
    }

    #[test]
    fn checks() {
        assert!(check(Expect::EventStream, &Sniffed::EventStream, Dialect::OpenAi).is_ok());
        let e = check(Expect::EventStream, &Sniffed::Json, Dialect::OpenAi).unwrap_err();
        assert_eq!(
            e.message,
            "the upstream answered JSON where an event stream was expected"
        );
        assert_eq!(e.status().as_u16(), 502);
        let e = check(Expect::Json, &Sniffed::Empty, Dialect::Anthropic).unwrap_err();
        assert!(e.body().contains("an empty body where JSON was expected"));
    }

    #[test]
    fn expectations() {
        let streamed = JsonObject::parse(br#"{"stream":true}"#).unwrap();
        let plain = JsonObject::parse(br#"{"stream":false}"#).unwrap();
        assert_eq!(
            expect_for("/v1/messages", Some(&streamed), false),
            Some(Expect::EventStream)
        );
        assert_eq!(
            expect_for("/inference/v1/chat/completions", Some(&plain), false),
            Some(Expect::Json)
        );
        assert_eq!(
            expect_for("/v1/responses", Some(&plain), true),
            Some(Expect::EventStream)
        );
        assert_eq!(
            expect_for("/v1/messages/count_tokens", Some(&streamed), false),
            Some(Expect::Json)
        );
        assert_eq!(expect_for("/v1/files", None, false), None);
        assert_eq!(expect_for("/v1/audio/speech", None, false), None);
    }
}
