//! A filter built with AssemblyScript's compiler on `@solo-io/proxy-runtime`
//! (`tests/filters/assemblyscript`, `as_headers.wasm`) through the harness: it loads (WASI
//! as `wasi_unstable`, ABI 0.2.0, `malloc`), creates its root context from the root id,
//! edits headers and answers locally.

use wasmgate_abi::{AbiVersion, Action};
use wasmgate_harness::{Error, Filter, Harness};
use wasmgate_tests::wasm;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn start() -> Result<Filter, Error> {
    Harness::load(wasm("as_headers"))?
        .root_id("as_headers")
        .plugin_config("from-config")
        .start()
}

#[test]
fn the_assemblyscript_filter_edits_headers() -> TestResult {
    let filter = start()?;
    assert!(matches!(filter.plugin().abi_version(), AbiVersion::V0_2_0));
    let mut http = filter.http_stream()?;
    let request = [(":method", "GET"), (":path", "/hello"), (":authority", "a")];
    assert_eq!(http.request_headers(request, true)?, Action::Continue);
    assert_eq!(http.request_header("x-as-config"), Some("from-config"));
    assert_eq!(http.request_header("x-as-path"), Some("/hello"));
    assert_eq!(
        http.response_headers([(":status", "200")], true)?,
        Action::Continue
    );
    assert_eq!(http.response_header("x-as-response"), Some("seen"));
    http.finish()?;
    Ok(())
}

#[test]
fn the_assemblyscript_filter_answers_locally() -> TestResult {
    let filter = start()?;
    let mut http = filter.http_stream()?;
    let request = [(":method", "GET"), (":path", "/deny"), (":authority", "a")];
    assert_eq!(http.request_headers(request, true)?, Action::Pause);
    let local = http.local_response().expect("a local response");
    assert_eq!(local.status, 403);
    assert_eq!(local.body, b"denied by assemblyscript\n");
    assert_eq!(local.headers.get_str("x-as-denied"), Some("true"));
    Ok(())
}
