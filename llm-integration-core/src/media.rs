//! Images and documents in a request, sized the way the providers bill
//! them rather than by their base64 bytes (a 3 MiB photo is a few thousand
//! tokens, not three million).
//!
//! Found in a request body: Anthropic's `{"type":"base64","media_type":…,
//! "data":…}` sources, and the `data:…;base64,…` URLs of OpenAI's
//! `image_url`, `input_image` and `input_file`. Rules:
//!
//! - **Anthropic images**: scaled to fit 1568 px on the long edge and
//!   1.15 megapixels, then `width × height / 750` tokens.
//! - **OpenAI images** (high detail, the dearer): scaled to fit
//!   2048 × 2048, then the short side to 768, then 170 tokens per 512 px
//!   tile plus 85.
//! - **Documents (PDF)**: [`PDF_PAGE_TOKENS`] per page (the text of a dense
//!   page and the page's image), pages counted in the file.
//! - An image whose size cannot be read counts as [`UNKNOWN_IMAGE_TOKENS`];
//!   a document whose pages cannot be counted (its page objects are in
//!   compressed object streams), by its size: a page per
//!   [`PDF_BYTES_PER_PAGE`] bytes, or its stated page count if larger.
//! - Media the request only refers to (a URL, a `file_id`) count as an
//!   image of [`UNKNOWN_IMAGE_TOKENS`] or a document of
//!   [`REFERENCED_DOCUMENT_TOKENS`]; context held by the provider
//!   (`previous_response_id`, `conversation`, a stored `prompt`) as
//!   [`REFERENCED_CONTEXT_TOKENS`]: the gateway cannot see their size, so
//!   it assumes a large one.

use base64::Engine;
use serde_json::Value;

use crate::provider::Provider;
use crate::usage::RatioCounter;

/// Tokens of one PDF page: up to 3,000 of text and about 1,600 for its image.
pub const PDF_PAGE_TOKENS: u64 = 4_600;

/// Tokens of an image whose size cannot be read: the most either provider
/// bills for one image at its default sizes.
pub const UNKNOWN_IMAGE_TOKENS: u64 = 1_600;

/// Bytes of a PDF per page, where its pages cannot be counted.
pub const PDF_BYTES_PER_PAGE: u64 = 20_000;

/// Tokens of a document the request refers to by URL or file id.
pub const REFERENCED_DOCUMENT_TOKENS: u64 = 100 * PDF_PAGE_TOKENS;

/// Tokens of context the provider holds for the request (a previous
/// response, a conversation, a stored prompt).
pub const REFERENCED_CONTEXT_TOKENS: u64 = 128_000;

/// The base64 characters decoded to read an image's size (its header).
const IMAGE_HEAD: usize = 64 * 1024;

/// What the media of a request weigh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Media {
    /// Bytes of the body that are media (their base64 text).
    pub bytes: u64,
    /// Tokens the provider bills for them.
    pub tokens: u64,
    /// How many there are.
    pub count: u64,
}

fn anthropic_image(w: u64, h: u64) -> u64 {
    let (w, h) = (w.max(1) as f64, h.max(1) as f64);
    let scale = (1568.0 / w.max(h))
        .min((1_150_000.0 / (w * h)).sqrt())
        .min(1.0);
    ((w * scale) * (h * scale) / 750.0).ceil() as u64
}

fn openai_image(w: u64, h: u64) -> u64 {
    let (mut w, mut h) = (w.max(1) as f64, h.max(1) as f64);
    let fit = (2048.0 / w.max(h)).min(1.0);
    w *= fit;
    h *= fit;
    let short = (768.0 / w.min(h)).min(1.0);
    w *= short;
    h *= short;
    let tiles = (w / 512.0).ceil() * (h / 512.0).ceil();
    85 + 170 * tiles as u64
}

fn image_tokens(provider: Provider, b64: &str) -> u64 {
    let head = &b64[..b64.len().min(IMAGE_HEAD) / 4 * 4];
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(head) else {
        return UNKNOWN_IMAGE_TOKENS;
    };
    match imagesize::blob_size(&bytes) {
        Ok(size) => {
            let (w, h) = (size.width as u64, size.height as u64);
            match provider {
                Provider::Anthropic => anthropic_image(w, h),
                Provider::OpenAi | Provider::Fireworks => openai_image(w, h),
            }
        }
        Err(_) => UNKNOWN_IMAGE_TOKENS,
    }
}

/// Pages of a PDF: its `/Type /Page` objects (not `/Pages`).
fn pdf_pages(pdf: &[u8]) -> u64 {
    let mut pages = 0;
    for (at, _) in pdf.windows(5).enumerate().filter(|(_, w)| *w == b"/Type") {
        let rest = &pdf[at + 5..];
        let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
        if rest.starts_with(b"/Page") && !rest[5..].starts_with(b"s") {
            pages += 1;
        }
    }
    pages
}

