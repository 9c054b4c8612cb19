//! An Anthropic Messages client (`POST /v1/messages`, Claude Code
//! included) served by an OpenAI Chat Completions upstream (OpenAI or
//! Fireworks).
//!
//! Shapes follow Anthropic's Messages API reference and streaming guide
//! (`platform.claude.com/docs/en/api/messages`, `…/build-with-claude/streaming`)
//! and OpenAI's Chat Completions reference
//! (`platform.openai.com/docs/api-reference/chat`), with Fireworks'
//! documented differences (`docs.fireworks.ai/api-reference/post-chatcompletions`).
//!
//! # The request
//!
//! | Anthropic member | Chat Completions |
//! |---|---|
//! | `model`, `stream` | `model`, `stream` (+ `stream_options.include_usage: true`) |
//! | `system` (string or text blocks) | a first `system` message (blocks joined by a blank line) |
//! | `messages[]` `role: "system"` entry | a `system` message in place |
//! | user `text` / `image` (`base64`, `url`) | `text` / `image_url` parts (base64 as a `data:` URL) |
//! | user `document`: text source / PDF | a `text` part / a `file` part (OpenAI only; dropped on Fireworks) |
//! | assistant `text` + `tool_use` | one `assistant` message: `content` and `tool_calls` (`input` as the `arguments` JSON text) |
//! | user `tool_result` (string or text blocks) | a `tool` message (`tool_call_id`) right after the assistant turn; `is_error` prefixes the text with `Error: ` |
//! | `tools[]` (`input_schema`, `strict`) | `tools[]` `{"type":"function","function":{name, description, parameters, strict}}` |
//! | `tool_choice` `auto` / `any` / `tool` / `none` | `auto` / `required` / `{"type":"function",…}` / `none` |
//! | `tool_choice.disable_parallel_tool_use: true` | `parallel_tool_calls: false` |
//! | `max_tokens` | OpenAI `max_completion_tokens`; Fireworks `max_tokens` |
//! | `stop_sequences` | `stop` (OpenAI takes at most 4) |
//! | `temperature`, `top_p` | the same |
//! | `top_k` | Fireworks `top_k`; dropped on OpenAI |
//! | `thinking` `enabled` | `reasoning_effort`: budget < 4096 `low`, < 16384 `medium`, else `high` |
//! | `output_config.effort` (`low`/`medium`/`high`/`max`) | `reasoning_effort` (`max` → `high`); wins over a thinking budget |
//! | `metadata.user_id` | Fireworks `user`; OpenAI `safety_identifier` when ≤ 64 characters, else dropped |
//! | `output_config.format` (`json_schema`) | `response_format: {"type":"json_schema","json_schema":{"name":"output","schema":…,"strict":true}}` |
//!
//! Dropped and named in [`Dropped`](super::Dropped): `cache_control`, `citations`, thinking
//! and redacted-thinking blocks in the history, server tools and their
//! blocks, images inside a `tool_result`, `thinking: disabled`, `top_k` on
//! OpenAI, `context_management`, `container`, `mcp_servers`,
//! `service_tier`, `output_config` members other than `effort` and `format`, and any
//! other top-level member. A `tool_choice` is dropped when no client tool
//! remains. Refused ([`TranslateError::Unexpressible`]): an unknown content
//! block type, an image by Files API id, a `tool_result` answering no
//! `tool_use` of the turn before, a `tool_use` left unanswered.
//!
//! Paths in the dropped list leave array indices out
//! (`messages[].content[].cache_control`; a block by its type,
//! `messages[].content[type=thinking]`), so a member dropped in every turn
//! is named once; at most 32 are named (the last is then `(more members)`).
//! A member whose value is `null` counts as absent.
//!
//! ```
//! use llm_integration_core::translate::messages_to_chat::{request, Stream, Target};
//! use llm_integration_core::translate::StreamTranslator;
//!
//! let body = br#"{"model":"gpt-5.5","max_tokens":1024,"stream":true,"top_k":5,
//!     "messages":[{"role":"user","content":"Hello"}]}"#;
//! let translated = request(body, Target::OpenAi)?;
//! assert_eq!(translated.dropped.header_value().as_deref(), Some("top_k"));
//! let upstream: serde_json::Value = serde_json::from_slice(&translated.body)?;
//! assert_eq!(upstream["max_completion_tokens"], 1024);
//! assert_eq!(upstream["stream_options"]["include_usage"], true);
//!
//! let mut stream = Stream::new("gpt-5.5");
//! let mut out = Vec::new();
//! stream.feed(b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n", &mut out);
//! stream.feed(b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", &mut out);
//! stream.finish(&mut out);
//! let text = String::from_utf8(out)?;
//! assert!(text.starts_with("event: message_start\n"));
//! assert!(text.contains("event: content_block_delta\n") && text.contains(r#""text":"Hi""#));
//! assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The answer
//!
//! | Chat Completions | Anthropic |
//! |---|---|
//! | `message.reasoning_content` (or `reasoning`) | a `thinking` block (first) |
//! | `message.content`, `message.refusal` | a `text` block |
//! | `message.tool_calls[]` | `tool_use` blocks (`input` parsed from `arguments`) |
//! | `finish_reason` `stop` / `length` / `tool_calls` / `content_filter` | `stop_reason` `end_turn` / `max_tokens` / `tool_use` / `refusal` (a refusal is `refusal` too) |
//! | `usage.prompt_tokens` − cached | `usage.input_tokens` |
//! | `usage.prompt_tokens_details.cached_tokens` | `usage.cache_read_input_tokens` |
//! | `usage.completion_tokens` | `usage.output_tokens` |
//!
//! A stream ([`Stream`]) becomes Anthropic's event sequence:
//! `message_start`, each block's `content_block_start`, deltas
//! (`text_delta`, `thinking_delta`, `input_json_delta`) and
//! `content_block_stop`, then `message_delta` (stop reason and usage, read
//! from the usage chunk) and `message_stop` at `[DONE]`. Parallel tool
//! calls become one block each, in the order their `index` first appears.
//! A chunk with an `error` object becomes an `event: error`; so does a
//! stream that ends before `[DONE]`, a finish reason without a counterpart
//! (or none), two tool calls at one `index` (different ids), a tool call
//! without a name, or one whose arguments never came or are not a JSON
//! object. The stop reason `stop_sequence` is never reported: Chat
//! Completions does not say which sequence matched (`end_turn`).
//!
//! In a whole answer, `audio`, a legacy `function_call`, content that is
//! not text, a tool call of another type or without `arguments`, and a
//! finish reason without a counterpart make it an error (a 502); the
//! message's `annotations`, the choice's `logprobs` and any other member
//! are dropped and named (`answer.choices[].message.annotations`).

