//! The ChatGPT subscription source: ChatGPT's device-code login, the
//! account's tokens (sealed in the store), refresh with one refresh in
//! flight per account, and the Codex backend's model list.
//!
//! Protocol as Codex CLI does it: a user code from
//! `/api/accounts/deviceauth/usercode`, polls of
//! `/api/accounts/deviceauth/token` until approval (which returns an
//! authorization code and its PKCE verifier), the code exchanged at
//! `/oauth/token`, refreshes at `/oauth/token` with the refresh token.
//! Claims are read from the JWTs without checking signatures, as Codex does:
//! the account id (sent as `ChatGPT-Account-ID`), the plan, the email, `exp`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use llm_integration_core::seams::{
    ChatGptAccountRecord, ControlStore, Credential, CredentialError,
};
use llm_integration_core::{AccountName, SecretString, UserId};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto::{purpose, MasterKey};

/// Codex's OAuth client id.
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
/// The redirect URI of the device flow's code exchange.
const REDIRECT_URI: &str = "https://auth.openai.com/deviceauth/callback";
/// Refresh this long before the access token expires.
const EXPIRY_SKEW_SECS: i64 = 60;
/// How long a device code lives.
pub const DEVICE_CODE_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The Codex version announced when listing the backend's models.
/// The Codex version the backend is asked for its catalog as.
pub const CLIENT_VERSION: &str = "0.171.0";

/// Where ChatGPT's auth server and the Codex backend are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatGptEndpoints {
    /// The auth server (`https://auth.openai.com`).
    pub auth: String,
    /// The Codex backend (`https://chatgpt.com/backend-api/codex`).
    pub backend: String,
}

impl Default for ChatGptEndpoints {
    fn default() -> Self {
        ChatGptEndpoints {
            auth: "https://auth.openai.com".into(),
            backend: "https://chatgpt.com/backend-api/codex".into(),
        }
    }
}

/// An account's tokens, as sealed in the store.
#[derive(Clone, Serialize, Deserialize)]
pub struct Tokens {
    access_token: String,
    refresh_token: String,
    #[serde(default)]
    id_token: Option<String>,
    /// `chatgpt_account_id`.
    pub account_id: Option<String>,
    /// The access token's `exp`.
    pub expires_at: Option<i64>,
    /// `chatgpt_plan_type`.
    pub plan: Option<String>,
    /// The account's email.
    pub email: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("account_id", &self.account_id.as_ref().map(|_| "[set]"))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?).ok()
}

impl Tokens {
    fn from_response(v: &Value, previous: Option<&Tokens>) -> Result<Tokens, String> {
        let text = |k: &str| v[k].as_str().map(str::to_owned);
        let access_token = text("access_token").ok_or("the token answer has no access_token")?;
        let refresh_token = text("refresh_token")
            .or_else(|| previous.map(|p| p.refresh_token.clone()))
            .ok_or("the token answer has no refresh_token")?;
        let id_token = text("id_token").or_else(|| previous.and_then(|p| p.id_token.clone()));
        let access = claims(&access_token).unwrap_or(Value::Null);
        let id = id_token.as_deref().and_then(claims).unwrap_or(Value::Null);
        let auth = |c: &Value, k: &str| {
            c["https://api.openai.com/auth"][k]
                .as_str()
                .map(str::to_owned)
        };
        Ok(Tokens {
            account_id: auth(&id, "chatgpt_account_id")
                .or_else(|| auth(&access, "chatgpt_account_id"))
                .or_else(|| previous.and_then(|p| p.account_id.clone())),
            // Shown to the owner: made printable, whatever the token says.
            plan: auth(&access, "chatgpt_plan_type")
                .or_else(|| auth(&id, "chatgpt_plan_type"))
                .map(|p| llm_integration_core::redact::printable_field(&p, 256)),
            email: id["email"]
                .as_str()
                .or_else(|| id["https://api.openai.com/profile"]["email"].as_str())
                .map(|e| llm_integration_core::redact::printable_field(e, 256)),
            expires_at: access["exp"].as_i64(),
            access_token,
            refresh_token,
            id_token,
        })
    }

