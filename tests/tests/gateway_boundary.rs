//! The HTTP boundary holds: what a backend, a filter or a client writes
//! never reaches another request, and a route's secret never reaches the
//! wrong place. One test per finding of the boundary review, through a
//! gateway on real sockets, with raw-socket backends where the finding
//! needs crafted bytes ([`RawBackend`]).

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{sleep, timeout},
};
use wasmgate_tests::{
    config::{GatewayYaml, ROUTE_ALL as ALL, Route, secure_and_public},
    gateway::{self, TIMEOUT, TestGateway, get, raw},
    raw::{RawBackend, Step, header_values, request_line, send},
    serve,
};

/// A plain answer for everything not scripted otherwise.
const FRESH: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh";
/// What a hostile backend tries to slip in as another request's answer.
const POISON: &str = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED";

/// One worker, so every request shares one upstream pool; `extra` adds
/// to the configuration (routes come from `routes`).
fn start(backend: &RawBackend, routes: &str, extra: &str) -> anyhow::Result<TestGateway> {
    gateway::start(&format!(
        r#"
workers: 1
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams:
  backend: {{ url: "http://{}", connect_timeout: 1s, timeout: 5s }}
routes: {routes}
{extra}
"#,
        backend.addr
    ))
}

/// A route running the `headers` test filter (it adds `x-add-request` /
/// `x-add-response` entries as headers).
fn headers_filter_route() -> String {
    format!(
        "[{{ name: all, match: {{}}, upstream: backend, filters: [{{ wasm: {:?} }}] }}]",
        wasmgate_tests::wasm("headers")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_bytes_from_a_backend_never_answer_another_request() -> anyhow::Result<()> {
    // Each case: a response that says it has no body (or a shorter one)
    // followed, at once or later, by a whole other response.
    let backend = RawBackend::start(|head| {
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
            late("HTTP/1.1 204 No Content\r\n\r\n", 0)
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
    let gw = start(&backend, ALL, "")?;
    for (method, path) in [
        ("GET", "/no-content"),
        ("GET", "/no-content-late"),
        ("HEAD", "/head"),
        ("HEAD", "/late"),
        ("GET", "/not-modified"),
        ("GET", "/extra"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "a.test")
            .body(Full::new(Bytes::new()))?;
        let first = gateway::send(gw.addr(), &gateway::Client::Http1, req).await?;
        assert!(first.status.is_success() || first.status == 304, "{path}");
        // Another client, after the late bytes have arrived.
        sleep(Duration::from_millis(500)).await;
        let next = get(gw.addr(), "a.test", "/next", &[]).await?;
        assert_eq!(
            next.text(),
            "fresh",
            "{method} {path}: another user's answer"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_cannot_frame_a_message() -> anyhow::Result<()> {
    let backend =
        RawBackend::start(|_| vec![send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")]).await?;
    let gw = start(&backend, &headers_filter_route(), "")?;
    for added in ["transfer-encoding: chunked", "content-length: 40"] {
        let reply = get(gw.addr(), "a.test", "/one", &[("x-add-request", added)]).await?;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (StatusCode::OK, "ok")
        );
        // The next request on the same pooled connection is a request, not
        // the first one's body.
        let reply = get(gw.addr(), "a.test", "/two", &[]).await?;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (StatusCode::OK, "ok")
        );
    }
    let heads = backend.heads();
    assert_eq!(heads.len(), 4, "{heads:?}");
    for head in &heads {
        assert!(
            header_values(head, "transfer-encoding").is_empty(),
            "{head}"
        );
        assert!(header_values(head, "content-length").is_empty(), "{head}");
    }
    assert_eq!(backend.accepted(), 1, "one pooled connection carried all");

    // A response a filter claims is 40 bytes long arrives whole, as 2.
    let reply = timeout(
        Duration::from_secs(3),
        get(
            gw.addr(),
            "a.test",
            "/three",
            &[("x-add-response", "content-length: 40")],
        ),
    )
    .await
    .context("the client waited for bytes that never come")??;
    assert_eq!(reply.text(), "ok");
    // Framed by what is sent: the upstream's 2, or chunked (the filter's
    // edit made the declared length ambiguous).
    let length = reply.headers.get("content-length");
    assert!(length.is_none_or(|v| v == "2"), "{length:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_is_answered_and_max_forwards_honoured() -> anyhow::Result<()> {
    let backend = RawBackend::start(|_| vec![send(FRESH)]).await?;
    let gw = start(&backend, &secure_and_public("s3cret"), "")?;
    let answer = raw(
        gw.addr(),
        b"TRACE /api/x HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
    )
    .await?;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(!answer.contains("s3cret"), "{answer}");

    let answer = raw(
        gw.addr(),
        b"OPTIONS /api/x HTTP/1.1\r\nhost: a.test\r\nmax-forwards: 0\r\nconnection: close\r\n\r\n",
    )
    .await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("allow: "), "{answer}");
    assert!(backend.heads().is_empty(), "nothing reached the backend");

    let reply = gateway::send(
        gw.addr(),
        &gateway::Client::Http1,
        Request::options("/x")
            .header("host", "a.test")
            .header("max-forwards", "3")
            .body(Full::new(Bytes::new()))?,
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK);
    let heads = backend.heads();
    assert_eq!(header_values(&heads[0], "max-forwards"), ["2"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_authority_replaces_host() -> anyhow::Result<()> {
    let backend = RawBackend::start(|_| vec![send(FRESH)]).await?;
    let routes = format!(
        r#"
  - name: partner
    match: {{ host: partner.example.com }}
    upstream: backend
    filters: [{{ wasm: {:?}, config: {{ set: {{ headers: ["Authorization:Bearer s3cret"] }} }} }}]"#,
        gateway::secret_header()
    );
    let gw = start(&backend, &routes, "")?;
    let answer = raw(
        gw.addr(),
        b"GET http://partner.example.com/x HTTP/1.1\r\nhost: evil.example.com\r\nconnection: close\r\n\r\n",
    )
    .await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Two Host fields: 400, nothing forwarded.
    let answer = raw(
        gw.addr(),
        b"GET /x HTTP/1.1\r\nhost: partner.example.com\r\nhost: evil.example.com\r\n\r\n",
    )
    .await?;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // HTTP/2: `:authority` partner, `host` evil.
    let tcp = TcpStream::connect(gw.addr()).await?;
    let req = Request::get("http://partner.example.com/h2")
        .header("host", "evil.example.com")
        .body(Full::new(Bytes::new()))?;
    let reply = timeout(
        TIMEOUT,
        serve::exchange(hyper_util::rt::TokioIo::new(tcp), true, req),
    )
    .await??;
    assert_eq!(reply.status(), StatusCode::OK);

    let heads = backend.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in &heads {
        assert_eq!(
            header_values(head, "host"),
            ["partner.example.com"],
            "{head}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_never_reach_a_secret_route() -> anyhow::Result<()> {
    let backend = RawBackend::start(|_| vec![send(FRESH)]).await?;
    let gw = start(&backend, &secure_and_public("s3cret"), "")?;
    for (path, forwarded) in [
        ("/api/../public/x", "/public/x"),
        ("/api/%2e%2e/x", "/x"),
        ("/api/./../public/x?q=1", "/public/x?q=1"),
        ("/api/%2E%2E/%2e%2e/x", "/x"),
    ] {
        let head = format!("GET {path} HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n");
        let answer = raw(gw.addr(), head.as_bytes()).await?;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        let heads = backend.heads();
        let last = heads.last().context("forwarded")?;
        assert_eq!(request_line(last), format!("GET {forwarded} HTTP/1.1"));
        assert!(header_values(last, "authorization").is_empty(), "{path}");
    }
    // The secure route still gets its secret on its own paths.
    get(gw.addr(), "a.test", "/api/./ok", &[]).await?;
    let heads = backend.heads();
    let last = heads.last().context("forwarded")?;
    assert_eq!(request_line(last), "GET /api/ok HTTP/1.1");
    assert_eq!(header_values(last, "authorization"), ["Bearer s3cret"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_reaches_a_client_still_uploading() -> anyhow::Result<()> {
    let backend = RawBackend::start(|_| vec![send(FRESH)]).await?;
    let routes = "[{ name: api, match: { path_prefix: /api/ }, upstream: backend }]";
    let gw = start(&backend, routes, "")?;
    const SIZE: usize = 1_000_000;
    for _ in 0..3 {
        let tcp = TcpStream::connect(gw.addr()).await?;
        let (mut read, mut write) = tcp.into_split();
        let writer = tokio::spawn(async move {
            let head =
                format!("POST /nowhere HTTP/1.1\r\nhost: a.test\r\ncontent-length: {SIZE}\r\n\r\n");
            write.write_all(head.as_bytes()).await?;
            let piece = vec![b'x'; 16 * 1024];
            let mut sent = 0;
            while sent < SIZE {
                let n = piece.len().min(SIZE - sent);
                write.write_all(&piece[..n]).await?;
                sent += n;
            }
            anyhow::Ok(())
        });
        let mut answer = Vec::new();
        timeout(TIMEOUT, read.read_to_end(&mut answer)).await??;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        // The whole upload went out: no broken pipe, no reset.
        timeout(TIMEOUT, writer).await???;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_backend_framing_is_refused() -> anyhow::Result<()> {
    let backend = RawBackend::start(|head| {
        let line = request_line(head);
        let answer = if line.contains("/switch") {
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        } else if line.contains("/plus") {
            "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"
        } else if line.contains("/gzip") {
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        } else {
            FRESH
        };
        vec![send(answer)]
    })
    .await?;
    let gw = start(&backend, ALL, "")?;
    for path in ["/switch", "/plus", "/gzip"] {
        // GET takes the lean client, POST hyper's.
        for method in ["GET", "POST"] {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", "a.test")
                .body(Full::new(Bytes::from_static(b"body")))?;
            let reply = gateway::send(gw.addr(), &gateway::Client::Http1, req).await?;
            assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{method} {path}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_the_proxy_decides_on() -> anyhow::Result<()> {
    let backend = RawBackend::start(|_| vec![send(FRESH)]).await?;
    let gw = start(&backend, ALL, "")?;
    // `te: trailers` goes through (gRPC); other TE values do not.
    get(gw.addr(), "a.test", "/te", &[("te", "trailers")]).await?;
    get(gw.addr(), "a.test", "/te-gzip", &[("te", "gzip")]).await?;
    // Underscores: dropped by default.
    get(
        gw.addr(),
        "a.test",
        "/u",
        &[("content_length", "5"), ("x-ok", "1")],
    )
    .await?;
    let heads = backend.heads();
    assert_eq!(header_values(&heads[0], "te"), ["trailers"]);
    assert!(header_values(&heads[1], "te").is_empty());
    assert!(header_values(&heads[2], "content_length").is_empty());
    assert_eq!(header_values(&heads[2], "x-ok"), ["1"]);

    // A transfer coding the proxy would lose: refused, not forwarded.
    let answer = raw(
        gw.addr(),
        b"POST /gz HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    )
    .await?;
    assert!(
        answer.starts_with("HTTP/1.1 501") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert_eq!(backend.heads().len(), 3);

    // `reject`: a 400.
    let strict = start(
        &backend,
        ALL,
        "limits: { headers_with_underscores: reject }",
    )?;
    let reply = get(strict.addr(), "a.test", "/u", &[("x_secret", "1")]).await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(backend.heads().len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_posts_must_name_the_admin_endpoint() -> anyhow::Result<()> {
    let backend = RawBackend::start(|_| vec![send(FRESH)]).await?;
    let gw = start(&backend, ALL, "admin: { address: \"127.0.0.1:0\" }")?;
    let admin = gw.admin();
    let post = |host: &str, extra: &str| {
        format!(
            "POST /reload HTTP/1.1\r\nhost: {host}\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n"
        )
    };
    let answer = raw(admin, post("evil.example.com", "").as_bytes()).await?;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = raw(
        admin,
        post(&admin.to_string(), "origin: http://evil.example.com\r\n").as_bytes(),
    )
    .await?;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = raw(admin, post(&admin.to_string(), "").as_bytes()).await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // With a token (here: the value of an environment variable every
    // process has, HOME): required, compared whole.
    let token = std::env::var("HOME")?;
    let gw3 = start(
        &backend,
        ALL,
        "admin: { address: \"127.0.0.1:0\", token_env: HOME }",
    )?;
    let answer = raw(gw3.admin(), post("localhost", "").as_bytes()).await?;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let wrong = format!("authorization: Bearer {token}x\r\n");
    let answer = raw(gw3.admin(), post("localhost", &wrong).as_bytes()).await?;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let right = format!("authorization: Bearer {token}\r\n");
    let answer = raw(gw3.admin(), post("localhost", &right).as_bytes()).await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains(&token) || token.len() < 2, "{answer}");

    // Configured but unset: fails closed.
    let gw2 = start(
        &backend,
        ALL,
        "admin: { address: \"127.0.0.1:0\", token_env: WASMGATE_TEST_ADMIN_TOKEN_UNSET }",
    )?;
    let answer = raw(gw2.admin(), post("localhost", "").as_bytes()).await?;
    assert!(
        answer.starts_with("HTTP/1.1 401"),
        "unset token fails closed: {answer}"
    );
    drop(gw);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_share_a_capped_set_of_upstream_connections() -> anyhow::Result<()> {
    let backend =
        RawBackend::start(|_| vec![Step::Wait(Duration::from_millis(100)), send(FRESH)]).await?;
    let gw = gateway::start(
        &GatewayYaml::new()
            .set("workers: 1")
            .upstream_with(
                "backend",
                &format!("http://{}", backend.addr),
                "timeout: 10s, max_connections: 4",
            )
            .route(Route::new("all", "backend"))
            .yaml(),
    )?;
    // One HTTP/2 connection, 64 streams at once.
    let tcp = TcpStream::connect(gw.addr()).await?;
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await?;
    tokio::spawn(conn);
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..64 {
        let mut sender = sender.clone();
        streams.spawn(async move {
            let req = Request::get(format!("http://a.test/s{i}"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            let response = sender.send_request(req).await?;
            anyhow::Ok(response.status())
        });
    }
    let all = timeout(Duration::from_secs(20), async {
        let mut statuses = Vec::new();
        while let Some(status) = streams.join_next().await {
            statuses.push(status??);
        }
        anyhow::Ok(statuses)
    })
    .await??;
    assert_eq!(all.len(), 64);
    assert!(all.iter().all(|s| *s == StatusCode::OK), "{all:?}");
    assert!(
        backend.accepted() <= 4,
        "{} upstream connections",
        backend.accepted()
    );
    assert_eq!(backend.heads().len(), 64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filters_name_is_its_plugin_name() -> anyhow::Result<()> {
    let backend = RawBackend::start(|_| vec![send(FRESH)]).await?;
    let routes = format!(
        r#"
  - name: named
    match: {{ path_prefix: /named }}
    upstream: backend
    filters: [{{ wasm: {wasm:?}, name: auth-injector, config: "get=plugin_name" }}]
  - name: unnamed
    match: {{}}
    upstream: backend
    filters: [{{ wasm: {wasm:?}, config: "get=plugin_name" }}]"#,
        wasm = wasmgate_tests::wasm("properties")
    );
    let gw = start(&backend, &routes, "")?;
    let named = get(gw.addr(), "a.test", "/named", &[]).await?;
    assert_eq!(
        named.headers["x-prop-plugin-name"], "auth-injector",
        "{:?}",
        named.headers
    );
    let unnamed = get(gw.addr(), "a.test", "/other", &[]).await?;
    assert_eq!(unnamed.headers["x-prop-plugin-name"], "unnamed/0");

    // Two filters with one name: refused, naming the key.
    let dup = format!(
        r#"
  - name: a
    match: {{}}
    upstream: backend
    filters: [{{ wasm: {wasm:?}, name: twice }}, {{ wasm: {wasm:?}, name: twice }}]"#,
        wasm = wasmgate_tests::wasm("properties")
    );
    let e = start(&backend, &dup, "").expect_err("duplicate names refused");
    assert!(e.to_string().contains("filters[1].name"), "{e}");
    Ok(())
}
