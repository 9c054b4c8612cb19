//! Custom endpoints' connections: the address policy, checked where the
//! connection is made, and the pooled client that applies it.
//!
//! Every connection to a custom endpoint goes through
//! [`GuardedConnector`]: a URL naming an address is checked before
//! connecting; a host name is resolved by the [`EndpointResolver`] (the
//! system's, or an embedder's) and every address it resolves to is checked
//! ([`EndpointPolicy::check`]) before any is tried. The same check runs at
//! configuration time ([`EndpointPolicy::check_url`]), for an early error;
//! the one at connect time is what holds, since a name may resolve
//! elsewhere later (DNS rebinding). Redirects are never followed (the
//! client does not follow them, and the data plane answers a custom
//! endpoint's 3xx with a 502).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use llm_integration_core::endpoint::{address_rule, EndpointHost, EndpointUrl};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;

use crate::dataplane::{Limits, UpstreamBody};

/// Resolves custom endpoints' host names: the seam a test or an embedder
/// replaces (a fixed table, a DNS-over-HTTPS client, …).
#[async_trait]
pub trait EndpointResolver: Send + Sync + 'static {
    /// The addresses `host` resolves to now.
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>>;
}

/// The system's resolver (`getaddrinfo`, on tokio's blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl EndpointResolver for SystemResolver {
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        let addrs = tokio::net::lookup_host((host, 0)).await?;
        Ok(addrs.map(|a| a.ip()).collect())
    }
}

/// Which addresses a custom endpoint may be reached at.
#[derive(Debug, Default)]
pub struct EndpointPolicy {
    /// Private, loopback and link-local addresses, and plain `http://`,
    /// are allowed (`allow_private_endpoints`: private deployments, tests).
    pub allow_private: bool,
    /// The platform's own addresses (the server's listeners, added as they
    /// are bound): refused whatever `allow_private` says.
    own: std::sync::RwLock<Vec<SocketAddr>>,
}

/// A custom endpoint the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EndpointRefused(pub String);

const ALLOW_HINT: &str =
    "custom endpoints must be public HTTPS services; an operator running a private deployment can set allow_private_endpoints = true";

impl EndpointPolicy {
    /// Checks one address `host` resolved to (`host` names it in the error).
    ///
    /// # Errors
    /// [`EndpointRefused`] naming the address and the rule.
    pub fn check(&self, host: &str, address: IpAddr, port: u16) -> Result<(), EndpointRefused> {
        // `::ffff:a.b.c.d` is a.b.c.d; connecting to an unspecified address
        // reaches this machine, so it is never an endpoint.
        let address = address.to_canonical();
        if address.is_unspecified() {
            return Err(EndpointRefused(format!(
                "the custom endpoint {host} is the unspecified address {address}, which reaches this machine; give the endpoint's own address"
            )));
        }
        if self.is_own(address, port) {
            return Err(EndpointRefused(format!(
                "the custom endpoint {host} is this gateway itself ({address} port {port}); point it at another service"
            )));
        }
        if self.allow_private {
            return Ok(());
        }
        match address_rule(address) {
            None => Ok(()),
            Some(rule) if host == address.to_string() => Err(EndpointRefused(format!(
                "the custom endpoint address {address} is {rule}; {ALLOW_HINT}"
            ))),
            Some(rule) => Err(EndpointRefused(format!(
                "the custom endpoint {host} resolves to {address}, which is {rule}; {ALLOW_HINT}"
            ))),
        }
    }

    /// A policy allowing private addresses or not.
    pub fn new(allow_private: bool) -> Self {
        EndpointPolicy {
            allow_private,
            own: Default::default(),
        }
    }

    /// Records a listener of this server: endpoints may not point at it.
    pub fn add_own(&self, listener: SocketAddr) {
        if let Ok(mut own) = self.own.write() {
            own.push(listener);
        }
    }

    /// Whether `address:port` is one of the server's own listeners (a
    /// listener on an unspecified address owns that port on every local
    /// address: loopback and private ones).
    fn is_own(&self, address: IpAddr, port: u16) -> bool {
        let Ok(own) = self.own.read() else {
            return true;
        };
        let address = address.to_canonical();
        own.iter().any(|listener| {
            let bound = listener.ip().to_canonical();
            listener.port() == port
                && (bound == address
                    || (bound.is_unspecified() && address_rule(address).is_some())
                    || (bound.is_loopback() && address.is_loopback()))
        })
    }

