//! The lean HTTP/1.1 loop gives an idle keep-alive connection's buffers to
//! a per-worker spare list and waits on readiness without a buffer
//! (listener/h1.rs). Attacked from outside, with raw sockets (plain TCP and
//! TLS, ALPN `http/1.1` or none) against a one-worker gateway and an echo
//! backend:
//!
//! - many concurrent keep-alive connections, each with its own markers in
//!   paths, headers and bodies of varied sizes (heads over the read size,
//!   bodies over the copy limit), sequential, pipelined, split across many
//!   small writes (partial heads), slow, handed to hyper mid-connection,
//!   cut or reset: every answer is its own request's, and no connection's
//!   marker ever shows in another's answer or upstream request;
//! - liveness: idle then a request; a first byte, a pause, the rest; a
//!   half-close or a reset while idle closes the connection; requests
//!   followed at once by the end of the stream (FIN, `close_notify`) are
//!   answered, then the connection closed;
//! - TLS: idle then a request, a request in many records with pauses, a
//!   KeyUpdate while idle, `close_notify` while idle;
//! - pipelining: two requests in one write, a request with the first bytes
//!   of the next, a lean GET then a POST for hyper then a GET;
//! - the built binary: 200 idle, 50 half-closed and TLS connections (idle,
//!   after a KeyUpdate, after `close_notify`) cost no CPU; SIGTERM with 100
//!   idle connections closes them all and the process exits well within
//!   the drain time.
//!
//! Passes with `WASMGATE_LEAN_HTTP1=off` too (hyper everywhere): the same
//! answers.

use std::{collections::BTreeSet, net::SocketAddr, sync::Arc, time::Duration};

use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use wasmgate_tests::{
    backend::{self, Backend},
    gateway::{self, TestGateway},
    tls::{CertFiles, Pki},
};

const WAIT: Duration = Duration::from_secs(10);

/// A one-worker gateway, a plain listener (first) and an HTTPS one
/// (second), everything to `upstream`.
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
upstreams: {{ backend: {{ url: "{upstream}", connect_timeout: 1s, timeout: 5s }} }}
routes:
  - name: all
    match: {{}}
    upstream: backend
"#,
        server.cert.display(),
        server.key.display(),
    )
}

struct Setup {
    pki: Pki,
    backend: Backend,
    gw: TestGateway,
    _server: CertFiles,
}

impl Setup {
    async fn start() -> anyhow::Result<Setup> {
        let pki = Pki::new("idle buffers CA");
        let server = pki.issue("gw", &["gw.test"]);
        let backend = backend::start().await?;
        let gw = gateway::start(&gateway_yaml(&server, &backend.url(), ""))?;
        Ok(Setup {
            pki,
            backend,
            gw,
            _server: server,
        })
    }

    fn tcp_addr(&self) -> SocketAddr {
        self.gw.handle.listeners[0]
    }

    fn tls_addr(&self) -> SocketAddr {
        self.gw.handle.listeners[1]
    }

    async fn tcp(&self) -> anyhow::Result<Conn<TcpStream>> {
        tcp_connect(self.tcp_addr()).await
    }

    async fn tls(&self, alpn: &[&[u8]]) -> anyhow::Result<Conn<Tls>> {
        tls_connect(self.tls_addr(), self.pki.client_config(None, alpn)).await
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tcp_connect(addr: SocketAddr) -> anyhow::Result<Conn<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(Conn::new(tcp))
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<Conn<Tls>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("gw.test")?, tcp)
        .await?;
    Ok(Conn::new(tls))
}

