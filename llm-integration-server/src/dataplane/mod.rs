//! The data plane: what VMs call.
//!
//! Per request: find the calling VM from the connection (the peer address,
//! or a trusted front proxy's forwarding header), route with the core
//! against the current snapshot (no store round trip), read the body only
//! when the provider depends on its `model`, obtain the source's
//! credential, and forward with hyper's pooled client, relaying the answer
//! frame by frame.

mod body;
mod credentials;
mod headers;
mod listener;
mod models;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use llm_integration_core::router::{
    Decision, Plan, ReflectionPath, ReflectionRoute, RouteRequest, Router,
};
use llm_integration_core::seams::{ConnectionInfo, CredentialError, CredentialResolver};
use llm_integration_core::wire::errors::{error_body, ErrorClass};
use llm_integration_core::{
    Dialect, Integration, Provider, ProviderSource, ReflectionField, Refused, Snapshot, Source,
    VmId,
};
use serde::Deserialize;
use serde_json::{json, Value};

pub use body::{sse_error_event, ProxyBody, RelayBody};
pub use credentials::ServerCredentials;
pub use listener::{serve_data, tls_acceptor, Accept};
pub use models::ModelLists;

use crate::live::LiveConfig;
use crate::metering::{Metered, Metering, RequestFacts, DEFAULT_OUTPUT_RESERVATION};
use crate::upstreams::Upstreams;
use std::time::{Instant, SystemTime};

/// The body type sent upstream: a buffered body (when the model was read)
/// or the client's body streamed through, within the size limit. The
/// streamed one is boxed to keep the request small: each upstream
/// connection's request queue holds 32 of them.
pub type UpstreamBody = Either<Full<Bytes>, Box<Limited<Incoming>>>;

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
    /// Time allowed to read a request head.
    pub header_read: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 32 * 1024 * 1024,
            connect: Duration::from_secs(10),
            upstream_response: Duration::from_secs(600),
            idle_stream: Duration::from_secs(300),
            header_read: Duration::from_secs(30),
        }
    }
}

/// Who may say where a connection really comes from.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    /// Peers whose forwarding header is believed.
    pub addresses: Vec<IpAddr>,
    /// The header carrying the original client address (e.g. `x-forwarded-for`;
    /// its last entry is used).
    pub header: Option<HeaderName>,
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
    client: UpstreamClient,
    upstreams: Upstreams,
    credentials: Arc<dyn CredentialResolver>,
    models: ModelLists,
    limits: Limits,
    trusted: TrustedProxies,
    metering: Arc<Metering>,
    chatgpt: Arc<crate::chatgpt::ChatGpt>,
    /// The integration hostname assumed when a request names the gateway by
    /// address (`127.0.0.1:7700`, `localhost`) instead of by integration.
    default_host: Option<String>,
}

fn json_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A gateway-generated error in `dialect`.
pub fn error_response(
    dialect: Dialect,
    class: ErrorClass,
    code: &str,
    message: &str,
) -> Response<ProxyBody> {
    json_response(class.status(), error_body(dialect, class, code, message))
}

fn refused(r: &Refused) -> Response<ProxyBody> {
    json_response(r.status(), r.body())
}

/// The fields of a request body the data plane reads: the model to route
/// on and what metering needs. Read once per request, leniently (a field
/// of an unexpected type is simply absent), without building the rest of
/// the document.
#[derive(Deserialize, Default)]
#[serde(default)]
struct BodyFacts {
    model: Option<Value>,
    max_tokens: Option<Value>,
    max_output_tokens: Option<Value>,
    max_completion_tokens: Option<Value>,
    stream: Option<Value>,
    stream_options: Option<Value>,
}

impl BodyFacts {
    fn model(&self) -> Option<&str> {
        self.model.as_ref().and_then(Value::as_str)
    }

    /// The request's output limit, in any API's spelling.
    fn max_output(&self) -> Option<u64> {
        [
            &self.max_tokens,
            &self.max_output_tokens,
            &self.max_completion_tokens,
        ]
        .into_iter()
        .find_map(|v| v.as_ref().and_then(Value::as_u64))
    }

    fn streams(&self) -> bool {
        self.stream.as_ref().and_then(Value::as_bool) == Some(true)
    }

    fn wants_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .map(|o| o["include_usage"].as_bool() == Some(true))
            .unwrap_or(false)
    }
}

