//! Server configuration: flags, environment variables and a TOML file,
//! resolved into a [`Config`].
//!
//! One resolution, in layers (figment): [`Settings::default`], then the
//! file (`--config`), then the flags, each of which clap falls back to its
//! environment variable (`LLM_INTEGRATION_…`) for. A flag neither given nor
//! set in the environment is left out of its layer, so the file or the
//! default shows through. [`Settings`] is also the file's shape: its field
//! names are the file's keys, and an unknown key is an error that names it.
//! Gateway credentials come from the environment only, never from the file
//! or a flag ([`GatewayKeys::from_env`]).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use llm_integration_core::Provider;
use serde::{Deserialize, Serialize};

use crate::chatgpt::ChatGptEndpoints;
use crate::crypto::KeySource;
use crate::dataplane::{Limits, TrustedProxies};
use crate::store::Database;
use crate::upstreams::{GatewayKeys, Upstreams};

// The flags. Each `Option` field is serialized only when set, so that an
// absent flag does not hide the file's value. A `[default: …]` in a help
// text is checked against `Settings::default()` by a test: clap's
// `default_value` would apply the value and hide the file's.

/// Where the store and its master key are.
#[derive(Debug, Clone, Args, Default, Serialize)]
pub struct StoreArgs {
    /// A TOML configuration file.
    #[arg(long, env = "LLM_INTEGRATION_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory for the database and the first user's token [default: llm-integration-data].
    #[arg(long, env = "LLM_INTEGRATION_DATA_DIR", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The database: a SQLite file (a path, or sqlite:PATH), or PostgreSQL for several replicas (postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME) [default: DATA_DIR/llm-integration.db].
    #[arg(
        long,
        env = "LLM_INTEGRATION_DATABASE",
        value_name = "PATH|URL",
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The master key file [default: $XDG_CONFIG_HOME/llm-integration/master.key, else ~/.config/llm-integration/master.key; DATA_DIR/master.key if one is already there]; LLM_INTEGRATION_MASTER_KEY (base64) takes precedence.
    #[arg(long, env = "LLM_INTEGRATION_MASTER_KEY_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<PathBuf>,
}

/// The providers' base URLs, as flags; the file's `[upstreams]` table.
#[derive(Debug, Clone, Args, Default, Serialize)]
pub struct UpstreamArgs {
    /// Anthropic base URL [default: https://api.anthropic.com].
    #[arg(
        long = "anthropic-base-url",
        env = "LLM_INTEGRATION_ANTHROPIC_BASE_URL",
        value_name = "URL"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anthropic: Option<String>,
    /// OpenAI base URL [default: https://api.openai.com].
    #[arg(
        long = "openai-base-url",
        env = "LLM_INTEGRATION_OPENAI_BASE_URL",
        value_name = "URL"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openai: Option<String>,
    /// Fireworks base URL [default: https://api.fireworks.ai].
    #[arg(
        long = "fireworks-base-url",
        env = "LLM_INTEGRATION_FIREWORKS_BASE_URL",
        value_name = "URL"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fireworks: Option<String>,
}

/// `serve` flags.
#[derive(Debug, Clone, Args, Default, Serialize)]
pub struct ServeArgs {
    /// Where the store and its master key are.
    #[command(flatten)]
    #[serde(flatten)]
    pub store: StoreArgs,
    /// Data-plane address (what VMs call) [default: 127.0.0.1:7700].
    #[arg(long, env = "LLM_INTEGRATION_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Admin address (/exec, /healthz, /readyz) [default: 127.0.0.1:7701].
    #[arg(long, env = "LLM_INTEGRATION_ADMIN_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<SocketAddr>,
    /// Hostname domain: integrations are NAME.int.DOMAIN [default: exe.xyz].
    #[arg(long, env = "LLM_INTEGRATION_DOMAIN", value_name = "DOMAIN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Email of the first user, created on the first start [default: owner@localhost].
    #[arg(long, env = "LLM_INTEGRATION_BOOTSTRAP_EMAIL", value_name = "EMAIL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_email: Option<String>,
    /// The providers' base URLs.
    #[command(flatten)]
    pub upstreams: UpstreamArgs,
    /// TLS certificate chain (PEM) for the data plane; with --tls-key.
    #[arg(long, env = "LLM_INTEGRATION_TLS_CERT", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the data plane; with --tls-cert.
    #[arg(long, env = "LLM_INTEGRATION_TLS_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// ChatGPT's auth server [default: https://auth.openai.com].
    #[arg(long, env = "LLM_INTEGRATION_CHATGPT_AUTH_URL", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chatgpt_auth_url: Option<String>,
    /// The ChatGPT (Codex) backend [default: https://chatgpt.com/backend-api/codex].
    #[arg(long, env = "LLM_INTEGRATION_CHATGPT_BACKEND_URL", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chatgpt_backend_url: Option<String>,
    /// The integration hostname assumed for requests that name the gateway by
    /// address or as localhost (e.g. llm.int.exe.xyz), for clients on a machine
    /// without DNS for the domain.
    #[arg(long, env = "LLM_INTEGRATION_DEFAULT_HOST", value_name = "HOST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_host: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "LLM_INTEGRATION_LOG_FORMAT", value_name = "FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// SSH door address (`ssh -p PORT HOST COMMAND`); no SSH door unless given.
    #[arg(long, env = "LLM_INTEGRATION_SSH_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_listen: Option<SocketAddr>,
    /// The name in the SSH shell's prompt (NAME ▶); the domain unless given.
    #[arg(long, env = "LLM_INTEGRATION_SSH_NAME", value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_name: Option<String>,
}