/// One answer as read off the wire.
#[derive(Debug)]
struct Answer {
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The echo backend's JSON.
    fn echo(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            anyhow::anyhow!(
                "not JSON ({e}): {} {}",
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn path(&self) -> String {
        self.echo()
            .ok()
            .and_then(|v| v["path"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn wire(&self) -> String {
        format!("{}{}", self.head, String::from_utf8_lossy(&self.body))
    }
}

/// A client connection with its read buffer (pipelined answers may arrive
/// in one read).
struct Conn<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(io: S) -> Self {
        Conn {
            io,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Writes `bytes` in pieces of `piece` bytes (on TLS: one record
    /// each), pausing `pause` between them.
    async fn send_split(
        &mut self,
        bytes: &[u8],
        piece: usize,
        pause: Duration,
    ) -> std::io::Result<()> {
        for (i, part) in bytes.chunks(piece).enumerate() {
            if i > 0 && !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            self.send(part).await?;
        }
        Ok(())
    }

    /// Reads more; false at the end of the stream.
    async fn fill(&mut self) -> anyhow::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(WAIT, self.io.read(&mut chunk))
            .await
            .map_err(|_| anyhow::anyhow!("no bytes within {WAIT:?}; have {:?}", self.text()))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Reads one whole answer (sized, chunked or to the end).
    async fn answer(&mut self) -> anyhow::Result<Answer> {
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            anyhow::ensure!(self.fill().await?, "ended before a head: {:?}", self.text());
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end);
        let lower = head.to_ascii_lowercase();
        let length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse::<usize>())
            .transpose()?;
        let body = if let Some(n) = length {
            while self.buf.len() < n {
                anyhow::ensure!(self.fill().await?, "body cut: {head}");
            }
            self.buf.drain(..n).collect()
        } else if lower.contains("transfer-encoding: chunked") {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break at;
                    }
                    anyhow::ensure!(self.fill().await?, "chunk cut: {head}");
                };
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&self.buf[..line_end]).trim(),
                    16,
                )?;
                while self.buf.len() < line_end + 2 + size + 2 {
                    anyhow::ensure!(self.fill().await?, "chunk cut: {head}");
                }
                body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break body;
                }
            }
        } else {
            while self.fill().await? {}
            std::mem::take(&mut self.buf)
        };
        Ok(Answer { head, body })
    }

    /// Reads until the end of the stream: what came, and whether it ended
    /// cleanly (on TLS: with `close_notify`) rather than with an error.
    async fn rest(&mut self) -> anyhow::Result<(Vec<u8>, bool)> {
        let mut chunk = [0u8; 8192];
        loop {
            match tokio::time::timeout(WAIT, self.io.read(&mut chunk)).await {
                Err(_) => anyhow::bail!("not closed within {WAIT:?}; have {:?}", self.text()),
                Ok(Ok(0)) => return Ok((std::mem::take(&mut self.buf), true)),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(_)) => return Ok((std::mem::take(&mut self.buf), false)),
            }
        }
    }
}

/// A GET whose path, marker header and padding carry connection `c`'s
/// marker (`zq<c>q`); `pad` bytes of padding.
fn get(c: usize, i: usize, pad: usize, close: bool) -> String {
    let token = format!("zq{c}q");
    let padding: String = token.repeat(pad / token.len() + 1)[..pad.max(1)].to_owned();
    format!(
        "GET /{token}{i}/r?m={token}{i} HTTP/1.1\r\nhost: gw.test\r\nx-marker: {token}{i}\r\nx-pad: {padding}\r\n{}\r\n",
        if close { "connection: close\r\n" } else { "" }
    )
}

/// A POST (hyper's on the lean path) with a body of `len` marker bytes.
fn post(c: usize, i: usize, len: usize) -> String {
    let token = format!("zq{c}q");
    let body: String = token.repeat(len / token.len() + 1)[..len].to_owned();
    format!(
        "POST /{token}{i}/p HTTP/1.1\r\nhost: gw.test\r\nx-marker: {token}{i}\r\ncontent-length: {len}\r\n\r\n{body}"
    )
}

/// Every connection number a `zq<n>q` marker in `text` names.
fn markers(text: &str) -> BTreeSet<usize> {
    text.match_indices("zq")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (!digits.is_empty() && rest[digits.len()..].starts_with('q'))
                .then(|| digits.parse().ok())
                .flatten()
        })
        .collect()
}

/// The answer is connection `c`'s request `i`, and names no other connection.
fn assert_own(c: usize, i: usize, answer: &Answer, method: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        answer.status() == 200,
        "conn {c} req {i}: {}",
        answer.wire()
    );
    let echo = answer.echo()?;
    let path = echo["path"].as_str().unwrap_or_default();
    anyhow::ensure!(
        path.starts_with(&format!("/zq{c}q{i}/")) && echo["method"] == method,
        "conn {c} req {i} ({method}) got the answer to {} {path}",
        echo["method"]
    );
    let named = markers(&answer.wire());
    anyhow::ensure!(
        named == BTreeSet::from([c]),
        "conn {c} req {i}: answer names connections {named:?}: {}",
        answer.wire()
    );
    Ok(())
}

