//! The request pipeline: route, filter, forward, filter, answer.
//!
//! ```text
//! request ─► checks (smuggling, body size) ─► route match (404)
//!         ─► hop-by-hop out, x-forwarded-* in
//!         ─► filters: on_request_headers (in order; pause/resume, local reply, http calls;
//!                      a local reply from a request phase runs the response callbacks)
//!         ─► upstream (pooled; 502/504)     request body streams through on_request_body
//!         ─► filters: on_response_headers (reverse order)
//!         ─► client                          response body streams through on_response_body,
//!                                            then on_log / on_done / on_delete
//! ```
//!
//! Each phase is one function, in its own file, over one [`Exchange`]
//! (the request's context): [`checks::check_request`],
//! [`request_filters::request_filters`], [`send_upstream::prepare`] and [`send_upstream::received`],
//! [`response_filters::response_filters`]. [`handle`] turns every error into
//! the response (once, in `error.rs`), frames it and writes the access log.
//! A route without filters takes none of the filter steps: no wasm, no
//! header-map conversion.

mod checks;
mod conn;
mod request_filters;
mod response_filters;
mod send_upstream;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use http::{HeaderMap, HeaderValue, Request, Response, Version, header};
use hyper::body::Body as _;

pub use conn::{ConnInfo, protocol_name};

use crate::{
    access_log::Entry,
    body::{Body, RequestBody},
    config::EscapedSlashes,
    error::{ProxyError, StreamReset},
    headers::{own_response_framing, scan},
    snapshot::{Route, Snapshot},
    stream_map,
};
use checks::{check_request, refused_method};
use request_filters::request_filters;
use response_filters::response_filters;

