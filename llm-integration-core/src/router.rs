//! The routing engine: a pure, synchronous decision from
//! (snapshot, caller VM, `Host`, method, path, optional model) to what the
//! data plane must do, or a typed refusal that knows its error dialect.
//!
//! Routing is two-phase so that a server reads a request body only when it
//! must: [`Router::route`] decides everything the head can decide and, for
//! generic endpoints whose provider depends on the body's `model`, returns
//! [`Plan::NeedsModel`]; [`Router::resolve_model`] finishes the decision
//! once the model is known. [`Router::route_with_model`] does both.
//!
//! A model whose provider does not serve the client's API family is
//! translated when the integration allows it ([`LlmSettings::translate`]):
//! the [`Forward`] then names the upstream API's path and carries the
//! [`Translation`] (an Anthropic Messages client on an OpenAI model, an
//! OpenAI client on a Claude model); Anthropic's `count_tokens` for an
//! OpenAI or Fireworks model is [`Decision::CountTokens`]. Without
//! translation, or for an endpoint with no counterpart, the refusal names
//! the endpoint to use ([`Refusal::WrongEndpoint`]).

use http::Method;

use crate::domain::{
    IntegrationConfig, IntegrationKind, LlmSettings, Owner, ReflectionField, ReflectionSettings,
    Vm, VmId,
};
use crate::host::{gateway_address, parse_host, HostTarget, Scope};
use crate::model_id::{route_model, route_model_for, ModelError};
use crate::names::IntegrationName;
use crate::path::{check_path, classify_path, split_target, PathError, PathRoute};
use crate::provider::{Dialect, Provider, ProviderSet};
use crate::snapshot::{Snapshot, VmEntry};
use crate::source::{ProviderSource, Source};
use crate::translate::{Target, Translation};
use crate::wire::errors::{error_body, ErrorClass};

/// Decides where requests go, on a configuration [`Snapshot`].
///
/// [`SnapshotRouter`] applies the product's rules; an embedder plugs its
/// own policy into the data plane by implementing this trait, typically
/// by wrapping [`SnapshotRouter`] (to refuse some models, add routes, or
/// pin providers) and delegating the rest. Object-safe: the data plane
/// holds it as `Arc<dyn Router>`.
pub trait Router: Send + Sync {
    /// Routes a request head.
    fn route<'s, 'r>(
        &self,
        snapshot: &'s Snapshot,
        request: &RouteRequest<'r>,
    ) -> Result<Plan<'s, 'r>, Refused>;

    /// Finishes a decision that needed the body's `model` (`None` when the
    /// body has no string `model` field).
    fn resolve_model<'s>(
        &self,
        snapshot: &'s Snapshot,
        pending: PendingModel<'s, '_>,
        model: Option<&str>,
    ) -> Result<Decision<'s>, Refused>;

    /// Both phases at once, for callers that already have the model.
    fn route_with_model<'s>(
        &self,
        snapshot: &'s Snapshot,
        request: &RouteRequest<'_>,
        model: Option<&str>,
    ) -> Result<Decision<'s>, Refused> {
        match self.route(snapshot, request)? {
            Plan::Ready(decision) => Ok(decision),
            Plan::NeedsModel(pending) => self.resolve_model(snapshot, pending, model),
        }
    }
}

/// The product's routing rules (see the module documentation and
/// README's routing section).
#[derive(Debug, Clone, Copy, Default)]
pub struct SnapshotRouter;

/// What the router needs to know of a request.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'r> {
    /// The calling VM, as the caller resolver found it (`None`: unknown).
    pub caller: Option<VmId>,
    /// The `Host` header (or HTTP/2 `:authority`); empty when absent.
    pub host: &'r str,
    /// The request method.
    pub method: &'r Method,
    /// The request target in origin form: path and optional query.
    pub target: &'r str,
    /// The request carries `anthropic-version` or `x-api-key`, as
    /// Anthropic clients do: model lists answer in Anthropic's shape and
    /// errors in Anthropic's dialect where the path does not decide.
    pub anthropic_client: bool,
}

impl<'r> RouteRequest<'r> {
    /// A request from `caller` with no Anthropic client headers.
    pub fn new(caller: Option<VmId>, host: &'r str, method: &'r Method, target: &'r str) -> Self {
        RouteRequest {
            caller,
            host,
            method,
            target,
            anthropic_client: false,
        }
    }

