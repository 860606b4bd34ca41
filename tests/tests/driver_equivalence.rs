//! The harness predicts the gateway: the same scripted stream (`script.wasm`, steps chosen
//! by the request's `x-script` header) through a real `wasmgate` process and through the
//! harness gives the same observable sequence: the filter's callbacks in order (the trace it
//! writes into headers and bodies), the filter's headers and the body the upstream receives,
//! and the status, headers and body the client gets.
//!
//! Both embedders drive the stream with `wasmgate_abi::StreamDriver`; the harness side here
//! acts on [`HttpStream::next`] the way the gateway acts on the driver (answer the http call,
//! feed the body to a filter that holds the headers, send the local response). The gateway
//! runs first; the harness then plays its upstreams with the answers the gateway got (the
//! echo backend's body, a 200 to the http call).

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use wasmgate_harness::{Harness, HttpStream, LocalResponse, Next, Reply, Side};
use wasmgate_tests::{
    backend::{self, Backend},
    config::{Filter, GatewayYaml, Route},
    gateway::{self, Process},
    wasm,
};

/// One scripted stream: the filter's steps, the request's method and body, and something
/// the observed sequence must show (so that two hosts agreeing on nothing fails too).
struct Case {
    script: &'static str,
    method: &'static str,
    body: &'static [u8],
    shows: &'static str,
}

const CASES: &[Case] = &[
    case("", "GET", b"", r#"("x-s-added", "1")"#),
    case(
        "",
        "POST",
        b"passed as it came",
        r#", "passed as it came")"#,
    ),
    case("call", "GET", b"", r#"("x-s-call", "200")"#),
    case("call,buffer", "POST", b"after the call", "AFTER THE CALL"),
    case(
        "buffer,buffer-response",
        "POST",
        b"hello body",
        "response_body(",
    ),
    case("hold", "POST", b"held body", r#"("x-s-body-len", "9")"#),
    case(
        "hold,buffer,buffer-response",
        "PUT",
        b"held and buffered",
        "HELD AND BUFFERED",
    ),
    case("deny-headers", "GET", b"", "upstream: None, client: (403"),
    case("deny-body", "POST", b"too much", "request_body(8,true)"),
    case("deny-response", "GET", b"", "(418"),
    case(
        "call,deny-response",
        "GET",
        b"",
        "call(200) response_headers(false)",
    ),
];

const fn case(
    script: &'static str,
    method: &'static str,
    body: &'static [u8],
    shows: &'static str,
) -> Case {
    Case {
        script,
        method,
        body,
        shows,
    }
}

/// What one host did with a case.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    /// The filter's headers (`x-s-*`, sorted) and the body the upstream received; `None`
    /// when no complete request reached it.
    upstream: Option<(Vec<(String, String)>, String)>,
    /// The client's status, the filter's response headers (`x-s-*`, sorted) and the body.
    client: Client,
}

/// The request headers of a case, as the client sends them (besides `host`).
fn request_headers(case: &Case) -> Vec<(String, String)> {
    let mut headers = vec![
        ("x-script".to_string(), case.script.to_string()),
        ("x-s-edit".to_string(), "original".to_string()),
        ("x-s-drop".to_string(), "yes".to_string()),
    ];
    if !case.body.is_empty() {
        headers.push(("content-length".into(), case.body.len().to_string()));
    }
    headers
}

/// The `x-s-*` pairs of `pairs`, sorted.
fn filter_headers<'a>(pairs: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<(String, String)> {
    let mut out: Vec<_> = pairs
        .filter(|(name, _)| name.starts_with("x-s-"))
        .map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value).into_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

// === through the gateway ===

/// One worker, one route to `backend` running `script.wasm`, whose http calls go to
/// `calls`; the filter sees the body while it holds the headers.
fn config(backend: &Backend, calls: &Backend) -> String {
    let filter =
        Filter::new(wasm("script"), "upstream=calls").with("allow_on_headers_stop_iteration: true");
    GatewayYaml::new()
        .set("workers: 1")
        .upstream("backend", &backend.url())
        .upstream("calls", &calls.url())
        .route(Route::new("r", "backend").filter(filter))
        .yaml()
}

/// Sends `case` through the gateway at `addr`; returns what was observed and the body the
/// upstream answered with (empty if nothing reached it).
async fn through_gateway(
    addr: std::net::SocketAddr,
    backend: &Backend,
    case: &Case,
) -> anyhow::Result<(Observed, Vec<u8>)> {
    let before = backend.received().len();
    let mut builder = Request::builder()
        .method(case.method)
        .uri("/case")
        .header("host", "a");
    for (name, value) in request_headers(case) {
        builder = builder.header(name, value);
    }
    let request = builder.body(Full::new(Bytes::from_static(case.body)))?;
    let reply = gateway::send(addr, &gateway::Client::Http1, request).await?;
    let received = backend.received();
    let upstream = received.get(before).map(|r| {
        let headers = r.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
        (
            filter_headers(headers),
            String::from_utf8_lossy(&r.body).into_owned(),
        )
    });
    let answer = received
        .get(before)
        .map(|r| r.to_json().to_string().into_bytes())
        .unwrap_or_default();
    let headers = reply
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()));
    let client = (reply.status.as_u16(), filter_headers(headers), reply.text());
    Ok((Observed { upstream, client }, answer))
}

// === through the harness ===

