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
//! A route without filters takes none of the filter steps: no wasm, no
//! header-map conversion.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, Version, header};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use wasmgate_abi::{LocalResponse, Properties};

use crate::{
    access_log::Entry,
    body::{Body, RequestBody},
    chain::{BodyStep, FilterRun, Flow, Side, Verdict},
    error::{ProxyError, StreamReset},
    filtered_body::{FilteredBody, LimitedBody},
    headers::{add_forwarded, strip_hop_by_hop},
    route::first_match,
    snapshot::{Route, Snapshot},
    stream_map,
};

/// What the pipeline knows about the client connection. Cheap to clone;
/// the text forms are made once per connection, not per request.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Client address.
    pub peer: SocketAddr,
    /// Our address.
    pub local: SocketAddr,
    /// Whether the client came over TLS.
    pub tls: bool,
    text: Arc<ConnText>,
}

#[derive(Debug)]
struct ConnText {
    peer_ip: HeaderValue,
    /// `source.address` and `destination.address`, for filters.
    properties: Arc<Properties>,
}

impl ConnInfo {
    /// Describes a new connection.
    pub fn new(peer: SocketAddr, local: SocketAddr, tls: bool) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        let mut properties = Properties::new();
        properties.insert("source.address", peer.to_string());
        properties.insert("destination.address", local.to_string());
        let text = ConnText {
            peer_ip,
            properties: Arc::new(properties),
        };
        Self {
            peer,
            local,
            tls,
            text: Arc::new(text),
        }
    }

    /// The client's IP as a header value (for `x-forwarded-for`).
    pub fn peer_ip(&self) -> &HeaderValue {
        &self.text.peer_ip
    }

    /// The connection's properties for filters (`source.address` and
    /// `destination.address`, as `ip:port`).
    pub fn properties(&self) -> &Arc<Properties> {
        &self.text.properties
    }
}

