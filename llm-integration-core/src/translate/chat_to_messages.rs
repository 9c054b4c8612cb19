//! An OpenAI Chat Completions client (`POST /v1/chat/completions`) served
//! by a model behind the Anthropic Messages API.
//!
//! Shapes follow the OpenAI Chat Completions API reference (`openai-python`'s `chat` types) and the Anthropic
//! Messages API reference.
//!
//! # The request
//!
//! | Chat Completions | Anthropic Messages |
//! |---|---|
//! | `model` | `model` (as named) |
//! | `system` / `developer` messages before the first turn | `system` text blocks |
//! | a `system` / `developer` message after a turn | user text in place (Anthropic has no system turn) |
//! | `user` content: a string, `text`, `image_url` (data: or https: URL), `file` (a PDF as `file_data`) | user text, image, document blocks |
//! | `assistant` `content` (text, `refusal` parts) and `refusal` | assistant text |
//! | `assistant` `tool_calls` | assistant `tool_use` (`input` = the parsed `arguments`) |
//! | `tool` messages | user `tool_result` (first in its message) |
//! | consecutive messages of one role (after the above) | one message: Anthropic requires alternation |
//! | `tools` of type `function` | `tools` (`parameters` → `input_schema`); `strict` dropped |
//! | `tool_choice` `auto` / `none` / `required` / a function | `auto` / `none` / `any` / `tool` |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` |
//! | `max_completion_tokens` (else `max_tokens`) | `max_tokens` (default 32 000) |
//! | `stop` (a string or up to 4) | `stop_sequences` |
//! | `temperature` (0 to 1), `top_p` | the same (the thinking rules of `Settings::assemble`) |
//! | `reasoning_effort` | `thinking.budget_tokens`, as for the Responses API (none off, minimal 1 024 … xhigh 24 576, below `max_tokens`) |
//! | `safety_identifier` (else `user`) | `metadata.user_id` |
//! | `service_tier` `default` | `service_tier: standard_only` (`auto` needs nothing; others dropped) |
//! | `stream`; `stream_options.include_usage` | `stream`; the usage chunk is made from Anthropic's usage ([`include_usage`]) |
//! | `n` over 1 | unexpressible: Anthropic gives one answer per request |
//! | `response_format` `json_object` / `json_schema` | unexpressible: the answer would not be bound to the schema, and a client that parses it should hear so at once rather than meet free text |
//! | `tools` of another type (`custom`), `functions` / `function_call`, `function` and audio content | unexpressible |
//! | `logprobs: true`, `top_logprobs`, `seed`, `logit_bias`, `presence_penalty`, `frequency_penalty` (non-zero), `store: true`, `metadata`, `modalities` other than text, `audio`, `prediction`, `web_search_options`, `verbosity`, `prompt_cache_key`, a message's `name` or `reasoning_content`, and any other member | dropped |
//!
//! Prompt caching breakpoints are added as for the Responses API.
//!
//! # The answer
//!
//! | Anthropic | Chat Completions |
//! |---|---|
//! | `text` blocks | `message.content` (joined) |
//! | `thinking` blocks | `message.reasoning_content` (the field DeepSeek and vLLM use; Chat Completions has none) |
//! | `tool_use` | `message.tool_calls[]` (`id`, `function.name`, `function.arguments` = the JSON text of `input`) |
//! | `redacted_thinking` blocks, text `citations` | dropped (named in a whole answer) |
//! | `stop_reason` `end_turn`, `stop_sequence` / `max_tokens`, `model_context_window_exceeded` / `tool_use` (with a tool use) / `refusal` | `finish_reason` `stop` / `length` / `tool_calls` / `content_filter` |
//! | `usage` | `prompt_tokens` (cache reads and writes included), `prompt_tokens_details.cached_tokens` (reads), `completion_tokens`, `total_tokens` |
//!
//! A block of another type (a server tool's, an unknown one) or a stop
//! reason without a counterpart (`pause_turn`, an unknown one, none) makes
//! the answer an error: a 502, or an error event in a stream.
//!
//! The stream is `chat.completion.chunk` events: the first with
//! `delta.role`, then `content`, `reasoning_content` and `tool_calls`
//! deltas (a tool call's `id`, `type` and `name` in its first delta, then
//! `arguments` pieces, by `index`), a last chunk with an empty delta and the
//! `finish_reason`, the usage chunk (`choices: []`) when the client asked
//! for it (every other chunk then has `usage: null`), and `data: [DONE]`.
//! An Anthropic `error` event, or a stream that ends before
//! `message_stop`, becomes a `data: {"error":{…}}` event (which the OpenAI
//! SDKs raise) and no `[DONE]`. Anthropic `ping` events become SSE
//! comments.
//!
//! ```
//! use llm_integration_core::translate::chat_to_messages::{include_usage, request, Stream};
//! use llm_integration_core::translate::StreamTranslator;
//!
//! let body = br#"{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"Hi"}],
//!                 "stream":true,"stream_options":{"include_usage":true},"seed":1}"#;
//! let translated = request(body)?;
//! assert_eq!(translated.dropped.header_value().as_deref(), Some("seed"));
//!
//! let mut stream = Stream::new(&translated.model, include_usage(body));
//! let mut out = Vec::new();
//! stream.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n", &mut out);
//! stream.feed(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", &mut out);
//! stream.finish(&mut out);
//! assert!(String::from_utf8(out)?.ends_with("data: [DONE]\n\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde_json::{json, Map, Value};

