//! The lean HTTP/1.1 server path over TLS, attacked with raw TLS sockets
//! (tokio-rustls, trusting the test CA):
//!
//! - the same raw bytes over plain TCP and over TLS (one record, or one
//!   record per byte; half-closed or not) get the same answers and forward
//!   the same requests: pipelines, hand-off to hyper mid-pipeline, smuggling
//!   attempts (CL+TE, duplicate CL, obs-fold, bare LF), absolute form, heads
//!   too large, an HTTP/2 preface midway, garbage; and nothing after
//!   `connection: close`;
//! - a pipeline split into two records at every byte is served once, in
//!   order; TLS 1.3 key updates between and within requests change nothing;
//!   large and trickled response bodies (sized, chunked, close-delimited)
//!   arrive whole;
//! - a client that truncates (TCP end without `close_notify`) mid-head or
//!   mid-body never has the request forwarded; `close_notify` with the TCP
//!   left open is answered and closed with `close_notify`;
//! - slowloris and idle connections are cut at their timeouts; a graceful
//!   shutdown (the handle's, and SIGTERM to the binary) closes idle lean
//!   TLS connections with `close_notify` and lets in-flight ones finish
//!   with `connection: close`; the debug logs never hold the secret a
//!   filter injects;
//! - what a filter reads (`request.scheme`, `connection.tls_version`,
//!   `connection.requested_server_name`, `connection.mtls`) and
//!   `x-forwarded-proto` (client copies overwritten) are the same on the
//!   lean path (ALPN `http/1.1` or none) and hyper's (ALPN `h2`, a body);
//! - ALPN: HTTP/2 by prior knowledge without `h2`, HTTP/1.1 over `h2`, an
//!   unknown protocol (refused in the handshake);
//! - resumed TLS 1.2 and 1.3 sessions route and read the same, and a ticket
//!   from another gateway process means a full handshake, not an error.
//!
//! Passes with `WASMGATE_LEAN_HTTP1=off` too (hyper everywhere).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::{HandshakeKind, pki_types::ServerName};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::client::TlsStream;
use wasmgate_tests::{
    backend::{self, Backend},
    gateway::{self, TestGateway},
    raw::{RawBackend, send},
    tls::{CertFiles, Pki},
};

const WAIT: Duration = Duration::from_secs(10);

/// A gateway with a plain listener (first) and an HTTPS one (second), both
/// routed to `upstream` through the `properties` filter.
fn gateway_yaml(server: &CertFiles, upstream: &str, limits: &str) -> String {
    format!(
        r#"
workers: 1
listeners:
  - address: 127.0.0.1:0
  - address: 127.0.0.1:0
    tls: {{ cert: "{}", key: "{}" }}
access_log: {{ disabled: true }}
{limits}
upstreams: {{ backend: {{ url: "{upstream}", connect_timeout: 1s, timeout: 3s }} }}
routes:
  - name: all
    match: {{}}
    upstream: backend
    filters:
      - wasm: {:?}
        config: "get=request.scheme;get=connection.tls_version;get=connection.requested_server_name;get=connection.mtls:bool"
"#,
        server.cert.display(),
        server.key.display(),
        wasmgate_tests::wasm("properties"),
    )
}

struct Setup {
    pki: Pki,
    server: CertFiles,
    backend: Backend,
    gw: TestGateway,
}

impl Setup {
    /// Path and body of each request the backend received, from the `from`th on.
    fn paths_and_bodies(&self, from: usize) -> Vec<(String, Vec<u8>)> {
        self.backend.received()[from..]
            .iter()
            .map(|r| (r.path.clone(), r.body.clone()))
            .collect()
    }

    async fn start(limits: &str) -> anyhow::Result<Setup> {
        let pki = Pki::new("tls attacks CA");
        let server = pki.issue("gw", &["gw.test", "other.test"]);
        let backend = backend::start().await?;
        let gw = gateway::start(&gateway_yaml(&server, &backend.url(), limits))?;
        Ok(Setup {
            pki,
            server,
            backend,
            gw,
        })
    }

