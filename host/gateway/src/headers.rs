//! Header rules of a proxy: hop-by-hop headers (RFC 9110 §7.6.1) are
//! dropped in both directions, and `x-forwarded-for`/`-proto`/`-host` tell
//! the upstream who asked.

use http::{HeaderMap, HeaderName, HeaderValue, header};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes `Connection`, the headers it names, and the other hop-by-hop
/// headers (`Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `TE`,
/// `Upgrade`). Framing is hyper's job on each side.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually one Connection value ("keep-alive" or "close"): take it out
    // and remove what it names, without collecting into a Vec.
    let mut values = headers.get_all(header::CONNECTION).iter();
    let first = values.next().cloned();
    let more: Vec<HeaderValue> = values.cloned().collect();
    if let Some(first) = first {
        headers.remove(header::CONNECTION);
        for value in std::iter::once(&first).chain(&more) {
            for name in value.to_str().unwrap_or("").split(',') {
                if let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes()) {
                    headers.remove(name);
                }
            }
        }
    }
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

/// Appends the client to `x-forwarded-for` and sets `x-forwarded-proto`
/// and `x-forwarded-host` (overwriting client-sent copies: the gateway is
/// the edge and knows better).
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    https: bool,
    host: Option<&str>,
) {
    let appended = headers
        .get(&X_FORWARDED_FOR)
        .filter(|v| !v.is_empty())
        .and_then(|existing| {
            let mut joined = Vec::with_capacity(existing.len() + 2 + client.len());
            joined.extend_from_slice(existing.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(client.as_bytes());
            HeaderValue::from_bytes(&joined).ok()
        });
    headers.remove(&X_FORWARDED_FOR);
    headers.insert(X_FORWARDED_FOR, appended.unwrap_or_else(|| client.clone()));
    let proto = if https { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host.and_then(|h| HeaderValue::from_str(h).ok()) {
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
            Some("a.test"),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.test");
    }
}
