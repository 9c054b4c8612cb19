//! Which headers cross the gateway.
//!
//! To the upstream: everything the client sent except hop-by-hop headers,
//! every client credential (`authorization`, `x-api-key`, `api-key`,
//! `proxy-authorization`, `cookie`, `chatgpt-account-id`,
//! `openai-organization`, `openai-project`, `x-goog-api-key`) and every
//! identity header (`forwarded`, `x-forwarded-*`, `x-real-ip`, the
//! configured client-address header); then the source's credential, the
//! way the provider expects it. Header names with `_` survive.
//!
//! To the client: everything the upstream answered except hop-by-hop
//! headers (request ids, rate-limit and retry headers pass).

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, HOST};
use llm_integration_core::seams::Credential;
use llm_integration_core::Provider;
use secrecy::ExposeSecret;

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

const CLIENT_CREDENTIALS: [&str; 9] = [
    "authorization",
    "x-api-key",
    "api-key",
    "proxy-authorization",
    "cookie",
    "chatgpt-account-id",
    "openai-organization",
    "openai-project",
    "x-goog-api-key",
];

const IDENTITY: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-client-ip",
];

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

/// Prepares the client's headers for the upstream (in place).
pub fn to_upstream(
    headers: &mut HeaderMap,
    provider: Provider,
    credential: &Credential,
    client_ip_header: Option<&HeaderName>,
) {
    remove_connection_listed(headers);
    for name in HOP_BY_HOP
        .iter()
        .chain(CLIENT_CREDENTIALS.iter())
        .chain(IDENTITY.iter())
    {
        headers.remove(*name);
    }
    if let Some(name) = client_ip_header {
        headers.remove(name);
    }
    headers.remove(HOST);
    headers.remove(http::header::CONTENT_LENGTH);
    // Usage is read from the response as it is relayed, so it must not be
    // compressed; the client still gets exactly what the upstream sent.
    headers.remove(http::header::ACCEPT_ENCODING);
    let secret = credential.secret.expose_secret();
    match provider {
        Provider::Anthropic => {
            if let Ok(mut v) = HeaderValue::from_str(secret) {
                v.set_sensitive(true);
                headers.insert("x-api-key", v);
            }
            if !headers.contains_key("anthropic-version") {
                headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
            }
        }
        Provider::OpenAi | Provider::Fireworks => {
            if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {secret}")) {
                v.set_sensitive(true);
                headers.insert(AUTHORIZATION, v);
            }
            if let Some(account) = &credential.account_id {
                if let Ok(v) = HeaderValue::from_str(account) {
                    headers.insert("chatgpt-account-id", v);
                }
            }
        }
    }
}

/// Prepares the upstream's response headers for the client (in place).
pub fn to_client(headers: &mut HeaderMap) {
    remove_connection_listed(headers);
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_integration_core::SecretString;

    #[test]
    fn strips_and_injects() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer implicit"),
            ("x-api-key", "implicit"),
            ("cookie", "a=b"),
            ("x-forwarded-for", "1.2.3.4"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "1"),
            ("anthropic-beta", "a,b"),
            ("session_id", "s1"),
            ("host", "llm.int.exe.xyz"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        let c = Credential {
            secret: SecretString::from("sk-real"),
            account_id: None,
        };
        to_upstream(&mut h, Provider::Anthropic, &c, None);
        assert_eq!(h.get("x-api-key").unwrap(), "sk-real");
        assert!(
            h.get("authorization").is_none()
                && h.get("cookie").is_none()
                && h.get("x-forwarded-for").is_none()
        );
        assert!(
            h.get("x-drop-me").is_none()
                && h.get("connection").is_none()
                && h.get("host").is_none()
        );
        assert_eq!(h.get("anthropic-beta").unwrap(), "a,b");
        assert_eq!(h.get("session_id").unwrap(), "s1");
        assert_eq!(h.get("anthropic-version").unwrap(), "2023-06-01");
        assert!(h.get("x-api-key").unwrap().is_sensitive());

        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("implicit"));
        to_upstream(&mut h, Provider::OpenAi, &c, None);
        assert_eq!(h.get("authorization").unwrap(), "Bearer sk-real");
        assert!(h.get("x-api-key").is_none());
    }
}
