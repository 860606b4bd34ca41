//! Filters built with Go's and AssemblyScript's toolchains, as Envoy 1.40 runs them (issue
//! 14), through the harness and the runtime: the WASI calls their runtimes make, hand written
//! in `tests/fixtures/wat/` with the same imports, module shapes and call order. Go needs
//! `poll_oneoff` to succeed (timers, `time.Sleep`, the panic path); AssemblyScript imports
//! WASI as `wasi_unstable`.

use wasmgate_abi::{
    Action, FaultKind, LogLevel, PluginSpec, Runtime, RuntimeConfig, Stream, WasmSource,
};
use wasmgate_harness::{Error, Filter, Harness};
use wasmgate_tests::{get_request as get, wat};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn fixture(name: &str) -> Result<Filter, Error> {
    Harness::load(wat(name))?.start()
}

#[test]
fn assemblyscript_imports_of_wasi_unstable_load_and_run() -> TestResult {
    let filter = fixture("assemblyscript")?;
    // `_start` wrote to stdout through wasi_unstable.fd_write.
    assert!(
        filter.logged(LogLevel::Info, "as: started"),
        "{:?}",
        filter.log_messages()
    );
    let mut http = filter.http_stream()?;
    assert_eq!(http.request_headers(get(&[]), true)?, Action::Continue);
    assert_eq!(http.request_header("x-wat"), Some("assemblyscript"));
    http.finish()?;
    // AssemblyScript's abort is proc_exit: it fails its own stream only.
    let mut http = filter.http_stream()?;
    let err = http
        .request_headers(get(&[("x-abort", "1")]), true)
        .expect_err("an abort fails the stream");
    assert!(err.fault().is_some(), "{err}");
    let mut http = filter.http_stream()?;
    assert_eq!(http.request_headers(get(&[]), true)?, Action::Continue);
    Ok(())
}

#[test]
fn go_start_up_and_a_sleep_succeed() -> TestResult {
    let filter = fixture("go_runtime")?;
    let mut http = filter.http_stream()?;
    assert_eq!(http.request_headers(get(&[]), true)?, Action::Continue);
    assert_eq!(http.request_header("x-wat"), Some("go"));
    // time.Sleep: poll_oneoff succeeds at once with no event (Envoy's answer).
    let mut http = filter.http_stream()?;
    assert_eq!(
        http.request_headers(get(&[("x-go", "sleep")]), true)?,
        Action::Continue
    );
    assert_eq!(http.request_header("x-slept"), Some("ok"));
    Ok(())
}

#[test]
fn a_go_panic_logs_its_message_not_a_fatal_error() -> TestResult {
    let filter = fixture("go_runtime")?;
    let mut http = filter.http_stream()?;
    let err = http
        .request_headers(get(&[("x-go", "panic")]), true)
        .expect_err("a panic fails the stream");
    assert!(err.fault().is_some(), "{err}");
    let logs = filter.log_messages();
    assert!(filter.logged(LogLevel::Error, "panic: boom"), "{logs:?}");
    assert!(!logs.iter().any(|m| m.contains("fatal error")), "{logs:?}");
    // A fresh instance serves the next request.
    let mut http = filter.http_stream()?;
    assert_eq!(http.request_headers(get(&[]), true)?, Action::Continue);
    Ok(())
}

#[test]
fn a_go_panic_is_a_fault_of_its_stream_in_the_runtime() -> TestResult {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let plugin = runtime.load(PluginSpec::new("go", WasmSource::File(wat("go_runtime"))))?;
    let mut vm = plugin.instantiate()?;
    let mut stream = Stream::new();
    stream.request_headers.add("x-go", "panic");
    vm.create_stream(&mut stream)?;
    let fault = vm
        .on_request_headers(&mut stream, true)
        .expect_err("proc_exit(2) ends the instance");
    assert!(!matches!(fault.kind, FaultKind::Broken), "{fault}");
    assert!(vm.is_broken());
    Ok(())
}
