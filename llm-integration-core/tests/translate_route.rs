//! Protocol translation's decisions: which requests the router sends to
//! the other API family (and which it refuses), and the upstream plan of a
//! translated request (URL, body, headers, the dropped list, refusals).
#![allow(clippy::unwrap_used, missing_docs)]

use http::header::{HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use llm_integration_core::body::JsonObject;
use llm_integration_core::headers::Injected;
use llm_integration_core::translate::{Target, Translation};
use llm_integration_core::upstream::{plan, reads_body, UpstreamPlan, UpstreamTargets};
use llm_integration_core::{
    ConfigRecords, Decision, Dialect, GatewayError, IntegrationConfig, IntegrationId,
    IntegrationKind, LlmSettings, Owner, Provider, Refusal, Refused, RouteRequest, Snapshot,
    SnapshotOptions, Source, User, UserId, Vm, VmId,
};
use serde_json::Value;

const ALICE: UserId = UserId(1);
const DEVBOX: VmId = VmId(10);

fn snapshot() -> Snapshot {
    let integration = |id: i64, name: &str, settings: LlmSettings| {
        let mut i = IntegrationConfig::default_llm(IntegrationId(id), Owner::User(ALICE));
        i.name = name.parse().unwrap();
        i.kind = IntegrationKind::Llm(settings);
        i
    };
    let mut chatgpt = LlmSettings::all_gateway();
    chatgpt.openai = Source::Chatgpt {
        account: "work".parse().unwrap(),
    };
    let mut off = LlmSettings::all_gateway();
    off.translate = false;
    Snapshot::build(
        ConfigRecords {
            users: vec![User::new(ALICE, "alice@example.com")],
            vms: vec![Vm::new(DEVBOX, "devbox".parse().unwrap(), ALICE)],
            integrations: vec![
                integration(1, "llm", LlmSettings::all_gateway()),
                integration(2, "sub", chatgpt),
                integration(3, "plain", off),
            ],
            ..ConfigRecords::default()
        },
        SnapshotOptions::default(),
    )
}

fn route<'s>(
    snapshot: &'s Snapshot,
    host: &str,
    target: &str,
    body: &[u8],
) -> Result<Decision<'s>, Refused> {
    let object = JsonObject::parse(body).unwrap();
    let model = object.str("model");
    let request = RouteRequest::new(Some(DEVBOX), host, &Method::POST, target);
    snapshot.route_with_model(&request, model.as_deref())
}

fn planned(host: &str, target: &str, body: &[u8]) -> Result<UpstreamPlan, GatewayError> {
    let snapshot = snapshot();
    let Ok(Decision::Forward(forward)) = route(&snapshot, host, target, body) else {
        panic!("{host}{target}: not forwarded");
    };
    assert!(reads_body(&forward), "a translated request is read");
    let object = JsonObject::parse(body).unwrap();
    plan(&forward, Some(&object), &UpstreamTargets::default())
}

fn upstream_json(plan: &UpstreamPlan) -> Value {
    serde_json::from_slice(&plan.translation.as_ref().unwrap().body).unwrap()
}

const CLAUDE_CODE_TURN: &[u8] = br#"{"model":"gpt-5.5","max_tokens":4096,"stream":true,
"system":[{"type":"text","text":"You are Claude Code.","cache_control":{"type":"ephemeral"}}],
"tools":[{"name":"Bash","description":"Run a command","input_schema":{"type":"object","properties":{"command":{"type":"string"}}}}],
"metadata":{"user_id":"u1"},
"messages":[{"role":"user","content":"What is 6*7? Use Bash."}]}"#;

