//! Stream operations addressed to another context, from a stream callback: the lent stream
//! is left alone and the embedder gets a signal for the other one.

use crate::Stream;
use crate::signal::StreamOp;
use crate::test_util::{load, spec};

const IMPORTS: &str = r#"
  (import "env" "proxy_set_effective_context" (func $eff (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
"#;

/// on_request_headers of a stream whose `:path` is absent resumes and answers context 2 (the
/// first stream), each call expected OK; context 2 itself just pauses.
const BODY: &str = r#"
  (data (i32.const 100) "\00\00\00\00")
  (data (i32.const 110) "from another stream")
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (if (i32.eq (local.get $ctx) (i32.const 2)) (then (return (i32.const 1))))
    (if (call $eff (i32.const 2)) (then unreachable))
    (if (call $continue (i32.const 0)) (then unreachable))
    (if (call $local (i32.const 202) (i32.const 0) (i32.const 0) (i32.const 110) (i32.const 19)
          (i32.const 100) (i32.const 4) (i32.const -1))
      (then unreachable))
    (i32.const 0))
"#;

#[test]
fn a_stream_callback_can_resume_and_answer_another_stream() {
    let plugin = load(spec("signals", IMPORTS, BODY)).expect("loads");
    let mut vm = plugin.instantiate().expect("instance");
    let mut first = Stream::new();
    vm.create_stream(&mut first).expect("create");
    assert_eq!(first.context_id, 2);
    assert_eq!(
        vm.on_request_headers(&mut first, true).expect("pauses"),
        crate::Action::Pause
    );
    let mut second = Stream::new();
    vm.create_stream(&mut second).expect("create");
    vm.on_request_headers(&mut second, true).expect("runs");
    // Nothing landed on the stream whose callback ran.
    assert!(!second.resume_request);
    assert!(second.local_response.is_none());
    let signals = vm.take_stream_signals();
    assert_eq!(signals.len(), 2, "{signals:?}");
    assert!(signals.iter().all(|s| s.context_id == 2));
    for signal in signals {
        first.apply(signal.op);
    }
    assert!(first.resume_request);
    let local = first.local_response.as_ref().expect("answered");
    assert_eq!(local.status, 202);
    assert_eq!(local.body, b"from another stream");
    // A second answer does not replace the first.
    first.apply(StreamOp::LocalResponse(Box::new(crate::LocalResponse {
        status: 500,
        details: String::new(),
        body: Vec::new(),
        headers: crate::HeaderMap::new(),
        grpc_status: -1,
    })));
    assert_eq!(first.local_response.as_ref().map(|l| l.status), Some(202));
}
