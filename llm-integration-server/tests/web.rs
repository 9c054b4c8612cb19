//! The browser door at the request level: sign-in with a one-time link or
//! an access token, the session cookie's attributes and name, two session
//! cookies refused, CSRF and `Origin` (scheme, host and port) checks, ended
//! and expired sessions, another user's integration, the forms going
//! through the executor and answering 303 with a one-time message, key and
//! endpoint tests against the mock provider and their cap, ChatGPT logins
//! (cap, cancel, confirmed disconnect), the usage page, HTML error pages,
//! and a leak scan of every page for the stored keys.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, SystemTime};

use llm_integration_core::seams::WebTokenKind;
use llm_integration_core::{IntegrationKind, Owner, Source, UserId};
use llm_integration_mock::MockUpstream;
use llm_integration_server::admin::{self, AdminCommand, UsersCommand, VmAddArgs, VmsCommand};
use llm_integration_server::testing::{Dirs, Server};
use llm_integration_server::web::session;
use reqwest::StatusCode;

const KEY: &str = "sk-web-secret-0123456789ABCDwxyz";
const OTHER_KEY: &str = "sk-ant-secret-9876543210ZYXWvuts";
/// The command language's refusal of a key-shaped comment, in the page's
/// terms.
const COMMENT_REFUSED: &str = "Comment looks like it holds an API key or token";

/// A browser: a client that does not follow redirects, with a session cookie.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn link_secret(text: &str) -> String {
    let at = text.find("/login?link=").expect(text);
    text[at + "/login?link=".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Posts the sign-in form with `fields`; returns the status and Set-Cookie.
async fn post_login(
    s: &Server,
    fields: &[(&str, &str)],
    origin: &str,
) -> (StatusCode, String, String) {
    let r = client()
        .post(format!("{}/login", s.url))
        .header("origin", origin)
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, cookie, r.text().await.unwrap())
}

async fn sign_in_with_link(s: &Server, token: &str) -> Browser {
    let (status, text) = s.run_as(token, "login-link").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        text.contains(&format!("{}/login?link=lll_", s.url)),
        "{text}"
    );
    let link = link_secret(&text);
    // The link opens a page with a button; it is not used by opening it.
    let page = client()
        .get(format!("{}/login?link={link}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Sign in"));
    let (status, cookie, _) = post_login(s, &[("link", &link)], &s.url).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    browser(s, &cookie).await
}

async fn browser(s: &Server, set_cookie: &str) -> Browser {
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let mut b = Browser {
        http: client(),
        base: s.url.clone(),
        cookie,
        csrf: String::new(),
    };
    let (status, html) = b.get("/integrations").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    b.csrf = csrf_in(&html);
    b
}

impl Browser {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// Posts a form from this page's origin with the CSRF token. A 303 is
    /// followed as a browser does: the answer is the POST's status and the
    /// page it leads to.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let mut all: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        all.extend_from_slice(fields);
        self.post_raw(path, &all, Some(&self.base)).await
    }

    async fn post_raw(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (StatusCode, String) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(fields);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        let r = r.send().await.unwrap();
        let status = r.status();
        if status == StatusCode::SEE_OTHER {
            let to = r.headers()["location"].to_str().unwrap().to_owned();
            let (_, html) = self.get(&to).await;
            return (status, html);
        }
        (status, r.text().await.unwrap())
    }
}

async fn names(s: &Server, token: &str) -> Vec<String> {
    let (_, body) = s.run_as(token, "integrations list --json").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn start() -> (MockUpstream, Dirs, Server) {
    let upstream = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &upstream.url()).await;
    (upstream, dirs, s)
}

#[tokio::test]
async fn login_links_work_once_and_sessions_are_locked_down() {
    let (_upstream, dirs, s) = start().await;
    let (status, text) = s.run("login-link").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("works once, for 15 minutes"), "{text}");
    let link = link_secret(&text);
    let (status, cookie, _) = post_login(&s, &[("link", &link)], &s.url).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(cookie.starts_with("lli_session=lls_"), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    // Used once: the second time it is refused, and says why.
    let (status, _, html) = post_login(&s, &[("link", &link)], &s.url).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("used already, has expired"), "{html}");

    // An access token pasted signs in too; over HTTPS the cookie is Secure.
    let r = client()
        .post(format!("{}/login", s.url))
        .header("origin", s.url.replace("http://", "https://"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", s.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let secure = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(secure.starts_with("__Host-lli_session=lls_"), "{secure}");
    assert!(
        secure.contains("; Secure") && secure.contains("Path=/;"),
        "{secure}"
    );
    assert!(!secure.to_ascii_lowercase().contains("domain"), "{secure}");
    let (status, _, html) = post_login(&s, &[("token", "lli_not-a-token")], &s.url).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("access token is not valid"), "{html}");
    // A sign-in from another site is refused.
    let (status, cookie, _) = post_login(&s, &[("token", &s.token)], "http://evil.example").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(cookie.is_empty());

    // An expired link and an expired session are refused.
    let expired = session::new_secret("lll_").unwrap();
    let past = SystemTime::now() - Duration::from_secs(1);
    let owner = UserId(1);
    s.store
        .add_web_token(
            WebTokenKind::LoginLink,
            owner,
            &session::secret_hash(&expired),
            past,
        )
        .await
        .unwrap();
    let (status, _, _) = post_login(&s, &[("link", &expired)], &s.url).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let old = session::new_secret("lls_").unwrap();
    s.store
        .add_web_token(
            WebTokenKind::Session,
            owner,
            &session::secret_hash(&old),
            past,
        )
        .await
        .unwrap();
    let stale = Browser {
        http: client(),
        base: s.url.clone(),
        cookie: format!("lli_session={}", old.as_str()),
        csrf: session::csrf_token(&old),
    };
    let (status, _) = stale.get("/integrations").await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "an expired session goes to sign-in"
    );
    let (status, html) = stale
        .post(
            "/integrations/add-reflection",
            &[("name", "late"), ("attach", "none")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{html}");
    assert!(html.contains("your session has ended"), "{html}");
    assert!(!names(&s, &s.token).await.contains(&"late".to_owned()));

    // The operator's command prints a link that works.
    let text = admin::run(
        s.store.as_ref(),
        AdminCommand::Users(UsersCommand::LoginLink {
            email: "owner@localhost".into(),
            url: s.url.clone(),
        }),
        s.default_allocation,
    )
    .await;
    let text = match text {
        Ok(t) => t,
        // The bootstrap email differs: find it.
        Err(e) => panic!("{e}"),
    };
    let (status, _, _) = post_login(&s, &[("link", &link_secret(&text))], &s.url).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // Only hashes are stored: no secret is in the database files.
    s.stop().await;
    let mut db = Vec::new();
    for entry in std::fs::read_dir(dirs.data.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            db.extend(std::fs::read(path).unwrap());
        }
    }
    let db = String::from_utf8_lossy(&db);
    let session_secret = cookie_secret(&secure);
    assert!(!db.contains(&session_secret));
    assert!(!db.contains(&link));
}