use serde_json::{json, Map, Value};

pub use super::anthropic_client::Target;
use super::anthropic_client::{
    self, read_request, AnthropicWriter, Block, Conversation, Part, ToolChoice, Turn, Usage,
};
use super::{Dropped, StreamTranslator, TranslateError, TranslatedAnswer, TranslatedRequest};
use crate::sse::SseFramer;

/// The most stop sequences OpenAI accepts.
const OPENAI_MAX_STOP: usize = 4;

/// Translates a client's Anthropic Messages body into a Chat Completions
/// body for `target`.
///
/// # Errors
///
/// [`TranslateError::InvalidBody`] when the body is not an Anthropic
/// Messages request; [`TranslateError::Unexpressible`] naming the member
/// that Chat Completions cannot express.
pub fn request(body: &[u8], target: Target) -> Result<TranslatedRequest, TranslateError> {
    let mut conv = read_request(body, target == Target::OpenAi)?;
    conv.check_answerable()?;
    if matches!(conv.turns.last(), Some(Turn::Assistant { .. })) {
        // A prefill Claude would continue; the OpenAI model answers anew.
        conv.dropped
            .push("prefill: the last message is the assistant's, which the model answers anew");
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(conv.model.clone()));
    out.insert("messages".into(), Value::Array(messages(&conv)));
    if let Some(max) = conv.max_tokens {
        let key = match target {
            Target::OpenAi => "max_completion_tokens",
            Target::Fireworks => "max_tokens",
        };
        out.insert(key.into(), json!(max));
    }
    if conv.stream {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(t) = conv.temperature.take() {
        out.insert("temperature".into(), t);
    }
    if let Some(p) = conv.top_p.take() {
        out.insert("top_p".into(), p);
    }
    if let Some(k) = conv.top_k.take() {
        match target {
            Target::Fireworks => {
                out.insert("top_k".into(), k);
            }
            Target::OpenAi => conv.dropped.push("top_k"),
        }
    }
    if !conv.stop_sequences.is_empty() {
        if target == Target::OpenAi && conv.stop_sequences.len() > OPENAI_MAX_STOP {
            return Err(TranslateError::Unexpressible {
                field: "stop_sequences".into(),
                reason: format!(
                    "OpenAI accepts at most {OPENAI_MAX_STOP} stop sequences; send {OPENAI_MAX_STOP} or fewer"
                ),
            });
        }
        out.insert("stop".into(), json!(conv.stop_sequences));
    }
    if !conv.tools.is_empty() {
        let tools: Vec<Value> = conv
            .tools
            .iter()
            .map(|t| {
                let mut function = Map::new();
                function.insert("name".into(), json!(t.name));
                if let Some(d) = &t.description {
                    function.insert("description".into(), json!(d));
                }
                function.insert("parameters".into(), t.parameters.clone());
                if let Some(strict) = t.strict {
                    function.insert("strict".into(), json!(strict));
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &conv.tool_choice {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Required => json!("required"),
            ToolChoice::None => json!("none"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
        out.insert("tool_choice".into(), choice);
    }
    if let Some(parallel) = conv.parallel_tool_calls {
        out.insert("parallel_tool_calls".into(), json!(parallel));
    }
    if let Some(effort) = conv.effort {
        out.insert("reasoning_effort".into(), json!(effort));
    }
    if let Some(schema) = conv.output_schema.take() {
        out.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}}),
        );
    }
    conv.put_user(&mut out, target);
    Ok(TranslatedRequest {
        body: Value::Object(out).to_string().into_bytes(),
        model: conv.model,
        stream: conv.stream,
        dropped: conv.dropped,
    })
}

fn user_content(parts: &[Part]) -> Value {
    if let [Part::Text(text)] = parts {
        return json!(text);
    }
    let parts: Vec<Value> = parts
        .iter()
        .map(|p| match p {
            Part::Text(text) => json!({"type": "text", "text": text}),
            Part::Image(url) => json!({"type": "image_url", "image_url": {"url": url}}),
            Part::File { data_url, filename } => {
                json!({"type": "file", "file": {"file_data": data_url, "filename": filename}})
            }
        })
        .collect();
    Value::Array(parts)
}

/// The text of a tool result as the model reads it.
pub(super) fn tool_output_text(output: &str, is_error: bool) -> String {
    if is_error {
        format!("Error: {output}")
    } else {
        output.to_owned()
    }
}

fn messages(conv: &Conversation) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(system) = &conv.system {
        out.push(json!({"role": "system", "content": system}));
    }
    for turn in &conv.turns {
        out.push(match turn {
            Turn::System(text) => json!({"role": "system", "content": text}),
            Turn::User(parts) => json!({"role": "user", "content": user_content(parts)}),
            Turn::Assistant { text, calls } => {
                let mut m = Map::new();
                m.insert("role".into(), json!("assistant"));
                m.insert(
                    "content".into(),
                    if text.is_empty() && !calls.is_empty() {
                        Value::Null
                    } else {
                        json!(text)
                    },
                );
                if !calls.is_empty() {
                    let calls: Vec<Value> = calls
                        .iter()
                        .map(|c| {
                            json!({
                                "id": c.id,
                                "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments},
                            })
                        })
                        .collect();
                    m.insert("tool_calls".into(), Value::Array(calls));
                }
                Value::Object(m)
            }
            Turn::ToolResult {
                call_id,
                output,
                is_error,
            } => json!({
                "role": "tool",
                "tool_call_id": call_id,
                "content": tool_output_text(output, *is_error),
            }),
        });
    }
    out
}

/// The Anthropic stop reason for a Chat Completions `finish_reason`
/// (`tool_use`: the answer calls a tool; `refusal`: it refused); the
/// error's message for a finish reason with no counterpart (an unknown
/// one, or none).
fn stop_reason(
    finish: Option<&str>,
    refusal: bool,
    tool_use: bool,
) -> Result<&'static str, String> {
    let reason = match finish {
        Some("length") => "max_tokens",
        Some("content_filter") => "refusal",
        // A tool use stop only with a tool use to act on.
        Some("stop" | "tool_calls" | "function_call") if tool_use => "tool_use",
        Some("stop" | "tool_calls" | "function_call") => "end_turn",
        Some(other) => {
            return Err(format!(
                "the upstream's answer ended with finish_reason `{}`, which the Anthropic Messages API has no counterpart for; retry the request",
                anthropic_client::member(other)
            ))
        }
        None => {
            return Err(
                "the upstream's answer ended without a finish_reason; retry the request".into(),
            )
        }
    };
    Ok(if refusal { "refusal" } else { reason })
}

