//! Routing by model ID: which provider serves a model.
//!
//! Order: Fireworks resource names (`accounts/…`), then an explicit
//! `provider/model` form (the prefix is stripped before forwarding), then
//! exact matches in the known catalogs, then the well-known prefixes.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::domain::IntegrationId;
use crate::provider::{Provider, ProviderSet};

/// Model IDs known to be served by each provider (from their model lists).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelCatalog {
    by_model: HashMap<Box<str>, ProviderSet>,
    /// The models custom endpoints list, by integration and provider: in
    /// that integration they replace the provider's entries above.
    endpoints: HashMap<(IntegrationId, Provider), HashSet<Box<str>>>,
}

/// Where a router looks model IDs up: a [`ModelCatalog`], or its view
/// from one integration ([`ModelCatalog::scope`]).
pub trait ModelLookup {
    /// The providers known to serve `model`.
    fn providers_of(&self, model: &str) -> ProviderSet;
}

impl ModelLookup for ModelCatalog {
    fn providers_of(&self, model: &str) -> ProviderSet {
        ModelCatalog::providers_of(self, model)
    }
}

/// A catalog as one integration sees it: for each provider on a custom
/// endpoint, that endpoint's list instead of the provider's.
#[derive(Debug, Clone, Copy)]
pub struct CatalogScope<'c> {
    catalog: &'c ModelCatalog,
    integration: IntegrationId,
    custom: ProviderSet,
}

impl ModelLookup for CatalogScope<'_> {
    fn providers_of(&self, model: &str) -> ProviderSet {
        let mut set = ProviderSet::default();
        for provider in self.catalog.providers_of(model).iter() {
            if !self.custom.contains(provider) {
                set = set.with(provider);
            }
        }
        for provider in self.custom.iter() {
            let listed = self
                .catalog
                .endpoints
                .get(&(self.integration, provider))
                .is_some_and(|models| models.contains(model));
            if listed {
                set = set.with(provider);
            }
        }
        set
    }
}

impl ModelCatalog {
    /// An empty catalog: only the prefix rules apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `provider` serves `model`.
    pub fn insert(&mut self, provider: Provider, model: &str) {
        let set = self.by_model.entry(model.into()).or_default();
        *set = set.with(provider);
    }

    /// Records every model of `provider`.
    pub fn extend<'a>(&mut self, provider: Provider, models: impl IntoIterator<Item = &'a str>) {
        for m in models {
            self.insert(provider, m);
        }
    }

    /// The providers known to serve `model`.
    pub fn providers_of(&self, model: &str) -> ProviderSet {
        self.by_model.get(model).copied().unwrap_or_default()
    }

    /// Records the models the custom endpoint of `provider` in
    /// `integration` lists (replacing what was recorded for it).
    pub fn set_endpoint<'a>(
        &mut self,
        integration: IntegrationId,
        provider: Provider,
        models: impl IntoIterator<Item = &'a str>,
    ) {
        self.endpoints.insert(
            (integration, provider),
            models.into_iter().map(Box::from).collect(),
        );
    }

    /// The models recorded for the custom endpoint of `provider` in
    /// `integration`, if its list was read.
    pub fn endpoint_models(
        &self,
        integration: IntegrationId,
        provider: Provider,
    ) -> Option<impl Iterator<Item = &str>> {
        self.endpoints
            .get(&(integration, provider))
            .map(|models| models.iter().map(AsRef::as_ref))
    }

    /// This catalog as `integration` sees it, the providers in `custom`
    /// being on custom endpoints.
    pub fn scope(&self, integration: IntegrationId, custom: ProviderSet) -> CatalogScope<'_> {
        CatalogScope {
            catalog: self,
            integration,
            custom,
        }
    }

    /// The models known to be served by `provider`.
    pub fn models_of(&self, provider: Provider) -> impl Iterator<Item = &str> {
        self.by_model
            .iter()
            .filter(move |(_, set)| set.contains(provider))
            .map(|(model, _)| model.as_ref())
    }

    /// How many model IDs are known.
    pub fn len(&self) -> usize {
        self.by_model.len()
    }

    /// Whether no model ID is known.
    pub fn is_empty(&self) -> bool {
        self.by_model.is_empty()
    }
}

