//! The response transducer: fed the provider's answer chunk by chunk, it
//! says what to relay to the client and what usage it saw. Pure and
//! split-invariant: any split of the same bytes gives the same relayed
//! bytes and the same usage (property-tested against recorded streams).
//!
//! - An answer it does not change is relayed chunk for chunk, untouched,
//!   as it arrives; usage is read on the side ([`UsageMeter`]).
//! - With [`ResponsePlan::strip_usage_chunk`], an event stream is framed
//!   into events ([`SseFramer`], any line ends) and every event is
//!   relayed byte for byte as soon as it is complete, except the usage
//!   chunk the gateway asked for: an event whose data is a JSON object
//!   with an empty `choices` array and a `usage` object (recognised by its
//!   structure, not by how it is spelt).
//! - With [`ResponsePlan::collect_response`], nothing is relayed while the
//!   stream lasts; at its end [`ResponseRelay::collected`] gives the
//!   `response` object of the last `response.completed` (or `.incomplete`,
//!   `.failed`) event, as the JSON answer of a client that did not stream.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::seams::TokenUsage;
use crate::sse::{SseEvent, SseFramer};
use crate::upstream::ResponsePlan;
use crate::usage::{Reading, TokenCounter, UsageMeter};

/// Whether a response whose `Content-Type` is `content_type` is an event
/// stream (`text/event-stream`, any parameters, any case).
pub fn is_event_stream(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|v| {
        let essence = v.split(|b| *b == b';').next().unwrap_or(v);
        essence
            .trim_ascii()
            .eq_ignore_ascii_case(b"text/event-stream")
    })
}

/// Whether `data` (an event's data) is the Chat Completions usage-only
/// chunk: a JSON object with `"choices": []` and a `usage` object.
pub fn is_usage_only_chunk(data: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(default)]
        choices: Option<Vec<IgnoredAny>>,
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
    }
    match serde_json::from_slice::<Probe<'_>>(data) {
        Ok(p) => {
            p.choices.is_some_and(|c| c.is_empty())
                && p.usage.is_some_and(|u| u.get().starts_with('{'))
        }
        Err(_) => false,
    }
}

/// The kinds of event that end a Responses API stream, carrying the
/// final `response` object.
const TERMINAL: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// The `response` object of a terminal Responses API event, as raw JSON.
fn terminal_response(data: &[u8]) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        response: &'a RawValue,
    }
    let probe: Probe<'_> = serde_json::from_slice(data).ok()?;
    TERMINAL
        .contains(&probe.kind.as_ref())
        .then(|| probe.response.get().as_bytes().to_vec())
}

/// Decides what of an upstream answer reaches the client, and meters it.
#[derive(Debug, Clone)]
pub struct ResponseRelay {
    plan: ResponsePlan,
    /// Frames events when events are dropped or collected.
    framer: Option<SseFramer>,
    meter: UsageMeter,
    collected: Option<Vec<u8>>,
    /// Whether the last complete event was relayed.
    kept_last: bool,
}

impl ResponseRelay {
    /// A relay for an answer that is an event stream (`sse`) or not.
    pub fn new(plan: ResponsePlan, sse: bool) -> Self {
        let frames = sse && (plan.strip_usage_chunk || plan.collect_response);
        ResponseRelay {
            plan,
            framer: frames.then(|| SseFramer::new(true)),
            meter: UsageMeter::new(sse),
            collected: None,
            kept_last: true,
        }
    }

    /// Whether the relayed bytes may differ from the upstream's (so the
    /// response's framing headers must be recomputed).
    pub fn alters_body(&self) -> bool {
        self.framer.is_some()
    }

    /// The next chunk of the answer; returns what to relay now (possibly
    /// nothing, while an event is incomplete).
    pub fn feed(&mut self, chunk: Bytes) -> Bytes {
        let Some(framer) = self.framer.as_mut() else {
            self.meter.feed(&chunk);
            return chunk;
        };
        let mut out = Vec::new();
        let mut state = EventState {
            plan: &self.plan,
            meter: &mut self.meter,
            collected: &mut self.collected,
            kept_last: &mut self.kept_last,
        };
        framer.feed(&chunk, &mut |e| state.event(e, &mut out));
        out.extend(framer.take_passed());
        self.relayed(out)
    }

    /// The answer ended: what is left to relay (an unfinished last event).
    pub fn finish(&mut self) -> Bytes {
        let Some(framer) = self.framer.as_mut() else {
            return Bytes::new();
        };
        let mut out = Vec::new();
        let mut state = EventState {
            plan: &self.plan,
            meter: &mut self.meter,
            collected: &mut self.collected,
            kept_last: &mut self.kept_last,
        };
        let rest = framer.finish(&mut |e| state.event(e, &mut out));
        out.extend(rest);
        self.relayed(out)
    }

    /// What of `out` reaches the client now: nothing while collecting.
    fn relayed(&self, out: Vec<u8>) -> Bytes {
        if self.plan.collect_response {
            Bytes::new()
        } else {
            Bytes::from(out)
        }
    }

    /// With [`ResponsePlan::collect_response`], after [`finish`](Self::finish):
    /// the final `response` object, if the stream carried one.
    pub fn collected(&mut self) -> Option<Bytes> {
        self.collected.take().map(Bytes::from)
    }

    /// Whether the provider's final usage has come.
    pub fn is_complete(&self) -> bool {
        self.meter.is_complete()
    }