    /// Marks the request as coming from an Anthropic client.
    #[must_use]
    pub fn with_anthropic_client(mut self, yes: bool) -> Self {
        self.anthropic_client = yes;
        self
    }
}

/// The first phase's answer.
#[derive(Debug)]
pub enum Plan<'s, 'r> {
    /// The decision is complete.
    Ready(Decision<'s>),
    /// The provider depends on the body's `model`: read it, then call
    /// [`Router::resolve_model`].
    NeedsModel(PendingModel<'s, 'r>),
}

/// A generic route waiting for its model.
#[derive(Debug, Clone, Copy)]
pub struct PendingModel<'s, 'r> {
    integration: &'s IntegrationConfig,
    settings: &'s LlmSettings,
    path: &'r str,
    query: Option<&'r str>,
    family: ApiFamily,
    dialect: Dialect,
}

impl PendingModel<'_, '_> {
    /// The dialect errors on this route answer in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The integration the request reached.
    pub fn integration(&self) -> &IntegrationConfig {
        self.integration
    }
}

/// Which API shape a generic endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiFamily {
    /// `/v1/messages`, `/v1/messages/count_tokens`, `/v1/complete`.
    Anthropic,
    /// `/v1/chat/completions`, `/v1/responses`, `/v1/embeddings`, …
    OpenAi,
}

impl ApiFamily {
    fn providers(self) -> ProviderSet {
        Provider::ALL
            .into_iter()
            .filter(|p| self.serves(*p))
            .collect()
    }

    fn serves(self, provider: Provider) -> bool {
        match self {
            ApiFamily::Anthropic => matches!(provider, Provider::Anthropic | Provider::Fireworks),
            ApiFamily::OpenAi => matches!(provider, Provider::OpenAi | Provider::Fireworks),
        }
    }
}

/// Generic endpoints whose provider is chosen by the body's `model`.
fn model_endpoint(path: &str) -> Option<ApiFamily> {
    match path {
        "/v1/messages" | "/v1/messages/count_tokens" | "/v1/complete" => Some(ApiFamily::Anthropic),
        "/v1/chat/completions"
        | "/v1/completions"
        | "/v1/responses"
        | "/v1/responses/compact"
        | "/v1/responses/input_tokens"
        | "/v1/embeddings"
        | "/v1/moderations"
        | "/v1/images/generations"
        | "/v1/audio/speech" => Some(ApiFamily::OpenAi),
        _ => None,
    }
}

fn is_anthropic_api_path(path: &str) -> bool {
    path == "/v1/messages" || path.starts_with("/v1/messages/") || path == "/v1/complete"
}

/// The dialect of errors on `path`, decided from the path alone (and the
/// client's headers where the path is shared by both families).
pub fn dialect_for(path: &str, anthropic_client: bool) -> Dialect {
    if path.starts_with("/anthropic/") || path == "/anthropic" || is_anthropic_api_path(path) {
        return Dialect::Anthropic;
    }
    if let Some(rest) = path.strip_prefix("/fireworks/inference") {
        return if is_anthropic_api_path(rest) {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        };
    }
    if path.starts_with("/openai/") || model_endpoint(path) == Some(ApiFamily::OpenAi) {
        return Dialect::OpenAi;
    }
    if anthropic_client {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    }
}

