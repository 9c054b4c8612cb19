//! The browser door: the web page served on the admin listener,
//! same origin as `POST /exec`.
//!
//! Server-rendered pages (maud templates in [`pages`]) with a small
//! progressive-enhancement script; the stylesheet, script and icon are
//! compiled into the binary (`assets/`), nothing is fetched from elsewhere.
//! Every write is a command line built from the form and run by the same
//! [`crate::executor::Executor`] as the CLI and `/exec`, so the checks and
//! the error messages are the CLI's. A change that succeeds answers
//! `303 See Other` to the page that shows it (POST/redirect/GET), with a
//! one-time message kept on the server for the session, so reloading never
//! sends a form (or a key) again.
//!
//! Security: sessions are random secrets in an `HttpOnly`,
//! `SameSite=Strict` cookie, named `__Host-lli_session` and `Secure` when
//! the page is reached over HTTPS (`lli_session` over plain HTTP), stored
//! hashed with an expiry ([`session`]); a request carrying two session
//! cookies is signed out and the cookies cleared, since one may have been
//! set by another site on this host. Every POST must come from this
//! origin (`Origin`, scheme, host and port) and carry the session's CSRF
//! token. A key typed into a form goes to the executor as standard input
//! and is never written back into a page, a cookie or a log. Key and
//! endpoint tests and ChatGPT logins are capped per user.

mod pages;
pub mod session;
mod terms;
mod usage;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use llm_integration_core::command::{parse_args, Parsed};
use llm_integration_core::endpoint::EndpointUrl;
use llm_integration_core::redact::Redactor;
use llm_integration_core::seams::WebTokenKind;
use llm_integration_core::{Provider, SecretString, UserId};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::exec_http::AdminState;
use crate::executor::{Answer, ExecError, PageContext};

pub use pages::Notice;
use session::CookieSession;

/// Key and endpoint tests a user may run per [`TEST_WINDOW`].
pub const MAX_TESTS_PER_WINDOW: usize = 10;
/// The window [`MAX_TESTS_PER_WINDOW`] counts in.
pub const TEST_WINDOW: Duration = Duration::from_secs(60);
/// ChatGPT logins a user may have waiting at once.
pub const MAX_PENDING_LOGINS: usize = 3;
/// How long a one-time message waits for the page it was left for.
const FLASH_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// One-time messages kept at most (one per session).
const MAX_FLASHES: usize = 10_000;

/// The browser door's own state: ChatGPT logins in progress, the one-time
/// messages of the sessions, and each user's recent tests.
#[derive(Default)]
pub struct WebState {
    logins: Mutex<HashMap<String, ChatgptLogin>>,
    flash: Mutex<HashMap<String, Flash>>,
    tests: Mutex<HashMap<UserId, VecDeque<Instant>>>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState").finish_non_exhaustive()
    }
}