impl DataPlane {
    /// A data plane routing on `live`.
    #[allow(clippy::too_many_arguments)] // each part is independent; a builder would only rename them
    pub fn new(
        live: Arc<LiveConfig>,
        upstreams: Upstreams,
        credentials: Arc<dyn CredentialResolver>,
        limits: Limits,
        trusted: TrustedProxies,
        models_ttl: Duration,
        metering: Arc<Metering>,
        chatgpt: Arc<crate::chatgpt::ChatGpt>,
    ) -> Self {
        DataPlane {
            default_host: None,
            chatgpt,
            metering,
            client: upstream_client(&limits),
            live,
            upstreams,
            credentials,
            models: ModelLists::new(models_ttl),
            limits,
            trusted,
        }
    }

    /// Serves `host` (e.g. `llm.int.exe.xyz`) to requests that name the
    /// gateway by address or as `localhost`, so clients on a machine without
    /// DNS for the integration domain can use `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn with_default_host(mut self, host: Option<String>) -> Self {
        self.default_host = host;
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn effective_host(&self, host: String) -> String {
        let Some(default) = &self.default_host else {
            return host;
        };
        let bare = match host.rsplit_once(':') {
            Some((h, port))
                if port.bytes().all(|b| b.is_ascii_digit())
                    && !h.ends_with(']')
                    && !h.contains(':') =>
            {
                h
            }
            _ => host.as_str(),
        };
        let bare = bare.trim_start_matches('[').trim_end_matches(']');
        if bare.is_empty()
            || bare.eq_ignore_ascii_case("localhost")
            || bare.parse::<IpAddr>().is_ok()
        {
            default.clone()
        } else {
            host
        }
    }

    fn connection_info(
        &self,
        connection: ConnectionInfo,
        headers: &http::HeaderMap,
    ) -> ConnectionInfo {
        if connection.original.is_some() {
            return connection;
        }
        let peer = connection.peer;
        let original = match &self.trusted.header {
            Some(name) if self.trusted.addresses.contains(&peer.ip()) => headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .last()
                .and_then(|a| a.trim().parse::<IpAddr>().ok()),
            _ => None,
        };
        ConnectionInfo { peer, original }
    }

