//! A lean HTTP/1.1 client that runs in the caller's task.
//!
//! hyper's client connection is a task of its own, fed through channels:
//! each exchange costs extra task wake-ups, and the response body crosses a
//! channel. For the commonest exchange — an idempotent request without a
//! body to a plain-HTTP/1.1 upstream — this module writes the request and
//! reads the response on the socket directly, from whichever task polls
//! it: the request's task for the head, the client connection's task for
//! the body. Everything else (request bodies, TLS, HTTP/2, non-idempotent
//! methods) goes through hyper ([`eligible`] decides).
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
    mem::MaybeUninit,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version, header};
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;

use super::Upstream;
use crate::{
    body::BoxError,
    headers::{
        content_length, is_hop_by_hop, is_only_chunked, sliced_map, strip_hop_by_hop, tokens,
    },
};

/// Largest response head (status line and headers) accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most response headers accepted (as hyper's default).
const MAX_HEADERS: usize = 100;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// An idle connection to an upstream, with what was read past the last
/// response (nothing, for a pooled one).
#[derive(Debug)]
pub(super) struct Conn {
    tcp: TcpStream,
    buf: BytesMut,
    /// The request head being written (kept for the next exchange).
    out: Vec<u8>,
}

impl Conn {
    pub(super) fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(512),
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
        let read = tokio::io::AsyncReadExt::read_buf(&mut self.tcp, &mut self.buf);
        std::pin::pin!(read).poll(cx)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Whether an idle connection can carry a new exchange: nothing left in
    /// its buffer, and nothing (no late bytes, no end of stream) waiting in
    /// the socket. Bytes an upstream sends after its response (a body after
    /// a HEAD, a 204 or a 304, more than its `Content-Length`) would
    /// otherwise be read as the next request's response, whoever sent it.
    ///
    /// A non-blocking `recv` with `MSG_PEEK` asks the kernel, not tokio's
    /// readiness (which learns of new bytes only when the reactor runs).
    pub(super) fn is_clean(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        matches!(
            socket2::SockRef::from(&self.tcp).peek(&mut probe),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
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
/// body streams afterwards and returns the connection to `upstream`'s pool
/// when it ends cleanly.
pub(super) async fn exchange(
    mut conn: Conn,
    parts: &http::request::Parts,
    upstream: &Arc<Upstream>,
    reused: bool,
) -> Result<Response<crate::body::Body>, Failure> {
    conn.out.clear();
    encode_head(parts, &upstream.authority, &mut conn.out);
    let broken = |e: io::Error| {
        if reused {
            Failure::Stale
        } else {
            Failure::Failed(format!("writing the request: {e}"))
        }
    };
    tokio::io::AsyncWriteExt::write_all(&mut conn.tcp, &conn.out)
        .await
        .map_err(broken)?;
    let mut received = false;
    loop {
        if !conn.buf.is_empty() {
            received = true;
            match parse_head(&mut conn.buf, parts.method == Method::HEAD)? {
                Parsed::Head(head) => return Ok(respond(conn, head, upstream)),
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
fn respond(conn: Conn, head: Head, upstream: &Arc<Upstream>) -> Response<crate::body::Body> {
    let body = if matches!(head.framing, Framing::Empty | Framing::Length(0)) {
        // Nothing to read: the connection is free right away.
        if head.keep_alive && conn.buf.is_empty() {
            upstream.checkin_raw(conn);
        }
        crate::body::empty()
    } else {
        http_body_util::BodyExt::boxed_unsync(UpstreamBody {
            conn: Some(conn),
            framing: head.framing,
            keep_alive: head.keep_alive,
            upstream: upstream.clone(),
        })
    };
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    response
}

/// The request line and headers, as sent upstream (`Host` from the
/// upstream's authority when the request has none).
fn encode_head(parts: &http::request::Parts, authority: &http::uri::Authority, out: &mut Vec<u8>) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !parts.headers.contains_key(header::HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(authority.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A response head, and how its body is delimited.
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

/// What the buffer held.
enum Parsed {
    /// A final response head.
    Head(Head),
    /// An informational (1xx) response, consumed; the final one follows.
    Skipped,
    /// Not a complete head yet.
    Partial,
}

/// Parses a response head off the front of `buf`.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Parsed, Failure> {
    let invalid = |what: &str| Failure::Failed(format!("invalid response: {what}"));
    // Uninitialised slots: filling a hundred of them first would cost more
    // than parsing a typical head.
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(invalid("head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(invalid(&e.to_string())),
    };
    let status =
        StatusCode::from_u16(parsed.code.unwrap_or(0)).map_err(|_| invalid("status code"))?;
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(invalid("protocol upgrade not supported"));
        }
        // 100 Continue and friends: the final response follows.
        buf.advance(len);
        return Ok(Parsed::Skipped);
    }
    // Header values become slices of the head, shared rather than copied:
    // note where they are, then freeze the head.
    let base = buf.as_ptr() as usize;
    let mut fields = Vec::with_capacity(parsed.headers.len());
    let mut seen = Seen::default();
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| invalid("header name"))?;
        seen.note(&name);
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start..start + h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers =
        sliced_map(&head, fields.into_iter(), 0).ok_or_else(|| invalid("header value"))?;
    let framing = framing(&headers, seen, status, head_request)?;
    // Both framings at once is a smuggling smell: read this one, then close.
    let ambiguous = seen.transfer_encoding && seen.content_length;
    let close_asked = seen.connection
        && tokens(&headers, header::CONNECTION).any(|t| t.eq_ignore_ascii_case("close"));
    let keep_alive = version == Version::HTTP_11
        && !close_asked
        && !matches!(framing, Framing::Close)
        && !ambiguous;
    if seen.hop_by_hop {
        // Read above; not for the client (see `Upstream::send`).
        strip_hop_by_hop(&mut headers);
    }
    Ok(Parsed::Head(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// How the response body is delimited.
#[derive(Debug)]
enum Framing {
    /// No body.
    Empty,
    /// This many bytes remain.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    Close,
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk: bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// Which of the fields that decide framing and reuse a head has, noted
/// while it is parsed, so the map is only searched for those present.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    transfer_encoding: bool,
    content_length: bool,
    connection: bool,
    /// Any hop-by-hop field (`Connection` and `Transfer-Encoding` too).
    hop_by_hop: bool,
}

impl Seen {
    fn note(&mut self, name: &HeaderName) {
        if name == header::CONTENT_LENGTH {
            self.content_length = true;
        } else if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            self.hop_by_hop = true;
        } else if name == header::CONNECTION {
            self.connection = true;
            self.hop_by_hop = true;
        } else if is_hop_by_hop(name) {
            self.hop_by_hop = true;
        }
    }
}

fn framing(
    headers: &HeaderMap,
    seen: Seen,
    status: StatusCode,
    head_request: bool,
) -> Result<Framing, Failure> {
    let invalid = |what: &str| Failure::Failed(format!("invalid response: {what}"));
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Empty);
    }
    if seen.transfer_encoding {
        // A coding besides `chunked` would be lost once the chunks are
        // decoded and the body framed anew for the client: refused.
        if !is_only_chunked(headers) {
            return Err(invalid("transfer coding other than chunked"));
        }
        return Ok(Framing::Chunked(Chunk::Size));
    }
    if !seen.content_length {
        return Ok(Framing::Close);
    }
    match content_length(headers) {
        Ok(Some(n)) => Ok(Framing::Length(n)),
        Ok(None) => Ok(Framing::Close),
        Err(_) => Err(invalid("content-length")),
    }
}

/// A response body read from the connection as it is polled.
struct UpstreamBody {
    /// `None` once the body ended (the connection was pooled or dropped).
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    upstream: Arc<Upstream>,
}

impl UpstreamBody {
    /// The body ended: pool the connection if it can carry another exchange.
    fn done(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
        {
            self.upstream.checkin_raw(conn);
        }
    }

    fn fail(
        &mut self,
        what: impl std::fmt::Display,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(format!(
            "upstream {}: {what}",
            self.upstream.name
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
                Framing::Empty | Framing::Length(0) => {
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
                Framing::Chunked(state) if !conn.buf.is_empty() => {
                    match decode_chunk(state, &mut conn.buf) {
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
            if conn.buf.len() > MAX_HEAD_BYTES && matches!(this.framing, Framing::Chunked(_)) {
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
        self.conn.is_none() || matches!(self.framing, Framing::Empty | Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// What one step of the chunked decoder produced.
enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
    /// Needs more bytes.
    More,
}

/// Decodes what the buffer holds of a chunked body.
fn decode_chunk(state: &mut Chunk, buf: &mut BytesMut) -> Result<Decoded, &'static str> {
    loop {
        match *state {
            Chunk::Size => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, 0))) => {
                    buf.advance(used);
                    *state = Chunk::Trailers;
                }
                Ok(httparse::Status::Complete((used, size))) => {
                    buf.advance(used);
                    *state = Chunk::Data(size);
                }
                Ok(httparse::Status::Partial) => return Ok(Decoded::More),
                Err(_) => return Err("invalid chunk size"),
            },
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let data = buf.split_to(n).freeze();
                let left = left - n as u64;
                *state = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
                return Ok(Decoded::Data(data));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Decoded::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("chunk not followed by CRLF");
                }
                buf.advance(2);
                *state = Chunk::Size;
            }
            Chunk::Trailers => {
                if buf.starts_with(b"\r\n") {
                    buf.advance(2);
                    return Ok(Decoded::End);
                }
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                return match httparse::parse_headers(buf, &mut slots) {
                    Ok(httparse::Status::Complete((used, fields))) => {
                        let mut trailers = HeaderMap::new();
                        for f in fields {
                            if let (Ok(n), Ok(v)) = (
                                HeaderName::from_bytes(f.name.as_bytes()),
                                HeaderValue::from_bytes(f.value),
                            ) {
                                trailers.append(n, v);
                            }
                        }
                        buf.advance(used);
                        Ok(Decoded::Trailers(trailers))
                    }
                    Ok(httparse::Status::Partial) => Ok(Decoded::More),
                    Err(_) => Err("invalid trailers"),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8], head_request: bool) -> Result<Option<Head>, Failure> {
        match parse_head(&mut BytesMut::from(bytes), head_request)? {
            Parsed::Head(h) => Ok(Some(h)),
            Parsed::Skipped | Parsed::Partial => Ok(None),
        }
    }

    /// Feeds `pieces` one after the other, collecting data and trailers.
    fn dechunk(pieces: &[&[u8]]) -> Result<(Vec<u8>, Option<HeaderMap>, bool), &'static str> {
        let (mut state, mut buf) = (Chunk::Size, BytesMut::new());
        let (mut data, mut trailers) = (Vec::new(), None);
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                match decode_chunk(&mut state, &mut buf)? {
                    Decoded::Data(d) => data.extend_from_slice(&d),
                    Decoded::Trailers(t) => {
                        trailers = Some(t);
                        return Ok((data, trailers, buf.is_empty()));
                    }
                    Decoded::End => return Ok((data, trailers, buf.is_empty())),
                    Decoded::More => break,
                }
            }
        }
        Err("unfinished")
    }

    #[test]
    fn chunked_bodies_split_anywhere() {
        let body: &[u8] = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        for cut in 1..body.len() {
            let (data, trailers, clean) = dechunk(&[&body[..cut], &body[cut..]]).unwrap();
            assert_eq!(data, b"hello world", "cut at {cut}");
            assert!(trailers.is_none() && clean);
        }
        let (data, trailers, _) = dechunk(&[b"2\r\nok\r\n0\r\nx-t: 1\r\nx-u: 2\r\n\r\n"]).unwrap();
        assert_eq!(data, b"ok");
        let trailers = trailers.unwrap();
        assert_eq!(trailers["x-t"], "1");
        assert_eq!(trailers["x-u"], "2");
        assert_eq!(dechunk(&[b"zz\r\n"]).unwrap_err(), "invalid chunk size");
        assert_eq!(
            dechunk(&[b"2\r\nokXX"]).unwrap_err(),
            "chunk not followed by CRLF"
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = |pairs: &[(&str, &str)]| -> HeaderMap {
            pairs
                .iter()
                .map(|(n, v)| {
                    (
                        HeaderName::from_bytes(n.as_bytes()).unwrap(),
                        HeaderValue::from_str(v).unwrap(),
                    )
                })
                .collect()
        };
        // What parse_head notes while parsing.
        let framed = |h: &HeaderMap, status, head_request| {
            let mut seen = Seen::default();
            h.keys().for_each(|n| seen.note(n));
            framing(h, seen, status, head_request)
        };
        let ok = StatusCode::OK;
        let cl = h(&[("content-length", "12")]);
        assert!(matches!(framed(&cl, ok, true), Ok(Framing::Empty)));
        assert!(matches!(
            framed(&cl, StatusCode::NO_CONTENT, false),
            Ok(Framing::Empty)
        ));
        assert!(matches!(
            framed(&cl, StatusCode::NOT_MODIFIED, false),
            Ok(Framing::Empty)
        ));
        assert!(matches!(framed(&cl, ok, false), Ok(Framing::Length(12))));
        assert!(matches!(
            framed(&h(&[("content-length", "3, 3")]), ok, false),
            Ok(Framing::Length(3))
        ));
        assert!(framed(&h(&[("content-length", "3, 4")]), ok, false).is_err());
        assert!(framed(&h(&[("content-length", "-1")]), ok, false).is_err());
        assert!(framed(&h(&[("content-length", "+2")]), ok, false).is_err());
        let te = h(&[("transfer-encoding", "chunked"), ("content-length", "5")]);
        assert!(matches!(
            framed(&te, ok, false),
            Ok(Framing::Chunked(Chunk::Size))
        ));
        // Codings besides chunked would be lost on the way: refused.
        assert!(framed(&h(&[("transfer-encoding", "gzip, chunked")]), ok, false).is_err());
        assert!(framed(&h(&[("transfer-encoding", "gzip")]), ok, false).is_err());
        assert!(matches!(
            framed(&HeaderMap::new(), ok, false),
            Ok(Framing::Close)
        ));
    }

    #[test]
    fn heads_informational_partial_and_keep_alive() {
        assert!(
            head(b"HTTP/1.1 200 OK\r\ncontent-len", false)
                .unwrap()
                .is_none()
        );
        // 100 Continue is skipped (consumed); the final head follows.
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"[..]);
        assert!(matches!(parse_head(&mut buf, false), Ok(Parsed::Skipped)));
        let Ok(Parsed::Head(h)) = parse_head(&mut buf, false) else {
            panic!("final head")
        };
        assert_eq!(h.status, StatusCode::NO_CONTENT);
        assert!(h.keep_alive && buf.is_empty());
        assert!(head(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false).is_err());
        assert!(head(b"not http\r\n\r\n", false).is_err());
        let h = head(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive);
        let h = head(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = head(
            b"HTTP/1.1 200 OK\r\nx-up: 1\r\ncontent-length: 2\r\n\r\nok",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(h.keep_alive && matches!(h.framing, Framing::Length(2)));
        assert_eq!(h.headers["x-up"], "1");
    }
}
