//! The data plane's pure steps, pinned by tables and properties:
//!
//! - the upstream plan (URL, headers, the body's byte splices, metering
//!   facts and refusals) for a table of routes, sources and bodies;
//! - byte fidelity: random bodies keep every byte the gateway does not
//!   mean to change (checked against an oracle built with the body, and
//!   against `serde_json`'s own reading of the result);
//! - the response relay over recorded provider streams, re-framed with
//!   LF, CR, CRLF and mixed line ends: any split relays the same bytes and
//!   meters the same usage; only the usage-only chunk is ever dropped; the
//!   ChatGPT backend's answer is collected whatever the split;
//! - the event-stream framer's split-invariance over random streams.
#![allow(clippy::unwrap_used, missing_docs)]

use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use llm_integration_core::answer::Expect;
use llm_integration_core::body::JsonObject;
use llm_integration_core::headers::Injected;
use llm_integration_core::relay::{is_usage_only_chunk, ResponseRelay};
use llm_integration_core::seams::TokenUsage;
use llm_integration_core::sse::{SseEvent, SseFramer};
use llm_integration_core::upstream::{
    plan, reads_body, ResponsePlan, UpstreamPlan, UpstreamTargets, CHATGPT_ACCEPTED,
};
use llm_integration_core::{
    ConfigRecords, CredentialId, Decision, Dialect, EndpointAuth, GatewayError, IntegrationConfig,
    IntegrationId, IntegrationKind, KeyHint, LlmSettings, Owner, RouteRequest, Snapshot,
    SnapshotOptions, Source, User, UserId, Vm, VmId,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

// ---------------------------------------------------------------------------
// The configuration: one VM, three integrations.

const ALICE: UserId = UserId(1);
const DEVBOX: VmId = VmId(10);
/// Every provider on the platform's keys (metered).
const GATEWAY: &str = "llm.int.exe.xyz";
/// OpenAI through a ChatGPT subscription, the others on the platform's keys.
const CHATGPT: &str = "sub.int.exe.xyz";
/// Every provider on the owner's own keys (not metered).
const BYOK: &str = "keyed.int.exe.xyz";
/// Every provider on a custom endpoint.
const OWN: &str = "own.int.exe.xyz";

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let integration = |id: i64, name: &str, settings: LlmSettings| {
            let mut i = IntegrationConfig::default_llm(IntegrationId(id), Owner::User(ALICE));
            i.name = name.parse().unwrap();
            i.kind = IntegrationKind::Llm(settings);
            i
        };
        let byok = |c: i64| Source::Byok {
            credential: CredentialId(c),
            hint: KeyHint::from_last4(None),
        };
        let records = ConfigRecords {
            users: vec![User::new(ALICE, "alice@example.com")],
            vms: vec![Vm::new(DEVBOX, "devbox".parse().unwrap(), ALICE)],
            integrations: vec![
                integration(1, "llm", LlmSettings::all_gateway()),
                integration(
                    2,
                    "sub",
                    LlmSettings {
                        anthropic: Source::Gateway,
                        openai: Source::Chatgpt {
                            account: "work".parse().unwrap(),
                        },
                        fireworks: Source::Gateway,
                        translate: true,
                    },
                ),
                integration(
                    3,
                    "keyed",
                    LlmSettings {
                        anthropic: byok(1),
                        openai: byok(2),
                        fireworks: byok(3),
                        translate: true,
                    },
                ),
                integration(
                    4,
                    "own",
                    LlmSettings {
                        anthropic: Source::Custom {
                            url: "https://gw.example.com/anthropic".parse().unwrap(),
                            auth: EndpointAuth::Header {
                                name: "x-team-key".into(),
                                credential: CredentialId(4),
                                hint: KeyHint::from_last4(None),
                            },
                        },
                        openai: Source::Custom {
                            url: "https://models.example.com/v1".parse().unwrap(),
                            auth: EndpointAuth::Bearer {
                                credential: CredentialId(5),
                                hint: KeyHint::from_last4(None),
                            },
                        },
                        fireworks: Source::Custom {
                            url: "https://fw.example.com:8443/inference".parse().unwrap(),
                            auth: EndpointAuth::None,
                        },
                        translate: true,
                    },
                ),
            ],
            ..ConfigRecords::default()
        };
        Snapshot::build(records, SnapshotOptions::default())
    })
}

/// Routes a `POST` of `body` to `target` on `host` (routing on the body's
/// `model`) and plans it; with `reads_body` of the decision.
fn plan_for(host: &str, target: &str, body: &[u8]) -> (Result<UpstreamPlan, GatewayError>, bool) {
    let object = JsonObject::parse(body).ok();
    let model = object.as_ref().and_then(|o| o.str("model"));
    let request = RouteRequest::new(Some(DEVBOX), host, &Method::POST, target);
    let decision = snapshot().route_with_model(&request, model.as_deref());
    let Ok(Decision::Forward(forward)) = decision else {
        panic!("{host}{target}: not forwarded: {decision:?}");
    };
    let planned = plan(&forward, object.as_ref(), &UpstreamTargets::default());
    (planned, reads_body(&forward))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------
// 1. The upstream plan, row by row.

/// What a plan must be.
struct Want {
    url: &'static str,
    /// The exact bytes sent upstream (`plan.body.apply(body)`).
    body: &'static str,
    strip: bool,
    collect: bool,
    max_output: Option<u64>,
    produces_output: bool,
    model: Option<&'static str>,
    reads_body: bool,
    expect: Option<Expect>,
}

/// A streamed OpenAI Chat Completion on the platform's keys.
const CHAT: Want = Want {
    url: "https://api.openai.com/v1/chat/completions",
    body: "",
    strip: true,
    collect: false,
    max_output: None,
    produces_output: true,
    model: Some("gpt-5"),
    reads_body: true,
    expect: Some(Expect::EventStream),
};

/// A request to the ChatGPT backend.
const CODEX: Want = Want {
    url: "https://chatgpt.com/backend-api/codex/responses",
    body: "",
    strip: false,
    collect: false,
    max_output: None,
    produces_output: true,
    model: Some("gpt-5.1-codex"),
    reads_body: true,
    expect: Some(Expect::EventStream),
};

/// Every byte but the model's: key order, big and long numbers, escapes,
/// raw UTF-8, CR/LF/tab whitespace inside and around the object.
const ANTHROPIC_IN: &str = concat!(
    "\n\t{ ",
    r#""system" : [{"type":"text","text":"caf\u00e9 \ud83d\ude00 \"q\" \\ \/ é😀","cache_control":{"type":"ephemeral"}}],"#,
    "\r\n  ",
    r#""model"  :"#,
    "\t",
    r#""anthropic/claude-sonnet-4-6" ,"#,
    r#""max_tokens":1024, "big":12345678901234567890123,"ts":1796084580.8767915 ,"e":-1.5E-300,"#,
    "\n",
    r#""messages":[ {"role":"user","content":"h\u0069"} ] , "stream":true,"temperature":1.0,"#,
    r#""metadata":{"user_id":"u-1","z":{"b":1,"a":2}}"#,
    " }\r\n",
);
const ANTHROPIC_OUT: &str = concat!(
    "\n\t{ ",
    r#""system" : [{"type":"text","text":"caf\u00e9 \ud83d\ude00 \"q\" \\ \/ é😀","cache_control":{"type":"ephemeral"}}],"#,
    "\r\n  ",
    r#""model"  :"#,
    "\t",
    r#""claude-sonnet-4-6" ,"#,
    r#""max_tokens":1024, "big":12345678901234567890123,"ts":1796084580.8767915 ,"e":-1.5E-300,"#,
    "\n",
    r#""messages":[ {"role":"user","content":"h\u0069"} ] , "stream":true,"temperature":1.0,"#,
    r#""metadata":{"user_id":"u-1","z":{"b":1,"a":2}}"#,
    " }\r\n",
);

type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Result<Want, &'static str>,
);

