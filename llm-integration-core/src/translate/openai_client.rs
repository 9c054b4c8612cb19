//! What the two OpenAI-client directions ([`super::chat_to_messages`] and
//! [`super::responses_to_messages`]) share: the Anthropic Messages request
//! they build (turn alternation, thinking budget, tools, images, prompt
//! caching breakpoints) and the Anthropic answer they read (usage, stop
//! reasons, error bodies).
//!
//! Anthropic shapes follow the Anthropic Messages API reference (the `anthropic-sdk-python`
//! types it cites); OpenAI shapes follow the OpenAI API reference (`openai-python` types).

use serde_json::{json, Map, Value};

use super::{Dropped, TranslateError};

/// `max_tokens` sent when the client names no output limit: Anthropic
/// requires one, OpenAI does not. 32 000 is what Claude Code itself sends
/// and within every current Claude model's output limit.
pub(super) const DEFAULT_MAX_TOKENS: u64 = 32_000;

/// Anthropic's smallest thinking budget (`thinking.budget_tokens`).
pub(super) const MIN_THINKING_BUDGET: u64 = 1_024;

/// Appended to a freeform (`custom`) tool's name in the Anthropic request,
/// so the tool use in the answer maps back to a `custom_tool_call` without
/// the request at hand. A function tool may not end with it.
pub(super) const CUSTOM_TOOL_SUFFIX: &str = "__freeform";

/// The single string member of the object a freeform tool takes.
pub(super) const CUSTOM_TOOL_INPUT: &str = "input";

/// Marks a Responses `reasoning` item's `encrypted_content` that carries an
/// Anthropic thinking block's `signature`, so the block goes back upstream
/// whole on the next turn.
pub(super) const THINKING_MARK: &str = "llm-integration.anthropic.thinking:";

/// Marks an `encrypted_content` that carries a `redacted_thinking` block's
/// `data`.
pub(super) const REDACTED_MARK: &str = "llm-integration.anthropic.redacted_thinking:";

/// A `TranslateError::Unexpressible` for `field`.
pub(super) fn unexpressible(field: impl Into<String>, reason: impl Into<String>) -> TranslateError {
    TranslateError::Unexpressible {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A `TranslateError::InvalidBody` saying what `field` must be.
pub(super) fn invalid(field: &str, must: &str) -> TranslateError {
    TranslateError::InvalidBody(format!("`{field}` must be {must}"))
}

/// The body as a JSON object.
pub(super) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, TranslateError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(TranslateError::InvalidBody(
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(TranslateError::InvalidBody(e.to_string())),
    }
}

/// `value` as a string, or an error naming `field`.
pub(super) fn str_at<'a>(value: &'a Value, field: &str) -> Result<&'a str, TranslateError> {
    value.as_str().ok_or_else(|| invalid(field, "a string"))
}

/// The member `key` of `object` when present and not null.
pub(super) fn member<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

/// The required string member `key` of `object` (at `path`).
pub(super) fn required_str<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, TranslateError> {
    let field = format!("{path}.{key}");
    member(object, key)
        .ok_or_else(|| invalid(&field, "present"))
        .and_then(|v| str_at(v, &field))
}

/// A positive integer member, or an error naming `field`.
pub(super) fn positive_int(value: &Value, field: &str) -> Result<u64, TranslateError> {
    value
        .as_u64()
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid(field, "a positive integer"))
}

/// A conversation turn's author.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    User,
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// The Anthropic `system` and `messages` being built: consecutive content
/// of one role becomes one message (Anthropic requires turns to alternate).
#[derive(Debug, Default)]
pub(super) struct Conversation {
    system: Vec<Value>,
    messages: Vec<(Role, Vec<Value>)>,
}

impl Conversation {
    /// A system or developer instruction. Before the first turn it joins
    /// the `system` prompt; later (Anthropic has no system turn in the
    /// middle of a conversation) it is user content in place, which keeps
    /// the order and the cached prefix.
    pub(super) fn instruction(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.messages.is_empty() {
            self.system.push(text_block(text));
        } else {
            self.push(Role::User, vec![text_block(text)]);
        }
    }