/// Every setting, as the configuration file spells it (the field names are
/// the file's keys), before validation. [`Settings::default`] is the one
/// place the defaults are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Data-plane address (what VMs call).
    pub listen: SocketAddr,
    /// Admin address (`/exec`, `/healthz`, `/readyz`).
    pub admin_listen: SocketAddr,
    /// Hostname domain: integrations are `NAME.int.DOMAIN`.
    pub domain: String,
    /// Directory for the database and the first user's token.
    pub data_dir: PathBuf,
    /// The database: a SQLite file path (or `sqlite:PATH`), or a
    /// `postgres://` URL; none means `DATA_DIR/llm-integration.db`.
    pub database: Option<String>,
    /// The master key file; none means the user's configuration directory
    /// (`$XDG_CONFIG_HOME/llm-integration/master.key`, else
    /// `~/.config/llm-integration/master.key`), or `DATA_DIR/master.key`
    /// for an installation that already keeps it there.
    pub master_key_file: Option<PathBuf>,
    /// Email of the first user, created on the first start.
    pub bootstrap_email: String,
    /// `text` or `json`.
    pub log_format: String,
    /// How often the store's version is polled for outside changes (at least 50).
    pub config_poll_ms: u64,
    /// Largest request body (413 past it).
    pub max_body_bytes: usize,
    /// Upstream TCP connect timeout.
    pub connect_timeout_secs: u64,
    /// Time allowed until the upstream's response head (504 past it).
    pub upstream_timeout_secs: u64,
    /// Time allowed between two frames of a response body.
    pub idle_stream_timeout_secs: u64,
    /// Time allowed to read a request head.
    pub header_read_timeout_secs: u64,
    /// Time a connection may stay open with no request in flight.
    pub idle_connection_timeout_secs: u64,
    /// Open data-plane connections at most, in all.
    pub max_connections: usize,
    /// Open data-plane connections at most from one peer address.
    pub max_connections_per_peer: usize,
    /// Request bodies held in memory at once at most, in bytes.
    pub max_buffered_body_bytes: usize,
    /// How long upstream model lists are cached.
    pub models_cache_secs: u64,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_drain_secs: u64,
    /// How long a server's lease on an owner's allocation lives unless
    /// renewed (at least 3): a crashed replica's lease returns to the
    /// balance within it.
    pub allocation_lease_secs: u64,
    /// Front proxies whose client-address header or PROXY header is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// The header a trusted proxy puts the client's address in.
    pub client_ip_header: Option<String>,
    /// Read a PROXY protocol header on connections from the trusted proxies.
    pub proxy_protocol: bool,
    /// TLS certificate chain (PEM) for the data plane; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the data plane; with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A price table replacing the embedded one.
    pub prices: Option<PathBuf>,
    /// The allocation of an owner never given one, in dollars.
    pub default_allocation_usd: f64,
    /// ChatGPT's auth server.
    pub chatgpt_auth_url: String,
    /// The ChatGPT (Codex) backend.
    pub chatgpt_backend_url: String,
    /// The integration hostname for requests naming the gateway by address.
    pub default_host: Option<String>,
    /// The providers' base URLs, by provider name.
    pub upstreams: Upstreams,
    /// The SSH door's address; none means no SSH door.
    pub ssh_listen: Option<SocketAddr>,
    /// The SSH host key (Ed25519, OpenSSH format, generated when missing);
    /// none means `DATA_DIR/ssh_host_ed25519_key`.
    pub ssh_host_key: Option<PathBuf>,
    /// The name in the SSH shell's prompt; none means the domain.
    pub ssh_name: Option<String>,
    /// How long an SSH session may wait for input or stay without a running command.
    pub ssh_idle_timeout_secs: u64,
    /// Open SSH connections at most, in all.
    pub ssh_max_connections: usize,
    /// Open SSH connections at most from one address.
    pub ssh_max_connections_per_peer: usize,
    /// Open SSH connections not signed in yet, at most (past half of it,
    /// new ones are refused at random, as OpenSSH's `MaxStartups`).
    pub ssh_max_unauthenticated: usize,
    /// Authentication attempts one SSH connection may make (each key offered counts).
    pub ssh_max_auth_attempts: usize,
    /// Custom endpoints may be private, loopback or link-local addresses,
    /// and plain `http://` (private deployments and tests; off by default).
    pub allow_private_endpoints: bool,
    /// Extra trusted roots (PEM certificates) for custom endpoints whose
    /// certificates a private authority issued.
    pub upstream_ca_file: Option<PathBuf>,
}

