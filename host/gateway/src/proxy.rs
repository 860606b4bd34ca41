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
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, Version, header};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use wasmgate_abi::{Attributes, LocalResponse, properties::encode};

use crate::{
    access_log::Entry,
    body::{Body, RequestBody},
    chain::{BodyStep, FilterRun, Flow, Headed, Side, Verdict},
    config::{EscapedSlashes, UnderscorePolicy},
    error::{ProxyError, StreamReset},
    filtered_body::{FilteredBody, LimitedBody},
    headers::{
        Scan, add_forwarded, content_length, drop_underscored, is_only_chunked, own_framing,
        own_response_framing, scan, set_length, strip_hop_by_hop,
    },
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
    /// The protocol of the request being served (set by [`handle`];
    /// `request.protocol`).
    pub version: Version,
    /// When serving the request began (set by [`handle`]; `request.time`).
    pub started: Option<Instant>,
    text: Arc<ConnText>,
}

/// Connection ids (`connection.id`), process-wide as Envoy's.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
struct ConnText {
    peer_ip: HeaderValue,
    /// The connection as filters see it (`source.*`, `destination.*`,
    /// `connection.*`), computed when a filter reads it.
    attributes: Arc<ConnAttributes>,
}

/// A connection's attributes for filters; a [`wasmgate_abi::Attributes`]
/// layer of every stream on the connection, which encodes a value only
/// when a filter reads it.
#[derive(Debug)]
struct ConnAttributes {
    peer: SocketAddr,
    local: SocketAddr,
    id: u64,
    /// Set once the TLS handshake is done: (SNI, version).
    tls: OnceLock<(String, &'static str)>,
}

impl Attributes for ConnAttributes {
    fn attribute(&self, path: &str) -> Option<Vec<u8>> {
        let port = |a: &SocketAddr| encode::int(i64::from(a.port()));
        match path {
            "source.address" => Some(self.peer.to_string().into_bytes()),
            "source.port" => Some(port(&self.peer)),
            "destination.address" => Some(self.local.to_string().into_bytes()),
            "destination.port" => Some(port(&self.local)),
            "connection.id" | "connection_id" => Some(encode::uint(self.id)),
            // The listeners never ask for a client certificate.
            "connection.mtls" => Some(encode::bool(false)),
            "connection.requested_server_name" => Some(
                self.tls
                    .get()
                    .map(|(sni, _)| sni.as_bytes().to_vec())
                    .unwrap_or_default(),
            ),
            "connection.tls_version" => self.tls.get().map(|(_, v)| v.as_bytes().to_vec()),
            _ => None,
        }
    }
}

impl ConnInfo {
    /// Describes a new connection.
    pub fn new(peer: SocketAddr, local: SocketAddr, tls: bool) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        let attributes = ConnAttributes {
            peer,
            local,
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            tls: OnceLock::new(),
        };
        let text = ConnText {
            peer_ip,
            attributes: Arc::new(attributes),
        };
        Self {
            peer,
            local,
            tls,
            version: Version::HTTP_11,
            started: None,
            text: Arc::new(text),
        }
    }

    /// Records what the TLS handshake settled: the server name the client
    /// asked for (SNI, empty without) and the version (`TLSv1.2`, `TLSv1.3`).
    pub fn set_tls(&self, server_name: Option<&str>, version: &'static str) {
        let _ = self
            .text
            .attributes
            .tls
            .set((server_name.unwrap_or_default().to_string(), version));
    }

    /// The client's IP as a header value (for `x-forwarded-for`).
    pub fn peer_ip(&self) -> &HeaderValue {
        &self.text.peer_ip
    }

    /// The connection's attributes for filters (`source.*`,
    /// `destination.*`, `connection.*`).
    pub fn attributes(&self) -> Arc<dyn Attributes> {
        self.text.attributes.clone()
    }
}

