//! A server on 127.0.0.1:0 with its store in temporary directories, for
//! tests (this crate's, the CLI's) and for embedders' own tests.
//!
//! Not for production use: it panics on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::admin::{self, AdminCommand};
use crate::config::{Config, ServeArgs, StoreArgs, UpstreamArgs};
use crate::live::LiveConfig;
use crate::upstreams::GatewayKeys;
use crate::App;
use llm_integration_core::{PerProvider, SecretString};

/// The gateway keys a test server injects for `gateway` sources
/// (Anthropic, OpenAI, Fireworks).
pub const GATEWAY_KEYS: [&str; 3] = [
    "gw-anthropic-0123456789abcdef",
    "gw-openai-0123456789abcdef",
    "gw-fireworks-0123456789abcdef",
];

/// A running test server.
pub struct Server {
    /// The admin URL.
    pub url: String,
    /// The data plane's address (it listens on every local address, so
    /// clients may connect from 127.0.0.2, 127.0.0.3, … to be other VMs).
    pub data: SocketAddr,
    /// See the field name.
    pub token: String,
    /// See the field name.
    pub store: Arc<dyn llm_integration_core::seams::ControlStore>,
    /// See the field name.
    pub live: Arc<LiveConfig>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// The allocation of owners never given one.
    pub default_allocation: i64,
    /// Metering (allocations, ledger, metrics).
    pub metering: Arc<crate::metering::Metering>,
    /// The SSH door's address, when the configuration turned it on
    /// (`config.ssh`, listening on `127.0.0.1:0` is fine).
    pub ssh: Option<SocketAddr>,
}

/// Temporary directories: data (token, SQLite database) and keys (master
/// key), apart; and, for a PostgreSQL test, the database URL of a schema of
/// its own.
pub struct Dirs {
    /// The data directory.
    pub data: tempfile::TempDir,
    /// The master key's directory.
    pub keys: tempfile::TempDir,
    /// `--database` for servers started on these directories: `None` is the
    /// SQLite file in `data`; [`Dirs::postgres`] sets a PostgreSQL URL.
    pub database: Option<String>,
}

/// The PostgreSQL server the tests use: `LLM_INTEGRATION_TEST_POSTGRES`, or
/// the local one (trust authentication, database `test`).
pub fn test_postgres_url() -> String {
    std::env::var("LLM_INTEGRATION_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Prefix of the schemas tests create (and drop when stale).
const TEST_SCHEMA_PREFIX: &str = "llmi_test_";

/// Creates an empty schema for one test on [`test_postgres_url`] and
/// returns a URL whose connections use it. Schemas of earlier runs older
/// than 15 minutes (longer than any test) are dropped on the way.
///
/// Panics with the fix when PostgreSQL cannot be reached.
pub async fn fresh_postgres_schema() -> String {
    use sqlx::Connection;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let base = test_postgres_url();
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {base}: {e}. Start it (127.0.0.1:5432, trust \
             authentication, database `test`) or point LLM_INTEGRATION_TEST_POSTGRES at one"
            )
        });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'llmi\\_test\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for name in stale {
        let created = name
            .strip_prefix(TEST_SCHEMA_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if created.is_some_and(|t| t + 900 < now) {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&mut conn)
                .await;
        }
    }
    let schema = format!(
        "{TEST_SCHEMA_PREFIX}{now}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

impl Dirs {
    /// New empty directories (SQLite).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Dirs {
            data: tempfile::tempdir().unwrap(),
            keys: tempfile::tempdir().unwrap(),
            database: None,
        }
    }

    /// New empty directories and an empty PostgreSQL schema of their own.
    pub async fn postgres() -> Self {
        Dirs {
            database: Some(fresh_postgres_schema().await),
            ..Dirs::new()
        }
    }

    /// Which backend servers on these directories use.
    pub fn backend(&self) -> &'static str {
        if self.database.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

