//! The data plane: what VMs call. It executes what the core decides.
//!
//! One request's walk (each step a core decision or an IO step here):
//!
//! 1. **caller**: the [`CallerResolver`] names the VM (by default the
//!    connection's address, or a trusted front proxy's word for it);
//! 2. **route**: the [`Router`] decides on the current snapshot: forward,
//!    list models, reflection, liveness, or a refusal;
//! 3. **body**: read only when the decision depends on it (the `model` of
//!    a generic route, or a plan that needs the body), decoded as a JSON
//!    object by the core ([`JsonObject`]);
//! 4. **plan**: the core's [`upstream::plan`] gives the URL, the header
//!    edits, the body splices and how to treat the answer;
//! 5. **execute**: reserve the allocation, resolve the credential, send
//!    with hyper's pooled client;
//! 6. **relay**: the core's [`ResponseRelay`] says what to pass on and
//!    what usage it saw; the answer streams back frame by frame;
//! 7. **settle**: the usage is priced, debited and recorded.
//!
//! Every failure is a [`GatewayError`] and becomes a response in one
//! place ([`DataPlane::handle`]); a failure after metering started records
//! the request with the status the client received.
//!
//! The data plane is also a [`tower_service::Service`]
//! ([`DataPlane::service`]) that an embedder mounts in its own hyper or
//! axum application, with its own caller resolver, router, store and
//! credentials ([`DataPlaneBuilder`]).

mod body;
mod credentials;
pub mod encoding;
mod listener;
pub mod models;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use llm_integration_core::answer::{self, Sniffed};
use llm_integration_core::body::JsonObject;
use llm_integration_core::headers::{strip_for_client, Injected};
use llm_integration_core::redact::{Redactor, StreamScrubber};
use llm_integration_core::relay::{is_event_stream, ResponseRelay};
use llm_integration_core::seams::{
    AddressResolver, CallerRequest, CallerResolver, ConnectionInfo, CredentialResolver,
};
use llm_integration_core::translate::{AnswerTranslation, DROPPED_HEADER};
use llm_integration_core::upstream::{self, UpstreamPlan, UpstreamTargets};
use llm_integration_core::wire::errors::ErrorClass;
use llm_integration_core::{reflection, Dialect, ProviderSource, Source, VmId};
use llm_integration_core::{Blame, GatewayError};
use llm_integration_core::{
    Decision, Forward, Plan, RouteRequest, Router, SnapshotRouter, TokenCount,
};
use secrecy::ExposeSecret;

pub use body::{BoxError, Collected, ProxyBody, RelayBody};
pub use credentials::ServerCredentials;
use encoding::StreamDecoder;
pub use listener::{serve_data, tls_acceptor, Accept};
pub use llm_integration_core::seams::TrustedProxies;
pub use models::{ListContext, ModelLists};

use crate::live::LiveConfig;
use crate::metering::{tokens, Metered, Metering, RequestFacts};
use llm_integration_core::pricing;

/// The body type sent upstream: a buffered body (when it was read) or the
/// client's body streamed through, within the size limit.
pub type UpstreamBody = Either<Full<Bytes>, UnsyncBoxBody<Bytes, BoxError>>;

/// The pooled upstream client (HTTP/1.1, over rustls or plain).
pub type UpstreamClient =
    hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, UpstreamBody>;

/// The data plane's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (413 past it).
    pub max_body: usize,
    /// Upstream TCP connect timeout.
    pub connect: Duration,
    /// Time allowed until the upstream's response head (504 past it).
    pub upstream_response: Duration,
    /// Time allowed between two frames of a response body.
    pub idle_stream: Duration,
    /// Time allowed to read a request head (and for a connection's first
    /// one to arrive), and between two frames of a request body.
    pub header_read: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_connection: Duration,
    /// Open connections at most, in all.
    pub max_connections: usize,
    /// Open connections at most from one peer address (trusted front
    /// proxies are exempt).
    pub max_connections_per_peer: usize,
    /// Request bodies held in memory at once at most, in bytes, in all
    /// (a quarter of it per peer address): past it, 503.
    pub max_buffered_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 32 * 1024 * 1024,
            connect: Duration::from_secs(10),
            upstream_response: Duration::from_secs(600),
            idle_stream: Duration::from_secs(300),
            header_read: Duration::from_secs(30),
            idle_connection: Duration::from_secs(75),
            max_connections: 20_000,
            max_connections_per_peer: 2_000,
            max_buffered_body: 512 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// What a data-plane connection may hold; `exempt` (trusted front
    /// proxies) is not capped per peer.
    pub fn connections(&self, exempt: &[IpAddr]) -> crate::listen::ConnectionLimits {
        crate::listen::ConnectionLimits {
            header_read: self.header_read,
            idle: self.idle_connection,
            max_connections: self.max_connections,
            max_per_peer: self.max_connections_per_peer,
            exempt: exempt.to_vec(),
        }
    }
}

/// Builds the upstream client.
pub fn upstream_client(limits: &Limits) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(limits.connect));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        // HTTP/1.1 only: the pool opens a connection per concurrent request.
        // Over HTTP/2 it would share one connection per provider, and
        // requests beyond the provider's stream limit (100 to 256) would
        // wait, for minutes behind long streams.
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(TokioTimer::new())
        // Reads of 4 KiB: an SSE event is far smaller, and a connection
        // holds its read buffer for as long as it lives (one per open stream).
        .http1_read_buf_exact_size(4096)
        .timer(TokioTimer::new())
        .build(https)
}

/// The data plane.
pub struct DataPlane {
    live: Arc<LiveConfig>,
    router: Arc<dyn Router>,
    callers: Arc<dyn CallerResolver>,
    credentials: Arc<dyn CredentialResolver>,
    client: UpstreamClient,
    /// Custom endpoints' client: every connection checked by the policy.
    endpoint_client: crate::endpoints::EndpointClient,
    /// Custom endpoints' policy and resolver.
    endpoint_options: EndpointOptions,
    targets: UpstreamTargets,
    models: ModelLists,
    limits: Limits,
    /// The front proxy's client-address header, removed before forwarding.
    client_ip_header: Option<HeaderName>,
    /// Trusted front proxies (exempt from the per-peer connection cap).
    trusted_addresses: Vec<IpAddr>,
    /// Request bodies held in memory.
    bodies: Arc<BodyBudget>,
    metering: Arc<Metering>,
    /// The integration hostname assumed when a request names the gateway by
    /// address or as `localhost` instead of by integration.
    default_host: Option<String>,
    /// How many catalog refreshes have completed.
    catalog_refreshes: tokio::sync::watch::Sender<u64>,
    /// Cancelled at the shutdown deadline: open streams end with an
    /// `error` event.
    cut: tokio_util::sync::CancellationToken,
}

/// Builds a [`DataPlane`]: the snapshot it routes on, the credentials it
/// injects and where usage goes are required; the rest has defaults (the
/// product's router, callers by address, the providers' public URLs).
pub struct DataPlaneBuilder {
    live: Arc<LiveConfig>,
    credentials: Arc<dyn CredentialResolver>,
    metering: Arc<Metering>,
    router: Arc<dyn Router>,
    /// `None`: an [`AddressResolver`] believing `trusted`.
    callers: Option<Arc<dyn CallerResolver>>,
    targets: UpstreamTargets,
    limits: Limits,
    trusted: TrustedProxies,
    models_ttl: Duration,
    default_host: Option<String>,
    endpoints: EndpointOptions,
}

