//! Providers, the set of them, and the two error dialects clients expect.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// An upstream model provider.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Anthropic's Messages API.
    Anthropic,
    /// OpenAI's API (or the ChatGPT backend for a `chatgpt` source).
    #[serde(rename = "openai")]
    OpenAi,
    /// Fireworks' OpenAI- and Anthropic-compatible inference API.
    Fireworks,
}

impl Provider {
    /// Every provider, in the order they are listed everywhere.
    pub const ALL: [Provider; 3] = [Provider::Anthropic, Provider::OpenAi, Provider::Fireworks];

    /// The lowercase name used in flags, hostnames and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenAi => "openai",
            Provider::Fireworks => "fireworks",
        }
    }

    /// The index of this provider in [`Provider::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Provider::Anthropic => 0,
            Provider::OpenAi => 1,
            Provider::Fireworks => 2,
        }
    }

    /// The prefix a VM uses to force this provider (`/anthropic`, `/openai`,
    /// `/fireworks/inference`).
    pub const fn route_prefix(self) -> &'static str {
        match self {
            Provider::Anthropic => "/anthropic",
            Provider::OpenAi => "/openai",
            Provider::Fireworks => "/fireworks/inference",
        }
    }

    /// Where the provider's `/v1` surface lives under its base URL:
    /// Fireworks serves it under `/inference`.
    pub const fn upstream_prefix(self) -> &'static str {
        match self {
            Provider::Fireworks => "/inference",
            Provider::Anthropic | Provider::OpenAi => "",
        }
    }

    /// The default public base URL.
    pub const fn default_base_url(self) -> &'static str {
        match self {
            Provider::Anthropic => "https://api.anthropic.com",
            Provider::OpenAi => "https://api.openai.com",
            Provider::Fireworks => "https://api.fireworks.ai",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "anthropic" => Ok(Provider::Anthropic),
            "openai" => Ok(Provider::OpenAi),
            "fireworks" => Ok(Provider::Fireworks),
            other => Err(Error::UnknownProvider(other.to_owned())),
        }
    }
}

/// A small set of providers (a bit mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ProviderSet(u8);

impl ProviderSet {
    /// The empty set.
    pub const EMPTY: ProviderSet = ProviderSet(0);
    /// Every provider.
    pub const ALL: ProviderSet = ProviderSet(0b111);

    /// A set of one provider.
    pub const fn one(provider: Provider) -> Self {
        ProviderSet(1 << provider.index())
    }

    /// This set with `provider` added.
    #[must_use]
    pub const fn with(self, provider: Provider) -> Self {
        ProviderSet(self.0 | (1 << provider.index()))
    }

    /// Whether `provider` is in the set.
    pub const fn contains(self, provider: Provider) -> bool {
        self.0 & (1 << provider.index()) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The providers in the set, in [`Provider::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Provider> {
        Provider::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl FromIterator<Provider> for ProviderSet {
    fn from_iter<I: IntoIterator<Item = Provider>>(iter: I) -> Self {
        iter.into_iter().fold(ProviderSet::EMPTY, ProviderSet::with)
    }
}

/// One value per provider, indexed by [`Provider`]: base URLs, keys,
/// catalogs, counters. Replaces a struct with one field per provider, so
/// adding a provider is a change to [`Provider`] alone.
///
/// ```
/// use llm_integration_core::{PerProvider, Provider};
///
/// let mut bases = PerProvider::from_fn(|p| p.default_base_url().to_owned());
/// bases[Provider::OpenAi] = "http://127.0.0.1:7800".to_owned();
/// assert_eq!(bases[Provider::Anthropic], "https://api.anthropic.com");
/// assert_eq!(bases.iter().count(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PerProvider<T>([T; 3]);

impl<T> PerProvider<T> {
    /// A value for each provider, from `f`.
    pub fn from_fn(mut f: impl FnMut(Provider) -> T) -> Self {
        PerProvider(Provider::ALL.map(&mut f))
    }

    /// Each provider with its value, in [`Provider::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Provider, &T)> {
        Provider::ALL.into_iter().zip(self.0.iter())
    }

    /// The values transformed by `f`.
    pub fn map<U>(self, mut f: impl FnMut(Provider, T) -> U) -> PerProvider<U> {
        let mut index = 0;
        PerProvider(self.0.map(|v| {
            // The array is in `ALL` order, and `map` visits it in order.
            let p = Provider::ALL[index];
            index += 1;
            f(p, v)
        }))
    }
}

impl<T> std::ops::Index<Provider> for PerProvider<T> {
    type Output = T;
    fn index(&self, provider: Provider) -> &T {
        &self.0[provider.index()]
    }
}

impl<T> std::ops::IndexMut<Provider> for PerProvider<T> {
    fn index_mut(&mut self, provider: Provider) -> &mut T {
        &mut self.0[provider.index()]
    }
}

/// The shape of errors a client understands on a given endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// `{"type":"error","error":{"type":…,"message":…}}`, on Anthropic routes.
    Anthropic,
    /// `{"error":{"message":…,"type":…,"code":…}}`, everywhere else.
    OpenAi,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
        }
        assert!(matches!(
            "OpenAI".parse::<Provider>(),
            Err(Error::UnknownProvider(_))
        ));
    }

    #[test]
    fn per_provider() {
        let mut counts = PerProvider::from_fn(|p| p.index() * 10);
        counts[Provider::Fireworks] += 1;
        assert_eq!(counts[Provider::Fireworks], 21);
        let names = counts.map(|p, n| format!("{p}:{n}"));
        assert_eq!(names[Provider::OpenAi], "openai:10");
        let order: Vec<Provider> = names.iter().map(|(p, _)| p).collect();
        assert_eq!(order, Provider::ALL.to_vec());
    }

    #[test]
    fn sets() {
        let s: ProviderSet = [Provider::OpenAi, Provider::Fireworks]
            .into_iter()
            .collect();
        assert!(!s.contains(Provider::Anthropic));
        assert!(s.contains(Provider::OpenAi));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Provider::OpenAi, Provider::Fireworks]
        );
        assert!(ProviderSet::EMPTY.is_empty());
    }
}
