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
//! far. An idle stream times out; an upstream failure mid-stream becomes
//! one SSE `error` event in the endpoint's dialect, then the stream ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use llm_integration_core::relay::ResponseRelay;
use llm_integration_core::wire::errors::sse_error_event;
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
            ProxyBody::Relay(relay) if !relay.sse && !relay.relay.alters_body() => {
                relay.inner.size_hint()
            }
            ProxyBody::Relay(_) => SizeHint::default(),
        }
    }
}

/// An upstream body relayed to the client.
pub struct RelayBody {
    inner: Incoming,
    /// Decides what is relayed and reads the usage.
    relay: ResponseRelay,
    /// Finished when the body ends, fails or is dropped.
    metered: Option<Metered>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// The response is an event stream: failures become an `error` event.
    sse: bool,
    dialect: Dialect,
    done: bool,
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
            inner,
            relay,
            metered,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            sse,
            dialect,
            done: false,
        }
    }

    fn end(&mut self) {
        self.done = true;
        if let Some(mut m) = self.metered.take() {
            m.finish(None, self.relay.usage(), self.relay.model());
        }
    }

    fn fail(&mut self, message: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.end();
        if self.sse {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(sse_error_event(
                self.dialect,
                message,
            ))))));
        }
        Poll::Ready(Some(Err(message.to_owned().into())))
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        // The client went away (or the server is stopping): record what was used.
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
                    let kept = self.relay.feed(data);
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
        self.done
    }
}