/// What custom endpoints may reach and trust (see [`crate::endpoints`]).
#[derive(Clone)]
pub struct EndpointOptions {
    /// The address policy (shared with the executor's configuration checks).
    pub policy: Arc<crate::endpoints::EndpointPolicy>,
    /// Resolves endpoints' host names.
    pub resolver: Arc<dyn crate::endpoints::EndpointResolver>,
    /// Trusted roots besides the public web's.
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl Default for EndpointOptions {
    /// Public endpoints only, the system's resolver, the public web's roots.
    fn default() -> Self {
        EndpointOptions {
            policy: Arc::new(crate::endpoints::EndpointPolicy::new(false)),
            resolver: Arc::new(crate::endpoints::SystemResolver),
            extra_roots: Vec::new(),
        }
    }
}

impl DataPlaneBuilder {
    /// How custom endpoints are reached (the default: public HTTPS
    /// endpoints only, the system's resolver).
    #[must_use]
    pub fn endpoints(mut self, endpoints: EndpointOptions) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// Routes with `router` instead of [`SnapshotRouter`].
    #[must_use]
    pub fn router(mut self, router: Arc<dyn Router>) -> Self {
        self.router = router;
        self
    }

    /// Names callers with `callers` instead of an [`AddressResolver`].
    #[must_use]
    pub fn callers(mut self, callers: Arc<dyn CallerResolver>) -> Self {
        self.callers = Some(callers);
        self
    }

    /// Sends each source's requests to `targets`.
    #[must_use]
    pub fn targets(mut self, targets: UpstreamTargets) -> Self {
        self.targets = targets;
        self
    }

    /// Limits and timeouts.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Believes `trusted` front proxies about the client's address (with
    /// the default caller resolver) and removes their header upstream.
    #[must_use]
    pub fn trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted = trusted;
        self
    }

    /// How long upstream model lists are cached.
    #[must_use]
    pub fn models_ttl(mut self, ttl: Duration) -> Self {
        self.models_ttl = ttl;
        self
    }

    /// Serves `host` (e.g. `llm.int.exe.xyz`) to requests that name the
    /// gateway by address or as `localhost`, so clients on a machine
    /// without DNS for the integration domain can use `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn default_host(mut self, host: Option<String>) -> Self {
        self.default_host = host;
        self
    }

    /// The data plane.
    ///
    /// # Errors
    /// A message when an extra trusted root is not a usable certificate.
    pub fn build(self) -> Result<DataPlane, String> {
        let callers = self
            .callers
            .unwrap_or_else(|| Arc::new(AddressResolver::new(self.trusted.clone())));
        let bodies = Arc::new(BodyBudget {
            total: Default::default(),
            per_peer: Default::default(),
            max_total: self.limits.max_buffered_body,
            max_per_peer: (self.limits.max_buffered_body / 4).max(self.limits.max_body),
        });
        let endpoint_client = crate::endpoints::endpoint_client(
            &self.limits,
            self.endpoints.policy.clone(),
            self.endpoints.resolver.clone(),
            &self.endpoints.extra_roots,
        )?;
        Ok(DataPlane {
            client: upstream_client(&self.limits),
            endpoint_client,
            endpoint_options: self.endpoints,
            live: self.live,
            router: self.router,
            callers,
            credentials: self.credentials,
            targets: self.targets,
            models: ModelLists::new(self.models_ttl),
            limits: self.limits,
            trusted_addresses: self.trusted.addresses.clone(),
            bodies,
            client_ip_header: self.trusted.header,
            metering: self.metering,
            default_host: self.default_host,
            catalog_refreshes: tokio::sync::watch::Sender::new(0),
            cut: tokio_util::sync::CancellationToken::new(),
        })
    }
}

fn json_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The response for a gateway error: its status, its body in the route's
/// dialect, and `x-should-retry: false` when retrying cannot help. The one
/// place a [`GatewayError`] becomes a response.
pub fn error_response(error: &GatewayError) -> Response<ProxyBody> {
    let mut r = json_response(error.status(), error.body());
    if !error.retryable {
        r.headers_mut()
            .insert("x-should-retry", HeaderValue::from_static("false"));
    }
    r
}

/// Request bodies held in memory, in all and per peer address.
#[derive(Debug)]
struct BodyBudget {
    total: std::sync::atomic::AtomicUsize,
    per_peer: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
    max_total: usize,
    max_per_peer: usize,
}

/// One request's share of [`BodyBudget`], released when dropped.
struct BodyHold {
    budget: Arc<BodyBudget>,
    peer: Option<IpAddr>,
    bytes: usize,
}

impl BodyBudget {
    fn hold(self: &Arc<Self>, peer: Option<IpAddr>) -> BodyHold {
        BodyHold {
            budget: self.clone(),
            peer,
            bytes: 0,
        }
    }
}

impl BodyHold {
    /// Holds `n` more bytes, if the budget allows.
    fn grow(&mut self, n: usize) -> Result<(), ()> {
        use std::sync::atomic::Ordering;
        let b = &self.budget;
        if b.total.fetch_add(n, Ordering::AcqRel) + n > b.max_total {
            b.total.fetch_sub(n, Ordering::AcqRel);
            return Err(());
        }
        if let Some(peer) = self.peer {
            let Ok(mut map) = b.per_peer.lock() else {
                b.total.fetch_sub(n, Ordering::AcqRel);
                return Err(());
            };
            let used = map.entry(peer).or_default();
            if *used + n > b.max_per_peer {
                b.total.fetch_sub(n, Ordering::AcqRel);
                return Err(());
            }
            *used += n;
        }
        self.bytes += n;
        Ok(())
    }
}

impl Drop for BodyHold {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.bytes == 0 {
            return;
        }
        self.budget.total.fetch_sub(self.bytes, Ordering::AcqRel);
        if let (Some(peer), Ok(mut map)) = (self.peer, self.budget.per_peer.lock()) {
            if let Some(used) = map.get_mut(&peer) {
                *used = used.saturating_sub(self.bytes);
                if *used == 0 {
                    map.remove(&peer);
                }
            }
        }
    }
}

/// What the data plane read of a request body.
struct ReadBody {
    /// As the client sent it.
    raw: Bytes,
    /// With its `Content-Encoding` undone (the same bytes when it has none).
    decoded: Bytes,
}

