//! `http_call.wasm`: dispatching a call to a named upstream, pausing, and resuming or
//! answering locally when the test plays the upstream; refused calls.

use super::TestResult;
use std::time::Duration;
use wasmgate_harness::{Action, Error, Filter, Harness, HttpStream, Reply};

fn start() -> Result<Filter, Error> {
    Harness::load(wasmgate_tests::wasm("http_call"))?
        .plugin_config("upstream=auth; timeout_ms=1500")
        .upstream("auth")
        .start()
}

/// A request that dispatched its call; returns the stream and the call's token.
fn dispatched(filter: &Filter) -> Result<(HttpStream, u32), Error> {
    let mut http = filter.http_stream()?;
    let mut request = super::get("/orders");
    request.push(("authorization".into(), "Bearer user".into()));
    assert_eq!(http.request_headers(request, true)?, Action::Pause);
    assert!(http.is_request_paused());
    let calls = http.pending_http_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    Ok((http, calls[0].token))
}

#[test]
fn the_call_carries_what_the_filter_built() -> TestResult {
    let filter = start()?;
    let (http, token) = dispatched(&filter)?;
    let call = &http.pending_http_calls()[0];
    assert_eq!(call.token, token);
    assert_eq!(call.context_id, http.context_id());
    assert_eq!(call.upstream, "auth");
    assert_eq!(call.headers.get_str(":method"), Some("GET"));
    assert_eq!(call.headers.get_str(":path"), Some("/auth"));
    assert_eq!(call.headers.get_str(":authority"), Some("auth"));
    assert_eq!(call.headers.get_str("x-original-path"), Some("/orders"));
    assert_eq!(call.headers.get_str("authorization"), Some("Bearer user"));
    assert_eq!(call.body, b"ping");
    assert_eq!(call.timeout, Duration::from_millis(1500));
    assert_eq!(filter.pending_http_calls().len(), 1);
    Ok(())
}

#[test]
fn an_ok_answer_resumes_the_request() -> TestResult {
    let filter = start()?;
    let (mut http, token) = dispatched(&filter)?;
    let reply = Reply::status(200)
        .header("x-auth", "ok")
        .body("alice")
        .trailer("x-t", "1");
    http.respond_http_call(token, reply)?;
    assert!(!http.is_request_paused());
    assert!(http.local_response().is_none());
    assert_eq!(http.request_header("x-auth-status"), Some("200"));
    assert_eq!(http.request_header("x-auth-body"), Some("alice"));
    assert_eq!(http.request_header("x-auth-header"), Some("ok"));
    assert_eq!(http.request_header("x-auth-trailers"), Some("1"));
    assert!(http.pending_http_calls().is_empty());
    assert!(filter.logged(
        wasmgate_harness::LogLevel::Info,
        "http_call: response token="
    ));
    http.response_headers([(":status", "200")], true)?;
    http.finish()?;
    Ok(())
}

#[test]
fn a_denial_answers_locally() -> TestResult {
    let filter = start()?;
    let (mut http, token) = dispatched(&filter)?;
    http.respond_http_call(token, Reply::status(401).body("bad token"))?;
    assert!(http.is_request_paused());
    let local = http.local_response().expect("a local response");
    assert_eq!(local.status, 403);
    assert_eq!(local.body, b"denied by auth: bad token");
    assert_eq!(local.headers.get_str("x-auth-status"), Some("401"));
    Ok(())
}

#[test]
fn a_failed_call_answers_503() -> TestResult {
    let filter = start()?;
    let (mut http, token) = dispatched(&filter)?;
    http.fail_http_call(token)?;
    let local = http.local_response().expect("a local response");
    assert_eq!(local.status, 503);
    assert_eq!(local.headers.get_str("x-call-error"), Some("failed"));
    Ok(())
}

#[test]
fn unknown_upstream_and_missing_authority_are_bad_arguments() -> TestResult {
    let filter = start()?;
    for extra in [
        ("x-call-upstream", "not-configured"),
        ("x-call-no-authority", "1"),
    ] {
        let mut http = filter.http_stream()?;
        let mut request = super::get("/");
        request.push((extra.0.into(), extra.1.into()));
        assert_eq!(http.request_headers(request, true)?, Action::Pause);
        let local = http.local_response().expect("a local response");
        assert_eq!(local.status, 503, "{extra:?}");
        assert_eq!(
            local.headers.get_str("x-call-error"),
            Some("BadArgument"),
            "{extra:?}"
        );
        assert!(http.pending_http_calls().is_empty());
    }
    Ok(())
}

#[test]
fn answering_a_call_that_is_not_pending_is_a_usage_error() -> TestResult {
    let filter = start()?;
    let (mut http, token) = dispatched(&filter)?;
    let err = http
        .respond_http_call(token + 1000, Reply::status(200))
        .unwrap_err();
    assert!(matches!(err, Error::Usage(_)), "{err:?}");
    // A call of a live stream cannot be answered as a root call either.
    let err = filter
        .respond_http_call(token, Reply::status(200))
        .unwrap_err();
    assert!(matches!(err, Error::Usage(_)), "{err:?}");
    // The call is still pending and can be answered properly.
    http.respond_http_call(token, Reply::status(200))?;
    assert!(!http.is_request_paused());
    Ok(())
}

#[test]
fn finishing_a_stream_drops_its_calls() -> TestResult {
    let filter = start()?;
    let (mut http, _) = dispatched(&filter)?;
    http.finish()?;
    assert!(filter.pending_http_calls().is_empty());
    Ok(())
}

#[test]
fn answers_reach_the_stream_that_made_the_call() -> TestResult {
    let filter = start()?;
    let (mut first, first_token) = dispatched(&filter)?;
    let (mut second, second_token) = dispatched(&filter)?;
    assert_ne!(first_token, second_token);
    assert_eq!(filter.pending_http_calls().len(), 2);
    // A stream cannot answer another stream's call.
    let err = first
        .respond_http_call(second_token, Reply::status(200))
        .unwrap_err();
    assert!(matches!(err, Error::Usage(_)), "{err:?}");
    second.respond_http_call(second_token, Reply::status(200).body("second"))?;
    first.respond_http_call(first_token, Reply::status(200).body("first"))?;
    assert_eq!(first.request_header("x-auth-body"), Some("first"));
    assert_eq!(second.request_header("x-auth-body"), Some("second"));
    Ok(())
}
