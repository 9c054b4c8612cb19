//! Serving connections, on every listener, with what a peer may hold
//! bounded:
//!
//! - a connection that sends no complete request head within the header
//!   timeout is closed (a silent TCP connection, a half-sent head, an
//!   HTTP/2 connection that sent only its preface or a `HEADERS` frame
//!   without `END_HEADERS`);
//! - a connection with no request in flight is closed after the idle
//!   timeout (HTTP/1.1 keep-alive, HTTP/2), and HTTP/2 peers are pinged
//!   (a peer that does not answer is closed);
//! - connections are capped in total and per peer address (a front proxy
//!   the operator trusts is exempt from the per-peer cap); past a cap a
//!   connection is closed at once;
//! - a graceful shutdown stops accepting and asks every connection to
//!   finish its requests.
//!
//! Each rule is counted in metrics (`llm_integration_connections`,
//! `…_connections_refused_total`, `…_connections_closed_total`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::metering::Metrics;

/// What a listener allows a peer.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Time allowed for a connection's first request head (and, in
    /// HTTP/1.1, each later one once it begins).
    pub header_read: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle: Duration,
    /// Open connections at most, in all.
    pub max_connections: usize,
    /// Open connections at most from one peer address.
    pub max_per_peer: usize,
    /// Peers exempt from the per-peer cap (trusted front proxies).
    pub exempt: Vec<IpAddr>,
}

/// Open connections, in all and per peer address.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    total: AtomicUsize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection counted open; uncounted when dropped.
pub struct Counted {
    counts: Arc<ConnectionCounts>,
    peer: IpAddr,
    metrics: Arc<Metrics>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::AcqRel);
        if let Ok(mut map) = self.counts.per_peer.lock() {
            if let Some(n) = map.get_mut(&self.peer) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.peer);
                }
            }
        }
        self.metrics.connection_closed(None);
    }
}

impl ConnectionCounts {
    /// Counts a new connection from `peer`, or says which cap it is over.
    pub fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        limits: &ConnectionLimits,
        metrics: &Arc<Metrics>,
    ) -> Result<Counted, &'static str> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("total");
        }
        let Ok(mut map) = self.per_peer.lock() else {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("total");
        };
        let n = map.entry(peer).or_default();
        if *n >= limits.max_per_peer && !limits.exempt.contains(&peer) {
            if *n == 0 {
                map.remove(&peer);
            }
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("per_peer");
        }
        *n += 1;
        metrics.connection_opened();
        Ok(Counted {
            counts: self.clone(),
            peer,
            metrics: metrics.clone(),
        })
    }
}

/// What a connection is doing: requests in flight (until their response
/// body ends) and when it last did something.
#[derive(Debug)]
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds since `start` of the last request start or end.
    last: AtomicU64,
    /// Notified when the last request in flight ends.
    quiet: tokio::sync::Notify,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Release);
    }
}

/// Ends a request's flight when its response body is done (or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.quiet.notify_one();
        }
    }
}

/// A response body that ends its request's flight when it is done.
pub struct Tracked<B> {
    inner: B,
    _flight: InFlight,
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A builder for HTTP/1.1 and HTTP/2 connections with `limits`.
pub fn builder(limits: &ConnectionLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true)
        .max_buf_size(1024 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(256 * 1024)
        .keep_alive_interval(Some((limits.idle / 2).max(Duration::from_secs(1))))
        .keep_alive_timeout(limits.header_read.max(Duration::from_secs(1)));
    builder
}

/// Serves one connection with `handler`, closing it when it holds nothing
/// past its time (see the module documentation), and finishing gracefully
/// when `stop` turns true.
pub async fn serve_connection<IO, H, F, B>(
    io: IO,
    peer: SocketAddr,
    builder: &Builder<TokioExecutor>,
    limits: &ConnectionLimits,
    metrics: &Metrics,
    mut stop: watch::Receiver<bool>,
    handler: H,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + Clone + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Arc::new(Activity {
        start: Instant::now(),
        in_flight: AtomicUsize::new(0),
        requests: AtomicU64::new(0),
        last: AtomicU64::new(0),
        quiet: tokio::sync::Notify::new(),
    });
    let watched = activity.clone();
    // The request's future is boxed: an HTTP/2 stream's task then holds a
    // pointer while the body streams, not the whole finished future.
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let activity = watched.clone();
        let handler = handler.clone();
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.requests.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        let flight = InFlight(activity);
        Box::pin(async move {
            let response = handler(req).await;
            Ok::<_, Infallible>(response.map(|inner| Tracked {
                inner,
                _flight: flight,
            }))
        })
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        let quiet = activity.in_flight.load(Ordering::Acquire) == 0;
        let first = activity.requests.load(Ordering::Acquire) == 0;
        let allowed = if first {
            limits.header_read
        } else {
            limits.idle
        };
        let since = Duration::from_millis(activity.last.load(Ordering::Acquire));
        let deadline = tokio::time::Instant::from_std(activity.start + since + allowed);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(deadline), if quiet && !stopping => {
                // Still quiet since the deadline was computed?
                let now_since = Duration::from_millis(activity.last.load(Ordering::Acquire));
                if activity.in_flight.load(Ordering::Acquire) == 0 && now_since == since {
                    let reason = if first { "header_timeout" } else { "idle" };
                    tracing::debug!(%peer, reason, "closing a connection that holds nothing");
                    metrics.connection_closed(Some(reason));
                    return;
                }
            }
            // Requests in flight: look again when the last one ends.
            () = activity.quiet.notified(), if !quiet => {}
        }
    }
}

/// Accepts on `listener` until `shutdown` resolves, serving each connection
/// with `serve` (which gets the stream, the peer, the admission guard and a
/// stop signal); then stops accepting, signals every connection to finish,
/// waits up to `drain` for them, calls `at_deadline` if some are left and
/// waits `grace` more, and closes the rest.
#[allow(clippy::too_many_arguments)] // a listener's parts, each independent
pub async fn accept_loop<S, Fut>(
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    grace: Duration,
    at_deadline: impl FnOnce(),
    serve: S,
) where
    S: Fn(tokio::net::TcpStream, SocketAddr, Counted, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let counts = Arc::new(ConnectionCounts::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let counted = match counts.admit(peer.ip(), &limits, &metrics) {
            Ok(c) => c,
            Err(reason) => {
                metrics.connection_refused(reason);
                tracing::debug!(%peer, reason, "connection refused: over the cap");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        connections.spawn(serve(stream, peer, counted, stop_rx.clone()));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all_done = async { while connections.join_next().await.is_some() {} };
    let finished = tokio::time::timeout(drain, all_done).await.is_ok();
    if !finished {
        at_deadline();
        let _ = tokio::time::timeout(grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
    }
    // Cut what is left now, so every response body is dropped (and its
    // usage recorded) before the ledger's last flush.
    connections.abort_all();
    let mut cut = 0;
    while connections.join_next().await.is_some() {
        cut += 1;
    }
    tracing::debug!(cut, "connections closed");
}