impl DataPlane {
    /// A builder for a data plane routing on `live`, injecting credentials
    /// from `credentials` and metering into `metering`.
    pub fn builder(
        live: Arc<LiveConfig>,
        credentials: Arc<dyn CredentialResolver>,
        metering: Arc<Metering>,
    ) -> DataPlaneBuilder {
        DataPlaneBuilder {
            live,
            credentials,
            metering,
            router: Arc::new(SnapshotRouter),
            callers: None,
            targets: UpstreamTargets::default(),
            limits: Limits::default(),
            trusted: TrustedProxies::default(),
            models_ttl: Duration::from_secs(300),
            default_host: None,
            endpoints: EndpointOptions::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What a connection may hold on this plane's listener; trusted front
    /// proxies (the default caller resolver's, and `also`) are exempt from
    /// the per-peer cap.
    pub fn connection_limits(&self, also: &[IpAddr]) -> crate::listen::ConnectionLimits {
        let mut exempt = self.trusted_addresses.clone();
        exempt.extend_from_slice(also);
        self.limits.connections(&exempt)
    }

    /// The metrics.
    pub fn metrics(&self) -> Arc<crate::metering::Metrics> {
        self.metering.metrics.clone()
    }

    /// Ends every answer still being relayed with an `error` event in its
    /// route's dialect (the shutdown deadline); their usage is recorded.
    pub fn cut_streams(&self) {
        self.cut.cancel();
    }

    /// The data plane as a `tower` service, for an embedder's hyper or
    /// axum application. The connection is read from the request's
    /// [`ConnectionInfo`] extension when the embedder sets one (the
    /// default caller resolver needs it; an embedder's own may not).
    pub fn service(self: &Arc<Self>) -> DataPlaneService {
        DataPlaneService(self.clone())
    }

    /// The custom endpoints' address policy (the server adds its
    /// listeners to it as they are bound).
    pub fn endpoint_policy(&self) -> &crate::endpoints::EndpointPolicy {
        &self.endpoint_options.policy
    }

    fn context(&self) -> ListContext<'_> {
        ListContext {
            client: &self.client,
            endpoint_client: &self.endpoint_client,
            targets: &self.targets,
            credentials: self.credentials.as_ref(),
            snapshot: None,
        }
    }

    /// Refreshes the snapshot's model catalog from the providers' lists
    /// (with the platform's gateway keys) every `every`, until `shutdown`.
    /// A provider whose list fails keeps its last good entries.
    pub async fn refresh_catalog(
        self: Arc<Self>,
        every: Duration,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(every.max(Duration::from_secs(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A configuration change (a new custom endpoint, say) refreshes the
        // catalog within a second instead of at the next tick; lists read
        // before are served from the cache.
        let mut changes = tokio::time::interval(Duration::from_secs(1));
        changes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = None;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {}
                _ = changes.tick() => {
                    if seen == Some(self.live.snapshot().version()) {
                        continue;
                    }
                }
            }
            let previous = self.live.catalog();
            let snapshot = self.live.snapshot();
            seen = Some(snapshot.version());
            let context = ListContext {
                snapshot: Some(&snapshot),
                ..self.context()
            };
            let catalog = self.models.gateway_catalog(context, &previous).await;
            if catalog != *previous {
                tracing::debug!(models = catalog.len(), "model catalog refreshed");
                self.live.set_catalog(Arc::new(catalog));
            }
            self.catalog_refreshes.send_modify(|n| *n += 1);
        }
    }

    /// Resolves once the model catalog has been refreshed at least once
    /// since the data plane started (successfully or not).
    pub async fn catalog_ready(&self) {
        let mut rx = self.catalog_refreshes.subscribe();
        let _ = rx.wait_for(|n| *n > 0).await;
    }

    /// Answers one request on `connection` (`None` when the server does
    /// not know it; the default caller resolver then finds no VM).
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        connection: Option<ConnectionInfo>,
    ) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        match self.serve(req, connection).await {
            Ok(response) => response,
            Err(error) => {
                match error.blame {
                    Blame::Gateway => tracing::error!(code = error.code, %error, "request failed"),
                    Blame::Upstream => tracing::warn!(code = error.code, %error, "request failed"),
                    Blame::Client => tracing::debug!(code = error.code, %error, "request refused"),
                }
                error_response(&error)
            }
        }
    }

    async fn serve<B>(
        &self,
        req: Request<B>,
        connection: Option<ConnectionInfo>,
    ) -> Result<Response<ProxyBody>, GatewayError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let snapshot = self.live.snapshot();
        let caller = self
            .callers
            .resolve(
                &snapshot,
                &CallerRequest {
                    connection: connection.as_ref(),
                    headers: req.headers(),
                    extensions: req.extensions(),
                },
            )
            .await;
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let anthropic_client = req.headers().contains_key("anthropic-version")
            || req.headers().contains_key("x-api-key");
        let host = llm_integration_core::request_host(
            req.uri().authority().map(|a| a.as_str()),
            req.headers().get_all(HOST),
            req.version(),
        )
        .map_err(|e| {
            let (path, _) = llm_integration_core::path::split_target(&target);
            GatewayError::new(
                llm_integration_core::dialect_for(path, anthropic_client),
                ErrorClass::InvalidRequest,
                "ambiguous_host",
                e.to_string(),
            )
        })?;
        let host =
            llm_integration_core::effective_host(host, self.default_host.as_deref()).to_owned();
        let method = req.method().clone();
        let request = RouteRequest::new(caller, &host, &method, &target)
            .with_anthropic_client(anthropic_client);
        if upstream::is_websocket_upgrade(req.headers()) {
            // Codex's Responses over WebSocket: 426 makes it fall back to HTTP.
            let (path, _) = llm_integration_core::path::split_target(&target);
            return Err(GatewayError::websocket(llm_integration_core::dialect_for(
                path,
                anthropic_client,
            )));
        }
        let plan = self.router.route(&snapshot, &request).map_err(|r| {
            tracing::debug!(refusal = ?r.refusal, %host, path = %target, "refused");
            self.metering.metrics.refused(r.refusal.code());
            GatewayError::from(r)
        })?;
        let dialect = match &plan {
            Plan::NeedsModel(p) => p.dialect(),
            Plan::Ready(Decision::Forward(f)) => f.dialect,
            Plan::Ready(Decision::ListModels(l)) => l.dialect,
            Plan::Ready(_) => Dialect::OpenAi,
        };
        let (mut parts, body) = req.into_parts();
        let mut body = Some(body);
        // Memory held for this request's body, released when it is sent.
        let mut hold = self.bodies.hold(connection.map(|c| c.client_address()));
        // The body, read when the model in it routes the request or the
        // forward needs it, and its members located once for both.
        let reads = match &plan {
            Plan::NeedsModel(_) => Some(true),
            Plan::Ready(Decision::Forward(f)) if upstream::reads_body(f) => {
                Some(upstream::requires_json(f))
            }
            Plan::Ready(_) => None,
        };
        let read: Option<ReadBody> = match reads {
            Some(required) => {
                let bytes = self
                    .read_body(&parts.headers, body.take(), dialect, &mut hold)
                    .await?;
                Some(self.decode_body(&parts.headers, bytes, dialect, required)?)
            }
            None => None,
        };
        let object = read.as_ref().map(|r| JsonObject::parse(&r.decoded));
        let decision = match plan {
            Plan::Ready(decision) => decision,
            Plan::NeedsModel(pending) => {
                let model = match &object {
                    Some(Ok(object)) => object.str("model"),
                    Some(Err(e)) => return Err(GatewayError::invalid_body(dialect, e)),
                    None => None,
                };
                self.router
                    .resolve_model(&snapshot, pending, model.as_deref())
                    .map_err(|r| {
                        self.metering.metrics.refused(r.refusal.code());
                        GatewayError::from(r)
                    })?
            }
        };
        match decision {
            Decision::Forward(forward) => {
                let requires_json = upstream::requires_json(&forward);
                let mut plan = {
                    let object = match object {
                        Some(Ok(object)) => Some(object),
                        Some(Err(e)) if requires_json => {
                            return Err(GatewayError::invalid_body(dialect, &e))
                        }
                        _ => None,
                    };
                    upstream::plan(&forward, object.as_ref(), &self.targets)?
                };
                let text: &[u8] = match &read {
                    Some(r) if !r.decoded.is_empty() => &r.decoded,
                    Some(r) => &r.raw,
                    None => &[],
                };
                let mut estimate = pricing::estimate(
                    forward.provider,
                    text,
                    plan.max_output,
                    plan.choices,
                    plan.produces_output,
                );
                if !plan.charged {
                    // A free call: nothing held, nothing charged.
                    estimate = pricing::RequestEstimate::default();
                }
                let translated = plan.translation.as_mut().map(|t| {
                    t.answer.created_at = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    t.answer.input_estimate = estimate.input_tokens;
                    std::mem::take(&mut t.body)
                });
                let upstream_body: UpstreamBody = match (read, body) {
                    // Translated: a new body, in the upstream's API.
                    _ if translated.is_some() => {
                        parts.headers.remove(http::header::CONTENT_ENCODING);
                        Either::Left(Full::new(Bytes::from(translated.unwrap_or_default())))
                    }
                    // Unchanged: as the client sent it, coded or not.
                    (Some(r), _) if plan.body.is_empty() => Either::Left(Full::new(r.raw)),
                    (Some(r), _) => {
                        // Changed: sent decoded, without its former coding.
                        parts.headers.remove(http::header::CONTENT_ENCODING);
                        Either::Left(Full::new(Bytes::from(plan.body.apply(&r.decoded))))
                    }
                    (None, Some(b)) => {
                        Either::Right(UnsyncBoxBody::new(Limited::new(b, self.limits.max_body)))
                    }
                    (None, None) => Either::Left(Full::new(Bytes::new())),
                };
                self.forward(caller, &forward, plan, parts, upstream_body, estimate)
                    .await
            }
            Decision::CountTokens(count) => {
                let text = read.as_ref().map_or(&b""[..], |r| &r.decoded[..]);
                Ok(count_tokens(&count, text))
            }
            Decision::ListModels(listing) => {
                let answer = self.models.answer(self.context(), &listing).await;
                Ok(json_response(StatusCode::OK, answer))
            }
            Decision::Reflection(route) => {
                let mut r = json_response(
                    StatusCode::OK,
                    reflection::answer(&snapshot, &route).to_string(),
                );
                if parts.method == Method::HEAD {
                    *r.body_mut() = ProxyBody::empty();
                }
                Ok(r)
            }
            Decision::Options { allow } => {
                let mut r = Response::new(ProxyBody::empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                r.headers_mut()
                    .insert(http::header::ALLOW, HeaderValue::from_static(allow));
                Ok(r)
            }
            Decision::Liveness if parts.method == Method::HEAD => {
                Ok(Response::new(ProxyBody::empty()))
            }
            Decision::Liveness => Ok(json_response(
                StatusCode::OK,
                r#"{"status":"ok"}"#.to_owned(),
            )),
            _ => Err(GatewayError::new(
                dialect,
                ErrorClass::NotFound,
                "route_not_found",
                "no such route",
            )),
        }
    }

