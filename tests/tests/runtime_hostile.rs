//! Hostile and broken modules on the runtime, driven through the harness.
//!
//! A filter that traps, loops forever, exhausts its memory, recurses without end, passes
//! bad pointers or lengths, has a broken allocator or returns an invalid action fails only
//! the stream (or tick) it was running, with a [`FaultKind`] saying why, well within a
//! generous bound (the per-callback deadline here is 500 ms); its instance is discarded and the
//! next stream runs on a fresh one. Another instance of the same plugin never notices. A
//! module that cannot start is refused at load with an error naming the module and reason.

use std::time::{Duration, Instant};

use wasmgate_harness::{
    Action, Error, FaultKind, Filter, Harness, LoadError, LogLevel, Runtime, RuntimeConfig,
};
use wasmgate_tests::{wasm, wat};

type TestResult = Result<(), Error>;

/// Far above the callback deadline: only a host that fails to stop the guest
/// (or a hung test) gets near it.
const TERMINATES_WITHIN: Duration = Duration::from_secs(20);

/// The callback deadline of these tests: short enough that loops end quickly, long
/// enough that a well-behaved callback on a busy machine never hits it.
const DEADLINE: Duration = Duration::from_millis(500);

/// Deadline for tests whose fault is not the deadline.
const LONG: Duration = Duration::from_secs(5);

fn hostile(config: &str) -> Result<Filter, Error> {
    hostile_with_deadline(config, DEADLINE)
}

/// The filter with a chosen deadline. Tests of faults other than the deadline use a long
/// one, so that a loaded machine cannot turn the fault under test into a deadline.
fn hostile_with_deadline(config: &str, deadline: Duration) -> Result<Filter, Error> {
    Harness::load(wasm("hostile"))?
        .plugin_config(config)
        .memory_limit(32 << 20)
        .callback_deadline(deadline)
        .start()
}

/// Runs one good request on `filter` and returns the `x-hostile-ok` counter it got.
fn good_request(filter: &Filter) -> Result<String, Error> {
    let mut http = filter.http_stream()?;
    let action = http.request_headers([(":method", "GET"), (":path", "/good")], true)?;
    assert_eq!(action, Action::Continue);
    let served = http.request_header("x-hostile-ok").map(str::to_string);
    http.finish()?;
    Ok(served.expect("x-hostile-ok set"))
}

/// A request that tells the filter to misbehave in its headers callback; returns the error.
fn bad_request(filter: &Filter, what: &str) -> Result<Error, Error> {
    let mut http = filter.http_stream()?;
    let started = Instant::now();
    let result = http.request_headers(
        [(":method", "GET"), (":path", "/bad"), ("x-hostile", what)],
        true,
    );
    assert!(
        started.elapsed() < TERMINATES_WITHIN,
        "{what}: took {:?}",
        started.elapsed()
    );
    let err = result.expect_err("the misbehaving request must fail");
    // The failed stream takes no further callbacks.
    assert!(matches!(
        http.response_headers([(":status", "200")], true),
        Err(Error::StreamGone { .. })
    ));
    Ok(err)
}

/// The full story for one kind of misbehaviour in a stream callback.
fn misbehaving_stream_fails_alone(
    what: &str,
    deadline: Duration,
    expected: fn(&FaultKind) -> bool,
) -> TestResult {
    let filter = hostile_with_deadline("", deadline)?;
    let runtime = filter.runtime();
    // A second instance of the same plugin, like another worker.
    let other = Harness::load(wasm("hostile"))?.runtime(&runtime).start()?;
    assert_eq!(good_request(&filter)?, "1");
    let mut bystander = other.http_stream()?;
    bystander.request_headers([(":method", "GET"), (":path", "/by")], false)?;

    let err = bad_request(&filter, what)?;
    let fault = err
        .fault()
        .unwrap_or_else(|| panic!("{what}: expected a fault, got {err:?}"));
    assert!(
        expected(&fault.kind),
        "{what}: unexpected fault kind {:?}",
        fault.kind
    );
    assert_eq!(fault.callback, "proxy_on_request_headers");
    assert!(
        err.to_string().contains("hostile"),
        "the error names the filter: {err}"
    );
    assert_eq!(filter.faults().len(), 1);

    // The next stream runs on a fresh instance (its request counter starts again at 1).
    assert_eq!(good_request(&filter)?, "1");
    assert_eq!(filter.instances(), 2);
    assert_eq!(good_request(&filter)?, "2");

    // The other instance never noticed: its open stream carries on.
    assert_eq!(
        bystander.response_headers([(":status", "200")], true)?,
        Action::Continue
    );
    bystander.finish()?;
    assert_eq!(other.instances(), 1);
    Ok(())
}

