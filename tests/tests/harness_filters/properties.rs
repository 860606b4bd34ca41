//! `properties.wasm`: standard properties derived from the stream and the plugin, embedder
//! properties given to the harness, custom properties set by the filter, missing ones.

use super::TestResult;
use wasmgate_harness::{Action, Harness, int_property};

const CONFIG: &str = "get=request.path; get=request.url_path; get=request.host; \
    get=request.scheme; get=request.method; get=request.protocol; \
    get=request.headers.user-agent; get=source.address; get=source.port:int; \
    get=destination.port:int; get=plugin_name; get=plugin_root_id; get=plugin_vm_id";

#[test]
fn standard_embedder_and_custom_properties() -> TestResult {
    let filter = Harness::load(wasmgate_tests::wasm("properties"))?
        .plugin_config(CONFIG)
        .name("props-under-test")
        .root_id("root-a")
        .vm_id("vm-a")
        .property("source.address", "10.1.2.3:4567")
        .property("source.port", int_property(4567))
        .property("request.protocol", "HTTP/1.1")
        .start()?;
    let mut http = filter.http_stream()?;
    // A stream-level property set by the test, as a gateway would per connection.
    http.set_property("destination.port", int_property(8443));
    let mut request = super::get("/a/b?x=1");
    request.push(("user-agent".into(), "ua/1.0".into()));
    assert_eq!(http.request_headers(request, true)?, Action::Continue);

    let expect = [
        ("x-prop-request-path", "/a/b?x=1"),
        ("x-prop-request-url-path", "/a/b"),
        ("x-prop-request-host", "example.test"),
        ("x-prop-request-scheme", "http"),
        ("x-prop-request-method", "GET"),
        ("x-prop-request-protocol", "HTTP/1.1"),
        ("x-prop-request-headers-user-agent", "ua/1.0"),
        ("x-prop-source-address", "10.1.2.3:4567"),
        ("x-prop-source-port", "4567"),
        ("x-prop-destination-port", "8443"),
        ("x-prop-plugin-name", "props-under-test"),
        ("x-prop-plugin-root-id", "root-a"),
        ("x-prop-plugin-vm-id", "vm-a"),
        ("x-prop-custom-readback", "custom-value"),
        ("x-prop-missing", "none"),
    ];
    for (header, value) in expect {
        assert_eq!(http.request_header(header), Some(value), "{header}");
    }
    // The filter's proxy_set_property is visible to the embedder.
    assert_eq!(
        http.property("wasmgate.test.custom"),
        Some(b"custom-value".as_slice())
    );

    http.response_headers([(":status", "503")], true)?;
    assert_eq!(http.response_header("x-prop-response-code"), Some("503"));
    assert_eq!(
        http.response_header("x-prop-custom-in-response"),
        Some("custom-value")
    );
    assert_eq!(
        http.response_header("x-prop-request-path"),
        Some("/a/b?x=1")
    );
    Ok(())
}

#[test]
fn custom_properties_are_per_stream() -> TestResult {
    let filter = Harness::load(wasmgate_tests::wasm("properties"))?
        .plugin_config("get=wasmgate.test.custom")
        .start()?;
    let mut first = filter.http_stream()?;
    first.request_headers(super::get("/1"), true)?;
    // Read before the filter sets it on this stream: another stream's value must not leak.
    let mut second = filter.http_stream()?;
    second.request_headers(super::get("/2"), true)?;
    assert_eq!(
        second.request_header("x-prop-wasmgate-test-custom"),
        Some("none")
    );
    assert_eq!(
        second.request_header("x-prop-custom-readback"),
        Some("custom-value")
    );
    Ok(())
}

#[test]
fn unknown_standard_properties_are_absent() -> TestResult {
    let filter = Harness::load(wasmgate_tests::wasm("properties"))?
        .plugin_config("get=source.address; get=upstream.address; get=connection.id:int")
        .start()?;
    let mut http = filter.http_stream()?;
    http.request_headers(super::get("/"), true)?;
    assert_eq!(http.request_header("x-prop-source-address"), Some("none"));
    assert_eq!(http.request_header("x-prop-upstream-address"), Some("none"));
    assert_eq!(http.request_header("x-prop-connection-id"), Some("none"));
    Ok(())
}

#[test]
fn root_context_properties() -> TestResult {
    // wasmgate lets the root context set a property and read it back (Envoy answers
    // NotFound: a deliberate difference, see envoy-example/README.md).
    let filter = Harness::load(wasmgate_tests::wasm("properties"))?
        .plugin_config("root=set")
        .start()?;
    assert_eq!(
        filter.shared_data_str("properties.root_set").as_deref(),
        Some("ok")
    );
    assert_eq!(
        filter.shared_data_str("properties.root").as_deref(),
        Some("root-value")
    );
    assert_eq!(
        filter.root_property("wasmgate.test.root"),
        Some(b"root-value".to_vec())
    );
    // Root properties are not stream properties.
    let mut http = filter.http_stream()?;
    http.request_headers(super::get("/"), true)?;
    assert_eq!(http.property("wasmgate.test.root"), None);
    http.response_headers([(":status", "200")], true)?;
    assert_eq!(http.response_header("x-prop-root-set"), Some("ok"));
    Ok(())
}

#[test]
fn without_root_set_the_root_context_sets_nothing() -> TestResult {
    let filter = Harness::load(wasmgate_tests::wasm("properties"))?.start()?;
    assert_eq!(filter.shared_data("properties.root_set"), None);
    assert_eq!(filter.shared_data("properties.root"), None);
    assert_eq!(filter.root_property("wasmgate.test.root"), None);
    let mut http = filter.http_stream()?;
    http.request_headers(super::get("/"), true)?;
    http.response_headers([(":status", "200")], true)?;
    assert_eq!(http.response_header("x-prop-root-set"), None);
    Ok(())
}
