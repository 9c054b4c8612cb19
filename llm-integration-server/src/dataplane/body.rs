//! Response bodies of the data plane: a whole buffer, or an upstream body
//! relayed frame by frame through the core's response transducer.
//!
//! The relay holds nothing of its own: each frame goes through
//! [`ResponseRelay::feed`] (which passes it on untouched, or holds an
//! unfinished event when events are dropped) as it arrives, and hyper asks
//! for the next only when the client has taken the last, so a slow client
//! slows the upstream read (backpressure). Dropping the body (the client
//! went away) drops the upstream response, which closes its connection
//! and so cancels the upstream request, and records the usage seen so
//! far. An idle stream times out; an upstream failure mid-stream, or an
//! event stream that ends before its API's last event (`message_stop`,
//! `[DONE]`, a terminal `response.*` event, or an error event), becomes
//! one SSE `error` event in the endpoint's dialect, then the stream ends.
//! Everything relayed passes through a [`StreamScrubber`] holding the
//! request's credential.
//! An answer that is not an event stream is relayed before its head is
//! sent ([`RelayBody::collect`], up to a bound) and then sent whole with
//! its length: one write to the client instead of a chunked body ended by
//! a second; cut before its end, it becomes a 502.
//! A translated stream passes what the relay keeps (the upstream's own
//! events, already metered) through the core's [`StreamTranslator`], which
//! writes the client's events; a failure then ends the stream as the
//! client's API ends a broken one (`response.failed`, an `error` event).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use llm_integration_core::redact::StreamScrubber;
use llm_integration_core::relay::ResponseRelay;
use llm_integration_core::translate::StreamTranslator;
use llm_integration_core::wire::errors::sse_error_event;
use llm_integration_core::Dialect;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::encoding::StreamDecoder;
use crate::metering::Metered;

/// The error type of data-plane bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body.
pub enum ProxyBody {
    /// A buffer the gateway wrote.
    Full(Option<Bytes>),
    /// An upstream body, relayed.
    Relay(Box<RelayBody>),
}

impl ProxyBody {
    /// A body of `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(bytes.into()))
    }

    /// No body.
    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Relay(relay) => Pin::new(relay.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(data) => data.is_none(),
            ProxyBody::Relay(relay) => relay.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Relay(relay) => relay.exact_size(),
        }
    }
}

/// What [`RelayBody::collect`] gathered.
pub enum Collected {
    /// The whole answer as the client receives it (the relay ended and
    /// the request is metered).
    Whole(Bytes),
    /// More than the bound: the relay, which gives what it gathered
    /// first, then relays on.
    Partial(Box<RelayBody>),
    /// The upstream failed (or went idle) before the end: nothing reached
    /// the client, and the request is metered with the 502 it receives,
    /// this message in its body.
    Failed(String),
}

/// An upstream body relayed to the client.
pub struct RelayBody {
    /// `None` once handed to a drain after the client left.
    inner: Option<Incoming>,
    /// Frames read before the head was relayed (raw, decoded), relayed first.
    ahead: std::collections::VecDeque<(Bytes, Bytes)>,
    /// The upstream body ended while reading ahead.
    ended: bool,
    /// Decodes a coded answer for the relay and the meter.
    decoder: Option<StreamDecoder>,
    /// Relay the decoded bytes (the relay changes the answer), not the raw.
    relays_decoded: bool,
    /// Decides what is relayed and reads the usage.
    relay: ResponseRelay,
    /// Translates the relayed events into the client's API.
    translator: Option<Box<dyn StreamTranslator>>,
    /// Finished when the body ends, fails or is dropped.
    metered: Option<Metered>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// The response is an event stream: failures become an `error` event.
    sse: bool,
    dialect: Dialect,
    done: bool,
    /// Resolves when the server cuts the streams still open at its
    /// shutdown deadline.
    cut: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Masks the request's credential in everything relayed.
    scrubber: Option<StreamScrubber>,
    /// The scrubber's first find was logged.
    reported: bool,
    /// Output already relayed by [`RelayBody::collect`], given first.
    gathered: std::collections::VecDeque<Bytes>,
    /// [`RelayBody::collect`] is reading: the client has nothing yet.
    collecting: bool,
}

impl RelayBody {
    /// Relays `inner` through `relay`, giving up after `idle` without a
    /// frame; `metered` is finished with the usage `relay` saw.
    pub fn new(
        inner: Incoming,
        relay: ResponseRelay,
        metered: Option<Metered>,
        idle: Duration,
        sse: bool,
        dialect: Dialect,
    ) -> Self {
        RelayBody {
            inner: Some(inner),
            ahead: std::collections::VecDeque::new(),
            ended: false,
            decoder: None,
            relays_decoded: false,
            relay,
            translator: None,
            metered,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            sse,
            dialect,
            done: false,
            cut: None,
            scrubber: None,
            reported: false,
            gathered: std::collections::VecDeque::new(),
            collecting: false,
        }
    }