/// Pseudo-random, reproducible.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

const PADS: [usize; 7] = [1, 40, 700, 3_000, 9_000, 17_000, 30_000];

/// Connection `c`'s exchange, by its mode: how many requests reached the
/// backend from it.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    c: usize,
    mut conn: Conn<S>,
) -> anyhow::Result<usize> {
    let pad = |i: usize| PADS[(mix((c * 31 + i) as u64) % PADS.len() as u64) as usize];
    let pause = |i: usize| Duration::from_millis(1 + mix((c * 7 + i) as u64) % 20);
    let n = 4 + c % 3;
    match c % 7 {
        // One at a time.
        0 => {
            for i in 0..n {
                conn.send(get(c, i, pad(i), false).as_bytes()).await?;
                assert_own(c, i, &conn.answer().await?, "GET")?;
            }
            Ok(n)
        }
        // All pipelined in one write.
        1 => {
            let all: String = (0..n).map(|i| get(c, i, pad(i), false)).collect();
            conn.send(all.as_bytes()).await?;
            for i in 0..n {
                assert_own(c, i, &conn.answer().await?, "GET")?;
            }
            Ok(n)
        }
        // Each head in small pieces with pauses: partial heads.
        2 => {
            for i in 0..n {
                let req = get(c, i, pad(i).min(3_000), false);
                let piece = 1 + (mix(c as u64 + i as u64) % 97) as usize;
                let pieces = req.len().div_ceil(piece);
                let pause = if pieces > 40 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(2)
                };
                conn.send_split(req.as_bytes(), piece, pause).await?;
                assert_own(c, i, &conn.answer().await?, "GET")?;
            }
            Ok(n)
        }
        // Slow: idle between requests, while the others take the buffers.
        3 => {
            for i in 0..n {
                tokio::time::sleep(pause(i) * 3).await;
                conn.send(get(c, i, pad(i), false).as_bytes()).await?;
                assert_own(c, i, &conn.answer().await?, "GET")?;
            }
            Ok(n)
        }
        // Lean GETs, a POST (hyper's from there on), more GETs, close.
        4 => {
            conn.send(get(c, 0, pad(0), false).as_bytes()).await?;
            assert_own(c, 0, &conn.answer().await?, "GET")?;
            tokio::time::sleep(pause(1)).await;
            conn.send(post(c, 1, pad(1)).as_bytes()).await?;
            let answer = conn.answer().await?;
            assert_own(c, 1, &answer, "POST")?;
            let body = answer.echo()?["body"].as_str().unwrap_or_default().len();
            anyhow::ensure!(body == pad(1), "conn {c}: body {body} of {}", pad(1));
            conn.send(get(c, 2, pad(2), true).as_bytes()).await?;
            assert_own(c, 2, &conn.answer().await?, "GET")?;
            let (rest, _) = conn.rest().await?;
            anyhow::ensure!(rest.is_empty(), "conn {c}: after close: {rest:?}");
            Ok(3)
        }
        // A request with the first bytes of the next, a pause, the rest.
        5 => {
            let reqs: Vec<String> = (0..n).map(|i| get(c, i, pad(i), false)).collect();
            let mut sent = 0;
            for i in 0..n {
                let mut now = reqs[i][sent..].to_owned();
                sent = 0;
                if let Some(next) = reqs.get(i + 1) {
                    sent = 1 + (mix(c as u64 * 3 + i as u64) as usize) % (next.len() - 1);
                    now.push_str(&next[..sent]);
                }
                conn.send(now.as_bytes()).await?;
                assert_own(c, i, &conn.answer().await?, "GET")?;
                tokio::time::sleep(pause(i)).await;
            }
            Ok(n)
        }
        // Answered requests, then a head cut short and the connection
        // dropped.
        _ => {
            for i in 0..2 {
                conn.send(get(c, i, pad(i), false).as_bytes()).await?;
                assert_own(c, i, &conn.answer().await?, "GET")?;
            }
            let cut = get(c, 2, pad(2), false);
            conn.send(&cut.as_bytes()[..cut.len() / 2]).await?;
            tokio::time::sleep(pause(2)).await;
            Ok(2)
        }
    }
}

