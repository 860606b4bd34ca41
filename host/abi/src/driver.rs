//! [`StreamDriver`]: the rules for driving one filter's HTTP stream, written once for
//! every embedder (the gateway and the test harness).
//!
//! A filter's callbacks only record wishes on the [`Stream`]: an [`Action::Pause`] return,
//! `proxy_continue_stream`, `proxy_close_stream`, `proxy_send_local_response`, a rewritten
//! body. The driver turns them into what a proxy does next. It does no I/O and waits for
//! nothing: it answers with a decision ([`Next`], [`BodyNext`]) and the embedder acts on it
//! (sends the local response, answers an http call, feeds the body, waits for a signal).
//!
//! # The rules
//!
//! 1. A stream a filter closed (`proxy_close_stream`) is reset, whatever else it asked for.
//! 2. A local response ends the phase and is sent instead of proxying. The first one wins:
//!    a later one, from the same or another context, is ignored ([`Stream::apply`]) until
//!    the embedder takes it ([`Stream::take_local_response`]). The gateway, as Envoy, sends
//!    one from a request phase back through the filters' response callbacks.
//! 3. `proxy_continue_stream` resumes its side, whether the stream's own callback or another
//!    context (after `proxy_set_effective_context`) called it.
//! 4. The http calls a stream dispatched are answered before it moves on, paused or not.
//! 5. Headers a filter paused wait, with nothing of its own pending, for an operation
//!    addressed to its context from elsewhere: `on_tick`, `on_queue_ready`, a root-context
//!    call's answer, another stream's callback ([`crate::StreamSignal`]). The embedder bounds
//!    that wait.
//! 6. A filter with Envoy's `allow_on_headers_stop_iteration` that pauses the headers of a
//!    message with a body is fed the body instead of waited for: a `Continue` from one of
//!    its body callbacks resumes the headers, as `proxy_continue_stream` does.
//! 7. A `Pause` from a body callback holds its chunk back; the filter's next body callback
//!    sees the held bytes followed by the new chunk. At the end of the stream a pause only
//!    holds while the filter holds the headers (rule 6); otherwise it counts as `Continue`
//!    and the whole body passes.
//! 8. A pause from a trailers callback cannot be waited for and counts as `Continue`.
//!
//! One driver serves one filter's context of one stream; a chain keeps one per filter, over
//! the stream all its filters share.

use crate::status::Action;
use crate::stream::Stream;

/// Which side of the exchange a callback is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Client to upstream (`on_request_*`).
    Request,
    /// Upstream to client (`on_response_*`).
    Response,
}

/// What the embedder does next with a stream's headers phase ([`StreamDriver::next`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing holds the stream: on to the next filter, or on to the upstream (client).
    Continue,
    /// A filter answered: send [`Stream::local_response`] instead of proxying.
    Respond,
    /// A filter closed the stream: reset it.
    Close,
    /// The stream has an unanswered http call: answer the oldest
    /// (`on_http_call_response`), then ask again.
    AnswerHttpCall,
    /// The filter holds the headers and takes the body meanwhile (rule 6): feed it the body.
    FeedBody,
    /// Paused with nothing of its own pending: wait for an operation addressed to its
    /// context ([`Stream::apply`]), then ask again.
    WaitForSignal,
}

/// What a body callback's outcome means ([`StreamDriver::after_body`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyNext {
    /// The stream's body buffer passes on; `changed` if the filter rewrote it.
    Pass {
        /// The filter changed the buffer (`proxy_set_buffer_bytes`).
        changed: bool,
    },
    /// The filter holds the chunk back: nothing passes yet.
    Held,
    /// A filter answered: send [`Stream::local_response`] instead.
    Respond,
    /// A filter closed the stream: reset it.
    Close,
}

/// One side's state of a filter's stream.
#[derive(Debug, Default)]
struct SideState {
    /// The filter paused the headers and has not resumed them.
    headers_paused: bool,
    /// The last body callback held its chunk back.
    body_held: bool,
    /// The body bytes held back, seen again by the next body callback.
    held: Vec<u8>,
}

/// Drives one filter's context of an HTTP stream by the rules of this module.
#[derive(Debug, Default)]
pub struct StreamDriver {
    request: SideState,
    response: SideState,
}

