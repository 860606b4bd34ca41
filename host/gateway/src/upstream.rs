//! Upstreams: where routes send requests and filters send http calls.
//!
//! An upstream has one endpoint (`url`) or several (`endpoints`). Each
//! [`Endpoint`] is one address with its own connections: every worker keeps
//! a pool per endpoint in a thread-local (workers are single-threaded, see
//! the crate docs), so taking and returning a connection is a queue pop/push
//! with no lock. HTTP/1.1 connections are reused when idle (keep-alive); an
//! HTTP/2 connection is shared by all of the worker's requests to that
//! endpoint.
//!
//! A `url` upstream without retries, health checks, outlier ejection or
//! DNS refresh sends straight to its endpoint.
//! The others go through `upstream/endpoints.rs`: an endpoint chosen by the
//! balancing policy (`balance.rs`) among the available ones (health:
//! `health.rs`), retries within a budget (`retry.rs`), hostnames
//! re-resolved (`dns.rs`).
//!
//! Bodiless idempotent requests to HTTP/1.1 upstreams, plain or over TLS,
//! take a lean client that runs in the request's own task
//! (`upstream/h1.rs`); the rest go through hyper's client connections. An
//! https upstream that picks h2 by ALPN (with `protocol: auto`) is seen so
//! on the first connection, which goes to hyper's HTTP/2 client; from then
//! on its requests all go through hyper.
//!
//! Failures map to statuses in `error.rs`: connect (refused, DNS, TLS
//! verification, `connect_timeout`) is 502, no response headers within
//! `timeout` is 504; a body that stalls for `read_timeout` afterwards is
//! cut (`read_timeout.rs`).

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    hash::{BuildHasherDefault, Hasher},
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::{
    body::Incoming,
    client::conn::{TrySendError, http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

mod balance;
mod dns;
mod endpoints;
mod h1;
mod health;
mod read_timeout;
mod retry;

pub use health::Health;
use read_timeout::ReadTimeout;

use crate::{
    body::{Body, BoxError},
    config::{Config, UpstreamConfig, UpstreamProtocol},
    error::ProxyError,
    h1::response::declares_a_body_it_cannot_have,
    headers::{is_only_chunked, strip_hop_by_hop},
    metrics::{EndpointStats, Stats, UpstreamStats},
    tls::{ClientTls, client_config},
};

/// Most HTTP/1.1 connections (idle or busy) a worker keeps per endpoint;
/// beyond that a connection is closed after its exchange.
const MAX_IDLE_PER_WORKER: usize = 256;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A configured upstream, shared by all workers.
pub struct Upstream {
    /// Name from the configuration.
    pub name: String,
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// The first endpoint's host and port (`upstream.address` for filters).
    host: String,
    port: u16,
    /// Default authority (used when the client sent none).
    pub authority: http::uri::Authority,
    /// Prepended to every path ("" for none).
    pub path_prefix: String,
    /// Time allowed for the response headers (all tries together).
    pub timeout: Duration,
    /// Where requests go.
    endpoints: Endpoints,
    /// Counters for /metrics.
    pub stats: Arc<UpstreamStats>,
}

/// An upstream's endpoints.
enum Endpoints {
    /// `url` with nothing to decide per request: every request goes straight to it (the
    /// common case pays for nothing else).
    One(Arc<Endpoint>),
    /// Chosen per request, with health, retries and DNS refresh.
    Balanced(Box<endpoints::Balanced>),
}

impl Upstream {
    /// `host:port` as configured (`upstream.address` for filters).
    pub fn address(&self) -> String {
        address(&self.host, self.port)
    }

    /// The port connected to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Each endpoint's address and health, for `/config`.
    pub fn endpoint_status(&self) -> Vec<EndpointStatus> {
        match &self.endpoints {
            Endpoints::One(endpoint) => vec![EndpointStatus {
                address: endpoint.address.clone(),
                hostname: None,
                healthy: true,
                ejected: false,
                active: None,
            }],
            Endpoints::Balanced(set) => set.status(),
        }
    }

    /// Whether the endpoint is one this upstream sends to now.
    fn serves_endpoint(&self, id: u64) -> bool {
        match &self.endpoints {
            Endpoints::One(endpoint) => endpoint.id == id,
            Endpoints::Balanced(set) => set.serves(id),
        }
    }

    /// Starts the background work the configuration asks for (active
    /// health checks, DNS refresh) once this upstream serves; it stops when
    /// the upstream is dropped.
    pub fn start_background(self: &Arc<Self>) {
        if let Endpoints::Balanced(set) = &self.endpoints {
            set.start_background(self);
        }
    }
}

/// One endpoint as `/config` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndpointStatus {
    /// `host:port` connected to.
    pub address: String,
    /// The configured hostname, for an address found by DNS refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Passing its active health checks (always, without checks).
    pub healthy: bool,
    /// Ejected for consecutive failures.
    pub ejected: bool,
    /// Requests waiting for their response headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<u64>,
}

fn address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One address of an upstream, with its connections (pooled per worker).
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// Unique per configuration load; keys the worker-local pools.
    id: u64,
    /// The upstream's name (for errors and logs).
    upstream: String,
    /// `host:port` connected to.
    address: String,
    /// The hostname this address was resolved from (DNS refresh).
    hostname: Option<String>,
    host: String,
    port: u16,
    /// Default authority (used when the client sent none).
    authority: http::uri::Authority,
    scheme: http::uri::Scheme,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    protocol: UpstreamProtocol,
    /// Chose h2 by ALPN: no more lean HTTP/1.1 connections to it.
    speaks_h2: SpeaksH2,
    connect_timeout: Duration,
    /// Longest wait for more of a response body (`read_timeout.rs`).
    read_timeout: Duration,
    /// Most connections per worker.
    max_connections: usize,
    /// The upstream's counters.
    stats: Arc<UpstreamStats>,
    /// This endpoint's counters and health, shared by every worker and kept
    /// across reloads (a one-endpoint upstream's are not used).
    state: Arc<EndpointStats>,
}

