//! Hostname parsing: `NAME.int.DOMAIN` and `NAME.team.DOMAIN`.

use std::borrow::Cow;

/// Whose integration a hostname names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `NAME.int.DOMAIN`: a personal integration of the VM's owner.
    Personal,
    /// `NAME.team.DOMAIN`: a team integration of the VM's team.
    Team,
}

impl Scope {
    /// The hostname label of the scope (`int`, `team`).
    pub const fn label(self) -> &'static str {
        match self {
            Scope::Personal => "int",
            Scope::Team => "team",
        }
    }
}

/// A parsed integration hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTarget<'a> {
    /// The integration name, lowercased.
    pub name: Cow<'a, str>,
    /// Personal or team.
    pub scope: Scope,
}

/// Why a request's host is ambiguous (RFC 9112 § 3.2, RFC 9113 § 8.3.1):
/// answered 400, never guessed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// More than one `Host` header.
    #[error("the request has more than one Host header; send one")]
    Several,
    /// An HTTP/1.1 request without `Host`.
    #[error(
        "an HTTP/1.1 request must have a Host header naming the integration (NAME.int.DOMAIN)"
    )]
    Missing,
    /// The request target's authority (or HTTP/2 `:authority`) and `Host`
    /// name different hosts.
    #[error("the request's authority and its Host header name different hosts; send one host")]
    Disagree,
    /// A `Host` header that is not text.
    #[error("the Host header is not a valid host name")]
    Malformed,
}

/// The host a request names: its target's authority (HTTP/2 `:authority`,
/// or an absolute-form target), else its one `Host` header. Several
/// `Host` headers, an authority and a `Host` that disagree, or an
/// HTTP/1.1 request with neither, are refused.
///
/// ```
/// use http::{HeaderValue, Version};
/// use llm_integration_core::{request_host, HostError};
///
/// let h = HeaderValue::from_static("llm.int.exe.xyz");
/// assert_eq!(request_host(None, [&h], Version::HTTP_11), Ok("llm.int.exe.xyz"));
/// assert_eq!(request_host(Some("llm.int.exe.xyz"), [&h], Version::HTTP_2), Ok("llm.int.exe.xyz"));
/// assert_eq!(request_host(Some("other.int.exe.xyz"), [&h], Version::HTTP_2), Err(HostError::Disagree));
/// assert_eq!(request_host(None, [&h, &h], Version::HTTP_11), Err(HostError::Several));
/// assert_eq!(request_host(None, [], Version::HTTP_11), Err(HostError::Missing));
/// assert_eq!(request_host(None, [], Version::HTTP_10), Ok(""));
/// ```
pub fn request_host<'a>(
    authority: Option<&'a str>,
    hosts: impl IntoIterator<Item = &'a http::HeaderValue>,
    version: http::Version,
) -> Result<&'a str, HostError> {
    let mut hosts = hosts.into_iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(HostError::Several),
        (Some(h), None) => Some(h.to_str().map_err(|_| HostError::Malformed)?),
        (None, _) => None,
    };
    match (authority, host) {
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => Err(HostError::Disagree),
        (Some(a), _) => Ok(a),
        (None, Some(h)) => Ok(h),
        (None, None) if version == http::Version::HTTP_11 => Err(HostError::Missing),
        (None, None) => Ok(""),
    }
}

/// The host a request is routed by: `host` itself, or `default` (an
/// integration hostname the operator chose) when `host` names the gateway
/// by address or as `localhost`, as clients on a machine without DNS for
/// the integration domain do (`http://127.0.0.1:7700`).
///
/// ```
/// use llm_integration_core::effective_host;
///
/// let default = Some("llm.int.exe.xyz");
/// assert_eq!(effective_host("127.0.0.1:7700", default), "llm.int.exe.xyz");
/// assert_eq!(effective_host("[::1]:7700", default), "llm.int.exe.xyz");
/// assert_eq!(effective_host("localhost", default), "llm.int.exe.xyz");
/// assert_eq!(effective_host("localhost.:7700", default), "llm.int.exe.xyz");
/// assert_eq!(effective_host("127.0.0.1.", default), "llm.int.exe.xyz");
/// assert_eq!(effective_host("x.int.exe.xyz", default), "x.int.exe.xyz");
/// assert_eq!(effective_host("127.0.0.1:7700", None), "127.0.0.1:7700");
/// ```
pub fn effective_host<'a>(host: &'a str, default: Option<&'a str>) -> &'a str {
    match default {
        Some(default) if split_port(host).0.is_empty() || gateway_address(host).is_some() => {
            default
        }
        _ => host,
    }
}

/// When `host` names the gateway by address (an IP literal or
/// `localhost`, with or without a port) rather than by an integration
/// hostname: the address (without brackets) and the port, if any.
pub(crate) fn gateway_address(host: &str) -> Option<(&str, Option<&str>)> {
    let (bare, port) = split_port(host);
    // A fully qualified `localhost.` or `127.0.0.1.` names the same place.
    let name = bare.strip_suffix('.').unwrap_or(bare);
    let address =
        name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok();
    address.then_some((bare, port))
}

