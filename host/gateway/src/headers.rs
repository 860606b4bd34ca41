//! Header rules of a proxy, in one place: hop-by-hop headers (RFC 9110
//! §7.6.1) are dropped in both directions; framing is the proxy's own
//! ([`own_framing`]: whatever a peer or a filter wrote, the length or
//! coding of a body on the next hop is derived from the body actually
//! sent); `Content-Length` is read strictly ([`content_length`]); and
//! `x-forwarded-for`/`-proto`/`-host` tell the upstream who asked.

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header, header::Entry};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes `Connection`, the headers it names, and the other hop-by-hop
/// headers (`Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `TE`,
/// `Upgrade`). A `TE` that accepts `trailers` becomes exactly
/// `te: trailers` (gRPC needs it end to end; RFC 9110 §10.1.4).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names decides which removals (a hash lookup each)
    // are needed: most messages carry none, or only `Connection`.
    let (mut connection, mut other) = (false, false);
    for name in headers.keys() {
        if name == header::CONNECTION {
            connection = true;
        } else if is_other_hop_by_hop(name) {
            other = true;
        }
    }
    strip_found(headers, connection, other);
}

/// What one pass over a message's fields found of those the proxy acts on,
/// so that the lookups (a hash each) are made only for fields present.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scan {
    /// `Connection`.
    pub connection: bool,
    /// Another hop-by-hop field (`Transfer-Encoding`, `TE`, `Upgrade`,
    /// `Keep-Alive`, `Proxy-Connection`).
    pub other_hop_by_hop: bool,
    /// `Transfer-Encoding`.
    pub transfer_encoding: bool,
    /// `Content-Length`: `Some(Ok(n))` when valid, `Some(Err(_))` when not.
    pub content_length: Option<Result<u64, InvalidLength>>,
    /// `Content-Length` is one field of plain digits (the form the proxy
    /// writes itself; a list `5, 5` is rewritten).
    pub content_length_plain: bool,
    /// How many `Host` fields.
    pub hosts: usize,
    /// A name with an `_`.
    pub underscore: bool,
    /// `Forwarded` or `x-real-ip`.
    pub forwarded: bool,
    /// `content-type: application/grpc…`.
    pub grpc: bool,
}

impl Scan {
    /// Takes one `Content-Length` field into account.
    fn note_length(&mut self, value: &[u8]) {
        let n = parse_length(value);
        self.content_length_plain =
            self.content_length.is_none() && value.iter().all(u8::is_ascii_digit);
        self.content_length = Some(match (self.content_length, n) {
            (None, n) => n,
            (Some(Ok(a)), Ok(b)) if a == b => Ok(a),
            _ => Err(InvalidLength),
        });
    }
}

/// One pass over `headers`: see [`Scan`].
pub fn scan(headers: &HeaderMap) -> Scan {
    let mut s = Scan::default();
    // One `match` on the (lower-case) name: a switch on its length, then
    // one comparison, per field.
    for (name, value) in headers {
        match name.as_str() {
            "connection" => s.connection = true,
            "content-length" => s.note_length(value.as_bytes()),
            "host" => s.hosts += 1,
            "content-type" => s.grpc = value.as_bytes().starts_with(b"application/grpc"),
            "transfer-encoding" => {
                s.other_hop_by_hop = true;
                s.transfer_encoding = true;
            }
            "te" | "upgrade" | "keep-alive" | "proxy-connection" => s.other_hop_by_hop = true,
            "forwarded" | "x-real-ip" => s.forwarded = true,
            other => s.underscore |= other.as_bytes().contains(&b'_'),
        }
    }
    s
}

