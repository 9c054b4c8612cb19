//! Protocol translation: a client speaking one provider API family served by
//! a model behind another.
//!
//! Four directions, each a request mapping and an answer mapping (a whole
//! JSON body, or a streaming transducer fed the upstream's bytes in any
//! chunk split):
//!
//! | client speaks | upstream speaks | module |
//! |---|---|---|
//! | Anthropic Messages | OpenAI Chat Completions | [`messages_to_chat`] |
//! | Anthropic Messages | OpenAI Responses | [`messages_to_responses`] |
//! | OpenAI Chat Completions | Anthropic Messages | [`chat_to_messages`] |
//! | OpenAI Responses | Anthropic Messages | [`responses_to_messages`] |
//!
//! *Rule*: nothing is silently mistranslated. A request member with no
//! counterpart is dropped and named in [`Dropped`] (the server sends the
//! list in the `llm-integration-dropped` response header); a request that
//! cannot be expressed at all is a [`TranslateError`] naming the member (a
//! 400 in the client's dialect).
//!
//! *Rule, for answers*: what the upstream answers is either carried, or
//! the answer is an error naming it (an `error` event, `response.failed`,
//! an error chunk, or a 502), never a clean but different answer. Content
//! the client's API cannot carry (a block, output item or part of an
//! unknown type, audio), a stop or finish reason it has no counterpart for
//! (or none at all), a tool call without a name or with arguments that are
//! not a JSON object, an item started and never finished: all errors. (A
//! translated request never asks for server tools or audio, so such an
//! answer comes from a broken or hostile upstream.) A member that only
//! annotates content (`citations`, `annotations`, `logprobs`) is dropped
//! and, in a whole answer, named in the same header as `answer.PATH`
//! (`answer.content[].citations`); a stream's header has gone before its
//! events are read, so there it is dropped unnamed.
//!
//! Unlike the forwarding path, a translated request is necessarily a new
//! body: the client's bytes cannot reach a provider that speaks another
//! language. Metering reads the upstream's own answer (its native usage
//! shape) before it is translated, so the served model is what is priced.

use std::fmt;

mod anthropic_client;
pub mod chat_to_messages;
pub mod messages_to_chat;
pub mod messages_to_responses;
mod openai_client;
pub mod responses_to_messages;

pub use anthropic_client::Target;

/// Which translation a forwarded request takes: decided by the router
/// (the client's API family against the provider serving the model), the
/// request built by [`Translation::request`] in the upstream plan, the
/// answer translated by [`AnswerTranslation`] after metering has read the
/// upstream's own bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Translation {
    /// The client speaks the provider's API: forwarded as sent.
    #[default]
    None,
    /// An Anthropic Messages client, a Chat Completions upstream
    /// ([`messages_to_chat`]).
    MessagesToChat(Target),
    /// An Anthropic Messages client, a Responses upstream (a ChatGPT
    /// subscription serves the Responses API only;
    /// [`messages_to_responses`]).
    MessagesToResponses(Target),
    /// A Chat Completions client, an Anthropic Messages upstream
    /// ([`chat_to_messages`]).
    ChatToMessages,
    /// A Responses client, an Anthropic Messages upstream
    /// ([`responses_to_messages`]).
    ResponsesToMessages,
}

impl Translation {
    /// Whether the request is translated at all.
    pub fn is_some(self) -> bool {
        self != Translation::None
    }

    /// The upstream API path (after the provider's prefix) a translated
    /// request goes to; `None` when it is not translated.
    pub fn upstream_api_path(self) -> Option<&'static str> {
        match self {
            Translation::None => None,
            Translation::MessagesToChat(_) => Some("/v1/chat/completions"),
            Translation::MessagesToResponses(_) => Some("/v1/responses"),
            Translation::ChatToMessages | Translation::ResponsesToMessages => Some("/v1/messages"),
        }
    }

    /// Translates the client's request body into the upstream's.
    ///
    /// # Errors
    /// The direction's [`TranslateError`]: a body that is not a request of
    /// the client's API, or a member the upstream cannot express.
    pub fn request(self, body: &[u8]) -> Result<TranslatedRequest, TranslateError> {
        match self {
            Translation::None => Err(TranslateError::InvalidBody(
                "the request is not translated".to_owned(),
            )),
            Translation::MessagesToChat(target) => messages_to_chat::request(body, target),
            Translation::MessagesToResponses(target) => {
                messages_to_responses::request(body, target)
            }
            Translation::ChatToMessages => chat_to_messages::request(body),
            Translation::ResponsesToMessages => responses_to_messages::request(body),
        }
    }
}