/// Whether an https endpoint (`protocol: auto`) was seen to choose h2 by
/// ALPN. Learned on a connection and never forgotten (a reload makes new
/// endpoints); a copy (DNS refresh) starts from what its original knew.
#[derive(Debug, Default)]
struct SpeaksH2(AtomicBool);

impl SpeaksH2 {
    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn learn(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Clone for SpeaksH2 {
    fn clone(&self) -> Self {
        SpeaksH2(AtomicBool::new(self.get()))
    }
}

/// What a new connection for the lean client turned out to be.
enum Opened {
    /// HTTP/1.1, plain or over TLS.
    Lean(h1::Conn),
    /// The upstream chose h2 by ALPN: a connection for hyper's client.
    H2(Sender),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("upstream", &self.upstream)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// How one try at an endpoint failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// No connection: nothing was sent.
    Connect,
    /// An HTTP/2 stream refused before the upstream processed it.
    Refused,
    /// The exchange broke before the response headers.
    Reset,
    /// No response headers in time.
    Timeout,
    /// A response the gateway must not pass on.
    Invalid,
}

/// A failed try: the error to answer with, what kind of failure it was,
/// and the request when it was never sent (so it may go elsewhere).
#[derive(Debug)]
pub(crate) struct Failed {
    error: ProxyError,
    kind: FailureKind,
    request: Option<Request<Body>>,
}

impl Failed {
    fn new(error: ProxyError, kind: FailureKind, request: Option<Request<Body>>) -> Box<Self> {
        Box::new(Failed {
            error,
            kind,
            request,
        })
    }
}

/// A connection ready to carry a request.
enum Sender {
    H1(H1Sender),
    H2(http2::SendRequest<Body>),
}

/// One of hyper's HTTP/1.1 client connections.
struct H1Sender {
    send: http1::SendRequest<Body>,
    /// Over TLS: whether anything arrived while idle. hyper's connection
    /// task reads while idle and errors on late plaintext, but rustls keeps
    /// a partial record to itself, and its rest would be read as the next
    /// request's response; so would a partial record still in the socket,
    /// which that task reads only when it next runs, after this request
    /// was handed to it.
    records: Option<h1::RecordWatch>,
}

impl H1Sender {
    /// Ready for a request, with nothing half-arrived.
    fn is_clean_and_ready(&self) -> bool {
        self.send.is_ready() && self.records.as_ref().is_none_or(h1::RecordWatch::is_clean)
    }
}

/// One worker's connections to one endpoint.
struct Pool {
    endpoint: Weak<Endpoint>,
    /// In the order they were last handed a request: the front one is the
    /// likeliest to have finished its exchange.
    h1: VecDeque<H1Sender>,
    h2: Option<http2::SendRequest<Body>>,
    /// Idle connections of the lean client (`upstream/h1.rs`), most recent last.
    raw: Vec<h1::Conn>,
    /// Connections open (idle or busy), against `max_connections`.
    open: usize,
    /// Woken when a connection closes or a lean one comes back idle.
    freed: Arc<tokio::sync::Notify>,
}

/// One open connection, counted against its endpoint's `max_connections`
/// on this worker until it is dropped (with the connection, or with
/// hyper's connection task).
#[derive(Debug)]
pub(crate) struct Slot {
    endpoint: u64,
}

impl Slot {
    /// A slot counted in no pool (health checks' own connections).
    fn detached() -> Slot {
        Slot { endpoint: 0 }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = POOLS.try_with(|pools| {
            if let Ok(mut pools) = pools.try_borrow_mut()
                && let Some(pool) = pools.get_mut(&self.endpoint)
            {
                pool.open = pool.open.saturating_sub(1);
                pool.freed.notify_one();
            }
        });
    }
}

/// What a request waiting for capacity gets.
enum Capacity<C> {
    /// A pooled connection came free.
    Pooled(C),
    /// Room to open a new one.
    Open(Slot),
}

/// Endpoint ids are unique counters: they need no hashing.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

type Pools = HashMap<u64, Pool, BuildHasherDefault<IdHasher>>;

thread_local! {
    static POOLS: RefCell<Pools> = RefCell::new(Pools::default());
}

impl Upstream {
    /// Prepares an upstream from its configuration (reads TLS files).
    /// `stats` keeps the endpoints' health across reloads.
    ///
    /// # Errors
    /// A message naming the key and the problem.
    pub fn build(
        name: &str,
        conf: &UpstreamConfig,
        config: &Config,
        stats: &Arc<Stats>,
    ) -> Result<Upstream, String> {
        let key = format!("upstreams.{name}");
        let upstream_stats = stats.upstream(name);
        // One `url` and nothing to decide per request: requests go straight
        // to it.
        let straight = conf.url.is_some()
            && conf.retries.is_none()
            && conf.health_check.is_none()
            && conf.outlier.is_none()
            && conf.dns_refresh.is_none();
        let mut tls_connector = None;
        let mut endpoints = Vec::new();
        let mut first = None;
        for (at, url) in conf.endpoint_urls() {
            let uri: Uri = url.parse().map_err(|e| format!("{key}.{at}: {e}"))?;
            let https = uri.scheme_str() == Some("https");
            let host = uri.host().ok_or_else(|| format!("{key}.{at}: no host"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let authority = uri
                .authority()
                .cloned()
                .ok_or_else(|| format!("{key}.{at}: no host"))?;
            let tls = if https {
                let t = conf.tls.clone().unwrap_or_default();
                if tls_connector.is_none() {
                    let ca = t.ca.as_ref().map(|p| config.resolve(p));
                    let cert = t.client_cert.as_ref().map(|p| config.resolve(p));
                    let key_path = t.client_key.as_ref().map(|p| config.resolve(p));
                    let client = client_config(ClientTls {
                        ca: ca.as_deref(),
                        client_cert: cert.as_deref().zip(key_path.as_deref()),
                        protocol: conf.protocol,
                    })
                    .map_err(|e| format!("{key}.tls: {e}"))?;
                    tls_connector = Some(TlsConnector::from(client));
                }
                let sni = t.server_name.clone().unwrap_or_else(|| host.clone());
                let sni =
                    ServerName::try_from(sni).map_err(|e| format!("{key}.tls.server_name: {e}"))?;
                tls_connector.clone().map(|c| (c, sni))
            } else {
                None
            };
            let address = address(&host, port);
            let state = if straight {
                Arc::default()
            } else {
                stats.endpoint(name, &address)
            };
            if first.is_none() {
                first = Some((uri.path().trim_end_matches('/').to_string(), https));
            }
            endpoints.push(Endpoint {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                upstream: name.to_string(),
                address,
                hostname: None,
                host,
                port,
                authority,
                scheme: if https {
                    http::uri::Scheme::HTTPS
                } else {
                    http::uri::Scheme::HTTP
                },
                tls,
                protocol: conf.protocol,
                speaks_h2: SpeaksH2::default(),
                connect_timeout: conf.connect_timeout.get(),
                read_timeout: conf.read_timeout.get(),
                max_connections: conf.max_connections.max(1),
                stats: upstream_stats.clone(),
                state,
            });
        }
        let Some((path_prefix, _)) = first else {
            return Err(format!("{key}: no url and no endpoints"));
        };
        let head = &endpoints[0];
        let (scheme, host, port, authority) = (
            head.scheme.clone(),
            head.host.clone(),
            head.port,
            head.authority.clone(),
        );
        let endpoints = if straight {
            Endpoints::One(Arc::new(endpoints.remove(0)))
        } else {
            Endpoints::Balanced(Box::new(endpoints::Balanced::new(
                name,
                conf,
                endpoints.into_iter().map(Arc::new).collect(),
                stats,
            )))
        };
        Ok(Upstream {
            name: name.to_string(),
            scheme,
            host,
            port,
            authority,
            path_prefix,
            timeout: conf.timeout.get(),
            endpoints,
            stats: upstream_stats,
        })
    }

    /// Whether this is `http://` to an address that is not loopback.
    pub fn is_cleartext_off_loopback(&self) -> bool {
        let off_loopback = |e: &Endpoint| {
            e.tls.is_none()
                && match e.host.parse::<std::net::IpAddr>() {
                    Ok(ip) => !ip.is_loopback(),
                    Err(_) => e.host != "localhost",
                }
        };
        match &self.endpoints {
            Endpoints::One(endpoint) => off_loopback(endpoint),
            Endpoints::Balanced(set) => set.current().iter().any(|e| off_loopback(e)),
        }
    }

    /// Sends a request (URI: origin form; the `Host` header set) and waits
    /// for the response headers. The body streams afterwards. The response
    /// comes without its hop-by-hop headers (RFC 9110 §7.6.1).
    ///
    /// # Errors
    /// [`ProxyError::UpstreamConnect`], [`ProxyError::UpstreamTimeout`] or
    /// [`ProxyError::UpstreamFailed`].
    pub async fn send(self: &Arc<Self>, req: Request<Body>) -> Result<Response<Body>, ProxyError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        // Pinned where it is made: the exchange's future (the largest of the
        // request's) is not copied again into the `Timeout`.
        let exchange = std::pin::pin!(async {
            match &self.endpoints {
                // `endpoint.send` written out: one nested future less to
                // move on the commonest path (callgrind: ~1 K instructions).
                Endpoints::One(endpoint) => {
                    let result = if endpoint.takes_lean(&req) {
                        endpoint.exchange_lean(req).await
                    } else {
                        let head_request = req.method() == http::Method::HEAD;
                        match endpoint.exchange(req).await {
                            Ok(response) => endpoint.finish(response, head_request),
                            Err(failed) => Err(failed),
                        }
                    };
                    result.map_err(|f| f.error)
                }
                // Boxed: the one-endpoint path keeps its small future.
                Endpoints::Balanced(set) => Box::pin(set.send(req)).await,
            }
        });
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(ProxyError::UpstreamTimeout {
                    upstream: self.name.clone(),
                    timeout: self.timeout,
                })
            }
        }
    }
}

impl Endpoint {
    /// One try: sends the request to this endpoint and waits for the
    /// response headers (without a time limit: the caller sets it).
    async fn send(self: &Arc<Self>, req: Request<Body>) -> Result<Response<Body>, Box<Failed>> {
        if self.takes_lean(&req) {
            self.exchange_lean(req).await
        } else {
            self.send_hyper(req).await
        }
    }

