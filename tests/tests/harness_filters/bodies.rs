//! `bodies.wasm`: reading, prepending, appending and replacing body bytes, and pausing on
//! body chunks to buffer them.

use super::{TestResult, start};
use wasmgate_harness::Action;

fn post(path: &str, length: usize) -> Vec<(String, String)> {
    let mut headers = super::get(path);
    headers[0].1 = "POST".into();
    headers.push(("content-length".into(), length.to_string()));
    headers
}

#[test]
fn request_body_is_buffered_then_rewritten() -> TestResult {
    let filter = start("bodies", "")?;
    let mut http = filter.http_stream()?;
    assert_eq!(
        http.request_headers(post("/upload", 5), false)?,
        Action::Continue
    );
    assert_eq!(
        http.request_header("content-length"),
        None,
        "length changes, so it is dropped"
    );

    // The first chunk is held back: nothing reaches the upstream yet.
    assert_eq!(http.request_body("hel", false)?, Action::Pause);
    assert!(http.is_request_paused());
    assert_eq!(http.request_body_sent(), b"");
    // The last chunk: the filter sees both chunks together and rewrites them.
    assert_eq!(http.request_body("lo", true)?, Action::Continue);
    assert_eq!(http.request_body_sent(), b"<<hello>>");

    assert_eq!(
        http.response_headers([(":status", "200"), ("content-length", "6")], false)?,
        Action::Continue
    );
    assert_eq!(http.response_header("content-length"), None);
    assert_eq!(http.response_header("x-req-body-len"), Some("5"));
    assert_eq!(http.response_header("x-req-body-chunks"), Some("2"));
    assert_eq!(http.response_header("x-req-body-peek"), Some("ell"));
    assert_eq!(http.response_header("x-req-body-final"), Some("<<hello>>"));

    assert_eq!(http.response_body("abc", false)?, Action::Pause);
    assert_eq!(http.response_body_sent(), b"");
    assert_eq!(http.response_body("def", true)?, Action::Continue);
    assert_eq!(http.response_body_sent(), b"resp:ABCDEF");
    http.finish()?;
    Ok(())
}

#[test]
fn a_body_can_be_replaced_whole() -> TestResult {
    let filter = start("bodies", "")?;
    let mut http = filter.http_stream()?;
    http.request_headers(post("/replace", 11), false)?;
    assert_eq!(http.request_body("xxREPLACExx", true)?, Action::Continue);
    assert_eq!(http.request_body_sent(), b"replaced");
    http.response_headers([(":status", "200")], false)?;
    assert_eq!(http.response_header("x-req-body-len"), Some("11"));
    assert_eq!(http.response_header("x-req-body-final"), Some("replaced"));
    Ok(())
}

#[test]
fn empty_and_absent_bodies() -> TestResult {
    let filter = start("bodies", "")?;
    let mut http = filter.http_stream()?;
    http.request_headers(super::get("/"), true)?;
    http.response_headers([(":status", "204")], false)?;
    // No request body was ever seen.
    assert_eq!(http.response_header("x-req-body-len"), Some("none"));
    assert_eq!(http.response_header("x-req-body-chunks"), Some("0"));
    // An empty last response chunk is passed on untouched.
    assert_eq!(http.response_body("", true)?, Action::Continue);
    assert_eq!(http.response_body_sent(), b"");
    Ok(())
}

#[test]
fn memory_stays_flat_over_many_streams() -> TestResult {
    let filter = start("bodies", "")?;
    let run = || -> TestResult {
        let mut http = filter.http_stream()?;
        http.request_headers(post("/", 1024), false)?;
        http.request_body(vec![b'a'; 1024], true)?;
        http.response_headers([(":status", "200")], false)?;
        http.response_body(vec![b'b'; 1024], true)?;
        http.log()?;
        http.finish()
    };
    for _ in 0..50 {
        run()?;
    }
    let warmed_up = filter.memory_size();
    for _ in 0..500 {
        run()?;
    }
    assert_eq!(
        filter.memory_size(),
        warmed_up,
        "linear memory grew over 500 streams"
    );
    Ok(())
}
