//! The browser door at the request level: sign-in with a one-time link or
//! an access token, the session cookie's attributes, CSRF and `Origin`
//! checks, ended and expired sessions, another user's integration, the
//! forms going through the executor, key tests against the mock provider,
//! and a leak scan of every page for the stored keys.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, SystemTime};

use llm_integration_core::seams::WebTokenKind;
use llm_integration_core::{IntegrationKind, Owner, Source, UserId};
use llm_integration_mock::MockUpstream;
use llm_integration_server::admin::{self, AdminCommand, UsersCommand};
use llm_integration_server::testing::{Dirs, Server};
use llm_integration_server::web::session;
use reqwest::StatusCode;

const KEY: &str = "sk-web-secret-0123456789ABCDwxyz";
const OTHER_KEY: &str = "sk-ant-secret-9876543210ZYXWvuts";

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

    /// Posts a form from this page's origin with the CSRF token.
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
        (r.status(), r.text().await.unwrap())
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
    assert!(secure.contains("; Secure"), "{secure}");
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
    assert_eq!(status, StatusCode::OK, "{html}");
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
    assert_eq!(status, StatusCode::OK, "{html}");
    let shown = s.json("integrations show refl2").await;
    assert_eq!(shown["comment"], "two fields");
    assert_ne!(shown["fields"], "all", "{shown}");

    // Signed out: the old cookie and token no longer work.
    let (status, html) = b.post("/logout", &[]).await;
    assert_eq!(status, StatusCode::OK);
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
        assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
        assert!(
            html.contains("you have no integration named theirs"),
            "{html}"
        );
    }
    let (status, html) = b.get("/integrations/edit?name=theirs").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
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
    ];
    let (status, html) = b.post("/integrations/add-llm", &add).await;
    assert_eq!(status, StatusCode::OK, "{html}");
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
    assert_eq!(status, StatusCode::OK, "{html}");
    let shown = s.json("integrations show byok").await;
    assert_eq!(shown["providers"]["openai"]["key"], "set (…wxyz)");
    assert_eq!(shown["providers"]["anthropic"]["source"], "gateway");
    assert_eq!(shown["providers"]["fireworks"]["source"], "gateway");
    assert_eq!(shown["comment"], "edited");

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
    assert_eq!(status, StatusCode::OK, "{html}");
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
    let (status, _) = b.get("/usage?days=many").await;
    assert!(status.is_client_error());
    let (status, html) = b.get("/usage?days=9999&by=nonsense").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "unknown choices fall back to the defaults"
    );
    assert!(html.contains("last 14 days"), "{html}");
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
    assert_eq!(status, StatusCode::OK, "{html}");
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