    /// Content of `role`, merged into the previous message when it has the
    /// same role. Empty content adds nothing.
    pub(super) fn push(&mut self, role: Role, blocks: Vec<Value>) {
        if blocks.is_empty() {
            return;
        }
        match self.messages.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => self.messages.push((role, blocks)),
        }
    }

    /// Whether no turn has content.
    pub(super) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Whether the last assistant turn uses a tool without starting with a
    /// thinking block: Anthropic then refuses a request with thinking on
    /// ("a final assistant message must start with a thinking block").
    pub(super) fn tool_turn_without_thinking(&self) -> bool {
        let Some((_, content)) = self
            .messages
            .iter()
            .rev()
            .find(|(r, _)| *r == Role::Assistant)
        else {
            return false;
        };
        let uses_tool = content.iter().any(|b| b["type"] == "tool_use");
        let starts_thinking = content
            .first()
            .is_some_and(|b| b["type"] == "thinking" || b["type"] == "redacted_thinking");
        uses_tool && !starts_thinking
    }

    /// The `system` member (when any) and the `messages` member. In a user
    /// message, `tool_result` blocks come first (Anthropic requires it).
    /// Prompt caching: OpenAI caches prefixes by itself, Anthropic where a
    /// block has `cache_control`; a breakpoint goes on the last system
    /// block (covering the tools too) and on the last cacheable block of
    /// the last message (covering the conversation so far).
    pub(super) fn finish(self) -> (Option<Value>, Value) {
        let mut system = self.system;
        let mut messages: Vec<Value> = self
            .messages
            .into_iter()
            .map(|(role, mut content)| {
                if role == Role::User {
                    // A stable partition: results first, in order.
                    let (mut results, rest): (Vec<Value>, Vec<Value>) = content
                        .into_iter()
                        .partition(|b| b["type"] == "tool_result");
                    results.extend(rest);
                    content = results;
                }
                json!({"role": role.as_str(), "content": content})
            })
            .collect();
        if let Some(last) = system.last_mut() {
            mark_cache(last);
        }
        if let Some(content) = messages
            .last_mut()
            .and_then(|m| m.get_mut("content"))
            .and_then(Value::as_array_mut)
        {
            if let Some(block) = content.iter_mut().rev().find(|b| {
                b["type"] != "thinking" && b["type"] != "redacted_thinking" && b["text"] != ""
            }) {
                mark_cache(block);
            }
        }
        let system = (!system.is_empty()).then_some(Value::Array(system));
        (system, Value::Array(messages))
    }
}

fn mark_cache(block: &mut Value) {
    if let Some(object) = block.as_object_mut() {
        object.insert("cache_control".into(), json!({"type": "ephemeral"}));
    }
}

/// An Anthropic text block.
pub(super) fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// An Anthropic image block for an OpenAI image URL: a `data:` URL
/// (`data:image/png;base64,…`) becomes a base64 source, an `http(s)` URL a
/// URL source.
pub(super) fn image_block(url: &str, field: &str) -> Result<Value, TranslateError> {
    let types = ["image/jpeg", "image/png", "image/gif", "image/webp"];
    Ok(json!({"type": "image", "source": media_source(url, field, &types)?}))
}

/// An Anthropic document block for a PDF given as a `data:` URL or an
/// `http(s)` URL.
pub(super) fn pdf_block(url: &str, field: &str) -> Result<Value, TranslateError> {
    let source = media_source(url, field, &["application/pdf"])?;
    Ok(json!({"type": "document", "source": source}))
}

/// An Anthropic source for `url`: a `data:` URL whose media type is one
/// of `types` (Anthropic's `source.media_type` takes no parameters) and
/// whose data is base64 text, or an `http(s)` URL.
fn media_source(url: &str, field: &str, types: &[&'static str]) -> Result<Value, TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').unwrap_or((rest, ""));
        let media_type = meta.strip_suffix(";base64").ok_or_else(|| {
            unexpressible(field, "a data: URL must be base64 (`data:TYPE;base64,…`)")
        })?;
        let Some(media_type) = types.iter().find(|t| t.eq_ignore_ascii_case(media_type)) else {
            return Err(unexpressible(
                field,
                format!(
                    "the data URL's media type is not one Anthropic takes here ({})",
                    types.join(", ")
                ),
            ));
        };
        let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
        if data.is_empty() || !data.bytes().all(base64) {
            return Err(invalid(field, "a data: URL whose data is base64 text"));
        }
        return Ok(json!({"type": "base64", "media_type": media_type, "data": data}));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(json!({"type": "url", "url": url}));
    }
    Err(unexpressible(
        field,
        "send a `data:` URL (base64) or an `https://` URL",
    ))
}

/// An OpenAI tool call id as an Anthropic `tool_use` id (which must match
/// `[A-Za-z0-9_-]+`): other characters become `_`.
pub(super) fn tool_use_id(call_id: &str, field: &str) -> Result<String, TranslateError> {
    if call_id.is_empty() {
        return Err(invalid(field, "a non-empty string"));
    }
    Ok(call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect())
}

/// A function tool as an Anthropic tool. `parameters` defaults to an
/// object schema without properties.
pub(super) fn function_tool(
    name: &str,
    description: Option<&Value>,
    parameters: Option<&Value>,
    field: &str,
) -> Result<Value, TranslateError> {
    if name.ends_with(CUSTOM_TOOL_SUFFIX) {
        return Err(unexpressible(
            format!("{field}.name"),
            format!(
                "a function tool's name may not end with `{CUSTOM_TOOL_SUFFIX}` here: rename it"
            ),
        ));
    }
    let mut tool = Map::new();
    tool.insert("name".into(), Value::from(name));
    if let Some(description) = description {
        tool.insert("description".into(), description.clone());
    }
    let schema = parameters
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    tool.insert("input_schema".into(), schema);
    Ok(Value::Object(tool))
}

