//! Host functions end to end, with small WAT guests: each guest traps (`unreachable`) when a
//! call returns a status other than the one the test expects, and reports values back through
//! header maps or properties.

use crate::test_util::{load, spec};
use crate::{LogLevel, MetricKind, Stream};

const IMPORTS: &str = r#"
  (import "env" "proxy_get_property" (func $get_prop (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $set_prop (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_sd (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_sd (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $incr (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
  (import "env" "proxy_get_metric" (func $get_metric (param i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buf (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set_buf (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_log_level" (func $log_level (param i32) (result i32)))
  (import "env" "proxy_call_foreign_function" (func $foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_call" (func $grpc (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
"#;

/// Traps unless `call` returned `status`.
fn expect(status: u32, call: &str) -> String {
    format!("(if (i32.ne {call} (i32.const {status})) (then unreachable))")
}

#[test]
fn properties_are_read_derived_and_set() {
    let body = format!(
        r#"(data (i32.const 100) "plugin_name")
      (data (i32.const 120) "request\00path")
      (data (i32.const 140) "my\00prop")
      (data (i32.const 160) "no\00such")
      (data (i32.const 180) "x-name")
      (data (i32.const 190) "x-path")
      (data (i32.const 200) "value!")
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        {plugin}
        (drop (call $replace (i32.const 0) (i32.const 180) (i32.const 6) (i32.load (i32.const 300)) (i32.load (i32.const 304))))
        {path}
        (drop (call $replace (i32.const 0) (i32.const 190) (i32.const 6) (i32.load (i32.const 300)) (i32.load (i32.const 304))))
        {missing}
        {set}
        {get_set}
        (if (i32.ne (i32.load (i32.const 304)) (i32.const 6)) (then unreachable))
        (i32.const 0))"#,
        plugin = expect(
            0,
            "(call $get_prop (i32.const 100) (i32.const 11) (i32.const 300) (i32.const 304))"
        ),
        path = expect(
            0,
            "(call $get_prop (i32.const 120) (i32.const 12) (i32.const 300) (i32.const 304))"
        ),
        missing = expect(
            1,
            "(call $get_prop (i32.const 160) (i32.const 7) (i32.const 300) (i32.const 304))"
        ),
        set = expect(
            0,
            "(call $set_prop (i32.const 140) (i32.const 7) (i32.const 200) (i32.const 6))"
        ),
        get_set = expect(
            0,
            "(call $get_prop (i32.const 140) (i32.const 7) (i32.const 300) (i32.const 304))"
        ),
    );
    let plugin = load(spec("props", IMPORTS, &body)).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    let mut s = Stream::default();
    s.request_headers.add(":path", "/a?b");
    vm.create_stream(&mut s).unwrap();
    vm.on_request_headers(&mut s, true).unwrap();
    assert!(!s.body_changed, "no body was set");
    assert_eq!(s.request_headers.get("x-name"), Some(&b"props"[..]));
    assert_eq!(s.request_headers.get("x-path"), Some(&b"/a?b"[..]));
    assert_eq!(
        s.properties.get("my.prop").map(Vec::as_slice),
        Some(&b"value!"[..])
    );
}

#[test]
fn shared_property_layers_are_read_after_the_streams_own() {
    let body = format!(
        r#"(data (i32.const 100) "a")
      (data (i32.const 110) "b")
      (data (i32.const 180) "x-a")
      (data (i32.const 190) "x-b")
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        {get_a}
        (drop (call $replace (i32.const 0) (i32.const 180) (i32.const 3) (i32.load (i32.const 300)) (i32.load (i32.const 304))))
        {get_b}
        (drop (call $replace (i32.const 0) (i32.const 190) (i32.const 3) (i32.load (i32.const 300)) (i32.load (i32.const 304))))
        (i32.const 0))"#,
        get_a = expect(
            0,
            "(call $get_prop (i32.const 100) (i32.const 1) (i32.const 300) (i32.const 304))"
        ),
        get_b = expect(
            0,
            "(call $get_prop (i32.const 110) (i32.const 1) (i32.const 300) (i32.const 304))"
        ),
    );
    let plugin = load(spec("layers", IMPORTS, &body)).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    let mut s = Stream::default();
    let conn = [("a", "from-conn"), ("b", "from-conn")];
    s.shared.push(std::sync::Arc::new(
        conn.into_iter().collect::<crate::Properties>(),
    ));
    s.shared.push(std::sync::Arc::new(
        [("b", "from-route")]
            .into_iter()
            .collect::<crate::Properties>(),
    ));
    s.properties.insert("b", "own");
    vm.create_stream(&mut s).unwrap();
    vm.on_request_headers(&mut s, true).unwrap();
    assert_eq!(s.request_headers.get("x-a"), Some(&b"from-conn"[..]));
    assert_eq!(s.request_headers.get("x-b"), Some(&b"own"[..]));
    s.clear();
    assert!(s.shared.is_empty() && s.properties.is_empty());
}

#[test]
fn shared_data_compare_and_swap() {
    let body = format!(
        r#"(data (i32.const 100) "key")
      (data (i32.const 110) "v1")
      (data (i32.const 120) "v2")
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        {missing}
        {set1}
        {get}
        (if (i32.ne (i32.load (i32.const 308)) (i32.const 1)) (then unreachable))
        {stale}
        {set2}
        (i32.const 0))"#,
        missing = expect(
            1,
            "(call $get_sd (i32.const 100) (i32.const 3) (i32.const 300) (i32.const 304) (i32.const 308))"
        ),
        set1 = expect(
            0,
            "(call $set_sd (i32.const 100) (i32.const 3) (i32.const 110) (i32.const 2) (i32.const 0))"
        ),
        get = expect(
            0,
            "(call $get_sd (i32.const 100) (i32.const 3) (i32.const 300) (i32.const 304) (i32.const 308))"
        ),
        stale = expect(
            8,
            "(call $set_sd (i32.const 100) (i32.const 3) (i32.const 120) (i32.const 2) (i32.const 99))"
        ),
        set2 = expect(
            0,
            "(call $set_sd (i32.const 100) (i32.const 3) (i32.const 120) (i32.const 2) (i32.const 1))"
        ),
    );
    let mut sp = spec("shared", IMPORTS, &body);
    sp.vm_id = "shared-test-vm".into();
    let plugin = load(sp).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    let mut s = Stream::default();
    vm.create_stream(&mut s).unwrap();
    vm.on_request_headers(&mut s, true).unwrap();
    let runtime = plugin.runtime();
    assert_eq!(
        runtime.shared_data("shared-test-vm", "key"),
        Some((b"v2".to_vec(), 2))
    );
    assert_eq!(runtime.shared_data("other-vm", "key"), None);
}

#[test]
fn queues_notify_the_registering_vm() {
    let body = format!(
        r#"(data (i32.const 100) "jobs")
      (data (i32.const 110) "item")
      (data (i32.const 120) "got")
      (global $q (mut i32) (i32.const 0))
      (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
        {register}
        (global.set $q (i32.load (i32.const 400)))
        (i32.const 1))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        {enqueue}
        {unknown}
        (i32.const 0))
      (func (export "proxy_on_queue_ready") (param i32 i32)
        (if (i32.ne (local.get 1) (global.get $q)) (then unreachable))
        {dequeue}
        (drop (call $set_prop (i32.const 120) (i32.const 3) (i32.load (i32.const 300)) (i32.load (i32.const 304))))
        {empty})"#,
        register = expect(
            0,
            "(call $register (i32.const 100) (i32.const 4) (i32.const 400))"
        ),
        enqueue = expect(
            0,
            "(call $enqueue (global.get $q) (i32.const 110) (i32.const 4))"
        ),
        unknown = expect(
            1,
            "(call $enqueue (i32.const 9999) (i32.const 110) (i32.const 4))"
        ),
        dequeue = expect(
            0,
            "(call $dequeue (local.get 1) (i32.const 300) (i32.const 304))"
        ),
        empty = expect(
            7,
            "(call $dequeue (local.get 1) (i32.const 300) (i32.const 304))"
        ),
    );
    let mut sp = spec("queues", IMPORTS, &body);
    sp.vm_id = "queue-test-vm".into();
    let plugin = load(sp).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    let mut s = Stream::default();
    vm.create_stream(&mut s).unwrap();
    vm.on_request_headers(&mut s, true).unwrap();
    assert_eq!(
        vm.root_property("got"),
        None,
        "delivered only when the embedder asks"
    );
    vm.dispatch_queue_ready().unwrap();
    assert_eq!(vm.root_property("got"), Some(&b"item"[..]));
}

#[test]
fn metrics_count_and_refuse_wrong_kinds() {
    let body = format!(
        r#"(data (i32.const 100) "hits")
      (data (i32.const 110) "sizes")
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        {define_c}
        {define_h}
        {incr}
        {incr}
        {negative}
        {get}
        ;; at least this Vm's 10 (other Vms of the plugin add to the same counter)
        (if (i64.lt_u (i64.load (i32.const 320)) (i64.const 10)) (then unreachable))
        {rec3}
        {rec4}
        {incr_h}
        {get_h}
        {unknown}
        (i32.const 0))"#,
        define_c = expect(
            0,
            "(call $define (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 300))"
        ),
        define_h = expect(
            0,
            "(call $define (i32.const 2) (i32.const 110) (i32.const 5) (i32.const 304))"
        ),
        incr = expect(0, "(call $incr (i32.load (i32.const 300)) (i64.const 5))"),
        negative = expect(2, "(call $incr (i32.load (i32.const 300)) (i64.const -1))"),
        get = expect(
            0,
            "(call $get_metric (i32.load (i32.const 300)) (i32.const 320))"
        ),
        rec3 = expect(0, "(call $record (i32.load (i32.const 304)) (i64.const 3))"),
        rec4 = expect(0, "(call $record (i32.load (i32.const 304)) (i64.const 4))"),
        incr_h = expect(2, "(call $incr (i32.load (i32.const 304)) (i64.const 1))"),
        get_h = expect(
            2,
            "(call $get_metric (i32.load (i32.const 304)) (i32.const 320))"
        ),
        unknown = expect(1, "(call $incr (i32.const 777) (i64.const 1))"),
    );
    let plugin = load(spec("metrics", IMPORTS, &body)).unwrap();
    // Two Vms of the plugin share the metrics.
    for _ in 0..2 {
        let mut vm = plugin.instantiate().unwrap();
        let mut s = Stream::default();
        vm.create_stream(&mut s).unwrap();
        vm.on_request_headers(&mut s, true)
            .unwrap_or_else(|f| panic!("{f}"));
    }
    let mut metrics = plugin.metrics();
    metrics.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(metrics.len(), 2);
    assert_eq!(metrics[0].name, "hits");
    assert!(matches!(metrics[0].kind, MetricKind::Counter));
    assert_eq!(metrics[0].value, 20);
    assert_eq!(metrics[1].name, "sizes");
    assert!(matches!(metrics[1].kind, MetricKind::Histogram));
    assert_eq!((metrics[1].value, metrics[1].count), (14, 4));
}

#[test]
fn local_response_body_buffers_and_unimplemented_calls() {
    let body = format!(
        r#"(data (i32.const 100) "denied")
      (data (i32.const 110) "no entry")
      (data (i32.const 120) "pre-")
      (data (i32.const 130) "-post")
      (data (i32.const 140) "fn")
      (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
        {get}
        (if (i32.ne (i32.load (i32.const 304)) (local.get 1)) (then unreachable))
        {prepend}
        {append}
        {past_end}
        {foreign}
        {grpc}
        {local}
        (i32.const 1))"#,
        get = expect(
            0,
            "(call $get_buf (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 300) (i32.const 304))"
        ),
        prepend = expect(
            0,
            "(call $set_buf (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 120) (i32.const 4))"
        ),
        append = expect(
            0,
            "(call $set_buf (i32.const 0) (i32.const 1000) (i32.const 0) (i32.const 130) (i32.const 5))"
        ),
        past_end = expect(
            0,
            "(call $get_buf (i32.const 0) (i32.const 5000) (i32.const 10) (i32.const 300) (i32.const 304))"
        ),
        foreign = expect(
            1,
            "(call $foreign (i32.const 140) (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 300) (i32.const 304))"
        ),
        grpc = expect(
            10,
            "(call $grpc (i32.const 140) (i32.const 2) (i32.const 140) (i32.const 2) (i32.const 140) (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 300))"
        ),
        local = expect(
            0,
            "(call $local (i32.const 403) (i32.const 100) (i32.const 6) (i32.const 110) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const -1))"
        ),
    );
    let plugin = load(spec("bodies", IMPORTS, &body)).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    let mut s = Stream {
        request_body: b"body".to_vec(),
        ..Stream::default()
    };
    vm.create_stream(&mut s).unwrap();
    assert_eq!(
        vm.on_request_body(&mut s, true).unwrap(),
        crate::Action::Pause
    );
    assert_eq!(s.request_body, b"pre-body-post");
    assert!(s.body_changed, "set_buffer_bytes marks the body changed");
    let local = s.local_response.expect("local response");
    assert_eq!(local.status, 403);
    assert_eq!(local.details, "denied");
    assert_eq!(local.body, b"no entry");
    assert_eq!(local.grpc_status, -1);
    assert!(local.headers.is_empty());
}

#[test]
fn log_level_is_configurable() {
    let body = format!(
        r#"(data (i32.const 100) "level")
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        {get}
        (drop (call $set_prop (i32.const 100) (i32.const 5) (i32.const 300) (i32.const 4)))
        (i32.const 0))"#,
        get = expect(0, "(call $log_level (i32.const 300))"),
    );
    let plugin = load(spec("level", IMPORTS, &body)).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    vm.set_log_level(Some(LogLevel::Warn));
    let mut s = Stream::default();
    vm.create_stream(&mut s).unwrap();
    vm.on_request_headers(&mut s, true).unwrap();
    assert_eq!(
        s.properties.get("level").map(Vec::as_slice),
        Some(&3u32.to_le_bytes()[..])
    );
}