/// Many concurrent keep-alive connections on one worker, plain and TLS,
/// each with its own markers: every answer is its own request's, no answer
/// or upstream request names another connection, and the backend gets
/// exactly what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_never_see_each_others_bytes() -> anyhow::Result<()> {
    let s = Arc::new(Setup::start().await?);
    let mut tasks = tokio::task::JoinSet::new();
    const PLAIN: usize = 56;
    const TLS: usize = 28;
    for c in 0..PLAIN + TLS {
        let s = s.clone();
        tasks.spawn(async move {
            let sent = if c < PLAIN {
                exchange(c, s.tcp().await?).await
            } else {
                let alpn: &[&[u8]] = if c % 2 == 0 { &[b"http/1.1"] } else { &[] };
                exchange(c, s.tls(alpn).await?).await
            };
            sent.map(|n| (c, n))
        });
    }
    let mut expected = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Some(done) = tokio::time::timeout_at(deadline, tasks.join_next()).await? {
        let (c, n) = done??;
        expected.insert(c, n);
    }
    let total: usize = expected.values().sum();
    let seen = s.backend.wait_for_requests(total, WAIT).await;
    let mut per_conn = std::collections::BTreeMap::<usize, usize>::new();
    for r in &seen {
        let named = markers(&r.to_json().to_string());
        assert_eq!(named.len(), 1, "an upstream request names {named:?}: {r:?}");
        let c = *named.first().unwrap();
        *per_conn.entry(c).or_default() += 1;
        // The padding arrived whole and unmixed.
        if let Some(pad) = r.header("x-pad") {
            let token = format!("zq{c}q");
            assert!(
                token.repeat(pad.len() / token.len() + 1).starts_with(pad),
                "conn {c}: padding altered: {pad:.200}"
            );
        }
    }
    assert_eq!(per_conn, expected, "requests per connection at the backend");
    Ok(())
}

/// Idle then a request; a first byte, a pause, the rest; a partial head
/// after an answer, a pause, the rest: all answered, plain and TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_paused_requests_are_answered() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        c: usize,
        mut conn: Conn<S>,
    ) -> anyhow::Result<()> {
        // Idle before any request.
        tokio::time::sleep(Duration::from_millis(300)).await;
        conn.send(get(c, 0, 10, false).as_bytes()).await?;
        assert_own(c, 0, &conn.answer().await?, "GET")?;
        // Idle after an answer (the buffers given away).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let req = get(c, 1, 5_000, false);
        conn.send(&req.as_bytes()[..1]).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.send(&req.as_bytes()[1..]).await?;
        assert_own(c, 1, &conn.answer().await?, "GET")?;
        // A partial head (the buffer kept), a pause, the rest.
        let req = get(c, 2, 20, false);
        conn.send(&req.as_bytes()[..req.len() - 3]).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.send(&req.as_bytes()[req.len() - 3..]).await?;
        assert_own(c, 2, &conn.answer().await?, "GET")?;
        Ok(())
    }
    let (a, b, c) = tokio::join!(
        async { run(1, s.tcp().await?).await },
        async { run(2, s.tls(&[b"http/1.1"]).await?).await },
        async { run(3, s.tls(&[]).await?).await },
    );
    a?;
    b?;
    c?;
    Ok(())
}