/// A freeform tool (raw text input, optionally in a grammar) as an
/// Anthropic tool taking one string member, [`CUSTOM_TOOL_INPUT`]. The
/// grammar cannot be enforced upstream: it is written into the member's
/// description, so the model sees it.
pub(super) fn custom_tool(
    name: &str,
    description: Option<&str>,
    grammar: Option<(&str, &str)>,
) -> Value {
    let mut input = String::from("The raw input text, sent to the tool as is (not JSON).");
    if let Some((syntax, definition)) = grammar {
        input.push_str(&format!(
            " It must match this {syntax} grammar:\n{definition}"
        ));
    }
    let mut tool = Map::new();
    tool.insert(
        "name".into(),
        Value::from(format!("{name}{CUSTOM_TOOL_SUFFIX}")),
    );
    if let Some(description) = description {
        tool.insert("description".into(), Value::from(description));
    }
    tool.insert(
        "input_schema".into(),
        json!({
            "type": "object",
            "properties": {CUSTOM_TOOL_INPUT: {"type": "string", "description": input}},
            "required": [CUSTOM_TOOL_INPUT],
            "additionalProperties": false,
        }),
    );
    Value::Object(tool)
}

/// The thinking budget for an OpenAI reasoning effort: `none` is off,
/// `minimal` 1 024 tokens, `low` 4 096, `medium` 8 192, `high` 16 384,
/// `xhigh` 24 576; then capped below `max_tokens` (Anthropic requires
/// `budget_tokens < max_tokens`, and counts thinking in `max_tokens` as
/// OpenAI counts reasoning in its output limit). `Ok(None)`: off, or no
/// room for the smallest budget (1 024). An unknown effort is an error.
pub(super) fn thinking_budget(
    effort: &str,
    max_tokens: u64,
    field: &str,
) -> Result<Option<u64>, TranslateError> {
    let budget = match effort {
        "none" => return Ok(None),
        "minimal" => 1_024,
        "low" => 4_096,
        "medium" => 8_192,
        "high" => 16_384,
        "xhigh" => 24_576,
        _ => {
            return Err(invalid(
                field,
                "one of none, minimal, low, medium, high, xhigh",
            ))
        }
    };
    let budget = budget.min(max_tokens.saturating_sub(1));
    Ok((budget >= MIN_THINKING_BUDGET).then_some(budget))
}

/// One text block, or none for empty text (Anthropic refuses empty text
/// blocks).
pub(super) fn text_blocks(text: &str) -> Vec<Value> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![text_block(text)]
    }
}

/// An OpenAI `temperature` (0 to 2) for Anthropic (0 to 1).
pub(super) fn parse_temperature(value: &Value, field: &str) -> Result<f64, TranslateError> {
    let t = value.as_f64().ok_or_else(|| invalid(field, "a number"))?;
    if t > 1.0 {
        return Err(unexpressible(
            field,
            "Anthropic's temperature goes from 0 to 1: send 1 or less",
        ));
    }
    Ok(t)
}

/// An OpenAI `service_tier` for Anthropic: `default` is `standard_only`,
/// `auto` needs nothing, others (`flex`, `priority`, `scale`) are dropped.
pub(super) fn parse_service_tier(
    value: &Value,
    dropped: &mut Dropped,
) -> Result<Option<&'static str>, TranslateError> {
    match str_at(value, "service_tier")? {
        "auto" => Ok(None),
        "default" => Ok(Some("standard_only")),
        _ => {
            dropped.push("service_tier");
            Ok(None)
        }
    }
}

/// The request members besides the conversation, read from the client's
/// body, and the rules that tie them together upstream.
#[derive(Debug)]
pub(super) struct Settings<'a> {
    pub model: &'a str,
    pub max_tokens: u64,
    /// The reasoning effort and the member that named it.
    pub effort: Option<(&'a str, &'static str)>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Option<Vec<String>>,
    pub user_id: Option<&'a str>,
    pub service_tier: Option<&'static str>,
    pub stream: bool,
    /// Anthropic tools.
    pub tools: Vec<Value>,
    /// The Anthropic `tool_choice`.
    pub choice: Option<Value>,
    /// `parallel_tool_calls` (default true).
    pub parallel: bool,
}

