//! Attacks on the upstream's `read_timeout` from outside: a really started
//! gateway (one worker) in front of backends an attacker controls, which
//! send a response head and part of a body, then stop in every place a
//! body can stop (inside a chunk-size line, inside a chunk, inside the
//! trailers, one byte short of `Content-Length`, a close-delimited body,
//! halfway into a TLS record, one stream of a shared HTTP/2 connection),
//! through a filter that buffers the body, and with `max_connections: 2`.
//!
//! Held to, for each: the client sees the response cut within a few
//! limits, never a response that looks complete (a chunked answer never
//! gets its last chunk, a sized one stays short) and never a second answer
//! on the cut connection (a pipelined request is not answered there); the
//! cut is counted; the stalled upstream connection is closed (an HTTP/2
//! upstream's stream is reset, its connection keeps serving the other
//! streams); cut connections give their `max_connections` slots back. A
//! filter holding the response headers gets a 502 at the `read_timeout`,
//! not a 504 at the upstream's `timeout`; a filter's http call whose body
//! stalls fails at the limit, not at the call's longer timeout; an HTTP/2
//! client that grants no window for longer than the limit gets the whole
//! body (its pause is not the upstream's).
//!
//! And hyper's HTTP/1.1 client over TLS: half a record of late bytes that
//! reached the socket while the worker was busy (hyper's connection task
//! had not read it yet) never makes that connection answer the next
//! request. Runs with `WASMGATE_LEAN_HTTP1=off` too.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
    time::{sleep, timeout},
};
use wasmgate_tests::{
    gateway,
    raw::{self, content_length, read_head},
    serve::accept_each,
    tls::Pki,
    tls_wire, wasm,
};

/// The gateway's `read_timeout` in these tests.
const LIMIT: Duration = Duration::from_millis(600);

/// How long a client waits for the gateway to end a stalled response
/// before the test fails.
const PATIENCE: Duration = Duration::from_secs(4);

/// The size of `/big`'s body: many times what an HTTP/2 client's window
/// lets through.
const BIG: usize = 1 << 20;

/// The pipelined request written after each stalled one: it must never be
/// answered on a connection whose response was cut.
const NEXT: &[u8] = b"GET /ok HTTP/1.1\r\nHost: a.test\r\n\r\n";

/// Where a backend stops, by path: the bytes it writes after the request,
/// then nothing. Each has `hello` as the body's first bytes.
fn stall(path: &str) -> Option<&'static [u8]> {
    Some(match path {
        // Inside the next chunk's size line.
        "/chunk-size" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1",
        // Inside a chunk's data.
        "/chunk-data" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\na\r\nhal"
        }
        // The last chunk sent, the trailers half.
        "/trailer" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1"
        }
        // Ends when the connection ends: only the cut can end it early.
        "/close" => b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello",
        // All but the last byte.
        "/last-byte" => b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello",
        _ => return None,
    })
}

/// Every shape of [`stall`].
const SHAPES: [&str; 5] = [
    "/chunk-size",
    "/chunk-data",
    "/trailer",
    "/close",
    "/last-byte",
];

/// Stalls a backend began, and those the gateway ended (it closed the
/// stalled connection).
#[derive(Default)]
struct Counts {
    stalled: AtomicUsize,
    released: AtomicUsize,
}

/// A raw HTTP/1.1 backend (plain, or TLS when given a configuration).
struct Backend {
    addr: SocketAddr,
    counts: Arc<Counts>,
    server: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Backend {
    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> anyhow::Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let server = tokio::spawn(accept_each(listener, move |tcp| {
            let counts = shared.clone();
            let tls = tls.clone();
            async move {
                match tls {
                    None => serve(tcp, false, &counts).await,
                    Some(config) => {
                        let accept = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
                        if let Ok(tls) = accept.await {
                            serve(tls, true, &counts).await;
                        }
                    }
                }
            }
        }));
        Ok(Backend {
            addr,
            counts,
            server,
        })
    }

    /// Waits (2 s at most) until the gateway closed every stalled
    /// connection; how many stalls there were and how many it closed.
    async fn stalls_released(&self) -> (usize, usize) {
        let counts = || {
            (
                self.counts.stalled.load(Ordering::SeqCst),
                self.counts.released.load(Ordering::SeqCst),
            )
        };
        for _ in 0..100 {
            let (stalled, released) = counts();
            if stalled == released {
                break;
            }
            sleep(Duration::from_millis(20)).await;
        }
        counts()
    }
}

