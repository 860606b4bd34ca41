//! Logging: `proxy_log`, `proxy_get_log_level` (0.2.1).

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::logs::LogLevel;
use crate::memory::{memory, slice, write_u32};
use crate::state::HostState;
use crate::status::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_log", proxy_log)?;
    linker.func_wrap("env", "proxy_get_log_level", proxy_get_log_level)?;
    Ok(())
}

/// `proxy_log(level, message, message_size)`: only OK for any valid level.
fn proxy_log(caller: Caller<'_, HostState>, level: u32, ptr: u32, len: u32) -> HostResult {
    let Some(level) = LogLevel::from_code(level) else {
        return status(Status::BadArgument);
    };
    let state = caller.data();
    let mem = memory(&caller)?.data(&caller);
    // Checked even when the level is off, so a bad pointer never goes unnoticed.
    let message = slice(mem, ptr, len, state.max_len(), "proxy_log message")?;
    if state.logs.enabled(level) {
        state.logs.log(level, message);
    }
    status(Status::Ok)
}

/// `proxy_get_log_level(*level)`: the configured level, else Trace while capturing, else
/// `tracing`'s current max level.
fn proxy_get_log_level(mut caller: Caller<'_, HostState>, out: u32) -> HostResult {
    let state = caller.data();
    let level = state.log_level.unwrap_or_else(|| {
        if state.logs.capturing() {
            LogLevel::Trace
        } else {
            LogLevel::from_tracing_max()
        }
    });
    let mem = memory(&caller)?.data_mut(&mut caller);
    write_u32(mem, out, level.code(), "proxy_get_log_level level")?;
    status(Status::Ok)
}
