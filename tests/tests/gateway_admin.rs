//! The admin endpoint and what must never show a secret: `/ready`,
//! `/metrics` (routes, upstreams, filters, the filters' own metrics),
//! `/config` (redacted), and the access log (sensitive and injected header
//! values redacted), with a secret passed through the environment.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use wasmgate_tests::{
    backend,
    gateway::{self, Client, Process, get, secret_header, send},
    wasm,
};

async fn admin_get(admin: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let req = Request::get(path)
        .header("host", "admin")
        .body(Full::new(Bytes::new()))?;
    let r = send(admin, &Client::Http1, req).await?;
    Ok((r.status.as_u16(), r.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_metrics_and_redacted_config() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let yaml = format!(
        r#"
admin: {{ address: "127.0.0.1:0" }}
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams: {{ backend: {{ url: "{}" }} }}
routes:
  - name: api
    match: {{ path_prefix: /api/ }}
    upstream: backend
    filters:
      - wasm: "{}"
        config: {{ add: {{ headers: ["Authorization:Bearer literal-s3cret"] }} }}
      - wasm: "{}"
  - name: hostile
    match: {{ path_prefix: /h/ }}
    upstream: backend
    filters:
      - {{ wasm: "{}", config: "", on_error: deny }}
"#,
        backend.url(),
        secret_header().display(),
        wasm("metrics").display(),
        wasm("hostile").display()
    );
    let gw = gateway::start(&yaml)?;
    let admin = gw.admin();
    assert_eq!(admin_get(admin, "/ready").await?, (200, "ready\n".into()));

    for _ in 0..3 {
        assert_eq!(get(gw.addr(), "a", "/api/x", &[]).await?.status, 200);
    }
    assert_eq!(get(gw.addr(), "a", "/nothing", &[]).await?.status, 404);
    assert_eq!(
        get(gw.addr(), "a", "/h/", &[("x-hostile", "trap")])
            .await?
            .status,
        503
    );

    let (status, metrics) = admin_get(admin, "/metrics").await?;
    assert_eq!(status, 200);
    for line in [
        "wasmgate_route_requests_total{route=\"api\",status=\"2xx\"} 3",
        "wasmgate_route_requests_total{route=\"hostile\",status=\"5xx\"} 1",
        "wasmgate_route_request_duration_seconds_count{route=\"api\"} 3",
        "wasmgate_no_route_requests_total 1",
        "wasmgate_upstream_requests_total{upstream=\"backend\"} 3",
        "wasmgate_filter_failures_total{filter=\"hostile/0\"} 1",
        "wasmgate_filter_vm_replaced_total{filter=\"hostile/0\"} 1",
        // The metrics filter's own counter, one per request.
        "wasmgate_wasm_wasmgate_test_requests_total{filter=\"api/1\"} 3",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
    assert!(!metrics.contains("literal-s3cret"));

    let (status, config) = admin_get(admin, "/config").await?;
    assert_eq!(status, 200);
    assert!(config.contains("Authorization:<redacted>"), "{config}");
    assert!(!config.contains("literal-s3cret"), "{config}");
    assert_eq!(admin_get(admin, "/nope").await?.0, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_the_environment_reach_the_backend_but_no_log() -> anyhow::Result<()> {
    const SECRET: &str = "env-s3cret-value-42";
    let backend = backend::start().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gw.yaml");
    for format in ["json", "text"] {
        std::fs::write(
            &path,
            format!(
                r#"
admin: {{ address: "127.0.0.1:0" }}
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams: {{ backend: {{ url: "{}" }} }}
access_log: {{ format: {format}, headers: [user-agent, authorization, x-injected, x-client] }}
routes:
  - name: api
    match: {{}}
    upstream: backend
    filters:
      - wasm: "{}"
        config: {{ set: {{ headers: ["Authorization:Bearer {{vault://env/GW_TEST_SECRET}}", "x-injected:{{vault://env/GW_TEST_SECRET}}"] }} }}
        env: [GW_TEST_SECRET]
"#,
                backend.url(),
                secret_header().display()
            ),
        )?;
        let p = path.clone();
        let process =
            tokio::task::spawn_blocking(move || Process::run(&p, &[("GW_TEST_SECRET", SECRET)]))
                .await??;
        let r = get(
            process.addr,
            "a",
            "/hello?api_key=query-s3cret",
            &[("user-agent", "test-agent"), ("x-client", "visible")],
        )
        .await?;
        assert_eq!(r.status, 200);
        let (_, config) = admin_get(process.admin.expect("admin"), "/config").await?;
        assert!(!config.contains(SECRET));

        let line = process
            .wait_for_log("test-agent")
            .expect("an access log line");
        assert!(line.contains("authorization=<redacted>"), "{line}");
        assert!(line.contains("x-injected=<redacted>"), "{line}");
        assert!(line.contains("x-client=visible"), "{line}");
        assert!(line.contains("/hello"), "{line}");
        if format == "json" {
            let json: serde_json::Value = serde_json::from_str(&line)?;
            assert_eq!(json["fields"]["status"], 200, "{line}");
        }
        let logs = process.logs().join("\n");
        assert!(
            !logs.contains(SECRET),
            "the secret leaked into the logs:\n{logs}"
        );
        assert!(
            !logs.contains("query-s3cret"),
            "the query leaked into the logs:\n{logs}"
        );
        drop(process);
    }
    let seen = backend.wait_for_requests(2, Duration::from_secs(5)).await;
    assert!(
        seen.iter()
            .all(|s| s.header("authorization") == Some(&*format!("Bearer {SECRET}")))
    );
    Ok(())
}

/// The access log leaves the request path through a writer thread (issue
/// 16): lines are batched, but a clean stop (SIGTERM) writes every one of
/// them, and `/metrics` counts none dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_access_log_line_is_written_before_a_clean_stop() -> anyhow::Result<()> {
    const N: usize = 300;
    let backend = backend::start().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gw.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
admin: {{ address: "127.0.0.1:0" }}
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams: {{ backend: {{ url: "{}" }} }}
routes:
  - name: api
    match: {{}}
    upstream: backend
"#,
            backend.url()
        ),
    )?;
    let mut process = tokio::task::spawn_blocking(move || Process::run(&path, &[])).await??;
    for i in 0..N {
        let r = get(process.addr, "a", &format!("/line/{i}"), &[]).await?;
        assert_eq!(r.status, 200);
    }
    let (_, metrics) = admin_get(process.admin.expect("admin"), "/metrics").await?;
    assert!(
        metrics.contains("wasmgate_access_log_dropped_lines_total 0"),
        "{metrics}"
    );
    // Stop at once: most lines are still in the workers' buffers.
    process.signal("TERM")?;
    let process = tokio::task::spawn_blocking(move || {
        let code = process.wait();
        (process, code)
    })
    .await?;
    let (process, code) = process;
    assert_eq!(code?, Some(0));
    // The last lines may still be on their way through the log capture.
    let count = |logs: &[String]| {
        let mut seen: Vec<usize> = logs
            .iter()
            .filter(|l| l.contains(" access: request "))
            .filter_map(|l| {
                l.split("path=\"/line/")
                    .nth(1)?
                    .split('"')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        seen.sort_unstable();
        seen
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while count(&process.logs()).len() < N && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = process.logs();
    assert_eq!(
        count(&logs),
        (0..N).collect::<Vec<_>>(),
        "{}",
        logs.join("\n")
    );
    Ok(())
}
