//! Per-request state: [`Stream`] and [`LocalResponse`]; the proxy-wasm map
//! serialization.
//!
//! The embedder owns a [`Stream`] between callbacks; for the duration of one callback the
//! runtime lends it to the store's host functions (by reference, without copying it) so
//! they can read and change it.

pub use crate::header_map::HeaderMap;
use std::sync::Arc;

use crate::properties::{Attributes, Properties, StreamInfo};

/// Why a guest-supplied serialized map could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The buffer ends before the data its header announces.
    #[error("serialized map truncated")]
    Truncated,
    /// More pairs than the host accepts.
    #[error("serialized map has {0} pairs, more than the limit")]
    TooManyPairs(usize),
    /// A key or value is not followed by its NUL terminator.
    #[error("serialized map entry is not NUL-terminated")]
    MissingNul,
    /// A header name is not UTF-8.
    #[error("serialized map has a header name that is not UTF-8")]
    NameNotUtf8,
}

/// Parses the proxy-wasm map serialization. An empty buffer (or a lone 0 count) is an
/// empty map. Bounds are checked on every field; nothing is trusted.
pub(crate) fn deserialize_map(bytes: &[u8], max_pairs: usize) -> Result<HeaderMap, MapError> {
    if bytes.is_empty() {
        return Ok(HeaderMap::new());
    }
    let read_u32 = |at: usize| -> Result<usize, MapError> {
        let b = bytes.get(at..at + 4).ok_or(MapError::Truncated)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = if bytes.len() < 4 {
        // A single 0x00 byte is an accepted spelling of the empty map.
        if bytes.iter().all(|b| *b == 0) {
            return Ok(HeaderMap::new());
        }
        return Err(MapError::Truncated);
    } else {
        read_u32(0)?
    };
    if count > max_pairs {
        return Err(MapError::TooManyPairs(count));
    }
    let sizes_end = 4usize
        .checked_add(count.checked_mul(8).ok_or(MapError::Truncated)?)
        .ok_or(MapError::Truncated)?;
    if sizes_end > bytes.len() {
        return Err(MapError::Truncated);
    }
    let mut map = HeaderMap::with_capacity(count);
    let mut data = sizes_end;
    for i in 0..count {
        let klen = read_u32(4 + i * 8)?;
        let vlen = read_u32(8 + i * 8)?;
        let key = take(bytes, &mut data, klen)?;
        let value = take(bytes, &mut data, vlen)?;
        let name = std::str::from_utf8(key).map_err(|_| MapError::NameNotUtf8)?;
        map.add_bytes(name, value);
    }
    Ok(map)
}

/// Takes `len` bytes at `*at` followed by a NUL, advancing `*at` past the NUL.
fn take<'a>(bytes: &'a [u8], at: &mut usize, len: usize) -> Result<&'a [u8], MapError> {
    let end = at.checked_add(len).ok_or(MapError::Truncated)?;
    let slice = bytes.get(*at..end).ok_or(MapError::Truncated)?;
    match bytes.get(end) {
        Some(0) => {}
        Some(_) => return Err(MapError::MissingNul),
        None => return Err(MapError::Truncated),
    }
    *at = end + 1;
    Ok(slice)
}

/// A response the filter asked the host to send instead of proxying
/// (`proxy_send_local_response`).
#[derive(Clone, Debug)]
pub struct LocalResponse {
    /// HTTP status code to send.
    pub status: u32,
    /// Envoy's "response code details": a short reason for logs, not sent to the client.
    pub details: String,
    /// Response body.
    pub body: Vec<u8>,
    /// Extra response headers chosen by the filter.
    pub headers: HeaderMap,
    /// gRPC status to send, or -1 for none (what the Rust SDK passes for plain HTTP).
    pub grpc_status: i32,
}