    fn tcp_addr(&self) -> SocketAddr {
        self.gw.handle.listeners[0]
    }

    fn tls_addr(&self) -> SocketAddr {
        self.gw.handle.listeners[1]
    }

    async fn tls(&self, alpn: &[&[u8]]) -> anyhow::Result<TlsStream<TcpStream>> {
        tls_connect(
            self.tls_addr(),
            self.pki.client_config(None, alpn),
            "gw.test",
        )
        .await
    }
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(name.to_owned())?, tcp)
        .await?)
}

/// Reads until the peer ends the stream; whether it ended cleanly (on TLS:
/// with `close_notify`).
async fn read_all<S: AsyncRead + Unpin>(io: &mut S) -> anyhow::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match tokio::time::timeout(WAIT, io.read(&mut chunk)).await? {
            Ok(0) => return Ok((out, true)),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(_) => return Ok((out, false)),
        }
    }
}

/// Writes `bytes` whole, or one byte per write (on TLS: one record each).
async fn write<S: AsyncWrite + Unpin>(
    io: &mut S,
    bytes: &[u8],
    bytewise: bool,
) -> std::io::Result<()> {
    if bytewise {
        for b in bytes {
            io.write_all(std::slice::from_ref(b)).await?;
            io.flush().await?;
        }
    } else {
        io.write_all(bytes).await?;
    }
    io.flush().await
}

/// The client's bytes with what legitimately differs between the two
/// listeners taken out: `date`, and the scheme and TLS properties echoed
/// back (which change the lengths).
fn normalize(bytes: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(bytes).replace("https", "http");
    // The connection properties echoed in a JSON body.
    while let Some(at) = text.find("[\"x-prop-connection-") {
        let end = text[at..].find("\"]").map_or(text.len(), |e| at + e + 2);
        let end = if text[end..].starts_with(',') {
            end + 1
        } else {
            end
        };
        text.replace_range(at..end, "");
    }
    text.split("\r\n")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("date:")
                && !l.starts_with("content-length:")
                && !l.starts_with("x-prop-connection-")
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// What the backend saw, normalized the same way.
fn seen(backend: &Backend, from: usize) -> Vec<String> {
    backend.received()[from..]
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.headers
                .retain(|(n, _)| !n.starts_with("x-prop-connection-"));
            normalize(r.to_json().to_string().as_bytes())
        })
        .collect()
}

/// Whether the lean HTTP/1.1 path is on (`WASMGATE_LEAN_HTTP1=off` turns it off).
fn lean() -> bool {
    !matches!(
        std::env::var("WASMGATE_LEAN_HTTP1").as_deref(),
        Ok("off" | "0" | "false" | "no")
    )
}

const CLOSE: &str = "GET /last HTTP/1.1\r\nhost: gw.test\r\nconnection: close\r\n\r\n";

