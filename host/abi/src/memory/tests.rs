//! Guest memory access: bounds checks, caps, and values returned through the guest allocator.
//! Each test runs a small WAT module that calls host functions with chosen pointers.

use super::*;
use crate::test_util::{load, spec};
use crate::{FaultKind, Stream};

const GET_VALUE: &str = r#"(import "env" "proxy_get_header_map_value"
    (func $get (param i32 i32 i32 i32 i32) (result i32)))"#;
const REPLACE: &str = r#"(import "env" "proxy_replace_header_map_value"
    (func $replace (param i32 i32 i32 i32 i32) (result i32)))"#;
const LOG: &str = r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))"#;
const PAIRS: &str = r#"(import "env" "proxy_get_header_map_pairs"
    (func $pairs (param i32 i32 i32) (result i32)))"#;

#[test]
fn slice_checks_bounds_and_caps() {
    let mem = [1u8, 2, 3, 4];
    assert_eq!(slice(&mem, 1, 2, 16, "t").unwrap(), &[2, 3]);
    assert_eq!(slice(&mem, 4, 0, 16, "t").unwrap(), &[] as &[u8]);
    assert!(matches!(
        slice(&mem, 3, 2, 16, "t"),
        Err(HostError::MemoryAccess(_))
    ));
    assert!(matches!(
        slice(&mem, u32::MAX, u32::MAX, usize::MAX, "t"),
        Err(HostError::MemoryAccess(_))
    ));
    assert!(matches!(
        slice(&mem, 0, 4, 3, "t"),
        Err(HostError::Limit(_))
    ));
    let mut mem = [0u8; 8];
    write_u32(&mut mem, 4, 0x0102_0304, "t").unwrap();
    assert_eq!(mem[4..], [4, 3, 2, 1]);
    assert!(write_u32(&mut mem, 5, 1, "t").is_err());
    assert!(write_u64(&mut mem, 1, 1, "t").is_err());
}

/// Reads request header "x-in" into guest memory through the allocator, then writes that
/// copy back as "x-out": proves the value went through guest memory intact.
#[test]
fn value_is_returned_through_the_guest_allocator() {
    let body = r#"
      (data (i32.const 100) "x-in")
      (data (i32.const 110) "x-out")
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (if (call $get (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 200) (i32.const 204))
          (then unreachable))
        ;; the allocator hands out memory from 4096 upwards
        (if (i32.lt_u (i32.load (i32.const 200)) (i32.const 4096)) (then unreachable))
        (drop (call $replace (i32.const 0) (i32.const 110) (i32.const 5)
          (i32.load (i32.const 200)) (i32.load (i32.const 204))))
        (i32.const 0))"#;
    let plugin = load(spec("alloc", &format!("{GET_VALUE}{REPLACE}"), body)).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    let mut s = Stream::default();
    s.request_headers.add("x-in", "hello world");
    vm.create_stream(&mut s).unwrap();
    vm.on_request_headers(&mut s, true).unwrap();
    assert_eq!(s.request_headers.get("x-out"), Some(&b"hello world"[..]));
}

/// An empty map is a null pointer and size 0 (never a 1-byte map).
#[test]
fn empty_map_is_null_and_zero() {
    let body = r#"
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (i32.store (i32.const 200) (i32.const 77))
        (i32.store (i32.const 204) (i32.const 77))
        (drop (call $pairs (i32.const 2) (i32.const 200) (i32.const 204)))
        (if (i32.load (i32.const 200)) (then unreachable))
        (if (i32.load (i32.const 204)) (then unreachable))
        (i32.const 0))"#;
    let plugin = load(spec("empty", PAIRS, body)).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    let mut s = Stream::default();
    vm.create_stream(&mut s).unwrap();
    vm.on_request_headers(&mut s, true).unwrap();
}

fn run_headers(name: &str, imports: &str, body: &str) -> FaultKind {
    let plugin = load(spec(name, imports, body)).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    let mut s = Stream::default();
    s.request_headers.add("x-in", "v");
    vm.create_stream(&mut s).unwrap();
    let fault = vm.on_request_headers(&mut s, true).unwrap_err();
    assert!(vm.is_broken());
    // The stream came back to the embedder intact.
    assert_eq!(s.request_headers.get("x-in"), Some(&b"v"[..]));
    assert_eq!(vm.on_log(&mut s).unwrap_err().kind, FaultKind::Broken);
    fault.kind
}

#[test]
fn out_of_bounds_input_pointer_faults() {
    let body = r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $log (i32.const 2) (i32.const 65530) (i32.const 100)))
        (i32.const 0))"#;
    assert!(matches!(
        run_headers("oob-in", LOG, body),
        FaultKind::InvalidMemoryAccess(_)
    ));
}

#[test]
fn out_of_bounds_out_pointer_faults() {
    let body = r#"(data (i32.const 100) "x-in")
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $get (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 70000) (i32.const 204)))
        (i32.const 0))"#;
    assert!(matches!(
        run_headers("oob-out", GET_VALUE, body),
        FaultKind::InvalidMemoryAccess(_)
    ));
}

#[test]
fn length_over_the_cap_faults() {
    let body = r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $log (i32.const 2) (i32.const 0) (i32.const -1)))
        (i32.const 0))"#;
    assert!(matches!(
        run_headers("huge", LOG, body),
        FaultKind::LimitExceeded(_)
    ));
}

fn broken_allocator(name: &str, alloc_body: &str) -> FaultKind {
    let wat = format!(
        r#"(module {GET_VALUE}
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) {alloc_body})
      (data (i32.const 100) "x-in")
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $get (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 200) (i32.const 204)))
        (i32.const 0)))"#
    );
    let plugin = load(crate::test_util::raw_spec(name, &wat)).unwrap();
    let mut vm = plugin.instantiate().unwrap();
    let mut s = Stream::default();
    s.request_headers.add("x-in", "value");
    vm.create_stream(&mut s).unwrap();
    vm.on_request_headers(&mut s, true).unwrap_err().kind
}

#[test]
fn allocator_returning_null_faults() {
    assert!(matches!(
        broken_allocator("null", "(i32.const 0)"),
        FaultKind::Allocator(_)
    ));
}

#[test]
fn allocator_returning_out_of_bounds_faults() {
    assert!(matches!(
        broken_allocator("oob", "(i32.const 65535)"),
        FaultKind::Allocator(_)
    ));
}

#[test]
fn allocator_trapping_faults() {
    assert!(matches!(
        broken_allocator("trap", "unreachable"),
        FaultKind::Allocator(_)
    ));
}
