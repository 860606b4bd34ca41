//! HTTP/1.1 to https upstreams on the lean client (`upstream/h1.rs`), held
//! to what the plain lean path and hyper's client guarantee: the upstream
//! here is a raw TLS server ([`RawBackend::start_tls`], certificates made at
//! test time) that answers every request head with scripted bytes and
//! counts its connections.
//!
//! Covered: pooled TLS connections are reused; late bytes after a response
//! (a HEAD, a 204, a 304, more than `Content-Length`) never answer the next
//! request, even when only part of their TLS record has arrived (lean
//! client only: hyper's reuses such a connection); `close_notify` or a bare TCP close while idle means a new
//! connection, not a 502; a TCP close without `close_notify` in the middle
//! of a body (by length, chunked or until close) is a failure the client
//! sees, never a complete 200; a certificate that does not verify is a 502
//! with nothing sent; an upstream that picks h2 by ALPN, or is configured
//! `protocol: http2`, is still served (over HTTP/2). The suite also runs
//! with `WASMGATE_LEAN_HTTP1=off` (hyper's client), which must behave the
//! same.

use std::{
    io::Write,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use rustls::ServerConfig;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
    time::sleep,
};
use wasmgate_tests::{
    gateway::{self, Reply, TestGateway, get},
    raw::{RawBackend, Step, request_line, send},
    serve::accept_each,
    tls::{Pki, TlsBackend},
};

/// A plain answer for everything not scripted otherwise.
const FRESH: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh";
/// What a hostile backend tries to slip in as another request's answer.
const POISON: &str = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED";
/// The name on the backend's certificate.
const NAME: &str = "api.internal";

/// A CA and a server configuration for [`NAME`] offering `alpn`.
fn backend_tls(alpn: &[&[u8]]) -> (Pki, Arc<ServerConfig>) {
    let pki = Pki::new("backend CA");
    let config = server_config(&pki, NAME, alpn);
    (pki, config)
}