impl Server {
    /// Starts a server (bootstrapping on a new store) with every provider at `upstream`.
    pub async fn start(dirs: &Dirs, upstream: &str) -> Server {
        Self::start_with(dirs, upstream, |_| {}).await
    }

    /// Like [`Server::start`], with a chance to change the configuration
    /// (limits, per-provider base URLs, …) first. Gateway keys are
    /// [`GATEWAY_KEYS`].
    pub async fn start_with(
        dirs: &Dirs,
        upstream: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Server {
        let args = ServeArgs {
            store: StoreArgs {
                data_dir: Some(dirs.data.path().to_owned()),
                master_key_file: Some(dirs.keys.path().join("master.key")),
                database: dirs.database.clone(),
                ..StoreArgs::default()
            },
            upstreams: UpstreamArgs {
                anthropic: Some(upstream.into()),
                openai: Some(upstream.into()),
                fireworks: Some(upstream.into()),
            },
            ..ServeArgs::default()
        };
        let mut config = args.resolve().unwrap();
        config.gateway_keys = GatewayKeys::from(PerProvider::from_fn(|p| {
            Some(SecretString::from(GATEWAY_KEYS[p.index()]))
        }));
        adjust(&mut config);
        let mut app = App::open(config).await.unwrap();
        let ssh = match app.config.ssh.as_ref().map(|s| s.listen) {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
                let bound = listener.local_addr().unwrap();
                app.listen_ssh(listener);
                Some(bound)
            }
            None => None,
        };
        app.bootstrap().await.unwrap();
        let token = std::fs::read_to_string(dirs.data.path().join("owner.token"))
            .unwrap()
            .trim()
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let data = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let data_addr = SocketAddr::from(([127, 0, 0, 1], data.local_addr().unwrap().port()));
        let (store, live) = (app.store.clone(), app.live.clone());
        let (default_allocation, metering) = (app.config.default_allocation, app.metering.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let plane = app.data_plane.clone();
        let task = tokio::spawn(async move {
            app.serve(listener, Some(data), async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        // The catalog's first refresh reads the upstreams' model lists; wait
        // for it so that tests see only their own requests upstream.
        tokio::time::timeout(std::time::Duration::from_secs(30), plane.catalog_ready())
            .await
            .expect("the model catalog's first refresh");
        Server {
            url: format!("http://{addr}"),
            data: data_addr,
            token,
            store,
            live,
            stop: Some(tx),
            task: Some(task),
            http: reqwest::Client::new(),
            default_allocation,
            metering,
            ssh,
        }
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    /// A second user with their token.
    pub async fn user(&self, email: &str) -> String {
        let (_, token) = admin::provision_user(self.store.as_ref(), email, false)
            .await
            .unwrap();
        self.live.reload(true).await.unwrap();
        token.to_string()
    }

    /// Runs an operator command.
    pub async fn admin(&self, command: AdminCommand) {
        admin::run(self.store.as_ref(), command, self.default_allocation)
            .await
            .unwrap();
        self.live.reload(true).await.unwrap();
    }

    /// Creates team `name` with these members (by email).
    pub async fn team(&self, name: &str, members: &[&str]) {
        self.admin(AdminCommand::Teams(admin::TeamsCommand::Add {
            name: name.parse().unwrap(),
        }))
        .await;
        for email in members {
            let member = admin::TeamsCommand::AddMember {
                team: name.parse().unwrap(),
                email: (*email).to_owned(),
            };
            self.admin(AdminCommand::Teams(member)).await;
        }
    }

    /// Posts `body` to /exec; returns status, body and outcome header.
    pub async fn raw(
        &self,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, String, String) {
        let mut request = self
            .http
            .post(format!("{}/exec", self.url))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let outcome = response
            .headers()
            .get("llm-integration-outcome")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, response.text().await.unwrap(), outcome)
    }

    /// Runs a command line as `token`'s user.
    pub async fn run_as(&self, token: &str, line: &str) -> (StatusCode, String) {
        let (s, b, _) = self
            .raw(Some(token), "text/plain", line.as_bytes().to_vec())
            .await;
        (s, b)
    }

    /// Runs a command line as the first user.
    pub async fn run(&self, line: &str) -> (StatusCode, String) {
        self.run_as(&self.token.clone(), line).await
    }

    /// Runs a command line that must succeed; returns its answer.
    pub async fn ok(&self, line: &str) -> String {
        let (status, body) = self.run(line).await;
        assert_eq!(status, StatusCode::OK, "{line}: {body}");
        body
    }

    /// Runs a command line with --json that must succeed.
    pub async fn json(&self, line: &str) -> Value {
        serde_json::from_str(&self.ok(&format!("{line} --json")).await).unwrap()
    }

    /// A client that connects to the data plane from `source` (a loopback
    /// address, to act as the VM registered there), resolving every host in
    /// `hosts` to the data plane.
    pub fn vm_client(&self, source: std::net::IpAddr, hosts: &[&str]) -> reqwest::Client {
        let mut builder = reqwest::Client::builder().local_address(source).no_proxy();
        for host in hosts {
            builder = builder.resolve(host, self.data);
        }
        builder.build().unwrap()
    }

    /// The data-plane URL of `host` (`http://HOST:PORT`).
    pub fn data_url(&self, host: &str) -> String {
        format!("http://{host}:{}", self.data.port())
    }

    /// Runs a command line with standard input.
    pub async fn with_stdin(&self, line: &str, stdin: &str) -> (StatusCode, String) {
        let body = json!({"command": line, "stdin": stdin}).to_string();
        let (s, b, _) = self
            .raw(
                Some(&self.token.clone()),
                "application/json",
                body.into_bytes(),
            )
            .await;
        (s, b)
    }
}

/// A `llm-integration-server` process started as an operator starts it, for
/// tests of the real binary: both listeners on `127.0.0.1:0`, no master key
/// from the environment, its log in a file. Killed if still running when
/// dropped, so a failing test leaves no server behind.
pub struct Process {
    child: std::process::Child,
    /// The admin URL it printed.
    pub admin: String,
    /// The data-plane URL it printed.
    pub data: String,
    /// Everything it printed until both URLs.
    pub printed: String,
    /// Where its log (standard error) goes.
    pub log: std::path::PathBuf,
}

impl Process {
    /// Runs `command` (the binary with the test's own arguments and
    /// environment) in `dir` and waits until it prints both URLs.
    pub fn start(mut command: std::process::Command, dir: &std::path::Path) -> Process {
        use std::io::{BufRead, BufReader, Read};
        use std::process::Stdio;
        static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.join(format!("server-{}-{n}.log", std::process::id()));
        let mut child = command
            .current_dir(dir)
            .env("LLM_INTEGRATION_LISTEN", "127.0.0.1:0")
            .env("LLM_INTEGRATION_ADMIN_LISTEN", "127.0.0.1:0")
            .env_remove("LLM_INTEGRATION_MASTER_KEY")
            // The master key's default home: inside the test's directory.
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let (mut admin, mut data, mut printed) = (String::new(), String::new(), String::new());
        while admin.is_empty() || data.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "no URLs printed: {printed}"
            );
            let mut line = String::new();
            let read = stdout.read_line(&mut line).unwrap();
            assert!(
                read > 0,
                "the server exited before printing its URLs: {printed}"
            );
            printed.push_str(&line);
            if let Some(u) = line.trim().strip_prefix("Data plane (what VMs call): ") {
                data = u.to_owned();
            }
            if let Some(u) = line.trim().strip_prefix("Admin API (POST /exec): ") {
                admin = u.to_owned();
            }
        }
        // Keep reading its output so it never blocks on it.
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest);
        });
        Process {
            child,
            admin,
            data,
            printed,
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (a graceful shutdown).
    pub fn sigterm(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Kills it at once (SIGKILL: no shutdown, nothing flushed).
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits for it to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
