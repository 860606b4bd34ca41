//! The authorisation service the `http_call` filter calls: it records every call (like the
//! echo backend) and decides by the caller's `x-original-path`: a path starting with `/deny`
//! gets `403` with body `no entry`, anything else `200` with `x-auth: granted` and body
//! `welcome`. A path starting with `/slow` is answered (200) only after [`SLOW`], later than
//! the caller's timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::backend::Received;

/// How long a call for a `/slow...` path waits before it is answered.
pub const SLOW: std::time::Duration = std::time::Duration::from_secs(5);

/// A running auth service; stops on drop.
#[derive(Debug)]
pub struct Auth {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    server: JoinHandle<()>,
}

/// Starts the service on a free port of 127.0.0.1.
///
/// # Errors
/// When no port can be bound.
pub async fn start() -> std::io::Result<Auth> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let received = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(listener, received.clone()));
    Ok(Auth {
        addr,
        received,
        server,
    })
}

impl Auth {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every call received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Auth {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, received: Arc<Mutex<Vec<Received>>>) {
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let received = received.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| decide(req, received.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn decide(
    req: Request<Incoming>,
    received: Arc<Mutex<Vec<Received>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    let record = Received {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.to_string()),
        version: format!("{:?}", parts.version),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let original = record.header("x-original-path").unwrap_or_default();
    let deny = original.starts_with("/deny");
    let slow = original.starts_with("/slow");
    received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(record);
    if slow {
        // Longer than the caller's timeout; the task is aborted when the service stops.
        tokio::time::sleep(SLOW).await;
    }
    let (status, verdict, body) = if deny {
        (403, "denied", "no entry")
    } else {
        (200, "granted", "welcome")
    };
    let response = Response::builder()
        .status(status)
        .header("x-auth", verdict)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    Ok(response)
}
