//! Lifecycle, load validation and fault classification, with small WAT modules.

use std::time::Duration;

use crate::test_util::{load, raw_spec, spec};
use crate::{Action, FaultKind, HttpCallResponse, LoadError, Stream};

fn headers_body(result: &str) -> String {
    format!(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) {result})"#
    )
}

fn fault_of(
    name: &str,
    imports: &str,
    body: &str,
    tweak: impl FnOnce(&mut crate::PluginSpec),
) -> FaultKind {
    let mut sp = spec(name, imports, body);
    tweak(&mut sp);
    let plugin = load(sp).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    let mut s = Stream::default();
    vm.create_stream(&mut s).unwrap();
    let kind = vm.on_request_headers(&mut s, false).unwrap_err().kind;
    assert!(vm.is_broken());
    // A fresh instance of the same plugin works.
    let mut fresh = plugin.instantiate().unwrap();
    assert!(!fresh.is_broken());
    let mut s = Stream::default();
    fresh.create_stream(&mut s).unwrap();
    kind
}

#[test]
fn actions_are_decoded() {
    let plugin = load(spec("pause", "", &headers_body("(i32.const 1)"))).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    let mut s = Stream::default();
    vm.create_stream(&mut s).unwrap();
    assert_eq!(s.context_id, 2);
    assert_eq!(vm.on_request_headers(&mut s, true).unwrap(), Action::Pause);
    // Callbacks the module does not export are Continue / no-ops.
    assert_eq!(
        vm.on_response_headers(&mut s, true).unwrap(),
        Action::Continue
    );
    vm.on_log(&mut s).unwrap();
    vm.finish_stream(&mut s).unwrap();
}

#[test]
fn invalid_action_faults() {
    let kind = fault_of("bad-action", "", &headers_body("(i32.const 7)"), |_| {});
    assert_eq!(kind, FaultKind::InvalidAction(7));
}

#[test]
fn trap_faults_with_function_name() {
    let body = r#"(func $boom (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) unreachable)"#;
    match fault_of("trap", "", body, |_| {}) {
        FaultKind::Trap(msg) => assert!(msg.contains("unreachable"), "{msg}"),
        other => panic!("expected trap, got {other:?}"),
    }
}

#[test]
fn endless_loop_hits_the_deadline() {
    let body = headers_body("(loop $l (br $l)) (i32.const 0)");
    let kind = fault_of("loop", "", &body, |s| {
        s.limits.callback_deadline = Duration::from_millis(20)
    });
    assert_eq!(kind, FaultKind::Deadline);
}

#[test]
fn deep_recursion_is_a_stack_overflow() {
    let body = r#"(func $r (param i32) (result i32) (call $r (i32.add (local.get 0) (i32.const 1))))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $r (i32.const 0)))"#;
    assert_eq!(
        fault_of("recurse", "", body, |_| {}),
        FaultKind::StackOverflow
    );
}

#[test]
fn memory_bomb_is_out_of_memory() {
    // Grow until refused, then trap like a Rust allocation failure does.
    let body = headers_body(
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
    );
    let kind = fault_of("bomb", "", &body, |s| s.limits.memory_bytes = 4 << 20);
    assert_eq!(kind, FaultKind::OutOfMemory);
}

