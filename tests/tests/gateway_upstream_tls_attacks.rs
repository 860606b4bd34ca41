//! Attacks on the lean HTTP/1.1 client's https upstreams (`upstream/h1.rs`
//! over tokio-rustls), from outside: a really started gateway (one worker,
//! so upstream connections are pooled and reused) in front of TLS backends
//! written byte by byte ([`Wire`]: a rustls server session driven by hand,
//! so a test chooses which TLS records go out, how they are cut into TCP
//! writes, and when).
//!
//! Held to: what a backend writes after or around a response (whole or
//! partial records, a record header a byte at a time, a smuggled second
//! response in the same record, one record per byte, a KeyUpdate, a record
//! that does not decrypt, a bare FIN, a reset), over TLS 1.3 and 1.2, never
//! answers another request; 50 concurrent clients against a backend out of
//! pace, with a bounded pool, each get their own response; ALPN that
//! differs per connection is served, ALPN with nothing in common fails
//! closed; certificates that do not verify (self-signed, expired, another
//! name even on a second connection after one was pooled) are a 502 with
//! no request bytes sent; 101 is refused and 1xx skipped; chunked trailers
//! cut across records; a reset mid-handshake is a 502; a stall before the
//! head is a 504 within the upstream's `timeout`, one in the body is cut
//! within its `read_timeout`; no CPU is spent while a half-closed
//! connection sits in the pool or a response stalls.
//!
//! Runs with `WASMGATE_LEAN_HTTP1=off` too (hyper's client), every case
//! included.

use std::{
    io::{self, Write},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use rustls::{
    ServerConfig, ServerConnection,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::{sleep, timeout},
};
use wasmgate_tests::{
    gateway::{self, Reply, TestGateway, get},
    record::Log,
    serve::{accept_each, serve_https},
    tls::Pki,
    tls_wire::{drain, feed, handshake},
};

/// The tests of this file one at a time: one measures the CPU time of the
/// whole process (the gateway runs in it).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The name on the backend's certificate.
const NAME: &str = "api.internal";
/// What a hostile backend tries to slip in as another request's answer.
const POISON: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED";
/// A header the gateway's client sends that must never reach an
/// unverified backend.
const SECRET: &str = "x-secret-token";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration presenting `cert`/`key` (DER), offering `alpn`.
fn config_from(cert: CertificateDer<'static>, key: Vec<u8>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .expect("server cert");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// `config` offering only `http/1.1`.
fn h1_only(config: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::clone(config);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A server configuration with a certificate for `name` from `pki`.
fn server_config(pki: &Pki, name: &str, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let cert = pki.issue(name, &[name]);
    let mut config = ServerConfig::clone(&pki.server_config(&cert, false));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// One connection of a [`WireBackend`]: a rustls server session whose
/// records the test writes to TCP itself.
struct Wire {
    id: usize,
    tcp: TcpStream,
    tls: ServerConnection,
    plain: Vec<u8>,
    heads: Log<(usize, String)>,
}

impl Wire {
    async fn accept(
        mut tcp: TcpStream,
        config: Arc<ServerConfig>,
        id: usize,
        heads: Log<(usize, String)>,
    ) -> io::Result<Wire> {
        let (tls, plain) = handshake(&mut tcp, config).await?;
        Ok(Wire {
            id,
            tcp,
            tls,
            plain,
            heads,
        })
    }

    /// The next request head (logged); `None` when the peer closes.
    async fn head(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.plain.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.plain.drain(..end + 4).collect();
                let head = String::from_utf8_lossy(&head).into_owned();
                self.heads.push((self.id, head.clone()));
                return Some(head);
            }
            let mut buf = [0u8; 16 * 1024];
            let n = self.tcp.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            feed(&mut self.tls, &buf[..n], &mut self.plain).ok()?;
            // A KeyUpdate answer and the like.
            let out = drain(&mut self.tls).ok()?;
            if !out.is_empty() {
                self.tcp.write_all(&out).await.ok()?;
            }
        }
    }

    /// `plain` as TLS records (not yet sent).
    fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let _ = self.tls.writer().write_all(plain);
        drain(&mut self.tls).unwrap_or_default()
    }

    /// Writes raw bytes to TCP.
    async fn raw(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).await.is_ok() && self.tcp.flush().await.is_ok()
    }

    /// Seals and sends `plain`.
    async fn send(&mut self, plain: &[u8]) -> bool {
        let wire = self.seal(plain);
        self.raw(&wire).await
    }

    /// A KeyUpdate record (TLS 1.3), not yet sent.
    fn key_update(&mut self) -> Vec<u8> {
        let _ = self.tls.refresh_traffic_keys();
        drain(&mut self.tls).unwrap_or_default()
    }

    /// A `close_notify` record, not yet sent.
    fn close_notify(&mut self) -> Vec<u8> {
        self.tls.send_close_notify();
        drain(&mut self.tls).unwrap_or_default()
    }

    /// A TCP reset.
    fn reset(self) {
        let _ = self.tcp.set_zero_linger();
        drop(self.tcp);
    }
}

