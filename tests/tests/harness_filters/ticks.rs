//! `ticks.wasm`: tick periods, `on_tick` fired by virtual time, stopping the timer, the
//! clock the filter reads, and http calls from the root context.

use super::{TestResult, start};
use std::time::Duration;
use wasmgate_harness::{Harness, LogLevel, Reply};

#[test]
fn virtual_time_fires_ticks_until_the_filter_stops_them() -> TestResult {
    let filter = start("ticks", "period_ms=100; stop_after=3")?;
    assert_eq!(filter.tick_period(), Some(Duration::from_millis(100)));
    let t0 = filter.now();

    assert_eq!(filter.advance_time(Duration::from_millis(99))?, 0);
    assert_eq!(filter.shared_data_str("ticks.count"), None);
    // 99 + 151 = 250 ms: two periods.
    assert_eq!(filter.advance_time(Duration::from_millis(151))?, 2);
    assert_eq!(filter.shared_data_str("ticks.count").as_deref(), Some("2"));
    // The third tick sets the period to 0; no more ticks after that.
    assert_eq!(filter.advance_time(Duration::from_secs(10))?, 1);
    assert_eq!(filter.shared_data_str("ticks.count").as_deref(), Some("3"));
    assert!(
        filter.tick_period().is_none_or(|p| p.is_zero()),
        "{:?}",
        filter.tick_period()
    );
    assert_eq!(filter.advance_time(Duration::from_secs(10))?, 0);

    assert!(filter.logged(LogLevel::Info, "tick 3"));
    assert_eq!(
        filter.now().duration_since(t0).ok(),
        Some(Duration::from_millis(20_250))
    );
    assert_eq!(filter.elapsed(), Duration::from_millis(20_250));

    let mut http = filter.http_stream()?;
    http.request_headers(super::get("/"), true)?;
    assert_eq!(http.request_header("x-ticks"), Some("3"));
    assert_eq!(http.request_header("x-clock-ok"), Some("true"));
    assert_eq!(http.request_header("x-tick-call"), Some("none"));
    Ok(())
}

#[test]
fn a_tick_can_be_fired_directly() -> TestResult {
    let filter = start("ticks", "period_ms=60000")?;
    filter.tick()?;
    filter.tick()?;
    assert_eq!(filter.shared_data_str("ticks.count").as_deref(), Some("2"));
    Ok(())
}

#[test]
fn root_context_http_calls() -> TestResult {
    let filter = Harness::load(wasmgate_tests::wasm("ticks"))?
        .plugin_config("period_ms=1000; call=metadata")
        .upstream("metadata")
        .start()?;
    assert_eq!(filter.advance_time(Duration::from_secs(1))?, 1);
    let calls = filter.pending_http_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].upstream, "metadata");
    assert_eq!(calls[0].headers.get_str(":path"), Some("/tick"));
    filter.respond_http_call(calls[0].token, Reply::status(200).body("pong"))?;
    assert_eq!(
        filter.shared_data_str("ticks.call").as_deref(),
        Some("200:pong")
    );
    assert!(filter.pending_http_calls().is_empty());

    filter.advance_time(Duration::from_secs(1))?;
    let token = filter.pending_http_calls()[0].token;
    filter.fail_http_call(token)?;
    assert_eq!(
        filter.shared_data_str("ticks.call").as_deref(),
        Some("failed")
    );
    Ok(())
}

#[test]
fn root_call_to_an_unknown_upstream_is_refused() -> TestResult {
    let filter = start("ticks", "period_ms=1000; call=nowhere")?;
    filter.advance_time(Duration::from_secs(1))?;
    assert!(filter.pending_http_calls().is_empty());
    assert_eq!(
        filter.shared_data_str("ticks.call").as_deref(),
        Some("refused:BadArgument")
    );
    Ok(())
}