use super::openai_client::{
    base_id, check_content, check_streamed_tool_input, check_tool_input_size, check_tool_use_start,
    function_tool, image_block, invalid, member, name_unread, parse_object, parse_service_tier,
    parse_temperature, pdf_block, positive_int, raw_inputs, required_str, str_at, text_blocks,
    to_bytes, tool_use_id, uncarried_block, unexpressible, unknown_stop_reason, Blocks,
    Conversation, MemberRules, OpenAiError, Role, Settings, Usage, DEFAULT_MAX_TOKENS,
};
use super::{
    write_sse, Dropped, StreamTranslator, TranslateError, TranslatedAnswer, TranslatedRequest,
};
use crate::sse::{SseEvent, SseFramer};

/// Translates a Chat Completions request body into an Anthropic Messages
/// body.
///
/// Errors: [`TranslateError::InvalidBody`] when the body is not a Chat
/// Completions request (not JSON, `model` or `messages` missing, a member
/// of the wrong type); [`TranslateError::Unexpressible`] naming the member
/// that Anthropic cannot express (see the module's table).
pub fn request(body: &[u8]) -> Result<TranslatedRequest, TranslateError> {
    let root = parse_object(body)?;
    let model = member(&root, "model")
        .ok_or_else(|| invalid("model", "present"))
        .and_then(|v| str_at(v, "model"))?;
    let mut dropped = Dropped::default();

    let mut stream = false;
    let mut max_tokens = None;
    let mut max_completion_tokens = None;
    let mut effort = None;
    let mut temperature = None;
    let mut top_p = None;
    let mut stop = None;
    let mut user_id = None;
    let mut service_tier = None;
    let mut parallel = true;
    for (key, value) in &root {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "model" | "messages" | "tools" | "tool_choice" => {}
            "stream" => stream = value.as_bool().ok_or_else(|| invalid("stream", "a boolean"))?,
            // `include_usage` is read by `include_usage`; `include_obfuscation`
            // pads deltas against side channels, and these deltas are
            // Anthropic's, relayed as they come.
            "stream_options" => {}
            "max_tokens" => max_tokens = Some(positive_int(value, "max_tokens")?),
            "max_completion_tokens" => {
                max_completion_tokens = Some(positive_int(value, "max_completion_tokens")?)
            }
            "temperature" => temperature = Some(parse_temperature(value, "temperature")?),
            "top_p" => top_p = Some(value.as_f64().ok_or_else(|| invalid("top_p", "a number"))?),
            "stop" => {
                stop = Some(match value {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, s)| str_at(s, &format!("stop[{i}]")).map(str::to_owned))
                        .collect::<Result<_, _>>()?,
                    _ => return Err(invalid("stop", "a string or an array of strings")),
                })
            }
            "n" => match value.as_u64() {
                Some(1) => {}
                Some(_) => {
                    return Err(unexpressible(
                        "n",
                        "Anthropic gives one answer per request: send `n: 1` and repeat the request for more",
                    ))
                }
                None => return Err(invalid("n", "a positive integer")),
            },
            "response_format" => {
                if value["type"] != "text" {
                    return Err(unexpressible(
                        "response_format",
                        "Anthropic cannot bind the answer to a JSON format: describe the format \
                         in a system message and send `{\"type\":\"text\"}`",
                    ));
                }
            }
            "parallel_tool_calls" => {
                parallel = value
                    .as_bool()
                    .ok_or_else(|| invalid("parallel_tool_calls", "a boolean"))?
            }
            "reasoning_effort" => effort = Some(str_at(value, "reasoning_effort")?),
            "safety_identifier" => user_id = Some(str_at(value, key)?),
            "user" => {
                let user = str_at(value, key)?;
                if member(&root, "safety_identifier").is_none() {
                    user_id = Some(user);
                } else {
                    // One `metadata.user_id`: the safety identifier's.
                    dropped.push("user");
                }
            }
            "service_tier" => service_tier = parse_service_tier(value, &mut dropped)?,
            "functions" | "function_call" => {
                return Err(unexpressible(
                    key.as_str(),
                    "the legacy function-calling members are not translated: send `tools` and `tool_choice`",
                ))
            }
            "logprobs" | "store" if value == false => {}
            "presence_penalty" | "frequency_penalty" if value.as_f64() == Some(0.0) => {}
            "modalities" if value == &json!(["text"]) => {}
            _ => dropped.push(key.as_str()),
        }
    }

    let mut conversation = Conversation::default();
    let Some(messages) = member(&root, "messages").and_then(Value::as_array) else {
        return Err(invalid("messages", "an array of messages"));
    };
    for (i, message) in messages.iter().enumerate() {
        chat_message(
            &mut conversation,
            message,
            &format!("messages[{i}]"),
            &mut dropped,
        )?;
    }
    if conversation.is_empty() {
        return Err(unexpressible(
            "messages",
            "there is no message to answer: send at least one user message",
        ));
    }

    let mut names = Vec::new();
    let tools = match member(&root, "tools") {
        Some(tools) => translate_tools(tools, &mut names, &mut dropped)?,
        None => Vec::new(),
    };
    let choice = match member(&root, "tool_choice") {
        Some(choice) => tool_choice(choice, &names)?,
        None => None,
    };
    name_unread(&root, CHAT_MEMBERS, &mut dropped);
    let settings = Settings {
        model,
        max_tokens: max_completion_tokens
            .or(max_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS),
        effort: effort.map(|e| (e, "reasoning_effort")),
        temperature,
        top_p,
        stop,
        user_id,
        service_tier,
        stream,
        tools,
        choice,
        parallel,
    };
    let body = settings.assemble(conversation, &mut dropped)?;
    Ok(TranslatedRequest {
        body,
        model: model.to_owned(),
        stream,
        dropped,
    })
}

