//! Custom HTTPS endpoints: the URL a `custom` source sends a provider's API
//! family to, and the address rule that keeps such an endpoint from
//! reaching the platform's own network.
//!
//! [`EndpointUrl`] is the endpoint's API base as the providers' SDKs take
//! it: `https://models.example.com` and `https://models.example.com/v1`
//! name the same endpoint, whose Chat Completions live at
//! `https://models.example.com/v1/chat/completions`; a path prefix is kept
//! (`https://gw.example.com/openai/v1` → `…/openai/v1/chat/completions`).
//!
//! [`address_rule`] is the rule applied to every address the gateway would
//! connect to for a custom endpoint: at configuration time to the URL's
//! literal address or its host's resolution, and again when connecting, so
//! a name that resolves elsewhere later (DNS rebinding) cannot reach an
//! internal service. It refuses every address that is not a globally
//! routable unicast address, including IPv4 addresses carried inside IPv6
//! (mapped, compatible, NAT64, 6to4).
//!
//! ```
//! use llm_integration_core::endpoint::{address_rule, EndpointUrl};
//!
//! let url: EndpointUrl = "https://models.example.com/v1".parse()?;
//! assert_eq!(url.join("/v1/chat/completions"), "https://models.example.com/v1/chat/completions");
//! assert_eq!(address_rule("169.254.169.254".parse()?), Some("link-local (169.254.0.0/16)"));
//! assert_eq!(address_rule("::ffff:10.0.0.1".parse()?), Some("private (10.0.0.0/8)"));
//! assert_eq!(address_rule("93.184.216.34".parse()?), None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::Error;

/// The longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// A custom endpoint's base URL: `https://HOST[:PORT][/PATH]`, no user
/// information, query or fragment, stored without a trailing `/`.
///
/// `http://` parses too ([`EndpointUrl::is_plain_http`]); whether it may be
/// used is the operator's policy (`allow_private_endpoints`), which the
/// server checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EndpointUrl {
    /// The URL as stored: scheme, authority and path, no trailing `/`.
    text: String,
    /// Where the path starts in `text` (its length when there is none).
    path_at: usize,
    /// The host as written (brackets removed from an IPv6 address).
    host: String,
    /// The port, written or the scheme's.
    port: u16,
    https: bool,
}

/// What the host of an [`EndpointUrl`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointHost<'a> {
    /// A name to resolve.
    Name(&'a str),
    /// A literal address.
    Address(IpAddr),
}

impl EndpointUrl {
    /// The URL as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the URL is `http://` (allowed only by the operator's policy).
    pub fn is_plain_http(&self) -> bool {
        !self.https
    }