#[test]
fn load_errors_name_module_and_reason() {
    let no_memory = raw_spec(
        "nomem",
        r#"(module (func (export "proxy_abi_version_0_2_1"))
             (func (export "malloc") (param i32) (result i32) (i32.const 0)))"#,
    );
    let e = load(no_memory).unwrap_err();
    assert!(matches!(e, LoadError::MissingMemory { .. }), "{e}");
    assert!(e.to_string().contains("nomem.wat"), "{e}");

    let no_abi = raw_spec(
        "noabi",
        r#"(module (memory (export "memory") 1)
             (func (export "proxy_abi_version_0_1_0"))
             (func (export "malloc") (param i32) (result i32) (i32.const 0)))"#,
    );
    let e = load(no_abi).unwrap_err();
    assert!(matches!(e, LoadError::UnsupportedAbi { .. }), "{e}");
    assert!(e.to_string().contains("proxy_abi_version_0_1_0"), "{e}");

    let no_alloc = raw_spec(
        "noalloc",
        r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_0")))"#,
    );
    assert!(matches!(
        load(no_alloc).unwrap_err(),
        LoadError::MissingAllocator { .. }
    ));

    let init_trap = spec(
        "inittrap",
        "",
        r#"(func (export "_initialize") unreachable)"#,
    );
    let e = load(init_trap).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::Start {
                callback: "_initialize",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("inittrap"), "{e}");

    let refuse = spec(
        "refuse",
        r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))"#,
        r#"(data (i32.const 100) "bad key: x")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (drop (call $log (i32.const 4) (i32.const 100) (i32.const 10)))
          (i32.const 0))"#,
    );
    let e = load(refuse).unwrap_err();
    assert!(matches!(e, LoadError::ConfigureFailed { .. }), "{e}");
    // The guest's own reason is in the error.
    assert!(
        e.to_string()
            .ends_with(r#"the filter logged: "bad key: x""#),
        "{e}"
    );

    let vm_start = spec(
        "vmstart",
        "",
        r#"(func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 0))"#,
    );
    assert!(matches!(
        load(vm_start).unwrap_err(),
        LoadError::VmStartFailed { .. }
    ));

    let unknown_import = spec(
        "import",
        r#"(import "env" "proxy_no_such_call" (func (param i32) (result i32)))"#,
        "",
    );
    let e = load(unknown_import).unwrap_err();
    assert!(matches!(e, LoadError::Link { .. }), "{e}");
    assert!(e.to_string().contains("proxy_no_such_call"), "{e}");

    // A wasm start function calling the host before the instance exists: refused, no panic.
    let start_fn = spec(
        "startfn",
        r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))"#,
        r#"(func $s (drop (call $log (i32.const 2) (i32.const 0) (i32.const 1)))) (start $s)"#,
    );
    let e = load(start_fn).unwrap_err();
    assert!(matches!(e, LoadError::Instantiate { .. }), "{e}");

    let bad = raw_spec("garbage", "not wasm at all (");
    assert!(matches!(load(bad).unwrap_err(), LoadError::Compile { .. }));
}

#[test]
fn configuration_sizes_reach_the_guest() {
    // on_configure returns true only when it was told the config is 5 bytes long.
    let body = r#"(func (export "proxy_on_configure") (param i32 i32) (result i32)
        (i32.eq (local.get 1) (i32.const 5)))"#;
    let mut sp = spec("cfg", "", body);
    sp.plugin_config = b"hello".to_vec();
    load(sp).unwrap();
    let mut sp = spec("cfg", "", body);
    sp.plugin_config = b"nope".to_vec();
    assert!(matches!(
        load(sp).unwrap_err(),
        LoadError::ConfigureFailed { .. }
    ));
}

