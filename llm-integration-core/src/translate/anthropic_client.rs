//! What the two directions from an Anthropic Messages client share: the
//! client's request read into one conversation model ([`Conversation`]),
//! the writer of the Anthropic event stream ([`AnthropicWriter`]), the
//! Anthropic `message` object, and the error mapping.
//!
//! Paths in [`Dropped`] leave array indices out (`messages[].content[].cache_control`,
//! `messages[].content[type=thinking]`), so a member dropped in every turn
//! of a long conversation is named once; paths in
//! [`TranslateError::Unexpressible`] name the exact member
//! (`messages[3].content[0].source.type`).

use serde_json::{json, Map, Value};

use super::{write_sse, Dropped, TranslateError};

/// The OpenAI-family provider a translated request goes to. The request
/// shape follows the provider's documentation: OpenAI
/// (`platform.openai.com/docs/api-reference`) or Fireworks
/// (`docs.fireworks.ai/api-reference`, OpenAI-compatible with extensions
/// such as `top_k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `api.openai.com` (an API key or a ChatGPT subscription).
    OpenAi,
    /// `api.fireworks.ai/inference`.
    Fireworks,
}

/// The longest `safety_identifier` OpenAI accepts (characters).
const SAFETY_IDENTIFIER_MAX: usize = 64;

/// One piece of user content.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Part {
    Text(String),
    /// An image as a URL (`https://…` or a `data:` URL).
    Image(String),
    /// A PDF as a `data:application/pdf;base64,…` URL, with its file name.
    File {
        data_url: String,
        filename: String,
    },
}

/// An assistant's call of a client tool.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Call {
    pub id: String,
    pub name: String,
    /// The input, as compact JSON text.
    pub arguments: String,
}

/// One entry of the conversation, in order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Turn {
    /// A `role: "system"` entry of `messages`.
    System(String),
    User(Vec<Part>),
    Assistant {
        /// The text blocks, joined by a blank line (empty when none).
        text: String,
        calls: Vec<Call>,
    },
    /// A `tool_result`, placed right after the assistant turn it answers.
    ToolResult {
        call_id: String,
        output: String,
        is_error: bool,
    },
}

/// A client tool.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// The JSON Schema of the input (`input_schema`).
    pub parameters: Value,
    pub strict: Option<bool>,
}

/// The client's `tool_choice`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ToolChoice {
    Auto,
    /// `any`: some tool must be called (OpenAI's `required`).
    Required,
    None,
    /// This tool must be called.
    Tool(String),
}

/// An Anthropic Messages request, read.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Conversation {
    pub model: String,
    pub stream: bool,
    /// The `system` member's text (blocks joined by a blank line).
    pub system: Option<String>,
    pub turns: Vec<Turn>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<Value>,
    pub top_p: Option<Value>,
    pub top_k: Option<Value>,
    pub stop_sequences: Vec<String>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `false` when the client set `disable_parallel_tool_use`.
    pub parallel_tool_calls: Option<bool>,
    /// `low`, `medium` or `high` (see [`effort_for_budget`]).
    pub effort: Option<&'static str>,
    /// `metadata.user_id`.
    pub user_id: Option<String>,
    /// The JSON Schema the answer must follow (`output_config.format`).
    pub output_schema: Option<Value>,
    pub dropped: Dropped,
}

impl Conversation {
    /// Checks that there is something to answer: a turn besides `system`
    /// entries (a conversation of none would reach the upstream empty).
    ///
    /// # Errors
    /// [`TranslateError::Unexpressible`] naming `messages`.
    pub fn check_answerable(&self) -> Result<(), TranslateError> {
        if self.turns.iter().all(|t| matches!(t, Turn::System(_))) {
            return Err(unexpressible(
                "messages",
                "there is no message to answer: send at least one user message with content",
            ));
        }
        Ok(())
    }

    /// Records `metadata.user_id` as the target knows it (`user` on
    /// Fireworks, `safety_identifier` on OpenAI when it fits in 64
    /// characters) or as dropped.
    pub fn put_user(&mut self, out: &mut Map<String, Value>, target: Target) {
        let Some(user) = self.user_id.take() else {
            return;
        };
        match target {
            Target::Fireworks => {
                out.insert("user".into(), Value::String(user));
            }
            Target::OpenAi if user.chars().count() <= SAFETY_IDENTIFIER_MAX => {
                out.insert("safety_identifier".into(), Value::String(user));
            }
            Target::OpenAi => self.dropped.push("metadata.user_id"),
        }
    }
}

/// The reasoning effort for a `thinking.budget_tokens`: under 4096 tokens
/// `low`, under 16384 `medium`, otherwise `high`.
pub(super) fn effort_for_budget(budget: u64) -> &'static str {
    match budget {
        0..=4095 => "low",
        4096..=16383 => "medium",
        _ => "high",
    }
}

/// The most members named in [`Dropped`]; past it, the list ends with
/// [`MORE_DROPPED`] (the list travels in a response header).
const MAX_DROPPED: usize = 32;

/// The last entry of a [`Dropped`] list cut at [`MAX_DROPPED`].
const MORE_DROPPED: &str = "(more members)";

/// A client's member name as it may appear in a [`Dropped`] path: ASCII
/// letters, digits and `_ - $ @ . : /` kept, anything else (a comma, a
/// control character, a non-ASCII character) as `?`, at most 64
/// characters (then `...`), so the list is a valid header value whose
/// commas separate members.
pub(super) fn member(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-$@.:/".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if name.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

/// `dropped` cut at [`MAX_DROPPED`] members.
fn capped(dropped: Dropped) -> Dropped {
    if dropped.fields().len() <= MAX_DROPPED {
        return dropped;
    }
    let mut cut = Dropped::default();
    for field in &dropped.fields()[..MAX_DROPPED - 1] {
        cut.push(field.clone());
    }
    cut.push(MORE_DROPPED);
    cut
}

fn invalid(reason: impl Into<String>) -> TranslateError {
    TranslateError::InvalidBody(reason.into())
}

fn unexpressible(field: impl Into<String>, reason: impl Into<String>) -> TranslateError {
    TranslateError::Unexpressible {
        field: field.into(),
        reason: reason.into(),
    }
}

fn string_member(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<String, TranslateError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(invalid(format!("`{path}.{key}` must be a string"))),
        None => Err(invalid(format!("`{path}.{key}` is missing"))),
    }
}