    /// Checks `url` as configured: its scheme, and its address or every
    /// address its host resolves to now.
    ///
    /// # Errors
    /// [`EndpointRefused`] naming the rule, or the resolution failure.
    pub async fn check_url(
        &self,
        url: &EndpointUrl,
        resolver: &dyn EndpointResolver,
    ) -> Result<(), EndpointRefused> {
        if url.is_plain_http() && !self.allow_private {
            return Err(EndpointRefused(format!(
                "{url} is plain http; use https:// (an operator running a private deployment can allow http with allow_private_endpoints = true)"
            )));
        }
        let port = url.port();
        match url.host() {
            EndpointHost::Address(ip) => self.check(&ip.to_string(), ip, port),
            EndpointHost::Name(name) => {
                let addresses = resolver.resolve(name).await.map_err(|e| {
                    EndpointRefused(format!(
                        "the custom endpoint host {name} does not resolve ({e}); check the URL"
                    ))
                })?;
                if addresses.is_empty() {
                    return Err(EndpointRefused(format!(
                        "the custom endpoint host {name} resolves to no address; check the URL"
                    )));
                }
                addresses
                    .into_iter()
                    .try_for_each(|ip| self.check(name, ip, port))
            }
        }
    }
}

/// The TCP connector of custom endpoints: refuses plain `http://` and
/// literal addresses the policy refuses, resolves a host name with the
/// [`EndpointResolver`] and refuses it if any address it resolves to is
/// refused (not only the first: a client could otherwise be steered to
/// the private one), then connects to the checked addresses in order.
#[derive(Clone)]
pub struct GuardedConnector {
    resolver: Arc<dyn EndpointResolver>,
    policy: Arc<EndpointPolicy>,
    connect_timeout: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

fn refused(e: EndpointRefused) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, e)
}

impl tower_service::Service<http::Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = BoxFuture<io::Result<Self::Response>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let https = uri.scheme_str() == Some("https");
            if !https && !this.policy.allow_private {
                return Err(refused(EndpointRefused(format!(
                    "{uri} is plain http; custom endpoints must use https:// ({ALLOW_HINT})"
                ))));
            }
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let host = uri.host().unwrap_or("");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let addresses = match host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => this.resolver.resolve(host).await?,
            };
            if addresses.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("the custom endpoint host {host} resolves to no address"),
                ));
            }
            for ip in &addresses {
                this.policy.check(host, *ip, port).map_err(refused)?;
            }
            let mut last = None;
            for ip in addresses {
                let address = SocketAddr::new(ip, port);
                match tokio::time::timeout(this.connect_timeout, TcpStream::connect(address)).await
                {
                    Ok(Ok(stream)) => {
                        stream.set_nodelay(true)?;
                        return Ok(TokioIo::new(stream));
                    }
                    Ok(Err(e)) => last = Some(e),
                    Err(_) => {
                        last = Some(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("connecting to {address} timed out"),
                        ))
                    }
                }
            }
            Err(last.unwrap_or_else(|| io::Error::other("no address to connect to")))
        })
    }
}

/// The pooled client of custom endpoints (HTTP/1.1 over rustls, or plain
/// HTTP where the policy allows it).
pub type EndpointClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<GuardedConnector>,
    UpstreamBody,
>;

/// Reads the extra trusted roots in `path` (PEM certificates), for
/// endpoints whose certificates a private authority issued.
///
/// # Errors
/// A message naming the file and what is wrong with it.
pub fn read_roots(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("upstream_ca_file {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("upstream_ca_file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "upstream_ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Builds the custom endpoints' client: the public web's roots plus
/// `extra_roots`, the [`GuardedConnector`], no redirects (the client
/// follows none).
///
/// # Errors
/// A message when an extra root is not a usable certificate.
pub fn endpoint_client(
    limits: &Limits,
    policy: Arc<EndpointPolicy>,
    resolver: Arc<dyn EndpointResolver>,
    extra_roots: &[CertificateDer<'static>],
) -> Result<EndpointClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| format!("upstream_ca_file: a certificate cannot be a trust root: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = GuardedConnector {
        resolver,
        policy,
        connect_timeout: limits.connect,
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .http1_read_buf_exact_size(4096)
            .timer(TokioTimer::new())
            .build(https),
    )
}
