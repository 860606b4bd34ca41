//! secret_header.wasm inside a real Envoy 1.40 (V8), between a real client and a real
//! backend: the example configuration validates, Kong's guide configuration works unchanged,
//! `set` beats a client's spoofed copies, and a bad configuration stops Envoy from starting.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use wasmgate_tests::backend::{self, Backend};
use wasmgate_tests::envoy::{self, Envoy, Example};

/// The secret the tests inject; asserted never to show up in Envoy's log.
const TOKEN: &str = "envoy-test-token-7f3a";

/// Bound on one request through Envoy.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The example, rendered for a backend and the freshly built filter.
fn example(backend: &Backend) -> Result<Example> {
    Example::load()?
        .free_ports()?
        .backend_port(backend.addr().port())?
        .wasm(&wasmgate_tests::wasm("secret_header"))
}

/// Sends a GET with `headers` (repeats allowed) over HTTP/1.1; returns status and body.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String)> {
    send(addr, false, path, headers).await
}

/// The same over HTTP/2 without TLS (h2c, prior knowledge).
async fn get_h2(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String)> {
    send(addr, true, path, headers).await
}

async fn send(
    addr: SocketAddr,
    h2: bool,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let mut request = Request::get(format!("http://example.test{path}"));
        if !h2 {
            request = Request::get(path).header("host", "example.test");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::<Bytes>::new())?;
        let response = wasmgate_tests::serve::exchange(TokioIo::new(stream), h2, request).await?;
        let status = response.status().as_u16();
        anyhow::Ok((
            status,
            String::from_utf8_lossy(response.body()).into_owned(),
        ))
    };
    let proto = if h2 { "h2 " } else { "" };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| {
            format!("{proto}GET {path} via {addr}: no response in {REQUEST_TIMEOUT:?}")
        })?
}

#[tokio::test]
async fn example_configuration_passes_envoy_validate() -> Result<()> {
    // Only the wasm path is rendered (it is relative to the working directory in the file).
    let yaml = Example::load()?.wasm(&wasmgate_tests::wasm("secret_header"))?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, yaml.yaml())?;
    let (ok, output) = envoy::validate(&path, &[("BACKEND_TOKEN", TOKEN)]).await?;
    assert!(ok, "envoy --mode validate failed:\n{output}");
    assert!(output.contains("OK"), "{output}");
    assert!(
        !output.contains(TOKEN),
        "validate output leaks the secret:\n{output}"
    );
    Ok(())
}

