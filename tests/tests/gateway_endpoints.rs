//! Upstreams with several endpoints, through a real gateway to real
//! backends on 127.0.0.1 that are killed and restarted while requests run:
//! no idempotent request fails while an endpoint is up; round robin,
//! least_request and hash spread requests as they say; passive ejection
//! and active health checks take an endpoint out and bring it back; when
//! all are unhealthy all are tried (panic mode); health survives a reload;
//! an endpoint a reload removes finishes its requests and gets no new ones;
//! DNS refresh turns each address into an endpoint; a POST whose body was
//! sent is never retried, one that found no connection is; the
//! configuration errors name the file and the key.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};
use wasmgate_tests::{
    backend::{self, Backend},
    endpoints::{PATIENCE, endpoints, start, status_of},
    gateway::{Client, TestGateway, get, send},
    raw::{RawBackend, Step},
    serve::{accept_each, serve_http},
};

/// An admin page's text.
async fn admin(gw: &TestGateway, path: &str) -> anyhow::Result<String> {
    Ok(get(gw.admin(), "localhost", path, &[]).await?.text())
}

/// `endpoint_health.svc` from /config: address → (healthy, ejected).
async fn health(gw: &TestGateway) -> anyhow::Result<BTreeMap<String, (bool, bool)>> {
    let config: serde_json::Value = serde_json::from_str(&admin(gw, "/config").await?)?;
    let list = config["endpoint_health"]["svc"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(list
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap_or("").to_string(),
                (
                    e["healthy"].as_bool().unwrap_or(false),
                    e["ejected"].as_bool().unwrap_or(false),
                ),
            )
        })
        .collect())
}

