//! An Anthropic Messages client (`POST /v1/messages`, Claude Code
//! included) served by an OpenAI Responses upstream: a ChatGPT
//! subscription, a Responses-only model, or Fireworks' Responses API.
//!
//! Shapes follow Anthropic's Messages API reference and streaming guide
//! and OpenAI's Responses reference
//! (`platform.openai.com/docs/api-reference/responses`, and
//! `…/responses-streaming` for the events).
//!
//! # The request
//!
//! | Anthropic member | Responses |
//! |---|---|
//! | `model`, `stream` | `model`, `stream`; always `store: false` |
//! | `system` (string or text blocks) | `instructions` (blocks joined by a blank line) |
//! | `messages[]` `role: "system"` entry | an `input` message with `role: "system"` |
//! | user `text` / `image` (`base64`, `url`) | `input` message parts `input_text` / `input_image` (`detail: auto`; base64 as a `data:` URL) |
//! | user `document`: text source / PDF | `input_text` / `input_file` (`file_data`; OpenAI only, dropped on Fireworks) |
//! | assistant `text` | an `input` message with `role: "assistant"` and an `output_text` part |
//! | assistant `tool_use` | a `function_call` item (`call_id`, `name`, `arguments` as JSON text) |
//! | user `tool_result` | a `function_call_output` item (`call_id`, `output`) right after the calls; `is_error` prefixes the text with `Error: ` |
//! | `tools[]` | `{"type":"function", name, description, parameters, strict}` (`strict: false` unless the client set it: Responses defaults to strict schemas) |
//! | `tool_choice` `auto` / `any` / `tool` / `none` | `auto` / `required` / `{"type":"function","name":…}` / `none` |
//! | `tool_choice.disable_parallel_tool_use: true` | `parallel_tool_calls: false` |
//! | `max_tokens` | `max_output_tokens` |
//! | `temperature`, `top_p` | the same |
//! | `thinking` `enabled` / `output_config.effort` | `reasoning: {"effort", "summary": "auto"}` (budget < 4096 `low`, < 16384 `medium`, else `high`; `max` → `high`) |
//! | `metadata.user_id` | Fireworks `user`; OpenAI `safety_identifier` when ≤ 64 characters, else dropped |
//! | `output_config.format` (`json_schema`) | `text.format: {"type":"json_schema","name":"output","schema":…,"strict":true}` |
//!
//! Dropped and named in [`Dropped`](super::Dropped): what
//! [`messages_to_chat`](super::messages_to_chat) drops, and `top_k` and
//! `stop_sequences` (the Responses API has neither). Refused: as there.
//!
//! # The answer
//!
//! | Responses | Anthropic |
//! |---|---|
//! | `reasoning` item: `summary[].text` (or `content[]` reasoning text) | a `thinking` block |
//! | `message` item: `output_text` / `refusal` parts | `text` blocks |
//! | `function_call` item | a `tool_use` block (`id` = `call_id`, `input` parsed from `arguments`) |
//! | `status: completed` | `stop_reason` `tool_use` when a tool was called, `refusal` after a refusal, else `end_turn` |
//! | `status: incomplete`, `incomplete_details.reason` `max_output_tokens` / `content_filter` | `max_tokens` / `refusal` |
//! | `output_text` `annotations` | dropped (named in a whole answer) |
//! | `usage.input_tokens` − cached, `input_tokens_details.cached_tokens`, `output_tokens` | `usage.input_tokens`, `cache_read_input_tokens`, `output_tokens` |
//!
//! A stream ([`Stream`]): `response.created` gives `message_start`;
//! `response.output_text.delta` and `response.refusal.delta` give
//! `text_delta`s, `response.reasoning_summary_text.delta` and
//! `response.reasoning_text.delta` give `thinking_delta`s (summary parts
//! separated by a blank line), `response.output_item.added` of a
//! `function_call` opens a `tool_use` block that
//! `response.function_call_arguments.delta` fills (`input_json_delta`);
//! `response.output_item.done` closes the item's block;
//! `response.completed` and `response.incomplete` give `message_delta` and
//! `message_stop`; `response.failed` and `error` give an `event: error`, as
//! does a stream that ends before its terminal event.
//!
//! An output item of another type (a built-in tool's call, an unknown
//! one), a message part that is not text, a function call without a name
//! or `arguments` (or arguments that are not a JSON object), an item
//! started and never finished before `response.completed`, a status or
//! incomplete reason without a counterpart (or none): the answer is an
//! error (an `event: error`, or a 502 for a whole answer).