/// What the data plane must do.
#[derive(Debug)]
#[non_exhaustive]
pub enum Decision<'s> {
    /// Forward to a provider.
    Forward(Forward<'s>),
    /// Answer a model list merged across providers.
    ListModels(ModelListing<'s>),
    /// Answer a reflection path.
    Reflection(ReflectionRoute<'s>),
    /// Answer a liveness probe (`HEAD /`, `GET /`) at once.
    Liveness,
    /// Answer `OPTIONS` itself (204 with `Allow`): never forwarded.
    Options {
        /// The methods the route takes.
        allow: &'static str,
    },
    /// Answer Anthropic's `POST /v1/messages/count_tokens` with an
    /// estimate: the model is served by a provider without that endpoint
    /// (OpenAI, or Fireworks, whose Anthropic-compatible layer does not
    /// document it), and the integration translates.
    CountTokens(TokenCount<'s>),
}

/// A token count to estimate (see [`Decision::CountTokens`]).
#[derive(Debug)]
pub struct TokenCount<'s> {
    /// The integration the request reached.
    pub integration: &'s IntegrationConfig,
    /// The provider serving the model.
    pub provider: Provider,
    /// The model, as the provider names it (`provider/` prefix removed).
    pub model: String,
    /// The dialect of errors (Anthropic's).
    pub dialect: Dialect,
}

/// A request to forward.
#[derive(Debug)]
pub struct Forward<'s> {
    /// The integration the request reached.
    pub integration: &'s IntegrationConfig,
    /// The provider to forward to.
    pub provider: Provider,
    /// Its source: which credential to inject, and whether to meter.
    pub source: &'s Source,
    /// Path and query to request under the provider's base URL. Always
    /// starts with the provider's upstream prefix and `/v1`.
    pub upstream_path: String,
    /// The model to put in the body, when it differs from the client's
    /// (an explicit `provider/` prefix was stripped).
    pub upstream_model: Option<String>,
    /// The dialect of errors the gateway generates on this route (the
    /// client's, also when the request is translated).
    pub dialect: Dialect,
    /// The protocol translation the request takes ([`Translation::None`]
    /// when the client speaks the provider's API).
    pub translation: Translation,
}

/// Which list shape to answer `/v1/models` in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelsShape {
    /// `{"object":"list","data":[{"id","object":"model","created","owned_by"}]}`.
    OpenAi,
    /// `{"data":[{"type":"model","id","display_name","created_at"}],"has_more","first_id","last_id"}`.
    Anthropic,
}

/// A model list to answer.
#[derive(Debug)]
pub struct ModelListing<'s> {
    /// The integration the request reached.
    pub integration: &'s IntegrationConfig,
    /// Its provider settings.
    pub settings: &'s LlmSettings,
    /// The providers to list (all enabled ones, or the forced one).
    pub providers: ProviderSet,
    /// The shape to answer in.
    pub shape: ModelsShape,
    /// The dialect of errors.
    pub dialect: Dialect,
}

/// A reflection path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReflectionPath {
    /// `/`: the list of available paths.
    Index,
    /// One field's path.
    Field(ReflectionField),
}

/// A reflection request.
#[derive(Debug)]
pub struct ReflectionRoute<'s> {
    /// The reflection integration.
    pub integration: &'s IntegrationConfig,
    /// Its settings (which fields are exposed).
    pub settings: ReflectionSettings,
    /// The VM asking about itself.
    pub vm: &'s Vm,
    /// What it asks.
    pub path: ReflectionPath,
}

/// A refusal and the dialect to answer it in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", refusal.message())]
pub struct Refused {
    /// Why.
    pub refusal: Refusal,
    /// The error dialect of the route.
    pub dialect: Dialect,
}

impl Refused {
    /// The HTTP status to answer with.
    pub fn status(&self) -> http::StatusCode {
        self.refusal.class().status()
    }

    /// The JSON error body, in the route's dialect.
    pub fn body(&self) -> String {
        error_body(
            self.dialect,
            self.refusal.class(),
            self.refusal.code(),
            &self.refusal.message(),
        )
    }
}

