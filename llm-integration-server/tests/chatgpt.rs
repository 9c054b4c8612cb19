//! The ChatGPT subscription source against a mock of ChatGPT's login
//! service and Codex backend: device-code login (approved, slow_down,
//! expired, denied), requests with the account's token, refresh (one per
//! account however many requests wait), refresh failure, and tokens never
//! shown.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::IpAddr;
use std::time::Duration;

use llm_integration_mock::chatgpt::{ChatGptBehaviour, MockChatGpt, ACCOUNT_ID};
use llm_integration_mock::MockUpstream;
use llm_integration_server::chatgpt::ChatGptEndpoints;
use llm_integration_server::testing::{Dirs, Process, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn start(behaviour: ChatGptBehaviour) -> (MockChatGpt, MockUpstream, Dirs, Server) {
    let chatgpt = MockChatGpt::start(behaviour).await.unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let endpoints = ChatGptEndpoints {
        auth: chatgpt.auth_url(),
        backend: chatgpt.backend_url(),
    };
    let s = Server::start_with(&dirs, &upstream.url(), move |c| c.chatgpt = endpoints).await;
    (chatgpt, upstream, dirs, s)
}

/// Runs `setup chatgpt --name NAME` and returns (first chunk, whole answer, outcome header).
async fn connect(s: &Server, name: &str, json: bool) -> (StatusCode, String, String) {
    let line = format!(
        "integrations setup chatgpt --name {name}{}",
        if json { " --json" } else { "" }
    );
    let mut r = s
        .http
        .post(format!("{}/exec", s.url))
        .bearer_auth(&s.token)
        .body(line)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let mut first = String::new();
    let mut all = String::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        if first.is_empty() {
            first = String::from_utf8_lossy(&chunk).into_owned();
        }
        all.push_str(&String::from_utf8_lossy(&chunk));
    }
    (status, first, all)
}

