//! `GET /v1/models`: the models of an integration's enabled providers,
//! merged, each marked with its provider; fetched from the upstreams with
//! the sources' credentials and cached for a bounded time. A provider whose
//! list fails is reported in the answer, not fatal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, Request};
use http_body_util::{BodyExt, Either, Full};
use llm_integration_core::seams::CredentialResolver;
use llm_integration_core::{
    CredentialId, ModelListing, ModelsShape, Owner, Provider, ProviderSource, Source,
};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::UpstreamClient;
use crate::upstreams::Upstreams;

/// One model of a provider's list.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    /// The model ID.
    pub id: String,
    /// Unix seconds (OpenAI's `created`).
    pub created: i64,
    /// Anthropic's display name, when known.
    pub display_name: Option<String>,
    /// Anthropic's RFC 3339 creation time, when known.
    pub created_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    Gateway(Provider),
    ApiKey(CredentialId),
    ChatGpt(Owner, llm_integration_core::AccountName),
}

/// A provider's list and when it was fetched.
type Cached = (Instant, Arc<Vec<ModelEntry>>);

/// Cached model lists.
pub struct ModelLists {
    ttl: Duration,
    cache: Mutex<HashMap<CacheKey, Cached>>,
}

impl ModelLists {
    /// Lists cached for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        ModelLists {
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &CacheKey) -> Option<Arc<Vec<ModelEntry>>> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, list)| list.clone())
    }

    fn store(&self, key: CacheKey, list: Arc<Vec<ModelEntry>>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (Instant::now(), list));
        }
    }

    /// The list of `provider` on `source`, from the cache or the upstream.
    #[allow(clippy::too_many_arguments)] // the answer's context, passed through
    async fn list(
        &self,
        client: &UpstreamClient,
        upstreams: &Upstreams,
        credentials: &dyn CredentialResolver,
        chatgpt: &crate::chatgpt::ChatGpt,
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
            return Ok(list);
        }
        let reference = source
            .credential(provider)
            .ok_or("the provider is disabled")?;
        let credential = credentials
            .resolve(owner, provider, reference)
            .await
            .map_err(|e| e.to_string())?;
        if let Source::Chatgpt { .. } = source {
            // The Codex backend's catalog: the models this subscription offers.
            let slugs = chatgpt.models(&credential).await?;
            let list: Arc<Vec<ModelEntry>> = Arc::new(
                slugs
                    .into_iter()
                    .map(|id| ModelEntry {
                        id,
                        created: 0,
                        display_name: None,
                        created_at: None,
                    })
                    .collect(),
            );
            self.store(key, list.clone());
            return Ok(list);
        }
        let mut entries = Vec::new();
        let mut after: Option<String> = None;
        // Anthropic pages its list; 10 pages of 1000 is far beyond any real list.
        for _ in 0..10 {
            let mut url = format!(
                "{}{}/v1/models",
                upstreams.base(provider),
                provider.upstream_prefix()
            );
            if provider == Provider::Anthropic {
                url.push_str("?limit=1000");
                if let Some(a) = &after {
                    url.push_str("&after_id=");
                    url.push_str(a);
                }
            }
            let mut request = Request::builder().method(Method::GET).uri(&url).header(
                "user-agent",
                concat!("llm-integration/", env!("CARGO_PKG_VERSION")),
            );
            request = match provider {
                Provider::Anthropic => request
                    .header("x-api-key", credential.secret.expose_secret())
                    .header("anthropic-version", "2023-06-01"),
                _ => request.header(
                    "authorization",
                    format!("Bearer {}", credential.secret.expose_secret()),
                ),
            };
            let request = request
                .body(Either::Left(Full::new(bytes::Bytes::new())))
                .map_err(|e| format!("cannot build the request: {e}"))?;
            let response = tokio::time::timeout(Duration::from_secs(15), client.request(request))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| format!("request failed: {e}"))?;
            let status = response.status();
            let body =
                tokio::time::timeout(Duration::from_secs(15), response.into_body().collect())
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|e| format!("reading the list failed: {e}"))?
                    .to_bytes();
            let value: Value = serde_json::from_slice(&body)
                .map_err(|_| format!("HTTP {}: the answer is not JSON", status.as_u16()))?;
            if !status.is_success() {
                let message = value["error"]["message"].as_str().unwrap_or("no message");
                return Err(format!("HTTP {}: {message}", status.as_u16()));
            }
            for m in value["data"].as_array().into_iter().flatten() {
                let Some(id) = m["id"].as_str() else { continue };
                entries.push(ModelEntry {
                    id: id.to_owned(),
                    created: m["created"].as_i64().unwrap_or(0),
                    display_name: m["display_name"].as_str().map(str::to_owned),
                    created_at: m["created_at"].as_str().map(str::to_owned),
                });
            }
            match (value["has_more"].as_bool(), value["last_id"].as_str()) {
                (Some(true), Some(last)) if provider == Provider::Anthropic => {
                    after = Some(last.to_owned())
                }
                _ => break,
            }
        }
        let list = Arc::new(entries);
        self.store(key, list.clone());
        Ok(list)
    }

    /// The merged answer for `listing`.
    pub async fn answer(
        &self,
        client: &UpstreamClient,
        upstreams: &Upstreams,
        credentials: &dyn CredentialResolver,
        chatgpt: &crate::chatgpt::ChatGpt,
        listing: &ModelListing<'_>,
    ) -> Value {
        let owner = listing.integration.owner;
        let mut lists = Vec::new();
        let mut failed = Vec::new();
        for provider in listing.providers.iter() {
            if listing.shape == ModelsShape::Anthropic && provider == Provider::OpenAi {
                continue; // Anthropic clients cannot call OpenAI models.
            }
            let source = listing.settings.source(provider);
            match self
                .list(
                    client,
                    upstreams,
                    credentials,
                    chatgpt,
                    owner,
                    provider,
                    source,
                )
                .await
            {
                Ok(list) => lists.push((provider, list)),
                Err(message) => {
                    tracing::warn!(%provider, %message, "model list unavailable");
                    failed.push(json!({"provider": provider, "message": message}));
                }
            }
        }
        let mut answer = match listing.shape {
            ModelsShape::OpenAi => {
                let data: Vec<Value> = lists
                    .iter()
                    .flat_map(|(p, list)| {
                        list.iter().map(move |m| json!({"id": m.id, "object": "model", "created": m.created, "owned_by": p}))
                    })
                    .collect();
                json!({"object": "list", "data": data})
            }
            ModelsShape::Anthropic => {
                let data: Vec<Value> = lists
                    .iter()
                    .flat_map(|(p, list)| {
                        list.iter().map(move |m| {
                            json!({
                                "type": "model",
                                "id": m.id,
                                "display_name": m.display_name.clone().unwrap_or_else(|| m.id.clone()),
                                "created_at": m.created_at.clone().unwrap_or_else(|| rfc3339(m.created)),
                                "owned_by": p,
                            })
                        })
                    })
                    .collect();
                let first = data.first().map(|m| m["id"].clone()).unwrap_or(Value::Null);
                let last = data.last().map(|m| m["id"].clone()).unwrap_or(Value::Null);
                json!({"data": data, "has_more": false, "first_id": first, "last_id": last})
            }
        };
        if !failed.is_empty() {
            answer["failed_providers"] = Value::Array(failed);
        }
        answer
    }
}

/// Unix seconds as an RFC 3339 UTC time.
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
