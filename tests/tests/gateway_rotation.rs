//! Rotation under continuous load, with no failed request: a few tasks send requests
//! through an injecting (or signing) wasmgate and a verifying wasmgate in front of the
//! backend, while the configurations change by `POST /reload` on each one's admin
//! endpoint, in the documented order: the verifier accepts both values, the injecting side
//! switches to the new one, the verifier drops the old one. Every request must get a 200.
//!
//! For `sign`/`verify_signature` the requests alternate bodiless GETs and POSTs with a body
//! (`content_digest: true`, the headers held while the filters see the body).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use wasmgate_tests::{
    backend,
    config::{Filter, GatewayYaml, Route},
    gateway::{self, Client, TestGateway, send},
};

const KEY_A: &str = "rotation-key-A-0123456789abcdef-01";
const KEY_B: &str = "rotation-key-B-0123456789abcdef-01";

/// One gateway: admin endpoint, one route to `upstream` running the filter with `config`.
fn yaml(upstream: &str, config: &str) -> String {
    let filter = Filter::secret_header(config).with("allow_on_headers_stop_iteration: true");
    GatewayYaml::new()
        .set("workers: 2")
        .set(r#"admin: { address: "127.0.0.1:0" }"#)
        .upstream("next", upstream)
        .route(Route::new("r", "next").filter(filter))
        .yaml()
}

/// Rewrites `gw`'s configuration and reloads it through `POST /reload`.
async fn reload(gw: &TestGateway, upstream: &str, config: &str) -> anyhow::Result<()> {
    gw.rewrite(&yaml(upstream, config))?;
    let admin = gw.admin();
    let req = Request::post("/reload")
        .header("host", admin.to_string())
        .body(Full::new(Bytes::new()))?;
    let r = send(admin, &Client::Http1, req).await?;
    anyhow::ensure!(r.status == 200, "reload: {} {}", r.status, r.text());
    Ok(())
}

/// Sends requests from `tasks` tasks until `stop`; returns every status seen.
fn load(
    addr: SocketAddr,
    tasks: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<u16>>> {
    (0..tasks)
        .map(|t| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let req = if n.is_multiple_of(2) {
                        Request::post(format!("/v1/pay?task={t}&n={n}"))
                            .header("host", "api")
                            .body(Full::new(Bytes::from(format!(r#"{{"n": {n}}}"#))))
                    } else {
                        Request::get(format!("/v1/items?task={t}&n={n}"))
                            .header("host", "api")
                            .body(Full::new(Bytes::new()))
                    };
                    let status = match send(addr, &Client::Http1, req.expect("request")).await {
                        Ok(r) => r.status.as_u16(),
                        Err(_) => 0,
                    };
                    statuses.push(status);
                }
                statuses
            })
        })
        .collect()
}

/// Runs the load while `steps` reload the two gateways, then checks every status.
async fn rotate_under_load(
    front: SocketAddr,
    steps: impl AsyncFnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(front, 3, stop.clone());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let outcome = steps().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.extend(task.await?);
    }
    outcome?;
    let failed: Vec<_> = statuses.iter().filter(|&&s| s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        statuses.len()
    );
    assert!(statuses.len() > 30, "too little load: {}", statuses.len());
    Ok(statuses.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_rotate_under_load_without_a_failed_request() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let upstream = backend.url();
    let verify = |keys: &str| {
        format!(
            r#"{{ verify_signature: {{ keys: {{ {keys} }}, required_components: ["@method", "@path", "@query", "content-digest"] }} }}"#
        )
    };
    let sign = |id: &str, key: &str| {
        format!(
            r#"{{ sign: {{ key_id: {id}, key: "{key}", components: ["@method", "@authority", "@path", "@query"], content_digest: true }} }}"#
        )
    };
    let verifier = gateway::start(&yaml(&upstream, &verify(&format!("key-a: \"{KEY_A}\""))))?;
    let to_verifier = format!("http://{}", verifier.addr());
    let signer = gateway::start(&yaml(&to_verifier, &sign("key-a", KEY_A)))?;

    let sent = rotate_under_load(signer.addr(), async || {
        let both = format!("key-a: \"{KEY_A}\", key-b: \"{KEY_B}\"");
        reload(&verifier, &upstream, &verify(&both)).await?;
        tokio::time::sleep(Duration::from_millis(400)).await;
        reload(&signer, &to_verifier, &sign("key-b", KEY_B)).await?;
        tokio::time::sleep(Duration::from_millis(400)).await;
        reload(
            &verifier,
            &upstream,
            &verify(&format!("key-b: \"{KEY_B}\"")),
        )
        .await
    })
    .await?;
    eprintln!("{sent} requests, none failed");

    // The old key is gone: a request signed with it is refused.
    let old = gateway::start(&yaml(&to_verifier, &sign("key-a", KEY_A)))?;
    let r = gateway::get(old.addr(), "api", "/v1/items", &[]).await?;
    assert_eq!(r.status, 401);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_values_rotate_under_load_without_a_failed_request() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let upstream = backend.url();
    let verify =
        |accept: &str| format!(r#"{{ verify: {{ header: authorization, accept: [{accept}] }} }}"#);
    let set =
        |token: &str| format!(r#"{{ set: {{ headers: ["authorization:Bearer {token}"] }} }}"#);
    let verifier = gateway::start(&yaml(&upstream, &verify(r#""Bearer old-7f3a""#)))?;
    let to_verifier = format!("http://{}", verifier.addr());
    let injector = gateway::start(&yaml(&to_verifier, &set("old-7f3a")))?;

    let sent = rotate_under_load(injector.addr(), async || {
        reload(
            &verifier,
            &upstream,
            &verify(r#""Bearer new-91c2", "Bearer old-7f3a""#),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(400)).await;
        reload(&injector, &to_verifier, &set("new-91c2")).await?;
        tokio::time::sleep(Duration::from_millis(400)).await;
        reload(&verifier, &upstream, &verify(r#""Bearer new-91c2""#)).await
    })
    .await?;
    eprintln!("{sent} requests, none failed");

    let seen = backend.received();
    assert!(
        seen.iter().all(|s| s.header("authorization").is_none()),
        "stripped"
    );
    let r = gateway::get(
        verifier.addr(),
        "api",
        "/v1/items",
        &[("authorization", "Bearer old-7f3a")],
    )
    .await?;
    assert_eq!(r.status, 401, "the old value is refused once removed");
    Ok(())
}