/// Reads a client's Anthropic Messages body. `pdf` says whether the
/// upstream reads PDF documents.
pub(super) fn read_request(body: &[u8], pdf: bool) -> Result<Conversation, TranslateError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(invalid("the body must be a JSON object"));
    };
    let mut dropped = Dropped::default();
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(invalid(
                "`model` must be a non-empty string naming the model",
            ))
        }
    };
    let mut conv = Conversation {
        model,
        stream: false,
        system: None,
        turns: Vec::new(),
        max_tokens: None,
        temperature: None,
        top_p: None,
        top_k: None,
        stop_sequences: Vec::new(),
        tools: Vec::new(),
        tool_choice: None,
        parallel_tool_calls: None,
        effort: None,
        user_id: None,
        output_schema: None,
        dropped: Dropped::default(),
    };
    let mut thinking_effort = None;
    let mut config_effort = None;
    for (key, value) in &obj {
        // The SDKs leave out what is not given; a `null` means the same.
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "model" => {}
            "messages" => {}
            "stream" => match value {
                Value::Bool(b) => conv.stream = *b,
                Value::Null => {}
                _ => return Err(invalid("`stream` must be true or false")),
            },
            "system" => conv.system = read_system(value, &mut dropped)?,
            "max_tokens" => match value.as_u64() {
                Some(n) => conv.max_tokens = Some(n),
                None => return Err(invalid("`max_tokens` must be a positive integer")),
            },
            "temperature" | "top_p" | "top_k" => {
                if !value.is_number() {
                    return Err(invalid(format!("`{key}` must be a number")));
                }
                let slot = match key.as_str() {
                    "temperature" => &mut conv.temperature,
                    "top_p" => &mut conv.top_p,
                    _ => &mut conv.top_k,
                };
                *slot = Some(value.clone());
            }
            "stop_sequences" => {
                let Some(items) = value.as_array() else {
                    return Err(invalid("`stop_sequences` must be an array of strings"));
                };
                for item in items {
                    match item.as_str() {
                        Some(s) => conv.stop_sequences.push(s.to_owned()),
                        None => {
                            return Err(invalid("`stop_sequences` must be an array of strings"))
                        }
                    }
                }
            }
            "tools" => conv.tools = read_tools(value, &mut dropped)?,
            "tool_choice" => {
                unread(
                    value,
                    &["type", "name", "disable_parallel_tool_use"],
                    "tool_choice",
                    &mut dropped,
                );
                let (choice, parallel) = read_tool_choice(value)?;
                conv.tool_choice = choice;
                conv.parallel_tool_calls = parallel;
            }
            "thinking" => {
                unread(value, &["type", "budget_tokens"], "thinking", &mut dropped);
                thinking_effort = read_thinking(value, &mut dropped)?;
            }
            "output_config" => {
                (config_effort, conv.output_schema) = read_output_config(value, &mut dropped)?;
            }
            "metadata" => {
                if let Some(meta) = value.as_object() {
                    for (k, v) in meta {
                        match (k.as_str(), v) {
                            ("user_id", Value::String(s)) => conv.user_id = Some(s.clone()),
                            ("user_id", Value::Null) => {}
                            _ => dropped.push(format!("metadata.{}", member(k))),
                        }
                    }
                }
            }
            other => dropped.push(member(other)),
        }
    }
    // An explicit effort wins over one derived from a thinking budget.
    conv.effort = match thinking_effort {
        Some(Thinking::Disabled) => None,
        Some(Thinking::Effort(e)) => config_effort.or(e),
        None => config_effort,
    };
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) => m,
        _ => return Err(invalid("`messages` must be an array of messages")),
    };
    conv.turns = read_messages(messages, pdf, &mut dropped)?;
    if let Some(ToolChoice::Tool(name)) = &conv.tool_choice {
        if !conv.tools.iter().any(|t| &t.name == name) {
            return Err(unexpressible(
                "tool_choice.name",
                format!("no client tool named `{name}` is defined (server tools have no counterpart); name one of `tools`"),
            ));
        }
    }
    if conv.tools.is_empty() {
        if conv.tool_choice.take().is_some() {
            dropped.push("tool_choice");
        }
        conv.parallel_tool_calls = None;
    }
    conv.dropped = capped(dropped);
    Ok(conv)
}

