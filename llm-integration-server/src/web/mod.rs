//! The browser door (SPEC §12): the web page served on the admin listener,
//! same origin as `POST /exec`.
//!
//! Server-rendered pages (maud templates in [`pages`]) with a small
//! progressive-enhancement script; the stylesheet and script are compiled
//! into the binary (`assets/`), nothing is fetched from elsewhere. Every
//! write is a command line built from the form and run by the same
//! [`crate::executor::Executor`] as the CLI and `/exec`, so the checks and
//! the error messages are the CLI's.
//!
//! Security: sessions are random secrets in an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure` when the page is reached over HTTPS), stored hashed
//! with an expiry ([`session`]); every POST must come from this origin
//! (`Origin`) and carry the session's CSRF token. A key typed into a form
//! goes to the executor as standard input and is never written back into
//! a page, a cookie or a log.

mod pages;
pub mod session;
mod usage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use llm_integration_core::command::{parse_args, Parsed};
use llm_integration_core::seams::WebTokenKind;
use llm_integration_core::{Provider, SecretString, UserId};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::exec_http::AdminState;
use crate::executor::{Answer, ExecError, PageContext};

pub use pages::Notice;

/// The browser door's own state: ChatGPT logins in progress.
#[derive(Default)]
pub struct WebState {
    logins: Mutex<HashMap<String, ChatgptLogin>>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState").finish_non_exhaustive()
    }
}

/// A device-code login started from the page.
#[derive(Clone)]
struct ChatgptLogin {
    user: UserId,
    account: String,
    url: String,
    code: String,
    outcome: Arc<Mutex<LoginOutcome>>,
    started: std::time::Instant,
}

/// Where a device-code login stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LoginOutcome {
    Waiting,
    Connected(String),
    Failed(String),
}

/// The form fields, in order (a field may repeat).
type Fields = Vec<(String, String)>;

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// The browser door's routes, merged into the admin router.
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/integrations") }))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/integrations", get(integrations_page))
        .route("/integrations/new/llm", get(new_llm_page))
        .route("/integrations/new/reflection", get(new_reflection_page))
        .route("/integrations/edit", get(edit_page))
        .route("/integrations/remove", get(remove_page))
        .route("/integrations/add-llm", post(add_llm))
        .route("/integrations/add-reflection", post(add_reflection))
        .route("/integrations/save", post(save_llm))
        .route("/integrations/save-reflection", post(save_reflection))
        .route("/integrations/action", post(action))
        .route("/integrations/test-key", post(test_key))
        .route("/chatgpt", get(chatgpt_page))
        .route("/chatgpt/connect", post(chatgpt_connect))
        .route("/chatgpt/status", get(chatgpt_status))
        .route("/chatgpt/done", post(chatgpt_done))
        .route("/chatgpt/manage", post(chatgpt_manage))
        .route("/usage", get(usage_page))
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Adds the page's security headers.
fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    secured(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            markup.into_string(),
        )
            .into_response(),
    )
}

fn see_other(to: &str) -> Response {
    secured(Redirect::to(to).into_response())
}

/// The host the browser reached (authority or `Host`).
fn host_of(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    uri.authority().map(|a| a.as_str().to_owned()).or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    })
}

/// Whether the page was reached over HTTPS (directly, or through a proxy
/// that says so); the session cookie is then `Secure`.
fn over_https(uri: &Uri, headers: &HeaderMap) -> bool {
    uri.scheme_str() == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
        || headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("https://"))
}

/// The refusal of a POST from another origin.
fn foreign(why: &str) -> Response {
    html(
        StatusCode::FORBIDDEN,
        pages::refused("Request refused", why),
    )
}

/// A POST must come from a page of this origin: `Origin` (or, without
/// it, `Referer`) must be this host over http or https. Says why, if it
/// is not.
fn origin_refusal(uri: &Uri, headers: &HeaderMap) -> Option<&'static str> {
    let Some(host) = host_of(uri, headers) else {
        return Some("the request names no host");
    };
    let allowed = [format!("http://{host}"), format!("https://{host}")];
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if allowed.iter().any(|a| a == origin) {
            return None;
        }
        return Some("this form was sent from another site (its Origin is not this page's); open the page itself and try again");
    }
    if let Some(referer) = headers.get(header::REFERER).and_then(|v| v.to_str().ok()) {
        if allowed.iter().any(|a| {
            referer
                .strip_prefix(a.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        }) {
            return None;
        }
    }
    Some("the request does not say which page sent it (no Origin header); send forms from the page itself")
}

