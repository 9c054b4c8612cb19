//! Text the gateway composes from what an upstream said (its errors, the
//! `failed_providers` of a model list, log lines) never repeats a
//! credential, even when the upstream echoes one back: every such text
//! passes through [`Redactor::redact`], which removes the credentials the
//! request used and anything shaped like a key or token.
//!
//! Shapes: the providers' key prefixes (`sk-`, `sk_`, `fw_`, `xai-`, …)
//! followed by at least 16 key characters; JSON Web Tokens (ChatGPT access
//! tokens: `eyJ…` in three dot-separated parts); and whatever follows
//! `Bearer `.

use std::borrow::Cow;

/// What replaces a credential.
pub const REDACTED: &str = "[REDACTED]";

/// Prefixes of provider keys.
const KEY_PREFIXES: [&str; 7] = ["sk-", "sk_", "fw_", "fw-", "xai-", "pk-", "rk-"];

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Removes credentials from text.
#[derive(Debug, Clone, Default)]
pub struct Redactor<'a> {
    secrets: Vec<&'a str>,
}

impl<'a> Redactor<'a> {
    /// A redactor removing `secrets` (the credentials of the request; ones
    /// shorter than 8 bytes are too common to search for and are left to
    /// the shape rules) and key-shaped text.
    pub fn new(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        Redactor {
            secrets: secrets.into_iter().filter(|s| s.len() >= 8).collect(),
        }
    }

    /// `text` without credentials.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret) {
                out = Cow::Owned(out.replace(secret, REDACTED));
            }
        }
        if needs_shape_pass(&out) {
            out = Cow::Owned(redact_shapes(&out));
        }
        out
    }
}

/// Whether `c` would move the cursor, change the terminal or hide what
/// follows: C0 controls, DEL, C1 controls, bidirectional embeddings,
/// overrides, isolates and marks, line and paragraph separators,
/// zero-width characters, the byte-order mark, and the characters that
/// draw nothing (Unicode's default-ignorable code points but for the
/// variation selectors, which only pick a glyph's style): the soft
/// hyphen, the combining grapheme joiner, the Hangul and Khmer fillers,
/// the Mongolian selectors and vowel separator, the interlinear
/// annotation marks, and the tag characters U+E0000–U+E007F (with which
/// text can be hidden inside text).
fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'..='\u{1160}'
                | '\u{17b4}'..='\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff0}'..='\u{fffb}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