#[tokio::test]
async fn kong_guide_configuration_injects_the_header_unchanged() -> Result<()> {
    let backend = backend::start().await?;
    let yaml = example(&backend)?
        .filter_config(r#"{"add":{"headers":["Authorization:Bearer my-secret-key"]}}"#)?;
    let envoy = Envoy::start(yaml.yaml(), &[]).await?;

    let (status, body) = get(envoy.listener(), "/v1/items?x=1", &[]).await?;
    assert_eq!(status, 200, "{body}");
    let seen = backend.wait_for_requests(1, REQUEST_TIMEOUT).await;
    assert_eq!(seen.len(), 1, "backend saw {seen:?}");
    assert_eq!(seen[0].path, "/v1/items?x=1");
    assert_eq!(
        seen[0].header_all("authorization"),
        ["Bearer my-secret-key"]
    );
    // The echoed JSON is what the client got back: the same request.
    let echoed: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(echoed, seen[0].to_json());

    // Kong's `add` semantics: a client-sent header wins.
    let (status, _) = get(envoy.listener(), "/", &[("authorization", "Bearer client")]).await?;
    assert_eq!(status, 200);
    let seen = backend.wait_for_requests(2, REQUEST_TIMEOUT).await;
    assert_eq!(seen[1].header_all("authorization"), ["Bearer client"]);
    Ok(())
}

#[tokio::test]
async fn set_replaces_every_spoofed_copy_with_the_secret() -> Result<()> {
    // The example as shipped: set + {vault://env/BACKEND_TOKEN} from host_env_keys.
    let backend = backend::start().await?;
    let yaml = example(&backend)?;
    let envoy = Envoy::start(yaml.yaml(), &[("BACKEND_TOKEN", TOKEN)]).await?;

    let spoofed = [
        ("authorization", "Bearer spoof-1"),
        ("authorization", "Bearer spoof-2"),
    ];
    let (status, _) = get(envoy.listener(), "/", &spoofed).await?;
    assert_eq!(status, 200);
    let (status, _) = get(envoy.listener(), "/", &[]).await?;
    assert_eq!(status, 200);

    let seen = backend.wait_for_requests(2, REQUEST_TIMEOUT).await;
    assert_eq!(seen.len(), 2, "backend saw {seen:?}");
    let expected = format!("Bearer {TOKEN}");
    // Exactly one copy, the secret, whether the client spoofed it or sent none.
    assert_eq!(seen[0].header_all("authorization"), [expected.as_str()]);
    assert_eq!(seen[1].header_all("authorization"), [expected.as_str()]);

    let log = envoy.log();
    assert!(log.contains("secret-header: configured"), "{log}");
    assert!(!log.contains(TOKEN), "Envoy's log leaks the secret:\n{log}");
    let (_, dump) = envoy.admin_get("/config_dump").await?;
    assert!(!dump.contains(TOKEN), "the config dump leaks the secret");
    Ok(())
}

#[tokio::test]
async fn set_drops_separate_copies_over_http1_and_http2() -> Result<()> {
    // Envoy folds repeated `authorization` headers into one comma-joined value, but keeps
    // repeats of a custom header as separate entries: both kinds must end up as one value.
    let backend = backend::start().await?;
    let yaml = example(&backend)?.filter_config(
        r#"{"set":{"headers":["Authorization:Bearer {vault://env/BACKEND_TOKEN}","x-api-key:{vault://env/backend-token}"]}}"#,
    )?;
    let envoy = Envoy::start(yaml.yaml(), &[("BACKEND_TOKEN", TOKEN)]).await?;

    let spoofed = [
        ("authorization", "Bearer spoof-1"),
        ("x-api-key", "spoof-1"),
        ("authorization", "Bearer spoof-2"),
        ("x-api-key", "spoof-2"),
    ];
    let (status, body) = get(envoy.listener(), "/h1", &spoofed).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get_h2(envoy.listener(), "/h2", &spoofed).await?;
    assert_eq!(status, 200, "{body}");

    let seen = backend.wait_for_requests(2, REQUEST_TIMEOUT).await;
    assert_eq!(seen.len(), 2, "backend saw {seen:?}");
    let bearer = format!("Bearer {TOKEN}");
    for (request, path) in seen.iter().zip(["/h1", "/h2"]) {
        assert_eq!(request.path, path);
        assert_eq!(
            request.header_all("authorization"),
            [bearer.as_str()],
            "{path}"
        );
        assert_eq!(request.header_all("x-api-key"), [TOKEN], "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn bad_configuration_makes_envoy_refuse_to_start() -> Result<()> {
    let backend = backend::start().await?;
    let cases = [
        // Not JSON, with a literal secret inside: the log must not echo it.
        (
            r#"{"add":{"headers":["Authorization:Bearer my-secret-key"]"#,
            "not valid JSON",
        ),
        // A reference whose variable is not given to the VM.
        (
            r#"{"set":{"headers":["Authorization:Bearer {vault://env/NOT_PASSED}"]}}"#,
            "set.headers[0] (header authorization): {vault://env/NOT_PASSED}: environment variable NOT_PASSED is not set",
        ),
    ];
    for (config, expected) in cases {
        let yaml = example(&backend)?.filter_config(config)?;
        let (status, log) = envoy::expect_refused(yaml.yaml(), &[("BACKEND_TOKEN", TOKEN)]).await?;
        assert!(!status.success(), "envoy exited successfully with {config}");
        let line = log
            .lines()
            .find(|l| l.contains("secret-header: invalid configuration: "))
            .unwrap_or_else(|| panic!("no configuration error logged for {config}:\n{log}"));
        assert!(line.contains(expected), "{line}");
        assert!(
            !log.contains("my-secret-key") && !log.contains(TOKEN),
            "log leaks:\n{log}"
        );
    }
    assert!(backend.received().is_empty());
    Ok(())
}

/// A POST (or a GET when `body` is empty) over HTTP/1.1 with `host: api`.
async fn request(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> Result<wasmgate_tests::gateway::Reply> {
    let method = if body.is_empty() { "GET" } else { "POST" };
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "api");
    for (n, v) in headers {
        builder = builder.header(*n, *v);
    }
    let req = builder.body(http_body_util::Full::new(Bytes::from_static(
        body.as_bytes(),
    )))?;
    wasmgate_tests::gateway::send(addr, &wasmgate_tests::gateway::Client::Http1, req).await
}

/// wasmgate signs (`sign`, with a `Content-Digest`), Envoy verifies with the same module
/// (`verify_signature`, `allow_on_headers_stop_iteration: true` for the body), the backend
/// sees neither signature field; a path or body changed in flight, and a replay after
/// `max_age`, are refused by Envoy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasmgate_signs_and_envoy_verifies() -> Result<()> {
    const KEY: &str = "envoy-e2e-key-0123456789abcdef-012";
    let backend = backend::start().await?;
    let yaml = example(&backend)?
        .allow_on_headers_stop_iteration()?
        .filter_config(&format!(
            r#"{{"verify_signature": {{"keys": {{"gw-1": "{KEY}"}}, "required_components": ["@method", "@authority", "@path", "@query"], "max_age": "2s"}}}}"#
        ))?;
    let envoy = Envoy::start(yaml.yaml(), &[("BACKEND_TOKEN", TOKEN)]).await?;
    let sign = format!(
        r#"{{ sign: {{ key_id: gw-1, key: "{KEY}", components: ["@method", "@authority", "@path", "@query"], content_digest: true }} }}"#
    );
    let gateway_yaml = |upstream: String| {
        format!(
            r#"
workers: 1
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams: {{ next: {{ url: "{upstream}" }} }}
routes:
  - name: r
    match: {{}}
    upstream: next
    filters:
      - wasm: "{wasm}"
        config: {sign}
        allow_on_headers_stop_iteration: true
"#,
            wasm = wasmgate_tests::gateway::secret_header().display()
        )
    };
    let signer =
        wasmgate_tests::gateway::start(&gateway_yaml(format!("http://{}", envoy.listener())))?;

    // Bodiless and with a body, through wasmgate then Envoy.
    let r = request(signer.addr(), "/v1/items?x=1", &[], "").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(signer.addr(), "/v1/pay", &[], r#"{"amount": 10}"#).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = backend.wait_for_requests(2, REQUEST_TIMEOUT).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].path, "/v1/items?x=1");
    assert_eq!(seen[1].body, br#"{"amount": 10}"#);
    for s in &seen {
        assert_eq!(s.header("signature"), None, "stripped by Envoy's filter");
        assert_eq!(s.header("signature-input"), None);
        assert!(s.header("content-digest").is_some());
    }
    // Unsigned, straight to Envoy: refused.
    let r = request(envoy.listener(), "/v1/items?x=1", &[], "").await?;
    assert_eq!(r.status, 401, "{}", r.text());

    // A request signed by wasmgate, captured on its way, then altered or replayed.
    let capture = backend::start().await?;
    let capturing = wasmgate_tests::gateway::start(&gateway_yaml(capture.url()))?;
    let r = request(
        capturing.addr(),
        "/v1/pay?to=alice",
        &[],
        r#"{"amount": 10}"#,
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let captured = capture.wait_for_requests(1, REQUEST_TIMEOUT).await;
    let signed: Vec<(&str, &str)> = ["signature", "signature-input", "content-digest"]
        .into_iter()
        .map(|n| (n, captured[0].header(n).unwrap_or_default()))
        .collect();
    let pay = |path, body| request(envoy.listener(), path, &signed, body);
    assert_eq!(
        pay("/v1/pay?to=alice", r#"{"amount": 10}"#).await?.status,
        200
    );
    assert_eq!(
        pay("/v1/admin?to=alice", r#"{"amount": 10}"#).await?.status,
        401,
        "path changed"
    );
    assert_eq!(
        pay("/v1/pay?to=mallory", r#"{"amount": 10}"#).await?.status,
        401,
        "query changed"
    );
    assert_eq!(
        pay("/v1/pay?to=alice", r#"{"amount": 99}"#).await?.status,
        401,
        "body changed"
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        pay("/v1/pay?to=alice", r#"{"amount": 10}"#).await?.status,
        401,
        "replayed after max_age"
    );
    assert_eq!(
        backend
            .wait_for_requests(4, Duration::from_millis(300))
            .await
            .len(),
        3,
        "only the untouched replay within max_age reached the backend"
    );
    let stats = envoy.admin_get("/stats?filter=secret_header").await?.1;
    assert!(
        stats.contains("verify_signature.rejected.tampered: 3"),
        "{stats}"
    );
    assert!(
        stats.contains("verify_signature.rejected.expired: 1"),
        "{stats}"
    );
    Ok(())
}