/// How to translate one answer back: the direction, the model the client
/// named (answers carry it, so the client sees the name it asked for) and
/// what the client's request said about the answer's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerTranslation {
    /// The direction.
    pub translation: Translation,
    /// The model as the client named it (`provider/` prefix removed).
    pub model: String,
    /// A Chat Completions client asked for the usage chunk
    /// (`stream_options.include_usage`).
    pub include_usage: bool,
    /// What had no counterpart in the upstream's API (for the
    /// [`DROPPED_HEADER`]).
    pub dropped: Dropped,
    /// The answer's creation time for OpenAI-shaped answers (`created`,
    /// `created_at`), in Unix seconds; the server sets its clock's.
    pub created_at: u64,
    /// The gateway's estimate of the request's input tokens, which an
    /// Anthropic client's `message_start` reports (the OpenAI upstream
    /// counts only at the end of its stream); the server sets it.
    pub input_estimate: u64,
}

impl AnswerTranslation {
    /// The streaming translator for an event-stream answer.
    pub fn stream(&self) -> Box<dyn StreamTranslator> {
        match self.translation {
            Translation::MessagesToChat(_) | Translation::None => Box::new(
                messages_to_chat::Stream::new(&self.model).input_estimate(self.input_estimate),
            ),
            Translation::MessagesToResponses(_) => Box::new(
                messages_to_responses::Stream::new(&self.model).input_estimate(self.input_estimate),
            ),
            Translation::ChatToMessages => Box::new(
                chat_to_messages::Stream::new(&self.model, self.include_usage)
                    .created_at(self.created_at),
            ),
            Translation::ResponsesToMessages => Box::new(
                responses_to_messages::Stream::new(&self.model).created_at(self.created_at),
            ),
        }
    }

    /// A whole successful answer (a JSON body) in the client's API, and
    /// what of it had no counterpart.
    ///
    /// # Errors
    /// [`TranslateError`] when the body is not the upstream API's answer,
    /// or holds what the client's API cannot carry (see the module's
    /// rule for answers).
    pub fn response(&self, body: &[u8]) -> Result<TranslatedAnswer, TranslateError> {
        match self.translation {
            Translation::MessagesToChat(_) | Translation::None => messages_to_chat::answer(body),
            Translation::MessagesToResponses(_) => messages_to_responses::answer(body),
            Translation::ChatToMessages => chat_to_messages::answer(body, self.created_at),
            Translation::ResponsesToMessages => {
                responses_to_messages::answer(body, self.created_at)
            }
        }
    }

    /// An upstream's error answer (HTTP `status`, its body as sent) as an
    /// error body of the client's API.
    pub fn error_response(&self, status: u16, body: &[u8]) -> Vec<u8> {
        match self.translation {
            Translation::MessagesToChat(_) | Translation::None => {
                messages_to_chat::error_response(status, body)
            }
            Translation::MessagesToResponses(_) => {
                messages_to_responses::error_response(status, body)
            }
            Translation::ChatToMessages => chat_to_messages::error_response(status, body),
            Translation::ResponsesToMessages => responses_to_messages::error_response(status, body),
        }
    }
}

/// The response header naming the request members dropped in translation.
pub const DROPPED_HEADER: &str = "llm-integration-dropped";

/// A request that cannot be expressed in the upstream's API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranslateError {
    /// The body is not one of its API (the client's request, or the
    /// upstream's answer): the reason names the member.
    #[error("invalid body: {0}")]
    InvalidBody(String),
    /// A member (a JSON path such as `messages[2].content[0].type`) has a
    /// value the upstream's API cannot express.
    #[error("`{field}` cannot be translated: {reason}")]
    Unexpressible {
        /// The member, as a JSON path into the client's body.
        field: String,
        /// Why, and what to send instead.
        reason: String,
    },
}