use serde_json::{json, Map, Value};

pub use super::anthropic_client::Target;
use super::anthropic_client::{
    self, read_request, AnthropicWriter, Block, Conversation, Part, ToolChoice, Turn, Usage,
};
use super::messages_to_chat::tool_output_text;
use super::{Dropped, StreamTranslator, TranslateError, TranslatedAnswer, TranslatedRequest};
use crate::sse::SseFramer;

/// Translates a client's Anthropic Messages body into a Responses body
/// for `target`.
///
/// # Errors
///
/// [`TranslateError::InvalidBody`] when the body is not an Anthropic
/// Messages request; [`TranslateError::Unexpressible`] naming the member
/// that the Responses API cannot express.
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
    if let Some(system) = &conv.system {
        out.insert("instructions".into(), json!(system));
    }
    out.insert("input".into(), Value::Array(input(&conv)));
    out.insert("store".into(), Value::Bool(false));
    if conv.stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    if let Some(max) = conv.max_tokens {
        out.insert("max_output_tokens".into(), json!(max));
    }
    if let Some(t) = conv.temperature.take() {
        out.insert("temperature".into(), t);
    }
    if let Some(p) = conv.top_p.take() {
        out.insert("top_p".into(), p);
    }
    if conv.top_k.take().is_some() {
        conv.dropped.push("top_k");
    }
    if !conv.stop_sequences.is_empty() {
        conv.dropped.push("stop_sequences");
    }
    if !conv.tools.is_empty() {
        let tools: Vec<Value> = conv
            .tools
            .iter()
            .map(|t| {
                let mut tool = Map::new();
                tool.insert("type".into(), json!("function"));
                tool.insert("name".into(), json!(t.name));
                if let Some(d) = &t.description {
                    tool.insert("description".into(), json!(d));
                }
                tool.insert("parameters".into(), t.parameters.clone());
                tool.insert("strict".into(), json!(t.strict.unwrap_or(false)));
                Value::Object(tool)
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &conv.tool_choice {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Required => json!("required"),
            ToolChoice::None => json!("none"),
            ToolChoice::Tool(name) => json!({"type": "function", "name": name}),
        };
        out.insert("tool_choice".into(), choice);
    }
    if let Some(parallel) = conv.parallel_tool_calls {
        out.insert("parallel_tool_calls".into(), json!(parallel));
    }
    if let Some(effort) = conv.effort {
        out.insert(
            "reasoning".into(),
            json!({"effort": effort, "summary": "auto"}),
        );
    }
    if let Some(schema) = conv.output_schema.take() {
        out.insert(
            "text".into(),
            json!({"format": {"type": "json_schema", "name": "output", "schema": schema, "strict": true}}),
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

fn input(conv: &Conversation) -> Vec<Value> {
    let mut out = Vec::new();
    for turn in &conv.turns {
        match turn {
            Turn::System(text) => {
                out.push(json!({"type": "message", "role": "system", "content": text}))
            }
            Turn::User(parts) => {
                let parts: Vec<Value> = parts
                    .iter()
                    .map(|p| match p {
                        Part::Text(text) => json!({"type": "input_text", "text": text}),
                        Part::Image(url) => json!({"type": "input_image", "image_url": url, "detail": "auto"}),
                        Part::File { data_url, filename } => {
                            json!({"type": "input_file", "file_data": data_url, "filename": filename})
                        }
                    })
                    .collect();
                out.push(json!({"type": "message", "role": "user", "content": parts}));
            }
            Turn::Assistant { text, calls } => {
                if !text.is_empty() {
                    out.push(json!({
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text}],
                    }));
                }
                for call in calls {
                    out.push(json!({
                        "type": "function_call",
                        "call_id": call.id,
                        "name": call.name,
                        "arguments": call.arguments,
                    }));
                }
            }
            Turn::ToolResult {
                call_id,
                output,
                is_error,
            } => out.push(json!({
                "type": "function_call_output",
                "call_id": call_id,
                "output": tool_output_text(output, *is_error),
            })),
        }
    }
    out
}

/// The Anthropic stop reason of a finished response (its `status` and
/// `incomplete_details.reason`; `refusal`: it refused; `tool_use`: it
/// calls a tool); the error's message for a status or reason with no
/// counterpart (or none).
fn stop_reason(response: &Value, refusal: bool, tool_use: bool) -> Result<&'static str, String> {
    match response.get("status").and_then(Value::as_str) {
        Some("completed") if refusal => Ok("refusal"),
        Some("completed") if tool_use => Ok("tool_use"),
        Some("completed") => Ok("end_turn"),
        Some("incomplete") => {
            let reason = response
                .get("incomplete_details")
                .and_then(|d| d.get("reason"))
                .and_then(Value::as_str);
            match reason {
                Some("max_output_tokens") => Ok("max_tokens"),
                Some("content_filter") => Ok("refusal"),
                Some(other) => Err(format!(
                    "the upstream's response is incomplete for `{}`, which the Anthropic Messages API has no counterpart for; retry the request",
                    anthropic_client::member(other)
                )),
                None => Err(
                    "the upstream's response is incomplete without a stated reason; retry the request"
                        .into(),
                ),
            }
        }
        Some(other) => Err(format!(
            "the upstream's response has status `{}`, not a finished answer; retry the request",
            anthropic_client::member(other)
        )),
        None => Err("the upstream's response has no `status`; retry the request".into()),
    }
}

fn texts<'a>(parts: Option<&'a Value>, kind: &str, field: &str) -> Vec<&'a str> {
    parts
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some(kind))
        .filter_map(|p| p.get(field).and_then(Value::as_str))
        .collect()
}

