//! Filters written with other SDKs, through the real gateway (issue 14): a request paused in
//! its headers and resumed (or answered) from `on_tick` after `set_effective_context`, as
//! the Go SDK's `postpone_requests` does, waits for it (bounded by the upstream's
//! `timeout`) instead of failing at once; AssemblyScript's and Go's runtime calls load and
//! run, and so does a filter built with AssemblyScript; the first of two local responses
//! wins.

use std::time::{Duration, Instant};

use wasmgate_tests::{backend, gateway, wasm, wat};

const WAIT: Duration = Duration::from_secs(5);

fn one_route(backend: &str, timeout: &str, filter: &str) -> String {
    format!(
        r#"
workers: 1
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams:
  backend: {{ url: "{backend}", timeout: {timeout} }}
routes:
  - name: r
    match: {{}}
    upstream: backend
    filters:
      - {filter}
"#
    )
}

fn postpone(config: &str) -> String {
    format!(
        "{{ wasm: \"{}\", config: \"{config}\" }}",
        wasm("postpone").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_resumed_from_a_tick_is_proxied() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let yaml = one_route(&backend.url(), "10s", &postpone("period_ms=50"));
    let gw = gateway::start(&yaml)?;
    for path in ["/first", "/second"] {
        let r = gateway::get(gw.addr(), "a", path, &[]).await?;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.headers["x-postpone"], "resumed");
    }
    let seen = backend.wait_for_requests(2, WAIT).await;
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.header("x-postponed") == Some("true")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_can_answer_a_paused_request() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let yaml = one_route(
        &backend.url(),
        "10s",
        &postpone("period_ms=50;then=respond"),
    );
    let gw = gateway::start(&yaml)?;
    let r = gateway::get(gw.addr(), "a", "/", &[]).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "answered by on_tick\n");
    assert_eq!(r.headers["x-answered-by"], "tick");
    assert!(backend.received().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_nothing_resumes_ends_at_the_upstream_timeout() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    // The tick comes after the timeout: the request waits, then gets the 504.
    let yaml = one_route(&backend.url(), "400ms", &postpone("period_ms=60000"));
    let gw = gateway::start(&yaml)?;
    let started = Instant::now();
    let r = gateway::get(gw.addr(), "a", "/", &[]).await?;
    let waited = started.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), "filter r/0 stalled\n");
    assert!(waited >= Duration::from_millis(350), "{waited:?}");
    assert!(waited < WAIT, "{waited:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assemblyscript_and_go_shaped_modules_run_in_the_gateway() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    for (name, header) in [("assemblyscript", "assemblyscript"), ("go_runtime", "go")] {
        let filter = format!("{{ wasm: \"{}\", config: \"\" }}", wat(name).display());
        let gw = gateway::start(&one_route(&backend.url(), "10s", &filter))?;
        let r = gateway::get(gw.addr(), "a", "/", &[]).await?;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let seen = backend.received();
        assert_eq!(seen.last().and_then(|r| r.header("x-wat")), Some(header));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_of_two_local_responses_is_sent() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let filter = format!(
        "{{ wasm: \"{}\", config: \"\" }}",
        wat("envoy_statuses").display()
    );
    let gw = gateway::start(&one_route(&backend.url(), "10s", &filter))?;
    let r = gateway::get(gw.addr(), "a", "/", &[]).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Send once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assemblyscript_filter_runs_in_the_gateway() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let filter = format!(
        "{{ wasm: \"{}\", config: \"cfg\", root_id: as_headers }}",
        wasm("as_headers").display()
    );
    let gw = gateway::start(&one_route(&backend.url(), "10s", &filter))?;
    let r = gateway::get(gw.addr(), "a", "/hello", &[]).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-as-response"], "seen");
    let seen = backend.wait_for_requests(1, WAIT).await;
    assert_eq!(seen[0].header("x-as-config"), Some("cfg"));
    assert_eq!(seen[0].header("x-as-path"), Some("/hello"));
    let r = gateway::get(gw.addr(), "a", "/deny", &[]).await?;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "denied by assemblyscript\n");
    assert_eq!(r.headers["x-as-denied"], "true");
    Ok(())
}