/// [`scan`] for the framing fields only (`connection`, `other_hop_by_hop`,
/// `transfer_encoding`, `content_length`, `content_length_plain`; the
/// rest stays at its default), for [`own_framing`] and
/// [`own_response_framing`], which run on every message and read nothing
/// else. A field it does not act on costs a few name compares: no `_`
/// search, which in [`scan`] is a `memchr` per unlisted name and most of
/// that pass (the request after filters carries three `x-forwarded-*`
/// names).
fn scan_framing(headers: &HeaderMap) -> Scan {
    let mut s = Scan::default();
    // `HeaderName`s compared, not their text: a standard name against a
    // standard one is one byte compare (no `as_str` table lookup, no
    // string match), and against a custom one (`keep-alive`) a tag compare.
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            s.note_length(value.as_bytes());
        } else if name == header::CONNECTION {
            s.connection = true;
        } else if is_other_hop_by_hop(name) {
            s.other_hop_by_hop = true;
            s.transfer_encoding |= name == header::TRANSFER_ENCODING;
        }
    }
    s
}

/// Removes the hop-by-hop fields a scan found.
fn strip_found(headers: &mut HeaderMap, connection: bool, other: bool) {
    if connection {
        // The options `Connection` names; `keep-alive` and `close` (the
        // usual ones) name no header that is not removed below anyway.
        let named: Vec<HeaderName> = tokens(headers, header::CONNECTION)
            .filter(|t| {
                // `Host` is end to end whatever `Connection` says: routing
                // chose by it.
                !t.is_empty()
                    && !t.eq_ignore_ascii_case("keep-alive")
                    && !t.eq_ignore_ascii_case("close")
                    && !t.eq_ignore_ascii_case("host")
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        headers.remove(header::CONNECTION);
        for name in named {
            headers.remove(name);
        }
    }
    if other {
        let trailers = tokens(headers, header::TE).any(|t| t.eq_ignore_ascii_case("trailers"));
        for name in [
            KEEP_ALIVE,
            PROXY_CONNECTION,
            header::TRANSFER_ENCODING,
            header::TE,
            header::UPGRADE,
        ] {
            headers.remove(name);
        }
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
}

/// The proxy owns framing: drops every connection-level and framing field
/// (hop-by-hop ones and `Content-Length`), whoever wrote it, and sets
/// `content-length: length` when the body going out is known to have that
/// length. Without a length, the side that sends the message frames the
/// body as it streams (chunked, or an HTTP/2 stream's end).
pub fn own_framing(headers: &mut HeaderMap, length: Option<u64>) {
    let found = scan_framing(headers);
    strip_found(headers, found.connection, found.other_hop_by_hop);
    set_length(headers, length, &found);
}

/// The `Content-Length` part of [`own_framing`], for fields already
/// scanned and stripped of hop-by-hop ones (`found` is that scan).
pub fn set_length(headers: &mut HeaderMap, length: Option<u64>, found: &Scan) {
    match length {
        // Already exactly that (the usual case): nothing to write.
        Some(n) if found.content_length == Some(Ok(n)) && found.content_length_plain => {}
        Some(n) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        None if found.content_length.is_some() => {
            headers.remove(header::CONTENT_LENGTH);
        }
        None => {}
    }
}

/// A response's fields as they go to the client: framing is the proxy's
/// ([`own_framing`]), except that a response to `HEAD` keeps a valid
/// `Content-Length` as the metadata it is there (the size a `GET` would
/// get); 1xx, 204 and 304 carry none (RFC 9110 §8.6; hyper's server drops
/// a 304's too, and both server paths must agree).
///
/// `body_length` is the exact length of the body going out, if known: a
/// `Content-Length` that says exactly that stays (no rewrite needed).
/// Returns whether the response asked for `Connection: close`.
pub fn own_response_framing(
    headers: &mut HeaderMap,
    status: http::StatusCode,
    head_request: bool,
    body_length: Option<u64>,
) -> bool {
    let bodiless = status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
        || status.is_informational();
    let found = scan_framing(headers);
    let length = match found.content_length {
        None | Some(Err(_)) => None,
        Some(Ok(_)) if bodiless || !found.content_length_plain => None,
        Some(Ok(n)) if head_request => Some(n),
        Some(Ok(n)) => body_length.filter(|&b| b == n),
    };
    let close = found.connection
        && tokens(headers, header::CONNECTION).any(|t| t.eq_ignore_ascii_case("close"));
    strip_found(headers, found.connection, found.other_hop_by_hop);
    match length {
        Some(_) => {}
        None if found.content_length.is_some() => {
            headers.remove(header::CONTENT_LENGTH);
        }
        None => {}
    }
    close
}

/// A `Content-Length` that is not one valid length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidLength;

/// The `Content-Length` of a message, read strictly (RFC 9110 §8.6): ASCII
/// digits only (no sign, no spaces inside), one value or a list of equal
/// ones. `Ok(None)` when absent, `Err` when not valid.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, InvalidLength> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let n = parse_length(value.as_bytes())?;
        if length.is_some_and(|l| l != n) {
            return Err(InvalidLength);
        }
        length = Some(n);
    }
    Ok(length)
}

/// One `Content-Length` value: digits, or a list of equal ones.
fn parse_length(value: &[u8]) -> Result<u64, InvalidLength> {
    let mut length = None;
    for part in value.split(|&b| b == b',') {
        let n = parse_digits(part.trim_ascii()).ok_or(InvalidLength)?;
        if length.is_some_and(|l| l != n) {
            return Err(InvalidLength);
        }
        length = Some(n);
    }
    length.ok_or(InvalidLength)
}

/// A decimal number of ASCII digits only, without overflow.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Whether a message's `Transfer-Encoding` (present) is exactly `chunked`;
/// any other coding would be lost by a proxy that decodes the chunks and
/// frames the body anew, so such a message is refused rather than altered.
pub fn is_only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = tokens(headers, header::TRANSFER_ENCODING).filter(|t| !t.is_empty());
    codings
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case("chunked"))
        && codings.next().is_none()
}