/// The output item types an Anthropic message can carry.
const ITEM_TYPES: [&str; 3] = ["message", "reasoning", "function_call"];

/// The error's message for output item `index` of type `kind` (none:
/// `None`), which an Anthropic message cannot carry.
fn uncarried_item(index: usize, kind: Option<&str>) -> String {
    match kind {
        Some(kind) => format!(
            "the upstream's output[{index}] is a `{}` item, which an Anthropic message cannot carry; retry the request",
            anthropic_client::member(kind)
        ),
        None => format!("the upstream's output[{index}] has no `type`; retry the request"),
    }
}

/// The texts of a `message` item's `content` (an `output_text` part's
/// `text`, a `refusal` part's `refusal`, with whether it is a refusal);
/// naming its parts' `annotations` in `dropped`. The error's message for
/// a part of another type, or without its text.
fn message_texts<'a>(
    item: &'a Value,
    at: &str,
    dropped: &mut Dropped,
) -> Result<Vec<(&'a str, bool)>, String> {
    let Some(parts) = item.get("content").and_then(Value::as_array) else {
        return Err(format!(
            "the upstream's {at} (a message) has no `content` array; retry the request"
        ));
    };
    if item
        .get("role")
        .is_some_and(|r| !r.is_null() && r != "assistant")
    {
        return Err(format!(
            "the upstream's {at} (a message) is not the assistant's; retry the request"
        ));
    }
    let mut texts = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let kind = part.get("type").and_then(Value::as_str);
        let (field, refusal) = match kind {
            Some("output_text") => ("text", false),
            Some("refusal") => ("refusal", true),
            _ => {
                return Err(format!(
                    "the upstream's {at}.content[{j}] is a `{}` part, which an Anthropic message cannot carry; retry the request",
                    anthropic_client::member(kind.unwrap_or(""))
                ))
            }
        };
        let Some(text) = part.get(field).and_then(Value::as_str) else {
            return Err(format!(
                "the upstream's {at}.content[{j}].{field} is not text; retry the request"
            ));
        };
        if part
            .get("annotations")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            dropped.push("answer.output[].content[].annotations");
        }
        texts.push((text, refusal));
    }
    Ok(texts)
}