fn escape_unprintable(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let bad = |c: char| is_unprintable(c) && !(keep_lines && (c == '\n' || c == '\t'));
    if !text.chars().any(bad) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` safe to print on a terminal, lines kept: every character that
/// could move the cursor, recolour or clear the screen, reorder or hide
/// text (controls other than `\n` and `\t`, ESC and CR included;
/// bidirectional controls; zero-width and other characters that draw
/// nothing, tag characters included) is written as a
/// `\u{…}` escape. For text that came from an upstream or a tenant.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape_unprintable(text, true)
}

/// [`printable`] for one field of one line (a name, a code, a model):
/// `\n` and `\t` are escaped too.
pub fn printable_line(text: &str) -> Cow<'_, str> {
    escape_unprintable(text, false)
}

/// [`printable_line`] of at most the first `max_bytes` bytes of `text`
/// (cut at a character boundary): a field an upstream named, as it may be
/// stored and shown.
pub fn printable_field(text: &str, max_bytes: usize) -> String {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    printable_line(&text[..end]).into_owned()
}

fn needs_shape_pass(text: &str) -> bool {
    KEY_PREFIXES.iter().any(|p| text.contains(p))
        || text.contains("eyJ")
        || text.contains("Bearer ")
}

fn is_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3 && token.starts_with("eyJ") && parts.iter().all(|p| p.len() >= 4)
}

fn redact_shapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_bearer = false;
    let mut rest = text;
    while !rest.is_empty() {
        // The next run of token characters (dots included, for JWTs).
        let start = rest
            .find(|c: char| is_key_char(c) || c == '.')
            .unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !(is_key_char(c) || c == '.'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        let token = word.trim_end_matches('.');
        let keyish = KEY_PREFIXES.iter().any(|p| {
            token.starts_with(p)
                && token.len() >= p.len() + 16
                && token[p.len()..].chars().all(is_key_char)
        });
        if !token.is_empty() && (keyish || is_jwt(token) || (after_bearer && token.len() >= 8)) {
            out.push_str(REDACTED);
            out.push_str(&word[token.len()..]);
        } else {
            out.push_str(word);
        }
        after_bearer = token.eq_ignore_ascii_case("bearer");
        rest = &rest[end..];
    }
    out
}

/// Removes one credential from a byte stream relayed in chunks (an
/// upstream's answer on its way to the client), however the stream is
/// split.
///
/// Every occurrence of the credential, as written or as a JSON string
/// escapes it (`\"`, `\\`, `\/`, `\uXXXX` for controls), is replaced by a
/// mask of the same length (`[REDACTED]` then `*`s; `*`s alone for a
/// credential shorter than the word), so a body's declared length stays
/// true. A chunk is passed on whole unless its last bytes could begin the
/// credential: those (fewer than the credential's length) wait for the
/// next chunk. No credential begins with a line end, so the end of an
/// event (`\n`) is never held. At the end of the stream, held bytes that
/// are 8 or more of the credential's first bytes are masked too.
///
/// Credentials shorter than 8 bytes are not searched for (too common).
pub struct StreamScrubber {
    /// A searcher for the credential as written, built once; it holds a
    /// copy of the credential for the request's life, as the request's
    /// own headers do.
    finder: memchr::memmem::Finder<'static>,
    /// Searchers for its JSON-escaped spellings, when they differ (rare:
    /// keys and tokens are written the same in a JSON string).
    escaped: Vec<memchr::memmem::Finder<'static>>,
    held: Vec<u8>,
    found: bool,
}

impl std::fmt::Debug for StreamScrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamScrubber")
            .field("held", &self.held.len())
            .field("found", &self.found)
            .finish_non_exhaustive()
    }
}

/// The mask of a credential's `len` bytes.
fn mask(len: usize) -> impl Iterator<Item = u8> {
    let word: &[u8] = if len >= REDACTED.len() {
        REDACTED.as_bytes()
    } else {
        b""
    };
    word.iter()
        .copied()
        .chain(std::iter::repeat(b'*'))
        .take(len)
}

/// The length of the longest end of `data` that begins `needle` without
/// being all of it.
fn partial_tail(data: &[u8], needle: &[u8]) -> usize {
    let Some(&first) = needle.first() else {
        return 0;
    };
    let window = needle.len().saturating_sub(1).min(data.len());
    let tail = &data[data.len() - window..];
    memchr::memchr_iter(first, tail)
        .find(|&i| needle.starts_with(&tail[i..]))
        .map_or(0, |i| tail.len() - i)
}

/// Masks every occurrence `finder` finds in `bytes`; whether there was one.
fn mask_all(finder: &memchr::memmem::Finder<'_>, bytes: &mut [u8]) -> bool {
    let len = finder.needle().len();
    let at: Vec<usize> = finder.find_iter(bytes).collect();
    for &start in &at {
        for (byte, m) in bytes[start..start + len].iter_mut().zip(mask(len)) {
            *byte = m;
        }
    }
    !at.is_empty()
}