impl Settings<'_> {
    /// The Anthropic Messages body. Rules: without tools, `tool_choice` is
    /// left out (unexpressible if it forces a tool); `parallel_tool_calls:
    /// false` is `disable_parallel_tool_use`; thinking (see
    /// [`thinking_budget`]) is off when a tool is forced or the last
    /// assistant tool turn has no thinking block (Anthropic refuses both);
    /// with thinking on, a temperature other than 1 and a `top_p` under
    /// 0.95 are dropped (Anthropic refuses them); with both `temperature`
    /// and `top_p`, `top_p` is dropped (current Claude models take one).
    pub(super) fn assemble(
        self,
        conversation: Conversation,
        dropped: &mut Dropped,
    ) -> Result<Vec<u8>, TranslateError> {
        let Settings {
            model,
            max_tokens,
            effort,
            mut temperature,
            mut top_p,
            stop,
            user_id,
            service_tier,
            stream,
            tools,
            mut choice,
            parallel,
        } = self;
        let forced = choice
            .as_ref()
            .is_some_and(|c| c["type"] == "any" || c["type"] == "tool");
        if tools.is_empty() {
            if forced {
                return Err(unexpressible(
                    "tool_choice",
                    "it asks for a tool the upstream is not offered: offer a function tool",
                ));
            }
            choice = None;
        } else if !parallel {
            let mut c = choice.unwrap_or_else(|| json!({"type": "auto"}));
            if c["type"] != "none" {
                c["disable_parallel_tool_use"] = Value::Bool(true);
            }
            choice = Some(c);
        }

        let mut budget = None;
        if let Some((effort, field)) = effort {
            budget = thinking_budget(effort, max_tokens, field)?;
            if budget.is_none() && effort != "none" {
                dropped.push(field);
            }
            if budget.is_some() && (forced || conversation.tool_turn_without_thinking()) {
                budget = None;
                dropped.push(field);
            }
        }
        if budget.is_some() {
            if temperature.is_some_and(|t| t != 1.0) {
                temperature = None;
                dropped.push("temperature");
            }
            if top_p.is_some_and(|p| p < 0.95) {
                top_p = None;
                dropped.push("top_p");
            }
        }
        if temperature.is_some() && top_p.is_some() {
            top_p = None;
            dropped.push("top_p");
        }

        let (system, messages) = conversation.finish();
        // A conversation ending with the assistant's turn: Anthropic takes
        // it as a prefill the model continues, where OpenAI answers anew.
        if messages
            .as_array()
            .and_then(|m| m.last())
            .is_some_and(|m| m["role"] == "assistant")
        {
            dropped.push("prefill: the last message is the assistant's, which Claude continues");
        }
        let mut out = Map::new();
        out.insert("model".into(), Value::from(model));
        out.insert("max_tokens".into(), Value::from(max_tokens));
        if let Some(system) = system {
            out.insert("system".into(), system);
        }
        out.insert("messages".into(), messages);
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
        if let Some(choice) = choice {
            out.insert("tool_choice".into(), choice);
        }
        if let Some(budget) = budget {
            out.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": budget}),
            );
        }
        if let Some(t) = temperature {
            out.insert("temperature".into(), Value::from(t));
        }
        if let Some(p) = top_p {
            out.insert("top_p".into(), Value::from(p));
        }
        if let Some(stop) = stop {
            out.insert("stop_sequences".into(), Value::from(stop));
        }
        if let Some(user_id) = user_id {
            out.insert("metadata".into(), json!({"user_id": user_id}));
        }
        if let Some(tier) = service_tier {
            out.insert("service_tier".into(), Value::from(tier));
        }
        if stream {
            out.insert("stream".into(), Value::Bool(true));
        }
        Ok(to_bytes(&Value::Object(out)))
    }
}

/// Token counts read from an Anthropic answer: `message_start`'s usage,
/// then each `message_delta`'s (cumulative) usage over it (the Messages
/// API's streaming usage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Usage {
    /// `input_tokens`: input not read from or written to the cache.
    pub input: u64,
    /// `cache_creation_input_tokens`.
    pub cache_write: u64,
    /// `cache_read_input_tokens`.
    pub cache_read: u64,
    /// `output_tokens` (thinking included).
    pub output: u64,
}

impl Usage {
    /// Takes every count present in the Anthropic `usage` object.
    pub(super) fn merge(&mut self, usage: &Value) {
        let read = |key: &str, into: &mut u64| {
            if let Some(n) = usage.get(key).and_then(Value::as_u64) {
                *into = n;
            }
        };
        read("input_tokens", &mut self.input);
        read("cache_creation_input_tokens", &mut self.cache_write);
        read("cache_read_input_tokens", &mut self.cache_read);
        read("output_tokens", &mut self.output);
    }

    /// The whole input, as OpenAI counts it (cached tokens included).
    pub(super) fn prompt(&self) -> u64 {
        self.input
            .saturating_add(self.cache_write)
            .saturating_add(self.cache_read)
    }

    /// Input plus output.
    pub(super) fn total(&self) -> u64 {
        self.prompt().saturating_add(self.output)
    }
}

/// The id the OpenAI objects derive from an Anthropic message id
/// (`msg_01X…` → `01X…`).
pub(super) fn base_id(message_id: &str) -> String {
    let id = message_id.strip_prefix("msg_").unwrap_or(message_id);
    if id.is_empty() {
        "anthropic".into()
    } else {
        id.into()
    }
}

/// The members each object of a request may have, by its path (array
/// indexes written `[]`) and, where given, only for objects of those
/// `type`s (the others are translated or dropped whole elsewhere), for
/// [`name_unread`].
pub(super) type MemberRules = [(
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
)];

