//! What an agent on a VM does to find its LLMs: ask reflection which
//! integrations are attached, keep the `llm` ones, and list their models.
//!
//! `target/release/examples/discover [GATEWAY] [DOMAIN]` (`--help` says more)
//!
//! GATEWAY is the data plane's address (default `127.0.0.1:7700`), DOMAIN
//! the integration domain (default `exe.xyz`). On a VM, `*.int.DOMAIN`
//! resolves to the gateway; here every integration hostname is resolved to
//! GATEWAY, so the example works against a local server (start it, and the
//! mock upstream, as README's Quick start shows).
//!
//! What the gateway answers (integration names and help, model IDs, a
//! provider's error) may hold text from upstreams or other tenants: every
//! such field is printed through [`printable_line`], which spells out the
//! control, bidirectional and zero-width characters that could drive the
//! terminal, and a hostname that is not a plain DNS name is not requested.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use llm_integration::redact::printable_line;
use serde_json::Value;

/// How long one request may take (a model list asks every provider).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Finds this machine's LLMs as an agent on a VM does: asks the
/// reflection integration (reflection.int.DOMAIN/integrations) which
/// integrations are attached to this VM, then lists the models of each
/// `llm` integration (NAME.int.DOMAIN/v1/models).
#[derive(Debug, Parser)]
#[command(
    name = "discover",
    bin_name = "discover",
    after_help = "Every integration hostname is resolved to GATEWAY, as DNS does on a VM, so this \
works against a gateway on this machine, which is its VM `local`: start the mock upstream and \
the server as README's Quick start shows, then run it."
)]
struct Args {
    /// The gateway's data plane, IP:PORT.
    #[arg(value_name = "GATEWAY", default_value = "127.0.0.1:7700", value_parser = socket_address)]
    gateway: SocketAddr,
    /// The integration domain: integrations are NAME.int.DOMAIN.
    #[arg(value_name = "DOMAIN", default_value = "exe.xyz", value_parser = domain)]
    domain: String,
}

fn socket_address(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| "expected the data plane's IP:PORT, e.g. 127.0.0.1:7700".to_owned())
}

fn domain(text: &str) -> Result<String, String> {
    let name = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if name {
        Ok(text.to_ascii_lowercase())
    } else {
        Err("expected a domain name, e.g. exe.xyz (the server's --domain)".to_owned())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match discover(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn discover(Args { gateway, domain }: Args) -> Result<(), String> {
    let reflection = format!("reflection.int.{domain}");
    let url = format!("http://{reflection}:{}/integrations", gateway.port());
    println!("GET {url}");
    let wrong_domain = format!(
        "if the server's --domain is not {domain}, pass it: target/release/examples/discover {gateway} DOMAIN"
    );
    let answer = get_json(gateway, &reflection, &url, Some(&wrong_domain)).await?;
    let integrations = answer["integrations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for i in &integrations {
        println!(
            "  {:<12} {:<10} {}",
            field(i, "name"),
            field(i, "type"),
            printable_line(i["help"].as_str().unwrap_or(""))
        );
    }
    let llms: Vec<&Value> = integrations.iter().filter(|i| i["type"] == "llm").collect();
    if llms.is_empty() {
        println!("\nno llm integration is attached to this VM; attach one with `llm-integration integrations attach NAME vm:VM`");
    }
    for i in llms {
        let Some(host) = i["hostname"].as_str().filter(|h| is_hostname(h)) else {
            println!(
                "\nskipped integration {}: its hostname {} is not a DNS name",
                field(i, "name"),
                field(i, "hostname")
            );
            continue;
        };
        let url = format!("http://{host}:{}/v1/models", gateway.port());
        println!("\nGET {url}");
        let models = get_json(gateway, host, &url, None).await?;
        for m in models["data"].as_array().into_iter().flatten() {
            println!("  {:<48} {}", field(m, "id"), field(m, "owned_by"));
        }
        for failed in models["failed_providers"].as_array().into_iter().flatten() {
            println!(
                "  ({} unavailable: {})",
                field(failed, "provider"),
                field(failed, "message")
            );
        }
    }
    Ok(())
}

/// A string field of the gateway's answer, safe to print on one line
/// (`?` if it is missing or not a string).
fn field(value: &Value, name: &str) -> String {
    printable_line(value[name].as_str().unwrap_or("?")).into_owned()
}

/// Whether `host` is a plain DNS name, which alone is requested (resolved
/// to the gateway): a `/`, `@` or `:` in it would send the request, and
/// what it carries, elsewhere.
fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `GET url` with `host` resolved to the gateway, as JSON; a failure is a
/// sentence that says what happened and what to do (`if_not_found` adds
/// to the gateway's own 404).
async fn get_json(
    gateway: SocketAddr,
    host: &str,
    url: &str,
    if_not_found: Option<&str>,
) -> Result<Value, String> {
    let not_the_data_plane = format!(
        "is {gateway} the gateway's data plane (127.0.0.1:7700 by default, not the admin listener)?"
    );
    let client = reqwest::Client::builder()
        .resolve(host, gateway)
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| format!("cannot start the HTTP client ({})", root_cause(&e)))?;
    let response = client.get(url).send().await.map_err(|e| {
        if e.is_connect() {
            format!(
                "cannot reach the gateway at {gateway} ({}); start it (README, Quick start) \
or pass its address: target/release/examples/discover ADDR",
                root_cause(&e)
            )
        } else if e.is_timeout() {
            format!(
                "the gateway at {gateway} did not answer GET {url} within {} s",
                TIMEOUT.as_secs()
            )
        } else {
            format!(
                "GET {url} failed ({}); {not_the_data_plane}",
                root_cause(&e)
            )
        }
    })?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("the answer to GET {url} broke off ({})", root_cause(&e)))?;
    let json: Option<Value> = serde_json::from_str(&body).ok();
    if !status.is_success() {
        // The gateway's own errors say what is wrong and how to fix it.
        return Err(
            match json
                .as_ref()
                .and_then(|v| v["error"]["message"].as_str())
                .map(printable_line)
            {
                Some(message) => match if_not_found {
                    Some(hint) if status == reqwest::StatusCode::NOT_FOUND => {
                        format!("GET {url} answered {status}: {message}; {hint}")
                    }
                    _ => format!("GET {url} answered {status}: {message}"),
                },
                None => format!("GET {url} answered {status}; {not_the_data_plane}"),
            },
        );
    }
    json.ok_or_else(|| format!("GET {url} did not answer JSON; {not_the_data_plane}"))
}

/// The innermost reason for `e`: an IO error's kind (`connection
/// refused`), else the last error of the chain (escaped: it may quote the
/// gateway).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind().to_string();
        }
        last = err;
        current = err.source();
    }
    printable_line(&last.to_string()).into_owned()
}
