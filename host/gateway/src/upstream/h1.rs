//! A lean HTTP/1.1 client that runs in the caller's task.
//!
//! hyper's client connection is a task of its own, fed through channels:
//! each exchange costs extra task wake-ups, and the response body crosses a
//! channel. For the commonest exchange — an idempotent request without a
//! body to an HTTP/1.1 upstream, plain or over TLS — this module writes the
//! request and reads the response on the connection directly, from
//! whichever task polls it: the request's task for the head, the client
//! connection's task for the body. Everything else (request bodies,
//! HTTP/2, non-idempotent methods) goes through hyper ([`eligible`] and
//! `Endpoint::takes_lean` decide). The connection is plain TCP or TLS
//! (`h1/stream.rs`); over TLS, a stream that ends without `close_notify`
//! is an error (rustls reports it), so a truncated body never passes for a
//! whole one, even one read until close.
//!
//! Response framing follows RFC 9112 §6.3: no body for `HEAD`, 1xx, 204 and
//! 304; `Transfer-Encoding` ending in `chunked` is decoded (trailers
//! included), any other `Transfer-Encoding` reads until close; otherwise
//! `Content-Length`, otherwise until close. A connection goes back to the
//! pool only when its response was read to the end, it was HTTP/1.1
//! without `Connection: close`, and nothing followed the response.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use http::{Method, Response};
use http_body::{Body, Frame, SizeHint};

use super::Endpoint;
use crate::{
    body::BoxError,
    h1::{
        Framing, MAX_HEAD_BYTES,
        chunked::{self, Chunk, Decoded},
        request,
        response::{self, Head, Parsed},
    },
};

mod records;
mod stream;

pub(super) use records::{RecordWatch, Tracked};
pub(super) use stream::Stream;

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// An idle connection to an upstream, with what was read past the last
/// response (nothing, for a pooled one).
#[derive(Debug)]
pub(super) struct Conn {
    stream: Stream,
    buf: BytesMut,
    /// The request head being written (kept for the next exchange).
    out: Vec<u8>,
    /// Counts this connection against the endpoint's `max_connections`.
    _slot: super::Slot,
}

impl Conn {
    pub(super) fn new(stream: Stream, slot: super::Slot) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(512),
            _slot: slot,
        }
    }

    /// Reads more into the buffer; `Ready(Ok(0))` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        // Through `AsyncRead` rather than `try_read_buf`: a read shorter
        // than the buffer tells tokio the socket is drained, which saves the
        // next exchange a `recv` that could only say "would block".
        let read = tokio::io::AsyncReadExt::read_buf(&mut self.stream, &mut self.buf);
        std::pin::pin!(read).poll(cx)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Whether an idle connection can carry a new exchange: nothing left in
    /// its buffer, and nothing (no late bytes, no end of stream) waiting in
    /// the connection ([`Stream::is_clean`]). Bytes an upstream sends after
    /// its response (a body after a HEAD, a 204 or a 304, more than its
    /// `Content-Length`) would otherwise be read as the next request's
    /// response, whoever sent it.
    pub(super) fn is_clean(&mut self) -> bool {
        self.buf.is_empty() && self.stream.is_clean()
    }
}

/// Whether a request can take this path: no body and an idempotent method
/// (so a request written to a pooled connection the upstream had just
/// closed can be sent again, RFC 9110 §9.2.2).
pub(super) fn eligible<B: Body>(req: &http::Request<B>) -> bool {
    req.body().is_end_stream()
        && matches!(
            *req.method(),
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        )
}

/// How an exchange failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// A reused connection was closed before any of the response arrived:
    /// the request may be sent again on a fresh one.
    Stale,
    /// Anything else, described.
    Failed(String),
}

