//! `GET /v1/models`: each enabled provider's list fetched with the source's
//! credential and cached for a bounded time, one fetch per list at a time;
//! merged and shaped by the core ([`llm_integration_core::model_list`]).
//! A provider whose list fails is reported in the answer, not fatal.
//!
//! The same lists, fetched with the platform's gateway keys, fill the
//! snapshot's model catalog ([`ModelLists::gateway_catalog`]), so that a
//! model a provider lists routes to it by exact match.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, Request};
use http_body_util::{BodyExt, Either, Full};
use llm_integration_core::endpoint::EndpointUrl;
use llm_integration_core::model_list::{self, ModelEntry, MAX_PAGES};
use llm_integration_core::redact::Redactor;
use llm_integration_core::seams::{Credential, CredentialResolver};
use llm_integration_core::upstream::UpstreamTargets;
use llm_integration_core::{
    AccountName, CredentialId, CredentialRef, EndpointAuth, IntegrationKind, ModelCatalog,
    ModelListing, ModelsShape, Owner, Provider, ProviderSource, Snapshot, Source,
};
use secrecy::ExposeSecret;

use super::UpstreamClient;
use crate::endpoints::EndpointClient;

/// The ChatGPT backend's catalog is asked for as this Codex version.
const CHATGPT_CLIENT_VERSION: &str = crate::chatgpt::CLIENT_VERSION;

/// Time allowed for one list request (head and body each).
const LIST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    Gateway(Provider),
    ApiKey(CredentialId),
    ChatGpt(Owner, AccountName),
    /// A custom endpoint: its URL and credential (a change of either is a
    /// new list).
    Endpoint(Provider, EndpointUrl, Option<CredentialId>),
}

/// A provider's list (or why it could not be read) and when it was fetched.
type Cached = (Instant, Result<Arc<Vec<ModelEntry>>, String>);

/// How long a failed list is remembered: requests in a burst get the same
/// answer instead of each asking the upstream again.
const FAILURE_TTL: Duration = Duration::from_secs(10);

/// What fetching a list needs.
#[derive(Clone, Copy)]
pub struct ListContext<'a> {
    /// The upstream client.
    pub client: &'a UpstreamClient,
    /// Custom endpoints' client.
    pub endpoint_client: &'a EndpointClient,
    /// Where each source's requests go.
    pub targets: &'a UpstreamTargets,
    /// The credentials.
    pub credentials: &'a dyn CredentialResolver,
    /// The configuration whose custom endpoints' lists join the catalog.
    pub snapshot: Option<&'a Snapshot>,
}

