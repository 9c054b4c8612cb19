//! The gateway's data plane mounted in another service: a small axum
//! application that serves its own route (`/healthz`) and hands every other
//! request to the data plane, with
//!
//! - an in-memory configuration store (one user, one VM, the default `llm`
//!   integration), instead of the server's SQLite;
//! - its own caller resolver: the VM is the one registered with the
//!   connection's address, read from axum's `ConnectInfo`;
//! - its own credential resolver (a fixed key; an embedder would read its
//!   secret manager here);
//! - usage records kept in memory (and printed) instead of written to a
//!   ledger, and no allocations.
//!
//! `target/release/examples/embed` starts the mock upstream and the service
//! on loopback, sends one streaming request through it as a VM would, prints
//! the events and the usage record, and exits (non-zero if anything is off).
//! What the upstream streamed is printed through `printable`, which spells
//! out control, bidirectional and zero-width characters, as every text
//! relayed from an upstream to a terminal should be.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::ConnectInfo;
use clap::Parser;
use llm_integration::pricing::PriceTable;
use llm_integration::redact::{printable, printable_line};
use llm_integration::seams::{
    CallerRequest, CallerResolver, ConfigStore, Credential, CredentialError, CredentialResolver,
    StoreError, UsageRecord, UsageSink,
};
use llm_integration::upstream::UpstreamTargets;
use llm_integration::{
    ConfigRecords, CredentialRef, IntegrationConfig, IntegrationId, Owner, PerProvider, Provider,
    SecretString, Snapshot, SnapshotOptions, User, UserId, Vm, VmId,
};
use llm_integration_mock::MockUpstream;
use llm_integration_server::dataplane::DataPlane;
use llm_integration_server::live::LiveConfig;
use llm_integration_server::metering::Metering;

/// The configuration, held in memory.
struct MemoryStore(ConfigRecords);

#[async_trait]
impl ConfigStore for MemoryStore {
    async fn load(&self) -> Result<ConfigRecords, StoreError> {
        Ok(self.0.clone())
    }

    async fn version(&self) -> Result<u64, StoreError> {
        Ok(1)
    }
}

/// The VM is the one registered with the address axum saw the connection from.
struct ByConnectInfo;

#[async_trait]
impl CallerResolver for ByConnectInfo {
    async fn resolve(&self, snapshot: &Snapshot, request: &CallerRequest<'_>) -> Option<VmId> {
        let ConnectInfo(peer) = request.extensions.get::<ConnectInfo<SocketAddr>>()?;
        snapshot.vm_by_address(peer.ip())
    }
}

/// One key for every provider and source.
struct FixedKey;

#[async_trait]
impl CredentialResolver for FixedKey {
    async fn resolve(
        &self,
        _owner: Owner,
        _provider: Provider,
        _source: CredentialRef<'_>,
    ) -> Result<Credential, CredentialError> {
        Ok(Credential {
            secret: SecretString::from("sk-embedder-key"),
            account_id: None,
        })
    }
}

/// Usage records, kept to be printed.
#[derive(Default)]
struct KeepUsage(std::sync::Mutex<Vec<UsageRecord>>);

impl UsageSink for KeepUsage {
    fn record(&self, r: UsageRecord) {
        if let Ok(mut records) = self.0.lock() {
            records.push(r);
        }
    }
}

/// Runs the gateway's data plane inside a small axum service (an
/// in-memory store, its own caller resolver, credentials and usage sink)
/// against the mock upstream, on loopback; sends one streaming request
/// through it as a VM would, prints the events and the usage record, and
/// exits (non-zero if anything is off).
#[derive(Debug, Parser)]
#[command(name = "embed", bin_name = "embed")]
struct Args {}

#[tokio::main]
async fn main() -> ExitCode {
    let Args {} = Args::parse();
    match embed().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // What failed, then each cause, on one line.
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn embed() -> Result<(), Box<dyn std::error::Error>> {
    let mock = MockUpstream::start().await?;

    let alice = UserId(1);
    let mut devbox = Vm::new(VmId(10), "devbox".parse()?, alice);
    devbox.addresses = vec!["127.0.0.1".parse()?];
    let records = ConfigRecords {
        users: vec![User::new(alice, "alice@example.com")],
        vms: vec![devbox],
        integrations: vec![IntegrationConfig::default_llm(
            IntegrationId(1),
            Owner::User(alice),
        )],
        ..ConfigRecords::default()
    };
    let live = Arc::new(
        LiveConfig::load(Arc::new(MemoryStore(records)), SnapshotOptions::default()).await?,
    );
    let usage = Arc::new(KeepUsage::default());
    let metering = Arc::new(Metering::new(PriceTable::default(), None, usage.clone()));
    let plane = Arc::new(
        DataPlane::builder(live, Arc::new(FixedKey), metering)
            .callers(Arc::new(ByConnectInfo))
            .targets(UpstreamTargets {
                base: PerProvider::from_fn(|_| mock.url()),
                ..UpstreamTargets::default()
            })
            .build()
            .map_err(|e| -> Box<dyn std::error::Error> { e.into() })?,
    );

    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .fallback_service(plane.service());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    println!("service on http://{addr} (the data plane behind /, /healthz its own)");

    let client = reqwest::Client::builder()
        .resolve("llm.int.exe.xyz", addr)
        .build()?;
    let url = format!("http://llm.int.exe.xyz:{}/v1/messages", addr.port());
    println!("POST {url} (streaming)");
    let mut response = client
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .json(&serde_json::json!({
            "model": "claude-sonnet-4-6",
            "max_tokens": 64,
            "stream": true,
            "messages": [{"role": "user", "content": "Hello!"}]
        }))
        .send()
        .await?;
    let status = response.status();
    let mut text = String::new();
    let mut pending = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        // Printed as it arrives, a character split between chunks once whole.
        pending.extend_from_slice(&chunk);
        let whole = match std::str::from_utf8(&pending) {
            Ok(all) => all.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => pending.len(),
        };
        let piece = String::from_utf8_lossy(&pending[..whole]).into_owned();
        pending.drain(..whole);
        print!("{}", printable(&piece));
        text.push_str(&piece);
    }
    let health = client
        .get(format!("http://llm.int.exe.xyz:{}/healthz", addr.port()))
        .send()
        .await?
        .text()
        .await?;
    let upstream = mock.requests();
    let key_sent = upstream
        .first()
        .and_then(|r| r.header("x-api-key").map(str::to_owned));
    if !status.is_success()
        || !text.contains("message_stop")
        || health != "ok"
        || key_sent.as_deref() != Some("sk-embedder-key")
    {
        return Err(format!(
            "the embedded data plane did not answer as expected: status {status}, healthz {health:?}, key sent {}",
            key_sent.is_some()
        )
        .into());
    }
    for r in usage.0.lock().map(|r| r.clone()).unwrap_or_default() {
        println!(
            "usage: vm {} model {} input {} output {} status {}",
            r.vm.0,
            printable_line(r.model.as_deref().unwrap_or("?")),
            r.tokens.input,
            r.tokens.output,
            r.status
        );
    }
    println!("ok: streamed through the embedded data plane");
    Ok(())
}
