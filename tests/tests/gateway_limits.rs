//! Limits and faults: header size and count (431), body size (413, by
//! Content-Length and while streaming), request smuggling (400), upstream
//! connect failure (502) and timeout (504), and the header-read timeout
//! that stops slowloris clients.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use wasmgate_tests::{
    backend,
    config::{GatewayYaml, Route},
    gateway::{self, Client, get, raw, send},
};

const WAIT: Duration = Duration::from_secs(5);

fn yaml(url: &str, limits: &str) -> String {
    GatewayYaml::new()
        .set(&format!("limits: {limits}"))
        .upstream_with("backend", url, "connect_timeout: 1s, timeout: 1s")
        .route(Route::new("all", "backend"))
        .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_too_many_headers_get_431() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway::start(&yaml(
        &backend.url(),
        "{ max_header_bytes: 8192, max_headers: 20 }",
    ))?;
    let big = "a".repeat(10_000);
    let r = get(gw.addr(), "a.test", "/", &[("x-big", &big)]).await;
    // hyper answers 431 and closes; some clients see only the close.
    if let Ok(r) = r {
        assert_eq!(r.status, 431);
    }
    let raw_reply = raw(
        gw.addr(),
        format!("GET / HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\n\r\n").as_bytes(),
    )
    .await?;
    assert!(raw_reply.starts_with("HTTP/1.1 431"), "{raw_reply}");

    let many: Vec<(String, String)> = (0..30)
        .map(|i| (format!("x-h{i}"), "v".to_string()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let r = get(gw.addr(), "a.test", "/", &many).await?;
    assert_eq!(r.status, 431);

    // The same over HTTP/2.
    let mut req = Request::get("http://a.test/").body(Full::new(Bytes::new()))?;
    for (n, v) in &many {
        req.headers_mut()
            .insert(http::HeaderName::from_bytes(n.as_bytes())?, v.parse()?);
    }
    assert_eq!(send(gw.addr(), &Client::H2c, req).await?.status, 431);
    let mut req = Request::get("http://a.test/").body(Full::new(Bytes::new()))?;
    req.headers_mut().insert("x-big", big.parse()?);
    // h2 refuses an oversized header block (431 or a reset stream).
    if let Ok(r) = send(gw.addr(), &Client::H2c, req).await {
        assert_eq!(r.status, 431);
    }

    // Within the limits all is well, and nothing above reached the backend.
    let r = get(gw.addr(), "a.test", "/fine", &[]).await?;
    assert_eq!(r.status, 200);
    assert_eq!(backend.wait_for_requests(1, WAIT).await.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway::start(&yaml(&backend.url(), "{ max_body_bytes: 1000 }"))?;
    // Declared too large.
    let req = Request::post("/upload")
        .header("host", "a.test")
        .body(Full::new(Bytes::from(vec![b'x'; 5000])))?;
    let r = send(gw.addr(), &Client::Http1, req).await?;
    assert_eq!(r.status, 413);
    // Chunked, found too large while streaming.
    let chunk = "x".repeat(600);
    let body = format!("258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n");
    let reply = raw(
        gw.addr(),
        format!(
            "POST /stream HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n{body}"
        )
        .as_bytes(),
    )
    .await?;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // Small enough passes.
    let req = Request::post("/small")
        .header("host", "a.test")
        .body(Full::new(Bytes::from(vec![b'y'; 999])))?;
    assert_eq!(send(gw.addr(), &Client::Http1, req).await?.status, 200);
    let seen = backend.wait_for_requests(1, WAIT).await;
    assert_eq!(seen.iter().filter(|s| s.path == "/small").count(), 1);
    assert!(seen.iter().all(|s| s.path != "/upload"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_attempts_do_not_get_through() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway::start(&yaml(&backend.url(), "{}"))?;
    // CL.TE: a server trusting Content-Length would read the bytes after
    // the chunked end as a second request (`GET /admin`). Chunked wins, the
    // Content-Length is dropped, and the connection closes after the
    // response: the smuggled request is never read.
    let smuggle = "POST /front HTTP/1.1\r\nhost: a.test\r\ncontent-length: 44\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nhost: a.test\r\n\r\n";
    let reply = raw(gw.addr(), smuggle.as_bytes()).await?;
    assert_eq!(
        reply.matches("HTTP/1.1 ").count(),
        1,
        "exactly one response: {reply}"
    );
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    let seen = backend.wait_for_requests(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen_now = backend.received();
    assert_eq!(seen_now.len(), 1, "{seen_now:?}");
    assert_eq!(seen[0].path, "/front");
    assert_eq!(seen[0].header("content-length"), None);
    assert!(seen[0].body.is_empty());

    // Conflicting Content-Lengths and a non-chunked Transfer-Encoding are refused.
    for bad in [
        &b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"[..],
        &b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n\r\n"[..],
    ] {
        let reply = raw(gw.addr(), bad).await?;
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    }
    assert_eq!(backend.received().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connect_failure_is_502_and_timeout_504() -> anyhow::Result<()> {
    // A port with nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let gw = gateway::start(&yaml(&format!("http://{closed}"), "{}"))?;
    let r = get(gw.addr(), "a.test", "/", &[]).await?;
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "upstream backend unreachable\n");

    // A backend that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await?;
    let silent_addr = silent.local_addr()?;
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let gw = gateway::start(&yaml(&format!("http://{silent_addr}"), "{}"))?;
    let r = get(gw.addr(), "a.test", "/", &[]).await?;
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), "upstream backend timed out\n");
    holder.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_senders_are_cut_off() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    // The idle timeout is far away: only the header-read timeout can cut.
    let gw = gateway::start(&yaml(
        &backend.url(),
        "{ header_read_timeout: 300ms, idle_timeout: 30s }",
    ))?;
    // A finished request first: the timeout runs per request head, so the
    // second head is timed from its own first byte.
    let mut tcp = TcpStream::connect(gw.addr()).await?;
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await?;
    let mut first = [0u8; 12];
    tcp.read_exact(&mut first).await?;
    assert_eq!(&first, b"HTTP/1.1 200");
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n").await?;
    // Never finish the head: the gateway must close the connection.
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 10s");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "cut too early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "cut too late: {waited:?}");
    // What the first response had left to send, and nothing for the second.
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 0, "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway::start(&yaml(
        &backend.url(),
        "{ header_read_timeout: 30s, idle_timeout: 400ms }",
    ))?;
    // Connected, never a byte.
    let mut silent = TcpStream::connect(gw.addr()).await?;
    // One request, then quiet on a keep-alive connection.
    let mut parked = TcpStream::connect(gw.addr()).await?;
    parked
        .write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await?;
    let started = std::time::Instant::now();
    for tcp in [&mut silent, &mut parked] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "idle connection still open after 10s");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(350),
        "cut too early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "cut too late: {waited:?}");
    Ok(())
}
