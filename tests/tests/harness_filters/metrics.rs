//! `metrics.wasm`: counter, gauge and histogram defined, recorded, incremented and read
//! back, by the filter and by the test; unknown metric ids.

use super::{TestResult, start};
use wasmgate_harness::MetricKind;

#[test]
fn counter_gauge_and_histogram() -> TestResult {
    let filter = start("metrics", "")?;
    let mut header_counts = 0;
    for (n, path) in ["/abcd", "/abcdefgh"].into_iter().enumerate() {
        let mut http = filter.http_stream()?;
        let request = super::get(path);
        header_counts += request.len() as i64;
        http.request_headers(request, true)?;
        let requests = (n + 1).to_string();
        let path_len = (path.len() - 2).to_string();
        assert_eq!(
            http.request_header("x-metric-requests"),
            Some(requests.as_str())
        );
        assert_eq!(
            http.request_header("x-metric-path-len"),
            Some(path_len.as_str())
        );
        assert_eq!(http.request_header("x-metric-bogus"), Some("NotFound"));
        assert_eq!(
            http.request_header("x-metric-bogus-increment"),
            Some("NotFound")
        );
        assert_eq!(http.request_header("x-metric-failures"), Some(""));
    }

    let requests = filter
        .metric("wasmgate_test_requests")
        .expect("counter defined");
    assert!(matches!(requests.kind, MetricKind::Counter));
    assert_eq!(requests.value, 2);
    let gauge = filter
        .metric("wasmgate_test_path_len")
        .expect("gauge defined");
    assert!(matches!(gauge.kind, MetricKind::Gauge));
    assert_eq!(gauge.value, "/abcdefgh".len() as i64 - 2);
    let histogram = filter
        .metric("wasmgate_test_header_count")
        .expect("histogram defined");
    assert!(matches!(histogram.kind, MetricKind::Histogram));
    assert_eq!(histogram.count, 2);
    assert_eq!(histogram.value, header_counts);
    assert_eq!(filter.metrics().len(), 3);
    Ok(())
}

#[test]
fn each_loaded_plugin_has_its_own_metrics() -> TestResult {
    // Metrics belong to the loaded plugin (shared by its instances), not to the module.
    let filter = start("metrics", "")?;
    filter
        .http_stream()?
        .request_headers(super::get("/"), true)?;
    let again = super::start("metrics", "")?;
    assert_eq!(
        again.metric("wasmgate_test_requests").map(|m| m.value),
        Some(0)
    );
    assert_eq!(
        filter.metric("wasmgate_test_requests").map(|m| m.value),
        Some(1)
    );
    Ok(())
}