    /// Answers one request on `connection`.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        connection: ConnectionInfo,
    ) -> Response<ProxyBody> {
        let snapshot = self.live.snapshot();
        let info = self.connection_info(connection, req.headers());
        let caller = snapshot.vm_by_address(info.client_address());
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let host = self.effective_host(host);
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_owned();
        let anthropic_client = req.headers().contains_key("anthropic-version")
            || req.headers().contains_key("x-api-key");
        let method = req.method().clone();
        let request = RouteRequest::new(caller, &host, &method, &target)
            .with_anthropic_client(anthropic_client);
        let plan = match snapshot.route(&request) {
            Ok(plan) => plan,
            Err(r) => {
                tracing::debug!(refusal = ?r.refusal, %host, path = %target, "refused");
                self.metering.metrics.refused(r.refusal.code());
                return refused(&r);
            }
        };
        let dialect = match &plan {
            Plan::NeedsModel(p) => p.dialect(),
            Plan::Ready(Decision::Forward(f)) => f.dialect,
            Plan::Ready(Decision::ListModels(l)) => l.dialect,
            Plan::Ready(_) => Dialect::OpenAi,
        };
        if req
            .headers()
            .get(http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        {
            let mut r = error_response(
                dialect,
                ErrorClass::InvalidRequest,
                "websocket_not_supported",
                "WebSocket is not served by this gateway; use HTTP (POST /v1/responses with stream: true)",
            );
            *r.status_mut() = StatusCode::UPGRADE_REQUIRED;
            return r;
        }
        let (parts, body) = req.into_parts();
        let mut request_model: Option<String> = None;
        let mut request_facts: Option<BodyFacts> = None;
        let (decision, upstream_body) = match plan {
            Plan::Ready(decision) => (
                decision,
                Either::Right(Box::new(Limited::new(body, self.limits.max_body))),
            ),
            Plan::NeedsModel(pending) => {
                let bytes = match self.read_body(&parts.headers, body, dialect).await {
                    Ok(b) => b,
                    Err(response) => return response,
                };
                let facts = match serde_json::from_slice::<BodyFacts>(&bytes) {
                    Ok(facts) => facts,
                    Err(e) => {
                        return error_response(
                            dialect,
                            ErrorClass::InvalidRequest,
                            "invalid_json",
                            &format!("the request body is not a valid JSON object: {e}"),
                        )
                    }
                };
                request_model = facts.model().map(str::to_owned);
                request_facts = Some(facts);
                let decision = match snapshot.resolve_model(pending, request_model.as_deref()) {
                    Ok(d) => d,
                    Err(r) => {
                        self.metering.metrics.refused(r.refusal.code());
                        return refused(&r);
                    }
                };
                let bytes = match &decision {
                    Decision::Forward(f) if f.upstream_model.is_some() => {
                        rewrite_model(&bytes, f.upstream_model.as_deref())
                    }
                    _ => bytes,
                };
                (decision, Either::Left(Full::new(bytes)))
            }
        };
        match decision {
            Decision::Forward(forward) => {
                let model = forward.upstream_model.clone().or(request_model);
                self.forward(caller, forward, parts, upstream_body, model, request_facts)
                    .await
            }
            Decision::ListModels(listing) => {
                let answer = self
                    .models
                    .answer(
                        &self.client,
                        &self.upstreams,
                        self.credentials.as_ref(),
                        &self.chatgpt,
                        &listing,
                    )
                    .await;
                json_response(StatusCode::OK, answer.to_string())
            }
            Decision::Reflection(route) => {
                reflection(&snapshot, &route, parts.method == Method::HEAD)
            }
            Decision::Liveness if parts.method == Method::HEAD => Response::new(ProxyBody::empty()),
            Decision::Liveness => {
                json_response(StatusCode::OK, json!({"status": "ok"}).to_string())
            }
            _ => error_response(
                dialect,
                ErrorClass::NotFound,
                "route_not_found",
                "no such route",
            ),
        }
    }

    async fn read_body(
        &self,
        headers: &http::HeaderMap,
        body: Incoming,
        dialect: Dialect,
    ) -> Result<Bytes, Response<ProxyBody>> {
        let too_large = || {
            error_response(
                dialect,
                ErrorClass::TooLarge,
                "request_too_large",
                &format!(
                    "the request body is over the gateway's limit of {} bytes",
                    self.limits.max_body
                ),
            )
        };
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limits.max_body as u64) {
            return Err(too_large());
        }
        match tokio::time::timeout(
            self.limits.upstream_response,
            Limited::new(body, self.limits.max_body).collect(),
        )
        .await
        {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(too_large())
            }
            Ok(Err(e)) => Err(error_response(
                dialect,
                ErrorClass::InvalidRequest,
                "body_read_failed",
                &format!("the request body could not be read: {e}"),
            )),
            Err(_) => Err(error_response(
                dialect,
                ErrorClass::Timeout,
                "body_timeout",
                "the request body took too long to arrive",
            )),
        }
    }

    async fn forward(
        &self,
        caller: Option<VmId>,
        forward: llm_integration_core::Forward<'_>,
        mut parts: http::request::Parts,
        body: UpstreamBody,
        model: Option<String>,
        facts: Option<BodyFacts>,
    ) -> Response<ProxyBody> {
        let dialect = forward.dialect;
        let provider = forward.provider;
        let started = Instant::now();
        let metered_source = forward.source.is_metered();
        let path = forward.upstream_path.split('?').next().unwrap_or("");
        let chat = path.ends_with("/v1/chat/completions");
        // Metering a gateway source needs the body (its output limit); a
        // chat stream needs it to ask for usage. Others stream through.
        let chatgpt_source = matches!(forward.source, Source::Chatgpt { .. });
        if chatgpt_source && path != "/v1/responses" {
            return error_response(
                dialect,
                ErrorClass::InvalidRequest,
                "unsupported_endpoint",
                &format!(
                    "OpenAI on integration {} is a ChatGPT subscription, which serves the Responses API only \
(POST /v1/responses, as Codex uses it); for {path} use --openai=gateway or --openai=byok",
                    forward.integration.name
                ),
            );
        }
        let (bytes, streamed) = match body {
            Either::Left(full) => (
                Some(
                    full.collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default(),
                ),
                None,
            ),
            Either::Right(limited) if metered_source || chat || chatgpt_source => {
                match limited.collect().await {
                    Ok(c) => (Some(c.to_bytes()), None),
                    Err(e)
                        if e.downcast_ref::<http_body_util::LengthLimitError>()
                            .is_some() =>
                    {
                        return error_response(
                            dialect,
                            ErrorClass::TooLarge,
                            "request_too_large",
                            &format!(
                                "the request body is over the gateway's limit of {} bytes",
                                self.limits.max_body
                            ),
                        )
                    }
                    Err(e) => {
                        return error_response(
                            dialect,
                            ErrorClass::InvalidRequest,
                            "body_read_failed",
                            &format!("the request body could not be read: {e}"),
                        )
                    }
                }
            }
            Either::Right(limited) => (None, Some(limited)),
        };
        let mut model = model;
        let mut max_output: Option<u64> = None;
        let mut strip_usage = false;
        let bytes = match bytes {
            Some(b) => {
                // Read when routing needed the model; else read here, once.
                let facts = match &facts {
                    Some(f) => f,
                    None => &serde_json::from_slice::<BodyFacts>(&b).unwrap_or_default(),
                };
                if model.is_none() {
                    model = facts.model().map(str::to_owned);
                }
                max_output = facts.max_output();
                if chat && provider == Provider::OpenAi && facts.streams() && !facts.wants_usage() {
                    // Ask for the usage chunk, and keep it from the client, who did not.
                    match serde_json::from_slice::<Value>(&b) {
                        Ok(mut value) if value.is_object() => {
                            if !value["stream_options"].is_object() {
                                value["stream_options"] = json!({});
                            }
                            value["stream_options"]["include_usage"] = Value::Bool(true);
                            strip_usage = true;
                            Some(serde_json::to_vec(&value).map(Bytes::from).unwrap_or(b))
                        }
                        _ => Some(b),
                    }
                } else {
                    Some(b)
                }
            }
            None => None,
        };
        // The Codex backend's rules (PROTOCOLS §4.4): stored nothing, streamed
        // always, only the parameters it accepts.
        let mut client_streams = true;
        let bytes = match (chatgpt_source, bytes) {
            (true, Some(b)) => {
                let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&b) else {
                    return error_response(
                        dialect,
                        ErrorClass::InvalidRequest,
                        "invalid_json",
                        "the request body must be a JSON object",
                    );
                };
                client_streams = body.get("stream").and_then(Value::as_bool) == Some(true);
                const ACCEPTED: [&str; 14] = [
                    "model",
                    "instructions",
                    "input",
                    "tools",
                    "tool_choice",
                    "parallel_tool_calls",
                    "reasoning",
                    "store",
                    "stream",
                    "include",
                    "prompt_cache_key",
                    "text",
                    "client_metadata",
                    "previous_response_id",
                ];
                body.retain(|k, _| ACCEPTED.contains(&k.as_str()));
                body.insert("store".into(), Value::Bool(false));
                body.insert("stream".into(), Value::Bool(true));
                body.entry("instructions")
                    .or_insert_with(|| Value::String(String::new()));
                Some(serde_json::to_vec(&body).map(Bytes::from).unwrap_or(b))
            }
            (_, bytes) => bytes,
        };
        let reservation = if metered_source {
            let price = self.metering.prices.price(provider, model.as_deref());
            let output = max_output.unwrap_or(if path.ends_with("/embeddings") {
                0
            } else {
                DEFAULT_OUTPUT_RESERVATION
            });
            let input_bytes = bytes.as_ref().map_or(0, |b| b.len() as u64);
            let ceiling = price.ceiling_micros(input_bytes, output);
            match self
                .metering
                .allocator
                .reserve(forward.integration.owner, ceiling)
                .await
            {
                Ok(Ok(r)) => Some(r),
                Ok(Err(exhausted)) => {
                    self.metering.metrics.allocation_refused();
                    return error_response(
                        dialect,
                        ErrorClass::RateLimited,
                        "allocation_exhausted",
                        &format!(
                            "the LLM allocation of this integration's owner is exhausted: ${:.4} left, and this request may cost up to ${:.4}; \
ask an operator for more allocation, lower max_tokens, or use your own key (`integrations edit {} --{provider}=byok`)",
                            exhausted.available as f64 / 1e6,
                            exhausted.needed as f64 / 1e6,
                            forward.integration.name
                        ),
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "allocation unavailable");
                    return error_response(
                        dialect,
                        ErrorClass::Unavailable,
                        "allocation_unavailable",
                        "the allocation cannot be checked right now; retry",
                    );
                }
            }
        } else {
            None
        };
        let facts = RequestFacts {
            started,
            started_at: SystemTime::now(),
            owner: forward.integration.owner,
            vm: caller.unwrap_or(VmId(0)),
            integration: forward.integration.id,
            provider,
            source: forward.source.kind(),
            model: model.clone(),
        };
        let mut metered = Metered::new(self.metering.clone(), facts, reservation);
        let body: UpstreamBody = match (bytes, streamed) {
            (Some(b), _) => Either::Left(Full::new(b)),
            (None, Some(l)) => Either::Right(l),
            (None, None) => Either::Left(Full::new(Bytes::new())),
        };
        let Some(reference) = forward.source.credential(provider) else {
            return error_response(
                dialect,
                ErrorClass::NotFound,
                "provider_disabled",
                "the provider is disabled",
            );
        };
        let credential = match self
            .credentials
            .resolve(forward.integration.owner, provider, reference)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let response = credential_error(dialect, provider, &e);
                metered.finish(Some(response.status().as_u16()));
                return response;
            }
        };
        let uri = if chatgpt_source {
            format!("{}/responses", self.chatgpt.backend())
        } else {
            format!("{}{}", self.upstreams.base(provider), forward.upstream_path)
        };
        let Ok(uri) = uri.parse::<Uri>() else {
            return error_response(
                dialect,
                ErrorClass::InvalidRequest,
                "invalid_path",
                "the request path cannot be forwarded",
            );
        };
        headers::to_upstream(
            &mut parts.headers,
            provider,
            &credential,
            self.trusted.header.as_ref(),
        );
        drop(credential);
        if chatgpt_source {
            if !parts.headers.contains_key("originator") {
                parts
                    .headers
                    .insert("originator", HeaderValue::from_static("codex_cli_rs"));
            }
            parts.headers.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        let mut builder = Request::builder()
            .method(parts.method)
            .uri(uri)
            .version(http::Version::HTTP_11);
        if let Some(h) = builder.headers_mut() {
            *h = std::mem::take(&mut parts.headers);
        }
        let request = match builder.body(body) {
            Ok(r) => r,
            Err(e) => {
                return error_response(
                    dialect,
                    ErrorClass::Internal,
                    "internal",
                    &format!("cannot build the upstream request: {e}"),
                )
            }
        };
        let response =
            match tokio::time::timeout(self.limits.upstream_response, self.client.request(request))
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    let response = upstream_error(dialect, provider, &e);
                    metered.finish(Some(response.status().as_u16()));
                    return response;
                }
                Err(_) => {
                    metered.finish(Some(StatusCode::GATEWAY_TIMEOUT.as_u16()));
                    return error_response(
                        dialect,
                        ErrorClass::Timeout,
                        "upstream_timeout",
                        &format!(
                            "{provider} did not answer within {} s",
                            self.limits.upstream_response.as_secs()
                        ),
                    );
                }
            };
        let (mut head, incoming) = response.into_parts();
        headers::to_client(&mut head.headers);
        let sse = head
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        metered.response(head.status.as_u16(), sse);
        if chatgpt_source && !client_streams && sse && head.status.is_success() {
            return self
                .collect_response(head, incoming, metered, dialect)
                .await;
        }
        let relay = RelayBody::new(incoming, self.limits.idle_stream, sse, dialect)
            .metered(metered, strip_usage);
        Response::from_parts(head, ProxyBody::Relay(Box::new(relay)))
    }

    /// For a client that did not stream, on a backend that only streams:
    /// reads the events up to `response.completed` and answers its response
    /// object.
    async fn collect_response(
        &self,
        mut head: http::response::Parts,
        incoming: Incoming,
        mut metered: Metered,
        dialect: Dialect,
    ) -> Response<ProxyBody> {
        let collected =
            match tokio::time::timeout(self.limits.upstream_response, incoming.collect()).await {
                Ok(Ok(c)) => c.to_bytes(),
                _ => {
                    metered.finish(Some(StatusCode::BAD_GATEWAY.as_u16()));
                    return error_response(
                        dialect,
                        ErrorClass::BadGateway,
                        "upstream_stream_error",
                        "the ChatGPT backend's answer broke off",
                    );
                }
            };
        metered.feed(&collected);
        metered.finish(None);
        let text = String::from_utf8_lossy(&collected);
        let completed = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| {
                matches!(
                    v["type"].as_str(),
                    Some("response.completed" | "response.incomplete" | "response.failed")
                )
            });
        let Some(event) = completed else {
            return error_response(
                dialect,
                ErrorClass::BadGateway,
                "upstream_stream_error",
                "the ChatGPT backend's answer ended without response.completed",
            );
        };
        head.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        head.headers.remove(http::header::CONTENT_LENGTH);
        Response::from_parts(head, ProxyBody::full(event["response"].to_string()))
    }
}