/// `request.protocol` as Envoy names it.
pub fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

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
        None => first_match(&snapshot.matchers, host, path),
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
            let exchange = Exchange {
                conn: &conn,
                snapshot: &snapshot,
                route,
                body: body.clone(),
                grpc: &grpc,
            };
            match forward(req, exchange, &mut sent_headers, &mut before).await {
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

/// A method the gateway answers itself (405), never forwarding it.
fn refused_method(method: &http::Method) -> Option<&'static str> {
    match method.as_str() {
        "TRACE" => Some("TRACE"),
        "TRACK" => Some("TRACK"),
        "CONNECT" => Some("CONNECT"),
        _ => None,
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

/// What one request's trip through a route needs besides the request.
struct Exchange<'a> {
    conn: &'a ConnInfo,
    snapshot: &'a Snapshot,
    route: &'a Route,
    /// Present when the request has a body.
    body: Option<Arc<BodyWatch>>,
    /// Set by the request checks for a gRPC request.
    grpc: &'a AtomicBool,
}

fn snapshot_no_route(snapshot: &Snapshot) {
    snapshot
        .stats
        .global
        .no_route
        .fetch_add(1, Ordering::Relaxed);
}

/// Request checks: what the gateway refuses or answers itself before any
/// filter runs, and the request's headers made the proxy's own
/// (hop-by-hop out, the target's authority as `Host`, `x-forwarded-*` in).
/// Returns the answer, if the gateway gives it itself, and what the scan of
/// the fields found.
fn check_request(
    parts: &mut http::request::Parts,
    conn: &ConnInfo,
    snapshot: &Snapshot,
    grpc: &AtomicBool,
) -> Result<(Option<Response<Body>>, Scan), ProxyError> {
    let limits = &snapshot.limits;
    // One pass over the fields; lookups only for what it found.
    let found = scan(&parts.headers);
    grpc.store(found.grpc, Ordering::Relaxed);
    if parts.headers.len() > limits.max_headers {
        return Err(ProxyError::TooManyHeaders {
            limit: limits.max_headers,
        });
    }
    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host (the target's
    // authority stands in for it when there is one).
    match found.hosts {
        0 if parts.version == Version::HTTP_11 && parts.uri.authority().is_none() => {
            return Err(ProxyError::BadRequest("no Host"));
        }
        0 | 1 => {}
        _ => return Err(ProxyError::BadRequest("more than one Host")),
    }
    if found.transfer_encoding && !is_only_chunked(&parts.headers) {
        return Err(ProxyError::NotImplemented(
            "transfer coding other than chunked",
        ));
    }
    if found.underscore {
        match limits.headers_with_underscores {
            UnderscorePolicy::Allow => {}
            UnderscorePolicy::Drop => drop_underscored(&mut parts.headers),
            UnderscorePolicy::Reject => {
                return Err(ProxyError::BadRequest("header name with an underscore"));
            }
        }
    }
    if parts.method == http::Method::OPTIONS
        && let Some(answer) = max_forwards(&mut parts.headers)
    {
        return Ok((Some(answer), found));
    }
    if found.connection || found.other_hop_by_hop {
        strip_hop_by_hop(&mut parts.headers);
    }
    // RFC 9112 §3.2.2: the authority of an absolute-form (or HTTP/2)
    // target replaces `Host`; routing used it, so the filters and the
    // upstream see the same.
    let host_value = match parts.uri.authority() {
        Some(authority) => {
            let value = HeaderValue::from_str(authority.as_str())
                .map_err(|_| ProxyError::BadRequest("request target"))?;
            parts.headers.insert(header::HOST, value.clone());
            Some(value)
        }
        None => parts.headers.get(header::HOST).cloned(),
    };
    add_forwarded(
        &mut parts.headers,
        conn.peer_ip(),
        conn.tls,
        host_value,
        found.forwarded,
    );
    // Origin form, as the client meant it; the upstream's prefix is added
    // after the filters (which see the client's path).
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let mut origin = http::uri::Parts::default();
        origin.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri =
            http::Uri::from_parts(origin).map_err(|_| ProxyError::BadRequest("request target"))?;
    }
    parts.version = Version::HTTP_11;
    Ok((None, found))
}

/// `Max-Forwards` on an `OPTIONS` request (RFC 9110 §7.6.2): at 0 the
/// gateway is the final recipient and answers; above, it is decremented.
fn max_forwards(headers: &mut HeaderMap) -> Option<Response<Body>> {
    let value = headers.get(header::MAX_FORWARDS)?;
    let n: u64 = value.to_str().ok()?.trim().parse().ok()?;
    if n == 0 {
        let mut answer = Response::new(crate::body::empty());
        answer.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        return Some(answer);
    }
    headers.insert(header::MAX_FORWARDS, HeaderValue::from(n - 1));
    None
}

/// The request's body length the filters left as the client declared it:
/// `declared` when the headers still say exactly that.
fn kept_length(declared: Option<u64>, headers: &HeaderMap) -> Option<u64> {
    declared.filter(|&n| content_length(headers) == Ok(Some(n)))
}

async fn forward(
    req: Request<RequestBody>,
    exchange: Exchange<'_>,
    sent_headers: &mut Option<HeaderMap>,
    before: &mut Vec<Option<HeaderValue>>,
) -> Result<Response<Body>, ProxyError> {
    let Exchange {
        conn,
        snapshot,
        route,
        body: watch,
        grpc,
    } = exchange;
    let (mut parts, body) = req.into_parts();
    // Request smuggling: hyper refuses conflicting Content-Lengths and a
    // Transfer-Encoding that is not chunked (400). For Content-Length plus
    // chunked it does what RFC 9112 §6.3 requires: chunked wins, the
    // Content-Length is removed (so the upstream cannot frame it otherwise)
    // and the connection is closed after the response, so bytes smuggled
    // behind the body are never read as a request. HTTP/2 forbids
    // Transfer-Encoding outright.
    let limit = snapshot.limits.max_body_bytes;
    if body.size_hint().lower() > limit {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let found = match check_request(&mut parts, conn, snapshot, grpc)? {
        (Some(answer), _) => return Ok(answer),
        (None, found) => found,
    };
    let upstream = &route.upstream;
    if snapshot.access_log.wants_headers() {
        *before = snapshot.access_log.before(&parts.headers);
    }

    let request_eos = body.is_end_stream();
    // The body's length as the client framed it (a bodiless request with
    // `content-length: 0` keeps saying so).
    let declared = if request_eos {
        found.content_length.is_some().then_some(0)
    } else {
        body.size_hint().exact()
    };
    let watch = watch.unwrap_or_default();
    let mut limited = LimitedBody::new(body, limit, watch.clone());

    let mut run = None;
    let mut run_back = None;
    let mut length = declared;
    let upstream_body: Body = match &route.chain {
        None if request_eos => crate::body::empty(),
        None => limited.boxed_unsync(),
        Some(chain) => {
            let stream = stream_map::request_stream(&parts, conn, &chain.properties);
            let mut filter_run = chain.start(stream)?;
            let mut held = None;
            if chain.holds_body && !request_eos {
                // Boxed: only chains with a filter that sees the body
                // before the headers go on pay for this future.
                let read_error = |_| {
                    if watch.exceeded.load(Ordering::Relaxed) {
                        ProxyError::BodyTooLarge { limit }
                    } else {
                        ProxyError::BadRequest("request body")
                    }
                };
                let headed = Box::pin(filter_run.headers_holding_body(
                    Side::Request,
                    &mut limited,
                    read_error,
                ))
                .await?;
                match headed {
                    Headed::Respond(local) => {
                        return Box::pin(encode_local(filter_run, *local)).await;
                    }
                    Headed::Continue(body) => held = Some(body),
                }
            } else if let Flow::Respond(local) =
                filter_run.headers(Side::Request, request_eos).await?
            {
                return Box::pin(encode_local(filter_run, *local)).await;
            }
            stream_map::apply_request(&filter_run.stream, &mut parts)?;
            length = kept_length(declared, &parts.headers);
            match held {
                // Read whole while a filter held the headers.
                Some(held) if held.done => {
                    length = held.trailers.is_none().then_some(held.prefix.len() as u64);
                    run = Some(filter_run);
                    crate::body::complete(held.prefix, held.trailers)
                }
                _ if request_eos => {
                    run = Some(filter_run);
                    crate::body::empty()
                }
                held => {
                    let (mut body, back) = FilteredBody::request(limited, filter_run, length);
                    if let Some(held) = held {
                        body = body.with_prefix(held.prefix);
                    }
                    run_back = Some(back);
                    body.boxed_unsync()
                }
            }
        }
    };
    // Framing is the proxy's: whatever the client or a filter wrote, the
    // upstream gets the length of the body that is sent, or a chunked one.
    // Without filters the fields are those the checks scanned and stripped.
    if route.chain.is_some() {
        own_framing(&mut parts.headers, length);
    } else {
        set_length(&mut parts.headers, length, &found);
    }
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
            if watch.exceeded.load(Ordering::Relaxed) {
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
    // The length the upstream framed its body with (the response's
    // `Content-Length` is dropped on the way out; see `frame_response`).
    let declared = body.size_hint().exact();
    stream_map::response_headers_into(&mut filter_run.stream, &parts);
    let mut body = body;
    let response_eos = body.is_end_stream();
    let mut held = None;
    if filter_run.chain().holds_body && !response_eos {
        let read_error = |e: crate::body::BoxError| ProxyError::UpstreamFailed {
            upstream: upstream.name.clone(),
            reason: e.to_string(),
        };
        let headed =
            Box::pin(filter_run.headers_holding_body(Side::Response, &mut body, read_error))
                .await?;
        match headed {
            Headed::Respond(local) => return Ok(stream_map::local_response(*local)),
            Headed::Continue(body) => held = Some(body),
        }
    } else if let Flow::Respond(local) = filter_run.headers(Side::Response, response_eos).await? {
        // The upstream's body is dropped unread; the filter's reply replaces it.
        return Ok(stream_map::local_response(*local));
    }
    apply_response(&filter_run, &mut parts)?;
    let body = match held {
        Some(held) if held.done => {
            filter_run.finish();
            crate::body::complete(held.prefix, held.trailers)
        }
        _ if response_eos => {
            filter_run.finish();
            crate::body::empty()
        }
        held => {
            let length = kept_length(declared, &parts.headers);
            let mut body = FilteredBody::response(body, filter_run, length);
            if let Some(held) = held {
                body = body.with_prefix(held.prefix);
            }
            body.boxed_unsync()
        }
    };
    Ok(Response::from_parts(parts, body))
}

/// Writes the filters' response header edits back; a `:status` the
/// gateway will not send (1xx, invalid) is the filter's fault.
fn apply_response(run: &FilterRun, parts: &mut http::response::Parts) -> Result<(), ProxyError> {
    stream_map::apply_response(&run.stream, parts).map_err(|what| ProxyError::FilterInvalid {
        route: run.chain().route.clone(),
        what,
    })
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
        Flow::Continue => apply_response(&run, &mut parts)?,
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
    // Framed by the body's own size (the body callbacks may have changed it).
    Ok(Response::from_parts(parts, crate::body::full(body)))
}
