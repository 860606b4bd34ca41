//! Accepting and serving client connections: HTTP/1.1 and HTTP/2 (h2c by
//! prior knowledge, or over TLS with ALPN `h2`/`http/1.1`), with the
//! limits from the configuration applied to every connection. A plain-TCP
//! connection, or a TLS one that did not choose `h2` by ALPN, starts on the
//! lean HTTP/1.1 path (`listener/h1.rs`), which hands it to hyper at the
//! first request it does not serve itself.

use std::{sync::Arc, time::Duration};

use http::Request;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{
        conn::auto,
        graceful::{GracefulShutdown, Watcher},
    },
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

mod h1;

pub(crate) use h1::ReadReady;

use crate::{
    body::RequestBody,
    config::LimitsConfig,
    proxy::{self, ConnInfo},
    shared::Shared,
    watchdog::{Activity, CountedIo, Expired, watch},
};

/// A listener ready to accept on one worker.
pub struct Listener {
    /// The socket (shared by all workers through `try_clone`).
    pub socket: TcpListener,
    /// Present for HTTPS listeners.
    pub tls: Option<TlsAcceptor>,
}

/// The HTTP server settings for client connections.
pub fn server_builder(limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header-read and idle timeouts are the watchdog's (watchdog.rs),
    // which costs no timer per request.
    builder
        .http1()
        .keep_alive(true)
        // A client may shut its side after the request and still read the answer.
        .half_close(true)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams);
    builder
}

/// Accepts until `stop` fires; each connection is served on this worker.
pub async fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let local = match listener.socket.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.socket.accept() => accepted,
            _ = stop.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off a little.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let info = ConnInfo::new(peer, local, listener.tls.is_some());
        let conn = serve(
            tcp,
            listener.tls.clone(),
            info,
            shared.clone(),
            builder.clone(),
            graceful.watcher(),
            stop.clone(),
        );
        tokio::spawn(conn);
    }
}

