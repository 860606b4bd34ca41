//! Moving headers between hyper's types and the filters' [`Stream`], the
//! way Envoy presents them: pseudo headers (`:method`, `:path`,
//! `:authority`, `:scheme`, `:status`) in the map, `Host` folded into
//! `:authority`.
//!
//! Both directions are on every filtered request's path, so they are kept
//! cheap: streams are recycled per worker (their maps keep their buffers),
//! and only the names the filters edited are written back to hyper's map.

use std::cell::RefCell;

use http::{HeaderName, HeaderValue, Method, Response, StatusCode, header, request, response};
use wasmgate_abi::{LocalResponse, Stream};

use crate::{body::Body, error::ProxyError, proxy::ConnInfo};

thread_local! {
    /// Streams of finished requests, cleared, for the next ones.
    static SPARE: RefCell<Vec<Stream>> = const { RefCell::new(Vec::new()) };
}

/// Most spare streams a worker keeps.
const MAX_SPARE: usize = 256;

/// A stream holding more than this (a buffered body, say) is not kept.
const MAX_SPARE_BYTES: usize = 16 * 1024;

/// Gives a finished request's stream back for reuse.
pub fn recycle(mut stream: Stream) {
    if stream.capacity_bytes() > MAX_SPARE_BYTES {
        return;
    }
    stream.clear();
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < MAX_SPARE {
            spare.push(stream);
        }
    });
}

/// A stream holding the request as the filters should see it.
pub fn request_stream(parts: &request::Parts, conn: &ConnInfo, route: &str) -> Stream {
    let mut stream = SPARE.with_borrow_mut(Vec::pop).unwrap_or_default();
    let map = &mut stream.request_headers;
    map.add_lowercase(":method", parts.method.as_str().as_bytes());
    map.add_lowercase(
        ":path",
        parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    let authority = parts
        .headers
        .get(header::HOST)
        .map_or(&[][..], HeaderValue::as_bytes);
    map.add_lowercase(":authority", authority);
    map.add_lowercase(":scheme", if conn.tls { b"https" } else { b"http" });
    for (name, value) in &parts.headers {
        if name != header::HOST {
            map.add_lowercase(name.as_str(), value.as_bytes());
        }
    }
    let props = &mut stream.properties;
    // Rendered once per connection; copied, not formatted, per request.
    props.insert("source.address", conn.peer_text());
    props.insert("destination.address", conn.local_text());
    props.insert("route_name", route.as_bytes());
    stream
}

/// Writes what the filters changed in the request back (method, path,
/// authority, headers). A header a filter made invalid is dropped with a
/// warning that names it (never its value).
///
/// # Errors
/// A `:method` or `:path` that is not valid.
pub fn apply_request(stream: &Stream, parts: &mut request::Parts) -> Result<(), ProxyError> {
    let map = &stream.request_headers;
    if !map.is_edited() {
        return Ok(());
    }
    let all = map.replaced();
    let edited = |name: &str| all || map.edited_names().any(|n| n == name);
    if edited(":method")
        && let Some(method) = map.get(":method")
        && method != parts.method.as_str().as_bytes()
    {
        parts.method = Method::from_bytes(method)
            .map_err(|_| ProxyError::BadRequest(":method set by a filter"))?;
    }
    if edited(":path")
        && let Some(path) = map.get_str(":path")
    {
        parts.uri = path
            .parse()
            .map_err(|_| ProxyError::BadRequest(":path set by a filter"))?;
    }
    if all {
        parts.headers.clear();
        append_regular(map, &mut parts.headers, "request");
        for value in map.get_all(":authority") {
            append_value(&mut parts.headers, header::HOST, value, "request");
        }
        return Ok(());
    }
    for name in map.edited_names() {
        if name == ":authority" || name == "host" {
            // `Host` is `:authority` in the filters' view (plus any `host`
            // a filter added itself).
            parts.headers.remove(header::HOST);
            for value in map.get_all(":authority").chain(map.get_all("host")) {
                append_value(&mut parts.headers, header::HOST, value, "request");
            }
        } else if !name.starts_with(':') {
            write_back(map, name, &mut parts.headers, "request");
        }
    }
    Ok(())
}

/// Puts the upstream's response headers into the stream.
pub fn response_headers_into(stream: &mut Stream, parts: &response::Parts) {
    let map = &mut stream.response_headers;
    map.clear();
    map.add_lowercase(":status", parts.status.as_str().as_bytes());
    for (name, value) in &parts.headers {
        map.add_lowercase(name.as_str(), value.as_bytes());
    }
}

/// Writes what the filters changed in the response back.
///
/// # Errors
/// A `:status` a filter made invalid.
pub fn apply_response(stream: &Stream, parts: &mut response::Parts) -> Result<(), ProxyError> {
    let map = &stream.response_headers;
    if !map.is_edited() {
        return Ok(());
    }
    let all = map.replaced();
    if (all || map.edited_names().any(|n| n == ":status"))
        && let Some(status) = map.get_str(":status")
    {
        parts.status = status
            .parse::<u16>()
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or(ProxyError::BadRequest(":status set by a filter"))?;
    }
    if all {
        parts.headers.clear();
        append_regular(map, &mut parts.headers, "response");
        return Ok(());
    }
    for name in map.edited_names() {
        if !name.starts_with(':') {
            write_back(map, name, &mut parts.headers, "response");
        }
    }
    Ok(())
}

/// Replaces every value of `name` in `out` with the map's.
fn write_back(map: &wasmgate_abi::HeaderMap, name: &str, out: &mut http::HeaderMap, what: &str) {
    let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
        tracing::warn!(
            header = name,
            kind = what,
            "filter set an invalid header name; dropped"
        );
        return;
    };
    out.remove(&header);
    for value in map.get_all(name) {
        append_value(out, header.clone(), value, what);
    }
}

