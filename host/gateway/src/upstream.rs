//! Upstreams: where routes send requests and filters send http calls.
//!
//! Each worker keeps its own connection pool per upstream in a thread-local
//! (workers are single-threaded, see the crate docs), so taking and
//! returning a connection is a queue pop/push with no lock. HTTP/1.1
//! connections are reused when idle (keep-alive); an HTTP/2 connection is
//! shared by all of the worker's requests to that upstream.
//!
//! Bodiless idempotent requests to plain-HTTP/1.1 upstreams take a lean
//! client that runs in the request's own task (`upstream/h1.rs`); the rest go
//! through hyper's client connections.
//!
//! Failures map to statuses in `error.rs`: connect (refused, DNS, TLS
//! verification, `connect_timeout`) is 502, no response headers within
//! `timeout` is 504.

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    hash::{BuildHasherDefault, Hasher},
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
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

mod h1;

use crate::{
    body::{Body, BoxError},
    config::{Config, UpstreamConfig, UpstreamProtocol},
    error::ProxyError,
    h1::response::declares_a_body_it_cannot_have,
    headers::{is_only_chunked, strip_hop_by_hop},
    metrics::UpstreamStats,
    tls::{ClientTls, client_config},
};

/// Most HTTP/1.1 connections (idle or busy) a worker keeps per upstream;
/// beyond that a connection is closed after its exchange.
const MAX_IDLE_PER_WORKER: usize = 256;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A configured upstream, shared by all workers (immutable).
pub struct Upstream {
    /// Unique per configuration load; keys the worker-local pools.
    id: u64,
    /// Name from the configuration.
    pub name: String,
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    host: String,
    port: u16,
    /// Default authority (used when the client sent none).
    pub authority: http::uri::Authority,
    /// Prepended to every path ("" for none).
    pub path_prefix: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    protocol: UpstreamProtocol,
    connect_timeout: Duration,
    /// Time allowed for the response headers.
    pub timeout: Duration,
    /// Most connections per worker.
    max_connections: usize,
    /// Counters for /metrics.
    pub stats: Arc<UpstreamStats>,
}