/// Names in `dropped` every member of the objects `rules` describe (under
/// `root`'s members) that is not among their members: what the
/// translation does not carry is never lost silently, at any depth.
pub(super) fn name_unread(root: &Map<String, Value>, rules: &MemberRules, dropped: &mut Dropped) {
    fn walk(value: &Value, path: &str, rules: &MemberRules, dropped: &mut Dropped) {
        match value {
            Value::Object(map) => {
                let Some((_, types, allowed)) = rules.iter().find(|(p, _, _)| *p == path) else {
                    return;
                };
                let kind = map.get("type").and_then(Value::as_str);
                if !types.is_empty() && kind.is_some_and(|k| !types.contains(&k)) {
                    return;
                }
                for (key, value) in map {
                    if allowed.contains(&key.as_str()) {
                        walk(value, &format!("{path}.{key}"), rules, dropped);
                    } else if !value.is_null() {
                        dropped.push(format!("{path}.{}", super::anthropic_client::member(key)));
                    }
                }
            }
            Value::Array(items) => {
                let path = format!("{path}[]");
                for item in items {
                    walk(item, &path, rules, dropped);
                }
            }
            _ => {}
        }
    }
    for (key, value) in root {
        if rules.iter().any(|(p, _, _)| p.starts_with(key.as_str())) {
            walk(value, key, rules, dropped);
        }
    }
}

/// The most JSON text one streamed tool use's input may carry (bytes).
pub(super) const TOOL_INPUT_MAX: usize = 4 << 20;

/// Checks that a streamed tool use's input so far is within
/// [`TOOL_INPUT_MAX`].
pub(super) fn check_tool_input_size(json_text: &str) -> Result<(), OpenAiError> {
    if json_text.len() <= TOOL_INPUT_MAX {
        return Ok(());
    }
    Err(OpenAiError::untranslatable(format!(
            "the upstream streamed a tool call's input longer than {} MiB, more than the gateway relays; retry the request",
            TOOL_INPUT_MAX >> 20
        )))
}

/// Checks a streamed tool use's input, as its `input_json_delta` pieces
/// joined (empty for `{}`): it must be a JSON object, what Anthropic's
/// `tool_use.input` is, or the client would run a call it cannot read.
pub(super) fn check_streamed_tool_input(json_text: &str) -> Result<(), OpenAiError> {
    check_tool_input_size(json_text)?;
    if json_text.trim().is_empty()
        || matches!(
            serde_json::from_str::<Value>(json_text),
            Ok(Value::Object(_))
        )
    {
        return Ok(());
    }
    Err(OpenAiError::untranslatable("the upstream streamed a tool call whose input is not a JSON object, which Anthropic's `tool_use.input` must be; retry the request"))
}

/// Checks a whole Anthropic message's `content` for a client of `api`:
/// an array of `text` blocks holding text, `thinking` and
/// `redacted_thinking` blocks, and `tool_use` blocks with an id, a name
/// and an `input` object. A block of any other type (a server tool's, or
/// one unknown) is an error: `api` cannot carry it, and the translated
/// request never asks for one. A text block's `citations` are dropped,
/// named in `dropped`.
///
/// # Errors
/// [`TranslateError::InvalidBody`] naming the block.
pub(super) fn check_content(
    message: &Map<String, Value>,
    api: &str,
    dropped: &mut Dropped,
) -> Result<(), TranslateError> {
    let Some(blocks) = message.get("content").and_then(Value::as_array) else {
        return Err(TranslateError::InvalidBody(
            "the upstream's message has no `content` array".into(),
        ));
    };
    if message
        .get("role")
        .is_some_and(|r| !r.is_null() && r != "assistant")
    {
        return Err(TranslateError::InvalidBody(
            "the upstream's message role is not `assistant`".into(),
        ));
    }
    const MESSAGE: [&str; 9] = [
        "id",
        "type",
        "role",
        "model",
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
        "stop_details",
    ];
    for (key, value) in message {
        if !value.is_null() && !MESSAGE.contains(&key.as_str()) {
            dropped.push(format!("answer.{}", super::anthropic_client::member(key)));
        }
    }
    for (i, block) in blocks.iter().enumerate() {
        let members: &[&str] = match block["type"].as_str() {
            Some("text") => &["type", "text", "citations"],
            Some("thinking") => &["type", "thinking", "signature"],
            Some("redacted_thinking") => &["type", "data"],
            Some("tool_use") => &["type", "id", "name", "input"],
            _ => &[],
        };
        if let Some(block) = block.as_object().filter(|_| !members.is_empty()) {
            for (key, value) in block {
                if !value.is_null() && !members.contains(&key.as_str()) {
                    dropped.push(format!(
                        "answer.content[].{}",
                        super::anthropic_client::member(key)
                    ));
                }
            }
        }
        let bad = match block["type"].as_str() {
            Some("text") if !block["text"].is_string() => {
                "text (a text block) is not a string".to_owned()
            }
            Some("text") => {
                if block["citations"].as_array().is_some_and(|c| !c.is_empty()) {
                    dropped.push("answer.content[].citations");
                }
                continue;
            }
            Some("thinking" | "redacted_thinking") => continue,
            Some("tool_use") if !block["input"].is_object() => {
                "input (a tool use) is not a JSON object".to_owned()
            }
            Some("tool_use") => match tool_use_named(block) {
                Ok(()) => continue,
                Err(()) => "name or id (a tool use) is missing".to_owned(),
            },
            Some(kind) => format!(
                "type is `{}`, a content block {api} cannot carry",
                super::anthropic_client::member(kind)
            ),
            None => "type is missing".to_owned(),
        };
        return Err(TranslateError::InvalidBody(format!(
            "the upstream's content[{i}].{bad}"
        )));
    }
    Ok(())
}