async fn serve(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    info: ConnInfo,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let peer = info.peer;
    let handshake = info.clone();
    let activity = Activity::new();
    let (idle, header_read, max_headers, max_head_bytes) = {
        let limits = &shared.snapshot.load().limits;
        // A TLS handshake is part of reading the request head.
        (
            limits.idle_timeout.get(),
            limits.header_read_timeout.get(),
            limits.max_headers,
            limits.max_header_bytes,
        )
    };
    // One request, whichever server path read it. The lean path awaits
    // this future directly (it is several KB: no wrapper to move it into).
    let call = move |req: Request<RequestBody>| {
        proxy::handle(req, info.clone(), shared.snapshot.load_full())
    };
    // hyper serves the connection (or the rest of it).
    // After requests served as HTTP/1.1, the connection stays HTTP/1.1:
    // an HTTP/2 preface midway is a malformed request, not a new protocol.
    let hyper_serves = |io: Box<dyn Io>, http1_only: bool| {
        let (in_flight, call) = (activity.clone(), call.clone());
        // Boxed: hyper spawns each HTTP/2 stream's future as a task, and
        // tokio moves an unboxed future of a few KB into the task several
        // times (it boxes only above 16 KB itself): one allocation is
        // cheaper than those copies (callgrind).
        let service = service_fn(move |req: Request<Incoming>| {
            Box::pin(counted(
                in_flight.clone(),
                call(req.map(RequestBody::Incoming)),
            ))
        });
        let io = TokioIo::new(io);
        let connection = if http1_only {
            builder
                .as_ref()
                .clone()
                .http1_only()
                .serve_connection(io, service)
                .into_owned()
        } else {
            builder.serve_connection(io, service).into_owned()
        };
        watcher.watch(connection)
    };
    let served = async {
        match tls {
            None if !crate::lean::enabled() => {
                hyper_serves(Box::new(CountedIo::new(tcp, activity.clone())), false).await
            }
            None => {
                // The lean HTTP/1.1 path first; hyper takes over at the
                // first request it does not serve (h1.rs). Inline, not
                // through `lean_first`: a plain connection's future stays
                // as small as it was (1,000 idle connections, issue 16).
                let mut io = CountedIo::new(tcp, activity.clone());
                let limits = (max_headers, max_head_bytes);
                let (read, served) =
                    match h1::serve(&mut io, limits.0, limits.1, &mut stop, &activity, &call).await
                    {
                        h1::Ended::Closed => return Ok(()),
                        h1::Ended::HandOff { read, served } => (read, served),
                    };
                io.unread(read);
                hyper_serves(Box::new(io), served).await
            }
            Some(acceptor) => {
                // The session is read here, in the arm: a borrowed local keeps
                // its storage (the TLS stream is a few KB) in the connection's
                // future across every later await, even once moved.
                let (stream, h2) =
                    match tokio::time::timeout(header_read, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => {
                            let session = s.get_ref().1;
                            let version = match session.protocol_version() {
                                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                                _ => "TLSv1.3",
                            };
                            handshake.set_tls(session.server_name(), version);
                            let h2 = session.alpn_protocol() == Some(b"h2".as_slice());
                            (s, h2)
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            return Ok(());
                        }
                        Err(_) => {
                            tracing::debug!(peer = %peer, "TLS handshake timed out");
                            return Ok(());
                        }
                    };
                let io = CountedIo::new(stream, activity.clone());
                if h2 || !crate::lean::enabled() {
                    return hyper_serves(Box::new(io), false).await;
                }
                // HTTP/1.1 by ALPN, or no ALPN (an HTTP/2 preface still
                // goes to hyper, as on plain TCP).
                let limits = (max_headers, max_head_bytes);
                // Boxed: the TLS stream is a few KB, and held inline it would
                // grow every connection's future, plain ones included.
                let lean = Box::pin(lean_first(io, limits, &mut stop, &activity, &call, true));
                match lean.await {
                    Some((io, served)) => hyper_serves(Box::new(io), served).await,
                    None => Ok(()),
                }
            }
        }
    };
    // Idle, or a request head too slow: drop the connection.
    let result = tokio::select! {
        biased;
        r = served => r,
        why = watch(activity.clone(), idle, header_read) => {
            match why {
                Expired::Idle => tracing::debug!(peer = %peer, "idle connection closed"),
                Expired::HeaderRead => tracing::debug!(peer = %peer, "request head too slow; connection closed"),
            }
            Ok(())
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

/// Serves `io` on the lean HTTP/1.1 path (h1.rs) until it closes (`None`)
/// or hands over: then the bytes read are put back, and the connection and
/// whether requests were served on it are hyper's. With `shutdown` (TLS) a
/// closing connection is shut down first, which sends `close_notify`, as
/// hyper does.
async fn lean_first<T, S, F>(
    mut io: CountedIo<T>,
    (max_headers, max_head_bytes): (usize, usize),
    stop: &mut tokio::sync::watch::Receiver<bool>,
    activity: &Arc<Activity>,
    call: &S,
    shutdown: bool,
) -> Option<(CountedIo<T>, bool)>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + h1::ReadReady + Unpin,
    S: Fn(Request<RequestBody>) -> F,
    F: Future<Output = Result<http::Response<crate::body::Body>, crate::error::StreamReset>>,
{
    match h1::serve(&mut io, max_headers, max_head_bytes, stop, activity, call).await {
        h1::Ended::Closed => {
            if shutdown {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
            }
            None
        }
        h1::Ended::HandOff { read, served } => {
            io.unread(read);
            Some((io, served))
        }
    }
}

/// A client connection as hyper serves it: plain TCP or TLS (boxed: one
/// service type for both; the extra indirection is per read, not per byte).
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// One request on hyper's path, counted as in flight until it is answered
/// (the lean path counts its own, h1.rs).
async fn counted<F: Future>(activity: Arc<Activity>, handling: F) -> F::Output {
    let _in_flight = activity.request();
    handling.await
}