/// A server configuration with a certificate for `name` from `pki`,
/// offering `alpn`.
fn server_config(pki: &Pki, name: &str, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let cert = pki.issue(name, &[name]);
    let mut config = ServerConfig::clone(&pki.server_config(&cert, false));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// An HTTP/1.1-only raw TLS backend (ALPN `http/1.1`) and its CA.
async fn raw_tls(
    script: impl Fn(&str) -> Vec<Step> + Send + Sync + 'static,
) -> anyhow::Result<(Pki, RawBackend)> {
    let (pki, config) = backend_tls(&[b"http/1.1"]);
    let backend = RawBackend::start_tls(config, script).await?;
    Ok((pki, backend))
}

/// A gateway (one worker, so one upstream pool) sending everything to
/// `https://addr`, verified against `ca` for [`NAME`]; `extra` adds keys
/// to the upstream.
fn start(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    extra: &str,
) -> anyhow::Result<TestGateway> {
    gateway::start(&format!(
        r#"
workers: 1
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams:
  backend:
    url: "https://{addr}"
    tls: {{ ca: "{}", server_name: {NAME} }}
    connect_timeout: 2s
    timeout: 5s{extra}
routes: [{{ name: all, match: {{}}, upstream: backend }}]
"#,
        ca.display()
    ))
}

/// One request on a new client connection.
async fn request(gw: &TestGateway, method: &str, path: &str) -> anyhow::Result<Reply> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "a.test")
        .body(Full::new(Bytes::new()))?;
    gateway::send(gw.addr(), &gateway::Client::Http1, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_tls_connection_is_reused() -> anyhow::Result<()> {
    let (pki, backend) = raw_tls(|head| {
        let line = request_line(head);
        let answer = if line.contains("/chunked") {
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfresh\r\n0\r\n\r\n"
        } else if line.contains("/empty") {
            "HTTP/1.1 204 No Content\r\n\r\n"
        } else if line.starts_with("HEAD") {
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
        } else {
            FRESH
        };
        vec![send(answer)]
    })
    .await?;
    let gw = start(backend.addr, &pki.ca_pem, "")?;
    for _ in 0..3 {
        for (method, path, status, body) in [
            ("GET", "/length", StatusCode::OK, "fresh"),
            ("GET", "/chunked", StatusCode::OK, "fresh"),
            ("HEAD", "/head", StatusCode::OK, ""),
            ("GET", "/empty", StatusCode::NO_CONTENT, ""),
        ] {
            let r = request(&gw, method, path).await?;
            assert_eq!((r.status, r.text().as_str()), (status, body), "{path}");
        }
    }
    assert_eq!(backend.heads().len(), 12);
    assert_eq!(backend.accepted(), 1, "one pooled upstream TLS connection");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_without_alpn_is_served_over_http1() -> anyhow::Result<()> {
    let (pki, config) = backend_tls(&[]);
    let backend = RawBackend::start_tls(config, |_| vec![send(FRESH)]).await?;
    let gw = start(backend.addr, &pki.ca_pem, "")?;
    for _ in 0..3 {
        assert_eq!(get(gw.addr(), "a.test", "/", &[]).await?.text(), "fresh");
    }
    assert_eq!(backend.accepted(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_bytes_over_tls_never_answer_another_request() -> anyhow::Result<()> {
    // Each case: a response that says it has no body (or a shorter one)
    // followed, in the same write or later, by a whole other response.
    let (pki, backend) = raw_tls(|head| {
        let line = request_line(head).to_string();
        let late = |first: &str, wait: u64| {
            vec![
                send(first),
                Step::Wait(Duration::from_millis(wait)),
                send(POISON),
            ]
        };
        if line.contains("/no-content-late") {
            late("HTTP/1.1 204 No Content\r\n\r\n", 300)
        } else if line.contains("/no-content") {
            vec![send(format!("HTTP/1.1 204 No Content\r\n\r\n{POISON}"))]
        } else if line.starts_with("HEAD") && line.contains("/late") {
            late("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n", 300)
        } else if line.starts_with("HEAD") {
            late("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n", 0)
        } else if line.contains("/not-modified") {
            late("HTTP/1.1 304 Not Modified\r\n\r\n", 100)
        } else if line.contains("/extra") {
            late("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 100)
        } else {
            vec![send(FRESH)]
        }
    })
    .await?;
    let gw = start(backend.addr, &pki.ca_pem, "")?;
    for (method, path) in [
        ("GET", "/no-content"),
        ("GET", "/no-content-late"),
        ("HEAD", "/head"),
        ("HEAD", "/late"),
        ("GET", "/not-modified"),
        ("GET", "/extra"),
    ] {
        let first = request(&gw, method, path).await?;
        assert!(
            first.status.is_success() || first.status == 304,
            "{path}: {}",
            first.status
        );
        let accepted = backend.accepted();
        // Another client, after the late bytes have arrived.
        sleep(Duration::from_millis(500)).await;
        let next = get(gw.addr(), "a.test", "/next", &[]).await?;
        assert_eq!(
            (next.status, next.text().as_str()),
            (StatusCode::OK, "fresh"),
            "{method} {path}: another request's answer"
        );
        assert_eq!(
            backend.accepted(),
            accepted + 1,
            "{method} {path}: the next request has a new connection"
        );
    }
    Ok(())
}

/// A TLS upstream whose first connection answers its first request with a
/// 204 followed, in the same TCP write, by the first bytes of a record
/// holding a whole other response ([`POISON`]); the rest of that record
/// comes a second later. Every other request is answered [`FRESH`].
/// Returns its address, its accepted-connection count and its task.
async fn split_record_backend(
    config: Arc<ServerConfig>,
) -> anyhow::Result<(SocketAddr, Arc<AtomicUsize>, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let count = accepted.clone();
    let task = tokio::spawn(accept_each(listener, move |tcp| {
        let first = count.fetch_add(1, Ordering::SeqCst) == 0;
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = Vec::new();
            for answered in 0.. {
                if !read_head(&mut tls, &mut buf).await {
                    return;
                }
                if first && answered == 0 {
                    let (tcp, session) = tls.get_mut();
                    let mut wire = Vec::new();
                    let _ = session
                        .writer()
                        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
                    while session.wants_write() {
                        let _ = session.write_tls(&mut wire);
                    }
                    let cut = wire.len() + 10;
                    let _ = session.writer().write_all(POISON.as_bytes());
                    while session.wants_write() {
                        let _ = session.write_tls(&mut wire);
                    }
                    let _ = tcp.write_all(&wire[..cut]).await;
                    sleep(Duration::from_secs(1)).await;
                    let _ = tcp.write_all(&wire[cut..]).await;
                } else if tls.write_all(FRESH.as_bytes()).await.is_err()
                    || tls.flush().await.is_err()
                {
                    return;
                }
            }
        }
    }));
    Ok((addr, accepted, task))
}

/// Reads up to the end of the next request head and drops it; `false` when
/// the peer closes first.
async fn read_head(io: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> bool {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            return true;
        }
        let mut chunk = [0u8; 4096];
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_record_after_a_response_never_answers_another_request() -> anyhow::Result<()> {
    // Both clients: hyper's sees no plaintext while rustls holds part of
    // a record, so its pool asks the record tracker too.
    let (pki, config) = backend_tls(&[b"http/1.1"]);
    let (addr, accepted, task) = split_record_backend(config).await?;
    let gw = start(addr, &pki.ca_pem, "")?;
    let first = get(gw.addr(), "a.test", "/first", &[]).await?;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    // At once: the record's first bytes are in, its rest is not.
    let next = get(gw.addr(), "a.test", "/next", &[]).await?;
    task.abort();
    assert_eq!(
        (next.status, next.text().as_str()),
        (StatusCode::OK, "fresh"),
        "another request's answer"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "a new connection");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_an_idle_connection_is_not_a_502() -> anyhow::Result<()> {
    // Keep-alive response, then the upstream closes the idle connection:
    // cleanly (`close_notify`) or not.
    for close in [Step::CloseNotify, Step::Close] {
        let (pki, backend) = raw_tls(move |_| {
            vec![
                send(FRESH),
                Step::Wait(Duration::from_millis(50)),
                close.clone(),
            ]
        })
        .await?;
        let gw = start(backend.addr, &pki.ca_pem, "")?;
        for path in ["/first", "/second", "/third"] {
            let r = get(gw.addr(), "a.test", path, &[]).await?;
            assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "fresh"));
            sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(backend.accepted(), 3);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_close_without_close_notify_mid_body_is_a_failure() -> anyhow::Result<()> {
    let (pki, backend) = raw_tls(|head| {
        let line = request_line(head);
        let (answer, close) = if line.contains("/length-notify") {
            // A clean close does not make a short body whole.
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial",
                Step::CloseNotify,
            )
        } else if line.contains("/length") {
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial",
                Step::Close,
            )
        } else if line.contains("/chunked") {
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\npartial\r\n",
                Step::Close,
            )
        } else if line.contains("/until-close-notify") {
            ("HTTP/1.1 200 OK\r\n\r\nwhole", Step::CloseNotify)
        } else {
            ("HTTP/1.1 200 OK\r\n\r\npartial", Step::Close)
        };
        vec![send(answer), Step::Wait(Duration::from_millis(20)), close]
    })
    .await?;
    let gw = start(backend.addr, &pki.ca_pem, "")?;
    for path in ["/length", "/length-notify", "/chunked", "/until-close"] {
        match get(gw.addr(), "a.test", path, &[]).await {
            Err(_) => {}
            Ok(r) => assert_eq!(
                r.status,
                StatusCode::BAD_GATEWAY,
                "{path}: a truncated body passed as whole: {:?}",
                r.text()
            ),
        }
    }
    // Until close, with `close_notify`: the body is whole.
    let r = get(gw.addr(), "a.test", "/until-close-notify", &[]).await?;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "whole"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_that_does_not_verify_is_502() -> anyhow::Result<()> {
    let (_pki, backend) = raw_tls(|_| vec![send(FRESH)]).await?;
    let other = Pki::new("untrusted CA");
    // A CA we do not trust.
    let gw = start(backend.addr, &other.ca_pem, "")?;
    for method in ["GET", "HEAD"] {
        let r = request(&gw, method, "/").await?;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{method}");
        if method == "GET" {
            assert_eq!(r.text(), "upstream backend unreachable\n");
        }
    }
    // The right CA, a certificate for another name.
    let pki = Pki::new("backend CA");
    let config = server_config(&pki, "other.internal", &[b"http/1.1"]);
    let named = RawBackend::start_tls(config, |_| vec![send(FRESH)]).await?;
    let gw = start(named.addr, &pki.ca_pem, "")?;
    let r = get(gw.addr(), "a.test", "/", &[]).await?;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(backend.heads().is_empty(), "nothing sent unverified");
    assert!(named.heads().is_empty(), "nothing sent unverified");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_upstreams_are_served_over_http2() -> anyhow::Result<()> {
    // Offers h2 and http/1.1 (picks h2), offers only h2, and a
    // configured `protocol: http2`.
    for (alpn, extra) in [
        (&[&b"h2"[..], b"http/1.1"][..], ""),
        (&[&b"h2"[..]][..], ""),
        (&[&b"h2"[..], b"http/1.1"][..], "\n    protocol: http2"),
    ] {
        let (pki, config) = backend_tls(alpn);
        let backend = TlsBackend::start(config).await?;
        let gw = start(backend.addr(), &pki.ca_pem, extra)?;
        for method in ["GET", "HEAD", "GET", "DELETE"] {
            let r = request(&gw, method, "/h2").await?;
            assert_eq!(r.status, StatusCode::OK, "{alpn:?}{extra} {method}");
        }
        let seen = backend.received();
        assert_eq!(seen.len(), 4);
        for s in &seen {
            assert_eq!(s.alpn.as_deref(), Some("h2"), "{alpn:?}{extra}");
            assert_eq!(s.request.version, "HTTP/2.0", "{alpn:?}{extra}");
        }
    }
    Ok(())
}
