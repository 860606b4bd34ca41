//! The statuses Envoy 1.40 answers for calls the proxy-wasm Rust SDK does not make, or
//! could not survive (issue 14), through the harness: `tests/fixtures/wat/envoy_statuses.wat`
//! makes each call and reports the statuses it got.

use wasmgate_abi::Action;
use wasmgate_harness::Harness;
use wasmgate_tests::wat;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn envoy_statuses_for_calls_the_rust_sdk_does_not_make() -> TestResult {
    let filter = Harness::load(wat("envoy_statuses"))?
        .upstream("auth")
        .start()?;
    let mut http = filter.http_stream()?;
    let request = [(":method", "GET"), (":path", "/"), (":authority", "a")];
    assert_eq!(http.request_headers(request, true)?, Action::Pause);
    // Map type 100 is BAD_ARGUMENT for all seven map calls; the call addressed with `host`
    // is made; both local responses are OK.
    assert_eq!(http.request_header("x-statuses"), Some("2222222000"));
    let calls = http.pending_http_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].headers.get_str(":authority"), Some("auth"));
    assert_eq!(calls[0].headers.get_str("host"), None);
    // The first local response wins.
    let local = http.local_response().expect("a local response");
    assert_eq!(local.status, 200);
    assert_eq!(local.body, b"Send once");
    Ok(())
}