/// Per-request state, owned by the embedder between callbacks (lent to the Store's host functions for a call).
#[derive(Debug, Default)]
pub struct Stream {
    /// Context id the runtime assigned in [`crate::Vm::create_stream`]; 0 before that.
    pub context_id: u32,
    /// Request headers, including the pseudo headers.
    pub request_headers: HeaderMap,
    /// The request body seen by `on_request_body` (HTTP_REQUEST_BODY).
    pub request_body: Vec<u8>,
    /// Request trailers.
    pub request_trailers: HeaderMap,
    /// Response headers, including `:status`.
    pub response_headers: HeaderMap,
    /// The response body seen by `on_response_body` (HTTP_RESPONSE_BODY).
    pub response_body: Vec<u8>,
    /// Response trailers.
    pub response_trailers: HeaderMap,
    /// Attributes by dotted path ("request.path", "source.address", "route_name", ...), values as
    /// Envoy encodes them (strings raw, ints 8-byte LE). The embedder fills what it knows; the
    /// filter's proxy_set_property writes here too. request.headers.* etc are derived from the maps.
    pub properties: Properties,
    /// Properties many streams share (a connection's addresses, a route's
    /// name), searched after [`Self::properties`], in order: an embedder
    /// sets them once, not per request. A filter's `proxy_set_property`
    /// writes to [`Self::properties`], which shadows these.
    pub shared: Vec<Arc<dyn Attributes>>,
    /// What the embedder knows about the request besides its maps (start, protocol), for
    /// the attributes derived from it.
    pub info: StreamInfo,
    /// Set by proxy_send_local_response (the first wins); read it with
    /// [`Self::local_response`], and a [`crate::StreamDriver`] says when to send it.
    pub(crate) local_response: Option<LocalResponse>,
    /// Set by proxy_continue_stream(HTTP_REQUEST); taken by [`crate::StreamDriver`].
    pub(crate) resume_request: bool,
    /// Set by proxy_continue_stream(HTTP_RESPONSE); taken by [`crate::StreamDriver`].
    pub(crate) resume_response: bool,
    /// Set by proxy_close_stream.
    pub(crate) close_requested: bool,
    /// Set when a filter changed `request_body` or `response_body`
    /// (proxy_set_buffer_bytes); [`crate::StreamDriver`] clears it before a body
    /// callback and reports it after ([`crate::BodyNext::Pass`]), so an embedder can
    /// pass on a chunk that no filter changed without copying it back.
    pub(crate) body_changed: bool,
}

impl Stream {
    /// An empty stream (context id 0 until [`crate::Vm::create_stream`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The local response a filter asked for (`proxy_send_local_response`), if any: the
    /// first one, to send instead of proxying.
    pub fn local_response(&self) -> Option<&LocalResponse> {
        self.local_response.as_ref()
    }

    /// Takes the local response to send it; a later one can then be recorded.
    pub fn take_local_response(&mut self) -> Option<LocalResponse> {
        self.local_response.take()
    }

    /// True if a filter asked to close (reset) the stream (`proxy_close_stream`).
    pub fn close_requested(&self) -> bool {
        self.close_requested
    }

    /// True if a filter resumed `side` (`proxy_continue_stream`) and no
    /// [`crate::StreamDriver`] took the resume yet.
    pub fn resume_requested(&self, side: crate::Side) -> bool {
        match side {
            crate::Side::Request => self.resume_request,
            crate::Side::Response => self.resume_response,
        }
    }

    /// The buffer of `side`'s body, as the body callbacks see it (`request_body` or
    /// `response_body`).
    pub fn body_mut(&mut self, side: crate::Side) -> &mut Vec<u8> {
        match side {
            crate::Side::Request => &mut self.request_body,
            crate::Side::Response => &mut self.response_body,
        }
    }

    /// Bytes the stream's maps and bodies hold, used or not.
    pub fn capacity_bytes(&self) -> usize {
        self.request_headers.capacity_bytes()
            + self.request_trailers.capacity_bytes()
            + self.response_headers.capacity_bytes()
            + self.response_trailers.capacity_bytes()
            + self.request_body.capacity()
            + self.response_body.capacity()
    }

    /// Makes the stream like new, keeping the buffers of its maps and
    /// bodies (an embedder may reuse streams across requests).
    pub fn clear(&mut self) {
        let Stream {
            context_id,
            request_headers,
            request_body,
            request_trailers,
            response_headers,
            response_body,
            response_trailers,
            properties,
            shared,
            info,
            local_response,
            resume_request,
            resume_response,
            close_requested,
            body_changed,
        } = self;
        *context_id = 0;
        request_headers.clear();
        request_body.clear();
        request_trailers.clear();
        response_headers.clear();
        response_body.clear();
        response_trailers.clear();
        properties.clear();
        shared.clear();
        info.clear();
        *local_response = None;
        *resume_request = false;
        *resume_response = false;
        *close_requested = false;
        *body_changed = false;
    }
}

#[cfg(test)]
mod tests;
