//! The upstream plan: given a routing [`Forward`] decision, the request
//! head and (when read) its body, what to send to the provider and how to
//! treat its answer. Pure: the server executes the plan and moves bytes.
//!
//! The rules (each one a function of the decision and the request alone):
//!
//! - **URL**: the source's base URL (the provider's, or the ChatGPT
//!   backend's `/responses` for a `chatgpt` source) followed by the routed
//!   path and query.
//! - **Headers**: the client's, stripped by [`crate::headers`], with the
//!   credential injected by the provider's [`AuthScheme`]; a ChatGPT
//!   source also gets `originator` (unless the client sent one) and
//!   `accept: text/event-stream`.
//! - **Body**: the client's bytes, with these edits alone, each a byte
//!   splice ([`BodyEdits`]): the `model` without the `provider/` prefix
//!   the client named it with; for a streamed OpenAI Chat Completion or
//!   Completion whose client did not ask for usage,
//!   `stream_options.include_usage: true` (its usage chunk is then removed
//!   from the answer, [`ResponsePlan::strip_usage_chunk`]); for the ChatGPT
//!   backend (which accepts the Responses API as Codex sends it),
//!   `store: false`, `stream: true`, `instructions` (empty when absent)
//!   and no parameter outside [`CHATGPT_ACCEPTED`].
//! - **Metering facts**: the model, the output limit in any API's
//!   spelling, and whether the call produces output at all.
//! - **Translation** (a [`Forward`] whose [`Translation`] is not `None`):
//!   the client's body is translated into the upstream API's
//!   ([`crate::translate`]) and the rules above apply to the translated
//!   body (the `model` prefix, the usage request, the ChatGPT backend's
//!   reshaping, whose removed members are named dropped too); the answer
//!   is translated back by the plan's [`TranslationPlan`] after metering
//!   has read it. The headers of the client's API family
//!   (`anthropic-version`, `anthropic-beta`, `openai-beta`, …) do not
//!   cross; an Anthropic upstream gets `anthropic-version: 2023-06-01`.
//!
//! ```
//! use llm_integration_core::body::JsonObject;
//! use llm_integration_core::upstream::{plan, UpstreamTargets};
//! use llm_integration_core::{ConfigRecords, IntegrationConfig, IntegrationId, Owner, Router,
//!     RouteRequest, Snapshot, SnapshotOptions, User, UserId, Vm, VmId, Decision};
//!
//! let alice = UserId(1);
//! let records = ConfigRecords {
//!     users: vec![User::new(alice, "alice@example.com")],
//!     vms: vec![Vm::new(VmId(10), "devbox".parse()?, alice)],
//!     integrations: vec![IntegrationConfig::default_llm(IntegrationId(1), Owner::User(alice))],
//!     ..ConfigRecords::default()
//! };
//! let snapshot = Snapshot::build(records, SnapshotOptions::default());
//! let request = RouteRequest::new(Some(VmId(10)), "llm.int.exe.xyz", &http::Method::POST, "/v1/chat/completions");
//! let body = br#"{"model":"openai/gpt-5","stream":true,"messages":[]}"#;
//! let object = JsonObject::parse(body)?;
//! let Decision::Forward(forward) = snapshot.route_with_model(&request, object.str("model").as_deref())? else { panic!() };
//! let plan = plan(&forward, Some(&object), &UpstreamTargets::default())?;
//! assert_eq!(plan.url, "https://api.openai.com/v1/chat/completions");
//! assert_eq!(
//!     plan.body.apply(body),
//!     br#"{"model":"gpt-5","stream":true,"messages":[],"stream_options":{"include_usage":true}}"#.to_vec()
//! );
//! assert!(plan.response.strip_usage_chunk);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT};

use crate::answer::{expect_for, Expect};
use crate::body::{BodyEdits, JsonObject};
use crate::gateway_error::GatewayError;
use crate::headers::{inject_credential, strip_for_upstream, AuthScheme, Injected};
use crate::provider::{Dialect, PerProvider, Provider};
use crate::router::Forward;
use crate::source::{EndpointAuth, ProviderSource, Source};
use crate::translate::{self, AnswerTranslation, TranslateError, Translation};
use crate::wire::errors::ErrorClass;