#[tokio::test]
async fn device_code_login_approved_and_used() {
    let (chatgpt, _upstream, _dirs, s) = start(ChatGptBehaviour {
        pending_polls: 2,
        ..ChatGptBehaviour::default()
    })
    .await;
    let (status, first, all) = connect(&s, "work", false).await;
    assert_eq!(status, StatusCode::OK);
    // The URL and code arrive before the login completes.
    assert!(
        first.contains("Open this URL to authorize ChatGPT:") && first.contains("/codex/device"),
        "{first}"
    );
    assert!(
        first.contains("Enter this code:\n  MOCK-CODE")
            && first.contains("Waiting for authorization..."),
        "{first}"
    );
    assert!(!first.contains("Connected"), "{first}");
    assert!(
        all.trim_end()
            .ends_with("Connected ChatGPT account work (plan plus, someone@example.com)."),
        "{all}"
    );
    assert_eq!(chatgpt.polls(), 3, "two pending answers, then approval");
    let list = s.json("integrations setup chatgpt --list").await;
    assert_eq!(
        list["accounts"],
        json!([{"name": "work", "status": "connected", "email": "someone@example.com", "plan": "plus"}])
    );

    // The seed's integration, then a Codex-like request from the VM.
    s.ok("integrations add llm --name chatgpt-llm --openai=chatgpt --openai-account=work --anthropic=disabled --fireworks=disabled --attach auto:all").await;
    let vm = s.vm_client(
        "127.0.0.1".parse::<IpAddr>().unwrap(),
        &["chatgpt-llm.int.exe.xyz"],
    );
    let url = |p: &str| format!("{}{p}", s.data_url("chatgpt-llm.int.exe.xyz"));
    let r = vm
        .post(url("/v1/responses"))
        .header("authorization", "Bearer implicit")
        .header("session-id", "s-1")
        .json(&json!({"model": "gpt-5.5", "input": "hi", "stream": true, "store": true, "max_output_tokens": 100, "temperature": 0.2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["x-codex-primary-used-percent"],
        "12",
        "rate-limit headers pass"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("response.completed"), "{body}");
    let seen = chatgpt.backend_requests().pop().unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {}", chatgpt.issued_tokens()[0]).as_str())
    );
    assert_eq!(seen.header("chatgpt-account-id"), Some(ACCOUNT_ID));
    assert_eq!(seen.header("originator"), Some("codex_cli_rs"));
    assert_eq!(seen.header("session-id"), Some("s-1"));
    let sent = seen.json().unwrap();
    assert_eq!(
        (sent["store"].clone(), sent["stream"].clone()),
        (json!(false), json!(true))
    );
    assert!(
        sent.get("max_output_tokens").is_none() && sent.get("temperature").is_none(),
        "{sent}"
    );
    // A client that does not stream gets the response object.
    let r = vm
        .post(url("/v1/responses"))
        .json(&json!({"model": "gpt-5.5", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    // The same when the backend's stream comes without a content type, or
    // with CRLF line ends: the stream is recognised by its content.
    for (knob, value) in [("x-mock-content-type", "none"), ("x-mock-framing", "crlf")] {
        let r = vm
            .post(url("/v1/responses"))
            .header(knob, value)
            .json(&json!({"model": "gpt-5.5", "input": "hi", "stream": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{knob}");
        assert_eq!(r.headers()["content-type"], "application/json", "{knob}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "response", "{knob}: {v}");
    }
    // Models come from the backend's catalog; hidden ones are left out.
    let v: Value = vm
        .get(url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-5.5", "gpt-5.3-codex"]);
    // The backend serves Responses only: other routes get a clear error.
    let r = vm
        .post(url("/v1/chat/completions"))
        .json(&json!({"model": "gpt-5.5", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("Responses API only") && text.contains("/v1/responses"),
        "{text}"
    );
    // Usage is recorded, not debited.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let u = s.json("usage --by provider").await;
        if let Some(row) = u["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == "openai")
        {
            assert_eq!(row["debited_micros"], 0);
            assert!(row["output_tokens"].as_u64().unwrap() >= 6, "{row}");
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No token in any answer.
    let answers = [
        s.ok("integrations setup chatgpt --list").await,
        s.ok("integrations show chatgpt-llm --json").await,
        all,
    ];
    for token in chatgpt.issued_tokens() {
        for a in &answers {
            assert!(!a.contains(&token[..40]), "a token leaked: {a}");
        }
    }
    assert!(answers.iter().all(|a| !a.contains("rt-mock")));
    s.stop().await;
}

#[tokio::test]
async fn slow_down_expired_and_denied() {
    let (chatgpt, _u, _d, s) = start(ChatGptBehaviour {
        slow_down_first: true,
        pending_polls: 0,
        ..ChatGptBehaviour::default()
    })
    .await;
    let started = std::time::Instant::now();
    let (_, _, all) = connect(&s, "slow", true).await;
    // First poll after 1 s answers slow_down; the next waits 1 + 5 s.
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let events: Vec<Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "code");
    assert_eq!(events[0]["user_code"], "MOCK-CODE");
    assert_eq!(events.last().unwrap()["event"], "connected", "{all}");
    assert_eq!(chatgpt.polls(), 2);

    chatgpt.set(|b| b.expire = true);
    let (_, _, all) = connect(&s, "late", false).await;
    assert!(
        all.trim_end()
            .ends_with("run `integrations setup chatgpt --name late` again"),
        "{all}"
    );
    assert!(all.contains("error: the code expired"), "{all}");
    chatgpt.set(|b| {
        b.expire = false;
        b.deny = true;
    });
    let (_, _, all) = connect(&s, "nope", false).await;
    assert!(all.contains("error: the authorization was denied"), "{all}");
    let list = s.json("integrations setup chatgpt --list").await;
    assert_eq!(
        list["accounts"].as_array().unwrap().len(),
        1,
        "failed logins store nothing: {list}"
    );
    s.stop().await;
}

#[tokio::test]
async fn refresh_once_for_many_waiting_requests_and_refresh_failure() {
    let (chatgpt, _u, _d, s) = start(ChatGptBehaviour {
        pending_polls: 0,
        access_lifetime_secs: -10,
        refresh_delay: Duration::from_millis(300),
        ..ChatGptBehaviour::default()
    })
    .await;
    connect(&s, "work", false).await;
    chatgpt.set(|b| b.access_lifetime_secs = 3600);
    s.ok("integrations add llm --name c --openai=chatgpt --openai-account=work --attach auto:all")
        .await;
    let vm = s.vm_client("127.0.0.1".parse::<IpAddr>().unwrap(), &["c.int.exe.xyz"]);
    // The stored token has expired: 20 requests at once cause one refresh.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let vm = vm.clone();
        let url = format!("{}/v1/responses", s.data_url("c.int.exe.xyz"));
        tasks.push(tokio::spawn(async move {
            vm.post(url)
                .json(&json!({"model": "gpt-5.5", "input": "hi", "stream": true}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(chatgpt.refreshes(), 1);
    let used: Vec<String> = chatgpt
        .backend_requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert!(
        used.iter()
            .all(|a| *a == format!("Bearer {}", chatgpt.issued_tokens()[1])),
        "every request used the refreshed token"
    );

    // --verify refreshes each account and reports it.
    let v = s.json("integrations setup chatgpt --verify").await;
    assert_eq!(v["accounts"][0]["ok"], true, "{v}");
    assert_eq!(chatgpt.refreshes(), 2);

    // A refused refresh: the VM is told what to do, and --verify shows it.
    chatgpt.set(|b| b.refresh_fails = true);
    let (status, body, outcome) = s
        .raw(
            Some(&s.token),
            "text/plain",
            b"integrations setup chatgpt --verify".to_vec(),
        )
        .await;
    assert_eq!(
        (status, outcome.as_str()),
        (StatusCode::OK, "failed"),
        "{body}"
    );
    assert!(
        body.contains("work: failed") && body.contains("integrations setup chatgpt --name work"),
        "{body}"
    );
    let r = vm
        .post(format!("{}/v1/responses", s.data_url("c.int.exe.xyz")))
        .json(&json!({"model": "gpt-5.5", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("must be connected again")
            && text.contains("integrations setup chatgpt --name work"),
        "{text}"
    );
    let list = s.json("integrations setup chatgpt --list").await;
    assert_eq!(list["accounts"][0]["status"], "needs_login");
    // Connecting again fixes it.
    chatgpt.set(|b| b.refresh_fails = false);
    let (_, _, all) = connect(&s, "work", false).await;
    assert!(all.contains("Connected ChatGPT account work"), "{all}");
    let r = vm
        .post(format!("{}/v1/responses", s.data_url("c.int.exe.xyz")))
        .json(&json!({"model": "gpt-5.5", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Deleting the account.
    s.ok("integrations setup chatgpt --name work --delete")
        .await;
    assert_eq!(
        s.run("integrations setup chatgpt --name work --delete")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test]
async fn chatgpt_is_refused_where_it_cannot_apply() {
    let (_c, _u, _d, s) = start(ChatGptBehaviour {
        pending_polls: 0,
        ..ChatGptBehaviour::default()
    })
    .await;
    connect(&s, "work", false).await;
    s.team("core", &["owner@localhost"]).await;
    for (line, status, needle) in [
        (
            "integrations add llm --name t --team core --openai=chatgpt --openai-account=work",
            StatusCode::BAD_REQUEST,
            "team integrations",
        ),
        (
            "integrations add llm --name a --anthropic=chatgpt",
            StatusCode::BAD_REQUEST,
            "only be the openai source",
        ),
        (
            "integrations add llm --name x --openai=chatgpt --openai-account=home",
            StatusCode::NOT_FOUND,
            "no ChatGPT account named home",
        ),
        (
            "integrations add llm --name y --openai=chatgpt",
            StatusCode::BAD_REQUEST,
            "--openai-account=ACCOUNT",
        ),
    ] {
        let (got, body) = s.run(line).await;
        assert_eq!(got, status, "{line}: {body}");
        assert!(body.contains(needle), "{line}: {body}");
    }
    s.ok("integrations add llm --name z --team core").await;
    let (got, body) = s
        .run("integrations edit z --team core --openai=chatgpt --openai-account=work")
        .await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{body}");
    // Disconnecting an account in use says which integrations use it.
    s.ok("integrations add llm --name uses-work --openai=chatgpt --openai-account=work")
        .await;
    let text = s
        .ok("integrations setup chatgpt --name work --delete")
        .await;
    assert!(
        text.contains("disconnected ChatGPT account work")
            && text.contains("warning: still used by uses-work:")
            && text.contains("integrations setup chatgpt --name work"),
        "{text}"
    );
    s.stop().await;
}

/// The real binary with debug logs: no token, code or verifier in its log.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_never_reach_the_log() {
    use std::process::Command;
    let chatgpt = MockChatGpt::start(ChatGptBehaviour {
        pending_polls: 1,
        access_lifetime_secs: -10,
        ..ChatGptBehaviour::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_llm-integration-server"));
    command
        .env("LLM_INTEGRATION_LOG", "debug")
        .env("LLM_INTEGRATION_CHATGPT_AUTH_URL", chatgpt.auth_url())
        .env("LLM_INTEGRATION_CHATGPT_BACKEND_URL", chatgpt.backend_url());
    let mut server = Process::start(command, dir.path());
    let (admin, data) = (server.admin.clone(), server.data.clone());
    let token =
        std::fs::read_to_string(dir.path().join("llm-integration-data/owner.token")).unwrap();
    let http = reqwest::Client::new();
    let exec = |line: &str| {
        http.post(format!("{admin}/exec"))
            .bearer_auth(token.trim())
            .body(line.to_owned())
            .send()
    };
    let answer = exec("integrations setup chatgpt --name work")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answer.contains("Connected"), "{answer}");
    chatgpt.set(|b| b.access_lifetime_secs = 3600);
    exec("integrations add llm --name c --openai=chatgpt --openai-account=work --attach auto:all")
        .await
        .unwrap();
    let port = data.rsplit(':').next().unwrap().to_owned();
    let vm = reqwest::Client::builder()
        .resolve(
            "c.int.exe.xyz",
            format!("127.0.0.1:{port}").parse().unwrap(),
        )
        .build()
        .unwrap();
    let r = vm
        .post(format!("http://c.int.exe.xyz:{port}/v1/responses"))
        .json(&json!({"model": "gpt-5.5", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(chatgpt.refreshes() >= 1);
    let verify = exec("integrations setup chatgpt --verify --json")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    server.sigterm();
    let (status, log) = tokio::task::spawn_blocking(move || (server.wait(), server.log_text()))
        .await
        .unwrap();
    assert!(status.success());
    assert!(log.contains("ChatGPT tokens refreshed"), "{log}");
    let mut secrets: Vec<String> = chatgpt
        .issued_tokens()
        .iter()
        .map(|t| t[t.len() - 20..].to_owned())
        .collect();
    secrets.extend([
        "rt-mock-".into(),
        "code-mock".into(),
        "verifier-mock".into(),
    ]);
    for secret in &secrets {
        for (what, text) in [
            ("log", &log),
            ("setup answer", &answer),
            ("verify answer", &verify),
        ] {
            assert!(!text.contains(secret.as_str()), "{what} contains {secret}");
        }
    }
}

/// A login service that cannot be reached, or a URL that is not ChatGPT's,
/// is named with the flag that sets it.
#[tokio::test]
async fn wrong_login_service_is_named_with_its_flag() {
    let upstream = MockUpstream::start().await.unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let not_chatgpt = MockUpstream::start().await.unwrap();
    for (auth, needles) in [
        (
            format!("http://{closed}"),
            vec![
                "cannot reach ChatGPT's login service",
                "/api/accounts/deviceauth/usercode",
                "--chatgpt-auth-url",
            ],
        ),
        (not_chatgpt.url(), vec!["404", "--chatgpt-auth-url"]),
    ] {
        let dirs = Dirs::new();
        let endpoints = ChatGptEndpoints {
            auth: auth.clone(),
            backend: auth.clone(),
        };
        let s = Server::start_with(&dirs, &upstream.url(), move |c| c.chatgpt = endpoints).await;
        let (status, _first, all) = connect(&s, "work", false).await;
        assert!(!status.is_success(), "{status}: {all}");
        for needle in needles {
            assert!(all.contains(needle), "{auth}: missing {needle:?} in {all}");
        }
        assert!(all.contains(&auth), "{auth}: the URL is named: {all}");
        s.stop().await;
    }
}

/// A hostile login service: a user code with terminal escapes is refused;
/// a token endpoint that echoes the request (the code and its verifier)
/// and an email with escapes never reach the owner's screen as they are.
#[tokio::test]
async fn a_hostile_login_service_cannot_show_secrets_or_drive_the_terminal() {
    use axum::routing::post;
    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
    let upstream = MockUpstream::start().await.unwrap();
    // 1. The user code is not plain text.
    let escapes = serve(axum::Router::new().route(
        "/api/accounts/deviceauth/usercode",
        post(|| async {
            axum::Json(json!({"device_auth_id": "dev-1", "interval": "1",
                "user_code": "AB\u{1b}[2J\rConnected ChatGPT account fake (plan pro)."}))
        }),
    ))
    .await;
    // 2. Approved at once, then the token endpoint echoes what it got.
    let echo = serve(
        axum::Router::new()
            .route(
                "/api/accounts/deviceauth/usercode",
                post(|| async {
                    axum::Json(json!({"device_auth_id": "dev-1", "interval": "1", "user_code": "ABCD-EFGH"}))
                }),
            )
            .route(
                "/api/accounts/deviceauth/token",
                post(|| async {
                    axum::Json(json!({"authorization_code": "code-0123456789-secret",
                        "code_verifier": "verifier-0123456789-secret"}))
                }),
            )
            .route(
                "/oauth/token",
                post(|body: String| async move {
                    (
                        axum::http::StatusCode::BAD_REQUEST,
                        axum::Json(json!({"error": "invalid_grant",
                            "error_description": format!("\u{1b}]0;owned\u{7}bad request: {body}")})),
                    )
                }),
            ),
    )
    .await;
    for (auth, must, must_not) in [
        (escapes, "not plain text", vec!["\u{1b}", "\rConnected"]),
        (
            echo,
            "code exchange failed",
            vec![
                "code-0123456789-secret",
                "verifier-0123456789-secret",
                "\u{1b}",
                "\u{7}",
            ],
        ),
    ] {
        let dirs = Dirs::new();
        let endpoints = ChatGptEndpoints {
            auth: auth.clone(),
            backend: auth.clone(),
        };
        let s = Server::start_with(&dirs, &upstream.url(), move |c| c.chatgpt = endpoints).await;
        for json in [false, true] {
            let (_, _, all) = connect(&s, "work", json).await;
            assert!(all.contains(must), "{auth}: {all:?}");
            for bad in &must_not {
                assert!(!all.contains(bad), "{auth}: {bad:?} shown: {all:?}");
            }
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn an_anthropic_client_on_a_chatgpt_subscription_speaks_responses_to_the_backend() {
    let (chatgpt, _upstream, _dirs, s) = start(ChatGptBehaviour::default()).await;
    let (status, _, all) = connect(&s, "work", false).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    s.ok(
        "integrations add llm --name sub --openai=chatgpt --openai-account=work --attach auto:all",
    )
    .await;
    let vm = s.vm_client("127.0.0.1".parse::<IpAddr>().unwrap(), &["sub.int.exe.xyz"]);
    let url = format!("{}/v1/messages", s.data_url("sub.int.exe.xyz"));
    let ask = |stream: bool| {
        json!({"model": "gpt-5.5", "max_tokens": 2000, "temperature": 0.2, "stream": stream,
               "system": "Be brief.", "messages": [{"role": "user", "content": "Hello"}]})
    };
    // A client that does not stream: the backend's stream is collected,
    // then translated into an Anthropic message.
    let r = vm
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", "placeholder")
        .json(&ask(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["llm-integration-dropped"],
        "max_tokens, temperature",
        "what the backend does not take is named"
    );
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["type"], "message", "{m}");
    assert_eq!(m["role"], "assistant");
    assert!(m["content"][0]["text"].as_str().is_some(), "{m}");
    let sent = chatgpt.backend_requests().pop().unwrap().json().unwrap();
    assert_eq!(sent["instructions"], "Be brief.");
    assert_eq!(
        (sent["store"].clone(), sent["stream"].clone()),
        (json!(false), json!(true))
    );
    assert!(sent.get("max_output_tokens").is_none(), "{sent}");
    // A client that streams: Anthropic's events.
    let r = vm
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .json(&ask(true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(body.starts_with("event: message_start\n"), "{body}");
    assert!(body.contains("event: content_block_delta\n"), "{body}");
    assert!(
        body.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{body}"
    );
}