/// Cached model lists.
pub struct ModelLists {
    ttl: Duration,
    cache: Mutex<HashMap<CacheKey, Cached>>,
    /// One fetch per list at a time: the others wait for its answer.
    fetching: Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl ModelLists {
    /// Lists cached for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        ModelLists {
            ttl,
            cache: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &CacheKey) -> Option<Result<Arc<Vec<ModelEntry>>, String>> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|(at, list)| at.elapsed() < if list.is_ok() { self.ttl } else { FAILURE_TTL })
            .map(|(_, list)| list.clone())
    }

    fn store(&self, key: CacheKey, list: Result<Arc<Vec<ModelEntry>>, String>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (Instant::now(), list));
        }
    }

    /// The list of `provider` on `source`, from the cache or the upstream.
    async fn list(
        &self,
        ctx: ListContext<'_>,
        owner: Owner,
        provider: Provider,
        source: &Source,
    ) -> Result<Arc<Vec<ModelEntry>>, String> {
        let key = match source {
            Source::Gateway => CacheKey::Gateway(provider),
            Source::Byok { credential, .. } => CacheKey::ApiKey(*credential),
            Source::Chatgpt { account } => CacheKey::ChatGpt(owner, account.clone()),
            Source::Custom { url, auth } => {
                CacheKey::Endpoint(provider, url.clone(), auth.credential())
            }
            Source::Disabled => return Err("the provider is disabled".into()),
        };
        if let Some(list) = self.cached(&key) {
            return list;
        }
        let gate = self
            .fetching
            .lock()
            .map(|mut f| f.entry(key.clone()).or_default().clone())
            .map_err(|_| "the model list cache is unavailable".to_owned())?;
        let _turn = gate.lock().await;
        if let Some(list) = self.cached(&key) {
            return list;
        }
        let reference = source
            .credential(provider)
            .ok_or("the provider is disabled")?;
        let list = fetch(ctx, owner, provider, source, reference)
            .await
            .map(Arc::new);
        self.store(key, list.clone());
        list
    }

    /// The merged answer for `listing`, as JSON text.
    pub async fn answer(&self, ctx: ListContext<'_>, listing: &ModelListing<'_>) -> String {
        let owner = listing.integration.owner;
        let mut lists = Vec::new();
        let mut failed = Vec::new();
        for provider in listing.providers.iter() {
            if listing.shape == ModelsShape::Anthropic
                && provider == Provider::OpenAi
                && !listing.settings.translate
            {
                // Without translation, an Anthropic client cannot call
                // OpenAI's models.
                continue;
            }
            let source = listing.settings.source(provider);
            match self.list(ctx, owner, provider, source).await {
                Ok(list) => lists.push((provider, list)),
                Err(message) => {
                    tracing::warn!(%provider, %message, "model list unavailable");
                    failed.push((provider, message));
                }
            }
        }
        let lists: Vec<(Provider, &[ModelEntry])> =
            lists.iter().map(|(p, l)| (*p, l.as_slice())).collect();
        model_list::render(listing.shape, &lists, &failed)
    }

    /// The models each provider lists for the platform's gateway keys, as
    /// a routing catalog. A provider whose list cannot be read keeps its
    /// entries from `previous` (the last good list).
    pub async fn gateway_catalog(
        &self,
        ctx: ListContext<'_>,
        previous: &ModelCatalog,
    ) -> ModelCatalog {
        let mut catalog = ModelCatalog::new();
        for provider in Provider::ALL {
            // The owner does not matter for the platform's own key.
            let owner = Owner::User(llm_integration_core::UserId(0));
            match self.list(ctx, owner, provider, &Source::Gateway).await {
                Ok(list) => catalog.extend(provider, list.iter().map(|m| m.id.as_str())),
                Err(message) => {
                    tracing::debug!(%provider, %message, "model catalog not refreshed; keeping the last good list");
                    catalog.extend(provider, previous.models_of(provider));
                }
            }
        }
        self.endpoint_catalog(ctx, previous, &mut catalog).await;
        catalog
    }

    /// Adds to `catalog` the lists of the custom endpoints of the live
    /// configuration's integrations (in the snapshot `ctx.snapshot`); an
    /// endpoint whose list cannot be read keeps its entries from
    /// `previous`.
    async fn endpoint_catalog(
        &self,
        ctx: ListContext<'_>,
        previous: &ModelCatalog,
        catalog: &mut ModelCatalog,
    ) {
        use futures_util::StreamExt;
        let Some(snapshot) = ctx.snapshot else {
            return;
        };
        let endpoints: Vec<_> = snapshot
            .integrations()
            .iter()
            .filter_map(|i| match &i.kind {
                IntegrationKind::Llm(settings) => Some((i, settings)),
                IntegrationKind::Reflection(_) => None,
            })
            .flat_map(|(i, settings)| {
                Provider::ALL
                    .into_iter()
                    .filter(|p| matches!(settings.source(*p), Source::Custom { .. }))
                    .map(move |p| (i, p, settings.source(p)))
            })
            .collect();
        // Endpoints are the tenants' servers: a slow one must not hold the
        // others (or the gateway's catalog) back, so they are read a few
        // at a time, within one deadline; what is not read in time keeps
        // its last good list.
        let mut read = HashMap::new();
        type Fetch<'f> = std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = (
                            (llm_integration_core::IntegrationId, Provider),
                            Result<Arc<Vec<ModelEntry>>, String>,
                        ),
                    > + Send
                    + 'f,
            >,
        >;
        let mut pending: Vec<Fetch<'_>> = Vec::with_capacity(endpoints.len());
        for (i, p, source) in &endpoints {
            let (id, owner, provider, source) = (i.id, i.owner, *p, *source);
            pending.push(Box::pin(async move {
                (
                    (id, provider),
                    self.list(ctx, owner, provider, source).await,
                )
            }));
        }
        let fetches = futures_util::stream::iter(pending).buffer_unordered(ENDPOINT_LISTS_AT_ONCE);
        tokio::pin!(fetches);
        let deadline = tokio::time::sleep(ENDPOINT_LISTS_DEADLINE);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = fetches.next() => match next {
                    Some((key, list)) => { read.insert(key, list); }
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        for (integration, provider, _) in &endpoints {
            match read.get(&(integration.id, *provider)) {
                Some(Ok(list)) => catalog.set_endpoint(
                    integration.id,
                    *provider,
                    list.iter().map(|m| m.id.as_str()),
                ),
                other => {
                    if let Some(Err(message)) = other {
                        tracing::debug!(%provider, integration = %integration.name, %message, "custom endpoint's list not read; keeping the last good one");
                    }
                    if let Some(models) = previous.endpoint_models(integration.id, *provider) {
                        let models: Vec<&str> = models.collect();
                        catalog.set_endpoint(integration.id, *provider, models);
                    }
                }
            }
        }
    }
}

