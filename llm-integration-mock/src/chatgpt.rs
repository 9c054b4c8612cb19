//! A mock of ChatGPT's device-code login (auth server) and of the ChatGPT
//! (Codex) backend, on one port: what the gateway's ChatGPT source talks
//! to, with the behaviours tests need set in [`ChatGptBehaviour`].
//!
//! Auth: `POST /api/accounts/deviceauth/usercode`, `POST
//! /api/accounts/deviceauth/token` (pending → approved after
//! `pending_polls`, or `slow_down`, expiry, denial), `POST /oauth/token`
//! (code exchange and refresh; tokens are unsigned JWTs whose claims carry
//! the account id, plan, email and `exp`). Backend: `POST
//! /backend-api/codex/responses` (SSE only; checks the bearer token and the
//! body rules), `GET /backend-api/codex/models`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::{MockBody, Recorded};

/// How the device flow and the tokens behave.
#[derive(Debug, Clone)]
pub struct ChatGptBehaviour {
    /// Polls answered "pending" before approval.
    pub pending_polls: u64,
    /// Answer the first poll with `slow_down`.
    pub slow_down_first: bool,
    /// The code expires instead of being approved.
    pub expire: bool,
    /// The user denies instead of approving.
    pub deny: bool,
    /// Lifetime of issued access tokens, in seconds (negative: already expired).
    pub access_lifetime_secs: i64,
    /// Refreshes fail with `refresh_token_invalidated`.
    pub refresh_fails: bool,
    /// How long a refresh takes to answer.
    pub refresh_delay: Duration,
    /// The polling interval announced, in seconds.
    pub interval: u64,
}

impl Default for ChatGptBehaviour {
    fn default() -> Self {
        ChatGptBehaviour {
            pending_polls: 1,
            slow_down_first: false,
            expire: false,
            deny: false,
            access_lifetime_secs: 3600,
            refresh_fails: false,
            refresh_delay: Duration::ZERO,
            interval: 1,
        }
    }
}

#[derive(Default)]
struct State {
    behaviour: Mutex<ChatGptBehaviour>,
    polls: AtomicU64,
    refreshes: AtomicU64,
    issued: AtomicU64,
    /// The access tokens the backend accepts.
    valid: Mutex<Vec<String>>,
    backend: Mutex<Vec<Recorded>>,
}

/// The running mock.
pub struct MockChatGpt {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
}

/// The account the mock's tokens are for.
pub const ACCOUNT_ID: &str = "acct-mock-1234";

