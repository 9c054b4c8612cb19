//! An OpenAI Responses client (`POST /v1/responses`, what Codex CLI sends)
//! served by a model behind the Anthropic Messages API.
//!
//! Shapes follow the OpenAI Responses API reference (`openai-python`'s `responses` types,
//! and what Codex CLI sends through a custom model provider) and the
//! Anthropic Messages API reference.
//!
//! # The request
//!
//! | Responses | Anthropic Messages |
//! |---|---|
//! | `model` | `model` (as named) |
//! | `instructions`; `system`/`developer` messages before the first turn | `system` text blocks |
//! | a `system`/`developer` message after a turn | user text in place (Anthropic has no system turn) |
//! | `input` (a string, or `message` items: `input_text`, `output_text`, `refusal`, `input_image`, `input_file` PDF) | `messages` (text, image, document blocks); consecutive turns of one role merged |
//! | `function_call` | assistant `tool_use` (`input` = the parsed `arguments`) |
//! | `custom_tool_call` | assistant `tool_use` of the freeform tool, `input: {"input": …}` |
//! | `function_call_output`, `custom_tool_call_output` | user `tool_result` (first in its message) |
//! | `reasoning` made by this gateway from a thinking block (see below) | the same `thinking` / `redacted_thinking` block |
//! | `reasoning` from elsewhere (OpenAI's `encrypted_content`) | dropped |
//! | `tools` of type `function` | `tools` (`parameters` → `input_schema`); `strict` dropped |
//! | `tools` of type `custom` (freeform, e.g. `apply_patch`) | a tool named `NAME__freeform` taking `{"input": string}`; a grammar is written into the member's description, and `format` named dropped (not enforced) |
//! | built-in tools (`web_search`, `file_search`, `tool_search`, …) | dropped: no counterpart a client-side tool loop can run |
//! | `tool_choice` `auto` / `none` / `required` / a function / a custom tool | `auto` / `none` / `any` / `tool` |
//! | `tool_choice` `allowed_tools` or a built-in tool | unexpressible |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` |
//! | `reasoning.effort` | `thinking.budget_tokens`: none off, minimal 1 024, low 4 096, medium 8 192, high 16 384, xhigh 24 576, capped at `max_tokens - 1`; off (and named dropped) when under 1 024, when `tool_choice` forces a tool, or when the last assistant tool turn has no thinking block |
//! | `reasoning.summary` | `auto`/`none` need nothing (the thinking Anthropic shows is a summary); others dropped |
//! | `max_output_tokens` | `max_tokens` (default 32 000) |
//! | `temperature` (0 to 1), `top_p` | the same; `temperature` over 1 is unexpressible; with thinking on, a temperature other than 1 and a `top_p` under 0.95 are dropped; with both set, `top_p` is dropped |
//! | `safety_identifier` (else `user`) | `metadata.user_id` |
//! | `service_tier` `default` | `service_tier: standard_only` (`auto` needs nothing; others dropped) |
//! | `text.format` `json_schema` / `json_object` | unexpressible: the answer would not be bound to the schema |
//! | `text.verbosity`, `prompt_cache_key`, `client_metadata`, `metadata`, `store: true`, `include` other than `reasoning.encrypted_content`, `truncation: auto`, and any other member | dropped |
//! | `previous_response_id`, `conversation`, `prompt`, `background: true`, `item_reference` items | unexpressible: the gateway keeps no state |
//! | `stream` | `stream` |
//!
//! Prompt caching: OpenAI caches prefixes by itself, so the request gets
//! `cache_control` breakpoints on the last system block and on the last
//! block of the conversation. Item `id` and `status` members are
//! bookkeeping of the client's and ignored.
//!
//! # The answer
//!
//! | Anthropic | Responses |
//! |---|---|
//! | `text` block | `message` item, one `output_text` part |
//! | `thinking` block | `reasoning` item: `summary` = the thinking text, `encrypted_content` = a mark and the `signature` (so the block goes back whole next turn) |
//! | `redacted_thinking` | `reasoning` item, no summary, the `data` in `encrypted_content` |
//! | `tool_use` | `function_call` (`call_id` = the tool use id, `arguments` = the JSON text of `input`) or, for a freeform tool, `custom_tool_call` with `input` |
//! | `stop_reason` `end_turn`, `stop_sequence`, `tool_use` | `status: completed` |
//! | `max_tokens`, `model_context_window_exceeded` / `refusal` / `pause_turn` | `status: incomplete`, `incomplete_details.reason` `max_output_tokens` / `content_filter` / `pause_turn` |
//! | `usage` | `input_tokens` (cache reads and writes included), `input_tokens_details.cached_tokens` (reads), `…cache_write_tokens`, `output_tokens` (thinking included; `reasoning_tokens` is 0: Anthropic does not count it apart), `total_tokens` |
//! | text `citations` | dropped (named in a whole answer) |
//!
//! A block of another type (a server tool's, an unknown one) or an unknown
//! stop reason (or none) makes the answer an error: a 502, or
//! `response.failed` in a stream.
//!
//! The stream is the event sequence OpenAI sends: `response.created`,
//! `response.in_progress`; per item `response.output_item.added`, its part
//! or summary part added, the deltas, their `.done` events,
//! `response.output_item.done`; then `response.completed` (or
//! `response.incomplete`) carrying the whole response and its usage. Every
//! event has an increasing `sequence_number`. An Anthropic `error` event
//! becomes `response.failed`; a stream that ends before `message_stop`
//! becomes `response.failed` too, never a completion (Codex then retries).
//! Anthropic `ping` events become SSE comments, which keep the connection
//! alive and which clients skip.
//!
//! ```
//! use llm_integration_core::translate::responses_to_messages::{request, Stream};
//! use llm_integration_core::translate::StreamTranslator;
//!
//! let body = br#"{"model":"claude-sonnet-4-6","input":"Hi","stream":true,"store":false}"#;
//! let translated = request(body)?;
//! assert!(translated.stream && translated.dropped.is_empty());
//! let upstream: serde_json::Value = serde_json::from_slice(&translated.body)?;
//! assert_eq!(upstream["max_tokens"], 32000);
//!
//! let mut stream = Stream::new(&translated.model).created_at(1_700_000_000);
//! let mut out = Vec::new();
//! stream.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\"}}\n\n", &mut out);
//! stream.finish(&mut out); // no message_stop: a failure, not a completion
//! let out = String::from_utf8(out)?;
//! assert!(out.starts_with("event: response.created\n"));
//! assert!(out.contains("event: response.failed\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde_json::{json, Value};