/// The members of a Chat Completions request's messages and tools that
/// are read (or named dropped where they are met); any other is named in
/// the dropped list.
const CHAT_MEMBERS: &MemberRules = &[
    (
        "messages[]",
        &[],
        &[
            "role",
            "content",
            "name",
            "tool_calls",
            "tool_call_id",
            "refusal",
            "reasoning_content",
            "audio",
            "function_call",
        ],
    ),
    (
        "messages[].content[]",
        &["text", "refusal", "image_url", "file"],
        &["type", "text", "refusal", "image_url", "file"],
    ),
    ("messages[].content[].image_url", &[], &["url"]),
    (
        "messages[].content[].file",
        &[],
        &["file_data", "filename", "file_id"],
    ),
    (
        "messages[].tool_calls[]",
        &["function"],
        &["id", "type", "function"],
    ),
    (
        "messages[].tool_calls[].function",
        &[],
        &["name", "arguments"],
    ),
    ("tools[]", &["function"], &["type", "function"]),
    ("tool_choice", &[], &["type", "function"]),
    ("tool_choice.function", &[], &["name"]),
    (
        "stream_options",
        &[],
        &["include_usage", "include_obfuscation"],
    ),
    (
        "tools[].function",
        &[],
        &["name", "description", "parameters", "strict"],
    ),
];

/// Whether the client's body asks for the usage chunk
/// (`stream_options.include_usage: true`), for [`Stream::new`]. A body
/// that is not JSON asks for nothing.
pub fn include_usage(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v["stream_options"]["include_usage"] == true)
}

