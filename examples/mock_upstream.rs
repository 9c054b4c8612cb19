//! Runs the mock Anthropic / OpenAI / Fireworks upstream until Ctrl-C.
//!
//! `cargo run --example mock_upstream -- [ADDR]` (default 127.0.0.1:7800).
//! Point the server at it with `LLM_INTEGRATION_ANTHROPIC_BASE_URL`,
//! `…_OPENAI_BASE_URL` and `…_FIREWORKS_BASE_URL`.

use std::net::SocketAddr;

use llm_integration_mock::MockUpstream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7800".into())
        .parse()?;
    let mock = MockUpstream::start_on(addr, false).await?;
    println!("mock upstream listening on {}", mock.url());
    println!("knobs (request headers): x-mock-chunks, x-mock-delay-ms, x-mock-status, x-mock-fail=reset|garbage|hang, x-mock-tool");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