use super::openai_client::{
    base_id, check_content, check_streamed_tool_input, check_tool_input_size, check_tool_use_start,
    custom_tool, function_tool, image_block, invalid, member, name_unread, parse_object,
    parse_service_tier, parse_temperature, pdf_block, positive_int, raw_inputs, required_str,
    str_at, text_blocks, to_bytes, tool_use_id, uncarried_block, unexpressible,
    unknown_stop_reason, Blocks, Conversation, MemberRules, OpenAiError, Role, Settings, Usage,
    CUSTOM_TOOL_INPUT, CUSTOM_TOOL_SUFFIX, DEFAULT_MAX_TOKENS, REDACTED_MARK, THINKING_MARK,
};
use super::{
    write_sse, Dropped, StreamTranslator, TranslateError, TranslatedAnswer, TranslatedRequest,
};
use crate::sse::{SseEvent, SseFramer};

/// What the gateway keeping no state means for a client, and the fix.
const NO_STATE: &str = "the gateway keeps no conversation state for a model served by \
    Anthropic: send the whole conversation in `input` (with `store: false`)";

/// The members of a Responses request's input items and tools that are
/// read (or named dropped where they are met), over every item type; any
/// other is named in the dropped list.
const RESPONSES_MEMBERS: &MemberRules = &[
    (
        "input[]",
        &[
            "message",
            "function_call",
            "function_call_output",
            "reasoning",
            "custom_tool_call",
            "custom_tool_call_output",
        ],
        &[
            "type",
            "role",
            "content",
            "id",
            "status",
            "call_id",
            "name",
            "arguments",
            "output",
            "summary",
            "encrypted_content",
            "input",
        ],
    ),
    (
        "input[].content[]",
        &[
            "input_text",
            "output_text",
            "input_image",
            "input_file",
            "refusal",
            "summary_text",
            "reasoning_text",
        ],
        &[
            "type",
            "text",
            "image_url",
            "detail",
            "file_data",
            "filename",
            "file_id",
            "file_url",
            "annotations",
            "logprobs",
            "refusal",
        ],
    ),
    ("input[].summary[]", &[], &["type", "text"]),
    ("tool_choice", &[], &["type", "name"]),
    ("text", &[], &["format", "verbosity"]),
    ("text.format", &[], &["type"]),
    (
        "tools[]",
        &["function", "custom"],
        &[
            "type",
            "name",
            "description",
            "parameters",
            "strict",
            "format",
        ],
    ),
];

/// Translates a Responses request body into an Anthropic Messages body.
///
/// Errors: [`TranslateError::InvalidBody`] when the body is not a
/// Responses request (not JSON, `model` missing, a member of the wrong
/// type); [`TranslateError::Unexpressible`] naming the member that
/// Anthropic cannot express (see the module's table).
pub fn request(body: &[u8]) -> Result<TranslatedRequest, TranslateError> {
    let root = parse_object(body)?;
    let model = member(&root, "model")
        .ok_or_else(|| invalid("model", "present"))
        .and_then(|v| str_at(v, "model"))?;
    let mut dropped = Dropped::default();
    let mut conversation = Conversation::default();
    if let Some(instructions) = member(&root, "instructions") {
        conversation.instruction(str_at(instructions, "instructions")?);
    }

    let mut stream = false;
    let mut max_tokens = DEFAULT_MAX_TOKENS;
    let mut effort = None;
    let mut temperature = None;
    let mut top_p = None;
    let mut user_id = None;
    let mut service_tier = None;
    let mut parallel = true;
    for (key, value) in &root {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "model" | "instructions" | "input" | "tools" | "tool_choice" => {}
            "stream" => {
                stream = value
                    .as_bool()
                    .ok_or_else(|| invalid("stream", "a boolean"))?
            }
            "max_output_tokens" => max_tokens = positive_int(value, "max_output_tokens")?,
            "temperature" => temperature = Some(parse_temperature(value, "temperature")?),
            "top_p" => top_p = Some(value.as_f64().ok_or_else(|| invalid("top_p", "a number"))?),
            "parallel_tool_calls" => {
                parallel = value
                    .as_bool()
                    .ok_or_else(|| invalid("parallel_tool_calls", "a boolean"))?
            }
            "reasoning" => {
                let Some(reasoning) = value.as_object() else {
                    return Err(invalid("reasoning", "an object"));
                };
                for (k, v) in reasoning {
                    match (k.as_str(), v) {
                        (_, Value::Null) => {}
                        ("effort", v) => effort = Some(str_at(v, "reasoning.effort")?),
                        ("summary" | "generate_summary", v) if v == "auto" || v == "none" => {}
                        (k, _) => dropped.push(format!("reasoning.{k}")),
                    }
                }
            }
            "text" => {
                let Some(text) = value.as_object() else {
                    return Err(invalid("text", "an object"));
                };
                for (k, v) in text {
                    match (k.as_str(), v) {
                        (_, Value::Null) => {}
                        ("format", f) if f["type"] == "text" => {}
                        ("format", _) => {
                            return Err(unexpressible(
                                "text.format",
                                "Anthropic cannot bind the answer to a JSON format: \
                                 describe the format in the instructions and send `{\"type\":\"text\"}`",
                            ))
                        }
                        (k, _) => dropped.push(format!("text.{k}")),
                    }
                }
            }
            "include" => {
                let Some(include) = value.as_array() else {
                    return Err(invalid("include", "an array"));
                };
                for (i, v) in include.iter().enumerate() {
                    // Reasoning is always given back whole (see the module's table).
                    if v != "reasoning.encrypted_content" {
                        dropped.push(format!("include[{i}]"));
                    }
                }
            }
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
            "store" if value == false => {}
            "truncation" if value == "disabled" => {}
            "background" if value == false => {}
            "previous_response_id" | "conversation" => {
                return Err(unexpressible(key.as_str(), NO_STATE))
            }
            "background" => {
                return Err(unexpressible(
                    "background",
                    "the gateway keeps no responses to poll later: send the request without `background` (stream it for long answers)",
                ))
            }
            "prompt" => return Err(unexpressible(
                "prompt",
                "stored prompt templates live at OpenAI: send `instructions` and `input` instead",
            )),
            _ => dropped.push(key.as_str()),
        }
    }

    match member(&root, "input") {
        None => {}
        Some(Value::String(text)) => conversation.push(Role::User, text_blocks(text)),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(
                    &mut conversation,
                    item,
                    &format!("input[{i}]"),
                    &mut dropped,
                )?;
            }
        }
        Some(_) => return Err(invalid("input", "a string or an array of items")),
    }
    if conversation.is_empty() {
        return Err(unexpressible(
            "input",
            "there is no message to answer: send at least one user message",
        ));
    }

    let mut names = ToolNames::default();
    let tools = match member(&root, "tools") {
        Some(tools) => translate_tools(tools, &mut names, &mut dropped)?,
        None => Vec::new(),
    };
    let choice = match member(&root, "tool_choice") {
        Some(choice) => tool_choice(choice, &names)?,
        None => None,
    };
    let settings = Settings {
        model,
        max_tokens,
        effort: effort.map(|e| (e, "reasoning.effort")),
        temperature,
        top_p,
        stop: None,
        user_id,
        service_tier,
        stream,
        tools,
        choice,
        parallel,
    };
    name_unread(&root, RESPONSES_MEMBERS, &mut dropped);
    let body = settings.assemble(conversation, &mut dropped)?;
    Ok(TranslatedRequest {
        body,
        model: model.to_owned(),
        stream,
        dropped,
    })
}