/// Translates one message into the conversation.
fn chat_message(
    conversation: &mut Conversation,
    message: &Value,
    path: &str,
    dropped: &mut Dropped,
) -> Result<(), TranslateError> {
    let Some(object) = message.as_object() else {
        return Err(invalid(path, "an object"));
    };
    let role = required_str(object, "role", path)?;
    let content_path = format!("{path}.content");
    let content = member(object, "content");
    for key in ["name", "reasoning_content", "audio"] {
        if member(object, key).is_some() {
            dropped.push(format!("{path}.{key}"));
        }
    }
    match role {
        "system" | "developer" => {
            if !conversation.is_empty() {
                // No system turn mid-conversation: user text in place.
                dropped.push(format!("{path}.role"));
            }
            for block in content_blocks(content, &content_path)? {
                match block["text"].as_str() {
                    Some(text) if block["type"] == "text" => conversation.instruction(text),
                    _ => {
                        return Err(unexpressible(
                            content_path,
                            "Anthropic's system prompt holds text only: move images and files to a user message",
                        ))
                    }
                }
            }
        }
        "user" => conversation.push(Role::User, content_blocks(content, &content_path)?),
        "assistant" => {
            let mut blocks = content_blocks(content, &content_path)?;
            if let Some(refusal) = member(object, "refusal") {
                blocks.extend(text_blocks(str_at(refusal, &format!("{path}.refusal"))?));
            }
            if member(object, "function_call").is_some() {
                return Err(unexpressible(
                    format!("{path}.function_call"),
                    "the legacy function-calling members are not translated: send `tool_calls`",
                ));
            }
            if let Some(calls) = member(object, "tool_calls") {
                let Some(calls) = calls.as_array() else {
                    return Err(invalid(&format!("{path}.tool_calls"), "an array"));
                };
                for (j, call) in calls.iter().enumerate() {
                    blocks.push(tool_call(call, &format!("{path}.tool_calls[{j}]"))?);
                }
            }
            conversation.push(Role::Assistant, blocks);
        }
        "tool" => {
            let call_id = required_str(object, "tool_call_id", path)?;
            let id = tool_use_id(call_id, &format!("{path}.tool_call_id"))?;
            let content = match content {
                None => Value::from(""),
                Some(Value::String(text)) => Value::from(text.as_str()),
                Some(parts) => Value::Array(content_blocks(Some(parts), &content_path)?),
            };
            conversation.push(
                Role::User,
                vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})],
            );
        }
        "function" => {
            return Err(unexpressible(
                format!("{path}.role"),
                "the legacy function-calling messages are not translated: send `tool` messages",
            ))
        }
        _ => {
            return Err(invalid(
                &format!("{path}.role"),
                "one of system, developer, user, assistant, tool",
            ))
        }
    }
    Ok(())
}

/// An assistant's tool call as an Anthropic `tool_use` block.
fn tool_call(call: &Value, path: &str) -> Result<Value, TranslateError> {
    let Some(object) = call.as_object() else {
        return Err(invalid(path, "an object"));
    };
    if member(object, "type").is_some_and(|t| t != "function") {
        return Err(unexpressible(
            format!("{path}.type"),
            "only function tool calls are translated",
        ));
    }
    let call_id = required_str(object, "id", path)?;
    let function = member(object, "function")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(&format!("{path}.function"), "an object"))?;
    let function_path = format!("{path}.function");
    let name = required_str(function, "name", &function_path)?;
    let arguments = required_str(function, "arguments", &function_path)?;
    let input = if arguments.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str::<Value>(arguments) {
            Ok(input @ Value::Object(_)) => input,
            _ => {
                return Err(unexpressible(
                    format!("{function_path}.arguments"),
                    "Anthropic needs a tool call's arguments as a JSON object: send the JSON text of an object",
                ))
            }
        }
    };
    let id = tool_use_id(call_id, &format!("{path}.id"))?;
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

/// A message's `content` (absent, a string or an array of parts) as
/// Anthropic blocks.
fn content_blocks(content: Option<&Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(Value::String(text)) => return Ok(text_blocks(text)),
        Some(Value::Array(parts)) => parts,
        Some(_) => return Err(invalid(path, "a string or an array of parts")),
    };
    let mut blocks = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let part_path = format!("{path}[{j}]");
        let Some(object) = part.as_object() else {
            return Err(invalid(&part_path, "an object"));
        };
        match required_str(object, "type", &part_path)? {
            "text" => blocks.extend(text_blocks(required_str(object, "text", &part_path)?)),
            "refusal" => blocks.extend(text_blocks(required_str(object, "refusal", &part_path)?)),
            "image_url" => {
                let field = format!("{part_path}.image_url");
                let url = match member(object, "image_url") {
                    Some(Value::String(url)) => url.as_str(),
                    Some(Value::Object(image)) => required_str(image, "url", &field)?,
                    _ => return Err(invalid(&field, "an object with a `url`")),
                };
                blocks.push(image_block(url, &format!("{field}.url"))?);
            }
            "file" => {
                let field = format!("{part_path}.file");
                let data = member(object, "file")
                    .and_then(|f| f.get("file_data"))
                    .and_then(Value::as_str);
                match data {
                    Some(data) => blocks.push(pdf_block(data, &format!("{field}.file_data"))?),
                    None => {
                        return Err(unexpressible(
                            field,
                            "files stored at OpenAI cannot reach Anthropic: send a PDF as `file_data` (a data: URL)",
                        ))
                    }
                }
            }
            other => {
                return Err(unexpressible(
                    format!("{part_path}.type"),
                    format!(
                    "a content part of type `{other}` has no Anthropic counterpart: leave it out"
                ),
                ))
            }
        }
    }
    Ok(blocks)
}

