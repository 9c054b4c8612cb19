//! Protocol translation for OpenAI clients served by Anthropic
//! (`translate::responses_to_messages`, `translate::chat_to_messages`):
//!
//! - recorded-shape Anthropic streams (text, tool use, parallel tool use,
//!   thinking with a freeform tool, refusal, output limit, an error in the
//!   middle, a cut stream) give the exact event sequences in
//!   `fixtures/translate/openai_client/` (set `TRANSLATE_FIXTURES=write` to rewrite them
//!   after a deliberate change, and read the diff);
//! - any chunk split, and any line-end style, gives the same output;
//! - a stream and the non-stream answer of the same content agree;
//! - request mapping: a realistic Codex CLI request, each rule's cases,
//!   and the members that cannot be expressed;
//! - round trips: what the answer side gives a client, sent back as the
//!   next request's history, is the Anthropic content it came from.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use llm_integration_core::sse::SseFramer;
use llm_integration_core::translate::{
    chat_to_messages as chat, responses_to_messages as responses, StreamTranslator, TranslateError,
};
use proptest::prelude::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Helpers.

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/translate/openai_client")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Feeds `input` in the chunks that `cuts` (sorted offsets) make, then
/// finishes.
fn run(mut t: impl StreamTranslator, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts {
        let cut = cut.clamp(at, input.len());
        t.feed(&input[at..cut], &mut out);
        at = cut;
    }
    t.feed(&input[at..], &mut out);
    t.finish(&mut out);
    out
}

fn responses_stream() -> responses::Stream {
    responses::Stream::new("claude-sonnet-4-6").created_at(1_700_000_000)
}

fn chat_stream(include_usage: bool) -> chat::Stream {
    chat::Stream::new("claude-sonnet-4-6", include_usage).created_at(1_700_000_000)
}

/// An output event: its name (empty when none) and its data, parsed when
/// JSON.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    name: String,
    data: Value,
}

/// The events of a translated stream; every data must be JSON or `[DONE]`,
/// and every line must be an event field, a comment or blank.
fn events(out: &[u8]) -> Vec<Event> {
    let text = std::str::from_utf8(out).unwrap();
    for line in text.lines() {
        assert!(
            line.is_empty()
                || line.starts_with("event: ")
                || line.starts_with("data: ")
                || line.starts_with(':'),
            "unexpected line {line:?}"
        );
    }
    let mut framer = SseFramer::new(false);
    let mut seen = Vec::new();
    let mut push = |e: llm_integration_core::sse::SseEvent<'_>| {
        if e.tail || !e.has_data {
            return;
        }
        let data = if e.data == b"[DONE]" {
            Value::from("[DONE]")
        } else {
            serde_json::from_slice(e.data).unwrap_or_else(|err| {
                panic!("not JSON: {err}: {}", String::from_utf8_lossy(e.data))
            })
        };
        seen.push(Event {
            name: e.event.to_owned(),
            data,
        });
    };
    framer.feed(out, &mut push);
    let rest = framer.finish(&mut push);
    assert!(rest.is_empty(), "an unterminated event");
    seen
}

/// The message of the error chunk that ends a translated Chat Completions
/// stream (fails when it ends otherwise).
fn ending_error(got: &[Event]) -> String {
    got.last()
        .and_then(|e| e.data["error"]["message"].as_str())
        .unwrap_or_else(|| panic!("no error chunk at the end: {got:?}"))
        .to_owned()
}

/// The message of the `response.failed` that ends a translated Responses
/// stream (fails when it ends otherwise).
fn responses_failure(got: &[Event]) -> String {
    let last = &got.last().expect("events").data;
    assert_eq!(last["type"], "response.failed", "{got:?}");
    last["response"]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

/// Compares `out` with the expected fixture `name`, event by event (JSON
/// compared as values); `TRANSLATE_FIXTURES=write` rewrites the fixture.
fn assert_fixture(name: &str, out: &[u8]) {
    if std::env::var("TRANSLATE_FIXTURES").as_deref() == Ok("write") {
        std::fs::write(fixture_path(name), out).unwrap();
    }
    let expected = fixture(name);
    let (got, want) = (events(out), events(&expected));
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: event count\n{}",
        String::from_utf8_lossy(out)
    );
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{name}: event {i}");
    }
}

/// Compares `got` with the expected JSON fixture `name`;
/// `TRANSLATE_FIXTURES=write` rewrites the fixture.
fn assert_json_fixture(name: &str, got: &Value) {
    if std::env::var("TRANSLATE_FIXTURES").as_deref() == Ok("write") {
        let text = serde_json::to_string_pretty(got).unwrap() + "\n";
        std::fs::write(fixture_path(name), text).unwrap();
    }
    let want: Value = serde_json::from_slice(&fixture(name)).unwrap();
    assert_eq!(got, &want, "{name}");
}

const STREAMS: [&str; 8] = [
    "text",
    "tool_use",
    "parallel_tool_use",
    "thinking",
    "refusal",
    "max_tokens",
    "error_mid_stream",
    "cut",
];

// ---------------------------------------------------------------------------
// Streams: the Responses API.

#[test]
fn responses_streams_match_their_fixtures() {
    for name in STREAMS {
        let input = fixture(&format!("anthropic_{name}.sse"));
        let out = run(responses_stream(), &input, &[]);
        assert_fixture(&format!("responses_{name}.sse"), &out);
        // Sequence numbers start at 0 and increase by one; the event name
        // is the data's `type`.
        for (i, e) in events(&out).iter().enumerate() {
            assert_eq!(e.data["sequence_number"], i, "{name}");
            assert_eq!(e.data["type"], e.name.as_str(), "{name}");
        }
    }
}

#[test]
fn responses_event_sequences() {
    let seq = |name: &str| {
        let out = run(
            responses_stream(),
            &fixture(&format!("anthropic_{name}.sse")),
            &[],
        );
        names(&events(&out)).join(" ")
    };
    assert_eq!(
        seq("text"),
        "response.created response.in_progress response.output_item.added \
         response.content_part.added response.output_text.delta response.output_text.delta \
         response.output_text.done response.content_part.done response.output_item.done \
         response.completed"
    );
    assert_eq!(
        seq("parallel_tool_use"),
        "response.created response.in_progress \
         response.output_item.added response.function_call_arguments.delta \
         response.function_call_arguments.delta response.function_call_arguments.done \
         response.output_item.done \
         response.output_item.added response.function_call_arguments.delta \
         response.function_call_arguments.done response.output_item.done \
         response.output_item.added response.function_call_arguments.done \
         response.output_item.done response.completed"
    );
    assert_eq!(
        seq("thinking"),
        "response.created response.in_progress \
         response.output_item.added response.reasoning_summary_part.added \
         response.reasoning_summary_text.delta response.reasoning_summary_text.delta \
         response.reasoning_summary_text.done response.reasoning_summary_part.done \
         response.output_item.done \
         response.output_item.added response.output_item.done \
         response.output_item.added response.custom_tool_call_input.delta \
         response.custom_tool_call_input.done response.output_item.done response.completed"
    );
    for name in ["refusal", "max_tokens"] {
        assert!(
            seq(name).ends_with("response.output_item.done response.incomplete"),
            "{name}"
        );
    }
    for name in ["error_mid_stream", "cut"] {
        let s = seq(name);
        assert!(
            s.ends_with("response.output_text.delta response.failed"),
            "{name}: {s}"
        );
        assert!(!s.contains("completed"), "{name}: {s}");
    }
}

