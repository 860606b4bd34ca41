//! Request heads: read by the lean server loop (which serves the
//! commonest requests and hands every other one to hyper, bytes and all),
//! and written by the lean upstream client.

use std::{mem::MaybeUninit, ops::Range};

use bytes::BytesMut;
use http::{HeaderName, Method, Request, Uri, header};

use crate::{body::RequestBody, headers::sliced_map};

/// Most fields a head may have here; a head with more goes to hyper,
/// which applies `limits.max_headers`.
pub(crate) const MAX_FIELDS: usize = 64;

/// A request head, as parsed here. Not boxed: it is returned once per
/// request, straight to the caller.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Parsed {
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
pub(crate) enum Persistence {
    KeepAlive,
    /// `Connection: close`.
    Close,
}

/// A request's fields while its head is parsed: name, and where the value
/// is in the head. Kept by the connection, so its allocation is reused.
pub(crate) type Fields = Vec<(HeaderName, Range<usize>)>;

/// Parses the request head at the start of `buf`, taking it out of `buf`
/// when it is one this loop serves.
pub(crate) fn parse(
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

/// The request line and headers, as sent upstream (`Host` from the
/// upstream's authority when the request has none).
pub(crate) fn encode(
    parts: &http::request::Parts,
    authority: &http::uri::Authority,
    out: &mut Vec<u8>,
) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
