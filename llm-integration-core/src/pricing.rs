//! Prices, costs and what a request is expected to cost before it is sent.
//! Costs are integers in micro-units (millionths of a US dollar); prices
//! are kept as nano-dollars per token so that cheap models ($0.02 per
//! million tokens) are exact.
//!
//! A model is priced by the entry whose `model` is the longest prefix of
//! its ID. When that entry names a family without a generation (such as
//! `claude-opus`) and the model names one (`claude-opus-7`), the model is
//! priced at the family's newest listed generation ([`PriceMatch::Family`]):
//! a new model is likelier to cost what its predecessor costs than what
//! the first of its family did. A model no entry matches gets its
//! provider's default (deliberately high).

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
    /// Whether a million input and a million output tokens cost more at
    /// this price than at `other`.
    fn dearer_than(&self, other: &Price) -> bool {
        self.input + self.output > other.input + other.output
    }

    /// The cost of `usage`, in micro-dollars, rounded up.
    pub fn cost_micros(&self, usage: &TokenUsage) -> u64 {
        let nanos = u128::from(usage.input) * u128::from(self.input)
            + u128::from(usage.output) * u128::from(self.output)
            + u128::from(usage.cache_creation) * u128::from(self.cache_write)
            + u128::from(usage.cache_read) * u128::from(self.cache_read);
        u64::try_from(nanos.div_ceil(1000)).unwrap_or(u64::MAX)
    }

    /// The cost of the input of `estimate`, at the dearer of the input and
    /// cache-write prices, in micro-dollars.
    pub fn input_micros(&self, estimate: &RequestEstimate) -> u64 {
        let nanos =
            u128::from(estimate.input_tokens) * u128::from(self.input.max(self.cache_write));
        u64::try_from(nanos.div_ceil(1000)).unwrap_or(u64::MAX)
    }

    /// What `estimate` is likely to cost: its input (at the dearer of the
    /// input and cache-write prices) and its reserved output.
    pub fn likely_micros(&self, estimate: &RequestEstimate) -> u64 {
        let nanos = u128::from(estimate.output_tokens) * u128::from(self.output);
        self.input_micros(estimate)
            .saturating_add(u64::try_from(nanos.div_ceil(1000)).unwrap_or(u64::MAX))
    }
}

/// The output reserved for a request that may produce more: a request
/// reserves its stated limit up to this, times its choices (`n`,
/// `best_of`). Past it, the request may cost more than it reserved (see
/// README's bound on overspend).
pub const LIKELY_OUTPUT: u64 = 8_192;

/// The most choices (`n`, `best_of`) a request is reserved for.
pub const MAX_CHOICES: u64 = 128;

/// What a request is expected to consume, before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestEstimate {
    /// Input tokens: the body's text at the conservative ratio
    /// ([`crate::usage::RatioCounter`]), its images and documents by the
    /// providers' own sizing ([`crate::media`]).
    pub input_tokens: u64,
    /// Output tokens reserved: the stated limit (or [`LIKELY_OUTPUT`]),
    /// capped at [`LIKELY_OUTPUT`], times the choices; 0 for calls that
    /// produce none.
    pub output_tokens: u64,
    /// The images and documents found.
    pub media: crate::media::Media,
}

/// Estimates a request: `body` is its decoded text (empty when not read),
/// `choices` its `n` or `best_of`.
pub fn estimate(
    provider: Provider,
    body: &[u8],
    max_output: Option<u64>,
    choices: Option<u64>,
    produces_output: bool,
) -> RequestEstimate {
    let media = crate::media::scan(provider, body);
    let text = (body.len() as u64).saturating_sub(media.bytes);
    let output = if produces_output {
        max_output.unwrap_or(LIKELY_OUTPUT).min(LIKELY_OUTPUT)
            * choices.unwrap_or(1).clamp(1, MAX_CHOICES)
    } else {
        0
    };
    RequestEstimate {
        input_tokens: crate::usage::RatioCounter::tokens(text).saturating_add(media.tokens),
        output_tokens: output,
        media,
    }
}

/// How a model's price was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceMatch {
    /// An entry of the table.
    Listed,
    /// A listed generation of the model's family, the model's own being
    /// unlisted: of the nearest listed generation below it and the
    /// nearest above it, the dearer (so an unlisted generation is never
    /// priced below its neighbours; one newer than the table costs what
    /// the newest listed does).
    Family(String),
    /// The provider's default (no entry matches, or no model was named).
    Default,
}

