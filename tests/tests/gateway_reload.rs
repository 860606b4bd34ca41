//! Reloading and draining: a new configuration swaps in (API, `POST
//! /reload`, SIGHUP) without dropping a request in flight; a bad one is
//! rejected and the old one keeps serving; SIGTERM (or `begin_shutdown`)
//! lets in-flight requests finish, then stops.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use wasmgate_tests::{
    backend,
    gateway::{self, Process, get, secret_header},
};

/// A backend that answers after `delay`, echoing the Authorization header.
async fn slow_backend(delay: Duration) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| async move {
                    tokio::time::sleep(delay).await;
                    let auth = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.as_bytes().to_vec())
                        .unwrap_or_default();
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(auth))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn config(upstream: &str, secret: &str, admin: bool) -> String {
    let admin = if admin {
        "admin: { address: \"127.0.0.1:0\" }\n"
    } else {
        ""
    };
    format!(
        r#"
{admin}listeners: [{{ address: "127.0.0.1:0" }}]
upstreams: {{ backend: {{ url: "{upstream}", timeout: 10s }} }}
routes:
  - name: api
    match: {{}}
    upstream: backend
    filters:
      - wasm: "{}"
        config: {{ set: {{ headers: ["Authorization:Bearer {secret}"] }} }}
"#,
        secret_header().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_config_without_dropping_in_flight_requests() -> anyhow::Result<()> {
    let slow = slow_backend(Duration::from_millis(800)).await?;
    let gw = gateway::start(&config(&format!("http://{slow}"), "old", false))?;
    let addr = gw.addr();
    let in_flight = tokio::spawn(async move { get(addr, "a", "/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    gw.rewrite(&config(&format!("http://{slow}"), "new", false))?;
    gw.handle.reload(None).map_err(|e| anyhow::anyhow!("{e}"))?;

    let r = in_flight.await??;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "Bearer old",
        "the in-flight request finishes on the old configuration"
    );
    let r = get(addr, "a", "/after", &[]).await?;
    assert_eq!(r.text(), "Bearer new");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_is_rejected_and_the_old_config_keeps_serving() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let gw = gateway::start(&config(&backend.url(), "kept", true))?;
    let admin = gw.admin();

    gw.rewrite(
        &config(&backend.url(), "kept", true).replace("match: {}", "match: {}\n    retries: 2"),
    )?;
    let r = admin_post(admin, "/reload").await?;
    assert_eq!(r.0, 400, "{}", r.1);
    assert!(r.1.contains("unknown field `retries`"), "{}", r.1);

    // A filter whose configuration is refused is a bad configuration too.
    gw.rewrite(
        &config(&backend.url(), "kept", true).replace("Authorization:Bearer kept", "no colon"),
    )?;
    let r = admin_post(admin, "/reload").await?;
    assert_eq!(r.0, 400, "{}", r.1);

    assert_eq!(get(gw.addr(), "a", "/", &[]).await?.status, 200);
    let seen = backend.wait_for_requests(1, Duration::from_secs(5)).await;
    assert_eq!(seen[0].header("authorization"), Some("Bearer kept"));

    gw.rewrite(&config(&backend.url(), "fresh", true))?;
    let r = admin_post(admin, "/reload").await?;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(get(gw.addr(), "a", "/", &[]).await?.status, 200);
    let seen = backend.wait_for_requests(2, Duration::from_secs(5)).await;
    assert_eq!(seen[1].header("authorization"), Some("Bearer fresh"));
    Ok(())
}

async fn admin_post(admin: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let req = Request::post(path)
        .header("host", admin.to_string())
        .body(Full::new(Bytes::new()))?;
    let r = gateway::send(admin, &gateway::Client::Http1, req).await?;
    Ok((r.status.as_u16(), r.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() -> anyhow::Result<()> {
    let slow = slow_backend(Duration::from_millis(800)).await?;
    let gw = gateway::start(&config(&format!("http://{slow}"), "drain", true))?;
    let addr = gw.addr();
    let admin = gw.admin();
    let in_flight = tokio::spawn(async move { get(addr, "a", "/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.handle.begin_shutdown();
    let r = in_flight.await??;
    assert_eq!(
        r.status, 200,
        "the in-flight request completes during the drain"
    );
    assert_eq!(r.text(), "Bearer drain");
    let _ = admin;
    gw.handle.shutdown().await;
    // Stopped: nobody listens any more.
    assert!(TcpStream::connect(addr).await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reloads_on_sighup_and_drains_on_sigterm() -> anyhow::Result<()> {
    let slow = slow_backend(Duration::from_millis(800)).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, config(&format!("http://{slow}"), "one", false))?;
    let mut process = tokio::task::spawn_blocking(move || Process::run(&path, &[])).await??;
    let addr = process.addr;
    assert_eq!(get(addr, "a", "/", &[]).await?.text(), "Bearer one");

    std::fs::write(
        dir.path().join("gw.yaml"),
        config(&format!("http://{slow}"), "two", false),
    )?;
    process.signal("HUP")?;
    assert!(
        process.wait_for_log("configuration reloaded").is_some(),
        "{:?}",
        process.logs()
    );
    assert_eq!(get(addr, "a", "/", &[]).await?.text(), "Bearer two");

    let in_flight = tokio::spawn(async move { get(addr, "a", "/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    process.signal("TERM")?;
    let r = in_flight.await??;
    assert_eq!(r.status, 200);
    let code = tokio::task::spawn_blocking(move || process.wait()).await??;
    assert_eq!(code, Some(0));
    Ok(())
}