/// Translates a Responses `response` object into an Anthropic `message`
/// body.
///
/// Errors: as [`answer`].
pub fn response(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    answer(body).map(|a| a.body)
}

/// Translates a Responses `response` object into an Anthropic `message`
/// body, naming what had no counterpart (`annotations`).
///
/// # Errors
///
/// [`TranslateError::InvalidBody`] when the body is not a response object,
/// is a failed or unfinished response, or holds what an Anthropic message
/// cannot carry: an output item of another type (a built-in tool's call,
/// an unknown one), a message part that is not text, a function call
/// without a name, a `call_id` or `arguments`, an incomplete reason
/// without a counterpart; [`TranslateError::Unexpressible`] when a
/// function call's arguments are not a JSON object.
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
    let output = v.get("output").and_then(Value::as_array).ok_or_else(|| {
        TranslateError::InvalidBody("the upstream's response has no `output` array".into())
    })?;
    let mut dropped = Dropped::default();
    let mut content = Vec::new();
    let mut refusal = false;
    let mut tool_use = false;
    for (i, item) in output.iter().enumerate() {
        let at = format!("output[{i}]");
        match item.get("type").and_then(Value::as_str) {
            Some("reasoning") => {
                let mut thinking = texts(item.get("summary"), "summary_text", "text");
                if thinking.is_empty() {
                    thinking = texts(item.get("content"), "reasoning_text", "text");
                }
                if !thinking.is_empty() {
                    content.push(Block::Json(json!({"type": "thinking", "thinking": thinking.join("\n\n"), "signature": ""})));
                }
            }
            Some("message") => {
                let texts =
                    message_texts(item, &at, &mut dropped).map_err(TranslateError::InvalidBody)?;
                for (text, is_refusal) in texts {
                    refusal |= is_refusal;
                    if !text.is_empty() {
                        content.push(Block::Json(json!({"type": "text", "text": text})));
                    }
                }
            }
            Some("function_call") => {
                tool_use = true;
                let arguments = format!("{at}.arguments");
                let input = match item.get("arguments") {
                    Some(Value::String(text)) => anthropic_client::raw_tool_input(text, &arguments)?,
                    Some(_) => {
                        return Err(TranslateError::InvalidBody(format!(
                            "the upstream's {arguments} is not JSON text"
                        )))
                    }
                    None => {
                        return Err(TranslateError::InvalidBody(format!(
                            "the upstream's {arguments} is missing (JSON text of an object, `{{}}` for none)"
                        )))
                    }
                };
                for key in ["name", "call_id"] {
                    if item
                        .get(key)
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        return Err(TranslateError::InvalidBody(format!(
                            "the upstream's {at} (a function call) has no `{key}`"
                        )));
                    }
                }
                content.push(Block::ToolUse {
                    id: str_of(item, "call_id").to_owned(),
                    name: str_of(item, "name").to_owned(),
                    input,
                });
            }
            kind => return Err(TranslateError::InvalidBody(uncarried_item(i, kind))),
        }
    }
    let reason = stop_reason(&v, refusal, tool_use).map_err(TranslateError::InvalidBody)?;
    if reason != "max_tokens" {
        if let Some(i) = output
            .iter()
            .position(|item| item.get("status").and_then(Value::as_str) == Some("incomplete"))
        {
            return Err(TranslateError::InvalidBody(format!(
                "the upstream's output[{i}] is incomplete in a finished response"
            )));
        }
    }
    let usage = v.get("usage").map(Usage::from_openai).unwrap_or_default();
    let id = anthropic_client::message_id(v.get("id").and_then(Value::as_str));
    let model = v.get("model").and_then(Value::as_str).unwrap_or("");
    Ok(TranslatedAnswer {
        body: anthropic_client::message_body(&id, model, content, reason, usage),
        dropped,
    })
}

/// An upstream's error answer (OpenAI's `{"error":{…}}` or the ChatGPT
/// backend's `{"detail":"…"}`) as an Anthropic error body; the same rules
/// as [`messages_to_chat::error_response`](super::messages_to_chat::error_response).
pub fn error_response(status: u16, body: &[u8]) -> Vec<u8> {
    anthropic_client::error_response(status, body)
}