/// Why a request was refused.
///
/// The first four are distinct for logs but answer identically, so that a
/// VM cannot learn whether another owner's integration exists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The `Host` is not `NAME.int.DOMAIN` or `NAME.team.DOMAIN`.
    UnknownHost,
    /// The `Host` names the gateway by address (an IP literal or
    /// `localhost`), as a client does without DNS for the domain. An
    /// address names no integration, so the answer may say how to name one.
    HostIsAddress {
        /// The host as the request named it (`127.0.0.1:7700`).
        host: String,
        /// The integration domain.
        domain: String,
    },
    /// The connection does not come from a known VM.
    UnknownCaller,
    /// The caller's owner (or team) has no integration of that name.
    UnknownIntegration,
    /// The integration exists in the caller's scope but is not attached to it.
    NotAttached,
    /// The path breaks a normalisation rule.
    BadPath(PathError),
    /// No such route on this integration.
    NoSuchRoute,
    /// The route exists, not with this method.
    MethodNotAllowed {
        /// The allowed methods.
        allowed: &'static str,
    },
    /// The provider is disabled on this integration.
    ProviderDisabled {
        /// The provider.
        provider: Provider,
        /// The integration.
        integration: IntegrationName,
    },
    /// The body has no string `model`.
    MissingModel,
    /// The model is empty, too long or has control characters.
    MalformedModel,
    /// No enabled provider serves the model.
    UnknownModel {
        /// The model as sent.
        model: String,
        /// The integration.
        integration: IntegrationName,
    },
    /// The model's provider does not serve this endpoint.
    WrongEndpoint {
        /// The model as sent.
        model: String,
        /// Its provider.
        provider: Provider,
        /// Where to send it instead.
        hint: &'static str,
        /// The integration, when protocol translation (off there) would
        /// have served the request.
        translation_off: Option<IntegrationName>,
    },
    /// A reflection field this integration does not expose.
    FieldHidden,
    /// The endpoint is not on the inference surface, and the source is the
    /// platform's shared key ([`crate::surface`]).
    NeedsOwnKey {
        /// The provider.
        provider: Provider,
        /// The integration.
        integration: IntegrationName,
        /// The request's method.
        method: String,
        /// The API path asked for.
        path: String,
    },
}

const NOT_FOUND_HOST: &str = "no integration at this hostname is available to this VM; \
`integrations list` shows your integrations and `integrations attach NAME vm:VM` attaches one";

impl Refusal {
    /// The class of error (status and `type`).
    pub fn class(&self) -> ErrorClass {
        match self {
            Refusal::UnknownHost
            | Refusal::HostIsAddress { .. }
            | Refusal::UnknownCaller
            | Refusal::UnknownIntegration
            | Refusal::NotAttached
            | Refusal::NoSuchRoute
            | Refusal::ProviderDisabled { .. }
            | Refusal::UnknownModel { .. }
            | Refusal::FieldHidden => ErrorClass::NotFound,
            Refusal::BadPath(_)
            | Refusal::MissingModel
            | Refusal::MalformedModel
            | Refusal::WrongEndpoint { .. } => ErrorClass::InvalidRequest,
            Refusal::MethodNotAllowed { .. } => ErrorClass::MethodNotAllowed,
            Refusal::NeedsOwnKey { .. } => ErrorClass::Permission,
        }
    }

    /// A machine-readable reason (OpenAI's `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownHost
            | Refusal::HostIsAddress { .. }
            | Refusal::UnknownCaller
            | Refusal::UnknownIntegration
            | Refusal::NotAttached => "integration_not_found",
            Refusal::BadPath(_) => "invalid_path",
            Refusal::NoSuchRoute | Refusal::FieldHidden => "route_not_found",
            Refusal::MethodNotAllowed { .. } => "method_not_allowed",
            Refusal::ProviderDisabled { .. } => "provider_disabled",
            Refusal::MissingModel | Refusal::MalformedModel => "invalid_model",
            Refusal::UnknownModel { .. } => "model_not_found",
            Refusal::WrongEndpoint { .. } => "unsupported_endpoint",
            Refusal::NeedsOwnKey { .. } => "needs_own_key",
        }
    }

    /// What a person reads: the problem and the fix.
    pub fn message(&self) -> String {
        match self {
            Refusal::UnknownHost | Refusal::UnknownCaller | Refusal::UnknownIntegration | Refusal::NotAttached => {
                NOT_FOUND_HOST.to_owned()
            }
            Refusal::HostIsAddress { host, domain } => host_is_address(host, domain),
            Refusal::BadPath(e) => format!("invalid request path: {e}"),
            Refusal::NoSuchRoute => {
                "no such route; LLM integrations serve /v1/..., /anthropic/v1/..., /openai/v1/... and /fireworks/inference/v1/...".to_owned()
            }
            Refusal::FieldHidden => "no such path; GET / lists the paths this integration exposes".to_owned(),
            Refusal::MethodNotAllowed { allowed } => format!("method not allowed here; use {allowed}"),
            Refusal::ProviderDisabled { provider, integration } => format!(
                "provider {provider} is disabled on integration {integration}; enable it with \
`integrations edit {integration} --{provider}=gateway` (or =byok)"
            ),
            Refusal::MissingModel => {
                "the request body must be a JSON object with a string \"model\" field; GET /v1/models lists the models".to_owned()
            }
            Refusal::MalformedModel => "the \"model\" field is empty, longer than 256 bytes or has control characters".to_owned(),
            Refusal::UnknownModel { model, integration } => format!(
                "model {model:?} is not served by any enabled provider of integration {integration}; \
GET /v1/models lists the available models"
            ),
            Refusal::WrongEndpoint { model, provider, hint, translation_off: None } => {
                format!("model {model:?} is served by provider {provider}, which does not serve this endpoint; {hint}")
            }
            Refusal::WrongEndpoint { model, provider, hint, translation_off: Some(integration) } => format!(
                "model {model:?} is served by provider {provider}, which does not serve this endpoint, and protocol translation \
is off for integration {integration}: turn it on (`integrations edit {integration} --translate=on`), or {hint}"
            ),
            Refusal::NeedsOwnKey { provider, integration, method, path } => format!(
                "{method} {path} is not served with the platform's shared {provider} key (only the inference surface is); \
this endpoint needs your own API key: `integrations edit {integration} --{provider}=byok --{provider}-key=-`"
            ),
        }
    }
}

