//! The data-plane listener: HTTP/1.1 and HTTP/2 on one port (cleartext,
//! by preface; or TLS with ALPN when a certificate is configured), the
//! PROXY protocol (v1 and v2) from trusted front proxies, and graceful
//! shutdown.

use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use llm_integration_core::seams::ConnectionInfo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::DataPlane;
use crate::listen;

/// How connections are accepted.
#[derive(Clone, Default)]
pub struct Accept {
    /// TLS, when a certificate is configured.
    pub tls: Option<TlsAcceptor>,
    /// Read a PROXY protocol header from these peers.
    pub proxy_protocol_from: Vec<IpAddr>,
}

impl std::fmt::Debug for Accept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accept")
            .field("tls", &self.tls.is_some())
            .field("proxy_protocol_from", &self.proxy_protocol_from)
            .finish()
    }
}

/// A TLS acceptor for the PEM certificate chain and key at these paths,
/// offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the TLS certificate and key do not work together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Reads a PROXY protocol v1 or v2 header and returns the source address it
/// names (`None` for `LOCAL`/`UNKNOWN`, which mean "the peer itself").
async fn read_proxy_header(stream: &mut TcpStream) -> Result<Option<IpAddr>, String> {
    const V2_SIGNATURE: [u8; 12] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];
    let mut head = [0u8; 16];
    stream
        .read_exact(&mut head[..6])
        .await
        .map_err(|e| format!("reading the PROXY header: {e}"))?;
    if &head[..6] == b"PROXY " {
        // v1: one text line of at most 107 bytes, ending in CRLF.
        let mut line = head[..6].to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= 107 {
                return Err("PROXY v1 header too long".into());
            }
            let mut b = [0u8; 1];
            stream
                .read_exact(&mut b)
                .await
                .map_err(|e| format!("reading the PROXY header: {e}"))?;
            line.push(b[0]);
        }
        let text =
            std::str::from_utf8(&line).map_err(|_| "PROXY v1 header is not text".to_owned())?;
        let header =
            ppp::v1::Header::try_from(text).map_err(|e| format!("invalid PROXY v1 header: {e}"))?;
        return Ok(match header.addresses {
            ppp::v1::Addresses::Tcp4(a) => Some(IpAddr::V4(a.source_address)),
            ppp::v1::Addresses::Tcp6(a) => Some(IpAddr::V6(a.source_address)),
            ppp::v1::Addresses::Unknown => None,
        });
    }
    stream
        .read_exact(&mut head[6..])
        .await
        .map_err(|e| format!("reading the PROXY header: {e}"))?;
    if head[..12] != V2_SIGNATURE {
        return Err(
            "the connection from a trusted proxy does not start with a PROXY protocol header"
                .into(),
        );
    }
    let length = u16::from_be_bytes([head[14], head[15]]) as usize;
    let mut full = head.to_vec();
    full.resize(16 + length, 0);
    stream
        .read_exact(&mut full[16..])
        .await
        .map_err(|e| format!("reading the PROXY header: {e}"))?;
    let header = ppp::v2::Header::try_from(full.as_slice())
        .map_err(|e| format!("invalid PROXY v2 header: {e}"))?;
    Ok(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => Some(IpAddr::V4(a.source_address)),
        ppp::v2::Addresses::IPv6(a) => Some(IpAddr::V6(a.source_address)),
        _ => None,
    })
}

/// How long cut answers have to write their `error` event before their
/// connections are closed.
const CUT_GRACE: Duration = Duration::from_secs(2);

/// Serves `plane` on `listener` until `shutdown` resolves; then stops
/// accepting and lets in-flight requests finish for up to `drain`, ends
/// the answers still streaming with an `error` event, and closes the rest.
/// Connections are bounded by the plane's limits ([`crate::listen`]).
pub async fn serve_data(
    listener: TcpListener,
    plane: Arc<DataPlane>,
    accept: Accept,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let limits = plane.connection_limits(&accept.proxy_protocol_from);
    let builder = Arc::new(listen::builder(&limits));
    let metrics = plane.metrics();
    let accept = Arc::new(accept);
    let cut = plane.clone();
    let after = plane.clone();
    listen::accept_loop(
        listener,
        limits.clone(),
        metrics.clone(),
        shutdown,
        drain,
        CUT_GRACE,
        move || {
            tracing::warn!(
                drain_secs = drain.as_secs(),
                "in-flight requests cut at the shutdown deadline"
            );
            cut.cut_streams();
        },
        move |stream, peer, counted, stop| {
            let (plane, builder, accept, limits, metrics) = (
                plane.clone(),
                builder.clone(),
                accept.clone(),
                limits.clone(),
                metrics.clone(),
            );
            async move {
                let _counted = counted;
                let header_timeout = limits.header_read;
                let mut stream = stream;
                let mut info = ConnectionInfo {
                    peer,
                    original: None,
                };
                if accept.proxy_protocol_from.contains(&peer.ip()) {
                    match tokio::time::timeout(header_timeout, read_proxy_header(&mut stream)).await {
                        Ok(Ok(original)) => info.original = original,
                        Ok(Err(e)) => {
                            tracing::warn!(%peer, error = %e, "closing a connection with a bad PROXY header");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                let handler = move |req| {
                    let plane = plane.clone();
                    async move { plane.handle(req, Some(info)).await }
                };
                match &accept.tls {
                    Some(tls) => match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            listen::serve_connection(tls_stream, peer, &builder, &limits, &metrics, stop, handler)
                                .await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    },
                    None => {
                        listen::serve_connection(stream, peer, &builder, &limits, &metrics, stop, handler)
                            .await
                    }
                }
            }
        },
    )
    .await;
    // Answers still being read after their clients left stop now, with an
    // estimate, so that they are recorded before the ledger's last flush.
    after.cut_streams();
}