fn translate_tools(
    tools: &Value,
    names: &mut Vec<String>,
    dropped: &mut Dropped,
) -> Result<Vec<Value>, TranslateError> {
    let Some(tools) = tools.as_array() else {
        return Err(invalid("tools", "an array"));
    };
    let mut out = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let Some(object) = tool.as_object() else {
            return Err(invalid(&path, "an object"));
        };
        if required_str(object, "type", &path)? != "function" {
            return Err(unexpressible(
                format!("{path}.type"),
                "only function tools are translated for Chat Completions clients",
            ));
        }
        let function_path = format!("{path}.function");
        let function = member(object, "function")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid(&function_path, "an object"))?;
        let name = required_str(function, "name", &function_path)?;
        out.push(function_tool(
            name,
            member(function, "description"),
            member(function, "parameters"),
            &function_path,
        )?);
        names.push(name.to_owned());
        if member(function, "strict").is_some_and(|v| v == true) {
            dropped.push(format!("{function_path}.strict"));
        }
    }
    Ok(out)
}

/// An Anthropic `tool_choice` for a Chat Completions `tool_choice`.
fn tool_choice(choice: &Value, names: &[String]) -> Result<Option<Value>, TranslateError> {
    match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => Ok(Some(json!({"type": "auto"}))),
            "none" => Ok(Some(json!({"type": "none"}))),
            "required" => Ok(Some(json!({"type": "any"}))),
            _ => Err(invalid("tool_choice", "one of auto, none, required, or an object")),
        },
        Value::Object(object) if object.get("type") == Some(&Value::from("function")) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("tool_choice.function.name", "a string"))?;
            if !names.iter().any(|n| n == name) {
                return Err(unexpressible(
                    "tool_choice.function.name",
                    format!("`{name}` is not among the tools offered: name one of them"),
                ));
            }
            Ok(Some(json!({"type": "tool", "name": name})))
        }
        Value::Object(_) => Err(unexpressible(
            "tool_choice.type",
            "only `auto`, `none`, `required` and a function are translated: send `tools` with only the allowed ones",
        )),
        _ => Err(invalid("tool_choice", "a string or an object")),
    }
}

// ---------------------------------------------------------------------------
// The answer.

/// The `finish_reason` for a `stop_reason`; the error's message for one
/// Chat Completions has no counterpart for (`pause_turn`, which only a
/// server tool's turn gives, an unknown one, or none).
fn finish_reason(stop_reason: Option<&str>) -> Result<&'static str, String> {
    match stop_reason {
        Some("end_turn" | "stop_sequence") => Ok("stop"),
        Some("max_tokens" | "model_context_window_exceeded") => Ok("length"),
        Some("tool_use") => Ok("tool_calls"),
        Some("refusal") => Ok("content_filter"),
        other => Err(unknown_stop_reason(other, "Chat Completions")),
    }
}