/// The message for a request that named the gateway by address: the
/// address, how integrations are named, and a command that names one.
fn host_is_address(host: &str, domain: &str) -> String {
    let (address, port) = gateway_address(host).unwrap_or((host, None));
    let ip = if address.eq_ignore_ascii_case("localhost") {
        "127.0.0.1".to_owned()
    } else if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_owned()
    };
    let example = format!("llm.int.{domain}");
    let authority = match port {
        Some(port) => format!("{example}:{port}"),
        None => example.clone(),
    };
    format!(
        "this request named the gateway by its address ({host}), not by an integration's hostname; \
integrations are reached at NAME.int.{domain} (yours) or NAME.team.{domain} (your team's), e.g. \
`curl --resolve {example}:{}:{ip} http://{authority}/v1/models` where DNS does not resolve them, \
or the gateway can be started with `--default-host {example}` to serve that integration at its address",
        port.unwrap_or("80")
    )
}

fn enabled_providers(settings: &LlmSettings) -> ProviderSet {
    Provider::ALL
        .into_iter()
        .filter(|p| settings.source(*p).is_enabled())
        .collect()
}

/// The providers of `settings` on a custom endpoint, whose own model lists
/// replace the providers' in the catalog.
fn custom_providers(settings: &LlmSettings) -> ProviderSet {
    Provider::ALL
        .into_iter()
        .filter(|p| matches!(settings.source(*p), Source::Custom { .. }))
        .collect()
}

fn upstream(provider: Provider, path: &str, query: Option<&str>) -> String {
    let prefix = provider.upstream_prefix();
    let mut out =
        String::with_capacity(prefix.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    out.push_str(prefix);
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

const GET_ONLY: &str = "GET";

/// `forward`, unless its source is the platform's shared key and the
/// request is not on the inference surface ([`crate::surface`]).
fn guarded<'s>(forward: Forward<'s>, method: &Method) -> Result<Forward<'s>, Refusal> {
    if !matches!(forward.source, Source::Gateway) {
        return Ok(forward);
    }
    let path = forward.upstream_path.split('?').next().unwrap_or("");
    let api = path
        .strip_prefix(forward.provider.upstream_prefix())
        .unwrap_or(path);
    if crate::surface::is_inference(forward.provider, method, api) {
        return Ok(forward);
    }
    Err(Refusal::NeedsOwnKey {
        provider: forward.provider,
        integration: forward.integration.name.clone(),
        method: method.as_str().to_owned(),
        path: api.to_owned(),
    })
}

impl Snapshot {
    fn not_found_reason(&self, entry: &VmEntry, target: &HostTarget<'_>) -> Refusal {
        let owner = match target.scope {
            Scope::Personal => Some(Owner::User(entry.vm.owner)),
            Scope::Team => entry.vm.team.map(Owner::Team),
        };
        match owner.and_then(|o| self.integration_named(o, &target.name)) {
            Some(_) => Refusal::NotAttached,
            None => Refusal::UnknownIntegration,
        }
    }

