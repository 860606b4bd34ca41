//! The lean HTTP/1.1 server path: plain-TCP client connections start here,
//! and TLS ones that did not choose HTTP/2 by ALPN.
//!
//! Most requests a gateway sees are bodiless HTTP/1.1 requests on a
//! keep-alive connection. This loop reads and answers those itself, in the
//! connection's task, with less machinery than hyper's server (no dispatch
//! state machine, no separate message encoder, one buffer each way). The
//! first request it does not take, it hands over to hyper together with
//! every byte read so far, and hyper serves the rest of the connection:
//!
//! - anything but HTTP/1.1; the HTTP/2 preface;
//! - a request with a body or a say in framing (`Content-Length`,
//!   `Transfer-Encoding`), `Expect`, `Upgrade`, `TE`, `CONNECT`, or a
//!   target that is not origin-form (`/path`);
//! - a head hyper would refuse (malformed, too many fields, too large):
//!   hyper answers it with its 400 or 431.
//!
//! So the request parsing that decides framing, and every error answer
//! about it, stays hyper's. What this loop writes is the response: the
//! status line, the headers, `date` when missing, and the body framed by
//! its `Content-Length`, its exact size, or chunked; `connection: close`
//! when the client asked for it or the worker is shutting down.
//!
//! Timeouts are the connection watchdog's, as on hyper's path.

use std::{
    future::Future,
    io::{self, Write as _},
    pin::Pin,
    sync::Arc,
    task::Poll,
};

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::watch,
};

use crate::{
    body::{Body, BoxError, RequestBody},
    error::StreamReset,
    h1::{
        Framing,
        request::{Fields, MAX_FIELDS, Parsed, Persistence, parse},
        response,
    },
    watchdog::Activity,
};

/// Read size, and the buffer's starting capacity.
const READ_CHUNK: usize = 8 * 1024;

/// What the response buffer starts with: a head and a small body.
const OUT_CAPACITY: usize = 1024;

/// Body data at least this large is written from its own buffer rather
/// than copied behind the head.
const COPY_LIMIT: usize = 16 * 1024;

/// A connection that can say when a read would not block, without a
/// buffer to read into: how an idle connection waits.
pub(crate) trait ReadReady {
    /// Ready when a read would return data, an end of stream or an error.
    fn poll_read_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

impl ReadReady for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn poll_read_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, session) = self.get_ref();
        if session.wants_read() {
            tcp.poll_read_ready(cx)
        } else {
            // Plaintext already decrypted, or a state only a read reports
            // (a close or an error): the read will not wait.
            Poll::Ready(Ok(()))
        }
    }
}

/// Buffers of connections gone idle, kept on the worker's thread for the
/// next connection that wakes: an idle connection holds none, and a busy
/// worker does not allocate a pair per request (a lone 8 KiB buffer freed
/// and taken again would send the allocator down its slow path each time).
mod spare {
    use std::cell::RefCell;

    use bytes::BytesMut;

    /// Pairs kept per worker: enough for the connections a worker keeps
    /// busy at once, few enough to be noise (16 × 9 KiB).
    pub(super) const KEEP: usize = 16;
    /// A buffer larger than this (grown by a large head or body) is freed.
    const MAX_KEPT: usize = 32 * 1024;

    thread_local! {
        static SPARE: RefCell<Vec<(BytesMut, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    }

    /// Leaves `buf` and `out` empty, their storage kept for [`take`] (or
    /// freed when enough is kept).
    pub(super) fn put(buf: &mut BytesMut, out: &mut Vec<u8>) {
        let mut pair = (std::mem::take(buf), std::mem::take(out));
        pair.0.clear();
        pair.1.clear();
        // Buffers a large head or body grew are freed, not kept.
        if pair.0.capacity() == 0 || pair.0.capacity() > MAX_KEPT || pair.1.capacity() > MAX_KEPT {
            return;
        }
        SPARE.with_borrow_mut(|spare| {
            if spare.len() < KEEP {
                spare.push(pair);
            }
        });
    }

    /// Gives `buf` and `out` kept storage, when there is some.
    pub(super) fn take(buf: &mut BytesMut, out: &mut Vec<u8>) {
        if let Some((b, o)) = SPARE.with_borrow_mut(Vec::pop) {
            (*buf, *out) = (b, o);
        }
    }
}

/// How the lean loop ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// The connection is done (closed by either side, shut down, or
    /// failed).
    Closed,
    /// The next request is hyper's: it serves the rest of the connection,
    /// starting with these bytes, already read; `served` when this loop
    /// answered requests before (the connection is HTTP/1.1 from then on).
    HandOff {
        /// The bytes read and not yet served.
        read: BytesMut,
        /// Whether any request was served here.
        served: bool,
    },
}