    fn fresh(&self) -> bool {
        self.expires_at
            .is_none_or(|exp| exp - EXPIRY_SKEW_SECS > now())
    }
}

/// A device code to show the user.
#[derive(Debug, Clone)]
pub struct DeviceCode {
    device_auth_id: String,
    /// The one-time code.
    pub user_code: String,
    /// How often to poll.
    pub interval: Duration,
    /// The page where the user enters the code.
    pub verification_url: String,
}

/// One poll's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Not yet.
    Pending,
    /// Poll less often.
    SlowDown,
    /// Approved: the code and verifier to exchange.
    Approved {
        /// The authorization code.
        code: String,
        /// The PKCE verifier the server supplied.
        verifier: String,
    },
    /// The code expired.
    Expired,
    /// The user declined.
    Denied,
}

/// Why a refresh failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshError {
    /// The login is gone: the user must connect again.
    Permanent(String),
    /// Try again later.
    Transient(String),
}

/// A user's account, by its local name.
type AccountKey = (UserId, AccountName);
/// One refresh lock per account.
type RefreshLocks = Mutex<HashMap<AccountKey, Arc<tokio::sync::Mutex<()>>>>;
/// Sealed tokens in use, with their expiry.
type SealedCache =
    Mutex<HashMap<AccountKey, (llm_integration_core::seams::SealedSecret, Option<i64>)>>;

/// The ChatGPT source.
pub struct ChatGpt {
    client: reqwest::Client,
    endpoints: ChatGptEndpoints,
    store: Arc<dyn ControlStore>,
    key: Arc<MasterKey>,
    /// One refresh at a time per account.
    locks: RefreshLocks,
    /// Sealed tokens of accounts in use, so requests need no store round trip.
    cache: SealedCache,
}

/// The text of a refusal from ChatGPT's login service, for the owner and
/// the log: the service's own description, without the `secrets` the
/// request carried (a code, a verifier, a refresh token) should it echo
/// them, without anything shaped like a token, and without characters
/// that could drive a terminal.
fn error_text(status: reqwest::StatusCode, body: &Value, secrets: &[&str]) -> String {
    let detail = body["error_description"]
        .as_str()
        .or_else(|| body["error"]["message"].as_str())
        .or_else(|| body["error"].as_str())
        .or_else(|| body["detail"].as_str())
        .unwrap_or("no details");
    let detail =
        llm_integration_core::redact::Redactor::new(secrets.iter().copied()).redact(detail);
    let detail = llm_integration_core::redact::printable_line(&detail);
    format!("HTTP {}: {detail}", status.as_u16())
}