#[test]
fn a_trap_fails_only_its_stream() -> TestResult {
    misbehaving_stream_fails_alone("trap", LONG, |k| matches!(k, FaultKind::Trap(_)))?;
    // The SDK's panic hook logged the panic message at critical before the trap.
    let filter = hostile("")?;
    bad_request(&filter, "trap")?;
    assert!(filter.logged(
        wasmgate_harness::LogLevel::Critical,
        "hostile: trap requested"
    ));
    Ok(())
}

#[test]
fn an_endless_loop_hits_the_deadline() -> TestResult {
    misbehaving_stream_fails_alone("loop", DEADLINE, |k| matches!(k, FaultKind::Deadline))
}

#[test]
fn a_memory_bomb_runs_out_of_memory() -> TestResult {
    misbehaving_stream_fails_alone("oom", LONG, |k| matches!(k, FaultKind::OutOfMemory))
}

#[test]
fn deep_recursion_overflows_the_stack() -> TestResult {
    misbehaving_stream_fails_alone("recursion", LONG, |k| matches!(k, FaultKind::StackOverflow))
}

#[test]
fn other_streams_of_a_failed_instance_are_gone() -> TestResult {
    let filter = hostile("")?;
    let mut open = filter.http_stream()?;
    open.request_headers([(":method", "GET"), (":path", "/open")], false)?;
    bad_request(&filter, "trap")?;
    // Its instance was discarded with the failed one; the harness says so instead of
    // running callbacks for a context the fresh instance never created.
    let err = open
        .response_headers([(":status", "200")], true)
        .unwrap_err();
    assert!(matches!(err, Error::StreamGone { .. }), "{err:?}");
    Ok(())
}

#[test]
fn faults_in_later_callbacks() -> TestResult {
    for (config, phase) in [
        ("trap@response_headers", "proxy_on_response_headers"),
        ("loop@response_body", "proxy_on_response_body"),
        ("trap@log", "proxy_on_log"),
    ] {
        let filter = hostile(config)?;
        let mut http = filter.http_stream()?;
        http.request_headers([(":method", "GET"), (":path", "/")], true)?;
        let result = http
            .response_headers([(":status", "200")], false)
            .and_then(|_| http.response_body("x", true))
            .and_then(|_| http.log());
        let err = result.expect_err(config);
        assert_eq!(
            err.fault().map(|f| f.callback),
            Some(phase),
            "{config}: {err:?}"
        );
        assert_eq!(good_request(&filter)?, "1", "{config}: fresh instance");
    }
    Ok(())
}

#[test]
fn faults_when_creating_and_ending_streams() -> TestResult {
    let filter = hostile("trap@create")?;
    let err = filter.http_stream().expect_err("context creation traps");
    assert!(
        matches!(err.fault_kind(), Some(FaultKind::Trap(_))),
        "{err:?}"
    );

    let filter = hostile("trap@done")?;
    for _ in 0..2 {
        // Every stream ends in a trap, each on a fresh instance.
        let mut http = filter.http_stream()?;
        http.request_headers([(":method", "GET"), (":path", "/")], true)?;
        assert_eq!(http.request_header("x-hostile-ok"), Some("1"));
        let err = http.finish().expect_err("on_done traps");
        assert!(
            matches!(err.fault_kind(), Some(FaultKind::Trap(_))),
            "{err:?}"
        );
        assert_eq!(err.fault().map(|f| f.callback), Some("proxy_on_done"));
    }
    assert_eq!(filter.instances(), 2);
    Ok(())
}