/// Translates one `input` item into the conversation.
fn input_item(
    conversation: &mut Conversation,
    item: &Value,
    path: &str,
    dropped: &mut Dropped,
) -> Result<(), TranslateError> {
    let Some(object) = item.as_object() else {
        return Err(invalid(path, "an object"));
    };
    let kind = match member(object, "type") {
        Some(kind) => str_at(kind, &format!("{path}.type"))?,
        None if object.contains_key("role") => "message",
        None => return Err(invalid(&format!("{path}.type"), "present")),
    };
    match kind {
        "message" => {
            let role = required_str(object, "role", path)?;
            let content = member(object, "content")
                .ok_or_else(|| invalid(&format!("{path}.content"), "present"))?;
            let content_path = format!("{path}.content");
            match role {
                "user" => {
                    conversation.push(Role::User, content_blocks(content, &content_path, dropped)?)
                }
                "assistant" => conversation.push(
                    Role::Assistant,
                    content_blocks(content, &content_path, dropped)?,
                ),
                "system" | "developer" => {
                    if !conversation.is_empty() {
                        // No system turn mid-conversation: user text in place.
                        dropped.push(format!("{path}.role"));
                    }
                    for block in content_blocks(content, &content_path, dropped)? {
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
                _ => {
                    return Err(invalid(
                        &format!("{path}.role"),
                        "one of user, assistant, system, developer",
                    ))
                }
            }
        }
        "function_call" => {
            let call_id = required_str(object, "call_id", path)?;
            let name = required_str(object, "name", path)?;
            let arguments = required_str(object, "arguments", path)?;
            let input = if arguments.trim().is_empty() {
                json!({})
            } else {
                match serde_json::from_str::<Value>(arguments) {
                    Ok(input @ Value::Object(_)) => input,
                    _ => {
                        return Err(unexpressible(
                            format!("{path}.arguments"),
                            "Anthropic needs a tool call's arguments as a JSON object: send the JSON text of an object",
                        ))
                    }
                }
            };
            let id = tool_use_id(call_id, &format!("{path}.call_id"))?;
            conversation.push(
                Role::Assistant,
                vec![json!({"type": "tool_use", "id": id, "name": name, "input": input})],
            );
        }
        "custom_tool_call" => {
            let call_id = required_str(object, "call_id", path)?;
            let name = required_str(object, "name", path)?;
            let input = required_str(object, "input", path)?;
            let id = tool_use_id(call_id, &format!("{path}.call_id"))?;
            conversation.push(
                Role::Assistant,
                vec![json!({
                    "type": "tool_use",
                    "id": id,
                    "name": format!("{name}{CUSTOM_TOOL_SUFFIX}"),
                    "input": {CUSTOM_TOOL_INPUT: input},
                })],
            );
        }
        "function_call_output" | "custom_tool_call_output" => {
            let call_id = required_str(object, "call_id", path)?;
            let id = tool_use_id(call_id, &format!("{path}.call_id"))?;
            let output_path = format!("{path}.output");
            let content = match member(object, "output") {
                None => Value::from(""),
                Some(Value::String(text)) => Value::from(text.as_str()),
                Some(output @ Value::Array(_)) => {
                    Value::Array(content_blocks(output, &output_path, dropped)?)
                }
                Some(_) => return Err(invalid(&output_path, "a string or an array of parts")),
            };
            conversation.push(
                Role::User,
                vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})],
            );
        }
        "reasoning" => {
            let encrypted = member(object, "encrypted_content").and_then(Value::as_str);
            if let Some(signature) = encrypted.and_then(|e| e.strip_prefix(THINKING_MARK)) {
                let mut thinking = String::new();
                for part in member(object, "summary")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    thinking.push_str(part["text"].as_str().unwrap_or(""));
                }
                conversation.push(
                    Role::Assistant,
                    vec![json!({"type": "thinking", "thinking": thinking, "signature": signature})],
                );
            } else if let Some(data) = encrypted.and_then(|e| e.strip_prefix(REDACTED_MARK)) {
                conversation.push(
                    Role::Assistant,
                    vec![json!({"type": "redacted_thinking", "data": data})],
                );
            } else {
                // OpenAI's own reasoning (or a bare summary): Anthropic
                // cannot take it.
                dropped.push(path);
            }
        }
        "web_search_call"
        | "file_search_call"
        | "tool_search_call"
        | "tool_search_output"
        | "image_generation_call"
        | "code_interpreter_call"
        | "mcp_list_tools"
        | "mcp_call" => {
            // Calls of built-in tools, run at OpenAI: their results are
            // already reflected in the messages that follow.
            dropped.push(path);
        }
        "item_reference" => return Err(unexpressible(path, NO_STATE)),
        other => {
            return Err(unexpressible(
                format!("{path}.type"),
                format!(
                    "an input item of type `{other}` has no Anthropic counterpart: leave it out"
                ),
            ))
        }
    }
    Ok(())
}

