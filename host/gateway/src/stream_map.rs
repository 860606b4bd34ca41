//! Moving headers between hyper's types and the filters' [`Stream`], the
//! way Envoy presents them: pseudo headers (`:method`, `:path`,
//! `:authority`, `:scheme`, `:status`) in the map, `Host` folded into
//! `:authority`.
//!
//! Both directions are on every filtered request's path, so they are kept
//! cheap: streams are recycled per worker (their maps keep their buffers),
//! and only the names the filters edited are written back to hyper's map.

use std::{cell::RefCell, sync::Arc};

use http::{
    HeaderName, HeaderValue, Method, Response, StatusCode,
    header::{self, Entry},
    request, response,
};
use wasmgate_abi::{LocalResponse, Properties, Stream};

use crate::{body::Body, error::ProxyError, proxy::ConnInfo};

thread_local! {
    /// Streams of finished requests, cleared, for the next ones. Boxed on
    /// purpose: a request takes one and moves it around as a pointer.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Stream>>> = const { RefCell::new(Vec::new()) };
}

/// Most spare streams a worker keeps.
const MAX_SPARE: usize = 256;

/// A stream holding more than this (a buffered body, say) is not kept.
const MAX_SPARE_BYTES: usize = 16 * 1024;

/// A request's [`Stream`], boxed so that it moves as a pointer (a stream
/// is several hundred bytes), and given back to the worker's spares, maps
/// and buffers kept, when the request ends.
#[derive(Debug)]
pub struct PooledStream(Option<Box<Stream>>);

impl PooledStream {
    /// A cleared spare stream of this worker, or a new one.
    pub fn take() -> Self {
        let spare = SPARE.with_borrow_mut(Vec::pop);
        Self(Some(spare.unwrap_or_default()))
    }
}

impl std::ops::Deref for PooledStream {
    type Target = Stream;

    fn deref(&self) -> &Stream {
        match &self.0 {
            Some(stream) => stream,
            // Only `drop` takes the box out.
            None => unreachable!("stream used after it was recycled"),
        }
    }
}

impl std::ops::DerefMut for PooledStream {
    fn deref_mut(&mut self) -> &mut Stream {
        match &mut self.0 {
            Some(stream) => stream,
            None => unreachable!("stream used after it was recycled"),
        }
    }
}

impl Drop for PooledStream {
    fn drop(&mut self) {
        let Some(mut stream) = self.0.take() else {
            return;
        };
        if stream.capacity_bytes() > MAX_SPARE_BYTES {
            return;
        }
        stream.clear();
        // try_: a request dropped while the worker's thread-locals are torn
        // down just frees its stream.
        let _ = SPARE.try_with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut()
                && spare.len() < MAX_SPARE
            {
                spare.push(stream);
            }
        });
    }
}

