//! Runs the mock Anthropic / OpenAI / Fireworks upstream until Ctrl-C.
//!
//! `target/release/examples/mock_upstream [ADDR]` (default 127.0.0.1:7800;
//! `--help` says more). Point the server at it with
//! `LLM_INTEGRATION_ANTHROPIC_BASE_URL`, `…_OPENAI_BASE_URL` and
//! `…_FIREWORKS_BASE_URL`.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use llm_integration_mock::MockUpstream;

/// A mock Anthropic, OpenAI and Fireworks upstream: the gateway runs
/// against it with no provider account. It answers every provider's
/// inference and model-list endpoints, streaming and not, with realistic
/// usage figures, until Ctrl-C.
#[derive(Debug, Parser)]
#[command(
    name = "mock_upstream",
    bin_name = "mock_upstream",
    after_help = "Point the gateway at it (README, Quick start):\n  \
export LLM_INTEGRATION_ANTHROPIC_BASE_URL=http://127.0.0.1:7800\n  \
export LLM_INTEGRATION_OPENAI_BASE_URL=http://127.0.0.1:7800\n  \
export LLM_INTEGRATION_FIREWORKS_BASE_URL=http://127.0.0.1:7800\n\n\
Request headers change its answers: x-mock-chunks: N, x-mock-delay-ms: N, x-mock-status: 429, \
x-mock-fail: reset|garbage|hang, x-mock-tool: NAME, and more (llm-integration-mock's documentation)."
)]
struct Args {
    /// The address to listen on, IP:PORT (port 0 picks a free one).
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:7800", value_parser = socket_address)]
    addr: SocketAddr,
}

fn socket_address(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:7800".to_owned())
}

#[tokio::main]
async fn main() -> ExitCode {
    let Args { addr } = Args::parse();
    let mock = match MockUpstream::start_on(addr, false).await {
        Ok(mock) => mock,
        Err(e) => {
            let another = SocketAddr::new(addr.ip(), addr.port().wrapping_add(1));
            let fix = format!(
                "pick another address, e.g. target/release/examples/mock_upstream {another} \
(and point the gateway's LLM_INTEGRATION_*_BASE_URL at it)"
            );
            match e.kind() {
                ErrorKind::AddrInUse => eprintln!(
                    "error: {addr} is already in use (a mock_upstream already running?); \
stop what listens there, or {fix}"
                ),
                ErrorKind::AddrNotAvailable => eprintln!(
                    "error: cannot listen on {addr}: this machine has no such address; \
use one of its own, e.g. 127.0.0.1:{}",
                    addr.port()
                ),
                ErrorKind::PermissionDenied => eprintln!(
                    "error: cannot listen on {addr}: permission denied (ports below 1024 need \
privileges); {fix}"
                ),
                kind => eprintln!("error: cannot listen on {addr} ({kind}); {fix}"),
            }
            return ExitCode::FAILURE;
        }
    };
    println!("mock upstream listening on {}", mock.url());
    println!("knobs (request headers): x-mock-chunks, x-mock-delay-ms, x-mock-status, x-mock-fail=reset|garbage|hang, x-mock-tool");
    println!("Ctrl-C stops it");
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot wait for Ctrl-C ({e}); the mock upstream stops now");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
