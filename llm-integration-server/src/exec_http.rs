//! The admin listener: `POST /exec` (the command language over HTTP),
//! `/healthz` and `/readyz`.
//!
//! `POST /exec` takes the command line as a `text/plain` body, or JSON
//! `{"command": "…"}` / `{"args": ["…", …]}` with an optional
//! `"stdin": "…"` that stands for standard input (the value of a `-` key
//! flag). Auth: `Authorization: Bearer TOKEN`. The answer is the command's
//! output, `text/plain` or `application/json` with `--json`; the header
//! `llm-integration-outcome` is `ok` or `failed` (a command that ran and
//! reported a failure, like a key the provider refuses).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use llm_integration_core::command::{
    parse_args, parse_command_line, ChatgptSetup, Command, CommandError, Parsed,
};
use llm_integration_core::seams::ControlStore;
use llm_integration_core::SecretString;
use serde::Deserialize;
use serde_json::json;

use crate::crypto::token_hash;
use crate::executor::{ExecError, Executor};

/// The largest `/exec` body accepted.
pub const MAX_EXEC_BODY: usize = 64 * 1024;

/// What the admin listener needs.
#[derive(Clone)]
pub struct AdminState {
    /// Runs commands.
    pub executor: Arc<Executor>,
    /// For auth and readiness.
    pub store: Arc<dyn ControlStore>,
    /// Served at `/metrics`.
    pub metrics: Arc<crate::metering::Metrics>,
    /// The browser door's state (ChatGPT logins in progress).
    pub web: Arc<crate::web::WebState>,
}

/// Answers one admin request with `app`, refusing an ambiguous host (400)
/// as every listener does.
pub async fn handle(mut app: Router, req: axum::http::Request<hyper::body::Incoming>) -> Response {
    if let Err(e) = llm_integration_core::request_host(
        req.uri().authority().map(|a| a.as_str()),
        req.headers().get_all(header::HOST),
        req.version(),
    ) {
        return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
    }
    match tower_service::Service::call(&mut app, req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/exec", post(exec))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(|State(state): State<AdminState>| async move {
                ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
            }),
        )
        .merge(crate::web::routes())
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such path; the admin listener serves the web page (/integrations), POST /exec, GET /healthz and GET /readyz\n") })
        .layer(DefaultBodyLimit::max(MAX_EXEC_BODY))
        .with_state(state)
}

async fn ready(State(state): State<AdminState>) -> Response {
    match state.store.version().await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecBody {
    command: Option<String>,
    args: Option<Vec<String>>,
    stdin: Option<String>,
}

struct Failure {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Failure {
            status,
            kind,
            message: message.into(),
        }
    }

    fn into_response(self, json: bool) -> Response {
        let mut response = if json {
            let body =
                json!({"error": {"kind": self.kind, "message": self.message}}).to_string() + "\n";
            (
                self.status,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        } else {
            (self.status, format!("error: {}\n", self.message)).into_response()
        };
        response.headers_mut().insert(
            "llm-integration-outcome",
            HeaderValue::from_static("failed"),
        );
        response
    }
}

impl From<ExecError> for Failure {
    fn from(e: ExecError) -> Self {
        Failure::new(e.status(), e.kind(), e.to_string())
    }
}

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Self {
        let message = e
            .message
            .trim_start_matches("error: ")
            .trim_end()
            .to_owned();
        Failure::new(StatusCode::BAD_REQUEST, "usage", message)
    }
}