    /// Whether an event stream's last event by its API has come (see
    /// [`UsageMeter::is_ended`]).
    pub fn is_ended(&self) -> bool {
        self.meter.is_ended()
    }

    /// The usage seen so far (`None`: none reported).
    pub fn usage(&mut self) -> Option<TokenUsage> {
        self.meter.finish()
    }

    /// Counts relayed content with `counter` (a real tokenizer for the
    /// model's family) instead of the conservative ratio.
    #[must_use]
    pub fn with_counter(mut self, counter: std::sync::Arc<dyn TokenCounter>) -> Self {
        self.meter = self.meter.with_counter(counter);
        self
    }

    /// What the request consumed (see [`UsageMeter::reading`]): the
    /// provider's figures, or an estimate no smaller than what was relayed
    /// when they never came. `success`: the answer's status was 2xx.
    pub fn reading(
        &mut self,
        success: bool,
        input_estimate: u64,
        output_floor: u64,
    ) -> Option<Reading> {
        self.meter.reading(success, input_estimate, output_floor)
    }

    /// The model the answer names, if it names one.
    pub fn model(&self) -> Option<&str> {
        self.meter.model()
    }
}

/// What deciding an event needs of the relay.
struct EventState<'a> {
    plan: &'a ResponsePlan,
    meter: &'a mut UsageMeter,
    collected: &'a mut Option<Vec<u8>>,
    kept_last: &'a mut bool,
}

impl EventState<'_> {
    /// Meters `event` and appends its bytes to `out` unless it is dropped.
    fn event(&mut self, event: SseEvent<'_>, out: &mut Vec<u8>) {
        if event.tail {
            if *self.kept_last {
                out.extend_from_slice(event.raw);
            }
            return;
        }
        if event.has_data && !event.oversize {
            self.meter.event(event.data);
            if self.plan.collect_response {
                if let Some(response) = terminal_response(event.data) {
                    *self.collected = Some(response);
                }
            }
            if self.plan.strip_usage_chunk && is_usage_only_chunk(event.data) {
                *self.kept_last = false;
                return;
            }
        }
        *self.kept_last = true;
        out.extend_from_slice(event.raw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Dialect;

    fn plan(strip: bool, collect: bool) -> ResponsePlan {
        ResponsePlan {
            dialect: Dialect::OpenAi,
            strip_usage_chunk: strip,
            collect_response: collect,
            expect: None,
        }
    }

    fn relay(plan: ResponsePlan, sse: bool, body: &[u8], split: usize) -> (Vec<u8>, ResponseRelay) {
        let mut r = ResponseRelay::new(plan, sse);
        let mut out = Vec::new();
        for chunk in body.chunks(split.max(1)) {
            out.extend_from_slice(&r.feed(Bytes::copy_from_slice(chunk)));
        }
        out.extend_from_slice(&r.finish());
        (out, r)
    }

    #[test]
    fn event_stream_content_types() {
        assert!(is_event_stream(Some(b"text/event-stream")));
        assert!(is_event_stream(Some(b"Text/Event-Stream; charset=utf-8")));
        assert!(!is_event_stream(Some(b"application/json")));
        assert!(!is_event_stream(None));
    }

    #[test]
    fn usage_chunk_recognised_by_structure() {
        assert!(is_usage_only_chunk(
            br#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(is_usage_only_chunk(
            br#"{ "choices" : [ ] , "usage" : { } }"#
        ));
        assert!(is_usage_only_chunk(br#"{"ch\u006fices":[],"usage":{}}"#));
        assert!(!is_usage_only_chunk(br#"{"choices":[{}],"usage":{}}"#));
        assert!(!is_usage_only_chunk(br#"{"choices":[],"usage":null}"#));
        assert!(!is_usage_only_chunk(b"[DONE]"));
    }

    #[test]
    fn strips_only_the_usage_chunk_whatever_the_line_ends() {
        for sep in ["\n", "\r\n", "\r"] {
            let events = [
                r#"data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}"#,
                r#"data: {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}"#,
                "data: [DONE]",
            ];
            let stream: String = events.iter().map(|e| format!("{e}{sep}{sep}")).collect();
            let want = format!("{}{sep}{sep}{}{sep}{sep}", events[0], events[2]);
            for split in 1..stream.len() {
                let (out, mut r) = relay(plan(true, false), true, stream.as_bytes(), split);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    want,
                    "{sep:?} split {split}"
                );
                let u = r.usage().unwrap();
                assert_eq!((u.input, u.output), (2, 1));
            }
        }
    }

    #[test]
    fn passes_untouched_when_nothing_is_dropped() {
        let body = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2}}\n\n";
        let (out, r) = relay(plan(false, false), true, body, 7);
        assert_eq!(out, body);
        assert!(!r.alters_body());
    }

    #[test]
    fn collects_the_final_response() {
        let body = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\"}}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"usage\":{\"input_tokens\":3,\"output_tokens\":2}}}\n\n";
        for split in [1, 5, 1000] {
            let (out, mut r) = relay(plan(false, true), true, body.as_bytes(), split);
            assert!(out.is_empty());
            assert_eq!(
                r.collected().unwrap(),
                &br#"{"id":"r","usage":{"input_tokens":3,"output_tokens":2}}"#[..]
            );
            assert_eq!(r.usage().unwrap().output, 2);
        }
        let (_, mut r) = relay(
            plan(false, true),
            true,
            b"data: {\"type\":\"response.created\",\"response\":{}}\n\n",
            3,
        );
        assert_eq!(r.collected(), None);
    }
}