/// Waits until `/config` shows `addr` with this health.
async fn wait_health(gw: &TestGateway, addr: SocketAddr, healthy: bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = health(gw).await?;
        if now.get(&addr.to_string()).map(|h| h.0) == Some(healthy) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{addr} never became healthy={healthy}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts an echo backend on `addr` again (its port may take a moment to
/// come free after the previous one stopped).
async fn restart(addr: SocketAddr) -> anyhow::Result<Backend> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match backend::start_on(addr).await {
            Ok(b) => return Ok(b),
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A backend that answers every request with `status` after `delay`, and
/// counts them (`/healthz` is answered 200 at once, `/broken` 503, neither
/// counted).
struct Counting {
    addr: SocketAddr,
    count: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl Counting {
    async fn start(status: u16, delay: Duration) -> anyhow::Result<Counting> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let server = tokio::spawn(accept_each(listener, move |tcp| {
            let seen = seen.clone();
            serve_http(
                TokioIo::new(tcp),
                move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let mut status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                        if req.uri().path() == "/healthz" {
                            status = StatusCode::OK;
                        } else if req.uri().path() == "/broken" {
                            status = StatusCode::SERVICE_UNAVAILABLE;
                        } else {
                            seen.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                        }
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *response.status_mut() = status;
                        response
                    }
                },
            )
        }));
        Ok(Counting {
            addr,
            count,
            server,
        })
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_idempotent_request_fails_while_an_endpoint_is_up() -> anyhow::Result<()> {
    let mut backends = [
        backend::start().await?,
        backend::start().await?,
        backend::start().await?,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(Backend::addr).collect();
    let gw = start(&format!(
        "{}\n    connect_timeout: 1s\n    retries: {{ attempts: 3, on: [connect_failure, reset, refused_stream, \"503\"] }}\n    outlier: {{ consecutive_failures: 2, eject_for: 500ms }}",
        endpoints(&addrs)
    ))?;
    let addr = gw.addr();

    // Two clients send GETs without pause until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (stop, failures, sent) = (stop.clone(), failures.clone(), sent.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let reply = get(addr, "svc.test", "/load", &[]).await;
                sent.fetch_add(1, Ordering::SeqCst);
                match reply {
                    Ok(reply) if reply.status == StatusCode::OK => {}
                    Ok(reply) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                        eprintln!("failed: {} {}", reply.status, reply.text());
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                        eprintln!("failed: {e}");
                    }
                }
            }
        }));
    }
    let pause = || tokio::time::sleep(Duration::from_millis(300));
    pause().await;
    // Kill and restart each in turn, two down at once at times, never all.
    let steps = [
        (0, false),
        (1, false),
        (0, true),
        (2, false),
        (1, true),
        (0, false),
        (2, true),
        (0, true),
    ];
    for (i, up) in steps {
        if up {
            backends[i] = restart(addrs[i]).await?;
        } else {
            drop(std::mem::replace(&mut backends[i], backend::start().await?));
        }
        pause().await;
    }
    // The restarted endpoints take requests again (ejections end in 500 ms).
    let before: Vec<usize> = backends.iter().map(|b| b.received().len()).collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await?;
    }
    let sent = sent.load(Ordering::SeqCst);
    assert_eq!(failures.load(Ordering::SeqCst), 0, "of {sent} requests");
    assert!(sent > 50, "only {sent} requests ran");
    for (i, b) in backends.iter().enumerate() {
        assert!(
            b.received().len() > before[i],
            "restarted endpoint {i} got no requests"
        );
    }
    let metrics = admin(&gw, "/metrics").await?;
    assert!(
        metrics.contains(&format!(
            "wasmgate_endpoint_retries_total{{upstream=\"svc\",endpoint=\"{}\"}}",
            addrs[0]
        )),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly() -> anyhow::Result<()> {
    let backends = [
        Counting::start(200, Duration::ZERO).await?,
        Counting::start(200, Duration::ZERO).await?,
        Counting::start(200, Duration::ZERO).await?,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let gw = start(&endpoints(&addrs))?;
    let addr = gw.addr();
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..250 {
                statuses.push(status_of(addr, "/rr", &[]).await);
            }
            statuses
        }));
    }
    for client in clients {
        assert!(client.await?.iter().all(|&s| s == 200));
    }
    let counts: Vec<usize> = backends.iter().map(Counting::count).collect();
    assert_eq!(counts.iter().sum::<usize>(), 1000);
    for &n in &counts {
        assert!(
            (300..=367).contains(&n),
            "1000 requests spread as {counts:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_prefers_the_idle_endpoint() -> anyhow::Result<()> {
    // The slow one holds each request for 3 s: while it does, it is busy.
    let slow = Counting::start(200, Duration::from_secs(3)).await?;
    let fast = Counting::start(200, Duration::ZERO).await?;
    let gw = start(&format!(
        "{}\n    balance: least_request",
        endpoints(&[slow.addr, fast.addr])
    ))?;
    let addr = gw.addr();
    let mut requests = Vec::new();
    for _ in 0..20 {
        requests.push(tokio::spawn(status_of(addr, "/lr", &[])));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for request in requests {
        assert_eq!(request.await?, 200);
    }
    // Each worker may send its first request to the slow one (a tie).
    assert!(slow.count() <= 2, "slow got {}", slow.count());
    assert_eq!(slow.count() + fast.count(), 20);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_keeps_a_key_on_one_endpoint() -> anyhow::Result<()> {
    let backends = [
        backend::start().await?,
        backend::start().await?,
        backend::start().await?,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(Backend::addr).collect();
    let gw = start(&format!(
        "{}\n    balance: hash\n    hash_header: x-user",
        endpoints(&addrs)
    ))?;
    for round in 0..4 {
        for user in 0..20 {
            let user = format!("user-{user}");
            let status = status_of(gw.addr(), &format!("/h/{round}"), &[("x-user", &user)]).await;
            assert_eq!(status, 200);
        }
    }
    let mut homes: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, b) in backends.iter().enumerate() {
        for r in b.received() {
            let user = r.header("x-user").unwrap_or("-").to_string();
            homes.entry(user).or_default().insert(i);
        }
    }
    assert_eq!(homes.len(), 20);
    for (user, home) in &homes {
        assert_eq!(home.len(), 1, "{user} went to {home:?}");
    }
    let used: BTreeSet<usize> = homes.values().flatten().copied().collect();
    assert!(used.len() >= 2, "every key on {used:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_is_ejected_then_comes_back() -> anyhow::Result<()> {
    let good = Counting::start(200, Duration::ZERO).await?;
    let bad = Counting::start(503, Duration::ZERO).await?;
    let gw = start(&format!(
        "{}\n    outlier: {{ consecutive_failures: 3, eject_for: 1s, max_ejected_percent: 50 }}",
        endpoints(&[good.addr, bad.addr])
    ))?;
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(status_of(gw.addr(), "/e", &[]).await);
    }
    // Three 503s eject it (one more may be in flight on the other worker).
    assert!(bad.count() <= 4, "bad got {} of 40", bad.count());
    assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), bad.count());
    let shown = health(&gw).await?;
    assert_eq!(
        shown.get(&bad.addr.to_string()),
        Some(&(true, true)),
        "{shown:?}"
    );
    let metrics = admin(&gw, "/metrics").await?;
    let ejections = format!(
        "wasmgate_endpoint_ejections_total{{upstream=\"svc\",endpoint=\"{}\"}} 1",
        bad.addr
    );
    assert!(metrics.contains(&ejections), "{metrics}");
    // After eject_for it takes requests again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = bad.count();
    for _ in 0..4 {
        status_of(gw.addr(), "/e", &[]).await;
    }
    assert!(bad.count() > before, "never came back");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_an_endpoint_out_and_bring_it_back() -> anyhow::Result<()> {
    let a = backend::start().await?;
    let b = backend::start().await?;
    let (a_addr, b_addr) = (a.addr(), b.addr());
    let upstream = format!(
        "{}\n    health_check: {{ path: /healthz, interval: 100ms, timeout: 1s, healthy: 2, unhealthy: 2 }}",
        endpoints(&[a_addr, b_addr])
    );
    let gw = start(&upstream)?;
    wait_health(&gw, b_addr, true).await?;
    drop(b);
    wait_health(&gw, b_addr, false).await?;
    // No retries configured: every request succeeding shows none went to b.
    for _ in 0..20 {
        assert_eq!(status_of(gw.addr(), "/hc", &[]).await, 200);
    }
    let b = restart(b_addr).await?;
    wait_health(&gw, b_addr, true).await?;
    for _ in 0..20 {
        assert_eq!(status_of(gw.addr(), "/hc", &[]).await, 200);
    }
    assert!(b.received().len() >= 5, "b got {}", b.received().len());
    let checks = b.received().iter().filter(|r| r.path == "/healthz").count();
    assert!(checks >= 2, "health checks seen: {checks}");
    drop(a);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_health_of_endpoints_that_stay() -> anyhow::Result<()> {
    let a = backend::start().await?;
    let b = backend::start().await?;
    let (a_addr, b_addr) = (a.addr(), b.addr());
    // Three failed checks 300 ms apart make an endpoint unhealthy: a
    // restart from scratch would show it healthy for at least 600 ms.
    let upstream = format!(
        "{}\n    health_check: {{ path: /healthz, interval: 300ms, timeout: 1s, healthy: 1, unhealthy: 3 }}",
        endpoints(&[a_addr, b_addr])
    );
    let gw = start(&upstream)?;
    drop(b);
    wait_health(&gw, b_addr, false).await?;
    gw.rewrite(&std::fs::read_to_string(&gw.config_path)?.replace("name: all", "name: renamed"))?;
    gw.handle.reload(None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let shown = health(&gw).await?;
    assert_eq!(
        shown.get(&b_addr.to_string()),
        Some(&(false, false)),
        "{shown:?}"
    );
    for _ in 0..10 {
        assert_eq!(status_of(gw.addr(), "/r", &[]).await, 200);
    }
    drop(a);
    Ok(())
}

/// A backend that reads a request and closes without answering.
async fn hang_up() -> anyhow::Result<RawBackend> {
    Ok(RawBackend::start(|_| vec![Step::Wait(Duration::from_millis(100)), Step::Close]).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_body_was_sent_is_not_retried() -> anyhow::Result<()> {
    let bad = hang_up().await?;
    let good = backend::start().await?;
    let gw = start(&format!(
        "{}\n    retries: {{ attempts: 3, on: [connect_failure, reset, 5xx] }}",
        endpoints(&[bad.addr, good.addr()])
    ))?;
    // GETs are retried on the other endpoint.
    for _ in 0..4 {
        assert_eq!(status_of(gw.addr(), "/g", &[]).await, 200);
    }
    let gets_at_bad = bad.heads().len();
    assert!(gets_at_bad >= 1, "round robin never chose the bad endpoint");
    let mut failed = 0;
    for i in 0..4 {
        let req = Request::post("/p")
            .header("host", "svc.test")
            .body(Full::new(Bytes::from(format!("order {i}"))))?;
        let reply = send(gw.addr(), &Client::Http1, req).await?;
        match reply.status.as_u16() {
            200 => {}
            502 => failed += 1,
            other => panic!("POST answered {other}"),
        }
    }
    let posts_at_bad = bad.heads().len() - gets_at_bad;
    let posts_at_good = good
        .received()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert!(
        posts_at_bad >= 1,
        "round robin never sent a POST to the bad endpoint"
    );
    assert_eq!(failed, posts_at_bad, "a failed POST was retried");
    assert_eq!(posts_at_good, 4 - posts_at_bad, "a POST went to both");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_found_no_connection_goes_elsewhere() -> anyhow::Result<()> {
    let good = backend::start().await?;
    let dead = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let gw = start(&format!(
        "{}\n    retries: {{ attempts: 1, on: [connect_failure] }}",
        endpoints(&[dead, good.addr()])
    ))?;
    for i in 0..4 {
        let req = Request::post("/p")
            .header("host", "svc.test")
            .body(Full::new(Bytes::from(format!("order {i}"))))?;
        let reply = send(gw.addr(), &Client::Http1, req).await?;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let bodies: Vec<String> = good
        .received()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(bodies, ["order 0", "order 1", "order 2", "order 3"]);
    Ok(())
}

#[tokio::test]
async fn configuration_errors_name_the_file_and_the_key() -> anyhow::Result<()> {
    for (upstream, expected) in [
        (
            "    url: http://127.0.0.1:1\n    endpoints: [http://127.0.0.1:2]",
            "upstreams.svc: give either url or endpoints, not both",
        ),
        (
            "    endpoints: []",
            "upstreams.svc.endpoints: must list at least one URL",
        ),
        (
            "    endpoints: [http://127.0.0.1:2]\n    balance: hash",
            "upstreams.svc.hash_header: missing",
        ),
        (
            "    endpoints: [http://127.0.0.1:2]\n    retries: { attempts: 7 }",
            "upstreams.svc.retries.attempts: 7 is out of range (1 to 5)",
        ),
        (
            "    endpoints: [http://127.0.0.1:2]\n    health_check: { path: /h, interval: soon }",
            "a duration starts with a number",
        ),
    ] {
        let error = start(upstream).expect_err("refused").to_string();
        assert!(error.contains("config.yaml"), "{error}");
        assert!(error.contains(expected), "expected {expected:?} in {error}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_refresh_makes_each_address_an_endpoint() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let port = backend.addr().port();
    let gw = start(&format!(
        "    endpoints: [http://localhost:{port}]\n    dns_refresh: 1s\n    retries: {{ attempts: 2, on: [connect_failure] }}"
    ))?;
    // `localhost` resolves to 127.0.0.1 (and maybe ::1, where nothing listens).
    let address = format!("127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let config: serde_json::Value = loop {
        let config: serde_json::Value = serde_json::from_str(&admin(&gw, "/config").await?)?;
        let listed = config["endpoint_health"]["svc"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["address"] == address.as_str()));
        if listed || tokio::time::Instant::now() > deadline {
            break config;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let list = config["endpoint_health"]["svc"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let resolved = list.iter().find(|e| e["address"] == address.as_str());
    assert_eq!(
        resolved.map(|e| e["hostname"].clone()),
        Some(serde_json::json!("localhost")),
        "{config}"
    );
    for _ in 0..6 {
        assert_eq!(status_of(gw.addr(), "/dns", &[]).await, 200);
    }
    // The Host sent is still the configured one.
    let hosts: BTreeSet<String> = backend
        .received()
        .iter()
        .filter_map(|r| r.header("host").map(str::to_string))
        .collect();
    assert_eq!(hosts, BTreeSet::from(["svc.test".to_string()]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_removed_by_a_reload_finishes_its_requests() -> anyhow::Result<()> {
    let slow = Counting::start(200, Duration::from_millis(1500)).await?;
    let fast = Counting::start(200, Duration::ZERO).await?;
    let gw = start(&endpoints(&[slow.addr, fast.addr]))?;
    let addr = gw.addr();
    // The first request of a round robin goes to the first endpoint.
    let in_flight = tokio::spawn(status_of(addr, "/slow", &[]));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while slow.count() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(slow.count(), 1);
    let config = std::fs::read_to_string(&gw.config_path)?;
    gw.rewrite(&config.replace(&format!("http://{}, ", slow.addr), ""))?;
    gw.handle.reload(None).map_err(|e| anyhow::anyhow!("{e}"))?;
    for _ in 0..10 {
        assert_eq!(status_of(addr, "/after", &[]).await, 200);
    }
    assert_eq!(slow.count(), 1, "a removed endpoint got a new request");
    assert_eq!(fast.count(), 10);
    assert_eq!(
        in_flight.await?,
        200,
        "the request in flight did not finish"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_endpoint_is_unhealthy_all_are_tried() -> anyhow::Result<()> {
    let a = Counting::start(200, Duration::ZERO).await?;
    let b = Counting::start(200, Duration::ZERO).await?;
    let gw = start(&format!(
        "{}\n    health_check: {{ path: /broken, interval: 100ms, unhealthy: 1 }}",
        endpoints(&[a.addr, b.addr])
    ))?;
    wait_health(&gw, a.addr, false).await?;
    wait_health(&gw, b.addr, false).await?;
    for _ in 0..10 {
        assert_eq!(status_of(gw.addr(), "/panic", &[]).await, 200);
    }
    assert_eq!((a.count(), b.count()), (5, 5));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_refresh_applies_to_a_url_too() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let port = backend.addr().port();
    let gw = start(&format!(
        "    url: http://localhost:{port}\n    dns_refresh: 1s\n    retries: {{ on: [connect_failure] }}"
    ))?;
    let address = format!("127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !health(&gw).await?.contains_key(&address) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            health(&gw).await?
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status_of(gw.addr(), "/url", &[]).await, 200);
    Ok(())
}
