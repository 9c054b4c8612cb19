//! Reading token usage out of provider responses, streaming or not.
//!
//! [`UsageMeter`] is fed the response body chunk by chunk, exactly as it is
//! relayed, and gives the same answer whatever the split (a property test
//! checks it). It never holds the stream: for an event stream it keeps the
//! current event only (and parses only events that can carry usage); for a
//! JSON body it follows the document's structure
//! ([`crate::json_scan::TopLevelScanner`]) and keeps only the response's
//! own top-level `usage` and `model`, wherever they stand, never a member
//! of the same name inside content the caller controls.
//!
//! Rules (from the providers' API references): Anthropic streams take input
//! and cache counts from `message_start`, overridden by any in the last
//! `message_delta`, and output from the last `message_delta`; Chat
//! Completions streams from the chunk with a non-null `usage` (Fireworks
//! puts it on the final chunk); Responses streams from
//! `response.completed` (or `.incomplete`, `.failed`); JSON bodies from the
//! top-level `usage`. OpenAI's `prompt_tokens` include cached tokens, which
//! are counted apart here.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::json_scan::TopLevelScanner;
use crate::seams::TokenUsage;
use crate::sse::SseFramer;

/// The fields of an event that carry usage or the model; the rest of the
/// event (the content deltas) is skipped by the parser, not built.
#[derive(Deserialize, Default)]
struct EventProbe<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Value,
    /// Anthropic's `message_start`.
    #[serde(borrow, default)]
    message: Option<MaybeNested<'a>>,
    /// The Responses API's final events.
    #[serde(borrow, default)]
    response: Option<MaybeNested<'a>>,
    /// Content: Anthropic's `content_block_delta` (an object), the
    /// Responses API's `*.delta` events (a string).
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    /// Content: Chat Completions and Completions chunks.
    #[serde(borrow, default)]
    choices: Option<Vec<ChoiceProbe<'a>>>,
    /// An OpenAI error chunk's `error` (it ends the stream).
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// An event's `delta`: text (Responses API) or an object (Anthropic).
#[derive(Deserialize)]
#[serde(untagged)]
enum Delta<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Object(#[serde(borrow)] DeltaObject<'a>),
    Other(serde::de::IgnoredAny),
}

/// Anthropic's content deltas: text, tool input, thinking.
#[derive(Deserialize, Default)]
struct DeltaObject<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
}

/// A Chat Completions or Completions choice in a stream chunk.
#[derive(Deserialize, Default)]
struct ChoiceProbe<'a> {
    #[serde(borrow, default)]
    delta: Option<ChatDelta<'a>>,
    /// Completions.
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// A Chat Completions delta: text, reasoning, refusal, tool arguments.
#[derive(Deserialize, Default)]
struct ChatDelta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallProbe<'a>>>,
}

#[derive(Deserialize, Default)]
struct ToolCallProbe<'a> {
    #[serde(borrow, default)]
    function: Option<FunctionProbe<'a>>,
}

#[derive(Deserialize, Default)]
struct FunctionProbe<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// Counts the tokens of text: a real tokenizer where one exists for the
/// model's family (the server's), else [`RatioCounter`].
pub trait TokenCounter: Send + Sync + std::fmt::Debug {
    /// The tokens of `text`.
    fn count(&self, text: &str) -> u64;
}

/// The conservative estimate where no tokenizer is at hand: one token per
/// [`RatioCounter::BYTES_PER_TOKEN`] bytes of UTF-8, rounded up. English
/// runs about four characters a token and code about three, and a CJK
/// character (three bytes) is about one token, so this counts at least as
/// many tokens as the providers' tokenizers on the texts they see.
#[derive(Debug, Clone, Copy, Default)]
pub struct RatioCounter;

impl RatioCounter {
    /// Bytes of UTF-8 per token.
    pub const BYTES_PER_TOKEN: u64 = 3;