enum Thinking {
    Disabled,
    /// Enabled, with the effort its budget gives (none for `adaptive`).
    Effort(Option<&'static str>),
}

fn read_thinking(value: &Value, dropped: &mut Dropped) -> Result<Option<Thinking>, TranslateError> {
    let Some(obj) = value.as_object() else {
        return Ok(None);
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("enabled") => {
            let budget = obj.get("budget_tokens").and_then(Value::as_u64).ok_or_else(|| {
                invalid("`thinking.budget_tokens` must be a positive integer when thinking is enabled")
            })?;
            Ok(Some(Thinking::Effort(Some(effort_for_budget(budget)))))
        }
        Some("adaptive") => Ok(Some(Thinking::Effort(None))),
        Some("disabled") => {
            // A reasoning model reasons whatever the request says.
            dropped.push("thinking");
            Ok(Some(Thinking::Disabled))
        }
        _ => Err(invalid(
            "`thinking.type` must be `enabled`, `adaptive` or `disabled`",
        )),
    }
}

/// `output_config`: the effort, and the JSON Schema of a `json_schema`
/// output format.
fn read_output_config(
    value: &Value,
    dropped: &mut Dropped,
) -> Result<(Option<&'static str>, Option<Value>), TranslateError> {
    let Some(obj) = value.as_object() else {
        return Ok((None, None));
    };
    let mut effort = None;
    let mut schema = None;
    for (k, v) in obj {
        if k == "format" {
            if v.is_null() {
                continue;
            }
            match (v.get("type").and_then(Value::as_str), v.get("schema")) {
                (Some("json_schema"), Some(s @ Value::Object(_))) => schema = Some(s.clone()),
                _ => {
                    return Err(invalid(
                        "`output_config.format` must be {\"type\":\"json_schema\",\"schema\":{…}}",
                    ))
                }
            }
            continue;
        }
        match (k.as_str(), v.as_str()) {
            ("effort", Some("low")) => effort = Some("low"),
            ("effort", Some("medium")) => effort = Some("medium"),
            ("effort", Some("high" | "max")) => effort = Some("high"),
            ("effort", _) => {
                return Err(invalid(
                    "`output_config.effort` must be `low`, `medium`, `high` or `max`",
                ))
            }
            _ => dropped.push(format!("output_config.{}", member(k))),
        }
    }
    Ok((effort, schema))
}

fn read_system(value: &Value, dropped: &mut Dropped) -> Result<Option<String>, TranslateError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Array(blocks) => {
            let mut texts = Vec::new();
            for (i, block) in blocks.iter().enumerate() {
                texts.push(text_block(
                    block,
                    &format!("system[{i}]"),
                    "system[]",
                    dropped,
                )?);
            }
            Ok(Some(texts.join("\n\n")))
        }
        _ => Err(invalid(
            "`system` must be a string or an array of text blocks",
        )),
    }
}

/// A `{"type":"text","text":…}` block's text; other members are dropped.
fn text_block(
    block: &Value,
    path: &str,
    drop_path: &str,
    dropped: &mut Dropped,
) -> Result<String, TranslateError> {
    let obj = block
        .as_object()
        .ok_or_else(|| invalid(format!("`{path}` must be a content block object")))?;
    if obj.get("type").and_then(Value::as_str) != Some("text") {
        return Err(unexpressible(
            format!("{path}.type"),
            "only text blocks can be translated here; send the content as text",
        ));
    }
    let text = string_member(obj, "text", path)?;
    for k in obj.keys() {
        if k != "type" && k != "text" {
            dropped.push(format!("{drop_path}.{}", member(k)));
        }
    }
    Ok(text)
}

fn read_tools(value: &Value, dropped: &mut Dropped) -> Result<Vec<Tool>, TranslateError> {
    let Some(items) = value.as_array() else {
        return Err(invalid("`tools` must be an array of tool definitions"));
    };
    let mut tools = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("tools[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| invalid(format!("`{path}` must be an object")))?;
        match obj.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            // Server tools (web search, code execution, bash, text editor,
            // computer use, …) run at Anthropic only.
            Some(kind) => {
                dropped.push(format!("tools[type={}]", member(kind)));
                continue;
            }
        }
        let name = string_member(obj, "name", &path)?;
        let parameters = match obj.get("input_schema") {
            Some(schema @ Value::Object(_)) => schema.clone(),
            _ => {
                return Err(invalid(format!(
                    "`{path}.input_schema` must be a JSON Schema object"
                )))
            }
        };
        let description = match obj.get("description") {
            Some(Value::String(d)) => Some(d.clone()),
            _ => None,
        };
        let strict = obj.get("strict").and_then(Value::as_bool);
        for k in obj.keys() {
            if !matches!(
                k.as_str(),
                "type" | "name" | "input_schema" | "description" | "strict"
            ) {
                dropped.push(format!("tools[].{}", member(k)));
            }
        }
        tools.push(Tool {
            name,
            description,
            parameters,
            strict,
        });
    }
    Ok(tools)
}

fn read_tool_choice(value: &Value) -> Result<(Option<ToolChoice>, Option<bool>), TranslateError> {
    let Some(obj) = value.as_object() else {
        return Err(invalid(
            "`tool_choice` must be an object such as {\"type\":\"auto\"}",
        ));
    };
    let choice = match obj.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Auto,
        Some("any") => ToolChoice::Required,
        Some("none") => ToolChoice::None,
        Some("tool") => ToolChoice::Tool(string_member(obj, "name", "tool_choice")?),
        _ => {
            return Err(invalid(
                "`tool_choice.type` must be `auto`, `any`, `tool` or `none`",
            ))
        }
    };
    let parallel = match obj.get("disable_parallel_tool_use") {
        Some(Value::Bool(true)) => Some(false),
        _ => None,
    };
    Ok((Some(choice), parallel))
}