fn plan_rows() -> Vec<Row> {
    vec![
        (
            "anthropic/ prefix removed, every other byte kept",
            GATEWAY,
            "/v1/messages",
            ANTHROPIC_IN,
            Ok(Want {
                url: "https://api.anthropic.com/v1/messages",
                body: ANTHROPIC_OUT,
                strip: false,
                max_output: Some(1024),
                model: Some("claude-sonnet-4-6"),
                ..CHAT
            }),
        ),
        (
            "a Fireworks model on the Messages API",
            GATEWAY,
            "/v1/messages",
            r#"{"model":"fireworks/glm-4p6","max_tokens":3,"stream":true}"#,
            Ok(Want {
                url: "https://api.fireworks.ai/inference/v1/messages",
                body: r#"{"model":"accounts/fireworks/models/glm-4p6","max_tokens":3,"stream":true}"#,
                strip: false,
                max_output: Some(3),
                model: Some("accounts/fireworks/models/glm-4p6"),
                ..CHAT
            }),
        ),
        (
            "the query is kept",
            GATEWAY,
            "/v1/messages?beta=true",
            r#"{"model":"claude-opus-4-6","max_tokens":5}"#,
            Ok(Want {
                url: "https://api.anthropic.com/v1/messages?beta=true",
                body: r#"{"model":"claude-opus-4-6","max_tokens":5}"#,
                strip: false,
                max_output: Some(5),
                model: Some("claude-opus-4-6"),
                expect: Some(Expect::Json),
                ..CHAT
            }),
        ),
        (
            "openai/ prefix removed, usage asked for at the end",
            GATEWAY,
            "/v1/chat/completions",
            r#"{"model":"openai/gpt-5", "stream": true, "messages": [] }"#,
            Ok(Want {
                body: r#"{"model":"gpt-5", "stream": true, "messages": [] ,"stream_options":{"include_usage":true}}"#,
                ..CHAT
            }),
        ),
        (
            "escaped member name and model value",
            GATEWAY,
            "/v1/chat/completions",
            r#"{"m\u006fdel":"openai\/gpt-5","str\u0065am":true}"#,
            Ok(Want {
                body: r#"{"m\u006fdel":"gpt-5","str\u0065am":true,"stream_options":{"include_usage":true}}"#,
                ..CHAT
            }),
        ),
        (
            "include_usage false is turned true in place",
            GATEWAY,
            "/v1/chat/completions",
            r#"{"model":"gpt-5","stream":true,"stream_options": {"include_usage": false},"max_tokens":12}"#,
            Ok(Want {
                body: r#"{"model":"gpt-5","stream":true,"stream_options": {"include_usage": true},"max_tokens":12}"#,
                max_output: Some(12),
                ..CHAT
            }),
        ),
        (
            "stream_options null is replaced",
            GATEWAY,
            "/v1/chat/completions",
            r#"{"stream":true,"stream_options":null,"model":"gpt-5"}"#,
            Ok(Want {
                body: r#"{"stream":true,"stream_options":{"include_usage":true},"model":"gpt-5"}"#,
                ..CHAT
            }),
        ),
        (
            "empty stream_options gets the member",
            GATEWAY,
            "/v1/chat/completions",
            r#"{"model":"gpt-5","stream":true,"stream_options":{ }}"#,
            Ok(Want {
                body: r#"{"model":"gpt-5","stream":true,"stream_options":{ "include_usage":true}}"#,
                ..CHAT
            }),
        ),
        (
            "stream_options with another member gets it after",
            GATEWAY,
            "/v1/chat/completions",
            r#"{"model":"gpt-5","stream":true,"stream_options":{"continuous_usage_stats":false}}"#,
            Ok(Want {
                body: r#"{"model":"gpt-5","stream":true,"stream_options":{"continuous_usage_stats":false,"include_usage":true}}"#,
                ..CHAT
            }),
        ),
        (
            "the client asked for usage: nothing to do",
            GATEWAY,
            "/v1/chat/completions",
            r#"{"model":"gpt-5","stream":true,"stream_options":{"include_usage":true}}"#,
            Ok(Want {
                body: r#"{"model":"gpt-5","stream":true,"stream_options":{"include_usage":true}}"#,
                strip: false,
                ..CHAT
            }),
        ),
        (
            "non-streamed chat: no edit",
            GATEWAY,
            "/v1/chat/completions",
            r#"{"model":"gpt-5","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":77}"#,
            Ok(Want {
                body: r#"{"model":"gpt-5","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":77}"#,
                strip: false,
                max_output: Some(77),
                expect: Some(Expect::Json),
                ..CHAT
            }),
        ),
        (
            "stream false: only the model",
            GATEWAY,
            "/v1/chat/completions",
            r#"{"model":"openai/gpt-5","stream":false}"#,
            Ok(Want {
                body: r#"{"model":"gpt-5","stream":false}"#,
                strip: false,
                expect: Some(Expect::Json),
                ..CHAT
            }),
        ),
        (
            "stream as a string is not a stream",
            GATEWAY,
            "/v1/chat/completions",
            r#"{"model":"gpt-5","stream":"true"}"#,
            Ok(Want {
                body: r#"{"model":"gpt-5","stream":"true"}"#,
                strip: false,
                expect: Some(Expect::Json),
                ..CHAT
            }),
        ),
        (
            "streamed completions ask for usage too",
            GATEWAY,
            "/v1/completions",
            r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":7,"stream":true}"#,
            Ok(Want {
                url: "https://api.openai.com/v1/completions",
                body: r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":7,"stream":true,"stream_options":{"include_usage":true}}"#,
                max_output: Some(7),
                model: Some("gpt-3.5-turbo-instruct"),
                ..CHAT
            }),
        ),
        (
            "non-streamed completions: no edit",
            GATEWAY,
            "/v1/completions",
            r#"{"model":"gpt-3.5-turbo-instruct","prompt":"x"}"#,
            Ok(Want {
                url: "https://api.openai.com/v1/completions",
                body: r#"{"model":"gpt-3.5-turbo-instruct","prompt":"x"}"#,
                strip: false,
                model: Some("gpt-3.5-turbo-instruct"),
                expect: Some(Expect::Json),
                ..CHAT
            }),
        ),
        (
            "Fireworks streams its usage unasked: no usage edit",
            GATEWAY,
            "/v1/chat/completions",
            r#"{"model":"accounts/fireworks/models/kimi-k2-instruct","stream":true,"messages":[]}"#,
            Ok(Want {
                url: "https://api.fireworks.ai/inference/v1/chat/completions",
                body: r#"{"model":"accounts/fireworks/models/kimi-k2-instruct","stream":true,"messages":[]}"#,
                strip: false,
                model: Some("accounts/fireworks/models/kimi-k2-instruct"),
                ..CHAT
            }),
        ),
        (
            "fireworks/ prefix becomes the resource name",
            GATEWAY,
            "/v1/chat/completions",
            r#"{"model":"fireworks/kimi-k2-instruct","stream":true,"stream_options":{"include_usage":false}}"#,
            Ok(Want {
                url: "https://api.fireworks.ai/inference/v1/chat/completions",
                body: r#"{"model":"accounts/fireworks/models/kimi-k2-instruct","stream":true,"stream_options":{"include_usage":false}}"#,
                strip: false,
                model: Some("accounts/fireworks/models/kimi-k2-instruct"),
                ..CHAT
            }),
        ),
        (
            "a custom OpenAI endpoint given as its SDK base (`…/v1`): no `/v1/v1`",
            OWN,
            "/v1/chat/completions",
            r#"{"model":"gpt-5","stream":true}"#,
            Ok(Want {
                url: "https://models.example.com/v1/chat/completions",
                body: r#"{"model":"gpt-5","stream":true,"stream_options":{"include_usage":true}}"#,
                ..CHAT
            }),
        ),
        (
            "a custom Anthropic endpoint under a path prefix, the query kept",
            OWN,
            "/v1/messages?beta=true",
            r#"{"model":"claude-opus-4-6","max_tokens":5}"#,
            Ok(Want {
                url: "https://gw.example.com/anthropic/v1/messages?beta=true",
                body: r#"{"model":"claude-opus-4-6","max_tokens":5}"#,
                strip: false,
                max_output: Some(5),
                model: Some("claude-opus-4-6"),
                expect: Some(Expect::Json),
                reads_body: false,
                ..CHAT
            }),
        ),
        (
            "a custom Fireworks endpoint: the API path without Fireworks' own prefix",
            OWN,
            "/fireworks/inference/v1/chat/completions",
            r#"{"model":"accounts/fireworks/models/x","max_tokens":9}"#,
            Ok(Want {
                url: "https://fw.example.com:8443/inference/v1/chat/completions",
                body: r#"{"model":"accounts/fireworks/models/x","max_tokens":9}"#,
                strip: false,
                max_output: Some(9),
                model: Some("accounts/fireworks/models/x"),
                reads_body: false,
                expect: Some(Expect::Json),
                ..CHAT
            }),
        ),
        (
            "Fireworks by its prefixed path, own key: body not needed",
            BYOK,
            "/fireworks/inference/v1/chat/completions",
            r#"{"model":"accounts/fireworks/models/x","stream":true,"max_tokens":9}"#,
            Ok(Want {
                url: "https://api.fireworks.ai/inference/v1/chat/completions",
                body: r#"{"model":"accounts/fireworks/models/x","stream":true,"max_tokens":9}"#,
                strip: false,
                max_output: Some(9),
                model: Some("accounts/fireworks/models/x"),
                reads_body: false,
                ..CHAT
            }),
        ),
        (
            "own OpenAI key: the body is read to ask for usage",
            BYOK,
            "/v1/chat/completions",
            r#"{"model":"gpt-5","stream":true}"#,
            Ok(Want {
                body: r#"{"model":"gpt-5","stream":true,"stream_options":{"include_usage":true}}"#,
                ..CHAT
            }),
        ),
        (
            "own Anthropic key: the body is not needed",
            BYOK,
            "/v1/messages",
            r#"{"model":"claude-opus-4-6","max_tokens":5}"#,
            Ok(Want {
                url: "https://api.anthropic.com/v1/messages",
                body: r#"{"model":"claude-opus-4-6","max_tokens":5}"#,
                strip: false,
                max_output: Some(5),
                model: Some("claude-opus-4-6"),
                reads_body: false,
                expect: Some(Expect::Json),
                ..CHAT
            }),
        ),
        (
            "embeddings produce no output",
            GATEWAY,
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"x"}"#,
            Ok(Want {
                url: "https://api.openai.com/v1/embeddings",
                body: r#"{"model":"text-embedding-3-small","input":"x"}"#,
                strip: false,
                produces_output: false,
                model: Some("text-embedding-3-small"),
                expect: Some(Expect::Json),
                ..CHAT
            }),
        ),
        (
            "token counts produce no output",
            GATEWAY,
            "/v1/messages/count_tokens",
            r#"{"model":"anthropic/claude-sonnet-4-6","messages":[]}"#,
            Ok(Want {
                url: "https://api.anthropic.com/v1/messages/count_tokens",
                body: r#"{"model":"claude-sonnet-4-6","messages":[]}"#,
                strip: false,
                produces_output: false,
                model: Some("claude-sonnet-4-6"),
                expect: Some(Expect::Json),
                ..CHAT
            }),
        ),
        (
            "Responses on the platform's keys: only the model",
            GATEWAY,
            "/v1/responses",
            r#"{"model":"openai/gpt-5","stream":true,"max_output_tokens":50}"#,
            Ok(Want {
                url: "https://api.openai.com/v1/responses",
                body: r#"{"model":"gpt-5","stream":true,"max_output_tokens":50}"#,
                strip: false,
                max_output: Some(50),
                ..CHAT
            }),
        ),
        (
            "ChatGPT, streamed: refused members removed, store added",
            CHATGPT,
            "/v1/responses",
            r#"{"model":"gpt-5.1-codex","instructions":"You are Codex.","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}],"temperature":0.2,"max_output_tokens":100,"stream":true,"prompt_cache_key":"abc"}"#,
            Ok(Want {
                body: r#"{"model":"gpt-5.1-codex","instructions":"You are Codex.","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}],"stream":true,"prompt_cache_key":"abc","store":false}"#,
                max_output: Some(100),
                ..CODEX
            }),
        ),
        (
            "ChatGPT, not streamed: first member removed, prefix removed, collected",
            CHATGPT,
            "/v1/responses",
            r#"{ "temperature" : 1 , "model":"chatgpt/gpt-5.1-codex","input":"hi","store":true }"#,
            Ok(Want {
                body: r#"{ "model":"gpt-5.1-codex","input":"hi","store":false ,"stream":true,"instructions":""}"#,
                collect: true,
                ..CODEX
            }),
        ),
        (
            "ChatGPT: all but the model removed",
            CHATGPT,
            "/v1/responses",
            r#"{"metadata":{"a":"b"},"model":"gpt-5.1-codex","user":"u"}"#,
            Ok(Want {
                body: r#"{"model":"gpt-5.1-codex","store":false,"stream":true,"instructions":""}"#,
                collect: true,
                ..CODEX
            }),
        ),
        (
            "ChatGPT: stream false is made true and collected",
            CHATGPT,
            "/v1/responses",
            r#"{"model":"gpt-5.1-codex","input":"hi","stream":false}"#,
            Ok(Want {
                body: r#"{"model":"gpt-5.1-codex","input":"hi","stream":true,"store":false,"instructions":""}"#,
                collect: true,
                ..CODEX
            }),
        ),
        (
            "ChatGPT: every accepted member kept as sent",
            CHATGPT,
            "/v1/responses",
            r#"{"include":["reasoning.encrypted_content"],"tools":[],"tool_choice":"auto","parallel_tool_calls":false,"reasoning":{"effort":"high","summary":"auto"},"text":{"verbosity":"low"},"client_metadata":{"k":"v"},"previous_response_id":null,"stream_options":{"include_usage":true},"m\u006fdel":"gpt-5.1-codex","stream":true}"#,
            Ok(Want {
                body: r#"{"include":["reasoning.encrypted_content"],"tools":[],"tool_choice":"auto","parallel_tool_calls":false,"reasoning":{"effort":"high","summary":"auto"},"text":{"verbosity":"low"},"client_metadata":{"k":"v"},"previous_response_id":null,"m\u006fdel":"gpt-5.1-codex","stream":true,"store":false,"instructions":""}"#,
                ..CODEX
            }),
        ),
        (
            "ChatGPT by the prefixed path, no model: everything removed",
            CHATGPT,
            "/openai/v1/responses",
            "{ \"temperature\":1,\n\"top_p\":0.5 }",
            Ok(Want {
                body: "{ \"store\":false,\"stream\":true,\"instructions\":\"\"}",
                collect: true,
                model: None,
                ..CODEX
            }),
        ),
        (
            "ChatGPT, an empty object",
            CHATGPT,
            "/openai/v1/responses",
            "\t{ } ",
            Ok(Want {
                body: "\t{ \"store\":false,\"stream\":true,\"instructions\":\"\"} ",
                collect: true,
                model: None,
                ..CODEX
            }),
        ),
        (
            "ChatGPT serves no Chat Completions",
            CHATGPT,
            "/v1/chat/completions",
            r#"{"model":"gpt-5","stream":true}"#,
            Err("unsupported_endpoint"),
        ),
        (
            "ChatGPT serves no embeddings",
            CHATGPT,
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"x"}"#,
            Err("unsupported_endpoint"),
        ),
        (
            "ChatGPT serves no token counts",
            CHATGPT,
            "/v1/responses/input_tokens",
            r#"{"model":"gpt-5","input":"x"}"#,
            Err("unsupported_endpoint"),
        ),
        (
            "ChatGPT needs a JSON body",
            CHATGPT,
            "/openai/v1/responses",
            "model=gpt-5",
            Err("invalid_json"),
        ),
        (
            "ChatGPT needs a JSON object",
            CHATGPT,
            "/openai/v1/responses",
            r#"[{"model":"gpt-5"}]"#,
            Err("invalid_json"),
        ),
    ]
}

