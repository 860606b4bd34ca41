//! Attacks on the request path from outside, after the boundary fixes
//! (issue 12): raw sockets against the gateway, crafted backends behind it.
//!
//! The first group reproduces what an attack round found (each failed
//! before its fix); the second holds attacks that held from the start.
//! All are regression tests.
//! The suite runs both ways (`WASMGATE_LEAN_HTTP1=off` too), so every
//! passing test here holds on the lean paths and on hyper's.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::{sleep, timeout},
};
use wasmgate_tests::{
    config::{ROUTE_ALL as ALL, secure_and_public},
    gateway::{self, TIMEOUT, TestGateway},
    raw::{Step, send},
};

// ---------------------------------------------------------------------------
// A strict backend: parses what it receives as an HTTP/1.1 server must
// (head, then the body by its framing), notes anything ambiguous, and
// answers each request with scripted steps.
// ---------------------------------------------------------------------------

/// One request as the backend parsed it.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// Which backend connection carried it (0 for the first).
    #[allow(dead_code)]
    conn: usize,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
    /// Framing a strict server would refuse or could read two ways.
    problems: Vec<String>,
}

impl Seen {
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn secret(&self) -> bool {
        self.values("authorization")
            .iter()
            .any(|v| v.contains(SECRET))
    }
}

type Answer = Arc<dyn Fn(&Seen) -> Vec<Step> + Send + Sync>;

struct Strict {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Strict {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Strict {
    async fn start(answer: impl Fn(&Seen) -> Vec<Step> + Send + Sync + 'static) -> Strict {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let answer: Answer = Arc::new(answer);
        let (s, a) = (seen.clone(), accepted.clone());
        let task = tokio::spawn(wasmgate_tests::serve::accept_each(listener, move |tcp| {
            let id = a.fetch_add(1, Ordering::SeqCst);
            strict_conn(tcp, id, answer.clone(), s.clone())
        }));
        Strict {
            addr,
            seen,
            accepted,
            task,
        }
    }

