//! What an agent on a VM does to find its LLMs: ask reflection which
//! integrations are attached, keep the `llm` ones, and list their models.
//!
//! `cargo run --example discover -- [GATEWAY] [DOMAIN]`
//!
//! GATEWAY is the data plane's address (default `127.0.0.1:7700`), DOMAIN
//! the integration domain (default `exe.xyz`). On a VM, `*.int.DOMAIN`
//! resolves to the gateway; here every integration hostname is resolved to
//! GATEWAY, so the example works against a local server (start it, and the
//! mock upstream, as README's quick start shows).

use std::net::SocketAddr;

use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gateway: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7700".into())
        .parse()?;
    let domain = std::env::args().nth(2).unwrap_or_else(|| "exe.xyz".into());
    let reflection = format!("reflection.int.{domain}");
    let client = |host: &str| reqwest::Client::builder().resolve(host, gateway).build();

    let url = format!("http://{reflection}:{}/integrations", gateway.port());
    println!("GET {url}");
    let answer: Value = client(&reflection)?
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let integrations = answer["integrations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for i in &integrations {
        println!(
            "  {:<12} {:<10} {}",
            i["name"].as_str().unwrap_or("?"),
            i["type"].as_str().unwrap_or("?"),
            i["help"].as_str().unwrap_or("")
        );
    }
    for i in integrations.iter().filter(|i| i["type"] == "llm") {
        let host = i["hostname"].as_str().unwrap_or_default();
        let url = format!("http://{host}:{}/v1/models", gateway.port());
        println!("\nGET {url}");
        let models: Value = client(host)?
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for m in models["data"].as_array().into_iter().flatten() {
            println!(
                "  {:<48} {}",
                m["id"].as_str().unwrap_or("?"),
                m["owned_by"].as_str().unwrap_or("?")
            );
        }
        for failed in models["failed_providers"].as_array().into_iter().flatten() {
            println!(
                "  ({} unavailable: {})",
                failed["provider"].as_str().unwrap_or("?"),
                failed["message"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}