/// An idle connection the client half-closes is closed by the gateway; one
/// the client resets goes away; the gateway serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_or_reset_idle_connections_close() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let mut half = Vec::new();
    for c in 0..20 {
        let mut conn = s.tcp().await?;
        if c % 2 == 0 {
            conn.send(get(c, 0, 100, false).as_bytes()).await?;
            assert_own(c, 0, &conn.answer().await?, "GET")?;
        }
        half.push(conn);
    }
    // Resets while idle (before and after an answer).
    for c in 20..30 {
        let mut conn = s.tcp().await?;
        if c % 2 == 0 {
            conn.send(get(c, 0, 100, false).as_bytes()).await?;
            assert_own(c, 0, &conn.answer().await?, "GET")?;
        }
        conn.io.set_zero_linger()?;
        drop(conn);
    }
    let started = tokio::time::Instant::now();
    for conn in &mut half {
        conn.io.shutdown().await?;
    }
    for conn in &mut half {
        let (rest, _) = conn.rest().await?;
        assert!(rest.is_empty(), "{rest:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // TLS: a half-close without close_notify, and close_notify alone.
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let mut conn = s.tls(alpn).await?;
        conn.send(get(40, 0, 10, false).as_bytes()).await?;
        assert_own(40, 0, &conn.answer().await?, "GET")?;
        conn.io.get_mut().0.shutdown().await?;
        conn.rest().await?;
    }
    let mut conn = s.tcp().await?;
    conn.send(get(41, 0, 10, true).as_bytes()).await?;
    assert_own(41, 0, &conn.answer().await?, "GET")?;
    Ok(())
}

/// Requests followed at once by the end of the client's stream (a TCP
/// half-close; on TLS also `close_notify`, or a half-close without it),
/// after an idle spell or not: every request is answered, in order, and the
/// connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_then_the_end_of_stream_are_answered_then_closed() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    #[derive(Clone, Copy, Debug)]
    enum End {
        Fin,
        CloseNotify,
        CloseNotifyAndFin,
    }
    for (c, tls, end, idle_first) in [
        (1, false, End::Fin, false),
        (2, false, End::Fin, true),
        (3, true, End::Fin, false),
        (4, true, End::Fin, true),
        (5, true, End::CloseNotify, false),
        (6, true, End::CloseNotify, true),
        (7, true, End::CloseNotifyAndFin, true),
    ] {
        let pipeline = format!("{}{}", get(c, 1, 50, false), get(c, 2, 9_000, false));
        let answers = if tls {
            let mut conn = s.tls(&[b"http/1.1"]).await?;
            if idle_first {
                conn.send(get(c, 0, 10, false).as_bytes()).await?;
                assert_own(c, 0, &conn.answer().await?, "GET")?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            conn.send(pipeline.as_bytes()).await?;
            match end {
                End::Fin => conn.io.get_mut().0.shutdown().await?,
                End::CloseNotify => {
                    conn.io.get_mut().1.send_close_notify();
                    conn.io.flush().await?;
                }
                End::CloseNotifyAndFin => conn.io.shutdown().await?,
            }
            (conn.answer().await, conn.answer().await, conn.rest().await)
        } else {
            let mut conn = s.tcp().await?;
            if idle_first {
                conn.send(get(c, 0, 10, false).as_bytes()).await?;
                assert_own(c, 0, &conn.answer().await?, "GET")?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            conn.send(pipeline.as_bytes()).await?;
            conn.io.shutdown().await?;
            (conn.answer().await, conn.answer().await, conn.rest().await)
        };
        let what = format!("conn {c} ({end:?}, tls {tls}, idle first {idle_first})");
        let (first, second, rest) = answers;
        assert_own(
            c,
            1,
            &first.map_err(|e| anyhow::anyhow!("{what}: {e}"))?,
            "GET",
        )?;
        assert_own(
            c,
            2,
            &second.map_err(|e| anyhow::anyhow!("{what}: {e}"))?,
            "GET",
        )?;
        let (rest, _) = rest.map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        assert!(rest.is_empty(), "{what}: {rest:?}");
    }
    Ok(())
}

/// TLS, ALPN `http/1.1` and none: idle then a request; a request in many
/// records with pauses; a KeyUpdate while idle, then a request; a
/// `close_notify` while idle is answered with `close_notify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_idle_key_update_split_records_and_close_notify() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    for (c, alpn) in [(1, &[b"http/1.1".as_slice()][..]), (2, &[])] {
        let mut conn = s.tls(alpn).await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
        conn.send(get(c, 0, 2_000, false).as_bytes()).await?;
        assert_own(c, 0, &conn.answer().await?, "GET")?;
        // Many records, with pauses.
        conn.send_split(
            get(c, 1, 300, false).as_bytes(),
            7,
            Duration::from_millis(1),
        )
        .await?;
        assert_own(c, 1, &conn.answer().await?, "GET")?;
        // A KeyUpdate while idle, then a request after a pause.
        conn.io.get_mut().1.refresh_traffic_keys()?;
        conn.send(b"").await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
        conn.send(get(c, 2, 40, false).as_bytes()).await?;
        assert_own(c, 2, &conn.answer().await?, "GET")?;
        // Two KeyUpdates in a row, a request in the same flight.
        conn.io.get_mut().1.refresh_traffic_keys()?;
        conn.send(b"").await?;
        conn.io.get_mut().1.refresh_traffic_keys()?;
        conn.send(get(c, 3, 40, false).as_bytes()).await?;
        assert_own(c, 3, &conn.answer().await?, "GET")?;
        // close_notify while idle.
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.io.get_mut().1.send_close_notify();
        conn.send(b"").await?;
        let (rest, clean) = conn.rest().await?;
        assert!(rest.is_empty(), "{rest:?}");
        assert!(clean, "the gateway ends with close_notify");
    }
    Ok(())
}

