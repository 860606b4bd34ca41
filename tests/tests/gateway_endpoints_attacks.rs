//! Attacks on upstreams with several endpoints, from outside: backends that
//! misbehave (503 or a reset after a POST body, a response cut mid-body,
//! health checks that hang or answer garbage), clients that push `hash`
//! balancing (huge, missing and many keys), a burst against endpoints that
//! all refuse, and endpoint lists with duplicates or a hostname that does
//! not resolve. The gateway must answer, never retry what is not safe,
//! never splice two endpoints' bytes, and never hang or panic.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;
use wasmgate_tests::{
    backend,
    endpoints::{PATIENCE, endpoints, start, status_of},
    gateway::{self, Client, get, send},
    raw::{RawBackend, Step, send as bytes},
};

/// A POST with this body.
async fn post(addr: SocketAddr, body: &str) -> anyhow::Result<u16> {
    let req = Request::post("/p")
        .header("host", "svc.test")
        .body(Full::new(Bytes::from(body.to_string())))?;
    Ok(send(addr, &Client::Http1, req).await?.status.as_u16())
}

/// An address where nothing listens.
async fn dead() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0").await?.local_addr()?)
}

/// A raw backend answering every request with `status`, no body.
async fn answering(status: &'static str) -> anyhow::Result<RawBackend> {
    Ok(RawBackend::start(move |_| {
        vec![bytes(format!(
            "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n"
        ))]
    })
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_answered_503_is_not_retried_but_a_get_is() -> anyhow::Result<()> {
    let a = answering("503 Service Unavailable").await?;
    let b = answering("503 Service Unavailable").await?;
    let gw = start(&format!(
        "{}\n    retries: {{ attempts: 2, on: [connect_failure, reset, \"503\", 5xx] }}",
        endpoints(&[a.addr, b.addr])
    ))?;
    for i in 0..4 {
        assert_eq!(post(gw.addr(), &format!("order {i}")).await?, 503);
    }
    let posts = a.heads().len() + b.heads().len();
    assert_eq!(posts, 4, "a POST with a body answered 503 was sent again");
    // Control: a GET is retried (the test can see a retry).
    assert_eq!(status_of(gw.addr(), "/g", &[]).await, 503);
    let gets = a.heads().len() + b.heads().len() - posts;
    assert_eq!(gets, 3, "a GET answered 503 gets its two retries");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_reset_after_its_body_never_reaches_the_other_endpoint() -> anyhow::Result<()> {
    // Reads the head (and whatever body came with it), then closes at once:
    // with unread body bytes the kernel sends a reset.
    let bad = RawBackend::start(|_| vec![Step::Close]).await?;
    let other = backend::start().await?;
    let gw = start(&format!(
        "{}\n    retries: {{ attempts: 3, on: [connect_failure, reset, refused_stream, 5xx] }}",
        endpoints(&[bad.addr, other.addr()])
    ))?;
    let mut failed = 0;
    for i in 0..6 {
        // A body large enough that it is still arriving when the backend
        // closes.
        let body = format!("order {i} {}", "x".repeat(200_000));
        match post(gw.addr(), &body).await {
            Ok(200) => {}
            Ok(502) => failed += 1,
            other => panic!("POST answered {other:?}"),
        }
    }
    let at_bad = bad.heads().len();
    let at_other = other
        .received()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert!(at_bad >= 1, "round robin never chose the bad endpoint");
    assert_eq!(
        failed, at_bad,
        "a POST reset by the bad endpoint was retried"
    );
    assert_eq!(at_other, 6 - at_bad, "a POST went to both endpoints");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_mid_body_is_never_spliced_with_another() -> anyhow::Result<()> {
    let cut = RawBackend::start(|_| {
        vec![
            bytes("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nCUTCUTCUT"),
            Step::Wait(Duration::from_millis(50)),
            Step::Close,
        ]
    })
    .await?;
    let good = RawBackend::start(|_| {
        vec![bytes(
            "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nGOODGOOD",
        )]
    })
    .await?;
    let gw = start(&format!(
        "{}\n    retries: {{ attempts: 3, on: [connect_failure, reset, timeout, 5xx] }}",
        endpoints(&[cut.addr, good.addr])
    ))?;
    let mut cuts = 0;
    for _ in 0..6 {
        let out = gateway::raw(
            gw.addr(),
            b"GET /x HTTP/1.1\r\nhost: svc.test\r\nconnection: close\r\n\r\n",
        )
        .await?;
        assert!(
            !(out.contains("CUT") && out.contains("GOOD")),
            "two endpoints' bytes in one answer: {out:?}"
        );
        assert!(
            out.matches("HTTP/1.1 ").count() <= 1,
            "two responses on one request: {out:?}"
        );
        if out.contains("CUT") {
            cuts += 1;
            assert!(!out.contains("GOOD"));
        } else {
            assert!(out.ends_with("GOODGOOD"), "{out:?}");
        }
    }
    assert!(cuts >= 1, "round robin never chose the cutting endpoint");
    // No retry once response bytes went to the client: the good endpoint
    // saw only its own share.
    assert_eq!(good.heads().len(), 6 - cuts, "a cut response was retried");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_that_hang_or_answer_garbage_take_endpoints_out() -> anyhow::Result<()> {
    let check = |bad: Vec<Step>| {
        move |head: &str| {
            if head.starts_with("GET /healthz") {
                bad.clone()
            } else {
                vec![bytes("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nbad")]
            }
        }
    };
    let hangs = RawBackend::start(check(vec![Step::Wait(Duration::from_secs(60))])).await?;
    let garbage = RawBackend::start(check(vec![
        bytes("\x00\x01garbage\r\n\r\n\u{7f}HTTP/9 xx\r\n\r\n"),
        Step::Close,
    ]))
    .await?;
    let slow = RawBackend::start(check(vec![
        Step::Wait(Duration::from_millis(1500)),
        bytes("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
    ]))
    .await?;
    let good = backend::start().await?;
    let gw = start(&format!(
        "{}\n    health_check: {{ path: /healthz, interval: 100ms, timeout: 300ms, healthy: 2, unhealthy: 2 }}",
        endpoints(&[hangs.addr, garbage.addr, slow.addr, good.addr()])
    ))?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let config = get(gw.admin(), "localhost", "/config", &[]).await?.json()?;
        let list = config["endpoint_health"]["svc"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let healthy: Vec<String> = list
            .iter()
            .filter(|e| e["healthy"].as_bool() == Some(true))
            .filter_map(|e| e["address"].as_str().map(str::to_string))
            .collect();
        if healthy == [good.addr().to_string()] {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only the good endpoint should be healthy: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..8 {
        let reply = get(gw.addr(), "svc.test", "/r", &[]).await?;
        assert_eq!(reply.status, StatusCode::OK);
        assert_ne!(
            reply.text(),
            "bad",
            "a request went to an unhealthy endpoint"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_with_huge_missing_and_many_keys_always_answers() -> anyhow::Result<()> {
    let a = backend::start().await?;
    let b = backend::start().await?;
    let c = backend::start().await?;
    let gw = start(&format!(
        "{}\n    balance: hash\n    hash_header: x-user",
        endpoints(&[a.addr(), b.addr(), c.addr()])
    ))?;
    let huge = "k".repeat(6000);
    let odd = "\u{1}\t weird\u{7f}";
    for _ in 0..3 {
        assert_eq!(status_of(gw.addr(), "/h", &[("x-user", &huge)]).await, 200);
        assert_eq!(status_of(gw.addr(), "/h", &[]).await, 200);
        assert_eq!(status_of(gw.addr(), "/h", &[("x-user", "")]).await, 200);
    }
    // Control characters are refused by the client library itself; send raw.
    let out = gateway::raw(
        gw.addr(),
        format!("GET /h HTTP/1.1\r\nhost: svc.test\r\nx-user: {odd}\r\nx-user: second\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    assert!(out.starts_with("HTTP/1.1 "), "no answer: {out:?}");
    // The huge key stays on one endpoint.
    let huge_at = [&a, &b, &c]
        .iter()
        .filter(|x| {
            x.received().iter().any(|r| {
                r.headers
                    .iter()
                    .any(|(n, v)| n == "x-user" && v.len() == 6000)
            })
        })
        .count();
    assert_eq!(huge_at, 1, "one key on several endpoints");
    // Many distinct keys: all answered, spread over all endpoints.
    let mut tasks = Vec::new();
    for i in 0..300 {
        let addr = gw.addr();
        tasks.push(tokio::spawn(async move {
            status_of(addr, "/m", &[("x-user", &format!("user-{i}"))]).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await?, 200);
    }
    for x in [&a, &b, &c] {
        assert!(x.received().len() > 30, "keys not spread");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_against_failing_endpoints_fails_fast_and_bounded() -> anyhow::Result<()> {
    // Endpoints that read a request, wait, then close without answering
    // (so the tries of a burst overlap), counted; and one that refuses.
    let hang_up =
        || RawBackend::start(|_| vec![Step::Wait(Duration::from_millis(300)), Step::Close]);
    let eps = [hang_up().await?, hang_up().await?, hang_up().await?];
    let refused = dead().await?;
    let addrs: Vec<SocketAddr> = eps.iter().map(|e| e.addr).chain([refused]).collect();
    let gw = start(&format!(
        "{}\n    connect_timeout: 1s\n    retries: {{ attempts: 5, on: [connect_failure, reset, refused_stream, 5xx] }}",
        endpoints(&addrs)
    ))?;
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let addr = gw.addr();
        tasks.push(tokio::spawn(
            async move { status_of(addr, "/b", &[]).await },
        ));
    }
    for t in tasks {
        assert_eq!(t.await?, 502);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "the burst took {took:?}");
    let tries: usize = eps.iter().map(RawBackend::accepted).sum();
    eprintln!("{tries} connections for 100 requests in {took:?}");
    // Without a budget: up to 100 × 6 tries (about 450 reaching these
    // three). The budget keeps retries in flight to a fifth of requests.
    assert!(
        tries <= 300,
        "retry storm: {tries} connections for 100 requests"
    );
    let metrics = get(gw.admin(), "localhost", "/metrics", &[]).await?.text();
    let exhausted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("wasmgate_upstream_retry_budget_exhausted_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(exhausted > 0.0, "the budget never stopped a retry");
    // The gateway still answers afterwards.
    assert_eq!(status_of(gw.addr(), "/after", &[]).await, 502);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_timed_out_after_its_body_is_not_retried() -> anyhow::Result<()> {
    let slow = RawBackend::start(|_| {
        vec![
            Step::Wait(Duration::from_secs(3)),
            bytes("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow"),
        ]
    })
    .await?;
    let other = backend::start().await?;
    let gw = start(&format!(
        "{}\n    retries: {{ attempts: 2, on: [timeout, reset, connect_failure], per_try_timeout: 300ms }}",
        endpoints(&[slow.addr, other.addr()])
    ))?;
    let mut timed_out = 0;
    for i in 0..4 {
        match post(gw.addr(), &format!("order {i}")).await? {
            200 => {}
            502 | 504 => timed_out += 1,
            other => panic!("POST answered {other}"),
        }
    }
    let at_slow = slow.heads().len();
    let at_other = other.received().len();
    assert!(at_slow >= 1, "round robin never chose the slow endpoint");
    assert_eq!(timed_out, at_slow, "a timed-out POST was retried");
    assert_eq!(at_other, 4 - at_slow, "a POST went to both endpoints");
    // Control: a GET that times out is retried on the other endpoint.
    for _ in 0..4 {
        assert_eq!(status_of(gw.addr(), "/g", &[]).await, 200);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_unresolvable_endpoints_are_clean() -> anyhow::Result<()> {
    let good = backend::start().await?;
    // Duplicates: refused, or served.
    let dup = format!(
        "    endpoints: [http://{0}, http://{0}, http://{0}]",
        good.addr()
    );
    if let Ok(gw) = start(&dup) {
        for _ in 0..6 {
            assert_eq!(status_of(gw.addr(), "/d", &[]).await, 200);
        }
    }
    // A hostname that does not resolve, beside a good endpoint.
    let unresolvable = format!(
        "    endpoints: [http://no-such-host.invalid:80, http://{}]\n    connect_timeout: 2s",
        good.addr()
    );
    let gw = start(&unresolvable)?;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(status_of(gw.addr(), "/u", &[]).await);
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 502),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    // With retries on connect failure, every request succeeds.
    let gw = start(&format!(
        "{unresolvable}\n    retries: {{ attempts: 1, on: [connect_failure] }}"
    ))?;
    for _ in 0..6 {
        assert_eq!(status_of(gw.addr(), "/u", &[]).await, 200);
    }
    // And with DNS refresh, the name that resolves to nothing is no endpoint.
    let gw = start(&format!("{unresolvable}\n    dns_refresh: 1s"))?;
    for _ in 0..6 {
        assert!(matches!(status_of(gw.addr(), "/u", &[]).await, 200 | 502));
    }
    Ok(())
}