async fn exec(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let started = Instant::now();
    let wants_json_hint = headers
        .get(header::ACCEPT)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is over {MAX_EXEC_BODY} bytes; a command line is much shorter"),
            )
            .into_response(wants_json_hint);
        }
        Err(rejection) => {
            return Failure::new(rejection.status(), "bad_request", rejection.body_text())
                .into_response(wants_json_hint)
        }
    };
    let user = match authenticate(&state, &headers).await {
        Ok(u) => u,
        Err(f) => return f.into_response(wants_json_hint),
    };
    let is_json_body = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let (parsed, stdin, json_hint) = match parse_request(&body, is_json_body) {
        Ok(p) => p,
        Err((f, json)) => return f.into_response(json || wants_json_hint),
    };
    let line = match parsed {
        Parsed::Help(text) => {
            return (StatusCode::OK, [("llm-integration-outcome", "ok")], text).into_response()
        }
        Parsed::Command(line) => line,
    };
    let json = line.json || json_hint;
    if let Command::SetupChatgpt(ChatgptSetup::Connect(name)) = &line.command {
        // The login happens while the answer streams: the code first, the outcome last.
        return match state
            .executor
            .connect_chatgpt(user, name.clone(), json)
            .await
        {
            Ok(lines) => {
                tracing::info!(user = user.0, command = %line.command, "exec (streaming)");
                let content_type = if json {
                    "application/x-ndjson"
                } else {
                    "text/plain; charset=utf-8"
                };
                let mut response = Response::new(axum::body::Body::new(LineBody(lines)));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                response.headers_mut().insert(
                    "llm-integration-outcome",
                    HeaderValue::from_static("stream"),
                );
                response
            }
            Err(e) => Failure::from(e).into_response(json),
        };
    }
    let result = if let Command::LoginLink = &line.command {
        // The link names this server as the client reached it.
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        state
            .executor
            .login_link(user, &format!("http://{host}"))
            .await
    } else {
        state.executor.execute(user, &line, stdin).await
    };
    let (status, outcome) = match &result {
        Ok(a) if a.failed => (StatusCode::OK, "failed"),
        Ok(_) => (StatusCode::OK, "ok"),
        Err(e) => (e.status(), "failed"),
    };
    tracing::info!(
        user = user.0,
        command = %line.command,
        status = status.as_u16(),
        outcome,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "exec"
    );
    match result {
        Ok(answer) => {
            let outcome = HeaderValue::from_static(if answer.failed { "failed" } else { "ok" });
            let mut response = if json {
                let body = serde_json::to_string_pretty(&answer.json).unwrap_or_default() + "\n";
                ([(header::CONTENT_TYPE, "application/json")], body).into_response()
            } else {
                (
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    answer.text,
                )
                    .into_response()
            };
            response
                .headers_mut()
                .insert("llm-integration-outcome", outcome);
            response
        }
        Err(e) => Failure::from(e).into_response(json),
    }
}

type Parsed3 = (Parsed, Option<SecretString>, bool);

/// A body made of lines sent as they happen.
struct LineBody(tokio::sync::mpsc::Receiver<String>);

impl http_body::Body for LineBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|l| Ok(http_body::Frame::data(Bytes::from(l)))))
    }
}

fn parse_request(body: &[u8], is_json: bool) -> Result<Parsed3, (Failure, bool)> {
    let bad = |m: &str| {
        (
            Failure::new(StatusCode::BAD_REQUEST, "bad_request", m),
            is_json,
        )
    };
    if is_json {
        let request: ExecBody = serde_json::from_slice(body).map_err(|e| {
            bad(&format!("invalid JSON body: {e}; send {{\"command\": \"integrations list\"}} or {{\"args\": [\"integrations\", \"list\"], \"stdin\": \"…\"}}"))
        })?;
        let stdin = request.stdin.map(SecretString::from);
        let json_flag = request
            .args
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| x == "--json"))
            || request
                .command
                .as_ref()
                .is_some_and(|c| c.split_whitespace().any(|w| w == "--json"));
        let parsed = match (request.command, request.args) {
            (Some(line), None) => parse_command_line(&line),
            (None, Some(args)) => parse_args(args),
            _ => {
                return Err(bad(
                    "give exactly one of \"command\" (a command line) or \"args\" (its words)",
                ))
            }
        };
        return parsed
            .map(|p| (p, stdin, false))
            .map_err(|e| (Failure::from(e), json_flag));
    }
    let line = std::str::from_utf8(body).map_err(|_| bad("the command line is not valid UTF-8"))?;
    let json_flag = line.split_whitespace().any(|w| w == "--json");
    if line.trim().is_empty() {
        return Err((
            Failure::new(
                StatusCode::BAD_REQUEST,
                "usage",
                "empty command line; try `integrations list` or `--help`",
            ),
            json_flag,
        ));
    }
    parse_command_line(line)
        .map(|p| (p, None, false))
        .map_err(|e| (Failure::from(e), json_flag))
}

async fn authenticate(
    state: &AdminState,
    headers: &HeaderMap,
) -> Result<llm_integration_core::UserId, Failure> {
    let missing = || {
        Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing access token: send `Authorization: Bearer TOKEN` (the CLI reads LLM_INTEGRATION_TOKEN or the file `llm-integration login` writes)",
        )
    };
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(missing)?;
    match state.store.user_by_token(&token_hash(token)).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "invalid access token; ask an operator for a new one (`llm-integration-server admin users token EMAIL`)",
        )),
        Err(e) => {
            tracing::error!(error = %e, "store unavailable during authentication");
            Err(Failure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the configuration store is unavailable; try again"))
        }
    }
}