    /// One try through hyper's client.
    async fn send_hyper(
        self: &Arc<Self>,
        req: Request<Body>,
    ) -> Result<Response<Body>, Box<Failed>> {
        let head_request = req.method() == http::Method::HEAD;
        let response = self.exchange(req).await?;
        self.finish(response, head_request)
    }

    /// Whether a request goes through the lean HTTP/1.1 client: not to an
    /// HTTP/2 upstream (configured, or chosen by ALPN).
    fn takes_lean(&self, req: &Request<Body>) -> bool {
        self.protocol != UpstreamProtocol::Http2
            && !self.speaks_h2.get()
            && h1::eligible(req)
            && crate::lean::enabled()
    }

    /// A response from hyper's client, checked and without its hop-by-hop
    /// headers.
    fn finish(
        self: &Arc<Self>,
        mut response: Response<Incoming>,
        head_request: bool,
    ) -> Result<Response<Body>, Box<Failed>> {
        self.refuse_unframeable(&response, head_request)?;
        strip_hop_by_hop(response.headers_mut());
        Ok(response.map(|b| {
            let body = b.map_err(|e| -> BoxError { Box::new(e) });
            ReadTimeout::new(body, self.clone()).boxed_unsync()
        }))
    }

    /// The error for a try that timed out.
    fn timed_out(&self, timeout: Duration) -> Box<Failed> {
        self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
        Failed::new(
            ProxyError::UpstreamTimeout {
                upstream: self.upstream.clone(),
                timeout,
            },
            FailureKind::Timeout,
            None,
        )
    }