impl StreamScrubber {
    /// A scrubber for `secret`; `None` when it is shorter than 8 bytes.
    pub fn new(secret: &str) -> Option<Self> {
        if secret.len() < 8 {
            return None;
        }
        let owned = |bytes: &[u8]| memchr::memmem::Finder::new(bytes).into_owned();
        let mut escaped = Vec::new();
        if secret
            .bytes()
            .any(|b| matches!(b, b'"' | b'\\' | b'/') || b < 0x20)
        {
            let quoted = zeroize::Zeroizing::new(serde_json::Value::from(secret).to_string());
            let plain = &quoted[1..quoted.len() - 1];
            let slashed = zeroize::Zeroizing::new(plain.replace('/', "\\/"));
            for form in [plain, slashed.as_str()] {
                if form != secret
                    && !escaped
                        .iter()
                        .any(|f: &memchr::memmem::Finder<'_>| f.needle() == form.as_bytes())
                {
                    escaped.push(owned(form.as_bytes()));
                }
            }
        }
        Some(StreamScrubber {
            finder: owned(secret.as_bytes()),
            escaped,
            held: Vec::new(),
            found: false,
        })
    }

    /// Every searcher: the credential as written, then its escapes.
    fn finders(&self) -> impl Iterator<Item = &memchr::memmem::Finder<'static>> {
        std::iter::once(&self.finder).chain(&self.escaped)
    }

    /// `text` (a whole text the gateway composed from the answer: an
    /// error's message, the model it names) with every occurrence of the
    /// credential masked.
    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if self.finders().all(|f| f.find(text.as_bytes()).is_none()) {
            return Cow::Borrowed(text);
        }
        // Whole UTF-8 sequences are replaced by ASCII: still UTF-8.
        let bytes = self.mask_bytes(text.as_bytes().to_vec());
        Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `bytes` (a whole answer read before the gateway composes from it)
    /// with every occurrence of the credential masked.
    pub fn mask_bytes(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        for finder in self.finders() {
            mask_all(finder, &mut bytes);
        }
        bytes
    }

    /// Whether the credential was found (and masked) so far.
    pub fn found(&self) -> bool {
        self.found
    }

    /// The next chunk; returns what may be relayed now.
    pub fn feed(&mut self, chunk: bytes::Bytes) -> bytes::Bytes {
        let clean = self
            .finders()
            .all(|f| f.find(&chunk).is_none() && partial_tail(&chunk, f.needle()) == 0);
        if self.held.is_empty() && clean {
            return chunk;
        }
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(&chunk);
        let mut found = false;
        for finder in std::iter::once(&self.finder).chain(&self.escaped) {
            found |= mask_all(finder, &mut data);
        }
        self.found |= found;
        let hold = self
            .finders()
            .map(|f| partial_tail(&data, f.needle()))
            .max()
            .unwrap_or(0);
        self.held = data.split_off(data.len() - hold);
        bytes::Bytes::from(data)
    }