    /// Reads a request body whole, within the size limit and the upstream
    /// timeout.
    async fn read_body<B>(
        &self,
        headers: &http::HeaderMap,
        body: Option<B>,
        dialect: Dialect,
        budget: &mut BodyHold,
    ) -> Result<Bytes, GatewayError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let Some(body) = body else {
            return Ok(Bytes::new());
        };
        let max = self.limits.max_body;
        let too_large = || GatewayError::body_too_large(dialect, max);
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let late = |secs: u64| {
            GatewayError::new(
                dialect,
                ErrorClass::RequestTimeout,
                "body_timeout",
                format!(
                    "the request body stopped arriving (nothing for {secs} s, or past {} s in all)",
                    self.limits.upstream_response.as_secs()
                ),
            )
        };
        let read = async {
            let mut body = std::pin::pin!(body);
            let mut buf = bytes::BytesMut::with_capacity(declared.map_or(8192, |n| n as usize));
            // Each frame within the header timeout: a body that stops
            // arriving does not hold its connection and memory for long.
            loop {
                let frame = tokio::time::timeout(self.limits.header_read, body.as_mut().frame())
                    .await
                    .map_err(|_| late(self.limits.header_read.as_secs()))?;
                let Some(frame) = frame else { break };
                let frame = frame.map_err(|e| {
                    GatewayError::new(
                        dialect,
                        ErrorClass::InvalidRequest,
                        "body_read_failed",
                        format!("the request body could not be read: {}", e.into()),
                    )
                })?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if buf.len() + data.len() > max {
                    return Err(too_large());
                }
                budget.grow(data.len()).map_err(|()| {
                    GatewayError::new(
                        dialect,
                        ErrorClass::Unavailable,
                        "busy",
                        "the gateway is holding as many request bodies as it may; retry shortly",
                    )
                })?;
                buf.extend_from_slice(&data);
            }
            Ok(buf.freeze())
        };
        tokio::time::timeout(self.limits.upstream_response, read)
            .await
            .map_err(|_| late(self.limits.header_read.as_secs()))?
    }

    /// Undoes a request body's `Content-Encoding`, within the body limit
    /// (past it, 413). A body the route must read (`required`: its model
    /// routes it) and that cannot be decoded gets a 400; another is
    /// forwarded as sent, unread.
    fn decode_body(
        &self,
        headers: &http::HeaderMap,
        raw: Bytes,
        dialect: Dialect,
        required: bool,
    ) -> Result<ReadBody, GatewayError> {
        let unread = |raw: Bytes| ReadBody {
            decoded: Bytes::new(),
            raw,
        };
        let codings = match encoding::codings(headers) {
            Ok(c) => c,
            Err(_) if !required => return Ok(unread(raw)),
            Err(e) => {
                return Err(GatewayError::new(
                    dialect,
                    ErrorClass::InvalidRequest,
                    "unsupported_encoding",
                    e.to_string(),
                ))
            }
        };
        let Some(codings) = codings else {
            return Ok(ReadBody {
                decoded: raw.clone(),
                raw,
            });
        };
        match encoding::decode(&raw, &codings, self.limits.max_body) {
            Ok(decoded) => Ok(ReadBody {
                raw,
                decoded: Bytes::from(decoded),
            }),
            Err(encoding::DecodeError::TooLarge(_)) => {
                Err(GatewayError::body_too_large(dialect, self.limits.max_body))
            }
            Err(_) if !required => Ok(unread(raw)),
            Err(e) => Err(GatewayError::new(
                dialect,
                ErrorClass::InvalidRequest,
                "invalid_encoding",
                format!("the request body could not be decoded: {e}"),
            )),
        }
    }

    /// Executes `plan`: reserve, resolve the credential, send, relay. A
    /// failure after metering started records the request with the status
    /// the client receives.
    async fn forward(
        &self,
        caller: Option<VmId>,
        forward: &Forward<'_>,
        plan: UpstreamPlan,
        parts: http::request::Parts,
        body: UpstreamBody,
        estimate: pricing::RequestEstimate,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let started = Instant::now();
        let dialect = forward.dialect;
        let provider = forward.provider;
        let price = self.metering.price(provider, plan.model.as_deref());
        let reservation = match &self.metering.allocator {
            Some(allocator) if forward.source.is_metered() => {
                let likely = price.likely_micros(&estimate);
                let minimum = price.input_micros(&estimate).max(1);
                match allocator
                    .reserve(forward.integration.owner, likely, minimum)
                    .await
                {
                    Ok(Ok(r)) => Some(r),
                    Ok(Err(exhausted)) => {
                        self.metering.metrics.allocation_refused();
                        return Err(GatewayError::new(
                            dialect,
                            ErrorClass::RateLimited,
                            "allocation_exhausted",
                            format!(
                                "the LLM allocation of this integration's owner is exhausted: ${:.4} left, and this request's input alone is estimated at ${:.4}; \
ask an operator for more allocation, or use your own key (`integrations edit {} --{provider}=byok`)",
                                exhausted.available as f64 / 1e6,
                                exhausted.needed as f64 / 1e6,
                                forward.integration.name
                            ),
                        ));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "allocation unavailable");
                        return Err(GatewayError::new(
                            dialect,
                            ErrorClass::Unavailable,
                            "allocation_unavailable",
                            "the allocation cannot be checked right now; retry",
                        ));
                    }
                }
            }
            _ => None,
        };
        let facts = RequestFacts {
            started,
            started_at: SystemTime::now(),
            owner: forward.integration.owner,
            vm: caller.unwrap_or(VmId(0)),
            integration: forward.integration.id,
            provider,
            source: forward.source.kind(),
            model: plan.model.clone(),
            price,
            input_estimate: estimate.input_tokens,
            free: !plan.charged,
            // A limit of 0 no provider accepts: not a bound.
            output_limit: plan.max_output.filter(|m| *m > 0).map(|m| {
                m.saturating_mul(plan.choices.unwrap_or(1).clamp(1, pricing::MAX_CHOICES))
            }),
            output_cap: plan
                .max_output
                .unwrap_or(pricing::LIKELY_OUTPUT)
                .saturating_mul(plan.choices.unwrap_or(1).clamp(1, pricing::MAX_CHOICES)),
        };
        let mut metered = Some(Metered::new(self.metering.clone(), facts, reservation));
        let result = self.send(forward, &plan, parts, body, &mut metered).await;
        if let (Err(e), Some(m)) = (&result, metered.as_mut()) {
            m.finish(Some(e.status().as_u16()), None, None);
        }
        result
    }

    async fn send(
        &self,
        forward: &Forward<'_>,
        plan: &UpstreamPlan,
        mut parts: http::request::Parts,
        body: UpstreamBody,
        metered: &mut Option<Metered>,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let dialect = forward.dialect;
        let provider = forward.provider;
        let reference = forward.source.credential(provider).ok_or_else(|| {
            GatewayError::new(
                dialect,
                ErrorClass::NotFound,
                "provider_disabled",
                "the provider is disabled",
            )
        })?;
        let credential = self
            .credentials
            .resolve(forward.integration.owner, provider, reference)
            .await
            .map_err(|e| {
                if e.is_retryable() {
                    tracing::error!(%provider, error = %e, "credential unavailable");
                }
                GatewayError::credential(dialect, &e)
            })?;
        let uri = plan.url.parse::<Uri>().map_err(|_| {
            GatewayError::new(
                dialect,
                ErrorClass::InvalidRequest,
                "invalid_path",
                "the request path cannot be forwarded",
            )
        })?;
        plan.apply_headers(
            &mut parts.headers,
            self.client_ip_header.as_ref(),
            Injected {
                secret: credential.secret.expose_secret(),
                account_id: credential.account_id.as_deref(),
            },
        );
        // Kept to remove from an error answer that echoes it.
        let secret = credential.secret.clone();
        drop(credential);
        let mut request = Request::new(body);
        let plan_method = parts.method.clone();
        *request.method_mut() = parts.method;
        *request.uri_mut() = uri;
        *request.version_mut() = http::Version::HTTP_11;
        *request.headers_mut() = std::mem::take(&mut parts.headers);
        if let Some(m) = metered.as_mut() {
            m.sent();
        }
        let custom = matches!(forward.source, Source::Custom { .. });
        let sending = if custom {
            self.endpoint_client.request(request)
        } else {
            self.client.request(request)
        };
        let response = match tokio::time::timeout(self.limits.upstream_response, sending).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let chatgpt = matches!(reference, llm_integration_core::CredentialRef::ChatGpt(_));
                let origin = origin_of(&plan.url);
                return Err(upstream_error(
                    dialect,
                    Upstream {
                        provider,
                        chatgpt,
                        custom: custom.then_some(forward.integration.name.as_str()),
                        origin,
                    },
                    &e,
                    self.limits.max_body,
                ));
            }
            Err(_) => {
                return Err(GatewayError::new(
                    dialect,
                    ErrorClass::Timeout,
                    "upstream_timeout",
                    format!(
                        "{provider} did not answer within {} s",
                        self.limits.upstream_response.as_secs()
                    ),
                ))
            }
        };
        let (mut head, mut incoming) = response.into_parts();
        // 304 answers a conditional GET (a model list, a file), and then
        // points nowhere; any other 3xx, or a 1xx as the final answer, is
        // not an answer to relay.
        let conditional = head.status == http::StatusCode::NOT_MODIFIED
            && matches!(plan_method, http::Method::GET | http::Method::HEAD);
        if head.status == http::StatusCode::NOT_MODIFIED {
            head.headers.remove(http::header::LOCATION);
        }
        if (head.status.is_redirection() && !conditional) || head.status.is_informational() {
            // Never followed, nor passed on: a redirect could point the VM
            // (or a later request) anywhere, its credential-less retry
            // included.
            let message = if custom {
                format!(
                    "the custom {provider} endpoint of integration {} answered a redirect ({}), which the gateway does not follow; \
set --{provider}-url to the address it redirects to",
                    forward.integration.name,
                    head.status.as_u16()
                )
            } else {
                format!(
                    "the {provider} upstream answered {}, which is not an answer the gateway relays (it follows no redirect); retry, and tell the operator if it persists",
                    head.status.as_u16()
                )
            };
            tracing::warn!(%provider, status = head.status.as_u16(), "upstream answered a redirect; refused");
            return Err(GatewayError::new(
                dialect,
                ErrorClass::BadGateway,
                if custom {
                    "endpoint_redirect"
                } else {
                    "upstream_redirect"
                },
                message,
            ));
        }
        strip_for_client(&mut head.headers);
        let content_type = head.headers.get(CONTENT_TYPE).cloned();
        let content_type = content_type.as_ref().map(|v| v.as_bytes());
        let mut decoder = match encoding::codings(&head.headers) {
            Ok(Some(codings)) => match StreamDecoder::new(&codings, DECODED_ANSWER_LIMIT) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(%provider, error = %e, "cannot decode the answer; its usage is not read");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(%provider, error = %e, "unknown answer coding; its usage is not read");
                None
            }
        };
        let mut sse = is_event_stream(content_type);
        let mut ahead = ReadAhead::default();
        if !head.status.is_success() && decoder.is_none() {
            // An error answer is relayed as the provider wrote it, except
            // for the credential it was sent, should it echo it.
            if self.read_error_answer(&mut incoming, &mut ahead).await {
                let whole: Vec<u8> = ahead
                    .frames
                    .iter()
                    .flat_map(|(raw, _)| raw.to_vec())
                    .collect();
                if let Some(cleaned) = without_secret(&whole, secret.expose_secret()) {
                    tracing::warn!(%provider, "the upstream echoed the credential in its error; removed");
                    let cleaned = Bytes::from(cleaned);
                    ahead.frames = vec![(cleaned.clone(), cleaned)];
                    head.headers.remove(CONTENT_LENGTH);
                }
            }
        }
        // Nor in a header of the answer, whatever its status.
        let text = secret.expose_secret();
        if !text.is_empty() {
            for value in head.headers.values_mut() {
                if memchr::memmem::find(value.as_bytes(), text.as_bytes()).is_some() {
                    tracing::warn!(%provider, "the upstream echoed the credential in a header; removed");
                    let cleaned = String::from_utf8_lossy(value.as_bytes())
                        .replace(text, llm_integration_core::redact::REDACTED);
                    *value = HeaderValue::from_str(&cleaned).unwrap_or(HeaderValue::from_static(
                        llm_integration_core::redact::REDACTED,
                    ));
                }
            }
        }
        // And masked in every byte relayed (a stream's error event, say).
        let scrubber = StreamScrubber::new(secret.expose_secret());
        drop(secret);
        if let (true, Some(expect)) = (head.status.is_success(), plan.response.expect) {
            let sniffed = self
                .sniff(
                    &mut incoming,
                    &mut decoder,
                    content_type,
                    &mut ahead,
                    dialect,
                )
                .await?;
            answer::check(expect, &sniffed, dialect)?;
            sse = sniffed == Sniffed::EventStream;
            if sse && content_type.is_none() {
                head.headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            }
        }
        let relay = ResponseRelay::new(plan.response, sse)
            .with_counter(tokens::counter_for(provider, plan.model.as_deref()));
        let Some(mut metered) = metered.take() else {
            return Err(GatewayError::new(
                dialect,
                ErrorClass::Internal,
                "internal",
                "the request's metering was lost",
            ));
        };
        metered.response(head.status.as_u16());
        if let Some(translation) = &plan.translation {
            if let Some(value) = translation
                .answer
                .dropped
                .header_value()
                .and_then(|v| HeaderValue::from_str(&v).ok())
            {
                head.headers.insert(DROPPED_HEADER, value);
            }
            if !(sse && head.status.is_success() && !plan.response.collect_response) {
                let collect = plan.response.collect_response && sse;
                let answer = self
                    .translate_whole(
                        head,
                        incoming,
                        decoder,
                        ahead,
                        (relay, scrubber.as_ref()),
                        metered,
                        (&translation.answer, collect),
                        dialect,
                    )
                    .await;
                return scrubbed(answer, scrubber);
            }
            // A stream, translated event by event: relayed decoded.
            head.headers.remove(CONTENT_LENGTH);
            head.headers.remove(http::header::CONTENT_ENCODING);
            let body = RelayBody::new(
                incoming,
                relay,
                Some(metered),
                self.limits.idle_stream,
                sse,
                dialect,
            )
            .with_read_ahead(ahead.frames, ahead.ended)
            .with_decoder(decoder, true)
            .with_translator(translation.answer.stream())
            .with_scrubber(scrubber)
            .with_cut(self.cut.clone());
            return Ok(Response::from_parts(head, ProxyBody::Relay(Box::new(body))));
        }
        if plan.response.collect_response && sse && head.status.is_success() {
            let answer = self
                .collect_response(
                    head,
                    incoming,
                    decoder,
                    ahead,
                    (relay, scrubber.as_ref()),
                    metered,
                    dialect,
                )
                .await;
            return scrubbed(answer, scrubber);
        }
        // A relay that changes the answer, or looks for the credential in
        // it, relays it decoded.
        let relays_decoded = (relay.alters_body() || scrubber.is_some()) && decoder.is_some();
        if relay.alters_body() || relays_decoded {
            head.headers.remove(CONTENT_LENGTH);
        }
        if relays_decoded {
            head.headers.remove(http::header::CONTENT_ENCODING);
        }
        let body = RelayBody::new(
            incoming,
            relay,
            Some(metered),
            self.limits.idle_stream,
            sse,
            dialect,
        )
        .with_read_ahead(ahead.frames, ahead.ended)
        .with_decoder(decoder, relays_decoded)
        .with_scrubber(scrubber)
        .with_cut(self.cut.clone());
        // An answer that is not a stream is of no use to the client before
        // its end: sent whole (up to a bound), with its length, it goes in
        // one write, where a chunked relay ends with a second write (the
        // last chunk) and wakes the client twice. A HEAD answer, a 204 and
        // a 304 keep their head as the upstream wrote it.
        let bodiless = plan_method == http::Method::HEAD
            || matches!(
                head.status,
                http::StatusCode::NO_CONTENT | http::StatusCode::NOT_MODIFIED
            );
        if sse || bodiless {
            return Ok(Response::from_parts(head, ProxyBody::Relay(Box::new(body))));
        }
        match Box::new(body).collect(WHOLE_ANSWER_MAX).await {
            Collected::Whole(bytes) => {
                head.headers.remove(CONTENT_LENGTH);
                Ok(Response::from_parts(head, ProxyBody::full(bytes)))
            }
            Collected::Partial(body) => Ok(Response::from_parts(head, ProxyBody::Relay(body))),
            Collected::Failed(message) => Err(GatewayError::new(
                dialect,
                ErrorClass::BadGateway,
                "upstream_stream_error",
                message,
            )),
        }
    }

    /// Reads a (small) error answer whole into `ahead`; false when it is
    /// larger than [`ERROR_ANSWER_MAX`] or does not end in time (what was
    /// read is relayed first, the rest as it comes).
    async fn read_error_answer(
        &self,
        incoming: &mut hyper::body::Incoming,
        ahead: &mut ReadAhead,
    ) -> bool {
        let mut size = 0;
        loop {
            match tokio::time::timeout(self.limits.idle_stream, incoming.frame()).await {
                Ok(Some(Ok(frame))) => {
                    let Ok(raw) = frame.into_data() else { continue };
                    size += raw.len();
                    ahead.frames.push((raw.clone(), raw));
                    if size > ERROR_ANSWER_MAX {
                        return false;
                    }
                }
                Ok(None) => {
                    ahead.ended = true;
                    return true;
                }
                Ok(Some(Err(_))) | Err(_) => return false,
            }
        }
    }

    /// Reads the answer's first frames until its first bytes tell what it
    /// is ([`answer::sniff`]); they are kept in `ahead` to be relayed.
    async fn sniff(
        &self,
        incoming: &mut hyper::body::Incoming,
        decoder: &mut Option<StreamDecoder>,
        content_type: Option<&[u8]>,
        ahead: &mut ReadAhead,
        dialect: Dialect,
    ) -> Result<Sniffed, GatewayError> {
        let mut prefix = Vec::new();
        loop {
            let sniffed = answer::sniff(content_type, &prefix, ahead.ended);
            if sniffed != Sniffed::Undecided {
                return Ok(sniffed);
            }
            match tokio::time::timeout(self.limits.idle_stream, incoming.frame()).await {
                Ok(Some(Ok(frame))) => {
                    let Ok(raw) = frame.into_data() else { continue };
                    let decoded = decode_chunk(decoder, &raw);
                    let room = answer::MAX_SNIFF.saturating_sub(prefix.len());
                    prefix.extend_from_slice(&decoded[..decoded.len().min(room)]);
                    ahead.frames.push((raw, decoded));
                }
                Ok(None) => ahead.ended = true,
                Ok(Some(Err(_))) => {
                    return Err(GatewayError::new(
                        dialect,
                        ErrorClass::BadGateway,
                        "upstream_stream_error",
                        "the upstream connection failed before its answer began",
                    ))
                }
                Err(_) => {
                    return Err(GatewayError::new(
                        dialect,
                        ErrorClass::Timeout,
                        "upstream_timeout",
                        format!(
                            "the upstream sent nothing for {} s after its answer's head",
                            self.limits.idle_stream.as_secs()
                        ),
                    ))
                }
            }
        }
    }

    /// A translated answer that is not relayed as a stream (a JSON answer,
    /// an error, or a ChatGPT stream collected for a client that did not
    /// stream): read whole through the relay (which meters the upstream's
    /// own bytes), then translated into the client's API. `collect`: the
    /// answer is the relay's collected `response` object.
    #[allow(clippy::too_many_arguments)] // the answer's parts, handed on
    async fn translate_whole(
        &self,
        head: http::response::Parts,
        mut incoming: hyper::body::Incoming,
        mut decoder: Option<StreamDecoder>,
        ahead: ReadAhead,
        (mut relay, scrubber): (ResponseRelay, Option<&StreamScrubber>),
        mut metered: Metered,
        (answer, collect): (&AnswerTranslation, bool),
        dialect: Dialect,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let failed = |message: &str| {
            GatewayError::new(
                dialect,
                ErrorClass::BadGateway,
                "upstream_stream_error",
                message.to_owned(),
            )
        };
        let mut whole = Vec::new();
        for (_, decoded) in ahead.frames {
            whole.extend_from_slice(&relay.feed(decoded));
        }
        let read = async {
            if !ahead.ended {
                while let Some(frame) = incoming.frame().await {
                    let frame = frame.map_err(|_| failed("the upstream's answer broke off"))?;
                    if let Ok(data) = frame.into_data() {
                        let kept = relay.feed(decode_chunk(&mut decoder, &data));
                        if whole.len() + kept.len() > TRANSLATED_ANSWER_MAX {
                            return Err(failed(&format!(
                                "the upstream's answer is larger than {} MiB, too large to translate",
                                TRANSLATED_ANSWER_MAX >> 20
                            )));
                        }
                        whole.extend_from_slice(&kept);
                    }
                }
            }
            whole.extend_from_slice(&relay.finish());
            Ok::<(), GatewayError>(())
        };
        let outcome = match tokio::time::timeout(self.limits.upstream_response, read).await {
            Ok(r) => r,
            Err(_) => Err(failed("the upstream's answer did not end in time")),
        };
        let status = head.status;
        // Masked before anything is composed from it: a message cut to a
        // snippet could otherwise hold the credential's first bytes.
        let clean = |bytes: Vec<u8>| match scrubber {
            Some(s) => s.mask_bytes(bytes),
            None => bytes,
        };
        let whole = clean(whole);
        let translated = outcome.and_then(|()| {
            if !status.is_success() {
                return Ok((answer.error_response(status.as_u16(), &whole), None));
            }
            let source = if collect {
                relay
                    .collected()
                    .map(|b| clean(b.to_vec()))
                    .map_err(|e| failed(&e.to_string()))?
            } else {
                whole
            };
            let translated = answer.response(&source).map_err(|e| {
                GatewayError::new(
                    dialect,
                    ErrorClass::BadGateway,
                    "untranslatable_answer",
                    format!("the upstream's answer could not be translated: {e}"),
                )
            })?;
            Ok((translated.body, Some(translated.dropped)))
        });
        let sent = match &translated {
            Ok(_) => status.as_u16(),
            Err(e) => e.status().as_u16(),
        };
        let reading = relay.reading(
            status.is_success() && translated.is_ok(),
            metered.input_estimate(),
            0,
        );
        metered.finish(
            Some(sent),
            reading,
            masked(relay.model(), scrubber).as_deref(),
        );
        let (body, answer_dropped) = translated?;
        let mut head = head;
        if let Some(dropped) = answer_dropped.filter(|d| !d.is_empty()) {
            // The request's members and the answer's, in one header.
            let mut all = answer.dropped.clone();
            all.merge(&dropped);
            if let Some(value) = all
                .header_value()
                .and_then(|v| HeaderValue::from_str(&v).ok())
            {
                head.headers.insert(DROPPED_HEADER, value);
            }
        }
        Ok(json_answer(head, body))
    }

    /// For a client that did not stream, on a backend that only streams:
    /// reads the events up to `response.completed` and answers its response
    /// object.
    #[allow(clippy::too_many_arguments)] // the answer's parts, handed on
    async fn collect_response(
        &self,
        head: http::response::Parts,
        mut incoming: hyper::body::Incoming,
        mut decoder: Option<StreamDecoder>,
        ahead: ReadAhead,
        (mut relay, scrubber): (ResponseRelay, Option<&StreamScrubber>),
        mut metered: Metered,
        dialect: Dialect,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let broke_off = || {
            GatewayError::new(
                dialect,
                ErrorClass::BadGateway,
                "upstream_stream_error",
                "the ChatGPT backend's answer broke off",
            )
        };
        for (_, decoded) in ahead.frames {
            relay.feed(decoded);
        }
        let read = async {
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|_| broke_off())?;
                if let Ok(data) = frame.into_data() {
                    relay.feed(decode_chunk(&mut decoder, &data));
                }
            }
            relay.finish();
            Ok::<(), GatewayError>(())
        };
        let outcome = if ahead.ended {
            relay.finish();
            Ok(())
        } else {
            match tokio::time::timeout(self.limits.upstream_response, read).await {
                Ok(r) => r,
                Err(_) => Err(broke_off()),
            }
        };
        let collected = relay.collected();
        let result = outcome.and_then(|()| {
            collected.map_err(|e| {
                GatewayError::new(
                    dialect,
                    ErrorClass::BadGateway,
                    "upstream_stream_error",
                    e.to_string(),
                )
            })
        });
        let status = match &result {
            Ok(_) => head.status.as_u16(),
            Err(e) => e.status().as_u16(),
        };
        let reading = relay.reading(true, metered.input_estimate(), 0);
        metered.finish(
            Some(status),
            reading,
            masked(relay.model(), scrubber).as_deref(),
        );
        let body = result?;
        Ok(json_answer(head, body))
    }
}

