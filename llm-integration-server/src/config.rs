//! Server configuration: a TOML file, environment variables and flags.
//!
//! Precedence: a flag, then its environment variable (`LLM_INTEGRATION_…`),
//! then the file (`--config`), then the default. Gateway credentials come
//! from the environment only, never from the file or a flag.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use llm_integration_core::Provider;
use serde::Deserialize;

use crate::crypto::KeySource;
use crate::upstreams::{GatewayKeys, Upstreams};

/// Where the store and its master key are.
#[derive(Debug, Clone, Args, Default)]
pub struct StoreArgs {
    /// A TOML configuration file.
    #[arg(long, env = "LLM_INTEGRATION_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the database, master key and first user's token.
    #[arg(long, env = "LLM_INTEGRATION_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The SQLite database file [default: DATA_DIR/llm-integration.db].
    #[arg(long, env = "LLM_INTEGRATION_DATABASE", value_name = "FILE")]
    pub database: Option<PathBuf>,
    /// The master key file [default: DATA_DIR/master.key]; LLM_INTEGRATION_MASTER_KEY (base64) takes precedence.
    #[arg(long, env = "LLM_INTEGRATION_MASTER_KEY_FILE", value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
}

/// `serve` flags.
#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// Where the store and its master key are.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Data-plane address (what VMs call) [default: 127.0.0.1:7700].
    #[arg(long, env = "LLM_INTEGRATION_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin address (/exec, /healthz, /readyz) [default: 127.0.0.1:7701].
    #[arg(long, env = "LLM_INTEGRATION_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Hostname domain: integrations are NAME.int.DOMAIN [default: exe.xyz].
    #[arg(long, env = "LLM_INTEGRATION_DOMAIN", value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Email of the first user, created on the first start [default: owner@localhost].
    #[arg(long, env = "LLM_INTEGRATION_BOOTSTRAP_EMAIL", value_name = "EMAIL")]
    pub bootstrap_email: Option<String>,
    /// Anthropic base URL [default: https://api.anthropic.com].
    #[arg(long, env = "LLM_INTEGRATION_ANTHROPIC_BASE_URL", value_name = "URL")]
    pub anthropic_base_url: Option<String>,
    /// OpenAI base URL [default: https://api.openai.com].
    #[arg(long, env = "LLM_INTEGRATION_OPENAI_BASE_URL", value_name = "URL")]
    pub openai_base_url: Option<String>,
    /// Fireworks base URL [default: https://api.fireworks.ai].
    #[arg(long, env = "LLM_INTEGRATION_FIREWORKS_BASE_URL", value_name = "URL")]
    pub fireworks_base_url: Option<String>,
    /// TLS certificate chain (PEM) for the data plane; with --tls-key.
    #[arg(long, env = "LLM_INTEGRATION_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the data plane; with --tls-cert.
    #[arg(long, env = "LLM_INTEGRATION_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// ChatGPT's auth server [default: https://auth.openai.com].
    #[arg(long, env = "LLM_INTEGRATION_CHATGPT_AUTH_URL", value_name = "URL")]
    pub chatgpt_auth_url: Option<String>,
    /// The ChatGPT (Codex) backend [default: https://chatgpt.com/backend-api/codex].
    #[arg(long, env = "LLM_INTEGRATION_CHATGPT_BACKEND_URL", value_name = "URL")]
    pub chatgpt_backend_url: Option<String>,
    /// The integration hostname assumed for requests that name the gateway by
    /// address or as localhost (e.g. llm.int.exe.xyz), for clients on a machine
    /// without DNS for the domain.
    #[arg(long, env = "LLM_INTEGRATION_DEFAULT_HOST", value_name = "HOST")]
    pub default_host: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "LLM_INTEGRATION_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// The configuration file's shape. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    domain: Option<String>,
    data_dir: Option<PathBuf>,
    database: Option<PathBuf>,
    master_key_file: Option<PathBuf>,
    bootstrap_email: Option<String>,
    log_format: Option<String>,
    config_poll_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    connect_timeout_secs: Option<u64>,
    upstream_timeout_secs: Option<u64>,
    idle_stream_timeout_secs: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    models_cache_secs: Option<u64>,
    shutdown_drain_secs: Option<u64>,
    #[serde(default)]
    trusted_proxies: Vec<std::net::IpAddr>,
    client_ip_header: Option<String>,
    #[serde(default)]
    proxy_protocol: bool,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    prices: Option<PathBuf>,
    default_allocation_usd: Option<f64>,
    chatgpt_auth_url: Option<String>,
    chatgpt_backend_url: Option<String>,
    default_host: Option<String>,
    #[serde(default)]
    upstreams: FileUpstreams,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstreams {
    anthropic: Option<String>,
    openai: Option<String>,
    fireworks: Option<String>,
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
    /// SQLite database file.
    pub database: PathBuf,
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
    pub limits: crate::dataplane::Limits,
    /// Front proxies whose client-address header is believed.
    pub trusted: crate::dataplane::TrustedProxies,
    /// How long upstream model lists are cached.
    pub models_ttl: Duration,
    /// How long in-flight requests may run after a shutdown signal.
    pub drain: Duration,
    /// Read a PROXY protocol header on connections from the trusted proxies.
    pub proxy_protocol: bool,
    /// TLS certificate chain and key (PEM) for the data plane.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Prices (the embedded defaults unless a `prices` file is given).
    pub prices: llm_integration_core::pricing::PriceTable,
    /// The allocation of an owner never given one, in micro-dollars.
    pub default_allocation: i64,
    /// ChatGPT's auth server and backend.
    pub chatgpt: crate::chatgpt::ChatGptEndpoints,
    /// The integration hostname for requests naming the gateway by address.
    pub default_host: Option<String>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read the configuration file {}: {e}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| {
        ConfigError(format!(
            "invalid configuration file {}: {e}",
            path.display()
        ))
    })
}

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

