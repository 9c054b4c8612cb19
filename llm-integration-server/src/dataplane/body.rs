//! Response bodies of the data plane: a whole buffer, or an upstream body
//! relayed frame by frame.
//!
//! The relay holds nothing: each frame is handed on as it arrives, and
//! hyper asks for the next only when the client has taken the last, so a
//! slow client slows the upstream read (backpressure). Dropping the body
//! (the client went away) drops the upstream response, which closes its
//! connection and so cancels the upstream request. An idle stream times
//! out; an upstream failure mid-stream becomes one SSE `error` event in
//! the endpoint's dialect, then the stream ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use llm_integration_core::wire::errors::{error_body, ErrorClass};
use llm_integration_core::Dialect;
use tokio::time::{Instant, Sleep};

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
            ProxyBody::Relay(relay) => relay.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Relay(relay) if !relay.sse => relay.inner.size_hint(),
            ProxyBody::Relay(_) => SizeHint::default(),
        }
    }
}

/// An upstream body relayed to the client.
pub struct RelayBody {
    inner: Incoming,
    /// Usage metering, finished when the body ends, fails or is dropped.
    metered: Option<Metered>,
    /// Drop the usage-only chunk the gateway asked for (Chat Completions);
    /// holds the partial event not yet complete.
    strip: Option<BytesMut>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// The response is an event stream: failures become an `error` event.
    sse: bool,
    dialect: Dialect,
    done: bool,
}

impl RelayBody {
    /// Relays `inner`, giving up after `idle` without a frame.
    pub fn new(inner: Incoming, idle: Duration, sse: bool, dialect: Dialect) -> Self {
        RelayBody {
            inner,
            metered: None,
            strip: None,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            sse,
            dialect,
            done: false,
        }
    }

    /// Meters the body; with `strip_usage`, drops the usage-only chunk.
    pub fn metered(mut self, metered: Metered, strip_usage: bool) -> Self {
        self.metered = Some(metered);
        if strip_usage && self.sse {
            self.strip = Some(BytesMut::new());
        }
        self
    }

    fn end(&mut self) {
        self.done = true;
        if let Some(m) = self.metered.as_mut() {
            m.finish(None);
        }
    }

    fn fail(&mut self, message: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.end();
        if self.sse {
            return Poll::Ready(Some(Ok(Frame::data(sse_error_event(
                self.dialect,
                message,
            )))));
        }
        Poll::Ready(Some(Err(message.to_owned().into())))
    }

    /// Passes complete events except a usage-only chunk; keeps a partial one.
    fn filter(&mut self, data: Bytes) -> Bytes {
        let Some(pending) = self.strip.as_mut() else {
            return data;
        };
        pending.extend_from_slice(&data);
        let mut out = BytesMut::new();
        while let Some(end) = memchr::memmem::find(pending, b"\n\n") {
            let event = pending.split_to(end + 2);
            if !is_usage_only_chunk(&event) {
                out.extend_from_slice(&event);
            }
        }
        out.freeze()
    }
}

/// A Chat Completions chunk with `"choices":[]` and a usage object: the one
/// `stream_options.include_usage` adds.
fn is_usage_only_chunk(event: &[u8]) -> bool {
    let has = |needle: &[u8]| memchr::memmem::find(event, needle).is_some();
    has(b"\"choices\":[]") && has(b"\"usage\":{")
}

/// One SSE `error` event in `dialect`.
pub fn sse_error_event(dialect: Dialect, message: &str) -> Bytes {
    let body = error_body(
        dialect,
        ErrorClass::BadGateway,
        "upstream_stream_error",
        message,
    );
    Bytes::from(format!("event: error\ndata: {body}\n\n"))
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = Instant::now() + self.idle;
                    self.timer.as_mut().reset(deadline);
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(other) => return Poll::Ready(Some(Ok(other))),
                    };
                    if let Some(m) = self.metered.as_mut() {
                        m.feed(&data);
                    }
                    let kept = self.filter(data);
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
                    self.end();
                    return match self.strip.take() {
                        Some(rest) if !rest.is_empty() => {
                            Poll::Ready(Some(Ok(Frame::data(rest.freeze()))))
                        }
                        _ => Poll::Ready(None),
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
        self.done
    }
}
