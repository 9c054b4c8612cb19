//! Token counters for estimates: OpenAI's own tokenizers (`tiktoken-rs`:
//! `o200k_base` for the GPT-4o, GPT-5 and o-series models, `cl100k_base`
//! for GPT-4 and GPT-3.5), and the core's conservative ratio for the
//! families no public tokenizer covers (Claude, the open-weights models
//! Fireworks serves).

use std::sync::{Arc, LazyLock};

use llm_integration_core::translate::{messages_to_chat, Target, TranslateError};
use llm_integration_core::usage::{RatioCounter, TokenCounter};
use llm_integration_core::Provider;
use serde_json::Value;
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
        bounded_count((self.0)(), text)
    }
}

/// Text counted token by token at most, in bytes; past it, the rest is
/// counted at the ratio of what was. A tokenizer's cost grows with the
/// square of a word's length, and the text comes from tenants and
/// upstreams: a megabyte without a space must cost no more than this.
const EXACT_BYTES: usize = 64 * 1024;

/// The longest piece the tokenizer is given at once, in bytes: cut after
/// the last whitespace within it when there is one (so words stay whole),
/// else at a character boundary.
const PIECE_BYTES: usize = 512;

/// The largest character boundary of `text` at or below `at`.
fn boundary_at_or_before(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// `text`'s tokens by `bpe`, in bounded time: pieces of at most
/// [`PIECE_BYTES`], the first [`EXACT_BYTES`] counted exactly and the
/// rest extrapolated. Exact for ordinary text (cuts fall after
/// whitespace, where the tokenizer's own pre-split cuts too).
pub fn bounded_count(bpe: &CoreBPE, text: &str) -> u64 {
    let exact_end = boundary_at_or_before(text, EXACT_BYTES);
    let mut counted = 0u64;
    let mut at = 0;
    while at < exact_end {
        let mut end = boundary_at_or_before(text, at + PIECE_BYTES);
        if end <= at {
            // A character longer than a piece cannot happen (at most 4
            // bytes); step over one anyway rather than loop.
            end = text[at..]
                .char_indices()
                .nth(1)
                .map_or(text.len(), |(i, _)| at + i);
        }
        if end < exact_end {
            if let Some(space) = text[at..end].rfind(char::is_whitespace) {
                if space > 0 {
                    end = at + space;
                }
            }
        }
        counted += bpe.encode_ordinary(&text[at..end]).len() as u64;
        at = end;
    }
    let rest = (text.len() - exact_end) as u128;
    if rest == 0 || exact_end == 0 {
        return counted;
    }
    counted + (u128::from(counted) * rest / exact_end as u128) as u64
}

static O200K: LazyLock<Arc<dyn TokenCounter>> =
    LazyLock::new(|| Arc::new(Tiktoken(tiktoken_rs::o200k_base_singleton)));
static CL100K: LazyLock<Arc<dyn TokenCounter>> =
    LazyLock::new(|| Arc::new(Tiktoken(tiktoken_rs::cl100k_base_singleton)));
static RATIO: LazyLock<Arc<dyn TokenCounter>> = LazyLock::new(|| Arc::new(RatioCounter));

/// Builds `o200k_base`, the encoding of every current OpenAI model, now
/// rather than at the first stream that needs it. Building it takes a few
/// hundred milliseconds of CPU and keeps about 40 MB for the life of the
/// process; done on a request's path, it would stall the thread that
/// serves it. The server calls this at start, on a thread of its own;
/// `cl100k_base` (GPT-4, GPT-3.5) is still built at its first use.
pub fn warm() {
    tiktoken_rs::o200k_base_singleton();
}

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

/// Tokens counted for each image in an estimate: what OpenAI bills a
/// 1024×1024 image at high detail (85 + 170 per 512-pixel tile).
pub const IMAGE_TOKENS: u64 = 765;

/// Tokens counted for each PDF in an estimate: about three pages of text
/// and their images (the document's own pages are not read).
pub const DOCUMENT_TOKENS: u64 = 3_000;

/// Estimates the input tokens of an Anthropic Messages request (a
/// `count_tokens` body) for `model` of `provider` (OpenAI or Fireworks):
/// the request is read as the Chat Completions request it translates to
/// ([`llm_integration_core::translate::messages_to_chat`]) and counted by
/// OpenAI's rule for chat messages (3 tokens a message plus its role and
/// content, 3 for the reply's start), tool definitions by their JSON text,
/// images at [`IMAGE_TOKENS`] and PDFs at [`DOCUMENT_TOKENS`]. Returns the
/// count and the estimate's description for the
/// `llm-integration-estimate` header: OpenAI's own encoding for OpenAI
/// models; for Fireworks' open-weights models `o200k_base` as an
/// approximation (their tokenizers, Llama 3's, Qwen's, DeepSeek's, have
/// vocabularies of the same order and count English and code within a
/// few tenths of it). A conversation Chat Completions cannot carry (a
/// `tool_use` not yet answered, a block of an unknown type) is counted as
/// the JSON text of its `system`, `messages` and `tools`.
///
/// # Errors
/// [`TranslateError::InvalidBody`]: the body is not an Anthropic Messages
/// request.
pub fn estimate_input(
    provider: Provider,
    model: &str,
    body: &[u8],
) -> Result<(u64, &'static str), TranslateError> {
    let target = match provider {
        Provider::Fireworks => Target::Fireworks,
        _ => Target::OpenAi,
    };
    let translated = match messages_to_chat::request(body, target) {
        Ok(t) => Some(t),
        // A conversation Chat Completions could not carry (a tool call not
        // yet answered, say) still has a size.
        Err(TranslateError::Unexpressible { .. }) => None,
        Err(e) => return Err(e),
    };
    let old = provider == Provider::OpenAi
        && (model.starts_with("gpt-4-") || model == "gpt-4" || model.starts_with("gpt-3.5"));
    let (bpe, name) = match (provider, old) {
        (Provider::OpenAi, true) => (tiktoken_rs::cl100k_base_singleton(), "tiktoken cl100k_base"),
        (Provider::OpenAi, false) => (tiktoken_rs::o200k_base_singleton(), "tiktoken o200k_base"),
        _ => (
            tiktoken_rs::o200k_base_singleton(),
            "tiktoken o200k_base, approximating the model's own tokenizer",
        ),
    };
    let count = |text: &str| bounded_count(bpe, text);
    let Some(translated) = translated else {
        // Counted as the JSON text of what the model reads: more than its
        // content (the punctuation counts too), never less.
        let request: Value =
            serde_json::from_slice(body).map_err(|e| TranslateError::InvalidBody(e.to_string()))?;
        let total = ["system", "messages", "tools"]
            .iter()
            .filter_map(|member| request.get(*member))
            .map(|value| count(&value.to_string()))
            .sum::<u64>();
        return Ok((total + 3, name));
    };
    let chat: Value = serde_json::from_slice(&translated.body)
        .map_err(|e| TranslateError::InvalidBody(e.to_string()))?;
    let mut total = 3;
    for message in chat["messages"].as_array().into_iter().flatten() {
        total += 3;
        total += count(message["role"].as_str().unwrap_or(""));
        match &message["content"] {
            Value::String(text) => total += count(text),
            Value::Array(parts) => {
                for part in parts {
                    total += match part["type"].as_str() {
                        Some("text") => count(part["text"].as_str().unwrap_or("")),
                        Some("image_url") => IMAGE_TOKENS,
                        Some("file") => DOCUMENT_TOKENS,
                        _ => count(&part.to_string()),
                    };
                }
            }
            _ => {}
        }
        for call in message["tool_calls"].as_array().into_iter().flatten() {
            total += count(call["function"]["name"].as_str().unwrap_or(""));
            total += count(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    for tool in chat["tools"].as_array().into_iter().flatten() {
        total += count(&tool["function"].to_string());
    }
    Ok((total, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_count_text_messages_tools_and_images() {
        let small = br#"{"model":"gpt-5.5","messages":[{"role":"user","content":"Hello"}]}"#;
        let (n, name) = estimate_input(Provider::OpenAi, "gpt-5.5", small).unwrap();
        assert_eq!(name, "tiktoken o200k_base");
        // 3 (reply) + 3 (message) + "user" + "Hello".
        assert_eq!(n, 8);
        let big = br#"{"model":"gpt-5.5","system":"Be brief.","tools":[{"name":"Bash","input_schema":{"type":"object"}}],
"messages":[{"role":"user","content":[{"type":"text","text":"Hello"},
{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]}]}"#;
        let (m, _) = estimate_input(Provider::OpenAi, "gpt-5.5", big).unwrap();
        assert!(m > n + IMAGE_TOKENS, "{m}");
        let (_, name) = estimate_input(
            Provider::Fireworks,
            "accounts/fireworks/models/glm-4p6",
            small,
        )
        .unwrap();
        assert!(name.contains("approximating"));
        assert!(estimate_input(Provider::OpenAi, "gpt-5.5", b"[]").is_err());
        // A tool call still unanswered: counted by its JSON text.
        let pending = br#"{"model":"gpt-5.5","messages":[{"role":"user","content":"Hello"},
{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}]}]}"#;
        let (p, _) = estimate_input(Provider::OpenAi, "gpt-5.5", pending).unwrap();
        assert!(p > n, "{p}");
    }

    #[test]
    fn counting_is_bounded_and_exact_for_ordinary_text() {
        let bpe = tiktoken_rs::o200k_base_singleton();
        let prose = "The gateway counts tokens the way the provider does. ".repeat(200);
        assert_eq!(
            bounded_count(bpe, &prose),
            bpe.encode_ordinary(&prose).len() as u64
        );
        // A run without spaces far past the exact part: bounded, no panic,
        // extrapolated from what was counted.
        let run = "a".repeat(8 * 1024 * 1024);
        let n = bounded_count(bpe, &run);
        assert!(n > 100_000 && n < 8 * 1024 * 1024, "{n}");
        let wide = "é".repeat(40_000);
        assert!(bounded_count(bpe, &wide) > 0);
        assert_eq!(bounded_count(bpe, ""), 0);
    }

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