    /// The host: a name or a literal address.
    pub fn host(&self) -> EndpointHost<'_> {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => EndpointHost::Address(ip),
            Err(_) => EndpointHost::Name(&self.host),
        }
    }

    /// The port (the scheme's default when not written).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL for `api_path` (a provider API path starting with `/v1`,
    /// query included): the base's path, less one trailing `/v1`, then
    /// `api_path`.
    pub fn join(&self, api_path: &str) -> String {
        let base = self
            .text
            .strip_suffix("/v1")
            .filter(|b| b.len() >= self.path_at);
        let base = base.unwrap_or(&self.text);
        let mut url = String::with_capacity(base.len() + api_path.len());
        url.push_str(base);
        url.push_str(api_path);
        url
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<EndpointUrl> for String {
    fn from(url: EndpointUrl) -> String {
        url.text
    }
}

impl TryFrom<String> for EndpointUrl {
    type Error = Error;
    fn try_from(text: String) -> Result<Self, Error> {
        text.parse()
    }
}

fn invalid(value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidEndpoint {
        value: value.chars().take(200).collect(),
        reason: reason.into(),
    }
}

impl FromStr for EndpointUrl {
    type Err = Error;

    /// Parses an endpoint URL.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] naming what is wrong: a scheme other than
    /// `https` or `http`, user information (credentials go in `--P-key` or
    /// `--P-header`), a query or fragment, a missing or malformed host, a
    /// bad port, or a URL over [`MAX_URL_LEN`].
    fn from_str(value: &str) -> Result<Self, Error> {
        if value.len() > MAX_URL_LEN {
            return Err(invalid(
                value,
                format!("it is longer than {MAX_URL_LEN} bytes"),
            ));
        }
        if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(value, "it contains spaces or control characters"));
        }
        let (https, rest) = if let Some(rest) = strip_prefix_ignore_case(value, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(value, "http://") {
            (false, rest)
        } else {
            return Err(invalid(
                value,
                "use an https:// URL, such as https://models.example.com/v1",
            ));
        };
        if rest.contains(['?', '#']) {
            return Err(invalid(
                value,
                "a query or fragment is not part of an endpoint; give the API's base URL",
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(invalid(
                value,
                "credentials do not belong in the URL; give them with --PROVIDER-key or --PROVIDER-header",
            ));
        }
        let (host, port) = split_host_port(value, authority)?;
        let port = match port {
            Some(p) => p,
            None if https => 443,
            None => 80,
        };
        let lower = path.to_ascii_lowercase();
        if lower.contains("%2e") || lower.contains("%2f") || lower.contains("%5c") {
            return Err(invalid(
                value,
                "the path has percent-encoded dots or slashes; write the path plainly",
            ));
        }
        if path.split('/').any(|s| s == "." || s == "..") || path.contains("//") {
            return Err(invalid(value, "the path has empty, `.` or `..` segments"));
        }
        if !path.bytes().all(|b| b.is_ascii_graphic()) || path.contains('\\') {
            return Err(invalid(
                value,
                "the path has characters a URL path cannot hold; percent-encode them",
            ));
        }
        let path = path.trim_end_matches('/');
        let scheme = if https { "https://" } else { "http://" };
        let mut text = String::with_capacity(value.len());
        text.push_str(scheme);
        text.push_str(&authority.to_ascii_lowercase());
        let path_at = text.len();
        text.push_str(path);
        Ok(EndpointUrl {
            text,
            path_at,
            host,
            port,
            https,
        })
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// Splits `host[:port]` or `[v6][:port]`; the host is checked to be an
/// address or a DNS name (letters, digits, `-`, `.`).
fn split_host_port(value: &str, authority: &str) -> Result<(String, Option<u16>), Error> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err(invalid(value, "an IPv6 address must be closed with `]`"));
        };
        let address: Ipv6Addr = v6
            .parse()
            .map_err(|_| invalid(value, format!("{v6:?} is not an IPv6 address")))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| invalid(value, "junk after the IPv6 address"))?,
            ),
        };
        (address.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() {
        return Err(invalid(value, "the URL has no host"));
    }
    if host.parse::<IpAddr>().is_err() {
        let labels_ok = host.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if !labels_ok || host.len() > 253 {
            return Err(invalid(
                value,
                format!("{host:?} is not a host name (letters, digits, `-` and `.`; write an internationalised name in its xn-- form)"),
            ));
        }
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(invalid(
                value,
                format!("{host:?} is not a valid IPv4 address"),
            ));
        }
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(invalid(
                    value,
                    format!("port {p:?} is not a number from 1 to 65535"),
                ))
            }
            Ok(n) => Some(n),
        },
    };
    Ok((host, port))
}

/// Why the gateway must not connect to `address` for a custom endpoint,
/// as the name of the range it is in; `None` for a globally routable
/// unicast address.
///
/// Refused: unspecified, loopback, private (RFC 1918), shared (RFC 6598),
/// link-local (which holds cloud metadata services), IETF protocol
/// assignments, documentation and benchmarking ranges, reserved and
/// broadcast; IPv6 unspecified, loopback, unique-local, link-local,
/// site-local, multicast, discard-only and documentation; and any IPv4
/// address carried in IPv6 (IPv4-mapped, IPv4-compatible, NAT64, 6to4),
/// by the rule of the address it carries.
pub fn address_rule(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => v4_rule(v4),
        IpAddr::V6(v6) => v6_rule(v6),
    }
}

