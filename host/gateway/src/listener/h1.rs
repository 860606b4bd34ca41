//! The lean HTTP/1.1 server path: plain-TCP client connections start here.
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
    cell::RefCell,
    future::Future,
    io::{self, Write as _},
    mem::MaybeUninit,
    ops::Range,
    pin::Pin,
    sync::Arc,
    task::Poll,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderName, Method, Request, Response, StatusCode, Uri, header};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::watch,
};

use crate::{
    body::{Body, BoxError, RequestBody},
    error::StreamReset,
    headers::sliced_map,
    watchdog::Activity,
};

/// Most fields a head may have here; a head with more goes to hyper,
/// which applies `limits.max_headers`.
const MAX_FIELDS: usize = 64;

/// Read size, and the buffer's starting capacity.
const READ_CHUNK: usize = 8 * 1024;

/// Body data at least this large is written from its own buffer rather
/// than copied behind the head.
const COPY_LIMIT: usize = 16 * 1024;

/// How the lean loop ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// The connection is done (closed by either side, shut down, or
    /// failed).
    Closed,
    /// The next request is hyper's: it serves the rest of the connection,
    /// starting with these bytes, already read.
    HandOff(BytesMut),
}

/// A request head, as parsed here. Not boxed: it is returned once per
/// request, straight to the caller.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// Not all of it yet.
    Partial,
    /// A request this loop serves.
    Request(Request<RequestBody>, Persistence),
    /// A request for hyper (the bytes stay in the buffer).
    HandOff,
    /// Valid to httparse but not to `http` (so far unseen: both use the
    /// same rules): answered 400 here, then closed.
    Invalid,
}

/// What the request says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persistence {
    KeepAlive,
    /// `Connection: close`.
    Close,
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
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Fn(Request<RequestBody>) -> F,
    F: Future<Output = Result<Response<Body>, StreamReset>>,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = Vec::with_capacity(1024);
    let mut fields = Fields::new();
    let max_fields = max_fields.min(MAX_FIELDS);
    loop {
        let (req, persistence) = loop {
            if !buf.is_empty() {
                match parse(&mut buf, max_fields, max_head_bytes, &mut fields) {
                    Parsed::Request(req, persistence) => break (req, persistence),
                    Parsed::Partial if buf.len() <= max_head_bytes => {}
                    Parsed::Partial | Parsed::HandOff => return Ended::HandOff(buf),
                    Parsed::Invalid => {
                        let _ = io.write_all(BAD_REQUEST).await;
                        return Ended::Closed;
                    }
                }
            }
            buf.reserve(READ_CHUNK);
            let read = if buf.is_empty() {
                // Between requests a shutdown closes the connection.
                tokio::select! {
                    biased;
                    read = io.read_buf(&mut buf) => read,
                    _ = stop.wait_for(|stop| *stop) => return Ended::Closed,
                }
            } else {
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
        let keep_alive = persistence == Persistence::KeepAlive && !*stop.borrow();
        match write_response(io, &mut out, response, head_request, keep_alive).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return Ended::Closed,
        }
    }
}

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// A request's fields while its head is parsed: name, and where the value
/// is in the head. Kept by the connection, so its allocation is reused.
type Fields = Vec<(HeaderName, Range<usize>)>;

/// Parses the request head at the start of `buf`, taking it out of `buf`
/// when it is one this loop serves.
fn parse(
    buf: &mut BytesMut,
    max_fields: usize,
    max_head_bytes: usize,
    fields: &mut Fields,
) -> Parsed {
    let mut slots = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots[..max_fields],
    ) {
        // Too large: hyper answers 431.
        Ok(httparse::Status::Complete(len)) if len > max_head_bytes => return Parsed::HandOff,
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::HandOff,
    };
    let (Some(1), Some(method), Some(path)) = (parsed.version, parsed.method, parsed.path) else {
        return Parsed::HandOff;
    };
    if method == "CONNECT" || !path.starts_with('/') {
        return Parsed::HandOff;
    }
    // Values and the target become slices of the head, shared rather than
    // copied: note where they are, then freeze the head.
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - base;
    fields.clear();
    let mut persistence = Persistence::KeepAlive;
    for h in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Parsed::HandOff;
        };
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::EXPECT,
            header::UPGRADE,
            header::TE,
        ]
        .contains(&name)
        {
            return Parsed::HandOff;
        }
        if name == header::CONNECTION {
            let value = std::str::from_utf8(h.value).unwrap_or("");
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    persistence = Persistence::Close;
                } else if token.eq_ignore_ascii_case("upgrade") {
                    return Parsed::HandOff;
                }
            }
        }
        let start = offset(h.value);
        fields.push((name, start..start + h.value.len()));
    }
    let method = Method::from_bytes(method.as_bytes());
    let target = offset(path.as_bytes())..offset(path.as_bytes()) + path.len();
    let head = buf.split_to(len).freeze();
    let Ok(method) = method else {
        return Parsed::Invalid;
    };
    let Ok(uri) = Uri::from_maybe_shared(head.slice(target)) else {
        return Parsed::Invalid;
    };
    // Room for what the proxy adds (`x-forwarded-*`, a filter's header)
    // without growing the map.
    let Some(headers) = sliced_map(&head, fields.drain(..), 4) else {
        return Parsed::Invalid;
    };
    let mut req = Request::new(RequestBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Parsed::Request(req, persistence)
}

