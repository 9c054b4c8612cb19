//! Runs a mock of ChatGPT's device-code login and of its Codex backend, so
//! that a ChatGPT subscription can be connected and used offline.
//!
//! `target/release/examples/chatgpt_mock [ADDR]` (default
//! `127.0.0.1:7810`; `--help` says more). Start the server with
//! `--chatgpt-auth-url http://ADDR --chatgpt-backend-url http://ADDR/backend-api/codex`;
//! `integrations setup chatgpt --name NAME` then shows a code, which this
//! mock approves by itself after two polls (there is no page to open),
//! and Codex requests on a `--openai=chatgpt` integration are answered by
//! its backend (three tokens, `tok0 tok1 tok2`).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use llm_integration_mock::chatgpt::{ChatGptBehaviour, MockChatGpt};

/// A mock of ChatGPT's device-code login service and of its Codex backend:
/// a ChatGPT subscription is connected and used through the gateway with
/// no network. It approves a login code by itself after two polls, and
/// answers the backend's Responses API with three tokens, until Ctrl-C.
#[derive(Debug, Parser)]
#[command(
    name = "chatgpt_mock",
    bin_name = "chatgpt_mock",
    after_help = "Point the gateway at it (README, Quick start):\n  \
llm-integration-server --chatgpt-auth-url http://127.0.0.1:7810 \\\n      \
--chatgpt-backend-url http://127.0.0.1:7810/backend-api/codex\n\
then: llm-integration integrations setup chatgpt --name work"
)]
struct Args {
    /// The address to listen on, IP:PORT (port 0 picks a free one).
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:7810", value_parser = socket_address)]
    addr: SocketAddr,
}

fn socket_address(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:7810".to_owned())
}

#[tokio::main]
async fn main() -> ExitCode {
    let Args { addr } = Args::parse();
    let behaviour = ChatGptBehaviour {
        pending_polls: 2,
        ..ChatGptBehaviour::default()
    };
    let mock = match MockChatGpt::start_on(addr, behaviour).await {
        Ok(m) => m,
        Err(e) => {
            let another = SocketAddr::new(addr.ip(), addr.port().wrapping_add(1));
            let fix = format!(
                "pick another address, e.g. target/release/examples/chatgpt_mock {another} (and \
point the server's --chatgpt-auth-url and --chatgpt-backend-url at it)"
            );
            match e.kind() {
                ErrorKind::AddrInUse => eprintln!(
                    "error: {addr} is already in use (a chatgpt_mock already running?); \
stop what listens there, or {fix}"
                ),
                kind => eprintln!("error: cannot listen on {addr} ({kind}: {e}); {fix}"),
            }
            return ExitCode::FAILURE;
        }
    };
    println!("ChatGPT mock listening on {}", mock.auth_url());
    println!("  login service: --chatgpt-auth-url {}", mock.auth_url());
    println!(
        "  Codex backend: --chatgpt-backend-url {}",
        mock.backend_url()
    );
    println!("login codes are approved by themselves after two polls; Ctrl-C stops it");
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot wait for Ctrl-C ({e}); the ChatGPT mock stops now");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
