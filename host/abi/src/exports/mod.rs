//! The host functions a proxy-wasm module imports, one file per area of the ABI spec
//! (v0.2.1), each with its own `add_to_linker`. Plus `wasi`: non-blocking replacements for
//! the WASI preview 1 functions wasmtime-wasi runs on tokio.
//!
//! Conventions: a guest-visible outcome is a [`Status`] code chosen to match what the Rust
//! SDK 0.2.5 accepts for that call; a broken invariant (pointer out of bounds, a length over a
//! cap, a failing allocator) aborts the guest with a [`crate::error::HostError`]. No host
//! function calls a `proxy_on_*` callback.

use wasmtime::Linker;

use crate::state::HostState;
use crate::status::Status;

mod buffers;
mod clocks;
mod configuration;
mod context;
mod foreign;
mod grpc;
mod headers;
mod http_call;
mod http_stream;
mod logging;
mod metrics;
mod properties;
mod queues;
mod shared_data;
mod wasi;

#[cfg(test)]
mod tests;

/// What every host function returns: a status code, or an error that traps the guest.
pub(crate) type HostResult = wasmtime::Result<u32>;

/// Shorthand for returning a status.
#[inline]
pub(crate) fn status(s: Status) -> HostResult {
    Ok(s.code())
}

/// Links every `env.proxy_*` import of ABI 0.2.1/0.2.0 and the WASI shims.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    logging::add_to_linker(linker)?;
    context::add_to_linker(linker)?;
    configuration::add_to_linker(linker)?;
    clocks::add_to_linker(linker)?;
    buffers::add_to_linker(linker)?;
    headers::add_to_linker(linker)?;
    http_stream::add_to_linker(linker)?;
    http_call::add_to_linker(linker)?;
    shared_data::add_to_linker(linker)?;
    queues::add_to_linker(linker)?;
    metrics::add_to_linker(linker)?;
    properties::add_to_linker(linker)?;
    grpc::add_to_linker(linker)?;
    foreign::add_to_linker(linker)?;
    wasi::add_to_linker(linker)?;
    Ok(())
}
