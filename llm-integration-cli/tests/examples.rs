//! The repository's examples, run as built (`target/debug/examples/NAME`;
//! `cargo test --workspace` and `cargo build --examples` build them): their
//! help names them as README runs them, their hints give the form to type,
//! `discover` prints what a hostile gateway answers with escapes spelled
//! out, and `route` speaks in words.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{assert_printable, head, FakeServer};

/// The built example `name`, beside this test's own directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built; `cargo build --examples` builds the examples (`cargo test --workspace` does too)",
        path.display()
    );
    path
}

async fn run(name: &str, args: &[String]) -> Output {
    let mut command = Command::new(example(name));
    command.args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_are_named_as_readme_runs_them() {
    for name in [
        "discover",
        "mock_upstream",
        "route",
        "embed",
        "chatgpt_mock",
    ] {
        let out = run(name, &["--help".into()]).await;
        let help = text(&out.stdout);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert!(help.contains(&format!("Usage: {name}")), "{name}:\n{help}");
        assert!(!help.contains("cargo run"), "{name}:\n{help}");
    }
    let help = text(&run("discover", &["--help".into()]).await.stdout);
    assert!(help.contains("README's Quick start shows"), "{help}");
    assert!(!help.contains("(Offline)"), "{help}");

    // An address in use: the hint is the command to type.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let next = format!("127.0.0.1:{}", addr.port().wrapping_add(1));
    for name in ["mock_upstream", "chatgpt_mock"] {
        let out = run(name, &[addr.to_string()]).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("e.g. target/release/examples/{name} {next} (and")),
            "{name}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn discover_escapes_what_the_gateway_says() {
    let gateway = FakeServer::start(|request| {
        let host = request
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .unwrap_or_default()
            .to_owned();
        let body = if host.starts_with("reflection.") {
            serde_json::json!({"integrations": [
                {"name": "llm\u{1b}[2J", "type": "llm", "hostname": "llm.int.exe.xyz",
                 "help": "models\r\u{1b}[2KConnected\u{202e}txt"},
                {"name": "evil", "type": "llm", "hostname": "x@evil.example\u{1b}[31m"},
            ]})
            .to_string()
        } else {
            serde_json::json!({
                "data": [{"id": "gpt\u{1b}]0;owned\u{7}\u{200b}-5", "owned_by": "openai\u{2066}"}],
                "failed_providers": [{"provider": "anthropic", "message": "HTTP 500\r\nok\u{9b}"}],
            })
            .to_string()
        };
        vec![
            head("200 OK", &[b"content-type: application/json"]),
            body.into_bytes(),
        ]
    })
    .await;
    let address = gateway.url.trim_start_matches("http://").to_owned();
    let out = run("discover", std::slice::from_ref(&address)).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_printable(&stdout);
    for expected in [
        "llm\\u{1b}[2J",
        "models\\u{d}\\u{1b}[2KConnected\\u{202e}txt",
        "skipped integration evil: its hostname x@evil.example\\u{1b}[31m is not a DNS name",
        "gpt\\u{1b}]0;owned\\u{7}\\u{200b}-5",
        "openai\\u{2066}",
        "(anthropic unavailable: HTTP 500\\u{d}\\u{a}ok\\u{9b})",
    ] {
        assert!(stdout.contains(expected), "{expected}:\n{stdout}");
    }
    // Only the gateway was asked, for reflection and the DNS-named integration.
    let hosts: Vec<String> = gateway
        .requests()
        .iter()
        .filter_map(|r| {
            r.lines()
                .find_map(|l| l.strip_prefix("host: "))
                .map(str::to_owned)
        })
        .collect();
    let port = address.rsplit(':').next().unwrap();
    assert_eq!(
        hosts,
        [
            format!("reflection.int.exe.xyz:{port}"),
            format!("llm.int.exe.xyz:{port}")
        ]
    );

    // The gateway's error message, on standard error, escaped too.
    let refusing = FakeServer::start(|_| {
        vec![
            head("404 Not Found", &[b"content-type: application/json"]),
            serde_json::json!({"error": {"message": "no such\u{1b}[2J\rintegration"}})
                .to_string()
                .into_bytes(),
        ]
    })
    .await;
    let out = run(
        "discover",
        &[refusing.url.trim_start_matches("http://").to_owned()],
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_printable(&stderr);
    assert!(stderr.contains("no such\\u{1b}[2J\\u{d}integration; if the server's --domain is not exe.xyz, pass it: target/release/examples/discover "), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn route_speaks_in_words() {
    let out = run("route", &[]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for debug in ["OpenAi", "Field(", "Index", "{ ", "Anthropic)", "Some("] {
        assert!(!stdout.contains(debug), "{debug:?} in:\n{stdout}");
    }
    for words in [
        "-> forward to openai at https://api.openai.com/v1/chat/completions (integration openai-key, source byok, key set (…wxyz))",
        "-> list the models of anthropic, openai, fireworks in OpenAI's list shape",
        "-> reflection answers /integrations for VM devbox",
        "-> refused, 404 Not Found: provider anthropic is disabled on integration openai-key;",
        "body, in Anthropic's error shape: {\"type\":\"error\"",
    ] {
        assert!(stdout.contains(words), "{words}:\n{stdout}");
    }
}