/// A TLS backend whose connections are driven by a handler over [`Wire`];
/// connection `n` uses `configs[n]` (the last one for all later).
struct WireBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    heads: Log<(usize, String)>,
    task: JoinHandle<()>,
}

impl WireBackend {
    async fn start<F, Fut>(configs: Vec<Arc<ServerConfig>>, handler: F) -> io::Result<WireBackend>
    where
        F: Fn(Wire) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Log::default();
        let handler = Arc::new(handler);
        let (count, log) = (accepted.clone(), heads.clone());
        let task = tokio::spawn(accept_each(listener, move |tcp| {
            let id = count.fetch_add(1, Ordering::SeqCst);
            let config = configs[id.min(configs.len() - 1)].clone();
            let (handler, log) = (handler.clone(), log.clone());
            async move {
                if let Ok(Ok(wire)) =
                    timeout(Duration::from_secs(10), Wire::accept(tcp, config, id, log)).await
                {
                    handler(wire).await;
                }
            }
        }));
        Ok(WireBackend {
            addr,
            accepted,
            heads,
            task,
        })
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Request heads received on connection `id`.
    fn heads_on(&self, id: usize) -> Vec<String> {
        self.heads
            .snapshot()
            .into_iter()
            .filter(|(c, _)| *c == id)
            .map(|(_, h)| h)
            .collect()
    }
}

impl Drop for WireBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The path of a request head.
fn path_of(head: &str) -> String {
    head.split_whitespace().nth(1).unwrap_or("").to_string()
}

/// A response whose body is `body`.
fn answer(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A gateway (one worker) sending everything to `https://addr`, verified
/// against `ca` for [`NAME`]; `extra` adds keys to the upstream.
fn start(addr: SocketAddr, ca: &std::path::Path, extra: &str) -> anyhow::Result<TestGateway> {
    start_timeout(addr, ca, "5s", extra)
}

/// The same with this upstream `timeout`.
fn start_timeout(
    addr: SocketAddr,
    ca: &std::path::Path,
    timeout: &str,
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
    timeout: {timeout}{extra}
routes: [{{ name: all, match: {{}}, upstream: backend }}]
"#,
        ca.display()
    ))
}

/// `path` must come back 200 with `path` as its body.
async fn own(gw: &TestGateway, path: &str) -> anyhow::Result<()> {
    let r = get(gw.addr(), "a.test", path, &[]).await?;
    assert_eq!(
        (r.status, r.text()),
        (StatusCode::OK, path.to_string()),
        "{path}: not its own answer"
    );
    Ok(())
}

/// A 502, or a failure the client sees, never a whole 200.
fn failed(path: &str, r: &anyhow::Result<Reply>) {
    if let Ok(r) = r {
        assert!(
            r.status == StatusCode::BAD_GATEWAY || r.status == StatusCode::GATEWAY_TIMEOUT,
            "{path}: a broken response passed as {}: {:?}",
            r.status,
            r.text()
        );
    }
}