/// The largest page of a provider's own list, in bytes.
const PROVIDER_LIST_BYTES: usize = 16 * 1024 * 1024;

/// The largest page of a custom endpoint's list, in bytes: a tenant's
/// server could answer with millions of entries, each costing the shared
/// gateway memory while the page is read ([`MAX_ENDPOINT_MODELS`] of
/// ordinary IDs take well under this).
const ENDPOINT_LIST_BYTES: usize = 2 * 1024 * 1024;

/// Custom endpoints' lists read at once during a catalog refresh.
const ENDPOINT_LISTS_AT_ONCE: usize = 8;

/// How long a catalog refresh waits for custom endpoints' lists.
const ENDPOINT_LISTS_DEADLINE: Duration = Duration::from_secs(20);

/// The most models kept of one custom endpoint's list (a tenant's server
/// could list millions), and the longest model ID kept.
const MAX_ENDPOINT_MODELS: usize = 10_000;
const MAX_MODEL_ID: usize = 256;

/// Fetches a list from the upstream.
async fn fetch(
    ctx: ListContext<'_>,
    owner: Owner,
    provider: Provider,
    source: &Source,
    reference: CredentialRef<'_>,
) -> Result<Vec<ModelEntry>, String> {
    let chatgpt = matches!(reference, CredentialRef::ChatGpt(_));
    let credential = ctx
        .credentials
        .resolve(owner, provider, reference)
        .await
        .map_err(|e| e.to_string())?;
    let secret = credential.secret.expose_secret();
    // Whatever the upstream says is repeated to the VM (`failed_providers`)
    // and in logs: never with the credential it was sent, should it echo it.
    let redactor = Redactor::new([secret]);
    let list = match source {
        Source::Custom { url, auth } => {
            endpoint_list(ctx.endpoint_client, provider, url, auth, secret).await
        }
        _ => fetch_with(ctx, provider, &credential, chatgpt).await,
    };
    list.map_err(|m| redactor.redact(&m).into_owned())
}

/// A custom endpoint's model list: `GET` its `/v1/models` (under its
/// URL), in `provider`'s list shape, with the endpoint's authentication
/// (`secret` is its token or header value; empty without).
///
/// # Errors
/// What went wrong, for a person (the endpoint's answer quoted; the
/// caller redacts the secret from it).
pub async fn endpoint_list(
    client: &EndpointClient,
    provider: Provider,
    url: &EndpointUrl,
    auth: &EndpointAuth,
    secret: &str,
) -> Result<Vec<ModelEntry>, String> {
    let mut headers = Vec::new();
    let value = |v: String| {
        http::HeaderValue::from_str(&v).map_err(|_| {
            "the list request cannot be built (the credential is not a valid header value)"
                .to_owned()
        })
    };
    match auth {
        EndpointAuth::None => {}
        EndpointAuth::Bearer { .. } => {
            headers.push((
                http::header::AUTHORIZATION,
                value(format!("Bearer {secret}"))?,
            ));
        }
        EndpointAuth::Header { name, .. } => {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a header name"))?;
            headers.push((name, value(secret.to_owned())?));
        }
    }
    if provider == Provider::Anthropic {
        headers.push((
            http::HeaderName::from_static("anthropic-version"),
            http::HeaderValue::from_static("2023-06-01"),
        ));
    }
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let path = model_list::page_url(provider, "", after.as_deref());
        let path = path
            .strip_prefix(provider.upstream_prefix())
            .unwrap_or(&path);
        let (status, body) =
            get_with(client, &url.join(path), &headers, ENDPOINT_LIST_BYTES).await?;
        if (300..400).contains(&status) {
            return Err(format!(
                "HTTP {status}: the endpoint answered a redirect, which the gateway does not follow; give the URL it redirects to"
            ));
        }
        let page = model_list::parse_page(provider, status, &body)?;
        entries.extend(page.models);
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(entries)
}