#[test]
fn http_calls_are_queued_and_answered_later() {
    // Dispatch a call to "auth" with the headers at 300 (serialized below), pause; the
    // response callback resumes the request.
    let imports = r#"
      (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
      (import "env" "proxy_set_effective_context" (func $eff (param i32) (result i32)))
      (import "env" "proxy_get_buffer_bytes" (func $buf (param i32 i32 i32 i32 i32) (result i32)))"#;
    let headers = serialized(&[
        (":authority", "auth"),
        (":method", "GET"),
        (":path", "/check"),
    ]);
    let body = format!(
        r#"(data (i32.const 100) "auth")
      (data (i32.const 110) "nope")
      (data (i32.const 300) "{data}")
      (global $ctx (mut i32) (i32.const 0))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (global.set $ctx (local.get 0))
        ;; unknown upstream: BAD_ARGUMENT (2)
        (if (i32.ne (call $call (i32.const 110) (i32.const 4) (i32.const 300) (i32.const {hlen})
              (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 500) (i32.const 200))
              (i32.const 2)) (then unreachable))
        (if (call $call (i32.const 100) (i32.const 4) (i32.const 300) (i32.const {hlen})
              (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 500) (i32.const 200))
          (then unreachable))
        (i32.const 1))
      (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
        (if (call $eff (global.get $ctx)) (then unreachable))
        ;; body size 2, readable as HTTP_CALL_RESPONSE_BODY (4)
        (if (i32.ne (local.get 3) (i32.const 2)) (then unreachable))
        (if (call $buf (i32.const 4) (i32.const 0) (i32.const 100) (i32.const 400) (i32.const 404)) (then unreachable))
        (if (i32.ne (i32.load (i32.const 404)) (i32.const 2)) (then unreachable))
        (drop (call $continue (i32.const 0))))"#,
        data = wat_bytes(&headers),
        hlen = headers.len()
    );
    let mut sp = spec("call", imports, &body);
    sp.upstreams = vec!["auth".into()];
    let plugin = load(sp).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    let mut s = Stream::default();
    vm.create_stream(&mut s).unwrap();
    assert_eq!(vm.on_request_headers(&mut s, true).unwrap(), Action::Pause);
    let calls = vm.take_http_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.upstream, "auth");
    assert_eq!(call.context_id, s.context_id);
    assert_eq!(call.headers.get(":path"), Some(&b"/check"[..]));
    assert_eq!(call.timeout, Duration::from_millis(500));
    assert!(vm.take_http_calls().is_empty());
    assert!(!s.resume_request);
    let mut resp = HttpCallResponse::default();
    resp.headers.add(":status", "200");
    resp.body = b"ok".to_vec();
    vm.on_http_call_response(Some(&mut s), call.token, Some(resp))
        .unwrap();
    assert!(s.resume_request);
}

fn serialized(pairs: &[(&str, &str)]) -> Vec<u8> {
    let map: crate::HeaderMap = pairs.iter().map(|(k, v)| (*k, *v)).collect();
    let mut out = Vec::new();
    map.serialize_into(&mut out);
    out
}

fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

#[test]
fn guest_logs_and_stdout_are_captured() {
    let imports = r#"
      (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))"#;
    let body = r#"(data (i32.const 100) "hello from guest")
      (data (i32.const 200) "printed\n")
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $log (i32.const 3) (i32.const 100) (i32.const 16)))
        (i32.store (i32.const 300) (i32.const 200))
        (i32.store (i32.const 304) (i32.const 8))
        (if (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 308)) (then unreachable))
        (if (i32.ne (i32.load (i32.const 308)) (i32.const 8)) (then unreachable))
        (i32.const 0))"#;
    let plugin = load(spec("logs", imports, body)).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    vm.set_log_capture(true);
    let mut s = Stream::default();
    vm.create_stream(&mut s).unwrap();
    vm.on_request_headers(&mut s, true).unwrap();
    let logs = vm.take_logs();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(logs[0].level, crate::LogLevel::Warn);
    assert_eq!(logs[0].message, "hello from guest");
    assert_eq!(logs[1].level, crate::LogLevel::Info);
    assert_eq!(logs[1].message, "printed");
}

#[test]
fn start_up_logs_are_captured_on_request() {
    let plugin = load(spec(
        "startlog",
        r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))"#,
        r#"(data (i32.const 100) "configured")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (drop (call $log (i32.const 2) (i32.const 100) (i32.const 10)))
          (i32.const 1))"#,
    ))
    .unwrap();
    let mut vm = plugin.instantiate_capturing().unwrap();
    let logs = vm.take_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].message, "configured");
    assert!(plugin.instantiate().unwrap().take_logs().is_empty());
}