#[test]
fn responses_completion_carries_the_output_and_usage() {
    let out = run(responses_stream(), &fixture("anthropic_tool_use.sse"), &[]);
    let events = events(&out);
    let last = &events.last().unwrap().data["response"];
    assert_eq!(last["id"], "resp_01Tool");
    assert_eq!(last["status"], "completed");
    assert_eq!(last["model"], "claude-sonnet-4-6");
    assert_eq!(
        last["usage"],
        json!({"input_tokens": 2112, "input_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 100},
               "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 2142})
    );
    assert_eq!(last["output"][0]["content"][0]["text"], "Let me look.");
    assert_eq!(
        last["output"][1],
        json!({"id": "fc_01Tool_1", "type": "function_call", "status": "completed", "call_id": "toolu_01A",
               "name": "shell", "arguments": "{\"command\": [\"ls\", \"-la\"]}"})
    );
    // Every item the completion lists was announced done, the same.
    let done: Vec<&Value> = events
        .iter()
        .filter(|e| e.name == "response.output_item.done")
        .map(|e| &e.data["item"])
        .collect();
    assert_eq!(
        done,
        last["output"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>()
    );
}

#[test]
fn responses_thinking_and_freeform_tools() {
    let out = run(responses_stream(), &fixture("anthropic_thinking.sse"), &[]);
    let events = events(&out);
    let output = &events.last().unwrap().data["response"]["output"];
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[0]["summary"][0]["text"], "The user wants a patch.");
    assert_eq!(
        output[0]["encrypted_content"],
        "llm-integration.anthropic.thinking:EqQBCkYIARgCIkB"
    );
    assert_eq!(
        output[1]["encrypted_content"],
        "llm-integration.anthropic.redacted_thinking:EmwKAhgBEgy3va"
    );
    assert_eq!(
        output[2],
        json!({"id": "ctc_01Think_2", "type": "custom_tool_call", "status": "completed", "call_id": "toolu_01C",
               "name": "apply_patch", "input": "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch"})
    );
}

#[test]
fn responses_failures_are_never_completions() {
    let out = run(
        responses_stream(),
        &fixture("anthropic_error_mid_stream.sse"),
        &[],
    );
    let failed = events(&out).last().unwrap().data.clone();
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(
        failed["response"]["error"],
        json!({"type": "server_error", "code": "server_is_overloaded", "message": "Overloaded"})
    );
    let out = run(responses_stream(), &fixture("anthropic_cut.sse"), &[]);
    let failed = events(&out).last().unwrap().data.clone();
    assert_eq!(failed["response"]["error"]["code"], "stream_interrupted");
    // Nothing at all from the upstream: still a well-formed failure.
    let out = run(responses_stream(), b"", &[]);
    assert_eq!(
        names(&events(&out)),
        [
            "response.created",
            "response.in_progress",
            "response.failed"
        ]
    );
    // Garbage where an event should be.
    let out = run(
        responses_stream(),
        b"event: message_start\ndata: {nope\n\n",
        &[],
    );
    assert_eq!(names(&events(&out)).last(), Some(&"response.failed"));
    // After the terminal event, nothing more.
    let mut input = fixture("anthropic_text.sse");
    input.extend_from_slice(&fixture("anthropic_text.sse"));
    let out = run(responses_stream(), &input, &[]);
    let once = run(responses_stream(), &fixture("anthropic_text.sse"), &[]);
    assert_eq!(out, once);
}

#[test]
fn pings_become_comments() {
    let out = run(responses_stream(), &fixture("anthropic_text.sse"), &[]);
    assert!(String::from_utf8(out).unwrap().contains("\n\n: ping\n\n"));
}

// ---------------------------------------------------------------------------
// Streams: Chat Completions.

#[test]
fn chat_streams_match_their_fixtures() {
    for name in STREAMS {
        let input = fixture(&format!("anthropic_{name}.sse"));
        let out = run(chat_stream(true), &input, &[]);
        assert_fixture(&format!("chat_{name}.sse"), &out);
        let without = events(&run(chat_stream(false), &input, &[]));
        // Without `include_usage`: no usage chunk, no `usage` member.
        let with = events(&out);
        let usage_chunks = with
            .iter()
            .filter(|e| e.data["choices"] == json!([]))
            .count();
        assert_eq!(with.len() - usage_chunks, without.len(), "{name}");
        assert!(
            without.iter().all(|e| e.data.get("usage").is_none()),
            "{name}"
        );
        assert!(with
            .iter()
            .filter(|e| e.data != "[DONE]" && e.data.get("error").is_none())
            .all(|e| e.data.get("usage").is_some()));
    }
}

#[test]
fn chat_tool_calls_stream_by_index() {
    let out = run(
        chat_stream(true),
        &fixture("anthropic_parallel_tool_use.sse"),
        &[],
    );
    let events = events(&out);
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = None;
    for e in &events {
        let Some(choice) = e.data["choices"].get(0) else {
            continue;
        };
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = call["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push((
                    call["id"].as_str().unwrap().into(),
                    call["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            calls[i]
                .2
                .push_str(call["function"]["arguments"].as_str().unwrap());
        }
        if !choice["finish_reason"].is_null() {
            finish = Some(choice["finish_reason"].clone());
        }
    }
    assert_eq!(
        calls,
        [
            (
                "toolu_01P".into(),
                "read_file".into(),
                "{\"path\": \"a.rs\"}".into()
            ),
            (
                "toolu_01Q".into(),
                "read_file".into(),
                "{\"path\": \"b.rs\"}".into()
            ),
            ("toolu_01R".into(), "list".into(), "{}".into()),
        ]
    );
    assert_eq!(finish, Some(json!("tool_calls")));
    let n = events.len();
    assert_eq!(
        events[n - 2].data["usage"],
        json!({"prompt_tokens": 2112, "completion_tokens": 40, "total_tokens": 2152,
               "prompt_tokens_details": {"cached_tokens": 2000}, "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    assert_eq!(events[n - 1].data, "[DONE]");
}

#[test]
fn chat_failures_end_without_done() {
    for name in ["error_mid_stream", "cut"] {
        let out = run(
            chat_stream(true),
            &fixture(&format!("anthropic_{name}.sse")),
            &[],
        );
        let events = events(&out);
        assert!(events.iter().all(|e| e.data != "[DONE]"), "{name}");
        assert!(
            events.last().unwrap().data["error"]["message"].is_string(),
            "{name}"
        );
    }
    let reasons: Vec<Value> = ["refusal", "max_tokens", "text"]
        .iter()
        .map(|name| {
            let events = events(&run(
                chat_stream(false),
                &fixture(&format!("anthropic_{name}.sse")),
                &[],
            ));
            events[events.len() - 2].data["choices"][0]["finish_reason"].clone()
        })
        .collect();
    assert_eq!(
        reasons,
        [json!("content_filter"), json!("length"), json!("stop")]
    );
}

// ---------------------------------------------------------------------------
// Split invariance.

/// The stream re-framed with `sep` as its line end.
fn reframe(input: &[u8], sep: &str) -> Vec<u8> {
    String::from_utf8(input.to_vec())
        .unwrap()
        .replace('\n', sep)
        .into_bytes()
}

proptest! {
    #[test]
    fn any_split_gives_the_same_output(
        which in 0..STREAMS.len(),
        sep in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        mut cuts in prop::collection::vec(0usize..4000, 0..40),
    ) {
        let input = reframe(&fixture(&format!("anthropic_{}.sse", STREAMS[which])), sep);
        cuts.sort_unstable();
        let whole = run(responses_stream(), &fixture(&format!("anthropic_{}.sse", STREAMS[which])), &[]);
        prop_assert_eq!(run(responses_stream(), &input, &cuts), whole);
        let whole = run(chat_stream(true), &fixture(&format!("anthropic_{}.sse", STREAMS[which])), &[]);
        prop_assert_eq!(run(chat_stream(true), &input, &cuts), whole);
    }
}

// ---------------------------------------------------------------------------
// A stream and the non-stream answer agree.

/// An assistant content block of the shapes both sides express.
fn block() -> impl Strategy<Value = Value> {
    let text = "[a-zA-Z0-9 .,\n\"\\\\{}é]{1,40}";
    prop_oneof![
        text.prop_map(|t| json!({"type": "text", "text": t})),
        (text, "[A-Za-z0-9+/]{4,20}")
            .prop_map(|(t, s)| json!({"type": "thinking", "thinking": t, "signature": s})),
        (
            "[a-z_]{1,12}",
            prop::collection::btree_map("[a-z]{1,6}", text, 0..3),
            any::<bool>()
        )
            .prop_map(|(name, input, custom)| {
                if custom {
                    json!({"type": "tool_use", "name": format!("{name}__freeform"),
                           "input": {"input": input.values().cloned().collect::<String>()}})
                } else {
                    json!({"type": "tool_use", "name": name, "input": input})
                }
            }),
    ]
}

/// Assistant content as Anthropic orders it: thinking first, tool uses
/// last; tool use ids numbered.
fn content() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(block(), 1..6).prop_map(|mut blocks| {
        blocks.sort_by_key(|b| match b["type"].as_str() {
            Some("thinking") => 0,
            Some("text") => 1,
            _ => 2,
        });
        for (i, b) in blocks.iter_mut().enumerate() {
            if b["type"] == "tool_use" {
                b["id"] = json!(format!("toolu_{i}"));
            }
        }
        blocks
    })
}

fn message(content: &[Value], stop_reason: &str) -> Value {
    json!({"id": "msg_01Same", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
           "content": content, "stop_reason": stop_reason, "stop_sequence": null,
           "usage": {"input_tokens": 5, "cache_creation_input_tokens": 1, "cache_read_input_tokens": 2, "output_tokens": 9}})
}

/// The Anthropic stream of `message`, each text piece cut at `piece`
/// characters.
fn stream_of(message: &Value, piece: usize) -> Vec<u8> {
    let mut out = String::new();
    let mut ev = |name: &str, data: Value| {
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    ev(
        "message_start",
        json!({"type": "message_start", "message": start}),
    );
    let chunks = |s: &str| -> Vec<String> {
        let chars: Vec<char> = s.chars().collect();
        chars
            .chunks(piece.max(1))
            .map(|c| c.iter().collect())
            .collect()
    };
    for (index, block) in message["content"].as_array().unwrap().iter().enumerate() {
        let mut empty = block.clone();
        let deltas: Vec<Value> = match block["type"].as_str().unwrap() {
            "text" => {
                empty["text"] = json!("");
                chunks(block["text"].as_str().unwrap())
                    .into_iter()
                    .map(|t| json!({"type": "text_delta", "text": t}))
                    .collect()
            }
            "thinking" => {
                empty["thinking"] = json!("");
                empty["signature"] = json!("");
                let mut d: Vec<Value> = chunks(block["thinking"].as_str().unwrap())
                    .into_iter()
                    .map(|t| json!({"type": "thinking_delta", "thinking": t}))
                    .collect();
                d.push(json!({"type": "signature_delta", "signature": block["signature"]}));
                d
            }
            _ => {
                empty["input"] = json!({});
                chunks(&block["input"].to_string())
                    .into_iter()
                    .map(|t| json!({"type": "input_json_delta", "partial_json": t}))
                    .collect()
            }
        };
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": empty}),
        );
        for delta in deltas {
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            );
        }
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
    }
    ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": null},
               "usage": {"output_tokens": message["usage"]["output_tokens"]}}),
    );
    ev("message_stop", json!({"type": "message_stop"}));
    out.into_bytes()
}

/// Tool arguments compared as JSON (the stream carries Anthropic's JSON
/// text, the non-stream answer this side's serialization of it).
fn normalize_arguments(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "arguments" {
                    if let Some(s) = v.as_str() {
                        *v = serde_json::from_str(s).unwrap();
                    }
                } else {
                    normalize_arguments(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_arguments),
        _ => {}
    }
}

proptest! {
    #[test]
    fn stream_and_whole_answer_agree(
        content in content(),
        piece in 1usize..8,
        stop in prop::sample::select(vec!["end_turn", "tool_use", "max_tokens", "refusal"]),
    ) {
        let message = message(&content, stop);
        let body = serde_json::to_vec(&message).unwrap();
        let sse = stream_of(&message, piece);

        // Responses: the last event's response is the non-stream response.
        let mut whole: Value = serde_json::from_slice(&responses::response_at(&body, 1_700_000_000).unwrap()).unwrap();
        let seen = events(&run(responses_stream(), &sse, &[]));
        let mut streamed = seen.last().unwrap().data["response"].clone();
        normalize_arguments(&mut whole);
        normalize_arguments(&mut streamed);
        prop_assert_eq!(streamed, whole);

        // Chat: the chunks accumulated are the non-stream message.
        let whole: Value = serde_json::from_slice(&chat::response_at(&body, 1_700_000_000).unwrap()).unwrap();
        let seen = events(&run(chat_stream(true), &sse, &[]));
        let (mut text, mut reasoning, mut calls, mut finish) = (String::new(), String::new(), Vec::<Value>::new(), Value::Null);
        for e in &seen {
            let Some(choice) = e.data["choices"].get(0) else { continue };
            let delta = &choice["delta"];
            text.push_str(delta["content"].as_str().unwrap_or(""));
            reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or(""));
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let i = call["index"].as_u64().unwrap() as usize;
                if i == calls.len() {
                    calls.push(json!({"id": call["id"], "type": "function",
                                      "function": {"name": call["function"]["name"], "arguments": ""}}));
                }
                let args = format!("{}{}", calls[i]["function"]["arguments"].as_str().unwrap(),
                                   call["function"]["arguments"].as_str().unwrap());
                calls[i]["function"]["arguments"] = json!(args);
            }
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].clone();
            }
        }
        for call in &mut calls {
            if call["function"]["arguments"] == "" {
                call["function"]["arguments"] = json!("{}");
            }
        }
        let m = &whole["choices"][0]["message"];
        prop_assert_eq!(m["content"].as_str().unwrap_or(""), text);
        prop_assert_eq!(m["reasoning_content"].as_str().unwrap_or(""), reasoning);
        let mut calls = Value::from(calls);
        let mut want_calls = m.get("tool_calls").cloned().unwrap_or(json!([]));
        normalize_arguments(&mut calls);
        normalize_arguments(&mut want_calls);
        prop_assert_eq!(calls, want_calls);
        prop_assert_eq!(&finish, &whole["choices"][0]["finish_reason"]);
        prop_assert_eq!(&seen[seen.len() - 2].data["usage"], &whole["usage"]);
    }

    /// What the Responses answer gives a client, sent back as history, is
    /// the Anthropic content it came from.
    #[test]
    fn responses_history_round_trips(content in content()) {
        let body = serde_json::to_vec(&message(&content, "end_turn")).unwrap();
        let answer: Value = serde_json::from_slice(&responses::response(&body).unwrap()).unwrap();
        let mut input = vec![json!({"role": "user", "content": "go"})];
        input.extend(answer["output"].as_array().unwrap().iter().cloned());
        input.push(json!({"role": "user", "content": "next"}));
        let request = json!({"model": "claude-sonnet-4-6", "input": input});
        let translated = responses::request(&serde_json::to_vec(&request).unwrap()).unwrap();
        prop_assert!(translated.dropped.is_empty(), "{:?}", translated.dropped);
        let upstream: Value = serde_json::from_slice(&translated.body).unwrap();
        let mut want = content.clone();
        for b in &mut want {
            if let Some(input) = b.get("input") {
                // Through JSON text and back: the same value.
                b["input"] = input.clone();
            }
        }
        prop_assert_eq!(&upstream["messages"][1]["content"], &Value::from(want));
    }

    /// The same for a Chat Completions client, for what it can express
    /// (text and function tool calls; thinking is shown, not sent back).
    #[test]
    fn chat_history_round_trips(
        text in "[a-zA-Z0-9 .,é]{1,40}",
        tools in prop::collection::vec(("[a-z_]{1,12}", prop::collection::btree_map("[a-z]{1,6}", "[a-z ]{0,9}", 0..3)), 0..3),
    ) {
        let mut content = vec![json!({"type": "text", "text": text})];
        for (i, (name, input)) in tools.into_iter().enumerate() {
            content.push(json!({"type": "tool_use", "id": format!("toolu_{i}"), "name": name, "input": input}));
        }
        let body = serde_json::to_vec(&message(&content, "end_turn")).unwrap();
        let answer: Value = serde_json::from_slice(&chat::response(&body).unwrap()).unwrap();
        let request = json!({"model": "claude-sonnet-4-6", "messages": [
            {"role": "user", "content": "go"},
            answer["choices"][0]["message"],
            {"role": "user", "content": "next"},
        ]});
        let translated = chat::request(&serde_json::to_vec(&request).unwrap()).unwrap();
        prop_assert!(translated.dropped.is_empty(), "{:?}", translated.dropped);
        let upstream: Value = serde_json::from_slice(&translated.body).unwrap();
        prop_assert_eq!(&upstream["messages"][1]["content"], &Value::from(content));
    }
}