impl Upstream {
    /// `host:port` as configured (`upstream.address` for filters).
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The port connected to.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A connection ready to carry a request.
enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// One worker's connections to one upstream.
struct Pool {
    upstream: Weak<Upstream>,
    /// In the order they were last handed a request: the front one is the
    /// likeliest to have finished its exchange.
    h1: VecDeque<http1::SendRequest<Body>>,
    h2: Option<http2::SendRequest<Body>>,
    /// Idle connections of the lean client (`upstream/h1.rs`), most recent last.
    raw: Vec<h1::Conn>,
    /// Connections open (idle or busy), against `max_connections`.
    open: usize,
    /// Woken when a connection closes or a lean one comes back idle.
    freed: Arc<tokio::sync::Notify>,
}

/// One open connection, counted against its upstream's `max_connections`
/// on this worker until it is dropped (with the connection, or with
/// hyper's connection task).
#[derive(Debug)]
pub(crate) struct Slot {
    upstream: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = POOLS.try_with(|pools| {
            if let Ok(mut pools) = pools.try_borrow_mut()
                && let Some(pool) = pools.get_mut(&self.upstream)
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

/// Upstream ids are unique counters: they need no hashing.
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
    ///
    /// # Errors
    /// A message naming the key and the problem.
    pub fn build(
        name: &str,
        conf: &UpstreamConfig,
        config: &Config,
        stats: Arc<UpstreamStats>,
    ) -> Result<Upstream, String> {
        let key = format!("upstreams.{name}");
        let uri: Uri = conf.url.parse().map_err(|e| format!("{key}.url: {e}"))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(|| format!("{key}.url: no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{key}.url: no host"))?;
        let path_prefix = uri.path().trim_end_matches('/').to_string();
        let tls = if https {
            let t = conf.tls.clone().unwrap_or_default();
            let ca = t.ca.as_ref().map(|p| config.resolve(p));
            let cert = t.client_cert.as_ref().map(|p| config.resolve(p));
            let key_path = t.client_key.as_ref().map(|p| config.resolve(p));
            let client = client_config(ClientTls {
                ca: ca.as_deref(),
                client_cert: cert.as_deref().zip(key_path.as_deref()),
                protocol: conf.protocol,
            })
            .map_err(|e| format!("{key}.tls: {e}"))?;
            let sni = t.server_name.clone().unwrap_or_else(|| host.clone());
            let sni =
                ServerName::try_from(sni).map_err(|e| format!("{key}.tls.server_name: {e}"))?;
            Some((TlsConnector::from(client), sni))
        } else {
            None
        };
        Ok(Upstream {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: name.to_string(),
            scheme: if https {
                http::uri::Scheme::HTTPS
            } else {
                http::uri::Scheme::HTTP
            },
            host,
            port,
            authority,
            path_prefix,
            tls,
            protocol: conf.protocol,
            connect_timeout: conf.connect_timeout.get(),
            timeout: conf.timeout.get(),
            max_connections: conf.max_connections.max(1),
            stats,
        })
    }

    /// Whether this is `http://` to an address that is not loopback.
    pub fn is_cleartext_off_loopback(&self) -> bool {
        if self.tls.is_some() {
            return false;
        }
        match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => !ip.is_loopback(),
            Err(_) => self.host != "localhost",
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
        let lean = self.tls.is_none()
            && self.protocol != UpstreamProtocol::Http2
            && h1::eligible(&req)
            && crate::lean::enabled();
        let exchange = async {
            if lean {
                self.exchange_lean(req).await
            } else {
                let head_request = req.method() == http::Method::HEAD;
                let mut response = self.exchange(req).await?;
                self.refuse_unframeable(&response, head_request)?;
                strip_hop_by_hop(response.headers_mut());
                Ok(response.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()))
            }
        };
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
    ) -> Result<(), ProxyError> {
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
        Err(ProxyError::UpstreamFailed {
            upstream: self.name.clone(),
            reason: format!("invalid response: {reason}"),
        })
    }

    async fn exchange(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, ProxyError> {
        // A pooled connection may have been closed by the peer just now; if
        // the request was not written yet hyper gives it back and we retry
        // once on a fresh connection.
        let mut pooled = self.checkout();
        loop {
            let mut slot = None;
            if pooled.is_none() {
                match self.capacity(Self::checkout).await? {
                    Capacity::Pooled(sender) => pooled = Some(sender),
                    Capacity::Open(free) => slot = Some(free),
                }
            }
            let fresh = pooled.is_none();
            let sender = match (pooled.take(), slot) {
                (Some(s), _) => s,
                // Boxed: connecting (TCP, TLS, handshake) is a large future that
                // most requests, served from the pool, never run.
                (None, Some(slot)) => Box::pin(self.connect(slot)).await?,
                (None, None) => unreachable!("a request without a connection has a slot"),
            };
            let result = match sender {
                Sender::H1(mut s) => {
                    frame_h1_body(&mut req);
                    // Back in the pool once the response head says the
                    // connection can carry another exchange (it is busy
                    // until then anyway).
                    let sent = s.try_send_request(req).await;
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
                    _ => return Err(self.failed(&e)),
                },
            }
        }
    }

    /// A bodiless idempotent request on the lean client: a pooled
    /// connection the upstream closed meanwhile is retried once on a fresh
    /// one.
    async fn exchange_lean(
        self: &Arc<Self>,
        req: Request<Body>,
    ) -> Result<Response<Body>, ProxyError> {
        let (parts, _empty) = req.into_parts();
        let mut pooled = self.checkout_raw();
        loop {
            let slot = match pooled {
                Some(_) => None,
                None => match self.capacity(Self::checkout_raw).await? {
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
                (None, Some(slot)) => h1::Conn::new(Box::pin(self.connect_tcp()).await?, slot),
                (None, None) => unreachable!("a request without a connection has a slot"),
            };
            match h1::exchange(conn, &parts, self, reused).await {
                Ok(response) => return Ok(response),
                Err(h1::Failure::Stale) => {}
                Err(h1::Failure::Failed(reason)) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(ProxyError::UpstreamFailed {
                        upstream: self.name.clone(),
                        reason,
                    });
                }
            }
        }
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
    ) -> Result<Capacity<C>, ProxyError> {
        loop {
            let freed = POOLS.with_borrow_mut(|pools| {
                let pool = self.pool(pools);
                if pool.open < self.max_connections {
                    pool.open += 1;
                    return Ok(Slot { upstream: self.id });
                }
                Err(pool.freed.clone())
            });
            let freed = match freed {
                Ok(slot) => return Ok(Capacity::Open(slot)),
                Err(freed) => freed,
            };
            if let Some(conn) = checkout(self) {
                return Ok(Capacity::Pooled(conn));
            }
            self.stats.waited.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                () = freed.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
            if let Some(conn) = checkout(self) {
                return Ok(Capacity::Pooled(conn));
            }
        }
    }

    fn checkout_raw(self: &Arc<Self>) -> Option<h1::Conn> {
        POOLS.with_borrow_mut(|pools| {
            let raw = &mut pools.get_mut(&self.id)?.raw;
            while let Some(conn) = raw.pop() {
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
            if pool.raw.len() < MAX_IDLE_PER_WORKER {
                pool.raw.push(conn);
                pool.freed.notify_one();
            }
        });
    }

    /// A plain TCP connection (for the lean client), within `connect_timeout`.
    async fn connect_tcp(&self) -> Result<TcpStream, ProxyError> {
        let result = match tokio::time::timeout(self.connect_timeout, self.open_tcp()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no connection within {:?}", self.connect_timeout)),
        };
        self.connected(result)
    }

    fn failed(&self, e: &TrySendError<Request<Body>>) -> ProxyError {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        ProxyError::UpstreamFailed {
            upstream: self.name.clone(),
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
            // the pool; closed ones are dropped on the way.
            let mut i = 0;
            while let Some(s) = pool.h1.get(i) {
                if s.is_closed() {
                    pool.h1.remove(i);
                } else if s.is_ready() {
                    return pool.h1.remove(i).map(Sender::H1);
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
                Sender::H2(s) => pool.h2 = Some(s),
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

    /// This worker's pool for this upstream, created on first use.
    fn pool<'p>(self: &Arc<Self>, pools: &'p mut Pools) -> &'p mut Pool {
        if !pools.contains_key(&self.id) {
            // A new upstream (first use, or a reload): forget pools of
            // upstreams that no configuration uses any more.
            pools.retain(|_, p| p.upstream.strong_count() > 0);
        }
        pools.entry(self.id).or_insert_with(|| Pool {
            upstream: Arc::downgrade(self),
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
                tracing::warn!(upstream = %self.name, %reason, "upstream connect failed");
                Err(ProxyError::UpstreamConnect {
                    upstream: self.name.clone(),
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
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice())
                    || self.protocol == UpstreamProtocol::Http2;
                handshake(TokioIo::new(tls), h2, slot).await
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
        Ok(Sender::H1(sender))
    }
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
