//! The real clients through the gateway, configured as the seed document
//! shows: Claude Code (`ANTHROPIC_BASE_URL` with a placeholder key, and
//! `~/.claude/settings.json` with an `apiKeyHelper`) and Codex CLI (a
//! custom model provider, as `-c` flags and as `~/.codex/config.toml`),
//! each to a completed turn, a tool call included; Codex through a ChatGPT
//! subscription too. Across the API families (translated by the gateway):
//! Claude Code on a GPT model and Codex on a Claude model, each completing
//! a tool-using turn, and Claude Code on a ChatGPT subscription.
//!
//! The clients are installed by `.ci/run` (`npm ci` in `tests/clients`,
//! pinned versions). They reach the gateway at `http://127.0.0.1:PORT`,
//! which serves its `default_host` integration: no DNS, no system file
//! edited. Telemetry and update checks are off; nothing leaves loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use llm_integration_mock::MockUpstream;
use llm_integration_server::testing::{Dirs, Process, Server, GATEWAY_KEYS};
use serde_json::json;

fn client(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("tests/clients/node_modules/.bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run .ci/install (it runs `npm ci` in tests/clients)",
        path.display()
    );
    path
}

/// The environment every client run gets: a private HOME, no telemetry,
/// no update checks, no proxy.
fn quiet(cmd: &mut Command, home: &Path) {
    std::fs::create_dir_all(home.join(".codex")).unwrap();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CODEX_HOME", home.join(".codex"))
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("CODEX_DISABLE_UPDATE_CHECK", "1")
        .env("NO_COLOR", "1")
        .current_dir(home);
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn gateway(mock: &MockUpstream, default_host: &str) -> (Dirs, Server) {
    let dirs = Dirs::new();
    let host = default_host.to_owned();
    let s = Server::start_with(&dirs, &mock.url(), move |c| c.default_host = Some(host)).await;
    (dirs, s)
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_with_env_and_with_settings_json() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = gateway(&mock, "llm.int.exe.xyz").await;
    let base = format!("http://127.0.0.1:{}", s.data.port());
    let home = tempfile::tempdir().unwrap();

    // ANTHROPIC_BASE_URL and a placeholder ANTHROPIC_API_KEY.
    let mut cmd = Command::new(client("claude"));
    quiet(&mut cmd, home.path());
    cmd.env("ANTHROPIC_BASE_URL", &base)
        .env("ANTHROPIC_API_KEY", "implicit")
        .args(["-p", "Say hello", "--model", "claude-sonnet-4-6"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tok0 tok1 tok2"),
        "{}",
        text(&out)
    );
    let messages: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1/messages"))
        .collect();
    assert!(!messages.is_empty());
    for r in &messages {
        assert_eq!(r.header("x-api-key"), Some(GATEWAY_KEYS[0]), "{}", r.path);
        assert_eq!(r.header("authorization"), None);
        assert!(
            r.header("user-agent")
                .is_some_and(|ua| ua.starts_with("claude-cli/2.1.332")),
            "{:?}",
            r.header("user-agent")
        );
        assert!(r.header("anthropic-beta").is_some(), "beta headers pass");
        assert!(r.header("anthropic-version").is_some());
        let all: String = r
            .headers
            .iter()
            .map(|(k, v)| format!("{k}:{}", v.to_str().unwrap_or("")))
            .collect();
        assert!(!all.contains("implicit"), "{all}");
    }
    assert!(messages.iter().any(
        |r| r.path == "/v1/messages?beta=true" && r.json().is_some_and(|b| b["stream"] == true)
    ));

    // The seed's ~/.claude/settings.json: apiKeyHelper and env.
    mock.clear();
    let settings = home.path().join(".claude");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(
        settings.join("settings.json"),
        serde_json::json!({"apiKeyHelper": "printf exe-gateway", "env": {"ANTHROPIC_BASE_URL": base}}).to_string(),
    )
    .unwrap();
    let mut cmd = Command::new(client("claude"));
    quiet(&mut cmd, home.path());
    cmd.args(["-p", "Say hello", "--model", "claude-sonnet-4-6"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tok0 tok1 tok2"),
        "{}",
        text(&out)
    );
    let requests = mock.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        let all: String = r
            .headers
            .iter()
            .map(|(k, v)| format!("{k}:{}", v.to_str().unwrap_or("")))
            .collect();
        assert!(
            !all.contains("exe-gateway"),
            "the helper's placeholder reached the upstream: {all}"
        );
        assert_eq!(r.header("x-api-key"), Some(GATEWAY_KEYS[0]));
    }

    // A tool call: the mock asks for Bash, Claude Code runs it and sends the result back.
    mock.clear();
    mock.set_tool_scenario(Some("Bash"));
    let mut cmd = Command::new(client("claude"));
    quiet(&mut cmd, home.path());
    cmd.args([
        "-p",
        "Compute it with the shell",
        "--model",
        "claude-sonnet-4-6",
        "--allowedTools",
        "Bash",
    ]);
    let out = run(cmd).await;
    mock.set_tool_scenario(None);
    assert!(out.status.success(), "{}", text(&out));
    let followed: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("tool_result"))
        .collect();
    assert!(
        !followed.is_empty(),
        "no request carried the tool's result: {}",
        text(&out)
    );
    let body = String::from_utf8_lossy(&followed[0].body).into_owned();
    assert!(
        body.contains("42"),
        "the result of `echo $((6*7))` arrived intact: {body}"
    );
    assert_eq!(followed[0].header("x-api-key"), Some(GATEWAY_KEYS[0]));
    s.stop().await;
}

fn codex(home: &Path, base: &str, flags: bool) -> Command {
    codex_on(home, base, flags, "gpt-5.5")
}

fn codex_on(home: &Path, base: &str, flags: bool, model: &str) -> Command {
    let mut cmd = Command::new(client("codex"));
    quiet(&mut cmd, home);
    cmd.args(["exec", "--skip-git-repo-check", "--model", model]);
    if flags {
        cmd.args([
            "-c",
            "model_provider=exe-llm",
            "-c",
            "model_providers.exe-llm.name=\"exe-llm\"",
            "-c",
            &format!("model_providers.exe-llm.base_url=\"{base}/v1\""),
            "-c",
            "model_providers.exe-llm.requires_openai_auth=false",
        ]);
    } else {
        let dir = home.join(".codex");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "model_provider = \"exe-llm\"\n\n[model_providers.exe-llm]\nname = \"exe-llm\"\nbase_url = \"{base}/v1\"\nrequires_openai_auth = false\n"
            ),
        )
        .unwrap();
    }
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_with_flags_and_with_config_toml() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = gateway(&mock, "llm.int.exe.xyz").await;
    let base = format!("http://127.0.0.1:{}", s.data.port());
    for flags in [true, false] {
        mock.clear();
        let home = tempfile::tempdir().unwrap();
        let mut cmd = codex(home.path(), &base, flags);
        cmd.arg("Say hello");
        let out = run(cmd).await;
        assert!(out.status.success(), "flags={flags}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("tok0 tok1 tok2"),
            "{}",
            text(&out)
        );
        let responses: Vec<_> = mock
            .requests()
            .into_iter()
            .filter(|r| r.path == "/v1/responses")
            .collect();
        assert!(!responses.is_empty(), "{}", text(&out));
        for r in &responses {
            assert_eq!(
                r.header("authorization"),
                Some(format!("Bearer {}", GATEWAY_KEYS[1]).as_str())
            );
            assert!(
                r.header("originator")
                    .is_some_and(|o| o.starts_with("codex")),
                "{:?}",
                r.header("originator")
            );
            assert!(
                r.header("user-agent")
                    .is_some_and(|ua| ua.contains("0.171.0")),
                "{:?}",
                r.header("user-agent")
            );
            assert_eq!(r.json().unwrap()["stream"], true);
        }
    }

    // A tool call: the mock asks for a shell command; Codex runs it and sends the output back.
    mock.clear();
    let home = tempfile::tempdir().unwrap();
    let mut probe = codex(home.path(), &base, true);
    probe.arg("Say hello");
    run(probe).await;
    let tools = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/responses")
        .unwrap()
        .json()
        .unwrap()["tools"]
        .clone();
    let names: Vec<String> = tools
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    let shell = ["shell", "exec_command", "local_shell"]
        .into_iter()
        .find(|n| names.iter().any(|x| x == n))
        .unwrap_or_else(|| panic!("no shell tool in {names:?}"));
    mock.clear();
    mock.set_tool_scenario(Some(shell));
    let mut cmd = codex(home.path(), &base, true);
    cmd.args([
        "--dangerously-bypass-approvals-and-sandbox",
        "Compute it with the shell",
    ]);
    let out = run(cmd).await;
    mock.set_tool_scenario(None);
    assert!(out.status.success(), "{}", text(&out));
    let followed: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("function_call_output"))
        .collect();
    assert!(
        !followed.is_empty(),
        "no request carried the tool's output (tool {shell}): {}",
        text(&out)
    );
    let body = String::from_utf8_lossy(&followed[0].body).into_owned();
    assert!(
        body.contains("42"),
        "the output of `echo $((6*7))` arrived intact: {body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_through_a_chatgpt_subscription() {
    use llm_integration_mock::chatgpt::{ChatGptBehaviour, MockChatGpt, ACCOUNT_ID};
    let chatgpt = MockChatGpt::start(ChatGptBehaviour {
        pending_polls: 0,
        ..ChatGptBehaviour::default()
    })
    .await
    .unwrap();
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let endpoints = llm_integration_server::chatgpt::ChatGptEndpoints {
        auth: chatgpt.auth_url(),
        backend: chatgpt.backend_url(),
    };
    let s = Server::start_with(&dirs, &mock.url(), move |c| {
        c.chatgpt = endpoints;
        c.default_host = Some("chatgpt-llm.int.exe.xyz".into());
    })
    .await;
    let answer = s
        .http
        .post(format!("{}/exec", s.url))
        .bearer_auth(&s.token)
        .body("integrations setup chatgpt --name work")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answer.contains("Connected"), "{answer}");
    s.ok("integrations add llm --name chatgpt-llm --openai=chatgpt --openai-account=work --anthropic=disabled --fireworks=disabled --attach auto:all").await;
    let home = tempfile::tempdir().unwrap();
    let mut cmd = codex(
        home.path(),
        &format!("http://127.0.0.1:{}", s.data.port()),
        false,
    );
    cmd.arg("Say hello");
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tok0 tok1 tok2"),
        "{}",
        text(&out)
    );
    let seen = chatgpt.backend_requests();
    assert!(!seen.is_empty());
    assert_eq!(seen[0].header("chatgpt-account-id"), Some(ACCOUNT_ID));
    assert_eq!(seen[0].json().unwrap()["store"], false);
    // Only the platform's model-catalog refresh reaches the OpenAI API.
    let inference: Vec<String> = mock
        .requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/v1/models") && !r.path.contains("/v1/models?"))
        .map(|r| r.path)
        .collect();
    assert!(
        inference.is_empty(),
        "nothing went to the OpenAI API: {inference:?}"
    );
    s.stop().await;
}