/// The largest `/Count N` a PDF states (its page tree's page count).
fn pdf_stated_count(pdf: &[u8]) -> u64 {
    let mut most = 0;
    for (at, _) in pdf.windows(6).enumerate().filter(|(_, w)| *w == b"/Count") {
        let rest = &pdf[at + 6..];
        let digits: String = rest
            .iter()
            .skip_while(|b| b.is_ascii_whitespace())
            .take_while(|b| b.is_ascii_digit())
            .take(7)
            .map(|b| *b as char)
            .collect();
        most = most.max(digits.parse().unwrap_or(0));
    }
    most
}

fn document_tokens(b64: &str) -> u64 {
    match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
        Ok(pdf) => {
            let found = pdf_pages(&pdf).max(pdf_stated_count(&pdf));
            // Page objects packed in compressed object streams are not
            // visible: count by size then.
            let hidden = memchr::memmem::find(&pdf, b"/ObjStm").is_some();
            let pages = if hidden || found == 0 {
                found.max((pdf.len() as u64).div_ceil(PDF_BYTES_PER_PAGE))
            } else {
                found
            };
            pages * PDF_PAGE_TOKENS
        }
        Err(_) => RatioCounter::tokens(b64.len() as u64),
    }
}

/// Whether `v` is a URL a provider fetches (not inline data).
fn is_remote(v: &Value) -> bool {
    let url = v.as_str().or_else(|| v.get("url").and_then(Value::as_str));
    url.is_some_and(|u| !u.starts_with("data:"))
}

/// Words without which a body holds no media (searched before parsing);
/// their searchers are built once.
static MEDIA_WORDS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 7]> =
    std::sync::LazyLock::new(|| {
        [
            &b"base64"[..],
            b"\"url\"",
            b"file_",
            b"image_url",
            b"previous_response_id",
            b"\"conversation\"",
            b"\"prompt\"",
        ]
        .map(memchr::memmem::Finder::new)
    });