/// Serves one request against the given configuration. Every error
/// becomes a response here, except a filter closing the stream, which
/// resets it ([`StreamReset`]).
///
/// # Errors
/// [`StreamReset`] when a filter called `proxy_close_stream`.
pub async fn handle(
    mut req: Request<RequestBody>,
    mut conn: ConnInfo,
    snapshot: Arc<Snapshot>,
) -> Result<Response<Body>, StreamReset> {
    let start = Instant::now();
    conn.version = req.version();
    conn.started = Some(start);
    // Routes match, and upstreams receive, the one normal form of the path.
    if let Some(normal) = crate::path::normalize(req.uri().path()) {
        let mut parts = req.uri().clone().into_parts();
        let target = match req.uri().query() {
            Some(q) => format!("{normal}?{q}"),
            None => normal,
        };
        parts.path_and_query = target.parse().ok();
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    let method = req.method().clone();
    let version = req.version();
    let head_request = method == http::Method::HEAD;
    // gRPC clients read errors from `grpc-status`, not the HTTP status;
    // the request checks note whether it is one (in their scan of the
    // fields), the early answers below look for themselves.
    let grpc = AtomicBool::new(false);
    let answer = |e: ProxyError| {
        if grpc.load(Ordering::Relaxed) {
            e.into_grpc_response()
        } else {
            e.into_response()
        }
    };
    // A request body still unread when the answer is ready (an early
    // answer) means the connection cannot be reused: `connection: close`.
    let body = (!req.body().is_end_stream()).then(|| Arc::new(BodyWatch::default()));
    // Cheap copies (reference-counted bytes) for matching and the log,
    // since the request itself moves on.
    let uri = req.uri().clone();
    let host_header = match uri.authority() {
        Some(_) => None,
        None => req.headers().get(header::HOST).cloned(),
    };
    let host = uri
        .authority()
        .map(http::uri::Authority::as_str)
        .or_else(|| host_header.as_ref().and_then(|h| h.to_str().ok()));
    let path = uri.path();
    // What is refused before any route is looked at: methods never
    // forwarded, paths whose meaning depends on the backend.
    let refused = refused_method(&method)
        .map(ProxyError::MethodRefused)
        .or_else(|| {
            (snapshot.limits.path_with_escaped_slashes == EscapedSlashes::Reject)
                .then(|| crate::path::ambiguous(path))
                .flatten()
                .map(ProxyError::BadRequest)
        });
    let route_index = match refused {
        Some(_) => None,
        None => snapshot.matchers.first_match(host, path),
    };
    let route = route_index.map(|i| &snapshot.routes[i]);
    let mut sent_headers = None;
    let mut before = Vec::new();
    let mut reset = false;
    let mut response = match (refused, route) {
        (Some(e), _) => {
            grpc.store(scan(req.headers()).grpc, Ordering::Relaxed);
            answer(e)
        }
        (None, None) => {
            snapshot_no_route(&snapshot);
            grpc.store(scan(req.headers()).grpc, Ordering::Relaxed);
            answer(ProxyError::NoRoute)
        }
        (None, Some(route)) => {
            let mut exchange = Exchange {
                conn: &conn,
                snapshot: &snapshot,
                route,
                watch: body.clone().unwrap_or_default(),
                grpc: &grpc,
                before: Vec::new(),
                sent_headers: None,
            };
            let forwarded = forward(req, &mut exchange).await;
            sent_headers = exchange.sent_headers;
            before = exchange.before;
            match forwarded {
                Ok(response) => response,
                Err(e) => {
                    reset = matches!(e, ProxyError::StreamClosed { .. });
                    if e.status().is_server_error() {
                        tracing::warn!(route = %route.name, error = %e, "request failed");
                    }
                    answer(e)
                }
            }
        }
    };
    if grpc.load(Ordering::Relaxed) {
        stream_map::grpc_local_reply(&mut response);
    }
    let early = body.is_some_and(|b| !b.finished.load(Ordering::Relaxed));
    frame_response(
        &mut response,
        head_request,
        early && version <= Version::HTTP_11,
    );
    let elapsed = start.elapsed();
    // A reset counts (and logs) as status 0: nothing was answered.
    let status = if reset { 0 } else { response.status().as_u16() };
    if let Some(route) = route {
        route.stats.record(status, elapsed);
    }
    snapshot.access_log.log(
        &Entry {
            peer: conn.peer,
            method: method.as_str(),
            path,
            host: host.unwrap_or("-"),
            route: route.map_or("-", |r| &r.name),
            upstream: route.map_or("-", |r| &r.upstream.name),
            status,
            elapsed,
            version,
        },
        sent_headers.as_ref(),
        &before,
    );
    if reset {
        Err(StreamReset)
    } else {
        Ok(response)
    }
}

/// The last step before any response goes to the client, whatever made
/// it (upstream, filter, error): the proxy owns framing
/// ([`own_response_framing`]; the server frames the body by its size),
/// and `connection: close` when asked for or when `close` (the request
/// body was not read to the end, so the connection is out of step).
fn frame_response(response: &mut Response<Body>, head_request: bool, close: bool) {
    let status = response.status();
    let length = response.body().size_hint().exact();
    let asked = own_response_framing(response.headers_mut(), status, head_request, length);
    if close || asked {
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// How far a request body was read.
#[derive(Debug, Default)]
pub struct BodyWatch {
    /// Crossed `limits.max_body_bytes` (413 rather than 502).
    pub exceeded: AtomicBool,
    /// Read to its end.
    pub finished: AtomicBool,
}

/// One request's trip through a route: what its phases share, and what
/// they leave behind for the access log.
struct Exchange<'a> {
    conn: &'a ConnInfo,
    snapshot: &'a Snapshot,
    route: &'a Route,
    /// How far the request body was read (a fresh one for a bodiless request).
    watch: Arc<BodyWatch>,
    /// Set by the request checks for a gRPC request.
    grpc: &'a AtomicBool,
    /// The request headers the access log wants, as the client sent them.
    before: Vec<Option<HeaderValue>>,
    /// The request headers as sent upstream, when the access log wants them.
    sent_headers: Option<HeaderMap>,
}

/// How a phase ends: the next phase takes over, or the answer is ready
/// (a local reply, a filter's decision).
enum Step<T> {
    Next(T),
    Answer(Response<Body>),
}

/// A request through a route, phase by phase.
async fn forward(
    req: Request<RequestBody>,
    x: &mut Exchange<'_>,
) -> Result<Response<Body>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    // Request smuggling: hyper refuses conflicting Content-Lengths and a
    // Transfer-Encoding that is not chunked (400). For Content-Length plus
    // chunked it does what RFC 9112 §6.3 requires: chunked wins, the
    // Content-Length is removed (so the upstream cannot frame it otherwise)
    // and the connection is closed after the response, so bytes smuggled
    // behind the body are never read as a request. HTTP/2 forbids
    // Transfer-Encoding outright.
    let limit = x.snapshot.limits.max_body_bytes;
    if body.size_hint().lower() > limit {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let found = match check_request(&mut parts, x.conn, x.snapshot, x.grpc)? {
        (Some(answer), _) => return Ok(answer),
        (None, found) => found,
    };
    if x.snapshot.access_log.wants_headers() {
        x.before = x.snapshot.access_log.before(&parts.headers);
    }
    let outbound = match request_filters(parts, body, &found, x).await? {
        Step::Next(outbound) => outbound,
        Step::Answer(answer) => return Ok(answer),
    };
    let (request, after) = send_upstream::prepare(outbound, &found, x)?;
    let sent = x.route.upstream.send(request).await;
    let (response, run) = match send_upstream::received(sent, after, x).await? {
        Step::Next(upstreamed) => upstreamed,
        Step::Answer(answer) => return Ok(answer),
    };
    match run {
        Some(run) => response_filters(response, run, &x.route.upstream).await,
        None => Ok(response),
    }
}

fn snapshot_no_route(snapshot: &Snapshot) {
    snapshot
        .stats
        .global
        .no_route
        .fetch_add(1, Ordering::Relaxed);
}