#[test]
fn a_looping_tick_fails_the_tick_only() -> TestResult {
    let filter = hostile("loop@tick")?;
    let started = Instant::now();
    let err = filter
        .advance_time(Duration::from_millis(10))
        .expect_err("on_tick loops");
    assert!(started.elapsed() < TERMINATES_WITHIN);
    assert!(
        matches!(err.fault_kind(), Some(FaultKind::Deadline)),
        "{err:?}"
    );
    // Streams still work, on a fresh instance.
    assert_eq!(good_request(&filter)?, "1");
    assert_eq!(filter.instances(), 2);
    // The fresh instance set its own timer, and its tick fails the same way.
    let err = filter
        .advance_time(Duration::from_millis(10))
        .expect_err("on_tick loops again");
    assert!(
        matches!(err.fault_kind(), Some(FaultKind::Deadline)),
        "{err:?}"
    );
    assert_eq!(filter.faults().len(), 2);
    Ok(())
}

// === hand-written modules (tests/fixtures/wat) ===

fn start_wat(name: &str) -> Result<Filter, Error> {
    Harness::load(wat(name))?.start()
}

/// Drives request headers into a WAT module and returns the fault; then checks that the
/// next stream gets a fresh instance that works (its response callback returns Continue).
fn wat_stream_fault(name: &str) -> Result<FaultKind, Error> {
    let filter = start_wat(name)?;
    let mut http = filter.http_stream()?;
    let started = Instant::now();
    let err = http
        .request_headers([(":method", "GET"), (":path", "/")], true)
        .expect_err("the hostile callback must fail");
    assert!(started.elapsed() < TERMINATES_WITHIN);
    let fault = err
        .fault()
        .unwrap_or_else(|| panic!("{name}: expected a fault, got {err:?}"));
    assert!(
        err.to_string().contains(name),
        "{name}: error names the module: {err}"
    );

    let mut next = filter.http_stream()?;
    assert_eq!(filter.instances(), 2);
    assert_eq!(
        next.response_headers([(":status", "200")], true)?,
        Action::Continue
    );
    next.finish()?;
    Ok(fault.kind.clone())
}

#[test]
fn out_of_bounds_pointer_passed_to_a_hostcall() -> TestResult {
    let kind = wat_stream_fault("oob_pointer")?;
    assert!(
        matches!(kind, FaultKind::InvalidMemoryAccess(_)),
        "{kind:?}"
    );
    Ok(())
}

#[test]
fn out_of_bounds_length_passed_to_a_hostcall() -> TestResult {
    let kind = wat_stream_fault("oob_length")?;
    assert!(
        matches!(
            kind,
            FaultKind::InvalidMemoryAccess(_) | FaultKind::LimitExceeded(_)
        ),
        "{kind:?}"
    );
    Ok(())
}

#[test]
fn out_of_bounds_result_pointer() -> TestResult {
    let kind = wat_stream_fault("oob_return")?;
    assert!(
        matches!(kind, FaultKind::InvalidMemoryAccess(_)),
        "{kind:?}"
    );
    Ok(())
}

#[test]
fn broken_allocator() -> TestResult {
    let kind = wat_stream_fault("broken_allocator")?;
    assert!(matches!(kind, FaultKind::Allocator(_)), "{kind:?}");
    Ok(())
}

#[test]
fn invalid_action_code() -> TestResult {
    let kind = wat_stream_fault("invalid_action")?;
    assert_eq!(kind, FaultKind::InvalidAction(7));
    Ok(())
}

#[test]
fn valid_wat_modules_for_abi_0_2_1_and_0_2_0_run() -> TestResult {
    for name in ["minimal", "abi_0_2_0"] {
        let filter = start_wat(name)?;
        let mut http = filter.http_stream()?;
        assert_eq!(
            http.request_headers([(":method", "GET"), (":path", "/")], true)?,
            Action::Continue
        );
        assert_eq!(http.request_header("x-wat"), Some("minimal"), "{name}");
        http.response_headers([(":status", "200")], true)?;
        http.log()?;
        http.finish()?;
    }
    Ok(())
}

// === modules that cannot start ===