/// The reasoning text of a chat message or delta (`reasoning_content`, or
/// `reasoning`), when it has some.
fn reasoning_text(v: &Map<String, Value>) -> Option<&str> {
    v.get("reasoning_content")
        .and_then(Value::as_str)
        .or_else(|| v.get("reasoning").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

/// The members of a chat completion's `message` the translation reads.
const MESSAGE_MEMBERS: [&str; 6] = [
    "role",
    "content",
    "refusal",
    "tool_calls",
    "reasoning_content",
    "reasoning",
];

/// Translates a `chat.completion` body into an Anthropic `message` body.
///
/// Errors: as [`answer`].
pub fn response(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    answer(body).map(|a| a.body)
}

/// Translates a `chat.completion` body into an Anthropic `message` body,
/// naming what had no counterpart (`annotations`, `logprobs`, other
/// members of the message).
///
/// # Errors
///
/// [`TranslateError::InvalidBody`] when the body is not a chat completion
/// (or is an error object), or holds what Anthropic's message cannot
/// carry: `audio`, a legacy `function_call`, content that is not text, a
/// tool call that is not a function's, has no name or no `arguments`, a
/// finish reason without a counterpart (or none);
/// [`TranslateError::Unexpressible`] when a tool call's arguments are not
/// a JSON object.
pub fn answer(body: &[u8]) -> Result<TranslatedAnswer, TranslateError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        TranslateError::InvalidBody(format!("the upstream's answer is not JSON: {e}"))
    })?;
    if let Some(error) = v.get("error").filter(|e| !e.is_null()) {
        let (_, message) = anthropic_client::openai_error(error, "api_error");
        return Err(TranslateError::InvalidBody(format!(
            "the upstream answered an error: {message}"
        )));
    }
    let invalid = |what: String| TranslateError::InvalidBody(format!("the upstream's {what}"));
    // The choice whose `index` is 0 (the request never asks for more):
    // by its index, not its place in the array.
    let choices = v.get("choices").and_then(Value::as_array);
    let choice = choices
        .into_iter()
        .flatten()
        .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        .ok_or_else(|| invalid("chat completion has no choice of index 0".into()))?;
    let mut dropped = Dropped::default();
    if choices.is_some_and(|c| c.len() > 1) {
        dropped.push("answer.choices[index>0]");
    }
    if let Some(object) = choice.as_object() {
        for key in object.keys() {
            if !["index", "message", "finish_reason", "logprobs"].contains(&key.as_str())
                && !object[key].is_null()
            {
                dropped.push(format!(
                    "answer.choices[].{}",
                    anthropic_client::member(key)
                ));
            }
        }
    }
    let message = choice
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("choices[0].message is not an object".into()))?;
    if message
        .get("role")
        .is_some_and(|r| !r.is_null() && r != "assistant")
    {
        return Err(invalid("choices[0].message.role is not `assistant`".into()));
    }
    if message
        .get("tool_calls")
        .is_some_and(|c| !c.is_array() && !c.is_null())
    {
        return Err(invalid(
            "choices[0].message.tool_calls is not an array".into(),
        ));
    }
    for (key, value) in message {
        if value.is_null() || MESSAGE_MEMBERS.contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "audio" => {
                return Err(invalid(
                    "choices[0].message carries audio, which an Anthropic message cannot".into(),
                ))
            }
            "function_call" => {
                return Err(invalid(
                    "choices[0].message carries a legacy `function_call`, which the request never offered".into(),
                ))
            }
            "annotations" if value.as_array().is_some_and(Vec::is_empty) => {}
            _ => dropped.push(format!(
                "answer.choices[].message.{}",
                anthropic_client::member(key)
            )),
        }
    }
    if choice.get("logprobs").is_some_and(|l| !l.is_null()) {
        dropped.push("answer.choices[].logprobs");
    }
    let mut content = Vec::new();
    if let Some(reasoning) = reasoning_text(message) {
        content.push(Block::Json(
            json!({"type": "thinking", "thinking": reasoning, "signature": ""}),
        ));
    }
    // A string, or (from some compatible servers) text parts; anything
    // else is not an answer the client could read.
    match message.get("content").unwrap_or(&Value::Null) {
        Value::Null => {}
        Value::String(text) if text.is_empty() => {}
        Value::String(text) => content.push(Block::Json(json!({"type": "text", "text": text}))),
        Value::Array(parts) => {
            for (i, part) in parts.iter().enumerate() {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text" | "output_text"), Some(text)) if !text.is_empty() => {
                        content.push(Block::Json(json!({"type": "text", "text": text})));
                    }
                    (Some("text" | "output_text"), Some(_)) => {}
                    _ => {
                        return Err(invalid(format!(
                            "choices[0].message.content[{i}] is not a text part"
                        )))
                    }
                }
            }
        }
        _ => {
            return Err(invalid(
                "choices[0].message.content is neither text nor text parts".into(),
            ))
        }
    }
    let refusal = match message.get("refusal") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()).filter(|s| !s.is_empty()),
        Some(_) => return Err(invalid("choices[0].message.refusal is not text".into())),
    };
    if let Some(text) = refusal {
        content.push(Block::Json(json!({"type": "text", "text": text})));
    }
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, call) in calls.iter().enumerate() {
        let at = format!("choices[0].message.tool_calls[{i}]");
        if call
            .get("type")
            .is_some_and(|t| t != "function" && !t.is_null())
        {
            return Err(invalid(format!("{at} is not a function call")));
        }
        let function = call.get("function").unwrap_or(&Value::Null);
        let arguments = format!("{at}.function.arguments");
        let input = match function.get("arguments") {
            Some(Value::String(text)) => anthropic_client::raw_tool_input(text, &arguments)?,
            // Some compatible servers send the object itself.
            Some(object @ Value::Object(_)) => serde_json::value::to_raw_value(object)
                .map_err(|e| invalid(format!("{arguments}: {e}")))?,
            None | Some(Value::Null) => {
                return Err(invalid(format!(
                    "{arguments} is missing (JSON text of an object, `{{}}` for none)"
                )))
            }
            Some(_) => return Err(invalid(format!("{arguments} is not JSON text"))),
        };
        let name = function.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            return Err(invalid(format!("{at} has no function name")));
        }
        let Some(id) = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return Err(invalid(format!("{at} has no id")));
        };
        content.push(Block::ToolUse {
            id: id.to_owned(),
            name: name.to_owned(),
            input,
        });
    }
    let reason = stop_reason(
        choice.get("finish_reason").and_then(Value::as_str),
        refusal.is_some(),
        !calls.is_empty(),
    )
    .map_err(TranslateError::InvalidBody)?;
    let usage = v.get("usage").map(Usage::from_openai).unwrap_or_default();
    let id = anthropic_client::message_id(v.get("id").and_then(Value::as_str));
    let model = v.get("model").and_then(Value::as_str).unwrap_or("");
    Ok(TranslatedAnswer {
        body: anthropic_client::message_body(&id, model, content, reason, usage),
        dropped,
    })
}

