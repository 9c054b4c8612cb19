//! The browser door's secrets: one-time login links, session cookies and
//! the CSRF token derived from a session.
//!
//! Every secret is 256 random bits, shown once (in a link or a cookie) and
//! stored only as its SHA-256 (lowercase hex) with an expiry, through
//! [`ControlStore::add_web_token`]. The CSRF token is not stored: it is a
//! keyed hash of the session secret, so it changes with every session and
//! cannot be derived without the cookie.

use std::time::{Duration, SystemTime};

use base64::Engine;
use llm_integration_core::seams::{ControlStore, StoreError, WebTokenKind};
use llm_integration_core::UserId;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::executor::ExecError;

/// How long a login link works (once).
pub const LOGIN_LINK_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// How long a session lasts after sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// The session cookie's name over plain HTTP.
pub const COOKIE: &str = "lli_session";
/// The session cookie's name over HTTPS: the `__Host-` prefix makes the
/// browser refuse it unless it is `Secure`, has `Path=/` and no `Domain`,
/// so another site cannot set one for this host's pages.
pub const HOST_COOKIE: &str = "__Host-lli_session";

/// What a request's `Cookie` headers say about the session.
#[derive(Debug)]
pub enum CookieSession {
    /// No session cookie.
    None,
    /// One session cookie of the name the scheme calls for.
    One(Zeroizing<String>),
    /// More than one session cookie (of either name): possibly one planted
    /// by another site on this host, so none is believed. (One cookie of
    /// the name the other scheme uses is no session.)
    Ambiguous,
}

/// The session cookie of a request reached over HTTPS (`https`) or not,
/// from every `Cookie` header value given.
pub fn cookie_session<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    https: bool,
) -> CookieSession {
    let wanted = if https { HOST_COOKIE } else { COOKIE };
    let mut found: Option<Zeroizing<String>> = None;
    let mut count = 0usize;
    for value in values {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        for pair in value.split(';') {
            let (k, v) = pair.trim().split_once('=').unwrap_or((pair.trim(), ""));
            if k != COOKIE && k != HOST_COOKIE {
                continue;
            }
            count += 1;
            if k == wanted {
                found = Some(Zeroizing::new(v.trim().to_owned()));
            }
        }
    }
    match (count, found) {
        (0, _) => CookieSession::None,
        (1, Some(v)) if !v.is_empty() => CookieSession::One(v),
        (1, _) => CookieSession::None,
        _ => CookieSession::Ambiguous,
    }
}

/// The `Set-Cookie` value that starts a session with `secret`.
pub fn session_cookie(secret: &str, https: bool) -> String {
    if https {
        format!(
            "{HOST_COOKIE}={secret}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_LIFETIME.as_secs()
        )
    } else {
        format!(
            "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_LIFETIME.as_secs()
        )
    }
}

/// The folders of the page's own routes: where a cookie set by another
/// site on this host could hide from a clearing at `/`.
const ROUTE_FOLDERS: [&str; 6] = [
    "/integrations",
    "/integrations/new",
    "/chatgpt",
    "/usage",
    "/login",
    "/assets",
];

/// The `Set-Cookie` values that remove the session cookies a browser may
/// send: the plain name at each folder of `path` and of the page's routes
/// (a cookie set by another site may name a narrower path), and, with
/// `root`, both names at `/` (the session itself).
pub fn clearing_cookies(path: &str, root: bool) -> Vec<String> {
    let mut paths: Vec<String> = ROUTE_FOLDERS.iter().map(|p| (*p).to_owned()).collect();
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()).take(8) {
        at.push('/');
        at.push_str(part);
        if !paths.contains(&at) {
            paths.push(at.clone());
        }
    }
    let mut out = Vec::new();
    if root {
        out.push(format!(
            "{HOST_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
        ));
        paths.insert(0, "/".to_owned());
    }
    for p in paths {
        out.push(format!(
            "{COOKIE}=; Path={p}; HttpOnly; SameSite=Strict; Max-Age=0"
        ));
    }
    out
}

/// A new secret: `PREFIX` then 256 random bits in URL-safe base64.
pub fn new_secret(prefix: &str) -> Result<Zeroizing<String>, ExecError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut_slice())
        .map_err(|e| ExecError::Unavailable(format!("no randomness available: {e}")))?;
    Ok(Zeroizing::new(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice())
    )))
}