/// Where each source's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTargets {
    /// Each provider's base URL (no trailing `/`), e.g. `https://api.openai.com`.
    pub base: PerProvider<String>,
    /// The ChatGPT (Codex) backend's base URL, e.g.
    /// `https://chatgpt.com/backend-api/codex`.
    pub chatgpt_backend: String,
}

impl Default for UpstreamTargets {
    fn default() -> Self {
        UpstreamTargets {
            base: PerProvider::from_fn(|p| p.default_base_url().to_owned()),
            chatgpt_backend: "https://chatgpt.com/backend-api/codex".to_owned(),
        }
    }
}

/// The Responses API parameters the ChatGPT backend accepts (it refuses
/// the others, such as `max_output_tokens` and `temperature`).
pub const CHATGPT_ACCEPTED: [&str; 14] = [
    "model",
    "instructions",
    "input",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "store",
    "stream",
    "include",
    "prompt_cache_key",
    "text",
    "client_metadata",
    "previous_response_id",
];

/// How to treat the provider's answer (see [`crate::relay`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePlan {
    /// The dialect of errors the gateway writes into the answer.
    pub dialect: Dialect,
    /// Remove the Chat Completions usage-only chunk (`choices: []` with a
    /// `usage` object), which the gateway asked for and the client did not.
    pub strip_usage_chunk: bool,
    /// The client did not stream but the upstream always does (the
    /// ChatGPT backend): answer the final `response` object as JSON.
    pub collect_response: bool,
    /// What a successful answer must be (see [`crate::answer`]); `None`
    /// for endpoints whose answers are not checked.
    pub expect: Option<Expect>,
}

/// What to send upstream and how to treat the answer.
#[derive(Debug, Clone)]
pub struct UpstreamPlan {
    /// The full upstream URL.
    pub url: String,
    /// The provider.
    pub provider: Provider,
    /// How the credential is sent.
    pub auth: AuthScheme,
    /// Headers set on top of the client's (after stripping).
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    /// Headers set only when the client sent none of that name.
    pub default_headers: Vec<(HeaderName, HeaderValue)>,
    /// Edits to the body (empty: relay it as received).
    pub body: BodyEdits,
    /// How to treat the answer.
    pub response: ResponsePlan,
    /// The model, as sent upstream (for metering and prices).
    pub model: Option<String>,
    /// The output limit the request states (`max_tokens`,
    /// `max_output_tokens` or `max_completion_tokens`), in tokens.
    pub max_output: Option<u64>,
    /// Whether the call can produce output tokens (embeddings,
    /// moderations and token counts produce none).
    pub produces_output: bool,
    /// Whether the provider charges for the call at all: token counts
    /// (Anthropic's `count_tokens`, OpenAI's `input_tokens`) and OpenAI's
    /// moderations are free, so they are recorded with no tokens and no
    /// cost, and nothing is held for them.
    pub charged: bool,
    /// How many answers the request asks for (`n`, or `best_of`).
    pub choices: Option<u64>,
    /// Client headers removed before sending (the other API family's).
    pub remove_headers: Vec<HeaderName>,
    /// The protocol translation: the upstream's whole body and how to
    /// translate the answer back (`None`: the request is forwarded in the
    /// client's API, with [`UpstreamPlan::body`]'s edits).
    pub translation: Option<TranslationPlan>,
}

/// A translated request's body and how its answer goes back.
#[derive(Debug, Clone)]
pub struct TranslationPlan {
    /// The upstream's body, whole (sent instead of the client's).
    pub body: Vec<u8>,
    /// How the answer is translated back; its `dropped` list is what the
    /// `llm-integration-dropped` response header names.
    pub answer: AnswerTranslation,
}

/// Headers of the Anthropic API family, which an OpenAI-family upstream
/// does not take.
const ANTHROPIC_HEADERS: [&str; 3] = [
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
];

/// Headers of the OpenAI API family, which Anthropic does not take.
const OPENAI_HEADERS: [&str; 3] = ["openai-beta", "openai-organization", "openai-project"];