/// Appends one value a filter set; an invalid one is dropped with a
/// warning naming the header.
fn append_value(out: &mut http::HeaderMap, name: HeaderName, value: &[u8], what: &str) {
    match HeaderValue::from_bytes(value) {
        Ok(v) => {
            out.append(name, v);
        }
        Err(_) => tracing::warn!(
            header = %name,
            kind = what,
            "filter set an invalid header value; dropped"
        ),
    }
}

/// Appends every regular (not pseudo) header of a filter's map to `out`.
/// A name or value a filter made invalid is dropped with a warning that
/// names the header (never its value).
fn append_regular(map: &wasmgate_abi::HeaderMap, out: &mut http::HeaderMap, what: &str) {
    for (name, value) in map.iter() {
        if name.starts_with(':') {
            continue;
        }
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            (Ok(n), Ok(v)) => {
                out.append(n, v);
            }
            _ => tracing::warn!(
                header = name,
                kind = what,
                "filter set an invalid header; dropped"
            ),
        }
    }
}

/// The response a filter asked for with `send_local_response`, sent as it
/// is (no response callbacks).
pub fn local_response(local: LocalResponse) -> Response<Body> {
    let (parts, body) = local_response_parts(local);
    Response::from_parts(parts, crate::body::full(body))
}

/// A local response's status and headers, and its body apart. As in
/// Envoy, a body without a `content-type` from the filter is sent as
/// `text/plain`, and a body sets `content-length`; an invalid status is
/// 500 and an invalid header is dropped (named in a warning).
pub fn local_response_parts(local: LocalResponse) -> (response::Parts, Vec<u8>) {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = u16::try_from(local.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    append_regular(&local.headers, &mut parts.headers, "local response");
    if !local.body.is_empty() {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(local.body.len()));
        if !parts.headers.contains_key(header::CONTENT_TYPE) {
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
    }
    (parts, local.body)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http::Request;

    use super::*;

    fn parts() -> request::Parts {
        let (parts, ()) = Request::get("/a?b=1")
            .header("host", "example.com")
            .header("x-keep", "1")
            .header("x-multi", "m1")
            .header("x-multi", "m2")
            .header("x-gone", "g")
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    fn stream(parts: &request::Parts) -> Stream {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        request_stream(parts, &ConnInfo::new(addr, addr, false), "r")
    }

    fn values<'a>(h: &'a http::HeaderMap, name: &str) -> Vec<&'a [u8]> {
        h.get_all(name).iter().map(HeaderValue::as_bytes).collect()
    }

    #[test]
    fn untouched_request_stays_as_it_was() {
        let mut p = parts();
        let before = p.headers.clone();
        apply_request(&stream(&p), &mut p).unwrap();
        assert_eq!(p.headers, before);
        assert_eq!(p.uri, "/a?b=1");
    }

    #[test]
    fn only_what_the_filters_changed_is_applied() {
        let mut p = parts();
        let mut s = stream(&p);
        let map = &mut s.request_headers;
        map.add("Authorization", "Bearer s");
        map.remove("x-gone");
        map.replace("x-multi", "m3");
        map.replace(":authority", "other.example");
        map.add("x-bad", "a\nb");
        map.add("bad name", "v");
        for name in [
            "authorization",
            "x-gone",
            "x-multi",
            ":authority",
            "x-bad",
            "bad name",
        ] {
            map.note_edit(name);
        }
        apply_request(&s, &mut p).unwrap();
        assert_eq!(values(&p.headers, "authorization"), [b"Bearer s"]);
        assert_eq!(values(&p.headers, "x-multi"), [b"m3"]);
        assert_eq!(values(&p.headers, "host"), [b"other.example"]);
        assert_eq!(values(&p.headers, "x-keep"), [b"1"]);
        assert!(!p.headers.contains_key("x-gone"));
        assert!(!p.headers.contains_key("x-bad"));
        assert_eq!(p.headers.len(), 4);
        assert_eq!(p.uri, "/a?b=1");
    }

    #[test]
    fn authority_and_path_removed_or_changed() {
        let mut p = parts();
        let mut s = stream(&p);
        s.request_headers.remove(":authority");
        s.request_headers.replace(":path", "/z");
        s.request_headers.add("x-multi", "m3");
        for name in [":authority", ":path", "x-multi"] {
            s.request_headers.note_edit(name);
        }
        apply_request(&s, &mut p).unwrap();
        assert!(!p.headers.contains_key("host"));
        assert_eq!(values(&p.headers, "x-multi"), [&b"m1"[..], b"m2", b"m3"]);
        assert_eq!(p.uri, "/z");
    }
}
