//! The HTTP/1.1 codec the two lean paths share: the lean server loop
//! (`listener/h1.rs`) and the lean upstream client (`upstream/h1.rs`) read
//! and write messages with the same code, so a head, a length or a chunk
//! means the same thing on both sides of the proxy.
//!
//! - [`request`]: request heads, read (the server) and written (the client);
//! - [`response`]: response heads, read (the client) and written (the
//!   server), and how a response's body is delimited (RFC 9112 §6.3);
//! - [`chunked`]: the chunked transfer coding, decoded as bytes arrive.
//!
//! Which header fields frame a message, and which are hop-by-hop, is
//! decided in one place for every path, lean or hyper: `headers.rs`.

use std::{
    cell::RefCell,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub(crate) mod chunked;
pub(crate) mod request;
pub(crate) mod response;

/// Most header fields a head may have: hyper's default, for responses and
/// trailers alike.
pub(crate) const MAX_HEADERS: usize = 100;

/// Largest response head or chunk-size line and trailers accepted.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How a message body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (a response to HEAD; 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes.
    Close,
}

/// Whether a response with `status` to a request that was (or not) a
/// `HEAD` has no body (RFC 9110 §6.4.1).
pub(crate) fn bodiless(status: http::StatusCode, head_request: bool) -> bool {
    head_request
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
}

/// Appends one `name: value` line.
pub(crate) fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `date` value, formatted once per second per worker.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Runs `f` with the current HTTP date (`Sat, 28 Nov 2026 18:00:00 GMT`).
pub(crate) fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    DATE.with_borrow_mut(|(cached, text)| {
        if *cached != secs {
            *cached = secs;
            *text = httpdate::fmt_http_date(now);
        }
        f(text.as_bytes());
    });
}