/// The largest whole answer translated (a non-streamed answer, or an
/// error): past it, 502.
const TRANSLATED_ANSWER_MAX: usize = 64 * 1024 * 1024;

/// Answers Anthropic's `count_tokens` for a model of another family with an
/// estimate: the request read as the Chat Completions request it
/// translates to, counted by [`tokens::estimate_input`], with the
/// [`ESTIMATE_HEADER`] naming the tokenizer.
fn count_tokens(count: &TokenCount<'_>, body: &[u8]) -> Response<ProxyBody> {
    match tokens::estimate_input(count.provider, &count.model, body) {
        Ok((input_tokens, tokenizer)) => {
            let mut r = json_response(
                StatusCode::OK,
                serde_json::json!({ "input_tokens": input_tokens }).to_string(),
            );
            r.headers_mut()
                .insert(ESTIMATE_HEADER, HeaderValue::from_static(tokenizer));
            r
        }
        Err(e) => error_response(&GatewayError::new(
            count.dialect,
            ErrorClass::InvalidRequest,
            "invalid_request",
            e.to_string(),
        )),
    }
}

/// The response header of an answer the gateway estimated rather than had
/// from the provider; its value names the method (`tiktoken o200k_base`).
pub const ESTIMATE_HEADER: &str = "llm-integration-estimate";