impl WebState {
    /// Counts a test for `user`; `false` when the user is over the cap.
    fn allow_test(&self, user: UserId) -> bool {
        let Ok(mut tests) = self.tests.lock() else {
            return false;
        };
        let now = Instant::now();
        tests.retain(|_, times| {
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= TEST_WINDOW)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
        let times = tests.entry(user).or_default();
        if times.len() >= MAX_TESTS_PER_WINDOW {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// A message left for the next page a session opens (after a redirect).
#[derive(Debug, Clone)]
struct Flash {
    notice: Option<Notice>,
    verified: Option<Value>,
    at: Instant,
}

/// A device-code login started from the page.
#[derive(Clone)]
struct ChatgptLogin {
    user: UserId,
    account: String,
    url: String,
    code: String,
    outcome: Arc<Mutex<LoginOutcome>>,
    started: Instant,
    /// The task following the login; aborting it closes the executor's
    /// channel, which ends the login before it connects anything.
    follow: Arc<tokio::task::AbortHandle>,
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
        .route("/assets/icon.svg", get(icon))
        .route("/favicon.ico", get(icon))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/signed-out", get(signed_out_page))
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
        .route("/integrations/test-endpoint", post(test_endpoint))
        .route("/chatgpt", get(chatgpt_page))
        .route("/chatgpt/connect", post(chatgpt_connect))
        .route("/chatgpt/login", get(chatgpt_login_page))
        .route("/chatgpt/status", get(chatgpt_status))
        .route("/chatgpt/done", post(chatgpt_done))
        .route("/chatgpt/cancel", post(chatgpt_cancel))
        .route("/chatgpt/disconnect", get(chatgpt_disconnect_page))
        .route("/chatgpt/manage", post(chatgpt_manage))
        .route("/usage", get(usage_page))
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
const ICON: &str = include_str!("assets/icon.svg");

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
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

/// Adds `Set-Cookie` headers.
fn with_cookies(mut r: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// Text shown in a page that may quote what was typed: key-shaped text
/// removed (a key typed in the wrong field is never echoed).
fn shown(text: &str) -> String {
    Redactor::new([]).redact(text).into_owned()
}

/// A refusal of a request the page never makes (a malformed query or
/// form), as an HTML page with the page's headers.
fn malformed(status: StatusCode, what: &str, detail: &str) -> Response {
    html(
        status,
        pages::refused(
            "Bad request",
            &shown(&format!(
                "{what} is not one this page sends ({detail}); use the page's links and forms"
            )),
        ),
    )
}

/// A query string, refused as an HTML page when malformed.
struct PageQuery<T>(T);

impl<S, T> FromRequestParts<S> for PageQuery<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(PageQuery(v)),
            Err(e) => Err(malformed(e.status(), "the address's query", &e.body_text())),
        }
    }
}

/// A form body, refused as an HTML page when malformed or too large.
struct PageForm(Fields);

impl<S: Send + Sync> FromRequest<S> for PageForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match Form::<Fields>::from_request(req, state).await {
            Ok(Form(f)) => Ok(PageForm(f)),
            Err(e) => Err(malformed(e.status(), "the form", &e.body_text())),
        }
    }
}

/// The host the browser reached (authority or `Host`), lowercase.
fn host_of(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    uri.authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .map(|h| h.to_ascii_lowercase())
}

/// Whether the page was reached over HTTPS: directly, or through a front
/// proxy that says so (`X-Forwarded-Proto: https`, which a browser cannot
/// set). The session cookie is then `__Host-` and `Secure`, and forms
/// must come from the `https` origin.
fn over_https(uri: &Uri, headers: &HeaderMap) -> bool {
    uri.scheme_str() == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// This page's origin as a browser writes it: `scheme://host[:port]`, the
/// port left out when it is the scheme's default.
fn expected_origin(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let host = host_of(uri, headers)?;
    let https = over_https(uri, headers);
    let default = if https { ":443" } else { ":80" };
    let host = host.strip_suffix(default).unwrap_or(&host);
    Some(format!("{}://{host}", if https { "https" } else { "http" }))
}

/// The refusal of a POST from another origin.
fn foreign(why: &str) -> Response {
    html(
        StatusCode::FORBIDDEN,
        pages::refused("Request refused", why),
    )
}

/// A POST must come from a page of this origin: `Origin` (or, without
/// it, `Referer`) must be this page's scheme, host and port. Says why, if
/// it is not.
fn origin_refusal(uri: &Uri, headers: &HeaderMap) -> Option<&'static str> {
    let Some(expected) = expected_origin(uri, headers) else {
        return Some("the request names no host");
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        if origin == expected {
            return None;
        }
        let downgraded = matches!(
            (origin.strip_prefix("https://"), expected.strip_prefix("http://")),
            (Some(o), Some(e)) if o == e
        );
        if downgraded {
            return Some("this form was sent from the https page but the server was reached over plain HTTP (its Origin is not this page's scheme, host and port): a TLS front proxy must send X-Forwarded-Proto: https");
        }
        return Some("this form was sent from another site (its Origin is not this page's scheme, host and port); open the page itself and try again");
    }
    if let Some(referer) = headers.get(header::REFERER).and_then(|v| v.to_str().ok()) {
        let referer = referer.to_ascii_lowercase();
        if referer
            .strip_prefix(expected.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
        {
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

impl Session {
    /// The key of this session's one-time message.
    fn flash_key(&self) -> String {
        session::secret_hash(&self.secret)
    }
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

/// The answer to a request carrying two session cookies: signed out, the
/// cookies cleared.
fn ambiguous_session(uri: &Uri) -> Response {
    tracing::info!("web request with two session cookies refused");
    with_cookies(
        html(
            StatusCode::UNAUTHORIZED,
            pages::refused(
                "Signed out",
                "this browser sent two session cookies (another site on this host may have set one), so neither is trusted; \
both were removed: sign in again",
            ),
        ),
        &session::clearing_cookies(uri.path(), true),
    )
}

/// The session the request's cookie names, if it is valid; a request with
/// two session cookies is answered as signed out.
async fn session_of(
    state: &AdminState,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<Session>, Response> {
    let cookies = headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes());
    let secret = match session::cookie_session(cookies, over_https(uri, headers)) {
        CookieSession::None => return Ok(None),
        CookieSession::Ambiguous => return Err(ambiguous_session(uri)),
        CookieSession::One(secret) => secret,
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
async fn page_session(
    state: &AdminState,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Session, Response> {
    match session_of(state, uri, headers).await? {
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
    let Some(s) = session_of(state, uri, headers).await? else {
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

/// Leaves `notice` (and a ChatGPT verification) for the session's next
/// page and answers `303 See Other` to `to`.
fn redirect_with(
    state: &AdminState,
    s: &Session,
    to: &str,
    notice: Option<Notice>,
    verified: Option<Value>,
) -> Response {
    if let Ok(mut flash) = state.web.flash.lock() {
        flash.retain(|_, f| f.at.elapsed() < FLASH_LIFETIME);
        if flash.len() < MAX_FLASHES {
            flash.insert(
                s.flash_key(),
                Flash {
                    notice,
                    verified,
                    at: Instant::now(),
                },
            );
        }
    }
    see_other(to)
}

/// The message left for this session, once.
fn take_flash(state: &AdminState, s: &Session) -> Option<Flash> {
    state
        .web
        .flash
        .lock()
        .ok()
        .and_then(|mut f| f.remove(&s.flash_key()))
        .filter(|f| f.at.elapsed() < FLASH_LIFETIME)
}

/// What the page knows of the user for every screen.
struct Frame {
    ctx: PageContext,
    /// The VMs of each owner scope, for the attach lists.
    vms: pages::VmScopes,
    csrf: String,
}

/// The VMs `user` may name in a `vm:` attachment, per owner scope (as the
/// executor checks them: a personal integration's VMs are owned by the
/// user, a team integration's belong to the team).
async fn vm_scopes(state: &AdminState, user: UserId) -> Result<pages::VmScopes, Response> {
    let records = state.store.load().await.map_err(|e| {
        tracing::error!(error = %e, "store unavailable while reading VMs for a web page");
        unavailable_page()
    })?;
    let mine = records
        .vms
        .iter()
        .filter(|v| v.owner == user)
        .map(|v| v.name.to_string())
        .collect();
    let teams = records
        .teams
        .iter()
        .filter(|t| t.members.contains(&user))
        .map(|t| {
            let vms = records
                .vms
                .iter()
                .filter(|v| v.team == Some(t.id))
                .map(|v| v.name.to_string())
                .collect();
            (t.name.to_string(), vms)
        })
        .collect();
    Ok(pages::VmScopes { mine, teams })
}

async fn frame(state: &AdminState, s: &Session) -> Result<Frame, Response> {
    let ctx = state
        .executor
        .page_context(s.user)
        .await
        .map_err(|_| unavailable_page())?;
    Ok(Frame {
        ctx,
        vms: vm_scopes(state, s.user).await?,
        csrf: s.csrf.clone(),
    })
}

/// A command's failure: the field of the form it concerns and the
/// message in the form's terms ([`terms`]).
struct Failed {
    status: StatusCode,
    /// The field, from the command's own words ([`pages::error_field`]).
    at: &'static str,
    message: String,
}

impl Failed {
    /// A refusal of the executor or the parser, `message` in the command
    /// language's words (key-shaped text is removed).
    fn new(status: StatusCode, message: &str) -> Self {
        let message = shown(message);
        Failed {
            status,
            at: pages::error_field(&message),
            message: terms::in_form_terms(&message),
        }
    }

    fn usage(message: impl Into<String>) -> Self {
        Failed::new(StatusCode::BAD_REQUEST, &message.into())
    }
}

/// A command-line parse error's first line, without `error: `.
fn parse_message(message: &str) -> String {
    shown(
        message
            .trim_start_matches("error: ")
            .lines()
            .next()
            .unwrap_or("")
            .trim(),
    )
}

/// Runs a command line (as words) as `user` through the executor.
async fn run(
    state: &AdminState,
    user: UserId,
    args: Vec<String>,
    stdin: Option<SecretString>,
) -> Result<Answer, Failed> {
    let parsed = parse_args(args).map_err(|e| Failed::usage(parse_message(&e.message)))?;
    let line = match parsed {
        Parsed::Command(line) => line,
        Parsed::Help(_) => {
            return Err(Failed::usage(
                "that form asked for help instead of a change",
            ))
        }
    };
    tracing::info!(user = user.0, command = %line.command, "web");
    state
        .executor
        .execute(user, &line, stdin)
        .await
        .map_err(|e: ExecError| Failed::new(e.status(), &e.to_string()))
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
    uri: Uri,
    headers: HeaderMap,
    PageQuery(q): PageQuery<LoginQuery>,
) -> Response {
    if q.link.is_none() {
        match session_of(&state, &uri, &headers).await {
            Ok(Some(_)) => return see_other("/integrations"),
            Err(r) if r.status() == StatusCode::UNAUTHORIZED => {
                // Two session cookies: cleared, and the sign-in form shown.
                let mut page = html(StatusCode::OK, pages::login(None, None));
                for c in r.headers().get_all(header::SET_COOKIE) {
                    page.headers_mut().append(header::SET_COOKIE, c.clone());
                }
                return page;
            }
            _ => {}
        }
    }
    html(StatusCode::OK, pages::login(q.link.as_deref(), None))
}

async fn login(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageForm(fields): PageForm,
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
    // The new cookie, and no other at the page's folders (a second one
    // there would sign this browser out again).
    let mut cookies = vec![session::session_cookie(
        secret.as_str(),
        over_https(&uri, &headers),
    )];
    cookies.extend(session::clearing_cookies("/", false));
    with_cookies(see_other("/integrations"), &cookies)
}

async fn logout(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageForm(fields): PageForm,
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
    if let Ok(mut flash) = state.web.flash.lock() {
        flash.remove(&s.flash_key());
    }
    with_cookies(
        see_other("/signed-out"),
        &session::clearing_cookies("/", true),
    )
}

async fn signed_out_page() -> Response {
    html(StatusCode::OK, pages::signed_out())
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

async fn integrations_page(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let s = match page_session(&state, &uri, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let notice = take_flash(&state, &s).and_then(|f| f.notice);
    render_list(&state, &s, notice, StatusCode::OK).await
}

async fn render_list(
    state: &AdminState,
    s: &Session,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let f = match frame(state, s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let list = match list_json(state, s.user).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    html(
        status,
        pages::integrations(&f.ctx, &f.vms, &f.csrf, &list, notice.as_ref()),
    )
}

/// The list with a refusal at the top.
async fn list_error(state: &AdminState, s: &Session, e: Failed) -> Response {
    render_list(state, s, Some(Notice::Error(e.message)), e.status).await
}

#[derive(serde::Deserialize)]
struct Target {
    name: Option<String>,
    team: Option<String>,
}

/// The first of `llm`, `llm-2`, `llm-3`, … that no personal integration of
/// the user is named.
fn free_name(list: &Value) -> String {
    let taken: Vec<&str> = list["integrations"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i["owner"]["kind"] == "user")
                .filter_map(|i| i["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    (1..)
        .map(|n: u32| {
            if n == 1 {
                "llm".to_owned()
            } else {
                format!("llm-{n}")
            }
        })
        .find(|n| !taken.contains(&n.as_str()))
        .unwrap_or_default()
}

async fn new_llm_page(State(state): State<AdminState>, uri: Uri, headers: HeaderMap) -> Response {
    let s = match page_session(&state, &uri, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = match frame(&state, &s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let list = match list_json(&state, s.user).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let form = pages::LlmForm::new_default(free_name(&list));
    html(
        StatusCode::OK,
        pages::llm_dialog(&f.ctx, &f.vms, &f.csrf, &form, None),
    )
}

async fn new_reflection_page(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let s = match page_session(&state, &uri, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = match frame(&state, &s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    html(
        StatusCode::OK,
        pages::reflection_dialog(&f.ctx, &f.vms, &f.csrf, &Fields::new(), None),
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
    uri: Uri,
    headers: HeaderMap,
    PageQuery(t): PageQuery<Target>,
) -> Response {
    let s = match page_session(&state, &uri, &headers).await {
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
        Err(e) => return list_error(&state, &s, e).await,
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
        pages::llm_dialog(&f.ctx, &f.vms, &f.csrf, &form, None),
    )
}

async fn remove_page(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageQuery(t): PageQuery<Target>,
) -> Response {
    let s = match page_session(&state, &uri, &headers).await {
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
        Err(e) => list_error(&state, &s, e).await,
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

/// A form's refusal before any command runs: the field it concerns (a
/// provider, `comment`, …) and why.
struct FormError {
    at: &'static str,
    message: String,
}

/// The secret fields of a provider in the LLM dialog, with what each is
/// called, and the source (and custom authentication) that uses it.
fn secret_fields(p: Provider) -> [(String, &'static str, &'static str, &'static str); 3] {
    [
        (format!("{p}_key"), "an API key", "byok", ""),
        (format!("{p}_token"), "a bearer token", "custom", "bearer"),
        (
            format!("{p}_header_value"),
            "a header value",
            "custom",
            "header",
        ),
    ]
}

/// The provider flags and the secrets (as standard input, one line each
/// in provider order) of an LLM dialog. `stored` is the integration's
/// view when editing (its custom endpoints' authentication is kept when
/// no new secret is typed).
fn provider_words(
    fields: &Fields,
    stored: Option<&Value>,
    words: &mut Vec<String>,
) -> Result<Option<SecretString>, FormError> {
    let mut secrets: Vec<String> = Vec::new();
    for p in Provider::ALL {
        let ps = p.as_str();
        let source = field(fields, ps);
        let auth = field(fields, &format!("{p}_auth"));
        let refuse = |message: String| FormError { at: ps, message };
        // A secret typed where the chosen source does not use it is an
        // error, not dropped: the user meant it for something.
        for (name, what, for_source, for_auth) in secret_fields(p) {
            let value = field(fields, &name);
            if value.is_empty() {
                continue;
            }
            if value.contains(['\n', '\r']) {
                return Err(refuse(format!(
                    "the {} field holds a line break; paste the value on one line",
                    pages::provider_title(p)
                )));
            }
            let used = source == for_source && (for_auth.is_empty() || auth == for_auth);
            if !used {
                return Err(refuse(format!(
                    "{what} was typed for {} but its source is {}{}; choose {} to use it, or clear the field",
                    pages::provider_title(p),
                    pages::source_title(source),
                    if source == "custom" { format!(" with {}", pages::auth_title(auth)) } else { String::new() },
                    if for_source == "byok" { "API Key".to_owned() } else { format!("Custom HTTPS endpoint with {}", pages::auth_title(for_auth)) },
                )));
            }
        }
        if source.is_empty() {
            continue;
        }
        words.push(format!("--{p}={source}"));
        match source {
            "byok" => {
                let key = field(fields, &format!("{p}_key"));
                if !key.is_empty() {
                    words.push(format!("--{p}-key=-"));
                    secrets.push(key.to_owned());
                }
            }
            "chatgpt" if p == Provider::OpenAi => {
                words.push(format!(
                    "--openai-account={}",
                    field(fields, "openai_account")
                ));
            }
            "custom" => {
                let view = stored
                    .map(|v| &v["providers"][ps])
                    .filter(|v| v["source"] == "custom");
                let stored_auth = view.and_then(|v| v["auth"].as_str()).unwrap_or("none");
                let url = field(fields, &format!("{p}_url")).trim();
                if !url.is_empty() {
                    words.push(format!("--{p}-url={url}"));
                }
                match auth {
                    "bearer" => {
                        let token = field(fields, &format!("{p}_token"));
                        if !token.is_empty() {
                            words.push(format!("--{p}-key=-"));
                            secrets.push(token.to_owned());
                        } else if stored_auth != "bearer" {
                            return Err(refuse(format!(
                                "{}: paste the endpoint's bearer token, or choose No authentication",
                                pages::provider_title(p)
                            )));
                        }
                    }
                    "header" => {
                        let name = field(fields, &format!("{p}_header")).trim();
                        let value = field(fields, &format!("{p}_header_value"));
                        let same_header = stored_auth == "header"
                            && view.and_then(|v| v["header"].as_str())
                                == Some(&name.to_ascii_lowercase());
                        if name.is_empty() {
                            return Err(refuse(format!(
                                "{}: give the header's name (such as x-api-key)",
                                pages::provider_title(p)
                            )));
                        }
                        if !value.is_empty() {
                            words.push(format!("--{p}-header={name}: -"));
                            secrets.push(value.to_owned());
                        } else if !same_header {
                            return Err(refuse(format!(
                                "{}: give the value of the {name} header",
                                pages::provider_title(p)
                            )));
                        }
                    }
                    _ => {
                        if stored_auth != "none" {
                            return Err(refuse(format!(
                                "the {} endpoint has a stored credential, which an edit keeps; to send none, \
choose LLM gateway and save, then set the endpoint again with No authentication",
                                pages::provider_title(p)
                            )));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(if secrets.is_empty() {
        None
    } else {
        Some(SecretString::from(secrets.join("\n")))
    })
}

async fn add_llm(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageForm(fields): PageForm,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut args = words(&["integrations", "add", "llm"]);
    args.push(format!("--name={}", field(&fields, "name").trim()));
    let stdin = match provider_words(&fields, None, &mut args) {
        Ok(stdin) => stdin,
        Err(e) => {
            return llm_form_refused(
                &state,
                &s,
                &fields,
                false,
                StatusCode::BAD_REQUEST,
                e.at,
                &e.message,
            )
            .await
        }
    };
    let team = field(&fields, "owner");
    if !team.is_empty() {
        args.push(format!("--team={team}"));
    }
    let comment = field(&fields, "comment");
    if !comment.is_empty() {
        args.push(format!("--comment={comment}"));
    }
    if field(&fields, "translate") == "off" {
        args.push("--translate=off".to_owned());
    }
    if let Some(spec) = attach_spec(&fields) {
        args.push(format!("--attach={spec}"));
    }
    match run(&state, s.user, args, stdin).await {
        Ok(a) => done(&state, &s, &a),
        Err(e) => llm_form_error(&state, &s, &fields, false, e).await,
    }
}

/// A change made: its first line left for the list, which it redirects to.
fn done(state: &AdminState, s: &Session, a: &Answer) -> Response {
    redirect_with(
        state,
        s,
        "/integrations",
        Some(Notice::Done(first_line(&a.text))),
        None,
    )
}

async fn save_llm(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageForm(fields): PageForm,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (name, team) = (field(&fields, "original"), field(&fields, "owner"));
    // Not the user's (or gone): said on the list, as the other actions do.
    let stored = match show(&state, s.user, name, team).await {
        Ok(v) => v,
        Err(e) => return list_error(&state, &s, e).await,
    };
    let mut args = words(&["integrations", "edit"]);
    args.extend(target_words(name, team));
    let stdin = match provider_words(&fields, Some(&stored), &mut args) {
        Ok(stdin) => stdin,
        Err(e) => {
            return llm_form_refused(
                &state,
                &s,
                &fields,
                true,
                StatusCode::BAD_REQUEST,
                e.at,
                &e.message,
            )
            .await
        }
    };
    args.push(format!("--comment={}", field(&fields, "comment")));
    let translate = if field(&fields, "translate") == "off" {
        "off"
    } else {
        "on"
    };
    args.push(format!("--translate={translate}"));
    match run(&state, s.user, args, stdin).await {
        Ok(a) => done(&state, &s, &a),
        Err(e) if e.status == StatusCode::NOT_FOUND && e.message.contains("integration named") => {
            list_error(&state, &s, e).await
        }
        Err(e) => llm_form_error(&state, &s, &fields, true, e).await,
    }
}

async fn save_reflection(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageForm(fields): PageForm,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (name, team) = (field(&fields, "original"), field(&fields, "owner"));
    let view = match show(&state, s.user, name, team).await {
        Ok(v) => v,
        Err(e) => return list_error(&state, &s, e).await,
    };
    let (status, at, message) = {
        let mut args = words(&["integrations", "edit"]);
        args.extend(target_words(name, team));
        args.push(format!("--fields={}", field(&fields, "fields").trim()));
        args.push(format!("--comment={}", field(&fields, "comment")));
        match run(&state, s.user, args, None).await {
            Ok(a) => return done(&state, &s, &a),
            Err(e)
                if e.status == StatusCode::NOT_FOUND && e.message.contains("integration named") =>
            {
                return list_error(&state, &s, e).await
            }
            Err(e) => {
                let at = pages::placed(e.at, &["fields", "comment"]);
                (e.status, at, e.message)
            }
        }
    };
    let f = match frame(&state, &s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    html(
        status,
        pages::reflection_edit_dialog(&f.ctx, &f.csrf, &view, Some((at, message.as_str()))),
    )
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
    llm_form_refused(state, s, fields, editing, e.status, e.at, &e.message).await
}

async fn llm_form_refused(
    state: &AdminState,
    s: &Session,
    fields: &Fields,
    editing: bool,
    status: StatusCode,
    at: &str,
    message: &str,
) -> Response {
    let f = match frame(state, s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut form = pages::LlmForm::from_fields(fields, editing);
    if editing {
        // The stored key hints, as the edit dialog showed them.
        if let Ok(view) = show(state, s.user, &form.original, &form.owner).await {
            form.keep_hints(&pages::LlmForm::from_view(&view));
        }
    }
    // Fields an edit does not show (name, owner, where to apply): said
    // at the top of the form.
    let at = if editing {
        pages::placed(at, &["openai", "anthropic", "fireworks", "comment", "form"])
    } else {
        pages::placed(
            at,
            &[
                "openai",
                "anthropic",
                "fireworks",
                "comment",
                "form",
                "name",
                "owner",
                "attach",
            ],
        )
    };
    html(
        status,
        pages::llm_dialog(&f.ctx, &f.vms, &f.csrf, &form, Some((at, message))),
    )
}

async fn add_reflection(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageForm(fields): PageForm,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (status, at, message) = {
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
            Ok(a) => return done(&state, &s, &a),
            Err(e) => {
                let at = pages::placed(e.at, &["name", "fields", "owner", "attach", "comment"]);
                (e.status, at, e.message)
            }
        }
    };
    let f = match frame(&state, &s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    html(
        status,
        pages::reflection_dialog(
            &f.ctx,
            &f.vms,
            &f.csrf,
            &fields,
            Some((at, message.as_str())),
        ),
    )
}

/// The list's row actions: rename, attach, detach, remove, test.
async fn action(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageForm(fields): PageForm,
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
            // Testing the stored keys calls the providers, as `Test` in
            // the dialog does: the same per-user cap.
            if !state.web.allow_test(s.user) {
                return list_error(
                    &state,
                    &s,
                    Failed::new(StatusCode::TOO_MANY_REQUESTS, &too_many_tests_message()),
                )
                .await;
            }
            args.push("test".into());
            args.extend(target_words(name, team));
        }
        _ => {
            return list_error(
                &state,
                &s,
                Failed::usage(
                    "unknown action; use the page's buttons (rename, attach, detach, test, remove)",
                ),
            )
            .await
        }
    }
    match run(&state, s.user, args, None).await {
        Ok(a) if verb == "test" => {
            let text = format!("{name}: {}", a.text.trim().replace('\n', "; "));
            let notice = if a.failed {
                Notice::Error(text)
            } else {
                Notice::Done(text)
            };
            redirect_with(&state, &s, "/integrations", Some(notice), None)
        }
        Ok(a) => done(&state, &s, &a),
        Err(e) => list_error(&state, &s, e).await,
    }
}

fn too_many_tests_message() -> String {
    format!("too many tests: at most {MAX_TESTS_PER_WINDOW} a minute; wait a minute and try again")
}

/// The refusal of a test over the per-user cap.
fn too_many_tests() -> Response {
    let mut r = json_answer(false, too_many_tests_message());
    *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    r
}

/// What both `Test` buttons read first: the signed-in session of a valid
/// post, and the `provider` field (a JSON answer naming the providers
/// when it is not one).
async fn tested_provider(
    state: &AdminState,
    uri: &Uri,
    headers: &HeaderMap,
    fields: &Fields,
) -> Result<(Session, Provider), Response> {
    let s = post_session(state, uri, headers, fields).await?;
    match field(fields, "provider").parse() {
        Ok(p) => Ok((s, p)),
        Err(_) => Err(json_answer(
            false,
            "name a provider: anthropic, openai or fireworks".into(),
        )),
    }
}

/// `Test` in the LLM dialog: checks a pasted key against the provider.
/// Answers JSON `{"ok": bool, "message": "…"}`, never the key; 429 past
/// [`MAX_TESTS_PER_WINDOW`] a minute.
async fn test_key(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageForm(fields): PageForm,
) -> Response {
    let (s, provider) = match tested_provider(&state, &uri, &headers, &fields).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if !state.web.allow_test(s.user) {
        return too_many_tests();
    }
    let key = SecretString::from(field(&fields, "key").to_owned());
    match state.executor.check_key(provider, &key).await {
        Ok(detail) => json_answer(true, format!("{provider} accepted the key: {detail}")),
        Err(detail) => json_answer(false, format!("{provider} refused the key: {detail}")),
    }
}

/// `Test` of a custom endpoint in the LLM dialog: the endpoint's model
/// list with the typed credential, or, editing with no new credential
/// and the stored URL, `integrations test NAME --provider P`. Answers
/// JSON `{"ok": bool, "message": "…"}`, never the credential.
async fn test_endpoint(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageForm(fields): PageForm,
) -> Response {
    let (s, provider) = match tested_provider(&state, &uri, &headers, &fields).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let url = field(&fields, "url").trim();
    if url.is_empty() {
        return json_answer(
            false,
            format!(
                "{} endpoint URL: give the endpoint's base URL, such as https://models.example.com/v1",
                pages::provider_title(provider)
            ),
        );
    }
    let url: EndpointUrl = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            return json_answer(
                false,
                terms::in_form_terms(&shown(&format!("--{provider}-url: {e}"))),
            )
        }
    };
    if !state.web.allow_test(s.user) {
        return too_many_tests();
    }
    let auth = field(&fields, "auth");
    let token = SecretString::from(field(&fields, "token").to_owned());
    let header = field(&fields, "header").trim();
    let value = SecretString::from(field(&fields, "header_value").to_owned());
    let typed = match auth {
        "bearer" => !token.expose_secret().is_empty(),
        "header" => !value.expose_secret().is_empty(),
        _ => false,
    };
    let original = field(&fields, "original");
    if !typed && auth != "none" && !original.is_empty() {
        // The stored credential, for the stored URL only.
        let team = field(&fields, "owner");
        let stored = show(&state, s.user, original, team).await;
        let same = stored.as_ref().is_ok_and(|v| {
            v["providers"][provider.as_str()]["url"].as_str() == Some(url.as_str())
                && v["providers"][provider.as_str()]["auth"] == auth
        });
        if same {
            let mut args = words(&["integrations", "test"]);
            args.extend(target_words(original, team));
            args.push(format!("--provider={provider}"));
            return match run(&state, s.user, args, None).await {
                Ok(a) => json_answer(!a.failed, a.text.trim().replace('\n', "; ")),
                Err(e) => json_answer(false, e.message),
            };
        }
    }
    let given = match auth {
        "bearer" if typed => Some((None, &token)),
        "header" if typed => Some((Some(header), &value)),
        "bearer" => {
            return json_answer(
                false,
                format!(
                    "{}: paste the endpoint's bearer token first, then click Test",
                    pages::provider_title(provider)
                ),
            )
        }
        "header" => {
            return json_answer(
                false,
                format!(
                    "{}: give the header's name and value first, then click Test",
                    pages::provider_title(provider)
                ),
            )
        }
        _ => None,
    };
    match state.executor.check_endpoint(provider, &url, given).await {
        Ok(detail) => json_answer(true, shown(&detail)),
        Err(detail) => json_answer(false, shown(&detail)),
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
    status: StatusCode,
) -> Response {
    let f = match frame(state, s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let accounts = chatgpt_accounts(state, s.user).await;
    html(
        status,
        pages::chatgpt(&f.ctx, &f.csrf, &accounts, notice.as_ref(), verified),
    )
}

async fn chatgpt_page(State(state): State<AdminState>, uri: Uri, headers: HeaderMap) -> Response {
    let s = match page_session(&state, &uri, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let flash = take_flash(&state, &s);
    let (notice, verified) = flash.map(|f| (f.notice, f.verified)).unwrap_or_default();
    chatgpt_render(&state, &s, notice, verified.as_ref(), StatusCode::OK).await
}

async fn chatgpt_error(state: &AdminState, s: &Session, message: String) -> Response {
    chatgpt_render(
        state,
        s,
        Some(Notice::Error(message)),
        None,
        StatusCode::BAD_REQUEST,
    )
    .await
}

/// Ends a login: forgotten, and its follower stopped (which ends the
/// executor's polling before it connects anything).
fn end_login(state: &AdminState, id: &str) {
    if let Ok(mut logins) = state.web.logins.lock() {
        if let Some(l) = logins.remove(id) {
            l.follow.abort();
        }
    }
}

async fn chatgpt_connect(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageForm(fields): PageForm,
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
            _ => return chatgpt_error(&state, &s, "give an account name".into()).await,
        },
        Ok(Parsed::Help(_)) => {
            return chatgpt_error(&state, &s, "give an account name".into()).await
        }
        Err(e) => {
            return chatgpt_error(&state, &s, terms::in_form_terms(&parse_message(&e.message)))
                .await
        }
    };
    // At most a few logins waiting per user.
    let pending = state
        .web
        .logins
        .lock()
        .map(|mut logins| {
            let expired: Vec<String> = logins
                .iter()
                .filter(|(_, l)| l.started.elapsed() >= crate::chatgpt::DEVICE_CODE_LIFETIME * 2)
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                if let Some(l) = logins.remove(&id) {
                    l.follow.abort();
                }
            }
            logins
                .values()
                .filter(|l| l.user == s.user && outcome_of(l) == LoginOutcome::Waiting)
                .count()
        })
        .unwrap_or(MAX_PENDING_LOGINS);
    if pending >= MAX_PENDING_LOGINS {
        return chatgpt_render(
            &state,
            &s,
            Some(Notice::Error(format!(
                "{pending} ChatGPT logins are already waiting for you (at most {MAX_PENDING_LOGINS}); \
finish or cancel one of them, or wait until their codes expire (15 minutes)"
            ))),
            None,
            StatusCode::TOO_MANY_REQUESTS,
        )
        .await;
    }
    let mut rx = match state
        .executor
        .connect_chatgpt(s.user, account.clone(), true)
        .await
    {
        Ok(rx) => rx,
        Err(e) => return chatgpt_error(&state, &s, shown(&e.to_string())).await,
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
        return chatgpt_error(
            &state,
            &s,
            "ChatGPT's login service did not give a code; try again".into(),
        )
        .await;
    };
    let outcome = Arc::new(Mutex::new(LoginOutcome::Waiting));
    let id = match session::new_secret("") {
        Ok(id) => id.to_string(),
        Err(_) => return unavailable_page(),
    };
    // Follows the login to its end (the executor polls ChatGPT while
    // this receiver is open).
    let follower = {
        let outcome = outcome.clone();
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
        })
    };
    let login = ChatgptLogin {
        user: s.user,
        account: account.to_string(),
        url: url.to_owned(),
        code: code.to_owned(),
        outcome,
        started: Instant::now(),
        follow: Arc::new(follower.abort_handle()),
    };
    if let Ok(mut logins) = state.web.logins.lock() {
        logins.insert(id.clone(), login);
    }
    see_other(&format!("/chatgpt/login?id={id}"))
}

fn login_of(state: &AdminState, user: UserId, id: &str) -> Option<ChatgptLogin> {
    state
        .web
        .logins
        .lock()
        .ok()
        .and_then(|l| l.get(id).filter(|l| l.user == user).cloned())
}

/// Where a login stands, for the device-code screen: `waiting`,
/// `connected` or `failed`, and what to say.
fn login_status(login: &ChatgptLogin) -> (&'static str, String) {
    match outcome_of(login) {
        LoginOutcome::Waiting => (
            "waiting",
            "Waiting for you to sign in to ChatGPT and enter the code…".to_owned(),
        ),
        LoginOutcome::Connected(m) => ("connected", format!("{m} Click Done signing in.")),
        LoginOutcome::Failed(m) => ("failed", m),
    }
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

/// The device-code screen of a login in progress.
async fn chatgpt_login_page(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageQuery(q): PageQuery<LoginId>,
) -> Response {
    let s = match page_session(&state, &uri, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let id = q.id.unwrap_or_default();
    let Some(login) = login_of(&state, s.user, &id) else {
        return chatgpt_error(
            &state,
            &s,
            "that login is no longer in progress; connect the account again".into(),
        )
        .await;
    };
    waiting_page(&state, &s, &id, &login, None, StatusCode::OK).await
}

async fn waiting_page(
    state: &AdminState,
    s: &Session,
    id: &str,
    login: &ChatgptLogin,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let f = match frame(state, s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (login_state, status_text) = login_status(login);
    html(
        status,
        pages::chatgpt_waiting(
            &f.ctx,
            &f.csrf,
            &pages::DeviceLogin {
                id,
                account: &login.account,
                url: &login.url,
                code: &login.code,
                state: login_state,
                status: status_text,
            },
            error,
        ),
    )
}

async fn chatgpt_status(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageQuery(q): PageQuery<LoginId>,
) -> Response {
    let Ok(Some(s)) = session_of(&state, &uri, &headers).await else {
        return secured(
            (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "application/json")],
                json!({"state": "unknown", "message": "signed out; sign in again"}).to_string(),
            )
                .into_response(),
        );
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
    let (st, message) = login_status(&login);
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
    PageForm(fields): PageForm,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let id = field(&fields, "id");
    let Some(login) = login_of(&state, s.user, id) else {
        return chatgpt_error(
            &state,
            &s,
            "that login is no longer in progress; connect the account again".into(),
        )
        .await;
    };
    match outcome_of(&login) {
        LoginOutcome::Connected(m) => {
            end_login(&state, id);
            redirect_with(&state, &s, "/chatgpt", Some(Notice::Done(m)), None)
        }
        LoginOutcome::Failed(m) => {
            end_login(&state, id);
            chatgpt_error(&state, &s, m).await
        }
        LoginOutcome::Waiting => {
            waiting_page(
                &state,
                &s,
                id,
                &login,
                Some("ChatGPT has not confirmed the sign-in yet: open ChatGPT, sign in, enter the code shown here, then click Done signing in again."),
                StatusCode::CONFLICT,
            )
            .await
        }
    }
}

/// `Cancel` on the device-code screen: the login ends, nothing is
/// connected.
async fn chatgpt_cancel(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageForm(fields): PageForm,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let id = field(&fields, "id");
    let notice = match login_of(&state, s.user, id) {
        Some(login) => {
            end_login(&state, id);
            match outcome_of(&login) {
                LoginOutcome::Connected(m) => Notice::Done(format!(
                    "{m} It connected before the cancel arrived; disconnect it below if you did not mean to."
                )),
                _ => Notice::Done(format!(
                    "Cancelled the login of ChatGPT account {}; nothing was connected.",
                    login.account
                )),
            }
        }
        None => Notice::Done("That login had already ended.".into()),
    };
    redirect_with(&state, &s, "/chatgpt", Some(notice), None)
}

#[derive(serde::Deserialize)]
struct AccountQuery {
    account: Option<String>,
}

/// The integrations of the user that use ChatGPT account `account`.
fn users_of_account(list: &Value, account: &str) -> Vec<String> {
    list["integrations"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| {
                    i["providers"]["openai"]["source"] == "chatgpt"
                        && i["providers"]["openai"]["account"] == account
                })
                .filter_map(|i| i["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Confirming a disconnection, naming the integrations that use the
/// account.
async fn chatgpt_disconnect_page(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageQuery(q): PageQuery<AccountQuery>,
) -> Response {
    let s = match page_session(&state, &uri, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let account = q.account.unwrap_or_default();
    let f = match frame(&state, &s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !f.ctx.chatgpt_accounts.contains(&account) {
        return chatgpt_error(
            &state,
            &s,
            format!("you have no ChatGPT account named {}", shown(&account)),
        )
        .await;
    }
    let list = match list_json(&state, s.user).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let users = users_of_account(&list, &account);
    html(
        StatusCode::OK,
        pages::disconnect_dialog(&f.ctx, &f.csrf, &account, &users),
    )
}

/// `Verify` and `Disconnect` (confirmed).
async fn chatgpt_manage(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageForm(fields): PageForm,
) -> Response {
    let s = match post_session(&state, &uri, &headers, &fields).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match field(&fields, "do") {
        "verify" => {
            // Verifying calls ChatGPT for every account: capped as tests are.
            if !state.web.allow_test(s.user) {
                return chatgpt_render(
                    &state,
                    &s,
                    Some(Notice::Error(too_many_tests_message())),
                    None,
                    StatusCode::TOO_MANY_REQUESTS,
                )
                .await;
            }
            let args = words(&["integrations", "setup", "chatgpt", "--verify", "--json"]);
            match run(&state, s.user, args, None).await {
                Ok(a) => redirect_with(&state, &s, "/chatgpt", None, Some(a.json)),
                Err(e) => chatgpt_error(&state, &s, e.message).await,
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
            match run(&state, s.user, args, None).await {
                Ok(a) => redirect_with(
                    &state,
                    &s,
                    "/chatgpt",
                    Some(Notice::Done(a.text.trim().replace('\n', " "))),
                    None,
                ),
                Err(e) => chatgpt_error(&state, &s, e.message).await,
            }
        }
        _ => chatgpt_error(&state, &s, "unknown action".into()).await,
    }
}

// ------------------------------------------------------------------ usage

async fn usage_page(
    State(state): State<AdminState>,
    uri: Uri,
    headers: HeaderMap,
    PageQuery(q): PageQuery<usage::UsageQuery>,
) -> Response {
    let s = match page_session(&state, &uri, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = match frame(&state, &s).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match usage::report(&state, s.user, &q).await {
        Ok(report) => html(StatusCode::OK, pages::usage(&f.ctx, &f.csrf, &report)),
        Err(e) => html(e.status, pages::usage_refused(&f.ctx, &f.csrf, &e.message)),
    }
}