/// The numbers of a model ID's generation, for ordering generations
/// (`claude-opus-4-6` → `[4, 6]`, `claude-opus-5` → `[5]`). A snapshot
/// date (a number of five digits or more: `claude-opus-4-20250514`) is
/// not part of the generation (`[4]`).
fn generation(model: &str) -> Vec<u64> {
    model
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty() && p.len() < 5)
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether the entry `prefix` names `model`: a prefix of it that does not
/// end inside a number (`claude-opus-4-2` is not a prefix of
/// `claude-opus-4-20250514`, whose generation is 4).
fn is_prefix(prefix: &str, model: &str) -> bool {
    model.starts_with(prefix)
        && !(prefix.ends_with(|c: char| c.is_ascii_digit())
            && model[prefix.len()..].starts_with(|c: char| c.is_ascii_digit()))
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

    /// The price of `model` on `provider` (see the module documentation).
    pub fn price(&self, provider: Provider, model: Option<&str>) -> Price {
        self.lookup(provider, model).0
    }

    /// The price of `model` on `provider`, and how it was found.
    pub fn lookup(&self, provider: Provider, model: Option<&str>) -> (Price, PriceMatch) {
        let default = || {
            let p = self.defaults.get(&provider).copied().unwrap_or(Price {
                input: 0,
                output: 0,
                cache_write: 0,
                cache_read: 0,
            });
            (p, PriceMatch::Default)
        };
        let Some(model) = model else {
            return default();
        };
        let Some((_, prefix, p)) = self
            .entries
            .iter()
            .find(|(prov, prefix, _)| *prov == provider && is_prefix(prefix, model))
        else {
            return default();
        };
        let family_only = !prefix.bytes().any(|b| b.is_ascii_digit());
        let wanted = generation(&model[prefix.len()..]);
        if family_only && !wanted.is_empty() {
            let family = format!("{prefix}-");
            let listed = || {
                self.entries
                    .iter()
                    .filter(|(prov, m, _)| *prov == provider && m.starts_with(&family))
                    .map(|(_, m, p)| (generation(&m[family.len()..]), m, p))
            };
            // The nearest listed generations on either side; the dearer.
            let below = listed()
                .filter(|(g, _, _)| *g <= wanted)
                .max_by(|a, b| a.0.cmp(&b.0));
            let above = listed()
                .filter(|(g, _, _)| *g > wanted)
                .min_by(|a, b| a.0.cmp(&b.0));
            let chosen = match (below, above) {
                (Some(b), Some(a)) => Some(if a.2.dearer_than(b.2) { a } else { b }),
                (b, a) => b.or(a),
            };
            if let Some((_, m, p)) = chosen {
                return (*p, PriceMatch::Family(m.clone()));
            }
        }
        (*p, PriceMatch::Listed)
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
        let estimate = RequestEstimate {
            input_tokens: 1000,
            output_tokens: 100,
            ..RequestEstimate::default()
        };
        assert_eq!(sonnet.input_micros(&estimate), 1000 * 3750 / 1000);
        assert_eq!(sonnet.likely_micros(&estimate), 1000 * 3750 / 1000 + 1500);
    }

    #[test]
    fn new_generations_cost_what_the_newest_listed_does() {
        let t = PriceTable::default();
        let (p, how) = t.lookup(Provider::Anthropic, Some("claude-opus-5-5"));
        assert_eq!((p.input, p.output, how), (4000, 20000, PriceMatch::Listed));
        let (p, how) = t.lookup(Provider::Anthropic, Some("claude-opus-7"));
        assert_eq!(
            (p.input, how),
            (4000, PriceMatch::Family("claude-opus-5".into()))
        );
        let (p, how) = t.lookup(Provider::Anthropic, Some("claude-haiku-5-1"));
        assert_eq!(
            (p.output, how),
            (5000, PriceMatch::Family("claude-haiku-4".into()))
        );
        // An unlisted generation between listed ones: the dearer neighbour.
        for (model, input, family) in [
            ("claude-opus-4-0", 15000, "claude-opus-4-1"),
            ("claude-opus-4", 15000, "claude-opus-4-1"),
            ("claude-opus-4-20250514", 15000, "claude-opus-4-1"),
            ("claude-opus-4-0-20250514", 15000, "claude-opus-4-1"),
            ("claude-opus-4-7", 5000, "claude-opus-4-6"),
            ("claude-opus-4-3", 15000, "claude-opus-4-2"),
            ("claude-opus-3", 15000, "claude-opus-4-1"),
        ] {
            assert_eq!(
                t.lookup(Provider::Anthropic, Some(model)),
                (
                    t.price(Provider::Anthropic, Some(family)),
                    PriceMatch::Family(family.into())
                ),
                "{model}"
            );
            assert_eq!(t.price(Provider::Anthropic, Some(model)).input, input);
        }
        // Older generations keep their own price; no generation, the family's.
        assert_eq!(
            t.price(Provider::Anthropic, Some("claude-opus-4-20250514"))
                .input,
            15000
        );
        assert_eq!(
            t.lookup(Provider::Anthropic, Some("claude-opus")).1,
            PriceMatch::Listed
        );
        assert_eq!(
            t.lookup(Provider::OpenAi, Some("mystery")).1,
            PriceMatch::Default
        );
    }

    #[test]
    fn estimates_count_text_and_output_as_the_request_states() {
        let body = br#"{"model":"gpt-5","max_tokens":100,"n":3,"messages":[{"role":"user","content":"hello there"}]}"#;
        let e = estimate(Provider::OpenAi, body, Some(100), Some(3), true);
        assert_eq!(e.input_tokens, (body.len() as u64).div_ceil(3));
        assert_eq!(e.output_tokens, 300);
        let e = estimate(Provider::OpenAi, body, Some(128_000), None, true);
        assert_eq!(e.output_tokens, LIKELY_OUTPUT);
        let e = estimate(Provider::OpenAi, body, None, Some(100_000), true);
        assert_eq!(e.output_tokens, LIKELY_OUTPUT * MAX_CHOICES);
        assert_eq!(
            estimate(Provider::Anthropic, body, None, None, false).output_tokens,
            0
        );
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