/// A TLS stream whose socket can be written around the TLS layer.
trait Raw: AsyncRead + AsyncWrite + Unpin {
    fn socket(&mut self) -> &mut TcpStream;
}

impl Raw for TcpStream {
    fn socket(&mut self) -> &mut TcpStream {
        self
    }
}

impl Raw for tokio_rustls::server::TlsStream<TcpStream> {
    fn socket(&mut self) -> &mut TcpStream {
        self.get_mut().0
    }
}

/// Serves one connection until a stall or the gateway's close. Over TLS a
/// stall also leaves a record half sent: its header announces 100 bytes,
/// 20 come.
async fn serve<S: Raw>(mut io: S, tls: bool, counts: &Counts) {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut io, &mut buf).await {
        if let Some(len) = content_length(&head) {
            while buf.len() < len {
                let mut chunk = [0u8; 4096];
                match io.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..len);
        }
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let Some(bytes) = stall(&path) else {
            let answer = if path == "/big" {
                let mut big =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
                big.resize(big.len() + BIG, b'b');
                big
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
            };
            if io.write_all(&answer).await.is_err() || io.flush().await.is_err() {
                return;
            }
            continue;
        };
        counts.stalled.fetch_add(1, Ordering::SeqCst);
        if io.write_all(bytes).await.is_err() || io.flush().await.is_err() {
            return;
        }
        if tls {
            let mut partial = vec![23, 3, 3, 0, 100];
            partial.extend_from_slice(&[0xaa; 20]);
            if io.socket().write_all(&partial).await.is_err() {
                return;
            }
        }
        // Nothing more: wait for the gateway to let go.
        let mut rest = [0u8; 256];
        while matches!(io.socket().read(&mut rest).await, Ok(n) if n > 0) {}
        counts.released.fetch_add(1, Ordering::SeqCst);
        return;
    }
}

/// A gateway (one worker) in front of `upstream` (the rest of the
/// upstream's keys: `url: ..., more`), with `route_more` added to the
/// route.
fn start(upstream: &str, route_more: &str) -> anyhow::Result<gateway::TestGateway> {
    gateway::start(&format!(
        r#"
workers: 1
admin: {{ address: "127.0.0.1:0" }}
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams:
  backend: {{ {upstream}, timeout: 5s, read_timeout: {}ms }}
routes: [{{ name: all, match: {{}}, upstream: backend{route_more} }}]
"#,
        LIMIT.as_millis()
    ))
}

/// Writes `request` on a new connection and reads until the gateway
/// closes it: what came back and when it ended.
async fn until_closed(addr: SocketAddr, request: &[u8]) -> anyhow::Result<(Vec<u8>, Duration)> {
    raw::until_closed(addr, request, PATIENCE).await
}

/// How a client reads an HTTP/1.1 response: its status, the body data it
/// got, and whether the framing says it is whole.
#[derive(Debug)]
struct Seen {
    status: u16,
    data: Vec<u8>,
    complete: bool,
    /// Status lines in all that came back.
    answers: usize,
}

fn read_response(out: &[u8]) -> Seen {
    let answers = out.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Seen {
            status: 0,
            data: Vec::new(),
            complete: false,
            answers,
        };
    };
    let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = &out[end + 4..];
    let (data, complete) = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else if let Some(n) = content_length(&head) {
        (body[..n.min(body.len())].to_vec(), body.len() >= n)
    } else {
        // Close-delimited: a client cannot tell a cut from the end.
        (body.to_vec(), true)
    };
    Seen {
        status,
        data,
        complete,
        answers,
    }
}