fn cases() -> Vec<(&'static str, String)> {
    let get = |p: &str| format!("GET {p} HTTP/1.1\r\nhost: gw.test\r\n\r\n");
    vec![
        ("pipelined", format!("{}{}{CLOSE}", get("/a"), get("/b"))),
        (
            "hand-off mid-pipeline",
            format!(
                "{}POST /body HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 5\r\n\r\nhello{}{CLOSE}",
                get("/a"),
                get("/after")
            ),
        ),
        (
            "chunked mid-pipeline",
            format!(
                "{}POST /ch HTTP/1.1\r\nhost: gw.test\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n{}{CLOSE}",
                get("/a"),
                get("/after")
            ),
        ),
        (
            "cl+te",
            format!(
                "{}POST /s HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 40\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: gw.test\r\n\r\n{CLOSE}",
                get("/a")
            ),
        ),
        (
            "duplicate cl",
            format!(
                "{}POST /d HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 3\r\ncontent-length: 30\r\n\r\nabcGET /smuggled HTTP/1.1\r\nhost: gw.test\r\n\r\n{CLOSE}",
                get("/a")
            ),
        ),
        (
            "obs-fold",
            format!(
                "{}GET /f HTTP/1.1\r\nhost: gw.test\r\nx-a: 1\r\n  folded\r\n\r\n{CLOSE}",
                get("/a")
            ),
        ),
        (
            "bare lf",
            format!("{}GET /lf HTTP/1.1\nhost: gw.test\n\n{CLOSE}", get("/a")),
        ),
        (
            "expect",
            format!(
                "{}PUT /e HTTP/1.1\r\nhost: gw.test\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\nok{CLOSE}",
                get("/a")
            ),
        ),
        (
            "http/1.0",
            "GET /old HTTP/1.0\r\nhost: gw.test\r\n\r\n".to_owned(),
        ),
        (
            "h2 preface after a request",
            format!("{}PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", get("/a")),
        ),
        (
            "two hosts",
            format!(
                "{}GET /h HTTP/1.1\r\nhost: a.test\r\nhost: b.test\r\n\r\n{CLOSE}",
                get("/a")
            ),
        ),
        (
            "absolute form",
            format!(
                "{}GET http://gw.test/abs HTTP/1.1\r\nhost: gw.test\r\n\r\n{CLOSE}",
                get("/a")
            ),
        ),
        ("nothing after close", format!("{CLOSE}{}", get("/never"))),
        (
            "spoofed forwarding",
            format!(
                "GET /sp HTTP/1.1\r\nhost: gw.test\r\nx-forwarded-proto: http\r\nforwarded: proto=http\r\nx-real-ip: 1.2.3.4\r\n\r\n{CLOSE}"
            ),
        ),
        (
            "many pipelined",
            format!(
                "{}{CLOSE}",
                (0..40).map(|i| get(&format!("/m{i}"))).collect::<String>()
            ),
        ),
        (
            "big head",
            format!(
                "{}GET /big HTTP/1.1\r\nhost: gw.test\r\nx-big: {}\r\n\r\n{CLOSE}",
                get("/a"),
                "b".repeat(12_000)
            ),
        ),
        (
            "too big head",
            format!(
                "{}GET /huge HTTP/1.1\r\nhost: gw.test\r\nx-big: {}\r\n\r\n{CLOSE}",
                get("/a"),
                "h".repeat(70_000)
            ),
        ),
        ("garbage", "\x16\x03\x01 nonsense\r\n\r\n".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_over_tcp_and_tls_get_the_same_answers() -> anyhow::Result<()> {
    let s = Setup::start("").await?;
    // Half-closed after the bytes (TCP: FIN; TLS: close_notify and FIN),
    // complete and cut short.
    let mut all = cases();
    for (name, bytes) in [
        (
            "half-closed",
            format!("GET /hc HTTP/1.1\r\nhost: gw.test\r\n\r\n{CLOSE}"),
        ),
        (
            "half-closed pipeline",
            "GET /hc HTTP/1.1\r\nhost: gw.test\r\n\r\nGET /hc2 HTTP/1.1\r\nhost: gw.test\r\n\r\n"
                .to_owned(),
        ),
        (
            "half-closed mid-head",
            "GET /hc HTTP/1.1\r\nhost: gw.test\r\n".to_owned(),
        ),
        (
            "half-closed mid-body",
            "POST /hc HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 9\r\n\r\nabc".to_owned(),
        ),
        (
            "half-closed body",
            "POST /hc HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 3\r\n\r\nabc".to_owned(),
        ),
    ] {
        all.push((name, bytes));
    }
    for (name, bytes) in all {
        let half_close = name.starts_with("half-closed");
        // hyper answers a mid-connection HTTP/2 preface with a 400 or a
        // bare close depending on how much of it one read brought: only
        // whole here; large heads too (one record per byte is slow).
        let modes: &[bool] = if name.starts_with("h2 preface") || bytes.len() > 4096 {
            &[false]
        } else {
            &[false, true]
        };
        for &bytewise in modes {
            let from = s.backend.received().len();
            let mut tcp = TcpStream::connect(s.tcp_addr()).await?;
            tcp.set_nodelay(true)?;
            write(&mut tcp, bytes.as_bytes(), bytewise).await?;
            if half_close {
                tcp.shutdown().await?;
            }
            let (plain, _) = read_all(&mut tcp).await?;
            let plain_seen = seen(&s.backend, from);

            for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
                let from = s.backend.received().len();
                let mut tls = s.tls(alpn).await?;
                write(&mut tls, bytes.as_bytes(), bytewise).await?;
                if half_close {
                    tls.shutdown().await?;
                }
                let (secure, clean) = read_all(&mut tls).await?;
                let secure_seen = seen(&s.backend, from);
                let what = format!("{name} (bytewise {bytewise}, alpn {alpn:?})");
                // hyper closes without close_notify after a mid-connection
                // HTTP/2 preface, and (lean path off) after a head cut short.
                if !name.starts_with("h2 preface") && (lean() || name != "half-closed mid-head") {
                    assert!(clean, "{what}: no close_notify");
                }
                assert_eq!(normalize(&plain), normalize(&secure), "{what}");
                assert_eq!(plain_seen, secure_seen, "{what}");
                for r in &s.backend.received()[from..] {
                    assert_eq!(r.header_all("x-forwarded-proto"), ["https"], "{what}");
                    assert_eq!(r.header("forwarded"), None, "{what}");
                    assert_ne!(r.path, "/never", "{what}");
                    assert_eq!(r.header("x-prop-request-scheme"), Some("https"), "{what}");
                }
            }
            assert!(
                !String::from_utf8_lossy(&plain).contains("smuggled"),
                "{name}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_split_in_two_records_anywhere_is_served_once_in_order() -> anyhow::Result<()> {
    let s = Setup::start("").await?;
    let pipeline = format!(
        "GET /a HTTP/1.1\r\nhost: gw.test\r\n\r\nPOST /b HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 5\r\n\r\nhello{CLOSE}"
    );
    for k in 1..pipeline.len() {
        let from = s.backend.received().len();
        let mut tls = s.tls(&[b"http/1.1"]).await?;
        write(&mut tls, &pipeline.as_bytes()[..k], false).await?;
        write(&mut tls, &pipeline.as_bytes()[k..], false).await?;
        let (answer, clean) = read_all(&mut tls).await?;
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(
            answer.matches("HTTP/1.1 200").count(),
            3,
            "split at {k}: {answer}"
        );
        assert!(clean, "split at {k}");
        assert_eq!(
            s.paths_and_bodies(from),
            [
                ("/a".into(), vec![]),
                ("/b".into(), b"hello".to_vec()),
                ("/last".into(), vec![])
            ],
            "split at {k}"
        );
    }
    Ok(())
}

/// What a filter reads about the connection, as the backend saw it.
fn props(r: &backend::Received) -> [Option<String>; 4] {
    [
        "x-prop-request-scheme",
        "x-prop-connection-tls-version",
        "x-prop-connection-requested-server-name",
        "x-prop-connection-mtls",
    ]
    .map(|h| r.header(h).map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_looks_the_same_on_the_lean_and_hyper_paths() -> anyhow::Result<()> {
    let s = Setup::start("").await?;
    // Lean (ALPN http/1.1 or none), hyper by hand-off (a body), hyper by
    // ALPN h2; and by name: SNI other.test with Host gw.test.
    for (alpn, name) in [
        (&[b"http/1.1".as_slice()][..], "gw.test"),
        (&[], "gw.test"),
        (&[b"h2".as_slice()], "gw.test"),
        (&[b"http/1.1".as_slice()], "other.test"),
    ] {
        let h2 = alpn == [b"h2".as_slice()];
        let uri = if h2 { "https://gw.test/p" } else { "/p" };
        for body in ["", "with a body"] {
            let req = Request::post(uri)
                .header("host", "gw.test")
                .header("x-forwarded-proto", "http")
                .header("forwarded", "proto=http")
                .body(Full::new(Bytes::from(body)))?;
            let from = s.backend.received().len();
            let tls = tls_connect(s.tls_addr(), s.pki.client_config(None, alpn), name).await?;
            let chosen = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            assert_eq!(chosen.as_deref(), alpn.first().copied());
            let r = wasmgate_tests::serve::exchange(TokioIo::new(tls), h2, req).await?;
            assert_eq!(r.status(), 200);
            let got = s.backend.received()[from].clone();
            assert_eq!(got.body, body.as_bytes());
            assert_eq!(got.header_all("x-forwarded-proto"), ["https"]);
            assert_eq!(got.header("forwarded"), None);
            assert_eq!(
                props(&got),
                [
                    Some("https".into()),
                    Some("TLSv1.3".into()),
                    Some(name.into()),
                    Some("false".into()),
                ],
                "alpn {alpn:?}, body {body:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_tls_requests_are_never_forwarded_whole() -> anyhow::Result<()> {
    let s = Setup::start("").await?;
    let pieces = [
        // Mid-head, mid-body, mid-chunked body, between requests.
        "GET /t1 HTTP/1.1\r\nhost: gw.test\r\nx-a",
        "POST /t2 HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 10\r\n\r\nabc",
        "POST /t3 HTTP/1.1\r\nhost: gw.test\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
        "GET /t4 HTTP/1.1\r\nhost: gw.test\r\n\r\n",
    ];
    for piece in pieces {
        let mut tls = s.tls(&[b"http/1.1"]).await?;
        write(&mut tls, piece.as_bytes(), false).await?;
        // The TCP ends without close_notify: a truncation attack.
        let (tcp, _) = tls.get_mut();
        tcp.shutdown().await?;
        let (answer, _) = read_all(&mut tls).await?;
        let answer = String::from_utf8_lossy(&answer);
        if piece.ends_with("\r\n\r\n") {
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        } else {
            assert!(!answer.starts_with("HTTP/1.1 200"), "{piece}: {answer}");
        }
    }
    for r in s.backend.received() {
        assert!(
            r.path == "/t4" && r.complete,
            "a truncated request was forwarded: {r:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_notify_with_the_tcp_left_open_is_answered_then_closed() -> anyhow::Result<()> {
    let s = Setup::start("").await?;
    for body in [false, true] {
        let mut tls = s.tls(&[b"http/1.1"]).await?;
        let req = if body {
            "POST /half HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 2\r\n\r\nok"
        } else {
            "GET /half HTTP/1.1\r\nhost: gw.test\r\n\r\n"
        };
        write(&mut tls, req.as_bytes(), false).await?;
        // close_notify, and the TCP stays open both ways.
        tls.get_mut().1.send_close_notify();
        tls.flush().await?;
        let (answer, clean) = read_all(&mut tls).await?;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(clean, "the gateway ends with close_notify");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_update_between_and_within_requests_changes_nothing() -> anyhow::Result<()> {
    let s = Setup::start("").await?;
    let mut tls = s.tls(&[b"http/1.1"]).await?;
    let head = b"GET /k1 HTTP/1.1\r\nhost: gw.test\r\n";
    write(&mut tls, head, false).await?;
    tls.get_mut().1.refresh_traffic_keys()?;
    write(&mut tls, b"\r\n", false).await?;
    tls.get_mut().1.refresh_traffic_keys()?;
    write(
        &mut tls,
        b"POST /k2 HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 4\r\n\r\nab",
        false,
    )
    .await?;
    tls.get_mut().1.refresh_traffic_keys()?;
    write(&mut tls, b"cd", false).await?;
    write(&mut tls, CLOSE.as_bytes(), false).await?;
    let (answer, clean) = read_all(&mut tls).await?;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 3, "{answer}");
    assert!(clean);
    assert_eq!(
        s.paths_and_bodies(0),
        [
            ("/k1".into(), vec![]),
            ("/k2".into(), b"abcd".to_vec()),
            ("/last".into(), vec![])
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_tls_connections_are_cut() -> anyhow::Result<()> {
    let s = Setup::start("limits: { header_read_timeout: 400ms, idle_timeout: 800ms }").await?;
    // A head never finished.
    let mut slow = s.tls(&[b"http/1.1"]).await?;
    write(&mut slow, b"GET /slow HTTP/1.1\r\nhost: gw.test\r\n", false).await?;
    let started = tokio::time::Instant::now();
    let (answer, _) = read_all(&mut slow).await?;
    assert!(!String::from_utf8_lossy(&answer).contains("200"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // An idle keep-alive connection after one answer.
    let mut idle = s.tls(&[b"http/1.1"]).await?;
    write(
        &mut idle,
        b"GET /idle HTTP/1.1\r\nhost: gw.test\r\n\r\n",
        false,
    )
    .await?;
    let started = tokio::time::Instant::now();
    let (answer, _) = read_all(&mut idle).await?;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(s.backend.received().iter().all(|r| r.path != "/slow"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_tls_connections_and_finishes_in_flight_ones() -> anyhow::Result<()> {
    let pki = Pki::new("tls attacks CA");
    let server = pki.issue("gw", &["gw.test"]);
    let backend = RawBackend::start(|head| {
        if head.starts_with("GET /slow") {
            vec![
                wasmgate_tests::raw::Step::Wait(Duration::from_millis(500)),
                send("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow"),
            ]
        } else {
            vec![send("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")]
        }
    })
    .await?;
    let gw = gateway::start(&gateway_yaml(
        &server,
        &format!("http://{}", backend.addr),
        "",
    ))?;
    let addr = gw.handle.listeners[1];
    let config = pki.client_config(None, &[b"http/1.1"]);
    let (mut idle, mut busy) = idle_and_held(addr, config, &backend, b"\r\n\r\nok").await?;
    gw.handle.begin_shutdown();
    assert_drained(&mut idle, &mut busy).await
}

/// Two TLS connections to `addr`: one idle after an answered `GET /x`
/// (whose answer ends with `x_ends`), and one whose `GET /slow` `backend`
/// holds (returned once the backend has it).
async fn idle_and_held(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    backend: &RawBackend,
    x_ends: &[u8],
) -> anyhow::Result<(TlsStream<TcpStream>, TlsStream<TcpStream>)> {
    let mut idle = tls_connect(addr, config.clone(), "gw.test").await?;
    write(
        &mut idle,
        b"GET /x HTTP/1.1\r\nhost: gw.test\r\n\r\n",
        false,
    )
    .await?;
    let mut first = Vec::new();
    while !first.ends_with(x_ends) {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, idle.read(&mut chunk)).await??;
        assert!(n > 0, "{first:?}");
        first.extend_from_slice(&chunk[..n]);
    }
    assert!(first.starts_with(b"HTTP/1.1 200"), "{first:?}");
    let mut busy = tls_connect(addr, config, "gw.test").await?;
    write(
        &mut busy,
        b"GET /slow HTTP/1.1\r\nhost: gw.test\r\n\r\n",
        false,
    )
    .await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !backend.heads().iter().any(|h| h.starts_with("GET /slow")) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((idle, busy))
}

/// Once the gateway stops: the idle connection ends cleanly with nothing
/// more; the held one gets its whole answer, with `connection: close`, then
/// a clean end.
async fn assert_drained(
    idle: &mut TlsStream<TcpStream>,
    busy: &mut TlsStream<TcpStream>,
) -> anyhow::Result<()> {
    let (rest, clean) = read_all(idle).await?;
    assert!(rest.is_empty() && clean, "{rest:?}");
    let (answer, clean) = read_all(busy).await?;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow"),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(clean);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_choices_and_an_h2_preface_without_h2() -> anyhow::Result<()> {
    let s = Setup::start("").await?;
    // HTTP/2 by prior knowledge over ALPN http/1.1 or none, as on h2c.
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let tls = s.tls(alpn).await?;
        let req = Request::get("https://gw.test/pri").body(Full::new(Bytes::new()))?;
        let r = wasmgate_tests::serve::exchange(TokioIo::new(tls), true, req).await?;
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), http::Version::HTTP_2);
    }
    // HTTP/1.1 bytes over ALPN h2 (hyper's, either way): an answer, no hang.
    let mut tls = s.tls(&[b"h2"]).await?;
    write(&mut tls, CLOSE.as_bytes(), false).await?;
    read_all(&mut tls).await?;
    // Only an unknown protocol: refused in the handshake, and the gateway
    // goes on serving.
    let Err(e) = s.tls(&[b"spdy/1"]).await else {
        panic!("a handshake without a common protocol succeeded");
    };
    assert!(e.to_string().contains("NoApplicationProtocol"), "{e}");
    let mut tls = s.tls(&[b"http/1.1"]).await?;
    write(&mut tls, CLOSE.as_bytes(), false).await?;
    let (answer, _) = read_all(&mut tls).await?;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_resume_on_the_lean_path_and_a_foreign_ticket_means_a_full_handshake()
-> anyhow::Result<()> {
    let a = Setup::start("").await?;
    let yaml = gateway_yaml(&a.server, &a.backend.url(), "");
    let b = gateway::start(&yaml)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])?
            .with_root_certificates(a.pki.roots())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        for (addr, want) in [
            (a.tls_addr(), HandshakeKind::Full),
            (a.tls_addr(), HandshakeKind::Resumed),
            // Another process, another ticket key.
            (b.handle.listeners[1], HandshakeKind::Full),
        ] {
            let mut tls = tls_connect(addr, config.clone(), "gw.test").await?;
            assert_eq!(tls.get_ref().1.handshake_kind(), Some(want), "{version:?}");
            write(
                &mut tls,
                b"GET /r HTTP/1.1\r\nhost: gw.test\r\n\r\nGET /r2 HTTP/1.1\r\nhost: gw.test\r\nconnection: close\r\n\r\n",
                false,
            )
            .await?;
            let (answer, clean) = read_all(&mut tls).await?;
            let answer = String::from_utf8_lossy(&answer);
            assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
            assert!(
                answer.contains("\"x-prop-request-scheme\",\"https\""),
                "{answer}"
            );
            let tls_version = if version.version == rustls::ProtocolVersion::TLSv1_2 {
                "TLSv1.2"
            } else {
                "TLSv1.3"
            };
            assert_eq!(
                answer
                    .matches(&format!("x-prop-connection-tls-version: {tls_version}\r\n"))
                    .count(),
                2,
                "{answer}"
            );
            assert_eq!(
                answer
                    .matches("x-prop-connection-requested-server-name: gw.test\r\n")
                    .count(),
                2,
                "{answer}"
            );
            assert!(clean);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_lean_tls_connections_and_the_logs_hold_no_secret() -> anyhow::Result<()> {
    let pki = Pki::new("tls attacks CA");
    let server = pki.issue("gw", &["gw.test"]);
    let backend = RawBackend::start(|head| {
        let answer = send("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow");
        if head.starts_with("GET /slow") {
            vec![
                wasmgate_tests::raw::Step::Wait(Duration::from_millis(300)),
                answer,
            ]
        } else {
            vec![answer]
        }
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("gw.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
workers: 1
listeners:
  - address: 127.0.0.1:0
    tls: {{ cert: "{}", key: "{}" }}
upstreams: {{ backend: {{ url: "http://{}", connect_timeout: 1s, timeout: 3s }} }}
routes:
  - name: all
    match: {{}}
    upstream: backend
    filters:
      - wasm: {:?}
        config: {{ set: {{ headers: ["Authorization:Bearer tls-secret-7f3"] }} }}
"#,
            server.cert.display(),
            server.key.display(),
            backend.addr,
            gateway::secret_header(),
        ),
    )?;
    let gw = gateway::Process::run(&config, &[("RUST_LOG", "debug")])?;
    let config = pki.client_config(None, &[b"http/1.1"]);
    // Some failures to log: a handshake refused, a request cut short.
    assert!(
        tls_connect(
            gw.addr,
            Pki::new("other").client_config(None, &[]),
            "gw.test"
        )
        .await
        .is_err()
    );
    let mut cut = tls_connect(gw.addr, config.clone(), "gw.test").await?;
    write(
        &mut cut,
        b"POST /cut HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 9\r\n\r\nab",
        false,
    )
    .await?;
    cut.get_mut().0.shutdown().await?;
    read_all(&mut cut).await?;
    // An idle keep-alive connection and one waiting for its answer.
    let (mut idle, mut busy) = idle_and_held(gw.addr, config, &backend, b"slow").await?;
    gw.signal("TERM")?;
    assert_drained(&mut idle, &mut busy).await?;
    let (gw, code) = tokio::task::spawn_blocking(move || {
        let mut gw = gw;
        let code = gw.wait();
        (gw, code)
    })
    .await?;
    assert_eq!(code?, Some(0));
    let logs = gw.logs().join("\n");
    assert!(logs.contains("TLS handshake failed"), "{logs}");
    assert!(!logs.contains("tls-secret-7f3"), "{logs}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_trickled_bodies_arrive_whole_over_tls() -> anyhow::Result<()> {
    use wasmgate_tests::raw::Step;
    let piece = "z".repeat(100_000);
    let backend = RawBackend::start(move |head| {
        let pause = Step::Wait(Duration::from_millis(20));
        let mut steps = Vec::new();
        if head.starts_with("GET /length") {
            steps.push(send("HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n"));
            for _ in 0..10 {
                steps.extend([send(&piece), pause.clone()]);
            }
        } else if head.starts_with("GET /chunked") {
            steps.push(send(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            ));
            for _ in 0..10 {
                steps.extend([
                    send(format!("{:x}\r\n{piece}\r\n", piece.len())),
                    pause.clone(),
                ]);
            }
            steps.push(send("0\r\n\r\n"));
        } else {
            steps.push(send("HTTP/1.1 200 OK\r\n\r\n"));
            for _ in 0..5 {
                steps.extend([send(&piece), pause.clone()]);
            }
            steps.push(Step::Close);
        }
        steps
    })
    .await?;
    let pki = Pki::new("tls attacks CA");
    let server = pki.issue("gw", &["gw.test"]);
    let gw = gateway::start(&gateway_yaml(
        &server,
        &format!("http://{}", backend.addr),
        "",
    ))?;
    let requests = "GET /length HTTP/1.1\r\nhost: gw.test\r\n\r\nGET /chunked HTTP/1.1\r\nhost: gw.test\r\n\r\nGET /close HTTP/1.1\r\nhost: gw.test\r\nconnection: close\r\n\r\n";
    let mut tcp = TcpStream::connect(gw.handle.listeners[0]).await?;
    write(&mut tcp, requests.as_bytes(), false).await?;
    let (plain, _) = read_all(&mut tcp).await?;
    let mut tls = tls_connect(
        gw.handle.listeners[1],
        pki.client_config(None, &[b"http/1.1"]),
        "gw.test",
    )
    .await?;
    write(&mut tls, requests.as_bytes(), false).await?;
    let (secure, clean) = read_all(&mut tls).await?;
    assert!(clean);
    // 2.5 MB of body on both.
    let zs = |b: &[u8]| b.iter().filter(|c| **c == b'z').count();
    assert_eq!((zs(&plain), zs(&secure)), (2_500_000, 2_500_000));
    // (Chunk sizes follow the reads from the backend: not compared.)
    for answer in [&plain, &secure] {
        let text = String::from_utf8_lossy(answer);
        assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 3);
        assert_eq!(
            text.matches("\r\n0\r\n\r\n").count(),
            2,
            "both unsized bodies end"
        );
        assert!(text.ends_with("\r\n0\r\n\r\n"));
    }
    Ok(())
}
