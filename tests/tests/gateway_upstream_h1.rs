//! How the gateway proxies HTTP/1.1 *responses* from an upstream, pinned
//! down byte for byte: the upstream here is a raw TCP server ([`Raw`]) that
//! answers every request head with a scripted byte string, records the heads
//! it received and counts its connections.
//!
//! Covered: Content-Length, chunked (split across writes, with trailers),
//! close-delimited and HTTP/1.0 bodies; HEAD, 204 and 304 (no body);
//! `connection: close` and a pooled connection the upstream closed while
//! idle; a 100 Continue before the final response; garbage and an early
//! close (502); a 2 MiB body; hop-by-hop headers dropped; and the request
//! head the upstream receives.
//! Where it matters, the client keeps one connection and the gateway runs
//! one worker, so the upstream connection count shows pooling.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::{sleep, timeout},
};
use wasmgate_tests::{
    gateway::{self, Reply, TIMEOUT, TestGateway, get},
    raw::{header_values, read_head},
    record::Log,
    serve::accept_each,
};

/// Pause between the pieces of one scripted response.
const PAUSE: Duration = Duration::from_millis(10);

/// When an upstream connection closes.
#[derive(Clone, Copy)]
enum Close {
    /// Never: it answers as many requests as come.
    Never,
    /// After answering this many requests (0: before reading any), waiting
    /// this long first.
    After(usize, Duration),
}

/// Closes right after the `n`th response.
const fn after(n: usize) -> Close {
    Close::After(n, Duration::ZERO)
}

/// The response to one request head, as pieces written with [`PAUSE`]
/// between them.
type Script = Arc<dyn Fn(&str) -> Vec<Vec<u8>> + Send + Sync>;

/// A raw HTTP/1.1 upstream on 127.0.0.1; stops when dropped.
struct Raw {
    addr: SocketAddr,
    heads: Log<String>,
    accepted: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl Raw {
    async fn start(
        close: Close,
        script: impl Fn(&str) -> Vec<Vec<u8>> + Send + Sync + 'static,
    ) -> anyhow::Result<Raw> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (heads, accepted) = (Log::default(), Arc::new(AtomicUsize::new(0)));
        let script: Script = Arc::new(script);
        let (log, count) = (heads.clone(), accepted.clone());
        let server = tokio::spawn(accept_each(listener, move |tcp| {
            count.fetch_add(1, Ordering::SeqCst);
            serve(tcp, close, script.clone(), log.clone())
        }));
        Ok(Raw {
            addr,
            heads,
            accepted,
            server,
        })
    }

