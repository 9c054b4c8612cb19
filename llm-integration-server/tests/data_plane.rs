//! The data plane through real sockets: clients bound to 127.0.0.1,
//! 127.0.0.2, … act as different VMs; a mock upstream records what
//! arrives.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::Duration;

use llm_integration_core::Provider;
use llm_integration_mock::MockUpstream;
use llm_integration_server::admin::{AdminCommand, VmAddArgs, VmsCommand};
use llm_integration_server::testing::{Dirs, Server, GATEWAY_KEYS};
use reqwest::StatusCode;
use serde_json::{json, Value};

const OWNER_VM: &str = "127.0.0.1";
const OWNER_TAGGED_VM: &str = "127.0.0.2";
const BOB_VM: &str = "127.0.0.3";
const UNKNOWN: &str = "127.0.0.9";
const HOSTS: [&str; 8] = [
    "llm.int.exe.xyz",
    "byok.int.exe.xyz",
    "tagged.int.exe.xyz",
    "nope.int.exe.xyz",
    "shared.team.exe.xyz",
    "reflection.int.exe.xyz",
    "llm.int.exe.xyz.evil",
    "off.int.exe.xyz",
];
const BYOK_KEY: &str = "sk-byok-openai-0123456789abcdef";

async fn vm(s: &Server, name: &str, owner: &str, address: &str, team: Option<&str>, tags: &[&str]) {
    s.admin(AdminCommand::Vms(VmsCommand::Add(VmAddArgs {
        name: name.parse().unwrap(),
        owner: owner.into(),
        team: team.map(|t| t.parse().unwrap()),
        addresses: vec![address.parse().unwrap()],
        tags: tags.iter().map(|t| t.parse().unwrap()).collect(),
        comment: format!("{name}'s comment"),
        port: Some(8080),
    })))
    .await;
}

/// The owner (VMs `local` 127.0.0.1 and `tagged` 127.0.0.2) and bob
/// (VM `bobs` 127.0.0.3), both in team core; integrations: the defaults,
/// `byok` (openai key, anthropic disabled), `tagged` (tag:llm), `off`
/// (everything disabled), team `shared`.
async fn setup(upstream: &str) -> (Dirs, Server) {
    let dirs = Dirs::new();
    let s = Server::start(&dirs, upstream).await;
    setup_config(&s).await;
    (dirs, s)
}

async fn setup_config(s: &Server) {
    s.user("bob@example.com").await;
    s.team("core", &["owner@localhost", "bob@example.com"])
        .await;
    vm(
        s,
        "tagged",
        "owner@localhost",
        OWNER_TAGGED_VM,
        None,
        &["llm"],
    )
    .await;
    vm(s, "bobs", "bob@example.com", BOB_VM, Some("core"), &[]).await;
    let (status, body) = s
        .with_stdin("integrations add llm --name byok --openai=byok --openai-key=- --anthropic=disabled --attach auto:all", BYOK_KEY)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.ok("integrations add llm --name tagged --attach tag:llm")
        .await;
    s.ok("integrations add llm --name off --anthropic=disabled --openai=disabled --fireworks=disabled --attach auto:all").await;
    s.ok("integrations add llm --name shared --team core --attach auto:all")
        .await;
}

fn client(s: &Server, from: &str) -> reqwest::Client {
    s.vm_client(from.parse::<IpAddr>().unwrap(), &HOSTS)
}