/// `json` (valid JSON text) without the whitespace between its tokens;
/// strings and numbers are kept as written.
pub(super) fn compact_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The JSON text of each content block's `input` in an Anthropic message
/// body, as the upstream wrote it, by the block's index (`None` where a
/// block has none; empty when the body cannot be read so): a tool use's
/// numbers then reach the client as written, where a parsed number is a
/// 64-bit float.
pub(super) fn raw_inputs(body: &[u8]) -> Vec<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow, default)]
        content: Vec<RawBlock<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct RawBlock<'a> {
        #[serde(borrow, default)]
        input: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<Message<'_>>(body)
        .map(|m| {
            m.content
                .into_iter()
                .map(|b| b.input.map(|raw| compact_json(raw.get())))
                .collect()
        })
        .unwrap_or_default()
}

/// The error for an Anthropic answer that ended with stop reason `reason`
/// (`None`: none) which `api` has no counterpart for.
pub(super) fn unknown_stop_reason(reason: Option<&str>, api: &str) -> String {
    match reason {
        Some(reason) => format!(
            "the upstream's answer ended with stop_reason `{}`, which {api} has no counterpart for; retry the request",
            super::anthropic_client::member(reason)
        ),
        None => "the upstream's answer ended without a stop_reason; retry the request".into(),
    }
}

/// The content blocks of an Anthropic stream as they start and stop, to
/// check each event against them: one `message_start`; a block started at
/// an index not open; deltas only to an open block, of its kind
/// (`text_delta` and `citations_delta` to a text block, `thinking_delta`
/// and `signature_delta` to a thinking block, `input_json_delta` to a tool
/// use); a stop only of an open block. Anything else is an error: an
/// answer the client would read differently than it was written.
#[derive(Debug, Default)]
pub(super) struct Blocks {
    message_started: bool,
    /// Open blocks: their `index` and `type`.
    open: Vec<(u64, String)>,
    /// The index the next block must have (blocks come one at a time, in
    /// order).
    next: u64,
    /// The stop reason `message_delta` gave.
    stop_reason: Option<String>,
}

impl Blocks {
    /// Any event, named `name` (the SSE `event:` field, empty when none)
    /// with `data`: a name that is not the data's `type` contradicts it
    /// (an Anthropic client reads the name: `error`, `ping`); a
    /// `message_start` carrying content, or a stop reason, says what no
    /// translation carries from it.
    pub(super) fn event(&mut self, name: &str, data: &Value) -> Result<(), OpenAiError> {
        let kind = data["type"].as_str().unwrap_or(name);
        if !name.is_empty() && name != kind {
            return Err(OpenAiError::untranslatable(format!(
                "the upstream sent an event named `{}` carrying a `{}`; retry the request",
                super::anthropic_client::member(name),
                super::anthropic_client::member(kind)
            )));
        }
        if kind == "message_start" {
            let message = &data["message"];
            if message["content"].as_array().is_some_and(|c| !c.is_empty()) {
                return Err(OpenAiError::untranslatable(
                    "the upstream started its message with content already in it; retry the request",
                ));
            }
            self.stop_reason(message["stop_reason"].as_str())?;
        }
        Ok(())
    }

    /// A `message_start`.
    pub(super) fn message_start(&mut self) -> Result<(), OpenAiError> {
        if std::mem::replace(&mut self.message_started, true) {
            return Err(OpenAiError::untranslatable(
                "the upstream started its message twice; retry the request",
            ));
        }
        Ok(())
    }

    /// A `content_block_start` of `kind` at `index`: the next index, with
    /// no block open (Anthropic streams one block at a time, in order; a
    /// client reading blocks by index and one reading them as they come
    /// would otherwise read different answers).
    pub(super) fn start(&mut self, index: u64, kind: &str) -> Result<(), OpenAiError> {
        if let Some((open, _)) = self.open.first() {
            return Err(OpenAiError::untranslatable(format!(
                "the upstream started content block {index} while block {open} was open; retry the request"
            )));
        }
        if index != self.next {
            return Err(OpenAiError::untranslatable(format!(
                "the upstream started content block {index} where block {} comes next; retry the request",
                self.next
            )));
        }
        self.next += 1;
        self.open.push((index, kind.to_owned()));
        Ok(())
    }