/// The streaming answer: Responses events in, the Anthropic event stream
/// out (see the module documentation).
#[derive(Debug)]
pub struct Stream {
    framer: SseFramer,
    state: State,
}

#[derive(Debug)]
struct State {
    writer: AnthropicWriter,
    refusal: bool,
    /// The reasoning summary part last written: (output index, summary index).
    last_summary: Option<(u64, u64)>,
    /// What the deltas wrote, by output index and part.
    streamed: Vec<(u64, Streamed, String)>,
    /// Output indexes of items started and not finished.
    open_items: Vec<u64>,
    /// An item finished with `status: incomplete`.
    incomplete_item: Option<u64>,
    /// The bytes of `streamed`.
    streamed_bytes: usize,
    /// How many items the stream finished.
    finished: usize,
}

/// The most content one translated Responses stream may carry (bytes):
/// the deltas are kept to check against the finished items.
const STREAMED_MAX: usize = 32 << 20;

impl Stream {
    /// A translator for an answer of `model` (the name the client used,
    /// reported in `message_start`).
    pub fn new(model: &str) -> Self {
        Stream {
            framer: SseFramer::new(false),
            state: State {
                writer: AnthropicWriter::new(model),
                refusal: false,
                last_summary: None,
                streamed: Vec::new(),
                open_items: Vec::new(),
                incomplete_item: None,
                streamed_bytes: 0,
                finished: 0,
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
        state.writer.error(
            out,
            "api_error",
            "the upstream's stream ended before response.completed; the answer is incomplete",
        );
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// What a stream's deltas wrote of one item's part, to check against the
/// finished item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Streamed {
    /// A message's text or refusal part (`content_index`).
    Text(u64),
    /// A reasoning item's summary part (`summary_index`).
    Summary(u64),
    /// A function call's arguments.
    Arguments,
}

/// The delta events of the Responses API that carry content this
/// translation reads; any other `….delta` carries content the Anthropic
/// stream cannot (audio, a built-in tool's output) and is an error.
const READ_DELTAS: [&str; 5] = [
    "response.output_text.delta",
    "response.refusal.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.function_call_arguments.delta",
];

impl State {
    /// The text the deltas wrote for `part` of output item `output_index`.
    fn streamed(&mut self, output_index: u64, part: Streamed) -> &mut String {
        let at = match self
            .streamed
            .iter()
            .position(|(i, p, _)| *i == output_index && *p == part)
        {
            Some(at) => at,
            None => {
                self.streamed.push((output_index, part, String::new()));
                self.streamed.len() - 1
            }
        };
        &mut self.streamed[at].2
    }

    /// Writes `delta` of `part` of item `output_index` (recording it).
    fn write(&mut self, out: &mut Vec<u8>, output_index: u64, part: Streamed, delta: &str) {
        self.streamed_bytes += delta.len();
        if self.streamed_bytes > STREAMED_MAX {
            self.writer.error(
                out,
                "api_error",
                &format!("the upstream's answer is larger than {} MiB, more than the gateway translates; retry the request", STREAMED_MAX >> 20),
            );
            return;
        }
        self.streamed(output_index, part).push_str(delta);
        match part {
            Streamed::Text(content_index) => {
                self.writer.text(out, (output_index, content_index), delta);
            }
            Streamed::Summary(summary_index) => {
                let key = (output_index, 0);
                let at = (output_index, summary_index);
                // Summary parts are separated by a blank line.
                if !delta.is_empty()
                    && self
                        .writer
                        .is_open(anthropic_client::BlockKind::Thinking, key)
                    && self.last_summary != Some(at)
                {
                    self.writer.thinking(out, key, "\n\n");
                }
                if !delta.is_empty() {
                    self.last_summary = Some(at);
                }
                self.writer.thinking(out, key, delta);
            }
            Streamed::Arguments => self.writer.tool_args(out, (output_index, 0), delta),
        }
    }

    /// The finished item's `text` for `part`, against what its deltas
    /// wrote: the rest is written when the deltas wrote a beginning of it
    /// (an upstream may send a part whole, in its done events only); an
    /// answer whose deltas say something else is an error.
    fn reconcile(&mut self, out: &mut Vec<u8>, output_index: u64, part: Streamed, text: &str) {
        let written = self.streamed(output_index, part).clone();
        match text.strip_prefix(written.as_str()) {
            Some(rest) => self.write(out, output_index, part, rest),
            None => self.writer.error(
                out,
                "api_error",
                &format!("the upstream's finished output item {output_index} says other than its streamed deltas did; retry the request"),
            ),
        }
    }

    /// Checks a finished item and writes what its deltas did not.
    fn item_done(&mut self, out: &mut Vec<u8>, output_index: u64, item: &Value) {
        let at = format!("output[{output_index}]");
        let kind = item.get("type").and_then(Value::as_str);
        if !kind.is_some_and(|k| ITEM_TYPES.contains(&k)) {
            let message = uncarried_item(output_index as usize, kind);
            self.writer.error(out, "api_error", &message);
            return;
        }
        if item.get("status").and_then(Value::as_str) == Some("incomplete") {
            self.incomplete_item = Some(output_index);
        }
        match kind {
            Some("message") => {
                // Its parts, whole: each text or a refusal.
                let texts = match message_texts(item, &at, &mut Dropped::default()) {
                    Ok(texts) => texts,
                    Err(message) => {
                        self.writer.error(out, "api_error", &message);
                        return;
                    }
                };
                for (j, (text, refusal)) in texts.into_iter().enumerate() {
                    self.refusal |= refusal;
                    self.reconcile(out, output_index, Streamed::Text(j as u64), text);
                }
            }
            Some("reasoning") => {
                let parts = item.get("summary").and_then(Value::as_array);
                for (j, part) in parts.into_iter().flatten().enumerate() {
                    if let Some(text) = part.get("text").and_then(Value::as_str) {
                        self.reconcile(out, output_index, Streamed::Summary(j as u64), text);
                    }
                }
            }
            _ => {
                let Some(arguments) = item.get("arguments").and_then(Value::as_str) else {
                    self.writer.error(
                        out,
                        "api_error",
                        "the upstream sent a function call whose arguments are missing or not a string of JSON text; retry the request",
                    );
                    return;
                };
                let key = (output_index, 0);
                let (call_id, name) = (str_of(item, "call_id"), str_of(item, "name"));
                if !self.writer.tool_seen(key) {
                    self.writer.tool_start(out, key, call_id, name);
                } else if self.writer.tool_id(key) != Some(call_id)
                    || self.writer.tool_name(key) != Some(name)
                {
                    // The call the client was told of is not the one made.
                    self.writer.error(
                        out,
                        "api_error",
                        &format!("the upstream's finished function call {output_index} names another tool or call id than it started with; retry the request"),
                    );
                    return;
                }
                self.reconcile(out, output_index, Streamed::Arguments, arguments);
            }
        }
        self.writer.close_output(out, output_index);
    }

    fn data(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.writer.done() || data.trim_ascii() == b"[DONE]" {
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
        let output_index = u64_of(&v, "output_index");
        let kind = str_of(&v, "type");
        if kind.ends_with(".delta") {
            // Content for an item that is open, as text.
            let Some(delta) = v.get("delta").and_then(Value::as_str) else {
                self.writer.error(
                    out,
                    "api_error",
                    &format!(
                        "the upstream sent a `{}` event whose delta is not text; retry the request",
                        anthropic_client::member(kind)
                    ),
                );
                return;
            };
            if !READ_DELTAS.contains(&kind) {
                self.writer.error(out, "api_error", &format!("the upstream streamed `{}`, content an Anthropic stream cannot carry; retry the request", anthropic_client::member(kind)));
                return;
            }
            if !self.open_items.contains(&output_index) {
                self.writer.error(out, "api_error", &format!("the upstream streamed content for output item {output_index}, which is not open (never started, or finished); retry the request"));
                return;
            }
            let part = match kind {
                "response.output_text.delta" | "response.refusal.delta" => {
                    self.refusal |= kind == "response.refusal.delta";
                    Streamed::Text(u64_of(&v, "content_index"))
                }
                "response.reasoning_summary_text.delta" => {
                    Streamed::Summary(u64_of(&v, "summary_index"))
                }
                "response.reasoning_text.delta" => {
                    // Reasoning text (not a summary): its own thinking.
                    self.streamed(output_index, Streamed::Summary(u64::MAX))
                        .push_str(delta);
                    self.writer.thinking(out, (output_index, 0), delta);
                    return;
                }
                _ => Streamed::Arguments,
            };
            self.write(out, output_index, part, delta);
            return;
        }
        match kind {
            "response.created" | "response.in_progress" | "response.queued" => {
                let id = v
                    .get("response")
                    .and_then(|r| r.get("id"))
                    .and_then(Value::as_str);
                self.writer.start(out, id);
            }
            "response.output_item.added" => {
                let item = v.get("item").unwrap_or(&Value::Null);
                let kind = item.get("type").and_then(Value::as_str);
                if !kind.is_some_and(|k| ITEM_TYPES.contains(&k)) {
                    let message = uncarried_item(output_index as usize, kind);
                    self.writer.error(out, "api_error", &message);
                    return;
                }
                if self.open_items.contains(&output_index) {
                    self.writer.error(out, "api_error", &format!("the upstream started output item {output_index} twice; retry the request"));
                    return;
                }
                self.open_items.push(output_index);
                if kind == Some("function_call") {
                    self.writer.tool_start(
                        out,
                        (output_index, 0),
                        str_of(item, "call_id"),
                        str_of(item, "name"),
                    );
                }
            }
            "response.output_item.done" => {
                if !self.open_items.contains(&output_index) {
                    self.writer.error(out, "api_error", &format!("the upstream finished output item {output_index}, which was not open; retry the request"));
                    return;
                }
                if self.open_items.iter().any(|i| *i < output_index) {
                    // Items end in their order; a client placing them by
                    // index would read another answer than one reading
                    // them as they came.
                    self.writer.error(out, "api_error", &format!("the upstream finished output item {output_index} before an earlier one; retry the request"));
                    return;
                }
                self.open_items.retain(|i| *i != output_index);
                self.finished += 1;
                let item = v.get("item").unwrap_or(&Value::Null);
                self.item_done(out, output_index, item);
            }
            "response.completed" | "response.incomplete" => {
                let response = v.get("response").unwrap_or(&Value::Null);
                let usage = response
                    .get("usage")
                    .map(Usage::from_openai)
                    .unwrap_or_default();
                if let Some(index) = self.open_items.first() {
                    let message = format!("the upstream's response ended with output item {index} started and never finished (no response.output_item.done); the answer is incomplete");
                    self.writer.error(out, "api_error", &message);
                    return;
                }
                // Output the final event lists that the stream never
                // finished: carried when the stream finished none (a
                // backend may send the answer there only), else an error.
                let listed = response
                    .get("output")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                if self.finished == 0 && !listed.is_empty() {
                    for (i, item) in listed.iter().enumerate() {
                        self.finished += 1;
                        self.item_done(out, i as u64, item);
                        if self.writer.done() {
                            return;
                        }
                    }
                } else if !listed.is_empty() && listed.len() != self.finished {
                    let message = format!("the upstream's final response lists {} output items, its stream finished {}; retry the request", listed.len(), self.finished);
                    self.writer.error(out, "api_error", &message);
                    return;
                }
                if let (Some(index), "response.completed") = (self.incomplete_item, kind) {
                    let message = format!("the upstream's response completed with output item {index} incomplete; retry the request");
                    self.writer.error(out, "api_error", &message);
                    return;
                }
                match stop_reason(response, self.refusal, self.writer.tool_use) {
                    Ok(reason) => self.writer.end(out, reason, usage),
                    Err(message) => self.writer.error(out, "api_error", &message),
                }
            }
            "response.failed" => {
                let error = v
                    .get("response")
                    .and_then(|r| r.get("error"))
                    .unwrap_or(&Value::Null);
                let (kind, message) = anthropic_client::openai_error(error, "api_error");
                self.writer.error(out, kind, &message);
            }
            "error" => {
                let error = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
                let (kind, message) = anthropic_client::openai_error(error, "api_error");
                self.writer.error(out, kind, &message);
            }
            _ => {}
        }
    }
}