/// Serves requests from `io` until the connection closes, the worker stops
/// (`stop` turns true) or a request for hyper arrives.
/// Each request counts as in flight on `activity` until `service` answers.
pub(super) async fn serve<IO, S, F>(
    io: &mut IO,
    max_fields: usize,
    max_head_bytes: usize,
    stop: &mut watch::Receiver<bool>,
    activity: &Arc<Activity>,
    service: &S,
) -> Ended
where
    IO: AsyncRead + AsyncWrite + ReadReady + Unpin,
    S: Fn(Request<RequestBody>) -> F,
    F: Future<Output = Result<Response<Body>, StreamReset>>,
{
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut served = false;
    let mut fields = Fields::new();
    let max_fields = max_fields.min(MAX_FIELDS);
    loop {
        let (req, persistence) = loop {
            if !buf.is_empty() {
                match parse(&mut buf, max_fields, max_head_bytes, &mut fields) {
                    Parsed::Request(req, persistence) => break (req, persistence),
                    Parsed::Partial if buf.len() <= max_head_bytes => {}
                    Parsed::Partial | Parsed::HandOff => {
                        return Ended::HandOff { read: buf, served };
                    }
                    Parsed::Invalid => {
                        let _ = io.write_all(BAD_REQUEST).await;
                        let _ = io.flush().await;
                        return Ended::Closed;
                    }
                }
            }
            let read = if buf.is_empty() {
                // Between requests. The connection waits holding no buffer
                // (an idle keep-alive client costs its task and socket, not
                // 9 KiB of buffers); a shutdown closes it.
                spare::put(&mut buf, &mut out);
                tokio::select! {
                    biased;
                    read = async {
                        std::future::poll_fn(|cx| io.poll_read_ready(cx)).await?;
                        spare::take(&mut buf, &mut out);
                        buf.reserve(READ_CHUNK);
                        io.read_buf(&mut buf).await
                    } => read,
                    _ = stop.wait_for(|stop| *stop) => return Ended::Closed,
                }
            } else {
                buf.reserve(READ_CHUNK);
                io.read_buf(&mut buf).await
            };
            match read {
                Ok(0) | Err(_) => return Ended::Closed,
                Ok(_) => {}
            }
        };
        let head_request = req.method() == Method::HEAD;
        let in_flight = activity.request();
        let answer = service(req).await;
        drop(in_flight);
        let Ok(response) = answer else {
            // A filter reset the stream: no answer.
            return Ended::Closed;
        };
        served = true;
        let keep_alive = persistence == Persistence::KeepAlive && !*stop.borrow();
        match write_response(io, &mut out, response, head_request, keep_alive).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return Ended::Closed,
        }
    }
}

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Writes `response`; `Ok(true)` when the connection can serve another
/// request.
async fn write_response<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Vec<u8>,
    response: Response<Body>,
    head_request: bool,
    keep_alive: bool,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    out.reserve(OUT_CAPACITY);
    let (framing, keep_alive) = response::encode(out, &parts, &body, head_request, keep_alive);
    if framing == Framing::None {
        flush(io, out).await?;
        return Ok(keep_alive);
    }
    let mut written = 0u64;
    loop {
        // What the body has ready goes out with the head; the head is not
        // held back while the body waits.
        let frame = match poll_now(&mut body).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                flush(io, out).await?;
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(_)) => {
                // The body failed: what was sent stands, the rest is cut.
                flush(io, out).await?;
                return Ok(false);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                // Trailers are not sent on this path (the client did not
                // ask for them: a `TE` request goes to hyper).
                _ => continue,
            },
        };
        written += data.len() as u64;
        if let Framing::Length(n) = framing
            && written > n
        {
            // More than the declared length: never send the excess.
            flush(io, out).await?;
            return Ok(false);
        }
        put_data(io, out, data, framing).await?;
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    flush(io, out).await?;
    // A body shorter than its declared length leaves the client waiting
    // for the rest: only closing tells it.
    let complete = match framing {
        Framing::Length(n) => written == n,
        _ => true,
    };
    Ok(keep_alive && complete)
}

