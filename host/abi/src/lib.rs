//! wasmgate-abi: a proxy-wasm ABI 0.2.1 / 0.2.0 host runtime on wasmtime.
//!
//! It runs filters built with any proxy-wasm SDK, unchanged, the way Envoy runs them, and
//! adds what Envoy lacks: a CPU deadline per callback, a memory cap per instance, and
//! recovery by replacing a failed instance. It has no network or async dependency; the
//! gateway and the test harness embed it.
//!
//! ```text
//! Runtime::new(config)          engine, linker, epoch ticker, shared data/queues
//!   .load(PluginSpec)  -> Plugin      compile (cached), validate, start once
//!      .instantiate()  -> Vm          one store per worker; root context configured
//!         create_stream / on_request_headers / ... / end_stream (on_log + finish_stream)
//! ```
//!
//! # Layout
//!
//! - [`runtime`]: [`Runtime`] and [`RuntimeConfig`]: engine settings, module cache, epoch ticker.
//! - [`plugin`]: [`PluginSpec`], [`WasmSource`], [`Plugin`]: loading and export validation.
//! - [`vm`]: [`Vm`]: one instance and the proxy-wasm lifecycle calls into it (`vm/start`:
//!   instantiation; `vm/end`: a stream's last three callbacks in one entry).
//! - [`stream`]: [`Stream`], [`HeaderMap`], [`LocalResponse`]: per-request state
//!   (the map itself in `header_map`: one buffer for names, one for values, and
//!   which names filters edited).
//! - [`driver`]: [`StreamDriver`]: the rules for driving a stream (pause and resume, local
//!   responses, close, body buffering, what a paused stream waits for), which every
//!   embedder follows; it decides, the embedder does the I/O and the waiting.
//! - [`http_call`]: [`HttpCallRequest`], [`HttpCallResponse`].
//! - [`signal`]: [`StreamSignal`]: a stream operation a filter addressed to another context
//!   (say, `on_tick` resuming a paused request), for the embedder to deliver.
//! - [`error`]: [`Fault`], [`FaultKind`], [`LoadError`].
//! - [`limits`]: [`Limits`] and the caps on guest-controlled sizes.
//! - [`status`]: ABI status codes and [`Action`].
//! - [`logs`]: [`LogLevel`], [`LogRecord`] and where guest logs go.
//! - [`metrics`]: [`MetricKind`], [`MetricSample`]: filter-defined metrics.
//! - `cache`: the on-disk cache of compiled modules.
//! - `deadline`: the per-callback CPU deadline on top of epoch interruption.
//! - `memory`: checked guest memory access and allocation through the guest allocator.
//! - [`properties`]: property paths, the attributes derived from a stream, their encodings,
//!   and the table of every Envoy attribute and what wasmgate answers.
//! - `shared`: shared data and queues, process-wide per `vm_id`.
//! - `state`: the store data host functions reach.
//! - `exports/*`: the `env.proxy_*` host functions, one file per ABI area, plus the
//!   non-blocking WASI shims.
//!
//! # Example
//!
//! ```no_run
//! use wasmgate_abi::{Action, Runtime, RuntimeConfig, PluginSpec, Stream, WasmSource};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let mut spec = PluginSpec::new("api/0", WasmSource::File("secret_header.wasm".into()));
//! // The secret comes from the module's WASI environment, never from the config text.
//! spec.plugin_config = br#"{"set":{"headers":["x-api-key:{vault://env/API_KEY}"]}}"#.to_vec();
//! spec.env = vec![("API_KEY".into(), std::env::var("API_KEY")?)];
//! let plugin = runtime.load(spec)?;
//! let mut vm = plugin.instantiate()?;
//!
//! let mut stream = Stream::default();
//! stream.request_headers.add(":path", "/");
//! vm.create_stream(&mut stream)?;
//! assert_eq!(vm.on_request_headers(&mut stream, true)?, Action::Continue);
//! assert!(stream.request_headers.get("x-api-key").is_some());
//! vm.end_stream(&mut stream)?; // on_log, on_done, on_delete
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod cache;
mod deadline;
pub mod driver;
pub mod error;
mod exports;
mod header_map;
pub mod http_call;
pub mod limits;
pub mod logs;
mod memory;
pub mod metrics;
mod modules;
pub mod plugin;
pub mod properties;
pub mod runtime;
mod shared;
pub mod signal;
mod state;
pub mod status;
pub mod stream;
#[cfg(test)]
mod test_util;
pub mod vm;

pub use driver::{BodyNext, Next, Side, StreamDriver};
pub use error::{Fault, FaultKind, LoadError};
pub use http_call::{HttpCallRequest, HttpCallResponse};
pub use limits::Limits;
pub use logs::{LogLevel, LogRecord};
pub use metrics::{MetricKind, MetricSample};
pub use plugin::{AbiVersion, Plugin, PluginSpec, WasmSource};
pub use properties::{Attributes, Properties, StreamInfo};
pub use runtime::{Runtime, RuntimeConfig};
pub use signal::{StreamOp, StreamSignal};
pub use status::{Action, Status};
pub use stream::{HeaderMap, LocalResponse, MapError, Stream};
pub use vm::Vm;

// The threading contract embedders rely on: share runtimes and plugins across worker
// threads, move a Vm to the worker that owns it.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Runtime>();
    send_sync::<Plugin>();
    send::<Vm>();
    send::<Stream>();
};