/// An unsigned JWT with `claims`, as the mock issues.
pub fn jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.mocksig")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl MockChatGpt {
    /// Starts on 127.0.0.1 with `behaviour`.
    pub async fn start(behaviour: ChatGptBehaviour) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), behaviour).await
    }

    /// Starts on `addr` with `behaviour`.
    pub async fn start_on(addr: SocketAddr, behaviour: ChatGptBehaviour) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            behaviour: Mutex::new(behaviour),
            ..State::default()
        });
        let stop = crate::serve(listener, state.clone(), handle);
        Ok(MockChatGpt {
            addr,
            state,
            stop: Some(stop),
        })
    }

    /// The auth server's base URL (stands for `https://auth.openai.com`).
    pub fn auth_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The backend's base URL (stands for `https://chatgpt.com/backend-api/codex`).
    pub fn backend_url(&self) -> String {
        format!("http://{}/backend-api/codex", self.addr)
    }

    /// Changes the behaviour.
    pub fn set(&self, change: impl FnOnce(&mut ChatGptBehaviour)) {
        if let Ok(mut b) = self.state.behaviour.lock() {
            change(&mut b);
        }
    }

    /// Token polls received.
    pub fn polls(&self) -> u64 {
        self.state.polls.load(Ordering::SeqCst)
    }

    /// Refreshes received.
    pub fn refreshes(&self) -> u64 {
        self.state.refreshes.load(Ordering::SeqCst)
    }

    /// Backend requests received.
    pub fn backend_requests(&self) -> Vec<Recorded> {
        self.state
            .backend
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    /// Every access token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state
            .valid
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

impl Drop for MockChatGpt {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn json_response(status: StatusCode, value: Value) -> Response<MockBody> {
    let mut r = Response::new(MockBody::Full(Some(Bytes::from(value.to_string()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn tokens(state: &State) -> Value {
    let b = state
        .behaviour
        .lock()
        .map(|b| b.clone())
        .unwrap_or_default();
    let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let auth = json!({"chatgpt_account_id": ACCOUNT_ID, "chatgpt_plan_type": "plus", "chatgpt_user_id": "user-mock"});
    let access = jwt(
        &json!({"exp": now() + b.access_lifetime_secs, "n": n, "https://api.openai.com/auth": auth}),
    );
    let id = jwt(
        &json!({"email": "someone@example.com", "exp": now() + 3600, "https://api.openai.com/auth": auth}),
    );
    if let Ok(mut v) = state.valid.lock() {
        v.push(access.clone());
    }
    json!({"access_token": access, "id_token": id, "refresh_token": format!("rt-mock-{n}"), "token_type": "Bearer"})
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let behaviour = state
        .behaviour
        .lock()
        .map(|b| b.clone())
        .unwrap_or_default();
    let response = match (parts.method.as_str(), path.as_str()) {
        ("POST", "/api/accounts/deviceauth/usercode") => json_response(
            StatusCode::OK,
            json!({"device_auth_id": "dev-mock", "user_code": "MOCK-CODE", "interval": behaviour.interval.to_string()}),
        ),
        ("POST", "/api/accounts/deviceauth/token") => {
            let n = state.polls.fetch_add(1, Ordering::SeqCst) + 1;
            if behaviour.slow_down_first && n == 1 {
                json_response(StatusCode::BAD_REQUEST, json!({"error": "slow_down"}))
            } else if behaviour.expire {
                json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "expired_token", "error_description": "the code expired"}),
                )
            } else if behaviour.deny {
                json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "access_denied", "error_description": "the user declined"}),
                )
            } else if n <= behaviour.pending_polls + u64::from(behaviour.slow_down_first) {
                json_response(
                    StatusCode::FORBIDDEN,
                    json!({"error": "authorization_pending"}),
                )
            } else {
                json_response(
                    StatusCode::OK,
                    json!({"authorization_code": "code-mock", "code_challenge": "x", "code_verifier": "verifier-mock"}),
                )
            }
        }
        ("POST", "/oauth/token") => {
            let text = String::from_utf8_lossy(&body).into_owned();
            if text.contains("grant_type=authorization_code") {
                if text.contains("code=code-mock") && text.contains("code_verifier=verifier-mock") {
                    json_response(StatusCode::OK, tokens(&state))
                } else {
                    json_response(StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}))
                }
            } else {
                state.refreshes.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(behaviour.refresh_delay).await;
                let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if behaviour.refresh_fails || request["grant_type"] != "refresh_token" {
                    json_response(
                        StatusCode::UNAUTHORIZED,
                        json!({"error": {"code": "refresh_token_invalidated", "message": "Your refresh token has been invalidated."}}),
                    )
                } else {
                    json_response(StatusCode::OK, tokens(&state))
                }
            }
        }
        ("GET", "/backend-api/codex/models") => json_response(
            StatusCode::OK,
            json!({"models": [
                {"slug": "gpt-5.5", "display_name": "GPT-5.5", "visibility": "list", "supported_in_api": true},
                {"slug": "gpt-5.3-codex", "display_name": "GPT-5.3 Codex", "visibility": "list", "supported_in_api": true},
                {"slug": "internal-hidden", "display_name": "hidden", "visibility": "hide", "supported_in_api": false}]}),
        ),
        ("POST", "/backend-api/codex/responses") => {
            if let Ok(mut b) = state.backend.lock() {
                b.push(Recorded {
                    method: "POST".into(),
                    path: path.clone(),
                    headers: parts.headers.clone(),
                    body: body.clone(),
                });
            }
            let token = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let valid = token.is_some_and(|t| {
                state
                    .valid
                    .lock()
                    .map(|v| v.iter().any(|x| x == t))
                    .unwrap_or(false)
            });
            let expired = token
                .and_then(claims)
                .and_then(|c| c["exp"].as_i64())
                .is_some_and(|exp| exp <= now());
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !valid || expired {
                json_response(StatusCode::UNAUTHORIZED, json!({"detail": "Unauthorized"}))
            } else if parts
                .headers
                .get("chatgpt-account-id")
                .and_then(|v| v.to_str().ok())
                != Some(ACCOUNT_ID)
            {
                json_response(StatusCode::FORBIDDEN, json!({"detail": "missing account"}))
            } else if request["store"] != false {
                json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"detail": "Store must be set to false"}),
                )
            } else if request["stream"] != true {
                json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"detail": "Stream must be set to true"}),
                )
            } else if let Some(bad) = ["max_output_tokens", "temperature", "metadata"]
                .iter()
                .find(|k| request.get(**k).is_some())
            {
                json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"detail": format!("Unsupported parameter: {bad}")}),
                )
            } else {
                let model = request["model"].as_str().unwrap_or("gpt-5.5");
                let events = crate::responses_events_for(model, 3);
                let mut r = Response::new(MockBody::Full(Some(Bytes::from(events.concat()))));
                r.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("text/event-stream"),
                );
                r.headers_mut().insert(
                    "x-codex-primary-used-percent",
                    http::HeaderValue::from_static("12"),
                );
                crate::shape(r, &parts.headers)
            }
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"detail": format!("mock chatgpt: no route {path}")}),
        ),
    };
    Ok(response)
}

/// The claims of an unsigned JWT.
fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}