// ---------------------------------------------------------------------------
// Request mapping: the Responses API.

fn responses_request(body: Value) -> (Value, Vec<String>) {
    let t = responses::request(&serde_json::to_vec(&body).unwrap()).unwrap();
    (
        serde_json::from_slice(&t.body).unwrap(),
        t.dropped.fields().to_vec(),
    )
}

fn responses_error(body: Value) -> TranslateError {
    responses::request(&serde_json::to_vec(&body).unwrap()).unwrap_err()
}

fn field_of(e: TranslateError) -> String {
    match e {
        TranslateError::Unexpressible { field, .. } => field,
        other => panic!("not unexpressible: {other:?}"),
    }
}

#[test]
fn a_codex_request() {
    let body = fixture("codex_request.json");
    let translated = responses::request(&body).unwrap();
    assert_eq!(translated.model, "claude-sonnet-4-6");
    assert!(translated.stream);
    assert_eq!(
        translated.dropped.fields(),
        [
            "client_metadata",
            "prompt_cache_key",
            "text.verbosity",
            "tools[2].format",
            "tools[3]",
            "tools[4]",
        ]
    );
    let got: Value = serde_json::from_slice(&translated.body).unwrap();
    assert_json_fixture("codex_request.anthropic.json", &got);
}

/// Codex's loop: the items a streamed answer announced done go back as the
/// next request's history with the tool's output; Anthropic gets its own
/// thinking blocks back whole, so thinking stays on for the tool turn.
#[test]
fn a_codex_tool_loop_keeps_thinking_on() {
    let out = run(responses_stream(), &fixture("anthropic_thinking.sse"), &[]);
    let mut input = vec![json!({"type": "message", "role": "user",
                                "content": [{"type": "input_text", "text": "Add a.txt"}]})];
    for e in events(&out) {
        if e.name == "response.output_item.done" {
            input.push(e.data["item"].clone());
        }
    }
    input.push(
        json!({"type": "custom_tool_call_output", "call_id": "toolu_01C", "output": "Success"}),
    );
    let (body, dropped) = responses_request(json!({
        "model": "claude-sonnet-4-6",
        "input": input,
        "tools": [{"type": "custom", "name": "apply_patch", "format": {"type": "text"}}],
        "reasoning": {"effort": "medium", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "store": false,
        "stream": true,
    }));
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 8192})
    );
    assert_eq!(
        body["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": "The user wants a patch.", "signature": "EqQBCkYIARgCIkB"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va"},
            {"type": "tool_use", "id": "toolu_01C", "name": "apply_patch__freeform",
             "input": {"input": "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch"}},
        ])
    );
    assert_eq!(
        body["messages"][2]["content"],
        json!([{"type": "tool_result", "tool_use_id": "toolu_01C", "content": "Success",
                "cache_control": {"type": "ephemeral"}}])
    );
}