#[test]
fn anthropic_clients_reach_openai_models_through_chat_completions() {
    let snapshot = snapshot();
    for target in ["/v1/messages", "/v1/messages?beta=true"] {
        let Ok(Decision::Forward(f)) =
            route(&snapshot, "llm.int.exe.xyz", target, CLAUDE_CODE_TURN)
        else {
            panic!("not forwarded");
        };
        assert_eq!(f.provider, Provider::OpenAi);
        assert_eq!(f.translation, Translation::MessagesToChat(Target::OpenAi));
        assert_eq!(
            f.upstream_path, "/v1/chat/completions",
            "the client's query stays"
        );
        assert_eq!(
            f.dialect,
            Dialect::Anthropic,
            "errors in the client's dialect"
        );
    }
    let plan = planned("llm.int.exe.xyz", "/v1/messages", CLAUDE_CODE_TURN).unwrap();
    assert_eq!(plan.url, "https://api.openai.com/v1/chat/completions");
    let body = upstream_json(&plan);
    assert_eq!(body["model"], "gpt-5.5");
    assert_eq!(body["max_completion_tokens"], 4096);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["tools"][0]["function"]["name"], "Bash");
    assert!(
        !plan.response.strip_usage_chunk,
        "the translator reads the usage chunk"
    );
    assert_eq!(plan.model.as_deref(), Some("gpt-5.5"), "metered as served");
    assert_eq!(plan.max_output, Some(4096));
    let answer = &plan.translation.as_ref().unwrap().answer;
    assert_eq!(
        answer.dropped.header_value().as_deref(),
        Some("system[].cache_control")
    );
    // The Anthropic family's headers do not cross.
    let mut headers = HeaderMap::new();
    headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    headers.insert(
        "anthropic-beta",
        HeaderValue::from_static("oauth-2025-04-20"),
    );
    headers.insert("x-api-key", HeaderValue::from_static("placeholder"));
    plan.apply_headers(
        &mut headers,
        None,
        Injected {
            secret: "sk-upstream",
            account_id: None,
        },
    );
    assert!(headers.get("anthropic-version").is_none());
    assert!(headers.get("anthropic-beta").is_none());
    assert!(headers.get("x-api-key").is_none());
    assert_eq!(headers["authorization"], "Bearer sk-upstream");
}

#[test]
fn provider_prefixed_models_are_sent_without_the_prefix() {
    let body = br#"{"model":"openai/gpt-5.5","max_tokens":10,"messages":[{"role":"user","content":"Hi"}]}"#;
    let plan = planned("llm.int.exe.xyz", "/v1/messages", body).unwrap();
    assert_eq!(upstream_json(&plan)["model"], "gpt-5.5");
    assert_eq!(plan.model.as_deref(), Some("gpt-5.5"));
}

#[test]
fn fireworks_models_stay_on_fireworks_native_anthropic_endpoint() {
    let snapshot = snapshot();
    let body = br#"{"model":"accounts/fireworks/models/glm-4p6","max_tokens":10,"messages":[]}"#;
    let Ok(Decision::Forward(f)) = route(&snapshot, "llm.int.exe.xyz", "/v1/messages", body) else {
        panic!("not forwarded");
    };
    assert_eq!(f.provider, Provider::Fireworks);
    assert_eq!(f.translation, Translation::None);
    assert_eq!(f.upstream_path, "/inference/v1/messages");
}

#[test]
fn a_chatgpt_subscription_gets_the_responses_api_reshaped_for_its_backend() {
    let body = br#"{"model":"gpt-5.5","max_tokens":4096,"temperature":0.5,"messages":[{"role":"user","content":"Hi"}]}"#;
    let snapshot = snapshot();
    let Ok(Decision::Forward(f)) = route(&snapshot, "sub.int.exe.xyz", "/v1/messages", body) else {
        panic!("not forwarded");
    };
    assert_eq!(
        f.translation,
        Translation::MessagesToResponses(Target::OpenAi)
    );
    let plan = planned("sub.int.exe.xyz", "/v1/messages", body).unwrap();
    assert_eq!(plan.url, "https://chatgpt.com/backend-api/codex/responses");
    assert!(plan.response.collect_response, "the client did not stream");
    let upstream = upstream_json(&plan);
    assert_eq!(upstream["stream"], true);
    assert_eq!(upstream["store"], false);
    assert!(upstream.get("max_output_tokens").is_none());
    assert!(upstream.get("temperature").is_none());
    let dropped = plan.translation.unwrap().answer.dropped;
    assert_eq!(
        dropped.header_value().as_deref(),
        Some("max_tokens, temperature")
    );
}

#[test]
fn openai_clients_reach_claude_models_through_messages() {
    let snapshot = snapshot();
    let chat =
        br#"{"model":"claude-sonnet-4-6","stream":true,"stream_options":{"include_usage":true},
"messages":[{"role":"user","content":"Hi"}],"seed":7}"#;
    let responses = br#"{"model":"claude-sonnet-4-6","input":"Hi","store":false,"stream":true}"#;
    for (target, body, translation) in [
        (
            "/v1/chat/completions",
            &chat[..],
            Translation::ChatToMessages,
        ),
        (
            "/v1/responses",
            &responses[..],
            Translation::ResponsesToMessages,
        ),
    ] {
        let Ok(Decision::Forward(f)) = route(&snapshot, "llm.int.exe.xyz", target, body) else {
            panic!("not forwarded");
        };
        assert_eq!(f.provider, Provider::Anthropic);
        assert_eq!(f.translation, translation);
        assert_eq!(f.dialect, Dialect::OpenAi);
        let plan = planned("llm.int.exe.xyz", target, body).unwrap();
        assert_eq!(plan.url, "https://api.anthropic.com/v1/messages");
        let upstream = upstream_json(&plan);
        assert_eq!(upstream["model"], "claude-sonnet-4-6");
        assert_eq!(upstream["stream"], true);
        assert!(upstream["max_tokens"].as_u64().is_some());
        let mut headers = HeaderMap::new();
        headers.insert("openai-beta", HeaderValue::from_static("responses=v1"));
        plan.apply_headers(
            &mut headers,
            None,
            Injected {
                secret: "sk-ant",
                account_id: None,
            },
        );
        assert_eq!(headers["anthropic-version"], "2023-06-01");
        assert_eq!(headers["x-api-key"], "sk-ant");
        assert!(headers.get("openai-beta").is_none());
    }
    let plan = planned("llm.int.exe.xyz", "/v1/chat/completions", chat).unwrap();
    let answer = plan.translation.unwrap().answer;
    assert!(answer.include_usage);
    assert_eq!(answer.dropped.header_value().as_deref(), Some("seed"));
}