/// How a response body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    Chunked,
    /// Until the connection closes (a `Content-Length` that is not valid).
    Close,
}

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
    let (framing, keep_alive) = encode_head(out, &parts, &body, head_request, keep_alive);
    if framing == Framing::None {
        io.write_all(out).await?;
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

/// The status line and headers, into `out`; returns the body's framing
/// and whether the connection stays open after it (not when the response
/// itself says `connection: close`).
fn encode_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    body: &Body,
    head_request: bool,
    mut keep_alive: bool,
) -> (Framing, bool) {
    let status = parts.status;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut declared: Option<Option<u64>> = None;
    let mut dated = false;
    for (name, value) in &parts.headers {
        dated |= name == header::DATE;
        // Framing and persistence are this loop's to say.
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        if name == header::CONNECTION {
            let value = value.to_str().unwrap_or("");
            if value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
            {
                keep_alive = false;
            }
            continue;
        }
        if name == header::CONTENT_LENGTH {
            let n = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            declared = Some(match declared {
                None => n,
                Some(prev) if prev == n => n,
                Some(_) => None,
            });
            if n.is_none() {
                continue;
            }
        }
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !dated {
        with_date(|date| put_field(out, b"date", date));
    }
    let framing = if no_body {
        // A HEAD answer states the length a GET would get, as hyper's
        // server does (both server paths must agree).
        let bodied_status = !(status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED);
        if head_request
            && bodied_status
            && declared.is_none()
            && let Some(n) = body.size_hint().exact().filter(|&n| n > 0)
        {
            out.extend_from_slice(b"content-length: ");
            let _ = write!(out, "{n}\r\n");
        }
        Framing::None
    } else {
        match (declared, body.size_hint().exact()) {
            (Some(Some(n)), _) => Framing::Length(n),
            (Some(None), _) => Framing::Close,
            (None, Some(n)) => {
                out.extend_from_slice(b"content-length: ");
                let _ = write!(out, "{n}\r\n");
                Framing::Length(n)
            }
            (None, None) => {
                put_field(out, b"transfer-encoding", b"chunked");
                Framing::Chunked
            }
        }
    };
    keep_alive &= framing != Framing::Close;
    if !keep_alive {
        put_field(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    (framing, keep_alive)
}

fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
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

async fn flush<IO: AsyncWrite + Unpin>(io: &mut IO, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Polls the body once: its next frame if it has one ready.
fn poll_now(
    body: &mut Body,
) -> impl Future<Output = Poll<Option<Result<Frame<Bytes>, BoxError>>>> + '_ {
    std::future::poll_fn(move |cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx)))
}

thread_local! {
    /// The `date` value, formatted once per second per worker.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Runs `f` with the current HTTP date (`Sat, 28 Nov 2026 18:00:00 GMT`).
fn with_date(f: impl FnOnce(&[u8])) {
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

#[cfg(test)]
mod tests {
    use std::task::Context;

    use super::*;
    use crate::body::{empty, full};

    fn parse_all(text: &str) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(text);
        let parsed = parse(&mut buf, 20, 1024, &mut Fields::new());
        (parsed, buf)
    }

    #[test]
    fn takes_plain_requests_and_leaves_the_rest_to_hyper() {
        let (parsed, rest) = parse_all("GET /a?b HTTP/1.1\r\nhost: x\r\nx-y: 1\r\n\r\nGET");
        let Parsed::Request(req, Persistence::KeepAlive) = parsed else {
            panic!("not taken");
        };
        assert_eq!(req.uri(), "/a?b");
        assert_eq!(req.headers()["x-y"], "1");
        assert_eq!(&rest[..], b"GET", "the next request stays buffered");

        let (parsed, _) = parse_all("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(matches!(parsed, Parsed::Request(_, Persistence::Close)));
        assert!(matches!(
            parse_all("GET / HTTP/1.1\r\nhost: x").0,
            Parsed::Partial
        ));

        for head in [
            "GET / HTTP/1.0\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nexpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nte: trailers\r\n\r\n",
            "GET / HTTP/1.1\r\nbad header\r\n\r\n",
        ] {
            let (parsed, rest) = parse_all(head);
            assert!(matches!(parsed, Parsed::HandOff), "{head:?}");
            assert_eq!(&rest[..], head.as_bytes(), "{head:?}: bytes kept for hyper");
        }
        let many: String = (0..21).map(|i| format!("x-{i}: v\r\n")).collect();
        let (parsed, _) = parse_all(&format!("GET / HTTP/1.1\r\n{many}\r\n"));
        assert!(
            matches!(parsed, Parsed::HandOff),
            "more fields than allowed"
        );
        let big = "v".repeat(1100);
        let (parsed, _) = parse_all(&format!("GET / HTTP/1.1\r\nx: {big}\r\n\r\n"));
        assert!(
            matches!(parsed, Parsed::HandOff),
            "head larger than allowed"
        );
    }

    #[test]
    fn a_head_split_anywhere_waits_for_the_rest() {
        let text = "GET /split HTTP/1.1\r\nhost: x\r\nx-long: abcdefghij\r\n\r\n";
        for k in 1..text.len() {
            let (parsed, rest) = parse_all(&text[..k]);
            assert!(matches!(parsed, Parsed::Partial), "split at {k}");
            assert_eq!(rest.len(), k, "nothing consumed at {k}");
        }
        let (parsed, rest) = parse_all(text);
        assert!(matches!(parsed, Parsed::Request(..)) && rest.is_empty());
    }

    fn head(response: Response<Body>, head_request: bool) -> (String, Framing, bool) {
        let (parts, body) = response.into_parts();
        let mut out = Vec::new();
        let (framing, keep) = encode_head(&mut out, &parts, &body, head_request, true);
        (String::from_utf8(out).unwrap(), framing, keep)
    }

    #[test]
    fn frames_each_kind_of_body() {
        let (text, framing, keep) = head(Response::new(full("hello")), false);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 5\r\n") && text.contains("date: "));
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!((framing, keep), (Framing::Length(5), true));

        let unsized_body = Unsized(Some(Bytes::from_static(b"ab")));
        let (text, framing, _) = head(Response::new(unsized_body.boxed_unsync()), false);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert_eq!(framing, Framing::Chunked);

        // A declared length wins over the body's own size; none for HEAD,
        // 204 and 304, whose headers pass as they are.
        let declared = Response::builder()
            .header("content-length", "12")
            .header("date", "then")
            .body(empty())
            .unwrap();
        let (text, framing, _) = head(declared, false);
        assert_eq!(framing, Framing::Length(12));
        assert!(text.contains("content-length: 12\r\n") && text.contains("date: then\r\n"));
        assert_eq!(text.matches("date").count(), 1);
        for (status, head_request) in [(200, true), (204, false), (304, false)] {
            let r = Response::builder().status(status).body(full("x")).unwrap();
            let (text, framing, _) = head(r, head_request);
            assert_eq!(framing, Framing::None, "{status}");
            assert!(!text.contains("content-length"), "{text}");
        }

        // A length that is not valid is dropped and the body runs to the
        // close; `connection: close` from the response is honoured, and any
        // `transfer-encoding` is this loop's to set.
        let bad = Response::builder()
            .header("content-length", "12, 13")
            .body(full("x"))
            .unwrap();
        let (text, framing, keep) = head(bad, false);
        assert_eq!((framing, keep), (Framing::Close, false));
        assert!(text.contains("connection: close\r\n") && !text.contains("content-length"));
        let closing = Response::builder()
            .header("connection", "close")
            .header("transfer-encoding", "gzip")
            .body(full("x"))
            .unwrap();
        let (text, framing, keep) = head(closing, false);
        assert_eq!((framing, keep), (Framing::Length(1), false));
        assert!(!text.contains("gzip"), "{text}");
        assert_eq!(text.matches("connection").count(), 1);
    }

    async fn written(response: Response<Body>) -> (String, bool) {
        let (mut wire, mut out) = (Vec::new(), Vec::new());
        let keep = write_response(&mut wire, &mut out, response, false, true)
            .await
            .unwrap();
        (String::from_utf8(wire).unwrap(), keep)
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

    /// A body of unknown length.
    struct Unsized(Option<Bytes>);

    impl http_body::Body for Unsized {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
        }
    }
}