fn cookie_secret(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("__Host-")
        .trim_start_matches("lli_session=")
        .to_owned()
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_this_origin_and_a_live_session() {
    let (_upstream, _dirs, s) = start().await;
    csrf_origin_and_sessions(&s).await;
}

/// The same on PostgreSQL: the web page's secrets live in either backend.
#[tokio::test]
async fn sessions_on_postgresql() {
    let upstream = MockUpstream::start().await.unwrap();
    let dirs = Dirs::postgres().await;
    let s = Server::start(&dirs, &upstream.url()).await;
    csrf_origin_and_sessions(&s).await;
    // A login link works once there too, and an expired one not at all.
    let (_, text) = s.run("login-link").await;
    let link = link_secret(&text);
    assert_eq!(
        post_login(&s, &[("link", &link)], &s.url).await.0,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        post_login(&s, &[("link", &link)], &s.url).await.0,
        StatusCode::UNAUTHORIZED
    );
}

async fn csrf_origin_and_sessions(s: &Server) {
    let b = sign_in_with_link(s, &s.token).await;
    let add = [("name", "refl2"), ("attach", "none"), ("fields", "all")];
    // No CSRF token.
    let (status, html) = b
        .post_raw("/integrations/add-reflection", &add, Some(&s.url))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
    assert!(
        html.contains("security token is missing or stale"),
        "{html}"
    );
    // A wrong one.
    let mut wrong = vec![("csrf", "0000")];
    wrong.extend_from_slice(&add);
    let (status, _) = b
        .post_raw("/integrations/add-reflection", &wrong, Some(&s.url))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another origin, with the right token.
    let mut good = vec![("csrf", b.csrf.as_str())];
    good.extend_from_slice(&add);
    let (status, html) = b
        .post_raw(
            "/integrations/add-reflection",
            &good,
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("sent from another site"), "{html}");
    // No Origin and no Referer.
    let (status, _) = b
        .post_raw("/integrations/add-reflection", &good, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The key test is guarded too.
    let (status, _) = b
        .post_raw(
            "/integrations/test-key",
            &[("provider", "openai"), ("key", KEY)],
            Some(&s.url),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!names(s, &s.token).await.contains(&"refl2".to_owned()));
    // Done right, it works.
    let (status, html) = b.post("/integrations/add-reflection", &add).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    assert!(
        html.contains("added reflection integration refl2"),
        "{html}"
    );
    assert!(names(s, &s.token).await.contains(&"refl2".to_owned()));
    // Its fields and comment are edited in its own dialog.
    let (status, html) = b.get("/integrations/edit?name=refl2").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Edit refl2"), "{html}");
    let (status, html) = b
        .post(
            "/integrations/save-reflection",
            &[("original", "refl2"), ("fields", "bogus"), ("comment", "")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("id=\"fields-error\""), "{html}");
    let (status, html) = b
        .post(
            "/integrations/save-reflection",
            &[
                ("original", "refl2"),
                ("fields", "email,tags"),
                ("comment", "two fields"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let shown = s.json("integrations show refl2").await;
    assert_eq!(shown["comment"], "two fields");
    assert_ne!(shown["fields"], "all", "{shown}");

    // Signed out: the old cookie and token no longer work.
    let (status, html) = b.post("/logout", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(html.contains("You are signed out"));
    let (status, _) = b.get("/integrations").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, html) = b
        .post(
            "/integrations/action",
            &[("do", "remove"), ("name", "refl2")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{html}");
    assert!(names(s, &s.token).await.contains(&"refl2".to_owned()));
}

#[tokio::test]
async fn another_users_integration_is_out_of_reach() {
    let (_upstream, _dirs, s) = start().await;
    let other = s.user("other@example.com").await;
    let (status, body) = s
        .run_as(&other, "integrations add reflection --name theirs")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let b = sign_in_with_link(&s, &s.token).await;
    let (_, html) = b.get("/integrations").await;
    assert!(
        !html.contains("theirs"),
        "another user's integration is listed"
    );
    for fields in [
        vec![("do", "remove"), ("name", "theirs")],
        vec![("do", "rename"), ("name", "theirs"), ("new_name", "mine")],
        vec![("do", "detach"), ("name", "theirs"), ("spec", "auto:all")],
    ] {
        let (status, html) = b.post("/integrations/action", &fields).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
        assert!(
            html.contains("you have no integration named theirs"),
            "{html}"
        );
    }
    let (status, html) = b.get("/integrations/edit?name=theirs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        html.contains("you have no integration named theirs"),
        "{html}"
    );
    let (status, html) = b
        .post(
            "/integrations/save",
            &[("original", "theirs"), ("openai", "disabled")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
    // Said in the executor's words, as the other actions say it.
    assert!(
        html.contains("you have no integration named theirs"),
        "{html}"
    );
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(names(&s, &other).await.contains(&"theirs".to_owned()));
}

#[tokio::test]
async fn the_llm_dialog_adds_tests_edits_and_never_shows_a_key() {
    let (upstream, _dirs, s) = start().await;
    s.ok("tag local llm").await;
    let b = sign_in_with_link(&s, &s.token).await;

    // Test: a good key and one the provider refuses.
    let (status, body) = b
        .post(
            "/integrations/test-key",
            &[("provider", "openai"), ("key", KEY)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("openai accepted the key"),
        "{v}"
    );
    let last = upstream.last().unwrap();
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let (_, body) = b
        .post(
            "/integrations/test-key",
            &[
                ("provider", "openai"),
                ("key", "sk-mock-refused-000000000000"),
            ],
        )
        .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["message"].as_str().unwrap().contains("401"), "{v}");
    assert!(!body.contains("sk-mock-refused"), "{body}");
    let (_, body) = b
        .post(
            "/integrations/test-key",
            &[("provider", "openai"), ("key", "two words")],
        )
        .await;
    assert!(
        body.contains("contains spaces or control characters"),
        "{body}"
    );

    // A bad name: the executor's words beside the name field; the key is not sent back.
    let bad = [
        ("name", "Not A Name"),
        ("openai", "byok"),
        ("openai_key", KEY),
        ("attach", "tag"),
        ("attach_tag", "llm"),
    ];
    let (status, html) = b.post("/integrations/add-llm", &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("id=\"name-error\""), "{html}");
    assert!(!html.contains(KEY));
    // A taken name: a conflict, beside the name.
    let (status, html) = b
        .post(
            "/integrations/add-llm",
            &[("name", "llm"), ("attach", "none")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        html.contains("an integration named llm already exists"),
        "{html}"
    );
    // byok without a key: beside the OpenAI field.
    let (status, html) = b
        .post(
            "/integrations/add-llm",
            &[("name", "nokey"), ("openai", "byok")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("id=\"openai-error\""), "{html}");

    // Added: two keys (read as standard input), attached to a tag.
    let add = [
        ("name", "byok"),
        ("anthropic", "byok"),
        ("anthropic_key", OTHER_KEY),
        ("openai", "byok"),
        ("openai_key", KEY),
        ("fireworks", "disabled"),
        ("attach", "tag"),
        ("attach_tag", "llm"),
        ("comment", "from the page"),
        ("translate", "off"),
    ];
    let (status, html) = b.post("/integrations/add-llm", &add).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    assert!(html.contains("added llm integration byok"), "{html}");
    assert!(html.contains("API Key, set (…wxyz)"), "{html}");
    let snapshot = s.live.snapshot();
    let stored = snapshot
        .integration_named(Owner::User(UserId(1)), "byok")
        .unwrap();
    let IntegrationKind::Llm(settings) = &stored.kind else {
        panic!()
    };
    assert!(matches!(settings.openai, Source::Byok { .. }));
    assert!(matches!(settings.anthropic, Source::Byok { .. }));
    assert!(matches!(settings.fireworks, Source::Disabled));
    assert_eq!(stored.attachments[0].to_string(), "tag:llm");
    assert_eq!(stored.comment, "from the page");
    assert_eq!(s.json("integrations show byok").await["translate"], false);
    let (_, html) = b.get("/integrations/edit?name=byok").await;
    let off = html
        .split("<input")
        .find(|i| i.contains("id=\"translate-off\""))
        .unwrap_or_default();
    assert!(
        off.contains("checked"),
        "the edit dialog shows it off: {off}"
    );

    // Edited: the key kept when the field is left empty.
    let (status, html) = b
        .post(
            "/integrations/save",
            &[
                ("original", "byok"),
                ("anthropic", "gateway"),
                ("openai", "byok"),
                ("openai_key", ""),
                ("fireworks", "gateway"),
                ("comment", "edited"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let shown = s.json("integrations show byok").await;
    assert_eq!(shown["providers"]["openai"]["key"], "set (…wxyz)");
    assert_eq!(shown["providers"]["anthropic"]["source"], "gateway");
    assert_eq!(shown["providers"]["fireworks"]["source"], "gateway");
    assert_eq!(shown["comment"], "edited");
    // Translation is on unless the form says off.
    assert_eq!(shown["translate"], true);

    // The stored keys tested from the list.
    let (_, html) = b
        .post("/integrations/action", &[("do", "test"), ("name", "byok")])
        .await;
    assert!(html.contains("byok: anthropic: skipped"), "{html}");
    assert!(html.contains("openai: ok"), "{html}");

    // Rename, attach, detach, remove.
    let (_, html) = b
        .post(
            "/integrations/action",
            &[("do", "rename"), ("name", "byok"), ("new_name", "mine")],
        )
        .await;
    assert!(html.contains("renamed byok to mine"), "{html}");
    let (_, html) = b
        .post(
            "/integrations/action",
            &[
                ("do", "attach"),
                ("name", "mine"),
                ("attach", "vm"),
                ("attach_vm", "local"),
            ],
        )
        .await;
    assert!(html.contains("attached mine to vm:local"), "{html}");
    let (_, html) = b
        .post(
            "/integrations/action",
            &[
                ("do", "attach"),
                ("name", "mine"),
                ("attach", "vm"),
                ("attach_vm", "nope"),
            ],
        )
        .await;
    assert!(html.contains("you have no VM named nope"), "{html}");
    let (_, html) = b
        .post(
            "/integrations/action",
            &[("do", "detach"), ("name", "mine"), ("spec", "tag:llm")],
        )
        .await;
    assert!(html.contains("detached mine from tag:llm"), "{html}");
    assert_eq!(
        s.json("integrations show mine").await["attachments"],
        serde_json::json!(["vm:local"])
    );

    // Leak scan: every page, with the keys stored.
    let pages = [
        "/login?link=lll_example",
        "/integrations",
        "/integrations/new/llm",
        "/integrations/new/reflection",
        "/integrations/edit?name=mine",
        "/integrations/remove?name=mine",
        "/chatgpt",
        "/usage",
        "/usage?by=model&days=7",
        "/assets/app.js",
        "/assets/app.css",
    ];
    for page in pages {
        let r = b
            .http
            .get(format!("{}{page}", s.url))
            .header("cookie", &b.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{page}");
        let headers = format!("{:?}", r.headers());
        let body = r.text().await.unwrap();
        for secret in [KEY, OTHER_KEY, &KEY[..20], &s.token] {
            assert!(!body.contains(secret), "{page} shows a secret");
            assert!(!headers.contains(secret), "{page}'s headers show a secret");
        }
    }
    let (_, html) = b.get("/integrations/remove?name=mine").await;
    assert!(html.contains("Remove mine?"), "{html}");
    let (_, html) = b
        .post(
            "/integrations/action",
            &[("do", "remove"), ("name", "mine")],
        )
        .await;
    assert!(html.contains("removed integration mine"), "{html}");
    assert!(!names(&s, &s.token).await.contains(&"mine".to_owned()));
}

#[tokio::test]
async fn team_integrations_from_the_page() {
    let (_upstream, _dirs, s) = start().await;
    s.team("core", &["owner@localhost"]).await;
    let b = sign_in_with_link(&s, &s.token).await;
    let (_, html) = b.get("/integrations/new/llm").await;
    assert!(
        html.contains("Team core"),
        "the dialog offers the user's teams"
    );
    // A team integration cannot use a ChatGPT subscription: said beside OpenAI.
    let (status, html) = b
        .post(
            "/integrations/add-llm",
            &[
                ("name", "shared"),
                ("owner", "core"),
                ("openai", "chatgpt"),
                ("openai_account", "work"),
                ("attach", "none"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("id=\"openai-error\""), "{html}");
    assert!(html.contains("cannot use a ChatGPT subscription"), "{html}");
    let (status, html) = b
        .post(
            "/integrations/add-llm",
            &[
                ("name", "shared"),
                ("owner", "core"),
                ("openai", "disabled"),
                ("attach", "auto"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    assert!(html.contains("shared.team.exe.xyz"), "{html}");
    assert!(html.contains("team core"), "{html}");
    let (_, html) = b
        .post(
            "/integrations/action",
            &[
                ("do", "rename"),
                ("name", "shared"),
                ("team", "core"),
                ("new_name", "common"),
            ],
        )
        .await;
    assert!(html.contains("renamed shared to common"), "{html}");
    let (status, html) = b.get("/integrations/edit?name=common&team=core").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("common.team.exe.xyz"), "{html}");
    let shown = s.json("integrations show common --team core").await;
    assert_eq!(shown["providers"]["openai"]["source"], "disabled");
    // Not a member: refused in the executor's words.
    let (status, html) = b
        .post(
            "/integrations/add-llm",
            &[("name", "x"), ("owner", "elsewhere"), ("attach", "none")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
    assert!(
        html.contains("you are not a member of a team named elsewhere"),
        "{html}"
    );
    assert!(html.contains("id=\"owner-error\""), "{html}");
}

#[tokio::test]
async fn hostile_input_is_escaped_or_refused() {
    let (_upstream, _dirs, s) = start().await;
    s.ok("integrations edit llm --comment '<script>alert(1)</script>\"><img src=x onerror=alert(2)>'")
        .await;
    let b = sign_in_with_link(&s, &s.token).await;
    for page in ["/integrations", "/integrations/edit?name=llm"] {
        let (status, html) = b.get(page).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!html.contains("<script>alert"), "{page}: {html}");
        assert!(!html.contains("<img src=x"), "{page}: {html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}: {html}"
        );
    }
    let (_, html) = b.get("/integrations/edit?name=%3Cb%3Ebold%3C%2Fb%3E").await;
    assert!(!html.contains("<b>bold</b>"), "{html}");
    // A name that is not a name: the CLI's words, nothing echoed raw.
    let (status, html) = b
        .post(
            "/integrations/add-llm",
            &[("name", "<i>x</i>"), ("attach", "none")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!html.contains("<i>x</i>"), "{html}");
    // Malformed bodies and queries are refused without a panic.
    let r = b
        .http
        .post(format!("{}/integrations/add-llm", s.url))
        .header("cookie", &b.cookie)
        .header("origin", &s.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'=', b'%', b'z'])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = b
        .http
        .post(format!("{}/integrations/add-llm", s.url))
        .header("cookie", &b.cookie)
        .header("origin", &s.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    for (query, says) in [
        (
            "days=many",
            "days must be a whole number of days from 1 to 366",
        ),
        (
            "days=0",
            "days must be a whole number of days from 1 to 366",
        ),
        (
            "days=367",
            "days must be a whole number of days from 1 to 366",
        ),
        ("by=nonsense", "by must be integration, model or vm"),
    ] {
        let (status, html) = b.get(&format!("/usage?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(html.contains(says), "{query}: {html}");
    }
    // A status poll for a login that is not theirs.
    let (status, _) = b.get("/chatgpt/status?id=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, html) = b.post("/chatgpt/done", &[("id", "nope")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("no longer in progress"), "{html}");
    // An unknown cookie is no session.
    let stranger = Browser {
        http: client(),
        base: s.url.clone(),
        cookie: "lli_session=lls_forged".into(),
        csrf: String::new(),
    };
    let (status, _) = stranger.get("/usage").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_denied_chatgpt_login_says_so() {
    use llm_integration_mock::chatgpt::{ChatGptBehaviour, MockChatGpt};
    use llm_integration_server::chatgpt::ChatGptEndpoints;
    let chatgpt = MockChatGpt::start(ChatGptBehaviour {
        deny: true,
        ..ChatGptBehaviour::default()
    })
    .await
    .unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let endpoints = ChatGptEndpoints {
        auth: chatgpt.auth_url(),
        backend: chatgpt.backend_url(),
    };
    let s = Server::start_with(&dirs, &upstream.url(), move |c| c.chatgpt = endpoints).await;
    let b = sign_in_with_link(&s, &s.token).await;
    let (status, html) = b
        .post("/chatgpt/connect", &[("account", "Not Valid")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("Not Valid"),
        "the CLI's words about the name: {html}"
    );
    let (status, html) = b.post("/chatgpt/connect", &[("account", "work")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    assert!(html.contains("MOCK-CODE"), "{html}");
    let id = {
        let at = html.find("data-login=\"").unwrap() + "data-login=\"".len();
        html[at..at + html[at..].find('"').unwrap()].to_owned()
    };
    // Another user cannot see or finish it.
    let other = s.user("other@example.com").await;
    let o = sign_in_with_link(&s, &other).await;
    let (status, _) = o.get(&format!("/chatgpt/status?id={id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, html) = o.post("/chatgpt/done", &[("id", &id)]).await;
    assert!(html.contains("no longer in progress"), "{status}: {html}");
    // The page polls until the login ends; so does this test, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = b.get(&format!("/chatgpt/status?id={id}")).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["state"] == "failed" {
            assert!(v["message"].as_str().unwrap().contains("denied"), "{v}");
            break;
        }
        assert_eq!(v["state"], "waiting", "{v}");
        assert!(
            std::time::Instant::now() < deadline,
            "the login never ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, html) = b.post("/chatgpt/done", &[("id", &id)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("the authorization was denied in ChatGPT"),
        "{html}"
    );
    assert!(html.contains("No ChatGPT accounts connected."), "{html}");
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// A GET with `cookie`, over HTTPS (as a front proxy says) or not.
async fn get_with(s: &Server, path: &str, cookie: &str, https: bool) -> reqwest::Response {
    let mut r = client()
        .get(format!("{}{path}", s.url))
        .header("cookie", cookie);
    if https {
        r = r.header("x-forwarded-proto", "https");
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn session_cookies_are_named_for_the_scheme_and_never_two() {
    let (_upstream, _dirs, s) = start().await;
    // Over HTTPS: __Host-, Secure, Path=/, no Domain.
    let r = client()
        .post(format!("{}/login", s.url))
        .header("origin", s.url.replace("http://", "https://"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", s.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = set_cookies(&r);
    let session = set
        .iter()
        .find(|c| c.starts_with("__Host-lli_session=lls_"))
        .unwrap_or_else(|| panic!("{set:?}"));
    for attribute in ["; Path=/;", "; Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(session.contains(attribute), "{attribute}: {session}");
    }
    assert!(
        !session.to_ascii_lowercase().contains("domain"),
        "{session}"
    );
    let pair = session.split(';').next().unwrap().to_owned();
    assert_eq!(
        get_with(&s, "/integrations", &pair, true).await.status(),
        StatusCode::OK
    );
    // The prefixed cookie is no session over plain HTTP, nor the plain name over HTTPS.
    assert_eq!(
        get_with(&s, "/integrations", &pair, false).await.status(),
        StatusCode::SEE_OTHER
    );
    let plain = pair.trim_start_matches("__Host-").to_owned();
    assert_eq!(
        get_with(&s, "/integrations", &plain, true).await.status(),
        StatusCode::SEE_OTHER
    );

    // Over HTTP, a second session cookie (set by another site on this
    // host, with a narrower path) signs the browser out, whichever comes first.
    let b = sign_in_with_link(&s, &s.token).await;
    for cookie in [
        format!("{}; lli_session=lls_planted", b.cookie),
        format!("lli_session=lls_planted; {}", b.cookie),
        format!("{}; __Host-lli_session=lls_planted", b.cookie),
    ] {
        let r = get_with(&s, "/integrations/new/llm", &cookie, false).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{cookie}");
        let set = set_cookies(&r);
        for path in [
            "/",
            "/integrations",
            "/integrations/new",
            "/integrations/new/llm",
        ] {
            let clear = format!("lli_session=; Path={path};");
            assert!(
                set.iter()
                    .any(|c| c.starts_with(&clear) && c.contains("Max-Age=0")),
                "{clear} missing: {set:?}"
            );
        }
        assert!(r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        let html = r.text().await.unwrap();
        assert!(html.contains("sent two session cookies"), "{html}");
        assert!(!html.contains("owner@localhost"), "{html}");
    }
    // Two Cookie headers count too; the form is not acted on.
    let r = client()
        .post(format!("{}/integrations/add-reflection", s.url))
        .header("cookie", &b.cookie)
        .header("cookie", "lli_session=lls_planted")
        .header("origin", &s.url)
        .form(&[
            ("csrf", b.csrf.as_str()),
            ("name", "twice"),
            ("attach", "none"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(!names(&s, &s.token).await.contains(&"twice".to_owned()));
    // The sign-in page clears them too, and signing in clears the page's
    // folders so a planted cookie there cannot sign the browser out again.
    let r = get_with(&s, "/login", &format!("{}; lli_session=x", b.cookie), false).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(set_cookies(&r)
        .iter()
        .any(|c| c.starts_with("lli_session=; Path=/;")));
    let (_, cookie, _) = post_login(&s, &[("token", &s.token)], &s.url).await;
    assert!(cookie.starts_with("lli_session=lls_"), "{cookie}");
    let r = client()
        .post(format!("{}/login", s.url))
        .header("origin", &s.url)
        .form(&[("token", s.token.as_str())])
        .send()
        .await
        .unwrap();
    let set = set_cookies(&r);
    assert!(set[0].starts_with("lli_session=lls_"), "{set:?}");
    assert!(
        set.iter()
            .any(|c| c.starts_with("lli_session=; Path=/integrations;")),
        "{set:?}"
    );
    assert!(
        !set.iter().any(|c| c.starts_with("lli_session=; Path=/;")),
        "{set:?}"
    );
}

#[tokio::test]
async fn forms_must_come_from_this_scheme_host_and_port() {
    let (_upstream, _dirs, s) = start().await;
    let b = sign_in_with_link(&s, &s.token).await;
    let port = s.url.rsplit(':').next().unwrap();
    let add = [
        ("csrf", b.csrf.as_str()),
        ("name", "o1"),
        ("attach", "none"),
    ];
    for origin in [
        s.url.replace("http://", "https://"),
        format!("http://127.0.0.1:{}", port.parse::<u32>().unwrap() + 1),
        "http://127.0.0.1".to_owned(),
        "null".to_owned(),
    ] {
        let (status, html) = b
            .post_raw("/integrations/add-reflection", &add, Some(&origin))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}");
        assert!(html.contains("scheme, host and port"), "{html}");
        if origin.starts_with("https://") {
            assert!(
                html.contains("must send X-Forwarded-Proto: https"),
                "{html}"
            );
        }
    }
    // Behind a TLS proxy the https origin is the page's.
    let r = client()
        .post(format!("{}/integrations/add-reflection", s.url))
        .header("cookie", &b.cookie)
        .header("origin", &s.url)
        .header("x-forwarded-proto", "https")
        .form(&add)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "http origin behind https"
    );
    assert!(!names(&s, &s.token).await.contains(&"o1".to_owned()));
    let (status, _) = b
        .post_raw("/integrations/add-reflection", &add, Some(&s.url))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn changes_redirect_and_their_message_shows_once() {
    let (_upstream, _dirs, s) = start().await;
    let b = sign_in_with_link(&s, &s.token).await;
    let r = b
        .http
        .post(format!("{}/integrations/add-reflection", s.url))
        .header("cookie", &b.cookie)
        .header("origin", &s.url)
        .form(&[
            ("csrf", b.csrf.as_str()),
            ("name", "once"),
            ("attach", "none"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/integrations");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.text().await.unwrap().is_empty());
    let (status, html) = b.get("/integrations").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("role=\"status\">added reflection integration once"),
        "{html}"
    );
    // Reloading shows the list without the message (and sends nothing).
    let (_, html) = b.get("/integrations").await;
    assert!(
        !html.contains("added reflection integration once"),
        "{html}"
    );
    // Another session of the same user does not see it.
    let (_, html) = b
        .post(
            "/integrations/action",
            &[("do", "remove"), ("name", "once")],
        )
        .await;
    assert!(html.contains("removed integration once"), "{html}");
    let other = sign_in_with_link(&s, &s.token).await;
    let (_, html) = b
        .post(
            "/integrations/action",
            &[
                ("do", "rename"),
                ("name", "reflection"),
                ("new_name", "mirror"),
            ],
        )
        .await;
    assert!(html.contains("renamed reflection to mirror"), "{html}");
    let (_, html) = other.get("/integrations").await;
    assert!(!html.contains("renamed reflection"), "{html}");
    // Signing out redirects to a page that says so.
    let (status, html) = b.post("/logout", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(html.contains("You are signed out"), "{html}");
}

#[tokio::test]
async fn careless_input_is_caught_and_keys_are_never_echoed() {
    let (_upstream, _dirs, s) = start().await;
    let b = sign_in_with_link(&s, &s.token).await;
    // The new dialog suggests a name not yet used.
    let (_, html) = b.get("/integrations/new/llm").await;
    assert!(
        html.contains("id=\"name\" name=\"name\" value=\"llm-2\""),
        "{html}"
    );
    // Removal: the focus starts on Cancel.
    let (_, html) = b.get("/integrations/remove?name=llm").await;
    assert!(
        html.contains("<a class=\"button\" href=\"/integrations\" autofocus>Cancel</a>"),
        "{html}"
    );
    assert!(!html.contains("type=\"submit\" autofocus"), "{html}");
    // A key typed while the source is not API Key is an error, beside the
    // provider, and the key is not sent back.
    for source in ["gateway", "disabled", "custom"] {
        let (status, html) = b
            .post(
                "/integrations/add-llm",
                &[
                    ("name", "careless"),
                    ("openai", source),
                    ("openai_key", KEY),
                    ("openai_url", "https://models.example.com/v1"),
                    ("openai_auth", "none"),
                    ("attach", "none"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{source}");
        assert!(html.contains("id=\"openai-error\""), "{html}");
        assert!(html.contains("an API key was typed for OpenAI"), "{html}");
        assert!(!html.contains(KEY), "{html}");
    }
    assert!(!names(&s, &s.token).await.contains(&"careless".to_owned()));
    // A comment shaped like a key is refused (VMs read comments).
    let shaped = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123";
    for path in ["/integrations/add-llm", "/integrations/add-reflection"] {
        let (status, html) = b
            .post(
                path,
                &[
                    ("name", "commented"),
                    ("comment", shaped),
                    ("attach", "none"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(html.contains("id=\"comment-error\""), "{html}");
        assert!(html.contains(COMMENT_REFUSED), "{html}");
        assert!(!html.contains("abcdefghijklmnop"), "{html}");
    }
    let (status, html) = b
        .post(
            "/integrations/save",
            &[("original", "llm"), ("comment", &format!("mine: {shaped}"))],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("id=\"comment-error\""), "{html}");
    assert!(html.contains(COMMENT_REFUSED), "{html}");
    let (status, html) = b
        .post(
            "/integrations/save-reflection",
            &[
                ("original", "reflection"),
                ("fields", "all"),
                ("comment", shaped),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("id=\"comment-error\""), "{html}");
    assert!(html.contains(COMMENT_REFUSED), "{html}");
    assert_eq!(s.json("integrations show llm").await["comment"], "");
    // The same refusal as the command line's, where the flag is named.
    let (status, text) = s
        .run(&format!("integrations edit llm --comment 'mine: {shaped}'"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains("--comment looks like it holds an API key or token"),
        "{text}"
    );
    // A key-shaped tag is not echoed anywhere in the message; an ordinary
    // long name is.
    let (status, html) = b
        .post(
            "/integrations/add-llm",
            &[
                ("name", "tagged"),
                ("attach", "tag"),
                ("attach_tag", "sk-ant-api03-SecretKeyValue0123456789"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!html.contains("SecretKeyValue"), "{html}");
    assert!(html.contains("[REDACTED]"), "{html}");
    let long = "an-ordinary-but-rather-long-integration-name-";
    let (_, html) = b
        .post(
            "/integrations/add-llm",
            &[("name", long), ("attach", "none")],
        )
        .await;
    assert!(html.contains(long), "{html}");
    assert!(!html.contains("[REDACTED]"), "{html}");
    // Saving an edit of an integration that is gone says so.
    s.ok("integrations add reflection --name gone").await;
    s.ok("integrations remove gone").await;
    let (status, html) = b
        .post(
            "/integrations/save-reflection",
            &[("original", "gone"), ("fields", "all"), ("comment", "")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        html.contains("you have no integration named gone"),
        "{html}"
    );
}

#[tokio::test]
async fn malformed_requests_get_the_pages_error_page_and_headers() {
    let (_upstream, _dirs, s) = start().await;
    let b = sign_in_with_link(&s, &s.token).await;
    for r in [
        b.http
            .get(format!("{}/integrations/edit?name=a&name=b", s.url))
            .header("cookie", &b.cookie),
        b.http
            .post(format!("{}/integrations/add-llm", s.url))
            .header("cookie", &b.cookie)
            .header("origin", &s.url)
            .header("content-type", "text/plain")
            .body("name=x"),
    ] {
        let r = r.send().await.unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        let html = r.text().await.unwrap();
        assert!(html.contains("use the page's links and forms"), "{html}");
    }
    for path in ["/favicon.ico", "/assets/icon.svg"] {
        let r = client()
            .get(format!("{}{path}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], "image/svg+xml");
        assert!(r.text().await.unwrap().starts_with("<svg"));
    }
    let (_, html) = b.get("/integrations").await;
    assert!(
        html.contains("rel=\"icon\" href=\"/assets/icon.svg\""),
        "{html}"
    );
}

#[tokio::test]
async fn key_tests_are_capped_per_user() {
    let (_upstream, _dirs, s) = start().await;
    let b = sign_in_with_link(&s, &s.token).await;
    for _ in 0..llm_integration_server::web::MAX_TESTS_PER_WINDOW {
        let (status, body) = b
            .post(
                "/integrations/test-key",
                &[("provider", "openai"), ("key", "two words")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for path in ["/integrations/test-key", "/integrations/test-endpoint"] {
        let (status, body) = b
            .post(
                path,
                &[
                    ("provider", "openai"),
                    ("key", "two words"),
                    ("url", "https://models.example.com/v1"),
                    ("auth", "none"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ok"], false);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("too many tests: at most 10 a minute"),
            "{v}"
        );
    }
    // Testing an integration's stored keys from the list counts too.
    s.ok("integrations edit llm --openai=byok --openai-key=sk-mock-stored-0123456789abcdef")
        .await;
    let (status, html) = b
        .post("/integrations/action", &[("do", "test"), ("name", "llm")])
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{html}");
    assert!(
        html.contains("too many tests: at most 10 a minute"),
        "{html}"
    );
    assert!(!html.contains("0123456789abcdef"), "{html}");
    // So does verifying the ChatGPT accounts.
    let (status, html) = b.post("/chatgpt/manage", &[("do", "verify")]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{html}");
    assert!(
        html.contains("too many tests: at most 10 a minute"),
        "{html}"
    );
    // Another user is not held back.
    let other = s.user("other@example.com").await;
    let o = sign_in_with_link(&s, &other).await;
    let (status, _) = o
        .post(
            "/integrations/test-key",
            &[("provider", "openai"), ("key", "two words")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

fn login_id(html: &str) -> String {
    let at = html.find("data-login=\"").expect(html) + "data-login=\"".len();
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

async fn accounts(s: &Server) -> Vec<String> {
    s.json("integrations setup chatgpt --list").await["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn chatgpt_logins_are_capped_cancelled_and_disconnects_confirmed() {
    use llm_integration_mock::chatgpt::{ChatGptBehaviour, MockChatGpt};
    use llm_integration_server::chatgpt::ChatGptEndpoints;
    // ChatGPT approves nothing until told to.
    let chatgpt = MockChatGpt::start(ChatGptBehaviour {
        pending_polls: u64::MAX / 2,
        ..ChatGptBehaviour::default()
    })
    .await
    .unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let endpoints = ChatGptEndpoints {
        auth: chatgpt.auth_url(),
        backend: chatgpt.backend_url(),
    };
    let s = Server::start_with(&dirs, &upstream.url(), move |c| c.chatgpt = endpoints).await;
    let b = sign_in_with_link(&s, &s.token).await;
    let mut ids = Vec::new();
    for account in ["a1", "a2", "a3"] {
        let (status, html) = b.post("/chatgpt/connect", &[("account", account)]).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        assert!(html.contains("MOCK-CODE"), "{html}");
        ids.push(login_id(&html));
    }
    // Done before ChatGPT confirmed: refused, with the status still
    // waiting (the script removes the refusal once the status moves on).
    let (status, html) = b.post("/chatgpt/done", &[("id", &ids[0])]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{html}");
    assert!(
        html.contains("<p class=\"notice error\" id=\"login-error\" role=\"alert\">ChatGPT has not confirmed the sign-in yet"),
        "{html}"
    );
    assert!(
        html.contains("<p class=\"waiting\" id=\"login-status\""),
        "{html}"
    );
    let (_, script) = b.get("/assets/app.js").await;
    assert!(
        script.contains("document.getElementById(\"login-error\")"),
        "the script knows the refusal's id"
    );
    // The screen is a page of its own: reloading it starts nothing.
    let (status, html) = b.get(&format!("/chatgpt/login?id={}", ids[0])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Connect ChatGPT account a1"), "{html}");
    let (status, html) = b.post("/chatgpt/connect", &[("account", "a4")]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{html}");
    assert!(
        html.contains("3 ChatGPT logins are already waiting for you (at most 3)"),
        "{html}"
    );
    // Cancel ends a login: it is gone, and another may start.
    for id in &ids {
        let (status, html) = b.post("/chatgpt/cancel", &[("id", id)]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(html.contains("nothing was connected"), "{html}");
        let (status, _) = b.get(&format!("/chatgpt/status?id={id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // Now ChatGPT approves: a new login connects, the cancelled ones do not.
    chatgpt.set(|c| c.pending_polls = 0);
    let (status, html) = b.post("/chatgpt/connect", &[("account", "kept")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let id = login_id(&html);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = b.get(&format!("/chatgpt/status?id={id}")).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["state"] == "connected" {
            break;
        }
        assert_eq!(v["state"], "waiting", "{v}");
        assert!(
            std::time::Instant::now() < deadline,
            "the login never ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The screen, opened again, says it is connected, and nothing else.
    let (status, html) = b.get(&format!("/chatgpt/login?id={id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<p class=\"waiting connected\" id=\"login-status\" role=\"status\"")
            && html.contains("Connected ChatGPT account kept"),
        "{html}"
    );
    assert!(!html.contains("notice error"), "{html}");
    let (status, html) = b.post("/chatgpt/done", &[("id", &id)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(html.contains("Connected ChatGPT account kept"), "{html}");
    assert_eq!(accounts(&s).await, vec!["kept".to_owned()]);

    // Disconnect asks first, naming the integrations that use the account.
    s.ok("integrations add llm --name cg --openai=chatgpt --openai-account=kept")
        .await;
    let (_, html) = b.get("/chatgpt").await;
    assert!(
        html.contains("href=\"/chatgpt/disconnect?account=kept\" aria-label=\"Disconnect kept\""),
        "{html}"
    );
    let (status, html) = b.get("/chatgpt/disconnect?account=kept").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Disconnect ChatGPT account kept?"), "{html}");
    assert!(html.contains("<li><code>cg</code></li>"), "{html}");
    assert!(
        html.contains("<a class=\"button\" href=\"/chatgpt\" autofocus>Cancel</a>"),
        "{html}"
    );
    assert_eq!(
        accounts(&s).await,
        vec!["kept".to_owned()],
        "asking changes nothing"
    );
    let (status, html) = b.get("/chatgpt/disconnect?account=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("you have no ChatGPT account named nope"),
        "{html}"
    );
    let (status, html) = b
        .post(
            "/chatgpt/manage",
            &[("do", "disconnect"), ("account", "kept")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(html.contains("disconnected ChatGPT account kept"), "{html}");
    assert!(accounts(&s).await.is_empty());
}

#[tokio::test]
async fn usage_page_shows_raw_names_every_column_and_team_usage() {
    let (_upstream, _dirs, s) = start().await;
    s.team("core", &["owner@localhost"]).await;
    let host = "llm.int.exe.xyz";
    let vm = s.vm_client(std::net::IpAddr::from([127, 0, 0, 1]), &[host]);
    let r = vm
        .post(format!("{}/v1/chat/completions", s.data_url(host)))
        .header("x-mock-usage", "input=2000,output=400")
        .json(&serde_json::json!({"model": "gpt-5 <b>mini</b>", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let b = sign_in_with_link(&s, &s.token).await;
    let (status, html) = b.get("/usage?by=model&days=30").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("gpt-5 &lt;b&gt;mini&lt;/b&gt;"), "{html}");
    assert!(!html.contains("\\u{20}"), "{html}");
    for column in [
        "Requests",
        "OK",
        "Refused",
        "Failed",
        "Estimated",
        "Input tokens",
        "Cache write",
        "Cache read",
        "Output tokens",
        "Cost",
        "Debited",
    ] {
        assert!(
            html.contains(&format!("<th scope=\"col\">{column}</th>")),
            "{column}"
        );
    }
    assert!(html.contains("last 30 days"), "{html}");
    let (status, html) = b.get("/usage?days=1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Usage in the last 1 days"), "{html}");
    // The longest period is shown too.
    let (status, html) = b.get("/usage?days=366&by=model").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("gpt-5 &lt;b&gt;mini&lt;/b&gt;"), "{html}");
    // A team's usage, as `usage --team`.
    let (status, html) = b.get("/usage?team=core").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Usage of team core"), "{html}");
    assert!(html.contains("--by integration --team core"), "{html}");
    assert!(html.contains("No requests in this period."), "{html}");
    assert!(
        html.contains("<option value=\"core\" selected>Team core</option>"),
        "{html}"
    );
    let (status, html) = b.get("/usage?team=elsewhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
    assert!(html.contains("team named elsewhere"), "{html}");
}

#[tokio::test]
async fn a_custom_endpoint_from_the_dialog() {
    use llm_integration_core::EndpointAuth;
    const TOKEN: &str = "endpoint-bearer-token-7788";
    const HEADER_VALUE: &str = "endpoint-header-value-4455";
    let upstream = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start_with(&dirs, &upstream.url(), |c| c.endpoints.allow_private = true).await;
    let url = format!("{}/v1", upstream.url());
    let b = sign_in_with_link(&s, &s.token).await;
    let (_, html) = b.get("/integrations/new/llm").await;
    assert!(html.contains("id=\"openai-custom\""), "{html}");
    assert!(html.contains("Custom HTTPS endpoint"), "{html}");

    // Test: the endpoint's model list, with the typed token.
    let (status, body) = b
        .post(
            "/integrations/test-endpoint",
            &[
                ("provider", "openai"),
                ("url", &url),
                ("auth", "bearer"),
                ("token", TOKEN),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["message"].as_str().unwrap().contains("models"), "{v}");
    assert!(!body.contains(TOKEN));
    assert_eq!(
        upstream.last().unwrap().header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let (_, body) = b
        .post(
            "/integrations/test-endpoint",
            &[
                ("provider", "openai"),
                ("url", "ftp://models.example.com"),
                ("auth", "none"),
            ],
        )
        .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("OpenAI endpoint URL: "),
        "{v}"
    );

    // Without a URL: the executor's words, beside OpenAI.
    let (status, html) = b
        .post(
            "/integrations/add-llm",
            &[
                ("name", "mine"),
                ("openai", "custom"),
                ("openai_auth", "none"),
                ("attach", "none"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("id=\"openai-error\""), "{html}");
    assert!(
        html.contains(
            "OpenAI source Custom HTTPS endpoint needs the endpoint: give the OpenAI endpoint URL"
        ),
        "{html}"
    );
    // Added with a bearer token: stored sealed, shown as a hint.
    let (status, html) = b
        .post(
            "/integrations/add-llm",
            &[
                ("name", "mine"),
                ("openai", "custom"),
                ("openai_url", &url),
                ("openai_auth", "bearer"),
                ("openai_token", TOKEN),
                ("anthropic", "disabled"),
                ("fireworks", "gateway"),
                ("attach", "none"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    assert!(html.contains("added llm integration mine"), "{html}");
    assert!(
        html.contains(&format!(
            "Custom HTTPS endpoint {url}, bearer token set (…7788)"
        )),
        "{html}"
    );
    let snapshot = s.live.snapshot();
    let stored = snapshot
        .integration_named(Owner::User(UserId(1)), "mine")
        .unwrap();
    let IntegrationKind::Llm(settings) = &stored.kind else {
        panic!()
    };
    let Source::Custom {
        url: stored_url,
        auth: EndpointAuth::Bearer { credential, .. },
    } = &settings.openai
    else {
        panic!("{:?}", settings.openai)
    };
    assert_eq!(stored_url.as_str(), url);
    let sealed = s
        .store
        .sealed_credential(*credential)
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&sealed.ciphertext).contains(TOKEN));

    // Edited to a header: the header name shown, the value never.
    let (status, html) = b.get("/integrations/edit?name=mine").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("A credential is stored: set (…7788)"),
        "{html}"
    );
    assert!(html.contains(&format!("value=\"{url}\"")), "{html}");
    let edit = |auth: &'static str, value: &'static str| {
        vec![
            ("original", "mine"),
            ("openai", "custom"),
            ("openai_url", url.as_str()),
            ("openai_auth", auth),
            ("openai_header", "X-Api-Key"),
            ("openai_header_value", value),
            ("anthropic", "disabled"),
            ("fireworks", "gateway"),
            ("comment", ""),
        ]
    };
    let (status, html) = b
        .post("/integrations/save", &edit("header", HEADER_VALUE))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let shown = s.json("integrations show mine").await;
    assert_eq!(shown["providers"]["openai"]["auth"], "header", "{shown}");
    assert_eq!(shown["providers"]["openai"]["header"], "x-api-key");
    assert_eq!(shown["providers"]["openai"]["key"], "set (…4455)");
    // Saved again without a value: the stored one is kept.
    let (status, html) = b.post("/integrations/save", &edit("header", "")).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    assert_eq!(
        s.json("integrations show mine").await["providers"]["openai"]["key"],
        "set (…4455)"
    );
    // Test with the stored value: `integrations test`, the header sent.
    let (_, body) = b
        .post(
            "/integrations/test-endpoint",
            &[
                ("provider", "openai"),
                ("url", &url),
                ("auth", "header"),
                ("header", "x-api-key"),
                ("original", "mine"),
            ],
        )
        .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["message"].as_str().unwrap().starts_with("openai: ok"),
        "{v}"
    );
    assert_eq!(
        upstream.last().unwrap().header("x-api-key"),
        Some(HEADER_VALUE)
    );
    // No authentication while a credential is stored: said, not dropped.
    let (status, html) = b.post("/integrations/save", &edit("none", "")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("has a stored credential"), "{html}");
    // A header value typed under Bearer token: an error.
    let (status, html) = b
        .post("/integrations/save", &edit("bearer", HEADER_VALUE))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("a header value was typed for OpenAI"),
        "{html}"
    );

    // No secret in any page.
    for page in [
        "/integrations",
        "/integrations/edit?name=mine",
        "/integrations/new/llm",
    ] {
        let (_, html) = b.get(page).await;
        for secret in [TOKEN, HEADER_VALUE] {
            assert!(!html.contains(secret), "{page}");
        }
    }
}

/// The text of the error shown beside field `field` (`name`, `attach`, …).
fn field_error(html: &str, field: &str) -> String {
    let open = format!("id=\"{field}-error\" role=\"alert\">");
    let at = html
        .find(&open)
        .unwrap_or_else(|| panic!("no {field} error: {html}"))
        + open.len();
    html[at..at + html[at..].find("</p>").unwrap()].to_owned()
}

#[tokio::test]
async fn errors_beside_the_fields_use_the_forms_words() {
    let (_upstream, _dirs, s) = start().await;
    let b = sign_in_with_link(&s, &s.token).await;
    for (fields, at, says) in [
        (
            vec![("name", "Bad Name!"), ("attach", "none")],
            "name",
            "invalid value 'Bad Name!' for Name: ",
        ),
        (
            vec![("name", "llm"), ("attach", "none")],
            "name",
            "an integration named llm already exists; pick another Name",
        ),
        (
            vec![("name", "tagged"), ("attach", "tag"), ("attach_tag", "")],
            "attach",
            "invalid value 'tag:' for Apply to: ",
        ),
        (
            vec![("name", "keyless"), ("openai", "byok"), ("attach", "none")],
            "openai",
            "OpenAI source API Key needs the key: paste it in OpenAI API key",
        ),
    ] {
        let (status, html) = b.post("/integrations/add-llm", &fields).await;
        assert!(status.is_client_error(), "{fields:?}: {status}");
        let message = field_error(&html, at);
        assert!(message.starts_with(says), "{fields:?}: {message}");
        assert!(
            !message.contains("--") && !message.contains("<SPEC>") && !message.contains("<NAME>"),
            "{fields:?}: {message}"
        );
    }
    // The list's rename says New name; a command to type stays as written.
    let (status, html) = b
        .post(
            "/integrations/action",
            &[("do", "rename"), ("name", "llm"), ("new_name", "Bad!")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("invalid value 'Bad!' for New name: "),
        "{html}"
    );
    let (_, html) = b
        .post(
            "/integrations/add-reflection",
            &[("name", "llm"), ("attach", "none")],
        )
        .await;
    assert!(
        field_error(&html, "name")
            .contains("pick another Name, or change it with `integrations edit llm`"),
        "{html}"
    );
}

#[tokio::test]
async fn the_vm_lists_offer_the_owner_scopes_vms() {
    let (_upstream, _dirs, s) = start().await;
    s.user("mate@example.com").await;
    s.team("core", &["owner@localhost", "mate@example.com"])
        .await;
    for (name, owner, team) in [
        ("devbox", "mate@example.com", Some("core")),
        ("teambox", "owner@localhost", Some("core")),
        ("matebox", "mate@example.com", None),
    ] {
        s.admin(AdminCommand::Vms(VmsCommand::Add(VmAddArgs {
            name: name.parse().unwrap(),
            owner: owner.into(),
            team: team.map(|t| t.parse().unwrap()),
            addresses: vec![],
            tags: vec![],
            comment: String::new(),
            port: None,
        })))
        .await;
    }
    s.ok("integrations add llm --name shared --team core").await;
    let b = sign_in_with_link(&s, &s.token).await;
    let options = |select: &str| -> Vec<String> {
        select
            .split("<option value=\"")
            .skip(1)
            .map(|o| o[..o.find('"').unwrap()].to_owned())
            .collect()
    };
    // Each card's list: the scope of the integration's owner.
    let (_, html) = b.get("/integrations").await;
    let card = |name: &str| -> String {
        let at = html.find(&format!("data-integration=\"{name}\"")).unwrap();
        let rest = &html[at..];
        let select = &rest[rest.find("name=\"attach_vm\"").unwrap()..];
        select[..select.find("</select>").unwrap()].to_owned()
    };
    assert_eq!(options(&card("llm")), ["local", "teambox"]);
    assert_eq!(options(&card("shared")), ["devbox", "teambox"]);
    // The dialogs: one group per owner scope, for the script to choose.
    for path in ["/integrations/new/llm", "/integrations/new/reflection"] {
        let (_, html) = b.get(path).await;
        let select = &html[html.find("name=\"attach_vm\" data-scoped").expect(&html)..];
        let select = &select[..select.find("</select>").unwrap()];
        let group = |owner: &str| -> Vec<String> {
            let at = select.find(&format!("data-owner=\"{owner}\"")).unwrap();
            options(&select[at..at + select[at..].find("</optgroup>").unwrap()])
        };
        assert_eq!(group(""), ["local", "teambox"], "{path}");
        assert_eq!(group("core"), ["devbox", "teambox"], "{path}");
        assert!(!select.contains("matebox"), "{path}: {select}");
    }
    // Without the script, a VM outside the scope is refused by the executor.
    let (status, html) = b
        .post(
            "/integrations/add-llm",
            &[("name", "mine"), ("attach", "vm"), ("attach_vm", "devbox")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
    assert!(
        field_error(&html, "attach").starts_with("you have no VM named devbox"),
        "{html}"
    );
    let (status, html) = b
        .post(
            "/integrations/add-llm",
            &[
                ("name", "mine"),
                ("owner", "core"),
                ("attach", "vm"),
                ("attach_vm", "devbox"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    assert_eq!(
        s.json("integrations show mine --team core").await["attachments"],
        serde_json::json!(["vm:devbox"])
    );
}