#[test]
fn upstream_plan_table() {
    for (name, host, target, body, want) in plan_rows() {
        let (planned, reads) = plan_for(host, target, body.as_bytes());
        match (planned, want) {
            (Ok(p), Ok(w)) => {
                assert_eq!(p.url, w.url, "{name}: url");
                assert_eq!(
                    text(&p.body.apply(body.as_bytes())),
                    w.body,
                    "{name}: upstream body"
                );
                assert_eq!(p.body.is_empty(), body == w.body, "{name}: edits");
                assert_eq!(p.response.strip_usage_chunk, w.strip, "{name}: strip");
                assert_eq!(p.response.collect_response, w.collect, "{name}: collect");
                assert_eq!(p.response.expect, w.expect, "{name}: expect");
                assert_eq!(p.max_output, w.max_output, "{name}: max_output");
                assert_eq!(p.produces_output, w.produces_output, "{name}: output");
                assert_eq!(p.model.as_deref(), w.model, "{name}: model");
                assert_eq!(reads, w.reads_body, "{name}: reads_body");
                // Whatever the edits, the result is one JSON object.
                members_of(&p.body.apply(body.as_bytes()));
            }
            (Err(e), Err(code)) => {
                assert_eq!(e.code, code, "{name}: {e:?}");
                assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{name}");
                assert_eq!(e.dialect, Dialect::OpenAi, "{name}");
                assert!(!e.retryable, "{name}");
                if code == "unsupported_endpoint" {
                    assert!(e.message.contains("integration sub"), "{name}: {e}");
                    let path = target.split('?').next().unwrap();
                    assert!(e.message.contains(path), "{name}: {e}");
                }
            }
            (Ok(p), Err(code)) => panic!("{name}: planned {} where {code} was due", p.url),
            (Err(e), Ok(_)) => panic!("{name}: refused {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// 1b. Headers.

const CLIENT_HEADERS: [(&str, &str); 28] = [
    ("authorization", "Bearer implicit-vm-key"),
    ("x-api-key", "implicit"),
    ("api-key", "implicit"),
    ("cookie", "session=1"),
    ("chatgpt-account-id", "client-account"),
    ("openai-organization", "org-client"),
    ("openai-project", "proj-client"),
    ("anthropic-workspace-id", "ws-client"),
    ("x-goog-api-key", "g"),
    ("proxy-authorization", "Basic eDp5"),
    ("x-forwarded-for", "10.1.2.3"),
    ("x-real-ip", "10.1.2.3"),
    ("forwarded", "for=10.1.2.3"),
    ("via", "1.1 proxy"),
    ("x-exedev-source-vm", "other-vm"),
    ("host", "llm.int.exe.xyz"),
    ("content-length", "42"),
    ("connection", "keep-alive, x-hop"),
    ("x-hop", "1"),
    ("keep-alive", "timeout=5"),
    ("te", "trailers"),
    ("x-front-ip", "10.0.0.1"),
    ("accept-encoding", "gzip, br"),
    ("accept", "application/json"),
    ("anthropic-beta", "prompt-caching-2024-07-31"),
    ("openai-beta", "responses=v1"),
    ("user-agent", "codex_cli_rs/0.50.0"),
    ("session_id", "s-1"),
];

/// Client headers that never reach a provider.
const NEVER_SENT: [&str; 21] = [
    "api-key",
    "cookie",
    "openai-organization",
    "openai-project",
    "anthropic-workspace-id",
    "x-goog-api-key",
    "proxy-authorization",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "via",
    "x-exedev-source-vm",
    "host",
    "content-length",
    "connection",
    "x-hop",
    "keep-alive",
    "te",
    "x-front-ip",
    "transfer-encoding",
    "upgrade",
];

/// Client headers that always reach it.
const ALWAYS_SENT: [(&str, &str); 5] = [
    ("anthropic-beta", "prompt-caching-2024-07-31"),
    ("openai-beta", "responses=v1"),
    ("user-agent", "codex_cli_rs/0.50.0"),
    ("session_id", "s-1"),
    ("accept-encoding", "identity"),
];

type HeaderRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

#[test]
fn headers_strip_the_client_and_inject_per_provider() {
    let rows: [HeaderRow; 6] = [
        (
            GATEWAY,
            "/v1/messages",
            r#"{"model":"claude-sonnet-4-6","max_tokens":1}"#,
            &[],
            None,
            &[
                ("x-api-key", "sk-platform"),
                ("anthropic-version", "2023-06-01"),
                ("accept", "application/json"),
            ],
            &["authorization", "chatgpt-account-id", "originator"],
        ),
        (
            GATEWAY,
            "/v1/messages",
            r#"{"model":"claude-sonnet-4-6","max_tokens":1}"#,
            &[("anthropic-version", "2023-01-01")],
            None,
            &[
                ("x-api-key", "sk-platform"),
                ("anthropic-version", "2023-01-01"),
            ],
            &["authorization"],
        ),
        (
            GATEWAY,
            "/v1/chat/completions",
            r#"{"model":"gpt-5"}"#,
            &[],
            None,
            &[
                ("authorization", "Bearer sk-platform"),
                ("accept", "application/json"),
            ],
            &[
                "x-api-key",
                "anthropic-version",
                "chatgpt-account-id",
                "originator",
            ],
        ),
        (
            BYOK,
            "/v1/chat/completions",
            r#"{"model":"accounts/fireworks/models/x"}"#,
            &[],
            None,
            &[("authorization", "Bearer sk-platform")],
            &["x-api-key", "anthropic-version", "chatgpt-account-id"],
        ),
        (
            CHATGPT,
            "/v1/responses",
            r#"{"model":"gpt-5.1-codex","input":"hi"}"#,
            &[],
            Some("acct-123"),
            &[
                ("authorization", "Bearer sk-platform"),
                ("chatgpt-account-id", "acct-123"),
                ("originator", "codex_cli_rs"),
                ("accept", "text/event-stream"),
            ],
            &["x-api-key", "anthropic-version"],
        ),
        (
            CHATGPT,
            "/v1/responses",
            r#"{"model":"gpt-5.1-codex","input":"hi"}"#,
            &[("originator", "codex_vscode")],
            Some("acct-123"),
            &[
                ("originator", "codex_vscode"),
                ("accept", "text/event-stream"),
            ],
            &["x-api-key"],
        ),
    ];
    let front = HeaderName::from_static("x-front-ip");
    for (host, target, body, extra, account, set, absent) in rows {
        let (planned, _) = plan_for(host, target, body.as_bytes());
        let p = planned.unwrap();
        let mut h = HeaderMap::new();
        for &(k, v) in CLIENT_HEADERS.iter().chain(extra) {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        p.apply_headers(
            &mut h,
            Some(&front),
            Injected {
                secret: "sk-platform",
                account_id: account,
            },
        );
        let case = format!("{host}{target} {extra:?}");
        for (name, value) in set.iter().chain(&ALWAYS_SENT) {
            let all: Vec<_> = h.get_all(*name).iter().collect();
            assert_eq!(all, [*value], "{case}: {name}");
        }
        for name in absent.iter().chain(&NEVER_SENT) {
            assert!(h.get(*name).is_none(), "{case}: {name} was sent");
        }
        for secret in ["authorization", "x-api-key"] {
            if let Some(v) = h.get(secret) {
                assert!(v.is_sensitive(), "{case}: {secret} not marked sensitive");
            }
        }
        // Nothing the client sent as a credential survives, under any name.
        for v in h.values() {
            let v = v.to_str().unwrap_or("");
            assert!(
                !v.contains("implicit") && !v.contains("client"),
                "{case}: {v}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Byte fidelity of edited bodies, over random bodies.

/// A JSON object's members in order, each value as raw text, read by
/// `serde_json` alone (an independent check of the gateway's span finder).
struct Ordered<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Ordered<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Ordered<'de>, M::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    out.push((name, map.next_value::<&'de RawValue>()?));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The members of the JSON object `bytes` (decoded name, raw value);
/// panics when `bytes` is not exactly one JSON object.
fn members_of(bytes: &[u8]) -> Vec<(String, String)> {
    let o: Ordered<'_> = serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not a JSON object ({e}): {}", text(bytes)));
    o.0.into_iter()
        .map(|(n, r)| (n, r.get().to_owned()))
        .collect()
}

const WS: [&str; 4] = [" ", "\t", "\n", "\r"];

/// JSON whitespace, most often none.
fn ws() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        1 => prop::collection::vec(prop::sample::select(&WS[..]), 1..4).prop_map(|v| v.concat()),
    ]
}

const ESCAPES: [&str; 13] = [
    r#"\""#,
    r"\\",
    r"\/",
    r"\b",
    r"\f",
    r"\n",
    r"\r",
    r"\t",
    r"\u00e9",
    r"\u00E9",
    r"\ud83d\ude00",
    r"\u0000",
    r"\ud800",
];
const UNICODE: [&str; 5] = ["é", "😀", "日本", "\u{2028}", "\u{7f}"];

fn json_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9 ,:{}\\[\\]]{1,6}",
        prop::sample::select(&ESCAPES[..]).prop_map(str::to_owned),
        prop::sample::select(&UNICODE[..]).prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..5).prop_map(|v| format!("\"{}\"", v.concat()))
}

const NUMBERS: [&str; 11] = [
    "12345678901234567890123",
    "1796084580.8767915",
    "-0",
    "0.1",
    "1.0",
    "1e400",
    "-1.5E-300",
    "18446744073709551616",
    "9007199254740993",
    "0.30000000000000004",
    "100",
];

fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&NUMBERS[..]).prop_map(str::to_owned),
        "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
    ]
}