fn read_messages(
    messages: &[Value],
    pdf: bool,
    dropped: &mut Dropped,
) -> Result<Vec<Turn>, TranslateError> {
    let mut turns = Vec::new();
    // The tool_use ids of the last assistant message, still to be answered.
    let mut pending: Vec<(String, String)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let obj = message
            .as_object()
            .ok_or_else(|| invalid(format!("`{path}` must be an object")))?;
        let role = string_member(obj, "role", &path)?;
        unread(message, &["role", "content"], "messages[]", dropped);
        let blocks: Vec<Value> = match obj.get("content") {
            Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
            Some(Value::Array(b)) => b.clone(),
            _ => {
                return Err(invalid(format!(
                    "`{path}.content` must be a string or an array of content blocks"
                )))
            }
        };
        if !matches!(role.as_str(), "user" | "assistant" | "system") {
            return Err(invalid(format!(
                "`{path}.role` must be `user` or `assistant`"
            )));
        }
        match role.as_str() {
            "user" => {
                let parts = read_user(&blocks, &path, pdf, &mut pending, &mut turns, dropped)?;
                if !parts.is_empty() {
                    turns.push(Turn::User(parts));
                }
            }
            _ if !pending.is_empty() => {}
            "assistant" => {
                let (turn, calls_at) = read_assistant(&blocks, &path, dropped)?;
                if let Turn::Assistant { text, calls } = &turn {
                    pending = calls.iter().map(|c| c.id.clone()).zip(calls_at).collect();
                    if text.is_empty() && calls.is_empty() {
                        continue;
                    }
                }
                turns.push(turn);
                continue;
            }
            "system" => {
                let mut texts = Vec::new();
                for (j, block) in blocks.iter().enumerate() {
                    texts.push(text_block(
                        block,
                        &format!("{path}.content[{j}]"),
                        "messages[].content[]",
                        dropped,
                    )?);
                }
                turns.push(Turn::System(texts.join("\n\n")));
            }
            _ => {}
        }
        if let Some((id, at)) = pending.first() {
            return Err(unexpressible(
                at.clone(),
                format!("tool_use `{id}` has no tool_result in the user message after it; OpenAI needs every tool call answered in the next turn"),
            ));
        }
    }
    if let Some((id, at)) = pending.first() {
        return Err(unexpressible(
            at.clone(),
            format!("tool_use `{id}` has no tool_result after it; OpenAI needs every tool call answered before the conversation continues"),
        ));
    }
    Ok(turns)
}

/// An assistant message, and the path of each of its `tool_use` blocks.
fn read_assistant(
    blocks: &[Value],
    path: &str,
    dropped: &mut Dropped,
) -> Result<(Turn, Vec<String>), TranslateError> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    let mut calls_at = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let bpath = format!("{path}.content[{j}]");
        let obj = block
            .as_object()
            .ok_or_else(|| invalid(format!("`{bpath}` must be a content block object")))?;
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "text" => {
                let text = text_block(block, &bpath, "messages[].content[]", dropped)?;
                if !text.is_empty() {
                    texts.push(text);
                }
            }
            "tool_use" => {
                let id = string_member(obj, "id", &bpath)?;
                let name = string_member(obj, "name", &bpath)?;
                let input = match obj.get("input") {
                    None | Some(Value::Null) => json!({}),
                    Some(input @ Value::Object(_)) => input.clone(),
                    Some(_) => {
                        return Err(invalid(format!("`{bpath}.input` must be a JSON object")))
                    }
                };
                for k in obj.keys() {
                    if !matches!(k.as_str(), "type" | "id" | "name" | "input") {
                        dropped.push(format!("messages[].content[].{}", member(k)));
                    }
                }
                calls.push(Call {
                    id,
                    name,
                    arguments: input.to_string(),
                });
                calls_at.push(bpath);
            }
            "thinking"
            | "redacted_thinking"
            | "server_tool_use"
            | "web_search_tool_result"
            | "web_fetch_tool_result"
            | "code_execution_tool_result"
            | "bash_code_execution_tool_result"
            | "text_editor_code_execution_tool_result"
            | "mcp_tool_use"
            | "mcp_tool_result"
            | "container_upload"
            | "tool_search_tool_result" => dropped.push(format!("messages[].content[type={kind}]")),
            _ => return Err(unknown_block(&bpath, kind)),
        }
    }
    Ok((
        Turn::Assistant {
            text: texts.join("\n\n"),
            calls,
        },
        calls_at,
    ))
}

/// Names in `dropped` the members of `value` (an object at `path`) that
/// are not `read`: what the translation does not carry is never lost
/// silently.
fn unread(value: &Value, read: &[&str], path: &str, dropped: &mut Dropped) {
    for k in value.as_object().into_iter().flat_map(Map::keys) {
        if !read.contains(&k.as_str()) {
            dropped.push(format!("{path}.{}", member(k)));
        }
    }
}

fn unknown_block(path: &str, kind: &str) -> TranslateError {
    unexpressible(
        format!("{path}.type"),
        format!("content blocks of type `{kind}` have no counterpart in the upstream's API; remove the block or use a Claude model"),
    )
}

fn read_user(
    blocks: &[Value],
    path: &str,
    pdf: bool,
    pending: &mut Vec<(String, String)>,
    turns: &mut Vec<Turn>,
    dropped: &mut Dropped,
) -> Result<Vec<Part>, TranslateError> {
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let bpath = format!("{path}.content[{j}]");
        let obj = block
            .as_object()
            .ok_or_else(|| invalid(format!("`{bpath}` must be a content block object")))?;
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
        // The block's members that are translated; the others (such as
        // `cache_control` and `citations`) are dropped.
        let known: &[&str] = match kind {
            "text" => &["type", "text"],
            "image" => &["type", "source"],
            "tool_result" => &["type", "tool_use_id", "content", "is_error"],
            _ => &[],
        };
        let mut known = known;
        match kind {
            "text" => parts.push(Part::Text(string_member(obj, "text", &bpath)?)),
            "image" => parts.push(Part::Image(image_url(obj, &bpath)?)),
            "document" => match document(obj, &bpath, pdf)? {
                Some(part @ Part::File { .. }) => {
                    parts.push(part);
                    known = &["type", "source", "title"];
                }
                Some(part) => {
                    parts.push(part);
                    known = &["type", "source"];
                }
                None => dropped.push("messages[].content[type=document]"),
            },
            "tool_result" => {
                let id = string_member(obj, "tool_use_id", &bpath)?;
                let Some(at) = pending.iter().position(|(p, _)| *p == id) else {
                    return Err(unexpressible(
                        format!("{bpath}.tool_use_id"),
                        format!("no tool_use `{id}` in the assistant message right before; OpenAI needs each tool result to answer a call of the turn before it"),
                    ));
                };
                pending.remove(at);
                let is_error = obj
                    .get("is_error")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let output = tool_output(obj.get("content"), &bpath, dropped)?;
                turns.push(Turn::ToolResult {
                    call_id: id,
                    output,
                    is_error,
                });
            }
            "thinking" | "redacted_thinking" | "search_result" | "container_upload" => {
                dropped.push(format!("messages[].content[type={kind}]"))
            }
            _ => return Err(unknown_block(&bpath, kind)),
        }
        if !known.is_empty() {
            for k in obj.keys() {
                if !known.contains(&k.as_str()) {
                    dropped.push(format!("messages[].content[].{}", member(k)));
                }
            }
        }
        if matches!(kind, "image" | "document") {
            if let Some(source) = obj.get("source") {
                unread(
                    source,
                    &["type", "media_type", "data", "url"],
                    "messages[].content[].source",
                    dropped,
                );
            }
        }
    }
    Ok(parts)
}

