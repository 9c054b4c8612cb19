//! Which headers cross the gateway, in each direction (RFC 9110 § 7.6.1
//! for hop-by-hop headers).
//!
//! To the upstream: everything the client sent except
//! - hop-by-hop headers, and any header the `Connection` header lists;
//! - every client credential ([`CLIENT_CREDENTIALS`]): the VM's
//!   placeholder key never leaves the gateway, whatever it is called;
//! - every identity or forwarding header ([`IDENTITY`], and the header
//!   the operator's front proxy uses): the provider learns nothing of the
//!   platform's network, and nothing a VM claims about itself;
//! - `Host` and `Content-Length` (the client library sets them again);
//!
//! then `Accept-Encoding: identity` (the gateway reads usage from the
//! answer as it relays it) and the source's credential, the way the
//! provider expects it ([`AuthScheme`]). Header names with `_` survive.
//!
//! To the client: everything the upstream answered except hop-by-hop
//! headers (request ids, rate-limit and retry headers pass).

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CONNECTION, CONTENT_LENGTH,
    HOST,
};

/// Hop-by-hop headers (RFC 9110 § 7.6.1, and the non-standard ones in use).
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Headers a client may carry a credential in. All are removed.
pub const CLIENT_CREDENTIALS: [&str; 12] = [
    "authorization",
    "x-api-key",
    "api-key",
    "proxy-authorization",
    "cookie",
    "chatgpt-account-id",
    "openai-organization",
    "openai-project",
    "x-goog-api-key",
    "anthropic-workspace-id",
    "x-amz-security-token",
    "x-ms-token-aad",
];

/// Identity and forwarding headers, including the common client-address
/// headers of CDNs and load balancers. All are removed.
pub const IDENTITY: [&str; 14] = [
    "forwarded",
    "via",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
    "fastly-client-ip",
    "x-exedev-source-vm",
];

/// How a provider expects its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    /// `x-api-key: KEY` (Anthropic), with `anthropic-version` defaulted.
    XApiKey,
    /// `Authorization: Bearer KEY` (OpenAI, Fireworks, the ChatGPT backend,
    /// a custom endpoint's bearer token).
    Bearer,
    /// `NAME: VALUE`, a custom endpoint's own header.
    Header(HeaderName),
    /// Nothing (a custom endpoint without authentication).
    None,
}

/// The credential to inject, as text.
#[derive(Clone, Copy)]
pub struct Injected<'a> {
    /// The key or access token.
    pub secret: &'a str,
    /// The ChatGPT account id (`ChatGPT-Account-ID`), for a ChatGPT source.
    pub account_id: Option<&'a str>,
}

impl std::fmt::Debug for Injected<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Injected([REDACTED])")
    }
}

fn remove_connection_listed(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
}

/// Removes from a client's request head what must not reach a provider
/// (see the module documentation); `client_ip_header` is the operator's
/// front-proxy header, if any.
pub fn strip_for_upstream(headers: &mut HeaderMap, client_ip_header: Option<&HeaderName>) {
    remove_connection_listed(headers);
    // The head's few names are each looked up in the lists, rather than
    // every listed name hashed and looked up in the head.
    remove_where(headers, |name| {
        let text = name.as_str();
        name == HOST
            || name == CONTENT_LENGTH
            || client_ip_header == Some(name)
            || HOP_BY_HOP.contains(&text)
            || CLIENT_CREDENTIALS.contains(&text)
            || IDENTITY.contains(&text)
    });
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
}

/// Injects `credential` the way `scheme` says. A credential that is not a
/// valid header value is not injected (the provider then refuses the
/// request as unauthenticated; nothing echoes the value).
pub fn inject_credential(headers: &mut HeaderMap, scheme: &AuthScheme, credential: Injected<'_>) {
    match scheme {
        AuthScheme::XApiKey => {
            if let Ok(mut v) = HeaderValue::from_str(credential.secret) {
                v.set_sensitive(true);
                headers.insert("x-api-key", v);
            }
            if !headers.contains_key("anthropic-version") {
                headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
            }
        }
        AuthScheme::Bearer => {
            let mut value = String::with_capacity(credential.secret.len() + 7);
            value.push_str("Bearer ");
            value.push_str(credential.secret);
            if let Ok(mut v) = HeaderValue::from_str(&value) {
                v.set_sensitive(true);
                headers.insert(AUTHORIZATION, v);
            }
        }
        AuthScheme::Header(name) => {
            if let Ok(mut v) = HeaderValue::from_str(credential.secret) {
                v.set_sensitive(true);
                headers.insert(name.clone(), v);
            }
        }
        AuthScheme::None => {}
    }
    if let Some(account) = credential.account_id {
        if let Ok(v) = HeaderValue::from_str(account) {
            headers.insert("chatgpt-account-id", v);
        }
    }
}