    fn route_llm<'s, 'r>(
        &'s self,
        integration: &'s IntegrationConfig,
        settings: &'s LlmSettings,
        request: &RouteRequest<'r>,
        path: &'r str,
        query: Option<&'r str>,
        dialect: Dialect,
    ) -> Result<Plan<'s, 'r>, Refusal> {
        let method = request.method;
        if method == Method::OPTIONS {
            return Ok(Plan::Ready(Decision::Options {
                allow: "GET, HEAD, POST, OPTIONS",
            }));
        }
        let disabled = |provider| Refusal::ProviderDisabled {
            provider,
            integration: integration.name.clone(),
        };
        match classify_path(path).map_err(Refusal::BadPath)? {
            PathRoute::Root if method == Method::GET || method == Method::HEAD => {
                Ok(Plan::Ready(Decision::Liveness))
            }
            PathRoute::Root => Err(Refusal::MethodNotAllowed {
                allowed: "GET or HEAD",
            }),
            PathRoute::Other => Err(Refusal::NoSuchRoute),
            PathRoute::Prefixed { provider, rest } => {
                let source = settings.source(provider);
                if !source.is_enabled() {
                    return Err(disabled(provider));
                }
                if method == Method::GET && (rest == "/v1/models" || rest == "/v1/models/") {
                    let shape = if provider == Provider::Anthropic {
                        ModelsShape::Anthropic
                    } else {
                        ModelsShape::OpenAi
                    };
                    return Ok(Plan::Ready(Decision::ListModels(ModelListing {
                        integration,
                        settings,
                        providers: ProviderSet::one(provider),
                        shape,
                        dialect,
                    })));
                }
                guarded(
                    Forward {
                        integration,
                        provider,
                        source,
                        upstream_path: upstream(provider, rest, query),
                        upstream_model: None,
                        dialect,
                        translation: Translation::None,
                    },
                    method,
                )
                .map(|f| Plan::Ready(Decision::Forward(f)))
            }
            PathRoute::Generic => {
                if path == "/v1/models" || path == "/v1/models/" {
                    if method != Method::GET && method != Method::HEAD {
                        return Err(Refusal::MethodNotAllowed { allowed: GET_ONLY });
                    }
                    let shape = if request.anthropic_client {
                        ModelsShape::Anthropic
                    } else {
                        ModelsShape::OpenAi
                    };
                    return Ok(Plan::Ready(Decision::ListModels(ModelListing {
                        integration,
                        settings,
                        providers: enabled_providers(settings),
                        shape,
                        dialect,
                    })));
                }
                if let Some(id) = path.strip_prefix("/v1/models/") {
                    let route = route_model(
                        id,
                        &self
                            .catalog
                            .scope(integration.id, custom_providers(settings)),
                        enabled_providers(settings),
                    )
                    .map_err(|e| model_refusal(e, id, integration))?;
                    let upstream_path = match &route.upstream_model {
                        Some(m) => upstream(route.provider, &format!("/v1/models/{m}"), query),
                        None => upstream(route.provider, path, query),
                    };
                    return guarded(
                        Forward {
                            integration,
                            provider: route.provider,
                            source: settings.source(route.provider),
                            upstream_path,
                            upstream_model: None,
                            dialect,
                            translation: Translation::None,
                        },
                        method,
                    )
                    .map(|f| Plan::Ready(Decision::Forward(f)));
                }
                if let Some(family) = model_endpoint(path) {
                    if method == Method::POST {
                        return Ok(Plan::NeedsModel(PendingModel {
                            integration,
                            settings,
                            path,
                            query,
                            family,
                            dialect,
                        }));
                    }
                }
                // No model to route on: the path's family, else the client's.
                let provider = if is_anthropic_api_path(path) || request.anthropic_client {
                    Provider::Anthropic
                } else {
                    Provider::OpenAi
                };
                let source = settings.source(provider);
                if !source.is_enabled() {
                    return Err(disabled(provider));
                }
                guarded(
                    Forward {
                        integration,
                        provider,
                        source,
                        upstream_path: upstream(provider, path, query),
                        upstream_model: None,
                        dialect,
                        translation: Translation::None,
                    },
                    method,
                )
                .map(|f| Plan::Ready(Decision::Forward(f)))
            }
        }
    }
}