/// A tool result's content as text: a string, or its text blocks joined
/// by a blank line (images in a tool result are dropped).
fn tool_output(
    content: Option<&Value>,
    path: &str,
    dropped: &mut Dropped,
) -> Result<String, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for (k, block) in blocks.iter().enumerate() {
                let bpath = format!("{path}.content[{k}]");
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => match block.get("text") {
                        Some(Value::String(t)) => texts.push(t.clone()),
                        _ => return Err(invalid(format!("`{bpath}.text` must be a string"))),
                    },
                    Some(kind @ ("image" | "document" | "search_result")) => {
                        dropped.push(format!("messages[].content[].content[type={kind}]"))
                    }
                    Some(kind) => return Err(unknown_block(&bpath, kind)),
                    None => return Err(invalid(format!("`{bpath}.type` is missing"))),
                }
            }
            Ok(texts.join("\n\n"))
        }
        Some(_) => Err(invalid(format!(
            "`{path}.content` must be a string or an array of content blocks"
        ))),
    }
}

fn image_url(obj: &Map<String, Value>, path: &str) -> Result<String, TranslateError> {
    let source = obj
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(format!("`{path}.source` must be an object")))?;
    let spath = format!("{path}.source");
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = media_type(source, &spath, &IMAGE_TYPES)?;
            let data = base64_data(source, &spath)?;
            Ok(format!("data:{media};base64,{data}"))
        }
        Some("url") => string_member(source, "url", &spath),
        Some(other) => Err(unexpressible(
            format!("{spath}.type"),
            format!("an image source of type `{other}` cannot be read by the upstream; send the image as `base64` or `url`"),
        )),
        None => Err(invalid(format!("`{spath}.type` is missing"))),
    }
}

/// The image types Anthropic's `image` blocks take.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// A base64 source's `media_type`, one of `allowed` (it is written into a
/// data URL, so nothing else may pass).
fn media_type(
    source: &Map<String, Value>,
    spath: &str,
    allowed: &[&'static str],
) -> Result<&'static str, TranslateError> {
    let given = string_member(source, "media_type", spath)?;
    allowed
        .iter()
        .find(|t| t.eq_ignore_ascii_case(&given))
        .copied()
        .ok_or_else(|| {
            invalid(format!(
                "`{spath}.media_type` must be one of {}",
                allowed.join(", ")
            ))
        })
}

/// A base64 source's `data`: base64 text only (it is written into a data
/// URL).
fn base64_data(source: &Map<String, Value>, spath: &str) -> Result<String, TranslateError> {
    let data = string_member(source, "data", spath)?;
    if data
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
    {
        Ok(data)
    } else {
        Err(invalid(format!("`{spath}.data` must be base64 text")))
    }
}

/// A document block: a PDF (when the upstream reads PDFs) or plain text;
/// `None` when it has no counterpart.
fn document(
    obj: &Map<String, Value>,
    path: &str,
    pdf: bool,
) -> Result<Option<Part>, TranslateError> {
    let source = obj
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(format!("`{path}.source` must be an object")))?;
    let spath = format!("{path}.source");
    match source.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Some(Part::Text(string_member(source, "data", &spath)?))),
        Some("base64") if pdf => {
            let media = media_type(source, &spath, &["application/pdf"])?;
            let data = base64_data(source, &spath)?;
            let filename = match obj.get("title") {
                Some(Value::String(t)) if !t.is_empty() => t.clone(),
                _ => "document.pdf".to_owned(),
            };
            Ok(Some(Part::File {
                data_url: format!("data:{media};base64,{data}"),
                filename,
            }))
        }
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------
// The answer side.

/// Token counts, as Anthropic reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Usage {
    /// Input tokens not read from a cache.
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub output: u64,
}

impl Usage {
    /// From an OpenAI usage object: Chat Completions (`prompt_tokens`,
    /// `completion_tokens`, `prompt_tokens_details.cached_tokens`) or
    /// Responses (`input_tokens`, `output_tokens`,
    /// `input_tokens_details.cached_tokens`). Cached and cache-written
    /// tokens are not counted again in `input`.
    pub fn from_openai(usage: &Value) -> Usage {
        let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        let total = n(usage
            .get("prompt_tokens")
            .or_else(|| usage.get("input_tokens")));
        let details = usage
            .get("prompt_tokens_details")
            .or_else(|| usage.get("input_tokens_details"));
        let cache_read = n(details.and_then(|d| d.get("cached_tokens")));
        let cache_write = n(details.and_then(|d| d.get("cache_write_tokens")));
        Usage {
            input: total.saturating_sub(cache_read).saturating_sub(cache_write),
            cache_read,
            cache_write,
            output: n(usage
                .get("completion_tokens")
                .or_else(|| usage.get("output_tokens"))),
        }
    }

    pub fn to_json(self) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": self.output,
        })
    }
}

/// An Anthropic message id for an upstream's id.
pub(super) fn message_id(upstream: Option<&str>) -> String {
    match upstream {
        Some(id) if id.starts_with("msg_") => id.to_owned(),
        Some(id) if !id.is_empty() => format!("msg_{id}"),
        _ => "msg_translated".to_owned(),
    }
}