impl UpstreamPlan {
    /// Turns the client's request headers into the upstream's, in place:
    /// strip ([`crate::headers::strip_for_upstream`]), set this plan's
    /// headers, inject `credential`.
    pub fn apply_headers(
        &self,
        headers: &mut HeaderMap,
        client_ip_header: Option<&HeaderName>,
        credential: Injected<'_>,
    ) {
        strip_for_upstream(headers, client_ip_header);
        for name in &self.remove_headers {
            headers.remove(name);
        }
        for (name, value) in &self.default_headers {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        for (name, value) in &self.set_headers {
            headers.insert(name.clone(), value.clone());
        }
        inject_credential(headers, &self.auth, credential);
    }
}

/// The path of `upstream_path`, without its query.
fn path_of(upstream_path: &str) -> &str {
    upstream_path.split('?').next().unwrap_or(upstream_path)
}

/// Whether the provider's answer to this path asks for its usage chunk
/// with `stream_options.include_usage` (OpenAI's streamed Chat
/// Completions and Completions).
fn asks_for_usage(provider: Provider, path: &str) -> bool {
    provider == Provider::OpenAi && matches!(path, "/v1/chat/completions" | "/v1/completions")
}

/// Whether a call to `path` can produce output tokens.
fn produces_output(path: &str) -> bool {
    !(path.ends_with("/embeddings")
        || path.ends_with("/moderations")
        || path.ends_with("/count_tokens")
        || path.ends_with("/input_tokens"))
}

/// Whether the provider charges for a call to `path` (see
/// [`UpstreamPlan::charged`]).
fn charged(path: &str) -> bool {
    !(path.ends_with("/count_tokens")
        || path.ends_with("/input_tokens")
        || path.ends_with("/moderations"))
}

/// Whether the plan for `forward` depends on the request body, so the
/// server must read it before planning: to meter a `gateway` source (its
/// output limit), to ask for a stream's usage, or to reshape a request
/// for the ChatGPT backend.
pub fn reads_body(forward: &Forward<'_>) -> bool {
    forward.translation.is_some()
        || forward.source.is_metered()
        || matches!(forward.source, Source::Chatgpt { .. })
        || asks_for_usage(forward.provider, path_of(&forward.upstream_path))
}

/// Whether a body of this route, once read, must be a JSON object the
/// gateway can read (the inference endpoints): such a body is never
/// forwarded unread, since the output limit, the usage request and the
/// metering depend on it. A body that is not one gets a 400.
pub fn requires_json(forward: &Forward<'_>) -> bool {
    crate::answer::expect_for(path_of(&forward.upstream_path), None, false).is_some()
}

/// Whether the request head asks for a WebSocket upgrade, which the
/// gateway refuses with [`GatewayError::websocket`].
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// A count a request states, read leniently (as providers that accept
/// loose types would): an integer, a number (rounded up), or a numeric
/// string; `None` for anything else or a negative.
fn count(body: &JsonObject<'_>, name: &str) -> Option<u64> {
    let v: serde_json::Value = body.get(name)?;
    let f = match &v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (f.is_finite() && f >= 0.0).then(|| f.ceil().min(u64::MAX as f64) as u64)
}

/// The output limit a request states, in any API's spelling (the largest,
/// when it states several).
pub fn max_output(body: &JsonObject<'_>) -> Option<u64> {
    ["max_tokens", "max_output_tokens", "max_completion_tokens"]
        .into_iter()
        .filter_map(|name| count(body, name))
        .max()
}

/// Plans the upstream request for `forward`. `body` is the request body
/// when it was read and is a JSON object (`None` otherwise: it is relayed
/// as received).
///
/// # Errors
/// A [`GatewayError`] when the request cannot go to this source: a
/// ChatGPT subscription serves `POST /v1/responses` only, with a JSON
/// object body; a translated request (400, in the client's dialect) whose
/// body is not its API's request or has a member the upstream's API cannot
/// express (the message names it).
pub fn plan(
    forward: &Forward<'_>,
    body: Option<&JsonObject<'_>>,
    targets: &UpstreamTargets,
) -> Result<UpstreamPlan, GatewayError> {
    if !forward.translation.is_some() {
        return plan_native(forward, body, targets);
    }
    let dialect = forward.dialect;
    let Some(client) = body else {
        return Err(GatewayError::new(
            dialect,
            ErrorClass::InvalidRequest,
            "invalid_json",
            "the request body must be a JSON object",
        ));
    };
    let translated = forward
        .translation
        .request(client.bytes())
        .map_err(|e| translate_error(dialect, &e))?;
    let object =
        JsonObject::parse(&translated.body).map_err(|e| GatewayError::invalid_body(dialect, &e))?;
    let mut plan = plan_native(forward, Some(&object), targets)?;
    let mut dropped = translated.dropped.clone();
    if matches!(forward.source, Source::Chatgpt { .. }) {
        for member in object.members() {
            if !CHATGPT_ACCEPTED.contains(&member.name.as_ref()) {
                dropped.push(client_member(&member.name));
            }
        }
    }
    let body = plan.body.apply(&translated.body);
    plan.body = BodyEdits::default();
    plan.set_headers.push((
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    let family_headers: &[&str] = match forward.translation {
        Translation::ChatToMessages | Translation::ResponsesToMessages => {
            plan.default_headers.push((
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static("2023-06-01"),
            ));
            &OPENAI_HEADERS
        }
        _ => &ANTHROPIC_HEADERS,
    };
    plan.remove_headers = family_headers
        .iter()
        .map(|name| HeaderName::from_static(name))
        .collect();
    let include_usage = forward.translation == Translation::ChatToMessages
        && translate::chat_to_messages::include_usage(client.bytes());
    plan.translation = Some(TranslationPlan {
        body,
        answer: AnswerTranslation {
            translation: forward.translation,
            model: translated.model,
            include_usage,
            dropped,
            created_at: 0,
            input_estimate: 0,
        },
    });
    Ok(plan)
}

/// A translated request's refusal: 400 in the client's dialect, naming the
/// member.
fn translate_error(dialect: Dialect, error: &TranslateError) -> GatewayError {
    let code = match error {
        TranslateError::InvalidBody(_) => "invalid_request",
        _ => "untranslatable_request",
    };
    GatewayError::new(dialect, ErrorClass::InvalidRequest, code, error.to_string())
}

/// The Anthropic client's name for a Responses member the ChatGPT backend
/// does not take (the member it was translated from).
fn client_member(responses_member: &str) -> String {
    match responses_member {
        "max_output_tokens" => "max_tokens".to_owned(),
        "safety_identifier" => "metadata.user_id".to_owned(),
        other => other.to_owned(),
    }
}

/// [`plan`] for a request in the upstream's own API (`body`: the body as
/// sent, or the translated body).
fn plan_native(
    forward: &Forward<'_>,
    body: Option<&JsonObject<'_>>,
    targets: &UpstreamTargets,
) -> Result<UpstreamPlan, GatewayError> {
    let provider = forward.provider;
    let dialect = forward.dialect;
    let path = path_of(&forward.upstream_path);
    let chatgpt = matches!(forward.source, Source::Chatgpt { .. });
    let mut edits = BodyEdits::default();
    let mut response = ResponsePlan {
        dialect,
        strip_usage_chunk: false,
        collect_response: false,
        expect: expect_for(path, body, chatgpt),
    };
    let mut set_headers = Vec::new();
    let mut default_headers = Vec::new();
    let model = forward
        .upstream_model
        .clone()
        .or_else(|| body.and_then(|b| b.str("model")).map(|m| m.into_owned()));
    if let (Some(body), Some(upstream_model)) = (body, &forward.upstream_model) {
        edits.set_string(body, "model", upstream_model);
    }
    let url = if chatgpt {
        if path != "/v1/responses" {
            return Err(GatewayError::new(
                dialect,
                ErrorClass::InvalidRequest,
                "unsupported_endpoint",
                format!(
                    "OpenAI on integration {} is a ChatGPT subscription, which serves the Responses API only \
(POST /v1/responses, as Codex uses it); for {path} use --openai=gateway or --openai=byok",
                    forward.integration.name
                ),
            ));
        }
        let Some(body) = body else {
            return Err(GatewayError::new(
                dialect,
                ErrorClass::InvalidRequest,
                "invalid_json",
                "the request body must be a JSON object (a Responses API request)",
            ));
        };
        response.collect_response = body.bool("stream") != Some(true);
        edits.remove_where(body, |name| !CHATGPT_ACCEPTED.contains(&name));
        edits.set_raw(body, "store", b"false");
        edits.set_raw(body, "stream", b"true");
        if body.raw("instructions").is_none() {
            edits.set_raw(body, "instructions", b"\"\"");
        }
        default_headers.push((
            HeaderName::from_static("originator"),
            HeaderValue::from_static("codex_cli_rs"),
        ));
        set_headers.push((ACCEPT, HeaderValue::from_static("text/event-stream")));
        format!("{}/responses", targets.chatgpt_backend)
    } else {
        if let Some(body) = body {
            if forward.source.is_metered()
                && path == "/v1/responses"
                && body.bool("background") == Some(true)
            {
                return Err(GatewayError::new(
                    dialect,
                    ErrorClass::InvalidRequest,
                    "unsupported_parameter",
                    format!(
                        "`background: true` cannot be metered on integration {}'s platform credential: a background response goes on generating after the request ends, where the gateway cannot read or charge it; send the request without `background` (stream it for long answers), or use your own key (--openai=byok)",
                        forward.integration.name
                    ),
                ));
            }
            if asks_for_usage(provider, path) && body.bool("stream") == Some(true) {
                let options = body
                    .object("stream_options")
                    .map_err(|e| GatewayError::invalid_body(dialect, &e))?;
                let absent = matches!(body.raw("stream_options"), None | Some(b"null"));
                match &options {
                    // The client asked for usage itself: it keeps the chunk.
                    Some(o) if o.bool("include_usage") == Some(true) => {}
                    Some(o) => {
                        edits.set_raw(o, "include_usage", b"true");
                        response.strip_usage_chunk = true;
                    }
                    None if absent => {
                        edits.set_raw(body, "stream_options", br#"{"include_usage":true}"#);
                        response.strip_usage_chunk = true;
                    }
                    // Not an object: the provider refuses the request as sent.
                    None => {}
                }
            }
        }
        if let Source::Custom { url, .. } = forward.source {
            // The provider's API path, without the provider's own prefix
            // (`/inference` for Fireworks), under the endpoint's base.
            let api_path = forward
                .upstream_path
                .strip_prefix(provider.upstream_prefix())
                .unwrap_or(&forward.upstream_path);
            url.join(api_path)
        } else {
            let base = &targets.base[provider];
            let mut url = String::with_capacity(base.len() + forward.upstream_path.len());
            url.push_str(base);
            url.push_str(&forward.upstream_path);
            url
        }
    };
    let auth = match (forward.source, provider) {
        (Source::Custom { auth, .. }, _) => {
            if provider == Provider::Anthropic {
                default_headers.push((
                    HeaderName::from_static("anthropic-version"),
                    HeaderValue::from_static("2023-06-01"),
                ));
            }
            match auth {
                EndpointAuth::None => AuthScheme::None,
                EndpointAuth::Bearer { .. } => AuthScheme::Bearer,
                EndpointAuth::Header { name, .. } => HeaderName::from_bytes(name.as_bytes())
                    .map(AuthScheme::Header)
                    .unwrap_or(AuthScheme::None),
            }
        }
        (_, Provider::Anthropic) => AuthScheme::XApiKey,
        (_, Provider::OpenAi | Provider::Fireworks) => AuthScheme::Bearer,
    };
    Ok(UpstreamPlan {
        url,
        provider,
        auth,
        set_headers,
        default_headers,
        body: edits,
        response,
        model,
        max_output: body.and_then(max_output),
        produces_output: produces_output(path),
        charged: charged(path),
        choices: body.and_then(|b| count(b, "n").max(count(b, "best_of"))),
        remove_headers: Vec::new(),
        translation: None,
    })
}