/// The Chat Completions `usage` object.
fn usage_object(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt(),
        "completion_tokens": usage.output,
        "total_tokens": usage.total(),
        "prompt_tokens_details": {"cached_tokens": usage.cache_read},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

/// Translates an Anthropic `message` (a non-stream answer) into a
/// `chat.completion` object, with `created` 0 (see [`answer`]).
///
/// Errors: as [`answer`].
pub fn response(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    answer(body, 0).map(|a| a.body)
}

/// [`response`] with the `created` to state (Unix seconds: the caller has
/// the clock).
///
/// Errors: as [`answer`].
pub fn response_at(body: &[u8], created: u64) -> Result<Vec<u8>, TranslateError> {
    answer(body, created).map(|a| a.body)
}

/// Translates an Anthropic `message` into a `chat.completion` object
/// stating `created` (Unix seconds), naming what had no counterpart
/// (`redacted_thinking` blocks, citations).
///
/// # Errors
/// [`TranslateError::InvalidBody`] when the body is not an Anthropic
/// message, or holds what Chat Completions cannot carry: a block of
/// another type (a server tool's, an unknown one), a stop reason without
/// a counterpart (`pause_turn`, an unknown one, none), a tool use without
/// a name or an object input.
pub fn answer(body: &[u8], created: u64) -> Result<TranslatedAnswer, TranslateError> {
    let message = parse_object(body)?;
    if message.get("type").and_then(Value::as_str) != Some("message") {
        return Err(TranslateError::InvalidBody(
            "the upstream's answer is not an Anthropic message".into(),
        ));
    }
    let mut dropped = Dropped::default();
    check_content(&message, "Chat Completions", &mut dropped)?;
    let finish = finish_reason(message.get("stop_reason").and_then(Value::as_str))
        .map_err(TranslateError::InvalidBody)?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    let raw = raw_inputs(body);
    for (i, block) in message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match block["type"].as_str().unwrap_or("") {
            "text" => text.push_str(block["text"].as_str().unwrap_or("")),
            "thinking" => {
                reasoning.push_str(block["thinking"].as_str().unwrap_or(""));
                // Chat Completions has no place for it.
                if block["signature"].as_str().is_some_and(|s| !s.is_empty()) {
                    dropped.push("answer.content[].signature");
                }
            }
            "redacted_thinking" => dropped.push("answer.content[type=redacted_thinking]"),
            "tool_use" => calls.push(json!({
                "id": block["id"],
                "type": "function",
                "function": {
                    "name": block["name"],
                    "arguments": raw.get(i).cloned().flatten()
                        .unwrap_or_else(|| serde_json::to_string(&block["input"]).unwrap_or_default()),
                },
            })),
            _ => {}
        }
    }
    let mut reply = Map::new();
    reply.insert("role".into(), Value::from("assistant"));
    reply.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            Value::from(text)
        },
    );
    reply.insert("refusal".into(), Value::Null);
    if !reasoning.is_empty() {
        reply.insert("reasoning_content".into(), Value::from(reasoning));
    }
    if !calls.is_empty() {
        reply.insert("tool_calls".into(), Value::Array(calls));
    }
    let mut usage = Usage::default();
    if let Some(u) = message.get("usage") {
        usage.merge(u);
    }
    let id = base_id(message.get("id").and_then(Value::as_str).unwrap_or(""));
    let completion = json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model").and_then(Value::as_str).unwrap_or(""),
        "choices": [{
            "index": 0,
            "message": reply,
            "finish_reason": match finish {
                // No tool call to act on: not a tool-call finish.
                "tool_calls" if !reply.contains_key("tool_calls") => "stop",
                reason => reason,
            },
            "logprobs": null,
        }],
        "usage": usage_object(&usage),
    });
    Ok(TranslatedAnswer {
        body: to_bytes(&completion),
        dropped,
    })
}

/// Translates an Anthropic error body (status `status`) into an OpenAI
/// error body (`{"error":{"message","type","param","code"}}`). The message
/// is kept; the type maps by meaning. A body that is not an Anthropic
/// error is described with its first 500 characters.
pub fn error_response(status: u16, body: &[u8]) -> Vec<u8> {
    OpenAiError::from_body(status, body).body()
}

/// Where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Open,
    Closed,
}

/// The streaming transducer: Anthropic Messages SSE in, Chat Completions
/// chunks out (the module's docs list them).
#[derive(Debug)]
pub struct Stream {
    framer: SseFramer,
    model: String,
    include_usage: bool,
    created: u64,
    phase: Phase,
    id: String,
    /// Tool use blocks: the Anthropic block `index`, the tool call's
    /// `index`, and its input's JSON text so far (checked when the block
    /// stops).
    tools: Vec<(u64, usize, String)>,
    next_tool: usize,
    usage: Usage,
    stop_reason: Option<String>,
    blocks: Blocks,
}

impl Stream {
    /// A transducer for a request that named `model`; `include_usage`:
    /// the client asked for the usage chunk ([`include_usage`]).
    pub fn new(model: &str, include_usage: bool) -> Self {
        Stream {
            framer: SseFramer::new(false),
            model: model.to_owned(),
            include_usage,
            created: 0,
            phase: Phase::Waiting,
            id: String::new(),
            tools: Vec::new(),
            next_tool: 0,
            usage: Usage::default(),
            stop_reason: None,
            blocks: Blocks::default(),
        }
    }

    /// The `created` the chunks state (Unix seconds; 0 unless set: the
    /// caller has the clock).
    pub fn created_at(mut self, unix_seconds: u64) -> Self {
        self.created = unix_seconds;
        self
    }

    fn chunk(&self, out: &mut Vec<u8>, choices: Value, usage: Option<Value>) {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if self.include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        write_sse(out, None, &to_bytes(&chunk));
    }

    fn delta(&self, out: &mut Vec<u8>, delta: Value) {
        let choice = json!([{"index": 0, "delta": delta, "finish_reason": null, "logprobs": null}]);
        self.chunk(out, choice, None);
    }

    fn start(&mut self, out: &mut Vec<u8>, message_id: &str) {
        if self.phase != Phase::Waiting {
            return;
        }
        self.id = format!("chatcmpl-{}", base_id(message_id));
        self.phase = Phase::Open;
        self.delta(out, json!({"role": "assistant", "content": ""}));
    }

    fn fail(&mut self, out: &mut Vec<u8>, error: &OpenAiError) {
        write_sse(out, None, &to_bytes(&json!({"error": error.object()})));
        self.phase = Phase::Closed;
    }

