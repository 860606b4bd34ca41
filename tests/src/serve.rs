//! HTTP plumbing shared by the test servers and clients: the accept loop, serving one
//! connection with hyper's auto (HTTP/1.1 or HTTP/2) server, and one request/response
//! exchange on an already open connection.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Accepts connections forever, running `on_connection` for each on its own task. Aborting
/// the task running this drops the set of connection tasks, which aborts them all.
pub async fn accept_each<F, Fut>(listener: TcpListener, mut on_connection: F)
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(on_connection(stream));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
}

/// Serves one connection (HTTP/1.1, or HTTP/2 by preface) until it closes, answering each
/// request with `handler`. Connection errors are client hang-ups and are dropped: tests read
/// what the server recorded, not how the connection ended.
pub async fn serve_http<I, H, Fut>(io: I, handler: H)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let answer = handler(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

/// [`serve_http`] over TLS with `config` (its ALPN list decides HTTP/1.1 or h2): the handshake
/// must end within 10 s, a failed one ends the connection.
pub async fn serve_https<H, Fut>(
    tcp: tokio::net::TcpStream,
    config: std::sync::Arc<rustls::ServerConfig>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
    if let Ok(Ok(tls)) = tokio::time::timeout(std::time::Duration::from_secs(10), accept).await {
        serve_http(hyper_util::rt::TokioIo::new(tls), handler).await;
    }
}

/// Sends `req` on `io` (HTTP/2 when `h2`, else HTTP/1.1) and reads the whole response.
///
/// # Errors
/// Handshake, protocol or body failures. Not bounded in time: callers wrap it in a timeout.
pub async fn exchange<I, B>(io: I, h2: bool, req: Request<B>) -> anyhow::Result<Response<Bytes>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let response = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