impl StoreArgs {
    fn file(&self) -> Result<FileConfig, ConfigError> {
        match &self.config {
            Some(path) => read_file(path),
            None => Ok(FileConfig::default()),
        }
    }

    /// Data dir, database and key source, resolved with `file`.
    fn resolve(&self, file: &FileConfig) -> (PathBuf, PathBuf, KeySource) {
        let data_dir = self
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("llm-integration-data"));
        let database = self
            .database
            .clone()
            .or_else(|| file.database.clone())
            .unwrap_or_else(|| data_dir.join("llm-integration.db"));
        let key_file = self
            .master_key_file
            .clone()
            .or_else(|| file.master_key_file.clone())
            .unwrap_or_else(|| data_dir.join("master.key"));
        (data_dir, database, KeySource::from_env_or(key_file))
    }

    /// The default allocation in micro-dollars (file key `default_allocation_usd`, default $10).
    pub fn default_allocation(&self) -> Result<i64, ConfigError> {
        let file = self.file()?;
        Ok((file.default_allocation_usd.unwrap_or(10.0) * 1e6).round() as i64)
    }

    /// Just the store part of the configuration (for operator commands).
    pub fn store_config(&self) -> Result<(PathBuf, PathBuf, KeySource), ConfigError> {
        let file = self.file()?;
        Ok(self.resolve(&file))
    }
}