    /// The tokens of `bytes` bytes of text.
    pub const fn tokens(bytes: u64) -> u64 {
        bytes.div_ceil(Self::BYTES_PER_TOKEN)
    }
}

impl TokenCounter for RatioCounter {
    fn count(&self, text: &str) -> u64 {
        Self::tokens(text.len() as u64)
    }
}

/// The most tokens one figure of a usage report can be (ten million: more
/// than any model's context or output). A larger figure is not a count but
/// a faulty or hostile upstream's: the report holding it is not believed,
/// and the request is charged an estimate, as if no report had come.
pub const MAX_TOKENS: u64 = 10_000_000;

/// A usage figure: a count from 0 to [`MAX_TOKENS`] (a whole number, or a
/// float rounded up, as some compatible servers write them); `None` for
/// anything else (a negative, a string, a figure past any model).
fn figure(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return (n <= MAX_TOKENS).then_some(n);
    }
    match v.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 && f <= MAX_TOKENS as f64 => Some(f.ceil() as u64),
        _ => None,
    }
}

/// Text kept before it is counted (so the tokenizer sees whole words, and
/// the memory of a stream stays small).
const PENDING_TEXT: usize = 16 * 1024;

/// What a request consumed, and whether the provider said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reading {
    /// The tokens.
    pub tokens: TokenUsage,
    /// Estimated: the provider's final figures never came (the client hung
    /// up, the upstream failed, the gateway stopped), so output is counted
    /// from what was relayed and input from the stream's early figures or
    /// the request.
    pub estimated: bool,
}

/// An object with `model` and `usage`, or anything else under that name
/// (an error's `message` string), which is ignored.
#[derive(Deserialize)]
#[serde(untagged)]
enum MaybeNested<'a> {
    Nested(#[serde(borrow)] Nested<'a>),
    Other(serde::de::IgnoredAny),
}

impl<'a> MaybeNested<'a> {
    fn into_nested(self) -> Nested<'a> {
        match self {
            MaybeNested::Nested(n) => n,
            MaybeNested::Other(_) => Nested::default(),
        }
    }
}

/// `model` and `usage` one level down.
#[derive(Deserialize, Default)]
struct Nested<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Value,
}

/// Cached and cache-written counts that are parts of an OpenAI-shaped
/// `total` input (when it is given): cut to fit inside it.
fn within(total: Option<u64>, cached: u64, written: u64) -> (u64, u64) {
    match total {
        Some(total) => {
            let cached = cached.min(total);
            (cached, written.min(total - cached))
        }
        None => (cached, written),
    }
}

/// Accumulates usage from a response body.
#[derive(Debug, Clone)]
pub struct UsageMeter {
    sse: bool,
    /// Frames an event stream fed with [`UsageMeter::feed`].
    framer: SseFramer,
    /// Finds a JSON body's top-level `usage` and `model`.
    json: TopLevelScanner,
    usage: TokenUsage,
    seen: bool,
    /// An input figure was reported (Anthropic's `message_start` gives it
    /// before any content).
    input_seen: bool,
    /// The provider's final usage arrived.
    complete: bool,
    /// The stream's last event by its API arrived: `message_stop`,
    /// `[DONE]`, a terminal `response.*` event, or an error event.
    ended: bool,
    model: Option<String>,
    /// Counts relayed content.
    counter: std::sync::Arc<dyn TokenCounter>,
    /// Relayed content not yet counted.
    pending: String,
    /// Tokens of the relayed content counted so far.
    counted: u64,
    /// Bytes of a JSON body fed so far.
    json_bytes: u64,
}

impl Default for UsageMeter {
    fn default() -> Self {
        UsageMeter::new(false)
    }
}