/// Any JSON value, with random whitespace between its tokens.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        json_string(),
        json_number(),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("null".to_owned()),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (
                ws(),
                prop::collection::vec((ws(), inner.clone(), ws()), 0..4)
            )
                .prop_map(|(empty, items)| {
                    if items.is_empty() {
                        return format!("[{empty}]");
                    }
                    let items: Vec<String> =
                        items.into_iter().map(|(a, v, b)| a + &v + &b).collect();
                    format!("[{}]", items.join(","))
                }),
            (
                ws(),
                prop::collection::vec((ws(), json_string(), ws(), ws(), inner, ws()), 0..4)
            )
                .prop_map(|(empty, items)| {
                    if items.is_empty() {
                        return format!("{{{empty}}}");
                    }
                    let items: Vec<String> = items
                        .into_iter()
                        .map(|(a, k, b, c, v, d)| format!("{a}{k}{b}:{c}{v}{d}"))
                        .collect();
                    format!("{{{}}}", items.join(","))
                }),
        ]
    })
}

/// A generated member: its decoded name, its raw name (quoted, maybe with
/// escapes), the whitespace before the name, before and after the colon
/// and after the value, and its raw value.
#[derive(Debug, Clone)]
struct Gen {
    name: String,
    key: String,
    ws: [String; 4],
    value: String,
}

impl Gen {
    fn new(name: &str, key: String, ws: [String; 4], value: String) -> Self {
        Gen {
            name: name.to_owned(),
            key,
            ws,
            value,
        }
    }
}

fn ws4() -> impl Strategy<Value = [String; 4]> {
    (ws(), ws(), ws(), ws()).prop_map(|(a, b, c, d)| [a, b, c, d])
}

/// `name` as a JSON string, the character at `escape` (if any) written
/// as a `\u` escape.
fn spell(name: &str, escape: Option<Index>) -> String {
    let at = escape.map(|i| i.index(name.len()));
    let mut out = String::from("\"");
    for (i, c) in name.chars().enumerate() {
        if Some(i) == at {
            out += &format!("\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// Members with distinct names `PREFIX_i`, some spelt with an escape.
fn plain_members(max: usize) -> impl Strategy<Value = Vec<Gen>> {
    prop::collection::vec(
        (
            "[a-z]{1,6}",
            prop::option::of(any::<Index>()),
            ws4(),
            json_value(),
        ),
        0..max,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, (prefix, escape, ws, value))| {
                let name = format!("{prefix}_{i}");
                let key = spell(&name, escape);
                Gen::new(&name, key, ws, value)
            })
            .collect()
    })
}

/// An object's text, and where each member's value and whole text (name
/// to value) are, in the text.
struct Rendered {
    text: String,
    values: Vec<Range<usize>>,
    members: Vec<Range<usize>>,
    /// Where the closing brace is.
    close: usize,
}

fn render(lead: &str, members: &[Gen], empty: &str, trail: &str) -> Rendered {
    let mut text = String::from(lead);
    text.push('{');
    let mut values = Vec::new();
    let mut spans = Vec::new();
    if members.is_empty() {
        text += empty;
    }
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text += &m.ws[0];
        let start = text.len();
        text += &m.key;
        text += &m.ws[1];
        text.push(':');
        text += &m.ws[2];
        let value = text.len();
        text += &m.value;
        values.push(value..text.len());
        spans.push(start..text.len());
        text += &m.ws[3];
    }
    let close = text.len();
    text.push('}');
    text += trail;
    Rendered {
        text,
        values,
        members: spans,
        close,
    }
}