impl Default for Settings {
    /// The defaults. Those of the data plane's limits, ChatGPT's endpoints
    /// and the providers' URLs are their own types' defaults.
    fn default() -> Self {
        let limits = Limits::default();
        let chatgpt = ChatGptEndpoints::default();
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 7701)),
            domain: "exe.xyz".into(),
            data_dir: PathBuf::from("llm-integration-data"),
            database: None,
            master_key_file: None,
            bootstrap_email: "owner@localhost".into(),
            log_format: "text".into(),
            config_poll_ms: 1000,
            max_body_bytes: limits.max_body,
            connect_timeout_secs: limits.connect.as_secs(),
            upstream_timeout_secs: limits.upstream_response.as_secs(),
            idle_stream_timeout_secs: limits.idle_stream.as_secs(),
            header_read_timeout_secs: limits.header_read.as_secs(),
            idle_connection_timeout_secs: limits.idle_connection.as_secs(),
            max_connections: limits.max_connections,
            max_connections_per_peer: limits.max_connections_per_peer,
            max_buffered_body_bytes: limits.max_buffered_body,
            models_cache_secs: 300,
            shutdown_drain_secs: 30,
            allocation_lease_secs: 30,
            trusted_proxies: Vec::new(),
            client_ip_header: None,
            proxy_protocol: false,
            tls_cert: None,
            tls_key: None,
            prices: None,
            default_allocation_usd: 10.0,
            chatgpt_auth_url: chatgpt.auth,
            chatgpt_backend_url: chatgpt.backend,
            default_host: None,
            upstreams: Upstreams::default(),
            ssh_listen: None,
            ssh_host_key: None,
            ssh_name: None,
            ssh_idle_timeout_secs: 600,
            ssh_max_connections: 256,
            ssh_max_connections_per_peer: 8,
            ssh_max_unauthenticated: 64,
            ssh_max_auth_attempts: 6,
            allow_private_endpoints: false,
            upstream_ca_file: None,
        }
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data-plane address.
    pub listen: SocketAddr,
    /// Admin address.
    pub admin_listen: SocketAddr,
    /// Hostname domain (lowercase, no trailing dot).
    pub domain: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The database (a SQLite file or a PostgreSQL URL).
    pub database: Database,
    /// Where the master key comes from.
    pub master_key: KeySource,
    /// The first user's email.
    pub bootstrap_email: String,
    /// Provider base URLs.
    pub upstreams: Upstreams,
    /// Gateway credentials.
    pub gateway_keys: GatewayKeys,
    /// JSON logs.
    pub log_json: bool,
    /// How often the store's version is polled for outside changes.
    pub config_poll: Duration,
    /// Data-plane limits and timeouts.
    pub limits: Limits,
    /// Front proxies whose client-address header is believed.
    pub trusted: TrustedProxies,
    /// How long upstream model lists are cached.
    pub models_ttl: Duration,
    /// How long in-flight requests may run after a shutdown signal.
    pub drain: Duration,
    /// How long an allocation lease lives unless renewed.
    pub allocation_lease: Duration,
    /// Read a PROXY protocol header on connections from the trusted proxies.
    pub proxy_protocol: bool,
    /// TLS certificate chain and key (PEM) for the data plane.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Prices (the embedded defaults unless a `prices` file is given).
    pub prices: llm_integration_core::pricing::PriceTable,
    /// The allocation of an owner never given one, in micro-dollars.
    pub default_allocation: i64,
    /// ChatGPT's auth server and backend.
    pub chatgpt: ChatGptEndpoints,
    /// The integration hostname for requests naming the gateway by address.
    pub default_host: Option<String>,
    /// The SSH door, when it is on.
    pub ssh: Option<crate::ssh::SshSettings>,
    /// Custom endpoints: private addresses allowed, extra trusted roots.
    pub endpoints: EndpointSettings,
}

/// What custom endpoints may reach and trust.
#[derive(Clone)]
pub struct EndpointSettings {
    /// `allow_private_endpoints`.
    pub allow_private: bool,
    /// The certificates of `upstream_ca_file`.
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// Resolves endpoints' host names (the system's resolver unless an
    /// embedder or a test gives its own).
    pub resolver: std::sync::Arc<dyn crate::endpoints::EndpointResolver>,
}

impl Default for EndpointSettings {
    fn default() -> Self {
        EndpointSettings {
            allow_private: false,
            extra_roots: Vec::new(),
            resolver: std::sync::Arc::new(crate::endpoints::SystemResolver),
        }
    }
}