impl ChatGpt {
    /// The source, talking to `endpoints`.
    pub fn new(
        endpoints: ChatGptEndpoints,
        store: Arc<dyn ControlStore>,
        key: Arc<MasterKey>,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("llm-integration/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ChatGpt {
            client,
            endpoints,
            store,
            key,
            locks: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The Codex backend's base URL.
    pub fn backend(&self) -> &str {
        &self.endpoints.backend
    }

    /// The message for a login service that cannot be reached: the URL,
    /// the cause, and the flag that sets it; logged too.
    fn unreachable(&self, url: &str, e: &reqwest::Error) -> String {
        let cause = crate::error_chain(e);
        let message = format!(
            "cannot reach ChatGPT's login service at {url} ({cause}); check this machine's network, or --chatgpt-auth-url (now {})",
            self.endpoints.auth
        );
        tracing::warn!(%message, "ChatGPT login service unreachable");
        message
    }

    /// Asks for a device code.
    pub async fn start(&self) -> Result<DeviceCode, String> {
        let url = format!("{}/api/accounts/deviceauth/usercode", self.endpoints.auth);
        let r = self
            .client
            .post(&url)
            .json(&serde_json::json!({"client_id": CLIENT_ID}))
            .send()
            .await
            .map_err(|e| self.unreachable(&url, &e))?;
        let status = r.status();
        let text = r.bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        if status == reqwest::StatusCode::NOT_FOUND {
            let message = if body.is_null() && !text.is_empty() {
                format!(
                    "{url} answered 404 with a page that is not ChatGPT's login service; check --chatgpt-auth-url (now {})",
                    self.endpoints.auth
                )
            } else {
                format!(
                    "{url} answered 404: device code login is not enabled for this ChatGPT account (enable it in ChatGPT's security settings, or ask your workspace admin), \
or {} is not ChatGPT's login service (check --chatgpt-auth-url)",
                    self.endpoints.auth
                )
            };
            tracing::warn!(%message, "ChatGPT login refused");
            return Err(format!(
                "ChatGPT refused to start a device-code login: {message}"
            ));
        }
        if !status.is_success() {
            return Err(format!(
                "ChatGPT refused to start a device-code login: {}",
                error_text(status, &body, &[])
            ));
        }
        let interval = body["interval"]
            .as_str()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .or_else(|| body["interval"].as_u64())
            .unwrap_or(5);
        Ok(DeviceCode {
            device_auth_id: body["device_auth_id"]
                .as_str()
                .ok_or("the login service sent no device_auth_id")?
                .to_owned(),
            user_code: body["user_code"]
                .as_str()
                .or_else(|| body["usercode"].as_str())
                .ok_or("the login service sent no user code")
                .and_then(|code| {
                    // Shown to the user as is, so it must be plain.
                    if !code.is_empty()
                        && code.len() <= 64
                        && code.bytes().all(|b| b.is_ascii_graphic())
                    {
                        Ok(code.to_owned())
                    } else {
                        Err("the login service sent a user code that is not plain text; check --chatgpt-auth-url")
                    }
                })?,
            interval: Duration::from_secs(interval.max(1)),
            verification_url: format!("{}/codex/device", self.endpoints.auth),
        })
    }

    /// Polls once.
    pub async fn poll(&self, device: &DeviceCode) -> Result<Poll, String> {
        let url = format!("{}/api/accounts/deviceauth/token", self.endpoints.auth);
        let r = self
            .client
            .post(&url)
            .json(&serde_json::json!({"device_auth_id": device.device_auth_id, "user_code": device.user_code}))
            .send()
            .await
            .map_err(|e| self.unreachable(&url, &e))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Poll::Approved {
                code: body["authorization_code"]
                    .as_str()
                    .ok_or("the approval has no authorization code")?
                    .to_owned(),
                verifier: body["code_verifier"]
                    .as_str()
                    .ok_or("the approval has no code verifier")?
                    .to_owned(),
            });
        }
        let code = body["error"]
            .as_str()
            .or_else(|| body["error"]["code"].as_str())
            .unwrap_or("");
        Ok(match (status.as_u16(), code) {
            (_, "slow_down") | (429, _) => Poll::SlowDown,
            (_, "expired_token") => Poll::Expired,
            (_, "access_denied") => Poll::Denied,
            (403 | 404, _) | (_, "authorization_pending") => Poll::Pending,
            _ => {
                return Err(format!(
                    "the login failed: {}",
                    error_text(status, &body, &[&device.device_auth_id])
                ))
            }
        })
    }