/// The request members dropped because the upstream's API has no
/// counterpart, as JSON paths (`metadata.user_id`, `top_k`), in the order
/// met, without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped(Vec<String>);

impl Dropped {
    /// Records `field` as dropped (once).
    pub fn push(&mut self, field: impl Into<String>) {
        let field = field.into();
        if !self.0.contains(&field) {
            self.0.push(field);
        }
    }
    /// Records each of `other`'s fields (once), after these.
    pub fn merge(&mut self, other: &Dropped) {
        for field in &other.0 {
            self.push(field.clone());
        }
    }
    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The dropped members, in the order met.
    pub fn fields(&self) -> &[String] {
        &self.0
    }
    /// The `llm-integration-dropped` header value: the members joined by
    /// `, ` (`None` when nothing was dropped). A character a header value
    /// cannot carry as text (a control character, anything outside ASCII)
    /// is written as a JSON escape (`\u00e9`), so every name is shown.
    pub fn header_value(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        let mut out = String::new();
        for (i, field) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            for c in field.chars() {
                if c == ' ' || c.is_ascii_graphic() {
                    out.push(c);
                } else {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        Some(out)
    }
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// A whole answer translated into the client's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslatedAnswer {
    /// The client's JSON body.
    pub body: Vec<u8>,
    /// The answer's members that had no counterpart, as `answer.PATH`
    /// (`answer.content[].citations`), for the [`DROPPED_HEADER`].
    pub dropped: Dropped,
}

/// A translated request: the body for the upstream and what was learned
/// from the client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslatedRequest {
    /// The upstream's JSON body.
    pub body: Vec<u8>,
    /// The model named (as the client named it, `provider/` prefix removed).
    pub model: String,
    /// Whether the client asked for a stream (the upstream request streams
    /// exactly when the client's does).
    pub stream: bool,
    /// What had no counterpart.
    pub dropped: Dropped,
}

/// A streaming answer translator: fed the upstream's event-stream bytes in
/// any chunk split, it writes the client's event stream. The same input in
/// any split gives the same output.
pub trait StreamTranslator: Send {
    /// Feeds a chunk of the upstream's answer; appends what the client
    /// should receive now to `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>);
    /// The upstream's answer ended (cleanly or not): appends the closing
    /// events the client's API requires (an error event when the upstream
    /// stopped before its final event).
    fn finish(&mut self, out: &mut Vec<u8>);
}

/// Writes one server-sent event: `event: NAME` (when `event` is given) and
/// one `data:` line, then the blank line. `data` must not contain a line
/// break (compact JSON never does).
pub fn write_sse(out: &mut Vec<u8>, event: Option<&str>, data: &[u8]) {
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_lists_each_member_once_in_order() {
        let mut dropped = Dropped::default();
        assert_eq!(dropped.header_value(), None);
        dropped.push("top_k");
        dropped.push("metadata.user_id");
        dropped.push("top_k");
        assert_eq!(
            dropped.header_value().as_deref(),
            Some("top_k, metadata.user_id")
        );
    }

    #[test]
    fn dropped_names_are_header_safe() {
        let mut dropped = Dropped::default();
        dropped.push("caf\u{e9}");
        dropped.push("a\nb");
        dropped.push("\u{1f600}");
        let value = dropped.header_value().unwrap();
        assert_eq!(value, "caf\\u00e9, a\\u000ab, \\ud83d\\ude00");
        assert!(http::HeaderValue::from_str(&value).is_ok());
    }

    #[test]
    fn sse_events_are_framed_by_the_specification() {
        let mut out = Vec::new();
        write_sse(&mut out, Some("ping"), b"{}");
        write_sse(&mut out, None, b"[DONE]");
        assert_eq!(out, b"event: ping\ndata: {}\n\ndata: [DONE]\n\n");
    }
}