    /// A response the gateway must not pass on: a `101` (no request asks
    /// for an upgrade: `Upgrade` is hop-by-hop and never forwarded, so a
    /// switch would smuggle a raw connection), or a transfer coding other
    /// than `chunked` on a response with a body (it would be lost once
    /// hyper decodes the chunks). The lean client refuses the same while
    /// parsing (`upstream/h1.rs`).
    fn refuse_unframeable(
        &self,
        response: &Response<Incoming>,
        head_request: bool,
    ) -> Result<(), Box<Failed>> {
        let status = response.status();
        let bodiless = head_request
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED;
        let reason = if status == http::StatusCode::SWITCHING_PROTOCOLS {
            "protocol switch (101) to a request that asked for none"
        } else if !bodiless
            && response
                .headers()
                .contains_key(http::header::TRANSFER_ENCODING)
            && !is_only_chunked(response.headers())
        {
            "transfer coding other than chunked"
        } else {
            return Ok(());
        };
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        Err(Failed::new(
            ProxyError::UpstreamFailed {
                upstream: self.upstream.clone(),
                reason: format!("invalid response: {reason}"),
            },
            FailureKind::Invalid,
            None,
        ))
    }

    async fn exchange(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, Box<Failed>> {
        // A pooled connection may have been closed by the peer just now; if
        // the request was not written yet hyper gives it back and we retry
        // once on a fresh connection.
        let mut pooled = self.checkout();
        loop {
            let mut slot = None;
            if pooled.is_none() {
                match self.capacity(Self::checkout).await {
                    Capacity::Pooled(sender) => pooled = Some(sender),
                    Capacity::Open(free) => slot = Some(free),
                }
            }
            let fresh = pooled.is_none();
            let sender = match (pooled.take(), slot) {
                (Some(s), _) => s,
                // Boxed: connecting (TCP, TLS, handshake) is a large future that
                // most requests, served from the pool, never run.
                (None, Some(slot)) => match Box::pin(self.connect(slot)).await {
                    Ok(sender) => sender,
                    Err(e) => return Err(Failed::new(e, FailureKind::Connect, Some(req))),
                },
                (None, None) => unreachable!("a request without a connection has a slot"),
            };
            let result = match sender {
                Sender::H1(mut s) => {
                    frame_h1_body(&mut req);
                    // Back in the pool once the response head says the
                    // connection can carry another exchange (it is busy
                    // until then anyway).
                    let sent = s.send.try_send_request(req).await;
                    if let Ok(response) = &sent
                        && !declares_a_body_it_cannot_have(response.status(), response.headers())
                    {
                        self.checkin(Sender::H1(s));
                    }
                    sent
                }
                Sender::H2(mut s) => {
                    *req.uri_mut() = self.absolute_uri(&req);
                    let sent = s.try_send_request(req);
                    self.checkin(Sender::H2(s));
                    sent.await
                }
            };
            match result {
                Ok(response) => return Ok(response),
                Err(mut e) => match e.take_message() {
                    Some(back) if !fresh => req = back,
                    // Never written: it may go elsewhere.
                    Some(back) => {
                        return Err(Failed::new(
                            self.failed(&e),
                            FailureKind::Connect,
                            Some(back),
                        ));
                    }
                    None if is_refused_stream(e.error()) => {
                        return Err(Failed::new(self.failed(&e), FailureKind::Refused, None));
                    }
                    None => return Err(Failed::new(self.failed(&e), FailureKind::Reset, None)),
                },
            }
        }
    }

    /// A bodiless idempotent request on the lean client: a pooled
    /// connection the upstream closed meanwhile is retried once on a fresh
    /// one. A new TLS connection on which the upstream chose h2 goes to
    /// hyper's client, and the request with it.
    async fn exchange_lean(
        self: &Arc<Self>,
        req: Request<Body>,
    ) -> Result<Response<Body>, Box<Failed>> {
        let (parts, _empty) = req.into_parts();
        let mut pooled = self.checkout_raw();
        // The loop ends only for an upstream that chose h2; awaiting
        // hyper's client after it (not in a match arm, where the match's
        // temporaries would stay alive across the await) keeps this future
        // small (a larger one costs a copy per request where it is boxed).
        let request = loop {
            let slot = match pooled {
                Some(_) => None,
                None => match self.capacity(Self::checkout_raw).await {
                    Capacity::Pooled(conn) => {
                        pooled = Some(conn);
                        None
                    }
                    Capacity::Open(slot) => Some(slot),
                },
            };
            let reused = pooled.is_some();
            let conn = match (pooled.take(), slot) {
                (Some(conn), _) => conn,
                (None, Some(slot)) => match Box::pin(self.connect_lean(slot)).await {
                    Ok(Opened::Lean(conn)) => conn,
                    Ok(Opened::H2(sender)) => {
                        self.checkin(sender);
                        break Request::from_parts(parts, crate::body::empty());
                    }
                    Err(e) => {
                        let request = Request::from_parts(parts, crate::body::empty());
                        return Err(Failed::new(e, FailureKind::Connect, Some(request)));
                    }
                },
                (None, None) => unreachable!("a request without a connection has a slot"),
            };
            match h1::exchange(conn, &parts, self, reused).await {
                Ok(response) => return Ok(response),
                Err(h1::Failure::Stale) => {}
                Err(h1::Failure::Failed(reason)) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    let error = ProxyError::UpstreamFailed {
                        upstream: self.upstream.clone(),
                        reason,
                    };
                    return Err(Failed::new(error, FailureKind::Reset, None));
                }
            }
        };
        Box::pin(self.send_hyper(request)).await
    }