impl UsageMeter {
    /// A meter for an event stream (`sse`) or a JSON body.
    pub fn new(sse: bool) -> Self {
        UsageMeter {
            sse,
            framer: SseFramer::default(),
            json: TopLevelScanner::new(&["usage", "model"]),
            usage: TokenUsage::default(),
            seen: false,
            input_seen: false,
            complete: false,
            ended: false,
            model: None,
            counter: std::sync::Arc::new(RatioCounter),
            pending: String::new(),
            counted: 0,
            json_bytes: 0,
        }
    }

    /// The same meter, counting relayed content with `counter`.
    #[must_use]
    pub fn with_counter(mut self, counter: std::sync::Arc<dyn TokenCounter>) -> Self {
        self.counter = counter;
        self
    }

    fn content(&mut self, text: &str) {
        self.pending.push_str(text);
        if self.pending.len() >= PENDING_TEXT {
            // Count up to the last whitespace, so no word is split.
            let cut = self
                .pending
                .rfind(char::is_whitespace)
                .map_or(self.pending.len(), |i| i + 1);
            self.counted += self.counter.count(&self.pending[..cut]);
            self.pending.drain(..cut);
        }
    }

    /// Tokens of what was relayed so far: the content of an event stream,
    /// or a JSON body's bytes by the conservative ratio.
    pub fn relayed_tokens(&self) -> u64 {
        if self.sse {
            self.counted + self.counter.count(&self.pending)
        } else {
            RatioCounter::tokens(self.json_bytes)
        }
    }