/// A module whose `on_log`, `on_done` and `on_delete` each log their name and context id
/// (one digit), `on_done` answering `done`; `trap_in` names one that traps after logging.
fn ending_module(name: &str, done: i32, trap_in: &str) -> crate::Plugin {
    let imports = r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))"#;
    let callback = |export: &str, text: &str, at: u32, result: &str| {
        let sig = if result.is_empty() {
            ""
        } else {
            "(result i32)"
        };
        let trap = if export == trap_in { "unreachable" } else { "" };
        format!(
            r#"(data (i32.const {at}) "{text} ?")
            (func (export "{export}") (param $ctx i32) {sig}
              (i32.store8 (i32.const {digit}) (i32.add (i32.const 48) (local.get $ctx)))
              (drop (call $log (i32.const 2) (i32.const {at}) (i32.const {len})))
              {trap} {result})"#,
            digit = at as usize + text.len() + 1,
            len = text.len() + 2,
        )
    };
    let body = [
        callback("proxy_on_log", "log", 100, ""),
        callback("proxy_on_done", "done", 200, &format!("(i32.const {done})")),
        callback("proxy_on_delete", "delete", 300, ""),
    ]
    .concat();
    load(spec(name, imports, &body)).unwrap()
}

fn messages(vm: &mut crate::Vm) -> Vec<String> {
    vm.take_logs().into_iter().map(|r| r.message).collect()
}

#[test]
fn end_stream_runs_log_done_delete_in_order() {
    let plugin = ending_module("ending", 1, "");
    let mut vm = plugin.instantiate().unwrap();
    vm.set_log_capture(true);
    for _ in 0..2 {
        let mut s = Stream::default();
        vm.create_stream(&mut s).unwrap();
        let ctx = s.context_id;
        vm.end_stream(&mut s).unwrap();
        assert_eq!(
            messages(&mut vm),
            [
                format!("log {ctx}"),
                format!("done {ctx}"),
                format!("delete {ctx}")
            ]
        );
    }
    // `false` from on_done (the filter would finish later) still deletes, as
    // finish_stream does.
    let plugin = ending_module("ending-later", 0, "");
    let mut vm = plugin.instantiate().unwrap();
    vm.set_log_capture(true);
    let mut s = Stream::default();
    vm.create_stream(&mut s).unwrap();
    vm.end_stream(&mut s).unwrap();
    assert_eq!(messages(&mut vm), ["log 2", "done 2", "delete 2"]);
}

#[test]
fn end_stream_faults_name_the_callback_that_failed() {
    for (trap_in, ran) in [
        ("proxy_on_log", 1),
        ("proxy_on_done", 2),
        ("proxy_on_delete", 3),
    ] {
        let plugin = ending_module(trap_in, 1, trap_in);
        let mut vm = plugin.instantiate().unwrap();
        vm.set_log_capture(true);
        let mut s = Stream::default();
        vm.create_stream(&mut s).unwrap();
        let fault = vm.end_stream(&mut s).unwrap_err();
        assert_eq!(fault.callback, trap_in);
        assert!(matches!(fault.kind, FaultKind::Trap(_)), "{fault}");
        assert!(vm.is_broken());
        assert_eq!(messages(&mut vm).len(), ran, "{trap_in}");
        // The stream is back with its owner, and a broken Vm refuses further calls.
        assert_eq!(vm.end_stream(&mut s).unwrap_err().kind, FaultKind::Broken);
    }
    // on_done answering something that is not a bool: no on_delete, and the fault says so.
    let plugin = ending_module("done-7", 7, "");
    let mut vm = plugin.instantiate().unwrap();
    vm.set_log_capture(true);
    let mut s = Stream::default();
    vm.create_stream(&mut s).unwrap();
    let fault = vm.end_stream(&mut s).unwrap_err();
    assert_eq!(
        (fault.callback, fault.kind),
        ("proxy_on_done", FaultKind::InvalidStatus)
    );
    assert_eq!(messages(&mut vm), ["log 2", "done 2"]);
}

#[test]
fn end_stream_without_all_three_exports_calls_what_exists() {
    let imports = r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))"#;
    let body = r#"(data (i32.const 100) "log only")
      (func (export "proxy_on_log") (param i32)
        (drop (call $log (i32.const 2) (i32.const 100) (i32.const 8))))"#;
    let plugin = load(spec("log-only", imports, body)).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    vm.set_log_capture(true);
    let mut s = Stream::default();
    vm.create_stream(&mut s).unwrap();
    vm.end_stream(&mut s).unwrap();
    assert_eq!(messages(&mut vm), ["log only"]);
}