    /// Exchanges an approval for tokens.
    pub async fn exchange(&self, code: &str, verifier: &str) -> Result<Tokens, String> {
        let url = format!("{}/oauth/token", self.endpoints.auth);
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", CLIENT_ID),
            ("code_verifier", verifier),
        ];
        let encoded: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encoded)
            .send()
            .await
            .map_err(|e| self.unreachable(&url, &e))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!(
                "the login's code exchange failed: {}",
                error_text(status, &body, &[code, verifier])
            ));
        }
        Tokens::from_response(&body, None)
    }

    async fn refresh(&self, tokens: &Tokens) -> Result<Tokens, RefreshError> {
        let url = format!("{}/oauth/token", self.endpoints.auth);
        let r = self
            .client
            .post(&url)
            .json(&serde_json::json!({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": tokens.refresh_token, "scope": "openid profile email"}))
            .send()
            .await
            .map_err(|e| RefreshError::Transient(self.unreachable(&url, &e)))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Tokens::from_response(&body, Some(tokens)).map_err(RefreshError::Transient);
        }
        let code = body["error"]["code"]
            .as_str()
            .or_else(|| body["error"].as_str())
            .unwrap_or("");
        let message = error_text(status, &body, &[tokens.refresh_token.as_str()]);
        if status == reqwest::StatusCode::UNAUTHORIZED
            || matches!(
                code,
                "refresh_token_expired"
                    | "refresh_token_reused"
                    | "refresh_token_invalidated"
                    | "invalid_grant"
            )
        {
            Err(RefreshError::Permanent(message))
        } else {
            Err(RefreshError::Transient(message))
        }
    }

    fn seal(&self, tokens: &Tokens) -> Result<llm_integration_core::seams::SealedSecret, String> {
        let json = zeroize::Zeroizing::new(serde_json::to_vec(tokens).map_err(|e| e.to_string())?);
        self.key
            .seal(&json, purpose::CHATGPT_TOKENS)
            .map_err(|e| e.to_string())
    }

    fn open(&self, sealed: &llm_integration_core::seams::SealedSecret) -> Result<Tokens, String> {
        let plain = self
            .key
            .open(sealed, purpose::CHATGPT_TOKENS)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&plain)
            .map_err(|_| "stored ChatGPT tokens are unreadable".to_owned())
    }

    /// Stores `tokens` as account `name` of `user`, connected.
    pub async fn save(
        &self,
        user: UserId,
        name: &AccountName,
        tokens: &Tokens,
        status: &str,
    ) -> Result<(), String> {
        let sealed = self.seal(tokens)?;
        let record = ChatGptAccountRecord {
            sealed: sealed.clone(),
            status: status.to_owned(),
            email: tokens.email.clone(),
            plan: tokens.plan.clone(),
        };
        self.store
            .save_chatgpt_account(user, name, &record)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(mut cache) = self.cache.lock() {
            if status == "connected" {
                cache.insert((user, name.clone()), (sealed, tokens.expires_at));
            } else {
                cache.remove(&(user, name.clone()));
            }
        }
        Ok(())
    }

    /// Forgets the cached tokens of an account (after it was deleted).
    pub fn forget(&self, user: UserId, name: &AccountName) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&(user, name.clone()));
        }
    }

    fn lock_for(&self, user: UserId, name: &AccountName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry((user, name.clone())).or_default().clone()
    }

    fn cached_fresh(&self, user: UserId, name: &AccountName) -> Option<Tokens> {
        let sealed = {
            let cache = self.cache.lock().ok()?;
            let (sealed, exp) = cache.get(&(user, name.clone()))?;
            if exp.is_some_and(|e| e - EXPIRY_SKEW_SECS <= now()) {
                return None;
            }
            sealed.clone()
        };
        self.open(&sealed).ok()
    }

    fn needs_login(name: &AccountName, why: &str) -> CredentialError {
        CredentialError::NeedsOwner(format!(
            "the ChatGPT account {name} must be connected again ({why}); its owner runs `integrations setup chatgpt --name {name}`"
        ))
    }

    /// Valid tokens for account `name` of `user`, refreshed if they expire
    /// soon (one refresh at a time per account; the others wait for it).
    pub async fn tokens(
        &self,
        user: UserId,
        name: &AccountName,
        force_refresh: bool,
    ) -> Result<Tokens, CredentialError> {
        if !force_refresh {
            if let Some(t) = self.cached_fresh(user, name) {
                return Ok(t);
            }
        }
        let lock = self.lock_for(user, name);
        let _guard = lock.lock().await;
        if !force_refresh {
            if let Some(t) = self.cached_fresh(user, name) {
                return Ok(t); // refreshed while we waited
            }
        }
        let record = self
            .store
            .chatgpt_account(user, name)
            .await
            .map_err(|e| CredentialError::Unavailable(e.to_string()))?
            .ok_or_else(|| CredentialError::NotConfigured(format!("the ChatGPT account {name} (it is not connected; run `integrations setup chatgpt --name {name}`)")))?;
        let tokens = self
            .open(&record.sealed)
            .map_err(CredentialError::Unavailable)?;
        if record.status != "connected" {
            return Err(Self::needs_login(name, "its last refresh was refused"));
        }
        if tokens.fresh() && !force_refresh {
            if let Ok(mut cache) = self.cache.lock() {
                cache.insert((user, name.clone()), (record.sealed, tokens.expires_at));
            }
            return Ok(tokens);
        }
        // One refresh per account across every server on this store: a
        // refresh token is single-use. Whoever waited finds the tokens
        // another server refreshed meanwhile and uses them.
        let _held = self
            .store
            .hold_lock(&format!("chatgpt-refresh:{}:{name}", user.0))
            .await
            .map_err(|e| CredentialError::Unavailable(e.to_string()))?;
        let record = self
            .store
            .chatgpt_account(user, name)
            .await
            .map_err(|e| CredentialError::Unavailable(e.to_string()))?
            .ok_or_else(|| {
                CredentialError::NotConfigured(format!(
                    "the ChatGPT account {name} (it was disconnected)"
                ))
            })?;
        let current = self
            .open(&record.sealed)
            .map_err(CredentialError::Unavailable)?;
        if record.status != "connected" {
            return Err(Self::needs_login(name, "its last refresh was refused"));
        }
        if current.access_token != tokens.access_token && current.fresh() {
            if let Ok(mut cache) = self.cache.lock() {
                cache.insert((user, name.clone()), (record.sealed, current.expires_at));
            }
            return Ok(current);
        }
        let tokens = current;
        match self.refresh(&tokens).await {
            Ok(new) => {
                self.save(user, name, &new, "connected")
                    .await
                    .map_err(CredentialError::Unavailable)?;
                tracing::info!(account = %name, "ChatGPT tokens refreshed");
                Ok(new)
            }
            Err(RefreshError::Permanent(why)) => {
                tracing::warn!(account = %name, %why, "ChatGPT refresh refused; the account needs a new login");
                let _ = self.save(user, name, &tokens, "needs_login").await;
                Err(Self::needs_login(
                    name,
                    "ChatGPT refused to refresh its login",
                ))
            }
            Err(RefreshError::Transient(why)) => Err(CredentialError::Unavailable(why)),
        }
    }

    /// The credential for requests on account `name` of `user`.
    pub async fn credential(
        &self,
        user: UserId,
        name: &AccountName,
    ) -> Result<Credential, CredentialError> {
        let tokens = self.tokens(user, name, false).await?;
        Ok(Credential {
            secret: SecretString::from(tokens.access_token.clone()),
            account_id: tokens.account_id.clone(),
        })
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_and_freshness() {
        let enc = |v: &Value| format!("h.{}.s", URL_SAFE_NO_PAD.encode(v.to_string()));
        let access = enc(
            &serde_json::json!({"exp": now() + 3600, "https://api.openai.com/auth": {"chatgpt_plan_type": "pro"}}),
        );
        let id = enc(
            &serde_json::json!({"email": "a@b.c", "https://api.openai.com/auth": {"chatgpt_account_id": "acct-1"}}),
        );
        let t = Tokens::from_response(
            &serde_json::json!({"access_token": access, "refresh_token": "r", "id_token": id}),
            None,
        )
        .unwrap();
        assert_eq!(
            (
                t.account_id.as_deref(),
                t.plan.as_deref(),
                t.email.as_deref()
            ),
            (Some("acct-1"), Some("pro"), Some("a@b.c"))
        );
        assert!(t.fresh());
        let stale = Tokens {
            expires_at: Some(now() + 30),
            ..t.clone()
        };
        assert!(!stale.fresh());
        assert!(!format!("{t:?}").contains("acct-1"));
        assert_eq!(urlencode("https://x/y z"), "https%3A%2F%2Fx%2Fy%20z");
    }
}
