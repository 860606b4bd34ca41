//! A request paused in its headers and resumed (or answered) from `on_tick` after
//! `proxy_set_effective_context`, as the Go SDK's `postpone_requests` example does (issue
//! 14): `postpone.wasm` through the harness, and through the runtime API the gateway uses.

use std::time::Duration;

use wasmgate_abi::{
    Action, LogLevel, Next, PluginSpec, Runtime, RuntimeConfig, Side, Stream, StreamDriver,
    StreamOp, WasmSource,
};
use wasmgate_harness::{Error, Filter, Harness};
use wasmgate_tests::{get_request as get, wasm};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn postpone(config: &str) -> Result<Filter, Error> {
    Harness::load(wasm("postpone"))?
        .plugin_config(config)
        .start()
}

#[test]
fn a_request_paused_in_its_headers_is_resumed_from_on_tick() -> TestResult {
    let filter = postpone("period_ms=100")?;
    let mut waiting = filter.http_stream()?;
    assert_eq!(waiting.request_headers(get(&[]), true)?, Action::Pause);
    assert_eq!(waiting.request_header("x-postponed"), Some("true"));
    let mut other = filter.http_stream()?;
    assert_eq!(
        other.request_headers(get(&[("x-postpone", "no")]), true)?,
        Action::Continue
    );
    assert_eq!(other.receive(), 0);
    assert!(waiting.is_request_paused());
    assert_eq!(filter.advance_time(Duration::from_millis(100))?, 1);
    // Only the postponed stream got the resume.
    assert_eq!(other.receive(), 0);
    assert_eq!(waiting.receive(), 1);
    assert!(!waiting.is_request_paused());
    let log = format!("resume {}", waiting.context_id());
    assert!(
        filter.logged(LogLevel::Info, &log),
        "{:?}",
        filter.log_messages()
    );
    assert_eq!(
        waiting.response_headers([(":status", "200")], true)?,
        Action::Continue
    );
    assert_eq!(waiting.response_header("x-postpone"), Some("resumed"));
    Ok(())
}

#[test]
fn on_tick_can_answer_a_paused_request() -> TestResult {
    let filter = postpone("period_ms=100;then=respond")?;
    let mut http = filter.http_stream()?;
    assert_eq!(http.request_headers(get(&[]), true)?, Action::Pause);
    filter.tick()?;
    assert_eq!(http.receive(), 1);
    let local = http.local_response().expect("answered from on_tick");
    assert_eq!(local.status, 200);
    assert_eq!(local.body, b"answered by on_tick\n");
    assert_eq!(local.headers.get_str("x-answered-by"), Some("tick"));
    Ok(())
}

/// Through the runtime API the gateway uses: `on_tick` leaves a signal for the paused
/// context, and the root's effective context does not carry over to the next tick.
#[test]
fn the_runtime_hands_out_what_on_tick_addressed_to_a_stream() -> TestResult {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let mut spec = PluginSpec::new("postpone", WasmSource::File(wasm("postpone")));
    spec.plugin_config = b"period_ms=100".to_vec();
    let mut vm = runtime.load(spec)?.instantiate()?;
    let mut stream = Stream::new();
    stream.request_headers.add(":path", "/");
    vm.create_stream(&mut stream)?;
    let mut driver = StreamDriver::new();
    let action = vm.on_request_headers(&mut stream, true)?;
    assert_eq!(action, Action::Pause);
    driver.after_headers(Side::Request, action);
    assert_eq!(
        driver.next(&mut stream, Side::Request, false, false),
        Next::WaitForSignal
    );
    assert!(!vm.has_stream_signals());
    vm.on_tick()?;
    let signals = vm.take_stream_signals();
    assert_eq!(signals.len(), 1, "{signals:?}");
    assert_eq!(signals[0].context_id, stream.context_id);
    assert!(matches!(signals[0].op, StreamOp::ResumeRequest));
    stream.apply(signals[0].op.clone());
    assert!(stream.resume_requested(Side::Request));
    assert_eq!(
        driver.next(&mut stream, Side::Request, false, false),
        Next::Continue
    );
    // Nothing is postponed any more: the next tick addresses nothing.
    vm.on_tick()?;
    assert!(vm.take_stream_signals().is_empty());
    vm.end_stream(&mut stream)?;
    Ok(())
}