/// The translation a request of `path` takes to `provider` (whose API
/// family does not serve the path): [`Translation::None`] when the
/// integration does not translate or the path has no counterpart (the
/// request is then refused with the endpoint to use).
///
/// Fireworks never needs one here: it serves both families natively (its
/// Anthropic-compatible `/inference/v1/messages` takes Anthropic clients
/// as they are, which keeps every member and costs no translation).
fn translation_for(
    settings: &LlmSettings,
    path: &str,
    provider: Provider,
    source: &Source,
) -> Translation {
    if !settings.translate {
        return Translation::None;
    }
    match (path, provider) {
        // A ChatGPT subscription serves the Responses API only.
        ("/v1/messages", Provider::OpenAi) if matches!(source, Source::Chatgpt { .. }) => {
            Translation::MessagesToResponses(Target::OpenAi)
        }
        ("/v1/messages", Provider::OpenAi) => Translation::MessagesToChat(Target::OpenAi),
        ("/v1/messages", Provider::Fireworks) => Translation::MessagesToChat(Target::Fireworks),
        ("/v1/chat/completions", Provider::Anthropic) => Translation::ChatToMessages,
        ("/v1/responses", Provider::Anthropic) => Translation::ResponsesToMessages,
        _ => Translation::None,
    }
}

fn model_refusal(error: ModelError, model: &str, integration: &IntegrationConfig) -> Refusal {
    match error {
        ModelError::Disabled { provider, .. } => Refusal::ProviderDisabled {
            provider,
            integration: integration.name.clone(),
        },
        ModelError::Malformed => Refusal::MalformedModel,
        _ => Refusal::UnknownModel {
            model: model.to_owned(),
            integration: integration.name.clone(),
        },
    }
}

fn route_reflection<'s, 'r>(
    integration: &'s IntegrationConfig,
    settings: &ReflectionSettings,
    vm: &'s Vm,
    method: &Method,
    path: &str,
) -> Result<Plan<'s, 'r>, Refusal> {
    check_path(path).map_err(Refusal::BadPath)?;
    if method == Method::OPTIONS {
        return Ok(Plan::Ready(Decision::Options {
            allow: "GET, HEAD, OPTIONS",
        }));
    }
    let path = match path {
        "/" => ReflectionPath::Index,
        other => {
            let name = other.trim_start_matches('/');
            match ReflectionField::ALL
                .into_iter()
                .find(|f| f.as_str() == name)
            {
                Some(field) if settings.fields.contains(field) => ReflectionPath::Field(field),
                Some(_) => return Err(Refusal::FieldHidden),
                None => return Err(Refusal::NoSuchRoute),
            }
        }
    };
    if method != Method::GET && method != Method::HEAD {
        return Err(Refusal::MethodNotAllowed { allowed: GET_ONLY });
    }
    Ok(Plan::Ready(Decision::Reflection(ReflectionRoute {
        integration,
        settings: *settings,
        vm,
        path,
    })))
}

impl Router for SnapshotRouter {
    fn route<'s, 'r>(
        &self,
        snapshot: &'s Snapshot,
        request: &RouteRequest<'r>,
    ) -> Result<Plan<'s, 'r>, Refused> {
        snapshot.route(request)
    }

    fn resolve_model<'s>(
        &self,
        snapshot: &'s Snapshot,
        pending: PendingModel<'s, '_>,
        model: Option<&str>,
    ) -> Result<Decision<'s>, Refused> {
        snapshot.resolve_model(pending, model)
    }
}

impl Snapshot {
    /// Routes a request head with the product's rules ([`SnapshotRouter`]).
    pub fn route<'s, 'r>(&'s self, request: &RouteRequest<'r>) -> Result<Plan<'s, 'r>, Refused> {
        let (path, query) = split_target(request.target);
        let dialect = dialect_for(path, request.anthropic_client);
        let refuse = |refusal| Refused { refusal, dialect };
        let target = parse_host(request.host, &self.indexed.domain).ok_or_else(|| {
            refuse(match gateway_address(request.host) {
                Some(_) => Refusal::HostIsAddress {
                    host: request.host.to_owned(),
                    domain: self.indexed.domain.to_string(),
                },
                None => Refusal::UnknownHost,
            })
        })?;
        let entry = request
            .caller
            .and_then(|id| self.indexed.vms.get(&id))
            .ok_or_else(|| refuse(Refusal::UnknownCaller))?;
        let index = match target.scope {
            Scope::Personal => entry.personal.get(target.name.as_ref()),
            Scope::Team => entry.team.get(target.name.as_ref()),
        };
        let Some(&index) = index else {
            return Err(refuse(self.not_found_reason(entry, &target)));
        };
        let integration = &self.indexed.integrations[index as usize];
        match &integration.kind {
            IntegrationKind::Llm(settings) => self
                .route_llm(integration, settings, request, path, query, dialect)
                .map_err(refuse),
            IntegrationKind::Reflection(settings) => {
                route_reflection(integration, settings, &entry.vm, request.method, path)
                    .map_err(refuse)
            }
        }
    }