/// The stored form of a browser-door secret: SHA-256, lowercase hex.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// The CSRF token of a session: a hash of its secret under a fixed label.
pub fn csrf_token(session_secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"llm-integration/csrf/v1\0");
    h.update(session_secret.as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two strings are equal, in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn store_error(e: StoreError) -> ExecError {
    ExecError::from(e)
}

/// Mints a one-time login link secret for `user` (`lll_…`), stored hashed;
/// the page's `/login?link=SECRET` signs in with it once within
/// [`LOGIN_LINK_LIFETIME`].
pub async fn mint_login_link(
    store: &dyn ControlStore,
    user: UserId,
) -> Result<Zeroizing<String>, ExecError> {
    let secret = new_secret("lll_")?;
    store
        .add_web_token(
            WebTokenKind::LoginLink,
            user,
            &secret_hash(&secret),
            SystemTime::now() + LOGIN_LINK_LIFETIME,
        )
        .await
        .map_err(store_error)?;
    Ok(secret)
}

/// The text `login-link` answers: the link and how long it works.
pub fn login_link_text(base: &str, secret: &str) -> String {
    format!(
        "One-time sign-in link for the web page (works once, for {} minutes):\n  {}/login?link={secret}\n",
        LOGIN_LINK_LIFETIME.as_secs() / 60,
        base.trim_end_matches('/')
    )
}

/// Starts a session for `user`; returns its secret (the cookie's value).
pub async fn start_session(
    store: &dyn ControlStore,
    user: UserId,
) -> Result<Zeroizing<String>, ExecError> {
    let secret = new_secret("lls_")?;
    store
        .add_web_token(
            WebTokenKind::Session,
            user,
            &secret_hash(&secret),
            SystemTime::now() + SESSION_LIFETIME,
        )
        .await
        .map_err(store_error)?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hashes_and_csrf() {
        let a = new_secret("lls_").unwrap_or_else(|e| panic!("{e}"));
        let b = new_secret("lls_").unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a.as_str(), b.as_str());
        assert!(a.starts_with("lls_") && a.len() == 4 + 43);
        assert_eq!(secret_hash(&a).len(), 64);
        assert_ne!(secret_hash(&a), secret_hash(&b));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert_ne!(csrf_token(&a), secret_hash(&a));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    fn parse(headers: &[&str], https: bool) -> CookieSession {
        cookie_session(headers.iter().map(|h| h.as_bytes()), https)
    }

    #[test]
    fn one_session_cookie_of_the_schemes_name_is_believed() {
        assert!(
            matches!(parse(&["a=b; lli_session=lls_x"], false), CookieSession::One(v) if v.as_str() == "lls_x")
        );
        assert!(
            matches!(parse(&["__Host-lli_session=lls_y"], true), CookieSession::One(v) if v.as_str() == "lls_y")
        );
        assert!(matches!(parse(&["a=b"], false), CookieSession::None));
        assert!(matches!(parse(&[], true), CookieSession::None));
        // Two of either name, in one header or two: none is believed.
        assert!(matches!(
            parse(&["lli_session=a; lli_session=b"], false),
            CookieSession::Ambiguous
        ));
        assert!(matches!(
            parse(&["lli_session=a", "lli_session=b"], false),
            CookieSession::Ambiguous
        ));
        assert!(matches!(
            parse(&["__Host-lli_session=a; lli_session=b"], true),
            CookieSession::Ambiguous
        ));
        // Over HTTPS the plain name is not believed, nor the prefixed one over HTTP.
        assert!(matches!(
            parse(&["lli_session=a"], true),
            CookieSession::None
        ));
        assert!(matches!(
            parse(&["__Host-lli_session=a"], false),
            CookieSession::None
        ));
        let clear = clearing_cookies("/a/b", true);
        for path in ["/", "/a", "/a/b", "/integrations", "/chatgpt"] {
            let want = format!("lli_session=; Path={path};");
            assert!(clear.iter().any(|c| c.starts_with(&want)), "{want}");
        }
        assert!(clear
            .iter()
            .any(|c| c.starts_with("__Host-lli_session=; Path=/; Secure")));
        // Without the root, the session at / stays.
        let narrow = clearing_cookies("/", false);
        assert!(!narrow.iter().any(|c| c.contains("Path=/;")), "{narrow:?}");
        assert!(session_cookie("s", true).starts_with("__Host-lli_session=s; Path=/; Secure"));
        assert!(!session_cookie("s", false).contains("Secure"));
    }
}
