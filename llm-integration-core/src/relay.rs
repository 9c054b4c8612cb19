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
//!   `.failed`) event, as the JSON answer of a client that did not stream,
//!   its `output` the items the stream finished
//!   (`response.output_item.done`, in `output_index` order): what a
//!   streaming client would have read, whatever the final event repeats.

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

/// The most a collected answer may hold (its items and final response
/// object), in bytes.
pub const COLLECT_MAX: usize = 32 << 20;

/// Why a collected stream has no answer to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Uncollected {
    /// No terminal event came.
    #[error("the upstream's stream ended without its final event (response.completed, response.incomplete or response.failed)")]
    NoResponse,
    /// A completed response left an output item unfinished.
    #[error("the upstream's stream completed with output item {0} started and never finished (no response.output_item.done), so the answer is incomplete")]
    Unfinished(u64),
    /// More than [`COLLECT_MAX`].
    #[error("the upstream's answer is larger than {} MiB, more than the gateway collects", COLLECT_MAX >> 20)]
    TooLarge,
    /// The stream failed: an `error` event, or `response.failed` (the
    /// upstream's message, cut to 500 characters).
    #[error("the upstream's answer failed: {0}")]
    Failed(String),
}

/// The message of a failure event's error (`error.message`, or the
/// event's own `message`; under `response` for `response.failed`), cut to
/// 500 characters.
fn failure(data: &[u8], nested: bool) -> String {
    let event: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    let holder = if nested { &event["response"] } else { &event };
    let message = holder["error"]["message"]
        .as_str()
        .or_else(|| holder["message"].as_str())
        .unwrap_or("no message given");
    message.chars().take(500).collect()
}

/// A Responses API stream being collected into one response object.
#[derive(Debug, Clone, Default)]
struct Collector {
    /// Finished items: their `output_index` (`u64::MAX` when missing, so
    /// they follow in arrival order) and JSON.
    items: Vec<(u64, Box<RawValue>)>,
    /// Output indexes started and not finished.
    open: Vec<u64>,
    /// Bytes held.
    size: usize,
    /// The answer so far (from the last terminal event).
    answer: Option<Result<Vec<u8>, Uncollected>>,
}

impl Collector {
    fn event(&mut self, data: &[u8]) {
        #[derive(Deserialize)]
        struct Probe<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
            #[serde(default)]
            output_index: Option<u64>,
            #[serde(borrow, default)]
            item: Option<&'a RawValue>,
            #[serde(borrow, default)]
            response: Option<&'a RawValue>,
        }
        // A failure stands, whatever follows it.
        if matches!(
            self.answer,
            Some(Err(Uncollected::TooLarge | Uncollected::Failed(_)))
        ) {
            return;
        }
        let Ok(probe) = serde_json::from_slice::<Probe<'_>>(data) else {
            return;
        };
        let index = probe.output_index.unwrap_or(u64::MAX);
        match probe.kind.as_ref() {
            "response.output_item.added" => self.open.push(index),
            "response.output_item.done" => {
                if self.open.iter().any(|i| *i < index) {
                    self.answer = Some(Err(Uncollected::Failed(format!(
                        "output item {index} finished before an earlier one"
                    ))));
                    return;
                }
                self.open.retain(|i| *i != index);
                if let Some(item) = probe.item {
                    self.size += item.get().len();
                    if self.size > COLLECT_MAX {
                        self.items.clear();
                        self.answer = Some(Err(Uncollected::TooLarge));
                        return;
                    }
                    self.items.push((index, item.to_owned()));
                }
            }
            "error" => self.answer = Some(Err(Uncollected::Failed(failure(data, false)))),
            "response.failed" => {
                self.answer = Some(Err(Uncollected::Failed(failure(data, true))));
            }
            kind if TERMINAL.contains(&kind) => {
                if let Some(response) = probe.response {
                    self.answer = Some(self.assemble(kind, response));
                }
            }
            _ => {}
        }
    }

    /// The answer of terminal event `kind` carrying `response`.
    fn assemble(&self, kind: &str, response: &RawValue) -> Result<Vec<u8>, Uncollected> {
        if kind == "response.completed" {
            if let Some(index) = self.open.first() {
                return Err(Uncollected::Unfinished(*index));
            }
        }
        if self.size + response.get().len() > COLLECT_MAX {
            return Err(Uncollected::TooLarge);
        }
        let raw = response.get().as_bytes();
        if self.items.is_empty() {
            return Ok(raw.to_vec());
        }
        // The items the stream finished are the answer's output.
        let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(raw) else {
            return Ok(raw.to_vec());
        };
        let listed = object
            .get("output")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        if listed > 0 && listed != self.items.len() {
            return Err(Uncollected::Failed(format!(
                "the final response lists {listed} output items, the stream finished {}",
                self.items.len()
            )));
        }
        let mut items: Vec<&(u64, Box<RawValue>)> = self.items.iter().collect();
        items.sort_by_key(|(index, _)| *index);
        let output = items
            .iter()
            .filter_map(|(_, item)| serde_json::from_str(item.get()).ok())
            .collect();
        object.insert("output".into(), serde_json::Value::Array(output));
        Ok(serde_json::to_vec(&object).unwrap_or_else(|_| raw.to_vec()))
    }
}