/// Appends (or, when large, writes) one data frame in `framing`.
async fn put_data<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Vec<u8>,
    data: Bytes,
    framing: Framing,
) -> io::Result<()> {
    let chunked = framing == Framing::Chunked;
    if chunked {
        let _ = write!(out, "{:x}\r\n", data.len());
    }
    if data.len() < COPY_LIMIT {
        out.extend_from_slice(&data);
    } else {
        flush(io, out).await?;
        io.write_all(&data).await?;
    }
    if chunked {
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// Writes what `out` holds, and flushes: a TLS stream may still hold
/// records the socket did not take (on plain TCP flushing is a no-op).
async fn flush<IO: AsyncWrite + Unpin>(io: &mut IO, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    io.flush().await
}

/// Polls the body once: its next frame if it has one ready.
fn poll_now(
    body: &mut Body,
) -> impl Future<Output = Poll<Option<Result<Frame<Bytes>, BoxError>>>> + '_ {
    std::future::poll_fn(move |cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{Unsized, full};

    async fn written(response: Response<Body>) -> (String, bool) {
        let (mut wire, mut out) = (Vec::new(), Vec::new());
        let keep = write_response(&mut wire, &mut out, response, false, true)
            .await
            .unwrap();
        (String::from_utf8(wire).unwrap(), keep)
    }

    #[test]
    fn idle_buffers_are_kept_per_thread_within_a_bound() {
        std::thread::spawn(|| {
            let (mut buf, mut out) = (BytesMut::with_capacity(READ_CHUNK), vec![0u8; 10]);
            spare::put(&mut buf, &mut out);
            assert_eq!(
                (buf.capacity(), out.capacity()),
                (0, 0),
                "the idle side holds nothing"
            );
            spare::take(&mut buf, &mut out);
            assert!(buf.capacity() >= READ_CHUNK && out.capacity() >= 10);
            // Nothing kept: `take` leaves the buffers empty.
            let (mut b2, mut o2) = (BytesMut::new(), Vec::new());
            spare::take(&mut b2, &mut o2);
            assert_eq!(b2.capacity(), 0);
            // No more than the bound is kept.
            for _ in 0..40 {
                let (mut b, mut o) = (BytesMut::with_capacity(64), Vec::with_capacity(8));
                spare::put(&mut b, &mut o);
            }
            let mut kept = 0;
            loop {
                let (mut b, mut o) = (BytesMut::new(), Vec::new());
                spare::take(&mut b, &mut o);
                if b.capacity() == 0 {
                    break;
                }
                kept += 1;
            }
            assert_eq!(kept, spare::KEEP);
            // A grown buffer is not kept.
            let (mut b, mut o) = (BytesMut::with_capacity(1 << 20), Vec::new());
            spare::put(&mut b, &mut o);
            let (mut b, mut o) = (BytesMut::new(), Vec::new());
            spare::take(&mut b, &mut o);
            assert_eq!(b.capacity(), 0);
        })
        .join()
        .unwrap();
    }

    #[tokio::test]
    async fn writes_bodies_and_never_more_than_declared() {
        let (wire, keep) = written(Response::new(Unsized(Some("ab".into())).boxed_unsync())).await;
        assert!(wire.ends_with("\r\n\r\n2\r\nab\r\n0\r\n\r\n"), "{wire}");
        assert!(keep);

        let big = "z".repeat(20 * 1024);
        let (wire, keep) = written(Response::new(full(big.clone()))).await;
        assert!(wire.ends_with(&format!("\r\n\r\n{big}")) && keep);

        let long = Response::builder()
            .header("content-length", "1")
            .body(full("xyz"))
            .unwrap();
        let (wire, keep) = written(long).await;
        assert!(!wire.contains("xyz") && !keep, "{wire}");

        let short = Response::builder()
            .header("content-length", "5")
            .body(full("ab"))
            .unwrap();
        let (wire, keep) = written(short).await;
        assert!(wire.ends_with("\r\n\r\nab") && !keep, "{wire}");
    }
}
