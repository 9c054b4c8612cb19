//! The `llm-integration` binary against servers that answer what a
//! hostile, compromised or broken server would (fake ones, on
//! 127.0.0.1:0): terminal escapes in every kind of answer, redirects, a
//! server URL with a password, malformed answers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{assert_printable, cli, head, FakeServer};

const TOKEN: &str = "lli_hostile-test-token-0123456789";
const KEY: &str = "sk-hostile-test-0123456789abcdefWXYZ";

fn env(server: &FakeServer) -> [(&'static str, String); 2] {
    [
        ("LLM_INTEGRATION_SERVER", server.url.clone()),
        ("LLM_INTEGRATION_TOKEN", TOKEN.to_owned()),
    ]
}

async fn run(server: &FakeServer, args: &[&str], stdin: Option<&str>) -> common::Out {
    let env = env(server);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    cli(args, &env, stdin).await
}

/// A text answer that tries to clear the screen, rewrite a line with CR,
/// reorder it with bidi overrides and hide characters.
const EVIL_TEXT: &str = "openai: failed\r\x1b[2Kopenai: ok\n\x1b[2J\x1b]0;title\x07\
model gpt\u{202e}5.5\u{2066}x\u{2069} \u{200b}\u{feff}\u{9b}31m\x7f\ttab\n";

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_printed_with_escapes_spelled_out() {
    // A command's answer, on standard output, and an error, on standard error.
    let server = FakeServer::start(|request| {
        let (status, outcome) = if request.contains("\"show\"") {
            ("404 Not Found", "failed")
        } else {
            ("200 OK", "failed")
        };
        let outcome = format!("llm-integration-outcome: {outcome}");
        vec![
            head(
                status,
                &[
                    outcome.as_bytes(),
                    b"content-type: text/plain; charset=utf-8",
                ],
            ),
            EVIL_TEXT.as_bytes().to_vec(),
        ]
    })
    .await;
    let out = run(&server, &["integrations", "test", "llm"], None).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_printable(&out.stdout);
    assert!(
        out.stdout.starts_with(
            "openai: failed\\u{d}\\u{1b}[2Kopenai: ok\n\\u{1b}[2J\\u{1b}]0;title\\u{7}\
model gpt\\u{202e}5.5\\u{2066}x\\u{2069} \\u{200b}\\u{feff}\\u{9b}31m\\u{7f}\ttab\n"
        ),
        "{:?}",
        out.stdout
    );
    let out = run(&server, &["integrations", "show", "llm"], None).await;
    assert_eq!(out.code, 1);
    assert!(out.stdout.is_empty());
    assert_printable(&out.stderr);
    assert!(
        out.stderr
            .starts_with("openai: failed\\u{d}\\u{1b}[2Kopenai: ok\n"),
        "{:?}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_answers_stay_the_same_json_with_escapes() {
    // Valid JSON may hold DEL, C1 controls and bidi characters raw in its
    // strings, and CR between its tokens.
    let evil_json =
        "{\r\n  \"name\": \"llm\u{202e}\u{200b}\",\r\n  \"model\": \"gpt\u{7f}\u{9b}2J\\u001b\",\
\"list\": [1, 2.5, true, null]}";
    let expected: serde_json::Value = serde_json::from_str(evil_json).unwrap();
    let server = FakeServer::start(move |request| {
        let body: Vec<u8> = if request.contains("\"broken\"") {
            // Not JSON at all, though --json asked for it.
            b"<html>\x1b[2J\x1b[31mproxy error\r\xff</html>".to_vec()
        } else {
            evil_json.as_bytes().to_vec()
        };
        vec![
            head(
                "200 OK",
                &[
                    b"llm-integration-outcome: ok",
                    b"content-type: application/json",
                ],
            ),
            body,
        ]
    })
    .await;
    for args in [
        vec!["--json", "integrations", "show", "llm"],
        vec!["integrations", "show", "llm", "--json"],
    ] {
        let out = run(&server, &args, None).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_printable(&out.stdout);
        let printed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(printed, expected, "{}", out.stdout);
        assert!(
            out.stdout.contains("\"llm\\u202e\\u200b\""),
            "{}",
            out.stdout
        );
        // Key order and layout are the server's.
        assert!(out.stdout.starts_with("{\n  \"name\""), "{}", out.stdout);
    }
    // --json asked the server for JSON errors too.
    assert!(server
        .requests()
        .iter()
        .all(|r| r.to_ascii_lowercase().contains("accept: application/json")));
    let out = run(&server, &["--json", "integrations", "show", "broken"], None).await;
    assert_printable(&out.stdout);
    assert_eq!(
        out.stdout,
        "<html>\\u{1b}[2J\\u{1b}[31mproxy error\\u{d}\u{fffd}</html>\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_answers_are_escaped_as_they_come() {
    // The ChatGPT login streams: a code with escapes, a forged "Connected"
    // line, a character split between two writes, then a failure.
    let server = FakeServer::start(|request| {
        let json = request.contains("--json");
        let mut parts = vec![head(
            "200 OK",
            &[
                b"llm-integration-outcome: stream",
                b"content-type: text/plain; charset=utf-8",
            ],
        )];
        if json {
            parts.push(
                "{\"event\":\"code\",\"user_code\":\"ABCD\u{202e}-EFGH\"}\n{\"event\":\"connected\",\"detail\":\"plan\u{9b}"
                    .as_bytes()
                    .to_vec(),
            );
            parts.push(b"2J\"}\n{\"event\":\"error\",\"message\":\"denied\x7f\"}\n".to_vec());
        } else {
            parts.push(b"Enter this code:\n  AB\x1b[2J\x1b[HCD\n".to_vec());
            let forged = "\r\x1b[2KConnected ChatGPT account work (someone\u{202e}moc.elpmaxe@).\n";
            let (start, end) = forged.as_bytes().split_at(forged.find('\u{202e}').unwrap() + 1);
            parts.push(start.to_vec());
            parts.push(end.to_vec());
            parts.push(b"error: the authorization was denied\x1b[1A".to_vec());
        }
        parts
    })
    .await;
    let out = run(
        &server,
        &["integrations", "setup", "chatgpt", "--name", "work"],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_printable(&out.stdout);
    assert_eq!(
        out.stdout,
        "Enter this code:\n  AB\\u{1b}[2J\\u{1b}[HCD\n\
\\u{d}\\u{1b}[2KConnected ChatGPT account work (someone\\u{202e}moc.elpmaxe@).\n\
error: the authorization was denied\\u{1b}[1A\n"
    );

    let out = run(
        &server,
        &[
            "integrations",
            "setup",
            "chatgpt",
            "--name",
            "work",
            "--json",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_printable(&out.stdout);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{}", out.stdout);
    assert_eq!(events[0]["user_code"], "ABCD\u{202e}-EFGH");
    assert_eq!(events[1]["detail"], "plan\u{9b}2J");
    assert_eq!(events[2]["event"], "error");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_reported_not_followed() {
    // Where a followed redirect would re-send the command, with its key.
    let elsewhere = FakeServer::start(|_| {
        vec![
            head("200 OK", &[b"llm-integration-outcome: ok"]),
            b"ok\n".to_vec(),
        ]
    })
    .await;
    let location = format!("location: {}/exec\u{202e}", elsewhere.url);
    let server =
        FakeServer::start(move |_| vec![head("307 Temporary Redirect", &[location.as_bytes()])])
            .await;
    let add = [
        "integrations",
        "add",
        "llm",
        "--name",
        "k",
        "--openai=byok",
        "--openai-key=-",
    ];
    let out = run(&server, &add, Some(KEY)).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "error: the server at {} answered 307 (redirect to {}/exec\\u{{202e}}); give its \
final address with --server\n",
            server.url, elsewhere.url
        )
    );
    assert!(!out.stderr.contains(KEY) && !out.stdout.contains(KEY));
    assert_eq!(server.requests().len(), 1);
    // `login` does not follow it either, and saves nothing.
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("cli.toml");
    let out = cli(
        &["--server", &server.url, "--token", TOKEN, "login"],
        &[("LLM_INTEGRATION_CLI_CONFIG", config.to_str().unwrap())],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("answered 307 (redirect to"),
        "{}",
        out.stderr
    );
    assert!(!config.exists());
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
    // A 3xx without a Location.
    let server = FakeServer::start(|_| vec![head("308 Permanent Redirect", &[])]).await;
    let out = run(&server, &["integrations", "list"], None).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "answered 308 (a redirect without a Location); give its final address with --server"
        ),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_url_with_a_password_is_refused_before_sending() {
    let server =
        FakeServer::start(|_| vec![head("200 OK", &[b"llm-integration-outcome: ok"])]).await;
    let address = server.url.trim_start_matches("http://");
    for url in [
        format!("http://bob:hunter2-pw@{address}"),
        format!("http://hunter2-pw@{address}/"),
        format!("hunter2-pw:x@{address}"),
    ] {
        for args in [
            vec!["--server", url.as_str(), "integrations", "list"],
            vec!["--server", url.as_str(), "login"],
        ] {
            let out = cli(&args, &[("LLM_INTEGRATION_TOKEN", TOKEN)], None).await;
            assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
            assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
            assert!(
                out.stderr.starts_with("error: the server URL "),
                "{}",
                out.stderr
            );
        }
        let out = cli(
            &["integrations", "list"],
            &[
                ("LLM_INTEGRATION_SERVER", url.as_str()),
                ("LLM_INTEGRATION_TOKEN", TOKEN),
            ],
            None,
        )
        .await;
        assert_eq!(out.code, 2);
        assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    }
    let out = cli(
        &[
            "--server",
            &format!("http://bob:hunter2-pw@{address}"),
            "integrations",
            "list",
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(
        out.stderr,
        format!(
            "error: the server URL http://…@{address} has a user name or password (the part \
before @), which the server does not take; give the server as http://{address} and the access \
token with --token or LLM_INTEGRATION_TOKEN (--server / LLM_INTEGRATION_SERVER)\n"
        )
    );
    assert!(server.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_answer_is_named_as_one() {
    let server = FakeServer::start(|request| {
        let header: &[u8] = if request.contains("\"escape\"") {
            b"x-evil: \x1b[2Jcleared"
        } else if request.contains("\"outcome\"") {
            b"llm-integration-outcome: ok\xe2\x80\xae\x80"
        } else {
            b"HTTP/1.1 200 OK"
        };
        vec![
            head("200 OK", &[header, b"llm-integration-outcome: ok"]),
            b"ok\n".to_vec(),
        ]
    })
    .await;
    let out = run(&server, &["integrations", "show", "escape"], None).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "error: the server at {} sent a malformed answer: a response header is not valid \
HTTP (it holds a control character such as ESC, or a byte HTTP does not allow); is --server / \
LLM_INTEGRATION_SERVER an llm-integration admin listener (127.0.0.1:7701 by default), with \
nothing in between that alters its answers?\n",
            server.url
        )
    );
    let out = run(&server, &["integrations", "show", "outcome"], None).await;
    assert_eq!(out.code, 1);
    assert_printable(&out.stderr);
    assert!(
        out.stderr.starts_with(&format!(
            "error: the server at {} sent a malformed answer: its llm-integration-outcome \
header is \"ok\\u{{202e}}\u{fffd}\", not ok, failed or stream;",
            server.url
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("ok"), "{}", out.stdout);
    // Not HTTP at all.
    let garbage = FakeServer::start(|_| vec![b"\x1b[2JSSH-2.0-OpenSSH\r\n\r\n".to_vec()]).await;
    let out = run(&garbage, &["integrations", "list"], None).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("sent a malformed answer: it is not HTTP/1.x"),
        "{}",
        out.stderr
    );
    assert_printable(&out.stderr);
}
