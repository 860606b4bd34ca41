//! gRPC calls and streams: `proxy_grpc_call`, `proxy_grpc_stream`, `proxy_grpc_send`,
//! `proxy_grpc_cancel`, `proxy_grpc_close`.
//!
//! Not implemented: this host has no gRPC upstreams. Each answers with a status the Rust SDK
//! 0.2.5 turns into an `Err` for the filter (INTERNAL_FAILURE for call/stream, NOT_FOUND for
//! operations on a token), never a trap. Pointers are still bounds-checked.

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::memory::{memory, slice};
use crate::state::HostState;
use crate::status::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_grpc_call", proxy_grpc_call)?;
    linker.func_wrap("env", "proxy_grpc_stream", proxy_grpc_stream)?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |caller: Caller<'_, HostState>, _token: u32, ptr: u32, len: u32, _end: u32| -> HostResult {
            check(&caller, &[(ptr, len)])?;
            status(Status::NotFound)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_cancel",
        |_: Caller<'_, HostState>, _token: u32| status(Status::NotFound),
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_close",
        |_: Caller<'_, HostState>, _token: u32| status(Status::NotFound),
    )?;
    Ok(())
}

/// Bounds-checks (pointer, length) arguments even though the call is refused.
fn check(caller: &Caller<'_, HostState>, ranges: &[(u32, u32)]) -> wasmtime::Result<()> {
    let mem = memory(caller)?.data(caller);
    let max = caller.data().max_len();
    for (ptr, len) in ranges {
        slice(mem, *ptr, *len, max, "gRPC argument")?;
    }
    Ok(())
}

/// `proxy_grpc_call(upstream, .., service, .., method, .., metadata, .., message, ..,
/// timeout, *token)`: INTERNAL_FAILURE.
#[allow(clippy::too_many_arguments)]
fn proxy_grpc_call(
    caller: Caller<'_, HostState>,
    a: u32,
    al: u32,
    b: u32,
    bl: u32,
    c: u32,
    cl: u32,
    d: u32,
    dl: u32,
    e: u32,
    el: u32,
    _timeout: u32,
    _token_out: u32,
) -> HostResult {
    check(&caller, &[(a, al), (b, bl), (c, cl), (d, dl), (e, el)])?;
    status(Status::InternalFailure)
}

/// `proxy_grpc_stream(upstream, .., service, .., method, .., metadata, .., *token)`:
/// INTERNAL_FAILURE.
#[allow(clippy::too_many_arguments)]
fn proxy_grpc_stream(
    caller: Caller<'_, HostState>,
    a: u32,
    al: u32,
    b: u32,
    bl: u32,
    c: u32,
    cl: u32,
    d: u32,
    dl: u32,
    _token_out: u32,
) -> HostResult {
    check(&caller, &[(a, al), (b, bl), (c, cl), (d, dl)])?;
    status(Status::InternalFailure)
}
