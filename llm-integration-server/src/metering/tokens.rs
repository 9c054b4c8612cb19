//! Token counters for estimates: OpenAI's own tokenizers (`tiktoken-rs`:
//! `o200k_base` for the GPT-4o, GPT-5 and o-series models, `cl100k_base`
//! for GPT-4 and GPT-3.5), and the core's conservative ratio for the
//! families no public tokenizer covers (Claude, the open-weights models
//! Fireworks serves).

use std::sync::{Arc, LazyLock};

use llm_integration_core::usage::{RatioCounter, TokenCounter};
use llm_integration_core::Provider;
use tiktoken_rs::CoreBPE;

/// A `tiktoken` encoding.
struct Tiktoken(fn() -> &'static CoreBPE);

impl std::fmt::Debug for Tiktoken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tiktoken")
    }
}

impl TokenCounter for Tiktoken {
    fn count(&self, text: &str) -> u64 {
        (self.0)().encode_ordinary(text).len() as u64
    }
}

static O200K: LazyLock<Arc<dyn TokenCounter>> =
    LazyLock::new(|| Arc::new(Tiktoken(tiktoken_rs::o200k_base_singleton)));
static CL100K: LazyLock<Arc<dyn TokenCounter>> =
    LazyLock::new(|| Arc::new(Tiktoken(tiktoken_rs::cl100k_base_singleton)));
static RATIO: LazyLock<Arc<dyn TokenCounter>> = LazyLock::new(|| Arc::new(RatioCounter));

/// The counter for `model` of `provider`.
pub fn counter_for(provider: Provider, model: Option<&str>) -> Arc<dyn TokenCounter> {
    match (provider, model) {
        (Provider::OpenAi, Some(m))
            if m.starts_with("gpt-4-") || m == "gpt-4" || m.starts_with("gpt-3.5") =>
        {
            CL100K.clone()
        }
        (Provider::OpenAi, _) => O200K.clone(),
        (Provider::Anthropic | Provider::Fireworks, _) => RATIO.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_by_family() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
        let openai = counter_for(Provider::OpenAi, Some("gpt-5.5")).count(&text);
        assert!(
            (180..=220).contains(&openai),
            "o200k counts about 10 tokens a sentence: {openai}"
        );
        let claude = counter_for(Provider::Anthropic, Some("claude-opus-5-5")).count(&text);
        assert_eq!(claude, (text.len() as u64).div_ceil(3));
        assert!(claude > openai, "the ratio is conservative");
    }
}
