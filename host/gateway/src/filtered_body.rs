//! Bodies that stream: [`LimitedBody`] enforces `limits.max_body_bytes`
//! while passing chunks on, and [`FilteredBody`] runs each chunk through a
//! route's filters (`on_*_body`, then `on_*_trailers`) as it goes by.
//!
//! Nothing is buffered unless a filter pauses a body callback (Envoy's
//! StopIterationAndBuffer): then the chunks are held and the filter sees all
//! of them, appended, on its next body callback.
//!
//! A filter that answers, fails under `deny` or closes the stream while the
//! request body streams fails the body on purpose (which stops the upstream
//! exchange) and leaves its decision in the run ([`crate::chain::Verdict`])
//! for the pipeline to answer with.

use std::{
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use crate::{
    body::{BoxError, RequestBody},
    chain::{BodyStep, FilterRun, Side, Verdict},
    proxy::BodyWatch,
};

/// The request body, failing once more than `limit` bytes arrived.
pub struct LimitedBody {
    inner: RequestBody,
    remaining: u64,
    limit: u64,
    watch: Arc<BodyWatch>,
}

impl LimitedBody {
    /// Wraps a body; `watch` learns when the limit is crossed (so the
    /// pipeline can answer 413 instead of 502) and when the body was read
    /// to its end.
    pub fn new(inner: RequestBody, limit: u64, watch: Arc<BodyWatch>) -> Self {
        if inner.is_end_stream() {
            watch.finished.store(true, Ordering::Relaxed);
        }
        Self {
            inner,
            remaining: limit,
            limit,
            watch,
        }
    }
}

/// The error a body over the limit fails with.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
pub struct TooLarge(pub u64);

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(match frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        self.watch.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(TooLarge(self.limit)))));
                    }
                    self.remaining -= len;
                }
                if self.inner.is_end_stream() {
                    self.watch.finished.store(true, Ordering::Relaxed);
                }
                Some(Ok(frame))
            }
            Some(Err(e)) => Some(Err(Box::new(e))),
            None => {
                self.watch.finished.store(true, Ordering::Relaxed);
                None
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body passing through a route's filters.
pub struct FilteredBody<B> {
    inner: B,
    side: Side,
    run: Option<Box<FilterRun>>,
    /// Request side: where the run goes when the body is done, so the
    /// response phases can use it.
    back: Option<oneshot::Sender<Box<FilterRun>>>,
    /// A frame to send after the current one (trailers after flushed data).
    pending: Option<Frame<Bytes>>,
    /// Filters have seen the end of the stream.
    ended: bool,
    /// The length the body goes out with (`content-length`), if known:
    /// what passes is held to it, or the body fails rather than leave the
    /// next hop out of step.
    length: Option<u64>,
    /// Bytes passed on so far.
    passed: u64,
}

impl<B> FilteredBody<B> {
    /// The request body; the receiver gets the run back when the body ends
    /// or is dropped.
    /// `length`: the length the body is sent with, if it is sent with one.
    pub fn request(
        inner: B,
        run: Box<FilterRun>,
        length: Option<u64>,
    ) -> (Self, oneshot::Receiver<Box<FilterRun>>) {
        let (tx, rx) = oneshot::channel();
        let body = Self {
            inner,
            side: Side::Request,
            run: Some(run),
            back: Some(tx),
            pending: None,
            ended: false,
            length,
            passed: 0,
        };
        (body, rx)
    }

    /// The response body; the run finishes (`on_log`, `on_done`) when it ends
    /// or is dropped. `length` as for [`FilteredBody::request`].
    pub fn response(inner: B, run: Box<FilterRun>, length: Option<u64>) -> Self {
        Self {
            inner,
            side: Side::Response,
            run: Some(run),
            back: None,
            pending: None,
            ended: false,
            length,
            passed: 0,
        }
    }

    /// Sends `prefix` first: body that went through the filters while
    /// one of them held the headers ([`crate::chain::HeldBody`]).
    #[must_use]
    pub fn with_prefix(mut self, prefix: Bytes) -> Self {
        if !prefix.is_empty() {
            // Counted: a prefix over the declared length fails the body
            // at its next frame or its end.
            self.passed += prefix.len() as u64;
            self.pending = Some(Frame::data(prefix));
        }
        self
    }

    /// Counts `data` against the declared length: more than declared, or
    /// less at the end, fails the body (a filter changed its length but
    /// left `content-length`: a filter that changes a body's length removes
    /// it, and the body goes out chunked).
    fn held_to_length(&mut self, data: &Bytes, end: bool) -> Result<(), BoxError> {
        self.passed += data.len() as u64;
        match self.length {
            Some(n) if self.passed > n || (end && self.passed != n) => {
                self.length = None;
                Err(format!(
                    "a filter changed the body's length to {} but left content-length at {n}",
                    self.passed
                )
                .into())
            }
            _ => Ok(()),
        }
    }

    fn end(&mut self) {
        self.ended = true;
        if let Some(mut run) = self.run.take() {
            match self.back.take() {
                Some(back) => {
                    let _ = back.send(run);
                }
                None => run.finish(),
            }
        }
    }

    fn failed(&mut self) -> BoxError {
        let name = self
            .run
            .as_ref()
            .map(|r| r.chain().route.clone())
            .unwrap_or_default();
        self.end();
        format!("route {name}: a filter failed while streaming the body").into()
    }

    /// Stops the body because of a filter's decision. On the request side
    /// the decision goes back to the pipeline with the run, which answers
    /// with it; on the response side the headers are gone already, so the
    /// response can only be cut short.
    fn decided(&mut self, verdict: Verdict) -> BoxError {
        if self.side == Side::Request
            && let Some(run) = self.run.as_mut()
        {
            run.set_verdict(verdict);
        }
        self.failed()
    }

    /// Runs a data chunk (or the end) through the filters.
    fn step(&mut self, data: Bytes, eos: bool) -> Result<Bytes, BoxError> {
        let Some(run) = self.run.as_mut() else {
            return Ok(data);
        };
        match run.body(self.side, data, eos) {
            Ok(BodyStep::Forward(bytes)) => Ok(bytes),
            Ok(BodyStep::Respond(local)) => Err(self.decided(Verdict::Respond(local))),
            Err(e) => Err(self.decided(Verdict::Fail(e))),
        }
    }

    fn trailers(&mut self, trailers: HeaderMap) -> Result<HeaderMap, BoxError> {
        let Some(run) = self.run.as_mut() else {
            return Ok(trailers);
        };
        match run.trailers_now(self.side, &trailers) {
            Ok(t) => match run.stream.take_local_response() {
                Some(local) => Err(self.decided(Verdict::Respond(Box::new(local)))),
                None => Ok(t),
            },
            Err(e) => Err(self.decided(Verdict::Fail(e))),
        }
    }
}

impl<B> Body for FilteredBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(frame) = this.pending.take() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let eos = this.inner.is_end_stream();
                        let out = this.step(data, eos);
                        if eos {
                            this.end();
                        }
                        let out = out.and_then(|b| this.held_to_length(&b, eos).map(|()| b));
                        match out {
                            Ok(bytes) if bytes.is_empty() && !eos => continue,
                            Ok(bytes) if bytes.is_empty() => return Poll::Ready(None),
                            Ok(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        }
                    }
                    Err(frame) => {
                        let Ok(trailers) = frame.into_trailers() else {
                            continue;
                        };
                        // Body filters see the end (and give back what they
                        // held) before the trailers.
                        let flushed = match this
                            .step(Bytes::new(), true)
                            .and_then(|b| this.held_to_length(&b, true).map(|()| b))
                        {
                            Ok(b) => b,
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        };
                        let trailers = match this.trailers(trailers) {
                            Ok(t) => t,
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        };
                        this.end();
                        if flushed.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        this.pending = Some(Frame::trailers(trailers));
                        return Poll::Ready(Some(Ok(Frame::data(flushed))));
                    }
                },
                Some(Err(e)) => {
                    this.end();
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    // The stream ended without a final data frame: give the
                    // filters their end of stream (and release held data).
                    let out = this.step(Bytes::new(), true);
                    this.end();
                    let out = out.and_then(|b| this.held_to_length(&b, true).map(|()| b));
                    match out {
                        Ok(bytes) if bytes.is_empty() => return Poll::Ready(None),
                        Ok(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.pending.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Filters may change the length: known only when they left the
        // declared one in place (and then held to it).
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl<B> Drop for FilteredBody<B> {
    fn drop(&mut self) {
        self.end();
    }
}