#[test]
fn responses_turns_merge_and_instructions_lead() {
    let (body, dropped) = responses_request(json!({
        "model": "m",
        "instructions": "You are terse.",
        "input": [
            {"type": "message", "role": "developer", "content": "Sandbox: read-only."},
            {"role": "user", "content": [{"type": "input_text", "text": "Look"},
                                         {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "high"}]},
            {"role": "user", "content": "and fix"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Done.", "annotations": []}]},
            {"role": "developer", "content": "Sandbox: writable."},
            {"role": "user", "content": "thanks"},
        ],
    }));
    // The later developer message has no system turn to be: user text in
    // place, its role named.
    assert_eq!(dropped, ["input[1].content[1].detail", "input[4].role"]);
    assert_eq!(
        body["system"],
        json!([{"type": "text", "text": "You are terse."},
               {"type": "text", "text": "Sandbox: read-only.", "cache_control": {"type": "ephemeral"}}])
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": "Look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                {"type": "text", "text": "and fix"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Done."}]},
            {"role": "user", "content": [{"type": "text", "text": "Sandbox: writable."},
                                         {"type": "text", "text": "thanks", "cache_control": {"type": "ephemeral"}}]},
        ])
    );
    assert_eq!(body["max_tokens"], 32_000);
    assert!(body.get("stream").is_none());
}

#[test]
fn responses_reasoning_rules() {
    let base = |extra: Value| {
        let mut b = json!({"model": "m", "input": "hi", "reasoning": {"effort": "high", "summary": "auto"}});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let (body, dropped) = responses_request(base(json!({})));
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 16_384})
    );
    assert!(dropped.is_empty());
    // The budget stays below the output limit.
    let (body, _) = responses_request(base(json!({"max_output_tokens": 6000})));
    assert_eq!(body["thinking"]["budget_tokens"], 5999);
    assert_eq!(body["max_tokens"], 6000);
    // No room for the smallest budget: thinking off, and said so.
    let (body, dropped) = responses_request(base(json!({"max_output_tokens": 800})));
    assert!(body.get("thinking").is_none());
    assert_eq!(dropped, ["reasoning.effort"]);
    // A forced tool and thinking do not mix upstream.
    let tools = json!([{"type": "function", "name": "f", "parameters": {"type": "object"}}]);
    let (body, dropped) =
        responses_request(base(json!({"tools": tools, "tool_choice": "required"})));
    assert!(body.get("thinking").is_none());
    assert_eq!(body["tool_choice"], json!({"type": "any"}));
    assert_eq!(dropped, ["reasoning.effort"]);
    // Thinking with a temperature: the temperature goes.
    let (body, dropped) = responses_request(base(json!({"temperature": 0.2})));
    assert!(body.get("temperature").is_none());
    assert_eq!(dropped, ["temperature"]);
    // A detailed summary cannot be asked for.
    let (_, dropped) = responses_request(
        json!({"model": "m", "input": "hi", "reasoning": {"effort": "low", "summary": "detailed"}}),
    );
    assert_eq!(dropped, ["reasoning.summary"]);
    // A tool turn without a thinking block: thinking off.
    let (body, dropped) = responses_request(base(json!({"input": [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ]})));
    assert!(body.get("thinking").is_none());
    assert_eq!(dropped, ["reasoning.effort"]);
    // OpenAI's own encrypted reasoning: dropped, named.
    let (body, dropped) = responses_request(json!({"model": "m", "input": [
        {"role": "user", "content": "go"},
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAB..."},
        {"role": "assistant", "content": "ok"},
    ]}));
    // (Ending with the assistant's turn, it is a prefill for Claude.)
    assert_eq!(
        dropped,
        [
            "input[1]",
            "prefill: the last message is the assistant's, which Claude continues"
        ]
    );
    assert_eq!(
        body["messages"][1]["content"],
        json!([{"type": "text", "text": "ok", "cache_control": {"type": "ephemeral"}}])
    );
    assert!(
        responses::request(br#"{"model":"m","input":"x","reasoning":{"effort":"max"}}"#).is_err()
    );
}

#[test]
fn responses_tools_and_choices() {
    let tools = json!([
        {"type": "function", "name": "shell", "description": "Run", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}, "strict": true},
        {"type": "custom", "name": "apply_patch", "description": "Patch", "format": {"type": "text"}},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
    ]);
    let (body, dropped) = responses_request(json!({"model": "m", "input": "x", "tools": tools,
        "tool_choice": {"type": "custom", "name": "apply_patch"}, "parallel_tool_calls": false}));
    assert_eq!(dropped, ["tools[0].strict", "tools[2]"]);
    assert_eq!(
        body["tools"][0],
        json!({"name": "shell", "description": "Run",
        "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}}})
    );
    assert_eq!(body["tools"][1]["name"], "apply_patch__freeform");
    assert_eq!(
        body["tools"][1]["input_schema"]["required"],
        json!(["input"])
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "apply_patch__freeform", "disable_parallel_tool_use": true})
    );
    let (body, _) = responses_request(
        json!({"model": "m", "input": "x", "tools": tools, "tool_choice": "none", "parallel_tool_calls": false}),
    );
    assert_eq!(body["tool_choice"], json!({"type": "none"}));
    // Without tools, tool_choice auto is simply not sent.
    let (body, _) = responses_request(json!({"model": "m", "input": "x", "tool_choice": "auto"}));
    assert!(body.get("tool_choice").is_none());
    for (choice, field) in [
        (
            json!({"type": "function", "name": "nope"}),
            "tool_choice.name",
        ),
        (json!({"type": "web_search"}), "tool_choice.type"),
        (
            json!({"type": "allowed_tools", "mode": "auto", "tools": []}),
            "tool_choice",
        ),
    ] {
        let e = responses_error(
            json!({"model": "m", "input": "x", "tools": [tools[0]], "tool_choice": choice}),
        );
        assert_eq!(field_of(e), field);
    }
    // Only built-in tools offered (all dropped): a forced tool cannot be.
    let e = responses_error(
        json!({"model": "m", "input": "x", "tools": [tools[2]], "tool_choice": "required"}),
    );
    assert_eq!(field_of(e), "tool_choice");
    let e = responses_error(
        json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "x__freeform"}]}),
    );
    assert_eq!(field_of(e), "tools[0].name");
}

#[test]
fn responses_tool_results_and_calls() {
    let (body, dropped) = responses_request(json!({"model": "m", "input": [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "call:1", "name": "f", "arguments": "{\"a\":1}", "id": "fc_1", "status": "completed"},
        {"type": "function_call", "call_id": "call:2", "name": "f", "arguments": ""},
        {"type": "function_call_output", "call_id": "call:1", "output": [
            {"type": "input_text", "text": "seen"},
            {"type": "input_image", "image_url": "https://x.test/a.png"}]},
        {"type": "function_call_output", "call_id": "call:2", "output": "ok"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "q"}},
    ]}));
    assert_eq!(dropped, ["input[5]"]);
    assert_eq!(
        body["messages"][1]["content"],
        json!([
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "call_2", "name": "f", "input": {}},
        ])
    );
    assert_eq!(
        body["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "call_1", "content": [
        {"type": "text", "text": "seen"},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}]})
    );
    assert_eq!(body["messages"][2]["content"][1]["tool_use_id"], "call_2");
    let e = responses_error(json!({"model": "m", "input": [
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]}));
    assert_eq!(field_of(e), "input[0].arguments");
}