/// A message's `content` (a string or an array of parts) as Anthropic
/// blocks.
fn content_blocks(
    content: &Value,
    path: &str,
    dropped: &mut Dropped,
) -> Result<Vec<Value>, TranslateError> {
    let parts = match content {
        Value::String(text) => return Ok(text_blocks(text)),
        Value::Array(parts) => parts,
        _ => return Err(invalid(path, "a string or an array of parts")),
    };
    let mut blocks = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let part_path = format!("{path}[{j}]");
        let Some(object) = part.as_object() else {
            return Err(invalid(&part_path, "an object"));
        };
        let kind = required_str(object, "type", &part_path)?;
        match kind {
            "input_text" | "output_text" | "text" => {
                blocks.extend(text_blocks(required_str(object, "text", &part_path)?));
                if member(object, "annotations")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
                {
                    dropped.push(format!("{part_path}.annotations"));
                }
            }
            "refusal" => blocks.extend(text_blocks(required_str(object, "refusal", &part_path)?)),
            "input_image" => {
                if member(object, "file_id").is_some() {
                    return Err(unexpressible(
                        format!("{part_path}.file_id"),
                        "files stored at OpenAI cannot reach Anthropic: send the image as `image_url` (a data: or https: URL)",
                    ));
                }
                let url = required_str(object, "image_url", &part_path)?;
                blocks.push(image_block(url, &format!("{part_path}.image_url"))?);
                if member(object, "detail").is_some_and(|d| d != "auto") {
                    dropped.push(format!("{part_path}.detail"));
                }
            }
            "input_file" => {
                if let Some(data) = member(object, "file_data") {
                    let field = format!("{part_path}.file_data");
                    blocks.push(pdf_block(str_at(data, &field)?, &field)?);
                } else if let Some(url) = member(object, "file_url") {
                    let field = format!("{part_path}.file_url");
                    blocks.push(pdf_block(str_at(url, &field)?, &field)?);
                } else {
                    return Err(unexpressible(
                        part_path,
                        "files stored at OpenAI cannot reach Anthropic: send a PDF as `file_data` (a data: URL) or `file_url`",
                    ));
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

/// The tools offered, by kind (for `tool_choice`).
#[derive(Debug, Default)]
struct ToolNames {
    functions: Vec<String>,
    customs: Vec<String>,
}

fn translate_tools(
    tools: &Value,
    names: &mut ToolNames,
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
        let description = member(object, "description");
        match required_str(object, "type", &path)? {
            "function" => {
                let name = required_str(object, "name", &path)?;
                out.push(function_tool(
                    name,
                    description,
                    member(object, "parameters"),
                    &path,
                )?);
                names.functions.push(name.to_owned());
                for key in ["strict", "defer_loading"] {
                    if member(object, key).is_some_and(|v| v == true) {
                        dropped.push(format!("{path}.{key}"));
                    }
                }
            }
            "custom" => {
                let name = required_str(object, "name", &path)?;
                let description = match description {
                    Some(d) => Some(str_at(d, &format!("{path}.description"))?),
                    None => None,
                };
                let format = member(object, "format");
                let grammar = match format {
                    Some(f) if f["type"] == "grammar" => {
                        dropped.push(format!("{path}.format"));
                        Some((
                            f["syntax"].as_str().unwrap_or("lark"),
                            f["definition"].as_str().unwrap_or(""),
                        ))
                    }
                    _ => None,
                };
                out.push(custom_tool(name, description, grammar));
                names.customs.push(name.to_owned());
            }
            _ => dropped.push(path),
        }
    }
    Ok(out)
}

/// An Anthropic `tool_choice` for a Responses `tool_choice`.
fn tool_choice(choice: &Value, names: &ToolNames) -> Result<Option<Value>, TranslateError> {
    let named = |name: &str, known: &[String], suffix: &str| {
        if known.iter().any(|n| n == name) {
            Ok(Some(
                json!({"type": "tool", "name": format!("{name}{suffix}")}),
            ))
        } else {
            Err(unexpressible(
                "tool_choice.name",
                format!("`{name}` is not among the tools offered: name one of them"),
            ))
        }
    };
    match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => Ok(Some(json!({"type": "auto"}))),
            "none" => Ok(Some(json!({"type": "none"}))),
            "required" => Ok(Some(json!({"type": "any"}))),
            _ => Err(invalid("tool_choice", "one of auto, none, required, or an object")),
        },
        Value::Object(object) => match object.get("type").and_then(Value::as_str) {
            Some("function") => named(required_str(object, "name", "tool_choice")?, &names.functions, ""),
            Some("custom") => named(
                required_str(object, "name", "tool_choice")?,
                &names.customs,
                CUSTOM_TOOL_SUFFIX,
            ),
            Some("allowed_tools") => Err(unexpressible(
                "tool_choice",
                "Anthropic cannot restrict the tools offered per request: send only the allowed tools in `tools`",
            )),
            _ => Err(unexpressible(
                "tool_choice.type",
                "built-in tools cannot be offered to a model served by Anthropic: choose a function or custom tool",
            )),
        },
        _ => Err(invalid("tool_choice", "a string or an object")),
    }
}

// ---------------------------------------------------------------------------
// The answer.

/// An output item's content, as read from an Anthropic content block.
#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Thinking {
        text: String,
        signature: String,
    },
    Redacted(String),
    Function {
        call_id: String,
        name: String,
        arguments: String,
    },
    /// `input` holds the tool use's JSON text until the block ends.
    Custom {
        call_id: String,
        name: String,
        input: String,
    },
    /// A block with no Responses counterpart (a server tool's, which this
    /// direction never offers).
    Other,
}

