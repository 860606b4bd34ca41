//! A real echo backend on 127.0.0.1: HTTP/1.1 and h2c (prior knowledge) on one port.
//!
//! It records every request it receives (method, path, version, headers in arrival order,
//! body) and answers `200` with the same as JSON, so a test can check what a proxy forwarded
//! either from the record ([`Backend::received`]) or from the response the client got.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let backend = wasmgate_tests::backend::start().await?; // free port
//! // ... point a proxy at backend.addr() and send a request through it ...
//! let seen = backend.wait_for_requests(1, std::time::Duration::from_secs(5)).await;
//! assert_eq!(seen[0].header("authorization"), Some("Bearer demo"));
//! # Ok(()) }
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::record::Log;
use crate::serve::{accept_each, serve_http};

/// One request as the backend received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// e.g. `GET`.
    pub method: String,
    /// Path and query, e.g. `/v1/items?x=1`.
    pub path: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Every header in arrival order, names lower-case, values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
    /// False when the body did not arrive whole (the sender aborted the
    /// request): such a request never reached an application, so the
    /// recording backend does not list it.
    pub complete: bool,
}

impl Received {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Reads `req` completely (a body that fails to arrive reads as empty,
    /// and the request as not [`complete`](Self::complete)).
    pub async fn read(req: Request<Incoming>) -> Received {
        let (parts, body) = req.into_parts();
        let (body, complete) = match body.collect().await {
            Ok(collected) => (collected.to_bytes().to_vec(), true),
            Err(_) => (Vec::new(), false),
        };
        Received {
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
            complete,
        }
    }

    /// The JSON the backend echoes back for this request.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "method": self.method,
            "path": self.path,
            "version": self.version,
            "headers": self.headers,
            "body": String::from_utf8_lossy(&self.body),
        })
    }
}

/// A running backend. Dropping it stops the server and its connections.
#[derive(Debug)]
pub struct Backend {
    addr: SocketAddr,
    received: Log<Received>,
    server: JoinHandle<()>,
}

/// Starts a backend on a free port of 127.0.0.1.
///
/// # Errors
/// When the port cannot be bound.
pub async fn start() -> io::Result<Backend> {
    start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts a backend on `addr` (port 0 picks a free port).
///
/// # Errors
/// When `addr` cannot be bound.
pub async fn start_on(addr: SocketAddr) -> io::Result<Backend> {
    answering(addr, echo).await
}

/// Starts a recording server on `addr` that answers each request with the future `answer`
/// makes from it; the request is recorded before that future runs.
///
/// # Errors
/// When `addr` cannot be bound.
pub(crate) async fn answering<A, Fut>(addr: SocketAddr, answer: A) -> io::Result<Backend>
where
    A: Fn(&Received) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let received = Log::default();
    let log = received.clone();
    let server = tokio::spawn(accept_each(listener, move |tcp| {
        let (log, answer) = (log.clone(), answer.clone());
        serve_http(TokioIo::new(tcp), move |req| {
            let (log, answer) = (log.clone(), answer.clone());
            async move {
                let request = Received::read(req).await;
                let response = answer(&request);
                if request.complete {
                    log.push(request);
                }
                response.await
            }
        })
    }));
    Ok(Backend {
        addr,
        received,
        server,
    })
}

impl Backend {
    /// The address the backend listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received.snapshot()
    }

    /// Waits (at most `timeout`) until at least `n` requests have arrived, then returns all of
    /// them; on timeout returns what did arrive, so the caller's assertion shows it.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.received();
            if seen.len() >= n || tokio::time::Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.server.abort();
    }
}

/// Answers `200` with the request as JSON.
fn echo(request: &Received) -> std::future::Ready<Response<Full<Bytes>>> {
    let json = request.to_json().to_string();
    std::future::ready(
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    async fn roundtrip(http2: bool) -> (Backend, serde_json::Value) {
        let backend = start().await.expect("backend starts");
        let client = Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .build_http::<Empty<Bytes>>();
        let request = Request::post(format!("{}/echo?q=1", backend.url()))
            .header("x-twice", "1")
            .header("x-twice", "2")
            .body(Empty::new())
            .expect("request");
        let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .expect("answer within 10s")
            .expect("response");
        assert_eq!(response.status(), 200);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (backend, serde_json::from_slice(&body).expect("JSON echo"))
    }

    #[tokio::test]
    async fn records_and_echoes_http1() {
        let (backend, echoed) = roundtrip(false).await;
        let seen = backend.received();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].path, "/echo?q=1");
        assert_eq!(seen[0].version, "HTTP/1.1");
        assert_eq!(seen[0].header_all("x-twice"), ["1", "2"]);
        assert_eq!(echoed, seen[0].to_json());
    }

    #[tokio::test]
    async fn speaks_h2c_with_prior_knowledge() {
        let (backend, echoed) = roundtrip(true).await;
        let seen = backend.received();
        assert_eq!(seen[0].version, "HTTP/2.0");
        assert_eq!(echoed["version"], "HTTP/2.0");
    }
}