    /// Finishes a decision that needed the body's `model`.
    pub fn resolve_model<'s>(
        &'s self,
        pending: PendingModel<'s, '_>,
        model: Option<&str>,
    ) -> Result<Decision<'s>, Refused> {
        let refuse = |refusal| Refused {
            refusal,
            dialect: pending.dialect,
        };
        let model = model.ok_or_else(|| refuse(Refusal::MissingModel))?;
        let route = route_model_for(
            model,
            &self
                .catalog
                .scope(pending.integration.id, custom_providers(pending.settings)),
            enabled_providers(pending.settings),
            pending.family.providers(),
        )
        .map_err(|e| refuse(model_refusal(e, model, pending.integration)))?;
        let upstream_model = || route.upstream_model.as_deref().unwrap_or(model).to_owned();
        if pending.settings.translate
            && pending.path == "/v1/messages/count_tokens"
            && matches!(route.provider, Provider::OpenAi | Provider::Fireworks)
        {
            return Ok(Decision::CountTokens(TokenCount {
                integration: pending.integration,
                provider: route.provider,
                model: upstream_model(),
                dialect: pending.dialect,
            }));
        }
        let source = pending.settings.source(route.provider);
        let translation = if pending.family.serves(route.provider) {
            Translation::None
        } else {
            translation_for(pending.settings, pending.path, route.provider, source)
        };
        if let Some(api_path) = translation.upstream_api_path() {
            return guarded(
                Forward {
                    integration: pending.integration,
                    provider: route.provider,
                    source,
                    // The client's query (`?beta=true`) is its API's, not
                    // the upstream's.
                    upstream_path: upstream(route.provider, api_path, None),
                    upstream_model: route.upstream_model.map(|m| m.into_owned()),
                    dialect: pending.dialect,
                    translation,
                },
                &Method::POST,
            )
            .map(Decision::Forward)
            .map_err(refuse);
        }
        if !pending.family.serves(route.provider) {
            let hint = match pending.family {
                ApiFamily::Anthropic => {
                    "use /v1/chat/completions or /v1/responses for OpenAI models"
                }
                ApiFamily::OpenAi => "use /v1/messages for Anthropic models",
            };
            // Translation on would serve it (or, for `count_tokens`,
            // estimate it): the refusal says so.
            let translatable = !pending.settings.translate && {
                let on = LlmSettings {
                    translate: true,
                    ..pending.settings.clone()
                };
                pending.path == "/v1/messages/count_tokens"
                    || translation_for(&on, pending.path, route.provider, source).is_some()
            };
            return Err(refuse(Refusal::WrongEndpoint {
                model: model.to_owned(),
                provider: route.provider,
                hint,
                translation_off: translatable.then(|| pending.integration.name.clone()),
            }));
        }
        guarded(
            Forward {
                integration: pending.integration,
                provider: route.provider,
                source: pending.settings.source(route.provider),
                upstream_path: upstream(route.provider, pending.path, pending.query),
                upstream_model: route.upstream_model.map(|m| m.into_owned()),
                dialect: pending.dialect,
                translation: Translation::None,
            },
            &Method::POST,
        )
        .map(Decision::Forward)
        .map_err(refuse)
    }

    /// Both phases at once, for callers that already have the model.
    pub fn route_with_model<'s>(
        &'s self,
        request: &RouteRequest<'_>,
        model: Option<&str>,
    ) -> Result<Decision<'s>, Refused> {
        match self.route(request)? {
            Plan::Ready(decision) => Ok(decision),
            Plan::NeedsModel(pending) => self.resolve_model(pending, model),
        }
    }
}