#[test]
fn responses_members_without_counterpart() {
    for (member, value, field) in [
        (
            "previous_response_id",
            json!("resp_1"),
            "previous_response_id",
        ),
        ("conversation", json!("conv_1"), "conversation"),
        ("background", json!(true), "background"),
        ("prompt", json!({"id": "pmpt_1"}), "prompt"),
        ("temperature", json!(1.5), "temperature"),
        (
            "text",
            json!({"format": {"type": "json_schema", "name": "x", "schema": {}}}),
            "text.format",
        ),
    ] {
        let e = responses_error(json!({"model": "m", "input": "x", member: value}));
        assert_eq!(field_of(e), field, "{member}");
    }
    for (input, field) in [
        (
            json!([{"type": "item_reference", "id": "msg_1"}]),
            "input[0]",
        ),
        (
            json!([{"type": "local_shell_call", "call_id": "c"}]),
            "input[0].type",
        ),
        (
            json!([{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]),
            "input[0].content[0].file_id",
        ),
        (
            json!([{"role": "user", "content": [{"type": "input_audio"}]}]),
            "input[0].content[0].type",
        ),
        (
            json!([{"role": "developer", "content": [{"type": "input_image", "image_url": "https://x.test/a.png"}]}]),
            "input[0].content",
        ),
        (json!([]), "input"),
    ] {
        assert_eq!(
            field_of(responses_error(json!({"model": "m", "input": input}))),
            field
        );
    }
    let (body, dropped) = responses_request(
        json!({"model": "m", "input": "x", "store": true, "metadata": {"k": "v"},
        "user": "u-1", "service_tier": "default", "truncation": "auto", "include": ["message.output_text.logprobs"],
        "top_p": 0.5, "temperature": 0.5, "stream": false}),
    );
    assert_eq!(
        dropped,
        ["include[0]", "metadata", "store", "truncation", "top_p"]
    );
    assert_eq!(body["metadata"], json!({"user_id": "u-1"}));
    assert_eq!(body["service_tier"], "standard_only");
    assert_eq!(body["temperature"], 0.5);
    for bad in [
        &b"[]"[..],
        b"{",
        br#"{"input":"x"}"#,
        br#"{"model":"m","input":5}"#,
        br#"{"model":"m","input":[{"type":"function_call"}]}"#,
    ] {
        assert!(
            matches!(responses::request(bad), Err(TranslateError::InvalidBody(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

// ---------------------------------------------------------------------------
// Request mapping: Chat Completions.

fn chat_request(body: Value) -> (Value, Vec<String>) {
    let t = chat::request(&serde_json::to_vec(&body).unwrap()).unwrap();
    (
        serde_json::from_slice(&t.body).unwrap(),
        t.dropped.fields().to_vec(),
    )
}

fn chat_error(body: Value) -> TranslateError {
    chat::request(&serde_json::to_vec(&body).unwrap()).unwrap_err()
}

#[test]
fn a_chat_conversation_with_tools() {
    let request = json!({
        "model": "claude-haiku-4-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is here?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/", "detail": "low"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "ls", "arguments": "{\"dir\":\".\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "ls", "arguments": "{\"dir\":\"src\"}"}}]},
            {"role": "tool", "tool_call_id": "call_a", "content": "a.rs"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "b.rs"}]},
            {"role": "user", "content": "Thanks", "name": "ann"},
        ],
        "tools": [{"type": "function", "function": {"name": "ls", "description": "List", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "ls"}},
        "max_completion_tokens": 1000,
        "max_tokens": 5,
        "stop": "END",
        "temperature": 0.3,
        "n": 1,
        "seed": 7,
        "stream": true,
        "stream_options": {"include_usage": true},
        "response_format": {"type": "text"},
        "logprobs": false,
        "frequency_penalty": 0,
        "user": "u-2",
    });
    let translated = chat::request(&serde_json::to_vec(&request).unwrap()).unwrap();
    assert!(translated.stream);
    assert!(chat::include_usage(&serde_json::to_vec(&request).unwrap()));
    assert!(!chat::include_usage(br#"{"stream":true}"#));
    // An image's `detail` has no Anthropic counterpart either.
    assert_eq!(
        translated.dropped.fields(),
        [
            "seed",
            "messages[5].name",
            "messages[].content[].image_url.detail"
        ]
    );
    let body: Value = serde_json::from_slice(&translated.body).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "claude-haiku-4-5",
            "max_tokens": 1000,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is here?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_a", "name": "ls", "input": {"dir": "."}},
                    {"type": "tool_use", "id": "call_b", "name": "ls", "input": {"dir": "src"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_a", "content": "a.rs"},
                    {"type": "tool_result", "tool_use_id": "call_b", "content": [{"type": "text", "text": "b.rs"}]},
                    {"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}}]},
            ],
            "tools": [{"name": "ls", "description": "List", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "ls"},
            "temperature": 0.3,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-2"},
            "stream": true,
        })
    );
}

#[test]
fn chat_members_without_counterpart() {
    for (member, value, field) in [
        ("n", json!(2), "n"),
        (
            "response_format",
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
            "response_format",
        ),
        (
            "response_format",
            json!({"type": "json_object"}),
            "response_format",
        ),
        ("functions", json!([{"name": "f"}]), "functions"),
        (
            "tools",
            json!([{"type": "custom", "custom": {"name": "p"}}]),
            "tools[0].type",
        ),
        ("temperature", json!(2), "temperature"),
    ] {
        let e = chat_error(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], member: value}),
        );
        assert_eq!(field_of(e), field, "{member}");
    }
    for (message, field) in [
        (
            json!({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"role": "user", "content": [{"type": "file", "file": {"file_id": "file_1"}}]}),
            "messages[0].content[0].file",
        ),
        (
            json!({"role": "function", "name": "f", "content": "x"}),
            "messages[0].role",
        ),
        (
            json!({"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "nope"}}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
    ] {
        assert_eq!(
            field_of(chat_error(json!({"model": "m", "messages": [message]}))),
            field
        );
    }
    let (body, dropped) = chat_request(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "reasoning_effort": "low", "presence_penalty": 0.5, "logit_bias": {"1": 2}, "store": true}),
    );
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 4096})
    );
    assert_eq!(dropped, ["logit_bias", "presence_penalty", "store"]);
    assert!(matches!(
        chat::request(br#"{"model":"m"}"#),
        Err(TranslateError::InvalidBody(_))
    ));
}

// ---------------------------------------------------------------------------
// Whole answers and errors.

#[test]
fn whole_answers() {
    let body = fixture("anthropic_message.json");
    let got: Value =
        serde_json::from_slice(&responses::response_at(&body, 1_700_000_000).unwrap()).unwrap();
    assert_json_fixture("responses_message.json", &got);
    let got: Value =
        serde_json::from_slice(&chat::response_at(&body, 1_700_000_000).unwrap()).unwrap();
    assert_json_fixture("chat_message.json", &got);
    let error =
        br#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"}}"#;
    assert!(matches!(
        responses::response(error),
        Err(TranslateError::InvalidBody(_))
    ));
    assert!(matches!(
        chat::response(b"nope"),
        Err(TranslateError::InvalidBody(_))
    ));
}