/// A signed-in browser.
struct Session {
    user: UserId,
    secret: Zeroizing<String>,
    csrf: String,
}

fn cookie_value(headers: &HeaderMap) -> Option<Zeroizing<String>> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == session::COOKIE && !v.is_empty() {
                    return Some(Zeroizing::new(v.to_owned()));
                }
            }
        }
    }
    None
}

fn unavailable_page() -> Response {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::refused(
            "Unavailable",
            "the configuration store is unavailable; try again in a moment",
        ),
    )
}

/// The session the request's cookie names, if it is valid.
async fn session_of(state: &AdminState, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    let Some(secret) = cookie_value(headers) else {
        return Ok(None);
    };
    match state
        .store
        .web_token_user(
            WebTokenKind::Session,
            &session::secret_hash(&secret),
            SystemTime::now(),
            false,
        )
        .await
    {
        Ok(Some(user)) => Ok(Some(Session {
            user,
            csrf: session::csrf_token(&secret),
            secret,
        })),
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::error!(error = %e, "store unavailable while reading a web session");
            Err(unavailable_page())
        }
    }
}

/// For a page: the session, or a redirect to sign in.
async fn page_session(state: &AdminState, headers: &HeaderMap) -> Result<Session, Response> {
    match session_of(state, headers).await? {
        Some(s) => Ok(s),
        None => Err(see_other("/login")),
    }
}

/// For a POST: same origin, a valid session, and its CSRF token.
async fn post_session(
    state: &AdminState,
    uri: &Uri,
    headers: &HeaderMap,
    fields: &Fields,
) -> Result<Session, Response> {
    if let Some(why) = origin_refusal(uri, headers) {
        return Err(foreign(why));
    }
    let Some(s) = session_of(state, headers).await? else {
        return Err(html(
            StatusCode::UNAUTHORIZED,
            pages::refused(
                "Signed out",
                "your session has ended (signed out or expired); sign in again and repeat the change",
            ),
        ));
    };
    if !session::same(field(fields, "csrf"), &s.csrf) {
        return Err(html(
            StatusCode::FORBIDDEN,
            pages::refused(
                "Request refused",
                "the form's security token is missing or stale; reload the page and try again",
            ),
        ));
    }
    Ok(s)
}

/// What the page knows of the user for every screen.
struct Frame {
    ctx: PageContext,
    csrf: String,
}

async fn frame(state: &AdminState, s: &Session) -> Result<Frame, Response> {
    match state.executor.page_context(s.user).await {
        Ok(ctx) => Ok(Frame {
            ctx,
            csrf: s.csrf.clone(),
        }),
        Err(_) => Err(unavailable_page()),
    }
}

/// A command's failure, in the CLI's words.
struct Failed {
    status: StatusCode,
    message: String,
}

