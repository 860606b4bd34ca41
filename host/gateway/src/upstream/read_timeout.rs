//! The upstream's `read_timeout`: how long a response body may keep the
//! gateway waiting for its next bytes once the head has arrived.
//!
//! The upstream's `timeout` ends with the response head. Without a second
//! limit, a backend that stops in the middle of a body would hold the
//! client's request (and, over HTTP/2, a stream of its connection) and the
//! upstream connection for as long as it keeps the socket open. nginx's
//! `proxy_read_timeout` and Envoy's stream idle timeout are the same limit.
//!
//! [`ReadTimeout`] wraps a response body and measures each wait on its
//! own: a body that is never polled (a client that stops reading, HTTP/2
//! flow control) is not waiting on the upstream and is not timed. The
//! timer is made the first time the body has to wait, so a response that
//! arrives with its head (the common small one) costs no timer at all; it
//! is reset, with one clock read, at the start of each later wait. When it
//! fires, the body ends with an error: what was sent stands, the client
//! sees the response cut (an HTTP/1.1 connection closed, an HTTP/2 stream
//! reset), and the upstream connection is dropped, never pooled.

use std::{
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::Endpoint;
use crate::body::BoxError;

/// A response body that fails once its upstream sends nothing for the
/// endpoint's `read_timeout` while the body is waited on.
pub(super) struct ReadTimeout<B> {
    inner: B,
    endpoint: Arc<Endpoint>,
    /// Made on the first wait, reset at the start of each later one.
    timer: Option<Pin<Box<Sleep>>>,
    /// The last poll was a wait (the timer runs for it).
    waiting: bool,
    /// The timer fired: the body has ended.
    expired: bool,
}

impl<B> ReadTimeout<B> {
    pub(super) fn new(inner: B, endpoint: Arc<Endpoint>) -> Self {
        Self {
            inner,
            endpoint,
            timer: None,
            waiting: false,
            expired: false,
        }
    }

    /// Starts (or goes on with) a wait; whether its time is up.
    fn wait_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + self.endpoint.read_timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
    }

    /// The error that ends the body, counted and logged once.
    fn expire(&mut self) -> BoxError {
        self.expired = true;
        let endpoint = &self.endpoint;
        endpoint.stats.timeouts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            upstream = %endpoint.upstream,
            endpoint = %endpoint.address,
            read_timeout = ?endpoint.read_timeout,
            "response body cut: the upstream sent nothing for read_timeout"
        );
        format!(
            "upstream {}: nothing of the response body for {:?} (read_timeout)",
            endpoint.upstream, endpoint.read_timeout
        )
        .into()
    }
}

impl<B> Body for ReadTimeout<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame)
            }
            Poll::Pending if this.wait_expired(cx) => Poll::Ready(Some(Err(this.expire()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