/// An upstream's OpenAI-style error answer (`{"error":{"message","type","code"}}`)
/// as an Anthropic error body (`{"type":"error","error":{"type","message"}}`),
/// its `type` from the HTTP `status` by Anthropic's table (400
/// `invalid_request_error`, 401 `authentication_error`, 403
/// `permission_error`, 404 `not_found_error`, 429 `rate_limit_error`, 503
/// and 529 `overloaded_error`, 504 `timeout_error`, other 5xx `api_error`),
/// except an exhausted quota (`billing_error`). A body that is not JSON
/// is quoted (its first 1000 characters).
pub fn error_response(status: u16, body: &[u8]) -> Vec<u8> {
    anthropic_client::error_response(status, body)
}

/// The streaming answer: Chat Completions chunks in, the Anthropic event
/// stream out (see the module documentation).
#[derive(Debug)]
pub struct Stream {
    framer: SseFramer,
    state: State,
}

#[derive(Debug)]
struct State {
    writer: AnthropicWriter,
    finish_reason: Option<String>,
    refusal: bool,
    usage: Usage,
}

impl Stream {
    /// A translator for an answer of `model` (the name the client used,
    /// reported in `message_start`).
    pub fn new(model: &str) -> Self {
        Stream {
            framer: SseFramer::new(false),
            state: State {
                writer: AnthropicWriter::new(model),
                finish_reason: None,
                refusal: false,
                usage: Usage::default(),
            },
        }
    }

