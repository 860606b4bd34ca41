//! The client side of a scenario: one request on a fresh connection (HTTP/1.1 or h2c), the
//! whole response read, and the client's own address kept so it can be normalised away.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderMap, Request as HttpRequest};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Request;

/// Bound on one exchange, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The `Host` (or `:authority`) of every request.
pub const HOST: &str = "example.test";

/// What came back.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Every response header.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// One exchange: the client's address and the response, or why there was none.
#[derive(Debug)]
pub struct Exchange {
    /// The client's side of the connection (None when it did not connect).
    pub local: Option<SocketAddr>,
    /// The response, or the error (reset, closed, timeout).
    pub response: Result<Response>,
}

/// Sends `request` to `addr` and reads the whole response, within [`TIMEOUT`].
pub async fn send(addr: SocketAddr, request: &Request) -> Exchange {
    let stream = match tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Exchange {
                local: None,
                response: Err(e.into()),
            };
        }
        Err(_) => {
            return Exchange {
                local: None,
                response: Err(anyhow::anyhow!("connect timed out")),
            };
        }
    };
    let local = stream.local_addr().ok();
    let response = tokio::time::timeout(TIMEOUT, exchange(stream, request))
        .await
        .with_context(|| format!("no answer within {TIMEOUT:?}"))
        .and_then(|r| r);
    Exchange { local, response }
}

async fn exchange(stream: TcpStream, request: &Request) -> Result<Response> {
    let uri = if request.h2 {
        format!("http://{HOST}{}", request.path)
    } else {
        request.path.to_string()
    };
    let mut builder = HttpRequest::builder().method(request.method).uri(uri);
    if !request.h2 {
        builder = builder.header("host", HOST);
    }
    for (name, value) in &request.headers {
        builder = builder.header(*name, *value);
    }
    let http_request = builder.body(Full::new(request.body.clone()))?;
    let (parts, body) = crate::serve::exchange(TokioIo::new(stream), request.h2, http_request)
        .await?
        .into_parts();
    Ok(Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}