fn v4_rule(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (\"this network\", 0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local (169.254.0.0/16)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_rule(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    match s {
        // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => {
            return Some(
                v4_rule(embedded(hi, lo))
                    .unwrap_or("IPv4 carried in IPv6 (connect to the IPv4 address itself)"),
            );
        }
        // NAT64 64:ff9b::/96 and the local-use 64:ff9b:1::/48.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => {
            return Some(v4_rule(embedded(hi, lo)).unwrap_or("NAT64 (64:ff9b::/96)"));
        }
        [0x64, 0xff9b, 1, ..] => return Some("local-use NAT64 (64:ff9b:1::/48)"),
        // 6to4 2002:a.b.c.d::/48 carries an IPv4 address.
        [0x2002, hi, lo, ..] => {
            return Some(v4_rule(embedded(hi, lo)).unwrap_or("6to4 (2002::/16)"));
        }
        _ => {}
    }
    Some(match s[0] {
        0xfc00..=0xfdff => "unique-local (fc00::/7)",
        0xfe80..=0xfebf => "link-local (fe80::/10)",
        0xfec0..=0xfeff => "site-local (fec0::/10)",
        0xff00..=0xffff => "multicast (ff00::/8)",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only (100::/64)",
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        // Teredo carries an obfuscated IPv4 address: not a place to send keys.
        0x2001 if s[1] == 0 => "Teredo (2001::/32)",
        // ORCHID, benchmarking and the other IETF protocol assignments.
        0x2001 if s[1] < 0x0200 => "IETF protocol assignments (2001::/23)",
        0x5f00 => "segment routing (5f00::/16)",
        0x3fff if s[1] <= 0x0fff => "documentation (3fff::/20)",
        0x0000..=0x1fff => "reserved (not global unicast)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> EndpointUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_base_joins_api_paths_without_doubling_v1() {
        for (base, path, want) in [
            (
                "https://m.example.com",
                "/v1/models",
                "https://m.example.com/v1/models",
            ),
            (
                "https://m.example.com/",
                "/v1/models",
                "https://m.example.com/v1/models",
            ),
            (
                "https://m.example.com/v1",
                "/v1/models",
                "https://m.example.com/v1/models",
            ),
            (
                "https://m.example.com/v1/",
                "/v1/chat/completions",
                "https://m.example.com/v1/chat/completions",
            ),
            (
                "https://gw.example.com/openai/v1",
                "/v1/responses",
                "https://gw.example.com/openai/v1/responses",
            ),
            (
                "https://gw.example.com/openai",
                "/v1/responses?x=1",
                "https://gw.example.com/openai/v1/responses?x=1",
            ),
            (
                "HTTPS://M.Example.COM:8443/V1",
                "/v1/models",
                "https://m.example.com:8443/V1/v1/models",
            ),
            (
                "https://[2606:4700::1111]:8443/v1",
                "/v1/models",
                "https://[2606:4700::1111]:8443/v1/models",
            ),
        ] {
            assert_eq!(url(base).join(path), want, "{base}");
        }
        // The authority alone is never taken for a `/v1` path.
        assert_eq!(url("https://v1").join("/v1/models"), "https://v1/v1/models");
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(
            url("https://m.example.com").host(),
            EndpointHost::Name("m.example.com")
        );
        assert_eq!(url("https://m.example.com").port(), 443);
        assert_eq!(url("http://m.example.com").port(), 80);
        assert!(url("http://m.example.com").is_plain_http());
        assert_eq!(
            url("https://10.1.2.3:9000").host(),
            EndpointHost::Address("10.1.2.3".parse().unwrap())
        );
        assert_eq!(
            url("https://[::1]").host(),
            EndpointHost::Address("::1".parse().unwrap())
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (bad, says) in [
            ("ftp://m.example.com", "https://"),
            ("m.example.com/v1", "https://"),
            ("https://", "no host"),
            ("https://user:pw@m.example.com", "credentials"),
            ("https://m.example.com/v1?key=x", "query"),
            ("https://m.example.com/v1#x", "fragment"),
            ("https://m.example.com:0", "port"),
            ("https://m.example.com:99999", "port"),
            ("https://m.example.com:x", "port"),
            ("https://exa mple.com", "spaces"),
            ("https://m.example.com/a/../b", "`..`"),
            ("https://m.example.com/a/%2e%2e/b", "percent-encoded"),
            ("https://m.example.com/a%2Fb", "percent-encoded"),
            ("https://m_x.example.com", "host name"),
            ("https://[::1", "closed"),
            ("https://[zz]", "IPv6"),
            ("https://999.1.1.1", "IPv4"),
            ("https://m.example.com\n", "control"),
            ("https://bücher.example", "xn--"),
        ] {
            let err = bad.parse::<EndpointUrl>().unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let long = format!("https://m.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(long.parse::<EndpointUrl>().is_err());
    }

    #[test]
    fn urls_round_trip_through_serde() {
        let u = url("https://m.example.com/v1/");
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(json, "\"https://m.example.com/v1\"");
        assert_eq!(serde_json::from_str::<EndpointUrl>(&json).unwrap(), u);
        assert!(serde_json::from_str::<EndpointUrl>("\"file:///etc/passwd\"").is_err());
    }

    #[test]
    fn every_non_global_address_is_refused_by_name() {
        for (address, rule) in [
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared"),
            ("169.254.169.254", "link-local"),
            ("192.0.0.170", "IETF"),
            ("192.0.2.1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "loopback"),
            ("::ffff:8.8.8.8", "IPv4 carried"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b:1::1", "NAT64"),
            ("2002:7f00:1::", "loopback"),
            ("2002:0808:0808::", "6to4"),
            ("fd00::1", "unique-local"),
            ("fc00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("100::1", "discard"),
            ("2001:db8::1", "documentation"),
            ("2001::1", "Teredo"),
            ("2001:10::1", "IETF protocol assignments"),
            ("2001:2::1", "IETF protocol assignments"),
            ("5f00::1", "segment routing"),
            ("::2", "unspecified"),
        ] {
            let got = address_rule(address.parse().unwrap());
            assert!(got.is_some_and(|r| r.contains(rule)), "{address}: {got:?}");
        }
        for ok in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "2a00:1450::1",
        ] {
            assert_eq!(address_rule(ok.parse().unwrap()), None, "{ok}");
        }
    }
}