/// The data of a chunked body, and whether its last chunk (and the empty
/// line after any trailers) came.
fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    loop {
        let Some(line) = body.windows(2).position(|w| w == b"\r\n") else {
            return (data, false);
        };
        let size = std::str::from_utf8(&body[..line])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else {
            return (data, false);
        };
        body = &body[line + 2..];
        if size == 0 {
            // Trailers, then the empty line.
            let whole = body.starts_with(b"\r\n") || body.windows(4).any(|w| w == b"\r\n\r\n");
            return (data, whole);
        }
        if body.len() < size + 2 {
            data.extend_from_slice(&body[..size.min(body.len())]);
            return (data, false);
        }
        data.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// The checks every cut answer passes: the head and what came of the
/// body, a framing that says it is cut, no second answer on the
/// connection, and a cut after the limit (and not much later).
fn assert_cut(what: &str, out: &[u8], took: Duration) {
    let seen = read_response(out);
    let text = String::from_utf8_lossy(out);
    assert_eq!(seen.status, 200, "{what}: {text:?}");
    assert!(
        !seen.complete,
        "{what}: a cut response must not look complete: {text:?}"
    );
    assert_eq!(
        seen.answers, 1,
        "{what}: the pipelined request is not answered on a cut connection: {text:?}"
    );
    assert!(
        took >= LIMIT && took < LIMIT * 5,
        "{what}: cut after {took:?} (read_timeout {LIMIT:?})"
    );
}

/// `wasmgate_upstream_timeouts_total` for the backend.
async fn timeouts(gw: &gateway::TestGateway) -> anyhow::Result<u64> {
    gateway::metric(gw, "wasmgate_upstream_timeouts_total{upstream=\"backend\"}").await
}

/// `path` as a bodiless GET (the lean client, or hyper's when it is off)
/// and as a POST with a body (hyper's client), each followed by a
/// pipelined [`NEXT`].
fn requests(path: &str) -> [(String, Vec<u8>); 2] {
    let get = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n");
    let post = format!("POST {path} HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\n\r\nbody");
    [
        (format!("GET {path}"), [get.as_bytes(), NEXT].concat()),
        (format!("POST {path}"), [post.as_bytes(), NEXT].concat()),
    ]
}

/// `/ok` answers 200 `ok` on a fresh connection.
async fn ok(gw: &gateway::TestGateway, what: &str) -> anyhow::Result<()> {
    let r = timeout(PATIENCE, gateway::get(gw.addr(), "a.test", "/ok", &[]))
        .await
        .map_err(|_| anyhow::anyhow!("{what}: /ok never answered"))??;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "ok"),
        "{what}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stall_shape_is_cut_and_never_looks_complete() -> anyhow::Result<()> {
    let backend = Backend::start(None).await?;
    let gw = start(&format!("url: \"http://{}\"", backend.addr), "")?;
    each_shape_is_cut(&gw, &backend, &SHAPES).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_upstream_stalled_halfway_into_a_record_is_cut() -> anyhow::Result<()> {
    let pki = Pki::new("stall CA");
    let files = pki.issue("backend", &["backend.test"]);
    let mut config = (*pki.server_config(&files, false)).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let backend = Backend::start(Some(Arc::new(config))).await?;
    let upstream = format!(
        "url: \"https://{}\", tls: {{ ca: \"{}\", server_name: backend.test }}",
        backend.addr,
        pki.dir().join("ca.pem").display()
    );
    let gw = start(&upstream, "")?;
    each_shape_is_cut(&gw, &backend, &["/last-byte", "/chunk-size"]).await
}

/// Each stall shape, as a GET and as a POST ([`requests`]): cut in time,
/// what was sent stands, counted once, the stalled upstream connection
/// closed, and the next client served.
async fn each_shape_is_cut(
    gw: &gateway::TestGateway,
    backend: &Backend,
    shapes: &[&str],
) -> anyhow::Result<()> {
    let mut cuts = 0;
    for shape in shapes {
        for (what, request) in requests(shape) {
            let (out, took) = until_closed(gw.addr(), &request).await?;
            assert_cut(&what, &out, took);
            // What was sent stands (inside a chunk, its part may follow).
            let data = read_response(&out).data;
            assert!(data.starts_with(b"hello"), "{what}: {data:?}");
            cuts += 1;
            assert_eq!(timeouts(gw).await?, cuts, "{what}: counted once");
            assert_eq!(
                backend.stalls_released().await,
                (cuts as usize, cuts as usize),
                "{what}: the stalled upstream connection was closed"
            );
            ok(gw, &what).await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_give_back_their_slots() -> anyhow::Result<()> {
    let backend = Backend::start(None).await?;
    let gw = start(
        &format!("url: \"http://{}\", max_connections: 2", backend.addr),
        "",
    )?;
    // Six stalls at once on two slots: they go two by two, each pair cut
    // in turn, all within the upstream's `timeout` (5 s).
    let mut clients = Vec::new();
    for i in 0..6 {
        let (what, request) = requests("/last-byte")[i % 2].clone();
        let addr = gw.addr();
        clients.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await?;
            tcp.write_all(&request).await?;
            let mut out = Vec::new();
            timeout(PATIENCE * 2, tcp.read_to_end(&mut out))
                .await
                .map_err(|_| anyhow::anyhow!("{what}: never closed"))??;
            anyhow::Ok((what, out))
        }));
    }
    for client in clients {
        let (what, out) = client.await??;
        let seen = read_response(&out);
        assert!(
            seen.status == 200 && !seen.complete && seen.answers == 1,
            "{what}: {seen:?}"
        );
    }
    assert_eq!(timeouts(&gw).await?, 6);
    assert_eq!(
        backend.stalls_released().await,
        (6, 6),
        "every stall closed"
    );
    // The slots are free again: requests of both clients are served.
    let again: [&[u8]; 2] = [
        b"GET /ok HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        b"POST /ok HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody",
    ];
    for request in again {
        let (out, _) = until_closed(gw.addr(), request).await?;
        let seen = read_response(&out);
        assert_eq!((seen.status, &seen.data[..]), (200, &b"ok"[..]), "{seen:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_buffering_the_body_is_cut_and_a_held_head_is_a_502() -> anyhow::Result<()> {
    let backend = Backend::start(None).await?;
    let filter = format!(
        ", filters: [{{ wasm: \"{}\", allow_on_headers_stop_iteration: true }}]",
        wasm("bodies").display()
    );
    let gw = start(&format!("url: \"http://{}\"", backend.addr), &filter)?;
    // The filter keeps the response body until its end (which never
    // comes): the head went out, the body is cut.
    for shape in ["/chunk-size", "/last-byte"] {
        let [(what, request), _] = requests(shape);
        let (out, took) = until_closed(gw.addr(), &request).await?;
        assert_cut(&what, &out, took);
        assert!(
            read_response(&out).data.is_empty(),
            "{what}: held by the filter"
        );
    }
    // `x-hold: yes` and a body: the filter holds the response head too.
    // Nothing went out, so the client gets an answer: 502 at the
    // read_timeout, not a 504 at the upstream's timeout.
    let request = b"POST /chunk-size HTTP/1.1\r\nHost: a.test\r\nx-hold: yes\r\n\
                    Content-Length: 4\r\nConnection: close\r\n\r\nbody";
    let (out, took) = until_closed(gw.addr(), request).await?;
    let seen = read_response(&out);
    assert_eq!(seen.status, 502, "{:?}", String::from_utf8_lossy(&out));
    assert!(took >= LIMIT && took < LIMIT * 5, "502 after {took:?}");
    assert_eq!(timeouts(&gw).await?, 3);
    assert_eq!(
        backend.stalls_released().await,
        (3, 3),
        "every stall closed"
    );
    // And the route serves (the filter upper-cases the body).
    let r = gateway::get(gw.addr(), "a.test", "/ok", &[]).await?;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "resp:OK"));
    Ok(())
}

/// A response body fed from a channel: it ends when the sender is dropped.
struct Feed(mpsc::Receiver<Bytes>);

impl Body for Feed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_upstream_stream_stalls_while_its_neighbours_flow() -> anyhow::Result<()> {
    // An h2c backend: `/stall` sends `hello` and keeps its stream open.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stalled: Arc<Mutex<Vec<mpsc::Sender<Bytes>>>> = Arc::default();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (held, count) = (stalled.clone(), accepted.clone());
    let server = tokio::spawn(accept_each(listener, move |tcp| {
        count.fetch_add(1, Ordering::SeqCst);
        let held = held.clone();
        async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let held = held.clone();
                async move {
                    let (tx, rx) = mpsc::channel(4);
                    if req.uri().path() == "/stall" {
                        let _ = tx.send(Bytes::from_static(b"hello")).await;
                        held.lock().expect("lock").push(tx);
                    } else {
                        let _ = tx.send(Bytes::from_static(b"ok")).await;
                    }
                    Ok::<_, Infallible>(Response::new(Feed(rx)))
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        }
    }));
    let gw = start(&format!("url: \"http://{addr}\", protocol: http2"), "")?;
    ok(&gw, "first").await?;
    let mut stalls = Vec::new();
    for (what, request) in requests("/stall") {
        let gw_addr = gw.addr();
        stalls.push(tokio::spawn(async move {
            let (out, took) = until_closed(gw_addr, &request).await?;
            anyhow::Ok((what, out, took))
        }));
    }
    // While both streams stall, their neighbours on the same upstream
    // connection are served.
    sleep(LIMIT / 3).await;
    for _ in 0..3 {
        let started = Instant::now();
        ok(&gw, "a neighbour").await?;
        assert!(started.elapsed() < LIMIT, "a neighbour waited");
    }
    for stall in stalls {
        let (what, out, took) = stall.await??;
        assert_cut(&what, &out, took);
        assert_eq!(read_response(&out).data, b"hello", "{what}");
    }
    assert_eq!(timeouts(&gw).await?, 2);
    // The stalled streams were reset upstream (the backend's bodies were
    // dropped), the connection kept: one connection served everything.
    for _ in 0..100 {
        if stalled
            .lock()
            .expect("lock")
            .iter()
            .all(|tx| tx.is_closed())
        {
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    let (streams, reset) = {
        let held = stalled.lock().expect("lock");
        (held.len(), held.iter().all(|tx| tx.is_closed()))
    };
    assert_eq!((streams, reset), (2, true), "streams reset upstream");
    ok(&gw, "after the cuts").await?;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection"
    );
    server.abort();
    Ok(())
}

/// What a hostile backend slips in as another request's answer.
const POISON: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED";

/// A rustls server session whose records the test writes to TCP itself.
struct Wire {
    tcp: TcpStream,
    tls: rustls::ServerConnection,
    plain: Vec<u8>,
}

impl Wire {
    async fn accept(
        mut tcp: TcpStream,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Wire> {
        let (tls, plain) = tls_wire::handshake(&mut tcp, config).await?;
        Ok(Wire { tcp, tls, plain })
    }

    /// The next request's head, its body (`Content-Length`) read and
    /// dropped; `None` when the peer closes.
    async fn request(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.plain.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.plain[..end]).into_owned();
                let len = content_length(&head).unwrap_or(0);
                if self.plain.len() >= end + 4 + len {
                    self.plain.drain(..end + 4 + len);
                    return Some(head);
                }
            }
            let mut buf = [0u8; 16 * 1024];
            let n = self.tcp.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            tls_wire::feed(&mut self.tls, &buf[..n], &mut self.plain).ok()?;
        }
    }

    /// `plain` as TLS records, not yet sent.
    fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let _ = std::io::Write::write_all(&mut self.tls.writer(), plain);
        tls_wire::drain(&mut self.tls).unwrap_or_default()
    }

    async fn raw(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).await.is_ok()
    }
}