/// `host` without its brackets and `:port` (an empty port, as in
/// `127.0.0.1:`, is allowed, as RFC 3986 allows it), and the port.
fn split_port(host: &str) -> (&str, Option<&str>) {
    let digits = |port: &str| port.bytes().all(|b| b.is_ascii_digit());
    let (bare, port) = match host.rsplit_once(':') {
        Some((h, port)) if digits(port) && !h.ends_with(']') && !h.contains(':') => (h, Some(port)),
        Some((h, port)) if h.ends_with(']') && digits(port) => (h, Some(port)),
        _ => (host, None),
    };
    let bare = bare.trim_start_matches('[').trim_end_matches(']');
    (bare, port.filter(|p| !p.is_empty()))
}

/// Parses a `Host` header value against `domain` (lowercase, without a
/// trailing dot).
///
/// A `:port` suffix and one trailing dot are ignored; comparison is
/// case-insensitive. Anything else (another domain, more labels, an IP
/// literal, an invalid name) is `None`.
///
/// ```
/// use llm_integration_core::parse_host;
/// use llm_integration_core::Scope;
///
/// let t = parse_host("LLM.int.exe.xyz:443", "exe.xyz").unwrap();
/// assert_eq!((t.name.as_ref(), t.scope), ("llm", Scope::Personal));
/// assert!(parse_host("llm.int.exe.xyz.evil", "exe.xyz").is_none());
/// ```
pub fn parse_host<'a>(host: &'a str, domain: &str) -> Option<HostTarget<'a>> {
    if host.starts_with('[') {
        return None;
    }
    let host = match host.rsplit_once(':') {
        Some((h, port))
            if !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            h
        }
        Some(_) => return None,
        None => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    // host = NAME '.' SCOPE '.' DOMAIN
    let rest_len = host.len().checked_sub(domain.len() + 1)?;
    let (head, tail) = (host.get(..rest_len)?, host.get(rest_len..)?);
    if !tail.starts_with('.') || !tail[1..].eq_ignore_ascii_case(domain) {
        return None;
    }
    let (name, scope_label) = head.rsplit_once('.')?;
    let scope = if scope_label.eq_ignore_ascii_case("int") {
        Scope::Personal
    } else if scope_label.eq_ignore_ascii_case("team") {
        Scope::Team
    } else {
        return None;
    };
    if !valid_label_any_case(name) {
        return None;
    }
    let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    Some(HostTarget { name, scope })
}

fn valid_label_any_case(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The hostname of an integration: `NAME.int.DOMAIN` or `NAME.team.DOMAIN`.
pub fn hostname(name: &str, scope: Scope, domain: &str) -> String {
    format!("{name}.{}.{domain}", scope.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(h: &str) -> Option<(String, Scope)> {
        parse_host(h, "exe.xyz").map(|t| (t.name.into_owned(), t.scope))
    }

    #[test]
    fn accepts() {
        assert_eq!(p("llm.int.exe.xyz"), Some(("llm".into(), Scope::Personal)));
        assert_eq!(
            p("llm.int.exe.xyz:8080"),
            Some(("llm".into(), Scope::Personal))
        );
        assert_eq!(p("LLM.INT.EXE.XYZ"), Some(("llm".into(), Scope::Personal)));
        assert_eq!(p("llm.int.exe.xyz."), Some(("llm".into(), Scope::Personal)));
        assert_eq!(
            p("shared.team.exe.xyz"),
            Some(("shared".into(), Scope::Team))
        );
    }

    #[test]
    fn refuses() {
        for h in [
            "",
            "exe.xyz",
            "int.exe.xyz",
            ".int.exe.xyz",
            "llm.int.exe.xyz.evil",
            "llm.int.exe.xyz.evil.com",
            "llm.int.evil.xyz",
            "a.llm.int.exe.xyz",
            "llm.other.exe.xyz",
            "llm.int.exe.xyz:",
            "llm.int.exe.xyz:port",
            "llm.int.exe.xyz:123456",
            "[::1]:80",
            "127.0.0.1",
            "-x.int.exe.xyz",
            "l_m.int.exe.xyz",
            "llm.intexe.xyz",
        ] {
            assert_eq!(p(h), None, "{h}");
        }
    }

    #[test]
    fn gateway_addresses() {
        for (host, expected) in [
            ("127.0.0.1:7700", Some(("127.0.0.1", Some("7700")))),
            ("127.0.0.1", Some(("127.0.0.1", None))),
            ("[::1]:7700", Some(("::1", Some("7700")))),
            ("[::1]", Some(("::1", None))),
            ("LocalHost:80", Some(("LocalHost", Some("80")))),
            ("llm.int.exe.xyz:7700", None),
            ("", None),
            ("127.0.0.1:", Some(("127.0.0.1", None))),
            ("127.0.0.1:port", None),
        ] {
            assert_eq!(gateway_address(host), expected, "{host:?}");
        }
    }

    #[test]
    fn hostname_round_trips() {
        let h = hostname("llm", Scope::Team, "exe.xyz");
        assert_eq!(h, "llm.team.exe.xyz");
        assert_eq!(p(&h), Some(("llm".into(), Scope::Team)));
    }
}