    /// A `message_delta`'s stop reason (`None` when it gives none): one
    /// that contradicts an earlier one is an error, since the answer would
    /// say two things about how it ended.
    pub(super) fn stop_reason(&mut self, reason: Option<&str>) -> Result<(), OpenAiError> {
        let Some(reason) = reason else { return Ok(()) };
        match &self.stop_reason {
            Some(earlier) if earlier != reason => Err(OpenAiError::untranslatable(format!(
                "the upstream gave two stop reasons (`{}`, then `{}`); retry the request",
                super::anthropic_client::member(earlier),
                super::anthropic_client::member(reason)
            ))),
            _ => {
                self.stop_reason = Some(reason.to_owned());
                Ok(())
            }
        }
    }

    /// The `message_stop`: every block must have stopped.
    pub(super) fn finish(&self) -> Result<(), OpenAiError> {
        match self.open.first() {
            Some((index, _)) => Err(OpenAiError::untranslatable(format!(
                "the upstream ended its message with content block {index} never stopped; retry the request"
            ))),
            None => Ok(()),
        }
    }

    /// A `content_block_delta` of `delta` type at `index`.
    pub(super) fn delta(&self, index: u64, delta: &str) -> Result<(), OpenAiError> {
        let Some((_, kind)) = self.open.iter().find(|(i, _)| *i == index) else {
            return Err(OpenAiError::untranslatable(format!(
                "the upstream streamed a delta for content block {index}, which is not open (never started, or stopped); retry the request"
            )));
        };
        let fits = matches!(
            (kind.as_str(), delta),
            ("text", "text_delta" | "citations_delta")
                | ("thinking", "thinking_delta" | "signature_delta")
                | ("tool_use", "input_json_delta")
        );
        if fits {
            return Ok(());
        }
        Err(OpenAiError::untranslatable(format!(
            "the upstream streamed a `{}` delta in a `{}` block, which cannot carry it; retry the request",
            super::anthropic_client::member(delta),
            super::anthropic_client::member(kind)
        )))
    }

    /// A `content_block_stop` at `index`.
    pub(super) fn stop(&mut self, index: u64) -> Result<(), OpenAiError> {
        match self.open.iter().position(|(i, _)| *i == index) {
            Some(at) => {
                self.open.remove(at);
                Ok(())
            }
            None => Err(OpenAiError::untranslatable(format!(
                "the upstream stopped content block {index}, which is not open; retry the request"
            ))),
        }
    }
}

/// The error for a streamed content block of type `kind` that `api`
/// cannot carry.
pub(super) fn uncarried_block(kind: &str, api: &str) -> OpenAiError {
    OpenAiError::untranslatable(format!(
        "the upstream streamed a content block of type `{}`, which {api} cannot carry; retry the request",
        super::anthropic_client::member(kind)
    ))
}

/// Whether a `tool_use` block has a non-empty `name` and `id`.
fn tool_use_named(block: &Value) -> Result<(), ()> {
    let named = |k: &str| block[k].as_str().is_some_and(|s| !s.is_empty());
    if named("name") && named("id") {
        Ok(())
    } else {
        Err(())
    }
}

/// Checks a streamed `tool_use` block's start: a name and an id the client
/// can dispatch and answer, and an `input` that is an object (empty, the
/// deltas to follow) or absent.
pub(super) fn check_tool_use_start(block: &Value) -> Result<(), OpenAiError> {
    let input_ok = block["input"].is_object() || block["input"].is_null();
    if input_ok && tool_use_named(block).is_ok() {
        return Ok(());
    }
    Err(OpenAiError::untranslatable("the upstream started a tool use without a name and id, or with an input that is not a JSON object; retry the request"))
}

/// An OpenAI error: `error.type`, `error.code` and `error.message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenAiError {
    pub kind: &'static str,
    pub code: Option<String>,
    pub message: String,
}

impl OpenAiError {
    /// A `server_error` with code `untranslatable_answer`: the upstream's
    /// answer holds what the client's API cannot carry; `message` says what.
    pub(super) fn untranslatable(message: impl Into<String>) -> Self {
        OpenAiError {
            kind: "server_error",
            code: Some("untranslatable_answer".into()),
            message: message.into(),
        }
    }