    /// The most recently used idle connection that is still clean
    /// ([`h1::Conn::is_clean`]); unclean ones are closed on the way.
    /// Waits until this worker may open another connection to the
    /// upstream, or `checkout` finds a pooled one come free. Slots are
    /// counted per worker; a waiter is woken when a connection closes or a
    /// lean one is checked in, and looks again every few milliseconds for
    /// hyper's connections, which come free without telling.
    async fn capacity<C>(
        self: &Arc<Self>,
        checkout: impl Fn(&Arc<Self>) -> Option<C>,
    ) -> Capacity<C> {
        loop {
            let freed = POOLS.with_borrow_mut(|pools| {
                let pool = self.pool(pools);
                if pool.open < self.max_connections {
                    pool.open += 1;
                    return Ok(Slot { endpoint: self.id });
                }
                Err(pool.freed.clone())
            });
            let freed = match freed {
                Ok(slot) => return Capacity::Open(slot),
                Err(freed) => freed,
            };
            if let Some(conn) = checkout(self) {
                return Capacity::Pooled(conn);
            }
            self.stats.waited.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                () = freed.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
            if let Some(conn) = checkout(self) {
                return Capacity::Pooled(conn);
            }
        }
    }

    fn checkout_raw(self: &Arc<Self>) -> Option<h1::Conn> {
        POOLS.with_borrow_mut(|pools| {
            let raw = &mut pools.get_mut(&self.id)?.raw;
            while let Some(mut conn) = raw.pop() {
                if conn.is_clean() {
                    return Some(conn);
                }
                self.stats.discarded.fetch_add(1, Ordering::Relaxed);
            }
            None
        })
    }

