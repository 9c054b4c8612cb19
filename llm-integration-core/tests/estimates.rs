//! Whoever ends a stream, the reading is no cheaper than what was relayed:
//! for every recorded stream, cut at any point and fed in any split, the
//! output charged is at least the tokens (by the conservative ratio) of the
//! content in the events relayed; with the provider's final usage, its
//! figures are charged as they are.
#![allow(clippy::unwrap_used, missing_docs)]

use bytes::Bytes;
use llm_integration_core::relay::ResponseRelay;
use llm_integration_core::sse::SseFramer;
use llm_integration_core::upstream::ResponsePlan;
use llm_integration_core::usage::RatioCounter;
use llm_integration_core::Dialect;
use proptest::prelude::*;
use serde_json::Value;

const STREAMS: [&str; 6] = [
    include_str!("fixtures/anthropic_messages.sse"),
    include_str!("fixtures/openai_chat.sse"),
    include_str!("fixtures/openai_chat_include_usage.sse"),
    include_str!("fixtures/openai_responses.sse"),
    include_str!("fixtures/chatgpt_responses.sse"),
    include_str!("fixtures/fireworks_chat.sse"),
];

/// The content of one event, read independently of the meter: Anthropic
/// deltas, Responses `*.delta` strings, Chat Completions and Completions
/// choices.
fn content(v: &Value) -> String {
    let mut out = String::new();
    let mut push = |t: &Value| {
        if let Some(t) = t.as_str() {
            out.push_str(t);
        }
    };
    match &v["delta"] {
        Value::String(_) => push(&v["delta"]),
        d @ Value::Object(_) => {
            for k in ["text", "partial_json", "thinking"] {
                push(&d[k]);
            }
        }
        _ => {}
    }
    for c in v["choices"].as_array().into_iter().flatten() {
        push(&c["text"]);
        for k in ["content", "reasoning_content", "reasoning", "refusal"] {
            push(&c["delta"][k]);
        }
        for call in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
            push(&call["function"]["name"]);
            push(&call["function"]["arguments"]);
        }
    }
    out
}

/// The content of the complete events of `prefix`.
fn relayed_content(prefix: &[u8]) -> String {
    let mut framer = SseFramer::new(false);
    let mut text = String::new();
    framer.feed(prefix, &mut |e| {
        if e.has_data {
            if let Ok(v) = serde_json::from_slice::<Value>(e.data) {
                text.push_str(&content(&v));
            }
        }
    });
    text
}

fn plan() -> ResponsePlan {
    ResponsePlan {
        dialect: Dialect::OpenAi,
        strip_usage_chunk: false,
        collect_response: false,
        expect: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_cut_stream_is_charged_at_least_what_it_relayed(
        which in 0..STREAMS.len(),
        cut in 0.0f64..1.0,
        splits in prop::collection::vec(1usize..64, 1..32),
        floor in 0u64..5_000,
    ) {
        let stream = STREAMS[which].as_bytes();
        let cut = (stream.len() as f64 * cut) as usize;
        let prefix = &stream[..cut];
        let mut relay = ResponseRelay::new(plan(), true);
        let mut at = 0;
        let mut i = 0;
        while at < prefix.len() {
            let n = splits[i % splits.len()].min(prefix.len() - at);
            relay.feed(Bytes::copy_from_slice(&prefix[at..at + n]));
            at += n;
            i += 1;
        }
        let reading = relay.reading(true, 1234, floor).unwrap();
        let relayed = RatioCounter::tokens(relayed_content(prefix).len() as u64);
        if reading.estimated {
            prop_assert!(reading.tokens.output >= floor, "the floor for unseen output holds");
            prop_assert!(
                reading.tokens.output >= relayed,
                "output {} < relayed {} at cut {} of stream {}", reading.tokens.output, relayed, cut, which
            );
            prop_assert!(reading.tokens.input > 0);
        } else {
            // The provider's own figures: the whole stream's, as reported.
            let mut whole = ResponseRelay::new(plan(), true);
            whole.feed(Bytes::copy_from_slice(stream));
            prop_assert_eq!(Some(reading.tokens), whole.usage());
        }
    }
}

#[test]
fn a_whole_stream_is_charged_as_reported() {
    for (which, stream) in STREAMS.iter().enumerate() {
        let mut relay = ResponseRelay::new(plan(), true);
        relay.feed(Bytes::copy_from_slice(stream.as_bytes()));
        relay.finish();
        let reading = relay.reading(true, 1234, 0).unwrap();
        assert!(!reading.estimated, "stream {which} reports its usage");
    }
    // An error answer is not estimated: the provider charges nothing.
    let mut relay = ResponseRelay::new(plan(), false);
    relay.feed(Bytes::from_static(
        br#"{"type":"error","error":{"type":"overloaded_error"}}"#,
    ));
    assert_eq!(relay.reading(false, 1234, 0), None);
}