/// Runs a command line (as words) as `user` through the executor.
async fn run(
    state: &AdminState,
    user: UserId,
    args: Vec<String>,
    stdin: Option<SecretString>,
) -> Result<Answer, Failed> {
    let parsed = parse_args(args).map_err(|e| Failed {
        status: StatusCode::BAD_REQUEST,
        message: e
            .message
            .trim_start_matches("error: ")
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned(),
    })?;
    let line = match parsed {
        Parsed::Command(line) => line,
        Parsed::Help(_) => {
            return Err(Failed {
                status: StatusCode::BAD_REQUEST,
                message: "that form asked for help instead of a change".into(),
            })
        }
    };
    tracing::info!(user = user.0, command = %line.command, "web");
    state
        .executor
        .execute(user, &line, stdin)
        .await
        .map_err(|e: ExecError| Failed {
            status: e.status(),
            message: e.to_string(),
        })
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------- sign-in

#[derive(serde::Deserialize)]
struct LoginQuery {
    link: Option<String>,
}

async fn login_page(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if q.link.is_none() {
        if let Ok(Some(_)) = session_of(&state, &headers).await {
            return see_other("/integrations");
        }
    }
    html(StatusCode::OK, pages::login(q.link.as_deref(), None))
}

async fn login(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if let Some(why) = origin_refusal(&uri, &headers) {
        return foreign(why);
    }
    let link = field(&fields, "link").trim();
    let token = field(&fields, "token").trim();
    let user = if !link.is_empty() {
        match state
            .store
            .web_token_user(
                WebTokenKind::LoginLink,
                &session::secret_hash(link),
                SystemTime::now(),
                true,
            )
            .await
        {
            Ok(Some(u)) => Ok(u),
            Ok(None) => Err("this sign-in link is not valid: it was used already, has expired (links work once, for 15 minutes) or was mistyped; print a new one with `login-link`"),
            Err(_) => return unavailable_page(),
        }
    } else if !token.is_empty() {
        match state
            .store
            .user_by_token(&crate::crypto::token_hash(token))
            .await
        {
            Ok(Some(u)) => Ok(u),
            Ok(None) => Err("that access token is not valid; paste the whole token (lli_…), or ask an operator for a new one"),
            Err(_) => return unavailable_page(),
        }
    } else {
        Err("paste your access token, or open a sign-in link")
    };
    let user = match user {
        Ok(u) => u,
        Err(why) => {
            tracing::info!("web sign-in refused");
            return html(StatusCode::UNAUTHORIZED, pages::login(None, Some(why)));
        }
    };
    let secret = match session::start_session(state.store.as_ref(), user).await {
        Ok(s) => s,
        Err(_) => return unavailable_page(),
    };
    tracing::info!(user = user.0, "web sign-in");
    let mut cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        session::COOKIE,
        secret.as_str(),
        session::SESSION_LIFETIME.as_secs()
    );
    if over_https(&uri, &headers) {
        cookie.push_str("; Secure");
    }
    let mut r = see_other("/integrations");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if state
        .store
        .delete_web_token(&session::secret_hash(&s.secret))
        .await
        .is_err()
    {
        return unavailable_page();
    }
    tracing::info!(user = s.user.0, "web sign-out");
    let mut r = html(StatusCode::OK, pages::signed_out());
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("lli_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

// ---------------------------------------------------------- integrations

async fn list_json(state: &AdminState, user: UserId) -> Result<Value, Response> {
    match run(
        state,
        user,
        words(&["integrations", "list", "--json"]),
        None,
    )
    .await
    {
        Ok(a) => Ok(a.json),
        Err(f) => Err(html(f.status, pages::refused("Unavailable", &f.message))),
    }
}

async fn integrations_page(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let s = match page_session(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    render_list(&state, &s, None).await
}

async fn render_list(state: &AdminState, s: &Session, notice: Option<Notice>) -> Response {
    let f = match frame(state, s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let list = match list_json(state, s.user).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let status = match &notice {
        Some(Notice::Error(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    html(
        status,
        pages::integrations(&f.ctx, &f.csrf, &list, notice.as_ref()),
    )
}

#[derive(serde::Deserialize)]
struct Target {
    name: Option<String>,
    team: Option<String>,
}

async fn new_llm_page(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let s = match page_session(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = match frame(&state, &s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let form = pages::LlmForm::new_default();
    html(
        StatusCode::OK,
        pages::llm_dialog(&f.ctx, &f.csrf, &form, None),
    )
}

async fn new_reflection_page(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let s = match page_session(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = match frame(&state, &s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    html(
        StatusCode::OK,
        pages::reflection_dialog(&f.ctx, &f.csrf, &Fields::new(), None),
    )
}

fn target_words(name: &str, team: &str) -> Vec<String> {
    let mut w = vec![name.to_owned()];
    if !team.is_empty() {
        w.push(format!("--team={team}"));
    }
    w
}

async fn show(state: &AdminState, user: UserId, name: &str, team: &str) -> Result<Value, Failed> {
    let mut args = words(&["integrations", "show"]);
    args.extend(target_words(name, team));
    args.push("--json".into());
    run(state, user, args, None).await.map(|a| a.json)
}

async fn edit_page(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(t): Query<Target>,
) -> Response {
    let s = match page_session(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = match frame(&state, &s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (name, team) = (t.name.unwrap_or_default(), t.team.unwrap_or_default());
    let view = match show(&state, s.user, &name, &team).await {
        Ok(v) => v,
        Err(e) => {
            return render_list(&state, &s, Some(Notice::Error(e.message))).await;
        }
    };
    if view["type"] != "llm" {
        return html(
            StatusCode::OK,
            pages::reflection_edit_dialog(&f.ctx, &f.csrf, &view, None),
        );
    }
    let form = pages::LlmForm::from_view(&view);
    html(
        StatusCode::OK,
        pages::llm_dialog(&f.ctx, &f.csrf, &form, None),
    )
}

async fn remove_page(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(t): Query<Target>,
) -> Response {
    let s = match page_session(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = match frame(&state, &s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (name, team) = (t.name.unwrap_or_default(), t.team.unwrap_or_default());
    match show(&state, s.user, &name, &team).await {
        Ok(view) => html(StatusCode::OK, pages::remove_dialog(&f.ctx, &f.csrf, &view)),
        Err(e) => render_list(&state, &s, Some(Notice::Error(e.message))).await,
    }
}

/// The attachment a dialog asks for, as a spec (`vm:NAME`, `tag:NAME`,
/// `auto:all`), or none.
fn attach_spec(fields: &Fields) -> Option<String> {
    match field(fields, "attach") {
        "vm" => Some(format!("vm:{}", field(fields, "attach_vm").trim())),
        "tag" => Some(format!("tag:{}", field(fields, "attach_tag").trim())),
        "auto" => Some("auto:all".into()),
        _ => None,
    }
}

/// The provider flags and the keys (as standard input, one line each in
/// provider order) of an LLM dialog.
fn provider_words(fields: &Fields, words: &mut Vec<String>) -> Option<SecretString> {
    let mut keys = Vec::new();
    for p in Provider::ALL {
        let source = field(fields, p.as_str());
        if source.is_empty() {
            continue;
        }
        words.push(format!("--{p}={source}"));
        if source == "byok" {
            let key = field(fields, &format!("{p}_key"));
            if !key.is_empty() {
                words.push(format!("--{p}-key=-"));
                keys.push(key.to_owned());
            }
        }
        if source == "chatgpt" && p == Provider::OpenAi {
            words.push(format!(
                "--openai-account={}",
                field(fields, "openai_account")
            ));
        }
    }
    if keys.is_empty() {
        None
    } else {
        Some(SecretString::from(keys.join("\n")))
    }
}

async fn add_llm(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut args = words(&["integrations", "add", "llm"]);
    args.push(format!("--name={}", field(&fields, "name").trim()));
    let stdin = provider_words(&fields, &mut args);
    let team = field(&fields, "owner");
    if !team.is_empty() {
        args.push(format!("--team={team}"));
    }
    let comment = field(&fields, "comment");
    if !comment.is_empty() {
        args.push(format!("--comment={comment}"));
    }
    if let Some(spec) = attach_spec(&fields) {
        args.push(format!("--attach={spec}"));
    }
    match run(&state, s.user, args, stdin).await {
        Ok(a) => render_list(&state, &s, Some(Notice::Done(first_line(&a.text)))).await,
        Err(e) => llm_form_error(&state, &s, &fields, false, e).await,
    }
}

async fn save_llm(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut args = words(&["integrations", "edit"]);
    args.extend(target_words(
        field(&fields, "original"),
        field(&fields, "owner"),
    ));
    let stdin = provider_words(&fields, &mut args);
    args.push(format!("--comment={}", field(&fields, "comment")));
    match run(&state, s.user, args, stdin).await {
        Ok(a) => render_list(&state, &s, Some(Notice::Done(first_line(&a.text)))).await,
        Err(e) => llm_form_error(&state, &s, &fields, true, e).await,
    }
}

async fn save_reflection(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (name, team) = (field(&fields, "original"), field(&fields, "owner"));
    let mut args = words(&["integrations", "edit"]);
    args.extend(target_words(name, team));
    args.push(format!("--fields={}", field(&fields, "fields").trim()));
    args.push(format!("--comment={}", field(&fields, "comment")));
    match run(&state, s.user, args, None).await {
        Ok(a) => render_list(&state, &s, Some(Notice::Done(first_line(&a.text)))).await,
        Err(e) => {
            let f = match frame(&state, &s).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            let view = match show(&state, s.user, name, team).await {
                Ok(v) => v,
                Err(e2) => return render_list(&state, &s, Some(Notice::Error(e2.message))).await,
            };
            let at = pages::error_field(&e.message);
            html(
                e.status,
                pages::reflection_edit_dialog(
                    &f.ctx,
                    &f.csrf,
                    &view,
                    Some((at, e.message.as_str())),
                ),
            )
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_owned()
}

async fn llm_form_error(
    state: &AdminState,
    s: &Session,
    fields: &Fields,
    editing: bool,
    e: Failed,
) -> Response {
    let f = match frame(state, s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let form = pages::LlmForm::from_fields(fields, editing);
    let at = pages::error_field(&e.message);
    html(
        e.status,
        pages::llm_dialog(&f.ctx, &f.csrf, &form, Some((at, e.message.as_str()))),
    )
}

async fn add_reflection(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut args = words(&["integrations", "add", "reflection"]);
    args.push(format!("--name={}", field(&fields, "name").trim()));
    let fields_value = field(&fields, "fields").trim();
    if !fields_value.is_empty() {
        args.push(format!("--fields={fields_value}"));
    }
    let team = field(&fields, "owner");
    if !team.is_empty() {
        args.push(format!("--team={team}"));
    }
    let comment = field(&fields, "comment");
    if !comment.is_empty() {
        args.push(format!("--comment={comment}"));
    }
    if let Some(spec) = attach_spec(&fields) {
        args.push(format!("--attach={spec}"));
    }
    match run(&state, s.user, args, None).await {
        Ok(a) => render_list(&state, &s, Some(Notice::Done(first_line(&a.text)))).await,
        Err(e) => {
            let f = match frame(&state, &s).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            let at = pages::error_field(&e.message);
            html(
                e.status,
                pages::reflection_dialog(&f.ctx, &f.csrf, &fields, Some((at, e.message.as_str()))),
            )
        }
    }
}

/// The list's row actions: rename, attach, detach, remove.
async fn action(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (name, team) = (field(&fields, "name"), field(&fields, "team"));
    let verb = field(&fields, "do");
    let mut args = words(&["integrations"]);
    match verb {
        "rename" => {
            args.push("rename".into());
            args.extend(target_words(name, team));
            args.push(field(&fields, "new_name").trim().to_owned());
        }
        "attach" | "detach" => {
            args.push(verb.to_owned());
            args.extend(target_words(name, team));
            let spec =
                attach_spec(&fields).unwrap_or_else(|| field(&fields, "spec").trim().to_owned());
            args.push(spec);
        }
        "remove" => {
            args.push("remove".into());
            args.extend(target_words(name, team));
        }
        "test" => {
            args.push("test".into());
            args.extend(target_words(name, team));
        }
        _ => {
            return render_list(
                &state,
                &s,
                Some(Notice::Error(
                    "unknown action; use the page's buttons (rename, attach, detach, test, remove)"
                        .into(),
                )),
            )
            .await
        }
    }
    let notice = match run(&state, s.user, args, None).await {
        Ok(a) if verb == "test" => {
            let text = format!("{name}: {}", a.text.trim().replace('\n', "; "));
            if a.failed {
                Notice::Error(text)
            } else {
                Notice::Done(text)
            }
        }
        Ok(a) => Notice::Done(first_line(&a.text)),
        Err(e) => Notice::Error(e.message),
    };
    render_list(&state, &s, Some(notice)).await
}

/// `Test` in the LLM dialog: checks a pasted key against the provider.
/// Answers JSON `{"ok": bool, "message": "…"}`, never the key.
async fn test_key(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if let Err(r) = post_session(&state, &uri, &headers, &fields).await {
        return r;
    }
    let provider: Provider = match field(&fields, "provider").parse() {
        Ok(p) => p,
        Err(_) => {
            return json_answer(
                false,
                "name a provider: anthropic, openai or fireworks".into(),
            )
        }
    };
    let key = SecretString::from(field(&fields, "key").to_owned());
    match state.executor.check_key(provider, &key).await {
        Ok(detail) => json_answer(true, format!("{provider} accepted the key: {detail}")),
        Err(detail) => json_answer(false, format!("{provider} refused the key: {detail}")),
    }
}

fn json_answer(ok: bool, message: String) -> Response {
    secured(
        (
            [(header::CONTENT_TYPE, "application/json")],
            json!({"ok": ok, "message": message}).to_string(),
        )
            .into_response(),
    )
}

// ---------------------------------------------------------------- ChatGPT

async fn chatgpt_accounts(state: &AdminState, user: UserId) -> Value {
    run(
        state,
        user,
        words(&["integrations", "setup", "chatgpt", "--list", "--json"]),
        None,
    )
    .await
    .map(|a| a.json)
    .unwrap_or_else(|_| json!({"accounts": []}))
}

async fn chatgpt_render(
    state: &AdminState,
    s: &Session,
    notice: Option<Notice>,
    verified: Option<&Value>,
) -> Response {
    let f = match frame(state, s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let accounts = chatgpt_accounts(state, s.user).await;
    let status = match &notice {
        Some(Notice::Error(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    html(
        status,
        pages::chatgpt(&f.ctx, &f.csrf, &accounts, notice.as_ref(), verified),
    )
}

async fn chatgpt_page(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let s = match page_session(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    chatgpt_render(&state, &s, None, None).await
}

async fn chatgpt_connect(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let name = field(&fields, "account").trim().to_owned();
    // The name is checked as the CLI checks it.
    let parsed = parse_args(vec![
        "integrations".into(),
        "setup".into(),
        "chatgpt".into(),
        format!("--name={name}"),
    ]);
    let account = match parsed {
        Ok(Parsed::Command(line)) => match line.command {
            llm_integration_core::command::Command::SetupChatgpt(
                llm_integration_core::command::ChatgptSetup::Connect(a),
            ) => a,
            _ => {
                return chatgpt_render(
                    &state,
                    &s,
                    Some(Notice::Error("give an account name".into())),
                    None,
                )
                .await
            }
        },
        Ok(Parsed::Help(_)) => {
            return chatgpt_render(
                &state,
                &s,
                Some(Notice::Error("give an account name".into())),
                None,
            )
            .await
        }
        Err(e) => {
            let message = e
                .message
                .trim_start_matches("error: ")
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            return chatgpt_render(&state, &s, Some(Notice::Error(message)), None).await;
        }
    };
    let mut rx = match state
        .executor
        .connect_chatgpt(s.user, account.clone(), true)
        .await
    {
        Ok(rx) => rx,
        Err(e) => {
            return chatgpt_render(&state, &s, Some(Notice::Error(e.to_string())), None).await
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
    let event: Value = match first {
        Ok(Some(line)) => serde_json::from_str(&line).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let (Some(url), Some(code)) = (
        event["verification_url"].as_str(),
        event["user_code"].as_str(),
    ) else {
        return chatgpt_render(
            &state,
            &s,
            Some(Notice::Error(
                "ChatGPT's login service did not give a code; try again".into(),
            )),
            None,
        )
        .await;
    };
    let outcome = Arc::new(Mutex::new(LoginOutcome::Waiting));
    let login = ChatgptLogin {
        user: s.user,
        account: account.to_string(),
        url: url.to_owned(),
        code: code.to_owned(),
        outcome: outcome.clone(),
        started: std::time::Instant::now(),
    };
    let id = match session::new_secret("") {
        Ok(id) => id.to_string(),
        Err(_) => return unavailable_page(),
    };
    // Follows the login to its end (the executor polls ChatGPT while
    // this receiver is open).
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            let new = match v["event"].as_str() {
                Some("connected") => LoginOutcome::Connected(format!(
                    "Connected ChatGPT account {} ({}).",
                    v["account"].as_str().unwrap_or(""),
                    v["detail"].as_str().unwrap_or("")
                )),
                Some("error") => LoginOutcome::Failed(
                    v["message"]
                        .as_str()
                        .unwrap_or("the login failed")
                        .to_owned(),
                ),
                _ => continue,
            };
            if let Ok(mut o) = outcome.lock() {
                *o = new;
            }
        }
    });
    if let Ok(mut logins) = state.web.logins.lock() {
        logins.retain(|_, l| l.started.elapsed() < crate::chatgpt::DEVICE_CODE_LIFETIME * 2);
        logins.insert(id.clone(), login.clone());
    }
    let f = match frame(&state, &s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    html(
        StatusCode::OK,
        pages::chatgpt_waiting(
            &f.ctx,
            &f.csrf,
            &id,
            &login.account,
            &login.url,
            &login.code,
            None,
        ),
    )
}

fn login_of(state: &AdminState, user: UserId, id: &str) -> Option<ChatgptLogin> {
    state
        .web
        .logins
        .lock()
        .ok()
        .and_then(|l| l.get(id).filter(|l| l.user == user).cloned())
}

fn outcome_of(login: &ChatgptLogin) -> LoginOutcome {
    login
        .outcome
        .lock()
        .map(|o| o.clone())
        .unwrap_or(LoginOutcome::Waiting)
}

#[derive(serde::Deserialize)]
struct LoginId {
    id: Option<String>,
}

async fn chatgpt_status(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<LoginId>,
) -> Response {
    let Ok(Some(s)) = session_of(&state, &headers).await else {
        return (StatusCode::UNAUTHORIZED, "signed out").into_response();
    };
    let Some(login) = login_of(&state, s.user, q.id.as_deref().unwrap_or("")) else {
        return secured(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/json")],
                json!({"state": "unknown", "message": "no such login; start again"}).to_string(),
            )
                .into_response(),
        );
    };
    let (st, message) = match outcome_of(&login) {
        LoginOutcome::Waiting => (
            "waiting",
            "Waiting for you to sign in to ChatGPT and enter the code…".to_owned(),
        ),
        LoginOutcome::Connected(m) => ("connected", format!("{m} Click Done signing in.")),
        LoginOutcome::Failed(m) => ("failed", m),
    };
    secured(
        (
            [(header::CONTENT_TYPE, "application/json")],
            json!({"state": st, "message": message}).to_string(),
        )
            .into_response(),
    )
}

async fn chatgpt_done(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let id = field(&fields, "id");
    let Some(login) = login_of(&state, s.user, id) else {
        return chatgpt_render(
            &state,
            &s,
            Some(Notice::Error(
                "that login is no longer in progress; connect the account again".into(),
            )),
            None,
        )
        .await;
    };
    match outcome_of(&login) {
        LoginOutcome::Connected(m) => {
            if let Ok(mut l) = state.web.logins.lock() {
                l.remove(id);
            }
            chatgpt_render(&state, &s, Some(Notice::Done(m)), None).await
        }
        LoginOutcome::Failed(m) => {
            if let Ok(mut l) = state.web.logins.lock() {
                l.remove(id);
            }
            chatgpt_render(&state, &s, Some(Notice::Error(m)), None).await
        }
        LoginOutcome::Waiting => {
            let f = match frame(&state, &s).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            html(
                StatusCode::CONFLICT,
                pages::chatgpt_waiting(
                    &f.ctx,
                    &f.csrf,
                    id,
                    &login.account,
                    &login.url,
                    &login.code,
                    Some("ChatGPT has not confirmed the sign-in yet: open ChatGPT, sign in, enter the code shown here, then click Done signing in again."),
                ),
            )
        }
    }
}

/// `Verify` and `Disconnect`.
async fn chatgpt_manage(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match field(&fields, "do") {
        "verify" => {
            let args = words(&["integrations", "setup", "chatgpt", "--verify", "--json"]);
            match run(&state, s.user, args, None).await {
                Ok(a) => chatgpt_render(&state, &s, None, Some(&a.json)).await,
                Err(e) => chatgpt_render(&state, &s, Some(Notice::Error(e.message)), None).await,
            }
        }
        "disconnect" => {
            let args = vec![
                "integrations".into(),
                "setup".into(),
                "chatgpt".into(),
                format!("--name={}", field(&fields, "account")),
                "--delete".into(),
            ];
            let notice = match run(&state, s.user, args, None).await {
                Ok(a) => Notice::Done(a.text.trim().replace('\n', " ")),
                Err(e) => Notice::Error(e.message),
            };
            chatgpt_render(&state, &s, Some(notice), None).await
        }
        _ => {
            chatgpt_render(
                &state,
                &s,
                Some(Notice::Error("unknown action".into())),
                None,
            )
            .await
        }
    }
}

// ------------------------------------------------------------------ usage

async fn usage_page(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<usage::UsageQuery>,
) -> Response {
    let s = match page_session(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = match frame(&state, &s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match usage::report(&state, s.user, &q).await {
        Ok(report) => html(StatusCode::OK, pages::usage(&f.ctx, &f.csrf, &report)),
        Err(e) => html(e.status, pages::refused("Usage unavailable", &e.message)),
    }
}
