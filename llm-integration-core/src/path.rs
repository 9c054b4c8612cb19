//! Request paths: normalisation checks and the split into provider prefix
//! routes (`/anthropic/…`, `/openai/…`, `/fireworks/inference/…`), generic
//! `/v1/…` routes and the root.
//!
//! Nothing is decoded or rewritten here: a path is either forwarded as the
//! client sent it (minus a provider prefix) or refused. Refused: `.` and
//! `..` segments (also percent-encoded), encoded `/` and `\`, a raw `\`,
//! empty segments, control characters, malformed escapes, and a provider
//! prefix repeated after another.

use crate::provider::Provider;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("the path must start with '/'")]
    NotAbsolute,
    /// A `.` or `..` segment, literal or percent-encoded.
    #[error("the path contains a '.' or '..' segment")]
    DotSegment,
    /// `%2F` or `%5C`, or a raw `\`.
    #[error("the path contains an encoded or backslash path separator")]
    EncodedSeparator,
    /// `//` inside the path.
    #[error("the path contains an empty segment ('//')")]
    EmptySegment,
    /// `%` not followed by two hex digits, or `%00`.
    #[error("the path contains a malformed percent escape")]
    BadEscape,
    /// A control character, space or `#`.
    #[error("the path contains a control character, space or '#'")]
    BadCharacter,
    /// `/openai/anthropic/…` and the like.
    #[error("the path repeats a provider prefix; use one of /anthropic/, /openai/ or /fireworks/inference/")]
    DoublePrefix,
    /// `/fireworks/…` not followed by `/inference/`.
    #[error("Fireworks routes live under /fireworks/inference/v1/")]
    FireworksWithoutInference,
    /// A provider prefix not followed by `/v1/…`.
    #[error("provider routes continue with /v1/, e.g. /openai/v1/models")]
    PrefixWithoutVersion,
}

/// What a path asks for, before any integration is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRoute<'a> {
    /// `/`: liveness probes, reflection's index.
    Root,
    /// A provider-forced route; `rest` starts with `/v1`.
    Prefixed {
        /// The forced provider.
        provider: Provider,
        /// The path after the prefix (starts with `/v1`).
        rest: &'a str,
    },
    /// A generic `/v1…` route.
    Generic,
    /// Anything else (reflection paths, unknown routes).
    Other,
}

/// Splits a request target into path and query (without the `?`).
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// Checks `path` (without its query) against the rules in the module docs.
pub fn check_path(path: &str) -> Result<(), PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::EncodedSeparator),
            b'%' => {
                let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                    return Err(PathError::BadEscape);
                };
                let (Some(h), Some(l)) = (hex(h), hex(l)) else {
                    return Err(PathError::BadEscape);
                };
                match h << 4 | l {
                    0 => return Err(PathError::BadEscape),
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    b'.' => return Err(PathError::DotSegment),
                    _ => {}
                }
                i += 3;
                continue;
            }
            b if b <= b' ' || b == 0x7f || b == b'#' => return Err(PathError::BadCharacter),
            _ => {}
        }
        i += 1;
    }
    // Segments: the first is empty (leading '/'); a single trailing '/' is allowed.
    let inner = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    for segment in inner.split('/').skip(1) {
        match segment {
            "" if inner != "/" => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn first_segment(path: &str) -> (&str, &str) {
    let p = path.strip_prefix('/').unwrap_or(path);
    match p.find('/') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, ""),
    }
}

fn is_prefix_name(segment: &str) -> bool {
    matches!(segment, "anthropic" | "openai" | "fireworks")
}