/// The most an answer is decoded to (for the meter, or to relay it
/// changed): past it, the answer is relayed as received and its usage is
/// what was read so far.
const DECODED_ANSWER_LIMIT: usize = 1 << 30;

/// The largest error answer read whole (to remove an echoed credential).
const ERROR_ANSWER_MAX: usize = 1024 * 1024;

/// The largest answer that is not a stream sent whole, with its length
/// (a larger one is relayed as it arrives, chunked unless the upstream
/// gave its length). Chat answers are a few KiB.
const WHOLE_ANSWER_MAX: usize = 64 * 1024;

/// Frames read before the answer's head was relayed, raw and decoded.
#[derive(Default)]
struct ReadAhead {
    frames: Vec<(Bytes, Bytes)>,
    ended: bool,
}

/// A chunk decoded, or the chunk itself when the answer is not coded
/// (or can no longer be decoded).
fn decode_chunk(decoder: &mut Option<StreamDecoder>, raw: &Bytes) -> Bytes {
    match decoder {
        Some(d) => match d.push(raw) {
            Ok(decoded) => Bytes::from(decoded),
            Err(e) => {
                tracing::warn!(error = %e, "answer decoding stopped; its usage is what was read so far");
                Bytes::new()
            }
        },
        None => raw.clone(),
    }
}