/// Two requests in one write; a request with the first bytes of the next;
/// a lean GET, a POST (hyper's), a GET: the answers in order, the backend
/// gets each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_and_the_hand_off_to_hyper() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        c: usize,
        mut conn: Conn<S>,
    ) -> anyhow::Result<Vec<String>> {
        let mut paths = Vec::new();
        let two = format!("{}{}", get(c, 0, 10, false), get(c, 1, 9_000, false));
        conn.send(two.as_bytes()).await?;
        for i in 0..2 {
            let a = conn.answer().await?;
            assert_own(c, i, &a, "GET")?;
            paths.push(a.path());
        }
        let next = get(c, 3, 10, false);
        conn.send(format!("{}{}", get(c, 2, 10, false), &next[..5]).as_bytes())
            .await?;
        let a = conn.answer().await?;
        assert_own(c, 2, &a, "GET")?;
        paths.push(a.path());
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn.send(&next.as_bytes()[5..]).await?;
        let a = conn.answer().await?;
        assert_own(c, 3, &a, "GET")?;
        paths.push(a.path());
        // GET, POST, GET, all in one write, then once more one by one.
        let three = format!(
            "{}{}{}",
            get(c, 4, 10, false),
            post(c, 5, 20_000),
            get(c, 6, 10, false)
        );
        conn.send(three.as_bytes()).await?;
        for (i, method) in [(4, "GET"), (5, "POST"), (6, "GET")] {
            let a = conn.answer().await?;
            assert_own(c, i, &a, method)?;
            paths.push(a.path());
        }
        conn.send(post(c, 7, 5).as_bytes()).await?;
        let a = conn.answer().await?;
        assert_own(c, 7, &a, "POST")?;
        assert_eq!(a.echo()?["body"], format!("zq{c}q").repeat(2)[..5]);
        paths.push(a.path());
        conn.send(get(c, 8, 10, true).as_bytes()).await?;
        let a = conn.answer().await?;
        assert_own(c, 8, &a, "GET")?;
        paths.push(a.path());
        let (rest, _) = conn.rest().await?;
        anyhow::ensure!(rest.is_empty(), "after close: {rest:?}");
        Ok(paths)
    }
    let plain = run(1, s.tcp().await?).await?;
    let tls = run(2, s.tls(&[b"http/1.1"]).await?).await?;
    let expect = |c: usize| -> Vec<String> {
        (0..9)
            .map(|i| {
                if i == 5 || i == 7 {
                    format!("/zq{c}q{i}/p")
                } else {
                    format!("/zq{c}q{i}/r?m=zq{c}q{i}")
                }
            })
            .collect()
    };
    assert_eq!(plain, expect(1));
    assert_eq!(tls, expect(2));
    let seen: Vec<String> = s
        .backend
        .received()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(seen, [expect(1), expect(2)].concat());
    Ok(())
}

/// CPU time (user + system, clock ticks) of process `pid`.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name in parentheses: state is field 3; utime and
    // stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').unwrap_or(0) + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// The built binary: idle (before and after a request), half-closed, TLS