/// Checks `path` and says which kind of route it is.
///
/// ```
/// use llm_integration_core::path::{classify_path, PathRoute};
/// use llm_integration_core::Provider;
///
/// assert_eq!(
///     classify_path("/fireworks/inference/v1/chat/completions"),
///     Ok(PathRoute::Prefixed { provider: Provider::Fireworks, rest: "/v1/chat/completions" })
/// );
/// assert!(classify_path("/openai/../v1/models").is_err());
/// ```
pub fn classify_path(path: &str) -> Result<PathRoute<'_>, PathError> {
    check_path(path)?;
    let (first, rest) = first_segment(path);
    let (provider, rest) = match first {
        "" => return Ok(PathRoute::Root),
        "v1" => return Ok(PathRoute::Generic),
        "anthropic" => (Provider::Anthropic, rest),
        "openai" => (Provider::OpenAi, rest),
        "fireworks" => match first_segment(rest) {
            ("inference", rest) => (Provider::Fireworks, rest),
            (seg, _) if is_prefix_name(seg) => return Err(PathError::DoublePrefix),
            _ => return Err(PathError::FireworksWithoutInference),
        },
        _ => return Ok(PathRoute::Other),
    };
    let (next, _) = first_segment(rest);
    if is_prefix_name(next) || next == "inference" {
        return Err(PathError::DoublePrefix);
    }
    if next != "v1" {
        return Err(PathError::PrefixWithoutVersion);
    }
    Ok(PathRoute::Prefixed { provider, rest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(classify_path("/"), Ok(PathRoute::Root));
        assert_eq!(classify_path("/v1/messages"), Ok(PathRoute::Generic));
        assert_eq!(classify_path("/v1"), Ok(PathRoute::Generic));
        assert_eq!(classify_path("/email"), Ok(PathRoute::Other));
        assert_eq!(
            classify_path("/anthropic/v1/messages"),
            Ok(PathRoute::Prefixed {
                provider: Provider::Anthropic,
                rest: "/v1/messages"
            })
        );
        assert_eq!(
            classify_path("/openai/v1/models/"),
            Ok(PathRoute::Prefixed {
                provider: Provider::OpenAi,
                rest: "/v1/models/"
            })
        );
        assert_eq!(
            classify_path("/v1/models/ft%3Agpt-4o"),
            Ok(PathRoute::Generic),
            "ordinary escapes pass"
        );
    }

    #[test]
    fn refusals() {
        use PathError::*;
        let cases = [
            ("v1/messages", NotAbsolute),
            ("", NotAbsolute),
            ("/v1/../admin", DotSegment),
            ("/v1/./models", DotSegment),
            ("/v1/..", DotSegment),
            ("/v1/%2e%2e/x", DotSegment),
            ("/v1/.%2E/x", DotSegment),
            ("/v1/%2E/x", DotSegment),
            ("/openai%2fv1/models", EncodedSeparator),
            ("/openai/v1%2Fmodels", EncodedSeparator),
            ("/openai/v1%5cmodels", EncodedSeparator),
            ("/openai\\v1/models", EncodedSeparator),
            ("//v1/models", EmptySegment),
            ("/v1//models", EmptySegment),
            ("/v1/models%", BadEscape),
            ("/v1/models%4", BadEscape),
            ("/v1/models%zz", BadEscape),
            ("/v1/models%00", BadEscape),
            ("/v1/mod els", BadCharacter),
            ("/v1/models\r\nx", BadCharacter),
            ("/v1/models#x", BadCharacter),
            ("/openai/openai/v1/models", DoublePrefix),
            ("/openai/anthropic/v1/messages", DoublePrefix),
            ("/anthropic/fireworks/inference/v1/messages", DoublePrefix),
            ("/fireworks/openai/v1/models", DoublePrefix),
            ("/fireworks/inference/inference/v1/models", DoublePrefix),
            ("/fireworks/v1/models", FireworksWithoutInference),
            ("/openai/", PrefixWithoutVersion),
            ("/openai", PrefixWithoutVersion),
            ("/openai/v2/models", PrefixWithoutVersion),
        ];
        for (path, want) in cases {
            assert_eq!(classify_path(path), Err(want), "{path:?}");
        }
    }

    #[test]
    fn split() {
        assert_eq!(
            split_target("/v1/messages?beta=true"),
            ("/v1/messages", Some("beta=true"))
        );
        assert_eq!(split_target("/v1/models"), ("/v1/models", None));
    }
}
