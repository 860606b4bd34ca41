//! `lifecycle.wasm`: the order of context callbacks, logging at every level, the log level
//! the host reports, configuration sizes, and the calls a host may leave unimplemented.

use super::TestResult;
use wasmgate_harness::{Harness, LogLevel};

#[test]
fn callbacks_run_in_proxy_order() -> TestResult {
    let filter = Harness::load(wasmgate_tests::wasm("lifecycle"))?
        .vm_config("abc")
        .plugin_config("hello")
        .start()?;
    // The filter's root context was started with both configurations.
    assert_eq!(
        filter.shared_data_str("lifecycle.sizes").as_deref(),
        Some("3,5")
    );
    let root_events = filter
        .shared_data_str("lifecycle.events")
        .unwrap_or_default();
    assert!(root_events.ends_with("vm_start,configure"), "{root_events}");

    let mut http = filter.http_stream()?;
    let id = http.context_id();
    http.request_headers(super::get("/"), false)?;
    http.request_body("b", false)?;
    http.request_trailers([("t", "1")])?;
    http.response_headers([(":status", "200")], false)?;
    assert_eq!(
        http.response_header("x-lifecycle"),
        Some("create,request_headers,request_body,request_trailers,response_headers")
    );
    assert_eq!(
        http.response_header("x-lifecycle-root"),
        Some("vm_start,configure")
    );
    http.response_body("r", false)?;
    http.response_trailers([("t", "2")])?;
    http.log()?;
    http.finish()?;

    let events = filter
        .shared_data_str("lifecycle.events")
        .unwrap_or_default();
    let stream: Vec<&str> = events
        .split(',')
        .filter(|e| e.ends_with(&format!(":{id}")))
        .collect();
    let expected: Vec<String> = [
        "create",
        "request_headers",
        "request_body",
        "request_trailers",
        "response_headers",
        "response_body",
        "response_trailers",
        "log",
        "done",
    ]
    .iter()
    .map(|e| format!("{e}:{id}"))
    .collect();
    assert_eq!(stream, expected);
    // After on_delete the context is gone: a second finish is refused by the harness.
    assert!(http.finish().is_err());
    Ok(())
}

#[test]
fn dropping_an_unfinished_stream_ends_it() -> TestResult {
    let filter = Harness::load(wasmgate_tests::wasm("lifecycle"))?.start()?;
    let id = {
        let mut http = filter.http_stream()?;
        http.request_headers(super::get("/"), true)?;
        http.context_id()
    };
    let events = filter
        .shared_data_str("lifecycle.events")
        .unwrap_or_default();
    assert!(
        events.ends_with(&format!("request_headers:{id},done:{id}")),
        "{events}"
    );
    Ok(())
}

#[test]
fn start_up_logs_are_captured() -> TestResult {
    let filter = Harness::load(wasmgate_tests::wasm("lifecycle"))?.start()?;
    // What the filter logged in on_vm_start and on_configure, before any stream.
    assert!(
        filter.logged(LogLevel::Info, "level info"),
        "{:?}",
        filter.logs()
    );
    let messages = filter.log_messages();
    let expected = [
        "lifecycle: vm_start",
        "lifecycle: configure",
        "level trace",
        "level debug",
        "level info",
        "level warn",
        "level error",
        "level critical",
    ];
    assert_eq!(messages, expected);
    for (level, name) in [(LogLevel::Trace, "trace"), (LogLevel::Critical, "critical")] {
        assert!(filter.logged(level, &format!("level {name}")), "{name}");
    }
    // Capture is on from the first instruction, so the filter saw level Trace while starting.
    assert_eq!(
        filter.shared_data_str("lifecycle.log_level").as_deref(),
        Some("Trace")
    );

    Ok(())
}

#[test]
fn logs_at_every_level_and_the_reported_log_level() -> TestResult {
    let filter = Harness::load(wasmgate_tests::wasm("lifecycle"))?.start()?;
    let mut http = filter.http_stream()?;
    let mut request = super::get("/");
    request.push(("x-log-levels".into(), "1".into()));
    http.request_headers(request, true)?;
    for (level, name) in [
        (LogLevel::Trace, "trace"),
        (LogLevel::Debug, "debug"),
        (LogLevel::Info, "info"),
        (LogLevel::Warn, "warn"),
        (LogLevel::Error, "error"),
        (LogLevel::Critical, "critical"),
    ] {
        let message = format!("stream level {name}");
        assert!(
            filter.logged(level, &message),
            "{name}: {:?}",
            filter.logs()
        );
    }
    http.response_headers([(":status", "200")], true)?;
    assert_eq!(http.response_header("x-log-level"), Some("Trace"));

    let quiet = Harness::load(wasmgate_tests::wasm("lifecycle"))?
        .log_level(LogLevel::Warn)
        .start()?;
    let mut http = quiet.http_stream()?;
    http.request_headers(super::get("/"), true)?;
    http.response_headers([(":status", "200")], true)?;
    assert_eq!(http.response_header("x-log-level"), Some("Warn"));
    Ok(())
}

#[test]
fn unimplemented_calls_answer_statuses_the_sdk_accepts() -> TestResult {
    let filter = Harness::load(wasmgate_tests::wasm("lifecycle"))?.start()?;
    let mut http = filter.http_stream()?;
    let mut request = super::get("/");
    request.push(("x-probe".into(), "1".into()));
    // The SDK panics (a trap) on a status it does not expect, so getting here at all
    // means every answer was one the SDK accepts.
    http.request_headers(request, true)?;
    for name in [
        "grpc-call",
        "grpc-stream",
        "grpc-send",
        "grpc-cancel",
        "grpc-close",
        "foreign",
    ] {
        let value = http
            .request_header(&format!("x-probe-{name}"))
            .unwrap_or("missing");
        assert_ne!(value, "ok", "{name}: no host can satisfy this call");
        assert_ne!(value, "missing", "{name}");
    }
    assert_eq!(http.request_header("x-probe-get-status"), Some("0:"));
    assert_eq!(http.request_header("x-probe-effective-self"), Some("ok"));
    assert_eq!(
        http.request_header("x-probe-effective-bogus"),
        Some("BadArgument")
    );
    assert_eq!(filter.instances(), 1);

    let mut http = filter.http_stream()?;
    let mut request = super::get("/");
    request.push(("x-probe-done".into(), "1".into()));
    http.request_headers(request, true)?;
    assert_eq!(http.request_header("x-probe-done-result"), Some("ok"));
    Ok(())
}