    /// The stream ended: the bytes still held.
    pub fn finish(&mut self) -> bytes::Bytes {
        let mut held = std::mem::take(&mut self.held);
        if held.len() >= 8 {
            self.found = true;
            let len = held.len();
            for (byte, m) in held.iter_mut().zip(mask(len)) {
                *byte = m;
            }
        }
        bytes::Bytes::from(held)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unprintable_characters_are_escaped() {
        use super::{printable, printable_line};
        assert!(matches!(
            printable("claude-sonnet-4-6 $0.1\n"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(printable("a\x1b[2Jb\rok\n"), "a\\u{1b}[2Jb\\u{d}ok\n");
        assert_eq!(
            printable("x\u{202e}y\u{2066}z\u{200b}\u{feff}\u{9b}"),
            "x\\u{202e}y\\u{2066}z\\u{200b}\\u{feff}\\u{9b}"
        );
        assert_eq!(printable_line("a\nb\tc"), "a\\u{a}b\\u{9}c");
        // Characters that draw nothing: a soft hyphen, the Mongolian vowel
        // separator, Hangul fillers, and tag characters spelling "hi".
        assert_eq!(
            printable("a\u{ad}b\u{180e}c\u{115f}\u{3164}d\u{e0068}\u{e0069}\u{e007f}"),
            "a\\u{ad}b\\u{180e}c\\u{115f}\\u{3164}d\\u{e0068}\\u{e0069}\\u{e007f}"
        );
        // A variation selector only picks a glyph's style: kept.
        assert_eq!(printable("\u{2764}\u{fe0f}"), "\u{2764}\u{fe0f}");
        assert_eq!(printable("é 漢字 🙂"), "é 漢字 🙂");
        assert_eq!(super::printable_field("漢字\u{1b}", 4), "漢");
        assert_eq!(super::printable_field("ab\u{1b}", 10), "ab\\u{1b}");
    }

    use super::*;

    #[test]
    fn credentials_and_key_shapes() {
        let r = Redactor::new(["gw-openai-0123456789abcdef", "short"]);
        let text = "Incorrect API key provided: gw-openai-0123456789abcdef. Also sk-proj-AAAAAAAAAAAAAAAAAAAAAAAA and fw_ZZZZZZZZZZZZZZZZZZZZ; \
header Authorization: Bearer abcdefgh12345678; token eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl; short stays; model gpt-5.5 and req_123 stay; sk-x stays.";
        let out = r.redact(text);
        for gone in [
            "gw-openai-0123456789abcdef",
            "sk-proj-AAAA",
            "fw_ZZZZ",
            "abcdefgh12345678",
            "eyJhbGciOi",
        ] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
        for kept in [
            "short stays",
            "gpt-5.5",
            "req_123",
            "sk-x stays",
            "Incorrect API key provided",
        ] {
            assert!(out.contains(kept), "{kept} missing from {out}");
        }
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    fn scrub(secret: &str, chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = StreamScrubber::new(secret).unwrap();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&s.feed(bytes::Bytes::copy_from_slice(c)));
        }
        out.extend_from_slice(&s.finish());
        out
    }

    #[test]
    fn a_credential_is_masked_in_any_split_and_keeps_the_length() {
        let secret = "sk-proj-0123456789abcdefXYZ";
        let text = format!(
            "event: error\ndata: {{\"error\":{{\"message\":\"bad key {secret}\"}}}}\n\nsk-pro more sk-\n\n"
        );
        let whole = scrub(secret, &[text.as_bytes()]);
        assert_eq!(whole.len(), text.len());
        let whole = String::from_utf8(whole).unwrap();
        assert!(!whole.contains(secret), "{whole}");
        assert!(
            whole.contains("bad key [REDACTED]*****************\""),
            "{whole}"
        );
        assert!(whole.contains("sk-pro more sk-\n\n"), "{whole}");
        for cut in 0..=text.len() {
            let (a, b) = text.as_bytes().split_at(cut);
            assert_eq!(String::from_utf8(scrub(secret, &[a, b])).unwrap(), whole);
        }
        let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(String::from_utf8(scrub(secret, &bytes)).unwrap(), whole);
    }

    #[test]
    fn escaped_forms_are_masked_and_clean_chunks_pass_untouched() {
        let secret = "Tok\"en/with\\odd";
        let json = serde_json::json!({ "echo": secret }).to_string();
        let slashed = json.replace('/', "\\/");
        for text in [json, slashed] {
            let out = String::from_utf8(scrub(secret, &[text.as_bytes()])).unwrap();
            assert_eq!(out.len(), text.len());
            assert!(!out.contains("with"), "{out}");
        }
        let mut s = StreamScrubber::new("sk-ant-api03-secretsecret").unwrap();
        let event = bytes::Bytes::from_static(b"data: {\"text\":\"hello\"}\n\n");
        let out = s.feed(event.clone());
        // Passed on as it came: the same buffer, nothing held.
        assert_eq!(out.as_ptr(), event.as_ptr());
        assert!(!s.found());
        // A cut stream: a long start of the credential is masked at its end.
        let mut s = StreamScrubber::new("sk-ant-api03-secretsecret").unwrap();
        assert_eq!(
            &s.feed(bytes::Bytes::from_static(b"x sk-ant-api03-sec"))[..],
            b"x "
        );
        assert_eq!(&s.finish()[..], b"[REDACTED]******");
        assert!(s.found());
        assert!(StreamScrubber::new("short").is_none());
    }
}
