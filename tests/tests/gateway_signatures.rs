//! End to end through two in-process gateways and a recording backend: a gateway signs
//! with `secret_header.wasm` (`sign`), a second gateway in front of the backend verifies
//! with the same module (`verify_signature`, and `verify` for a bearer secret). A request
//! replayed after `max_age` and a path changed in flight are refused; the backend never
//! sees the signature fields.
//!
//! With `content_digest`, the filters hold the request headers until they have seen the
//! body (`allow_on_headers_stop_iteration: true`, as in Envoy): the signer adds a
//! `Content-Digest` over the body, the verifier checks it, and a changed body is refused.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use wasmgate_tests::{
    backend,
    config::{Filter, GatewayYaml, Route},
    gateway::{self, Client, Reply, get, raw, send},
};

const WAIT: Duration = Duration::from_secs(5);
const KEY: &str = "e2e-key-0123456789abcdef-01234567";

/// One worker, one route to `upstream` running the filter with `config`.
fn route(upstream: &str, config: &str) -> String {
    GatewayYaml::new()
        .set("workers: 1")
        .upstream("next", upstream)
        .route(Route::new("r", "next").filter(Filter::secret_header(config)))
        .yaml()
}

/// [`route`] with the filter seeing the body while it holds the headers, and `limits`.
fn holding_route(upstream: &str, config: &str, limits: &str) -> String {
    let filter = Filter::secret_header(config).with("allow_on_headers_stop_iteration: true");
    GatewayYaml::new()
        .set("workers: 1")
        .set(&format!("limits: {limits}"))
        .upstream("next", upstream)
        .route(Route::new("r", "next").filter(filter))
        .yaml()
}