async fn post(
    c: &reqwest::Client,
    s: &Server,
    host: &str,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut r = c.post(format!("{}{path}", s.data_url(host))).json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let response = r.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn every_route_and_provider_streaming_and_not() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = setup(&mock.url()).await;
    let c = client(&s, OWNER_VM);
    let cases: &[(&str, &str, &str, &str, usize)] = &[
        // (path, model, upstream path, auth header at the mock, gateway key index)
        (
            "/v1/messages",
            "claude-sonnet-4-6",
            "/v1/messages",
            "x-api-key",
            0,
        ),
        (
            "/v1/messages?beta=true",
            "claude-opus-4-6",
            "/v1/messages?beta=true",
            "x-api-key",
            0,
        ),
        (
            "/v1/messages",
            "accounts/fireworks/models/glm",
            "/inference/v1/messages",
            "authorization",
            2,
        ),
        (
            "/v1/chat/completions",
            "gpt-5.5",
            "/v1/chat/completions",
            "authorization",
            1,
        ),
        (
            "/v1/chat/completions",
            "accounts/fireworks/models/kimi",
            "/inference/v1/chat/completions",
            "authorization",
            2,
        ),
        (
            "/v1/responses",
            "gpt-5.1-codex",
            "/v1/responses",
            "authorization",
            1,
        ),
        (
            "/anthropic/v1/messages",
            "anything",
            "/v1/messages",
            "x-api-key",
            0,
        ),
        (
            "/openai/v1/chat/completions",
            "anything",
            "/v1/chat/completions",
            "authorization",
            1,
        ),
        (
            "/openai/v1/responses",
            "anything",
            "/v1/responses",
            "authorization",
            1,
        ),
        (
            "/fireworks/inference/v1/chat/completions",
            "x",
            "/inference/v1/chat/completions",
            "authorization",
            2,
        ),
        (
            "/fireworks/inference/v1/messages",
            "x",
            "/inference/v1/messages",
            "authorization",
            2,
        ),
    ];
    for (path, model, upstream, auth, key) in cases {
        for stream in [false, true] {
            mock.clear();
            let (status, headers, body) = post(
                &c,
                &s,
                "llm.int.exe.xyz",
                path,
                json!({"model": model, "stream": stream, "max_tokens": 10}),
                &[],
            )
            .await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{path} {model} stream={stream}: {body}"
            );
            assert!(
                headers.contains_key("request-id"),
                "{path}: request ids come back"
            );
            if stream {
                assert_eq!(headers["content-type"], "text/event-stream");
                assert!(body.contains("tok2 "), "{path}: {body}");
            } else {
                assert!(body.contains("tok0 tok1 tok2"), "{path}: {body}");
            }
            let seen = mock.last().unwrap();
            assert_eq!(seen.path, *upstream, "{path}");
            let expected = if *auth == "x-api-key" {
                GATEWAY_KEYS[*key].to_owned()
            } else {
                format!("Bearer {}", GATEWAY_KEYS[*key])
            };
            assert_eq!(seen.header(auth), Some(expected.as_str()), "{path}");
        }
    }
    // Other endpoints.
    for (path, model, needle) in [
        (
            "/v1/messages/count_tokens",
            "claude-sonnet-4-6",
            "input_tokens",
        ),
        ("/v1/embeddings", "text-embedding-3-small", "embedding"),
        (
            "/v1/completions",
            "gpt-3.5-turbo-instruct",
            "text_completion",
        ),
    ] {
        let (status, _, body) = post(
            &c,
            &s,
            "llm.int.exe.xyz",
            path,
            json!({"model": model, "input": "x", "prompt": "x"}),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(body.contains(needle), "{path}: {body}");
    }
    // An explicit provider prefix in the model is stripped before forwarding.
    post(
        &c,
        &s,
        "llm.int.exe.xyz",
        "/v1/chat/completions",
        json!({"model": "fireworks/kimi-k2", "messages": []}),
        &[],
    )
    .await;
    let seen = mock.last().unwrap();
    assert_eq!(
        seen.json().unwrap()["model"],
        "accounts/fireworks/models/kimi-k2"
    );
    assert_eq!(seen.json().unwrap()["messages"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn credentials_are_injected_and_client_headers_stripped() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = setup(&mock.url()).await;
    let c = client(&s, OWNER_VM);
    let client_headers = [
        ("authorization", "Bearer implicit"),
        ("x-api-key", "implicit"),
        ("api-key", "implicit"),
        ("cookie", "session=1"),
        ("proxy-authorization", "Basic eA=="),
        ("openai-organization", "org-client"),
        ("x-forwarded-for", "10.1.2.3"),
        ("forwarded", "for=10.1.2.3"),
        ("x-real-ip", "10.1.2.3"),
        ("anthropic-version", "2023-06-01"),
        (
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        ),
        ("openai-beta", "responses=experimental"),
        ("session_id", "s-123"),
        ("x-stainless-lang", "python"),
        ("idempotency-key", "idem-1"),
        ("user-agent", "claude-cli/2.1.197 (external, cli)"),
    ];
    // BYOK: the owner's key, never the placeholder.
    let (status, _, body) = post(
        &c,
        &s,
        "byok.int.exe.xyz",
        "/v1/chat/completions",
        json!({"model": "gpt-5.5"}),
        &client_headers,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = mock.last().unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {BYOK_KEY}").as_str())
    );
    for gone in [
        "x-api-key",
        "api-key",
        "cookie",
        "proxy-authorization",
        "openai-organization",
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
    ] {
        assert_eq!(
            seen.header(gone),
            None,
            "{gone} must not reach the upstream"
        );
    }
    for (kept, value) in [
        (
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        ),
        ("openai-beta", "responses=experimental"),
        ("session_id", "s-123"),
        ("x-stainless-lang", "python"),
        ("idempotency-key", "idem-1"),
        ("user-agent", "claude-cli/2.1.197 (external, cli)"),
    ] {
        assert_eq!(seen.header(kept), Some(value), "{kept} passes unchanged");
    }
    // Anthropic gets x-api-key and no authorization; anthropic-version added when missing.
    post(
        &c,
        &s,
        "llm.int.exe.xyz",
        "/v1/messages",
        json!({"model": "claude-x"}),
        &[("authorization", "Bearer implicit")],
    )
    .await;
    let seen = mock.last().unwrap();
    assert_eq!(seen.header("x-api-key"), Some(GATEWAY_KEYS[0]));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    s.stop().await;
}

#[tokio::test]
async fn models_lists_are_merged_and_marked() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = setup(&mock.url()).await;
    let c = client(&s, OWNER_VM);
    let get = |host: &'static str, path: &'static str, anthropic: bool| {
        let c = c.clone();
        let url = format!("{}{path}", s.data_url(host));
        async move {
            let mut r = c.get(url);
            if anthropic {
                r = r.header("anthropic-version", "2023-06-01");
            }
            let r = r.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = get("llm.int.exe.xyz", "/v1/models", false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["object"], "list");
    let pairs: Vec<(String, String)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().into(),
                m["owned_by"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        pairs.contains(&("claude-opus-4-6".into(), "anthropic".into())),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&("gpt-5.5".into(), "openai".into())),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&(
            "accounts/fireworks/models/kimi-k2-instruct".into(),
            "fireworks".into()
        )),
        "{pairs:?}"
    );
    // Anthropic clients get Anthropic's shape, with OpenAI's models while
    // translation serves them, and without once it is off.
    let ids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, v) = get("llm.int.exe.xyz", "/v1/models", true).await;
    assert_eq!(v["has_more"], false);
    assert_eq!(v["data"][0]["type"], "model");
    assert!(v["data"][0]["display_name"].is_string() && v["data"][0]["created_at"].is_string());
    assert!(ids(&v).contains(&"gpt-5.5".to_owned()), "{v}");
    assert!(ids(&v).contains(&"claude-opus-4-6".to_owned()), "{v}");
    s.ok("integrations edit llm --translate=off").await;
    let (_, v) = get("llm.int.exe.xyz", "/v1/models", true).await;
    assert!(!ids(&v).contains(&"gpt-5.5".to_owned()), "{v}");
    assert!(ids(&v).contains(&"claude-opus-4-6".to_owned()), "{v}");
    s.ok("integrations edit llm --translate=on").await;
    // Disabled providers are not listed; one provider by prefix.
    let (_, v) = get("byok.int.exe.xyz", "/v1/models", false).await;
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["owned_by"] != "anthropic"),
        "{v}"
    );
    let (_, v) = get("llm.int.exe.xyz", "/openai/v1/models", false).await;
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["owned_by"] == "openai"),
        "{v}"
    );
    // Lists are cached: a second call does not reach the upstream.
    mock.clear();
    get("llm.int.exe.xyz", "/v1/models", false).await;
    assert!(
        mock.requests().is_empty(),
        "{:?}",
        mock.requests()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
    s.stop().await;

    // A provider whose list fails is reported, not fatal.
    let dirs = Dirs::new();
    let url = mock.url();
    let s = Server::start_with(&dirs, &url, |c| {
        c.upstreams[Provider::Fireworks] = "http://127.0.0.1:9".into()
    })
    .await;
    let c = client(&s, OWNER_VM);
    let r = c
        .get(format!("{}/v1/models", s.data_url("llm.int.exe.xyz")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["failed_providers"][0]["provider"], "fireworks", "{v}");
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["owned_by"] == "openai"));
    s.stop().await;
}