    /// `message_start` reports `input_tokens` as `estimate` (the gateway's
    /// estimate of the request; the upstream's own count comes in
    /// `message_delta`).
    pub fn input_estimate(mut self, estimate: u64) -> Self {
        let writer = std::mem::replace(&mut self.state.writer, AnthropicWriter::new(""));
        self.state.writer = writer.input_estimate(estimate);
        self
    }
}

impl StreamTranslator for Stream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let state = &mut self.state;
        self.framer.feed(chunk, &mut |e| {
            if e.oversize {
                state.writer.error(
                    out,
                    "api_error",
                    "the upstream sent an event over the size limit",
                );
            } else if e.has_data && !e.tail {
                state.data(e.data, out);
            }
        });
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let state = &mut self.state;
        self.framer.finish(&mut |e| {
            if e.has_data && !e.tail && !e.oversize {
                state.data(e.data, out);
            }
        });
        // Ended without `[DONE]`: cut short, whatever came before (the
        // usage chunk the gateway asked for comes last but one).
        if state.finish_reason.is_none() {
            state.complete(out);
        } else {
            state.writer.error(
                out,
                "api_error",
                "the upstream's stream ended before its final event ([DONE]); the answer is incomplete",
            );
        }
    }
}

impl State {
    fn complete(&mut self, out: &mut Vec<u8>) {
        if self.finish_reason.is_none() {
            self.writer.error(
                out,
                "api_error",
                "the upstream's stream ended before its final chunk (no finish_reason); the answer is incomplete",
            );
            return;
        }
        match stop_reason(
            self.finish_reason.as_deref(),
            self.refusal,
            self.writer.tool_use,
        ) {
            Ok(reason) => self.writer.end(out, reason, self.usage),
            Err(message) => self.writer.error(out, "api_error", &message),
        }
    }