/// idle, after a KeyUpdate and after `close_notify`: the half-closed and
/// `close_notify` ones are closed, and together they cost no CPU; the
/// KeyUpdate ones still answer. SIGTERM with 100 idle connections closes
/// them at once and the process exits, well within the drain time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cost_no_cpu_and_sigterm_closes_them() -> anyhow::Result<()> {
    let pki = Pki::new("idle buffers CA");
    let server = pki.issue("gw", &["gw.test"]);
    let backend = backend::start().await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("gw.yaml");
    std::fs::write(
        &config,
        gateway_yaml(&server, &backend.url(), "limits: { drain_timeout: 8s }"),
    )?;
    let gw = gateway::Process::run(&config, &[])?;
    let line = gw
        .wait_for_log("wasmgate serving")
        .ok_or_else(|| anyhow::anyhow!("no start-up line"))?;
    let addrs = wasmgate_tests::record::loopback_addresses(&line);
    let (tcp_addr, tls_addr) = (addrs[0], addrs[1]);
    let pid = gw.id();
    let tls_config = pki.client_config(None, &[b"http/1.1"]);

    let mut idle = Vec::new();
    for c in 0..200 {
        let mut conn = tcp_connect(tcp_addr).await?;
        if c % 4 != 0 {
            conn.send(get(c, 0, 200, false).as_bytes()).await?;
            assert_own(c, 0, &conn.answer().await?, "GET")?;
        }
        idle.push(conn);
    }
    let mut half = Vec::new();
    for c in 200..250 {
        let mut conn = tcp_connect(tcp_addr).await?;
        if c % 2 == 0 {
            conn.send(get(c, 0, 200, false).as_bytes()).await?;
            assert_own(c, 0, &conn.answer().await?, "GET")?;
        }
        conn.io.shutdown().await?;
        half.push(conn);
    }
    let (mut tls_idle, mut keyed, mut notified) = (Vec::new(), Vec::new(), Vec::new());
    for c in 250..280 {
        let mut conn = tls_connect(tls_addr, tls_config.clone()).await?;
        conn.send(get(c, 0, 200, false).as_bytes()).await?;
        assert_own(c, 0, &conn.answer().await?, "GET")?;
        match c % 3 {
            0 => tls_idle.push(conn),
            1 => {
                conn.io.get_mut().1.refresh_traffic_keys()?;
                conn.send(b"").await?;
                keyed.push((c, conn));
            }
            _ => {
                conn.io.get_mut().1.send_close_notify();
                conn.send(b"").await?;
                notified.push(conn);
            }
        }
    }
    // Settled (the half-closed ones closing): nothing should run now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = cpu_ticks(pid)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_ticks(pid)? - before;
    eprintln!("idle CPU: {spent} ticks in 2 s");
    // A spinning task would take ~200 ticks (a whole core) in 2 s.
    assert!(
        spent <= 20,
        "{spent} ticks of CPU in 2 s with only idle connections"
    );
    for conn in half.iter_mut() {
        let (rest, _) = conn.rest().await?;
        assert!(rest.is_empty(), "{rest:?}");
    }
    for conn in notified.iter_mut() {
        let (rest, clean) = conn.rest().await?;
        assert!(rest.is_empty() && clean, "{rest:?}");
    }
    for (c, conn) in keyed.iter_mut() {
        conn.send(get(*c, 1, 10, false).as_bytes()).await?;
        assert_own(*c, 1, &conn.answer().await?, "GET")?;
    }
    // SIGTERM: 100 idle connections (and the TLS ones) closed promptly.
    idle.truncate(100);
    gw.signal("TERM")?;
    let started = std::time::Instant::now();
    for conn in idle.iter_mut() {
        let (rest, _) = conn.rest().await?;
        assert!(rest.is_empty(), "{rest:?}");
    }
    for conn in tls_idle.iter_mut().chain(keyed.iter_mut().map(|(_, c)| c)) {
        let (rest, clean) = conn.rest().await?;
        assert!(rest.is_empty() && clean, "{rest:?}");
    }
    let (gw, code) = tokio::task::spawn_blocking(move || {
        let mut gw = gw;
        let code = gw.wait();
        (gw, code)
    })
    .await?;
    let waited = started.elapsed();
    assert_eq!(code?, Some(0), "{}", gw.logs().join("\n"));
    assert!(waited < Duration::from_secs(3), "exit took {waited:?}");
    Ok(())
}