impl std::fmt::Debug for EndpointSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSettings")
            .field("allow_private", &self.allow_private)
            .field("extra_roots", &self.extra_roots.len())
            .finish_non_exhaustive()
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn check_domain(domain: &str) -> Result<String, ConfigError> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let valid = !d.is_empty()
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(d)
    } else {
        Err(ConfigError(format!(
            "invalid domain {domain:?}: use a DNS name such as exe.xyz"
        )))
    }
}

fn check_url(what: &str, url: String) -> Result<String, ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.trim_end_matches('/').to_owned())
    } else {
        Err(ConfigError(format!(
            "invalid {what} base URL {url:?}: it must start with http:// or https://"
        )))
    }
}

/// The settings: `flags` (each falling back to its environment variable
/// through clap) over the file at `file` over [`Settings::default`].
fn layered(file: Option<&Path>, flags: &impl Serialize) -> Result<Settings, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "cannot read the configuration file {}: {e}",
                path.display()
            ))
        })?;
        // The file alone first, so that its errors name it.
        figment = figment.merge(Toml::string(&text));
        figment.extract::<Settings>().map_err(|e| {
            ConfigError(format!(
                "invalid configuration file {}: {}",
                path.display(),
                describe(e)
            ))
        })?;
    }
    figment
        .merge(Serialized::defaults(flags))
        .extract()
        .map_err(|e| ConfigError(format!("invalid configuration: {}", describe(e))))
}