    /// The OpenAI error for an Anthropic `error.type` and message. The
    /// message is kept; the type maps by meaning (`overloaded_error` →
    /// `server_error` with code `server_is_overloaded`, `billing_error` →
    /// `insufficient_quota`, a "prompt is too long" refusal → code
    /// `context_length_exceeded`, which Codex acts on).
    pub(super) fn from_anthropic(kind: &str, message: &str, status: u16) -> Self {
        let (kind, code): (&'static str, Option<&str>) = match kind {
            "invalid_request_error" if message.contains("prompt is too long") => {
                ("invalid_request_error", Some("context_length_exceeded"))
            }
            "invalid_request_error" => ("invalid_request_error", None),
            "authentication_error" => ("authentication_error", None),
            "permission_error" => ("permission_error", None),
            "not_found_error" => ("invalid_request_error", Some("not_found")),
            "request_too_large" => ("invalid_request_error", Some("request_too_large")),
            "rate_limit_error" => ("rate_limit_error", Some("rate_limit_exceeded")),
            "billing_error" => ("insufficient_quota", Some("insufficient_quota")),
            "overloaded_error" => ("server_error", Some("server_is_overloaded")),
            "timeout_error" => ("server_error", Some("timeout")),
            "api_error" => ("server_error", None),
            other if status >= 500 || status == 0 => ("server_error", Some(other)),
            other => ("invalid_request_error", Some(other)),
        };
        OpenAiError {
            kind,
            code: code.filter(|c| !c.is_empty()).map(str::to_owned),
            message: message.to_owned(),
        }
    }

    /// Reads an Anthropic error body (`{"type":"error","error":{…}}`);
    /// a body of another shape is described, not passed on as is.
    pub(super) fn from_body(status: u16, body: &[u8]) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        match error {
            Some(error) => Self::from_anthropic(
                error.get("type").and_then(Value::as_str).unwrap_or(""),
                error.get("message").and_then(Value::as_str).unwrap_or(""),
                status,
            ),
            None => {
                let text = String::from_utf8_lossy(body);
                let text: String = text.chars().take(500).collect();
                let mut e = Self::from_anthropic("", "", status);
                e.message = format!("the upstream answered {status}: {text}");
                e
            }
        }
    }

    /// The OpenAI `error` object.
    pub(super) fn object(&self) -> Value {
        json!({
            "message": self.message,
            "type": self.kind,
            "param": null,
            "code": self.code,
        })
    }

    /// The OpenAI error body, `{"error":{…}}`.
    pub(super) fn body(&self) -> Vec<u8> {
        let body = json!({"error": self.object()});
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// Compact JSON bytes of `value` (serializing a `Value` cannot fail).
pub(super) fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_of_one_role_merge_and_results_come_first() {
        let mut c = Conversation::default();
        c.instruction("be brief");
        c.push(Role::User, vec![text_block("a")]);
        c.push(Role::User, vec![text_block("b")]);
        c.push(
            Role::Assistant,
            vec![json!({"type": "tool_use", "id": "t", "name": "f", "input": {}})],
        );
        c.push(Role::User, vec![text_block("note")]);
        c.push(
            Role::User,
            vec![json!({"type": "tool_result", "tool_use_id": "t", "content": "ok"})],
        );
        c.instruction("later");
        let (system, messages) = c.finish();
        assert_eq!(
            system,
            Some(
                json!([{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}])
            )
        );
        assert_eq!(messages[0]["content"].as_array().unwrap().len(), 2);
        assert_eq!(messages[2]["content"][0]["type"], "tool_result");
        assert_eq!(messages[2]["content"][1]["text"], "note");
        assert_eq!(messages[2]["content"][2]["text"], "later");
        assert_eq!(
            messages[2]["content"][2]["cache_control"]["type"],
            "ephemeral"
        );
        assert!(messages[2]["content"][1].get("cache_control").is_none());
    }

    #[test]
    fn thinking_budgets_stay_below_the_output_limit() {
        assert_eq!(thinking_budget("high", 32_000, "e").unwrap(), Some(16_384));
        assert_eq!(thinking_budget("high", 5_000, "e").unwrap(), Some(4_999));
        assert_eq!(thinking_budget("low", 1_024, "e").unwrap(), None);
        assert_eq!(thinking_budget("none", 32_000, "e").unwrap(), None);
        assert!(thinking_budget("extreme", 32_000, "e").is_err());
    }

    #[test]
    fn images_from_data_and_https_urls() {
        assert_eq!(
            image_block("data:image/png;base64,AAAA", "f").unwrap(),
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}})
        );
        assert_eq!(
            image_block("HTTPS://x.test/a.png", "f").unwrap()["source"]["type"],
            "url"
        );
        assert!(image_block("file:///etc/passwd", "f").is_err());
        assert!(image_block("data:text/plain;base64,AAAA", "f").is_err());
        assert!(image_block("data:image/png,raw", "f").is_err());
    }

    #[test]
    fn errors_map_by_meaning() {
        let e = OpenAiError::from_body(
            400,
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        let e = OpenAiError::from_body(
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(
            (e.kind, e.code.as_deref()),
            ("server_error", Some("server_is_overloaded"))
        );
        let e = OpenAiError::from_body(502, b"<html>bad gateway</html>");
        assert_eq!(e.kind, "server_error");
        assert!(e.message.contains("502"));
    }

    #[test]
    fn tool_ids_keep_to_anthropics_alphabet() {
        assert_eq!(tool_use_id("call_a.b:c", "f").unwrap(), "call_a_b_c");
        assert!(tool_use_id("", "f").is_err());
    }
}