/// CPU time (user + system, in clock ticks) this process used so far.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime): 12 and 13 after the name.
    fields
        .get(11)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
}

/// The shapes of late bytes after a `Content-Length: 2` response on a
/// pooled connection: the answer to `/late/...` is `ok` followed by
/// something no one asked for.
async fn late_bytes(mut w: Wire) {
    while let Some(head) = w.head().await {
        let path = path_of(&head);
        let Some(shape) = path.strip_prefix("/late/") else {
            if !w.send(&answer(&path)).await {
                return;
            }
            continue;
        };
        // Sealed only where it is sent: records go out in the order sealed.
        let parts: Vec<&str> = shape.split('-').collect();
        match parts.as_slice() {
            // A whole record, `ms` after the response (0: same TCP write).
            ["record", ms] => {
                let first = w.seal(&answer("ok"));
                let ms: u64 = ms.parse().unwrap_or(0);
                let poison = w.seal(POISON);
                if ms == 0 {
                    let _ = w.raw(&[first, poison].concat()).await;
                } else {
                    let _ = w.raw(&first).await;
                    sleep(Duration::from_millis(ms)).await;
                    let _ = w.raw(&poison).await;
                }
            }
            // The response and the first `cut` bytes of the next record
            // in one TCP write, the rest later.
            ["split", cut] => {
                let first = w.seal(&answer("ok"));
                let cut: usize = cut.parse().unwrap_or(1);
                let poison = w.seal(POISON);
                let cut = cut.min(poison.len() - 1);
                let _ = w.raw(&[&first[..], &poison[..cut]].concat()).await;
                sleep(Duration::from_millis(300)).await;
                let _ = w.raw(&poison[cut..]).await;
            }
            // A record header alone in its own TCP segments, a byte at a time.
            ["trickle"] => {
                let first = w.seal(&answer("ok"));
                let poison = w.seal(POISON);
                let _ = w.raw(&first).await;
                for b in &poison[..5] {
                    sleep(Duration::from_millis(5)).await;
                    let _ = w.raw(&[*b]).await;
                }
                sleep(Duration::from_millis(300)).await;
                let _ = w.raw(&poison[5..]).await;
            }
            // A second response in the same record as the first.
            ["smuggle"] => {
                let _ = w.send(&[answer("ok"), POISON.to_vec()].concat()).await;
            }
            // The response, one TLS record per byte.
            ["bytewise"] => {
                let mut wire = Vec::new();
                for b in answer("ok") {
                    wire.extend(w.seal(&[b]));
                }
                let _ = w.raw(&wire).await;
            }
            // Post-handshake handshake messages: a KeyUpdate, then a real
            // answer to the next request.
            ["keyupdate", ms] => {
                let first = w.seal(&answer("ok"));
                let ms: u64 = ms.parse().unwrap_or(0);
                let _ = w.raw(&first).await;
                sleep(Duration::from_millis(ms)).await;
                let ku = w.key_update();
                let _ = w.raw(&ku).await;
            }
            // A record that does not decrypt (a plaintext fatal alert after
            // the handshake): the connection is dead.
            ["alert"] => {
                let first = w.seal(&answer("ok"));
                let _ = w.raw(&first).await;
                sleep(Duration::from_millis(20)).await;
                let _ = w.raw(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]).await;
            }
            // A reset right after the response, while idle in the pool.
            ["reset"] => {
                let first = w.seal(&answer("ok"));
                let _ = w.raw(&first).await;
                sleep(Duration::from_millis(30)).await;
                w.reset();
                return;
            }
            // A bare FIN (no close_notify) while idle: half-closed.
            ["fin"] => {
                let first = w.seal(&answer("ok"));
                let _ = w.raw(&first).await;
                sleep(Duration::from_millis(30)).await;
                let _ = w.tcp.shutdown().await;
                // Stay half-closed a while.
                sleep(Duration::from_secs(5)).await;
                return;
            }
            _ => {
                let first = w.seal(&answer("ok"));
                let _ = w.raw(&first).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_records_in_every_shape_never_answer_another_request() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new("backend CA");
    // TLS 1.3, then TLS 1.2 (the same record headers; no KeyUpdate there).
    for (config, tls12) in [
        (server_config(&pki, NAME, &[b"http/1.1"]), false),
        (tls12_config(&pki, NAME), true),
    ] {
        late_records(&pki, config, tls12).await?;
    }
    Ok(())
}

/// A TLS 1.2-only server configuration for `name`, ALPN `http/1.1`.
fn tls12_config(pki: &Pki, name: &str) -> Arc<ServerConfig> {
    let files = pki.issue("tls12", &[name]);
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .expect("cert file")
        .map(|c| c.expect("cert PEM"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(&files.key).expect("key file");
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server cert");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn late_records(pki: &Pki, config: Arc<ServerConfig>, tls12: bool) -> anyhow::Result<()> {
    let backend = WireBackend::start(vec![config], late_bytes).await?;
    let gw = start(backend.addr, &pki.ca_pem, "")?;
    let shapes = [
        ("record-0", 100),
        ("record-5", 100),
        ("record-50", 150),
        ("smuggle", 50),
        ("bytewise", 50),
        ("keyupdate-0", 100),
        ("keyupdate-30", 100),
        ("alert", 100),
        ("reset", 100),
        ("fin", 100),
        // Part of the next record already read with the response: rustls
        // holds it and shows no plaintext, so only the record tracker
        // knows (both clients ask it). `trickle`: the header a byte at a
        // time, after the response (the next request waits until it has
        // arrived: late bytes that come only after a request was written
        // on the connection cannot be told from its answer, by any HTTP/1.1
        // client).
        ("trickle", 100),
        ("split-1", 0),
        ("split-2", 0),
        ("split-3", 0),
        ("split-4", 0),
        ("split-5", 0),
        ("split-6", 0),
        ("split-40", 0),
    ];
    for (i, (shape, wait)) in shapes.iter().enumerate() {
        let r = get(gw.addr(), "a.test", &format!("/late/{shape}"), &[]).await?;
        assert_eq!(
            (r.status, r.text().as_str()),
            (StatusCode::OK, "ok"),
            "{shape} (TLS 1.2 only: {tls12})"
        );
        sleep(Duration::from_millis(*wait)).await;
        // Another client, then one more: each gets its own answer.
        own(&gw, &format!("/next/{i}/{shape}/{tls12}")).await?;
        own(&gw, &format!("/again/{i}/{shape}/{tls12}")).await?;
        if shape.starts_with("split") || *shape == "trickle" {
            // Let the rest of the record arrive on the dropped connection.
            sleep(Duration::from_millis(350)).await;
        }
    }
    let _ = backend.accepted();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_clients_each_get_their_own_response() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new("backend CA");
    let config = server_config(&pki, NAME, &[b"http/1.1"]);
    // Out of pace: a delay from the path, the head and the body in two
    // records some of the time, a 1xx first some other time.
    let backend = WireBackend::start(vec![config], |mut w: Wire| async move {
        while let Some(head) = w.head().await {
            let path = path_of(&head);
            let n: u64 = path.bytes().map(u64::from).sum();
            sleep(Duration::from_millis(n % 23)).await;
            let whole = answer(&path);
            let ok = match n % 3 {
                0 => {
                    let cut = whole.len() - 3;
                    let a = w.seal(&whole[..cut]);
                    let b = w.seal(&whole[cut..]);
                    w.raw(&a).await && {
                        sleep(Duration::from_millis(n % 7)).await;
                        w.raw(&b).await
                    }
                }
                1 => {
                    w.send(
                        &[
                            &b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n"[..],
                            &whole[..],
                        ]
                        .concat(),
                    )
                    .await
                }
                _ => w.send(&whole).await,
            };
            if !ok {
                return;
            }
        }
    })
    .await?;
    let gw = start(backend.addr, &pki.ca_pem, "\n    max_connections: 6")?;
    for round in 0..3 {
        let mut clients = Vec::new();
        for i in 0..50 {
            let addr = gw.addr();
            clients.push(tokio::spawn(async move {
                let path = format!("/r{round}/c{i}/{}", "x".repeat(i % 9));
                let r = get(addr, "a.test", &path, &[]).await;
                (path, r)
            }));
        }
        for c in clients {
            let (path, r) = c.await?;
            let r = r?;
            assert_eq!(
                (r.status, r.text()),
                (StatusCode::OK, path.clone()),
                "{path}"
            );
        }
    }
    assert!(
        backend.accepted() <= 6,
        "max_connections bounds the pool: {}",
        backend.accepted()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_over_tls_1xx_101_and_split_trailers() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new("backend CA");
    let config = server_config(&pki, NAME, &[b"http/1.1"]);
    let backend = WireBackend::start(vec![config], |mut w: Wire| async move {
        while let Some(head) = w.head().await {
            let path = path_of(&head);
            let ok = if path == "/switch" {
                w.send(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: evil\r\nconnection: upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED")
                    .await
            } else if path == "/continue" {
                // Two informational responses, each in records of its own.
                w.send(b"HTTP/1.1 100 Continue\r\n\r\n").await
                    && w.send(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n").await
                    && w.send(&answer(&path)).await
            } else if path == "/trailers" {
                // Chunked, trailers cut across records and TCP writes.
                let pieces: [&[u8]; 5] = [
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n",
                    b"5\r\n/tra",
                    b"i\r\n4\r\n",
                    b"lers\r\n0\r\nx-",
                    b"t: done\r\n\r\n",
                ];
                let mut ok = true;
                for (i, p) in pieces.iter().enumerate() {
                    let wire = w.seal(p);
                    // The last one's record header alone first.
                    if i == pieces.len() - 1 {
                        ok &= w.raw(&wire[..3]).await;
                        sleep(Duration::from_millis(10)).await;
                        ok &= w.raw(&wire[3..]).await;
                    } else {
                        ok &= w.raw(&wire).await;
                        sleep(Duration::from_millis(5)).await;
                    }
                }
                ok
            } else {
                w.send(&answer(&path)).await
            };
            if !ok {
                return;
            }
        }
    })
    .await?;
    let gw = start(backend.addr, &pki.ca_pem, "")?;
    for round in 0..2 {
        own(&gw, "/continue").await?;
        let r = get(gw.addr(), "a.test", "/trailers", &[]).await?;
        assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "/trailers"));
        own(&gw, &format!("/after-trailers/{round}")).await?;
        let r = get(gw.addr(), "a.test", "/switch", &[]).await;
        failed("/switch", &r);
        own(&gw, &format!("/after-switch/{round}")).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_that_differs_per_connection_is_served() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    // h2 on even connections, http/1.1 on odd ones, and the other way round.
    for first_h2 in [true, false] {
        let pki = Pki::new("backend CA");
        let h2 = server_config(&pki, NAME, &[b"h2"]);
        let h1 = server_config(&pki, NAME, &[b"http/1.1"]);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Log::<(String, String)>::default();
        let (c, log) = (count.clone(), seen.clone());
        let task = tokio::spawn(accept_each(listener, move |tcp| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            let config = if (n % 2 == 0) == first_h2 {
                h2.clone()
            } else {
                h1.clone()
            };
            let log = log.clone();
            async move {
                serve_https(tcp, config, move |req: Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        log.push((path.clone(), format!("{:?}", req.version())));
                        sleep(Duration::from_millis(5)).await;
                        Response::new(Full::new(Bytes::from(path)))
                    }
                })
                .await;
            }
        }));
        let gw = start(addr, &pki.ca_pem, "")?;
        for i in 0..4 {
            own(&gw, &format!("/seq/{first_h2}/{i}")).await?;
        }
        for round in 0..2 {
            let mut clients = Vec::new();
            for i in 0..12 {
                let gw_addr = gw.addr();
                clients.push(tokio::spawn(async move {
                    let path = format!("/con/{first_h2}/{round}/{i}");
                    (path.clone(), get(gw_addr, "a.test", &path, &[]).await)
                }));
            }
            for c in clients {
                let (path, r) = c.await?;
                let r = r?;
                assert_eq!((r.status, r.text()), (StatusCode::OK, path.clone()));
            }
        }
        task.abort();
        assert_eq!(seen.snapshot().len(), 4 + 24, "first h2: {first_h2}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_without_a_common_protocol_fails_closed() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new("backend CA");
    let config = server_config(&pki, NAME, &[b"spdy/3"]);
    let backend = WireBackend::start(vec![config], |mut w: Wire| async move {
        while let Some(head) = w.head().await {
            if !w.send(&answer(&path_of(&head))).await {
                return;
            }
        }
    })
    .await?;
    let gw = start(backend.addr, &pki.ca_pem, "")?;
    for _ in 0..3 {
        let r = get(gw.addr(), "a.test", "/", &[(SECRET, "s3cr3t")]).await?;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    }
    assert!(backend.heads.snapshot().is_empty(), "nothing sent");
    Ok(())
}

/// A self-signed certificate for [`NAME`] (DER, key).
fn self_signed(name: &str) -> (CertificateDer<'static>, Vec<u8>) {
    let params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    (cert.der().clone(), key.serialize_der())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_that_do_not_verify_fail_closed_even_after_pooling() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let serve = |mut w: Wire| async move {
        while let Some(head) = w.head().await {
            let path = path_of(&head);
            // `/last` asks to close: the next request needs a new connection.
            let mut a = answer(&path);
            if path == "/last" {
                a = format!(
                    "HTTP/1.1 200 OK\r\nconnection: close\r\nContent-Length: {}\r\n\r\n{path}",
                    path.len()
                )
                .into_bytes();
            }
            if !w.send(&a).await || path == "/last" {
                let cn = w.close_notify();
                let _ = w.raw(&cn).await;
                return;
            }
        }
    };
    // Self-signed.
    let (cert, key) = self_signed(NAME);
    let other_ca = Pki::new("other CA");
    let backend = WireBackend::start(vec![config_from(cert, key, &[b"http/1.1"])], serve).await?;
    let gw = start(backend.addr, &other_ca.ca_pem, "")?;
    let r = get(gw.addr(), "a.test", "/", &[(SECRET, "s3cr3t")]).await?;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "self-signed");
    assert!(
        backend.heads.snapshot().is_empty(),
        "self-signed: nothing sent"
    );

    // Expired (2001-2002), signed by the trusted CA; the same CA's
    // current certificate is served (the control).
    let pki = Pki::new("backend CA");
    let expired = pki.issue_with("expired", &[NAME], |p| {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    });
    let backend =
        WireBackend::start(vec![h1_only(&pki.server_config(&expired, false))], serve).await?;
    let gw = start(backend.addr, &pki.ca_pem, "")?;
    let r = get(gw.addr(), "a.test", "/", &[(SECRET, "s3cr3t")]).await?;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "expired");
    assert!(backend.heads.snapshot().is_empty(), "expired: nothing sent");
    let current = pki.issue_with("current", &[NAME], |_| {});
    let backend =
        WireBackend::start(vec![h1_only(&pki.server_config(&current, false))], serve).await?;
    let gw = start(backend.addr, &pki.ca_pem, "")?;
    own(&gw, "/control").await?;

    // The right certificate on the first connection (pooled, used), one
    // for another name from the same CA on every later one.
    let pki = Pki::new("backend CA");
    let good = server_config(&pki, NAME, &[b"http/1.1"]);
    let wrong = server_config(&pki, "other.internal", &[b"http/1.1"]);
    let backend = WireBackend::start(vec![good, wrong], serve).await?;
    let gw = start(backend.addr, &pki.ca_pem, "")?;
    own(&gw, "/one").await?;
    own(&gw, "/two").await?;
    own(&gw, "/last").await?;
    sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        let r = get(gw.addr(), "a.test", "/after", &[(SECRET, "s3cr3t")]).await?;
        assert_eq!(
            r.status,
            StatusCode::BAD_GATEWAY,
            "wrong name on a later connection"
        );
    }
    assert_eq!(backend.heads_on(0).len(), 3);
    assert!(backend.accepted() >= 2);
    for id in 1..backend.accepted() {
        assert!(
            backend.heads_on(id).is_empty(),
            "connection {id}: nothing sent"
        );
    }
    assert!(
        !backend
            .heads
            .snapshot()
            .iter()
            .any(|(_, h)| h.contains(SECRET)),
        "the secret never left"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_stalls_are_bounded_and_cost_no_cpu() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new("backend CA");
    let config = server_config(&pki, NAME, &[b"http/1.1"]);
    let backend = WireBackend::start(vec![config], |mut w: Wire| async move {
        while let Some(head) = w.head().await {
            let path = path_of(&head);
            match path.as_str() {
                "/stall-head" => {
                    sleep(Duration::from_secs(30)).await;
                    return;
                }
                "/stall-body" => {
                    let _ = w
                        .send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                        .await;
                    sleep(Duration::from_secs(30)).await;
                    return;
                }
                "/stall-record" => {
                    // Head whole, then half of a record, forever.
                    let _ = w
                        .send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                        .await;
                    let rest = w.seal(&[b'x'; 100]);
                    let _ = w.raw(&rest[..20]).await;
                    sleep(Duration::from_secs(30)).await;
                    return;
                }
                "/reset-body" => {
                    let _ = w
                        .send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                        .await;
                    sleep(Duration::from_millis(20)).await;
                    w.reset();
                    return;
                }
                "/reset-head" => {
                    let _ = w.send(b"HTTP/1.1 200 OK\r\nContent-Le").await;
                    sleep(Duration::from_millis(20)).await;
                    w.reset();
                    return;
                }
                "/idle-fin" => {
                    let _ = w.send(&answer(&path)).await;
                    sleep(Duration::from_millis(20)).await;
                    let _ = w.tcp.shutdown().await;
                    sleep(Duration::from_secs(30)).await;
                    return;
                }
                _ => {
                    if !w.send(&answer(&path)).await {
                        return;
                    }
                }
            }
        }
    })
    .await?;
    let gw = start(backend.addr, &pki.ca_pem, "")?;
    let gw_short = start_timeout(backend.addr, &pki.ca_pem, "1s", "\n    read_timeout: 1s")?;
    // Resets: a failure, then the next client is served.
    for path in ["/reset-head", "/reset-body"] {
        let r = get(gw.addr(), "a.test", path, &[]).await;
        failed(path, &r);
        own(&gw, &format!("{path}/next")).await?;
    }
    // A half-closed connection idle in the pool: no CPU, then a new one.
    own(&gw, "/idle-fin").await?;
    sleep(Duration::from_millis(100)).await;
    let before = cpu_ticks();
    sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks() - before;
    assert!(
        used < 20,
        "{used} ticks in 2 s with a half-closed pooled connection"
    );
    own(&gw, "/idle-fin/next").await?;
    // A stall before the head: `timeout` (1 s) fires, a 504. A stall in the
    // body, even in the middle of a record: `read_timeout` (1 s) cuts it,
    // never a complete 200. No CPU spent while either waits.
    for path in ["/stall-head", "/stall-body", "/stall-record"] {
        let started = Instant::now();
        let gw_addr = gw_short.addr();
        let client = tokio::spawn(async move {
            let r = timeout(Duration::from_secs(2), get(gw_addr, "a.test", path, &[]))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("client gave up")));
            (r, started.elapsed())
        });
        sleep(Duration::from_millis(200)).await;
        let before = cpu_ticks();
        sleep(Duration::from_millis(600)).await;
        let used = cpu_ticks() - before;
        assert!(used < 10, "{path}: {used} ticks in 0.6 s while stalled");
        let (r, took) = client.await?;
        failed(path, &r);
        if path == "/stall-head" {
            let r = r?;
            assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{path}");
        } else {
            let cut = r.expect_err("cut");
            assert!(
                !cut.to_string().contains("client gave up"),
                "{path}: not cut by read_timeout: {cut:#}"
            );
        }
        assert!(took < Duration::from_millis(1800), "{path}: took {took:?}");
        own(&gw_short, &format!("{path}/next")).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_handshake_is_a_502_and_the_next_connection_serves() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new("backend CA");
    let config = server_config(&pki, NAME, &[b"http/1.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let task = tokio::spawn(accept_each(listener, move |mut tcp| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        let config = config.clone();
        async move {
            if n == 0 {
                // Read the ClientHello, reset.
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp.set_zero_linger();
                return;
            }
            if n == 1 {
                // Half a ServerHello-sized record of garbage, then reset.
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp.write_all(&[0x16, 0x03, 0x03, 0x00, 0x40, 0x02]).await;
                sleep(Duration::from_millis(20)).await;
                let _ = tcp.set_zero_linger();
                return;
            }
            serve_https(
                tcp,
                config,
                |req: Request<hyper::body::Incoming>| async move {
                    Response::new(Full::new(Bytes::from(req.uri().path().to_string())))
                },
            )
            .await;
        }
    }));
    let gw = start(addr, &pki.ca_pem, "")?;
    for _ in 0..2 {
        let r = get(gw.addr(), "a.test", "/", &[]).await?;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    }
    own(&gw, "/served").await?;
    task.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_lean_connections_close_once_the_endpoint_speaks_h2() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    // The first connection speaks HTTP/1.1 (the lean client keeps it), every
    // later one h2: once the gateway has seen h2, the lean connection must
    // not sit in the pool holding a `max_connections` slot.
    let pki = Pki::new("backend CA");
    let h2 = server_config(&pki, NAME, &[b"h2"]);
    let h1 = server_config(&pki, NAME, &[b"http/1.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let count = Arc::new(AtomicUsize::new(0));
    let first_closed = Arc::new(tokio::sync::Notify::new());
    let (c, closed) = (count.clone(), first_closed.clone());
    let task = tokio::spawn(accept_each(listener, move |tcp| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        let config = if n == 0 { h1.clone() } else { h2.clone() };
        let closed = closed.clone();
        async move {
            serve_https(
                tcp,
                config,
                |req: Request<hyper::body::Incoming>| async move {
                    let path = req.uri().path().to_string();
                    if path.starts_with("/slow") {
                        sleep(Duration::from_millis(300)).await;
                    }
                    Response::new(Full::new(Bytes::from(path)))
                },
            )
            .await;
            if n == 0 {
                closed.notify_one();
            }
        }
    }));
    let gw = start(addr, &pki.ca_pem, "")?;
    own(&gw, "/first").await?;
    // The lean connection is busy with the slow request; the other opens a
    // second connection, on which the backend picks h2.
    let (a, b) = tokio::join!(own(&gw, "/slow"), async {
        sleep(Duration::from_millis(50)).await;
        own(&gw, "/second").await
    });
    a?;
    b?;
    assert!(
        count.load(Ordering::SeqCst) >= 2,
        "a second connection was opened"
    );
    own(&gw, "/third").await?;
    timeout(Duration::from_secs(3), first_closed.notified())
        .await
        .map_err(|_| anyhow::anyhow!("the HTTP/1.1 connection stayed open once h2 was known"))?;
    task.abort();
    Ok(())
}