    /// A backend answering every request `200` with its target as the body.
    async fn echo() -> Strict {
        Strict::start(|s| vec![send(ok(&s.target))]).await
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// `200` with `body`, framed by its length.
fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn fill(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match tcp.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn strict_conn(mut tcp: TcpStream, conn: usize, answer: Answer, log: Arc<Mutex<Vec<Seen>>>) {
    let _ = tcp.set_nodelay(true);
    let mut buf = Vec::new();
    let push = |s: Seen| log.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    loop {
        // The head.
        let mut seen = Seen {
            conn,
            ..Seen::default()
        };
        loop {
            let mut slots = [httparse::EMPTY_HEADER; 128];
            let mut req = httparse::Request::new(&mut slots);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    seen.method = req.method.unwrap_or("").to_string();
                    seen.target = req.path.unwrap_or("").to_string();
                    seen.headers = req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let head = &buf[..len];
                    if head
                        .iter()
                        .enumerate()
                        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
                    {
                        seen.problems.push("bare LF in the head".into());
                    }
                    buf.drain(..len);
                    break;
                }
                Ok(httparse::Status::Partial) => {
                    if !fill(&mut tcp, &mut buf).await {
                        if !buf.is_empty() {
                            seen.problems.push(format!(
                                "connection closed in a head: {:?}",
                                String::from_utf8_lossy(&buf)
                            ));
                            push(seen);
                        }
                        return;
                    }
                }
                Err(e) => {
                    seen.problems.push(format!(
                        "unparseable head ({e}): {:?}",
                        String::from_utf8_lossy(&buf[..buf.len().min(200)])
                    ));
                    push(seen);
                    return;
                }
            }
        }
        // The body, by its framing.
        let te: Vec<String> = seen
            .values("transfer-encoding")
            .iter()
            .map(|v| v.to_string())
            .collect();
        let cl: Vec<String> = seen
            .values("content-length")
            .iter()
            .map(|v| v.to_string())
            .collect();
        if !te.is_empty() && !cl.is_empty() {
            seen.problems
                .push("both Content-Length and Transfer-Encoding".into());
        }
        if cl.len() > 1 {
            seen.problems
                .push(format!("several Content-Lengths {cl:?}"));
        }
        if !te.is_empty() {
            if te.len() != 1 || !te[0].eq_ignore_ascii_case("chunked") {
                seen.problems
                    .push(format!("transfer-encoding other than chunked: {te:?}"));
            }
            // Chunked.
            loop {
                match httparse::parse_chunk_size(&buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.drain(..used);
                        if size == 0 {
                            break;
                        }
                        let size = usize::try_from(size).unwrap_or(usize::MAX);
                        while buf.len() < size + 2 {
                            if !fill(&mut tcp, &mut buf).await {
                                seen.problems.push("closed in a chunk".into());
                                push(seen);
                                return;
                            }
                        }
                        seen.body.extend_from_slice(&buf[..size]);
                        if &buf[size..size + 2] != b"\r\n" {
                            seen.problems.push("chunk without CRLF".into());
                        }
                        buf.drain(..size + 2);
                    }
                    Ok(httparse::Status::Partial) => {
                        if !fill(&mut tcp, &mut buf).await {
                            seen.problems.push("closed in a chunk size".into());
                            push(seen);
                            return;
                        }
                    }
                    Err(_) => {
                        seen.problems.push("invalid chunk size".into());
                        push(seen);
                        return;
                    }
                }
            }
            loop {
                let mut slots = [httparse::EMPTY_HEADER; 64];
                match httparse::parse_headers(&buf, &mut slots) {
                    Ok(httparse::Status::Complete((used, fields))) => {
                        seen.trailers = fields
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect();
                        buf.drain(..used);
                        break;
                    }
                    Ok(httparse::Status::Partial) => {
                        if !fill(&mut tcp, &mut buf).await {
                            seen.problems.push("closed in trailers".into());
                            push(seen);
                            return;
                        }
                    }
                    Err(_) => {
                        seen.problems.push("invalid trailers".into());
                        push(seen);
                        return;
                    }
                }
            }
        } else if let Some(first) = cl.first() {
            match first.trim().parse::<usize>() {
                Ok(n) => {
                    while buf.len() < n {
                        if !fill(&mut tcp, &mut buf).await {
                            seen.problems.push("closed in a body".into());
                            push(seen);
                            return;
                        }
                    }
                    seen.body = buf.drain(..n).collect();
                }
                Err(_) => {
                    seen.problems
                        .push(format!("invalid Content-Length {first:?}"));
                    push(seen);
                    return;
                }
            }
        }
        let steps = answer(&seen);
        push(seen);
        for step in steps {
            match step {
                Step::Send(b) => {
                    if tcp.write_all(&b).await.is_err() {
                        return;
                    }
                }
                Step::Wait(d) => sleep(d).await,
                Step::Close | Step::CloseNotify => return,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Gateway and client helpers.
// ---------------------------------------------------------------------------

const SECRET: &str = "s3cret-attack";

/// One worker (one upstream pool for every client); `routes` as YAML.
fn start(backend: SocketAddr, routes: &str, extra: &str) -> TestGateway {
    start_with(backend, routes, extra, "2s")
}

/// As [`start`], with the upstream's response `timeout`.
fn start_with(
    backend: SocketAddr,
    routes: &str,
    extra: &str,
    upstream_timeout: &str,
) -> TestGateway {
    gateway::start(&format!(
        r#"
workers: 1
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams:
  backend: {{ url: "http://{backend}", connect_timeout: 1s, timeout: {upstream_timeout} }}
routes: {routes}
{extra}
"#
    ))
    .expect("gateway starts")
}

/// Writes `bytes` on a new connection; reads until the gateway closes, or
/// nothing came for `quiet`, or [`TIMEOUT`].
async fn converse(addr: SocketAddr, bytes: &[u8], quiet: Duration) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    read_quiet(&mut tcp, quiet).await
}

async fn read_quiet(tcp: &mut TcpStream, quiet: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut chunk = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        match timeout(quiet, tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
        }
    }
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The status of the first response in `bytes`.
fn status(bytes: &[u8]) -> Option<u16> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut slots);
    match r.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => r.code,
        _ => None,
    }
}

/// Every response in `bytes` (none is to HEAD): status and body.
fn responses(mut bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(len)) = r.parse(bytes) else {
            return out;
        };
        let code = r.code.unwrap_or(0);
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let chunked = header("transfer-encoding").is_some();
        let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
        let mut rest = &bytes[len..];
        let mut body = Vec::new();
        if (100..200).contains(&code) || code == 204 || code == 304 {
        } else if chunked {
            loop {
                let Ok(httparse::Status::Complete((used, size))) = httparse::parse_chunk_size(rest)
                else {
                    out.push((code, body));
                    return out;
                };
                rest = &rest[used..];
                let size = size as usize;
                if size == 0 {
                    rest = &rest[2.min(rest.len())..];
                    break;
                }
                if rest.len() < size + 2 {
                    out.push((code, body));
                    return out;
                }
                body.extend_from_slice(&rest[..size]);
                rest = &rest[size + 2..];
            }
        } else if let Some(n) = length {
            let n = n.min(rest.len());
            body.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        } else {
            body.extend_from_slice(rest);
            rest = &[];
        }
        out.push((code, body));
        bytes = rest;
    }
}