    fn on_event(&mut self, event: &SseEvent<'_>, out: &mut Vec<u8>) {
        if self.phase == Phase::Closed || event.tail || !event.has_data {
            return;
        }
        let Ok(data) = serde_json::from_slice::<Value>(event.data) else {
            let error = OpenAiError::from_anthropic(
                "api_error",
                "the upstream sent an event that is not JSON",
                502,
            );
            self.fail(out, &error);
            return;
        };
        if let Err(error) = self.blocks.event(event.event, &data) {
            self.fail(out, &error);
            return;
        }
        let kind = data["type"].as_str().unwrap_or(event.event);
        match kind {
            "message_start" => {
                if let Err(error) = self.blocks.message_start() {
                    self.fail(out, &error);
                    return;
                }
                let message = &data["message"];
                self.usage.merge(&message["usage"]);
                self.start(out, message["id"].as_str().unwrap_or(""));
            }
            "content_block_start" => {
                self.start(out, "");
                let block = &data["content_block"];
                let index = data["index"].as_u64().unwrap_or(0);
                let kind = block["type"].as_str().unwrap_or("");
                if let Err(error) = self.blocks.start(index, kind) {
                    self.fail(out, &error);
                    return;
                }
                match block["type"].as_str().unwrap_or("") {
                    "tool_use" => {
                        if let Err(error) = check_tool_use_start(block) {
                            self.fail(out, &error);
                            return;
                        }
                        let call = self.next_tool;
                        self.next_tool += 1;
                        // Anthropic starts a block with `input: {}` and
                        // streams the input; a whole one given here is
                        // the start of the arguments.
                        let given = match &block["input"] {
                            Value::Object(o) if !o.is_empty() => block["input"].to_string(),
                            _ => String::new(),
                        };
                        self.delta(
                            out,
                            json!({"tool_calls": [{
                                "index": call, "id": block["id"], "type": "function",
                                "function": {"name": block["name"], "arguments": given},
                            }]}),
                        );
                        self.tools.push((index, call, given));
                    }
                    "text" => {
                        if let Some(text) = block["text"].as_str().filter(|t| !t.is_empty()) {
                            self.delta(out, json!({"content": text}));
                        }
                    }
                    "thinking" => {
                        if let Some(text) = block["thinking"].as_str().filter(|t| !t.is_empty()) {
                            self.delta(out, json!({"reasoning_content": text}));
                        }
                    }
                    // Reasoning the client could not read anyway.
                    "redacted_thinking" => {}
                    kind => self.fail(out, &uncarried_block(kind, "Chat Completions")),
                }
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                let index = data["index"].as_u64().unwrap_or(0);
                if let Err(error) = self
                    .blocks
                    .delta(index, delta["type"].as_str().unwrap_or(""))
                {
                    self.fail(out, &error);
                    return;
                }
                match delta["type"].as_str().unwrap_or("") {
                    kind @ ("text_delta" | "thinking_delta") => {
                        let (from, to) = if kind == "text_delta" {
                            ("text", "content")
                        } else {
                            ("thinking", "reasoning_content")
                        };
                        match delta[from].as_str() {
                            Some(text) => self.delta(out, json!({ to: text })),
                            None => {
                                let error = OpenAiError::untranslatable(format!(
                                        "the upstream streamed a {kind} whose `{from}` is not a string; retry the request"
                                    ));
                                self.fail(out, &error);
                            }
                        }
                    }
                    "input_json_delta" => {
                        let piece = delta["partial_json"].as_str().unwrap_or("");
                        let Some((_, call, input)) =
                            self.tools.iter_mut().find(|(i, _, _)| *i == index)
                        else {
                            return;
                        };
                        if piece.is_empty() {
                            return;
                        }
                        input.push_str(piece);
                        let call = *call;
                        if let Err(error) = check_tool_input_size(input) {
                            self.fail(out, &error);
                            return;
                        }
                        self.delta(
                            out,
                            json!({"tool_calls": [{"index": call, "function": {"arguments": piece}}]}),
                        );
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = data["index"].as_u64().unwrap_or(0);
                if let Err(error) = self.blocks.stop(index) {
                    self.fail(out, &error);
                    return;
                }
                let Some((_, call, input)) = self.tools.iter_mut().find(|(i, _, _)| *i == index)
                else {
                    return;
                };
                let (call, input) = (*call, std::mem::take(input));
                self.tools.retain(|(i, _, _)| *i != index);
                match check_streamed_tool_input(&input) {
                    Err(error) => self.fail(out, &error),
                    // No input streamed: the call's arguments are `{}`.
                    Ok(()) if input.is_empty() => self.delta(
                        out,
                        json!({"tool_calls": [{"index": call, "function": {"arguments": "{}"}}]}),
                    ),
                    Ok(()) => {}
                }
            }
            "message_delta" => {
                let reason = data["delta"]["stop_reason"].as_str();
                if let Err(error) = self.blocks.stop_reason(reason) {
                    self.fail(out, &error);
                    return;
                }
                if let Some(reason) = reason {
                    self.stop_reason = Some(reason.to_owned());
                }
                self.usage.merge(&data["usage"]);
            }
            "message_stop" => {
                if let Err(error) = self.blocks.finish() {
                    self.fail(out, &error);
                    return;
                }
                self.start(out, "");
                // Tool uses whose block never stopped: checked now.
                for (_, call, input) in std::mem::take(&mut self.tools) {
                    match check_streamed_tool_input(&input) {
                        Err(error) => {
                            self.fail(out, &error);
                            return;
                        }
                        Ok(()) if input.is_empty() => self.delta(
                            out,
                            json!({"tool_calls": [{"index": call, "function": {"arguments": "{}"}}]}),
                        ),
                        Ok(()) => {}
                    }
                }
                let reason = match finish_reason(self.stop_reason.as_deref()) {
                    // No tool call to act on: not a tool-call finish.
                    Ok("tool_calls") if self.next_tool == 0 => "stop",
                    Ok(reason) => reason,
                    Err(message) => {
                        let error = OpenAiError::untranslatable(message);
                        self.fail(out, &error);
                        return;
                    }
                };
                let choice =
                    json!([{"index": 0, "delta": {}, "finish_reason": reason, "logprobs": null}]);
                self.chunk(out, choice, None);
                if self.include_usage {
                    self.chunk(out, json!([]), Some(usage_object(&self.usage)));
                }
                write_sse(out, None, b"[DONE]");
                self.phase = Phase::Closed;
            }
            "error" => {
                let error = &data["error"];
                let error = OpenAiError::from_anthropic(
                    error["type"].as_str().unwrap_or("api_error"),
                    error["message"].as_str().unwrap_or("the upstream failed"),
                    0,
                );
                self.fail(out, &error);
            }
            "ping" => out.extend_from_slice(b": ping\n\n"),
            _ => {}
        }
    }
}

impl StreamTranslator for Stream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut framer = std::mem::take(&mut self.framer);
        framer.feed(chunk, &mut |event| self.on_event(&event, out));
        self.framer = framer;
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let mut framer = std::mem::take(&mut self.framer);
        framer.finish(&mut |event| self.on_event(&event, out));
        self.framer = framer;
        if self.phase != Phase::Closed {
            let error = OpenAiError {
                kind: "server_error",
                code: Some("stream_interrupted".into()),
                message: "the upstream's stream ended before its final event (message_stop)".into(),
            };
            self.fail(out, &error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_become_finish_reasons() {
        for (stop, finish) in [
            (Some("end_turn"), "stop"),
            (Some("stop_sequence"), "stop"),
            (Some("max_tokens"), "length"),
            (Some("model_context_window_exceeded"), "length"),
            (Some("tool_use"), "tool_calls"),
            (Some("refusal"), "content_filter"),
        ] {
            assert_eq!(finish_reason(stop), Ok(finish), "{stop:?}");
        }
        // No counterpart: an error naming it, never a plain stop.
        for stop in [Some("pause_turn"), Some("banana"), Some(""), None] {
            let e = finish_reason(stop).unwrap_err();
            assert!(e.contains(stop.unwrap_or("without a stop_reason")), "{e}");
        }
    }

    #[test]
    fn tool_choices() {
        let names = vec!["ls".to_owned()];
        assert_eq!(
            tool_choice(&json!("required"), &names).unwrap(),
            Some(json!({"type": "any"}))
        );
        assert_eq!(
            tool_choice(
                &json!({"type": "function", "function": {"name": "ls"}}),
                &names
            )
            .unwrap(),
            Some(json!({"type": "tool", "name": "ls"}))
        );
        assert!(tool_choice(
            &json!({"type": "function", "function": {"name": "rm"}}),
            &names
        )
        .is_err());
        assert!(tool_choice(&json!("sometimes"), &names).is_err());
    }

    #[test]
    fn stop_sequences_and_output_limits() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b"],"max_tokens":50}"#;
        let t = request(body).unwrap();
        let body: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(body["stop_sequences"], json!(["a", "b"]));
        assert_eq!(body["max_tokens"], 50);
        assert!(!t.stream);
        assert!(
            request(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}"#)
                .is_err()
        );
    }
}
