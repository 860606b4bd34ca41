//! Header rules of a proxy: hop-by-hop headers (RFC 9110 §7.6.1) are
//! dropped in both directions, and `x-forwarded-for`/`-proto`/`-host` tell
//! the upstream who asked.

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header, header::Entry};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes `Connection`, the headers it names, and the other hop-by-hop
/// headers (`Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `TE`,
/// `Upgrade`). Framing is hyper's job on each side.
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
    if connection {
        // The options `Connection` names; `keep-alive` and `close` (the
        // usual ones) name no header that is not removed below anyway.
        let named: Vec<HeaderName> = tokens(headers, header::CONNECTION)
            .filter(|t| {
                !t.is_empty()
                    && !t.eq_ignore_ascii_case("keep-alive")
                    && !t.eq_ignore_ascii_case("close")
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        headers.remove(header::CONNECTION);
        for name in named {
            headers.remove(name);
        }
    }
    if other {
        for name in [
            KEEP_ALIVE,
            PROXY_CONNECTION,
            header::TRANSFER_ENCODING,
            header::TE,
            header::UPGRADE,
        ] {
            headers.remove(name);
        }
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
/// the edge and knows better).
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    https: bool,
    host: Option<HeaderValue>,
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
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
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
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.test");
    }
}