/// Which upstream a failed call went to, for its error and the log line.
struct Upstream<'a> {
    provider: llm_integration_core::Provider,
    /// ChatGPT's Codex backend rather than the provider's API.
    chatgpt: bool,
    /// A custom endpoint: the integration's name.
    custom: Option<&'a str>,
    /// `scheme://host:port` of the call (for the operator's log only).
    origin: &'a str,
}

/// `scheme://authority` of a URL (nothing of its path or query).
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// An answer the gateway wrote whole (`body`, JSON) under the upstream's
/// `head`: its type set, its former length and coding removed.
fn json_answer(mut head: http::response::Parts, body: impl Into<Bytes>) -> Response<ProxyBody> {
    head.headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    head.headers.remove(CONTENT_LENGTH);
    head.headers.remove(http::header::CONTENT_ENCODING);
    Response::from_parts(head, ProxyBody::full(body))
}

/// `text` (from the upstream) with the credential of `scrubber` masked.
fn masked<'t>(
    text: Option<&'t str>,
    scrubber: Option<&StreamScrubber>,
) -> Option<std::borrow::Cow<'t, str>> {
    match (text, scrubber) {
        (Some(t), Some(s)) => Some(s.mask(t)),
        (t, _) => t.map(std::borrow::Cow::Borrowed),
    }
}