/// The whole path with the real binaries: `llm-integration-server` started
/// as an operator would, an integration configured with the
/// `llm-integration` CLI, then Claude Code and Codex through it.
#[tokio::test(flavor = "multi_thread")]
async fn real_binaries_end_to_end() {
    use std::process::Stdio;
    let mock = MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_llm-integration-server"));
    command
        .env("LLM_INTEGRATION_DEFAULT_HOST", "clients.int.exe.xyz")
        .env("LLM_INTEGRATION_ANTHROPIC_BASE_URL", mock.url())
        .env("LLM_INTEGRATION_OPENAI_BASE_URL", mock.url())
        .env("LLM_INTEGRATION_FIREWORKS_BASE_URL", mock.url());
    let mut server = Process::start(command, dir.path());
    let (admin, data) = (server.admin.clone(), server.data.clone());
    // Configure with the CLI: keys from standard input, never in arguments.
    let cli = PathBuf::from(env!("CARGO_BIN_EXE_llm-integration-server"))
        .with_file_name("llm-integration");
    assert!(
        cli.exists(),
        "{} is missing: `cargo test --workspace` builds it (or cargo build -p llm-integration-cli)",
        cli.display()
    );
    let token =
        std::fs::read_to_string(dir.path().join("llm-integration-data/owner.token")).unwrap();
    let mut add = Command::new(&cli);
    add.env("LLM_INTEGRATION_SERVER", &admin)
        .env("LLM_INTEGRATION_TOKEN", token.trim())
        .args([
            "integrations",
            "add",
            "llm",
            "--name",
            "clients",
            "--anthropic=byok",
            "--anthropic-key=-",
            "--openai=byok",
            "--openai-key=-",
            "--fireworks=disabled",
            "--attach",
            "vm:local",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        let mut child = add.spawn().unwrap();
        std::io::Write::write_all(
            &mut child.stdin.take().unwrap(),
            b"sk-ant-e2e-00000000000000aaaa\nsk-oai-e2e-000000000000000bbbb\n",
        )
        .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("set (…aaaa)"),
        "{}",
        text(&out)
    );

    let home = tempfile::tempdir().unwrap();
    let mut claude = Command::new(client("claude"));
    quiet(&mut claude, home.path());
    claude
        .env("ANTHROPIC_BASE_URL", &data)
        .env("ANTHROPIC_API_KEY", "implicit")
        .args(["-p", "Say hello", "--model", "claude-sonnet-4-6"]);
    let out = run(claude).await;
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("tok0 tok1 tok2"),
        "{}",
        text(&out)
    );
    let seen = mock
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/v1/messages"))
        .unwrap();
    assert_eq!(
        seen.header("x-api-key"),
        Some("sk-ant-e2e-00000000000000aaaa"),
        "the stored key was injected"
    );

    mock.clear();
    let mut codex = codex(home.path(), &data, true);
    codex.arg("Say hello");
    let out = run(codex).await;
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("tok0 tok1 tok2"),
        "{}",
        text(&out)
    );
    let seen = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/responses")
        .unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer sk-oai-e2e-000000000000000bbbb")
    );

    server.sigterm();
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert!(status.success());
}

