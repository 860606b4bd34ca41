//! `local_response.wasm`: answering from the filter in each phase, and closing a stream.

use super::{TestResult, start};
use wasmgate_harness::Action;

#[test]
fn deny_from_request_headers() -> TestResult {
    let filter = start("local_response", "")?;
    let mut http = filter.http_stream()?;
    assert_eq!(
        http.request_headers(super::get("/deny/this"), true)?,
        Action::Pause
    );
    let local = http.local_response().expect("a local response");
    assert_eq!(local.status, 403);
    assert_eq!(local.body, b"denied by local_response filter");
    assert_eq!(local.headers.get_str("x-local"), Some("deny"));
    assert_eq!(local.headers.get_str("content-type"), Some("text/plain"));
    http.log()?;
    http.finish()?;
    Ok(())
}

#[test]
fn empty_local_response() -> TestResult {
    let filter = start("local_response", "")?;
    let mut http = filter.http_stream()?;
    assert_eq!(
        http.request_headers(super::get("/empty"), true)?,
        Action::Pause
    );
    let local = http.local_response().expect("a local response");
    assert_eq!(local.status, 204);
    assert!(local.body.is_empty());
    assert_eq!(local.headers.get_str("x-local"), Some("empty"));
    Ok(())
}

#[test]
fn deny_from_request_body() -> TestResult {
    let filter = start("local_response", "")?;
    let mut http = filter.http_stream()?;
    assert_eq!(
        http.request_headers(super::get("/deny-body"), false)?,
        Action::Continue
    );
    assert!(http.local_response().is_none());
    assert_eq!(http.request_body("ab", false)?, Action::Pause);
    assert!(http.local_response().is_none());
    assert_eq!(http.request_body("cd", true)?, Action::Pause);
    let local = http.local_response().expect("a local response");
    assert_eq!(local.status, 413);
    assert_eq!(local.body, b"body rejected: 4 bytes");
    Ok(())
}

#[test]
fn replace_the_upstream_response() -> TestResult {
    let filter = start("local_response", "")?;
    let mut http = filter.http_stream()?;
    assert_eq!(
        http.request_headers(super::get("/replace-response"), true)?,
        Action::Continue
    );
    assert_eq!(
        http.response_headers([(":status", "200")], false)?,
        Action::Pause
    );
    let local = http.local_response().expect("a local response");
    assert_eq!(local.status, 418);
    assert_eq!(local.body, b"teapot from response phase");
    Ok(())
}

#[test]
fn close_stream_and_pass_through() -> TestResult {
    let filter = start("local_response", "")?;
    let mut reset = filter.http_stream()?;
    assert_eq!(
        reset.request_headers(super::get("/reset"), true)?,
        Action::Pause
    );
    assert!(reset.close_requested());
    assert!(reset.local_response().is_none());

    let mut pass = filter.http_stream()?;
    assert_eq!(
        pass.request_headers(super::get("/ok"), true)?,
        Action::Continue
    );
    assert!(!pass.close_requested());
    assert_eq!(
        pass.response_headers([(":status", "201")], true)?,
        Action::Continue
    );
    assert_eq!(pass.response_header("x-upstream-status"), Some("201"));
    assert!(pass.local_response().is_none());
    Ok(())
}