impl Part {
    /// The part a content block starts (the whole part, for a block of a
    /// non-stream answer).
    fn from_block(block: &Value) -> Part {
        let text = |key: &str| block[key].as_str().unwrap_or("").to_owned();
        match block["type"].as_str().unwrap_or("") {
            "text" => Part::Text(text("text")),
            "thinking" => Part::Thinking {
                text: text("thinking"),
                signature: text("signature"),
            },
            "redacted_thinking" => Part::Redacted(text("data")),
            "tool_use" => {
                let name = block["name"].as_str().unwrap_or("");
                let input = match &block["input"] {
                    // A stream's block starts with `{}`; the deltas follow.
                    Value::Object(o) if o.is_empty() => String::new(),
                    Value::Null => String::new(),
                    input => serde_json::to_string(input).unwrap_or_default(),
                };
                match name.strip_suffix(CUSTOM_TOOL_SUFFIX) {
                    Some(name) => Part::Custom {
                        call_id: text("id"),
                        name: name.to_owned(),
                        input,
                    },
                    None => Part::Function {
                        call_id: text("id"),
                        name: name.to_owned(),
                        arguments: input,
                    },
                }
            }
            _ => Part::Other,
        }
    }

    /// The item id's prefix, as OpenAI's ids have them.
    fn id_prefix(&self) -> &'static str {
        match self {
            Part::Text(_) => "msg",
            Part::Thinking { .. } | Part::Redacted(_) => "rs",
            Part::Function { .. } => "fc",
            Part::Custom { .. } => "ctc",
            Part::Other => "",
        }
    }

    /// The item as `response.output_item.added` shows it.
    fn added(&self, id: &str) -> Value {
        match self {
            Part::Text(_) => {
                json!({"id": id, "type": "message", "role": "assistant", "status": "in_progress", "content": []})
            }
            Part::Thinking { .. } | Part::Redacted(_) => {
                json!({"id": id, "type": "reasoning", "summary": []})
            }
            Part::Function { call_id, name, .. } => json!({
                "id": id, "type": "function_call", "status": "in_progress",
                "call_id": call_id, "name": name, "arguments": "",
            }),
            Part::Custom { call_id, name, .. } => json!({
                "id": id, "type": "custom_tool_call", "status": "in_progress",
                "call_id": call_id, "name": name, "input": "",
            }),
            Part::Other => Value::Null,
        }
    }

    /// The finished item.
    fn done(&self, id: &str) -> Value {
        match self {
            Part::Text(text) => json!({
                "id": id, "type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }),
            Part::Thinking { text, signature } => json!({
                "id": id, "type": "reasoning",
                "summary": [{"type": "summary_text", "text": text}],
                "encrypted_content": format!("{THINKING_MARK}{signature}"),
            }),
            Part::Redacted(data) => json!({
                "id": id, "type": "reasoning", "summary": [],
                "encrypted_content": format!("{REDACTED_MARK}{data}"),
            }),
            Part::Function {
                call_id,
                name,
                arguments,
            } => json!({
                "id": id, "type": "function_call", "status": "completed",
                "call_id": call_id, "name": name, "arguments": function_arguments(arguments),
            }),
            Part::Custom {
                call_id,
                name,
                input,
            } => json!({
                "id": id, "type": "custom_tool_call", "status": "completed",
                "call_id": call_id, "name": name, "input": custom_input(input),
            }),
            Part::Other => Value::Null,
        }
    }
}

/// A tool use's arguments: `{}` when the model sent none.
fn function_arguments(arguments: &str) -> &str {
    if arguments.is_empty() {
        "{}"
    } else {
        arguments
    }
}

/// Checks a freeform tool's use: its input must be exactly
/// `{"input": TEXT}`, what the translated tool asked for; anything else
/// would hand the client's tool text the model never wrote as its input.
fn check_custom_input(json_text: &str) -> Result<(), String> {
    match serde_json::from_str::<Value>(json_text) {
        Ok(Value::Object(o)) if o.len() == 1 && o.get(CUSTOM_TOOL_INPUT).is_some_and(Value::is_string) => {
            Ok(())
        }
        _ => Err(format!(
            "the upstream called a freeform tool with input other than {{\"{CUSTOM_TOOL_INPUT}\": text}}; retry the request"
        )),
    }
}

/// A freeform tool's raw input, from the tool use's JSON text; the JSON
/// text itself when it is not the expected `{"input": …}`.
fn custom_input(json_text: &str) -> String {
    match serde_json::from_str::<Value>(json_text) {
        Ok(Value::Object(o)) => match o.get(CUSTOM_TOOL_INPUT) {
            Some(Value::String(s)) => s.clone(),
            _ => json_text.to_owned(),
        },
        _ => json_text.to_owned(),
    }
}

/// The response `status` and `incomplete_details.reason` for a
/// `stop_reason`; the error's message for an unknown one, or none.
fn outcome(stop_reason: Option<&str>) -> Result<(&'static str, Option<&'static str>), String> {
    match stop_reason {
        Some("end_turn" | "stop_sequence" | "tool_use") => Ok(("completed", None)),
        Some("max_tokens" | "model_context_window_exceeded") => {
            Ok(("incomplete", Some("max_output_tokens")))
        }
        Some("refusal") => Ok(("incomplete", Some("content_filter"))),
        Some("pause_turn") => Ok(("incomplete", Some("pause_turn"))),
        other => Err(unknown_stop_reason(other, "the Responses API")),
    }
}

/// The Responses `usage` object.
fn usage_object(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.prompt(),
        "input_tokens_details": {"cached_tokens": usage.cache_read, "cache_write_tokens": usage.cache_write},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total(),
    })
}

