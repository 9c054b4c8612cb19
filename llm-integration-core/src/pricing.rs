//! Prices and costs. Costs are integers in micro-units (millionths of a US
//! dollar); prices are kept as nano-dollars per token so that cheap models
//! ($0.02 per million tokens) are exact.

use std::collections::HashMap;

use serde::Deserialize;

use crate::provider::Provider;
use crate::seams::TokenUsage;

/// The default price table (`prices.toml` beside this file).
pub const DEFAULT_PRICES: &str = include_str!("prices.toml");

/// One model's prices, in nano-dollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Input tokens (not cached).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens written to the cache.
    pub cache_write: u64,
    /// Input tokens read from the cache.
    pub cache_read: u64,
}

impl Price {
    /// The cost of `usage`, in micro-dollars, rounded up.
    pub fn cost_micros(&self, usage: &TokenUsage) -> u64 {
        let nanos = u128::from(usage.input) * u128::from(self.input)
            + u128::from(usage.output) * u128::from(self.output)
            + u128::from(usage.cache_creation) * u128::from(self.cache_write)
            + u128::from(usage.cache_read) * u128::from(self.cache_read);
        u64::try_from(nanos.div_ceil(1000)).unwrap_or(u64::MAX)
    }

    /// The most a request can cost: every input byte a token at the dearer
    /// of the input and cache-write prices (text never has more tokens than
    /// bytes), plus `max_output` tokens.
    pub fn ceiling_micros(&self, input_bytes: u64, max_output: u64) -> u64 {
        let nanos = u128::from(input_bytes) * u128::from(self.input.max(self.cache_write))
            + u128::from(max_output) * u128::from(self.output);
        u64::try_from(nanos.div_ceil(1000)).unwrap_or(u64::MAX)
    }
}

/// Why a price table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid price table: {0}")]
pub struct PriceError(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTable {
    defaults: HashMap<Provider, FilePrice>,
    #[serde(default)]
    prices: Vec<FileEntry>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct FilePrice {
    input: f64,
    output: f64,
    cache_write: Option<f64>,
    cache_read: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    provider: Provider,
    model: String,
    input: f64,
    output: f64,
    cache_write: Option<f64>,
    cache_read: Option<f64>,
}

fn nanos(usd_per_mtok: f64, what: &str) -> Result<u64, PriceError> {
    if !usd_per_mtok.is_finite() || !(0.0..=1_000_000.0).contains(&usd_per_mtok) {
        return Err(PriceError(format!(
            "{what} must be a price in dollars per million tokens, not {usd_per_mtok}"
        )));
    }
    // $1 per million tokens = 1 micro-dollar per token = 1000 nano-dollars per token.
    Ok((usd_per_mtok * 1000.0).round() as u64)
}

fn price(provider: Provider, p: FilePrice, what: &str) -> Result<Price, PriceError> {
    let input = nanos(p.input, &format!("{what} input"))?;
    let default_write = if provider == Provider::Anthropic {
        p.input * 1.25
    } else {
        p.input
    };
    Ok(Price {
        input,
        output: nanos(p.output, &format!("{what} output"))?,
        cache_write: nanos(
            p.cache_write.unwrap_or(default_write),
            &format!("{what} cache_write"),
        )?,
        cache_read: nanos(
            p.cache_read.unwrap_or(p.input * 0.1),
            &format!("{what} cache_read"),
        )?,
    })
}

/// Prices by provider and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    defaults: HashMap<Provider, Price>,
    /// (provider, model prefix, price), longest prefixes first.
    entries: Vec<(Provider, String, Price)>,
}

impl PriceTable {
    /// Parses a table in the format of [`DEFAULT_PRICES`].
    pub fn parse(text: &str) -> Result<Self, PriceError> {
        let file: FileTable = toml::from_str(text).map_err(|e| PriceError(e.to_string()))?;
        let mut defaults = HashMap::new();
        for provider in Provider::ALL {
            let p = file
                .defaults
                .get(&provider)
                .ok_or_else(|| PriceError(format!("[defaults] has no price for {provider}")))?;
            defaults.insert(
                provider,
                price(provider, *p, &format!("the default {provider}"))?,
            );
        }
        let mut entries = Vec::new();
        for e in file.prices {
            let p = FilePrice {
                input: e.input,
                output: e.output,
                cache_write: e.cache_write,
                cache_read: e.cache_read,
            };
            let what = format!("{} {}", e.provider, e.model);
            entries.push((e.provider, e.model.clone(), price(e.provider, p, &what)?));
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.1.len()));
        Ok(PriceTable { defaults, entries })
    }

    /// The price of `model` on `provider` (its provider's default when the
    /// model is unknown or not given).
    pub fn price(&self, provider: Provider, model: Option<&str>) -> Price {
        if let Some(model) = model {
            if let Some((_, _, p)) = self
                .entries
                .iter()
                .find(|(prov, prefix, _)| *prov == provider && model.starts_with(prefix.as_str()))
            {
                return *p;
            }
        }
        self.defaults.get(&provider).copied().unwrap_or(Price {
            input: 0,
            output: 0,
            cache_write: 0,
            cache_read: 0,
        })
    }
}

