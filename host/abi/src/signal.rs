//! [`StreamSignal`]: what a filter asked of a stream other than the one its callback runs on.
//!
//! A filter can act on a paused stream from outside that stream's callbacks: Go's
//! `postpone_requests` pauses in `on_http_request_headers` and, from `on_tick`, calls
//! `proxy_set_effective_context(ctx)` then `proxy_continue_stream`. Envoy applies that to the
//! stream `ctx`. Here the stream belongs to the embedder and is not lent during a root
//! callback, so the wish is recorded as a signal for the embedder
//! ([`crate::Vm::take_stream_signals`]), which hands it to whatever holds the stream and
//! applies it there with [`Stream::apply`]. The signal answers OK to the guest, as in Envoy.

use crate::stream::{LocalResponse, Stream};

/// A stream operation addressed to another context.
#[derive(Clone, Debug)]
pub struct StreamSignal {
    /// The stream context it is for (as set by `proxy_set_effective_context`).
    pub context_id: u32,
    /// What to do.
    pub op: StreamOp,
}

/// The stream operations a filter can address to another context.
#[derive(Clone, Debug)]
pub enum StreamOp {
    /// `proxy_continue_stream(HTTP_REQUEST)`.
    ResumeRequest,
    /// `proxy_continue_stream(HTTP_RESPONSE)`.
    ResumeResponse,
    /// `proxy_close_stream`.
    Close,
    /// `proxy_send_local_response`.
    LocalResponse(Box<LocalResponse>),
}

impl Stream {
    /// Applies an operation another context addressed to this stream, as if the stream's own
    /// callback had made the call (a local response already pending wins).
    pub fn apply(&mut self, op: StreamOp) {
        match op {
            StreamOp::ResumeRequest => self.resume_request = true,
            StreamOp::ResumeResponse => self.resume_response = true,
            StreamOp::Close => self.close_requested = true,
            StreamOp::LocalResponse(local) => {
                if self.local_response.is_none() {
                    self.info.local_details = Some(local.details.clone());
                    self.local_response = Some(*local);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