/// Serves one request against the given configuration. Every error
/// becomes a response here, except a filter closing the stream, which
/// resets it ([`StreamReset`]).
///
/// # Errors
/// [`StreamReset`] when a filter called `proxy_close_stream`.
pub async fn handle(
    req: Request<RequestBody>,
    conn: ConnInfo,
    snapshot: Arc<Snapshot>,
) -> Result<Response<Body>, StreamReset> {
    let start = Instant::now();
    let method = req.method().clone();
    let version = req.version();
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
    let route_index = first_match(&snapshot.matchers, host, path);
    let route = route_index.map(|i| &snapshot.routes[i]);
    let mut sent_headers = None;
    let mut before = Vec::new();
    let mut reset = false;
    let response = match route {
        None => {
            snapshot_no_route(&snapshot);
            ProxyError::NoRoute.into_response()
        }
        Some(route) => {
            match forward(req, &conn, &snapshot, route, &mut sent_headers, &mut before).await {
                Ok(response) => response,
                Err(e) => {
                    reset = matches!(e, ProxyError::StreamClosed { .. });
                    if e.status().is_server_error() {
                        tracing::warn!(route = %route.name, error = %e, "request failed");
                    }
                    e.into_response()
                }
            }
        }
    };
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

fn snapshot_no_route(snapshot: &Snapshot) {
    snapshot
        .stats
        .global
        .no_route
        .fetch_add(1, Ordering::Relaxed);
}

async fn forward(
    req: Request<RequestBody>,
    conn: &ConnInfo,
    snapshot: &Snapshot,
    route: &Route,
    sent_headers: &mut Option<HeaderMap>,
    before: &mut Vec<Option<HeaderValue>>,
) -> Result<Response<Body>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    // Request smuggling: hyper refuses conflicting Content-Lengths and a
    // Transfer-Encoding that is not chunked (400). For Content-Length plus
    // chunked it does what RFC 9112 §6.3 requires: chunked wins, the
    // Content-Length is removed (so the upstream cannot frame it otherwise)
    // and the connection is closed after the response, so bytes smuggled
    // behind the body are never read as a request. HTTP/2 forbids
    // Transfer-Encoding outright.
    if parts.headers.len() > snapshot.limits.max_headers {
        return Err(ProxyError::TooManyHeaders {
            limit: snapshot.limits.max_headers,
        });
    }
    let limit = snapshot.limits.max_body_bytes;
    if body.size_hint().lower() > limit {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    strip_hop_by_hop(&mut parts.headers);
    // The authority of an absolute-form (or HTTP/2) request target wins over
    // `Host`, and becomes `Host` when there is none.
    let host_value = match parts.uri.authority() {
        Some(authority) => {
            let value = HeaderValue::from_str(authority.as_str()).ok();
            if let Some(v) = &value
                && !parts.headers.contains_key(header::HOST)
            {
                parts.headers.insert(header::HOST, v.clone());
            }
            value
        }
        None => parts.headers.get(header::HOST).cloned(),
    };
    add_forwarded(&mut parts.headers, conn.peer_ip(), conn.tls, host_value);
    let upstream = &route.upstream;
    // Origin form, as the client meant it; the upstream's prefix is added
    // after the filters (which see the client's path).
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let mut origin = http::uri::Parts::default();
        origin.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri =
            http::Uri::from_parts(origin).map_err(|_| ProxyError::BadRequest("request target"))?;
    }
    parts.version = Version::HTTP_11;
    if snapshot.access_log.wants_headers() {
        *before = snapshot.access_log.before(&parts.headers);
    }

    let request_eos = body.is_end_stream();
    let too_large = Arc::new(AtomicBool::new(false));
    let limited = LimitedBody::new(body, limit, too_large.clone());

    let mut run = None;
    let mut run_back = None;
    let upstream_body: Body = match &route.chain {
        None if request_eos => crate::body::empty(),
        None => limited.boxed_unsync(),
        Some(chain) => {
            let stream = stream_map::request_stream(&parts, conn, &chain.properties);
            let mut filter_run = chain.start(stream)?;
            if let Flow::Respond(local) = filter_run.headers(Side::Request, request_eos).await? {
                return Box::pin(encode_local(filter_run, *local)).await;
            }
            stream_map::apply_request(&filter_run.stream, &mut parts)?;
            if request_eos {
                run = Some(filter_run);
                crate::body::empty()
            } else {
                let (body, back) = FilteredBody::request(limited, filter_run);
                run_back = Some(back);
                body.boxed_unsync()
            }
        }
    };
    if !upstream.path_prefix.is_empty() {
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("{}{}", upstream.path_prefix, pq);
        parts.uri = uri
            .parse()
            .map_err(|_| ProxyError::BadRequest("request target"))?;
    }
    if snapshot.access_log.wants_headers() {
        *sent_headers = Some(parts.headers.clone());
    }

    let sent = upstream
        .send(Request::from_parts(parts, upstream_body))
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            // A filter's decision in the request body phase fails the body
            // on purpose (which is what failed the exchange); the body
            // handed the run back before failing.
            if let Some(mut back) = run_back
                && let Ok(mut filter_run) = back.try_recv()
                && let Some(verdict) = filter_run.take_verdict()
            {
                return Box::pin(apply_verdict(filter_run, verdict)).await;
            }
            if too_large.load(Ordering::Relaxed) {
                return Err(ProxyError::BodyTooLarge { limit });
            }
            return Err(e);
        }
    };
    if let Some(back) = run_back {
        // The request body handed the run back when it ended (or was dropped).
        run = back.await.ok();
        if let Some(mut filter_run) = run.take() {
            if let Some(verdict) = filter_run.take_verdict() {
                // The upstream answered before the body was cut short; the
                // filter's decision wins, as in Envoy.
                return Box::pin(apply_verdict(filter_run, verdict)).await;
            }
            run = Some(filter_run);
        }
    }
    // The upstream took the hop-by-hop headers off already.
    let (mut parts, body) = response.into_parts();
    let Some(mut filter_run) = run else {
        return Ok(Response::from_parts(parts, body));
    };
    stream_map::response_headers_into(&mut filter_run.stream, &parts);
    match filter_run
        .headers(Side::Response, body.is_end_stream())
        .await?
    {
        // The upstream's body is dropped unread; the filter's reply replaces it.
        Flow::Respond(local) => return Ok(stream_map::local_response(*local)),
        Flow::Continue => stream_map::apply_response(&filter_run.stream, &mut parts)?,
    }
    let body = if body.is_end_stream() {
        filter_run.finish();
        crate::body::empty()
    } else {
        FilteredBody::response(body, filter_run).boxed_unsync()
    };
    Ok(Response::from_parts(parts, body))
}

/// Answers with a decision a filter took in the request body phase.
async fn apply_verdict(
    run: Box<FilterRun>,
    verdict: Verdict,
) -> Result<Response<Body>, ProxyError> {
    match verdict {
        Verdict::Respond(local) => encode_local(run, *local).await,
        Verdict::Fail(e) => Err(e),
    }
}

/// A local response sent from a request phase goes back through the
/// filters' response callbacks (headers, then the body in one piece), as
/// Envoy runs its encoder chain on a local reply. A filter may edit it
/// there; a second local response from these callbacks replaces it as is.
async fn encode_local(
    mut run: Box<FilterRun>,
    local: LocalResponse,
) -> Result<Response<Body>, ProxyError> {
    let (mut parts, body) = stream_map::local_response_parts(local);
    let body = Bytes::from(body);
    stream_map::response_headers_into(&mut run.stream, &parts);
    let end_of_stream = body.is_empty();
    match run.headers(Side::Response, end_of_stream).await? {
        Flow::Respond(again) => return Ok(stream_map::local_response(*again)),
        Flow::Continue => stream_map::apply_response(&run.stream, &mut parts)?,
    }
    let body = if end_of_stream {
        body
    } else {
        match run.body(Side::Response, body, true)? {
            BodyStep::Forward(body) => body,
            BodyStep::Respond(again) => return Ok(stream_map::local_response(*again)),
        }
    };
    run.finish();
    if parts.headers.contains_key(header::CONTENT_LENGTH) {
        // The body callbacks may have changed the length.
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    Ok(Response::from_parts(parts, crate::body::full(body)))
}