/// Where a model goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRoute<'m> {
    /// The provider that serves it.
    pub provider: Provider,
    /// The model ID to send upstream when it differs from the client's
    /// (an explicit `provider/` prefix was stripped).
    pub upstream_model: Option<Cow<'m, str>>,
}

/// Why a model could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// No enabled provider is known to serve it.
    #[error("model {0:?} is not served by any enabled provider")]
    Unknown(String),
    /// It belongs to a provider that is disabled.
    #[error("model {model:?} belongs to provider {provider}, which is disabled")]
    Disabled {
        /// The model.
        model: String,
        /// Its provider.
        provider: Provider,
    },
    /// Empty, too long, or containing control characters.
    #[error("the model ID is empty, longer than 256 bytes or has control characters")]
    Malformed,
}

/// The provider a model ID names by its shape alone (its prefix).
pub fn provider_by_prefix(model: &str) -> Option<Provider> {
    const OPENAI: [&str; 13] = [
        "gpt-",
        "chatgpt-",
        "codex-",
        "text-embedding-",
        "omni-",
        "text-moderation-",
        "dall-e",
        "whisper",
        "tts",
        "ft:",
        "computer-use-preview",
        "babbage-",
        "davinci-",
    ];
    if model.starts_with("accounts/") {
        return Some(Provider::Fireworks);
    }
    if model.starts_with("claude-") {
        return Some(Provider::Anthropic);
    }
    // The o-series: `o` then a digit (`o1`, `o3-pro`, `o4-mini`), so that
    // `omni-…` is not caught by it.
    let o_series = model.as_bytes().first() == Some(&b'o')
        && model.as_bytes().get(1).is_some_and(u8::is_ascii_digit);
    if o_series || OPENAI.iter().any(|p| model.starts_with(p)) {
        return Some(Provider::OpenAi);
    }
    None
}

/// Routes `model` among the `enabled` providers, consulting `catalog`.
///
/// ```
/// use llm_integration_core::route_model;
/// use llm_integration_core::{ModelCatalog, Provider, ProviderSet};
///
/// let all: ProviderSet = Provider::ALL.into_iter().collect();
/// let r = route_model("anthropic/claude-opus-4-6", &ModelCatalog::new(), all).unwrap();
/// assert_eq!(r.provider, Provider::Anthropic);
/// assert_eq!(r.upstream_model.as_deref(), Some("claude-opus-4-6"));
/// ```
pub fn route_model<'m>(
    model: &'m str,
    catalog: &impl ModelLookup,
    enabled: ProviderSet,
) -> Result<ModelRoute<'m>, ModelError> {
    route_model_for(model, catalog, enabled, ProviderSet::ALL)
}

