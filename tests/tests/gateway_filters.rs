//! Filter chains in the gateway with real `.wasm` filters built from
//! source: failure policies (deny = 503, allow = skip) and fresh instances
//! after a fault, the CPU deadline, chain order, local responses, http calls
//! to named upstreams (pause and resume), body rewriting, a filter whose
//! `on_configure` fails stopping the start, and the order of a stream's
//! callbacks through to `on_log` and `on_done`.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::net::TcpListener;
use wasmgate_tests::{
    backend,
    gateway::{self, Client, Process, get, secret_header, send},
    wasm,
};

const WAIT: Duration = Duration::from_secs(5);

fn one_route(backend: &str, filters: &str, extra_upstreams: &str) -> String {
    format!(
        r#"
workers: 1
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams:
  backend: {{ url: "{backend}" }}
{extra_upstreams}
routes:
  - name: r
    match: {{}}
    upstream: backend
    filters:
{filters}
"#
    )
}

fn hostile(on_error: &str) -> String {
    format!(
        "      - {{ wasm: \"{}\", config: \"\", on_error: {on_error} }}\n",
        wasm("hostile").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_fails_closed_and_a_fresh_instance_follows() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway::start(&one_route(&backend.url(), &hostile("deny"), ""))?;
    let r = get(gw.addr(), "a", "/1", &[]).await?;
    assert_eq!(r.status, 200);
    let r = get(gw.addr(), "a", "/trap", &[("x-hostile", "trap")]).await?;
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "filter r/0 failed\n");
    // The broken instance was replaced: the counter starts again at 1.
    let r = get(gw.addr(), "a", "/2", &[]).await?;
    assert_eq!(r.status, 200);
    let seen = backend.wait_for_requests(2, WAIT).await;
    assert_eq!(
        seen.len(),
        2,
        "the failed request must not reach the backend"
    );
    assert_eq!(seen[0].header("x-hostile-ok"), Some("1"));
    assert_eq!(
        seen[1].header("x-hostile-ok"),
        Some("1"),
        "a fresh instance serves after the fault"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_failing_on_the_request_body_is_a_503_not_an_upstream_error() -> anyhow::Result<()>
{
    let backend = backend::start().await?;
    let filter = format!(
        "      - {{ wasm: \"{}\", config: \"trap@request_body\", on_error: deny }}\n",
        wasm("hostile").display()
    );
    let gw = gateway::start(&one_route(&backend.url(), &filter, ""))?;
    for client in [Client::Http1, Client::H2c] {
        let req = Request::post("/upload")
            .header("host", "a")
            .body(Full::new(Bytes::from_static(b"payload")))?;
        let r = send(gw.addr(), &client, req).await?;
        // The request went upstream with its headers; the body is cut
        // short and the client gets the filter failure, not a 502.
        assert_eq!(r.status, 503, "{client:?}: {}", r.text());
        assert_eq!(r.text(), "filter r/0 failed\n");
    }
    assert!(backend.received().is_empty(), "{:?}", backend.received());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_skips_the_failed_filter_and_the_deadline_stops_loops() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let secret = format!(
        "      - {{ wasm: \"{}\", config: {{ set: {{ headers: [\"x-secret:after-hostile\"] }} }} }}\n",
        secret_header().display()
    );
    let gw = gateway::start(&one_route(
        &backend.url(),
        &(hostile("allow") + &secret),
        "",
    ))?;
    for what in ["trap", "loop"] {
        let r = get(gw.addr(), "a", &format!("/{what}"), &[("x-hostile", what)]).await?;
        assert_eq!(r.status, 200, "{what}: {}", r.text());
    }
    let seen = backend.wait_for_requests(2, WAIT).await;
    assert_eq!(seen.len(), 2);
    for s in &seen {
        // The hostile filter was skipped, the next filter still ran.
        assert_eq!(s.header("x-hostile-ok"), None);
        assert_eq!(s.header("x-secret"), Some("after-hostile"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_run_in_order_and_routes_keep_their_own_configuration() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let f = |v: &str| {
        format!(
            "      - {{ wasm: \"{}\", config: {{ set: {{ headers: [\"x-order:{v}\"] }}, append: {{ headers: [\"x-trail:{v}\"] }} }} }}\n",
            secret_header().display()
        )
    };
    let gw = gateway::start(&one_route(&backend.url(), &(f("first") + &f("second")), ""))?;
    assert_eq!(get(gw.addr(), "a", "/", &[]).await?.status, 200);
    let seen = backend.wait_for_requests(1, WAIT).await;
    assert_eq!(seen[0].header_all("x-order"), ["second"]);
    assert_eq!(seen[0].header_all("x-trail"), ["first", "second"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_responses_replace_proxying() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let filter = format!(
        "      - {{ wasm: \"{}\" }}\n",
        wasm("local_response").display()
    );
    let gw = gateway::start(&one_route(&backend.url(), &filter, ""))?;
    let r = get(gw.addr(), "a", "/deny", &[]).await?;
    assert_eq!(r.status, 403);
    assert_eq!(r.headers["x-local"], "deny");
    assert_eq!(r.text(), "denied by local_response filter");
    // As in Envoy, a local reply from a request phase goes through the
    // response callbacks, which see its status.
    assert_eq!(r.headers["x-upstream-status"], "403");
    let r = get(gw.addr(), "a", "/empty", &[]).await?;
    assert_eq!(r.status, 204);
    assert_eq!(r.headers["x-upstream-status"], "204");
    assert!(r.body.is_empty());
    // One from the response phase replaces the upstream's response as is;
    // a body without a type from the filter is text/plain.
    let r = get(gw.addr(), "a", "/replace-response", &[]).await?;
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "teapot from response phase");
    assert_eq!(r.headers["content-type"], "text/plain");
    assert_eq!(r.headers.get("x-upstream-status"), None);
    let r = get(gw.addr(), "a", "/pass", &[]).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-upstream-status"], "200");
    // proxy_close_stream resets the exchange: no response at all, on
    // HTTP/1.1 (connection closed) and HTTP/2 (stream reset).
    assert!(get(gw.addr(), "a", "/reset", &[]).await.is_err());
    let req = Request::get("http://a/reset").body(Full::new(Bytes::new()))?;
    assert!(send(gw.addr(), &Client::H2c, req).await.is_err());
    let seen = backend.wait_for_requests(2, WAIT).await;
    let paths: Vec<_> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/replace-response", "/pass"],
        "/deny must not reach the backend"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_response_from_the_request_body_answers_the_client() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let filter = format!(
        "      - {{ wasm: \"{}\" }}\n",
        wasm("local_response").display()
    );
    let gw = gateway::start(&one_route(&backend.url(), &filter, ""))?;
    for client in [Client::Http1, Client::H2c] {
        let req = Request::post("/deny-body")
            .header("host", "a")
            .body(Full::new(Bytes::from_static(b"0123456789")))?;
        let r = send(gw.addr(), &client, req).await?;
        assert_eq!(r.status, 413, "{client:?}: {}", r.text());
        assert_eq!(r.text(), "body rejected: 10 bytes");
        assert_eq!(r.headers["x-local"], "deny-body");
        assert_eq!(r.headers["content-type"], "text/plain");
        assert_eq!(r.headers["content-length"], "23");
        assert_eq!(r.headers["x-upstream-status"], "413");
    }
    // The filter held the body back: no complete request reached the backend.
    assert!(backend.received().is_empty(), "{:?}", backend.received());
    // The connection and the filter's instance go on serving.
    let r = get(gw.addr(), "a", "/pass", &[]).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-upstream-status"], "200");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_calls_pause_and_resume_the_request() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let auth = backend::start().await?;
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    // Bound and never accepted: connections complete, nothing is answered.
    let mute = TcpListener::bind("127.0.0.1:0").await?;
    let filter = format!(
        "      - {{ wasm: \"{}\", config: \"upstream=auth;path=/check;timeout_ms=300\" }}\n",
        wasm("http_call").display()
    );
    let extra = format!(
        "  auth: {{ url: \"{}\" }}\n  down: {{ url: \"http://{closed}\", connect_timeout: 1s }}\n  mute: {{ url: \"http://{}\" }}",
        auth.url(),
        mute.local_addr()?
    );
    let gw = gateway::start(&one_route(&backend.url(), &filter, &extra))?;

    let r = get(
        gw.addr(),
        "a",
        "/orders",
        &[("authorization", "Bearer user")],
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let calls = auth.wait_for_requests(1, WAIT).await;
    assert_eq!(calls[0].path, "/check");
    assert_eq!(calls[0].header("x-original-path"), Some("/orders"));
    assert_eq!(calls[0].header("authorization"), Some("Bearer user"));
    assert_eq!(calls[0].body, b"ping");
    let seen = backend.wait_for_requests(1, WAIT).await;
    assert_eq!(seen[0].header("x-auth-status"), Some("200"));
    assert!(
        seen[0]
            .header("x-auth-body")
            .is_some_and(|b| b.contains("/check"))
    );

    // A call to an upstream that is down gets Envoy's made-up 503, which
    // the filter turns into a 403 quoting it.
    let r = get(gw.addr(), "a", "/x", &[("x-call-upstream", "down")]).await?;
    assert_eq!(r.status, 403);
    assert_eq!(r.headers["x-auth-status"], "503");
    assert_eq!(
        r.text(),
        "denied by auth: upstream connect error or disconnect/reset before headers. \
         reset reason: remote connection failure"
    );
    assert_eq!(r.headers["content-type"], "text/plain");
    // One that accepts but never answers: 504 when the call's time is up.
    let r = get(gw.addr(), "a", "/x", &[("x-call-upstream", "mute")]).await?;
    assert_eq!(r.status, 403);
    assert_eq!(r.headers["x-auth-status"], "504");
    assert_eq!(r.text(), "denied by auth: upstream request timeout");
    // A name that is not an upstream is refused by the host.
    let r = get(gw.addr(), "a", "/x", &[("x-call-upstream", "nowhere")]).await?;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["x-call-error"], "BadArgument");
    assert_eq!(backend.received().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_through_filters() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let filter = format!("      - {{ wasm: \"{}\" }}\n", wasm("bodies").display());
    let gw = gateway::start(&one_route(&backend.url(), &filter, ""))?;
    for client in [Client::Http1, Client::H2c] {
        let req = Request::post("/b")
            .header("host", "a")
            .body(Full::new(Bytes::from_static(b"hello")))?;
        let r = send(gw.addr(), &client, req).await?;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.headers["x-req-body-len"], "5");
        assert_eq!(r.headers["x-req-body-final"], "<<hello>>");
        assert!(
            r.text().starts_with("resp:{\"BODY\":\"<<HELLO>>\""),
            "{}",
            r.text()
        );
    }
    let seen = backend.wait_for_requests(2, WAIT).await;
    assert!(seen.iter().all(|s| s.body == b"<<hello>>"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_holding_the_headers_sees_the_body_first() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let filter = format!(
        "      - {{ wasm: \"{}\", allow_on_headers_stop_iteration: true }}\n",
        wasm("bodies").display()
    );
    let gw = gateway::start(&one_route(&backend.url(), &filter, ""))?;
    for client in [Client::Http1, Client::H2c] {
        let req = Request::post("/b")
            .header("host", "a")
            .header("x-hold", "yes")
            .body(Full::new(Bytes::from_static(b"hello")))?;
        let r = send(gw.addr(), &client, req).await?;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.headers["x-req-body-final"], "<<hello>>");
        // Written in the response body's callback, after the headers were held.
        let text = r.text();
        assert!(text.starts_with("resp:{"), "{text}");
        assert_eq!(r.headers["x-held-response"], text.len().to_string());
    }
    // Several chunks, chunked: held, then sent with the header set at the body's end.
    let r = gateway::raw(
        gw.addr(),
        b"POST /c HTTP/1.1\r\nhost: a\r\nx-hold: yes\r\ntransfer-encoding: chunked\r\n\
          connection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    .await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = backend.wait_for_requests(3, WAIT).await;
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].header("x-held-body"), Some("9"));
    assert_eq!(seen[0].body, b"<<hello>>");
    assert_eq!(seen[0].header("content-length"), Some("9"));
    assert_eq!(seen[2].header("x-held-body"), Some("9"));
    assert_eq!(seen[2].body, b"<<abcde>>");
    Ok(())
}

#[test]
fn a_filter_that_refuses_its_configuration_stops_the_start() {
    let yaml = one_route(
        "http://127.0.0.1:9",
        &format!(
            "      - {{ wasm: \"{}\", config: {{ set: {{ headers: [\"no colon here\"] }} }} }}\n",
            secret_header().display()
        ),
        "",
    );
    let err = gateway::start(&yaml).expect_err("bad filter configuration must stop the start");
    let text = err.to_string();
    assert!(
        text.contains("config.yaml: routes[0] \"r\".filters[0]"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_and_root_http_calls_run_between_requests() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let auth = backend::start().await?;
    let filter = format!(
        "      - {{ wasm: \"{}\", config: \"period_ms=20;call=auth\" }}\n",
        wasm("ticks").display()
    );
    let extra = format!("  auth: {{ url: \"{}\" }}", auth.url());
    let gw = gateway::start(&one_route(&backend.url(), &filter, &extra))?;
    // No request yet: the worker's instance ticks on its own, and each tick
    // calls the auth upstream from the root context.
    let calls = auth.wait_for_requests(2, WAIT).await;
    assert!(calls.len() >= 2, "ticks did not call: {calls:?}");
    assert_eq!(calls[0].path, "/tick");
    let r = get(gw.addr(), "a", "/", &[]).await?;
    assert_eq!(r.status, 200);
    let seen = backend.wait_for_requests(1, WAIT).await;
    let ticks: u64 = seen[0].header("x-ticks").unwrap_or("0").parse()?;
    assert!(ticks >= 2, "x-ticks = {ticks}");
    assert!(
        seen[0]
            .header("x-tick-call")
            .is_some_and(|c| c.starts_with("200:")),
        "{:?}",
        seen[0].header("x-tick-call")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_items_reach_the_registering_filter() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let filter = format!(
        "      - {{ wasm: \"{}\", config: \"queue=events\" }}\n",
        wasm("queues").display()
    );
    let gw = gateway::start(&one_route(&backend.url(), &filter, ""))?;
    assert_eq!(get(gw.addr(), "a", "/first", &[]).await?.status, 200);
    // on_queue_ready is delivered between requests by the worker.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert_eq!(get(gw.addr(), "a", "/next", &[]).await?.status, 200);
        let seen = backend.received();
        let last = seen.last().expect("a request arrived");
        assert_eq!(last.header("x-queue-enqueue"), Some("ok"));
        if last
            .header("x-queue-received")
            .is_some_and(|r| r.contains("/first"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue never delivered: {:?}",
            last.headers
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_ends_with_log_then_done_in_each_filter() -> anyhow::Result<()> {
    // The gateway ends a stream in one entry into the guest (on_log, on_done,
    // on_delete through a sequencer instance); the filter must see them in
    // order, once, and its context must be gone for the next request.
    let backend = backend::start().await?;
    let filter = format!("      - {{ wasm: \"{}\" }}\n", wasm("lifecycle").display());
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, one_route(&backend.url(), &filter, ""))?;
    let p = path.clone();
    let process = tokio::task::spawn_blocking(move || Process::run(&p, &[])).await??;
    for n in 1..=2 {
        let r = get(process.addr, "a", &format!("/{n}"), &[]).await?;
        assert_eq!(r.status, 200);
    }
    let second = 3; // context ids count from 2 on the worker's instance
    assert!(
        process
            .wait_for_log(&format!("lifecycle: done:{second}"))
            .is_some(),
        "{:#?}",
        process.logs()
    );
    let events: Vec<String> = process
        .logs()
        .iter()
        .filter_map(|l| l.split("lifecycle: ").nth(1))
        .map(|e| e.split_whitespace().next().unwrap_or("").to_string())
        .filter(|e| e.ends_with(":2") || e.ends_with(":3"))
        .collect();
    let stream = |id: u32| -> Vec<String> {
        [
            "create",
            "request_headers",
            "response_headers",
            "response_body",
            "log",
            "done",
        ]
        .iter()
        .map(|e| format!("{e}:{id}"))
        .collect()
    };
    assert_eq!(events, [stream(2), stream(3)].concat());
    assert!(
        !process.logs().iter().any(|l| l.contains("filter failed")),
        "{:#?}",
        process.logs()
    );
    Ok(())
}
