//! The client side of HTTP/1.1 on plain TCP, where the gateway's lean
//! server loop answers bodiless requests and hands the connection to hyper
//! at the first request it does not take (`listener/h1.rs`). Pinned down
//! with raw bytes: pipelined requests, a request with a body in the middle
//! of a keep-alive connection, `connection: close` (and nothing served
//! after it), HTTP/1.0 and garbage,
//! `date` on the gateway's own answers, and idle connections at shutdown.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, timeout},
};
use wasmgate_tests::{
    backend,
    gateway::{self, TIMEOUT, TestGateway, get, raw},
};

async fn gateway_for(backend: &backend::Backend) -> anyhow::Result<TestGateway> {
    gateway::start(&format!(
        r#"
workers: 1
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams: {{ backend: {{ url: "{}" }} }}
routes: [{{ name: all, match: {{ path_prefix: /app }}, upstream: backend }}]
"#,
        backend.url()
    ))
}

/// One response read off a raw connection: its head, and a body framed by
/// `content-length`.
struct RawResponse {
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn status(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// Reads the next response from `tcp` (bytes past it stay in `buf`).
async fn read_response(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<RawResponse> {
    let deadline = Instant::now() + TIMEOUT;
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        fill(tcp, buf, deadline).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut response = RawResponse {
        head,
        body: Vec::new(),
    };
    let length: usize = response
        .header("content-length")
        .context("no content-length")?
        .parse()?;
    while buf.len() < end + length {
        fill(tcp, buf, deadline).await?;
    }
    response.body = buf[end..end + length].to_vec();
    buf.drain(..end + length);
    Ok(response)
}

async fn fill(tcp: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> anyhow::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk))
        .await
        .context("no response in time")??;
    if n == 0 {
        bail!("connection closed; got {:?}", String::from_utf8_lossy(buf));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// True when the peer closes `tcp` within `within`.
async fn closes(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        timeout(within, tcp.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn get_head(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: a.test\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway_for(&backend).await?;
    let mut tcp = TcpStream::connect(gw.addr()).await?;
    // Three requests in one write; then one more on the same connection.
    let batch = [
        get_head("/app/1", ""),
        get_head("/app/2", ""),
        get_head("/app/3", ""),
    ]
    .concat();
    tcp.write_all(batch.as_bytes()).await?;
    let mut buf = Vec::new();
    for i in 1..=3 {
        let r = read_response(&mut tcp, &mut buf).await?;
        assert_eq!(r.status(), "200", "{}", r.head);
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains(&format!("/app/{i}")), "response {i}: {body}");
    }
    tcp.write_all(get_head("/app/4", "").as_bytes()).await?;
    let r = read_response(&mut tcp, &mut buf).await?;
    assert!(String::from_utf8_lossy(&r.body).contains("/app/4"));
    assert!(buf.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_body_midway_is_served_and_so_is_the_rest() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway_for(&backend).await?;
    let mut tcp = TcpStream::connect(gw.addr()).await?;
    let mut buf = Vec::new();
    // A GET, then a POST with a body and a GET pipelined behind it.
    tcp.write_all(get_head("/app/first", "").as_bytes()).await?;
    assert_eq!(read_response(&mut tcp, &mut buf).await?.status(), "200");
    let post = "POST /app/post HTTP/1.1\r\nhost: a.test\r\ncontent-length: 5\r\n\r\nhello";
    tcp.write_all([post, &get_head("/app/last", "")].concat().as_bytes())
        .await?;
    for _ in 0..2 {
        assert_eq!(read_response(&mut tcp, &mut buf).await?.status(), "200");
    }
    let seen = backend.wait_for_requests(3, TIMEOUT).await;
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/app/first", "/app/post", "/app/last"]);
    assert_eq!(seen[1].body, b"hello");
    assert_eq!(seen[1].method, "POST");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_is_answered_and_honoured() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway_for(&backend).await?;
    let mut tcp = TcpStream::connect(gw.addr()).await?;
    tcp.write_all(get_head("/app/x", "connection: close\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    let r = read_response(&mut tcp, &mut buf).await?;
    assert_eq!(r.status(), "200");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closes(&mut tcp, Duration::from_secs(5)).await, "still open");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_after_a_connection_close_request_is_served() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway_for(&backend).await?;
    let mut tcp = TcpStream::connect(gw.addr()).await?;
    let batch = [
        get_head("/app/last", "connection: close\r\n"),
        get_head("/app/ignored", ""),
    ]
    .concat();
    tcp.write_all(batch.as_bytes()).await?;
    let mut buf = Vec::new();
    let r = read_response(&mut tcp, &mut buf).await?;
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closes(&mut tcp, Duration::from_secs(5)).await, "still open");
    assert!(
        buf.is_empty(),
        "a second response: {:?}",
        String::from_utf8_lossy(&buf)
    );
    let seen = backend
        .wait_for_requests(2, Duration::from_millis(300))
        .await;
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/app/last"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_and_garbage_are_left_to_hyper() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway_for(&backend).await?;
    let reply = raw(gw.addr(), b"GET /app/old HTTP/1.0\r\nhost: a.test\r\n\r\n").await?;
    assert!(
        reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"),
        "{reply}"
    );
    let reply = raw(gw.addr(), b"NOT A REQUEST\r\n\r\n").await?;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let seen = backend.wait_for_requests(1, TIMEOUT).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/app/old");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_answers_carry_a_date() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway_for(&backend).await?;
    // No route: the gateway answers 404 itself.
    let r = get(gw.addr(), "a.test", "/elsewhere", &[]).await?;
    assert_eq!(r.status, 404);
    let date = r.headers.get("date").context("no date")?.to_str()?;
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    assert_eq!(r.headers.get_all("date").iter().count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_keep_alive_connections_at_once() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway_for(&backend).await?;
    let addr: SocketAddr = gw.addr();
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(get_head("/app/x", "").as_bytes()).await?;
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut tcp, &mut buf).await?.status(), "200");
    let started = Instant::now();
    gw.handle.begin_shutdown();
    assert!(
        closes(&mut tcp, Duration::from_secs(5)).await,
        "idle connection kept open"
    );
    gw.handle.shutdown().await;
    // Well inside the drain timeout (30 s by default): nothing waited on
    // the idle connection.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}