async fn fetch_with(
    ctx: ListContext<'_>,
    provider: Provider,
    credential: &Credential,
    chatgpt: bool,
) -> Result<Vec<ModelEntry>, String> {
    if chatgpt {
        // The Codex backend's catalog: the models this subscription offers.
        let url = format!(
            "{}/models?client_version={CHATGPT_CLIENT_VERSION}",
            ctx.targets.chatgpt_backend
        );
        let (status, body) = get(ctx.client, &url, Provider::OpenAi, credential).await?;
        return model_list::parse_chatgpt_catalog(status, &body);
    }
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let url = model_list::page_url(provider, &ctx.targets.base[provider], after.as_deref());
        let (status, body) = get(ctx.client, &url, provider, credential).await?;
        let page = model_list::parse_page(provider, status, &body)?;
        entries.extend(
            page.models
                .into_iter()
                .filter(|m| m.id.len() <= MAX_MODEL_ID),
        );
        if entries.len() >= MAX_ENDPOINT_MODELS {
            entries.truncate(MAX_ENDPOINT_MODELS);
            break;
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(entries)
}

/// One authenticated `GET`, within [`LIST_TIMEOUT`].
async fn get(
    client: &UpstreamClient,
    url: &str,
    provider: Provider,
    credential: &Credential,
) -> Result<(u16, bytes::Bytes), String> {
    let secret = credential.secret.expose_secret();
    let invalid = |_| {
        "the list request cannot be built (a credential is not a valid header value)".to_owned()
    };
    let mut headers = match provider {
        Provider::Anthropic => vec![
            (
                http::HeaderName::from_static("x-api-key"),
                http::HeaderValue::from_str(secret).map_err(invalid)?,
            ),
            (
                http::HeaderName::from_static("anthropic-version"),
                http::HeaderValue::from_static("2023-06-01"),
            ),
        ],
        Provider::OpenAi | Provider::Fireworks => vec![(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {secret}")).map_err(invalid)?,
        )],
    };
    if let Some(account) = &credential.account_id {
        headers.push((
            http::HeaderName::from_static("chatgpt-account-id"),
            http::HeaderValue::from_str(account).map_err(invalid)?,
        ));
    }
    get_with(client, url, &headers, PROVIDER_LIST_BYTES).await
}

/// One `GET` with `headers`, within [`LIST_TIMEOUT`].
async fn get_with<C>(
    client: &hyper_util::client::legacy::Client<C, super::UpstreamBody>,
    url: &str,
    headers: &[(http::HeaderName, http::HeaderValue)],
    limit: usize,
) -> Result<(u16, bytes::Bytes), String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header("accept", "application/json")
        .header(
            "user-agent",
            concat!("llm-integration/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        let mut value = value.clone();
        value.set_sensitive(true);
        request = request.header(name, value);
    }
    let request = request
        .body(Either::Left(Full::new(bytes::Bytes::new())))
        .map_err(|_| "the list request cannot be built (the URL is not valid)".to_owned())?;
    let response = tokio::time::timeout(LIST_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("request failed: {}", crate::error_chain(&e)))?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(
        LIST_TIMEOUT,
        http_body_util::Limited::new(response.into_body(), limit).collect(),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| format!("reading the list failed: {e}"))?
    .to_bytes();
    Ok((status, body))
}