/// The media of a request body (decoded JSON text), for `provider`.
pub fn scan(provider: Provider, body: &[u8]) -> Media {
    let mut media = Media::default();
    if !MEDIA_WORDS.iter().any(|f| f.find(body).is_some()) {
        return media;
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return media;
    };
    // A previous response or a conversation (by id), or a stored prompt
    // (an object; a Completions `prompt` is the request's own text).
    let held = value
        .get("previous_response_id")
        .is_some_and(Value::is_string)
        || value.get("conversation").is_some_and(|v| !v.is_null())
        || value.get("prompt").is_some_and(Value::is_object);
    if held {
        media.count += 1;
        media.tokens += REFERENCED_CONTEXT_TOKENS;
    }
    let mut stack = vec![&value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                let kind = map.get("type").and_then(Value::as_str);
                // Media referred to, not sent: the provider fetches them.
                let source = map.get("source");
                let referred = source.is_some_and(|s| {
                    matches!(s.get("type").and_then(Value::as_str), Some("url" | "file"))
                }) || map.contains_key("file_id")
                    || map.contains_key("file_url")
                    || map.get("image_url").is_some_and(is_remote);
                if referred {
                    media.count += 1;
                    let image =
                        kind.is_some_and(|k| k.contains("image")) || map.contains_key("image_url");
                    media.tokens += if image {
                        UNKNOWN_IMAGE_TOKENS
                    } else {
                        REFERENCED_DOCUMENT_TOKENS
                    };
                    continue;
                }
                let data = map.get("data").and_then(Value::as_str);
                if let (Some("base64"), Some(data)) = (kind, data) {
                    let mime = map.get("media_type").and_then(Value::as_str).unwrap_or("");
                    media.bytes += data.len() as u64;
                    media.count += 1;
                    media.tokens += if mime.starts_with("image/") {
                        image_tokens(provider, data)
                    } else {
                        document_tokens(data)
                    };
                    continue;
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items.iter()),
            Value::String(s) if s.starts_with("data:") => {
                let Some((head, data)) = s.split_once(";base64,") else {
                    continue;
                };
                media.bytes += s.len() as u64;
                media.count += 1;
                media.tokens += if head.starts_with("data:image/") {
                    image_tokens(provider, data)
                } else {
                    document_tokens(data)
                };
            }
            _ => {}
        }
    }
    media
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG header for an image of `w` × `h` pixels (enough for its size).
    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut p = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        p.extend_from_slice(&w.to_be_bytes());
        p.extend_from_slice(&h.to_be_bytes());
        p.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        p.resize(3 << 20, 0); // a 3 MiB file
        p
    }

    #[test]
    fn images_by_their_size() {
        assert_eq!(anthropic_image(1000, 1000), 1334);
        assert_eq!(anthropic_image(200, 200), 54);
        assert_eq!(anthropic_image(8000, 8000), 1534);
        assert_eq!(openai_image(1024, 1024), 765);
        assert_eq!(openai_image(4096, 8192), 1105);
        let b64 = base64::engine::general_purpose::STANDARD.encode(png(4032, 3024));
        let body = format!(
            r#"{{"model":"claude-x","messages":[{{"role":"user","content":[{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{b64}"}}}},{{"type":"text","text":"what?"}}]}}]}}"#
        );
        let m = scan(Provider::Anthropic, body.as_bytes());
        assert_eq!((m.count, m.bytes), (1, b64.len() as u64));
        assert!((1500..=1600).contains(&m.tokens), "{m:?}");
        let body = format!(
            r#"{{"model":"gpt-5","input":[{{"role":"user","content":[{{"type":"input_image","image_url":"data:image/png;base64,{b64}"}}]}}]}}"#
        );
        let m = scan(Provider::OpenAi, body.as_bytes());
        assert_eq!(m.count, 1);
        assert_eq!(m.tokens, 765, "{m:?}");
        let m = scan(Provider::OpenAi, br#"{"x":"data:image/png;base64,!!!"}"#);
        assert_eq!(m.tokens, UNKNOWN_IMAGE_TOKENS);
        // Referred to, not sent: assumed large.
        let m = scan(
            Provider::Anthropic,
            br#"{"messages":[{"content":[{"type":"image","source":{"type":"url","url":"https://x/y.png"}},
              {"type":"document","source":{"type":"file","file_id":"file_1"}}]}]}"#,
        );
        assert_eq!(
            m.tokens,
            UNKNOWN_IMAGE_TOKENS + REFERENCED_DOCUMENT_TOKENS,
            "{m:?}"
        );
        let m = scan(
            Provider::OpenAi,
            br#"{"input":[{"content":[{"type":"input_image","image_url":"https://x/y.png"},{"type":"input_file","file_id":"file-1"}]}],"previous_response_id":"resp_1"}"#,
        );
        assert_eq!(
            m.tokens,
            UNKNOWN_IMAGE_TOKENS + REFERENCED_DOCUMENT_TOKENS + REFERENCED_CONTEXT_TOKENS,
            "{m:?}"
        );
    }

    #[test]
    fn documents_by_their_pages() {
        let mut pdf = b"%PDF-1.7\n1 0 obj << /Type /Pages /Count 3 >>\n".to_vec();
        for i in 0..3 {
            pdf.extend_from_slice(
                format!("{} 0 obj << /Type /Page /Parent 1 0 R >>\n", i + 2).as_bytes(),
            );
        }
        pdf.extend_from_slice(b"5 0 obj <</Type/Page>>\n");
        pdf.resize(8 << 20, b' ');
        let b64 = base64::engine::general_purpose::STANDARD.encode(&pdf);
        let body = format!(
            r#"{{"messages":[{{"content":[{{"type":"document","source":{{"type":"base64","media_type":"application/pdf","data":"{b64}"}}}}]}}]}}"#
        );
        let m = scan(Provider::Anthropic, body.as_bytes());
        assert_eq!(m.tokens, 4 * PDF_PAGE_TOKENS, "pages visible: as counted");
        // Pages counted, no object streams: as counted.
        let mut small =
            b"%PDF-1.7\n1 0 obj << /Type /Pages /Count 3 >>\n2 0 obj << /Type /Page >>\n".to_vec();
        small.resize(30_000, b' ');
        let b64 = base64::engine::general_purpose::STANDARD.encode(&small);
        let body = format!(
            r#"{{"source":{{"type":"base64","media_type":"application/pdf","data":"{b64}"}}}}"#
        );
        assert_eq!(
            scan(Provider::Anthropic, body.as_bytes()).tokens,
            3 * PDF_PAGE_TOKENS,
            "the stated count"
        );
        // Page objects hidden in object streams: by size.
        let mut packed =
            b"%PDF-1.7\n1 0 obj << /Type /ObjStm /N 100 >>\n2 0 obj << /Type /Page >>\n".to_vec();
        packed.resize(2_000_000, b' ');
        let b64 = base64::engine::general_purpose::STANDARD.encode(&packed);
        let body = format!(
            r#"{{"source":{{"type":"base64","media_type":"application/pdf","data":"{b64}"}}}}"#
        );
        assert_eq!(
            scan(Provider::Anthropic, body.as_bytes()).tokens,
            100 * PDF_PAGE_TOKENS
        );
        assert_eq!(
            scan(Provider::Anthropic, b"{\"text\":\"no media\"}"),
            Media::default()
        );
    }
}