impl StreamDriver {
    /// A driver for a stream no callback ran on yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn side(&mut self, side: Side) -> &mut SideState {
        match side {
            Side::Request => &mut self.request,
            Side::Response => &mut self.response,
        }
    }

    fn side_ref(&self, side: Side) -> &SideState {
        match side {
            Side::Request => &self.request,
            Side::Response => &self.response,
        }
    }

    /// True while `side` waits on the filter: it paused the headers, or held the last body
    /// chunk back, and has not resumed.
    pub fn is_paused(&self, side: Side) -> bool {
        let state = self.side_ref(side);
        state.headers_paused || state.body_held
    }

    /// True while the filter holds `side`'s headers.
    pub fn holds_headers(&self, side: Side) -> bool {
        self.side_ref(side).headers_paused
    }

    /// Records what a headers callback of `side` returned.
    pub fn after_headers(&mut self, side: Side, action: Action) {
        self.side(side).headers_paused = action == Action::Pause;
    }

    /// Applies the resumes (`proxy_continue_stream`) recorded on `stream` since the last
    /// look, for both sides (rule 3).
    pub fn take_resumes(&mut self, stream: &mut Stream) {
        if std::mem::take(&mut stream.resume_request) {
            self.resume(Side::Request);
        }
        if std::mem::take(&mut stream.resume_response) {
            self.resume(Side::Response);
        }
    }

    fn resume(&mut self, side: Side) {
        let state = self.side(side);
        state.headers_paused = false;
        state.body_held = false;
    }

    /// The filter failed and takes no further part in the stream: nothing of it is waited
    /// for any more (what it held back stays for [`Self::take_held`]).
    pub fn drop_out(&mut self) {
        self.resume(Side::Request);
        self.resume(Side::Response);
    }

    /// What to do with `side`'s headers phase now, after its callback (recorded with
    /// [`Self::after_headers`]) or after something the embedder waited for arrived.
    /// `calls_pending`: the stream has unanswered http calls; `body_to_feed`: the filter
    /// takes body callbacks while it holds the headers and a body is still to come (rule 6).
    pub fn next(
        &mut self,
        stream: &mut Stream,
        side: Side,
        calls_pending: bool,
        body_to_feed: bool,
    ) -> Next {
        if let Some(stop) = stopped(stream) {
            return stop;
        }
        self.take_resumes(stream);
        if calls_pending {
            Next::AnswerHttpCall
        } else if !self.holds_headers(side) {
            Next::Continue
        } else if body_to_feed {
            Next::FeedBody
        } else {
            Next::WaitForSignal
        }
    }

    /// Puts `chunk` in `stream`'s body buffer of `side` for the filter's next body callback,
    /// after what it held back (rule 7). Returns true if nothing was held: the buffer is
    /// exactly `chunk`.
    pub fn load_body(&mut self, stream: &mut Stream, side: Side, chunk: &[u8]) -> bool {
        let fresh = self.side_ref(side).held.is_empty();
        let buf = self.start_body(stream, side);
        buf.extend_from_slice(chunk);
        fresh
    }

    /// As [`Self::load_body`], with a chunk the caller owns (moved in when nothing is held).
    pub fn load_body_owned(&mut self, stream: &mut Stream, side: Side, chunk: Vec<u8>) {
        if self.side_ref(side).held.is_empty() {
            stream.body_changed = false;
            *stream.body_mut(side) = chunk;
        } else {
            self.start_body(stream, side).extend_from_slice(&chunk);
        }
    }

    /// The body buffer, holding what the filter held back (or nothing), with the change
    /// mark cleared.
    fn start_body<'s>(&mut self, stream: &'s mut Stream, side: Side) -> &'s mut Vec<u8> {
        let held = std::mem::take(&mut self.side(side).held);
        stream.body_changed = false;
        let buf = stream.body_mut(side);
        if held.is_empty() {
            buf.clear();
        } else {
            *buf = held;
        }
        buf
    }

    /// Records what a body callback of `side` returned and says what becomes of the chunk
    /// (rules 1, 2, 6 and 7). A held chunk moves from the stream into the driver; a chunk
    /// that passes stays in the stream's body buffer for the embedder.
    pub fn after_body(
        &mut self,
        stream: &mut Stream,
        side: Side,
        action: Action,
        end_of_stream: bool,
    ) -> BodyNext {
        if stream.close_requested {
            return BodyNext::Close;
        }
        if stream.local_response.is_some() {
            return BodyNext::Respond;
        }
        let state = self.side(side);
        if action == Action::Pause && (!end_of_stream || state.headers_paused) {
            state.held = std::mem::take(stream.body_mut(side));
            state.body_held = true;
            return BodyNext::Held;
        }
        state.body_held = false;
        state.headers_paused = false;
        BodyNext::Pass {
            changed: stream.body_changed,
        }
    }

    /// Takes what the filter held back of `side`'s body (released: it passes on).
    pub fn take_held(&mut self, side: Side) -> Vec<u8> {
        std::mem::take(&mut self.side(side).held)
    }

    /// Says what a trailers callback leaves (rules 1, 2 and 8): [`Next::Close`],
    /// [`Next::Respond`] or [`Next::Continue`], whatever it returned.
    pub fn after_trailers(&self, stream: &Stream) -> Next {
        stopped(stream).unwrap_or(Next::Continue)
    }
}

/// [`Next::Close`] or [`Next::Respond`] if a filter ended the stream's flow (rules 1 and 2).
fn stopped(stream: &Stream) -> Option<Next> {
    if stream.close_requested {
        Some(Next::Close)
    } else if stream.local_response.is_some() {
        Some(Next::Respond)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