fn rewrite_model(bytes: &Bytes, model: Option<&str>) -> Bytes {
    let (Ok(mut value), Some(model)) = (serde_json::from_slice::<Value>(bytes), model) else {
        return bytes.clone();
    };
    value["model"] = Value::String(model.to_owned());
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .unwrap_or_else(|_| bytes.clone())
}

fn credential_error(
    dialect: Dialect,
    provider: Provider,
    e: &CredentialError,
) -> Response<ProxyBody> {
    match e {
        CredentialError::NotConfigured(what) => error_response(
            dialect,
            ErrorClass::Unavailable,
            "credential_not_configured",
            &format!("no credential is configured for {what}"),
        ),
        CredentialError::NeedsOwner(message) => error_response(
            dialect,
            ErrorClass::Permission,
            "credential_needs_owner",
            message,
        ),
        _ => {
            tracing::error!(%provider, error = %e, "credential unavailable");
            error_response(
                dialect,
                ErrorClass::Unavailable,
                "credential_unavailable",
                "the credential is temporarily unavailable; retry",
            )
        }
    }
}

fn upstream_error(
    dialect: Dialect,
    provider: Provider,
    e: &hyper_util::client::legacy::Error,
) -> Response<ProxyBody> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            return error_response(
                dialect,
                ErrorClass::TooLarge,
                "request_too_large",
                "the request body is over the gateway's limit",
            );
        }
        source = s.source();
    }
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    tracing::warn!(%provider, error = %detail, "upstream request failed");
    let what = if e.is_connect() {
        "could not be reached"
    } else {
        "failed"
    };
    error_response(
        dialect,
        ErrorClass::BadGateway,
        "upstream_unreachable",
        &format!("the upstream {provider} {what}: {detail}"),
    )
}