impl ServeArgs {
    /// Resolves flags, environment, file and defaults into a [`Config`].
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let file = self.store.file()?;
        let (data_dir, database, master_key) = self.store.resolve(&file);
        let domain = check_domain(
            self.domain
                .as_deref()
                .or(file.domain.as_deref())
                .unwrap_or("exe.xyz"),
        )?;
        let pick = |flag: &Option<String>,
                    file: &Option<String>,
                    p: Provider|
         -> Result<String, ConfigError> {
            check_url(
                p.as_str(),
                flag.clone()
                    .or_else(|| file.clone())
                    .unwrap_or_else(|| p.default_base_url().to_owned()),
            )
        };
        let mut upstreams = Upstreams::default();
        upstreams[Provider::Anthropic] = pick(
            &self.anthropic_base_url,
            &file.upstreams.anthropic,
            Provider::Anthropic,
        )?;
        upstreams[Provider::OpenAi] = pick(
            &self.openai_base_url,
            &file.upstreams.openai,
            Provider::OpenAi,
        )?;
        upstreams[Provider::Fireworks] = pick(
            &self.fireworks_base_url,
            &file.upstreams.fireworks,
            Provider::Fireworks,
        )?;
        let log_format = self
            .log_format
            .clone()
            .or(file.log_format.clone())
            .unwrap_or_else(|| "text".into());
        let log_json = match log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(ConfigError(format!(
                    "invalid log format {other:?}: use text or json"
                )))
            }
        };
        let bootstrap_email = self
            .bootstrap_email
            .clone()
            .or(file.bootstrap_email.clone())
            .unwrap_or_else(|| "owner@localhost".into());
        crate::admin::check_email(&bootstrap_email).map_err(ConfigError)?;
        let defaults = crate::dataplane::Limits::default();
        let secs = |v: Option<u64>, d: Duration| v.map(Duration::from_secs).unwrap_or(d);
        let limits = crate::dataplane::Limits {
            max_body: file.max_body_bytes.unwrap_or(defaults.max_body),
            connect: secs(file.connect_timeout_secs, defaults.connect),
            upstream_response: secs(file.upstream_timeout_secs, defaults.upstream_response),
            idle_stream: secs(file.idle_stream_timeout_secs, defaults.idle_stream),
            header_read: secs(file.header_read_timeout_secs, defaults.header_read),
        };
        let header = match &file.client_ip_header {
            Some(name) => Some(
                http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| ConfigError(format!("invalid client_ip_header {name:?}: use a header name such as x-forwarded-for")))?,
            ),
            None => None,
        };
        if header.is_some() && file.trusted_proxies.is_empty() {
            return Err(ConfigError("client_ip_header is set but trusted_proxies is empty; list the front proxies whose header is believed".into()));
        }
        let tls = match (
            self.tls_cert.clone().or(file.tls_cert.clone()),
            self.tls_key.clone().or(file.tls_key.clone()),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "give both tls_cert and tls_key (PEM files), or neither".into(),
                ))
            }
        };
        if file.proxy_protocol && file.trusted_proxies.is_empty() {
            return Err(ConfigError("proxy_protocol is on but trusted_proxies is empty; list the front proxies that send the header".into()));
        }
        let prices = match &file.prices {
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
        let allocation_usd = file.default_allocation_usd.unwrap_or(10.0);
        if !(0.0..=1e9).contains(&allocation_usd) {
            return Err(ConfigError(format!(
                "default_allocation_usd must be between 0 and 1e9 dollars, not {allocation_usd}"
            )));
        }
        let defaults = crate::chatgpt::ChatGptEndpoints::default();
        let chatgpt = crate::chatgpt::ChatGptEndpoints {
            auth: check_url(
                "chatgpt auth",
                self.chatgpt_auth_url
                    .clone()
                    .or(file.chatgpt_auth_url.clone())
                    .unwrap_or(defaults.auth),
            )?,
            backend: check_url(
                "chatgpt backend",
                self.chatgpt_backend_url
                    .clone()
                    .or(file.chatgpt_backend_url.clone())
                    .unwrap_or(defaults.backend),
            )?,
        };
        let default_host = self.default_host.clone().or(file.default_host.clone());
        if let Some(h) = &default_host {
            if llm_integration_core::host::parse_host(h, &domain).is_none() {
                return Err(ConfigError(format!(
                    "default_host {h:?} is not an integration hostname of the domain {domain}; use NAME.int.{domain} or NAME.team.{domain}"
                )));
            }
        }
        Ok(Config {
            default_host,
            chatgpt,
            prices,
            default_allocation: (allocation_usd * 1e6).round() as i64,
            proxy_protocol: file.proxy_protocol,
            tls,
            limits,
            trusted: crate::dataplane::TrustedProxies {
                addresses: file.trusted_proxies.clone(),
                header,
            },
            models_ttl: Duration::from_secs(file.models_cache_secs.unwrap_or(300)),
            drain: Duration::from_secs(file.shutdown_drain_secs.unwrap_or(30)),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7700))),
            admin_listen: self
                .admin_listen
                .or(file.admin_listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7701))),
            domain,
            data_dir,
            database,
            master_key,
            bootstrap_email,
            upstreams,
            gateway_keys: GatewayKeys::from_env(),
            log_json,
            config_poll: Duration::from_millis(file.config_poll_ms.unwrap_or(1000).max(50)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "domain = \"Example.COM.\"\nadmin_listen = \"127.0.0.1:9\"\n[upstreams]\nopenai = \"http://127.0.0.1:1/\"\n").unwrap();
        let mut args = ServeArgs {
            store: StoreArgs {
                config: Some(path.clone()),
                ..StoreArgs::default()
            },
            ..ServeArgs::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.domain, "example.com");
        assert_eq!(c.admin_listen.port(), 9);
        assert_eq!(c.upstreams.base(Provider::OpenAi), "http://127.0.0.1:1");
        assert_eq!(
            c.upstreams.base(Provider::Anthropic),
            "https://api.anthropic.com"
        );
        args.domain = Some("flag.example".into());
        assert_eq!(args.resolve().unwrap().domain, "flag.example");
        args.domain = Some("bad domain".into());
        assert!(args
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("invalid domain"));
        std::fs::write(&path, "domian = \"x\"\n").unwrap();
        args.domain = None;
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("domian"), "{err}");
    }
}
