//! Runs a mock of ChatGPT's device-code login and of its Codex backend, so
//! that a ChatGPT subscription can be connected and used offline.
//!
//! `cargo run --release --example chatgpt_mock -- [ADDR]` (default
//! `127.0.0.1:7810`). Start the server with
//! `--chatgpt-auth-url http://ADDR --chatgpt-backend-url http://ADDR/backend-api/codex`;
//! `integrations setup chatgpt --name NAME` then shows a code, which this
//! mock approves by itself after a few polls (there is no page to open),
//! and Codex requests on a `--openai=chatgpt` integration are answered by
//! its backend (three tokens, `tok0 tok1 tok2`).

use std::net::SocketAddr;

use llm_integration_mock::chatgpt::{ChatGptBehaviour, MockChatGpt};

const USAGE: &str = "usage: chatgpt_mock [ADDR]

Runs a mock of ChatGPT's device-code login and Codex backend until Ctrl-C.

  ADDR   the address to listen on [default: 127.0.0.1:7810]

Point the server at it:
  llm-integration-server --chatgpt-auth-url http://ADDR --chatgpt-backend-url http://ADDR/backend-api/codex
The mock approves a login code by itself after two polls.";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("--help" | "-h")) {
        println!("{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    let text = arg.unwrap_or_else(|| "127.0.0.1:7810".into());
    let Ok(addr) = text.parse::<SocketAddr>() else {
        eprintln!("error: {text:?} is not an address; give one such as 127.0.0.1:7810\n\n{USAGE}");
        return std::process::ExitCode::from(2);
    };
    let behaviour = ChatGptBehaviour {
        pending_polls: 2,
        ..ChatGptBehaviour::default()
    };
    let mock = match MockChatGpt::start_on(addr, behaviour).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: cannot listen on {addr} ({e}); pass another address: chatgpt_mock 127.0.0.1:PORT");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("ChatGPT mock listening on {}", mock.auth_url());
    println!("  login service: --chatgpt-auth-url {}", mock.auth_url());
    println!(
        "  Codex backend: --chatgpt-backend-url {}",
        mock.backend_url()
    );
    println!("codes are approved by themselves after two polls");
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}