/// An answer whose body is the request's path.
fn own_answer(head: &str) -> Vec<u8> {
    let path = head.split_whitespace().nth(1).unwrap_or("");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
        path.len()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_partial_record_waiting_in_the_socket_is_never_the_next_answer() -> anyhow::Result<()>
{
    // The first connection answers `/first`, then, told by the test,
    // sends half of a record holding a whole response: it arrives while
    // the gateway's worker is busy (a filter spinning until its CPU
    // deadline, then skipped: `on_error: allow`), so hyper's connection
    // task has not read it when the next request looks for a connection.
    // Whoever writes a request on that connection gets the record's
    // rest, `POISONED`, as its answer.
    let pki = Pki::new("late CA");
    let files = pki.issue("backend", &["backend.test"]);
    let mut config = (*pki.server_config(&files, false)).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (go, wait) = tokio::sync::watch::channel(false);
    let reused = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    // The half record went out before the request came.
    let raced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (count, reuse, race) = (accepted.clone(), reused.clone(), raced.clone());
    let server = tokio::spawn(accept_each(listener, move |tcp| {
        let id = count.fetch_add(1, Ordering::SeqCst);
        let (config, mut wait) = (config.clone(), wait.clone());
        let (reuse, race) = (reuse.clone(), race.clone());
        async move {
            let Ok(mut wire) = Wire::accept(tcp, config).await else {
                return;
            };
            if id > 0 {
                while let Some(head) = wire.request().await {
                    let answer = wire.seal(&own_answer(&head));
                    if !wire.raw(&answer).await {
                        return;
                    }
                }
                return;
            }
            let Some(head) = wire.request().await else {
                return;
            };
            let answer = wire.seal(&own_answer(&head));
            let poison = wire.seal(POISON);
            if !wire.raw(&answer).await || wait.wait_for(|go| *go).await.is_err() {
                return;
            }
            // Well inside the filter's 100 ms of spinning.
            sleep(Duration::from_millis(30)).await;
            // This task so late (a loaded machine) that the request came
            // first: late bytes now would be after the reuse, which no
            // proxy can tell apart. Answer it, and prove nothing.
            let mut early = [0u8; 4096];
            if let Ok(n @ 1..) = wire.tcp.try_read(&mut early) {
                if tls_wire::feed(&mut wire.tls, &early[..n], &mut wire.plain).is_ok()
                    && let Some(head) = wire.request().await
                {
                    let answer = wire.seal(&own_answer(&head));
                    let _ = wire.raw(&answer).await;
                }
                return;
            }
            let (half, rest) = poison.split_at(poison.len() / 2);
            if !wire.raw(half).await {
                return;
            }
            race.store(true, Ordering::SeqCst);
            if let Some(head) = wire.request().await {
                reuse.fetch_add(1, Ordering::SeqCst);
                let answer = wire.seal(&own_answer(&head));
                let _ = wire.raw(&[rest, &answer[..]].concat()).await;
                let _ = wire.request().await;
            }
        }
    }));
    let filter = format!(
        ", filters: [{{ wasm: \"{}\", config: \"\", on_error: allow }}]",
        wasm("hostile").display()
    );
    let upstream = format!(
        "url: \"https://{addr}\", tls: {{ ca: \"{}\", server_name: backend.test }}",
        pki.dir().join("ca.pem").display()
    );
    let gw = start(&upstream, &filter)?;
    // POSTs: hyper's client whether the lean one is on or off.
    let post = |path: &str, more: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: a.test\r\n{more}Content-Length: 4\r\n\
             Connection: close\r\n\r\nbody"
        )
    };
    let (out, _) = until_closed(gw.addr(), post("/first", "").as_bytes()).await?;
    assert_eq!(read_response(&out).data, b"/first");
    let mut tcp = TcpStream::connect(gw.addr()).await?;
    tcp.write_all(post("/second", "x-hostile: loop\r\n").as_bytes())
        .await?;
    go.send(true)?;
    let mut out = Vec::new();
    timeout(PATIENCE, tcp.read_to_end(&mut out))
        .await
        .map_err(|_| anyhow::anyhow!("no answer"))??;
    let seen = read_response(&out);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(
        (seen.status, &seen.data[..]),
        (200, &b"/second"[..]),
        "its own answer, never the late record's: {text:?}"
    );
    assert_eq!(
        reused.load(Ordering::SeqCst),
        0,
        "the late connection was not reused"
    );
    if raced.load(Ordering::SeqCst) {
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "a new connection");
    }
    server.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_granting_no_window_is_not_the_upstreams_stall() -> anyhow::Result<()> {
    // The client's flow control holds the body back for twice the limit:
    // the body is not polled, so not timed, and arrives whole.
    let backend = Backend::start(None).await?;
    let gw = start(&format!("url: \"http://{}\"", backend.addr), "")?;
    let tcp = TcpStream::connect(gw.addr()).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(16 * 1024)
            .initial_connection_window_size(1 << 20)
            .handshake::<_, http_body_util::Empty<Bytes>>(hyper_util::rt::TokioIo::new(tcp))
            .await?;
    tokio::spawn(conn);
    let request = Request::get("http://a.test/big").body(http_body_util::Empty::new())?;
    let response = sender.send_request(request).await?;
    assert_eq!(response.status(), 200);
    sleep(LIMIT * 2).await;
    let body = timeout(
        PATIENCE,
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the body never came"))??
    .to_bytes();
    assert_eq!(body.len(), BIG, "the whole body");
    assert_eq!(timeouts(&gw).await?, 0, "nothing timed out");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filters_call_whose_body_stalls_fails_at_the_read_timeout() -> anyhow::Result<()> {
    // The call's own timeout (3 s) is longer than the limit: the stalled
    // body fails the call at the limit (the filter answers 503 `failed`),
    // not a made-up 504 at the call's timeout (which the filter would
    // answer 403 with `x-auth-status: 504`).
    let backend = Backend::start(None).await?;
    let filter = format!(
        ", filters: [{{ wasm: \"{}\", config: \"upstream=backend;path=/chunk-size;timeout_ms=3000\" }}]",
        wasm("http_call").display()
    );
    let gw = start(&format!("url: \"http://{}\"", backend.addr), &filter)?;
    let started = Instant::now();
    let (out, took) = until_closed(
        gw.addr(),
        b"GET /guarded HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(
        text.starts_with("http/1.1 503") && text.contains("x-call-error: failed"),
        "{text:?}"
    );
    assert!(
        took >= LIMIT && started.elapsed() < LIMIT * 4,
        "failed after {took:?}"
    );
    assert_eq!(timeouts(&gw).await?, 1);
    assert_eq!(
        backend.stalls_released().await,
        (1, 1),
        "the call's connection closed"
    );
    Ok(())
}
