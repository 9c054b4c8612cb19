//! `llm-integration-server`: the gateway server binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use llm_integration_server::admin::{self, AdminCommand};
use llm_integration_server::config::{ServeArgs, StoreArgs};
use llm_integration_server::server::open_store;
use llm_integration_server::App;
use tracing_subscriber::EnvFilter;

/// jemalloc, with the settings in `.cargo/config.toml`: freed pages go
/// back to the system about a second after a burst ends (glibc's malloc
/// kept about 300 MB after 10,000 streams closed; this keeps what is live).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The LLM integration gateway server. With no command, `serve`.
#[derive(Debug, Parser)]
#[command(
    name = "llm-integration-server",
    version,
    about,
    args_conflicts_with_subcommands = true,
    after_help = "Environment:\n  \
LLM_INTEGRATION_GATEWAY_ANTHROPIC_KEY, LLM_INTEGRATION_GATEWAY_OPENAI_KEY, LLM_INTEGRATION_GATEWAY_FIREWORKS_KEY\n      \
the platform's own keys, used by `gateway` sources (every new account's `llm` integration);\n      \
a provider without one answers 503 on those sources\n  \
LLM_INTEGRATION_MASTER_KEY      the master key itself (base64), instead of --master-key-file\n  \
LLM_INTEGRATION_LOG             log filter (default info), e.g. debug or llm_integration_server=debug\n  \
LLM_INTEGRATION_WORKER_THREADS  runtime worker threads (default: one per core)\n\n\
Each flag's variable is shown beside it. See README, Configuration."
)]
struct Cli {
    /// `serve` flags, also accepted without the word `serve`.
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Top>,
}

#[derive(Debug, Subcommand)]
// Parsed once at start: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Top {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Operator commands: users, teams, VMs.
    Admin {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

fn init_logs(json: bool) {
    let filter =
        EnvFilter::try_from_env("LLM_INTEGRATION_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    // LLM_INTEGRATION_WORKER_THREADS sets the runtime's worker threads
    // (default: one per core), e.g. 1 for a gateway pinned to one core.
    let threads = std::env::var("LLM_INTEGRATION_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = builder.enable_all().build();
    match runtime {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Top::Serve(cli.serve)) {
        Top::Serve(args) => serve(args).await,
        Top::Admin { store, command } => run_admin(store, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    init_logs(config.log_json);
    let shutdown = shutdown_signal()?;
    let admin_addr = config.admin_listen;
    let data_addr = config.listen;
    let ssh_addr = config.ssh.as_ref().map(|s| s.listen);
    let mut app = App::open(config).await?;
    let admin = tokio::net::TcpListener::bind(admin_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {admin_addr} (admin): {e}; {}pick another address with --admin-listen", in_use_hint(&e)))?;
    let data = tokio::net::TcpListener::bind(data_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {data_addr} (data plane): {e}; {}pick another address with --listen", in_use_hint(&e)))?;
    let ssh = match ssh_addr {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {addr} (SSH): {e}; {}pick another address with --ssh-listen",
                in_use_hint(&e)
            )
        })?),
        None => None,
    };
    let data_url = format!("http://{}", data.local_addr()?);
    let admin_url = format!("http://{}", admin.local_addr()?);
    if let Some(first) = app.bootstrap().await? {
        println!(
            "Created the first user {} and registered this machine as VM `local`.",
            first.email
        );
        println!("Their access token is in {}.", first.token_file.display());
    }
    let token_file = app.config.data_dir.join("owner.token");
    println!("Data plane (what VMs call): {data_url}");
    if let (Some(listener), Some(door)) = (ssh, app.ssh.clone()) {
        let addr = listener.local_addr()?;
        println!("SSH (ssh -p {} HOST COMMAND): {addr}", addr.port());
        println!(
            "SSH host key: {} {}",
            door.fingerprint(),
            door.settings().host_key.display()
        );
        app.listen_ssh(listener);
    }
    println!("Admin API (POST /exec): {admin_url}");
    println!("Web page: {admin_url}/integrations (sign in with a link from `login-link`)");
    println!("Database: {}", app.config.database.describe());
    for line in startup_notes(&app.config) {
        println!("{line}");
    }
    if token_file.exists() {
        println!("Try:");
        println!(
            "  LLM_INTEGRATION_TOKEN=$(cat {}) {} --server {admin_url} integrations list",
            token_file.display(),
            cli_command()
        );
    }
    tracing::info!(admin = %admin_url, data = %data_url, "serving");
    app.serve(admin, Some(data), shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// What the operator should know at start: upstreams that are not the
/// providers' own, and gateway keys that are missing.
fn startup_notes(config: &llm_integration_server::config::Config) -> Vec<String> {
    use llm_integration_core::Provider;
    use llm_integration_server::upstreams::GatewayKeys;
    let mut notes = Vec::new();
    for p in Provider::ALL {
        let base = config.upstreams.base(p);
        if base != p.default_base_url() {
            notes.push(format!("Upstream {p}: {base}"));
        }
    }
    let missing: Vec<String> = Provider::ALL
        .into_iter()
        .filter(|p| config.gateway_keys.get(*p).is_none())
        .map(GatewayKeys::env_var)
        .collect();
    if !missing.is_empty() {
        notes.push(format!(
            "Gateway keys not set: {}; `gateway` sources of those providers answer 503 until they are",
            missing.join(", ")
        ));
    }
    notes
}

/// How to run the CLI that was built beside this binary: its path when it
/// is there (`target/release/llm-integration` after `cargo build
/// --release`), else the installed name.
fn cli_command() -> String {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(format!("llm-integration{}", std::env::consts::EXE_SUFFIX)))
        .filter(|cli| cli.exists())
        .map_or_else(
            || "llm-integration".to_owned(),
            |cli| cli.display().to_string(),
        )
}

/// For an address in use, the likely cause: another server already running.
fn in_use_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        "another process holds it (is a server already running? stop it: Ctrl-C in its terminal, or kill its process), or "
    } else {
        ""
    }
}

/// Registers the shutdown signals now (so a signal that arrives before
/// serving starts is not lost) and resolves when one arrives.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}

async fn run_admin(store_args: StoreArgs, command: AdminCommand) -> anyhow::Result<()> {
    if let AdminCommand::Migrate(args) = command {
        return migrate(store_args, args).await;
    }
    let (_, database, key) = store_args.store_config()?;
    if let Some(path) = database.sqlite_path() {
        if !path.exists() {
            anyhow::bail!(
                "no database at {}; start the server once (it creates it), or pass --data-dir / --database",
                path.display()
            );
        }
    }
    let (opened, _key) = open_store(&database, &key).await?;
    let store = opened.store;
    let out = admin::run(store.as_ref(), command, store_args.default_allocation()?).await?;
    print!("{out}");
    store.close().await;
    Ok(())
}

/// `admin migrate`: the master key comes from the usual places; with no
/// data directory given, a `master.key` beside the SQLite file is found.
async fn migrate(
    mut store_args: StoreArgs,
    args: llm_integration_server::migrate::MigrateArgs,
) -> anyhow::Result<()> {
    if store_args.data_dir.is_none() && store_args.config.is_none() {
        store_args.data_dir = args
            .from
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(std::path::Path::to_path_buf);
    }
    let (_, _, key) = store_args.store_config()?;
    let report = llm_integration_server::migrate::migrate(&args.from, &args.to, &key).await?;
    print!("{report}");
    Ok(())
}