#[test]
fn error_bodies() {
    let cases = [
        (
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"Slow down"},"request_id":"req_1"}"#,
            json!({"error": {"message": "Slow down", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}}),
        ),
        (
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 201000 tokens > 200000 maximum"}}"#,
            json!({"error": {"message": "prompt is too long: 201000 tokens > 200000 maximum", "type": "invalid_request_error", "param": null, "code": "context_length_exceeded"}}),
        ),
        (
            402,
            r#"{"type":"error","error":{"type":"billing_error","message":"Credit"}}"#,
            json!({"error": {"message": "Credit", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
        ),
        (
            401,
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
            json!({"error": {"message": "invalid x-api-key", "type": "authentication_error", "param": null, "code": null}}),
        ),
        (
            503,
            "upstream connect error",
            json!({"error": {"message": "the upstream answered 503: upstream connect error", "type": "server_error", "param": null, "code": null}}),
        ),
    ];
    for (status, body, want) in cases {
        for got in [
            responses::error_response(status, body.as_bytes()),
            chat::error_response(status, body.as_bytes()),
        ] {
            assert_eq!(
                serde_json::from_slice::<Value>(&got).unwrap(),
                want,
                "{body}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The fuzz target's entry point, replayed.

#[test]
fn fuzz_entry_point_on_the_seeds() {
    let seeds =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/translate_openai_client");
    let mut count = 0;
    for entry in std::fs::read_dir(seeds).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        llm_integration_core::fuzzing::translate_openai_client(&data);
        count += 1;
    }
    assert!(count >= 8);
}

proptest! {
    #[test]
    fn fuzz_entry_point_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
        llm_integration_core::fuzzing::translate_openai_client(&data);
    }

    /// Fixtures with bytes overwritten, removed or repeated: nearly valid
    /// input reaches deeper than random bytes.
    #[test]
    fn fuzz_entry_point_on_damaged_fixtures(
        which in prop::sample::select(vec![
            "anthropic_text.sse", "anthropic_thinking.sse", "anthropic_parallel_tool_use.sse",
            "codex_request.json", "anthropic_message.json",
        ]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..6),
    ) {
        let mut data = fixture(which);
        for (at, kind, byte) in edits {
            if data.is_empty() {
                break;
            }
            let i = at.index(data.len());
            match kind {
                0 => data[i] = byte,
                1 => {
                    data.remove(i);
                }
                _ => {
                    let end = (i + usize::from(byte)).min(data.len());
                    let piece = data[i..end].to_vec();
                    data.splice(i..i, piece);
                }
            }
        }
        llm_integration_core::fuzzing::translate_openai_client(&data);
    }
}

/// An Anthropic stream whose tool use's input, joined, is `pieces`.
fn anthropic_tool_stream(pieces: &[&str]) -> String {
    let mut s = String::new();
    let mut event = |name: &str, data: Value| {
        s.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [], "stop_reason": null, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
    );
    event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {}}}),
    );
    for piece in pieces {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}),
        );
    }
    event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    s
}

/// A tool use whose input is not a JSON object (what Anthropic's
/// `tool_use.input` must be) is an error to an OpenAI client, streamed
/// (`response.failed`, an error chunk) or not (the whole answer refused),
/// never a call the client cannot read; in any split.
#[test]
fn a_tool_use_whose_input_is_not_an_object_is_an_error() {
    for bad in [
        &["not ", "json"][..],
        &["[1,", "2]"],
        &["\"text\""],
        &["{\"a\":", "1} {}"],
    ] {
        let input = anthropic_tool_stream(bad);
        let cuts: Vec<usize> = (1..input.len()).step_by(17).collect();
        for cuts in [vec![], cuts] {
            let out = run(responses_stream(), input.as_bytes(), &cuts);
            let got = events(&out);
            let kinds: Vec<&str> = got
                .iter()
                .map(|e| e.data["type"].as_str().unwrap_or(""))
                .collect();
            assert_eq!(kinds.last(), Some(&"response.failed"), "{bad:?}: {kinds:?}");
            assert!(!kinds.contains(&"response.completed"), "{kinds:?}");
            assert!(
                !kinds.contains(&"response.function_call_arguments.done"),
                "{kinds:?}"
            );
            let out = run(chat_stream(true), input.as_bytes(), &cuts);
            let got = events(&out);
            let last = &got.last().expect("events").data;
            assert!(
                last["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("not a JSON object"),
                "{bad:?}: {last}"
            );
            assert!(
                got.iter()
                    .all(|e| e.data["choices"][0]["finish_reason"].is_null()),
                "{bad:?}"
            );
        }
    }
    // A whole input, in pieces, passes.
    let input = anthropic_tool_stream(&["{\"path\":", " \"a.rs\"}"]);
    let got = events(&run(responses_stream(), input.as_bytes(), &[]));
    assert_eq!(
        got.last().map(|e| e.data["type"].clone()),
        Some(json!("response.completed"))
    );
    // Not streamed: the whole answer is refused.
    let message = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": "not an object"}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 7}}).to_string();
    let e = chat::response(message.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("content[0].input"), "{e}");
    let e = responses::response(message.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("content[0].input"), "{e}");
}

/// An Anthropic answer whose `content` is not an array is not an empty
/// success: the whole answer is refused.
#[test]
fn an_answer_without_a_content_array_is_refused() {
    for content in [json!("just a string"), Value::Null, json!({"type": "text"})] {
        let mut message = json!({"id": "msg_1", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-6", "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "output_tokens": 7}});
        if !content.is_null() {
            message["content"] = content.clone();
        }
        let body = message.to_string();
        assert!(chat::response(body.as_bytes()).is_err(), "{content}");
        assert!(responses::response(body.as_bytes()).is_err(), "{content}");
    }
}

/// Anthropic answers an OpenAI client could not use are errors, from
/// either OpenAI API, streamed or not: a tool use never stopped with
/// partial input, one started with a non-object input or without a name,
/// a text block without text.
#[test]
fn unusable_anthropic_answers_are_errors() {
    let mut unstopped = anthropic_tool_stream(&["{\"a\":"]);
    unstopped = unstopped.replace(
        "event: content_block_stop\ndata: {\"index\":0,\"type\":\"content_block_stop\"}\n\n",
        "",
    );
    assert!(!unstopped.contains("content_block_stop"), "{unstopped}");
    let array_start = anthropic_tool_stream(&[]).replace("\"input\":{}", "\"input\":[1]");
    let nameless = anthropic_tool_stream(&["{}"]).replace("\"name\":\"read_file\",", "");
    for (what, input) in [
        ("unstopped", unstopped),
        ("array start", array_start),
        ("nameless", nameless),
    ] {
        let out = run(chat_stream(true), input.as_bytes(), &[]);
        let got = events(&out);
        assert!(
            got.last().expect("events").data.get("error").is_some(),
            "{what}: chat"
        );
        assert!(
            got.iter()
                .all(|e| e.data["choices"][0]["finish_reason"].is_null()),
            "{what}"
        );
        let out = run(responses_stream(), input.as_bytes(), &[]);
        let got = events(&out);
        assert_eq!(
            got.last().map(|e| e.data["type"].clone()),
            Some(json!("response.failed")),
            "{what}: responses"
        );
    }
    for content in [
        json!([{"type": "tool_use", "id": "toolu_1", "input": {}}]),
        json!([{"type": "text"}]),
    ] {
        let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
            "content": content, "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 7}})
        .to_string();
        assert!(chat::response(body.as_bytes()).is_err(), "{content}");
        assert!(responses::response(body.as_bytes()).is_err(), "{content}");
    }
}

/// A data URL's media type and data are checked before they become an
/// Anthropic source: one of Anthropic's image types, base64 text.
#[test]
fn data_urls_are_checked_before_they_become_sources() {
    let request = |url: &str| {
        json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}]})
        .to_string()
    };
    let ok =
        chat::request(request("data:image/PNG;base64,iVBORw0KGgo=").as_bytes()).expect("a PNG");
    let body: Value = serde_json::from_slice(&ok.body).expect("JSON");
    assert_eq!(
        body["messages"][0]["content"][0]["source"]["media_type"],
        "image/png"
    );
    for url in [
        "data:image/png\";x=1;base64,iVBO",
        "data:image/png;charset=utf-8;base64,iVBO",
        "data:image/svg+xml;base64,PHN2Zz4=",
        "data:image/png;base64,@@@###",
        "data:image/png;base64,",
    ] {
        assert!(chat::request(request(url).as_bytes()).is_err(), "{url}");
    }
}

/// Members neither API reads, at any depth of what is translated, are
/// named in the dropped list; items and tools dropped whole are named
/// once, by themselves.
#[test]
fn unread_members_of_openai_requests_are_named() {
    let chat_body = json!({"model": "claude-sonnet-4-6", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi", "bogus4": 1}]},
        {"role": "assistant", "bogus": 1, "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "bogus3": 1, "function": {"name": "f", "arguments": "{}", "bogus": 1}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok", "bogus5": 1}],
        "tools": [{"type": "function", "bogus2": 1, "function": {"name": "f", "parameters": {"type": "object"}, "bogus": 1}}]})
    .to_string();
    let out = chat::request(chat_body.as_bytes()).expect("translated");
    let fields = out.dropped.fields().join(", ");
    for name in [
        "messages[].content[].bogus4",
        "messages[].bogus",
        "messages[].tool_calls[].bogus3",
        "messages[].tool_calls[].function.bogus",
        "messages[].bogus5",
        "tools[].bogus2",
        "tools[].function.bogus",
    ] {
        assert!(fields.contains(name), "{name} not in {fields}");
    }
    let responses_body = json!({"model": "claude-sonnet-4-6", "input": [
        {"type": "message", "role": "user", "bogus2": 1, "content": [{"type": "input_text", "text": "hi", "bogus": 1}]}],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "bogus": 1}]})
    .to_string();
    let out = responses::request(responses_body.as_bytes()).expect("translated");
    let fields = out.dropped.fields().join(", ");
    for name in ["input[].bogus2", "input[].content[].bogus", "tools[].bogus"] {
        assert!(fields.contains(name), "{name} not in {fields}");
    }
}