/// Reflection answers (SPEC §8).
fn reflection(snapshot: &Snapshot, route: &ReflectionRoute<'_>, head: bool) -> Response<ProxyBody> {
    let vm = route.vm;
    let describe = |f: ReflectionField| match f {
        ReflectionField::Email => "the email of this VM's owner",
        ReflectionField::Integrations => {
            "every integration attached to this VM, with how to use it"
        }
        ReflectionField::Tags => "this VM's tags",
        ReflectionField::Comment => "this VM's comment",
        ReflectionField::DefaultPort => "this VM's default port",
    };
    let value = match route.path {
        ReflectionPath::Index => {
            let paths: Vec<Value> = route
                .settings
                .fields
                .iter()
                .map(|f| json!({"path": format!("/{}", f.as_str()), "description": describe(f)}))
                .collect();
            json!({"paths": paths})
        }
        ReflectionPath::Field(ReflectionField::Email) => {
            json!({"email": snapshot.user(vm.owner).map(|u| u.email.as_str())})
        }
        ReflectionPath::Field(ReflectionField::Integrations) => {
            let list: Vec<Value> = snapshot
                .attached_to(vm.id)
                .into_iter()
                .map(|(scope, i)| {
                    let host = llm_integration_core::host::hostname(i.name.as_str(), scope, snapshot.domain());
                    json!({"name": i.name, "type": i.kind.type_name(), "scope": scope, "hostname": host,
                           "comment": i.comment, "help": i.kind.help(&host)})
                })
                .collect();
            json!({"integrations": list})
        }
        ReflectionPath::Field(ReflectionField::Tags) => json!({"tags": vm.tags}),
        ReflectionPath::Field(ReflectionField::Comment) => json!({"comment": vm.comment}),
        ReflectionPath::Field(ReflectionField::DefaultPort) => {
            json!({"default_port": vm.default_port})
        }
    };
    let mut r = json_response(StatusCode::OK, value.to_string());
    if head {
        *r.body_mut() = ProxyBody::empty();
    }
    r
}