    /// Answers every request with the same bytes.
    async fn fixed(close: Close, response: &'static str) -> anyhow::Result<Raw> {
        Raw::start(close, move |_| vec![response.into()]).await
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// A gateway (one worker) routing everything here.
    fn gateway(&self) -> anyhow::Result<TestGateway> {
        gateway::start(&format!(
            r#"
workers: 1
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams:
  backend: {{ url: "http://{}", connect_timeout: 1s, timeout: 5s }}
routes: [{{ name: all, match: {{}}, upstream: backend }}]
"#,
            self.addr
        ))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(mut tcp: TcpStream, close: Close, script: Script, heads: Log<String>) {
    let _ = tcp.set_nodelay(true);
    let mut buf = Vec::new();
    for answered in 0.. {
        if let Close::After(n, delay) = close
            && answered == n
        {
            sleep(delay).await;
            let _ = tcp.shutdown().await;
            return;
        }
        let Some(head) = read_head(&mut tcp, &mut buf).await else {
            return;
        };
        heads.push(head.clone());
        for (i, piece) in script(&head).iter().enumerate() {
            if i > 0 {
                sleep(PAUSE).await;
            }
            if tcp.write_all(piece).await.is_err() {
                return;
            }
        }
    }
}

/// One client connection to the gateway, kept open across requests.
struct Client(http1::SendRequest<Full<Bytes>>);

impl Client {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(Client(sender))
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<Reply> {
        self.send("GET", path, "").await
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &'static str,
    ) -> anyhow::Result<Reply> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "a.test")
            .body(Full::new(Bytes::from_static(body.as_bytes())))?;
        let exchange = async {
            self.0.ready().await?;
            let response = self.0.send_request(req).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
                version: parts.version,
            })
        };
        timeout(TIMEOUT, exchange).await.context("no answer")?
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_body_passes_and_connection_is_reused() -> anyhow::Result<()> {
    let up = Raw::fixed(
        Close::Never,
        "HTTP/1.1 201 Created\r\ncontent-length: 11\r\nx-up: 1\r\n\r\nhello world",
    )
    .await?;
    let gw = up.gateway()?;
    let mut client = Client::connect(gw.addr()).await?;
    for path in ["/one", "/two"] {
        let r = client.get(path).await?;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.headers["x-up"], "1");
        assert_eq!(r.text(), "hello world");
    }
    assert_eq!(up.accepted(), 1, "one pooled upstream connection");
    assert_eq!(up.heads.snapshot().len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_dropped() -> anyhow::Result<()> {
    let up = Raw::fixed(
        Close::Never,
        "HTTP/1.1 200 OK\r\nconnection: keep-alive, x-up-private\r\nx-up-private: 1\r\n\
         keep-alive: timeout=5\r\nproxy-connection: keep-alive\r\nx-up: kept\r\n\
         content-length: 2\r\n\r\nok",
    )
    .await?;
    let gw = up.gateway()?;
    let mut client = Client::connect(gw.addr()).await?;
    // A GET takes the lean client; a POST with a body takes hyper's.
    for (method, body) in [("GET", ""), ("POST", "data")] {
        let r = client.send(method, "/", body).await?;
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.text(), "ok", "{method}");
        assert_eq!(r.headers["x-up"], "kept", "{method}");
        for hop in ["x-up-private", "keep-alive", "proxy-connection"] {
            assert!(
                !r.headers.contains_key(hop),
                "{method}: {hop} reached the client"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_split_across_writes_arrives_whole() -> anyhow::Result<()> {
    let up = Raw::start(Close::Never, |_| {
        [
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
            "7\r\n, wo",
            "rld\r\n1",
            "0\r\n0123456789abcdef\r\n",
            "0\r\n\r\n",
        ]
        .map(Vec::from)
        .to_vec()
    })
    .await?;
    let gw = up.gateway()?;
    let r = get(gw.addr(), "a.test", "/", &[]).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello, world0123456789abcdef");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_with_trailers_arrives_whole() -> anyhow::Result<()> {
    let up = Raw::fixed(
        Close::Never,
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-trailer\r\n\r\n\
         4\r\nbody\r\n0\r\nx-trailer: t\r\n\r\n",
    )
    .await?;
    let gw = up.gateway()?;
    let mut client = Client::connect(gw.addr()).await?;
    for _ in 0..2 {
        let r = client.get("/").await?;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "body");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delimited_body_arrives_whole() -> anyhow::Result<()> {
    let up = Raw::fixed(after(1), "HTTP/1.1 200 OK\r\nx-up: 1\r\n\r\nuntil the end").await?;
    let gw = up.gateway()?;
    let mut client = Client::connect(gw.addr()).await?;
    for _ in 0..2 {
        let r = client.get("/").await?;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "until the end");
    }
    assert_eq!(
        up.accepted(),
        2,
        "the second request needs a new connection"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_body_until_close_arrives_whole() -> anyhow::Result<()> {
    let up = Raw::fixed(after(1), "HTTP/1.0 200 OK\r\nx-up: 1\r\n\r\nold style body").await?;
    let gw = up.gateway()?;
    let r = get(gw.addr(), "a.test", "/", &[]).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "old style body");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_response_keeps_content_length_and_has_no_body() -> anyhow::Result<()> {
    let up = Raw::start(Close::Never, |head| {
        let response = if head.starts_with("HEAD ") {
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"
        } else {
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        };
        vec![response.into()]
    })
    .await?;
    let gw = up.gateway()?;
    // A raw client: body bytes after the HEAD response would show up in
    // front of the next response.
    let mut tcp = TcpStream::connect(gw.addr()).await?;
    let mut buf = Vec::new();
    tcp.write_all(b"HEAD /h HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await?;
    let head = timeout(TIMEOUT, read_head(&mut tcp, &mut buf))
        .await?
        .context("no HEAD response")?;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(header_values(&head, "content-length"), ["100"], "{head}");
    tcp.write_all(b"GET /after HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await?;
    let next = timeout(TIMEOUT, read_head(&mut tcp, &mut buf))
        .await?
        .context("no GET response")?;
    assert!(next.starts_with("HTTP/1.1 200 "), "{next}");
    while buf.len() < 2 {
        let mut chunk = [0u8; 64];
        let n = timeout(TIMEOUT, tcp.read(&mut chunk)).await??;
        anyhow::ensure!(n > 0, "closed before the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(buf, b"ok");
    // The HEAD response left its upstream connection reusable.
    assert_eq!(up.accepted(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_content_and_not_modified_pass_through() -> anyhow::Result<()> {
    let up = Raw::start(Close::Never, |head| {
        let response = if head.starts_with("GET /204 ") {
            "HTTP/1.1 204 No Content\r\nx-up: 1\r\n\r\n"
        } else if head.starts_with("GET /304 ") {
            "HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n"
        } else {
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        };
        vec![response.into()]
    })
    .await?;
    let gw = up.gateway()?;
    let mut client = Client::connect(gw.addr()).await?;
    let r = client.get("/204").await?;
    assert_eq!(
        (r.status, r.headers["x-up"].as_bytes()),
        (StatusCode::NO_CONTENT, &b"1"[..])
    );
    assert!(r.body.is_empty());
    let r = client.get("/304").await?;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers["etag"], "\"v1\"");
    assert!(r.body.is_empty());
    let r = client.get("/ok").await?;
    assert_eq!((r.status, r.text()), (StatusCode::OK, "ok".to_string()));
    assert_eq!(up.accepted(), 1, "one pooled upstream connection");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_from_upstream_means_a_new_connection() -> anyhow::Result<()> {
    let up = Raw::fixed(
        after(1),
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
    )
    .await?;
    let gw = up.gateway()?;
    let mut client = Client::connect(gw.addr()).await?;
    for _ in 0..2 {
        let r = client.get("/").await?;
        assert_eq!((r.status, r.text()), (StatusCode::OK, "ok".to_string()));
    }
    assert_eq!(up.accepted(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connection_closed_while_idle_is_not_a_502() -> anyhow::Result<()> {
    // Keep-alive response, then the upstream closes the idle connection.
    let up = Raw::fixed(
        Close::After(1, Duration::from_millis(50)),
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    )
    .await?;
    let gw = up.gateway()?;
    let mut client = Client::connect(gw.addr()).await?;
    assert_eq!(client.get("/first").await?.status, 200);
    sleep(Duration::from_millis(200)).await;
    let r = client.get("/second").await?;
    assert_eq!((r.status, r.text()), (StatusCode::OK, "ok".to_string()));
    assert_eq!(up.accepted(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_before_the_final_response_is_skipped() -> anyhow::Result<()> {
    let up = Raw::fixed(
        Close::Never,
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    )
    .await?;
    let gw = up.gateway()?;
    let r = get(gw.addr(), "a.test", "/", &[]).await?;
    assert_eq!((r.status, r.text()), (StatusCode::OK, "ok".to_string()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_or_an_early_close_from_upstream_is_502() -> anyhow::Result<()> {
    // Garbage after the request; a close before any answer.
    for (close, answer) in [(after(1), "not http\r\n\r\n"), (after(0), "")] {
        let up = Raw::fixed(close, answer).await?;
        let gw = up.gateway()?;
        let r = get(gw.addr(), "a.test", "/", &[]).await?;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{answer:?}");
        assert_eq!(r.text(), "upstream backend failed\n", "{answer:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_streamed_body_arrives_intact() -> anyhow::Result<()> {
    const SIZE: usize = 2 << 20;
    let body: Vec<u8> = (0..SIZE)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect();
    let expected = fnv1a(&body);
    let up = Raw::start(Close::Never, move |_| {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n");
        std::iter::once(head.into_bytes())
            .chain(body.chunks(64 << 10).map(<[u8]>::to_vec))
            .collect()
    })
    .await?;
    let gw = up.gateway()?;
    let r = get(gw.addr(), "a.test", "/big", &[]).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), SIZE);
    assert_eq!(fnv1a(&r.body), expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_receives_one_host_and_x_forwarded_for() -> anyhow::Result<()> {
    let up = Raw::fixed(Close::Never, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await?;
    let gw = up.gateway()?;
    assert_eq!(
        get(gw.addr(), "a.test", "/path?q=1", &[]).await?.status,
        200
    );
    let heads = up.heads.snapshot();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = &heads[0];
    assert!(head.starts_with("GET /path?q=1 HTTP/1.1\r\n"), "{head}");
    assert_eq!(header_values(head, "host"), ["a.test"], "{head}");
    assert_eq!(
        header_values(head, "x-forwarded-for"),
        ["127.0.0.1"],
        "{head}"
    );
    Ok(())
}

/// 64-bit FNV-1a, a checksum that notices reordered bytes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
