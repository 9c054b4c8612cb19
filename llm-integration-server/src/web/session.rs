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
/// The session cookie's name.
pub const COOKIE: &str = "lli_session";

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
}
