//! wasmgate-harness: unit-test any proxy-wasm filter from plain `cargo test`, on the same
//! runtime (`wasmgate-abi`, wasmtime) that the wasmgate gateway runs it on.
//!
//! Load a `.wasm` built with any proxy-wasm SDK, give it its plugin and VM configuration,
//! environment and upstreams, then drive HTTP streams through it callback by callback and
//! assert on what it did: the action it returned, the header maps, bodies and trailers as
//! it left them, local responses, logs, metrics, properties, shared data, queues, the http
//! calls it dispatched (answered by the test), and timers (virtual time, no sleeping).
//! Nothing is mocked: every host function is the real runtime's.
//!
//! # Example
//!
//! The secret-header filter, configured as in production, with the secret coming from the
//! module's environment; a client that tries to spoof the header loses:
//!
//! ```no_run
//! use wasmgate_harness::{Action, Harness};
//!
//! # fn main() -> Result<(), wasmgate_harness::Error> {
//! // 1. Describe and start the filter: on_vm_start and on_configure run here, and a filter
//! //    that refuses its configuration is an `Error::Load` naming the module and the reason.
//! let filter = Harness::load("target/wasm32-wasip1/release/secret_header.wasm")?
//!     .plugin_config(r#"{"set":{"headers":["Authorization:Bearer {vault://env/TOKEN}"]}}"#)
//!     .env("TOKEN", "s3cr3t")
//!     .start()?;
//!
//! // 2. Drive one stream, callback by callback, and read what the filter left.
//! let mut http = filter.http_stream()?;
//! let request = [(":method", "GET"), (":path", "/v1/items"), ("authorization", "spoofed")];
//! assert_eq!(http.request_headers(request, true)?, Action::Continue);
//! assert_eq!(http.request_header("authorization"), Some("Bearer s3cr3t"));
//! http.response_headers([(":status", "200")], true)?;
//! http.log()?;
//! http.finish()?;
//!
//! // 3. Whatever the filter logged is there to check: never the secret.
//! assert!(filter.logs().iter().all(|r| !r.message.contains("s3cr3t")));
//! # Ok(()) }
//! ```
//!
//! A filter that authenticates each request with an http call: the test plays the
//! upstream, and the filter resumes the request it paused:
//!
//! ```no_run
//! use wasmgate_harness::{Action, Harness, Reply};
//!
//! # fn main() -> Result<(), wasmgate_harness::Error> {
//! let filter = Harness::load("http_call.wasm")?.plugin_config("upstream=auth").upstream("auth").start()?;
//! let mut http = filter.http_stream()?;
//! let action = http.request_headers([(":method", "GET"), (":path", "/"), (":authority", "api")], true)?;
//! assert_eq!(action, Action::Pause);
//! let call = http.pending_http_calls().remove(0);
//! assert_eq!(call.upstream, "auth");
//! http.respond_http_call(call.token, Reply::status(200).body("alice"))?;
//! assert!(!http.is_request_paused());
//! assert_eq!(http.request_header("x-auth-body"), Some("alice"));
//! # Ok(()) }
//! ```
//!
//! The same steps, runnable as they stand, with a tiny filter written in WebAssembly text
//! (the harness reads `.wat` as well as `.wasm`) that adds `x-wat: minimal` to requests:
//!
//! ```
//! use wasmgate_harness::{Action, Harness};
//!
//! # fn main() -> Result<(), wasmgate_harness::Error> {
//! let filter = Harness::from_bytes("minimal", MINIMAL_WAT).start()?;
//! let mut http = filter.http_stream()?;
//! let action = http.request_headers([(":method", "GET"), (":path", "/")], true)?;
//! assert_eq!(action, Action::Continue);
//! assert_eq!(http.request_header("x-wat"), Some("minimal"));
//! http.finish()?;
//! # Ok(()) }
//! # const MINIMAL_WAT: &str = r#"
//! # (module
//! #   (import "env" "proxy_add_header_map_value"
//! #     (func $add (param i32 i32 i32 i32 i32) (result i32)))
//! #   (memory (export "memory") 1)
//! #   (global $next (mut i32) (i32.const 1024))
//! #   (data (i32.const 16) "x-wat")
//! #   (data (i32.const 32) "minimal")
//! #   (func (export "proxy_abi_version_0_2_1"))
//! #   (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
//! #     (local $ptr i32)
//! #     (local.set $ptr (global.get $next))
//! #     (global.set $next (i32.add (global.get $next) (local.get $size)))
//! #     (local.get $ptr))
//! #   (func (export "proxy_on_context_create") (param i32 i32))
//! #   (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
//! #     (drop (call $add (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 32) (i32.const 7)))
//! #     (i32.const 0)))
//! # "#;
//! ```
//!
//! # What the harness models
//!
//! - **Instances.** A [`Filter`] holds one instance, like one gateway worker. A failing
//!   callback ([`Error::Fault`], with its [`FaultKind`]: trap, deadline, out of memory,
//!   stack overflow, bad pointer, invalid action...) discards it; the next stream starts a
//!   fresh one ([`Filter::instances`] counts them). Streams still open on the old instance
//!   answer [`Error::StreamGone`].
//! - **The gateway's rules**: pauses, resumes, local responses, closes and body buffering
//!   come from the same `wasmgate_abi::StreamDriver` the gateway drives its streams with,
//!   and [`HttpStream::next`] says what the gateway would do next ([`Next`]).
//! - **Bodies** as Envoy delivers them: pausing on a body chunk buffers it, so the next
//!   callback sees all buffered bytes; what passes is in [`HttpStream::request_body_sent`].
//! - **Logs** are captured from an instance's first instruction: what the filter logs while
//!   starting (`on_vm_start`, `on_configure`) is in [`Filter::logs`] like the rest, and a
//!   filter that refuses to start is an [`Error::Load`] whose message quotes its last
//!   error-level line, with all its start-up logs in [`Error::startup_logs`].
//! - **Time** is virtual: the filter's clock stands still until [`Filter::advance_time`],
//!   which also fires `on_tick` for each elapsed tick period.
//! - **Queues**: `on_queue_ready` is delivered after the callback that enqueued, as Envoy
//!   does; [`Filter::deliver_queue_ready`] delivers items enqueued by other filters.
//! - **Other contexts acting on a stream**: what `on_tick`, `on_queue_ready` or a root http
//!   call's answer address to a stream after `proxy_set_effective_context` (resume it, answer
//!   it, close it) reaches that stream at its next callback or [`HttpStream::receive`].
//! - **Shared data and queues** are per runtime and VM id: filters started with
//!   [`Harness::runtime`] on one runtime share them, like plugins in one proxy.
//!
//! # Layout
//!
//! - [`Harness`] (`builder.rs`): describe the filter and start it.
//! - [`Filter`] (`filter.rs`): the started filter; instances, logs, metrics, shared data,
//!   time, root-context http calls.
//! - [`HttpStream`] (`http.rs`): one stream, callback by callback.
//! - [`Reply`] (`reply.rs`): answers to http calls.
//! - [`Error`] (`error.rs`).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod builder;
mod error;
mod filter;
mod http;
mod reply;

pub use builder::Harness;
pub use error::{Error, Result};
pub use filter::Filter;
pub use http::HttpStream;
pub use reply::Reply;

pub use wasmgate_abi::{
    Action, Fault, FaultKind, HeaderMap, HttpCallRequest, HttpCallResponse, Limits, LoadError,
    LocalResponse, LogLevel, LogRecord, MetricKind, MetricSample, Next, Runtime, RuntimeConfig,
    Side,
};

/// Encodes an integer property value as Envoy does (8-byte little-endian), for
/// [`Harness::property`] and [`HttpStream::set_property`].
///
/// ```
/// assert_eq!(wasmgate_harness::int_property(443), 443i64.to_le_bytes());
/// ```
pub fn int_property(value: i64) -> [u8; 8] {
    value.to_le_bytes()
}