#[tokio::test]
async fn isolation_matrix() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = setup(&mock.url()).await;
    let body = json!({"model": "claude-opus-4-6"});
    let expect = |cases: Vec<(&'static str, &'static str, &'static str, StatusCode)>| cases;
    let cases = expect(vec![
        (OWNER_VM, "llm.int.exe.xyz", "/v1/messages", StatusCode::OK),
        (BOB_VM, "llm.int.exe.xyz", "/v1/messages", StatusCode::OK), // bob's own default llm
        (
            OWNER_VM,
            "tagged.int.exe.xyz",
            "/v1/messages",
            StatusCode::NOT_FOUND,
        ), // not tagged
        (
            OWNER_TAGGED_VM,
            "tagged.int.exe.xyz",
            "/v1/messages",
            StatusCode::OK,
        ),
        (
            BOB_VM,
            "tagged.int.exe.xyz",
            "/v1/messages",
            StatusCode::NOT_FOUND,
        ), // another owner's
        (
            BOB_VM,
            "byok.int.exe.xyz",
            "/v1/messages",
            StatusCode::NOT_FOUND,
        ),
        (
            OWNER_VM,
            "shared.team.exe.xyz",
            "/v1/messages",
            StatusCode::NOT_FOUND,
        ), // `local` is in no team
        (
            BOB_VM,
            "shared.team.exe.xyz",
            "/v1/messages",
            StatusCode::OK,
        ),
        (
            OWNER_TAGGED_VM,
            "shared.team.exe.xyz",
            "/v1/messages",
            StatusCode::NOT_FOUND,
        ), // not in the team
        (
            UNKNOWN,
            "llm.int.exe.xyz",
            "/v1/messages",
            StatusCode::NOT_FOUND,
        ),
        (
            OWNER_VM,
            "nope.int.exe.xyz",
            "/v1/messages",
            StatusCode::NOT_FOUND,
        ),
        (
            OWNER_VM,
            "llm.int.exe.xyz.evil",
            "/v1/messages",
            StatusCode::NOT_FOUND,
        ),
        (
            OWNER_VM,
            "byok.int.exe.xyz",
            "/v1/messages",
            StatusCode::NOT_FOUND,
        ), // anthropic disabled
        (
            OWNER_VM,
            "off.int.exe.xyz",
            "/anthropic/v1/messages",
            StatusCode::NOT_FOUND,
        ),
        (
            OWNER_VM,
            "llm.int.exe.xyz",
            "/openai/openai/v1/chat/completions",
            StatusCode::BAD_REQUEST,
        ),
        (
            OWNER_VM,
            "llm.int.exe.xyz",
            "/openai%2fv1/models",
            StatusCode::BAD_REQUEST,
        ),
        (
            OWNER_VM,
            "llm.int.exe.xyz",
            "/v1/messages/..%2f..%2fx",
            StatusCode::BAD_REQUEST,
        ),
    ]);
    let not_found_bodies: Vec<String> = {
        let mut bodies = Vec::new();
        for (from, host, path, want) in cases {
            mock.clear();
            let c = client(&s, from);
            let (status, _, text) = post(&c, &s, host, path, body.clone(), &[]).await;
            assert_eq!(status, want, "{from} {host}{path}: {text}");
            if want != StatusCode::OK {
                assert!(
                    mock.requests().is_empty(),
                    "{from} {host}{path} reached the upstream"
                );
                let v: Value = serde_json::from_str(&text).unwrap();
                if path.starts_with("/v1/messages") || path.starts_with("/anthropic/") {
                    assert_eq!(v["type"], "error", "Anthropic dialect on {path}: {text}");
                } else {
                    assert!(
                        v["error"]["code"].is_string(),
                        "OpenAI dialect on {path}: {text}"
                    );
                }
                if host != "byok.int.exe.xyz"
                    && host != "off.int.exe.xyz"
                    && want == StatusCode::NOT_FOUND
                {
                    bodies.push(text);
                }
            }
        }
        bodies
    };
    assert!(
        not_found_bodies.windows(2).all(|w| w[0] == w[1]),
        "unreachable hosts all answer alike: {not_found_bodies:#?}"
    );

    // Forged identity headers change nothing: an unknown VM claiming the owner's address.
    let c = client(&s, UNKNOWN);
    let (status, _, _) = post(
        &c,
        &s,
        "llm.int.exe.xyz",
        "/v1/messages",
        body.clone(),
        &[
            ("x-forwarded-for", OWNER_VM),
            ("x-real-ip", OWNER_VM),
            ("forwarded", "for=127.0.0.1"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Raw requests: missing Host, absolute-form target naming another host.
    let raw = |request: String| {
        let addr = s.data;
        tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            String::from_utf8_lossy(&answer).into_owned()
        })
    };
    let payload = r#"{"model":"claude-x"}"#;
    let no_host = format!("POST /v1/messages HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}", payload.len());
    let answer = raw(no_host).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 404"), "{answer}");
    let absolute = format!(
        "POST http://nope.int.exe.xyz/v1/messages HTTP/1.1\r\nhost: llm.int.exe.xyz\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
        payload.len()
    );
    let answer = raw(absolute).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("different hosts"),
        "an authority and a Host that disagree are ambiguous: {answer}"
    );
    for (request, says) in [
        (
            format!("POST /v1/messages HTTP/1.1\r\nhost: llm.int.exe.xyz\r\nhost: nope.int.exe.xyz\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{payload}", payload.len()),
            "more than one Host",
        ),
        (
            format!("POST /v1/messages HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{payload}", payload.len()),
            "must have a Host header",
        ),
    ] {
        let answer = raw(request).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400") && answer.contains(says), "{answer}");
    }
    // Sent raw: an HTTP library would resolve the encoded dots itself.
    let dots = "GET /openai/v1/%2e%2e/%2e%2e/admin HTTP/1.1\r\nhost: llm.int.exe.xyz\r\nconnection: close\r\n\r\n".to_owned();
    let answer = raw(dots).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("'.' or '..' segment"), "{answer}");
    let bad_header =
        "GET /v1/models HTTP/1.1\r\nhost: llm.int.exe.xyz\r\nx-bad: a\rb\r\n\r\n".to_owned();
    let answer = raw(bad_header).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    s.stop().await;
}

