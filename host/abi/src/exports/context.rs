//! Context lifecycle: `proxy_set_effective_context`, `proxy_done`.

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::state::HostState;
use crate::status::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        proxy_set_effective_context,
    )?;
    linker.func_wrap("env", "proxy_done", proxy_done)?;
    Ok(())
}

/// `proxy_set_effective_context(ctx)`: OK for any context this Vm issued (the SDK calls it
/// with the dispatching stream's id before `on_http_call_response`), else BAD_ARGUMENT.
fn proxy_set_effective_context(mut caller: Caller<'_, HostState>, ctx: u32) -> HostResult {
    let state = caller.data_mut();
    if !state.is_known_context(ctx) {
        return status(Status::BadArgument);
    }
    state.effective_context = ctx;
    status(Status::Ok)
}

/// `proxy_done()`: the context finished work it deferred by returning false from on_done.
fn proxy_done(mut caller: Caller<'_, HostState>) -> HostResult {
    caller.data_mut().done_calls += 1;
    status(Status::Ok)
}