/// Claude Code with no `--model` (its default model and output limit) on a
/// fresh account: the default allocation and `gateway` sources are enough
/// to complete its turn.
#[tokio::test(flavor = "multi_thread")]
async fn claude_code_default_model_on_a_fresh_account() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = gateway(&mock, "llm.int.exe.xyz").await;
    let base = format!("http://127.0.0.1:{}", s.data.port());
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(client("claude"));
    quiet(&mut cmd, home.path());
    cmd.env("ANTHROPIC_BASE_URL", &base)
        .env("ANTHROPIC_API_KEY", "implicit")
        .args(["-p", "Say hello"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tok0 tok1 tok2"),
        "{}",
        text(&out)
    );
    let turn = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1/messages"))
        .filter_map(|r| r.json())
        .find(|b| b["stream"] == true)
        .expect("a streamed turn reached the upstream");
    let model = turn["model"].as_str().unwrap_or_default().to_owned();
    assert!(model.starts_with("claude-"), "{turn}");
    // Priced as a model the table knows, not the provider's default.
    let (_, how) = llm_integration_core::pricing::PriceTable::default()
        .lookup(llm_integration_core::Provider::Anthropic, Some(&model));
    assert_ne!(
        how,
        llm_integration_core::pricing::PriceMatch::Default,
        "{model}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_on_a_gpt_model_calls_a_tool_and_uses_its_result() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = gateway(&mock, "llm.int.exe.xyz").await;
    let base = format!("http://127.0.0.1:{}", s.data.port());
    let home = tempfile::tempdir().unwrap();
    mock.set_tool_scenario(Some("Bash"));
    let mut cmd = Command::new(client("claude"));
    quiet(&mut cmd, home.path());
    cmd.env("ANTHROPIC_BASE_URL", &base)
        .env("ANTHROPIC_API_KEY", "implicit")
        .args([
            "-p",
            "Compute it with the shell",
            "--model",
            "gpt-5.5",
            "--allowedTools",
            "Bash",
        ]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", text(&out));
    // The turn went to OpenAI's Chat Completions, the tool call and its
    // result translated both ways, and the model's last answer reached
    // Claude Code's output.
    let chat: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .collect();
    assert!(!chat.is_empty(), "{}", text(&out));
    for r in &chat {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {}", GATEWAY_KEYS[1]).as_str())
        );
        assert!(r.header("anthropic-beta").is_none());
        assert_eq!(r.json().unwrap()["model"], "gpt-5.5");
    }
    let followed = chat
        .iter()
        .find_map(|r| {
            let body = r.json().unwrap();
            body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["role"] == "tool")
                .cloned()
        })
        .unwrap_or_else(|| panic!("no request carried the tool's result: {}", text(&out)));
    assert_eq!(followed["tool_call_id"], "call_mock");
    assert!(
        followed["content"].as_str().unwrap().contains("42"),
        "the result of `echo $((6*7))` arrived intact: {followed}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tok0 tok1 tok2"),
        "{}",
        text(&out)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_on_a_claude_model_calls_a_tool() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s) = gateway(&mock, "llm.int.exe.xyz").await;
    let base = format!("http://127.0.0.1:{}", s.data.port());
    let home = tempfile::tempdir().unwrap();
    let mut probe = codex_on(home.path(), &base, true, "claude-sonnet-4-6");
    probe.arg("Say hello");
    let out = run(probe).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tok0 tok1 tok2"),
        "{}",
        text(&out)
    );
    let first = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/messages")
        .unwrap_or_else(|| panic!("Codex's turn did not reach Anthropic: {}", text(&out)));
    assert_eq!(first.header("x-api-key"), Some(GATEWAY_KEYS[0]));
    assert_eq!(first.header("anthropic-version"), Some("2023-06-01"));
    let names: Vec<String> = first.json().unwrap()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    let shell = ["shell", "exec_command", "local_shell"]
        .into_iter()
        .find(|n| names.iter().any(|x| x == n))
        .unwrap_or_else(|| panic!("no shell tool in {names:?}"));
    mock.clear();
    mock.set_tool_scenario(Some(shell));
    let mut cmd = codex_on(home.path(), &base, true, "claude-sonnet-4-6");
    cmd.args([
        "--dangerously-bypass-approvals-and-sandbox",
        "Compute it with the shell",
    ]);
    let out = run(cmd).await;
    mock.set_tool_scenario(None);
    assert!(out.status.success(), "{}", text(&out));
    let followed: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| {
            r.path == "/v1/messages" && String::from_utf8_lossy(&r.body).contains("tool_result")
        })
        .collect();
    assert!(
        !followed.is_empty(),
        "no request carried the tool's output (tool {shell}): {}",
        text(&out)
    );
    let body = String::from_utf8_lossy(&followed[0].body).into_owned();
    assert!(
        body.contains("42"),
        "the output of `echo $((6*7))` arrived intact: {body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_on_a_chatgpt_subscription() {
    use llm_integration_mock::chatgpt::{ChatGptBehaviour, MockChatGpt, ACCOUNT_ID};
    let chatgpt = MockChatGpt::start(ChatGptBehaviour {
        pending_polls: 0,
        ..ChatGptBehaviour::default()
    })
    .await
    .unwrap();
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let endpoints = llm_integration_server::chatgpt::ChatGptEndpoints {
        auth: chatgpt.auth_url(),
        backend: chatgpt.backend_url(),
    };
    let s = Server::start_with(&dirs, &mock.url(), move |c| {
        c.chatgpt = endpoints;
        c.default_host = Some("sub.int.exe.xyz".into());
    })
    .await;
    let answer = s
        .http
        .post(format!("{}/exec", s.url))
        .bearer_auth(&s.token)
        .body("integrations setup chatgpt --name work")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answer.contains("Connected"), "{answer}");
    s.ok(
        "integrations add llm --name sub --openai=chatgpt --openai-account=work --attach auto:all",
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(client("claude"));
    quiet(&mut cmd, home.path());
    cmd.env(
        "ANTHROPIC_BASE_URL",
        format!("http://127.0.0.1:{}", s.data.port()),
    )
    .env("ANTHROPIC_API_KEY", "implicit")
    .args(["-p", "Say hello", "--model", "gpt-5.5"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tok0 tok1 tok2"),
        "{}",
        text(&out)
    );
    // Claude Code's turn went to the ChatGPT backend as the Responses API.
    let seen = chatgpt.backend_requests();
    assert!(!seen.is_empty(), "{}", text(&out));
    for r in &seen {
        assert_eq!(r.header("chatgpt-account-id"), Some(ACCOUNT_ID));
        let body = r.json().unwrap();
        assert_eq!(body["model"], "gpt-5.5");
        assert_eq!(
            (&body["store"], &body["stream"]),
            (&json!(false), &json!(true))
        );
        assert!(body["input"].is_array(), "{body}");
    }
    s.stop().await;
}