#[tokio::test]
async fn a_request_naming_the_gateway_by_address_is_told_how_to_name_an_integration() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = setup(&mock.url()).await;
    let port = s.data.port();
    // No name resolved to the data plane but `localhost`.
    let by_address = |from: &str, data: std::net::SocketAddr| {
        reqwest::Client::builder()
            .local_address(from.parse::<IpAddr>().unwrap())
            .resolve("localhost", data)
            .no_proxy()
            .build()
            .unwrap()
    };
    for (from, host) in [
        (OWNER_VM, format!("127.0.0.1:{port}")),
        (OWNER_VM, format!("localhost:{port}")),
        (UNKNOWN, format!("127.0.0.1:{port}")),
    ] {
        let response = by_address(from, s.data)
            .get(format!("http://{host}/v1/models"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{from} {host}");
        let v: Value = response.json().await.unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        for part in [
            format!("named the gateway by its address ({host})"),
            format!("`curl --resolve llm.int.exe.xyz:{port}:127.0.0.1 http://llm.int.exe.xyz:{port}/v1/models`"),
            "`--default-host llm.int.exe.xyz`".to_owned(),
        ] {
            assert!(message.contains(&part), "{from} {host}: {part:?} not in {message}");
        }
    }
    // What the message suggests works: the integration named, the address resolved to.
    let response = client(&s, OWNER_VM)
        .get(format!("{}/v1/models", s.data_url("llm.int.exe.xyz")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    s.stop().await;

    // And so does the other way: a server started with a default host.
    let dirs = Dirs::new();
    let s = Server::start_with(&dirs, &mock.url(), |c| {
        c.default_host = Some("llm.int.exe.xyz".into())
    })
    .await;
    let response = by_address(OWNER_VM, s.data)
        .get(format!("http://127.0.0.1:{}/v1/models", s.data.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn reflection_answers() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = setup(&mock.url()).await;
    let c = client(&s, OWNER_TAGGED_VM);
    let get = |path: &'static str| {
        let c = c.clone();
        let url = format!("{}{path}", s.data_url("reflection.int.exe.xyz"));
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (status, index) = get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        index.contains("/integrations") && index.contains("/default_port"),
        "{index}"
    );
    assert_eq!(get("/email").await.1, r#"{"email":"owner@localhost"}"#);
    assert_eq!(get("/tags").await.1, r#"{"tags":["llm"]}"#);
    assert_eq!(get("/default_port").await.1, r#"{"default_port":8080}"#);
    assert_eq!(get("/comment").await.1, r#"{"comment":"tagged's comment"}"#);
    let v: Value = serde_json::from_str(&get("/integrations").await.1).unwrap();
    let names: Vec<&str> = v["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["byok", "llm", "off", "reflection", "tagged"]);
    let llm = &v["integrations"][1];
    assert_eq!(llm["help"], "curl https://llm.int.exe.xyz/v1/models");
    assert!(!v.to_string().contains(BYOK_KEY) && !v.to_string().contains("sk-"));
    s.stop().await;
}

#[tokio::test]
async fn upstream_faults_become_clear_errors() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start_with(&dirs, &mock.url(), |c| {
        c.limits.upstream_response = Duration::from_secs(2);
        c.limits.idle_stream = Duration::from_secs(1);
        c.limits.max_body = 64 * 1024;
    })
    .await;
    setup_config(&s).await;
    let c = client(&s, OWNER_VM);
    let host = "llm.int.exe.xyz";
    // Errors pass through: status, body byte for byte, retry headers.
    let (status, headers, body) = post(
        &c,
        &s,
        host,
        "/v1/messages",
        json!({"model": "claude-x"}),
        &[("x-mock-status", "429")],
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(headers["x-should-retry"], "true");
    assert!(
        body.contains("\"rate_limit_error\"") && body.contains("mock 429 error"),
        "{body}"
    );
    let (status, _, body) = post(
        &c,
        &s,
        host,
        "/v1/chat/completions",
        json!({"model": "gpt-5.5"}),
        &[("x-mock-status", "500")],
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("mock 500 error"));
    let (status, _, body) = post(
        &c,
        &s,
        host,
        "/v1/chat/completions",
        json!({"model": "gpt-5.5"}),
        &[("x-mock-fail", "garbage")],
    )
    .await;
    // A 200 that is not what the route speaks is the upstream's fault.
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body.contains("the upstream answered text/html where JSON was expected"),
        "{body}"
    );
    // Reset mid-stream: an SSE error event in the endpoint's dialect.
    let (status, _, body) = post(
        &c,
        &s,
        host,
        "/v1/messages",
        json!({"model": "claude-x", "stream": true}),
        &[("x-mock-fail", "reset")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("event: message_start"), "{body}");
    assert!(
        body.contains("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\""),
        "{body}"
    );
    let (_, _, body) = post(
        &c,
        &s,
        host,
        "/v1/chat/completions",
        json!({"model": "gpt-5.5", "stream": true}),
        &[("x-mock-fail", "reset")],
    )
    .await;
    assert!(
        body.contains("event: error\ndata: {\"error\":{\"message\""),
        "{body}"
    );
    // An idle stream is closed with an error event.
    let (_, _, body) = post(
        &c,
        &s,
        host,
        "/v1/messages",
        json!({"model": "claude-x", "stream": true}),
        &[("x-mock-delay-ms", "1500"), ("x-mock-chunks", "2")],
    )
    .await;
    assert!(body.contains("sent nothing for 1 s"), "{body}");
    // No answer in time: 504.
    let (status, _, body) = post(
        &c,
        &s,
        host,
        "/v1/messages",
        json!({"model": "claude-x"}),
        &[("x-mock-fail", "hang")],
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(body.contains("did not answer within 2 s"), "{body}");
    // Bad input: 413, 400s.
    let big = "x".repeat(100 * 1024);
    let (status, _, body) = post(
        &c,
        &s,
        host,
        "/v1/messages",
        json!({"model": "claude-x", "pad": big}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, _, body) = post(
        &c,
        &s,
        host,
        "/anthropic/v1/messages",
        json!({"model": "claude-x", "pad": big}),
        &[],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "streamed bodies are limited too: {body}"
    );
    let r = c
        .post(format!("{}/v1/messages", s.data_url(host)))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("not a valid JSON object"));
    let (status, _, body) = post(
        &c,
        &s,
        host,
        "/v1/chat/completions",
        json!({"model": 42}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("string \\\"model\\\" field"), "{body}");
    // Liveness, WebSocket.
    let r = c.head(s.data_url(host)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(format!("{}/v1/responses", s.data_url(host)))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
    s.stop().await;

    // Refused connections: 502, and the gateway keeps serving.
    let dirs = Dirs::new();
    let s = Server::start(&dirs, "http://127.0.0.1:9").await;
    let c = client(&s, OWNER_VM);
    let (status, _, body) = post(
        &c,
        &s,
        host,
        "/v1/responses",
        json!({"model": "gpt-5.5"}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("could not be reached"), "{body}");
    let r = c.head(s.data_url(host)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn streams_are_relayed_as_they_arrive() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = setup(&mock.url()).await;
    let c = client(&s, OWNER_VM);
    let started = std::time::Instant::now();
    let mut response = c
        .post(format!("{}/v1/messages", s.data_url("llm.int.exe.xyz")))
        .header("x-mock-delay-ms", "300")
        .header("x-mock-chunks", "4")
        .json(&json!({"model": "claude-x", "stream": true}))
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("event: message_start"));
    let mut frames = 1;
    while let Some(_chunk) = response.chunk().await.unwrap() {
        frames += 1;
    }
    let total = started.elapsed();
    // 9 events 300 ms apart: the first arrives long before the last.
    assert!(total >= Duration::from_millis(2000), "{total:?}");
    assert!(
        first_at < total / 3,
        "first event at {first_at:?} of {total:?}: it was held back"
    );
    assert!(
        frames >= 8,
        "events arrive as separate frames, got {frames}"
    );
    s.stop().await;
}

/// A model that only the provider's own list names (no built-in prefix
/// matches `sora-…`) routes to that provider once the catalog is read.
#[tokio::test]
async fn a_model_only_the_catalog_knows_routes_to_its_provider() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = setup(&mock.url()).await;
    assert!(
        s.live
            .catalog()
            .providers_of("sora-2")
            .contains(Provider::OpenAi),
        "the server filled its catalog from the providers' lists"
    );
    let c = client(&s, OWNER_VM);
    mock.clear();
    let (status, _, text) = post(
        &c,
        &s,
        "llm.int.exe.xyz",
        "/v1/responses",
        json!({"model": "sora-2", "input": "a cat"}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/responses");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {}", GATEWAY_KEYS[1]).as_str())
    );
    // The catalog says which provider; the endpoint still has to fit it
    // (or be one the gateway translates: Anthropic's legacy completions
    // are not).
    let (status, _, text) = post(
        &c,
        &s,
        "llm.int.exe.xyz",
        "/v1/complete",
        json!({"model": "sora-2-pro", "max_tokens_to_sample": 5, "prompt": "x"}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("served by provider openai"), "{text}");
    // A model nobody lists is still unknown.
    let (status, _, text) = post(
        &c,
        &s,
        "llm.int.exe.xyz",
        "/v1/responses",
        json!({"model": "sora-9", "input": "x"}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("model_not_found"), "{text}");
    s.stop().await;
}
