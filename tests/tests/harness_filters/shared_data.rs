//! `shared_data.wasm`: get/set with CAS, CAS mismatch, missing keys, scope per VM id, and
//! data shared by filters on one runtime.

use super::TestResult;
use wasmgate_harness::{Error, Filter, Harness, HttpStream, Runtime, RuntimeConfig};

fn start_on(runtime: &Runtime, vm_id: &str) -> Result<Filter, Error> {
    Harness::load(wasmgate_tests::wasm("shared_data"))?
        .plugin_config("key=counter")
        .vm_id(vm_id)
        .runtime(runtime)
        .start()
}

fn request(filter: &Filter) -> Result<HttpStream, Error> {
    let mut http = filter.http_stream()?;
    http.request_headers(super::get("/"), true)?;
    Ok(http)
}

#[test]
fn compare_and_swap_and_error_statuses() -> TestResult {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let filter = start_on(&runtime, "vm-cas")?;
    let http = request(&filter)?;
    assert_eq!(http.request_header("x-shared-before"), Some("none"));
    assert_eq!(http.request_header("x-shared-set"), Some("ok"));
    assert_eq!(http.request_header("x-shared-after"), Some("1"));
    assert_eq!(http.request_header("x-shared-stale"), Some("CasMismatch"));
    assert_eq!(http.request_header("x-shared-missing"), Some("none"));
    assert_eq!(http.request_header("x-shared-missing-cas"), Some("none"));
    assert_eq!(http.request_header("x-shared-blind"), Some("ok"));
    // The stale write did not land.
    assert_eq!(filter.shared_data_str("counter").as_deref(), Some("1"));
    assert_eq!(
        filter.shared_data_str("wasmgate.blind").as_deref(),
        Some("blind")
    );

    let (_, cas_before) = filter.shared_data_cas("counter").expect("set");
    let mut http = request(&filter)?;
    assert_eq!(http.request_header("x-shared-before"), Some("1"));
    assert_eq!(http.request_header("x-shared-after"), Some("2"));
    let (_, cas_after) = filter.shared_data_cas("counter").expect("set");
    assert_ne!(cas_before, cas_after, "every write changes the CAS token");
    http.response_headers([(":status", "200")], true)?;
    assert_eq!(http.response_header("x-shared-now"), Some("2"));
    Ok(())
}

#[test]
fn filters_on_one_runtime_share_data_per_vm_id() -> TestResult {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let a = start_on(&runtime, "vm-shared")?;
    let b = start_on(&runtime, "vm-shared")?;
    let other = start_on(&runtime, "vm-other")?;
    request(&a)?;
    let http = request(&b)?;
    assert_eq!(http.request_header("x-shared-before"), Some("1"));
    assert_eq!(http.request_header("x-shared-after"), Some("2"));
    let http = request(&other)?;
    assert_eq!(
        http.request_header("x-shared-before"),
        Some("none"),
        "vm ids are separate scopes"
    );
    Ok(())
}

#[test]
fn the_test_can_seed_and_read_shared_data() -> TestResult {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let filter = start_on(&runtime, "vm-seed")?;
    filter.set_shared_data("counter", "41")?;
    let http = request(&filter)?;
    assert_eq!(http.request_header("x-shared-before"), Some("41"));
    assert_eq!(http.request_header("x-shared-after"), Some("42"));

    let mut http = filter.http_stream()?;
    let mut headers = super::get("/");
    headers.push(("x-shared-write".into(), "greeting=hello".into()));
    http.request_headers(headers, true)?;
    assert_eq!(http.request_header("x-shared-write-result"), Some("ok"));
    assert_eq!(filter.shared_data_str("greeting").as_deref(), Some("hello"));
    Ok(())
}
