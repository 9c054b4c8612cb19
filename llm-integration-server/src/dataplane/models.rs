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
use llm_integration_core::model_list::{self, ModelEntry, MAX_PAGES};
use llm_integration_core::redact::Redactor;
use llm_integration_core::seams::{Credential, CredentialResolver};
use llm_integration_core::upstream::UpstreamTargets;
use llm_integration_core::{
    AccountName, CredentialId, CredentialRef, ModelCatalog, ModelListing, ModelsShape, Owner,
    Provider, ProviderSource, Source,
};
use secrecy::ExposeSecret;

use super::UpstreamClient;

/// The ChatGPT backend's catalog is asked for as this Codex version.
const CHATGPT_CLIENT_VERSION: &str = crate::chatgpt::CLIENT_VERSION;

/// Time allowed for one list request (head and body each).
const LIST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    Gateway(Provider),
    ApiKey(CredentialId),
    ChatGpt(Owner, AccountName),
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
    /// Where each source's requests go.
    pub targets: &'a UpstreamTargets,
    /// The credentials.
    pub credentials: &'a dyn CredentialResolver,
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
        let list = fetch(ctx, owner, provider, reference).await.map(Arc::new);
        self.store(key, list.clone());
        list
    }

    /// The merged answer for `listing`, as JSON text.
    pub async fn answer(&self, ctx: ListContext<'_>, listing: &ModelListing<'_>) -> String {
        let owner = listing.integration.owner;
        let mut lists = Vec::new();
        let mut failed = Vec::new();
        for provider in listing.providers.iter() {
            if listing.shape == ModelsShape::Anthropic && provider == Provider::OpenAi {
                continue; // Anthropic clients cannot call OpenAI models.
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
        catalog
    }
}

/// Fetches a list from the upstream.
async fn fetch(
    ctx: ListContext<'_>,
    owner: Owner,
    provider: Provider,
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
    fetch_with(ctx, provider, &credential, chatgpt)
        .await
        .map_err(|m| redactor.redact(&m).into_owned())
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
        entries.extend(page.models);
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
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header("accept", "application/json")
        .header(
            "user-agent",
            concat!("llm-integration/", env!("CARGO_PKG_VERSION")),
        );
    let secret = credential.secret.expose_secret();
    request = match provider {
        Provider::Anthropic => request
            .header("x-api-key", secret)
            .header("anthropic-version", "2023-06-01"),
        Provider::OpenAi | Provider::Fireworks => {
            request.header("authorization", format!("Bearer {secret}"))
        }
    };
    if let Some(account) = &credential.account_id {
        request = request.header("chatgpt-account-id", account);
    }
    let request = request
        .body(Either::Left(Full::new(bytes::Bytes::new())))
        .map_err(|_| {
            "the list request cannot be built (a credential is not a valid header value)".to_owned()
        })?;
    let response = tokio::time::timeout(LIST_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("request failed: {}", crate::error_chain(&e)))?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(LIST_TIMEOUT, response.into_body().collect())
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("reading the list failed: {}", crate::error_chain(&e)))?
        .to_bytes();
    Ok((status, body))
}