/// Removes from an upstream's response head what must not reach the
/// client. A `Content-Length` beside a `Transfer-Encoding` is dropped too:
/// the transfer coding framed the body (RFC 9112 § 6.3), and the length
/// would truncate what the client reads.
pub fn strip_for_client(headers: &mut HeaderMap) {
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
    }
    remove_connection_listed(headers);
    // `llm-integration-*` headers are the gateway's word to its clients
    // (what translation dropped, that a count is an estimate): an
    // upstream cannot speak in its name.
    remove_where(headers, |name| {
        HOP_BY_HOP.contains(&name.as_str()) || name.as_str().starts_with(GATEWAY_HEADER_PREFIX)
    });
}

/// The prefix of the headers the gateway itself sets on its answers.
pub const GATEWAY_HEADER_PREFIX: &str = "llm-integration-";

/// Removes every header whose name `doomed` picks (all its values).
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    while let Some(name) = headers.keys().find(|n| doomed(n)).cloned() {
        headers.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_cannot_set_the_gateways_own_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "llm-integration-dropped",
            HeaderValue::from_static("spoofed"),
        );
        h.insert(
            "llm-integration-estimate",
            HeaderValue::from_static("spoofed"),
        );
        h.insert("x-request-id", HeaderValue::from_static("req_1"));
        strip_for_client(&mut h);
        assert!(h.get("llm-integration-dropped").is_none());
        assert!(h.get("llm-integration-estimate").is_none());
        assert_eq!(h.get("x-request-id").unwrap(), "req_1");
    }

    #[test]
    fn strips_and_injects() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer implicit"),
            ("x-api-key", "implicit"),
            ("cookie", "a=b"),
            ("x-forwarded-for", "1.2.3.4"),
            ("true-client-ip", "1.2.3.4"),
            ("x-exedev-source-vm", "other"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "1"),
            ("anthropic-beta", "a,b"),
            ("session_id", "s1"),
            ("host", "llm.int.exe.xyz"),
            ("accept-encoding", "gzip, br"),
            ("x-front", "10.0.0.1"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        strip_for_upstream(&mut h, Some(&HeaderName::from_static("x-front")));
        let secret = "sk-real";
        inject_credential(
            &mut h,
            &AuthScheme::XApiKey,
            Injected {
                secret,
                account_id: None,
            },
        );
        assert_eq!(h.get("x-api-key").unwrap(), "sk-real");
        for gone in [
            "authorization",
            "cookie",
            "x-forwarded-for",
            "true-client-ip",
            "x-exedev-source-vm",
            "x-drop-me",
            "connection",
            "host",
            "x-front",
        ] {
            assert!(h.get(gone).is_none(), "{gone}");
        }
        assert_eq!(h.get("anthropic-beta").unwrap(), "a,b");
        assert_eq!(h.get("session_id").unwrap(), "s1");
        assert_eq!(h.get("anthropic-version").unwrap(), "2023-06-01");
        assert_eq!(h.get("accept-encoding").unwrap(), "identity");
        assert!(h.get("x-api-key").unwrap().is_sensitive());

        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("implicit"));
        strip_for_upstream(&mut h, None);
        inject_credential(
            &mut h,
            &AuthScheme::Bearer,
            Injected {
                secret,
                account_id: Some("acct"),
            },
        );
        assert_eq!(h.get("authorization").unwrap(), "Bearer sk-real");
        assert_eq!(h.get("chatgpt-account-id").unwrap(), "acct");
        assert!(h.get("x-api-key").is_none());

        // A key that cannot be a header value is not sent at all.
        let mut h = HeaderMap::new();
        inject_credential(
            &mut h,
            &AuthScheme::Bearer,
            Injected {
                secret: "bad\nkey",
                account_id: None,
            },
        );
        assert!(h.get("authorization").is_none());

        // A custom endpoint's header replaces a client's copy; `None` sends nothing.
        let mut h = HeaderMap::new();
        h.insert("x-team-key", HeaderValue::from_static("the-client's"));
        h.insert("authorization", HeaderValue::from_static("Bearer client"));
        strip_for_upstream(&mut h, None);
        let scheme = AuthScheme::Header(HeaderName::from_static("x-team-key"));
        inject_credential(
            &mut h,
            &scheme,
            Injected {
                secret,
                account_id: None,
            },
        );
        assert_eq!(
            h.get_all("x-team-key").iter().collect::<Vec<_>>(),
            ["sk-real"]
        );
        assert!(h.get("x-team-key").unwrap().is_sensitive());
        assert!(h.get("authorization").is_none());
        let mut h = HeaderMap::new();
        inject_credential(
            &mut h,
            &AuthScheme::None,
            Injected {
                secret,
                account_id: None,
            },
        );
        assert!(h.is_empty());
    }

    #[test]
    fn client_side() {
        let mut h = HeaderMap::new();
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("request-id", HeaderValue::from_static("req_1"));
        h.insert("retry-after", HeaderValue::from_static("3"));
        h.insert("content-length", HeaderValue::from_static("5"));
        strip_for_client(&mut h);
        assert!(h.get("transfer-encoding").is_none());
        assert!(
            h.get("content-length").is_none(),
            "a length beside a transfer coding"
        );
        assert_eq!(h.get("request-id").unwrap(), "req_1");
        assert_eq!(h.get("retry-after").unwrap(), "3");
    }
}