/// [`route_model`] for an endpoint that `serves` only some providers: a
/// catalog match by a provider that cannot serve the endpoint does not
/// shadow one that can, nor the well-known prefixes.
///
/// # Errors
/// As [`route_model`].
pub fn route_model_for<'m>(
    model: &'m str,
    catalog: &impl ModelLookup,
    enabled: ProviderSet,
    serves: ProviderSet,
) -> Result<ModelRoute<'m>, ModelError> {
    if model.is_empty() || model.len() > 256 || model.chars().any(char::is_control) {
        return Err(ModelError::Malformed);
    }
    let decide = |provider: Provider, upstream_model: Option<Cow<'m, str>>| {
        if enabled.contains(provider) {
            Ok(ModelRoute {
                provider,
                upstream_model,
            })
        } else {
            Err(ModelError::Disabled {
                model: model.to_owned(),
                provider,
            })
        }
    };
    if model.starts_with("accounts/") {
        return decide(Provider::Fireworks, None);
    }
    if let Some((prefix, rest)) = model.split_once('/') {
        let explicit = match prefix {
            "anthropic" => Some(Provider::Anthropic),
            "openai" | "chatgpt" => Some(Provider::OpenAi),
            "fireworks" => Some(Provider::Fireworks),
            _ => None,
        };
        if let Some(provider) = explicit {
            if rest.is_empty() {
                return Err(ModelError::Unknown(model.to_owned()));
            }
            let upstream = if provider == Provider::Fireworks && !rest.starts_with("accounts/") {
                Cow::Owned(format!("accounts/fireworks/models/{rest}"))
            } else {
                Cow::Borrowed(rest)
            };
            return decide(provider, Some(upstream));
        }
    }
    let listed = catalog.providers_of(model);
    if let Some(provider) = listed
        .iter()
        .find(|p| enabled.contains(*p) && serves.contains(*p))
    {
        return Ok(ModelRoute {
            provider,
            upstream_model: None,
        });
    }
    if let Some(provider) = provider_by_prefix(model) {
        return decide(provider, None);
    }
    if let Some(provider) = listed.iter().find(|p| enabled.contains(*p)) {
        return Ok(ModelRoute {
            provider,
            upstream_model: None,
        });
    }
    if let Some(provider) = listed.iter().next() {
        return decide(provider, None);
    }
    Err(ModelError::Unknown(model.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> ProviderSet {
        Provider::ALL.into_iter().collect()
    }

    fn p(model: &str) -> Result<Provider, ModelError> {
        route_model(model, &ModelCatalog::new(), all()).map(|r| r.provider)
    }

    #[test]
    fn a_catalog_match_that_cannot_serve_the_endpoint_does_not_shadow_one_that_can() {
        let mut catalog = ModelCatalog::new();
        catalog.insert(Provider::Anthropic, "shared-model");
        catalog.insert(Provider::OpenAi, "shared-model");
        catalog.insert(Provider::Anthropic, "gpt-odd");
        let openai_family = ProviderSet::one(Provider::OpenAi).with(Provider::Fireworks);
        let r = route_model_for("shared-model", &catalog, ProviderSet::ALL, openai_family).unwrap();
        assert_eq!(r.provider, Provider::OpenAi);
        let r = route_model_for("gpt-odd", &catalog, ProviderSet::ALL, openai_family).unwrap();
        assert_eq!(
            r.provider,
            Provider::OpenAi,
            "the prefix rule, not the other family's list"
        );
        let r = route_model("shared-model", &catalog, ProviderSet::ALL).unwrap();
        assert_eq!(r.provider, Provider::Anthropic);
    }

    #[test]
    fn prefixes() {
        use Provider::*;
        for (m, want) in [
            ("claude-sonnet-4-6", Anthropic),
            ("claude-opus-4-6", Anthropic),
            ("gpt-5.5", OpenAi),
            ("gpt-5.1-codex-max", OpenAi),
            ("chatgpt-4o-latest", OpenAi),
            ("o1", OpenAi),
            ("o3-pro", OpenAi),
            ("o4-mini", OpenAi),
            ("codex-mini-latest", OpenAi),
            ("text-embedding-3-small", OpenAi),
            ("omni-moderation-latest", OpenAi),
            ("dall-e-3", OpenAi),
            ("whisper-1", OpenAi),
            ("tts-1", OpenAi),
            ("ft:gpt-4o-mini:org::abc", OpenAi),
            ("accounts/fireworks/models/deepseek-v3p2", Fireworks),
            ("accounts/fireworks/models/gpt-oss-120b", Fireworks),
        ] {
            assert_eq!(p(m), Ok(want), "{m}");
        }
    }

    #[test]
    fn explicit_forms_strip_the_prefix() {
        let r = route_model("fireworks/deepseek-v3p2", &ModelCatalog::new(), all()).unwrap();
        assert_eq!(r.provider, Provider::Fireworks);
        assert_eq!(
            r.upstream_model.as_deref(),
            Some("accounts/fireworks/models/deepseek-v3p2")
        );
        let r = route_model("openai/gpt-5.5", &ModelCatalog::new(), all()).unwrap();
        assert_eq!(
            (r.provider, r.upstream_model.as_deref()),
            (Provider::OpenAi, Some("gpt-5.5"))
        );
        let r = route_model(
            "fireworks/accounts/me/models/ft",
            &ModelCatalog::new(),
            all(),
        )
        .unwrap();
        assert_eq!(r.upstream_model.as_deref(), Some("accounts/me/models/ft"));
        assert!(matches!(p("anthropic/"), Err(ModelError::Unknown(_))));
    }

    #[test]
    fn catalog_wins_and_disabled_is_named() {
        let mut catalog = ModelCatalog::new();
        catalog.insert(Provider::Fireworks, "kimi-k2");
        catalog.insert(Provider::Fireworks, "gpt-custom");
        let r = route_model("kimi-k2", &catalog, all()).unwrap();
        assert_eq!(r.provider, Provider::Fireworks);
        // An exact catalog match beats the gpt- prefix.
        assert_eq!(
            route_model("gpt-custom", &catalog, all()).unwrap().provider,
            Provider::Fireworks
        );
        let only_openai = ProviderSet::one(Provider::OpenAi);
        assert_eq!(
            route_model("kimi-k2", &catalog, only_openai),
            Err(ModelError::Disabled {
                model: "kimi-k2".into(),
                provider: Provider::Fireworks
            })
        );
        assert_eq!(
            route_model("claude-haiku-4-5", &catalog, only_openai),
            Err(ModelError::Disabled {
                model: "claude-haiku-4-5".into(),
                provider: Provider::Anthropic
            })
        );
    }

    #[test]
    fn a_custom_endpoints_list_replaces_its_providers_entries_in_its_integration() {
        let mut catalog = ModelCatalog::new();
        catalog.insert(Provider::OpenAi, "gpt-5.5");
        catalog.insert(Provider::Fireworks, "llama-local");
        catalog.set_endpoint(IntegrationId(7), Provider::OpenAi, ["llama-local", "qwen3"]);
        let custom: ProviderSet = [Provider::OpenAi].into_iter().collect();
        let scope = catalog.scope(IntegrationId(7), custom);
        // The endpoint's own models route to its provider, before a
        // catalog match of another provider.
        assert_eq!(
            route_model("qwen3", &scope, all()).unwrap().provider,
            Provider::OpenAi
        );
        assert!(scope.providers_of("llama-local").contains(Provider::OpenAi));
        // The provider's public entries are not the endpoint's.
        assert!(!scope.providers_of("gpt-5.5").contains(Provider::OpenAi));
        // Another integration sees the public catalog.
        let other = catalog.scope(IntegrationId(8), custom);
        assert!(other.providers_of("qwen3").is_empty());
        assert_eq!(
            route_model("llama-local", &catalog, all())
                .unwrap()
                .provider,
            Provider::Fireworks
        );
        assert_eq!(
            catalog
                .endpoint_models(IntegrationId(7), Provider::OpenAi)
                .map(|m| m.count()),
            Some(2)
        );
    }

    #[test]
    fn unknown_and_malformed() {
        assert_eq!(p("llama-3"), Err(ModelError::Unknown("llama-3".into())));
        assert_eq!(p("omni"), Err(ModelError::Unknown("omni".into())));
        assert_eq!(p(""), Err(ModelError::Malformed));
        assert_eq!(p("gpt\n"), Err(ModelError::Malformed));
        assert_eq!(p(&"g".repeat(300)), Err(ModelError::Malformed));
    }
}
