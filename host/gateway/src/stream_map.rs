//! Moving headers between hyper's types and the filters' [`Stream`], the
//! way Envoy presents them: pseudo headers (`:method`, `:path`,
//! `:authority`, `:scheme`, `:status`) in the map, `Host` folded into
//! `:authority`.

use http::{HeaderName, HeaderValue, Method, Response, StatusCode, header, request, response};
use wasmgate_abi::{LocalResponse, Stream};

use crate::{body::Body, error::ProxyError, proxy::ConnInfo};

/// A fresh stream holding the request as the filters should see it.
pub fn request_stream(parts: &request::Parts, conn: &ConnInfo, route: &str) -> Stream {
    let mut stream = Stream {
        request_headers: wasmgate_abi::HeaderMap::with_capacity(parts.headers.len() + 4),
        ..Stream::default()
    };
    let map = &mut stream.request_headers;
    map.add(":method", parts.method.as_str());
    map.add(
        ":path",
        parts.uri.path_and_query().map_or("/", |p| p.as_str()),
    );
    let authority = parts
        .headers
        .get(header::HOST)
        .map_or(&[][..], HeaderValue::as_bytes);
    map.add(":authority", authority);
    map.add(":scheme", if conn.tls { "https" } else { "http" });
    for (name, value) in &parts.headers {
        if name != header::HOST {
            map.add(name.as_str(), value.as_bytes());
        }
    }
    let props = &mut stream.properties;
    // Rendered once per connection; copied, not formatted, per request.
    props.insert("source.address".into(), conn.peer_text().to_vec());
    props.insert("destination.address".into(), conn.local_text().to_vec());
    props.insert("route_name".into(), route.as_bytes().to_vec());
    stream
}

/// Writes the filters' view of the request back (method, path, authority,
/// headers). A header a filter made invalid is dropped with a warning that
/// names it (never its value).
///
/// # Errors
/// A `:method` or `:path` that is not valid.
pub fn apply_request(stream: &Stream, parts: &mut request::Parts) -> Result<(), ProxyError> {
    let map = &stream.request_headers;
    if request_unchanged(map, parts) {
        return Ok(());
    }
    if let Some(method) = map.get(":method")
        && method != parts.method.as_str().as_bytes()
    {
        parts.method = Method::from_bytes(method)
            .map_err(|_| ProxyError::BadRequest(":method set by a filter"))?;
    }
    if let Some(path) = map.get_str(":path") {
        parts.uri = path
            .parse()
            .map_err(|_| ProxyError::BadRequest(":path set by a filter"))?;
    }
    parts.headers.clear();
    for (name, value) in map.iter() {
        let name = if name == ":authority" {
            header::HOST
        } else if name.starts_with(':') {
            continue;
        } else {
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    tracing::warn!(header = name, "filter set an invalid header name; dropped");
                    continue;
                }
            }
        };
        match HeaderValue::from_bytes(value) {
            Ok(v) => {
                parts.headers.append(name, v);
            }
            Err(_) => tracing::warn!(header = %name, "filter set an invalid header value; dropped"),
        }
    }
    Ok(())
}

/// Puts the upstream's response headers into the stream.
pub fn response_headers_into(stream: &mut Stream, parts: &response::Parts) {
    stream.response_headers = wasmgate_abi::HeaderMap::with_capacity(parts.headers.len() + 1);
    let map = &mut stream.response_headers;
    map.add(":status", parts.status.as_str());
    for (name, value) in &parts.headers {
        map.add(name.as_str(), value.as_bytes());
    }
}

/// Writes the filters' view of the response back.
///
/// # Errors
/// A `:status` a filter made invalid.
pub fn apply_response(stream: &Stream, parts: &mut response::Parts) -> Result<(), ProxyError> {
    let map = &stream.response_headers;
    if map.get(":status") == Some(parts.status.as_str().as_bytes())
        && same_regular_headers(map, parts.headers.iter())
    {
        // Untouched by the filters (the common case): nothing to rebuild.
        return Ok(());
    }
    if let Some(status) = map.get_str(":status") {
        parts.status = status
            .parse::<u16>()
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or(ProxyError::BadRequest(":status set by a filter"))?;
    }
    parts.headers.clear();
    append_regular(map, &mut parts.headers, "response");
    Ok(())
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

/// Whether the filters left the request exactly as [`request_stream`] made it.
fn request_unchanged(map: &wasmgate_abi::HeaderMap, parts: &request::Parts) -> bool {
    let host = parts
        .headers
        .get(header::HOST)
        .map_or(&[][..], HeaderValue::as_bytes);
    map.get(":method") == Some(parts.method.as_str().as_bytes())
        && map.get(":path")
            == Some(
                parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .as_bytes(),
            )
        && map.get(":authority") == Some(host)
        && same_regular_headers(
            map,
            parts.headers.iter().filter(|(n, _)| *n != header::HOST),
        )
}

/// Whether the map's non-pseudo headers are exactly `headers`, in order.
fn same_regular_headers<'a>(
    map: &wasmgate_abi::HeaderMap,
    headers: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>,
) -> bool {
    let mut ours = map.iter().filter(|(n, _)| !n.starts_with(':'));
    for (name, value) in headers {
        match ours.next() {
            Some((n, v)) if n == name.as_str() && v == value.as_bytes() => {}
            _ => return false,
        }
    }
    ours.next().is_none()
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
        apply_request(&s, &mut p).unwrap();
        assert!(!p.headers.contains_key("host"));
        assert_eq!(values(&p.headers, "x-multi"), [&b"m1"[..], b"m2", b"m3"]);
        assert_eq!(p.uri, "/z");
    }
}