    /// Relays the answer now, up to `max` bytes of output, for a response
    /// sent whole: with its `Content-Length`, head and body in one write,
    /// rather than chunked and ended by a second write. Frames are relayed
    /// (and metered) as they arrive, exactly as when the client pulls
    /// them: dropping the future while it waits records what was seen.
    pub async fn collect(mut self: Box<Self>, max: usize) -> Collected {
        let mut out: Vec<Bytes> = Vec::new();
        let mut size = 0;
        self.collecting = true;
        loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut *self).poll_frame(cx)).await;
            match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    size += data.len();
                    out.push(data);
                    if size > max {
                        self.gathered = out.into();
                        self.collecting = false;
                        return Collected::Partial(self);
                    }
                }
                Some(Err(e)) => return Collected::Failed(e.to_string()),
                None if out.len() == 1 => return Collected::Whole(out.swap_remove(0)),
                None => return Collected::Whole(Bytes::from(out.concat())),
            }
        }
    }

    /// Nothing more to give.
    fn is_end_stream(&self) -> bool {
        self.done && self.gathered.is_empty()
    }

    /// Masks the credential `scrubber` holds in every byte relayed (the
    /// relay must relay decoded bytes when the answer is coded).
    #[must_use]
    pub fn with_scrubber(mut self, scrubber: Option<StreamScrubber>) -> Self {
        self.scrubber = scrubber;
        self
    }

    /// Ends the relay with an `error` event when `cut` is cancelled (the
    /// server's shutdown deadline).
    #[must_use]
    pub fn with_cut(mut self, cut: CancellationToken) -> Self {
        self.cut = Some(Box::pin(cut.cancelled_owned()));
        self
    }

    /// Relays `frames` (raw and decoded) before reading on; `ended`: the
    /// upstream body has no more.
    #[must_use]
    pub fn with_read_ahead(mut self, frames: Vec<(Bytes, Bytes)>, ended: bool) -> Self {
        self.ahead = frames.into();
        self.ended = ended;
        self
    }

    /// Translates what is relayed with `translator` (the relay must relay
    /// decoded bytes: [`RelayBody::with_decoder`] with `relays_decoded`).
    #[must_use]
    pub fn with_translator(mut self, translator: Box<dyn StreamTranslator>) -> Self {
        self.translator = Some(translator);
        self
    }

    /// What reaches the client of `relayed`: itself, or its translation.
    fn translate(&mut self, relayed: Bytes) -> Bytes {
        match &mut self.translator {
            None => relayed,
            Some(translator) => {
                let mut out = Vec::new();
                translator.feed(&relayed, &mut out);
                Bytes::from(out)
            }
        }
    }

    /// Decodes the answer with `decoder` for the meter, and relays the
    /// decoded bytes when `relays_decoded`.
    #[must_use]
    pub fn with_decoder(mut self, decoder: Option<StreamDecoder>, relays_decoded: bool) -> Self {
        self.decoder = decoder;
        self.relays_decoded = relays_decoded;
        self
    }

    /// Passes one frame (raw, and decoded when the answer is coded)
    /// through the relay; returns what reaches the client.
    fn pass(&mut self, raw: Bytes, decoded: Option<Bytes>) -> Bytes {
        let relayed = self.relayed(raw, decoded);
        let translated = self.translate(relayed);
        self.scrub(translated)
    }

    /// `out` without the credential (some of its end may be held back).
    fn scrub(&mut self, out: Bytes) -> Bytes {
        match &mut self.scrubber {
            Some(scrubber) => {
                let clean = scrubber.feed(out);
                if scrubber.found() && !self.reported {
                    self.reported = true;
                    tracing::warn!("the upstream echoed the credential in its answer; masked");
                }
                clean
            }
            None => out,
        }
    }

    /// The bytes the scrubber still holds, masked if they begin the
    /// credential.
    fn held(&mut self) -> Bytes {
        self.scrubber
            .as_mut()
            .map_or_else(Bytes::new, StreamScrubber::finish)
    }

    /// What the relay keeps of one frame.
    fn relayed(&mut self, raw: Bytes, decoded: Option<Bytes>) -> Bytes {
        let decoded = match (decoded, &mut self.decoder) {
            (Some(d), _) => d,
            (None, Some(decoder)) => match decoder.push(&raw) {
                Ok(d) => Bytes::from(d),
                Err(e) => {
                    tracing::warn!(error = %e, "answer decoding stopped; its usage is what was read so far");
                    Bytes::new()
                }
            },
            (None, None) => return self.relay.feed(raw),
        };
        let kept = self.relay.feed(decoded);
        if self.relays_decoded {
            kept
        } else {
            raw
        }
    }

    /// The exact size when the answer is relayed unchanged and the upstream
    /// said its size.
    fn exact_size(&self) -> SizeHint {
        if self.sse
            || self.relay.alters_body()
            || self.translator.is_some()
            || self.relays_decoded
            || !self.gathered.is_empty()
        {
            return SizeHint::default();
        }
        let ahead: u64 = self.ahead.iter().map(|(raw, _)| raw.len() as u64).sum();
        let rest = match (&self.inner, self.ended) {
            (Some(inner), false) => inner.size_hint().exact(),
            _ => Some(0),
        };
        match rest {
            Some(n) => SizeHint::with_exact(ahead + n),
            None => SizeHint::default(),
        }
    }

    fn end(&mut self) {
        self.end_with(None);
    }

    /// Ends the relay and meters the request, with `status` when the
    /// client receives another than the upstream's.
    fn end_with(&mut self, status: Option<u16>) {
        self.done = true;
        if let Some(mut m) = self.metered.take() {
            let success = (200..300).contains(&m.status());
            let reading = self
                .relay
                .reading(success, m.input_estimate(), m.output_floor());
            let model = super::masked(self.relay.model(), self.scrubber.as_ref());
            m.finish(status, reading, model.as_deref());
        }
    }

    fn fail(&mut self, message: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.collecting && !self.sse {
            // Nothing was sent: the client gets a 502 instead.
            self.end_with(Some(502));
            return Poll::Ready(Some(Err(message.to_owned().into())));
        }
        self.end();
        let mut out = self.held().to_vec();
        if let (true, Some(mut translator)) = (self.sse, self.translator.take()) {
            // The client's API's own ending of a broken stream
            // (`response.failed` for a Responses client, an `error` event
            // for an Anthropic one), which its clients act on.
            let before = out.len();
            translator.finish(&mut out);
            if out.len() > before {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
        }
        if self.sse {
            out.extend_from_slice(sse_error_event(self.dialect, message).as_bytes());
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
        }
        Poll::Ready(Some(Err(message.to_owned().into())))
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        // The client went away (or the server is stopping): the upstream
        // request is cancelled with the body, and what it consumed recorded.
        self.end();
    }
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(gathered) = self.gathered.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(gathered))));
        }
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if self
                .cut
                .as_mut()
                .is_some_and(|c| c.as_mut().poll(cx).is_ready())
            {
                self.cut = None;
                tracing::warn!("stream cut at the shutdown deadline");
                return self.fail(
                    "the gateway is shutting down and cut this answer; it is incomplete, retry it",
                );
            }
            if let Some((raw, decoded)) = self.ahead.pop_front() {
                let decoded = self.decoder.is_some().then_some(decoded);
                let kept = self.pass(raw, decoded);
                if kept.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(Ok(Frame::data(kept))));
            }
            let ended = self.ended;
            let polled = match self.inner.as_mut() {
                Some(inner) if !ended => Pin::new(inner).poll_frame(cx),
                _ => Poll::Ready(None),
            };
            match polled {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = Instant::now() + self.idle;
                    self.timer.as_mut().reset(deadline);
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(other) => return Poll::Ready(Some(Ok(other))),
                    };
                    let kept = self.pass(data, None);
                    if kept.is_empty() {
                        continue; // nothing complete to pass yet
                    }
                    return Poll::Ready(Some(Ok(Frame::data(kept))));
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e, "upstream failed mid-response");
                    return self.fail(
                        "the upstream connection failed mid-response; the answer is incomplete",
                    );
                }
                Poll::Ready(None) => {
                    let rest = self.relay.finish();
                    let mut rest = self.translate(rest);
                    if let Some(translator) = self.translator.as_mut() {
                        let mut out = rest.to_vec();
                        translator.finish(&mut out);
                        rest = Bytes::from(out);
                    }
                    let rest = self.scrub(rest);
                    let mut held = self.held();
                    let success = self
                        .metered
                        .as_ref()
                        .is_some_and(|m| (200..300).contains(&m.status()));
                    if self.sse && self.translator.is_none() && success && !self.relay.is_ended() {
                        // Cut short by the upstream: said, so the client
                        // does not take a part for the whole.
                        tracing::warn!("upstream stream ended before its final event");
                        let mut out = held.to_vec();
                        out.extend_from_slice(
                            sse_error_event(
                                self.dialect,
                                "the upstream's stream ended before its final event; the answer is incomplete, retry it",
                            )
                            .as_bytes(),
                        );
                        held = Bytes::from(out);
                    }
                    let rest = if held.is_empty() {
                        rest
                    } else {
                        Bytes::from([rest, held].concat())
                    };
                    self.end();
                    return if rest.is_empty() {
                        Poll::Ready(None)
                    } else {
                        Poll::Ready(Some(Ok(Frame::data(rest))))
                    };
                }
                Poll::Pending => {
                    if self.timer.as_mut().poll(cx).is_ready() {
                        let idle = self.idle.as_secs();
                        tracing::warn!(idle_secs = idle, "upstream stream idle; closing it");
                        return self.fail(&format!(
                            "the upstream sent nothing for {idle} s; the stream was closed"
                        ));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        RelayBody::is_end_stream(self)
    }

    fn size_hint(&self) -> SizeHint {
        self.exact_size()
    }
}