/// Does what the gateway does with `side`'s headers until they go on, a filter answers, or
/// it holds them for the body: answers the filter's http calls as the `calls` upstream
/// does (200).
fn drive(http: &mut HttpStream, side: Side, body_to_come: bool) -> anyhow::Result<Next> {
    loop {
        match http.next(side, body_to_come) {
            Next::AnswerHttpCall => {
                let call = http.pending_http_calls().remove(0);
                http.respond_http_call(call.token, Reply::status(200))?;
            }
            Next::WaitForSignal => anyhow::bail!("waits for a signal nothing sends"),
            Next::Close => anyhow::bail!("closed"),
            next => return Ok(next),
        }
    }
}

/// What the client gets.
type Client = (u16, Vec<(String, String)>, String);

/// The client's view of a local response sent as it is.
fn as_sent(local: &LocalResponse) -> Client {
    (
        local.status as u16,
        filter_headers(local.headers.iter()),
        String::from_utf8_lossy(&local.body).into_owned(),
    )
}

/// Sends `case` through the harness; the upstream answers 200 with `answer`.
fn through_harness(
    filter: &wasmgate_harness::Filter,
    case: &Case,
    answer: &[u8],
) -> anyhow::Result<Observed> {
    let mut http = filter.http_stream()?;
    if let Some(local) = request_phase(&mut http, case)? {
        // As the gateway does, a local response from a request phase goes back through
        // the filter's response callbacks.
        let client = response_phase(&mut http, local_headers(&local), &local.body)?;
        return Ok(Observed {
            upstream: None,
            client,
        });
    }
    let upstream = Some((
        filter_headers(http.request_headers_map().iter()),
        String::from_utf8_lossy(http.request_body_sent()).into_owned(),
    ));
    let length = answer.len().to_string();
    let headers = vec![
        (":status".to_string(), "200".to_string()),
        ("content-type".into(), "application/json".into()),
        ("content-length".into(), length),
    ];
    let client = response_phase(&mut http, headers, answer)?;
    Ok(Observed { upstream, client })
}

/// The request's headers and body through the filter; the local response it sent instead,
/// if any.
fn request_phase(http: &mut HttpStream, case: &Case) -> anyhow::Result<Option<LocalResponse>> {
    let has_body = !case.body.is_empty();
    let mut headers = vec![
        (":method".to_string(), case.method.to_string()),
        (":path".into(), "/case".into()),
        (":authority".into(), "a".into()),
    ];
    headers.extend(request_headers(case));
    http.request_headers(headers, !has_body)?;
    if drive(http, Side::Request, has_body)? == Next::Respond {
        return Ok(http.take_local_response());
    }
    if has_body {
        http.request_body(case.body, true)?;
        // A filter that held the headers for the body lets them go now.
        if drive(http, Side::Request, false)? == Next::Respond {
            return Ok(http.take_local_response());
        }
    }
    Ok(None)
}

/// The response through the filter: what the client gets.
fn response_phase(
    http: &mut HttpStream,
    headers: Vec<(String, String)>,
    body: &[u8],
) -> anyhow::Result<Client> {
    http.response_headers(headers, body.is_empty())?;
    if drive(http, Side::Response, false)? == Next::Respond {
        return Ok(as_sent(&http.take_local_response().expect("answered")));
    }
    if !body.is_empty() {
        http.response_body(body, true)?;
        if let Some(local) = http.take_local_response() {
            return Ok(as_sent(&local));
        }
    }
    let status = http
        .response_header(":status")
        .unwrap_or_default()
        .parse()?;
    Ok((
        status,
        filter_headers(http.response_headers_map().iter()),
        String::from_utf8_lossy(http.response_body_sent()).into_owned(),
    ))
}

/// The response headers the gateway makes of a local response.
fn local_headers(local: &LocalResponse) -> Vec<(String, String)> {
    let mut headers = vec![(":status".to_string(), local.status.to_string())];
    for (name, value) in local.headers.iter() {
        headers.push((name.into(), String::from_utf8_lossy(value).into_owned()));
    }
    if !local.body.is_empty() {
        headers.push(("content-length".into(), local.body.len().to_string()));
        if local.headers.get("content-type").is_none() {
            headers.push(("content-type".into(), "text/plain".into()));
        }
    }
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_and_the_gateway_drive_a_stream_alike() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let calls = backend::start().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(&backend, &calls))?;
    let p = path.clone();
    let process = tokio::task::spawn_blocking(move || Process::run(&p, &[])).await??;
    let filter = Harness::load(wasm("script"))?
        .plugin_config("upstream=calls")
        .upstream("calls")
        .start()?;
    for case in CASES {
        let (gateway, answer) = through_gateway(process.addr, &backend, case).await?;
        let harness = through_harness(&filter, case, &answer)?;
        assert_eq!(
            harness, gateway,
            "x-script: {:?} ({}): harness (left) and gateway (right) differ",
            case.script, case.method
        );
        let seen = format!("{gateway:?}");
        assert!(
            seen.contains(case.shows),
            "x-script: {:?}: {:?} not in {seen}",
            case.script,
            case.shows
        );
    }
    // The http calls went to the calls upstream, one per case that made one.
    let made = CASES.iter().filter(|c| c.script.contains("call")).count();
    assert_eq!(
        calls
            .wait_for_requests(made, Duration::from_secs(5))
            .await
            .len(),
        made
    );
    Ok(())
}