/// Decides what of an upstream answer reaches the client, and meters it.
#[derive(Debug, Clone)]
pub struct ResponseRelay {
    plan: ResponsePlan,
    /// Frames events when events are dropped or collected.
    framer: Option<SseFramer>,
    meter: UsageMeter,
    collected: Collector,
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
            collected: Collector::default(),
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
    /// the final `response` object, its `output` the items the stream
    /// finished (see the module documentation).
    ///
    /// # Errors
    /// [`Uncollected`]: no final event, a completed response with an item
    /// never finished, or more than [`COLLECT_MAX`].
    pub fn collected(&mut self) -> Result<Bytes, Uncollected> {
        std::mem::take(&mut self.collected)
            .answer
            .unwrap_or(Err(Uncollected::NoResponse))
            .map(Bytes::from)
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
    collected: &'a mut Collector,
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
                self.collected.event(event.data);
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
        assert_eq!(r.collected(), Err(Uncollected::NoResponse));
    }

    /// The rule: a client that did not stream gets what a streaming client
    /// would have read: the items the stream finished, in output order,
    /// whatever the final event repeats; an item started and never
    /// finished makes a completed answer incomplete.
    #[test]
    fn the_collected_output_is_the_items_the_stream_finished() {
        let added = |i: u64| {
            format!("data: {{\"type\":\"response.output_item.added\",\"output_index\":{i},\"item\":{{}}}}\n\n")
        };
        let done = |i: u64, text: &str| {
            format!("data: {{\"type\":\"response.output_item.done\",\"output_index\":{i},\"item\":{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":\"{text}\"}}]}}}}\n\n")
        };
        let completed = |output: &str| {
            format!("data: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"r\",\"output\":{output}}}}}\n\n")
        };
        // Finished in order, the final event's output empty.
        let body = [
            added(0),
            added(1),
            done(0, "a"),
            done(1, "b"),
            completed("[]"),
        ]
        .concat();
        // Out of order: a client placing items by index and one reading
        // them as they came would read different answers.
        let disordered = [
            added(0),
            added(1),
            done(1, "b"),
            done(0, "a"),
            completed("[]"),
        ]
        .concat();
        let (_, mut r) = relay(plan(false, true), true, disordered.as_bytes(), 4);
        assert!(
            matches!(r.collected(), Err(Uncollected::Failed(m)) if m.contains("before an earlier one"))
        );
        // The final event listing other items than the stream finished.
        let two = [
            added(0),
            done(0, "a"),
            completed(r#"[{"type":"message"},{"type":"message"}]"#),
        ]
        .concat();
        let (_, mut r) = relay(plan(false, true), true, two.as_bytes(), 4);
        assert!(
            matches!(r.collected(), Err(Uncollected::Failed(m)) if m.contains("lists 2 output items"))
        );
        for split in [1, 7, 10_000] {
            let (_, mut r) = relay(plan(false, true), true, body.as_bytes(), split);
            let v: serde_json::Value = serde_json::from_slice(&r.collected().unwrap()).unwrap();
            assert_eq!(v["id"], "r");
            let texts: Vec<&str> = v["output"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["content"][0]["text"].as_str().unwrap())
                .collect();
            assert_eq!(texts, ["a", "b"], "split {split}");
        }
        // The final event claiming other output (as many items) does not
        // replace it.
        let body = [
            added(0),
            done(0, "streamed"),
            completed(r#"[{"type":"message","content":[{"type":"output_text","text":"other"}]}]"#),
        ]
        .concat();
        let (_, mut r) = relay(plan(false, true), true, body.as_bytes(), 5);
        let v: serde_json::Value = serde_json::from_slice(&r.collected().unwrap()).unwrap();
        assert_eq!(v["output"][0]["content"][0]["text"], "streamed");
        assert_eq!(v["output"].as_array().unwrap().len(), 1);
        // No items streamed: the final event's output stands.
        let body = completed(r#"[{"type":"message"}]"#);
        let (_, mut r) = relay(plan(false, true), true, body.as_bytes(), 5);
        let v: serde_json::Value = serde_json::from_slice(&r.collected().unwrap()).unwrap();
        assert_eq!(v["output"][0]["type"], "message");
        // Started, never finished, then completed: incomplete.
        let body = [added(0), done(0, "a"), added(1), completed("[]")].concat();
        let (_, mut r) = relay(plan(false, true), true, body.as_bytes(), 3);
        assert_eq!(r.collected(), Err(Uncollected::Unfinished(1)));
        // A failure, or an error event anywhere (even before a
        // completion), is the answer: an error, never a clean one.
        let failed = "data: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"message\":\"boom\"}}}\n\n";
        let error = "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"bang\"}\n\n";
        for (body, message) in [
            ([added(0), failed.to_owned()].concat(), "boom"),
            (
                [added(0), error.to_owned(), done(0, "a"), completed("[]")].concat(),
                "bang",
            ),
        ] {
            for split in [1, 9, 10_000] {
                let (_, mut r) = relay(plan(false, true), true, body.as_bytes(), split);
                assert_eq!(r.collected(), Err(Uncollected::Failed(message.into())));
            }
        }
    }
}