/// Drops every header whose name has an `_` (which CGI-style backends read
/// as `-`: `Content_Length` would become `CONTENT_LENGTH`).
pub fn drop_underscored(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// A header map whose values are slices of a message head (shared with
/// it, not copied), with room for `room` more fields; `None` when a value
/// is not a valid header value. `fields` are names and where their values
/// are in `head`, as a parser found them.
pub fn sliced_map(
    head: &Bytes,
    fields: impl ExactSizeIterator<Item = (HeaderName, Range<usize>)>,
    room: usize,
) -> Option<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(fields.len() + room);
    for (name, range) in fields {
        headers.append(
            name,
            HeaderValue::from_maybe_shared(head.slice(range)).ok()?,
        );
    }
    Some(headers)
}

/// The comma-separated tokens of every value of `name`, trimmed (a value
/// that is not visible ASCII counts as one empty token).
pub fn tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(str::trim)
}

/// Whether `name` is a hop-by-hop header (those `Connection` names aside).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION || is_other_hop_by_hop(name)
}

/// Hop-by-hop headers other than `Connection`.
fn is_other_hop_by_hop(name: &HeaderName) -> bool {
    name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Appends the client to `x-forwarded-for` and sets `x-forwarded-proto`
/// and `x-forwarded-host` (overwriting client-sent copies: the gateway is
/// the edge and knows better). A client's `Forwarded` (RFC 7239) and
/// `x-real-ip` are dropped: backends that trust them would take a
/// client's word for its address, host and scheme.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    https: bool,
    host: Option<HeaderValue>,
    forwarded: bool,
) {
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(e) => {
            e.insert(client.clone());
        }
        Entry::Occupied(mut e) => {
            // Joined into one value: the client's list, then the client.
            let mut joined = Vec::new();
            for v in e.iter().filter(|v| !v.is_empty()) {
                joined.extend_from_slice(v.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(client.as_bytes());
            e.insert(HeaderValue::from_bytes(&joined).unwrap_or_else(|_| client.clone()));
        }
    }
    if forwarded {
        headers.remove(header::FORWARDED);
        headers.remove(X_REAL_IP);
    }
    let proto = if https { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(value) => {
            headers.insert(X_FORWARDED_HOST, value);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_connection_and_what_it_names() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));

        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip;q=1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));

        // `te: trailers` survives, as exactly that.
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip, Trailers"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h[header::TE], "trailers");
    }

    #[test]
    fn framing_is_the_proxys() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("40"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        own_framing(&mut h, None);
        assert!(h.is_empty(), "{h:?}");
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("40"));
        own_framing(&mut h, Some(2));
        assert_eq!(h[header::CONTENT_LENGTH], "2");

        let cl = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static(v));
            h
        };
        // HEAD and 304 keep a valid length as metadata; 204 and others not.
        for (status, head, kept) in [
            (200, true, true),
            (304, false, false),
            (204, false, false),
            (200, false, false),
        ] {
            let mut h = cl("12");
            own_response_framing(
                &mut h,
                http::StatusCode::from_u16(status).unwrap(),
                head,
                None,
            );
            assert_eq!(
                h.contains_key(header::CONTENT_LENGTH),
                kept,
                "{status} {head}"
            );
        }
        let mut h = cl("+12");
        own_response_framing(&mut h, http::StatusCode::OK, true, None);
        assert!(h.is_empty());
    }

    #[test]
    fn the_framing_scan_agrees_with_the_full_one() {
        let cases: [&[(&str, &str)]; 7] = [
            &[("content-length", "12"), ("x_under", "1"), ("host", "a")],
            &[("content-length", "3, 3"), ("connection", "close")],
            &[("content-length", "3"), ("content-length", "4")],
            &[("transfer-encoding", "chunked"), ("te", "trailers")],
            &[("keep-alive", "5"), ("x-forwarded-for", "1.2.3.4")],
            &[("proxy-connection", "close"), ("te", "gzip")],
            &[("upgrade", "h2c"), ("content-length", "+1")],
        ];
        for fields in cases {
            let mut h = HeaderMap::new();
            for (name, value) in fields {
                h.append(
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            let (full, framing) = (scan(&h), scan_framing(&h));
            assert_eq!(full.connection, framing.connection, "{fields:?}");
            assert_eq!(full.other_hop_by_hop, framing.other_hop_by_hop);
            assert_eq!(full.transfer_encoding, framing.transfer_encoding);
            assert_eq!(full.content_length, framing.content_length);
            assert_eq!(full.content_length_plain, framing.content_length_plain);
        }
    }

    #[test]
    fn content_length_is_read_strictly() {
        let cl = |v: &'static str| {
            let mut h = HeaderMap::new();
            for part in v.split('|') {
                h.append(header::CONTENT_LENGTH, HeaderValue::from_static(part));
            }
            content_length(&h)
        };
        assert_eq!(cl("12"), Ok(Some(12)));
        assert_eq!(cl("3, 3"), Ok(Some(3)));
        assert_eq!(cl("3|3"), Ok(Some(3)));
        for bad in [
            "+2",
            "-1",
            "3, 4",
            "3|4",
            "",
            "1 2",
            "0x10",
            "99999999999999999999",
        ] {
            assert_eq!(cl(bad), Err(InvalidLength), "{bad:?}");
        }
        assert_eq!(content_length(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn only_chunked_transfer_coding_passes() {
        let te = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static(v));
            is_only_chunked(&h)
        };
        assert!(te("chunked") && te("Chunked"));
        assert!(!te("gzip, chunked") && !te("gzip") && !te("chunked, chunked"));
    }

    #[test]
    fn forwarded_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        add_forwarded(
            &mut h,
            &HeaderValue::from_static("127.0.0.1"),
            false,
            Some(HeaderValue::from_static("a.test")),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.test");
    }
}