/// A figment error as the key and what is wrong with it.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| match e.path.is_empty() {
            true => e.kind.to_string(),
            false => format!("{}: {}", e.path.join("."), e.kind),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Settings {
    /// Data dir, database and key source.
    fn store(&self) -> Result<(PathBuf, Database, KeySource), ConfigError> {
        let data_dir = self.data_dir.clone();
        let database = match &self.database {
            Some(value) => Database::parse(value).map_err(ConfigError)?,
            None => Database::Sqlite(data_dir.join("llm-integration.db")),
        };
        let key_file = self
            .master_key_file
            .clone()
            .unwrap_or_else(|| crate::crypto::default_key_file(&data_dir));
        Ok((data_dir, database, KeySource::from_env_or(key_file)))
    }

    /// The default allocation in micro-dollars.
    fn default_allocation(&self) -> Result<i64, ConfigError> {
        let usd = self.default_allocation_usd;
        if !(0.0..=1e9).contains(&usd) {
            return Err(ConfigError(format!(
                "default_allocation_usd must be between 0 and 1e9 dollars, not {usd}"
            )));
        }
        Ok((usd * 1e6).round() as i64)
    }

    /// The data plane's limits.
    fn limits(&self) -> Limits {
        Limits {
            max_body: self.max_body_bytes,
            connect: Duration::from_secs(self.connect_timeout_secs),
            upstream_response: Duration::from_secs(self.upstream_timeout_secs),
            idle_stream: Duration::from_secs(self.idle_stream_timeout_secs),
            header_read: Duration::from_secs(self.header_read_timeout_secs),
            idle_connection: Duration::from_secs(self.idle_connection_timeout_secs),
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            max_buffered_body: self.max_buffered_body_bytes,
        }
    }

    /// The SSH door's settings, when `ssh_listen` is set.
    fn ssh(
        &self,
        data_dir: &std::path::Path,
        domain: &str,
    ) -> Result<Option<crate::ssh::SshSettings>, ConfigError> {
        let Some(listen) = self.ssh_listen else {
            return Ok(None);
        };
        if self.ssh_idle_timeout_secs == 0
            || self.ssh_max_connections == 0
            || self.ssh_max_connections_per_peer == 0
            || self.ssh_max_unauthenticated == 0
            || self.ssh_max_auth_attempts == 0
        {
            return Err(ConfigError(
                "ssh_idle_timeout_secs, ssh_max_connections, ssh_max_connections_per_peer, ssh_max_unauthenticated and ssh_max_auth_attempts must be at least 1".into(),
            ));
        }
        let name = self.ssh_name.clone().unwrap_or_else(|| domain.to_owned());
        if name.is_empty()
            || name.chars().count() > 64
            || name.chars().any(crate::ssh::editor::is_unprintable)
        {
            return Err(ConfigError(format!(
                "invalid ssh_name {name:?}: use up to 64 printable characters, such as exe.dev"
            )));
        }
        Ok(Some(crate::ssh::SshSettings {
            listen,
            host_key: self
                .ssh_host_key
                .clone()
                .unwrap_or_else(|| data_dir.join("ssh_host_ed25519_key")),
            name,
            idle_timeout: Duration::from_secs(self.ssh_idle_timeout_secs),
            max_connections: self.ssh_max_connections,
            max_connections_per_peer: self.ssh_max_connections_per_peer,
            max_unauthenticated: self.ssh_max_unauthenticated,
            max_auth_attempts: self.ssh_max_auth_attempts,
        }))
    }

    /// Validates the settings into a [`Config`], with the gateway keys
    /// from the environment.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let (data_dir, database, master_key) = self.store()?;
        let limits = self.limits();
        if limits.header_read.is_zero() || limits.idle_connection.is_zero() {
            return Err(ConfigError(
                "header_read_timeout_secs and idle_connection_timeout_secs must be at least 1"
                    .into(),
            ));
        }
        if self.allocation_lease_secs < 3 {
            return Err(ConfigError(format!(
                "allocation_lease_secs = {} is too short: a lease is renewed every second and must outlive a few renewals; use 3 or more (default 30)",
                self.allocation_lease_secs
            )));
        }
        if limits.max_connections == 0 || limits.max_connections_per_peer == 0 {
            return Err(ConfigError(
                "max_connections and max_connections_per_peer must be at least 1".into(),
            ));
        }
        if limits.max_buffered_body < limits.max_body {
            return Err(ConfigError(format!(
                "max_buffered_body_bytes ({}) must be at least max_body_bytes ({}), or no body could be read",
                limits.max_buffered_body, limits.max_body
            )));
        }
        let default_allocation = self.default_allocation()?;
        let domain = check_domain(&self.domain)?;
        let ssh = self.ssh(&data_dir, &domain)?;
        let mut upstreams = self.upstreams;
        for p in Provider::ALL {
            upstreams[p] = check_url(p.as_str(), upstreams[p].clone())?;
        }
        let log_json = match self.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(ConfigError(format!(
                    "invalid log format {other:?}: use text or json"
                )))
            }
        };
        crate::admin::check_email(&self.bootstrap_email).map_err(ConfigError)?;
        let header = match &self.client_ip_header {
            Some(name) => Some(
                http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| ConfigError(format!("invalid client_ip_header {name:?}: use a header name such as x-forwarded-for")))?,
            ),
            None => None,
        };
        if header.is_some() && self.trusted_proxies.is_empty() {
            return Err(ConfigError("client_ip_header is set but trusted_proxies is empty; list the front proxies whose header is believed".into()));
        }
        let tls = match (self.tls_cert.clone(), self.tls_key.clone()) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "give both tls_cert and tls_key (PEM files), or neither".into(),
                ))
            }
        };
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            return Err(ConfigError("proxy_protocol is on but trusted_proxies is empty; list the front proxies that send the header".into()));
        }
        let prices = match &self.prices {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!(
                        "cannot read the price table {}: {e}",
                        path.display()
                    ))
                })?;
                llm_integration_core::pricing::PriceTable::parse(&text)
                    .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?
            }
            None => llm_integration_core::pricing::PriceTable::default(),
        };
        let chatgpt = ChatGptEndpoints {
            auth: check_url("chatgpt auth", self.chatgpt_auth_url.clone())?,
            backend: check_url("chatgpt backend", self.chatgpt_backend_url.clone())?,
        };
        if let Some(h) = &self.default_host {
            if llm_integration_core::parse_host(h, &domain).is_none() {
                return Err(ConfigError(format!(
                    "default_host {h:?} is not an integration hostname of the domain {domain}; use NAME.int.{domain} or NAME.team.{domain}"
                )));
            }
        }
        let extra_roots = match &self.upstream_ca_file {
            Some(path) => crate::endpoints::read_roots(path).map_err(ConfigError)?,
            None => Vec::new(),
        };
        Ok(Config {
            endpoints: EndpointSettings {
                allow_private: self.allow_private_endpoints,
                extra_roots,
                ..EndpointSettings::default()
            },
            ssh,
            limits,
            default_host: self.default_host,
            chatgpt,
            prices,
            default_allocation,
            proxy_protocol: self.proxy_protocol,
            tls,
            trusted: TrustedProxies {
                addresses: self.trusted_proxies,
                header,
            },
            models_ttl: Duration::from_secs(self.models_cache_secs),
            drain: Duration::from_secs(self.shutdown_drain_secs),
            allocation_lease: Duration::from_secs(self.allocation_lease_secs),
            listen: self.listen,
            admin_listen: self.admin_listen,
            domain,
            data_dir,
            database,
            master_key,
            bootstrap_email: self.bootstrap_email,
            upstreams,
            gateway_keys: GatewayKeys::from_env(),
            log_json,
            config_poll: Duration::from_millis(self.config_poll_ms.max(50)),
        })
    }
}

impl StoreArgs {
    /// The settings, with only these flags over the file and the defaults
    /// (for operator commands).
    fn settings(&self) -> Result<Settings, ConfigError> {
        layered(self.config.as_deref(), self)
    }

    /// The default allocation in micro-dollars (file key `default_allocation_usd`).
    pub fn default_allocation(&self) -> Result<i64, ConfigError> {
        self.settings()?.default_allocation()
    }

    /// Just the store part of the configuration (for operator commands).
    pub fn store_config(&self) -> Result<(PathBuf, Database, KeySource), ConfigError> {
        self.settings()?.store()
    }
}

impl ServeArgs {
    /// The settings: these flags over the file and the defaults.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        layered(self.store.config.as_deref(), self)
    }

    /// Resolves flags, environment, file and defaults into a [`Config`].
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        self.settings()?.into_config()
    }
}

