//! The browser door in a real browser: Debian's Chromium driven by
//! playwright-core (both installed by `.ci/install`) through every flow of
//! the web page, against the real server, the mock upstream and the
//! ChatGPT mock (which also stands in for a custom endpoint). The script (`tests/clients/browser-door.mjs`) checks what
//! each page shows and what the store holds, and saves a screenshot of
//! each screen under `target/ui-screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use llm_integration_core::{IntegrationKind, Owner, Source, UserId};
use llm_integration_mock::chatgpt::{ChatGptBehaviour, MockChatGpt};
use llm_integration_mock::MockUpstream;
use llm_integration_server::admin::{AdminCommand, VmAddArgs, VmsCommand};
use llm_integration_server::chatgpt::ChatGptEndpoints;
use llm_integration_server::testing::{Dirs, Server};
use serde_json::json;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_flow_of_the_page_in_chromium() {
    let chromium = std::env::var("LLM_INTEGRATION_TEST_CHROMIUM")
        .unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: run .ci/install (Debian: apt-get install chromium)"
    );
    let script = workspace().join("tests/clients/browser-door.mjs");
    let playwright = workspace().join("tests/clients/node_modules/playwright-core");
    assert!(
        playwright.exists(),
        "{} is missing: run .ci/install (it runs `npm ci` in tests/clients)",
        playwright.display()
    );

    let upstream = MockUpstream::start().await.unwrap();
    let chatgpt = MockChatGpt::start(ChatGptBehaviour {
        pending_polls: 3,
        ..ChatGptBehaviour::default()
    })
    .await
    .unwrap();
    let endpoints = ChatGptEndpoints {
        auth: chatgpt.auth_url(),
        backend: chatgpt.backend_url(),
    };
    let dirs = Dirs::new();
    let s = Server::start_with(&dirs, &upstream.url(), move |c| {
        c.chatgpt = endpoints;
        // The mock upstream stands in for a custom endpoint (plain HTTP on
        // loopback, which only this setting allows).
        c.endpoints.allow_private = true;
    })
    .await;
    s.ok("tag local llm").await;
    // A teammate's VM in a team of the user: offered for team
    // integrations only.
    s.user("mate@example.com").await;
    s.team("core", &["owner@localhost", "mate@example.com"])
        .await;
    s.admin(AdminCommand::Vms(VmsCommand::Add(VmAddArgs {
        name: "devbox".parse().unwrap(),
        owner: "mate@example.com".into(),
        team: Some("core".parse().unwrap()),
        addresses: vec![],
        tags: vec![],
        comment: String::new(),
        port: None,
    })))
    .await;

    // Some traffic on the default integration, for the usage page.
    let host = "llm.int.exe.xyz";
    let vm = s.vm_client(IpAddr::from([127, 0, 0, 1]), &[host]);
    for (path, model) in [
        ("/v1/chat/completions", "gpt-5"),
        ("/v1/chat/completions", "gpt-5"),
        ("/v1/messages", "claude-sonnet-4-6"),
    ] {
        let r = vm
            .post(format!("{}{path}", s.data_url(host)))
            .header("x-mock-usage", "input=20000,output=4000")
            .json(&json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    let link = s.ok("login-link").await;
    let login_url = link
        .split_whitespace()
        .find(|w| w.contains("/login?link="))
        .unwrap()
        .to_owned();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let shots = target.join("ui-screenshots");
    // Only this run's screenshots.
    let _ = std::fs::remove_dir_all(&shots);
    let mut node = Command::new("node");
    node.arg(&script)
        .current_dir(workspace().join("tests/clients"))
        .env("BASE", &s.url)
        .env("LOGIN_URL", &login_url)
        .env("TOKEN", &s.token)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("DOMAIN", "exe.xyz")
        .env("CUSTOM_URL", format!("{}/v1", upstream.url()));
    let run = tokio::task::spawn_blocking(move || node.output().unwrap());
    let output = tokio::time::timeout(std::time::Duration::from_secs(240), run)
        .await
        .expect("the browser flows finish within 4 minutes")
        .unwrap();
    let report = format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}");
    assert!(report.contains("all steps passed"), "{report}");

    // The store, read directly: what the flows left.
    let snapshot = s.live.snapshot();
    let owner = Owner::User(UserId(1));
    assert!(snapshot.integration_named(owner, "openai-main").is_none());
    assert!(snapshot.integration_named(owner, "openai-key").is_none());
    let chatgpt_llm = snapshot.integration_named(owner, "chatgpt-llm").unwrap();
    let IntegrationKind::Llm(settings) = &chatgpt_llm.kind else {
        panic!()
    };
    assert!(
        matches!(&settings.openai, Source::Chatgpt { account } if account.as_str() == "work"),
        "{settings:?}"
    );
    for shot in [
        "01-sign-in",
        "02-integrations",
        "04-llm-dialog",
        "06-chatgpt-device-code",
        "07-chatgpt-accounts",
        "09-chatgpt-disconnect-confirm",
        "10-remove-confirm",
        "11-llm-dialog-custom",
        "12-usage",
        "usage-phone",
    ] {
        assert!(
            shots.join(format!("{shot}.png")).exists(),
            "{shot}.png missing in {}",
            shots.display()
        );
    }
}
