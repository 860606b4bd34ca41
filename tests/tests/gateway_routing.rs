//! Routing and proxying through a real gateway to real echo backends:
//! which routes inject the secret, per-route filter configurations, the
//! anti-spoofing `set`, host/path matching, 404, HTTP/1.1 and HTTP/2 on both
//! sides, hop-by-hop and x-forwarded-* headers.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use wasmgate_tests::{
    backend,
    gateway::{self, Client, get, secret_header, send},
};

const WAIT: Duration = Duration::from_secs(5);

/// Two routes inject different secrets, a third injects none.
fn config(backend: &str, h2_backend: &str) -> String {
    let wasm = secret_header().display().to_string();
    format!(
        r#"
listeners:
  - address: 127.0.0.1:0
upstreams:
  backend: {{ url: "{backend}" }}
  backend_h2: {{ url: "{h2_backend}", protocol: http2 }}
routes:
  - name: api
    match: {{ host: API.example.com, path_prefix: /v1/ }}
    upstream: backend
    filters:
      - wasm: "{wasm}"
        config: {{ set: {{ headers: ["Authorization:Bearer {{vault://env/WASMGATE_TEST_TOKEN_A}}"] }} }}
        env: [WASMGATE_TEST_TOKEN_A]
  - name: partner
    match: {{ host: partner.example.com }}
    upstream: backend_h2
    filters:
      - wasm: "{wasm}"
        config: {{ set: {{ headers: ["x-api-key:partner-key-B"] }} }}
  - name: public
    match: {{ path_prefix: /public/ }}
    upstream: backend
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_only_the_routes_that_inject_them() -> anyhow::Result<()> {
    // Secrets from the environment (`{vault://env/..}` + `env:`) are covered
    // by the binary tests in gateway_admin.rs, which can set a child's
    // environment; in-process, the same filter takes a literal.
    let backend = backend::start().await?;
    let h2_backend = backend::start().await?;
    let gw = gateway::start(&config(&backend.url(), &h2_backend.url()).replace(
        "Authorization:Bearer {vault://env/WASMGATE_TEST_TOKEN_A}",
        "Authorization:Bearer token-A",
    ))?;
    let addr = gw.addr();

    // Route "api": host in another case and with a port, path under /v1/.
    let r = get(addr, "api.EXAMPLE.com:8443", "/v1/items?x=1", &[]).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    // Route "partner": a different secret, a different header, over h2c to its upstream.
    let r = get(addr, "partner.example.com", "/anything", &[]).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    // Route "public": no filter.
    let r = get(addr, "api.example.com", "/public/x", &[]).await?;
    assert_eq!(r.status, 200, "{}", r.text());

    let seen = backend.wait_for_requests(2, WAIT).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/v1/items?x=1");
    assert_eq!(seen[0].header_all("authorization"), ["Bearer token-A"]);
    assert_eq!(seen[0].header("x-api-key"), None);
    assert_eq!(seen[1].path, "/public/x");
    assert_eq!(
        seen[1].header("authorization"),
        None,
        "public route must not carry the secret"
    );
    assert_eq!(seen[1].header("x-api-key"), None);

    let seen = h2_backend.wait_for_requests(1, WAIT).await;
    assert_eq!(seen[0].version, "HTTP/2.0");
    assert_eq!(seen[0].header_all("x-api-key"), ["partner-key-B"]);
    assert_eq!(seen[0].header("authorization"), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_copy_of_the_secret_header_is_replaced() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let yaml = config(&backend.url(), &backend.url()).replace(
        "Authorization:Bearer {vault://env/WASMGATE_TEST_TOKEN_A}",
        "Authorization:Bearer token-A",
    );
    let gw = gateway::start(&yaml)?;
    let r = get(
        gw.addr(),
        "api.example.com",
        "/v1/",
        &[
            ("authorization", "Bearer spoofed"),
            ("Authorization", "Bearer spoofed-2"),
        ],
    )
    .await?;
    assert_eq!(r.status, 200);
    let seen = backend.wait_for_requests(1, WAIT).await;
    assert_eq!(seen[0].header_all("authorization"), ["Bearer token-A"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_requests_get_404_and_first_match_wins() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let yaml = format!(
        r#"
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams:
  backend: {{ url: "{}/base" }}
routes:
  - {{ name: first, match: {{ path_prefix: /a/ }}, upstream: backend }}
  - {{ name: second, match: {{ path_prefix: /a/b/ }}, upstream: backend }}
"#,
        backend.url()
    );
    let gw = gateway::start(&yaml)?;
    let r = get(gw.addr(), "x.test", "/nope", &[]).await?;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "no route\n");
    let r = get(gw.addr(), "x.test", "/a/b/c", &[]).await?;
    assert_eq!(r.status, 200);
    let seen = backend.wait_for_requests(1, WAIT).await;
    // The upstream's path prefix is prepended.
    assert_eq!(seen[0].path, "/base/a/b/c");
    assert_eq!(seen.len(), 1, "the 404 must not reach the backend");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served_and_filtered() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let yaml = config(&backend.url(), &backend.url()).replace(
        "Authorization:Bearer {vault://env/WASMGATE_TEST_TOKEN_A}",
        "Authorization:Bearer token-A",
    );
    let gw = gateway::start(&yaml)?;
    let req = Request::post("http://api.example.com/v1/post")
        .header("authorization", "Bearer spoofed")
        .body(Full::new(Bytes::from_static(b"hello body")))?;
    let r = send(gw.addr(), &Client::H2c, req).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.version, http::Version::HTTP_2);
    let seen = backend.wait_for_requests(1, WAIT).await;
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body, b"hello body");
    assert_eq!(seen[0].header_all("authorization"), ["Bearer token-A"]);
    // HTTP/2 has no Host header; the gateway sends :authority on as Host.
    assert_eq!(seen[0].header("host"), Some("api.example.com"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_dropped_and_forwarded_headers_added() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let yaml = format!(
        r#"
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams: {{ backend: {{ url: "{}" }} }}
routes: [{{ name: all, match: {{}}, upstream: backend }}]
"#,
        backend.url()
    );
    let gw = gateway::start(&yaml)?;
    let r = get(
        gw.addr(),
        "shop.test:8080",
        "/",
        &[
            ("connection", "x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("x-forwarded-for", "10.1.2.3"),
            ("x-forwarded-proto", "https"),
            ("x-end-to-end", "kept"),
        ],
    )
    .await?;
    assert_eq!(r.status, 200);
    let seen = backend.wait_for_requests(1, WAIT).await;
    let s = &seen[0];
    assert_eq!(s.header("x-secret-hop"), None);
    assert_eq!(s.header("keep-alive"), None);
    assert_eq!(s.header("x-end-to-end"), Some("kept"));
    assert_eq!(s.header("x-forwarded-for"), Some("10.1.2.3, 127.0.0.1"));
    assert_eq!(s.header("x-forwarded-proto"), Some("http"));
    assert_eq!(s.header("x-forwarded-host"), Some("shop.test:8080"));
    assert_eq!(s.header("host"), Some("shop.test:8080"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_without_arguments_serves_the_demo() -> anyhow::Result<()> {
    const SECRET: &str = "demo-test-secret-7";
    let demo =
        tokio::task::spawn_blocking(|| gateway::Process::demo(&[("WASMGATE_DEMO_SECRET", SECRET)]))
            .await??;
    let r = get(
        demo.addr,
        "localhost",
        "/hello",
        &[("authorization", "Bearer spoofed")],
    )
    .await?;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("echo backend received: GET /hello"), "{text}");
    assert!(
        text.contains("authorization: Bearer ******** (matches the demo secret)"),
        "{text}"
    );
    assert!(
        !text.contains(SECRET) && !text.contains("spoofed"),
        "{text}"
    );
    assert!(!demo.logs().join("\n").contains(SECRET));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled_and_kept_alive() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let yaml = format!(
        r#"
workers: 1
admin: {{ address: "127.0.0.1:0" }}
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams:
  h1: {{ url: "{url}" }}
  h2: {{ url: "{url}", protocol: http2 }}
routes:
  - {{ name: one, match: {{ path_prefix: /one/ }}, upstream: h1 }}
  - {{ name: two, match: {{ path_prefix: /two/ }}, upstream: h2 }}
"#,
        url = backend.url()
    );
    let gw = gateway::start(&yaml)?;
    for i in 0..5 {
        assert_eq!(
            get(gw.addr(), "a", &format!("/one/{i}"), &[]).await?.status,
            200
        );
        assert_eq!(
            get(gw.addr(), "a", &format!("/two/{i}"), &[]).await?.status,
            200
        );
    }
    let req = Request::get("/metrics")
        .header("host", "admin")
        .body(Full::new(Bytes::new()))?;
    let metrics = send(gw.admin(), &Client::Http1, req).await?.text();
    for line in [
        "wasmgate_upstream_requests_total{upstream=\"h1\"} 5",
        "wasmgate_upstream_connections_total{upstream=\"h1\"} 1",
        "wasmgate_upstream_requests_total{upstream=\"h2\"} 5",
        "wasmgate_upstream_connections_total{upstream=\"h2\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
    let seen = backend.wait_for_requests(10, WAIT).await;
    assert_eq!(seen.iter().filter(|s| s.version == "HTTP/2.0").count(), 5);
    Ok(())
}
