//! Response heads: read by the lean upstream client, with the framing
//! of the body that follows (RFC 9112 §6.3), and written by the lean
//! server loop, which frames the body by its size.

use std::{io::Write as _, mem::MaybeUninit};

use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderName, StatusCode, Version, header};
use http_body::Body as _;

use super::{Framing, MAX_HEAD_BYTES, MAX_HEADERS, bodiless, put_field, with_date};
use crate::{
    body::Body,
    headers::{
        content_length, is_hop_by_hop, is_only_chunked, sliced_map, strip_hop_by_hop, tokens,
    },
};

/// A response head, and how its body is delimited.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
}

/// What the buffer held.
pub(crate) enum Parsed {
    /// A final response head.
    Head(Head),
    /// An informational (1xx) response, consumed; the final one follows.
    Skipped,
    /// Not a complete head yet.
    Partial,
}

/// Parses a response head off the front of `buf`.
pub(crate) fn parse(buf: &mut BytesMut, head_request: bool) -> Result<Parsed, String> {
    let invalid = |what: &str| format!("invalid response: {what}");
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
        && !ambiguous
        && !declares_a_body_it_cannot_have(status, &headers);
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

/// A 204 or 304 whose head announces a body anyway (a non-zero
/// `Content-Length`, any `Transfer-Encoding`): the backend may well send
/// it after the head, so the connection is not reused (both clients).
pub(crate) fn declares_a_body_it_cannot_have(status: StatusCode, headers: &HeaderMap) -> bool {
    (status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED)
        && (headers.contains_key(header::TRANSFER_ENCODING)
            || content_length(headers).map_or(true, |n| n.unwrap_or(0) > 0))
}

/// How a response's body is delimited (RFC 9112 §6.3).
fn framing(
    headers: &HeaderMap,
    seen: Seen,
    status: StatusCode,
    head_request: bool,
) -> Result<Framing, String> {
    let invalid = |what: &str| format!("invalid response: {what}");
    if bodiless(status, head_request) {
        return Ok(Framing::None);
    }
    if seen.transfer_encoding {
        // A coding besides `chunked` would be lost once the chunks are
        // decoded and the body framed anew for the client: refused.
        if !is_only_chunked(headers) {
            return Err(invalid("transfer coding other than chunked"));
        }
        return Ok(Framing::Chunked);
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

/// The status line and headers, into `out`; returns the body's framing
/// and whether the connection stays open after it (not when the response
/// itself says `connection: close`).
pub(crate) fn encode(
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
    let no_body = bodiless(status, head_request);
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
        if head_request
            && !bodiless(status, false)
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{HeaderValue, Response};
    use http_body_util::BodyExt;

    use super::*;
    use crate::body::{Unsized, empty, full};

    fn head(bytes: &[u8], head_request: bool) -> Result<Option<Head>, String> {
        match parse(&mut BytesMut::from(bytes), head_request)? {
            Parsed::Head(h) => Ok(Some(h)),
            Parsed::Skipped | Parsed::Partial => Ok(None),
        }
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
        assert!(matches!(framed(&cl, ok, true), Ok(Framing::None)));
        assert!(matches!(
            framed(&cl, StatusCode::NO_CONTENT, false),
            Ok(Framing::None)
        ));
        assert!(matches!(
            framed(&cl, StatusCode::NOT_MODIFIED, false),
            Ok(Framing::None)
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
        assert!(matches!(framed(&te, ok, false), Ok(Framing::Chunked)));
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
        assert!(matches!(parse(&mut buf, false), Ok(Parsed::Skipped)));
        let Ok(Parsed::Head(h)) = parse(&mut buf, false) else {
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

    fn encoded(response: Response<Body>, head_request: bool) -> (String, Framing, bool) {
        let (parts, body) = response.into_parts();
        let mut out = Vec::new();
        let (framing, keep) = encode(&mut out, &parts, &body, head_request, true);
        (String::from_utf8(out).unwrap(), framing, keep)
    }

    #[test]
    fn frames_each_kind_of_body() {
        let (text, framing, keep) = encoded(Response::new(full("hello")), false);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 5\r\n") && text.contains("date: "));
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!((framing, keep), (Framing::Length(5), true));

        let unsized_body = Unsized(Some(Bytes::from_static(b"ab")));
        let (text, framing, _) = encoded(Response::new(unsized_body.boxed_unsync()), false);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert_eq!(framing, Framing::Chunked);

        // A declared length wins over the body's own size; none for HEAD,
        // 204 and 304, whose headers pass as they are.
        let declared = Response::builder()
            .header("content-length", "12")
            .header("date", "then")
            .body(empty())
            .unwrap();
        let (text, framing, _) = encoded(declared, false);
        assert_eq!(framing, Framing::Length(12));
        assert!(text.contains("content-length: 12\r\n") && text.contains("date: then\r\n"));
        assert_eq!(text.matches("date").count(), 1);
        // No body for HEAD, 204 and 304; a HEAD answer states the length a
        // GET would get (as hyper's server does), the others none.
        for (status, head_request, length) in
            [(200, true, true), (204, false, false), (304, false, false)]
        {
            let r = Response::builder().status(status).body(full("x")).unwrap();
            let (text, framing, _) = encoded(r, head_request);
            assert_eq!(framing, Framing::None, "{status}");
            assert_eq!(text.contains("content-length: 1\r\n"), length, "{text}");
        }

        // A length that is not valid is dropped and the body runs to the
        // close; `connection: close` from the response is honoured, and any
        // `transfer-encoding` is this loop's to set.
        let bad = Response::builder()
            .header("content-length", "12, 13")
            .body(full("x"))
            .unwrap();
        let (text, framing, keep) = encoded(bad, false);
        assert_eq!((framing, keep), (Framing::Close, false));
        assert!(text.contains("connection: close\r\n") && !text.contains("content-length"));
        let closing = Response::builder()
            .header("connection", "close")
            .header("transfer-encoding", "gzip")
            .body(full("x"))
            .unwrap();
        let (text, framing, keep) = encoded(closing, false);
        assert_eq!((framing, keep), (Framing::Length(1), false));
        assert!(!text.contains("gzip"), "{text}");
        assert_eq!(text.matches("connection").count(), 1);
    }
}
