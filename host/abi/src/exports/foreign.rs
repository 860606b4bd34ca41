//! Foreign functions: `proxy_call_foreign_function`. This host registers none, so every
//! name is NOT_FOUND (which the Rust SDK returns to the filter as an `Err`).

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::limits::MAX_NAME_BYTES;
use crate::memory::{memory, slice};
use crate::state::HostState;
use crate::status::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        proxy_call_foreign_function,
    )?;
    Ok(())
}

/// `proxy_call_foreign_function(name, name_size, args, args_size, **result, *result_size)`.
fn proxy_call_foreign_function(
    caller: Caller<'_, HostState>,
    nptr: u32,
    nlen: u32,
    aptr: u32,
    alen: u32,
    _ptr_out: u32,
    _len_out: u32,
) -> HostResult {
    const WHAT: &str = "proxy_call_foreign_function";
    let mem = memory(&caller)?.data(&caller);
    slice(mem, nptr, nlen, MAX_NAME_BYTES, WHAT)?;
    slice(mem, aptr, alen, caller.data().max_len(), WHAT)?;
    status(Status::NotFound)
}
