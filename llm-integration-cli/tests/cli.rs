//! The `llm-integration` binary against a real server (in-process, on
//! 127.0.0.1:0): the seed's command forms, exit codes, `-` keys from
//! standard input, `--json`, `login` and completions.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::cli;
use llm_integration_server::testing::{Dirs, Server};

const KEY: &str = "sk-cli-test-0123456789abcdefWXYZ";

#[tokio::test(flavor = "multi_thread")]
async fn seed_forms_and_exit_codes() {
    let dirs = Dirs::new();
    let s = Server::start(&dirs, "http://127.0.0.1:9").await;
    let env = [
        ("LLM_INTEGRATION_SERVER", s.url.as_str()),
        ("LLM_INTEGRATION_TOKEN", s.token.as_str()),
    ];

    let out = cli(&["integrations", "list"], &env, None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("llm.int.exe.xyz"), "{}", out.stdout);

    // The seed's form: the key on standard input, never in the arguments.
    let out = cli(
        &[
            "integrations",
            "add",
            "llm",
            "--name",
            "openai-key",
            "--openai=byok",
            "--openai-key=-",
            "--anthropic=disabled",
            "--fireworks=disabled",
            "--attach",
            "tag:llm",
        ],
        &env,
        Some(&format!("{KEY}\n")),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("set (…WXYZ)"), "{}", out.stdout);
    assert!(!out.stdout.contains(KEY) && !out.stderr.contains(KEY));

    // --json passes through, before or after the command.
    for args in [
        vec!["--json", "integrations", "show", "openai-key"],
        vec!["integrations", "show", "openai-key", "--json"],
    ] {
        let out = cli(&args, &env, None).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["providers"]["openai"]["source"], "byok");
    }

    // Usage errors: exit 2, decided locally (even with no server at all).
    let nowhere = [
        ("LLM_INTEGRATION_SERVER", "http://127.0.0.1:9"),
        ("LLM_INTEGRATION_TOKEN", "x"),
    ];
    for args in [
        vec![
            "integrations",
            "add",
            "llm",
            "--name",
            "x",
            "--anthropic=chatgpt",
        ],
        vec!["integrations", "add", "llm", "--name", "x", "--bogus"],
        vec!["integrations", "attach", "llm", "somewhere"],
    ] {
        let out = cli(&args, &nowhere, None).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with("error:"), "{}", out.stderr);
    }
    // Empty standard input for a `-` key.
    let out = cli(
        &[
            "integrations",
            "edit",
            "llm",
            "--openai=byok",
            "--openai-key=-",
        ],
        &env,
        Some(""),
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("standard input is empty"),
        "{}",
        out.stderr
    );
    // Server-side errors: exit 1 (404), 2 (400).
    let out = cli(&["integrations", "show", "ghost"], &env, None).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("no integration named ghost"),
        "{}",
        out.stderr
    );
    let out = cli(
        &["integrations", "edit", "llm", "--openai=byok"],
        &env,
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    // A command that reports a failure: exit 1, output on stdout.
    let out = cli(&["integrations", "test", "openai-key"], &env, None).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("openai: failed"), "{}", out.stdout);
    // No token, bad token, no server.
    let out = cli(
        &["integrations", "list"],
        &[("LLM_INTEGRATION_SERVER", s.url.as_str())],
        None,
    )
    .await;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            1,
            "error: no access token: set LLM_INTEGRATION_TOKEN, pass --token, or run \
`llm-integration --server URL login`; the server's first start wrote the first user's token to \
llm-integration-data/owner.token (`llm-integration login --token-file \
llm-integration-data/owner.token`)\n"
        )
    );
    // The flag it names is login's.
    let help = cli(&["login", "--help"], &[], None).await;
    assert!(
        help.stdout.contains("--token-file <FILE>"),
        "{}",
        help.stdout
    );
    let out = cli(
        &["integrations", "list"],
        &[
            ("LLM_INTEGRATION_SERVER", s.url.as_str()),
            ("LLM_INTEGRATION_TOKEN", "lli_x"),
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("invalid access token"),
        "{}",
        out.stderr
    );
    let out = cli(&["integrations", "list"], &nowhere, None).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with(
            "error: cannot reach the server at http://127.0.0.1:9 (connection refused); start it"
        ),
        "{}",
        out.stderr
    );

    // Help everywhere, exit 0 (every command: tests/help.rs).
    for args in [
        vec!["--help"],
        vec!["integrations", "--help"],
        vec!["integrations", "add", "llm", "--help"],
        vec!["tag", "--help"],
        vec!["login", "--help"],
        vec!["completions", "--help"],
    ] {
        let out = cli(&args, &nowhere, None).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(out.stdout.contains("Usage"), "{args:?}: {}", out.stdout);
    }
    let out = cli(&["integrations", "add", "llm", "--help"], &nowhere, None).await;
    assert!(out.stdout.contains("--openai-key"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_then_commands_and_completions() {
    let dirs = Dirs::new();
    let s = Server::start(&dirs, "http://127.0.0.1:9").await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("cli.toml");
    let token_file = dirs.data.path().join("owner.token");
    let env = [("LLM_INTEGRATION_CLI_CONFIG", config.to_str().unwrap())];
    let out = cli(
        &[
            "--server",
            &s.url,
            "login",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &env,
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let out = cli(&["integrations", "list"], &env, None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("reflection"));
    // A wrong token is refused and nothing is saved.
    let other = home.path().join("other.toml");
    let out = cli(
        &["--server", &s.url, "login"],
        &[("LLM_INTEGRATION_CLI_CONFIG", other.to_str().unwrap())],
        Some("lli_wrong\n"),
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("refused the token"), "{}", out.stderr);
    assert!(!other.exists());

    let out = cli(&["completions", "bash"], &env, None).await;
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.contains("integrations") && out.stdout.contains("--openai-key"),
        "{}",
        &out.stdout[..200.min(out.stdout.len())]
    );
    let out = cli(&["completions", "tcsh"], &env, None).await;
    assert_eq!(out.code, 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pointed_at_the_data_plane_it_says_so() {
    let dirs = Dirs::new();
    let s = Server::start(&dirs, "http://127.0.0.1:9").await;
    let data_plane = format!("http://{}", s.data);
    let expected = format!(
        "error: the server at {data_plane} did not answer as the admin API (POST /exec); \
is that the data-plane port? The admin listener is 127.0.0.1:7701 by default \
(--server / LLM_INTEGRATION_SERVER)\n"
    );
    let env = [
        ("LLM_INTEGRATION_SERVER", data_plane.as_str()),
        ("LLM_INTEGRATION_TOKEN", s.token.as_str()),
    ];
    let out = cli(&["integrations", "list"], &env, None).await;
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, expected);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    // `login` checks the token there first, and saves nothing.
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("cli.toml");
    let out = cli(
        &["--server", &data_plane, "--token", &s.token, "login"],
        &[("LLM_INTEGRATION_CLI_CONFIG", config.to_str().unwrap())],
        None,
    )
    .await;
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, expected);
    assert!(!config.exists());
    // A server address without a scheme is not a URL: named, with the form to use.
    let out = cli(
        &["integrations", "list"],
        &[
            ("LLM_INTEGRATION_SERVER", "127.0.0.1:7701"),
            ("LLM_INTEGRATION_TOKEN", "x"),
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with(
            "error: the server URL \"127.0.0.1:7701\" is not a URL; give it as http://HOST:PORT"
        ),
        "{}",
        out.stderr
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chatgpt_login_shows_its_progress() {
    use llm_integration_mock::chatgpt::{ChatGptBehaviour, MockChatGpt};
    let chatgpt = MockChatGpt::start(ChatGptBehaviour {
        pending_polls: 1,
        ..ChatGptBehaviour::default()
    })
    .await
    .unwrap();
    let dirs = Dirs::new();
    let endpoints = llm_integration_server::chatgpt::ChatGptEndpoints {
        auth: chatgpt.auth_url(),
        backend: chatgpt.backend_url(),
    };
    let s = Server::start_with(&dirs, "http://127.0.0.1:9", move |c| c.chatgpt = endpoints).await;
    let env = [
        ("LLM_INTEGRATION_SERVER", s.url.as_str()),
        ("LLM_INTEGRATION_TOKEN", s.token.as_str()),
    ];
    let out = cli(
        &["integrations", "setup", "chatgpt", "--name", "work"],
        &env,
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let code_at = out.stdout.find("MOCK-CODE").unwrap();
    let waiting_at = out.stdout.find("Waiting for authorization...").unwrap();
    let done_at = out.stdout.find("Connected ChatGPT account work").unwrap();
    assert!(
        code_at < waiting_at && waiting_at < done_at,
        "{}",
        out.stdout
    );
    chatgpt.set(|b| b.deny = true);
    let out = cli(
        &["integrations", "setup", "chatgpt", "--name", "other"],
        &env,
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("error: the authorization was denied"),
        "{}",
        out.stdout
    );
    let out = cli(&["integrations", "setup", "chatgpt", "--list"], &env, None).await;
    assert!(
        out.stdout
            .contains("work\tconnected\tsomeone@example.com\tplan plus"),
        "{}",
        out.stdout
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_flags_after_the_command_are_shown_their_place() {
    let dirs = Dirs::new();
    let s = Server::start(&dirs, "http://127.0.0.1:9").await;
    let token = s.token.as_str();
    let token_flag = format!("--token={token}");
    let server_flag = format!("--server={}", s.url);
    for (args, hint) in [
        (
            vec!["integrations", "list", "--token", token],
            "llm-integration --token … integrations list",
        ),
        (
            vec!["integrations", "list", token_flag.as_str()],
            "llm-integration --token … integrations list",
        ),
        (
            vec![
                "integrations",
                "list",
                "--server",
                &s.url,
                token_flag.as_str(),
            ],
            "llm-integration --server … --token … integrations list",
        ),
        (
            vec![
                "integrations",
                "show",
                "llm",
                server_flag.as_str(),
                "--token",
                token,
            ],
            "llm-integration --server … --token … integrations show llm",
        ),
        (
            vec![
                "integrations",
                "add",
                "llm",
                "--name",
                "x",
                "--openai-key",
                KEY,
                "--token",
                token,
            ],
            "llm-integration --token … integrations add llm …",
        ),
        (
            vec!["login", token_flag.as_str()],
            "llm-integration --token … login",
        ),
        (
            vec!["login", "--token", token],
            "llm-integration --token … login",
        ),
    ] {
        let out = cli(&args, &[], None).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with("error:"), "{}", out.stderr);
        assert!(
            out.stderr.ends_with(&format!(
                "\n--server and --token go before the command: {hint}\n"
            )),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains(token), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains(KEY), "{args:?}: {}", out.stderr);
    }
    // A usage error with the flags in their place gets no such line.
    let out = cli(
        &["--token", token, "integrations", "list", "--bogus"],
        &[],
        None,
    )
    .await;
    assert_eq!(out.code, 2);
    assert!(
        !out.stderr.contains("go before the command"),
        "{}",
        out.stderr
    );
    // And where the line puts them, they work.
    let out = cli(
        &["--server", &s.url, "--token", token, "integrations", "list"],
        &[],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    s.stop().await;
}