/// Claude stream deltas an OpenAI client could not follow (text that is
/// not a string, a delta to a block never started) are errors; a server
/// tool's block, which has no counterpart, is skipped with its deltas.
#[test]
fn claude_deltas_of_the_wrong_shape_are_errors() {
    let base = anthropic_tool_stream(&[]);
    let text_block = |delta: Value, index: u64| {
        format!(
            "event: content_block_start\ndata: {}\n\nevent: content_block_delta\ndata: {}\n\nevent: content_block_stop\ndata: {}\n\n",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
            json!({"type": "content_block_stop", "index": 1}),
        )
    };
    let insert = |extra: String| {
        let at = base.find("event: message_delta").expect("message_delta");
        format!("{}{extra}{}", &base[..at], &base[at..])
    };
    for extra in [
        text_block(json!({"type": "text_delta", "text": 5}), 1),
        text_block(json!({"type": "text_delta"}), 1),
        text_block(json!({"type": "text_delta", "text": "x"}), 7),
    ] {
        let input = insert(extra.clone());
        let got = events(&run(responses_stream(), input.as_bytes(), &[]));
        assert_eq!(
            got.last().map(|e| e.data["type"].clone()),
            Some(json!("response.failed")),
            "{extra}"
        );
    }
    let got = events(&run(
        chat_stream(true),
        insert(text_block(json!({"type": "text_delta", "text": 5}), 5)).as_bytes(),
        &[],
    ));
    assert!(got.last().expect("events").data.get("error").is_some());
    // A server tool's block (never asked for), or one of a type no API
    // knows: the client's API cannot carry it, so the answer fails,
    // naming it, in either client's stream.
    for block in [
        json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
        json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}),
        json!({"type": "hologram", "data": "x"}),
    ] {
        let kind = block["type"].as_str().unwrap().to_owned();
        let server = format!(
            "event: content_block_start\ndata: {}\n\nevent: content_block_delta\ndata: {}\n\nevent: content_block_stop\ndata: {}\n\n",
            json!({"type": "content_block_start", "index": 1, "content_block": block}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"query\":\"x\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
        );
        let got = events(&run(
            responses_stream(),
            insert(server.clone()).as_bytes(),
            &[],
        ));
        let last = &got.last().expect("events").data;
        assert_eq!(last["type"], "response.failed", "{kind}");
        let message = last["response"]["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{kind}`")), "{message}");
        let got = events(&run(chat_stream(true), insert(server).as_bytes(), &[]));
        let last = &got.last().expect("events").data;
        let message = last["error"]["message"].as_str().expect("an error chunk");
        assert!(message.contains(&format!("`{kind}`")), "{message}");
    }
}

/// The members of `tool_choice`, `stream_options` and `text.format` are
/// walked too.
#[test]
fn unread_members_of_choices_and_options_are_named() {
    let chat_body = json!({"model": "claude-sonnet-4-6", "stream": true,
        "stream_options": {"include_usage": true, "zzso": 1},
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f", "zztc": 1}}})
    .to_string();
    let fields = chat::request(chat_body.as_bytes())
        .expect("translated")
        .dropped
        .fields()
        .join(", ");
    for name in ["stream_options.zzso", "tool_choice.function.zztc"] {
        assert!(fields.contains(name), "{name} not in {fields}");
    }
    let responses_body = json!({"model": "claude-sonnet-4-6", "input": "hi",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "f", "zztc": 1},
        "text": {"format": {"type": "text", "zzf": 1}}})
    .to_string();
    let fields = responses::request(responses_body.as_bytes())
        .expect("translated")
        .dropped
        .fields()
        .join(", ");
    for name in ["tool_choice.zztc", "text.format.zzf"] {
        assert!(fields.contains(name), "{name} not in {fields}");
    }
}

/// The rule for answers, Anthropic's side: a block the client's API
/// cannot carry, or a stop reason without a counterpart (or none), is an
/// error naming it, whole or streamed, for either OpenAI client; citations
/// (and, for Chat Completions, redacted thinking) are dropped and named.
#[test]
fn anthropic_answers_are_carried_or_refused_naming_what() {
    let whole = |content: Value, stop: Value| {
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
            "content": content, "stop_reason": stop, "usage": {"input_tokens": 3, "output_tokens": 2}})
        .to_string()
    };
    let text = json!([{"type": "text", "text": "hi"}]);
    let refusal = |r: Result<Vec<u8>, TranslateError>| match r {
        Ok(b) => panic!("translated: {}", String::from_utf8_lossy(&b)),
        Err(e) => e.to_string(),
    };
    for (content, stop, named, chat_only) in [
        (
            json!([{"type": "hologram", "data": "x"}]),
            json!("end_turn"),
            "`hologram`",
            false,
        ),
        (
            json!([{"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}]),
            json!("end_turn"),
            "`server_tool_use`",
            false,
        ),
        (
            json!([{"text": "no type"}]),
            json!("end_turn"),
            "type is missing",
            false,
        ),
        (text.clone(), json!("banana"), "`banana`", false),
        (text.clone(), json!(null), "without a stop_reason", false),
        (text.clone(), json!("pause_turn"), "`pause_turn`", true),
    ] {
        let body = whole(content, stop);
        let e = refusal(chat::response(body.as_bytes()));
        assert!(e.contains(named), "chat {body}: {e}");
        if !chat_only {
            let e = refusal(responses::response(body.as_bytes()));
            assert!(e.contains(named), "responses {body}: {e}");
        }
    }
    // `pause_turn` has a Responses counterpart: an incomplete response.
    let v: Value = serde_json::from_slice(
        &responses::response(whole(text.clone(), json!("pause_turn")).as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "pause_turn");
    // Citations and redacted thinking: dropped, named as the answer's.
    let content = json!([
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "hi", "citations": [{"type": "char_location", "cited_text": "x"}]},
    ]);
    let a = chat::answer(whole(content.clone(), json!("end_turn")).as_bytes(), 0).unwrap();
    assert_eq!(
        a.dropped.fields(),
        [
            "answer.content[].citations",
            "answer.content[type=redacted_thinking]"
        ]
    );
    let a = responses::answer(whole(content, json!("end_turn")).as_bytes(), 0).unwrap();
    assert_eq!(a.dropped.fields(), ["answer.content[].citations"]);
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["output"][0]["type"], "reasoning", "carried as reasoning");

    // Streamed: the stop reason in `message_delta`.
    for (stop, named, chat_only) in [
        (json!("banana"), "`banana`", false),
        (json!(null), "without a stop_reason", false),
        (json!("pause_turn"), "`pause_turn`", true),
    ] {
        let input = anthropic_tool_stream(&["{}"]).replace(
            r#""delta":{"stop_reason":"tool_use"}"#,
            &format!(r#""delta":{{"stop_reason":{stop}}}"#),
        );
        assert!(input.contains(&format!("\"stop_reason\":{stop}}}")));
        for cuts in [vec![], vec![5, 99, 100, 300]] {
            let got = events(&run(chat_stream(true), input.as_bytes(), &cuts));
            let message = ending_error(&got);
            assert!(message.contains(named), "{message}");
            assert!(!got.iter().any(|e| e.data == "[DONE]"));
            if !chat_only {
                let got = events(&run(responses_stream(), input.as_bytes(), &cuts));
                let message = responses_failure(&got);
                assert!(message.contains(named), "{message}");
            }
        }
    }
}

/// An Anthropic stream's events must fit its blocks: deltas of the block's
/// kind to an open block, one start per open index, stops of open blocks,
/// one `message_start`. Anything else is an error for either OpenAI
/// client; a whole message's unknown members are named.
#[test]
fn anthropic_stream_events_must_fit_their_blocks() {
    let base = anthropic_tool_stream(&["{}"]);
    let insert = |extra: &str| {
        let at = base.find("event: message_delta").expect("message_delta");
        format!("{}{extra}{}", &base[..at], &base[at..])
    };
    let ev = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap());
    let start = |i: u64, block: Value| {
        ev(json!({"type": "content_block_start", "index": i, "content_block": block}))
    };
    let delta =
        |i: u64, d: Value| ev(json!({"type": "content_block_delta", "index": i, "delta": d}));
    let stop = |i: u64| ev(json!({"type": "content_block_stop", "index": i}));
    let text = json!({"type": "text", "text": ""});
    for (extra, named) in [
        (
            [
                start(1, text.clone()),
                delta(1, json!({"text": "untyped"})),
                stop(1),
            ]
            .concat(),
            "`` delta in a `text` block",
        ),
        (
            [
                start(1, text.clone()),
                delta(1, json!({"type": "mystery_delta", "data": "x"})),
                stop(1),
            ]
            .concat(),
            "`mystery_delta`",
        ),
        (
            [
                start(1, text.clone()),
                delta(1, json!({"type": "input_json_delta", "partial_json": "{}"})),
                stop(1),
            ]
            .concat(),
            "`input_json_delta` delta in a `text` block",
        ),
        (
            delta(9, json!({"type": "text_delta", "text": "stray"})),
            "not open",
        ),
        (
            [
                start(1, text.clone()),
                stop(1),
                delta(1, json!({"type": "text_delta", "text": "late"})),
            ]
            .concat(),
            "not open",
        ),
        (
            [start(1, text.clone()), start(1, text.clone())].concat(),
            "while block 1 was open",
        ),
        (stop(8), "not open"),
        (
            ev(
                json!({"type": "message_start", "message": {"id": "msg_2", "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": 1}}}),
            ),
            "twice",
        ),
    ] {
        let input = insert(&extra);
        for cuts in [vec![], vec![3, 77, 78, 250]] {
            let got = events(&run(chat_stream(false), input.as_bytes(), &cuts));
            let message = ending_error(&got);
            assert!(message.contains(named), "{message}");
            let got = events(&run(responses_stream(), input.as_bytes(), &cuts));
            let message = responses_failure(&got);
            assert!(message.contains(named), "{message}");
        }
    }
    // Citations and signatures in their blocks are read (and dropped).
    let fine = [
        start(1, text.clone()),
        delta(1, json!({"type": "text_delta", "text": "a"})),
        delta(
            1,
            json!({"type": "citations_delta", "citation": {"type": "char_location"}}),
        ),
        stop(1),
        start(2, json!({"type": "thinking", "thinking": ""})),
        delta(2, json!({"type": "thinking_delta", "thinking": "hm"})),
        delta(2, json!({"type": "signature_delta", "signature": "sig"})),
        stop(2),
    ]
    .concat();
    let got = events(&run(chat_stream(false), insert(&fine).as_bytes(), &[]));
    assert_eq!(got.last().unwrap().data, "[DONE]");
    let got = events(&run(responses_stream(), insert(&fine).as_bytes(), &[]));
    assert_eq!(got.last().unwrap().data["type"], "response.completed");

    // A whole message's members without a counterpart are named.
    let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "container": {"id": "c"}, "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1},
        "content": [{"type": "text", "text": "hi", "foo": 1}, {"type": "thinking", "thinking": "t", "signature": "s"}]});
    let a = chat::answer(body.to_string().as_bytes(), 0).unwrap();
    assert_eq!(
        a.dropped.fields(),
        [
            "answer.container",
            "answer.content[].foo",
            "answer.content[].signature"
        ]
    );
    let a = responses::answer(body.to_string().as_bytes(), 0).unwrap();
    assert_eq!(
        a.dropped.fields(),
        ["answer.container", "answer.content[].foo"]
    );
}