    fn data(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.writer.done() {
            return;
        }
        if data.trim_ascii() == b"[DONE]" {
            self.complete(out);
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            self.writer.error(
                out,
                "api_error",
                "the upstream sent a stream event that is not JSON",
            );
            return;
        };
        if let Some(error) = v.get("error").filter(|e| !e.is_null()) {
            let (kind, message) = anthropic_client::openai_error(error, "api_error");
            self.writer.error(out, kind, &message);
            return;
        }
        self.writer.start(out, v.get("id").and_then(Value::as_str));
        if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Usage::from_openai(usage);
        }
        // A chunk is an object whose `choices` (when given) is an array
        // and whose texts are strings; anything else is not a stream the
        // client could follow.
        let choices = match v.get("choices") {
            _ if !v.is_object() => None,
            None | Some(Value::Null) => Some(&[][..]),
            Some(Value::Array(c)) => Some(c.as_slice()),
            Some(_) => None,
        };
        let texts_ok = choices.into_iter().flatten().all(|c| {
            ["content", "refusal", "reasoning_content", "reasoning"]
                .iter()
                .all(|k| {
                    matches!(
                        c["delta"].get(*k),
                        None | Some(Value::Null | Value::String(_))
                    )
                })
        });
        let Some(choices) = choices.filter(|_| texts_ok) else {
            self.writer.error(
                out,
                "api_error",
                "the upstream sent a stream chunk that is not a chat completion chunk (its choices or their texts have the wrong shape); retry the request",
            );
            return;
        };
        for choice in choices {
            // After its finish reason a choice says nothing more.
            if self.finish_reason.is_some()
                && choice["delta"].as_object().is_some_and(|d| {
                    d.iter()
                        .any(|(k, v)| k != "role" && !v.is_null() && v != "" && v != &json!([]))
                })
            {
                self.writer.error(
                    out,
                    "api_error",
                    "the upstream streamed more of its answer after its finish reason; retry the request",
                );
                return;
            }
            // The request never asks for `n` > 1: another choice is an
            // answer the client would never see.
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                self.writer.error(
                    out,
                    "api_error",
                    "the upstream streamed a second choice, which the request never asked for; retry the request",
                );
                return;
            }
            // A chunk carries a `delta` object; a whole `message` (or any
            // other shape) is not a stream the client could follow.
            let delta = match choice.get("delta") {
                Some(d @ Value::Object(_)) => d,
                None if choice.get("message").is_none() => &Value::Null,
                _ => {
                    self.writer.error(
                        out,
                        "api_error",
                        "the upstream sent a stream chunk whose choice has no `delta` object; retry the request",
                    );
                    return;
                }
            };
            if let Some(member) = ["audio", "function_call"]
                .into_iter()
                .find(|m| delta.get(*m).is_some_and(|v| !v.is_null()))
            {
                // Content the Anthropic stream cannot carry (audio), or a
                // call the request never offered (a legacy function call).
                self.writer.error(
                    out,
                    "api_error",
                    &format!("the upstream streamed `{member}`, which an Anthropic message cannot carry; retry the request"),
                );
                return;
            }
            if delta
                .get("tool_calls")
                .is_some_and(|c| !c.is_array() && !c.is_null())
            {
                self.writer.error(
                    out,
                    "api_error",
                    "the upstream sent `tool_calls` that are not an array; retry the request",
                );
                return;
            }
            if let Some(reasoning) = delta.as_object().and_then(reasoning_text) {
                self.writer.thinking(out, (0, 0), reasoning);
            }
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                self.writer.text(out, (0, 0), text);
            }
            if let Some(text) = delta
                .get("refusal")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                self.refusal = true;
                self.writer.text(out, (0, 0), text);
            }
            let calls = delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for (position, call) in calls.iter().enumerate() {
                let index = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(position as u64);
                let key = (1, index);
                let function = call.get("function").unwrap_or(&Value::Null);
                let id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                if let (Some(id), Some(started)) = (id, self.writer.tool_id(key)) {
                    if id != started {
                        // Another call at an index already taken: merging
                        // them would run a call neither made.
                        self.writer.error(
                            out,
                            "api_error",
                            "the upstream streamed two tool calls (different ids) at one index; retry the request",
                        );
                        return;
                    }
                }
                let name = function.get("name").and_then(Value::as_str);
                if !self.writer.tool_seen(key) {
                    let Some(id) = id else {
                        // A call the client could not answer.
                        self.writer.error(
                            out,
                            "api_error",
                            "the upstream started a tool call without an id; retry the request",
                        );
                        return;
                    };
                    self.writer.tool_start(out, key, id, name.unwrap_or(""));
                } else if name.is_some_and(|n| !n.is_empty()) {
                    // The name comes once, in the call's first chunk.
                    self.writer.error(
                        out,
                        "api_error",
                        "the upstream streamed a second name for a tool call; retry the request",
                    );
                    return;
                }
                match function.get("arguments") {
                    Some(Value::String(args)) => self.writer.tool_args(out, key, args),
                    None | Some(Value::Null) => {}
                    // Arguments are JSON text in a string.
                    Some(_) => self.writer.error(
                        out,
                        "api_error",
                        "the upstream streamed tool call arguments that are not a string of JSON text; retry the request",
                    ),
                }
            }
            if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
                if self.finish_reason.as_deref().is_some_and(|f| f != finish) {
                    // The answer would say two things about how it ended.
                    self.writer.error(
                        out,
                        "api_error",
                        "the upstream gave two finish reasons; retry the request",
                    );
                    return;
                }
                self.finish_reason = Some(finish.to_owned());
            }
            if self.writer.done() {
                return;
            }
        }
    }
}