/// The Anthropic `message` object (non-streaming answer).
pub(super) fn message_body(
    id: &str,
    model: &str,
    content: Vec<Block>,
    stop_reason: &str,
    usage: Usage,
) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Message<'a> {
        id: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
        role: &'static str,
        model: &'a str,
        content: Vec<Block>,
        stop_reason: &'a str,
        stop_sequence: Option<()>,
        usage: Value,
    }
    let message = Message {
        id,
        kind: "message",
        role: "assistant",
        model,
        content,
        stop_reason,
        stop_sequence: None,
        usage: usage.to_json(),
    };
    serde_json::to_vec(&message).unwrap_or_default()
}

/// A content block of an Anthropic message the gateway writes: JSON, or a
/// tool use whose `input` is the upstream's own JSON text, so its numbers
/// reach the client as written (a parsed number is a 64-bit float).
#[derive(Debug)]
pub(super) enum Block {
    Json(Value),
    ToolUse {
        id: String,
        name: String,
        input: Box<serde_json::value::RawValue>,
    },
}

impl serde::Serialize for Block {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Block::Json(value) => value.serialize(serializer),
            Block::ToolUse { id, name, input } => {
                let mut map = serializer.serialize_map(Some(4))?;
                map.serialize_entry("type", "tool_use")?;
                map.serialize_entry("id", id)?;
                map.serialize_entry("name", name)?;
                map.serialize_entry("input", input)?;
                map.end()
            }
        }
    }
}

/// A tool call's `arguments` text as the `input` of a [`Block::ToolUse`]:
/// checked to be a JSON object (empty text is `{}`), kept as written.
///
/// # Errors
/// [`TranslateError::Unexpressible`] naming `path`, as [`tool_input`].
pub(super) fn raw_tool_input(
    arguments: &str,
    path: &str,
) -> Result<Box<serde_json::value::RawValue>, TranslateError> {
    tool_input(arguments, path)?;
    let text = match arguments.trim() {
        "" => "{}".to_owned(),
        text => super::openai_client::compact_json(text),
    };
    serde_json::value::RawValue::from_string(text).map_err(|e| invalid(format!("`{path}`: {e}")))
}

/// A tool call's `arguments` text as the Anthropic `input` object (empty
/// text is `{}`).
pub(super) fn tool_input(arguments: &str, path: &str) -> Result<Value, TranslateError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(unexpressible(
            path,
            "the model's tool call arguments are not a JSON object, which Anthropic's `tool_use.input` must be; retry the request",
        )),
    }
}

/// The Anthropic `error.type` for an HTTP status (Anthropic's error table).
pub(super) fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The Anthropic `error.type` for an OpenAI error `type` or `code`.
pub(super) fn error_type_for_code(code: &str) -> &'static str {
    match code {
        "invalid_request_error"
        | "context_length_exceeded"
        | "invalid_prompt"
        | "invalid_value"
        | "unsupported_parameter" => "invalid_request_error",
        "authentication_error" | "invalid_api_key" => "authentication_error",
        "permission_error" | "permission_denied" => "permission_error",
        "not_found_error" | "model_not_found" => "not_found_error",
        "insufficient_quota" | "billing_error" => "billing_error",
        "server_is_overloaded" | "overloaded" | "overloaded_error" | "slow_down" => {
            "overloaded_error"
        }
        "timeout" | "timeout_error" => "timeout_error",
        c if c.contains("rate_limit") || c.contains("usage_limit") => "rate_limit_error",
        _ => "api_error",
    }
}

/// An OpenAI-style error object's message and Anthropic type. A context
/// window overflow is worded the way Anthropic words it ("prompt is too
/// long"), which clients such as Claude Code act on.
pub(super) fn openai_error(error: &Value, default_type: &'static str) -> (&'static str, String) {
    let field = |k: &str| error.get(k).and_then(Value::as_str);
    let code = field("code").unwrap_or("");
    let mut kind = default_type;
    for c in [code, field("type").unwrap_or("")] {
        let t = error_type_for_code(c);
        if t != "api_error" {
            kind = t;
            break;
        }
    }
    let mut message = match error {
        Value::String(s) => s.clone(),
        _ => field("message")
            .unwrap_or("the upstream reported an error")
            .to_owned(),
    };
    if code == "context_length_exceeded" {
        message = format!("prompt is too long: {message}");
    }
    (kind, message)
}

/// The Anthropic error body.
pub(super) fn error_body(kind: &str, message: &str) -> Vec<u8> {
    json!({"type": "error", "error": {"type": kind, "message": message}})
        .to_string()
        .into_bytes()
}

/// An upstream's OpenAI-style error answer (`{"error":{…}}`, or the
/// ChatGPT backend's `{"detail":"…"}`) as an Anthropic error body, its
/// type from the status (or from the error's code when that says more).
pub(super) fn error_response(status: u16, body: &[u8]) -> Vec<u8> {
    let by_status = error_type_for_status(status);
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let (kind, message) = match parsed.as_ref() {
        Some(v)
            if v.get("error")
                .is_some_and(|e| e.is_object() || e.is_string()) =>
        {
            let (kind, message) = openai_error(&v["error"], by_status);
            // The status decides, except where the code says more
            // (a 429 that is an exhausted quota, a 400 that is a context overflow).
            let kind = if kind == "billing_error" || by_status == "api_error" {
                kind
            } else {
                by_status
            };
            (kind, message)
        }
        Some(v) if v.get("detail").and_then(Value::as_str).is_some() => (
            by_status,
            v["detail"].as_str().unwrap_or_default().to_owned(),
        ),
        _ => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(1000).collect();
            let message = if text.is_empty() {
                format!("the upstream answered {status} with an empty body")
            } else {
                format!("the upstream answered {status}: {text}")
            };
            (by_status, message)
        }
    };
    error_body(kind, &message)
}

/// The most argument text one streamed tool call may carry (bytes).
const ARGUMENTS_MAX: usize = 4 << 20;

/// The kind of an open content block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockKind {
    Text,
    Thinking,
    ToolUse,
}