    /// Whether the provider's final usage arrived.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Whether the stream's last event by its API arrived: Anthropic's
    /// `message_stop`, Chat Completions' `[DONE]`, the Responses API's
    /// `response.completed` (`.incomplete`, `.failed`), or an error event
    /// (the stream says itself that it failed).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Feeds the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.sse {
            self.json_bytes += chunk.len() as u64;
            self.json.feed(chunk);
            return;
        }
        let mut framer = std::mem::take(&mut self.framer);
        framer.feed(chunk, &mut |e| {
            if e.has_data && !e.oversize {
                self.event(e.data);
            }
        });
        self.framer = framer;
    }

    /// One event of a stream, by its data (for a caller that frames the
    /// stream itself, such as [`crate::relay::ResponseRelay`]).
    pub fn event(&mut self, data: &[u8]) {
        if data.first() != Some(&b'{') {
            if data.trim_ascii() == b"[DONE]" {
                self.ended = true;
            }
            return;
        }
        // Checked as UTF-8 once, the event is read as text: the same
        // parse without a UTF-8 check of each key and string. Invalid
        // UTF-8 is read as bytes, as it always was (a bad byte in a
        // skipped string does not void the event).
        let parsed = match std::str::from_utf8(data) {
            Ok(text) => serde_json::from_str::<EventProbe<'_>>(text),
            Err(_) => serde_json::from_slice::<EventProbe<'_>>(data),
        };
        if let Ok(event) = parsed {
            self.probe(event);
        }
    }

    fn probe(&mut self, e: EventProbe<'_>) {
        match &e.delta {
            Some(Delta::Text(text)) => self.content(text),
            Some(Delta::Object(d)) => {
                for text in [&d.text, &d.partial_json, &d.thinking]
                    .into_iter()
                    .flatten()
                {
                    self.content(text);
                }
            }
            _ => {}
        }
        for choice in e.choices.iter().flatten() {
            if let Some(text) = &choice.text {
                self.content(text);
            }
            let Some(delta) = &choice.delta else { continue };
            for text in [
                &delta.content,
                &delta.reasoning_content,
                &delta.reasoning,
                &delta.refusal,
            ]
            .into_iter()
            .flatten()
            {
                self.content(text);
            }
            for call in delta.tool_calls.iter().flatten() {
                if let Some(f) = &call.function {
                    for text in [&f.name, &f.arguments].into_iter().flatten() {
                        self.content(text);
                    }
                }
            }
        }
        if matches!(
            e.kind.as_deref(),
            Some(
                "message_stop"
                    | "error"
                    | "response.completed"
                    | "response.incomplete"
                    | "response.failed"
            )
        ) || (e.kind.is_none() && e.error.is_some())
        {
            self.ended = true;
        }
        match e.kind.as_deref() {
            Some("message_start") => {
                let message = e.message.map(MaybeNested::into_nested).unwrap_or_default();
                self.note_model(message.model);
                self.apply_anthropic(&message.usage);
            }
            Some("message_delta") => {
                if self.apply_anthropic(&e.usage) {
                    self.complete = true;
                }
            }
            Some("response.completed" | "response.incomplete" | "response.failed") => {
                let response = e.response.map(MaybeNested::into_nested).unwrap_or_default();
                self.note_model(response.model);
                if self.apply(&response.usage) {
                    self.complete = true;
                }
            }
            // Only the events that carry usage in each API: a `usage`
            // elsewhere (a ping, a content event) is not read.
            Some(_) => self.note_model(e.model),
            None => {
                self.note_model(e.model);
                if self.apply(&e.usage) {
                    self.complete = true;
                }
            }
        }
    }

    fn note_model(&mut self, model: Option<Cow<'_, str>>) {
        if self.model.is_none() {
            self.model = model.map(Cow::into_owned);
        }
    }

    /// Anthropic counts (`message_start`, `message_delta`, a message).
    /// Returns whether the report was readable.
    fn apply_anthropic(&mut self, u: &Value) -> bool {
        if !u.is_object() {
            return false;
        }
        let fields = [
            u.get("input_tokens"),
            u.get("output_tokens"),
            u.get("cache_creation_input_tokens"),
            u.get("cache_read_input_tokens"),
        ];
        // A report is read only if every figure it gives is a count.
        if fields.iter().flatten().any(|v| figure(v).is_none())
            || fields.iter().all(Option::is_none)
        {
            return false;
        }
        let [input, output, written, read] = fields.map(|f| f.and_then(figure));
        // The prompt is the three input figures together: past any model,
        // it is no count either.
        let prompt = [input, written, read]
            .iter()
            .map(|f| f.unwrap_or(0))
            .fold(0u64, u64::saturating_add);
        if prompt > MAX_TOKENS {
            return false;
        }
        if input.is_some() {
            self.input_seen = true;
        }
        self.merge(TokenUsage {
            input: input.unwrap_or(0),
            output: output.unwrap_or(0),
            cache_creation: written.unwrap_or(0),
            cache_read: read.unwrap_or(0),
        });
        true
    }

    /// Keeps the larger of each figure: a provider's counts only grow over
    /// a stream, and a second, smaller report (a duplicate, a figure in the
    /// wrong event) cannot lower what was reported.
    fn merge(&mut self, u: TokenUsage) {
        self.seen = true;
        self.usage.input = self.usage.input.max(u.input);
        self.usage.output = self.usage.output.max(u.output);
        self.usage.cache_creation = self.usage.cache_creation.max(u.cache_creation);
        self.usage.cache_read = self.usage.cache_read.max(u.cache_read);
    }

    /// Any provider's `usage` object. Returns whether it was readable.
    fn apply(&mut self, u: &Value) -> bool {
        if !u.is_object() {
            return false;
        }
        let get = |path: &[&str]| -> Result<Option<u64>, ()> {
            let mut v = u;
            for key in path {
                match v.get(key) {
                    Some(next) => v = next,
                    None => return Ok(None),
                }
            }
            if v.is_null() {
                return Ok(None);
            }
            figure(v).map(Some).ok_or(())
        };
        // A main figure given must be a count: `null` there is no report
        // (the request would otherwise go free).
        let count = |key: &str| -> Result<Option<u64>, ()> {
            match u.get(key) {
                None => Ok(None),
                Some(v) => figure(v).map(Some).ok_or(()),
            }
        };
        let read = || -> Result<Option<(TokenUsage, bool)>, ()> {
            if u.get("prompt_tokens").is_some() || u.get("completion_tokens").is_some() {
                // OpenAI Chat Completions, Completions, Embeddings; Fireworks.
                let cached = get(&["prompt_tokens_details", "cached_tokens"])?.unwrap_or(0);
                let written = get(&["prompt_tokens_details", "cache_write_tokens"])?.unwrap_or(0);
                let prompt = count("prompt_tokens")?;
                let output = count("completion_tokens")?.unwrap_or(0);
                // Parts of the prompt: never more than it.
                let (cached, written) = within(prompt, cached, written);
                return Ok(Some((
                    TokenUsage {
                        input: prompt
                            .unwrap_or(0)
                            .saturating_sub(cached.saturating_add(written)),
                        output,
                        cache_creation: written,
                        cache_read: cached,
                    },
                    prompt.is_some(),
                )));
            }
            if u.get("input_tokens").is_some() || u.get("output_tokens").is_some() {
                // Responses (input includes cached tokens).
                let cached = get(&["input_tokens_details", "cached_tokens"])?.unwrap_or(0);
                let written = get(&["input_tokens_details", "cache_write_tokens"])?.unwrap_or(0);
                let input = count("input_tokens")?;
                let output = count("output_tokens")?.unwrap_or(0);
                let (cached, written) = within(input, cached, written);
                return Ok(Some((
                    TokenUsage {
                        input: input
                            .unwrap_or(0)
                            .saturating_sub(cached.saturating_add(written)),
                        output,
                        cache_creation: written,
                        cache_read: cached,
                    },
                    input.is_some(),
                )));
            }
            Ok(None)
        };
        if u.get("cache_creation_input_tokens").is_some()
            || u.get("cache_read_input_tokens").is_some()
        {
            return self.apply_anthropic(u);
        }
        if u.get("input_tokens").is_some()
            && u.get("input_tokens_details").is_none()
            && u.get("output_tokens").is_some()
        {
            // Anthropic without cache fields (input excludes cache reads).
            return self.apply_anthropic(u);
        }
        match read() {
            Ok(Some((usage, input))) => {
                if input {
                    self.input_seen = true;
                }
                self.merge(usage);
                true
            }
            _ => false,
        }
    }

    /// The usage found so far (call when the body ended, was cut off or
    /// failed). `None` when the body carried none.
    pub fn finish(&mut self) -> Option<TokenUsage> {
        if !self.sse {
            self.json_tail();
        } else {
            let mut framer = std::mem::take(&mut self.framer);
            framer.finish(&mut |e| {
                if e.has_data && !e.oversize {
                    self.event(e.data);
                }
            });
            self.framer = framer;
        }
        self.seen.then_some(self.usage)
    }

    /// What the request consumed, when the answer ended, was cut off or
    /// failed. The provider's figures when its final usage arrived (or,
    /// for an answer that was not a success, whatever it reported);
    /// otherwise an estimate: output no less than the tokens of the content
    /// relayed nor `output_floor` (the caller's bound for what may have been
    /// generated unseen, such as hidden reasoning), input from the stream's
    /// early figures, else `input_estimate` (the request's).
    pub fn reading(
        &mut self,
        success: bool,
        input_estimate: u64,
        output_floor: u64,
    ) -> Option<Reading> {
        let reported = self.finish();
        if self.complete || !success {
            return reported.map(|tokens| Reading {
                tokens,
                estimated: false,
            });
        }
        let mut tokens = reported.unwrap_or_default();
        if !self.input_seen {
            tokens.input = input_estimate.min(MAX_TOKENS);
        }
        tokens.output = tokens
            .output
            .max(self.relayed_tokens().max(output_floor).min(MAX_TOKENS));
        Some(Reading {
            tokens,
            estimated: true,
        })
    }

    /// The model named by the response, when it names one.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn json_tail(&mut self) {
        if let Some(model) = self.json.value("model") {
            let model = serde_json::from_slice::<String>(model).ok();
            self.note_model(model.map(Cow::Owned));
        }
        // Every `usage` member of a body repeating it: the larger of each
        // figure stands, whichever one a client's parser keeps.
        let reports: Vec<Value> = self
            .json
            .values("usage")
            .filter_map(|u| serde_json::from_slice(u).ok())
            .collect();
        for usage in &reports {
            if self.apply(usage) {
                self.complete = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(sse: bool, body: &str) -> Option<TokenUsage> {
        let mut m = UsageMeter::new(sse);
        m.feed(body.as_bytes());
        m.finish()
    }

    #[test]
    fn an_event_is_read_alike_as_text_and_with_invalid_utf8_in_what_is_skipped() {
        let read = |id: &[u8]| {
            let mut m = UsageMeter::new(true);
            let mut event = b"data: {\"id\":\"".to_vec();
            event.extend_from_slice(id);
            event.extend_from_slice(
                b"\",\"model\":\"gpt-5.5\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
            );
            m.feed(&event);
            (m.finish(), m.model().map(str::to_owned))
        };
        let valid = read(b"chatcmpl-1");
        assert_eq!(valid.0.map(|u| (u.input, u.output)), Some((7, 2)));
        assert_eq!(valid.1.as_deref(), Some("gpt-5.5"));
        assert_eq!(read(b"chat\xffcmpl-1"), valid);
    }

    #[test]
    fn cached_counts_never_exceed_the_prompt_they_are_part_of() {
        let u = meter(
            false,
            r#"{"usage":{"prompt_tokens":10,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":1000}}}"#,
        )
        .unwrap();
        assert_eq!((u.input, u.cache_read, u.output), (0, 10, 1));
        let u = meter(
            false,
            r#"{"object":"response","usage":{"input_tokens":30,"output_tokens":2,"input_tokens_details":{"cached_tokens":20,"cache_write_tokens":50}}}"#,
        )
        .unwrap();
        assert_eq!((u.input, u.cache_read, u.cache_creation), (0, 20, 10));
    }

    #[test]
    fn a_stream_has_ended_by_its_apis_last_event_only() {
        let ended = |body: &str| {
            let mut m = UsageMeter::new(true);
            m.feed(body.as_bytes());
            m.is_ended()
        };
        assert!(ended(ANTHROPIC_STREAM));
        let cut = &ANTHROPIC_STREAM[..ANTHROPIC_STREAM.find("event: message_stop").unwrap()];
        assert!(!ended(cut), "message_delta with usage is not the end");
        assert!(ended("data: {\"choices\":[]}\n\ndata: [DONE]\n\n"));
        assert!(!ended(
            "data: {\"choices\":[{\"delta\":{\"content\":\"[DONE]\"}}]}\n\n"
        ));
        assert!(ended("data: {\"error\":{\"message\":\"boom\"}}\n\n"));
        assert!(ended(
            "event: error\ndata: {\"type\":\"error\",\"error\":{}}\n\n"
        ));
        assert!(ended(
            "data: {\"type\":\"response.failed\",\"response\":{}}\n\n"
        ));
        assert!(!ended(
            "data: {\"type\":\"response.output_text.delta\",\"delta\":\"x\"}\n\n"
        ));
    }

    const ANTHROPIC_STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1,\"cache_creation_input_tokens\":2,\"cache_read_input_tokens\":3}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"usage is a word\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":57}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn anthropic_stream() {
        let mut m = UsageMeter::new(true);
        m.feed(ANTHROPIC_STREAM.as_bytes());
        assert_eq!(
            m.finish(),
            Some(TokenUsage {
                input: 12,
                output: 57,
                cache_creation: 2,
                cache_read: 3
            })
        );
        assert_eq!(m.model(), Some("claude-x"));
    }

    #[test]
    fn anthropic_delta_overrides_input() {
        let body = "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\r\n\r\n\
data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":15,\"output_tokens\":9}}\r\n\r\n";
        assert_eq!(
            meter(true, body),
            Some(TokenUsage {
                input: 15,
                output: 9,
                cache_creation: 0,
                cache_read: 0
            })
        );
    }

    #[test]
    fn chat_stream_usage_chunk_and_fireworks_final_chunk() {
        let body = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":8}}}\n\n\
data: [DONE]\n\n";
        assert_eq!(
            meter(true, body),
            Some(TokenUsage {
                input: 12,
                output: 5,
                cache_creation: 0,
                cache_read: 8
            })
        );
        let fireworks = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n";
        assert_eq!(
            meter(true, fireworks),
            Some(TokenUsage {
                input: 7,
                output: 3,
                cache_creation: 0,
                cache_read: 0
            })
        );
    }

    #[test]
    fn responses_stream() {
        let body = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-5.5\",\"usage\":{\"input_tokens\":30,\"input_tokens_details\":{\"cached_tokens\":10},\"output_tokens\":4}}}\n\n";
        let mut m = UsageMeter::new(true);
        m.feed(body.as_bytes());
        assert_eq!(
            m.finish(),
            Some(TokenUsage {
                input: 20,
                output: 4,
                cache_creation: 0,
                cache_read: 10
            })
        );
        assert_eq!(m.model(), Some("gpt-5.5"));
    }

    #[test]
    fn json_bodies() {
        let anthropic = r#"{"id":"m","model":"claude-x","usage":{"input_tokens":12,"output_tokens":3,"cache_creation_input_tokens":2,"cache_read_input_tokens":3}}"#;
        assert_eq!(
            meter(false, anthropic),
            Some(TokenUsage {
                input: 12,
                output: 3,
                cache_creation: 2,
                cache_read: 3
            })
        );
        let embeddings =
            r#"{"object":"list","data":[],"usage":{"prompt_tokens":5,"total_tokens":5}}"#;
        assert_eq!(
            meter(false, embeddings),
            Some(TokenUsage {
                input: 5,
                output: 0,
                cache_creation: 0,
                cache_read: 0
            })
        );
        let responses = r#"{"object":"response","usage":{"input_tokens":9,"output_tokens":2,"input_tokens_details":{"cached_tokens":0}}}"#;
        assert_eq!(
            meter(false, responses),
            Some(TokenUsage {
                input: 9,
                output: 2,
                cache_creation: 0,
                cache_read: 0
            })
        );
        assert_eq!(meter(false, "<html>not json</html>"), None);
        assert_eq!(meter(true, "data: [DONE]\n\n"), None);
    }

    #[test]
    fn long_json_bodies_keep_only_a_tail() {
        let filler = "0.125,".repeat(200_000);
        let body = format!(
            r#"{{"data":[{{"embedding":[{filler}0.5]}}],"model":"m","usage":{{"prompt_tokens":77,"total_tokens":77}}}}"#
        );
        let mut m = UsageMeter::new(false);
        for chunk in body.as_bytes().chunks(8192) {
            m.feed(chunk);
        }
        assert_eq!(
            m.finish(),
            Some(TokenUsage {
                input: 77,
                output: 0,
                cache_creation: 0,
                cache_read: 0
            })
        );
    }

    #[test]
    fn malformed_or_duplicated_figures_never_lower_a_charge() {
        // Floats round up.
        let u = meter(true, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1000.2,\"completion_tokens\":9.5}}\n\n").unwrap();
        assert_eq!((u.input, u.output), (1001, 10));
        // A negative, a string or a figure past any model (as a float or
        // a whole number) is not a report: the stream stays unfinished,
        // and is estimated.
        for bad in ["-5", "\"300\"", "1e300", "1e30", "10000001", "null"] {
            let body = format!(
                "data: {{\"choices\":[{{\"delta\":{{\"content\":\"hello there friend\"}}}}]}}\n\ndata: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":10,\"completion_tokens\":{bad}}}}}\n\n"
            );
            let mut m = UsageMeter::new(true);
            m.feed(body.as_bytes());
            let r = m.reading(true, 77, 0).unwrap();
            {
                assert!(r.estimated, "{bad}");
                assert!(r.tokens.output >= 6, "{bad}: {r:?}");
                assert!(
                    r.tokens.output < 100,
                    "{bad}: charged what was relayed: {r:?}"
                );
                assert_eq!(r.tokens.input, 77, "{bad}: the request's estimate");
            }
        }
        // Anthropic's three input figures are one prompt: together past
        // any model, they are no count; the record is an estimate.
        let body = "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9999999,\"cache_creation_input_tokens\":9999999,\"cache_read_input_tokens\":9999999,\"output_tokens\":1}}}\n\n";
        let mut m = UsageMeter::new(true);
        m.feed(body.as_bytes());
        let r = m.reading(true, 77, 0).unwrap();
        assert!(r.estimated);
        assert_eq!(r.tokens.input, 77);
        assert_eq!(r.tokens.cache_creation + r.tokens.cache_read, 0);
        // A repeated `usage` member of a JSON body: its larger figures
        // stand, whichever a client's parser keeps.
        for body in [
            r#"{"usage":{"prompt_tokens":100000,"completion_tokens":5},"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
            r#"{"usage":{"prompt_tokens":1,"completion_tokens":1},"usage":{"prompt_tokens":2},"usage":{"prompt_tokens":100000,"completion_tokens":5}}"#,
        ] {
            let u = meter(false, body).unwrap();
            assert_eq!((u.input, u.output), (100_000, 5), "{body}");
        }
        // A usage in a ping, or a second smaller report, cannot lower it.
        let body = "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1000,\"output_tokens\":1}}}\n\n\
data: {\"type\":\"ping\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}\n\n\
data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":30000}}\n\n\
data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":1}}\n\n";
        let u = meter(true, body).unwrap();
        assert_eq!((u.input, u.output), (1000, 30000));
    }

    #[test]
    fn json_usage_is_the_response_s_own() {
        // As the Responses API orders it: usage, then the caller's echoed
        // metadata, which may hold a `usage` of its own; 600 KB of output.
        let text = "word ".repeat(120_000);
        let body = format!(
            r#"{{"object":"response","output":[{{"type":"message","content":[{{"type":"output_text","text":"{text}"}}]}}],"usage":{{"input_tokens":150000,"output_tokens":20,"input_tokens_details":{{"cached_tokens":0}}}},"metadata":{{"usage":"x"}}}}"#
        );
        for split in [4096, 65536] {
            let mut m = UsageMeter::new(false);
            for chunk in body.as_bytes().chunks(split) {
                m.feed(chunk);
            }
            let u = m.finish().unwrap();
            assert_eq!((u.input, u.output), (150_000, 20), "split {split}");
        }
        // A `usage` inside content is never read.
        assert_eq!(
            meter(
                false,
                r#"{"choices":[{"message":{"usage":{"prompt_tokens":9}}}]}"#
            ),
            None
        );
    }

    #[test]
    fn events_with_odd_fields_still_count() {
        // A top-level `message` string, an escaped model name, an object
        // under `response`: only `model` and `usage` matter.
        let body = "data: {\"message\":\"hi\",\"model\":\"m\\u0031\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n";
        let mut m = UsageMeter::new(true);
        m.feed(body.as_bytes());
        let usage = m.finish().unwrap();
        assert_eq!((usage.input, usage.output), (3, 4));
        assert_eq!(m.model(), Some("m1"));
    }

    #[test]
    fn a_cut_stream_keeps_what_it_saw() {
        let cut = &ANTHROPIC_STREAM[..ANTHROPIC_STREAM.find("event: message_delta").unwrap() + 30];
        assert_eq!(
            meter(true, cut),
            Some(TokenUsage {
                input: 12,
                output: 1,
                cache_creation: 2,
                cache_read: 3
            })
        );
    }
}