/// An Anthropic stream giving two stop reasons, or blocks out of order or
/// overlapping, contradicts itself: an error for either OpenAI client.
#[test]
fn anthropic_streams_that_contradict_themselves_are_errors() {
    let ev = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap());
    let start = |i: u64| {
        ev(
            json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
        )
    };
    let text = |i: u64, t: &str| {
        ev(
            json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": t}}),
        )
    };
    let stop = |i: u64| ev(json!({"type": "content_block_stop", "index": i}));
    let head = ev(
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": 1}}}),
    );
    let reason = |r: &str| {
        ev(
            json!({"type": "message_delta", "delta": {"stop_reason": r}, "usage": {"output_tokens": 2}}),
        )
    };
    let end = ev(json!({"type": "message_stop"}));
    for (middle, named) in [
        (
            [
                start(0),
                text(0, "a"),
                stop(0),
                reason("max_tokens"),
                reason("end_turn"),
            ]
            .concat(),
            "two stop reasons",
        ),
        (
            [
                start(1),
                text(1, "SECOND"),
                stop(1),
                start(0),
                text(0, "FIRST"),
                stop(0),
                reason("end_turn"),
            ]
            .concat(),
            "where block 0 comes next",
        ),
        (
            [
                start(0),
                start(1),
                text(0, "ZERO"),
                text(1, "ONE"),
                stop(1),
                stop(0),
                reason("end_turn"),
            ]
            .concat(),
            "while block 0 was open",
        ),
    ] {
        let input = format!("{head}{middle}{end}");
        let got = events(&run(chat_stream(false), input.as_bytes(), &[]));
        let message = ending_error(&got);
        assert!(message.contains(named), "{message}");
        let got = events(&run(responses_stream(), input.as_bytes(), &[]));
        let last = &got.last().unwrap().data;
        assert_eq!(last["type"], "response.failed");
        assert!(last["response"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains(named));
    }
}

/// A freeform tool's use carries exactly `{"input": TEXT}`; an event whose
/// name contradicts its data, or a `message_start` already holding content
/// or a stop reason that a later one contradicts: errors.
#[test]
fn freeform_inputs_and_event_names_must_agree() {
    let whole = |input: Value| {
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "stop_reason": "tool_use",
            "usage": {"input_tokens": 1, "output_tokens": 1},
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "apply_patch__freeform", "input": input}]})
        .to_string()
    };
    let ok = responses::response(whole(json!({"input": "*** Begin Patch"})).as_bytes()).unwrap();
    let v: Value = serde_json::from_slice(&ok).unwrap();
    assert_eq!(v["output"][0]["input"], "*** Begin Patch");
    for input in [
        json!({"input": "P", "extra": 1}),
        json!({"input": 5}),
        json!({}),
    ] {
        let e = responses::response(whole(input.clone()).as_bytes()).unwrap_err();
        assert!(e.to_string().contains("freeform tool"), "{input}: {e}");
        // Streamed, the same.
        let ev = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap());
        let stream = [
            ev(json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": 1}}})),
            ev(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "apply_patch__freeform", "input": {}}})),
            ev(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": input.to_string()}})),
            ev(json!({"type": "content_block_stop", "index": 0})),
            ev(json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 2}})),
            ev(json!({"type": "message_stop"})),
        ]
        .concat();
        let got = events(&run(responses_stream(), stream.as_bytes(), &[]));
        let last = &got.last().unwrap().data;
        assert_eq!(last["type"], "response.failed", "{input}");
    }
    let base = anthropic_tool_stream(&["{}"]);
    for (from, to, named) in [
        // An `error` event carrying a delta, a ping carrying one.
        (
            "event: content_block_delta\n",
            "event: error\n",
            "named `error`",
        ),
        (
            "event: content_block_delta\n",
            "event: ping\n",
            "named `ping`",
        ),
        // Content in `message_start`, a stop reason there that a later
        // one contradicts.
        (
            r#""content":[]"#,
            r#""content":[{"type":"text","text":"PRE"}]"#,
            "content already",
        ),
        (
            r#""stop_reason":null"#,
            r#""stop_reason":"max_tokens""#,
            "two stop reasons",
        ),
    ] {
        assert!(base.contains(from), "{from}");
        let input = base.replacen(from, to, 1);
        let got = events(&run(chat_stream(false), input.as_bytes(), &[]));
        let message = ending_error(&got);
        assert!(message.contains(named), "{message}");
        let got = events(&run(responses_stream(), input.as_bytes(), &[]));
        assert_eq!(got.last().unwrap().data["type"], "response.failed", "{to}");
    }
}

/// A whole answer's tool input reaches the client as the upstream wrote
/// it: integers past 2^53, long decimals and `-0` are not rounded through
/// a 64-bit float (whitespace between tokens aside).
#[test]
fn whole_answers_keep_tool_input_numbers_as_written() {
    let input = r#"{"n": 12345678901234567890123, "id": 18446744073709551617, "p": 3.141592653589793238462643, "z": -0}"#;
    let compact = r#"{"n":12345678901234567890123,"id":18446744073709551617,"p":3.141592653589793238462643,"z":-0}"#;
    let body = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"m","stop_reason":"tool_use","usage":{{"input_tokens":1,"output_tokens":1}},"content":[{{"type":"tool_use","id":"toolu_1","name":"get","input":{input}}}]}}"#
    );
    let chat_answer: Value =
        serde_json::from_slice(&chat::response(body.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        chat_answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        compact
    );
    let responses_answer: Value =
        serde_json::from_slice(&responses::response(body.as_bytes()).unwrap()).unwrap();
    assert_eq!(responses_answer["output"][0]["arguments"], compact);
}