/// A stream holding the request as the filters should see it.
///
/// `route` holds the route's properties for filters ([`Chain::properties`]).
///
/// [`Chain::properties`]: crate::chain::Chain::properties
pub fn request_stream(
    parts: &request::Parts,
    conn: &ConnInfo,
    route: &Arc<Properties>,
) -> PooledStream {
    let mut stream = PooledStream::take();
    let map = &mut stream.request_headers;
    // Envoy's order: `:authority`, `:path`, `:method`, `:scheme`.
    let authority = parts
        .headers
        .get(header::HOST)
        .map_or(&[][..], HeaderValue::as_bytes);
    map.add_lowercase(":authority", authority);
    map.add_lowercase(
        ":path",
        parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    map.add_lowercase(":method", parts.method.as_str().as_bytes());
    map.add_lowercase(":scheme", if conn.tls { b"https" } else { b"http" });
    map.extend_lowercase(
        parts
            .headers
            .iter()
            .filter(|(name, _)| *name != header::HOST)
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
    stream.info.start = conn.started;
    stream.info.protocol = Some(crate::proxy::protocol_name(conn.version));
    // Made once per connection and per route; shared, not copied.
    stream.shared.push(conn.attributes());
    stream.shared.push(route.clone());
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
    map.extend_lowercase(
        parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
}

/// Writes what the filters changed in the response back.
///
/// # Errors
/// A `:status` a filter made invalid or informational (1xx: the gateway
/// never sends an interim response in place of the final one).
pub fn apply_response(stream: &Stream, parts: &mut response::Parts) -> Result<(), &'static str> {
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
            .filter(|s| !s.is_informational())
            .ok_or("an invalid or 1xx :status")?;
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

/// Replaces every value of `name` in `out` with the map's (one lookup in
/// `out` for the usual case of a single value).
fn write_back(map: &wasmgate_abi::HeaderMap, name: &str, out: &mut http::HeaderMap, what: &str) {
    let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
        tracing::warn!(
            header = name,
            kind = what,
            "filter set an invalid header name; dropped"
        );
        return;
    };
    let named = header.clone();
    let mut values = map
        .get_all(name)
        .filter_map(|value| valid_value(value, &named, what));
    match (values.next(), out.entry(header)) {
        (None, Entry::Vacant(_)) => {}
        (None, Entry::Occupied(e)) => {
            e.remove_entry_mult();
        }
        (Some(first), Entry::Vacant(e)) => {
            let mut e = e.insert_entry(first);
            values.for_each(|v| e.append(v));
        }
        (Some(first), Entry::Occupied(mut e)) => {
            e.insert(first);
            values.for_each(|v| e.append(v));
        }
    }
}

/// Appends one value a filter set; an invalid one is dropped with a
/// warning naming the header.
fn append_value(out: &mut http::HeaderMap, name: HeaderName, value: &[u8], what: &str) {
    if let Some(v) = valid_value(value, &name, what) {
        out.append(name, v);
    }
}

/// A value a filter set, or `None` (with a warning naming the header,
/// never the value) when it is not a valid header value.
fn valid_value(value: &[u8], name: &HeaderName, what: &str) -> Option<HeaderValue> {
    let valid = HeaderValue::from_bytes(value).ok();
    if valid.is_none() {
        tracing::warn!(
            header = %name,
            kind = what,
            "filter set an invalid header value; dropped"
        );
    }
    valid
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

/// Marks a response as a filter's local reply, with what a gRPC client
/// gets of it instead ([`grpc_local_reply`]).
#[derive(Clone, Debug)]
pub struct LocalReply {
    /// The filter's gRPC status (`-1`: none, map the HTTP status).
    pub grpc_status: i32,
    /// The body as text: the `grpc-message`.
    pub message: String,
}

/// A filter's local reply to a gRPC request becomes a trailers-only gRPC
/// answer, as Envoy sends it: 200, `grpc-status` (the filter's, or the
/// HTTP status mapped), `grpc-message` (the body); the filter's other
/// headers stay. Anything else is left alone.
pub fn grpc_local_reply(response: &mut Response<Body>) {
    let Some(reply) = response.extensions_mut().remove::<LocalReply>() else {
        return;
    };
    let code = u32::try_from(reply.grpc_status)
        .unwrap_or_else(|_| crate::error::grpc_status_for(response.status().as_u16()));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().remove(header::CONTENT_LENGTH);
    crate::error::grpc_trailers_only(response.headers_mut(), code, &reply.message);
    *response.body_mut() = crate::body::empty();
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
    // A 1xx is no final answer: refused like an invalid status.
    parts.status = u16::try_from(local.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .filter(|s| !s.is_informational())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    append_regular(&local.headers, &mut parts.headers, "local response");
    parts.extensions.insert(LocalReply {
        grpc_status: local.grpc_status,
        message: String::from_utf8_lossy(&local.body).into_owned(),
    });
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

    fn stream(parts: &request::Parts) -> PooledStream {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let route = Arc::new([("route_name", "r")].into_iter().collect());
        request_stream(parts, &ConnInfo::new(addr, addr, false), &route)
    }

    fn values<'a>(h: &'a http::HeaderMap, name: &str) -> Vec<&'a [u8]> {
        h.get_all(name).iter().map(HeaderValue::as_bytes).collect()
    }

    #[test]
    fn pseudo_headers_come_in_envoys_order() {
        let p = parts();
        let s = stream(&p);
        let names: Vec<&str> = s.request_headers.iter().map(|(n, _)| n).take(4).collect();
        assert_eq!(names, [":authority", ":path", ":method", ":scheme"]);
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

    #[test]
    fn an_invalid_value_never_leaves_the_clients_copy_behind() {
        let mut p = parts();
        let mut s = stream(&p);
        let map = &mut s.request_headers;
        // Replaced by an invalid value then a valid one: only the valid one.
        map.replace("x-multi", "bad\r\nvalue");
        map.add("x-multi", "m4");
        // Replaced by an invalid value only: gone.
        map.replace("x-keep", "bad\nvalue");
        for name in ["x-multi", "x-keep"] {
            map.note_edit(name);
        }
        apply_request(&s, &mut p).unwrap();
        assert_eq!(values(&p.headers, "x-multi"), [b"m4"]);
        assert!(!p.headers.contains_key("x-keep"));
        assert_eq!(values(&p.headers, "x-gone"), [b"g"]);
    }
}