#[cfg(test)]
mod tests {
    use clap::{Command, FromArgMatches};

    use super::*;

    /// The `serve` flags of `argv`, without reading the environment.
    fn parse(argv: &[&str]) -> ServeArgs {
        let command = ServeArgs::augment_args(Command::new("llm-integration-server"))
            .mut_args(|arg| arg.env(None::<&str>));
        let matches = command
            .try_get_matches_from(
                std::iter::once("llm-integration-server").chain(argv.iter().copied()),
            )
            .unwrap();
        ServeArgs::from_arg_matches(&matches).unwrap()
    }

    /// The settings with `flags` over a file holding `file` (if any).
    fn settings(file: Option<&str>, flags: &ServeArgs) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        layered(file.map(|_| path.as_path()), flags)
    }

    /// Each layer wins over the ones below it. `flags` stands for what clap
    /// hands over (a flag, else its environment variable); that a flag wins
    /// over its variable is tested on the binary, in `tests/binary.rs`.
    #[test]
    fn each_layer_wins_over_the_ones_below() {
        struct Case {
            file: &'static str,
            flags: &'static [&'static str],
            read: fn(&Settings) -> String,
            default: &'static str,
            from_file: &'static str,
            from_flag: &'static str,
        }
        let cases = [
            Case {
                file: "domain = \"file.example\"",
                flags: &["--domain", "flag.example"],
                read: |s| s.domain.clone(),
                default: "exe.xyz",
                from_file: "file.example",
                from_flag: "flag.example",
            },
            Case {
                file: "listen = \"127.0.0.1:8800\"",
                flags: &["--listen", "127.0.0.1:9900"],
                read: |s| s.listen.to_string(),
                default: "127.0.0.1:7700",
                from_file: "127.0.0.1:8800",
                from_flag: "127.0.0.1:9900",
            },
            Case {
                file: "log_format = \"json\"",
                flags: &["--log-format", "text"],
                read: |s| s.log_format.clone(),
                default: "text",
                from_file: "json",
                from_flag: "text",
            },
            Case {
                file: "data_dir = \"/file\"",
                flags: &["--data-dir", "/flag"],
                read: |s| s.data_dir.display().to_string(),
                default: "llm-integration-data",
                from_file: "/file",
                from_flag: "/flag",
            },
            Case {
                file: "[upstreams]\nopenai = \"http://file\"",
                flags: &["--openai-base-url", "http://flag"],
                read: |s| s.upstreams.base(Provider::OpenAi).to_owned(),
                default: "https://api.openai.com",
                from_file: "http://file",
                from_flag: "http://flag",
            },
            Case {
                file: "chatgpt_auth_url = \"http://file\"",
                flags: &["--chatgpt-auth-url", "http://flag"],
                read: |s| s.chatgpt_auth_url.clone(),
                default: "https://auth.openai.com",
                from_file: "http://file",
                from_flag: "http://flag",
            },
        ];
        for case in cases {
            let flags = parse(case.flags);
            let none = ServeArgs::default();
            let read = |file, flags| (case.read)(&settings(file, flags).unwrap());
            assert_eq!(read(None, &none), case.default, "{}", case.file);
            assert_eq!(read(Some(case.file), &none), case.from_file);
            assert_eq!(read(None, &flags), case.from_flag);
            assert_eq!(read(Some(case.file), &flags), case.from_flag);
        }
        // A file's [upstreams] table that names one provider leaves the others' defaults.
        let s = settings(
            Some("[upstreams]\nopenai = \"http://file\""),
            &ServeArgs::default(),
        );
        let s = s.unwrap();
        assert_eq!(
            s.upstreams.base(Provider::Anthropic),
            "https://api.anthropic.com"
        );
        assert_eq!(
            s.upstreams.base(Provider::Fireworks),
            "https://api.fireworks.ai"
        );
    }

    #[test]
    fn help_texts_show_the_defaults() {
        let command = ServeArgs::augment_args(Command::new("llm-integration-server"));
        let mut shown = 0;
        for arg in command.get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let Some((_, rest)) = help.split_once("[default: ") else {
                continue;
            };
            let value = rest.split(']').next().unwrap_or_default();
            if value.starts_with("DATA_DIR/") || value.starts_with("$XDG_CONFIG_HOME") {
                continue; // Derived from the data or configuration directory.
            }
            let long = format!("--{}", arg.get_long().unwrap());
            // Giving the shown default is the same as giving nothing.
            let given = settings(None, &parse(&[&long, value])).unwrap();
            assert_eq!(
                given,
                Settings::default(),
                "{long}'s help says [default: {value}]"
            );
            shown += 1;
        }
        assert_eq!(shown, 11, "flags whose help shows a default");
    }

    #[test]
    fn limits_default_to_the_data_planes() {
        let from_settings = Settings::default().limits();
        assert_eq!(
            format!("{from_settings:?}"),
            format!("{:?}", Limits::default())
        );
    }

    /// The architecture invariant: the configuration depends on the data
    /// plane, never the other way round.
    #[test]
    fn the_data_plane_does_not_import_the_configuration() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dataplane");
        let mut read = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("crate::config"), "{}", path.display());
            read += 1;
        }
        assert!(read > 0);
    }

    /// README's configuration table.
    #[test]
    fn flags_and_variables_are_as_documented() {
        let documented = [
            ("config", "LLM_INTEGRATION_CONFIG"),
            ("listen", "LLM_INTEGRATION_LISTEN"),
            ("admin-listen", "LLM_INTEGRATION_ADMIN_LISTEN"),
            ("domain", "LLM_INTEGRATION_DOMAIN"),
            ("data-dir", "LLM_INTEGRATION_DATA_DIR"),
            ("database", "LLM_INTEGRATION_DATABASE"),
            ("master-key-file", "LLM_INTEGRATION_MASTER_KEY_FILE"),
            ("anthropic-base-url", "LLM_INTEGRATION_ANTHROPIC_BASE_URL"),
            ("openai-base-url", "LLM_INTEGRATION_OPENAI_BASE_URL"),
            ("fireworks-base-url", "LLM_INTEGRATION_FIREWORKS_BASE_URL"),
            ("bootstrap-email", "LLM_INTEGRATION_BOOTSTRAP_EMAIL"),
            ("default-host", "LLM_INTEGRATION_DEFAULT_HOST"),
            ("chatgpt-auth-url", "LLM_INTEGRATION_CHATGPT_AUTH_URL"),
            ("chatgpt-backend-url", "LLM_INTEGRATION_CHATGPT_BACKEND_URL"),
            ("tls-cert", "LLM_INTEGRATION_TLS_CERT"),
            ("tls-key", "LLM_INTEGRATION_TLS_KEY"),
            ("log-format", "LLM_INTEGRATION_LOG_FORMAT"),
            ("ssh-listen", "LLM_INTEGRATION_SSH_LISTEN"),
            ("ssh-name", "LLM_INTEGRATION_SSH_NAME"),
        ];
        let command = ServeArgs::augment_args(Command::new("llm-integration-server"));
        let actual: Vec<(String, String)> = command
            .get_arguments()
            .map(|a| {
                let env = a.get_env().map(|e| e.to_string_lossy().into_owned());
                (
                    a.get_long().unwrap_or_default().to_owned(),
                    env.unwrap_or_default(),
                )
            })
            .collect();
        let documented: Vec<(String, String)> = documented
            .iter()
            .map(|(l, e)| (l.to_string(), e.to_string()))
            .collect();
        let mut sorted = actual.clone();
        sorted.sort();
        let mut expected = documented.clone();
        expected.sort();
        // Gateway keys are not among them: they come from the environment only.
        assert_eq!(sorted, expected);
    }

    /// Every file key, each set to something other than its default.
    #[test]
    fn every_file_key_is_read() {
        let file = r#"
            listen = "127.0.0.1:1"
            admin_listen = "127.0.0.1:2"
            domain = "example.com"
            data_dir = "/d"
            database = "/d/db"
            master_key_file = "/k"
            bootstrap_email = "a@b"
            log_format = "json"
            config_poll_ms = 7
            max_body_bytes = 8
            connect_timeout_secs = 9
            upstream_timeout_secs = 10
            idle_stream_timeout_secs = 11
            header_read_timeout_secs = 12
            idle_connection_timeout_secs = 15
            max_connections = 16
            max_connections_per_peer = 17
            max_buffered_body_bytes = 18
            models_cache_secs = 13
            shutdown_drain_secs = 14
            allocation_lease_secs = 19
            trusted_proxies = ["10.0.0.1"]
            client_ip_header = "x-forwarded-for"
            proxy_protocol = true
            tls_cert = "/c.pem"
            tls_key = "/k.pem"
            prices = "/p.toml"
            default_allocation_usd = 5
            chatgpt_auth_url = "http://auth"
            chatgpt_backend_url = "http://backend"
            default_host = "llm.int.example.com"
            ssh_listen = "127.0.0.1:3"
            ssh_host_key = "/h"
            ssh_name = "box"
            ssh_idle_timeout_secs = 19
            ssh_max_connections = 20
            ssh_max_connections_per_peer = 21
            ssh_max_unauthenticated = 23
            ssh_max_auth_attempts = 22
            allow_private_endpoints = true
            upstream_ca_file = "/ca.pem"
            [upstreams]
            anthropic = "http://a"
            openai = "http://o"
            fireworks = "http://f"
        "#;
        let read = settings(Some(file), &ServeArgs::default()).unwrap();
        let table = |s: &Settings| match toml::Value::try_from(s).unwrap() {
            toml::Value::Table(t) => t,
            other => panic!("{other}"),
        };
        let (read, defaults) = (table(&read), table(&Settings::default()));
        let file: toml::Table = toml::from_str(file).unwrap();
        assert_eq!(read.len(), file.len());
        for (key, value) in &read {
            assert_ne!(defaults.get(key), Some(value), "{key}");
        }
        let upstreams = &read["upstreams"];
        for p in Provider::ALL {
            assert_ne!(upstreams[p.as_str()].as_str(), Some(p.default_base_url()));
        }
        assert_eq!(read["default_allocation_usd"].as_float(), Some(5.0));
    }

    #[test]
    fn resolution_normalizes() {
        let file = "domain = \"Example.COM.\"\ndefault_host = \"llm.int.example.com\"\n[upstreams]\nopenai = \"http://127.0.0.1:1/\"\n";
        let c = settings(Some(file), &ServeArgs::default())
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(c.domain, "example.com");
        assert_eq!(c.upstreams.base(Provider::OpenAi), "http://127.0.0.1:1");
        assert_eq!(
            c.database,
            Database::Sqlite("llm-integration-data/llm-integration.db".into())
        );
        assert_eq!(c.default_allocation, 10_000_000);
        assert_eq!(c.config_poll, Duration::from_secs(1));
        let c = settings(
            Some("config_poll_ms = 1\ndata_dir = \"/d\""),
            &ServeArgs::default(),
        )
        .unwrap()
        .into_config()
        .unwrap();
        assert_eq!(c.config_poll, Duration::from_millis(50));
        assert_eq!(c.database, Database::Sqlite("/d/llm-integration.db".into()));
    }

    /// Each way a configuration is refused, and what the message says.
    #[test]
    fn refusals() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("domian = \"x\"", &[], "domian"),
            (
                "ssh_listen = \"127.0.0.1:0\"\nssh_name = \"a\\u001b[2Jb\"",
                &[],
                "invalid ssh_name",
            ),
            (
                "ssh_max_auth_attempts = 0",
                &["--ssh-listen", "127.0.0.1:0"],
                "ssh_max_auth_attempts must be at least 1",
            ),
            ("[upstreams]\nopneai = \"http://x\"", &[], "opneai"),
            ("listen = \"nowhere\"", &[], "listen"),
            ("gateway_keys = \"sk\"", &[], "gateway_keys"),
            (
                "domain = \"bad domain\"",
                &[],
                "invalid domain \"bad domain\"",
            ),
            (
                "",
                &["--domain", "bad domain"],
                "invalid domain \"bad domain\"",
            ),
            (
                "[upstreams]\nfireworks = \"ftp://x\"",
                &[],
                "invalid fireworks base URL \"ftp://x\"",
            ),
            (
                "",
                &["--anthropic-base-url", "x"],
                "invalid anthropic base URL \"x\"",
            ),
            (
                "chatgpt_backend_url = \"x\"",
                &[],
                "invalid chatgpt backend base URL",
            ),
            (
                "database = \"postgress://u:pw@h/db\"",
                &[],
                "unknown scheme `postgress:`",
            ),
            (
                "",
                &["--database", "postgres:/u@h/db"],
                "two slashes after the scheme",
            ),
            (
                "allocation_lease_secs = 1",
                &[],
                "allocation_lease_secs = 1 is too short",
            ),
            (
                "log_format = \"xml\"",
                &[],
                "invalid log format \"xml\": use text or json",
            ),
            ("bootstrap_email = \"nobody\"", &[], "nobody"),
            (
                "tls_cert = \"/c.pem\"",
                &[],
                "give both tls_cert and tls_key",
            ),
            (
                "",
                &["--tls-key", "/k.pem"],
                "give both tls_cert and tls_key",
            ),
            (
                "client_ip_header = \"x-forwarded-for\"",
                &[],
                "client_ip_header is set but trusted_proxies is empty",
            ),
            (
                "client_ip_header = \"bad header\"\ntrusted_proxies = [\"10.0.0.1\"]",
                &[],
                "invalid client_ip_header \"bad header\"",
            ),
            (
                "proxy_protocol = true",
                &[],
                "proxy_protocol is on but trusted_proxies is empty",
            ),
            (
                "default_host = \"llm.int.other.example\"",
                &[],
                "default_host \"llm.int.other.example\" is not an integration hostname",
            ),
            (
                "default_allocation_usd = -1",
                &[],
                "default_allocation_usd must be between 0 and 1e9 dollars",
            ),
            (
                "prices = \"/nonexistent/prices.toml\"",
                &[],
                "cannot read the price table /nonexistent/prices.toml",
            ),
        ];
        for (file, flags, expected) in cases {
            let error = settings(Some(file), &parse(flags)).and_then(Settings::into_config);
            let error = error.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains(expected), "{file} {flags:?}: {error:?}");
        }
        let missing = ServeArgs {
            store: StoreArgs {
                config: Some("/nonexistent/config.toml".into()),
                ..StoreArgs::default()
            },
            ..ServeArgs::default()
        };
        let error = missing.resolve().unwrap_err().to_string();
        assert!(
            error.contains("cannot read the configuration file /nonexistent/config.toml"),
            "{error}"
        );
    }
}
