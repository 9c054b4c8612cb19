//! Entry points for the fuzz targets in `fuzz/` (and for tests that replay
//! their inputs): each takes arbitrary bytes and must never panic.

use std::sync::OnceLock;

use http::Method;

use crate::command::parse_command_line;
use crate::domain::{
    ConfigRecords, IntegrationConfig, IntegrationId, IntegrationKind, Owner, Team, TeamId, User,
    UserId, Vm, VmId,
};
use crate::router::{Decision, RouteRequest};
use crate::snapshot::{Snapshot, SnapshotOptions};
use crate::source::Source;

/// Parses arbitrary bytes as a command line; a printed command must parse
/// back to itself (keys redacted).
pub fn command_line(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(crate::command::Parsed::Command(parsed)) = parse_command_line(line) {
        let printed = parsed.command.to_string();
        match parse_command_line(&printed) {
            Ok(crate::command::Parsed::Command(again)) => {
                assert_eq!(again.command, parsed.command.redacted(), "{printed}");
            }
            other => panic!("{printed:?} did not parse back: {other:?}"),
        }
    }
}

/// A small fixed configuration: two users, a team, VMs in and out of it.
pub fn sample_snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let (alice, bob, team) = (UserId(1), UserId(2), TeamId(1));
        let vm = |id, name: &str, owner| {
            Vm::new(
                VmId(id),
                name.parse().unwrap_or_else(|_| unreachable!()),
                owner,
            )
        };
        let mut devbox = vm(1, "devbox", alice);
        devbox.team = Some(team);
        let mut shared = IntegrationConfig::default_llm(IntegrationId(3), Owner::Team(team));
        if let IntegrationKind::Llm(s) = &mut shared.kind {
            s.anthropic = Source::Disabled;
        }
        Snapshot::build(
            ConfigRecords {
                users: vec![
                    User::new(alice, "a@example.com"),
                    User::new(bob, "b@example.com"),
                ],
                teams: vec![Team {
                    id: team,
                    name: crate::names::TeamName::from_static("core"),
                    members: [alice].into(),
                }],
                vms: vec![devbox, vm(2, "bobs", bob)],
                integrations: vec![
                    IntegrationConfig::default_llm(IntegrationId(1), Owner::User(alice)),
                    IntegrationConfig::default_reflection(IntegrationId(2), Owner::User(alice)),
                    shared,
                    IntegrationConfig::default_llm(IntegrationId(4), Owner::User(bob)),
                ],
            },
            SnapshotOptions::default(),
        )
    })
}

/// Routes arbitrary bytes, read as `VM\nHOST\nMETHOD\nTARGET\nMODEL`,
/// against [`sample_snapshot`]; a forwarded path must stay under its
/// provider's `/v1`.
pub fn route(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\n');
    let caller = parts.next().and_then(|s| s.parse::<i64>().ok()).map(VmId);
    let host = parts.next().unwrap_or("");
    let method =
        Method::from_bytes(parts.next().unwrap_or("GET").as_bytes()).unwrap_or(Method::GET);
    let target = parts.next().unwrap_or("/");
    let model = parts.next();
    let request = RouteRequest::new(caller, host, &method, target);
    if let Ok(Decision::Forward(f)) = sample_snapshot().route_with_model(&request, model) {
        let base = format!("{}/v1", f.provider.upstream_prefix());
        assert!(
            f.upstream_path.starts_with(&base),
            "{} escapes {base}",
            f.upstream_path
        );
        let path = f.upstream_path.split('?').next().unwrap_or("");
        assert!(crate::path::check_path(path).is_ok(), "{path}");
    }
}

/// Translates arbitrary bytes for an OpenAI-family upstream as an
/// Anthropic Messages request (to Chat Completions and to Responses, for
/// each target), as whole answers, as an error body, and as both streams.
/// A translated request is a JSON object naming the model, whose `tool`
/// messages answer calls made before them; a stream gives the same bytes
/// in two chunks as in one, each event's data is JSON whose `type` is the
/// event's name, `message_start` (when present) comes first, and the
/// stream ends with exactly one `message_stop` or `error`.
pub fn translate_anthropic_client(data: &[u8]) {
    use crate::translate::{messages_to_chat, messages_to_responses, StreamTranslator};
    use serde_json::Value;

    for target in [
        messages_to_chat::Target::OpenAi,
        messages_to_chat::Target::Fireworks,
    ] {
        if let Ok(t) = messages_to_chat::request(data, target) {
            let body: Value = serde_json::from_slice(&t.body).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(body["model"].as_str(), Some(t.model.as_str()));
            let mut called = Vec::new();
            for m in body["messages"].as_array().into_iter().flatten() {
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    called.push(c["id"].clone());
                }
                if m["role"] == "tool" {
                    assert!(called.contains(&m["tool_call_id"]), "{m}");
                }
            }
        }
        if let Ok(t) = messages_to_responses::request(data, target) {
            let body: Value = serde_json::from_slice(&t.body).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(body["model"].as_str(), Some(t.model.as_str()));
            assert_eq!(body["store"], Value::Bool(false));
        }
    }
    for body in [
        messages_to_chat::response(data),
        messages_to_responses::response(data),
    ]
    .into_iter()
    .flatten()
    {
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["type"], "message");
    }
    let error: Value = serde_json::from_slice(&messages_to_chat::error_response(500, data))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(error["type"], "error");

    let split = data
        .first()
        .map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let streams: [fn() -> Box<dyn StreamTranslator>; 2] = [
        || Box::new(messages_to_chat::Stream::new("m")),
        || Box::new(messages_to_responses::Stream::new("m")),
    ];
    for make in streams {
        let mut whole = Vec::new();
        let mut t = make();
        t.feed(data, &mut whole);
        t.finish(&mut whole);
        let mut parts = Vec::new();
        let mut t = make();
        t.feed(&data[..split], &mut parts);
        t.feed(&data[split..], &mut parts);
        t.finish(&mut parts);
        assert_eq!(whole, parts, "split at {split}");
        check_anthropic_stream(&whole);
    }
}