    /// Pools a lean-client connection whose exchange ended cleanly.
    fn checkin_raw(self: &Arc<Self>, conn: h1::Conn) {
        let _ = POOLS.try_with(|pools| {
            let Ok(mut pools) = pools.try_borrow_mut() else {
                return;
            };
            let pool = self.pool(&mut pools);
            if pool.raw.len() < MAX_IDLE_PER_WORKER && !self.speaks_h2.get() {
                pool.raw.push(conn);
                pool.freed.notify_one();
            }
        });
    }

    /// A connection for the lean client (TCP, then TLS for https: the
    /// same verified configuration, name and ALPN offer as hyper's
    /// connections), within `connect_timeout`.
    async fn connect_lean(&self, slot: Slot) -> Result<Opened, ProxyError> {
        let open = async {
            let tcp = self.open_tcp().await?;
            let Some((connector, name)) = &self.tls else {
                return Ok(Opened::Lean(h1::Conn::new(h1::Stream::Plain(tcp), slot)));
            };
            let tls = connector
                .connect(name.clone(), h1::Tracked::new(tcp))
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            if tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice()) {
                self.speaks_h2.learn();
                return handshake(TokioIo::new(tls), true, slot)
                    .await
                    .map(Opened::H2);
            }
            let stream = h1::Stream::Tls(Box::new(tls));
            Ok(Opened::Lean(h1::Conn::new(stream, slot)))
        };
        let result = match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(r) => r,
            Err(_) => Err(format!("no connection within {:?}", self.connect_timeout)),
        };
        self.connected(result)
    }

    fn failed(&self, e: &TrySendError<Request<Body>>) -> ProxyError {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        ProxyError::UpstreamFailed {
            upstream: self.upstream.clone(),
            reason: error_chain(e.error()),
        }
    }

    /// HTTP/2 needs scheme and authority in the URI (they become
    /// `:scheme`/`:authority`); the client's Host is kept as authority.
    fn absolute_uri(&self, req: &Request<Body>) -> Uri {
        let authority = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
            .unwrap_or_else(|| self.authority.clone());
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        Uri::from_parts(parts).unwrap_or_else(|_| req.uri().clone())
    }

    /// Takes a ready connection from this worker's pool, if any.
    fn checkout(self: &Arc<Self>) -> Option<Sender> {
        POOLS.with_borrow_mut(|pools| {
            let pool = pools.get_mut(&self.id)?;
            if let Some(h2) = &pool.h2 {
                if !h2.is_closed() {
                    return Some(Sender::H2(h2.clone()));
                }
                pool.h2 = None;
            }
            // Busy connections (a response body still streaming) stay in
            // the pool; closed ones, and idle TLS ones holding part of a
            // late record or with bytes waiting in the socket, are dropped
            // on the way.
            let mut i = 0;
            while let Some(s) = pool.h1.get(i) {
                if s.send.is_closed() {
                    pool.h1.remove(i);
                } else if s.is_clean_and_ready() {
                    return pool.h1.remove(i).map(Sender::H1);
                } else if s.send.is_ready() {
                    pool.h1.remove(i);
                    self.stats.discarded.fetch_add(1, Ordering::Relaxed);
                } else {
                    i += 1;
                }
            }
            None
        })
    }

    /// Returns a connection to the pool right after its request was handed
    /// over; it becomes ready again once the response has been read.
    fn checkin(self: &Arc<Self>, sender: Sender) {
        POOLS.with_borrow_mut(|pools| {
            let pool = self.pool(pools);
            match sender {
                Sender::H1(s) if pool.h1.len() < MAX_IDLE_PER_WORKER => pool.h1.push_back(s),
                Sender::H1(_) => {}
                Sender::H2(s) => {
                    // Once an endpoint has chosen h2, its requests share that
                    // connection: HTTP/1.1 ones (lean or hyper's) would only
                    // hold their slots. A busy one finishes its response first.
                    pool.raw.clear();
                    pool.h1.clear();
                    pool.h2 = Some(s);
                }
            }
        })
    }

    /// A TCP connection to the upstream, Nagle off.
    async fn open_tcp(&self) -> Result<TcpStream, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("{}:{}: {e}", self.host, self.port))?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// This worker's pool for this endpoint, created on first use.
    fn pool<'p>(self: &Arc<Self>, pools: &'p mut Pools) -> &'p mut Pool {
        if !pools.contains_key(&self.id) {
            // A new endpoint (first use, a reload, a DNS change): forget
            // pools of endpoints that no configuration uses any more.
            pools.retain(|_, p| p.endpoint.strong_count() > 0);
        }
        pools.entry(self.id).or_insert_with(|| Pool {
            endpoint: Arc::downgrade(self),
            h1: VecDeque::new(),
            h2: None,
            raw: Vec::new(),
            open: 0,
            freed: Arc::default(),
        })
    }

    /// Opens a connection (TCP, then TLS for https) and does the HTTP
    /// handshake, all within `connect_timeout`.
    async fn connect(&self, slot: Slot) -> Result<Sender, ProxyError> {
        let connect = self.connect_inner(slot);
        let result = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(format!("no connection within {:?}", self.connect_timeout)),
        };
        self.connected(result)
    }

    /// Counts a connection attempt and turns its failure into a 502.
    fn connected<T>(&self, result: Result<T, String>) -> Result<T, ProxyError> {
        match result {
            Ok(conn) => {
                self.stats.connections.fetch_add(1, Ordering::Relaxed);
                Ok(conn)
            }
            Err(reason) => {
                self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(upstream = %self.upstream, %reason, "upstream connect failed");
                Err(ProxyError::UpstreamConnect {
                    upstream: self.upstream.clone(),
                    reason,
                })
            }
        }
    }

    async fn connect_inner(&self, slot: Slot) -> Result<Sender, String> {
        let tcp = self.open_tcp().await?;
        match &self.tls {
            None => {
                let h2 = self.protocol == UpstreamProtocol::Http2;
                handshake(TokioIo::new(tcp), h2, slot).await
            }
            Some((connector, name)) => {
                let (tracked, records) = h1::Tracked::watched(tcp);
                let tls = connector
                    .connect(name.clone(), tracked)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                let alpn_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                if alpn_h2 {
                    self.speaks_h2.learn();
                }
                let h2 = alpn_h2 || self.protocol == UpstreamProtocol::Http2;
                let sender = handshake(TokioIo::new(tls), h2, slot).await?;
                Ok(match sender {
                    Sender::H1(s) => Sender::H1(H1Sender {
                        records: Some(records),
                        ..s
                    }),
                    h2 => h2,
                })
            }
        }
    }
}

/// A request body's framing on HTTP/1.1, from the body itself: its exact
/// size as `content-length`, or chunked when unknown, whatever the method
/// (hyper would send a GET's body of unknown size as none).
fn frame_h1_body(req: &mut Request<Body>) {
    use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    use http_body::Body as _;
    if req.body().is_end_stream() || req.headers().contains_key(CONTENT_LENGTH) {
        return;
    }
    let value = match req.body().size_hint().exact() {
        Some(n) => (CONTENT_LENGTH, http::HeaderValue::from(n)),
        None => (TRANSFER_ENCODING, http::HeaderValue::from_static("chunked")),
    };
    req.headers_mut().insert(value.0, value.1);
}

/// The HTTP handshake on a new connection; its task holds `slot` while the
/// connection lives.
async fn handshake<T>(io: T, h2: bool, slot: Slot) -> Result<Sender, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if h2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
            }
        });
        Ok(Sender::H1(H1Sender {
            send: sender,
            records: None,
        }))
    }
}

/// Whether an HTTP/2 stream was refused before the upstream processed it
/// (`REFUSED_STREAM`, RFC 9113 §8.7): safe to send again.
fn is_refused_stream(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = cause.source();
    }
    false
}

/// An error and its causes on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