/// Sends a bodiless request on `conn` and reads the response head; the
/// body streams afterwards and returns the connection to `endpoint`'s pool
/// when it ends cleanly.
pub(super) async fn exchange(
    mut conn: Conn,
    parts: &http::request::Parts,
    endpoint: &Arc<Endpoint>,
    reused: bool,
) -> Result<Response<crate::body::Body>, Failure> {
    conn.out.clear();
    request::encode(parts, &endpoint.authority, &mut conn.out);
    let broken = |e: io::Error| {
        if reused {
            Failure::Stale
        } else {
            Failure::Failed(format!("writing the request: {e}"))
        }
    };
    tokio::io::AsyncWriteExt::write_all(&mut conn.stream, &conn.out)
        .await
        .map_err(broken)?;
    // Over TLS, records rustls could not write yet wait in its buffer
    // (plain TCP has nothing to flush).
    if let Stream::Tls(tls) = &mut conn.stream {
        tokio::io::AsyncWriteExt::flush(tls.as_mut())
            .await
            .map_err(broken)?;
    }
    let mut received = false;
    loop {
        if !conn.buf.is_empty() {
            received = true;
            match response::parse(&mut conn.buf, parts.method == Method::HEAD)
                .map_err(Failure::Failed)?
            {
                Parsed::Head(head) => return Ok(respond(conn, head, endpoint)),
                // An informational response was consumed: parse again.
                Parsed::Skipped => continue,
                Parsed::Partial => {}
            }
        }
        match conn.fill().await {
            Ok(0) if reused && !received => return Err(Failure::Stale),
            Ok(0) => {
                return Err(Failure::Failed(
                    "connection closed before a complete response head".into(),
                ));
            }
            Ok(_) => {}
            Err(e) if reused && !received => {
                tracing::debug!(error = %e, "pooled upstream connection failed; retrying");
                return Err(Failure::Stale);
            }
            Err(e) => return Err(Failure::Failed(format!("reading the response: {e}"))),
        }
    }
}

/// The response for a parsed head; its body reads from `conn`.
fn respond(conn: Conn, head: Head, endpoint: &Arc<Endpoint>) -> Response<crate::body::Body> {
    let body = if matches!(head.framing, Framing::None | Framing::Length(0)) {
        // Nothing to read: the connection is free right away.
        if head.keep_alive && conn.buf.is_empty() {
            endpoint.checkin_raw(conn);
        }
        crate::body::empty()
    } else {
        let body = UpstreamBody {
            conn: Some(conn),
            framing: head.framing,
            chunk: Chunk::Size,
            keep_alive: head.keep_alive,
            endpoint: endpoint.clone(),
        };
        http_body_util::BodyExt::boxed_unsync(super::ReadTimeout::new(body, endpoint.clone()))
    };
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    response
}

/// A response body read from the connection as it is polled.
struct UpstreamBody {
    /// `None` once the body ended (the connection was pooled or dropped).
    conn: Option<Conn>,
    framing: Framing,
    /// Where the chunked decoder is (for a chunked body).
    chunk: Chunk,
    keep_alive: bool,
    endpoint: Arc<Endpoint>,
}

impl UpstreamBody {
    /// The body ended: pool the connection if it can carry another exchange.
    fn done(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
        {
            self.endpoint.checkin_raw(conn);
        }
    }

    fn fail(
        &mut self,
        what: impl std::fmt::Display,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(format!(
            "upstream {}: {what}",
            self.endpoint.upstream
        )
        .into())))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.framing {
                Framing::None | Framing::Length(0) => {
                    this.done();
                    return Poll::Ready(None);
                }
                Framing::Length(left) if !conn.buf.is_empty() => {
                    let n = conn
                        .buf
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    let data = conn.buf.split_to(n).freeze();
                    if *left == 0 {
                        this.done();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Close if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked if !conn.buf.is_empty() => {
                    match chunked::decode(&mut this.chunk, &mut conn.buf) {
                        Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                        Ok(Decoded::Trailers(trailers)) => {
                            this.done();
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        Ok(Decoded::End) => {
                            this.done();
                            return Poll::Ready(None);
                        }
                        Ok(Decoded::More) => {}
                        Err(what) => return this.fail(what),
                    }
                }
                _ => {}
            }
            // Need more bytes.
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if conn.buf.len() > MAX_HEAD_BYTES && matches!(this.framing, Framing::Chunked) {
                return this.fail("chunk header or trailers too large");
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.framing, Framing::Close) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail("connection closed in the middle of the body"),
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || matches!(self.framing, Framing::None | Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::None => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