async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<Reply> {
    let mut builder = Request::post(path).header("host", "api");
    for (n, v) in headers {
        builder = builder.header(*n, *v);
    }
    send(addr, &Client::Http1, builder.body(Full::new(body.into()))?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_signed_with_content_digest_is_verified_and_a_changed_body_refused()
-> anyhow::Result<()> {
    let backend = backend::start().await?;
    let verifier = gateway::start(&holding_route(
        &backend.url(),
        &format!(
            r#"{{ verify_signature: {{ keys: {{ gw-1: "{KEY}" }}, required_components: ["@method", "@path", "content-digest"] }} }}"#
        ),
        "{}",
    ))?;
    // A recording backend behind the signer too, to capture what it sends.
    let capture = backend::start().await?;
    let config = format!(
        r#"{{ sign: {{ key_id: gw-1, key: "{KEY}", components: ["@method", "@authority", "@path"], content_digest: true }} }}"#
    );
    let signer = gateway::start(&holding_route(
        &format!("http://{}", verifier.addr()),
        &config,
        "{ max_body_bytes: 64 }",
    ))?;
    let capturing = gateway::start(&holding_route(&capture.url(), &config, "{}"))?;

    // Signed over the body by one wasmgate, verified by the other.
    let r = post(signer.addr(), "/v1/pay", &[], r#"{"amount": 10}"#).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = backend.wait_for_requests(1, WAIT).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, br#"{"amount": 10}"#);
    assert_eq!(
        seen[0].header("content-digest"),
        Some("sha-256=:f4snnvS+CQk4LbREJ1D464Tyh0z0PIJqhqz/ttwoyE0=:")
    );
    assert_eq!(seen[0].header("content-length"), Some("14"));
    assert_eq!(seen[0].header("signature"), None, "stripped");

    // Chunked, in several pieces: the digest covers all of them.
    let r = raw(
        signer.addr(),
        b"POST /v1/pay HTTP/1.1\r\nhost: api\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
          5\r\n{\"amo\r\n9\r\nunt\": 10}\r\n0\r\n\r\n",
    )
    .await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = backend.wait_for_requests(2, WAIT).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body, br#"{"amount": 10}"#);
    assert_eq!(
        seen[1].header("content-digest"),
        seen[0].header("content-digest")
    );

    // Over the signer's body limit while it holds the headers: 413.
    let r = post(signer.addr(), "/v1/pay", &[], "x".repeat(65)).await?;
    assert_eq!(r.status, 413, "{}", r.text());

    // A signed request captured; replayed with its body changed: refused.
    let r = post(capturing.addr(), "/v1/pay", &[], r#"{"amount": 10}"#).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let captured = capture.wait_for_requests(1, WAIT).await;
    let signed: Vec<(&str, &str)> = ["signature", "signature-input", "content-digest"]
        .into_iter()
        .map(|n| (n, captured[0].header(n).unwrap()))
        .collect();
    let r = post(verifier.addr(), "/v1/pay", &signed, r#"{"amount": 10}"#).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(verifier.addr(), "/v1/pay", &signed, r#"{"amount": 99}"#).await?;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.text(), "unauthorized\n");
    assert_eq!(
        backend
            .wait_for_requests(4, Duration::from_millis(300))
            .await
            .len(),
        3,
        "the changed body never reached the backend"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasmgate_signs_and_wasmgate_verifies() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let verifier = gateway::start(&route(
        &backend.url(),
        &format!(
            r#"{{ verify_signature: {{ keys: {{ gw-1: "{KEY}" }}, required_components: ["@method", "@authority", "@path", "@query"], max_age: "2s" }} }}"#
        ),
    ))?;
    let signer = gateway::start(&route(
        &format!("http://{}", verifier.addr()),
        &format!(
            r#"{{ sign: {{ key_id: gw-1, key: "{KEY}", components: ["@method", "@authority", "@path", "@query", "x-tenant"] }} }}"#
        ),
    ))?;

    // Through both gateways: signed, verified, stripped.
    let r = get(signer.addr(), "api", "/v1/items?x=1", &[("x-tenant", "t1")]).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = backend.wait_for_requests(1, WAIT).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/items?x=1");
    assert_eq!(seen[0].header("x-tenant"), Some("t1"));
    assert_eq!(
        seen[0].header("signature"),
        None,
        "stripped by the verifier"
    );
    assert_eq!(seen[0].header("signature-input"), None);

    // Straight to the verifier, unsigned: refused.
    let r = get(verifier.addr(), "api", "/v1/items?x=1", &[]).await?;
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), "unauthorized\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_or_redirected_request_is_refused() -> anyhow::Result<()> {
    // The verifier first: its start (compiling the module) must not eat into max_age.
    let backend = backend::start().await?;
    let verifier = gateway::start(&route(
        &backend.url(),
        &format!(
            r#"{{ verify_signature: {{ keys: {{ gw-1: "{KEY}" }}, required_components: ["@method", "@path", "@query"], max_age: "2s" }} }}"#
        ),
    ))?;
    // A recording backend stands where the verifier will be, to capture a signed request.
    let capture = backend::start().await?;
    let signer = gateway::start(&route(
        &capture.url(),
        &format!(
            r#"{{ sign: {{ key_id: gw-1, key: "{KEY}", components: ["@method", "@path", "@query"] }} }}"#
        ),
    ))?;
    let r = get(signer.addr(), "api", "/v1/pay?to=alice", &[]).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let captured = capture.wait_for_requests(1, WAIT).await;
    let input = captured[0].header("signature-input").unwrap().to_owned();
    let signature = captured[0].header("signature").unwrap().to_owned();
    let signed = [
        ("signature-input", input.as_str()),
        ("signature", signature.as_str()),
    ];

    // Fresh: accepted (a replay inside max_age is accepted too: there is no nonce cache).
    let r = get(verifier.addr(), "api", "/v1/pay?to=alice", &signed).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    // The query changed in flight: refused.
    let r = get(verifier.addr(), "api", "/v1/pay?to=mallory", &signed).await?;
    assert_eq!(r.status, 401);
    // The path changed in flight: refused.
    let r = get(verifier.addr(), "api", "/v1/admin?to=alice", &signed).await?;
    assert_eq!(r.status, 401);
    // Replayed after max_age: refused.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let r = get(verifier.addr(), "api", "/v1/pay?to=alice", &signed).await?;
    assert_eq!(r.status, 401);
    assert_eq!(
        backend
            .wait_for_requests(2, Duration::from_millis(200))
            .await
            .len(),
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_secret_injected_by_one_gateway_is_verified_by_the_other() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let verifier = gateway::start(&route(
        &backend.url(),
        r#"{ verify: { header: authorization, accept: ["Bearer next-9f1c", "Bearer current-77a0"] } }"#,
    ))?;
    // Rotation: the injecting side moves from the current value to the next one; both pass.
    for token in ["current-77a0", "next-9f1c"] {
        let injector = gateway::start(&route(
            &format!("http://{}", verifier.addr()),
            &format!(r#"{{ set: {{ headers: ["authorization:Bearer {token}"] }} }}"#),
        ))?;
        let r = get(
            injector.addr(),
            "api",
            "/v1/x",
            &[("authorization", "Bearer spoofed")],
        )
        .await?;
        assert_eq!(r.status, 200, "{token}: {}", r.text());
    }
    let seen = backend.wait_for_requests(2, WAIT).await;
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|s| s.header("authorization").is_none()),
        "stripped"
    );
    // Without the injector: refused, with a bearer challenge.
    let r = get(
        verifier.addr(),
        "api",
        "/v1/x",
        &[("authorization", "Bearer spoofed")],
    )
    .await?;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"wasmgate\"")
    );
    Ok(())
}