/// Checks the shape of an Anthropic event stream (see
/// [`translate_anthropic_client`]).
fn check_anthropic_stream(stream: &[u8]) {
    let mut names = Vec::new();
    let mut framer = crate::sse::SseFramer::new(false);
    let mut check = |e: crate::sse::SseEvent<'_>| {
        if e.tail {
            return;
        }
        let v: serde_json::Value =
            serde_json::from_slice(e.data).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(v["type"], e.event);
        names.push(e.event.to_owned());
    };
    framer.feed(stream, &mut check);
    assert!(framer.finish(&mut check).is_empty());
    if let Some(i) = names.iter().position(|n| n == "message_start") {
        assert_eq!(i, 0, "{names:?}");
    }
    let ends = names
        .iter()
        .filter(|n| *n == "message_stop" || *n == "error")
        .count();
    assert_eq!(ends, 1, "{names:?}");
    assert!(
        matches!(
            names.last().map(String::as_str),
            Some("message_stop" | "error")
        ),
        "{names:?}"
    );
}

/// Runs arbitrary bytes through the OpenAI-client translations (Responses
/// and Chat Completions clients, Anthropic upstream): as a request body, a
/// whole answer, an error body, and an upstream stream fed in two chunks
/// cut where the first byte says. A translated request must alternate
/// user and assistant turns; a translated stream must be well-formed
/// events (JSON data) that end in exactly one terminal event.
pub fn translate_openai_client(data: &[u8]) {
    use crate::translate::{chat_to_messages, responses_to_messages, StreamTranslator};

    for translated in [
        responses_to_messages::request(data),
        chat_to_messages::request(data),
    ]
    .into_iter()
    .flatten()
    {
        let body: serde_json::Value = match serde_json::from_slice(&translated.body) {
            Ok(body) => body,
            Err(e) => panic!("a translated request is not JSON: {e}"),
        };
        assert!(body["max_tokens"].as_u64().is_some_and(|n| n > 0));
        let messages = body["messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!messages.is_empty());
        for pair in messages.windows(2) {
            assert_ne!(pair[0]["role"], pair[1]["role"], "turns must alternate");
        }
    }
    let _ = responses_to_messages::response(data);
    let _ = chat_to_messages::response(data);
    for body in [
        responses_to_messages::error_response(502, data),
        chat_to_messages::error_response(400, data),
    ] {
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&body);
        assert!(parsed.is_ok_and(|v| v["error"]["message"].is_string()));
    }

    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let run = |mut t: Box<dyn StreamTranslator>| {
        let mut out = Vec::new();
        t.feed(&data[..cut], &mut out);
        t.feed(&data[cut..], &mut out);
        t.finish(&mut out);
        let mut events: Vec<(String, Vec<u8>)> = Vec::new();
        let mut framer = crate::sse::SseFramer::new(false);
        let mut push = |e: crate::sse::SseEvent<'_>| {
            if e.has_data {
                events.push((e.event.to_owned(), e.data.to_vec()));
            }
        };
        framer.feed(&out, &mut push);
        assert!(framer.finish(&mut push).is_empty(), "an unterminated event");
        for (_, data) in &events {
            assert!(
                data == b"[DONE]" || serde_json::from_slice::<serde_json::Value>(data).is_ok(),
                "not JSON: {}",
                String::from_utf8_lossy(data)
            );
        }
        events
    };
    let events = run(Box::new(responses_to_messages::Stream::new("m")));
    let terminal = |name: &str| {
        matches!(
            name,
            "response.completed" | "response.incomplete" | "response.failed"
        )
    };
    assert_eq!(events.iter().filter(|(n, _)| terminal(n)).count(), 1);
    assert!(events.last().is_some_and(|(n, _)| terminal(n)));
    let events = run(Box::new(chat_to_messages::Stream::new("m", true)));
    let last = events.last().map(|(_, d)| d.as_slice()).unwrap_or(b"");
    let failed =
        serde_json::from_slice::<serde_json::Value>(last).is_ok_and(|v| v.get("error").is_some());
    assert!(last == b"[DONE]" || failed);
    let ends = events.iter().filter(|(_, d)| {
        d == b"[DONE]"
            || serde_json::from_slice::<serde_json::Value>(d)
                .is_ok_and(|v| v.get("error").is_some())
    });
    assert_eq!(ends.count(), 1);
}