#[test]
fn an_unexpressible_request_is_a_400_in_the_clients_dialect_naming_the_member() {
    let body = br#"{"model":"claude-sonnet-4-6","input":"Hi","previous_response_id":"resp_1"}"#;
    let error = planned("llm.int.exe.xyz", "/v1/responses", body).unwrap_err();
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error.dialect, Dialect::OpenAi);
    assert!(
        error.to_string().contains("previous_response_id"),
        "{error}"
    );
}

#[test]
fn without_translation_the_wrong_endpoint_refusals_stand() {
    let snapshot = snapshot();
    let refused =
        |target: &str, body: &[u8]| match route(&snapshot, "plain.int.exe.xyz", target, body) {
            Err(r) => r,
            Ok(d) => panic!("{target}: not refused: {d:?}"),
        };
    let r = refused("/v1/messages", CLAUDE_CODE_TURN);
    assert!(matches!(r.refusal, Refusal::WrongEndpoint { .. }));
    assert!(r
        .body()
        .contains("use /v1/chat/completions or /v1/responses"));
    // The cause and the fix are named: translation is off here.
    assert!(
        r.body()
            .contains("protocol translation is off for integration plain")
            && r.body().contains("integrations edit plain --translate=on"),
        "{}",
        r.body()
    );
    // `count_tokens`, which translation would estimate, says so too.
    let r = refused(
        "/v1/messages/count_tokens",
        br#"{"model":"gpt-5.5","messages":[{"role":"user","content":"Hi"}]}"#,
    );
    assert!(
        r.body().contains("integrations edit plain --translate=on"),
        "{}",
        r.body()
    );
    let r = refused(
        "/v1/responses",
        br#"{"model":"claude-sonnet-4-6","input":"Hi"}"#,
    );
    assert!(r.body().contains("use /v1/messages for Anthropic models"));
    // Paths with no counterpart are refused even when translating.
    let Err(r) = route(
        &snapshot,
        "llm.int.exe.xyz",
        "/v1/embeddings",
        br#"{"model":"claude-sonnet-4-6","input":"Hi"}"#,
    ) else {
        panic!("embeddings of a Claude model routed");
    };
    assert!(matches!(r.refusal, Refusal::WrongEndpoint { .. }));
}

#[test]
fn count_tokens_of_other_families_is_estimated() {
    let snapshot = snapshot();
    let body = br#"{"model":"gpt-5.5","messages":[{"role":"user","content":"Hi"}]}"#;
    let Ok(Decision::CountTokens(count)) = route(
        &snapshot,
        "llm.int.exe.xyz",
        "/v1/messages/count_tokens?beta=true",
        body,
    ) else {
        panic!("not estimated");
    };
    assert_eq!(count.provider, Provider::OpenAi);
    assert_eq!(count.model, "gpt-5.5");
    let body = br#"{"model":"fireworks/glm-4p6","messages":[]}"#;
    let Ok(Decision::CountTokens(count)) = route(
        &snapshot,
        "llm.int.exe.xyz",
        "/v1/messages/count_tokens",
        body,
    ) else {
        panic!("not estimated");
    };
    assert_eq!(count.provider, Provider::Fireworks);
    assert_eq!(count.model, "accounts/fireworks/models/glm-4p6");
    // Claude models are counted by Anthropic.
    let body = br#"{"model":"claude-sonnet-4-6","messages":[]}"#;
    assert!(matches!(
        route(
            &snapshot,
            "llm.int.exe.xyz",
            "/v1/messages/count_tokens",
            body
        ),
        Ok(Decision::Forward(_))
    ));
    // Without translation, as before.
    let body = br#"{"model":"gpt-5.5","messages":[]}"#;
    assert!(route(
        &snapshot,
        "plain.int.exe.xyz",
        "/v1/messages/count_tokens",
        body
    )
    .is_err());
}