/// Asserts that the module is refused at load, with an error naming it and `reason`.
fn refused(harness: Harness, module: &str, reason: &str, expected: fn(&LoadError) -> bool) {
    let err = match harness.start() {
        Ok(_) => panic!("{module}: loaded, but must be refused"),
        Err(err) => err,
    };
    let load = err
        .load_error()
        .unwrap_or_else(|| panic!("{module}: expected a load error, got {err:?}"));
    assert!(expected(load), "{module}: unexpected load error {load:?}");
    let message = err.to_string();
    assert!(
        message.contains(module),
        "{module}: error does not name the module: {message}"
    );
    assert!(
        message.contains(reason),
        "{module}: error does not say {reason:?}: {message}"
    );
}

#[test]
fn modules_that_cannot_start_are_refused_at_load() -> TestResult {
    refused(
        Harness::load(wat("no_memory"))?,
        "no_memory",
        "memory",
        |e| matches!(e, LoadError::MissingMemory { .. }),
    );
    refused(
        Harness::load(wat("init_trap"))?,
        "init_trap",
        "_initialize",
        |e| {
            matches!(
                e,
                LoadError::Start {
                    callback: "_initialize",
                    ..
                }
            )
        },
    );
    refused(
        Harness::load(wat("no_abi_marker"))?,
        "no_abi_marker",
        "ABI",
        |e| matches!(e, LoadError::UnsupportedAbi { .. }),
    );
    refused(
        Harness::load(wat("abi_0_1_0"))?,
        "abi_0_1_0",
        "proxy_abi_version_0_1_0",
        |e| matches!(e, LoadError::UnsupportedAbi { .. }),
    );
    Ok(())
}

#[test]
fn filters_that_refuse_to_start_are_refused_at_load() -> TestResult {
    let with = |plugin: &str, vm: &str| -> Result<Harness, Error> {
        Ok(Harness::load(wasm("hostile"))?
            .plugin_config(plugin)
            .vm_config(vm)
            .callback_deadline(DEADLINE))
    };
    refused(
        with("false@configure", "")?,
        "hostile",
        "on_configure",
        |e| matches!(e, LoadError::ConfigureFailed { .. }),
    );
    refused(with("", "false@vm_start")?, "hostile", "on_vm_start", |e| {
        matches!(e, LoadError::VmStartFailed { .. })
    });
    refused(
        with("trap@configure", "")?,
        "hostile",
        "proxy_on_configure",
        |e| {
            matches!(
                e,
                LoadError::Start {
                    kind: FaultKind::Trap(_),
                    ..
                }
            )
        },
    );
    // The SDK logs a panic at critical before trapping: the error quotes it, so the
    // operator sees the filter's own reason, and carries everything logged while starting.
    let err = with("trap@configure", "")?
        .start()
        .expect_err("trap@configure must be refused");
    assert!(err.to_string().contains("hostile: trap requested"), "{err}");
    assert!(
        err.startup_logs()
            .iter()
            .any(|r| r.level == LogLevel::Critical && r.message.contains("trap requested")),
        "{:?}",
        err.startup_logs()
    );
    let started = Instant::now();
    refused(
        with("loop@configure", "")?,
        "hostile",
        "proxy_on_configure",
        |e| {
            matches!(
                e,
                LoadError::Start {
                    kind: FaultKind::Deadline,
                    ..
                }
            )
        },
    );
    assert!(started.elapsed() < TERMINATES_WITHIN);
    Ok(())
}

#[test]
fn unreadable_and_invalid_modules_are_refused() -> TestResult {
    let missing = Harness::load("/nonexistent/filter.wasm").unwrap_err();
    assert!(matches!(missing, Error::Read { .. }));
    assert!(missing.to_string().contains("/nonexistent/filter.wasm"));

    refused(
        Harness::from_bytes("garbage", b"\0asm not really".to_vec()),
        "garbage",
        "not a valid wasm",
        |e| matches!(e, LoadError::Compile { .. }),
    );
    Ok(())
}

#[test]
fn one_runtime_hosts_many_plugins() -> TestResult {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let good = Harness::load(wasm("hostile"))?.runtime(&runtime).start()?;
    let bad = Harness::load(wat("invalid_action"))?
        .runtime(&runtime)
        .start()?;
    let mut http = bad.http_stream()?;
    assert!(http.request_headers([(":path", "/")], true).is_err());
    assert_eq!(good_request(&good)?, "1");
    Ok(())
}