/// An answer the gateway composed from the upstream's (translated or
/// collected) without the credential: its whole body passed through
/// `scrubber`, or its error's message (which may quote the upstream)
/// masked, before it is sent or logged.
fn scrubbed(
    answer: Result<Response<ProxyBody>, GatewayError>,
    scrubber: Option<StreamScrubber>,
) -> Result<Response<ProxyBody>, GatewayError> {
    let Some(mut scrubber) = scrubber else {
        return answer;
    };
    let response = match answer {
        Ok(response) => response,
        Err(mut e) => {
            e.message = Redactor::default()
                .redact(&scrubber.mask(&e.message))
                .into_owned();
            return Err(e);
        }
    };
    let (head, body) = response.into_parts();
    let body = match body {
        ProxyBody::Full(Some(bytes)) => {
            let clean = scrubber.feed(bytes);
            let held = scrubber.finish();
            if scrubber.found() {
                tracing::warn!("the upstream echoed the credential in its answer; masked");
            }
            ProxyBody::full([clean, held].concat())
        }
        ProxyBody::Relay(relay) => ProxyBody::Relay(Box::new(relay.with_scrubber(Some(scrubber)))),
        empty => empty,
    };
    Ok(Response::from_parts(head, body))
}

/// `body` without `secret`, when it holds it: written out (replaced with
/// `[REDACTED]`, every other byte kept), or only in a JSON string's
/// escaped spelling (`\u0073k-…`: the body is then written again, each
/// string that held it redacted). `None` when the secret is not there.
fn without_secret(body: &[u8], secret: &str) -> Option<String> {
    use llm_integration_core::redact::REDACTED;
    if secret.is_empty() {
        return None;
    }
    if memchr::memmem::find(body, secret.as_bytes()).is_some() {
        return Some(String::from_utf8_lossy(body).replace(secret, REDACTED));
    }
    fn walk(value: &mut serde_json::Value, secret: &str) -> bool {
        match value {
            serde_json::Value::String(text) if text.contains(secret) => {
                *text = text.replace(secret, REDACTED);
                true
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().fold(false, |f, v| walk(v, secret) | f)
            }
            serde_json::Value::Object(members) => {
                members.values_mut().fold(false, |f, v| walk(v, secret) | f)
            }
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    walk(&mut value, secret).then(|| value.to_string())
}

/// The error a client gets for an upstream call that failed before its
/// answer's head. The client learns which upstream failed and how; the
/// operator's log also names its address and the setting that chose it.
fn upstream_error(
    dialect: Dialect,
    upstream: Upstream<'_>,
    e: &hyper_util::client::legacy::Error,
    max_body: usize,
) -> GatewayError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            return GatewayError::body_too_large(dialect, max_body);
        }
        source = s.source();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        // An `io::Error` hides the error it wraps from `source()`.
        let refused = s
            .downcast_ref::<crate::endpoints::EndpointRefused>()
            .or_else(|| {
                s.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<crate::endpoints::EndpointRefused>())
            });
        if let Some(refused) = refused {
            tracing::warn!(provider = %upstream.provider, upstream = upstream.origin, reason = %refused, "custom endpoint refused");
            return GatewayError::new(
                dialect,
                ErrorClass::Permission,
                "endpoint_not_allowed",
                refused.to_string(),
            );
        }
        source = s.source();
    }
    let detail = crate::error_chain(e);
    let what = if e.is_connect() {
        "could not be reached"
    } else {
        "failed"
    };
    let detail = Redactor::default().redact(&detail).into_owned();
    let provider = upstream.provider;
    let (name, setting) = if let Some(integration) = upstream.custom {
        (
            format!("the custom {provider} endpoint of integration {integration}"),
            format!("its --{provider}-url"),
        )
    } else if upstream.chatgpt {
        (
            "ChatGPT's Codex backend".to_owned(),
            "--chatgpt-backend-url".to_owned(),
        )
    } else {
        (
            format!("the upstream {provider}"),
            format!(
                "LLM_INTEGRATION_{}_BASE_URL (--{provider}-base-url)",
                provider.as_str().to_ascii_uppercase()
            ),
        )
    };
    tracing::warn!(
        %provider,
        upstream = upstream.origin,
        %detail,
        "{name} {what}; check that {} is up and reachable from this machine, or {setting}",
        upstream.origin
    );
    GatewayError::new(
        dialect,
        ErrorClass::BadGateway,
        "upstream_unreachable",
        format!("{name} {what}: {detail}"),
    )
}

/// The data plane as a `tower` service (see [`DataPlane::service`]).
#[derive(Clone)]
pub struct DataPlaneService(Arc<DataPlane>);

impl<B> tower_service::Service<Request<B>> for DataPlaneService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let plane = self.0.clone();
        let connection = req.extensions().get::<ConnectionInfo>().copied();
        Box::pin(async move { Ok(plane.handle(req, connection).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::without_secret;

    #[test]
    fn an_echoed_secret_is_removed_however_it_is_spelled() {
        let secret = "sk-echoed-0123";
        assert_eq!(
            without_secret(br#"{"error":"bad key sk-echoed-0123"}"#, secret).as_deref(),
            Some(r#"{"error":"bad key [REDACTED]"}"#)
        );
        // Written with JSON escapes, it is found in the decoded string.
        let escaped = br#"{"error":{"message":"key \u0073k-echoed-0123 refused","n":[1,"\u0073k-echoed-0123"]}}"#;
        let cleaned = without_secret(escaped, secret).unwrap();
        assert!(!cleaned.contains("echoed-0123"), "{cleaned}");
        assert!(cleaned.contains("[REDACTED]"));
        assert_eq!(without_secret(br#"{"error":"nothing here"}"#, secret), None);
        assert_eq!(without_secret(b"not json", secret), None);
        assert_eq!(without_secret(b"anything", ""), None);
    }
}