/// The fields of a Response object.
struct ResponseObject<'a> {
    base: &'a str,
    model: &'a str,
    created_at: u64,
    status: &'a str,
    incomplete: Option<&'a str>,
    error: Option<Value>,
    output: Vec<Value>,
    usage: Option<&'a Usage>,
}

impl ResponseObject<'_> {
    fn to_value(&self) -> Value {
        json!({
            "id": format!("resp_{}", self.base),
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "error": self.error,
            "incomplete_details": self.incomplete.map(|reason| json!({"reason": reason})),
            "model": self.model,
            "output": self.output,
            "usage": self.usage.map(usage_object),
        })
    }
}

/// Translates an Anthropic `message` (a non-stream answer) into a
/// Responses `response` object, with `created_at` 0 (see [`answer`]).
///
/// Errors: as [`answer`].
pub fn response(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    answer(body, 0).map(|a| a.body)
}

/// [`response`] with the `created_at` to state (Unix seconds: the caller
/// has the clock).
///
/// Errors: as [`answer`].
pub fn response_at(body: &[u8], created_at: u64) -> Result<Vec<u8>, TranslateError> {
    answer(body, created_at).map(|a| a.body)
}

/// Translates an Anthropic `message` into a Responses `response` object
/// stating `created_at` (Unix seconds), naming what had no counterpart
/// (citations).
///
/// # Errors
/// [`TranslateError::InvalidBody`] when the body is not an Anthropic
/// message, or holds what the Responses API cannot carry: a block of
/// another type (a server tool's, an unknown one), an unknown stop reason
/// (or none), a tool use without a name or an object input.
pub fn answer(body: &[u8], created_at: u64) -> Result<TranslatedAnswer, TranslateError> {
    let message = parse_object(body)?;
    if message.get("type").and_then(Value::as_str) != Some("message") {
        return Err(TranslateError::InvalidBody(
            "the upstream's answer is not an Anthropic message".into(),
        ));
    }
    let mut dropped = Dropped::default();
    check_content(&message, "the Responses API", &mut dropped)?;
    let (status, incomplete) = outcome(message.get("stop_reason").and_then(Value::as_str))
        .map_err(TranslateError::InvalidBody)?;
    let base = base_id(message.get("id").and_then(Value::as_str).unwrap_or(""));
    let mut output = Vec::new();
    let raw = raw_inputs(body);
    for (i, block) in message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut part = Part::from_block(block);
        // A tool use's input as the upstream wrote it.
        if let (
            Part::Function {
                arguments: input, ..
            }
            | Part::Custom { input, .. },
            Some(text),
        ) = (&mut part, raw.get(i).cloned().flatten())
        {
            *input = text;
        }
        if let Part::Custom { input, .. } = &part {
            check_custom_input(input).map_err(TranslateError::InvalidBody)?;
        }
        if !matches!(part, Part::Other) {
            let id = format!("{}_{base}_{}", part.id_prefix(), output.len());
            output.push(part.done(&id));
        }
    }
    let mut usage = Usage::default();
    if let Some(u) = message.get("usage") {
        usage.merge(u);
    }
    let model = message.get("model").and_then(Value::as_str).unwrap_or("");
    let object = ResponseObject {
        base: &base,
        model,
        created_at,
        status,
        incomplete,
        error: None,
        output,
        usage: Some(&usage),
    };
    Ok(TranslatedAnswer {
        body: to_bytes(&object.to_value()),
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
    /// Nothing sent yet.
    Waiting,
    /// `response.created` sent.
    Open,
    /// The terminal event sent: the rest is ignored.
    Closed,
}

/// A content block being streamed.
#[derive(Debug)]
struct OpenBlock {
    /// The Anthropic block `index`.
    index: u64,
    output_index: usize,
    item_id: String,
    part: Part,
}

/// The streaming transducer: Anthropic Messages SSE in, Responses SSE out
/// (the module's docs list the events).
#[derive(Debug)]
pub struct Stream {
    framer: SseFramer,
    model: String,
    created_at: u64,
    sequence: u64,
    phase: Phase,
    /// The id the response and item ids derive from (`message_start`).
    base: String,
    /// Finished items, by output index.
    items: Vec<(usize, Value)>,
    open: Vec<OpenBlock>,
    next_output: usize,
    usage: Usage,
    stop_reason: Option<String>,
    blocks: Blocks,
}

impl Stream {
    /// A transducer for a request that named `model` (the name the client
    /// sees in the response objects).
    pub fn new(model: &str) -> Self {
        Stream {
            framer: SseFramer::new(false),
            model: model.to_owned(),
            created_at: 0,
            sequence: 0,
            phase: Phase::Waiting,
            base: String::new(),
            items: Vec::new(),
            open: Vec::new(),
            next_output: 0,
            usage: Usage::default(),
            stop_reason: None,
            blocks: Blocks::default(),
        }
    }

    /// The `created_at` the response objects state (Unix seconds; 0 unless
    /// set: the caller has the clock).
    pub fn created_at(mut self, unix_seconds: u64) -> Self {
        self.created_at = unix_seconds;
        self
    }

    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        if let Some(object) = data.as_object_mut() {
            object.insert("type".into(), Value::from(kind));
            object.insert("sequence_number".into(), Value::from(self.sequence));
        }
        self.sequence += 1;
        write_sse(out, Some(kind), &to_bytes(&data));
    }

    fn object(
        &self,
        status: &str,
        incomplete: Option<&str>,
        error: Option<Value>,
        done: bool,
    ) -> Value {
        let mut items = if done { self.items.clone() } else { Vec::new() };
        items.sort_by_key(|(i, _)| *i);
        ResponseObject {
            base: &self.base,
            model: &self.model,
            created_at: self.created_at,
            status,
            incomplete,
            error,
            output: items.into_iter().map(|(_, v)| v).collect(),
            usage: done.then_some(&self.usage),
        }
        .to_value()
    }

    fn start(&mut self, out: &mut Vec<u8>, message_id: &str) {
        if self.phase != Phase::Waiting {
            return;
        }
        self.base = base_id(message_id);
        self.phase = Phase::Open;
        let response = self.object("in_progress", None, None, false);
        self.emit(out, "response.created", json!({"response": response}));
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    fn fail(&mut self, out: &mut Vec<u8>, error: &OpenAiError) {
        self.start(out, "");
        let detail = json!({
            "type": error.kind,
            "code": error.code.as_deref().unwrap_or(error.kind),
            "message": error.message,
        });
        let response = self.object("failed", None, Some(detail), true);
        self.emit(out, "response.failed", json!({"response": response}));
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
                let index = data["index"].as_u64().unwrap_or(0);
                let kind = data["content_block"]["type"].as_str().unwrap_or("");
                match self.blocks.start(index, kind) {
                    Ok(()) => self.block_start(out, &data),
                    Err(error) => self.fail(out, &error),
                }
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap_or(0);
                let kind = data["delta"]["type"].as_str().unwrap_or("");
                match self.blocks.delta(index, kind) {
                    Ok(()) => self.block_delta(out, &data),
                    Err(error) => self.fail(out, &error),
                }
            }
            "content_block_stop" => {
                let index = data["index"].as_u64().unwrap_or(0);
                if let Err(error) = self.blocks.stop(index) {
                    self.fail(out, &error);
                    return;
                }
                if let Some(at) = self.open.iter().position(|b| b.index == index) {
                    let block = self.open.remove(at);
                    self.block_stop(out, block);
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
                for block in std::mem::take(&mut self.open) {
                    self.block_stop(out, block);
                }
                if self.phase == Phase::Closed {
                    return;
                }
                let (status, incomplete) = match outcome(self.stop_reason.as_deref()) {
                    Ok(outcome) => outcome,
                    Err(message) => {
                        let error = OpenAiError::untranslatable(message);
                        self.fail(out, &error);
                        return;
                    }
                };
                let response = self.object(status, incomplete, None, true);
                let kind = if incomplete.is_some() {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                self.emit(out, kind, json!({"response": response}));
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

    fn block_start(&mut self, out: &mut Vec<u8>, data: &Value) {
        self.start(out, "");
        let block = &data["content_block"];
        if block["type"] == "tool_use" {
            if let Err(error) = check_tool_use_start(block) {
                self.fail(out, &error);
                return;
            }
        }
        let mut part = Part::from_block(block);
        // Text a block starts with is sent as a delta, as Anthropic's
        // later text is.
        let initial = match &mut part {
            Part::Text(text) | Part::Thinking { text, .. } => std::mem::take(text),
            _ => String::new(),
        };
        let index = data["index"].as_u64().unwrap_or(0);
        if matches!(part, Part::Other) {
            let kind = block["type"].as_str().unwrap_or("");
            self.fail(out, &uncarried_block(kind, "the Responses API"));
            return;
        }
        let output_index = self.next_output;
        self.next_output += 1;
        let item_id = format!("{}_{}_{output_index}", part.id_prefix(), self.base);
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": output_index, "item": part.added(&item_id)}),
        );
        match &part {
            Part::Text(_) => self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": output_index, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": []}}),
            ),
            Part::Thinking { .. } => self.emit(
                out,
                "response.reasoning_summary_part.added",
                json!({"item_id": item_id, "output_index": output_index, "summary_index": 0,
                       "part": {"type": "summary_text", "text": ""}}),
            ),
            _ => {}
        }
        self.open.push(OpenBlock {
            index,
            output_index,
            item_id,
            part,
        });
        if !initial.is_empty() {
            let delta = match self.open.last().map(|b| &b.part) {
                Some(Part::Text(_)) => json!({"type": "text_delta", "text": initial}),
                _ => json!({"type": "thinking_delta", "thinking": initial}),
            };
            self.block_delta(out, &json!({"index": index, "delta": delta}));
        }
    }

    fn block_delta(&mut self, out: &mut Vec<u8>, data: &Value) {
        let index = data["index"].as_u64().unwrap_or(0);
        let delta = &data["delta"];
        // Text that is not a string, or a delta to a block never started,
        // is not an answer the client could follow.
        let bad_text = [("text_delta", "text"), ("thinking_delta", "thinking")]
            .iter()
            .any(|(kind, key)| delta["type"] == *kind && !delta[*key].is_string());
        let Some(at) = self
            .open
            .iter()
            .position(|b| b.index == index)
            .filter(|_| !bad_text)
        else {
            let error = OpenAiError::untranslatable("the upstream streamed a content delta with no text, or for a block it never started; retry the request");
            self.fail(out, &error);
            return;
        };
        let (kind, event) = {
            let block = &mut self.open[at];
            let (item_id, output_index) = (block.item_id.clone(), block.output_index);
            match (&mut block.part, delta["type"].as_str().unwrap_or("")) {
                (Part::Text(text), "text_delta") => {
                    let d = delta["text"].as_str().unwrap_or("");
                    text.push_str(d);
                    (
                        "response.output_text.delta",
                        json!({"item_id": item_id, "output_index": output_index, "content_index": 0,
                               "delta": d, "logprobs": []}),
                    )
                }
                (Part::Thinking { text, .. }, "thinking_delta") => {
                    let d = delta["thinking"].as_str().unwrap_or("");
                    text.push_str(d);
                    (
                        "response.reasoning_summary_text.delta",
                        json!({"item_id": item_id, "output_index": output_index, "summary_index": 0, "delta": d}),
                    )
                }
                (Part::Thinking { signature, .. }, "signature_delta") => {
                    signature.push_str(delta["signature"].as_str().unwrap_or(""));
                    return;
                }
                (Part::Function { arguments, .. }, "input_json_delta") => {
                    let d = delta["partial_json"].as_str().unwrap_or("");
                    if d.is_empty() {
                        return;
                    }
                    arguments.push_str(d);
                    if let Err(error) = check_tool_input_size(arguments) {
                        self.fail(out, &error);
                        return;
                    }
                    (
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": output_index, "delta": d}),
                    )
                }
                (Part::Custom { input, .. }, "input_json_delta") => {
                    // The raw input is known once its JSON text is whole.
                    input.push_str(delta["partial_json"].as_str().unwrap_or(""));
                    if let Err(error) = check_tool_input_size(input) {
                        self.fail(out, &error);
                    }
                    return;
                }
                _ => return,
            }
        };
        self.emit(out, kind, event);
    }

    fn block_stop(&mut self, out: &mut Vec<u8>, block: OpenBlock) {
        if self.phase == Phase::Closed {
            return;
        }
        if let Part::Function {
            arguments: input, ..
        }
        | Part::Custom { input, .. } = &block.part
        {
            if let Err(error) = check_streamed_tool_input(input) {
                self.fail(out, &error);
                return;
            }
        }
        if let Part::Custom { input, .. } = &block.part {
            if let Err(message) = check_custom_input(input) {
                self.fail(out, &OpenAiError::untranslatable(message));
                return;
            }
        }
        let (id, at) = (block.item_id.clone(), block.output_index);
        match &block.part {
            Part::Text(text) => {
                let text = text.clone();
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": at, "content_index": 0, "text": text, "logprobs": []}),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": at, "content_index": 0,
                           "part": {"type": "output_text", "text": text, "annotations": []}}),
                );
            }
            Part::Thinking { text, .. } => {
                let text = text.clone();
                self.emit(
                    out,
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": at, "summary_index": 0, "text": text}),
                );
                self.emit(
                    out,
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": at, "summary_index": 0,
                           "part": {"type": "summary_text", "text": text}}),
                );
            }
            Part::Function { arguments, .. } => {
                let arguments = function_arguments(arguments).to_owned();
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": at, "arguments": arguments}),
                );
            }
            Part::Custom { input, .. } => {
                let raw = custom_input(input);
                if !raw.is_empty() {
                    self.emit(
                        out,
                        "response.custom_tool_call_input.delta",
                        json!({"item_id": id, "output_index": at, "delta": raw}),
                    );
                }
                self.emit(
                    out,
                    "response.custom_tool_call_input.done",
                    json!({"item_id": id, "output_index": at, "input": raw}),
                );
            }
            Part::Redacted(_) | Part::Other => {}
        }
        let item = block.part.done(&id);
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
        );
        self.items.push((at, item));
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

    fn translated(body: Value) -> (Value, Dropped) {
        let t = request(&to_bytes(&body)).unwrap();
        (serde_json::from_slice(&t.body).unwrap(), t.dropped)
    }

    #[test]
    fn a_string_input_is_one_user_turn() {
        let (body, dropped) = translated(
            json!({"model": "claude-haiku-4-5", "input": "Hi", "max_output_tokens": 100}),
        );
        assert!(dropped.is_empty());
        assert_eq!(
            body,
            json!({"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]}]})
        );
    }

    #[test]
    fn stop_reasons_decide_the_status() {
        assert_eq!(outcome(Some("end_turn")), Ok(("completed", None)));
        assert_eq!(outcome(Some("tool_use")), Ok(("completed", None)));
        assert_eq!(outcome(Some("stop_sequence")), Ok(("completed", None)));
        assert_eq!(
            outcome(Some("max_tokens")),
            Ok(("incomplete", Some("max_output_tokens")))
        );
        assert_eq!(
            outcome(Some("refusal")),
            Ok(("incomplete", Some("content_filter")))
        );
        assert_eq!(
            outcome(Some("pause_turn")),
            Ok(("incomplete", Some("pause_turn")))
        );
        // Unknown, or none: an error naming it, never a completion.
        assert!(outcome(Some("banana")).unwrap_err().contains("`banana`"));
        assert!(outcome(None).unwrap_err().contains("without a stop_reason"));
    }

    #[test]
    fn freeform_input_falls_back_to_the_json_text() {
        assert_eq!(
            custom_input(r#"{"input":"*** Begin Patch"}"#),
            "*** Begin Patch"
        );
        assert_eq!(custom_input(r#"{"patch":"x"}"#), r#"{"patch":"x"}"#);
        assert_eq!(custom_input("{\"input\": \"cut"), "{\"input\": \"cut");
    }

    #[test]
    fn a_block_text_starts_with_and_message_stop_rules() {
        let start = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"Hi\"}}\n\n",
        );
        let block_stop =
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
        let stop = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n";
        let end = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let run = |body: String| {
            let mut stream = Stream::new("m");
            let mut out = Vec::new();
            stream.feed(body.as_bytes(), &mut out);
            stream.finish(&mut out);
            String::from_utf8(out).unwrap()
        };
        let text = run([start, block_stop, stop, end].concat());
        // The block's initial text came as a delta, the item was closed,
        // and the stream completed once.
        assert!(text.contains("\"delta\":\"Hi\""));
        assert!(text.contains("event: response.output_item.done"));
        assert_eq!(text.matches("event: response.completed").count(), 1);
        assert!(!text.contains("response.failed"));
        // Without a stop reason, the answer did not say how it ended; a
        // block never stopped was never finished: failures, never a
        // completion.
        for (body, named) in [
            ([start, block_stop, end].concat(), "without a stop_reason"),
            ([start, stop, end].concat(), "never stopped"),
        ] {
            let text = run(body);
            assert!(text.contains("event: response.failed"), "{text}");
            assert!(text.contains(named), "{text}");
            assert!(!text.contains("response.completed"));
        }
    }
}
