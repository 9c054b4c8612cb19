//! The providers as this server reaches them: their base URLs and the
//! gateway's own keys for them, one value per [`Provider`].
//!
//! Both the configuration (which resolves them) and the data plane (which
//! uses them) depend on this module; it depends on neither.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use llm_integration_core::{PerProvider, Provider, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Base URLs of the providers (no trailing `/`).
///
/// In the configuration file it is the `[upstreams]` table, keyed by
/// provider name (`anthropic`, `openai`, `fireworks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams(PerProvider<String>);

impl Upstreams {
    /// The base URL of `provider`.
    pub fn base(&self, provider: Provider) -> &str {
        &self.0[provider]
    }
}

impl Default for Upstreams {
    /// The providers' public APIs.
    fn default() -> Self {
        Upstreams(PerProvider::from_fn(|p| p.default_base_url().to_owned()))
    }
}

impl From<PerProvider<String>> for Upstreams {
    fn from(urls: PerProvider<String>) -> Self {
        Upstreams(urls)
    }
}

impl Deref for Upstreams {
    type Target = PerProvider<String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Upstreams {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Serialize for Upstreams {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(p, url)| (p.as_str(), url)))
    }
}

impl<'de> Deserialize<'de> for Upstreams {
    /// A table with a URL for every provider; an unknown provider's name is
    /// refused (by [`Provider`]'s own `Deserialize`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut urls = BTreeMap::<Provider, String>::deserialize(deserializer)?;
        let mut missing = None;
        let urls = PerProvider::from_fn(|p| {
            urls.remove(&p).unwrap_or_else(|| {
                missing.get_or_insert(p);
                String::new()
            })
        });
        match missing {
            Some(p) => Err(serde::de::Error::missing_field(p.as_str())),
            None => Ok(Upstreams(urls)),
        }
    }
}

/// The platform's own provider keys, for `gateway` sources. They come from
/// the environment only ([`GatewayKeys::env_var`]), never from a flag or
/// the configuration file.
#[derive(Debug, Clone, Default)]
pub struct GatewayKeys(PerProvider<Option<SecretString>>);

impl GatewayKeys {
    /// The environment variable holding `provider`'s gateway key:
    /// `LLM_INTEGRATION_GATEWAY_ANTHROPIC_KEY`, `…_OPENAI_KEY`, `…_FIREWORKS_KEY`.
    pub fn env_var(provider: Provider) -> String {
        format!(
            "LLM_INTEGRATION_GATEWAY_{}_KEY",
            provider.as_str().to_ascii_uppercase()
        )
    }

    /// Reads the keys from the environment (an empty variable is no key).
    pub fn from_env() -> Self {
        GatewayKeys(PerProvider::from_fn(|p| {
            std::env::var(Self::env_var(p))
                .ok()
                .filter(|v| !v.is_empty())
                .map(SecretString::from)
        }))
    }

    /// `provider`'s key.
    pub fn get(&self, provider: Provider) -> Option<&SecretString> {
        self.0[provider].as_ref()
    }
}

impl From<PerProvider<Option<SecretString>>> for GatewayKeys {
    fn from(keys: PerProvider<Option<SecretString>>) -> Self {
        GatewayKeys(keys)
    }
}

impl Deref for GatewayKeys {
    type Target = PerProvider<Option<SecretString>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for GatewayKeys {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_key_variables() {
        let names: Vec<String> = Provider::ALL.map(GatewayKeys::env_var).to_vec();
        assert_eq!(
            names,
            [
                "LLM_INTEGRATION_GATEWAY_ANTHROPIC_KEY",
                "LLM_INTEGRATION_GATEWAY_OPENAI_KEY",
                "LLM_INTEGRATION_GATEWAY_FIREWORKS_KEY",
            ]
        );
    }

    #[test]
    fn upstreams_table() {
        let table: Upstreams = toml::from_str(
            "anthropic = \"https://a\"\nopenai = \"https://o\"\nfireworks = \"https://f\"\n",
        )
        .unwrap();
        assert_eq!(table.base(Provider::OpenAi), "https://o");
        let text = toml::to_string(&table).unwrap();
        assert_eq!(toml::from_str::<Upstreams>(&text).unwrap(), table);
        let missing = toml::from_str::<Upstreams>("anthropic = \"https://a\"\n").unwrap_err();
        assert!(missing.to_string().contains("openai"), "{missing}");
        let unknown = toml::from_str::<Upstreams>("opneai = \"https://o\"\n").unwrap_err();
        assert!(unknown.to_string().contains("opneai"), "{unknown}");
    }
}
