//! The upstream's `read_timeout`: a backend that stops in the middle of a
//! response body is cut off, from outside: a really started gateway (one
//! worker) in front of a raw TCP backend that writes a head and part of a
//! body, then keeps the socket open and says nothing.
//!
//! Held to: the client sees the response cut within the limit (HTTP/1.1:
//! the connection closes short of `Content-Length`; HTTP/2: the stream
//! fails and the connection serves the next stream), on the lean client and
//! on hyper's (a POST); the stalled upstream connection is closed, never
//! pooled; the cut is counted in `wasmgate_upstream_timeouts_total`; a body
//! that trickles (every wait shorter than the limit) arrives whole however
//! long it takes, and so does a large body whose client pauses longer than
//! the limit before reading (the client's pause is not the upstream's);
//! `read_timeout: 0s` is refused naming the key. Runs with
//! `WASMGATE_LEAN_HTTP1=off` too.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::{sleep, timeout},
};
use wasmgate_tests::{
    gateway,
    raw::{self, content_length, read_head},
    serve::accept_each,
};

/// The gateway's `read_timeout` in these tests.
const LIMIT: Duration = Duration::from_millis(800);

/// Size of the large body.
const BIG: usize = 8 << 20;

/// A raw HTTP/1.1 backend: answers each request head by its path.
struct Backend {
    addr: SocketAddr,
    /// Connections the gateway closed (EOF or reset seen by the backend).
    closed: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Backend {
    async fn start() -> anyhow::Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let closed = Arc::new(AtomicUsize::new(0));
        let counter = closed.clone();
        let server = tokio::spawn(accept_each(listener, move |tcp| {
            serve(tcp, counter.clone())
        }));
        Ok(Backend {
            addr,
            closed,
            server,
        })
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Serves one connection; counts it in `closed` when the gateway ends it.
async fn serve(mut tcp: TcpStream, closed: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut tcp, &mut buf).await else {
            closed.fetch_add(1, Ordering::SeqCst);
            return;
        };
        // A request body (the POST) is a declared length: read it.
        if let Some(len) = content_length(&head) {
            while buf.len() < len {
                let mut chunk = [0u8; 4096];
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..len);
        }
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let written = match path.as_str() {
            "/stall" => {
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                    .await;
                // Nothing more; see when the gateway lets go.
                let mut rest = [0u8; 64];
                let _ = tcp.read(&mut rest).await;
                closed.fetch_add(1, Ordering::SeqCst);
                return;
            }
            "/trickle" => {
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
                    .await;
                let mut ok = true;
                for b in b"slowly" {
                    sleep(LIMIT / 2).await;
                    ok &= tcp.write_all(&[*b]).await.is_ok();
                }
                ok
            }
            "/big" => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
                let body = vec![b'b'; BIG];
                tcp.write_all(head.as_bytes()).await.is_ok() && tcp.write_all(&body).await.is_ok()
            }
            _ => tcp
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .is_ok(),
        };
        if !written {
            return;
        }
    }
}

fn start(backend: &Backend) -> anyhow::Result<gateway::TestGateway> {
    gateway::start(&format!(
        r#"
workers: 1
admin: {{ address: "127.0.0.1:0" }}
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams:
  backend: {{ url: "http://{}", timeout: 5s, read_timeout: {}ms }}
routes: [{{ name: all, match: {{}}, upstream: backend }}]
"#,
        backend.addr,
        LIMIT.as_millis()
    ))
}

/// Writes `request` on a new connection, reads until the gateway closes
/// it (10 s at most): what came back and when the connection ended.
async fn until_closed(addr: SocketAddr, request: &[u8]) -> anyhow::Result<(String, Duration)> {
    let (out, took) = raw::until_closed(addr, request, Duration::from_secs(10)).await?;
    Ok((String::from_utf8_lossy(&out).into_owned(), took))
}