/// Writes an Anthropic Messages event stream: `message_start`, content
/// blocks opened and closed one at a time, `message_delta` and
/// `message_stop`, or an `error` event. Blocks are identified by a key of
/// the upstream's (an output index and a part index).
#[derive(Debug)]
pub(super) struct AnthropicWriter {
    model: String,
    started: bool,
    done: bool,
    next_index: usize,
    open: Option<(BlockKind, (u64, u64), usize)>,
    /// Keys of the tool blocks already closed.
    closed_tools: Vec<(u64, u64)>,
    /// The id and name each tool block was opened with, by key.
    tool_ids: Vec<((u64, u64), String, String)>,
    /// The open tool block's arguments so far, checked when it closes.
    arguments: String,
    /// Whether the open tool block was given arguments (even empty text).
    arguments_given: bool,
    /// `message_start`'s `usage.input_tokens`.
    input_estimate: u64,
    /// Whether a tool_use block was written.
    pub tool_use: bool,
}

impl AnthropicWriter {
    pub fn new(model: &str) -> Self {
        AnthropicWriter {
            model: model.to_owned(),
            started: false,
            done: false,
            next_index: 0,
            open: None,
            closed_tools: Vec::new(),
            tool_ids: Vec::new(),
            arguments: String::new(),
            arguments_given: false,
            input_estimate: 0,
            tool_use: false,
        }
    }

    /// `message_start` reports `input_tokens` as `estimate` (the upstream
    /// counts only at the end; `message_delta` then carries its count).
    pub fn input_estimate(mut self, estimate: u64) -> Self {
        self.input_estimate = estimate;
        self
    }

    /// Whether the stream was ended (by `message_stop` or an error).
    pub fn done(&self) -> bool {
        self.done
    }

    fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
        write_sse(out, Some(name), data.to_string().as_bytes());
    }

    /// Writes `message_start` unless written.
    pub fn start(&mut self, out: &mut Vec<u8>, upstream_id: Option<&str>) {
        if self.started || self.done {
            return;
        }
        self.started = true;
        let message = json!({
            "id": message_id(upstream_id),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": Usage { input: self.input_estimate, ..Usage::default() }.to_json(),
        });
        Self::event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": message}),
        );
    }

    /// Closes the open block, if any. A tool block whose arguments are not
    /// a JSON object (what `tool_use.input` must be) ends the stream with
    /// an error event instead: the client would otherwise run a tool call
    /// it cannot read.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        if self.done {
            // Ended (by an error): nothing more is written.
            self.open = None;
            return;
        }
        if let Some((kind, key, index)) = self.open.take() {
            if kind == BlockKind::ToolUse {
                self.closed_tools.push(key);
                let arguments = std::mem::take(&mut self.arguments);
                if !std::mem::take(&mut self.arguments_given) {
                    self.error(
                        out,
                        "api_error",
                        "the upstream's tool call carried no arguments (JSON text of an object, `{}` for none); retry the request",
                    );
                    return;
                }
                if tool_input(&arguments, "tool_use.input").is_err() {
                    self.error(
                        out,
                        "api_error",
                        "the upstream streamed tool call arguments that are not a JSON object, which Anthropic's `tool_use.input` must be; retry the request",
                    );
                    return;
                }
            }
            Self::event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    /// Closes the open block if it belongs to the upstream's output item
    /// `output_index` (the first half of its key).
    pub fn close_output(&mut self, out: &mut Vec<u8>, output_index: u64) {
        if matches!(self.open, Some((_, (k, _), _)) if k == output_index) {
            self.close(out);
        }
    }

    fn open_block(
        &mut self,
        out: &mut Vec<u8>,
        kind: BlockKind,
        key: (u64, u64),
        block: Value,
    ) -> Option<usize> {
        self.start(out, None);
        self.close(out);
        if self.done {
            return None;
        }
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((kind, key, index));
        Self::event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        Some(index)
    }

    fn delta(out: &mut Vec<u8>, index: usize, delta: Value) {
        Self::event(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    /// Text for the text block of `key` (opened when another block is open).
    pub fn text(&mut self, out: &mut Vec<u8>, key: (u64, u64), text: &str) {
        if self.done || text.is_empty() {
            return;
        }
        let index = match self.open {
            Some((BlockKind::Text, k, index)) if k == key => index,
            _ => match self.open_block(
                out,
                BlockKind::Text,
                key,
                json!({"type": "text", "text": ""}),
            ) {
                Some(index) => index,
                None => return,
            },
        };
        Self::delta(out, index, json!({"type": "text_delta", "text": text}));
    }

    /// Reasoning text for the thinking block of `key`.
    pub fn thinking(&mut self, out: &mut Vec<u8>, key: (u64, u64), text: &str) {
        if self.done || text.is_empty() {
            return;
        }
        let index = match self.open {
            Some((BlockKind::Thinking, k, index)) if k == key => index,
            _ => match self.open_block(
                out,
                BlockKind::Thinking,
                key,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
            ) {
                Some(index) => index,
                None => return,
            },
        };
        Self::delta(
            out,
            index,
            json!({"type": "thinking_delta", "thinking": text}),
        );
    }

    /// Whether the thinking block of `key` is the open block.
    pub fn is_open(&self, kind: BlockKind, key: (u64, u64)) -> bool {
        matches!(self.open, Some((k, open_key, _)) if k == kind && open_key == key)
    }

    /// Opens the tool_use block of `key`.
    pub fn tool_start(&mut self, out: &mut Vec<u8>, key: (u64, u64), id: &str, name: &str) {
        if self.done {
            return;
        }
        if name.is_empty() {
            // A call the client could not dispatch.
            self.error(
                out,
                "api_error",
                "the upstream started a tool call without a function name; retry the request",
            );
            return;
        }
        if self
            .open_block(
                out,
                BlockKind::ToolUse,
                key,
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
            )
            .is_some()
        {
            self.tool_use = true;
            self.arguments_given = false;
            self.tool_ids.push((key, id.to_owned(), name.to_owned()));
        }
    }

    /// The id the tool block of `key` was opened with.
    pub fn tool_id(&self, key: (u64, u64)) -> Option<&str> {
        self.tool_ids
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, id, _)| id.as_str())
    }

    /// The name the tool block of `key` was opened with.
    pub fn tool_name(&self, key: (u64, u64)) -> Option<&str> {
        self.tool_ids
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, name)| name.as_str())
    }

    /// Argument text for the tool_use block of `key` (empty text counts
    /// as arguments given: a block closed without any is an error). A
    /// block that is no longer open cannot take more input in Anthropic's
    /// stream: that is an error event.
    pub fn tool_args(&mut self, out: &mut Vec<u8>, key: (u64, u64), json_text: &str) {
        if self.done {
            return;
        }
        match self.open {
            Some((BlockKind::ToolUse, k, _)) if k == key && json_text.is_empty() => {
                self.arguments_given = true;
            }
            Some((BlockKind::ToolUse, k, _)) if k == key && self.arguments.len() + json_text.len() > ARGUMENTS_MAX => self.error(
                out,
                "api_error",
                &format!("the upstream streamed a tool call's arguments longer than {} MiB, more than the gateway relays; retry the request", ARGUMENTS_MAX >> 20),
            ),
            Some((BlockKind::ToolUse, k, index)) if k == key => {
                self.arguments_given = true;
                self.arguments.push_str(json_text);
                Self::delta(
                    out,
                    index,
                    json!({"type": "input_json_delta", "partial_json": json_text}),
                )
            }
            _ if json_text.is_empty() => {}
            _ => self.error(
                out,
                "api_error",
                "the upstream streamed a tool call's arguments after another block started, which an Anthropic stream cannot express; retry without streaming",
            ),
        }
    }

    /// Whether the tool block of `key` was opened (and maybe closed).
    pub fn tool_seen(&self, key: (u64, u64)) -> bool {
        self.closed_tools.contains(&key) || self.is_open(BlockKind::ToolUse, key)
    }

    /// Ends the message: closes the open block, writes `message_delta`
    /// with the stop reason and the usage, and `message_stop`.
    pub fn end(&mut self, out: &mut Vec<u8>, stop_reason: &str, usage: Usage) {
        if self.done {
            return;
        }
        self.start(out, None);
        self.close(out);
        if self.done {
            return;
        }
        Self::event(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": usage.to_json(),
            }),
        );
        Self::event(out, "message_stop", &json!({"type": "message_stop"}));
        self.done = true;
    }

    /// Ends the stream with an `error` event.
    pub fn error(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        if self.done {
            return;
        }
        self.done = true;
        Self::event(
            out,
            "error",
            &json!({"type": "error", "error": {"type": kind, "message": message}}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_map_to_efforts_at_the_documented_bounds() {
        assert_eq!(effort_for_budget(1024), "low");
        assert_eq!(effort_for_budget(4095), "low");
        assert_eq!(effort_for_budget(4096), "medium");
        assert_eq!(effort_for_budget(16383), "medium");
        assert_eq!(effort_for_budget(16384), "high");
        assert_eq!(effort_for_budget(31999), "high");
    }

    #[test]
    fn dropped_names_are_header_safe_and_bounded() {
        let mut body = json!({"model": "m", "messages": [], "a,b\r\nX-Evil: 1": 1, "é": 2});
        for i in 0..100 {
            body[format!("extra{i:03}")] = json!(i);
        }
        let conv = read_request(body.to_string().as_bytes(), true).unwrap();
        let fields = conv.dropped.fields();
        assert_eq!(fields.len(), MAX_DROPPED);
        assert_eq!(fields.last().map(String::as_str), Some(MORE_DROPPED));
        assert!(fields.iter().all(|f| f
            .bytes()
            .all(|b| (b == b' ' || b.is_ascii_graphic()) && b != b',')));
        assert_eq!(member(&"x".repeat(70)), format!("{}...", "x".repeat(64)));
        assert_eq!(member("a,b\r\nc"), "a?b??c");
    }

    #[test]
    fn null_members_are_absent() {
        let body = br#"{"model":"m","messages":[],"temperature":null,"system":null,"tools":null,"stream":null}"#;
        let conv = read_request(body, true).unwrap();
        assert!(conv.dropped.is_empty());
        assert_eq!(conv.temperature, None);
    }

    #[test]
    fn usage_does_not_count_cached_tokens_twice() {
        let u = Usage::from_openai(&json!({
            "prompt_tokens": 100, "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 60}
        }));
        assert_eq!(
            u,
            Usage {
                input: 40,
                cache_read: 60,
                cache_write: 0,
                output: 7
            }
        );
        let u = Usage::from_openai(&json!({"input_tokens": 5, "output_tokens": 2,
            "input_tokens_details": {"cached_tokens": 9}}));
        assert_eq!(u.input, 0);
    }

    #[test]
    fn error_bodies_take_their_type_from_the_status() {
        let body = error_response(
            429,
            br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#,
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"type":"error","error":{"type":"rate_limit_error","message":"slow down"}})
        );
        let body = error_response(429, br#"{"error":{"message":"no quota","type":"insufficient_quota","code":"insufficient_quota"}}"#);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "billing_error");
        let body = error_response(400, br#"{"error":{"message":"too many tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["message"], "prompt is too long: too many tokens");
        let body = error_response(400, br#"{"detail":"Store must be set to false"}"#);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["error"],
            json!({"type":"invalid_request_error","message":"Store must be set to false"})
        );
        let body = error_response(502, b"<html>bad gateway</html>");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(
            v["error"]["message"],
            "the upstream answered 502: <html>bad gateway</html>"
        );
        let v: Value = serde_json::from_slice(&error_response(529, b"")).unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
    }
}