/// Lean paths on in this process (the suite also runs with them off).
fn lean() -> bool {
    wasmgate::lean::enabled()
}

/// An HTTP/2 (prior knowledge) client connection to `addr`.
async fn h2_sender(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

type Empty = http_body_util::Empty<bytes::Bytes>;

fn h2_get(uri: &str) -> http::Request<Empty> {
    http::Request::get(uri).body(Empty::new()).expect("request")
}

/// How lenient backends read a path: `%2F` and `%5C` as separators (nginx
/// decodes before it resolves dot segments), `\` as `/` (IIS, ASP.NET),
/// `;params` dropped from each segment (Tomcat, Spring: `..;` is `..`),
/// then dot segments removed.
fn lenient(target: &str) -> String {
    let path = target.split('?').next().unwrap_or("");
    let decoded = path
        .replace("%2F", "/")
        .replace("%2f", "/")
        .replace("%5C", "/")
        .replace("%5c", "/")
        .replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/').skip(1) {
        match segment.split(';').next().unwrap_or("") {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

// ---------------------------------------------------------------------------
// Findings of the attack round, each fixed since.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_separators_never_carry_the_secret_out_of_its_prefix() {
    let backend = Strict::echo().await;
    let gw = start(backend.addr, &secure_and_public(SECRET), "");
    let mut leaks = Vec::new();
    for path in [
        "/api/..%2Fpublic/x",
        "/api/%2e%2e%2fpublic/x",
        "/api/..%5Cpublic/x",
        "/api/..\\public/x",
        "/api/..;/public/x",
    ] {
        let before = backend.seen().len();
        let req = format!("GET {path} HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n");
        let answer = converse(gw.addr(), req.as_bytes(), Duration::from_secs(1)).await;
        for s in &backend.seen()[before..] {
            // Refused (4xx), or forwarded without the secret, or in a form
            // every backend reads inside /api/.
            if s.secret() && !lenient(&s.target).starts_with("/api/") {
                leaks.push(format!(
                    "{path} -> {:?}: forwarded as {} with the secret (read as {})",
                    status(&answer),
                    s.target,
                    lenient(&s.target)
                ));
            }
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_a_route_matched_is_the_host_the_upstream_gets() {
    let backend = Strict::echo().await;
    let gw = start(backend.addr, &secure_and_public(SECRET), "");
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
    let answer = converse(
        gw.addr(),
        b"GET /api/x HTTP/1.1\r\nconnection: close\r\n\r\n",
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(status(&answer), Some(400), "{}", text(&answer));
    // `Host` is end to end: a client cannot have it removed (the route was
    // chosen by it). GET takes the lean client, POST hyper's.
    for req in [
        &b"GET /api/x HTTP/1.1\r\nhost: a.test\r\nconnection: host, close\r\n\r\n"[..],
        b"POST /api/x HTTP/1.1\r\nhost: a.test\r\ncontent-length: 2\r\nconnection: host, close\r\n\r\nok",
    ] {
        let before = backend.seen().len();
        converse(gw.addr(), req, Duration::from_secs(1)).await;
        for s in &backend.seen()[before..] {
            assert_eq!(s.values("host"), ["a.test"], "{} {}", s.method, s.target);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_forwarded_header_is_not_trusted() {
    let backend = Strict::echo().await;
    let gw = start(backend.addr, &secure_and_public(SECRET), "");
    converse(
        gw.addr(),
        b"GET /api/x HTTP/1.1\r\nhost: a.test\r\nforwarded: for=6.6.6.6;host=evil.example;proto=https\r\nx-forwarded-host: evil.example\r\nconnection: close\r\n\r\n",
        Duration::from_secs(1),
    )
    .await;
    let seen = backend.seen();
    let s = seen.last().expect("forwarded");
    assert_eq!(s.values("x-forwarded-host"), ["a.test"], "held already");
    for v in s.values("forwarded") {
        assert!(
            !v.contains("evil.example"),
            "client's Forwarded passed on: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_answered_never_forwarded() {
    let backend = Strict::echo().await;
    let gw = start(backend.addr, &secure_and_public(SECRET), "");
    for req in [
        &b"CONNECT a.test:443 HTTP/1.1\r\nhost: a.test:443\r\n\r\n"[..],
        b"CONNECT /api/x HTTP/1.1\r\nhost: a.test\r\n\r\n",
    ] {
        let answer = converse(gw.addr(), req, Duration::from_millis(500)).await;
        let code = status(&answer).unwrap_or(0);
        assert!(
            (400..500).contains(&code) || code == 501,
            "{}: {}",
            text(req).lines().next().unwrap_or(""),
            text(&answer)
        );
    }
    let seen = backend.seen();
    assert!(seen.is_empty(), "reached the backend: {seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_still_gets_its_answer() {
    let backend =
        Strict::start(|s| vec![Step::Wait(Duration::from_millis(50)), send(ok(&s.target))]).await;
    let gw = start(backend.addr, ALL, "");
    for req in [
        &b"GET /half HTTP/1.1\r\nhost: a.test\r\n\r\n"[..],
        b"POST /half-post HTTP/1.1\r\nhost: a.test\r\ncontent-length: 2\r\n\r\nok",
    ] {
        let mut tcp = TcpStream::connect(gw.addr()).await.expect("connect");
        tcp.write_all(req).await.expect("write");
        tcp.shutdown().await.expect("half-close");
        let answer = read_quiet(&mut tcp, Duration::from_secs(2)).await;
        let got: Vec<_> = responses(&answer)
            .into_iter()
            .map(|(c, b)| (c, text(&b)))
            .collect();
        let target = text(req).split(' ').nth(1).unwrap_or_default().to_string();
        assert_eq!(got, [(200, target)], "lean paths on: {}", lean());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_never_switches_to_http2_midway() {
    let backend = Strict::echo().await;
    let gw = start(backend.addr, ALL, "");
    let answer = converse(
        gw.addr(),
        b"GET /first HTTP/1.1\r\nhost: a.test\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    let mut slots = [httparse::EMPTY_HEADER; 16];
    let mut r = httparse::Response::new(&mut slots);
    let Ok(httparse::Status::Complete(len)) = r.parse(&answer) else {
        panic!("no first answer: {}", text(&answer));
    };
    let rest = &answer[len + "/first".len()..];
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 4"),
        "an HTTP/2 frame followed an HTTP/1.1 response: {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bodiless_status_declaring_a_body_is_not_reused() {
    const POISON: &str = "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nPOISONED";
    let backend = Strict::start(|s| {
        let first = match s.target.as_str() {
            "/204" => "HTTP/1.1 204 No Content\r\ncontent-length: 47\r\n\r\n",
            "/304" => "HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
            _ => return vec![send(ok(&s.target))],
        };
        // What the backend said it would send, a little later (a handler
        // that writes its body after the head).
        vec![
            send(first),
            Step::Wait(Duration::from_millis(50)),
            send(POISON),
        ]
    })
    .await;
    let gw = start(backend.addr, ALL, "");
    for path in ["/204", "/304"] {
        let mut tcp = TcpStream::connect(gw.addr()).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nhost: a.test\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.expect("write");
        let mut buf = [0u8; 1024];
        let n = tcp.read(&mut buf).await.expect("read");
        assert!(status(&buf[..n]).is_some());
        // Another user, at once.
        let other = converse(
            gw.addr(),
            b"GET /next HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
            Duration::from_secs(1),
        )
        .await;
        let got: Vec<_> = responses(&other)
            .into_iter()
            .map(|(c, b)| (c, text(&b)))
            .collect();
        assert_eq!(got, [(200, "/next".to_string())], "after {path}");
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_capped() {
    let backend =
        Strict::start(|s| vec![Step::Wait(Duration::from_millis(500)), send(ok(&s.target))]).await;
    let gw = start(backend.addr, ALL, "");
    let mut tasks = Vec::new();
    for c in 0..2 {
        let sender = h2_sender(gw.addr()).await;
        for i in 0..150 {
            let mut s = sender.clone();
            tasks.push(tokio::spawn(async move {
                s.send_request(h2_get(&format!("http://a.test/{c}/{i}")))
                    .await
                    .map(|r| r.status())
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    assert!(
        backend.accepted() <= 256,
        "{} upstream connections",
        backend.accepted()
    );
}

// ---------------------------------------------------------------------------
// Attacks that held: regression tests.
// ---------------------------------------------------------------------------

/// What a smuggling case should come to.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// An error answer; no complete request reaches the backend.
    Refused,
    /// Forwarded with this body, re-framed; `then` whether the request
    /// pipelined behind it is served too.
    Forwarded { body: &'static str, then: bool },
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_games_are_refused_or_reframed() {
    use Expect::{Forwarded, Refused};
    let backend = Strict::echo().await;
    let gw = start(backend.addr, &secure_and_public(SECRET), "");
    const H: &str = "POST /api/x HTTP/1.1\r\nhost: a.test\r\n";
    let cases: Vec<(&str, String, Expect)> = vec![
        ("TE, space before colon", format!("{H}transfer-encoding : chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), Refused),
        ("TE xchunked", format!("{H}transfer-encoding: xchunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), Refused),
        ("TE chunked, identity", format!("{H}transfer-encoding: chunked, identity\r\n\r\n2\r\nok\r\n0\r\n\r\n"), Refused),
        ("TE gzip, chunked", format!("{H}transfer-encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), Refused),
        ("TE twice", format!("{H}transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), Refused),
        ("TE obs-fold + CL", format!("{H}transfer-encoding:\r\n chunked\r\ncontent-length: 3\r\n\r\nabc"), Refused),
        ("CL obs-fold", format!("{H}content-length:\r\n 3\r\n\r\nabc"), Refused),
        ("CL list", format!("{H}content-length: 3, 3\r\n\r\nabc"), Refused),
        ("CL +3", format!("{H}content-length: +3\r\n\r\nabc"), Refused),
        ("CL 0x3", format!("{H}content-length: 0x3\r\n\r\nabc"), Refused),
        ("CL 3 and 4", format!("{H}content-length: 3\r\ncontent-length: 4\r\n\r\nabcd"), Refused),
        ("TE on HTTP/1.0", "POST /api/x HTTP/1.0\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".into(), Refused),
        ("bare CR", "GET /api/x HTTP/1.1\rhost: a.test\r\n\r\n".into(), Refused),
        ("NUL in a value", "GET /api/x HTTP/1.1\r\nhost: a.test\r\nx-a: a\0b\r\n\r\n".into(), Refused),
        ("chunk size overflow", format!("{H}transfer-encoding: chunked\r\n\r\nffffffffffffffffff\r\nok\r\n0\r\n\r\n"), Refused),
        ("negative chunk size", format!("{H}transfer-encoding: chunked\r\n\r\n-2\r\nok\r\n0\r\n\r\n"), Refused),
        ("chunks with bare LF", format!("{H}transfer-encoding: chunked\r\n\r\n2\nok\n0\n\n"), Refused),
        ("TE after a tab", format!("{H}transfer-encoding:\tchunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), Forwarded { body: "ok", then: true }),
        ("head with bare LF", "GET /api/x HTTP/1.1\nhost: a.test\n\n".into(), Forwarded { body: "", then: true }),
        ("CL twice, equal", format!("{H}content-length: 3\r\ncontent-length: 3\r\n\r\nabc"), Forwarded { body: "abc", then: true }),
        ("chunk extensions", format!("{H}transfer-encoding: chunked\r\n\r\n2;a=b;c=\"d\"\r\nok\r\n0;z\r\n\r\n"), Forwarded { body: "ok", then: true }),
        ("CL + chunked", format!("{H}content-length: 40\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), Forwarded { body: "ok", then: false }),
        ("GET with a body", "GET /api/x HTTP/1.1\r\nhost: a.test\r\ncontent-length: 5\r\n\r\nhello".into(), Forwarded { body: "hello", then: true }),
        ("upgrade to h2c", "GET /api/x HTTP/1.1\r\nhost: a.test\r\nconnection: upgrade, http2-settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n".into(), Forwarded { body: "", then: true }),
        ("underscored CL", format!("{H}content_length: 40\r\ncontent-length: 2\r\n\r\nok"), Forwarded { body: "ok", then: true }),
    ];
    const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n";
    let mut failures = Vec::new();
    for (name, req, expect) in cases {
        let before = backend.seen().len();
        let answer = converse(
            gw.addr(),
            format!("{req}{SMUGGLED}").as_bytes(),
            Duration::from_millis(300),
        )
        .await;
        sleep(Duration::from_millis(20)).await;
        let seen: Vec<Seen> = backend.seen()[before..].to_vec();
        let complete: Vec<&Seen> = seen
            .iter()
            .filter(|s| !s.problems.iter().any(|p| p.starts_with("closed")))
            .collect();
        let got: Vec<(u16, String)> = responses(&answer)
            .into_iter()
            .map(|(c, b)| (c, text(&b)))
            .collect();
        let mut fail = |what: String| failures.push(format!("{name}: {what}"));
        for s in &seen {
            if s.problems.iter().any(|p| !p.starts_with("closed")) {
                fail(format!("ambiguous upstream framing {:?}", s.problems));
            }
            for h in ["upgrade", "http2-settings", "content_length"] {
                if !s.values(h).is_empty() {
                    fail(format!("{h} forwarded"));
                }
            }
        }
        match expect {
            Refused => {
                if !complete.is_empty() {
                    fail(format!("reached the backend: {complete:?}"));
                }
                if got.first().is_none_or(|(c, _)| *c < 400) || got.len() != 1 {
                    fail(format!("answers {got:?}"));
                }
            }
            Forwarded { body, then } => {
                let targets: Vec<&str> = complete.iter().map(|s| s.target.as_str()).collect();
                let want: &[&str] = if then {
                    &["/api/x", "/smuggled"]
                } else {
                    &["/api/x"]
                };
                if targets != want {
                    fail(format!("backend saw {targets:?}"));
                }
                if let Some(first) = complete.first() {
                    if text(&first.body) != body {
                        fail(format!("body {:?}", text(&first.body)));
                    }
                    if first.values("authorization") != [format!("Bearer {SECRET}")] {
                        fail(format!("authorization {:?}", first.values("authorization")));
                    }
                }
                let answered: Vec<&str> = got.iter().map(|(_, b)| b.as_str()).collect();
                if answered != want {
                    fail(format!("client got {got:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let backend = Strict::start(|s| {
        let mut steps = Vec::new();
        if s.target == "/a" {
            steps.push(Step::Wait(Duration::from_millis(100)));
        }
        steps.push(send(ok(&format!("{}{}", s.target, text(&s.body)))));
        steps
    })
    .await;
    let gw = start(backend.addr, ALL, "");
    let burst = concat!(
        "GET /a HTTP/1.1\r\nhost: a.test\r\n\r\n",
        "POST /b HTTP/1.1\r\nhost: a.test\r\ncontent-length: 3\r\n\r\nxyz",
        "GET /c HTTP/1.1\r\nhost: a.test\r\n\r\n",
        "DELETE /d HTTP/1.1\r\nhost: a.test\r\n\r\n",
        "POST /e HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n1\r\nq\r\n0\r\n\r\n",
        "GET /f HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
        "GET /never HTTP/1.1\r\nhost: a.test\r\n\r\n",
    );
    let answer = converse(gw.addr(), burst.as_bytes(), Duration::from_secs(2)).await;
    let got: Vec<String> = responses(&answer)
        .into_iter()
        .map(|(c, b)| format!("{c} {}", text(&b)))
        .collect();
    assert_eq!(
        got,
        [
            "200 /a",
            "200 /bxyz",
            "200 /c",
            "200 /d",
            "200 /eq",
            "200 /f"
        ]
    );
    let targets: Vec<String> = backend.seen().iter().map(|s| s.target.clone()).collect();
    assert_eq!(targets, ["/a", "/b", "/c", "/d", "/e", "/f"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_backends_get_an_error_and_leak_nothing() {
    let backend = Strict::start(|s| {
        let answer = match s.target.as_str() {
            "/close" => return vec![Step::Close],
            "/never" => return vec![Step::Wait(Duration::from_secs(20))],
            "/garbage" => "HELLO THERE\r\n\r\n".to_string(),
            "/obs-fold" => "HTTP/1.1 200 OK\r\nx-a: 1\r\n 2\r\ncontent-length: 2\r\n\r\nok".into(),
            "/status-099" => "HTTP/1.1 099 Odd\r\ncontent-length: 2\r\n\r\nok".into(),
            "/space-colon" => "HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\nok".into(),
            "/switch" => "HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n".into(),
            "/storm" => format!(
                "{}{}",
                "HTTP/1.1 100 Continue\r\n\r\n".repeat(10_000),
                ok("after the storm")
            ),
            "/hints" => format!(
                "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\nx-secret-hint: {SECRET}\r\n\r\n{}",
                ok("hinted")
            ),
            "/named" => "HTTP/1.1 200 OK\r\nconnection: x-private\r\nx-private: hidden\r\nkeep-alive: timeout=1\r\ncontent-length: 2\r\n\r\nok".into(),
            "/trailers" => "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-up-trailer\r\n\r\n2\r\nok\r\n0\r\nx-up-trailer: t\r\n\r\n"
                .into(),
            "/more" => format!("{}{}", ok("ok"), "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nPOISONED"),
            t => ok(t),
        };
        vec![send(answer)]
    })
    .await;
    let gw = start_with(backend.addr, ALL, "", "1s");
    let mut failures = Vec::new();
    for (path, want, body) in [
        ("/close", 502, None),
        ("/garbage", 502, None),
        ("/obs-fold", 502, None),
        ("/status-099", 502, None),
        ("/space-colon", 502, None),
        ("/switch", 502, None),
        ("/storm", 200, Some("after the storm")),
        ("/hints", 200, Some("hinted")),
        ("/named", 200, Some("ok")),
        ("/trailers", 200, Some("ok")),
        ("/more", 200, Some("ok")),
        ("/next", 200, Some("/next")),
        ("/never", 504, None),
    ] {
        let started = Instant::now();
        let req = format!(
            "GET {path} HTTP/1.1\r\nhost: a.test\r\nte: trailers\r\nconnection: close\r\n\r\n"
        );
        let mut tcp = TcpStream::connect(gw.addr()).await.expect("connect");
        tcp.write_all(req.as_bytes()).await.expect("write");
        let answer = read_quiet(&mut tcp, Duration::from_millis(1500)).await;
        let got = responses(&answer);
        let a = text(&answer);
        if got.len() != 1 || got[0].0 != want || body.is_some_and(|b| text(&got[0].1) != b) {
            failures.push(format!("{path}: {a:?}"));
        }
        let lower = a.to_ascii_lowercase();
        for leak in [SECRET, "x-private", "keep-alive", "upgrade", "poisoned"] {
            if lower.contains(&leak.to_ascii_lowercase()) {
                failures.push(format!("{path}: {leak} reached the client: {a:?}"));
            }
        }
        if started.elapsed() > Duration::from_secs(3) {
            failures.push(format!("{path}: took {:?}", started.elapsed()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let backend = Strict::echo().await;
    let gw = start_with(
        backend.addr,
        ALL,
        "limits: { header_read_timeout: 1s, idle_timeout: 3s }",
        "1s",
    );
    // Slowloris: a head one byte every 100 ms, on the lean path and, with
    // more fields than it takes, on hyper's.
    let many: String = (0..70).map(|i| format!("x-{i}: v\r\n")).collect();
    for head in [
        "GET /slow HTTP/1.1\r\nhost: a.test\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n".to_string(),
        format!("GET /slow HTTP/1.1\r\nhost: a.test\r\n{many}\r\n"),
    ] {
        let started = Instant::now();
        let mut tcp = TcpStream::connect(gw.addr()).await.expect("connect");
        // The long head goes in one piece up to its last 40 bytes.
        let (fast, slow) = head.split_at(head.len() - 40);
        tcp.write_all(fast.as_bytes()).await.expect("write");
        let mut closed = None;
        for b in slow.bytes() {
            let mut probe = [0u8; 64];
            match timeout(Duration::from_millis(100), tcp.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = Some(started.elapsed());
                    break;
                }
                _ => {}
            }
            if tcp.write_all(&[b]).await.is_err() {
                closed = Some(started.elapsed());
                break;
            }
        }
        let closed = closed.expect("the trickled head was served");
        assert!(closed < Duration::from_millis(2500), "{closed:?}");
    }
    // A body that trickles: the upstream's timeout ends it with a 504.
    let started = Instant::now();
    let mut tcp = TcpStream::connect(gw.addr()).await.expect("connect");
    tcp.write_all(b"POST /slow-body HTTP/1.1\r\nhost: a.test\r\ncontent-length: 100\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    for _ in 0..40 {
        if tcp.write_all(b"x").await.is_err() {
            break;
        }
        let mut probe = [0u8; 512];
        match timeout(Duration::from_millis(100), tcp.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&probe[..n]),
            Err(_) => {}
        }
    }
    assert!(matches!(status(&got), Some(504 | 408)), "{}", text(&got));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trailers_never_carry_a_client_credential() {
    let backend = Strict::echo().await;
    let gw = start(backend.addr, &secure_and_public(SECRET), "");
    for path in ["/api/x", "/public"] {
        let req = format!(
            "POST {path} HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\nte: trailers\r\ntrailer: authorization, host, content-length\r\nconnection: close\r\n\r\n2\r\nok\r\n0\r\nauthorization: Bearer spoofed\r\nhost: evil.example\r\ncontent-length: 40\r\n\r\n"
        );
        let answer = converse(gw.addr(), req.as_bytes(), Duration::from_secs(1)).await;
        assert_eq!(status(&answer), Some(200), "{}", text(&answer));
        let seen = backend.seen();
        let s = seen.last().expect("forwarded");
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(text(&s.body), "ok");
        let spoofed = s
            .headers
            .iter()
            .chain(&s.trailers)
            .any(|(_, v)| v.contains("spoofed") || v.contains("evil.example"));
        assert!(!spoofed, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_normalisation_edges_that_hold() {
    let backend = Strict::echo().await;
    let gw = start(backend.addr, &secure_and_public(SECRET), "");
    // (as sent, forwarded as, with the secret)
    for (path, forwarded, secret) in [
        ("/API/x", "/API/x", false),
        ("//api/x", "//api/x", false),
        ("/.//api/x", "//api/x", false),
        ("/api", "/api", false),
        ("/api;x=1/../public/x", "/public/x", false),
        ("/api/x/../../public", "/public", false),
        ("/api/%2e%2e/public", "/public", false),
        ("/api/.%2E/public", "/public", false),
        ("/%61pi/x", "/api/x", true),
        ("/public/../api/x", "/api/x", true),
        ("/public/%2e%2e/api/x", "/api/x", true),
        ("/api/x/..", "/api/", true),
        ("/api/x#/../../public", "/api/x", true),
        (
            "/api/x?next=/../../public",
            "/api/x?next=/../../public",
            true,
        ),
    ] {
        let before = backend.seen().len();
        let req = format!("GET {path} HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n");
        let answer = converse(gw.addr(), req.as_bytes(), Duration::from_secs(1)).await;
        assert_eq!(status(&answer), Some(200), "{path}");
        let seen = backend.seen();
        let s = seen.get(before).expect("forwarded");
        assert_eq!(
            (s.target.as_str(), s.secret()),
            (forwarded, secret),
            "{path}"
        );
    }
    for path in ["/api/\0x", "/api/ x", "/api/\u{7f}"] {
        let req = format!("GET {path} HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n");
        let answer = converse(gw.addr(), req.as_bytes(), Duration::from_secs(1)).await;
        assert_eq!(status(&answer), Some(400), "{path:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_paths_hosts_and_resets() {
    let backend = Strict::echo().await;
    let gw = start(backend.addr, &secure_and_public(SECRET), "");
    let mut sender = h2_sender(gw.addr()).await;
    for (uri, forwarded, secret) in [
        ("http://a.test/api/../public/x", "/public/x", false),
        ("http://a.test/public/%2e%2e/api/x", "/api/x", true),
    ] {
        let r = sender.send_request(h2_get(uri)).await.expect("answer");
        assert_eq!(r.status(), 200);
        let s = backend.seen().last().cloned().expect("forwarded");
        assert_eq!(
            (s.target.as_str(), s.secret()),
            (forwarded, secret),
            "{uri}"
        );
        assert_eq!(s.values("host"), ["a.test"]);
    }
    // Rapid reset: streams opened and cancelled at once; the connection
    // and the gateway still serve.
    for i in 0..1000 {
        let mut s = sender.clone();
        let task = tokio::spawn(async move {
            s.send_request(h2_get(&format!("http://a.test/reset/{i}")))
                .await
        });
        task.abort();
    }
    let r = timeout(TIMEOUT, sender.send_request(h2_get("http://a.test/after")))
        .await
        .expect("in time")
        .expect("answer");
    assert_eq!(r.status(), 200);
    let reply = gateway::get(gw.addr(), "a.test", "/h1-after", &[])
        .await
        .expect("h1 answer");
    assert_eq!(reply.text(), "/h1-after");
}