/// `wasmgate_upstream_timeouts_total` for the backend.
async fn timeouts(gw: &gateway::TestGateway) -> anyhow::Result<u64> {
    gateway::metric(gw, "wasmgate_upstream_timeouts_total{upstream=\"backend\"}").await
}

/// A cut came after the limit, and not much later.
fn cut_in_time(what: &str, took: Duration) {
    assert!(
        took >= LIMIT && took < LIMIT * 3,
        "{what}: cut after {took:?} (read_timeout {LIMIT:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_on_http1_on_both_clients() -> anyhow::Result<()> {
    let backend = Backend::start().await?;
    let gw = start(&backend)?;
    let requests: [(&str, &[u8]); 2] = [
        // Bodiless GET: the lean client (hyper's when lean is off).
        ("GET", b"GET /stall HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        // A body: hyper's client either way.
        (
            "POST",
            b"POST /stall HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\n\r\nbody",
        ),
    ];
    for (i, (method, request)) in requests.iter().enumerate() {
        let (answer, took) = until_closed(gw.addr(), request).await?;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\npartial"),
            "{method}: the head and what came of the body, then the end: {answer:?}"
        );
        cut_in_time(method, took);
        // The stalled upstream connection was closed, not pooled.
        sleep(Duration::from_millis(200)).await;
        assert_eq!(
            backend.closed(),
            i + 1,
            "{method}: upstream connection closed"
        );
        assert_eq!(timeouts(&gw).await?, i as u64 + 1, "{method}: counted");
        // And the next client is served.
        let r = gateway::get(gw.addr(), "a.test", "/next", &[]).await?;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_resets_only_its_http2_stream() -> anyhow::Result<()> {
    let backend = Backend::start().await?;
    let gw = start(&backend)?;
    let tcp = TcpStream::connect(gw.addr()).await?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await?;
    tokio::spawn(conn);
    let get = |path: &str| {
        http::Request::get(format!("http://a.test{path}"))
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    let started = Instant::now();
    let response = sender.send_request(get("/stall")).await?;
    assert_eq!(response.status(), 200);
    let body = timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .map_err(|_| anyhow::anyhow!("the stream was never cut"))?;
    assert!(body.is_err(), "a cut body is an error, not a short success");
    cut_in_time("HTTP/2", started.elapsed());
    // The same connection serves the next stream.
    let next = sender.send_request(get("/next")).await?;
    let bytes = next.into_body().collect().await?.to_bytes();
    assert_eq!(&bytes[..], b"ok");
    assert_eq!(timeouts(&gw).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_and_a_slow_reader_are_not_cut() -> anyhow::Result<()> {
    let backend = Backend::start().await?;
    let gw = start(&backend)?;
    // Six waits of half the limit: three times the limit in all.
    let (answer, took) = until_closed(
        gw.addr(),
        b"GET /trickle HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await?;
    assert!(answer.ends_with("\r\n\r\nslowly"), "{answer:?}");
    assert!(took > LIMIT * 2, "it did trickle: {took:?}");
    // A client that reads nothing for longer than the limit: the gateway
    // waits on the client, not on the upstream.
    let mut tcp = TcpStream::connect(gw.addr()).await?;
    tcp.write_all(b"GET /big HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await?;
    sleep(LIMIT * 2).await;
    let mut out = Vec::new();
    timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await??;
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |end| out.len() - end - 4);
    assert_eq!(body, BIG, "the whole large body");
    assert_eq!(timeouts(&gw).await?, 0, "nothing timed out");
    Ok(())
}

#[test]
fn a_zero_read_timeout_is_refused_naming_the_key() -> anyhow::Result<()> {
    let err = gateway::start(
        r#"
listeners: [{ address: "127.0.0.1:0" }]
upstreams:
  backend: { url: "http://127.0.0.1:9", read_timeout: 0s }
routes: [{ name: all, match: {}, upstream: backend }]
"#,
    )
    .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("upstreams.backend.read_timeout") && text.contains("more than 0"),
        "{text}"
    );
    Ok(())
}