impl Default for PriceTable {
    fn default() -> Self {
        // The embedded table is checked by a test; an empty table is the fallback.
        PriceTable::parse(DEFAULT_PRICES).unwrap_or(PriceTable {
            defaults: HashMap::new(),
            entries: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_parses_and_prices() {
        let t = PriceTable::parse(DEFAULT_PRICES).unwrap();
        let sonnet = t.price(Provider::Anthropic, Some("claude-sonnet-4-6"));
        assert_eq!(
            sonnet,
            Price {
                input: 3000,
                output: 15000,
                cache_write: 3750,
                cache_read: 300
            }
        );
        // Longest prefix wins.
        assert_eq!(
            t.price(Provider::Anthropic, Some("claude-opus-4-6")).input,
            5000
        );
        assert_eq!(
            t.price(Provider::Anthropic, Some("claude-opus-4-1")).input,
            15000
        );
        assert_eq!(
            t.price(Provider::OpenAi, Some("gpt-5-mini-2025")).input,
            250
        );
        // Unknown models cost their provider's default.
        assert_eq!(
            t.price(Provider::OpenAi, Some("mystery")),
            t.price(Provider::OpenAi, None)
        );
        // $3/MTok × 1000 + $15/MTok × 100 + cache: 3000 + 1500 + 2×3.75 + 3×0.3 (rounded up).
        let usage = TokenUsage {
            input: 1000,
            output: 100,
            cache_creation: 2,
            cache_read: 3,
        };
        assert_eq!(sonnet.cost_micros(&usage), 3000 + 1500 + 8 + 1);
        let small = t.price(Provider::OpenAi, Some("text-embedding-3-small"));
        assert_eq!(
            small.cost_micros(&TokenUsage {
                input: 1_000_000,
                ..TokenUsage::default()
            }),
            20_000
        );
        assert_eq!(sonnet.ceiling_micros(1000, 100), 1000 * 3750 / 1000 + 1500);
    }

    #[test]
    fn bad_tables_are_refused() {
        assert!(
            PriceTable::parse("[defaults]\nanthropic = { input = 1.0, output = 1.0 }")
                .unwrap_err()
                .to_string()
                .contains("openai")
        );
        let neg = DEFAULT_PRICES.replacen(
            "model = \"claude-sonnet\"\ninput = 3.0",
            "model = \"claude-sonnet\"\ninput = -3.0",
            1,
        );
        assert!(PriceTable::parse(&neg)
            .unwrap_err()
            .to_string()
            .contains("claude-sonnet input"));
        assert!(PriceTable::parse("nonsense = 1").is_err());
    }
}