/// Applies `(range, replacement)` splices (non-overlapping) to `text`.
fn splice(text: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = String::new();
    let mut at = 0;
    for (r, with) in edits {
        out += &text[at..r.start];
        out += &with;
        at = r.end;
    }
    out += &text[at..];
    out
}

/// Checks that each of `texts` occurs in `out`, in this order, without
/// overlapping.
fn occur_in_order(out: &str, texts: &[&str]) -> Result<(), String> {
    let mut from = 0;
    for t in texts {
        match out[from..].find(t) {
            Some(i) => from += i + t.len(),
            None => return Err(format!("{t:?} missing (or out of order) in {out:?}")),
        }
    }
    Ok(())
}

/// A route for the byte-fidelity property: how its client names a model,
/// what the gateway sends instead, and whether it asks for usage.
struct PropRoute {
    target: &'static str,
    url: &'static str,
    spellings: [&'static str; 3],
    upstream: &'static str,
    asks_usage: bool,
}

const PROP_ROUTES: [PropRoute; 3] = [
    PropRoute {
        target: "/v1/chat/completions",
        url: "https://api.openai.com/v1/chat/completions",
        spellings: [
            r#""openai/gpt-5""#,
            r#""openai\/gpt-5""#,
            r#""\u006fpenai/gpt-5""#,
        ],
        upstream: r#""gpt-5""#,
        asks_usage: true,
    },
    PropRoute {
        target: "/v1/messages",
        url: "https://api.anthropic.com/v1/messages",
        spellings: [
            r#""anthropic/claude-sonnet-4-6""#,
            r#""anthropic\/claude-sonnet-4-6""#,
            r#""anthropic/claude-sonnet-4-\u0036""#,
        ],
        upstream: r#""claude-sonnet-4-6""#,
        asks_usage: false,
    },
    PropRoute {
        target: "/v1/chat/completions",
        url: "https://api.fireworks.ai/inference/v1/chat/completions",
        spellings: [
            r#""fireworks/kimi-k2-instruct""#,
            r#""fireworks\/kimi-k2-instruct""#,
            r#""fireworks/kimi-k2-instruc\u0074""#,
        ],
        upstream: r#""accounts/fireworks/models/kimi-k2-instruct""#,
        asks_usage: false,
    },
];

/// The client's `stream_options`.
#[derive(Debug, Clone)]
enum Options {
    Absent,
    /// Not an object (`null`, a number, …): replaced whole.
    Scalar(&'static str),
    /// An object: its other members, and `include_usage` (its spelling
    /// and value) at a position, if present.
    Object {
        others: Vec<Gen>,
        include: Option<(String, &'static str, [String; 4], Index)>,
        empty: String,
    },
}

const INCLUDE_KEYS: [&str; 2] = [r#""include_usage""#, r#""include\u005fusage""#];
const INCLUDE_VALUES: [&str; 5] = ["true", "false", "null", "0", r#""true""#];
const SCALARS: [&str; 5] = ["null", "5", r#""yes""#, "[]", "true"];

fn options() -> impl Strategy<Value = Options> {
    prop_oneof![
        2 => Just(Options::Absent),
        1 => prop::sample::select(&SCALARS[..]).prop_map(Options::Scalar),
        3 => (
            plain_members(3),
            prop::option::of((
                prop::sample::select(&INCLUDE_KEYS[..]),
                prop::sample::select(&INCLUDE_VALUES[..]),
                ws4(),
                any::<Index>()
            )),
            ws()
        )
            .prop_map(|(others, include, empty)| Options::Object {
                others,
                include: include.map(|(k, v, w, at)| (k.to_owned(), v, w, at)),
                empty,
            }),
    ]
}

/// A random request body for one of [`PROP_ROUTES`].
#[derive(Debug, Clone)]
struct BodyCase {
    route: usize,
    lead: String,
    trail: String,
    /// Every top-level member, in order (`model`, `stream` and
    /// `stream_options` among them).
    members: Vec<Gen>,
    options: Options,
}

const MODEL_KEYS: [&str; 2] = [r#""model""#, r#""m\u006fdel""#];
const STREAM_KEYS: [&str; 2] = [r#""stream""#, r#""str\u0065am""#];
const OPTIONS_KEYS: [&str; 2] = [r#""stream_options""#, r#""stream\u005foptions""#];

fn body_case() -> impl Strategy<Value = BodyCase> {
    (
        0..PROP_ROUTES.len(),
        0usize..3,
        (prop::sample::select(&MODEL_KEYS[..]), ws4()),
        (prop::sample::select(&STREAM_KEYS[..]), ws4()),
        (options(), prop::sample::select(&OPTIONS_KEYS[..]), ws4()),
        plain_members(7),
        ws(),
        ws(),
    )
        .prop_flat_map(
            |(route, spelling, model, stream, (options, okey, ows), others, lead, trail)| {
                let mut members = others;
                members.push(Gen::new(
                    "model",
                    model.0.to_owned(),
                    model.1,
                    PROP_ROUTES[route].spellings[spelling].to_owned(),
                ));
                members.push(Gen::new(
                    "stream",
                    stream.0.to_owned(),
                    stream.1,
                    "true".into(),
                ));
                if let Some(value) = options_text(&options).map(|r| r.text) {
                    members.push(Gen::new("stream_options", okey.to_owned(), ows, value));
                }
                (
                    Just(members).prop_shuffle(),
                    Just((route, options, lead, trail)),
                )
            },
        )
        .prop_map(|(members, (route, options, lead, trail))| BodyCase {
            route,
            lead,
            trail,
            members,
            options,
        })
}

/// The text of `stream_options` (`None`: absent), with where its
/// `include_usage` value is (for an object).
fn options_text(options: &Options) -> Option<Rendered> {
    match options {
        Options::Absent => None,
        Options::Scalar(s) => Some(Rendered {
            text: (*s).to_owned(),
            values: vec![],
            members: vec![],
            close: 0,
        }),
        Options::Object {
            others,
            include,
            empty,
        } => Some(render("", &nested(others, include), empty, "")),
    }
}

fn nested(
    others: &[Gen],
    include: &Option<(String, &'static str, [String; 4], Index)>,
) -> Vec<Gen> {
    let mut members = others.to_vec();
    if let Some((key, value, ws, at)) = include {
        let gen = Gen::new(
            "include_usage",
            key.clone(),
            ws.clone(),
            (*value).to_owned(),
        );
        members.insert(at.index(members.len() + 1), gen);
    }
    members
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// The planned body is the client's with exactly the planned edits:
    /// the model's value, and `stream_options.include_usage` where usage
    /// is asked for; every other byte as sent.
    #[test]
    fn edited_bodies_keep_every_other_byte(case in body_case()) {
        let route = &PROP_ROUTES[case.route];
        let r = render(&case.lead, &case.members, "", &case.trail);
        let body = r.text.as_bytes();
        let (planned, _) = plan_for(GATEWAY, route.target, body);
        let p = planned.unwrap();
        let out = text(&p.body.apply(body));
        prop_assert_eq!(&p.url, route.url);

        // The oracle: the splices the rules call for, made here.
        let at = |name: &str| case.members.iter().position(|m| m.name == name);
        let mut edits = vec![(r.values[at("model").unwrap()].clone(), route.upstream.to_owned())];
        let mut asked = false;
        let mut appended = false;
        if route.asks_usage {
            match &case.options {
                Options::Absent => {
                    appended = true;
                    edits.push((r.close..r.close, r#","stream_options":{"include_usage":true}"#.into()));
                }
                // `null` is no options: replaced by the usage request. Any
                // other scalar is left as sent (the provider refuses it),
                // and no chunk is expected to strip.
                Options::Scalar("null") => {
                    edits.push((r.values[at("stream_options").unwrap()].clone(), r#"{"include_usage":true}"#.into()));
                }
                Options::Scalar(_) => asked = true,
                Options::Object { others, include, .. } => {
                    let base = r.values[at("stream_options").unwrap()].start;
                    let inner = options_text(&case.options).unwrap();
                    match include {
                        Some((_, "true", _, _)) => asked = true,
                        Some(_) => {
                            let i = nested(others, include).iter().position(|m| m.name == "include_usage").unwrap();
                            let v = &inner.values[i];
                            edits.push((base + v.start..base + v.end, "true".into()));
                        }
                        None => {
                            let comma = if others.is_empty() { "" } else { "," };
                            let c = base + inner.close;
                            edits.push((c..c, format!(r#"{comma}"include_usage":true"#)));
                        }
                    }
                }
            }
        }
        prop_assert_eq!(p.response.strip_usage_chunk, route.asks_usage && !asked);
        let want = splice(&r.text, edits);
        prop_assert_eq!(&out, &want, "body {:?}", r.text);

        // Independently: serde_json reads the members in the same order,
        // each untouched value with the same raw bytes.
        let got = members_of(out.as_bytes());
        let mut names: Vec<&str> = case.members.iter().map(|m| m.name.as_str()).collect();
        if appended {
            names.push("stream_options");
        }
        prop_assert_eq!(got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), names);
        let mut untouched = Vec::new();
        for (m, (_, raw)) in case.members.iter().zip(&got) {
            match m.name.as_str() {
                "model" => prop_assert_eq!(raw, route.upstream),
                "stream_options" if route.asks_usage && !asked => {
                    let inner = members_of(raw.as_bytes());
                    let usage: Vec<_> = inner.iter().filter(|(n, _)| n == "include_usage").collect();
                    prop_assert_eq!(usage.len(), 1, "{}", raw);
                    prop_assert_eq!(&usage[0].1, "true");
                    if let Options::Object { others, .. } = &case.options {
                        let kept: Vec<_> = inner.iter().filter(|(n, _)| n != "include_usage").collect();
                        prop_assert_eq!(kept.len(), others.len());
                        for (o, (n, v)) in others.iter().zip(kept) {
                            prop_assert_eq!((&o.name, &o.value), (n, v));
                        }
                    }
                }
                _ => {
                    prop_assert_eq!(raw, &m.value, "{}", m.name);
                    untouched.push(m);
                }
            }
        }
        // And each untouched member's whole text, name to value, is there
        // verbatim, in order.
        let texts: Vec<&str> = case
            .members
            .iter()
            .zip(&r.members)
            .filter(|(m, _)| untouched.iter().any(|u| u.name == m.name))
            .map(|(_, span)| &r.text[span.clone()])
            .collect();
        if let Err(e) = occur_in_order(&out, &texts) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// Top-level members a Responses request may carry, accepted by the
/// ChatGPT backend or not.
const RESPONSES_MEMBERS: [&str; 24] = [
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
    "instructions",
    "temperature",
    "max_output_tokens",
    "top_p",
    "metadata",
    "user",
    "truncation",
    "service_tier",
    "stream_options",
    "background",
    "safety_identifier",
    "max_tool_calls",
];

const FLAGS: [&str; 5] = ["true", "false", "null", r#""true""#, "1"];
const CODEX_MODELS: [&str; 4] = [
    r#""gpt-5.1-codex""#,
    r#""openai/gpt-5.1-codex""#,
    r#""chatgpt/gpt-5.1-codex""#,
    r#""chatgpt\/gpt-5.1-codex""#,
];

fn responses_member(name: &'static str) -> impl Strategy<Value = Gen> {
    let value = if matches!(name, "stream" | "store") {
        prop::sample::select(&FLAGS[..])
            .prop_map(str::to_owned)
            .boxed()
    } else {
        json_value().boxed()
    };
    (prop::option::of(any::<Index>()), ws4(), value)
        .prop_map(move |(escape, ws, value)| Gen::new(name, spell(name, escape), ws, value))
}

/// A Responses request body: its members (with or without a `model`),
/// and the whitespace before it, inside it when empty, and after it.
fn codex_body() -> impl Strategy<Value = (Vec<Gen>, [String; 3])> {
    (
        prop::sample::subsequence(RESPONSES_MEMBERS.to_vec(), 0..=RESPONSES_MEMBERS.len()),
        prop::bool::weighted(0.8),
    )
        .prop_flat_map(|(names, with_model)| {
            let mut members: Vec<BoxedStrategy<Gen>> = names
                .into_iter()
                .map(|n| responses_member(n).boxed())
                .collect();
            if with_model {
                members.push(
                    (
                        prop::sample::select(&MODEL_KEYS[..]),
                        ws4(),
                        prop::sample::select(&CODEX_MODELS[..]),
                    )
                        .prop_map(|(k, ws, v)| Gen::new("model", k.to_owned(), ws, v.to_owned()))
                        .boxed(),
                );
            }
            (
                members.prop_shuffle(),
                (ws(), ws(), ws()).prop_map(|(a, b, c)| [a, b, c]),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// Reshaping for the ChatGPT backend removes the refused members and
    /// sets `store`, `stream` and `instructions`; every member kept has
    /// its bytes, in its order.
    #[test]
    fn chatgpt_reshaping_keeps_what_it_keeps(case in codex_body()) {
        let (members, [lead, empty, trail]) = case;
        let r = render(&lead, &members, &empty, &trail);
        let body = r.text.as_bytes();
        let raw_of = |name: &str| members.iter().find(|m| m.name == name).map(|m| m.value.as_str());
        // Without a model, the prefixed path routes it.
        let (target, model) = match raw_of("model") {
            Some(_) => ("/v1/responses", Some("gpt-5.1-codex")),
            None => ("/openai/v1/responses", None),
        };
        let (planned, _) = plan_for(CHATGPT, target, body);
        let p = planned.unwrap();
        let out = text(&p.body.apply(body));
        prop_assert_eq!(&p.url, "https://chatgpt.com/backend-api/codex/responses");
        prop_assert_eq!(p.response.collect_response, raw_of("stream") != Some("true"));
        prop_assert_eq!(p.model.as_deref(), model);

        let got = members_of(out.as_bytes());
        let mut want: Vec<(String, String)> = Vec::new();
        let mut untouched = Vec::new();
        for (m, span) in members.iter().zip(&r.members) {
            if !CHATGPT_ACCEPTED.contains(&m.name.as_str()) {
                continue;
            }
            let value = match m.name.as_str() {
                "model" => r#""gpt-5.1-codex""#,
                "store" => "false",
                "stream" => "true",
                _ => {
                    untouched.push(&r.text[span.clone()]);
                    m.value.as_str()
                }
            };
            want.push((m.name.clone(), value.to_owned()));
        }
        for (name, value) in [("store", "false"), ("stream", "true"), ("instructions", r#""""#)] {
            if raw_of(name).is_none() {
                want.push((name.to_owned(), value.to_owned()));
            }
        }
        prop_assert_eq!(&got, &want, "body {:?} became {:?}", r.text, out);
        if let Err(e) = occur_in_order(&out, &untouched) {
            prop_assert!(false, "{}", e);
        }
    }
}

// ---------------------------------------------------------------------------
// 3. and 4. The relay over recorded streams.

/// A recorded answer, the usage and model it carries, and how many
/// usage-only chunks it has.
struct Recorded {
    name: &'static str,
    text: &'static str,
    sse: bool,
    usage: TokenUsage,
    model: &'static str,
    usage_only: usize,
}

const fn usage(input: u64, output: u64, cache_creation: u64, cache_read: u64) -> TokenUsage {
    TokenUsage {
        input,
        output,
        cache_creation,
        cache_read,
    }
}

const RECORDED: [Recorded; 7] = [
    Recorded {
        name: "anthropic_messages.sse",
        text: include_str!("fixtures/anthropic_messages.sse"),
        sse: true,
        usage: usage(12, 5, 2, 3),
        model: "claude-sonnet-4-6",
        usage_only: 0,
    },
    Recorded {
        name: "openai_chat.sse",
        text: include_str!("fixtures/openai_chat.sse"),
        sse: true,
        usage: usage(12, 5, 0, 0),
        model: "gpt-5.5",
        usage_only: 1,
    },
    Recorded {
        name: "openai_chat_include_usage.sse",
        text: include_str!("fixtures/openai_chat_include_usage.sse"),
        sse: true,
        usage: usage(19, 10, 0, 0),
        model: "gpt-5-2025-08-07",
        usage_only: 1,
    },
    Recorded {
        name: "openai_responses.sse",
        text: include_str!("fixtures/openai_responses.sse"),
        sse: true,
        usage: usage(9, 5, 0, 3),
        model: "gpt-5.5",
        usage_only: 0,
    },
    Recorded {
        name: "fireworks_chat.sse",
        text: include_str!("fixtures/fireworks_chat.sse"),
        sse: true,
        usage: usage(5, 8, 0, 16),
        model: "accounts/fireworks/models/kimi-k2-instruct",
        usage_only: 0,
    },
    Recorded {
        name: "chatgpt_responses.sse",
        text: include_str!("fixtures/chatgpt_responses.sse"),
        sse: true,
        usage: usage(298, 97, 0, 1536),
        model: "gpt-5.1-codex",
        usage_only: 0,
    },
    Recorded {
        name: "anthropic_messages.json",
        text: include_str!("fixtures/anthropic_messages.json"),
        sse: false,
        usage: usage(12, 3, 2, 3),
        model: "claude-sonnet-4-6",
        usage_only: 0,
    },
];

/// The final `response` of `chatgpt_responses.sse`, as a client that did
/// not stream must receive it.
const CHATGPT_COLLECTED: &str = include_str!("fixtures/chatgpt_responses.json");

const SEPS: [&str; 3] = ["\n", "\r", "\r\n"];

/// One event of a re-framed stream: its bytes (blank line included) and
/// its data (the `data:` lines joined).
struct Framed {
    raw: Vec<u8>,
    data: String,
}

/// The events of an LF-framed recording, with line `k` of the stream
/// ended by `sep(k)` (a CR followed by a blank line ended by LF would be
/// one CRLF: that blank line ends with CR instead).
fn reframe(text: &str, sep: impl Fn(usize) -> &'static str) -> Vec<Framed> {
    assert!(text.ends_with("\n\n"), "a recording ends with a blank line");
    let mut k = 0;
    let mut out = Vec::new();
    for block in text[..text.len() - 2].split("\n\n") {
        let mut raw = String::new();
        let mut data = Vec::new();
        let mut last = "";
        for line in block.split('\n') {
            assert!(!line.is_empty(), "one blank line between events");
            if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d));
            }
            last = sep(k);
            k += 1;
            raw += line;
            raw += last;
        }
        let mut blank = sep(k);
        k += 1;
        if last == "\r" && blank == "\n" {
            blank = "\r";
        }
        raw += blank;
        out.push(Framed {
            raw: raw.into_bytes(),
            data: data.join("\n"),
        });
    }
    out
}

/// Whether an event's data is the Chat Completions usage-only chunk, read
/// with `serde_json::Value` (independently of the relay's probe).
fn is_usage_only(data: &str) -> bool {
    let Ok(Value::Object(o)) = serde_json::from_str::<Value>(data) else {
        return false;
    };
    o.get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && o.get("usage").is_some_and(Value::is_object)
}

/// `bytes` cut at `cuts` (a cut repeated gives an empty chunk).
fn chunks<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        out.push(&bytes[last..p]);
        last = p;
    }
    out
}

/// What a relay did with one answer.
#[derive(Debug)]
struct Relayed {
    /// What each `feed` returned, then what `finish` returned.
    outputs: Vec<Bytes>,
    usage: Option<TokenUsage>,
    model: Option<String>,
    collected: Option<Bytes>,
}

impl Relayed {
    fn bytes(&self) -> Vec<u8> {
        self.outputs.concat()
    }
}

fn relay(plan: ResponsePlan, sse: bool, chunks: &[&[u8]]) -> Relayed {
    let mut r = ResponseRelay::new(plan, sse);
    let mut outputs: Vec<Bytes> = chunks
        .iter()
        .map(|c| r.feed(Bytes::copy_from_slice(c)))
        .collect();
    outputs.push(r.finish());
    Relayed {
        outputs,
        usage: r.usage(),
        model: r.model().map(str::to_owned),
        collected: r.collected().ok(),
    }
}

fn response_plan(strip: bool, collect: bool) -> ResponsePlan {
    ResponsePlan {
        dialect: Dialect::OpenAi,
        strip_usage_chunk: strip,
        collect_response: collect,
        expect: None,
    }
}

/// A recording re-framed: LF (as recorded), CR, CRLF, or each line end
/// picked from `picks`.
fn framed(rec: &Recorded, framing: usize, picks: &[usize]) -> Vec<Framed> {
    reframe(rec.text, |k| match framing {
        0..=2 => SEPS[framing],
        _ => SEPS[picks[k % picks.len()]],
    })
}

#[test]
fn recordings_are_what_the_tables_say() {
    for rec in RECORDED.iter().filter(|r| r.sse) {
        let events = reframe(rec.text, |_| "\n");
        assert_eq!(
            events
                .iter()
                .flat_map(|e| e.raw.clone())
                .collect::<Vec<_>>(),
            rec.text.as_bytes(),
            "{}: re-framing with LF gives the recording back",
            rec.name
        );
        for e in &events {
            assert_eq!(
                is_usage_only_chunk(e.data.as_bytes()),
                is_usage_only(&e.data),
                "{}: the relay's probe and serde_json disagree on {}",
                rec.name,
                e.data
            );
        }
        let n = events.iter().filter(|e| is_usage_only(&e.data)).count();
        assert_eq!(n, rec.usage_only, "{}: usage-only chunks", rec.name);
    }
    let completed = reframe(RECORDED[5].text, |_| "\n");
    let last = completed.last().unwrap();
    let v: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(v["type"], "response.completed");
    assert_eq!(
        v["response"],
        serde_json::from_str::<Value>(CHATGPT_COLLECTED).unwrap()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any split of any recording, in any framing, relays the same bytes
    /// and meters the same usage and model as the whole; with stripping
    /// off the relay is the identity, chunk for chunk; with it on, the
    /// usage-only events, and only they, are gone.
    #[test]
    fn relay_is_split_invariant(
        which in 0..RECORDED.len(),
        framing in 0usize..4,
        picks in prop::collection::vec(0usize..3, 1..64),
        mut cuts in prop::collection::vec(any::<Index>(), 0..48),
        repeat in prop::collection::vec(any::<Index>(), 0..4),
    ) {
        let rec = &RECORDED[which];
        let (stream, kept) = if rec.sse {
            let events = framed(rec, framing, &picks);
            let all: Vec<u8> = events.iter().flat_map(|e| e.raw.clone()).collect();
            let kept: Vec<u8> = events
                .iter()
                .filter(|e| !is_usage_only(&e.data))
                .flat_map(|e| e.raw.clone())
                .collect();
            prop_assert_eq!(events.iter().filter(|e| is_usage_only(&e.data)).count(), rec.usage_only);
            (all, kept)
        } else {
            (rec.text.as_bytes().to_vec(), rec.text.as_bytes().to_vec())
        };
        // Some cuts twice: empty chunks.
        if !cuts.is_empty() {
            let again: Vec<Index> = repeat.iter().map(|i| cuts[i.index(cuts.len())]).collect();
            cuts.extend(again);
        }
        let split = chunks(&stream, &cuts);
        for strip in [false, true] {
            let plan = response_plan(strip, false);
            prop_assert_eq!(ResponseRelay::new(plan, rec.sse).alters_body(), strip && rec.sse);
            let whole = relay(plan, rec.sse, &[&stream]);
            let parts = relay(plan, rec.sse, &split);
            let label = format!("{} framing {framing} strip {strip}", rec.name);
            prop_assert_eq!(text(&parts.bytes()), text(&whole.bytes()), "{}", label);
            prop_assert_eq!(parts.usage, Some(rec.usage), "{}", label);
            prop_assert_eq!(whole.usage, Some(rec.usage), "{}", label);
            prop_assert_eq!(parts.model.as_deref(), Some(rec.model), "{}", label);
            prop_assert_eq!(whole.model.as_deref(), Some(rec.model), "{}", label);
            prop_assert_eq!(&parts.collected, &None, "{}", label);
            if strip && rec.sse {
                prop_assert_eq!(text(&parts.bytes()), text(&kept), "{}", label);
            } else {
                for (out, chunk) in parts.outputs.iter().zip(&split) {
                    prop_assert_eq!(&out[..], *chunk, "{}: a chunk was altered", label);
                }
                prop_assert!(parts.outputs.last().unwrap().is_empty(), "{}", label);
                prop_assert_eq!(text(&parts.bytes()), text(&stream), "{}", label);
            }
        }
    }

    /// A client that did not stream gets the ChatGPT backend's final
    /// `response`, whatever the split and framing; nothing is relayed.
    #[test]
    fn chatgpt_answer_is_collected_whatever_the_split(
        framing in 0usize..4,
        picks in prop::collection::vec(0usize..3, 1..64),
        cuts in prop::collection::vec(any::<Index>(), 0..48),
    ) {
        let (planned, _) = plan_for(CHATGPT, "/v1/responses", br#"{"model":"gpt-5.1-codex","input":"hi"}"#);
        let plan = planned.unwrap().response;
        prop_assert!(plan.collect_response && !plan.strip_usage_chunk);
        let rec = &RECORDED[5];
        let stream: Vec<u8> = framed(rec, framing, &picks).iter().flat_map(|e| e.raw.clone()).collect();
        let split = chunks(&stream, &cuts);
        let r = relay(plan, true, &split);
        prop_assert!(r.outputs.iter().all(Bytes::is_empty), "relayed while collecting");
        let collected: Option<Value> = r.collected.as_deref().and_then(|c| serde_json::from_slice(c).ok());
        prop_assert_eq!(collected, serde_json::from_str::<Value>(CHATGPT_COLLECTED).ok());
        prop_assert_eq!(r.usage, Some(rec.usage));
        prop_assert_eq!(r.model.as_deref(), Some(rec.model));
    }
}

#[test]
fn collecting_takes_the_last_terminal_event() {
    let plan = response_plan(false, true);
    let created = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"status\":\"in_progress\"}}\n\n";
    let incomplete = "event: response.incomplete\r\ndata: {\"type\":\"response.incomplete\",\"response\":{\"id\":\"r\",\"status\":\"incomplete\",\"x\":1.0}}\r\n\r\n";
    for split in 1..=created.len() + incomplete.len() {
        let stream = [created, incomplete].concat();
        let pieces: Vec<&[u8]> = stream.as_bytes().chunks(split).collect();
        let r = relay(plan, true, &pieces);
        assert_eq!(
            r.collected.as_deref(),
            Some(&br#"{"id":"r","status":"incomplete","x":1.0}"#[..]),
            "split {split}"
        );
        // Cut off before any terminal event: nothing to answer with.
        let pieces: Vec<&[u8]> = created.as_bytes().chunks(split).collect();
        assert_eq!(relay(plan, true, &pieces).collected, None, "split {split}");
    }
}

#[test]
fn only_the_usage_only_chunk_is_dropped() {
    // An empty `choices` without usage (Azure's filter results), usage on
    // a chunk with a choice (Fireworks), and `usage: null` are relayed.
    let events = [
        r#"data: {"choices":[],"prompt_filter_results":[{"prompt_index":0}]}"#,
        r#"data: {"choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        r#"data: {"choices":[],"usage":null}"#,
        ": keep-alive",
        r#"data:{"usage":{"prompt_tokens":3,"completion_tokens":4},"choices":[]}"#,
        "data: [DONE]",
    ];
    for sep in SEPS {
        let stream: String = events.iter().map(|e| format!("{e}{sep}{sep}")).collect();
        let want: String = events
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(_, e)| format!("{e}{sep}{sep}"))
            .collect();
        for split in 1..=stream.len() {
            let pieces: Vec<&[u8]> = stream.as_bytes().chunks(split).collect();
            let r = relay(response_plan(true, false), true, &pieces);
            assert_eq!(text(&r.bytes()), want, "{sep:?} split {split}");
            assert_eq!(r.usage, Some(usage(3, 4, 0, 0)), "{sep:?} split {split}");
        }
    }
}

// ---------------------------------------------------------------------------
// 5. The framer over random event streams.

#[derive(Debug, Clone)]
enum Line {
    /// `NAME:VALUE` or `NAME: VALUE`.
    Field(&'static str, bool, String),
    /// A field name alone, without a colon.
    Bare(&'static str),
    /// `:TEXT`.
    Comment(String),
}

impl Line {
    fn text(&self) -> String {
        match self {
            Line::Field(name, space, value) => {
                format!("{name}:{}{value}", if *space { " " } else { "" })
            }
            Line::Bare(name) => (*name).to_owned(),
            Line::Comment(c) => format!(":{c}"),
        }
    }
}

const FIELDS: [&str; 9] = [
    "data", "data", "data", "event", "id", "retry", "Data", "x-custom", "dat",
];
const BARE: [&str; 4] = ["data", "event", "id", "foo"];

fn line() -> impl Strategy<Value = Line> {
    let value = "[ -~éß😀]{0,10}";
    prop_oneof![
        6 => (prop::sample::select(&FIELDS[..]), any::<bool>(), value)
            .prop_map(|(n, s, v)| Line::Field(n, s, v)),
        1 => prop::sample::select(&BARE[..]).prop_map(Line::Bare),
        1 => value.prop_map(Line::Comment),
    ]
}

/// An event as reported: its name, its data, whether it had data.
type Event = (String, Vec<u8>, bool);

/// What a framer reported: each event, and all raw bytes (events, tails,
/// what `finish` returned) concatenated.
type Framing = (Vec<Event>, Vec<u8>);

fn frame(chunks: &[&[u8]], keep_raw: bool) -> Framing {
    let mut f = SseFramer::new(keep_raw);
    let mut events = Vec::new();
    let mut raw = Vec::new();
    let mut on_event = |e: SseEvent<'_>| {
        assert!(!e.oversize);
        raw.extend_from_slice(e.raw);
        if !e.tail {
            events.push((e.event.to_owned(), e.data.to_vec(), e.has_data));
        }
    };
    for c in chunks {
        f.feed(c, &mut on_event);
    }
    let rest = f.finish(&mut on_event);
    raw.extend_from_slice(&rest);
    (events, raw)
}

/// A random event stream and the events the standard's rules (and the
/// framer's: every blank line reports, an unfinished last event with
/// data or a name is reported) say it holds.
fn event_stream() -> impl Strategy<Value = (Vec<u8>, Vec<Event>)> {
    (
        prop::collection::vec(prop::collection::vec(line(), 0..5), 0..6),
        prop::collection::vec(line(), 0..3),
        any::<bool>(),
        prop::collection::vec(0usize..3, 1..64),
    )
        .prop_map(|(events, trailing, unterminated, picks)| {
            // Every line with its end: `None` for a blank line.
            let mut lines: Vec<Option<String>> = Vec::new();
            for e in &events {
                lines.extend(e.iter().map(|l| Some(l.text())));
                lines.push(None);
            }
            lines.extend(trailing.iter().map(|l| Some(l.text())));
            let mut stream = String::new();
            let mut want = Vec::new();
            let (mut name, mut data, mut has_data) = (String::new(), String::new(), false);
            let mut last_sep = "";
            let count = lines.len();
            for (k, l) in lines.into_iter().enumerate() {
                let mut sep = SEPS[picks[k % picks.len()]];
                match l {
                    None => {
                        if last_sep == "\r" && sep == "\n" {
                            sep = "\r";
                        }
                        want.push((
                            std::mem::take(&mut name),
                            std::mem::take(&mut data).into_bytes(),
                            has_data,
                        ));
                        has_data = false;
                    }
                    Some(text) => {
                        stream += &text;
                        if let Some((field, value)) = text.split_once(':') {
                            let value = value.strip_prefix(' ').unwrap_or(value);
                            match field {
                                "data" => {
                                    if has_data {
                                        data.push('\n');
                                    }
                                    data += value;
                                    has_data = true;
                                }
                                "event" => name = value.to_owned(),
                                _ => {}
                            }
                        } else if text == "data" {
                            if has_data {
                                data.push('\n');
                            }
                            has_data = true;
                        } else if text == "event" {
                            name.clear();
                        }
                        if unterminated && k + 1 == count && !trailing.is_empty() {
                            continue;
                        }
                    }
                }
                stream += sep;
                last_sep = sep;
            }
            if has_data || !name.is_empty() {
                want.push((name, data.into_bytes(), has_data));
            }
            (stream.into_bytes(), want)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any split of a random event stream reports the same events, the
    /// ones the rules say, and hands back every byte.
    #[test]
    fn framer_is_split_invariant(
        (stream, want) in event_stream(),
        cuts in prop::collection::vec(any::<Index>(), 0..32),
    ) {
        let split = chunks(&stream, &cuts);
        let (whole, whole_raw) = frame(&[&stream], true);
        let (events, raw) = frame(&split, true);
        prop_assert_eq!(&whole, &want, "whole {:?}", text(&stream));
        prop_assert_eq!(&events, &want, "split {:?}", split.iter().map(|c| text(c)).collect::<Vec<_>>());
        prop_assert_eq!(text(&whole_raw), text(&stream));
        prop_assert_eq!(text(&raw), text(&stream));
        let (bare, _) = frame(&split, false);
        prop_assert_eq!(&bare, &want, "without raw bytes");
    }
}

/// A byte order mark starts a stream and is not part of its first line
/// (the standard's rule, which the framer applies), wherever the first
/// chunk ends.
#[test]
fn byte_order_mark_split_across_chunks() {
    let stream = "\u{feff}data: a\n\n".as_bytes();
    let want = vec![(String::new(), b"a".to_vec(), true)];
    assert_eq!(frame(&[stream], true).0, want, "whole");
    for at in 1..stream.len() {
        let (head, tail) = stream.split_at(at);
        let (events, raw) = frame(&[head, tail], true);
        assert_eq!(raw, stream, "raw bytes, split at {at}");
        assert_eq!(
            events, want,
            "SseFramer: a stream starting with a BOM, split at byte {at}: the BOM must be \
             stripped from the first line whatever the split (it is only stripped when the \
             first chunk holds all three BOM bytes)"
        );
    }
}

/// A custom endpoint gets its own authentication, and the client's
/// credentials never: bearer, one custom header, or nothing.
#[test]
fn custom_endpoints_get_their_own_authentication_only() {
    let client = || {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer vm-own"));
        h.insert("x-api-key", HeaderValue::from_static("vm-own"));
        h.insert("x-team-key", HeaderValue::from_static("vm-own"));
        h
    };
    let secret = Injected {
        secret: "endpoint-secret",
        account_id: None,
    };
    for (target, body, want) in [
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-5"}"#,
            [
                ("authorization", Some("Bearer endpoint-secret")),
                ("x-api-key", None),
                ("x-team-key", Some("vm-own")),
            ],
        ),
        (
            "/v1/messages",
            r#"{"model":"claude-opus-4-6","max_tokens":1}"#,
            [
                ("authorization", None),
                ("x-api-key", None),
                ("x-team-key", Some("endpoint-secret")),
            ],
        ),
        (
            "/fireworks/inference/v1/chat/completions",
            r#"{"model":"accounts/fireworks/models/x"}"#,
            [
                ("authorization", None),
                ("x-api-key", None),
                ("x-team-key", Some("vm-own")),
            ],
        ),
    ] {
        let (planned, _) = plan_for(OWN, target, body.as_bytes());
        let planned = planned.unwrap();
        let mut headers = client();
        planned.apply_headers(&mut headers, None, secret);
        for (name, value) in want {
            assert_eq!(
                headers.get(name).and_then(|v| v.to_str().ok()),
                value,
                "{target} {name}"
            );
        }
    }
}

/// A background response goes on generating after its request ends, where
/// the gateway cannot meter it: refused on the platform's credential,
/// naming `background` and what to do; forwarded on the owner's own key.
#[test]
fn background_responses_are_refused_on_the_platform_credential() {
    let body = br#"{"model":"gpt-5.5","input":"hi","background":true,"max_output_tokens":100000}"#;
    let (planned, _) = plan_for(GATEWAY, "/v1/responses", body);
    let e = planned.expect_err("refused");
    assert_eq!(e.status().as_u16(), 400);
    assert!(e.message.contains("`background: true`"), "{}", e.message);
    assert!(e.message.contains("--openai=byok"), "{}", e.message);
    let (planned, _) = plan_for(BYOK, "/v1/responses", body);
    assert!(planned.is_ok());
    for body in [
        &br#"{"model":"gpt-5.5","input":"hi","background":false}"#[..],
        br#"{"model":"gpt-5.5","input":"hi"}"#,
    ] {
        assert!(plan_for(GATEWAY, "/v1/responses", body).0.is_ok());
    }
}
